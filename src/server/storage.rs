//! The data server's files: turning a request path into a place under the root,
//! write-once storage, appending, and folder listings.
//!
//! With `spares.rs`, the only server module that writes to the file system (`status`
//! reads the disk usage, `mounts` the mount table); the system calls both need are in
//! `fs.rs`. It knows nothing of sockets or HTTP.
//!
//! Write-once is enforced without a lock: a body is written to a hidden temporary file
//! in the destination folder and then moved to its real name without replacing
//! anything (`renameat2(RENAME_NOREPLACE)`, or a hard link where that is missing),
//! which fails if the name exists. Of two writers racing for one name, exactly one
//! wins; a reader never sees a half-written file under a real name.
//!
//! Appends are journaled (`journal.rs`), so a crash never leaves part of a body in
//! the file. With `sync` ([`Store::set_sync`], the server's `--fsync`) a stored
//! file's data and every folder entry it needed, and an appended body and its
//! length record, are synced before the store returns; see docs/SERVER.md,
//! "What a 200 means".

use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

#[cfg(not(unix))]
use super::fs::make_read_only;
#[cfg(target_os = "linux")]
use super::fs::rename_noreplace;
#[cfg(target_os = "linux")]
use super::fs::unnamed_file;
use super::fs::{create_temp, is_reserved_name, link_unnamed, sync_folder, temp_path};
use super::journal;
use crate::name;

/// How a write-once store ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    /// The file is now under its name.
    New,
    /// The name was already taken; nothing was changed.
    AlreadyExists,
}

/// The storage root and what is done in it.
#[derive(Debug)]
pub struct Store {
    root: PathBuf,
    /// Held while an `__aggregate_txt` body is appended, or a journaled file repaired.
    appending: Mutex<()>,
    /// Set with `sync`: the folders known to be on the disk.
    durable: Option<Arc<Durable>>,
}

/// Under `--fsync`: the folders whose own entry (in their parent, and so on up to
/// the root) is known to be synced, so that the chain is synced once per folder, not
/// per file. A folder made by another connection, or by a process that crashed
/// before syncing it, is synced by the first file stored in it.
#[derive(Debug)]
struct Durable {
    root: PathBuf,
    known: Mutex<HashSet<PathBuf>>,
}

impl Durable {
    /// Syncs `folder`'s entries (a file just named in it), and the chain above it.
    fn sync_entries_of(&self, folder: &Path) -> io::Result<()> {
        sync_folder(folder)?;
        self.make_reachable(folder)
    }

