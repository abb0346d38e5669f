//! Many servers behind one `put`: the distribution picks a server for each file,
//! and failover moves files away from a server whose connection failed.
//!
//! The streamer owns one [`Link`] per server, in the order the servers were
//! given; the server index the distribution returns is a position in that list.
//! The [`Cluster`] is what the streamer and the links' threads share: the links,
//! the policies, the count of files without an outcome, and the reporter.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::distribution::Distribution;
use crate::outcome::{Counters, Outcome, OutcomeResult, Reporter, Stats};
use crate::stream::{self, Job, Link, Refused};
use crate::{Error, StreamerOptions};

/// What the streamer and the threads of its links share.
pub(crate) struct Cluster {
    pub links: Vec<Link>,
    pub options: StreamerOptions,
    pub reporter: Reporter,
    distribution: Arc<dyn Distribution>,
    accepting: AtomicBool,
    /// Files accepted and without an outcome yet.
    pending: Mutex<u64>,
    idle: Condvar,
}

impl Cluster {
    pub fn counters(&self) -> &Counters {
        &self.reporter.counters
    }

    /// Ends a file: counts it, tells the callback, and wakes `flush`/`close`
    /// when it was the last one. Every accepted file passes here exactly once.
    pub fn finish(&self, job: &Job, server: usize, result: OutcomeResult<'_>) {
        self.reporter.report(&Outcome {
            name: &job.name,
            server,
            bytes: job.len(),
            result,
        });
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        *pending -= 1;
        if *pending == 0 {
            self.idle.notify_all();
        }
    }

    /// A live server for `job` other than a failed one: the distribution over
    /// the live set. `None` when no server is live.
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
    /// live servers (failover), or failed.
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
            if let Some(job) = job {
                let detail = if self.options.failover {
                    format!("{reason}; no other server is live")
                } else {
                    reason.to_owned()
                };
                let error = Error::ConnectionLost {
                    server: self.links[from].server.clone(),
                    detail,
                };
                self.finish(&job, from, OutcomeResult::Failed(&error));
            }
        }
    }

    fn wait_idle(&self, deadline: Option<Instant>) -> Result<(), u64> {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        while *pending > 0 {
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
}

impl Streamer {
    /// Connects to every server of `options`. A server that cannot be reached is
    /// an error naming it (and the connections already made are closed).
    pub fn new(options: StreamerOptions) -> Result<Streamer, Error> {
        if options.servers.is_empty() {
            return Err(Error::NoServers);
        }
        for server in &options.servers {
            check_address(server)?;
        }
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
        let cluster = Arc::new(Cluster {
            links,
            reporter: Reporter {
                counters: Arc::default(),
                completion: options.completion.clone(),
            },
            distribution: Arc::clone(&options.distribution),
            options,
            accepting: AtomicBool::new(true),
            pending: Mutex::new(0),
            idle: Condvar::new(),
        });
        let mut threads = Vec::with_capacity(sockets.len());
        for (index, socket) in sockets.into_iter().enumerate() {
            match stream::spawn_link(&cluster, index, socket) {
                Ok(thread) => threads.push(thread),
                Err(error) => {
                    let mut streamer = Streamer { cluster, threads };
                    streamer.close_all();
                    return Err(error);
                }
            }
        }
        Ok(Streamer { cluster, threads })
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
        self.enqueue(
            server,
            Job::new(name, Bytes::copy_from_slice(data), index),
            true,
        )
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
        self.put_stream_bytes(stream, name, Bytes::copy_from_slice(data))
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

    /// Waits until every file accepted so far has its outcome, up to `timeout`
    /// (`None`: as long as it takes).
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
        stats
    }

    /// Sends everything queued, waits for the answer to every request, joins
    /// every thread and returns the final statistics: each accepted file is
    /// then either acknowledged or failed (`files_queued == acknowledged + failed`).
    pub fn close(mut self) -> Stats {
        self.close_all()
    }

    fn close_all(&mut self) -> Stats {
        self.cluster.accepting.store(false, Ordering::SeqCst);
        // Links must keep running until every file has its outcome: a failing
        // link hands its files to the others.
        let _ = self.cluster.wait_idle(None);
        for link in &self.cluster.links {
            link.start_close();
        }
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
        self.stats()
    }

    /// Ends the stream of server 0 with the end-of-stream sentinel, then closes.
    pub(crate) fn finalize(mut self, name: &str) -> Result<Stats, Error> {
        stream::check_name(name)?;
        self.cluster.accepting.store(false, Ordering::SeqCst);
        let mut job = Job::new(name, Bytes::new(), None);
        job.last = true;
        self.admit(0, job, None).map_err(|refused| refused.error)?;
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

    /// Queues `job` on `server`, or, with failover, on a live server when
    /// `server` is down (or full, with `spread_when_full`).
    fn enqueue(&self, server: usize, job: Job, may_move: bool) -> Result<(), Error> {
        if !self.cluster.accepting.load(Ordering::SeqCst) {
            return Err(Error::Closed);
        }
        let deadline = self
            .cluster
            .options
            .put_timeout
            .map(|timeout| Instant::now() + timeout);
        let may_move = may_move && self.cluster.options.failover;
        let mut target = server;
        let mut job = job;
        for _ in 0..=self.n_servers() {
            if may_move
                && self.cluster.options.spread_when_full
                && !self.cluster.links[target].has_room_now(&job)
            {
                if let Some(other) = self.with_room(&job) {
                    target = other;
                }
            }
            match self.admit(target, job, deadline) {
                Err(refused) if may_move && matches!(refused.error, Error::ServerDown { .. }) => {
                    job = refused.job;
                    match self.cluster.pick_live(&job) {
                        Some(live) => target = live,
                        None => break,
                    }
                }
                Err(refused) => {
                    let error = refused.error;
                    if matches!(error, Error::QueueFull { .. }) {
                        Counters::add(&self.cluster.counters().dropped);
                    }
                    return Err(error);
                }
                Ok(()) => return Ok(()),
            }
        }
        Err(Error::ServerDown {
            server: self.cluster.links[server].server.clone(),
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
        *self
            .cluster
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner()) += 1;
        let bytes = job.len();
        self.cluster.counters().queued(bytes);
        match self.cluster.links[server].push(job, deadline) {
            Ok(()) => Ok(()),
            Err(refused) => {
                self.cluster.counters().unqueued(bytes);
                let mut pending = self
                    .cluster
                    .pending
                    .lock()
                    .unwrap_or_else(|e| e.into_inner());
                *pending -= 1;
                if *pending == 0 {
                    self.cluster.idle.notify_all();
                }
                Err(refused)
            }
        }
    }

    fn with_room(&self, job: &Job) -> Option<usize> {
        (0..self.n_servers())
            .find(|&i| self.cluster.links[i].is_up() && self.cluster.links[i].has_room_now(job))
    }
}

impl Drop for Streamer {
    fn drop(&mut self) {
        if !self.threads.is_empty() {
            self.close_all();
        }
    }
}

fn check_address(server: &str) -> Result<(), Error> {
    match server.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => Ok(()),
        _ => Err(Error::BadServerAddress(server.to_owned())),
    }
}
