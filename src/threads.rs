//! How the library's own threads are scheduled.
//!
//! The threads this library starts (stream senders and receivers, the spare
//! buffer maker) do bulk work that may wait a moment; the thread that calls
//! `put` is usually a camera's acquisition loop, which may not. On Linux the
//! library's threads are therefore "batch" threads: waking one (as every `put`
//! does) never preempts the caller, so `put` returns at once instead of
//! waiting for the woken thread to be scheduled out.
//!
//! Elsewhere nothing changes, and the environment variable
//! [`NO_SCHED_BATCH_ENV`] set to `1` makes Linux do the same: for a system
//! where the batch policy hurts, and for the tests of that portable path
//! (tests/portable.rs). It may not touch any thread but the calling one.

/// Set to `1`, the library's threads keep the default scheduling policy (read once,
/// when the first of them starts).
pub const NO_SCHED_BATCH_ENV: &str = "PYME_STREAMING_NO_SCHED_BATCH";

/// Marks the calling thread as batch work. Elsewhere than Linux, when
/// [`NO_SCHED_BATCH_ENV`] says so, and if the system refuses, nothing changes.
pub(crate) fn yield_to_producers() {
    #[cfg(target_os = "linux")]
    if batch_wanted() {
        let param = libc::sched_param { sched_priority: 0 };
        // SAFETY: a plain system call on the calling thread (pid 0) with a valid parameter.
        unsafe {
            libc::sched_setscheduler(0, libc::SCHED_BATCH, &param);
        }
    }
}

/// Whether the batch policy is wanted: unless [`NO_SCHED_BATCH_ENV`] is `1`.
#[cfg(target_os = "linux")]
fn batch_wanted() -> bool {
    static WANTED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *WANTED.get_or_init(|| std::env::var_os(NO_SCHED_BATCH_ENV).is_none_or(|value| value != "1"))
}
