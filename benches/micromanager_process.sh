#!/usr/bin/env bash
# What the Micro-Manager adapter's Process() costs the camera (issue 26, item 4).
#
# The real MMCore (pymmcore) runs the project's test camera at 2048x2048 16-bit, one
# frame every 10 ms on a fixed schedule (100 frames/s), 1000 frames, first without the
# PymeStreamer image processor and then with it, and reports Process()'s own times
# (the adapter's ProcessTimeUs: p50 p99 max) and the camera's InsertImage times
# (MMCore's copy into its circular buffer, plus Process() when present). Adapter and
# library are Release builds; two `pyme-stream serve` (release) on loopback.
#
# Configurations, interleaved (REPS rounds, each round runs each once):
#   store-all      the servers store to this machine's disk and the program pops
#                  every frame into Python: everything of an acquisition on one host
#   discard-display the servers discard what they receive (their storage, which a
#                  cluster does on other machines, is not this host's) and the
#                  program shows the newest frame 30 times a second, as a live view
#   discard-display-huffman  the same with Huffman PZF (encoded on the library's
#                  threads)
#
# Run: PYME_MM_PYTHON=/path/to/python-with-pymmcore bash benches/micromanager_process.sh
# (REPS=3, FRAMES=1000; about 30 s a run). Results: docs/MICROMANAGER.md, "Process() cost".
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYME_MM_PYTHON:-python3}
REPS=${REPS:-3}
FRAMES=${FRAMES:-1000}
work=$(mktemp -d "${TMPDIR:-/tmp}/mm-process.XXXXXX")
pids=()
servers=""
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

mmdevice=$(PYTHON=$PY scripts/mmdevice.sh target/mmdevice)
cmake -S . -B target/mm-release -DCMAKE_BUILD_TYPE=Release -DPYME_BUILD_MICROMANAGER=ON \
    "-DMMDEVICE_SOURCE_DIR=$mmdevice" >/dev/null
cmake --build target/mm-release --target mmgr_dal_PymeStreaming mmgr_dal_PymeTestCamera >/dev/null
cargo build --release --quiet --bin pyme-stream

# Starts two servers (extra arguments: --discard or nothing); sets servers="host:port;host:port".
start_servers() {
    servers=""
    for i in 1 2; do
        mkdir -p "$work/root$i"
        target/release/pyme-stream serve --root "$work/root$i" --port 0 --bind 127.0.0.1 \
            --advertise none "$@" >"$work/server$i.out" 2>/dev/null &
        pids+=($!)
        for _ in $(seq 100); do
            grep -q "^listening on " "$work/server$i.out" && break
            sleep 0.05
        done
        servers="$servers${servers:+;}$(sed -n 's/^listening on //p' "$work/server$i.out" | head -1)"
    done
}
stop_servers() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    pids=()
    rm -rf "$work"/root*
}

run() { # label, server arguments, compression, reader
    local label=$1 extra=$2 compression=$3 reader=$4
    # shellcheck disable=SC2086
    start_servers $extra
    "$PY" tests/micromanager/driver.py target/mm-release/micro-manager bench \
        "{\"servers\": \"$servers\", \"frames\": $FRAMES, \"series\": [\"bench/$label-$RANDOM\"], \"Compression\": \"$compression\", \"reader\": \"$reader\"}" |
        "$PY" -c "import json, sys; r = json.loads(sys.stdin.read()); r['label'] = '$label'; print(json.dumps(r))" \
        >>"$work/results.jsonl"
    stop_servers
    tail -1 "$work/results.jsonl" | "$PY" -c "
import json, sys
r = json.loads(sys.stdin.read())
c = r['counters']
print('%-26s Process p50/p99/max %s us | InsertImage without %s, with %s us | acknowledged %d dropped %d failed %d waited %d'
      % (r['label'], r['process_us'], r['without'], r['with'], c['FramesAcknowledged'], c['FramesDropped'], c['FramesFailed'], c['FramesWaited']))"
}

echo "$(date -u +%FT%TZ) load: $(cut -d' ' -f1-3 /proc/loadavg), $(nproc) cores, REPS=$REPS FRAMES=$FRAMES"
for rep in $(seq "$REPS"); do
    case $((rep % 3)) in
        1) order="a b c" ;;
        2) order="b c a" ;;
        0) order="c a b" ;;
    esac
    for which in $order; do
        case $which in
            a) run store-all "" none all ;;
            b) run discard-display "--discard" none display ;;
            c) run discard-display-huffman "--discard" huffman display ;;
        esac
    done
done
echo "$(date -u +%FT%TZ) load: $(cut -d' ' -f1-3 /proc/loadavg)"
"$PY" - "$work/results.jsonl" <<'EOF'
import json, statistics, sys
rows = [json.loads(line) for line in open(sys.argv[1])]
print("| configuration | Process() p50 / p99 / max (median of runs), ms | p99 of each run, ms | InsertImage p99 without / with, ms | frames acknowledged | frames that waited for a buffer |")
print("|---|---|---|---|---|---|")
for label in dict.fromkeys(r["label"] for r in rows):
    runs = [r for r in rows if r["label"] == label]
    parts = [[float(x) / 1000 for x in r["process_us"].split()] for r in runs]
    med = [statistics.median(p[i] for p in parts) for i in range(3)]
    without = statistics.median(float(r["without"].split()[1]) / 1000 for r in runs)
    with_ = statistics.median(float(r["with"].split()[1]) / 1000 for r in runs)
    acked = ", ".join(str(r["counters"]["FramesAcknowledged"]) for r in runs)
    waited = ", ".join(str(r["counters"]["FramesWaited"]) for r in runs)
    print("| %s | %.2f / %.2f / %.2f | %s | %.2f / %.2f | %s | %s |" % (
        label, med[0], med[1], med[2], ", ".join("%.2f" % p[1] for p in parts), without, with_, acked, waited))
EOF
