#!/usr/bin/env bash
# The downloadable artifacts, into dist/ (ignored by git):
#
#   scripts/package.sh linux     dist/pyme-streaming-<version>-x86_64-linux.tar.gz: the
#                                installed CMake package (shared and static libraries,
#                                both headers, CMake config, pkg-config files, TSan
#                                suppressions) and bin/pyme-stream, with README.txt
#                                stating the oldest glibc it runs on
#   scripts/package.sh windows   dist/pyme-streaming-<version>-x86_64-windows.zip: the
#                                Windows package of scripts/windows-cross.sh build
#                                (DLL, import libraries, .def, static library for mingw,
#                                headers, CMake config, pyme-stream.exe) and the mingw
#                                runtime DLLs they import, if any
#   scripts/package.sh windows-zip   the same zip of the package already built by
#                                `scripts/windows-cross.sh build`, without building
#   scripts/package.sh wheel     dist/pyme_streaming-<version>-cp39-abi3-manylinux2014_x86_64
#                                .manylinux_2_17_x86_64.whl: the Python package, built by
#                                maturin with zig as the linker against glibc 2.17 (both
#                                from the package registry, pinned, in a venv kept in
#                                target/package/wheel-venv), stripped; checked by auditwheel
#                                (manylinux_2_17), its highest GLIBC_ symbol version and
#                                what it links (system libraries only, no libhdf5)
#   scripts/package.sh sums      dist/SHA256SUMS for everything in dist/
#   scripts/package.sh check     the tarball unpacked into a fresh folder serves a
#                                consumer through find_package and through pkg-config;
#                                no shipped library needs a library the user must
#                                install (readelf -d, the PE imports)
#   scripts/package.sh all       linux, windows, wheel, sums, check
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
dist=$root/dist
work=$root/target/package
linux_name=pyme-streaming-$version-x86_64-linux
windows_name=pyme-streaming-$version-x86_64-windows
mkdir -p "$dist" "$work"

log() { echo "package.sh: $*"; }

# Libraries a Linux system provides (glibc, libgcc): anything else is a dependency
# the user would have to install.
linux_system_libs='^(libc|libm|libdl|libpthread|librt|libutil|libgcc_s|ld-linux-x86-64)\.so'
# DLLs Windows provides.
windows_system_dlls='^(kernel32|advapi32|ntdll|userenv|ws2_32|dbghelp|bcrypt|bcryptprimitives|msvcrt|ucrtbase|api-ms-win-.*|shell32|ole32|secur32|crypt32|iphlpapi|synchronization)\.dll$'

linux() {
  local stage=$work/stage/$linux_name
  rm -rf "$work/stage" && mkdir -p "$work/stage"
  cmake -S . -B "$work/linux" -DCMAKE_BUILD_TYPE=Release -DPYME_BUILD_CLI=ON \
    "-DPYME_CARGO_TARGET_DIR=$root/target" >"$work/linux-configure.log"
  cmake --build "$work/linux" >"$work/linux-build.log" 2>&1 || { tail -30 "$work/linux-build.log"; exit 1; }
  cmake --install "$work/linux" --prefix "$stage" >"$work/linux-install.log"
  # The oldest glibc: the highest GLIBC_ symbol version any shipped ELF file needs.
  local glibc
  glibc=$(find "$stage" -type f \( -name '*.so*' -o -path '*/bin/*' \) -exec objdump -T {} \; 2>/dev/null |
    grep -o 'GLIBC_[0-9.]*' | sed 's/GLIBC_//' | sort -V | tail -1)
  cat >"$stage/README.txt" <<TEXT
pyme-streaming $version for x86_64 Linux

Runs on Linux with glibc $glibc or later (the highest glibc symbol version the library
and bin/pyme-stream need), x86_64. Nothing else to install.

  lib/libpyme_streaming.so.0    the shared library (soname libpyme_streaming.so.0)
  lib/libpyme_streaming.a       the static library (only the C API global)
  include/                      pyme_streaming.h (C89..C2x), pyme_streaming.hpp (C++17)
  lib/cmake/PymeStreaming/      find_package(PymeStreaming): -DCMAKE_PREFIX_PATH=<this folder>
  lib/pkgconfig/                pyme_streaming.pc, pyme_streaming-static.pc (relocatable)
  share/pyme_streaming/tsan.supp  ThreadSanitizer suppressions
  bin/pyme-stream               the data server, bench and demo

Documentation: docs/C_API.md and docs/ABI.md of the source.
TEXT
  tar -C "$work/stage" -czf "$dist/$linux_name.tar.gz" "$linux_name"
  log "wrote dist/$linux_name.tar.gz (glibc >= $glibc)"
}

windows() {
  scripts/windows-cross.sh build >"$work/windows-build.log" 2>&1 || { tail -30 "$work/windows-build.log"; exit 1; }
  windows_zip
}

