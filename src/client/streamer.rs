//! `Streamer`: the public API of the client. It builds the cluster, starts and
//! joins the threads, takes `put`s and closes.
//!
//! Out of scope: what happens to a file once accepted (see `cluster`, `link`,
//! `session`).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::buffers::{BufferPool, Reservation};
use super::cluster::{resend_spilled, Cluster};
use super::fork::Born;
use super::job::Job;
use super::limits::{self, Claim};
use super::link::Link;
use super::links::{Links, MAX_SERVERS};
use super::membership::Membership;
use super::outcome::{in_callback, Counters, OutcomeResult, Reporter, Stats};
use super::resolve::{resolve, ResolveError};
use super::server_state::ServerState;
use super::server_stats::{ServerCounters, ServerStats};
use super::session;
use super::spill::Spill;
use crate::{Error, StreamerOptions};

/// How long a bounded close may take beyond its limit: time to give up the
/// files still pending and for the library's threads to end. A thread still
/// running after it (stuck in a callback or a filter) is left to end on its own.
pub const CLOSE_MARGIN: Duration = Duration::from_millis(500);

/// Streams files to a cluster of PYME data servers, one persistent pipelined
/// connection per server. `put` may be called from several threads at once.
pub struct Streamer {
    cluster: Arc<Cluster>,
    threads: Threads,
    /// In a child forked after this, every call is refused ([`Error::Forked`]).
    born: Born,
    /// The descriptors this streamer may still open (see `limits`).
    descriptors: Claim,
}

/// The threads a streamer started, joined on close.
#[derive(Default)]
struct Threads {
    links: Vec<JoinHandle<()>>,
    spill: Option<JoinHandle<()>>,
    /// The discovery thread (live membership), which starts link threads too.
    membership: Option<Membership>,
}

impl Threads {
    fn is_empty(&self) -> bool {
        self.links.is_empty() && self.spill.is_none() && self.membership.is_none()
    }
}

/// A bounded close that reached its limit: the files still pending were
/// given up (their outcome is [`Error::CloseTimeout`], counted in `stats`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{error}")]
pub struct CloseError {
    /// [`Error::CloseTimeout`]; or [`Error::InCallback`] when called from a
    /// completion callback (the streamer then closes in the background).
    pub error: Error,
    /// The statistics when the close returned.
    pub stats: Stats,
    /// A library thread was still running user code (a callback that started
    /// before the limit, or a filter) at the limit plus [`CLOSE_MARGIN`]: it
    /// was left to end on its own; no other callback starts.
    pub threads_detached: bool,
}

/// Reads the statistics of a streamer (or stream) without holding it: from
/// another thread or a completion callback while it is being closed or
/// finalized (its `stats` cannot be called then: `close` takes it by value),
/// and after, when it reads the final figures. From
/// [`Streamer::stats_probe`] or [`crate::Stream::stats_probe`].
#[derive(Clone)]
pub struct StatsProbe(Arc<Cluster>, Born);

impl StatsProbe {
    /// The statistics now, as [`Streamer::stats`].
    pub fn stats(&self) -> Stats {
        if self.1.forked() {
            return Stats::default();
        }
        stats_of(&self.0)
    }

    /// The state of server `index` now, as [`Streamer::server_state`].
    pub fn server_state(&self, index: usize) -> Option<ServerState> {
        self.0.links.get(index).map(Link::server_state)
    }

    /// The number of servers now, as [`Streamer::n_servers`].
    pub fn n_servers(&self) -> usize {
        self.0.links.len()
    }

    /// The address of server `index` (`host:port`), as [`Streamer::servers`].
    pub fn server(&self, index: usize) -> Option<String> {
        self.0.links.get(index).map(|link| link.server.clone())
    }

    /// The counters of server `index` now, as [`Streamer::server_stats`]
    /// (zeros in a forked child).
    pub fn server_stats(&self, index: usize) -> Option<ServerStats> {
        let link = self.0.links.get(index)?;
        if self.1.forked() {
            return Some(ServerCounters::default().read(ServerState::Down));
        }
        Some(link.server_stats())
    }
}

