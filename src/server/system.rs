//! Figures of the machine the data server runs on, for `/__status` and the spares:
//! the disk usage of its root (`statvfs`, or `GetDiskFreeSpaceExW` on Windows), the
//! processor times per core, the memory and the bytes moved per network interface.
//!
//! On Linux the last three are read from `/proc/stat`, `/proc/meminfo` and
//! `/proc/net/dev` (parsed by pure functions, tested here). On Windows the processor
//! times are the whole machine's (`GetSystemTimes`: one entry, not one per core) and
//! the memory is `GlobalMemoryStatusEx`'s; no interface figures are read there (an
//! empty list). Other systems answer empty figures.
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

#[cfg(windows)]
pub fn disk_usage(path: &Path) -> Option<DiskUsage> {
    use std::os::windows::ffi::OsStrExt;
    use windows_sys::Win32::Storage::FileSystem::GetDiskFreeSpaceExW;
    let wide: Vec<u16> = path.as_os_str().encode_wide().chain([0]).collect();
    let (mut free_to_caller, mut total, mut free) = (0u64, 0u64, 0u64);
    // SAFETY: a NUL-terminated wide path that outlives the call, and three u64s we own.
    let ok =
        unsafe { GetDiskFreeSpaceExW(wide.as_ptr(), &mut free_to_caller, &mut total, &mut free) };
    (ok != 0).then(|| DiskUsage {
        total,
        used: total.saturating_sub(free),
        free: free_to_caller,
    })
}

#[cfg(not(any(unix, windows)))]
pub fn disk_usage(_path: &Path) -> Option<DiskUsage> {
    None
}

/// One processor's times since boot, in the system's ticks: `busy` (neither idle
/// nor waiting for I/O) out of `total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CpuTimes {
    pub busy: u64,
    pub total: u64,
}

impl CpuTimes {
    /// The busy share between `earlier` and this sample, in percent with one decimal
    /// (as PYME's `psutil.cpu_percent` answers it); 0 when no time passed.
    pub fn percent_since(&self, earlier: &CpuTimes) -> f64 {
        let total = self.total.saturating_sub(earlier.total);
        if total == 0 {
            return 0.0;
        }
        let busy = self.busy.saturating_sub(earlier.busy).min(total);
        (busy as f64 * 1000.0 / total as f64).round() / 10.0
    }
}

/// The times of each processor (`cpu0`, `cpu1`, ... lines of `/proc/stat`): busy is
/// the total less `idle` and `iowait`; `guest` and `guest_nice`, already counted in
/// `user` and `nice`, are left out of the total.
pub fn parse_proc_stat(text: &str) -> Vec<CpuTimes> {
    text.lines()
        .filter(|line| {
            line.strip_prefix("cpu")
                .is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_digit()))
        })
        .map(|line| {
            let fields: Vec<u64> = line
                .split_whitespace()
                .skip(1)
                .map(|field| field.parse().unwrap_or(0))
                .collect();
            let field = |i: usize| fields.get(i).copied().unwrap_or(0);
            let total: u64 = fields.iter().take(8).sum();
            let idle = field(3) + field(4);
            CpuTimes {
                busy: total.saturating_sub(idle),
                total,
            }
        })
        .collect()
}

/// The processor times now (see the module documentation).
pub fn cpu_times() -> Vec<CpuTimes> {
    #[cfg(target_os = "linux")]
    return std::fs::read_to_string("/proc/stat")
        .map(|text| parse_proc_stat(&text))
        .unwrap_or_default();
    #[cfg(windows)]
    return windows_cpu_times();
    #[cfg(not(any(target_os = "linux", windows)))]
    Vec::new()
}

