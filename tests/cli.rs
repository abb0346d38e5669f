//! The `pyme-stream` program end to end: `bench`, `put` and `demo`.

mod common;

use common::{pyme_stream, ServeProcess, TestServer};

fn last_json_line(stdout: &[u8]) -> serde_json::Value {
    let text = String::from_utf8_lossy(stdout);
    let line = text.lines().last().expect("some output");
    serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"))
}

#[test]
fn bench_with_the_index_pattern_stores_checkable_files() {
    let servers: Vec<TestServer> = (0..2).map(|_| TestServer::start()).collect();
    let list = format!("{},{}", servers[0].address(), servers[1].address());
    let output = pyme_stream()
        .args([
            "bench",
            "--servers",
            &list,
            "--count",
            "50",
            "--size",
            "1000",
        ])
        .args(["--prefix", "b", "--pattern", "index", "--json"])
        .args(["--round-robin-start", "1"])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report = last_json_line(&output.stdout);
    for (key, value) in [
        ("files", 50),
        ("acknowledged", 50),
        ("failed", 0),
        ("bytes", 50_000),
    ] {
        assert_eq!(report[key], value, "{key} in {report}");
    }
    for key in [
        "seconds",
        "mb_per_s",
        "files_per_s",
        "rerouted",
        "reconnects",
        "acknowledged_already",
        "dropped",
    ] {
        assert!(report[key].is_number(), "{key} in {report}");
    }
    // Without a rate, no per-put CPU time (it would cost two system calls per put).
    assert!(report["put_cpu_us"].is_null(), "{report}");
    for i in 0..50u64 {
        let name = format!("b/frame{i:05}.pzf");
        let stored = servers[((i + 1) % 2) as usize].read(&name).expect(&name);
        let expected: Vec<u8> = format!("{i}\n").bytes().cycle().take(1000).collect();
        assert_eq!(stored, expected, "{name}");
    }
}

/// With a rate, `bench` times a plain memory copy between puts and reports each
/// put's CPU time beside its latency.
#[cfg(target_os = "linux")]
#[test]
fn bench_at_a_rate_reports_put_cpu_time_and_the_memcpy_limit() {
    let server = TestServer::start();
    let output = pyme_stream()
        .args(["bench", "--servers", &server.address()])
        .args([
            "--count", "20", "--size", "300000", "--rate", "200", "--json",
        ])
        .output()
        .unwrap();
    assert!(output.status.success());
    let report = last_json_line(&output.stdout);
    for key in ["put_latency_us", "put_cpu_us", "memcpy_latency_us"] {
        for p in ["p50", "p99", "max"] {
            let value = report[key][p].as_f64().unwrap_or(-1.0);
            assert!(value > 0.0, "{key}.{p} in {report}");
        }
    }
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.contains("put CPU time"), "{text}");
}

