//! `PymeStream`: one server, as C sees it.
//!
//! `stream_finalize` ends the stream but not the handle: the core stream is
//! taken out (under the lock only for that moment, so that no caller, and no
//! callback, ever waits on the lock while files end) and its final statistics
//! kept; later puts answer `STREAMER_ERR_CLOSED` and `stream_stats` still
//! works until `stream_close`. Statistics are read through a probe that does
//! not need the lock, so a completion callback can read them during finalize.

use std::ffi::c_char;
use std::sync::{Mutex, RwLock, TryLockError};

use super::handle::{self, BoxedHandle};
use super::options::PymeStreamerOptions;
use super::stats::{self, PymeStreamerStats};
use super::status::{
    status_of_stats, STREAMER_ERR_CLOSED, STREAMER_ERR_FILES_FAILED, STREAMER_ERR_INVALID_ARGUMENT,
    STREAMER_ERR_IN_CALLBACK, STREAMER_ERR_NULL_ARGUMENT, STREAMER_OK,
};
use super::streamer::{duration_from_c, status_of_bounded_close, STREAMER_WAIT_FOREVER};
use super::util::LastError;
use crate::fork::Born;
use crate::outcome::in_callback;
use crate::streamer::StatsProbe;
use crate::Stats;

/// A persistent pipelined connection to one data server.
pub struct PymeStream {
    /// `None` once finalized. Puts share the lock; finalize takes it alone,
    /// only to take the core out.
    core: RwLock<Option<crate::Stream>>,
    /// Reads the statistics without the lock, also while finalizing.
    probe: StatsProbe,
    /// The statistics at the end of `stream_finalize`.
    final_stats: Mutex<Option<Stats>>,
    last_error: LastError,
    pub(super) born: Born,
}

impl PymeStream {
    /// Through the probe: no lock, also while another thread finalizes.
    pub(crate) fn server_state(&self) -> crate::ServerState {
        self.probe
            .server_state(0)
            .unwrap_or(crate::ServerState::Down)
    }
}

impl BoxedHandle for PymeStream {}

impl PymeStream {
    fn stats(&self) -> Stats {
        let finalized = *self.final_stats.lock().unwrap_or_else(|e| e.into_inner());
        finalized.unwrap_or_else(|| self.probe.stats())
    }
}

/// Connects to one server `host:port` with the queue limits, filter, completion
/// callback and timeouts of `options` (servers and distribution in `options` are
/// not used). A server that cannot be reached is an error
/// (`STREAMER_ERR_CONNECT`), as PYME's `Stream`, unless `options` has a spill
/// folder: the stream then opens with its server `STREAMER_SERVER_DOWN`,
/// spills what is put and sends it once the server can be reached. On
/// failure the message is kept on `options`. Consumes nothing.
///
/// # Safety
/// `host` is NULL or a NUL-terminated string; `options` is NULL or a valid
/// handle; `out` is NULL or a valid pointer. On success `*out` is a new handle
/// to close with `stream_close`.
#[no_mangle]
pub unsafe extern "C" fn stream_new(
    host: *const c_char,
    port: u16,
    options: *const PymeStreamerOptions,
    out: *mut *mut PymeStream,
) -> i32 {
    ffi_panic_boundary! {
        let options = try_handle!(options);
        let out = try_out!(out);
        let host = match c_string!(host) {
            Ok(host) => host,
            Err(failure) => return options.last_error.fail(failure),
        };
        if host.is_empty() || port == 0 {
            return options.last_error.set(STREAMER_ERR_INVALID_ARGUMENT, format!("invalid server {host:?} port {port}"));
        }
        let server = crate::options::server_address(host, port);
        let last_error = LastError::default();
        let born = Born::now();
        match crate::Stream::connect(&server, &options.for_handle(&last_error)) {
            Ok(core) => {
                *out = PymeStream {
                    probe: core.stats_probe(),
                    core: RwLock::new(Some(core)),
                    final_stats: Mutex::new(None),
                    last_error,
                    born,
                }
                .into_ptr();
                STREAMER_OK
            }
            Err(error) => options.last_error.error(&error),
        }
    }
}

