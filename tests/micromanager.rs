//! The Micro-Manager device adapter (micromanager/, docs/MICROMANAGER.md) with the real
//! MMCore: `pymmcore` 12.5.1.75.0 from the package registry loads the adapter and the
//! project's test camera (micromanager/test_camera/), built here with CMake
//! (`-DPYME_BUILD_MICROMANAGER=ON`) under `<target dir>/micromanager-test`, and a Python
//! driver (tests/micromanager/driver.py) runs sequence acquisitions into
//! `pyme-stream serve` processes on loopback. Every stored frame is decoded and compared
//! with the pixels the camera made; PYME's own PZF reader checks the orientation.
//!
//! Needs cmake, a C++ compiler, MMDevice's sources (scripts/mmdevice.sh fetches them
//! from the registry) and a Python with pymmcore 12.5.1.75.0 and PYME
//! (`PYME_MM_PYTHON`, default `python3`); skipped visibly without them (a failure under
//! CI, whose .ci/run installs them).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use common::ServeProcess;

const PYMMCORE: &str = "12.5.1.75.0";

fn source_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| source_dir().join("target"))
}

fn python() -> String {
    std::env::var("PYME_MM_PYTHON").unwrap_or_else(|_| "python3".into())
}

/// The folder holding the built adapters, or why they cannot be built here.
fn adapters() -> Result<PathBuf, String> {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BUILT.get_or_init(build).clone()
}

