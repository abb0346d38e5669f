#!/usr/bin/env bash
# End-to-end benchmarks of pyme-stream on loopback, against the physical limit.
#
# Builds the release binary, starts `pyme-stream serve` servers (and a deliberately
# slow receiver), measures the loopback limit with iperf3, runs every scenario RUNS
# times, interleaved (run 1 of every scenario, then run 2, ...) so that the noise of
# a shared machine hits all of them alike, and prints one table of medians:
#
#   scenario | figure | limit | ratio
#
# Ratios are taken inside one run, then their median is reported.
#
# Environment:
#   RUNS=3           repetitions of each scenario (the median is reported)
#   QUICK=1          small counts: a smoke run of about a minute
#   BIG_SIZE         size of the large files (default 8 MiB)
#   SMALL_SIZE       size of the small files (default 4 KiB)
#   BIG_COUNT        large files per throughput run
#   SMALL_COUNT      small files per run
#   RATE_COUNT       files of the latency runs (produced at RATE per second)
#   RATE             frames per second of the latency runs (default 50)
#   MEM_COUNT        files of the memory run (slow receiver)
#   SLOW_MS          the slow receiver's pause per request, in ms (default 20)
#   IPERF_SECONDS    length of each iperf3 run (default 5)
#   PYTHON_STREAMER  a python3 with PYME installed, for the reference comparison
#                    (default: python3)
#   HUGE_TMPFS=0     skip the server storing on a tmpfs with huge pages (that
#                    scenario needs root: it mounts a tmpfs with huge=within_size
#                    in a private mount namespace, seen only by that server)
#   PIN=1            give the servers a core of their own, as on a real cluster:
#                    servers (and iperf3's server) on the last core, clients on the
#                    others (taskset). Default: everything shares every core.
#
# All traffic stays on 127.0.0.1. Nothing is installed by this script.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
BIN=$ROOT/target/release/pyme-stream

RUNS=${RUNS:-3}
QUICK=${QUICK:-0}
BIG_SIZE=${BIG_SIZE:-8388608}
SMALL_SIZE=${SMALL_SIZE:-4096}
RATE=${RATE:-50}
SLOW_MS=${SLOW_MS:-20}
QUEUE_BYTES=67108864
PYTHON_STREAMER=${PYTHON_STREAMER:-python3}
if [[ $QUICK == 1 ]]; then
    BIG_COUNT=${BIG_COUNT:-40}
    SMALL_COUNT=${SMALL_COUNT:-20000}
    RATE_COUNT=${RATE_COUNT:-50}
    MEM_COUNT=${MEM_COUNT:-30}
    IPERF_SECONDS=${IPERF_SECONDS:-2}
else
    BIG_COUNT=${BIG_COUNT:-300}
    SMALL_COUNT=${SMALL_COUNT:-300000}
    RATE_COUNT=${RATE_COUNT:-250}
    MEM_COUNT=${MEM_COUNT:-100}
    IPERF_SECONDS=${IPERF_SECONDS:-5}
fi

PIN=${PIN:-0}
HUGE_TMPFS=${HUGE_TMPFS:-1}
CLIENT=()
SERVER=()
PINNING="client and servers share all $(nproc) cores"
if [[ $PIN == 1 ]]; then
    cores=$(nproc)
    if ((cores < 2)); then
        echo "error: PIN=1 needs at least 2 cores" >&2
        exit 1
    fi
    CLIENT=(taskset -c "0-$((cores - 2))")
    SERVER=(taskset -c "$((cores - 1))")
    PINNING="clients on cores 0-$((cores - 2)), servers on core $((cores - 1))"
fi

for tool in iperf3 python3 $([[ $PIN == 1 ]] && echo taskset); do
    if ! command -v "$tool" > /dev/null; then
        echo "error: $tool is missing: apt-get install -y $tool" >&2
        exit 1
    fi
done

WORK=$(mktemp -d "${TMPDIR:-/tmp}/pyme-bench.XXXXXX")
SHM_ROOT=/dev/shm/pyme-bench-$$
PIDS=()

cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2> /dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        wait "$pid" 2> /dev/null || true
    done
    rm -rf "$WORK" "$SHM_ROOT"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { echo "[$(date +%H:%M:%S)] $*" >&2; }

# --- helpers ------------------------------------------------------------------

# Waits for the first line `listening on HOST:PORT` in file $1 and prints HOST:PORT.
wait_listening() {
    local file=$1 pid=$2 tries
    for ((tries = 0; tries < 200; tries++)); do
        if [[ -s $file ]] && head -n 1 "$file" | grep -q '^listening on '; then
            head -n 1 "$file" | sed 's/^listening on //'
            return 0
        fi
        if ! kill -0 "$pid" 2> /dev/null; then
            break
        fi
        sleep 0.05
    done
    echo "error: server did not start; its output:" >&2
    cat "$file" >&2
    return 1
}

# start_server VAR ARGS...: starts `pyme-stream serve ARGS`, sets VAR to HOST:PORT.
start_server() {
    local var=$1 out pid address
    shift
    out=$WORK/server-$var.out
    "${SERVER[@]}" "$BIN" serve --port 0 --advertise none "$@" > "$out" 2>&1 &
    pid=$!
    PIDS+=("$pid")
    address=$(wait_listening "$out" "$pid")
    printf -v "$var" '%s' "$address"
    printf -v "${var}_PID" '%s' "$pid"
}

