//! The spill folder on disk: files that cannot be delivered because no server
//! is live wait here, and are sent again, oldest first, when a server is back.
//!
//! A spilled file is stored under its own name below the folder, written to a
//! temporary name and linked into place (never overwriting), so a crash leaves
//! either the whole file or nothing under the name. A name's query part (after
//! `?`) is kept in the file name, hex-encoded after [`QUERY_MARK`], so that two
//! puts that differ only in their query are two files, and no character of a
//! query ever reaches a path. A later streamer given the same folder finds the
//! files and sends them.
//!
//! A file counts as spilled only once it is on disk: its data is synced before
//! it is linked under its name, then its folder is synced (with the link and
//! the temporary's removal), and every folder created for it is synced into
//! its parent first. Puts that spill together share folder syncs
//! (`folder_sync`). This runs on the thread that spills (a `put` when no
//! server is live).
//!
//! One streamer per folder: [`Spill::open`] takes the folder's lock
//! (`folder_lock`) before anything else, so the temporaries it sweeps
//! (`.pyme-spill-*`) are those of a dead process, never of a live one.
//!
//! In scope: the files in the folder. Out of scope: the queue of spilled files
//! and who waits on it (see `cluster`, which keeps it under the same lock as
//! the count of pending files). Only this module writes in the folder.

use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::SystemTime;

use bytes::Bytes;

use super::folder_lock::{FolderLock, LockError, LOCK_FILE};
use super::folder_sync::{sync_folder, FolderSyncs};
use super::job::Job;
use crate::Error;

const TEMP_PREFIX: &str = ".pyme-spill-";
/// Separates a stored name from its hex-encoded query in a spill file's name.
/// `~` is never part of a valid name, so the two cannot be confused.
pub(crate) const QUERY_MARK: &str = "~q";

/// A file waiting in the spill folder.
pub(crate) struct Spilled {
    /// The name as given to `put` (query included).
    pub name: String,
    pub path: PathBuf,
    pub bytes: u64,
    /// It may have been stored already (written to a connection that failed,
    /// or found in the folder, whose history is unknown).
    pub maybe_stored: bool,
    /// Connections that ended while it was in flight (see `Job::interrupted`):
    /// kept across the folder, so that a file every connection dies on still
    /// fails after its limit instead of circling through the folder.
    pub interrupted: u32,
    /// The index given to put, kept so that a filter (the PZF frame number) and
    /// the distribution see it again when the file is sent; `None` for a file
    /// found in the folder (a previous streamer's).
    pub index: Option<i64>,
}

/// The spill folder.
pub(crate) struct Spill {
    root: PathBuf,
    temp_counter: AtomicU64,
    /// Sync files and folders before a file counts as spilled (always, but
    /// for the benchmark that measures what syncing costs).
    sync: bool,
    syncs: FolderSyncs,
    /// Folders below the root whose own entry is known to be on disk.
    durable: Mutex<HashSet<PathBuf>>,
    /// Held until the streamer's close has ended ([`Spill::unlock`]), or
    /// until the streamer is dropped.
    lock: Mutex<Option<FolderLock>>,
}

impl Spill {
    /// Opens (creating it if needed) the folder, takes its lock, removes what
    /// a dead process left half-written, and returns the files a previous
    /// streamer left there, oldest first. [`Error::SpillBusy`] when another
    /// streamer (of this process or another) has it open.
    pub fn open(root: &Path, sync: bool) -> Result<(Spill, Vec<Spilled>), Error> {
        let problem = |e: std::io::Error| Error::SpillFolder(format!("{}: {e}", root.display()));
        std::fs::create_dir_all(root).map_err(problem)?;
        let lock = FolderLock::acquire(root).map_err(|error| match error {
            LockError::Busy(holder) => Error::SpillBusy {
                folder: root.display().to_string(),
                holder,
            },
            LockError::Io(e) => problem(e),
        })?;
        if sync {
            // The folder's own entry (it may be new).
            let parent = match root.parent() {
                Some(parent) if !parent.as_os_str().is_empty() => parent,
                _ => Path::new("."),
            };
            sync_folder(parent).map_err(problem)?;
        }
        let mut found = Vec::new();
        find_files(root, root, &mut found).map_err(problem)?;
        found.sort_by(|a, b| (a.0, &a.1.name).cmp(&(b.0, &b.1.name)));
        let spill = Spill {
            root: root.to_owned(),
            temp_counter: AtomicU64::new(0),
            sync,
            syncs: FolderSyncs::default(),
            durable: Mutex::new(HashSet::new()),
            lock: Mutex::new(Some(lock)),
        };
        Ok((
            spill,
            found.into_iter().map(|(_, spilled)| spilled).collect(),
        ))
    }

