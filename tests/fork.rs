//! fork(2) with a streamer and a stream open (issue 22, item 5): in the child
//! every call on an inherited handle is refused at once with
//! `Error::Forked`, and closing or dropping it frees memory only (before, a
//! put there was accepted for a thread that does not exist, `close` hung for
//! ever and `close_timeout` ran out its limit); the child can make its own
//! streamer; the parent streams on, every file stored.
//!
//! Linux only (fork, waitpid). Run: `cargo test --test fork`.
#![cfg(target_os = "linux")]

mod common;

use std::io::{Read, Write};
use std::panic::AssertUnwindSafe;
use std::time::{Duration, Instant};

use common::TestServer;
use pyme_streaming::{Bytes, Error, Stream, Streamer, StreamerOptions};

/// How long the child may take before it is killed and the test fails (a
/// close that waits for the parent's threads never ends).
const CHILD_LIMIT: Duration = Duration::from_secs(60);

/// What the child checks; a panic becomes its exit status 1.
fn in_the_child(streamer: &Streamer, doomed: Streamer, stream: Stream, server: &str) {
    assert!(streamer.is_forked());
    assert_eq!(streamer.put("child/a", b"x", None), Err(Error::Forked));
    assert_eq!(
        streamer.put_bytes("child/b", Bytes::from_static(b"x"), None),
        Err(Error::Forked)
    );
    assert_eq!(streamer.put_stream(0, "child/c", b"x"), Err(Error::Forked));
    assert_eq!(
        streamer.flush(Some(Duration::from_secs(30))),
        Err(Error::Forked)
    );
    assert_eq!(streamer.n_servers(), 1);
    assert_eq!(stream.put("child/d", b"x"), Err(Error::Forked));
    assert_eq!(stream.flush(None), Err(Error::Forked));
    // Before: it ran out its 30 s and said CloseTimeout.
    let closed = doomed.close_timeout(Duration::from_secs(30));
    assert_eq!(closed.err().map(|e| e.error), Some(Error::Forked));
    assert_eq!(stream.finalize("child/end"), Err(Error::Forked));

    // A streamer of its own works.
    let own = Streamer::new(StreamerOptions::new().server(server)).unwrap();
    own.put("child/own", b"made in the child", None).unwrap();
    assert!(own.close().all_acknowledged());
}

/// Runs `child` in a forked child (which then leaves with `_exit`: 0, or 1
/// when it panicked) and returns its pid.
fn fork_child(child: impl FnOnce()) -> libc::pid_t {
    // SAFETY: the child runs the checks and leaves with _exit, never
    // returning into the test harness.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid != 0 {
        return pid;
    }
    let code = match std::panic::catch_unwind(AssertUnwindSafe(child)) {
        Ok(()) => 0,
        Err(panic) => {
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            let _ = std::io::stderr().write_all(format!("child: {message}\n").as_bytes());
            1
        }
    };
    // SAFETY: ends the child without running the parent's exit handlers.
    unsafe { libc::_exit(code) }
}