#[test]
fn bench_exits_non_zero_when_files_are_lost() {
    let server = TestServer::start();
    std::fs::create_dir_all(server.path("dup")).unwrap();
    std::fs::write(server.path("dup/frame00003.pzf"), b"taken").unwrap();
    let output = pyme_stream()
        .args([
            "bench",
            "--servers",
            &server.address(),
            "--count",
            "5",
            "--size",
            "10",
        ])
        .args(["--prefix", "dup", "--json"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let report = last_json_line(&output.stdout);
    assert_eq!(report["acknowledged"], 4);
    assert_eq!(report["failed"], 1);
    assert!(String::from_utf8_lossy(&output.stderr).contains("405"));
}

#[test]
fn bench_against_a_serve_process_with_a_dead_server_in_the_list_is_a_clear_error() {
    let root = tempfile::tempdir().unwrap();
    let server = ServeProcess::start(root.path(), 0, &[]);
    let dead = common::dead_address();
    let output = pyme_stream()
        .args(["bench", "--servers", &format!("{},{dead}", server.address)])
        .args(["--count", "3", "--size", "10"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains(&dead), "{stderr}");
}

#[test]
fn put_streams_files_and_folders_under_the_prefix() {
    let server = TestServer::start();
    let source = tempfile::tempdir().unwrap();
    let folder = source.path().join("cells");
    std::fs::create_dir_all(folder.join("sub")).unwrap();
    std::fs::write(folder.join("a.txt"), b"A").unwrap();
    std::fs::write(folder.join("sub/b.bin"), [0u8, 1, 2]).unwrap();
    std::fs::write(source.path().join("single.json"), b"{}").unwrap();
    let output = pyme_stream()
        .args(["put", "--servers", &server.address(), "--prefix", "up"])
        .arg(&folder)
        .arg(source.path().join("single.json"))
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(server.read("up/cells/a.txt").as_deref(), Some(&b"A"[..]));
    assert_eq!(
        server.read("up/cells/sub/b.bin").as_deref(),
        Some(&[0u8, 1, 2][..])
    );
    assert_eq!(server.read("up/single.json").as_deref(), Some(&b"{}"[..]));
    assert!(String::from_utf8_lossy(&output.stdout).contains("acknowledged 3/3"));
}

#[test]
fn put_refuses_unsendable_names_before_sending_anything() {
    let server = TestServer::start();
    let source = tempfile::tempdir().unwrap();
    std::fs::write(source.path().join("good.txt"), b"g").unwrap();
    std::fs::write(source.path().join("bad name.txt"), b"b").unwrap();
    let output = pyme_stream()
        .args(["put", "--servers", &server.address()])
        .arg(source.path().join("good.txt"))
        .arg(source.path().join("bad name.txt"))
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("bad name.txt"));
    assert!(server.files().is_empty());
}

/// ... and leaves nothing in the temporary folder (it left its empty base folder).
#[test]
fn demo_runs_a_small_acquisition_and_checks_every_file() {
    let tmp = tempfile::tempdir().unwrap();
    let output = pyme_stream()
        .args(["demo", "--frames", "12", "--width", "64", "--height", "48"])
        .env("TMPDIR", tmp.path())
        .output()
        .unwrap();
    let left: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().collect();
    assert!(left.is_empty(), "the demo left {left:?}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        stdout.lines().last(),
        Some("acknowledged 15/15, lost 0"),
        "{stdout}"
    );
}

/// `serve` prints, on stderr after its one stdout line, the library's advice about a
/// tmpfs root without huge pages and a note that it keeps spares there, and nothing
/// when there is none. Tried on a folder in
/// `/dev/shm` (a tmpfs without huge pages on most Linux machines) and in the temporary
/// folder; the expectation for each comes from `mounts::tmpfs_advice`, which the unit
/// tests check against mount tables.
#[test]
fn serve_gives_the_tmpfs_advice_on_stderr_exactly_when_it_applies() {
    use pyme_streaming::server::mounts;
    use std::io::{BufRead, BufReader, Read};
    let mut roots = vec![tempfile::tempdir().unwrap()];
    match tempfile::tempdir_in("/dev/shm") {
        Ok(dir) => roots.push(dir),
        Err(e) => eprintln!("no /dev/shm here ({e}): only the temporary folder is tried"),
    }
    let mut advised = 0;
    for root in &roots {
        let expected = mounts::tmpfs_advice(&root.path().canonicalize().unwrap());
        let mut child = pyme_stream()
            .args(["serve", "--advertise", "none", "--port", "0", "--root"])
            .arg(root.path())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        assert!(line.starts_with("listening on "), "{line:?}");
        let mut stderr = BufReader::new(child.stderr.take().unwrap());
        let mut note = String::new();
        if expected.is_some() {
            // Printed right after the listening line, with the note that the server
            // keeps spares there (same condition): wait for both.
            stderr.read_line(&mut note).unwrap();
            stderr.read_line(&mut note).unwrap();
            advised += 1;
        }
        child.kill().unwrap();
        child.wait().unwrap();
        let mut rest = String::new();
        stdout.read_to_string(&mut rest).unwrap();
        assert_eq!(rest, "", "serve printed more than one line on stdout");
        stderr.read_to_string(&mut note).unwrap();
        match expected {
            Some(advice) => {
                let (first, second) = note.split_once('\n').unwrap();
                assert_eq!(first, format!("note: {advice}"));
                assert!(
                    second.starts_with("note: spares on: ") && second.ends_with(")\n"),
                    "{second:?}"
                );
            }
            None => assert_eq!(note, "", "unexpected stderr for {:?}", root.path()),
        }
    }
    eprintln!("{advised} of {} roots advised", roots.len());
}

/// The `<tag ...>` openings of `tag` in `page`, each as its attribute text.
fn elements<'a>(page: &'a str, tag: &str) -> Vec<&'a str> {
    let open = format!("<{tag} ");
    page.match_indices(&open)
        .map(|(at, _)| {
            let rest = &page[at + open.len()..];
            &rest[..rest.find('>').expect("a closed tag")]
        })
        .collect()
}

