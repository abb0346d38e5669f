//! One server: its bounded queue, its connection, its sender and receiver threads.
//!
//! This is the only module that touches client sockets. Data flows:
//!
//! ```text
//! put ─► queue ─► sender thread: filter, PUT head + body ─► socket ─► server
//!                       │ (moves the file to in_flight before writing)
//! outcome ◄─ receiver thread: answer parsed, matched to in_flight front ◄─ socket
//! ```
//!
//! A file holds its place in the queue limits (files and bytes) from `put` until
//! its outcome, so memory stays bounded by the limits however slow the server.
//! When the connection fails, every file queued or waiting for an answer fails
//! with the reason; none is dropped silently. `close` sends what is queued, waits
//! for every answer, and joins both threads.

use std::collections::VecDeque;
use std::io::{BufWriter, Write};
use std::net::{Shutdown, SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::filter::{FileInfo, SharedFilter};
use crate::outcome::{Outcome, OutcomeResult, Reporter};
use crate::protocol::{self, ReadError, ResponseReader};
use crate::{Error, StreamerOptions};

/// Socket write buffer: small requests are batched into one write.
const WRITE_BUFFER: usize = 256 * 1024;

/// One file on its way.
pub(crate) struct Job {
    pub name: Box<str>,
    pub index: Option<i64>,
    pub data: Bytes,
    /// The end-of-stream sentinel: sent with `Connection: close`, nothing after it.
    pub last: bool,
}

impl Job {
    fn len(&self) -> u64 {
        self.data.len() as u64
    }
}

/// The queue limits of one stream.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub max_files: usize,
    pub max_bytes: u64,
}

#[derive(Default)]
struct State {
    queue: VecDeque<Job>,
    queue_bytes: u64,
    in_flight: VecDeque<Job>,
    /// Files and bytes queued or in flight: what the limits bound.
    held_files: usize,
    held_bytes: u64,
    /// No more puts; the sender finishes what is queued.
    closing: bool,
    /// The sender has sent all and seen every answer; the socket is being shut.
    finished: bool,
    /// The connection failed, with this reason.
    dead: Option<String>,
}

impl State {
    fn release(&mut self, job: &Job) {
        self.held_files -= 1;
        self.held_bytes -= job.len();
    }
}

struct Shared {
    server: String,
    server_index: usize,
    limits: Limits,
    filter: Option<SharedFilter>,
    reporter: Reporter,
    socket: TcpStream,
    state: Mutex<State>,
    /// Signalled when a file is queued, or on close or failure (the sender waits).
    work: Condvar,
    /// Signalled when a file gets its outcome, or on close or failure
    /// (producers waiting for room, `flush` and the closing sender wait).
    progress: Condvar,
}

/// A connection to one PYME data server.
///
/// `put` may be called from several threads at once.
pub struct Stream {
    shared: Arc<Shared>,
    sender: Option<JoinHandle<()>>,
    put_timeout: Option<Duration>,
}

impl Stream {
    /// Connects to `server` (`host:port`), alone, with the options' queue limits,
    /// filter, completion callback and timeouts. The distribution is not used.
    pub fn connect(server: &str, options: &StreamerOptions) -> Result<Stream, Error> {
        let reporter = Reporter {
            counters: Arc::default(),
            completion: options.completion.clone(),
        };
        Stream::open(server, 0, options, reporter)
    }

    pub(crate) fn open(
        server: &str,
        server_index: usize,
        options: &StreamerOptions,
        reporter: Reporter,
    ) -> Result<Stream, Error> {
        let socket = connect(server, options.connect_timeout)?;
        let connect_error = |error: std::io::Error| Error::Connect {
            server: server.to_owned(),
            detail: error.to_string(),
        };
        socket.set_nodelay(true).map_err(connect_error)?;
        socket
            .set_read_timeout(Some(options.response_timeout))
            .map_err(connect_error)?;
        socket
            .set_write_timeout(Some(options.response_timeout))
            .map_err(connect_error)?;
        let receive_socket = socket.try_clone().map_err(connect_error)?;
        let send_socket = socket.try_clone().map_err(connect_error)?;
        let shared = Arc::new(Shared {
            server: server.to_owned(),
            server_index,
            limits: Limits {
                max_files: options.queue_max_files.max(1),
                max_bytes: options.queue_max_bytes,
            },
            filter: options.filter.clone(),
            reporter,
            socket,
            state: Mutex::new(State::default()),
            work: Condvar::new(),
            progress: Condvar::new(),
        });
        let receiver = spawn(
            format!("pyme-recv-{server_index}"),
            Arc::clone(&shared),
            move |shared| receive_loop(&shared, receive_socket),
        )?;
        let sender = spawn(format!("pyme-send-{server_index}"), Arc::clone(&shared), move |shared| {
            send_loop(&shared, send_socket);
            finish(&shared);
            let _ = receiver.join();
        })?;
        Ok(Stream {
            shared,
            sender: Some(sender),
            put_timeout: options.put_timeout,
        })
    }

