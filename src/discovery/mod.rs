//! Finding the data servers of a cluster, and advertising one.
//!
//! A PYME cluster is named by its `serverfilter`: a server belongs to it when the
//! instance name it advertises *contains* the filter. Servers advertise in two places:
//! mDNS/DNS-SD ([`mdns`]) and a local SQLite file ([`registry`]). [`find_servers`]
//! reads both, keeps the cluster's servers, puts this computer's first and drops those
//! whose port refuses a TCP connection. [`Advertisement`] is the server side.
//!
//! This module decides *which* servers; it never talks HTTP to them. The only network
//! traffic it makes itself is the TCP connect probe (connect, then close).

mod advertise;
pub mod mdns;
pub mod registry;

pub use advertise::{Advertise, Advertisement};
pub use mdns::MdnsAdvertisement;
pub use registry::RegistryEntry;

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr, TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

/// The DNS-SD service type of PYME data servers.
pub const SERVICE_TYPE: &str = "_pyme-http._tcp.local.";

/// The longest instance name PYME advertises (one DNS label).
pub const MAX_INSTANCE_NAME_BYTES: usize = 63;

/// How long a browse listens for mDNS answers by default.
pub const DEFAULT_MDNS_WAIT: Duration = Duration::from_secs(2);

/// How long a server's port may take to accept the probe connection by default.
pub const DEFAULT_PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// Everything that can go wrong while finding or advertising servers.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DiscoveryError {
    /// No live server of the cluster was found.
    #[error(
        "no PYME data server found for serverfilter {serverfilter:?} (a server belongs to \
         the cluster when its name contains the serverfilter); looked in: {looked}"
    )]
    NoServers {
        serverfilter: String,
        looked: String,
    },
    /// The local registry could not be read or written (locked, corrupt, unwritable).
    #[error("local registry {path}: {detail}", path = path.display())]
    Registry { path: PathBuf, detail: String },
    /// The mDNS daemon failed.
    #[error("mDNS: {0}")]
    Mdns(String),
    /// PYME clients only understand IPv4 addresses.
    #[error("cannot advertise {0}: PYME clients only understand IPv4 addresses")]
    NotIpv4(IpAddr),
    /// `--advertise` was not one of none, local, mdns, both.
    #[error("invalid advertise mode {0:?}: expected none, local, mdns or both")]
    BadAdvertise(String),
}

/// Where and how to look for servers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiscoveryOptions {
    /// Keep servers whose name contains this; empty keeps every server.
    pub serverfilter: String,
    /// This computer's name: servers whose name contains it come first.
    pub computer_name: String,
    /// The local registry file.
    pub registry_path: PathBuf,
    /// Read the local registry.
    pub use_registry: bool,
    /// Browse mDNS (sends multicast on every IPv4 interface).
    pub use_mdns: bool,
    /// How long to listen for mDNS answers at least (see [`mdns::browse`]).
    pub mdns_wait: Duration,
    /// How long a server's port may take to accept the probe connection.
    pub probe_timeout: Duration,
}

impl Default for DiscoveryOptions {
    /// This computer's cluster, from both registries, as PYME clients look for it.
    fn default() -> Self {
        let computer_name = computer_name();
        DiscoveryOptions {
            serverfilter: computer_name.clone(),
            computer_name,
            registry_path: registry::default_path(),
            use_registry: true,
            use_mdns: true,
            mdns_wait: DEFAULT_MDNS_WAIT,
            probe_timeout: DEFAULT_PROBE_TIMEOUT,
        }
    }
}

impl DiscoveryOptions {
    /// The default options for the cluster named `serverfilter`.
    pub fn for_cluster(serverfilter: &str) -> Self {
        DiscoveryOptions {
            serverfilter: serverfilter.to_owned(),
            ..DiscoveryOptions::default()
        }
    }
}

