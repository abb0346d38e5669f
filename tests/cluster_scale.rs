//! Uneven clusters and several streamers: the `least-loaded` distribution sends
//! most files to the fast servers and loses nothing, also when a server dies
//! and comes back; two streamers share one cluster without losing anything.
//!
//! The slow server is `pyme-stream serve --store-rate` (a slow disk), on
//! loopback; one test does the same through real links in network namespaces
//! (`common/cluster_sim.rs`, root only). Nothing here is timed: a slow server
//! is made so much slower than the rest that the assertions hold on a loaded
//! machine, and throughput is measured by `benches/cluster_sim.sh` instead.

#[cfg(target_os = "linux")] // ip netns, tc, libc
#[path = "common/cluster_sim.rs"]
mod cluster_sim;
mod common;

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;
#[cfg(target_os = "linux")]
use std::time::Instant;

#[cfg(target_os = "linux")]
use cluster_sim::{LinkSpec, SimCluster};
use common::ServeProcess;
use pyme_streaming::{BuiltinDistribution, OutcomeResult, Stats, Streamer, StreamerOptions};

const KIB: usize = 1024;

/// Outcomes per name: (server, acknowledged).
type Seen = Arc<Mutex<HashMap<String, Vec<(usize, bool)>>>>;

fn recording(options: StreamerOptions) -> (StreamerOptions, Seen) {
    let seen: Seen = Arc::default();
    let sink = Arc::clone(&seen);
    let options = options.on_complete(move |outcome| {
        let acknowledged = matches!(outcome.result, OutcomeResult::Acknowledged { .. });
        sink.lock()
            .unwrap()
            .entry(outcome.name.to_owned())
            .or_default()
            .push((outcome.server, acknowledged));
    });
    (options, seen)
}

fn least_loaded() -> StreamerOptions {
    StreamerOptions::new().shared_distribution(BuiltinDistribution::LeastLoaded.into_distribution())
}

/// Every file acknowledged exactly once; returns how many each server acknowledged.
fn acknowledged_once_each(
    seen: &Seen,
    stats: &Stats,
    expected: usize,
    servers: usize,
) -> Vec<usize> {
    assert_eq!(stats.files_acknowledged as usize, expected, "{stats:?}");
    assert_eq!(stats.files_failed, 0, "{stats:?}");
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), expected, "files with an outcome");
    let mut per_server = vec![0; servers];
    for (name, outcomes) in seen.iter() {
        assert_eq!(outcomes.len(), 1, "{name} has {outcomes:?}");
        assert!(outcomes[0].1, "{name} failed");
        per_server[outcomes[0].0] += 1;
    }
    per_server
}

fn names_under(root: &Path) -> HashSet<String> {
    fn walk(root: &Path, dir: &Path, names: &mut HashSet<String>) {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(root, &path, names);
            } else if !entry.file_name().to_string_lossy().starts_with('.') {
                let name = path.strip_prefix(root).unwrap().to_string_lossy();
                names.insert(name.into_owned());
            }
        }
    }
    let mut names = HashSet::new();
    walk(root, root, &mut names);
    names
}

fn body(i: usize, len: usize) -> Vec<u8> {
    let line = format!("{i}\n");
    line.bytes().cycle().take(len).collect()
}

