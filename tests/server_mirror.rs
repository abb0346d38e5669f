//! `PUT /<name>?MirrorSource=http://<ip>:<port>/<name>`: a node fetches a file from a
//! peer of its cluster and stores it once, as PYME's `clusterIO.mirror_file` asks;
//! never from an address that is not a peer, never following a redirect.

#[cfg(target_os = "linux")]
mod common;
mod server_support;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::time::Duration;

use pyme_streaming::discovery::registry;
use pyme_streaming::server::MirrorFrom;
use server_support::{get, put, Client, TestServer};

/// A mirror request as PYME's client sends it: the source URL unencoded, no body.
fn mirror(name: &str, source: &str) -> Vec<u8> {
    format!("PUT /{name}?MirrorSource={source} HTTP/1.1\r\nContent-Length: 0\r\n\r\n").into_bytes()
}

/// A node whose peers are those of the registry at `registry`.
fn node(
    registry: &Path,
    adjust: impl FnOnce(&mut pyme_streaming::server::ServerConfig),
) -> TestServer {
    let registry = registry.to_owned();
    TestServer::with(move |config| {
        config.mirror_from = MirrorFrom::Peers {
            registry: Some(registry),
            mdns: false,
        };
        adjust(config);
    })
}

#[test]
fn a_peer_s_file_is_fetched_and_stored_once() {
    let dir = tempfile::tempdir().unwrap();
    let registry_path = dir.path().join("registry.sqlite");
    let source = TestServer::start();
    let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let mut client = source.connect();
    client.send(&put("series/frame00001.pzf", &data));
    assert_eq!(client.response().code, 200);
    let port = source.server.local_addr().port();
    let _entry = registry::register(
        &registry_path,
        "PYMEDataServer [test-cluster]:source - PID:1",
        "127.0.0.1",
        port,
    )
    .unwrap();
    let target = node(&registry_path, |_| {});
    let url = format!("http://127.0.0.1:{port}/series/frame00001.pzf");
    let mut client = target.connect();
    client.send(&mirror("series/frame00001.pzf", &url));
    let response = client.response();
    assert_eq!(
        response.code,
        200,
        "{}",
        String::from_utf8_lossy(&response.body)
    );
    let stored = target.root().join("series/frame00001.pzf");
    assert_eq!(std::fs::read(&stored).unwrap(), data);
    // Write-once, like a PUT.
    client.send(&mirror("series/frame00001.pzf", &url));
    assert_eq!(client.response().code, 405);
    client.send(&put("series/frame00001.pzf", b"other"));
    assert_eq!(client.response().code, 405);
    // The source's 404 is a 502 here, and nothing is stored.
    let missing = format!("http://127.0.0.1:{port}/series/missing.pzf");
    client.send(&mirror("series/missing.pzf", &missing));
    assert_eq!(client.response().code, 502);
    assert!(!target.root().join("series/missing.pzf").exists());
    let listing = target.connect_and_get("/series/");
    assert_eq!(listing.code, 200);
    let names = server_support::json(&listing.body);
    assert_eq!(names.as_object().unwrap().len(), 1, "{names}");
}

#[test]
fn only_peers_of_the_cluster_are_fetched_from() {
    let dir = tempfile::tempdir().unwrap();
    let registry_path = dir.path().join("registry.sqlite");
    let stranger = TestServer::start();
    stranger.connect().send(&put("x", b"x"));
    let stranger_port = stranger.server.local_addr().port();
    // Registered, but for another cluster.
    let _other = registry::register(
        &registry_path,
        "PYMEDataServer [another-cluster]:pc - PID:1",
        "127.0.0.1",
        stranger_port,
    )
    .unwrap();
    let target = node(&registry_path, |_| {});
    let mut client = target.connect();
    let url = format!("http://127.0.0.1:{stranger_port}/x");
    client.send(&mirror("x", &url));
    assert_eq!(client.response().code, 403);
    for bad in [
        "http://localhost:80/x".to_owned(),
        format!("https://127.0.0.1:{stranger_port}/x"),
        format!("http://127.0.0.1:{stranger_port}/../x"),
        format!("http://127.0.0.1:{stranger_port}/"),
    ] {
        client.send(&mirror("x", &bad));
        assert_eq!(client.response().code, 400, "{bad}");
    }
    assert!(!target.root().join("x").exists());
    // A body is refused (and the connection closed).
    let request = format!("PUT /x?MirrorSource={url} HTTP/1.1\r\nContent-Length: 1\r\n\r\nx");
    client.send(request.as_bytes());
    assert_eq!(client.response().code, 400);
    // With --mirror-from any the same source is fetched from.
    let open = TestServer::with(|config| config.mirror_from = MirrorFrom::Any);
    let mut client = open.connect();
    client.send(&mirror("x", &url));
    assert_eq!(client.response().code, 200);
    let closed = TestServer::with(|config| config.mirror_from = MirrorFrom::Nowhere);
    let mut client = closed.connect();
    client.send(&mirror("x", &url));
    assert_eq!(client.response().code, 403);
}

