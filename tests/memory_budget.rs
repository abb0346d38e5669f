//! The memory budget (`StreamerOptions::memory_limit`): one bound on every
//! byte a streamer holds for files, whatever the number of servers; and the
//! descriptor check at start (`RLIMIT_NOFILE`).
//!
//! A "stopped" server here is a listening socket that is never accepted
//! from: the kernel takes the connection and buffers what fits, nothing is
//! ever answered (a server stopped with SIGSTOP looks the same to the client).
//! Peak memory is measured in a child process (this test binary run again),
//! from its own `VmHWM`.

mod common;

use std::net::TcpListener;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{Action, FakeServer, TestServer};
use pyme_streaming::filter::{FileInfo, FilterError, FnFilter};
use pyme_streaming::{Error, Streamer, StreamerOptions};

const KIB: u64 = 1024;
const MIB: u64 = 1024 * 1024;

/// Servers that take connections and never read or answer.
struct Stopped(Vec<TcpListener>);

impl Stopped {
    fn new(n: usize) -> Stopped {
        Stopped(
            (0..n)
                .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
                .collect(),
        )
    }

    fn addresses(&self) -> Vec<String> {
        self.0
            .iter()
            .map(|l| l.local_addr().unwrap().to_string())
            .collect()
    }
}

/// Fail-fast options against `servers`, with a response timeout far beyond
/// any test (nothing is failed by silence while the test runs).
fn fail_fast(servers: Vec<String>, limit: u64) -> StreamerOptions {
    StreamerOptions::new()
        .servers(servers)
        .memory_limit(limit)
        .put_timeout(Some(Duration::ZERO))
        .response_timeout(Duration::from_secs(120))
}

