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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::monitor::MonitorConfig;

    fn server(i: u16) -> ServerInfo {
        ServerInfo {
            name: format!("PYMEDataServer [c]:c - PID:{i}"),
            address: "127.0.0.1".into(),
            port: 20000 + i,
        }
    }

    fn followed(shared: &Shared) -> Vec<u16> {
        shared
            .servers
            .lock()
            .unwrap()
            .iter()
            .map(|s| {
                s.address
                    .rsplit(':')
                    .next()
                    .unwrap()
                    .parse::<u16>()
                    .unwrap()
                    - 20000
            })
            .collect()
    }

    /// A churning registry (the monitor never polls here: no pollers are started):
    /// at most `max_servers` followed, the rest counted; vanished servers give their
    /// places to advertised ones, and are forgotten after FORGET_AFTER. Before the
    /// bound every server found was followed (and given a thread).
    #[test]
    fn a_churning_registry_is_held_to_max_servers() {
        let shared = Shared::new(MonitorConfig {
            max_servers: 3,
            ..MonitorConfig::default()
        });
        let t0 = Instant::now();
        let all: Vec<ServerInfo> = (0..5).map(server).collect();
        follow(&shared, &all, t0);
        assert_eq!(followed(&shared), [0, 1, 2]);
        assert_eq!(shared.left_out(), 2);
        // 0 and 1 vanish: 3 and 4 take their places at once.
        follow(&shared, &all[2..], t0 + EVERY);
        assert_eq!(followed(&shared), [2, 3, 4]);
        assert_eq!(shared.left_out(), 0);
        // 2 vanishes, nothing waits: it is kept (shown down) until FORGET_AFTER.
        follow(&shared, &all[3..], t0 + 2 * EVERY);
        assert_eq!(followed(&shared), [2, 3, 4]);
        let two = shared.servers.lock().unwrap()[0].clone();
        assert!(!two.advertised.load(Ordering::Relaxed));
        follow(&shared, &all[3..], t0 + 2 * EVERY + FORGET_AFTER);
        assert_eq!(followed(&shared), [2, 3, 4]);
        follow(
            &shared,
            &all[3..],
            t0 + 2 * EVERY + FORGET_AFTER + Duration::from_secs(1),
        );
        assert_eq!(followed(&shared), [3, 4]);
        assert!(two.forgotten.load(Ordering::Relaxed));
        // A flood: 1000 new names, one place.
        let flood: Vec<ServerInfo> = (0..1000).map(|i| server(100 + i)).collect();
        let mut found = all[3..].to_vec();
        found.extend(flood);
        follow(&shared, &found, t0 + 3 * EVERY + FORGET_AFTER);
        assert_eq!(followed(&shared), [3, 4, 100]);
        assert_eq!(shared.left_out(), 999);
        assert_eq!(shared.servers.lock().unwrap().len(), 3);
    }
}
