//! The portable paths that other systems than Linux take, exercised on Linux: the data
//! server storing every body by read-then-write (`ServerConfig::kernel_copy` off: no
//! `splice`, no tmpfs spares), and streaming with the library's threads left at the
//! default scheduling policy (`PYME_STREAMING_NO_SCHED_BATCH=1`, what every system but
//! Linux does). Windows runs these paths for real under Wine (tests/windows.rs; which
//! test covers which is in docs/WINDOWS.md).

mod server_support;
#[allow(dead_code)] // only `skip` is used here
#[path = "common/skip.rs"]
mod skip;

use std::path::Path;

use server_support::{get, json, put, Client};

use pyme_streaming::server::{DataServer, ServerConfig};

const KIB: usize = 1024;
const MIB: usize = 1024 * KIB;

/// Sizes around every threshold of the server: the connection's read chunk (256 KiB,
/// also where `splice` starts), the spares' 1 MiB, empty and one-byte bodies, and large
/// ones, some of them repeated (spares are made for the size of the latest large body).
const SIZES: [usize; 14] = [
    0,
    1,
    1000,
    64 * KIB,
    256 * KIB - 1,
    256 * KIB,
    256 * KIB + 1,
    MIB,
    2 * MIB + 5,
    2 * MIB + 5,
    2 * MIB + 5,
    8 * MIB + 3,
    3,
    8 * MIB + 3,
];

fn body(n: usize, len: usize) -> Vec<u8> {
    (0..len).map(|i| ((i * 31 + n * 17) % 253) as u8).collect()
}

/// Stores [`SIZES`] under `root` with `kernel_copy` as given, half of them one request
/// at a time and half pipelined in one write (so bodies start both at a read's start and
/// in the middle of buffered input); checks every file byte for byte, and returns the
/// server's `/__status` and whether it kept spares.
fn store_all(root: &Path, kernel_copy: bool) -> (serde_json::Value, bool) {
    let server = DataServer::start(ServerConfig {
        root: root.to_owned(),
        kernel_copy,
        ..ServerConfig::default()
    })
    .unwrap();
    let has_spares = server.has_spares();
    let mut client = Client::connect(server.local_addr());
    let files: Vec<(String, Vec<u8>)> = SIZES
        .iter()
        .enumerate()
        .map(|(n, &len)| (format!("series/f{n:02}_{len}"), body(n, len)))
        .collect();
    let (one_by_one, pipelined) = files.split_at(files.len() / 2);
    for (name, bytes) in one_by_one {
        client.send(&put(name, bytes));
        assert_eq!(client.response().code, 200, "{name}");
    }
    let batch: Vec<u8> = pipelined
        .iter()
        .flat_map(|(name, bytes)| put(name, bytes))
        .collect();
    client.send(&batch);
    for (name, _) in pipelined {
        assert_eq!(client.response().code, 200, "{name}");
    }
    for (name, bytes) in &files {
        let stored = std::fs::read(root.join(name)).unwrap();
        assert!(
            stored == *bytes,
            "{name}: {} bytes stored, {} sent, same: {}",
            stored.len(),
            bytes.len(),
            stored == *bytes
        );
    }
    client.send(&get("/__status"));
    let status = json(&client.response().body);
    assert_eq!(status["files_stored"], files.len() as u64, "{status}");
    let total: usize = SIZES.iter().sum();
    assert_eq!(status["bytes_stored"], total as u64, "{status}");
    server.shutdown();
    (status, has_spares)
}

/// A tmpfs root with 4 KiB pages (where the server keeps spares), if this machine has one.
fn small_pages_tmpfs() -> Option<tempfile::TempDir> {
    let shm = Path::new("/dev/shm");
    pyme_streaming::server::mounts::small_pages_tmpfs(shm)?;
    tempfile::tempdir_in(shm).ok()
}

/// A root on the disk that holds the build (not a tmpfs).
fn disk_dir() -> tempfile::TempDir {
    tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap()
}

