//! A PYME-compatible data server: answers pipelined HTTP/1.1 PUT and GET requests and
//! stores files write-once under a root folder (see `PYME_WIRE.md`, section 1).
//!
//! The picture, one request:
//!
//! ```text
//! accept thread (here) -> connection thread: request loop (`connection`)
//!   -> router (`router`: one table, method + first path segment -> operation)
//!   -> operation (`ops/`: one file per family, its own name and query parser)
//!   -> storage (`storage`, with the system calls in `fs` and the spares)
//!
//! ops/: files (PUT/GET of files, folder listings), aggregate_txt, status, glob,
//!       mirror (-> peers), pyramid (-> `pyramid`), h5r and h5 (HDF5, the `hdf5`
//!       feature: -> `h5r`, `h5` -> `h5file`, with `pickle` and `npy`; without it 501)
//! ```
//!
//! The request loop reads request heads ([`request`]), refuses what no operation may
//! get (chunked bodies, bodies over `max_body_bytes`), and hands each request to
//! `router::dispatch`. The router picks a row of its table by method and first
//! segment (`__status`, `__aggregate_txt`, `__pyramid_*`, ..., or a plain file),
//! has the operation's judge accept the name (400 and a close if not), and calls its
//! handler. A handler is `fn(&mut Connection, &Request) -> Next`: it gets the decoded
//! path and the raw query (`router::Request`), reads or skips the body exactly once
//! (`Connection::read_body`, `skip_body`, `splice_body`), stores through [`storage`]
//! and writes its answer (`Connection::answer`, `error`, `ok_empty`, or a head and
//! `send_file`). A new operation is one file in `ops/`, one row in the router's table
//! and one test file.
//!
//! This module holds the configuration and the lifecycle: binding, the accept thread,
//! one thread per connection, and a shutdown that joins every thread it started without
//! waiting for any timeout, and the connection policy: at most
//! [`ServerConfig::max_connections`] at once, a new one taking the place of the one
//! least likely to be a working client (`evict_one`). The advice about a tmpfs root
//! is in [`mounts`], the machine's figures in [`system`]. What survives a crash: one
//! server per root (`lock`), the start-up sweep of what a dead server left
//! (`recovery`), journaled appends (`journal`). The reference for users is
//! `docs/SERVER.md`.
//!
//! Used in-process (tests, the `demo` command) and by the `serve` command.

mod body;
mod connection;
#[allow(unsafe_code)] // renameat2(2) and linkat(2), which std lacks
mod fs;
pub mod h5;
#[cfg(feature = "hdf5")]
#[allow(unsafe_code)] // the HDF5 C library
mod h5file;
pub mod h5r;
mod journal;
#[allow(unsafe_code)] // flock(2) on the root's lock file
mod lock;
pub mod mounts;
pub mod npy;
pub mod ops;
mod peers;
pub mod pickle;
pub mod pyramid;
mod recovery;
pub mod request;
mod response;
pub mod router;
#[allow(unsafe_code)] // fallocate on spare files
mod spares;
#[allow(unsafe_code)] // splice(2) from the socket to the file
mod splice;
pub mod storage;
#[allow(unsafe_code)] // statvfs(3) for the disk figures
pub mod system;

