//! What polling the per-server counters costs a camera's puts (issue 25, item 4).
//!
//! One thread puts 64 KiB files as fast as it can into a streamer of three
//! discarding data servers (in this process, on loopback), measuring each put
//! (p99) and the whole run's MB/s (put to flush). Four kinds of run:
//! `alone`; `polled`: another thread calls `Streamer::server_stats` 1000
//! times a second, one call per wake-up on a fixed 1 ms schedule (round the
//! servers); `refresh`: the same 1000 calls a second made as a UI refreshing
//! 50 times a second makes them, 20 calls per wake-up; `woken`: the polled
//! thread's 1000 wake-ups a second without the call (the cost of a thread
//! waking that often, which such a UI loop has anyway). The runs are
//! interleaved (alone, woken, polled, refresh, alone...) so that the load of a
//! shared machine hits all alike; the medians of `RUNS` (5) of each are
//! printed, and the medians of the per-round ratios.
//!
//! Run: `cargo bench --bench server_stats_poll` (under a minute). `FILES`
//! (default 10000) and `RUNS` change the size; `FILES=50000 RUNS=15` (about a
//! minute on an idle machine) gives steadier tails. Results:
//! docs/PERFORMANCE.md, "Polling server_stats beside puts".

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use pyme_streaming::server::{DataServer, ServerConfig};
use pyme_streaming::{Streamer, StreamerOptions};

const FILE_BYTES: usize = 64 * 1024;
const POLLS_PER_SECOND: u32 = 1000;
/// `refresh` mode: the calls of one refresh of a UI (50 refreshes a second).
const REFRESH_CALLS: usize = 20;

struct Run {
    p99: Duration,
    mb_per_s: f64,
    polls: u64,
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index]
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(|a, b| a.partial_cmp(b).unwrap());
    values[values.len() / 2]
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    Alone,
    Woken,
    Polled,
    Refresh,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Alone => "alone",
            Mode::Woken => "woken",
            Mode::Polled => "polled",
            Mode::Refresh => "refresh",
        }
    }
}

/// Wakes `wakes_per_second` times on a fixed schedule until `stop`, making
/// `calls_per_wake` `server_stats` calls each time (round the servers);
/// returns the calls made (or, with no call, the wake-ups).
fn poll(
    streamer: &Streamer,
    stop: &AtomicBool,
    calls_per_wake: usize,
    wakes_per_second: u32,
) -> u64 {
    let period = Duration::from_secs(1) / wakes_per_second;
    let n = streamer.n_servers();
    let start = Instant::now();
    let mut wakes = 0u64;
    let mut calls = 0u64;
    let mut acknowledged = 0u64;
    while !stop.load(Ordering::Relaxed) {
        for _ in 0..calls_per_wake {
            let stats = streamer.server_stats(calls as usize % n).unwrap();
            acknowledged = acknowledged.wrapping_add(stats.files_acknowledged);
            calls += 1;
        }
        wakes += 1;
        let next = start + period * wakes as u32;
        if let Some(wait) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
    }
    std::hint::black_box(acknowledged);
    if calls_per_wake == 0 {
        wakes
    } else {
        calls
    }
}

fn one_run(servers: &[String], files: usize, mode: Mode, run: usize) -> Run {
    let streamer = Streamer::new(StreamerOptions::new().servers(servers.iter().cloned())).unwrap();
    let frame = vec![7u8; FILE_BYTES];
    let stop = AtomicBool::new(false);
    let (streamer_ref, stop_ref) = (&streamer, &stop);
    let (samples, elapsed, polls) = std::thread::scope(|scope| {
        let (calls_per_wake, wakes_per_second) = match mode {
            Mode::Alone => (0, 0),
            Mode::Woken => (0, POLLS_PER_SECOND),
            Mode::Polled => (1, POLLS_PER_SECOND),
            Mode::Refresh => (REFRESH_CALLS, POLLS_PER_SECOND / REFRESH_CALLS as u32),
        };
        let poller = (mode != Mode::Alone).then(|| {
            scope.spawn(move || poll(streamer_ref, stop_ref, calls_per_wake, wakes_per_second))
        });
        let start = Instant::now();
        let samples: Vec<Duration> = (0..files)
            .map(|i| {
                let put = Instant::now();
                streamer
                    .put(
                        &format!("poll/r{run}/{}/f{i:05}", mode.name()),
                        &frame,
                        None,
                    )
                    .unwrap();
                put.elapsed()
            })
            .collect();
        streamer.flush(None).unwrap();
        let elapsed = start.elapsed();
        stop.store(true, Ordering::Relaxed);
        let polls = poller.map_or(0, |poller| poller.join().unwrap());
        (samples, elapsed, polls)
    });
    let stats = streamer.close();
    assert_eq!(stats.files_acknowledged, files as u64, "{stats:?}");
    let mut samples = samples;
    samples.sort();
    Run {
        p99: percentile(&samples, 0.99),
        mb_per_s: (files * FILE_BYTES) as f64 / elapsed.as_secs_f64() / 1e6,
        polls: polls * 1000 / elapsed.as_millis().max(1) as u64,
    }
}