fn check_portable_path(dir: &Path) {
    let (status, has_spares) = store_all(&dir.join("portable"), false);
    assert!(!has_spares, "kernel_copy off keeps no spares");
    assert_eq!(status["bodies_spliced"], 0, "{status}");
    assert_eq!(status["files_stored_in_spares"], 0, "{status}");
    assert!(status["spares_ready"].is_null(), "{status}");
}

/// The same files with `kernel_copy` on: on Linux the large bodies went by `splice`,
/// so the portable run above did take another path.
fn check_kernel_path(dir: &Path, tmpfs: bool) {
    let (status, has_spares) = store_all(&dir.join("kernel"), true);
    if cfg!(target_os = "linux") {
        let large = SIZES.iter().filter(|&&len| len >= 256 * KIB).count() as u64;
        let spliced = status["bodies_spliced"].as_u64().unwrap();
        assert!(spliced > 0 && spliced <= large, "{status}");
        assert_eq!(has_spares, tmpfs, "spares on a tmpfs root only");
    } else {
        assert_eq!(status["bodies_spliced"], 0, "{status}");
        assert!(!has_spares);
    }
}

#[test]
fn without_kernel_copy_files_are_stored_exactly_on_a_disk_root() {
    let dir = disk_dir();
    check_portable_path(dir.path());
    check_kernel_path(dir.path(), false);
}

#[test]
fn without_kernel_copy_files_are_stored_exactly_on_a_tmpfs_root() {
    let Some(dir) = small_pages_tmpfs() else {
        skip::skip(
            "without_kernel_copy_files_are_stored_exactly_on_a_tmpfs_root",
            "/dev/shm is not a tmpfs with 4 KiB pages here",
        );
        return;
    };
    check_portable_path(dir.path());
    check_kernel_path(dir.path(), true);
}

