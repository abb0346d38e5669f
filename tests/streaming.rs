//! The streaming core against real data servers on loopback.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::recording::recording;
use common::{addresses, dead_address, start_servers, Action, FakeServer, TestServer};
use pyme_streaming::{
    Error, FileInfo, FilterError, FnFilter, NameHash, Stream, Streamer, StreamerOptions,
};

fn body(i: usize, len: usize) -> Vec<u8> {
    (0..len).map(|j| (i * 31 + j * 7) as u8).collect()
}

#[test]
fn files_land_byte_exact_where_round_robin_puts_them() {
    let servers = start_servers(3);
    let options = StreamerOptions::new()
        .servers(addresses(&servers))
        .round_robin_start(Some(0));
    let (options, seen) = recording(options);
    let streamer = Streamer::new(options).unwrap();
    assert_eq!(streamer.n_servers(), 3);
    for i in 0..30 {
        streamer
            .put(
                &format!("series/frame{i:05}.pzf"),
                &body(i, 1000 + i * 517),
                Some(i as i64),
            )
            .unwrap();
    }
    let stats = streamer.close();
    assert_eq!((stats.files_acknowledged, stats.files_failed), (30, 0));
    assert_eq!(
        stats.bytes_acknowledged,
        (0..30).map(|i| 1000 + i * 517).sum::<usize>() as u64
    );
    let seen = seen.lock().unwrap();
    for i in 0..30 {
        let name = format!("series/frame{i:05}.pzf");
        assert_eq!(seen[&name], vec![(i % 3, Ok(200))], "{name}");
        for (s, server) in servers.iter().enumerate() {
            let stored = server.read(&name);
            if s == i % 3 {
                assert_eq!(
                    stored.as_deref(),
                    Some(&body(i, 1000 + i * 517)[..]),
                    "{name}"
                );
            } else {
                assert_eq!(stored, None, "{name} also on server {s}");
            }
        }
    }
}

#[test]
fn each_builtin_and_custom_distribution_places_files_as_it_says() {
    let servers = start_servers(3);
    let (options, seen) = recording(
        StreamerOptions::new()
            .servers(addresses(&servers))
            .distribution(NameHash),
    );
    let streamer = Streamer::new(options).unwrap();
    for i in 0..20 {
        streamer.put(&format!("h/{i}"), b"x", None).unwrap();
    }
    streamer.close();
    for (name, outcomes) in seen.lock().unwrap().iter() {
        let expected = pyme_streaming::Distribution::choose(&NameHash, 3, None, name);
        assert_eq!(outcomes, &vec![(expected, Ok(200))]);
        assert!(servers[expected].read(name).is_some());
    }

    let (options, seen) = recording(
        StreamerOptions::new()
            .servers(addresses(&servers))
            .distribution(
                |_n: usize, index: Option<i64>, _name: &str| if index == Some(7) { 2 } else { 1 },
            ),
    );
    let streamer = Streamer::new(options).unwrap();
    streamer.put("c/seven", b"7", Some(7)).unwrap();
    streamer.put("c/other", b"o", Some(1)).unwrap();
    streamer.put_stream(0, "c/direct", b"d").unwrap();
    streamer.close();
    let seen = seen.lock().unwrap();
    assert_eq!(seen["c/seven"][0].0, 2);
    assert_eq!(seen["c/other"][0].0, 1);
    assert_eq!(seen["c/direct"][0].0, 0);
    assert_eq!(servers[0].read("c/direct").as_deref(), Some(&b"d"[..]));
}

#[test]
fn a_distribution_out_of_range_fails_that_put_only() {
    let servers = start_servers(2);
    let streamer = Streamer::new(
        StreamerOptions::new()
            .servers(addresses(&servers))
            .distribution(|_n: usize, index: Option<i64>, _name: &str| index.unwrap_or(0) as usize),
    )
    .unwrap();
    streamer.put("ok0", b"a", Some(0)).unwrap();
    assert_eq!(
        streamer.put("bad", b"b", Some(5)),
        Err(Error::DistributionOutOfRange {
            chosen: 5,
            n_servers: 2
        })
    );
    assert!(matches!(
        streamer.put_stream(9, "bad2", b"b"),
        Err(Error::NoSuchStream { .. })
    ));
    streamer.put("ok1", b"c", Some(1)).unwrap();
    let stats = streamer.close();
    assert_eq!((stats.files_queued, stats.files_acknowledged), (2, 2));
}

