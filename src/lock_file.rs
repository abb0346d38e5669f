//! The one kind of lock on a `.pyme-lock` file, shared by the data server's
//! storage root (`server::lock`) and the client's spill folder
//! (`client::folder_lock`), so that the two exclude each other: a folder is a
//! server's root or a streamer's spill folder, never both at once.
//!
//! Why one kind: on Linux `flock(2)` locks and `fcntl` record locks do not see
//! each other; a server root locked with one and a spill folder locked with the
//! other both thought they owned the same folder (found by a review).
//!
//! How: an exclusive lock on the whole file, taken on the open file
//! description, so it excludes other opens in this process too and ends when
//! the last descriptor of that open ends (the holder closes or dies):
//! `fcntl(F_OFD_SETLK)` on Linux, `flock(2)` on other Unixes, `LockFileEx` on
//! Windows. The file is opened with `O_CLOEXEC` (an `exec`ed program never
//! inherits it). Once locked, the holder writes one line saying who it is
//! ([`Holder`]) and its process id, which the refused side reads to say who
//! holds the folder (best effort: on Windows the locked bytes cannot be read).
//!
//! May not: decide anything about the folder's other files, or about forks
//! (the client's `folder_lock` makes its set-up atomic with respect to fork).

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, Write};
use std::path::Path;

/// The lock file's name, in a server's root and in a spill folder alike.
pub(crate) const LOCK_NAME: &str = ".pyme-lock";

/// Who takes the lock: written into the file once it is held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Holder {
    DataServer,
    SpillFolder,
}

impl Holder {
    fn tag(self) -> &'static str {
        match self {
            Holder::DataServer => "data server",
            Holder::SpillFolder => "spill folder",
        }
    }

    /// How a refused caller names this holder ("a data server (process 12)").
    pub(crate) fn describe(self, pid: Option<u32>) -> String {
        let who = match self {
            Holder::DataServer => "a data server (whose storage root it is)",
            Holder::SpillFolder => "a streamer (as its spill folder)",
        };
        match pid {
            Some(pid) => format!("{who}, process {pid}"),
            None => who.to_owned(),
        }
    }
}

/// Why the lock was not taken.
#[derive(Debug)]
pub(crate) enum LockFailure {
    /// Held by another open of the file; who, when the file says so.
    Busy(Option<(Holder, Option<u32>)>),
    /// The file could not be opened or locked.
    Io(io::Error),
}

/// Takes the exclusive lock on `folder/.pyme-lock` (creating the file), or
/// fails at once. The returned file holds the lock until it is closed.
pub(crate) fn lock(folder: &Path, holder: Holder) -> Result<File, LockFailure> {
    let path = folder.join(LOCK_NAME);
    let mut file = open(&path).map_err(|e| match is_busy(&e) {
        true => LockFailure::Busy(None),
        false => LockFailure::Io(e),
    })?;
    if let Err(e) = try_lock(&file) {
        return Err(match is_busy(&e) {
            true => LockFailure::Busy(read_holder(&mut file)),
            false => LockFailure::Io(e),
        });
    }
    // Best effort: the line only improves the other side's message.
    let _ = write_holder(&mut file, holder);
    Ok(file)
}

fn write_holder(file: &mut File, holder: Holder) -> io::Result<()> {
    file.set_len(0)?;
    file.seek(io::SeekFrom::Start(0))?;
    writeln!(file, "{} {}", holder.tag(), std::process::id())
}

fn read_holder(file: &mut File) -> Option<(Holder, Option<u32>)> {
    let mut text = String::new();
    file.take(200).read_to_string(&mut text).ok()?;
    let line = text.lines().next()?;
    let (tag, pid) = line.rsplit_once(' ')?;
    let holder = [Holder::DataServer, Holder::SpillFolder]
        .into_iter()
        .find(|h| h.tag() == tag)?;
    Some((holder, pid.parse().ok()))
}

#[cfg(unix)]
fn open(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(libc::O_CLOEXEC)
        .open(path)
}

#[cfg(not(unix))]
fn open(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
}

/// Releases the lock held through `file` before it is closed. A child forked
/// while the lock was held shares its open file description: until that
/// child closes its copy (at once, in the client's fork handler; at `exec`;
/// or never, when it was forked before the copy could be registered), a
/// plain close would leave the lock held. The owner's explicit unlock ends it
/// for every copy. Only the owner calls this: a child never does.
pub(crate) fn unlock(file: &File) {
    #[cfg(target_os = "linux")]
    {
        let _ = set_lock(file, libc::F_UNLCK);
        // SAFETY: a valid descriptor.
        let _ = unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(file), libc::LOCK_UN) };
    }
    #[cfg(all(unix, not(target_os = "linux")))]
    // SAFETY: a valid descriptor.
    let _ = unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(file), libc::LOCK_UN) };
    #[cfg(not(unix))]
    let _ = file; // a handle is not shared with another process here
}

/// An OFD lock, and a `flock` beside it on the same open file description: earlier
/// servers (before the two kinds of holder shared this file) took `flock` alone,
/// which does not see an OFD lock on Linux, so an old and a new server on one root
/// would both start. Both kinds are released together ([`unlock`]).
#[cfg(target_os = "linux")]
fn try_lock(file: &File) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    set_lock(file, libc::F_WRLCK)?;
    // SAFETY: a valid descriptor.
    let result = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if result == 0 {
        return Ok(());
    }
    let error = io::Error::last_os_error();
    let _ = set_lock(file, libc::F_UNLCK);
    Err(error)
}

