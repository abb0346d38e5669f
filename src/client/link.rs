//! A link: one server of a streamer, its bounded queue, the files in flight on
//! its connection, and whether that connection is up.
//!
//! A file holds its place in the queue limits (files and bytes) from `put` until
//! its outcome, so memory stays bounded by the limits however slow the server.
//!
//! In scope: the link's state under one lock, producers waiting for room, the
//! wake-ups between producers, the sender and the receiver.
//! Out of scope: sockets and the wire (see `session`), choosing servers and
//! outcomes (see `cluster`).

use std::collections::VecDeque;
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::distribution::{DrainMeter, ServerLoad};
use super::job::{Job, Refused};
use super::options::{InterruptCheck, INTERRUPT_CHECK_INTERVAL, PASS_OVER_SILENCE};
use super::server_state::{ServerState, StateCell};
use super::server_stats::{ServerCounters, ServerStats};
use crate::{Error, StreamerOptions};

/// [`PASS_OVER_SILENCE`], capped at a quarter of `response_timeout`.
pub(crate) fn pass_over_after(response_timeout: Duration) -> Duration {
    PASS_OVER_SILENCE.min(response_timeout / 4)
}

#[derive(Default)]
pub(super) struct State {
    pub(super) queue: VecDeque<Job>,
    pub(super) queue_bytes: u64,
    pub(super) in_flight: VecDeque<Job>,
    /// Files and bytes queued or in flight: what the limits bound.
    pub(super) held_files: usize,
    pub(super) held_bytes: u64,
    /// A connection is up and takes files.
    pub(super) up: bool,
    /// The current connection failed, with this reason.
    pub(super) failure: Option<String>,
    /// The server ended the current connection in order, at an answer
    /// boundary (`Some(true)`: it said `Connection: close`): the link stays
    /// up while it reconnects, so puts still queue.
    pub(super) ended_by_server: Option<bool>,
    /// Finish: send what is queued, wait for the answers, then stop.
    pub(super) closing: bool,
    /// The current connection was shut by us after its last answer.
    pub(super) finished: bool,
    /// The socket of the current connection, to shut it from any thread.
    pub(super) socket: Option<TcpStream>,
    /// When the sender last wrote bytes of a request: the response timeout
    /// counts from here, not from when a slow upload began.
    pub(super) last_sent: Option<Instant>,
    /// Threads waiting on `progress`: a file's outcome wakes them only if any.
    pub(super) progress_waiters: usize,
    /// The sender polls the queue (see `session::POLL_SPINS`): a put need
    /// not wake it.
    pub(super) sender_polling: bool,
    /// Threads waiting on `work` (the link thread, sleeping or polling): a
    /// put wakes nobody when this is 0, since the sender looks at the queue
    /// under the lock before it waits.
    pub(super) work_waiters: usize,
    /// How fast the server finishes files, for load-aware distributions.
    pub(super) drain: DrainMeter,
    /// The link's counters (`Link::counters`): the queue and in-flight
    /// gauges follow every change made through the methods below.
    pub(super) counters: Arc<ServerCounters>,
    /// When the server last answered, or, if it has not answered since it
    /// got work, when it got work: its silence counts from here (see
    /// [`Link::stalled`]). Read only while it holds files.
    pub(super) heard_from: Option<Instant>,
    /// A connection failed and the server has not answered since: a server
    /// that takes connections but never answers (a stopped process whose
    /// kernel still accepts) gets moved files last (see [`Link::failover_rank`]).
    pub(super) unproven: bool,
    /// Discovery no longer finds this server (see [`Link::withdraw`]): down,
    /// and its thread does not reconnect until it is found again.
    pub(super) withdrawn: bool,
}

impl State {
    pub(super) fn hold(&mut self, job: &Job) {
        if self.held_files == 0 {
            let now = Instant::now();
            self.drain.busy_from(now);
            self.heard_from = Some(now);
        }
        self.held_files += 1;
        self.held_bytes += job.len();
    }

    pub(super) fn release(&mut self, job: &Job) {
        self.held_files -= 1;
        self.held_bytes -= job.len();
        let busy = self.held_files > 0;
        self.drain.drained(job.len(), Instant::now(), busy);
    }

