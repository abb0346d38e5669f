//! The data servers of this server's own cluster, from which `?MirrorSource=` may
//! fetch a file (`ops/mirror.rs`): a node must not become a way to make it fetch
//! arbitrary addresses.
//!
//! The peers are the servers whose advertised name holds this server's
//! `serverfilter`, as discovery finds them (`discovery::select_cluster`): in the
//! local registry (the file PYME's servers and ours register in), read again when
//! the list is older than [`REGISTRY_FRESH`] or when an address is not in it; and,
//! when asked for, on mDNS, browsed by a background thread every [`MDNS_REFRESH`]
//! for [`MDNS_BROWSE`], one query each (a peer appears within about two seconds of
//! advertising).
//! `MirrorFrom::Any` allows every address; `MirrorFrom::Nowhere` none.
//!
//! What this module may not do: connect to a peer (the mirror does that), or send
//! anything but mDNS queries.

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::discovery::{self, registry, ServerInfo};

/// The local registry is read again when the list read from it is older than this.
pub const REGISTRY_FRESH: Duration = Duration::from_secs(1);
/// How long each mDNS browse listens.
pub const MDNS_BROWSE: Duration = Duration::from_millis(1000);
/// The pause between two mDNS browses.
pub const MDNS_REFRESH: Duration = Duration::from_millis(1000);

/// Where `PUT /<name>?MirrorSource=<url>` may fetch from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MirrorFrom {
    /// Only the data servers of this server's cluster (see the module documentation):
    /// those in the registry file `registry` (none if `None`), and, with `mdns`, those
    /// heard on mDNS.
    Peers {
        registry: Option<PathBuf>,
        mdns: bool,
    },
    /// Any address (`--mirror-from any`).
    Any,
    /// Nowhere: every mirror request is refused (`--mirror-from none`).
    Nowhere,
}

impl Default for MirrorFrom {
    /// The peers in the default local registry; no mDNS.
    fn default() -> Self {
        MirrorFrom::Peers {
            registry: Some(registry::default_path()),
            mdns: false,
        }
    }
}

/// The list of peers, kept current.
pub(crate) struct Peers {
    policy: MirrorFrom,
    serverfilter: String,
    known: Mutex<Known>,
    stopping: Mutex<bool>,
    stop: Condvar,
}

#[derive(Default)]
struct Known {
    from_registry: Vec<ServerInfo>,
    registry_read: Option<Instant>,
    from_mdns: Vec<ServerInfo>,
}

impl Peers {
    pub(crate) fn new(policy: MirrorFrom, serverfilter: &str) -> Peers {
        Peers {
            policy,
            serverfilter: serverfilter.to_owned(),
            known: Mutex::new(Known::default()),
            stopping: Mutex::new(false),
            stop: Condvar::new(),
        }
    }

    /// Whether a background thread must run [`Peers::browse_mdns`].
    pub(crate) fn wants_mdns(&self) -> bool {
        matches!(self.policy, MirrorFrom::Peers { mdns: true, .. })
    }

    /// Whether a file may be fetched from `source`.
    pub(crate) fn allows(&self, source: SocketAddr) -> bool {
        let registry = match &self.policy {
            MirrorFrom::Any => return true,
            MirrorFrom::Nowhere => return false,
            MirrorFrom::Peers { registry, .. } => registry,
        };
        let mut known = self.known.lock().unwrap_or_else(PoisonError::into_inner);
        let stale = known
            .registry_read
            .is_none_or(|read| read.elapsed() >= REGISTRY_FRESH);
        if !stale && known.has(source) {
            return true;
        }
        if let Some(path) = registry {
            // Read again: the source may have registered since.
            known.from_registry = self.members(registry::read(path).unwrap_or_default());
            known.registry_read = Some(Instant::now());
        }
        known.has(source)
    }

    /// Browses mDNS until [`Peers::stop`], keeping the list of peers heard current.
    pub(crate) fn browse_mdns(&self) {
        loop {
            if let Ok(heard) = discovery::mdns::browse_one_query(MDNS_BROWSE) {
                let members = self.members(heard);
                self.known
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .from_mdns = members;
            }
            let stopping = self.stopping.lock().unwrap_or_else(PoisonError::into_inner);
            let (stopping, _) = self
                .stop
                .wait_timeout_while(stopping, MDNS_REFRESH, |stopping| !*stopping)
                .unwrap_or_else(PoisonError::into_inner);
            if *stopping {
                return;
            }
        }
    }

    /// Ends [`Peers::browse_mdns`] (after the browse under way, if any).
    pub(crate) fn stop(&self) {
        *self.stopping.lock().unwrap_or_else(PoisonError::into_inner) = true;
        self.stop.notify_all();
    }

    fn members(&self, servers: Vec<ServerInfo>) -> Vec<ServerInfo> {
        discovery::select_cluster(servers, &self.serverfilter, "")
    }
}

impl Known {
    fn has(&self, source: SocketAddr) -> bool {
        let addresses: HashSet<(IpAddr, u16)> = self
            .from_registry
            .iter()
            .chain(&self.from_mdns)
            .filter_map(|server| Some((server.address.parse().ok()?, server.port)))
            .collect();
        addresses.contains(&(source.ip(), source.port()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_registered_members_of_the_cluster_are_peers() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("registry.sqlite");
        let peers = Peers::new(
            MirrorFrom::Peers {
                registry: Some(path.clone()),
                mdns: false,
            },
            "lab",
        );
        let source: SocketAddr = "127.0.0.1:4000".parse().unwrap();
        assert!(!peers.allows(source), "an empty registry has no peers");
        let other = registry::register(
            &path,
            "PYMEDataServer [other]:pc - PID:1",
            "127.0.0.1",
            4000,
        )
        .unwrap();
        assert!(!peers.allows(source), "another cluster's server is no peer");
        let entry = registry::register(&path, "PYMEDataServer [lab]:pc - PID:2", "127.0.0.1", 4000)
            .unwrap();
        assert!(peers.allows(source), "read again on a miss");
        assert!(!peers.allows("127.0.0.1:4001".parse().unwrap()));
        assert!(!peers.allows("127.0.0.2:4000".parse().unwrap()));
        drop((other, entry));
        assert!(Peers::new(MirrorFrom::Any, "lab").allows(source));
        assert!(!Peers::new(MirrorFrom::Nowhere, "lab").allows(source));
    }
}
