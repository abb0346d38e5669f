//! mDNS / DNS-SD for PYME data servers (`_pyme-http._tcp.local.`), over IPv4 only as
//! PYME clients understand nothing else.
//!
//! The only module that sends multicast. Each call or advertisement runs its own
//! `mdns-sd` daemon thread and shuts it down (waiting for it) when done, so nothing keeps
//! answering on the network after an [`MdnsAdvertisement`] is dropped.
//!
//! What goes on the wire matches PYME's `zeroconf` advertisements: the instance name is
//! the DNS-SD instance label, the SRV record carries the port (priority and weight 0),
//! the A record the server's IPv4 address(es), and the TXT record is empty.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use mdns_sd::{IfKind, ServiceDaemon, ServiceEvent, ServiceInfo};

use super::{DiscoveryError, ServerInfo, SERVICE_TYPE};

/// How long to wait for the daemon to confirm an unregistration or a shutdown.
const DAEMON_REPLY_TIMEOUT: Duration = Duration::from_secs(1);

/// `mdns-sd` repeats a goodbye once, 120 ms after the first; let it go out.
const GOODBYE_REPEAT_DELAY: Duration = Duration::from_millis(150);

/// The longest browse, as a multiple of `wait`.
const MAX_WAIT_FACTOR: u32 = 4;

/// The time between two queries of one browse (RFC 6762 section 5.2: at least a second).
const QUERY_INTERVAL: Duration = Duration::from_secs(1);

/// How often a browse looks at listeners it replaced, while they are open.
const RETIRED_POLL: Duration = Duration::from_millis(20);

/// How many queries must go unanswered by anything new before a browse ends.
const QUIET_QUERIES: u32 = 2;

/// How often a browse asks whether it should stop early (see [`browse_until`]).
const STOP_LOOK: Duration = Duration::from_millis(50);

/// How long a browse listens after its last query before it ends: responders wait up to
/// 120 ms before answering a shared record (RFC 6762 section 6), more on a busy host.
const LISTEN_AFTER_QUERY: Duration = Duration::from_millis(500);

/// The resolved `_pyme-http._tcp` services heard, by instance name (an instance that
/// said goodbye during the browse is left out).
///
/// The query is asked again until the answers stop changing: once a second, carrying
/// the answers already known (RFC 6762 section 7.1) so that only servers not yet heard
/// answer, and asking again for the address and port of instances heard but not yet
/// resolved. The browse ends when `wait` has passed and the last two queries brought
/// nothing new (no new instance, no new resolution, no goodbye), half a second after
/// the last of them; it never lasts more than four times `wait`. On a link where many
/// servers answer at once some answers are lost (socket buffers, switches, a busy
/// host), and a later query hears them; a stable cluster is browsed in `wait`, or 2.5 s
/// if that is more.
pub fn browse(wait: Duration) -> Result<Vec<ServerInfo>, DiscoveryError> {
    browse_until_quiet(wait, QUIET_QUERIES, &|| false)
}

/// As [`browse`], ending early, with what was heard so far, once `stop`
/// returns true: it is asked every 50 ms or so (a closing streamer's
/// discovery thread must not finish a whole browse, see
/// `crate::client` live membership).
pub fn browse_until(
    wait: Duration,
    stop: &dyn Fn() -> bool,
) -> Result<Vec<ServerInfo>, DiscoveryError> {
    browse_until_quiet(wait, QUIET_QUERIES, stop)
}

/// One query, its answers heard for `wait` (at least half a second): for a node that
/// browses again and again (a data server keeping its list of peers, `server/peers.rs`),
/// where [`browse`]'s repeats would multiply the queries of every node of a cluster.
pub fn browse_one_query(wait: Duration) -> Result<Vec<ServerInfo>, DiscoveryError> {
    browse_until_quiet(wait, 0, &|| false)
}

/// [`browse_until`], ending once `quiet_queries_needed` queries in a row brought
/// nothing new.
fn browse_until_quiet(
    wait: Duration,
    quiet_queries_needed: u32,
    stop: &dyn Fn() -> bool,
) -> Result<Vec<ServerInfo>, DiscoveryError> {
    let daemon = Daemon::start()?;
    let mut events = daemon.0.browse(SERVICE_TYPE).map_err(mdns_error)?;
    let start = Instant::now();
    let last_possible = start + wait * MAX_WAIT_FACTOR;
    let mut heard = Heard::default();
    let mut last_query = start;
    let mut quiet_queries = 0;
    // Listeners replaced by a browse asked again: what reached them before the daemon
    // took the new one is still read (without waiting) until they are closed.
    let mut retired: Vec<mdns_sd::Receiver<ServiceEvent>> = Vec::new();
    loop {
        retired.retain(|old| {
            while let Ok(event) = old.try_recv() {
                if heard.take(event) {
                    quiet_queries = 0;
                }
            }
            !old.is_disconnected()
        });
        let now = Instant::now();
        let settled =
            quiet_queries >= quiet_queries_needed && now >= last_query + LISTEN_AFTER_QUERY;
        if now >= last_possible || (now >= start + wait && settled) || stop() {
            break;
        }
        let next_query = last_query + QUERY_INTERVAL;
        if now >= next_query {
            // A browse asked again replaces the daemon's listener (and its schedule
            // of repeats) and queries at once with the known answers.
            let Ok(again) = daemon.0.browse(SERVICE_TYPE) else {
                // The daemon cannot take it (shutting down): what was heard stands.
                break;
            };
            retired.push(std::mem::replace(&mut events, again));
            last_query = now;
            quiet_queries += 1;
            continue;
        }
        let mut until = next_query.min(last_possible).min(now + STOP_LOOK);
        if quiet_queries >= quiet_queries_needed {
            until = until.min((last_query + LISTEN_AFTER_QUERY).max(start + wait));
        }
        if !retired.is_empty() {
            // Look at the replaced listeners again soon.
            until = until.min(now + RETIRED_POLL);
        }
        match events.recv_deadline(until) {
            Ok(event) => {
                if heard.take(event) {
                    quiet_queries = 0;
                }
            }
            // The daemon gone: nothing more will come.
            Err(_) if events.is_disconnected() => break,
            Err(_) => {}
        }
    }
    let _ = daemon.0.stop_browse(SERVICE_TYPE);
    Ok(heard.found.into_values().collect())
}