#[test]
fn an_existing_file_fails_with_405_and_the_rest_land() {
    let servers = start_servers(1);
    std::fs::create_dir_all(servers[0].path("s")).unwrap();
    std::fs::write(servers[0].path("s/f2"), b"already here").unwrap();
    let (options, seen) = recording(StreamerOptions::new().servers(addresses(&servers)));
    let streamer = Streamer::new(options).unwrap();
    for i in 0..5 {
        streamer
            .put(&format!("s/f{i}"), format!("new {i}").as_bytes(), Some(0))
            .unwrap();
    }
    let stats = streamer.close();
    assert_eq!((stats.files_acknowledged, stats.files_failed), (4, 1));
    let seen = seen.lock().unwrap();
    let failure = seen["s/f2"][0].1.clone().unwrap_err();
    assert!(failure.contains("405"), "{failure}");
    assert_eq!(
        servers[0].read("s/f2").as_deref(),
        Some(&b"already here"[..])
    );
    for i in [0, 1, 3, 4] {
        assert_eq!(
            servers[0].read(&format!("s/f{i}")),
            Some(format!("new {i}").into_bytes())
        );
    }
}

#[test]
fn close_drains_5000_files_over_two_servers() {
    let servers = start_servers(2);
    let (options, seen) = recording(StreamerOptions::new().servers(addresses(&servers)));
    let streamer = Streamer::new(options).unwrap();
    let data = vec![0xA5u8; 64 * 1024];
    for i in 0..5000 {
        streamer
            .put(&format!("drain/f{i:05}"), &data, Some(i))
            .unwrap();
    }
    // No flush, no sleep: close alone must wait for every answer.
    let stats = streamer.close();
    assert_eq!(stats.files_queued, 5000);
    assert_eq!(stats.files_acknowledged, 5000);
    assert_eq!(stats.files_failed, 0);
    assert_eq!((stats.queue_files, stats.in_flight_files), (0, 0));
    assert_eq!(seen.lock().unwrap().len(), 5000);
    let on_disk = servers[0].files().len() + servers[1].files().len();
    assert_eq!(on_disk, 5000);
}