/// Server 3 stores at 0.5 MB/s (131 ms per 64 KiB file), the others as fast as
/// loopback goes. Round-robin would give it a quarter of the files (and hold
/// the producer to its pace); least-loaded gives it few, because the files it
/// holds keep its load above the others'.
#[test]
fn least_loaded_sends_most_files_to_the_fast_servers_and_loses_nothing() {
    let roots: Vec<tempfile::TempDir> = (0..4).map(|_| tempfile::tempdir().unwrap()).collect();
    let servers: Vec<ServeProcess> = roots
        .iter()
        .enumerate()
        .map(|(i, root)| {
            let slow: &[&str] = if i == 3 {
                &["--store-rate", "0.5"]
            } else {
                &[]
            };
            ServeProcess::start(root.path(), 0, slow)
        })
        .collect();
    let (options, seen) = recording(
        least_loaded()
            .servers(servers.iter().map(|s| s.address.clone()))
            .queue_limits(4, 1 << 20),
    );
    let streamer = Streamer::new(options).unwrap();
    let total = 400;
    for i in 0..total {
        streamer
            .put(&format!("ll/f{i:04}"), &body(i, 64 * KIB), Some(i as i64))
            .unwrap();
    }
    let stats = streamer.close();
    let per_server = acknowledged_once_each(&seen, &stats, total, 4);
    eprintln!("files per server (server 3 slow): {per_server:?}");
    let slowest_fast = per_server[..3].iter().copied().min().unwrap();
    assert!(
        per_server[3] < total / 8 && per_server[3] * 2 < slowest_fast,
        "the slow server got {} of {total} files (round-robin: {}); per server {per_server:?}",
        per_server[3],
        total / 4
    );
    // On disk: every file once, whole and right.
    let mut all = HashSet::new();
    for (i, root) in roots.iter().enumerate() {
        let names = names_under(root.path());
        assert_eq!(names.len(), per_server[i], "server {i}");
        for name in names {
            let index: usize = name.trim_start_matches("ll/f").parse().unwrap();
            assert_eq!(
                std::fs::read(root.path().join(&name)).unwrap(),
                body(index, 64 * KIB)
            );
            assert!(all.insert(name));
        }
    }
    assert_eq!(all.len(), total);
}

/// A uniform idle cluster stays round-robin: frame i on server i % n.
#[test]
fn least_loaded_on_an_idle_uniform_cluster_is_round_robin() {
    let roots: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let servers: Vec<ServeProcess> = roots
        .iter()
        .map(|root| ServeProcess::start(root.path(), 0, &[]))
        .collect();
    let (options, seen) = recording(
        least_loaded()
            .servers(servers.iter().map(|s| s.address.clone()))
            .round_robin_start(Some(0)),
    );
    let streamer = Streamer::new(options).unwrap();
    for i in 0..30 {
        streamer.put(&format!("rr/f{i:02}"), b"x", Some(i)).unwrap();
        // Idle between files: every load is back to zero.
        streamer.flush(Some(Duration::from_secs(30))).unwrap();
    }
    let stats = streamer.close();
    acknowledged_once_each(&seen, &stats, 30, 3);
    for (name, outcomes) in seen.lock().unwrap().iter() {
        let index: usize = name.trim_start_matches("rr/f").parse().unwrap();
        assert_eq!(outcomes[0].0, index % 3, "{name}");
    }
}

/// Server 0 stalls with files in flight, is killed, and restarts on its port:
/// its files move to the live servers, it is used again once back, and every
/// file lands once.
#[cfg(unix)] // SIGSTOP
#[test]
fn least_loaded_with_a_server_killed_and_restarted_loses_nothing() {
    let roots: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut servers: Vec<ServeProcess> = roots
        .iter()
        .map(|root| ServeProcess::start(root.path(), 0, &[]))
        .collect();
    let port = servers[0].port();
    let (options, seen) = recording(
        least_loaded()
            .servers(servers.iter().map(|s| s.address.clone()))
            .response_timeout(Duration::from_secs(10))
            .reconnect_backoff(Duration::from_millis(20), Duration::from_millis(100)),
    );
    let streamer = Streamer::new(options).unwrap();
    let total = 3000;
    let data = vec![0x5Au8; 64 * KIB];
    let mut victim = Some(servers.remove(0));
    let mut killer = None;
    for i in 0..total {
        if i == total / 3 {
            let mut server = victim.take().unwrap();
            server.pause();
            killer = Some(std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(100));
                server.kill();
            }));
        }
        if i == 2 * total / 3 {
            killer.take().unwrap().join().unwrap();
            servers.push(ServeProcess::start(roots[0].path(), port, &[]));
            let deadline = Instant::now() + Duration::from_secs(20);
            while streamer.stats().reconnects == 0 && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        streamer
            .put(&format!("kill/f{i:05}"), &data, Some(i as i64))
            .unwrap();
    }
    let stats = streamer.close();
    acknowledged_once_each(&seen, &stats, total, 3);
    assert!(stats.reconnects >= 1, "{stats:?}");
    let after_restart = seen
        .lock()
        .unwrap()
        .iter()
        .filter(|(name, outcomes)| {
            let index: usize = name.trim_start_matches("kill/f").parse().unwrap();
            index >= 2 * total / 3 && outcomes[0].0 == 0
        })
        .count();
    assert!(after_restart > 0, "the restarted server got no file");
    let mut all = HashSet::new();
    for root in &roots {
        all.extend(names_under(root.path()));
    }
    assert_eq!(all.len(), total);
}

