"""Bad input, close with files in flight, a killed server, a silent server."""

import socket
import threading

import pytest

import pyme_streaming as ps


class SilentServer:
    """Accepts connections on 127.0.0.1 and reads everything, never answering."""

    def __init__(self):
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(8)
        self.port = self.listener.getsockname()[1]
        self.address = "127.0.0.1:%d" % self.port
        self.received = 0
        self.stop = False
        self.thread = threading.Thread(target=self.run, name="silent-server", daemon=True)
        self.thread.start()

    def run(self):
        self.listener.settimeout(0.1)
        connections = []
        while not self.stop:
            try:
                connection, _ = self.listener.accept()
                connection.settimeout(0.05)
                connections.append(connection)
            except socket.timeout:
                pass
            for connection in connections:
                try:
                    self.received += len(connection.recv(1 << 20))
                except (socket.timeout, OSError):
                    pass
        for connection in connections:
            connection.close()

    def close(self):
        self.stop = True
        self.thread.join()
        self.listener.close()


@pytest.fixture
def silent():
    server = SilentServer()
    yield server
    server.close()


@pytest.fixture
def sigint_raises():
    """SIGINT raises KeyboardInterrupt during the test, as in an interactive
    session: a process started in the background by a shell without job control
    inherits SIGINT ignored, and Python then installs no handler of its own."""
    import signal

    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, before)


def test_wrong_types_are_type_errors_and_queue_nothing(server):
    np = pytest.importorskip("numpy")
    with ps.Streamer(servers=[server.address]) as s:
        with pytest.raises(TypeError, match="filename"):
            s.put(42, b"x")
        with pytest.raises(TypeError, match="str"):
            s.put("a", "text, not bytes")
        with pytest.raises(TypeError, match="bytes-like"):
            s.put("a", 12345)
        with pytest.raises(TypeError):
            s.put("a", None)
        with pytest.raises(BufferError, match="contiguous"):
            s.put("a", np.zeros((8, 8), np.uint16)[:, ::2])
        with pytest.raises(TypeError):
            s.put_stream("0", "a", b"x")
        assert s.stats()["files_queued"] == 0
    assert server.files() == []


def test_bad_constructor_arguments(server):
    with pytest.raises(TypeError):
        ps.Streamer(servers="127.0.0.1:1")
    with pytest.raises(ValueError):
        ps.Streamer(servers=[])
    with pytest.raises(ValueError):
        ps.Streamer(servers=[("127.0.0.1", 70000)])
    with pytest.raises(TypeError):
        ps.Streamer(servers=[server.address], distribution_fcn=5)
    with pytest.raises(TypeError):
        ps.Streamer(servers=[server.address], filter=5)
    with pytest.raises(TypeError):
        ps.Streamer(servers=[server.address], on_complete=5)
    with pytest.raises(ValueError):
        ps.Streamer(servers=[server.address], put_timeout=-1)
    with pytest.raises(ValueError):
        ps.Streamer(servers=[server.address], queue_files=0)


def test_an_unreachable_server_starts_down_unless_all_are_required(tmp_path):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    listener.close()  # nothing listens there now
    states = []
    s = ps.Streamer(
        servers=[("127.0.0.1", port)],
        connect_timeout=1.0,
        server_callback=lambda index, state: states.append((index, state)),
    )
    assert s.server_state(0) == "down"
    with pytest.raises(IndexError):
        s.server_state(1)
    # No live server and no spill folder: a put fails at once.
    with pytest.raises(ps.ServerDownError, match="no server is live"):
        s.put("down/a", b"x")
    s.close()
    assert (0, "down") in states
    with pytest.raises(ps.ConnectError, match=str(port)):
        ps.Streamer(servers=[("127.0.0.1", port)], connect_timeout=1.0, require_all_servers=True)
    # A stream needs its server, unless it has a spill folder.
    with pytest.raises(ps.ConnectError):
        ps.Stream("127.0.0.1", port)
    stream = ps.Stream("127.0.0.1", port, spill_dir=str(tmp_path), connect_timeout=0.2, response_timeout=0.2)
    assert stream.server_state() == "down"
    stream.put("down/spilled", b"kept")
    assert stream.stats()["spilled"] == 1
    stream.close()
    assert (tmp_path / "down" / "spilled").read_bytes() == b"kept"


