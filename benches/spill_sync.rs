//! What syncing a spilled file costs a camera's `put` (issue 22, item 4).
//!
//! A streamer whose only server is down spills every put on the putting
//! thread. This measures each put's latency (p50, p99) with the library's
//! syncs (file data, then the folder after the link) and without them
//! (`StreamerOptions::spill_without_sync`, for this benchmark only), for one
//! putting thread and for four at once (where folder syncs are shared), next
//! to this disk's own latency: a plain `write` + `fdatasync` of a new file and
//! an `fsync` of a folder.
//!
//! Run: `cargo bench --bench spill_sync` (about a minute). The folder is made
//! under `target/tmp` (the disk the build is on) unless `PYME_BENCH_DIR`
//! names another. Results: docs/PERFORMANCE.md, "Spilling to disk".

use std::io::Write;
use std::net::TcpListener;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pyme_streaming::{Streamer, StreamerOptions};

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index]
}

fn report(label: &str, mut samples: Vec<Duration>) {
    samples.sort();
    println!(
        "{label:<44} n={:<5} p50 {:>9.3} ms  p99 {:>9.3} ms  max {:>9.3} ms",
        samples.len(),
        percentile(&samples, 0.5).as_secs_f64() * 1e3,
        percentile(&samples, 0.99).as_secs_f64() * 1e3,
        samples.last().unwrap().as_secs_f64() * 1e3,
    );
}

/// The disk's own latency: a new file written and its data synced, and a
/// folder synced.
fn plain_disk(folder: &Path, bytes: usize, count: usize) {
    let data = vec![5u8; bytes];
    let mut file_syncs = Vec::new();
    let mut folder_syncs = Vec::new();
    for i in 0..count {
        let path = folder.join(format!("plain{i}"));
        let start = Instant::now();
        let mut file = std::fs::File::create(&path).unwrap();
        file.write_all(&data).unwrap();
        file.sync_data().unwrap();
        file_syncs.push(start.elapsed());
        let start = Instant::now();
        std::fs::File::open(folder).unwrap().sync_all().unwrap();
        folder_syncs.push(start.elapsed());
    }
    report(
        &format!("disk: write {} KiB + fdatasync", bytes / 1024),
        file_syncs,
    );
    report("disk: fsync of the folder", folder_syncs);
}

/// A streamer whose only server is gone for the whole run.
fn streamer_with_its_server_down(spill: &Path, sync: bool) -> Streamer {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let accepting = std::thread::spawn(move || drop(listener.accept()));
    let mut options = StreamerOptions::new()
        .server(address)
        .spill_dir(spill)
        .queue_limits(100_000, 64 << 30)
        .reconnect_backoff(Duration::from_secs(3600), Duration::from_secs(3600));
    if !sync {
        options = options.spill_without_sync();
    }
    let streamer = Streamer::new(options).unwrap();
    accepting.join().unwrap();
    streamer.put("warm/up", b"w", None).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while streamer.stats().spilled == 0 {
        assert!(Instant::now() < deadline, "never spilled");
        std::thread::sleep(Duration::from_millis(5));
    }
    streamer
}

fn spilling_puts(base: &Path, sync: bool, threads: usize, bytes: usize, per_thread: usize) {
    let spill = base.join(format!("spill-{sync}-{threads}-{bytes}"));
    let streamer = Arc::new(streamer_with_its_server_down(&spill, sync));
    let workers: Vec<_> = (0..threads)
        .map(|t| {
            let streamer = Arc::clone(&streamer);
            std::thread::spawn(move || {
                let frame = vec![t as u8; bytes];
                (0..per_thread)
                    .map(|i| {
                        let start = Instant::now();
                        streamer
                            .put(&format!("run/t{t}/frame{i:05}"), &frame, None)
                            .unwrap();
                        start.elapsed()
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let samples: Vec<Duration> = workers
        .into_iter()
        .flat_map(|worker| worker.join().unwrap())
        .collect();
    let spilled = streamer.stats().spilled;
    assert_eq!(spilled, (threads * per_thread + 1) as u64);
    let label = format!(
        "put, {} KiB, {threads} thread{}, {}",
        bytes / 1024,
        if threads == 1 { "" } else { "s" },
        if sync { "synced" } else { "NOT synced" }
    );
    report(&label, samples);
    if let Ok(streamer) = Arc::try_unwrap(streamer) {
        let _ = streamer.close_timeout(Duration::from_secs(5));
    }
    std::fs::remove_dir_all(&spill).unwrap();
}

fn main() {
    if std::env::args().any(|arg| arg == "--list") {
        return;
    }
    let base = std::env::var_os("PYME_BENCH_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_TARGET_TMPDIR")).to_owned());
    std::fs::create_dir_all(&base).unwrap();
    let work = tempfile::tempdir_in(&base).unwrap();
    println!("spill folder under {}", work.path().display());
    for bytes in [64 * 1024, 2 << 20] {
        let count = if bytes > 1 << 20 { 100 } else { 300 };
        plain_disk(work.path(), bytes, count);
        for sync in [false, true] {
            spilling_puts(work.path(), sync, 1, bytes, count);
            spilling_puts(work.path(), sync, 4, bytes, count / 4);
        }
    }
}
