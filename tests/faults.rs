//! Reliability faults made deterministic with the fault-injection proxy
//! (`common::proxy`): the proxy's own tests first, then one regression test per
//! client-side item of issue 15 ("Reliability, round 2").
//!
//! Tests marked `#[ignore = "issue 15 item N: ..."]` fail on the code they were
//! written against and are un-ignored as each item is fixed; run them with
//! `cargo test --test faults -- --include-ignored`.

mod common;

use std::collections::{HashMap, HashSet};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use common::proxy::{CloseAfter, Direction, FaultProxy, GARBAGE};
use common::{start_servers, Action, FakeServer, TestServer};
use pyme_streaming::{OutcomeResult, Stats, Stream, Streamer, StreamerOptions};

/// Long enough for a loaded machine; a test that waits this long has failed.
const PATIENCE: Duration = Duration::from_secs(30);

/// One HTTP answer, as a raw client reads it.
#[derive(Debug)]
struct Answer {
    status: u16,
    head: String,
}

/// A bare pipelining HTTP client for the proxy's own tests.
struct RawClient {
    socket: TcpStream,
    buffer: Vec<u8>,
}

impl RawClient {
    fn connect(address: &str) -> RawClient {
        let socket = TcpStream::connect(address).expect("connects to the proxy");
        socket.set_read_timeout(Some(PATIENCE)).unwrap();
        RawClient {
            socket,
            buffer: Vec::new(),
        }
    }

