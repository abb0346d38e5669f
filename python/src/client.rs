//! `Streamer` and `Stream` for Python: PYME's classes, backed by the library's
//! `Streamer` and `Stream`.
//!
//! Every call that can wait (a `put` on a full queue, `flush`, `close`) runs
//! with the GIL released, and takes the client's lock only after releasing
//! it: the library's threads take the GIL to call Python (outcome callbacks,
//! a `dir_manager`), so waiting for anything while holding the GIL could
//! deadlock. Outcomes are recorded without the GIL (the list of failures).
//!
//! This module may not call the library's non-public API.

use std::cell::{Cell, RefCell};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock, Weak};
use std::time::{Duration, Instant};

use pyme_streaming::{Error, Outcome, OutcomeResult, Stats, StatsProbe, StreamerOptions};
use pyo3::exceptions::{PyRuntimeError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyString, PyTuple};

use crate::buffer::{bytes_of, ReleaseQueue};
use crate::policies::{type_name, Chooser, Transform};
use crate::to_py_err;

/// The library object behind a Python `Streamer` or `Stream`.
enum Client {
    Many(pyme_streaming::Streamer),
    One(pyme_streaming::Stream),
}

impl Client {
    fn put(&self, name: &str, data: bytes::Bytes, index: Option<i64>) -> Result<(), Error> {
        match self {
            Client::Many(streamer) => streamer.put_bytes(name, data, index),
            Client::One(stream) => stream.put_bytes(name, data),
        }
    }

    fn put_stream(&self, stream: usize, name: &str, data: bytes::Bytes) -> Result<(), Error> {
        match self {
            Client::Many(streamer) => streamer.put_stream_bytes(stream, name, data),
            Client::One(one) if stream == 0 => one.put_bytes(name, data),
            Client::One(_) => Err(Error::NoSuchStream {
                index: stream,
                n_servers: 1,
            }),
        }
    }

    fn flush(&self, timeout: Option<Duration>) -> Result<(), Error> {
        match self {
            Client::Many(streamer) => streamer.flush(timeout),
            Client::One(stream) => stream.flush(timeout),
        }
    }

    fn stats_probe(&self) -> StatsProbe {
        match self {
            Client::Many(streamer) => streamer.stats_probe(),
            Client::One(stream) => stream.stats_probe(),
        }
    }

    fn close(self) -> Stats {
        match self {
            Client::Many(streamer) => streamer.close(),
            Client::One(stream) => stream.close(),
        }
    }
}

/// A file that failed, as recorded by the outcome callback (no GIL there).
#[derive(Clone)]
struct Failure {
    name: String,
    server: usize,
    bytes: u64,
    http_status: Option<u16>,
    error: String,
}

/// What a Python `Streamer` or `Stream` holds; shared with the close-all list.
struct Core {
    client: RwLock<Option<Client>>,
    releases: Arc<ReleaseQueue>,
    releaser: Mutex<Option<std::thread::JoinHandle<()>>>,
    failures: Arc<Mutex<Vec<Failure>>>,
    final_stats: Mutex<Option<Stats>>,
    /// The statistics without the client: `stats` while another thread (or
    /// the callback's own) closes.
    probe: StatsProbe,
    transform: Transform,
    /// The fork generation it was made in (see `pyme_streaming::fork`): in a
    /// forked child every call raises `ForkedError` at once, and neither the
    /// close nor the finaliser touches the parent's threads.
    born: u64,
}

/// How long a wait runs without the GIL before signals are checked (Ctrl-C).
const SIGNAL_SLICE: Duration = Duration::from_millis(100);

thread_local! {
    /// Set while this (library) thread runs a Python outcome callback: a call
    /// that waits for outcomes from there would wait for itself.
    static IN_CALLBACK: Cell<bool> = const { Cell::new(false) };
    /// Set while this thread runs Python's signal handlers from inside a
    /// `put` that waits for room ([`signal_raised`]): that put holds the
    /// client, so a handler's close would wait for itself.
    static IN_SIGNAL_CHECK: Cell<bool> = const { Cell::new(false) };
    /// The exception a signal handler raised while this thread's `put` waited
    /// for room (see [`signal_raised`]), for that `put` to raise.
    static SIGNAL_ERROR: RefCell<Option<PyErr>> = const { RefCell::new(None) };
}

/// Python's main thread, the only one whose waits run signal handlers (as in
/// Python); set when the module is imported there.
static MAIN_THREAD: OnceLock<std::thread::ThreadId> = OnceLock::new();

/// Set by `close_all` at interpreter exit: from then on no wait takes the GIL
/// to run signal handlers.
static EXITING: AtomicBool = AtomicBool::new(false);

/// Records the importing thread as the main thread, if it is Python's.
pub(crate) fn note_main_thread(py: Python<'_>) -> PyResult<()> {
    let threading = py.import("threading")?;
    let main = threading.call_method0("main_thread")?.getattr("ident")?;
    let current = threading.call_method0("get_ident")?;
    if main.eq(current)? {
        let _ = MAIN_THREAD.set(std::thread::current().id());
    }
    Ok(())
}

