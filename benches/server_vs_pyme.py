"""Storing files to disk: PYME's own data server against `pyme-stream serve`,
with the same client, and what the disk allows.

Per run, interleaved (the order rotates from run to run), for 8 MiB files and for
64 KiB files:
  disk:  a plain program (this one) creating the same files with open/write/close
  pyme:  PYME's HTTPDataServer (python -m PYME.cluster.HTTPDataServer -a local)
  ours:  pyme-stream serve (release build)
The client is the same for both servers: one connection, pipelined
`PUT /<name> HTTP/1.1` requests as PYME's cluster_streaming.Stream sends them
(at most WINDOW unanswered), timed from the first byte sent to the last 200
read. Every file is then checked on disk (count and size), outside the timing,
and removed; `sync` runs between measurements so that one measurement's
writeback does not slow the next. Neither server nor the plain program calls
fsync: all three measure the page cache and the writeback the kernel does
meanwhile, on the same file system. Ours against PYME is also given as the
ratio within each run (same count and size, so a ratio of times), and the
median of those ratios. Also measured: the CPU time each server
process (for `disk`, this program) spent per file, from /proc, which a busy
machine disturbs less than the rates. Prints medians over RUNS as a Markdown
table, and one JSON line.

Goals (issue 24, item 11): ours >= 5x PYME's MB/s on 8 MiB files, and >= PYME's
files/s on 64 KiB files.

Run inside a network namespace whose only interface is lo (PYME's modules may
send mDNS; the script refuses to run otherwise), with a Python that has PYME,
numpy and ujson:

    cargo build --release --bin pyme-stream
    ip netns add srvbench && ip netns exec srvbench ip link set lo up
    ip netns exec srvbench /path/to/venv/bin/python benches/server_vs_pyme.py
    ip netns delete srvbench

The machine may be shared: keep RUNS and the file counts small (the defaults
take about a minute).
"""

import argparse
import json
import os
import pathlib
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
MiB = 1 << 20


def only_loopback():
    return sorted(os.listdir("/sys/class/net")) == ["lo"]


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_listening(port, proc):
    deadline = time.time() + 60
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit("PYME's server exited (%s)" % proc.returncode)
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit("PYME's server does not listen")


def read_answer(fp):
    """One HTTP answer: its status; the body (Content-Length) is read past."""
    status = fp.readline()
    if not status:
        raise RuntimeError("connection closed")
    code = int(status.split()[1])
    length = 0
    while True:
        line = fp.readline()
        if line in (b"\r\n", b"\n", b""):
            break
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    if length:
        fp.read(length)
    return code


def put_all(port, names, data, window):
    """PUTs every name with `data` on one connection, pipelined; returns seconds."""
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    fp = sock.makefile("rb", 1 << 16)
    slots = threading.Semaphore(window)
    codes = []

    def receive():
        for _ in names:
            codes.append(read_answer(fp))
            slots.release()

    receiver = threading.Thread(target=receive)
    start = time.perf_counter()
    receiver.start()
    for name in names:
        slots.acquire()
        head = b"PUT /%s HTTP/1.1\r\nConnection: keep-alive\r\nContent-Length: %d\r\n\r\n" % (name.encode(), len(data))
        if len(data) <= 1 << 16:
            sock.sendall(head + data)
        else:
            sock.sendall(head)
            sock.sendall(data)
    receiver.join()
    elapsed = time.perf_counter() - start
    fp.close()
    sock.close()
    bad = [c for c in codes if c != 200]
    if bad:
        raise RuntimeError("answers other than 200: %s" % sorted(set(bad)))
    return elapsed


def plain_files(folder, names, data):
    """What the disk allows: the same files made by open/write/close."""
    start = time.perf_counter()
    made = set()
    for name in names:
        path = os.path.join(folder, name)
        parent = os.path.dirname(path)
        if parent not in made:
            os.makedirs(parent, exist_ok=True)
            made.add(parent)
        with open(path, "wb") as f:
            f.write(data)
    return time.perf_counter() - start


