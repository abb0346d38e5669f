//! `PymeStreamer`: many servers behind one put, as C sees it.
//!
//! The handle owns the core `Streamer` and the per-thread messages of its last
//! failures. Everything but the close functions takes the handle by shared
//! reference, so those calls may run concurrently (the core is `Sync`).

use std::ffi::{c_char, c_void};
use std::time::Duration;

use bytes::Bytes;

use super::callbacks::{index_from_c, LentBytes, PymeStreamerReleaseFn, UserData};
use super::handle::{self, BoxedHandle};
use super::options::PymeStreamerOptions;
use super::stats::{self, PymeStreamerStats};
use super::status::{
    status_of, status_of_stats, STREAMER_ERR_CLOSE_DETACHED, STREAMER_ERR_IN_CALLBACK,
    STREAMER_ERR_NULL_ARGUMENT, STREAMER_OK,
};
use super::util::LastError;
use crate::fork::Born;
use crate::outcome::in_callback;
use crate::streamer::CloseError;
use crate::Stats;

/// Waits as long as it takes (`streamer_flush`, and no limit for
/// `streamer_close_timeout` / `stream_close_timeout`).
pub const STREAMER_WAIT_FOREVER: u32 = 0xFFFF_FFFFu32;

/// How long `streamer_close_timeout` / `stream_close_timeout` may take beyond
/// their limit, in milliseconds (to give up the pending files and join the threads).
pub const STREAMER_CLOSE_MARGIN_MS: u32 = 500u32;

/// Streams files to a cluster of data servers, one persistent pipelined
/// connection per server.
pub struct PymeStreamer {
    core: crate::Streamer,
    last_error: LastError,
    pub(super) born: Born,
}

impl BoxedHandle for PymeStreamer {}

impl PymeStreamer {
    pub(crate) fn server_state(&self, index: usize) -> Option<crate::ServerState> {
        self.core.server_state(index)
    }

    pub(crate) fn server_stats(&self, index: usize) -> Option<crate::ServerStats> {
        self.core.server_stats(index)
    }

    pub(crate) fn n_servers(&self) -> usize {
        self.core.n_servers()
    }

    pub(crate) fn last_error(&self) -> &LastError {
        &self.last_error
    }
}

/// Connects to every server of `options`. A server that cannot be reached
/// starts `STREAMER_SERVER_DOWN` and is connected with the reconnect backoff
/// (unless `streamer_options_set_require_all_servers`: then it is an error);
/// a malformed address or a host name that does not exist is an error at
/// once. On failure nothing stays open and the message is kept on `options`
/// (`streamer_options_last_error`). Consumes nothing: the options are copied
/// and may be freed or reused at once.
///
/// # Safety
/// `options` is NULL or a valid handle; `out` is NULL or a valid pointer. On
/// success `*out` is a new handle to close with `streamer_close`.
#[no_mangle]
pub unsafe extern "C" fn streamer_new(
    options: *const PymeStreamerOptions,
    out: *mut *mut PymeStreamer,
) -> i32 {
    ffi_panic_boundary! {
        let options = try_handle!(options);
        let out = try_out!(out);
        let last_error = LastError::default();
        let born = Born::now();
        match crate::Streamer::new(options.for_handle(&last_error)) {
            Ok(core) => {
                *out = PymeStreamer { core, last_error, born }.into_ptr();
                STREAMER_OK
            }
            Err(error) => options.last_error.error(&error),
        }
    }
}

/// Queues a copy of `len` bytes at `data` as file `name` on the server the
/// distribution picks for (`name`, `index`); `index < 0` means no index. The
/// bytes are copied before it returns (consumes nothing). Waits while the
/// chosen queue is full (see `streamer_options_set_put_timeout`), except from
/// inside a callback, where a full queue gives `STREAMER_ERR_QUEUE_FULL` at
/// once. `STREAMER_OK`: the file will get exactly one completion. An error:
/// nothing was queued and no completion follows.
///
/// # Safety
/// `streamer` is NULL or a valid handle; `name` is NULL or a NUL-terminated
/// string; `data` points to `len` readable bytes (NULL allowed when `len` is 0).
#[no_mangle]
pub unsafe extern "C" fn streamer_put(
    streamer: *mut PymeStreamer,
    name: *const c_char,
    data: *const u8,
    len: usize,
    index: i64,
) -> i32 {
    ffi_panic_boundary! {
        let streamer = try_handle!(streamer);
        refuse_forked!(streamer);
        let (name, data) = match c_string!(name).and_then(|name| Ok((name, bytes_arg!(data, len)?))) {
            Ok(inputs) => inputs,
            Err(failure) => return streamer.last_error.fail(failure),
        };
        match streamer.core.put(name, data, index_from_c(index)) {
            Ok(()) => STREAMER_OK,
            Err(error) => streamer.last_error.error(&error),
        }
    }
}

