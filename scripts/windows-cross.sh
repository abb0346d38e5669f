#!/usr/bin/env bash
# The Windows cross environment of pyme-streaming, and the Windows build made in it.
#
# This machine has no Windows standard library for the rustup toolchain, so the Windows
# artifacts are built in a Debian 13 ("trixie") chroot: its rustc (1.85) with rust-src and
# `-Zbuild-std`, the mingw-w64 toolchain, and wine to run what was built.
#
#   scripts/windows-cross.sh setup        make the chroot once (idempotent; cheap when done)
#   scripts/windows-cross.sh build        setup, then build the Windows CMake package (the
#                                         DLL, import libraries, .def, static library,
#                                         pyme-stream.exe) with cmake/toolchains/mingw-w64.cmake
#                                         and install it to $PYME_WIN_CACHE/build/prefix
#   scripts/windows-cross.sh check        cargo check --all-targets for x86_64-pc-windows-gnu
#                                         (the tests too: Unix-only ones must be gated)
#   scripts/windows-cross.sh run CMD...   run CMD in the chroot, the repository at /src,
#                                         $PYME_WIN_CACHE/build at /build (tests use it)
#   scripts/windows-cross.sh path         print the chroot's path and whether it is ready
#
# The chroot lives outside the repository, at $PYME_WIN_ROOT (default
# /var/cache/pyme-streaming/trixie), so CI runs on the same machine reuse it; the marker file
# `.pyme-ready-<version>` says it is complete. The cargo home and target dir of the cross
# build live beside it (never the host's ~/.cargo or target/), so the two never fight.
# Needs root (debootstrap, chroot, mounts in a private mount namespace); talks only to the
# Debian mirror of the machine's apt sources and to crates.io.
set -euo pipefail

repo="$(cd "$(dirname "$0")/.." && pwd)"
cache="${PYME_WIN_CACHE:-/var/cache/pyme-streaming}"
root="${PYME_WIN_ROOT:-$cache/trixie}"
# Bump when the package list or the setup steps change: an older chroot is completed again.
env_version=1
marker="$root/.pyme-ready-$env_version"
target="x86_64-pc-windows-gnu"
packages=(rustc cargo rust-src gcc-mingw-w64-x86-64 g++-mingw-w64-x86-64 binutils-mingw-w64-x86-64
  wine wine64 cmake make pkg-config git ca-certificates)

log() { echo "windows-cross: $*" >&2; }

# The Debian mirror the host's apt already uses (one-line or deb822 sources).
debian_mirror() {
  local uri
  uri="$(grep -rhoE '^(deb[[:space:]]+(\[[^]]*\][[:space:]]+)?|URIs:[[:space:]]*)https?://[^[:space:]]+/debian/?([[:space:]]|$)' \
    /etc/apt/sources.list /etc/apt/sources.list.d/ 2>/dev/null |
    grep -oE 'https?://[^[:space:]]+' | grep -v security | head -n1 || true)"
  echo "${uri:-http://deb.debian.org/debian}"
}

# Runs "$@" inside the chroot, in a private mount namespace: the mounts vanish with it,
# whatever happens, so nothing is left mounted on the host.
in_chroot() {
  mkdir -p "$cache/cargo-home" "$cache/build" "$root/src" "$root/build" "$root/cargo-home"
  mkdir -p -m 700 "$root/run/user/0"
  unshare --mount --propagation private -- /bin/bash -euc '
    root="$1" repo="$2" cache="$3"; shift 3
    mount -t proc proc "$root/proc"
    mount --rbind /dev "$root/dev"
    mount --bind "$repo" "$root/src"
    mount --bind "$cache/build" "$root/build"
    mount --bind "$cache/cargo-home" "$root/cargo-home"
    exec chroot "$root" /usr/bin/env -i \
      PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin HOME=/root LANG=C.UTF-8 XDG_RUNTIME_DIR=/run/user/0 \
      CARGO_HOME=/cargo-home CARGO_TARGET_DIR=/build/target \
      SSL_CERT_FILE=/etc/ssl/certs/host-ca-bundle.crt CARGO_HTTP_CAINFO=/etc/ssl/certs/host-ca-bundle.crt \
      WINEPREFIX=/root/.wine-pyme WINEDEBUG=-all WINEDLLOVERRIDES="mscoree,mshtml=" "$@"
  ' in_chroot "$root" "$repo" "$cache" "$@"
}

