//! The data server under slow clients: a head that never completes, connections
//! that stay silent, and 1100 connections dripping a header byte at a time while
//! working clients keep storing files.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

mod server_support;

use server_support::{get, json, put, Client, TestServer};

/// Waits until the server closes `stream`, and returns how long that took and what
/// it sent before closing.
fn wait_for_close(stream: &mut TcpStream) -> (Duration, Vec<u8>) {
    let started = Instant::now();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => received.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => break,
            Err(e) => panic!("not closed within 30 s: {e}"),
        }
    }
    (started.elapsed(), received)
}

#[test]
fn a_head_that_drips_gets_408_at_its_deadline() {
    let deadline = Duration::from_millis(600);
    let server = TestServer::with(|c| c.head_timeout = deadline);
    let mut dripper = TcpStream::connect(server.server.local_addr()).unwrap();
    let started = Instant::now();
    dripper.write_all(b"PUT /slow HTTP/1.1\r\n").unwrap();
    // A byte every 100 ms: the connection is never silent, the head never complete.
    let mut clone = dripper.try_clone().unwrap();
    let drip = thread::spawn(move || {
        for _ in 0..100 {
            if clone.write_all(b"X").is_err() {
                return;
            }
            thread::sleep(Duration::from_millis(100));
        }
    });
    let (_, answer) = wait_for_close(&mut dripper);
    let elapsed = started.elapsed();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408 "), "{answer}");
    assert!(elapsed >= deadline, "closed after {elapsed:?}");
    assert!(elapsed < deadline + Duration::from_secs(5), "{elapsed:?}");
    drip.join().unwrap();
    assert!(!server.root().join("slow").exists());
}

#[test]
fn a_head_arriving_in_pieces_within_its_deadline_is_served() {
    let server = TestServer::with(|c| c.head_timeout = Duration::from_secs(20));
    let mut client = server.connect();
    for piece in [
        &b"PUT /pieces HT"[..],
        b"TP/1.1\r\nContent-Le",
        b"ngth: 2\r\n\r\nok",
    ] {
        client.send(piece);
        thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(client.response().code, 200);
}

#[test]
fn an_idle_connection_is_closed_after_the_idle_timeout_and_not_before() {
    let idle = Duration::from_millis(800);
    let server = TestServer::with(|c| {
        c.idle_timeout = idle;
        c.head_timeout = Duration::from_millis(100);
    });
    // Never sent anything: idle, not a head (the short head deadline does not apply).
    // Timed from before the connection, so that the server's count cannot start first.
    let connecting = Instant::now();
    let mut silent = TcpStream::connect(server.server.local_addr()).unwrap();
    let (_, sent) = wait_for_close(&mut silent);
    let elapsed = connecting.elapsed();
    assert!(sent.is_empty());
    assert!(elapsed >= idle - Duration::from_millis(50), "{elapsed:?}");
    assert!(elapsed < idle + Duration::from_secs(5), "{elapsed:?}");
    // Between requests, too; a request in time keeps the connection.
    let mut client = server.connect();
    client.send(&put("a", b"1"));
    assert_eq!(client.response().code, 200);
    thread::sleep(idle / 2);
    client.send(&put("b", b"2"));
    assert_eq!(client.response().code, 200);
    let started = Instant::now();
    assert!(client.is_closed());
    assert!(started.elapsed() >= idle / 2, "{:?}", started.elapsed());
}

/// Connections that each send the start of a head, then one byte per round, and
/// replace the connections the server closes, as a slowloris attack does.
struct Attack {
    stop: Arc<AtomicBool>,
    thread: thread::JoinHandle<usize>,
}

impl Attack {
    fn start(address: SocketAddr, connections: usize, round: Duration) -> (Attack, usize) {
        let open = move |sockets: &mut Vec<TcpStream>| {
            let Ok(mut socket) = TcpStream::connect(address) else {
                return;
            };
            if socket
                .write_all(b"PUT /slowloris HTTP/1.1\r\nX-Drip: ")
                .is_ok()
            {
                sockets.push(socket);
            }
        };
        let mut sockets = Vec::with_capacity(connections);
        for _ in 0..connections {
            open(&mut sockets);
        }
        let opened = sockets.len();
        let stop = Arc::new(AtomicBool::new(false));
        let stop_attack = Arc::clone(&stop);
        let thread = thread::Builder::new()
            .name("slowloris".into())
            .spawn(move || {
                let mut reconnects = 0;
                while !stop_attack.load(Ordering::SeqCst) {
                    sockets.retain_mut(|socket| socket.write_all(b"x").is_ok());
                    while sockets.len() < connections {
                        open(&mut sockets);
                        reconnects += 1;
                    }
                    thread::sleep(round);
                }
                reconnects
            })
            .unwrap();
        (Attack { stop, thread }, opened)
    }

    fn stop(self) -> usize {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.join().unwrap()
    }
}

/// 1100 connections against the default limit of 1024, dripping a byte a second,
/// with a head deadline longer than the test: only the connection policy protects
/// the working clients here, and every one of their files must be stored.
/// Raises this process's open-file limit to what 1100 connections need on both ends
/// (a fresh machine's soft limit is often 1024; the hard one is higher).
#[cfg(unix)]
fn allow_open_files(wanted: u64) {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain system calls on a local struct.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit), 0);
        if limit.rlim_cur < wanted as libc::rlim_t {
            limit.rlim_cur = limit.rlim_max.min(wanted as libc::rlim_t);
            assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &limit), 0);
        }
    }
    assert!(
        limit.rlim_cur >= wanted as libc::rlim_t,
        "this test needs {wanted} open files; the hard limit is {}",
        limit.rlim_max
    );
}