@pytest.mark.parametrize("name", ["", "../escape", "a/../../b", "/absolute", "a\nb", "a b"])
def test_invalid_names_are_refused_before_queueing(server, name):
    with ps.Streamer(servers=[server.address]) as s:
        with pytest.raises(ps.InvalidNameError):
            s.put(name, b"x")
        assert s.stats()["files_queued"] == 0
        s.put("fine/name.txt", b"ok")
    assert server.files() == ["fine/name.txt"]


def test_a_filter_that_raises_fails_that_put_only(server):
    def picky(data):
        if data == b"bad":
            raise RuntimeError("refused by the filter")
        return data

    with ps.Streamer(servers=[server.address], filter=picky) as s:
        s.put("f/good1", b"good")
        with pytest.raises(RuntimeError, match="refused by the filter"):
            s.put("f/bad", b"bad")
        s.put("f/good2", b"good")
    assert server.files() == ["f/good1", "f/good2"]


def test_a_filter_returning_no_bytes_is_a_type_error(server):
    with ps.Streamer(servers=[server.address], filter=lambda data: None) as s:
        with pytest.raises(TypeError, match="None"):
            s.put("a", b"a")
    with ps.Streamer(servers=[server.address], filter=lambda data: 3) as s:
        with pytest.raises(TypeError):
            s.put("a", b"a")


def test_a_distribution_function_that_raises_or_misbehaves(cluster):
    def broken(n_servers, i=None):
        if i == 1:
            raise KeyError("no server for 1")
        if i == 2:
            return n_servers  # out of range
        if i == 3:
            return "zero"
        return 0

    with ps.Streamer(servers=[s.address for s in cluster], distribution_fcn=broken) as s:
        with pytest.raises(KeyError):
            s.put("d/1", b"1", i=1)
        with pytest.raises(ps.DistributionError):
            s.put("d/2", b"2", i=2)
        with pytest.raises(TypeError):
            s.put("d/3", b"3", i=3)
        s.put("d/0", b"0", i=0)
        with pytest.raises(ps.NoSuchStreamError):
            s.put_stream(3, "d/x", b"x")
        with pytest.raises(ps.NoSuchStreamError):
            s.put_stream(-1, "d/x", b"x")
        assert s.stats()["files_queued"] == 1
    assert cluster[0].files() == ["d/0"]


def test_an_on_complete_that_raises_is_reported_and_streaming_goes_on(server, monkeypatch):
    import sys

    seen = []
    monkeypatch.setattr(sys, "unraisablehook", lambda info: seen.append(info.exc_value))

    def explode(outcome):
        raise ValueError("callback bug for " + outcome.name)

    with ps.Streamer(servers=[server.address], on_complete=explode) as s:
        for i in range(20):
            s.put("cb/%d" % i, b"x")
    assert len(server.files()) == 20
    assert len(seen) == 20 and all(isinstance(e, ValueError) for e in seen)


def test_close_waits_for_every_file_in_flight(server):
    np = pytest.importorskip("numpy")
    frame = np.arange(64 * 1024, dtype=np.uint8)
    s = ps.Streamer(servers=[server.address])
    for i in range(2000):
        s.put("inflight/%05d" % i, frame, i=i)
    stats = s.close()  # at once, with files queued and unanswered
    assert stats["files_queued"] == 2000
    assert stats["files_acknowledged"] == 2000 and stats["pending"] == 0
    assert len(server.files()) == 2000


