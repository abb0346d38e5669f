"""pyme_streaming (this repository's Python package) against PYME's own Python
Streamer (PYME.IO.cluster_streaming), both from Python, into the same
`pyme-stream serve --discard`, with iperf3's loopback rate measured in the same
run, interleaved, RUNS times; prints medians.

Measured per run, in this order:
  iperf3 (one stream, 127.0.0.1, discarding receiver)
  4 KiB files:  PYME, then pyme_streaming  (files/s, from first put to close)
  8 MiB frames: PYME, then pyme_streaming  (MB/s; numpy uint16 frames for ours)
Then, once, the losses: the same puts into a storing server on /dev/shm, and
the files it stored counted (the --discard server does not count what it
drops, so losses are counted on a storing server).

Targets (issue 17): 4 KiB files >= 10x PYME's files/s; 8 MiB frames >= 0.8x
iperf3; no file lost by pyme_streaming.

Run inside a network namespace whose only interface is lo (PYME's cluster
modules may send mDNS; this script refuses to run otherwise):

    ip netns add pybench && ip netns exec pybench ip link set lo up
    ip netns exec pybench /tmp/pyme-venv/bin/python benches/python_vs_pyme.py
    ip netns delete pybench

The Python running it needs numpy, pyme_streaming (`pip install ./python`) and
PYME (see docs/PYTHON.md); PYME's side runs benches/pyme_python_streamer.py
with the same interpreter.
"""

import argparse
import json
import os
import pathlib
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parents[1]


