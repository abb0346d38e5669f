"""Whole-process PZF encoding: `pyme-stream pzf encode` against pymecompress.

Both sides do the same job on the same raw file of uint16 Poisson(50)+100 frames
(2048x2048 by default): read it frame by frame, Huffman-code each frame (plain, and
square-root quantized with offset 100, scale 1), write one PZF file per frame. The
pymecompress side is a Python process (this script in its worker mode) that reads each
frame into one reused numpy array, calls `bcl.HuffmanCompress` or
`bcl.HuffmanCompressQuant` and writes header and block; it also reports the CPU time
spent inside pymecompress alone ("in memory"), the figure the encoder benchmarks use.

Each repetition runs all four processes (Rust and pymecompress, both modes) one after
the other, so that the noise of a shared machine hits all of them alike; the CPU time
of each process (user + system, from wait4, including start-up and file I/O) is turned
into CPU seconds per GB of input, ratios are taken inside each repetition, and the
medians are printed. The first and last frames of both sides are checked to carry the
same coded bytes.

Needs numpy and pymecompress in the running Python (pip install numpy cython setuptools
wheel; pip install --no-build-isolation pymecompress) and builds the release binary.

Environment: BASELINE (another pyme-stream binary, say an older build, measured as a
third side in the same runs), FRAMES (default 64, 512 MiB), ROWS, COLS (2048), RUNS (default 9),
WORKDIR (default: a temporary folder on /dev/shm if present, else $TMPDIR).
"""

import os
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import time

HEADER = "<2sBBBBcBqIIIIQffI12x"  # PYME_WIRE.md section 3, version 3
U16, HUFFMAN, SQRT = 1, 1, 1
QUANT_OFFSET, QUANT_SCALE = 100.0, 1.0


def worker(mode, raw_path, out_prefix, rows, cols):
    """The pymecompress side: one PZF file per frame; prints the encoder's CPU seconds."""
    import numpy as np
    from pymecompress import bcl

    frame = np.empty((rows, cols), dtype="<u2")
    flat = frame.view("u1").ravel()
    quant = mode == "quant"
    encoder_seconds = 0.0
    index = 0
    with open(raw_path, "rb", buffering=0) as f:
        while f.readinto(flat) == flat.nbytes:
            start = time.process_time()
            if quant:
                block = bcl.HuffmanCompressQuant(frame, QUANT_OFFSET, QUANT_SCALE)
            else:
                block = bcl.HuffmanCompress(flat)
            encoder_seconds += time.process_time() - start
            header = struct.pack(HEADER, b"BD", 3, U16, HUFFMAN, SQRT if quant else 0, b"C", 0,
                                 0, index, rows, cols, 1, 0,
                                 QUANT_OFFSET if quant else 0.0, QUANT_SCALE if quant else 1.0, 64)
            with open(f"{out_prefix}{index:05d}.pzf", "wb") as out:
                out.write(header)
                out.write(block)
            index += 1
    print(encoder_seconds)