/// The cost of one `server_stats` call, on an idle streamer: the part of a
/// poll that a put could feel (through the cache lines it reads).
fn call_cost(servers: &[String]) {
    let streamer = Streamer::new(StreamerOptions::new().servers(servers.iter().cloned())).unwrap();
    let calls = 1_000_000usize;
    let start = Instant::now();
    let mut acknowledged = 0u64;
    for i in 0..calls {
        acknowledged += streamer.server_stats(i % 3).unwrap().files_acknowledged;
    }
    let elapsed = start.elapsed();
    std::hint::black_box(acknowledged);
    println!(
        "server_stats: {:.1} ns per call ({calls} calls); at 1000 calls/s that is {:.4} % of one core",
        elapsed.as_nanos() as f64 / calls as f64,
        elapsed.as_secs_f64() / calls as f64 * 1000.0 * 100.0
    );
    streamer.close();
}

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

fn main() {
    if std::env::args().any(|arg| arg == "--list") {
        return;
    }
    let files = env_number("FILES", 10_000);
    let runs = env_number("RUNS", 5);
    let root = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let servers: Vec<DataServer> = (0..3)
        .map(|_| {
            DataServer::start(ServerConfig {
                root: root.path().to_owned(),
                port: 0,
                discard: true,
                ..ServerConfig::default()
            })
            .unwrap()
        })
        .collect();
    let addresses: Vec<String> = servers.iter().map(|s| s.local_addr().to_string()).collect();
    call_cost(&addresses);
    // One run of each to warm up (buffers, connections, page cache), not counted.
    let modes = [Mode::Alone, Mode::Woken, Mode::Polled, Mode::Refresh];
    for mode in modes {
        one_run(&addresses, files / 4, mode, 0);
    }
    let mut results: Vec<(Mode, Vec<Run>)> =
        modes.into_iter().map(|mode| (mode, Vec::new())).collect();
    for run in 1..=runs {
        for (mode, runs_of_mode) in results.iter_mut() {
            let result = one_run(&addresses, files, *mode, run);
            println!(
                "run {run} {:<7} put p99 {:>8.3} ms  {:>8.1} MB/s  calls (woken: wake-ups)/s {}",
                mode.name(),
                result.p99.as_secs_f64() * 1e3,
                result.mb_per_s,
                result.polls,
            );
            runs_of_mode.push(result);
        }
    }
    println!(
        "medians of {runs} runs each, {files} files of {} KiB to 3 discarding servers:",
        FILE_BYTES / 1024
    );
    for (mode, runs_of_mode) in &results {
        println!(
            "  {:<7} put p99 {:.3} ms, {:.1} MB/s, {:.0} calls (woken: wake-ups)/s",
            mode.name(),
            median(
                runs_of_mode
                    .iter()
                    .map(|r| r.p99.as_secs_f64() * 1e3)
                    .collect()
            ),
            median(runs_of_mode.iter().map(|r| r.mb_per_s).collect()),
            median(runs_of_mode.iter().map(|r| r.polls as f64).collect()),
        );
    }
    let ratio = |a: &[Run], b: &[Run], of: fn(&Run) -> f64| {
        median(a.iter().zip(b).map(|(a, b)| of(a) / of(b)).collect())
    };
    let p99 = |r: &Run| r.p99.as_secs_f64();
    let rate = |r: &Run| r.mb_per_s;
    let (alone, woken, polled, refresh) =
        (&results[0].1, &results[1].1, &results[2].1, &results[3].1);
    for (label, a, b) in [
        ("polled/alone", polled, alone),
        ("refresh/alone", refresh, alone),
        ("woken/alone", woken, alone),
        ("polled/woken", polled, woken),
    ] {
        println!(
            "  {label:<13} (median of the per-round ratios): p99 x{:.3}, MB/s x{:.3}",
            ratio(a, b, p99),
            ratio(a, b, rate)
        );
    }
    drop(servers);
}
