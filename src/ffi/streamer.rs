//! `Streamer`: many servers behind one put, as C sees it.
//!
//! The handle owns the core `Streamer` and the message of its last failure.
//! Everything but `streamer_close` takes the handle by shared reference, so
//! those calls may run concurrently (the core is `Sync`).

use std::ffi::{c_char, c_void};
use std::time::Duration;

use bytes::Bytes;

use super::callbacks::{index_from_c, LentBytes, StreamerReleaseFn, UserData};
use super::options::StreamerOptions;
use super::status::{status_of_stats, STREAMER_ERR_NULL_ARGUMENT, STREAMER_OK};
use super::util::{byte_slice, c_str, into_handle, LastError};
use crate::Stats;

/// Waits as long as it takes (`streamer_flush`).
pub const STREAMER_WAIT_FOREVER: u32 = 0xFFFF_FFFF;

/// Streams files to a cluster of data servers, one persistent pipelined
/// connection per server.
pub struct Streamer {
    core: crate::Streamer,
    last_error: LastError,
}

/// The statistics of a streamer or stream: counters since it was created, and
/// the queue depths now.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StreamerStats {
    /// Files accepted by put.
    pub files_queued: u64,
    /// Files whose request was written to a connection.
    pub files_sent: u64,
    /// Files acknowledged (2xx) by a server.
    pub files_acknowledged: u64,
    /// Files that failed (each had a completion with a non-OK status).
    pub files_failed: u64,
    /// Bytes accepted by put (before any filter).
    pub bytes_queued: u64,
    /// Body bytes written to connections (after the filter).
    pub bytes_sent: u64,
    /// Bytes (as given to put) of the acknowledged files.
    pub bytes_acknowledged: u64,
    /// Files waiting in the queues now, not yet sent.
    pub queue_files: u64,
    /// Bytes waiting in the queues now, not yet sent.
    pub queue_bytes: u64,
    /// Files sent and waiting for their answer now.
    pub in_flight_files: u64,
    /// Files moved to another server after their server's connection failed.
    pub rerouted: u64,
    /// Connections re-established after a failure.
    pub reconnects: u64,
    /// Files sent again after a 5xx answer.
    pub retries: u64,
    /// Re-sent files a server answered 405 (they had landed before a failure);
    /// counted in `files_acknowledged` too.
    pub acknowledged_already: u64,
    /// Puts refused with `STREAMER_ERR_QUEUE_FULL`.
    pub dropped: u64,
    /// Files waiting in the spill folder now.
    pub spilled: u64,
}

impl From<Stats> for StreamerStats {
    fn from(stats: Stats) -> Self {
        StreamerStats {
            files_queued: stats.files_queued,
            files_sent: stats.files_sent,
            files_acknowledged: stats.files_acknowledged,
            files_failed: stats.files_failed,
            bytes_queued: stats.bytes_queued,
            bytes_sent: stats.bytes_sent,
            bytes_acknowledged: stats.bytes_acknowledged,
            queue_files: stats.queue_files,
            queue_bytes: stats.queue_bytes,
            in_flight_files: stats.in_flight_files,
            rerouted: stats.rerouted,
            reconnects: stats.reconnects,
            retries: stats.retries,
            acknowledged_already: stats.acknowledged_already,
            dropped: stats.dropped,
            spilled: stats.spilled,
        }
    }
}

/// Connects to every server of `options`. On failure nothing stays open and the
/// message is kept on `options` (`streamer_options_last_error`). The options are
/// copied: they may be freed or reused at once.
///
/// # Safety
/// `options` is NULL or a valid handle; `out` is NULL or a valid pointer. On
/// success `*out` is a new handle to close with `streamer_close`.
#[no_mangle]
pub unsafe extern "C" fn streamer_new(
    options: *const StreamerOptions,
    out: *mut *mut Streamer,
) -> i32 {
    ffi_panic_boundary! {
        let options = try_ref!(options);
        let out = try_mut!(out);
        let last_error = LastError::default();
        match crate::Streamer::new(options.for_handle(&last_error)) {
            Ok(core) => {
                *out = into_handle(Streamer { core, last_error });
                STREAMER_OK
            }
            Err(error) => options.last_error.error(&error),
        }
    }
}