    /// Lets another streamer have the folder: called once this one's close
    /// has ended and nothing writes here any more (statistics probes may keep
    /// the streamer's memory alive for long after).
    pub fn unlock(&self) {
        let lock = self.lock.lock().unwrap_or_else(|e| e.into_inner()).take();
        drop(lock);
    }

    /// Writes `job` under its name (unless it came from here already).
    pub fn store(&self, job: &Job) -> std::io::Result<Spilled> {
        let path = match &job.spill_path {
            Some(path) => path.clone(),
            None => self.write(&job.name, &job.data)?,
        };
        Ok(Spilled {
            name: job.name.to_string(),
            path,
            bytes: job.len(),
            maybe_stored: job.maybe_stored,
            interrupted: job.interrupted,
            index: job.index,
        })
    }

    /// Writes `data` under `name`, on disk when it returns: data synced,
    /// then linked, then the folder synced (new folders synced into their
    /// parents first).
    fn write(&self, name: &str, data: &[u8]) -> std::io::Result<PathBuf> {
        let path = self.root.join(relative_path(name));
        let folder = path.parent().unwrap_or(&self.root);
        self.make_folder(folder)?;
        let unique = self.temp_counter.fetch_add(1, Ordering::Relaxed);
        let temp = folder.join(format!("{TEMP_PREFIX}{}-{unique}", std::process::id()));
        if let Err(error) = self.write_temporary(&temp, data) {
            // A full disk: no half-written temporary file stays behind to take
            // the room the next file needs.
            let _ = std::fs::remove_file(&temp);
            return Err(error);
        }
        // A hard link never replaces an existing file: nothing is overwritten.
        let linked = std::fs::hard_link(&temp, &path);
        let _ = std::fs::remove_file(&temp);
        linked?;
        if self.sync {
            if let Err(error) = self.syncs.sync(folder) {
                // Not surely on disk: it does not count as spilled, and a
                // later streamer must not find it either.
                let _ = std::fs::remove_file(&path);
                return Err(error);
            }
        }
        Ok(path)
    }

    fn write_temporary(&self, temp: &Path, data: &[u8]) -> std::io::Result<()> {
        let mut file = std::fs::File::create(temp)?;
        file.write_all(data)?;
        if self.sync {
            file.sync_data()?;
        }
        Ok(())
    }

    /// Creates `folder` (below the root) and the folders above it, and makes
    /// sure each one's entry is on disk: a folder is synced into its parent
    /// the first time this streamer needs it, by whichever thread needs it
    /// (a folder another thread just made counts only once that is done).
    fn make_folder(&self, folder: &Path) -> std::io::Result<()> {
        if folder == self.root || self.durable().contains(folder) {
            return Ok(());
        }
        std::fs::create_dir_all(folder)?;
        if !self.sync {
            return Ok(());
        }
        let mut chain: Vec<&Path> = folder
            .ancestors()
            .take_while(|dir| *dir != self.root && dir.starts_with(&self.root))
            .collect();
        chain.reverse();
        for dir in chain {
            if self.durable().contains(dir) {
                continue;
            }
            let parent = dir.parent().unwrap_or(&self.root);
            self.syncs.sync(parent)?;
            self.durable().insert(dir.to_owned());
        }
        Ok(())
    }

