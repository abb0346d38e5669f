#!/usr/bin/env bash
# Makes docs/monitor.png, the picture of `pyme-stream monitor`'s page in the README:
# three data servers on loopback (temporary roots under target/screenshot/), a
# camera-like bench streaming to them for a while at a rate that changes, one server
# stopped at the end so that a down row shows, then headless Chromium photographs the
# page. Everything runs on loopback; everything it starts is stopped and its folders
# removed on exit.
#
#   scripts/screenshot.sh            (about 60 s; SECONDS_OF_DATA=N to change the run)
#
# Needs chromium (Debian's `chromium`) and cargo. As root, Chromium runs with
# --no-sandbox.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v chromium >/dev/null || { echo "screenshot.sh: chromium is missing (apt-get install chromium)" >&2; exit 2; }
seconds=${SECONDS_OF_DATA:-50}
work=$PWD/target/screenshot
rm -rf "$work"
mkdir -p "$work"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill -CONT "$pid" 2>/dev/null || true; kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

cargo build --quiet --bin pyme-stream
bin=$PWD/target/debug/pyme-stream

# Starts a process in the background and waits for its first line, left in $line
# (not a command substitution: that would run it in a subshell, out of `pids`).
start() {
  local out=$work/out.${#pids[@]}
  "$@" >"$out" 2>/dev/null &
  pids+=($!)
  for _ in $(seq 100); do [ -s "$out" ] && break; sleep 0.1; done
  line=$(head -1 "$out")
}

servers=()
server_pids=()
for name in node1 node2 node3; do
  start "$bin" serve --advertise none --port 0 --root "$work/$name"
  servers+=("${line#listening on }")
  server_pids+=("${pids[-1]}")
done
list=$(IFS=,; echo "${servers[*]}")
start "$bin" monitor --port 0 --servers "$list"
url=${line#monitoring on }

# A camera at 100, then 250, then 150 frames per second of 200 kB frames; the last
# one still streaming when the picture is taken.
third=$((seconds / 3))
for rate in 100 250; do
  "$bin" bench --servers "$list" --count $((rate * third)) --size 200000 --rate "$rate" \
    --prefix "screenshot-$rate" >/dev/null 2>&1 || true
done
"$bin" bench --servers "$list" --count 1000000 --size 200000 --rate 150 \
  --prefix screenshot-150 >/dev/null 2>&1 &
pids+=($!)
sleep "$third"
# The third node stops answering (SIGSTOP): shown down within 3 s; the bench moves
# its files to the other two.
kill -STOP "${server_pids[2]}"
sleep 4

profile=$work/chromium
chromium --headless=new --no-sandbox --disable-gpu --no-first-run --hide-scrollbars \
  --user-data-dir="$profile" --window-size=1400,420 --virtual-time-budget=2500 \
  --screenshot="$PWD/docs/monitor.png" "$url" >/dev/null 2>&1
echo "wrote docs/monitor.png ($(stat -c %s docs/monitor.png) bytes) from $url"