    /// Syncs, once, the entry of `folder` in its parent, and so on up to the root.
    fn make_reachable(&self, folder: &Path) -> io::Result<()> {
        let mut synced = Vec::new();
        let mut current = folder;
        while current != self.root && current.starts_with(&self.root) {
            if self.lock().contains(current) {
                break;
            }
            let Some(parent) = current.parent() else {
                break;
            };
            sync_folder(parent)?;
            synced.push(current.to_owned());
            current = parent;
        }
        self.lock().extend(synced);
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashSet<PathBuf>> {
        self.known.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The folder of the latest file one connection stored, resolved
/// ([`Store::confined`]). Kept per connection; a folder replaced by a link after it
/// was resolved is the local-user race that `confined` documents.
#[derive(Debug, Default)]
pub struct FolderCache {
    last: Option<(PathBuf, PathBuf)>,
}

/// How an append ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Appended {
    Done,
    /// The file was stored write-once (by a plain PUT); nothing was changed.
    WriteOnce,
}

impl Store {
    /// Opens (creating if needed) the storage root.
    /// A root longer than [`name::MAX_ROOT_BYTES`] is refused: with the longest name
    /// below it, a path could pass `PATH_MAX`, and a name the client accepts fail here.
    pub fn open(root: &Path) -> io::Result<Store> {
        fs::create_dir_all(root)?;
        let root = root.canonicalize()?;
        if root.as_os_str().len() > name::MAX_ROOT_BYTES {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "the storage root's path is longer than {} bytes",
                    name::MAX_ROOT_BYTES
                ),
            ));
        }
        Ok(Store {
            root,
            appending: Mutex::new(()),
            durable: None,
        })
    }

    /// Syncs what is stored before the store returns (`true`), or leaves the
    /// writing to the system (`false`, the default). Turning it on syncs the root's
    /// own entry and the root once.
    pub fn set_sync(&mut self, sync: bool) -> io::Result<()> {
        if !sync {
            self.durable = None;
            return Ok(());
        }
        if let Some(parent) = self.root.parent() {
            sync_folder(parent)?;
        }
        sync_folder(&self.root)?;
        self.durable = Some(Arc::new(Durable {
            root: self.root.clone(),
            known: Mutex::new(HashSet::new()),
        }));
        Ok(())
    }

    /// Under `--fsync`, syncs the entry of the new file at `path` (under the root) in
    /// its folder, and the chain of folders above it not yet known to be synced; the
    /// file's own data is its writer's to sync (the HDF5 operations, `h5r.rs`).
    /// Nothing without `--fsync`.
    pub fn sync_entry_of(&self, path: &Path) -> io::Result<()> {
        match (&self.durable, path.parent()) {
            (Some(durable), Some(folder)) => durable.sync_entries_of(folder),
            _ => Ok(()),
        }
    }

    /// Whether stores are synced ([`Store::set_sync`]).
    pub fn syncs(&self) -> bool {
        self.durable.is_some()
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `relative` under the root, with the part of it that exists resolved (links
    /// followed), refused when that leads out of the root: links inside the root may
    /// point anywhere inside it, never out. Missing folders stay as named, for the
    /// caller to create (they are not links); a link that points nowhere is refused,
    /// since creating through it would land wherever it points.
    ///
    /// Refusals are `PermissionDenied`. This judges paths, then the caller uses the
    /// path: a local user swapping a checked folder for a link in between is not
    /// defended against (only clients are: they cannot make links).
    pub fn confined(&self, relative: &Path) -> io::Result<PathBuf> {
        let mut existing = self.root.join(relative);
        let mut missing = Vec::new();
        // Another connection may create a missing folder between the two looks below
        // (two writers of one new folder): that is no dangling link, look again.
        let mut appeared = 0;
        loop {
            match existing.canonicalize() {
                Ok(real) if real.starts_with(&self.root) => {
                    let mut path = real;
                    path.extend(missing.iter().rev());
                    return Ok(path);
                }
                Ok(_) => return Err(outside_root()),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    match fs::symlink_metadata(&existing) {
                        Ok(found) if found.file_type().is_symlink() || appeared >= 8 => {
                            return Err(outside_root())
                        }
                        Ok(_) => {
                            appeared += 1;
                            continue;
                        }
                        Err(_) => {}
                    }
                    match (existing.file_name(), existing.parent()) {
                        (Some(name), Some(parent)) if existing != self.root => {
                            missing.push(name.to_owned());
                            existing = parent.to_owned();
                        }
                        _ => return Err(e),
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// The folder that holds `relative`, confined ([`Store::confined`]).
    fn confined_parent(&self, relative: &Path) -> io::Result<PathBuf> {
        self.confined(relative.parent().unwrap_or(Path::new("")))
    }

    /// Where `relative` goes: its folder confined, its own name not resolved (the
    /// write-once move and link never follow a link there, they fail on it).
    fn destination(&self, relative: &Path) -> io::Result<PathBuf> {
        let name = relative
            .file_name()
            .ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?;
        Ok(self.confined_parent(relative)?.join(name))
    }

    /// [`Store::destination`], with the folder taken from `folders` when the previous
    /// file went to the same one: a series' files share a folder, and resolving it
    /// costs a system call per path component.
    fn destination_in(&self, relative: &Path, folders: &mut FolderCache) -> io::Result<PathBuf> {
        let name = relative
            .file_name()
            .ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?;
        let folder = relative.parent().unwrap_or(Path::new(""));
        match &folders.last {
            Some((cached, resolved)) if cached == folder => Ok(resolved.join(name)),
            _ => {
                let resolved = self.confined(folder)?;
                let destination = resolved.join(name);
                folders.last = Some((folder.to_owned(), resolved));
                Ok(destination)
            }
        }
    }

    /// Creates a folder and its parents.
    pub fn create_folder(&self, relative: &Path) -> io::Result<()> {
        let folder = self.confined(relative)?;
        fs::create_dir_all(&folder)?;
        match &self.durable {
            Some(durable) => durable.make_reachable(&folder),
            None => Ok(()),
        }
    }

    /// Starts storing a new file: creates a temporary file next to its destination,
    /// and the parent folders if they are missing.
    ///
    /// Costs one `open` when the folder exists, besides resolving the folder
    /// ([`Store::confined`]): this runs once per received file, and on tmpfs the
    /// system calls around a small file cost more than its bytes.
    pub fn begin_file(
        &self,
        relative: &Path,
        folders: &mut FolderCache,
    ) -> io::Result<PendingFile> {
        let destination = self.destination_in(relative, folders)?;
        let parent = destination.parent().unwrap_or(&self.root);
        let temp = temp_path(parent);
        let file = match create_temp(&temp) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                fs::create_dir_all(parent)?;
                create_temp(&temp)
            }
            result => result,
        }?;
        Ok(PendingFile {
            file: Some(file),
            temp: Some(temp),
            allocated: 0,
            destination,
            committed: false,
            durable: self.durable.clone(),
        })
    }

    /// Starts storing a new file in a spare (`spares.rs`): an unnamed file in the
    /// root with `allocated` bytes already allocated.
    pub fn begin_in_spare(
        &self,
        relative: &Path,
        spare: File,
        allocated: u64,
        folders: &mut FolderCache,
    ) -> io::Result<PendingFile> {
        Ok(PendingFile {
            file: Some(spare),
            temp: None,
            allocated,
            destination: self.destination_in(relative, folders)?,
            committed: false,
            durable: self.durable.clone(),
        })
    }

    /// A file without a name to receive an `__aggregate_txt` body before it is
    /// appended: the body may be large and must not sit in memory, and appending it
    /// only once it is complete keeps a cut or corrupt body out of the file.
    pub fn spool(&self) -> io::Result<File> {
        #[cfg(target_os = "linux")]
        if let Ok(file) = unnamed_file(&self.root) {
            return Ok(file);
        }
        let path = temp_path(&self.root);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)?;
        // On Windows an open file cannot be removed; the name stays hidden until then.
        let _ = fs::remove_file(&path);
        Ok(file)
    }

    /// Appends what `spool` holds to the file `relative` (created with its parents if
    /// missing), unless that file was stored write-once.
    ///
    /// How the two are told apart: a file stored by a plain PUT is read-only (mode
    /// 0440, or the read-only attribute); a file created here is made writable by its
    /// owner (0640) and only this function creates such files. A link as the file's
    /// own name is refused, as is anything but a regular file (a FIFO would block).
    /// Appends from this server's connections are serialized, so they never
    /// interleave; an append that fails part-way is cut off again, and one a crash
    /// cut is cut off at the next start or append (`journal.rs`).
    pub fn append(&self, relative: &Path, spool: &mut File) -> io::Result<Appended> {
        use std::io::Seek;
        let path = self.destination(relative)?;
        let parent = path.parent().unwrap_or(&self.root).to_owned();
        fs::create_dir_all(&parent)?;
        let _serialized = self
            .appending
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let (target, created) = match open_for_append(&path) {
            Ok(target) => target,
            // Not root: a read-only file cannot be opened for writing (a refused
            // link is PermissionDenied too, but not the system's own error).
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied && e.raw_os_error().is_some() => {
                return Ok(Appended::WriteOnce)
            }
            Err(e) => return Err(e),
        };
        if !target.metadata()?.is_file() {
            return Err(io::Error::from(io::ErrorKind::InvalidInput));
        }
        if is_write_once(&target)? {
            return Ok(Appended::WriteOnce);
        }
        spool.rewind()?;
        // All or nothing: a copy cut short (a full disk) is cut off again when the
        // guard drops, so the file never keeps half a record that the client then
        // sends elsewhere. Safe against this server's appends (serialized above);
        // another process appending to the same file at that moment is not guarded.
        let guard = journal::begin_append(&path, &target, self.durable.is_some())?;
        let created_journal = guard.created_journal();
        io::copy(spool, &mut &target)?;
        guard.commit()?;
        if let Some(durable) = &self.durable {
            if created || created_journal {
                sync_folder(&parent)?;
            }
            durable.make_reachable(&parent)?;
        }
        Ok(Appended::Done)
    }

    /// Cuts the file of the journal at `journal_path` back to its last whole append
    /// (the start-up sweep's repair, see `journal::recover`). True when cut.
    pub(crate) fn recover_append(&self, journal_path: &Path) -> io::Result<bool> {
        let _serialized = self
            .appending
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        journal::recover(journal_path)
    }

    /// Lists a folder as the PYME JSON object `{"name": [type, size], ...}`.
    pub fn list_folder(&self, relative: &Path) -> io::Result<String> {
        let mut listing = serde_json::Map::new();
        for entry in fs::read_dir(self.confined(relative)?)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if is_reserved_name(&name) {
                continue;
            }
            // Follows links inside the root, as a client would; links out of it and
            // dangling ones are left out.
            if entry.file_type()?.is_symlink() && !self.is_inside(&entry.path()) {
                continue;
            }
            let Ok(metadata) = fs::metadata(entry.path()) else {
                continue;
            };
            let (key, kind, size) = if metadata.is_dir() {
                let path = entry.path();
                (format!("{name}/"), folder_kind(&path), count_entries(&path))
            } else {
                (name, 0, metadata.len())
            };
            listing.insert(key, serde_json::json!([kind, size]));
        }
        Ok(serde_json::Value::Object(listing).to_string())
    }
}

impl Store {
    /// Whether `path` resolves to something inside the root.
    fn is_inside(&self, path: &Path) -> bool {
        path.canonicalize()
            .is_ok_and(|real| real.starts_with(&self.root))
    }
}

fn outside_root() -> io::Error {
    io::Error::new(
        io::ErrorKind::PermissionDenied,
        "the name leads out of the storage root through a link",
    )
}

/// Opens a file to append to, creating it writable by its owner (see
/// [`Store::append`]); never through a link, never blocking on a FIFO. True when
/// it was created.
#[cfg(unix)]
fn open_for_append(path: &Path) -> io::Result<(File, bool)> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let flags = libc::O_NOFOLLOW | libc::O_NONBLOCK;
    let created = OpenOptions::new()
        .append(true)
        .create_new(true)
        .mode(0o640)
        .custom_flags(flags)
        .open(path);
    match created {
        Ok(file) => {
            // Whatever the umask: a created aggregate file must read as one.
            file.set_permissions(fs::Permissions::from_mode(0o640))?;
            Ok((file, true))
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => OpenOptions::new()
            .append(true)
            .custom_flags(flags)
            .open(path)
            .map(|file| (file, false))
            .map_err(|e| match e.raw_os_error() {
                Some(libc::ELOOP) => outside_root(),
                _ => e,
            }),
        Err(e) => Err(e),
    }
}

#[cfg(not(unix))]
fn open_for_append(path: &Path) -> io::Result<(File, bool)> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => Err(outside_root()),
        Ok(_) => Ok((OpenOptions::new().append(true).open(path)?, false)),
        Err(_) => Ok((
            OpenOptions::new().append(true).create(true).open(path)?,
            true,
        )),
    }
}