/// The interrupt check of every streamer, called by a `put` that waits for
/// room (without the GIL, without the library's locks). On Python's main
/// thread only (elsewhere signals are not handled, and the GIL is not taken):
/// runs the signal handlers that are due; one that raised (Ctrl-C's
/// `KeyboardInterrupt`) ends the wait, and the put raises it, having queued
/// nothing. Inside the handlers the calls that wait are refused (see
/// [`refuse_in_callback`]).
fn signal_raised() -> bool {
    if MAIN_THREAD.get() != Some(&std::thread::current().id()) || EXITING.load(Ordering::SeqCst) {
        return false;
    }
    Python::attach(|py| {
        IN_SIGNAL_CHECK.with(|flag| flag.set(true));
        let checked = py.check_signals();
        IN_SIGNAL_CHECK.with(|flag| flag.set(false));
        match checked {
            Ok(()) => false,
            Err(error) => {
                SIGNAL_ERROR.with(|slot| *slot.borrow_mut() = Some(error));
                true
            }
        }
    })
}

/// A library error as a Python exception; an interrupted wait raises what the
/// signal handler raised.
fn raise(error: Error) -> PyErr {
    match error {
        Error::Interrupted { .. } => SIGNAL_ERROR
            .with(|slot| slot.borrow_mut().take())
            .unwrap_or_else(|| to_py_err(error)),
        error => to_py_err(error),
    }
}

fn refuse_in_callback() -> PyResult<()> {
    if IN_SIGNAL_CHECK.with(Cell::get) {
        return Err(PyRuntimeError::new_err(
            "put, put_stream, flush, finalize and close cannot be called from a signal handler that runs while a put waits for room: that put holds the streamer (raise from the handler instead, e.g. KeyboardInterrupt, and close after the put returns)",
        ));
    }
    if IN_CALLBACK.with(Cell::get) {
        return Err(PyRuntimeError::new_err(
            "put, put_stream, flush, finalize and close cannot be called from on_complete or a dir_manager: they would wait for the thread that runs it",
        ));
    }
    Ok(())
}

/// Every core not yet closed, so that `close_all` (run at interpreter exit)
/// can close them while Python still runs the library's callbacks.
static LIVE: Mutex<Vec<Weak<Core>>> = Mutex::new(Vec::new());

impl Core {
    fn new(
        client: Client,
        releases: Arc<ReleaseQueue>,
        failures: Arc<Mutex<Vec<Failure>>>,
        transform: Transform,
    ) -> PyResult<Arc<Core>> {
        let releaser = match releases.start_releaser() {
            Ok(thread) => thread,
            Err(error) => {
                client.close();
                return Err(PyRuntimeError::new_err(format!(
                    "cannot start a thread: {error}"
                )));
            }
        };
        let probe = client.stats_probe();
        let core = Arc::new(Core {
            client: RwLock::new(Some(client)),
            releaser: Mutex::new(Some(releaser)),
            releases,
            failures,
            final_stats: Mutex::new(None),
            probe,
            transform,
            born: pyme_streaming::fork::generation(),
        });
        let mut live = LIVE.lock().unwrap_or_else(|e| e.into_inner());
        live.retain(|weak| weak.strong_count() > 0);
        live.push(Arc::downgrade(&core));
        Ok(core)
    }

    /// Runs `call` on the open client, without the GIL.
    fn with_client<T: Send>(
        &self,
        py: Python<'_>,
        call: impl FnOnce(&Client) -> Result<T, Error> + Send,
    ) -> PyResult<T> {
        self.on_client(py, call)?.map_err(raise)
    }

    /// As [`Core::with_client`], the library's error left as it is.
    fn on_client<T: Send>(
        &self,
        py: Python<'_>,
        call: impl FnOnce(&Client) -> Result<T, Error> + Send,
    ) -> PyResult<Result<T, Error>> {
        refuse_in_callback()?;
        if self.forked() {
            return Ok(Err(Error::Forked));
        }
        let result = py.detach(|| {
            let client = self.client.read().unwrap_or_else(|e| e.into_inner());
            match &*client {
                Some(client) => call(client),
                None => Err(Error::Closed),
            }
        });
        self.releases.release_all(py);
        Ok(result)
    }

    /// Waits until every file accepted so far has its outcome, up to `timeout`
    /// (`None`: as long as it takes), in slices of [`SIGNAL_SLICE`]: between two
    /// slices the GIL is taken back and signals are checked, so Ctrl-C (or any
    /// signal handler that raises) interrupts a long wait, as it does PYME's
    /// own queue waits. Nothing is lost by the interruption: the files stay
    /// queued and get their outcomes as usual.
    fn flush(&self, py: Python<'_>, timeout: Option<Duration>) -> PyResult<()> {
        let deadline = timeout.map(|timeout| Instant::now() + timeout);
        let mut first = true;
        loop {
            let slice = match deadline {
                None => SIGNAL_SLICE,
                Some(deadline) => deadline
                    .saturating_duration_since(Instant::now())
                    .min(SIGNAL_SLICE),
            };
            let result = self.on_client(py, |client| client.flush(Some(slice)))?;
            let more_time = deadline.map_or(true, |deadline| Instant::now() < deadline);
            match result {
                Err(Error::FlushTimeout { .. }) if more_time => py.check_signals()?,
                // Closed between two slices: `close` (or the sentinel) holds
                // `final_stats` from before it takes the client until every
                // file has its outcome, which is what this flush waits for.
                Err(Error::Closed) if !first => {
                    py.detach(|| drop(self.final_stats.lock()));
                    return Ok(());
                }
                other => return other.map_err(to_py_err),
            }
            first = false;
        }
    }