/// Streaming with the library's threads at the default scheduling policy, as on every
/// system but Linux: a child process of this test binary (the variable is read once,
/// before the first library thread starts), run once with
/// `PYME_STREAMING_NO_SCHED_BATCH=1` and once without, each checking the policy of the
/// library's threads and that every file arrives exactly.
#[cfg(target_os = "linux")]
#[test]
fn streaming_works_with_sched_batch_skipped() {
    for skip in [true, false] {
        let mut command = std::process::Command::new(std::env::current_exe().unwrap());
        command
            .args(["--exact", "sched_policy_child", "--include-ignored"])
            .args(["--nocapture", "--test-threads=1"])
            .env_remove(pyme_streaming::NO_SCHED_BATCH_ENV)
            .env(
                "PORTABLE_EXPECT_POLICY",
                if skip { "other" } else { "batch" },
            );
        if skip {
            command.env(pyme_streaming::NO_SCHED_BATCH_ENV, "1");
        }
        let output = command.output().unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success() && stdout.contains("1 passed"),
            "skip {skip}: {}\n{stdout}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

/// Run by `streaming_works_with_sched_batch_skipped` in a child process.
#[cfg(target_os = "linux")]
#[test]
#[ignore = "run by streaming_works_with_sched_batch_skipped, in a process of its own"]
fn sched_policy_child() {
    use pyme_streaming::{Streamer, StreamerOptions};
    const SCHED_OTHER: u64 = 0;
    const SCHED_BATCH: u64 = 3;
    let expected = match std::env::var("PORTABLE_EXPECT_POLICY").as_deref() {
        Ok("other") => SCHED_OTHER,
        Ok("batch") => SCHED_BATCH,
        other => panic!("PORTABLE_EXPECT_POLICY is {other:?}"),
    };
    let dir = tempfile::tempdir().unwrap();
    let server = DataServer::start(ServerConfig {
        root: dir.path().join("root"),
        ..ServerConfig::default()
    })
    .unwrap();
    let options = StreamerOptions::new().server(server.local_addr().to_string());
    let streamer = Streamer::new(options).unwrap();
    let files: Vec<(String, Vec<u8>)> = (0..40)
        .map(|n| (format!("sched/f{n:02}"), body(n, 1000 + n * 7919)))
        .collect();
    for (name, bytes) in &files {
        streamer.put(name, bytes, None).unwrap();
    }
    streamer
        .flush(Some(std::time::Duration::from_secs(30)))
        .unwrap();
    // The streamer's threads are alive until it closes.
    let policies = library_thread_policies();
    assert!(
        policies
            .iter()
            .any(|(name, _)| name.starts_with("pyme-link")),
        "{policies:?}"
    );
    for (name, policy) in &policies {
        if name.starts_with("pyme-link") || name.starts_with("pyme-recv") {
            assert_eq!(*policy, expected, "{name}: {policies:?}");
        }
    }
    let stats = streamer.close();
    assert_eq!(stats.files_acknowledged, files.len() as u64, "{stats:?}");
    for (name, bytes) in &files {
        let stored = std::fs::read(server.root().join(name)).unwrap();
        assert!(stored == *bytes, "{name}");
    }
    println!("policy {expected} checked on {} threads", policies.len());
}

/// The name and scheduling policy (`/proc/self/task/*/stat`, field 41) of every thread
/// of this process whose name starts with `pyme`.
#[cfg(target_os = "linux")]
fn library_thread_policies() -> Vec<(String, u64)> {
    let mut found = Vec::new();
    for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
            continue;
        };
        let Some((head, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let name = head.split_once('(').map_or("", |(_, name)| name).to_owned();
        // Fields from the 3rd (state) on; the policy is the 41st.
        let policy = rest
            .split_whitespace()
            .nth(41 - 3)
            .and_then(|f| f.parse().ok());
        if let (true, Some(policy)) = (name.starts_with("pyme"), policy) {
            found.push((name, policy));
        }
    }
    found
}

/// A large body cut off by the client, on the portable path: nothing is stored under
/// its name and no temporary file stays, on a disk root and (if there is one) a tmpfs
/// root; the server goes on storing.
#[test]
fn a_cut_body_leaves_nothing_without_kernel_copy() {
    let disk = disk_dir();
    let tmpfs = small_pages_tmpfs();
    let dirs: Vec<&Path> = std::iter::once(disk.path())
        .chain(tmpfs.as_ref().map(|dir| dir.path()))
        .collect();
    for dir in dirs {
        let root = dir.join("root");
        let server = DataServer::start(ServerConfig {
            root: root.clone(),
            kernel_copy: false,
            ..ServerConfig::default()
        })
        .unwrap();
        let mut cut = Client::connect(server.local_addr());
        let mut partial = put("cut/f", &body(1, 3 * MIB));
        partial.truncate(partial.len() - 2 * MIB);
        cut.send(&partial);
        drop(cut);
        // Then a whole file on another connection, and the cut one's end awaited.
        let mut client = Client::connect(server.local_addr());
        let whole = body(2, 2 * MIB);
        client.send(&put("whole/f", &whole));
        assert_eq!(client.response().code, 200);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            client.send(&get("/__status"));
            if json(&client.response().body)["connections_open"] == 1 {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the cut connection never ended"
            );
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let mut left: Vec<std::path::PathBuf> = Vec::new();
        let mut folders = vec![root.clone()];
        while let Some(folder) = folders.pop() {
            for entry in std::fs::read_dir(&folder).unwrap().flatten() {
                if entry.file_type().unwrap().is_dir() {
                    folders.push(entry.path());
                } else if entry.file_name() != ".pyme-lock" {
                    left.push(entry.path().strip_prefix(&root).unwrap().to_path_buf());
                }
            }
        }
        assert_eq!(
            left,
            vec![Path::new("whole").join("f")],
            "{}",
            dir.display()
        );
        assert!(std::fs::read(root.join("whole/f")).unwrap() == whole);
    }
}