/// Waits for the child `pid` (killing it after [`CHILD_LIMIT`]) and returns
/// its exit status.
fn wait_child(pid: libc::pid_t) -> i32 {
    let deadline = Instant::now() + CHILD_LIMIT;
    let mut status = 0;
    loop {
        // SAFETY: waits for our own child.
        let done = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if done == pid {
            break;
        }
        if Instant::now() > deadline {
            // SAFETY: our own child.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                libc::waitpid(pid, &mut status, 0);
            }
            panic!("the child did not end within {CHILD_LIMIT:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(libc::WIFEXITED(status), "child status {status}");
    libc::WEXITSTATUS(status)
}

#[test]
fn a_forked_child_is_refused_at_once_and_the_parent_streams_on() {
    let server = TestServer::start();
    let spill = tempfile::tempdir().unwrap();
    let options = StreamerOptions::new()
        .server(server.address())
        .spill_dir(spill.path());
    let streamer = Streamer::new(options).unwrap();
    let doomed = Streamer::new(StreamerOptions::new().server(server.address())).unwrap();
    let stream = Stream::connect(&server.address(), &StreamerOptions::new()).unwrap();
    for i in 0..50 {
        streamer
            .put(&format!("parent/before{i:02}"), &[7u8; 5000], Some(i))
            .unwrap();
    }
    stream.put("stream/before", b"s").unwrap();

    // Forked while files are queued and in flight. The child consumes its
    // copies of `doomed` and `stream`; in the parent they stay here.
    let address = server.address();
    let mut parts = Some((doomed, stream));
    let child = fork_child(|| {
        let (doomed, stream) = parts.take().unwrap();
        in_the_child(&streamer, doomed, stream, &address);
    });
    assert_eq!(
        wait_child(child),
        0,
        "the child's checks failed (its message is above)"
    );
    let (doomed, stream) = parts.take().unwrap();
    assert!(!doomed.is_forked() && !stream.is_forked());
    assert!(doomed.close().all_acknowledged());
    assert!(stream.close().all_acknowledged());

    // The parent is not affected: its folder lock, threads and sockets are whole.
    assert!(!streamer.is_forked());
    for i in 0..50 {
        streamer
            .put(&format!("parent/after{i:02}"), &[8u8; 5000], Some(i))
            .unwrap();
    }
    let stats = streamer.close();
    assert!(stats.all_acknowledged(), "{stats:?}");
    assert_eq!(stats.files_acknowledged, 100);
    let files = server.files();
    assert_eq!(
        files.iter().filter(|f| f.starts_with("parent/")).count(),
        100
    );
    assert!(files.contains(&"stream/before".to_owned()));
    assert!(files.contains(&"child/own".to_owned()));
    assert!(!files
        .iter()
        .any(|f| f.starts_with("child/") && f != "child/own"));
}

#[test]
fn a_forked_child_does_not_keep_the_spill_folder_locked() {
    let server = TestServer::start();
    let spill = tempfile::tempdir().unwrap();
    let options = StreamerOptions::new()
        .server(server.address())
        .spill_dir(spill.path());
    let streamer = Streamer::new(options.clone()).unwrap();
    let (parent_end, child_end) = std::os::unix::net::UnixStream::pair().unwrap();
    let child = fork_child(|| {
        // The parent holds the folder: the child may not take it.
        assert!(matches!(
            Streamer::new(options.clone()),
            Err(Error::SpillBusy { .. })
        ));
        // Tell the parent, then wait until it has closed its streamer: the
        // folder is then free, though this child still lives.
        (&child_end).write_all(b"1").unwrap();
        let mut byte = [0u8; 1];
        (&child_end).read_exact(&mut byte).unwrap();
        let own = Streamer::new(options.clone()).expect("the folder is free");
        own.put("child/own", b"c", None).unwrap();
        assert!(own.close().all_acknowledged());
    });
    let mut byte = [0u8; 1];
    (&parent_end).read_exact(&mut byte).unwrap();
    assert!(streamer.close().all_acknowledged());
    (&parent_end).write_all(b"1").unwrap();
    assert_eq!(
        wait_child(child),
        0,
        "the child's checks failed (its message is above)"
    );
    assert_eq!(server.files(), ["child/own"]);
}

/// Children forked by the storm below, in order: each waits (`pause`),
/// holding whatever it inherited, until it is killed. Dropping this kills
/// and reaps them all, also when the test fails.
#[derive(Default)]
struct Storm {
    children: Vec<libc::pid_t>,
    reaped: usize,
}

impl Storm {
    /// Kills and reaps the children before the `until`-th.
    fn reap_before(&mut self, until: usize) {
        while self.reaped < until.min(self.children.len()) {
            let pid = self.children[self.reaped];
            let mut status = 0;
            // SAFETY: kills and waits for our own child.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                libc::waitpid(pid, &mut status, 0);
            }
            self.reaped += 1;
        }
    }
}

impl Drop for Storm {
    fn drop(&mut self) {
        self.reap_before(usize::MAX);
    }
}

/// A fork storm beside `Streamer::new` and `close` with a spill folder: a
/// child forked inside the folder lock's set-up (between the open, the lock
/// and the registration of the descriptor for the child handler), or just
/// before its release (before the child handler closed the child's copy),
/// kept a copy of the locked open file description, and with it the parent's
/// lock after the parent closed its descriptor: the next `Streamer::new` on
/// the folder was `SpillBusy`. The children of the last two rounds live on
/// through each check. Then the other way round: every child is killed while
/// the parent holds the folder, and it stays held (a child never releases the
/// parent's lock).
#[test]
fn a_fork_storm_beside_spill_folder_set_up_never_leaves_the_lock_to_a_child() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Mutex;

    const ROUNDS: usize = 40;
    let server = TestServer::start();
    let spill = tempfile::tempdir().unwrap();
    let options = StreamerOptions::new()
        .server(server.address())
        .spill_dir(spill.path());
    let storm = Mutex::new(Storm::default());
    let done = AtomicBool::new(false);
    std::thread::scope(|scope| {
        scope.spawn(|| {
            while !done.load(Ordering::SeqCst) {
                // SAFETY: the child only calls pause() until it is killed,
                // and never returns into the harness.
                let pid = unsafe { libc::fork() };
                if pid == 0 {
                    loop {
                        unsafe { libc::pause() };
                    }
                }
                assert!(pid > 0, "fork failed");
                storm.lock().unwrap().children.push(pid);
            }
        });
        let _stop = StopOnDrop(&done);
        let mut marks = vec![0];
        for round in 0..ROUNDS {
            let streamer = Streamer::new(options.clone()).unwrap_or_else(|e| {
                panic!("round {round}: a forked child kept the released lock: {e}")
            });
            assert!(streamer.close().all_acknowledged());
            let mut storm = storm.lock().unwrap();
            marks.push(storm.children.len());
            let before_last_two = marks[marks.len().saturating_sub(3)];
            storm.reap_before(before_last_two);
        }
    });
    let mut storm = storm.into_inner().unwrap();
    eprintln!(
        "{} forks beside {ROUNDS} set-ups and releases of the folder",
        storm.children.len()
    );
    // Held by the parent while every child dies: still held.
    let held = Streamer::new(options.clone()).unwrap();
    storm.reap_before(usize::MAX);
    assert!(matches!(
        Streamer::new(options.clone()),
        Err(Error::SpillBusy { .. })
    ));
    assert!(held.close().all_acknowledged());
    assert!(Streamer::new(options).unwrap().close().all_acknowledged());
}

/// Stops the forking thread however the rounds end.
struct StopOnDrop<'a>(&'a std::sync::atomic::AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}
