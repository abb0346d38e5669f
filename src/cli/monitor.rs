//! `pyme-stream monitor`: watch a cluster's data servers until SIGINT or SIGTERM,
//! serving a page, `/metrics` and `/api/status` (`pyme_streaming::monitor`).
//!
//! Prints exactly one line, `monitoring on http://HOST:PORT/`, once it serves, so
//! that scripts and tests can wait for it and learn the port.

use std::io::Write;
use std::path::PathBuf;
use std::sync::mpsc;
use std::time::Duration;

use pyme_streaming::discovery::DiscoveryOptions;
use pyme_streaming::monitor::{Monitor, MonitorConfig};

/// Options of `monitor`.
#[derive(clap::Args, Debug)]
pub struct MonitorArgs {
    /// Servers to watch, comma separated: HOST:PORT[,HOST:PORT...]
    #[arg(long, value_delimiter = ',', required_unless_present = "serverfilter")]
    pub servers: Vec<String>,
    /// Watch the servers of this cluster, found again every 5 s (mDNS and the local
    /// registry): servers that appear are added, those that vanish shown down.
    #[arg(long, value_name = "NAME")]
    pub serverfilter: Option<String>,
    /// With --serverfilter: the local registry file [default: _pyme-http.sqlite in the temporary folder]
    #[arg(long)]
    pub registry: Option<PathBuf>,
    /// With --serverfilter: do not browse mDNS (no multicast; registry only).
    #[arg(long)]
    pub no_mdns: bool,
    /// Address to serve the page on. Anything but loopback exposes the cluster's
    /// figures, read-only and without authentication, to the network.
    #[arg(long, default_value = "127.0.0.1")]
    pub bind: String,
    /// Port to serve the page on; 0 picks a free one.
    #[arg(long, default_value_t = pyme_streaming::monitor::DEFAULT_PORT)]
    pub port: u16,
    /// Poll every server this often, in milliseconds (100 at least).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(100..))]
    pub interval_ms: u64,
    /// Follow at most this many servers; those listed or discovered beyond it are left
    /// out, counted in /api/status and on the page.
    #[arg(long, default_value_t = pyme_streaming::monitor::MAX_SERVERS, value_parser = max_servers)]
    pub max_servers: usize,
    /// A poll that takes longer than this fails (the server is shown down), in milliseconds.
    #[arg(long, default_value_t = 800)]
    pub timeout_ms: u64,
}

/// Runs the monitor until SIGINT or SIGTERM.
pub fn run(args: MonitorArgs) -> Result<(), Box<dyn std::error::Error>> {
    if args.timeout_ms == 0 {
        return Err("--timeout-ms must be above 0".into());
    }
    let discovery = args.serverfilter.as_ref().map(|serverfilter| {
        let mut options = DiscoveryOptions::for_cluster(serverfilter);
        options.use_mdns = !args.no_mdns;
        if let Some(registry) = &args.registry {
            options.registry_path = registry.clone();
        }
        options
    });
    let servers: Vec<String> = args
        .servers
        .iter()
        .map(|server| server.trim().to_owned())
        .filter(|server| !server.is_empty())
        .collect();
    if servers.is_empty() && discovery.is_none() {
        return Err(
            "no server to watch: give --servers HOST:PORT[,...] or --serverfilter NAME".into(),
        );
    }
    let config = MonitorConfig {
        servers,
        discovery,
        bind: args.bind,
        port: args.port,
        interval: Duration::from_millis(args.interval_ms),
        timeout: Duration::from_millis(args.timeout_ms),
        max_servers: args.max_servers,
    };
    let (stop_tx, stop_rx) = mpsc::channel();
    ctrlc::set_handler(move || {
        let _ = stop_tx.send(());
    })?;
    let monitor = Monitor::start(config)?;
    let addr = monitor.local_addr();
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "monitoring on http://{addr}/")?;
    stdout.flush()?;
    drop(stdout);
    if !addr.ip().is_loopback() {
        eprintln!(
            "note: the monitor is served on {addr} without authentication: anyone who \
             reaches it reads the cluster's figures"
        );
    }
    let _ = stop_rx.recv();
    monitor.shutdown();
    Ok(())
}

/// `--max-servers`: 1 at least.
fn max_servers(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err("expected a whole number of servers, 1 at least".into()),
    }
}