/// Queues a copy of the bytes as file `name`, as `streamer_put` (consumes
/// nothing). `STREAMER_ERR_CLOSED` after `stream_finalize`, and, from inside a
/// callback, while `stream_finalize` is starting.
///
/// # Safety
/// `stream` is NULL or a valid handle; `name` is NULL or a NUL-terminated
/// string; `data` points to `len` readable bytes (NULL allowed when `len` is 0).
#[no_mangle]
pub unsafe extern "C" fn stream_put(
    stream: *mut PymeStream,
    name: *const c_char,
    data: *const u8,
    len: usize,
) -> i32 {
    ffi_panic_boundary! {
        let stream = try_handle!(stream);
        refuse_forked!(stream);
        let (name, data) = match c_string!(name).and_then(|name| Ok((name, bytes_arg!(data, len)?))) {
            Ok(inputs) => inputs,
            Err(failure) => return stream.last_error.fail(failure),
        };
        let core = if in_callback() {
            // Never wait for the lock inside a callback: a finalize waiting for
            // it may be waiting for a put that needs this callback to return.
            match stream.core.try_read() {
                Ok(core) => core,
                Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
                Err(TryLockError::WouldBlock) => {
                    return stream.last_error.set(STREAMER_ERR_CLOSED, "the stream is being finalized");
                }
            }
        } else {
            stream.core.read().unwrap_or_else(|e| e.into_inner())
        };
        let Some(core) = &*core else {
            return stream.last_error.set(STREAMER_ERR_CLOSED, "the stream was finalized");
        };
        match core.put(name, data) {
            Ok(()) => STREAMER_OK,
            Err(error) => stream.last_error.error(&error),
        }
    }
}

/// Waits until every file accepted so far has its outcome, as `streamer_flush`.
/// `STREAMER_OK` at once after `stream_finalize`; `STREAMER_ERR_IN_CALLBACK`
/// at once from inside a callback.
/// Consumes nothing.
///
/// # Safety
/// `stream` is NULL or a valid handle.
#[no_mangle]
pub unsafe extern "C" fn stream_flush(stream: *mut PymeStream, timeout_ms: u32) -> i32 {
    ffi_panic_boundary! {
        let stream = try_handle!(stream);
        refuse_forked!(stream);
        if in_callback() {
            return stream.last_error.error(&crate::Error::InCallback { call: "stream_flush" });
        }
        let core = stream.core.read().unwrap_or_else(|e| e.into_inner());
        let Some(core) = &*core else {
            return STREAMER_OK;
        };
        match core.flush(duration_from_c(timeout_ms)) {
            Ok(()) => STREAMER_OK,
            Err(error) => stream.last_error.error(&error),
        }
    }
}

/// Ends the stream: after everything queued, sends the end-of-stream sentinel
/// (an empty file `sentinel_name` on a request that closes the connection),
/// waits for every answer and joins the library's threads. Waits for puts in
/// progress on other threads first. Does not consume the handle: later puts
/// return `STREAMER_ERR_CLOSED`, `stream_stats` gives the final statistics;
/// free it with `stream_close`. Returns `STREAMER_OK` when every file (the
/// sentinel included) was acknowledged, else `STREAMER_ERR_FILES_FAILED` (or
/// the reason the sentinel could not be queued). An invalid `sentinel_name`
/// leaves the stream open. A second finalize returns `STREAMER_ERR_CLOSED`.
/// From inside a callback: `STREAMER_ERR_IN_CALLBACK` at once, nothing done.
/// Completion callbacks may call `stream_stats` while it waits.
///
/// # Safety
/// `stream` is NULL or a valid handle; `sentinel_name` is NULL or a
/// NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn stream_finalize(
    stream: *mut PymeStream,
    sentinel_name: *const c_char,
) -> i32 {
    ffi_panic_boundary! {
        let stream = try_handle!(stream);
        refuse_forked!(stream);
        if in_callback() {
            return stream.last_error.error(&crate::Error::InCallback { call: "stream_finalize" });
        }
        let name = match c_string!(sentinel_name) {
            Ok(name) => name,
            Err(failure) => return stream.last_error.fail(failure),
        };
        if let Err(error) = crate::name::check_name(name) {
            return stream.last_error.error(&error);
        }
        // The lock is held only to take the core out: files end, and their
        // callbacks run, without it.
        let taken = stream.core.write().unwrap_or_else(|e| e.into_inner()).take();
        let Some(taken) = taken else {
            return stream.last_error.set(STREAMER_ERR_CLOSED, "the stream was already finalized");
        };
        let (status, stats) = match taken.finalize(name) {
            Ok(stats) => (status_of_stats(&stats), stats),
            // The stream was closed all the same (dropped): its counters are final.
            Err(error) => (stream.last_error.error(&error), stream.probe.stats()),
        };
        *stream.final_stats.lock().unwrap_or_else(|e| e.into_inner()) = Some(stats);
        if status == STREAMER_ERR_FILES_FAILED {
            let failed = stats.files_queued - stats.files_acknowledged;
            stream.last_error.set(status, format!("{failed} of {} files were not acknowledged", stats.files_queued));
        }
        status
    }
}

/// Writes the statistics to `*out` (the final ones after `stream_finalize`),
/// at most `stats_size` bytes, as `streamer_stats`. Works from a completion
/// callback, also during `stream_finalize`.
/// Consumes nothing.
///
/// # Safety
/// `stream` is NULL or a valid handle; `out` is NULL or points to `stats_size`
/// writable bytes.
#[no_mangle]
pub unsafe extern "C" fn stream_stats(
    stream: *const PymeStream,
    out: *mut PymeStreamerStats,
    stats_size: usize,
) -> i32 {
    ffi_panic_boundary! {
        let stream = try_handle!(stream);
        refuse_forked!(stream);
        if out.is_null() {
            return STREAMER_ERR_NULL_ARGUMENT;
        }
        if let Err(failure) = stats::size_is_valid(stats_size) {
            return stream.last_error.fail(failure);
        }
        // SAFETY: `out` holds `stats_size` writable bytes by the contract.
        unsafe { stats::write(out, stats_size, stream.stats()) }
    }
}