    /// The bytes to send for `data`: the Python filter applied (with the GIL),
    /// then the memory taken without a copy.
    fn bytes_for(&self, py: Python<'_>, data: &Bound<'_, PyAny>) -> PyResult<bytes::Bytes> {
        self.releases.release_all(py);
        match &self.transform {
            Transform::Python(filter) => {
                let filtered = filter.bind(py).call1((data,))?;
                if filtered.is_none() {
                    return Err(PyTypeError::new_err(
                        "filter returned None: it must return bytes-like data",
                    ));
                }
                bytes_of(&filtered, &self.releases)
            }
            _ => {
                if data.is_none() {
                    return Err(PyTypeError::new_err(
                        "data is None: Streamer.put takes bytes-like data (the end-of-stream sentinel is Stream.put(name, None))",
                    ));
                }
                bytes_of(data, &self.releases)
            }
        }
    }

    /// Whether this is a child forked after the client was made.
    fn forked(&self) -> bool {
        pyme_streaming::fork::generation() != self.born
    }

    fn close(&self, py: Python<'_>) -> PyResult<Stats> {
        refuse_in_callback()?;
        if self.forked() {
            return Err(to_py_err(Error::Forked));
        }
        let stats = py.detach(|| {
            // `final_stats` before the client (see `flush`).
            let mut final_stats = self.final_stats.lock().unwrap_or_else(|e| e.into_inner());
            let client = self
                .client
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .take();
            if let Some(client) = client {
                *final_stats = Some(client.close());
            }
            self.releases.stop();
            if let Some(releaser) = self
                .releaser
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take()
            {
                let _ = releaser.join();
            }
            final_stats.unwrap_or_default()
        });
        self.releases.release_all(py);
        Ok(stats)
    }

    fn finalize(&self, py: Python<'_>, name: &str) -> PyResult<Stats> {
        refuse_in_callback()?;
        if self.forked() {
            return Err(to_py_err(Error::Forked));
        }
        let result = py.detach(|| {
            // `final_stats` before the client (see `flush`).
            let mut final_stats = self.final_stats.lock().unwrap_or_else(|e| e.into_inner());
            let client = self
                .client
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .take();
            match client {
                Some(Client::One(stream)) => {
                    let stats = stream.finalize(name)?;
                    *final_stats = Some(stats);
                    Ok(stats)
                }
                Some(other) => {
                    *self.client.write().unwrap_or_else(|e| e.into_inner()) = Some(other);
                    Err(Error::Closed)
                }
                None => Err(Error::Closed),
            }
        });
        self.releases.release_all(py);
        result.map_err(to_py_err)
    }

    /// The statistics now, without waiting: the final ones once `close` or
    /// `finalize` has ended, else the probe's (also while another thread, or
    /// this callback's own, is closing: `close` holds `final_stats` while it
    /// waits for outcomes, and an `on_complete` that read the statistics
    /// waited for it for ever).
    fn stats(&self, py: Python<'_>) -> Stats {
        self.releases.release_all(py);
        py.detach(|| match self.final_stats.try_lock().as_deref() {
            Ok(Some(stats)) => *stats,
            _ => self.probe.stats(),
        })
    }

    /// Whether `close` (or the end-of-stream sentinel) has run or is running.
    fn is_closed(&self, py: Python<'_>) -> bool {
        py.detach(|| {
            self.client
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .is_none()
        })
    }

    fn failures(&self, py: Python<'_>, take: bool) -> PyResult<Py<PyList>> {
        let failures = {
            let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
            if take {
                std::mem::take(&mut *failures)
            } else {
                failures.clone()
            }
        };
        let list = PyList::empty(py);
        for failure in failures {
            list.append(Py::new(py, PyOutcome::from_failure(failure))?)?;
        }
        Ok(list.unbind())
    }
}

/// Closes every streamer and stream still open (registered with `atexit` by
/// the package, so that the library's threads finish while Python runs).
#[pyfunction]
pub fn close_all(py: Python<'_>) {
    EXITING.store(true, Ordering::SeqCst);
    let live: Vec<Arc<Core>> = {
        let mut live = LIVE.lock().unwrap_or_else(|e| e.into_inner());
        let cores = live.iter().filter_map(Weak::upgrade).collect();
        live.clear();
        cores
    };
    for core in live {
        let _ = core.close(py);
    }
}

/// The end of one file, as given to `on_complete` and listed by `failures()`.
#[pyclass(module = "pyme_streaming", name = "Outcome", frozen, get_all)]
pub struct PyOutcome {
    /// The file name given to `put`.
    name: String,
    /// The index of the server it went to.
    server: usize,
    /// Its size as given to `put` (before any filter).
    bytes: u64,
    /// Whether the server acknowledged it (2xx).
    ok: bool,
    /// The HTTP status of the answer, if there was one.
    http_status: Option<u16>,
    /// Why it failed, or None.
    error: Option<String>,
}

impl PyOutcome {
    fn from_outcome(outcome: &Outcome<'_>) -> PyOutcome {
        PyOutcome {
            name: outcome.name.to_owned(),
            server: outcome.server,
            bytes: outcome.bytes,
            ok: outcome.is_acknowledged(),
            http_status: outcome.http_status(),
            error: match outcome.result {
                OutcomeResult::Failed(error) => Some(error.to_string()),
                OutcomeResult::Acknowledged { .. } => None,
            },
        }
    }

    fn from_failure(failure: Failure) -> PyOutcome {
        PyOutcome {
            name: failure.name,
            server: failure.server,
            bytes: failure.bytes,
            ok: false,
            http_status: failure.http_status,
            error: Some(failure.error),
        }
    }
}

#[pymethods]
impl PyOutcome {
    fn __repr__(&self) -> String {
        match &self.error {
            None => format!(
                "Outcome(name={:?}, server={}, bytes={}, ok=True, http_status={})",
                self.name,
                self.server,
                self.bytes,
                self.http_status.unwrap_or(0)
            ),
            Some(error) => format!(
                "Outcome(name={:?}, server={}, bytes={}, ok=False, error={:?})",
                self.name, self.server, self.bytes, error
            ),
        }
    }
}