#[cfg(windows)]
fn windows_cpu_times() -> Vec<CpuTimes> {
    use windows_sys::Win32::Foundation::FILETIME;
    use windows_sys::Win32::System::Threading::GetSystemTimes;
    let zero = FILETIME {
        dwLowDateTime: 0,
        dwHighDateTime: 0,
    };
    let (mut idle, mut kernel, mut user) = (zero, zero, zero);
    // SAFETY: three FILETIMEs we own.
    if unsafe { GetSystemTimes(&mut idle, &mut kernel, &mut user) } == 0 {
        return Vec::new();
    }
    let ticks = |t: FILETIME| (u64::from(t.dwHighDateTime) << 32) | u64::from(t.dwLowDateTime);
    // Kernel time includes idle time.
    let total = ticks(kernel) + ticks(user);
    vec![CpuTimes {
        busy: total.saturating_sub(ticks(idle)),
        total,
    }]
}

/// The memory figures PYME reports (`psutil.virtual_memory()`), in bytes except
/// `percent`: first the four every system has, then the system's own.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Memory {
    pub total: u64,
    pub available: u64,
    /// Of `total`, the share not available, in percent with one decimal.
    pub percent: f64,
    pub used: u64,
    /// More figures, in the order the system has them (`free`, `buffers`, ...).
    pub more: Vec<(&'static str, u64)>,
}

impl Memory {
    fn from_total_available(
        total: u64,
        available: u64,
        used: u64,
        more: Vec<(&'static str, u64)>,
    ) -> Memory {
        let percent = if total == 0 {
            0.0
        } else {
            (total.saturating_sub(available) as f64 * 1000.0 / total as f64).round() / 10.0
        };
        Memory {
            total,
            available,
            percent,
            used,
            more,
        }
    }
}

/// The memory figures of `/proc/meminfo` (kB there, bytes here) as psutil names
/// them on Linux: `cached` counts `SReclaimable`; `used` is what is neither free,
/// nor buffers, nor cache.
pub fn parse_meminfo(text: &str) -> Memory {
    let field = |key: &str| -> u64 {
        text.lines()
            .find_map(|line| {
                let (name, value) = line.split_once(':')?;
                (name == key).then(|| value.split_whitespace().next()?.parse::<u64>().ok())?
            })
            .unwrap_or(0)
            * 1024
    };
    let total = field("MemTotal");
    let free = field("MemFree");
    let buffers = field("Buffers");
    let cached = field("Cached") + field("SReclaimable");
    let available = match field("MemAvailable") {
        0 => free + buffers + cached,
        available => available,
    };
    let mut used = total.saturating_sub(free + buffers + cached);
    if used == 0 {
        used = total.saturating_sub(free);
    }
    Memory::from_total_available(
        total,
        available,
        used,
        vec![
            ("free", free),
            ("active", field("Active")),
            ("inactive", field("Inactive")),
            ("buffers", buffers),
            ("cached", cached),
            ("shared", field("Shmem")),
            ("slab", field("Slab")),
        ],
    )
}

/// The memory figures now (see the module documentation).
pub fn memory() -> Memory {
    #[cfg(target_os = "linux")]
    return std::fs::read_to_string("/proc/meminfo")
        .map(|text| parse_meminfo(&text))
        .unwrap_or_default();
    #[cfg(windows)]
    return windows_memory();
    #[cfg(not(any(target_os = "linux", windows)))]
    Memory::default()
}

#[cfg(windows)]
fn windows_memory() -> Memory {
    use windows_sys::Win32::System::SystemInformation::{GlobalMemoryStatusEx, MEMORYSTATUSEX};
    // SAFETY: a plain struct of integers, for which zero is valid.
    let mut status: MEMORYSTATUSEX = unsafe { std::mem::zeroed() };
    status.dwLength = std::mem::size_of::<MEMORYSTATUSEX>() as u32;
    // SAFETY: the struct is ours, its length set as the call requires.
    if unsafe { GlobalMemoryStatusEx(&mut status) } == 0 {
        return Memory::default();
    }
    let (total, available) = (status.ullTotalPhys, status.ullAvailPhys);
    Memory::from_total_available(
        total,
        available,
        total.saturating_sub(available),
        vec![("free", available)],
    )
}

/// Bytes moved by one network interface since boot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interface {
    pub name: String,
    pub sent: u64,
    pub received: u64,
}