impl Streamer {
    /// Connects to every server of `options`. A server that cannot be
    /// reached (refused, timed out, or its name cannot be resolved for now)
    /// starts [`ServerState::Down`] and its link connects with the reconnect
    /// backoff: puts go where failover sends them, and with no live server
    /// they spill (spill folder) or fail at once with [`Error::ServerDown`],
    /// as in any outage. With [`StreamerOptions::require_all_servers`] such a
    /// server is an error naming it instead (and the connections already
    /// made are closed). A malformed address ([`Error::BadServerAddress`])
    /// or a host name that does not exist ([`Error::Connect`]) is an error
    /// at once either way.
    ///
    /// With a spill folder that another streamer or stream has open (in this
    /// process or another): [`Error::SpillBusy`].
    pub fn new(mut options: StreamerOptions) -> Result<Streamer, Error> {
        let born = Born::now();
        let given = options.servers.len();
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
        let descriptors = limits::claim(options.servers.len())?;
        let spill = match &options.spill_dir {
            Some(folder) => Some(Spill::open(folder, options.spill_sync)?),
            None => None,
        };
        let mut sockets = Vec::with_capacity(options.servers.len());
        let mut links = Vec::with_capacity(options.servers.len());
        for server in &options.servers {
            let connected = match resolve(server) {
                Err(no_such_name @ ResolveError::NoSuchName(_)) => {
                    return Err(Error::Connect {
                        server: server.clone(),
                        detail: no_such_name.to_string(),
                    })
                }
                Err(temporary) => Err(Error::Connect {
                    server: server.clone(),
                    detail: temporary.to_string(),
                }),
                Ok(addresses) => session::connect_to(server, &addresses, &options),
            };
            let unreachable = match connected {
                Ok(socket) => {
                    sockets.push(Some(socket));
                    None
                }
                Err(error) if options.require_all_servers => return Err(error),
                Err(error) => {
                    sockets.push(None);
                    Some(format!("unreachable since start: {error}"))
                }
            };
            let link = Link::starting(server.clone(), &options, unreachable);
            links.push(match links.len() < given {
                true => link,
                false => link.found_by_discovery(),
            });
        }
        let live_membership = options
            .discovery
            .clone()
            .filter(|_| !options.discovery_period.is_zero());
        // Without live membership the list never grows: no spare slot.
        let capacity = match live_membership {
            Some(_) => MAX_SERVERS,
            None => 0,
        };
        let links = Links::new(links, capacity);
        let buffers = BufferPool::new(
            options
                .queue_max_bytes
                .saturating_mul(options.servers.len() as u64),
            options.memory_limit,
            true,
        );
        let reporter = Reporter::new(Arc::new(Counters::default()), options.completion.clone());
        let cluster = Arc::new(Cluster::new(links, options, reporter, spill, buffers));
        cluster.pin_found_files();
        let mut streamer = Streamer {
            cluster: Arc::clone(&cluster),
            threads: Threads::default(),
            born,
            descriptors,
        };
        for (index, socket) in sockets.into_iter().enumerate() {
            streamer
                .threads
                .links
                .push(session::spawn_link(&cluster, index, socket)?);
        }
        streamer.descriptors.running(streamer.n_servers());
        if cluster.spill.is_some() {
            let spill_cluster = Arc::clone(&cluster);
            let thread = std::thread::Builder::new()
                .name("pyme-spill".into())
                .spawn(move || resend_spilled(&spill_cluster))
                .map_err(|e| Error::SpillFolder(format!("cannot start a thread: {e}")))?;
            streamer.threads.spill = Some(thread);
        }
        if let Some(discovery) = live_membership {
            let period = cluster.options.discovery_period;
            streamer.threads.membership = Some(Membership::start(&cluster, discovery, period)?);
        }
        Ok(streamer)
    }

    /// The state of server `index` now (`None`: no such server). It takes no
    /// lock that a put takes: it may be polled often, from any thread.
    pub fn server_state(&self, index: usize) -> Option<ServerState> {
        self.cluster.links.get(index).map(Link::server_state)
    }

    /// The counters of server `index` now (`None`: no such server): what it
    /// acknowledged, failed, holds queued and in flight, and how often it
    /// reconnected (see [`ServerStats`]). Like `server_state` it takes no
    /// lock that a put takes: poll it as often as a UI needs, from any thread
    /// or a callback. Each counter is exact, but a reading is not one
    /// snapshot (two counters may be read a file apart while files move).
    /// Zeros in a forked child, as `stats`.
    pub fn server_stats(&self, index: usize) -> Option<ServerStats> {
        let link = self.cluster.links.get(index)?;
        if self.born.forked() {
            return Some(ServerCounters::default().read(ServerState::Down));
        }
        Some(link.server_stats())
    }

