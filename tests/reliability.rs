//! Fault injection on loopback: servers killed, stalled, restarted, refusing;
//! every accepted file must end in exactly one outcome and nothing is lost
//! while a server lives.

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::recording::{failure, recording, Seen};
use common::{
    dead_address, files_under, pyme_stream, relative, Action, FakeServer, ServeProcess, TestServer,
};
use pyme_streaming::{Error, Stats, Streamer, StreamerOptions};

fn assert_one_outcome_each(seen: &Seen, stats: &Stats, expected: usize) {
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), expected, "files with an outcome");
    for (name, outcomes) in seen.iter() {
        assert_eq!(outcomes.len(), 1, "{name} has {outcomes:?}");
    }
    assert_eq!(stats.files_queued as usize, expected);
    assert_eq!(
        (stats.files_acknowledged + stats.files_failed) as usize,
        expected
    );
}

/// Names of every file under the roots but the servers' temporary ones (a file may be
/// on two servers when it landed just before its server died and was sent again elsewhere).
fn distinct_names(roots: &[&std::path::Path]) -> HashSet<String> {
    roots
        .iter()
        .flat_map(|root| {
            files_under(root)
                .into_iter()
                .map(|path| relative(root, &path))
        })
        .filter(|name| !name.rsplit('/').next().unwrap_or(name).starts_with('.'))
        .collect()
}

#[cfg(unix)] // SIGSTOP
#[test]
fn a_server_killed_mid_stream_loses_nothing() {
    let roots: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut servers: Vec<ServeProcess> = roots
        .iter()
        .map(|r| ServeProcess::start(r.path(), 0, &[]))
        .collect();
    let (options, seen) = recording(
        StreamerOptions::new()
            .servers(servers.iter().map(|s| s.address.clone()))
            .response_timeout(Duration::from_secs(10)),
    );
    let streamer = Streamer::new(options).unwrap();
    // 20,000 files of 16 KiB: 320 MB on disk, enough to keep files in flight
    // through the kill (64 KiB files wrote 1.3 GB into the temporary folder).
    let data = vec![0x5Au8; 16 * 1024];
    let total = 20_000;
    let mut victim = Some(servers.remove(1));
    let mut killer = None;
    for i in 0..total {
        // Stopped, then killed by another thread while files keep coming, so
        // that files are in flight on its connection when it dies (killed at
        // once between two puts, it may have answered everything it got).
        if i == total / 3 {
            let mut server = victim.take().unwrap();
            server.pause();
            killer = Some(std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(100));
                server.kill();
            }));
        }
        streamer
            .put(&format!("kill/f{i:05}"), &data, Some(i as i64))
            .unwrap();
    }
    killer.unwrap().join().unwrap();
    let stats = streamer.close();
    assert_one_outcome_each(&seen, &stats, total);
    assert_eq!(stats.files_acknowledged as usize, total, "{stats:?}");
    assert!(stats.rerouted > 0, "{stats:?}");
    let roots: Vec<&std::path::Path> = roots.iter().map(|r| r.path()).collect();
    assert_eq!(distinct_names(&roots).len(), total);
    // Every file is whole wherever it is.
    for root in &roots {
        for name in distinct_names(&[root]) {
            assert_eq!(
                std::fs::metadata(root.join(&name)).unwrap().len(),
                data.len() as u64,
                "{name}"
            );
        }
    }
}

