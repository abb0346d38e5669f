#!/usr/bin/env bash
# What `serve --fsync` costs: `pyme-stream bench` against `serve` and `serve --fsync`
# on a root on this disk (not a tmpfs, where a sync does nothing), for 8 MiB and
# 64 KiB files, repetitions interleaved (plain, fsync, plain, fsync, ...), medians.
# Also this disk's own sync latency (dd with oflag=dsync). Results: docs/PERFORMANCE.md.
#
#   scripts/fsync-cost.sh [REPS] [DIR]     (after cargo build --release --bin pyme-stream)
set -euo pipefail
reps=${1:-5}
dir=${2:-$(mktemp -d "${TMPDIR:-/tmp}/pyme-fsync-cost.XXXXXX")}
bin=${PYME_STREAM:-target/release/pyme-stream}
trap 'rm -rf "$dir"' EXIT
echo "disk: dd 4 KiB x 1000, oflag=dsync:"
dd if=/dev/zero of="$dir/dd" bs=4k count=1000 oflag=dsync 2>&1 | tail -1
rm -f "$dir/dd"
run() { # size count mode rep
  local root="$dir/root-$3-$1-$4"
  local out="$dir/serve-$3-$1-$4.out"
  local extra=()
  [ "$3" = fsync ] && extra=(--fsync)
  "$bin" serve --advertise none --port 0 --root "$root" "${extra[@]}" >"$out" 2>/dev/null &
  local pid=$!
  while ! grep -q listening "$out" 2>/dev/null; do sleep 0.05; done
  local address
  address=$(sed -n 's/^listening on //p' "$out")
  "$bin" bench --servers "$address" --size "$1" --count "$2" --json 2>/dev/null | tail -1 \
    | python3 -c "import json,sys; d=json.load(sys.stdin); print('$1 $3', d['seconds'], d['acknowledged'])"
  kill "$pid"; wait "$pid" 2>/dev/null || true
  rm -rf "$root"
}
for rep in $(seq "$reps"); do
  for mode in plain fsync; do
    run 8388608 60 "$mode" "$rep"
    run 65536 2000 "$mode" "$rep"
  done
done | python3 -c '
import sys, statistics
rows = {}
for line in sys.stdin:
    size, mode, seconds, files = line.split()
    rows.setdefault((int(size), mode), []).append((float(seconds), int(files)))
for (size, mode), runs in sorted(rows.items()):
    mbs = [f * size / s / 1e6 for s, f in runs]
    fps = [f / s for s, f in runs]
    print(f"{size:>8} B {mode:>5}: median {statistics.median(mbs):8.1f} MB/s {statistics.median(fps):8.1f} files/s  (runs: " + ", ".join(f"{x:.0f}" for x in mbs) + " MB/s)")
'
