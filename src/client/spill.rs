//! The spill folder: files that cannot be delivered because no server is live
//! wait here on disk, and are sent again, oldest first, when a server is back.
//!
//! A spilled file is stored under its own name below the folder, written to a
//! temporary name and linked into place (never overwriting), so a crash leaves
//! either the whole file or nothing under the name. A later streamer given the
//! same folder finds the files and sends them. Only this module writes there.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::SystemTime;

use bytes::Bytes;

use super::job::Job;

const TEMP_PREFIX: &str = ".pyme-spill-";

/// A file waiting in the spill folder.
pub(crate) struct Spilled {
    pub name: String,
    pub path: PathBuf,
    pub bytes: u64,
}

/// The spill folder and the queue of files waiting in it, oldest first.
pub(crate) struct Spill {
    root: PathBuf,
    waiting: Mutex<VecDeque<Spilled>>,
    /// Signalled when a file is spilled or a server comes back.
    pub wake: Condvar,
    temp_counter: AtomicU64,
}

impl Spill {
    /// Opens (creating it if needed) the folder and finds the files a
    /// previous streamer left there, oldest first.
    pub fn open(root: &Path) -> std::io::Result<Spill> {
        std::fs::create_dir_all(root)?;
        let mut found = Vec::new();
        find_files(root, root, &mut found)?;
        found.sort_by(|a, b| (a.0, &a.1.name).cmp(&(b.0, &b.1.name)));
        Ok(Spill {
            root: root.to_owned(),
            waiting: Mutex::new(found.into_iter().map(|(_, spilled)| spilled).collect()),
            wake: Condvar::new(),
            temp_counter: AtomicU64::new(0),
        })
    }

    pub fn lock(&self) -> MutexGuard<'_, VecDeque<Spilled>> {
        self.waiting.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Writes `job` under its name (unless it came from here) and queues it.
    pub fn store(&self, job: &Job) -> std::io::Result<()> {
        let path = match &job.spill_path {
            Some(path) => path.clone(),
            None => self.write(&job.name, &job.data)?,
        };
        self.lock().push_back(Spilled {
            name: job.name.to_string(),
            path,
            bytes: job.len(),
        });
        self.wake.notify_all();
        Ok(())
    }

    fn write(&self, name: &str, data: &[u8]) -> std::io::Result<PathBuf> {
        let path = self.root.join(name);
        let folder = path.parent().unwrap_or(&self.root);
        std::fs::create_dir_all(folder)?;
        let unique = self.temp_counter.fetch_add(1, Ordering::Relaxed);
        let temp = folder.join(format!("{TEMP_PREFIX}{}-{unique}", std::process::id()));
        std::fs::write(&temp, data)?;
        // A hard link never replaces an existing file: nothing is overwritten.
        let linked = std::fs::hard_link(&temp, &path);
        let _ = std::fs::remove_file(&temp);
        linked.map(|()| path)
    }
}

/// Reads a spilled file back into a job that remembers where it came from.
pub(crate) fn load(spilled: &Spilled) -> std::io::Result<Job> {
    let data = std::fs::read(&spilled.path)?;
    let mut job = Job::new(&spilled.name, Bytes::from(data), None);
    job.spill_path = Some(spilled.path.clone());
    job.maybe_stored = true;
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
        if metadata.is_dir() {
            find_files(root, &path, found)?;
        } else if file_name.starts_with(TEMP_PREFIX) {
            // A write cut short by a crash: never linked under its name.
            let _ = std::fs::remove_file(&path);
        } else if let Ok(relative) = path.strip_prefix(root) {
            let name = relative
                .to_string_lossy()
                .replace(std::path::MAIN_SEPARATOR, "/");
            if crate::name::validate(&name).is_ok() {
                let modified = metadata.modified().unwrap_or(SystemTime::UNIX_EPOCH);
                let bytes = metadata.len();
                found.push((modified, Spilled { name, path, bytes }));
            }
        }
    }
    Ok(())
}
