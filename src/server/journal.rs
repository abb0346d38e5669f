//! Crash safety of appends: after any crash and restart, a file the server appends
//! to holds only whole appended bodies.
//!
//! Beside each such file, a hidden journal (`.pyme-len-<name>`, see [`journal_path`])
//! records the file's length after its last whole append. An append goes:
//!
//! 1. [`begin_append`]: the journal is read. A file longer than it records holds the
//!    torn tail of an append that a crash cut (the server was killed while copying):
//!    the file is cut back to the recorded length. A missing or unreadable journal is
//!    written with the file's length as it is (a first append, or a file made by an
//!    older server).
//! 2. The caller appends the body.
//! 3. [`AppendGuard::commit`]: the journal records the new length. Only then may the
//!    append be acknowledged. A guard dropped without commit (the copy failed: a full
//!    disk) cuts the file back at once.
//!
//! The check of step 1 runs on every append (one small read), so a restarted server
//! repairs a file when it is first appended to; the start-up sweep (`recovery.rs`)
//! calls [`recover`] on every journal it finds, so that readers see the repaired
//! file too, soon after a start.
//!
//! With `sync` (the server's `--fsync`), the body is synced before the journal
//! records it, and the journal's record is synced before the commit returns: a 200
//! then survives a power cut too, and a record the journal holds never covers bytes
//! that were not on the disk. Without it, the order of the writes is kept by the
//! page cache, which survives the server's crash but not the machine's.
//!
//! General for any aggregated format whose files only grow (text logs today; a
//! format that rewrites its file in place needs more than a length). Callers
//! serialize appends to one file (`Store`'s lock): the journal is not a lock.
//!
//! May not: decide which files are appended to, or touch any other file.

use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};

/// Journals start with this (inside `name::RESERVED_PREFIX`: never listed, never
/// named by a request).
pub(crate) const JOURNAL_PREFIX: &str = ".pyme-len-";

/// The journal's first bytes, then the length (u64, little-endian), then the length
/// mixed with [`CHECK`] (a torn or foreign record is not taken for a length), then
/// the appended file's name.
const MAGIC: &[u8; 8] = b"PYMELEN1";
const CHECK: u64 = 0x9e37_79b9_7f4a_7c15;
const RECORD_AT: u64 = 8;
const HEADER_BYTES: usize = 24;
/// The longest name a folder entry may have (`NAME_MAX`).
const NAME_MAX: usize = 255;

/// Where the journal of `target` lives: beside it, named after it; a name too long
/// for that is replaced by a hash (the journal holds the full name anyway).
pub(crate) fn journal_path(target: &Path) -> io::Result<PathBuf> {
    let name = target
        .file_name()
        .ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?
        .to_string_lossy();
    let journal = if JOURNAL_PREFIX.len() + name.len() <= NAME_MAX {
        format!("{JOURNAL_PREFIX}{name}")
    } else {
        format!("{JOURNAL_PREFIX}~{:016x}", fnv1a(name.as_bytes()))
    };
    Ok(target.with_file_name(journal))
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// An append under way: committed, or cut back when dropped.
#[derive(Debug)]
pub(crate) struct AppendGuard<'a> {
    target: &'a File,
    journal: File,
    before: u64,
    sync: bool,
    created_journal: bool,
    committed: bool,
}

/// Prepares an append to `target` (open, at `target_path`): repairs a torn tail
/// left by a crash, and makes sure the journal records the length before the
/// append. See the module's steps.
pub(crate) fn begin_append<'a>(
    target_path: &Path,
    target: &'a File,
    sync: bool,
) -> io::Result<AppendGuard<'a>> {
    let path = journal_path(target_path)?;
    let (journal, created_journal) = open_journal(&path)?;
    let current = target.metadata()?.len();
    let before = match read_record(&journal)? {
        Some(recorded) if recorded < current => {
            // The torn tail of an append a crash cut.
            target.set_len(recorded)?;
            if sync {
                target.sync_data()?;
            }
            recorded
        }
        Some(recorded) if recorded == current => current,
        // No record yet, a torn one, or a file shorter than recorded (bytes an
        // unsynced append lost in a power cut): the file as it is starts over.
        _ => {
            let name = target_path.file_name().unwrap_or_default();
            write_header(&journal, &name.to_string_lossy(), current)?;
            if sync {
                journal.sync_data()?;
            }
            current
        }
    };
    Ok(AppendGuard {
        target,
        journal,
        before,
        sync,
        created_journal,
        committed: false,
    })
}

