"""PYME's own acquisition code streams through pyme_streaming after install().

Needs python-microscopy importable (`pip install --no-deps python-microscopy`
plus numpy requests six pyyaml zeroconf jinja2 tables; see docs/PYTHON.md) and
root with `ip`: PYME's cluster modules may send mDNS at import, so PYME only
ever runs inside a network namespace, made and removed here, whose only
interface is lo.
"""

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import types

import pytest

import pyme_streaming as ps

HERE = os.path.dirname(os.path.abspath(__file__))


def pyme_available():
    return importlib.util.find_spec("PYME") is not None


@pytest.fixture
def namespace():
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("needs root and ip to make a network namespace for PYME")
    name = "pymestreaming-pytest-%d" % os.getpid()
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "netns", "exec", name, "ip", "link", "set", "lo", "up"], check=True)
        yield ["ip", "netns", "exec", name]
    finally:
        subprocess.run(["ip", "netns", "delete", name], check=False)


def test_install_replaces_the_module_members_and_uninstall_restores_them():
    module = types.ModuleType("fake_cluster_streaming")

    def original_streamer(serverfilter="lab-cluster", servers=None, distribution_fcn=None, filter=None):
        return "pyme's"

    module.Streamer = original_streamer
    module.Stream = object
    module.distribution_function_round_robin = lambda n_servers, i=None: 0
    module.n_cluster_servers = lambda serverfilter: 0
    ps.install(module)
    assert module.Stream is ps.Stream
    assert module.distribution_function_round_robin is ps.distribution_function_round_robin
    assert module.n_cluster_servers is ps.n_cluster_servers
    assert module.Streamer is not original_streamer
    ps.uninstall(module)
    assert module.Streamer is original_streamer and module.Stream is object


def test_installed_streamer_uses_the_given_servers(start_server):
    server = start_server()
    module = types.ModuleType("fake_cluster_streaming")
    module.Streamer = lambda serverfilter="x", servers=None, distribution_fcn=None, filter=None: None
    ps.install(module, servers=[server.address])
    streamer = module.Streamer(serverfilter="x", filter=lambda d: d[0])
    assert isinstance(streamer, ps.Streamer)
    streamer.put("inst/a", (b"A", 1), i=1)
    streamer.close()
    assert server.stored("inst/a") == b"A"


@pytest.mark.skipif(not pyme_available(), reason="python-microscopy (PYME) is not installed")
def test_pymes_cluster_backend_spools_through_pyme_streaming(namespace, tmp_path):
    from conftest import Server

    server = Server(tmp_path / "root", prefix=namespace)
    try:
        n_frames = 200
        run = subprocess.run(
            [*namespace, sys.executable, os.path.join(HERE, "pyme_spool_scenario.py"), server.address, str(n_frames)],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert run.returncode == 0, run.stderr[-3000:]
        result = json.loads(run.stdout.strip().splitlines()[-1])
    finally:
        server.kill()
    assert result["streamer_type"] == "pyme_streaming.Streamer"
    files = n_frames + 3  # frames, metadata.json, final_metadata.json, events.json
    assert result["stats"]["files_acknowledged"] == files, result
    assert result["stats"]["files_failed"] == 0
    assert result["outcomes_ok"] == files
    stored = server.files()
    assert len(stored) == files
    assert "pytest/series/metadata.json" in stored and "pytest/series/events.json" in stored
    frame7 = server.stored("pytest/series/frame00007.pzf")
    assert frame7[:2] == b"BD"
    # PZF raw: the pixels after the header are frame 7's
    import numpy as np

    pixels = np.frombuffer(frame7[-32 * 16 * 2:], dtype=np.uint16).reshape(32, 16)
    assert (pixels == np.full((32, 16), 7, dtype=np.uint16) + np.arange(16, dtype=np.uint16)).all()
