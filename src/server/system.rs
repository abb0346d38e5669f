//! Figures of the machine the data server runs on, for `/__status` and the spares:
//! the disk usage of its root (read with `statvfs`, which std does not wrap).
//!
//! What this module may not do: write anything; it only reads the system's figures.

use std::path::Path;

/// Sizes of the file system holding a path, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiskUsage {
    pub total: u64,
    pub used: u64,
    pub free: u64,
}

/// The disk usage of the file system holding `path`, if the platform can tell.
#[cfg(unix)]
pub fn disk_usage(path: &Path) -> Option<DiskUsage> {
    use std::os::unix::ffi::OsStrExt;
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    // SAFETY: statvfs only writes into the zeroed struct we own and reads the
    // NUL-terminated path, which outlives the call.
    let stat = unsafe {
        let mut stat: libc::statvfs = std::mem::zeroed();
        if libc::statvfs(c_path.as_ptr(), &mut stat) != 0 {
            return None;
        }
        stat
    };
    let block = stat.f_frsize as u64;
    let total = stat.f_blocks as u64 * block;
    let free_for_root = stat.f_bfree as u64 * block;
    Some(DiskUsage {
        total,
        used: total.saturating_sub(free_for_root),
        free: stat.f_bavail as u64 * block,
    })
}

#[cfg(not(unix))]
pub fn disk_usage(_path: &Path) -> Option<DiskUsage> {
    None
}
