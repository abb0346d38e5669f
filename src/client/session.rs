//! The main loop of a link: connect, send, receive, and hand the files of a
//! failed connection back to the cluster. This is where a reader starts.
//!
//! ```text
//! put ─► link queue ─► sender (link thread): filter, PUT head + body ─► socket ─► server
//!                       │ (moves the file to in_flight before writing)
//! outcome ◄─ receiver thread: answer parsed, matched to in_flight front ◄─ socket
//! ```
//!
//! Each server has a link thread (`pyme-link-N`) that runs one session per
//! connection: it is the sender, and it starts the receiver (`pyme-recv-N`) of
//! that connection. When the connection fails, the link thread hands every file
//! queued or waiting for its answer back to the cluster (which moves them to a
//! live server, or fails them with the reason), then reconnects with backoff.
//!
//! In scope: the only client code that touches sockets: connecting, writing
//! requests, reading answers, the response timeout ("silence").
//! Out of scope: the bytes of HTTP (see `protocol`), where a file goes (see
//! `cluster`), the link's queue and its limits (see `link`).

use std::io::{BufWriter, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::cluster::Cluster;
use super::job::Job;
use super::link::Link;
use super::resolve::resolve;
use super::server_state::ServerState;
use crate::filter::FileInfo;
use crate::outcome::{Counters, OutcomeResult};
use crate::protocol::{self, ReadError, ResponseReader};
use crate::{Error, StreamerOptions};

/// Socket write buffer: small requests are batched into one write.
const WRITE_BUFFER: usize = 256 * 1024;
/// A large body is written in pieces of this size, the link noting the
/// progress after each: an upload is "silent" only when no piece moves.
/// 1 MiB: as cheap as one write per file (8 MiB frames on loopback, 3 runs
/// each: 4.1-4.4 GB/s and 0.23-0.29 CPU s/GB, against 3.7-4.1 GB/s and
/// 0.23-0.25 for whole-file writes; 256 KiB pieces cost 3.1-3.5 GB/s and
/// 0.29-0.41 CPU s/GB), and fine enough: 0.2 s of a 40 Mbit/s link.
const PROGRESS_STEP: usize = 1 << 20;

/// A filter output buffer up to this size stays with the sender between
/// files (outside the memory budget: at most this much per server); a larger
/// one is freed once written.
const KEPT_OUTPUT: usize = 64 * 1024;

/// A sender whose queue runs dry looks at it every `sender_poll` interval up
/// to this many times before it sleeps until a put wakes it, so that `put`
/// costs no system call while files come close together (waking a sleeping
/// thread takes a futex call and an interrupt to the other core, tens of
/// microseconds on a busy machine). It polls only if its last idle spell was
/// no longer than that (files come close together): a link whose files come
/// further apart, or none at all, sleeps at once and costs nothing while idle.
pub(crate) const POLL_SPINS: u32 = 4;

/// What the sender remembers between files: whether its last idle spell was
/// short enough to poll through the next one (see [`POLL_SPINS`]).
#[derive(Default)]
struct Pace {
    last_idle_long: bool,
}

/// Connects to `server` (`host:port`) with the options' timeouts, resolving
/// its name again each time (a reconnect follows an address that changed).
pub(crate) fn connect(server: &str, options: &StreamerOptions) -> Result<TcpStream, Error> {
    let addresses = resolve(server).map_err(|error| Error::Connect {
        server: server.to_owned(),
        detail: error.to_string(),
    })?;
    connect_to(server, &addresses, options)
}

/// Connects to the first of `addresses` (those of `server`) that answers.
pub(crate) fn connect_to(
    server: &str,
    addresses: &[SocketAddr],
    options: &StreamerOptions,
) -> Result<TcpStream, Error> {
    let error = |detail: String| Error::Connect {
        server: server.to_owned(),
        detail,
    };
    let mut last_error = String::from("no address");
    for address in addresses {
        match TcpStream::connect_timeout(address, options.connect_timeout) {
            Ok(socket) => {
                let configured = socket
                    .set_nodelay(true)
                    .and_then(|()| socket.set_read_timeout(Some(read_tick(options))))
                    .and_then(|()| socket.set_write_timeout(Some(options.response_timeout)));
                return match configured {
                    Ok(()) => Ok(socket),
                    Err(e) => Err(error(e.to_string())),
                };
            }
            Err(e) => last_error = format!("{address}: {e}"),
        }
    }
    Err(error(last_error))
}

/// How long one read of answers may block: a quarter of the response
/// timeout, so that the receiver measures the silence itself, from the moment
/// an answer is due (see [`Silence`]), and not from whenever its read began.
fn read_tick(options: &StreamerOptions) -> Duration {
    (options.response_timeout / 4).max(Duration::from_millis(1))
}

/// Starts the link thread of server `index`, on an established connection,
/// or (`None`: the server could not be reached at start) to connect with the
/// backoff.
pub(crate) fn spawn_link(
    cluster: &Arc<Cluster>,
    index: usize,
    socket: Option<TcpStream>,
) -> Result<JoinHandle<()>, Error> {
    let cluster_for_thread = Arc::clone(cluster);
    std::thread::Builder::new()
        .name(format!("pyme-link-{index}"))
        .spawn(move || run_link(&cluster_for_thread, index, socket))
        .map_err(|e| Error::Connect {
            server: cluster.links[index].server.clone(),
            detail: format!("cannot start a thread: {e}"),
        })
}

/// The link thread: one session per connection, reconnecting after failures,
/// until the link is closed. This is the main loop of a link.
///
/// How a session ends decides what happens to its files:
/// - finished (the link closed, every answer in): the thread ends;
/// - ended by the server in order, after at least one answer (`Connection:
///   close`, as servers do after N requests, or a clean end between answers):
///   the link stays up, reconnects at once and sends the unanswered files
///   again, in order, on the new connection;
/// - ended by the server in order with no answer at all and nothing sent or
///   queued (an idle connection closed): the link stays up and reconnects
///   when files arrive (with files queued but none sent yet, once in a row);
/// - failed (reset, timeout, garbage, or an orderly end with no answer at all
///   otherwise): every file of the link goes back to the cluster (failover,
///   spill, or failure) and the link reconnects with backoff.
fn run_link(cluster: &Arc<Cluster>, index: usize, first: Option<TcpStream>) {
    crate::threads::yield_to_producers();
    run_sessions(cluster, index, first);
    // Closed: the link neither sends nor reconnects any more.
    cluster.links[index].cell.set_connection(ServerState::Down);
    cluster.report_state(index);
}

/// The sessions of a link, one after another, until it closes (see [`run_link`]).
fn run_sessions(cluster: &Arc<Cluster>, index: usize, first: Option<TcpStream>) {
    let link = &cluster.links[index];
    // A server that could not be reached at start is down from the first moment.
    cluster.report_state(index);
    let (first_delay, largest_delay) = cluster.options.reconnect_backoff;
    let mut delay = first_delay;
    // Sessions in a row the server ended in order, without any answer, while
    // files waited to be sent (see below).
    let mut answerless_ends = 0;
    let mut socket = first;
    loop {
        if let Some(connected) = socket.take() {
            match run_session(cluster, index, connected) {
                SessionEnd::Finished => {
                    fail_leftovers(cluster, index);
                    return;
                }
                SessionEnd::Failed {
                    reason,
                    answered,
                    by_server,
                } => {
                    if answered {
                        delay = first_delay;
                        answerless_ends = 0;
                    }
                    let (queued, _, in_flight) = link.depth();
                    match by_server {
                        Some(said_close) if answered => {
                            // A server that said `Connection: close` read
                            // nothing after that answer; after a bare end it may have.
                            link.requeue_unanswered(!said_close);
                            match connect(&link.server, &cluster.options) {
                                Ok(connected) => {
                                    Counters::add(&cluster.counters().reconnects);
                                    link.counters.reconnected();
                                    socket = Some(connected);
                                    continue;
                                }
                                Err(error) => {
                                    link.mark_down(format!("{reason}; {error}"));
                                    cluster.report_state(index);
                                }
                            }
                        }
                        // An idle connection the server closed (its keep-alive
                        // timeout): the link stays up and reconnects when files come.
                        Some(_) if in_flight == 0 && queued == 0 => answerless_ends = 0,
                        // Files waiting but none sent yet (the filter was busy):
                        // once may be a keep-alive close racing a put; twice in a
                        // row, the server closes every connection at once (a
                        // tunnel whose backend is gone), and reconnecting at
                        // once would go on for ever.
                        Some(_) if in_flight == 0 && answerless_ends == 0 => answerless_ends = 1,
                        Some(_) => link.mark_down(reason.clone()),
                        None => {}
                    }
                    cluster.report_state(index);
                    // Not `is_up`: a link closing with files still queued (the
                    // end-of-stream sentinel of `finalize`) keeps them.
                    if !link.counts_as_up() {
                        hand_on_files(cluster, index, &reason);
                    }
                }
            }
        }
        if wait_or_close(link, jittered(delay)) {
            // Closing while down: every file already went elsewhere or failed.
            // (Closing while up but idle: nothing is queued, see `Streamer::close`.)
            fail_leftovers(cluster, index);
            return;
        }
        let withdrawn = {
            let state = link.lock();
            state.withdrawn.then(|| state.failure.clone())
        };
        if let Some(reason) = withdrawn {
            // Withdrawn while up between connections, files queued: no
            // session will send them, they move on; then it waits readmission.
            hand_on_files(cluster, index, &reason.unwrap_or_default());
            continue;
        }
        delay = (delay * 2).min(largest_delay);
        match connect(&link.server, &cluster.options) {
            Ok(connected) => {
                Counters::add(&cluster.counters().reconnects);
                link.counters.reconnected();
                socket = Some(connected);
            }
            Err(error) if link.counts_as_up() => {
                // It was up between connections: it is down now.
                let reason = error.to_string();
                link.mark_down(reason.clone());
                cluster.report_state(index);
                hand_on_files(cluster, index, &reason);
            }
            Err(_) => {
                link.cell.set_connection(ServerState::Down);
                cluster.report_state(index);
            }
        }
    }
}

enum SessionEnd {
    Finished,
    Failed {
        reason: String,
        answered: bool,
        /// The server ended the connection in order (see [`run_link`]);
        /// `Some(true)` when it said `Connection: close`.
        by_server: Option<bool>,
    },
}

/// Every file of a failed connection, released from this link. Files that
/// were written may have landed.
fn take_pending(link: &Link) -> Vec<Job> {
    let mut guard = link.lock();
    let state = &mut *guard;
    let mut lost: Vec<Job> = state.take_in_flight();
    for job in &mut lost {
        job.maybe_stored = true;
        job.interrupted += 1;
    }
    lost.extend(state.take_queue());
    state.held_files = 0;
    state.held_bytes = 0;
    drop(guard);
    link.progress.notify_all();
    lost
}

/// A link that went down hands every file it holds to the cluster: moved to
/// live servers, spilled, or failed with `reason`.
pub(super) fn hand_on_files(cluster: &Cluster, index: usize, reason: &str) {
    let lost = take_pending(&cluster.links[index]);
    cluster.reroute(index, lost, reason);
}

/// After the last session: a file still here (none should be: nothing is
/// queued behind the end-of-stream sentinel) gets its outcome all the same.
fn fail_leftovers(cluster: &Cluster, index: usize) {
    for job in take_pending(&cluster.links[index]) {
        cluster.finish(&job, index, OutcomeResult::Failed(&Error::Closed));
    }
}

/// Sleeps `delay` unless the link closes first (true) or, while it is still
/// up between connections, files arrive for it (false: connect now). Files
/// queued on a link still up are sent even when it is closing: `finalize`
/// queues its sentinel and marks the link closing at once. A link withdrawn
/// by discovery sleeps until it is readmitted (false, at once) or closes.
fn wait_or_close(link: &Link, delay: Duration) -> bool {
    let deadline = Instant::now() + delay;
    let mut state = link.lock();
    let mut was_withdrawn = false;
    loop {
        if state.up && !state.queue.is_empty() {
            return false;
        }
        if state.closing {
            return true;
        }
        if state.withdrawn {
            if !state.queue.is_empty() {
                // Queued while it was up between connections: the caller
                // hands them on (see `run_sessions`).
                return false;
            }
            was_withdrawn = true;
            state = link.wait_work(state, None);
            continue;
        }
        if was_withdrawn {
            return false;
        }
        let now = Instant::now();
        if now >= deadline {
            return false;
        }
        state = link.wait_work(state, Some(deadline - now));
    }
}

fn jittered(delay: Duration) -> Duration {
    delay.mul_f64(0.75 + fastrand::f64() * 0.5)
}

/// One connection: this thread sends, a receiver thread reads the answers.
fn run_session(cluster: &Arc<Cluster>, index: usize, socket: TcpStream) -> SessionEnd {
    let link = &cluster.links[index];
    let clones = (socket.try_clone(), socket.try_clone());
    let (Ok(receive_socket), Ok(control_socket)) = clones else {
        return SessionEnd::Failed {
            reason: "cannot share the socket between threads".into(),
            answered: false,
            by_server: None,
        };
    };
    {
        let mut state = link.lock();
        if state.withdrawn {
            // Withdrawn while this connection was made: not used.
            return SessionEnd::Failed {
                reason: state.failure.clone().unwrap_or_default(),
                answered: false,
                by_server: None,
            };
        }
        state.up = true;
        link.cell.set_connection(ServerState::Up);
        state.failure = None;
        state.ended_by_server = None;
        state.finished = false;
        state.socket = Some(control_socket);
    }
    link.progress.notify_all();
    cluster.link_is_up();
    cluster.report_state(index);
    let receiver_cluster = Arc::clone(cluster);
    let receiver = std::thread::Builder::new()
        .name(format!("pyme-recv-{index}"))
        .spawn(move || receive_loop(&receiver_cluster, index, receive_socket));
    let answered = match receiver {
        Ok(receiver) => {
            let send_error = send_loop(cluster, index, socket);
            finish_session(link, send_error);
            receiver.join().unwrap_or(false)
        }
        Err(error) => {
            link.fail_session(format!("cannot start the receiver thread: {error}"));
            false
        }
    };
    let mut state = link.lock();
    state.socket = None;
    let by_server = state.ended_by_server;
    if by_server.is_none() {
        state.up = false;
        // Withdrawn by discovery: down, not reconnecting (see `wait_or_close`).
        link.cell.set_connection(match state.withdrawn {
            true => ServerState::Down,
            false => ServerState::Connecting,
        });
    }
    match state.failure.clone() {
        None => SessionEnd::Finished,
        Some(reason) => SessionEnd::Failed {
            reason,
            answered,
            by_server,
        },
    }
}

/// The sender: takes files from the queue, filters them and writes the
/// requests back to back. It never waits for an answer before the next request.
///
/// A write that fails is returned, not taken as the session's end: a server
/// that answered `Connection: close` and closed with our later requests
/// unread resets the connection, and the sender may see the reset before the
/// receiver reads that polite answer. The receiver decides (see [`finish_session`]).
fn send_loop(cluster: &Cluster, index: usize, socket: TcpStream) -> Option<String> {
    let link = &cluster.links[index];
    let filter = cluster.options.filter.as_deref();
    let content_encoding = filter.and_then(|f| f.content_encoding());
    let mut wire = BufWriter::with_capacity(WRITE_BUFFER, socket);
    let mut head = Vec::with_capacity(256);
    let mut filtered = Vec::new();
    let poll = cluster.options.sender_poll;
    let mut pace = Pace::default();
    loop {
        // A rest that ended while files flowed is reported here.
        cluster.report_state(index);
        let job = match next_job(cluster, index, &mut wire, poll, &mut pace) {
            Ok(Some(job)) => job,
            Ok(None) => return None,
            Err(error) => return Some(error),
        };
        let data = job.data.clone();
        // The filter's output holds room in the memory budget until it is written.
        let mut output_room = None;
        let body: &[u8] = match filter {
            None => &data,
            Some(filter) => {
                filtered.clear();
                let file = FileInfo {
                    name: &job.name,
                    index: job.index,
                };
                let mut room = cluster.buffers.reserve_output(job.len());
                let filtered_ok = apply_filter(filter, &file, &data, &mut filtered);
                room.grow((filtered.capacity() as u64).saturating_sub(job.len()));
                output_room = Some(room);
                if let Err(error) = filtered_ok {
                    link.release(&job);
                    cluster.finish(&job, index, OutcomeResult::Failed(&Error::Filter(error)));
                    shrink_output(&mut filtered);
                    continue;
                }
                &filtered
            }
        };
        head.clear();
        protocol::write_put_head(
            &mut head,
            &job.name,
            body.len() as u64,
            content_encoding,
            job.last,
        );
        let last = job.last;
        let flush_now = {
            let mut state = link.lock();
            if state.failure.is_some() {
                // Failed while we filtered: back in the queue, to be handed on.
                state.push_queue_front(job);
                return None;
            }
            // Counted before the answer can possibly come (see `Counters::snapshot`).
            cluster.counters().sent(body.len() as u64);
            link.counters.sent(body.len() as u64);
            if job.maybe_stored {
                Counters::add(&cluster.counters().resent_maybe_stored);
            }
            state.push_in_flight(job);
            state.queue.is_empty() || last
        };
        let written = wire
            .write_all(&head)
            .and_then(|()| write_body(link, &mut wire, body))
            .and_then(|()| {
                if flush_now {
                    wire.flush()?;
                    link.note_sent();
                }
                Ok(())
            });
        if output_room.is_some() {
            shrink_output(&mut filtered);
        }
        drop(output_room);
        if let Err(error) = written {
            return Some(format!("sending failed: {error}"));
        }
        if last {
            return None;
        }
    }
}

/// The filter's output buffer, once written: a large one is freed (its room
/// in the memory budget goes back with it); a small one is kept for the next
/// file, outside the budget.
fn shrink_output(filtered: &mut Vec<u8>) {
    if filtered.capacity() > KEPT_OUTPUT {
        *filtered = Vec::new();
    }
}

/// Writes a body; a large one in pieces, noting the progress after each, so
/// that the response timeout never counts a slow upload (see [`Silence`]).
fn write_body(link: &Link, wire: &mut BufWriter<TcpStream>, body: &[u8]) -> std::io::Result<()> {
    if body.len() <= PROGRESS_STEP {
        return wire.write_all(body);
    }
    for piece in body.chunks(PROGRESS_STEP) {
        wire.write_all(piece)?;
        link.note_sent();
    }
    Ok(())
}

/// Runs the filter; a panic in it fails that one file instead of taking the
/// link thread (and every file queued behind it) down.
fn apply_filter(
    filter: &dyn crate::Filter,
    file: &FileInfo<'_>,
    data: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), crate::FilterError> {
    let run = std::panic::AssertUnwindSafe(|| filter.apply(file, data, out));
    std::panic::catch_unwind(run).unwrap_or_else(|panic| {
        let message = panic
            .downcast_ref::<&str>()
            .map(|text| text.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        out.clear();
        Err(crate::FilterError(format!(
            "the filter panicked: {message}"
        )))
    })
}

/// The next file to send; `None` when closing with nothing left, or failed;
/// an error when flushing the socket buffer failed. Flushes the socket
/// buffer before it sleeps. An idle period starts and ends inside one call,
/// so the clock is read only when the queue runs dry.
fn next_job(
    cluster: &Cluster,
    index: usize,
    wire: &mut BufWriter<TcpStream>,
    poll: Option<Duration>,
    pace: &mut Pace,
) -> Result<Option<Job>, String> {
    let link = &cluster.links[index];
    let mut idle_since: Option<Instant> = None;
    let mut polls_left = if pace.last_idle_long { 0 } else { POLL_SPINS };
    let mut reported = false;
    let mut state = link.lock();
    loop {
        if state.failure.is_some() {
            return Ok(None);
        }
        if let Some(job) = state.pop_queue() {
            if let (Some(since), Some(poll)) = (idle_since, poll) {
                pace.last_idle_long = since.elapsed() > poll * POLL_SPINS;
            }
            return Ok(Some(job));
        }
        drop(state);
        if let Err(error) = wire.flush() {
            return Err(format!("sending failed: {error}"));
        }
        state = link.lock();
        if state.closing && state.queue.is_empty() {
            return Ok(None);
        }
        if state.queue.is_empty() && state.failure.is_none() {
            idle_since.get_or_insert_with(Instant::now);
            if let Some(poll) = poll.filter(|_| polls_left > 0) {
                polls_left -= 1;
                state.sender_polling = true;
                state = link.wait_work(state, Some(poll));
                state.sender_polling = false;
            } else if !reported {
                // Before a long sleep: a rest that ended while the sender
                // polled is reported now.
                reported = true;
                drop(state);
                cluster.report_state(index);
                state = link.lock();
            } else if let Some(rest) = link.rest_left() {
                // Wakes when the rest ends, to report the server up again.
                state = link.wait_work(state, Some(rest));
                drop(state);
                cluster.report_state(index);
                state = link.lock();
            } else {
                state = link.wait_work(state, None);
                reported = false;
            }
        }
    }
}

/// After the sender is done: waits for the last answers, then shuts the
/// socket so that the receiver ends.
///
/// After a failed write (`send_error`) too, the receiver has the last word:
/// it reads the answers that came (one may say `Connection: close`: an
/// orderly end), then the end of the connection or its reset; a server that
/// stopped reading is caught by the response timeout, which counts from the
/// last byte written. Only if every file in flight is answered all the same
/// does the write error end the session.
fn finish_session(link: &Link, send_error: Option<String>) {
    let mut state = link.lock();
    while !state.in_flight.is_empty() && state.failure.is_none() {
        state = link.wait_progress(state, None);
    }
    if state.failure.is_none() {
        match send_error {
            None => state.finished = true,
            Some(reason) => {
                drop(state);
                link.fail_session(reason);
                state = link.lock();
            }
        }
    }
    if let Some(socket) = &state.socket {
        let _ = socket.shutdown(Shutdown::Both);
    }
}

/// The receiver: reads the answers in order and matches each to the oldest
/// file in flight. Returns whether any answer came.
fn receive_loop(cluster: &Cluster, index: usize, socket: TcpStream) -> bool {
    crate::threads::yield_to_producers();
    let link = &cluster.links[index];
    // To ask the system how much of what we wrote is still on its way.
    let probe = socket.try_clone().ok();
    let mut answers = ResponseReader::new(Ticking {
        socket,
        tick: read_tick(&cluster.options),
        tick_began: Instant::now(),
    });
    let mut answered = false;
    let mut silence = Silence::new(cluster.options.response_timeout);
    loop {
        let response = match answers.read_response() {
            Ok(response) => {
                silence.answered();
                response
            }
            Err(error) => match read_error_verdict(
                link,
                &error,
                &mut silence,
                probe.as_ref().and_then(unsent_bytes),
            ) {
                Verdict::KeepWaiting => continue,
                Verdict::Stop => return answered,
                Verdict::Fail(reason) => {
                    link.fail_session(reason);
                    return answered;
                }
                Verdict::EndedByServer(reason) => {
                    link.session_ended_by_server(reason, false);
                    return answered;
                }
            },
        };
        answered = true;
        let Some(job) = link.answered() else {
            // While requests are pipelined, an extra answer cannot be told
            // from the next one; with none in flight it is a protocol error.
            link.fail_session(format!(
                "unexpected answer {} with no request waiting",
                response.status
            ));
            return answered;
        };
        let last = job.last;
        let close = response.close;
        settle(cluster, index, job, response);
        if close {
            if !last {
                let reason = "the server answered with Connection: close".to_owned();
                link.session_ended_by_server(reason, true);
            }
            return answered;
        }
    }
}

/// What an answer means for its file: acknowledged, sent again (5xx, within
/// the retries), moved to another server (5xx after the retries), or failed.
fn settle(cluster: &Cluster, index: usize, mut job: Job, response: protocol::Response) {
    let link = &cluster.links[index];
    let status = response.status;
    let server_error = (500..600).contains(&status);
    // 507: the server's storage is full; sending there again is pointless.
    if server_error && status != 507 && job.retries < cluster.options.max_retries {
        job.retries += 1;
        match link.requeue_for_retry(job) {
            Ok(()) => {
                Counters::add(&cluster.counters().retries);
                link.counters.retried();
                return;
            }
            Err(back) => job = back,
        }
    }
    link.release(&job);
    if (200..300).contains(&status) {
        let result = OutcomeResult::Acknowledged {
            http_status: status,
        };
        return cluster.finish(&job, index, result);
    }
    if status == 405 && job.maybe_stored {
        // Already stored: acknowledged only if the bytes there are ours.
        match compare_stored_copy(cluster, link, &job) {
            Ok(true) => {
                Counters::add(&cluster.counters().acknowledged_already);
                let result = OutcomeResult::Acknowledged {
                    http_status: status,
                };
                return cluster.finish(&job, index, result);
            }
            Ok(false) => {
                let error = Error::NameTaken {
                    server: link.server.clone(),
                    detail: "the server holds other bytes under this name".into(),
                };
                return cluster.finish(&job, index, OutcomeResult::Failed(&error));
            }
            Err(problem) => {
                let error = Error::NameTaken {
                    server: link.server.clone(),
                    detail: format!("the stored copy could not be compared: {problem}"),
                };
                return cluster.finish(&job, index, OutcomeResult::Failed(&error));
            }
        }
    }
    if server_error && !job.last {
        match cluster.move_after_errors(index, job) {
            None => return,
            Some(back) => job = back,
        }
    }
    if status == 507 && !job.last {
        // No server has room (every disk full): with a spill folder the file
        // waits there, as in an outage, and is sent again once a server has
        // rested; it fails only if the folder cannot take it.
        match cluster.spill_or_keep(job, index) {
            Ok(()) => return,
            Err((back, _)) => job = back,
        }
    }
    let error = Error::Http {
        server: link.server.clone(),
        status,
        detail: response.detail,
    };
    cluster.finish(&job, index, OutcomeResult::Failed(&error));
}

/// [`stored_copy_matches`], again on a new connection when the read-back
/// connection failed (reset, cut, timed out, a 5xx), up to the options' retries:
/// a connection that dies is no evidence against the stored copy, and the
/// file (stored, by the 405) must not fail for it while the server lives.
/// Each new try counts as a retry, in the totals and on the link's server.
fn compare_stored_copy(cluster: &Cluster, link: &Link, job: &Job) -> Result<bool, String> {
    let mut attempts = 0;
    loop {
        match stored_copy_matches(cluster, &link.server, job) {
            Err(Compare::Transient(_)) if attempts < cluster.options.max_retries => {
                attempts += 1;
                Counters::add(&cluster.counters().retries);
                link.counters.retried();
            }
            Err(Compare::Transient(problem) | Compare::Final(problem)) => return Err(problem),
            Ok(matches) => return Ok(matches),
        }
    }
}

/// Why a stored copy could not be compared.
enum Compare {
    /// The connection failed or the server failed (5xx): worth another try.
    Transient(String),
    /// It cannot be compared (the filter fails, the GET is refused).
    Final(String),
}

/// Whether the file the server already holds under `job`'s name has exactly
/// the bytes this job would store: read back with a GET on a connection of
/// its own, and compared with the body as the server stores it (the filter's
/// output, or the file itself when the filter only sets a content encoding
/// the server decodes).
fn stored_copy_matches(cluster: &Cluster, server: &str, job: &Job) -> Result<bool, Compare> {
    let expected = stored_form(cluster, job).map_err(Compare::Final)?;
    let transient = |e: &dyn std::fmt::Display| Compare::Transient(e.to_string());
    let mut socket = connect(server, &cluster.options).map_err(|e| transient(&e))?;
    let mut request = Vec::with_capacity(128);
    protocol::write_get_head(&mut request, crate::name::storage_name(&job.name));
    socket.write_all(&request).map_err(|e| transient(&e))?;
    // The whole answer has a limit, not each read: bytes that keep coming
    // (`100 Continue` heads, a body dripping in) must not hold this
    // receiver, and the file's outcome, for ever. One response timeout for
    // the answer to begin, one more per piece of body, as slow links need.
    let pieces = (expected.len() / PROGRESS_STEP) as u32;
    let limit = cluster.options.response_timeout.saturating_mul(1 + pieces);
    let socket = ReadBy {
        socket,
        deadline: Instant::now() + limit,
    };
    let mut reader = ResponseReader::new(socket);
    match reader.read_body_of_length(expected.len()) {
        Ok((status, body)) if (200..300).contains(&status) => {
            Ok(body.as_deref() == Some(&expected[..]))
        }
        Ok((status, _)) if (500..600).contains(&status) => {
            Err(Compare::Transient(format!("GET answered {status}")))
        }
        Ok((status, _)) => Err(Compare::Final(format!("GET answered {status}"))),
        Err(error) => Err(transient(&error)),
    }
}

/// A socket whose reads all end by one deadline: each read waits only for
/// the time left.
struct ReadBy {
    socket: TcpStream,
    deadline: Instant,
}

impl std::io::Read for ReadBy {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the stored copy was not read in time",
            ));
        }
        self.socket.set_read_timeout(Some(left))?;
        self.socket.read(buf)
    }
}

