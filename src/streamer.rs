//! Many servers behind one `put`: the distribution picks a server for each file,
//! and failover moves files away from a server whose connection failed.
//!
//! The streamer owns one [`Link`] per server, in the order the servers were
//! given; the server index the distribution returns is a position in that list.
//! The [`Cluster`] is what the streamer and the threads share: the links, the
//! policies, the count of files without an outcome, the spill folder and the
//! reporter.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::buffers::BufferPool;
use crate::distribution::Distribution;
use crate::outcome::{Counters, Outcome, OutcomeResult, Reporter, Stats};
use crate::spill::{self, Spill};
use crate::stream::{self, Job, Link, Refused};
use crate::{Error, StreamerOptions};

/// What the streamer and the threads of its links share.
pub(crate) struct Cluster {
    pub links: Vec<Link>,
    pub options: StreamerOptions,
    pub reporter: Reporter,
    distribution: Arc<dyn Distribution>,
    accepting: AtomicBool,
    /// Files accepted and without an outcome yet (spilled ones included).
    pending: Mutex<u64>,
    /// Signalled when `pending` drops, or the spill changes.
    idle: Condvar,
    spill: Option<Spill>,
    /// The spill thread stops once nothing more can be sent from the folder.
    spill_closing: AtomicBool,
    /// Recycled buffers for copying puts.
    buffers: Arc<BufferPool>,
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
    fn pick_live(&self, job: &Job) -> Option<usize> {
        let live: Vec<usize> = (0..self.links.len())
            .filter(|&i| self.links[i].is_up())
            .collect();
        if live.is_empty() {
            return None;
        }
        let chosen = self.distribution.choose(live.len(), job.index, &job.name);
        Some(live[chosen % live.len()])
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
    fn enqueue(&self, server: usize, job: Job, may_move: bool) -> Result<(), Error> {
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

    fn admit(
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
    fn wait_idle(&self, deadline: Option<Instant>) -> Result<(), u64> {
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

/// Streams files to a cluster of PYME data servers, one persistent pipelined
/// connection per server. `put` may be called from several threads at once.
pub struct Streamer {
    cluster: Arc<Cluster>,
    threads: Vec<JoinHandle<()>>,
    spill_thread: Option<JoinHandle<()>>,
}

impl Streamer {
    /// Connects to every server of `options`. A server that cannot be reached is
    /// an error naming it (and the connections already made are closed).
    pub fn new(mut options: StreamerOptions) -> Result<Streamer, Error> {
        if let Some(discovery) = &options.discovery {
            let found = crate::discovery::find_servers(discovery)?;
            options
                .servers
                .extend(found.iter().map(|server| server.host_port()));
        }
        if options.servers.is_empty() {
            return Err(Error::NoServers);
        }
        for server in &options.servers {
            check_address(server)?;
        }
        let spill = match &options.spill_dir {
            Some(folder) => Some(
                Spill::open(folder)
                    .map_err(|e| Error::SpillFolder(format!("{}: {e}", folder.display())))?,
            ),
            None => None,
        };
        let sockets = options
            .servers
            .iter()
            .map(|server| stream::connect(server, &options))
            .collect::<Result<Vec<_>, _>>()?;
        let links = options
            .servers
            .iter()
            .map(|server| Link::new(server.clone(), &options))
            .collect();
        // Files an earlier streamer left in the spill folder are this one's now.
        let counters = Arc::new(Counters::default());
        let mut already_spilled = 0;
        if let Some(spill) = &spill {
            for spilled in spill.lock().iter() {
                counters.queued(spilled.bytes);
                already_spilled += 1;
            }
        }
        let buffers = BufferPool::new(
            options
                .queue_max_bytes
                .saturating_mul(options.servers.len() as u64),
            true,
        );
        let cluster = Arc::new(Cluster {
            links,
            reporter: Reporter {
                counters,
                completion: options.completion.clone(),
            },
            distribution: Arc::clone(&options.distribution),
            options,
            accepting: AtomicBool::new(true),
            pending: Mutex::new(already_spilled),
            idle: Condvar::new(),
            spill,
            spill_closing: AtomicBool::new(false),
            buffers,
        });
        let mut streamer = Streamer {
            cluster: Arc::clone(&cluster),
            threads: Vec::with_capacity(sockets.len()),
            spill_thread: None,
        };
        for (index, socket) in sockets.into_iter().enumerate() {
            streamer
                .threads
                .push(stream::spawn_link(&cluster, index, socket)?);
        }
        if cluster.spill.is_some() {
            let spill_cluster = Arc::clone(&cluster);
            let thread = std::thread::Builder::new()
                .name("pyme-spill".into())
                .spawn(move || resend_spilled(&spill_cluster))
                .map_err(|e| Error::SpillFolder(format!("cannot start a thread: {e}")))?;
            streamer.spill_thread = Some(thread);
        }
        Ok(streamer)
    }

    /// Number of servers.
    pub fn n_servers(&self) -> usize {
        self.cluster.links.len()
    }

    /// The servers, as given.
    pub fn servers(&self) -> impl Iterator<Item = &str> {
        self.cluster.links.iter().map(|link| link.server.as_str())
    }

    /// Queues a copy of `data` under `name` on the server the distribution picks
    /// for `(name, index)`. See [`Streamer::put_bytes`].
    pub fn put(&self, name: &str, data: &[u8], index: Option<i64>) -> Result<(), Error> {
        stream::check_name(name)?;
        let server = self.choose(name, index)?;
        let data = self.cluster.buffers.copy(data);
        self.enqueue(server, Job::new(name, data, index), true)
    }

    /// Makes `count` buffers for copies of files of `file_bytes` bytes ready
    /// now, so that the first copying `put`s of an acquisition do not fault in
    /// fresh memory (1.6 to 30 ms for an 8 MiB frame on the test machine, against
    /// under 1 ms for a recycled buffer). Call it when the camera is armed,
    /// with the frame size and the number of frames expected in flight at once.
    /// The buffers count against the queue byte limit (all servers together),
    /// and files under 64 KiB are copied into plain allocations, so this may
    /// prepare fewer; it returns how many it prepared. Zero-copy puts need no
    /// buffers.
    pub fn prepare_buffers(&self, file_bytes: usize, count: usize) -> usize {
        self.cluster.buffers.prepare(file_bytes, count)
    }

    /// Queues `data` under `name` without copying it (`Bytes` can wrap a
    /// `Vec<u8>` or any owner). Blocks while the chosen queue is full, up to the
    /// put timeout. `Ok`: the file will get exactly one outcome. `Err`: nothing
    /// was queued and no outcome will follow.
    pub fn put_bytes(&self, name: &str, data: Bytes, index: Option<i64>) -> Result<(), Error> {
        stream::check_name(name)?;
        let server = self.choose(name, index)?;
        self.enqueue(server, Job::new(name, data, index), true)
    }

    /// Queues a copy of `data` under `name` on server `stream`, bypassing the
    /// distribution and failover at put time.
    pub fn put_stream(&self, stream: usize, name: &str, data: &[u8]) -> Result<(), Error> {
        self.put_stream_bytes(stream, name, self.cluster.buffers.copy(data))
    }

    /// Queues `data` under `name` on server `stream` without copying it.
    pub fn put_stream_bytes(&self, stream: usize, name: &str, data: Bytes) -> Result<(), Error> {
        stream::check_name(name)?;
        let n_servers = self.n_servers();
        if stream >= n_servers {
            return Err(Error::NoSuchStream {
                index: stream,
                n_servers,
            });
        }
        self.enqueue(stream, Job::new(name, data, None), false)
    }

    /// Waits until every file accepted so far has its outcome (or waits in the
    /// spill folder), up to `timeout` (`None`: as long as it takes).
    pub fn flush(&self, timeout: Option<Duration>) -> Result<(), Error> {
        let deadline = timeout.map(|timeout| Instant::now() + timeout);
        self.cluster
            .wait_idle(deadline)
            .map_err(|pending| Error::FlushTimeout { pending })
    }

    /// The statistics now.
    pub fn stats(&self) -> Stats {
        let mut stats = self.cluster.counters().snapshot();
        for link in &self.cluster.links {
            let (files, bytes, in_flight) = link.depth();
            stats.queue_files += files;
            stats.queue_bytes += bytes;
            stats.in_flight_files += in_flight;
        }
        stats.spilled = self
            .cluster
            .spill
            .as_ref()
            .map_or(0, |spill| spill.len() as u64);
        stats
    }

    /// Sends everything queued, waits for the answer to every request, joins
    /// every thread and returns the final statistics: each accepted file is
    /// then either acknowledged or failed (`files_queued == acknowledged + failed`).
    /// Files still in the spill folder (no server came back) fail with
    /// [`Error::Spilled`] and stay in the folder; `spilled` counts them.
    pub fn close(mut self) -> Stats {
        self.close_all()
    }

    fn close_all(&mut self) -> Stats {
        self.cluster.accepting.store(false, Ordering::SeqCst);
        if let Some(thread) = self.spill_thread.take() {
            self.cluster.spill_closing.store(true, Ordering::SeqCst);
            if let Some(spill) = &self.cluster.spill {
                spill.wake.notify_all();
            }
            let _ = thread.join();
        }
        // Links must keep running until every file has its outcome: a failing
        // link hands its files to the others.
        let _ = self.cluster.wait_idle(None);
        let spilled = self.fail_spilled();
        for link in &self.cluster.links {
            link.start_close();
        }
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
        self.cluster.buffers.stop();
        Stats {
            spilled,
            ..self.stats()
        }
    }

    /// Files left in the spill folder at close: failed, kept for a later streamer.
    fn fail_spilled(&self) -> u64 {
        let Some(spill) = &self.cluster.spill else {
            return 0;
        };
        let left: Vec<spill::Spilled> = spill.lock().drain(..).collect();
        for spilled in &left {
            let mut job = Job::new(&spilled.name, Bytes::new(), None);
            job.spill_path = Some(spilled.path.clone());
            let error = Error::Spilled {
                path: spilled.path.display().to_string(),
            };
            self.cluster.finish(&job, 0, OutcomeResult::Failed(&error));
        }
        left.len() as u64
    }

    /// Ends the stream of server 0 with the end-of-stream sentinel, then closes.
    pub(crate) fn finalize(mut self, name: &str) -> Result<Stats, Error> {
        stream::check_name(name)?;
        self.cluster.accepting.store(false, Ordering::SeqCst);
        let mut job = Job::new(name, Bytes::new(), None);
        job.last = true;
        self.cluster
            .admit(0, job, None)
            .map_err(|refused| refused.error)?;
        Ok(self.close_all())
    }

    fn choose(&self, name: &str, index: Option<i64>) -> Result<usize, Error> {
        let n_servers = self.n_servers();
        let chosen = self.cluster.distribution.choose(n_servers, index, name);
        if chosen >= n_servers {
            return Err(Error::DistributionOutOfRange { chosen, n_servers });
        }
        Ok(chosen)
    }

    fn enqueue(&self, server: usize, job: Job, may_move: bool) -> Result<(), Error> {
        if !self.cluster.accepting.load(Ordering::SeqCst) {
            return Err(Error::Closed);
        }
        self.cluster.enqueue(server, job, may_move)
    }
}

impl Drop for Streamer {
    fn drop(&mut self) {
        if !self.threads.is_empty() {
            self.close_all();
        }
    }
}

/// The spill thread: while a server is live, sends the spilled files again,
/// oldest first, through the normal put path (so it waits for room like a
/// producer). Stops at close once nothing more can be sent.
fn resend_spilled(cluster: &Cluster) {
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

fn check_address(server: &str) -> Result<(), Error> {
    match server.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => Ok(()),
        _ => Err(Error::BadServerAddress(server.to_owned())),
    }
}
