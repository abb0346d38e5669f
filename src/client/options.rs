//! How to build a streamer: servers, policies, limits and timeouts.

use std::sync::Arc;
use std::time::Duration;

use crate::distribution::{Distribution, RoundRobin};
use crate::filter::{Filter, SharedFilter};
use crate::outcome::{CompletionFn, Outcome};
use crate::server_state::{ServerState, ServerStateFn};

/// Default queue limit per server, in files.
pub const DEFAULT_QUEUE_FILES: usize = 256;
/// Default queue limit per server, in bytes.
pub const DEFAULT_QUEUE_BYTES: u64 = 256 * 1024 * 1024;
/// Default connect timeout.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Default time a server may take to answer before its connection is failed
/// (30 s, as the reference).
pub const DEFAULT_RESPONSE_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a server whose queue is full may stay silent (no answer) before
/// new files pass it over for a server with room (with failover; capped at a
/// quarter of the response timeout): see [`StreamerOptions::failover`]. Far
/// under the response timeout (which fails the connection and moves the
/// files it holds), and long enough that a server that answers, however
/// slowly, is waited for: its answers come more often than that unless one
/// file takes longer than 50 ms to send and store (a 6 MB file at 1 Gbit/s);
/// a server that full and that slow is better passed over anyway.
pub const PASS_OVER_SILENCE: Duration = Duration::from_millis(50);

/// Default number of times a file answered 5xx is sent again before it fails.
pub const DEFAULT_MAX_RETRIES: u32 = 2;
/// Default interval at which an idle sender looks at its queue while files
/// come close together (see [`StreamerOptions::sender_poll`]).
pub const DEFAULT_SENDER_POLL: Duration = Duration::from_millis(1);
/// Default memory budget of a streamer: 1 GiB, whatever the number of
/// servers (see [`StreamerOptions::memory_limit`]). About a second of the
/// fastest sCMOS camera (2048 x 2048 x 16 bit at 100 frames per second is
/// 0.84 GB/s), four default queues' worth: enough to ride out a server's
/// hiccup, and small enough that several cameras fit in one computer.
pub const DEFAULT_MEMORY_LIMIT: u64 = 1 << 30;

/// Default period of live membership with a serverfilter (see
/// [`StreamerOptions::discovery_period`]): 10 s, so that a node added to a
/// running cluster takes files within seconds, while a round (a registry
/// read, an mDNS browse of 2.5 s, a TCP probe of each server) costs little.
pub const DEFAULT_DISCOVERY_PERIOD: Duration = Duration::from_secs(10);

/// How to build a [`crate::Streamer`] (or a lone [`crate::Stream`]).
#[derive(Clone)]
pub struct StreamerOptions {
    pub(crate) servers: Vec<String>,
    pub(crate) distribution: Arc<dyn Distribution>,
    pub(crate) filter: Option<SharedFilter>,
    pub(crate) completion: Option<CompletionFn>,
    pub(crate) queue_max_files: usize,
    pub(crate) queue_max_bytes: u64,
    pub(crate) memory_limit: u64,
    pub(crate) put_timeout: Option<Duration>,
    pub(crate) connect_timeout: Duration,
    pub(crate) response_timeout: Duration,
    pub(crate) failover: bool,
    pub(crate) max_retries: u32,
    pub(crate) spread_when_full: bool,
    pub(crate) reconnect_backoff: (Duration, Duration),
    pub(crate) sender_poll: Option<Duration>,
    pub(crate) spill_dir: Option<std::path::PathBuf>,
    /// Sync spilled files and their folders (see [`StreamerOptions::spill_without_sync`]).
    pub(crate) spill_sync: bool,
    pub(crate) discovery: Option<crate::discovery::DiscoveryOptions>,
    pub(crate) discovery_period: Duration,
    pub(crate) interrupt: Option<InterruptCheck>,
    pub(crate) require_all_servers: bool,
    pub(crate) on_server_state: Option<ServerStateFn>,
    pub(crate) round_robin_start: Option<usize>,
}

/// See [`StreamerOptions::interrupt_check`].
pub type InterruptCheck = Arc<dyn Fn() -> bool + Send + Sync>;

/// How often a `put` waiting for room calls the interrupt check.
pub const INTERRUPT_CHECK_INTERVAL: Duration = Duration::from_millis(100);