    fn put(&mut self, name: &str, body: &[u8]) {
        let head = format!(
            "PUT /{name} HTTP/1.1\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        self.socket.write_all(head.as_bytes()).unwrap();
        self.socket.write_all(body).unwrap();
    }

    /// The next answer; `None` at the end of the connection (or a reset).
    fn answer(&mut self) -> Option<Answer> {
        loop {
            let mut headers = [httparse::EMPTY_HEADER; 16];
            let mut response = httparse::Response::new(&mut headers);
            if let Ok(httparse::Status::Complete(head_len)) = response.parse(&self.buffer) {
                let length: usize = response
                    .headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                    .and_then(|h| std::str::from_utf8(h.value).ok()?.trim().parse().ok())
                    .unwrap_or(0);
                if self.buffer.len() >= head_len + length {
                    let answer = Answer {
                        status: response.code.unwrap_or(0),
                        head: String::from_utf8_lossy(&self.buffer[..head_len]).into_owned(),
                    };
                    self.buffer.drain(..head_len + length);
                    return Some(answer);
                }
            }
            if !self.read_more() {
                return None;
            }
        }
    }

    /// Reads whatever comes; false at the end of the connection.
    fn read_more(&mut self) -> bool {
        let mut chunk = [0u8; 65536];
        match self.socket.read(&mut chunk) {
            Ok(0) => false,
            Ok(n) => {
                self.buffer.extend_from_slice(&chunk[..n]);
                true
            }
            Err(error) if error.kind() == std::io::ErrorKind::ConnectionReset => false,
            Err(error) => panic!("reading answers: {error}"),
        }
    }

    /// True when nothing at all arrives within `wait` (the connection stays open).
    fn nothing_within(&mut self, wait: Duration) -> bool {
        self.socket.set_read_timeout(Some(wait)).unwrap();
        let mut byte = [0u8; 1];
        let quiet = match self.socket.read(&mut byte) {
            Err(error) => matches!(
                error.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ),
            Ok(n) => {
                self.buffer.extend_from_slice(&byte[..n]);
                false
            }
        };
        self.socket.set_read_timeout(Some(PATIENCE)).unwrap();
        quiet
    }
}

// ---------------------------------------------------------------- the proxy

#[test]
fn proxy_forwards_pipelined_requests_and_counts_them() {
    let server = TestServer::start();
    let proxy = FaultProxy::start(&server.address());
    let mut client = RawClient::connect(&proxy.address());
    for i in 0..3 {
        client.put(&format!("p/f{i}"), &vec![i as u8; 100_000]);
    }
    for _ in 0..3 {
        assert_eq!(client.answer().unwrap().status, 200);
    }
    let counts = proxy.counts();
    assert_eq!(counts.connections, 1);
    assert_eq!(counts.requests_received, 3);
    assert_eq!(counts.requests_forwarded, 3);
    assert_eq!(counts.answers_received, 3);
    assert_eq!(counts.answers_forwarded, 3);
    assert!(counts.bytes[0] > 300_000, "{counts:?}");
    assert_eq!(server.files(), ["p/f0", "p/f1", "p/f2"]);
    assert_eq!(server.read("p/f2").unwrap(), vec![2u8; 100_000]);
}

#[test]
fn proxy_frames_requests_written_byte_by_byte() {
    let server = TestServer::start();
    let proxy = FaultProxy::start(&server.address());
    let mut client = RawClient::connect(&proxy.address());
    let mut wire = Vec::new();
    for (name, body) in [
        ("b/one", &b"first body"[..]),
        ("b/two", &b""[..]),
        ("b/three", &b"3"[..]),
    ] {
        wire.extend_from_slice(
            format!(
                "PUT /{name} HTTP/1.1\r\nContent-Length: {}\r\n\r\n",
                body.len()
            )
            .as_bytes(),
        );
        wire.extend_from_slice(body);
    }
    for byte in &wire {
        client.socket.write_all(std::slice::from_ref(byte)).unwrap();
    }
    for _ in 0..3 {
        assert_eq!(client.answer().unwrap().status, 200);
    }
    let counts = proxy.counts();
    assert_eq!(
        (counts.requests_received, counts.requests_forwarded),
        (3, 3)
    );
    assert_eq!(counts.bytes[0], wire.len() as u64);
    assert_eq!(server.read("b/one").unwrap(), b"first body");
    assert_eq!(server.read("b/two").unwrap(), b"");
}

#[test]
fn proxy_resets_only_the_connections_still_open() {
    let server = TestServer::start();
    let proxy = FaultProxy::start(&server.address());
    let mut finished = RawClient::connect(&proxy.address());
    finished.put("z/1", b"1");
    assert_eq!(finished.answer().unwrap().status, 200);
    finished.socket.shutdown(std::net::Shutdown::Write).unwrap();
    assert!(finished.answer().is_none());
    let mut open = RawClient::connect(&proxy.address());
    open.put("z/2", b"2");
    assert_eq!(open.answer().unwrap().status, 200);
    proxy.reset_connections();
    assert!(open.answer().is_none());
    assert_eq!(proxy.counts().resets, 1);
}

#[test]
fn proxy_closes_politely_after_n_answers_on_every_connection() {
    let server = TestServer::start();
    let proxy = FaultProxy::start(&server.address());
    proxy.close_after(Some(CloseAfter {
        answers: 2,
        polite: true,
        once: false,
    }));
    for round in 0..2 {
        let mut client = RawClient::connect(&proxy.address());
        for i in 0..5 {
            client.put(&format!("c{round}/f{i}"), b"x");
        }
        let first = client.answer().unwrap();
        assert_eq!(first.status, 200);
        assert!(!first
            .head
            .to_ascii_lowercase()
            .contains("connection: close"));
        let second = client.answer().unwrap();
        assert_eq!(second.status, 200);
        assert!(second.head.contains("Connection: close"), "{}", second.head);
        assert!(client.answer().is_none(), "the connection ends");
    }
    let counts = proxy.wait_for("3 dropped requests per connection", PATIENCE, |c| {
        c.requests_dropped == 6
    });
    assert_eq!(counts.closes, 2);
    assert_eq!(counts.requests_forwarded, 4);
    assert_eq!(server.files(), ["c0/f0", "c0/f1", "c1/f0", "c1/f1"]);
}

#[test]
fn proxy_closes_once_and_impolitely_when_asked() {
    let server = TestServer::start();
    let proxy = FaultProxy::start(&server.address());
    proxy.close_after(Some(CloseAfter {
        answers: 1,
        polite: false,
        once: true,
    }));
    let mut first = RawClient::connect(&proxy.address());
    first.put("o/a", b"x");
    first.put("o/b", b"x");
    let answer = first.answer().unwrap();
    assert!(!answer.head.to_ascii_lowercase().contains("close"));
    assert!(first.answer().is_none(), "closed after one answer");
    let mut second = RawClient::connect(&proxy.address());
    for i in 0..3 {
        second.put(&format!("o/c{i}"), b"x");
    }
    for _ in 0..3 {
        assert_eq!(second.answer().unwrap().status, 200);
    }
    assert_eq!(proxy.counts().closes, 1);
}

#[test]
fn proxy_stall_holds_answers_until_released() {
    let server = TestServer::start();
    let proxy = FaultProxy::start(&server.address());
    proxy.stall(Direction::Answers);
    let mut client = RawClient::connect(&proxy.address());
    client.put("s/held", b"data");
    // The server has stored and answered; the proxy holds the answer.
    proxy.wait_for("the server's answer", PATIENCE, |c| c.answers_received == 1);
    assert_eq!(server.read("s/held").unwrap(), b"data");
    assert!(client.nothing_within(Duration::from_millis(300)));
    assert_eq!(proxy.counts().answers_forwarded, 0);
    proxy.release(Direction::Answers);
    assert_eq!(client.answer().unwrap().status, 200);
}

#[test]
fn proxy_stall_of_requests_keeps_them_from_the_server() {
    let server = TestServer::start();
    let proxy = FaultProxy::start(&server.address());
    let mut client = RawClient::connect(&proxy.address());
    client.put("s/before", b"1");
    assert_eq!(client.answer().unwrap().status, 200);
    proxy.stall(Direction::Requests);
    client.put("s/during", b"2");
    proxy.wait_for("the request head", PATIENCE, |c| c.requests_received == 2);
    assert!(client.nothing_within(Duration::from_millis(300)));
    assert_eq!(server.read("s/during"), None);
    proxy.release(Direction::Requests);
    assert_eq!(client.answer().unwrap().status, 200);
    assert_eq!(server.read("s/during").unwrap(), b"2");
}

#[test]
fn proxy_throttles_each_direction_to_its_bandwidth() {
    let server = TestServer::start();
    let proxy = FaultProxy::start(&server.address());
    proxy.set_bandwidth(Direction::Requests, Some(1_000_000));
    let mut client = RawClient::connect(&proxy.address());
    let started = Instant::now();
    client.put("t/half-a-megabyte", &vec![9u8; 500_000]);
    assert_eq!(client.answer().unwrap().status, 200);
    let elapsed = started.elapsed();
    // A lower bound only: the machine may be slower, never faster.
    assert!(elapsed >= Duration::from_millis(450), "{elapsed:?}");
    // Lifted, the same upload takes a fraction of that.
    proxy.set_bandwidth(Direction::Requests, None);
    proxy.set_bandwidth(Direction::Answers, Some(1_000_000));
    client.put("t/again", &vec![9u8; 500_000]);
    assert_eq!(client.answer().unwrap().status, 200);
}

#[test]
fn proxy_delays_every_message() {
    let server = TestServer::start();
    let proxy = FaultProxy::start(&server.address());
    proxy.set_delay(Duration::from_millis(200));
    let mut client = RawClient::connect(&proxy.address());
    let started = Instant::now();
    client.put("d/one", b"x");
    assert_eq!(client.answer().unwrap().status, 200);
    // The request head and the answer are each held 200 ms.
    assert!(started.elapsed() >= Duration::from_millis(400));
}

#[test]
fn proxy_resets_after_n_bytes() {
    let server = TestServer::start();
    let proxy = FaultProxy::start(&server.address());
    proxy.reset_after_bytes(Direction::Requests, 1000);
    let mut client = RawClient::connect(&proxy.address());
    let head_and_body = b"PUT /r/cut HTTP/1.1\r\nContent-Length: 100000\r\n\r\n";
    client.socket.write_all(head_and_body).unwrap();
    // The write may fail too once the reset has come back.
    let _ = client.socket.write_all(&[1u8; 100_000]);
    assert!(client.answer().is_none(), "the connection is cut");
    let counts = proxy.counts();
    assert_eq!(counts.resets, 1);
    assert_eq!(counts.bytes[0], 1000);
    assert_eq!(counts.answers_received, 0);
    // It fires once: a new connection goes through.
    let mut again = RawClient::connect(&proxy.address());
    again.put("r/whole", b"y");
    assert_eq!(again.answer().unwrap().status, 200);
}

#[test]
fn proxy_duplicates_and_garbles_the_answers_it_is_told_to() {
    let server = TestServer::start();
    let proxy = FaultProxy::start(&server.address());
    proxy.duplicate_answer(1);
    proxy.garble_answer(2);
    let mut client = RawClient::connect(&proxy.address());
    client.put("g/one", b"1");
    assert_eq!(client.answer().unwrap().status, 200);
    assert_eq!(client.answer().unwrap().status, 200, "the duplicate");
    client.put("g/two", b"2");
    while client.buffer.len() < GARBAGE.len() {
        assert!(client.read_more());
    }
    assert_eq!(client.buffer, GARBAGE);
    let counts = proxy.counts();
    assert_eq!((counts.answers_duplicated, counts.answers_garbled), (1, 1));
}

#[test]
fn proxy_goes_down_and_comes_back_on_the_same_port() {
    let server = TestServer::start();
    let proxy = FaultProxy::start(&server.address());
    let mut client = RawClient::connect(&proxy.address());
    client.put("u/1", b"1");
    assert_eq!(client.answer().unwrap().status, 200);
    proxy.go_down();
    assert!(client.answer().is_none(), "open connections are cut");
    assert!(TcpStream::connect(proxy.address()).is_err(), "port closed");
    proxy.come_back();
    let mut again = RawClient::connect(&proxy.address());
    again.put("u/2", b"2");
    assert_eq!(again.answer().unwrap().status, 200);
    assert_eq!(proxy.counts().connections, 2);
}

#[test]
fn proxy_dropped_while_stalled_stops_and_joins_its_threads() {
    let server = TestServer::start();
    let proxy = FaultProxy::start(&server.address());
    let address = proxy.address();
    proxy.stall(Direction::Answers);
    let mut client = RawClient::connect(&address);
    client.put("x/1", b"1");
    proxy.wait_for("the answer, held", PATIENCE, |c| c.answers_received == 1);
    let (done, finished) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        drop(proxy);
        let _ = done.send(());
    });
    finished
        .recv_timeout(PATIENCE)
        .expect("dropping the proxy returns (every thread joined)");
    assert!(client.answer().is_none(), "its connections are cut");
    assert!(TcpStream::connect(&address).is_err(), "its port is closed");
}

