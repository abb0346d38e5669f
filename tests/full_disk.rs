//! A full disk, for real: a data server's root or the client's spill folder on a
//! tmpfs of a few hundred KiB, mounted by the test (root only; skipped, saying why,
//! elsewhere, a failure when `CI` is set) and unmounted when it ends, also when it
//! panics.
//!
//! What must hold: the server answers 507 (storage full) and keeps nothing half
//! written, neither a file nor a torn record in an appended file, and goes on serving;
//! the client sends a file refused with 507 to another server at once, without
//! retrying it where it cannot fit; a spill folder that fills fails the files that do
//! not fit, with the reason, and keeps the others whole for a later streamer.
#![cfg(target_os = "linux")]

mod common;
mod server_support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::recording::{failure, recording};
use common::{files_under, relative, start_servers, ServeProcess};
use pyme_streaming::server::{DataServer, ServerConfig};
use pyme_streaming::{Streamer, StreamerOptions};
use server_support::{put, Client};

/// A tmpfs of `bytes` mounted on a temporary folder, unmounted on drop.
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(bytes: u64) -> Result<SmallDisk, String> {
        // SAFETY: a plain system call without arguments.
        if unsafe { libc::geteuid() } != 0 {
            return Err("not root (mounting a tmpfs needs CAP_SYS_ADMIN)".into());
        }
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let output = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={bytes},mode=0755"),
                "tmpfs",
            ])
            .arg(dir.path())
            .output()
            .map_err(|e| format!("mount: {e}"))?;
        if !output.status.success() {
            return Err(format!(
                "mount -t tmpfs failed: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            ));
        }
        Ok(SmallDisk { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        // Lazy: a server thread may still hold a file open while the test unwinds.
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .output();
    }
}

/// The files in a spill folder, without its lock file `.pyme-lock` (held by
/// the streamer that has it open, never sent).
fn spilled_files(folder: &std::path::Path) -> Vec<std::path::PathBuf> {
    files_under(folder)
        .into_iter()
        .filter(|path| path.file_name().is_none_or(|name| name != ".pyme-lock"))
        .collect()
}

/// A small disk for `test`, or `None` after a visible skip (a failure under
/// CI, which runs as root).
fn small_disk(test: &str, bytes: u64) -> Option<SmallDisk> {
    match SmallDisk::mount(bytes) {
        Ok(disk) => Some(disk),
        Err(why) => {
            common::skip::skip(test, &why);
            None
        }
    }
}

fn server_on(root: PathBuf) -> DataServer {
    DataServer::start(ServerConfig {
        root,
        port: 0,
        ..ServerConfig::default()
    })
    .unwrap()
}

/// Bytes free on the file system holding `path`.
fn free_bytes(path: &Path) -> u64 {
    let c_path = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: a valid C string and a zeroed out-structure that statvfs fills.
    let mut stats: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    assert_eq!(unsafe { libc::statvfs(c_path.as_ptr(), &mut stats) }, 0);
    stats.f_bavail as u64 * stats.f_frsize as u64
}

/// Every entry below `dir`, hidden ones (temporary files) included, relative.
fn all_entries(dir: &Path) -> Vec<String> {
    files_under(dir)
        .iter()
        .map(|path| relative(dir, path))
        .collect()
}

#[test]
fn a_full_disk_answers_507_keeps_nothing_half_written_and_goes_on() {
    let Some(disk) = small_disk(
        "a_full_disk_answers_507_keeps_nothing_half_written_and_goes_on",
        512 * 1024,
    ) else {
        return;
    };
    let server = server_on(disk.path().join("root"));
    let mut client = Client::connect(server.local_addr());

    // Small bodies (read into the connection's buffer) until the disk is full.
    let record = vec![0x11u8; 100 * 1024];
    let mut stored = Vec::new();
    let refused = loop {
        let name = format!("small/f{:02}", stored.len());
        client.send(&put(&name, &record));
        let response = client.response();
        match response.code {
            200 => stored.push(name),
            507 => break name,
            other => panic!(
                "{name}: {other} {:?}",
                String::from_utf8_lossy(&response.body)
            ),
        }
        assert!(stored.len() < 10, "a 512 KiB disk took 1 MB");
    };
    assert!(!stored.is_empty(), "nothing fitted");

    // A large body (moved by splice) that cannot fit either; the same connection.
    let large = vec![0x22u8; 3 << 20];
    client.send(&put("large/frame", &large));
    let response = client.response();
    assert_eq!(response.code, 507);
    assert!(String::from_utf8_lossy(&response.body).contains("full"));

    // What was stored is whole; what was refused left nothing, not even a
    // temporary file.
    let root = disk.path().join("root");
    let mut expected = stored.clone();
    expected.sort();
    assert_eq!(all_entries(&root), expected);
    for name in &stored {
        assert_eq!(std::fs::read(root.join(name)).unwrap(), record);
    }
    assert!(!root.join(&refused).exists());

    // Room again (an operator moved files away): the same connection stores.
    for name in &stored {
        std::fs::remove_file(root.join(name)).unwrap();
    }
    client.send(&put(&refused, &record));
    assert_eq!(client.response().code, 200);
    assert_eq!(std::fs::read(root.join(&refused)).unwrap(), record);
}

#[test]
fn an_append_that_does_not_fit_leaves_the_file_as_it_was() {
    let Some(disk) = small_disk(
        "an_append_that_does_not_fit_leaves_the_file_as_it_was",
        512 * 1024,
    ) else {
        return;
    };
    let server = server_on(disk.path().join("root"));
    let mut client = Client::connect(server.local_addr());
    let record = vec![b'x'; 70 * 1024];
    let log = disk.path().join("root/run/log.txt");
    let mut appended = 0;
    loop {
        let free_before = free_bytes(disk.path());
        client.send(&put("__aggregate_txt/run/log.txt", &record));
        let response = client.response();
        if response.code == 507 {
            // Room for the spool (the whole body, in 4 KiB pages) but not for
            // the append too: the append itself was cut short, which is what
            // this test is for.
            let pages = (record.len() as u64).div_ceil(4096) * 4096;
            assert!(
                free_before >= pages && free_before < 2 * pages,
                "{free_before} bytes free before the refused append"
            );
            break;
        }
        assert_eq!(response.code, 200);
        appended += 1;
        assert!(appended < 10, "a 512 KiB disk took 700 KB");
    }
    // The spool and the appended file share the disk: the refusal may come from
    // either, and in both cases the file holds whole records only.
    let len = std::fs::metadata(&log).map(|m| m.len()).unwrap_or(0);
    assert_eq!(len, appended * record.len() as u64, "a torn record");
    // Not one stray file beside it (spools are unnamed or removed).
    let entries = all_entries(&disk.path().join("root"));
    assert!(entries.len() <= 1, "{entries:?}");
}

#[test]
fn a_full_server_is_left_at_once_and_nothing_is_lost() {
    let Some(disk) = small_disk(
        "a_full_server_is_left_at_once_and_nothing_is_lost",
        256 * 1024,
    ) else {
        return;
    };
    let full = server_on(disk.path().join("root"));
    let good = start_servers(2);
    let (options, seen) = recording(
        StreamerOptions::new()
            .server(good[0].address())
            .server(full.local_addr().to_string())
            .server(good[1].address()),
    );
    let streamer = Streamer::new(options).unwrap();
    let total = 150;
    let body = |i: usize| vec![i as u8; 20_000];
    for i in 0..total {
        streamer
            .put(&format!("run/f{i:03}"), &body(i), None)
            .unwrap();
    }
    let stats = streamer.close();
    assert_eq!(stats.files_acknowledged, total as u64, "{stats:?}");
    // A 507 is not retried where it cannot fit: the file moves on at once.
    assert_eq!(stats.retries, 0, "{stats:?}");
    assert!(
        stats.files_sent > total as u64,
        "the full server refused nothing: {stats:?}"
    );
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), total);
    assert!(seen.values().all(|v| v.len() == 1 && v[0].1.is_ok()));
    // Each file stored once, whole, wherever it is; none half written on the full one.
    let roots = [
        good[0].root.path().to_owned(),
        disk.path().join("root"),
        good[1].root.path().to_owned(),
    ];
    let mut names = Vec::new();
    for root in &roots {
        for name in all_entries(root) {
            let i: usize = name.trim_start_matches("run/f").parse().unwrap();
            assert_eq!(std::fs::read(root.join(&name)).unwrap(), body(i), "{name}");
            names.push(name);
        }
    }
    names.sort();
    let expected: Vec<String> = (0..total).map(|i| format!("run/f{i:03}")).collect();
    assert_eq!(names, expected);
}