impl AppendGuard<'_> {
    /// The file's length before this append.
    #[cfg(test)]
    pub(crate) fn before(&self) -> u64 {
        self.before
    }

    /// Whether the journal was made by this append (its folder entry is new, and
    /// needs a sync of the folder under `--fsync`).
    pub(crate) fn created_journal(&self) -> bool {
        self.created_journal
    }

    /// Records the append as whole: syncs the file's data (with `sync`), then
    /// records its new length, synced likewise. On an error the append is cut back.
    pub(crate) fn commit(mut self) -> io::Result<()> {
        let after = self.target.metadata()?.len();
        if self.sync {
            self.target.sync_data()?;
        }
        write_length(&self.journal, after)?;
        if self.sync {
            self.journal.sync_data()?;
        }
        self.committed = true;
        Ok(())
    }
}

impl Drop for AppendGuard<'_> {
    fn drop(&mut self) {
        if !self.committed {
            // All or nothing: the file never keeps half a record that the client
            // then sends again (or elsewhere). Best effort on Windows, where a file
            // opened to append may refuse it; the next append repairs it then.
            let _ = self.target.set_len(self.before);
        }
    }
}

/// Repairs the file a journal found at start belongs to: cuts it back to the
/// recorded length when longer. True when it was cut. A journal whose file is gone
/// is removed; one that cannot be read is left for the next append to rewrite.
/// The caller holds the appends' lock.
pub(crate) fn recover(journal_path: &Path) -> io::Result<bool> {
    let journal = File::open(journal_path)?;
    let Some(recorded) = read_record(&journal)? else {
        return Ok(false);
    };
    let name = read_name(&journal)?;
    if name.is_empty() || name.contains(['/', '\\']) || name == "." || name == ".." {
        return Ok(false);
    }
    let target_path = journal_path.with_file_name(&name);
    let target = match open_to_cut(&target_path) {
        Ok(target) => target,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            drop(journal);
            std::fs::remove_file(journal_path)?;
            return Ok(false);
        }
        Err(e) => return Err(e),
    };
    let metadata = target.metadata()?;
    if !metadata.is_file() || metadata.len() <= recorded {
        return Ok(false);
    }
    target.set_len(recorded)?;
    Ok(true)
}

#[cfg(unix)]
fn open_journal(path: &Path) -> io::Result<(File, bool)> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut options = OpenOptions::new();
    options
        .read(true)
        .write(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW);
    open_or_create(&mut options, path)
}

#[cfg(not(unix))]
fn open_journal(path: &Path) -> io::Result<(File, bool)> {
    let mut options = OpenOptions::new();
    options.read(true).write(true);
    open_or_create(&mut options, path)
}

fn open_or_create(options: &mut OpenOptions, path: &Path) -> io::Result<(File, bool)> {
    match options.clone().create_new(true).open(path) {
        Ok(file) => Ok((file, true)),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok((options.open(path)?, false)),
        Err(e) => Err(e),
    }
}

#[cfg(unix)]
fn open_to_cut(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
}

#[cfg(not(unix))]
fn open_to_cut(path: &Path) -> io::Result<File> {
    OpenOptions::new().write(true).open(path)
}

/// The recorded length, or `None` when the journal is empty, foreign or torn.
fn read_record(journal: &File) -> io::Result<Option<u64>> {
    let mut header = [0u8; HEADER_BYTES];
    match read_at(journal, &mut header, 0) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let word = |at: usize| u64::from_le_bytes(header[at..at + 8].try_into().unwrap_or_default());
    let (length, check) = (word(8), word(16));
    Ok((&header[..8] == MAGIC && check == length ^ CHECK).then_some(length))
}

fn read_name(journal: &File) -> io::Result<String> {
    use std::io::{Read, Seek, SeekFrom};
    let mut journal = journal;
    journal.seek(SeekFrom::Start(HEADER_BYTES as u64))?;
    let mut name = Vec::new();
    journal.take(NAME_MAX as u64 * 4).read_to_end(&mut name)?;
    Ok(String::from_utf8_lossy(&name).into_owned())
}