#[test]
fn a_silent_server_costs_one_response_timeout_and_nothing_else() {
    let good: Vec<TestServer> = (0..2).map(|_| TestServer::start()).collect();
    let silent = FakeServer::start(|_, _| Action::Silent);
    // Long enough that the good servers answer within it on a loaded machine.
    // (This test failed now and then, at 700 ms and once at 2 s, with the
    // silent server's files failed: the good links' reads, begun when their
    // last answer came, timed out just after the rerouted files were sent, so
    // no live server was left. The silence now counts from when an answer is
    // due: see idle_time_before_a_file_does_not_count_against_its_answer.)
    let timeout = Duration::from_secs(2);
    let (options, seen) = recording(
        StreamerOptions::new()
            .server(good[0].address())
            .server(silent.address.clone())
            .server(good[1].address())
            .response_timeout(timeout)
            .reconnect_backoff(Duration::from_secs(30), Duration::from_secs(30)),
    );
    let streamer = Streamer::new(options).unwrap();
    let started = Instant::now();
    for i in 0..300 {
        streamer
            .put(&format!("stall/f{i:03}"), &[7u8; 2000], Some(i))
            .unwrap();
    }
    let stats = streamer.close();
    let elapsed = started.elapsed();
    assert_one_outcome_each(&seen, &stats, 300);
    assert_eq!(stats.files_acknowledged, 300);
    // Distinct names: on a loaded machine a good server can also miss the short
    // timeout, and a file it had stored is then sent again to the other one.
    let roots = [good[0].root.path(), good[1].root.path()];
    assert_eq!(distinct_names(&roots).len(), 300);
    // Generous margin: the point is that close returns, not how fast.
    assert!(elapsed < timeout + Duration::from_secs(20), "{elapsed:?}");
}

#[test]
fn idle_time_before_a_file_does_not_count_against_its_answer() {
    // The receiver's read begins after the first answer. When the second file
    // is sent, that read has run for most of the response timeout; the server
    // must still get the whole timeout for the second answer. (Before the
    // silence was measured from when an answer fell due, the read timed out
    // 300 ms after the file was sent and the file failed.)
    let server = FakeServer::start(|path, _| {
        if path.contains("late") {
            Action::SlowOk(800)
        } else {
            Action::Answer(200)
        }
    });
    let (options, seen) = recording(
        StreamerOptions::new()
            .server(server.address.clone())
            .response_timeout(Duration::from_secs(2))
            .reconnect_backoff(Duration::from_secs(30), Duration::from_secs(30)),
    );
    let streamer = Streamer::new(options).unwrap();
    streamer.put("idle/early", b"first", Some(0)).unwrap();
    streamer.flush(Some(Duration::from_secs(30))).unwrap();
    std::thread::sleep(Duration::from_millis(1700));
    streamer.put("idle/late", b"second", Some(1)).unwrap();
    let stats = streamer.close();
    assert_one_outcome_each(&seen, &stats, 2);
    assert_eq!(stats.files_acknowledged, 2, "{:?}", seen.lock().unwrap());
    assert_eq!(stats.reconnects, 0, "{stats:?}");
}

#[test]
fn an_answer_that_stalls_halfway_is_read_whole() {
    // The stall spans two read timeouts (a quarter of the response timeout
    // each) inside the answer's body: the reader goes on where it stopped.
    let server = FakeServer::start(|_, _| Action::StallMidAnswer(1200));
    let (options, seen) = recording(
        StreamerOptions::new()
            .server(server.address.clone())
            .response_timeout(Duration::from_secs(2))
            .max_retries(0),
    );
    let streamer = Streamer::new(options).unwrap();
    streamer.put("stall/one", b"data", Some(0)).unwrap();
    let stats = streamer.close();
    assert_one_outcome_each(&seen, &stats, 1);
    let seen = seen.lock().unwrap();
    let detail = failure(&seen["stall/one"][0]);
    assert!(
        detail.contains("507") && detail.contains("Full: disk full"),
        "{detail}"
    );
    assert_eq!(stats.reconnects, 0, "{stats:?}");
}

