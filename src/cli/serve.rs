//! `pyme-stream serve`: run one PYME-compatible data server until SIGINT or SIGTERM.
//!
//! Prints exactly one line, `listening on HOST:PORT`, once the server accepts
//! connections, so that scripts and tests can wait for it and learn the port.
//! Advice about the storage (a tmpfs without huge pages) goes to stderr after it,
//! and one line when the start-up sweep of the root has ended (`note: start-up
//! sweep done: ...`), with what it removed and repaired.

use std::io::Write;
use std::path::PathBuf;
use std::sync::mpsc;
use std::time::Duration;

use pyme_streaming::discovery::{self, Advertise, Advertisement};
use pyme_streaming::server::{mounts, DataServer, MirrorFrom, ServerConfig};

/// Options of `serve`.
#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    /// Storage root (created if missing) [default: pyme-stream-root in the temporary folder]
    #[arg(long)]
    pub root: Option<PathBuf>,
    /// Port to listen on; 0 picks a free one.
    #[arg(long, default_value_t = 15348)]
    pub port: u16,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    pub bind: String,
    /// Cluster name [default: $PYME_COMPUTERNAME, else the host name up to the first dot]
    #[arg(long)]
    pub serverfilter: Option<String>,
    /// Read and drop PUT bodies, answering 200 (bandwidth testing).
    #[arg(long)]
    pub discard: bool,
    /// Refuse bodies larger than this (413).
    #[arg(long)]
    pub max_body_bytes: Option<u64>,
    /// Drop a client silent this long in the middle of a request body [default: 30000]
    #[arg(long)]
    pub read_timeout_ms: Option<u64>,
    /// For tests only: store as slowly as a disk writing this many MB/s (after
    /// each file, wait as long as writing it would take), to simulate an
    /// uneven cluster.
    #[arg(long, value_name = "MB_PER_S")]
    pub store_rate: Option<f64>,
    /// A request head must be complete this long after its first byte, else 408
    /// and close (slow-drip clients); 0: no deadline [default: 10000]
    #[arg(long)]
    pub head_timeout_ms: Option<u64>,
    /// Close a connection with no request under way after this long; 0: never
    /// [default: 0]
    #[arg(long)]
    pub idle_timeout_ms: Option<u64>,
    /// Connections served at once; when all are taken, a new one replaces the
    /// connection idle or stuck in a request head the longest
    #[arg(long, default_value_t = pyme_streaming::server::MAX_CONNECTIONS)]
    pub max_connections: usize,
    /// Where to advertise the server so clients find it by its serverfilter:
    /// none, local (the registry file, for this computer), mdns (multicast on
    /// the network: bind a non-loopback address), or both.
    #[arg(long, default_value = "local")]
    pub advertise: Advertise,
    /// The local registry file [default: _pyme-http.sqlite in the temporary folder]
    #[arg(long)]
    pub registry: Option<PathBuf>,
    /// Sync before answering: a 200 then means the file (or the appended body) and
    /// its folder entries are on the disk, and survive a power cut. Without it a
    /// 200 survives a crash of the server process, not of the machine.
    #[arg(long)]
    pub fsync: bool,
    /// Where `PUT /<name>?MirrorSource=<url>` (PYME's mirror_file) may fetch from:
    /// peers (the data servers of this cluster in the local registry, and on mDNS
    /// when advertising there), any (every address), or none.
    #[arg(long, default_value = "peers", value_parser = ["peers", "any", "none"])]
    pub mirror_from: String,
}

/// Runs the server until SIGINT or SIGTERM, then shuts it down cleanly.
pub fn run(args: ServeArgs) -> Result<(), Box<dyn std::error::Error>> {
    let defaults = ServerConfig::default();
    let serverfilter = args
        .serverfilter
        .clone()
        .unwrap_or_else(discovery::computer_name);
    let discard = args.discard;
    let registry = args
        .registry
        .clone()
        .unwrap_or_else(discovery::registry::default_path);
    let mirror_from = match args.mirror_from.as_str() {
        "any" => MirrorFrom::Any,
        "none" => MirrorFrom::Nowhere,
        _ => MirrorFrom::Peers {
            registry: Some(registry.clone()),
            mdns: matches!(args.advertise, Advertise::Mdns | Advertise::Both),
        },
    };
    let config = ServerConfig {
        root: args.root.unwrap_or(defaults.root),
        bind: args.bind,
        port: args.port,
        discard: args.discard,
        serverfilter: serverfilter.clone(),
        max_header_bytes: defaults.max_header_bytes,
        max_body_bytes: args.max_body_bytes.unwrap_or(defaults.max_body_bytes),
        read_timeout: args
            .read_timeout_ms
            .map_or(defaults.read_timeout, Duration::from_millis),
        store_bytes_per_s: args
            .store_rate
            .filter(|rate| *rate > 0.0)
            .map(|rate| (rate * 1e6) as u64),
        head_timeout: args
            .head_timeout_ms
            .map_or(defaults.head_timeout, Duration::from_millis),
        idle_timeout: args
            .idle_timeout_ms
            .map_or(defaults.idle_timeout, Duration::from_millis),
        max_connections: args.max_connections,
        kernel_copy: defaults.kernel_copy,
        fsync: args.fsync,
        mirror_from,
    };

    let (stop_tx, stop_rx) = mpsc::channel();
    ctrlc::set_handler(move || {
        let _ = stop_tx.send(());
    })?;

    let server = DataServer::start(config)?;
    let addr = server.local_addr();
    let advertisement = match Advertisement::start(
        args.advertise,
        &serverfilter,
        &discovery::computer_name(),
        addr.ip(),
        addr.port(),
        &registry,
    ) {
        Ok(advertisement) => advertisement,
        Err(error) => {
            server.shutdown();
            return Err(error.into());
        }
    };
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "listening on {}:{}", addr.ip(), addr.port())?;
    stdout.flush()?;
    drop(stdout);
    if !discard {
        if let Some(advice) = mounts::tmpfs_advice(server.root()) {
            eprintln!("note: {advice}");
        }
        if server.has_spares() {
            eprintln!(
                "note: spares on: files of {} MiB or more are received into files \
                 allocated ahead ({} kept ready, the size of the latest such file)",
                pyme_streaming::server::SPARE_MIN_BYTES >> 20,
                pyme_streaming::server::SPARES
            );
        }
    }

    // Any signal, or the handler gone, means stop. Until the sweep ends, the wait
    // looks at it every 100 ms, to say when it did.
    while let Err(mpsc::RecvTimeoutError::Timeout) =
        stop_rx.recv_timeout(Duration::from_millis(100))
    {
        let sweep = server.sweep_report();
        if sweep.done {
            if discard {
                let _ = stop_rx.recv();
                break;
            }
            eprintln!(
                "note: start-up sweep done: removed {} temporary files ({} bytes) left by \
                 a dead server, cut {} appended files back to their last whole append",
                sweep.temporaries_removed, sweep.bytes_removed, sweep.appends_repaired
            );
            let _ = stop_rx.recv();
            break;
        }
    }
    // Withdrawn before the port closes, so no client finds a dead server.
    drop(advertisement);
    server.shutdown();
    Ok(())
}