/// Copies the message of the last failure seen by the calling thread on this
/// stream, as `streamer_last_error` (per thread; `out_len` may be NULL).
/// Consumes nothing.
///
/// # Safety
/// As `streamer_last_error`, with a `PymeStream` handle.
#[no_mangle]
pub unsafe extern "C" fn stream_last_error(
    stream: *const PymeStream,
    buf: *mut c_char,
    buf_len: usize,
    out_len: *mut usize,
) -> i32 {
    ffi_panic_boundary! {
        let stream = try_handle!(stream);
        refuse_forked!(stream);
        // SAFETY: `buf` and `out_len` as the contract says.
        unsafe { stream.last_error.copy_out(buf, buf_len, out_len) }
    }
}

/// Consumes the handle: sends everything queued (no sentinel), waits for
/// every answer, joins the threads and frees it; after `stream_finalize` it
/// only frees. `STREAMER_OK` when every file was acknowledged, else
/// `STREAMER_ERR_FILES_FAILED`. NULL: does nothing, `STREAMER_OK`. From inside
/// a callback: `STREAMER_ERR_IN_CALLBACK`, and the handle is NOT consumed.
///
/// # Safety
/// `stream` is NULL or a valid handle; no other call on it may run
/// concurrently or follow (unless it returned `STREAMER_ERR_IN_CALLBACK`).
#[no_mangle]
pub unsafe extern "C" fn stream_close(stream: *mut PymeStream) -> i32 {
    ffi_panic_boundary! {
        // SAFETY: as `stream_close_timeout` with no limit and no statistics.
        unsafe { stream_close_timeout(stream, STREAMER_WAIT_FOREVER, std::ptr::null_mut(), 0) }
    }
}

/// As `stream_close`, and writes the final statistics to `*out` whenever the
/// handle was closed (as `streamer_close_stats`). With `out` NULL (or
/// `stats_size` too small) the handle is not consumed and an error is returned.
///
/// # Safety
/// As `stream_close`; `out` is NULL or points to `stats_size` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn stream_close_stats(
    stream: *mut PymeStream,
    out: *mut PymeStreamerStats,
    stats_size: usize,
) -> i32 {
    ffi_panic_boundary! {
        if out.is_null() {
            return STREAMER_ERR_NULL_ARGUMENT;
        }
        // SAFETY: the contract of this function is that of `stream_close_timeout`.
        unsafe { stream_close_timeout(stream, STREAMER_WAIT_FOREVER, out, stats_size) }
    }
}

/// A close bounded in time, exactly as `streamer_close_timeout` (same limit,
/// margin, statuses and callback guarantees). Consumes the handle (except with
/// `STREAMER_ERR_IN_CALLBACK` or a `stats_size` too small); `out` may be NULL.
///
/// # Safety
/// As `stream_close`; `out` is NULL or points to `stats_size` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn stream_close_timeout(
    stream: *mut PymeStream,
    timeout_ms: u32,
    out: *mut PymeStreamerStats,
    stats_size: usize,
) -> i32 {
    ffi_panic_boundary! {
        if !out.is_null() {
            if let Err((status, _)) = stats::size_is_valid(stats_size) {
                return status;
            }
        }
        if in_callback() && !stream.is_null() {
            return STREAMER_ERR_IN_CALLBACK;
        }
        // SAFETY: NULL or a handle C gives back (the contract).
        let (status, stats) = match unsafe { handle::take(stream) } {
            None => (STREAMER_OK, Stats::default()),
            // Only the handle's memory is freed (see `Stream::is_forked`).
            Some(stream) if stream.born.forked() => return super::status::STREAMER_ERR_FORKED,
            Some(stream) => close(*stream, timeout_ms),
        };
        if !out.is_null() {
            // SAFETY: `out` holds `stats_size` writable bytes by the contract.
            unsafe { stats::write(out, stats_size, stats) };
        }
        status
    }
}

fn close(stream: PymeStream, timeout_ms: u32) -> (i32, Stats) {
    let core = stream.core.into_inner().unwrap_or_else(|e| e.into_inner());
    match core {
        None => {
            let stats = stream
                .final_stats
                .into_inner()
                .unwrap_or_else(|e| e.into_inner())
                .unwrap_or_default();
            (status_of_stats(&stats), stats)
        }
        Some(core) => match duration_from_c(timeout_ms) {
            None => {
                let stats = core.close();
                (status_of_stats(&stats), stats)
            }
            Some(limit) => status_of_bounded_close(core.close_timeout(limit)),
        },
    }
}