/// The bytes a server stores for `job`.
fn stored_form(cluster: &Cluster, job: &Job) -> Result<Vec<u8>, String> {
    let Some(filter) = cluster.options.filter.as_deref() else {
        return Ok(job.data.to_vec());
    };
    if filter.content_encoding().is_some() {
        return Ok(job.data.to_vec());
    }
    let mut out = Vec::new();
    let file = FileInfo {
        name: &job.name,
        index: job.index,
    };
    apply_filter(filter, &file, &job.data, &mut out).map_err(|e| e.to_string())?;
    Ok(out)
}

/// The receiver's socket: at least once a tick, a read reports a timeout,
/// even while bytes come, so that the silence is measured (see [`Silence`]).
/// Bytes that never make an answer (interim `1xx` answers for ever, a head
/// dripping in) are thus silence; without this, no read would ever time out.
struct Ticking {
    socket: TcpStream,
    tick: Duration,
    tick_began: Instant,
}

impl std::io::Read for Ticking {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.tick_began.elapsed() >= self.tick {
            self.tick_began = Instant::now();
            return Err(std::io::ErrorKind::TimedOut.into());
        }
        self.socket.read(buf)
    }
}

enum Verdict {
    KeepWaiting,
    Stop,
    Fail(String),
    /// The server ended the connection cleanly between answers.
    EndedByServer(String),
}