def ours(args):
    """Worker: pyme_streaming puts COUNT files of SIZE bytes; prints one JSON line."""
    import numpy as np

    import pyme_streaming

    if args.size >= 1 << 20:
        # A camera's ring of frames (uint16), handed over without a copy.
        frames = [
            np.random.default_rng(k).integers(0, 4096, args.size // 2, dtype=np.uint16)
            for k in range(16)
        ]
    else:
        frames = [os.urandom(args.size)]
    streamer = pyme_streaming.Streamer(servers=[args.server])
    started = time.perf_counter()
    for index in range(args.count):
        streamer.put("%s/frame%05d.pzf" % (args.prefix, index), frames[index % len(frames)], i=index)
    stats = streamer.close()
    seconds = time.perf_counter() - started
    stored = count_files(os.path.join(args.root, args.prefix)) if args.root else None
    print(json.dumps({
        "files": args.count,
        "stored": stored,
        "lost": None if stored is None else args.count - stored,
        "failed": stats["files_failed"],
        "seconds": seconds,
        "files_per_s": args.count / seconds,
        "mb_per_s": args.count * args.size / 1e6 / seconds,
    }))


def count_files(folder):
    """Files below `folder` once the count stops changing (the server may still write)."""
    last, stable_since = -1, time.monotonic()
    while True:
        found = sum(len(files) for _, _, files in os.walk(folder))
        if found != last:
            last, stable_since = found, time.monotonic()
        elif time.monotonic() - stable_since > 1.0:
            return found
        time.sleep(0.1)


def start_server(binary, root, *extra):
    process = subprocess.Popen(
        [binary, "serve", "--port", "0", "--advertise", "none", "--root", str(root), *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    line = process.stdout.readline()
    if not line.startswith("listening on "):
        process.kill()
        raise SystemExit("pyme-stream serve did not start: %r" % line)
    return process, line.split()[-1]


def iperf3_mb_per_s(seconds, port=5299):
    server = subprocess.Popen(
        ["iperf3", "-s", "-1", "-B", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        time.sleep(0.3)  # iperf3 -s prints nothing to wait on
        for _ in range(50):
            client = subprocess.run(
                ["iperf3", "-c", "127.0.0.1", "-p", str(port), "-t", str(seconds), "-J"],
                capture_output=True,
                text=True,
            )
            if client.returncode == 0:
                result = json.loads(client.stdout)
                return result["end"]["sum_received"]["bits_per_second"] / 8 / 1e6
            time.sleep(0.1)
        raise SystemExit("iperf3 failed: %s" % client.stderr)
    finally:
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def run_worker(command):
    done = subprocess.run(command, capture_output=True, text=True, timeout=1800)
    if done.returncode != 0:
        raise SystemExit("%s failed:\n%s" % (" ".join(command), done.stderr[-3000:]))
    return json.loads(done.stdout.strip().splitlines()[-1])


def pyme_command(server, count, size, prefix, root=None):
    command = [sys.executable, str(REPO / "benches" / "pyme_python_streamer.py"), "--server", server,
               "--count", str(count), "--size", str(size), "--prefix", prefix]
    return command + (["--root", str(root)] if root else [])


def ours_command(server, count, size, prefix, root=None):
    command = [sys.executable, __file__, "--worker", "--server", server,
               "--count", str(count), "--size", str(size), "--prefix", prefix]
    return command + (["--root", str(root)] if root else [])


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--small-count", type=int, default=30000)
    parser.add_argument("--big-count", type=int, default=200)
    parser.add_argument("--loss-big-count", type=int, default=60)
    parser.add_argument("--iperf-seconds", type=int, default=3)
    parser.add_argument("--bin", default=str(REPO / "target" / "release" / "pyme-stream"))
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--server")
    parser.add_argument("--count", type=int)
    parser.add_argument("--size", type=int)
    parser.add_argument("--prefix", default="bench")
    parser.add_argument("--root")
    args = parser.parse_args()
    if args.worker:
        return ours(args)

    interfaces = sorted(os.listdir("/sys/class/net"))
    if interfaces != ["lo"]:
        raise SystemExit("run inside a network namespace with lo alone (found %s): see the top of this file" % interfaces)
    small, big = 4096, 8 << 20
    discard_root = pathlib.Path(tempfile.mkdtemp(prefix="pybench-discard-"))
    shm_root = pathlib.Path(tempfile.mkdtemp(prefix="pybench-store-", dir="/dev/shm"))
    discard, discard_address = start_server(args.bin, discard_root, "--discard")
    store, store_address = start_server(args.bin, shm_root)
    results = {key: [] for key in ("iperf", "pyme_small", "ours_small", "pyme_big", "ours_big")}
    try:
        for run in range(1, args.runs + 1):
            results["iperf"].append(iperf3_mb_per_s(args.iperf_seconds))
            results["pyme_small"].append(run_worker(pyme_command(discard_address, args.small_count, small, "ps%d" % run)))
            results["ours_small"].append(run_worker(ours_command(discard_address, args.small_count, small, "os%d" % run)))
            results["pyme_big"].append(run_worker(pyme_command(discard_address, args.big_count, big, "pb%d" % run)))
            results["ours_big"].append(run_worker(ours_command(discard_address, args.big_count, big, "ob%d" % run)))
            print("run %d/%d: iperf3 %.0f MB/s; 4 KiB files/s PYME %.0f ours %.0f; 8 MiB MB/s PYME %.0f ours %.0f" % (
                run, args.runs, results["iperf"][-1],
                results["pyme_small"][-1]["files_per_s"], results["ours_small"][-1]["files_per_s"],
                results["pyme_big"][-1]["mb_per_s"], results["ours_big"][-1]["mb_per_s"]), flush=True)
        losses = {
            "pyme_small": run_worker(pyme_command(store_address, args.small_count, small, "lps", shm_root)),
            "ours_small": run_worker(ours_command(store_address, args.small_count, small, "los", shm_root)),
            "pyme_big": run_worker(pyme_command(store_address, args.loss_big_count, big, "lpb", shm_root)),
            "ours_big": run_worker(ours_command(store_address, args.loss_big_count, big, "lob", shm_root)),
        }
    finally:
        for process in (discard, store):
            process.kill()
            process.wait()
        shutil.rmtree(discard_root, ignore_errors=True)
        shutil.rmtree(shm_root, ignore_errors=True)

    iperf = statistics.median(results["iperf"])
    median = lambda key, field: statistics.median(r[field] for r in results[key])  # noqa: E731
    small_ratio = statistics.median(
        o["files_per_s"] / p["files_per_s"] for o, p in zip(results["ours_small"], results["pyme_small"]))
    big_ratio = statistics.median(
        o["mb_per_s"] / i for o, i in zip(results["ours_big"], results["iperf"]))
    summary = {
        "runs": args.runs,
        "iperf3_mb_per_s": iperf,
        "small_files_per_s": {"pyme": median("pyme_small", "files_per_s"), "ours": median("ours_small", "files_per_s")},
        "small_ratio_ours_over_pyme": small_ratio,
        "big_mb_per_s": {"pyme": median("pyme_big", "mb_per_s"), "ours": median("ours_big", "mb_per_s")},
        "big_ratio_ours_over_iperf3": big_ratio,
        "big_ratio_pyme_over_iperf3": median("pyme_big", "mb_per_s") / iperf,
        "lost": {key: "%s of %s" % (r["lost"], r["files"]) for key, r in losses.items()},
        "ours_failed": {key: r["failed"] for key, r in losses.items() if key.startswith("ours")},
    }
    print()
    print("| %d interleaved runs, medians | PYME Streamer | pyme_streaming | ratio | target |" % args.runs)
    print("|---|---|---|---|---|")
    print("| 4 KiB files, files/s | %.0f | %.0f | %.1fx PYME | >= 10x |" % (
        summary["small_files_per_s"]["pyme"], summary["small_files_per_s"]["ours"], small_ratio))
    print("| 8 MiB frames, MB/s (iperf3 %.0f) | %.0f | %.0f | %.2fx iperf3 | >= 0.8x |" % (
        iperf, summary["big_mb_per_s"]["pyme"], summary["big_mb_per_s"]["ours"], big_ratio))
    print("| lost, %d x 4 KiB (tmpfs server) | %s | %s | | 0 |" % (
        args.small_count, losses["pyme_small"]["lost"], losses["ours_small"]["lost"]))
    print("| lost, %d x 8 MiB (tmpfs server) | %s | %s | | 0 |" % (
        args.loss_big_count, losses["pyme_big"]["lost"], losses["ours_big"]["lost"]))
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
