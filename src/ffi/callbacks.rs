//! C function pointers as the core's hooks: distribution, filter, completion,
//! and the release of caller-owned bytes (`streamer_put_nocopy`).
//!
//! The `user_data` pointers are the caller's: the library never reads them, only
//! hands them back. The caller promises (in the header) that its callbacks may
//! be called from the threads documented there; that promise is what makes the
//! `Send`/`Sync` impls below sound.

use std::ffi::{c_char, c_void, CString};

use super::status::{status_of, STREAMER_ERR_NULL_ARGUMENT, STREAMER_OK};
use crate::filter::{FileInfo, Filter, FilterError};
use crate::outcome::CallbackScope;
use crate::{Distribution, Outcome, OutcomeResult};

/// Chooses the server for a file: returns an index in `0..n_servers`.
///
/// - Thread: the thread that calls `streamer_put` / `streamer_put_nocopy`,
///   inside that call. Calls overlap when several threads put at once.
/// - Pointers: `name` is valid only during the call.
/// - `index` is the index given to put (negative: none). A result
///   `>= n_servers` fails that put with `STREAMER_ERR_DISTRIBUTION_OUT_OF_RANGE`.
/// - `n_servers` is the number of servers now: with live membership
///   (`streamer_options_set_discovery_period_ms`) it grows during the run as
///   servers join (indices never change), so compute with it on every call.
/// - May call: the same functions as a completion callback (see
///   `PymeStreamerCompletionFn`), though a put from here is rarely useful.
/// - The choice is where the file goes unless, with failover on (the
///   default), that server cannot take it soon: down, resting after 5xx
///   answers, or its queue full and no answer for 50 ms ("passed over").
///   Then the file goes to another live server with room and the function
///   is not called again. Turn failover off, or use `streamer_put_stream`,
///   where the choice must hold whatever happens.
pub type PymeStreamerDistributionFn = Option<
    unsafe extern "C" fn(
        user_data: *mut c_void,
        n_servers: usize,
        index: i64,
        name: *const c_char,
    ) -> usize,
>;

/// Transforms a file's bytes before they are sent: append the output to `out`
/// with `streamer_buffer_append` (it arrives empty). Return 0 on success; any
/// other value fails that file with `STREAMER_ERR_FILTER` (nothing is sent for it).
///
/// - Thread: the sender thread of the file's server. Calls for different
///   servers overlap; calls for one server do not.
/// - Pointers: `name`, `data` and `out` are valid only during the call.
/// - May call: the same functions as a completion callback (see
///   `PymeStreamerCompletionFn`). A slow filter slows its server only.
pub type PymeStreamerFilterFn = Option<
    unsafe extern "C" fn(
        user_data: *mut c_void,
        name: *const c_char,
        data: *const u8,
        len: usize,
        out: *mut PymeStreamerBuffer,
    ) -> i32,
>;

/// Called exactly once for every file a put accepted, when its outcome is known
/// (except after a bounded close reached its limit: see `streamer_close_timeout`).
///
/// `status` is `STREAMER_OK` when the server acknowledged the file, else the
/// reason (`STREAMER_ERR_HTTP`, `STREAMER_ERR_CONNECTION_LOST`,
/// `STREAMER_ERR_FILTER`...). `http_status` is the server's HTTP status, or 0
/// when there was no answer. `bytes` is the size given to put. `server_index`
/// is the server the file was last sent to, or `STREAMER_NO_SERVER` (`SIZE_MAX`)
/// for a file that failed in the spill folder without being sent.
///
/// - Thread: a library thread (the receiver or sender of the file's server),
///   or the thread calling close for files that end during close. Calls for
///   different servers overlap; calls for one server do not.
/// - Pointers: `name` is valid only during the call.
/// - It should return quickly: it holds up the answers of its server.
/// - May call (re-entrancy contract, tested): `*_stats`, `*_last_error` (it
///   gives this file's failure message), `streamer_status_str`,
///   `streamer_version`, `streamer_n_servers`, `streamer_server_state`,
///   `streamer_server_stats` (this file already counted), and puts, which never wait
///   there: a full queue returns `STREAMER_ERR_QUEUE_FULL` at once. `*_flush`,
///   `*_close`, `*_close_stats`, `*_close_timeout` and `stream_finalize` of any
///   handle return `STREAMER_ERR_IN_CALLBACK` at once and do nothing (they
///   would wait for this very callback); the handle stays valid.
/// - Must not: throw a C++ exception or longjmp out of the call.
pub type PymeStreamerCompletionFn = Option<
    unsafe extern "C" fn(
        user_data: *mut c_void,
        name: *const c_char,
        server_index: usize,
        status: i32,
        http_status: i32,
        bytes: u64,
    ),