#[cfg(target_os = "linux")]
fn set_lock(file: &File, kind: libc::c_int) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: a plain C struct, all zeroes is a valid value.
    let mut lock: libc::flock = unsafe { std::mem::zeroed() };
    lock.l_type = kind as _;
    lock.l_whence = libc::SEEK_SET as _;
    // l_start 0, l_len 0: the whole file; l_pid must be 0 for OFD locks.
    // SAFETY: a valid descriptor and a valid struct for the call.
    let result = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_OFD_SETLK, &lock) };
    match result {
        0 => Ok(()),
        _ => Err(io::Error::last_os_error()),
    }
}

#[cfg(all(unix, not(target_os = "linux")))]
fn try_lock(file: &File) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    // flock locks also belong to the open file description.
    // SAFETY: a valid descriptor.
    let result = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    match result {
        0 => Ok(()),
        _ => Err(io::Error::last_os_error()),
    }
}

#[cfg(unix)]
fn is_busy(error: &io::Error) -> bool {
    let busy = [libc::EAGAIN, libc::EACCES, libc::EWOULDBLOCK];
    error
        .raw_os_error()
        .is_some_and(|code| busy.contains(&code))
}

#[cfg(windows)]
fn try_lock(file: &File) -> io::Result<()> {
    use std::ffi::c_void;
    use std::os::windows::io::AsRawHandle;

    /// OVERLAPPED of minwinbase.h (the offset union as its two halves).
    #[repr(C)]
    struct Overlapped {
        internal: usize,
        internal_high: usize,
        offset: u32,
        offset_high: u32,
        event: *mut c_void,
    }
    #[link(name = "kernel32")]
    extern "system" {
        fn LockFileEx(
            file: *mut c_void,
            flags: u32,
            reserved: u32,
            bytes_low: u32,
            bytes_high: u32,
            overlapped: *mut Overlapped,
        ) -> i32;
    }
    const LOCKFILE_FAIL_IMMEDIATELY: u32 = 0x1;
    const LOCKFILE_EXCLUSIVE_LOCK: u32 = 0x2;

    let mut overlapped = Overlapped {
        internal: 0,
        internal_high: 0,
        offset: 0,
        offset_high: 0,
        event: std::ptr::null_mut(),
    };
    // SAFETY: a valid handle, a zeroed OVERLAPPED for a synchronous handle.
    let locked = unsafe {
        LockFileEx(
            file.as_raw_handle().cast(),
            LOCKFILE_EXCLUSIVE_LOCK | LOCKFILE_FAIL_IMMEDIATELY,
            0,
            u32::MAX,
            u32::MAX,
            &mut overlapped,
        )
    };
    match locked {
        0 => Err(io::Error::last_os_error()),
        _ => Ok(()),
    }
}

#[cfg(windows)]
fn is_busy(error: &io::Error) -> bool {
    /// ERROR_SHARING_VIOLATION (an older server opened the file unshared)
    /// and ERROR_LOCK_VIOLATION (the range is locked).
    const SHARING_VIOLATION: i32 = 32;
    const LOCK_VIOLATION: i32 = 33;
    matches!(
        error.raw_os_error(),
        Some(SHARING_VIOLATION) | Some(LOCK_VIOLATION)
    )
}

#[cfg(not(any(unix, windows)))]
fn try_lock(_file: &File) -> io::Result<()> {
    Ok(())
}

#[cfg(not(any(unix, windows)))]
fn is_busy(_error: &io::Error) -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_server_root_and_a_spill_folder_exclude_each_other_in_both_orders() {
        let dir = tempfile::tempdir().unwrap();
        for (first, second) in [
            (Holder::DataServer, Holder::SpillFolder),
            (Holder::SpillFolder, Holder::DataServer),
        ] {
            let held = lock(dir.path(), first).unwrap();
            match lock(dir.path(), second) {
                Err(LockFailure::Busy(who)) => {
                    assert_eq!(who, Some((first, Some(std::process::id()))))
                }
                other => panic!("{second:?} after {first:?}: {other:?}"),
            }
            drop(held);
            drop(lock(dir.path(), second).unwrap());
        }
    }

    /// A server of an earlier version locked its root with `flock` alone, which an
    /// OFD lock does not see on Linux: both kinds are taken, so each excludes the other.
    #[cfg(target_os = "linux")]
    #[test]
    fn an_earlier_servers_flock_and_this_lock_exclude_each_other() {
        use std::os::fd::AsRawFd;
        let dir = tempfile::tempdir().unwrap();
        let old_server = || {
            let file = File::options()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(dir.path().join(LOCK_NAME))
                .unwrap();
            // SAFETY: a valid descriptor.
            let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
            (rc == 0).then_some(file)
        };
        let old = old_server().expect("nothing holds the root yet");
        assert!(matches!(
            lock(dir.path(), Holder::DataServer),
            Err(LockFailure::Busy(_))
        ));
        drop(old);
        let held = lock(dir.path(), Holder::DataServer).unwrap();
        assert!(
            old_server().is_none(),
            "an earlier server would start beside it"
        );
        drop(held);
        assert!(old_server().is_some(), "released");
    }
}
