//! Watching a stream while `put`, `bench` and `demo` run: a thread that reads
//! every server's counters (`server_stats`, no lock a put takes) a few times
//! a second, writes the progress line's message (servers up of all, files
//! failed) and keeps each server's acknowledged bytes over time for the
//! report (`report.rs`) and the `--json` output.
//!
//! It reads through a `StatsProbe`, so it may go on while the streamer
//! closes; the subcommands finish it after a flush, before the close (which
//! takes every server down).
//! Its thread is named and joined by [`Watch::finish`].
//!
//! Out of scope: drawing (see `report`), the streamer itself.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use indicatif::ProgressBar;
use pyme_streaming::{ServerState, ServerStats, StatsProbe, Streamer};

use super::Tally;

/// How often the counters are read.
const PERIOD: Duration = Duration::from_millis(200);

/// The most samples kept: beyond it every other one is dropped (the first and
/// the newest stay), so a run of any length holds a bounded count, evenly
/// enough spread for the report's chart (at most 400 points) and rates.
const MAX_SAMPLES: usize = 2000;

/// One reading of every server: seconds since the start, and each server's
/// acknowledged bytes then.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub seconds: f64,
    pub bytes_acknowledged: Vec<u64>,
}

/// What a watch saw: the servers' names, their readings over time, and their
/// last counters.
#[derive(Debug, Clone)]
pub struct Watched {
    pub servers: Vec<String>,
    pub samples: Vec<Sample>,
    pub last: Vec<ServerStats>,
}

/// The progress line's message: servers up of all, and files failed.
pub fn progress_message(stats: &[ServerStats], failed: u64) -> String {
    let up = stats.iter().filter(|s| s.state == ServerState::Up).count();
    format!("{up}/{} servers up, {failed} failed", stats.len())
}

/// The watching thread of one run.
pub struct Watch {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Watched>,
}

impl Watch {
    /// Starts watching `streamer`, updating `bar` (its message, and its
    /// position from `tally`).
    pub fn start(streamer: &Streamer, bar: &ProgressBar, tally: &Arc<Tally>) -> Watch {
        let probe = streamer.stats_probe();
        let servers: Vec<String> = streamer.servers().map(str::to_owned).collect();
        let stop = Arc::new(AtomicBool::new(false));
        let (bar, tally, stopped) = (bar.clone(), Arc::clone(tally), Arc::clone(&stop));
        let thread = std::thread::Builder::new()
            .name("pyme-cli-watch".into())
            .spawn(move || watch(probe, servers, &bar, &tally, &stopped))
            .expect("the watch thread starts");
        Watch { stop, thread }
    }

    /// Takes a last reading and returns everything seen.
    pub fn finish(self) -> Watched {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.thread().unpark();
        self.thread.join().expect("the watch thread does not panic")
    }
}

fn read_all(probe: &StatsProbe, n: usize) -> Vec<ServerStats> {
    (0..n).filter_map(|i| probe.server_stats(i)).collect()
}

fn watch(
    probe: StatsProbe,
    servers: Vec<String>,
    bar: &ProgressBar,
    tally: &Tally,
    stop: &AtomicBool,
) -> Watched {
    let start = Instant::now();
    let n = servers.len();
    let mut samples = vec![Sample {
        seconds: 0.0,
        bytes_acknowledged: vec![0; n],
    }];
    loop {
        let stopping = stop.load(Ordering::SeqCst);
        let now = read_all(&probe, n);
        keep(
            &mut samples,
            Sample {
                seconds: start.elapsed().as_secs_f64(),
                bytes_acknowledged: now.iter().map(|s| s.bytes_acknowledged).collect(),
            },
        );
        let failed = tally.failed.load(Ordering::Relaxed);
        bar.set_message(progress_message(&now, failed));
        bar.set_position(tally.done.load(Ordering::Relaxed));
        if stopping {
            return Watched {
                servers,
                samples,
                last: now,
            };
        }
        std::thread::park_timeout(PERIOD);
    }
}

/// Adds `sample`, halving the samples held when they are more than [`MAX_SAMPLES`].
fn keep(samples: &mut Vec<Sample>, sample: Sample) {
    samples.push(sample);
    if samples.len() > MAX_SAMPLES {
        let newest = samples.pop();
        let mut index = 0;
        samples.retain(|_| {
            index += 1;
            index % 2 == 1
        });
        samples.extend(newest);
    }
}

impl Watched {
    /// Per server, for `--json`: its address and last counters.
    pub fn servers_json(&self) -> serde_json::Value {
        let rows: Vec<serde_json::Value> = self
            .servers
            .iter()
            .zip(&self.last)
            .map(|(server, s)| {
                serde_json::json!({
                    "server": server,
                    "state": s.state.name(),
                    "files_acknowledged": s.files_acknowledged,
                    "bytes_acknowledged": s.bytes_acknowledged,
                    "files_failed": s.files_failed,
                    "bytes_failed": s.bytes_failed,
                    "files_sent": s.files_sent,
                    "bytes_sent": s.bytes_sent,
                    "reconnects": s.reconnects,
                    "retries": s.retries,
                    "moved_away": s.moved_away,
                })
            })
            .collect();
        serde_json::Value::Array(rows)
    }

    /// Servers up at the end, of all.
    pub fn servers_up(&self) -> usize {
        self.last
            .iter()
            .filter(|s| s.state == ServerState::Up)
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(state: ServerState) -> ServerStats {
        ServerStats {
            state,
            files_acknowledged: 0,
            bytes_acknowledged: 0,
            files_failed: 0,
            bytes_failed: 0,
            queue_files: 0,
            queue_bytes: 0,
            in_flight_files: 0,
            in_flight_bytes: 0,
            files_sent: 0,
            bytes_sent: 0,
            reconnects: 0,
            retries: 0,
            moved_away: 0,
        }
    }

    #[test]
    fn the_progress_message_counts_only_servers_that_are_up() {
        let now = [
            stats(ServerState::Up),
            stats(ServerState::Resting),
            stats(ServerState::Down),
            stats(ServerState::Up),
        ];
        assert_eq!(progress_message(&now, 7), "2/4 servers up, 7 failed");
    }

    #[test]
    fn samples_stay_bounded_however_long_the_run() {
        let mut samples = Vec::new();
        for tick in 0..100_000u64 {
            keep(
                &mut samples,
                Sample {
                    seconds: tick as f64 * 0.2,
                    bytes_acknowledged: vec![tick],
                },
            );
            assert!(samples.len() <= MAX_SAMPLES, "{} at {tick}", samples.len());
        }
        assert_eq!(samples[0].seconds, 0.0, "the first kept");
        assert_eq!(
            samples.last().unwrap().bytes_acknowledged,
            [99_999],
            "the newest kept"
        );
        assert!(samples.len() > MAX_SAMPLES / 2, "{}", samples.len());
        assert!(samples.windows(2).all(|w| w[0].seconds < w[1].seconds));
    }
}