#[test]
fn four_threads_put_concurrently() {
    let servers = start_servers(2);
    let (options, seen) = recording(
        StreamerOptions::new()
            .servers(addresses(&servers))
            .queue_limits(8, 1 << 20),
    );
    let streamer = Arc::new(Streamer::new(options).unwrap());
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let streamer = Arc::clone(&streamer);
            std::thread::spawn(move || {
                for i in 0..250 {
                    let index = t * 1000 + i;
                    streamer
                        .put(
                            &format!("t{t}/f{i:04}"),
                            &body(index as usize, 3000),
                            Some(index),
                        )
                        .unwrap();
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    let streamer = Arc::into_inner(streamer).unwrap();
    let stats = streamer.close();
    assert_eq!(stats.files_acknowledged, 1000);
    assert!(seen
        .lock()
        .unwrap()
        .values()
        .all(|v| v.len() == 1 && v[0].1 == Ok(200)));
    for t in 0..4i64 {
        for i in 0..250i64 {
            let name = format!("t{t}/f{i:04}");
            let index = t * 1000 + i;
            // On either server: with full queues, a server silent for a
            // moment on a busy machine is passed over.
            let stored: Vec<_> = servers.iter().filter_map(|s| s.read(&name)).collect();
            assert_eq!(stored, [body(index as usize, 3000)], "{name}");
        }
    }
}

/// A put hands its file to an idle sender either by waking it or, while files
/// keep coming, by leaving it for the sender's next look at the queue. Both
/// paths, and the switch between them (no file for longer than the 250 ms poll
/// window), must deliver every file without waiting for `close`.
#[test]
fn files_reach_a_sleeping_or_polling_sender_without_close() {
    let servers = start_servers(1);
    for poll in [
        Some(Duration::from_millis(1)),
        Some(Duration::from_millis(50)),
        None,
    ] {
        let options = StreamerOptions::new()
            .servers(addresses(&servers))
            .sender_poll(poll);
        let streamer = Streamer::new(options).unwrap();
        let prefix = format!("poll{}", poll.map_or(0, |p| p.as_millis()));
        let mut names = Vec::new();
        for (step, pause_before) in [0, 0, 400, 0, 0, 300, 5].into_iter().enumerate() {
            std::thread::sleep(Duration::from_millis(pause_before));
            let name = format!("{prefix}/f{step}");
            streamer.put(&name, &body(step, 1000), None).unwrap();
            names.push(name);
            streamer
                .flush(Some(Duration::from_secs(10)))
                .unwrap_or_else(|e| panic!("{poll:?}, file {step}: {e}"));
            assert_eq!(streamer.stats().files_acknowledged, step as u64 + 1);
        }
        streamer.close();
        for (step, name) in names.iter().enumerate() {
            assert_eq!(servers[0].read(name), Some(body(step, 1000)), "{name}");
        }
    }
}

#[test]
fn invalid_names_are_refused_before_anything_is_sent() {
    let servers = start_servers(1);
    let streamer = Streamer::new(StreamerOptions::new().servers(addresses(&servers))).unwrap();
    for name in [
        "",
        "/abs",
        "a/../b",
        "with space",
        "crlf\r\nX-Evil: 1",
        "tab\t",
        "nul\0",
    ] {
        let error = streamer.put(name, b"data", Some(0)).unwrap_err();
        assert!(
            matches!(error, Error::InvalidName { .. }),
            "{name:?}: {error}"
        );
    }
    let message = streamer.put("a b", b"x", None).unwrap_err().to_string();
    assert!(message.contains("' '"), "{message}");
    let stats = streamer.close();
    assert_eq!(stats.files_queued, 0);
    assert_eq!(stats.bytes_sent, 0);
    assert!(servers[0].files().is_empty());
}

#[test]
fn an_unreachable_server_starts_down_and_a_bad_address_is_an_error() {
    let good = TestServer::start();
    let dead = dead_address();
    let streamer = Streamer::new(
        StreamerOptions::new()
            .server(good.address())
            .server(dead.clone()),
    )
    .expect("starts with a server down");
    assert_eq!(
        streamer.server_state(1),
        Some(pyme_streaming::ServerState::Down)
    );
    streamer.put("u/a", b"abc", Some(1)).unwrap();
    let stats = streamer.close();
    assert!(stats.all_acknowledged(), "failover took it: {stats:?}");
    // Asked for, the old strictness: an error naming the server.
    let error = Streamer::new(
        StreamerOptions::new()
            .server(good.address())
            .server(dead.clone())
            .require_all_servers(true),
    )
    .err()
    .expect("must fail");
    assert!(matches!(error, Error::Connect { .. }));
    assert!(error.to_string().contains(&dead), "{error}");
    assert!(matches!(
        Streamer::new(StreamerOptions::new().server("no-port")).err(),
        Some(Error::BadServerAddress(_))
    ));
    assert!(matches!(
        Streamer::new(StreamerOptions::new()).err(),
        Some(Error::NoServers)
    ));
}

#[test]
fn a_filter_runs_before_sending_and_its_errors_fail_one_file() {
    let servers = start_servers(1);
    let (options, seen) = recording(StreamerOptions::new().servers(addresses(&servers)).filter(
        FnFilter(|file: &FileInfo<'_>, data: &[u8], out: &mut Vec<u8>| {
            if file.name.ends_with("refuse") {
                return Err(FilterError("refused by test".into()));
            }
            out.extend(data.iter().rev());
            out.extend_from_slice(format!("#{}", file.index.unwrap_or(-1)).as_bytes());
            Ok(())
        }),
    ));
    let streamer = Streamer::new(options).unwrap();
    streamer.put("f/a", b"abc", Some(4)).unwrap();
    streamer.put("f/refuse", b"x", Some(5)).unwrap();
    streamer.put("f/b", b"xyz", None).unwrap();
    let stats = streamer.close();
    assert_eq!((stats.files_acknowledged, stats.files_failed), (2, 1));
    assert_eq!(servers[0].read("f/a").as_deref(), Some(&b"cba#4"[..]));
    assert_eq!(servers[0].read("f/b").as_deref(), Some(&b"zyx#-1"[..]));
    assert_eq!(servers[0].read("f/refuse"), None);
    let failure = seen.lock().unwrap()["f/refuse"][0].1.clone().unwrap_err();
    assert!(failure.contains("refused by test"), "{failure}");
}

#[test]
fn a_full_queue_blocks_put_until_the_timeout_then_says_so() {
    // A listener that accepts and never answers: the queue fills and stays full.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = silent.local_addr().unwrap().to_string();
    let streamer = Streamer::new(
        StreamerOptions::new()
            .server(address)
            .queue_limits(4, 1 << 30)
            .put_timeout(Some(Duration::from_millis(200)))
            .response_timeout(Duration::from_secs(2)),
    )
    .unwrap();
    for i in 0..4 {
        streamer.put(&format!("q/{i}"), b"x", Some(i)).unwrap();
    }
    let error = streamer.put("q/overflow", b"x", Some(9)).unwrap_err();
    assert!(
        matches!(error, Error::QueueFull { files: 4, .. }),
        "{error}"
    );
    // The silent server times out: every accepted file fails, none hangs.
    let stats = streamer.close();
    assert_eq!(
        (
            stats.files_queued,
            stats.files_acknowledged,
            stats.files_failed
        ),
        (4, 0, 4)
    );
    drop(silent);
}

/// The interrupt check (Python's Ctrl-C): a put blocked on a full queue gives
/// up soon after the check says so, queues nothing and counts no drop; it is
/// asked without any lock of the library held (here it reads the statistics,
/// which take them); a put that does not wait never asks it.
#[test]
fn an_interrupt_check_ends_a_put_waiting_for_room() {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = silent.local_addr().unwrap().to_string();
    let interrupted = Arc::new(AtomicBool::new(false));
    let asked = Arc::new(AtomicUsize::new(0));
    let stats_here: Arc<std::sync::OnceLock<std::sync::Weak<Streamer>>> = Arc::default();
    let check = {
        let (interrupted, asked, stats_here) = (
            Arc::clone(&interrupted),
            Arc::clone(&asked),
            Arc::clone(&stats_here),
        );
        move || {
            asked.fetch_add(1, Ordering::SeqCst);
            // Takes the library's locks: a check called under one would deadlock.
            if let Some(streamer) = stats_here.get().and_then(std::sync::Weak::upgrade) {
                let _ = streamer.stats();
            }
            interrupted.load(Ordering::SeqCst)
        }
    };
    let streamer = Arc::new(
        Streamer::new(
            StreamerOptions::new()
                .server(address)
                .queue_limits(4, 1 << 30)
                .response_timeout(Duration::from_secs(3))
                .interrupt_check(check),
        )
        .unwrap(),
    );
    let _ = stats_here.set(Arc::downgrade(&streamer));
    for i in 0..4 {
        streamer.put(&format!("i/{i}"), b"x", Some(i)).unwrap();
    }
    assert_eq!(
        asked.load(Ordering::SeqCst),
        0,
        "asked by puts that did not wait"
    );
    // Says "interrupt" only once the waiting put has asked twice (and been
    // told to go on), however late the machine runs it.
    let interrupter = {
        let (interrupted, asked) = (Arc::clone(&interrupted), Arc::clone(&asked));
        std::thread::spawn(move || {
            while asked.load(Ordering::SeqCst) < 2 {
                std::thread::sleep(Duration::from_millis(10));
            }
            interrupted.store(true, Ordering::SeqCst);
        })
    };
    let started = Instant::now();
    let error = streamer.put("i/blocked", b"x", Some(9)).unwrap_err();
    let waited = started.elapsed();
    interrupter.join().unwrap();
    assert!(matches!(error, Error::Interrupted { .. }), "{error}");
    // Without the check it would wait until the silent server's 3 s timeout.
    assert!(waited < Duration::from_secs(3), "{waited:?}");
    assert!(asked.load(Ordering::SeqCst) >= 3, "asked while waiting");
    let stats = Arc::try_unwrap(streamer).ok().unwrap().close();
    assert_eq!(
        (stats.files_queued, stats.files_failed, stats.dropped),
        (4, 4, 0)
    );
    drop(silent);
}

/// A check that says "go on" leaves a waiting put alone: it queues its file
/// when room comes (the lock given up for the check is taken back), and every
/// file is acknowledged.
#[test]
fn an_interrupt_check_that_says_go_on_lets_waiting_puts_through() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    // 150 ms per answer, one file in the queue: each put waits past a check.
    let slow = FakeServer::start(|_, _| Action::SlowOk(150));
    let asked = Arc::new(AtomicUsize::new(0));
    let (options, seen) = recording(
        StreamerOptions::new()
            .server(slow.address.clone())
            .queue_limits(1, 1 << 20)
            .interrupt_check({
                let asked = Arc::clone(&asked);
                move || {
                    asked.fetch_add(1, Ordering::SeqCst);
                    false
                }
            }),
    );
    let streamer = Streamer::new(options).unwrap();
    for i in 0..6 {
        streamer.put(&format!("go/{i}"), b"x", Some(i)).unwrap();
    }
    let stats = streamer.close();
    assert_eq!(
        (stats.files_acknowledged, stats.dropped),
        (6, 0),
        "{stats:?}"
    );
    assert_eq!(seen.lock().unwrap().len(), 6);
    assert!(
        asked.load(Ordering::SeqCst) >= 1,
        "no put waited past a check"
    );
}

#[test]
fn flush_waits_for_every_outcome_and_stats_add_up() {
    let servers = start_servers(2);
    let streamer = Streamer::new(StreamerOptions::new().servers(addresses(&servers))).unwrap();
    for i in 0..200 {
        streamer
            .put(&format!("fl/{i}"), &[1u8; 10_000], Some(i))
            .unwrap();
    }
    streamer.flush(Some(Duration::from_secs(60))).unwrap();
    let stats = streamer.stats();
    assert_eq!(stats.files_acknowledged, 200);
    assert_eq!(stats.bytes_acknowledged, 2_000_000);
    assert_eq!(stats.bytes_sent, 2_000_000);
    assert_eq!(
        (stats.queue_files, stats.queue_bytes, stats.in_flight_files),
        (0, 0, 0)
    );
    assert_eq!(servers[0].files().len() + servers[1].files().len(), 200);
    streamer.close();
}

#[test]
fn a_lone_stream_sends_and_finalizes_with_a_sentinel() {
    let server = TestServer::start();
    let options = StreamerOptions::new();
    let stream = Stream::connect(&server.address(), &options).unwrap();
    stream.put("one/a", b"A").unwrap();
    stream.put("one/b", b"B").unwrap();
    let stats = stream.finalize("one/__end").unwrap();
    assert_eq!(stats.files_acknowledged, 3);
    assert_eq!(server.read("one/a").as_deref(), Some(&b"A"[..]));
    assert_eq!(server.read("one/__end").as_deref(), Some(&b""[..]));
}

#[test]
fn the_connection_dying_fails_every_pending_file_with_a_reason() {
    // A server that reads one request head and then closes the connection.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let server = std::thread::spawn(move || {
        let (mut socket, _) = listener.accept().unwrap();
        let mut buf = [0u8; 16];
        let _ = std::io::Read::read(&mut socket, &mut buf);
    });
    let (options, seen) = recording(StreamerOptions::new().server(address));
    let streamer = Streamer::new(options).unwrap();
    for i in 0..50 {
        // Puts after the failure is known are refused, not lost.
        let _ = streamer.put(&format!("d/{i}"), &[0u8; 1000], Some(i));
    }
    let stats = streamer.close();
    server.join().unwrap();
    assert_eq!(stats.files_acknowledged, 0);
    assert_eq!(stats.files_failed, stats.files_queued);
    assert!(stats.files_queued >= 1);
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len() as u64, stats.files_queued);
    assert!(seen.values().all(|v| v.len() == 1 && v[0].1.is_err()));
}

