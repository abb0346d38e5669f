//! What happened to each file, and the running statistics.
//!
//! Every file accepted by `put` ends in exactly one [`Outcome`]: acknowledged by
//! its server, or failed with a reason. The outcome is counted here and handed to
//! the completion callback, if one is set.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering, Ordering::SeqCst};
use std::sync::Arc;

use crate::Error;

/// How a file ended.
#[derive(Debug, Clone, Copy)]
pub enum OutcomeResult<'a> {
    /// The server answered 2xx.
    Acknowledged { http_status: u16 },
    /// The file was not stored (or it is not known that it was).
    Failed(&'a Error),
}

/// The `server` of an outcome that no server gave: a file that failed in the
/// spill folder, never sent to any server.
pub const NO_SERVER: usize = usize::MAX;

/// The end of one file, as handed to the completion callback.
#[derive(Debug, Clone, Copy)]
pub struct Outcome<'a> {
    /// The name given to `put`.
    pub name: &'a str,
    /// The index of the server it was sent to (0 for a lone [`crate::Stream`]),
    /// or [`NO_SERVER`] for a file that failed in the spill folder.
    pub server: usize,
    /// The size of the file as given to `put` (before any filter).
    pub bytes: u64,
    pub result: OutcomeResult<'a>,
}

impl Outcome<'_> {
    /// The HTTP status of the answer, if the server answered.
    pub fn http_status(&self) -> Option<u16> {
        match self.result {
            OutcomeResult::Acknowledged { http_status } => Some(http_status),
            OutcomeResult::Failed(Error::Http { status, .. }) => Some(*status),
            OutcomeResult::Failed(_) => None,
        }
    }

    pub fn is_acknowledged(&self) -> bool {
        matches!(self.result, OutcomeResult::Acknowledged { .. })
    }
}

/// The completion callback. It runs on one of the library's threads (the
/// receiver of the file's stream, or the thread that found the failure); calls
/// for files of different servers may overlap. It should return quickly.
///
/// What it may call (see [`in_callback`]): `stats` and `put` work (a `put`
/// from a callback never waits for room: a full queue refuses it with
/// [`Error::QueueFull`] at once); `flush`, `close`, `close_timeout` and
/// `finalize` of any streamer or stream return [`Error::InCallback`] (or, for
/// the `close` that cannot return an error, close in the background) instead
/// of waiting for themselves.
pub type CompletionFn = Arc<dyn Fn(&Outcome<'_>) + Send + Sync>;

/// A snapshot of the statistics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Files accepted by `put`.
    pub files_queued: u64,
    /// Files whose request was written to a connection.
    pub files_sent: u64,
    /// Files acknowledged (2xx) by a server.
    pub files_acknowledged: u64,
    /// Files that failed.
    pub files_failed: u64,
    /// Bytes accepted by `put` (before any filter).
    pub bytes_queued: u64,
    /// Body bytes written to connections (after the filter).
    pub bytes_sent: u64,
    /// Bytes (as given to `put`) of the acknowledged files.
    pub bytes_acknowledged: u64,
    /// Files waiting in the queues now, not yet sent.
    pub queue_files: u64,
    /// Bytes waiting in the queues now, not yet sent.
    pub queue_bytes: u64,
    /// Files sent and waiting for their answer now.
    pub in_flight_files: u64,
    /// Files moved to another server after their server's connection failed.
    pub rerouted: u64,
    /// Connections re-established after a failure.
    pub reconnects: u64,
    /// Files sent again after a 5xx answer.
    pub retries: u64,
    /// Re-sent files the server answered 405 (already stored: it had landed
    /// before the failure). Counted in `files_acknowledged` too.
    pub acknowledged_already: u64,
    /// Files sent again after a connection failed while they were in flight
    /// (written, but not answered): each may have been stored by the first
    /// server too, so after a failover a file can exist on two servers
    /// (at-least-once storage; still exactly one outcome per put).
    pub resent_maybe_stored: u64,
    /// Puts refused because the queue was full (fail-fast backpressure or put timeout).
    pub dropped: u64,
    /// Files waiting in the spill folder now.
    pub spilled: u64,
}

impl Stats {
    /// Files accepted that have no outcome yet.
    pub fn pending(&self) -> u64 {
        self.files_queued
            .saturating_sub(self.files_acknowledged + self.files_failed)
    }

    /// True when every accepted file was acknowledged.
    pub fn all_acknowledged(&self) -> bool {
        self.files_acknowledged == self.files_queued
    }
}

/// The counters behind [`Stats`], shared by the threads of a streamer.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    files_queued: AtomicU64,
    files_sent: AtomicU64,
    files_acknowledged: AtomicU64,
    files_failed: AtomicU64,
    bytes_queued: AtomicU64,
    bytes_sent: AtomicU64,
    bytes_acknowledged: AtomicU64,
    pub rerouted: AtomicU64,
    pub reconnects: AtomicU64,
    pub retries: AtomicU64,
    pub acknowledged_already: AtomicU64,
    pub resent_maybe_stored: AtomicU64,
    pub dropped: AtomicU64,
}

impl Counters {
    pub fn add(counter: &AtomicU64) {
        counter.fetch_add(1, SeqCst);
    }

    pub fn queued(&self, bytes: u64) {
        self.files_queued.fetch_add(1, SeqCst);
        self.bytes_queued.fetch_add(bytes, SeqCst);
    }

    pub fn unqueued(&self, bytes: u64) {
        self.files_queued.fetch_sub(1, SeqCst);
        self.bytes_queued.fetch_sub(bytes, SeqCst);
    }

    pub fn sent(&self, wire_bytes: u64) {
        self.files_sent.fetch_add(1, SeqCst);
        self.bytes_sent.fetch_add(wire_bytes, SeqCst);
    }