def test_close_from_another_thread_while_put_blocks_on_a_full_queue(silent):
    s = ps.Streamer(servers=[silent.address], queue_files=4, response_timeout=1.0, failover=False)
    errors = []

    def producer():
        try:
            for i in range(50):
                s.put("t/%d" % i, b"x" * 100)
        except ps.StreamingError as e:
            errors.append(e)

    t = threading.Thread(target=producer)
    t.start()
    stats = s.close()  # must not deadlock with the blocked put (the GIL is released)
    t.join(30)
    assert not t.is_alive()
    assert stats["files_queued"] == stats["files_acknowledged"] + stats["files_failed"]


def test_a_killed_server_loses_nothing_with_failover(cluster):
    s = ps.Streamer(servers=[c.address for c in cluster], response_timeout=5.0)
    names = ["k/%05d" % i for i in range(3000)]
    for n, name in enumerate(names):
        s.put(name, b"y" * 4096, i=n)
        if n == 1000:
            cluster[1].kill()
    stats = s.close()
    assert stats["files_queued"] == 3000
    assert stats["files_failed"] == 0, s.failures()[:3]
    assert stats["files_acknowledged"] == 3000
    stored = set(cluster[0].files()) | set(cluster[1].files()) | set(cluster[2].files())
    assert stored == set(names)


def test_a_killed_server_without_failover_lists_its_failures(cluster):
    outcomes = []
    s = ps.Streamer(
        servers=[c.address for c in cluster],
        failover=False,
        on_complete=outcomes.append,
    )
    cluster[2].kill()
    put_errors = 0
    for i in range(300):
        try:
            s.put("n/%03d" % i, b"z" * 1000, i=i)
        except ps.ServerDownError:
            put_errors += 1
    stats = s.close()
    failures = s.failures()
    assert stats["files_queued"] + put_errors == 300
    assert stats["files_acknowledged"] + stats["files_failed"] == stats["files_queued"]
    assert len(failures) == stats["files_failed"]
    assert all(f.server == 2 and not f.ok and f.error for f in failures)
    assert len(outcomes) == stats["files_queued"]
    assert stats["files_failed"] + put_errors == 100
    assert len(s.take_failures()) == stats["files_failed"] and s.failures() == []


def test_backpressure_put_timeout_zero_fails_fast(silent):
    s = ps.Streamer(servers=[silent.address], queue_files=2, put_timeout=0.0, response_timeout=1.0)
    s.put("q/1", b"1")
    s.put("q/2", b"2")
    with pytest.raises(ps.QueueFullError):
        s.put("q/3", b"3")
    assert s.stats()["dropped"] == 1
    s.close()


def test_spill_folder_keeps_files_when_no_server_is_live(server, tmp_path):
    spill = tmp_path / "spill"
    s = ps.Streamer(servers=[server.address], spill_dir=str(spill), failover=True)
    server.kill()
    for i in range(5):
        s.put("sp/%d" % i, b"kept %d" % i)
    stats = s.close()
    assert stats["spilled"] == 5
    assert len(list(spill.rglob("*"))) >= 5


def test_calls_that_wait_are_refused_inside_on_complete(server, monkeypatch):
    import sys

    seen = []
    monkeypatch.setattr(sys, "unraisablehook", lambda info: seen.append(info.exc_value))
    holder = {}

    def reenter(outcome):
        holder["streamer"].close()  # would wait for this very thread

    s = ps.Streamer(servers=[server.address], on_complete=reenter)
    holder["streamer"] = s
    s.put("re/a", b"a")
    stats = s.close()
    assert stats["files_acknowledged"] == 1
    assert len(seen) == 1 and isinstance(seen[0], RuntimeError)


def test_a_streamer_dropped_without_close_delivers_its_files(server):
    s = ps.Streamer(servers=[server.address])
    for i in range(100):
        s.put("drop/%d" % i, b"d" * 100)
    del s  # closes on the way out
    assert len(server.files()) == 100