// ------------------------------------------------------- helpers for items

/// One outcome, as the completion callback saw it.
#[derive(Debug, Clone)]
struct Seen {
    server: usize,
    bytes: u64,
    acknowledged: bool,
    detail: String,
}

type Outcomes = Arc<Mutex<HashMap<String, Vec<Seen>>>>;

/// `options` with a completion callback that records every outcome by name.
fn recording(options: StreamerOptions) -> (StreamerOptions, Outcomes) {
    let outcomes: Outcomes = Arc::default();
    let sink = Arc::clone(&outcomes);
    let options = options.on_complete(move |outcome| {
        let (acknowledged, detail) = match outcome.result {
            OutcomeResult::Acknowledged { http_status } => (true, http_status.to_string()),
            OutcomeResult::Failed(error) => (false, error.to_string()),
        };
        sink.lock()
            .unwrap()
            .entry(outcome.name.to_owned())
            .or_default()
            .push(Seen {
                server: outcome.server,
                bytes: outcome.bytes,
                acknowledged,
                detail,
            });
    });
    (options, outcomes)
}

/// Every one of `expected` files has exactly one outcome, and the statistics agree.
fn assert_one_outcome_each(outcomes: &Outcomes, stats: &Stats, expected: usize) {
    let outcomes = outcomes.lock().unwrap();
    for (name, seen) in outcomes.iter() {
        assert_eq!(
            seen.len(),
            1,
            "{name} has {} outcomes: {seen:?}",
            seen.len()
        );
    }
    assert_eq!(outcomes.len(), expected, "files with an outcome; {stats:?}");
    assert_eq!(stats.files_queued as usize, expected, "{stats:?}");
    assert_eq!(
        (stats.files_acknowledged + stats.files_failed) as usize,
        expected,
        "{stats:?}"
    );
}