/// How long the server has owed an answer without giving one. A read
/// timeout (a tick, a quarter of the response timeout) starts the count when
/// files are in flight; an answer, or a tick with nothing in flight, ends it.
/// The server thus gets the whole response timeout from the moment an answer
/// is due, whenever the receiver's read began (a read that began on an idle
/// link must not count the idle time against the next file).
struct Silence {
    timeout: Duration,
    since: Option<Instant>,
    /// Bytes written and not yet acknowledged by the server, at the last tick.
    unsent: Option<u64>,
    /// When that count last went down: bytes were still moving to the server.
    last_drained: Option<Instant>,
}

impl Silence {
    fn new(timeout: Duration) -> Self {
        Silence {
            timeout,
            since: None,
            unsent: None,
            last_drained: None,
        }
    }

    fn answered(&mut self) {
        self.since = None;
    }

    /// A read timed out: whether the server has now been silent too long.
    /// The count starts at the first timeout with answers due, when the
    /// sender last wrote, or when bytes written earlier last left for the
    /// server (`unsent`, the system's count of bytes not yet acknowledged,
    /// went down), whichever is latest: an upload in progress is not silence,
    /// however long it takes, even while its last megabytes wait in the
    /// socket's buffers on a slow link.
    fn too_long(
        &mut self,
        answers_due: bool,
        last_sent: Option<Instant>,
        unsent: Option<u64>,
    ) -> bool {
        if unsent.is_some_and(|now| self.unsent.is_some_and(|before| now < before)) {
            self.last_drained = Some(Instant::now());
        }
        self.unsent = unsent;
        if !answers_due {
            self.since = None;
            return false;
        }
        let since = *self.since.get_or_insert_with(Instant::now);
        let since = [last_sent, self.last_drained]
            .into_iter()
            .flatten()
            .fold(since, Instant::max);
        since.elapsed() >= self.timeout
    }
}

