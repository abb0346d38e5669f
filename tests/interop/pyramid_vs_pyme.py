"""The distributed pyramid: PYME's own server against ours, same requests.

Run by tests/server_pyramid.rs, inside a network namespace whose only interface
is lo (PYME's server and modules may start mDNS):

    ip netns exec NS python3 pyramid_vs_pyme.py PYME_STREAM_BIN WORK_DIR

PYME 26.9.3's DistributedImagePyramid cannot be built (its ClusterPZFTileIO does
not take the key_schema argument ImagePyramid passes), so the requests are made
by PYME's own code around that: `create_remote_part` sends each create (with
requests, as PYME does) and `update_base_tiles_from_frame` splits every frame
into the tile requests PYME sends (captured where PYME hands them to its
streamer). They are sent as PYME's cluster_streaming.Stream sends them
(pipelined `PUT /<name> HTTP/1.1`, `Connection: keep-alive`, then the finish
with `Connection: close`), and answers are read with PYME's own parser.

PYME's server answers a tile before it adds it (a queue and a thread), drops
tiles still queued when the finish comes, and rebuilds its levels whenever it
is idle for 0.1 s: so the driver waits, from PYME's log, for its queue to drain
before the finish, and makes the first frame cover every tile (a later rebuild
then cannot leave an upper tile stale). Our server is killed (SIGKILL) and
restarted between the first frame and the rest: its state must survive.

Checks: the same files, byte for byte, under the pyramid's folder (our hidden
.pyme-pyramid state aside: it is gone after the finish, but for the marker),
and PYME's ImagePyramid reading every tile of every level the same from both.
Prints one JSON line with what was compared; exits 1 on any difference.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import types

sys.modules.setdefault("sphinx", types.ModuleType("sphinx"))

import numpy as np  # noqa: E402

from PYME.Analysis.distributed_pyramid import DistributedImagePyramid  # noqa: E402
from PYME.Analysis.tile_pyramid import ImagePyramid  # noqa: E402
from PYME.IO import clusterIO  # noqa: E402

TILE = 64
CHUNK = [4, 4, 1]
DIR = "pyramids/run1"


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_listening(port, proc, what):
    deadline = time.time() + 60
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit("%s exited early (%s)" % (what, proc.returncode))
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit("%s does not listen on %d" % (what, port))


class Recorder:
    """Stands in for PYME's Streamer: keeps what PYME's code puts."""

    def __init__(self, servers):
        self.servers = servers
        self.puts = []

    def put_stream(self, idx, filename, data):
        self.puts.append((idx, filename, data))


def pyramid(servers):
    """PYME's client object as far as it can be made (see the top comment)."""
    p = DistributedImagePyramid.__new__(DistributedImagePyramid)
    p.tile_size = TILE
    p.chunk_shape = CHUNK
    p.base_dir = DIR
    p.n_tiles_x = p.n_tiles_y = 0
    p.pyramid_valid = False
    p._spooler = Recorder(servers)
    return p


def create_on(servers):
    """PYME's create_remote_part for each server (it sends with requests, and raises
    unless the answer is 200)."""
    p = pyramid(servers)
    for idx in range(len(servers)):
        p.create_remote_part(idx, None)


def tile_batches(frames_):
    """The tile requests PYME's update_base_tiles_from_frame makes for each frame,
    as for a cluster of one server (every tile goes to it)."""
    p = pyramid([("127.0.0.1", 0)])
    batches = []
    for x, y, frame in frames_:
        p._spooler.puts = []
        p.update_base_tiles_from_frame(x, y, frame)
        batches.append([(name, data) for idx, name, data in p._spooler.puts])
    return batches


def send(port, requests, finish=None):
    """Sends like PYME's Stream: pipelined, then reads every answer with PYME's parser."""
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    fp = sock.makefile("rb", 65536)
    wire = []
    for name, data in requests:
        wire.append(b"PUT /%s HTTP/1.1\r\nConnection: keep-alive\r\nContent-Length: %d\r\n\r\n" % (name.encode(), len(data)) + data)
    if finish:
        wire.append(b"PUT /%s HTTP/1.1\r\nConnection: close\r\nContent-Length: 0\r\n\r\n" % finish.encode())
    sock.sendall(b"".join(wire))
    codes = []
    for _ in wire:
        status, reason, msg = clusterIO._parse_response(fp)
        codes.append(status)
    fp.close()
    sock.close()
    return codes


def log_lines(path, text):
    with open(path, "rb") as f:
        return f.read().decode("utf-8", "replace").count(text)


def wait_drained(log, rebuilds_before):
    """PYME rebuilds only once its queue is empty: wait for a rebuild logged after
    every tile was answered, then for the log to stay quiet (no more rebuilds)."""
    deadline = time.time() + 120
    while log_lines(log, "updating part pyramid done") <= rebuilds_before:
        if time.time() > deadline:
            raise SystemExit("PYME's server never drained its tile queue")
        time.sleep(0.05)
    while True:
        size = os.path.getsize(log)
        time.sleep(0.5)
        if os.path.getsize(log) == size:
            return
        if time.time() > deadline:
            raise SystemExit("PYME's server keeps logging")


def files_under(folder):
    out = {}
    for dirpath, dirnames, filenames in os.walk(folder):
        for name in filenames:
            full = os.path.join(dirpath, name)
            with open(full, "rb") as f:
                out[os.path.relpath(full, folder)] = f.read()
    return out