>;

/// Gives caller-owned bytes back (`streamer_put_nocopy`): called exactly once,
/// with the `data` and `len` given to put, when the library no longer needs them.
///
/// - Thread: a library thread after the file's outcome (possibly just after
///   its completion callback, and possibly after `streamer_flush` returned);
///   the thread calling put, before put returns, when the put fails; or the
///   thread calling close, for files given up by a bounded close.
/// - Every release has happened when `streamer_close` returns (and when
///   `streamer_close_timeout` returns without `STREAMER_ERR_CLOSE_DETACHED`).
/// - May call: the same functions as a completion callback.
pub type PymeStreamerReleaseFn =
    Option<unsafe extern "C" fn(user_data: *mut c_void, data: *const u8, len: usize)>;

/// The output buffer of a filter callback. Valid only during that call.
pub struct PymeStreamerBuffer {
    out: *mut Vec<u8>,
}

impl PymeStreamerBuffer {
    /// The filter's output vector.
    ///
    /// # Safety
    /// `self` is the buffer of the running filter callback (`out` points to
    /// the core's vector, borrowed for that call).
    unsafe fn vec(&mut self) -> &mut Vec<u8> {
        // SAFETY: the contract above; the vector outlives the callback.
        unsafe { &mut *self.out }
    }
}

/// Appends `len` bytes at `data` to a filter's output buffer.
/// Consumes nothing: the bytes are copied.
///
/// # Safety
/// `out` is the buffer passed to the running filter callback; `data` points to
/// `len` readable bytes (it may be NULL when `len` is 0).
#[no_mangle]
pub unsafe extern "C" fn streamer_buffer_append(
    out: *mut PymeStreamerBuffer,
    data: *const u8,
    len: usize,
) -> i32 {
    ffi_panic_boundary! {
        let out = try_out!(out);
        // SAFETY: `data` points to `len` readable bytes by the contract.
        let Ok(data) = (unsafe { super::util::byte_slice(data, len) }) else {
            return STREAMER_ERR_NULL_ARGUMENT;
        };
        // SAFETY: `out` is the running filter's buffer by the contract.
        unsafe { out.vec() }.extend_from_slice(data);
        STREAMER_OK
    }
}

/// Reserves room for `additional` more bytes in a filter's output buffer, so a
/// filter that knows its output size appends without reallocation.
/// Consumes nothing.
///
/// # Safety
/// `out` is the buffer passed to the running filter callback.
#[no_mangle]
pub unsafe extern "C" fn streamer_buffer_reserve(
    out: *mut PymeStreamerBuffer,
    additional: usize,
) -> i32 {
    ffi_panic_boundary! {
        let out = try_out!(out);
        // SAFETY: `out` is the running filter's buffer by the contract.
        unsafe { out.vec() }.reserve(additional);
        STREAMER_OK
    }
}

/// The number of bytes in a filter's output buffer so far (0 for NULL).
/// Consumes nothing.
///
/// # Safety
/// `out` is NULL or the buffer passed to the running filter callback.
#[no_mangle]
pub unsafe extern "C" fn streamer_buffer_len(out: *const PymeStreamerBuffer) -> usize {
    ffi_panic_boundary! {
        // SAFETY: `out` is NULL or the running filter's buffer by the contract,
        // whose vector outlives the call.
        match unsafe { out.as_ref() } {
            Some(out) => unsafe { (*out.out).len() },
            None => 0,
        }
    }
}

/// A caller's `user_data` pointer, handed back untouched.
#[derive(Clone, Copy)]
pub(crate) struct UserData(pub *mut c_void);

// SAFETY: the library only passes the pointer back to the caller's callbacks;
// the header tells the caller those run on library threads.
unsafe impl Send for UserData {}
unsafe impl Sync for UserData {}

/// A distribution index as C sees it: negative means none.
pub(crate) fn index_from_c(index: i64) -> Option<i64> {
    (index >= 0).then_some(index)
}

