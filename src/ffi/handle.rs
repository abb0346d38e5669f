//! How C owns the library's objects, stated once (as rustls-ffi's
//! `Castable`/`OwnershipBox`).
//!
//! A handle (`PymeStreamerOptions`, `PymeStreamer`, `PymeStream`) is a Rust
//! value moved to the heap by its `*_new` function: C holds the only pointer
//! until it gives it back to `*_free` / `*_close`. In between, exports borrow
//! it. These three helpers are the only places that turn a handle pointer
//! into a reference or back into a `Box`; exports reach them through the
//! `try_handle!`, `try_handle_mut!` macros and [`take`].
//!
//! Out of scope: out-parameters and buffers (plain pointers, see `util`).

/// A Rust type that C holds by an opaque pointer from [`BoxedHandle::into_ptr`].
pub(crate) trait BoxedHandle: Sized {
    /// Moves `self` to the heap and hands ownership to C.
    fn into_ptr(self) -> *mut Self {
        Box::into_raw(Box::new(self))
    }
}

/// Borrows a handle; `None` for NULL.
///
/// # Safety
/// `ptr` is NULL or came from [`BoxedHandle::into_ptr`] and was not given back
/// with [`take`]; nothing frees it during `'a`.
pub(crate) unsafe fn borrow<'a, T: BoxedHandle>(ptr: *const T) -> Option<&'a T> {
    // SAFETY: the caller's contract above.
    unsafe { ptr.as_ref() }
}

/// Borrows a handle for changing it; `None` for NULL.
///
/// # Safety
/// As [`borrow`], and no other reference to it is used during `'a`.
pub(crate) unsafe fn borrow_mut<'a, T: BoxedHandle>(ptr: *mut T) -> Option<&'a mut T> {
    // SAFETY: the caller's contract above.
    unsafe { ptr.as_mut() }
}

/// Takes a handle back from C (in `*_free` / `*_close`); `None` for NULL.
///
/// # Safety
/// `ptr` is NULL or came from [`BoxedHandle::into_ptr`]; C does not use it
/// again, and no other call is using it now.
pub(crate) unsafe fn take<T: BoxedHandle>(ptr: *mut T) -> Option<Box<T>> {
    if ptr.is_null() {
        return None;
    }
    // SAFETY: not NULL, made by `Box::into_raw` in `into_ptr`, given back once.
    Some(unsafe { Box::from_raw(ptr) })
}