# CPU seconds (user + system) used so far by process $1 and all its threads.
cpu_seconds() {
    python3 -c '
import os, sys
fields = open("/proc/%s/stat" % sys.argv[1]).read().rsplit(")", 1)[1].split()
print((int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK"))' "$1"
}

# A receiver slower than any producer: answers every PUT after a pause.
write_slow_receiver() {
    cat > "$WORK/slow_receiver.py" << 'EOF'
import socket, sys, threading, time

pause = float(sys.argv[1]) / 1000.0
listener = socket.socket()
listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
listener.bind(("127.0.0.1", 0))
listener.listen(16)
print("listening on 127.0.0.1:%d" % listener.getsockname()[1], flush=True)

def serve(conn):
    buf = b""
    chunk = bytearray(1 << 20)
    try:
        while True:
            while b"\r\n\r\n" not in buf:
                data = conn.recv(65536)
                if not data:
                    return
                buf += data
            head, buf = buf.split(b"\r\n\r\n", 1)
            length, close = 0, False
            for line in head.split(b"\r\n")[1:]:
                key, _, value = line.partition(b":")
                if key.strip().lower() == b"content-length":
                    length = int(value)
                elif key.strip().lower() == b"connection":
                    close = value.strip().lower() == b"close"
            time.sleep(pause)
            taken = min(length, len(buf))
            buf = buf[taken:]
            remaining = length - taken
            while remaining > 0:
                n = conn.recv_into(chunk, min(remaining, len(chunk)))
                if n == 0:
                    return
                remaining -= n
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
            if close:
                return
    finally:
        conn.close()

while True:
    conn, _ = listener.accept()
    threading.Thread(target=serve, args=(conn,), daemon=True).start()
EOF
}

start_slow_receiver() {
    local out=$WORK/slow-receiver.out pid
    "${SERVER[@]}" python3 "$WORK/slow_receiver.py" "$SLOW_MS" > "$out" 2>&1 &
    pid=$!
    PIDS+=("$pid")
    SLOW=$(wait_listening "$out" "$pid")
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# iperf3 single stream on loopback; prints MB/s (10^6 bytes per second).
# iperf_mb_per_s [FILE]: with FILE, iperf3's server writes what it receives into FILE
# (iperf3 -F) and the client sends BIG_COUNT x BIG_SIZE bytes: the speed of a plain
# read-then-write receiver storing into that file system.
iperf_mb_per_s() {
    local file=${1:-} port out attempt pid server_args=() client_args=(-t "$IPERF_SECONDS")
    port=$(free_port)
    out=$WORK/iperf-client.json
    if [[ -n $file ]]; then
        server_args=(-F "$file")
        client_args=(-n "$((BIG_COUNT * BIG_SIZE))")
    fi
    "${SERVER[@]}" iperf3 -s -1 -B 127.0.0.1 -p "$port" "${server_args[@]}" > "$WORK/iperf-server.out" 2>&1 &
    pid=$!
    PIDS+=("$pid")
    for ((attempt = 0; attempt < 50; attempt++)); do
        sleep 0.1
        if "${CLIENT[@]}" iperf3 -c 127.0.0.1 -p "$port" "${client_args[@]}" -J > "$out" 2> /dev/null; then
            break
        fi
    done
    wait "$pid" 2> /dev/null || true
    [[ -z $file ]] || rm -f "$file"
    python3 -c '
import json, sys
end = json.load(open(sys.argv[1]))["end"]
summary = end.get("sum_received") or end["sum"]
print(summary["bits_per_second"] / 8 / 1e6)' "$out"
}

# A server storing on a tmpfs mounted with huge=within_size (large files get pages as
# large as each write, up to 2 MiB). The mount is made in a private mount namespace that only this server sees,
# and goes away with it; the machine's mounts are not touched. Sets HUGE (HOST:PORT)
# and HUGE_PID, or HUGE_REASON when it cannot be done.
start_huge_tmpfs_server() {
    local dir=$WORK/huge-tmpfs out=$WORK/server-huge.out size
    HUGE_REASON=""
    if [[ $HUGE_TMPFS != 1 ]]; then
        HUGE_REASON="HUGE_TMPFS=0"
        return 0
    fi
    if [[ $(id -u) != 0 ]] || ! command -v unshare > /dev/null || ! command -v nsenter > /dev/null ||
        ! unshare -m --propagation private true 2> /dev/null; then
        HUGE_REASON="needs root and unshare/nsenter (util-linux) to mount a private tmpfs"
        return 0
    fi
    mkdir -p "$dir"
    size=$((BIG_COUNT * BIG_SIZE + 256 * 1048576))
    # shellcheck disable=SC2016 # expanded by the inner shell
    "${SERVER[@]}" unshare -m --propagation private sh -c \
        'mount -t tmpfs -o "huge=within_size,size=$3" pyme-bench-huge "$1" && exec "$2" serve --port 0 --advertise none --root "$1"' \
        sh "$dir" "$BIN" "$size" > "$out" 2>&1 &
    HUGE_PID=$!
    PIDS+=("$HUGE_PID")
    if ! HUGE=$(wait_listening "$out" "$HUGE_PID"); then
        HUGE_REASON="the private tmpfs could not be mounted: $(head -n 1 "$out")"
    fi
}

# bench KEY RUN ARGS...: one `pyme-stream bench` run, its JSON kept as KEY-RUN.json.
bench() {
    local key=$1 run=$2 out
    shift 2
    out=$WORK/$key-$run.out
    if ! "${CLIENT[@]}" "$BIN" bench --json --prefix "$key-run$run" "$@" > "$out" 2> "$WORK/$key-$run.err"; then
        log "warning: $key run $run: not every file was acknowledged: $(tail -n 1 "$out")"
        sed -n '1,5p' "$WORK/$key-$run.err" >&2
    fi
    tail -n 1 "$out" > "$WORK/$key-$run.json"
}

# bench_server KEY RUN PID ARGS...: bench, and the CPU time the server (PID) spent
# meanwhile, kept as KEY_server-RUN.json {"cpu_s": ...}.
bench_server() {
    local key=$1 run=$2 pid=$3 before
    shift 3
    before=$(cpu_seconds "$pid")
    bench "$key" "$run" "$@"
    echo "{\"cpu_s\": $(python3 -c 'import sys; print(float(sys.argv[2]) - float(sys.argv[1]))' "$before" "$(cpu_seconds "$pid")")}" \
        > "$WORK/${key}_server-$run.json"
}

# Writes as much as a storing run will, into /dev/shm, and frees it at once, so that
# the run after it gets memory the guest has just used. On a virtual machine whose
# balloon device reports free pages to the host (this project's machine), memory left
# free for a few seconds is given back, and the next first touch of each page costs the
# host a fault: storing into tmpfs then measures the host, not the server (see
# docs/PERFORMANCE.md).
warm_memory() {
    head -c "$((BIG_COUNT * BIG_SIZE))" /dev/zero > "$SHM_ROOT/warm"
    rm -f "$SHM_ROOT/warm"
}

# median KEY EXPR: median over the runs of EXPR evaluated on each run's JSON of KEY
# (EXPR is Python over `r`, e.g. 'r["mb_per_s"]'; other keys via `j("OTHER")`).
median() {
    python3 - "$WORK" "$RUNS" "$1" "$2" << 'EOF'
import json, statistics, sys
work, runs, key, expr = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
values = []
for run in range(1, runs + 1):
    def j(other, run=run):
        with open("%s/%s-%d.json" % (work, other, run)) as f:
            return json.load(f)
    try:
        r = j(key)
        values.append(eval(expr, {"r": r, "j": j}))
    except (OSError, ValueError, KeyError, ZeroDivisionError) as error:
        print("warning: %s run %d: %s" % (key, run, error), file=sys.stderr)
print(statistics.median(values) if values else float("nan"))
EOF
}

# --- setup --------------------------------------------------------------------

log "building release"
(cd "$ROOT" && cargo build --release --quiet)

mkdir -p "$SHM_ROOT"
start_server S1 --discard --root "$WORK/root1"
start_server S2 --discard --root "$WORK/root2"
start_server S3 --discard --root "$WORK/root3"
start_server SHM --root "$SHM_ROOT"
start_huge_tmpfs_server
write_slow_receiver
start_slow_receiver
log "servers: discard $S1 $S2 $S3; tmpfs $SHM; huge-page tmpfs ${HUGE:-none ($HUGE_REASON)}; slow receiver $SLOW"
log "$PINNING"
log "runs $RUNS; $BIG_COUNT x $BIG_SIZE B, $SMALL_COUNT x $SMALL_SIZE B, $RATE_COUNT at $RATE/s, $MEM_COUNT to the slow receiver"

PYTHON_OK=0
PYTHON_REASON=""
# PYME's cluster modules start mDNS discovery when imported (multicast on every
# interface). The stand-in below stops that, but as a second guard PYME is only
# ever imported inside a network namespace whose only interface is lo:
#   ip netns add pymebench && ip netns exec pymebench ip link set lo up
#   ip netns exec pymebench bash benches/end_to_end.sh
interfaces=$(ls /sys/class/net)
if [ "$interfaces" != "lo" ]; then
    PYTHON_REASON="PYME's streamer runs only inside a network namespace with lo alone (see the comment above)"
elif "$PYTHON_STREAMER" -c 'import sys, types; sys.modules["sphinx"] = types.ModuleType("sphinx"); import PYME.IO.cluster_streaming' 2> /dev/null; then
    PYTHON_OK=1
    start_server PYSTORE --root "$SHM_ROOT/python"
else
    PYTHON_REASON="$PYTHON_STREAMER cannot import PYME.IO.cluster_streaming (pip install python-microscopy, or set PYTHON_STREAMER)"
fi

# --- the runs -----------------------------------------------------------------

for ((run = 1; run <= RUNS; run++)); do
    log "run $run/$RUNS: iperf3"
    echo "{\"mb_per_s\": $(iperf_mb_per_s)}" > "$WORK/iperf-$run.json"
    echo "{\"mb_per_s\": $(iperf_mb_per_s "$SHM_ROOT/iperf-received")}" > "$WORK/iperf_tmpfs-$run.json"
    log "run $run/$RUNS: 8 MiB files"
    bench_server big_copy "$run" "$S1_PID" --servers "$S1" --count "$BIG_COUNT" --size "$BIG_SIZE"
    bench big_zero "$run" --servers "$S1" --count "$BIG_COUNT" --size "$BIG_SIZE" --zero-copy
    bench big_rr3 "$run" --servers "$S1,$S2,$S3" --count "$BIG_COUNT" --size "$BIG_SIZE"
    bench_server big_tmpfs "$run" "$SHM_PID" --servers "$SHM" --count "$BIG_COUNT" --size "$BIG_SIZE"
    rm -rf "$SHM_ROOT/big_tmpfs-run$run"
    warm_memory
    bench_server big_tmpfs_warm "$run" "$SHM_PID" --servers "$SHM" --count "$BIG_COUNT" --size "$BIG_SIZE"
    rm -rf "$SHM_ROOT/big_tmpfs_warm-run$run"
    if [[ -z $HUGE_REASON ]]; then
        warm_memory
        bench_server big_huge "$run" "$HUGE_PID" --servers "$HUGE" --count "$BIG_COUNT" --size "$BIG_SIZE"
        nsenter -t "$HUGE_PID" -m rm -rf "$WORK/huge-tmpfs/big_huge-run$run"
    fi
    log "run $run/$RUNS: 4 KiB files"
    bench small "$run" --servers "$S1" --count "$SMALL_COUNT" --size "$SMALL_SIZE"
    log "run $run/$RUNS: put latency at $RATE files/s"
    # As a camera driver arms: buffers for 4 frames in flight prepared before
    # the first put; lat_cold is the same without (the first puts fault in
    # fresh memory), for reference.
    bench lat_copy "$run" --servers "$S1" --count "$RATE_COUNT" --size "$BIG_SIZE" --rate "$RATE" --prepare-buffers 4
    bench lat_cold "$run" --servers "$S1" --count "$RATE_COUNT" --size "$BIG_SIZE" --rate "$RATE"
    bench lat_zero "$run" --servers "$S1" --count "$RATE_COUNT" --size "$BIG_SIZE" --rate "$RATE" --zero-copy
    log "run $run/$RUNS: memory with a slow receiver"
    bench memory "$run" --servers "$SLOW" --count "$MEM_COUNT" --size "$BIG_SIZE" --queue-bytes "$QUEUE_BYTES"
    if [[ $PYTHON_OK == 1 ]]; then
        log "run $run/$RUNS: PYME's Python streamer"
        for case in "big:$BIG_COUNT:$BIG_SIZE" "small:$((SMALL_COUNT / 10)):$SMALL_SIZE"; do
            IFS=: read -r label count size <<< "$case"
            "${CLIENT[@]}" "$PYTHON_STREAMER" "$HERE/pyme_python_streamer.py" --server "$PYSTORE" \
                --root "$SHM_ROOT/python" --prefix "py_$label-run$run" \
                --count "$count" --size "$size" > "$WORK/py_$label-$run.out" \
                2> "$WORK/py_$label-$run.err" || log "warning: python streamer failed: $(tail -n 3 "$WORK/py_$label-$run.err")"
            tail -n 1 "$WORK/py_$label-$run.out" > "$WORK/py_$label-$run.json"
            rm -rf "$SHM_ROOT/python/py_$label-run$run"
            # PYME's put keeps a reference to the caller's bytes: compare with put_bytes.
            bench "rs_$label" "$run" --servers "$PYSTORE" --count "$count" --size "$size" --zero-copy
            rm -rf "$SHM_ROOT/python/rs_$label-run$run"
            # The same against the discard server: the clients' own speed.
            "${CLIENT[@]}" "$PYTHON_STREAMER" "$HERE/pyme_python_streamer.py" --server "$S1" \
                --prefix "pyd_$label-run$run" --count "$count" --size "$size" \
                > "$WORK/pyd_$label-$run.out" 2> "$WORK/pyd_$label-$run.err" ||
                log "warning: python streamer failed: $(tail -n 3 "$WORK/pyd_$label-$run.err")"
            tail -n 1 "$WORK/pyd_$label-$run.out" > "$WORK/pyd_$label-$run.json"
            bench "rsd_$label" "$run" --servers "$S1" --count "$count" --size "$size" --zero-copy
        done
    fi
done

# --- the table ----------------------------------------------------------------

MIB=1048576
iperf=$(median iperf 'r["mb_per_s"]')
row() { printf '| %s | %s | %s | %s |\n' "$@"; }
fmt() { python3 -c "import sys; print(format(float(sys.argv[1]), sys.argv[2]))" "$1" "$2"; }

echo
echo "pyme-stream end to end, $(nproc) cores ($PINNING), $RUNS runs, medians (ratios taken within each run)"
echo
row scenario figure limit ratio
row --- --- --- ---
row "a. 8 MiB, 1 server, put (copy)" \
    "$(fmt "$(median big_copy 'r["mb_per_s"]')" .0f) MB/s" "iperf3 $(fmt "$iperf" .0f) MB/s" \
    "$(fmt "$(median big_copy 'r["mb_per_s"] / j("iperf")["mb_per_s"]')" .2f) (target >= 0.8)"
row "a. 8 MiB, 1 server, put_bytes (zero-copy)" \
    "$(fmt "$(median big_zero 'r["mb_per_s"]')" .0f) MB/s" "iperf3 $(fmt "$iperf" .0f) MB/s" \
    "$(fmt "$(median big_zero 'r["mb_per_s"] / j("iperf")["mb_per_s"]')" .2f) (target >= 0.8)"
row "b. 8 MiB, 3 servers round-robin" \
    "$(fmt "$(median big_rr3 'r["mb_per_s"]')" .0f) MB/s" "iperf3 $(fmt "$iperf" .0f) MB/s" \
    "$(fmt "$(median big_rr3 'r["mb_per_s"] / j("iperf")["mb_per_s"]')" .2f)"
row "c. 4 KiB, 1 server" \
    "$(fmt "$(median small 'r["files_per_s"]')" .0f) files/s" "target 100000 files/s" \
    "$(fmt "$(median small 'r["files_per_s"] / 1e5')" .2f) (target >= 1)"
row "d. put p99, 8 MiB at $RATE/s, copy, 4 buffers prepared" \
    "$(fmt "$(median lat_copy 'r["put_latency_us"]["p99"]')" .0f) us (p50 $(fmt "$(median lat_copy 'r["put_latency_us"]["p50"]')" .0f))" \
    "target 2000 us; plain memcpy of 8 MiB, same run: p99 $(fmt "$(median lat_copy 'r["memcpy_latency_us"]["p99"]')" .0f) us (p50 $(fmt "$(median lat_copy 'r["memcpy_latency_us"]["p50"]')" .0f))" \
    "$(fmt "$(median lat_copy 'r["put_latency_us"]["p99"] / 2000')" .2f) (target <= 1); vs memcpy p99 $(fmt "$(median lat_copy 'r["put_latency_us"]["p99"] / r["memcpy_latency_us"]["p99"]')" .2f)"
row "d. the same puts: CPU time p99 (time the thread ran)" \
    "$(fmt "$(median lat_copy 'r["put_cpu_us"]["p99"]')" .0f) us (p50 $(fmt "$(median lat_copy 'r["put_cpu_us"]["p50"]')" .0f))" \
    "target 2000 us (for the latency above; the difference is time the thread did not run)" \
    "$(fmt "$(median lat_copy 'r["put_cpu_us"]["p99"] / 2000')" .2f)"
row "d. reference: the same puts without preparing buffers" \
    "$(fmt "$(median lat_cold 'r["put_latency_us"]["p99"]')" .0f) us (p50 $(fmt "$(median lat_cold 'r["put_latency_us"]["p50"]')" .0f), max $(fmt "$(median lat_cold 'r["put_latency_us"]["max"]')" .0f))" \
    "target 2000 us" \
    "$(fmt "$(median lat_cold 'r["put_latency_us"]["p99"] / 2000')" .2f)"
row "d. put p99, 8 MiB at $RATE/s, zero-copy" \
    "$(fmt "$(median lat_zero 'r["put_latency_us"]["p99"]')" .1f) us (p50 $(fmt "$(median lat_zero 'r["put_latency_us"]["p50"]')" .1f))" \
    "target 20 us" \
    "$(fmt "$(median lat_zero 'r["put_latency_us"]["p99"] / 20')" .2f) (target <= 1)"
row "e. peak RSS, slow receiver, queue 64 MiB" \
    "$(fmt "$(median memory "r[\"peak_rss_bytes\"] / $MIB")" .0f) MiB" \
    "queue + 64 MiB = $(((QUEUE_BYTES + 64 * MIB) / MIB)) MiB" \
    "$(fmt "$(median memory "r[\"peak_rss_bytes\"] / ($QUEUE_BYTES + 64 * $MIB)")" .2f) (target <= 1)"
# server_cpu KEY: the server's CPU seconds per GB received in scenario KEY, median.
server_cpu() {
    fmt "$(median "${1}_server" "r[\"cpu_s\"] / ($BIG_COUNT * $BIG_SIZE / 1e9)")" .2f
}
# storing_row LABEL KEY LIMIT: a storing server's scenario against the discarding one.
storing_row() {
    row "$1" \
        "$(fmt "$(median "$2" 'r["mb_per_s"]')" .0f) MB/s, server $(server_cpu "$2") CPU s/GB" "$3" \
        "$(fmt "$(median "$2" 'r["mb_per_s"] / j("big_copy")["mb_per_s"]')" .2f) (target >= 0.7)"
}
discard="discard $(fmt "$(median big_copy 'r["mb_per_s"]')" .0f) MB/s"
storing_row "f. 8 MiB, 1 server storing on /dev/shm (tmpfs, 4 KiB pages) vs discard" big_tmpfs \
    "$discard, server $(server_cpu big_copy) CPU s/GB"
storing_row "f. the same, memory just used (see warm_memory)" big_tmpfs_warm "$discard"
row "f. reference: iperf3 receiving into a tmpfs file vs discarding" \
    "$(fmt "$(median iperf_tmpfs 'r["mb_per_s"]')" .0f) MB/s" \
    "iperf3 $(fmt "$iperf" .0f) MB/s" \
    "$(fmt "$(median iperf_tmpfs 'r["mb_per_s"] / j("iperf")["mb_per_s"]')" .2f)"
if [[ -z $HUGE_REASON ]]; then
    storing_row "f. 8 MiB, 1 server storing on tmpfs with huge=within_size vs discard, memory just used" \
        big_huge "$discard"
fi
row "g. client CPU, 8 MiB, copy" \
    "$(fmt "$(median big_copy 'r["cpu_seconds_per_gb"]')" .2f) CPU s/GB" "-" "-"
row "g. client CPU, 8 MiB, zero-copy" \
    "$(fmt "$(median big_zero 'r["cpu_seconds_per_gb"]')" .2f) CPU s/GB" "-" "-"
# pyme_row LABEL PY_KEY RS_KEY FIELD UNIT STORED: PYME's streamer against pyme-stream's
# put_bytes on the same server; STORED=1 also gives the files each stored.
pyme_row() {
    local label=$1 py=$2 rs=$3 field=$4 unit=$5 stored=$6 py_text rs_text
    py_text="$(fmt "$(median "$py" "r[\"$field\"]")" .0f) $unit"
    rs_text="pyme-stream put_bytes $(fmt "$(median "$rs" "r[\"$field\"]")" .0f) $unit"
    if [[ $stored == 1 ]]; then
        py_text="$py_text, stored $(median "$py" 'r["stored"]')/$(median "$py" 'r["files"]')"
        rs_text="$rs_text, stored $(median "$rs" 'r["acknowledged"]')"
    else
        py_text="$py_text (files put)"
    fi
    row "$label" "$py_text" "$rs_text" \
        "pyme-stream $(fmt "$(median "$rs" "r[\"$field\"] / j(\"$py\")[\"$field\"]")" .2f)x PYME"
}
if [[ $PYTHON_OK == 1 ]]; then
    pyme_row "PYME Python Streamer, 8 MiB, tmpfs server" py_big rs_big mb_per_s MB/s 1
    pyme_row "PYME Python Streamer, 4 KiB, tmpfs server" py_small rs_small files_per_s files/s 1
    pyme_row "PYME Python Streamer, 8 MiB, discard server" pyd_big rsd_big mb_per_s MB/s 0
    pyme_row "PYME Python Streamer, 4 KiB, discard server" pyd_small rsd_small files_per_s files/s 0
else
    echo
    echo "PYME Python Streamer comparison skipped: $PYTHON_REASON"
fi
if [[ -n $HUGE_REASON ]]; then
    echo
    echo "tmpfs with huge pages skipped: $HUGE_REASON"
fi
