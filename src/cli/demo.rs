//! `pyme-stream demo`: zero configuration. Starts three data servers in this
//! process on loopback, streams a simulated acquisition the way PYMEAcquire
//! does (metadata.json, camera frames as Huffman-coded PZF files, events.json)
//! with round-robin distribution, then checks every file on disk: text byte for
//! byte, frames decoded back to the exact pixels.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use pyme_streaming::filter::pzf::PzfFilter;
use pyme_streaming::pzf::{DataFormat, EncodeParams};
use pyme_streaming::server::{DataServer, ServerConfig};
use pyme_streaming::{Bytes, Streamer, StreamerOptions};
use pyme_streaming::{FileInfo, Filter, FilterError};

use super::camera::Camera;
use super::watch::Watch;
use super::{progress_bar, CliResult, Tally};

#[derive(clap::Args, Debug)]
pub struct DemoArgs {
    /// Number of camera frames.
    #[arg(long, default_value_t = 200)]
    pub frames: u32,
    /// Frame width in pixels.
    #[arg(long, default_value_t = 1024)]
    pub width: u32,
    /// Frame height in pixels.
    #[arg(long, default_value_t = 1024)]
    pub height: u32,
    /// Number of data servers to start.
    #[arg(long, default_value_t = 3)]
    pub n_servers: usize,
    /// Memory budget of the streamer, in bytes (everything it holds for files).
    #[arg(long, default_value_t = pyme_streaming::options::DEFAULT_MEMORY_LIMIT)]
    pub memory_limit: u64,
    /// Keep the servers' folders (their paths are printed).
    #[arg(long)]
    pub keep: bool,
    /// Print one JSON object as the last line of stdout.
    #[arg(long)]
    pub json: bool,
}

const SERIES: &str = "demo/series_0001";

pub fn run(args: DemoArgs) -> CliResult<ExitCode> {
    let (base, roots) = make_roots(args.n_servers)?;
    let result = stream_and_check(&args, &roots);
    if args.keep {
        for root in &roots {
            println!("kept {}", root.display());
        }
    } else {
        for root in &roots {
            let _ = std::fs::remove_dir_all(root);
        }
        // Only if empty: nothing but the servers' folders is ours to remove.
        let _ = std::fs::remove_dir(&base);
    }
    result
}