    fn durable(&self) -> std::sync::MutexGuard<'_, HashSet<PathBuf>> {
        self.durable.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Where a name is kept below the folder: its stored name, plus its query
/// hex-encoded after [`QUERY_MARK`]. The name has passed `name::validate`, so
/// the stored name is a relative path of plain segments.
fn relative_path(name: &str) -> String {
    match name.split_once('?') {
        None => name.to_owned(),
        Some((path, query)) => {
            let hex: String = query.bytes().map(|b| format!("{b:02x}")).collect();
            format!("{path}{QUERY_MARK}{hex}")
        }
    }
}

/// The name a file in the folder was put under, from its relative path; `None`
/// for a file this module did not write.
fn name_of(relative: &str) -> Option<String> {
    let name = match relative.rsplit_once(QUERY_MARK) {
        None => relative.to_owned(),
        Some((path, hex)) => {
            if hex.len() % 2 != 0 {
                return None;
            }
            let bytes: Option<Vec<u8>> = (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
                .collect();
            format!("{path}?{}", String::from_utf8(bytes?).ok()?)
        }
    };
    crate::name::validate(&name).ok().map(|()| name)
}

/// Reads a spilled file back into a job that remembers where it came from.
pub(crate) fn load(spilled: &Spilled) -> std::io::Result<Job> {
    let data = std::fs::read(&spilled.path)?;
    let mut job = Job::new(&spilled.name, Bytes::from(data), spilled.index);
    job.spill_path = Some(spilled.path.clone());
    job.maybe_stored = spilled.maybe_stored;
    job.interrupted = spilled.interrupted;
    Ok(job)
}

/// Removes a file that has been delivered.
pub(crate) fn delivered(path: &Path) {
    let _ = std::fs::remove_file(path);
}

fn find_files(
    root: &Path,
    dir: &Path,
    found: &mut Vec<(SystemTime, Spilled)>,
) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        let file_name = entry.file_name().to_string_lossy().into_owned();
        let metadata = entry.metadata()?;
        if dir == root && file_name == LOCK_FILE {
            // The folder's lock, held by this streamer: neither sent nor swept.
            continue;
        }
        if metadata.is_dir() {
            find_files(root, &path, found)?;
        } else if file_name.starts_with(TEMP_PREFIX) {
            // A write cut short by a crash: never linked under its name. The
            // folder is locked, so its writer is dead.
            let _ = std::fs::remove_file(&path);
        } else if let Ok(relative) = path.strip_prefix(root) {
            let relative = relative
                .to_string_lossy()
                .replace(std::path::MAIN_SEPARATOR, "/");
            if let Some(name) = name_of(&relative) {
                let modified = metadata.modified().unwrap_or(SystemTime::UNIX_EPOCH);
                let bytes = metadata.len();
                let spilled = Spilled {
                    name,
                    path,
                    bytes,
                    // Its history is unknown: it may have landed before.
                    maybe_stored: true,
                    interrupted: 0,
                    index: None,
                };
                found.push((modified, spilled));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_query_is_kept_in_the_file_name_and_read_back() {
        for name in ["a/b.txt", "t/tile?x=1&y=2", "q?a"] {
            let relative = relative_path(name);
            assert!(!relative.contains('?'), "{relative}");
            assert_eq!(name_of(&relative).as_deref(), Some(name));
        }
    }

    #[test]
    fn a_spilled_file_keeps_its_index() {
        // Lost before: a PZF frame sent from the folder was numbered 0.
        let dir = tempfile::tempdir().unwrap();
        let (spill, _) = Spill::open(dir.path(), true).unwrap();
        let job = Job::new("s/frame00007.pzf", Bytes::from_static(b"pixels"), Some(7));
        let spilled = spill.store(&job).unwrap();
        let back = load(&spilled).unwrap();
        assert_eq!(back.index, Some(7));
        assert_eq!(&back.data[..], b"pixels");
    }

    #[test]
    fn a_query_never_reaches_a_path() {
        // Were the query part of the path, this would climb out of the folder.
        let relative = relative_path("a?/../../x");
        assert_eq!(relative.matches('/').count(), 0, "{relative}");
    }

    #[test]
    fn a_spilled_file_is_found_again_with_its_query() {
        let folder = tempfile::tempdir().unwrap();
        let (spill, found) = Spill::open(folder.path(), true).unwrap();
        assert!(found.is_empty());
        let job = Job::new("run/tile?x=1", Bytes::from_static(b"abc"), None);
        let spilled = spill.store(&job).unwrap();
        assert!(spilled.path.starts_with(folder.path()));
        drop(spill);
        let (_, found) = Spill::open(folder.path(), true).unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].name, "run/tile?x=1");
        assert_eq!(found[0].bytes, 3);
        assert!(found[0].maybe_stored);
    }
}
