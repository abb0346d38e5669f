#!/usr/bin/env bash
# A simulated PYME cluster: N data servers (up to 8), each in a network namespace
# of its own, joined to the client's namespace by a veth pair whose rate (and
# loss) `tc`/`nft` set per link; `pyme-stream bench` runs inside the client's
# namespace. Every namespace, link and rule is made by this script and removed
# by its exit trap; the namespaces have no route to anything else, so no packet
# reaches a real interface.
#
# Usage:
#   benches/cluster_sim.sh run   RATES [-- BENCH-ARGS...]   one bench through one cluster
#   benches/cluster_sim.sh table                            the issue-19 scenarios, a table of medians
#   benches/cluster_sim.sh silent                           issue 27: 32 servers, a quarter go silent
#   benches/cluster_sim.sh idle                             issue 27: 100 loopback servers, CPU of the client
#
# `silent`: N=32 unshaped links, round-robin (the default), 3 s response timeout,
# queues of 32 files, 64 KiB files at RATE=3000/s for COUNT=30000 files; AFTER=3
# seconds in, servers 0, 4, 8, ... go silent: SILENCE=drop (nftables drops every
# packet of their namespaces) or SILENCE=stop (SIGSTOP). Prints the bench's JSON
# (put_latency_us.max is the longest put) and a `sim:` line.
# `idle`: N=100 `serve --discard` on loopback (no namespaces); RUNS=3 runs of each
# of BIN and BASE_BIN (if set: the build to compare with), interleaved: 64 KiB
# files at 600/s for 10 s (client CPU per wall second, from the bench's own
# getrusage), then 8 MiB files as fast as they go to 4 of the servers (MB/s).
#
# RATES lists each server's link, comma separated: RATE[/LOSS%][@STORE_MBPS], for
# example `1gbit,1gbit,1gbit,500mbit` or `1gbit/1,1gbit` (1 % loss on the first
# link) or `1gbit@200` (a server storing at 200 MB/s: `serve --store-rate`).
# `run` prints the bench's JSON line, then one line `sim: ...` with the limit
# (sum of rates x 1448/1514, TCP goodput over a 1500-byte MTU with timestamps),
# the ratio, and the servers' CPU seconds.
#
# Environment:
#   RUNS=3        (table) runs of each scenario, interleaved; medians reported
#   SCALE=1       (table) link rates multiplied by this (0.25: 4 x 250 Mbit/s ...)
#   COUNT_8M      (table) 8 MiB files per run (default: about 6 s of the links)
#   COUNT_2M      (table) 2 MiB files per run
#   STORE=0       servers discard bodies (the default: the links are measured,
#                 not the page cache); STORE=1 stores them on a tmpfs
#   KILL_AT=      (run) seconds after the start: server 0 is killed (SIGKILL)
#                 and restarted on the same port 1 s later; the report then
#                 counts the files it stored
#   STREAMERS=1   (run) that many bench processes at once, each its own streamer
#   PIN=0         PIN=1: servers on the last core, the client on the others
#   BIN           the pyme-stream binary (default target/release/pyme-stream)
#   BASE_BIN      (idle) a second binary, run interleaved with BIN
#
# Needs root, iproute2 (ip, tc with the htb qdisc) and, for loss, nftables.
# The kernel here has no netem, so links get no added delay (a veth pair adds
# about 10 us; 0.1 ms at 1 Gbit/s is 12 KB in flight, far below one window).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
BIN=${BIN:-$ROOT/target/release/pyme-stream}
PORT=15348
STORE=${STORE:-0}
PIN=${PIN:-0}
TAG="pst$$"                 # namespace and interface names of this run
CLIENT_NS="$TAG-c"
# Servers that store (STORE=1, KILL_AT) write here: a tmpfs by default; the
# table's kill runs use the disk (gigabytes of files).
WORK=$(mktemp -d "${WORK_PARENT:-/dev/shm}/cluster-sim.XXXXXX")
SERVER_PIDS=()
SERVER_NS=()
CREATED_NS=()

