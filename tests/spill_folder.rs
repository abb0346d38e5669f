//! The spill folder as a shared resource and as a promise (issue 22, items 3
//! and 4): one streamer per folder (its lock file `.pyme-lock`), in this
//! process or another; a dead process's half-written temporaries removed,
//! a live one's left alone; and a spilled file on disk (data synced, linked,
//! folder synced, new folders synced into their parents) before its put
//! returns, shown by the order of the system calls under strace.
//!
//! The other process is this test executable run again with one ignored
//! test selected and its instructions in environment variables.
//! Run: `cargo test --test spill_folder`.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::TestServer;
use pyme_streaming::{Error, Stream, Streamer, StreamerOptions};

const HOLDER_FOLDER: &str = "PYME_TEST_HOLD_SPILL_FOLDER";
const HOLDER_SERVER: &str = "PYME_TEST_HOLD_SPILL_SERVER";
const SPILLER_FOLDER: &str = "PYME_TEST_SPILL_SYNC_FOLDER";
/// What the spilling child writes to its standard error right after the
/// probe's `put` returned (a `write(2, ...)` strace shows in order).
const PUT_RETURNED: &str = "PROBE-PUT-RETURNED";
/// The name of the file whose spill is traced (two new folders deep).
const PROBE: &str = "deep/new/probe";

/// This test executable, running only `test` (an ignored one), in a child process.
fn this_test_in_a_child(test: &str) -> Command {
    let mut command = Command::new(std::env::current_exe().expect("test executable"));
    command.args([
        "--exact",
        test,
        "--include-ignored",
        "--nocapture",
        "--test-threads=1",
    ]);
    command
}

fn busy_folder(error: Error) -> String {
    match error {
        Error::SpillBusy { folder, .. } => folder,
        other => panic!("expected SpillBusy, got {other:?}"),
    }
}

#[test]
fn two_streamers_of_one_process_cannot_share_a_spill_folder() {
    let server = TestServer::start();
    let spill = tempfile::tempdir().unwrap();
    let options = StreamerOptions::new()
        .server(server.address())
        .spill_dir(spill.path());
    let first = Streamer::new(options.clone()).unwrap();
    let folder = busy_folder(Streamer::new(options.clone()).err().expect("refused"));
    assert_eq!(Path::new(&folder), spill.path());
    let stream = Stream::connect(&server.address(), &options);
    assert!(matches!(stream.err(), Some(Error::SpillBusy { .. })));
    first.put("a/one", b"1", None).unwrap();
    // A statistics probe keeps the streamer's memory, not the folder.
    let probe = first.stats_probe();
    assert!(first.close().all_acknowledged());
    // Closed: the folder is free again, and its lock file was never sent.
    let second = Streamer::new(options).unwrap();
    assert_eq!(probe.stats().files_acknowledged, 1);
    second.put("a/two", b"2", None).unwrap();
    assert!(second.close().all_acknowledged());
    assert!(spill.path().join(".pyme-lock").exists());
    assert_eq!(server.files(), ["a/one", "a/two"]);
}

/// A folder is a server's storage root or a streamer's spill folder, never
/// both: the two take one kind of lock on one `.pyme-lock` (on Linux the
/// server's `flock` and the folder's OFD lock did not see each other), and
/// each side's error names the other. Both orders.
#[test]
fn a_server_root_and_a_spill_folder_at_one_path_exclude_each_other() {
    let server = TestServer::start();
    let shared = tempfile::tempdir().unwrap();
    let options = StreamerOptions::new()
        .server(server.address())
        .spill_dir(shared.path());
    let config = pyme_streaming::server::ServerConfig {
        root: shared.path().to_owned(),
        port: 0,
        ..Default::default()
    };
    // A server's root first: a streamer may not spill there.
    let root_server = pyme_streaming::server::DataServer::start(config.clone()).unwrap();
    match Streamer::new(options.clone())
        .err()
        .expect("spilled into a root")
    {
        Error::SpillBusy { folder, holder } => {
            assert_eq!(Path::new(&folder), shared.path());
            assert!(holder.contains("a data server"), "{holder}");
        }
        other => panic!("expected SpillBusy, got {other:?}"),
    }
    drop(root_server);
    // A spill folder first: a server may not take it as its root.
    let streamer = Streamer::new(options.clone()).unwrap();
    let refused = pyme_streaming::server::DataServer::start(config.clone())
        .err()
        .expect("a server started on a spill folder");
    assert_eq!(refused.kind(), std::io::ErrorKind::ResourceBusy);
    assert!(
        refused.to_string().contains("a streamer's spill folder"),
        "{refused}"
    );
    assert!(streamer.close().all_acknowledged());
    // Each free again once the other is gone.
    drop(pyme_streaming::server::DataServer::start(config).unwrap());
    assert!(Streamer::new(options).unwrap().close().all_acknowledged());
}