/// Waits (up to a minute, for a loaded machine) until `check` holds: the
/// last reference to a file's bytes is dropped just after its outcome.
fn wait_until(what: &str, check: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !check() {
        assert!(Instant::now() < deadline, "never: {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[test]
fn zero_copy_and_copying_puts_both_count_and_a_full_budget_refuses_like_a_full_queue() {
    let stopped = Stopped::new(4);
    let limit = 4 * MIB;
    let streamer = Streamer::new(fail_fast(stopped.addresses(), limit)).unwrap();
    let frame = vec![9u8; MIB as usize];
    streamer.put("a/copied0", &frame, None).unwrap();
    streamer
        .put_bytes("a/zero0", Bytes::from(frame.clone()), None)
        .unwrap();
    assert!(streamer.memory_in_use() >= 2 * MIB);
    streamer.put("a/copied1", &frame, None).unwrap();
    streamer
        .put_bytes("a/zero1", Bytes::from(frame.clone()), None)
        .unwrap();
    assert_eq!(streamer.memory_in_use(), limit);
    // Every server's queue has room (256 MiB each): the budget refuses.
    for refused in [
        streamer.put("a/copied2", &frame, None),
        streamer.put_bytes("a/zero2", Bytes::from(frame.clone()), None),
        streamer.put_stream(1, "a/stream", &frame),
    ] {
        assert!(
            matches!(refused, Err(Error::MemoryFull { held, limit: l }) if held == limit && l == limit),
            "{refused:?}"
        );
    }
    // A small file too: nothing passes a full budget.
    assert!(matches!(
        streamer.put("a/small", &[1u8; 10], None),
        Err(Error::MemoryFull { .. })
    ));
    assert_eq!(streamer.stats().dropped, 4);
    let closed = streamer.close_timeout(Duration::from_millis(100));
    let stats = closed.err().unwrap().stats;
    assert_eq!(stats.files_queued, 4);
}

#[test]
fn files_moved_by_failover_keep_within_the_budget() {
    // Two stopped servers; the first one's connection is then cut (its
    // listener closed with the connection unaccepted: the kernel resets
    // it), so its files move to the second, past that one's queue limit.
    let mut first = Stopped::new(1);
    let second = Stopped::new(1);
    let servers = vec![first.addresses()[0].clone(), second.addresses()[0].clone()];
    let limit = 6 * MIB;
    let options = fail_fast(servers, limit).queue_limits(4, 64 * MIB);
    let streamer = Streamer::new(options).unwrap();
    let frame = vec![3u8; MIB as usize];
    // Four files on the first server (its queue limit), two on the second.
    for i in 0..6 {
        streamer
            .put_stream(usize::from(i >= 4), &format!("f/{i}"), &frame)
            .unwrap();
    }
    assert!(matches!(
        streamer.put_stream(1, "f/6", &frame),
        Err(Error::MemoryFull { .. })
    ));
    drop(first.0.pop());
    wait_until("the first server's files moved to the second", || {
        assert!(streamer.memory_in_use() <= limit);
        streamer.stats().rerouted == 4
    });
    assert!(streamer.memory_in_use() <= limit);
    assert!(matches!(
        streamer.put("f/more", &frame, None),
        Err(Error::MemoryFull { .. })
    ));
    let stats = streamer
        .close_timeout(Duration::from_millis(100))
        .err()
        .unwrap()
        .stats;
    assert_eq!(stats.files_queued, 6);
}

/// Outcomes of every kind give their room back: acknowledged, refused by the
/// server, failed by the filter, given up by a bounded close.
#[test]
fn the_budget_comes_back_to_zero_on_every_outcome() {
    let good = TestServer::start();
    let refusing = FakeServer::start(|_, _| Action::Answer(403));
    let limit = 2 * MIB;
    let options = StreamerOptions::new()
        .servers([good.address(), refusing.address.clone()])
        .memory_limit(limit)
        .failover(false)
        .filter(FnFilter(
            |file: &FileInfo<'_>, data: &[u8], out: &mut Vec<u8>| {
                if file.name.ends_with("bad") {
                    return Err(FilterError("refused".into()));
                }
                out.extend_from_slice(data);
                Ok(())
            },
        ));
    let streamer = Streamer::new(options).unwrap();
    let frame = vec![5u8; 300 * KIB as usize];
    for i in 0..200 {
        let name = if i % 7 == 0 {
            format!("r/{i}bad")
        } else {
            format!("r/{i}")
        };
        if i % 2 == 0 {
            streamer.put(&name, &frame, None).unwrap();
        } else {
            streamer
                .put_bytes(&name, Bytes::from(frame[..1000].to_vec()), None)
                .unwrap();
        }
        assert!(streamer.memory_in_use() <= limit + 300 * KIB);
    }
    streamer.flush(None).unwrap();
    let stats = streamer.stats();
    assert!(
        stats.files_acknowledged > 0 && stats.files_failed > 0,
        "{stats:?}"
    );
    // Only free copy buffers may stay (at most the budget); none holds a file.
    wait_until("every file's room given back", || {
        streamer.memory_in_use() <= limit
    });
    let zero_copy_only = {
        let options = fail_fast(vec![good.address()], limit);
        let other = Streamer::new(options).unwrap();
        for i in 0..50 {
            other
                .put_bytes(&format!("z/{i}"), Bytes::from(vec![1u8; 4096]), None)
                .unwrap();
        }
        other.flush(None).unwrap();
        wait_until("zero-copy files given back", || other.memory_in_use() == 0);
        other.close()
    };
    assert_eq!(zero_copy_only.files_acknowledged, 50);
    streamer.close();
}

#[test]
fn a_budget_smaller_than_a_file_sends_one_file_at_a_time() {
    for limit in [0, 1, 100 * KIB] {
        let server = TestServer::start();
        let in_use = Arc::new(AtomicU64::new(0));
        let options = StreamerOptions::new()
            .server(server.address())
            .memory_limit(limit);
        let streamer = Streamer::new(options).unwrap();
        let frame = vec![7u8; 512 * KIB as usize];
        for i in 0..20 {
            streamer.put(&format!("one/{i}"), &frame, None).unwrap();
            in_use.fetch_max(streamer.memory_in_use(), Ordering::Relaxed);
        }
        let stats = streamer.close();
        assert_eq!(stats.files_acknowledged, 20, "limit {limit}");
        assert!(
            in_use.load(Ordering::Relaxed) <= 512 * KIB,
            "one file at a time (limit {limit})"
        );
        assert_eq!(server.read("one/19").unwrap(), frame);
    }
    // And fail-fast refuses a second file while one is held.
    let stopped = Stopped::new(1);
    let streamer = Streamer::new(fail_fast(stopped.addresses(), 1)).unwrap();
    streamer.put("x/0", &[1u8; 10], None).unwrap();
    assert!(matches!(
        streamer.put("x/1", &[1u8; 10], None),
        Err(Error::MemoryFull { held: 10, limit: 1 })
    ));
    let _ = streamer.close_timeout(Duration::from_millis(50));
}

#[test]
fn an_unlimited_budget_leaves_the_queue_limits_in_charge() {
    let stopped = Stopped::new(1);
    let options = fail_fast(stopped.addresses(), u64::MAX).queue_limits(3, u64::MAX);
    let streamer = Streamer::new(options).unwrap();
    for i in 0..3 {
        streamer
            .put(&format!("u/{i}"), &vec![1u8; 100 * KIB as usize], None)
            .unwrap();
    }
    assert!(matches!(
        streamer.put("u/3", &[1u8; 10], None),
        Err(Error::QueueFull { .. })
    ));
    let _ = streamer.close_timeout(Duration::from_millis(50));
}

/// Many threads put at once into a full budget: none gets past it, each
/// blocked put ends at its timeout, and the room held never passes the limit.
#[test]
fn puts_from_many_threads_never_pass_a_full_budget() {
    let stopped = Stopped::new(8);
    let limit = 4 * MIB;
    let options =
        fail_fast(stopped.addresses(), limit).put_timeout(Some(Duration::from_millis(20)));
    let streamer = Streamer::new(options).unwrap();
    let accepted = AtomicUsize::new(0);
    let refused = AtomicUsize::new(0);
    let most = AtomicU64::new(0);
    std::thread::scope(|scope| {
        for t in 0..8 {
            let (streamer, accepted, refused, most) = (&streamer, &accepted, &refused, &most);
            scope.spawn(move || {
                let frame = vec![t as u8; 512 * KIB as usize];
                for i in 0..25 {
                    let put = if i % 2 == 0 {
                        streamer.put(&format!("m/{t}/{i}"), &frame, None)
                    } else {
                        streamer.put_bytes(&format!("m/{t}/{i}"), Bytes::from(frame.clone()), None)
                    };
                    match put {
                        Ok(()) => accepted.fetch_add(1, Ordering::Relaxed),
                        Err(Error::MemoryFull { .. }) => refused.fetch_add(1, Ordering::Relaxed),
                        Err(other) => panic!("{other}"),
                    };
                    most.fetch_max(streamer.memory_in_use(), Ordering::Relaxed);
                }
            });
        }
    });
    assert_eq!(
        accepted.load(Ordering::Relaxed),
        8,
        "4 MiB of 512 KiB files"
    );
    assert_eq!(refused.load(Ordering::Relaxed), 200 - 8);
    assert!(most.load(Ordering::Relaxed) <= limit);
    let _ = streamer.close_timeout(Duration::from_millis(50));
}

/// A filter whose output is larger than its input (PZF of noise grows a
/// little; this one doubles it): the output is counted while it is sent,
/// and every file is delivered.
#[test]
fn an_expanding_filter_is_counted_and_delivers_everything() {
    let server = TestServer::start();
    let limit = 2 * MIB;
    let most = Arc::new(Mutex::new(0u64));
    let options = StreamerOptions::new()
        .server(server.address())
        .memory_limit(limit)
        .filter(FnFilter(
            |_: &FileInfo<'_>, data: &[u8], out: &mut Vec<u8>| {
                out.extend_from_slice(data);
                out.extend_from_slice(data);
                Ok(())
            },
        ));
    let streamer = Streamer::new(options).unwrap();
    let noise: Vec<u8> = (0..MIB as usize).map(|i| (i * 7919 % 251) as u8).collect();
    for i in 0..12 {
        streamer.put(&format!("e/{i}"), &noise, None).unwrap();
        let now = streamer.memory_in_use();
        let mut most = most.lock().unwrap();
        *most = (*most).max(now);
    }
    let stats = streamer.close();
    assert_eq!(stats.files_acknowledged, 12);
    assert_eq!(server.read("e/11").unwrap().len(), 2 * MIB as usize);
    // Files within the budget, plus one filter output (2 MiB) at most.
    assert!(*most.lock().unwrap() <= limit + 2 * MIB);
}

/// PZF (Huffman) of noise: every 16-bit value equally likely, so the coded
/// frame is a little larger than the raw one. Counted, delivered, and the
/// budget comes back.
#[test]
fn pzf_of_noise_is_delivered_within_the_budget_plus_one_output() {
    use pyme_streaming::filter::pzf::PzfFilter;
    use pyme_streaming::pzf::{DataFormat, EncodeParams};
    let server = TestServer::start();
    let (width, height) = (512u32, 512u32);
    let frame_bytes = u64::from(width * height * 2);
    let limit = 3 * frame_bytes;
    let filter = PzfFilter::new(EncodeParams::new(DataFormat::U16, width, height)).unwrap();
    let options = StreamerOptions::new()
        .server(server.address())
        .memory_limit(limit)
        .filter(filter);
    let streamer = Streamer::new(options).unwrap();
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let noise: Vec<u8> = (0..frame_bytes)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect();
    let mut most = 0;
    for i in 0..10 {
        streamer
            .put(&format!("n/{i}.pzf"), &noise, Some(i))
            .unwrap();
        most = most.max(streamer.memory_in_use());
    }
    streamer.flush(None).unwrap();
    let stats = streamer.stats();
    assert_eq!(stats.files_acknowledged, 10);
    assert!(
        stats.bytes_sent > stats.bytes_queued,
        "noise grows: {stats:?}"
    );
    // Files within the budget, plus one output (a little over a frame).
    assert!(most <= limit + 2 * frame_bytes, "{most}");
    wait_until("the room of every file given back", || {
        streamer.memory_in_use() <= limit
    });
    streamer.close();
}

/// The acceptance of issue 27: 64 stopped servers, 8 MiB copying puts,
/// fail-fast: the process's peak memory stays within the budget plus 64 MiB
/// (without a budget the 64 default queues would take 16 GiB).
#[test]
fn peak_memory_with_64_stopped_servers_stays_within_the_budget() {
    const CHILD: &str = "PYME_BUDGET_CHILD";
    const LIMIT: u64 = 256 * MIB;
    if let Some(limit) = std::env::var_os(CHILD) {
        // The budget from the parent (another one by hand, to compare).
        let limit: u64 = limit.to_str().unwrap().parse().unwrap();
        let stopped = Stopped::new(64);
        let streamer = Streamer::new(fail_fast(stopped.addresses(), limit)).unwrap();
        let frame: Vec<u8> = (0..8 * MIB as usize).map(|i| i as u8).collect();
        let mut accepted = 0u64;
        for i in 0..400 {
            if streamer.put(&format!("p/{i}"), &frame, None).is_ok() {
                accepted += 1;
            }
        }
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        let hwm = status
            .lines()
            .find_map(|line| line.strip_prefix("VmHWM:"))
            .map(|kib| {
                kib.trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse::<u64>()
                    .unwrap()
            });
        println!("PEAK accepted={accepted} vmhwm_kib={}", hwm.unwrap_or(0));
        let _ = streamer.close_timeout(Duration::from_millis(100));
        return;
    }
    if !cfg!(target_os = "linux") {
        return common::skip::skip("peak_memory_with_64_stopped_servers", "VmHWM is Linux's");
    }
    let output = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "peak_memory_with_64_stopped_servers_stays_within_the_budget",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD, LIMIT.to_string())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let line = stdout
        .lines()
        .find_map(|l| l.split_once("PEAK ").map(|(_, figures)| figures))
        .expect("the child's figures");
    let field = |key: &str| -> u64 {
        line.split_whitespace()
            .find_map(|f| f.strip_prefix(key))
            .unwrap()
            .parse()
            .unwrap()
    };
    let (accepted, peak) = (field("accepted="), field("vmhwm_kib=") * KIB);
    eprintln!(
        "64 stopped servers, budget 256 MiB: {accepted} files of 8 MiB taken, peak RSS {} MiB",
        peak / MIB
    );
    assert_eq!(accepted, LIMIT / (8 * MIB));
    assert!(peak <= LIMIT + 64 * MIB, "peak {} MiB", peak / MIB);
}

