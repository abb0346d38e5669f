#!/usr/bin/env bash
# Gets MMDevice's sources (BSD; the device interface Micro-Manager adapters are
# built against) from the `pymmcore` sdist of the package registry (PyPI) into a
# cache, and prints the folder that holds them (for -DMMDEVICE_SOURCE_DIR).
#
#   scripts/mmdevice.sh [cache-dir]     (default: $XDG_CACHE_HOME/pyme-streaming/mmdevice,
#                                        else ~/.cache/pyme-streaming/mmdevice)
#
# pymmcore 12.5.1.75.0 is MMCore with device interface 75 and module interface 10;
# the adapter must be built with the MMDevice of exactly that interface. pip finds
# the sdist's address on the registry (it cannot build the sdist's metadata without
# meson, so the file is then fetched from that address) and its SHA-256 is checked
# against the one pinned here. Nothing of it is ever committed to this project.
# Needs: python3 with pip (PYTHON=... to choose), tar.
set -euo pipefail

version=12.5.1.75.0
sha256=30e7dc47d76fd774fc4b34b27c77565d6d523d819575dbb4731b04035c123d76
python=${PYTHON:-python3}
cache=${1:-${XDG_CACHE_HOME:-$HOME/.cache}/pyme-streaming/mmdevice}
out="$cache/pymmcore-$version"

if [ -f "$out/subprojects/mmdevice/MMDevice.h" ]; then
  echo "$out/subprojects/mmdevice"
  exit 0
fi
mkdir -p "$cache"
tarball="$cache/pymmcore-$version.tar.gz"
if [ ! -f "$tarball" ]; then
  url=$("$python" -m pip download -vv --no-deps --no-binary :all: --no-build-isolation \
          "pymmcore==$version" -d "$cache/pip" 2>&1 \
        | grep -oE "https://[^ \"']*/pymmcore-$version\.tar\.gz" | head -n 1 || true)
  rm -rf "$cache/pip"
  if [ -z "$url" ]; then
    echo "mmdevice.sh: pip did not find pymmcore-$version.tar.gz on the package registry" >&2
    exit 1
  fi
  "$python" - "$url" "$tarball.part" <<'PY'
import sys, urllib.request
with urllib.request.urlopen(sys.argv[1], timeout=60) as r, open(sys.argv[2], "wb") as f:
    f.write(r.read())
PY
  got=$(sha256sum "$tarball.part" | cut -d' ' -f1)
  if [ "$got" != "$sha256" ]; then
    rm -f "$tarball.part"
    echo "mmdevice.sh: $url has SHA-256 $got, expected $sha256" >&2
    exit 1
  fi
  mv "$tarball.part" "$tarball"
fi
rm -rf "$out.part"
mkdir -p "$out.part"
tar -xzf "$tarball" -C "$out.part" --strip-components=1 "pymmcore-$version/subprojects/mmdevice"
mv "$out.part" "$out"
echo "$out/subprojects/mmdevice"