    /// The server, as `host:port`.
    pub fn server(&self) -> &str {
        &self.shared.server
    }

    /// Queues a copy of `data` under `name`. See [`Stream::put_bytes`].
    pub fn put(&self, name: &str, data: &[u8]) -> Result<(), Error> {
        self.put_bytes(name, Bytes::copy_from_slice(data), None)
    }

    /// Queues `data` under `name` without copying it. Blocks while the queue is
    /// full, up to the put timeout. `Ok`: the file will get exactly one outcome.
    /// `Err`: nothing was queued and no outcome will follow.
    pub fn put_bytes(&self, name: &str, data: Bytes, index: Option<i64>) -> Result<(), Error> {
        check_name(name)?;
        let job = Job {
            name: name.into(),
            index,
            data,
            last: false,
        };
        self.enqueue(job, self.put_timeout.map(|timeout| Instant::now() + timeout))
    }

    /// Sends the end-of-stream sentinel (an empty `PUT /<name>` with
    /// `Connection: close`) after everything queued, then closes as [`Stream::close`].
    pub fn finalize(mut self, name: &str) -> Result<crate::Stats, Error> {
        check_name(name)?;
        let job = Job {
            name: name.into(),
            index: None,
            data: Bytes::new(),
            last: true,
        };
        self.enqueue(job, None)?;
        Ok(self.close_and_join())
    }

    /// Sends everything queued, waits for every answer, joins the threads and
    /// returns the statistics.
    pub fn close(mut self) -> crate::Stats {
        self.close_and_join()
    }

    pub(crate) fn enqueue(&self, job: Job, deadline: Option<Instant>) -> Result<(), Error> {
        let shared = &self.shared;
        let mut state = shared.lock();
        loop {
            if state.closing {
                return Err(Error::Closed);
            }
            if let Some(reason) = &state.dead {
                return Err(Error::ServerDown {
                    server: shared.server.clone(),
                    detail: reason.clone(),
                });
            }
            if shared.has_room(&state, job.len()) {
                break;
            }
            state = match deadline {
                None => shared.progress.wait(state).unwrap_or_else(|e| e.into_inner()),
                Some(deadline) => {
                    let now = Instant::now();
                    if now >= deadline {
                        return Err(Error::QueueFull {
                            server: shared.server.clone(),
                            files: state.held_files,
                            bytes: state.held_bytes,
                        });
                    }
                    shared
                        .progress
                        .wait_timeout(state, deadline - now)
                        .unwrap_or_else(|e| e.into_inner())
                        .0
                }
            };
        }
        shared.reporter.counters.queued(job.len());
        state.held_files += 1;
        state.held_bytes += job.len();
        state.queue_bytes += job.len();
        if job.last {
            state.closing = true;
        }
        state.queue.push_back(job);
        drop(state);
        shared.work.notify_one();
        Ok(())
    }

    /// Waits until every accepted file has its outcome, or the deadline passes
    /// (then returns how many are still pending).
    pub(crate) fn wait_idle(&self, deadline: Option<Instant>) -> Result<(), u64> {
        let shared = &self.shared;
        let mut state = shared.lock();
        while state.held_files > 0 {
            state = match deadline {
                None => shared.progress.wait(state).unwrap_or_else(|e| e.into_inner()),
                Some(deadline) => {
                    let now = Instant::now();
                    if now >= deadline {
                        return Err(state.held_files as u64);
                    }
                    shared
                        .progress
                        .wait_timeout(state, deadline - now)
                        .unwrap_or_else(|e| e.into_inner())
                        .0
                }
            };
        }
        Ok(())
    }

    /// Files and bytes waiting to be sent, and files waiting for their answer.
    pub(crate) fn depth(&self) -> (u64, u64, u64) {
        let state = self.shared.lock();
        (
            state.queue.len() as u64,
            state.queue_bytes,
            state.in_flight.len() as u64,
        )
    }

