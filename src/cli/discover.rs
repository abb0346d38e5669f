//! `pyme-stream discover`: list the live data servers of a cluster, one per line,
//! `name<TAB>host:port`, this computer's first.
//!
//! Browsing mDNS sends multicast on every IPv4 interface; `--no-mdns` reads only the
//! local registry. Exits 1, saying where it looked, when no server is found.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use pyme_streaming::discovery::{self, DiscoveryOptions, ServerInfo};

/// Options of `discover`.
#[derive(clap::Args, Debug)]
pub struct DiscoverArgs {
    /// Keep servers whose name contains NAME ("" keeps all)
    /// [default: $PYME_COMPUTERNAME, else the host name up to the first dot]
    #[arg(long, value_name = "NAME")]
    pub serverfilter: Option<String>,
    /// How long to listen for mDNS answers at least, in milliseconds (longer while
    /// the answers keep changing, at most 4 times as long).
    #[arg(long, value_name = "N", default_value_t = 2000)]
    pub wait_ms: u64,
    /// The local registry file [default: _pyme-http.sqlite in the temporary folder]
    #[arg(long, value_name = "PATH")]
    pub registry: Option<PathBuf>,
    /// Do not browse mDNS (no multicast).
    #[arg(long)]
    pub no_mdns: bool,
    /// Do not read the local registry.
    #[arg(long)]
    pub no_registry: bool,
}

impl DiscoverArgs {
    /// The discovery options these arguments ask for.
    pub fn options(&self) -> DiscoveryOptions {
        let defaults = DiscoveryOptions::default();
        DiscoveryOptions {
            serverfilter: self.serverfilter.clone().unwrap_or(defaults.serverfilter),
            registry_path: self.registry.clone().unwrap_or(defaults.registry_path),
            use_registry: !self.no_registry,
            use_mdns: !self.no_mdns,
            mdns_wait: Duration::from_millis(self.wait_ms),
            ..defaults
        }
    }
}

/// One output line: `name<TAB>host:port`.
pub fn line(server: &ServerInfo) -> String {
    format!("{}\t{}", server.name, server.host_port())
}

/// Prints the cluster's live servers; fails (exit 1) when there are none.
pub fn run(args: DiscoverArgs) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let servers = discovery::find_servers(&args.options())?;
    for server in &servers {
        println!("{}", line(server));
    }
    Ok(ExitCode::SUCCESS)
}