use std::collections::HashMap;
use std::io::{self, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use lock::RootLock;
use recovery::SweepStatus;
use spares::Spares;
use storage::Store;

pub use lock::LOCK_NAME;
pub use peers::MirrorFrom;
pub use recovery::SweepReport;
pub use spares::{SPARES, SPARE_MIN_BYTES};

/// How many connections are served at once by default (see
/// [`ServerConfig::max_connections`]).
pub const MAX_CONNECTIONS: usize = 1024;

/// How many connections beyond the limit may be open while evicted ones close: past
/// that, new connections are answered 503 whatever the policy says.
const EVICTION_SLACK: usize = 64;

/// How long a new connection may wait for evicted ones to end (see `make_room`).
const ROOM_WAIT: Duration = Duration::from_millis(500);

/// The smallest `max_header_bytes` a server starts with: room for the request line of
/// the longest name (`name::MAX_NAME_BYTES`, percent-encoded at up to three bytes per
/// byte) and the headers a client sends, so that no valid name is answered 431.
pub const MIN_HEADER_BYTES: usize = 8 * 1024;

/// How a data server is set up.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The storage root (created if missing).
    pub root: PathBuf,
    /// The address to listen on.
    pub bind: String,
    /// The port to listen on; 0 picks a free one.
    pub port: u16,
    /// Read and drop PUT bodies, answering 200 (for bandwidth testing).
    pub discard: bool,
    /// The cluster name, reported in `/__status`.
    pub serverfilter: String,
    /// A longer request head is answered 431 and the connection closed. At least
    /// [`MIN_HEADER_BYTES`].
    pub max_header_bytes: usize,
    /// A larger `Content-Length` is answered 413 and the connection closed.
    pub max_body_bytes: u64,
    /// A client silent this long in the middle of a request body is dropped (zero:
    /// never).
    pub read_timeout: Duration,
    /// For tests of uneven clusters: a slow disk. After storing a file the
    /// connection waits as long as writing it at this many bytes per second
    /// would take, before it answers or reads on. `None`: no wait.
    pub store_bytes_per_s: Option<u64>,
    /// A request head must be complete this long after its first byte arrived, else
    /// the connection is answered 408 and closed (zero: no deadline). Heads are sent
    /// in one piece by every real client; one that drips its head a byte at a time
    /// (slowloris) is what this ends.
    pub head_timeout: Duration,
    /// A connection with no request under way is closed after this long (zero, the
    /// default: never). PYME clients keep their connection open between files.
    pub idle_timeout: Duration,
    /// How many connections are served at once. When all are taken, a new one takes
    /// the place of the connection least likely to be a working client (see
    /// `evict_one`); only when every connection is inside a request is it refused
    /// with 503.
    pub max_connections: usize,
    /// Large bodies are stored with the kernel's help where the system has it (true,
    /// the default): on Linux `splice` moves them from the socket into their file,
    /// and a root on a tmpfs with 4 KiB pages keeps spares (`spares.rs`). False
    /// stores every body the portable way, read into the connection's buffer then
    /// written, as on other systems: for tests of that path (tests/portable.rs) and
    /// for comparisons. `/__status` counts the bodies moved by `splice`
    /// (`bodies_spliced`) and the files stored in spares.
    pub kernel_copy: bool,
    /// Sync before answering (false, the default: a 200 means the file survives a
    /// crash of the server process, not a power cut). True: a stored file's data
    /// and every folder entry it needed (new parents included), an appended body
    /// and its length record, are on the disk before the 200. See docs/SERVER.md,
    /// "What a 200 means".
    pub fsync: bool,
    /// Where `PUT /<name>?MirrorSource=<url>` may fetch files from: by default only
    /// the data servers of this server's cluster (`serverfilter`) in the local
    /// registry (see `peers.rs`).
    pub mirror_from: MirrorFrom,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            root: std::env::temp_dir().join("pyme-stream-root"),
            bind: "127.0.0.1".to_owned(),
            port: 0,
            discard: false,
            serverfilter: String::new(),
            max_header_bytes: 64 * 1024,
            max_body_bytes: 4 << 30,
            read_timeout: Duration::from_secs(30),
            store_bytes_per_s: None,
            head_timeout: Duration::from_secs(10),
            // Off: PYME's own clients keep their connection open between files and
            // may not expect it closed; idle connections give their place to new
            // ones under pressure anyway.
            idle_timeout: Duration::ZERO,
            max_connections: MAX_CONNECTIONS,
            kernel_copy: true,
            fsync: false,
            mirror_from: MirrorFrom::default(),
        }
    }
}

