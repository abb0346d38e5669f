//! Zero-copy puts: a Python object's memory (buffer protocol) handed to the
//! library as `Bytes`, without copying it.
//!
//! The object's buffer is exported (`PyObject_GetBuffer`) when `put` takes it:
//! while exported, a `bytearray` or a numpy array cannot be resized or freed,
//! and the object is kept alive. The library drops its `Bytes` once the file
//! has its outcome, on one of its own threads, which does not hold the GIL;
//! releasing the export needs the GIL, so the drop only queues the export on
//! the [`ReleaseQueue`], and the queue is emptied by the next call into the
//! streamer that holds the GIL anyway (every `put`, `flush`, `close`, `stats`,
//! outcome callback), or, when no call comes for 10 ms, by a releaser thread
//! that takes the GIL. The library never reads the memory after the outcome.
//!
//! This module may not touch the memory it exports, only hand out the slice.
//!
//! The buffer functions are declared here rather than taken from pyo3-ffi:
//! they are in CPython's limited API only from 3.11, but `PyObject_GetBuffer`,
//! `PyBuffer_Release` and the `Py_buffer` layout are unchanged since 3.3 and
//! exported by every CPython 3 interpreter, so the abi3 (>= 3.9) wheel uses them.

#![allow(unsafe_code)]

use std::ffi::{c_char, c_int, c_void};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use pyo3::exceptions::{PyBufferError, PyTypeError};
use pyo3::prelude::*;

/// CPython's `Py_buffer`, as in `Include/pybuffer.h` (3.3 and later).
#[repr(C)]
struct RawBuffer {
    buf: *mut c_void,
    obj: *mut pyo3::ffi::PyObject,
    len: pyo3::ffi::Py_ssize_t,
    itemsize: pyo3::ffi::Py_ssize_t,
    readonly: c_int,
    ndim: c_int,
    format: *mut c_char,
    shape: *mut pyo3::ffi::Py_ssize_t,
    strides: *mut pyo3::ffi::Py_ssize_t,
    suboffsets: *mut pyo3::ffi::Py_ssize_t,
    internal: *mut c_void,
}

/// `PyBUF_C_CONTIGUOUS`: any format, C-contiguous memory (an exporter that
/// cannot give that refuses, so strided numpy views are refused, not copied).
const PYBUF_C_CONTIGUOUS: c_int = 0x0020 | 0x0010 | 0x0008;

extern "C" {
    fn PyObject_GetBuffer(
        obj: *mut pyo3::ffi::PyObject,
        view: *mut RawBuffer,
        flags: c_int,
    ) -> c_int;
    fn PyBuffer_Release(view: *mut RawBuffer);
}

/// An exported buffer. Boxed so its address never changes between export and
/// release (exporters may keep pointers into it).
struct Export(Box<RawBuffer>);

// SAFETY: the export is only read (buf, len) off the GIL; it is released only
// with the GIL held (ReleaseQueue::release_all). The memory stays valid and
// unmoved while exported.
unsafe impl Send for Export {}
unsafe impl Sync for Export {}

/// How long exports may wait for a call into the streamer before the releaser
/// thread takes the GIL to release them itself.
const IDLE_RELEASE: Duration = Duration::from_millis(10);

/// Exports whose file has its outcome, waiting for the GIL to be released.
#[derive(Default)]
pub struct ReleaseQueue {
    waiting: Mutex<Waiting>,
    /// How many wait: lets `release_all` skip the lock when none do.
    count: AtomicUsize,
    /// Signalled when the first export waits, and at stop.
    wake: Condvar,
    /// Counts calls of `release_all`: the releaser leaves the work to a caller
    /// that keeps calling in (a `put` loop) and steps in only when it stops.
    drains: AtomicU64,
}

#[derive(Default)]
struct Waiting {
    exports: Vec<Export>,
    stopping: bool,
    /// The releaser sleeps on `wake` (only then is a notification needed:
    /// the library's receiver threads push an export per file).
    releaser_asleep: bool,
}

impl ReleaseQueue {
    fn push(&self, export: Export) {
        let mut waiting = self.waiting.lock().unwrap_or_else(|e| e.into_inner());
        waiting.exports.push(export);
        self.count.store(waiting.exports.len(), Ordering::Release);
        if waiting.releaser_asleep {
            waiting.releaser_asleep = false;
            self.wake.notify_one();
        }
    }

    /// Releases every waiting export. Needs the GIL (the `py` token proves it).
    pub fn release_all(&self, _py: Python<'_>) {
        self.drains.fetch_add(1, Ordering::Relaxed);
        if self.count.load(Ordering::Acquire) == 0 {
            return;
        }
        let exports = {
            let mut waiting = self.waiting.lock().unwrap_or_else(|e| e.into_inner());
            self.count.store(0, Ordering::Release);
            std::mem::take(&mut waiting.exports)
        };
        for mut export in exports {
            // SAFETY: exported by PyObject_GetBuffer, released exactly once, GIL held.
            unsafe { PyBuffer_Release(&mut *export.0) };
        }
    }

