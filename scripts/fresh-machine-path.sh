#!/usr/bin/env bash
# Simulates a fresh machine for `cargo test`: makes DIR, a folder of symlinks to
# every program on the current PATH except those of the packages .ci/run installs
# (cmake, pkg-config, valgrind, g++, iperf3, iproute2, nftables, clang, strace, lld,
# llvm, abigail-tools)
# and the other tools a test may look for (wine, chromium), and prints a PATH
# that holds only DIR. It changes nothing outside DIR (delete it when done).
#
#   PATH=$(scripts/fresh-machine-path.sh target/fresh-path) cargo test
#
# Programs found by absolute path, and files (the SQLite header), are not hidden:
# docs/TESTING.md says what this simulation does not cover.
set -euo pipefail
dir=${1:?usage: fresh-machine-path.sh DIR}
packages=(cmake cmake-data pkg-config pkgconf pkgconf-bin valgrind g++ g++-12 iperf3
  iproute2 nftables clang clang-14 strace wine wine64 chromium chromium-driver lld lld-14
  llvm llvm-14 abigail-tools)
declare -A hidden=()
for package in "${packages[@]}"; do
  while read -r file; do
    hidden[$(readlink -f "$file")]=1
  done < <(dpkg -L "$package" 2>/dev/null | grep -E '/s?bin/' || true)
done
# Names that reach those programs through links (c++ -> g++ by alternatives).
for name in wine wine64 chromium c++ x86_64-linux-gnu-c++ clang clang++ g++ valgrind \
  cmake pkg-config ip tc nft iperf3 strace lld-link llvm-dlltool abidw abidiff; do
  hidden[$name]=1
done
rm -rf "$dir"
mkdir -p "$dir"
IFS=: read -ra entries <<<"$PATH"
for entry in "${entries[@]}"; do
  [ -d "$entry" ] || continue
  for program in "$entry"/*; do
    name=${program##*/}
    [ -x "$program" ] && [ ! -d "$program" ] || continue
    [ -e "$dir/$name" ] && continue # the first on PATH wins, as in a shell
    [ -z "${hidden[$name]:-}" ] || continue
    [ -z "${hidden[$(readlink -f "$program")]:-}" ] || continue
    ln -s "$program" "$dir/$name"
  done
done
realpath "$dir"
