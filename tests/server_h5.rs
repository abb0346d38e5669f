//! HDF5 aggregation (`__aggregate_h5r`, `__aggregate_h5`) and reading results back, driven with PYME's
//! exact requests and read back with PyTables and PYME's readers
//! (tests/server_h5/h5r_client.py, run by a Python with numpy, tables and
//! python-microscopy: `PYME_TEST_PYTHON`, else `target/ci-python-venv/bin/python`,
//! else `python3`).
//!
//! Needs the `hdf5` feature (Debian: libhdf5-dev): `cargo test --features hdf5 --test
//! server_h5`, as `.ci/run` does. Without it, the operations answer 501 and that is
//! what is tested.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;

use common::TestServer;

/// `PUT`/`GET` over a fresh connection; returns the status code and the body.
fn request(address: &str, method: &str, target: &str, body: &[u8]) -> (u16, Vec<u8>) {
    let mut stream = TcpStream::connect(address).expect("connect");
    let head = format!(
        "{method} {target} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(body).unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).unwrap();
    let text = String::from_utf8_lossy(&answer);
    let code = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let at = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(answer.len(), |p| p + 4);
    (code, answer[at..].to_vec())
}

#[cfg(not(feature = "hdf5"))]
#[test]
fn without_the_feature_hdf5_operations_answer_501() {
    let server = TestServer::start();
    let address = server.address();
    let pickle = include_bytes!("data/record_array.pickle");
    let (code, body) = request(&address, "PUT", "/__aggregate_h5r/r.h5r/FitResults", pickle);
    assert_eq!(code, 501);
    assert!(String::from_utf8_lossy(&body).contains("--features hdf5"));
    assert!(server.files().is_empty(), "nothing is written");
    let (code, _) = request(&address, "GET", "/r.h5r/FitResults.npy?from=0", b"");
    assert_eq!(code, 501);
    let (code, _) = request(&address, "PUT", "/__aggregate_h5/s.h5/metadata.json", b"{}");
    assert_eq!(code, 501);
    assert!(server.files().is_empty(), "nothing is written");
    // Not an HDF5 matter: a text append to an .h5r name is refused either way.
    let (code, _) = request(&address, "PUT", "/__aggregate_txt/r.h5r", b"x");
    assert_eq!(code, 409);
    // CI runs the PyTables checks in their own step, with the feature (.ci/run).
    if std::env::var_os("CI").is_some() {
        return;
    }
    common::skip::skip(
        "server_h5 (PyTables checks)",
        "built without the `hdf5` feature; run `cargo test --features hdf5 --test server_h5` \
         (needs libhdf5-dev, and a Python with numpy, tables and python-microscopy)",
    );
}

/// A Python that imports numpy, tables and PYME, or None (skipped visibly).
#[cfg(feature = "hdf5")]
fn python(test: &str) -> Option<std::path::PathBuf> {
    let mut candidates = Vec::new();
    if let Some(python) = std::env::var_os("PYME_TEST_PYTHON") {
        candidates.push(std::path::PathBuf::from(python));
    }
    let venv =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/ci-python-venv/bin/python");
    candidates.push(venv);
    candidates.push("python3".into());
    for candidate in candidates {
        let ok = std::process::Command::new(&candidate)
            .args(["-c", "import numpy, tables, PYME"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            return Some(candidate);
        }
    }
    common::skip::skip(
        test,
        "no Python with numpy, tables and python-microscopy (set PYME_TEST_PYTHON; \
         .ci/run makes target/ci-python-venv)",
    );
    None
}

/// Runs one check of tests/server_h5/h5r_client.py against `address` and `root`.
#[cfg(feature = "hdf5")]
fn run_check(python: &std::path::Path, address: &str, root: &std::path::Path, check: &str) {
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/server_h5/h5r_client.py");
    let output = std::process::Command::new(python)
        .arg(script)
        .arg(address)
        .arg(root)
        .arg(check)
        .output()
        .expect("python runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stdout.contains("ALL OK"),
        "check {check} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[cfg(feature = "hdf5")]
#[test]
fn tables_metadata_and_bytes_are_appended_and_read_back_by_pytables_and_pyme() {
    let Some(python) = python("tables_metadata_and_bytes_are_appended_and_read_back") else {
        return;
    };
    let server = TestServer::start();
    run_check(&python, &server.address(), server.root.path(), "append");
}

#[cfg(feature = "hdf5")]
#[test]
fn bad_input_is_refused_and_nothing_is_written() {
    let Some(python) = python("bad_input_is_refused_and_nothing_is_written") else {
        return;
    };
    let server = TestServer::start();
    run_check(&python, &server.address(), server.root.path(), "refuse");
}

#[cfg(feature = "hdf5")]
#[test]
fn appends_from_many_clients_are_serialised() {
    let Some(python) = python("appends_from_many_clients_are_serialised") else {
        return;
    };
    let server = TestServer::start();
    run_check(&python, &server.address(), server.root.path(), "concurrent");
}

#[cfg(feature = "hdf5")]
#[test]
fn an_h5_series_is_spooled_as_pyme_sends_it_and_served_as_a_folder() {
    let Some(python) = python("an_h5_series_is_spooled_as_pyme_sends_it") else {
        return;
    };
    let server = TestServer::start();
    run_check(&python, &server.address(), server.root.path(), "series");
}

#[cfg(feature = "hdf5")]
#[test]
fn after_kill_9_during_appends_every_answered_row_is_in_the_file() {
    let Some(python) = python("after_kill_9_during_appends_every_answered_row_is_in_the_file")
    else {
        return;
    };
    let root = tempfile::tempdir().unwrap();
    // The check starts and kills its own servers: it gets the program, not an address.
    run_check(
        &python,
        env!("CARGO_BIN_EXE_pyme-stream"),
        root.path(),
        "crash",
    );
}

#[cfg(feature = "hdf5")]
#[test]
fn pyme_analysis_client_code_files_its_results() {
    let test = "pyme_analysis_client_code_files_its_results";
    let Some(python) = python(test) else {
        return;
    };
    // PYME's clusterIO imports its discovery: it runs in a namespace of its own with
    // only loopback (`unshare -n`, as root), with the server it starts.
    if !common::skip::require_tool(test, "unshare", &["--version"]) {
        return;
    }
    let root = tempfile::tempdir().unwrap();
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/server_h5/h5r_client.py");
    let output = std::process::Command::new("unshare")
        .args(["-n", "sh", "-c", "ip link set lo up && exec \"$0\" \"$@\""])
        .arg(&python)
        .arg(script)
        .arg(env!("CARGO_BIN_EXE_pyme-stream"))
        .arg(root.path())
        .arg("pyme_client")
        .output()
        .expect("unshare runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() && !stdout.contains("ok ") {
        let stderr = String::from_utf8_lossy(&output.stderr);
        if stderr.contains("unshare failed") || stderr.contains("Operation not permitted") {
            common::skip::skip(test, &format!("no network namespace here: {stderr}"));
            return;
        }
    }
    assert!(
        output.status.success() && stdout.contains("ALL OK"),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[cfg(feature = "hdf5")]
#[test]
fn an_oversized_body_is_refused_before_any_write() {
    use pyme_streaming::server::{DataServer, ServerConfig};
    let root = tempfile::tempdir().unwrap();
    let server = DataServer::start(ServerConfig {
        root: root.path().to_owned(),
        port: 0,
        max_body_bytes: 100,
        ..ServerConfig::default()
    })
    .unwrap();
    let address = server.local_addr().to_string();
    let pickle = include_bytes!("data/record_array.pickle");
    let (code, _) = request(&address, "PUT", "/__aggregate_h5r/r.h5r/FitResults", pickle);
    assert_eq!(code, 413);
    assert!(!root.path().join("r.h5r").exists());
}

/// An HDF5 file itself (`GET /a/r.h5r`, `/s.h5`) is sent as any file, for PYME's
/// clients that copy it whole; only the names inside it are the operations' parts.
#[cfg(feature = "hdf5")]
#[test]
fn an_hdf5_file_itself_is_sent_as_any_file() {
    let server = TestServer::start();
    let address = server.address();
    let pickle = include_bytes!("data/record_array.pickle");
    let put = request(
        &address,
        "PUT",
        "/__aggregate_h5r/a/r.h5r/FitResults",
        pickle,
    );
    assert_eq!(put.0, 200);
    let put = request(&address, "PUT", "/__aggregate_h5/s.h5/metadata.json", b"{}");
    assert_eq!(put.0, 200);
    for (name, path) in [("/a/r.h5r", "a/r.h5r"), ("/s.h5", "s.h5")] {
        let (code, body) = request(&address, "GET", name, b"");
        assert_eq!(code, 200, "{name}: {}", String::from_utf8_lossy(&body));
        assert!(body.starts_with(b"\x89HDF\r\n\x1a\n"), "{name}");
        assert_eq!(Some(body), server.read(path), "{name}");
    }
    assert_eq!(
        request(&address, "GET", "/s.h5/", b"").0,
        200,
        "the listing"
    );
}

#[cfg(feature = "hdf5")]
#[test]
fn a_pickled_record_array_round_trips_through_the_npy_answer() {
    use pyme_streaming::server::npy::read_npy;
    use pyme_streaming::server::pickle::read_array;
    let server = TestServer::start();
    let address = server.address();
    let pickle = include_bytes!("data/record_array.pickle");
    for _ in 0..2 {
        let (code, body) = request(
            &address,
            "PUT",
            "/__aggregate_h5r/a/r.h5r/FitResults",
            pickle,
        );
        assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
    }
    let sent = read_array(pickle).unwrap();
    let (code, body) = request(&address, "GET", "/a/r.h5r/FitResults.npy?from=2&to=-1", b"");
    assert_eq!(code, 200);
    let back = read_npy(&body).unwrap();
    assert_eq!(back.dtype, sent.dtype);
    assert_eq!(back.rows, 3);
    let row = sent.dtype.itemsize();
    assert_eq!(
        &back.data[..],
        &[&sent.data[2 * row..], &sent.data[..row * 2]].concat()[..]
    );
    // A GET of a table that is not there, and of a file that is not HDF5.
    assert_eq!(request(&address, "GET", "/a/r.h5r/Nope.npy", b"").0, 404);
    assert_eq!(request(&address, "PUT", "/plain.h5r", b"text").0, 200);
    assert_eq!(
        request(&address, "GET", "/plain.h5r/FitResults.npy", b"").0,
        409
    );
}

/// A plain PUT of a whole `.h5r` file and an `__aggregate_h5r` of the same new name,
/// started together round after round: one wins. The aggregate's look for a
/// write-once file came long before its open (the body parsed, the HDF5 lock
/// waited for): a PUT stored between the two was opened and appended to (as root,
/// whom a read-only mode does not stop), a write-once file changed. Now the open
/// itself refuses a write-once file (405), and a create that finds the name taken
/// looks again.
#[cfg(feature = "hdf5")]
#[test]
fn a_put_and_an_h5r_aggregate_of_one_new_name_never_both_win() {
    use std::sync::{Arc, Barrier};
    let server = TestServer::start();
    let address = server.address();
    let pickle = include_bytes!("data/record_array.pickle");
    let (code, _) = request(
        &address,
        "PUT",
        "/__aggregate_h5r/seed.h5r/FitResults",
        pickle,
    );
    assert_eq!(code, 200);
    let whole = server.read("seed.h5r").unwrap();
    for i in 0..60 {
        let name = format!("race/{i}.h5r");
        let barrier = Arc::new(Barrier::new(2));
        let codes: Vec<u16> = std::thread::scope(|scope| {
            let racers = [
                (format!("/{name}"), whole.clone()),
                (
                    format!("/__aggregate_h5r/{name}/FitResults"),
                    pickle.to_vec(),
                ),
            ]
            .map(|(target, body)| {
                let (barrier, address) = (Arc::clone(&barrier), &address);
                scope.spawn(move || {
                    barrier.wait();
                    request(address, "PUT", &target, &body).0
                })
            });
            racers.map(|r| r.join().unwrap()).to_vec()
        });
        let stored = server.read(&name).unwrap();
        match codes[..] {
            [200, 405] => assert!(stored == whole, "round {i}: the write-once file changed"),
            [405, 200] => assert!(stored.starts_with(b"\x89HDF\r\n\x1a\n"), "round {i}"),
            _ => panic!("round {i}: {codes:?}"),
        }
    }
}
