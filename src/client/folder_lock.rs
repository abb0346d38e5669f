//! One streamer per spill folder: the lock file `.pyme-lock` in the folder.
//!
//! The lock is taken on an open file description, not on the process:
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

/// The lock file's name in the spill folder: never sent, never swept.
pub(crate) const LOCK_FILE: &str = ".pyme-lock";

/// Why the lock could not be taken.
#[derive(Debug)]
pub(crate) enum LockError {
    /// Another streamer holds it.
    Busy,
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
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(folder.join(LOCK_FILE))
            .map_err(LockError::Io)?;
        let born = Born::now();
        try_lock(&file)?;
        #[cfg(unix)]
        let child_slot = fork::close_in_child(std::os::unix::io::AsRawFd::as_raw_fd(&file));
        #[cfg(not(unix))]
        let child_slot = None;
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
        // Forgotten before the close, so that a fork in between cannot close
        // a number reused by then.
        if let Some(slot) = self.child_slot {
            fork::forget_slot(slot);
        }
        drop(file);
    }
}

#[cfg(target_os = "linux")]
fn try_lock(file: &File) -> Result<(), LockError> {
    use std::os::unix::io::AsRawFd;
    // SAFETY: a plain C struct, all zeroes is a valid value.
    let mut lock: libc::flock = unsafe { std::mem::zeroed() };
    lock.l_type = libc::F_WRLCK as _;
    lock.l_whence = libc::SEEK_SET as _;
    // l_start 0, l_len 0: the whole file; l_pid must be 0 for OFD locks.
    // SAFETY: a valid descriptor and a valid struct for the call.
    let result = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_OFD_SETLK, &lock) };
    if result == 0 {
        return Ok(());
    }
    let error = std::io::Error::last_os_error();
    match error.raw_os_error() {
        Some(libc::EAGAIN) | Some(libc::EACCES) => Err(LockError::Busy),
        _ => Err(LockError::Io(error)),
    }
}

#[cfg(all(unix, not(target_os = "linux")))]
fn try_lock(file: &File) -> Result<(), LockError> {
    use std::os::unix::io::AsRawFd;
    // flock locks also belong to the open file description.
    // SAFETY: a valid descriptor.
    let result = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if result == 0 {
        return Ok(());
    }
    let error = std::io::Error::last_os_error();
    match error.raw_os_error() {
        Some(libc::EWOULDBLOCK) => Err(LockError::Busy),
        _ => Err(LockError::Io(error)),
    }
}

#[cfg(windows)]
fn try_lock(file: &File) -> Result<(), LockError> {
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
    const ERROR_LOCK_VIOLATION: i32 = 33;

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
    if locked != 0 {
        return Ok(());
    }
    let error = std::io::Error::last_os_error();
    match error.raw_os_error() {
        Some(ERROR_LOCK_VIOLATION) => Err(LockError::Busy),
        _ => Err(LockError::Io(error)),
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
            Err(LockError::Busy)
        ));
        drop(first);
        FolderLock::acquire(folder.path()).unwrap();
    }
}
