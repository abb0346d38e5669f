"""Fixtures: real `pyme-stream serve` data servers on 127.0.0.1.

The server binary is $PYME_STREAM_BIN, else the newest of target/release and
target/debug `pyme-stream` built by cargo in this repository. Every server
listens on a free port of 127.0.0.1 and advertises nothing (no multicast).
"""

import os
import pathlib
import signal
import subprocess
import time

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]


def server_binary():
    given = os.environ.get("PYME_STREAM_BIN")
    if given:
        return given
    built = [
        REPO / "target" / profile / "pyme-stream"
        for profile in ("release", "debug")
        if (REPO / "target" / profile / "pyme-stream").exists()
    ]
    if not built:
        pytest.fail("no pyme-stream binary: run `cargo build` first or set PYME_STREAM_BIN")
    return str(max(built, key=lambda path: path.stat().st_mtime))


class Server:
    """One `pyme-stream serve` process."""

    def __init__(self, root, *args, prefix=()):
        self.root = pathlib.Path(root)
        if "--advertise" not in args:
            args = ("--advertise", "none", *args)
        self.process = subprocess.Popen(
            [*prefix, server_binary(), "serve", "--port", "0", "--root", str(root), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        line = self.process.stdout.readline()
        if not line.startswith("listening on "):
            self.process.kill()
            raise RuntimeError("pyme-stream serve did not start: %r" % line)
        self.address = line.split()[-1]
        host, port = self.address.rsplit(":", 1)
        self.host, self.port = host, int(port)

    def kill(self):
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()

    def stored(self, name):
        return (self.root / name).read_bytes()

    def files(self):
        """The files stored (not the server's temporary files of unfinished bodies)."""
        return sorted(
            str(path.relative_to(self.root))
            for path in self.root.rglob("*")
            if path.is_file() and not path.name.startswith(".pyme-")
        )


@pytest.fixture
def start_server(tmp_path):
    servers = []

    def start(*args, name=None):
        root = tmp_path / (name or "server%d" % len(servers))
        server = Server(root, *args)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.kill()


@pytest.fixture
def server(start_server):
    return start_server()


@pytest.fixture
def cluster(start_server):
    return [start_server() for _ in range(3)]


def wait_for(condition, timeout=20.0, what="condition"):
    """Waits until condition() is true (polling), failing the test after timeout."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail("timed out waiting for %s" % what)
        time.sleep(0.01)
