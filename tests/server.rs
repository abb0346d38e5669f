//! The data server as a client sees it: a real server on loopback, raw TCP clients.
// Some tests are Unix- or Linux-only; elsewhere their helpers go unused.
#![cfg_attr(not(target_os = "linux"), allow(unused_imports, dead_code))]

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::{Shutdown, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use common::{files_under, pyme_stream};
use pyme_streaming::server::{DataServer, ServerConfig};

mod server_support;

use server_support::{get, json, put, Client, TestServer};

#[test]
fn write_once_stores_read_only_and_refuses_a_second_put() {
    let server = TestServer::start();
    let mut client = server.connect();
    client.send(&put("a.txt", b"first"));
    let first = client.response();
    assert_eq!(first.code, 200);
    assert!(first.body.is_empty());
    client.send(&put("a.txt", b"second"));
    let second = client.response();
    assert_eq!(second.code, 405);
    assert!(!second.body.is_empty());
    // The connection goes on after a 405.
    client.send(&put("b.txt", b""));
    assert_eq!(client.response().code, 200);

    let path = server.root().join("a.txt");
    assert_eq!(std::fs::read(&path).unwrap(), b"first");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o440);
    }
}

#[test]
fn a_thousand_pipelined_puts_are_answered_in_order() {
    let server = TestServer::start();
    let mut client = server.connect();
    let mut requests = Vec::new();
    for i in 0..1000 {
        requests.extend(put(&format!("series/frame{i:05}.pzf"), &[i as u8; 100]));
    }
    // A repeated name in the middle must get its 405 in its place.
    requests.extend(put("series/frame00007.pzf", b"again"));
    let mut writer = client.writer.try_clone().unwrap();
    let sender = std::thread::spawn(move || writer.write_all(&requests).unwrap());
    for i in 0..1000 {
        assert_eq!(client.response().code, 200, "request {i}");
    }
    assert_eq!(client.response().code, 405);
    sender.join().unwrap();
    let stored = std::fs::read_dir(server.root().join("series")).unwrap();
    assert_eq!(stored.count(), 1000);
    assert_eq!(
        std::fs::read(server.root().join("series/frame00999.pzf")).unwrap(),
        [999u32 as u8; 100]
    );
}

#[test]
fn parent_folders_and_folder_only_puts() {
    let server = TestServer::start();
    let mut client = server.connect();
    client.send(&put("x/y/z.txt", b"deep"));
    assert_eq!(client.response().code, 200);
    client.send(&put("empty/folder/", b""));
    assert_eq!(client.response().code, 200);
    assert_eq!(
        std::fs::read(server.root().join("x/y/z.txt")).unwrap(),
        b"deep"
    );
    assert!(server.root().join("empty/folder").is_dir());
    // A parent that is a file: 409, the connection goes on.
    client.send(&put("x/y/z.txt/inner", b"data"));
    assert_eq!(client.response().code, 409);
    client.send(&put("x/after", b"a"));
    assert_eq!(client.response().code, 200);
    // Data sent to a folder name would be lost: refused, nothing made.
    client.send(&put("data/folder/", b"lost?"));
    assert_eq!(client.response().code, 400);
    assert!(client.is_closed());
    assert!(!server.root().join("data").exists());
}

#[test]
fn gzip_bodies_are_stored_decoded() {
    let server = TestServer::start();
    let text = b"hello, gzip ".repeat(1000);
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(&text).unwrap();
    let gz = encoder.finish().unwrap();

    let mut client = server.connect();
    let mut request = format!(
        "PUT /z.txt HTTP/1.1\r\nContent-Encoding: gzip\r\nContent-Length: {}\r\n\r\n",
        gz.len()
    )
    .into_bytes();
    request.extend_from_slice(&gz);
    client.send(&request);
    assert_eq!(client.response().code, 200);
    assert_eq!(std::fs::read(server.root().join("z.txt")).unwrap(), text);

    // A cut gzip stream is refused and leaves nothing.
    let cut = &gz[..gz.len() / 2];
    let mut request = format!(
        "PUT /cut.txt HTTP/1.1\r\nContent-Encoding: gzip\r\nContent-Length: {}\r\n\r\n",
        cut.len()
    )
    .into_bytes();
    request.extend_from_slice(cut);
    client.send(&request);
    assert_eq!(client.response().code, 400);
    assert!(!server.root().join("cut.txt").exists());
    assert_eq!(files_under(server.root()).len(), 1);
}