    pub(super) fn push_queue(&mut self, job: Job) {
        self.queue_bytes += job.len();
        self.counters.queue_changed(1, signed(job.len()));
        self.queue.push_back(job);
    }

    /// Puts a file back at the front of the queue (sent again first).
    pub(super) fn push_queue_front(&mut self, job: Job) {
        self.queue_bytes += job.len();
        self.counters.queue_changed(1, signed(job.len()));
        self.queue.push_front(job);
    }

    pub(super) fn pop_queue(&mut self) -> Option<Job> {
        let job = self.queue.pop_front()?;
        self.queue_bytes -= job.len();
        self.counters.queue_changed(-1, -signed(job.len()));
        Some(job)
    }

    /// Every queued file, taken out of the queue.
    pub(super) fn take_queue(&mut self) -> Vec<Job> {
        let taken: Vec<Job> = self.queue.drain(..).collect();
        self.counters
            .queue_changed(-(taken.len() as i64), -signed(self.queue_bytes));
        self.queue_bytes = 0;
        taken
    }

    /// A file is about to be written: it waits for its answer from now on.
    pub(super) fn push_in_flight(&mut self, job: Job) {
        self.counters.in_flight_changed(1, signed(job.len()));
        self.in_flight.push_back(job);
    }

    /// The oldest file in flight (the one the next answer is for).
    pub(super) fn pop_in_flight(&mut self) -> Option<Job> {
        let job = self.in_flight.pop_front()?;
        self.counters.in_flight_changed(-1, -signed(job.len()));
        Some(job)
    }

    /// The newest file in flight.
    fn pop_in_flight_back(&mut self) -> Option<Job> {
        let job = self.in_flight.pop_back()?;
        self.counters.in_flight_changed(-1, -signed(job.len()));
        Some(job)
    }

    /// Every file in flight, oldest first, taken out.
    pub(super) fn take_in_flight(&mut self) -> Vec<Job> {
        let taken: Vec<Job> = self.in_flight.drain(..).collect();
        let bytes: u64 = taken.iter().map(Job::len).sum();
        self.counters
            .in_flight_changed(-(taken.len() as i64), -signed(bytes));
        taken
    }
}

fn signed(bytes: u64) -> i64 {
    i64::try_from(bytes).unwrap_or(i64::MAX)
}

/// One server of a streamer: its queue and the state of its connection.
pub(crate) struct Link {
    pub server: String,
    max_files: usize,
    max_bytes: u64,
    /// How long a server with a full queue may stay silent before new files
    /// pass it over (see [`pass_over_after`]).
    pass_over_after: Duration,
    state: Mutex<State>,
    /// Signalled when a file is queued, or on close (the link thread waits).
    pub(super) work: Condvar,
    /// Signalled when a file leaves the link, or the link changes state
    /// (producers waiting for room and the finishing link thread wait).
    pub(super) progress: Condvar,
    /// When 5xx answers exhausted a file's retries here, new files go to other
    /// servers until this moment (nanoseconds after `created`; 0: not
    /// resting). Atomic, because every `put` with failover reads it.
    resting_until: AtomicU64,
    created: Instant,
    /// Whether the connection is up, readable without the lock (see
    /// `server_state`); kept beside `State::up` by the link's threads.
    pub(super) cell: StateCell,
    /// This server's counters, readable without the lock (a copy of the
    /// `Arc` in `State`, which keeps the gauges).
    pub(super) counters: Arc<ServerCounters>,
    /// Found by discovery (not given in the options): live membership may
    /// withdraw it when discovery stops finding it.
    pub(super) discovered: bool,
}

impl Link {
    /// A link whose first connection is already made (so it takes files at once).
    #[cfg(test)]
    pub fn new(server: String, options: &StreamerOptions) -> Link {
        Link::starting(server, options, None)
    }