/// A file stored by a plain PUT: no write permission for its owner.
#[cfg(unix)]
fn is_write_once(file: &File) -> io::Result<bool> {
    use std::os::unix::fs::PermissionsExt;
    Ok(file.metadata()?.permissions().mode() & 0o200 == 0)
}

#[cfg(not(unix))]
fn is_write_once(file: &File) -> io::Result<bool> {
    Ok(file.metadata()?.permissions().readonly())
}

/// The PYME type bits of a folder: 1 folder, 2 series, 4 complete series.
fn folder_kind(path: &Path) -> u32 {
    let mut kind = 1;
    if path.join("metadata.json").exists() {
        kind |= 2;
    }
    if path.join("events.json").exists() {
        kind |= 4;
    }
    kind
}

fn count_entries(path: &Path) -> u64 {
    fs::read_dir(path).map_or(0, |entries| {
        entries
            .filter_map(Result::ok)
            .filter(|e| !is_reserved_name(&e.file_name().to_string_lossy()))
            .count() as u64
    })
}

/// A file being received: bytes go to a hidden temporary file, which
/// [`PendingFile::commit`] puts under the real name. Dropped without commit (a client
/// gone mid-body, a bad body), it removes the temporary file.
#[derive(Debug)]
pub struct PendingFile {
    file: Option<File>,
    /// The hidden temporary name; none for a spare, which has no name until commit.
    temp: Option<PathBuf>,
    /// A spare's allocated size: a shorter body is cut to its length at commit.
    allocated: u64,
    destination: PathBuf,
    committed: bool,
    /// Set under `--fsync`: the data is synced before the file is named, and the
    /// folder entries after.
    durable: Option<Arc<Durable>>,
}

