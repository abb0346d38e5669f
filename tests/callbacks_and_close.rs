//! The Rust side of two promises of the C ABI (issue 15, items 4, 6, 7):
//!
//! - Re-entrancy: from inside a completion callback, `stats` and `put` work
//!   (a put never waits there: a full queue refuses at once), while `flush`,
//!   `close_timeout` and `finalize` refuse with `Error::InCallback` instead of
//!   waiting for the callback itself.
//! - A bounded close: `close_timeout` returns within its limit plus
//!   `CLOSE_MARGIN`, gives up what is still pending (`Error::CloseTimeout`),
//!   starts no callback after the limit, and leaves a thread stuck in user code
//!   to end on its own (`threads_detached`) instead of waiting for it.
//!
//! Every wait in these tests has a deadline, so a deadlock fails the test
//! instead of hanging it. Run: `cargo test --test callbacks_and_close`.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Action, FakeServer, TestServer};
use pyme_streaming::streamer::CLOSE_MARGIN;
use pyme_streaming::{Bytes, Error, Stream, Streamer, StreamerOptions};

/// How much later than promised a bounded close may return on a loaded
/// machine (the promise itself is limit + CLOSE_MARGIN).
const SLACK: Duration = Duration::from_millis(1500);

/// Runs `test` on its own thread and fails if it does not end in time: a
/// deadlock becomes a failure, not a hung test run.
fn within<T: Send + 'static>(limit: Duration, test: impl FnOnce() -> T + Send + 'static) -> T {
    let (done, result) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = done.send(test());
    });
    result
        .recv_timeout(limit)
        .unwrap_or_else(|_| panic!("did not finish within {limit:?}: a deadlock"))
}

/// What a callback saw when it called back into the library.
#[derive(Debug, Default)]
struct SeenInCallback {
    flush: Option<Result<(), Error>>,
    stats_queued: Option<u64>,
    first_put: Option<Result<(), Error>>,
    second_put: Option<Result<(), Error>>,
}

#[test]
fn a_completion_callback_may_read_stats_and_put_but_flush_refuses_at_once() {
    within(Duration::from_secs(60), || {
        let server = TestServer::start();
        let streamer: Arc<Mutex<Option<Arc<Streamer>>>> = Arc::default();
        let seen = Arc::new(Mutex::new(SeenInCallback::default()));
        let options = {
            let (streamer, seen) = (Arc::clone(&streamer), Arc::clone(&seen));
            StreamerOptions::new()
                .server(server.address())
                // One file at a time: the second put from the callback finds
                // the queue full, and waiting there would wait for itself.
                .queue_limits(1, 1 << 20)
                .on_complete(move |outcome| {
                    if outcome.name != "reentrant/first" {
                        return;
                    }
                    let Some(streamer) = streamer.lock().unwrap().clone() else {
                        return;
                    };
                    let mut seen = seen.lock().unwrap();
                    seen.flush = Some(streamer.flush(Some(Duration::from_secs(5))));
                    seen.stats_queued = Some(streamer.stats().files_queued);
                    seen.first_put = Some(streamer.put("reentrant/second", b"2", Some(1)));
                    seen.second_put = Some(streamer.put("reentrant/third", b"3", Some(2)));
                })
        };
        let created = Arc::new(Streamer::new(options).unwrap());
        *streamer.lock().unwrap() = Some(Arc::clone(&created));
        created.put("reentrant/first", b"1", Some(0)).unwrap();
        created.flush(Some(Duration::from_secs(20))).unwrap();
        let seen = std::mem::take(&mut *seen.lock().unwrap());
        assert!(
            matches!(seen.flush, Some(Err(Error::InCallback { .. }))),
            "{seen:?}"
        );
        assert_eq!(seen.stats_queued, Some(1), "{seen:?}");
        assert_eq!(seen.first_put, Some(Ok(())), "{seen:?}");
        assert!(
            matches!(seen.second_put, Some(Err(Error::QueueFull { .. }))),
            "a full queue refuses at once inside a callback: {seen:?}"
        );
        *streamer.lock().unwrap() = None;
        let stats = Arc::try_unwrap(created).ok().unwrap().close();
        assert_eq!(stats.files_queued, 2);
        assert_eq!(stats.files_acknowledged, 2);
        assert_eq!(stats.dropped, 1);
        assert_eq!(server.files(), ["reentrant/first", "reentrant/second"]);
    });
}