/// The other process of the next test: holds `HOLDER_FOLDER` open with a
/// streamer, makes a temporary as a spill write in progress would, says
/// READY and waits (for its standard input to close, or to be killed).
#[test]
#[ignore = "run as a child process by a_spill_folder_held_by_another_process_is_busy_until_it_dies"]
fn spill_folder_holder() {
    let (Some(folder), Some(server)) = (
        std::env::var_os(HOLDER_FOLDER),
        std::env::var(HOLDER_SERVER).ok(),
    ) else {
        return;
    };
    let folder = PathBuf::from(folder);
    let streamer = Streamer::new(StreamerOptions::new().server(server).spill_dir(&folder)).unwrap();
    std::fs::write(folder.join(".pyme-spill-live-0"), b"half written").unwrap();
    let mut out = std::io::stdout().lock();
    writeln!(out, "READY").unwrap();
    out.flush().unwrap();
    let _ = std::io::stdin().read_line(&mut String::new());
    drop(streamer);
}

fn start_holder(folder: &Path, server: &str) -> Child {
    let mut child = this_test_in_a_child("spill_folder_holder")
        .env(HOLDER_FOLDER, folder)
        .env(HOLDER_SERVER, server)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("child starts");
    let stdout = child.stdout.take().unwrap();
    let ready = BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .any(|line| line.ends_with("READY"));
    assert!(ready, "the holder did not get the folder");
    child
}

#[test]
fn a_spill_folder_held_by_another_process_is_busy_until_it_dies() {
    let server = TestServer::start();
    let spill = tempfile::tempdir().unwrap();
    // A temporary left by a process that died before this test: removed by
    // the holder's open, which owns the lock.
    std::fs::write(spill.path().join(".pyme-spill-dead-0"), b"old").unwrap();
    let mut holder = start_holder(spill.path(), &server.address());
    assert!(!spill.path().join(".pyme-spill-dead-0").exists());
    let options = StreamerOptions::new()
        .server(server.address())
        .spill_dir(spill.path());
    busy_folder(Streamer::new(options.clone()).err().expect("refused"));
    // The live process's write in progress is left alone.
    assert!(spill.path().join(".pyme-spill-live-0").exists());

    // Killed (no close, no clean-up): the kernel releases the lock, and the
    // next streamer removes what the dead process left half-written.
    holder.kill().unwrap();
    holder.wait().unwrap();
    let streamer = Streamer::new(options).unwrap();
    assert!(!spill.path().join(".pyme-spill-live-0").exists());
    assert!(spill.path().join(".pyme-lock").exists());
    streamer.put("after/holder", b"x", None).unwrap();
    assert!(streamer.close().all_acknowledged());
    assert_eq!(server.files(), ["after/holder"]);
}

