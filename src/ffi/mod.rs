//! The C ABI: what C, C++, LabVIEW and Micro-Manager see of this library.
//!
//! This layer only converts: pointers and lengths in, `int32_t` status codes out,
//! calls into the safe core. It holds no streaming logic. One file per concept:
//!
//! - [`status`]: the status codes, and the one place core errors become codes.
//! - [`options`]: `StreamerOptions`, the builder C fills before creating a streamer.
//! - [`callbacks`]: C function pointers wrapped as the core's distribution, filter,
//!   completion and release hooks (`StreamerBuffer` lives here).
//! - [`streamer`]: `Streamer`, many servers behind one put.
//! - [`stream`]: `Stream`, one server.
//! - `util`: C strings, the last-error slot, out-parameters.
//!
//! Every export runs its body inside `ffi_panic_boundary!`: no panic ever
//! unwinds into C. The header `include/pyme_streaming.h` is generated from these
//! files by cbindgen (see `build.rs`); doc comments here are the header's docs.

/// Runs an export's body, turning a panic into the return type's
/// [`PanicDefault`] (`STREAMER_ERR_PANIC` for status codes, 0 for counts, a
/// static string for text). Every `extern "C"` function uses it, so it is the
/// only place unwinding is stopped.
macro_rules! ffi_panic_boundary {
    ($($body:tt)*) => {
        match ::std::panic::catch_unwind(::std::panic::AssertUnwindSafe(|| { $($body)* })) {
            Ok(value) => value,
            Err(_) => $crate::ffi::PanicDefault::on_panic(),
        }
    };
}

/// Borrows a handle or input pointer, returning `STREAMER_ERR_NULL_ARGUMENT`
/// from the export when it is NULL.
macro_rules! try_ref {
    ($ptr:expr) => {
        match unsafe { $ptr.as_ref() } {
            Some(value) => value,
            None => return $crate::ffi::status::STREAMER_ERR_NULL_ARGUMENT,
        }
    };
}

/// Borrows a mutable handle or out-pointer, as [`try_ref!`].
macro_rules! try_mut {
    ($ptr:expr) => {
        match unsafe { $ptr.as_mut() } {
            Some(value) => value,
            None => return $crate::ffi::status::STREAMER_ERR_NULL_ARGUMENT,
        }
    };
}

pub mod callbacks;
pub mod discovery;
pub mod options;
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
