"""PYME's interface (Streamer, Stream, distribution functions) and what is
beyond it (context manager, outcomes, stats, built-in policies), against real
`pyme-stream serve` servers on loopback."""

import gzip
import threading

import pytest

import pyme_streaming as ps
from conftest import wait_for


def servers_of(cluster):
    return [(s.host, s.port) for s in cluster]


def test_streamer_round_robin_on_i_puts_each_file_on_its_server(cluster):
    streamer = ps.Streamer(servers=servers_of(cluster), round_robin_start=0)
    assert len(streamer) == 3 and streamer.n_servers == 3
    assert streamer.servers == servers_of(cluster)
    for i in range(9):
        streamer.put("series/frame%05d.dat" % i, b"frame %d" % i, i=i)
    stats = streamer.close()
    assert stats["files_acknowledged"] == 9 and stats["files_failed"] == 0
    for i in range(9):
        assert cluster[i % 3].stored("series/frame%05d.dat" % i) == b"frame %d" % i


def test_put_stream_bypasses_the_distribution(cluster):
    with ps.Streamer(servers=servers_of(cluster)) as streamer:
        streamer.put_stream(2, "only/on2.txt", b"two")
        streamer.put_stream(0, "only/on0.txt", bytearray(b"zero"))
    assert cluster[2].files() == ["only/on2.txt"]
    assert cluster[0].stored("only/on0.txt") == b"zero"
    assert cluster[1].files() == []


def test_servers_as_host_port_strings_and_packed_addresses(cluster):
    import socket

    given = [cluster[0].address, (socket.inet_aton("127.0.0.1"), cluster[1].port)]
    with ps.Streamer(servers=given, round_robin_start=0) as streamer:
        assert streamer.n_servers == 2
        streamer.put("x.txt", b"x", i=1)
    assert cluster[1].stored("x.txt") == b"x"


def test_python_distribution_function_gets_n_servers_and_put_kwargs(cluster):
    calls = []

    def by_channel(n_servers, i=None, channel=0):
        calls.append((n_servers, i, channel))
        return channel % n_servers

    with ps.Streamer(servers=servers_of(cluster), distribution_fcn=by_channel) as streamer:
        streamer.put("c/a.txt", b"a", channel=1)
        streamer.put("c/b.txt", b"b", i=7, channel=2)
        streamer.put("c/c.txt", b"c")
    assert calls == [(3, None, 1), (3, 7, 2), (3, None, 0)]
    assert cluster[1].files() == ["c/a.txt"]
    assert cluster[2].files() == ["c/b.txt"]
    assert cluster[0].files() == ["c/c.txt"]


def test_builtin_distributions_run_in_rust_and_are_callable_like_pymes(cluster):
    f = ps.distribution_function_round_robin
    assert f(3, i=4) == 1 and f(n_servers=3, i=5) == 2
    assert 0 <= f(3) < 3
    assert ps.distribution_function_fixed(2)(3) == 2
    assert ps.Distribution("hash")(3, name="a/b") == ps.Distribution("hash")(3, name="a/b?x=1")
    with ps.Streamer(servers=servers_of(cluster), distribution_fcn=ps.distribution_function_fixed(1)) as s:
        for i in range(4):
            s.put("f/%d" % i, b"z", i=i)
    assert len(cluster[1].files()) == 4
    with ps.Streamer(servers=servers_of(cluster), distribution_fcn="hash") as s:
        s.put("h/one", b"1")
    with pytest.raises(ValueError):
        ps.Distribution("no-such-policy")


def test_least_loaded_runs_in_rust_and_spreads_an_idle_cluster_round_robin(cluster):
    with ps.Streamer(servers=servers_of(cluster), distribution_fcn="least-loaded") as s:
        for i in range(6):
            s.put("ll/%d" % i, b"x", i=i)
            s.flush()  # idle again: every server equally loaded, so the turn decides
    assert [len(server.files()) for server in cluster] == [2, 2, 2]


def test_builtin_distribution_refuses_unknown_kwargs(server):
    with ps.Streamer(servers=[server.address]) as s:
        with pytest.raises(TypeError, match="channel"):
            s.put("a", b"a", channel=3)
        with pytest.raises(TypeError):
            s.put("a", b"a", i="three")
    assert server.files() == []