    /// A link whose first connection is made (`unreachable` is `None`: it
    /// takes files at once), or failed with that reason: it starts down, and
    /// its thread connects with the backoff.
    pub fn starting(
        server: String,
        options: &StreamerOptions,
        unreachable: Option<String>,
    ) -> Link {
        let connection = match unreachable {
            None => ServerState::Up,
            Some(_) => ServerState::Down,
        };
        let counters = Arc::<ServerCounters>::default();
        Link {
            server,
            max_files: options.queue_max_files.max(1),
            max_bytes: options.queue_max_bytes,
            pass_over_after: pass_over_after(options.response_timeout),
            state: Mutex::new(State {
                up: unreachable.is_none(),
                failure: unreachable,
                counters: Arc::clone(&counters),
                ..State::default()
            }),
            work: Condvar::new(),
            progress: Condvar::new(),
            resting_until: AtomicU64::new(0),
            created: Instant::now(),
            cell: StateCell::new(connection),
            counters,
            discovered: false,
        }
    }

    /// This link's server was found by discovery.
    pub fn found_by_discovery(mut self) -> Link {
        self.discovered = true;
        self
    }

    /// A server that joins a running streamer (live membership): found by
    /// discovery, and its first state is reported to the state callback
    /// (`Up` once its thread runs), as the streamer's callback is told only
    /// of changes for the servers it started with.
    pub fn joining(mut self) -> Link {
        self.discovered = true;
        self.cell = StateCell::unreported(self.cell.connection());
        self
    }

    /// This server's counters now: no lock (see `server_stats`).
    pub fn server_stats(&self) -> ServerStats {
        self.counters.read(self.server_state())
    }

    /// The server's state now: no lock (see `server_state`).
    pub fn server_state(&self) -> ServerState {
        self.cell.state(|| self.is_resting())
    }

    /// Up, or reconnecting with no attempt failed yet (a reset a moment
    /// ago): it may take files again soon. Down or resting: not soon.
    pub(super) fn may_take_files_soon(&self) -> bool {
        matches!(
            self.server_state(),
            ServerState::Up | ServerState::Connecting
        )
    }