#[test]
fn a_panicking_filter_fails_that_file_and_nothing_else() {
    let servers = start_servers(1);
    let (options, seen) = recording(StreamerOptions::new().servers(addresses(&servers)).filter(
        FnFilter(|file: &FileInfo<'_>, data: &[u8], out: &mut Vec<u8>| {
            if file.name.ends_with("boom") {
                panic!("a bug in a filter");
            }
            out.extend_from_slice(data);
            Ok(())
        }),
    ));
    let streamer = Streamer::new(options).unwrap();
    for name in ["p/a", "p/boom", "p/b"] {
        streamer.put(name, b"x", None).unwrap();
    }
    let stats = streamer.close();
    assert_eq!((stats.files_acknowledged, stats.files_failed), (2, 1));
    let failure = seen.lock().unwrap()["p/boom"][0].1.clone().unwrap_err();
    assert!(failure.contains("panicked: a bug in a filter"), "{failure}");
    assert_eq!(servers[0].read("p/b").as_deref(), Some(&b"x"[..]));
}

#[test]
fn a_panicking_completion_callback_does_not_stop_the_stream() {
    let servers = start_servers(1);
    let calls = Arc::new(Mutex::new(0));
    let counter = Arc::clone(&calls);
    let options = StreamerOptions::new()
        .servers(addresses(&servers))
        .on_complete(move |_| {
            *counter.lock().unwrap() += 1;
            panic!("a bug in a callback");
        });
    let streamer = Streamer::new(options).unwrap();
    for i in 0..20 {
        streamer.put(&format!("cb/{i}"), b"x", Some(i)).unwrap();
    }
    let stats = streamer.close();
    assert_eq!(stats.files_acknowledged, 20);
    assert_eq!(*calls.lock().unwrap(), 20);
}