/// A streamer whose only server is down for the next 10 minutes: it
/// accepted the connection, then closed it and stopped listening.
fn streamer_with_its_server_down(spill: &Path) -> Streamer {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let accepting = std::thread::spawn(move || drop(listener.accept()));
    let streamer = Streamer::new(
        StreamerOptions::new()
            .server(address)
            .spill_dir(spill)
            .reconnect_backoff(Duration::from_secs(600), Duration::from_secs(600)),
    )
    .unwrap();
    accepting.join().unwrap();
    // A first file finds the server gone and waits in the folder: from then
    // on no server is live, and a put spills on the putting thread.
    streamer.put("warm/up", b"w", None).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while streamer.stats().spilled == 0 {
        assert!(
            Instant::now() < deadline,
            "never spilled: {:?}",
            streamer.stats()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    streamer
}

/// The traced process of the next test: spills [`PROBE`] and says so.
#[test]
#[ignore = "run under strace by a_spilled_file_is_on_disk_before_its_put_returns"]
fn spilling_child() {
    let Some(folder) = std::env::var_os(SPILLER_FOLDER) else {
        return;
    };
    let streamer = streamer_with_its_server_down(Path::new(&folder));
    streamer.put(PROBE, b"probe bytes", None).unwrap();
    // Not through print!: a write(2) of its own, in the order strace sees.
    std::io::stderr()
        .write_all(format!("{PUT_RETURNED}\n").as_bytes())
        .unwrap();
    let stats = streamer
        .close_timeout(Duration::from_secs(5))
        .unwrap_or_else(|e| e.stats);
    assert_eq!(stats.spilled, 2, "{stats:?}");
}

/// The index of the first line of `trace` that contains every one of `parts`.
fn line_with(trace: &[String], parts: &[&str]) -> usize {
    line_after(trace, 0, parts)
}

/// The index of the first line from `start` on that contains every one of `parts`.
fn line_after(trace: &[String], start: usize, parts: &[&str]) -> usize {
    trace[start..]
        .iter()
        .position(|line| parts.iter().all(|part| line.contains(part)))
        .map(|i| i + start)
        .unwrap_or_else(|| {
            panic!(
                "no system call with {parts:?} after line {start} in:\n{}",
                trace.join("\n")
            )
        })
}

#[test]
fn a_spilled_file_is_on_disk_before_its_put_returns() {
    const TEST: &str = "a_spilled_file_is_on_disk_before_its_put_returns";
    if !common::skip::require_tool(TEST, "strace", &["-V"]) {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    // As strace shows paths: resolved.
    let spill = work.path().canonicalize().unwrap().join("spill");
    let log = work.path().join("strace.log");
    let output = Command::new("strace")
        .args(["-f", "-qq", "-y", "-s", "256", "-o"])
        .arg(&log)
        .args([
            "-e",
            "trace=fsync,fdatasync,sync_file_range,link,linkat,rename,renameat,renameat2,mkdir,mkdirat,write",
        ])
        .arg(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "spilling_child",
            "--include-ignored",
            "--nocapture",
        ])
        .env(SPILLER_FOLDER, &spill)
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let trace: Vec<String> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    let spill = spill.to_str().unwrap();
    let folder = format!("{spill}/deep/new");

    // The probe: written to a temporary, linked under its name.
    let link = line_with(&trace, &["link", &format!("\"{folder}/probe\"")]);
    let temporary = trace[link]
        .split('"')
        .find(|part| part.contains("/.pyme-spill-"))
        .expect("linked from a temporary")
        .to_owned();
    let returned = line_with(&trace, &["write(2", PUT_RETURNED]);
    // Its data is synced before the link; its folder after the link; the two
    // new folders' entries (in `spill` and `spill/deep`) are synced; and all
    // of that before the put returned.
    let data_synced = line_with(&trace, &["sync", &format!("<{temporary}>")]);
    let folder_synced = line_after(&trace, link, &["fsync(", &format!("<{folder}>")]);
    let deep_made = line_with(&trace, &["mkdir", &format!("\"{spill}/deep\"")]);
    let deep_entry_synced = line_after(&trace, deep_made, &["fsync(", &format!("<{spill}>")]);
    let new_made = line_with(&trace, &["mkdir", &format!("\"{folder}\"")]);
    let new_entry_synced = line_after(&trace, new_made, &["fsync(", &format!("<{spill}/deep>")]);
    assert!(data_synced < link, "data synced after the link");
    assert!(
        folder_synced < returned,
        "folder synced after the put returned"
    );
    assert!(
        deep_entry_synced < returned,
        "spill/deep's entry synced after the put returned"
    );
    assert!(
        new_entry_synced < returned,
        "deep/new's entry synced after the put returned"
    );
}
