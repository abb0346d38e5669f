//! The data server against hostile clients and a hostile root: gzip bombs, appends to
//! write-once files, links out of the root.
// The memory test is Linux-only; elsewhere its helpers go unused.
#![cfg_attr(not(target_os = "linux"), allow(unused_imports, dead_code))]

use std::fs;
use std::io::Write;
use std::time::Instant;

mod server_support;

use server_support::{get, gzip_bomb, put, put_gzip, ServeChild, TestServer};

/// The server's peak resident size must stay far below what the bombs decode to.
const PEAK_RSS_LIMIT_KIB: u64 = 96 * 1024;

/// Linux: the server's peak memory is read from `/proc/<pid>/status`.
#[cfg(target_os = "linux")]
#[test]
fn gzip_bombs_are_413_and_the_server_memory_stays_bounded() {
    // The limit holds the bombs as sent, not what they decode to.
    let server = ServeChild::start(&["--max-body-bytes", "16000000"]);
    let before = server.status_kib("VmHWM");
    let mut client = server.connect();
    // 10 GiB of zeros in a body of about 10 MiB: a plain PUT and an aggregate.
    let bomb = gzip_bomb(10 * 1024);
    assert!(bomb.len() < 12 << 20 && bomb.len() > 1_000_000);
    let started = Instant::now();
    client.send(&put_gzip("bomb.bin", &bomb));
    let response = client.response();
    assert_eq!(
        response.code,
        413,
        "{}",
        String::from_utf8_lossy(&response.body)
    );
    client.send(&put_gzip("__aggregate_txt/log.txt", &bomb));
    assert_eq!(client.response().code, 413);
    let elapsed = started.elapsed();
    // The connection goes on, and a gzip body within the limit is stored.
    client.send(&put_gzip("ok.bin", &gzip_bomb(1)));
    assert_eq!(client.response().code, 200);
    client.send(&put_gzip("__aggregate_txt/log2.txt", &gzip_bomb(15)));
    assert_eq!(client.response().code, 200);

    let after = server.status_kib("VmHWM");
    eprintln!("server VmHWM {before} KiB before, {after} KiB after; bombs answered in {elapsed:?}");
    assert!(after < PEAK_RSS_LIMIT_KIB, "peak RSS {after} KiB");
    let root = server.root();
    assert!(!root.join("bomb.bin").exists());
    assert!(!root.join("log.txt").exists());
    assert_eq!(fs::metadata(root.join("ok.bin")).unwrap().len(), 1 << 20);
    assert_eq!(fs::metadata(root.join("log2.txt")).unwrap().len(), 15 << 20);
    let leftovers: Vec<_> = fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.to_string_lossy().starts_with('.'))
        // The root's lock and the journal of the appended log are kept by design.
        .filter(|n| n != ".pyme-lock" && n != ".pyme-len-log2.txt")
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

/// Hostile round 3: HDF5 operations (`__aggregate_h5r`, `__aggregate_h5`) read their
/// body into memory. With the default `--max-body-bytes` (4 GiB), a gzip bomb of 2 MiB
/// decoding to 2 GiB was held whole (then answered 501 without the `hdf5` feature, or
/// parsed with it): a handful of them exhausts any node. Bodies held in memory stop
/// at `MAX_IN_MEMORY_BODY_BYTES` (256 MiB): 413, and the peak memory stays far below
/// what the bomb decodes to.
#[cfg(target_os = "linux")]
#[test]
fn hdf5_operations_hold_at_most_256_mib_of_a_gzip_bomb() {
    let server = ServeChild::start(&[]);
    let mut client = server.connect();
    let bomb = gzip_bomb(2048);
    for name in [
        "__aggregate_h5r/r.h5r/FitResults",
        "__aggregate_h5/s.h5/frame00001.pzf",
    ] {
        client.send(&put_gzip(name, &bomb));
        let response = client.response();
        assert_eq!(
            response.code,
            413,
            "{name}: {}",
            String::from_utf8_lossy(&response.body)
        );
    }
    // A raw body over the bound is refused before it is read.
    let mut raw = server.connect();
    raw.send(
        format!(
            "PUT /__aggregate_h5r/r.h5r/T HTTP/1.1\r\nContent-Length: {}\r\n\r\n",
            300u64 << 20
        )
        .as_bytes(),
    );
    assert_eq!(raw.response().code, 413);
    let peak = server.status_kib("VmHWM");
    eprintln!("server VmHWM {peak} KiB after 2 GiB bombs to HDF5 operations");
    // Measured: about 270 MiB (the bound, one buffer); 2 GiB and more before.
    assert!(peak < 640 * 1024, "peak RSS {peak} KiB");
}

