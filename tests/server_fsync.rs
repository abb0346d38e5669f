//! What a 200 means (issue 22, item 8): with `serve --fsync`, a stored file's data
//! and every folder entry it needed, an appended body and its length record, a
//! pyramid's files and folders, are synced before the answer is written; without it
//! the server makes no sync call.
//!
//! A power cut cannot be made here, so the tests check the order of the system
//! calls, as `strace -f -y` records them for a `pyme-stream serve` child: on the
//! connection's thread, the syncs come before the `HTTP/1.1 200` is written. Needs
//! strace (skipped visibly without it, a failure under CI; `.ci/run` installs it).

#![cfg(target_os = "linux")]
mod common;
mod server_support;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use pyme_streaming::pzf::{self, Compression, DataFormat, EncodeParams};
use server_support::{json, put, Client};

/// The calls traced: syncs, the moves and links that name files, and every way the
/// server writes (files, journals, answers).
const TRACED: &str = "trace=fsync,fdatasync,sync_file_range,syncfs,msync,rename,renameat,\
                      renameat2,link,linkat,write,pwrite64,writev,sendto,sendmsg";

/// A `pyme-stream serve` under `strace -f`, writing its trace to a file.
struct TracedServe {
    strace: Child,
    address: String,
    log: PathBuf,
}

impl TracedServe {
    fn start(root: &Path, log: &Path, extra: &[&str]) -> TracedServe {
        let mut strace = Command::new("strace")
            .args(["-f", "-qq", "-y", "-s", "48", "-e", TRACED, "-o"])
            .arg(log)
            .arg(env!("CARGO_BIN_EXE_pyme-stream"))
            .args(["serve", "--advertise", "none", "--port", "0", "--root"])
            .arg(root)
            .args(extra)
            .stdout(Stdio::piped())
            .spawn()
            .expect("strace starts");
        let mut line = String::new();
        BufReader::new(strace.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let address = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_owned();
        TracedServe {
            strace,
            address,
            log: log.to_owned(),
        }
    }

    /// Stops the server (SIGTERM: a clean shutdown; strace ends with it) and
    /// returns the trace, one call per entry.
    fn finish(mut self) -> Vec<Call> {
        let pid = self.strace.id();
        let children =
            std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
        for child in children.split_whitespace() {
            // SAFETY: a plain system call on strace's child, the server.
            unsafe { libc::kill(child.parse().unwrap(), libc::SIGTERM) };
        }
        self.strace.wait().unwrap();
        let text = std::fs::read_to_string(&self.log).unwrap();
        text.lines().filter_map(Call::parse).collect()
    }
}

impl Drop for TracedServe {
    fn drop(&mut self) {
        let _ = self.strace.kill();
        let _ = self.strace.wait();
    }
}

/// One traced call: the thread, the call's name, and its line.
#[derive(Debug)]
struct Call {
    tid: u32,
    name: String,
    line: String,
}

impl Call {
    /// Parses `TID name(args...` (a resumed call is counted where it began).
    fn parse(line: &str) -> Option<Call> {
        let (tid, rest) = line.split_once(' ')?;
        let rest = rest.trim_start();
        if rest.starts_with("<...") || rest.starts_with("+++") || rest.starts_with("---") {
            return None;
        }
        let name = rest.split('(').next()?.to_owned();
        Some(Call {
            tid: tid.parse().ok()?,
            name,
            line: rest.to_owned(),
        })
    }

    fn is_sync(&self) -> bool {
        matches!(
            self.name.as_str(),
            "fsync" | "fdatasync" | "sync_file_range" | "syncfs" | "msync"
        )
    }

    /// A sync of the file or folder at `path` (as `-y` prints it: `fd</path>`).
    fn syncs(&self, path: &Path) -> bool {
        self.is_sync() && self.line.contains(&format!("<{}>", path.display()))
    }