    pub(crate) fn stats(&self) -> crate::Stats {
        let (queue_files, queue_bytes, in_flight_files) = self.depth();
        crate::Stats {
            queue_files,
            queue_bytes,
            in_flight_files,
            ..self.shared.reporter.counters.snapshot()
        }
    }

    /// Stops taking puts and lets the sender finish; does not wait.
    pub(crate) fn start_close(&self) {
        self.shared.lock().closing = true;
        self.shared.work.notify_all();
        self.shared.progress.notify_all();
    }

    fn close_and_join(&mut self) -> crate::Stats {
        self.start_close();
        self.join();
        self.stats()
    }

    pub(crate) fn join(&mut self) {
        if let Some(sender) = self.sender.take() {
            let _ = sender.join();
        }
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        self.start_close();
        self.join();
    }
}

pub(crate) fn check_name(name: &str) -> Result<(), Error> {
    crate::name::validate(name).map_err(|reason| Error::InvalidName {
        name: name.to_owned(),
        reason,
    })
}

fn connect(server: &str, timeout: Duration) -> Result<TcpStream, Error> {
    let error = |detail: String| Error::Connect {
        server: server.to_owned(),
        detail,
    };
    let addresses: Vec<SocketAddr> = server
        .to_socket_addrs()
        .map_err(|e| error(format!("cannot resolve: {e}")))?
        .collect();
    let mut last_error = String::from("no address");
    for address in addresses {
        match TcpStream::connect_timeout(&address, timeout) {
            Ok(socket) => return Ok(socket),
            Err(e) => last_error = format!("{address}: {e}"),
        }
    }
    Err(error(last_error))
}

fn spawn(
    name: String,
    shared: Arc<Shared>,
    body: impl FnOnce(Arc<Shared>) + Send + 'static,
) -> Result<JoinHandle<()>, Error> {
    let server = shared.server.clone();
    std::thread::Builder::new()
        .name(name)
        .spawn(move || body(shared))
        .map_err(|e| Error::Connect {
            server,
            detail: format!("cannot start a thread: {e}"),
        })
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn has_room(&self, state: &State, bytes: u64) -> bool {
        // A file larger than the byte limit still goes through, alone.
        state.held_files == 0
            || (state.held_files < self.limits.max_files
                && state.held_bytes + bytes <= self.limits.max_bytes)
    }

    fn report(&self, job: &Job, result: OutcomeResult<'_>) {
        self.reporter.report(&Outcome {
            name: &job.name,
            server: self.server_index,
            bytes: job.len(),
            result,
        });
    }

    /// The connection is unusable: every file queued or waiting for its answer
    /// fails with `reason`. The first caller wins; later ones do nothing.
    fn fail_connection(&self, reason: String) {
        let mut guard = self.lock();
        if guard.dead.is_some() || guard.finished {
            return;
        }
        guard.dead = Some(reason.clone());
        let state = &mut *guard;
        let lost: Vec<Job> = state.in_flight.drain(..).chain(state.queue.drain(..)).collect();
        state.queue_bytes = 0;
        drop(guard);
        let _ = self.socket.shutdown(Shutdown::Both);
        self.work.notify_all();
        let error = Error::ConnectionLost {
            server: self.server.clone(),
            detail: reason,
        };
        for job in &lost {
            self.report(job, OutcomeResult::Failed(&error));
            self.lock().release(job);
            self.progress.notify_all();
        }
    }
}

/// The sender: takes files from the queue, filters them and writes the
/// requests back to back. It never waits for an answer before the next request.
fn send_loop(shared: &Shared, socket: TcpStream) {
    let mut wire = BufWriter::with_capacity(WRITE_BUFFER, socket);
    let mut head = Vec::with_capacity(256);
    let mut filtered = Vec::new();
    let content_encoding = shared.filter.as_ref().and_then(|f| f.content_encoding());
    loop {
        let Some(job) = next_job(shared, &mut wire) else {
            return;
        };
        let data = job.data.clone();
        let body: &[u8] = match &shared.filter {
            None => &data,
            Some(filter) => {
                filtered.clear();
                let file = FileInfo {
                    name: &job.name,
                    index: job.index,
                };
                if let Err(error) = filter.apply(&file, &data, &mut filtered) {
                    shared.report(&job, OutcomeResult::Failed(&Error::Filter(error)));
                    shared.lock().release(&job);
                    shared.progress.notify_all();
                    continue;
                }
                &filtered
            }
        };
        head.clear();
        protocol::write_put_head(&mut head, &job.name, body.len() as u64, content_encoding, job.last);
        let last = job.last;
        let queue_now_empty = {
            let mut state = shared.lock();
            if state.dead.is_some() {
                // The connection failed while we filtered: this file fails too.
                drop(state);
                fail_job(shared, &job);
                return;
            }
            state.in_flight.push_back(job);
            state.queue.is_empty()
        };
        let written = wire
            .write_all(&head)
            .and_then(|()| wire.write_all(body))
            .and_then(|()| if queue_now_empty || last { wire.flush() } else { Ok(()) });
        if let Err(error) = written {
            shared.fail_connection(format!("sending failed: {error}"));
            return;
        }
        shared.reporter.counters.sent(body.len() as u64);
        if last {
            return;
        }
    }
}

