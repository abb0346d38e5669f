//! Hostile round 3 (docs/RELIABILITY.md, "Hostile round 3"): the C API's newer
//! functions called back into from inside the library's own callbacks, and the
//! monitor's reading of hostile status bodies (the other tries are in the files
//! they fit).
//!
//! Each callback (distribution, completion, server state) calls `streamer_server_stats`
//! and `streamer_server_state` with good and bad arguments (an index out of range,
//! NULL, a struct size too small to hold `size`, an older smaller struct), `streamer_stats`,
//! a put, and the calls that would wait for the callback itself (`streamer_flush`,
//! `streamer_close`): each must answer at once, as documented, and nothing may
//! deadlock or crash.

mod common;

use std::ffi::c_void;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicUsize, Ordering};
use std::time::Duration;

use common::TestServer;
use pyme_streaming::ffi::options;
use pyme_streaming::ffi::server_state::streamer_server_state;
use pyme_streaming::ffi::stats::{streamer_server_stats, PymeStreamerServerStats};
use pyme_streaming::ffi::status::PymeStreamerStatus;
use pyme_streaming::ffi::streamer::{
    streamer_close, streamer_flush, streamer_new, streamer_put, streamer_stats, PymeStreamer,
};

const OK: i32 = 0;
const NULL_ARGUMENT: i32 = PymeStreamerStatus::STREAMER_ERR_NULL_ARGUMENT as i32;
const INVALID_ARGUMENT: i32 = PymeStreamerStatus::STREAMER_ERR_INVALID_ARGUMENT as i32;
const IN_CALLBACK: i32 = PymeStreamerStatus::STREAMER_ERR_IN_CALLBACK as i32;

/// What the callbacks saw, shared through `user_data`.
#[derive(Default)]
struct Seen {
    streamer: AtomicPtr<PymeStreamer>,
    /// Calls of each callback whose every check held, and those where one did not
    /// (the first failure is kept).
    distribution_ok: AtomicUsize,
    completion_ok: AtomicUsize,
    state_ok: AtomicUsize,
    failed: std::sync::Mutex<Vec<String>>,
    put_from_distribution: AtomicBool,
    put_from_completion: AtomicBool,
}

impl Seen {
    fn fail(&self, what: String) {
        self.failed.lock().unwrap().push(what);
    }
}

/// The calls every callback makes; `Err` names the first that answered wrongly.
///
/// # Safety
/// `streamer` is a live handle.
unsafe fn reenter(streamer: *mut PymeStreamer) -> Result<(), String> {
    let size = std::mem::size_of::<PymeStreamerServerStats>();
    let mut stats = PymeStreamerServerStats::default();
    let check = |what: &str, got: i32, want: i32| {
        if got == want {
            Ok(())
        } else {
            Err(format!("{what}: {got}, not {want}"))
        }
    };
    // SAFETY: a live handle, and pointers to locals of the sizes given.
    unsafe {
        check(
            "server_stats",
            streamer_server_stats(streamer, 0, &mut stats, size),
            OK,
        )?;
        if stats.size != size as u64 {
            return Err(format!("server_stats wrote size {}", stats.size));
        }
        check(
            "server_stats of index 3 of 3",
            streamer_server_stats(streamer, 3, &mut stats, size),
            INVALID_ARGUMENT,
        )?;
        check(
            "server_stats of index usize::MAX",
            streamer_server_stats(streamer, usize::MAX, &mut stats, size),
            INVALID_ARGUMENT,
        )?;
        check(
            "server_stats into NULL",
            streamer_server_stats(streamer, 0, std::ptr::null_mut(), size),
            NULL_ARGUMENT,
        )?;
        check(
            "server_stats of 7 bytes",
            streamer_server_stats(streamer, 0, &mut stats, 7),
            INVALID_ARGUMENT,
        )?;
        check(
            "server_stats of a NULL streamer",
            streamer_server_stats(std::ptr::null(), 0, &mut stats, size),
            NULL_ARGUMENT,
        )?;
        // An older, smaller struct: two fields written, the caller's memory after
        // them untouched.
        let mut older = [0xAAAA_AAAA_AAAA_AAAAu64; 4];
        check(
            "server_stats of 16 bytes",
            streamer_server_stats(streamer, 1, older.as_mut_ptr().cast(), 16),
            OK,
        )?;
        if older[0] != 16 || older[2] != 0xAAAA_AAAA_AAAA_AAAA || older[3] != older[2] {
            return Err(format!("an older struct was written as {older:x?}"));
        }
        let mut state = -99;
        check(
            "server_state",
            streamer_server_state(streamer, 2, &mut state),
            OK,
        )?;
        check(
            "server_state of index 3",
            streamer_server_state(streamer, 3, &mut state),
            INVALID_ARGUMENT,
        )?;
        check(
            "server_state into NULL",
            streamer_server_state(streamer, 0, std::ptr::null_mut()),
            NULL_ARGUMENT,
        )?;
        let mut all = std::mem::zeroed::<pyme_streaming::ffi::stats::PymeStreamerStats>();
        check(
            "stats",
            streamer_stats(streamer, &mut all, std::mem::size_of_val(&all)),
            OK,
        )?;
        check("flush", streamer_flush(streamer, u32::MAX), IN_CALLBACK)?;
        check("close", streamer_close(streamer), IN_CALLBACK)?;
    }
    Ok(())
}

