//! A fault-injection TCP proxy for the tests: it sits on loopback between a
//! client and one data server and, on command at any moment, delays,
//! throttles, stalls, resets, closes after N answers, duplicates or garbles
//! answers, goes down and comes back, and counts what it sees. Network faults
//! thus happen exactly when a test wants them, instead of by timing luck.
//!
//! It knows just enough HTTP/1.1 to see where messages begin and end (a head,
//! then `Content-Length` bytes of body; `1xx` answers pass uncounted): requests
//! and answers are counted, and the answer faults act on whole answers. Request
//! bodies are streamed, never held whole; answers (small) are held whole.
//!
//! It may not: listen anywhere but 127.0.0.1, connect anywhere but the
//! upstream it was given (a loopback server the test started), or outlive its
//! owner: dropping it stops the acceptor and every connection, and joins all
//! of its threads.

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Which way bytes flow through the proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Client to server.
    Requests,
    /// Server to client.
    Answers,
}

impl Direction {
    fn index(self) -> usize {
        match self {
            Direction::Requests => 0,
            Direction::Answers => 1,
        }
    }
}

/// What the proxy has seen so far (all connections together).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Client connections accepted (and connected upstream).
    pub connections: u64,
    /// Request heads read from clients.
    pub requests_received: u64,
    /// Whole requests written to the server.
    pub requests_forwarded: u64,
    /// Requests discarded because their connection was closing (close after N).
    pub requests_dropped: u64,
    /// Whole answers (not `1xx`) read from the server.
    pub answers_received: u64,
    /// Answers written to clients (a duplicated answer counts once here).
    pub answers_forwarded: u64,
    pub answers_duplicated: u64,
    pub answers_garbled: u64,
    /// Connections closed after N answers.
    pub closes: u64,
    /// Connections cut after N bytes, or by `reset_connections`/`go_down`.
    pub resets: u64,
    /// Bytes written, per direction (`Direction::index`).
    pub bytes: [u64; 2],
}

/// Close connections after a number of answers, as nginx does after its
/// keep-alive request limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CloseAfter {
    /// Answers a connection gets (counted from its start); requests after
    /// them on that connection are read and discarded, never forwarded.
    pub answers: u64,
    /// Polite: the last answer says `Connection: close`. Otherwise it is
    /// forwarded unchanged and the connection then closes (a server that
    /// answers an error and hangs up).
    pub polite: bool,
    /// Only the first connection to reach `answers` closes; every connection
    /// otherwise.
    pub once: bool,
}

/// What garbled answers look like: not HTTP at all.
pub const GARBAGE: &[u8] = b"XTTP/9.9 ??? garbled by the proxy\r\n\r\n";

/// Request bodies and answers are forwarded in pieces of at most this size
/// (smaller when throttled, so that pacing stays smooth).
const PIECE: usize = 64 * 1024;
/// Longest sleep without looking at the stop flag and the knobs.
const SLICE: Duration = Duration::from_millis(20);

struct Knobs {
    delay: Duration,
    bandwidth: [Option<u64>; 2],
    stalled: [bool; 2],
    reset_after: [Option<u64>; 2],
    close_after: Option<CloseAfter>,
    duplicate: BTreeSet<u64>,
    garble: BTreeSet<u64>,
    /// `go_down` asked for the port to be closed.
    refuse: bool,
    /// The acceptor's view: the port is open.
    listening: bool,
    counts: Counts,
}

struct Shared {
    upstream: String,
    port: u16,
    knobs: Mutex<Knobs>,
    /// Signalled on every knob change and every count change.
    changed: Condvar,
    stop: AtomicBool,
    connections: Mutex<Vec<Arc<Connection>>>,
    pumps: Mutex<Vec<JoinHandle<()>>>,
}

impl Shared {
    fn knobs(&self) -> MutexGuard<'_, Knobs> {
        self.knobs.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn count(&self, update: impl FnOnce(&mut Counts)) {
        update(&mut self.knobs().counts);
        self.changed.notify_all();
    }