/// The options beyond PYME's, as keyword arguments of both classes.
struct Reliability<'py> {
    on_complete: Option<Bound<'py, PyAny>>,
    queue_files: usize,
    queue_bytes: u64,
    memory_limit: u64,
    put_timeout: Option<f64>,
    connect_timeout: f64,
    response_timeout: f64,
    failover: bool,
    max_retries: u32,
    spread_when_full: bool,
    spill_dir: Option<std::path::PathBuf>,
    sender_poll: Option<f64>,
    require_all_servers: bool,
    server_callback: Option<Bound<'py, PyAny>>,
    round_robin_start: Option<usize>,
}

fn seconds(what: &str, value: f64) -> PyResult<Duration> {
    Duration::try_from_secs_f64(value).map_err(|_| {
        PyValueError::new_err(format!(
            "{what} must be a number of seconds >= 0, not {value}"
        ))
    })
}

/// Who is told about outcomes besides the failure list.
struct Listeners {
    on_complete: Option<Py<PyAny>>,
    /// PYME's `dir_manager` and the stream's URL: acknowledged files are registered.
    dir_manager: Option<(Py<PyAny>, String)>,
}

impl Reliability<'_> {
    fn options(
        &self,
        listeners: Listeners,
        failures: &Arc<Mutex<Vec<Failure>>>,
        releases: &Arc<ReleaseQueue>,
    ) -> PyResult<StreamerOptions> {
        if self.queue_files == 0 || self.queue_bytes == 0 {
            return Err(PyValueError::new_err(
                "queue_files and queue_bytes must be at least 1",
            ));
        }
        for (what, callback) in [
            ("on_complete", &self.on_complete),
            ("server_callback", &self.server_callback),
        ] {
            if let Some(callback) = callback.as_ref().filter(|c| !c.is_none()) {
                if !callback.is_callable() {
                    return Err(PyTypeError::new_err(format!(
                        "{what} must be callable, not {}",
                        type_name(callback)
                    )));
                }
            }
        }
        let mut options = StreamerOptions::new()
            .queue_limits(self.queue_files, self.queue_bytes)
            .memory_limit(self.memory_limit)
            .put_timeout(
                self.put_timeout
                    .map(|t| seconds("put_timeout", t))
                    .transpose()?,
            )
            .connect_timeout(seconds("connect_timeout", self.connect_timeout)?)
            .response_timeout(seconds("response_timeout", self.response_timeout)?)
            .failover(self.failover)
            .max_retries(self.max_retries)
            .spread_when_full(self.spread_when_full)
            .sender_poll(
                self.sender_poll
                    .map(|t| seconds("sender_poll", t))
                    .transpose()?,
            )
            .interrupt_check(signal_raised)
            .require_all_servers(self.require_all_servers)
            .round_robin_start(self.round_robin_start);
        if let Some(folder) = &self.spill_dir {
            options = options.spill_dir(folder.clone());
        }
        if let Some(callback) = self.server_callback.as_ref().filter(|c| !c.is_none()) {
            options = options.on_server_state(server_callback(callback.clone().unbind()));
        }
        let failures = Arc::clone(failures);
        let releases = Arc::clone(releases);
        Ok(options.on_complete(move |outcome| {
            if !outcome.is_acknowledged() {
                let error = match outcome.result {
                    OutcomeResult::Failed(error) => error.to_string(),
                    OutcomeResult::Acknowledged { .. } => String::new(),
                };
                failures
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(Failure {
                        name: outcome.name.to_owned(),
                        server: outcome.server,
                        bytes: outcome.bytes,
                        http_status: outcome.http_status(),
                        error,
                    });
            }
            let register = listeners
                .dir_manager
                .as_ref()
                .filter(|_| outcome.is_acknowledged());
            if listeners.on_complete.is_none() && register.is_none() {
                return;
            }
            // A Python error or a panic here must not end the library's thread.
            IN_CALLBACK.with(|flag| flag.set(true));
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                Python::attach(|py| {
                    releases.release_all(py);
                    if let Some((dir_manager, url)) = register {
                        let name = outcome.name.split('?').next().unwrap_or_default();
                        let url = format!("{url}{name}");
                        if let Err(err) = dir_manager
                            .bind(py)
                            .call_method1("register_file", (name, url, outcome.bytes))
                        {
                            err.write_unraisable(py, Some(dir_manager.bind(py)));
                        }
                    }
                    if let Some(callback) = &listeners.on_complete {
                        let result = Py::new(py, PyOutcome::from_outcome(outcome))
                            .and_then(|item| callback.bind(py).call1((item,)));
                        if let Err(err) = result {
                            err.write_unraisable(py, Some(callback.bind(py)));
                        }
                    }
                })
            }));
            IN_CALLBACK.with(|flag| flag.set(false));
        }))
    }
}

/// A Python `server_callback(index, state)` as the library's state callback:
/// called with the GIL, as an outcome callback is (what it may call is the same).
fn server_callback(
    callback: Py<PyAny>,
) -> impl Fn(usize, pyme_streaming::ServerState) + Send + Sync + 'static {
    move |index, state| {
        IN_CALLBACK.with(|flag| flag.set(true));
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            Python::attach(|py| {
                if let Err(err) = callback.bind(py).call1((index, state.name())) {
                    err.write_unraisable(py, Some(callback.bind(py)));
                }
            })
        }));
        IN_CALLBACK.with(|flag| flag.set(false));
    }
}