    /// Starts the releaser thread: exports left waiting while no call into the
    /// streamer comes (the caller went idle) are released within about
    /// `IDLE_RELEASE`, so an array is let go soon after its outcome even if the
    /// program makes no further call. Stopped by [`ReleaseQueue::stop`].
    pub fn start_releaser(self: &Arc<Self>) -> std::io::Result<JoinHandle<()>> {
        let queue = Arc::clone(self);
        std::thread::Builder::new()
            .name("pyme-py-release".into())
            .spawn(move || queue.run_releaser())
    }

    fn run_releaser(&self) {
        loop {
            {
                let mut waiting = self.waiting.lock().unwrap_or_else(|e| e.into_inner());
                while waiting.exports.is_empty() && !waiting.stopping {
                    waiting.releaser_asleep = true;
                    waiting = self.wake.wait(waiting).unwrap_or_else(|e| e.into_inner());
                }
                waiting.releaser_asleep = false;
                if waiting.stopping {
                    return;
                }
            }
            let drains_before = self.drains.load(Ordering::Relaxed);
            std::thread::sleep(IDLE_RELEASE);
            let idle = self.drains.load(Ordering::Relaxed) == drains_before;
            if idle && self.count.load(Ordering::Acquire) > 0 {
                Python::attach(|py| self.release_all(py));
            }
        }
    }

    /// Stops the releaser thread (join it with the GIL released: it may be
    /// waiting for the GIL).
    pub fn stop(&self) {
        self.waiting
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .stopping = true;
        self.wake.notify_all();
    }
}

/// The owner handed to `Bytes::from_owner`: the exported memory, given back to
/// the release queue when the library drops it.
struct HeldBuffer {
    export: Option<Export>,
    queue: Arc<ReleaseQueue>,
}

impl AsRef<[u8]> for HeldBuffer {
    fn as_ref(&self) -> &[u8] {
        let Some(Export(view)) = &self.export else {
            return &[];
        };
        if view.len <= 0 || view.buf.is_null() {
            return &[];
        }
        // SAFETY: the exporter guarantees `len` readable bytes at `buf` while exported.
        unsafe { std::slice::from_raw_parts(view.buf as *const u8, view.len as usize) }
    }
}

impl Drop for HeldBuffer {
    fn drop(&mut self) {
        if let Some(export) = self.export.take() {
            self.queue.push(export);
        }
    }
}

/// The memory of `data` as `Bytes`, without a copy. `data` must support the
/// buffer protocol with C-contiguous memory (bytes, bytearray, memoryview,
/// numpy arrays, array.array...).
pub fn bytes_of(data: &Bound<'_, PyAny>, queue: &Arc<ReleaseQueue>) -> PyResult<bytes::Bytes> {
    if data.is_instance_of::<pyo3::types::PyString>() {
        return Err(PyTypeError::new_err(
            "data must be bytes-like (bytes, bytearray, memoryview, numpy array), not str: encode it first",
        ));
    }
    let mut view = Box::new(RawBuffer {
        buf: std::ptr::null_mut(),
        obj: std::ptr::null_mut(),
        len: 0,
        itemsize: 0,
        readonly: 0,
        ndim: 0,
        format: std::ptr::null_mut(),
        shape: std::ptr::null_mut(),
        strides: std::ptr::null_mut(),
        suboffsets: std::ptr::null_mut(),
        internal: std::ptr::null_mut(),
    });
    // SAFETY: GIL held (data is Bound), view points to a writable Py_buffer.
    let status = unsafe { PyObject_GetBuffer(data.as_ptr(), &mut *view, PYBUF_C_CONTIGUOUS) };
    if status != 0 {
        let cause = PyErr::take(data.py());
        let kind = data
            .get_type()
            .name()
            .map(|n| n.to_string())
            .unwrap_or_default();
        let err = if is_buffer_refusal(data.py(), &cause) {
            PyBufferError::new_err(format!(
                "data of type {kind} has no C-contiguous memory: pass a contiguous array (numpy.ascontiguousarray)"
            ))
        } else {
            PyTypeError::new_err(format!(
                "data must be bytes-like (bytes, bytearray, memoryview, C-contiguous numpy array), not {kind}"
            ))
        };
        if let Some(cause) = cause {
            err.set_cause(data.py(), Some(cause));
        }
        return Err(err);
    }
    Ok(bytes::Bytes::from_owner(HeldBuffer {
        export: Some(Export(view)),
        queue: Arc::clone(queue),
    }))
}

/// Whether the exporter refused the layout (it has a buffer, not a contiguous one).
fn is_buffer_refusal(py: Python<'_>, cause: &Option<PyErr>) -> bool {
    cause.as_ref().is_some_and(|err| {
        err.is_instance_of::<PyBufferError>(py)
            || err.is_instance_of::<pyo3::exceptions::PyValueError>(py)
    })
}