    /// The time left of a rest, if the server rests.
    pub(super) fn rest_left(&self) -> Option<Duration> {
        let until = self.resting_until.load(Ordering::Relaxed);
        let now = self.nanos_since_created();
        (until != 0 && now < until).then(|| Duration::from_nanos(until - now))
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn is_up(&self) -> bool {
        let state = self.lock();
        state.up && !state.closing
    }

    /// Connected, or reconnecting after an orderly end by the server, closing
    /// or not: the link thread still sends what is queued here.
    pub(super) fn counts_as_up(&self) -> bool {
        self.lock().up
    }

    /// Resting after repeated server errors (see [`Link::rest`]). No lock,
    /// and no clock unless it rests.
    pub fn is_resting(&self) -> bool {
        let until = self.resting_until.load(Ordering::Relaxed);
        until != 0 && self.nanos_since_created() < until
    }

    fn nanos_since_created(&self) -> u64 {
        u64::try_from(self.created.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// The sender wrote bytes to the connection just now.
    pub fn note_sent(&self) {
        self.lock().last_sent = Some(Instant::now());
    }

    /// Leaves this server out of the rotation for `period` (it kept answering
    /// 5xx). Its queued files still go to it.
    pub fn rest(&self, period: Duration) {
        let period = u64::try_from(period.as_nanos()).unwrap_or(u64::MAX);
        let until = self.nanos_since_created().saturating_add(period).max(1);
        self.resting_until.store(until, Ordering::Relaxed);
    }

    fn has_room(&self, state: &State, bytes: u64) -> bool {
        self.has_room_in_share(state, bytes, 1)
    }

    /// Room for `bytes` while everything held, this file included, stays
    /// within 1/`share` of the queue's limits (files and bytes).
    fn has_room_in_share(&self, state: &State, bytes: u64, share: u64) -> bool {
        // A file larger than the byte limit still goes through, alone.
        let files = (state.held_files as u64 + 1).saturating_mul(share);
        let held = state.held_bytes.saturating_add(bytes).saturating_mul(share);
        state.held_files == 0 || (files <= self.max_files as u64 && held <= self.max_bytes)
    }

    pub fn has_room_now(&self, job: &Job) -> bool {
        self.has_room(&self.lock(), job.len())
    }

    /// When the server, holding files, will have been silent long enough to
    /// be passed over; `None` while it holds nothing.
    fn stalls_at(&self, state: &State) -> Option<Instant> {
        if state.held_files == 0 {
            return None;
        }
        state.heard_from.map(|heard| heard + self.pass_over_after)
    }

    /// Holding files, the server has not answered for the pass-over time
    /// ([`pass_over_after`]): no answer since the last one, or since it got
    /// work after having none.
    pub(super) fn stalled(&self, state: &State, now: Instant) -> bool {
        self.stalls_at(state).is_some_and(|at| now >= at)
    }

    /// Taking files now (up, not closing), with room for `job`, and not
    /// silent: where a passed-over file may go.
    pub fn takes_now(&self, job: &Job) -> bool {
        let state = self.lock();
        state.up
            && !state.closing
            && self.has_room(&state, job.len())
            && !self.stalled(&state, Instant::now())
    }

    /// For failover: `None` when it takes no files, else whether it is in
    /// doubt (silent with files held, or reconnected after a failure and not
    /// answered since) and the bytes it owes. One lock.
    pub fn failover_rank(&self) -> Option<(bool, u64)> {
        let state = self.lock();
        if !state.up || state.closing {
            return None;
        }
        let doubtful = state.unproven || self.stalled(&state, Instant::now());
        Some((doubtful, state.held_bytes))
    }

    /// Whether the spill thread may send it a file now: it takes files and
    /// is not silent with files held; one reconnected after a failure and not
    /// heard from since takes one file at a time (a probe), so that a silent
    /// node that accepts connections does not take the folder's files one
    /// response timeout after another.
    pub fn takes_spilled(&self) -> bool {
        let state = self.lock();
        state.up
            && !state.closing
            && !self.stalled(&state, Instant::now())
            && (!state.unproven || state.held_files == 0)
    }

    /// The receiver read an answer: the oldest file in flight, which it
    /// answers. The server is heard from.
    pub(super) fn answered(&self) -> Option<Job> {
        let mut state = self.lock();
        let job = state.pop_in_flight()?;
        state.heard_from = Some(Instant::now());
        state.unproven = false;
        Some(job)
    }

    /// Queues a new file, waiting for room up to `deadline`. On refusal the
    /// file comes back with the reason. With `pass_over`, a wait for room
    /// ends as soon as the server has been silent too long (see
    /// [`Link::stalled`]): refused with `passed_over` set. With `share`
    /// (`Some(n)`: a file read back from the spill folder), room is only
    /// within 1/n of the queue's limits.
    pub fn push(
        &self,
        job: Job,
        deadline: Option<Instant>,
        interrupt: Option<&InterruptCheck>,
        pass_over: bool,
        share: Option<u64>,
    ) -> Result<(), Box<Refused>> {
        let mut state = self.lock();
        // Set when a wait begins: a put that finds room reads no clock.
        let mut next_check: Option<Instant> = None;
        loop {
            if state.closing {
                return Err(Refused::new(Error::Closed, job));
            }
            if !state.up {
                let detail = state
                    .failure
                    .clone()
                    .unwrap_or_else(|| "not connected".into());
                let error = Error::ServerDown {
                    server: self.server.clone(),
                    detail,
                };
                return Err(Refused::new(error, job));
            }
            if self.has_room_in_share(&state, job.len(), share.unwrap_or(1)) {
                break;
            }
            let full = || Error::QueueFull {
                server: self.server.clone(),
                files: state.held_files,
                bytes: state.held_bytes,
            };
            let now = Instant::now();
            if deadline.is_some_and(|deadline| now >= deadline) {
                return Err(Refused::new(full(), job));
            }
            // Wake when the server's silence would pass it over, too.
            let stall_at = pass_over.then(|| self.stalls_at(&state)).flatten();
            if stall_at.is_some_and(|stall_at| now >= stall_at) {
                let mut refused = Refused::new(full(), job);
                refused.passed_over = true;
                return Err(refused);
            }
            let wake_by = match (deadline, stall_at) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            let Some(check) = interrupt else {
                state = self.wait_progress(state, wake_by);
                continue;
            };
            let check_at =
                *next_check.get_or_insert_with(|| Instant::now() + INTERRUPT_CHECK_INTERVAL);
            let wake = wake_by.map_or(check_at, |wake_by| wake_by.min(check_at));
            state = self.wait_progress(state, Some(wake));
            if Instant::now() >= check_at {
                // Without the lock: the check may wait for a host's own lock
                // (Python's GIL), which a library thread may hold while it
                // waits for this one.
                drop(state);
                if check() {
                    let error = Error::Interrupted {
                        server: self.server.clone(),
                    };
                    return Err(Refused::new(error, job));
                }
                next_check = Some(Instant::now() + INTERRUPT_CHECK_INTERVAL);
                state = self.lock();
            }
        }
        state.hold(&job);
        if job.last {
            state.closing = true;
        }
        state.push_queue(job);
        let wake = self.sender_must_wake(&state);
        drop(state);
        if wake {
            self.work.notify_one();
        }
        Ok(())
    }

    /// Whether a put must wake the sender: it sleeps, or it polls but the
    /// queue holds a quarter of a limit already (the producer may soon wait
    /// for room, and the sender should not lose time). A sender at work is
    /// not woken: it looks at the queue before it waits.
    fn sender_must_wake(&self, state: &State) -> bool {
        state.work_waiters > 0
            && (!state.sender_polling
                || state.queue.len() >= self.max_files.div_ceil(4)
                || state.queue_bytes >= self.max_bytes / 4)
    }

    /// Waits for `work` (a file queued, a failure, close), up to `timeout`,
    /// counted so that a put knows whether to wake anyone.
    pub(super) fn wait_work<'a>(
        &self,
        mut state: MutexGuard<'a, State>,
        timeout: Option<Duration>,
    ) -> MutexGuard<'a, State> {
        state.work_waiters += 1;
        let mut state = match timeout {
            None => self.work.wait(state).unwrap_or_else(|e| e.into_inner()),
            Some(timeout) => {
                self.work
                    .wait_timeout(state, timeout)
                    .unwrap_or_else(|e| e.into_inner())
                    .0
            }
        };
        state.work_waiters -= 1;
        state
    }

    /// Queues a file moved here from a failed server, whatever the limits:
    /// its memory was already counted, and waiting here could deadlock.
    pub fn push_rerouted(&self, job: Job) -> Result<(), Job> {
        let mut state = self.lock();
        if !state.up || state.closing {
            return Err(job);
        }
        state.hold(&job);
        state.push_queue(job);
        drop(state);
        self.work.notify_one();
        Ok(())
    }

    /// The outstanding work, for load-aware distributions: bytes queued or in
    /// flight (not yet acknowledged), and how fast they drain.
    pub fn load(&self) -> ServerLoad {
        let state = self.lock();
        ServerLoad {
            live: state.up && !state.closing,
            outstanding_bytes: state.held_bytes,
            drain_bytes_per_s: state.drain.bytes_per_s(state.held_bytes, Instant::now()),
        }
    }

    /// Files and bytes waiting to be sent, and files waiting for their answer.
    pub fn depth(&self) -> (u64, u64, u64) {
        let state = self.lock();
        (
            state.queue.len() as u64,
            state.queue_bytes,
            state.in_flight.len() as u64,
        )
    }

    /// No more files: the link thread sends what is queued, waits for the
    /// answers and stops.
    pub fn start_close(&self) {
        self.lock().closing = true;
        self.work.notify_all();
        self.progress.notify_all();
    }

    /// The current connection is unusable. The first caller wins. Its files
    /// stay where they are until the link thread hands them on.
    pub(super) fn fail_session(&self, reason: String) {
        self.end_session(reason, None);
    }

    /// The server ended the connection in order (`Connection: close`, or a
    /// clean end between answers): like a failure, the session stops, but the
    /// link stays up, since its thread reconnects at once and sends the
    /// unanswered files again.
    pub(super) fn session_ended_by_server(&self, reason: String, said_close: bool) {
        self.end_session(reason, Some(said_close));
    }

    fn end_session(&self, reason: String, by_server: Option<bool>) {
        let mut state = self.lock();
        if state.failure.is_some() || state.finished {
            return;
        }
        state.failure = Some(reason);
        state.ended_by_server = by_server;
        if by_server.is_none() {
            state.unproven = true;
            state.up = false;
            self.cell.set_connection(ServerState::Connecting);
        }
        if let Some(socket) = &state.socket {
            let _ = socket.shutdown(Shutdown::Both);
        }
        drop(state);
        self.work.notify_all();
        self.progress.notify_all();
    }

    /// Takes this link down (a reconnection failed): producers go elsewhere.
    pub(super) fn mark_down(&self, reason: String) {
        let mut state = self.lock();
        state.up = false;
        state.unproven = true;
        self.cell.set_connection(ServerState::Down);
        state.failure = Some(reason);
        drop(state);
        self.progress.notify_all();
    }

    /// Discovery no longer finds this server: it takes no new files, its
    /// connection (if any) is shut, so that its thread hands its files on as
    /// after any failure, and it stays down, not reconnecting, until
    /// [`Link::readmit`]. `false` when it was withdrawn already or closes.
    pub(super) fn withdraw(&self, reason: String) -> bool {
        let mut state = self.lock();
        if state.withdrawn || state.closing {
            return false;
        }
        state.withdrawn = true;
        state.up = false;
        state.unproven = true;
        state.ended_by_server = None;
        state.failure = Some(reason);
        self.cell.set_connection(ServerState::Down);
        if let Some(socket) = &state.socket {
            let _ = socket.shutdown(Shutdown::Both);
        }
        drop(state);
        self.work.notify_all();
        self.progress.notify_all();
        true
    }

    /// Discovery finds a withdrawn server again: its thread connects at once
    /// (and reports it up). `false` when it was not withdrawn.
    pub(super) fn readmit(&self) -> bool {
        let mut state = self.lock();
        if !state.withdrawn {
            return false;
        }
        state.withdrawn = false;
        drop(state);
        self.work.notify_all();
        true
    }

    /// Puts a file answered 5xx back in the queue to be sent again, unless the
    /// link is closing (the end-of-stream sentinel is queued: nothing may
    /// follow it). One lock for the check and the push, so that the sentinel
    /// cannot slip in between.
    pub(super) fn requeue_for_retry(&self, job: Job) -> Result<(), Job> {
        let mut state = self.lock();
        if state.closing {
            return Err(job);
        }
        state.push_queue(job);
        drop(state);
        self.work.notify_one();
        Ok(())
    }

    /// After the server ended a connection in order: its unanswered files go
    /// back to the front of the queue, in order, to be sent again on the next
    /// connection. Returns how many. `maybe_stored`: the server may have
    /// stored them without answering (it did not say `Connection: close`).
    pub(super) fn requeue_unanswered(&self, maybe_stored: bool) -> usize {
        let mut guard = self.lock();
        let state = &mut *guard;
        let count = state.in_flight.len();
        while let Some(mut job) = state.pop_in_flight_back() {
            job.maybe_stored |= maybe_stored;
            state.push_queue_front(job);
        }
        count
    }

    /// Closes this link at once (a bounded close reached its limit): its
    /// connection is failed with `reason` and shut, and its queued and
    /// in-flight files are taken out of it (each released from the link's
    /// limits, so a sender or receiver that holds a file of its own keeps the
    /// counts right).
    pub(super) fn abandon(&self, reason: &str) -> Vec<Job> {
        let mut state = self.lock();
        state.closing = true;
        state.up = false;
        self.cell.set_connection(ServerState::Down);
        if state.failure.is_none() && !state.finished {
            state.failure = Some(reason.to_owned());
        }
        if let Some(socket) = &state.socket {
            let _ = socket.shutdown(Shutdown::Both);
        }
        let mut taken: Vec<Job> = state.take_in_flight();
        for job in &mut taken {
            job.maybe_stored = true;
        }
        while let Some(job) = state.pop_queue() {
            taken.push(job);
        }
        for job in &taken {
            state.release(job);
        }
        drop(state);
        self.work.notify_all();
        self.progress.notify_all();
        taken
    }

    /// A file left the link: wakes whoever waits for room or for the last answer.
    pub(super) fn release(&self, job: &Job) {
        let mut state = self.lock();
        state.release(job);
        let anyone_waiting = state.progress_waiters > 0;
        drop(state);
        // Skipped when nobody waits: it is a system call per file otherwise.
        if anyone_waiting {
            self.progress.notify_all();
        }
    }

    /// Waits for `progress` (up to `deadline`), counted so that `release` knows.
    pub(super) fn wait_progress<'a>(
        &self,
        mut state: MutexGuard<'a, State>,
        deadline: Option<Instant>,
    ) -> MutexGuard<'a, State> {
        state.progress_waiters += 1;
        let mut state = match deadline {
            None => self.progress.wait(state).unwrap_or_else(|e| e.into_inner()),
            Some(deadline) => {
                let timeout = deadline.saturating_duration_since(Instant::now());
                self.progress
                    .wait_timeout(state, timeout)
                    .unwrap_or_else(|e| e.into_inner())
                    .0
            }
        };
        state.progress_waiters -= 1;
        state
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn job(len: usize) -> Job {
        Job::new("a", Bytes::from(vec![0; len]), None)
    }