/// A fake source on loopback answering one connection with `answer` then closing it
/// (None: read the request and say nothing until the test ends).
fn fake_source(
    answer: Option<&'static [u8]>,
) -> (
    u16,
    std::thread::JoinHandle<()>,
    std::sync::mpsc::Sender<()>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let thread = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let mut request = [0u8; 4096];
        let _ = stream.read(&mut request);
        if let Some(answer) = answer {
            let _ = stream.write_all(answer);
            return;
        }
        let _ = done_rx.recv_timeout(Duration::from_secs(30));
    });
    (port, thread, done_tx)
}

#[test]
fn redirects_silence_oversize_and_cut_bodies_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    for (answer, code) in [
        (
            Some(&b"HTTP/1.1 301 Moved Permanently\r\nLocation: http://127.0.0.1:1/x\r\nContent-Length: 0\r\n\r\n"[..]),
            502,
        ),
        (Some(&b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc"[..]), 502),
        (Some(&b"HTTP/1.1 200 OK\r\nContent-Length: 2000\r\n\r\n"[..]), 413),
        (Some(&b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"[..]), 502),
        (None, 504),
    ] {
        let (port, thread, done) = fake_source(answer);
        let registry_path = dir.path().join(format!("r{port}.sqlite"));
        let _entry = registry::register(
            &registry_path,
            "PYMEDataServer [test-cluster]:fake - PID:1",
            "127.0.0.1",
            port,
        )
        .unwrap();
        let target = node(&registry_path, |config| {
            config.max_body_bytes = 1000;
            config.read_timeout = Duration::from_millis(300);
        });
        let mut client = Client::connect(target.server.local_addr());
        client.send(&mirror("f", &format!("http://127.0.0.1:{port}/f")));
        let response = client.response();
        assert_eq!(response.code, code, "{answer:?}: {}", String::from_utf8_lossy(&response.body));
        assert!(!target.root().join("f").exists());
        let _ = done.send(());
        thread.join().unwrap();
        // The connection goes on.
        client.send(&get("/__status"));
        assert_eq!(client.response().code, 200);
    }
}

/// A fake source on loopback that answers one connection with `head`, then drips
/// `drip` a byte every 50 ms, for ever (until the test drops the sender, or the
/// node hangs up).
fn dripping_source(
    head: &'static [u8],
    drip: &'static [u8],
) -> (
    u16,
    std::thread::JoinHandle<()>,
    std::sync::mpsc::Sender<()>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
    let thread = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let mut request = [0u8; 4096];
        let _ = stream.read(&mut request);
        if stream.write_all(head).is_err() {
            return;
        }
        for byte in drip.iter().cycle() {
            match stop_rx.recv_timeout(Duration::from_millis(50)) {
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                _ => return,
            }
            if stream.write_all(&[*byte]).is_err() {
                return;
            }
        }
    });
    (port, thread, stop_tx)
}

/// Hostile round 3: a source that drips its answer (a byte every 50 ms, never
/// silent for the 300 ms read timeout), in the head or in the body, is given up
/// (504) once it sends less than 64 KiB a second over a read timeout: before, each byte reset
/// the timeout and the node's connection waited for the whole drip (the body:
/// 900 bytes, 45 s; the head: for ever), a connection and a thread per mirror
/// request held by any peer.
#[test]
fn a_source_dripping_its_answer_is_given_up() {
    let dir = tempfile::tempdir().unwrap();
    for (head, drip) in [
        (
            &b"HTTP/1.1 200 OK\r\nContent-Length: 900\r\n\r\n"[..],
            &b"x"[..],
        ),
        (&b"HTTP/1.1 200 OK\r\n"[..], &b"X-Drip: abcdefgh\r\n"[..]),
    ] {
        let (port, thread, stop) = dripping_source(head, drip);
        let registry_path = dir.path().join(format!("r{port}.sqlite"));
        let _entry = registry::register(
            &registry_path,
            "PYMEDataServer [test-cluster]:drip - PID:1",
            "127.0.0.1",
            port,
        )
        .unwrap();
        let target = node(&registry_path, |config| {
            config.max_body_bytes = 1000;
            config.read_timeout = Duration::from_millis(300);
        });
        let mut client = Client::connect(target.server.local_addr());
        let started = std::time::Instant::now();
        client.send(&mirror("f", &format!("http://127.0.0.1:{port}/f")));
        // Client::connect reads with a 20 s timeout: the drip of the body took 45 s.
        let response = client.response();
        assert_eq!(
            response.code,
            504,
            "{}",
            String::from_utf8_lossy(&response.body)
        );
        // Measured: 0.3 s (one read timeout).
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{:?}",
            started.elapsed()
        );
        assert!(!target.root().join("f").exists());
        drop(stop);
        thread.join().unwrap();
        client.send(&get("/__status"));
        assert_eq!(client.response().code, 200);
    }
}

