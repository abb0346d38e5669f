//! What a restart repairs: the start-up sweep of the storage root.
//!
//! A server killed while receiving files leaves their hidden temporary files
//! (`.pyme-part-*`, `fs.rs`), and one killed while appending may leave a torn tail
//! in an aggregated file (`journal.rs`). The sweep walks the whole root once at
//! start, on its own thread, and removes every temporary name that is not this
//! process's own (the root's lock, `lock.rs`, guarantees that no other live server
//! writes there), and cuts every journaled file back to its last whole append.
//!
//! Why a thread and not `O_TMPFILE`: an unnamed file linked on success leaves
//! nothing named behind, but only some file systems on Linux have it (not NFS, not
//! most FUSE ones, not other systems), so the named temporaries and thus the sweep
//! stay needed anyway; one way everywhere is simpler. (Spares, on a tmpfs, are
//! unnamed already.) The thread keeps the first answers from waiting on a walk of a
//! root with millions of files: the server accepts connections before the sweep
//! begins. An append reaching a file before the sweep does repairs it itself
//! (`journal::begin_append`); a reader may see a torn tail until the sweep passes.
//!
//! Observable in `/__status` (`sweep_done`, `sweep_temporaries_removed`,
//! `sweep_bytes_removed`, `sweep_appends_repaired`) and in the `serve` command's
//! log line when it ends. It stops early at shutdown (checked between entries).
//!
//! A folder holding a lock file is another server's root nested in this one: the
//! sweep leaves it to that server.
//!
//! May not: remove anything but temporary names, or follow a link.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use super::fs::{is_temp_name, own_temp_prefix};
use super::journal::JOURNAL_PREFIX;
use super::lock::LOCK_NAME;
use super::storage::Store;

/// What the sweep did, published as it goes.
#[derive(Debug, Default)]
pub(crate) struct SweepStatus {
    done: AtomicBool,
    temporaries_removed: AtomicU64,
    bytes_removed: AtomicU64,
    appends_repaired: AtomicU64,
}

/// What the start-up sweep has done, at one moment ([`DataServer::sweep_report`](super::DataServer::sweep_report)).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SweepReport {
    /// The sweep has walked the whole root (or the server is stopping).
    pub done: bool,
    /// Temporary files of dead processes removed.
    pub temporaries_removed: u64,
    /// Their size.
    pub bytes_removed: u64,
    /// Aggregated files cut back to their last whole append.
    pub appends_repaired: u64,
}

impl SweepStatus {
    /// A status for a server that does not sweep (`discard`): done at once.
    pub(crate) fn finished() -> SweepStatus {
        let status = SweepStatus::default();
        status.done.store(true, Ordering::SeqCst);
        status
    }

    pub(crate) fn report(&self) -> SweepReport {
        SweepReport {
            done: self.done.load(Ordering::SeqCst),
            temporaries_removed: self.temporaries_removed.load(Ordering::Relaxed),
            bytes_removed: self.bytes_removed.load(Ordering::Relaxed),
            appends_repaired: self.appends_repaired.load(Ordering::Relaxed),
        }
    }
}

/// Walks the root: removes the temporaries of dead processes, repairs journaled
/// files; sets `done` at the end. Errors on single entries are skipped (a file
/// removed meanwhile, a folder that cannot be read): the sweep is a cleanup.
pub(crate) fn sweep(store: &Store, stopping: &AtomicBool, status: &SweepStatus) {
    let own = own_temp_prefix();
    let mut folders: Vec<PathBuf> = vec![store.root().to_owned()];
    while let Some(folder) = folders.pop() {
        let Ok(entries) = fs::read_dir(&folder) else {
            continue;
        };
        for entry in entries.flatten() {
            if stopping.load(Ordering::Relaxed) {
                status.done.store(true, Ordering::SeqCst);
                return;
            }
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if kind.is_dir() {
                // Another server's root inside this one (its lock file): that server
                // sweeps it, and may be writing there now.
                if !entry.path().join(LOCK_NAME).exists() {
                    folders.push(entry.path());
                }
            } else if kind.is_file() && is_temp_name(&name) && !name.starts_with(own) {
                remove_temporary(&entry.path(), status);
            } else if kind.is_file() && name.starts_with(JOURNAL_PREFIX) {
                if let Ok(true) = store.recover_append(&entry.path()) {
                    status.appends_repaired.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }
    status.done.store(true, Ordering::SeqCst);
}

fn remove_temporary(path: &Path, status: &SweepStatus) {
    let size = fs::symlink_metadata(path).map_or(0, |m| m.len());
    if fs::remove_file(path).is_ok() {
        status.temporaries_removed.fetch_add(1, Ordering::Relaxed);
        status.bytes_removed.fetch_add(size, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sweep_removes_dead_temporaries_only() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        fs::create_dir_all(dir.path().join("a/b")).unwrap();
        let dead = [
            ".pyme-part-1-2",
            "a/.pyme-part-77-abc-3",
            "a/b/.pyme-part-9",
        ];
        for name in dead {
            fs::write(dir.path().join(name), b"12345").unwrap();
        }
        let own = super::super::fs::temp_path(&dir.path().join("a"));
        let kept = ["a/b/frame", ".pyme-lock", "a/.pyme-spill-x"];
        for name in kept {
            fs::write(dir.path().join(name), b"1").unwrap();
        }
        fs::write(&own, b"mine").unwrap();
        // Another server's root inside this one is left alone.
        fs::create_dir_all(dir.path().join("nested")).unwrap();
        fs::write(dir.path().join("nested/.pyme-lock"), b"").unwrap();
        fs::write(dir.path().join("nested/.pyme-part-5-6"), b"other").unwrap();
        let status = SweepStatus::default();
        sweep(&store, &AtomicBool::new(false), &status);
        let report = status.report();
        assert!(report.done);
        assert_eq!(report.temporaries_removed, 3);
        assert_eq!(report.bytes_removed, 15);
        for name in dead {
            assert!(!dir.path().join(name).exists(), "{name} left");
        }
        for name in kept {
            assert!(dir.path().join(name).exists(), "{name} removed");
        }
        assert!(own.exists(), "this process's own temporary removed");
        assert!(dir.path().join("nested/.pyme-part-5-6").exists());
    }
}
