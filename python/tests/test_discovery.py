"""Finding servers by serverfilter, through the local registry only (no
multicast: mdns=False)."""

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