    pub fn acknowledged(&self, bytes: u64) {
        self.bytes_acknowledged.fetch_add(bytes, SeqCst);
        self.files_acknowledged.fetch_add(1, SeqCst);
    }

    pub fn failed(&self) {
        self.files_failed.fetch_add(1, SeqCst);
    }

    /// The totals; the queue depths are filled in by the caller, who knows the queues.
    ///
    /// A consistent snapshot without a lock: a file is counted queued before
    /// it is sent, and sent before it has an outcome, so the counters are read
    /// in the opposite order (outcomes first, then sent, then queued). With
    /// sequentially consistent operations a snapshot therefore never shows
    /// more files acknowledged or failed than sent or queued.
    pub fn snapshot(&self) -> Stats {
        let files_acknowledged = self.files_acknowledged.load(SeqCst);
        let bytes_acknowledged = self.bytes_acknowledged.load(SeqCst);
        let files_failed = self.files_failed.load(SeqCst);
        let files_sent = self.files_sent.load(SeqCst);
        let bytes_sent = self.bytes_sent.load(SeqCst);
        let files_queued = self.files_queued.load(SeqCst);
        let bytes_queued = self.bytes_queued.load(SeqCst);
        Stats {
            files_queued,
            files_sent,
            files_acknowledged,
            files_failed,
            bytes_queued,
            bytes_sent,
            bytes_acknowledged,
            rerouted: self.rerouted.load(SeqCst),
            reconnects: self.reconnects.load(SeqCst),
            retries: self.retries.load(SeqCst),
            acknowledged_already: self.acknowledged_already.load(SeqCst),
            resent_maybe_stored: self.resent_maybe_stored.load(SeqCst),
            dropped: self.dropped.load(SeqCst),
            ..Stats::default()
        }
    }
}

thread_local! {
    /// How many library callbacks this thread is inside now (nested when a
    /// callback of one streamer runs another's close).
    static CALLBACK_DEPTH: Cell<u32> = const { Cell::new(0) };
}

/// True on a thread that is inside a callback the library called (a
/// completion callback, or, from C, any callback). There, waiting for files to
/// end could wait for this very callback: `flush`, `close` and `finalize`
/// refuse with [`Error::InCallback`], and `put` does not wait for room.
pub fn in_callback() -> bool {
    CALLBACK_DEPTH.with(|depth| depth.get() > 0)
}

/// Marks the current thread as inside a callback until dropped.
pub(crate) struct CallbackScope(());

impl CallbackScope {
    pub(crate) fn enter() -> CallbackScope {
        CALLBACK_DEPTH.with(|depth| depth.set(depth.get() + 1));
        CallbackScope(())
    }
}

impl Drop for CallbackScope {
    fn drop(&mut self) {
        CALLBACK_DEPTH.with(|depth| depth.set(depth.get() - 1));
    }
}

/// Counts an outcome and hands it to the callback.
pub(crate) struct Reporter {
    pub counters: Arc<Counters>,
    completion: Option<CompletionFn>,
    /// Set when a bounded close reached its limit: from then on no completion
    /// callback starts (outcomes are still counted), so that the close can
    /// return without waiting for user code.
    silenced: AtomicBool,
}

impl Reporter {
    pub fn new(counters: Arc<Counters>, completion: Option<CompletionFn>) -> Reporter {
        Reporter {
            counters,
            completion,
            silenced: AtomicBool::new(false),
        }
    }

    /// No completion callback starts after this returns.
    pub fn silence(&self) {
        self.silenced.store(true, Ordering::SeqCst);
    }

    /// No callback may start any more (see [`Reporter::silence`]).
    pub fn is_silenced(&self) -> bool {
        self.silenced.load(Ordering::SeqCst)
    }

    pub fn report(&self, outcome: &Outcome<'_>) {
        match outcome.result {
            OutcomeResult::Acknowledged { .. } => self.counters.acknowledged(outcome.bytes),
            OutcomeResult::Failed(_) => self.counters.failed(),
        }
        if self.silenced.load(Ordering::SeqCst) {
            return;
        }
        if let Some(completion) = &self.completion {
            let _inside = CallbackScope::enter();
            // A panic in the caller's callback must not take down the library
            // thread that reports (every later file would wait on it forever).
            let call = std::panic::AssertUnwindSafe(|| completion(outcome));
            let _ = std::panic::catch_unwind(call);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Files are queued and acknowledged on one thread while another takes
    /// snapshots: no snapshot may show more outcomes than files queued.
    #[test]
    fn a_snapshot_never_shows_more_outcomes_than_files_queued() {
        let counters = Arc::new(Counters::default());
        let stop = Arc::new(AtomicBool::new(false));
        let worker = {
            let (counters, stop) = (Arc::clone(&counters), Arc::clone(&stop));
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    counters.queued(10);
                    counters.sent(10);
                    counters.acknowledged(10);
                }
            })
        };
        for _ in 0..200_000 {
            let stats = counters.snapshot();
            assert!(
                stats.files_acknowledged + stats.files_failed <= stats.files_queued,
                "{stats:?}"
            );
            assert!(stats.files_sent <= stats.files_queued, "{stats:?}");
            assert!(stats.bytes_acknowledged <= stats.bytes_queued, "{stats:?}");
        }
        stop.store(true, Ordering::Relaxed);
        worker.join().unwrap();
    }

    #[test]
    fn the_callback_marker_nests_and_ends_with_its_scope() {
        assert!(!in_callback());
        {
            let _outer = CallbackScope::enter();
            {
                let _inner = CallbackScope::enter();
                assert!(in_callback());
            }
            assert!(in_callback());
        }
        assert!(!in_callback());
    }
}