unsafe extern "C" fn distribution(
    user_data: *mut c_void,
    _n_servers: usize,
    index: i64,
    _name: *const std::ffi::c_char,
) -> usize {
    // SAFETY: `user_data` is the test's `Seen`, alive until the streamer is closed.
    let seen = unsafe { &*(user_data as *const Seen) };
    let streamer = seen.streamer.load(Ordering::SeqCst);
    if !streamer.is_null() {
        // SAFETY: the handle is live while its callbacks run.
        match unsafe { reenter(streamer) } {
            Ok(()) => {
                seen.distribution_ok.fetch_add(1, Ordering::SeqCst);
            }
            Err(what) => seen.fail(format!("distribution: {what}")),
        }
        if !seen.put_from_distribution.swap(true, Ordering::SeqCst) {
            // A put from inside a put's distribution (which calls this again).
            // SAFETY: a live handle; the name and byte outlive the call.
            let status = unsafe {
                streamer_put(
                    streamer,
                    c"nested/from_distribution".as_ptr(),
                    [1u8].as_ptr(),
                    1,
                    -1,
                )
            };
            if status != OK {
                seen.fail(format!("a put from the distribution: {status}"));
            }
        }
    }
    // Servers 0 and 1 are live; 2 has nothing behind its port.
    usize::try_from(index).map_or(0, |i| i % 2)
}

unsafe extern "C" fn completion(
    user_data: *mut c_void,
    _name: *const std::ffi::c_char,
    _server_index: usize,
    status: i32,
    _http_status: i32,
    _bytes: u64,
) {
    // SAFETY: as in `distribution`.
    let seen = unsafe { &*(user_data as *const Seen) };
    let streamer = seen.streamer.load(Ordering::SeqCst);
    if status != OK {
        seen.fail(format!("a file failed: {status}"));
    }
    if streamer.is_null() {
        return;
    }
    // SAFETY: the handle is live while its callbacks run.
    match unsafe { reenter(streamer) } {
        Ok(()) => {
            seen.completion_ok.fetch_add(1, Ordering::SeqCst);
        }
        Err(what) => seen.fail(format!("completion: {what}")),
    }
    if !seen.put_from_completion.swap(true, Ordering::SeqCst) {
        // SAFETY: as above.
        let status = unsafe {
            streamer_put(
                streamer,
                c"nested/from_completion".as_ptr(),
                [2u8].as_ptr(),
                1,
                0,
            )
        };
        if status != OK {
            seen.fail(format!("a put from the completion: {status}"));
        }
    }
}

unsafe extern "C" fn server_state(user_data: *mut c_void, _server_index: usize, _state: i32) {
    // SAFETY: as in `distribution`.
    let seen = unsafe { &*(user_data as *const Seen) };
    let streamer = seen.streamer.load(Ordering::SeqCst);
    // The first report (server 2 down at start) may come before the handle exists.
    if streamer.is_null() {
        return;
    }
    // SAFETY: the handle is live while its callbacks run.
    match unsafe { reenter(streamer) } {
        Ok(()) => {
            seen.state_ok.fetch_add(1, Ordering::SeqCst);
        }
        Err(what) => seen.fail(format!("server state: {what}")),
    }
}

