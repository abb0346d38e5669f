//! The cluster: what the streamer and the threads of its links share, and
//! every decision about where a file goes and how it ends.
//!
//! The streamer owns one [`Link`] per server, in the order the servers were
//! given; the server index the distribution returns is a position in that list.
//! The [`Cluster`] holds the links, the policies, the count of files without an
//! outcome, the spill folder and the reporter.
//!
//! In scope: admitting a file to a link (`enqueue`), failover (`reroute`),
//! the one place an outcome is reported (`finish`), waiting until every file
//! has one (`wait_idle`), and the spill thread.
//! Out of scope: sockets (see `session`), a link's queue (see `link`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::buffers::BufferPool;
use super::distribution::Distribution;
use super::job::{Job, Refused};
use super::link::Link;
use super::outcome::{Counters, Outcome, OutcomeResult, Reporter};
use super::spill::{self, Spill};
use crate::{Error, StreamerOptions};

/// What the streamer and the threads of its links share.
pub(crate) struct Cluster {
    pub links: Vec<Link>,
    pub options: StreamerOptions,
    pub reporter: Reporter,
    pub(super) distribution: Arc<dyn Distribution>,
    pub(super) accepting: AtomicBool,
    /// Files accepted and without an outcome yet (spilled ones included).
    pub(super) pending: Mutex<u64>,
    /// Signalled when `pending` drops, or the spill changes.
    pub(super) idle: Condvar,
    pub(super) spill: Option<Spill>,
    /// The spill thread stops once nothing more can be sent from the folder.
    pub(super) spill_closing: AtomicBool,
    /// Recycled buffers for copying puts.
    pub(super) buffers: Arc<BufferPool>,
}

impl Cluster {
    pub fn counters(&self) -> &Counters {
        &self.reporter.counters
    }

    /// Ends a file: counts it, tells the callback, and wakes `flush`/`close`.
    /// Every accepted file passes here exactly once.
    pub fn finish(&self, job: &Job, server: usize, result: OutcomeResult<'_>) {
        if let (OutcomeResult::Acknowledged { .. }, Some(path)) = (&result, &job.spill_path) {
            spill::delivered(path);
        }
        self.reporter.report(&Outcome {
            name: &job.name,
            server,
            bytes: job.len(),
            result,
        });
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        *pending -= 1;
        // Waiters need every change only when spilled files count as idle.
        let wake = *pending == 0 || self.spill.is_some();
        drop(pending);
        if wake {
            self.idle.notify_all();
        }
    }

    /// A link came back: the spill thread may send again.
    pub fn link_is_up(&self) {
        if let Some(spill) = &self.spill {
            spill.wake.notify_all();
        }
    }

    /// A live server for `job`: the distribution over the live set. `None`
    /// when no server is live.
    pub(super) fn pick_live(&self, job: &Job) -> Option<usize> {
        let live: Vec<usize> = (0..self.links.len())
            .filter(|&i| self.links[i].is_up())
            .collect();
        if live.is_empty() {
            return None;
        }
        if self.distribution.uses_load() {
            // A load-aware policy sees every server and skips the dead itself.
            let loads: Vec<_> = self.links.iter().map(Link::load).collect();
            let chosen = self
                .distribution
                .choose_by_load(&loads, job.index, &job.name);
            if loads.get(chosen).is_some_and(|load| load.live) {
                return Some(chosen);
            }
            return Some(live[chosen % live.len()]);
        }
        let chosen = self.distribution.choose(live.len(), job.index, &job.name);
        Some(live[chosen % live.len()])
    }

