//! `pyme-stream put`: stream local files and folders to the cluster.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use pyme_streaming::{Bytes, Streamer};

use super::report::{self, Report};
use super::watch::Watch;
use super::{progress_bar, summary_line, CliResult, StreamArgs, Tally};

#[derive(clap::Args, Debug)]
pub struct PutArgs {
    #[command(flatten)]
    pub stream: StreamArgs,
    /// Folder on the cluster the files go under.
    #[arg(long, default_value = "")]
    pub prefix: String,
    /// Files and folders to send; a folder is sent with everything below it,
    /// under its own name (`put --prefix P dir` stores `P/dir/...`).
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// Print one JSON object as the last line of stdout.
    #[arg(long)]
    pub json: bool,
    /// Write a self-contained HTML page: throughput over time per server and
    /// a histogram of the put latencies.
    #[arg(long, value_name = "FILE.html")]
    pub report: Option<PathBuf>,
}

pub fn run(args: PutArgs) -> CliResult<ExitCode> {
    let files = collect(&args.paths, &args.prefix)?;
    let bad: Vec<String> = files
        .iter()
        .filter_map(|(_, name)| {
            pyme_streaming::name::validate(name)
                .err()
                .map(|e| format!("{name:?}: {e}"))
        })
        .collect();
    if !bad.is_empty() {
        return Err(format!(
            "nothing sent: {} file names cannot be sent:\n  {}",
            bad.len(),
            bad.join("\n  ")
        )
        .into());
    }
    let tally = Arc::new(Tally::default());
    let streamer = Streamer::new(tally.attach(args.stream.options()?))?;
    let bar = progress_bar(files.len() as u64, "put");
    let watch = Watch::start(&streamer, &bar, &tally);
    let started = Instant::now();
    let mut rejected = 0;
    let mut latencies_ns = Vec::with_capacity(files.len());
    for (index, (path, name)) in files.iter().enumerate() {
        let data = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let put_started = Instant::now();
        let result = streamer.put_bytes(name, Bytes::from(data), Some(index as i64));
        latencies_ns.push(put_started.elapsed().as_nanos() as u64);
        if let Err(error) = result {
            eprintln!("put {name}: {error}");
            rejected += 1;
        }
        bar.set_position(tally.done.load(std::sync::atomic::Ordering::Relaxed));
    }
    // Every file has its outcome after the flush: the last reading shows the
    // final counters and each server's state before the close takes them all down.
    let _ = streamer.flush(None);
    let watched = watch.finish();
    let stats = streamer.close();
    let seconds = started.elapsed().as_secs_f64();
    bar.finish_and_clear();
    tally.print_failures();
    let mb_per_s = stats.bytes_acknowledged as f64 / 1e6 / seconds;
    let summary = format!(
        "{}; {:.1} MB in {:.2} s ({:.1} MB/s); {}/{} servers up",
        summary_line(&stats),
        stats.bytes_acknowledged as f64 / 1e6,
        seconds,
        mb_per_s,
        watched.servers_up(),
        watched.servers.len(),
    );
    println!("{summary}");
    if let Some(path) = &args.report {
        let page = Report {
            command: "put",
            summary: std::slice::from_ref(&summary),
            watched: &watched,
            put_latencies_ns: &latencies_ns,
        };
        report::write(path, &page)?;
    }
    if args.json {
        let mut report = super::bench::outcome_json(files.len() as u64, rejected, &stats, &watched);
        report.extend([
            ("seconds".to_owned(), seconds.into()),
            ("mb_per_s".to_owned(), mb_per_s.into()),
            (
                "files_per_s".to_owned(),
                (stats.files_acknowledged as f64 / seconds).into(),
            ),
            (
                "put_latency_us".to_owned(),
                super::bench::latency_json(latencies_ns),
            ),
        ]);
        println!("{}", serde_json::Value::Object(report));
    }
    let all_landed = rejected == 0 && stats.files_acknowledged == files.len() as u64;
    Ok(if all_landed {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Every file below `paths`, with its name on the cluster, sorted by name.
fn collect(paths: &[PathBuf], prefix: &str) -> CliResult<Vec<(PathBuf, String)>> {
    let prefix = prefix.trim_matches('/');
    let mut files = Vec::new();
    for path in paths {
        let base = path
            .file_name()
            .ok_or_else(|| format!("{}: no file name", path.display()))?;
        walk(path, Path::new(base), &mut files)?;
    }
    let mut named: Vec<(PathBuf, String)> = files
        .into_iter()
        .map(|(path, relative)| {
            let relative = relative
                .to_string_lossy()
                .replace(std::path::MAIN_SEPARATOR, "/");
            let name = if prefix.is_empty() {
                relative
            } else {
                format!("{prefix}/{relative}")
            };
            (path, name)
        })
        .collect();
    named.sort_by(|a, b| a.1.cmp(&b.1));
    Ok(named)
}

fn walk(path: &Path, relative: &Path, files: &mut Vec<(PathBuf, PathBuf)>) -> CliResult<()> {
    let metadata = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if metadata.is_dir() {
        for entry in std::fs::read_dir(path).map_err(|e| format!("{}: {e}", path.display()))? {
            let entry = entry?;
            walk(&entry.path(), &relative.join(entry.file_name()), files)?;
        }
    } else {
        files.push((path.to_owned(), relative.to_owned()));
    }
    Ok(())
}
