//! Small conversions shared by the exports: C strings and byte buffers in, the
//! per-thread last-error messages, text copied out into a caller's buffer.

use std::collections::VecDeque;
use std::ffi::{c_char, CStr};
use std::sync::{Arc, Mutex};
use std::thread::ThreadId;

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
    // SAFETY: not NULL, and NUL-terminated and valid for 'a by the contract.
    let text = unsafe { CStr::from_ptr(text) };
    text.to_str().map_err(|error| {
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
        // SAFETY: not NULL, `len` readable bytes valid for 'a by the contract.
        (false, _) => Ok(unsafe { std::slice::from_raw_parts(data, len) }),
    }
}

/// How many threads' messages a handle remembers (the oldest goes first).
const THREADS_REMEMBERED: usize = 64;

/// The detailed message of the last failure on a handle, one per thread: what
/// `*_last_error` returns is the message of the last call that failed on the
/// calling thread (so two threads never read each other's), or, inside a
/// completion callback, the reason of that file's failure. Shared (`Arc`)
/// because the completion wrapper records file failures on library threads.
#[derive(Clone, Default)]
pub(crate) struct LastError(Arc<Mutex<VecDeque<(ThreadId, String)>>>);

impl LastError {
    /// Records `message` for the calling thread and returns `status`, so a
    /// failing export can end with `return handle.last_error.set(code, message)`.
    pub fn set(&self, status: i32, message: impl Into<String>) -> i32 {
        let me = std::thread::current().id();
        let mut slots = self.0.lock().unwrap_or_else(|e| e.into_inner());
        slots.retain(|(thread, _)| *thread != me);
        if slots.len() >= THREADS_REMEMBERED {
            slots.pop_front();
        }
        slots.push_back((me, message.into()));
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

    /// The calling thread's message ("" when none of its calls failed).
    pub fn message(&self) -> String {
        let me = std::thread::current().id();
        let slots = self.0.lock().unwrap_or_else(|e| e.into_inner());
        slots
            .iter()
            .find(|(thread, _)| *thread == me)
            .map(|(_, message)| message.clone())
            .unwrap_or_default()
    }

    /// Copies the calling thread's message as `streamer_last_error` documents.
    ///
    /// # Safety
    /// As [`copy_text`].
    pub unsafe fn copy_out(&self, buf: *mut c_char, buf_len: usize, out_len: *mut usize) -> i32 {
        // SAFETY: the caller's contract, passed on.
        unsafe { copy_text(&self.message(), buf, buf_len, out_len) }
    }
}

/// Copies `text` into `buf` NUL-terminated, truncated at a UTF-8 character
/// boundary to fit, and writes the full length (without NUL) to `out_len`
/// unless it is NULL. `buf` may be NULL when `buf_len` is 0 (to ask for the
/// length only).
///
/// # Safety
/// `buf` is NULL or points to `buf_len` writable bytes; `out_len` is NULL or valid.
pub(crate) unsafe fn copy_text(
    text: &str,
    buf: *mut c_char,
    buf_len: usize,
    out_len: *mut usize,
) -> i32 {
    if buf.is_null() && buf_len > 0 {
        return STREAMER_ERR_NULL_ARGUMENT;
    }
    if buf_len > 0 {
        let mut n = text.len().min(buf_len - 1);
        while !text.is_char_boundary(n) {
            n -= 1;
        }
        // SAFETY: `buf` holds `buf_len > n` writable bytes by the contract,
        // and does not overlap `text` (the library's own string).
        unsafe {
            std::ptr::copy_nonoverlapping(text.as_ptr(), buf.cast::<u8>(), n);
            *buf.add(n) = 0;
        }
    }
    // SAFETY: NULL or valid by the contract.
    if let Some(out_len) = unsafe { out_len.as_mut() } {
        *out_len = text.len();
    }
    STREAMER_OK
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_thread_reads_its_own_message() {
        let last_error = LastError::default();
        last_error.set(-1, "main failed");
        let other = last_error.clone();
        std::thread::spawn(move || {
            assert_eq!(other.message(), "");
            other.set(-2, "other failed");
            assert_eq!(other.message(), "other failed");
        })
        .join()
        .unwrap();
        assert_eq!(last_error.message(), "main failed");
    }

    #[test]
    fn a_handle_remembers_a_bounded_number_of_threads() {
        let last_error = LastError::default();
        for _ in 0..THREADS_REMEMBERED + 10 {
            let other = last_error.clone();
            std::thread::spawn(move || other.set(-1, "x"))
                .join()
                .unwrap();
        }
        let slots = last_error.0.lock().unwrap().len();
        assert_eq!(slots, THREADS_REMEMBERED);
    }
}