#[test]
fn closing_or_finalizing_from_a_callback_refuses_and_the_stream_still_ends() {
    within(Duration::from_secs(60), || {
        let server = TestServer::start();
        let holder: Arc<Mutex<Option<Stream>>> = Arc::default();
        let refused = Arc::new(Mutex::new(Vec::new()));
        let options = {
            let (holder, refused) = (Arc::clone(&holder), Arc::clone(&refused));
            StreamerOptions::new().on_complete(move |_| {
                // Only the first callback finds the stream: it owns it now.
                if let Some(stream) = holder.lock().unwrap().take() {
                    refused
                        .lock()
                        .unwrap()
                        .push(stream.finalize("end").unwrap_err());
                }
            })
        };
        let stream = Stream::connect(&server.address(), &options).unwrap();
        *holder.lock().unwrap() = Some(stream);
        // Put through the holder: the callback of this file takes the stream
        // and finalizes it from inside (refused; it then closes in the background).
        let put = holder
            .lock()
            .unwrap()
            .as_ref()
            .map(|s| s.put("closing/a", b"a"));
        assert_eq!(put, Some(Ok(())));
        let deadline = Instant::now() + Duration::from_secs(20);
        while refused.lock().unwrap().is_empty() {
            assert!(Instant::now() < deadline, "the callback never ran");
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(holder.lock().unwrap().is_none());
        let refused = refused.lock().unwrap();
        assert!(
            matches!(refused.as_slice(), [Error::InCallback { call: "finalize" }]),
            "{refused:?}"
        );
        assert_eq!(server.files(), ["closing/a"]);
    });
}

#[test]
fn a_bounded_close_gives_up_files_a_stalled_server_never_answers() {
    let server = FakeServer::start(|_, _| Action::Silent);
    let completions = Arc::new(AtomicUsize::new(0));
    let released = Arc::new(AtomicUsize::new(0));
    let options = {
        let completions = Arc::clone(&completions);
        StreamerOptions::new()
            .server(server.address.clone())
            .response_timeout(Duration::from_secs(60))
            .on_complete(move |_| {
                completions.fetch_add(1, Ordering::SeqCst);
            })
    };
    let streamer = Streamer::new(options).unwrap();
    for i in 0..5 {
        let owner = ReleaseCounter(Arc::clone(&released), vec![i as u8; 1000]);
        streamer
            .put_bytes(&format!("stalled/f{i}"), Bytes::from_owner(owner), Some(i))
            .unwrap();
    }
    let limit = Duration::from_millis(300);
    let started = Instant::now();
    let closed = within(Duration::from_secs(20), move || {
        streamer.close_timeout(limit)
    });
    let elapsed = started.elapsed();
    eprintln!("close_timeout({limit:?}) against a stalled server returned after {elapsed:?}");
    assert!(
        elapsed < limit + CLOSE_MARGIN + SLACK,
        "returned after {elapsed:?}"
    );
    assert!(elapsed >= limit, "gave up before the limit: {elapsed:?}");
    let failed = closed.unwrap_err();
    assert_eq!(failed.error, Error::CloseTimeout { limit_ms: 300 });
    assert!(!failed.threads_detached, "nothing was stuck in user code");
    assert_eq!(failed.stats.files_queued, 5);
    assert_eq!(failed.stats.files_failed, 5);
    assert_eq!(failed.stats.queue_files + failed.stats.in_flight_files, 0);
    assert_eq!(
        completions.load(Ordering::SeqCst),
        0,
        "no callback after the limit"
    );
    assert_eq!(
        released.load(Ordering::SeqCst),
        5,
        "every file's bytes given back"
    );
}

#[test]
fn a_bounded_close_ends_before_its_limit_when_everything_is_answered() {
    let server = TestServer::start();
    let streamer = Streamer::new(StreamerOptions::new().server(server.address())).unwrap();
    streamer.put("quick/a", b"a", None).unwrap();
    let stats = streamer.close_timeout(Duration::from_secs(30)).unwrap();
    assert_eq!(stats.files_acknowledged, 1);
    let stream = Stream::connect(&server.address(), &StreamerOptions::new()).unwrap();
    stream.put("quick/b", b"b").unwrap();
    assert_eq!(
        stream
            .close_timeout(Duration::from_secs(30))
            .unwrap()
            .files_acknowledged,
        1
    );
}

/// The closing thread holds a lock that the completion callback takes, and a
/// library thread is already inside that callback: an unbounded close would
/// wait for ever. The bounded one leaves that thread behind and returns.
#[test]
fn a_bounded_close_does_not_wait_for_a_callback_blocked_on_the_closers_lock() {
    let server = FakeServer::start(|path, _| {
        if path.ends_with("answered") {
            Action::Answer(200)
        } else {
            Action::Silent
        }
    });
    let lock = Arc::new(Mutex::new(()));
    let entered = Arc::new(AtomicUsize::new(0));
    let finished = Arc::new(AtomicUsize::new(0));
    let options = {
        let (lock, entered, finished) = (
            Arc::clone(&lock),
            Arc::clone(&entered),
            Arc::clone(&finished),
        );
        StreamerOptions::new()
            .server(server.address.clone())
            .response_timeout(Duration::from_secs(60))
            .on_complete(move |_| {
                entered.fetch_add(1, Ordering::SeqCst);
                let _held = lock.lock().unwrap();
                finished.fetch_add(1, Ordering::SeqCst);
            })
    };
    let held = lock.lock().unwrap();
    let streamer = Streamer::new(options).unwrap();
    streamer.put("locked/answered", b"a", None).unwrap();
    streamer.put("locked/never", b"b", None).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while entered.load(Ordering::SeqCst) == 0 {
        assert!(Instant::now() < deadline, "the callback never started");
        std::thread::sleep(Duration::from_millis(1));
    }
    let limit = Duration::from_millis(200);
    let started = Instant::now();
    let failed = streamer.close_timeout(limit).unwrap_err();
    let elapsed = started.elapsed();
    eprintln!("close_timeout({limit:?}) with a callback stuck on the closer's lock returned after {elapsed:?}");
    assert!(
        elapsed < limit + CLOSE_MARGIN + SLACK,
        "returned after {elapsed:?}"
    );
    assert!(failed.threads_detached, "{failed:?}");
    assert_eq!(failed.stats.files_queued, 2);
    drop(held);
    // The callback that was running finishes on its detached thread; the
    // given-up file gets none (no callback starts after the limit).
    let deadline = Instant::now() + Duration::from_secs(20);
    while finished.load(Ordering::SeqCst) == 0 {
        assert!(Instant::now() < deadline, "the stuck callback never ended");
        std::thread::sleep(Duration::from_millis(1));
    }
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(entered.load(Ordering::SeqCst), 1);
}

/// Counts the release of a file's bytes (its owner dropped by the library).
struct ReleaseCounter(Arc<AtomicUsize>, Vec<u8>);

impl AsRef<[u8]> for ReleaseCounter {
    fn as_ref(&self) -> &[u8] {
        &self.1
    }
}

impl Drop for ReleaseCounter {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// What the C callback of the finalize race sees (shared through `user_data`).
struct RaceState {
    stream: std::sync::atomic::AtomicPtr<pyme_streaming::ffi::stream::PymeStream>,
    status_in_callback: std::sync::atomic::AtomicI32,
}

unsafe extern "C" fn put_from_callback(
    user_data: *mut std::ffi::c_void,
    name: *const std::ffi::c_char,
    _server_index: usize,
    _status: i32,
    _http_status: i32,
    _bytes: u64,
) {
    // SAFETY: `user_data` is the test's RaceState, alive until the stream is
    // closed; `name` is valid during the call.
    let (state, name) = unsafe {
        (
            &*(user_data as *const RaceState),
            std::ffi::CStr::from_ptr(name),
        )
    };
    if !name.to_bytes().ends_with(b"race/f1") {
        return;
    }
    let stream = state.stream.load(Ordering::SeqCst);
    // SAFETY: a live stream handle; the name and byte are valid for the call.
    let status = unsafe {
        pyme_streaming::ffi::stream::stream_put(
            stream,
            c"race/from_callback".as_ptr(),
            [1u8].as_ptr(),
            1,
        )
    };
    state.status_in_callback.store(status, Ordering::SeqCst);
}

/// A put from a completion callback while `stream_finalize` waits for the
/// handle's lock, which a producer holds while it waits for room that only
/// the answers behind that callback can make: the put must not wait for the
/// lock (it answers "closed"), or nothing ever moves again.
#[test]
fn a_put_from_a_callback_does_not_wait_for_a_finalize_that_waits_for_it() {
    use pyme_streaming::ffi::{options, stream};
    let gate = Arc::new((Mutex::new(false), std::sync::Condvar::new()));
    let server = {
        let gate = Arc::clone(&gate);
        FakeServer::start(move |path, _| {
            if path.ends_with("race/f1") {
                let (open, opened) = &*gate;
                let mut open = open.lock().unwrap();
                while !*open {
                    open = opened.wait(open).unwrap();
                }
            }
            Action::Answer(200)
        })
    };
    let (host, port) = server.address.rsplit_once(':').unwrap();
    let host = std::ffi::CString::new(host).unwrap();
    let port: u16 = port.parse().unwrap();
    let state: &'static RaceState = Box::leak(Box::new(RaceState {
        stream: Default::default(),
        status_in_callback: std::sync::atomic::AtomicI32::new(1),
    }));
    let handle = within(Duration::from_secs(60), move || {
        let mut opts = std::ptr::null_mut();
        let mut handle = std::ptr::null_mut();
        // SAFETY: the C API used as its header says, with valid pointers.
        unsafe {
            assert_eq!(options::streamer_options_new(&mut opts), 0);
            assert_eq!(options::streamer_options_set_queue_limits(opts, 10, 100), 0);
            let user_data = state as *const RaceState as *mut std::ffi::c_void;
            assert_eq!(
                options::streamer_options_set_completion(opts, Some(put_from_callback), user_data),
                0
            );
            assert_eq!(
                stream::stream_new(host.as_ptr(), port, opts, &mut handle),
                0
            );
            options::streamer_options_free(opts);
            state.stream.store(handle, Ordering::SeqCst);
            let half = [0u8; 50];
            assert_eq!(
                stream::stream_put(handle, c"race/f1".as_ptr(), half.as_ptr(), 50),
                0
            );
            assert_eq!(
                stream::stream_put(handle, c"race/f2".as_ptr(), half.as_ptr(), 50),
                0
            );
        }
        handle as usize
    });
    // A producer that waits for room (100 bytes are held) with the read lock.
    let producer = std::thread::Builder::new()
        .name("race-producer".into())
        .spawn(move || {
            let big = [0u8; 60];
            // SAFETY: the handle stays open until both threads are joined.
            unsafe { stream::stream_put(handle as *mut _, c"race/f3".as_ptr(), big.as_ptr(), 60) }
        })
        .unwrap();
    common::blocked::wait_until_blocked("race-producer");
    // A finalize that waits for the producer's lock.
    let finalizer = std::thread::Builder::new()
        .name("race-finalizer".into())
        .spawn(move || {
            // SAFETY: as above.
            unsafe { stream::stream_finalize(handle as *mut _, c"race/end".as_ptr()) }
        })
        .unwrap();
    common::blocked::wait_until_blocked("race-finalizer");
    // Now f1 is answered: its callback puts while the finalize waits.
    *gate.0.lock().unwrap() = true;
    gate.1.notify_all();
    let (produced, finalized) = within(Duration::from_secs(60), move || {
        (producer.join().unwrap(), finalizer.join().unwrap())
    });
    assert_eq!(produced, 0, "the producer's file was queued");
    assert_eq!(finalized, 0, "every file acknowledged");
    let in_callback = state.status_in_callback.load(Ordering::SeqCst);
    assert!(
        in_callback == pyme_streaming::ffi::status::PymeStreamerStatus::STREAMER_ERR_CLOSED as i32,
        "the put from the callback found the stream being finalized: {in_callback}"
    );
    // SAFETY: the handle is open and no other call runs.
    assert_eq!(unsafe { stream::stream_close(handle as *mut _) }, 0);
}