/// One advertised data server.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServerInfo {
    /// The advertised instance name, e.g. `PYMEDataServer [lab1]:lab1 - PID:4242`.
    pub name: String,
    /// The host: an IPv4 address as PYME advertises it.
    pub address: String,
    pub port: u16,
}

impl ServerInfo {
    /// `host:port`, as [`crate::StreamerOptions::servers`] takes it.
    pub fn host_port(&self) -> String {
        crate::options::server_address(&self.address, self.port)
    }
}

/// The instance name PYME's data server advertises:
/// `PYMEDataServer [<serverfilter>]:<computer name> - PID:<pid>`, at most 63 bytes.
/// As PYME does, a name too long is cut before `PID:`, which is always kept.
pub fn instance_name(serverfilter: &str, computer_name: &str, pid: u32) -> String {
    instance_name_with_tail(serverfilter, computer_name, &format!("PID:{pid}"))
}

/// `PYMEDataServer [<serverfilter>]:<computer name> - <tail>`, the part before the tail
/// cut so that the whole fits in 63 bytes (on a character boundary).
pub(crate) fn instance_name_with_tail(
    serverfilter: &str,
    computer_name: &str,
    tail: &str,
) -> String {
    let head = format!("PYMEDataServer [{serverfilter}]:{computer_name} - ");
    let room = MAX_INSTANCE_NAME_BYTES.saturating_sub(tail.len());
    format!("{}{tail}", truncate_to_bytes(&head, room))
}