#[test]
fn prepared_buffers_stay_within_the_queue_bytes_and_carry_exact_copies() {
    let servers = start_servers(2);
    // Queue byte limit 3 MiB per server: the pool may hold 6 MiB in all.
    let options = StreamerOptions::new()
        .servers(addresses(&servers))
        .queue_limits(16, 3 << 20);
    let streamer = Streamer::new(options).unwrap();
    assert_eq!(streamer.prepare_buffers(1000, 4), 0, "small files: no pool");
    assert_eq!(streamer.prepare_buffers(2 << 20, 2), 2);
    assert_eq!(streamer.prepare_buffers(2 << 20, 5), 1, "6 MiB in all");
    // Prepared buffers hold zeros; each put must carry its own bytes, also
    // shorter ones, and more files than buffers.
    for i in 0..8 {
        let len = (2 << 20) - i * 100_003;
        streamer
            .put(&format!("prepared/f{i}"), &body(i, len), Some(i as i64))
            .unwrap();
    }
    let stats = streamer.close();
    assert_eq!((stats.files_acknowledged, stats.files_failed), (8, 0));
    for i in 0..8 {
        // On either server (placement is not the point; a full server
        // silent for a moment is passed over).
        let stored: Vec<_> = servers
            .iter()
            .filter_map(|s| s.read(&format!("prepared/f{i}")))
            .collect();
        assert!(
            stored == [body(i, (2 << 20) - i * 100_003)],
            "prepared/f{i}"
        );
    }
}
