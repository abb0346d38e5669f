//! Which file system holds the storage root: a tmpfs without huge pages makes storing
//! large files cost more than it needs to. It decides one piece of advice, and whether
//! the server keeps spares (`spares.rs`).
//!
//! On such a tmpfs every 4 KiB page of a file is allocated and accounted one by one,
//! which costs more than copying the bytes. Mounted with `huge=within_size`, the
//! kernel gives a file pages as large as each write (up to 2 MiB), and the server's
//! CPU per GB stored dropped by a quarter to 40 % here (docs/PERFORMANCE.md). The
//! server cannot change a mount, so `pyme-stream serve` prints the advice at startup.
//! Linux only: elsewhere, and whenever `/proc` cannot be read, there is no advice.

use std::path::{Path, PathBuf};

/// A line of `/proc/self/mountinfo`, the parts used here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub point: PathBuf,
    pub fstype: String,
    /// The file system's own options (`size=…,huge=…`).
    pub options: String,
}

/// Advice when `root` (an absolute, canonical path) is on a tmpfs that gives its
/// files 4 KiB pages only, naming the mount point to change.
pub fn tmpfs_advice(root: &Path) -> Option<String> {
    let mount = small_pages_tmpfs(root)?;
    Some(format!(
        "{} is on a tmpfs without huge pages ({}): each 4 KiB page of a stored file is \
         allocated on its own, which makes storing large files cost more CPU; \
         `mount -o remount,huge=within_size {}` gives them large pages (see the README)",
        root.display(),
        mount.point.display(),
        mount.point.display()
    ))
}

/// The mount holding `root` (absolute, canonical) when it is a tmpfs that gives its
/// files 4 KiB pages only.
pub fn small_pages_tmpfs(root: &Path) -> Option<Mount> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let shmem_enabled =
        std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/shmem_enabled")
            .unwrap_or_default();
    let mount = mount_of(&mountinfo, root)?;
    small_pages_only(&mount, &shmem_enabled).then_some(mount)
}

/// Whether files on this mount get 4 KiB pages only: a tmpfs whose `huge` option is
/// absent or `never`, unless the kernel forces huge pages on every tmpfs.
pub fn small_pages_only(mount: &Mount, shmem_enabled: &str) -> bool {
    if mount.fstype != "tmpfs" || shmem_enabled.contains("[force]") {
        return false;
    }
    let huge = mount
        .options
        .split(',')
        .find_map(|option| option.strip_prefix("huge="));
    matches!(huge, None | Some("never" | "deny"))
}

/// The mount holding `path`: the one with the longest mount point above it (the
/// last listed wins a tie, as it is mounted on top).
pub fn mount_of(mountinfo: &str, path: &Path) -> Option<Mount> {
    mountinfo
        .lines()
        .filter_map(parse_line)
        .filter(|mount| path.starts_with(&mount.point))
        .fold(None, |best: Option<Mount>, mount| match best {
            Some(best) if best.point.as_os_str().len() > mount.point.as_os_str().len() => {
                Some(best)
            }
            _ => Some(mount),
        })
}

/// `36 35 98:0 /root /mnt/point rw,noatime shared:1 - tmpfs tmpfs rw,size=1g`
fn parse_line(line: &str) -> Option<Mount> {
    let (before, after) = line.split_once(" - ")?;
    let point = before.split(' ').nth(4)?;
    let mut after = after.split(' ');
    let fstype = after.next()?;
    let options = after.nth(1).unwrap_or_default();
    Some(Mount {
        point: PathBuf::from(unescape(point)),
        fstype: fstype.to_owned(),
        options: options.to_owned(),
    })
}

/// Mount points escape space, tab, newline and backslash as `\ooo` (octal).
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes.get(i + 1..i + 4).and_then(|digits| {
            let text = std::str::from_utf8(digits).ok()?;
            u8::from_str_radix(text, 8).ok()
        });
        match (bytes[i], octal) {
            (b'\\', Some(byte)) => {
                out.push(byte);
                i += 4;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO: &str = "\
22 1 0:21 / / rw,relatime - ext4 /dev/vda1 rw
25 22 0:23 / /dev rw,nosuid - devtmpfs udev rw,size=4g
30 25 0:26 / /dev/shm rw,nosuid,nodev - tmpfs tmpfs rw,size=24684092k
31 22 0:27 / /mnt/huge rw,relatime - tmpfs tmpfs rw,size=8g,huge=within_size
32 22 0:28 / /mnt/my\\040frames rw,relatime - tmpfs tmpfs rw,size=1g,huge=never
33 22 0:29 / /mnt/huge rw,relatime - tmpfs tmpfs rw,size=1g
";

    fn mount(path: &str) -> Mount {
        mount_of(MOUNTINFO, Path::new(path)).unwrap()
    }

    #[test]
    fn finds_the_mount_holding_a_path() {
        assert_eq!(mount("/dev/shm/pyme/x").point, Path::new("/dev/shm"));
        assert_eq!(mount("/dev/shm").fstype, "tmpfs");
        assert_eq!(mount("/dev/shmem").point, Path::new("/dev"));
        assert_eq!(mount("/home/me").fstype, "ext4");
        assert_eq!(mount("/mnt/my frames/a").point, Path::new("/mnt/my frames"));
        // Mounted on top of the earlier /mnt/huge: the later line holds the files.
        assert_eq!(mount("/mnt/huge/a").options, "rw,size=1g");
    }

    #[test]
    fn advises_only_tmpfs_with_small_pages() {
        let never = "always within_size advise [never] deny force";
        assert!(small_pages_only(&mount("/dev/shm/a"), never));
        assert!(small_pages_only(&mount("/mnt/my frames/a"), never));
        assert!(!small_pages_only(&mount("/home/me"), never));
        let huge = mount_of(
            "31 22 0:27 / /mnt/h rw - tmpfs tmpfs rw,size=8g,huge=within_size",
            Path::new("/mnt/h/a"),
        )
        .unwrap();
        assert!(!small_pages_only(&huge, never));
        let forced = "always within_size advise never deny [force]";
        assert!(!small_pages_only(&mount("/dev/shm/a"), forced));
    }

    #[test]
    fn ignores_malformed_lines() {
        assert_eq!(mount_of("garbage\n\n1 2 3\n", Path::new("/x")), None);
    }
}
