//! The file-system calls that the data server's storage (`storage.rs`) and its spares
//! (`spares.rs`) share: temporary names, files created read-only, moves and links
//! that never replace a name, and unnamed files.
//!
//! Small and policy-free: which file goes where, and when, is decided by its callers.
//! No sockets, no HTTP, no request names (those are judged in `name.rs`).

use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

/// Temporary files start with this; listings hide them, and no request name may start
/// a segment with it (`name::RESERVED_PREFIX` is its beginning).
pub(crate) const TEMP_PREFIX: &str = ".pyme-part-";

/// Tells temporary files apart within this process (the pid tells processes apart).
static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// The start of this process's temporary names: `TEMP_PREFIX`, the process id and
/// the time the first name was made (in nanoseconds). The time tells this process
/// from a dead one that had the same id (a server that is always pid 1 in its
/// container), so that the start-up sweep (`recovery.rs`) removes every temporary
/// name but this process's own.
pub(crate) fn own_temp_prefix() -> &'static str {
    static PREFIX: OnceLock<String> = OnceLock::new();
    PREFIX.get_or_init(|| {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| since.as_nanos());
        format!("{TEMP_PREFIX}{}-{nanos:x}-", std::process::id())
    })
}

/// A new temporary name in `parent`: [`own_temp_prefix`] and a counter.
pub(crate) fn temp_path(parent: &Path) -> PathBuf {
    parent.join(format!(
        "{}{}",
        own_temp_prefix(),
        TEMP_COUNTER.fetch_add(1, Ordering::Relaxed)
    ))
}

pub(crate) fn is_temp_name(name: &str) -> bool {
    name.starts_with(TEMP_PREFIX)
}

/// A name the server keeps for itself (temporaries, the root's lock, append
/// journals): never listed, never served (requests cannot name it, see `name.rs`).
pub(crate) fn is_reserved_name(name: &str) -> bool {
    name.starts_with(crate::name::RESERVED_PREFIX)
}

/// Makes the entries of `folder` (names made, moved, removed in it) durable: an
/// `fsync` of the folder, as POSIX asks after a rename or a link for the name to
/// survive a power cut. Windows cannot open a folder with `std` and its file system
/// journals names itself: nothing to do there.
#[cfg(unix)]
pub(crate) fn sync_folder(folder: &Path) -> io::Result<()> {
    File::open(folder)?.sync_all()
}

#[cfg(not(unix))]
pub(crate) fn sync_folder(_folder: &Path) -> io::Result<()> {
    Ok(())
}

/// Creates a temporary file, read-only from the start on Unix: the mode applies to
/// later opens, the returned handle can still write.
#[cfg(unix)]
pub(crate) fn create_temp(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o440)
        .open(path)
}

#[cfg(not(unix))]
pub(crate) fn create_temp(path: &Path) -> io::Result<File> {
    OpenOptions::new().write(true).create_new(true).open(path)
}

#[cfg(not(unix))]
pub(crate) fn make_read_only(file: &File) -> io::Result<()> {
    let mut permissions = file.metadata()?.permissions();
    permissions.set_readonly(true);
    file.set_permissions(permissions)
}

/// Moves `from` to `to` unless `to` exists (then `AlreadyExists`).
#[cfg(target_os = "linux")]
pub(crate) fn rename_noreplace(from: &Path, to: &Path) -> io::Result<()> {
    on_two_paths(from, to, |from, to| {
        // SAFETY: two valid NUL-terminated paths, no pointer kept after the call. The
        // raw system call works whatever the C library's version.
        unsafe {
            libc::syscall(
                libc::SYS_renameat2,
                libc::AT_FDCWD,
                from,
                libc::AT_FDCWD,
                to,
                libc::RENAME_NOREPLACE,
            )
        }
    })
}

/// Calls `call` with two paths as C strings, and turns its -1 into the error.
#[cfg(target_os = "linux")]
fn on_two_paths(
    from: &Path,
    to: &Path,
    call: impl FnOnce(*const libc::c_char, *const libc::c_char) -> libc::c_long,
) -> io::Result<()> {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let from = CString::new(from.as_os_str().as_bytes())?;
    let to = CString::new(to.as_os_str().as_bytes())?;
    if call(from.as_ptr(), to.as_ptr()) == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Gives an unnamed file a name, unless the name is taken (`AlreadyExists`).
#[cfg(target_os = "linux")]
pub(crate) fn link_unnamed(file: &File, destination: &Path) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let source = PathBuf::from(format!("/proc/self/fd/{}", file.as_raw_fd()));
    on_two_paths(&source, destination, |source, destination| {
        // SAFETY: two valid NUL-terminated paths, no pointer kept after the call.
        let rc = unsafe {
            libc::linkat(
                libc::AT_FDCWD,
                source,
                libc::AT_FDCWD,
                destination,
                libc::AT_SYMLINK_FOLLOW,
            )
        };
        libc::c_long::from(rc)
    })
}

#[cfg(not(target_os = "linux"))]
pub(crate) fn link_unnamed(_file: &File, _destination: &Path) -> io::Result<()> {
    Err(io::ErrorKind::Unsupported.into())
}

/// An unnamed, read-only-to-others file in `folder`, readable and writable
/// through the returned handle.
#[cfg(target_os = "linux")]
pub(crate) fn unnamed_file(folder: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    OpenOptions::new()
        .read(true)
        .write(true)
        .mode(0o440)
        .custom_flags(libc::O_TMPFILE)
        .open(folder)
}