/// Two streamers (two cameras) into the same servers at once, from two
/// threads: each file of each lands once; neither streamer starves (each
/// gets files onto every server).
#[test]
fn two_streamers_into_one_cluster_both_lose_nothing() {
    let roots: Vec<tempfile::TempDir> = (0..4).map(|_| tempfile::tempdir().unwrap()).collect();
    let servers: Vec<ServeProcess> = roots
        .iter()
        .map(|root| ServeProcess::start(root.path(), 0, &[]))
        .collect();
    let addresses: Vec<String> = servers.iter().map(|s| s.address.clone()).collect();
    let total = 500;
    let cameras: Vec<_> = ["cam0", "cam1"]
        .into_iter()
        .map(|camera| {
            let addresses = addresses.clone();
            std::thread::spawn(move || {
                let (options, seen) = recording(least_loaded().servers(addresses));
                let streamer = Streamer::new(options).unwrap();
                for i in 0..total {
                    let name = format!("{camera}/f{i:04}");
                    streamer
                        .put(&name, &body(i, 64 * KIB), Some(i as i64))
                        .unwrap();
                }
                let stats = streamer.close();
                acknowledged_once_each(&seen, &stats, total, 4)
            })
        })
        .collect();
    for camera in cameras {
        let per_server = camera.join().unwrap();
        assert!(per_server.iter().all(|&files| files > 0), "{per_server:?}");
    }
    let mut all = HashSet::new();
    for root in &roots {
        all.extend(names_under(root.path()));
    }
    assert_eq!(all.len(), 2 * total);
}

/// The CLI takes the name: `bench --distribution least-loaded` and `put`.
#[test]
fn the_cli_takes_least_loaded_by_name() {
    let roots: Vec<tempfile::TempDir> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let servers: Vec<ServeProcess> = roots
        .iter()
        .map(|root| ServeProcess::start(root.path(), 0, &[]))
        .collect();
    let list = format!("{},{}", servers[0].address, servers[1].address);
    let output = common::run(
        std::process::Command::new(env!("CARGO_BIN_EXE_pyme-stream"))
            .args([
                "bench",
                "--servers",
                &list,
                "--distribution",
                "least-loaded",
            ])
            .args(["--count", "40", "--size", "10000", "--json"]),
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let report: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(report["acknowledged"], 40);
    let stored: usize = roots.iter().map(|r| names_under(r.path()).len()).sum();
    assert_eq!(stored, 40);
    let refused = std::process::Command::new(env!("CARGO_BIN_EXE_pyme-stream"))
        .args(["bench", "--servers", &list, "--distribution", "least-busy"])
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("least-loaded"),
        "the error lists the names: {refused:?}"
    );
}

/// C hosts choose it with `STREAMER_DISTRIBUTION_LEAST_LOADED`.
#[test]
fn c_hosts_choose_least_loaded_by_kind() {
    use pyme_streaming::ffi::options::*;
    let mut options = std::ptr::null_mut();
    // SAFETY: the documented calling sequence of the C API.
    unsafe {
        assert_eq!(streamer_options_new(&mut options), 0);
        assert_eq!(
            streamer_options_set_distribution_kind(
                options,
                PymeStreamerDistribution::STREAMER_DISTRIBUTION_LEAST_LOADED as i32
            ),
            0
        );
        assert_ne!(streamer_options_set_distribution_kind(options, 99), 0);
        streamer_options_free(options);
    }
}