/// The value of `name="..."` in an element's attribute text.
fn attribute<'a>(element: &'a str, name: &str) -> Option<&'a str> {
    let key = format!(" {name}=\"");
    let at = format!(" {element}").find(&key)?;
    let rest = &element[at + key.len() - 1..];
    Some(&rest[..rest.find('"')?])
}

/// A report page as the issue asks: nothing fetched from outside, one
/// throughput series per server (with its points), a histogram whose bars
/// count every put.
fn check_report(page: &str, servers: &[String], puts: u64) {
    assert!(page.starts_with("<!DOCTYPE html>"), "{page}");
    for (at, _) in page.match_indices("://") {
        let before = &page[at.saturating_sub(12)..at];
        assert!(
            !(before.contains("src=") || before.contains("href=")),
            "an external resource at {at}: {}",
            &page[at.saturating_sub(12)..(at + 40).min(page.len())]
        );
    }
    for forbidden in ["<script", "<link", "@import", "url(", "<img", "<iframe"] {
        assert!(!page.contains(forbidden), "{forbidden} in the page");
    }
    assert_eq!(page.matches("<svg ").count(), 2, "two charts");
    let series = elements(page, "polyline");
    let named: Vec<&str> = series
        .iter()
        .filter(|e| attribute(e, "class") == Some("series"))
        .map(|e| attribute(e, "data-server").expect("data-server"))
        .collect();
    assert_eq!(named, servers, "one series per server, in order");
    for element in &series {
        let points = attribute(element, "points").unwrap();
        let pairs: Vec<(f64, f64)> = points
            .split_whitespace()
            .map(|pair| {
                let (x, y) = pair.split_once(',').unwrap();
                (x.parse().unwrap(), y.parse().unwrap())
            })
            .collect();
        assert!(pairs.len() >= 2, "a line, not a point: {points}");
        assert!(pairs.windows(2).all(|w| w[0].0 <= w[1].0), "{points}");
    }
    let bars: Vec<&str> = elements(page, "rect")
        .into_iter()
        .filter(|e| attribute(e, "class") == Some("bar"))
        .collect();
    assert!(!bars.is_empty(), "a histogram");
    let counted: u64 = bars
        .iter()
        .map(|e| attribute(e, "data-count").unwrap().parse::<u64>().unwrap())
        .sum();
    assert_eq!(counted, puts, "every put in one bar");
    for bar in &bars {
        let low: f64 = attribute(bar, "data-low-us").unwrap().parse().unwrap();
        let high: f64 = attribute(bar, "data-high-us").unwrap().parse().unwrap();
        assert!(low < high, "{bar}");
    }
}