#[test]
fn a_restarted_server_is_reconnected_and_used_again() {
    let roots: Vec<tempfile::TempDir> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut first = ServeProcess::start(roots[0].path(), 0, &[]);
    let second = ServeProcess::start(roots[1].path(), 0, &[]);
    let port = first.port();
    let streamer = Streamer::new(
        StreamerOptions::new()
            .server(first.address.clone())
            .server(second.address.clone())
            .reconnect_backoff(Duration::from_millis(20), Duration::from_millis(100)),
    )
    .unwrap();
    for i in 0..100 {
        streamer
            .put(&format!("r/a{i:03}"), b"before", Some(i))
            .unwrap();
    }
    streamer.flush(Some(Duration::from_secs(30))).unwrap();
    first.kill();
    // Files put while it is down go to the live server.
    for i in 0..100 {
        streamer
            .put(&format!("r/b{i:03}"), b"while down", Some(i))
            .unwrap();
    }
    streamer.flush(Some(Duration::from_secs(30))).unwrap();
    let _restarted = ServeProcess::start(roots[0].path(), port, &[]);
    // Files put from now on reach the restarted server once its link is up again.
    // Nothing shows that moment (a reconnection is counted just before the link
    // takes files: 100 puts made once it was counted all went to the other server
    // in 1 of 5 runs with two busy loops beside), so files are put one at a time
    // until one lands there.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut after = 0;
    let landed =
        |after: i64| (0..after).any(|i| roots[0].path().join(format!("r/c{i:03}")).exists());
    while !landed(after) {
        assert!(
            Instant::now() < deadline,
            "the restarted server got none of {after} files in 20 s"
        );
        streamer
            .put(&format!("r/c{after:03}"), b"after", Some(after))
            .unwrap();
        streamer.flush(Some(Duration::from_secs(30))).unwrap();
        after += 1;
    }
    let stats = streamer.close();
    assert!(stats.reconnects >= 1, "{stats:?}");
    assert_eq!(stats.files_acknowledged, 200 + after as u64, "{stats:?}");
}

#[test]
fn server_errors_5xx_are_retried_then_failed_and_4xx_fail_at_once() {
    let attempts: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
    let counter = Arc::clone(&attempts);
    let server = FakeServer::start(move |name, _| {
        let mut attempts = counter.lock().unwrap();
        let n = attempts.entry(name.to_owned()).or_default();
        *n += 1;
        match name {
            n2 if n2.starts_with("flaky") && *n == 1 => Action::Answer(503),
            n2 if n2.starts_with("broken") => Action::Answer(500),
            n2 if n2.starts_with("forbidden") => Action::Answer(403),
            _ => Action::Answer(200),
        }
    });
    let (options, seen) = recording(
        StreamerOptions::new()
            .server(server.address.clone())
            .max_retries(2),
    );
    let streamer = Streamer::new(options).unwrap();
    for name in ["ok1", "flaky1", "broken1", "forbidden1", "ok2"] {
        streamer.put(name, b"x", None).unwrap();
    }
    let stats = streamer.close();
    assert_one_outcome_each(&seen, &stats, 5);
    let seen = seen.lock().unwrap();
    assert!(seen["ok1"][0].1.is_ok() && seen["ok2"][0].1.is_ok() && seen["flaky1"][0].1.is_ok());
    assert!(failure(&seen["broken1"][0]).contains("500"));
    assert!(failure(&seen["forbidden1"][0]).contains("403"));
    let attempts = attempts.lock().unwrap();
    assert_eq!(attempts["broken1"], 3, "one try and two retries");
    assert_eq!(attempts["forbidden1"], 1);
    assert_eq!(attempts["flaky1"], 2);
    assert_eq!(stats.retries, 3);
}

#[test]
fn a_connection_closed_mid_answer_moves_its_files_to_a_live_server() {
    let good = TestServer::start();
    let answered = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&answered);
    let breaking = FakeServer::start(move |_, connection| {
        if connection == 0 && count.fetch_add(1, Ordering::SeqCst) == 20 {
            Action::CloseMidAnswer
        } else {
            Action::Answer(200)
        }
    });
    let (options, seen) = recording(
        StreamerOptions::new()
            .server(breaking.address.clone())
            .server(good.address())
            .reconnect_backoff(Duration::from_millis(10), Duration::from_millis(50)),
    );
    let streamer = Streamer::new(options).unwrap();
    for i in 0..400 {
        streamer
            .put(&format!("m/f{i:03}"), &[1u8; 5000], Some(i))
            .unwrap();
    }
    let stats = streamer.close();
    assert_one_outcome_each(&seen, &stats, 400);
    assert_eq!(stats.files_acknowledged, 400, "{stats:?}");
    assert!(stats.rerouted >= 1, "{stats:?}");
}