fn fail_job(shared: &Shared, job: &Job) {
    let detail = shared.lock().dead.clone().unwrap_or_default();
    let error = Error::ConnectionLost {
        server: shared.server.clone(),
        detail,
    };
    shared.report(job, OutcomeResult::Failed(&error));
    shared.lock().release(job);
    shared.progress.notify_all();
}

/// The next file to send; `None` when closing with nothing left, or dead.
/// Flushes the socket buffer before it sleeps.
fn next_job(shared: &Shared, wire: &mut BufWriter<TcpStream>) -> Option<Job> {
    let mut state = shared.lock();
    loop {
        if state.dead.is_some() {
            return None;
        }
        if let Some(job) = state.queue.pop_front() {
            state.queue_bytes -= job.len();
            return Some(job);
        }
        if state.closing {
            drop(state);
            if let Err(error) = wire.flush() {
                shared.fail_connection(format!("sending failed: {error}"));
            }
            return None;
        }
        if !wire.buffer().is_empty() {
            // Requests still buffered (the last file may have failed in the
            // filter, skipping the flush after it): send them before sleeping.
            drop(state);
            if let Err(error) = wire.flush() {
                shared.fail_connection(format!("sending failed: {error}"));
                return None;
            }
            state = shared.lock();
            continue;
        }
        state = shared.work.wait(state).unwrap_or_else(|e| e.into_inner());
    }
}

/// After the sender is done: waits for the last answers, then shuts the socket
/// so the receiver ends.
fn finish(shared: &Shared) {
    let mut state = shared.lock();
    while !state.in_flight.is_empty() && state.dead.is_none() {
        state = shared.progress.wait(state).unwrap_or_else(|e| e.into_inner());
    }
    state.finished = true;
    drop(state);
    let _ = shared.socket.shutdown(Shutdown::Both);
}

/// The receiver: reads the answers in order and matches each to the oldest
/// file in flight.
fn receive_loop(shared: &Shared, socket: TcpStream) {
    let mut answers = ResponseReader::new(socket);
    loop {
        let response = match answers.read_response() {
            Ok(response) => response,
            Err(error) => {
                if !receive_error_is_fatal(shared, &error) {
                    continue;
                }
                shared.fail_connection(describe_read_error(shared, &error));
                return;
            }
        };
        let Some(job) = shared.lock().in_flight.pop_front() else {
            shared.fail_connection(format!("unexpected answer {} with no request waiting", response.status));
            return;
        };
        if (200..300).contains(&response.status) {
            shared.report(&job, OutcomeResult::Acknowledged { http_status: response.status });
        } else {
            let error = Error::Http {
                server: shared.server.clone(),
                status: response.status,
                detail: response.detail,
            };
            shared.report(&job, OutcomeResult::Failed(&error));
        }
        let mut state = shared.lock();
        state.release(&job);
        let more_expected = !state.in_flight.is_empty() || !state.queue.is_empty() || !state.closing;
        drop(state);
        shared.progress.notify_all();
        if response.close {
            if more_expected && !job.last {
                shared.fail_connection("the server closed the connection".into());
            }
            return;
        }
    }
}

/// A read error ends the receiver unless it is a read timeout with nothing in flight.
fn receive_error_is_fatal(shared: &Shared, error: &ReadError) -> bool {
    let state = shared.lock();
    if state.finished || state.dead.is_some() {
        return true;
    }
    match error {
        ReadError::Io(io) if is_timeout(io) => !state.in_flight.is_empty(),
        _ => true,
    }
}

fn describe_read_error(shared: &Shared, error: &ReadError) -> String {
    match error {
        ReadError::Io(io) if is_timeout(io) => format!(
            "no answer within the response timeout ({} files waiting)",
            shared.lock().in_flight.len()
        ),
        other => other.to_string(),
    }
}

fn is_timeout(error: &std::io::Error) -> bool {
    matches!(
        error.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    )
}