def test_stream_put_finalize_close(server):
    stream = ps.Stream(server.host, server.port)
    stream.put("s/one.txt", b"one")
    stream.put("s/two.txt", memoryview(b"two"))
    stream.finalize()  # no sentinel: waits for the answers
    assert server.stored("s/two.txt") == b"two"
    stream.put("s/three.txt", b"three")
    stream.put("s/__end", None)  # the end-of-stream sentinel
    with pytest.raises(ps.ClosedError):
        stream.put("s/four.txt", b"four")
    stats = stream.close()
    assert stats["files_acknowledged"] == 4  # three files and the sentinel
    assert server.stored("s/three.txt") == b"three"


def test_stream_finalize_with_a_name_sends_the_sentinel(server):
    with ps.Stream(server.host, server.port) as stream:
        stream.put("p/a", b"a")
        stream.finalize("p/__finished")
        assert stream.closed
    assert server.stored("p/a") == b"a"


def test_stream_registers_acknowledged_files_with_a_dir_manager(server):
    registered = []

    class DirManager:
        def register_file(self, name, url, size):
            registered.append((name, url, size))

    with ps.Stream(server.host, server.port, dir_manager=DirManager()) as stream:
        stream.put("d/file.txt?x=1", b"12345")
    assert registered == [("d/file.txt", "http://%s/d/file.txt" % server.address, 5)]


def test_python_filter_runs_on_put_like_pymes(server):
    def pzfify(data):
        frame, n = data
        return b"%d:" % n + frame

    with ps.Streamer(servers=[server.address], filter=pzfify) as s:
        s.put("f/frame1", (b"pixels", 1), i=1)
        s.put_stream(0, "f/frame2", (b"more", 2))
    assert server.stored("f/frame1") == b"1:pixels"
    assert server.stored("f/frame2") == b"2:more"


def test_gzip_filter_runs_in_rust(server):
    payload = b"abc" * 10000
    with ps.Streamer(servers=[server.address], filter=ps.GzipFilter(6)) as s:
        s.put("g/file", payload)
    assert server.stored("g/file") == payload  # the server decodes Content-Encoding: gzip
    with pytest.raises(ValueError):
        ps.GzipFilter(12)


def test_pzf_filter_encodes_frames_in_rust(server):
    np = pytest.importorskip("numpy")
    frame = (np.arange(64 * 32, dtype=np.uint16) % 1000).reshape(64, 32)
    with ps.Streamer(servers=[server.address], filter=ps.PzfFilter(64, 32, "uint16")) as s:
        s.put("z/frame00007.pzf", frame, i=7)
        s.put("z/wrong-size.pzf", frame[:10].copy(), i=8)
        failures = None
    stored = server.stored("z/frame00007.pzf")
    assert stored[:2] == b"BD"  # PZF magic
    assert len(stored) < frame.nbytes + 64
    failed = s.failures()
    assert [f.name for f in failed] == ["z/wrong-size.pzf"]
    assert failures is None
    with pytest.raises(ValueError):
        ps.PzfFilter(4, 4, "int64")


def test_on_complete_gets_one_outcome_per_file_and_stats_is_a_dict(server):
    outcomes = []
    lock = threading.Lock()

    def done(outcome):
        with lock:
            outcomes.append(outcome)

    s = ps.Streamer(servers=[server.address], on_complete=done)
    for i in range(50):
        s.put("o/%d" % i, b"x" * i, i=i)
    s.flush()
    wait_for(lambda: len(outcomes) == 50, what="50 outcomes")
    stats = s.stats()
    assert isinstance(stats, dict)
    assert stats["files_queued"] == 50 and stats["files_acknowledged"] == 50 and stats["pending"] == 0
    s.close()
    assert sorted(o.name for o in outcomes) == sorted("o/%d" % i for i in range(50))
    assert all(o.ok and o.http_status == 200 and o.error is None for o in outcomes)
    assert {o.bytes for o in outcomes} == set(range(50))
    assert "ok=True" in repr(outcomes[0])


def test_close_is_idempotent_and_put_after_close_raises(server):
    s = ps.Streamer(servers=[server.address])
    s.put("a", b"a")
    first = s.close()
    assert s.close() == first
    assert s.closed
    with pytest.raises(ps.ClosedError):
        s.put("b", b"b")
    assert s.stats()["files_acknowledged"] == 1


def test_n_cluster_servers_is_exported():
    assert callable(ps.n_cluster_servers)
    assert isinstance(ps.computer_name(), str) and ps.computer_name()
