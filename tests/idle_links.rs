//! Idle costs nothing (issue 27, item 4): a link's sender sleeps until a put
//! wakes it once its files come further apart than a few poll intervals, and
//! an idle link's threads do not wake at all.
//!
//! Counted, not timed: the voluntary context switches of the link's threads
//! (`/proc/self/task/*/status`), each a wait that ended. With a sender that
//! polls every millisecond between files, a file every 100 ms costs about a
//! hundred; sleeping until woken, one or two. The CPU cost itself is measured
//! by `benches/cluster_sim.sh idle` (docs/CLUSTER.md).
#![cfg(target_os = "linux")] // /proc

mod common;

use std::time::Duration;

use pyme_streaming::{Streamer, StreamerOptions};

/// Voluntary context switches of this process's thread named `name`.
fn switches(name: &str) -> u64 {
    for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if comm.trim() != name {
            continue;
        }
        let status = std::fs::read_to_string(task.path().join("status")).unwrap();
        return status
            .lines()
            .find_map(|line| line.strip_prefix("voluntary_ctxt_switches:"))
            .and_then(|count| count.trim().parse().ok())
            .expect("voluntary_ctxt_switches");
    }
    panic!("no thread {name}");
}

/// One test in this binary, so that no other streamer's `pyme-link-0` runs
/// beside this one.
#[test]
fn a_link_whose_files_come_far_apart_sleeps_between_them_and_an_idle_link_never_wakes() {
    let servers = common::start_servers(1);
    let options = StreamerOptions::new().servers(common::addresses(&servers));
    let streamer = Streamer::new(options).unwrap();
    // A first file, so the sender has been busy once (and its receiver runs).
    streamer.put_stream(0, "idle/first", b"x").unwrap();
    streamer.flush(Some(Duration::from_secs(30))).unwrap();

    const FILES: u64 = 20;
    let before = switches("pyme-link-0");
    for i in 0..FILES {
        std::thread::sleep(Duration::from_millis(100));
        streamer.put_stream(0, &format!("idle/f{i}"), b"x").unwrap();
    }
    streamer.flush(Some(Duration::from_secs(30))).unwrap();
    let sparse = switches("pyme-link-0") - before;
    eprintln!("sender wake-ups for {FILES} files 100 ms apart: {sparse}");
    // Sleeping until woken: about one per file (plus a few polls after the
    // first). Polling every millisecond between them: about 100 per file.
    assert!(sparse < FILES * 10, "{sparse} wake-ups for {FILES} files");

    // Idle: after its last file, neither thread of the link wakes. The
    // receiver's read times out every quarter of the response timeout
    // (7.5 s by default), beyond this second.
    std::thread::sleep(Duration::from_millis(300));
    let (sender, receiver) = (switches("pyme-link-0"), switches("pyme-recv-0"));
    std::thread::sleep(Duration::from_secs(1));
    let idle_sender = switches("pyme-link-0") - sender;
    let idle_receiver = switches("pyme-recv-0") - receiver;
    eprintln!("wake-ups in 1 s of idleness: sender {idle_sender}, receiver {idle_receiver}");
    assert_eq!((idle_sender, idle_receiver), (0, 0));
    let stats = streamer.close();
    assert_eq!(stats.files_acknowledged, FILES + 1);
}