cleanup() {
    local pid ns file
    # Every server started, also one restarted by the background killer (a
    # subshell: its pids are only in these files).
    for file in "$WORK"/server*.pid; do
        [[ -f $file ]] && kill "$(cat "$file")" 2>/dev/null || true
    done
    # Then SIGKILL, before waiting: a server whose connections went silent (the
    # `silent` scenario drops every packet) may never finish on SIGTERM.
    sleep 0.5
    for file in "$WORK"/server*.pid; do
        [[ -f $file ]] && kill -9 "$(cat "$file")" 2>/dev/null || true
    done
    for pid in "${SERVER_PIDS[@]:-}"; do
        [[ -n $pid ]] && wait "$pid" 2>/dev/null || true
    done
    # Deleting a namespace deletes its veth ends, their qdiscs and its nft tables.
    for ns in "${CREATED_NS[@]:-}"; do
        [[ -n $ns ]] && ip netns del "$ns" 2>/dev/null || true
    done
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

die() { echo "cluster_sim: $*" >&2; exit 2; }

[[ $(id -u) == 0 ]] || die "needs root (network namespaces)"
command -v ip >/dev/null && command -v tc >/dev/null || die "needs iproute2 (ip, tc)"
[[ -x $BIN ]] || die "no binary at $BIN (cargo build --release)"

# Bits per second of a tc rate (1gbit, 500mbit, 250mbit, 100kbit, 1000000).
rate_bps() {
    local rate=${1,,}
    case $rate in
        *gbit) awk -v r="${rate%gbit}" 'BEGIN { printf "%.0f", r * 1e9 }' ;;
        *mbit) awk -v r="${rate%mbit}" 'BEGIN { printf "%.0f", r * 1e6 }' ;;
        *kbit) awk -v r="${rate%kbit}" 'BEGIN { printf "%.0f", r * 1e3 }' ;;
        *) echo "$rate" ;;
    esac
}

ns_exec() { local ns=$1; shift; ip netns exec "$ns" "$@"; }

# Server CPU seconds (user + system) of a process, from /proc.
cpu_of() {
    local ticks
    ticks=$(awk '{ print $14 + $15 }' "/proc/$1/stat" 2>/dev/null || echo 0)
    awk -v t="$ticks" -v hz="$(getconf CLK_TCK)" 'BEGIN { printf "%.2f", t / hz }'
}