/// Through real links: three at 400 Mbit/s and one at 10 Mbit/s, each server in
/// a namespace of its own (root only; skipped, loudly, elsewhere). The slow
/// link gets few files, nothing is lost, and a server killed and restarted on
/// its link loses nothing either.
#[cfg(target_os = "linux")] // network namespaces
#[test]
fn through_namespaced_links_a_slow_link_gets_few_files_and_nothing_is_lost() {
    if let Some(why) = SimCluster::unavailable() {
        common::skip::skip(
            "through_namespaced_links_a_slow_link_gets_few_files_and_nothing_is_lost",
            &format!("network namespaces unavailable ({why})"),
        );
        return;
    }
    let mut links = vec![LinkSpec::rate("400mbit"); 3];
    links.push(LinkSpec::rate("10mbit"));
    let mut cluster = SimCluster::start(&links).expect("the simulated cluster starts");
    let total = 120;
    common::run(
        cluster
            .client_command(env!("CARGO_BIN_EXE_pyme-stream"))
            .args(["bench", "--servers", &cluster.addresses.join(",")])
            .args(["--distribution", "least-loaded", "--prefix", "a"])
            .args(["--count", &total.to_string(), "--size", "262144"])
            .args(["--queue-files", "2", "--json"]),
    );
    let per_server: Vec<usize> = (0..4).map(|i| cluster.stored(i).len()).collect();
    eprintln!("files per server (link 3 at 10 Mbit/s): {per_server:?}");
    assert_eq!(per_server.iter().sum::<usize>(), total, "{per_server:?}");
    assert!(
        per_server[3] < total / 8,
        "the 10 Mbit/s link got {} of {total} files: {per_server:?}",
        per_server[3]
    );

    // Server 1 killed while a bench runs (once it has stored a few files),
    // restarted on its address: the bench still lands every file.
    let count = 400;
    let running = cluster
        .client_command(env!("CARGO_BIN_EXE_pyme-stream"))
        .args(["bench", "--servers", &cluster.addresses.join(",")])
        .args(["--distribution", "least-loaded", "--prefix", "b"])
        .args(["--count", &count.to_string(), "--size", "262144", "--json"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while cluster.stored_in(1, "b").len() < 5 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(cluster.stored_in(1, "b").len() >= 5, "server 1 got no file");
    cluster.kill_server(1);
    cluster.start_server(1).unwrap();
    let output = running.wait_with_output().unwrap();
    assert!(output.status.success(), "{output:?}");
    assert_eq!(
        cluster.distinct_in("b").len(),
        count,
        "distinct files stored"
    );
}

/// A server that accepts connections and never reads from them.
fn never_reading_server() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for socket in listener.incoming() {
            let Ok(socket) = socket else { return };
            held.push(socket);
        }
    });
    address
}

/// With the default distribution (round-robin), a put never waits on a
/// server that is full and silent while others have room: servers that never
/// answer, never read, or answer one file every 2 s are passed over once
/// full. The put timeout (3 s) is half the response timeout (6 s): a put that
/// waited on a silent server fails with `QueueFull` instead of waiting for
/// the timeout to move it. Every file still ends once, acknowledged (the
/// silent servers' files move when the response timeout fails them).
#[test]
fn round_robin_passes_over_full_servers_that_do_not_answer() {
    let roots: Vec<tempfile::TempDir> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let good: Vec<ServeProcess> = roots
        .iter()
        .map(|root| ServeProcess::start(root.path(), 0, &[]))
        .collect();
    let silent = common::FakeServer::start(|_, _| common::Action::Silent);
    let slow = common::FakeServer::start(|_, _| common::Action::SlowOk(2000));
    let addresses = [
        good[0].address.clone(),
        silent.address.clone(),
        never_reading_server(),
        good[1].address.clone(),
        slow.address.clone(),
    ];
    let (options, seen) = recording(
        StreamerOptions::new()
            .servers(addresses)
            .queue_limits(4, 64 << 20)
            .response_timeout(Duration::from_secs(6))
            .put_timeout(Some(Duration::from_secs(3))),
    );
    let streamer = Streamer::new(options).unwrap();
    let total = 400;
    let data = vec![7u8; 64 * KIB];
    let mut longest = Duration::ZERO;
    for i in 0..total {
        let started = std::time::Instant::now();
        let put = streamer.put(&format!("pass/f{i:04}"), &data, Some(i as i64));
        longest = longest.max(started.elapsed());
        put.unwrap_or_else(|error| panic!("put {i} waited on a silent server: {error}"));
    }
    eprintln!("longest put with silent servers: {longest:?}");
    let stats = streamer.close();
    assert_eq!(stats.dropped, 0, "{stats:?}");
    let per_server = acknowledged_once_each(&seen, &stats, total, 5);
    eprintln!("files per server (1, 2 silent, 4 slow): {per_server:?}");
    assert_eq!(per_server[1] + per_server[2], 0, "{per_server:?}");
    let mut all = HashSet::new();
    for root in &roots {
        all.extend(names_under(root.path()));
    }
    let on_slow = per_server[4];
    assert_eq!(all.len() + on_slow, total);
}

