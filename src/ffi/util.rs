//! Small conversions shared by the exports: C strings in, the last-error slot,
//! text copied out into a caller's buffer.

use std::ffi::{c_char, CStr};
use std::sync::{Arc, Mutex};

use super::status::{STREAMER_ERR_NULL_ARGUMENT, STREAMER_ERR_UTF8, STREAMER_OK};

/// Borrows a NUL-terminated C string as UTF-8 text.
///
/// # Safety
/// `text` is NULL or points to a NUL-terminated string valid for `'a`.
pub(crate) unsafe fn c_str<'a>(text: *const c_char) -> Result<&'a str, (i32, String)> {
    if text.is_null() {
        return Err((
            STREAMER_ERR_NULL_ARGUMENT,
            "a string argument is NULL".into(),
        ));
    }
    CStr::from_ptr(text).to_str().map_err(|error| {
        (
            STREAMER_ERR_UTF8,
            format!("a string argument is not UTF-8: {error}"),
        )
    })
}

/// Borrows `len` bytes at `data`; NULL is allowed only with `len == 0`.
///
/// # Safety
/// `data` is NULL or points to `len` readable bytes valid for `'a`.
pub(crate) unsafe fn byte_slice<'a>(
    data: *const u8,
    len: usize,
) -> Result<&'a [u8], (i32, String)> {
    match (data.is_null(), len) {
        (true, 0) => Ok(&[]),
        (true, _) => Err((
            STREAMER_ERR_NULL_ARGUMENT,
            format!("data is NULL but len is {len}"),
        )),
        (false, _) => Ok(std::slice::from_raw_parts(data, len)),
    }
}

/// The detailed message of a handle's last failure. Shared (`Arc`) because the
/// library threads record the failures of files there too.
#[derive(Clone, Default)]
pub(crate) struct LastError(Arc<Mutex<String>>);

impl LastError {
    /// Records `message` and returns `status`, so a failing export can end with
    /// `return handle.last_error.set(code, message)`.
    pub fn set(&self, status: i32, message: impl Into<String>) -> i32 {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = message.into();
        status
    }

    /// Records a `(status, message)` pair as the conversion helpers return it.
    pub fn fail(&self, (status, message): (i32, String)) -> i32 {
        self.set(status, message)
    }

    /// Records a core error and returns its status code.
    pub fn error(&self, error: &crate::Error) -> i32 {
        self.set(super::status::status_of(error), error.to_string())
    }

    /// Copies the message as `streamer_last_error` documents.
    ///
    /// # Safety
    /// `buf` is NULL or points to `buf_len` writable bytes; `out_len` is NULL or valid.
    pub unsafe fn copy_out(&self, buf: *mut c_char, buf_len: usize, out_len: *mut usize) -> i32 {
        let message = self.0.lock().unwrap_or_else(|e| e.into_inner()).clone();
        copy_text(&message, buf, buf_len, out_len)
    }
}

/// Copies `text` into `buf` NUL-terminated, truncated at a UTF-8 character
/// boundary to fit, and writes the full length (without NUL) to `out_len`.
/// `buf` may be NULL when `buf_len` is 0 (to ask for the length only).
///
/// # Safety
/// `buf` is NULL or points to `buf_len` writable bytes; `out_len` is NULL or valid.
pub(crate) unsafe fn copy_text(
    text: &str,
    buf: *mut c_char,
    buf_len: usize,
    out_len: *mut usize,
) -> i32 {
    if out_len.is_null() || (buf.is_null() && buf_len > 0) {
        return STREAMER_ERR_NULL_ARGUMENT;
    }
    if buf_len > 0 {
        let mut n = text.len().min(buf_len - 1);
        while !text.is_char_boundary(n) {
            n -= 1;
        }
        std::ptr::copy_nonoverlapping(text.as_ptr(), buf.cast::<u8>(), n);
        *buf.add(n) = 0;
    }
    *out_len = text.len();
    STREAMER_OK
}

/// Moves `value` into a new heap handle for C.
pub(crate) fn into_handle<T>(value: T) -> *mut T {
    Box::into_raw(Box::new(value))
}