impl PendingFile {
    /// The open file, until it is committed.
    pub fn file(&self) -> Option<&File> {
        self.file.as_ref()
    }

    /// Makes the file read-only and puts it under its name unless that name is taken.
    /// Either way the temporary name is gone afterwards.
    pub fn commit(mut self) -> io::Result<Stored> {
        let stored = self.publish_file()?;
        if let (Stored::New, Some(durable)) = (stored, &self.durable) {
            durable.sync_entries_of(self.destination.parent().unwrap_or(Path::new("/")))?;
        }
        Ok(stored)
    }

    fn publish_file(&mut self) -> io::Result<Stored> {
        self.committed = true;
        let sync = self.durable.is_some();
        let Some(temp) = self.temp.take() else {
            let spare = self
                .file
                .take()
                .ok_or_else(|| io::Error::other("no file"))?;
            return publish_spare(&spare, self.allocated, &self.destination, sync);
        };
        // On Unix the file was created read-only (`create_temp`).
        #[cfg(not(unix))]
        if let Some(file) = &self.file {
            if let Err(e) = make_read_only(file) {
                self.file = None;
                let _ = fs::remove_file(&temp);
                return Err(e);
            }
        }
        if let (true, Some(file)) = (sync, &self.file) {
            if let Err(e) = file.sync_data() {
                self.file = None;
                let _ = fs::remove_file(&temp);
                return Err(e);
            }
        }
        self.file = None;
        publish(&temp, &self.destination)
    }
}

