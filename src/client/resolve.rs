//! Turning `host:port` into socket addresses, telling a name that does not
//! exist (an error in the program's settings: reported at once) from a
//! resolver that cannot answer for now (the server counts as unreachable,
//! and its link resolves the name again on every reconnect).
//!
//! The standard library's `to_socket_addrs` gives the resolver's failure only
//! as text, so on Unix this asks `getaddrinfo` itself for its error code.
//!
//! In scope: name resolution. Out of scope: connecting (see `session`).

use std::net::SocketAddr;

/// Why a name did not resolve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ResolveError {
    /// The name does not exist (`EAI_NONAME`, or no address for it).
    NoSuchName(String),
    /// The resolver could not answer now (`EAI_AGAIN`, no network...): try again later.
    Temporary(String),
}

impl std::fmt::Display for ResolveError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ResolveError::NoSuchName(detail) => write!(f, "no such host: {detail}"),
            ResolveError::Temporary(detail) => write!(f, "cannot resolve for now: {detail}"),
        }
    }
}

/// The addresses of `host:port` (the host may be a bracketed IPv6 address).
pub(crate) fn resolve(server: &str) -> Result<Vec<SocketAddr>, ResolveError> {
    if let Ok(address) = server.parse::<SocketAddr>() {
        return Ok(vec![address]);
    }
    let Some((host, port)) = server.rsplit_once(':') else {
        return Err(ResolveError::NoSuchName(format!(
            "{server:?} is not host:port"
        )));
    };
    let Ok(port) = port.parse::<u16>() else {
        return Err(ResolveError::NoSuchName(format!("bad port in {server:?}")));
    };
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let addresses = lookup(host, port)?;
    if addresses.is_empty() {
        return Err(ResolveError::NoSuchName(format!("{host}: no address")));
    }
    Ok(addresses)
}

#[cfg(unix)]
#[allow(unsafe_code)] // getaddrinfo(3), whose error code std does not give
fn lookup(host: &str, port: u16) -> Result<Vec<SocketAddr>, ResolveError> {
    use std::ffi::{CStr, CString};
    use std::net::{SocketAddrV4, SocketAddrV6};

    let Ok(c_host) = CString::new(host) else {
        return Err(ResolveError::NoSuchName(format!("{host:?}")));
    };
    // SAFETY: an all-zero addrinfo is a valid "no hints" value.
    let mut hints: libc::addrinfo = unsafe { std::mem::zeroed() };
    hints.ai_socktype = libc::SOCK_STREAM;
    let mut list: *mut libc::addrinfo = std::ptr::null_mut();
    // SAFETY: valid C strings and pointers; `list` is freed below.
    let code = unsafe { libc::getaddrinfo(c_host.as_ptr(), std::ptr::null(), &hints, &mut list) };
    if code != 0 {
        let detail = if code == libc::EAI_SYSTEM {
            std::io::Error::last_os_error().to_string()
        } else {
            // SAFETY: gai_strerror returns a static string for any code.
            unsafe { CStr::from_ptr(libc::gai_strerror(code)) }
                .to_string_lossy()
                .into_owned()
        };
        return Err(classify(code, format!("{host}: {detail}")));
    }
    let mut addresses = Vec::new();
    let mut entry = list;
    while !entry.is_null() {
        // SAFETY: `entry` is a node of the list getaddrinfo returned, not yet freed.
        let info = unsafe { &*entry };
        if !info.ai_addr.is_null() {
            if info.ai_family == libc::AF_INET {
                // SAFETY: an AF_INET entry holds a sockaddr_in.
                let sa = unsafe { &*(info.ai_addr as *const libc::sockaddr_in) };
                let ip = std::net::Ipv4Addr::from(u32::from_be(sa.sin_addr.s_addr));
                addresses.push(SocketAddr::V4(SocketAddrV4::new(ip, port)));
            } else if info.ai_family == libc::AF_INET6 {
                // SAFETY: an AF_INET6 entry holds a sockaddr_in6.
                let sa = unsafe { &*(info.ai_addr as *const libc::sockaddr_in6) };
                let ip = std::net::Ipv6Addr::from(sa.sin6_addr.s6_addr);
                let v6 = SocketAddrV6::new(ip, port, sa.sin6_flowinfo, sa.sin6_scope_id);
                addresses.push(SocketAddr::V6(v6));
            }
        }
        entry = info.ai_next;
    }
    // SAFETY: the list getaddrinfo returned, freed once.
    unsafe { libc::freeaddrinfo(list) };
    Ok(addresses)
}

/// A `getaddrinfo` error code as a name that does not exist, or a failure
/// that may pass.
#[cfg(unix)]
fn classify(code: i32, detail: String) -> ResolveError {
    // EAI_NODATA (a name with no address) is a GNU extension, and its
    // value differs between systems: it is matched by number on glibc only.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    const NODATA: i32 = -5;
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    const NODATA: i32 = libc::EAI_NONAME;
    if code == libc::EAI_NONAME || code == NODATA || code == libc::EAI_SERVICE {
        ResolveError::NoSuchName(detail)
    } else {
        ResolveError::Temporary(detail)
    }
}

#[cfg(not(unix))]
fn lookup(host: &str, port: u16) -> Result<Vec<SocketAddr>, ResolveError> {
    use std::net::ToSocketAddrs;
    // Windows Sockets: WSAHOST_NOT_FOUND and WSANO_DATA say the name does not
    // exist; anything else (WSATRY_AGAIN, no network) may pass.
    const WSAHOST_NOT_FOUND: i32 = 11001;
    const WSANO_DATA: i32 = 11004;
    match (host, port).to_socket_addrs() {
        Ok(addresses) => Ok(addresses.collect()),
        Err(error) => match error.raw_os_error() {
            Some(WSAHOST_NOT_FOUND | WSANO_DATA) => {
                Err(ResolveError::NoSuchName(format!("{host}: {error}")))
            }
            _ => Err(ResolveError::Temporary(format!("{host}: {error}"))),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numeric_addresses_and_localhost_resolve_without_a_name_server() {
        assert_eq!(
            resolve("127.0.0.1:80").unwrap(),
            ["127.0.0.1:80".parse().unwrap()]
        );
        assert_eq!(resolve("[::1]:9").unwrap(), ["[::1]:9".parse().unwrap()]);
        let local = resolve("localhost:7").unwrap();
        assert!(local.iter().all(|a| a.port() == 7 && a.ip().is_loopback()));
    }

    #[cfg(unix)]
    #[test]
    fn a_missing_name_is_an_error_and_a_resolver_failure_may_pass() {
        let no_name = classify(libc::EAI_NONAME, "x".into());
        assert_eq!(no_name, ResolveError::NoSuchName("x".into()));
        for code in [
            libc::EAI_AGAIN,
            libc::EAI_FAIL,
            libc::EAI_MEMORY,
            libc::EAI_SYSTEM,
        ] {
            assert!(
                matches!(classify(code, "x".into()), ResolveError::Temporary(_)),
                "{code}"
            );
        }
    }
}