/// What the accept thread and the connection threads share.
pub(crate) struct Shared {
    config: ServerConfig,
    store: Store,
    /// Files allocated ahead for large bodies, when the root is on a tmpfs.
    spares: Option<Spares>,
    local_addr: SocketAddr,
    started: Instant,
    files_stored: AtomicU64,
    /// Of `files_stored`, those received into a spare.
    files_in_spares: AtomicU64,
    /// Bodies of which `splice` moved at least a byte into their file.
    bodies_spliced: AtomicU64,
    bytes_stored: AtomicU64,
    connections_open: AtomicUsize,
    /// Connections closed to make room for new ones, since the start.
    connections_evicted: AtomicU64,
    /// Notified (under `room`) whenever a connection ends.
    room: Mutex<()>,
    room_freed: Condvar,
    stopping: AtomicBool,
    /// Every open connection: its socket (a clone, so that shutdown and eviction can
    /// close it) and what it is doing.
    live: Mutex<HashMap<u64, Live>>,
    /// What the start-up sweep did (`recovery.rs`).
    sweep: SweepStatus,
    /// Held while the server runs: one server per root (none with `discard`).
    _root_lock: Option<RootLock>,
    /// What `/__status` keeps between answers (the samples its rates come from).
    status: ops::status::StatusState,
    /// The servers `?MirrorSource=` may fetch from.
    peers: peers::Peers,
}

/// An open connection as the accept thread sees it.
struct Live {
    stream: TcpStream,
    state: Arc<ConnectionState>,
}

/// What a connection is doing, published by its thread for the eviction policy.
#[derive(Debug)]
pub(crate) struct ConnectionState {
    /// The server's start: the clock's zero.
    origin: Instant,
    /// One of the `PHASE_*` values.
    phase: AtomicU8,
    /// When the phase began, in milliseconds since the server started.
    since_ms: AtomicU64,
    /// When the connection last moved a good amount of body or answer
    /// ([`PROGRESS_BYTES`]), in the same clock; reset when the phase changes.
    progress_ms: AtomicU64,
    /// Requests answered on this connection.
    served: AtomicU64,
    /// Closed by eviction (so that it is not chosen twice).
    evicted: AtomicBool,
}

/// Waiting for a request, nothing of it received yet.
pub(crate) const PHASE_IDLE: u8 = 0;
/// Part of a request head received, waiting for the rest.
pub(crate) const PHASE_HEAD: u8 = 1;
/// Inside a request: storing it, preparing its answer.
pub(crate) const PHASE_BUSY: u8 = 2;
/// Reading a request body.
pub(crate) const PHASE_BODY: u8 = 3;
/// Sending answers (blocked while the client does not read them).
pub(crate) const PHASE_WRITE: u8 = 4;

/// A connection reading a body or sending answers counts as moving while it moves
/// this much at least every [`STALLED_AFTER_MS`]: a client on the slowest link PYME
/// streams over does so many times a second.
pub(crate) const PROGRESS_BYTES: usize = 64 * 1024;

/// How long a connection inside a body or an answer may move less than
/// [`PROGRESS_BYTES`] before it counts as stalled (and may be evicted).
const STALLED_AFTER_MS: u64 = 1000;

impl ConnectionState {
    fn new(origin: Instant) -> ConnectionState {
        let now_ms = ms_since(origin);
        ConnectionState {
            origin,
            phase: AtomicU8::new(PHASE_IDLE),
            since_ms: AtomicU64::new(now_ms),
            progress_ms: AtomicU64::new(now_ms),
            served: AtomicU64::new(0),
            evicted: AtomicBool::new(false),
        }
    }

    /// Records a new phase (and reads the clock only when the phase changes: this
    /// runs several times per request).
    pub(crate) fn enter(&self, phase: u8) {
        if self.phase.swap(phase, Ordering::Relaxed) != phase {
            let now_ms = ms_since(self.origin);
            self.since_ms.store(now_ms, Ordering::Relaxed);
            self.progress_ms.store(now_ms, Ordering::Relaxed);
        }
    }

    pub(crate) fn phase(&self) -> u8 {
        self.phase.load(Ordering::Relaxed)
    }

    /// Records that [`PROGRESS_BYTES`] more moved.
    pub(crate) fn progressed(&self) {
        self.progress_ms
            .store(ms_since(self.origin), Ordering::Relaxed);
    }

    pub(crate) fn answered(&self) {
        self.served.fetch_add(1, Ordering::Relaxed);
    }