    fn answers_200(&self) -> bool {
        matches!(
            self.name.as_str(),
            "write" | "writev" | "sendto" | "sendmsg"
        ) && self.line.contains("HTTP/1.1 200")
    }
}

/// The calls of the thread that made `calls[at]`, from `at` to its next answer.
fn until_answer(calls: &[Call], at: usize) -> &[Call] {
    let tid = calls[at].tid;
    let end = (at..calls.len())
        .find(|&i| calls[i].tid == tid && calls[i].answers_200())
        .unwrap_or_else(|| panic!("no 200 after {:?}", calls[at]));
    &calls[at..=end]
}

fn request(client: &mut Client, bytes: &[u8]) {
    client.send(bytes);
    assert_eq!(client.response().code, 200);
}

/// What the tests send: a small file in new folders, one more in the same
/// folder, a file large enough to be moved by `splice`, two appends to a log in a
/// new folder.
fn store_a_few(address: &str, fsync: bool) {
    let mut client = Client::connect(address);
    request(&mut client, &put("a/b/c/f1", &[1; 1000]));
    request(&mut client, &put("a/b/c/f2", &[2; 1000]));
    request(&mut client, &put("big/f3", &vec![3; 1 << 20]));
    request(&mut client, &put("__aggregate_txt/logs/x.txt", b"first\n"));
    request(&mut client, &put("__aggregate_txt/logs/x.txt", b"second\n"));
    client.send(&server_support::get("/__status"));
    assert_eq!(json(&client.response().body)["fsync"], fsync);
}

/// The index of the call that gave `name` its name (renameat2, or a link).
fn naming(calls: &[Call], destination: &Path) -> usize {
    namings(calls, destination)
        .first()
        .copied()
        .unwrap_or_else(|| panic!("{} was never named", destination.display()))
}

/// The indices of every call that gave `destination` its name.
fn namings(calls: &[Call], destination: &Path) -> Vec<usize> {
    let quoted = format!("\"{}\"", destination.display());
    calls
        .iter()
        .enumerate()
        .filter(|(_, c)| {
            matches!(
                c.name.as_str(),
                "renameat2" | "rename" | "renameat" | "linkat" | "link"
            ) && c.line.contains(&quoted)
                && c.line.ends_with("= 0")
        })
        .map(|(i, _)| i)
        .collect()
}

/// The calls of the thread that made `calls[at]`, since its previous answer: the
/// request's work before `at`.
fn since_request(calls: &[Call], at: usize) -> &[Call] {
    let tid = calls[at].tid;
    let start = calls[..at]
        .iter()
        .rposition(|c| c.tid == tid && c.answers_200())
        .map_or(0, |i| i + 1);
    &calls[start..at]
}

/// A pyramid's create, one tile, and its finish (tests/server_pyramid.rs has the rest).
fn build_a_pyramid(address: &str) {
    let mut client = Client::connect(address);
    let create = br#"{"pyramid_tile_size": 8, "chunk_shape": [2, 2, 1]}"#;
    request(&mut client, &put("__pyramid_create/p/q", create));
    let pixels: Vec<u8> = (0..64).flat_map(|i| (i as f32).to_le_bytes()).collect();
    let mut params = EncodeParams::new(DataFormat::F32, 8, 8);
    params.compression = Compression::Raw;
    let mut chunk = Vec::new();
    pzf::encode(&params, &pixels, &mut chunk).unwrap();
    let tile = "__pyramid_update_tile/p/q?x=0&y=0&tox=0&toy=0&fox=4&foy=4&fsx=16&fsy=16";
    request(&mut client, &put(tile, &chunk));
    request(&mut client, &put("__pyramid_finish/p/q", b""));
}

#[test]
fn with_fsync_data_and_folder_entries_are_synced_before_the_200() {
    if !common::skip::require_tool(
        "with_fsync_data_and_folder_entries_are_synced_before_the_200",
        "strace",
        &["-V"],
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let server = TracedServe::start(&root, &dir.path().join("trace"), &["--fsync"]);
    store_a_few(&server.address, true);
    let calls = server.finish();
    let root = root.canonicalize().unwrap();

    for (name, new_folders) in [
        ("a/b/c/f1", &["a/b/c", "a/b", "a", ""][..]),
        ("a/b/c/f2", &["a/b/c"][..]),
        ("big/f3", &["big", ""][..]),
    ] {
        let destination = root.join(name);
        let named = naming(&calls, &destination);
        let tid = calls[named].tid;
        // The data: synced (through the temporary's descriptor) before the name.
        let request_start = calls[..named]
            .iter()
            .rposition(|c| c.tid == tid && c.answers_200())
            .map_or(0, |i| i + 1);
        let data_synced = calls[request_start..named].iter().any(|c| {
            c.tid == tid
                && c.is_sync()
                && (c.line.contains("/.pyme-part-") || c.line.contains("(deleted)"))
        });
        assert!(
            data_synced,
            "{name}: no sync of its data before it was named"
        );
        // The folder entries: the file's folder, and each new folder's parent.
        let after = until_answer(&calls, named);
        for folder in new_folders {
            let folder = match *folder {
                "" => root.clone(),
                folder => root.join(folder),
            };
            assert!(
                after.iter().any(|c| c.tid == tid && c.syncs(&folder)),
                "{name}: {} not synced between naming and the 200: {after:#?}",
                folder.display()
            );
        }
    }

    // The appends: body and journal synced, in that order, before each 200; the
    // new folder (and the new file's and journal's entries in it) too.
    let log = root.join("logs/x.txt");
    let journal = root.join("logs/.pyme-len-x.txt");
    let appends: Vec<usize> = calls
        .iter()
        .enumerate()
        .filter(|(_, c)| c.syncs(&log))
        .map(|(i, _)| i)
        .collect();
    assert_eq!(appends.len(), 2, "one sync of the log per append");
    for (n, &at) in appends.iter().enumerate() {
        let tid = calls[at].tid;
        let after = until_answer(&calls, at);
        let record = after
            .iter()
            .position(|c| {
                c.tid == tid && c.name == "pwrite64" && c.line.contains(".pyme-len-x.txt")
            })
            .unwrap_or_else(|| panic!("append {n}: no length record after the body's sync"));
        assert!(
            after[record..]
                .iter()
                .any(|c| c.tid == tid && c.syncs(&journal)),
            "append {n}: the length record is not synced before the 200"
        );
        if n == 0 {
            for folder in [root.join("logs"), root.clone()] {
                assert!(
                    after.iter().any(|c| c.tid == tid && c.syncs(&folder)),
                    "the first append: {} not synced before the 200",
                    folder.display()
                );
            }
        }
    }
}

#[test]
fn without_fsync_the_server_makes_no_sync_call() {
    if !common::skip::require_tool(
        "without_fsync_the_server_makes_no_sync_call",
        "strace",
        &["-V"],
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let server = TracedServe::start(&root, &dir.path().join("trace"), &[]);
    store_a_few(&server.address, false);
    build_a_pyramid(&server.address);
    let calls = server.finish();
    let root = root.canonicalize().unwrap();
    // The trace saw the work (so an empty trace cannot pass) ...
    naming(&calls, &root.join("a/b/c/f1"));
    naming(&calls, &root.join("p/q/1/000/000/000_img.pzf"));
    assert_eq!(calls.iter().filter(|c| c.answers_200()).count(), 9);
    // ... and no sync.
    let syncs: Vec<&Call> = calls.iter().filter(|c| c.is_sync()).collect();
    assert!(syncs.is_empty(), "{syncs:#?}");
}

/// HDF5 aggregation under `--fsync` (the `hdf5` feature): after each operation has
/// closed the file, the file is synced, and for a new file its folder entry and the
/// new folder's entry in the root, all before the 200. Without `--fsync` nothing is
/// synced.
#[cfg(feature = "hdf5")]
#[test]
fn with_fsync_hdf5_files_are_synced_after_closing_before_the_200() {
    let test = "with_fsync_hdf5_files_are_synced_after_closing_before_the_200";
    if !common::skip::require_tool(test, "strace", &["-V"]) {
        return;
    }
    for fsync in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        let extra: &[&str] = if fsync { &["--fsync"] } else { &[] };
        let server = TracedServe::start(&root, &dir.path().join("trace"), extra);
        let mut client = Client::connect(&server.address);
        let metadata = br#"{"Camera.ADOffset": 100}"#;
        for name in ["h/r.h5r/MetaData", "h/r.h5r/MetaData"] {
            request(
                &mut client,
                &put(&format!("__aggregate_h5r/{name}"), metadata),
            );
        }
        request(
            &mut client,
            &put("__aggregate_h5/s/x.h5/metadata.json", metadata),
        );
        let calls = server.finish();
        let root = root.canonicalize().unwrap();
        let answers: Vec<usize> = (0..calls.len())
            .filter(|&i| calls[i].answers_200())
            .collect();
        assert_eq!(answers.len(), 3, "three 200s traced");
        if !fsync {
            let syncs: Vec<&Call> = calls.iter().filter(|c| c.is_sync()).collect();
            assert!(syncs.is_empty(), "{syncs:#?}");
            continue;
        }
        // Each request's calls: from the answer before it to its own 200.
        let mut start = 0;
        for (n, (&end, (file, new_folder))) in answers
            .iter()
            .zip([
                ("h/r.h5r", Some("h")),
                ("h/r.h5r", None),
                ("s/x.h5", Some("s")),
            ])
            .enumerate()
        {
            let tid = calls[end].tid;
            let own: Vec<&Call> = calls[start..end].iter().filter(|c| c.tid == tid).collect();
            start = end + 1;
            let file = root.join(file);
            let synced = own
                .iter()
                .position(|c| c.syncs(&file))
                .unwrap_or_else(|| panic!("request {n}: {} not synced: {own:#?}", file.display()));
            // Synced after HDF5 last wrote it (its close flushed every write).
            assert!(
                !own[synced..].iter().any(|c| matches!(
                    c.name.as_str(),
                    "write" | "pwrite64" | "writev"
                ) && c
                    .line
                    .contains(&format!("<{}>", file.display()))),
                "request {n}: written after its sync: {own:#?}"
            );
            let folders_synced = |folder: &Path| own[synced..].iter().any(|c| c.syncs(folder));
            match new_folder {
                Some(folder) => {
                    assert!(
                        folders_synced(&root.join(folder)),
                        "request {n}: {folder} not synced"
                    );
                    assert!(folders_synced(&root), "request {n}: the root not synced");
                }
                None => assert!(
                    !own.iter().any(|c| c.is_sync() && !c.syncs(&file)),
                    "request {n}: an existing file needs no folder sync: {own:#?}"
                ),
            }
        }
    }
}

#[test]
fn with_fsync_a_pyramid_is_synced_before_each_200() {
    if !common::skip::require_tool(
        "with_fsync_a_pyramid_is_synced_before_each_200",
        "strace",
        &["-V"],
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let server = TracedServe::start(&root, &dir.path().join("trace"), &["--fsync"]);
    build_a_pyramid(&server.address);
    let calls = server.finish();
    let root = root.canonicalize().unwrap();
    let pyramid = root.join("p/q");
    let state_dir = pyramid.join(".pyme-pyramid");
    let synced_in = |calls: &[Call], tid: u32, folder: &Path| {
        calls.iter().any(|c| c.tid == tid && c.syncs(folder))
    };
    let data_synced_before = |at: usize| {
        since_request(&calls, at)
            .iter()
            .any(|c| c.tid == calls[at].tid && c.is_sync() && c.line.contains("/.pyme-part-"))
    };

    // Each file written: its data synced before its name; its folder before the 200.
    let state = state_dir.join("pyramid.json");
    let states = namings(&calls, &state);
    assert_eq!(states.len(), 2, "the state: made, then marked finished");
    let written = [
        state.clone(),
        state_dir.join("tiles/0_0"),
        pyramid.join("0/000/000/000_img.pzf"),
        pyramid.join("1/000/000/000_img.pzf"),
    ];
    for file in &written {
        for at in namings(&calls, file) {
            assert!(
                data_synced_before(at),
                "{}: data not synced before its name",
                file.display()
            );
            let folder = file.parent().unwrap();
            assert!(
                synced_in(until_answer(&calls, at), calls[at].tid, folder),
                "{}: not synced between naming {} and the 200",
                folder.display(),
                file.display()
            );
        }
    }

    // The create: the new folders, up to the root, before the state is named.
    let create = since_request(&calls, states[0]);
    let tid = calls[states[0]].tid;
    for folder in [
        state_dir.join("tiles"),
        state_dir.clone(),
        pyramid.clone(),
        root.join("p"),
        root.clone(),
    ] {
        assert!(
            synced_in(create, tid, &folder),
            "create: {} not synced before the state",
            folder.display()
        );
    }

    // The finish: every tile and its new folders before the state marks it finished.
    let finish = since_request(&calls, states[1]);
    let tid = calls[states[1]].tid;
    for tile in &written[2..] {
        assert!(
            finish
                .iter()
                .any(|c| c.tid == tid && c.line.contains(&format!("\"{}\"", tile.display()))),
            "{} not named before the finished state",
            tile.display()
        );
    }
    for folder in ["0/000/000", "0/000", "0", "1/000/000", "1/000", "1", ""] {
        let folder = match folder {
            "" => pyramid.clone(),
            folder => pyramid.join(folder),
        };
        assert!(
            synced_in(finish, tid, &folder),
            "finish: {} not synced before the finished state",
            folder.display()
        );
    }
}
