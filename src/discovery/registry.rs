//! The local registry: the SQLite file through which servers on one computer advertise
//! themselves (`<temp dir>/_pyme-http.sqlite`, shared with PYME's own data servers).
//!
//! The only module that touches that file. Its layout is PYME's: one table
//! `dns (name TEXT, address TEXT, port INTEGER, creation_time FLOAT, URI TEXT)`; a
//! server inserts a row (`creation_time` in seconds since the Unix epoch, `URI` empty,
//! `address` a dotted IPv4 address, which PYME's reader requires) and deletes every row
//! of its name on shutdown. Readers take the newest row of each name.
//!
//! Reading never creates the file or the table, and waits at most [`BUSY_TIMEOUT`] for a
//! lock held by another process.
//!
//! A server killed without its shutdown leaves its row behind. So, as PYME's own server
//! does, [`register`] first removes the rows of servers that are gone: rows on an
//! address of this computer (loopback, or one it can bind) whose port refuses a TCP
//! connection. Rows on other computers' addresses, and ports that do not answer at
//! all within [`PROBE_TIMEOUT`], are left alone: only a refusal proves a server gone.

use std::net::{IpAddr, SocketAddr, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, OpenFlags, OptionalExtension};

use super::{DiscoveryError, ServerInfo};

/// The registry's file name in the system temp dir, as PYME names it.
pub const FILE_NAME: &str = "_pyme-http.sqlite";

/// How long a reader or writer waits for another process's lock on the file.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(1);

/// How long [`register`] waits for a registered port to accept or refuse.
pub const PROBE_TIMEOUT: Duration = Duration::from_millis(250);

/// PYME's table, created by the first writer.
const CREATE_TABLE: &str = "CREATE TABLE IF NOT EXISTS dns \
     (name TEXT, address TEXT, port INTEGER, creation_time FLOAT, URI TEXT)";

/// `<std::env::temp_dir()>/_pyme-http.sqlite`.
pub fn default_path() -> PathBuf {
    std::env::temp_dir().join(FILE_NAME)
}

/// The servers in the registry at `path`, the newest row of each name, ordered by name.
/// A missing file or table means no servers. Rows with a missing name, an invalid
/// port or an address that is neither an IP address nor a plausible host name
/// ([`is_plausible_address`]) are skipped: the file is shared, anyone may write it.
pub fn read(path: &Path) -> Result<Vec<ServerInfo>, DiscoveryError> {
    if !path.exists() {
        return Ok(Vec::new());
    }
    let error = |e: rusqlite::Error| registry_error(path, e);
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags).map_err(error)?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(error)?;
    let has_table = conn
        .query_row(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'dns'",
            [],
            |_| Ok(()),
        )
        .optional()
        .map_err(error)?
        .is_some();
    if !has_table {
        return Ok(Vec::new());
    }
    // NULL creation times sort last in descending order, so the first row of a name is
    // its newest.
    let mut statement = conn
        .prepare("SELECT name, address, port FROM dns ORDER BY name, creation_time DESC")
        .map_err(error)?;
    let rows = statement
        .query_map([], |row| {
            Ok((
                row.get::<_, Option<String>>(0)?,
                row.get::<_, Option<String>>(1)?,
                row.get::<_, Option<i64>>(2)?,
            ))
        })
        .map_err(error)?;
    let mut servers: Vec<ServerInfo> = Vec::new();
    for row in rows {
        let (name, address, port) = row.map_err(error)?;
        let Some(name) = name else { continue };
        if servers.last().is_some_and(|last| last.name == name) {
            continue; // an older row of the same name
        }
        let port = port.and_then(|p| u16::try_from(p).ok()).filter(|&p| p != 0);
        let address = address.filter(|a| is_plausible_address(a));
        if let (Some(address), Some(port)) = (address, port) {
            servers.push(ServerInfo {
                name,
                address,
                port,
            });
        }
    }
    Ok(servers)
}

/// Whether `address` is an IP address or a plausible host name: labels of ASCII
/// letters, digits, `-` and `_` separated by dots, 253 characters at most. PYME
/// writes dotted IPv4 addresses, which pass.
pub fn is_plausible_address(address: &str) -> bool {
    address.parse::<IpAddr>().is_ok()
        || (address.len() <= 253
            && address.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            }))
}

/// A row in the registry, deleted (with every other row of its name) when dropped.
#[derive(Debug)]
#[must_use = "the registry row is deleted when the entry is dropped"]
pub struct RegistryEntry {
    path: PathBuf,
    name: String,
    removed: bool,
}

/// Inserts the row `name, address, port, <now>, ''` into the registry at `path`,
/// creating the file and the table if needed.
pub fn register(
    path: &Path,
    name: &str,
    address: &str,
    port: u16,
) -> Result<RegistryEntry, DiscoveryError> {
    let error = |e: rusqlite::Error| registry_error(path, e);
    let conn = Connection::open(path).map_err(error)?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(error)?;
    conn.execute(CREATE_TABLE, []).map_err(error)?;
    remove_gone_servers(&conn).map_err(error)?;
    let now = unix_now();
    conn.execute(
        "INSERT INTO dns VALUES (?1, ?2, ?3, ?4, '')",
        rusqlite::params![name, address, port, now],
    )
    .map_err(error)?;
    Ok(RegistryEntry {
        path: path.to_owned(),
        name: name.to_owned(),
        removed: false,
    })
}