#[test]
fn a_body_decoding_to_just_over_the_limit_is_413() {
    let server = TestServer::with(|c| c.max_body_bytes = (1 << 20) - 1);
    let mut client = server.connect();
    client.send(&put_gzip("over", &gzip_bomb(1)));
    assert_eq!(client.response().code, 413);
    assert!(!server.root().join("over").exists());
}

#[test]
fn aggregate_txt_never_appends_to_a_write_once_file() {
    let server = TestServer::start();
    let mut client = server.connect();
    client.send(&put("run/metadata.json", b"FIRST"));
    assert_eq!(client.response().code, 200);
    client.send(&put("__aggregate_txt/run/metadata.json", b"MORE"));
    let refused = client.response();
    assert_eq!(
        refused.code,
        405,
        "{}",
        String::from_utf8_lossy(&refused.body)
    );
    assert_eq!(
        fs::read(server.root().join("run/metadata.json")).unwrap(),
        b"FIRST"
    );
    // Files made by aggregation take appends, and stay write-once to a plain PUT.
    client.send(&put("__aggregate_txt/run/log.txt", b"a"));
    assert_eq!(client.response().code, 200);
    client.send(&put("__aggregate_txt/run/log.txt", b"b"));
    assert_eq!(client.response().code, 200);
    client.send(&put("run/log.txt", b"replaced"));
    assert_eq!(client.response().code, 405);
    assert_eq!(fs::read(server.root().join("run/log.txt")).unwrap(), b"ab");
    // A folder is not appended to.
    client.send(&put("__aggregate_txt/run", b"x"));
    assert!((400..500).contains(&client.response().code));
}

#[cfg(unix)]
#[test]
fn links_inside_the_root_are_never_followed_out_of_it() {
    use std::os::unix::fs::symlink;
    let server = TestServer::start();
    let root = server.root().to_owned();
    let outside = server.dir.path().join("outside");
    fs::create_dir(&outside).unwrap();
    fs::write(outside.join("secret.txt"), b"secret").unwrap();
    fs::create_dir(root.join("sub")).unwrap();
    symlink(&outside, root.join("out")).unwrap();
    symlink(outside.join("secret.txt"), root.join("passwd")).unwrap();
    symlink(outside.join("newdir"), root.join("dangling")).unwrap();
    symlink(root.join("sub"), root.join("inlink")).unwrap();

    let mut client = server.connect();
    let mut code = |request: Vec<u8>| {
        client.send(&request);
        client.response().code
    };
    assert_eq!(code(put("out/x", b"escape")), 403);
    assert_eq!(code(put("out/deeper/x", b"escape")), 403);
    assert_eq!(code(put("dangling/x", b"escape")), 403);
    assert_eq!(code(put("__aggregate_txt/out/log", b"escape")), 403);
    assert_eq!(code(put("__aggregate_txt/passwd", b"escape")), 403);
    assert_eq!(code(put("out/", b"")), 403);
    assert_eq!(code(put("passwd", b"x")), 405);
    assert_eq!(code(get("/out/secret.txt")), 403);
    assert_eq!(code(get("/passwd")), 403);
    assert_eq!(code(get("/out/")), 404);
    // Links that stay inside the root work.
    assert_eq!(code(put("inlink/y", b"inside")), 200);
    assert_eq!(code(get("/inlink/y")), 200);
    assert_eq!(fs::read(root.join("sub/y")).unwrap(), b"inside");

    let names: Vec<_> = fs::read_dir(&outside)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["secret.txt"], "something was written outside");
    assert_eq!(fs::read(outside.join("secret.txt")).unwrap(), b"secret");

    let listing = server.connect_and_get("/");
    let listing = server_support::json(&listing.body);
    let keys: Vec<_> = listing.as_object().unwrap().keys().cloned().collect();
    assert!(keys.contains(&"inlink/".to_owned()), "{keys:?}");
    assert!(keys.contains(&"sub/".to_owned()), "{keys:?}");
    for hidden in ["out/", "out", "passwd", "dangling"] {
        assert!(
            !keys.contains(&hidden.to_owned()),
            "{hidden} listed: {keys:?}"
        );
    }
}