/// Every callback calls back into the library with good and bad arguments; each
/// call answers as documented, both nested puts are acknowledged, nothing waits.
#[test]
fn callbacks_calling_back_with_good_and_bad_arguments_never_wait_or_crash() {
    let mut servers = vec![TestServer::start(), TestServer::start()];
    // A port with nothing behind it: server 2 is down from the start, and its
    // reconnect attempts report states while files flow.
    let nobody = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let nobody_port = nobody.local_addr().unwrap().port();
    drop(nobody);
    let seen: &'static Seen = Box::leak(Box::default());
    let ports: Vec<u16> = servers
        .iter()
        .map(|s| s.server.local_addr().port())
        .chain([nobody_port])
        .collect();
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let (flushed_tx, flushed_rx) = std::sync::mpsc::channel();
    let (stopped_tx, stopped_rx) = std::sync::mpsc::channel::<()>();
    let worker = std::thread::spawn(move || {
        let user_data = seen as *const Seen as *mut c_void;
        let mut opts = std::ptr::null_mut();
        let mut streamer = std::ptr::null_mut();
        // SAFETY: the C API used as its header says, with valid pointers; `seen`
        // lives for ever.
        unsafe {
            assert_eq!(options::streamer_options_new(&mut opts), OK);
            for port in &ports {
                assert_eq!(
                    options::streamer_options_add_server(opts, c"127.0.0.1".as_ptr(), *port),
                    OK
                );
            }
            assert_eq!(
                options::streamer_options_set_distribution(opts, Some(distribution), user_data),
                OK
            );
            assert_eq!(
                options::streamer_options_set_completion(opts, Some(completion), user_data),
                OK
            );
            assert_eq!(
                pyme_streaming::ffi::server_state::streamer_options_set_server_callback(
                    opts,
                    Some(server_state),
                    user_data
                ),
                OK
            );
            assert_eq!(streamer_new(opts, &mut streamer), OK);
            options::streamer_options_free(opts);
            seen.streamer.store(streamer, Ordering::SeqCst);
            for i in 0..20i64 {
                let name = std::ffi::CString::new(format!("files/f{i:02}")).unwrap();
                assert_eq!(
                    streamer_put(streamer, name.as_ptr(), [0u8; 100].as_ptr(), 100, i),
                    OK
                );
            }
            assert_eq!(streamer_flush(streamer, 30_000), OK);
            // Server 1 is stopped: its state changes are reported with the handle
            // published.
            flushed_tx.send(()).unwrap();
            stopped_rx.recv().unwrap();
            let deadline = std::time::Instant::now() + Duration::from_secs(20);
            while seen.state_ok.load(Ordering::SeqCst) == 0 && std::time::Instant::now() < deadline
            {
                std::thread::sleep(Duration::from_millis(10));
            }
            seen.streamer.store(std::ptr::null_mut(), Ordering::SeqCst);
            assert_eq!(streamer_close(streamer), OK);
        }
        let _ = done_tx.send(());
    });
    flushed_rx
        .recv_timeout(Duration::from_secs(60))
        .expect("the streamer deadlocked in a callback that called back");
    let stored: Vec<String> = servers.iter().flat_map(|s| s.files()).collect();
    servers.truncate(1);
    stopped_tx.send(()).unwrap();
    // Measured: well under a second; a deadlock would never send.
    done_rx
        .recv_timeout(Duration::from_secs(60))
        .expect("the streamer deadlocked in a callback that called back");
    worker.join().unwrap();
    let failed = seen.failed.lock().unwrap().clone();
    assert!(failed.is_empty(), "{failed:?}");
    assert_eq!(stored.len(), 22, "{stored:?}");
    assert!(stored.contains(&"nested/from_distribution".to_owned()));
    assert!(stored.contains(&"nested/from_completion".to_owned()));
    // Each callback ran its checks (20 + 1 nested puts chose a server; 22 files
    // ended while the handle was published, at least the first ones).
    assert!(seen.distribution_ok.load(Ordering::SeqCst) >= 21);
    assert!(seen.completion_ok.load(Ordering::SeqCst) >= 1);
    assert!(
        seen.state_ok.load(Ordering::SeqCst) >= 1,
        "no state change was reported"
    );
}