/// The failed outcomes, `name: reason`, for assertion messages.
fn failures(outcomes: &Outcomes) -> Vec<String> {
    let mut failed: Vec<String> = outcomes
        .lock()
        .unwrap()
        .iter()
        .flat_map(|(name, seen)| {
            seen.iter()
                .filter(|s| !s.acknowledged)
                .map(move |s| format!("{name}: {}", s.detail))
        })
        .collect();
    failed.sort();
    failed.truncate(5);
    failed
}

/// Runs `work` on a thread of its own and waits up to `limit` for it. `None`
/// when it is not done by then: it hangs (the thread is left behind, stuck).
fn within<T: Send + 'static>(
    limit: Duration,
    work: impl FnOnce() -> T + Send + 'static,
) -> Option<T> {
    let (done, result) = mpsc::channel();
    std::thread::Builder::new()
        .name("bounded-wait".into())
        .spawn(move || {
            let _ = done.send(work());
        })
        .unwrap();
    match result.recv_timeout(limit) {
        Ok(value) => Some(value),
        Err(mpsc::RecvTimeoutError::Timeout) => None,
        Err(mpsc::RecvTimeoutError::Disconnected) => panic!("the bounded work panicked"),
    }
}

/// Waits until `ready()`, up to `limit`; panics naming `what` otherwise.
fn wait_until(what: &str, limit: Duration, ready: impl Fn() -> bool) {
    let deadline = Instant::now() + limit;
    while !ready() {
        assert!(Instant::now() < deadline, "waited {limit:?} for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Every regular file below `root`, relative (dot files, the spill folder's
/// temporaries, left out).
fn files_below(root: &std::path::Path) -> HashSet<String> {
    fn walk(root: &std::path::Path, dir: &std::path::Path, names: &mut HashSet<String>) {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(root, &path, names);
            } else if !entry.file_name().to_string_lossy().starts_with('.') {
                let relative = path.strip_prefix(root).unwrap();
                names.insert(relative.to_string_lossy().into_owned());
            }
        }
    }
    let mut names = HashSet::new();
    walk(root, root, &mut names);
    names
}

/// No reconnection while a test runs (a closing link that is down stops at once).
const NEVER: Duration = Duration::from_secs(600);
const QUICKLY: Duration = Duration::from_millis(10);

// ------------------------------------------------------ issue 15, item by item

/// Item 1: the server holds `run/metadata.json` = "FIRST"; the cluster is
/// down; "SECOND" is put (spilled); the server comes back and the re-send is
/// answered 405. The file never reached any server before, so its bytes
/// cannot be the stored ones: its outcome is a failure, and its only copy
/// stays in the spill folder.
#[test]
fn item01_a_spilled_file_whose_name_is_taken_fails_and_stays_spilled() {
    let server = TestServer::start();
    let first = Stream::connect(&server.address(), &StreamerOptions::new()).unwrap();
    first.put("run/metadata.json", b"FIRST").unwrap();
    assert!(first.close().all_acknowledged());

    let proxy = FaultProxy::start(&server.address());
    let spill = tempfile::tempdir().unwrap();
    let (options, outcomes) = recording(
        StreamerOptions::new()
            .server(proxy.address())
            .spill_dir(spill.path())
            .reconnect_backoff(QUICKLY, QUICKLY * 5),
    );
    let streamer = Streamer::new(options).unwrap();
    proxy.go_down();
    streamer.put("run/metadata.json", b"SECOND", None).unwrap();
    streamer.flush(Some(PATIENCE)).unwrap();
    assert_eq!(streamer.stats().spilled, 1, "the file waits on disk");
    assert_eq!(proxy.counts().requests_received, 0, "it never left");

    proxy.come_back();
    proxy.wait_for("the answer to the re-send", PATIENCE, |c| {
        c.answers_forwarded >= 1
    });
    streamer.flush(Some(PATIENCE)).unwrap();
    let stats = streamer.close();

    assert_eq!(server.read("run/metadata.json").unwrap(), b"FIRST");
    assert_one_outcome_each(&outcomes, &stats, 1);
    let seen = outcomes.lock().unwrap()["run/metadata.json"][0].clone();
    assert!(
        !seen.acknowledged,
        "\"SECOND\" was reported acknowledged though the server holds \"FIRST\": {seen:?}, {stats:?}"
    );
    assert_eq!(stats.acknowledged_already, 0, "{stats:?}");
    assert_eq!(
        std::fs::read(spill.path().join("run/metadata.json")).ok(),
        Some(b"SECOND".to_vec()),
        "the only copy of \"SECOND\" must stay in the spill folder"
    );
}

/// Item 3: one of three servers stalls (its answers held) while files are
/// stored on it, then resumes. Every file is acknowledged once, the files
/// re-sent elsewhere are stored twice, and the statistics count them.
#[test]
fn item03_files_resent_after_a_stall_are_counted_as_possibly_stored_twice() {
    let servers = start_servers(3);
    let proxy = FaultProxy::start(&servers[1].address());
    let (options, outcomes) = recording(
        StreamerOptions::new()
            .servers([servers[0].address(), proxy.address(), servers[2].address()])
            .response_timeout(Duration::from_secs(1))
            .reconnect_backoff(NEVER, NEVER),
    );
    let streamer = Streamer::new(options).unwrap();
    for i in 0..30 {
        streamer
            .put(&format!("stall/f{i:02}"), &[i as u8; 1000], Some(i))
            .unwrap();
    }
    streamer.flush(Some(PATIENCE)).unwrap();
    proxy.stall(Direction::Answers);
    for i in 30..60 {
        streamer
            .put(&format!("stall/f{i:02}"), &[i as u8; 1000], Some(i))
            .unwrap();
    }
    // Server 1 stored its ten; their answers are held until the client gives up.
    wait_until("server 1 to store its ten files", PATIENCE, || {
        files_below(servers[1].root.path()).len() == 20
    });
    streamer.flush(Some(PATIENCE)).unwrap();
    proxy.release(Direction::Answers);
    let stats = streamer.close();

    assert_one_outcome_each(&outcomes, &stats, 60);
    assert_eq!(stats.files_acknowledged, 60, "{:?}", failures(&outcomes));
    let on_1 = files_below(servers[1].root.path());
    let elsewhere: HashSet<String> = files_below(servers[0].root.path())
        .union(&files_below(servers[2].root.path()))
        .cloned()
        .collect();
    let twice = on_1.intersection(&elsewhere).count() as u64;
    assert_eq!(twice, 10, "the ten stalled files are stored twice");
    assert_eq!(on_1.union(&elsewhere).count(), 60);
    let counted = stats.resent_maybe_stored;
    assert!(
        counted >= twice,
        "{twice} files stored twice, {counted} counted as re-sent after a possible landing"
    );
}

/// Item 5, first part: the cluster dies while spilled files are being sent
/// again; `flush(None)` must return once they are all back in the folder.
/// Today a file the spill thread puts back (no live server) wakes no waiter.
///
/// To hold the spill thread at that point, one spilled "file" is a named pipe
/// (a spill folder on a disk that answers slowly): the spill thread blocks
/// reading it until the test writes, after the cluster has died.
#[cfg(unix)] // a FIFO
#[test]
fn item05_flush_returns_when_the_cluster_dies_during_spill_resends() {
    const SIZE: usize = 4 << 20;
    let spill = tempfile::tempdir().unwrap();
    let folder = spill.path().join("resend");
    std::fs::create_dir_all(&folder).unwrap();
    let hour_ago = std::time::SystemTime::now() - Duration::from_secs(3600);
    for i in 0..3u8 {
        let path = folder.join(format!("f{i}"));
        std::fs::write(&path, vec![i; SIZE]).unwrap();
        let file = std::fs::File::options().write(true).open(&path).unwrap();
        file.set_modified(hour_ago + Duration::from_secs(u64::from(i)))
            .unwrap();
    }
    let slow = folder.join("slow-disk");
    let c_path = std::ffi::CString::new(slow.to_str().unwrap()).unwrap();
    // SAFETY: a plain system call with a NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);

    let server = TestServer::start();
    let proxy = FaultProxy::start(&server.address());
    // So slow that the re-sent files stay on the link.
    proxy.set_bandwidth(Direction::Requests, Some(1_000_000));
    let (options, outcomes) = recording(
        StreamerOptions::new()
            .server(proxy.address())
            .spill_dir(spill.path())
            .reconnect_backoff(QUICKLY, QUICKLY * 5),
    );
    let streamer = Arc::new(Streamer::new(options).unwrap());
    // The spill thread sent the three files and now waits on the "slow disk".
    // Opening a pipe to write without blocking succeeds once it has a reader.
    let deadline = Instant::now() + PATIENCE;
    let mut writer = loop {
        use std::os::unix::fs::OpenOptionsExt;
        let opened = std::fs::File::options()
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&slow);
        match opened {
            Ok(writer) => break writer,
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            Err(error) => panic!("the spill thread never read the slow file: {error}"),
        }
    };
    proxy.wait_for("the first re-sent file", PATIENCE, |c| {
        c.requests_received >= 1
    });
    proxy.go_down();
    wait_until("the three files back in the folder", PATIENCE, || {
        streamer.stats().spilled == 3
    });
    let flushing = Arc::clone(&streamer);
    let (done, flushed) = mpsc::channel();
    let flusher = std::thread::Builder::new()
        .name("flush-none".into())
        .spawn(move || {
            let _ = done.send(flushing.flush(None));
        })
        .unwrap();
    // The flush waiting (one file is out of the folder, so it must): were it
    // late, it would find the work done and pass, never fail.
    common::blocked::wait_until_blocked("flush-none");
    writer.write_all(b"slow disk").unwrap();
    drop(writer);
    let Ok(result) = flushed.recv_timeout(Duration::from_secs(10)) else {
        // The stuck flush keeps the streamer alive: nothing blocks the unwinding.
        panic!(
            "flush(None) still waiting 10 s after the cluster died during spill re-sends; {:?}",
            streamer.stats()
        );
    };
    result.unwrap();
    assert_eq!(streamer.stats().spilled, 4);
    // It sent its result before dropping its handle on the streamer.
    flusher.join().unwrap();
    let streamer = Arc::into_inner(streamer).expect("the flush thread is done");
    let stats = streamer.close();
    assert_one_outcome_each(&outcomes, &stats, 4);
    assert_eq!(files_below(spill.path()).len(), 4, "all kept on disk");
}

