//! The edges of a streamer's life: starting while servers are unreachable,
//! the state of each server, closing and flushing with files in the spill
//! folder, and files that append on their server (`__aggregate_*`), which
//! failover never moves.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::proxy::{CloseAfter, Direction, FaultProxy};
use common::recording::{failure, recording};
use common::{dead_address, files_under, Action, FakeServer, TestServer};
use pyme_streaming::{Error, ServerState, Stream, Streamer, StreamerOptions};

/// Waits until `ready` holds, up to a minute (a limit never reached when
/// the code works: each test waits for the event it needs).
fn wait_until(what: &str, ready: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !ready() {
        assert!(Instant::now() < deadline, "waited a minute for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

type States = Arc<Mutex<Vec<(usize, ServerState)>>>;

fn recording_states(options: StreamerOptions) -> (StreamerOptions, States) {
    let states: States = Arc::default();
    let sink = Arc::clone(&states);
    let options = options.on_server_state(move |index, state| {
        sink.lock().unwrap().push((index, state));
    });
    (options, states)
}

fn states_of(states: &States, index: usize) -> Vec<ServerState> {
    let states = states.lock().unwrap();
    states
        .iter()
        .filter(|(i, _)| *i == index)
        .map(|(_, state)| *state)
        .collect()
}

fn stored_files(server: &TestServer) -> usize {
    files_under(&server.path(""))
        .iter()
        .filter(|path| {
            let name = path.file_name().unwrap().to_string_lossy();
            !name.starts_with('.')
        })
        .count()
}

#[test]
fn a_streamer_starts_with_a_server_down_and_uses_it_once_it_is_up() {
    let good = TestServer::start();
    let later = TestServer::start();
    let proxy = FaultProxy::start(&later.address());
    proxy.go_down();
    let (options, states) = recording_states(
        StreamerOptions::new()
            .server(good.address())
            .server(proxy.address())
            .reconnect_backoff(Duration::from_millis(20), Duration::from_millis(50)),
    );
    let (options, seen) = recording(options);
    let streamer = Streamer::new(options).expect("starts with one server down");
    assert_eq!(streamer.server_state(0), Some(ServerState::Up));
    assert_eq!(streamer.server_state(1), Some(ServerState::Down));
    assert_eq!(streamer.server_state(2), None);
    // The callback hears of the server that was down at start.
    wait_until("the state callback", || {
        states_of(&states, 1) == [ServerState::Down]
    });
    assert!(states_of(&states, 0).is_empty(), "server 0 stayed up");
    // Round robin sends half of these to server 1: failover takes them.
    for i in 0..20 {
        streamer
            .put(&format!("d/{i:02}"), b"down", Some(i))
            .unwrap();
    }
    streamer.flush(None).unwrap();
    assert_eq!(streamer.stats().files_acknowledged, 20);
    assert_eq!(stored_files(&good), 20);
    proxy.come_back();
    wait_until("server 1 up", || {
        streamer.server_state(1) == Some(ServerState::Up)
    });
    for i in 0..20 {
        streamer.put(&format!("u/{i:02}"), b"up", Some(i)).unwrap();
    }
    let stats = streamer.close();
    assert_eq!(stats.files_acknowledged, 40, "{stats:?}");
    assert_eq!(stored_files(&later), 10, "server 1 takes its share once up");
    assert_eq!(seen.lock().unwrap().len(), 40);
    assert_eq!(
        states_of(&states, 1),
        [ServerState::Down, ServerState::Up, ServerState::Down],
        "down at start, up, down once closed"
    );
}

#[test]
fn with_every_server_down_a_put_fails_at_once_or_spills() {
    let dead = [dead_address(), dead_address()];
    let streamer = Streamer::new(StreamerOptions::new().servers(dead.clone()))
        .expect("starts with every server down");
    assert_eq!(streamer.server_state(0), Some(ServerState::Down));
    // No put timeout: a put that waited for a server would wait for ever.
    match streamer.put("x/a", b"abc", Some(0)) {
        Err(Error::ServerDown { detail, .. }) => assert!(detail.contains("no server is live")),
        other => panic!("expected ServerDown, got {other:?}"),
    }
    let stats = streamer.close();
    assert_eq!(stats.files_queued, 0, "{stats:?}");

    let spill = tempfile::tempdir().unwrap();
    let streamer = Streamer::new(
        StreamerOptions::new()
            .servers(dead.clone())
            .spill_dir(spill.path())
            .connect_timeout(Duration::from_millis(200))
            .response_timeout(Duration::from_millis(200)),
    )
    .unwrap();
    for i in 0..5 {
        streamer.put(&format!("x/{i}"), b"abc", Some(i)).unwrap();
    }
    // Flush does not wait on a dead cluster: the files stay spilled.
    streamer.flush(Some(Duration::from_secs(60))).unwrap();
    assert_eq!(streamer.stats().spilled, 5);
    let stats = streamer.close();
    assert_eq!((stats.files_failed, stats.spilled), (5, 5), "{stats:?}");
    assert_eq!(files_under(spill.path()).len(), 5);
}

#[test]
fn require_all_servers_refuses_to_start_with_a_server_down() {
    let good = TestServer::start();
    let dead = dead_address();
    let error = Streamer::new(
        StreamerOptions::new()
            .server(good.address())
            .server(dead.clone())
            .require_all_servers(true),
    )
    .err()
    .expect("must fail");
    assert!(matches!(error, Error::Connect { .. }), "{error:?}");
    assert!(error.to_string().contains(&dead), "{error}");
}

#[test]
fn a_stream_opens_on_a_down_server_only_with_a_spill_folder() {
    let dead = dead_address();
    let error = Stream::connect(&dead, &StreamerOptions::new())
        .err()
        .expect("no spill folder: fails to open, as PYME's");
    assert!(matches!(error, Error::Connect { .. }), "{error:?}");

    let server = TestServer::start();
    let proxy = FaultProxy::start(&server.address());
    proxy.go_down();
    let spill = tempfile::tempdir().unwrap();
    let options = StreamerOptions::new()
        .spill_dir(spill.path())
        .reconnect_backoff(Duration::from_millis(20), Duration::from_millis(50));
    let stream = Stream::connect(&proxy.address(), &options).expect("opens with a spill folder");
    assert_eq!(stream.server_state(), ServerState::Down);
    stream.put("s/a", b"spilled").unwrap();
    assert_eq!(stream.stats().spilled, 1);
    proxy.come_back();
    let stats = stream.close();
    assert!(stats.all_acknowledged(), "{stats:?}");
    assert_eq!(server.read("s/a").as_deref(), Some(&b"spilled"[..]));
}

#[test]
fn finalize_sends_spilled_files_before_the_end_of_stream() {
    // Found by a review: finalize queued the sentinel first, the link closed
    // under the spill thread, and the spilled files were kept (while the
    // spill thread spun on them) instead of sent.
    let server = TestServer::start();
    let proxy = FaultProxy::start(&server.address());
    proxy.go_down();
    let spill = tempfile::tempdir().unwrap();
    let options = StreamerOptions::new()
        .spill_dir(spill.path())
        .connect_timeout(Duration::from_secs(1))
        .response_timeout(Duration::from_secs(2))
        .reconnect_backoff(Duration::from_millis(20), Duration::from_millis(50));
    let stream = Stream::connect(&proxy.address(), &options).expect("opens with a spill folder");
    for i in 0..20 {
        stream.put(&format!("s/frame{i:05}"), b"pixels").unwrap();
    }
    assert_eq!(stream.stats().spilled, 20);
    proxy.come_back();
    let stats = stream.finalize("s/end").unwrap();
    assert!(stats.all_acknowledged(), "{stats:?}");
    for i in 0..20 {
        let name = format!("s/frame{i:05}");
        assert_eq!(
            server.read(&name).as_deref(),
            Some(&b"pixels"[..]),
            "{name}"
        );
    }
    assert!(
        files_under(spill.path()).is_empty(),
        "nothing kept in the folder"
    );
}

#[test]
fn every_change_of_a_server_state_is_reported_in_order() {
    let server = TestServer::start();
    let proxy = FaultProxy::start(&server.address());
    let (options, states) = recording_states(
        StreamerOptions::new()
            .server(proxy.address())
            .reconnect_backoff(Duration::from_millis(20), Duration::from_millis(50)),
    );
    let streamer = Streamer::new(options).unwrap();
    proxy.go_down();
    wait_until("down", || {
        streamer.server_state(0) == Some(ServerState::Down)
    });
    proxy.come_back();
    wait_until("up again", || {
        streamer.server_state(0) == Some(ServerState::Up)
    });
    wait_until("the report of it", || {
        states_of(&states, 0).last() == Some(&ServerState::Up)
    });
    streamer.close();
    let seen = states_of(&states, 0);
    // Whether it was seen connecting between up and down depends on how the
    // connection ended; everything else is fixed.
    let without_connecting: Vec<_> = seen
        .iter()
        .copied()
        .filter(|state| *state != ServerState::Connecting)
        .collect();
    assert_eq!(
        without_connecting,
        [ServerState::Down, ServerState::Up, ServerState::Down],
        "{seen:?}"
    );
    assert!(seen.windows(2).all(|w| w[0] != w[1]), "{seen:?}");
}

#[test]
fn a_server_that_keeps_failing_rests_and_comes_back_up() {
    let failing = FakeServer::start(|_, _| Action::Answer(500));
    let good = TestServer::start();
    let (options, states) = recording_states(
        StreamerOptions::new()
            .server(failing.address.clone())
            .server(good.address())
            .max_retries(0)
            .reconnect_backoff(Duration::from_millis(20), Duration::from_millis(300)),
    );
    let streamer = Streamer::new(options).unwrap();
    streamer.put_stream(0, "r/a", b"x").unwrap();
    wait_until("resting", || {
        states_of(&states, 0).first() == Some(&ServerState::Resting)
    });
    wait_until("up after the rest", || {
        states_of(&states, 0) == [ServerState::Resting, ServerState::Up]
    });
    assert_eq!(streamer.server_state(0), Some(ServerState::Up));
    streamer.close();
}

/// A server that resets one connection in ten (and ends each after 20
/// answers, so that connections come and go): spilled files are sent while
/// it takes them, and nothing is left in the folder at close. (The queue
/// holds 16 files, so a file is in flight on few connections before its
/// answer: a file in flight on more than 5 failed connections fails on
/// purpose, see `MAX_INTERRUPTIONS`.)
#[test]
fn close_sends_spilled_files_while_a_resetting_server_takes_them() {
    let server = TestServer::start();
    let proxy = Arc::new(FaultProxy::start(&server.address()));
    proxy.close_after(Some(CloseAfter {
        answers: 20,
        polite: true,
        once: false,
    }));
    let stop = Arc::new(AtomicBool::new(false));
    let driver = {
        let (proxy, stop) = (Arc::clone(&proxy), Arc::clone(&stop));
        std::thread::spawn(move || {
            let mut armed_at = 0;
            while !stop.load(Ordering::SeqCst) {
                let connections = proxy.counts().connections;
                if connections >= armed_at + 10 {
                    armed_at = connections;
                    proxy.reset_after_bytes(Direction::Requests, 3000);
                }
                std::thread::sleep(Duration::from_millis(1));
            }
        })
    };
    let spill = tempfile::tempdir().unwrap();
    let (options, seen) = recording(
        StreamerOptions::new()
            .server(proxy.address())
            .queue_limits(16, 1 << 26)
            .spill_dir(spill.path()),
    );
    let streamer = Streamer::new(options).unwrap();
    for i in 0..2000 {
        streamer
            .put(&format!("reset/f{i:04}"), &[i as u8; 1000], Some(i))
            .unwrap();
    }
    let stats = streamer.close();
    stop.store(true, Ordering::SeqCst);
    driver.join().unwrap();
    let kept: Vec<String> = seen
        .lock()
        .unwrap()
        .iter()
        .filter(|(_, outcomes)| outcomes[0].1.is_err())
        .map(|(name, outcomes)| format!("{name}: {}", failure(&outcomes[0])))
        .collect();
    assert!(
        kept.is_empty(),
        "{} failed, first {:?}",
        kept.len(),
        kept.first()
    );
    assert_eq!(stats.files_acknowledged, 2000, "{stats:?}");
    assert!(proxy.counts().resets >= 2, "{:?}", proxy.counts());
    assert!(files_under(spill.path()).is_empty());
    assert_eq!(stored_files(&server), 2000);
}

#[test]
fn flush_waits_for_spilled_files_while_a_server_takes_them() {
    let server = TestServer::start();
    let proxy = FaultProxy::start(&server.address());
    proxy.go_down();
    let spill = tempfile::tempdir().unwrap();
    let streamer = Streamer::new(
        StreamerOptions::new()
            .server(proxy.address())
            .spill_dir(spill.path())
            .reconnect_backoff(Duration::from_millis(20), Duration::from_millis(50)),
    )
    .unwrap();
    for i in 0..50 {
        streamer
            .put(&format!("fl/{i:02}"), b"abc", Some(i))
            .unwrap();
    }
    assert_eq!(streamer.stats().spilled, 50);
    proxy.come_back();
    // Up (or connecting) again: flush waits for the spilled files to be sent.
    wait_until("up", || streamer.server_state(0) != Some(ServerState::Down));
    streamer.flush(Some(Duration::from_secs(60))).unwrap();
    let stats = streamer.stats();
    assert_eq!(
        (stats.spilled, stats.files_acknowledged),
        (0, 50),
        "{stats:?}"
    );
    streamer.close();
}

#[test]
fn close_waits_for_a_server_that_comes_back() {
    let server = TestServer::start();
    let proxy = Arc::new(FaultProxy::start(&server.address()));
    proxy.go_down();
    let spill = tempfile::tempdir().unwrap();
    let streamer = Streamer::new(
        StreamerOptions::new()
            .server(proxy.address())
            .spill_dir(spill.path())
            .reconnect_backoff(Duration::from_millis(20), Duration::from_millis(50)),
    )
    .unwrap();
    for i in 0..50 {
        streamer
            .put(&format!("cb/{i:02}"), b"abc", Some(i))
            .unwrap();
    }
    let closer = std::thread::spawn(move || streamer.close());
    // The close is under way with every file spilled and no server: it must
    // wait (one connect plus one response timeout) for a server to come back.
    std::thread::sleep(Duration::from_millis(300));
    proxy.come_back();
    let stats = closer.join().unwrap();
    assert_eq!(stats.files_acknowledged, 50, "{stats:?}");
    assert!(files_under(spill.path()).is_empty());
}

#[test]
fn files_that_append_on_their_server_are_never_moved_by_failover() {
    let dead = dead_address();
    let good = TestServer::start();
    let streamer = Streamer::new(
        StreamerOptions::new()
            .server(dead.clone())
            .server(good.address())
            .round_robin_start(Some(0)),
    )
    .unwrap();
    // Round robin picks server 0, which is down: a plain file moves, an
    // appending one does not.
    streamer.put("plain/a", b"x", Some(0)).unwrap();
    match streamer.put("__aggregate_txt/log.txt", b"line\n", Some(0)) {
        Err(Error::ServerDown { server, .. }) => assert_eq!(server, dead),
        other => panic!("expected ServerDown, got {other:?}"),
    }
    let stats = streamer.close();
    assert_eq!(stats.files_acknowledged, 1);

    // With a spill folder it waits there for its own server, even while
    // another server is up.
    let spill = tempfile::tempdir().unwrap();
    let streamer = Streamer::new(
        StreamerOptions::new()
            .server(dead.clone())
            .server(good.address())
            .round_robin_start(Some(0))
            .spill_dir(spill.path())
            .connect_timeout(Duration::from_millis(200))
            .response_timeout(Duration::from_millis(200)),
    )
    .unwrap();
    streamer
        .put("__aggregate_txt/log.txt", b"line\n", Some(0))
        .unwrap();
    streamer.flush(Some(Duration::from_secs(60))).unwrap();
    assert_eq!(streamer.stats().spilled, 1);
    let stats = streamer.close();
    assert_eq!((stats.spilled, stats.files_failed), (1, 1), "{stats:?}");
    assert_eq!(
        stored_files(&good),
        1,
        "only the plain file of the first streamer"
    );
    assert_eq!(files_under(spill.path()).len(), 1);
}

#[test]
fn pyramid_operations_are_never_moved_by_failover() {
    // A pyramid's tiles live on one node: an update moved to another node
    // that also has the pyramid would split a tile's sum across two nodes.
    let dead = dead_address();
    let good = TestServer::start();
    let streamer = Streamer::new(
        StreamerOptions::new()
            .server(dead.clone())
            .server(good.address())
            .round_robin_start(Some(0)),
    )
    .unwrap();
    for name in [
        "__pyramid_create/p",
        "__pyramid_update_tile/p?x=0&y=0",
        "__pyramid_finish/p",
    ] {
        match streamer.put(name, b"x", Some(0)) {
            Err(Error::ServerDown { server, .. }) => assert_eq!(server, dead, "{name}"),
            other => panic!("{name}: expected ServerDown, got {other:?}"),
        }
    }
    let stats = streamer.close();
    assert_eq!(stats.files_acknowledged, 0, "{stats:?}");
    assert_eq!(stored_files(&good), 0, "nothing reached the other node");
}

#[test]
fn an_appending_file_whose_connection_fails_is_not_moved() {
    let first = TestServer::start();
    let second = TestServer::start();
    let proxy = FaultProxy::start(&first.address());
    let (options, seen) = recording(
        StreamerOptions::new()
            .server(proxy.address())
            .server(second.address())
            .round_robin_start(Some(0))
            .reconnect_backoff(Duration::from_secs(30), Duration::from_secs(30)),
    );
    let streamer = Streamer::new(options).unwrap();
    proxy.stall(Direction::Answers);
    streamer
        .put("__aggregate_txt/run.log", b"line\n", Some(0))
        .unwrap();
    streamer.put("plain/b", b"x", Some(0)).unwrap();
    proxy.wait_for("both requests", Duration::from_secs(60), |c| {
        c.requests_forwarded >= 2
    });
    proxy.go_down();
    let stats = streamer.close();
    let seen = seen.lock().unwrap();
    assert_eq!(seen["plain/b"][0], (1, Ok(200)), "a plain file moves");
    let appended = failure(&seen["__aggregate_txt/run.log"][0]);
    assert!(appended.contains("never moved"), "{appended}");
    assert_eq!(stats.files_acknowledged, 1, "{stats:?}");
    assert_eq!(stored_files(&second), 1, "only the plain file");
}

/// A host name that cannot exist is an error at once, not a server that
/// starts down. (A name with a NUL byte: no resolver is asked, so no query
/// leaves the machine; the resolver's own codes, `EAI_NONAME` against
/// `EAI_AGAIN`, are unit tests of `src/client/resolve.rs`.)
#[test]
fn a_host_name_that_cannot_exist_is_an_error_at_once() {
    let good = TestServer::start();
    let error = Streamer::new(
        StreamerOptions::new()
            .server(good.address())
            .server("no\0such-host:15348"),
    )
    .err()
    .expect("must fail");
    assert!(matches!(error, Error::Connect { .. }), "{error:?}");
    assert!(error.to_string().contains("no such host"), "{error}");
}

/// The state callback follows the completion callback's rules: the
/// statistics and the states can be read there, a put never waits, and
/// `flush` refuses at once instead of waiting for the thread running it.
#[test]
fn the_state_callback_may_read_and_put_but_not_wait() {
    let server = TestServer::start();
    let proxy = FaultProxy::start(&server.address());
    let slot: Arc<Mutex<Option<Arc<Streamer>>>> = Arc::default();
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let options = {
        let (slot, seen) = (Arc::clone(&slot), Arc::clone(&seen));
        StreamerOptions::new()
            .server(proxy.address())
            .reconnect_backoff(Duration::from_millis(20), Duration::from_millis(50))
            .on_server_state(move |index, state| {
                let Some(streamer) = slot.lock().unwrap().clone() else {
                    return;
                };
                let flushed = streamer.flush(None);
                let read = streamer.server_state(index);
                let queued = streamer.stats().files_queued;
                // Down: refused at once (no live server, no spill folder).
                let put = streamer.put("cb/x", b"x", None);
                seen.lock().unwrap().push(format!(
                    "{state} {flushed:?} {read:?} {queued} {}",
                    put.is_err()
                ));
            })
    };
    let streamer = Arc::new(Streamer::new(options).unwrap());
    *slot.lock().unwrap() = Some(Arc::clone(&streamer));
    proxy.go_down();
    wait_until("the report of down", || {
        seen.lock()
            .unwrap()
            .iter()
            .any(|line| line.starts_with("down"))
    });
    drop(slot.lock().unwrap().take());
    // The callback drops its copy when it returns.
    wait_until("the callback's copy dropped", || {
        Arc::strong_count(&streamer) == 1
    });
    let streamer = Arc::into_inner(streamer).expect("the only copy");
    streamer.close();
    for line in seen.lock().unwrap().iter() {
        assert!(line.contains("Err(InCallback"), "{line}");
        assert!(line.contains("Some("), "the state is read there: {line}");
        assert!(line.ends_with(" 0 true"), "{line}");
    }
}
