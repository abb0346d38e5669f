//! The `/__status` answer: what the data server reports about itself, and the disk
//! usage of its root (read with `statvfs`, which std does not wrap).

use std::path::Path;
use std::sync::atomic::Ordering;

use super::Shared;

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

/// The JSON object answered to `GET /__status`.
pub(crate) fn status_json(shared: &Shared) -> String {
    let disk = disk_usage(shared.store.root());
    // Null where the server keeps no spares.
    let spares_ready = shared.spares.as_ref().map(|spares| spares.ready());
    let sweep = shared.sweep.report();
    serde_json::json!({
        "address": shared.local_addr.ip().to_string(),
        "port": shared.local_addr.port(),
        "serverfilter": shared.config.serverfilter,
        "root": shared.store.root().to_string_lossy(),
        "disk_total_bytes": disk.map(|d| d.total),
        "disk_used_bytes": disk.map(|d| d.used),
        "disk_free_bytes": disk.map(|d| d.free),
        "uptime_s": shared.started.elapsed().as_secs_f64(),
        "files_stored": shared.files_stored.load(Ordering::Relaxed),
        "files_stored_in_spares": shared.files_in_spares.load(Ordering::Relaxed),
        "spares_ready": spares_ready,
        "bodies_spliced": shared.bodies_spliced.load(Ordering::Relaxed),
        "bytes_stored": shared.bytes_stored.load(Ordering::Relaxed),
        "connections_open": shared.connections_open.load(Ordering::Relaxed),
        "connections_evicted": shared.connections_evicted.load(Ordering::Relaxed),
        "discard": shared.config.discard,
        "fsync": shared.store.syncs(),
        "sweep_done": sweep.done,
        "sweep_temporaries_removed": sweep.temporaries_removed,
        "sweep_bytes_removed": sweep.bytes_removed,
        "sweep_appends_repaired": sweep.appends_repaired,
        "version": crate::VERSION,
    })
    .to_string()
}
