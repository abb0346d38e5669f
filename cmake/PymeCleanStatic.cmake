# Makes the installed static library from cargo's: one partially linked object in
# which only the C API (cmake/pyme_streaming.exports) is global, so a program that
# brings its own SQLite (or its own Rust code) links with it without clashes.
# Run by CMakeLists.txt at build time (cmake -P), for ELF and mingw (COFF) targets, with:
#   ARCHIVE   cargo's staticlib          EXPORTS  the patterns file
#   OBJECT    the object to make
#   OUTPUT    the archive to make        LINKER, OBJCOPY, NM, AR   the binutils of the target
#   FORMAT    elf (default) or coff
# It may not write anything but OBJECT, OUTPUT and files next to them.
#
# COFF (x86_64-pc-windows-gnu): cargo's archive also holds the import stubs of the
# Windows DLLs std calls through `raw-dylib` (members `kernel32.dlls00042.o`,
# `ntdll.dllh.o`, ...; some names repeated), which `ld -r` cannot merge (their
# `.idata$` sections only make sense to a final link). They stay members of their own;
# only the code members (Rust's `*.rcgu.o`, the bundled SQLite) become the one object.
cmake_minimum_required(VERSION 3.16)
foreach(var ARCHIVE EXPORTS OBJECT OUTPUT LINKER OBJCOPY NM AR)
  if(NOT DEFINED ${var} OR "${${var}}" STREQUAL "")
    message(FATAL_ERROR "PymeCleanStatic.cmake: ${var} is not set")
  endif()
endforeach()
if(NOT FORMAT)
  set(FORMAT elf)
endif()

set(linked "${OBJECT}.all.o")
if(FORMAT STREQUAL "coff")
  # Import stub members: <dll>.dll{h,t,sNNNNN}.o as dlltool names them.
  set(stub_pattern "\\.(dll|exe|sys|drv)(h|t|s[0-9]+)\\.o$")
  execute_process(COMMAND "${AR}" t "${ARCHIVE}" OUTPUT_VARIABLE members RESULT_VARIABLE result)
  if(NOT result EQUAL 0)
    message(FATAL_ERROR "${AR} t ${ARCHIVE} failed")
  endif()
  string(REPLACE "\n" ";" members "${members}")
  set(code_members "")
  foreach(member IN LISTS members)
    if(member AND NOT member MATCHES "${stub_pattern}")
      list(APPEND code_members "${member}")
    endif()
  endforeach()
  set(code_unique ${code_members})
  list(REMOVE_DUPLICATES code_unique)
  list(LENGTH code_members code_count)
  list(LENGTH code_unique unique_count)
  if(NOT code_count EQUAL unique_count OR code_count EQUAL 0)
    message(FATAL_ERROR "${ARCHIVE}: ${code_count} code members, ${unique_count} names: cannot extract them one by one")
  endif()
  set(code_dir "${OBJECT}.members")
  file(REMOVE_RECURSE "${code_dir}")
  file(MAKE_DIRECTORY "${code_dir}")
  execute_process(COMMAND "${AR}" x "${ARCHIVE}" ${code_members}
    WORKING_DIRECTORY "${code_dir}" RESULT_VARIABLE result)
  if(NOT result EQUAL 0)
    message(FATAL_ERROR "${AR} x ${ARCHIVE} failed")
  endif()
  execute_process(COMMAND "${LINKER}" -r -o "${linked}" ${code_members}
    WORKING_DIRECTORY "${code_dir}" RESULT_VARIABLE result)
  if(NOT result EQUAL 0)
    message(FATAL_ERROR "${LINKER} -r of the code members of ${ARCHIVE} failed")
  endif()
  file(REMOVE_RECURSE "${code_dir}")
  execute_process(COMMAND "${OBJCOPY}" --wildcard "--keep-global-symbols=${EXPORTS}"
    --remove-section=.llvmbc --remove-section=.llvmcmd "${linked}" "${OBJECT}"
    RESULT_VARIABLE result)
  if(NOT result EQUAL 0)
    message(FATAL_ERROR "${OBJCOPY} --keep-global-symbols failed")
  endif()
  # The output: cargo's archive without the code members (the import stubs, repeated
  # names and all, as they were), then the object.
  file(REMOVE "${linked}" "${OUTPUT}")
  execute_process(COMMAND "${CMAKE_COMMAND}" -E copy "${ARCHIVE}" "${OUTPUT}" RESULT_VARIABLE result)
  if(NOT result EQUAL 0)
    message(FATAL_ERROR "copying ${ARCHIVE} failed")
  endif()
  execute_process(COMMAND "${AR}" d "${OUTPUT}" ${code_members} RESULT_VARIABLE result)
  if(NOT result EQUAL 0)
    message(FATAL_ERROR "${AR} d ${OUTPUT} failed")
  endif()
  execute_process(COMMAND "${AR}" rs "${OUTPUT}" "${OBJECT}" RESULT_VARIABLE result)
  if(NOT result EQUAL 0)
    message(FATAL_ERROR "${AR} rs ${OUTPUT} failed")
  endif()
else()
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