    /// Whether this process is a child forked after the streamer was made
    /// (one atomic load: the fork is seen by a `pthread_atfork` handler).
    /// There every call is refused with [`Error::Forked`] at once, `stats`
    /// reads zeros, and `close`, `close_timeout` and dropping free only the
    /// handle's memory: the threads, connections and queues belong to the
    /// parent (its threads do not exist in the child; what they hold stays
    /// allocated), and no socket is shut. The parent is not affected, and
    /// the child may make streamers of its own.
    pub fn is_forked(&self) -> bool {
        self.born.forked()
    }

    fn refuse_if_forked(&self) -> Result<(), Error> {
        if self.born.forked() {
            return Err(Error::Forked);
        }
        Ok(())
    }

    /// What live membership refused or could not do (a server past the
    /// descriptor limit, one that could not be connected to, a round that
    /// found nothing), newest last, at most 32; empty without it (see
    /// [`StreamerOptions::discovery_period`]).
    pub fn discovery_notes(&self) -> Vec<String> {
        if self.born.forked() {
            return Vec::new();
        }
        self.threads
            .membership
            .as_ref()
            .map(Membership::notes)
            .unwrap_or_default()
    }

    /// Number of servers now. With live membership
    /// ([`StreamerOptions::discovery_period`]) it may grow during the run
    /// (a server's index never changes).
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
        self.refuse_if_forked()?;
        crate::name::check_name(name)?;
        let server = self.choose(name, index)?;
        // The room first, then the copy: the budget bounds what is copied.
        let room = self.reserve(data.len())?;
        let (data, room) = self.cluster.buffers.copy(data, room);
        self.enqueue(server, Job::new(name, data, index).holding(room), true)
    }

    /// Makes `count` buffers for copies of files of `file_bytes` bytes ready
    /// now, so that the first copying `put`s of an acquisition do not fault in
    /// fresh memory (a first fill costs many times a recycled one: see
    /// docs/PERFORMANCE.md, "the copying put"). Call it when the camera is armed,
    /// with the frame size and the number of frames expected in flight at once.
    /// The buffers count against the queue byte limit (all servers together),
    /// and files under 64 KiB are copied into plain allocations, so this may
    /// prepare fewer; it returns how many it prepared. Zero-copy puts need no
    /// buffers.
    pub fn prepare_buffers(&self, file_bytes: usize, count: usize) -> usize {
        if self.born.forked() {
            return 0;
        }
        self.cluster.buffers.prepare(file_bytes, count)
    }

    /// Queues `data` under `name` without copying it (`Bytes` can wrap a
    /// `Vec<u8>` or any owner). Blocks while the chosen queue is full, up to the
    /// put timeout. `Ok`: the file will get exactly one outcome. `Err`: nothing
    /// was queued and no outcome will follow.
    pub fn put_bytes(&self, name: &str, data: Bytes, index: Option<i64>) -> Result<(), Error> {
        self.refuse_if_forked()?;
        crate::name::check_name(name)?;
        let server = self.choose(name, index)?;
        let room = self.reserve(data.len())?;
        self.enqueue(
            server,
            Job::new(name, data, index).holding(Some(room)),
            true,
        )
    }

    /// Queues a copy of `data` under `name` on server `stream`, bypassing the
    /// distribution and failover at put time.
    pub fn put_stream(&self, stream: usize, name: &str, data: &[u8]) -> Result<(), Error> {
        self.refuse_if_forked()?;
        crate::name::check_name(name)?;
        self.check_stream(stream)?;
        let room = self.reserve(data.len())?;
        let (data, room) = self.cluster.buffers.copy(data, room);
        self.enqueue(stream, Job::new(name, data, None).holding(room), false)
    }

    /// Queues `data` under `name` on server `stream` without copying it.
    pub fn put_stream_bytes(&self, stream: usize, name: &str, data: Bytes) -> Result<(), Error> {
        self.refuse_if_forked()?;
        crate::name::check_name(name)?;
        self.check_stream(stream)?;
        let room = self.reserve(data.len())?;
        self.enqueue(
            stream,
            Job::new(name, data, None).holding(Some(room)),
            false,
        )
    }

    fn check_stream(&self, stream: usize) -> Result<(), Error> {
        let n_servers = self.n_servers();
        if stream >= n_servers {
            return Err(Error::NoSuchStream {
                index: stream,
                n_servers,
            });
        }
        Ok(())
    }

    /// Room in the memory budget for a file of `bytes`, waiting as for a
    /// full queue (the put timeout, the interrupt check; never from inside
    /// a callback), and never past the start of a close.
    fn reserve(&self, bytes: usize) -> Result<Reservation, Error> {
        if !self.cluster.accepting.load(Ordering::SeqCst) {
            return Err(Error::Closed);
        }
        self.cluster.reserve(bytes as u64, !in_callback())
    }

    /// Bytes held in the memory budget now: files queued, in flight or
    /// being handed on, free copy buffers, filter output being sent. Zero
    /// once every file has its outcome, apart from free copy buffers
    /// (see [`StreamerOptions::memory_limit`]).
    pub fn memory_in_use(&self) -> u64 {
        self.cluster.buffers.reserved() + self.cluster.buffers.free_bytes()
    }

    /// Waits until every file accepted so far has its outcome, up to
    /// `timeout` (`None`: as long as it takes). Spilled files are waited for
    /// too while a server may take them; once the only files left wait in the
    /// spill folder and every server is down or resting, it returns `Ok` at
    /// once (they stay spilled: [`Stats::spilled`] counts them), so that it
    /// never waits on a dead cluster.
    /// [`Error::InCallback`] at once from inside a completion callback.
    pub fn flush(&self, timeout: Option<Duration>) -> Result<(), Error> {
        self.refuse_if_forked()?;
        if in_callback() {
            return Err(Error::InCallback { call: "flush" });
        }
        let deadline = timeout.map(|timeout| Instant::now() + timeout);
        self.cluster
            .wait_flushed(deadline)
            .map_err(|pending| Error::FlushTimeout { pending })
    }

    /// The statistics now.
    pub fn stats(&self) -> Stats {
        self.stats_probe().stats()
    }

    /// Reads the statistics while another thread closes this streamer.
    pub fn stats_probe(&self) -> StatsProbe {
        StatsProbe(Arc::clone(&self.cluster), self.born)
    }

    /// Sends everything queued, waits for the answer to every request, joins
    /// every thread and returns the final statistics: each accepted file is
    /// then either acknowledged or failed (`files_queued == acknowledged + failed`).
    /// Spilled files are sent while servers take them (a server that resets
    /// now and then, or comes back, is waited for); once only spilled files
    /// are left and no server has taken a file or a connection for one
    /// connect timeout plus one response timeout, the rest fail with
    /// [`Error::Spilled`] and stay in the folder; `spilled` counts them.
    ///
    /// From inside a completion callback it cannot wait (the callback would
    /// wait for itself): it stops taking files, closes in the background and
    /// returns the statistics of the moment. Use [`Streamer::close_timeout`]
    /// to be told.
    pub fn close(mut self) -> Stats {
        if self.born.forked() {
            return Stats::default();
        }
        if in_callback() {
            return self.close_in_background();
        }
        close_cluster(&self.cluster, std::mem::take(&mut self.threads), None).0
    }

    /// As [`Streamer::close`], but returns within `limit` plus [`CLOSE_MARGIN`]:
    /// once `limit` has passed, no completion callback starts any more, the
    /// files still pending are given up (outcome [`Error::CloseTimeout`],
    /// counted in the statistics, their bytes released; with a spill folder
    /// they are kept there instead, as [`Error::Spilled`]), the connections
    /// are shut and the threads joined. A thread that is still inside user
    /// code (a callback that started before the limit, or a filter) at the
    /// margin is left to end on its own (`threads_detached`); it starts no
    /// other callback.
    ///
    /// `Ok` when everything ended before the limit. From inside a completion
    /// callback: [`Error::InCallback`] at once, and the streamer closes in
    /// the background.
    pub fn close_timeout(mut self, limit: Duration) -> Result<Stats, Box<CloseError>> {
        if self.born.forked() {
            return Err(Box::new(CloseError {
                error: Error::Forked,
                stats: Stats::default(),
                threads_detached: false,
            }));
        }
        if in_callback() {
            let stats = self.close_in_background();
            return Err(Box::new(CloseError {
                error: Error::InCallback {
                    call: "close_timeout",
                },
                stats,
                threads_detached: true,
            }));
        }
        let threads = std::mem::take(&mut self.threads);
        match close_cluster(&self.cluster, threads, Some(limit)) {
            (stats, CloseEnd::Complete) => Ok(stats),
            (stats, end) => Err(Box::new(CloseError {
                error: Error::CloseTimeout {
                    limit_ms: limit.as_millis().try_into().unwrap_or(u64::MAX),
                },
                stats,
                threads_detached: end == CloseEnd::Detached,
            })),
        }
    }

    /// Closes on a new thread (called where waiting would deadlock) and
    /// returns the statistics of the moment.
    fn close_in_background(&mut self) -> Stats {
        self.cluster.stop_accepting();
        let stats = self.stats();
        let threads = std::mem::take(&mut self.threads);
        let cluster = Arc::clone(&self.cluster);
        let spawned = std::thread::Builder::new()
            .name("pyme-close".into())
            .spawn(move || {
                close_cluster(&cluster, threads, None);
            });
        // Without a thread the links still end: nothing more is accepted, and
        // they stop once their files are answered (never joined).
        drop(spawned);
        stats
    }

    /// Ends the stream of server 0 with the end-of-stream sentinel, then closes.
    /// [`Error::InCallback`] from inside a completion callback (the streamer
    /// then closes in the background, without the sentinel).
    pub(crate) fn finalize(mut self, name: &str) -> Result<Stats, Error> {
        self.refuse_if_forked()?;
        if in_callback() {
            self.close_in_background();
            return Err(Error::InCallback { call: "finalize" });
        }
        crate::name::check_name(name)?;
        self.cluster.stop_accepting();
        // Spilled files go before the end of the stream: the spill thread
        // sends them while the server takes any (close's rule) and ends; only
        // then is the sentinel queued. Queued first, it closed the link under
        // the spill thread, which then kept the files (and spun on them).
        let mut threads = std::mem::take(&mut self.threads);
        self.cluster.stop_spilling();
        if let Some(spill_thread) = threads.spill.take() {
            let _ = spill_thread.join();
        }
        let mut job = Job::new(name, Bytes::new(), None);
        job.last = true;
        if let Err(refused) = self.cluster.admit(0, job, None, false) {
            // Dropping `self` closes with these threads.
            self.threads = threads;
            return Err(refused.error);
        }
        Ok(close_cluster(&self.cluster, threads, None).0)
    }

    fn choose(&self, name: &str, index: Option<i64>) -> Result<usize, Error> {
        let chosen = self.cluster.choose(index, name);
        // Read after the choice: servers may join meanwhile (never leave).
        let n_servers = self.n_servers();
        if chosen >= n_servers {
            return Err(Error::DistributionOutOfRange { chosen, n_servers });
        }
        Ok(chosen)
    }

    fn enqueue(&self, server: usize, job: Job, may_move: bool) -> Result<(), Error> {
        if !self.cluster.accepting.load(Ordering::SeqCst) {
            return Err(Error::Closed);
        }
        if in_callback() {
            return self.enqueue_without_waiting(server, job, may_move);
        }
        self.cluster.enqueue(server, job, may_move)
    }

    /// A put from inside a callback: it must not wait for room, since the
    /// room may only come from the thread that is running the callback. A
    /// full queue refuses at once ([`Error::QueueFull`]); a server that is
    /// down hands the file to a live one (failover); no spilling.
    fn enqueue_without_waiting(
        &self,
        server: usize,
        job: Job,
        may_move: bool,
    ) -> Result<(), Error> {
        let may_move =
            may_move && self.cluster.options.failover && !super::cluster::pinned(&job.name);
        let (mut target, mut job) = (server, job);
        let mut tries = self.n_servers() + 1;
        loop {
            let refused = match self.cluster.admit(target, job, Some(Instant::now()), false) {
                Ok(()) => return Ok(()),
                Err(refused) => refused,
            };
            tries -= 1;
            let live = match refused.error {
                Error::ServerDown { .. } if may_move && tries > 0 => self.cluster.pick_live(None),
                _ => None,
            };
            match live {
                Some(live) => (target, job) = (live, refused.job),
                None => {
                    if matches!(refused.error, Error::QueueFull { .. }) {
                        Counters::add(&self.cluster.counters().dropped);
                    }
                    return Err(refused.error);
                }
            }
        }
    }
}