fn stats_dict<'py>(py: Python<'py>, stats: &Stats) -> PyResult<Bound<'py, PyDict>> {
    let dict = PyDict::new(py);
    dict.set_item("files_queued", stats.files_queued)?;
    dict.set_item("files_sent", stats.files_sent)?;
    dict.set_item("files_acknowledged", stats.files_acknowledged)?;
    dict.set_item("files_failed", stats.files_failed)?;
    dict.set_item("bytes_queued", stats.bytes_queued)?;
    dict.set_item("bytes_sent", stats.bytes_sent)?;
    dict.set_item("bytes_acknowledged", stats.bytes_acknowledged)?;
    dict.set_item("queue_files", stats.queue_files)?;
    dict.set_item("queue_bytes", stats.queue_bytes)?;
    dict.set_item("in_flight_files", stats.in_flight_files)?;
    dict.set_item("rerouted", stats.rerouted)?;
    dict.set_item("reconnects", stats.reconnects)?;
    dict.set_item("retries", stats.retries)?;
    dict.set_item("acknowledged_already", stats.acknowledged_already)?;
    dict.set_item("dropped", stats.dropped)?;
    dict.set_item("spilled", stats.spilled)?;
    dict.set_item("pending", stats.pending())?;
    Ok(dict)
}

fn server_stats_dict<'py>(
    py: Python<'py>,
    stats: &pyme_streaming::ServerStats,
) -> PyResult<Bound<'py, PyDict>> {
    let dict = PyDict::new(py);
    dict.set_item("state", stats.state.name())?;
    dict.set_item("files_acknowledged", stats.files_acknowledged)?;
    dict.set_item("bytes_acknowledged", stats.bytes_acknowledged)?;
    dict.set_item("files_failed", stats.files_failed)?;
    dict.set_item("bytes_failed", stats.bytes_failed)?;
    dict.set_item("queue_files", stats.queue_files)?;
    dict.set_item("queue_bytes", stats.queue_bytes)?;
    dict.set_item("in_flight_files", stats.in_flight_files)?;
    dict.set_item("in_flight_bytes", stats.in_flight_bytes)?;
    dict.set_item("files_sent", stats.files_sent)?;
    dict.set_item("bytes_sent", stats.bytes_sent)?;
    dict.set_item("reconnects", stats.reconnects)?;
    dict.set_item("retries", stats.retries)?;
    dict.set_item("moved_away", stats.moved_away)?;
    Ok(dict)
}

/// A file name: a `str` (PYME also passes names as `str`).
fn file_name(filename: &Bound<'_, PyAny>) -> PyResult<String> {
    filename
        .cast::<PyString>()
        .map(|s| s.to_string())
        .map_err(|_| {
            PyTypeError::new_err(format!(
                "filename must be a str, not {}",
                type_name(filename)
            ))
        })
}

/// `host:port` for a server given as `(address, port)` (PYME's form, the address
/// a str or 4 packed bytes) or as a `"host:port"` string.
fn server_address(server: &Bound<'_, PyAny>) -> PyResult<(String, (Py<PyAny>, u16))> {
    if let Ok(text) = server.cast::<PyString>() {
        let text = text.to_string();
        let (host, port) = text.rsplit_once(':').ok_or_else(|| {
            PyValueError::new_err(format!(
                "server {text:?}: expected \"host:port\" or (host, port)"
            ))
        })?;
        let port: u16 = port
            .parse()
            .map_err(|_| PyValueError::new_err(format!("server {text:?}: bad port")))?;
        let host_py = PyString::new(server.py(), host.trim_matches(['[', ']']))
            .into_any()
            .unbind();
        return Ok((text.clone(), (host_py, port)));
    }
    let (address, port): (Bound<'_, PyAny>, Bound<'_, PyAny>) = server.extract().map_err(|_| {
        PyTypeError::new_err(format!(
            "a server must be (address, port) or \"host:port\", not {}",
            type_name(server)
        ))
    })?;
    let host = host_text(&address)?;
    let port = port_number(&port)?;
    Ok((join_host_port(&host, port), (address.unbind(), port)))
}

fn host_text(address: &Bound<'_, PyAny>) -> PyResult<String> {
    if let Ok(packed) = address.cast::<PyBytes>() {
        let packed = packed.as_bytes();
        return match packed {
            [a, b, c, d] => Ok(format!("{a}.{b}.{c}.{d}")),
            _ => Err(PyValueError::new_err(
                "a packed server address must be 4 bytes (IPv4)",
            )),
        };
    }
    address.extract::<String>().map_err(|_| {
        PyTypeError::new_err(format!(
            "server address must be a str (or 4 packed bytes), not {}",
            type_name(address)
        ))
    })
}

fn port_number(port: &Bound<'_, PyAny>) -> PyResult<u16> {
    let port: i64 = port.extract().map_err(|_| {
        PyTypeError::new_err(format!(
            "server port must be an int, not {}",
            type_name(port)
        ))
    })?;
    u16::try_from(port)
        .ok()
        .filter(|&port| port != 0)
        .ok_or_else(|| PyValueError::new_err(format!("server port {port} is not 1..65535")))
}

fn join_host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// PYME's `Streamer`: one persistent pipelined connection per server of the
/// cluster, files spread by the distribution function.
#[pyclass(module = "pyme_streaming", name = "Streamer", frozen, weakref)]
pub struct PyStreamer {
    core: Arc<Core>,
    chooser: Chooser,
    servers: Py<PyList>,
}

impl PyStreamer {
    /// The number of servers now (it grows with live membership).
    fn n_servers_now(&self) -> usize {
        self.core.probe.n_servers()
    }
}

