#!/usr/bin/env bash
# The ABI baseline of libpyme_streaming.so (docs/ABI.md):
#
#   scripts/abi.sh update   rebuild the library and rewrite abi/libpyme_streaming.abi
#                           and tests/abi/probe.c (the C probe), then commit them
#   scripts/abi.sh check    rebuild the library and compare it with the baseline:
#                           fails on an incompatible change without a raised soname,
#                           and on any difference not recorded (a stale baseline)
#   scripts/abi.sh history  only the rule on the committed baselines: every earlier
#                           version to the next, an incompatible change raises the soname
#
# The library is the one CMake installs (soname libpyme_streaming.so.N, only the C API
# global, symbol versions), built by CMake's Debug configuration (cargo's dev profile)
# with full debug information (CARGO_PROFILE_DEV_DEBUG=2; abidw needs the types), in
# target/abi. abidw and abidiff come from Debian's abigail-tools.
set -euo pipefail
cd "$(dirname "$0")/.."
baseline=abi/libpyme_streaming.abi
suppressions=abi/suppressions.ini
work=${PYME_ABI_WORK:-target/abi}

for tool in abidw abidiff cmake; do
  command -v "$tool" >/dev/null || { echo "abi.sh: $tool is missing (apt-get install abigail-tools cmake)" >&2; exit 2; }
done

build() {
  mkdir -p "$work"
  # Full debug information for this build only (a subshell): the cargo test run by
  # `update` keeps the caller's profile settings and target directory.
  (
    export CARGO_PROFILE_DEV_DEBUG=2 CARGO_INCREMENTAL=0
    cmake -S . -B "$work/cmake" -DCMAKE_BUILD_TYPE=Debug "-DPYME_CARGO_TARGET_DIR=$PWD/$work/cargo" >"$work.configure.log"
    cmake --build "$work/cmake" >"$work.build.log" 2>&1 || { tail -40 "$work.build.log" >&2; exit 1; }
  )
  library=$(find "$work/cmake" -maxdepth 1 -name 'libpyme_streaming.so.*.*' -type f | head -1)
  [ -n "$library" ] || { echo "abi.sh: no libpyme_streaming.so.X.Y.Z in $work/cmake" >&2; exit 1; }
}

dump() { # library -> ABI XML on stdout, without file locations (they change with any edit)
  abidw --no-show-locs --no-corpus-path --suppressions "$suppressions" "$1"
}

soname_of() { sed -n "s/.*soname='\([^']*\)'.*/\1/p" "$1" | head -1; }

# abidiff's exit status is a bit field: 4 = the ABI changed, 8 = incompatibly.
compare() { # old new -> sets diff_status, prints the report
  diff_status=0
  abidiff --no-show-locs --suppressions "$suppressions" "$1" "$2" || diff_status=$?
  if [ $((diff_status & 3)) -ne 0 ]; then
    echo "abi.sh: abidiff failed ($diff_status)" >&2
    exit 2
  fi
}

# Incompatible: abidiff says so (a symbol removed), or a function or variable was
# removed or changed (a parameter's type, a struct's layout other than growing at its
# end). Additions alone are compatible.
incompatible() { # report file
  [ $((diff_status & 8)) -ne 0 ] && return 0
  grep -Eq '(Functions|Variables) changes summary: ([1-9][0-9]*) Removed|, ([1-9][0-9]*) Changed' "$1"
}

history() {
  # Each commit that changed the baseline, against the baseline of each of its parents:
  # what that commit itself changed. (Not against the previous commit in a linear log:
  # branches made in parallel interleave there, and one branch's baseline would seem
  # to remove what the other added.) A merge is checked against both sides.
  local revisions revision parent
  revisions=$(git log --reverse --format=%H -- "$baseline")
  local dir
  dir=$(mktemp -d)
  trap 'rm -rf "$dir"' RETURN
  for revision in $revisions; do
    git show "$revision:$baseline" >"$dir/$revision.abi" 2>/dev/null || continue
    for parent in $(git rev-list --parents -n 1 "$revision" | cut -d' ' -f2-); do
      git show "$parent:$baseline" >"$dir/parent.abi" 2>/dev/null || continue
      cmp -s "$dir/parent.abi" "$dir/$revision.abi" && continue
      compare "$dir/parent.abi" "$dir/$revision.abi" >"$dir/report.txt"
      if incompatible "$dir/report.txt" &&
         [ "$(soname_of "$dir/parent.abi")" = "$(soname_of "$dir/$revision.abi")" ]; then
        cat "$dir/report.txt"
        echo "abi.sh: commit $revision changed the ABI incompatibly without raising the soname" \
             "($(soname_of "$dir/$revision.abi")): raise PYME_SOVERSION in CMakeLists.txt (docs/ABI.md)" >&2
        exit 1
      fi
    done
  done
}

case "${1:-}" in
  update)
    build
    dump "$library" >"$baseline"
    echo "abi.sh: wrote $baseline from $library"
    cargo test --test abi_probe -- --ignored write_probe --exact >/dev/null
    echo "abi.sh: wrote tests/abi/probe.c; commit both"
    ;;
  check)
    build
    dump "$library" >"$work/current.abi"
    compare "$baseline" "$work/current.abi" >"$work/abidiff.txt"
    if incompatible "$work/abidiff.txt" &&
       [ "$(soname_of "$baseline")" = "$(soname_of "$work/current.abi")" ]; then
      cat "$work/abidiff.txt"
      echo "abi.sh: an incompatible ABI change with the same soname ($(soname_of "$baseline")):" \
           "raise PYME_SOVERSION in CMakeLists.txt, then run scripts/abi.sh update (docs/ABI.md)" >&2
      exit 1
    fi
    if [ "$diff_status" -ne 0 ]; then
      cat "$work/abidiff.txt"
      echo "abi.sh: $baseline is stale (the library's ABI differs from it): run scripts/abi.sh update and commit" >&2
      exit 1
    fi
    history
    echo "abi.sh: the library matches $baseline"
    ;;
  history)
    history
    echo "abi.sh: every recorded incompatible change raised the soname"
    ;;
  *)
    sed -n '2,16p' "$0" >&2
    exit 2
    ;;
esac