impl Drop for Streamer {
    fn drop(&mut self) {
        if self.born.forked() {
            // The threads are the parent's: neither joined nor detached. The
            // cluster they share stays allocated (their references count).
            std::mem::forget(std::mem::take(&mut self.threads));
            std::mem::forget(Arc::clone(&self.cluster));
            return;
        }
        if self.threads.is_empty() {
            return;
        }
        if in_callback() {
            self.close_in_background();
        } else {
            close_cluster(&self.cluster, std::mem::take(&mut self.threads), None);
        }
    }
}

/// The statistics of a cluster now.
fn stats_of(cluster: &Cluster) -> Stats {
    let mut stats = cluster.counters().snapshot();
    for link in &cluster.links {
        let (files, bytes, in_flight) = link.depth();
        stats.queue_files += files;
        stats.queue_bytes += bytes;
        stats.in_flight_files += in_flight;
    }
    stats.spilled = cluster.spilled_count();
    stats
}

/// How a close ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CloseEnd {
    /// Every file had its outcome and every thread was joined.
    Complete,
    /// The limit passed: pending files were given up; threads joined.
    TimedOut,
    /// As `TimedOut`, and a thread still inside user code was left running.
    Detached,
}

/// The close: stop taking files, let every file reach its outcome (up to
/// `limit`, then give up the rest), stop the links and join the threads.
fn close_cluster(
    cluster: &Cluster,
    mut threads: Threads,
    limit: Option<Duration>,
) -> (Stats, CloseEnd) {
    let deadline = limit.map(|limit| Instant::now() + limit);
    // No server joins from now on: the links below are all there will be.
    if let Some(membership) = threads.membership.take() {
        threads.links.extend(membership.stop());
    }
    cluster.stop_accepting();
    let mut spill_thread = threads.spill;
    cluster.stop_spilling();
    // The spill thread re-sends what it can first; then links must keep
    // running until every file has its outcome (a failing link hands its
    // files to the others).
    if let Some(thread) = spill_thread.take() {
        spill_thread = join_by(thread, deadline);
    }
    let timed_out = spill_thread.is_some() || cluster.wait_idle(deadline).is_err();
    if timed_out {
        give_up_pending(cluster, limit.unwrap_or_default());
    } else {
        for link in &cluster.links {
            link.start_close();
        }
    }
    let margin = deadline.map(|deadline| deadline.max(Instant::now()) + CLOSE_MARGIN);
    let mut detached = false;
    if let Some(thread) = spill_thread {
        detached |= join_by(thread, margin).is_some();
    }
    let spilled = if detached { 0 } else { cluster.fail_spilled() };
    for thread in threads.links {
        detached |= join_by(thread, margin).is_some();
    }
    if let (false, Some(spill)) = (detached, &cluster.spill) {
        // Nothing writes in the folder any more: another streamer may have it.
        spill.unlock();
    }
    cluster.buffers.stop();
    let stats = Stats {
        spilled: spilled.max(stats_of(cluster).spilled),
        ..stats_of(cluster)
    };
    let end = match (timed_out, detached) {
        (false, false) => CloseEnd::Complete,
        (_, true) => CloseEnd::Detached,
        (true, false) => CloseEnd::TimedOut,
    };
    (stats, end)
}