    /// How this connection ranks for eviction at `now_ms`: lower goes first; `None`
    /// never goes. First connections stuck in a request head (a working client sends
    /// its head in one piece), oldest first; then connections that never sent a
    /// request, oldest first; then connections stalled inside a body or an answer
    /// (see [`STALLED_AFTER_MS`]), longest stalled first; last connections idle
    /// between requests, longest idle first. A connection storing a file, or moving
    /// its body or answers, is never evicted.
    fn eviction_rank(&self, now_ms: u64) -> Option<(u8, u64)> {
        if self.evicted.load(Ordering::Relaxed) {
            return None;
        }
        let since = self.since_ms.load(Ordering::Relaxed);
        let progress = self.progress_ms.load(Ordering::Relaxed);
        match self.phase.load(Ordering::Relaxed) {
            PHASE_HEAD => Some((0, since)),
            PHASE_IDLE if self.served.load(Ordering::Relaxed) == 0 => Some((1, since)),
            PHASE_BODY | PHASE_WRITE if now_ms.saturating_sub(progress) >= STALLED_AFTER_MS => {
                Some((2, progress))
            }
            PHASE_IDLE => Some((3, since)),
            _ => None,
        }
    }
}

/// Milliseconds since `origin` (the server's start): the clock of [`ConnectionState`].
fn ms_since(origin: Instant) -> u64 {
    u64::try_from(origin.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// A running data server. Dropping it shuts it down.
pub struct DataServer {
    shared: Arc<Shared>,
    accept_thread: Option<JoinHandle<()>>,
    /// The thread that keeps spares ready, if there are spares.
    spare_thread: Option<JoinHandle<()>>,
    /// The start-up sweep of the root, until joined.
    sweep_thread: Option<JoinHandle<()>>,
    /// The thread that browses mDNS for peers, if asked to.
    peer_thread: Option<JoinHandle<()>>,
}

impl DataServer {
    /// Opens and locks the root, binds, starts the accept thread and the start-up
    /// sweep, and returns at once (before the sweep ends).
    ///
    /// A root another server holds (in this process or another) is refused with
    /// `ErrorKind::ResourceBusy` and a message naming it. A `discard` server stores
    /// nothing: it neither locks nor sweeps its root.
    pub fn start(config: ServerConfig) -> io::Result<DataServer> {
        if config.max_header_bytes < MIN_HEADER_BYTES {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("max_header_bytes must be at least {MIN_HEADER_BYTES}"),
            ));
        }
        if config.max_connections == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "max_connections must be at least 1",
            ));
        }
        let mut store = Store::open(&config.root)?;
        let root_lock = match config.discard {
            true => None,
            false => Some(RootLock::acquire(store.root())?),
        };
        store.set_sync(config.fsync && !config.discard)?;
        let bind = config.bind.trim_start_matches('[').trim_end_matches(']');
        let listener = TcpListener::bind((bind, config.port))?;
        let local_addr = listener.local_addr()?;
        let spares = if config.discard || !config.kernel_copy {
            None
        } else {
            Spares::for_root(store.root())
        };
        let shared = Arc::new(Shared {
            store,
            spares,
            local_addr,
            started: Instant::now(),
            files_stored: AtomicU64::new(0),
            files_in_spares: AtomicU64::new(0),
            bodies_spliced: AtomicU64::new(0),
            bytes_stored: AtomicU64::new(0),
            connections_open: AtomicUsize::new(0),
            connections_evicted: AtomicU64::new(0),
            room: Mutex::new(()),
            room_freed: Condvar::new(),
            stopping: AtomicBool::new(false),
            live: Mutex::new(HashMap::new()),
            sweep: match root_lock {
                Some(_) => SweepStatus::default(),
                None => SweepStatus::finished(),
            },
            _root_lock: root_lock,
            status: ops::status::StatusState::default(),
            peers: peers::Peers::new(config.mirror_from.clone(), &config.serverfilter),
            config,
        });
        let accept_shared = Arc::clone(&shared);
        let accept_thread = thread::Builder::new()
            .name(format!("pyme-server-accept-{}", local_addr.port()))
            .spawn(move || accept_loop(listener, accept_shared))?;
        let mut server = DataServer {
            shared,
            accept_thread: Some(accept_thread),
            spare_thread: None,
            sweep_thread: None,
            peer_thread: None,
        };
        if !server.shared.sweep.report().done {
            let sweep_shared = Arc::clone(&server.shared);
            let sweep_thread = thread::Builder::new()
                .name(format!("pyme-server-sweep-{}", local_addr.port()))
                .spawn(move || {
                    let shared = &*sweep_shared;
                    recovery::sweep(&shared.store, &shared.stopping, &shared.sweep);
                });
            // On failure `server` is dropped, which stops it.
            server.sweep_thread = Some(sweep_thread?);
        }
        if server.shared.peers.wants_mdns() {
            let peer_shared = Arc::clone(&server.shared);
            let peer_thread = thread::Builder::new()
                .name(format!("pyme-server-peers-{}", local_addr.port()))
                .spawn(move || peer_shared.peers.browse_mdns());
            // On failure `server` is dropped, which stops it: it was not started as asked.
            server.peer_thread = Some(peer_thread?);
        }
        if server.shared.spares.is_some() {
            let spare_shared = Arc::clone(&server.shared);
            let spare_thread = thread::Builder::new()
                .name(format!("pyme-server-spares-{}", local_addr.port()))
                .spawn(move || {
                    if let Some(spares) = &spare_shared.spares {
                        spares.run();
                    }
                });
            // On failure `server` is dropped, which stops it: it was not started as asked.
            server.spare_thread = Some(spare_thread?);
        }
        Ok(server)
    }

    /// The address the server listens on (with the real port when 0 was asked).
    pub fn local_addr(&self) -> SocketAddr {
        self.shared.local_addr
    }

    /// The storage root, made absolute.
    pub fn root(&self) -> &Path {
        self.shared.store.root()
    }

    /// Stops accepting, closes every connection and joins every thread.
    pub fn shutdown(mut self) {
        self.stop();
    }

    /// What the start-up sweep has done so far (`done` once it walked the whole
    /// root): the temporary files of dead servers removed, the appended files cut
    /// back to their last whole append.
    pub fn sweep_report(&self) -> SweepReport {
        self.shared.sweep.report()
    }

    /// Whether large files are received into spares (files allocated ahead, on a
    /// tmpfs root; see `spares.rs`).
    pub fn has_spares(&self) -> bool {
        self.shared.spares.is_some()
    }

    fn stop(&mut self) {
        let Some(accept_thread) = self.accept_thread.take() else {
            return;
        };
        self.shared.stopping.store(true, Ordering::SeqCst);
        // An accept thread waiting for room sees `stopping` at once.
        drop(lock(&self.shared.room));
        self.shared.room_freed.notify_all();
        // Wake the blocking accept; it sees `stopping` and leaves. If the connection
        // fails the accept thread is not blocked on this listener any more anyway.
        let _ = TcpStream::connect(wake_address(self.shared.local_addr));
        let _ = accept_thread.join();
        if let Some(spares) = &self.shared.spares {
            spares.stop();
        }
        if let Some(spare_thread) = self.spare_thread.take() {
            let _ = spare_thread.join();
        }
        // It sees `stopping` between two entries.
        if let Some(sweep_thread) = self.sweep_thread.take() {
            let _ = sweep_thread.join();
        }
        self.shared.peers.stop();
        if let Some(peer_thread) = self.peer_thread.take() {
            let _ = peer_thread.join();
        }
    }
}