def test_puts_from_many_python_threads_at_once(cluster):
    s = ps.Streamer(servers=[c.address for c in cluster], queue_files=8)
    errors = []

    def producer(t):
        try:
            for k in range(300):
                s.put("mt/%d/%03d" % (t, k), b"%d-%d" % (t, k), i=k)
        except Exception as e:  # noqa: BLE001 - any error fails the test below
            errors.append(e)

    threads = [threading.Thread(target=producer, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stats = s.close()
    assert errors == []
    assert stats["files_acknowledged"] == 1200
    stored = sum(len(c.files()) for c in cluster)
    assert stored == 1200


def test_files_in_flight_at_interpreter_exit_are_delivered(server, tmp_path):
    """A script that never closes its streamer: the package closes it at exit."""
    import subprocess
    import sys

    script = tmp_path / "no_close.py"
    script.write_text(
        "import pyme_streaming as ps\n"
        "s = ps.Streamer(servers=[%r])\n"
        "for i in range(500):\n"
        "    s.put('exit/%%03d' %% i, bytes(20000), i=i)\n" % server.address
    )
    run = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert len(server.files()) == 500


def test_edge_data_and_indices(server):
    np = pytest.importorskip("numpy")
    with ps.Streamer(servers=[server.address]) as s:
        s.put("edge/empty", b"")
        s.put("edge/zero-d", np.array(7, dtype=np.int32))
        readonly = np.arange(6, dtype=np.uint16)
        readonly.setflags(write=False)
        s.put("edge/readonly", readonly)
        s.put("edge/slice", memoryview(b"abcdef")[2:4])
        with pytest.raises(BufferError):
            s.put("edge/fortran", np.asfortranarray(np.arange(12).reshape(3, 4)))
        with pytest.raises(OverflowError):
            s.put("edge/huge-i", b"x", i=2**70)
        s.put("edge/negative-i", b"x", i=-5)
        s.put("edge/dir/x", b"1")
        s.put("edge/dir", b"2")  # a folder already: the server refuses it
    assert server.stored("edge/empty") == b""
    assert server.stored("edge/zero-d") == np.array(7, dtype=np.int32).tobytes()
    assert server.stored("edge/readonly") == readonly.tobytes()
    assert server.stored("edge/slice") == b"cd"
    failures = s.failures()
    assert [f.name for f in failures] == ["edge/dir"] and not failures[0].ok
    assert "405" in failures[0].error


def test_stats_while_another_thread_closes_with_callbacks_due(silent):
    """close waits for outcomes whose callback needs the GIL; stats() and
    closed from another thread must not hold the GIL while they wait for it."""
    import time

    outcomes = []
    s = ps.Streamer(
        servers=[silent.address], on_complete=outcomes.append, response_timeout=1.0, failover=False
    )
    for i in range(3):
        s.put("st/%d" % i, b"x")
    closer = threading.Thread(target=s.close)
    closer.start()
    deadline = time.monotonic() + 3.0
    while time.monotonic() < deadline and closer.is_alive():
        s.stats()
        s.closed
        repr(s)
    closer.join(30)
    assert not closer.is_alive()
    assert len(outcomes) == 3 and not any(o.ok for o in outcomes)


@pytest.mark.parametrize("kind", ["Streamer", "Stream"])
def test_ctrl_c_interrupts_a_flush_and_loses_nothing(silent, kind, sigint_raises):
    """A real SIGINT while flush() waits on a silent server raises KeyboardInterrupt
    at once (long before the response timeout would end the wait); the file stays
    queued and still gets its one outcome."""
    import os
    import signal
    import time

    if kind == "Streamer":
        s = ps.Streamer(servers=[silent.address], response_timeout=4.0, failover=False)
    else:
        s = ps.Stream("127.0.0.1", silent.port, response_timeout=4.0)
    s.put("ctrl-c/f0", b"x" * 1000)
    started = time.monotonic()
    timer = threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT))
    with pytest.raises(KeyboardInterrupt):
        timer.start()
        s.flush()
    interrupted_after = time.monotonic() - started
    timer.join()
    # Without the interruption flush() returns normally once the response timeout
    # (4 s) fails the file; with it, KeyboardInterrupt comes first.
    assert interrupted_after < 4.0, interrupted_after
    stats = s.close()
    assert stats["files_queued"] == 1
    assert stats["files_failed"] == 1  # the silent server never answers
    assert stats["files_acknowledged"] == 0


