//! `pyme-stream monitor` and the server's `/__metrics`, for real: the metrics parsed
//! by a Prometheus text parser written here (HELP, TYPE, names, labels, values), a
//! server killed and one stopped (SIGSTOP) shown down in `/api/status` and in
//! `pyme_server_up` within 3 s (measured), servers that answer garbage, a huge
//! body, a slow drip or nothing at all, one down at the start, and bad requests to
//! the monitor itself. The page in headless Chromium, with PYME's own data server
//! in the cluster, is in the second half (network namespace, skipped visibly
//! without root, `ip`, PYME or Chromium). Linux only: signals, namespaces.

#![cfg(target_os = "linux")]

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_pyme-stream");

/// The bound every "shown down" is held to: the issue's 3 s. The monitor's design
/// bound is one poll interval plus one poll timeout (1.8 s with the defaults), so
/// 3 s leaves 1.2 s for a loaded machine; the measured times are printed.
const DOWN_WITHIN: Duration = Duration::from_secs(3);

// ---- a Prometheus text parser ------------------------------------------------------

/// One metric family of a scrape.
#[derive(Debug, Default)]
struct Family {
    help: Option<String>,
    kind: Option<String>,
    samples: Vec<(BTreeMap<String, String>, f64)>,
}

fn is_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn is_label_name(name: &str) -> bool {
    is_metric_name(name) && !name.contains(':')
}

/// Fails the parse with a message (the parser returns errors, it never panics,
/// so that the refusal test below prints nothing).
macro_rules! ensure {
    ($cond:expr, $($why:tt)+) => {
        if !$cond {
            return Err(format!($($why)+));
        }
    };
}

/// Parses the text exposition format strictly: every sample's family has its
/// `# HELP` and `# TYPE` before its first sample, types are known, counters end in
/// `_total`, names and labels are well formed, values are numbers, no label set
/// repeats within a family, the text ends with a line feed.
fn try_parse_prometheus(text: &str) -> Result<BTreeMap<String, Family>, String> {
    ensure!(
        text.ends_with('\n'),
        "the text does not end with a line feed"
    );
    let mut families: BTreeMap<String, Family> = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').ok_or(format!("HELP: {line}"))?;
            ensure!(is_metric_name(name), "{line}");
            let family = families.entry(name.to_owned()).or_default();
            ensure!(family.help.is_none(), "HELP twice: {line}");
            ensure!(family.samples.is_empty(), "HELP after samples: {line}");
            family.help = Some(help.to_owned());
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').ok_or(format!("TYPE: {line}"))?;
            ensure!(
                ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                "{line}"
            );
            if kind == "counter" {
                ensure!(name.ends_with("_total"), "a counter ends in _total: {line}");
            }
            let family = families.entry(name.to_owned()).or_default();
            ensure!(family.kind.is_none(), "TYPE twice: {line}");
            ensure!(family.samples.is_empty(), "TYPE after samples: {line}");
            family.kind = Some(kind.to_owned());
        } else if line.starts_with('#') || line.is_empty() {
            continue;
        } else {
            let (series, value) = line.rsplit_once(' ').ok_or(format!("sample: {line}"))?;
            let value: f64 = match value {
                "+Inf" => f64::INFINITY,
                "-Inf" => f64::NEG_INFINITY,
                "NaN" => f64::NAN,
                v => v.parse().map_err(|_| format!("value of {line}"))?,
            };
            let (name, labels) = match series.split_once('{') {
                None => (series, BTreeMap::new()),
                Some((name, rest)) => {
                    let inside = rest.strip_suffix('}').ok_or(format!("braces: {line}"))?;
                    (name, parse_labels(inside)?)
                }
            };
            ensure!(is_metric_name(name), "{line}");
            let family = families
                .get_mut(name)
                .ok_or(format!("sample before its HELP and TYPE: {line}"))?;
            ensure!(
                family.help.is_some() && family.kind.is_some(),
                "sample before its HELP and TYPE: {line}"
            );
            ensure!(
                family.samples.iter().all(|(l, _)| *l != labels),
                "a label set twice: {line}"
            );
            family.samples.push((labels, value));
        }
    }
    for (name, family) in &families {
        ensure!(
            family.help.is_some() && family.kind.is_some(),
            "{name} lacks HELP or TYPE"
        );
    }
    Ok(families)
}

fn parse_prometheus(text: &str) -> BTreeMap<String, Family> {
    try_parse_prometheus(text).unwrap_or_else(|why| panic!("{why}\n{text}"))
}

/// `a="x",b="y\"z"` (escapes: backslash, quote, n).
fn parse_labels(text: &str) -> Result<BTreeMap<String, String>, String> {
    let mut labels = BTreeMap::new();
    let mut chars = text.chars().peekable();
    while chars.peek().is_some() {
        let name: String = chars.by_ref().take_while(|c| *c != '=').collect();
        ensure!(is_label_name(&name), "label name {name:?} in {text}");
        ensure!(chars.next() == Some('"'), "unquoted value in {text}");
        let mut value = String::new();
        loop {
            match chars
                .next()
                .ok_or(format!("unterminated value in {text}"))?
            {
                '"' => break,
                '\\' => match chars.next() {
                    Some('\\') => value.push('\\'),
                    Some('"') => value.push('"'),
                    Some('n') => value.push('\n'),
                    other => return Err(format!("bad escape {other:?} in {text}")),
                },
                c => value.push(c),
            }
        }
        ensure!(
            labels.insert(name, value).is_none(),
            "a label twice in {text}"
        );
        match chars.next() {
            None => break,
            Some(',') => continue,
            Some(c) => return Err(format!("{c:?} after a label in {text}")),
        }
    }
    Ok(labels)
}

#[test]
fn the_parser_refuses_what_prometheus_refuses() {
    let good = "# HELP a_total x\n# TYPE a_total counter\na_total{server=\"h:1\"} 3\n";
    assert_eq!(parse_prometheus(good)["a_total"].samples.len(), 1);
    for bad in [
        "a 1\n",
        "# TYPE a_total counter\na_total 1\n",
        "# HELP a x\n# TYPE a counter\na 1\n",
        "# HELP a x\n# TYPE a gauge\na{server=h} 1\n",
        "# HELP a x\n# TYPE a gauge\na one\n",
        "# HELP a x\n# TYPE a gauge\na 1",
        "# HELP a x\n# TYPE a gauge\na 1\na 2\n",
    ] {
        assert!(try_parse_prometheus(bad).is_err(), "accepted {bad:?}");
    }
}

// ---- helpers -----------------------------------------------------------------------

/// `GET path` on a new connection; the status code and the body.
fn http_get(address: &str, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(address).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).expect("read the answer");
    split_answer(&answer)
}

fn split_answer(answer: &[u8]) -> (u16, String) {
    let text = String::from_utf8_lossy(answer);
    let code = text
        .get(9..12)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {text:?}"));
    let body = text
        .split_once("\r\n\r\n")
        .map_or(String::new(), |(_, body)| body.to_owned());
    (code, body)
}

fn put(address: &str, name: &str, body: &[u8]) -> u16 {
    let mut stream = TcpStream::connect(address).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "PUT /{name} HTTP/1.1\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .unwrap();
    stream.write_all(body).unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).unwrap();
    split_answer(&answer).0
}

/// A folder under target/, removed on drop.
struct WorkDir(PathBuf);

