//! `--serverfilter`: the servers of a cluster, found again every [`EVERY`] in the
//! local registry and on mDNS (as `discovery::find_servers` looks, without its TCP
//! probe: a server that is advertised but silent is shown down, not hidden). A server
//! found is watched from then on; one no longer advertised is shown down ("no longer
//! advertised") and watched again if it comes back, or forgotten (no longer shown nor
//! polled) after [`FORGET_AFTER`]. A server also given in `--servers` is never
//! marked unadvertised nor forgotten: it is watched for being listed.
//!
//! At most `max_servers` are followed: when they are, a newly advertised server takes
//! the place of the one unadvertised longest (forgotten before its time), and those
//! there is still no room for (taken in discovery's order) are counted as left out,
//! recounted every round. So a churning or flooded registry holds the monitor's
//! memory to `max_servers` servers.
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
        follow(shared, &found, Instant::now());
        if !shared.sleep_until(round + EVERY) {
            return;
        }
    }
}

/// One round: marks the discovered servers advertised or not, forgets those
/// unadvertised for [`FORGET_AFTER`], makes room for servers newly advertised by
/// forgetting those unadvertised longest when `max_servers` are followed, follows
/// the new ones there is room for and counts the others as left out.
fn follow(shared: &Shared, found: &[ServerInfo], now: Instant) {
    let mut names: BTreeMap<String, String> = BTreeMap::new();
    for server in found {
        names
            .entry(server.host_port())
            .or_insert_with(|| server.name.clone());
    }
    let mut servers = shared
        .servers
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    let mut unadvertised: Vec<(Instant, String)> = Vec::new();
    servers.retain(|watched| {
        if let Some(name) = names.get(&watched.address) {
            *watched.name.lock().unwrap_or_else(PoisonError::into_inner) = Some(name.clone());
        }
        let discovered = watched
            .name
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some();
        if !discovered || watched.listed.load(Ordering::Relaxed) {
            return true;
        }
        let advertised = names.contains_key(&watched.address);
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
        if keep {
            unadvertised.push((since, watched.address.clone()));
        } else {
            watched.forgotten.store(true, Ordering::Relaxed);
        }
        keep
    });
    let known: std::collections::BTreeSet<&str> =
        servers.iter().map(|s| s.address.as_str()).collect();
    let mut seen = std::collections::BTreeSet::new();
    let mut new: Vec<String> = Vec::new();
    for server in found {
        let address = server.host_port();
        if !known.contains(address.as_str()) && seen.insert(address.clone()) {
            new.push(address);
        }
    }
    drop(known);
    let room = shared.config.max_servers.saturating_sub(servers.len());
    if new.len() > room {
        // An advertised server is worth more than one that vanished: those gone
        // longest give their places first.
        unadvertised.sort();
        let evicted: std::collections::BTreeSet<String> = unadvertised
            .into_iter()
            .take(new.len() - room)
            .map(|(_, address)| address)
            .collect();
        servers.retain(|watched| {
            let keep = !evicted.contains(&watched.address);
            if !keep {
                watched.forgotten.store(true, Ordering::Relaxed);
            }
            keep
        });
    }
    drop(servers);
    let mut left_out = 0;
    for address in new {
        match shared.watch(&address) {
            Some(watched) => {
                *watched.name.lock().unwrap_or_else(PoisonError::into_inner) =
                    Some(names[&address].clone());
            }
            None => left_out += 1,
        }
    }
    shared
        .discovered_left_out
        .store(left_out, Ordering::Relaxed);
    shared.log_left_out();
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
