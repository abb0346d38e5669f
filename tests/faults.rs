//! Reliability faults made deterministic with the fault-injection proxy
//! (`common::proxy`): the proxy's own tests first, then one regression test per
//! client-side item of issue 15 ("Reliability, round 2").
//!
//! Tests marked `#[ignore = "issue 15 item N: ..."]` fail on the code they were
//! written against and are un-ignored as each item is fixed; run them with
//! `cargo test --test faults -- --include-ignored`.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::proxy::{CloseAfter, Direction, FaultProxy, GARBAGE};
use common::TestServer;

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