    /// A file read back from the spill folder (`share` 4) is queued only
    /// within a quarter of the queue's limits, files and bytes, or alone; a
    /// new put still finds the rest (the spill thread filled whole queues, and
    /// a camera putting without waiting was refused while the folder drained).
    #[test]
    fn a_spilled_file_takes_at_most_its_share_of_the_queue() {
        let link = Link::new("x".into(), &StreamerOptions::new().queue_limits(8, 800));
        let now = Some(Instant::now());
        let full = |refused: Box<Refused>| matches!(refused.error, Error::QueueFull { .. });
        // Alone, any size is taken; then 2 files of 8 (2 x 4 <= 8), not a third.
        assert!(link.push(job(500), now, None, false, Some(4)).is_ok());
        assert!(full(
            link.push(job(10), now, None, false, Some(4)).err().unwrap()
        ));
        let link = Link::new("y".into(), &StreamerOptions::new().queue_limits(8, 800));
        assert!(link.push(job(10), now, None, false, Some(4)).is_ok());
        assert!(link.push(job(10), now, None, false, Some(4)).is_ok());
        assert!(full(
            link.push(job(10), now, None, false, Some(4)).err().unwrap()
        ));
        // New puts take the rest of the queue.
        for _ in 0..6 {
            assert!(link.push(job(10), now, None, false, None).is_ok());
        }
        assert!(full(
            link.push(job(10), now, None, false, None).err().unwrap()
        ));
    }