/// As `streamer_put`, without copying. Consumes the bytes: the library reads
/// `data` until it calls `release(release_user_data, data, len)`, exactly
/// once, when it no longer needs them (after the file's outcome, or before
/// this returns when the put fails, whatever the failure, even a NULL
/// argument). Until then the caller must neither change nor free the bytes.
/// `release` may be NULL when the bytes outlive the streamer (for example a
/// static buffer).
///
/// # Safety
/// As `streamer_put`; `data` stays valid and unchanged until `release` is
/// called (or, without `release`, until `streamer_close` returns).
#[no_mangle]
pub unsafe extern "C" fn streamer_put_nocopy(
    streamer: *mut PymeStreamer,
    name: *const c_char,
    data: *const u8,
    len: usize,
    index: i64,
    release: PymeStreamerReleaseFn,
    release_user_data: *mut c_void,
) -> i32 {
    ffi_panic_boundary! {
        // First of all, so that every way out of this function releases the bytes.
        let lent = LentBytes { data, len, release, user_data: UserData(release_user_data) };
        let streamer = try_handle!(streamer);
        refuse_forked!(streamer);
        let name = match c_string!(name) {
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
/// Consumes nothing.
///
/// # Safety
/// As `streamer_put`.
#[no_mangle]
pub unsafe extern "C" fn streamer_put_stream(
    streamer: *mut PymeStreamer,
    stream_index: usize,
    name: *const c_char,
    data: *const u8,
    len: usize,
) -> i32 {
    ffi_panic_boundary! {
        let streamer = try_handle!(streamer);
        refuse_forked!(streamer);
        let (name, data) = match c_string!(name).and_then(|name| Ok((name, bytes_arg!(data, len)?))) {
            Ok(inputs) => inputs,
            Err(failure) => return streamer.last_error.fail(failure),
        };
        match streamer.core.put_stream(stream_index, name, data) {
            Ok(()) => STREAMER_OK,
            Err(error) => streamer.last_error.error(&error),
        }
    }
}

/// The number of servers now (0 for NULL). With live membership
/// (`streamer_options_set_discovery_period_ms`) it grows when servers join
/// during the run; a server's index never changes.
/// Consumes nothing.
///
/// # Safety
/// `streamer` is NULL or a valid handle.
#[no_mangle]
pub unsafe extern "C" fn streamer_n_servers(streamer: *const PymeStreamer) -> usize {
    ffi_panic_boundary! {
        // SAFETY: NULL or a valid handle by the contract.
        unsafe { handle::borrow(streamer) }.map_or(0, |streamer| streamer.core.n_servers())
    }
}

/// Makes `count` buffers for copies of files of `file_bytes` bytes ready now,
/// so that the first `streamer_put`s of an acquisition do not fault in fresh
/// memory (a first fill costs many times a recycled one: docs/PERFORMANCE.md,
/// "the copying put"). Call it when the camera is armed, with the frame size and the
/// number of frames expected in flight at once. The buffers count against the
/// queue byte limit (all servers together) and files under 64 KiB are not
/// pooled, so it may prepare fewer: it writes how many to `*out_prepared`
/// (which may be NULL). Zero-copy puts need no buffers.
/// Consumes nothing.
///
/// # Safety
/// `streamer` is NULL or a valid handle; `out_prepared` is NULL or valid.
#[no_mangle]
pub unsafe extern "C" fn streamer_prepare_buffers(
    streamer: *mut PymeStreamer,
    file_bytes: usize,
    count: usize,
    out_prepared: *mut usize,
) -> i32 {
    ffi_panic_boundary! {
        let streamer = try_handle!(streamer);
        refuse_forked!(streamer);
        let prepared = streamer.core.prepare_buffers(file_bytes, count);
        // SAFETY: NULL or valid by the contract.
        if let Some(out) = unsafe { out_prepared.as_mut() } {
            *out = prepared;
        }
        STREAMER_OK
    }
}

/// Waits until every file accepted so far has its outcome (its completion has
/// run), up to `timeout_ms` milliseconds (`STREAMER_WAIT_FOREVER`: no limit).
/// `STREAMER_ERR_TIMEOUT` when time ran out. Files that failed do not make it
/// fail: look at `streamer_stats`. With a spill folder it waits for spilled
/// files to be sent too, but returns `STREAMER_OK` as soon as the only files
/// left are spilled and every server is down or resting (they stay spilled:
/// `PymeStreamerStats.spilled`), so it never waits on a dead cluster.
/// `STREAMER_ERR_IN_CALLBACK` at once from inside a callback.
/// Consumes nothing.
///
/// # Safety
/// `streamer` is NULL or a valid handle.
#[no_mangle]
pub unsafe extern "C" fn streamer_flush(streamer: *mut PymeStreamer, timeout_ms: u32) -> i32 {
    ffi_panic_boundary! {
        let streamer = try_handle!(streamer);
        refuse_forked!(streamer);
        match streamer.core.flush(duration_from_c(timeout_ms)) {
            Ok(()) => STREAMER_OK,
            Err(error) => streamer.last_error.error(&error),
        }
    }
}

/// Writes the statistics now to `*out`, `stats_size` bytes of it at most
/// (pass `sizeof(PymeStreamerStats)`; see `PymeStreamerStats.size`). A
/// consistent snapshot: never more outcomes than files queued.
/// Consumes nothing.
///
/// # Safety
/// `streamer` is NULL or a valid handle; `out` is NULL or points to
/// `stats_size` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn streamer_stats(
    streamer: *const PymeStreamer,
    out: *mut PymeStreamerStats,
    stats_size: usize,
) -> i32 {
    ffi_panic_boundary! {
        let streamer = try_handle!(streamer);
        refuse_forked!(streamer);
        if out.is_null() {
            return STREAMER_ERR_NULL_ARGUMENT;
        }
        if let Err(failure) = stats::size_is_valid(stats_size) {
            return streamer.last_error.fail(failure);
        }
        // SAFETY: `out` holds `stats_size` writable bytes by the contract.
        unsafe { stats::write(out, stats_size, streamer.core.stats()) }
    }
}

/// Copies the message of the last failure seen by the calling thread on this
/// handle (a call of this thread that failed, or, inside a completion
/// callback, that file's failure) into `buf`, NUL-terminated and truncated to
/// `buf_len - 1` bytes (at a UTF-8 character boundary), and writes its full
/// length (without the NUL) to `*out_len` unless `out_len` is NULL. An empty
/// string when nothing failed on this thread. `buf` may be NULL when
/// `buf_len` is 0, to ask for the length only. Messages are per thread, so
/// two threads never read each other's.
/// Consumes nothing.
///
/// # Safety
/// `streamer` is NULL or a valid handle; `buf` is NULL (with `buf_len` 0) or
/// points to `buf_len` writable bytes; `out_len` is NULL or valid.
#[no_mangle]
pub unsafe extern "C" fn streamer_last_error(
    streamer: *const PymeStreamer,
    buf: *mut c_char,
    buf_len: usize,
    out_len: *mut usize,
) -> i32 {
    ffi_panic_boundary! {
        let streamer = try_handle!(streamer);
        refuse_forked!(streamer);
        // SAFETY: `buf` and `out_len` as the contract says.
        unsafe { streamer.last_error.copy_out(buf, buf_len, out_len) }
    }
}

/// Consumes the handle: sends everything queued, waits for the answer to
/// every request, runs every completion and release callback, joins the
/// library's threads and frees the handle. `STREAMER_OK` when every file
/// accepted was acknowledged, else `STREAMER_ERR_FILES_FAILED`. NULL: does
/// nothing, `STREAMER_OK`. Never depends on a timeout to make progress beyond
/// the response timeout; for a limit, use `streamer_close_timeout`. With a
/// spill folder, spilled files are sent while a server takes them; the rest
/// complete with `STREAMER_ERR_SPILLED` (kept in the folder) once no server
/// has taken a file or a connection for one connect plus one response
/// timeout. From inside
/// a callback: `STREAMER_ERR_IN_CALLBACK`, and the handle is NOT consumed.
///
/// # Safety
/// `streamer` is NULL or a valid handle; no other call on it may run
/// concurrently or follow (unless it returned `STREAMER_ERR_IN_CALLBACK`).
#[no_mangle]
pub unsafe extern "C" fn streamer_close(streamer: *mut PymeStreamer) -> i32 {
    ffi_panic_boundary! {
        // SAFETY: as `streamer_close_timeout` with no limit and no statistics.
        unsafe { streamer_close_timeout(streamer, STREAMER_WAIT_FOREVER, std::ptr::null_mut(), 0) }
    }
}

/// As `streamer_close`, and writes the final statistics to `*out` (at most
/// `stats_size` bytes, as `streamer_stats`) whenever the handle was closed
/// (`STREAMER_OK` and `STREAMER_ERR_FILES_FAILED`: the close itself succeeded;
/// the status says whether any file was lost). With `out` NULL or a
/// `stats_size` too small, the handle is not consumed and
/// `STREAMER_ERR_NULL_ARGUMENT` / `STREAMER_ERR_INVALID_ARGUMENT` is returned.
///
/// # Safety
/// As `streamer_close`; `out` is NULL or points to `stats_size` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn streamer_close_stats(
    streamer: *mut PymeStreamer,
    out: *mut PymeStreamerStats,
    stats_size: usize,
) -> i32 {
    ffi_panic_boundary! {
        if out.is_null() {
            return STREAMER_ERR_NULL_ARGUMENT;
        }
        // SAFETY: the contract of this function is that of `streamer_close_timeout`.
        unsafe { streamer_close_timeout(streamer, STREAMER_WAIT_FOREVER, out, stats_size) }
    }
}

/// A close bounded in time: as `streamer_close_stats`, but returns within
/// `timeout_ms` milliseconds plus `STREAMER_CLOSE_MARGIN_MS` (`STREAMER_WAIT_FOREVER`:
/// no limit). Consumes the handle (except with `STREAMER_ERR_IN_CALLBACK`, or
/// a `stats_size` too small). `out` may be NULL.
///
/// Once `timeout_ms` has passed: no completion callback starts any more; the
/// files still pending are given up (counted in `files_failed`; with a spill
/// folder they are kept there instead); their release callbacks run on this
/// thread; the connections are shut and the threads joined.
///
/// Returns `STREAMER_OK` / `STREAMER_ERR_FILES_FAILED` when everything ended
/// before the limit; `STREAMER_ERR_CLOSE_TIMEOUT` when files were given up
/// (every thread joined: no callback runs after it returns);
/// `STREAMER_ERR_CLOSE_DETACHED` when, at the margin, a library thread was
/// still inside a callback (or filter) that began before the limit: that
/// thread is left to end on its own, the callback's `user_data` must stay
/// valid until it returns, and no other callback starts.
///
/// # Safety
/// As `streamer_close`; `out` is NULL or points to `stats_size` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn streamer_close_timeout(
    streamer: *mut PymeStreamer,
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
        if in_callback() && !streamer.is_null() {
            return STREAMER_ERR_IN_CALLBACK;
        }
        // SAFETY: NULL or a handle C gives back (the contract).
        let (status, stats) = match unsafe { handle::take(streamer) } {
            None => (STREAMER_OK, Stats::default()),
            // Only the handle's memory is freed (see `Streamer::is_forked`).
            Some(streamer) if streamer.born.forked() => return super::status::STREAMER_ERR_FORKED,
            Some(streamer) => close_core(streamer.core, timeout_ms),
        };
        if !out.is_null() {
            // SAFETY: `out` holds `stats_size` writable bytes by the contract.
            unsafe { stats::write(out, stats_size, stats) };
        }
        status
    }
}

