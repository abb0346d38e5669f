# Makes the installed static library from cargo's: one partially linked object in
# which only the C API (cmake/pyme_streaming.exports) is global, so a program that
# brings its own SQLite (or its own Rust code) links with it without clashes.
# Run by CMakeLists.txt at build time (cmake -P), for ELF targets, with:
#   ARCHIVE   cargo's staticlib          EXPORTS  the patterns file
#   OBJECT    the object to make
#   OUTPUT    the archive to make        LINKER, OBJCOPY, NM, AR   the binutils of the target
# It may not write anything but OBJECT, OUTPUT and files next to them.
cmake_minimum_required(VERSION 3.16)
foreach(var ARCHIVE EXPORTS OBJECT OUTPUT LINKER OBJCOPY NM AR)
  if(NOT DEFINED ${var} OR "${${var}}" STREQUAL "")
    message(FATAL_ERROR "PymeCleanStatic.cmake: ${var} is not set")
  endif()
endforeach()

set(linked "${OBJECT}.all.o")
# No --gc-sections here: with -r, GNU ld 2.40 turns the weak undefined references of
# Rust std (pidfd_spawnp, ...: glibc functions it uses only when present) into strong
# ones. Every function keeps its own section, so the final link can still drop the
# unused ones (the shared library below is linked with --gc-sections).
execute_process(COMMAND "${LINKER}" -r --whole-archive "${ARCHIVE}" -o "${linked}"
  RESULT_VARIABLE result)
if(NOT result EQUAL 0)
  message(FATAL_ERROR "${LINKER} -r ${ARCHIVE} failed")
endif()
# Every defined global but the API becomes local; the embedded LLVM bitcode goes (no
# linker uses it, and binutils' LLVM plugin cannot read it: `nm` would fail on the archive).
execute_process(COMMAND "${OBJCOPY}" --wildcard "--keep-global-symbols=${EXPORTS}"
  --remove-section=.llvmbc --remove-section=.llvmcmd "${linked}" "${OBJECT}"
  RESULT_VARIABLE result)
if(NOT result EQUAL 0)
  message(FATAL_ERROR "${OBJCOPY} --keep-global-symbols failed")
endif()
file(REMOVE "${linked}" "${OUTPUT}")
execute_process(COMMAND "${AR}" rcs "${OUTPUT}" "${OBJECT}" RESULT_VARIABLE result)
if(NOT result EQUAL 0)
  message(FATAL_ERROR "${AR} rcs ${OUTPUT} failed")
endif()
# What is global now: the API, nothing else.
execute_process(COMMAND "${NM}" -g --defined-only "${OBJECT}" OUTPUT_VARIABLE nm_output RESULT_VARIABLE result)
if(NOT result EQUAL 0)
  message(FATAL_ERROR "${NM} ${OBJECT} failed")
endif()
string(REGEX MATCHALL "\n[0-9a-fA-F]+ [A-Z] [A-Za-z_0-9]+" globals "\n${nm_output}")
list(LENGTH globals api_count)
if(api_count LESS 10)
  message(FATAL_ERROR "only ${api_count} global functions in ${OBJECT}: do the patterns of ${EXPORTS} match the API?")
endif()
message(STATUS "static library with ${api_count} global API functions: ${OUTPUT}")