/// Item 5, second part: `close` while the cluster dies during spill
/// re-sends returns (the waiter must not miss the last change). Close gives
/// the cluster one connect plus one response timeout to take a file again
/// (issue 22, item 2): 3 s here, well inside the 20 s this test allows.
#[test]
fn item05_close_returns_when_the_cluster_dies_during_spill_resends() {
    const FILES: usize = 12;
    const SIZE: usize = 4 << 20;
    for round in 0..3 {
        let server = TestServer::start();
        let proxy = FaultProxy::start(&server.address());
        let spill = tempfile::tempdir().unwrap();
        let (options, outcomes) = recording(
            StreamerOptions::new()
                .server(proxy.address())
                .spill_dir(spill.path())
                .connect_timeout(Duration::from_secs(1))
                .response_timeout(Duration::from_secs(2))
                .reconnect_backoff(QUICKLY, QUICKLY * 5),
        );
        let streamer = Streamer::new(options).unwrap();
        proxy.go_down();
        for i in 0..FILES {
            streamer
                .put(&format!("close/f{i:02}"), &vec![i as u8; SIZE], None)
                .unwrap();
        }
        streamer.flush(Some(PATIENCE)).unwrap();
        proxy.set_bandwidth(Direction::Requests, Some(1_000_000));
        proxy.come_back();
        proxy.wait_for("the first re-sent file", PATIENCE, |c| {
            c.requests_received >= 1
        });
        let (done, closed) = mpsc::channel();
        std::thread::Builder::new()
            .name("close".into())
            .spawn(move || {
                let _ = done.send(streamer.close());
            })
            .unwrap();
        proxy.go_down();
        let Ok(stats) = closed.recv_timeout(Duration::from_secs(20)) else {
            proxy.set_bandwidth(Direction::Requests, None);
            proxy.come_back();
            panic!("round {round}: close still waiting 20 s after the cluster died during spill re-sends");
        };
        assert_one_outcome_each(&outcomes, &stats, FILES);
        assert_eq!(stats.files_failed, FILES as u64, "{stats:?}");
        assert_eq!(files_below(spill.path()).len(), FILES, "all kept on disk");
    }
}