    fn stopping(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    /// Sleeps `duration`, in slices, unless the proxy or `connection` stops first.
    fn sleep(&self, connection: &Connection, duration: Duration) -> io::Result<()> {
        let until = Instant::now() + duration;
        loop {
            if self.stopping() || connection.is_dead() {
                return Err(io::Error::other("proxy stopped"));
            }
            let now = Instant::now();
            if now >= until {
                return Ok(());
            }
            std::thread::sleep((until - now).min(SLICE));
        }
    }
}

/// One client connection and its upstream connection.
struct Connection {
    client: TcpStream,
    server: TcpStream,
    /// The connection closes after this many answers (set when its request
    /// of that number arrives while a close-after policy is armed).
    close_at: Mutex<Option<(u64, bool)>>,
    dead: AtomicBool,
    /// Pumps still running; the last one to end marks the connection dead.
    pumps_running: AtomicUsize,
}

impl Connection {
    fn is_dead(&self) -> bool {
        self.dead.load(Ordering::SeqCst)
    }

    /// A pump ended; once both have, the connection is over.
    fn pump_ended(&self) {
        if self.pumps_running.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.dead.store(true, Ordering::SeqCst);
        }
    }

    /// Cuts both sides: the client gets a reset (linger 0), the server an end.
    fn kill(&self) {
        self.dead.store(true, Ordering::SeqCst);
        set_linger_zero(&self.client);
        let _ = self.client.shutdown(Shutdown::Both);
        let _ = self.server.shutdown(Shutdown::Both);
    }
}

/// A fault-injection proxy in front of one upstream server. See the module doc.
pub struct FaultProxy {
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
}