impl Drop for DataServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Where to connect to reach a listener bound to `addr` (an unspecified address is
/// reached through loopback).
fn wake_address(addr: SocketAddr) -> SocketAddr {
    let ip = match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, addr.port())
}

/// Accepts connections until shutdown, then closes and joins them all.
fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    let mut threads: Vec<JoinHandle<()>> = Vec::new();
    let mut next_id: u64 = 0;
    loop {
        let accepted = listener.accept();
        if shared.stopping.load(Ordering::SeqCst) {
            break;
        }
        reap_finished(&mut threads);
        match accepted {
            Ok((stream, _)) => {
                next_id += 1;
                if let Some(thread) = start_connection(stream, next_id, &shared) {
                    threads.push(thread);
                }
            }
            // Out of file descriptors and the like: give connections time to end.
            Err(_) => thread::sleep(Duration::from_millis(10)),
        }
    }
    drop(listener);
    for live in lock(&shared.live).values() {
        let _ = live.stream.shutdown(Shutdown::Both);
    }
    for thread in threads {
        let _ = thread.join();
    }
}

/// Starts the thread that serves one connection, making room for it if all are taken,
/// or refuses it with 503.
fn start_connection(stream: TcpStream, id: u64, shared: &Arc<Shared>) -> Option<JoinHandle<()>> {
    if !make_room(shared) {
        refuse(stream, "too many connections");
        return None;
    }
    let Ok(clone) = stream.try_clone() else {
        refuse(stream, "cannot serve this connection");
        return None;
    };
    let state = Arc::new(ConnectionState::new(shared.started));
    let live = Live {
        stream: clone,
        state: Arc::clone(&state),
    };
    lock(&shared.live).insert(id, live);
    shared.connections_open.fetch_add(1, Ordering::SeqCst);
    let thread_shared = Arc::clone(shared);
    let spawned = thread::Builder::new()
        .name(format!("pyme-server-conn-{id}"))
        .spawn(move || {
            let _registration = Registration {
                shared: Arc::clone(&thread_shared),
                id,
            };
            connection::serve(stream, &thread_shared, &state);
        });
    match spawned {
        Ok(thread) => Some(thread),
        Err(_) => {
            shared.connections_open.fetch_sub(1, Ordering::SeqCst);
            if let Some(live) = lock(&shared.live).remove(&id) {
                refuse(live.stream, "cannot start a thread");
            }
            None
        }
    }
}