/// Queues a copy of `len` bytes at `data` as file `name` on the server the
/// distribution picks for (`name`, `index`); `index < 0` means no index. The
/// bytes are copied before it returns. Waits while the chosen queue is full (see
/// `streamer_options_set_put_timeout`). `STREAMER_OK`: the file will get exactly
/// one completion. An error: nothing was queued and no completion follows.
///
/// # Safety
/// `streamer` is NULL or a valid handle; `name` is NULL or a NUL-terminated
/// string; `data` points to `len` readable bytes (NULL allowed when `len` is 0).
#[no_mangle]
pub unsafe extern "C" fn streamer_put(
    streamer: *mut Streamer,
    name: *const c_char,
    data: *const u8,
    len: usize,
    index: i64,
) -> i32 {
    ffi_panic_boundary! {
        let streamer = try_ref!(streamer);
        let (name, data) = match c_str(name).and_then(|name| Ok((name, byte_slice(data, len)?))) {
            Ok(inputs) => inputs,
            Err(failure) => return streamer.last_error.fail(failure),
        };
        match streamer.core.put(name, data, index_from_c(index)) {
            Ok(()) => STREAMER_OK,
            Err(error) => streamer.last_error.error(&error),
        }
    }
}

/// As `streamer_put`, without copying: the library reads `data` until it calls
/// `release(release_user_data, data, len)`, exactly once, when it no longer
/// needs the bytes (after the file's outcome, or before this returns when the
/// put fails, whatever the failure, even a NULL argument). Until then the caller
/// must neither change nor free the bytes. `release` may be NULL when the bytes
/// outlive the streamer (for example a static buffer).
///
/// # Safety
/// As `streamer_put`; `data` stays valid and unchanged until `release` is
/// called (or, without `release`, until `streamer_close` returns).
#[no_mangle]
pub unsafe extern "C" fn streamer_put_nocopy(
    streamer: *mut Streamer,
    name: *const c_char,
    data: *const u8,
    len: usize,
    index: i64,
    release: StreamerReleaseFn,
    release_user_data: *mut c_void,
) -> i32 {
    ffi_panic_boundary! {
        // First of all, so that every way out of this function releases the bytes.
        let lent = LentBytes { data, len, release, user_data: UserData(release_user_data) };
        let streamer = try_ref!(streamer);
        let name = match c_str(name) {
            Ok(name) => name,
            Err(failure) => return streamer.last_error.fail(failure),
        };
        if data.is_null() && len > 0 {
            return streamer.last_error.set(STREAMER_ERR_NULL_ARGUMENT, format!("data is NULL but len is {len}"));
        }
        match streamer.core.put_bytes(name, Bytes::from_owner(lent), index_from_c(index)) {
            Ok(()) => STREAMER_OK,
            Err(error) => streamer.last_error.error(&error),
        }
    }
}

/// Queues a copy of the bytes as file `name` on server `stream_index` (the order
/// servers were added), bypassing the distribution. Otherwise as `streamer_put`.
///
/// # Safety
/// As `streamer_put`.
#[no_mangle]
pub unsafe extern "C" fn streamer_put_stream(
    streamer: *mut Streamer,
    stream_index: usize,
    name: *const c_char,
    data: *const u8,
    len: usize,
) -> i32 {
    ffi_panic_boundary! {
        let streamer = try_ref!(streamer);
        let (name, data) = match c_str(name).and_then(|name| Ok((name, byte_slice(data, len)?))) {
            Ok(inputs) => inputs,
            Err(failure) => return streamer.last_error.fail(failure),
        };
        match streamer.core.put_stream(stream_index, name, data) {
            Ok(()) => STREAMER_OK,
            Err(error) => streamer.last_error.error(&error),
        }
    }
}

/// The number of servers (0 for NULL).
///
/// # Safety
/// `streamer` is NULL or a valid handle.
#[no_mangle]
pub unsafe extern "C" fn streamer_n_servers(streamer: *const Streamer) -> usize {
    ffi_panic_boundary! {
        streamer.as_ref().map_or(0, |streamer| streamer.core.n_servers())
    }
}

/// Makes `count` buffers for copies of files of `file_bytes` bytes ready now,
/// so that the first `streamer_put`s of an acquisition do not fault in fresh
/// memory (1.6 to 30 ms for an 8 MiB frame on the test machine, against under
/// 1 ms later). Call it when the camera is armed, with the frame size and the
/// number of frames expected in flight at once. The buffers count against the
/// queue byte limit (all servers together) and files under 64 KiB are not
/// pooled, so it may prepare fewer: it writes how many to `*out_prepared`
/// (which may be NULL). Zero-copy puts need no buffers.
///
/// # Safety
/// `streamer` is NULL or a valid handle; `out_prepared` is NULL or valid.
#[no_mangle]
pub unsafe extern "C" fn streamer_prepare_buffers(
    streamer: *mut Streamer,
    file_bytes: usize,
    count: usize,
    out_prepared: *mut usize,
) -> i32 {
    ffi_panic_boundary! {
        let streamer = try_ref!(streamer);
        let prepared = streamer.core.prepare_buffers(file_bytes, count);
        if let Some(out) = out_prepared.as_mut() {
            *out = prepared;
        }
        STREAMER_OK
    }
}