impl FaultProxy {
    /// Listens on a free loopback port and forwards every connection to
    /// `upstream` (`host:port`, on loopback).
    pub fn start(upstream: &str) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("proxy binds");
        let port = listener.local_addr().unwrap().port();
        let shared = Arc::new(Shared {
            upstream: upstream.to_owned(),
            port,
            knobs: Mutex::new(Knobs {
                delay: Duration::ZERO,
                bandwidth: [None; 2],
                stalled: [false; 2],
                reset_after: [None; 2],
                close_after: None,
                duplicate: BTreeSet::new(),
                garble: BTreeSet::new(),
                refuse: false,
                listening: true,
                counts: Counts::default(),
            }),
            changed: Condvar::new(),
            stop: AtomicBool::new(false),
            connections: Mutex::new(Vec::new()),
            pumps: Mutex::new(Vec::new()),
        });
        let for_thread = Arc::clone(&shared);
        let acceptor = std::thread::Builder::new()
            .name(format!("proxy-{port}-accept"))
            .spawn(move || accept_loop(&for_thread, Some(listener)))
            .expect("proxy thread starts");
        FaultProxy {
            shared,
            acceptor: Some(acceptor),
        }
    }

    /// `127.0.0.1:port`: give this to the client instead of the server's address.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.shared.port)
    }

    pub fn counts(&self) -> Counts {
        self.shared.knobs().counts
    }

    /// Waits until `ready` holds for the counts, up to `timeout`; panics
    /// naming `what` otherwise. Returns the counts that satisfied it.
    pub fn wait_for(
        &self,
        what: &str,
        timeout: Duration,
        ready: impl Fn(&Counts) -> bool,
    ) -> Counts {
        let deadline = Instant::now() + timeout;
        let mut knobs = self.shared.knobs();
        loop {
            if ready(&knobs.counts) {
                return knobs.counts;
            }
            let now = Instant::now();
            assert!(
                now < deadline,
                "proxy: waited {timeout:?} for {what}; counts {:?}",
                knobs.counts
            );
            knobs = self
                .shared
                .changed
                .wait_timeout(knobs, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    fn change(&self, update: impl FnOnce(&mut Knobs)) {
        update(&mut self.shared.knobs());
        self.shared.changed.notify_all();
    }

    /// Holds every request head and every answer this long before forwarding it.
    pub fn set_delay(&self, delay: Duration) {
        self.change(|knobs| knobs.delay = delay);
    }

    /// Limits one direction to `bytes_per_second` (each connection on its
    /// own); `None` lifts the limit.
    pub fn set_bandwidth(&self, direction: Direction, bytes_per_second: Option<u64>) {
        self.change(|knobs| knobs.bandwidth[direction.index()] = bytes_per_second);
    }

    /// Stops forwarding in `direction` (nothing more is written; what the
    /// proxy has not read stays in the kernel's buffers) until `release`.
    pub fn stall(&self, direction: Direction) {
        self.change(|knobs| knobs.stalled[direction.index()] = true);
    }

    pub fn release(&self, direction: Direction) {
        self.change(|knobs| knobs.stalled[direction.index()] = false);
    }

    /// After `bytes` more bytes are written in `direction` (whichever
    /// connection writes them), that connection is cut: the client gets a
    /// reset, the server an end of stream. Fires once.
    pub fn reset_after_bytes(&self, direction: Direction, bytes: u64) {
        self.change(|knobs| knobs.reset_after[direction.index()] = Some(bytes));
    }

    /// Arms (or, with `None`, disarms) closing after N answers.
    pub fn close_after(&self, policy: Option<CloseAfter>) {
        self.change(|knobs| knobs.close_after = policy);
    }

    /// The answer of this number (1-based, counted over every connection as
    /// read from the server) is written to the client twice.
    pub fn duplicate_answer(&self, number: u64) {
        self.change(|knobs| {
            knobs.duplicate.insert(number);
        });
    }

    /// The answer of this number is replaced by [`GARBAGE`].
    pub fn garble_answer(&self, number: u64) {
        self.change(|knobs| {
            knobs.garble.insert(number);
        });
    }

    /// Cuts every open connection (reset) and keeps accepting new ones.
    pub fn reset_connections(&self) {
        let connections = self.shared.connections.lock().unwrap().clone();
        let mut cut = 0;
        for connection in connections.iter().filter(|c| !c.is_dead()) {
            connection.kill();
            cut += 1;
        }
        self.shared.count(|counts| counts.resets += cut);
    }

    /// The server vanishes: the port is closed (connecting is refused) and
    /// every open connection is cut. Returns once the port is closed.
    pub fn go_down(&self) {
        self.change(|knobs| knobs.refuse = true);
        self.wait_listening(false);
        self.reset_connections();
    }

    /// The port is open again (the same port). Returns once it is.
    pub fn come_back(&self) {
        self.change(|knobs| knobs.refuse = false);
        self.wait_listening(true);
    }

    fn wait_listening(&self, listening: bool) {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut knobs = self.shared.knobs();
        while knobs.listening != listening {
            assert!(
                Instant::now() < deadline,
                "proxy: port {} did not {}",
                self.shared.port,
                if listening { "reopen" } else { "close" }
            );
            knobs = self
                .shared
                .changed
                .wait_timeout(knobs, SLICE)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.shared.changed.notify_all();
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
        // The acceptor is gone: no connection can be added any more.
        for connection in self.shared.connections.lock().unwrap().iter() {
            connection.kill();
        }
        self.shared.changed.notify_all();
        let pumps: Vec<JoinHandle<()>> = self.shared.pumps.lock().unwrap().drain(..).collect();
        for pump in pumps {
            let _ = pump.join();
        }
    }
}

/// Accepts clients (polling, so that it can close and reopen its port and
/// notice the stop flag) and starts a pair of pumps for each.
fn accept_loop(shared: &Arc<Shared>, mut listener: Option<TcpListener>) {
    if let Some(listener) = &listener {
        listener
            .set_nonblocking(true)
            .expect("non-blocking listener");
    }
    let mut number = 0u64;
    while !shared.stopping() {
        let refuse = shared.knobs().refuse;
        if refuse && listener.is_some() {
            listener = None;
            set_listening(shared, false);
        } else if !refuse && listener.is_none() {
            if let Ok(reopened) = TcpListener::bind(("127.0.0.1", shared.port)) {
                reopened
                    .set_nonblocking(true)
                    .expect("non-blocking listener");
                listener = Some(reopened);
                set_listening(shared, true);
            }
        }
        let Some(open) = &listener else {
            std::thread::sleep(Duration::from_millis(2));
            continue;
        };
        match open.accept() {
            Ok((client, _)) => {
                start_connection(shared, client, number);
                number += 1;
            }
            Err(_) => std::thread::sleep(Duration::from_millis(2)),
        }
    }
}

fn set_listening(shared: &Shared, listening: bool) {
    shared.knobs().listening = listening;
    shared.changed.notify_all();
}

fn start_connection(shared: &Arc<Shared>, client: TcpStream, number: u64) {
    let upstream = shared
        .upstream
        .to_socket_addrs()
        .ok()
        .and_then(|mut addresses| addresses.next())
        .and_then(|address| TcpStream::connect_timeout(&address, Duration::from_secs(5)).ok());
    let Some(server) = upstream else {
        // The server is not there: the client sees its connection cut.
        set_linger_zero(&client);
        return;
    };
    let _ = client.set_nonblocking(false);
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let clones = (
        client.try_clone(),
        client.try_clone(),
        server.try_clone(),
        server.try_clone(),
    );
    let (Ok(client_reader), Ok(client_writer), Ok(server_reader), Ok(server_writer)) = clones
    else {
        return;
    };
    let connection = Arc::new(Connection {
        client,
        server,
        close_at: Mutex::new(None),
        dead: AtomicBool::new(false),
        pumps_running: AtomicUsize::new(2),
    });
    {
        // Connections that are over release their sockets here.
        let mut connections = shared.connections.lock().unwrap();
        connections.retain(|connection| !connection.is_dead());
        connections.push(Arc::clone(&connection));
    }
    shared.count(|counts| counts.connections += 1);
    let port = shared.port;
    let mut pumps = shared.pumps.lock().unwrap();
    // Join the pumps of connections that are over.
    let (finished, running): (Vec<_>, Vec<_>) =
        pumps.drain(..).partition(|pump| pump.is_finished());
    *pumps = running;
    for pump in finished {
        let _ = pump.join();
    }
    let (for_requests, connection_for_requests) = (Arc::clone(shared), Arc::clone(&connection));
    pumps.push(
        std::thread::Builder::new()
            .name(format!("proxy-{port}-req-{number}"))
            .spawn(move || {
                pump_requests(
                    &for_requests,
                    &connection_for_requests,
                    client_reader,
                    server_writer,
                );
                connection_for_requests.pump_ended();
            })
            .expect("proxy thread starts"),
    );
    let (for_answers, connection_for_answers) = (Arc::clone(shared), connection);
    pumps.push(
        std::thread::Builder::new()
            .name(format!("proxy-{port}-ans-{number}"))
            .spawn(move || {
                pump_answers(
                    &for_answers,
                    &connection_for_answers,
                    server_reader,
                    client_writer,
                );
                connection_for_answers.pump_ended();
            })
            .expect("proxy thread starts"),
    );
}

/// Client to server: request heads and bodies, streamed.
fn pump_requests(shared: &Shared, connection: &Connection, mut from: TcpStream, mut to: TcpStream) {
    let mut framer = Framer::default();
    let mut pacer = Pacer::default();
    let mut buffer = vec![0u8; PIECE];
    let mut requests_here = 0u64;
    let mut dropping = false;
    let ended = loop {
        let read = match from.read(&mut buffer) {
            Ok(0) => break Ok(()),
            Ok(read) => read,
            Err(error) => break Err(error),
        };
        let mut forward = |piece: Piece<'_>| -> io::Result<()> {
            match piece {
                Piece::Head {
                    bytes, body_len, ..
                } => {
                    requests_here += 1;
                    shared.count(|counts| counts.requests_received += 1);
                    dropping = request_is_dropped(shared, connection, requests_here);
                    if dropping {
                        shared.count(|counts| counts.requests_dropped += 1);
                        return Ok(());
                    }
                    let delay = shared.knobs().delay;
                    shared.sleep(connection, delay)?;
                    let counted: &dyn Fn(&mut Counts) = if body_len == 0 {
                        &|counts| counts.requests_forwarded += 1
                    } else {
                        &|_| {}
                    };
                    write_faulty(
                        shared,
                        connection,
                        Direction::Requests,
                        &mut to,
                        &bytes,
                        &mut pacer,
                        counted,
                    )
                }
                Piece::Body { bytes, last } if !dropping => {
                    let counted: &dyn Fn(&mut Counts) = if last {
                        &|counts| counts.requests_forwarded += 1
                    } else {
                        &|_| {}
                    };
                    write_faulty(
                        shared,
                        connection,
                        Direction::Requests,
                        &mut to,
                        bytes,
                        &mut pacer,
                        counted,
                    )
                }
                Piece::Body { .. } | Piece::End => Ok(()),
                Piece::Raw(bytes) => write_faulty(
                    shared,
                    connection,
                    Direction::Requests,
                    &mut to,
                    &bytes,
                    &mut pacer,
                    &|_| {},
                ),
            }
        };
        if let Err(error) = framer.feed(&buffer[..read], &mut forward) {
            break Err(error);
        }
    };
    match ended {
        // The client is done sending: the server may still answer.
        Ok(()) => {
            let _ = to.shutdown(Shutdown::Write);
        }
        Err(_) => connection.kill(),
    }
}

/// Whether request number `number` of this connection is to be discarded;
/// claims a close-after policy when this request reaches its count.
fn request_is_dropped(shared: &Shared, connection: &Connection, number: u64) -> bool {
    let mut close_at = connection.close_at.lock().unwrap();
    if let Some((limit, _)) = *close_at {
        return number > limit;
    }
    let mut knobs = shared.knobs();
    if let Some(policy) = knobs.close_after {
        if policy.answers == number {
            *close_at = Some((number, policy.polite));
            if policy.once {
                knobs.close_after = None;
            }
        }
    }
    false
}

/// Server to client: whole answers, with the answer faults.
fn pump_answers(shared: &Shared, connection: &Connection, mut from: TcpStream, mut to: TcpStream) {
    let mut framer = Framer::default();
    let mut pacer = Pacer::default();
    let mut buffer = vec![0u8; PIECE];
    let mut answer = Vec::new();
    let mut answer_is_interim = false;
    let mut answers_here = 0u64;
    let mut closed = false;
    let ended = loop {
        let read = match from.read(&mut buffer) {
            Ok(0) => break Ok(()),
            Ok(read) => read,
            Err(error) => break Err(error),
        };
        let mut forward = |piece: Piece<'_>| -> io::Result<()> {
            match piece {
                Piece::Head { bytes, interim, .. } => {
                    answer = bytes;
                    answer_is_interim = interim;
                    Ok(())
                }
                Piece::Body { bytes, .. } => {
                    answer.extend_from_slice(bytes);
                    Ok(())
                }
                Piece::End if answer_is_interim => write_faulty(
                    shared,
                    connection,
                    Direction::Answers,
                    &mut to,
                    &answer,
                    &mut pacer,
                    &|_| {},
                ),
                Piece::End => {
                    answers_here += 1;
                    let whole = std::mem::take(&mut answer);
                    forward_answer(shared, connection, &mut to, whole, answers_here, &mut pacer)?;
                    if closed_after(connection, answers_here).is_some() {
                        closed = true;
                        return Err(io::Error::other("closed after N answers"));
                    }
                    Ok(())
                }
                Piece::Raw(bytes) => write_faulty(
                    shared,
                    connection,
                    Direction::Answers,
                    &mut to,
                    &bytes,
                    &mut pacer,
                    &|_| {},
                ),
            }
        };
        if let Err(error) = framer.feed(&buffer[..read], &mut forward) {
            break Err(error);
        }
    };
    if closed {
        // As nginx: the last answer is out; end our side and let the request
        // pump read and discard whatever the client still sends.
        // Counted first, so that a client that sees the end sees the count.
        shared.count(|counts| counts.closes += 1);
        let _ = to.shutdown(Shutdown::Write);
        let _ = connection.server.shutdown(Shutdown::Both);
        return;
    }
    match ended {
        Ok(()) => {
            let _ = to.shutdown(Shutdown::Write);
        }
        Err(_) => connection.kill(),
    }
}

/// `Some(polite)` when this connection closes after answer `number`.
fn closed_after(connection: &Connection, number: u64) -> Option<bool> {
    match *connection.close_at.lock().unwrap() {
        Some((limit, polite)) if limit == number => Some(polite),
        _ => None,
    }
}

fn forward_answer(
    shared: &Shared,
    connection: &Connection,
    to: &mut TcpStream,
    mut answer: Vec<u8>,
    number_here: u64,
    pacer: &mut Pacer,
) -> io::Result<()> {
    let (delay, garble, duplicate) = {
        let mut knobs = shared.knobs();
        knobs.counts.answers_received += 1;
        let number = knobs.counts.answers_received;
        (
            knobs.delay,
            knobs.garble.remove(&number),
            knobs.duplicate.remove(&number),
        )
    };
    shared.changed.notify_all();
    if closed_after(connection, number_here) == Some(true) {
        answer = with_connection_close(&answer);
    }
    if garble {
        answer = GARBAGE.to_vec();
    }
    shared.sleep(connection, delay)?;
    // Counted as the answer's last bytes go out, before the client can see them.
    let counted = |counts: &mut Counts| {
        counts.answers_forwarded += 1;
        counts.answers_garbled += u64::from(garble);
        counts.answers_duplicated += u64::from(duplicate);
    };
    write_faulty(
        shared,
        connection,
        Direction::Answers,
        to,
        &answer,
        pacer,
        &counted,
    )?;
    if duplicate {
        write_faulty(
            shared,
            connection,
            Direction::Answers,
            to,
            &answer,
            pacer,
            &|_| {},
        )?;
    }
    Ok(())
}

/// The answer with its `Connection` header replaced by `Connection: close`.
fn with_connection_close(answer: &[u8]) -> Vec<u8> {
    let head_end = find_head_end(answer).unwrap_or(answer.len());
    let head = String::from_utf8_lossy(&answer[..head_end]);
    let mut lines: Vec<&str> = head
        .split("\r\n")
        .filter(|line| {
            !line.is_empty()
                && !line
                    .split(':')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .eq_ignore_ascii_case("connection")
        })
        .collect();
    lines.push("Connection: close");
    let mut rewritten = lines.join("\r\n").into_bytes();
    rewritten.extend_from_slice(b"\r\n\r\n");
    rewritten.extend_from_slice(&answer[head_end..]);
    rewritten
}

/// Writes `bytes` to `to` as the knobs say: waits while the direction is
/// stalled, paces to the bandwidth, cuts the connection after the armed
/// number of bytes. The bytes, and `counted` with the last piece, are counted
/// just before they are written, so that whoever sees them sees the counts.
fn write_faulty(
    shared: &Shared,
    connection: &Connection,
    direction: Direction,
    to: &mut TcpStream,
    bytes: &[u8],
    pacer: &mut Pacer,
    counted: &dyn Fn(&mut Counts),
) -> io::Result<()> {
    let d = direction.index();
    let mut rest = bytes;
    while !rest.is_empty() {
        let (length, rate, reset) = {
            let mut knobs = shared.knobs();
            while knobs.stalled[d] {
                if shared.stopping() || connection.is_dead() {
                    return Err(io::Error::other("proxy stopped"));
                }
                knobs = shared
                    .changed
                    .wait_timeout(knobs, SLICE)
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
            }
            let rate = knobs.bandwidth[d];
            let mut length = rest.len().min(PIECE);
            if let Some(rate) = rate {
                length = length.min((rate / 50).max(1) as usize);
            }
            let mut reset = false;
            if let Some(left) = knobs.reset_after[d] {
                if length as u64 >= left {
                    length = left as usize;
                    reset = true;
                    knobs.reset_after[d] = None;
                } else {
                    knobs.reset_after[d] = Some(left - length as u64);
                }
            }
            if connection.is_dead() {
                return Err(io::Error::other("connection cut"));
            }
            knobs.counts.bytes[d] += length as u64;
            if length == rest.len() {
                counted(&mut knobs.counts);
            }
            if reset {
                knobs.counts.resets += 1;
            }
            (length, rate, reset)
        };
        shared.changed.notify_all();
        to.write_all(&rest[..length])?;
        if reset {
            connection.kill();
            return Err(io::Error::other("reset after N bytes"));
        }
        if let Some(rate) = rate {
            pacer.pace(shared, connection, length, rate)?;
        }
        rest = &rest[length..];
    }
    Ok(())
}

/// Keeps one direction of one connection at a bandwidth.
#[derive(Default)]
struct Pacer {
    next: Option<Instant>,
}

impl Pacer {
    fn pace(
        &mut self,
        shared: &Shared,
        connection: &Connection,
        bytes: usize,
        rate: u64,
    ) -> io::Result<()> {
        let now = Instant::now();
        let start = self.next.filter(|next| *next > now).unwrap_or(now);
        let next = start + Duration::from_secs_f64(bytes as f64 / rate.max(1) as f64);
        self.next = Some(next);
        shared.sleep(connection, next.saturating_duration_since(now))
    }
}

#[cfg(unix)]
fn set_linger_zero(socket: &TcpStream) {
    use std::os::fd::AsRawFd;
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: a plain setsockopt on a socket we own, with a correctly sized value.
    unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
}

#[cfg(windows)]
fn set_linger_zero(socket: &TcpStream) {
    use std::os::windows::io::AsRawSocket;
    use windows_sys::Win32::Networking::WinSock::{setsockopt, LINGER, SOL_SOCKET, SO_LINGER};
    let linger = LINGER {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: a plain setsockopt on a socket we own, with a correctly sized value.
    unsafe {
        setsockopt(
            socket.as_raw_socket() as usize,
            SOL_SOCKET,
            SO_LINGER,
            (&linger as *const LINGER).cast(),
            std::mem::size_of::<LINGER>() as i32,
        );
    }
}

/// A piece of an HTTP/1.1 byte stream.
enum Piece<'a> {
    /// A whole message head; `interim` for a `1xx` answer.
    Head {
        bytes: Vec<u8>,
        body_len: u64,
        interim: bool,
    },
    /// Body bytes; `last` when they end the body.
    Body { bytes: &'a [u8], last: bool },
    /// The message (head and body) is complete.
    End,
    /// Bytes that are not HTTP: everything after them is passed through as is.
    Raw(Cow<'a, [u8]>),
}

/// Splits a byte stream into message heads and bodies (`Content-Length` only).
#[derive(Default)]
struct Framer {
    head: Vec<u8>,
    body_left: u64,
    in_body: bool,
    raw: bool,
}

/// A head longer than this is taken for garbage.
const MAX_HEAD: usize = 64 * 1024;

impl Framer {
    fn feed<'a>(
        &mut self,
        mut input: &'a [u8],
        out: &mut dyn FnMut(Piece<'a>) -> io::Result<()>,
    ) -> io::Result<()> {
        while !input.is_empty() {
            if self.raw {
                return out(Piece::Raw(Cow::Borrowed(input)));
            }
            if self.in_body {
                let take = input.len().min(self.body_left as usize);
                self.body_left -= take as u64;
                out(Piece::Body {
                    bytes: &input[..take],
                    last: self.body_left == 0,
                })?;
                input = &input[take..];
                if self.body_left == 0 {
                    self.in_body = false;
                    out(Piece::End)?;
                }
                continue;
            }
            let before = self.head.len();
            self.head.extend_from_slice(input);
            let Some(end) = find_head_end(&self.head) else {
                if self.head.len() > MAX_HEAD {
                    self.raw = true;
                    return out(Piece::Raw(Cow::Owned(std::mem::take(&mut self.head))));
                }
                return Ok(());
            };
            input = &input[end - before..];
            let mut head = std::mem::take(&mut self.head);
            head.truncate(end);
            let Some((length, interim)) = message_length(&head) else {
                self.raw = true;
                out(Piece::Raw(Cow::Owned(head)))?;
                continue;
            };
            out(Piece::Head {
                bytes: head,
                body_len: length,
                interim,
            })?;
            if length == 0 {
                out(Piece::End)?;
            } else {
                self.in_body = true;
                self.body_left = length;
            }
        }
        Ok(())
    }
}

/// The index just past the blank line that ends a head.
fn find_head_end(bytes: &[u8]) -> Option<usize> {
    bytes
        .windows(4)
        .position(|window| window == b"\r\n\r\n")
        .map(|at| at + 4)
}

/// The body length of a complete head, and whether it is a `1xx` answer;
/// `None` when the head is not HTTP.
fn message_length(head: &[u8]) -> Option<(u64, bool)> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    if head.starts_with(b"HTTP/") {
        let mut response = httparse::Response::new(&mut headers);
        if !matches!(response.parse(head), Ok(httparse::Status::Complete(_))) {
            return None;
        }
        let interim = (100..200).contains(&response.code?);
        Some((content_length(response.headers), interim))
    } else {
        let mut request = httparse::Request::new(&mut headers);
        if !matches!(request.parse(head), Ok(httparse::Status::Complete(_))) {
            return None;
        }
        Some((content_length(request.headers), false))
    }
}

fn content_length(headers: &[httparse::Header<'_>]) -> u64 {
    headers
        .iter()
        .find(|header| header.name.eq_ignore_ascii_case("content-length"))
        .and_then(|header| std::str::from_utf8(header.value).ok()?.trim().parse().ok())
        .unwrap_or(0)
}