/// Bytes no HTTP client sends: each gets a 4xx and a close, only for its own
/// connection, and what came before it on the connection is answered.
#[test]
fn garbage_after_good_requests_is_answered_in_order_then_closed() {
    let server = TestServer::start();
    let cases: &[(&[u8], u16)] = &[
        (b"\x00\x01\x02\xff\xfe\r\n\r\n", 400),
        (b"PUT /a\x00b HTTP/1.1\r\nContent-Length: 1\r\n\r\nx", 400),
        (b"PUT /a%00b HTTP/1.1\r\nContent-Length: 1\r\n\r\nx", 400),
        (
            b"PUT /\xc3\xa9\xff HTTP/1.1\r\nContent-Length: 1\r\n\r\nx",
            400,
        ),
        (
            b"PUT /x HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n",
            400,
        ),
        (b"PUT /x HTTP/1.1\r\nContent-Length: 1, 1\r\n\r\nx", 400),
        (b"PUT /x HTTP/1.1\r\nContent-Length: +1\r\n\r\nx", 400),
        (
            b"PUT /x HTTP/1.1\r\nContent-Length: 1\r\n folded: yes\r\n\r\nx",
            400,
        ),
        (b"PUT /x HTTP/1.1\r\nNo colon here\r\n\r\n", 400),
        (
            b"PUT http://evil/x HTTP/1.1\r\nContent-Length: 1\r\n\r\nx",
            400,
        ),
        (b"PUT * HTTP/1.1\r\nContent-Length: 1\r\n\r\nx", 400),
        (
            b"PUT /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 1\r\n\r\nx",
            411,
        ),
        (b"PUT /x HTTP/9.9\r\nContent-Length: 1\r\n\r\nx", 400),
        (b"put /x HTTP/1.1\r\nContent-Length: 1\r\n\r\nx", 405),
    ];
    for (garbage, code) in cases {
        let mut client = server.connect();
        let mut request = put("good/first", b"1");
        request.extend_from_slice(&put("good/second", b"2"));
        request.extend_from_slice(garbage);
        request.extend_from_slice(&put("good/never", b"3"));
        client.send(&request);
        assert_eq!(client.response().code, 200);
        assert_eq!(client.response().code, 200);
        let response = client.response();
        assert_eq!(
            response.code,
            *code,
            "{:?}",
            String::from_utf8_lossy(garbage)
        );
        assert!(client.is_closed(), "{:?}", String::from_utf8_lossy(garbage));
        assert!(!server.root().join("good/never").exists());
        std::fs::remove_dir_all(server.root().join("good")).unwrap();
    }
}

#[test]
fn a_half_closed_client_gets_every_answer() {
    let server = TestServer::start();
    let mut client = server.connect();
    let mut requests = Vec::new();
    for i in 0..50 {
        requests.extend_from_slice(&put(&format!("half/{i}"), b"x"));
    }
    client.send(&requests);
    client.writer.shutdown(std::net::Shutdown::Write).unwrap();
    for i in 0..50 {
        assert_eq!(client.response().code, 200, "answer {i}");
    }
    assert!(client.is_closed());
    // Cut inside a body: nothing stored, no temporary file left.
    let mut cut = server.connect();
    cut.send(b"PUT /half/cut HTTP/1.1\r\nContent-Length: 100\r\n\r\nonly some");
    cut.writer.shutdown(std::net::Shutdown::Write).unwrap();
    assert!(cut.is_closed());
    let names: Vec<_> = fs::read_dir(server.root().join("half"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 50, "{names:?}");
}

#[test]
fn a_header_flood_is_refused_without_reading_it_all() {
    let server = TestServer::start();
    let mut client = server.connect();
    let mut flood = b"PUT /x HTTP/1.1\r\n".to_vec();
    for i in 0..100 {
        flood.extend_from_slice(format!("X-{i}: y\r\n").as_bytes());
    }
    flood.extend_from_slice(b"\r\n");
    client.send(&flood);
    assert_eq!(client.response().code, 431);
    assert!(client.is_closed());
    // One endless header line: refused at the head limit, not read for ever.
    let mut endless = server.connect();
    let started = Instant::now();
    endless.send(b"PUT /x HTTP/1.1\r\nX-Endless: ");
    let chunk = vec![b'a'; 64 * 1024];
    let mut sent = 0;
    while sent < 64 << 20 {
        if endless.writer.write_all(&chunk).is_err() {
            break;
        }
        sent += chunk.len();
    }
    assert!(sent < 64 << 20, "the server read 64 MiB of one header");
    assert_eq!(endless.response().code, 431);
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
}
