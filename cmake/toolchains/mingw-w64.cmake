# Cross-compiling for 64-bit Windows with the mingw-w64 toolchain (Debian:
# gcc-mingw-w64-x86-64, g++-mingw-w64-x86-64, binutils-mingw-w64-x86-64):
#
#   cmake -S . -B build-win -DCMAKE_TOOLCHAIN_FILE=cmake/toolchains/mingw-w64.cmake \
#         -DPYME_RUST_TARGET=x86_64-pc-windows-gnu
#
# Also for a consumer project, so it links the Windows package. Set
# PYME_MINGW_PREFIX (default x86_64-w64-mingw32) for another mingw triple.
set(CMAKE_SYSTEM_NAME Windows)
set(CMAKE_SYSTEM_PROCESSOR x86_64)

if(NOT PYME_MINGW_PREFIX)
  set(PYME_MINGW_PREFIX x86_64-w64-mingw32)
endif()
# Prefer the posix-threads variant Debian ships (C++11 threads work with it).
find_program(CMAKE_C_COMPILER NAMES ${PYME_MINGW_PREFIX}-gcc-posix ${PYME_MINGW_PREFIX}-gcc REQUIRED)
find_program(CMAKE_CXX_COMPILER NAMES ${PYME_MINGW_PREFIX}-g++-posix ${PYME_MINGW_PREFIX}-g++ REQUIRED)
find_program(CMAKE_RC_COMPILER NAMES ${PYME_MINGW_PREFIX}-windres)
find_program(CMAKE_AR NAMES ${PYME_MINGW_PREFIX}-ar REQUIRED)
find_program(CMAKE_RANLIB NAMES ${PYME_MINGW_PREFIX}-ranlib)
find_program(CMAKE_STRIP NAMES ${PYME_MINGW_PREFIX}-strip)
find_program(CMAKE_OBJDUMP NAMES ${PYME_MINGW_PREFIX}-objdump)
find_program(CMAKE_DLLTOOL NAMES ${PYME_MINGW_PREFIX}-dlltool)

set(CMAKE_FIND_ROOT_PATH /usr/${PYME_MINGW_PREFIX})
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
# Packages (PymeStreaming among them) are searched in CMAKE_PREFIX_PATH as given too.
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE BOTH)

# Programs run under Wine where CMake needs to run them (try_run, tests).
find_program(PYME_WINE NAMES wine wine64)
if(PYME_WINE)
  set(CMAKE_CROSSCOMPILING_EMULATOR ${PYME_WINE})
endif()