#[pymethods]
impl PyStreamer {
    #[new]
    #[pyo3(signature = (
        serverfilter=None, servers=None, distribution_fcn=None, filter=None, *,
        on_complete=None, queue_files=pyme_streaming::options::DEFAULT_QUEUE_FILES,
        queue_bytes=pyme_streaming::options::DEFAULT_QUEUE_BYTES,
        memory_limit=pyme_streaming::options::DEFAULT_MEMORY_LIMIT, put_timeout=None,
        connect_timeout=5.0, response_timeout=30.0, failover=true, max_retries=2,
        spread_when_full=false, spill_dir=None, sender_poll=Some(0.001), mdns=true,
        registry=None, require_all_servers=false, server_callback=None,
        round_robin_start=None, discovery_period_ms=10000
    ))]
    #[allow(clippy::too_many_arguments)]
    fn new<'py>(
        py: Python<'py>,
        serverfilter: Option<String>,
        servers: Option<Bound<'py, PyAny>>,
        distribution_fcn: Option<Bound<'py, PyAny>>,
        filter: Option<Bound<'py, PyAny>>,
        on_complete: Option<Bound<'py, PyAny>>,
        queue_files: usize,
        queue_bytes: u64,
        memory_limit: u64,
        put_timeout: Option<f64>,
        connect_timeout: f64,
        response_timeout: f64,
        failover: bool,
        max_retries: u32,
        spread_when_full: bool,
        spill_dir: Option<std::path::PathBuf>,
        sender_poll: Option<f64>,
        mdns: bool,
        registry: Option<std::path::PathBuf>,
        require_all_servers: bool,
        server_callback: Option<Bound<'py, PyAny>>,
        round_robin_start: Option<usize>,
        discovery_period_ms: u64,
    ) -> PyResult<Self> {
        let chooser = match &distribution_fcn {
            Some(fcn) if !fcn.is_none() => Chooser::from_py(fcn)?,
            _ => Chooser::Builtin(Arc::new(pyme_streaming::RoundRobin)),
        };
        let transform = Transform::from_py(filter.as_ref())?;
        let reliability = Reliability {
            on_complete,
            queue_files,
            queue_bytes,
            memory_limit,
            put_timeout,
            connect_timeout,
            response_timeout,
            failover,
            max_retries,
            spread_when_full,
            spill_dir,
            sender_poll,
            require_all_servers,
            server_callback,
            round_robin_start,
        };
        let failures = Arc::new(Mutex::new(Vec::new()));
        let releases = Arc::new(ReleaseQueue::default());
        let listeners = Listeners {
            on_complete: reliability.on_complete.as_ref().map(|c| c.clone().unbind()),
            dir_manager: None,
        };
        let mut options = reliability
            .options(listeners, &failures, &releases)?
            .shared_distribution(chooser.for_library())
            .shared_filter(transform.for_library())
            .discovery_period(std::time::Duration::from_millis(discovery_period_ms));
        let given = PyList::empty(py);
        match servers.filter(|servers| !servers.is_none()) {
            Some(servers) => {
                if servers.is_instance_of::<PyString>() {
                    return Err(PyTypeError::new_err(
                        "servers must be a list of (address, port) or \"host:port\", not a str",
                    ));
                }
                for server in servers.try_iter()? {
                    let server = server?;
                    let (host_port, (address, port)) = server_address(&server)?;
                    options = options.server(host_port);
                    given.append(PyTuple::new(
                        py,
                        [address, port.into_pyobject(py)?.into_any().unbind()],
                    )?)?;
                }
                if given.is_empty() {
                    return Err(PyValueError::new_err(
                        "servers is empty: give at least one server",
                    ));
                }
            }
            None => {
                let serverfilter = match serverfilter {
                    Some(serverfilter) => serverfilter,
                    None => pyme_streaming::discovery::computer_name(),
                };
                options =
                    options.discovery(crate::discovery_options(&serverfilter, mdns, registry));
            }
        }
        let streamer = py
            .detach(move || pyme_streaming::Streamer::new(options))
            .map_err(to_py_err)?;
        if given.is_empty() {
            for server in streamer.servers() {
                let (host, port) = server.rsplit_once(':').unwrap_or((server, "0"));
                let port: u16 = port.parse().unwrap_or(0);
                given.append((host.trim_matches(['[', ']']), port))?;
            }
        }
        Ok(PyStreamer {
            core: Core::new(Client::Many(streamer), releases, failures, transform)?,
            chooser,
            servers: given.unbind(),
        })
    }

    /// The servers, as `(address, port)` (PYME's `Streamer.servers`). With
    /// live membership (a serverfilter, `discovery_period_ms`) the servers
    /// that joined during the run follow, in the order they joined.
    #[getter]
    fn servers(&self, py: Python<'_>) -> PyResult<Py<PyList>> {
        let servers = self.servers.bind(py);
        for index in servers.len()..self.n_servers_now() {
            let Some(server) = self.core.probe.server(index) else {
                break;
            };
            let (host, port) = server.rsplit_once(':').unwrap_or((&server, "0"));
            let port: u16 = port.parse().unwrap_or(0);
            servers.append((host.trim_matches(['[', ']']), port))?;
        }
        Ok(servers.clone().unbind())
    }

    /// The number of servers now: with live membership (a serverfilter and
    /// `discovery_period_ms`), it grows when servers join during the run.
    #[getter]
    fn n_servers(&self) -> usize {
        self.n_servers_now()
    }

    fn __len__(&self) -> usize {
        self.n_servers_now()
    }

    /// The state of server `index` now: "up", "connecting", "resting" or
    /// "down". It takes no lock a put takes (poll it as often as needed).
    fn server_state(&self, index: usize) -> PyResult<&'static str> {
        match self.core.probe.server_state(index) {
            Some(state) => Ok(state.name()),
            None => Err(pyo3::exceptions::PyIndexError::new_err(format!(
                "no server {index}: there are {} servers",
                self.n_servers_now()
            ))),
        }
    }

    /// The counters of server `index` now, as a dict: `state` (as
    /// `server_state`), files and bytes acknowledged, failed (on the server
    /// that gave the file its final outcome), queued and in flight now, sent,
    /// `reconnects`, `retries`, `moved_away`. It takes no lock a put takes
    /// (poll it as often as a UI needs, from any thread, a callback, or while
    /// another thread closes the streamer).
    fn server_stats<'py>(&self, py: Python<'py>, index: usize) -> PyResult<Bound<'py, PyDict>> {
        match self.core.probe.server_stats(index) {
            Some(stats) => server_stats_dict(py, &stats),
            None => Err(pyo3::exceptions::PyIndexError::new_err(format!(
                "no server {index}: there are {} servers",
                self.n_servers_now()
            ))),
        }
    }

    /// Queues `data` under `filename` on the server the distribution function
    /// picks; keyword arguments go to it (`i=frame_number`). Blocks (GIL
    /// released) while the queue is full, up to `put_timeout`.
    #[pyo3(signature = (filename, data, **kwargs))]
    fn put(
        &self,
        py: Python<'_>,
        filename: &Bound<'_, PyAny>,
        data: &Bound<'_, PyAny>,
        kwargs: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<()> {
        let name = file_name(filename)?;
        let data = self.core.bytes_for(py, data)?;
        let index = self.chooser.choose(py, self.n_servers_now(), kwargs)?;
        let result = self
            .core
            .with_client(py, |client| client.put(&name, data, index));
        crate::policies::PreChosen::clear();
        result
    }

    /// Queues `data` under `filename` on server `idx` (0-based), bypassing the
    /// distribution function.
    fn put_stream(
        &self,
        py: Python<'_>,
        idx: i64,
        filename: &Bound<'_, PyAny>,
        data: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        let name = file_name(filename)?;
        let stream = usize::try_from(idx).map_err(|_| {
            to_py_err(Error::NoSuchStream {
                index: usize::MAX,
                n_servers: self.n_servers_now(),
            })
        })?;
        let data = self.core.bytes_for(py, data)?;
        self.core
            .with_client(py, |client| client.put_stream(stream, &name, data))
    }

    /// Waits until every file accepted so far has its outcome, up to `timeout`
    /// seconds (None: as long as it takes).
    #[pyo3(signature = (timeout=None))]
    fn flush(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<()> {
        let timeout = timeout.map(|t| seconds("timeout", t)).transpose()?;
        self.core.flush(py, timeout)
    }

    /// Sends everything queued, waits for every answer, stops the threads and
    /// returns the final statistics. Calling it again returns them again.
    fn close<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let stats = self.core.close(py)?;
        stats_dict(py, &stats)
    }

    /// The statistics now, as a dict.
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        stats_dict(py, &self.core.stats(py))
    }

    /// The files that failed so far, as `Outcome`s.
    fn failures(&self, py: Python<'_>) -> PyResult<Py<PyList>> {
        self.core.failures(py, false)
    }

    /// The files that failed since the last call, as `Outcome`s; the list is emptied.
    fn take_failures(&self, py: Python<'_>) -> PyResult<Py<PyList>> {
        self.core.failures(py, true)
    }

    /// Whether `close` has run.
    #[getter]
    fn closed(&self, py: Python<'_>) -> bool {
        self.core.is_closed(py)
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    #[pyo3(signature = (*_exc))]
    fn __exit__(&self, py: Python<'_>, _exc: &Bound<'_, PyTuple>) -> PyResult<bool> {
        self.core.close(py)?;
        Ok(false)
    }

    fn __repr__(&self, py: Python<'_>) -> String {
        let servers = self
            .servers
            .bind(py)
            .repr()
            .map(|r| r.to_string())
            .unwrap_or_default();
        format!(
            "pyme_streaming.Streamer(servers={servers}, closed={})",
            self.closed(py)
        )
    }
}

