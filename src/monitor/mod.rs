//! The cluster monitor (`pyme-stream monitor`): polls every data server's `/__status`
//! about once a second and serves what it learns as a page, Prometheus metrics and
//! JSON.
//!
//! ```text
//! servers listed, or found by   discover.rs: pyme-monitor-discovery, every 5 s: the
//! serverfilter  ───────────────► registry and mDNS; new servers added, vanished ones down
//!        │ at most --max-servers (MAX_SERVERS) followed; the rest counted as left out
//!        │ a fixed pool of POLLER_THREADS threads (poller.rs: pyme-monitor-poller-N)
//!        ▼
//!   fetch.rs  GET /__status, bounded by a deadline ──► reading.rs (our keys, PYME's)
//!        │                                                     │
//!        ▼                                                     ▼
//!   record.rs: up or down, rates, ten minutes of history (in memory), per server
//!        │
//!        ▼
//!   view.rs: /api/status (JSON), /metrics (Prometheus) ──► http.rs: pyme-monitor-http,
//!   assets/page.html: the page, which reads /api/status      a thread per request
//! ```
//!
//! In scope: polling (a bounded pool of threads, servers that fail kept from taking
//! them all, so silent servers never delay the others), the figures and their history, serving them read-only without
//! authentication. Out of scope: changing anything on a server, persisting history,
//! TLS. A server is down when its last poll failed (no connection, no whole answer
//! within the timeout, not a status) or answered longer ago than
//! [`record::stale_after`] (one interval, one timeout and 0.7 s); with the defaults
//! a server that stops answering is shown down at most one interval plus one
//! timeout (1.8 s) after its last answer.

mod discover;
pub mod fetch;
mod http;
mod poller;
pub mod reading;
pub mod record;
mod view;

use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use crate::discovery::DiscoveryOptions;
use record::Record;

/// The default port of `pyme-stream monitor`.
pub const DEFAULT_PORT: u16 = 15390;

/// How often each server is polled by default.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(1);

/// How long a poll may take by default, connection included.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(800);

/// The most servers followed by default (`--max-servers`): beyond it, servers listed or
/// discovered are left out and counted (`servers_left_out` in `/api/status`), so that a
/// registry or mDNS flooded with fake entries, or a huge `--servers`, cannot make the
/// monitor hold unbounded memory. A lab cluster is tens of servers.
pub const MAX_SERVERS: usize = 1024;

pub use poller::{FAILING_POLLERS, POLLER_THREADS};

/// What to watch and where to serve.
#[derive(Debug, Clone)]
pub struct MonitorConfig {
    /// Servers to watch, `host:port`.
    pub servers: Vec<String>,
    /// Watch the servers of this cluster too, found again every few seconds.
    pub discovery: Option<DiscoveryOptions>,
    pub bind: String,
    /// 0 picks a free port.
    pub port: u16,
    pub interval: Duration,
    pub timeout: Duration,
    /// The most servers followed at once (at least 1).
    pub max_servers: usize,
}

impl Default for MonitorConfig {
    fn default() -> Self {
        MonitorConfig {
            servers: Vec::new(),
            discovery: None,
            bind: "127.0.0.1".to_owned(),
            port: DEFAULT_PORT,
            interval: DEFAULT_INTERVAL,
            timeout: DEFAULT_TIMEOUT,
            max_servers: MAX_SERVERS,
        }
    }
}

/// One watched server.
pub(crate) struct Watched {
    /// `host:port`, the label of its metrics.
    pub address: String,
    /// Its advertised name, when discovery found it.
    pub name: Mutex<Option<String>>,
    /// Given in the configuration's `servers`: never marked unadvertised nor forgotten.
    pub listed: AtomicBool,
    /// False once discovery no longer finds it (shown down).
    pub advertised: AtomicBool,
    /// Since when discovery no longer finds it; forgotten after [`discover::FORGET_AFTER`].
    pub unadvertised_since: Mutex<Option<Instant>>,
    /// Removed from the watched servers: its poller ends.
    pub forgotten: AtomicBool,
    pub record: Mutex<Record>,
}

/// What the monitor's threads share.
pub(crate) struct Shared {
    pub config: MonitorConfig,
    pub servers: Mutex<Vec<Arc<Watched>>>,
    schedule: poller::Schedule,
    /// Servers of `--servers` beyond `max_servers` (set once at start).
    pub listed_left_out: AtomicUsize,
    /// Servers advertised in discovery's last round but not followed (no room).
    pub discovered_left_out: AtomicUsize,
    /// Whether servers left out were logged (once).
    left_out_logged: AtomicBool,
    /// Set once at shutdown; every sleeping thread waits on `wake`.
    stopping: Mutex<bool>,
    wake: Condvar,
    pub started: Instant,
    pub started_unix: SystemTime,
}