/// Whether a new connection may be served: below the limit, or once another was
/// evicted for it. An evicted connection's thread ends at once unless the machine is
/// busy; past [`EVICTION_SLACK`] of them still ending, this waits (at most
/// [`ROOM_WAIT`], and not past shutdown) for them, which also slows down a client
/// that reconnects as fast as it is evicted.
fn make_room(shared: &Shared) -> bool {
    let limit = shared.config.max_connections;
    if shared.connections_open.load(Ordering::SeqCst) < limit {
        return true;
    }
    if !evict_one(shared) {
        return false;
    }
    let deadline = Instant::now() + ROOM_WAIT;
    let mut guard = lock(&shared.room);
    while shared.connections_open.load(Ordering::SeqCst) >= limit + EVICTION_SLACK {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || shared.stopping.load(Ordering::SeqCst) {
            return false;
        }
        guard = shared
            .room_freed
            .wait_timeout(guard, left)
            .unwrap_or_else(PoisonError::into_inner)
            .0;
    }
    true
}

/// Closes the open connection least likely to be a working client (see
/// [`ConnectionState::eviction_rank`]), to make room for a new one. False when every
/// connection is inside a request. The evicted connection's thread sees its socket
/// shut and ends; until then it still counts as open (hence `EVICTION_SLACK`).
fn evict_one(shared: &Shared) -> bool {
    let now_ms = ms_since(shared.started);
    let live = lock(&shared.live);
    let victim = live
        .values()
        .filter_map(|live| Some((live.state.eviction_rank(now_ms)?, live)))
        .min_by_key(|(rank, _)| *rank)
        .map(|(_, live)| live);
    let Some(victim) = victim else {
        return false;
    };
    victim.state.evicted.store(true, Ordering::Relaxed);
    let _ = victim.stream.shutdown(Shutdown::Both);
    shared.connections_evicted.fetch_add(1, Ordering::Relaxed);
    true
}

/// A connection's place in [`Shared`], given up when its thread ends, even by a panic.
struct Registration {
    shared: Arc<Shared>,
    id: u64,
}

impl Drop for Registration {
    fn drop(&mut self) {
        lock(&self.shared.live).remove(&self.id);
        self.shared.connections_open.fetch_sub(1, Ordering::SeqCst);
        let _room = lock(&self.shared.room);
        self.shared.room_freed.notify_all();
    }
}

/// Answers 503 and closes.
fn refuse(mut stream: TcpStream, detail: &str) {
    let mut out = Vec::new();
    response::write_error(&mut out, 503, detail, true);
    let _ = stream.set_write_timeout(Some(Duration::from_secs(1)));
    let _ = stream.write_all(&out);
}

/// Joins the connection threads that have ended.
fn reap_finished(threads: &mut Vec<JoinHandle<()>>) {
    let mut i = 0;
    while i < threads.len() {
        if threads[i].is_finished() {
            let _ = threads.swap_remove(i).join();
        } else {
            i += 1;
        }
    }
}

/// A poisoned lock only means a connection thread panicked; the map is still sound.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