#[test]
fn bench_report_is_one_self_contained_page_with_a_series_per_server() {
    let servers: Vec<TestServer> = (0..3).map(|_| TestServer::start()).collect();
    let addresses: Vec<String> = servers.iter().map(TestServer::address).collect();
    let dir = tempfile::tempdir().unwrap();
    let page_path = dir.path().join("run.html");
    let output = pyme_stream()
        .args(["bench", "--servers", &addresses.join(",")])
        .args(["--count", "300", "--size", "20000", "--prefix", "rep"])
        .arg("--report")
        .arg(&page_path)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let page = std::fs::read_to_string(&page_path).expect("the report was written");
    check_report(&page, &addresses, 300);
    assert!(String::from_utf8_lossy(&output.stdout).contains("3/3 servers up"));
}

#[test]
fn put_json_and_report_show_every_server_and_the_one_that_is_down() {
    let servers: Vec<TestServer> = (0..2).map(|_| TestServer::start()).collect();
    let dead = common::dead_address();
    let addresses = vec![servers[0].address(), dead.clone(), servers[1].address()];
    let source = tempfile::tempdir().unwrap();
    for i in 0..40 {
        std::fs::write(source.path().join(format!("f{i:02}.bin")), vec![b'p'; 5000]).unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let page_path = dir.path().join("put.html");
    let output = pyme_stream()
        .args(["put", "--servers", &addresses.join(","), "--prefix", "pj"])
        .args(["--connect-timeout-ms", "500", "--json", "--report"])
        .arg(&page_path)
        .arg(source.path())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let report = last_json_line(&output.stdout);
    assert_eq!(report["files"], 40, "{report}");
    assert_eq!(report["acknowledged"], 40, "{report}");
    assert_eq!(report["failed"], 0, "{report}");
    assert_eq!(report["bytes"], 200_000, "{report}");
    assert_eq!(report["servers_up"], 2, "{report}");
    assert!(report["put_latency_us"]["p99"].is_number(), "{report}");
    let per_server = report["per_server"].as_array().expect("per_server");
    assert_eq!(per_server.len(), 3);
    assert_eq!(per_server[1]["server"], dead.as_str());
    assert_eq!(per_server[1]["state"], "down");
    assert_eq!(per_server[1]["files_acknowledged"], 0);
    let acknowledged: u64 = per_server
        .iter()
        .map(|s| s["files_acknowledged"].as_u64().unwrap())
        .sum();
    assert_eq!(acknowledged, 40);
    for (i, server) in [&servers[0], &servers[1]].iter().enumerate() {
        let stored = server.files().len() as u64;
        let row = &per_server[i * 2];
        assert_eq!(row["files_acknowledged"].as_u64(), Some(stored), "{row}");
    }
    let summary = String::from_utf8_lossy(&output.stdout);
    assert!(summary.contains("2/3 servers up"), "{summary}");
    let page = std::fs::read_to_string(&page_path).expect("the report was written");
    check_report(&page, &addresses, 40);
}

#[test]
fn demo_json_reports_the_servers_and_every_file() {
    let output = pyme_stream()
        .args(["demo", "--frames", "12", "--width", "64", "--height", "48"])
        .args(["--n-servers", "2", "--json"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report = last_json_line(&output.stdout);
    for (key, value) in [
        ("files", 15),
        ("acknowledged", 15),
        ("failed", 0),
        ("lost", 0),
        ("servers_up", 2),
    ] {
        assert_eq!(report[key], value, "{key} in {report}");
    }
    assert!(report["mb_per_s"].is_number(), "{report}");
    let per_server = report["per_server"].as_array().unwrap();
    assert_eq!(per_server.len(), 2);
    assert_eq!(
        per_server
            .iter()
            .map(|s| s["files_acknowledged"].as_u64().unwrap())
            .sum::<u64>(),
        15
    );
    assert!(per_server.iter().all(|s| s["state"] == "up"), "{report}");
}
