//! One data server per storage root: a lock on a hidden file in the root
//! ([`LOCK_NAME`]), taken at start and held while the server runs.
//!
//! Why: at start a server removes what a dead server left in its root (the sweep in
//! `recovery.rs`) and cuts torn appends back (`journal.rs`). Both are right only when
//! no other live server writes there; two servers on one root would also race for
//! names and appends outside this process's serialization. A second server on a root
//! in use, in another process or in this one, refuses to start.
//!
//! How: on Unix an exclusive `flock(2)` on `.pyme-lock`, which belongs to the open
//! file (two opens of the file conflict, in one process too) and which the system
//! releases when the process dies, however it dies, so a lock file left by a killed
//! server never blocks the next. On Windows the file is opened with no sharing at
//! all: a second open fails while the first is held, and the system closes it when
//! the process ends. The file itself stays (it is never listed, served, or swept).
//!
//! May not: decide anything about the files in the root.

use std::fs::{File, OpenOptions};
use std::io;
use std::path::Path;

/// The lock file's name in the root. It starts with `name::RESERVED_PREFIX`, so no
/// request can name it and listings leave it out.
pub const LOCK_NAME: &str = ".pyme-lock";

/// The lock on a storage root, held until dropped.
#[derive(Debug)]
pub(crate) struct RootLock {
    _file: File,
}

impl RootLock {
    /// Takes the lock of `root` (an existing folder), or fails with
    /// `ErrorKind::ResourceBusy` and a message naming the root when another server
    /// holds it.
    pub(crate) fn acquire(root: &Path) -> io::Result<RootLock> {
        let path = root.join(LOCK_NAME);
        match try_lock(&path) {
            Ok(file) => Ok(RootLock { _file: file }),
            Err(e) if is_busy(&e) => Err(io::Error::new(
                io::ErrorKind::ResourceBusy,
                format!(
                    "the storage root {} is in use by another data server (it holds the \
                     lock on {}); one server per root",
                    root.display(),
                    path.display()
                ),
            )),
            Err(e) => Err(e),
        }
    }
}

#[cfg(unix)]
fn try_lock(path: &Path) -> io::Result<File> {
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::OpenOptionsExt;
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)?;
    // SAFETY: a plain system call on a descriptor this function owns.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc == 0 {
        Ok(file)
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(unix)]
fn is_busy(error: &io::Error) -> bool {
    error.raw_os_error() == Some(libc::EWOULDBLOCK)
}

#[cfg(windows)]
fn try_lock(path: &Path) -> io::Result<File> {
    use std::os::windows::fs::OpenOptionsExt;
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .share_mode(0)
        .open(path)
}

#[cfg(windows)]
fn is_busy(error: &io::Error) -> bool {
    /// ERROR_SHARING_VIOLATION: the file is open elsewhere without sharing.
    const SHARING_VIOLATION: i32 = 32;
    error.raw_os_error() == Some(SHARING_VIOLATION)
}

#[cfg(not(any(unix, windows)))]
fn try_lock(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
}

#[cfg(not(any(unix, windows)))]
fn is_busy(_error: &io::Error) -> bool {
    false
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