impl Default for StreamerOptions {
    fn default() -> Self {
        StreamerOptions {
            servers: Vec::new(),
            distribution: Arc::new(RoundRobin),
            filter: None,
            completion: None,
            queue_max_files: DEFAULT_QUEUE_FILES,
            queue_max_bytes: DEFAULT_QUEUE_BYTES,
            memory_limit: DEFAULT_MEMORY_LIMIT,
            put_timeout: None,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            response_timeout: DEFAULT_RESPONSE_TIMEOUT,
            failover: true,
            max_retries: DEFAULT_MAX_RETRIES,
            spread_when_full: false,
            reconnect_backoff: (Duration::from_millis(50), Duration::from_secs(5)),
            sender_poll: Some(DEFAULT_SENDER_POLL),
            spill_dir: None,
            spill_sync: true,
            discovery: None,
            discovery_period: DEFAULT_DISCOVERY_PERIOD,
            interrupt: None,
            require_all_servers: false,
            on_server_state: None,
            round_robin_start: None,
        }
    }
}

impl StreamerOptions {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a server, `host:port`.
    pub fn server(mut self, server: impl Into<String>) -> Self {
        self.servers.push(server.into());
        self
    }

    /// Adds servers, `host:port` each.
    pub fn servers<S: Into<String>>(mut self, servers: impl IntoIterator<Item = S>) -> Self {
        self.servers.extend(servers.into_iter().map(Into::into));
        self
    }

    /// The distribution policy (default: [`RoundRobin`]).
    pub fn distribution(mut self, distribution: impl Distribution + 'static) -> Self {
        self.distribution = Arc::new(distribution);
        self
    }

    /// The distribution policy, already shared.
    pub fn shared_distribution(mut self, distribution: Arc<dyn Distribution>) -> Self {
        self.distribution = distribution;
        self
    }

    /// Where round-robin starts: with `Some(start)`, the file of index `i`
    /// goes to server `(i + start) % n` (`Some(0)`: server `i % n`, exactly
    /// as PYME's `distribution_function_round_robin`); with `None` (the
    /// default) each streamer draws its own start at random when it is made,
    /// so that cameras triggered together do not send their frame `i` to the
    /// same server at the same moment. Applies to the policies that place
    /// files round-robin on the index ([`RoundRobin`] and the tie-break of
    /// [`crate::distribution::LeastLoaded`], see
    /// [`Distribution::round_robin_on_index`]); a caller's own policy gets
    /// the index unchanged. A program that needs to know where frame `i`
    /// lands sets a start.
    pub fn round_robin_start(mut self, start: Option<usize>) -> Self {
        self.round_robin_start = start;
        self
    }

    /// The filter run on every file before it is sent (default: none).
    pub fn filter(mut self, filter: impl Filter + 'static) -> Self {
        self.filter = Some(Arc::new(filter));
        self
    }

    /// The filter, already shared.
    pub fn shared_filter(mut self, filter: Option<SharedFilter>) -> Self {
        self.filter = filter;
        self
    }

    /// Called once for every file, with its outcome (see [`CompletionFn`]).
    pub fn on_complete(
        mut self,
        completion: impl Fn(&Outcome<'_>) + Send + Sync + 'static,
    ) -> Self {
        self.completion = Some(Arc::new(completion));
        self
    }

    /// Queue limits per server: files and bytes accepted and not yet answered.
    /// Files read back from the spill folder are queued only while everything
    /// the server holds, the file included, stays within a quarter of both
    /// limits (or alone): the rest is left to new puts.
    pub fn queue_limits(mut self, max_files: usize, max_bytes: u64) -> Self {
        self.queue_max_files = max_files;
        self.queue_max_bytes = max_bytes;
        self
    }

    /// The memory budget: all the bytes the streamer holds for files at once,
    /// whatever the number of servers (default [`DEFAULT_MEMORY_LIMIT`], 1 GiB).
    /// It bounds the files queued or waiting for their answer on every server
    /// (files moved by failover included: they keep the room they took),
    /// the copying put's buffer pool (free buffers are given up when files
    /// need the room), filter output while it is sent, and files read back
    /// from the spill folder (which take at most a quarter of it, and of each
    /// server's queue, leaving the rest to new puts). The per-server [`StreamerOptions::queue_limits`]
    /// apply inside it. A put finding the budget full waits as for a full
    /// queue ([`StreamerOptions::put_timeout`], the interrupt check) and
    /// then fails with [`crate::Error::MemoryFull`]. A file larger than the
    /// whole budget is taken only when the streamer holds no other file (it
    /// goes alone, as a file larger than a queue's byte limit does), so 0
    /// and 1 mean "one file at a time".
    pub fn memory_limit(mut self, bytes: u64) -> Self {
        self.memory_limit = bytes;
        self
    }

    /// Backpressure: how long `put` waits for room in a full queue before it
    /// fails with [`crate::Error::QueueFull`]. `None` (the default) blocks as long
    /// as it takes; `Some(Duration::ZERO)` fails fast, so a camera driver can
    /// count its own drops.
    pub fn put_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.put_timeout = timeout;
        self
    }

