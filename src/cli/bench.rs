//! `pyme-stream bench`: stream synthetic files and report throughput, put
//! latency, CPU time, peak memory and losses.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use pyme_streaming::{Bytes, Streamer};

use super::camera::Camera;
use super::report::{self, Report};
use super::watch::Watch;
use super::{progress_bar, summary_line, CliResult, StreamArgs, Tally};

#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    #[command(flatten)]
    pub stream: StreamArgs,
    /// Number of files.
    #[arg(long, default_value_t = 1000)]
    pub count: u64,
    /// Size of each file in bytes [default: 8 MiB, or the frame size of --shape].
    #[arg(long)]
    pub size: Option<usize>,
    /// Files are named PREFIX/frameNNNNN.pzf.
    #[arg(long, default_value = "bench")]
    pub prefix: String,
    /// Body of each file: `random` (one random buffer for all), `index` (the
    /// decimal file number and a newline, repeated and cut to SIZE), or
    /// `camera` (uint16 frames of --shape with photon noise, as a microscope
    /// camera makes them).
    #[arg(long, value_enum, default_value_t = Pattern::Random)]
    pub pattern: Pattern,
    /// Produce at most this many files per second, like a camera at a fixed
    /// frame rate (default: as fast as `put` returns). Below the network's
    /// speed, `put` latency is measured with room in the queue. With a copying
    /// put, the bench also times a plain memory copy of one file halfway
    /// between two puts: the machine's own limit for a copying put, in the
    /// same run.
    #[arg(long)]
    pub rate: Option<f64>,
    /// Before the first put, prepare this many buffers for copies of one file
    /// (`Streamer::prepare_buffers`, as a camera driver does when it arms), so
    /// that the first puts do not fault in fresh memory. Ignored with
    /// --zero-copy.
    #[arg(long, default_value_t = 0)]
    pub prepare_buffers: usize,
    /// Hand the library a shared buffer instead of letting `put` copy it.
    #[arg(long)]
    pub zero_copy: bool,
    /// Print one JSON object as the last line of stdout.
    #[arg(long)]
    pub json: bool,
    /// Write a self-contained HTML page: throughput over time per server and
    /// a histogram of the put latencies.
    #[arg(long, value_name = "FILE.html")]
    pub report: Option<std::path::PathBuf>,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pattern {
    Random,
    Index,
    Camera,
}

/// The body of file `index` with the `index` pattern.
pub fn index_body(index: u64, size: usize) -> Vec<u8> {
    let line = format!("{index}\n");
    line.bytes().cycle().take(size).collect()
}