/// Item 5, third part: a 5xx retry racing the end-of-stream sentinel of
/// `finalize` must still give the file an outcome, and finalize must return.
/// The race is inside the client; the proxy lines the two up as closely as
/// it can (the 503 is held until finalize is called), many times.
#[test]
fn item05_a_5xx_retry_racing_the_sentinel_still_gets_an_outcome() {
    let attempts: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
    let counter = Arc::clone(&attempts);
    let server = FakeServer::start(move |name, _| {
        let mut attempts = counter.lock().unwrap();
        let n = attempts.entry(name.to_owned()).or_default();
        *n += 1;
        if name.starts_with("race/") && *n == 1 {
            Action::Answer(503)
        } else {
            Action::Answer(200)
        }
    });
    let proxy = Arc::new(FaultProxy::start(&server.address));
    for round in 0..40 {
        proxy.stall(Direction::Answers);
        let (options, outcomes) = recording(StreamerOptions::new().max_retries(2));
        let stream = Stream::connect(&proxy.address(), &options).unwrap();
        let name = format!("race/f{round:02}");
        stream.put(&name, b"x").unwrap();
        let answers_before = proxy.counts().answers_received;
        proxy.wait_for("the 503", PATIENCE, |c| c.answers_received > answers_before);
        // Released on another thread while finalize queues the sentinel.
        let releasing = {
            let proxy = Arc::clone(&proxy);
            std::thread::spawn(move || proxy.release(Direction::Answers))
        };
        let finalized = within(PATIENCE, move || stream.finalize("race/end"));
        releasing.join().unwrap();
        let Some(finalized) = finalized else {
            panic!(
                "round {round}: finalize still waiting after {PATIENCE:?}; outcomes {:?}",
                outcomes.lock().unwrap()
            );
        };
        let stats = finalized.unwrap();
        assert_eq!(
            stats.files_acknowledged + stats.files_failed,
            stats.files_queued,
            "round {round}: {stats:?}"
        );
        assert_eq!(outcomes.lock().unwrap()[&name].len(), 1);
    }
}

/// Item 8: on a 5 MB/s link (40 Mbit/s) a 15 MB file takes 3 s to upload;
/// with a 2 s response timeout it must still be acknowledged, since the
/// server owes no answer before the last byte of the body arrives.
#[test]
fn item08_the_response_timeout_does_not_count_upload_time() {
    let server = TestServer::start();
    let proxy = FaultProxy::start(&server.address());
    proxy.set_bandwidth(Direction::Requests, Some(5_000_000));
    let (options, outcomes) = recording(
        StreamerOptions::new()
            .server(proxy.address())
            .response_timeout(Duration::from_secs(2))
            .reconnect_backoff(QUICKLY, QUICKLY * 5),
    );
    let streamer = Streamer::new(options).unwrap();
    let data = vec![0x42u8; 15_000_000];
    let started = Instant::now();
    streamer.put("slow-link/big", &data, None).unwrap();
    let stats = streamer.close();
    let elapsed = started.elapsed();
    assert_one_outcome_each(&outcomes, &stats, 1);
    assert_eq!(
        stats.files_acknowledged,
        1,
        "a 3 s upload failed with a 2 s response timeout after {elapsed:?}: {:?}",
        failures(&outcomes)
    );
    assert!(
        elapsed >= Duration::from_millis(2900),
        "{elapsed:?}: not throttled?"
    );
    assert_eq!(server.read("slow-link/big").unwrap().len(), data.len());
}

/// Item 9: the server answers 5 files and hangs up (no `Connection: close`,
/// as a server does after answering 400 to a bad name). The files sent
/// behind them were never read: they are re-sent on a new connection.
#[test]
fn item09_files_unanswered_when_the_server_hangs_up_are_resent() {
    let server = TestServer::start();
    let proxy = FaultProxy::start(&server.address());
    proxy.close_after(Some(CloseAfter {
        answers: 5,
        polite: false,
        once: true,
    }));
    let (options, outcomes) = recording(
        StreamerOptions::new()
            .server(proxy.address())
            .reconnect_backoff(QUICKLY, QUICKLY * 5),
    );
    let streamer = Streamer::new(options).unwrap();
    for i in 0..20 {
        streamer
            .put(&format!("hangup/f{i:02}"), &[i as u8; 2000], Some(i))
            .unwrap();
    }
    let stats = streamer.close();
    assert_one_outcome_each(&outcomes, &stats, 20);
    assert_eq!(
        stats.files_acknowledged,
        20,
        "{} of 20 acknowledged after a hang-up: {:?}",
        stats.files_acknowledged,
        failures(&outcomes)
    );
    assert_eq!(proxy.counts().closes, 1, "the fault happened");
    assert_eq!(server.files().len(), 20);
}