impl Drop for PyStreamer {
    fn drop(&mut self) {
        close_on_drop(&self.core);
    }
}

/// Closes a client whose Python object is gone. Dropped inside an outcome
/// callback (its last reference held there), it cannot close on this thread,
/// which the close waits for: a helper thread closes it once the callback returns.
fn close_on_drop(core: &Arc<Core>) {
    if core.forked() {
        // The parent's: its threads do not exist here, and what they hold
        // stays allocated (never joined, never closed).
        std::mem::forget(Arc::clone(core));
        return;
    }
    if IN_CALLBACK.with(Cell::get) {
        let core = Arc::clone(core);
        let _ = std::thread::Builder::new()
            .name("pyme-py-close".into())
            .spawn(move || Python::attach(|py| core.close(py).map(|_| ())));
        return;
    }
    Python::attach(|py| {
        let _ = core.close(py);
    });
}

/// PYME's `Stream`: one persistent pipelined connection to one server.
#[pyclass(module = "pyme_streaming", name = "Stream", frozen, weakref)]
pub struct PyStream {
    core: Arc<Core>,
    address: String,
    port: u16,
}

#[pymethods]
impl PyStream {
    #[new]
    #[pyo3(signature = (
        server_address, server_port, dir_manager=None, filter=None, *,
        on_complete=None, queue_files=pyme_streaming::options::DEFAULT_QUEUE_FILES,
        queue_bytes=pyme_streaming::options::DEFAULT_QUEUE_BYTES,
        memory_limit=pyme_streaming::options::DEFAULT_MEMORY_LIMIT, put_timeout=None,
        connect_timeout=5.0, response_timeout=30.0, max_retries=2, spill_dir=None,
        sender_poll=Some(0.001), server_callback=None
    ))]
    #[allow(clippy::too_many_arguments)]
    fn new<'py>(
        py: Python<'py>,
        server_address: &Bound<'py, PyAny>,
        server_port: &Bound<'py, PyAny>,
        dir_manager: Option<Bound<'py, PyAny>>,
        filter: Option<Bound<'py, PyAny>>,
        on_complete: Option<Bound<'py, PyAny>>,
        queue_files: usize,
        queue_bytes: u64,
        memory_limit: u64,
        put_timeout: Option<f64>,
        connect_timeout: f64,
        response_timeout: f64,
        max_retries: u32,
        spill_dir: Option<std::path::PathBuf>,
        sender_poll: Option<f64>,
        server_callback: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Self> {
        let address = host_text(server_address)?;
        let port = port_number(server_port)?;
        let transform = Transform::from_py(filter.as_ref())?;
        let reliability = Reliability {
            on_complete,
            queue_files,
            queue_bytes,
            memory_limit,
            put_timeout,
            connect_timeout,
            response_timeout,
            failover: true,
            max_retries,
            spread_when_full: false,
            spill_dir,
            sender_poll,
            require_all_servers: false,
            server_callback,
            round_robin_start: None,
        };
        let failures = Arc::new(Mutex::new(Vec::new()));
        let releases = Arc::new(ReleaseQueue::default());
        let url = format!("http://{}/", join_host_port(&address, port));
        let listeners = Listeners {
            on_complete: reliability.on_complete.as_ref().map(|c| c.clone().unbind()),
            dir_manager: dir_manager
                .filter(|manager| !manager.is_none())
                .map(|manager| (manager.unbind(), url)),
        };
        let options = reliability
            .options(listeners, &failures, &releases)?
            .shared_filter(transform.for_library());
        let server = join_host_port(&address, port);
        let stream = py
            .detach(move || pyme_streaming::Stream::connect(&server, &options))
            .map_err(to_py_err)?;
        Ok(PyStream {
            core: Core::new(Client::One(stream), releases, failures, transform)?,
            address,
            port,
        })
    }

    /// Queues `data` under `filename`. `data=None` is PYME's end-of-stream
    /// sentinel: an empty PUT with `Connection: close` after everything queued,
    /// then the stream closes.
    fn put(
        &self,
        py: Python<'_>,
        filename: &Bound<'_, PyAny>,
        data: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        let name = file_name(filename)?;
        if data.is_none() {
            return self.core.finalize(py, &name).map(|_| ());
        }
        let data = self.core.bytes_for(py, data)?;
        self.core
            .with_client(py, |client| client.put(&name, data, None))
    }

    /// With `filename`: sends the end-of-stream sentinel under that name and
    /// closes (as `put(filename, None)`). Without: waits for every outcome.
    #[pyo3(signature = (filename=None))]
    fn finalize(&self, py: Python<'_>, filename: Option<&Bound<'_, PyAny>>) -> PyResult<()> {
        match filename.filter(|name| !name.is_none()) {
            Some(filename) => {
                let name = file_name(filename)?;
                self.core.finalize(py, &name).map(|_| ())
            }
            None => match self.core.flush(py, None) {
                Err(err) if err.is_instance_of::<crate::ClosedError>(py) => Ok(()),
                other => other,
            },
        }
    }

    /// Waits until every file accepted so far has its outcome, up to `timeout` seconds.
    #[pyo3(signature = (timeout=None))]
    fn flush(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<()> {
        let timeout = timeout.map(|t| seconds("timeout", t)).transpose()?;
        self.core.flush(py, timeout)
    }

    /// The state of the server now: "up", "connecting", "resting" or "down".
    fn server_state(&self) -> &'static str {
        self.core
            .probe
            .server_state(0)
            .unwrap_or(pyme_streaming::ServerState::Down)
            .name()
    }

    /// Sends everything queued, waits for every answer, stops the threads and
    /// returns the final statistics.
    fn close<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let stats = self.core.close(py)?;
        stats_dict(py, &stats)
    }

    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        stats_dict(py, &self.core.stats(py))
    }

    fn failures(&self, py: Python<'_>) -> PyResult<Py<PyList>> {
        self.core.failures(py, false)
    }

    fn take_failures(&self, py: Python<'_>) -> PyResult<Py<PyList>> {
        self.core.failures(py, true)
    }

    #[getter]
    fn closed(&self, py: Python<'_>) -> bool {
        self.core.is_closed(py)
    }

    #[getter]
    fn server_address(&self) -> &str {
        &self.address
    }

    #[getter]
    fn server_port(&self) -> u16 {
        self.port
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    #[pyo3(signature = (*_exc))]
    fn __exit__(&self, py: Python<'_>, _exc: &Bound<'_, PyTuple>) -> PyResult<bool> {
        self.core.close(py)?;
        Ok(false)
    }

    fn __repr__(&self, py: Python<'_>) -> String {
        format!(
            "pyme_streaming.Stream({:?}, {}, closed={})",
            self.address,
            self.port,
            self.closed(py)
        )
    }
}

impl Drop for PyStream {
    fn drop(&mut self) {
        close_on_drop(&self.core);
    }
}
