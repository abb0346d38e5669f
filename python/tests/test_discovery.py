"""Finding servers by serverfilter, through the local registry only (no
multicast: mdns=False)."""

import time

import pytest

import pyme_streaming as ps


def test_streamer_finds_the_cluster_in_the_local_registry(start_server, tmp_path):
    registry = tmp_path / "registry.sqlite"
    mine = [
        start_server("--advertise", "local", "--registry", str(registry), "--serverfilter", "pytest-lab")
        for _ in range(2)
    ]
    start_server("--advertise", "local", "--registry", str(registry), "--serverfilter", "other-lab")
    assert ps.n_cluster_servers("pytest-lab", mdns=False, registry=str(registry)) == 2
    assert ps.n_cluster_servers("no-such-lab", mdns=False, registry=str(registry)) == 0
    with ps.Streamer("pytest-lab", mdns=False, registry=str(registry)) as s:
        assert s.n_servers == 2
        assert sorted(port for _, port in s.servers) == sorted(m.port for m in mine)
        for i in range(4):
            s.put("disc/%d" % i, b"found", i=i)
    assert sum(len(m.files()) for m in mine) == 4


def test_no_server_found_is_a_discovery_error(tmp_path):
    with pytest.raises(ps.DiscoveryError, match="nobody-here"):
        ps.Streamer("nobody-here", mdns=False, registry=str(tmp_path / "empty.sqlite"))


def test_a_server_started_during_the_run_joins_and_one_killed_is_reported_down(start_server, tmp_path):
    registry = tmp_path / "registry.sqlite"

    def advertised():
        return start_server("--advertise", "local", "--registry", str(registry), "--serverfilter", "live-lab")

    first = [advertised() for _ in range(2)]
    states = []
    seen_n = []

    def spread(n_servers, i=None):
        seen_n.append(n_servers)
        return i % n_servers

    s = ps.Streamer(
        "live-lab", mdns=False, registry=str(registry), discovery_period_ms=200,
        distribution_fcn=spread, server_callback=lambda index, state: states.append((index, state)),
    )
    assert s.n_servers == 2
    third = advertised()
    deadline = time.monotonic() + 60
    while (s.n_servers < 3 or (2, "up") not in states) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert s.n_servers == 3 and (2, "up") in states, states
    assert len(s.servers) == 3 and s.servers[2][1] == third.port
    for i in range(30):
        s.put("live/%d" % i, b"joined", i=i)
    s.flush(60)
    assert max(seen_n) == 3
    assert len(third.files()) == 10
    # Killed (its registry row stays, its port refuses): marked down, and
    # every later file lands on the two others.
    third.kill()
    while (2, "down") not in states and time.monotonic() < deadline + 60:
        time.sleep(0.01)
    assert (2, "down") in states, states
    assert s.server_state(2) == "down"
    for i in range(30, 60):
        s.put("live/%d" % i, b"joined", i=i)
    s.close()
    assert s.stats()["files_acknowledged"] == 60
    assert sum(len(m.files()) for m in first) == 50