    /// `server_stats` takes no lock a put takes: it answers while the
    /// link's lock is held (a put in progress), and the gauges follow the
    /// queue and in-flight moves made under that lock.
    #[test]
    fn server_stats_are_read_while_the_link_lock_is_held() {
        let link = Link::new("x".into(), &StreamerOptions::new());
        let mut state = link.lock();
        state.push_queue(job(10));
        state.push_queue(job(30));
        let moved = state.pop_queue().unwrap();
        state.push_in_flight(moved);
        let (sender, receiver) = std::sync::mpsc::channel();
        std::thread::scope(|scope| {
            scope.spawn(|| sender.send(link.server_stats()).unwrap());
            let read = receiver
                .recv_timeout(Duration::from_secs(60))
                .expect("server_stats waited for the link's lock");
            assert_eq!((read.queue_files, read.queue_bytes), (1, 30));
            assert_eq!((read.in_flight_files, read.in_flight_bytes), (1, 10));
            assert_eq!(read.state, ServerState::Up);
            let lost = state.take_in_flight();
            assert_eq!(lost.len(), 1);
            assert_eq!(state.take_queue().len(), 1);
            drop(state);
        });
        let after = link.server_stats();
        assert_eq!(
            (
                after.queue_files,
                after.queue_bytes,
                after.in_flight_files,
                after.in_flight_bytes
            ),
            (0, 0, 0, 0)
        );
    }

    #[test]
    fn a_put_wakes_a_polling_sender_only_once_a_quarter_of_a_limit_waits() {
        let link = Link::new("x".into(), &StreamerOptions::new().queue_limits(8, 1000));
        let mut state = link.lock();
        state.push_queue(job(10));
        assert!(!link.sender_must_wake(&state), "a sender at work is not");
        state.work_waiters = 1;
        assert!(link.sender_must_wake(&state), "a sleeping sender is woken");
        state.sender_polling = true;
        assert!(
            !link.sender_must_wake(&state),
            "1 file of 8, 10 bytes of 1000"
        );
        state.push_queue(job(10));
        assert!(link.sender_must_wake(&state), "2 files of 8");
        state.take_queue();
        state.push_queue(job(250));
        assert!(link.sender_must_wake(&state), "250 bytes of 1000");
    }
}