def test_ctrl_c_interrupts_a_put_waiting_for_room(silent, sigint_raises):
    """A real SIGINT while put() waits for room in a full queue (a silent server)
    raises KeyboardInterrupt at once; that file is not queued (no outcome, not
    counted as dropped) and the files before it keep their one outcome each."""
    import os
    import signal
    import time

    s = ps.Streamer(servers=[silent.address], queue_files=3, response_timeout=4.0, failover=False)
    for i in range(3):
        s.put("ctrl-c/f%d" % i, b"x" * 1000)

    def interrupt_once_put_waits():
        # The blocked put counts as pending while it waits: the signal comes
        # during the wait, not before it.
        while s.stats()["pending"] < 4:
            time.sleep(0.01)
        os.kill(os.getpid(), signal.SIGINT)

    started = time.monotonic()
    interrupter = threading.Thread(target=interrupt_once_put_waits)
    with pytest.raises(KeyboardInterrupt):
        interrupter.start()
        s.put("ctrl-c/blocked", b"x" * 1000)
    interrupted_after = time.monotonic() - started
    interrupter.join()
    # Without the interruption the put waits until the response timeout (4 s)
    # fails the server and refuses the file.
    assert interrupted_after < 4.0, interrupted_after
    stats = s.close()
    assert stats["files_queued"] == 3
    assert stats["files_failed"] == 3
    assert stats["dropped"] == 0
    assert sorted(f.name for f in s.failures()) == ["ctrl-c/f0", "ctrl-c/f1", "ctrl-c/f2"]


def test_a_signal_handler_that_closes_during_a_blocked_put_is_refused_not_deadlocked(silent):
    """A signal handler runs while put() waits for room (Ctrl-C must reach it); one that
    calls close() there would wait for the put that holds the streamer: it gets a
    RuntimeError at once instead, which the put raises; close afterwards works."""
    import os
    import signal
    import time

    s = ps.Streamer(servers=[silent.address], queue_files=2, response_timeout=3.0, failover=False)
    for i in range(2):
        s.put("handler/f%d" % i, b"x")
    called = []

    def handler(signum, frame):
        called.append(signum)
        s.close()

    previous = signal.signal(signal.SIGUSR1, handler)
    try:
        def signal_once_put_waits():
            while s.stats()["pending"] < 3:
                time.sleep(0.01)
            os.kill(os.getpid(), signal.SIGUSR1)

        sender = threading.Thread(target=signal_once_put_waits)
        sender.start()
        started = time.monotonic()
        with pytest.raises(RuntimeError, match="signal handler"):
            s.put("handler/blocked", b"x")
        assert time.monotonic() - started < 3.0
        sender.join()
    finally:
        signal.signal(signal.SIGUSR1, previous)
    assert called == [signal.SIGUSR1]
    stats = s.close()
    assert stats["files_queued"] == 2 and stats["files_failed"] == 2