def cpu_seconds(pid):
    """User + system CPU time of process `pid` (all its threads), from /proc."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def check_and_clear(folder, sub, count, size):
    where = os.path.join(folder, sub)
    files = os.listdir(where)
    sizes = {os.path.getsize(os.path.join(where, f)) for f in files}
    if len(files) != count or sizes != {size}:
        raise RuntimeError("%s: %d files of sizes %s, expected %d of %d" % (where, len(files), sizes, count, size))
    shutil.rmtree(where)
    os.sync()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=int(os.environ.get("RUNS", 3)))
    parser.add_argument("--big-files", type=int, default=48, help="8 MiB files per measurement")
    parser.add_argument("--small-files", type=int, default=2000, help="64 KiB files per measurement")
    parser.add_argument("--bin", default=str(REPO / "target/release/pyme-stream"))
    parser.add_argument("--dir", default=None, help="where the roots go (default: a temporary folder under target/)")
    args = parser.parse_args()
    if not only_loopback():
        raise SystemExit("run inside a network namespace whose only interface is lo (see the top of this file)")
    if not os.path.exists(args.bin):
        raise SystemExit("no %s: cargo build --release --bin pyme-stream" % args.bin)

    base = args.dir or str(REPO / "target")
    os.makedirs(base, exist_ok=True)
    work = tempfile.mkdtemp(prefix="server-vs-pyme-", dir=base)
    roots = {who: os.path.join(work, who) for who in ("disk", "pyme", "ours")}
    for root in roots.values():
        os.makedirs(root)
    home = os.path.join(work, "home")
    os.makedirs(home)

    port = free_port()
    pyme = subprocess.Popen(
        [sys.executable, "-m", "PYME.cluster.HTTPDataServer", "-a", "local", "-p", str(port), "-r", roots["pyme"]],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=dict(os.environ, HOME=home, TMPDIR=home),
    )
    ours = subprocess.Popen(
        [args.bin, "serve", "--advertise", "none", "--port", "0", "--root", roots["ours"]],
        stdout=subprocess.PIPE,
    )
    ours_port = int(ours.stdout.readline().decode().strip().rsplit(":", 1)[1])
    results = {}
    try:
        wait_listening(port, pyme)
        sizes = [("8 MiB", 8 * MiB, args.big_files, 4), ("64 KiB", 64 * 1024, args.small_files, 64)]
        order = ["disk", "pyme", "ours"]
        for run in range(args.runs):
            for label, size, count, window in sizes:
                data = os.urandom(size)
                for who in order[run % 3:] + order[:run % 3]:
                    sub = "r%d-%s" % (run, label.replace(" ", ""))
                    names = ["%s/f%06d.bin" % (sub, i) for i in range(count)]
                    pid = {"disk": os.getpid(), "pyme": pyme.pid, "ours": ours.pid}[who]
                    cpu = cpu_seconds(pid)
                    if who == "disk":
                        seconds = plain_files(roots["disk"], names, data)
                    else:
                        seconds = put_all(port if who == "pyme" else ours_port, names, data, window)
                    cpu = cpu_seconds(pid) - cpu
                    check_and_clear(roots[who], sub, count, size)
                    results.setdefault((label, who), []).append((count, count * size, seconds, cpu))
    finally:
        pyme.send_signal(signal.SIGKILL)
        pyme.wait()
        ours.send_signal(signal.SIGTERM)
        ours.wait()
        shutil.rmtree(work, ignore_errors=True)

    summary = {}
    print("| files | who | MB/s (median) | files/s (median) | CPU ms per file (median) | runs (MB/s) |")
    print("|---|---|---|---|---|---|")
    for (label, who), runs in sorted(results.items(), key=lambda kv: (kv[0][0], order.index(kv[0][1]))):
        mbs = [b / s / 1e6 for _, b, s, _ in runs]
        fps = [n / s for n, _, s, _ in runs]
        cpu = [c * 1e3 / n for n, _, _, c in runs]
        summary["%s %s" % (label, who)] = {"MB/s": statistics.median(mbs), "files/s": statistics.median(fps), "cpu_ms_per_file": statistics.median(cpu)}
        print("| %s | %s | %.0f | %.0f | %.2f | %s |" % (label, who, statistics.median(mbs), statistics.median(fps), statistics.median(cpu), ", ".join("%.0f" % m for m in mbs)))
    # Ratios within each run (the three of a run ran under the same load), then
    # their median, as benches/end_to_end.sh does.
    def ratios(label):
        ours_runs, pyme_runs = results[(label, "ours")], results[(label, "pyme")]
        return [(p[2] / o[2]) for o, p in zip(ours_runs, pyme_runs)]
    big, small = ratios("8 MiB"), ratios("64 KiB")
    print()
    print("ours / PYME per run: 8 MiB %s (median %.1fx, goal >= 5x); 64 KiB %s (median %.1fx, goal >= 1x)" % (
        ", ".join("%.1f" % r for r in big), statistics.median(big),
        ", ".join("%.1f" % r for r in small), statistics.median(small)))
    print(json.dumps({"runs": args.runs, "medians": summary, "ratios_8MiB": big, "ratios_64KiB": small}))


if __name__ == "__main__":
    main()