    /// A check for a `put` that waits for room in a full queue: called every
    /// [`INTERRUPT_CHECK_INTERVAL`] of waiting, on the thread calling `put`,
    /// with no lock of the library held. When it returns `true` the put gives
    /// up at once with [`crate::Error::Interrupted`]: nothing is queued, no
    /// outcome follows, and it is not counted as dropped. For hosts whose
    /// interrupts must reach a blocked call: the Python package checks for
    /// Ctrl-C here. A put that does not wait never calls it.
    pub fn interrupt_check(mut self, check: impl Fn() -> bool + Send + Sync + 'static) -> Self {
        self.interrupt = Some(Arc::new(check));
        self
    }

    /// Refuse to start unless every server can be reached
    /// ([`crate::Error::Connect`] naming the first that cannot). Off by
    /// default: a server that cannot be reached at start (refused, timed
    /// out, or its name cannot be resolved for now) starts
    /// [`ServerState::Down`] and its link connects with the reconnect
    /// backoff, as after an outage that began later. A malformed address or
    /// a host name that does not exist is an error either way.
    pub fn require_all_servers(mut self, require: bool) -> Self {
        self.require_all_servers = require;
        self
    }

    /// Called on every change of a server's state (see [`ServerStateFn`] for
    /// the thread and what it may call), and at start for every server that
    /// could not be reached.
    pub fn on_server_state(
        mut self,
        callback: impl Fn(usize, ServerState) + Send + Sync + 'static,
    ) -> Self {
        self.on_server_state = Some(std::sync::Arc::new(callback));
        self
    }

    /// The state callback, already shared (`None`: none).
    pub fn shared_server_state_callback(mut self, callback: Option<ServerStateFn>) -> Self {
        self.on_server_state = callback;
        self
    }

    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How long a server may stay silent while answers are due before its
    /// connection is failed. The silence counts from when an answer falls due
    /// (checked every quarter of the timeout, so a stalled server is failed
    /// after 1 to 1.25 timeouts), never from an idle spell before a file.
    pub fn response_timeout(mut self, timeout: Duration) -> Self {
        self.response_timeout = timeout;
        self
    }

    /// When a server's connection fails, move its queued and unanswered files
    /// to the live servers (default: on). Off: they fail with the reason.
    ///
    /// With failover, a new file also avoids servers that cannot take it
    /// soon, whatever the distribution chose: a server that is down, one
    /// resting after repeated 5xx answers, and one whose queue is full and
    /// that has not answered for [`PASS_OVER_SILENCE`] (a hung process, a
    /// dead link; "passed over"). A passed-over file goes to a live server
    /// that answers and has room (or, if all of them are full, waits for the
    /// least loaded of them); when every live server is full and silent it
    /// is spilled if a spill folder is set, and otherwise waits for room on
    /// the server chosen, until the response timeout fails that server and
    /// moves its files, or the put timeout ends the wait. Files of
    /// `__aggregate_*` and `__pyramid_*` operations and files of
    /// [`crate::Streamer::put_stream`] are never moved.
    pub fn failover(mut self, failover: bool) -> Self {
        self.failover = failover;
        self
    }

    /// How many times a file answered 5xx is sent again before it fails (default 2).
    pub fn max_retries(mut self, retries: u32) -> Self {
        self.max_retries = retries;
        self
    }