impl WorkDir {
    fn new(what: &str) -> WorkDir {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("target/monitor-test")
            .join(format!("{what}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        WorkDir(dir)
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        let _ = Command::new("chmod")
            .arg("-R")
            .arg("u+rwx")
            .arg(&self.0)
            .status();
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A child process killed (and reaped) on drop.
struct Process {
    child: Child,
    /// What it printed first (`listening on ...`, `monitoring on ...`).
    line: String,
}

impl Process {
    /// Starts `command` and waits for its first line on stdout.
    fn start(command: Command) -> Process {
        Process::start_with_stderr(command, Stdio::null())
    }

    /// As [`Process::start`], its stderr sent to `stderr`.
    fn start_with_stderr(mut command: Command, stderr: Stdio) -> Process {
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("spawn");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert!(!line.is_empty(), "the process said nothing");
        Process {
            child,
            line: line.trim().to_owned(),
        }
    }

    fn signal(&self, signal: i32) {
        // SAFETY: a plain system call on our own child's pid.
        let rc = unsafe { libc::kill(self.child.id() as i32, signal) };
        assert_eq!(rc, 0, "kill");
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `pyme-stream serve` on a free port; its `host:port`.
fn serve(root: &Path) -> (Process, String) {
    let mut command = Command::new(BIN);
    command
        .args(["serve", "--port", "0", "--advertise", "none", "--root"])
        .arg(root);
    let process = Process::start(command);
    let address = process
        .line
        .strip_prefix("listening on ")
        .expect("listening on")
        .to_owned();
    (process, address)
}

/// `pyme-stream monitor --servers ...` on a free port; its `host:port`.
fn monitor(servers: &[&str]) -> (Process, String) {
    let mut command = Command::new(BIN);
    command.args(["monitor", "--port", "0", "--servers", &servers.join(",")]);
    let process = Process::start(command);
    let address = process
        .line
        .strip_prefix("monitoring on http://")
        .and_then(|rest| rest.strip_suffix('/'))
        .expect("monitoring on")
        .to_owned();
    (process, address)
}

fn api_status(monitor: &str) -> Value {
    let (code, body) = http_get(monitor, "/api/status");
    assert_eq!(code, 200, "{body}");
    serde_json::from_str(&body).expect("JSON")
}

fn server_json<'a>(status: &'a Value, server: &str) -> &'a Value {
    status["servers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["server"] == server)
        .unwrap_or_else(|| panic!("{server} not in {status}"))
}

fn up_metric(monitor: &str, server: &str) -> Option<f64> {
    let (code, text) = http_get(monitor, "/metrics");
    assert_eq!(code, 200);
    let families = parse_prometheus(&text);
    families.get("pyme_server_up").and_then(|family| {
        family
            .samples
            .iter()
            .find(|(labels, _)| labels.get("server").map(String::as_str) == Some(server))
            .map(|(_, v)| *v)
    })
}

/// Waits up to `limit` for `check`, polling every 50 ms; how long it took.
fn wait_for(limit: Duration, what: &str, mut check: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    loop {
        if check() {
            return start.elapsed();
        }
        assert!(start.elapsed() < limit, "not within {limit:?}: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

// ---- the server's /__metrics -------------------------------------------------------

#[test]
fn server_metrics_are_prometheus_text_that_counts_what_is_stored() {
    let work = WorkDir::new("server-metrics");
    let (_server, address) = serve(&work.0.join("root"));
    let (code, text) = http_get(&address, "/__metrics");
    assert_eq!(code, 200);
    let before = parse_prometheus(&text);
    for (name, kind) in [
        ("pyme_server_up", "gauge"),
        ("pyme_server_disk_free_bytes", "gauge"),
        ("pyme_server_disk_total_bytes", "gauge"),
        ("pyme_server_bytes_stored_total", "counter"),
        ("pyme_server_files_stored_total", "counter"),
        ("pyme_server_connections_open", "gauge"),
        ("pyme_server_uptime_seconds", "gauge"),
    ] {
        let family = &before[name];
        assert_eq!(family.kind.as_deref(), Some(kind), "{name}");
        assert_eq!(family.samples.len(), 1, "{name}");
        assert!(family.samples[0].0.is_empty(), "no labels: {name}");
    }
    let value = |families: &BTreeMap<String, Family>, name: &str| families[name].samples[0].1;
    assert_eq!(value(&before, "pyme_server_up"), 1.0);
    assert_eq!(value(&before, "pyme_server_files_stored_total"), 0.0);
    assert!(value(&before, "pyme_server_disk_free_bytes") > 0.0);
    assert_eq!(put(&address, "a/b.txt", &[7u8; 1000]), 200);
    assert_eq!(put(&address, "a/c.txt", &[7u8; 24]), 200);
    let after = parse_prometheus(&http_get(&address, "/__metrics").1);
    assert_eq!(value(&after, "pyme_server_files_stored_total"), 2.0);
    assert_eq!(value(&after, "pyme_server_bytes_stored_total"), 1024.0);
    // The same figures as /__status.
    let status: Value = serde_json::from_str(&http_get(&address, "/__status").1).unwrap();
    assert_eq!(status["files_stored"], 2);
    assert_eq!(status["bytes_stored"], 1024);
    // HEAD answers no body; PUT is not an operation of __metrics.
    let mut stream = TcpStream::connect(&address).unwrap();
    stream
        .write_all(b"HEAD /__metrics HTTP/1.1\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).unwrap();
    assert_eq!(split_answer(&answer), (200, String::new()));
    assert_eq!(put(&address, "__metrics", b"x"), 405);
}

// ---- the monitor against our servers -----------------------------------------------

#[test]
fn monitor_metrics_and_status_follow_the_servers() {
    let work = WorkDir::new("follow");
    let (_a, a) = serve(&work.0.join("a"));
    let (_b, b) = serve(&work.0.join("b"));
    let (_monitor, monitor) = monitor(&[&a, &b]);
    for i in 0..5 {
        assert_eq!(put(&a, &format!("s/f{i}"), &[1u8; 100]), 200);
    }
    assert_eq!(put(&b, "s/g", &[1u8; 50]), 200);
    // The counters reach the monitor at its next poll.
    wait_for(
        Duration::from_secs(5),
        "the stored files in /metrics",
        || {
            let families = parse_prometheus(&http_get(&monitor, "/metrics").1);
            let files = &families["pyme_server_files_stored_total"].samples;
            let of = |server: &str| {
                files
                    .iter()
                    .find(|(l, _)| l["server"] == server)
                    .map(|(_, v)| *v)
            };
            of(&a) == Some(5.0) && of(&b) == Some(1.0)
        },
    );
    let families = parse_prometheus(&http_get(&monitor, "/metrics").1);
    for name in [
        "pyme_server_up",
        "pyme_server_disk_free_bytes",
        "pyme_server_bytes_stored_total",
        "pyme_server_files_stored_total",
    ] {
        let family = &families[name];
        let servers: Vec<&str> = family
            .samples
            .iter()
            .map(|(labels, _)| {
                assert_eq!(labels.len(), 1, "one label: {name}");
                labels["server"].as_str()
            })
            .collect();
        assert_eq!(servers, [a.as_str(), b.as_str()], "{name}");
    }
    let bytes = &families["pyme_server_bytes_stored_total"].samples;
    assert_eq!((bytes[0].1, bytes[1].1), (500.0, 50.0));
    assert!(families["pyme_server_up"]
        .samples
        .iter()
        .all(|s| s.1 == 1.0));

    let status = api_status(&monitor);
    assert_eq!(status["totals"]["servers"], 2);
    assert_eq!(status["totals"]["servers_up"], 2);
    let server = server_json(&status, &a);
    assert_eq!(server["state"], "up");
    assert_eq!(server["software"], "pyme-streaming");
    assert_eq!(server["files_stored"], 5);
    assert_eq!(server["data_in"], "stored");
    assert!(server["disk_free_bytes"].as_u64().unwrap() > 0);
    assert!(server["uptime_s"].as_f64().unwrap() > 0.0);
    assert!(server["computer_name"].is_string());
    assert!(server["history"]["seconds_ago"].as_array().unwrap().len() >= 2);
    let free_sum = [&a, &b]
        .iter()
        .map(|s| server_json(&status, s)["disk_free_bytes"].as_u64().unwrap())
        .sum::<u64>();
    assert_eq!(status["totals"]["disk_free_bytes"], free_sum);
}

/// A server restarted on the same port: its counters start again from zero, as
/// Prometheus expects of a counter, and the monitor counts the restart.
#[test]
fn a_restarted_server_resets_its_counters() {
    let work = WorkDir::new("restart");
    let root = work.0.join("a");
    let (first, a) = serve(&root);
    let (_monitor, monitor) = monitor(&[&a]);
    for i in 0..3 {
        assert_eq!(put(&a, &format!("f{i}"), b"12345"), 200);
    }
    wait_for(Duration::from_secs(5), "3 files seen", || {
        server_json(&api_status(&monitor), &a)["files_stored"] == 3
    });
    drop(first);
    let port = a.rsplit_once(':').unwrap().1;
    let mut command = Command::new(BIN);
    command
        .args(["serve", "--advertise", "none", "--port", port, "--root"])
        .arg(&root);
    let _second = Process::start(command);
    assert_eq!(put(&a, "g", b"1"), 200);
    wait_for(Duration::from_secs(5), "the restart seen", || {
        let status = api_status(&monitor);
        let server = server_json(&status, &a);
        server["files_stored"] == 1 && server["restarts"] == 1 && server["state"] == "up"
    });
    let families = parse_prometheus(&http_get(&monitor, "/metrics").1);
    assert_eq!(families["pyme_server_files_stored_total"].samples[0].1, 1.0);
}

#[test]
fn killed_and_stopped_servers_are_down_within_3_s() {
    let work = WorkDir::new("down");
    let (killed, k) = serve(&work.0.join("k"));
    let (stopped, s) = serve(&work.0.join("s"));
    let (_alive, a) = serve(&work.0.join("a"));
    let (_monitor, monitor) = monitor(&[&k, &s, &a]);
    wait_for(Duration::from_secs(5), "all up", || {
        api_status(&monitor)["totals"]["servers_up"] == 3
    });
    // Each fault lands at a random moment of the poll cycle.
    std::thread::sleep(Duration::from_millis(fastrand_ms()));
    let mut killed = killed;
    let signalled = Instant::now();
    killed.signal(libc::SIGKILL);
    stopped.signal(libc::SIGSTOP);
    let _ = killed.child.wait();
    let mut api = [None, None];
    let mut metrics = [None, None];
    while api.iter().chain(&metrics).any(Option::is_none) {
        let elapsed = signalled.elapsed();
        assert!(
            elapsed < DOWN_WITHIN,
            "not shown down within {DOWN_WITHIN:?}: /api/status {api:?}, pyme_server_up {metrics:?}"
        );
        let status = api_status(&monitor);
        for (i, server) in [&k, &s].into_iter().enumerate() {
            if api[i].is_none() && server_json(&status, server)["state"] == "down" {
                api[i] = Some(signalled.elapsed());
            }
            if metrics[i].is_none() && up_metric(&monitor, server) == Some(0.0) {
                metrics[i] = Some(signalled.elapsed());
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    println!(
        "shown down after: killed {:?} (/api/status) {:?} (/metrics); stopped {:?} {:?}",
        api[0].unwrap(),
        metrics[0].unwrap(),
        api[1].unwrap(),
        metrics[1].unwrap()
    );
    let status = api_status(&monitor);
    assert_eq!(
        server_json(&status, &a)["state"],
        "up",
        "the others stay up"
    );
    assert_eq!(status["totals"]["servers_up"], 1);
    assert!(server_json(&status, &s)["error"].is_string());
    // Woken, the stopped server is up again.
    stopped.signal(libc::SIGCONT);
    wait_for(Duration::from_secs(5), "the stopped server back up", || {
        up_metric(&monitor, &s) == Some(1.0)
    });
}

/// A delay in 0..1000 ms, from the clock (no seed to keep).
fn fastrand_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_millis() as u64
}

/// `pyme-stream serve` of `cluster`, advertised in the registry at `registry`
/// (no mDNS), storing in `root`; with its address.
fn serve_in_registry(registry: &Path, cluster: &str, root: &Path) -> (Process, String) {
    let mut command = Command::new(BIN);
    command
        .args([
            "serve",
            "--port",
            "0",
            "--advertise",
            "local",
            "--serverfilter",
            cluster,
        ])
        .arg("--registry")
        .arg(registry)
        .arg("--root")
        .arg(root);
    let process = Process::start(command);
    let address = process
        .line
        .strip_prefix("listening on ")
        .unwrap()
        .to_owned();
    (process, address)
}

/// `pyme-stream monitor` of `cluster` found in the registry at `registry` (no
/// mDNS); with its address.
fn monitor_of_cluster(registry: &Path, cluster: &str) -> (Process, String) {
    let mut command = Command::new(BIN);
    command
        .args([
            "monitor",
            "--port",
            "0",
            "--no-mdns",
            "--serverfilter",
            cluster,
        ])
        .arg("--registry")
        .arg(registry);
    let process = Process::start(command);
    let monitor = process
        .line
        .strip_prefix("monitoring on http://")
        .and_then(|rest| rest.strip_suffix('/'))
        .unwrap()
        .to_owned();
    (process, monitor)
}

/// `--serverfilter`: servers of the cluster that appear in the registry are added,
/// one withdrawn (stopped cleanly) is shown down, others' clusters are left out.
#[test]
fn discovery_adds_servers_that_appear_and_shows_vanished_ones_down() {
    let work = WorkDir::new("discovery");
    let registry = work.0.join("registry.sqlite");
    let start_server =
        |name: &str, cluster: &str| serve_in_registry(&registry, cluster, &work.0.join(name));
    let (first, a) = start_server("a", "monitored-cluster");
    let (_other, other) = start_server("o", "another-cluster");
    let (_process, monitor) = monitor_of_cluster(&registry, "monitored-cluster");
    // Discovery looks every 5 s; then the first poll.
    wait_for(
        Duration::from_secs(10),
        "the first server found and up",
        || {
            let status = api_status(&monitor);
            status["servers"].as_array().unwrap().len() == 1
                && server_json(&status, &a)["state"] == "up"
        },
    );
    let status = api_status(&monitor);
    assert_eq!(status["monitor"]["serverfilter"], "monitored-cluster");
    assert!(server_json(&status, &a)["name"]
        .as_str()
        .unwrap()
        .contains("monitored-cluster"));
    let (_second, b) = start_server("b", "monitored-cluster");
    wait_for(Duration::from_secs(10), "the second server added", || {
        let status = api_status(&monitor);
        status["servers"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["server"] == b.as_str() && s["state"] == "up")
    });
    // Stopped cleanly, the first withdraws its advertisement: shown down.
    first.signal(libc::SIGTERM);
    wait_for(Duration::from_secs(10), "the first server down", || {
        server_json(&api_status(&monitor), &a)["state"] == "down"
    });
    let status = api_status(&monitor);
    assert_eq!(status["totals"]["servers"], 2);
    assert_eq!(status["totals"]["servers_up"], 1);
    assert!(status["servers"]
        .as_array()
        .unwrap()
        .iter()
        .all(|s| s["server"] != other.as_str()));
}

// ---- hostile servers and clients ---------------------------------------------------

/// A fake server: answers every connection with `behaviour` on its own thread.
struct Fake {
    address: String,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Fake {
    fn start(behaviour: fn(TcpStream, &AtomicBool)) -> Fake {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let mut connections = Vec::new();
            while !flag.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        stream.set_nonblocking(false).unwrap();
                        let flag = Arc::clone(&flag);
                        connections.push(std::thread::spawn(move || behaviour(stream, &flag)));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
            for connection in connections {
                let _ = connection.join();
            }
        });
        Fake {
            address,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Fake {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn read_head(stream: &mut TcpStream) {
    let mut head = Vec::new();
    let mut byte = [0u8];
    while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).unwrap_or(0) == 1 {
        head.push(byte[0]);
    }
}

fn garbage_json(mut stream: TcpStream, _: &AtomicBool) {
    read_head(&mut stream);
    let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\n{\"Disk\": [}}");
}

fn not_http(mut stream: TcpStream, _: &AtomicBool) {
    read_head(&mut stream);
    let _ = stream.write_all(&[0u8, 159, 146, 150, 13, 10, 13, 10, 255]);
}

/// A body that claims 100 MB and keeps coming.
fn huge_body(mut stream: TcpStream, stop: &AtomicBool) {
    read_head(&mut stream);
    let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100000000\r\n\r\n{\"Disk\":\"");
    let chunk = [b'x'; 65536];
    while !stop.load(Ordering::SeqCst) && stream.write_all(&chunk).is_ok() {}
}

/// A huge body without a length (read until the connection ends).
fn huge_unsized_body(mut stream: TcpStream, stop: &AtomicBool) {
    read_head(&mut stream);
    let _ = stream.write_all(b"HTTP/1.0 200 OK\r\n\r\n[");
    let chunk = [b'1'; 65536];
    while !stop.load(Ordering::SeqCst) && stream.write_all(&chunk).is_ok() {}
}

/// A valid status, dripped a byte every 100 ms (it would take seconds).
fn slow_drip(mut stream: TcpStream, stop: &AtomicBool) {
    read_head(&mut stream);
    let body = br#"{"files_stored": 1, "bytes_stored": 1}"#;
    let answer = [
        format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len()).as_bytes(),
        body,
    ]
    .concat();
    for byte in answer {
        if stop.load(Ordering::SeqCst) || stream.write_all(&[byte]).is_err() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Reads the request and answers nothing, holding the connection.
fn silent(mut stream: TcpStream, stop: &AtomicBool) {
    read_head(&mut stream);
    while !stop.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn hostile_servers_are_shown_down_and_never_delay_the_others() {
    let work = WorkDir::new("hostile");
    let (_good, good) = serve(&work.0.join("good"));
    let fakes = [
        ("garbage JSON", Fake::start(garbage_json)),
        ("not HTTP", Fake::start(not_http)),
        ("huge body", Fake::start(huge_body)),
        ("huge unsized body", Fake::start(huge_unsized_body)),
        ("slow drip", Fake::start(slow_drip)),
        ("silent", Fake::start(silent)),
    ];
    // A port with nothing behind it at the start; a server comes there later.
    let late_port = {
        let probe = TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().port()
    };
    let late = format!("127.0.0.1:{late_port}");
    let mut servers: Vec<&str> = vec![&good, &late];
    servers.extend(fakes.iter().map(|(_, fake)| fake.address.as_str()));
    let (_monitor, monitor) = monitor(&servers);

    // Over 6 s the good server is polled about every second however the others
    // behave (6 polls; polled one after another behind the six hostile ones, each
    // costing up to the 0.8 s timeout, it would get at most 2), and the monitor
    // answers at once throughout.
    let start = Instant::now();
    let first_polls = wait_for(Duration::from_secs(3), "first poll of the good one", || {
        server_json(&api_status(&monitor), &good)["polls_ok"]
            .as_u64()
            .unwrap()
            >= 1
    });
    let polls_then = server_json(&api_status(&monitor), &good)["polls_ok"]
        .as_u64()
        .unwrap();
    let mut slowest_answer = Duration::ZERO;
    while start.elapsed() < first_polls + Duration::from_secs(6) {
        let asked = Instant::now();
        let status = api_status(&monitor);
        slowest_answer = slowest_answer.max(asked.elapsed());
        assert_eq!(server_json(&status, &good)["state"], "up", "{status}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let status = api_status(&monitor);
    let polls = server_json(&status, &good)["polls_ok"].as_u64().unwrap() - polls_then;
    println!("good server polled {polls} times in 6 s beside six hostile ones; slowest /api/status {slowest_answer:?}");
    assert!((4..=7).contains(&polls), "polled {polls} times in 6 s");
    assert!(
        slowest_answer < Duration::from_secs(1),
        "{slowest_answer:?}"
    );
    for (what, fake) in &fakes {
        let server = server_json(&status, &fake.address);
        assert_eq!(server["state"], "down", "{what}: {server}");
        assert_eq!(server["polls_ok"], 0, "{what}: {server}");
        println!("{what}: {}", server["error"]);
    }
    assert_eq!(server_json(&status, &late)["state"], "down");
    let families = parse_prometheus(&http_get(&monitor, "/metrics").1);
    assert_eq!(families["pyme_server_up"].samples.len(), 8);

    // The late server comes up and is shown up.
    let (_late_server, late_now) = {
        let mut command = Command::new(BIN);
        command
            .args([
                "serve",
                "--advertise",
                "none",
                "--port",
                &late_port.to_string(),
                "--root",
            ])
            .arg(work.0.join("late"));
        let process = Process::start(command);
        let address = process
            .line
            .strip_prefix("listening on ")
            .unwrap()
            .to_owned();
        (process, address)
    };
    assert_eq!(late_now, late);
    wait_for(Duration::from_secs(5), "the late server up", || {
        server_json(&api_status(&monitor), &late)["state"] == "up"
    });
}

/// A server's own text (its computer name) is data: the page sets it as text, and
/// /api/status carries it as a JSON string, however it is made.
#[test]
fn a_servers_text_reaches_the_views_as_data() {
    fn hostile_name(mut stream: TcpStream, _: &AtomicBool) {
        read_head(&mut stream);
        let body = br#"{"ComputerName": "<img src=x onerror=alert(1)>\"\n", "Disk": {"total": 10, "used": 9.5, "free": 0.5}, "Uptime": "0:00:01"}"#;
        let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len());
        let _ = stream.write_all(head.as_bytes());
        let _ = stream.write_all(body);
    }
    let fake = Fake::start(hostile_name);
    let (_monitor, monitor) = monitor(&[&fake.address]);
    wait_for(Duration::from_secs(5), "the fake read", || {
        server_json(&api_status(&monitor), &fake.address)["state"] == "up"
    });
    let status = api_status(&monitor);
    let server = server_json(&status, &fake.address);
    assert_eq!(server["computer_name"], "<img src=x onerror=alert(1)>\"\n");
    assert_eq!(server["software"], "PYME");
    assert_eq!(server["disk_over_90_percent"], true);
    let (code, page) = http_get(&monitor, "/");
    assert_eq!(code, 200);
    assert!(
        !page.contains("innerHTML"),
        "the page never parses server text as markup"
    );
    assert!(
        !page.contains("src=\"http"),
        "nothing loaded from elsewhere"
    );
    // Labels in /metrics are escaped by the writer (the address is ours anyway).
    parse_prometheus(&http_get(&monitor, "/metrics").1);
}

/// What a raw request to the monitor gets: the code, or `None` when the connection
/// was closed unanswered.
fn raw_request(monitor: &str, bytes: &[u8]) -> Option<u16> {
    let mut stream = TcpStream::connect(monitor).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let _ = stream.write_all(bytes);
    let _ = stream.shutdown(std::net::Shutdown::Write);
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    (!answer.is_empty()).then(|| split_answer(&answer).0)
}

#[test]
fn the_monitor_answers_bad_requests_and_keeps_serving() {
    let work = WorkDir::new("bad-requests");
    let (_server, server) = serve(&work.0.join("a"));
    let (_monitor, monitor) = monitor(&[&server]);
    assert_eq!(
        raw_request(&monitor, b"\x00\x01\x02garbage\r\n\r\n"),
        Some(400)
    );
    assert_eq!(
        raw_request(
            &monitor,
            b"POST /api/status HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello"
        ),
        Some(405)
    );
    assert_eq!(
        raw_request(&monitor, b"DELETE / HTTP/1.1\r\n\r\n"),
        Some(405)
    );
    assert_eq!(
        raw_request(&monitor, b"GET /../../etc/passwd HTTP/1.1\r\n\r\n"),
        Some(404)
    );
    assert_eq!(
        raw_request(&monitor, b"GET http://elsewhere/ HTTP/1.1\r\n\r\n"),
        Some(400)
    );
    assert_eq!(
        raw_request(&monitor, b"GET /nothing HTTP/1.1\r\n\r\n"),
        Some(404)
    );
    let long = format!("GET / HTTP/1.1\r\nX: {}\r\n", "a".repeat(20_000));
    assert_eq!(raw_request(&monitor, long.as_bytes()), Some(431));
    assert_eq!(
        raw_request(&monitor, b"GET / HTTP/1.1\r\n"),
        Some(400),
        "cut short"
    );
    assert_eq!(
        raw_request(&monitor, b""),
        None,
        "nothing asked, nothing answered"
    );
    let (code, page) = http_get(&monitor, "/?x=1");
    assert_eq!(code, 200);
    assert!(page.contains("PYME cluster monitor"));

    // Connections that never send a request (more than the monitor serves at once)
    // do not keep a real client out.
    let idle: Vec<TcpStream> = (0..100)
        .map(|_| TcpStream::connect(&monitor).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    let asked = Instant::now();
    let (code, _) = http_get(&monitor, "/api/status");
    assert_eq!(code, 200);
    assert!(
        asked.elapsed() < Duration::from_secs(2),
        "answered after {:?} beside 100 idle connections",
        asked.elapsed()
    );
    drop(idle);
}

/// With a poll interval longer than the default, a server that answers every poll
/// stays up between polls (its answers are not taken as stale).
#[test]
fn a_long_interval_keeps_a_healthy_server_up_between_polls() {
    let work = WorkDir::new("interval");
    let (_server, server) = serve(&work.0.join("a"));
    let mut command = Command::new(BIN);
    command.args([
        "monitor",
        "--port",
        "0",
        "--interval-ms",
        "4000",
        "--servers",
        &server,
    ]);
    let process = Process::start(command);
    let monitor = process
        .line
        .strip_prefix("monitoring on http://")
        .and_then(|rest| rest.strip_suffix('/'))
        .unwrap()
        .to_owned();
    wait_for(Duration::from_secs(3), "the first poll", || {
        server_json(&api_status(&monitor), &server)["state"] == "up"
    });
    // Over more than one interval, up at every look.
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(6) {
        let status = api_status(&monitor);
        assert_eq!(server_json(&status, &server)["state"], "up", "{status}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Nothing to watch is an error at start, not a page with an empty-named server.
#[test]
fn an_empty_server_list_is_refused() {
    for servers in ["", ",", " , "] {
        let mut child = Command::new(BIN)
            .args(["monitor", "--port", "0", "--servers", servers])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let start = Instant::now();
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break Some(status);
            }
            if start.elapsed() > Duration::from_secs(10) {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let status = status.unwrap_or_else(|| panic!("{servers:?} accepted: it runs"));
        assert!(!status.success(), "{servers:?} accepted");
        let mut stderr = String::new();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut stderr)
            .unwrap();
        assert!(
            stderr.contains("no server to watch"),
            "{servers:?}: {stderr}"
        );
    }
}

/// Shutting the monitor down does not wait for a client that never sends its
/// request (the head timeout, 5 s) nor for more than one poll of a silent server
/// (its timeout, 0.8 s): it closes those connections and joins every thread.
#[test]
fn shutdown_closes_idle_connections_and_joins_promptly() {
    use pyme_streaming::monitor::{Monitor, MonitorConfig};
    let fake = Fake::start(silent);
    let monitor = Monitor::start(MonitorConfig {
        servers: vec![fake.address.clone()],
        port: 0,
        ..MonitorConfig::default()
    })
    .unwrap();
    let address = monitor.local_addr().to_string();
    let mut idle = TcpStream::connect(&address).unwrap();
    // A poll of the silent server under way, and the idle connection accepted.
    std::thread::sleep(Duration::from_millis(300));
    let asked = Instant::now();
    monitor.shutdown();
    let took = asked.elapsed();
    println!("shutdown took {took:?}");
    // 5 s would mean waiting for the idle client's head timeout.
    assert!(took < Duration::from_secs(3), "{took:?}");
    // The idle connection was closed unanswered.
    idle.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buffer = [0u8; 16];
    assert_eq!(idle.read(&mut buffer).unwrap_or(0), 0);
    assert!(TcpStream::connect(&address).is_err(), "no longer listening");
}

// ---- the page in Chromium, with PYME's own data server in the cluster -------------

/// A Python that has PYME and what its data server imports: `$PYME_PYTHON`, else the
/// venv .ci/run makes, else `python3`.
fn pyme_python() -> Result<PathBuf, String> {
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/ci-python-venv/bin/python");
    let candidates: Vec<PathBuf> = match std::env::var_os("PYME_PYTHON") {
        Some(python) => vec![python.into()],
        None => vec![venv, "python3".into()],
    };
    // find_spec imports nothing of PYME: no zeroconf outside the namespace.
    let probe = "import importlib.util as u, sys; \
                 sys.exit(0 if all(u.find_spec(m) for m in ('PYME', 'ujson', 'psutil', 'requests')) else 1)";
    for python in &candidates {
        let ok = Command::new(python)
            .args(["-c", probe])
            .output()
            .is_ok_and(|o| o.status.success());
        if ok {
            return Ok(python.clone());
        }
    }
    Err(format!(
        "no Python with PYME (python-microscopy), ujson and psutil among {candidates:?} (set PYME_PYTHON; .ci/run installs them)"
    ))
}

/// A network namespace with only lo up, deleted on drop.
struct Namespace(String);

impl Namespace {
    fn create() -> Namespace {
        let name = format!("pyme-mon-{}", std::process::id());
        let ok = |args: &[&str]| {
            Command::new("ip")
                .args(args)
                .status()
                .is_ok_and(|s| s.success())
        };
        assert!(ok(&["netns", "add", &name]), "ip netns add {name}");
        let namespace = Namespace(name);
        assert!(ok(&[
            "netns",
            "exec",
            &namespace.0,
            "ip",
            "link",
            "set",
            "lo",
            "up"
        ]));
        namespace
    }

    /// Moves the calling thread into the namespace (threads own their network
    /// namespace; the processes it starts inherit it).
    fn enter(&self) {
        let path = format!("/var/run/netns/{}\0", self.0);
        // SAFETY: a NUL-terminated path; the descriptor is ours and closed below.
        unsafe {
            let fd = libc::open(path.as_ptr().cast(), libc::O_RDONLY | libc::O_CLOEXEC);
            assert!(fd >= 0, "open {path}");
            let rc = libc::setns(fd, libc::CLONE_NEWNET);
            libc::close(fd);
            assert_eq!(rc, 0, "setns");
        }
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// The attributes of each server's row in a dumped DOM: `data-server` to its
/// `data-*` attributes.
fn rows(dom: &str) -> BTreeMap<String, BTreeMap<String, String>> {
    let mut rows = BTreeMap::new();
    for part in dom.split("<tr ").skip(1) {
        let tag = part.split('>').next().unwrap_or_default();
        let mut attributes = BTreeMap::new();
        for piece in tag.split("\" ") {
            if let Some((key, value)) = piece.trim().split_once("=\"") {
                attributes.insert(key.to_owned(), value.trim_end_matches('"').to_owned());
            }
        }
        if let Some(server) = attributes.get("data-server").cloned() {
            rows.insert(server, attributes);
        }
    }
    rows
}

/// The text of the element with `id` in a dumped DOM.
fn text_of(dom: &str, id: &str) -> String {
    let marker = format!("id=\"{id}\"");
    let after = dom.split_once(&marker).map_or("", |(_, after)| after);
    let inner = after.split_once('>').map_or("", |(_, inner)| inner);
    inner.split('<').next().unwrap_or_default().to_owned()
}

/// Chromium run headless: `--dump-dom` of the page (after it has fetched and drawn),
/// or a screenshot.
struct Chromium {
    profile: PathBuf,
}

impl Chromium {
    fn command(&self) -> Command {
        let mut command = Command::new("chromium");
        command
            .args([
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--hide-scrollbars",
                "--virtual-time-budget=2500",
                "--window-size=1400,420",
            ])
            .arg(format!("--user-data-dir={}", self.profile.display()))
            .env("HOME", &self.profile)
            .stderr(Stdio::null());
        command
    }

    fn dump_dom(&self, url: &str) -> String {
        let output = self
            .command()
            .arg("--dump-dom")
            .arg(url)
            .output()
            .expect("chromium");
        assert!(output.status.success(), "chromium --dump-dom failed");
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    fn screenshot(&self, url: &str, png: &Path) {
        let status = self
            .command()
            .arg(format!("--screenshot={}", png.display()))
            .arg(url)
            .stdout(Stdio::null())
            .status()
            .expect("chromium");
        assert!(
            status.success() && png.exists(),
            "chromium --screenshot failed"
        );
    }
}

fn number(attributes: &BTreeMap<String, String>, key: &str) -> f64 {
    attributes
        .get(key)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{key} in {attributes:?}"))
}

/// Headless Chromium loads the page while a bench streams to two of our servers and
/// PYME's own data server; the DOM read at two moments shows every server, up, with
/// its numbers moved; PYME's status keys are read for real; one of our servers
/// killed mid-run and the other stopped (SIGSTOP) are shown down on the page. The
/// screenshot is kept as target/monitor-test/page.png.
#[test]
fn the_page_shows_a_mixed_cluster_live_in_chromium() {
    const TEST: &str = "the_page_shows_a_mixed_cluster_live_in_chromium";
    if std::env::var("PYME_TEST_PYME").as_deref() == Ok("0") {
        // Switched off on purpose (.ci/run's PYME_TEST_PYME=0): said, not failed.
        use std::io::Write;
        let line = format!("\nSKIPPED {TEST}: PYME_TEST_PYME=0\n");
        let _ = std::io::stderr().write_all(line.as_bytes());
        return;
    }
    if !common::skip::require_tool(TEST, "chromium", &["--version"]) {
        return;
    }
    if let Some(reason) = common::netns::unavailable() {
        return common::skip::skip(TEST, &format!("PYME runs in a network namespace: {reason}"));
    }
    let python = match pyme_python() {
        Ok(python) => python,
        Err(reason) => return common::skip::skip(TEST, &reason),
    };
    let work = WorkDir::new("chromium");
    let namespace = Namespace::create();
    let kept = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/monitor-test/page.png");
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                namespace.enter();
                mixed_cluster_in_chromium(&python, &work.0, &kept);
            })
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
    });
    println!("screenshot kept: {}", kept.display());
}

/// The body of the test above, inside the namespace.
fn mixed_cluster_in_chromium(python: &Path, work: &Path, kept: &Path) {
    let (a_process, a) = serve(&work.join("a"));
    let (b_process, b) = serve(&work.join("b"));
    // PYME's own data server, as tests/interop/pyramid_vs_pyme.py starts it.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let pyme_root = work.join("pyme");
    std::fs::create_dir_all(&pyme_root).unwrap();
    let mut pyme = Command::new(python);
    pyme.args(["-m", "PYME.cluster.HTTPDataServer", "-a", "local", "-p"])
        .arg(port.to_string())
        .arg("-r")
        .arg(&pyme_root)
        .env("HOME", work)
        .env("TMPDIR", work)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let pyme = Process {
        child: pyme.spawn().expect("PYME's data server"),
        line: String::new(),
    };
    let p = format!("127.0.0.1:{port}");
    wait_for(
        Duration::from_secs(60),
        "PYME's data server listens",
        || http_get_quiet(&p, "/__status").is_some(),
    );
    let (_monitor, monitor) = monitor(&[&a, &b, &p]);
    wait_for(Duration::from_secs(10), "three servers up", || {
        api_status(&monitor)["totals"]["servers_up"] == 3
    });

    // PYME's keys, read for real.
    let status = api_status(&monitor);
    let pymes = server_json(&status, &p);
    assert_eq!(pymes["software"], "PYME", "{pymes}");
    assert!(!pymes["computer_name"].as_str().unwrap().is_empty());
    assert!(
        pymes["uptime_s"].as_f64().unwrap() > 0.0,
        "Uptime read: {pymes}"
    );
    assert!(pymes["disk_total_bytes"].as_u64().unwrap() > 0);
    assert!(pymes["disk_free_bytes"].as_u64().is_some());
    assert!(pymes["memory_percent"].as_f64().is_some());
    assert!(pymes["network_recv_bytes_per_s"].as_f64().is_some());
    assert_eq!(pymes["data_in"], "network");
    assert_eq!(pymes["files_stored"], Value::Null);
    let families = parse_prometheus(&http_get(&monitor, "/metrics").1);
    let has = |name: &str| {
        families[name]
            .samples
            .iter()
            .any(|(labels, _)| labels["server"] == p)
    };
    assert!(has("pyme_server_up") && has("pyme_server_disk_free_bytes"));
    assert!(
        !has("pyme_server_files_stored_total"),
        "PYME counts no files"
    );

    // A camera-like stream to all three.
    let mut bench = Command::new(BIN);
    bench
        .args([
            "bench", "--count", "100000", "--size", "20000", "--rate", "60",
        ])
        .args(["--prefix", "monitor-test", "--servers"])
        .arg(format!("{a},{b},{p}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let _bench = Process {
        child: bench.spawn().expect("bench"),
        line: String::new(),
    };
    std::thread::sleep(Duration::from_secs(4));
    let chromium = Chromium {
        profile: work.join("chromium"),
    };
    let url = format!("http://{monitor}/");
    let first = chromium.dump_dom(&url);
    std::thread::sleep(Duration::from_secs(3));
    let second = chromium.dump_dom(&url);
    let (before, after) = (rows(&first), rows(&second));
    for server in [&a, &b, &p] {
        for dom in [&before, &after] {
            let row = dom
                .get(server.as_str())
                .unwrap_or_else(|| panic!("{server} not shown: {first}"));
            assert_eq!(row["data-state"], "up", "{server}: {row:?}");
            // "full" may join it: this machine's disk may be over 90 % used.
            let classes: Vec<&str> = row["class"].split(' ').collect();
            assert!(
                classes.contains(&"up") && !classes.contains(&"down"),
                "{server}: {row:?}"
            );
        }
    }
    for server in [&a, &b] {
        let stored =
            |dom: &BTreeMap<_, BTreeMap<_, _>>| number(&dom[server.as_str()], "data-bytes-stored");
        assert!(
            stored(&after) > stored(&before),
            "{server}: stored bytes moved"
        );
        assert!(number(&after[server.as_str()], "data-bytes-per-s") > 0.0);
    }
    let uptime = |dom: &BTreeMap<_, BTreeMap<_, _>>| number(&dom[p.as_str()], "data-uptime-s");
    assert!(uptime(&after) > uptime(&before), "PYME's uptime moved");
    assert!(
        number(&after[p.as_str()], "data-bytes-per-s") > 0.0,
        "PYME's data in"
    );
    assert_eq!(after[p.as_str()]["data-software"], "PYME");
    assert_eq!(text_of(&second, "servers-up"), "3 / 3");
    assert!(text_of(&second, "total-rate").ends_with("/s"), "{second}");
    std::fs::create_dir_all(kept.parent().unwrap()).unwrap();
    chromium.screenshot(&url, kept);

    // Mid-run, one of ours killed and the other stopped (SIGSTOP): both shown down
    // in /api/status within 3 s, and on the page (which draws /api/status as it
    // loads); PYME's stays up.
    let signalled = Instant::now();
    a_process.signal(libc::SIGSTOP);
    drop(b_process);
    let down_after = wait_for(DOWN_WITHIN, "the killed and stopped servers down", || {
        let status = api_status(&monitor);
        server_json(&status, &a)["state"] == "down" && server_json(&status, &b)["state"] == "down"
    });
    println!(
        "killed and stopped servers shown down after {down_after:?} (signalled {:?} ago)",
        signalled.elapsed()
    );
    let third = chromium.dump_dom(&url);
    let shown = rows(&third);
    for server in [&a, &b] {
        let row = &shown[server.as_str()];
        assert_eq!(row["data-state"], "down", "{row:?}");
        assert!(row["class"].split(' ').any(|c| c == "down"), "{row:?}");
    }
    assert_eq!(shown[p.as_str()]["data-state"], "up");
    assert_eq!(text_of(&third, "servers-up"), "1 / 3");
    a_process.signal(libc::SIGCONT);
    drop(pyme);
}

/// `GET` that says `None` instead of failing (a server not listening yet).
fn http_get_quiet(address: &str, path: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(address).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).ok()?;
    (answer.len() > 12).then(|| split_answer(&answer))
}

/// A server that reports the largest disk JSON can carry.
fn extreme_numbers(mut stream: TcpStream, _: &AtomicBool) {
    read_head(&mut stream);
    let body =
        br#"{"Port": 1, "Disk": {"total": 18446744073709551615, "free": 18446744073709551615}}"#;
    let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len());
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(body);
}

/// Two servers whose disks add up past `u64::MAX`: the totals saturate, and every
/// one of 100 requests is answered (none costs the monitor a connection slot).
#[test]
fn extreme_numbers_give_sane_totals_and_the_monitor_keeps_answering() {
    let fakes = [Fake::start(extreme_numbers), Fake::start(extreme_numbers)];
    let (_monitor, monitor) = monitor(&[&fakes[0].address, &fakes[1].address]);
    wait_for(Duration::from_secs(5), "both read", || {
        let status = api_status(&monitor);
        status["totals"]["servers_up"] == 2
    });
    let status = api_status(&monitor);
    assert_eq!(status["totals"]["disk_free_bytes"], u64::MAX, "{status}");
    assert_eq!(status["totals"]["disk_total_bytes"], u64::MAX, "{status}");
    for _ in 0..100 {
        api_status(&monitor);
    }
    let (code, text) = http_get(&monitor, "/metrics");
    assert_eq!(code, 200);
    assert_eq!(parse_prometheus(&text)["pyme_server_up"].samples.len(), 2);
}

/// Puts a row `name, address, port` in the PYME registry at `path` (made if needed).
fn registry_row(path: &Path, name: &str, address: &str, port: u16) {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.execute(
        "CREATE TABLE IF NOT EXISTS dns \
         (name TEXT, address TEXT, port INTEGER, creation_time FLOAT, URI TEXT)",
        [],
    )
    .unwrap();
    conn.execute(
        "INSERT INTO dns VALUES (?1, ?2, ?3, 1.0, '')",
        rusqlite::params![name, address, port],
    )
    .unwrap();
}

/// `pyme-stream monitor` with `args` on a free port; its `host:port`.
fn monitor_with(args: &[&str]) -> (Process, String) {
    let mut command = Command::new(BIN);
    command.args(["monitor", "--port", "0"]).args(args);
    let process = Process::start(command);
    let address = process
        .line
        .strip_prefix("monitoring on http://")
        .and_then(|rest| rest.strip_suffix('/'))
        .expect("monitoring on")
        .to_owned();
    (process, address)
}

/// A registry row whose address holds a NUL (no host name can) is skipped: it
/// neither kills discovery nor hides the cluster's real servers.
#[test]
fn a_registry_row_with_a_nul_in_its_address_is_skipped() {
    let work = WorkDir::new("nul-address");
    let registry = work.0.join("registry.sqlite");
    let (_server, server) = serve(&work.0.join("a"));
    let port: u16 = server.rsplit_once(':').unwrap().1.parse().unwrap();
    // Sorted first by name, so it is met before the real one.
    registry_row(&registry, "a-nul-cluster bad", "1.2.3.4\0x", 1);
    registry_row(&registry, "b-nul-cluster good", "127.0.0.1", port);
    let registry_arg = registry.to_str().unwrap();
    let (_monitor, monitor) = monitor_with(&[
        "--no-mdns",
        "--serverfilter",
        "nul-cluster",
        "--registry",
        registry_arg,
    ]);
    wait_for(
        Duration::from_secs(10),
        "the good server found and up",
        || {
            let status = api_status(&monitor);
            status["servers"]
                .as_array()
                .unwrap()
                .iter()
                .any(|s| s["server"] == server.as_str() && s["state"] == "up")
        },
    );
    let status = api_status(&monitor);
    assert_eq!(status["servers"].as_array().unwrap().len(), 1, "{status}");
}

/// A poll interval below 100 ms is refused at start, with a clear error.
#[test]
fn an_interval_below_100_ms_is_refused() {
    let mut child = Command::new(BIN)
        .args([
            "monitor",
            "--port",
            "0",
            "--interval-ms",
            "1",
            "--servers",
            "127.0.0.1:1",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > Duration::from_secs(10) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("--interval-ms 1 accepted: it runs");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(!status.success(), "accepted: {stderr}");
    assert!(stderr.contains("--interval-ms"), "{stderr}");
    assert!(stderr.contains("100"), "{stderr}");
}

/// A server given in `--servers` and also advertised stays watched as listed when
/// its advertisement goes: it is not shown "no longer advertised", while a server
/// only discovered is.
#[test]
fn a_listed_server_is_never_shown_unadvertised() {
    let work = WorkDir::new("listed-unadvertised");
    let registry = work.0.join("registry.sqlite");
    let (_server, listed) = serve(&work.0.join("a"));
    let port: u16 = listed.rsplit_once(':').unwrap().1.parse().unwrap();
    let nothing_port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let only_found = format!("127.0.0.1:{nothing_port}");
    registry_row(&registry, "listed-cluster a", "127.0.0.1", port);
    registry_row(&registry, "listed-cluster b", "127.0.0.1", nothing_port);
    let registry_arg = registry.to_str().unwrap();
    let (_monitor, monitor) = monitor_with(&[
        "--no-mdns",
        "--servers",
        &listed,
        "--serverfilter",
        "listed-cluster",
        "--registry",
        registry_arg,
    ]);
    wait_for(
        Duration::from_secs(10),
        "both found, the listed one up",
        || {
            let status = api_status(&monitor);
            status["servers"].as_array().unwrap().len() == 2
                && server_json(&status, &listed)["state"] == "up"
                && server_json(&status, &listed)["name"] == "listed-cluster a"
        },
    );
    rusqlite::Connection::open(&registry)
        .unwrap()
        .execute("DELETE FROM dns", [])
        .unwrap();
    // The next discovery round (every 5 s) has run once the other is unadvertised.
    wait_for(
        Duration::from_secs(12),
        "the found-only one unadvertised",
        || server_json(&api_status(&monitor), &only_found)["error"] == "no longer advertised",
    );
    let status = api_status(&monitor);
    assert_eq!(server_json(&status, &listed)["state"], "up", "{status}");
}

// ---- bounds: thousands of servers ---------------------------------------------------

/// A figure of `/proc/<pid>/status` (`Threads`).
fn proc_status_figure(pid: u32, key: &str) -> usize {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|line| line.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or_else(|| panic!("{key} in /proc/{pid}/status"))
}

/// The descriptors open in `pid`.
fn open_descriptors(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("proc fd")
        .count()
}

/// 2000 servers in `--servers`: two real ones, 100 that accept a connection and never
/// answer (each poll takes the whole timeout) and 1898 closed ports on other loopback
/// addresses. The monitor follows 1024 (the default `--max-servers`), says 976 are left
/// out (in `/api/status`, on the page, once on stderr), holds its threads and sockets to
/// a bounded pool (it started a thread per server before: over 2000), polls every
/// server it follows, and the real servers are up at once and stay up.
#[cfg(target_os = "linux")]
#[test]
fn thousands_of_servers_take_bounded_threads_and_the_rest_are_counted() {
    const FOLLOWED: usize = 1024;
    const LISTED: usize = 2000;
    // The pollers (32), the HTTP server with a request or two, ctrlc's, main: 48 is
    // half again the pool.
    const MOST_THREADS: usize = 48;
    let work = WorkDir::new("thousands");
    let (_a, a) = serve(&work.0.join("a"));
    let (_b, b) = serve(&work.0.join("b"));
    let silent: Vec<TcpListener> = (0..100)
        .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    // A port nothing listens on (bound then closed), on addresses 127.1.x.y.
    let closed_port = TcpListener::bind("127.1.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut servers = vec![a.clone(), b.clone()];
    servers.extend(silent.iter().map(|l| l.local_addr().unwrap().to_string()));
    let mut i = 0;
    while servers.len() < LISTED {
        servers.push(format!("127.1.{}.{}:{closed_port}", i / 250, i % 250 + 1));
        i += 1;
    }
    let log = work.0.join("monitor.stderr");
    let mut command = Command::new(BIN);
    command.args(["monitor", "--port", "0", "--servers", &servers.join(",")]);
    let process =
        Process::start_with_stderr(command, Stdio::from(std::fs::File::create(&log).unwrap()));
    let pid = process.child.id();
    let monitor = process
        .line
        .strip_prefix("monitoring on http://")
        .and_then(|rest| rest.strip_suffix('/'))
        .unwrap()
        .to_owned();
    let took = wait_for(Duration::from_secs(5), "the real servers up", || {
        let status = api_status(&monitor);
        server_json(&status, &a)["state"] == "up" && server_json(&status, &b)["state"] == "up"
    });
    eprintln!(
        "real servers up {:.2} s after the monitor served",
        took.as_secs_f64()
    );
    let status = api_status(&monitor);
    // For 8 s: the threads and descriptors stay bounded, the real servers up.
    let start = Instant::now();
    let polls_before = server_json(&status, &a)["polls_ok"].as_u64().unwrap();
    let (mut most_threads, mut most_fds) = (0, 0);
    while start.elapsed() < Duration::from_secs(8) {
        most_threads = most_threads.max(proc_status_figure(pid, "Threads"));
        most_fds = most_fds.max(open_descriptors(pid));
        let status = api_status(&monitor);
        for server in [&a, &b] {
            let server = server_json(&status, server);
            assert_eq!(server["state"], "up", "{server}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    eprintln!("at most {most_threads} threads and {most_fds} descriptors");
    assert!(
        most_threads <= MOST_THREADS,
        "{most_threads} threads (at most {MOST_THREADS})"
    );
    // A socket per poller, 64 HTTP connections at most, the standard ones and a few.
    assert!(most_fds <= 128, "{most_fds} descriptors open");
    let status = api_status(&monitor);
    assert_eq!(status["monitor"]["max_servers"], FOLLOWED);
    assert_eq!(status["totals"]["servers"], FOLLOWED);
    assert_eq!(status["totals"]["servers_left_out"], LISTED - FOLLOWED);
    assert_eq!(status["servers"].as_array().unwrap().len(), FOLLOWED);
    let polls = server_json(&status, &a)["polls_ok"].as_u64().unwrap() - polls_before;
    // About 8 in 8 s; half of it at least.
    assert!(polls >= 4, "{a} polled {polls} times in 8 s");
    // Every server followed was polled: none is still "not polled yet".
    wait_for(Duration::from_secs(10), "every server polled", || {
        api_status(&monitor)["servers"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["polls_ok"].as_u64().unwrap() + s["polls_failed"].as_u64().unwrap() > 0)
    });
    let (code, page) = http_get(&monitor, "/");
    assert_eq!(code, 200);
    assert!(
        page.contains("servers_left_out"),
        "the page shows the left out"
    );
    drop(process);
    let log = std::fs::read_to_string(&log).unwrap();
    assert_eq!(
        log.matches("976 left out").count(),
        1,
        "said once on stderr: {log}"
    );
}

/// Runs `script` (Python, with the registry's path as `sys.argv[1]`): python3's own
/// sqlite3 writes rows the library's `register` would clean away (closed ports).
fn registry_python(registry: &Path, script: &str) {
    let status = Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(registry)
        .status()
        .expect("python3");
    assert!(status.success(), "python3 on the registry");
}

/// `--serverfilter` with a registry flooded by 2000 fake rows of the cluster (closed
/// ports on 127.1.x.y) beside a real server: 1024 followed, 977 left out, threads
/// bounded, the real server up. Then 100 followed fake rows vanish: the servers left
/// out take their places within two discovery rounds (the count goes down by 100,
/// the follow list stays at 1024). It started a thread per row before: over 2000.
#[cfg(target_os = "linux")]
#[test]
fn a_flooded_registry_takes_bounded_threads_and_the_rest_are_counted() {
    const TEST: &str = "a_flooded_registry_takes_bounded_threads_and_the_rest_are_counted";
    if !common::skip::require_tool(TEST, "python3", &["-c", "import sqlite3"]) {
        return;
    }
    const FAKE: usize = 2000;
    const FOLLOWED: usize = 1024;
    const MOST_THREADS: usize = 48;
    let work = WorkDir::new("flood");
    let registry = work.0.join("registry.sqlite");
    let (_real, a) = serve_in_registry(&registry, "flood-cluster", &work.0.join("a"));
    let closed_port = TcpListener::bind("127.1.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    registry_python(
        &registry,
        &format!(
            "import sqlite3, sys\n\
             c = sqlite3.connect(sys.argv[1])\n\
             c.executemany('INSERT INTO dns VALUES (?, ?, ?, 0, \"\")', \
             [('PYMEDataServer [flood-cluster]:fake%04d - PID:%d' % (i, i), \
             '127.1.%d.%d' % (i // 250, i % 250 + 1), {closed_port}) for i in range({FAKE})])\n\
             c.commit()\n"
        ),
    );
    let (process, monitor) = monitor_of_cluster(&registry, "flood-cluster");
    let pid = process.child.id();
    let mut most_threads = 0;
    // Discovery's first round is at start; then the first poll.
    wait_for(Duration::from_secs(10), "the real server up", || {
        most_threads = most_threads.max(proc_status_figure(pid, "Threads"));
        let status = api_status(&monitor);
        status["servers"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["server"] == a && s["state"] == "up")
    });
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(4) {
        most_threads = most_threads.max(proc_status_figure(pid, "Threads"));
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!("at most {most_threads} threads");
    assert!(
        most_threads <= MOST_THREADS,
        "{most_threads} threads (at most {MOST_THREADS})"
    );
    let status = api_status(&monitor);
    assert_eq!(status["totals"]["servers"], FOLLOWED);
    assert_eq!(status["totals"]["servers_left_out"], FAKE + 1 - FOLLOWED);
    assert_eq!(server_json(&status, &a)["state"], "up");
    let fake0 = format!("127.1.0.1:{closed_port}");
    server_json(&status, &fake0);
    // fake0000 to fake0099, all followed, vanish.
    registry_python(
        &registry,
        "import sqlite3, sys\n\
         c = sqlite3.connect(sys.argv[1])\n\
         c.execute(\"DELETE FROM dns WHERE name LIKE '%:fake00%'\")\n\
         c.commit()\n",
    );
    // Discovery looks every 5 s: two rounds, twice over.
    wait_for(Duration::from_secs(20), "the vanished replaced", || {
        let status = api_status(&monitor);
        status["totals"]["servers_left_out"] == FAKE + 1 - FOLLOWED - 100
    });
    let status = api_status(&monitor);
    assert_eq!(status["totals"]["servers"], FOLLOWED);
    assert!(
        !status["servers"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["server"] == fake0),
        "a vanished server gave its place"
    );
    assert_eq!(server_json(&status, &a)["state"], "up");
    assert!(proc_status_figure(pid, "Threads") <= MOST_THREADS);
}