/// How the silent quarter of the 32-server cluster goes silent.
#[cfg(target_os = "linux")]
#[derive(Debug, Clone, Copy)]
enum Silence {
    /// Every packet into or out of the namespace dropped (nftables): no
    /// reset, no close; connection attempts go unanswered too.
    Dropped,
    /// SIGSTOP: the kernel still accepts connections and takes bytes until
    /// its buffers are full, nothing answers.
    Stopped,
}

/// Outcomes per name: (server, acknowledged, when).
#[cfg(target_os = "linux")]
type Arrivals = Arc<Mutex<HashMap<String, Vec<(usize, bool, Instant)>>>>;

/// What one run of [`silent_quarter`] measured.
#[cfg(target_os = "linux")]
struct SilentRun {
    longest_put: Duration,
    longest_put_after_silence: Duration,
    /// The longest time from a put's return to its file's outcome.
    longest_outcome: Duration,
    per_server: Vec<usize>,
}

/// 32 servers in namespaces of their own, default distribution
/// (round-robin), 3 s response timeout, queues of 32 files: 12000 files of
/// 64 KiB, servers 0, 4, 8, ... 28 made silent after the first 2000. Asserts
/// that nothing is dropped or refused and every file has exactly one outcome,
/// acknowledged, and that the silent servers got none after the silence
/// (those before it moved); returns the times.
#[cfg(target_os = "linux")]
fn silent_quarter(test: &str, silence: Silence) -> Option<SilentRun> {
    if let Some(why) = SimCluster::unavailable() {
        common::skip::skip(test, &format!("network namespaces unavailable ({why})"));
        return None;
    }
    if matches!(silence, Silence::Dropped)
        && !common::skip::require_tool(test, "nft", &["--version"])
    {
        return None;
    }
    const SERVERS: usize = 32;
    const TOTAL: usize = 12000;
    const SILENT_AFTER: usize = 2000;
    let cluster = SimCluster::start(&vec![LinkSpec::rate(""); SERVERS])
        .expect("the simulated cluster starts");
    let silent: Vec<usize> = (0..SERVERS).step_by(4).collect();
    let response_timeout = Duration::from_secs(3);
    let arrivals: Arrivals = Arc::default();
    let sink = Arc::clone(&arrivals);
    let options = StreamerOptions::new()
        .servers(cluster.addresses.clone())
        .queue_limits(32, 256 << 20)
        .response_timeout(response_timeout)
        .on_complete(move |outcome| {
            let acknowledged = matches!(outcome.result, OutcomeResult::Acknowledged { .. });
            sink.lock()
                .unwrap()
                .entry(outcome.name.to_owned())
                .or_default()
                .push((outcome.server, acknowledged, Instant::now()));
        });
    let (put_at, stats, longest_put, longest_after) = cluster.in_client_ns(|| {
        let streamer = Streamer::new(options).unwrap();
        let data = vec![0x33u8; 64 * KIB];
        let mut put_at = Vec::with_capacity(TOTAL);
        let (mut longest, mut longest_after) = (Duration::ZERO, Duration::ZERO);
        for i in 0..TOTAL {
            if i == SILENT_AFTER {
                for &s in &silent {
                    match silence {
                        Silence::Dropped => cluster.cut_link(s).unwrap(),
                        Silence::Stopped => cluster.stop_server(s),
                    }
                }
            }
            let started = Instant::now();
            streamer
                .put(&format!("q/f{i:05}"), &data, Some(i as i64))
                .unwrap_or_else(|error| panic!("put {i}: {error}"));
            let returned = Instant::now();
            let took = returned - started;
            longest = longest.max(took);
            if i >= SILENT_AFTER {
                longest_after = longest_after.max(took);
            }
            put_at.push(returned);
        }
        (put_at, streamer.close(), longest, longest_after)
    });
    assert_eq!(stats.dropped, 0, "{stats:?}");
    assert_eq!(stats.files_acknowledged as usize, TOTAL, "{stats:?}");
    assert_eq!(stats.files_failed, 0, "{stats:?}");
    let arrivals = arrivals.lock().unwrap();
    assert_eq!(arrivals.len(), TOTAL, "files with an outcome");
    let mut per_server = vec![0; SERVERS];
    let mut longest_outcome = Duration::ZERO;
    for (name, outcomes) in arrivals.iter() {
        assert_eq!(outcomes.len(), 1, "{name}: {outcomes:?}");
        let (server, acknowledged, at) = outcomes[0];
        assert!(acknowledged, "{name} failed");
        let index: usize = name.trim_start_matches("q/f").parse().unwrap();
        per_server[server] += 1;
        longest_outcome = longest_outcome.max(at.saturating_duration_since(put_at[index]));
        if index >= SILENT_AFTER {
            assert!(
                !silent.contains(&server),
                "{name} acknowledged by silent {server}"
            );
        }
    }
    Some(SilentRun {
        longest_put,
        longest_put_after_silence: longest_after,
        longest_outcome,
        per_server,
    })
}