setup() {
  if [ -f "$marker" ]; then
    return 0
  fi
  if [ "$(id -u)" != 0 ]; then
    log "setup needs root (debootstrap, chroot)"
    exit 1
  fi
  mkdir -p "$cache"
  if ! command -v debootstrap >/dev/null 2>&1; then
    log "installing debootstrap on the host"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
  fi
  if [ ! -f "$root/.debootstrap-done" ]; then
    local mirror
    mirror="$(debian_mirror)"
    log "debootstrap --variant=minbase trixie $root from $mirror (takes a few minutes)"
    rm -rf "$root"
    debootstrap --variant=minbase trixie "$root" "$mirror" >"$cache/debootstrap.log" 2>&1 ||
      { tail -n 30 "$cache/debootstrap.log" >&2; exit 1; }
    touch "$root/.debootstrap-done"
  fi
  # The host's CA bundle, for cargo (crates.io) inside the chroot.
  mkdir -p "$root/etc/ssl/certs"
  cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/host-ca-bundle.crt"
  cp /etc/resolv.conf "$root/etc/resolv.conf" 2>/dev/null || true
  log "installing ${packages[*]} in the chroot"
  in_chroot /bin/sh -c "export DEBIAN_FRONTEND=noninteractive &&
    apt-get update -qq && apt-get install -y -qq --no-install-recommends ${packages[*]} >/dev/null"
  # build-std does not make rsbegin.o/rsend.o for windows-gnu: compile them once from the
  # std sources into the sysroot, next to where rustc looks for them.
  log "compiling rsbegin.o and rsend.o into the chroot's sysroot"
  in_chroot /bin/sh -euc '
    sysroot="$(rustc --print sysroot)"
    dir="$sysroot/lib/rustlib/'"$target"'/lib"
    mkdir -p "$dir"
    for object in rsbegin rsend; do
      RUSTC_BOOTSTRAP=1 rustc --target '"$target"' --emit=obj -O -C panic=abort \
        -o "$dir/$object.o" "$sysroot/lib/rustlib/src/rust/library/rtstartup/$object.rs"
    done'
  log "making the wine prefix"
  in_chroot /bin/sh -c 'wineboot --init >/dev/null 2>&1; wineserver --wait; true'
  touch "$marker"
  log "environment ready at $root"
}

build() {
  setup
  log "cmake + cargo build-std --target $target --release in the chroot, installed to $cache/build/prefix"
  in_chroot /bin/sh -euc '
    export RUSTC_BOOTSTRAP=1
    cmake -S /src -B /build/cmake -DCMAKE_BUILD_TYPE=Release \
      -DCMAKE_TOOLCHAIN_FILE=/src/cmake/toolchains/mingw-w64.cmake \
      -DPYME_RUST_TARGET='"$target"' -DPYME_BUILD_CLI=ON \
      -DPYME_CARGO_TARGET_DIR=/build/target -DPYME_CARGO_FLAGS=-Zbuild-std=std,panic_abort \
      -DCMAKE_INSTALL_PREFIX=/build/prefix >/build/cmake-configure.log
    cmake --build /build/cmake
    rm -rf /build/prefix
    cmake --install /build/cmake >/build/cmake-install.log
    rustc --version > /build/prefix/rustc-version.txt'
  log "installed: $(cd "$cache/build/prefix" && find . -type f | sort | tr '\n' ' ')"
}

# Every target (library, command, tests, benches, examples) checked for Windows, so that a
# test using a Unix-only API without a cfg gate is found here. The dev-dependencies need
# a newer Rust than Debian 13's 1.85 (proptest 1.12 asks for 1.88, criterion 0.8 for
# 1.86): --ignore-rust-version lets this rustc try, and criterion's one use of a 1.86
# API (f64::next_up) is allowed as the unstable feature it was in 1.85.
check() {
  setup
  log "cargo check --all-targets --target $target in the chroot"
  in_chroot /bin/sh -euc '
    export RUSTC_BOOTSTRAP=1
    cd /src
    cargo check --all-targets --target '"$target"' -Zbuild-std=std,panic_abort --locked \
      --ignore-rust-version --target-dir /build/target-check -Zprofile-rustflags \
      --config "profile.dev.package.criterion.rustflags=[\"-Zcrate-attr=feature(float_next_up_down)\"]"'
}

# One setup or build at a time on this machine (two CI runs, or two test binaries).
lock() {
  mkdir -p "$cache"
  exec 9>"$cache/.lock"
  flock 9
}

case "${1:-build}" in
  setup) lock; setup ;;
  build) lock; build ;;
  check) lock; check ;;
  run)
    shift
    [ -f "$marker" ] || { log "environment not set up: run '$0 setup' first"; exit 1; }
    in_chroot "$@"
    ;;
  path)
    echo "$root"
    [ -f "$marker" ] && echo ready || echo "not ready"
    ;;
  *)
    echo "usage: $0 setup|build|check|run CMD...|path" >&2
    exit 2
    ;;
esac