fn build() -> Result<PathBuf, String> {
    for tool in ["cmake", "c++"] {
        if let Some(why) = common::skip::missing_tool(tool, &["--version"]) {
            return Err(why);
        }
    }
    // pymecompress: PYME's reader decodes Huffman PZF with it (without it PYME can read
    // raw frames only, and could not judge the Huffman ones).
    let check = format!(
        "import pymmcore, pymecompress.bcl, PYME.IO.PZFFormat; \
         assert pymmcore.__version__ == '{PYMMCORE}'"
    );
    match Command::new(python()).args(["-c", &check]).output() {
        Ok(out) if out.status.success() => {}
        _ => {
            return Err(format!(
                "{} has no pymmcore {PYMMCORE} with PYME and pymecompress \
                 (set PYME_MM_PYTHON; .ci/run installs them)",
                python()
            ))
        }
    }
    let cache = target_dir().join("mmdevice");
    let out = Command::new(source_dir().join("scripts/mmdevice.sh"))
        .arg(&cache)
        .env("PYTHON", python())
        .output()
        .map_err(|e| format!("scripts/mmdevice.sh: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "scripts/mmdevice.sh could not get MMDevice's sources: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let mmdevice = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let build = target_dir().join("micromanager-test");
    let configure = Command::new("cmake")
        .arg("-S")
        .arg(source_dir())
        .arg("-B")
        .arg(&build)
        .args(["-DCMAKE_BUILD_TYPE=Debug", "-DPYME_BUILD_MICROMANAGER=ON"])
        .arg(format!("-DMMDEVICE_SOURCE_DIR={mmdevice}"))
        .arg(format!(
            "-DPYME_CARGO_TARGET_DIR={}",
            target_dir().display()
        ))
        .status()
        .expect("cmake runs");
    assert!(configure.success(), "cmake configure failed");
    let status = Command::new("cmake")
        .arg("--build")
        .arg(&build)
        .args([
            "--target",
            "mmgr_dal_PymeStreaming",
            "mmgr_dal_PymeTestCamera",
        ])
        .status()
        .expect("cmake --build runs");
    assert!(status.success(), "cmake --build failed");
    Ok(build.join("micro-manager"))
}

/// The adapters, or None after a visible skip.
fn setup(test: &str) -> Option<PathBuf> {
    match adapters() {
        Ok(dir) => Some(dir),
        Err(why) => {
            common::skip::skip(test, &why);
            None
        }
    }
}

fn drive(adapters: &Path, scenario: &str, args: serde_json::Value) -> serde_json::Value {
    let out = Command::new(python())
        .arg(source_dir().join("tests/micromanager/driver.py"))
        .arg(adapters)
        .arg(scenario)
        .arg(args.to_string())
        .output()
        .expect("the driver runs");
    assert!(
        out.status.success(),
        "driver {scenario} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(text.lines().last().unwrap_or("")).expect("the driver's JSON line")
}

struct Cluster {
    servers: Vec<ServeProcess>,
    dir: tempfile::TempDir,
}

impl Cluster {
    fn start(n: usize) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let servers = (0..n)
            .map(|i| ServeProcess::start(&dir.path().join(format!("s{i}")), 0, &[]))
            .collect();
        Cluster { servers, dir }
    }

    fn servers(&self) -> String {
        let list: Vec<&str> = self.servers.iter().map(|s| s.address.as_str()).collect();
        list.join(";")
    }

    /// Every stored copy of `<series>/<name>`, over all servers.
    fn copies(&self, series: &str, name: &str) -> Vec<PathBuf> {
        (0..self.servers.len())
            .map(|i| {
                self.dir
                    .path()
                    .join(format!("s{i}"))
                    .join(series)
                    .join(name)
            })
            .filter(|p| p.exists())
            .collect()
    }
}

/// Pixel (x, y) of frame n of the test camera, as little-endian bytes in the camera's
/// order (x fastest).
fn expected_frame(n: u64, width: u64, height: u64, bits: u32) -> Vec<u8> {
    let mask = (1u64 << bits) - 1;
    let mut out = Vec::new();
    for y in 0..height {
        for x in 0..width {
            let v = (7 * x + 131 * y + 1009 * n) & mask;
            if bits == 8 {
                out.push(v as u8);
            } else {
                out.extend_from_slice(&(v as u16).to_le_bytes());
            }
        }
    }
    out
}

/// Checks the whole series: metadata.json, every frame byte-exact and F-ordered
/// [x, y], events.json; returns the paths of the first frames for PYME's reader.
fn check_series(
    cluster: &Cluster,
    series: &str,
    frames: u64,
    bits: u32,
    compressed: bool,
) -> Vec<(PathBuf, u64)> {
    let (width, height) = (96u64, 64u64);
    let meta = cluster.copies(series, "metadata.json");
    assert_eq!(meta.len(), 1, "{series}: one metadata.json");
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&meta[0]).unwrap()).unwrap();
    assert_eq!(meta["Camera.ImageWidth"], width);
    assert_eq!(meta["Camera.ImageHeight"], height);
    assert_eq!(meta["Camera.Name"], "Camera");
    assert_eq!(
        meta["Camera.PixelType"],
        if bits == 8 { "GRAY8" } else { "GRAY16" }
    );
    assert!(meta["StartTime"].as_f64().unwrap() > 1.0e9);
    assert_eq!(
        cluster.copies(series, "events.json").len(),
        1,
        "{series}: events.json"
    );
    let mut first = Vec::new();
    for n in 0..frames {
        let name = format!("frame{n:05}.pzf");
        let copies = cluster.copies(series, &name);
        assert!(!copies.is_empty(), "{series}/{name} is missing");
        for copy in &copies {
            let bytes = std::fs::read(copy).unwrap();
            let (header, pixels) = pyme_streaming::pzf::decode(&bytes).unwrap();
            assert_eq!((header.width, header.height), (width as u32, height as u32));
            assert_eq!(header.order, pyme_streaming::pzf::DimOrder::F);
            assert_eq!(header.frame_num, n as u32);
            assert_eq!(
                header.compression,
                if compressed {
                    pyme_streaming::pzf::Compression::Huffman
                } else {
                    pyme_streaming::pzf::Compression::Raw
                }
            );
            assert!(
                pixels == expected_frame(n, width, height, bits),
                "{series}/{name}: pixels differ"
            );
        }
        if n < 3 {
            first.push((copies[0].clone(), n));
        }
    }
    assert!(cluster
        .copies(series, &format!("frame{frames:05}.pzf"))
        .is_empty());
    first
}

