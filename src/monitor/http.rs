//! The monitor's HTTP server: `GET /` (the page), `/metrics`, `/api/status`. Read-only
//! and without authentication: anyone who reaches the port sees the cluster's figures
//! (the default bind is loopback).
//!
//! One request per connection (answered with `Connection: close`), on a thread of its
//! own, at most [`MAX_CONNECTIONS`] at once: beyond that a new connection replaces
//! the oldest one still waiting for its request head (so idle connections cannot
//! keep a client out), or, when every one is being answered, is closed unanswered. A request head must arrive whole within [`HEAD_TIMEOUT`] and fit in
//! [`MAX_HEAD_BYTES`]; a malformed head is answered 400, a method other than GET or
//! HEAD 405, an unknown path 404, a body is never read.
//!
//! What this module may not do: poll servers, or change anything: every answer is a
//! view of the records.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::{view, Shared};

/// Requests served at once.
pub const MAX_CONNECTIONS: usize = 64;

/// A request head must be whole this long after the connection.
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(5);

/// The largest request head read.
pub const MAX_HEAD_BYTES: usize = 8 << 10;

/// How long writing an answer may take in all: a client that reads a large answer
/// a trickle at a time cannot hold its thread longer.
const ANSWER_DEADLINE: Duration = Duration::from_secs(10);

/// The page, served from the binary.
const PAGE: &str = include_str!("assets/page.html");

pub(crate) struct HttpServer {
    stop: Arc<AtomicBool>,
    local_addr: SocketAddr,
    accept: JoinHandle<()>,
    requests: Arc<Mutex<Vec<JoinHandle<()>>>>,
    slots: Arc<Mutex<Slots>>,
}

impl HttpServer {
    pub fn start(listener: TcpListener, shared: Arc<Shared>) -> std::io::Result<HttpServer> {
        let local_addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let slots = Arc::new(Mutex::new(Slots::default()));
        let accept = {
            let stop = Arc::clone(&stop);
            let requests = Arc::clone(&requests);
            let slots = Arc::clone(&slots);
            std::thread::Builder::new()
                .name("pyme-monitor-http".into())
                .spawn(move || accept_loop(&listener, &shared, &stop, &requests, &slots))?
        };
        Ok(HttpServer {
            stop,
            local_addr,
            accept,
            requests,
            slots,
        })
    }

    /// Stops accepting (a connection to itself wakes the accept), closes the
    /// connections still waiting for their request, joins the threads (an answer
    /// being written ends by its deadline, 10 s, at worst).
    pub fn shutdown(self) {
        self.stop.store(true, Ordering::SeqCst);
        let mut wake = self.local_addr;
        if wake.ip().is_unspecified() {
            wake.set_ip(match wake {
                SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
                SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
            });
        }
        let _ = TcpStream::connect_timeout(&wake, Duration::from_secs(1));
        let _ = self.accept.join();
        for slot in &self
            .slots
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .open
        {
            if slot.in_head.load(Ordering::SeqCst) {
                let _ = slot.stream.shutdown(std::net::Shutdown::Both);
            }
        }
        let requests =
            std::mem::take(&mut *self.requests.lock().unwrap_or_else(PoisonError::into_inner));
        for request in requests {
            let _ = request.join();
        }
    }
}

/// A connection being served, as the accept loop sees it.
struct Slot {
    id: u64,
    /// A handle on the socket, to close it when it is evicted.
    stream: TcpStream,
    /// Still waiting for its request head (may be evicted).
    in_head: Arc<AtomicBool>,
}

/// The connections being served; when all [`MAX_CONNECTIONS`] are taken, a new one
/// replaces the oldest still waiting for its head (a client that connects and says
/// nothing cannot keep others out).
#[derive(Default)]
struct Slots {
    next_id: u64,
    open: Vec<Slot>,
}

impl Slots {
    /// Makes room for one more connection if needed; false when none can be made
    /// (every connection is past its head: being answered).
    fn make_room(&mut self) -> bool {
        if self.open.len() < MAX_CONNECTIONS {
            return true;
        }
        // Oldest first: slots are pushed in order.
        let Some(at) = self
            .open
            .iter()
            .position(|slot| slot.in_head.load(Ordering::SeqCst))
        else {
            return false;
        };
        let evicted = self.open.remove(at);
        let _ = evicted.stream.shutdown(std::net::Shutdown::Both);
        true
    }
}