    /// When the chosen server's queue is full, put the file on another live
    /// server with room instead of waiting (default: off).
    pub fn spread_when_full(mut self, spread: bool) -> Self {
        self.spread_when_full = spread;
        self
    }

    /// How `put` hands a file to an idle sender thread. `Some(interval)` (the
    /// default, 1 ms) is adaptive: a sender whose queue runs dry looks at it
    /// every `interval`, at most 4 times, and only if its files come close
    /// together (its last idle spell was at most 4 intervals); then `put`
    /// makes no system call, and a file may wait up to `interval` before it
    /// is sent. Otherwise (files further apart, or none) the sender sleeps
    /// until `put` wakes it (a futex call and an interrupt to another core,
    /// 10 to 50 us on a busy machine): an idle link never wakes, whatever
    /// the number of servers. `None`: the sender always sleeps until woken.
    pub fn sender_poll(mut self, interval: Option<Duration>) -> Self {
        self.sender_poll = interval.filter(|interval| !interval.is_zero());
        self
    }

    /// Reconnect delays after a failure: the first, doubling (with jitter) up to the largest.
    pub fn reconnect_backoff(mut self, first: Duration, largest: Duration) -> Self {
        self.reconnect_backoff = (first, largest.max(first));
        self
    }

    /// Ride through a whole-cluster outage (off by default): files that cannot
    /// be delivered because no server is live are written to this folder
    /// instead of failing, and sent again, oldest first, when a server is back.
    /// A streamer given a folder that holds files from an earlier one sends them too.
    /// One streamer (or stream) per folder: it holds the folder's lock file
    /// `.pyme-lock` while open, and a second one on the folder, in this
    /// process or another, fails with [`crate::Error::SpillBusy`]. A put that
    /// spills returns once the file and its folder entries are synced to disk.
    pub fn spill_dir(mut self, folder: impl Into<std::path::PathBuf>) -> Self {
        self.spill_dir = Some(folder.into());
        self
    }

    /// For the benchmark that measures what syncing a spilled file costs
    /// (benches/spill_sync.rs) only: spilled files are not synced to disk, so
    /// a power cut may lose files the program was told are safe.
    #[doc(hidden)]
    pub fn spill_without_sync(mut self) -> Self {
        self.spill_sync = false;
        self
    }

    /// Find the servers of the cluster named `serverfilter` (PYME's way: every
    /// data server whose advertised name contains it, found over mDNS and the
    /// local registry, this computer's first) when the streamer is built, in
    /// addition to any servers given. See [`crate::discovery`].
    pub fn serverfilter(self, serverfilter: &str) -> Self {
        self.discovery(crate::discovery::DiscoveryOptions::for_cluster(
            serverfilter,
        ))
    }

    /// Like [`StreamerOptions::serverfilter`], with every discovery setting
    /// (mDNS wait, registry path, sources).
    pub fn discovery(mut self, options: crate::discovery::DiscoveryOptions) -> Self {
        self.discovery = Some(options);
        self
    }

    /// Live membership: with a serverfilter ([`StreamerOptions::serverfilter`]
    /// or [`StreamerOptions::discovery`]), discovery runs again every
    /// `period` during the acquisition (default
    /// [`DEFAULT_DISCOVERY_PERIOD`], 10 s; zero: only once, at start).
    /// A server found that is not yet one of the streamer's joins it with the
    /// next index (the servers' indices never change: a user distribution
    /// sees the number of servers grow); a server found by discovery that is
    /// missing from two rounds in a row is withdrawn: marked
    /// [`ServerState::Down`], its files move on (failover) and it does not
    /// reconnect until discovery finds it again. Servers given by address are
    /// never withdrawn. The state callback is told of both. Without a
    /// serverfilter this does nothing. See docs/DISCOVERY.md, "Live membership".
    pub fn discovery_period(mut self, period: Duration) -> Self {
        self.discovery_period = period;
        self
    }

    /// The discovery settings, if servers are to be found by serverfilter.
    pub fn discovery_options_mut(&mut self) -> Option<&mut crate::discovery::DiscoveryOptions> {
        self.discovery.as_mut()
    }
}

/// A server address as the options take it: `host:port`, with an IPv6 host in
/// brackets (`[::1]:15348`). A host already in brackets is kept as it is.
pub fn server_address(host: &str, port: u16) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}
