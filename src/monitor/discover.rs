//! `--serverfilter`: the servers of a cluster, found again every [`EVERY`] in the
//! local registry and on mDNS (as `discovery::find_servers` looks, without its TCP
//! probe: a server that is advertised but silent is shown down, not hidden). A server
//! found is watched from then on; one no longer advertised is shown down ("no longer
//! advertised") and watched again if it comes back, or forgotten (no longer shown nor
//! polled) after [`FORGET_AFTER`]. A server also given in `--servers` is never
//! marked unadvertised nor forgotten: it is watched for being listed.
//!
//! What this module may not do: talk HTTP, or decide up or down from anything but
//! the advertisement.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::Shared;
use crate::discovery::{self, mdns, registry, DiscoveryOptions, ServerInfo};

/// How often the cluster is looked up.
pub const EVERY: Duration = Duration::from_secs(5);

/// How long a discovered server no longer advertised is still shown (down).
pub const FORGET_AFTER: Duration = Duration::from_secs(600);

pub(crate) fn spawn(
    shared: Arc<Shared>,
    options: DiscoveryOptions,
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("pyme-monitor-discovery".into())
        .spawn(move || run(&shared, &options))
}

fn run(shared: &Arc<Shared>, options: &DiscoveryOptions) {
    // mDNS listens for at most a second per round, so that shutdown is prompt.
    let mdns_wait = options.mdns_wait.min(Duration::from_secs(1));
    loop {
        let round = Instant::now();
        let found = look(options, mdns_wait);
        if shared.is_stopping() {
            return;
        }
        let addresses: Vec<String> = found.iter().map(ServerInfo::host_port).collect();
        for server in &found {
            let watched = shared.watch(&server.host_port());
            *watched.name.lock().unwrap_or_else(PoisonError::into_inner) =
                Some(server.name.clone());
        }
        let now = Instant::now();
        let mut servers = shared
            .servers
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        servers.retain(|watched| {
            let discovered = watched
                .name
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .is_some();
            if !discovered || watched.listed.load(Ordering::Relaxed) {
                return true;
            }
            let advertised = addresses.contains(&watched.address);
            watched.advertised.store(advertised, Ordering::Relaxed);
            let mut since = watched
                .unadvertised_since
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if advertised {
                *since = None;
                return true;
            }
            let since = *since.get_or_insert(now);
            let keep = now.saturating_duration_since(since) <= FORGET_AFTER;
            if !keep {
                watched.forgotten.store(true, Ordering::Relaxed);
            }
            keep
        });
        drop(servers);
        if !shared.sleep_until(round + EVERY) {
            return;
        }
    }
}

/// The cluster's advertised servers (mDNS wins over the registry for a name in both).
fn look(options: &DiscoveryOptions, mdns_wait: Duration) -> Vec<ServerInfo> {
    let mut by_name = BTreeMap::new();
    if options.use_registry {
        if let Ok(servers) = registry::read(&options.registry_path) {
            by_name.extend(servers.into_iter().map(|s| (s.name.clone(), s)));
        }
    }
    if options.use_mdns {
        if let Ok(servers) = mdns::browse(mdns_wait) {
            by_name.extend(servers.into_iter().map(|s| (s.name.clone(), s)));
        }
    }
    discovery::select_cluster(
        by_name.into_values().collect(),
        &options.serverfilter,
        &options.computer_name,
    )
}