#[test]
fn a_full_spill_folder_fails_what_does_not_fit_and_keeps_the_rest() {
    let Some(disk) = small_disk(
        "a_full_spill_folder_fails_what_does_not_fit_and_keeps_the_rest",
        128 * 1024,
    ) else {
        return;
    };
    let spill = disk.path().join("spill");
    let stored = tempfile::tempdir().unwrap();
    let mut server = ServeProcess::start(stored.path(), 0, &[]);
    let (options, seen) = recording(
        StreamerOptions::new()
            .server(server.address.clone())
            .spill_dir(&spill)
            .reconnect_backoff(Duration::from_secs(30), Duration::from_secs(30)),
    );
    let streamer = Streamer::new(options).unwrap();
    server.kill();
    let total = 40;
    let body = |i: usize| vec![i as u8; 8_000];
    for i in 0..total {
        // A put may be refused at once (the spill folder is full and no server
        // is up) or fail later: either way it is one outcome, said.
        if let Err(error) = streamer.put(&format!("sp/f{i:02}"), &body(i), None) {
            let text = error.to_string();
            assert!(
                text.contains("spill folder") && text.contains("No space left"),
                "{text}"
            );
            seen.lock()
                .unwrap()
                .entry(format!("sp/f{i:02}"))
                .or_default()
                .push((usize::MAX, Err(text)));
        }
    }
    let stats = streamer.close();
    assert_eq!(stats.files_acknowledged, 0);
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), total, "every file has an outcome");
    assert!(seen.values().all(|v| v.len() == 1), "one outcome each");
    let kept = spilled_files(&spill);
    // No temporary file of a write cut short stays behind, taking room.
    assert!(
        kept.iter()
            .all(|path| std::fs::metadata(path).unwrap().len() == 8_000),
        "{kept:?}"
    );
    assert!(
        !kept.is_empty() && kept.len() < total,
        "{} of {total} spilled",
        kept.len()
    );
    assert_eq!(stats.spilled as usize, kept.len(), "{stats:?}");
    // The files that did not fit failed saying so.
    let not_kept = seen
        .values()
        .filter(|v| !failure(&v[0]).contains("kept in the spill folder"))
        .count();
    assert_eq!(not_kept, total - kept.len(), "{seen:?}");
    drop(seen);

    // A later streamer with a live server sends every kept file, whole.
    let server = common::TestServer::start();
    let streamer = Streamer::new(
        StreamerOptions::new()
            .server(server.address())
            .spill_dir(&spill),
    )
    .unwrap();
    streamer.flush(Some(Duration::from_secs(30))).unwrap();
    let stats = streamer.close();
    assert_eq!(stats.files_acknowledged as usize, kept.len(), "{stats:?}");
    assert!(spilled_files(&spill).is_empty());
    for name in server.files() {
        let i: usize = name.trim_start_matches("sp/f").parse().unwrap();
        assert_eq!(server.read(&name).unwrap(), body(i), "{name}");
    }
}