impl RegistryEntry {
    /// The registered name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The registry file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Deletes the rows now, reporting failure (dropping does the same, silently).
    pub fn remove(mut self) -> Result<(), DiscoveryError> {
        self.removed = true;
        self.delete_rows()
    }

    fn delete_rows(&self) -> Result<(), DiscoveryError> {
        let error = |e: rusqlite::Error| registry_error(&self.path, e);
        // Never re-create a registry that someone deleted meanwhile.
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(&self.path, flags).map_err(error)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(error)?;
        conn.execute("DELETE FROM dns WHERE name = ?1", [&self.name])
            .map_err(error)?;
        Ok(())
    }
}

impl Drop for RegistryEntry {
    fn drop(&mut self) {
        // Nothing to report to from a destructor; a stale row is dropped by readers'
        // connection probe anyway.
        if !self.removed {
            let _ = self.delete_rows();
        }
    }
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Deletes the rows whose server is provably gone (see the module documentation).
/// Rows written after the probes began are kept: a new server may have taken the port.
fn remove_gone_servers(conn: &Connection) -> rusqlite::Result<()> {
    let probes_began = unix_now();
    let mut statement = conn.prepare("SELECT DISTINCT address, port FROM dns")?;
    let rows = statement.query_map([], |row| {
        Ok((
            row.get::<_, Option<String>>(0)?,
            row.get::<_, Option<i64>>(1)?,
        ))
    })?;
    let mut gone = Vec::new();
    for row in rows {
        let (Some(address), Some(port)) = row? else {
            continue;
        };
        let Ok(ip) = address.parse::<IpAddr>() else {
            continue;
        };
        let Ok(port) = u16::try_from(port) else {
            continue;
        };
        if port != 0 && is_this_computer(ip) && refuses(SocketAddr::new(ip, port)) {
            gone.push((address, port));
        }
    }
    drop(statement);
    for (address, port) in gone {
        conn.execute(
            "DELETE FROM dns WHERE address = ?1 AND port = ?2 \
             AND (creation_time IS NULL OR creation_time < ?3)",
            rusqlite::params![address, port, probes_began],
        )?;
    }
    Ok(())
}

/// Whether `ip` is an address of this computer: loopback, or one a socket can bind
/// (binding sends nothing).
fn is_this_computer(ip: IpAddr) -> bool {
    ip.is_loopback() || (!ip.is_unspecified() && UdpSocket::bind((ip, 0)).is_ok())
}

/// Whether a TCP connection to `address` is refused (nothing listens there).
fn refuses(address: SocketAddr) -> bool {
    matches!(
        TcpStream::connect_timeout(&address, PROBE_TIMEOUT),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused
    )
}

fn registry_error(path: &Path, error: rusqlite::Error) -> DiscoveryError {
    DiscoveryError::Registry {
        path: path.to_owned(),
        detail: error.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    fn names(path: &Path) -> Vec<String> {
        let conn = Connection::open(path).unwrap();
        let mut statement = conn.prepare("SELECT name FROM dns ORDER BY name").unwrap();
        let names = statement
            .query_map([], |row| row.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        names
    }

    #[test]
    fn a_starting_server_removes_rows_of_servers_that_are_gone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        let alive = TcpListener::bind("127.0.0.1:0").unwrap();
        let dead_port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let port = alive.local_addr().unwrap().port();
        let conn = Connection::open(&path).unwrap();
        conn.execute(CREATE_TABLE, []).unwrap();
        let insert = |name: &str, address: Option<&str>, port: Option<u16>| {
            conn.execute(
                "INSERT INTO dns VALUES (?1, ?2, ?3, 1.0, '')",
                rusqlite::params![name, address, port],
            )
            .unwrap();
        };
        insert("alive", Some("127.0.0.1"), Some(port));
        // Left by a server killed without its shutdown.
        insert("gone", Some("127.0.0.1"), Some(dead_port));
        // Another computer's address (TEST-NET-1): never probed, kept.
        insert("elsewhere", Some("192.0.2.1"), Some(dead_port));
        insert("odd", None, None);
        assert_eq!(names(&path), ["alive", "elsewhere", "gone", "odd"]);

        let _new = register(&path, "new", "127.0.0.1", port).unwrap();

        assert_eq!(names(&path), ["alive", "elsewhere", "new", "odd"]);
        let found: Vec<_> = read(&path).unwrap().into_iter().map(|s| s.name).collect();
        assert!(!found.contains(&"gone".to_owned()), "{found:?}");
    }

    #[test]
    fn rows_with_implausible_addresses_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        let conn = Connection::open(&path).unwrap();
        conn.execute(CREATE_TABLE, []).unwrap();
        for (name, address) in [
            ("nul", "1.2.3.4\0x"),
            ("space", "a host"),
            ("empty", ""),
            ("dots", "a..b"),
            ("ipv4", "192.0.2.1"),
            ("ipv6", "::1"),
            ("host", "data-1.example_lab.local"),
        ] {
            conn.execute(
                "INSERT INTO dns VALUES (?1, ?2, 1, 1.0, '')",
                rusqlite::params![name, address],
            )
            .unwrap();
        }
        let found: Vec<_> = read(&path).unwrap().into_iter().map(|s| s.name).collect();
        assert_eq!(found, ["host", "ipv4", "ipv6"]);
    }
}
