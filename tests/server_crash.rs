//! The data server after a crash (issue 22, items 6 and 7): one `serve` per root,
//! no temporary file of a killed server left once the start-up sweep has run (and
//! the first answers not waiting for it), and appended files holding only whole
//! bodies after a SIGKILL at any moment of an append. See docs/RELIABILITY.md
//! ("Crashing") and docs/SERVER.md ("After a crash").

#![cfg(unix)] // SIGKILL of a child at a chosen moment
mod common;
mod server_support;

use std::io::Write;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::records::{record_header, whole_records, write_append};
use common::ServeProcess;
use pyme_streaming::server::{DataServer, ServerConfig};
use server_support::{get, json, put, Client};

/// Every `.pyme-part-` temporary file under `root`.
fn temporaries(root: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut folders = vec![root.to_owned()];
    while let Some(folder) = folders.pop() {
        for entry in std::fs::read_dir(&folder).into_iter().flatten().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                folders.push(entry.path());
            } else if name.starts_with(".pyme-part-") {
                found.push(entry.path());
            }
        }
    }
    found
}

fn status(address: &str) -> serde_json::Value {
    let mut client = Client::connect(address);
    client.send(&get("/__status"));
    json(&client.response().body)
}

/// Waits (at most 60 s) for the server's start-up sweep to end, and returns the
/// final status.
fn wait_for_sweep(address: &str) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let status = status(address);
        if status["sweep_done"] == true {
            return status;
        }
        assert!(Instant::now() < deadline, "the sweep did not end: {status}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_second_server_on_a_root_in_use_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let config = ServerConfig {
        root: root.clone(),
        ..ServerConfig::default()
    };
    // In this process: a second DataServer.
    let first = DataServer::start(config.clone()).unwrap();
    let refused = DataServer::start(config.clone())
        .err()
        .expect("a second server on the root started");
    assert_eq!(refused.kind(), std::io::ErrorKind::ResourceBusy);
    assert!(
        refused
            .to_string()
            .contains("in use by another data server"),
        "{refused}"
    );
    // Another process: `serve` exits at once with the message.
    let output = common::pyme_stream()
        .args(["serve", "--advertise", "none", "--port", "0", "--root"])
        .arg(&root)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(stderr.contains("in use by another data server"), "{stderr}");
    // The lock file is neither listed nor served, and survives the sweep.
    let address = first.local_addr().to_string();
    let mut client = Client::connect(&address);
    client.send(&put("a", b"x"));
    assert_eq!(client.response().code, 200);
    client.send(&get("/"));
    let listing = json(&client.response().body);
    assert_eq!(listing, serde_json::json!({"a": [0, 1]}));
    client.send(&get("/.pyme-lock"));
    assert_eq!(client.response().code, 400);
    wait_for_sweep(&address);
    assert!(root.join(".pyme-lock").exists());
    // Once the first stops, the root is free again, also for another process.
    first.shutdown();
    let mut second = ServeProcess::start(&root, 0, &[]);
    wait_for_sweep(&second.address);
    second.kill();
    DataServer::start(config).unwrap().shutdown();
}

/// PUTs of large files on `connections` connections until the connection fails
/// (the server is killed), each file of 8 to 64 MiB.
fn upload_until_killed(
    address: &str,
    connections: usize,
    round: usize,
) -> Vec<std::thread::JoinHandle<()>> {
    (0..connections)
        .map(|c| {
            let address = address.to_owned();
            std::thread::spawn(move || {
                let Ok(mut stream) = TcpStream::connect(&address) else {
                    return;
                };
                let chunk = vec![b'x'; 1 << 20];
                for n in 0.. {
                    let mebibytes = fastrand::usize(8..=64);
                    let head = format!(
                        "PUT /big/r{round}/c{c}/f{n} HTTP/1.1\r\nContent-Length: {}\r\n\r\n",
                        mebibytes << 20
                    );
                    if stream.write_all(head.as_bytes()).is_err() {
                        return;
                    }
                    for _ in 0..mebibytes {
                        if stream.write_all(&chunk).is_err() {
                            return;
                        }
                    }
                }
            })
        })
        .collect()
}

#[test]
fn a_killed_server_leaves_no_temporary_files_once_restarted() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let mut left_by_kills = 0;
    for round in 0..5 {
        let mut server = ServeProcess::start(&root, 0, &[]);
        wait_for_sweep(&server.address);
        let uploads = upload_until_killed(&server.address, 3, round);
        // Killed while bodies are being written: once temporaries exist, after a
        // random moment more.
        let deadline = Instant::now() + Duration::from_secs(30);
        while temporaries(&root).len() < 3 {
            assert!(Instant::now() < deadline, "no upload began");
            std::thread::sleep(Duration::from_millis(2));
        }
        std::thread::sleep(Duration::from_millis(fastrand::u64(0..300)));
        server.kill();
        for upload in uploads {
            upload.join().unwrap();
        }
        let left = temporaries(&root).len();
        left_by_kills += left;
        // Restarted: the first answer comes, the sweep removes every leftover.
        let restarted = ServeProcess::start(&root, 0, &[]);
        let status = wait_for_sweep(&restarted.address);
        assert_eq!(temporaries(&root), Vec::<PathBuf>::new(), "round {round}");
        assert_eq!(status["sweep_temporaries_removed"], left as u64, "{status}");
    }
    // Each kill comes while three bodies are being written: it leaves some.
    assert!(left_by_kills > 0, "the kills left no temporary file");
    eprintln!("5 kills left {left_by_kills} temporary files; every one was swept");
}