/// A peer heard only on mDNS becomes a source once the background browse hears it;
/// a server of another cluster heard there does not. mDNS is sent only inside a
/// network namespace made here whose only interface is lo (this test runs its
/// `#[ignore]`d body there).
#[cfg(target_os = "linux")]
#[test]
fn a_peer_heard_on_mdns_is_fetched_from() {
    let test = "a_peer_heard_on_mdns_is_fetched_from";
    // SAFETY: a plain system call without arguments.
    if unsafe { libc::geteuid() } != 0 {
        common::skip::skip(test, "not root (a network namespace needs CAP_NET_ADMIN)");
        return;
    }
    if !common::skip::require_tool(test, "ip", &["-V"]) {
        return;
    }
    let namespace = format!("pyme-mirror-{}", std::process::id());
    let ip = |args: &[&str]| {
        std::process::Command::new("ip")
            .args(args)
            .status()
            .is_ok_and(|s| s.success())
    };
    assert!(ip(&["netns", "add", &namespace]));
    struct Delete(String);
    impl Drop for Delete {
        fn drop(&mut self) {
            let _ = std::process::Command::new("ip")
                .args(["netns", "delete", &self.0])
                .status();
        }
    }
    let _delete = Delete(namespace.clone());
    assert!(ip(&[
        "netns", "exec", &namespace, "ip", "link", "set", "lo", "up"
    ]));
    assert!(ip(&[
        "netns",
        "exec",
        &namespace,
        "ip",
        "link",
        "set",
        "lo",
        "multicast",
        "on"
    ]));
    let output = std::process::Command::new("ip")
        .args(["netns", "exec", &namespace])
        .arg(std::env::current_exe().unwrap())
        .args([
            "netns_mdns_peer",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("PYME_IN_NETNS", "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stdout.contains("1 passed"),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[cfg(target_os = "linux")]
#[test]
#[ignore = "run by a_peer_heard_on_mdns_is_fetched_from inside its network namespace"]
fn netns_mdns_peer() {
    use pyme_streaming::discovery::MdnsAdvertisement;
    let interfaces: Vec<String> = std::fs::read_dir("/sys/class/net")
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        std::env::var("PYME_IN_NETNS").as_deref(),
        Ok("1"),
        "mDNS only inside the test's namespace"
    );
    assert_eq!(
        interfaces,
        ["lo"],
        "refusing to send multicast outside a test namespace"
    );
    let source = TestServer::start();
    let stranger = TestServer::start();
    for server in [&source, &stranger] {
        let mut client = server.connect();
        client.send(&put("heard.bin", b"heard on mDNS"));
        assert_eq!(client.response().code, 200);
    }
    let lo = std::net::IpAddr::from([127, 0, 0, 1]);
    let port = source.server.local_addr().port();
    let stranger_port = stranger.server.local_addr().port();
    let _advertised =
        MdnsAdvertisement::start("PYMEDataServer [mdns-cluster]:a - PID:1", lo, port).unwrap();
    let _other =
        MdnsAdvertisement::start("PYMEDataServer [elsewhere]:b - PID:2", lo, stranger_port)
            .unwrap();
    let target = TestServer::with(|config| {
        config.serverfilter = "mdns-cluster".into();
        config.mirror_from = MirrorFrom::Peers {
            registry: None,
            mdns: true,
        };
    });
    let mut client = target.connect();
    // Waits for the event it needs: the background browse hearing the source.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let code = loop {
        client.send(&mirror(
            "heard.bin",
            &format!("http://127.0.0.1:{port}/heard.bin"),
        ));
        let code = client.response().code;
        if code != 403 || std::time::Instant::now() > deadline {
            break code;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(code, 200);
    assert_eq!(
        std::fs::read(target.root().join("heard.bin")).unwrap(),
        b"heard on mDNS"
    );
    // Another cluster's server, heard or not, is no peer.
    client.send(&mirror(
        "other.bin",
        &format!("http://127.0.0.1:{stranger_port}/heard.bin"),
    ));
    assert_eq!(client.response().code, 403);
}