pub fn run(args: BenchArgs) -> CliResult<ExitCode> {
    let frame_bytes = args.stream.frame_bytes()?;
    let size = match (args.size, frame_bytes) {
        (Some(size), Some(frame)) if size != frame => {
            return Err(format!("--size {size} does not match --shape ({frame} bytes)").into())
        }
        (Some(size), _) => size,
        (None, Some(frame)) => frame,
        (None, None) => 8 * 1024 * 1024,
    };
    let camera = match args.pattern {
        Pattern::Camera => {
            let shape = args
                .stream
                .shape
                .as_deref()
                .ok_or("--pattern camera needs --shape ROWSxCOLS")?;
            let (rows, cols, _) = pyme_streaming::pzf::files::parse_shape(shape)?;
            Some(Camera::new(cols, rows))
        }
        _ => None,
    };
    let tally = Arc::new(Tally::default());
    // A benchmark measures the servers it was given: one that cannot be
    // reached is an error, not a server left out of the figures.
    let options = args.stream.options()?.require_all_servers(true);
    let streamer = Streamer::new(tally.attach(options))?;
    if args.prepare_buffers > 0 && !args.zero_copy {
        let prepared = streamer.prepare_buffers(size, args.prepare_buffers);
        if prepared < args.prepare_buffers {
            eprintln!(
                "note: prepared {prepared} of {} buffers (the queue byte limit, or files under 64 KiB)",
                args.prepare_buffers
            );
        }
    }
    let random_body = Bytes::from(random_bytes(size));
    let bar = progress_bar(args.count, "bench");
    let watch = Watch::start(&streamer, &bar, &tally);
    let period = args
        .rate
        .filter(|rate| *rate > 0.0)
        .map(|rate| std::time::Duration::from_secs_f64(1.0 / rate));
    let mut latencies_ns = Vec::with_capacity(args.count as usize);
    // With a rate: also the CPU time of each put (two system calls per put, kept
    // outside the timed window, too costly for the small-file rates).
    let mut put_cpu_ns = Vec::new();
    // The memory-copy baseline: a plain copy into a buffer touched beforehand.
    let mut copy_ns = Vec::new();
    let mut copy_target = match (period, args.zero_copy) {
        (Some(_), false) => vec![1u8; size],
        _ => Vec::new(),
    };
    let mut rejected = 0u64;
    let cpu_before = process_cpu_seconds();
    let started = Instant::now();
    for index in 0..args.count {
        if let Some(period) = period {
            let due = started + period.mul_f64(index as f64);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
        }
        let name = format!("{}/frame{index:05}.pzf", args.prefix);
        let body = match args.pattern {
            Pattern::Random => random_body.clone(),
            Pattern::Index => Bytes::from(index_body(index, size)),
            Pattern::Camera => Bytes::from(
                camera
                    .as_ref()
                    .map_or_else(Vec::new, |c| c.frame(index as u32)),
            ),
        };
        let cpu_started = period.and_then(|_| thread_cpu_ns());
        let put_started = Instant::now();
        let result = if args.zero_copy {
            streamer.put_bytes(&name, body.clone(), Some(index as i64))
        } else {
            streamer.put(&name, &body, Some(index as i64))
        };
        latencies_ns.push(put_started.elapsed().as_nanos() as u64);
        if let Some(started) = cpu_started {
            put_cpu_ns.extend(thread_cpu_ns().map(|ended| ended.saturating_sub(started)));
        }
        if let (Some(period), false) = (period, copy_target.is_empty()) {
            let halfway = started + period.mul_f64(index as f64 + 0.5);
            if let Some(wait) = halfway.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            let copy_started = Instant::now();
            copy_target.copy_from_slice(&body);
            std::hint::black_box(&copy_target);
            copy_ns.push(copy_started.elapsed().as_nanos() as u64);
        }
        if let Err(error) = result {
            rejected += 1;
            if rejected <= 10 {
                eprintln!("put {name}: {error}");
            }
        }
        bar.set_position(tally.done.load(std::sync::atomic::Ordering::Relaxed));
    }
    let servers: Vec<String> = streamer.servers().map(str::to_owned).collect();
    // Every file has its outcome after the flush: the last reading shows the
    // final counters and each server's state before the close takes them all down.
    let _ = streamer.flush(None);
    let watched = watch.finish();
    let stats = streamer.close();
    let seconds = started.elapsed().as_secs_f64();
    let cpu_seconds = process_cpu_seconds() - cpu_before;
    bar.finish_and_clear();
    tally.print_failures();

    let put_us = Percentiles::of(latencies_ns.clone());
    let put_cpu_us = Percentiles::of(put_cpu_ns);
    let copy_us = Percentiles::of(copy_ns);
    let mb_per_s = stats.bytes_acknowledged as f64 / 1e6 / seconds;
    let files_per_s = stats.files_acknowledged as f64 / seconds;
    let gb_sent = stats.bytes_sent as f64 / 1e9;
    let summary = format!(
        "{}; {:.1} MB/s, {:.0} files/s in {:.2} s; put latency p50 {:.1} us, p99 {:.1} us, max {:.1} us; CPU {:.2} s ({:.2} s/GB), peak RSS {} MiB; {}/{} servers up",
        summary_line(&stats),
        mb_per_s,
        files_per_s,
        seconds,
        put_us.at(0.5),
        put_us.at(0.99),
        put_us.at(1.0),
        cpu_seconds,
        if gb_sent > 0.0 { cpu_seconds / gb_sent } else { 0.0 },
        peak_rss_bytes() / (1024 * 1024),
        watched.servers_up(),
        watched.servers.len(),
    );
    println!("{summary}");
    if let Some(path) = &args.report {
        let page = Report {
            command: "bench",
            summary: std::slice::from_ref(&summary),
            watched: &watched,
            put_latencies_ns: &latencies_ns,
        };
        report::write(path, &page)?;
    }
    if !put_cpu_us.is_empty() {
        println!(
            "put CPU time (the time the calling thread ran; the rest of a put's latency it waited or was not scheduled): p50 {:.1} us, p99 {:.1} us, max {:.1} us",
            put_cpu_us.at(0.5),
            put_cpu_us.at(0.99),
            put_cpu_us.at(1.0)
        );
    }
    if !copy_us.is_empty() {
        println!(
            "memory copy of one file between puts (the limit of a copying put): p50 {:.1} us, p99 {:.1} us, max {:.1} us",
            copy_us.at(0.5),
            copy_us.at(0.99),
            copy_us.at(1.0)
        );
    }
    if args.json {
        let mut report = outcome_json(args.count, rejected, &stats, &watched);
        report.extend(
            serde_json::json!({
                "acknowledged_already": stats.acknowledged_already,
                "seconds": seconds,
                "mb_per_s": mb_per_s,
                "files_per_s": files_per_s,
                "put_latency_us": put_us.json(),
                "put_cpu_us": (!put_cpu_us.is_empty()).then(|| put_cpu_us.json()),
                "memcpy_latency_us": (!copy_us.is_empty()).then(|| copy_us.json()),
                "cpu_seconds": cpu_seconds,
                "cpu_seconds_per_gb": if gb_sent > 0.0 { cpu_seconds / gb_sent } else { 0.0 },
                "peak_rss_bytes": peak_rss_bytes(),
                "servers": servers,
                "size": size,
            })
            .as_object()
            .cloned()
            .unwrap_or_default(),
        );
        println!("{}", serde_json::Value::Object(report));
    }
    let all_landed = rejected == 0 && stats.files_acknowledged == args.count;
    Ok(if all_landed {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The `--json` fields `put` and `bench` share: the files and their outcomes, the
/// streamer's counters, and the servers (up, and each one's counters).
pub fn outcome_json(
    files: u64,
    rejected: u64,
    stats: &pyme_streaming::Stats,
    watched: &super::watch::Watched,
) -> serde_json::Map<String, serde_json::Value> {
    let json = serde_json::json!({
        "files": files,
        "acknowledged": stats.files_acknowledged,
        "failed": stats.files_failed,
        "rejected": rejected,
        "dropped": stats.dropped,
        "rerouted": stats.rerouted,
        "reconnects": stats.reconnects,
        "retries": stats.retries,
        "spilled": stats.spilled,
        "bytes": stats.bytes_acknowledged,
        "bytes_sent": stats.bytes_sent,
        "servers": watched.servers,
        "servers_up": watched.servers_up(),
        "per_server": watched.servers_json(),
    });
    json.as_object().cloned().unwrap_or_default()
}

/// `{"p50": .., "p99": .., "max": ..}` of put latencies in nanoseconds, in
/// microseconds (for the `--json` of `put`).
pub fn latency_json(latencies_ns: Vec<u64>) -> serde_json::Value {
    Percentiles::of(latencies_ns).json()
}

/// Percentiles of durations in nanoseconds, in microseconds.
struct Percentiles(Vec<u64>);

impl Percentiles {
    fn of(mut ns: Vec<u64>) -> Percentiles {
        ns.sort_unstable();
        Percentiles(ns)
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The value at rank `p` (0 to 1; nearest rank), 0 when empty.
    fn at(&self, p: f64) -> f64 {
        if self.0.is_empty() {
            return 0.0;
        }
        let rank = ((self.0.len() - 1) as f64 * p).round() as usize;
        self.0[rank] as f64 / 1000.0
    }

    /// `{"p50": .., "p99": .., "max": ..}` for the JSON report.
    fn json(&self) -> serde_json::Value {
        serde_json::json!({ "p50": self.at(0.5), "p99": self.at(0.99), "max": self.at(1.0) })
    }
}

fn random_bytes(size: usize) -> Vec<u8> {
    let mut rng = fastrand::Rng::with_seed(0x5eed);
    let mut bytes = vec![0u8; size];
    rng.fill(&mut bytes);
    bytes
}

/// CPU time of the calling thread in nanoseconds (Linux; `None` elsewhere).
/// In a VM with steal-time accounting, time the host took the vCPU away is
/// not counted.
fn thread_cpu_ns() -> Option<u64> {
    #[cfg(target_os = "linux")]
    return cpu_clock_ns(libc::CLOCK_THREAD_CPUTIME_ID);
    #[cfg(not(target_os = "linux"))]
    None
}

/// User + system CPU seconds of this process, all threads (Linux; 0 elsewhere).
pub fn process_cpu_seconds() -> f64 {
    #[cfg(target_os = "linux")]
    let ns = cpu_clock_ns(libc::CLOCK_PROCESS_CPUTIME_ID);
    #[cfg(not(target_os = "linux"))]
    let ns: Option<u64> = None;
    ns.map_or(0.0, |ns| ns as f64 / 1e9)
}

/// A CPU-time clock, read in nanoseconds.
#[cfg(target_os = "linux")]
fn cpu_clock_ns(clock: libc::clockid_t) -> Option<u64> {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a valid timespec to write to.
    if unsafe { libc::clock_gettime(clock, &mut now) } != 0 {
        return None;
    }
    Some(now.tv_sec as u64 * 1_000_000_000 + now.tv_nsec as u64)
}

/// Peak resident memory of this process in bytes (Linux `VmHWM`; 0 elsewhere).
pub fn peak_rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("VmHWM:"))
                .and_then(|rest| {
                    rest.trim()
                        .trim_end_matches("kB")
                        .trim()
                        .parse::<u64>()
                        .ok()
                })
        })
        .map_or(0, |kib| kib * 1024)
}