#[test]
fn aggregate_txt_appends_and_hdf5_answers_as_built() {
    let server = TestServer::start();
    let mut client = server.connect();
    client.send(&put("__aggregate_txt/logs/run.txt", b"one\n"));
    client.send(&put("__aggregate_txt/logs/run.txt", b"two\n"));
    client.send(&put("__aggregate_h5r/a.h5r/table", b"xx"));
    client.send(&put("__aggregate_h5/a.h5/metadata.json", b"{}"));
    client.send(&put("after.txt", b"ok"));
    assert_eq!(client.response().code, 200);
    assert_eq!(client.response().code, 200);
    let h5r = client.response();
    // With the `hdf5` feature "xx" is refused as no pickle, .npy or JSON (400, the
    // connection kept); without it the operation is not built (501). Both say why.
    assert_eq!(h5r.code, if cfg!(feature = "hdf5") { 400 } else { 501 });
    assert!(!h5r.body.is_empty());
    // Empty metadata for a new .h5 series: stored with the feature, else 501.
    let h5 = client.response().code;
    assert_eq!(h5, if cfg!(feature = "hdf5") { 200 } else { 501 });
    assert_eq!(server.root().join("a.h5").is_file(), cfg!(feature = "hdf5"));
    assert_eq!(client.response().code, 200);
    assert_eq!(
        std::fs::read(server.root().join("logs/run.txt")).unwrap(),
        b"one\ntwo\n"
    );
}

#[test]
fn get_files_listings_redirects_and_status() {
    let server = TestServer::start();
    let mut client = server.connect();
    let big: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
    for (name, body) in [
        ("s1/metadata.json", &b"{}"[..]),
        ("s1/frame00000.pzf", b"frame"),
        ("s2/metadata.json", b"{}"),
        ("s2/events.json", b"[]"),
        ("s2/x", b"1"),
        ("plain.bin", b"12345"),
        ("big.bin", &big),
    ] {
        client.send(&put(name, body));
        assert_eq!(client.response().code, 200, "{name}");
    }
    client.send(&put("sub/", b""));
    assert_eq!(client.response().code, 200);

    client.send(&get("/plain.bin"));
    assert_eq!(client.response().body, b"12345");
    client.send(&get("/big.bin"));
    assert_eq!(client.response().body, big);
    client.send(b"HEAD /plain.bin HTTP/1.1\r\n\r\n");
    let head = client.response_to(true);
    assert_eq!(head.header("Content-Length"), Some("5"));

    client.send(&get("/"));
    let listing = json(&client.response().body);
    assert_eq!(listing["plain.bin"], serde_json::json!([0, 5]));
    assert_eq!(listing["s1/"], serde_json::json!([1 | 2, 2]));
    assert_eq!(listing["s2/"], serde_json::json!([1 | 2 | 4, 3]));
    assert_eq!(listing["sub/"], serde_json::json!([1, 0]));
    assert_eq!(listing.as_object().unwrap().len(), 5);

    client.send(&get("/s1/?x=1"));
    let listing = json(&client.response().body);
    assert_eq!(listing["frame00000.pzf"], serde_json::json!([0, 5]));

    client.send(&get("/s1"));
    let redirect = client.response();
    assert_eq!(redirect.code, 301);
    assert_eq!(redirect.header("Location"), Some("/s1/"));

    client.send(&get("/missing"));
    let missing = client.response();
    assert_eq!(missing.code, 404);
    assert!(!missing.body.is_empty());

    client.send(&get("/__status"));
    let status = json(&client.response().body);
    assert_eq!(status["port"], server.server.local_addr().port());
    assert_eq!(status["serverfilter"], "test-cluster");
    assert_eq!(status["files_stored"], 7);
    assert!(status["disk_total_bytes"].as_u64().unwrap() > 0);
    assert!(status["uptime_s"].as_f64().is_some());
    assert_eq!(status["connections_open"], 1);
}