def run_measured(argv):
    """Runs a process; returns (its user + system CPU seconds, wall seconds, stdout)."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE)
    stdout = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        sys.exit(f"{argv[0]} failed with status {proc.returncode}")
    return usage.ru_utime + usage.ru_stime, wall, stdout.decode()


def make_input(path, frames, rows, cols):
    import numpy as np

    rng = np.random.RandomState(0)
    with open(path, "wb") as f:
        for _ in range(frames):
            f.write((rng.poisson(50, size=(rows, cols)) + 100).astype("<u2").tobytes())


def coded_bytes(path):
    with open(path, "rb") as f:
        return f.read()[64:]


def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    frames = int(os.environ.get("FRAMES", 64))
    rows = int(os.environ.get("ROWS", 2048))
    cols = int(os.environ.get("COLS", 2048))
    runs = int(os.environ.get("RUNS", 9))
    default_parent = "/dev/shm" if os.path.isdir("/dev/shm") else None
    workdir = tempfile.mkdtemp(prefix="pzf-bench-", dir=os.environ.get("WORKDIR", default_parent))
    subprocess.run(["cargo", "build", "--release", "--quiet", "--bin", "pyme-stream"], cwd=root, check=True)
    binary = os.path.join(root, "target", "release", "pyme-stream")
    try:
        raw = os.path.join(workdir, "frames.raw")
        make_input(raw, frames, rows, cols)
        gigabytes = os.path.getsize(raw) / 1e9
        modes = {"huffman": [], "quant": []}
        rust_args = {"huffman": [], "quant": ["--quant-offset", str(QUANT_OFFSET), "--quant-scale", str(QUANT_SCALE)]}
        baseline = os.environ.get("BASELINE")
        sides = ("rust", "pymecompress", "baseline") if baseline else ("rust", "pymecompress")
        for run in range(runs):
            for mode in modes:
                figures = {}
                for side in sides:
                    out_dir = os.path.join(workdir, f"{side}-{mode}")
                    os.mkdir(out_dir)
                    prefix = os.path.join(out_dir, "f")
                    if side in ("rust", "baseline"):
                        argv = [binary if side == "rust" else baseline, "pzf", "encode", "--dtype", "u16", "--shape", f"{rows}x{cols}",
                                "--compression", "huffman", *rust_args[mode], raw, prefix]
                    else:
                        argv = [sys.executable, os.path.abspath(__file__), "--worker", mode, raw, prefix,
                                str(rows), str(cols)]
                    cpu, wall, stdout = run_measured(argv)
                    figures[side] = cpu / gigabytes
                    figures[side + " wall"] = wall / gigabytes
                    if side == "pymecompress":
                        # pymecompress prints a line of its own per quantized frame; ours is the last.
                        figures["pymecompress in memory"] = float(stdout.split()[-1]) / gigabytes
                    written = sorted(os.listdir(out_dir))
                    if len(written) != frames:
                        sys.exit(f"{side} {mode}: {len(written)} files for {frames} frames")
                for name in (written[0], written[-1]):
                    ours = coded_bytes(os.path.join(workdir, f"rust-{mode}", name))
                    theirs = coded_bytes(os.path.join(workdir, f"pymecompress-{mode}", name))
                    if ours != theirs:
                        sys.exit(f"{mode}: {name} differs from pymecompress's")
                for side in sides:
                    shutil.rmtree(os.path.join(workdir, f"{side}-{mode}"))
                figures["ratio"] = figures["pymecompress"] / figures["rust"]
                figures["ratio in memory"] = figures["pymecompress in memory"] / figures["rust"]
                if baseline:
                    figures["baseline ratio"] = figures["pymecompress"] / figures["baseline"]
                    figures["baseline ratio in memory"] = figures["pymecompress in memory"] / figures["baseline"]
                modes[mode].append(figures)
                print(f"run {run + 1} {mode}: " + ", ".join(f"{k} {v:.3f}" for k, v in figures.items()),
                      file=sys.stderr)
        print(f"{frames} frames of {rows}x{cols} uint16 ({gigabytes:.3f} GB), {runs} interleaved runs, medians;")
        print("CPU seconds (user + system) per GB of input, whole process unless said")
        print("| mode | pyme-stream | pymecompress | ratio | pymecompress encoder only | ratio | pyme-stream wall s/GB |")
        print("|---|---|---|---|---|---|---|")
        for mode, rows_of in modes.items():
            def med(key):
                return statistics.median(f[key] for f in rows_of)
            print(f"| {mode} | {med('rust'):.3f} | {med('pymecompress'):.3f} | {med('ratio'):.2f}x "
                  f"| {med('pymecompress in memory'):.3f} | {med('ratio in memory'):.2f}x | {med('rust wall'):.3f} |")
            if baseline:
                print(f"| {mode}, BASELINE | {med('baseline'):.3f} | | {med('baseline ratio'):.2f}x | "
                      f"| {med('baseline ratio in memory'):.2f}x | {med('baseline wall'):.3f} |")
    finally:
        shutil.rmtree(workdir)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        worker(sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]), int(sys.argv[6]))
    else:
        main()
