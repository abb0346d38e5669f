"""Makes the golden vectors under tests/data/golden/ with pymecompress.

Run once by hand (pip install numpy cython setuptools wheel; pip install
--no-build-isolation pymecompress); the tests read the files and never need Python.

For each case NAME it writes NAME.in (the raw input bytes) and NAME.huf (the
pymecompress Huffman block of those bytes). Quantized cases also get NAME.q (the
quantized bytes pymecompress decodes from its own block). It also writes a few PZF
files assembled from pymecompress blocks following PYME_WIRE.md section 3 (PYME
itself is not installed here), plus speed figures with --bench.
"""

import os
import struct
import sys
import time

import numpy as np
from pymecompress import bcl

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "golden")


def poisson_frame(rows, cols, seed):
    rng = np.random.RandomState(seed)
    return (rng.poisson(50, size=(rows, cols)) + 100).astype("<u2")


def fibonacci_bytes(n_symbols, seed):
    counts = [1, 1]
    while len(counts) < n_symbols:
        counts.append(counts[-1] + counts[-2])
    data = np.concatenate([np.full(c, 3 * s + 7, dtype="u1") for s, c in enumerate(counts)])
    np.random.RandomState(seed).shuffle(data)
    return data


def huffman(data):
    return bytes(bcl.HuffmanCompress(np.ascontiguousarray(data).view("u1").ravel()))


def write(name, suffix, payload):
    with open(os.path.join(HERE, name + suffix), "wb") as f:
        f.write(payload)


def byte_cases():
    rng = np.random.RandomState(7)
    all256 = np.concatenate([np.arange(256, dtype="u1"), rng.randint(0, 256, 3000).astype("u1")])
    rng.shuffle(all256)
    return {
        "empty": np.zeros(0, dtype="u1"),
        "one_symbol": np.full(1000, 42, dtype="u1"),
        "two_symbols": np.array([5] * 700 + [9] * 300, dtype="u1"),
        "skewed": fibonacci_bytes(17, 3),
        "all256": all256,
        "uniform": rng.randint(0, 256, 2000).astype("u1"),
        "noise_u16": poisson_frame(48, 40, 1),
        "odd_u16": poisson_frame(17, 13, 2),
    }


def quant_cases():
    return {"quant_u16": (poisson_frame(48, 40, 4), 100.0, 1.0), "quant_scale_u16": (poisson_frame(31, 29, 5), 90.0, 0.7)}


def pzf_header(version, fmt, compression, quant, order, seq, frame, w, h, d, ts, qoff, qscale):
    head = struct.pack("<2sBBBBcBqIIIIQff", b"BD", version, fmt, compression, quant, order, 0,
                       seq, frame, w, h, d, ts, qoff, qscale)
    if version >= 3:
        return head + struct.pack("<I", 64) + bytes(12)
    return head


def chunked(raw, n_chunks):
    size = -(-len(raw) // n_chunks)
    pieces = [raw[i:i + size] for i in range(0, len(raw), size)]
    out = struct.pack("<H", len(pieces))
    for p in pieces:
        block = huffman(np.frombuffer(p, dtype="u1"))
        out += struct.pack("<II", len(block), len(p)) + block
    return out


def pzf_cases():
    frame = poisson_frame(24, 20, 9)
    raw = frame.tobytes()
    q = bcl.HuffmanCompressQuant(frame, 100.0, 1.0)
    return {
        "v3_raw_u16": pzf_header(3, 1, 0, 0, b"C", 77, 5, 24, 20, 1, 123456, 0, 1) + raw,
        "v3_huffman_u16": pzf_header(3, 1, 1, 0, b"C", 77, 6, 24, 20, 1, 123457, 0, 1) + huffman(frame),
        "v3_quant_u16": pzf_header(3, 1, 1, 1, b"C", 77, 7, 24, 20, 1, 123458, 100.0, 1.0) + bytes(q),
        "v3_chunked_u16": pzf_header(3, 1, 2, 0, b"F", 78, 8, 24, 20, 1, 9, 0, 1) + chunked(raw, 3),
        "v2_huffman_u8": pzf_header(2, 0, 1, 0, b"C", -1, 9, 10, 12, 2, 1, 0, 1)
        + huffman(np.arange(240, dtype="u1") % 7),
        "v1_raw_f32": pzf_header(1, 2, 0, 0, b"F", 3, 1, 4, 5, 1, 2, 0, 1)
        + np.linspace(-1, 1, 20, dtype="<f4").tobytes(),
    }


def make():
    os.makedirs(HERE, exist_ok=True)
    for name, data in byte_cases().items():
        write(name, ".in", data.tobytes())
        write(name, ".huf", huffman(data))
    for name, (frame, offset, scale) in quant_cases().items():
        block = bytes(bcl.HuffmanCompressQuant(frame, offset, scale))
        write(name, ".in", frame.tobytes())
        write(name, ".huf", block)
        write(name, ".q", bytes(bcl.HuffmanDecompress(np.frombuffer(block, "u1").copy(), frame.size)))
        write(name, ".params", struct.pack("<ff", offset, scale))
    for name, payload in pzf_cases().items():
        write(name, ".pzf", payload)
    write("many_small", ".bin", many_small())


def many_small():
    """96 short inputs of assorted lengths and skews: each stored as u32 input
    length, input, u32 block length, block (catches end-of-block rules)."""
    rng = np.random.RandomState(11)
    out = b""
    for i in range(96):
        n = 1 + i * 3 + rng.randint(0, 3)
        data = np.minimum(rng.geometric(0.1 + 0.8 * rng.rand(), size=n), 255).astype("u1")
        block = huffman(data)
        out += struct.pack("<I", n) + data.tobytes() + struct.pack("<I", len(block)) + block
    return out


def timings(fn, repeats=15):
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    times.sort()
    return times[0], times[len(times) // 2]


def bench():
    """Speed on one 2048x2048 Poisson(50)+100 uint16 frame: MB/s of uint16 input."""
    frame = poisson_frame(2048, 2048, 0)
    nbytes = frame.nbytes
    flat = frame.view("u1").ravel()
    block = bytes(bcl.HuffmanCompress(flat))
    qblock = bytes(bcl.HuffmanCompressQuant(frame, 100.0, 1.0))
    cases = [
        ("huffman encode", lambda: bcl.HuffmanCompress(flat), len(block)),
        ("quant+huffman encode", lambda: bcl.HuffmanCompressQuant(frame, 100.0, 1.0), len(qblock)),
        ("huffman decode", lambda: bcl.HuffmanDecompress(np.frombuffer(block, "u1").copy(), nbytes), len(block)),
    ]
    for label, fn, size in cases:
        best, median = timings(fn)
        print(f"pymecompress {label}: best {nbytes / best / 1e6:.0f} MB/s, median {nbytes / median / 1e6:.0f} MB/s,"
              f" ratio {nbytes / size:.2f}")


if __name__ == "__main__":
    bench() if "--bench" in sys.argv else make()
