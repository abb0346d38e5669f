# For Windows: the module-definition file `pyme_streaming.def` (the DLL's exports) and
# an import library for MSVC, `pyme_streaming.lib`, made with dlltool from it, so MSVC
# (and LabVIEW, Micro-Manager adapters) link the mingw-built DLL: its API is plain C,
# with no C++ or CRT object across it. Run by CMakeLists.txt at build time (cmake -P) with:
#   DLL  the cargo-built DLL      OBJDUMP, DLLTOOL  the target's binutils
#   DEF  the .def to make         LIB              the import library to make
# It may not write anything but DEF and LIB.
cmake_minimum_required(VERSION 3.16)
foreach(var DLL OBJDUMP DLLTOOL DEF LIB)
  if(NOT DEFINED ${var} OR "${${var}}" STREQUAL "")
    message(FATAL_ERROR "PymeWindowsImport.cmake: ${var} is not set")
  endif()
endforeach()
execute_process(COMMAND "${OBJDUMP}" -p "${DLL}" OUTPUT_VARIABLE dump RESULT_VARIABLE result)
if(NOT result EQUAL 0)
  message(FATAL_ERROR "${OBJDUMP} -p ${DLL} failed")
endif()
# The export table: "\t[   3] +base[   4] 0003 streamer_new" lines after "[Ordinal/Name Pointer] Table".
string(FIND "${dump}" "[Ordinal/Name Pointer] Table" start)
if(start LESS 0)
  message(FATAL_ERROR "${DLL} has no export table")
endif()
string(SUBSTRING "${dump}" ${start} -1 table)
string(REPLACE "\n" ";" lines "${table}")
get_filename_component(dll_name "${DLL}" NAME)
set(def "; The exports of ${dll_name}: the C API of pyme-streaming (calling convention cdecl).\nLIBRARY ${dll_name}\nEXPORTS\n")
set(count 0)
foreach(line IN LISTS lines)
  if(line MATCHES "^[ \t]*\\[ *[0-9]+\\] .* ([A-Za-z_][A-Za-z_0-9]*)$")
    string(APPEND def "    ${CMAKE_MATCH_1}\n")
    math(EXPR count "${count} + 1")
  elseif(count GREATER 0 AND line STREQUAL "")
    break()
  endif()
endforeach()
if(count LESS 10)
  message(FATAL_ERROR "only ${count} exports read from ${DLL}")
endif()
file(WRITE "${DEF}" "${def}")
execute_process(COMMAND "${DLLTOOL}" --input-def "${DEF}" --dllname "${dll_name}" --output-lib "${LIB}"
  RESULT_VARIABLE result)
if(NOT result EQUAL 0)
  message(FATAL_ERROR "${DLLTOOL} failed")
endif()
message(STATUS "${count} exports: ${DEF}, ${LIB}")