/// Waits until every file accepted so far has its outcome (its completion has
/// run), up to `timeout_ms` milliseconds (`STREAMER_WAIT_FOREVER`: no limit).
/// `STREAMER_ERR_TIMEOUT` when time ran out. Files that failed do not make it
/// fail: look at `streamer_stats`.
///
/// # Safety
/// `streamer` is NULL or a valid handle.
#[no_mangle]
pub unsafe extern "C" fn streamer_flush(streamer: *mut Streamer, timeout_ms: u32) -> i32 {
    ffi_panic_boundary! {
        let streamer = try_ref!(streamer);
        let timeout = (timeout_ms != STREAMER_WAIT_FOREVER).then(|| Duration::from_millis(timeout_ms.into()));
        match streamer.core.flush(timeout) {
            Ok(()) => STREAMER_OK,
            Err(error) => streamer.last_error.error(&error),
        }
    }
}

/// Writes the statistics now to `*out`.
///
/// # Safety
/// `streamer` is NULL or a valid handle; `out` is NULL or a valid pointer.
#[no_mangle]
pub unsafe extern "C" fn streamer_stats(streamer: *const Streamer, out: *mut StreamerStats) -> i32 {
    ffi_panic_boundary! {
        let streamer = try_ref!(streamer);
        let out = try_mut!(out);
        *out = streamer.core.stats().into();
        STREAMER_OK
    }
}

/// Copies the message of the handle's last failure (a failed call on it, or a
/// file that failed) into `buf`, NUL-terminated and truncated to `buf_len - 1`
/// bytes (at a UTF-8 character boundary), and writes its full length (without
/// the NUL) to `*out_len`. An empty string when nothing failed yet. `buf` may be
/// NULL when `buf_len` is 0, to ask for the length only.
///
/// # Safety
/// `streamer` is NULL or a valid handle; `buf` is NULL (with `buf_len` 0) or
/// points to `buf_len` writable bytes; `out_len` is NULL or valid.
#[no_mangle]
pub unsafe extern "C" fn streamer_last_error(
    streamer: *const Streamer,
    buf: *mut c_char,
    buf_len: usize,
    out_len: *mut usize,
) -> i32 {
    ffi_panic_boundary! {
        let streamer = try_ref!(streamer);
        streamer.last_error.copy_out(buf, buf_len, out_len)
    }
}

/// Sends everything queued, waits for the answer to every request, runs every
/// completion and release callback, joins the library's threads and frees the
/// handle. `STREAMER_OK` when every file accepted was acknowledged, else
/// `STREAMER_ERR_FILES_FAILED`. NULL: does nothing, `STREAMER_OK`. Never
/// depends on a timeout to make progress beyond the response timeout.
///
/// # Safety
/// `streamer` is NULL or a valid handle; no other call on it may run
/// concurrently or follow.
#[no_mangle]
pub unsafe extern "C" fn streamer_close(streamer: *mut Streamer) -> i32 {
    ffi_panic_boundary! {
        if streamer.is_null() {
            return STREAMER_OK;
        }
        close(*Box::from_raw(streamer)).0
    }
}

/// As `streamer_close`, and writes the final statistics to `*out` whenever the
/// handle was closed (`STREAMER_OK` and `STREAMER_ERR_FILES_FAILED`: the close
/// itself succeeded; the status says whether any file was lost). With `out`
/// NULL the handle is not closed and `STREAMER_ERR_NULL_ARGUMENT` is returned.
///
/// # Safety
/// As `streamer_close`; `out` is NULL or a valid pointer.
#[no_mangle]
pub unsafe extern "C" fn streamer_close_stats(
    streamer: *mut Streamer,
    out: *mut StreamerStats,
) -> i32 {
    ffi_panic_boundary! {
        let out = try_mut!(out);
        if streamer.is_null() {
            *out = StreamerStats::default();
            return STREAMER_OK;
        }
        let (status, stats) = close(*Box::from_raw(streamer));
        *out = stats;
        status
    }
}

fn close(streamer: Streamer) -> (i32, StreamerStats) {
    let stats = streamer.core.close();
    (status_of_stats(&stats), stats.into())
}