/// A timeout in milliseconds from C: `STREAMER_WAIT_FOREVER` is none.
pub(super) fn duration_from_c(timeout_ms: u32) -> Option<Duration> {
    (timeout_ms != STREAMER_WAIT_FOREVER).then(|| Duration::from_millis(timeout_ms.into()))
}

fn close_core(core: crate::Streamer, timeout_ms: u32) -> (i32, Stats) {
    match duration_from_c(timeout_ms) {
        None => {
            let stats = core.close();
            (status_of_stats(&stats), stats)
        }
        Some(limit) => status_of_bounded_close(core.close_timeout(limit)),
    }
}

/// The status of a bounded close (streamer or stream).
pub(super) fn status_of_bounded_close(closed: Result<Stats, Box<CloseError>>) -> (i32, Stats) {
    match closed {
        Ok(stats) => (status_of_stats(&stats), stats),
        Err(failed) if failed.threads_detached => (STREAMER_ERR_CLOSE_DETACHED, failed.stats),
        Err(failed) => (status_of(&failed.error), failed.stats),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_close_margin_in_the_header_is_the_cores() {
        assert_eq!(
            Duration::from_millis(STREAMER_CLOSE_MARGIN_MS.into()),
            crate::streamer::CLOSE_MARGIN
        );
    }
}