/// Issue 27, item 1, dropped packets: no put waits on a silent server. The
/// 100 ms target for the longest put is measured by `benches/cluster_sim.sh
/// silent` (a timing target is a benchmark's); here a put must not come near
/// the response timeout (3 s), which is what a put waiting on a silent
/// server takes: under 1 s is twenty times the pass-over time (50 ms).
#[cfg(target_os = "linux")]
#[test]
fn thirty_two_servers_a_quarter_dropping_every_packet_no_put_waits_on_them() {
    let test = "thirty_two_servers_a_quarter_dropping_every_packet_no_put_waits_on_them";
    let Some(run) = silent_quarter(test, Silence::Dropped) else {
        return;
    };
    eprintln!(
        "dropped: longest put {:?} ({:?} after the silence), longest put-to-outcome {:?}; files per server {:?}",
        run.longest_put, run.longest_put_after_silence, run.longest_outcome, run.per_server
    );
    assert!(
        run.longest_put_after_silence < Duration::from_secs(1),
        "{:?}",
        run.longest_put_after_silence
    );
}

/// Issue 27, item 1, stopped servers (SIGSTOP, their kernels still accept
/// connections): no put waits on them, and every file has its outcome
/// within two response timeouts of its put (a file on a stopped server moves
/// 1 to 1.25 timeouts after the silence began, to a server that answers,
/// never to another stopped one, nor to a stopped one reconnected). The
/// bound is the acceptance criterion; one response timeout (3 s) is
/// the floor, and the part above it measured 1.26 s (4.26 s in all) against
/// the 3 s the bound leaves: more than twice the margin. A file moved a
/// second time to a silent server would take 6 s or more.
#[cfg(target_os = "linux")]
#[test]
fn thirty_two_servers_a_quarter_stopped_every_file_ends_within_two_response_timeouts() {
    let test = "thirty_two_servers_a_quarter_stopped_every_file_ends_within_two_response_timeouts";
    let Some(run) = silent_quarter(test, Silence::Stopped) else {
        return;
    };
    eprintln!(
        "stopped: longest put {:?} ({:?} after the silence), longest put-to-outcome {:?}; files per server {:?}",
        run.longest_put, run.longest_put_after_silence, run.longest_outcome, run.per_server
    );
    assert!(
        run.longest_put_after_silence < Duration::from_secs(1),
        "{:?}",
        run.longest_put_after_silence
    );
    assert!(
        run.longest_outcome < Duration::from_secs(6),
        "{:?}",
        run.longest_outcome
    );
}

