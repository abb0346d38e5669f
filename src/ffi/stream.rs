//! `Stream`: one server, as C sees it.
//!
//! `stream_finalize` ends the stream but not the handle: the core stream is
//! taken out and its final statistics kept, so later puts answer
//! `STREAMER_ERR_CLOSED` and `stream_stats` still works until `stream_close`.

use std::ffi::c_char;
use std::sync::{Mutex, RwLock};

use super::options::StreamerOptions;
use super::status::{
    status_of_stats, STREAMER_ERR_CLOSED, STREAMER_ERR_INVALID_ARGUMENT, STREAMER_OK,
};
use super::streamer::StreamerStats;
use super::util::{byte_slice, c_str, into_handle, LastError};
use crate::Stats;

/// A persistent pipelined connection to one data server.
pub struct Stream {
    /// `None` once finalized. Puts share the lock; finalize takes it alone.
    core: RwLock<Option<crate::Stream>>,
    final_stats: Mutex<Option<Stats>>,
    last_error: LastError,
}

impl Stream {
    fn stats(&self) -> Stats {
        let core = self.core.read().unwrap_or_else(|e| e.into_inner());
        match &*core {
            Some(core) => core.stats(),
            None => self
                .final_stats
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .unwrap_or_default(),
        }
    }
}

/// Connects to one server `host:port` with the queue limits, filter, completion
/// callback and timeouts of `options` (servers and distribution in `options` are
/// not used). On failure the message is kept on `options`.
///
/// # Safety
/// `host` is NULL or a NUL-terminated string; `options` is NULL or a valid
/// handle; `out` is NULL or a valid pointer. On success `*out` is a new handle
/// to close with `stream_close`.
#[no_mangle]
pub unsafe extern "C" fn stream_new(
    host: *const c_char,
    port: u16,
    options: *const StreamerOptions,
    out: *mut *mut Stream,
) -> i32 {
    ffi_panic_boundary! {
        let options = try_ref!(options);
        let out = try_mut!(out);
        let host = match c_str(host) {
            Ok(host) => host,
            Err(failure) => return options.last_error.fail(failure),
        };
        if host.is_empty() || port == 0 {
            return options.last_error.set(STREAMER_ERR_INVALID_ARGUMENT, format!("invalid server {host:?} port {port}"));
        }
        let server = crate::options::server_address(host, port);
        let last_error = LastError::default();
        match crate::Stream::connect(&server, &options.for_handle(&last_error)) {
            Ok(core) => {
                *out = into_handle(Stream {
                    core: RwLock::new(Some(core)),
                    final_stats: Mutex::new(None),
                    last_error,
                });
                STREAMER_OK
            }
            Err(error) => options.last_error.error(&error),
        }
    }
}

/// Queues a copy of the bytes as file `name`, as `streamer_put`.
/// `STREAMER_ERR_CLOSED` after `stream_finalize`.
///
/// # Safety
/// `stream` is NULL or a valid handle; `name` is NULL or a NUL-terminated
/// string; `data` points to `len` readable bytes (NULL allowed when `len` is 0).
#[no_mangle]
pub unsafe extern "C" fn stream_put(
    stream: *mut Stream,
    name: *const c_char,
    data: *const u8,
    len: usize,
) -> i32 {
    ffi_panic_boundary! {
        let stream = try_ref!(stream);
        let (name, data) = match c_str(name).and_then(|name| Ok((name, byte_slice(data, len)?))) {
            Ok(inputs) => inputs,
            Err(failure) => return stream.last_error.fail(failure),
        };
        let core = stream.core.read().unwrap_or_else(|e| e.into_inner());
        let Some(core) = &*core else {
            return stream.last_error.set(STREAMER_ERR_CLOSED, "the stream was finalized");
        };
        match core.put(name, data) {
            Ok(()) => STREAMER_OK,
            Err(error) => stream.last_error.error(&error),
        }
    }
}