fn sequence_test(test: &str, bits: u32, compression: &str) {
    let Some(adapters) = setup(test) else { return };
    let cluster = Cluster::start(2);
    let series = format!("mm/{test}");
    let result = drive(
        &adapters,
        "sequences",
        serde_json::json!({"servers": cluster.servers(), "bits": bits, "frames": 1000,
                           "series": [series], "Compression": compression}),
    );
    let run = &result["runs"][0];
    assert_eq!(run["FramesAcknowledged"], 1000, "{run}");
    assert_eq!(run["FramesFailed"], 0, "{run}");
    assert_eq!(run["FramesDropped"], 0, "{run}");
    assert_eq!(run["FramesInFlight"], 0, "{run}");
    assert_eq!(run["servers_up_at_start"], 2, "{run}");
    assert_eq!(
        run["popped"], 1000,
        "MMCore's circular buffer got every frame too: {run}"
    );
    assert_eq!(
        run["popped_ok"], 3,
        "MMCore's images are the camera's: {run}"
    );
    let first = check_series(&cluster, &series, 1000, bits, compression == "huffman");
    // PYME's own reader (with pymecompress for Huffman frames) is the judge of the
    // pixels and their orientation, raw and compressed alike.
    let frames: Vec<_> = first
        .iter()
        .map(|(p, n)| serde_json::json!([p, n]))
        .collect();
    let read = drive(
        &adapters,
        "pyme_read",
        serde_json::json!({"frames": frames, "width": 96, "height": 64, "bits": bits}),
    );
    assert_eq!(read["checked"], 3);
}

#[test]
fn sequence_1000_frames_16_bit_huffman() {
    sequence_test("sequence_1000_frames_16_bit_huffman", 16, "huffman");
}

#[test]
fn sequence_1000_frames_16_bit_raw() {
    sequence_test("sequence_1000_frames_16_bit_raw", 16, "none");
}

#[test]
fn sequence_1000_frames_8_bit_huffman() {
    sequence_test("sequence_1000_frames_8_bit_huffman", 8, "huffman");
}

#[test]
fn sequence_1000_frames_8_bit_raw() {
    sequence_test("sequence_1000_frames_8_bit_raw", 8, "none");
}

#[test]
fn two_sequences_in_a_row() {
    let Some(adapters) = setup("two_sequences_in_a_row") else {
        return;
    };
    let cluster = Cluster::start(2);
    let result = drive(
        &adapters,
        "sequences",
        serde_json::json!({"servers": cluster.servers(), "bits": 16, "frames": 200,
                           "series": ["mm/two/a", "mm/two/b"]}),
    );
    for (i, series) in ["mm/two/a", "mm/two/b"].iter().enumerate() {
        let run = &result["runs"][i];
        assert_eq!(run["FramesAcknowledged"], 200, "{run}");
        assert_eq!(run["FramesFailed"], 0, "{run}");
        assert_eq!(run["series"], *series);
        check_series(&cluster, series, 200, 16, true);
    }
}

#[test]
fn streaming_0_during_a_sequence_ends_the_series() {
    let Some(adapters) = setup("streaming_0_during_a_sequence_ends_the_series") else {
        return;
    };
    let cluster = Cluster::start(2);
    // The camera runs until the driver stops it; the series ends after 100 frames.
    let result = drive(
        &adapters,
        "stop_during",
        serde_json::json!({"servers": cluster.servers(), "bits": 16, "interval_us": 1000,
                           "stop_after": 100, "series": ["mm/stop"]}),
    );
    let after = &result["after_stop"];
    let streamed = after["FramesAcknowledged"].as_u64().unwrap();
    assert!(streamed >= 100, "{result}");
    assert_eq!(after["FramesFailed"], 0, "{result}");
    assert_eq!(
        after["FramesInFlight"], 0,
        "every outcome was waited for: {result}"
    );
    assert_eq!(
        result["camera_ran_on"], true,
        "the camera was still running: {result}"
    );
    assert_eq!(
        result["final"]["FramesAcknowledged"], streamed,
        "nothing after Streaming 0: {result}"
    );
    check_series(&cluster, "mm/stop", streamed, 16, true);
}

