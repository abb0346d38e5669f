//! One data server per storage root: a lock on a hidden file in the root
//! ([`LOCK_NAME`]), taken at start and held while the server runs.
//!
//! Why: at start a server removes what a dead server left in its root (the sweep in
//! `recovery.rs`) and cuts torn appends back (`journal.rs`). Both are right only when
//! no other live server writes there; two servers on one root would also race for
//! names and appends outside this process's serialization. A second server on a root
//! in use, in another process or in this one, refuses to start; so does a server on
//! a folder a streamer uses as its spill folder (whose sweep would remove the
//! server's temporaries, and whose files it would send away), and a streamer refuses
//! a server's root as its spill folder.
//!
//! How: `crate::lock_file`, the one lock kind shared with the spill folder (an
//! exclusive lock on the open file description of `.pyme-lock`, released when the
//! process dies, however it dies, so a lock file left by a killed server never blocks
//! the next). The file itself stays (it is never listed, served, or swept).
//!
//! May not: decide anything about the files in the root.

use std::fs::File;
use std::io;
use std::path::Path;

use crate::lock_file::{self, Holder, LockFailure};

/// The lock file's name in the root. It starts with `name::RESERVED_PREFIX`, so no
/// request can name it and listings leave it out.
pub const LOCK_NAME: &str = lock_file::LOCK_NAME;

/// The lock on a storage root, held until dropped.
#[derive(Debug)]
pub(crate) struct RootLock {
    _file: File,
}

impl RootLock {
    /// Takes the lock of `root` (an existing folder), or fails with
    /// `ErrorKind::ResourceBusy` and a message naming the root and its holder
    /// (another server, or a streamer's spill folder) when it is held.
    pub(crate) fn acquire(root: &Path) -> io::Result<RootLock> {
        let path = root.join(LOCK_NAME);
        match lock_file::lock(root, Holder::DataServer) {
            Ok(file) => Ok(RootLock { _file: file }),
            Err(LockFailure::Busy(holder)) => {
                let who = match holder {
                    Some((Holder::DataServer, pid)) => {
                        format!("another data server ({})", Holder::DataServer.describe(pid))
                    }
                    Some((Holder::SpillFolder, pid)) => format!(
                        "a streamer's spill folder ({}); a spill folder is never a \
                         server's root",
                        Holder::SpillFolder.describe(pid)
                    ),
                    None => "another data server or a streamer's spill folder".to_owned(),
                };
                Err(io::Error::new(
                    io::ErrorKind::ResourceBusy,
                    format!(
                        "the storage root {} is in use by {who} (it holds the lock on {}); \
                         one server per root",
                        root.display(),
                        path.display()
                    ),
                ))
            }
            Err(LockFailure::Io(e)) => Err(e),
        }
    }
}

impl Drop for RootLock {
    fn drop(&mut self) {
        // A process forked by this one (about to exec a program) shares the
        // open file description until its exec: unlocked for every copy.
        lock_file::unlock(&self._file);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_a_root_is_refused_until_the_first_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let first = RootLock::acquire(dir.path()).unwrap();
        let refused = RootLock::acquire(dir.path()).unwrap_err();
        assert_eq!(refused.kind(), io::ErrorKind::ResourceBusy);
        assert!(refused
            .to_string()
            .contains("in use by another data server"));
        drop(first);
        RootLock::acquire(dir.path()).unwrap();
    }
}