/// Joins `thread` if it ends by `deadline` (`None`: however long it takes);
/// otherwise gives it back, still running.
fn join_by(thread: JoinHandle<()>, deadline: Option<Instant>) -> Option<JoinHandle<()>> {
    let Some(deadline) = deadline else {
        let _ = thread.join();
        return None;
    };
    // JoinHandle cannot wait with a limit: look at it, with short naps.
    let mut nap = Duration::from_micros(100);
    while !thread.is_finished() {
        let now = Instant::now();
        if now >= deadline {
            return Some(thread);
        }
        std::thread::sleep(nap.min(deadline - now));
        nap = (nap * 2).min(Duration::from_millis(5));
    }
    let _ = thread.join();
    None
}

/// The limit of a bounded close has passed: no callback starts any more,
/// every link is closed and its connection shut, and the files still queued
/// or in flight are given up (kept in the spill folder when there is one).
/// The link threads then find nothing left and end.
fn give_up_pending(cluster: &Cluster, limit: Duration) {
    cluster.reporter.silence();
    cluster.give_up_spilling();
    let limit_ms = limit.as_millis().try_into().unwrap_or(u64::MAX);
    let reason = format!("given up by a close bounded to {limit_ms} ms");
    // Every link first, so that none of them takes the files of another.
    let taken: Vec<(usize, Vec<Job>)> = cluster
        .links
        .iter()
        .enumerate()
        .map(|(index, link)| (index, link.abandon(&reason)))
        .collect();
    for (index, jobs) in taken {
        if cluster.spill.is_some() {
            cluster.reroute(index, jobs, &reason);
            continue;
        }
        let error = Error::CloseTimeout { limit_ms };
        for job in jobs {
            cluster.finish(&job, index, OutcomeResult::Failed(&error));
        }
    }
    cluster.link_is_up();
}

fn check_address(server: &str) -> Result<(), Error> {
    match server.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => Ok(()),
        _ => Err(Error::BadServerAddress(server.to_owned())),
    }
}