    /// The distribution's choice among all servers for a new file, given
    /// their loads when the policy wants them. May be out of range (the
    /// streamer checks).
    pub(super) fn choose(&self, index: Option<i64>, name: &str) -> usize {
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
            let mut job = Some(job);
            if self.options.failover {
                // Links can go down while we place the file: try each at most once more.
                for _ in 0..=self.links.len() {
                    let Some(target) = self.pick_live(job.as_ref().expect("job")) else {
                        break;
                    };
                    match self.links[target].push_rerouted(job.take().expect("job")) {
                        Ok(()) => {
                            Counters::add(&self.counters().rerouted);
                            break;
                        }
                        Err(back) => job = Some(back),
                    }
                }
            }
            let Some(job) = job else { continue };
            let (job, spill_problem) = match self.spill_or_keep(job) {
                Ok(()) => continue,
                Err(back) => back,
            };
            let mut detail = reason.to_owned();
            if self.options.failover {
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

    /// Puts `job` in the spill folder, if there is one. On failure the job
    /// comes back, with the spill error if there was a folder.
    #[allow(clippy::result_large_err)]
    fn spill_or_keep(&self, job: Job) -> Result<(), (Job, Option<String>)> {
        let Some(spill) = &self.spill else {
            return Err((job, None));
        };
        match spill.store(&job) {
            Ok(()) => {
                self.idle.notify_all();
                Ok(())
            }
            Err(error) => Err((job, Some(error.to_string()))),
        }
    }

    /// Queues `job` on `server`, or, with failover, on a live server when
    /// `server` is down (or full, with `spread_when_full`); spills it when no
    /// server is live and a spill folder is set.
    pub(super) fn enqueue(&self, server: usize, job: Job, may_move: bool) -> Result<(), Error> {
        let deadline = self
            .options
            .put_timeout
            .map(|timeout| Instant::now() + timeout);
        let may_move = may_move && self.options.failover;
        let mut target = server;
        let mut job = job;
        for _ in 0..=self.links.len() {
            if may_move && self.options.spread_when_full && !self.links[target].has_room_now(&job) {
                if let Some(other) = self.with_room(&job) {
                    target = other;
                }
            }
            match self.admit(target, job, deadline) {
                Err(refused) if may_move && matches!(refused.error, Error::ServerDown { .. }) => {
                    job = refused.job;
                    match self.pick_live(&job) {
                        Some(live) => target = live,
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
            *self.pending.lock().unwrap_or_else(|e| e.into_inner()) += 1;
            self.counters().queued(bytes);
            return match self.spill_or_keep(job) {
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

    pub(super) fn admit(
        &self,
        server: usize,
        job: Job,
        deadline: Option<Instant>,
    ) -> Result<(), Box<Refused>> {
        // Counted before it can possibly finish, uncounted if refused.
        *self.pending.lock().unwrap_or_else(|e| e.into_inner()) += 1;
        let bytes = job.len();
        let from_spill = job.spill_path.is_some();
        if !from_spill {
            self.counters().queued(bytes);
        }
        let pushed = self.links[server].push(job, deadline);
        if pushed.is_err() {
            if !from_spill {
                self.counters().unqueued(bytes);
            }
            self.unpend();
        }
        pushed
    }

    fn unpend(&self) {
        *self.pending.lock().unwrap_or_else(|e| e.into_inner()) -= 1;
        self.idle.notify_all();
    }

    fn with_room(&self, job: &Job) -> Option<usize> {
        (0..self.links.len()).find(|&i| self.links[i].is_up() && self.links[i].has_room_now(job))
    }

    /// Waits until no file is pending except those waiting in the spill folder.
    pub(super) fn wait_idle(&self, deadline: Option<Instant>) -> Result<(), u64> {
        let spilled = || self.spill.as_ref().map_or(0, |spill| spill.len() as u64);
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        while *pending > spilled() {
            pending = match deadline {
                None => self.idle.wait(pending).unwrap_or_else(|e| e.into_inner()),
                Some(deadline) => {
                    let now = Instant::now();
                    if now >= deadline {
                        return Err(*pending);
                    }
                    self.idle
                        .wait_timeout(pending, deadline - now)
                        .unwrap_or_else(|e| e.into_inner())
                        .0
                }
            };
        }
        Ok(())
    }
}

/// The spill thread: while a server is live, sends the spilled files again,
/// oldest first, through the normal put path (so it waits for room like a
/// producer). Stops at close once nothing more can be sent.
pub(super) fn resend_spilled(cluster: &Cluster) {
    let Some(spill) = &cluster.spill else { return };
    loop {
        let any_live = cluster.links.iter().any(Link::is_up);
        let mut waiting = spill.lock();
        if cluster.spill_closing.load(Ordering::SeqCst) && (waiting.is_empty() || !any_live) {
            return;
        }
        if waiting.is_empty() || !any_live {
            let _ = spill.wake.wait_timeout(waiting, Duration::from_millis(200));
            continue;
        }
        let Some(next) = waiting.pop_front() else {
            continue;
        };
        drop(waiting);
        let job = match spill::load(&next) {
            Ok(job) => job,
            Err(error) => {
                // Unreadable: it can never be sent; tell the caller and move on.
                let job = Job::new(&next.name, Bytes::new(), None);
                let error = Error::SpillFolder(format!("{}: {error}", next.path.display()));
                cluster.finish(&job, 0, OutcomeResult::Failed(&error));
                continue;
            }
        };
        let Some(target) = cluster.pick_live(&job) else {
            spill.lock().push_front(next);
            continue;
        };
        // The spilled file is pending already: hand it to a link directly.
        match cluster.links[target].push(job, None) {
            Ok(()) => {}
            Err(_) => spill.lock().push_front(next),
        }
    }
}