/// Item 10: a server that closes politely (`Connection: close`) after every
/// 7 requests, as nginx after its keep-alive limit: all 59 files acknowledged.
#[test]
fn item10_a_server_closing_after_every_7_requests_gets_all_59_files() {
    let server = TestServer::start();
    let proxy = FaultProxy::start(&server.address());
    proxy.close_after(Some(CloseAfter {
        answers: 7,
        polite: true,
        once: false,
    }));
    let (options, outcomes) = recording(
        StreamerOptions::new()
            .server(proxy.address())
            .reconnect_backoff(QUICKLY, QUICKLY * 5),
    );
    let streamer = Streamer::new(options).unwrap();
    for i in 0..59 {
        streamer
            .put(&format!("nginx/f{i:02}"), &[i as u8; 3000], Some(i))
            .unwrap();
    }
    let stats = streamer.close();
    assert_one_outcome_each(&outcomes, &stats, 59);
    assert_eq!(
        stats.files_acknowledged,
        59,
        "{} of 59 acknowledged: {:?}",
        stats.files_acknowledged,
        failures(&outcomes)
    );
    assert!(proxy.counts().closes >= 8, "{:?}", proxy.counts());
    assert_eq!(server.files().len(), 59);
}

/// Item 11: one of three servers answers 500 to every PUT (a full disk):
/// after the retries its files move to the two live servers; none fails.
#[test]
fn item11_files_answered_5xx_move_to_another_live_server() {
    let good = start_servers(2);
    let full = FakeServer::start(|_, _| Action::Answer(500));
    let (options, outcomes) = recording(
        StreamerOptions::new()
            .servers([good[0].address(), full.address.clone(), good[1].address()])
            .max_retries(2),
    );
    let streamer = Streamer::new(options).unwrap();
    for i in 0..300 {
        streamer
            .put(&format!("full/f{i:03}"), &[i as u8; 1000], Some(i))
            .unwrap();
    }
    let stats = streamer.close();
    assert_one_outcome_each(&outcomes, &stats, 300);
    assert_eq!(
        stats.files_failed,
        0,
        "{} of 300 failed though two servers have room: {:?}",
        stats.files_failed,
        failures(&outcomes)
    );
    let stored: HashSet<String> = files_below(good[0].root.path())
        .union(&files_below(good[1].root.path()))
        .cloned()
        .collect();
    assert_eq!(stored.len(), 300);
}

/// Item 12: an answer that arrives while nothing is in flight is a protocol
/// error: the connection is failed and a new one made; nothing is lost.
#[test]
fn item12_an_extra_answer_with_nothing_in_flight_fails_the_connection() {
    let servers = start_servers(2);
    let proxy = FaultProxy::start(&servers[0].address());
    proxy.duplicate_answer(1);
    let (options, outcomes) = recording(
        StreamerOptions::new()
            .servers([proxy.address(), servers[1].address()])
            .reconnect_backoff(QUICKLY, QUICKLY * 5),
    );
    let streamer = Streamer::new(options).unwrap();
    streamer.put_stream(0, "extra/first", b"1").unwrap();
    streamer.flush(Some(PATIENCE)).unwrap();
    // The client failed the connection on the extra answer, and reconnected.
    proxy.wait_for("a new connection", PATIENCE, |c| c.connections == 2);
    for i in 0..40 {
        streamer
            .put(&format!("extra/f{i:02}"), &[i as u8; 500], Some(i))
            .unwrap();
    }
    let stats = streamer.close();
    assert_one_outcome_each(&outcomes, &stats, 41);
    assert_eq!(stats.files_acknowledged, 41, "{:?}", failures(&outcomes));
    assert!(stats.reconnects >= 1, "{stats:?}");
    assert_eq!(proxy.counts().answers_duplicated, 1);
}

/// Item 12: a garbled answer fails the connection; its file is re-routed to
/// the live server and acknowledged there.
#[test]
fn item12_a_garbled_answer_fails_the_connection_and_reroutes_its_file() {
    let servers = start_servers(2);
    let proxy = FaultProxy::start(&servers[0].address());
    proxy.garble_answer(1);
    let (options, outcomes) = recording(
        StreamerOptions::new()
            .servers([proxy.address(), servers[1].address()])
            .distribution(pyme_streaming::Fixed(0))
            .reconnect_backoff(NEVER, NEVER),
    );
    let streamer = Streamer::new(options).unwrap();
    streamer.put("garbled/one", b"1", None).unwrap();
    let stats = streamer.close();
    assert_one_outcome_each(&outcomes, &stats, 1);
    assert_eq!(stats.files_acknowledged, 1, "{:?}", failures(&outcomes));
    assert_eq!(stats.rerouted, 1, "{stats:?}");
    assert_eq!(servers[1].read("garbled/one").unwrap(), b"1");
    assert_eq!(outcomes.lock().unwrap()["garbled/one"][0].server, 1);
}

