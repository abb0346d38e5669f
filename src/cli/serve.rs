//! `pyme-stream serve`: run one PYME-compatible data server until SIGINT or SIGTERM.
//!
//! Prints exactly one line, `listening on HOST:PORT`, once the server accepts
//! connections, so that scripts and tests can wait for it and learn the port.

use std::io::Write;
use std::path::PathBuf;
use std::sync::mpsc;
use std::time::Duration;

use pyme_streaming::server::{DataServer, ServerConfig};

/// Options of `serve`.
#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    /// Storage root (created if missing) [default: <temp dir>/pyme-stream-root]
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
    /// Drop a client silent this long in the middle of a request.
    #[arg(long)]
    pub read_timeout_ms: Option<u64>,
}

/// Runs the server until SIGINT or SIGTERM, then shuts it down cleanly.
pub fn run(args: ServeArgs) -> Result<(), Box<dyn std::error::Error>> {
    let defaults = ServerConfig::default();
    let config = ServerConfig {
        root: args.root.unwrap_or(defaults.root),
        bind: args.bind,
        port: args.port,
        discard: args.discard,
        serverfilter: args.serverfilter.unwrap_or_else(computer_name),
        max_header_bytes: defaults.max_header_bytes,
        max_body_bytes: args.max_body_bytes.unwrap_or(defaults.max_body_bytes),
        read_timeout: args
            .read_timeout_ms
            .map_or(defaults.read_timeout, Duration::from_millis),
    };

    let (stop_tx, stop_rx) = mpsc::channel();
    ctrlc::set_handler(move || {
        let _ = stop_tx.send(());
    })?;

    let server = DataServer::start(config)?;
    let addr = server.local_addr();
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "listening on {}:{}", addr.ip(), addr.port())?;
    stdout.flush()?;
    drop(stdout);

    // Any signal, or the handler gone, means stop.
    let _ = stop_rx.recv();
    server.shutdown();
    Ok(())
}

/// This computer's name as PYME uses it: `PYME_COMPUTERNAME`, else the host name up to
/// the first dot.
fn computer_name() -> String {
    if let Ok(name) = std::env::var("PYME_COMPUTERNAME") {
        return name;
    }
    let host = host_name().unwrap_or_default();
    host.split('.').next().unwrap_or_default().to_owned()
}

#[cfg(unix)]
fn host_name() -> Option<String> {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most buf.len() bytes into the buffer we own.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return None;
    }
    let len = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    Some(String::from_utf8_lossy(&buf[..len]).into_owned())
}

#[cfg(not(unix))]
fn host_name() -> Option<String> {
    std::env::var("COMPUTERNAME").ok()
}
