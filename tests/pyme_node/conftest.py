"""Runs PYME's own data-server tests against `pyme-stream serve`.

PYME's test modules (tests/PYME/IO/test_dataserver.py, test_cluster_spooler.py,
test_discovery.py from the python-microscopy sdist) start PYME's HTTPDataServer in
their `setup_module`. This conftest replaces exactly that: when pytest collects one
of those modules, its `setup_module`/`teardown_module` are swapped for ones that
start and stop our server with the same root, cluster name, ports and
advertisement. Everything else in the modules (their tests, PYME's skip markers)
runs unchanged.

Run only inside a network namespace whose only interface is lo (PYME's discovery
starts zeroconf at import), with TMPDIR private to the run (PYME's and our local
registry, `_pyme-http.sqlite`, live there). `PYME_STREAM_BIN` names the binary.
The Rust test tests/pyme_node.rs does all of that.
"""

import os
import shutil
import signal
import subprocess
import tempfile

import pytest

BIN = os.environ.get("PYME_STREAM_BIN", "pyme-stream")


class Servers:
    """Our servers, started as PYME's modules start theirs."""

    def __init__(self):
        self.procs = []

    def start(self, root, serverfilter, port=0, extra=()):
        os.makedirs(root, exist_ok=True)
        proc = subprocess.Popen(
            [BIN, "serve", "--root", root, "--serverfilter", serverfilter, "--port", str(port),
             "--advertise", "local", *extra],
            stdout=subprocess.PIPE,
            text=True,
        )
        # One line once it accepts connections (and is in the registry).
        line = proc.stdout.readline()
        assert line.startswith("listening on "), line
        self.procs.append(proc)
        return int(line.rsplit(":", 1)[1])

    def stop(self):
        for proc in self.procs:
            proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.procs = []


def _rmtree(path):
    def writable(func, p, _):
        os.chmod(p, 0o700)
        func(p)

    if os.path.exists(path):
        shutil.rmtree(path, onerror=writable)


def _dataserver(module):
    servers = Servers()

    def setup_module():
        # As PYME's: a fresh root, cluster TES1, advertised locally.
        module.tmp_root = os.path.join(tempfile.gettempdir(), "PYMEDataServer_TES1")
        _rmtree(module.tmp_root)
        servers.start(module.tmp_root, "TES1")

    def teardown_module():
        servers.stop()

    return setup_module, teardown_module


def _cluster_spooler(module):
    servers = Servers()

    def setup_module():
        # As PYME's: ten servers on ports 8100-8109 sharing one root, in test mode
        # (-t: bodies read and dropped, our --discard). PYME's --timeout-test=0.5
        # (sleep half a second per request) has no counterpart in our server.
        module.tmp_root = os.path.join(tempfile.gettempdir(), "PYMEDataServer_TEST")
        for i in range(10):
            servers.start(module.tmp_root, "TEST", port=8100 + i, extra=("--discard",))

    def teardown_module():
        servers.stop()
        _rmtree(module.tmp_root)

    return setup_module, teardown_module


def _discovery(module):
    servers = Servers()

    def setup_module():
        # As PYME's: ten servers, one root each, ports 8080-8089. PYME's advertise on
        # zeroconf by default; ours in the local registry (the namespace has no
        # multicast interface).
        module.tmp_root = os.path.join(tempfile.gettempdir(), "PYMEDataServer_TEST")
        for i in range(10):
            servers.start(os.path.join(module.tmp_root, "srv%d" % i), "TEST", port=8080 + i)

    def teardown_module():
        servers.stop()
        _rmtree(module.tmp_root)

    return setup_module, teardown_module


SETUPS = {
    "test_dataserver": _dataserver,
    "test_cluster_spooler": _cluster_spooler,
    "test_discovery": _discovery,
}


def pytest_collectstart(collector):
    if isinstance(collector, pytest.Module) and collector.path.stem in SETUPS:
        module = collector.obj
        module.setup_module, module.teardown_module = SETUPS[collector.path.stem](module)


@pytest.fixture(scope="module")
def servers():
    """Our servers for tests of our own; stopped after the module."""
    started = Servers()
    yield started
    started.stop()
