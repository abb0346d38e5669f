//! How the library's own threads are scheduled.
//!
//! The threads this library starts (stream senders and receivers, the spare
//! buffer maker, data-server connections) do bulk work that may wait a moment; the thread that calls
//! `put` is usually a camera's acquisition loop, which may not. On Linux the
//! library's threads are therefore "batch" threads: waking one (as every `put`
//! does) never preempts the caller, so `put` returns at once instead of
//! waiting for the woken thread to be scheduled out.

/// Marks the calling thread as batch work. Elsewhere than Linux, and if the
/// system refuses, nothing changes.
pub(crate) fn yield_to_producers() {
    #[cfg(target_os = "linux")]
    {
        let param = libc::sched_param { sched_priority: 0 };
        // SAFETY: a plain system call on the calling thread (pid 0) with a valid parameter.
        unsafe {
            libc::sched_setscheduler(0, libc::SCHED_BATCH, &param);
        }
    }
}