fn stream_and_check(args: &DemoArgs, roots: &[PathBuf]) -> CliResult<ExitCode> {
    let servers = roots
        .iter()
        .map(|root| {
            DataServer::start(ServerConfig {
                root: root.clone(),
                port: 0,
                ..ServerConfig::default()
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let addresses: Vec<String> = servers.iter().map(|s| s.local_addr().to_string()).collect();
    println!(
        "started {} data servers: {}",
        servers.len(),
        addresses.join(", ")
    );
    let camera = Camera::new(args.width, args.height);
    let files = acquisition(args);
    let total_bytes: u64 = files.iter().map(|file| file.len(&camera)).sum();
    println!(
        "streaming {} files ({:.1} MB): {} frames of {}x{} uint16",
        files.len(),
        total_bytes as f64 / 1e6,
        args.frames,
        args.width,
        args.height
    );

    let tally = Arc::new(Tally::default());
    let options = tally.attach(
        StreamerOptions::new()
            .servers(addresses)
            .memory_limit(args.memory_limit)
            .filter(FramesAsPzf::new(args.width, args.height)?),
    );
    let streamer = Streamer::new(options)?;
    let bar = progress_bar(files.len() as u64, "demo");
    let watch = Watch::start(&streamer, &bar, &tally);
    let started = Instant::now();
    for file in &files {
        let data = Bytes::from(file.contents(&camera));
        if let Err(error) = streamer.put_bytes(&file.name, data, file.index) {
            eprintln!("put {}: {error}", file.name);
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
    println!(
        "streamed {:.1} MB in {:.2} s: {:.1} MB/s, {:.0} files/s; PZF Huffman coding sent {:.1} MB ({:.2}x smaller)",
        stats.bytes_acknowledged as f64 / 1e6,
        seconds,
        stats.bytes_acknowledged as f64 / 1e6 / seconds,
        stats.files_acknowledged as f64 / seconds,
        stats.bytes_sent as f64 / 1e6,
        stats.bytes_queued as f64 / stats.bytes_sent.max(1) as f64,
    );
    for server in servers {
        server.shutdown();
    }

    let mut lost = 0;
    for file in &files {
        if let Err(problem) = check_landed(file, &camera, roots) {
            lost += 1;
            if lost <= 10 {
                eprintln!("{}: {problem}", file.name);
            }
        }
    }
    println!("checked every file on disk against what was sent");
    println!(
        "acknowledged {}/{}, lost {lost}",
        stats.files_acknowledged,
        files.len()
    );
    if args.json {
        let report = serde_json::json!({
            "files": files.len(),
            "acknowledged": stats.files_acknowledged,
            "failed": stats.files_failed,
            "lost": lost,
            "bytes": stats.bytes_acknowledged,
            "bytes_sent": stats.bytes_sent,
            "seconds": seconds,
            "mb_per_s": stats.bytes_acknowledged as f64 / 1e6 / seconds,
            "files_per_s": stats.files_acknowledged as f64 / seconds,
            "servers": watched.servers,
            "servers_up": watched.servers_up(),
            "per_server": watched.servers_json(),
        });
        println!("{report}");
    }
    let perfect = lost == 0 && stats.files_acknowledged == files.len() as u64;
    Ok(if perfect {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The servers' folders, in one base folder of the temporary folder.
fn make_roots(n: usize) -> CliResult<(PathBuf, Vec<PathBuf>)> {
    let base = std::env::temp_dir().join(format!("pyme-stream-demo-{}", std::process::id()));
    let roots = (0..n)
        .map(|i| {
            let root = base.join(format!("server{i}"));
            std::fs::create_dir_all(&root).map_err(|e| format!("{}: {e}", root.display()))?;
            Ok(root)
        })
        .collect::<CliResult<Vec<PathBuf>>>()?;
    Ok((base, roots))
}

/// One file of the acquisition.
struct DemoFile {
    name: String,
    index: Option<i64>,
    kind: Kind,
}

enum Kind {
    Text(String),
    Frame(u32),
}

impl DemoFile {
    fn contents(&self, camera: &Camera) -> Vec<u8> {
        match &self.kind {
            Kind::Text(text) => text.clone().into_bytes(),
            Kind::Frame(number) => camera.frame(*number),
        }
    }

    fn len(&self, camera: &Camera) -> u64 {
        match &self.kind {
            Kind::Text(text) => text.len() as u64,
            Kind::Frame(_) => camera.frame_bytes() as u64,
        }
    }
}

/// The files PYMEAcquire's cluster back end writes for one series, in order.
fn acquisition(args: &DemoArgs) -> Vec<DemoFile> {
    let metadata = format!(
        "{{\"Camera.Name\": \"simulated sCMOS\", \"Camera.ADOffset\": 100, \"Camera.TrueEMGain\": 1, \
\"Camera.ElectronsPerCount\": 0.45, \"Camera.ImageWidth\": {}, \"Camera.ImageHeight\": {}, \
\"imageID\": \"{SERIES}\", \"StartTime\": 0}}\n",
        args.width, args.height
    );
    let mut files = vec![DemoFile {
        name: format!("{SERIES}/metadata.json"),
        index: None,
        kind: Kind::Text(metadata),
    }];
    files.extend((0..args.frames).map(|number| DemoFile {
        name: format!("{SERIES}/frame{number:05}.pzf"),
        index: Some(i64::from(number)),
        kind: Kind::Frame(number),
    }));
    files.push(DemoFile {
        name: format!("{SERIES}/final_metadata.json"),
        index: None,
        kind: Kind::Text(format!("{{\"EndTime\": {}}}\n", args.frames)),
    });
    files.push(DemoFile {
        name: format!("{SERIES}/events.json"),
        index: None,
        kind: Kind::Text("[[\"StartAq\", \"0\", 0.0]]\n".into()),
    });
    files
}

/// The demo's filter: camera frames (`*.pzf`) are PZF-encoded with Huffman
/// coding, as PYMEAcquire stores them; other files go as they are.
struct FramesAsPzf {
    pzf: PzfFilter,
}

impl FramesAsPzf {
    fn new(width: u32, height: u32) -> CliResult<FramesAsPzf> {
        let params = EncodeParams::new(DataFormat::U16, height, width);
        Ok(FramesAsPzf {
            pzf: PzfFilter::new(params)?,
        })
    }
}

impl Filter for FramesAsPzf {
    fn apply(
        &self,
        file: &FileInfo<'_>,
        data: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), FilterError> {
        if file.name.ends_with(".pzf") {
            self.pzf.apply(file, data, out)
        } else {
            out.extend_from_slice(data);
            Ok(())
        }
    }
}

/// The file is on exactly one server, with exactly the bytes sent.
fn check_landed(file: &DemoFile, camera: &Camera, roots: &[PathBuf]) -> Result<(), String> {
    let copies: Vec<PathBuf> = roots
        .iter()
        .map(|root| root.join(&file.name))
        .filter(|path| Path::exists(path))
        .collect();
    match copies.as_slice() {
        [] => Err("not on any server".into()),
        [path] => {
            let stored = std::fs::read(path).map_err(|e| e.to_string())?;
            let landed = match file.kind {
                Kind::Frame(number) => {
                    let (header, pixels) = pyme_streaming::pzf::decode(&stored)
                        .map_err(|e| format!("{}: {e}", path.display()))?;
                    header.frame_num == number && pixels == file.contents(camera)
                }
                Kind::Text(_) => stored == file.contents(camera),
            };
            if landed {
                Ok(())
            } else {
                Err(format!("{} differs from what was sent", path.display()))
            }
        }
        _ => Err(format!("on {} servers", copies.len())),
    }
}
