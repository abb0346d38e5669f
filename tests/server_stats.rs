//! Per-server counters (`Streamer::server_stats`) against real servers on
//! loopback: they add up to the streamer's totals, follow each file to the
//! server that gave its outcome, count reconnects, and can be read from a
//! completion callback and from another thread while the streamer closes.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::recording::{recording, Seen};
use common::{ServeProcess, TestServer};
use pyme_streaming::{ServerState, ServerStats, Streamer, StreamerOptions};

/// Waits (up to a minute: a bound for a hung test, never the measure) until
/// `done` holds.
fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "waited a minute for {what}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn all_server_stats(streamer: &Streamer) -> Vec<ServerStats> {
    (0..streamer.n_servers())
        .map(|i| streamer.server_stats(i).unwrap())
        .collect()
}

/// Outcomes by server: (acknowledged files, their bytes, failed files).
fn outcomes_by_server(seen: &Seen, n: usize, sizes: &dyn Fn(&str) -> u64) -> Vec<(u64, u64, u64)> {
    let mut by_server = vec![(0, 0, 0); n];
    for (name, outcomes) in seen.lock().unwrap().iter() {
        assert_eq!(outcomes.len(), 1, "{name}: {outcomes:?}");
        let (server, result) = &outcomes[0];
        let entry = &mut by_server[*server];
        match result {
            Ok(_) => {
                entry.0 += 1;
                entry.1 += sizes(name);
            }
            Err(_) => entry.2 += 1,
        }
    }
    by_server
}

fn size_of_file(name: &str) -> u64 {
    let i: u64 = name.trim_start_matches("run/f").parse().unwrap();
    100 + (i % 7) * 1000
}

#[test]
fn counts_match_the_outcomes_after_a_run() {
    let servers = common::start_servers(3);
    let (options, seen) = recording(StreamerOptions::new().servers(common::addresses(&servers)));
    let streamer = Streamer::new(options).unwrap();
    for i in 0..600u64 {
        let name = format!("run/f{i}");
        let data = vec![b'x'; size_of_file(&name) as usize];
        streamer.put(&name, &data, None).unwrap();
    }
    streamer.flush(None).unwrap();
    let totals = streamer.stats();
    let each = all_server_stats(&streamer);
    let expected = outcomes_by_server(&seen, 3, &size_of_file);
    for (i, (stats, (acked, acked_bytes, failed))) in each.iter().zip(&expected).enumerate() {
        assert_eq!(stats.state, ServerState::Up, "server {i}");
        assert_eq!(stats.files_acknowledged, *acked, "server {i}: {stats:?}");
        assert_eq!(stats.bytes_acknowledged, *acked_bytes, "server {i}");
        assert_eq!(stats.files_failed, *failed, "server {i}");
        assert!(*acked > 0, "round robin gave server {i} files");
        // What the server stored is what it acknowledged.
        let stored = servers[i]
            .files()
            .into_iter()
            .filter(|f| f.starts_with("run/"))
            .count();
        assert_eq!(stored as u64, stats.files_acknowledged, "server {i}");
        assert_eq!((stats.queue_files, stats.queue_bytes), (0, 0), "server {i}");
        assert_eq!(
            (stats.in_flight_files, stats.in_flight_bytes),
            (0, 0),
            "server {i}"
        );
        assert_eq!(stats.files_sent, stats.files_acknowledged, "server {i}");
        assert_eq!(
            (stats.reconnects, stats.retries, stats.moved_away),
            (0, 0, 0)
        );
    }
    let sum = |f: fn(&ServerStats) -> u64| each.iter().map(f).sum::<u64>();
    assert_eq!(sum(|s| s.files_acknowledged), totals.files_acknowledged);
    assert_eq!(sum(|s| s.bytes_acknowledged), totals.bytes_acknowledged);
    assert_eq!(sum(|s| s.files_sent), totals.files_sent);
    assert_eq!(sum(|s| s.bytes_sent), totals.bytes_sent);
    assert_eq!(totals.files_acknowledged, 600);
    assert!(streamer.server_stats(3).is_none());
    assert!(streamer.server_stats(usize::MAX).is_none());
    streamer.close();
}