fn accept_loop(
    listener: &TcpListener,
    shared: &Arc<Shared>,
    stop: &AtomicBool,
    requests: &Mutex<Vec<JoinHandle<()>>>,
    slots: &Arc<Mutex<Slots>>,
) {
    // Threads, evicted ones still ending included: bounded as well.
    let threads = Arc::new(AtomicUsize::new(0));
    for stream in listener.incoming() {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let Ok(stream) = stream else {
            // Out of descriptors, or a connection reset before accept: go on.
            std::thread::sleep(Duration::from_millis(10));
            continue;
        };
        let mut handles = requests.lock().unwrap_or_else(PoisonError::into_inner);
        handles.retain(|h| !h.is_finished());
        if threads.load(Ordering::SeqCst) >= 2 * MAX_CONNECTIONS {
            continue; // dropped: closed unanswered
        }
        let Ok(handle) = stream.try_clone() else {
            continue;
        };
        let in_head = Arc::new(AtomicBool::new(true));
        let id = {
            let mut slots = slots.lock().unwrap_or_else(PoisonError::into_inner);
            if !slots.make_room() {
                continue;
            }
            slots.next_id += 1;
            let id = slots.next_id;
            slots.open.push(Slot {
                id,
                stream: handle,
                in_head: Arc::clone(&in_head),
            });
            id
        };
        threads.fetch_add(1, Ordering::SeqCst);
        let taken = Taken {
            slots: Arc::clone(slots),
            threads: Arc::clone(&threads),
            id,
        };
        let shared = Arc::clone(shared);
        // If the spawn fails, the closure (and `taken` in it) is dropped: released.
        let spawned = std::thread::Builder::new()
            .name("pyme-monitor-request".into())
            .spawn(move || {
                let _taken = taken;
                serve(stream, &shared, &in_head);
            });
        if let Ok(handle) = spawned {
            handles.push(handle);
        }
    }
}

/// A connection's slot and thread count, released when dropped: after its answer,
/// and also when serving it panicked (else 64 panics would leave no slot free).
struct Taken {
    slots: Arc<Mutex<Slots>>,
    threads: Arc<AtomicUsize>,
    id: u64,
}

impl Drop for Taken {
    fn drop(&mut self) {
        let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        slots.open.retain(|slot| slot.id != self.id);
        drop(slots);
        self.threads.fetch_sub(1, Ordering::SeqCst);
    }
}

/// What a request head asks for.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Asked {
    /// GET (or HEAD, `with_body` false) of a path, its query cut off.
    Get { path: String, with_body: bool },
    /// Not a request this server understands (400).
    Malformed,
    /// A method other than GET and HEAD (405).
    Method,
    /// The head is not whole yet.
    Partial,
}

/// Reads what a request head asks for. Pure, for tests.
pub(crate) fn parse(head: &[u8]) -> Asked {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut request = httparse::Request::new(&mut headers);
    match request.parse(head) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => return Asked::Partial,
        Err(_) => return Asked::Malformed,
    }
    let (Some(method), Some(target)) = (request.method, request.path) else {
        return Asked::Malformed;
    };
    let with_body = match method {
        "GET" => true,
        "HEAD" => false,
        _ => return Asked::Method,
    };
    if !target.starts_with('/') {
        return Asked::Malformed;
    }
    let path = target.split(['?', '#']).next().unwrap_or_default();
    Asked::Get {
        path: path.to_owned(),
        with_body,
    }
}

fn serve(mut stream: TcpStream, shared: &Shared, in_head: &AtomicBool) {
    let deadline = Instant::now() + HEAD_TIMEOUT;
    let mut head = Vec::with_capacity(1024);
    let mut chunk = [0u8; 2048];
    let asked = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return answer(
                &mut stream,
                408,
                "text/plain",
                b"request head too slow\n",
                true,
            );
        }
        let _ = stream.set_read_timeout(Some(left));
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) if head.is_empty() => return,
            Ok(0) => {
                return answer(
                    &mut stream,
                    400,
                    "text/plain",
                    b"incomplete request\n",
                    true,
                )
            }
            Ok(n) => head.extend_from_slice(&chunk[..n]),
            Err(error)
                if matches!(
                    error.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                continue
            }
            Err(_) => return,
        }
        match parse(&head) {
            Asked::Partial if head.len() > MAX_HEAD_BYTES => {
                return answer(
                    &mut stream,
                    431,
                    "text/plain",
                    b"request head too large\n",
                    true,
                )
            }
            Asked::Partial => {}
            asked => break asked,
        }
    };
    in_head.store(false, Ordering::SeqCst);
    match asked {
        Asked::Get { path, with_body } => {
            let (code, content_type, body) = route(&path, shared);
            answer(&mut stream, code, content_type, body.as_bytes(), with_body);
        }
        Asked::Method => answer(&mut stream, 405, "text/plain", b"only GET and HEAD\n", true),
        _ => answer(&mut stream, 400, "text/plain", b"malformed request\n", true),
    }
}