/// With a spill folder, what a bounded close gives up is kept on disk (for a
/// later streamer), not lost.
#[test]
fn a_bounded_close_keeps_what_it_gives_up_in_the_spill_folder() {
    let server = FakeServer::start(|_, _| Action::Silent);
    let spill = tempfile::tempdir().unwrap();
    let streamer = Streamer::new(
        StreamerOptions::new()
            .server(server.address.clone())
            .response_timeout(Duration::from_secs(60))
            .spill_dir(spill.path()),
    )
    .unwrap();
    for i in 0..3 {
        streamer
            .put(&format!("kept/f{i}"), &[i as u8; 100], Some(i))
            .unwrap();
    }
    let started = Instant::now();
    let failed = streamer
        .close_timeout(Duration::from_millis(200))
        .unwrap_err();
    assert!(started.elapsed() < Duration::from_millis(200) + CLOSE_MARGIN + SLACK);
    assert_eq!(failed.error, Error::CloseTimeout { limit_ms: 200 });
    assert_eq!(failed.stats.files_failed, 3);
    assert_eq!(failed.stats.spilled, 3, "{:?}", failed.stats);
    let mut kept = 0;
    let mut folders = vec![spill.path().to_owned()];
    while let Some(folder) = folders.pop() {
        for entry in std::fs::read_dir(folder).unwrap().flatten() {
            if entry.path().is_dir() {
                folders.push(entry.path());
            } else {
                kept += 1;
            }
        }
    }
    assert!(
        kept >= 3,
        "the three files are in the spill folder ({kept} files)"
    );
}
