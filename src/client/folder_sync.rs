//! Syncing folders of the spill folder to disk, several requests with one
//! `fsync` (a group commit).
//!
//! A file renamed (linked) into a folder is on disk only once the folder is
//! synced. Puts that spill at the same time (several camera threads, or the
//! link threads moving their queues to the folder) each need a sync of the
//! same folder after their own link: while one sync runs, the others wait, and
//! the next sync serves all of them at once. A request is served only by a
//! sync that began after it was made, so every link made before a request is
//! covered by the sync that answers it.
//!
//! In scope: folder syncs and their grouping. Out of scope: files (see
//! `spill`, which syncs a file's data itself before linking it).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex};

/// The folder syncs of one spill folder.
#[derive(Default)]
pub(crate) struct FolderSyncs {
    groups: Mutex<HashMap<PathBuf, Group>>,
    done: Condvar,
}

/// The requests for one folder.
#[derive(Default)]
struct Group {
    /// Requests made so far (each request's ticket is the count when made).
    requested: u64,
    /// Every request up to this ticket is served by a finished sync.
    served: u64,
    /// A sync of this folder is running.
    running: bool,
}

impl FolderSyncs {
    /// Returns once `folder` has been synced by a sync that began after this
    /// call did.
    pub fn sync(&self, folder: &Path) -> std::io::Result<()> {
        let mut groups = self.groups.lock().unwrap_or_else(|e| e.into_inner());
        let ticket = {
            let group = groups.entry(folder.to_owned()).or_default();
            group.requested += 1;
            group.requested
        };
        loop {
            let group = groups.get_mut(folder).expect("entries are never removed");
            if group.served >= ticket {
                return Ok(());
            }
            if !group.running {
                group.running = true;
                let covers = group.requested;
                drop(groups);
                let result = sync_folder(folder);
                groups = self.groups.lock().unwrap_or_else(|e| e.into_inner());
                let group = groups.get_mut(folder).expect("entries are never removed");
                group.running = false;
                if result.is_ok() {
                    group.served = group.served.max(covers);
                }
                // On failure a waiter becomes the next to try, and sees its own error.
                self.done.notify_all();
                return result;
            }
            groups = self.done.wait(groups).unwrap_or_else(|e| e.into_inner());
        }
    }
}

/// Syncs a folder's entries to disk.
#[cfg(unix)]
pub(crate) fn sync_folder(folder: &Path) -> std::io::Result<()> {
    std::fs::File::open(folder)?.sync_all()
}

/// Windows cannot sync a folder (NTFS journals its entries itself).
#[cfg(not(unix))]
pub(crate) fn sync_folder(_folder: &Path) -> std::io::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn every_request_of_many_threads_is_served() {
        let folder = tempfile::tempdir().unwrap();
        let syncs = Arc::new(FolderSyncs::default());
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let syncs = Arc::clone(&syncs);
                let folder = folder.path().to_owned();
                std::thread::spawn(move || {
                    for _ in 0..20 {
                        syncs.sync(&folder).unwrap();
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        let groups = syncs.groups.lock().unwrap();
        let group = &groups[folder.path()];
        assert_eq!(group.requested, 160);
        assert_eq!(group.served, 160);
        assert!(!group.running);
    }

    #[test]
    fn a_folder_that_cannot_be_synced_is_an_error() {
        let folder = tempfile::tempdir().unwrap();
        let syncs = FolderSyncs::default();
        assert!(syncs.sync(&folder.path().join("missing")).is_err());
    }
}
