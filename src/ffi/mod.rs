//! The C ABI: what C, C++, LabVIEW and Micro-Manager see of this library.
//!
//! This layer only converts: pointers and lengths in, `int32_t` status codes out,
//! calls into the safe core. It holds no streaming logic. One file per concept:
//!
//! - `handle`: how C owns the library's objects (stated once: boxed handles,
//!   borrowed and given back through three helpers and the macros below).
//! - [`status`]: the status codes, and the one place core errors become codes.
//! - [`options`]: `PymeStreamerOptions`, the builder C fills before creating a streamer.
//! - [`callbacks`]: C function pointers wrapped as the core's distribution, filter,
//!   completion and release hooks (`PymeStreamerBuffer` lives here).
//! - [`streamer`]: `PymeStreamer`, many servers behind one put.
//! - [`stream`]: `PymeStream`, one server.
//! - [`server_state`]: `PymeStreamerServerState`, reading each server's state
//!   and the callback on every change.
//! - [`stats`]: `PymeStreamerStats` and `PymeStreamerServerStats` (per
//!   server, `streamer_server_stats`), and how they are written for callers
//!   of any size of them.
//! - `util`: C strings, the per-thread last-error messages, text copied out.
//! - `pin`: keeps this module loaded once the C API is used (its threads may
//!   outlive a `dlclose` / `FreeLibrary`).
//!
//! Every export runs its body inside `ffi_panic_boundary!`, which also pins the
//! module on the first call: no panic ever
//! unwinds into C. The header `include/pyme_streaming.h` is generated from these
//! files by cbindgen (see `build.rs`); doc comments here are the header's docs.
//!
//! Out of scope: any decision about files, servers or threads (the core's).

/// Runs an export's body, turning a panic into the return type's
/// [`PanicDefault`] (`STREAMER_ERR_PANIC` for status codes, 0 for counts, a
/// static string for text). Every `extern "C"` function uses it, so it is the
/// only place unwinding is stopped.
macro_rules! ffi_panic_boundary {
    ($($body:tt)*) => {
        $crate::ffi::pin::pin_this_module();
        match ::std::panic::catch_unwind(::std::panic::AssertUnwindSafe(|| { $($body)* })) {
            Ok(value) => value,
            Err(_) => $crate::ffi::PanicDefault::on_panic(),
        }
    };
}

/// Borrows a handle C passed (`*const` or `*mut`), returning
/// `STREAMER_ERR_NULL_ARGUMENT` from the export when it is NULL.
macro_rules! try_handle {
    ($ptr:expr) => {
        // SAFETY: every export's contract says a handle argument is NULL or a
        // live handle of its type, not being closed concurrently.
        match unsafe { $crate::ffi::handle::borrow($ptr) } {
            Some(handle) => handle,
            None => return $crate::ffi::status::STREAMER_ERR_NULL_ARGUMENT,
        }
    };
}

/// Returns `STREAMER_ERR_FORKED` from the export when the process is a child
/// forked after the handle was made: first of all, before any lock of the
/// handle is taken (a thread of the parent may have held it at the fork).
macro_rules! refuse_forked {
    ($handle:expr) => {
        if $handle.born.forked() {
            return $crate::ffi::status::STREAMER_ERR_FORKED;
        }
    };
}

/// Borrows a handle C passed for changing it (`*mut`), as [`try_handle!`].
macro_rules! try_handle_mut {
    ($ptr:expr) => {
        // SAFETY: as `try_handle!`; the export's contract also says no other
        // call uses this handle at the same time (options are filled from one thread).
        match unsafe { $crate::ffi::handle::borrow_mut($ptr) } {
            Some(handle) => handle,
            None => return $crate::ffi::status::STREAMER_ERR_NULL_ARGUMENT,
        }
    };
}

/// Borrows an out-parameter for writing, returning `STREAMER_ERR_NULL_ARGUMENT`
/// from the export when it is NULL.
macro_rules! try_out {
    ($ptr:expr) => {
        // SAFETY: every export's contract says an out-parameter is NULL or
        // points to writable memory of its type, not aliased during the call.
        match unsafe { $ptr.as_mut() } {
            Some(out) => out,
            None => return $crate::ffi::status::STREAMER_ERR_NULL_ARGUMENT,
        }
    };
}

/// Borrows a C string argument as UTF-8 (`Err((status, message))` for NULL or
/// invalid UTF-8).
macro_rules! c_string {
    ($ptr:expr) => {
        // SAFETY: every export's contract says a string argument is NULL or
        // NUL-terminated and valid for the call.
        unsafe { $crate::ffi::util::c_str($ptr) }
    };
}

/// Borrows a `(data, len)` argument as bytes (`Err` for NULL with `len > 0`).
macro_rules! bytes_arg {
    ($data:expr, $len:expr) => {
        // SAFETY: every export's contract says `data` is NULL or points to
        // `len` readable bytes valid for the call.
        unsafe { $crate::ffi::util::byte_slice($data, $len) }
    };
}

pub mod callbacks;
pub mod discovery;
mod handle;
pub mod options;
mod pin;
pub mod server_state;
pub mod stats;
pub mod status;
pub mod stream;
pub mod streamer;
mod util;

use std::ffi::c_char;

/// What an export returns when its body panicked.
pub(crate) trait PanicDefault {
    fn on_panic() -> Self;
}

impl PanicDefault for i32 {
    fn on_panic() -> Self {
        status::STREAMER_ERR_PANIC
    }
}

impl PanicDefault for usize {
    fn on_panic() -> Self {
        0
    }
}

impl PanicDefault for () {
    fn on_panic() -> Self {}
}

impl PanicDefault for *const c_char {
    fn on_panic() -> Self {
        c"internal error (panic)".as_ptr()
    }
}

#[cfg(test)]
mod tests {
    use super::status::{STREAMER_ERR_PANIC, STREAMER_OK};

    fn guarded(should_panic: bool) -> i32 {
        ffi_panic_boundary! {
            if should_panic {
                panic!("a bug");
            }
            STREAMER_OK
        }
    }

    fn guarded_count() -> usize {
        ffi_panic_boundary! { panic!("a bug") }
    }

    #[test]
    fn a_panic_becomes_a_status_or_a_neutral_value() {
        assert_eq!(guarded(false), STREAMER_OK);
        assert_eq!(guarded(true), STREAMER_ERR_PANIC);
        assert_eq!(guarded_count(), 0);
    }
}
