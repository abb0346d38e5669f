"""Each operation of our data server driven by PYME's own client code (clusterIO),
on a cluster of three of our servers, and bad input sent the way PYME sends it.

Run by tests/pyme_node.rs inside a network namespace (see conftest.py).
"""

import os
import tempfile

import pytest
import requests

from PYME.IO import clusterIO

CLUSTER = "NODE"


@pytest.fixture(scope="module")
def cluster(servers):
    base = os.path.join(tempfile.gettempdir(), "node-ops")
    roots = [os.path.join(base, "srv%d" % i) for i in range(3)]
    ports = [servers.start(root, CLUSTER) for root in roots]
    return list(zip(roots, ports))


def url(port, path):
    return "http://127.0.0.1:%d/%s" % (port, path)


def test_listdir_of_the_root_and_walk(cluster):
    clusterIO.put_file("ops_list/a.txt", b"a", CLUSTER)
    clusterIO.put_file("ops_list/series/metadata.json", b"{}", CLUSTER)
    # listdir('/') sends GET // to every node.
    root = clusterIO.listdir("/", CLUSTER)
    assert "ops_list/" in root, root
    listing = clusterIO.listdirectory("ops_list/", CLUSTER)
    assert listing["series/"].type == 3, listing  # a folder with metadata.json
    assert listing["a.txt"].size == 1
    walked = {top: sorted(files) for top, dirs, files in clusterIO.walk("/ops_list", serverfilter=CLUSTER)}
    assert walked["/ops_list"] == ["a.txt"], walked
    assert clusterIO.isdir("/", CLUSTER) and clusterIO.exists("ops_list/a.txt", CLUSTER)


def test_glob_across_the_cluster(cluster):
    for i in range(6):
        clusterIO.put_file("ops_glob/f%d.txt" % i, b"x", CLUSTER)
    clusterIO.put_file("ops_glob/other.dat", b"x", CLUSTER)
    found = sorted(clusterIO.cglob("ops_glob/*.txt", CLUSTER))
    assert found == ["ops_glob/f%d.txt" % i for i in range(6)], found
    # ** is not recursive, as in PYME's server.
    assert sorted(clusterIO.cglob("**/f0.txt", CLUSTER)) == ["ops_glob/f0.txt"]


def test_escaping_and_oversized_globs_are_refused(cluster):
    root, port = cluster[0]
    many = os.path.join(root, "ops_many")
    os.makedirs(many)
    for i in range(10001):
        open(os.path.join(many, "m%05d" % i), "wb").close()
    for pattern, code in [("../*", 400), ("/etc/*", 400), ("ops_many/../../*", 400), ("ops_many/*", 413)]:
        r = requests.get(url(port, "__glob?pattern=%s" % pattern), timeout=10)
        assert r.status_code == code, (pattern, r.status_code, r.text)
    # PYME's client takes a refusal for no matches.
    assert clusterIO.cglob("../*", CLUSTER) == []


def test_mirror_file_stores_a_second_copy(cluster):
    clusterIO.put_file("ops_mirror/m.bin", b"mirrored bytes", CLUSTER)
    assert len(clusterIO.locate_file("ops_mirror/m.bin", CLUSTER)) == 1
    clusterIO.mirror_file("ops_mirror/m.bin", CLUSTER)
    holders = [root for root, _ in cluster if os.path.exists(os.path.join(root, "ops_mirror/m.bin"))]
    assert len(holders) == 2, holders
    for root in holders:
        with open(os.path.join(root, "ops_mirror/m.bin"), "rb") as f:
            assert f.read() == b"mirrored bytes"


def test_mirror_from_a_server_outside_the_cluster_is_refused(cluster, servers):
    stranger_root = os.path.join(tempfile.gettempdir(), "node-ops-stranger")
    stranger = servers.start(stranger_root, "STRANGERS")
    requests.put(url(stranger, "ops_stranger.bin"), data=b"s", timeout=5).raise_for_status()
    _, port = cluster[0]
    r = requests.put(url(port, "ops_stranger.bin?MirrorSource=%s" % url(stranger, "ops_stranger.bin")), timeout=5)
    assert r.status_code == 403, r.text
    r = requests.put(url(port, "ops_x.bin?MirrorSource=http://127.0.0.1:1/ops_x.bin"), timeout=5)
    assert r.status_code == 403, r.text


def test_get_status_as_the_cluster_ui_reads_it(cluster):
    nodes = clusterIO.get_status(CLUSTER)
    ports = sorted(port for _, port in cluster)
    assert sorted(node["Port"] for node in nodes) == ports
    for node in nodes:
        assert node["Responsive"] is True
        assert isinstance(node["Port"], int)
        # What PYME's cluster UI computes (clusterstatus/views.py).
        assert 0 <= int(100 * float(node["Disk"]["free"]) / node["Disk"]["total"]) <= 100
        assert 0 <= 100 - node["MemUsage"]["percent"] <= 100
        assert len(node["CPUUsage"]) >= 1
        assert "lo" in node["Network"] and set(node["Network"]["lo"]) == {"send", "recv"}
        assert isinstance(node["Uptime"], str) and node["ComputerName"]
        assert node["IPAddress"] == "127.0.0.1"