#[test]
fn bad_property_values_are_device_errors() {
    let Some(adapters) = setup("bad_property_values_are_device_errors") else {
        return;
    };
    let cluster = Cluster::start(1);
    let result = drive(
        &adapters,
        "bad_values",
        serde_json::json!({"servers": cluster.servers(), "dead": common::dead_address(),
                           "log": cluster.dir.path().join("core.log")}),
    );
    let errors = &result["errors"];
    for (key, value) in errors.as_object().unwrap() {
        assert!(value.is_string(), "{key} was accepted: {result}");
    }
    // The adapter's own text reaches the core log as "Error in device" (pymmcore's
    // exception has MMCore's first line only).
    let log = result["log"].as_str().unwrap();
    for text in [
        "'localhost' is not host:port",
        "'localhost:99999': the port is not in 1..65535",
        "reserved characters",
        "Invalid property value: Compression",
        "Invalid property value: Distribution",
        "Invalid property value: Streaming",
        "Invalid property value: QueueWaitMs",
        "PymeStreamer: cannot open the series",
        "set Servers (host:port;...) or ServerFilter",
        "set Streaming to 0 before changing Servers",
    ] {
        assert!(
            log.contains(text) || errors.to_string().contains(text),
            "no error says {text:?}: {result}"
        );
    }
    assert_eq!(
        result["servers_kept"],
        cluster.servers(),
        "a refused value leaves the old one: {result}"
    );
    assert_eq!(result["streaming_after_dead"], "0", "{result}");
}

#[test]
fn loaded_and_unloaded_ten_times_without_leaked_threads() {
    let Some(adapters) = setup("loaded_and_unloaded_ten_times_without_leaked_threads") else {
        return;
    };
    let cluster = Cluster::start(2);
    let result = drive(
        &adapters,
        "load_unload",
        serde_json::json!({"servers": cluster.servers(), "bits": 16, "series": ["mm/load"]}),
    );
    assert_eq!(
        result["threads_after_first"], result["threads_after_last"],
        "{result}"
    );
    for i in 0..10 {
        check_series(&cluster, &format!("mm/load_{i}"), 20, 16, true);
    }
}

#[test]
fn a_server_killed_mid_sequence_loses_nothing() {
    let Some(adapters) = setup("a_server_killed_mid_sequence_loses_nothing") else {
        return;
    };
    let cluster = Cluster::start(2);
    let pid = cluster.servers[1].child.id();
    let result = drive(
        &adapters,
        "kill_server",
        serde_json::json!({"servers": cluster.servers(), "bits": 16, "interval_us": 500,
                           "kill_after": 200, "kill_pid": pid, "series": ["mm/kill"]}),
    );
    let acked = result["FramesAcknowledged"].as_u64().unwrap();
    assert!(acked >= 400, "{result}");
    assert_eq!(result["FramesFailed"], 0, "{result}");
    assert_eq!(result["FramesDropped"], 0, "{result}");
    assert_eq!(result["FramesInFlight"], 0, "{result}");
    check_series(&cluster, "mm/kill", acked, 16, true);
}