/// Cuts a spare to the length written into it and gives it its name, unless that is
/// taken. A hard link from `/proc/self/fd` does it (`linkat` refuses a taken name); a
/// destination on another file system (a mount inside the root) gets a copy.
fn publish_spare(
    spare: &File,
    allocated: u64,
    destination: &Path,
    sync: bool,
) -> io::Result<Stored> {
    use std::io::Seek;
    let written = (&*spare).stream_position()?;
    if written < allocated {
        spare.set_len(written)?;
    }
    if sync {
        spare.sync_data()?;
    }
    let linked = match link_unnamed(spare, destination) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            fs::create_dir_all(destination.parent().unwrap_or(Path::new("/")))?;
            link_unnamed(spare, destination)
        }
        result => result,
    };
    match linked {
        Ok(()) => Ok(Stored::New),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(Stored::AlreadyExists),
        Err(e) if crosses_devices(&e) => copy_then_publish(spare, destination, sync),
        Err(e) => Err(e),
    }
}

#[cfg_attr(not(unix), allow(unused_variables))]
fn crosses_devices(error: &io::Error) -> bool {
    #[cfg(unix)]
    return error.raw_os_error() == Some(libc::EXDEV);
    #[cfg(not(unix))]
    false
}

/// The way for a spare whose destination is on another file system: its bytes copied
/// into a temporary file there, which is then published as usual.
fn copy_then_publish(mut spare: &File, destination: &Path, sync: bool) -> io::Result<Stored> {
    use std::io::Seek;
    let parent = destination.parent().unwrap_or(Path::new("/"));
    let temp = temp_path(parent);
    let mut file = create_temp(&temp)?;
    spare.rewind()?;
    if let Err(e) = io::copy(&mut spare, &mut file).and_then(|_| match sync {
        true => file.sync_data(),
        false => Ok(()),
    }) {
        let _ = fs::remove_file(&temp);
        return Err(e);
    }
    drop(file);
    publish(&temp, destination)
}