/// What one browse has heard so far.
#[derive(Default)]
struct Heard {
    /// Resolved instances, by name.
    found: BTreeMap<String, ServerInfo>,
    /// Instances whose name was heard (PTR), resolved or not.
    names: std::collections::BTreeSet<String>,
}

impl Heard {
    /// Takes in one event; whether it changed what was heard.
    fn take(&mut self, event: ServiceEvent) -> bool {
        match event {
            ServiceEvent::ServiceFound(_, fullname) => {
                instance_of(&fullname).is_some_and(|name| self.names.insert(name))
            }
            ServiceEvent::ServiceResolved(service) => {
                let Some(name) = instance_of(&service.fullname) else {
                    return false;
                };
                let new_name = self.names.insert(name.clone());
                // Resolved without an IPv4 address: PYME's clients use no other.
                let Some(address) = preferred_address(service.get_addresses_v4()) else {
                    return new_name;
                };
                let server = ServerInfo {
                    name: name.clone(),
                    address: address.to_string(),
                    port: service.port,
                };
                let changed = self.found.get(&name) != Some(&server);
                self.found.insert(name, server);
                new_name || changed
            }
            ServiceEvent::ServiceRemoved(_, fullname) => {
                instance_of(&fullname).is_some_and(|name| {
                    let was_named = self.names.remove(&name);
                    self.found.remove(&name).is_some() || was_named
                })
            }
            _ => false,
        }
    }
}

/// An mDNS advertisement of one data server, withdrawn (with a goodbye packet) when
/// dropped.
#[derive(Debug)]
#[must_use = "the advertisement is withdrawn when dropped"]
pub struct MdnsAdvertisement {
    daemon: Option<Daemon>,
    fullname: String,
}

impl MdnsAdvertisement {
    /// Advertises `instance_name` at `address:port`. An unspecified address (`0.0.0.0`)
    /// advertises the IPv4 addresses of every interface, each on its own interface.
    pub fn start(
        instance_name: &str,
        address: IpAddr,
        port: u16,
    ) -> Result<MdnsAdvertisement, DiscoveryError> {
        let IpAddr::V4(ipv4) = address else {
            return Err(DiscoveryError::NotIpv4(address));
        };
        let host = host_label(instance_name, port);
        let no_properties: &[(&str, &str)] = &[];
        let addresses: &[IpAddr] = if ipv4.is_unspecified() {
            &[]
        } else {
            &[address]
        };
        let mut info = ServiceInfo::new(
            SERVICE_TYPE,
            instance_name,
            &format!("{host}.local."),
            addresses,
            port,
            no_properties,
        )
        .map_err(mdns_error)?;
        if ipv4.is_unspecified() {
            info = info.enable_addr_auto();
        }
        let fullname = info.get_fullname().to_owned();
        let daemon = Daemon::start()?;
        daemon.0.register(info).map_err(mdns_error)?;
        Ok(MdnsAdvertisement {
            daemon: Some(daemon),
            fullname,
        })
    }

    /// The full DNS-SD name: `<instance>._pyme-http._tcp.local.`.
    pub fn fullname(&self) -> &str {
        &self.fullname
    }
}

impl Drop for MdnsAdvertisement {
    fn drop(&mut self) {
        if let Some(daemon) = self.daemon.take() {
            if let Ok(status) = daemon.0.unregister(&self.fullname) {
                let _ = status.recv_timeout(DAEMON_REPLY_TIMEOUT);
                std::thread::sleep(GOODBYE_REPEAT_DELAY);
            }
            drop(daemon);
        }
    }
}

/// An `mdns-sd` daemon on the IPv4 interfaces, shut down (and waited for) on drop.
struct Daemon(ServiceDaemon);

impl std::fmt::Debug for Daemon {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Daemon")
    }
}