/// Runs the driver's `scenario`, which writes `marker` once the frames went to the
/// spill folder; then starts the server on `port` (storing in `root/s0`) and waits
/// for the driver's result.
fn drive_then_serve(
    adapters: &Path,
    scenario: &str,
    args: serde_json::Value,
    marker: &Path,
    root: &Path,
    port: u16,
) -> (serde_json::Value, ServeProcess) {
    let mut driver = Command::new(python())
        .arg(source_dir().join("tests/micromanager/driver.py"))
        .arg(adapters)
        .arg(scenario)
        .arg(args.to_string())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the driver runs");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while !marker.exists() {
        if let Some(status) = driver.try_wait().unwrap() {
            let out = driver.wait_with_output().unwrap();
            panic!(
                "driver ended early ({status}): {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{scenario}: the frames did not spill"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let server = ServeProcess::start(&root.join("s0"), port, &[]);
    let out = driver.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "driver failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let result = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    (result, server)
}

#[test]
fn every_server_down_at_start_spills_then_drains() {
    let Some(adapters) = setup("every_server_down_at_start_spills_then_drains") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let port = common::dead_port();
    let marker = dir.path().join("sequence-done");
    // The server starts only once the whole sequence went to the spill folder.
    let (result, server) = drive_then_serve(
        &adapters,
        "outage",
        serde_json::json!({"servers": format!("127.0.0.1:{port}"), "bits": 16, "frames": 200,
                               "series": ["mm/outage"], "SpillFolder": dir.path().join("spill"),
                               "marker": marker}),
        &marker,
        dir.path(),
        port,
    );
    assert_eq!(result["servers_up_at_start"], 0, "{result}");
    assert_eq!(
        result["during"]["FramesAcknowledged"], 0,
        "no server while it ran: {result}"
    );
    assert_eq!(result["during"]["FramesDropped"], 0, "{result}");
    assert_eq!(result["final"]["FramesAcknowledged"], 200, "{result}");
    assert_eq!(result["final"]["FramesFailed"], 0, "{result}");
    let cluster = Cluster {
        servers: vec![server],
        dir,
    };
    check_series(&cluster, "mm/outage", 200, 16, true);
}

/// The spill folder drains while the camera goes on: every server is down at
/// `Streaming 1`, 100 frames of 512 KiB spill (100 a second), then the server starts and the camera
/// runs 200 frames more. The folder's files are read back into the same queue that
/// the camera's frames need (the adapter gives it twice its pool of 32 buffers, and
/// read-back files take at most a quarter); a frame finding it full must not be
/// refused (the adapter puts with no wait: it would count a failed frame, lost).
#[test]
fn the_spill_folder_draining_while_the_camera_runs_loses_no_frame() {
    let test = "the_spill_folder_draining_while_the_camera_runs_loses_no_frame";
    let Some(adapters) = setup(test) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let port = common::dead_port();
    let marker = dir.path().join("spilled");
    let (result, server) = drive_then_serve(
        &adapters,
        "outage_then_up",
        serde_json::json!({"servers": format!("127.0.0.1:{port}"), "bits": 16,
                               "width": 1024, "height": 256, "BufferMB": 16,
                               "Compression": "none", "interval_us": 10000,
                               "spilled": 100, "after": 200,
                               "series": ["mm/drain"], "SpillFolder": dir.path().join("spill"),
                               "marker": marker}),
        &marker,
        dir.path(),
        port,
    );
    assert_eq!(result["at_marker"]["FramesAcknowledged"], 0, "{result}");
    assert!(result.get("stop_error").is_none(), "{result}");
    assert_eq!(result["final"]["FramesFailed"], 0, "{result}");
    assert_eq!(result["final"]["FramesDropped"], 0, "{result}");
    let acked = result["final"]["FramesAcknowledged"].as_u64().unwrap();
    assert!(acked >= 300, "{result}");
    let cluster = Cluster {
        servers: vec![server],
        dir,
    };
    for n in 0..acked {
        assert_eq!(
            cluster
                .copies("mm/drain", &format!("frame{n:05}.pzf"))
                .len(),
            1,
            "frame {n}: {result}"
        );
    }
}

/// The only server stopped: 4 MiB frames, BufferMB 16 (4 buffers), so the pool runs out.
fn queue_full(test: &str, policy: &str) -> serde_json::Value {
    let Some(adapters) = setup(test) else {
        return serde_json::Value::Null;
    };
    let cluster = Cluster::start(1);
    let result = drive(
        &adapters,
        "queue_full",
        serde_json::json!({"servers": cluster.servers(), "bits": 16, "frames": 20, "width": 2048,
                           "height": 1024, "BufferMB": 16, "QueueFullPolicy": policy,
                           "QueueWaitMs": 200, "pid": cluster.servers[0].child.id(),
                           "series": ["mm/full"]}),
    );
    let acked = result["final"]["FramesAcknowledged"].as_u64().unwrap();
    let dropped = result["final"]["FramesDropped"].as_u64().unwrap();
    assert!(dropped >= 1, "the pool ran out: {result}");
    assert_eq!(
        acked + dropped,
        20,
        "every frame stored or counted: {result}"
    );
    assert_eq!(result["final"]["FramesFailed"], 0, "{result}");
    assert_eq!(result["during"]["FramesDropped"], dropped, "{result}");
    // Only `wait` waits for a buffer; each frame it dropped waited first.
    let waited = result["final"]["FramesWaited"].as_u64().unwrap();
    match policy {
        "wait" => assert!(waited >= dropped, "{result}"),
        _ => assert_eq!(waited, 0, "{result}"),
    }
    // The streamed frames are numbered 0.. without gaps, and no other frame is stored.
    for n in 0..acked {
        assert_eq!(
            cluster.copies("mm/full", &format!("frame{n:05}.pzf")).len(),
            1,
            "{result}"
        );
    }
    assert!(cluster
        .copies("mm/full", &format!("frame{acked:05}.pzf"))
        .is_empty());
    assert_eq!(cluster.copies("mm/full", "events.json").len(), 1);
    result
}

#[test]
fn queue_full_with_drop_counts_every_dropped_frame() {
    queue_full("queue_full_with_drop_counts_every_dropped_frame", "drop");
}

#[test]
fn queue_full_with_wait_waits_its_bound_then_drops() {
    let result = queue_full("queue_full_with_wait_waits_its_bound_then_drops", "wait");
    if result.is_null() {
        return;
    }
    // Each dropped frame waited QueueWaitMs (200 ms) first.
    let dropped = result["final"]["FramesDropped"].as_f64().unwrap();
    assert!(
        result["sequence_s"].as_f64().unwrap() >= dropped * 0.2,
        "{result}"
    );
}

/// A pool larger than the library's default memory budget (1 GiB) is held whole: 300
/// frames of 4 MiB (1.2 GB) wait for the only server, stopped, in a 1.5 GB pool; none
/// is refused for want of memory (the adapter sizes the budget to its pool; it did
/// not, and 46 of 300 frames failed).
#[test]
fn a_pool_larger_than_the_default_memory_budget_loses_no_frame() {
    let test = "a_pool_larger_than_the_default_memory_budget_loses_no_frame";
    let Some(adapters) = setup(test) else {
        return;
    };
    let cluster = Cluster::start(1);
    let result = drive(
        &adapters,
        "queue_full",
        serde_json::json!({"servers": cluster.servers(), "bits": 16, "frames": 300, "width": 2048,
                           "height": 1024, "BufferMB": 1536, "circular_mb": 1536, "Compression": "none",
                           "QueueFullPolicy": "wait",
                           "QueueWaitMs": 1000, "pid": cluster.servers[0].child.id(),
                           "series": ["mm/big_pool"]}),
    );
    assert!(result.get("stop_error").is_none(), "{result}");
    assert_eq!(result["during"]["FramesFailed"], 0, "{result}");
    assert_eq!(result["during"]["FramesDropped"], 0, "{result}");
    assert_eq!(result["during"]["FramesWaited"], 0, "{result}");
    assert_eq!(result["final"]["FramesAcknowledged"], 300, "{result}");
    assert_eq!(result["final"]["FramesFailed"], 0, "{result}");
    for n in 0..300 {
        assert_eq!(
            cluster
                .copies("mm/big_pool", &format!("frame{n:05}.pzf"))
                .len(),
            1,
            "frame {n}"
        );
    }
    assert_eq!(cluster.copies("mm/big_pool", "events.json").len(), 1);
}

/// PYME reads the adapter's series as a cluster series: its `ClusterPZFDataSource`
/// (through PYME's `clusterIO`, which finds our servers in PYME's local registry)
/// sees every frame with the camera's pixels, the metadata, the events and a
/// complete series. PYME starts zeroconf, so its side runs inside a network
/// namespace with only lo (as root; skipped visibly otherwise).
#[cfg(target_os = "linux")]
#[test]
fn pymes_cluster_data_source_reads_the_series_back() {
    let test = "pymes_cluster_data_source_reads_the_series_back";
    let Some(adapters) = setup(test) else { return };
    // SAFETY: a plain system call without arguments.
    if unsafe { libc::geteuid() } != 0 {
        common::skip::skip(test, "not root (a network namespace needs CAP_NET_ADMIN)");
        return;
    }
    if let Some(why) = common::skip::missing_tool("ip", &["-V"]) {
        common::skip::skip(test, &why);
        return;
    }
    let cluster = Cluster::start(2);
    let series = format!("mm/{test}");
    let frames = 200u64;
    let result = drive(
        &adapters,
        "sequences",
        serde_json::json!({"servers": cluster.servers(), "bits": 16, "frames": frames,
                           "series": [series], "Compression": "huffman"}),
    );
    assert_eq!(result["runs"][0]["FramesAcknowledged"], frames, "{result}");
    // Our servers stop (their roots are locked while they run); PYME's side starts
    // servers of its own over the same roots, inside the namespace.
    let Cluster { servers, dir } = cluster;
    drop(servers);
    let roots: Vec<PathBuf> = (0..2).map(|i| dir.path().join(format!("s{i}"))).collect();
    let namespace = format!("pyme-mm-{}", std::process::id());
    let ip = |args: &[&str]| {
        Command::new("ip")
            .args(args)
            .status()
            .is_ok_and(|s| s.success())
    };
    assert!(ip(&["netns", "add", &namespace]), "ip netns add");
    struct Delete<'a>(&'a str);
    impl Drop for Delete<'_> {
        fn drop(&mut self) {
            let _ = Command::new("ip")
                .args(["netns", "delete", self.0])
                .status();
        }
    }
    let _delete = Delete(&namespace);
    assert!(ip(&[
        "netns", "exec", &namespace, "ip", "link", "set", "lo", "up"
    ]));
    let tmp = dir.path().join("tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    let args = serde_json::json!({
        "roots": roots, "bin": env!("CARGO_BIN_EXE_pyme-stream"),
        "cluster": format!("MMREAD{}", std::process::id()), "series": series,
        "width": 96, "height": 64, "bits": 16,
    });
    let out = Command::new("ip")
        .args(["netns", "exec", &namespace, "env"])
        .arg(format!("TMPDIR={}", tmp.display()))
        .arg("PYTHONDONTWRITEBYTECODE=1")
        .arg(python())
        .arg(source_dir().join("tests/micromanager/driver.py"))
        .arg(&adapters)
        .arg("cluster_read")
        .arg(args.to_string())
        .output()
        .expect("ip netns exec");
    assert!(
        out.status.success(),
        "PYME's side failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let read: serde_json::Value =
        serde_json::from_str(text.lines().last().unwrap_or("")).expect("the driver's JSON");
    assert_eq!(read["frames"], frames, "{read}");
    assert_eq!(
        read["same"], frames,
        "every frame has the camera's pixels: {read}"
    );
    assert_eq!(read["complete"], true, "{read}");
    assert_eq!(
        (read["width"].clone(), read["height"].clone()),
        (96.into(), 64.into())
    );
}