impl Shared {
    fn new(config: MonitorConfig) -> Shared {
        Shared {
            servers: Mutex::new(Vec::new()),
            schedule: poller::Schedule::default(),
            listed_left_out: AtomicUsize::new(0),
            discovered_left_out: AtomicUsize::new(0),
            left_out_logged: AtomicBool::new(false),
            stopping: Mutex::new(false),
            wake: Condvar::new(),
            started: Instant::now(),
            started_unix: SystemTime::now(),
            config,
        }
    }

    /// Sleeps until `until` or shutdown; false at shutdown.
    pub fn sleep_until(&self, until: Instant) -> bool {
        let mut stopping = self.stopping.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            if *stopping {
                return false;
            }
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return true;
            }
            stopping = self
                .wake
                .wait_timeout(stopping, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    pub fn is_stopping(&self) -> bool {
        *self.stopping.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Starts watching `address` unless it is watched already; the server. None when
    /// `max_servers` are followed already (the caller counts it as left out).
    pub fn watch(&self, address: &str) -> Option<Arc<Watched>> {
        let mut servers = self.servers.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(known) = servers.iter().find(|s| s.address == address) {
            return Some(Arc::clone(known));
        }
        if servers.len() >= self.config.max_servers {
            return None;
        }
        let watched = Arc::new(Watched {
            address: address.to_owned(),
            name: Mutex::new(None),
            listed: AtomicBool::new(false),
            advertised: AtomicBool::new(true),
            unadvertised_since: Mutex::new(None),
            forgotten: AtomicBool::new(false),
            record: Mutex::new(Record::default()),
        });
        servers.push(Arc::clone(&watched));
        drop(servers);
        self.schedule.add(Arc::clone(&watched));
        Some(watched)
    }

    /// Servers listed or advertised but not followed for want of room.
    pub fn left_out(&self) -> usize {
        self.listed_left_out.load(Ordering::Relaxed)
            + self.discovered_left_out.load(Ordering::Relaxed)
    }

    /// Says on stderr, the first time only, that servers are left out.
    pub fn log_left_out(&self) {
        let left_out = self.left_out();
        if left_out > 0 && !self.left_out_logged.swap(true, Ordering::Relaxed) {
            eprintln!(
                "monitor: following at most {} servers (--max-servers): {left_out} left out \
                 (counted in /api/status as servers_left_out); this is said once",
                self.config.max_servers
            );
        }
    }
}

/// A running monitor; [`Monitor::shutdown`] (or drop) stops and joins its threads.
pub struct Monitor {
    shared: Arc<Shared>,
    local_addr: SocketAddr,
    http: Option<http::HttpServer>,
    discovery: Option<JoinHandle<()>>,
    pollers: Vec<JoinHandle<()>>,
}

impl Monitor {
    /// Binds the listener, starts the pollers, discovery if asked, and the HTTP server.
    pub fn start(mut config: MonitorConfig) -> std::io::Result<Monitor> {
        config.max_servers = config.max_servers.max(1);
        let listener = TcpListener::bind((config.bind.as_str(), config.port))?;
        let local_addr = listener.local_addr()?;
        let shared = Arc::new(Shared::new(config));
        let mut left_out = std::collections::BTreeSet::new();
        for server in &shared.config.servers {
            match shared.watch(server) {
                Some(watched) => watched.listed.store(true, Ordering::Relaxed),
                None => {
                    left_out.insert(server.as_str());
                }
            }
        }
        shared
            .listed_left_out
            .store(left_out.len(), Ordering::Relaxed);
        shared.log_left_out();
        let threads = POLLER_THREADS.min(shared.config.max_servers);
        let mut monitor = Monitor {
            local_addr,
            http: None,
            discovery: None,
            pollers: poller::spawn(&shared, threads)?,
            shared: Arc::clone(&shared),
        };
        if let Some(options) = shared.config.discovery.clone() {
            monitor.discovery = Some(discover::spawn(Arc::clone(&shared), options)?);
        }
        monitor.http = Some(http::HttpServer::start(listener, Arc::clone(&shared))?);
        Ok(monitor)
    }

    /// The address the page and metrics are served at.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The JSON of `/api/status` now.
    pub fn status_json(&self) -> String {
        view::status_json(&self.shared)
    }

    /// Stops polling and serving, and joins every thread. A poll under way ends by
    /// its own deadline (at most the timeout).
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        *self
            .shared
            .stopping
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = true;
        self.shared.wake.notify_all();
        if let Some(http) = self.http.take() {
            http.shutdown();
        }
        if let Some(discovery) = self.discovery.take() {
            let _ = discovery.join();
        }
        self.shared.schedule.stop();
        for poller in self.pollers.drain(..) {
            let _ = poller.join();
        }
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        self.stop();
    }
}