#[test]
fn with_every_server_dead_every_file_fails_with_a_reason_and_close_returns() {
    let mut server = ServeProcess::start(tempfile::tempdir().unwrap().path(), 0, &[]);
    let (options, seen) = recording(
        StreamerOptions::new()
            .server(server.address.clone())
            .response_timeout(Duration::from_secs(2))
            .put_timeout(Some(Duration::from_secs(5))),
    );
    let streamer = Streamer::new(options).unwrap();
    server.kill();
    let started = Instant::now();
    let mut refused = 0;
    for i in 0..200 {
        match streamer.put(&format!("dead/f{i}"), &[0u8; 10_000], Some(i)) {
            Ok(()) => {}
            Err(Error::ServerDown { detail, .. }) => {
                assert!(!detail.is_empty());
                refused += 1;
            }
            Err(other) => panic!("unexpected {other}"),
        }
    }
    let stats = streamer.close();
    assert!(started.elapsed() < Duration::from_secs(20));
    assert_eq!(stats.files_acknowledged, 0);
    assert_eq!(stats.files_queued + refused, 200);
    assert_one_outcome_each(&seen, &stats, stats.files_queued as usize);
    for outcomes in seen.lock().unwrap().values() {
        let detail = failure(&outcomes[0]);
        assert!(detail.contains("connection"), "{detail}");
    }
    // A dead server at start: an error only when every server is required
    // (by default it starts down: tests/start_and_close.rs).
    assert!(Streamer::new(
        StreamerOptions::new()
            .server(dead_address())
            .require_all_servers(true)
    )
    .is_err());
}

#[test]
fn without_failover_the_files_of_a_dead_server_fail() {
    let good = TestServer::start();
    let answered = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&answered);
    let breaking = FakeServer::start(move |_, _| {
        if count.fetch_add(1, Ordering::SeqCst) == 5 {
            Action::CloseMidAnswer
        } else {
            Action::Answer(200)
        }
    });
    let (options, seen) = recording(
        StreamerOptions::new()
            .server(breaking.address.clone())
            .server(good.address())
            .failover(false)
            .reconnect_backoff(Duration::from_secs(30), Duration::from_secs(30)),
    );
    let streamer = Streamer::new(options).unwrap();
    let mut refused = 0;
    for i in 0..100 {
        if streamer
            .put(&format!("nf/f{i:03}"), &[1u8; 100], Some(i))
            .is_err()
        {
            refused += 1;
        }
    }
    let stats = streamer.close();
    assert_one_outcome_each(&seen, &stats, 100 - refused);
    assert!(stats.files_failed >= 1, "{stats:?}");
    assert_eq!(stats.rerouted, 0);
    // Everything for the good server landed.
    assert_eq!(good.files().len(), 50);
}

#[test]
fn fail_fast_backpressure_refuses_at_once_and_counts_drops() {
    let silent = FakeServer::start(|_, _| Action::Silent);
    let streamer = Streamer::new(
        StreamerOptions::new()
            .server(silent.address.clone())
            .queue_limits(10, 1 << 30)
            .put_timeout(Some(Duration::ZERO))
            .response_timeout(Duration::from_millis(500)),
    )
    .unwrap();
    let mut dropped = 0;
    for i in 0..50 {
        match streamer.put(&format!("ff/{i}"), b"x", Some(i)) {
            Ok(()) => {}
            Err(Error::QueueFull { .. }) => dropped += 1,
            Err(other) => panic!("{other}"),
        }
    }
    assert_eq!(dropped, 40);
    let stats = streamer.close();
    assert_eq!(stats.dropped, 40);
    assert_eq!(stats.files_queued, 10);
    assert_eq!(stats.files_failed, 10);
}