/// C hosts set the round-robin start (`streamer_options_set_round_robin_start`):
/// with 1, frame 0 lands on the second server; with -1 (the default) a
/// random start, which is accepted.
#[test]
fn c_hosts_set_the_round_robin_start() {
    use pyme_streaming::ffi::options::*;
    use pyme_streaming::ffi::streamer::*;
    let roots: Vec<tempfile::TempDir> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let servers: Vec<ServeProcess> = roots
        .iter()
        .map(|root| ServeProcess::start(root.path(), 0, &[]))
        .collect();
    for (start, server) in [(1i64, 1usize), (0, 0)] {
        let mut options = std::ptr::null_mut();
        let mut streamer = std::ptr::null_mut();
        let name = std::ffi::CString::new(format!("rr{start}/f0")).unwrap();
        // SAFETY: the documented calling sequence of the C API.
        unsafe {
            assert_eq!(streamer_options_new(&mut options), 0);
            for s in &servers {
                let host = std::ffi::CString::new("127.0.0.1").unwrap();
                assert_eq!(
                    streamer_options_add_server(options, host.as_ptr(), s.port()),
                    0
                );
            }
            assert_eq!(streamer_options_set_round_robin_start(options, -1), 0);
            assert_eq!(streamer_options_set_round_robin_start(options, start), 0);
            assert_eq!(streamer_new(options, &mut streamer), 0);
            assert_eq!(
                streamer_put(streamer, name.as_ptr(), b"x".as_ptr(), 1, 0),
                0
            );
            assert_eq!(streamer_close(streamer), 0);
            streamer_options_free(options);
        }
        let names = names_under(roots[server].path());
        assert!(names.contains(&format!("rr{start}/f0")), "{names:?}");
    }
}

/// A flapping server: its answers stall for 300 ms, flow for 300 ms, and so
/// on, shorter than the response timeout (1 s), so it is never declared
/// down, only passed over while full and silent. Round-robin, queues of 4
/// files: nothing is dropped or lost, every file ends once, acknowledged.
#[test]
fn a_flapping_server_loses_nothing_and_drops_nothing() {
    use common::proxy::{Direction, FaultProxy};
    let roots: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let servers: Vec<ServeProcess> = roots
        .iter()
        .map(|root| ServeProcess::start(root.path(), 0, &[]))
        .collect();
    let proxy = Arc::new(FaultProxy::start(&servers[0].address));
    let (options, seen) = recording(
        StreamerOptions::new()
            .servers([
                proxy.address(),
                servers[1].address.clone(),
                servers[2].address.clone(),
            ])
            .queue_limits(4, 64 << 20)
            .response_timeout(Duration::from_secs(1)),
    );
    let streamer = Streamer::new(options).unwrap();
    let flapping = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let flapper = {
        let (proxy, flapping) = (Arc::clone(&proxy), Arc::clone(&flapping));
        std::thread::spawn(move || {
            while flapping.load(std::sync::atomic::Ordering::SeqCst) {
                proxy.stall(Direction::Answers);
                std::thread::sleep(Duration::from_millis(300));
                proxy.release(Direction::Answers);
                std::thread::sleep(Duration::from_millis(300));
            }
        })
    };
    let total = 1500;
    for i in 0..total {
        streamer
            .put(&format!("flap/f{i:04}"), &body(i, 8 * KIB), Some(i as i64))
            .unwrap();
    }
    flapping.store(false, std::sync::atomic::Ordering::SeqCst);
    flapper.join().unwrap();
    let stats = streamer.close();
    assert_eq!(stats.dropped, 0, "{stats:?}");
    let per_server = acknowledged_once_each(&seen, &stats, total, 3);
    eprintln!("files per server (0 flapping): {per_server:?}");
    let mut all = HashSet::new();
    for root in &roots {
        all.extend(names_under(root.path()));
    }
    assert_eq!(all.len(), total);
}