#[test]
fn the_first_answer_does_not_wait_for_the_sweep() {
    const FOLDERS: usize = 200;
    const PER_FOLDER: usize = 200;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    // What a dead server may leave in a large root: 40 000 temporaries.
    for folder in 0..FOLDERS {
        let folder = root.join(format!("series{folder}"));
        std::fs::create_dir_all(&folder).unwrap();
        for n in 0..PER_FOLDER {
            std::fs::write(folder.join(format!(".pyme-part-1-{n}")), b"x").unwrap();
        }
    }
    let started = Instant::now();
    let server = ServeProcess::start(&root, 0, &[]);
    let mut client = Client::connect(&server.address);
    client.send(&get("/__status"));
    let first = json(&client.response().body);
    let answered = started.elapsed();
    let last = wait_for_sweep(&server.address);
    let swept = started.elapsed();
    eprintln!("first answer after {answered:?}, sweep done by {swept:?}");
    assert_eq!(
        first["sweep_done"], false,
        "the first answer came after the sweep ({answered:?}): {first}"
    );
    assert_eq!(
        last["sweep_temporaries_removed"],
        (FOLDERS * PER_FOLDER) as u64
    );
    assert!(temporaries(&root).is_empty());
}

/// Sends an `__aggregate_txt` append of record `id` of `len` bytes on `stream`,
/// without waiting for the answer; false when the connection failed.
fn send_record(stream: &mut TcpStream, name: &str, id: usize, len: usize) -> bool {
    write_append(stream, name, id, len).is_ok()
}

fn append_record(address: &str, name: &str, id: usize, len: usize) {
    let mut client = Client::connect(address);
    assert!(send_record(&mut client.writer, name, id, len));
    assert_eq!(client.response().code, 200);
}

#[test]
fn appended_files_hold_whole_records_after_sigkill_at_random_moments() {
    const TRIES: usize = 12;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let mut torn_by_kills = 0;
    for attempt in 0..TRIES {
        let name = format!("logs/log{attempt}.txt");
        let path = root.join(&name);
        let mut server = ServeProcess::start(&root, 0, &[]);
        append_record(&server.address, &name, 1, 4096);
        let big = fastrand::usize(64 << 20..=192 << 20);
        // Connected before the clock starts: the kill may come at once.
        let mut stream = TcpStream::connect(&server.address).unwrap();
        let sender = std::thread::spawn(move || {
            send_record(&mut stream, &format!("logs/log{attempt}.txt"), 2, big);
        });
        // Half the kills at a random moment 0-250 ms after the body starts; half
        // 0-20 ms after the file starts growing (inside the copy, the worst case).
        if attempt % 2 == 0 {
            std::thread::sleep(Duration::from_millis(fastrand::u64(0..=250)));
        } else {
            let deadline = Instant::now() + Duration::from_secs(30);
            while std::fs::metadata(&path).map_or(0, |m| m.len()) <= 4096 {
                assert!(Instant::now() < deadline, "the append never began");
                std::thread::sleep(Duration::from_micros(500));
            }
            std::thread::sleep(Duration::from_millis(fastrand::u64(0..=20)));
        }
        server.kill();
        sender.join().unwrap();
        let after_kill = std::fs::read(&path).unwrap();
        if whole_records(&after_kill).is_err() {
            torn_by_kills += 1;
        }
        drop(after_kill);
        // Restarted: the first append repairs the file itself, then the sweep.
        let restarted = ServeProcess::start(&root, 0, &[]);
        append_record(&restarted.address, &name, 3, 100);
        wait_for_sweep(&restarted.address);
        let ids = whole_records(&std::fs::read(&path).unwrap())
            .unwrap_or_else(|e| panic!("try {attempt} ({big} bytes): {e}"));
        assert!(
            ids == [1, 3] || ids == [1, 2, 3],
            "try {attempt}: records {ids:?}"
        );
        std::fs::remove_file(&path).unwrap();
    }
    eprintln!("{torn_by_kills} of {TRIES} kills tore the file; every one was repaired");
}

/// The start-up sweep also repairs a file nobody appends to again.
#[test]
fn the_sweep_repairs_a_torn_append_without_a_new_append() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let server = ServeProcess::start(&root, 0, &[]);
    append_record(&server.address, "t.txt", 1, 1000);
    drop(server);
    // What a kill in the middle of the next append leaves.
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(root.join("t.txt"))
        .unwrap();
    file.write_all(record_header(2, 5000).as_bytes()).unwrap();
    file.write_all(&[b'.'; 700]).unwrap();
    drop(file);
    let restarted = ServeProcess::start(&root, 0, &[]);
    let status = wait_for_sweep(&restarted.address);
    assert_eq!(status["sweep_appends_repaired"], 1, "{status}");
    let ids = whole_records(&std::fs::read(root.join("t.txt")).unwrap()).unwrap();
    assert_eq!(ids, [1]);
}
