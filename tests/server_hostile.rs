//! The data server against hostile clients and a hostile root: gzip bombs, appends to
//! write-once files, links out of the root.

use std::fs;
use std::time::Instant;

mod server_support;

use server_support::{get, gzip_bomb, put, put_gzip, ServeChild, TestServer};

/// The server's peak resident size must stay far below what the bombs decode to.
const PEAK_RSS_LIMIT_KIB: u64 = 96 * 1024;

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
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
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
