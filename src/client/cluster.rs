//! The cluster: what the streamer and the threads of its links share, and
//! every decision about where a file goes and how it ends.
//!
//! The streamer owns one [`Link`] per server, in the order the servers were
//! given (then those that join during the run, see `membership`); the server
//! index the distribution returns is a position in that list.
//! The [`Cluster`] holds the links, the policies, the count of files without an
//! outcome, the spill folder and the reporter.
//!
//! In scope: admitting a file to a link (`enqueue`), failover (`reroute`),
//! the one place an outcome is reported (`finish`), waiting until every file
//! has one (`wait_idle`), and the spill thread.
//! Out of scope: sockets (see `session`), a link's queue (see `link`).

use std::collections::VecDeque;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::buffers::{BufferPool, Reservation, RoomWait, Shortfall};
use super::distribution::Distribution;
use super::job::{Job, Refused};
use super::link::Link;
use super::links::Links;
use super::outcome::{Counters, Outcome, OutcomeResult, Reporter, NO_SERVER};
use super::server_state::ServerState;
use super::spill::{self, Spill, Spilled};
use crate::{Error, StreamerOptions};

/// How many failed connections a file may be in flight on before it fails:
/// a file that kills every server it is sent to must not circle for ever.
const MAX_INTERRUPTIONS: u32 = 5;

/// How often `flush` looks at the servers while files wait in the spill folder.
const FLUSH_LOOK: Duration = Duration::from_millis(10);

/// Files whose name starts with one of these change state kept on their
/// server: `__aggregate_*` appends to a file there (a log, a table), and
/// `__pyramid_*` creates, adds to or finishes a pyramid whose tiles that node
/// holds. Moving one to another server would split that file or pyramid
/// across nodes (a tile's sum in two halves, silently), so failover never
/// moves them (see [`pinned`]).
pub(crate) const PINNED_PREFIXES: [&str; 2] = ["__aggregate_", "__pyramid_"];

/// Whether a file must go to the server it was put for, whatever happens to
/// that server: it waits for it (within the usual timeouts), is spilled, or fails.
pub(crate) fn pinned(name: &str) -> bool {
    PINNED_PREFIXES
        .iter()
        .any(|prefix| name.starts_with(prefix))
}

/// What the streamer and the threads of its links share.
pub(crate) struct Cluster {
    /// Only ever appended to (live membership): an index stays its server's.
    pub links: Links,
    pub options: StreamerOptions,
    pub reporter: Reporter,
    pub(super) distribution: Arc<dyn Distribution>,
    pub(super) accepting: AtomicBool,
    /// Files without an outcome, and the spill queue, under one lock.
    progress: Mutex<Progress>,
    /// Signalled when the cluster may have become idle (see [`Progress::idle`]).
    idle: Condvar,
    /// Signalled when a file is spilled, a link comes back, or at close: the
    /// spill thread waits on it.
    spill_wake: Condvar,
    pub(super) spill: Option<Spill>,
    /// The spill thread stops once nothing more can be sent from the folder.
    pub(super) spill_closing: AtomicBool,
    /// Recycled buffers for copying puts.
    pub(super) buffers: Arc<BufferPool>,
    /// Breaks ties between equally loaded links when failover picks one.
    rotation: AtomicUsize,
    /// Where this streamer's round-robin starts (see
    /// [`StreamerOptions::round_robin_start`]), below the number of servers.
    round_robin_start: usize,
    /// When a server last showed it takes files (an acknowledgement, or a
    /// connection made), in nanoseconds after `created`: a closing spill
    /// thread gives up once this is too long ago (see [`resend_spilled`]).
    last_sign_of_life: AtomicU64,
    /// A bounded close reached its limit: the spill thread stops at once.
    spill_given_up: AtomicBool,
    created: Instant,
}

/// A file in the spill queue, and the server it must go to, if any (see [`pinned`]).
pub(super) struct Waiting {
    file: Spilled,
    server: Option<usize>,
}

/// Everything `flush` and `close` wait on, under one lock, so that no change
/// can slip between a waiter's check and its wait.
#[derive(Default)]
pub(super) struct Progress {
    /// Files accepted and without an outcome yet (spilled ones included).
    pending: u64,
    /// Files waiting in the spill folder, oldest first.
    spilled: VecDeque<Waiting>,
}

impl Progress {
    /// Every accepted file has its outcome, or waits in the spill folder.
    fn idle(&self) -> bool {
        self.pending <= self.spilled.len() as u64
    }
}

impl Cluster {
    pub(super) fn new(
        links: Links,
        options: StreamerOptions,
        reporter: Reporter,
        spill: Option<(Spill, Vec<Spilled>)>,
        buffers: Arc<BufferPool>,
    ) -> Cluster {
        let (spill, found) = match spill {
            Some((spill, found)) => (Some(spill), found),
            None => (None, Vec::new()),
        };
        // Files an earlier streamer left in the spill folder are this one's now.
        for spilled in &found {
            reporter.counters.queued(spilled.bytes);
        }
        let progress = Progress {
            pending: found.len() as u64,
            spilled: found
                .into_iter()
                .map(|file| Waiting { file, server: None })
                .collect(),
        };
        let round_robin_start = options
            .round_robin_start
            .unwrap_or_else(|| fastrand::usize(..))
            % links.len().max(1);
        Cluster {
            round_robin_start,
            links,
            reporter,
            distribution: Arc::clone(&options.distribution),
            options,
            accepting: AtomicBool::new(true),
            progress: Mutex::new(progress),
            idle: Condvar::new(),
            spill_wake: Condvar::new(),
            spill,
            spill_closing: AtomicBool::new(false),
            buffers,
            rotation: AtomicUsize::new(0),
            last_sign_of_life: AtomicU64::new(0),
            spill_given_up: AtomicBool::new(false),
            created: Instant::now(),
        }
    }