fn name_for_c(name: &str) -> CString {
    // Names passed validation, which refuses NUL; an empty string is the safe fallback.
    CString::new(name).unwrap_or_default()
}

/// A C distribution callback as a core [`Distribution`].
pub(crate) struct CDistribution {
    pub function: unsafe extern "C" fn(*mut c_void, usize, i64, *const c_char) -> usize,
    pub user_data: UserData,
}

impl Distribution for CDistribution {
    fn choose(&self, n_servers: usize, index: Option<i64>, name: &str) -> usize {
        let name = name_for_c(name);
        let _inside = CallbackScope::enter();
        // SAFETY: the caller gave a function of this signature; `name` outlives the call.
        unsafe {
            (self.function)(
                self.user_data.0,
                n_servers,
                index.unwrap_or(-1),
                name.as_ptr(),
            )
        }
    }
}

/// A C filter callback as a core [`Filter`].
pub(crate) struct CFilter {
    pub function: unsafe extern "C" fn(
        *mut c_void,
        *const c_char,
        *const u8,
        usize,
        *mut PymeStreamerBuffer,
    ) -> i32,
    pub user_data: UserData,
}

impl Filter for CFilter {
    fn apply(
        &self,
        file: &FileInfo<'_>,
        data: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), FilterError> {
        let name = name_for_c(file.name);
        let mut buffer = PymeStreamerBuffer { out };
        let _inside = CallbackScope::enter();
        // SAFETY: every pointer passed lives until the callback returns; the
        // buffer is used only through `streamer_buffer_*` during the call.
        let code = unsafe {
            (self.function)(
                self.user_data.0,
                name.as_ptr(),
                data.as_ptr(),
                data.len(),
                &mut buffer,
            )
        };
        match code {
            0 => Ok(()),
            code => Err(FilterError(format!("the filter callback returned {code}"))),
        }
    }
}

/// A C completion callback, called with an outcome.
#[derive(Clone, Copy)]
pub(crate) struct CCompletion {
    pub function: unsafe extern "C" fn(*mut c_void, *const c_char, usize, i32, i32, u64),
    pub user_data: UserData,
}

impl CCompletion {
    pub fn call(&self, outcome: &Outcome<'_>) {
        let status = match outcome.result {
            OutcomeResult::Acknowledged { .. } => STREAMER_OK,
            OutcomeResult::Failed(error) => status_of(error),
        };
        let http_status = outcome.http_status().map_or(0, i32::from);
        let name = name_for_c(outcome.name);
        // SAFETY: the caller gave a function of this signature; `name` outlives the call.
        unsafe {
            (self.function)(
                self.user_data.0,
                name.as_ptr(),
                outcome.server,
                status,
                http_status,
                outcome.bytes,
            )
        }
    }
}

/// Caller-owned bytes lent to the library (`streamer_put_nocopy`): the owner of
/// a `Bytes`, whose drop gives them back through the release callback.
pub(crate) struct LentBytes {
    pub data: *const u8,
    pub len: usize,
    pub release: PymeStreamerReleaseFn,
    pub user_data: UserData,
}

// SAFETY: the caller promises the bytes stay valid and unchanged until the
// release callback, which may run on any thread (documented in the header).
unsafe impl Send for LentBytes {}
unsafe impl Sync for LentBytes {}

impl AsRef<[u8]> for LentBytes {
    fn as_ref(&self) -> &[u8] {
        if self.data.is_null() {
            return &[];
        }
        // SAFETY: see the `Send` impl; NULL was handled above.
        unsafe { std::slice::from_raw_parts(self.data, self.len) }
    }
}

impl Drop for LentBytes {
    fn drop(&mut self) {
        if let Some(release) = self.release {
            let _inside = CallbackScope::enter();
            // SAFETY: the caller's release function, called exactly once (here).
            unsafe { release(self.user_data.0, self.data, self.len) }
        }
    }
}

/// PYME's round-robin policy as a plain function: `index % n_servers` for
/// `index >= 0`, a random server for `index < 0`; 0 when `n_servers` is 0.
/// Usable from a distribution callback that wants round-robin for some files.
/// Consumes nothing.
#[no_mangle]
pub extern "C" fn distribution_function_round_robin(n_servers: usize, index: i64) -> usize {
    ffi_panic_boundary! {
        crate::distribution::round_robin(n_servers, index_from_c(index))
    }
}