/// Bytes written to `socket` that the server has not acknowledged yet (Linux:
/// `SIOCOUTQ`); `None` where the system does not say.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)] // ioctl(2), which std lacks
fn unsent_bytes(socket: &TcpStream) -> Option<u64> {
    use std::os::fd::AsRawFd;
    let mut unsent: libc::c_int = 0;
    // SAFETY: SIOCOUTQ (= TIOCOUTQ) writes one int through the pointer, which
    // points to a live c_int; the descriptor is open while `socket` is borrowed.
    let result = unsafe { libc::ioctl(socket.as_raw_fd(), libc::TIOCOUTQ, &mut unsent) };
    (result == 0).then(|| u64::try_from(unsent).unwrap_or(0))
}

#[cfg(not(target_os = "linux"))]
fn unsent_bytes(_: &TcpStream) -> Option<u64> {
    None
}

/// A read timeout is a failure only after the response timeout of silence
/// while answers are due; after our own shutdown, an error is the expected end.
fn read_error_verdict(
    link: &Link,
    error: &ReadError,
    silence: &mut Silence,
    unsent: Option<u64>,
) -> Verdict {
    let state = link.lock();
    if state.finished || state.failure.is_some() {
        return Verdict::Stop;
    }
    match error {
        ReadError::Io(io) if is_timeout(io) => {
            if silence.too_long(!state.in_flight.is_empty(), state.last_sent, unsent) {
                Verdict::Fail(format!(
                    "no answer within the response timeout ({} files waiting)",
                    state.in_flight.len()
                ))
            } else {
                Verdict::KeepWaiting
            }
        }
        ReadError::Closed => Verdict::EndedByServer(error.to_string()),
        other => Verdict::Fail(other.to_string()),
    }
}

fn is_timeout(error: &std::io::Error) -> bool {
    matches!(
        error.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    )
}