#[test]
fn working_clients_keep_storing_files_while_1100_connections_drip_their_heads() {
    #[cfg(unix)]
    allow_open_files(3000);
    let server = TestServer::with(|c| c.head_timeout = Duration::from_secs(120));
    let address = server.server.local_addr();
    let mut persistent = server.connect();
    persistent.send(&put("persistent/0", b"p"));
    assert_eq!(persistent.response().code, 200);

    let (attack, opened) = Attack::start(address, 1100, Duration::from_secs(1));
    assert_eq!(opened, 1100, "the attack could not open its connections");
    let attack_began = Instant::now();
    let mut stored = 0;
    let mut i = 0;
    while attack_began.elapsed() < Duration::from_secs(4) {
        i += 1;
        // A new connection per file: it must find room.
        let mut fresh = Client::connect(address);
        fresh.send(&put(&format!("fresh/{i}"), b"f"));
        let response = fresh.response();
        assert_eq!(response.code, 200, "file {i}: {response:?}");
        // And the connection that was open before the attack keeps working.
        persistent.send(&put(&format!("persistent/{i}"), b"p"));
        assert_eq!(persistent.response().code, 200, "persistent file {i}");
        stored += 2;
        thread::sleep(Duration::from_millis(100));
    }
    let mut status_client = server.connect();
    status_client.send(&get("/__status"));
    let status = json(&status_client.response().body);
    let reconnects = attack.stop();
    eprintln!(
        "stored {stored} files during the attack; evicted {}, attack reconnects {reconnects}",
        status["connections_evicted"]
    );
    assert!(stored >= 20, "{stored}");
    assert!(status["connections_evicted"].as_u64().unwrap() >= 76);
    assert!(status["connections_open"].as_u64().unwrap() <= 1024 + 64);
}

/// Connections that hold a place inside a request (a body dripping a byte at a time,
/// answers never read) are stalled, not working: a new client takes the place of
/// one of them once it has moved nothing for a second.
#[test]
fn stalled_bodies_and_unread_answers_do_not_lock_working_clients_out() {
    let server = TestServer::with(|c| c.max_connections = 8);
    let address = server.server.local_addr();
    let mut setup = server.connect();
    setup.send(&put("big.bin", &vec![7u8; 4 << 20]));
    assert_eq!(setup.response().code, 200);
    drop(setup);

    let mut attackers = Vec::new();
    for _ in 0..4 {
        let mut body_dripper = TcpStream::connect(address).unwrap();
        body_dripper
            .write_all(b"PUT /dripped HTTP/1.1\r\nContent-Length: 100000000\r\n\r\nx")
            .unwrap();
        attackers.push(body_dripper);
        let mut non_reader = TcpStream::connect(address).unwrap();
        let gets: Vec<u8> = (0..40).flat_map(|_| get("/big.bin")).collect();
        non_reader.write_all(&gets).unwrap();
        attackers.push(non_reader);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let stop_drip = Arc::clone(&stop);
    let drippers: Vec<TcpStream> = attackers
        .iter()
        .step_by(2)
        .map(|s| s.try_clone().unwrap())
        .collect();
    let drip = thread::spawn(move || {
        while !stop_drip.load(Ordering::SeqCst) {
            for mut socket in &drippers {
                let _ = socket.write_all(b"x");
            }
            thread::sleep(Duration::from_millis(200));
        }
    });
    // Past the one second of no progress after which a connection counts as stalled.
    thread::sleep(Duration::from_secs(3));
    for i in 0..6 {
        let mut client = Client::connect(address);
        client.send(&put(&format!("working/{i}"), b"w"));
        let response = client.response();
        assert_eq!(response.code, 200, "file {i}: {response:?}");
    }
    stop.store(true, Ordering::SeqCst);
    drip.join().unwrap();
    assert!(!server.root().join("dripped").exists());
}

/// The idle timeout closes our own client's connection between files: the client
/// reconnects and nothing fails.
#[test]
fn our_client_carries_on_after_the_server_closes_its_idle_connection() {
    use pyme_streaming::{Streamer, StreamerOptions};
    let idle = Duration::from_millis(300);
    let server = TestServer::with(|c| c.idle_timeout = idle);
    let options = StreamerOptions::new().servers(vec![server.server.local_addr().to_string()]);
    let streamer = Streamer::new(options).unwrap();
    streamer.put("idle/first", b"1", None).unwrap();
    streamer.flush(Some(Duration::from_secs(20))).unwrap();
    // Well past the idle timeout: the server has closed the connection.
    thread::sleep(idle * 4);
    streamer.put("idle/second", b"2", None).unwrap();
    let stats = streamer.close();
    assert_eq!(stats.files_acknowledged, 2, "{stats:?}");
    assert_eq!(stats.files_failed, 0, "{stats:?}");
    assert!(server.root().join("idle/second").is_file());
}

/// Without a head deadline, a head that stops coming is still bounded: by the read
/// timeout of silence.
#[test]
fn without_a_head_deadline_a_silent_half_head_ends_at_the_read_timeout() {
    let silence = Duration::from_millis(500);
    let server = TestServer::with(|c| {
        c.head_timeout = Duration::ZERO;
        c.read_timeout = silence;
    });
    let mut client = TcpStream::connect(server.server.local_addr()).unwrap();
    // Timed from before the write, so that the server's count cannot start first.
    let writing = Instant::now();
    client.write_all(b"PUT /half HTTP/1.1\r\nContent-").unwrap();
    let (_, answer) = wait_for_close(&mut client);
    let elapsed = writing.elapsed();
    assert!(String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 408 "));
    assert!(
        elapsed >= silence - Duration::from_millis(50),
        "{elapsed:?}"
    );
    assert!(elapsed < silence + Duration::from_secs(5), "{elapsed:?}");
}
