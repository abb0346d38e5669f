//! A PYME-compatible data server: answers pipelined HTTP/1.1 PUT and GET requests and
//! stores files write-once under a root folder (see `PYME_WIRE.md`, section 1).
//!
//! This module holds the configuration and the lifecycle: binding, the accept thread,
//! one thread per connection, and a shutdown that joins every thread it started without
//! waiting for any timeout. The request loop is in `connection`, request parsing in
//! [`request`], the files in [`storage`], the advice about a tmpfs root in [`mounts`].
//!
//! Used in-process (tests, the `demo` command) and by the `serve` command.

mod body;
mod connection;
pub mod mounts;
pub mod request;
mod response;
#[allow(unsafe_code)] // fallocate and linkat on spare files
mod spares;
#[allow(unsafe_code)] // splice(2) from the socket to the file
mod splice;
#[allow(unsafe_code)] // statvfs(3) for the disk figures
pub mod status;
#[allow(unsafe_code)] // renameat2(2) and linkat(2), which std lacks
pub mod storage;

use std::collections::HashMap;
use std::io::{self, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use spares::Spares;
use storage::Store;

pub use spares::{SPARES, SPARE_MIN_BYTES};

/// How many connections are served at once; more are answered 503 and closed.
pub const MAX_CONNECTIONS: usize = 1024;

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
    /// A longer request head is answered 431 and the connection closed.
    pub max_header_bytes: usize,
    /// A larger `Content-Length` is answered 413 and the connection closed.
    pub max_body_bytes: u64,
    /// A client silent this long in the middle of a request is dropped. Between
    /// requests a connection may stay idle for ever (PYME clients keep theirs open).
    pub read_timeout: Duration,
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
    bytes_stored: AtomicU64,
    connections_open: AtomicUsize,
    stopping: AtomicBool,
    /// A clone of every open connection's socket, so that shutdown can close them.
    live: Mutex<HashMap<u64, TcpStream>>,
}

/// A running data server. Dropping it shuts it down.
pub struct DataServer {
    shared: Arc<Shared>,
    accept_thread: Option<JoinHandle<()>>,
    /// The thread that keeps spares ready, if there are spares.
    spare_thread: Option<JoinHandle<()>>,
}

impl DataServer {
    /// Opens the root, binds, starts the accept thread and returns at once.
    pub fn start(config: ServerConfig) -> io::Result<DataServer> {
        let store = Store::open(&config.root)?;
        let bind = config.bind.trim_start_matches('[').trim_end_matches(']');
        let listener = TcpListener::bind((bind, config.port))?;
        let local_addr = listener.local_addr()?;
        let spares = if config.discard {
            None
        } else {
            Spares::for_root(store.root())
        };
        let shared = Arc::new(Shared {
            config,
            store,
            spares,
            local_addr,
            started: Instant::now(),
            files_stored: AtomicU64::new(0),
            files_in_spares: AtomicU64::new(0),
            bytes_stored: AtomicU64::new(0),
            connections_open: AtomicUsize::new(0),
            stopping: AtomicBool::new(false),
            live: Mutex::new(HashMap::new()),
        });
        let accept_shared = Arc::clone(&shared);
        let accept_thread = thread::Builder::new()
            .name(format!("pyme-server-accept-{}", local_addr.port()))
            .spawn(move || accept_loop(listener, accept_shared))?;
        let mut server = DataServer {
            shared,
            accept_thread: Some(accept_thread),
            spare_thread: None,
        };
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
    for stream in lock(&shared.live).values() {
        let _ = stream.shutdown(Shutdown::Both);
    }
    for thread in threads {
        let _ = thread.join();
    }
}

/// Starts the thread that serves one connection, or refuses it with 503.
fn start_connection(stream: TcpStream, id: u64, shared: &Arc<Shared>) -> Option<JoinHandle<()>> {
    if shared.connections_open.load(Ordering::SeqCst) >= MAX_CONNECTIONS {
        refuse(stream, "too many connections");
        return None;
    }
    let Ok(clone) = stream.try_clone() else {
        refuse(stream, "cannot serve this connection");
        return None;
    };
    lock(&shared.live).insert(id, clone);
    shared.connections_open.fetch_add(1, Ordering::SeqCst);
    let thread_shared = Arc::clone(shared);
    let spawned = thread::Builder::new()
        .name(format!("pyme-server-conn-{id}"))
        .spawn(move || {
            let _registration = Registration {
                shared: Arc::clone(&thread_shared),
                id,
            };
            connection::serve(stream, &thread_shared);
        });
    match spawned {
        Ok(thread) => Some(thread),
        Err(_) => {
            shared.connections_open.fetch_sub(1, Ordering::SeqCst);
            if let Some(stream) = lock(&shared.live).remove(&id) {
                refuse(stream, "cannot start a thread");
            }
            None
        }
    }
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