# The zip of the Windows package that scripts/windows-cross.sh build installed. Alone,
# it does not build (tests/windows.rs: a build would reinstall the package under the
# feet of the tests running beside it).
windows_zip() {
  local cache=${PYME_WIN_CACHE:-/var/cache/pyme-streaming}
  local stage=$work/stage-windows/$windows_name
  rm -rf "$work/stage-windows" && mkdir -p "$stage"
  cp -a "$cache/build/prefix/." "$stage/"
  rm -f "$stage/rustc-version.txt"
  # The mingw runtime DLLs the DLL and the program import, if any.
  local dll
  for dll in $(x86_64-w64-mingw32-objdump -p "$stage/bin/pyme_streaming.dll" "$stage/bin/pyme-stream.exe" 2>/dev/null |
               sed -n 's/^\s*DLL Name: //p' | sort -u); do
    if ! echo "$dll" | tr 'A-Z' 'a-z' | grep -Eq "$windows_system_dlls"; then
      local found
      found=$(find "$cache/trixie/usr/lib/gcc/x86_64-w64-mingw32" "$cache/trixie/usr/x86_64-w64-mingw32/lib" -name "$dll" 2>/dev/null | head -1)
      [ -n "$found" ] || { echo "package.sh: $dll is imported but not found in the mingw runtime" >&2; exit 1; }
      cp "$found" "$stage/bin/"
      log "bundled $dll"
    fi
  done
  cat >"$stage/README.txt" <<TEXT
pyme-streaming $version for x86_64 Windows (built with mingw-w64)

  bin/pyme_streaming.dll        the library (ship it next to your program)
  lib/pyme_streaming.lib        MSVC import library (with lib/pyme_streaming.def)
  lib/libpyme_streaming.dll.a   mingw import library
  lib/libpyme_streaming.a       static library: mingw only (it needs the mingw runtime;
                                MSVC programs use the DLL)
  include/                      pyme_streaming.h, pyme_streaming.hpp (C++17)
  lib/cmake/PymeStreaming/      find_package(PymeStreaming)
  bin/pyme-stream.exe           the data server, bench and demo

LabVIEW and Micro-Manager: docs/WINDOWS.md of the source.
TEXT
  rm -f "$dist/$windows_name.zip"
  (cd "$work/stage-windows" && python3 -m zipfile -c "$dist/$windows_name.zip" "$windows_name")
  log "wrote dist/$windows_name.zip"
}

# The tools of the wheel, pinned so that the same source gives the same wheel.
wheel_tools=(maturin==1.16.0 ziglang==0.17.1 auditwheel==6.8.2)
# The oldest glibc the wheel may need: manylinux2014's.
wheel_glibc=2.17