def test_on_complete_reading_stats_while_close_waits_does_not_deadlock(server):
    """close() waits for the outcomes whose on_complete reads s.stats(): that read
    must not wait for close (it did, for ever)."""
    seen = []
    s = None

    def on_complete(outcome):
        seen.append(s.stats()["files_queued"])

    s = ps.Streamer(servers=[server.address], on_complete=on_complete)
    for i in range(200):
        s.put("cbstats/%03d" % i, b"x" * 100)
    done = []
    closer = threading.Thread(target=lambda: done.append(s.close()))
    closer.start()
    closer.join(30)
    assert not closer.is_alive(), "close deadlocked with an on_complete reading stats"
    assert done[0]["files_acknowledged"] == 200
    assert len(seen) == 200 and all(queued == 200 for queued in seen)


def test_flush_ends_normally_when_another_thread_closes(silent):
    """A flush() waiting when another thread calls close() returns once close has
    given every file its outcome, without an error."""
    import time

    s = ps.Streamer(servers=[silent.address], response_timeout=2.0, failover=False)
    s.put("flushclose/f0", b"x")
    closer = threading.Timer(0.3, s.close)
    closer.start()
    started = time.monotonic()
    s.flush()  # no ClosedError
    assert time.monotonic() - started >= 1.5, "flush returned before close ended"
    closer.join()
    assert s.stats()["files_failed"] == 1


def test_server_stats_count_each_server_and_are_read_during_close(cluster):
    """Streamer.server_stats(i): per-server counts that add up to stats(), an
    IndexError out of range, and reads from a callback and from another thread
    while close() runs."""
    import threading

    seen = []
    holder = {}

    def on_complete(outcome):
        # Its own file is counted already on its server.
        seen.append(holder["s"].server_stats(outcome.server)["files_acknowledged"])

    s = ps.Streamer(servers=[srv.address for srv in cluster], on_complete=on_complete)
    holder["s"] = s
    for i in range(300):
        s.put("stats/f%d" % i, b"x" * (10 + i))
    s.flush()
    each = [s.server_stats(i) for i in range(3)]
    totals = s.stats()
    for i, stats in enumerate(each):
        assert stats["state"] == "up"
        assert stats["files_acknowledged"] == len(cluster[i].files())
        assert stats["files_failed"] == 0
        assert stats["in_flight_files"] == 0 and stats["queue_files"] == 0
        assert set(stats) >= {"bytes_acknowledged", "bytes_sent", "reconnects", "retries", "moved_away"}
    assert sum(st["files_acknowledged"] for st in each) == totals["files_acknowledged"] == 300
    assert sum(st["bytes_acknowledged"] for st in each) == totals["bytes_acknowledged"]
    assert len(seen) == 300 and min(seen) >= 1
    with pytest.raises(IndexError):
        s.server_stats(3)
    with pytest.raises(OverflowError):
        s.server_stats(-1)

    for i in range(300, 1300):
        s.put("stats/f%d" % i, b"y" * 100)
    reads, errors, stop = [], [], threading.Event()

    def poll():
        while not stop.is_set():
            try:
                reads.append(s.server_stats(0)["files_acknowledged"])
            except Exception as error:  # noqa: BLE001 - the test reports it
                errors.append(error)

    poller = threading.Thread(target=poll)
    poller.start()
    s.close()
    stop.set()
    poller.join()
    assert not errors, errors
    assert reads and reads == sorted(reads), "acknowledged files only grow"
    assert sum(s.server_stats(i)["files_acknowledged"] for i in range(3)) == 1300
    assert s.server_stats(0)["state"] == "down"


def test_memory_limit_full_fails_fast_like_a_full_queue(silent):
    # The budget (all servers together), not the queue (256 files), refuses.
    s = ps.Streamer(
        servers=[silent.address], memory_limit=3000, put_timeout=0.0, response_timeout=1.0
    )
    s.put("m/1", b"x" * 1000)
    s.put("m/2", b"x" * 2000)
    with pytest.raises(ps.QueueFullError, match="memory budget"):
        s.put("m/3", b"x")
    assert s.stats()["dropped"] == 1
    s.close()


def test_limits_error_is_a_streaming_error():
    assert issubclass(ps.LimitsError, ps.StreamingError)