impl Daemon {
    fn start() -> Result<Daemon, DiscoveryError> {
        let daemon = Daemon(ServiceDaemon::new().map_err(mdns_error)?);
        daemon
            .0
            .disable_interface(IfKind::IPv6)
            .map_err(mdns_error)?;
        Ok(daemon)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(status) = self.0.shutdown() {
            let _ = status.recv_timeout(DAEMON_REPLY_TIMEOUT);
        }
    }
}

/// The instance name of a full service name, as PYME takes it: the part before
/// `._pyme-http._tcp.local.` (compared without case, as DNS does).
fn instance_of(fullname: &str) -> Option<String> {
    let suffix_len = SERVICE_TYPE.len() + 1;
    let split = fullname.len().checked_sub(suffix_len)?;
    let suffix = fullname.get(split..)?;
    let dotted_type = format!(".{SERVICE_TYPE}");
    (split > 0 && suffix.eq_ignore_ascii_case(&dotted_type)).then(|| fullname[..split].to_owned())
}

/// The address to connect to among a service's IPv4 addresses: the lowest that is not
/// loopback, else the lowest.
fn preferred_address(addresses: impl IntoIterator<Item = Ipv4Addr>) -> Option<Ipv4Addr> {
    addresses.into_iter().min_by_key(|a| (a.is_loopback(), *a))
}

/// A DNS-safe host label unique to one advertisement: `pyme-<instance>-<port>` with
/// every character but ASCII letters and digits replaced by `-`, at most 63 bytes.
fn host_label(instance_name: &str, port: u16) -> String {
    let suffix = format!("-{port}");
    let mut label = String::from("pyme-");
    let mut last_dash = true;
    for c in instance_name.chars() {
        if label.len() + suffix.len() >= super::MAX_INSTANCE_NAME_BYTES {
            break;
        }
        if c.is_ascii_alphanumeric() {
            label.push(c.to_ascii_lowercase());
            last_dash = false;
        } else if !last_dash {
            label.push('-');
            last_dash = true;
        }
    }
    let trimmed_len = label.trim_end_matches('-').len();
    label.truncate(trimmed_len);
    label + &suffix
}

fn mdns_error(error: mdns_sd::Error) -> DiscoveryError {
    DiscoveryError::Mdns(error.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolved(instance: &str, address: &str, port: u16) -> ServiceEvent {
        let info = ServiceInfo::new(
            SERVICE_TYPE,
            instance,
            "host.local.",
            address,
            port,
            None::<std::collections::HashMap<String, String>>,
        )
        .unwrap();
        ServiceEvent::ServiceResolved(Box::new(info.as_resolved_service()))
    }

    #[test]
    fn what_a_browse_counts_as_a_change() {
        let full = format!("a.{SERVICE_TYPE}");
        let mut heard = Heard::default();
        assert!(heard.take(ServiceEvent::ServiceFound(
            SERVICE_TYPE.into(),
            full.clone()
        )));
        assert!(!heard.take(ServiceEvent::ServiceFound(
            SERVICE_TYPE.into(),
            full.clone()
        )));
        assert!(heard.take(resolved("a", "10.0.0.1", 80)), "resolved");
        assert!(!heard.take(resolved("a", "10.0.0.1", 80)), "the same again");
        assert!(heard.take(resolved("a", "10.0.0.2", 80)), "a new address");
        assert!(
            heard.take(resolved("b", "", 81)),
            "a name without an address"
        );
        assert_eq!(
            heard.found.len(),
            1,
            "only resolved IPv4 services are found"
        );
        assert!(heard.take(ServiceEvent::ServiceRemoved(
            SERVICE_TYPE.into(),
            full.clone()
        )));
        assert!(!heard.take(ServiceEvent::ServiceRemoved(SERVICE_TYPE.into(), full)));
        assert!(heard.found.is_empty());
        assert!(!heard.take(ServiceEvent::SearchStarted(SERVICE_TYPE.into())));
    }

    #[test]
    fn instance_is_the_part_before_the_service_type() {
        assert_eq!(
            instance_of("PYMEDataServer [a.b]:pc - PID:1._pyme-http._tcp.local.").as_deref(),
            Some("PYMEDataServer [a.b]:pc - PID:1")
        );
        assert_eq!(
            instance_of("x._PYME-HTTP._tcp.local.").as_deref(),
            Some("x")
        );
        assert_eq!(instance_of("._pyme-http._tcp.local."), None);
        assert_eq!(instance_of("x._other._tcp.local."), None);
    }

    #[test]
    fn host_label_is_dns_safe_and_short() {
        assert_eq!(
            host_label("PYMEDataServer [lab]:pc1 - PID:42", 15348),
            "pyme-pymedataserver-lab-pc1-pid-42-15348"
        );
        let long = host_label(&"x".repeat(200), 65535);
        assert!(long.len() <= 63, "{long}");
        assert!(long.ends_with("-65535"));
    }

    #[test]
    fn preferred_address_avoids_loopback() {
        let lo = Ipv4Addr::LOCALHOST;
        let lan = Ipv4Addr::new(192, 0, 2, 7);
        assert_eq!(preferred_address([lo, lan]), Some(lan));
        assert_eq!(preferred_address([lo]), Some(lo));
        assert_eq!(preferred_address([]), None);
    }
}