/// The longest prefix of `text` that fits in `max` bytes without splitting a character.
pub(crate) fn truncate_to_bytes(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// This computer's name as PYME uses it: the environment variable `PYME_COMPUTERNAME`
/// if set, else the host name up to its first dot.
pub fn computer_name() -> String {
    if let Ok(name) = std::env::var("PYME_COMPUTERNAME") {
        return name;
    }
    let host = host_name();
    host.split('.').next().unwrap_or_default().to_owned()
}

/// The host name as the operating system reports it, or `localhost` when it cannot
/// be read: on Linux from the kernel (`/proc`, no libc), on other Unix systems from
/// `gethostname`, on Windows the DNS host name (`GetComputerNameExW`, as Python's
/// `socket.gethostname()` gives PYME there), else `%COMPUTERNAME%`.
pub fn host_name() -> String {
    os_host_name()
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}

#[cfg(target_os = "linux")]
fn os_host_name() -> Option<String> {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .filter_map(|path| std::fs::read_to_string(path).ok())
        .find(|name| !name.trim().is_empty())
}

#[cfg(all(unix, not(target_os = "linux")))]
#[allow(unsafe_code)] // gethostname(3), which std lacks
fn os_host_name() -> Option<String> {
    let mut buffer = [0u8; 256];
    // SAFETY: the buffer is writable for its whole length; gethostname writes at most
    // that many bytes and the name is read only up to its NUL (or the buffer's end).
    let result = unsafe { libc::gethostname(buffer.as_mut_ptr().cast(), buffer.len()) };
    if result != 0 {
        return None;
    }
    let end = buffer.iter().position(|&b| b == 0).unwrap_or(buffer.len());
    Some(String::from_utf8_lossy(&buffer[..end]).into_owned())
}

#[cfg(windows)]
#[allow(unsafe_code)] // GetComputerNameExW, which std lacks
fn os_host_name() -> Option<String> {
    use windows_sys::Win32::System::SystemInformation::{
        ComputerNameDnsHostname, GetComputerNameExW,
    };
    let mut buffer = [0u16; 256];
    let mut len = buffer.len() as u32;
    // SAFETY: `buffer` holds `len` UTF-16 units; on success the call writes the name
    // and sets `len` to its length without the NUL, at most the buffer's length.
    let ok = unsafe { GetComputerNameExW(ComputerNameDnsHostname, buffer.as_mut_ptr(), &mut len) };
    if ok != 0 && (len as usize) <= buffer.len() {
        return Some(String::from_utf16_lossy(&buffer[..len as usize]));
    }
    std::env::var("COMPUTERNAME").ok()
}

#[cfg(not(any(unix, windows)))]
fn os_host_name() -> Option<String> {
    None
}

/// The live servers of the cluster `options.serverfilter`: this computer's first, then
/// by name. mDNS wins over the registry for a name present in both.
///
/// An unreadable registry or a failed mDNS browse is not an error by itself: it is
/// reported in [`DiscoveryError::NoServers`]'s `looked` when nothing is found.
pub fn find_servers(options: &DiscoveryOptions) -> Result<Vec<ServerInfo>, DiscoveryError> {
    find_servers_until(options, &|| false)
}

/// As [`find_servers`], with an mDNS browse that ends early, with what it
/// heard so far, once `stop` returns true ([`mdns::browse_until`]); the
/// registry read and the probes are short and always run.
pub fn find_servers_until(
    options: &DiscoveryOptions,
    stop: &dyn Fn() -> bool,
) -> Result<Vec<ServerInfo>, DiscoveryError> {
    let mut looked = Vec::new();
    let mut by_name = BTreeMap::new();
    if options.use_registry {
        let path = options.registry_path.display();
        match registry::read(&options.registry_path) {
            Ok(servers) => {
                looked.push(format!("local registry {path} ({} entries)", servers.len()));
                by_name.extend(servers.into_iter().map(|s| (s.name.clone(), s)));
            }
            Err(error) => looked.push(format!("local registry {path} (unreadable: {error})")),
        }
    }
    if options.use_mdns {
        let wait_ms = options.mdns_wait.as_millis();
        match mdns::browse_until(options.mdns_wait, stop) {
            Ok(servers) => {
                let n = servers.len();
                looked.push(format!(
                    "mDNS {SERVICE_TYPE} for {wait_ms} ms ({n} entries)"
                ));
                by_name.extend(servers.into_iter().map(|s| (s.name.clone(), s)));
            }
            Err(error) => looked.push(format!("mDNS {SERVICE_TYPE} (failed: {error})")),
        }
    }
    if looked.is_empty() {
        looked.push("nowhere (both the registry and mDNS are switched off)".to_owned());
    }

    let members = select_cluster(
        by_name.into_values().collect(),
        &options.serverfilter,
        &options.computer_name,
    );
    let n_members = members.len();
    let alive = keep_reachable(members, options.probe_timeout);
    if alive.is_empty() {
        if n_members > 0 {
            looked.push(format!(
                "{n_members} matching servers, none accepted a TCP connection"
            ));
        }
        return Err(DiscoveryError::NoServers {
            serverfilter: options.serverfilter.clone(),
            looked: looked.join("; "),
        });
    }
    Ok(alive)
}

/// How many live servers the cluster `serverfilter` has, looked up with the default
/// options (both registries).
pub fn n_cluster_servers(serverfilter: &str) -> Result<usize, DiscoveryError> {
    find_servers(&DiscoveryOptions::for_cluster(serverfilter)).map(|servers| servers.len())
}

/// The servers whose name contains `serverfilter`, those whose name contains
/// `computer_name` first, each group ordered by name. No network.
pub fn select_cluster(
    mut servers: Vec<ServerInfo>,
    serverfilter: &str,
    computer_name: &str,
) -> Vec<ServerInfo> {
    servers.retain(|server| server.name.contains(serverfilter));
    servers.sort_by(|a, b| {
        let a_remote = !a.name.contains(computer_name);
        let b_remote = !b.name.contains(computer_name);
        (a_remote, &a.name).cmp(&(b_remote, &b.name))
    });
    servers
}

/// The servers whose port accepts a TCP connection within `timeout`, probed in
/// parallel, in their given order.
pub fn keep_reachable(servers: Vec<ServerInfo>, timeout: Duration) -> Vec<ServerInfo> {
    let reachable: Vec<bool> = std::thread::scope(|scope| {
        let probes: Vec<_> = servers
            .iter()
            .map(|server| {
                std::thread::Builder::new()
                    .name(format!("pyme-probe-{}", server.port))
                    .spawn_scoped(scope, move || accepts_connection(server, timeout))
            })
            .collect();
        probes
            .into_iter()
            .map(|probe| match probe {
                Ok(handle) => handle.join().unwrap_or(false),
                Err(_) => false,
            })
            .collect()
    });
    servers
        .into_iter()
        .zip(reachable)
        .filter_map(|(server, ok)| ok.then_some(server))
        .collect()
}

/// Whether the server's port accepts a TCP connection (which is closed at once).
fn accepts_connection(server: &ServerInfo, timeout: Duration) -> bool {
    let addrs: Vec<SocketAddr> = match (server.address.as_str(), server.port).to_socket_addrs() {
        Ok(addrs) => addrs.collect(),
        Err(_) => return false,
    };
    addrs
        .iter()
        .any(|addr| TcpStream::connect_timeout(addr, timeout).is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(name: &str) -> ServerInfo {
        ServerInfo {
            name: name.to_owned(),
            address: "127.0.0.1".to_owned(),
            port: 1,
        }
    }

    #[test]
    fn instance_name_is_pyme_format() {
        assert_eq!(
            instance_name("lab", "scope1", 42),
            "PYMEDataServer [lab]:scope1 - PID:42"
        );
    }

    #[test]
    fn a_long_instance_name_is_cut_before_the_pid_as_pyme_does() {
        let name = instance_name(
            "a-very-long-cluster-name",
            "a-very-long-computer-name",
            123456,
        );
        // PYME: (process_name + ':' + computer + ' - ')[:63 - 4 - len(pid)] + 'PID:' + pid
        assert_eq!(
            name,
            "PYMEDataServer [a-very-long-cluster-name]:a-very-longPID:123456"
        );
        assert_eq!(name.len(), 63);
        assert!(instance_name("lab", "pc", 1).len() < 63);
        let unicode = instance_name(&"é".repeat(40), "pc", 1);
        assert!(unicode.len() <= 63 && unicode.len() >= 62, "{unicode}");
        assert!(unicode.ends_with("éPID:1"), "{unicode}");
    }

    #[test]
    fn host_port_brackets_ipv6() {
        let mut s = server("a");
        assert_eq!(s.host_port(), "127.0.0.1:1");
        s.address = "::1".to_owned();
        assert_eq!(s.host_port(), "[::1]:1");
    }

    #[test]
    fn select_filters_by_substring_and_puts_local_first() {
        let servers = vec![
            server("PYMEDataServer [lab]:b - PID:1"),
            server("PYMEDataServer [lab]:me - PID:3"),
            server("PYMEDataServer [lab]:a - PID:2"),
            server("PYMEDataServer [other]:me - PID:4"),
        ];
        let names: Vec<_> = select_cluster(servers.clone(), "[lab]", "me")
            .into_iter()
            .map(|s| s.name)
            .collect();
        assert_eq!(
            names,
            [
                "PYMEDataServer [lab]:me - PID:3",
                "PYMEDataServer [lab]:a - PID:2",
                "PYMEDataServer [lab]:b - PID:1",
            ]
        );
        assert_eq!(select_cluster(servers, "", "me").len(), 4);
    }

    #[test]
    fn host_name_is_never_empty() {
        assert!(!host_name().is_empty());
    }

    /// The kernel's name, as Linux shows it, is the one `gethostname` gives
    /// (Windows is checked under Wine by tests/windows.rs).
    #[cfg(target_os = "linux")]
    #[test]
    fn host_name_is_the_operating_systems() {
        let expected = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
        let expected = expected.trim().to_owned();
        assert_eq!(
            host_name(),
            if expected.is_empty() {
                "localhost".to_owned()
            } else {
                expected
            }
        );
    }
}