/// Moves `temp` to `destination` unless that name is taken (by anything: a file, a
/// folder, a link), and makes sure `temp` is gone afterwards.
///
/// On Linux one `renameat2(RENAME_NOREPLACE)` does it; a file system without that
/// flag, and other systems, take a hard link and an unlink.
fn publish(temp: &Path, destination: &Path) -> io::Result<Stored> {
    #[cfg(target_os = "linux")]
    match rename_noreplace(temp, destination) {
        Ok(()) => return Ok(Stored::New),
        Err(e) if matches!(e.raw_os_error(), Some(libc::EINVAL | libc::ENOSYS)) => {}
        Err(e) => {
            let _ = fs::remove_file(temp);
            return match e.kind() {
                io::ErrorKind::AlreadyExists => Ok(Stored::AlreadyExists),
                _ => Err(e),
            };
        }
    }
    link_then_remove(temp, destination)
}

/// The portable way: a hard link (refused if the name is taken), then the temporary
/// name removed.
fn link_then_remove(temp: &Path, destination: &Path) -> io::Result<Stored> {
    let linked = fs::hard_link(temp, destination);
    let _ = fs::remove_file(temp);
    match linked {
        Ok(()) => Ok(Stored::New),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(Stored::AlreadyExists),
        Err(e) => Err(e),
    }
}