/// Runs `pyme-stream bench` against a server slower than the producer and
/// returns its JSON report.
fn bench_against_slow_server(backpressure: &str) -> serde_json::Value {
    let queue_bytes = std::env::var("PYME_TEST_QUEUE_BYTES").unwrap_or("33554432".into());
    let slow = FakeServer::start(|_, _| Action::SlowOk(15));
    let output = pyme_stream()
        .args([
            "bench",
            "--servers",
            &slow.address,
            "--count",
            "80",
            "--size",
            "8388608",
        ])
        .args([
            "--queue-bytes",
            &queue_bytes,
            "--backpressure",
            backpressure,
            "--json",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    serde_json::from_str(stdout.lines().last().unwrap()).unwrap()
}

#[test]
fn memory_stays_within_the_queue_limit_with_a_slow_server() {
    const LIMIT: u64 = 32 * 1024 * 1024;
    const MARGIN: u64 = 64 * 1024 * 1024;
    let blocking = bench_against_slow_server("block");
    assert_eq!(blocking["acknowledged"], 80, "{blocking}");
    let peak = blocking["peak_rss_bytes"].as_u64().unwrap();
    eprintln!("block: peak RSS {} MiB", peak >> 20);
    assert!(
        peak > 0 && peak <= LIMIT + MARGIN,
        "block: peak RSS {peak} bytes"
    );

    let fail_fast = bench_against_slow_server("fail-fast");
    eprintln!(
        "fail-fast: peak RSS {} MiB",
        fail_fast["peak_rss_bytes"].as_u64().unwrap_or(0) >> 20
    );
    let dropped = fail_fast["dropped"].as_u64().unwrap();
    assert!(dropped > 0, "{fail_fast}");
    assert_eq!(
        fail_fast["acknowledged"].as_u64().unwrap() + dropped,
        80,
        "{fail_fast}"
    );
    let peak = fail_fast["peak_rss_bytes"].as_u64().unwrap();
    assert!(
        peak > 0 && peak <= LIMIT + MARGIN,
        "fail-fast: peak RSS {peak} bytes"
    );
}

fn files_below(folder: &std::path::Path) -> usize {
    distinct_names(&[folder]).len()
}

#[test]
fn with_a_spill_folder_a_whole_cluster_outage_loses_nothing() {
    let root = tempfile::tempdir().unwrap();
    let spill = tempfile::tempdir().unwrap();
    let mut server = ServeProcess::start(root.path(), 0, &[]);
    let port = server.port();
    let (options, seen) = recording(
        StreamerOptions::new()
            .server(server.address.clone())
            .spill_dir(spill.path())
            .reconnect_backoff(Duration::from_millis(20), Duration::from_millis(100)),
    );
    let streamer = Streamer::new(options).unwrap();
    for i in 0..50 {
        streamer
            .put(&format!("sp/a{i:03}"), &[1u8; 3000], Some(i))
            .unwrap();
    }
    streamer.flush(Some(Duration::from_secs(30))).unwrap();
    server.kill();
    // Every put is accepted while the cluster is down: the files wait on disk.
    for i in 0..100 {
        streamer
            .put(&format!("sp/b{i:03}"), &[2u8; 3000], Some(i))
            .unwrap();
    }
    streamer.flush(Some(Duration::from_secs(30))).unwrap();
    assert_eq!(streamer.stats().spilled, 100);
    assert_eq!(files_below(spill.path()), 100);
    let _back = ServeProcess::start(root.path(), port, &[]);
    let deadline = Instant::now() + Duration::from_secs(30);
    while streamer.stats().spilled > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let stats = streamer.close();
    assert_one_outcome_each(&seen, &stats, 150);
    assert_eq!(stats.files_acknowledged, 150, "{stats:?}");
    assert_eq!(stats.spilled, 0);
    assert_eq!(files_below(spill.path()), 0);
    assert_eq!(distinct_names(&[root.path()]).len(), 150);
    assert_eq!(
        std::fs::read(root.path().join("sp/b042")).unwrap(),
        vec![2u8; 3000]
    );
}

#[test]
fn files_still_spilled_at_close_are_sent_by_a_later_streamer() {
    let root = tempfile::tempdir().unwrap();
    let spill = tempfile::tempdir().unwrap();
    let mut server = ServeProcess::start(root.path(), 0, &[]);
    let port = server.port();
    let (options, seen) = recording(
        StreamerOptions::new()
            .server(server.address.clone())
            .spill_dir(spill.path())
            .reconnect_backoff(Duration::from_secs(30), Duration::from_secs(30)),
    );
    let streamer = Streamer::new(options).unwrap();
    server.kill();
    for i in 0..20 {
        streamer
            .put(
                &format!("later/f{i:02}"),
                format!("frame {i}").as_bytes(),
                Some(i),
            )
            .unwrap();
    }
    let stats = streamer.close();
    assert_eq!(stats.spilled, 20, "{stats:?}");
    assert_eq!(stats.files_failed, 20);
    assert!(seen
        .lock()
        .unwrap()
        .values()
        .all(|v| failure(&v[0]).contains("spill")));
    assert_eq!(files_below(spill.path()), 20);

    let _back = ServeProcess::start(root.path(), port, &[]);
    let (options, seen) = recording(
        StreamerOptions::new()
            .server(format!("127.0.0.1:{port}"))
            .spill_dir(spill.path()),
    );
    let streamer = Streamer::new(options).unwrap();
    streamer.flush(Some(Duration::from_secs(30))).unwrap();
    let stats = streamer.close();
    assert_eq!(stats.files_acknowledged, 20, "{stats:?}");
    assert!(stats.all_acknowledged(), "{stats:?}");
    assert_one_outcome_each(&seen, &stats, 20);
    assert_eq!(files_below(spill.path()), 0);
    assert_eq!(
        std::fs::read(root.path().join("later/f07")).unwrap(),
        b"frame 7"
    );
}

/// A server whose connections are reset (linger 0, an RST) at random points of
/// the pipeline, in a request body or in an answer, over and over: the sender
/// or the receiver may see the reset first (the first system call to look at
/// the socket gets the error; the next read sees a plain end), and a reset seen
/// first by the sender must not pass for an orderly end. Every file ends in
/// exactly one outcome; every acknowledged file is stored with exactly its
/// bytes (on the reset server or the other one), and every copy stored
/// anywhere is whole.
#[test]
fn resets_at_random_points_of_the_pipeline_lose_nothing() {
    use common::proxy::{Direction, FaultProxy};
    let reset = TestServer::start();
    let other = TestServer::start();
    let proxy = FaultProxy::start(&reset.address());
    let (options, seen) = recording(
        StreamerOptions::new()
            .servers([proxy.address(), other.address()])
            .response_timeout(Duration::from_secs(10))
            .reconnect_backoff(Duration::from_millis(5), Duration::from_millis(50)),
    );
    let streamer = Streamer::new(options).unwrap();
    let seed = fastrand::u64(..);
    eprintln!("seed {seed}");
    let mut rng = fastrand::Rng::with_seed(seed);
    let total = 3000;
    let body = |i: usize| -> Vec<u8> {
        let len = 1 + (i * 7919) % (96 * 1024);
        (0..len).map(|k| (k * 31 + i) as u8).collect()
    };
    let mut armed = 0;
    for i in 0..total {
        if i % 40 == 0 {
            // Re-armed every 40 files (it fires once): a random byte of the
            // next requests or answers on whichever connection.
            let direction = match rng.bool() {
                true => Direction::Requests,
                false => Direction::Answers,
            };
            let bytes = match direction {
                Direction::Requests => rng.u64(1..400_000),
                Direction::Answers => rng.u64(1..2_000),
            };
            proxy.reset_after_bytes(direction, bytes);
            armed += 1;
        }
        streamer
            .put(&format!("rst/f{i:05}"), &body(i), None)
            .unwrap();
    }
    let probe = streamer.stats_probe();
    let stats = streamer.close();
    eprintln!(
        "{armed} resets armed, {} fired; {stats:?}",
        proxy.counts().resets
    );
    assert_one_outcome_each(&seen, &stats, total);
    // Every retry (5xx, and the read-back of a 405 again) counts on a server too.
    let per_server: u64 = (0..2).map(|i| probe.server_stats(i).unwrap().retries).sum();
    assert_eq!(per_server, stats.retries, "per-server retries add up");
    let seen = seen.lock().unwrap();
    let mut failed = Vec::new();
    for i in 0..total {
        let name = format!("rst/f{i:05}");
        let expected = body(i);
        let copies: Vec<Vec<u8>> = [&reset, &other]
            .iter()
            .filter_map(|server| server.read(&name))
            .collect();
        for copy in &copies {
            assert!(
                copy == &expected,
                "{name}: a stored copy of {} bytes, not its {} bytes",
                copy.len(),
                expected.len()
            );
        }
        match &seen[&name][0].1 {
            Ok(_) => assert!(!copies.is_empty(), "{name} acknowledged, stored nowhere"),
            Err(reason) => failed.push(format!("{name}: {reason}")),
        }
    }
    assert!(proxy.counts().resets > 10, "{:?}", proxy.counts());
    // The other server is live all along: nothing needs to fail.
    assert!(
        failed.is_empty(),
        "{} failed: {:?}",
        failed.len(),
        &failed[..failed.len().min(5)]
    );
}

/// Resets with the reset server alone and a spill folder: files whose
/// connection dies are sent again on the next connection (or wait in the
/// folder while the link is down); every file is acknowledged once, stored
/// whole, and the folder is empty at the end.
#[test]
fn resets_at_random_points_with_one_server_and_a_spill_folder_lose_nothing() {
    use common::proxy::{Direction, FaultProxy};
    let server = TestServer::start();
    let proxy = FaultProxy::start(&server.address());
    let spill = tempfile::tempdir().unwrap();
    let (options, seen) = recording(
        StreamerOptions::new()
            .server(proxy.address())
            .spill_dir(spill.path())
            .response_timeout(Duration::from_secs(10))
            .reconnect_backoff(Duration::from_millis(5), Duration::from_millis(50)),
    );
    let streamer = Streamer::new(options).unwrap();
    let seed = fastrand::u64(..);
    eprintln!("seed {seed}");
    let mut rng = fastrand::Rng::with_seed(seed);
    let total = 1500;
    let body = |i: usize| -> Vec<u8> {
        let len = 1 + (i * 7919) % (96 * 1024);
        (0..len).map(|k| (k * 31 + i) as u8).collect()
    };
    // Five resets, each armed once the previous one fired and 100 more files
    // were acknowledged. Five: a file is failed, by design, once six
    // connections ended while it was in flight (a file every connection dies
    // on must not circle for ever); with a reset every 40 files and no other
    // server, the head of a deep pipeline met that rule.
    let (mut armed, mut acknowledged_at_arming) = (0, 0);
    for i in 0..total {
        let acknowledged = streamer.stats().files_acknowledged;
        if armed < 5
            && proxy.counts().resets >= armed
            && acknowledged >= acknowledged_at_arming + 100
        {
            armed += 1;
            acknowledged_at_arming = acknowledged;
            let direction = match rng.bool() {
                true => Direction::Requests,
                false => Direction::Answers,
            };
            let bytes = match direction {
                Direction::Requests => rng.u64(1..400_000),
                Direction::Answers => rng.u64(1..2_000),
            };
            proxy.reset_after_bytes(direction, bytes);
        }
        streamer
            .put(&format!("one/f{i:05}"), &body(i), None)
            .unwrap();
    }
    let stats = streamer.close();
    eprintln!("{} resets; {stats:?}", proxy.counts().resets);
    assert_one_outcome_each(&seen, &stats, total);
    let seen = seen.lock().unwrap();
    let mut failed = Vec::new();
    for i in 0..total {
        let name = format!("one/f{i:05}");
        let stored = server.read(&name);
        if let Some(copy) = &stored {
            assert!(
                copy == &body(i),
                "{name}: stored {} bytes, not its own",
                copy.len()
            );
        }
        match &seen[&name][0].1 {
            Ok(_) => assert!(stored.is_some(), "{name} acknowledged, not stored"),
            Err(reason) => failed.push(format!("{name}: {reason}")),
        }
    }
    assert!(
        failed.is_empty(),
        "{} failed: {:?}",
        failed.len(),
        &failed[..failed.len().min(5)]
    );
    assert_eq!(
        common::files_under(spill.path())
            .iter()
            .filter(|p| !p.ends_with(".pyme-lock"))
            .count(),
        0
    );
}