fn write_header(journal: &File, name: &str, length: u64) -> io::Result<()> {
    let mut bytes = Vec::with_capacity(HEADER_BYTES + name.len());
    bytes.extend_from_slice(MAGIC);
    bytes.extend_from_slice(&record(length));
    bytes.extend_from_slice(name.as_bytes());
    journal.set_len(0)?;
    write_at(journal, &bytes, 0)
}

/// Rewrites the length and its check (16 bytes in one write, inside one sector).
fn write_length(journal: &File, length: u64) -> io::Result<()> {
    write_at(journal, &record(length), RECORD_AT)
}

fn record(length: u64) -> [u8; 16] {
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&length.to_le_bytes());
    bytes[8..].copy_from_slice(&(length ^ CHECK).to_le_bytes());
    bytes
}

#[cfg(unix)]
fn write_at(file: &File, bytes: &[u8], offset: u64) -> io::Result<()> {
    std::os::unix::fs::FileExt::write_all_at(file, bytes, offset)
}

#[cfg(unix)]
fn read_at(file: &File, bytes: &mut [u8], offset: u64) -> io::Result<()> {
    std::os::unix::fs::FileExt::read_exact_at(file, bytes, offset)
}

#[cfg(not(unix))]
fn write_at(file: &File, bytes: &[u8], offset: u64) -> io::Result<()> {
    use std::io::{Seek, SeekFrom, Write};
    let mut file = file;
    file.seek(SeekFrom::Start(offset))?;
    file.write_all(bytes)
}

#[cfg(not(unix))]
fn read_at(file: &File, bytes: &mut [u8], offset: u64) -> io::Result<()> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = file;
    file.seek(SeekFrom::Start(offset))?;
    file.read_exact(bytes)
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn appendable(path: &Path) -> File {
        OpenOptions::new()
            .append(true)
            .create(true)
            .open(path)
            .unwrap()
    }

    #[test]
    fn a_torn_append_is_cut_back_by_the_next_append_and_by_recover() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.txt");
        let file = appendable(&path);
        let guard = begin_append(&path, &file, false).unwrap();
        (&file).write_all(b"one\n").unwrap();
        guard.commit().unwrap();
        // A crash in the middle of the next append: the guard is forgotten, as a
        // killed process would leave it.
        let guard = begin_append(&path, &file, false).unwrap();
        (&file).write_all(b"tw").unwrap();
        std::mem::forget(guard);
        assert_eq!(std::fs::read(&path).unwrap(), b"one\ntw");
        assert!(recover(&journal_path(&path).unwrap()).unwrap());
        assert_eq!(std::fs::read(&path).unwrap(), b"one\n");
        // The same repair on the next append, without the sweep.
        let guard = begin_append(&path, &file, false).unwrap();
        (&file).write_all(b"tw").unwrap();
        std::mem::forget(guard);
        let guard = begin_append(&path, &file, true).unwrap();
        assert_eq!(guard.before(), 4);
        (&file).write_all(b"two\n").unwrap();
        guard.commit().unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"one\ntwo\n");
        // A failed append (dropped guard) is cut back at once.
        let guard = begin_append(&path, &file, false).unwrap();
        (&file).write_all(b"thr").unwrap();
        drop(guard);
        assert_eq!(std::fs::read(&path).unwrap(), b"one\ntwo\n");
    }

    #[test]
    fn a_long_name_gets_a_hashed_journal_that_recover_still_follows() {
        let dir = tempfile::tempdir().unwrap();
        let name = "x".repeat(250);
        let path = dir.path().join(&name);
        let journal = journal_path(&path).unwrap();
        assert!(journal.file_name().unwrap().len() <= NAME_MAX);
        let file = appendable(&path);
        begin_append(&path, &file, false).unwrap().commit().unwrap();
        let guard = begin_append(&path, &file, false).unwrap();
        (&file).write_all(b"torn").unwrap();
        std::mem::forget(guard);
        assert!(recover(&journal).unwrap());
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 0);
        // A journal whose file is gone is removed.
        std::fs::remove_file(&path).unwrap();
        assert!(!recover(&journal).unwrap());
        assert!(!journal.exists());
    }
}
