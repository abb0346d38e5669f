//! The server side: a data server announcing itself in the local registry, on mDNS,
//! or both, for as long as an [`Advertisement`] lives.
//!
//! Names the advertisement as PYME does ([`super::instance_name`]). PYME runs one
//! server per process, so its name holds the PID; when one process runs several
//! servers (tests, `pyme-stream demo`) the second and later get ` #2`, ` #3`, ... so that
//! each keeps its own registry row. Sends nothing itself: [`super::mdns`] and
//! [`super::registry`] do.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::str::FromStr;
use std::sync::Mutex;

use super::mdns::MdnsAdvertisement;
use super::registry::{self, RegistryEntry};
use super::{instance_name_with_tail, DiscoveryError};

/// Where a data server advertises itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Advertise {
    /// Nowhere: clients must be given the address.
    None,
    /// In the local registry file only: clients on this computer find it.
    Local,
    /// On mDNS only: clients on the local network find it.
    Mdns,
    /// In both.
    Both,
}

impl Advertise {
    fn uses_registry(self) -> bool {
        matches!(self, Advertise::Local | Advertise::Both)
    }

    fn uses_mdns(self) -> bool {
        matches!(self, Advertise::Mdns | Advertise::Both)
    }
}

impl FromStr for Advertise {
    type Err = DiscoveryError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "none" => Ok(Advertise::None),
            "local" => Ok(Advertise::Local),
            "mdns" => Ok(Advertise::Mdns),
            "both" => Ok(Advertise::Both),
            _ => Err(DiscoveryError::BadAdvertise(text.to_owned())),
        }
    }
}

impl std::fmt::Display for Advertise {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Advertise::None => "none",
            Advertise::Local => "local",
            Advertise::Mdns => "mdns",
            Advertise::Both => "both",
        })
    }
}

/// Instance names advertised by this process right now.
static NAMES_IN_USE: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());

/// A data server's advertisements, withdrawn when dropped (mDNS goodbye first, then the
/// registry rows).
#[derive(Debug)]
#[must_use = "the advertisements are withdrawn when dropped"]
pub struct Advertisement {
    name: String,
    mdns: Option<MdnsAdvertisement>,
    registry: Option<RegistryEntry>,
}

impl Advertisement {
    /// Advertises the server at `address:port` as a member of the cluster
    /// `serverfilter`. The registry row gets `address` as text, or `127.0.0.1` when
    /// `address` is unspecified (`0.0.0.0`), since only this computer reads it; mDNS gets
    /// `address`, or every interface's IPv4 address when unspecified. IPv6 is refused,
    /// as PYME clients cannot use it.
    pub fn start(
        advertise: Advertise,
        serverfilter: &str,
        computer_name: &str,
        address: IpAddr,
        port: u16,
        registry_path: &Path,
    ) -> Result<Advertisement, DiscoveryError> {
        let IpAddr::V4(ipv4) = address else {
            return Err(DiscoveryError::NotIpv4(address));
        };
        let name = claim_name(serverfilter, computer_name, std::process::id());
        // From here on, dropping `advertisement` releases whatever was set up.
        let mut advertisement = Advertisement {
            name,
            mdns: None,
            registry: None,
        };
        if advertise.uses_registry() {
            let local = if ipv4.is_unspecified() {
                Ipv4Addr::LOCALHOST
            } else {
                ipv4
            };
            let entry =
                registry::register(registry_path, &advertisement.name, &local.to_string(), port)?;
            advertisement.registry = Some(entry);
        }
        if advertise.uses_mdns() {
            let mdns = MdnsAdvertisement::start(&advertisement.name, address, port)?;
            advertisement.mdns = Some(mdns);
        }
        Ok(advertisement)
    }

    /// The advertised instance name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether anything is advertised.
    pub fn is_advertised(&self) -> bool {
        self.mdns.is_some() || self.registry.is_some()
    }
}

impl Drop for Advertisement {
    fn drop(&mut self) {
        drop(self.mdns.take());
        drop(self.registry.take());
        names_in_use().remove(&self.name);
    }
}

fn names_in_use() -> std::sync::MutexGuard<'static, BTreeSet<String>> {
    NAMES_IN_USE.lock().unwrap_or_else(|e| e.into_inner())
}

/// PYME's instance name if no live advertisement of this process uses it, else the same
/// ending in `PID:<pid> #2`, `#3`, ... (still at most 63 bytes).
fn claim_name(serverfilter: &str, computer_name: &str, pid: u32) -> String {
    let mut in_use = names_in_use();
    let mut tail = format!("PID:{pid}");
    let mut n = 1;
    let mut candidate = instance_name_with_tail(serverfilter, computer_name, &tail);
    while in_use.contains(&candidate) {
        n += 1;
        tail = format!("PID:{pid} #{n}");
        candidate = instance_name_with_tail(serverfilter, computer_name, &tail);
    }
    in_use.insert(candidate.clone());
    candidate
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advertise_parses_its_names() {
        for mode in [
            Advertise::None,
            Advertise::Local,
            Advertise::Mdns,
            Advertise::Both,
        ] {
            assert_eq!(mode.to_string().parse::<Advertise>(), Ok(mode));
        }
        assert!("zeroconf".parse::<Advertise>().is_err());
    }

    #[test]
    fn names_are_unique_within_the_process_and_reused() {
        let first = claim_name("unit", "pc", 7);
        let second = claim_name("unit", "pc", 7);
        assert_eq!(first, "PYMEDataServer [unit]:pc - PID:7");
        assert_eq!(second, "PYMEDataServer [unit]:pc - PID:7 #2");
        names_in_use().remove(&first);
        assert_eq!(claim_name("unit", "pc", 7), first);
        let long = claim_name(&"y".repeat(63), "pc", 7);
        let long2 = claim_name(&"y".repeat(63), "pc", 7);
        assert_eq!((long.len(), long2.len()), (63, 63));
        assert!(long2.ends_with("yPID:7 #2"), "{long} {long2}");
    }

    #[test]
    fn ipv6_is_refused() {
        let result = Advertisement::start(
            Advertise::Local,
            "f",
            "pc",
            "::1".parse().unwrap(),
            1,
            Path::new("/nonexistent/never-written.sqlite"),
        );
        assert!(matches!(result, Err(DiscoveryError::NotIpv4(_))));
    }
}
