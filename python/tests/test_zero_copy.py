"""Zero-copy puts: the memory is the caller's, kept alive until the outcome,
released after it, and nothing leaks over many puts."""

import gc
import sys
import tracemalloc

import pytest

import pyme_streaming as ps
from test_robustness import silent  # noqa: F401  (fixture)

np = pytest.importorskip("numpy")


def rss_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


def test_the_array_is_kept_alive_until_its_outcome(server):
    s = ps.Streamer(servers=[server.address])
    frame = np.arange(1 << 20, dtype=np.uint16)
    expected = frame.tobytes()
    before = sys.getrefcount(frame)
    s.put("z/frame", frame)
    assert sys.getrefcount(frame) == before + 1  # held by the library, not copied
    del frame
    gc.collect()
    s.close()
    assert server.stored("z/frame") == expected


def test_the_export_is_released_after_the_outcome(silent):  # noqa: F811
    """A bytearray cannot be resized while the library holds its memory, and can
    once the file has its outcome (here: failed by the silent server's timeout)."""
    data = bytearray(b"x" * 1000)
    s = ps.Streamer(servers=[silent.address], response_timeout=0.5, failover=False)
    s.put("z/held", data)
    with pytest.raises(BufferError):
        data.extend(b"more")  # exported: the library may still read it
    s.close()
    data.extend(b"more")  # released: no longer touched by the library
    assert s.stats()["files_failed"] == 1


def test_refcount_returns_to_baseline_after_close(server):
    frames = [np.full(4096, i, dtype=np.uint8) for i in range(100)]
    baseline = [sys.getrefcount(f) for f in frames]
    with ps.Streamer(servers=[server.address]) as s:
        for i, f in enumerate(frames):
            s.put("z/r%03d" % i, f, i=i)
        del f
    assert [sys.getrefcount(f) for f in frames] == baseline
    assert server.stored("z/r042") == bytes([42]) * 4096


def test_a_big_put_makes_no_copy(silent):  # noqa: F811
    big = np.ones(64 << 20, dtype=np.uint8)
    gc.collect()
    tracemalloc.start()
    rss_before = rss_bytes()
    s = ps.Streamer(servers=[silent.address], response_timeout=2.0, failover=False)
    s.put("z/big", big)
    grown = rss_bytes() - rss_before
    current, _peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    s.close()
    assert grown < 16 << 20, "put grew RSS by %d bytes for a 64 MiB array" % grown
    assert current < 8 << 20  # the silent server's 1 MiB reads are Python's


def test_no_leak_over_100000_puts(start_server):
    server = start_server("--discard")
    frame = np.arange(4096, dtype=np.uint8)
    baseline_refs = sys.getrefcount(frame)
    s = ps.Streamer(servers=[server.address])
    for i in range(10000):  # warm up: buffers, queues, allocator
        s.put("leak/%d" % i, frame, i=i)
    s.flush()
    gc.collect()
    tracemalloc.start()
    rss_before = rss_bytes()
    snapshot_before = tracemalloc.take_snapshot()
    for i in range(100000):
        s.put("leak/%d" % i, frame if i % 2 else bytes(16), i=i)
    s.flush()
    gc.collect()
    s.stats()  # releases the last exports
    snapshot_after = tracemalloc.take_snapshot()
    rss_after = rss_bytes()
    tracemalloc.stop()
    stats = s.close()
    assert stats["files_acknowledged"] == 110000 and stats["files_failed"] == 0
    python_growth = sum(
        stat.size_diff for stat in snapshot_after.compare_to(snapshot_before, "filename")
    )
    assert python_growth < 256 << 10, "Python memory grew by %d bytes" % python_growth
    assert rss_after - rss_before < 8 << 20, "RSS grew by %d bytes" % (rss_after - rss_before)
    assert sys.getrefcount(frame) == baseline_refs


def test_an_idle_caller_gets_its_buffer_back_soon_after_the_outcome(server):
    """No call into the streamer after the outcome: the releaser thread lets go."""
    from conftest import wait_for

    done = []
    s = ps.Streamer(servers=[server.address], on_complete=done.append)
    data = bytearray(b"y" * 4096)
    s.put("z/idle", data)
    wait_for(lambda: len(done) == 1, what="the outcome")

    def resizable():
        try:
            data.extend(b"!")
            return True
        except BufferError:
            return False

    wait_for(resizable, timeout=5.0, what="the export to be released without a call")
    s.close()