/// While a server is stopped (SIGSTOP), the files sent to it wait in flight
/// there; it is then killed. Without failover they fail, counted on that
/// server; a restart on the same port counts a reconnect.
#[cfg(unix)]
#[test]
fn a_killed_server_counts_the_files_it_failed_and_its_reconnects() {
    let good = TestServer::start();
    let root = tempfile::tempdir().unwrap();
    let mut victim = ServeProcess::start(root.path(), 0, &[]);
    let port = victim.port();
    let (options, seen) = recording(
        StreamerOptions::new()
            .servers([good.address(), victim.address.clone()])
            .failover(false)
            .reconnect_backoff(Duration::from_millis(20), Duration::from_millis(100)),
    );
    let streamer = Streamer::new(options).unwrap();
    for i in 0..10 {
        streamer
            .put_stream(i % 2, &format!("before/f{i}"), b"data")
            .unwrap();
    }
    streamer.flush(None).unwrap();
    victim.pause();
    for i in 0..5 {
        streamer
            .put_stream(1, &format!("lost/f{i}"), &[7u8; 1000])
            .unwrap();
    }
    wait_until("five files in flight on the stopped server", || {
        streamer.server_stats(1).unwrap().in_flight_files == 5
    });
    let in_flight = streamer.server_stats(1).unwrap();
    assert_eq!(in_flight.in_flight_bytes, 5000);
    assert_eq!(in_flight.queue_files, 0);
    victim.kill();
    streamer.flush(None).unwrap();
    let expected = outcomes_by_server(&seen, 2, &|_| 4);
    let (good_now, victim_now) = (
        streamer.server_stats(0).unwrap(),
        streamer.server_stats(1).unwrap(),
    );
    assert_eq!(expected[1].2, 5, "the five files failed on server 1");
    assert_eq!(victim_now.files_failed, 5, "{victim_now:?}");
    assert_eq!(victim_now.bytes_failed, 5000);
    assert_eq!(victim_now.files_acknowledged, 5);
    assert_eq!(victim_now.in_flight_files, 0);
    assert_eq!(good_now.files_failed, 0);
    assert_eq!(good_now.files_acknowledged, 5);
    assert_eq!(streamer.stats().files_failed, 5);

    let _again = ServeProcess::start(root.path(), port, &[]);
    wait_until("a reconnect to the restarted server", || {
        streamer.server_stats(1).unwrap().reconnects >= 1
    });
    wait_until("the restarted server up", || {
        streamer.server_stats(1).unwrap().state == ServerState::Up
    });
    streamer.put_stream(1, "after/f0", b"back").unwrap();
    streamer.flush(None).unwrap();
    let after = streamer.server_stats(1).unwrap();
    assert_eq!(after.files_acknowledged, 6);
    assert_eq!(after.reconnects, streamer.stats().reconnects);
    assert_eq!(streamer.server_stats(0).unwrap().reconnects, 0);
    streamer.close();
}

/// With failover, the files in flight on the killed server end on the other
/// one: moved away from the first, acknowledged (not failed) by the second.
#[cfg(unix)]
#[test]
fn files_moved_away_count_on_the_server_that_acknowledged_them() {
    let good = TestServer::start();
    let root = tempfile::tempdir().unwrap();
    let mut victim = ServeProcess::start(root.path(), 0, &[]);
    let (options, seen) = recording(
        StreamerOptions::new()
            .servers([good.address(), victim.address.clone()])
            .failover(true),
    );
    let streamer = Streamer::new(options).unwrap();
    victim.pause();
    for i in 0..5 {
        streamer
            .put_stream(1, &format!("moved/f{i}"), &[1u8; 100])
            .unwrap();
    }
    wait_until("five files in flight on the stopped server", || {
        streamer.server_stats(1).unwrap().in_flight_files == 5
    });
    victim.kill();
    streamer.flush(None).unwrap();
    let expected = outcomes_by_server(&seen, 2, &|_| 100);
    assert_eq!(
        expected[0],
        (5, 500, 0),
        "all five acknowledged by server 0"
    );
    let (first, second) = (
        streamer.server_stats(0).unwrap(),
        streamer.server_stats(1).unwrap(),
    );
    assert_eq!(
        (first.files_acknowledged, first.bytes_acknowledged),
        (5, 500)
    );
    assert_eq!(second.moved_away, 5, "{second:?}");
    assert_eq!(second.files_failed, 0);
    assert_eq!(second.files_acknowledged, 0);
    assert_eq!(streamer.stats().rerouted, 5);
    streamer.close();
}

/// A completion callback reads the counters of its own file's server: its
/// file is counted already, and the read neither deadlocks nor panics.
#[test]
fn the_completion_callback_reads_server_stats_with_its_file_counted() {
    let servers = common::start_servers(2);
    let probe: Arc<Mutex<Option<pyme_streaming::StatsProbe>>> = Arc::default();
    let checked = Arc::new(AtomicUsize::new(0));
    let wrong = Arc::new(Mutex::new(Vec::new()));
    // Callbacks seen so far per server: each file is counted before its callback,
    // so a server's count is never below the callbacks of its files.
    let seen = Arc::new(Mutex::new([0u64; 2]));
    let options = {
        let (probe, checked, wrong) = (probe.clone(), checked.clone(), wrong.clone());
        StreamerOptions::new()
            .servers(common::addresses(&servers))
            .on_complete(move |outcome| {
                let guard = probe.lock().unwrap();
                let Some(probe) = guard.as_ref() else { return };
                let mut seen = seen.lock().unwrap();
                seen[outcome.server] += 1;
                let stats = probe.server_stats(outcome.server).unwrap();
                if stats.files_acknowledged < seen[outcome.server] {
                    wrong
                        .lock()
                        .unwrap()
                        .push(format!("{}: {stats:?}", outcome.name));
                }
                assert!(probe.server_stats(usize::MAX).is_none());
                checked.fetch_add(1, Ordering::SeqCst);
            })
    };
    let streamer = Streamer::new(options).unwrap();
    *probe.lock().unwrap() = Some(streamer.stats_probe());
    for i in 0..200 {
        streamer.put(&format!("cb/f{i}"), b"abc", None).unwrap();
    }
    streamer.close();
    assert_eq!(checked.load(Ordering::SeqCst), 200);
    assert!(
        wrong.lock().unwrap().is_empty(),
        "{:?}",
        wrong.lock().unwrap()
    );
}