/// The interfaces of `/proc/net/dev`: after the name and its `:`, the 1st figure is
/// the bytes received, the 9th the bytes sent.
pub fn parse_net_dev(text: &str) -> Vec<Interface> {
    text.lines()
        .filter_map(|line| {
            let (name, figures) = line.split_once(':')?;
            let figures: Vec<u64> = figures
                .split_whitespace()
                .map(|f| f.parse().ok())
                .collect::<Option<_>>()?;
            Some(Interface {
                name: name.trim().to_owned(),
                received: *figures.first()?,
                sent: *figures.get(8)?,
            })
        })
        .collect()
}

/// The network interfaces now (see the module documentation).
pub fn interfaces() -> Vec<Interface> {
    #[cfg(target_os = "linux")]
    return std::fs::read_to_string("/proc/net/dev")
        .map(|text| parse_net_dev(&text))
        .unwrap_or_default();
    #[cfg(not(target_os = "linux"))]
    Vec::new()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_stat_per_core_and_percent() {
        let before = parse_proc_stat(
            "cpu  10 0 10 80 0 0 0 0 0 0\ncpu0 5 0 5 40 0 0 0 0 0 0\ncpu1 5 0 5 40 0 0 0 0 0 0\nintr 1 2\n",
        );
        let after = parse_proc_stat(
            "cpu  0 0 0 0\ncpu0 55 0 5 40 0 0 0 0 0 0\ncpu1 5 0 5 140 0 0 0 0 0 0\n",
        );
        assert_eq!(before.len(), 2, "one per core, not the total line");
        assert_eq!(
            before[0],
            CpuTimes {
                busy: 10,
                total: 50
            }
        );
        assert_eq!(after[0].percent_since(&before[0]), 100.0);
        assert_eq!(after[1].percent_since(&before[1]), 0.0);
        // iowait is not busy; guest (already in user) is not counted twice.
        let io = parse_proc_stat("cpu0 1 0 1 1 7 0 0 0 5 5\n");
        assert_eq!(io[0], CpuTimes { busy: 2, total: 10 });
        assert_eq!(io[0].percent_since(&io[0]), 0.0);
        let third = CpuTimes { busy: 1, total: 3 };
        assert_eq!(third.percent_since(&CpuTimes::default()), 33.3);
    }

    #[test]
    fn meminfo_as_psutil_names_it() {
        let memory = parse_meminfo(
            "MemTotal: 1000 kB\nMemFree: 100 kB\nMemAvailable: 600 kB\nBuffers: 50 kB\n\
             Cached: 300 kB\nSReclaimable: 50 kB\nShmem: 10 kB\nActive: 400 kB\n\
             Inactive: 200 kB\nSlab: 70 kB\n",
        );
        assert_eq!(memory.total, 1_024_000);
        assert_eq!(memory.available, 614_400);
        assert_eq!(memory.percent, 40.0);
        assert_eq!(memory.used, 500 * 1024);
        assert!(memory.more.contains(&("cached", 350 * 1024)));
        assert!(memory.more.contains(&("free", 100 * 1024)));
    }

    #[test]
    fn net_dev_bytes_per_interface() {
        let text = "Inter-|   Receive |  Transmit\n face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets\n    lo: 100 2 0 0 0 0 0 0 200 3 0 0 0 0 0 0\n  eth0: 5 1 0 0 0 0 0 0 7 1 0 0 0 0 0 0\n";
        assert_eq!(
            parse_net_dev(text),
            [
                Interface {
                    name: "lo".into(),
                    received: 100,
                    sent: 200
                },
                Interface {
                    name: "eth0".into(),
                    received: 5,
                    sent: 7
                },
            ]
        );
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn this_machine_has_figures() {
        assert!(!cpu_times().is_empty());
        let memory = memory();
        assert!(memory.total > 0 && memory.available <= memory.total);
        assert!(interfaces().iter().any(|i| i.name == "lo"));
    }
}