#[test]
fn paths_leaving_the_root_are_refused_and_close_only_their_connection() {
    let server = TestServer::start();
    let mut bystander = server.connect();
    bystander.send(&put("before.txt", b"x"));
    assert_eq!(bystander.response().code, 200);

    for path in [
        "/../x",
        "/a/../../x",
        "/%2e%2e/x",
        "/a/%2E%2E/%2e%2e/x",
        "//x",
        "/%2Fx",
        "/a%5c..%5cx",
        "/a%00",
        "/bad%zz",
    ] {
        let mut client = server.connect();
        client.send(format!("PUT {path} HTTP/1.1\r\nContent-Length: 1\r\n\r\nx").as_bytes());
        let response = client.response();
        assert!((400..500).contains(&response.code), "{path}: {response:?}");
        assert!(!response.body.is_empty());
        assert!(client.is_closed(), "{path}: connection left open");
    }
    let outside: Vec<_> = std::fs::read_dir(server.dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(outside, ["root"]);
    assert!(!server.root().join("x").exists());

    bystander.send(&put("after.txt", b"y"));
    assert_eq!(bystander.response().code, 200);
}

#[test]
fn bad_requests_get_a_4xx_and_a_close() {
    let server = TestServer::with(|c| {
        c.max_header_bytes = pyme_streaming::server::MIN_HEADER_BYTES;
        c.max_body_bytes = 1000;
    });
    let cases: [(&[u8], u16); 5] = [
        (b"THIS IS NOT HTTP\r\n\r\n", 400),
        (b"PUT /a HTTP/1.1\r\nContent-Length: x\r\n\r\n", 400),
        (b"PUT /a HTTP/1.1\r\n\r\n", 411),
        (b"PUT /a HTTP/1.1\r\nContent-Length: 1001\r\n\r\n", 413),
        (b"DELETE /a HTTP/1.1\r\n\r\n", 405),
    ];
    for (request, code) in cases {
        let mut client = server.connect();
        client.send(request);
        let response = client.response();
        assert_eq!(response.code, code, "{}", String::from_utf8_lossy(request));
        assert!(!response.body.is_empty());
        assert!(client.is_closed());
    }

    let mut client = server.connect();
    let long = format!("GET / HTTP/1.1\r\nX-Long: {}\r\n\r\n", "a".repeat(10_000));
    client.send(long.as_bytes());
    let response = client.response();
    assert!(response.code == 431 || response.code == 400);
    assert!(client.is_closed());
}

#[test]
fn connection_close_and_expect_continue() {
    let server = TestServer::start();
    let mut client = server.connect();
    client.send(b"PUT /c HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n");
    // The interim answer comes before the body is sent.
    let mut line = String::new();
    client.reader.read_line(&mut line).unwrap();
    assert_eq!(line, "HTTP/1.1 100 Continue\r\n");
    client.reader.read_line(&mut line).unwrap();
    client.send(b"abc");
    assert_eq!(client.response().code, 200);

    // The same for a body large enough to be spliced.
    let large: Vec<u8> = (0..1_000_000).map(|i| (i % 249) as u8).collect();
    client.send(b"PUT /e HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 1000000\r\n\r\n");
    let mut line = String::new();
    client.reader.read_line(&mut line).unwrap();
    assert_eq!(line, "HTTP/1.1 100 Continue\r\n");
    client.reader.read_line(&mut line).unwrap();
    client.send(&large);
    assert_eq!(client.response().code, 200);
    assert!(std::fs::read(server.root().join("e")).unwrap() == large);

    client.send(b"PUT /d HTTP/1.1\r\nConnection: close\r\nContent-Length: 0\r\n\r\n");
    assert_eq!(client.response().code, 200);
    assert!(client.is_closed());
    assert_eq!(std::fs::read(server.root().join("c")).unwrap(), b"abc");
}

#[test]
fn a_client_silent_mid_body_is_dropped_and_leaves_no_file() {
    let server = TestServer::with(|c| c.read_timeout = Duration::from_millis(200));
    let mut client = server.connect();
    client.send(b"PUT /stalled/f HTTP/1.1\r\nContent-Length: 1000\r\n\r\n0123456789");
    let started = Instant::now();
    assert!(client.is_closed());
    assert!(started.elapsed() < Duration::from_secs(10));
    let left: Vec<_> = std::fs::read_dir(server.root().join("stalled"))
        .unwrap()
        .collect();
    assert!(left.is_empty(), "{left:?}");

    // A client that disconnects mid-body leaves nothing either.
    let mut client = server.connect();
    client.send(b"PUT /cut/f HTTP/1.1\r\nContent-Length: 1000\r\n\r\n0123456789");
    client.writer.shutdown(Shutdown::Both).unwrap();
    drop(client);
    wait_until_empty(&server.root().join("cut"));
}

#[test]
fn thousands_of_dropped_connections_do_no_harm() {
    let server = TestServer::start();
    for i in 0..2000 {
        let mut stream = TcpStream::connect(server.server.local_addr()).unwrap();
        if i % 3 == 0 {
            let _ = stream.write_all(b"PUT /half HTTP/1.1\r\nContent-Len");
        }
        // Connections are accepted in order: one answered request means the accept
        // queue is drained, so that the kernel never drops a connection attempt (which
        // the client would retry only after a second).
        if i % 100 == 99 {
            assert_eq!(server.connect_and_get("/__status").code, 200);
        }
    }
    let mut client = server.connect();
    client.send(&put("still-works", b"yes"));
    assert_eq!(client.response().code, 200);
    assert!(!server.root().join("half").exists());
}

#[test]
fn discard_mode_stores_nothing() {
    let server = TestServer::with(|c| c.discard = true);
    let mut client = server.connect();
    client.send(&put("a/b", &[7; 10_000]));
    client.send(&put("a/b", &[7; 10_000]));
    assert_eq!(client.response().code, 200);
    assert_eq!(client.response().code, 200);
    // A discard server stores nothing, not even the root's lock file.
    assert_eq!(std::fs::read_dir(server.root()).unwrap().count(), 0);
}

#[test]
fn shutdown_closes_open_connections_and_returns() {
    let server = TestServer::start();
    let mut idle = server.connect();
    let mut mid_request = server.connect();
    mid_request.send(b"PUT /m HTTP/1.1\r\nContent-Length: 100\r\n\r\nabc");
    // A large body is moved by `splice`: the server waits inside it.
    let mut mid_splice = server.connect();
    mid_splice.send(b"PUT /s HTTP/1.1\r\nContent-Length: 4194304\r\n\r\n");
    std::thread::sleep(Duration::from_millis(100));
    mid_splice.send(&[7u8; 1000]);
    idle.send(&put("i", b""));
    assert_eq!(idle.response().code, 200);
    let TestServer { server, dir } = server;
    let started = Instant::now();
    server.shutdown();
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(idle.is_closed());
    assert!(mid_request.is_closed());
    assert!(mid_splice.is_closed());
    assert!(!dir.path().join("root/m").exists());
    assert!(!dir.path().join("root/s").exists());
}

#[cfg(unix)]
#[test]
fn the_serve_command_runs_advertises_and_stops_on_sigterm() {
    use std::process::{Command, Stdio};
    let dir = tempfile::tempdir().unwrap();
    let registry = tempfile::tempdir().unwrap();
    let registry = registry.path().join("_pyme-http.sqlite");
    let mut child = pyme_stream()
        .args([
            "serve",
            "--port",
            "0",
            "--serverfilter",
            "sigtermtest",
            "--root",
        ])
        .arg(dir.path())
        .arg("--registry")
        .arg(&registry)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    let addr = line
        .trim_end()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_owned();

    let stream = TcpStream::connect(&addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut client = Client {
        writer: stream.try_clone().unwrap(),
        reader: BufReader::new(stream),
    };
    client.send(&put("from-cli.txt", b"hi"));
    assert_eq!(client.response().code, 200);
    assert_eq!(
        std::fs::read(dir.path().join("from-cli.txt")).unwrap(),
        b"hi"
    );

    // Advertised in the local registry under PYME's instance name while it runs.
    let found = pyme_streaming::discovery::registry::read(&registry).unwrap();
    assert!(
        found
            .iter()
            .any(|server| server.name.contains("[sigtermtest]") && server.host_port() == addr),
        "{found:?}"
    );

    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    assert!(client.is_closed());
    // Withdrawn on a clean shutdown.
    let found = pyme_streaming::discovery::registry::read(&registry).unwrap();
    assert!(found.is_empty(), "{found:?}");
}

#[test]
fn racing_writers_of_one_name_get_one_200_and_one_405() {
    let server = TestServer::start();
    let racers: Vec<_> = (0..2u8)
        .map(|racer| {
            let mut client = server.connect();
            std::thread::spawn(move || {
                let mut requests = Vec::new();
                for i in 0..50 {
                    requests.extend(put(&format!("race/{i}"), &[racer; 5000]));
                }
                client.send(&requests);
                (0..50).map(|_| client.response().code).collect::<Vec<_>>()
            })
        })
        .collect();
    let codes: Vec<Vec<u16>> = racers.into_iter().map(|r| r.join().unwrap()).collect();
    for (i, (&first, &second)) in codes[0].iter().zip(&codes[1]).enumerate() {
        let mut pair = [first, second];
        pair.sort();
        assert_eq!(pair, [200, 405], "name {i}");
        let winner = if first == 200 { 0u8 } else { 1 };
        let stored = std::fs::read(server.root().join(format!("race/{i}"))).unwrap();
        assert_eq!(stored, [winner; 5000]);
    }
    assert_eq!(
        std::fs::read_dir(server.root().join("race"))
            .unwrap()
            .count(),
        50
    );
}

/// Bodies of several MiB: stored exactly, pipelined with small ones, and a
/// client that stalls or leaves in the middle of one leaves no file behind.
/// Bodies larger and smaller than the server's read buffer (about 320 KiB) and around
/// multiples of 512 KiB, pipelined back to back with small ones, all land exactly.
#[test]
fn bodies_of_many_sizes_pipelined_are_stored_exactly() {
    let server = TestServer::start();
    const K512: usize = 512 * 1024;
    let sizes = [K512 - 1, K512, K512 + 1, 3 * K512 + 12_345, 7, 300 * 1024];
    let bodies: Vec<Vec<u8>> = sizes
        .iter()
        .enumerate()
        .map(|(n, &size)| (0..size).map(|i| ((i * 31 + n * 17) % 253) as u8).collect())
        .collect();
    let mut client = server.connect();
    let mut requests = Vec::new();
    for (n, body) in bodies.iter().enumerate() {
        requests.extend(put(&format!("pieces/{n}"), body));
    }
    client.send(&requests);
    for _ in &bodies {
        assert_eq!(client.response().code, 200);
    }
    for (n, body) in bodies.iter().enumerate() {
        let stored = std::fs::read(server.root().join(format!("pieces/{n}"))).unwrap();
        assert!(stored == *body, "file {n} of {} bytes differs", body.len());
    }
}

#[test]
fn large_bodies_are_stored_exactly_and_cut_ones_leave_nothing() {
    let server = TestServer::with(|c| c.read_timeout = Duration::from_millis(300));
    let big: Vec<u8> = (0..3 * 1024 * 1024 + 17)
        .map(|i| (i * 7 % 251) as u8)
        .collect();
    let mut client = server.connect();
    let mut requests = put("big/a", &big);
    requests.extend(put("big/small", b"tiny"));
    requests.extend(put("big/b", &big[..2 * 1024 * 1024]));
    requests.extend(put("big/a", &big));
    client.send(&requests);
    let codes: Vec<u16> = (0..4).map(|_| client.response().code).collect();
    assert_eq!(codes, [200, 200, 200, 405]);
    assert!(std::fs::read(server.root().join("big/a")).unwrap() == big);
    assert!(std::fs::read(server.root().join("big/b")).unwrap() == big[..2 * 1024 * 1024]);
    assert_eq!(
        std::fs::read(server.root().join("big/small")).unwrap(),
        b"tiny"
    );

    // Stalls after 1.5 MiB of a 3 MiB body: dropped after the read timeout, nothing left.
    let mut client = server.connect();
    let mut partial = b"PUT /bigstall/f HTTP/1.1\r\nContent-Length: 3145728\r\n\r\n".to_vec();
    partial.extend_from_slice(&big[..1536 * 1024]);
    client.send(&partial);
    assert!(client.is_closed());
    let left: Vec<_> = std::fs::read_dir(server.root().join("bigstall"))
        .unwrap()
        .collect();
    assert!(left.is_empty(), "{left:?}");

    // Leaves after 1.5 MiB: nothing left either.
    let mut client = server.connect();
    let mut partial = b"PUT /bigcut/f HTTP/1.1\r\nContent-Length: 3145728\r\n\r\n".to_vec();
    partial.extend_from_slice(&big[..1536 * 1024]);
    client.send(&partial);
    client.writer.shutdown(Shutdown::Both).unwrap();
    drop(client);
    wait_until_empty(&server.root().join("bigcut"));
    // The server still serves.
    let mut client = server.connect();
    client.send(&put("big/after", b"ok"));
    assert_eq!(client.response().code, 200);
}

/// A store that fails in the middle of a body (here the file size limit, `ulimit -f`,
/// of a `serve` process) answers 500 for that file, leaves no temporary file, and the
/// connection goes on: the rest of the body is read and dropped. Bodies of 256 KiB and
/// more are moved into their file by `splice`, smaller ones are written from the read
/// buffer; both ways are checked.
#[cfg(unix)] // setrlimit(RLIMIT_FSIZE) in the server's process
#[test]
fn a_store_failing_mid_body_is_a_500_and_the_connection_goes_on() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let mut command = pyme_stream();
    command
        .args(["serve", "--advertise", "none", "--port", "0", "--root"])
        .arg(&root)
        .stdout(std::process::Stdio::piped());
    // SAFETY: only async-signal-safe calls between fork and exec. Files may grow to
    // 128 KiB; SIGXFSZ is ignored, as in a server that must survive a full disk.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut command, || {
            let limit = libc::rlimit {
                rlim_cur: 128 * 1024,
                rlim_max: 128 * 1024,
            };
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            if libc::setrlimit(libc::RLIMIT_FSIZE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = KillOnDrop(command.spawn().unwrap());
    let mut line = String::new();
    BufReader::new(child.0.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let address = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap()
        .to_owned();

    let body: Vec<u8> = (0..3 * 1024 * 1024).map(|i| (i * 13 % 251) as u8).collect();
    let fits = &body[..128 * 1024];
    let mut client = Client::connect(&address);
    let mut requests = put("limit/spliced", &body);
    // The first head alone, so that the server has none of that body in its buffer
    // and splices all of it: the failure is met inside `splice`.
    let head_len = requests.len() - body.len();
    requests.extend(put("limit/fits", fits));
    requests.extend(put("limit/written", &body[..200 * 1024]));
    requests.extend(put("limit/small", b"small"));
    client.send(&requests[..head_len]);
    std::thread::sleep(Duration::from_millis(100));
    client.send(&requests[head_len..]);
    let codes: Vec<u16> = (0..4).map(|_| client.response().code).collect();
    drop(child);
    assert_eq!(codes, [500, 200, 500, 200]);
    let mut left: Vec<String> = std::fs::read_dir(root.join("limit"))
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left, ["fits", "small"], "only the stored files are left");
    assert!(std::fs::read(root.join("limit/fits")).unwrap() == fits);
}

/// A child process killed when the test ends, also when it fails.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits (up to 10 s) until `folder` exists and is empty: the server removes the
/// temporary file of a cut body when it notices the client is gone.
fn wait_until_empty(folder: &std::path::Path) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !(folder.is_dir() && std::fs::read_dir(folder).unwrap().count() == 0) {
        assert!(
            Instant::now() < deadline,
            "temporary file left in {folder:?}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A root on a tmpfs: large bodies go into spares, files allocated ahead by a
/// background thread (`src/server/spares.rs`). Each file lands exactly, also one
/// shorter or longer than the spare it took; a body more than twice the spares' size
/// takes none, and spares of its size follow; a taken name is still refused; a cut
/// body leaves nothing; nothing but the stored files is left in the root.
#[cfg(target_os = "linux")] // spares exist on Linux only
#[test]
fn large_files_on_a_tmpfs_root_go_into_spares_exactly() {
    let Some(shm) = tmpfs_folder() else {
        common::skip::skip(
            "large_files_on_a_tmpfs_root_go_into_spares_exactly",
            "/dev/shm is not a tmpfs with 4 KiB pages here, so no spares",
        );
        return;
    };
    let dir = tempfile::tempdir_in(shm).unwrap();
    let root = dir.path().join("root");
    let server = DataServer::start(ServerConfig {
        root: root.clone(),
        read_timeout: Duration::from_millis(300),
        ..ServerConfig::default()
    })
    .unwrap();
    assert!(server.has_spares(), "a tmpfs root has spares");
    let mut client = Client::connect(server.local_addr());
    let body = |n: usize, len: usize| -> Vec<u8> {
        (0..len).map(|i| ((i * 7 + n * 13) % 251) as u8).collect()
    };
    let mut stored: Vec<(String, Vec<u8>)> = Vec::new();
    let mut put_one = |client: &mut Client, name: &str, bytes: Vec<u8>| {
        client.send(&put(name, &bytes));
        assert_eq!(client.response().code, 200, "{name}");
        stored.push((name.to_owned(), bytes));
    };
    let status = |client: &mut Client, key: &str| -> u64 {
        client.send(&get("/__status"));
        json(&client.response().body)[key].as_u64().unwrap()
    };
    // Waits until the thread has both spares ready for the latest size.
    let wait_ready = |client: &mut Client| {
        let deadline = Instant::now() + Duration::from_secs(20);
        while status(client, "spares_ready") < 2 {
            assert!(Instant::now() < deadline, "spares never made");
            std::thread::sleep(Duration::from_millis(5));
        }
    };
    const MIB: usize = 1024 * 1024;
    // The first large body takes none: spares are made once one has been seen.
    put_one(&mut client, "s/first", body(0, 2 * MIB + 5));
    assert_eq!(status(&mut client, "files_stored_in_spares"), 0);
    let mut expect_spare = |client: &mut Client, name: &str, len: usize, takes: bool| {
        wait_ready(client);
        let before = status(client, "files_stored_in_spares");
        put_one(client, name, body(name.len(), len));
        let after = status(client, "files_stored_in_spares");
        assert_eq!(after, before + u64::from(takes), "{name}: a spare taken?");
    };
    expect_spare(&mut client, "s/same", 2 * MIB + 5, true);
    // Shorter than the spare: cut to its length.
    expect_spare(&mut client, "s/shorter", 3 * MIB / 2 + 1, true);
    // Longer than the spare (one of 2 MiB + 5 is the closest): the rest is allocated
    // the usual way.
    expect_spare(&mut client, "s/longer", 5 * MIB / 2, true);
    // More than twice the spares' size: none fits; then spares of its size.
    expect_spare(&mut client, "s/much-longer", 6 * MIB, false);
    expect_spare(&mut client, "s/much-longer-again", 6 * MIB - 3, true);
    // A taken name is refused; the stored file is untouched.
    wait_ready(&mut client);
    client.send(&put("s/same", &body(0, 6 * MIB)));
    assert_eq!(client.response().code, 405);
    // A cut body in a spare leaves nothing.
    wait_ready(&mut client);
    let mut partial = b"PUT /cut/f HTTP/1.1\r\nContent-Length: 6291456\r\n\r\n".to_vec();
    partial.extend_from_slice(&body(1, 3 * MIB));
    let mut cut = Client::connect(server.local_addr());
    cut.send(&partial);
    assert!(cut.is_closed(), "dropped after the read timeout");
    assert!(!root.join("cut/f").exists());

    for (name, bytes) in &stored {
        let path = root.join(name);
        assert!(std::fs::read(&path).unwrap() == *bytes, "{name} differs");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o440, "{name} is read-only");
    }
    server.shutdown();
    let mut names: Vec<String> = files_under(&root)
        .into_iter()
        .map(|p| {
            p.strip_prefix(&root)
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    names.sort();
    let mut expected: Vec<String> = stored.iter().map(|(name, _)| name.clone()).collect();
    expected.sort();
    assert_eq!(names, expected, "only the stored files are left");
}

/// `/dev/shm` when it is a tmpfs with 4 KiB pages only, where the server makes spares.
fn tmpfs_folder() -> Option<&'static Path> {
    let shm = Path::new("/dev/shm");
    pyme_streaming::server::mounts::small_pages_tmpfs(shm).map(|_| shm)
}