/// Another thread polls the counters (as a UI would) while the streamer is
/// closed: every reading is sane, and the last ones show the final figures.
#[test]
fn server_stats_are_read_from_another_thread_during_close() {
    let servers = common::start_servers(2);
    let streamer =
        Streamer::new(StreamerOptions::new().servers(common::addresses(&servers))).unwrap();
    let probe = streamer.stats_probe();
    let stop = Arc::new(AtomicBool::new(false));
    let poller = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            let mut reads = 0u64;
            while !stop.load(Ordering::SeqCst) {
                for i in 0..2 {
                    let stats = probe.server_stats(i).unwrap();
                    assert!(stats.files_acknowledged <= 2000, "{stats:?}");
                    assert!(stats.in_flight_files <= 2000, "{stats:?}");
                    reads += 1;
                }
            }
            (reads, probe)
        })
    };
    for i in 0..2000 {
        streamer
            .put(&format!("close/f{i}"), &[0u8; 512], None)
            .unwrap();
    }
    let totals = streamer.close();
    stop.store(true, Ordering::SeqCst);
    let (reads, probe) = poller.join().unwrap();
    assert!(reads > 0);
    let after: Vec<ServerStats> = (0..2).map(|i| probe.server_stats(i).unwrap()).collect();
    assert_eq!(
        after.iter().map(|s| s.files_acknowledged).sum::<u64>(),
        totals.files_acknowledged
    );
    for stats in &after {
        assert_eq!(stats.state, ServerState::Down, "closed: {stats:?}");
        assert_eq!(stats.in_flight_files + stats.queue_files, 0);
    }
}

/// A server that answers 503 to everything: each file is retried there, then
/// moved to the other server, which acknowledges it. The retries and moves
/// count on the first, the outcome on the second, no failure anywhere.
#[test]
fn retries_and_moves_count_on_the_server_that_answered_5xx() {
    let refusing = common::FakeServer::start(|_, _| common::Action::Answer(503));
    let good = TestServer::start();
    let (options, seen) = recording(
        StreamerOptions::new()
            .servers([refusing.address.clone(), good.address()])
            .max_retries(2)
            // The rest after 5xx lasts this long: it is still on when read.
            .reconnect_backoff(Duration::from_millis(50), Duration::from_secs(120)),
    );
    let streamer = Streamer::new(options).unwrap();
    for i in 0..4 {
        streamer
            .put_stream(0, &format!("retry/f{i}"), b"once")
            .unwrap();
    }
    streamer.flush(None).unwrap();
    let expected = outcomes_by_server(&seen, 2, &|_| 4);
    assert_eq!(expected, [(0, 0, 0), (4, 16, 0)]);
    let (first, second) = (
        streamer.server_stats(0).unwrap(),
        streamer.server_stats(1).unwrap(),
    );
    assert_eq!(first.retries, 8, "{first:?}");
    assert_eq!(first.moved_away, 4, "{first:?}");
    assert_eq!(first.files_sent, 12, "three tries each: {first:?}");
    assert_eq!((first.files_failed, first.files_acknowledged), (0, 0));
    assert_eq!(first.state, ServerState::Resting, "{first:?}");
    assert_eq!((second.files_acknowledged, second.retries), (4, 0));
    assert_eq!(streamer.stats().retries, 8);
    streamer.close();
}

/// A bounded close gives up the files a silent server holds: they fail on
/// that server, and its queue and in-flight gauges come back to zero.
#[test]
fn a_bounded_close_leaves_no_file_counted_in_flight() {
    let silent = common::FakeServer::start(|_, _| common::Action::Silent);
    let (options, seen) = recording(StreamerOptions::new().server(silent.address.clone()));
    let streamer = Streamer::new(options).unwrap();
    for i in 0..5 {
        streamer
            .put(&format!("silent/f{i}"), &[3u8; 10], None)
            .unwrap();
    }
    wait_until("five files in flight on the silent server", || {
        streamer.server_stats(0).unwrap().in_flight_files == 5
    });
    let probe = streamer.stats_probe();
    let closed = streamer.close_timeout(Duration::from_millis(200));
    let given_up = closed.expect_err("the silent server's files were given up");
    assert_eq!(given_up.stats.files_failed, 5);
    let after = probe.server_stats(0).unwrap();
    assert_eq!(
        (after.in_flight_files, after.in_flight_bytes),
        (0, 0),
        "{after:?}"
    );
    assert_eq!((after.queue_files, after.queue_bytes), (0, 0), "{after:?}");
    assert_eq!(after.files_failed, 5, "{after:?}");
    // No callback starts after a bounded close reached its limit.
    assert!(seen.lock().unwrap().is_empty());
}