# Builds the cluster: the client namespace, one namespace per server, the veth
# pairs with their rates and losses, and the servers. Sets LIMIT_BPS.
LIMIT_BPS=0
SERVER_ADDRS=""
SPECS=()
up() {
    IFS=',' read -r -a SPECS <<<"$1"
    local n=${#SPECS[@]}
    ((n >= 1 && n <= 64)) || die "1 to 64 servers, not $n"
    ip netns add "$CLIENT_NS"
    CREATED_NS+=("$CLIENT_NS")
    ns_exec "$CLIENT_NS" ip link set lo up
    local i spec rate loss store bps server_ns
    LIMIT_BPS=0
    SERVER_ADDRS=""
    for ((i = 0; i < n; i++)); do
        spec=${SPECS[i]}
        store=""; loss=""
        [[ $spec == *@* ]] && { store=${spec#*@}; spec=${spec%@*}; }
        [[ $spec == */* ]] && { loss=${spec#*/}; spec=${spec%/*}; }
        rate=$spec
        [[ ${rate,,} =~ ^[0-9]+(\.[0-9]+)?[kmg]bit$ || $rate == none ]] || die "bad link rate ${rate@Q} (for example 1gbit, 250mbit, none)"
        [[ -z $loss || $loss =~ ^[0-9]+(\.[0-9]+)?$ ]] || die "bad loss ${loss@Q} (percent, for example 1 or 0.5)"
        [[ -z $store || $store =~ ^[0-9]+(\.[0-9]+)?$ ]] || die "bad store rate ${store@Q} (MB/s)"
        bps=0
        [[ $rate == none ]] || bps=$(rate_bps "$rate")
        LIMIT_BPS=$((LIMIT_BPS + bps))
        server_ns="$TAG-s$i"
        ip netns add "$server_ns"
        CREATED_NS+=("$server_ns")
        SERVER_NS[i]=$server_ns
        ns_exec "$server_ns" ip link set lo up
        # Made inside the client namespace, so the root namespace never holds an end.
        ns_exec "$CLIENT_NS" ip link add "s$i" type veth peer name eth0 netns "$server_ns"
        ns_exec "$CLIENT_NS" ip addr add "10.77.$i.1/30" dev "s$i"
        ns_exec "$server_ns" ip addr add "10.77.$i.2/30" dev eth0
        # One link, both directions at the rate (the acknowledgements too).
        if [[ $rate != none ]]; then
            shape "$CLIENT_NS" "s$i" "$rate"
            shape "$server_ns" eth0 "$rate"
        fi
        if [[ -n $loss ]]; then
            command -v nft >/dev/null || die "loss needs nftables (nft)"
            # Segments, not 64 KB TSO bursts, must be what is lost: one segment per packet.
            ns_exec "$CLIENT_NS" ip link set "s$i" gso_max_segs 1
            ns_exec "$server_ns" nft add table ip sim
            ns_exec "$server_ns" nft add chain ip sim input '{ type filter hook input priority 0; }'
            local per_mille
            per_mille=$(awk -v l="$loss" 'BEGIN { printf "%d", l * 10 }')
            ns_exec "$server_ns" nft add rule ip sim input tcp dport "$PORT" numgen random mod 1000 "<" "$per_mille" drop
        fi
        ns_exec "$CLIENT_NS" ip link set "s$i" up
        ns_exec "$server_ns" ip link set eth0 up
        start_server "$i" "$store"
        SERVER_ADDRS+="${SERVER_ADDRS:+,}10.77.$i.2:$PORT"
    done
}

# An HTB class at RATE as the root of DEV's egress (htb, not tbf: it keeps TSO
# bursts whole and counts every segment's headers, so the goodput limit is
# RATE x 1448/1514).
shape() {
    local ns=$1 dev=$2 rate=$3
    ns_exec "$ns" tc qdisc add dev "$dev" root handle 1: htb default 10
    ns_exec "$ns" tc class add dev "$dev" parent 1: classid 1:10 htb rate "$rate" ceil "$rate" burst 64k cburst 64k quantum 200000
}

# Starts server I in its namespace and waits for its `listening on` line.
start_server() {
    local i=$1 store=$2
    local ns=${SERVER_NS[i]} args=(serve --advertise none --bind "10.77.$i.2" --port "$PORT")
    mkdir -p "$WORK/root$i"
    args+=(--root "$WORK/root$i")
    [[ $STORE == 1 || -n $store || -n ${KILL_AT:-} ]] || args+=(--discard)
    [[ -n $store ]] && args+=(--store-rate "$store")
    local pin=()
    if [[ $PIN == 1 ]]; then pin=(taskset -c "$(($(nproc) - 1))"); fi
    : >"$WORK/server$i.out"
    ip netns exec "$ns" "${pin[@]}" "$BIN" "${args[@]}" >"$WORK/server$i.out" 2>"$WORK/server$i.err" &
    SERVER_PIDS[i]=$!
    echo "$!" >"$WORK/server$i.pid"
    local waited=0
    until grep -q "listening on" "$WORK/server$i.out"; do
        sleep 0.05
        waited=$((waited + 1))
        ((waited < 200)) || die "server $i did not start: $(cat "$WORK/server$i.err")"
    done
}

servers_cpu() {
    local i total=0 cpu
    for i in "${!SERVER_PIDS[@]}"; do
        cpu=$(cpu_of "$(cat "$WORK/server$i.pid")")
        total=$(awk -v a="$total" -v b="$cpu" 'BEGIN { printf "%.2f", a + b }')
    done
    echo "$total"
}

# Kills server 0 (SIGKILL, like a crash) KILL_AT seconds in, restarts it 1 s later.
kill_and_restart() {
    sleep "$KILL_AT"
    kill -9 "${SERVER_PIDS[0]}" 2>/dev/null || true
    wait "${SERVER_PIDS[0]}" 2>/dev/null || true
    echo "sim: killed server 0 at ${KILL_AT}s" >&2
    sleep 1
    start_server 0 ""
    echo "sim: restarted server 0" >&2
}

# One bench (or STREAMERS at once) in the client namespace; prints the JSON
# lines and a `sim:` summary line.
run_bench() {
    local streamers=${STREAMERS:-1} pin=() i
    if [[ $PIN == 1 && $(nproc) -gt 1 ]]; then pin=(taskset -c "0-$(($(nproc) - 2))"); fi
    local killer=""
    if [[ -n ${KILL_AT:-} ]]; then
        kill_and_restart &
        killer=$!
    fi
    local pids=()
    for ((i = 0; i < streamers; i++)); do
        ns_exec "$CLIENT_NS" "${pin[@]}" "$BIN" bench --servers "$SERVER_ADDRS" --prefix "s$i" \
            --json "$@" >"$WORK/bench$i.out" 2>"$WORK/bench$i.err" &
        pids+=($!)
    done
    local status=0
    for i in "${!pids[@]}"; do
        wait "${pids[i]}" || status=1
    done
    [[ -n $killer ]] && { wait "$killer" || true; }
    for ((i = 0; i < streamers; i++)); do
        tail -n 1 "$WORK/bench$i.out"
        grep -v '^note:' "$WORK/bench$i.err" | tail -n 3 >&2 || true
    done
    local stored=""
    if [[ -n ${KILL_AT:-} ]]; then
        # Distinct names stored over all servers (a file may be on two if its
        # server died after storing it but before its answer arrived).
        stored=" stored_distinct=$(cd "$WORK" && find root* -type f ! -name '.*' | sed 's|^root[0-9]*/||' | sort -u | wc -l)"
    fi
    local limit_mbs
    limit_mbs=$(awk -v b="$LIMIT_BPS" 'BEGIN { printf "%.1f", b / 8 * 1448 / 1514 / 1e6 }')
    echo "sim: servers=${#SPECS[@]} links=${SPECS[*]} limit_mb_per_s=$limit_mbs server_cpu_s=$(servers_cpu) exit=$status$stored"
    return 0
}

cmd_run() {
    [[ $# -ge 1 ]] || die "run RATES [-- BENCH-ARGS...]"
    local rates=$1; shift
    [[ ${1:-} == -- ]] && shift
    up "$rates"
    run_bench "$@"
}

# The issue-19 scenarios, RUNS times interleaved; each run is a fresh cluster
# (a child of this script, so every run cleans up after itself).
cmd_table() {
    local runs=${RUNS:-3} scale=${SCALE:-1}
    local g h
    g="$(awk -v s="$scale" 'BEGIN { printf "%gmbit", 1000 * s }')"
    h="$(awk -v s="$scale" 'BEGIN { printf "%gmbit", 500 * s }')"
    # About 6 s of the links per run.
    local count8=${COUNT_8M:-$(awk -v s="$scale" 'BEGIN { printf "%d", 6 * 4 * 119.6 * s / 8.39 }')}
    local count2=${COUNT_2M:-$(awk -v s="$scale" 'BEGIN { printf "%d", 6 * 8 * 119.6 * s / 2.10 }')}
    local four="$g,$g,$g,$g" uneven="$g,$g,$g,$h" eight="$g,$g,$g,$g,$g,$g,$g,$g"
    local lossy="$g/1,$g,$g,$g,$g,$g,$g,$g"
    local q8=(--size 8388608 --count "$count8" --queue-bytes 67108864)
    local q2=(--size 2097152 --count "$count2" --queue-bytes 16777216)
    local scenarios=(
        "4x|rr|$four|${q8[*]} --distribution round-robin"
        "4x|ll|$four|${q8[*]} --distribution least-loaded"
        "3+half|rr|$uneven|${q8[*]} --distribution round-robin"
        "3+half|ll|$uneven|${q8[*]} --distribution least-loaded"
        "8x|rr|$eight|${q2[*]} --distribution round-robin"
        "8x|ll|$eight|${q2[*]} --distribution least-loaded"
        "8x,1%loss|rr|$lossy|${q2[*]} --distribution round-robin"
        "8x,1%loss|ll|$lossy|${q2[*]} --distribution least-loaded"
        "the lossy link alone|-|$g/1|--size 2097152 --count $((count2 / 8)) --queue-bytes 16777216"
        "4x,2 streamers|ll|$four|${q8[*]} --distribution least-loaded|2"
    )
    local out="$WORK/table"
    mkdir -p "$out"
    local run s name dist rates args streamers
    for ((run = 1; run <= runs; run++)); do
        for s in "${!scenarios[@]}"; do
            IFS='|' read -r name dist rates args streamers <<<"${scenarios[s]}"
            echo "run $run/$runs: $name $dist" >&2
            # shellcheck disable=SC2086
            STREAMERS=${streamers:-1} "$0" run "$rates" -- $args >"$out/$s.$run" 2>>"$out/log" || true
        done
    done
    # One run per scenario with server 0 killed and restarted in the middle.
    if [[ ${KILLS:-1} == 1 ]]; then
        for s in "${!scenarios[@]}"; do
            IFS='|' read -r name dist rates args streamers <<<"${scenarios[s]}"
            [[ $rates == *,* ]] || continue # one server: nothing to fail over to
            echo "kill run: $name $dist" >&2
            # shellcheck disable=SC2086
            WORK_PARENT=${TMPDIR:-/tmp} KILL_AT=2 STREAMERS=${streamers:-1} "$0" run "$rates" -- $args >"$out/$s.kill" 2>>"$out/log" || true
        done
    fi
    python3 - "$out" "${#scenarios[@]}" "$runs" "${scenarios[@]}" <<'EOF'
import json, os, statistics, sys
out, n, runs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
scenarios = sys.argv[4:4 + n]

def parse(path):
    benches, sim = [], {}
    if not os.path.exists(path):
        return benches, sim
    for line in open(path):
        line = line.strip()
        if line.startswith("{"):
            benches.append(json.loads(line))
        elif line.startswith("sim:"):
            for word in line[4:].split():
                if "=" in word:
                    key, value = word.split("=", 1)
                    sim[key] = value
    return benches, sim

def med(values):
    return statistics.median(values) if values else float("nan")

print("| scenario | distribution | MB/s (median) | limit MB/s | ratio | put max ms | client CPU s/GB | servers CPU s | runs |")
print("|---|---|---|---|---|---|---|---|---|")
for s, spec in enumerate(scenarios):
    name, dist, rates, args, *rest = spec.split("|")
    streamers = int(rest[0]) if rest and rest[0] else 1
    mbs, ratio, putmax, cpu_gb, server_cpu, shares = [], [], [], [], [], []
    for run in range(1, runs + 1):
        benches, sim = parse(f"{out}/{s}.{run}")
        if len(benches) != streamers or "limit_mb_per_s" not in sim:
            continue
        limit = float(sim["limit_mb_per_s"])
        # Aggregate: all bytes over the longest bench (they start together).
        total = sum(b["bytes"] for b in benches) / 1e6 / max(b["seconds"] for b in benches)
        mbs.append(total)
        ratio.append(total / limit)
        putmax.append(max(b["put_latency_us"]["max"] for b in benches) / 1000)
        cpu_gb.append(med([b["cpu_seconds_per_gb"] for b in benches]))
        server_cpu.append(float(sim.get("server_cpu_s", "nan")))
        if streamers > 1:
            rates_each = [b["mb_per_s"] for b in benches]
            shares.append(min(rates_each) / sum(rates_each))
    if not mbs:
        print(f"| {name} | {dist} | failed | | | | | | 0 |")
        continue
    note = f" (smallest share {med(shares):.2f})" if shares else ""
    print(f"| {name} | {dist} | {med(mbs):.0f}{note} | {limit:.0f} | {med(ratio):.3f} | {med(putmax):.0f} | {med(cpu_gb):.2f} | {med(server_cpu):.1f} | {len(mbs)} |")
print()
print("| scenario, server 0 killed at 2 s and restarted 1 s later | files | acknowledged | failed | stored (distinct) | rerouted | reconnects |")
print("|---|---|---|---|---|---|---|")
for s, spec in enumerate(scenarios):
    name, dist = spec.split("|")[:2]
    benches, sim = parse(f"{out}/{s}.kill")
    if not benches:
        continue
    files = sum(b["files"] for b in benches)
    ack = sum(b["acknowledged"] for b in benches)
    failed = sum(b["failed"] + b["rejected"] for b in benches)
    rerouted = sum(b["rerouted"] for b in benches)
    reconnects = sum(b["reconnects"] for b in benches)
    print(f"| {name} {dist} | {files} | {ack} | {failed} | {sim.get('stored_distinct', '?')} | {rerouted} | {reconnects} |")
EOF
    if [[ -n ${KEEP:-} ]]; then cp -r "$out" "$KEEP"; fi
}

# Issue 27: a quarter of 32 servers goes silent during a run (see the usage).
cmd_silent() {
    local n=${N:-32} i spec=""
    for ((i = 0; i < n; i++)); do spec+="${spec:+,}none"; done
    up "$spec"
    local silence=${SILENCE:-drop}
    [[ $silence == stop ]] || command -v nft >/dev/null || die "SILENCE=drop needs nftables (nft)"
    (
        sleep "${AFTER:-3}"
        for ((i = 0; i < n; i += 4)); do
            if [[ $silence == stop ]]; then
                kill -STOP "$(cat "$WORK/server$i.pid")"
            else
                ns_exec "${SERVER_NS[i]}" nft add table inet cut
                ns_exec "${SERVER_NS[i]}" nft add chain inet cut input '{ type filter hook input priority 0; policy drop; }'
                ns_exec "${SERVER_NS[i]}" nft add chain inet cut output '{ type filter hook output priority 0; policy drop; }'
            fi
        done
        echo "sim: servers 0, 4, ... silent ($silence) at ${AFTER:-3}s" >&2
    ) &
    local silencer=$!
    run_bench --size 65536 --count "${COUNT:-30000}" --rate "${RATE:-3000}" \
        --timeout-ms 3000 --queue-files 32 "$@"
    wait "$silencer" || true
    if [[ $silence == stop ]]; then
        for ((i = 0; i < n; i += 4)); do kill -CONT "$(cat "$WORK/server$i.pid")" 2>/dev/null || true; done
    fi
}

# Issue 27: the client's CPU with 100 idle-ish links, and 8 MiB throughput (see the usage).
cmd_idle() {
    local n=${N:-100} i addrs="" four=""
    for ((i = 0; i < n; i++)); do
        mkdir -p "$WORK/root$i"
        "$BIN" serve --advertise none --bind 127.0.0.1 --port 0 --discard --root "$WORK/root$i" \
            >"$WORK/server$i.out" 2>"$WORK/server$i.err" &
        SERVER_PIDS[i]=$!
        echo "$!" >"$WORK/server$i.pid"
    done
    for ((i = 0; i < n; i++)); do
        local waited=0
        until grep -q "listening on" "$WORK/server$i.out"; do
            sleep 0.05
            waited=$((waited + 1))
            ((waited < 400)) || die "server $i did not start: $(cat "$WORK/server$i.err")"
        done
        local addr
        addr=$(sed -n 's/^listening on //p' "$WORK/server$i.out")
        addrs+="${addrs:+,}$addr"
        ((i < 4)) && four+="${four:+,}$addr"
    done
    local runs=${RUNS:-3} run bin label
    for ((run = 1; run <= runs; run++)); do
        for label in new base; do
            bin=$BIN
            if [[ $label == base ]]; then
                [[ -n ${BASE_BIN:-} ]] || continue
                bin=$BASE_BIN
            fi
            "$bin" bench --servers "$addrs" --prefix "i$run$label" --size 65536 --count "${COUNT:-6000}" \
                --rate 600 --json 2>/dev/null | tail -n 1 |
                awk -v l="$label" -v r="$run" '{ match($0, /"cpu_seconds":[0-9.e-]+/); c = substr($0, RSTART + 14, RLENGTH - 14);
                    match($0, /"seconds":[0-9.e-]+/); s = substr($0, RSTART + 10, RLENGTH - 10);
                    match($0, /"acknowledged":[0-9]+/); a = substr($0, RSTART + 15, RLENGTH - 15);
                    printf "idle %s run %d: 600 files/s x 64 KiB to %s servers: client CPU %.3f s in %.2f s = %.1f %% of a core, %s acknowledged\n", l, r, "'"$n"'", c, s, 100 * c / s, a }'
            "$bin" bench --servers "$four" --prefix "t$run$label" --size 8388608 --count "${COUNT_8M:-300}" \
                --json 2>/dev/null | tail -n 1 |
                awk -v l="$label" -v r="$run" '{ match($0, /"mb_per_s":[0-9.e-]+/); m = substr($0, RSTART + 11, RLENGTH - 11);
                    match($0, /"cpu_seconds":[0-9.e-]+/); c = substr($0, RSTART + 14, RLENGTH - 14);
                    printf "8mib %s run %d: %.0f MB/s, client CPU %.2f s\n", l, r, m, c }'
        done
    done
}

case ${1:-} in
    run) shift; cmd_run "$@" ;;
    table) shift; cmd_table "$@" ;;
    silent) shift; cmd_silent "$@" ;;
    idle) shift; cmd_idle "$@" ;;
    *) sed -n '2,49p' "$0"; exit 2 ;;
esac