    /// Files an earlier streamer left in the spill folder that append to a
    /// file on their server go to the server the distribution picks for them
    /// (on the caller's thread, inside `Streamer::new`), and nowhere else.
    pub(super) fn pin_found_files(&self) {
        let mut progress = self.lock_progress();
        for waiting in progress.spilled.iter_mut() {
            if pinned(&waiting.file.name) {
                let chosen = self.choose(None, &waiting.file.name);
                waiting.server = Some(chosen.min(self.links.len() - 1));
            }
        }
    }

    /// Tells the state callback, if any, about a change of server `index`'s
    /// state (nothing when it did not change). Called by the link's threads,
    /// with no lock of the link held.
    pub(super) fn report_state(&self, index: usize) {
        let link = &self.links[index];
        link.cell.report(
            index,
            || link.server_state(),
            self.options.on_server_state.as_ref(),
            self.reporter.is_silenced(),
        );
    }

    /// A server showed it takes files (see `last_sign_of_life`).
    pub(super) fn sign_of_life(&self) {
        self.last_sign_of_life
            .store(self.nanos_since_created(), Ordering::Relaxed);
    }

    fn nanos_since_created(&self) -> u64 {
        u64::try_from(self.created.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// How long since a server last took a file or a connection.
    fn quiet_for(&self) -> Duration {
        let last = self.last_sign_of_life.load(Ordering::Relaxed);
        Duration::from_nanos(self.nanos_since_created().saturating_sub(last))
    }

    /// A closing streamer gives up on its spilled files once no server has
    /// taken a file (or a connection) for this long.
    pub(super) fn drain_patience(&self) -> Duration {
        self.options.connect_timeout + self.options.response_timeout
    }

    /// Which servers take spilled files now: up, not resting, not silent
    /// with files held (see [`Link::takes_spilled`]). Called with no lock of
    /// the cluster held.
    fn usable_links(&self) -> Vec<bool> {
        self.links
            .iter()
            .map(|link| link.server_state() == ServerState::Up && link.takes_spilled())
            .collect()
    }

    /// Where the spill thread sends a file that may go anywhere: the server
    /// failover would pick, if it takes spilled files now, else the first
    /// that does.
    fn pick_for_spilled(&self) -> Option<usize> {
        let usable = self.usable_links();
        match self.pick_live(None) {
            Some(i) if usable[i] => Some(i),
            _ => usable.iter().position(|&usable| usable),
        }
    }

    pub fn counters(&self) -> &Counters {
        &self.reporter.counters
    }

    fn lock_progress(&self) -> MutexGuard<'_, Progress> {
        self.progress.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Ends a file: counts it, tells the callback, and wakes `flush`/`close`.
    /// Every accepted file passes here exactly once.
    pub fn finish(&self, job: &Job, server: usize, result: OutcomeResult<'_>) {
        let outcome = Outcome {
            name: &job.name,
            server,
            bytes: job.len(),
            result,
        };
        self.end(&outcome, job.spill_path.as_deref());
    }

    fn end(&self, outcome: &Outcome<'_>, spill_path: Option<&Path>) {
        if let OutcomeResult::Acknowledged { .. } = &outcome.result {
            if self.spill.is_some() {
                self.sign_of_life();
            }
            if let Some(path) = spill_path {
                spill::delivered(path);
            }
        }
        // Counted on the server that gave the outcome, before the callback
        // runs (a callback reading `server_stats` sees its own file).
        if let Some(link) = self.links.get(outcome.server) {
            match outcome.result {
                OutcomeResult::Acknowledged { .. } => link.counters.acknowledged(outcome.bytes),
                OutcomeResult::Failed(_) => link.counters.failed(outcome.bytes),
            }
        }
        self.reporter.report(outcome);
        let mut progress = self.lock_progress();
        progress.pending -= 1;
        let idle = progress.idle();
        drop(progress);
        if idle {
            self.idle.notify_all();
            // A closing spill thread ends once nothing is pending.
            if self.spill.is_some() && self.spill_closing.load(Ordering::SeqCst) {
                self.spill_wake.notify_all();
            }
        }
    }

    /// A link came back: the spill thread may send again.
    pub fn link_is_up(&self) {
        if self.spill.is_some() {
            self.sign_of_life();
            self.spill_wake.notify_all();
        }
    }

    /// A live server to move `job` to, other than `except`: the one with the
    /// least outstanding bytes, healthy ones first (not resting, then not in
    /// doubt: neither silent with files held nor reconnected after a failure
    /// without an answer since), ties taken in turn. `None` when no other
    /// server is live.
    ///
    /// This runs on the library's threads (failover, spill re-sends), so it
    /// never calls the caller's distribution: that runs only inside `put`.
    pub(super) fn pick_live(&self, except: Option<usize>) -> Option<usize> {
        let n = self.links.len();
        let start = self.rotation.fetch_add(1, Ordering::Relaxed);
        let mut best: Option<((bool, bool, u64), usize)> = None;
        for offset in 0..n {
            let i = (start + offset) % n;
            if Some(i) == except {
                continue;
            }
            let Some((doubtful, outstanding)) = self.links[i].failover_rank() else {
                continue;
            };
            let key = (self.links[i].is_resting(), doubtful, outstanding);
            if best.is_none_or(|(b, _)| key < b) {
                best = Some((key, i));
            }
        }
        best.map(|(_, i)| i)
    }

    /// The distribution's choice among all servers for a new file, given
    /// their loads when the policy wants them. May be out of range (the
    /// streamer checks).
    pub(super) fn choose(&self, index: Option<i64>, name: &str) -> usize {
        let index = match index {
            Some(index) if self.distribution.round_robin_on_index() => {
                let n = self.links.len().max(1) as i64;
                Some(index.rem_euclid(n) + self.round_robin_start as i64)
            }
            other => other,
        };
        if self.distribution.uses_load() {
            let loads: Vec<_> = self.links.iter().map(Link::load).collect();
            return self.distribution.choose_by_load(&loads, index, name);
        }
        self.distribution.choose(self.links.len(), index, name)
    }

    /// Files of server `from`, whose connection failed with `reason`: moved to
    /// live servers (failover), spilled when none is live and a spill folder
    /// is set, or failed.
    pub fn reroute(&self, from: usize, jobs: Vec<Job>, reason: &str) {
        for job in jobs {
            if job.interrupted > MAX_INTERRUPTIONS {
                // A file that every connection dies on must not circle for ever.
                let error = Error::ConnectionLost {
                    server: self.links[from].server.clone(),
                    detail: format!(
                        "{reason}; {} connections ended while this file was in flight",
                        job.interrupted
                    ),
                };
                self.finish(&job, from, OutcomeResult::Failed(&error));
                continue;
            }
            let job = if pinned(&job.name) {
                job
            } else {
                match self.move_to_live(Some(from), job) {
                    None => {
                        Counters::add(&self.counters().rerouted);
                        self.links[from].counters.moved_away();
                        continue;
                    }
                    Some(job) => job,
                }
            };
            let (job, spill_problem) = match self.spill_or_keep(job, from) {
                Ok(()) => continue,
                Err(back) => back,
            };
            let mut detail = reason.to_owned();
            if pinned(&job.name) {
                detail.push_str("; a file that appends on its server is never moved");
            } else if self.options.failover {
                detail.push_str("; no other server is live");
            }
            if let Some(problem) = spill_problem {
                detail.push_str(&format!("; cannot spill: {problem}"));
            }
            let error = Error::ConnectionLost {
                server: self.links[from].server.clone(),
                detail,
            };
            self.finish(&job, from, OutcomeResult::Failed(&error));
        }
    }

    /// With failover, queues `job` on a live server other than `except`
    /// (whatever the limits: its memory was already counted). The job comes
    /// back when no server took it. With a spill folder, a server in doubt
    /// (silent, or reconnected without an answer since) does not take it
    /// either: the file is safer in the folder than moved from one silent
    /// node to another, a response timeout each time.
    fn move_to_live(&self, except: Option<usize>, job: Job) -> Option<Job> {
        if !self.options.failover {
            return Some(job);
        }
        let mut job = job;
        // Links can go down while we place the file: try each at most once more.
        for _ in 0..=self.links.len() {
            let Some(target) = self.pick_live(except) else {
                return Some(job);
            };
            if self.spill.is_some()
                && self.links[target]
                    .failover_rank()
                    .is_some_and(|(doubtful, _)| doubtful)
            {
                return Some(job);
            }
            match self.links[target].push_rerouted(job) {
                Ok(()) => return None,
                Err(back) => job = back,
            }
        }
        Some(job)
    }

    /// A file server `from` kept answering 5xx after its retries: with
    /// failover, it moves to another live server (at most once per server),
    /// and `from` is left out of the rotation for a while. Returns the job
    /// when it must fail.
    pub(super) fn move_after_errors(&self, from: usize, mut job: Job) -> Option<Job> {
        self.links[from].rest(self.options.reconnect_backoff.1);
        self.report_state(from);
        if pinned(&job.name) || job.moves as usize + 1 >= self.links.len() {
            return Some(job);
        }
        job.moves += 1;
        job.retries = 0;
        let back = self.move_to_live(Some(from), job);
        if back.is_none() {
            self.links[from].counters.moved_away();
        }
        back
    }

    /// Puts `job` (a file of `server`) in the spill folder, if there is
    /// one. On failure the job comes back, with the spill error if there was
    /// a folder.
    #[allow(clippy::result_large_err)]
    pub(super) fn spill_or_keep(
        &self,
        job: Job,
        server: usize,
    ) -> Result<(), (Job, Option<String>)> {
        let Some(spill) = &self.spill else {
            return Err((job, None));
        };
        match spill.store(&job) {
            Ok(file) => {
                let server = pinned(&job.name).then_some(server);
                self.respill(Waiting { file, server }, false);
                Ok(())
            }
            Err(error) => Err((job, Some(error.to_string()))),
        }
    }

    /// Puts a file (back) in the spill queue, at its end or (a file the spill
    /// thread could not hand on) at its front, and wakes whoever waits.
    fn respill(&self, spilled: Waiting, front: bool) {
        let mut progress = self.lock_progress();
        if front {
            progress.spilled.push_front(spilled);
        } else {
            progress.spilled.push_back(spilled);
        }
        let idle = progress.idle();
        drop(progress);
        self.spill_wake.notify_all();
        if idle {
            self.idle.notify_all();
        }
    }

    /// Queues `job` on `server`, or, with failover, on a live server when
    /// `server` is down or resting after errors, or full and silent (see
    /// below; or full, with `spread_when_full`); spills it when no server is
    /// live (without `may_move`: when `server` is down) and a spill folder is
    /// set.
    ///
    /// Passed over: with failover, a file that may move never waits for room
    /// on a server that is full and has not answered for the pass-over time
    /// ([`super::link::pass_over_after`]) while another server takes files:
    /// it goes to a live, answering server with room, or, when every such
    /// server is full, waits on the least loaded of them. When every live
    /// server is full and silent, it is spilled if there is a spill folder,
    /// and otherwise waits on the server chosen (until the response timeout
    /// fails that server's connection and moves its files, or the put
    /// timeout). Files already queued on the silent server stay there until
    /// the response timeout, as before.
    pub(super) fn enqueue(&self, server: usize, job: Job, may_move: bool) -> Result<(), Error> {
        let deadline = self
            .options
            .put_timeout
            .map(|timeout| Instant::now() + timeout);
        let may_move = may_move && self.options.failover && !pinned(&job.name);
        let pass_over = may_move && self.links.len() > 1;
        let mut target = server;
        let mut job = job;
        if may_move && self.links[target].is_resting() {
            if let Some(other) = self
                .pick_live(None)
                .filter(|&i| !self.links[i].is_resting())
            {
                target = other;
            }
        }
        // Moves away from servers that are down; passing over is not counted:
        // each one follows a silence of the pass-over time.
        let mut moves_left = self.links.len() + 1;
        let mut passing = pass_over;
        loop {
            if may_move && self.options.spread_when_full && !self.links[target].has_room_now(&job) {
                if let Some(other) = self.with_room(&job) {
                    target = other;
                }
            }
            // The link refuses at once (passed over) a file it has no room for
            // while its server is silent: no look of our own before the push.
            match self.admit_to(target, job, deadline, true, passing) {
                Err(refused) if refused.passed_over => {
                    job = refused.job;
                    match self.answering_instead_of(target, &job) {
                        Some(other) => target = other,
                        None if self.spill.is_some() => break,
                        // Nowhere better: wait here, for room or the response timeout.
                        None => passing = false,
                    }
                }
                // A server that is down: with failover, another live one; a
                // file for this server alone (`put_stream`) is spilled, if
                // there is a folder, as files rerouted from it are.
                Err(refused)
                    if matches!(refused.error, Error::ServerDown { .. })
                        && (may_move || self.spill.is_some()) =>
                {
                    job = refused.job;
                    moves_left -= 1;
                    if !may_move || moves_left == 0 {
                        break;
                    }
                    match self.pick_live(None) {
                        Some(live) => {
                            target = live;
                            passing = pass_over;
                        }
                        None => break,
                    }
                }
                Err(refused) => {
                    if matches!(refused.error, Error::QueueFull { .. }) {
                        Counters::add(&self.counters().dropped);
                    }
                    return Err(refused.error);
                }
                Ok(()) => return Ok(()),
            }
        }
        if self.spill.is_some() {
            let bytes = job.len();
            self.lock_progress().pending += 1;
            self.counters().queued(bytes);
            return match self.spill_or_keep(job, server) {
                Ok(()) => Ok(()),
                Err((_, problem)) => {
                    self.counters().unqueued(bytes);
                    self.unpend();
                    Err(Error::SpillFolder(problem.unwrap_or_default()))
                }
            };
        }
        Err(Error::ServerDown {
            server: self.links[server].server.clone(),
            detail: "no server is live".into(),
        })
    }

    /// Where a file goes instead of `silent` (full and silent): a live,
    /// answering server with room, the first from a rotating start; else the
    /// live answering server that owes the fewest bytes (it waits there);
    /// `None` when every other live server is silent too.
    fn answering_instead_of(&self, silent: usize, job: &Job) -> Option<usize> {
        let n = self.links.len();
        let start = self.rotation.fetch_add(1, Ordering::Relaxed);
        let others = (0..n)
            .map(|offset| (start + offset) % n)
            .filter(|&i| i != silent);
        let mut least: Option<(u64, usize)> = None;
        for i in others {
            if self.links[i].is_resting() {
                continue;
            }
            if self.links[i].takes_now(job) {
                return Some(i);
            }
            if let Some((false, owed)) = self.links[i].failover_rank() {
                if least.is_none_or(|(fewest, _)| owed < fewest) {
                    least = Some((owed, i));
                }
            }
        }
        least.map(|(_, i)| i)
    }

    /// Queues `job` on `server`, waiting for room up to `deadline`; a wait
    /// that is `interruptible` (a user's put) asks the interrupt check, if
    /// the options have one.
    pub(super) fn admit(
        &self,
        server: usize,
        job: Job,
        deadline: Option<Instant>,
        interruptible: bool,
    ) -> Result<(), Box<Refused>> {
        self.admit_to(server, job, deadline, interruptible, false)
    }

    /// [`Cluster::admit`]; with `pass_over`, a wait for room ends when the
    /// server turns silent (refused with `passed_over`, not counted as a drop).
    fn admit_to(
        &self,
        server: usize,
        job: Job,
        deadline: Option<Instant>,
        interruptible: bool,
        pass_over: bool,
    ) -> Result<(), Box<Refused>> {
        // Counted before it can possibly finish, uncounted if refused.
        self.lock_progress().pending += 1;
        let bytes = job.len();
        self.counters().queued(bytes);
        let interrupt = self.options.interrupt.as_ref().filter(|_| interruptible);
        let pushed = self.links[server].push(job, deadline, interrupt, pass_over, None);
        if pushed.is_err() {
            self.counters().unqueued(bytes);
            self.unpend();
        }
        pushed
    }

    /// Takes no more files: puts waiting for room (in the budget or a
    /// queue) end with [`Error::Closed`].
    pub(super) fn stop_accepting(&self) {
        self.accepting.store(false, Ordering::SeqCst);
        self.buffers.wake_waiters();
    }

    /// Room in the memory budget for a new file of `bytes`: waits up to the
    /// put timeout (and asks the interrupt check) when `may_wait`, else not
    /// at all; ends when the streamer stops accepting files.
    pub(super) fn reserve(&self, bytes: u64, may_wait: bool) -> Result<Reservation, Error> {
        let now = Instant::now();
        let deadline = match may_wait {
            true => self.options.put_timeout.map(|timeout| now + timeout),
            false => Some(now),
        };
        let open = || self.accepting.load(Ordering::SeqCst);
        let wait = RoomWait {
            deadline,
            interrupt: self.options.interrupt.as_ref().filter(|_| may_wait),
            open: &open,
            share: None,
        };
        match self.buffers.reserve(bytes, &wait) {
            Ok(reservation) => Ok(reservation),
            Err(Shortfall::Full { held }) => {
                Counters::add(&self.counters().dropped);
                Err(Error::MemoryFull {
                    held,
                    limit: self.buffers.limit(),
                })
            }
            Err(Shortfall::Closed) => Err(Error::Closed),
            Err(Shortfall::Interrupted) => Err(Error::Interrupted {
                server: "the memory budget".into(),
            }),
        }
    }

    fn unpend(&self) {
        let mut progress = self.lock_progress();
        progress.pending -= 1;
        let idle = progress.idle();
        drop(progress);
        if idle {
            self.idle.notify_all();
        }
    }

    fn with_room(&self, job: &Job) -> Option<usize> {
        (0..self.links.len()).find(|&i| self.links[i].is_up() && self.links[i].has_room_now(job))
    }

    /// Files waiting in the spill folder now.
    pub(super) fn spilled_count(&self) -> u64 {
        self.lock_progress().spilled.len() as u64
    }

    /// Waits until no file is pending except those waiting in the spill folder.
    pub(super) fn wait_idle(&self, deadline: Option<Instant>) -> Result<(), u64> {
        let mut progress = self.lock_progress();
        while !progress.idle() {
            progress = match deadline {
                None => self.idle.wait(progress).unwrap_or_else(|e| e.into_inner()),
                Some(deadline) => {
                    let now = Instant::now();
                    if now >= deadline {
                        return Err(progress.pending);
                    }
                    self.idle
                        .wait_timeout(progress, deadline - now)
                        .unwrap_or_else(|e| e.into_inner())
                        .0
                }
            };
        }
        Ok(())
    }

    /// Waits, for `flush`, until every accepted file has its outcome, or
    /// until the only files left wait in the spill folder and no server can
    /// take them now (every one down or resting): a flush never waits on a
    /// dead cluster. `Err`: the files still pending at `deadline`.
    pub(super) fn wait_flushed(&self, deadline: Option<Instant>) -> Result<(), u64> {
        let mut progress = self.lock_progress();
        loop {
            if progress.pending == 0 {
                return Ok(());
            }
            let spilled_left = progress.idle() && !progress.spilled.is_empty();
            if spilled_left && !self.spilled_may_leave_soon(&progress) {
                return Ok(());
            }
            let now = Instant::now();
            if deadline.is_some_and(|deadline| now >= deadline) {
                return Err(progress.pending);
            }
            // Link states change without waking this condition: while files
            // wait in the folder, look again every few milliseconds.
            let mut nap = deadline.map(|deadline| deadline - now);
            if spilled_left || !progress.spilled.is_empty() {
                nap = Some(nap.map_or(FLUSH_LOOK, |nap| nap.min(FLUSH_LOOK)));
            }
            progress = match nap {
                None => self.idle.wait(progress).unwrap_or_else(|e| e.into_inner()),
                Some(nap) => {
                    self.idle
                        .wait_timeout(progress, nap)
                        .unwrap_or_else(|e| e.into_inner())
                        .0
                }
            };
        }
    }

    /// Whether a server that may take files soon (see
    /// `Link::may_take_files_soon`) is there for any spilled file.
    fn spilled_may_leave_soon(&self, progress: &Progress) -> bool {
        let soon: Vec<bool> = self.links.iter().map(Link::may_take_files_soon).collect();
        let any_soon = soon.iter().any(|&soon| soon);
        progress.spilled.iter().any(|waiting| match waiting.server {
            Some(server) => soon[server],
            None => any_soon,
        })
    }

    /// A bounded close reached its limit: the spill thread stops at once.
    pub(super) fn give_up_spilling(&self) {
        self.spill_given_up.store(true, Ordering::SeqCst);
        self.spill_wake.notify_all();
        self.buffers.wake_waiters();
    }

    /// Stops the spill thread: it sends what it can while servers take
    /// files, then ends (see [`resend_spilled`]).
    pub(super) fn stop_spilling(&self) {
        self.spill_closing.store(true, Ordering::SeqCst);
        self.spill_wake.notify_all();
    }

    /// Files left in the spill folder at close: failed, kept for a later
    /// streamer. Their outcomes carry their size and [`NO_SERVER`].
    pub(super) fn fail_spilled(&self) -> u64 {
        let left: Vec<Waiting> = self.lock_progress().spilled.drain(..).collect();
        for Waiting { file: spilled, .. } in &left {
            let error = Error::Spilled {
                path: spilled.path.display().to_string(),
            };
            let outcome = Outcome {
                name: &spilled.name,
                server: NO_SERVER,
                bytes: spilled.bytes,
                result: OutcomeResult::Failed(&error),
            };
            // Not `spill_path`: a failed file stays in the folder.
            self.end(&outcome, None);
        }
        left.len() as u64
    }
}

/// Files read back from the spill folder hold at most 1/`SPILL_SHARE` of the
/// memory budget and of each server's queue (files and bytes); the rest is
/// left to new puts, so that a camera whose puts do not wait (a put timeout of
/// 0, as the Micro-Manager adapter's) is not refused while the folder drains.
/// A file alone in the budget or a queue is always taken.
pub(crate) const SPILL_SHARE: u64 = 4;

/// The spill thread: while a server is up and not resting, sends the spilled
/// files again, oldest first, straight to a link (they are pending already),
/// waiting for room like a producer, within [`SPILL_SHARE`]. A file that
/// appends on its server goes to that server only.
///
/// At close it goes on while servers take files: it ends once no file is
/// pending at all, or, when only spilled files are left and none can be sent
/// now, once no server has taken a file or a connection for one connect
/// timeout plus one response timeout ([`Cluster::drain_patience`]): a server
/// that resets a connection now and then, or restarts, is waited for; a dead
/// cluster is not. A bounded close that reaches its limit stops it at once.
pub(super) fn resend_spilled(cluster: &Cluster) {
    if cluster.spill.is_none() {
        return;
    }
    loop {
        if cluster.spill_given_up.load(Ordering::SeqCst) {
            return;
        }
        let usable = cluster.usable_links();
        let any_usable = usable.iter().any(|&up| up);
        let mut progress = cluster.lock_progress();
        let closing = cluster.spill_closing.load(Ordering::SeqCst);
        if closing && progress.pending == 0 {
            return;
        }
        let sendable = progress
            .spilled
            .iter()
            .position(|waiting| match waiting.server {
                Some(server) => usable[server],
                None => any_usable,
            });
        let Some(position) = sendable else {
            let mut nap = Duration::from_millis(200);
            if closing && progress.idle() {
                let patience = cluster.drain_patience();
                let quiet = cluster.quiet_for();
                if quiet >= patience {
                    return;
                }
                nap = nap.min(patience - quiet);
            }
            // Bounded: a link that comes back between our look and this wait
            // is noticed at the next round.
            let _ = cluster.spill_wake.wait_timeout(progress, nap);
            continue;
        };
        let Some(next) = progress.spilled.remove(position) else {
            continue;
        };
        drop(progress);
        // Room in the budget before the file is read back: waits while
        // the servers drain, up to a bounded close's limit.
        let open = || !cluster.spill_given_up.load(Ordering::SeqCst);
        let wait = RoomWait {
            deadline: None,
            interrupt: None,
            open: &open,
            share: Some(SPILL_SHARE),
        };
        let Ok(room) = cluster.buffers.reserve(next.file.bytes, &wait) else {
            cluster.respill(next, true);
            continue;
        };
        let job = match spill::load(&next.file) {
            Ok(job) => job.holding(Some(room)),
            Err(error) => {
                // Unreadable: it can never be sent; tell the caller and move on.
                let file = &next.file;
                let error = Error::SpillFolder(format!("{}: {error}", file.path.display()));
                let outcome = Outcome {
                    name: &file.name,
                    server: NO_SERVER,
                    bytes: file.bytes,
                    result: OutcomeResult::Failed(&error),
                };
                cluster.end(&outcome, None);
                continue;
            }
        };
        let target = match next.server {
            Some(server) => Some(server),
            None => cluster.pick_for_spilled(),
        };
        let Some(target) = target else {
            cluster.respill(next, true);
            continue;
        };
        if cluster.links[target]
            .push(job, None, None, false, Some(SPILL_SHARE))
            .is_err()
        {
            cluster.respill(next, true);
        }
    }
}

/// The failover logic itself, without sockets: links made by `Link::new` are up
/// and take files into their queues; nothing sends them.
#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use bytes::Bytes;

    use super::*;

    type Seen = Arc<Mutex<Vec<(String, usize, bool)>>>;

    fn cluster(n: usize, options: StreamerOptions) -> (Cluster, Seen) {
        let seen: Seen = Arc::default();
        let record = Arc::clone(&seen);
        let options = options
            .servers((0..n).map(|i| format!("127.0.0.1:{}", 1000 + i)))
            .on_complete(move |outcome| {
                let entry = (
                    outcome.name.to_owned(),
                    outcome.server,
                    outcome.is_acknowledged(),
                );
                record.lock().unwrap().push(entry);
            });
        let links = options
            .servers
            .iter()
            .map(|server| Link::new(server.clone(), &options))
            .collect();
        let links = Links::new(links, 0);
        let reporter = Reporter::new(Arc::new(Counters::default()), options.completion.clone());
        let buffers = BufferPool::new(1 << 20, u64::MAX, false);
        (Cluster::new(links, options, reporter, None, buffers), seen)
    }

    fn job(name: &str, len: usize) -> Job {
        Job::new(name, Bytes::from(vec![0; len]), None)
    }

    /// Files already accepted (their outcome is due), as `admit` counts them.
    fn accepted(cluster: &Cluster, files: u64) {
        cluster.lock_progress().pending += files;
    }

    #[test]
    fn pick_live_takes_the_least_loaded_live_server_other_than_the_failed_one() {
        let (cluster, _) = cluster(3, StreamerOptions::new());
        cluster.links[0].push_rerouted(job("a", 100)).ok().unwrap();
        cluster.links[1].push_rerouted(job("b", 50)).ok().unwrap();
        assert_eq!(cluster.pick_live(None), Some(2));
        assert_eq!(cluster.pick_live(Some(2)), Some(1));
        cluster.links[1].mark_down("gone".into());
        assert_eq!(cluster.pick_live(Some(2)), Some(0));
        cluster.links[0].mark_down("gone".into());
        assert_eq!(cluster.pick_live(Some(2)), None);
    }

    #[test]
    fn pick_live_takes_equal_servers_in_turn_and_resting_ones_last() {
        let (cluster, _) = cluster(3, StreamerOptions::new());
        let mut picked = [0; 3];
        for _ in 0..6 {
            picked[cluster.pick_live(None).unwrap()] += 1;
        }
        assert_eq!(picked, [2, 2, 2]);
        cluster.links[1].rest(Duration::from_secs(60));
        for _ in 0..6 {
            assert_ne!(cluster.pick_live(None), Some(1));
        }
        // Only a resting server left: better it than nothing.
        cluster.links[0].mark_down("gone".into());
        cluster.links[2].mark_down("gone".into());
        assert_eq!(cluster.pick_live(None), Some(1));
    }

    #[test]
    fn reroute_moves_files_to_a_live_server_and_fails_them_when_none_is_left() {
        let (cluster, seen) = cluster(2, StreamerOptions::new());
        accepted(&cluster, 3);
        cluster.links[0].mark_down("reset".into());
        cluster.reroute(0, vec![job("a", 10), job("b", 10)], "reset");
        assert_eq!(cluster.links[1].depth(), (2, 20, 0));
        assert_eq!(cluster.counters().snapshot().rerouted, 2);
        assert!(seen.lock().unwrap().is_empty(), "moved, not ended");
        cluster.links[1].mark_down("reset".into());
        cluster.reroute(1, vec![job("c", 10)], "reset too");
        assert_eq!(*seen.lock().unwrap(), [("c".to_owned(), 1, false)]);
        assert_eq!(cluster.lock_progress().pending, 2);
    }

    #[test]
    fn without_failover_reroute_fails_the_files_of_the_failed_server() {
        let (cluster, seen) = cluster(2, StreamerOptions::new().failover(false));
        accepted(&cluster, 1);
        cluster.reroute(0, vec![job("a", 10)], "reset");
        assert_eq!(cluster.links[1].depth(), (0, 0, 0));
        assert_eq!(*seen.lock().unwrap(), [("a".to_owned(), 0, false)]);
    }

    #[test]
    fn a_file_every_connection_dies_on_stops_circling() {
        let (cluster, seen) = cluster(2, StreamerOptions::new());
        accepted(&cluster, 1);
        let mut poison = job("poison", 10);
        poison.interrupted = MAX_INTERRUPTIONS + 1;
        cluster.reroute(0, vec![poison], "reset");
        assert_eq!(cluster.links[1].depth(), (0, 0, 0));
        assert_eq!(*seen.lock().unwrap(), [("poison".to_owned(), 0, false)]);
    }

    #[test]
    fn enqueue_moves_a_file_from_a_down_server_and_refuses_when_none_is_live() {
        let (cluster, _) = cluster(2, StreamerOptions::new());
        cluster.links[0].mark_down("gone".into());
        cluster.enqueue(0, job("a", 10), true).unwrap();
        assert_eq!(cluster.links[1].depth().0, 1);
        // Pinned to its server (put_stream): no move.
        assert!(matches!(
            cluster.enqueue(0, job("b", 10), false),
            Err(Error::ServerDown { .. })
        ));
        cluster.links[1].mark_down("gone".into());
        assert!(matches!(
            cluster.enqueue(0, job("c", 10), true),
            Err(Error::ServerDown { .. })
        ));
        assert_eq!(cluster.lock_progress().pending, 1, "only the queued file");
        assert_eq!(cluster.counters().snapshot().files_queued, 1);
    }

    #[test]
    fn a_file_that_keeps_getting_5xx_moves_once_per_server_then_fails() {
        let (cluster, _) = cluster(3, StreamerOptions::new());
        let moved = cluster.move_after_errors(0, job("a", 10));
        assert!(moved.is_none());
        assert!(cluster.links[0].is_resting(), "the failing server rests");
        let (taken, _, _) = cluster.links[1].depth();
        let on = if taken == 1 { 1 } else { 2 };
        let mut again = job("a", 10);
        again.moves = 1;
        assert!(cluster.move_after_errors(on, again).is_none());
        let mut last = job("a", 10);
        last.moves = 2;
        let back = cluster
            .move_after_errors(0, last)
            .expect("every server tried");
        assert_eq!(back.moves, 2);
    }

    #[test]
    fn a_put_waiting_for_the_budget_ends_when_the_streamer_stops_accepting() {
        let (cluster, _) = cluster(1, StreamerOptions::new());
        let cluster = Cluster {
            buffers: BufferPool::new(u64::MAX, 100, false),
            ..cluster
        };
        let held = cluster.reserve(100, true).ok().unwrap();
        std::thread::scope(|scope| {
            let waiter = scope.spawn(|| cluster.reserve(10, true).err());
            // No timeout on the wait: only the close can end it.
            while cluster.buffers.waiters() == 0 {
                std::thread::sleep(Duration::from_millis(1));
            }
            cluster.stop_accepting();
            assert_eq!(waiter.join().unwrap(), Some(Error::Closed));
        });
        drop(held);
        assert_eq!(cluster.buffers.reserved(), 0);
        assert_eq!(cluster.counters().snapshot().dropped, 0, "not a drop");
    }

    #[test]
    fn round_robin_starts_where_the_options_say() {
        for (start, first) in [(0, 0), (1, 1), (5, 2)] {
            let (cluster, _) = cluster(3, StreamerOptions::new().round_robin_start(Some(start)));
            let placed: Vec<usize> = (0..6).map(|i| cluster.choose(Some(i), "f")).collect();
            let expected: Vec<usize> = (0..6).map(|i| (first + i) % 3).collect();
            assert_eq!(placed, expected, "start {start}");
            // Negative indexes wrap as before.
            assert_eq!(cluster.choose(Some(-1), "f"), (first + 2) % 3);
        }
        // Least-loaded's round-robin tie-break starts there too.
        let least_loaded = StreamerOptions::new()
            .shared_distribution(crate::BuiltinDistribution::LeastLoaded.into_distribution())
            .round_robin_start(Some(1));
        let (cluster, _) = self::cluster(3, least_loaded);
        assert_eq!(cluster.choose(Some(0), "f"), 1);
        // A caller's policy gets the caller's index.
        let own = StreamerOptions::new()
            .distribution(|n: usize, index: Option<i64>, _: &str| index.unwrap() as usize % n)
            .round_robin_start(Some(1));
        let (cluster, _) = self::cluster(3, own);
        assert_eq!(cluster.choose(Some(0), "f"), 0);
    }

    #[test]
    fn without_a_start_each_streamer_draws_its_own() {
        // 64 streamers of 8 servers: all drawing the same start would have
        // a chance of 8^-63; a fixed start makes it certain.
        let starts: std::collections::HashSet<usize> = (0..64)
            .map(|_| cluster(8, StreamerOptions::new()).0.choose(Some(0), "f"))
            .collect();
        assert!(starts.len() > 1, "every streamer started at {starts:?}");
    }

    /// Server `i` holds `files` files and last answered `silent_for` ago.
    fn holding(cluster: &Cluster, i: usize, files: usize, silent_for: Duration) {
        for _ in 0..files {
            cluster.links[i]
                .push_rerouted(job("held", 10))
                .ok()
                .unwrap();
        }
        cluster.links[i].lock().heard_from = Some(Instant::now() - silent_for);
    }

    fn full_of_one() -> StreamerOptions {
        StreamerOptions::new().queue_limits(1, 1 << 20)
    }

    #[test]
    fn a_full_silent_server_is_passed_over_for_one_with_room() {
        // Without passing over, this put would wait for room on server 0
        // until the put timeout and fail.
        let options = full_of_one().put_timeout(Some(Duration::from_secs(5)));
        let (cluster, _) = cluster(3, options);
        holding(&cluster, 0, 1, Duration::from_secs(1));
        holding(&cluster, 1, 1, Duration::ZERO);
        cluster.enqueue(0, job("a", 10), true).unwrap();
        assert_eq!(cluster.links[2].depth().0, 1, "on the server with room");
        assert_eq!(cluster.counters().snapshot().dropped, 0);
    }

    #[test]
    fn a_full_server_that_answers_is_waited_for() {
        let options = full_of_one().put_timeout(Some(Duration::from_millis(20)));
        let (cluster, _) = cluster(2, options);
        // Answered just now: 20 ms of put timeout end before 50 ms of silence.
        holding(&cluster, 0, 1, Duration::ZERO);
        let refused = cluster.enqueue(0, job("a", 10), true);
        assert!(
            matches!(refused, Err(Error::QueueFull { .. })),
            "{refused:?}"
        );
        assert_eq!(cluster.links[1].depth().0, 0, "round-robin kept");
        // Pinned files and puts without failover wait too, silent or not.
        holding(&cluster, 0, 0, Duration::from_secs(1));
        let pinned = cluster.enqueue(0, job("__aggregate_txt/a", 10), true);
        assert!(matches!(pinned, Err(Error::QueueFull { .. })), "{pinned:?}");
        let strict = full_of_one()
            .failover(false)
            .put_timeout(Some(Duration::ZERO));
        let (strict, _) = self::cluster(2, strict);
        holding(&strict, 0, 1, Duration::from_secs(1));
        assert!(strict.enqueue(0, job("a", 10), true).is_err());
    }

    #[test]
    fn a_put_waiting_on_a_server_that_turns_silent_moves_on() {
        let (cluster, _) = cluster(2, full_of_one());
        holding(&cluster, 0, 1, Duration::ZERO);
        holding(&cluster, 1, 0, Duration::ZERO);
        let cluster = Arc::new(cluster);
        let (done, result) = std::sync::mpsc::channel();
        let putter = Arc::clone(&cluster);
        std::thread::spawn(move || {
            let _ = done.send(putter.enqueue(0, job("a", 10), true).is_ok());
        });
        // It waits for room on server 0 (no put timeout) until server 0 has
        // been silent for the pass-over time; it must not wait for ever.
        let moved = result.recv_timeout(Duration::from_secs(20));
        assert_eq!(moved, Ok(true), "the put still waits on the silent server");
        assert_eq!(cluster.links[1].depth().0, 1);
    }

    #[test]
    fn when_every_server_is_full_and_silent_a_put_spills_or_waits_for_its_timeout() {
        let folder = tempfile::tempdir().unwrap();
        let (cluster, _) = cluster(2, full_of_one());
        let cluster = Cluster {
            spill: Some(Spill::open(folder.path(), true).unwrap().0),
            ..cluster
        };
        holding(&cluster, 0, 1, Duration::from_secs(1));
        holding(&cluster, 1, 1, Duration::from_secs(1));
        cluster.enqueue(0, job("a", 10), true).unwrap();
        assert_eq!(cluster.spilled_count(), 1);
        let options = full_of_one().put_timeout(Some(Duration::from_millis(20)));
        let (bounded, _) = self::cluster(2, options);
        holding(&bounded, 0, 1, Duration::from_secs(1));
        holding(&bounded, 1, 1, Duration::from_secs(1));
        let refused = bounded.enqueue(0, job("a", 10), true);
        assert!(
            matches!(refused, Err(Error::QueueFull { .. })),
            "{refused:?}"
        );
    }

    #[test]
    fn a_full_answering_server_is_preferred_to_a_full_silent_one() {
        let options = full_of_one().put_timeout(Some(Duration::from_millis(200)));
        let (cluster, _) = cluster(3, options);
        holding(&cluster, 0, 1, Duration::from_secs(1));
        holding(&cluster, 1, 1, Duration::from_secs(1));
        holding(&cluster, 2, 1, Duration::ZERO);
        // Passed over to server 2, the only one answering; it stays full, so
        // the put waits there, until server 2 in turn is silent: then no
        // answering server is left, and it waits for its timeout.
        let refused = cluster.enqueue(0, job("a", 10), true);
        assert!(
            matches!(refused, Err(Error::QueueFull { server, .. }) if server.ends_with("1002"))
        );
    }

    #[test]
    fn moved_files_go_to_servers_that_answer_before_ones_in_doubt() {
        let (cluster, _) = cluster(3, StreamerOptions::new());
        // Server 1 reconnected after a failure and has not answered since;
        // server 2 holds files and is silent; server 0 owes the most but answers.
        cluster.links[1].lock().unproven = true;
        holding(&cluster, 2, 1, Duration::from_secs(1));
        holding(&cluster, 0, 3, Duration::ZERO);
        for _ in 0..4 {
            assert_eq!(cluster.pick_live(None), Some(0));
        }
        cluster.links[0].mark_down("gone".into());
        // Only doubtful ones left: the one that owes the least.
        assert_eq!(cluster.pick_live(None), Some(1));
    }

    #[test]
    fn wait_idle_counts_spilled_files_as_idle_and_times_out_otherwise() {
        let folder = tempfile::tempdir().unwrap();
        let (cluster, _) = cluster(1, StreamerOptions::new());
        let cluster = Cluster {
            spill: Some(Spill::open(folder.path(), true).unwrap().0),
            ..cluster
        };
        accepted(&cluster, 1);
        let soon = Some(Instant::now() + Duration::from_millis(20));
        assert_eq!(cluster.wait_idle(soon), Err(1));
        assert!(cluster.spill_or_keep(job("a", 3), 0).is_ok());
        assert_eq!(cluster.wait_idle(soon), Ok(()));
        assert_eq!(cluster.spilled_count(), 1);
    }

    #[test]
    fn files_queued_on_a_link_up_between_connections_move_on_when_it_is_withdrawn() {
        // Server 1's connection was closed idle (up, no socket); a put queued
        // a file there; discovery withdrew it before its thread woke.
        let (cluster, _) = cluster(2, StreamerOptions::new());
        let cluster = Arc::new(cluster);
        accepted(&cluster, 1);
        cluster.links[1].push_rerouted(job("a", 10)).ok().unwrap();
        assert!(cluster.links[1].withdraw("withdrawn".into()));
        let thread = super::super::session::spawn_link(&cluster, 1, None).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while cluster.links[0].depth().0 == 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        let moved = cluster.links[0].depth().0;
        cluster.links[1].start_close();
        thread.join().unwrap();
        assert_eq!(moved, 1, "the file moved to the live server");
        assert_eq!(cluster.links[1].depth(), (0, 0, 0));
    }
}
