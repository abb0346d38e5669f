//! One streamer per spill folder: the lock file `.pyme-lock` in the folder.
//!
//! The lock is `crate::lock_file`'s, the kind a data server takes on its
//! storage root, so a folder is a spill folder or a server's root, never both.
//! It is taken on an open file description, not on the process:
//! `fcntl(F_OFD_SETLK)` on Linux (`flock` on other Unixes), `LockFileEx` on
//! Windows. So a second streamer on the same folder is refused in the same
//! process as in another, and the lock ends with the descriptor: when the
//! streamer closes, or when its process dies, however it dies. A child forked
//! while the folder is locked does not keep it: the `fork` module's child
//! handler closes the child's copy of the descriptor.
//!
//! In scope: taking and releasing the lock. Out of scope: what the folder
//! holds (see `spill`, which locks before it sweeps anything).

use std::fs::File;
use std::path::Path;

use super::fork::{self, Born};
use crate::lock_file::{self, Holder, LockFailure};

/// The lock file's name in the spill folder: never sent, never swept.
pub(crate) const LOCK_FILE: &str = lock_file::LOCK_NAME;

/// Why the lock could not be taken.
#[derive(Debug)]
pub(crate) enum LockError {
    /// Another streamer, or a data server whose root the folder is, holds
    /// it: who, in words.
    Busy(String),
    /// The lock file could not be opened or locked.
    Io(std::io::Error),
}

/// The held lock of a spill folder; released when dropped.
pub(crate) struct FolderLock {
    file: Option<File>,
    born: Born,
    /// Where the `fork` child handler finds the descriptor to close.
    child_slot: Option<usize>,
}

impl FolderLock {
    /// Takes the lock of `folder` (which exists), or fails at once.
    pub fn acquire(folder: &Path) -> Result<FolderLock, LockError> {
        let born = Born::now();
        // Open, lock and register with no fork in between: a child forked
        // before the registration would keep the lock after we release it.
        let (file, child_slot) = fork::atomic_with_fork(|| {
            let file = lock_file::lock(folder, Holder::SpillFolder)?;
            #[cfg(unix)]
            let child_slot = fork::close_in_child(std::os::unix::io::AsRawFd::as_raw_fd(&file));
            #[cfg(not(unix))]
            let child_slot = None;
            Ok((file, child_slot))
        })
        .map_err(|e| match e {
            LockFailure::Busy(Some((holder, pid))) => LockError::Busy(holder.describe(pid)),
            LockFailure::Busy(None) => {
                LockError::Busy("another streamer or a data server".to_owned())
            }
            LockFailure::Io(e) => LockError::Io(e),
        })?;
        Ok(FolderLock {
            file: Some(file),
            born,
            child_slot,
        })
    }
}

impl Drop for FolderLock {
    fn drop(&mut self) {
        let Some(file) = self.file.take() else {
            return;
        };
        if self.born.forked() {
            // The child handler closed this descriptor already; its number
            // may belong to another file of the child now.
            #[cfg(unix)]
            let _ = std::os::unix::io::IntoRawFd::into_raw_fd(file);
            return;
        }
        // Unlocked first: a child forked a moment ago may not have closed
        // its copy yet, and would keep the lock past a plain close. Then
        // forgotten and closed with no fork in between (one forked after the
        // close would close a number reused by then).
        lock_file::unlock(&file);
        let slot = self.child_slot;
        fork::atomic_with_fork(move || {
            if let Some(slot) = slot {
                fork::forget_slot(slot);
            }
            drop(file);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_a_folder_is_busy_until_the_first_is_dropped() {
        let folder = tempfile::tempdir().unwrap();
        let first = FolderLock::acquire(folder.path()).unwrap();
        assert!(matches!(
            FolderLock::acquire(folder.path()),
            Err(LockError::Busy(_))
        ));
        drop(first);
        FolderLock::acquire(folder.path()).unwrap();
    }
}