/// A distribution that remembers every thread that called it.
struct RecordingDistribution {
    callers: Arc<Mutex<HashMap<std::thread::ThreadId, String>>>,
}

impl pyme_streaming::Distribution for RecordingDistribution {
    fn choose(&self, n_servers: usize, index: Option<i64>, _name: &str) -> usize {
        let thread = std::thread::current();
        self.callers
            .lock()
            .unwrap()
            .insert(thread.id(), thread.name().unwrap_or("?").to_owned());
        index.unwrap_or(0).rem_euclid(n_servers as i64) as usize
    }
}

/// Item 13: the distribution callback runs only on the thread that calls
/// `put`, also when a server fails and its files move to the others.
#[test]
fn item13_the_distribution_is_only_called_on_the_put_thread() {
    let servers = start_servers(3);
    let proxy = FaultProxy::start(&servers[1].address());
    let callers: Arc<Mutex<HashMap<std::thread::ThreadId, String>>> = Arc::default();
    let (options, outcomes) = recording(
        StreamerOptions::new()
            .servers([servers[0].address(), proxy.address(), servers[2].address()])
            .distribution(RecordingDistribution {
                callers: Arc::clone(&callers),
            })
            .reconnect_backoff(NEVER, NEVER),
    );
    let streamer = Streamer::new(options).unwrap();
    proxy.stall(Direction::Answers);
    for i in 0..30 {
        streamer
            .put(&format!("dist/f{i:02}"), &[i as u8; 1000], Some(i))
            .unwrap();
    }
    proxy.wait_for("server 1's ten files", PATIENCE, |c| {
        c.requests_forwarded == 10
    });
    // Server 1 vanishes with ten files in flight: they fail over.
    proxy.go_down();
    let stats = streamer.close();
    assert_one_outcome_each(&outcomes, &stats, 30);
    assert_eq!(stats.files_acknowledged, 30, "{:?}", failures(&outcomes));
    assert!(stats.rerouted >= 1, "{stats:?}");
    let me = std::thread::current().id();
    let others: Vec<String> = callers
        .lock()
        .unwrap()
        .iter()
        .filter(|(id, _)| **id != me)
        .map(|(_, name)| name.clone())
        .collect();
    assert!(
        others.is_empty(),
        "the distribution was called on other threads: {others:?}"
    );
}

/// Item 18: a statistics snapshot is consistent: it never shows more files
/// acknowledged than queued, however often it is taken while files flow.
/// Each server holds one file at a time, so that few files are pending, and
/// three watchers on a busy machine get preempted between two counters often.
#[test]
fn item18_a_stats_snapshot_never_shows_more_acknowledged_than_queued() {
    use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
    let servers = start_servers(2);
    let streamer = Arc::new(
        Streamer::new(
            StreamerOptions::new()
                .servers(common::addresses(&servers))
                .queue_limits(1, 1 << 30),
        )
        .unwrap(),
    );
    let stop = Arc::new(AtomicBool::new(false));
    let watchers: Vec<_> = (0..3)
        .map(|_| {
            let streamer = Arc::clone(&streamer);
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                let mut snapshots = 0u64;
                while !stop.load(Relaxed) {
                    let stats = streamer.stats();
                    snapshots += 1;
                    if stats.files_acknowledged + stats.files_failed > stats.files_queued
                        || stats.bytes_acknowledged > stats.bytes_queued
                    {
                        return Err(format!("after {snapshots} snapshots: {stats:?}"));
                    }
                }
                Ok(snapshots)
            })
        })
        .collect();
    for i in 0..20_000 {
        streamer
            .put(&format!("snap/f{i:05}"), b"tiny", Some(i))
            .unwrap();
    }
    streamer.flush(Some(PATIENCE)).unwrap();
    stop.store(true, Relaxed);
    for watcher in watchers {
        let snapshots = watcher.join().unwrap().unwrap_or_else(|inconsistent| {
            panic!("an inconsistent statistics snapshot: {inconsistent}")
        });
        assert!(snapshots > 100, "only {snapshots} snapshots taken");
    }
}

/// Item 20: files still in the spill folder at close fail with their real
/// size and the "no server" index (`usize::MAX`, until the lead names a
/// constant for it).
#[test]
fn item20_files_failed_from_the_spill_folder_report_size_and_no_server() {
    let server = TestServer::start();
    let proxy = FaultProxy::start(&server.address());
    let spill = tempfile::tempdir().unwrap();
    let (options, outcomes) = recording(
        StreamerOptions::new()
            .server(proxy.address())
            .spill_dir(spill.path())
            .reconnect_backoff(NEVER, NEVER),
    );
    let streamer = Streamer::new(options).unwrap();
    proxy.go_down();
    let sizes = [1usize, 1000, 123_456];
    for (i, size) in sizes.iter().enumerate() {
        streamer
            .put(&format!("left/f{i}"), &vec![7u8; *size], None)
            .unwrap();
    }
    let stats = streamer.close();
    assert_eq!(stats.spilled, 3, "{stats:?}");
    assert_one_outcome_each(&outcomes, &stats, 3);
    let outcomes = outcomes.lock().unwrap();
    for (i, size) in sizes.iter().enumerate() {
        let seen = &outcomes[&format!("left/f{i}")][0];
        assert!(
            !seen.acknowledged && seen.detail.contains("spill"),
            "{seen:?}"
        );
        assert_eq!(seen.bytes, *size as u64, "left/f{i}: {seen:?}");
        assert_eq!(
            seen.server,
            pyme_streaming::outcome::NO_SERVER,
            "left/f{i}: {seen:?}"
        );
    }
}