/// The monitor's reading of a hostile `/__status` (at most `fetch::MAX_BODY_BYTES`):
/// JSON nested as deep as the body allows, a million keys, numbers beyond every
/// range, text where numbers go: an error or unknown figures, never a panic, a stack
/// overflow or a wait.
#[test]
fn the_monitor_reads_hostile_status_bodies_without_harm() {
    use pyme_streaming::monitor::{fetch::MAX_BODY_BYTES, reading};
    let half = MAX_BODY_BYTES / 2 - 8;
    let mut bodies: Vec<Vec<u8>> = vec![
        // Nested arrays and objects, as deep as the body allows.
        [b"[".repeat(half), b"]".repeat(half)].concat(),
        [
            b"{\"Disk\":".repeat(half / 8),
            b"1".to_vec(),
            b"}".repeat(half / 8),
        ]
        .concat(),
        [
            b"{\"port\": 1, \"Network\": ".to_vec(),
            b"[".repeat(100_000),
            b"]".repeat(100_000),
            b"}".to_vec(),
        ]
        .concat(),
    ];
    // Many interfaces and cores.
    let mut many = String::from("{\"Port\": 1, \"Uptime\": \"0:00:01\", \"Network\": {");
    for i in 0..20_000 {
        many.push_str(&format!("\"i{i}\": {{\"send\": 1e308, \"recv\": 1e308}},"));
    }
    many.push_str("\"last\": {\"send\": -1, \"recv\": \"x\"}}, \"CPUUsage\": [");
    many.push_str(&"1e308,".repeat(20_000));
    many.push_str("-5]}");
    bodies.push(many.into_bytes());
    bodies.push(
        br#"{"Port": 99999999999999999999, "Uptime": "99999999999999999999 days, 0:00:00",
            "Disk": {"total": -1, "used": 1e400, "free": "lots"}, "MemUsage": [],
            "ComputerName": "<script>alert(1)</script>", "files_stored": 1.5e300,
            "uptime_s": -1e308, "disk_total_bytes": 18446744073709551616}"#
            .to_vec(),
    );
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let reader = std::thread::Builder::new()
        // The poller's threads have the default stack of a spawned thread.
        .stack_size(2 << 20)
        .spawn(move || {
            for body in &bodies {
                assert!(body.len() <= MAX_BODY_BYTES, "{}", body.len());
                let _ = reading::read(body);
            }
            let _ = done_tx.send(());
        })
        .unwrap();
    // Measured: well under a second.
    done_rx
        .recv_timeout(Duration::from_secs(60))
        .expect("reading a hostile status took a minute");
    reader.join().unwrap();
}

/// A memory limit of 0 (one file at a time) and a completion callback that puts: the
/// callback's file still holds its room, so the put finds the budget full; it must not
/// wait there (it waits for room only this thread's return can make), but answer at
/// once, and every file of the run still ends.
#[test]
fn a_put_from_a_callback_with_no_memory_budget_never_waits() {
    use pyme_streaming::{Error, Streamer, StreamerOptions};
    use std::sync::{Arc, Mutex};
    let server = TestServer::start();
    type Seen = Arc<Mutex<Vec<(Duration, Result<(), String>)>>>;
    let seen: Seen = Arc::default();
    let me: Arc<Mutex<Option<Arc<Streamer>>>> = Arc::default();
    let options = {
        let seen = Arc::clone(&seen);
        let me = Arc::clone(&me);
        StreamerOptions::new()
            .server(server.address())
            .memory_limit(0)
            // Far longer than the test's bound: a put that waited would show.
            .put_timeout(Some(Duration::from_secs(120)))
            .on_complete(move |outcome| {
                if !outcome.name.starts_with("first/") {
                    return;
                }
                let Some(streamer) = me.lock().unwrap().clone() else {
                    return;
                };
                let started = std::time::Instant::now();
                let put = streamer
                    .put(&format!("again/{}", &outcome.name[6..]), &[7u8; 10], None)
                    .map_err(|e: Error| e.to_string());
                seen.lock().unwrap().push((started.elapsed(), put));
            })
    };
    let streamer = Arc::new(Streamer::new(options).unwrap());
    *me.lock().unwrap() = Some(Arc::clone(&streamer));
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let worker = {
        let streamer = Arc::clone(&streamer);
        std::thread::spawn(move || {
            for i in 0..5 {
                streamer
                    .put(&format!("first/f{i}"), &[1u8; 100], None)
                    .unwrap();
            }
            let flushed = streamer.flush(Some(Duration::from_secs(60)));
            let _ = done_tx.send(flushed.map_err(|e| e.to_string()));
        })
    };
    let flushed = done_rx
        .recv_timeout(Duration::from_secs(60))
        .expect("a put from a callback waited for room");
    worker.join().unwrap();
    assert_eq!(flushed, Ok(()));
    *me.lock().unwrap() = None;
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 5, "{seen:?}");
    eprintln!("puts from the callbacks: {seen:?}");
    for (took, _) in &seen {
        // Measured: microseconds; a wait would take the 120 s put timeout.
        assert!(*took < Duration::from_secs(10), "{seen:?}");
    }
    match Arc::try_unwrap(streamer) {
        Ok(streamer) => drop(streamer.close()),
        Err(_) => panic!("the streamer is still shared"),
    };
}
