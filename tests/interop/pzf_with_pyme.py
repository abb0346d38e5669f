# Interop check, run by hand: PYME's own PZFFormat (python-microscopy, with
# pymecompress) against pyme-stream's PZF files, both ways.
#
#   pip install numpy pymecompress; pip install --target /tmp/pyme --no-deps python-microscopy
#   PYME_SITE=/tmp/pyme ip netns exec NS python3 tests/interop/pzf_with_pyme.py target/release/pyme-stream
#
# Run it inside a network namespace (importing PYME may start mDNS discovery).
# Work files go to the current folder.
import sys, types, glob, subprocess, numpy as np
sys.modules.setdefault("sphinx", types.ModuleType("sphinx"))
import os
sys.path.append(os.environ.get("PYME_SITE", "/tmp/pyme-venv/lib/python3.11/site-packages"))
from PYME.IO import PZFFormat
rng = np.random.default_rng(7)
frame = (rng.poisson(50, size=(64, 48)) + 100).astype(np.uint16)
frame.tofile("in.raw")
ok = True
for comp, extra in [("raw", []), ("huffman", []), ("huffman", ["--quant-offset", "100", "--quant-scale", "1"])]:
    subprocess.run([sys.argv[1], "pzf", "encode", "--dtype", "u16", "--shape", "64x48", "--compression", comp, *extra, "in.raw", "ours"], check=True, capture_output=True)
    data, header = PZFFormat.loads(open("ours00000.pzf", "rb").read())
    data = np.asarray(data).squeeze()
    if extra:
        same = np.all(np.abs(data.astype(float) - frame) <= 2 * np.sqrt(np.maximum(frame - 100, 0)) + 1)
    else:
        same = np.array_equal(data, frame)
    print("ours ->", "PYME", comp, "quantized" if extra else "", "shape", data.shape, "OK" if same else "DIFFERENT")
    ok &= bool(same)
# The reverse: PYME writes, we decode.
for compression, quant in [(PZFFormat.DATA_COMP_RAW, PZFFormat.DATA_QUANT_NONE), (PZFFormat.DATA_COMP_HUFFCODE, PZFFormat.DATA_QUANT_NONE), (PZFFormat.DATA_COMP_HUFFCODE, PZFFormat.DATA_QUANT_SQRT)]:
    blob = PZFFormat.dumps(frame, compression=compression, quantization=quant, quantizationOffset=100, quantizationScale=1)
    open("theirs.pzf", "wb").write(blob)
    subprocess.run([sys.argv[1], "pzf", "decode", "theirs.pzf", "theirs.raw"], check=True, capture_output=True)
    back = np.fromfile("theirs.raw", dtype=np.uint16).reshape(frame.shape)
    if quant:
        same = np.all(np.abs(back.astype(float) - frame) <= 2 * np.sqrt(np.maximum(frame - 100, 0)) + 1)
    else:
        same = np.array_equal(back, frame)
    print("PYME ->", "ours", compression, quant, "OK" if same else "DIFFERENT")
    ok &= bool(same)
print("ALL OK" if ok else "SOME DIFFERENT")
