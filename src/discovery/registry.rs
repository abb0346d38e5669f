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

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, OpenFlags, OptionalExtension};

use super::{DiscoveryError, ServerInfo};

/// The registry's file name in the system temp dir, as PYME names it.
pub const FILE_NAME: &str = "_pyme-http.sqlite";

/// How long a reader or writer waits for another process's lock on the file.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(1);

/// PYME's table, created by the first writer.
const CREATE_TABLE: &str = "CREATE TABLE IF NOT EXISTS dns \
     (name TEXT, address TEXT, port INTEGER, creation_time FLOAT, URI TEXT)";

/// `<std::env::temp_dir()>/_pyme-http.sqlite`.
pub fn default_path() -> PathBuf {
    std::env::temp_dir().join(FILE_NAME)
}

/// The servers in the registry at `path`, the newest row of each name, ordered by name.
/// A missing file or table means no servers. Rows with a missing name or address or an
/// invalid port are skipped.
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
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
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

fn registry_error(path: &Path, error: rusqlite::Error) -> DiscoveryError {
    DiscoveryError::Registry {
        path: path.to_owned(),
        detail: error.to_string(),
    }
}