/// With a spill folder, files no server has room for (every disk full) wait in
/// the folder, as in an outage, instead of failing with the 507: when room comes
/// back they are sent, every file acknowledged; closed while the disk is still
/// full, they fail saying they are kept in the folder, and stay there.
#[test]
fn with_a_spill_folder_files_no_full_server_takes_wait_for_room() {
    let Some(disk) = small_disk(
        "with_a_spill_folder_files_no_full_server_takes_wait_for_room",
        256 * 1024,
    ) else {
        return;
    };
    let root = disk.path().join("root");
    let server = server_on(root.clone());
    let spill = tempfile::tempdir().unwrap();
    let options = || {
        StreamerOptions::new()
            .server(server.local_addr().to_string())
            .spill_dir(spill.path())
            .reconnect_backoff(Duration::from_millis(50), Duration::from_millis(300))
    };
    let body = |i: usize| vec![i as u8; 20_000];
    let wait_for =
        |streamer: &Streamer, what: &str, done: &dyn Fn(&pyme_streaming::Stats) -> bool| {
            let deadline = std::time::Instant::now() + Duration::from_secs(30);
            loop {
                let stats = streamer.stats();
                if done(&stats) {
                    return stats;
                }
                assert!(std::time::Instant::now() < deadline, "{what}: {stats:?}");
                std::thread::sleep(Duration::from_millis(20));
            }
        };

    // Room comes back: everything is delivered.
    let (with_callback, seen) = recording(options());
    let streamer = Streamer::new(with_callback).unwrap();
    let total = 30;
    for i in 0..total {
        streamer
            .put(&format!("wait/f{i:02}"), &body(i), None)
            .unwrap();
    }
    let stats = wait_for(&streamer, "some files spilled, the rest stored", &|s| {
        s.spilled > 0 && s.files_acknowledged + s.spilled == total as u64
    });
    assert_eq!(stats.files_failed, 0, "{stats:?}");
    // An operator (or the analysis) moves stored files away as they come,
    // checking each: room comes back again and again.
    let mut moved = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while streamer.stats().files_acknowledged < total as u64 {
        // Stored files only: a hidden one is a file the server is still writing.
        let stored = all_entries(&root)
            .into_iter()
            .filter(|name| !name.rsplit('/').next().unwrap_or(name).starts_with('.'));
        for name in stored {
            let i: usize = name.trim_start_matches("wait/f").parse().unwrap();
            assert_eq!(std::fs::read(root.join(&name)).unwrap(), body(i));
            std::fs::remove_file(root.join(&name)).unwrap();
            moved.push(name);
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{:?}",
            streamer.stats()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let stats = streamer.close();
    assert_eq!(
        (stats.files_acknowledged, stats.files_failed),
        (total as u64, 0)
    );
    assert_eq!(seen.lock().unwrap().len(), total);
    assert!(seen
        .lock()
        .unwrap()
        .values()
        .all(|v| v.len() == 1 && v[0].1.is_ok()));
    let mut stored = moved;
    for name in all_entries(&root) {
        let i: usize = name.trim_start_matches("wait/f").parse().unwrap();
        assert_eq!(std::fs::read(root.join(&name)).unwrap(), body(i));
        stored.push(name);
    }
    stored.sort();
    let expected: Vec<String> = (0..total).map(|i| format!("wait/f{i:02}")).collect();
    assert_eq!(stored, expected, "each file stored once");
    assert!(spilled_files(spill.path()).is_empty());

    // Closed while the disk is full: the files that did not fit stay spilled.
    for name in all_entries(&root) {
        std::fs::remove_file(root.join(&name)).unwrap();
    }
    let streamer = Streamer::new(options()).unwrap();
    for i in 0..total {
        streamer
            .put(&format!("full/f{i:02}"), &body(i), None)
            .unwrap();
    }
    let stats = wait_for(&streamer, "some files spilled, the rest stored", &|s| {
        s.spilled > 0 && s.files_acknowledged + s.spilled == total as u64
    });
    let stats_at_close = streamer.close();
    assert_eq!(
        stats_at_close.files_failed, stats.spilled,
        "{stats_at_close:?}"
    );
    assert_eq!(spilled_files(spill.path()).len() as u64, stats.spilled);
}