/// Every server silent with a full queue (each accepting connections and
/// never answering), and a spill folder: a put spills at once instead of
/// waiting (the put timeout, 1 s, is half the response timeout: a put that
/// waited would fail with `QueueFull`). Files the response timeout takes off
/// a silent server are spilled too, not moved to the other silent one. A
/// bounded close ends with every file in the folder, one outcome each.
#[test]
fn with_every_server_full_and_silent_puts_spill_at_once() {
    let silent: Vec<common::FakeServer> = (0..2)
        .map(|_| common::FakeServer::start(|_, _| common::Action::Silent))
        .collect();
    let spill = tempfile::tempdir().unwrap();
    let (options, seen) = recording(
        StreamerOptions::new()
            .servers(silent.iter().map(|s| s.address.clone()))
            .queue_limits(2, 64 << 20)
            .spill_dir(spill.path())
            .connect_timeout(Duration::from_millis(500))
            .response_timeout(Duration::from_secs(2))
            .put_timeout(Some(Duration::from_secs(1))),
    );
    let streamer = Streamer::new(options).unwrap();
    let total = 20;
    for i in 0..total {
        streamer
            .put(&format!("all/f{i:02}"), &body(i, KIB), Some(i as i64))
            .unwrap_or_else(|error| panic!("put {i} waited: {error}"));
    }
    // 4 files in the silent queues; the others spilled (the spill thread may
    // hold one, waiting for room on a server that is up).
    let spilled = streamer.stats().spilled;
    assert!(spilled >= (total - 5) as u64, "{:?}", streamer.stats());
    // The response timeout fails the silent connections: their files are
    // spilled, not moved to the other silent server.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while streamer.stats().spilled < total as u64 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    eprintln!("before close: {:?}", streamer.stats());
    let stats = match streamer.close_timeout(Duration::from_secs(1)) {
        Ok(stats) => stats,
        Err(error) => error.stats,
    };
    assert!(stats.spilled >= total as u64, "{stats:?}");
    assert_eq!(stats.dropped, 0, "{stats:?}");
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), total, "files with an outcome");
    assert!(seen
        .values()
        .all(|outcomes| outcomes.len() == 1 && !outcomes[0].1));
    assert_eq!(names_under(spill.path()).len(), total);
}

/// A caller's distribution (here a function that always picks the silent
/// server; C and Python callbacks go the same way) is passed over too: once
/// the silent server's queue is full, files go to the answering server, the
/// function is not asked again, and no put waits (put timeout 3 s, half the
/// response timeout). Least-loaded never waits on it either.
#[test]
fn a_callers_distribution_and_least_loaded_pass_over_a_full_silent_server() {
    let root = tempfile::tempdir().unwrap();
    let good = ServeProcess::start(root.path(), 0, &[]);
    let silent = common::FakeServer::start(|_, _| common::Action::Silent);
    let base = StreamerOptions::new()
        .servers([good.address.clone(), silent.address.clone()])
        .queue_limits(4, 64 << 20)
        .response_timeout(Duration::from_secs(6))
        .put_timeout(Some(Duration::from_secs(3)));
    let policies = [
        (
            "callback",
            base.clone()
                .distribution(|_: usize, _: Option<i64>, _: &str| 1),
        ),
        (
            "least-loaded",
            base.shared_distribution(BuiltinDistribution::LeastLoaded.into_distribution()),
        ),
    ];
    for (policy, options) in policies {
        let (options, seen) = recording(options);
        let streamer = Streamer::new(options).unwrap();
        let total = 100;
        for i in 0..total {
            streamer
                .put(&format!("{policy}/f{i:03}"), &body(i, KIB), Some(i as i64))
                .unwrap_or_else(|error| panic!("{policy}: put {i} waited: {error}"));
        }
        let stats = streamer.close();
        assert_eq!(stats.dropped, 0, "{policy}: {stats:?}");
        let per_server = acknowledged_once_each(&seen, &stats, total, 2);
        assert_eq!(per_server, [total, 0], "{policy}");
    }
}