wheel() {
  local venv=$work/wheel-venv
  if [ "$(cat "$venv/tools.txt" 2>/dev/null)" != "${wheel_tools[*]}" ]; then
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q "${wheel_tools[@]}"
    echo "${wheel_tools[*]}" >"$venv/tools.txt"
  fi
  local out=$work/wheel
  rm -rf "$out"
  # zig links against glibc 2.17's symbol versions; a target dir of its own, since its
  # C compiler (for the bundled SQLite) would otherwise rebuild target/release's.
  # Release builds are never incremental: the same fingerprints whoever calls (a test
  # under `CARGO_INCREMENTAL=1` too), so a second build reuses the first.
  CARGO_INCREMENTAL=0 PATH="$venv/bin:$PATH" maturin build --release --strip --zig --compatibility manylinux2014 \
    -m python/Cargo.toml --target-dir "$root/target/wheel" --out "$out" \
    >"$work/wheel-build.log" 2>&1 || { tail -30 "$work/wheel-build.log"; exit 1; }
  local wheel_file
  wheel_file=$(ls "$out"/*.whl)
  case "$(basename "$wheel_file")" in
    *-cp39-abi3-*manylinux2014_x86_64*) ;;
    *) echo "package.sh: $(basename "$wheel_file") is not a cp39-abi3 manylinux2014 wheel" >&2; exit 1 ;;
  esac
  "$venv/bin/auditwheel" show "$wheel_file" >"$work/wheel-audit.txt"
  tr -s ' \n' ' ' <"$work/wheel-audit.txt" | grep -q 'consistent with the following platform tag: "manylinux_2_17_x86_64"' ||
    { cat "$work/wheel-audit.txt" >&2; echo "package.sh: auditwheel does not call the wheel manylinux_2_17" >&2; exit 1; }
  local unpacked=$out/unpacked glibc needed so
  mkdir -p "$unpacked"
  (cd "$unpacked" && python3 -m zipfile -e "$wheel_file" .)
  so=$(find "$unpacked" -name '*.so')
  glibc=$(objdump -T "$so" | grep -o 'GLIBC_[0-9.]*' | sed 's/GLIBC_//' | sort -V | tail -1)
  [ "$(printf '%s\n%s\n' "$glibc" "$wheel_glibc" | sort -V | tail -1)" = "$wheel_glibc" ] ||
    { echo "package.sh: the wheel needs glibc $glibc, more than $wheel_glibc" >&2; exit 1; }
  for needed in $(readelf -d "$so" | sed -n 's/.*Shared library: \[\(.*\)\]/\1/p'); do
    echo "$needed" | grep -Eq "$linux_system_libs" ||
      { echo "package.sh: the wheel needs $needed, which the user would have to install" >&2; exit 1; }
  done
  rm -rf "$unpacked"
  rm -f "$dist"/pyme_streaming-*.whl
  cp "$wheel_file" "$dist/"
  log "wrote dist/$(basename "$wheel_file") (glibc >= $glibc, auditwheel: manylinux_2_17_x86_64)"
}

sums() {
  (cd "$dist" && rm -f SHA256SUMS && sha256sum -- *.tar.gz *.zip *.whl 2>/dev/null >SHA256SUMS || true)
  (cd "$dist" && sha256sum -c SHA256SUMS >/dev/null)
  log "wrote dist/SHA256SUMS ($(wc -l <"$dist/SHA256SUMS") files)"
}

check() {
  local fresh
  fresh=$(mktemp -d)
  trap 'rm -rf "$fresh"' RETURN
  (cd "$dist" && sha256sum -c SHA256SUMS >/dev/null)
  tar -C "$fresh" -xzf "$dist/$linux_name.tar.gz"
  local prefix=$fresh/$linux_name
  # No shipped ELF file needs a library the user must install (no libhdf5, ...).
  local file needed
  for file in $(find "$prefix" -type f \( -name '*.so*' -o -path '*/bin/*' \)); do
    for needed in $(readelf -d "$file" | sed -n 's/.*Shared library: \[\(.*\)\]/\1/p'); do
      echo "$needed" | grep -Eq "$linux_system_libs" ||
        { echo "package.sh: $file needs $needed, which the user would have to install" >&2; exit 1; }
    done
  done
  # A consumer through find_package, and through pkg-config, against a server of the tarball.
  cmake -S c_examples -B "$fresh/examples" "-DCMAKE_PREFIX_PATH=$prefix" >"$fresh/examples.log"
  cmake --build "$fresh/examples" >>"$fresh/examples.log" 2>&1 || { tail -30 "$fresh/examples.log"; exit 1; }
  mkdir -p "$fresh/root"
  "$prefix/bin/pyme-stream" serve --advertise none --port 0 --root "$fresh/root" >"$fresh/serve.txt" &
  local server=$!
  trap 'kill $server 2>/dev/null; rm -rf "$fresh"' RETURN
  local address=""
  for _ in $(seq 100); do
    address=$(sed -n 's/^listening on //p' "$fresh/serve.txt")
    [ -n "$address" ] && break
    sleep 0.1
  done
  [ -n "$address" ] || { echo "package.sh: the tarball's pyme-stream serve did not start" >&2; exit 1; }
  "$fresh/examples/pzf_frames" "$address" >"$fresh/pzf_frames.txt"
  cc -std=c99 -D_POSIX_C_SOURCE=200809L tests/packaging/probe.c -o "$fresh/probe_pc" \
    $(PKG_CONFIG_PATH="$prefix/lib/pkgconfig" pkg-config --cflags --libs pyme_streaming) \
    "-Wl,-rpath,$prefix/lib"
  "$fresh/probe_pc" 25 tarball "$address" | grep -q "probe: all 25 frames acknowledged"
  log "the tarball serves a consumer through find_package and pkg-config"
  # The zip: its DLL and program import nothing a user must install.
  if [ -f "$dist/$windows_name.zip" ]; then
    rm -rf "$fresh/zip" && mkdir -p "$fresh/zip"
    (cd "$fresh/zip" && python3 -m zipfile -e "$dist/$windows_name.zip" .)
    local bundled dll
    bundled=$(ls "$fresh/zip/$windows_name/bin" | tr 'A-Z' 'a-z')
    for dll in $(objdump -p "$fresh/zip/$windows_name/bin/pyme_streaming.dll" "$fresh/zip/$windows_name/bin/pyme-stream.exe" |
                 sed -n 's/^\s*DLL Name: //p' | tr 'A-Z' 'a-z' | sort -u); do
      echo "$dll" | grep -Eq "$windows_system_dlls" || echo "$bundled" | grep -qx "$dll" ||
        { echo "package.sh: the zip's files import $dll, which is neither Windows' nor bundled" >&2; exit 1; }
    done
    log "the zip's DLL and program import only Windows' DLLs and bundled ones"
  fi
}

case "${1:-all}" in
  linux) linux ;;
  windows) windows ;;
  windows-zip) windows_zip ;;
  sums) sums ;;
  check) check ;;
  wheel) wheel ;;
  all) linux; windows; wheel; sums; check ;;
  *) sed -n '2,28p' "$0" >&2; exit 2 ;;
esac