fn route(path: &str, shared: &Shared) -> (u16, &'static str, std::borrow::Cow<'static, str>) {
    match path {
        "/" | "/index.html" => (200, "text/html; charset=utf-8", PAGE.into()),
        "/metrics" => (
            200,
            crate::prometheus::CONTENT_TYPE,
            view::metrics_text(shared).into(),
        ),
        "/api/status" => (200, "application/json", view::status_json(shared).into()),
        _ => (404, "text/plain", "not found\n".into()),
    }
}

fn answer(stream: &mut TcpStream, code: u16, content_type: &str, body: &[u8], with_body: bool) {
    let reason = match code {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        431 => "Request Header Fields Too Large",
        _ => "",
    };
    let allow = if code == 405 {
        "Allow: GET, HEAD\r\n"
    } else {
        ""
    };
    let head = format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Cache-Control: no-store\r\n{allow}Connection: close\r\n\r\n",
        body.len()
    );
    let deadline = Instant::now() + ANSWER_DEADLINE;
    if write_within(stream, head.as_bytes(), deadline) && with_body {
        write_within(stream, body, deadline);
    }
    let _ = stream.shutdown(std::net::Shutdown::Write);
}

/// Writes all of `bytes` before `deadline`; false when the time is up or the
/// connection failed (the rest is not written).
fn write_within(stream: &mut TcpStream, mut bytes: &[u8], deadline: Instant) -> bool {
    while !bytes.is_empty() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || stream.set_write_timeout(Some(left)).is_err() {
            return false;
        }
        match stream.write(bytes) {
            Ok(0) => return false,
            Ok(n) => bytes = &bytes[n..],
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_are_read_and_judged() {
        assert_eq!(
            parse(b"GET /metrics?x=1 HTTP/1.1\r\nHost: a\r\n\r\n"),
            Asked::Get {
                path: "/metrics".into(),
                with_body: true
            }
        );
        assert_eq!(
            parse(b"HEAD / HTTP/1.0\r\n\r\n"),
            Asked::Get {
                path: "/".into(),
                with_body: false
            }
        );
        assert_eq!(parse(b"GET / HTTP/1.1\r\n"), Asked::Partial);
        assert_eq!(parse(b"POST / HTTP/1.1\r\n\r\n"), Asked::Method);
        assert_eq!(parse(b"\x00\x01garbage\r\n\r\n"), Asked::Malformed);
        assert_eq!(parse(b"GET http://x/ HTTP/1.1\r\n\r\n"), Asked::Malformed);
    }

    #[test]
    fn a_panic_while_serving_releases_the_slot() {
        let slots = Arc::new(Mutex::new(Slots::default()));
        let threads = Arc::new(AtomicUsize::new(1));
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let stream = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        slots.lock().unwrap().open.push(Slot {
            id: 7,
            stream,
            in_head: Arc::new(AtomicBool::new(false)),
        });
        let taken = Taken {
            slots: Arc::clone(&slots),
            threads: Arc::clone(&threads),
            id: 7,
        };
        let panicked = std::thread::spawn(move || {
            let _taken = taken;
            panic!("a fault while serving");
        })
        .join();
        assert!(panicked.is_err());
        assert!(slots.lock().unwrap().open.is_empty(), "slot released");
        assert_eq!(threads.load(Ordering::SeqCst), 0, "thread count released");
    }

    /// A client reading a trickle (4 KiB every 20 ms) holds a large answer at most
    /// until the deadline, not as long as each write makes some progress.
    #[test]
    fn an_answer_read_a_trickle_at_a_time_ends_at_its_deadline() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut writer = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (mut reader, _) = listener.accept().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        let trickle = std::thread::spawn(move || {
            let mut chunk = [0u8; 4096];
            while !stopped.load(Ordering::SeqCst) && reader.read(&mut chunk).unwrap_or(0) > 0 {
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        // 64 MiB at 200 KiB/s would take minutes; per-write progress never stops it.
        let body = vec![b'x'; 64 << 20];
        let started = Instant::now();
        let whole = write_within(&mut writer, &body, started + Duration::from_millis(500));
        let took = started.elapsed();
        stop.store(true, Ordering::SeqCst);
        drop(writer);
        trickle.join().unwrap();
        assert!(!whole, "the deadline cut it short");
        assert!(took < Duration::from_secs(5), "{took:?}");
    }

    proptest::proptest! {
        /// Whatever a client sends, judging its head never panics.
        #[test]
        fn any_head_is_judged(head in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300)) {
            let _ = parse(&head);
        }
    }
}