/// Issue 27's acceptance for descriptors: four streamers of 100 servers in
/// one process whose limit is 1024 descriptors (a child process, this test
/// binary again, lowers its own limit). Each either starts or fails at start
/// with `Error::Limits` saying what to raise, and every file of the ones that
/// started is acknowledged: nothing fails in the middle of the stream. The
/// 100 servers run in this (parent) process.
#[cfg(unix)]
#[test]
fn four_streamers_of_100_servers_under_1024_descriptors_start_or_fail_at_start() {
    const CHILD: &str = "PYME_LIMITS_CHILD_SERVERS";
    if let Some(servers) = std::env::var_os(CHILD) {
        let servers: Vec<String> = servers
            .to_str()
            .unwrap()
            .split(',')
            .map(str::to_owned)
            .collect();
        let limit = libc::rlimit {
            rlim_cur: 1024,
            rlim_max: 1024,
        };
        // SAFETY: a plain system call on this process.
        assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) }, 0);
        let mut started = Vec::new();
        let mut refused = 0;
        for camera in 0..4 {
            let options = StreamerOptions::new()
                .servers(servers.iter().cloned())
                .require_all_servers(true);
            match Streamer::new(options) {
                Ok(streamer) => started.push((camera, streamer)),
                Err(Error::Limits(message)) => {
                    assert!(message.contains("ulimit -n"), "{message}");
                    println!("REFUSED {message}");
                    refused += 1;
                }
                Err(other) => panic!("camera {camera}: {other}"),
            }
        }
        for (camera, streamer) in &started {
            for i in 0..300 {
                streamer
                    .put(&format!("c{camera}/{i}"), &[*camera as u8; 4096], None)
                    .unwrap();
            }
        }
        let mut acknowledged = 0;
        for (_, streamer) in started.drain(..) {
            let stats = streamer.close();
            assert_eq!(stats.files_failed, 0, "{stats:?}");
            assert_eq!(stats.reconnects, 0, "{stats:?}");
            acknowledged += stats.files_acknowledged;
        }
        println!(
            "LIMITS started={} refused={refused} acknowledged={acknowledged}",
            4 - refused
        );
        return;
    }
    let servers: Vec<pyme_streaming::server::DataServer> = (0..100)
        .map(|_| {
            pyme_streaming::server::DataServer::start(pyme_streaming::server::ServerConfig {
                root: std::env::temp_dir(),
                port: 0,
                discard: true,
                ..Default::default()
            })
            .unwrap()
        })
        .collect();
    let addresses: Vec<String> = servers.iter().map(|s| s.local_addr().to_string()).collect();
    let output = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "four_streamers_of_100_servers_under_1024_descriptors_start_or_fail_at_start",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD, addresses.join(","))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let line = stdout
        .lines()
        .find_map(|l| l.split_once("LIMITS ").map(|(_, figures)| figures))
        .expect("the child's figures");
    eprintln!("under ulimit -n 1024: {line}");
    for refused in stdout.lines().filter_map(|l| l.split_once("REFUSED ")) {
        eprintln!("refused: {}", refused.1);
    }
    let field = |key: &str| -> u64 {
        line.split_whitespace()
            .find_map(|f| f.strip_prefix(key))
            .unwrap()
            .parse()
            .unwrap()
    };
    let started = field("started=");
    assert!(started >= 1, "one streamer of 100 servers fits in 1024");
    assert!(started < 4, "four do not (4 x 300 sockets)");
    assert_eq!(field("acknowledged="), started * 300);
    for server in servers {
        server.shutdown();
    }
}