impl Write for PendingFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &mut self.file {
            Some(file) => file.write(buf),
            None => Err(io::Error::other("file already committed")),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for PendingFile {
    fn drop(&mut self) {
        self.file = None;
        if let (false, Some(temp)) = (self.committed, &self.temp) {
            let _ = fs::remove_file(temp);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut first = store
            .begin_file(Path::new("s/a"), &mut FolderCache::default())
            .unwrap();
        let mut second = store
            .begin_file(Path::new("s/a"), &mut FolderCache::default())
            .unwrap();
        first.write_all(b"one").unwrap();
        second.write_all(b"two").unwrap();
        assert_eq!(first.commit().unwrap(), Stored::New);
        assert_eq!(second.commit().unwrap(), Stored::AlreadyExists);
        assert_eq!(fs::read(dir.path().join("s/a")).unwrap(), b"one");
        let dropped = store
            .begin_file(Path::new("s/b"), &mut FolderCache::default())
            .unwrap();
        drop(dropped);
        assert_eq!(store.list_folder(Path::new("s")).unwrap(), r#"{"a":[0,3]}"#);
    }

    /// Two writers of one new folder: the one that finds it missing and then sees it
    /// (made by the other in between) must not take it for a dangling link (CI saw a
    /// 403 for one of two racing PUTs of `race/N`).
    #[test]
    fn racing_writers_of_a_new_folder_are_both_confined() {
        let dir = tempfile::tempdir().unwrap();
        let store = std::sync::Arc::new(Store::open(dir.path()).unwrap());
        for round in 0..1500 {
            let barrier = std::sync::Arc::new(std::sync::Barrier::new(2));
            let writers: Vec<_> = (0..2)
                .map(|writer| {
                    let (store, barrier) = (store.clone(), barrier.clone());
                    std::thread::spawn(move || {
                        barrier.wait();
                        let name = format!("f{round}/a/b/c/file{writer}");
                        store
                            .begin_file(Path::new(&name), &mut FolderCache::default())
                            .map(|file| file.commit().map(|_| ()))
                    })
                })
                .collect();
            for writer in writers {
                let result = writer.join().unwrap();
                assert!(matches!(result, Ok(Ok(()))), "round {round}: {result:?}");
            }
        }
    }

    #[test]
    fn creates_missing_folders_and_refuses_a_file_as_folder() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut deep = store
            .begin_file(Path::new("x/y/z/frame"), &mut FolderCache::default())
            .unwrap();
        deep.write_all(b"abc").unwrap();
        assert_eq!(deep.commit().unwrap(), Stored::New);
        assert_eq!(fs::read(dir.path().join("x/y/z/frame")).unwrap(), b"abc");
        // Only the stored file is left in its folder: no temporary name.
        let names: Vec<_> = fs::read_dir(dir.path().join("x/y/z"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["frame"]);
        // A file cannot be a folder: the error comes back, nothing is created.
        assert!(store
            .begin_file(Path::new("x/y/z/frame/inner"), &mut FolderCache::default())
            .is_err());
        // A taken name that is a folder is refused at commit.
        let onto_folder = store
            .begin_file(Path::new("x/y"), &mut FolderCache::default())
            .unwrap();
        assert_eq!(onto_folder.commit().unwrap(), Stored::AlreadyExists);
    }

    #[test]
    fn both_ways_of_publishing_keep_files_write_once() {
        let dir = tempfile::tempdir().unwrap();
        let temp = |name: &str, bytes: &[u8]| {
            let path = dir.path().join(name);
            fs::write(&path, bytes).unwrap();
            path
        };
        let (first, second) = (dir.path().join("first"), dir.path().join("second"));
        // renameat2 on Linux (tmpfs, ext4, ...), link and unlink elsewhere.
        type Publish = fn(&Path, &Path) -> io::Result<Stored>;
        let publishers: [(Publish, &Path); 2] = [(publish, &first), (link_then_remove, &second)];
        for (publish, destination) in publishers {
            let a = temp(".pyme-part-a", b"one");
            assert_eq!(publish(&a, destination).unwrap(), Stored::New);
            let b = temp(".pyme-part-b", b"two");
            assert_eq!(publish(&b, destination).unwrap(), Stored::AlreadyExists);
            assert_eq!(fs::read(destination).unwrap(), b"one");
            assert!(!a.exists() && !b.exists(), "a temporary name is left");
            let c = temp(".pyme-part-c", b"three");
            let missing = dir.path().join("no/such/folder");
            assert!(publish(&c, &missing).is_err());
            assert!(!c.exists(), "a temporary name is left after an error");
        }
    }

    /// A spare whose destination is on another file system (`linkat` answers EXDEV)
    /// is copied there; write-once holds, and no temporary name is left.
    #[test]
    fn a_spare_for_another_file_system_is_copied_write_once() {
        let dir = tempfile::tempdir().unwrap();
        let destination = dir.path().join("frame");
        let bytes: Vec<u8> = (0..300_000).map(|i| (i % 253) as u8).collect();
        let mut spare = tempfile::tempfile().unwrap();
        spare.write_all(&bytes).unwrap();
        assert_eq!(
            copy_then_publish(&spare, &destination, false).unwrap(),
            Stored::New
        );
        assert!(fs::read(&destination).unwrap() == bytes);
        spare.write_all(b"more").unwrap();
        assert_eq!(
            copy_then_publish(&spare, &destination, false).unwrap(),
            Stored::AlreadyExists
        );
        assert!(fs::read(&destination).unwrap() == bytes);
        let names: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1, "{names:?}");
    }
}