class Ours:
    def __init__(self, binary, root):
        self.binary, self.root = binary, root
        self.start()

    def start(self):
        self.proc = subprocess.Popen(
            [self.binary, "serve", "--advertise", "none", "--port", "0", "--root", self.root],
            stdout=subprocess.PIPE,
        )
        line = self.proc.stdout.readline().decode()
        self.port = int(line.strip().rsplit(":", 1)[1])

    def kill(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()


def frames():
    rng = np.random.default_rng(24)
    out = [(0, 0, (rng.random((256, 256)) * 1000).astype("f"))]  # every tile, 0..4 both ways
    # PYME's server loses its tile thread to a chunk one pixel wide (it squeezes the
    # array to 1-D): keep every chunk of these frames at least two pixels wide.
    def two_wide(start, size):
        return start % TILE != TILE - 1 and (start + size) % TILE != 1
    while len(out) < 7:
        x, y = (int(v) for v in rng.integers(0, 150, 2))
        if two_wide(x, 100) and two_wide(y, 90):
            out.append((x, y, (rng.random((100, 90)) * 1000 + len(out)).astype("f")))
    # A frame in Fortran order whose chunks span all its rows: PZF 'F' tiles.
    out.append((64, 20, np.asfortranarray((rng.random((64, 120)) * 500).astype("f"))))
    # A uint16 frame: PZF uint16 tiles.
    out.append((30, 100, rng.integers(0, 4000, (80, 80)).astype("u2")))
    return out


def main():
    binary, work = sys.argv[1], os.path.abspath(sys.argv[2])
    pyme_root, ours_root, home = (os.path.join(work, d) for d in ("pyme", "ours", "home"))
    for d in (pyme_root, ours_root, home):
        os.makedirs(d, exist_ok=True)
    log = os.path.join(work, "pyme-server.log")
    port = free_port()
    env = dict(os.environ, HOME=home, TMPDIR=home)  # PYME keeps its registry (sqlite) in the temp folder
    with open(log, "wb") as logf:
        pyme = subprocess.Popen(
            [sys.executable, "-m", "PYME.cluster.HTTPDataServer", "-a", "local", "-p", str(port), "-r", pyme_root],
            stdout=logf, stderr=subprocess.STDOUT, env=env,
        )
    ours = Ours(binary, ours_root)
    try:
        wait_listening(port, pyme, "PYME's HTTPDataServer")
        servers = [("127.0.0.1", port), ("127.0.0.1", ours.port)]
        create_on(servers)
        batches = tile_batches(frames())
        rebuilds = log_lines(log, "updating part pyramid done")
        first, rest = batches[0], [r for b in batches[1:] for r in b]
        codes = {"pyme": [], "ours": []}
        codes["pyme"] += send(port, first)
        codes["ours"] += send(ours.port, first)
        wait_drained(log, rebuilds)
        mid_rebuilds = log_lines(log, "Rebuilding base")
        ours.kill()
        ours.start()
        rebuilds = log_lines(log, "updating part pyramid done")
        codes["pyme"] += send(port, rest)
        codes["ours"] += send(ours.port, rest)
        wait_drained(log, rebuilds)
        finish = "__pyramid_finish/" + DIR
        codes["pyme"] += send(port, [], finish)
        codes["ours"] += send(ours.port, [], finish)
        problems = []
        for who, got in codes.items():
            if any(c != 200 for c in got):
                problems.append("%s answered %s" % (who, sorted(set(got))))
        theirs = files_under(os.path.join(pyme_root, DIR))
        mine = {k: v for k, v in files_under(os.path.join(ours_root, DIR)).items() if not k.startswith(".pyme-pyramid")}
        if sorted(theirs) != sorted(mine):
            problems.append("different files: only PYME's %s, only ours %s" % (sorted(set(theirs) - set(mine))[:5], sorted(set(mine) - set(theirs))[:5]))
        differing = [k for k in theirs if k in mine and theirs[k] != mine[k]]
        if differing:
            problems.append("%d files differ, e.g. %s" % (len(differing), differing[:5]))
        read = compare_readers(os.path.join(pyme_root, DIR), os.path.join(ours_root, DIR), theirs)
        problems += read["problems"]
        print(json.dumps({
            "requests": len(codes["ours"]),
            "files": len(theirs),
            "tiles_read": read["tiles"],
            "levels": read["levels"],
            "pyme_rebuilds_before_restart": mid_rebuilds,
            "problems": problems,
        }))
        return 1 if problems or not theirs else 0
    finally:
        pyme.send_signal(signal.SIGKILL)
        pyme.wait()
        ours.kill()


def compare_readers(theirs_dir, mine_dir, files):
    """PYME's ImagePyramid on each folder: every tile of every level the same."""
    theirs = ImagePyramid(theirs_dir, pyramid_tile_size=TILE)
    mine = ImagePyramid(mine_dir, pyramid_tile_size=TILE)
    problems, tiles, levels = [], 0, set()
    for name in sorted(files):
        parts = name.split(os.sep)
        if not name.endswith("_img.pzf") or len(parts) != 4:
            continue
        level, x, y = int(parts[0]), int(parts[2]), int(parts[3].split("_")[0])
        a, b = theirs.get_tile(level, x, y), mine.get_tile(level, x, y)
        if a is None or b is None or a.shape != b.shape or not np.array_equal(a, b, equal_nan=True):
            problems.append("tile %d/%d/%d reads differently" % (level, x, y))
        tiles += 1
        levels.add(level)
    return {"problems": problems, "tiles": tiles, "levels": sorted(levels)}


if __name__ == "__main__":
    sys.exit(main())