/// Ends the stream: after everything queued, sends the end-of-stream sentinel
/// (an empty file `sentinel_name` on a request that closes the connection),
/// waits for every answer and joins the library's threads. Waits for puts in
/// progress on other threads first. The handle stays valid: later puts return
/// `STREAMER_ERR_CLOSED`, `stream_stats` gives the final statistics; free it
/// with `stream_close`. Returns `STREAMER_OK` when every file (the sentinel
/// included) was acknowledged, else `STREAMER_ERR_FILES_FAILED` (or the reason
/// the sentinel could not be queued). An invalid `sentinel_name` leaves the
/// stream open. A second finalize returns `STREAMER_ERR_CLOSED`.
///
/// # Safety
/// `stream` is NULL or a valid handle; `sentinel_name` is NULL or a
/// NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn stream_finalize(stream: *mut Stream, sentinel_name: *const c_char) -> i32 {
    ffi_panic_boundary! {
        let stream = try_ref!(stream);
        let name = match c_str(sentinel_name) {
            Ok(name) => name,
            Err(failure) => return stream.last_error.fail(failure),
        };
        if let Err(error) = crate::name::check_name(name) {
            return stream.last_error.error(&error);
        }
        let mut core = stream.core.write().unwrap_or_else(|e| e.into_inner());
        let Some(taken) = core.take() else {
            return stream.last_error.set(STREAMER_ERR_CLOSED, "the stream was already finalized");
        };
        let before = taken.stats();
        let (status, stats) = match taken.finalize(name) {
            Ok(stats) => (status_of_stats(&stats), stats),
            Err(error) => (stream.last_error.error(&error), before),
        };
        *stream.final_stats.lock().unwrap_or_else(|e| e.into_inner()) = Some(stats);
        status
    }
}

/// Writes the statistics to `*out` (the final ones after `stream_finalize`).
///
/// # Safety
/// `stream` is NULL or a valid handle; `out` is NULL or a valid pointer.
#[no_mangle]
pub unsafe extern "C" fn stream_stats(stream: *const Stream, out: *mut StreamerStats) -> i32 {
    ffi_panic_boundary! {
        let stream = try_ref!(stream);
        let out = try_mut!(out);
        *out = stream.stats().into();
        STREAMER_OK
    }
}

/// Copies the message of the stream's last failure, as `streamer_last_error`.
///
/// # Safety
/// As `streamer_last_error`, with a `Stream` handle.
#[no_mangle]
pub unsafe extern "C" fn stream_last_error(
    stream: *const Stream,
    buf: *mut c_char,
    buf_len: usize,
    out_len: *mut usize,
) -> i32 {
    ffi_panic_boundary! {
        let stream = try_ref!(stream);
        stream.last_error.copy_out(buf, buf_len, out_len)
    }
}

/// Sends everything queued (no sentinel), waits for every answer, joins the
/// threads and frees the handle; after `stream_finalize` it only frees.
/// `STREAMER_OK` when every file was acknowledged, else
/// `STREAMER_ERR_FILES_FAILED`. NULL: does nothing, `STREAMER_OK`.
///
/// # Safety
/// `stream` is NULL or a valid handle; no other call on it may run
/// concurrently or follow.
#[no_mangle]
pub unsafe extern "C" fn stream_close(stream: *mut Stream) -> i32 {
    ffi_panic_boundary! {
        if stream.is_null() {
            return STREAMER_OK;
        }
        close(*Box::from_raw(stream)).0
    }
}

/// As `stream_close`, and writes the final statistics to `*out` whenever the
/// handle was closed (as `streamer_close_stats`). With `out` NULL the handle is
/// not closed and `STREAMER_ERR_NULL_ARGUMENT` is returned.
///
/// # Safety
/// As `stream_close`; `out` is NULL or a valid pointer.
#[no_mangle]
pub unsafe extern "C" fn stream_close_stats(stream: *mut Stream, out: *mut StreamerStats) -> i32 {
    ffi_panic_boundary! {
        let out = try_mut!(out);
        if stream.is_null() {
            *out = StreamerStats::default();
            return STREAMER_OK;
        }
        let (status, stats) = close(*Box::from_raw(stream));
        *out = stats.into();
        status
    }
}

fn close(stream: Stream) -> (i32, Stats) {
    let core = stream.core.into_inner().unwrap_or_else(|e| e.into_inner());
    let stats = match core {
        Some(core) => core.close(),
        None => stream
            .final_stats
            .into_inner()
            .unwrap_or_else(|e| e.into_inner())
            .unwrap_or_default(),
    };
    (status_of_stats(&stats), stats)
}
