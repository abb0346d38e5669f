//! `PymeStreamerStats` as C sees it, and how it is written so that counters
//! can be added without breaking programs built against an older header (or
//! LabVIEW clusters made from one).
//!
//! Every stats call takes the caller's `sizeof(PymeStreamerStats)`: the library
//! writes only that many bytes (never more), and sets `size` to how many it
//! wrote, so a program built against a newer header, run with an older
//! library, knows which fields were filled. Fields are only ever appended,
//! and all are 64-bit, so the layout is the same with or without padding.

use super::status::{STREAMER_ERR_INVALID_ARGUMENT, STREAMER_OK};
use crate::Stats;

/// The statistics of a streamer or stream: counters since it was created, and
/// the queue depths now. Pass `sizeof(PymeStreamerStats)` with it to every
/// stats call; new fields are only ever appended.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PymeStreamerStats {
    /// Written by the library: how many bytes of this struct it filled (its
    /// own `sizeof(PymeStreamerStats)`, or the caller's if smaller).
    pub size: u64,
    /// Files accepted by put.
    pub files_queued: u64,
    /// Files whose request was written to a connection.
    pub files_sent: u64,
    /// Files acknowledged (2xx) by a server.
    pub files_acknowledged: u64,
    /// Files that failed (each had a completion with a non-OK status).
    pub files_failed: u64,
    /// Bytes accepted by put (before any filter).
    pub bytes_queued: u64,
    /// Body bytes written to connections (after the filter).
    pub bytes_sent: u64,
    /// Bytes (as given to put) of the acknowledged files.
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
    /// Re-sent files a server answered 405 whose stored bytes were read back
    /// and found equal to the file (they had landed before a failure); counted
    /// in `files_acknowledged` too.
    pub acknowledged_already: u64,
    /// Puts refused with `STREAMER_ERR_QUEUE_FULL`.
    pub dropped: u64,
    /// Files waiting in the spill folder now.
    pub spilled: u64,
    /// Files sent again after a connection failed while they were in flight:
    /// each may also have been stored by the first server, so after a failover
    /// a file can exist on two servers (at-least-once storage; still exactly
    /// one outcome per put). Added after `spilled`: read it only when `size`
    /// says it was written.
    pub resent_maybe_stored: u64,
}

/// The smallest `stats_size` accepted: room for `size` itself.
const SMALLEST: usize = std::mem::size_of::<u64>();

impl From<Stats> for PymeStreamerStats {
    fn from(stats: Stats) -> Self {
        PymeStreamerStats {
            size: std::mem::size_of::<PymeStreamerStats>() as u64,
            files_queued: stats.files_queued,
            files_sent: stats.files_sent,
            files_acknowledged: stats.files_acknowledged,
            files_failed: stats.files_failed,
            bytes_queued: stats.bytes_queued,
            bytes_sent: stats.bytes_sent,
            bytes_acknowledged: stats.bytes_acknowledged,
            queue_files: stats.queue_files,
            queue_bytes: stats.queue_bytes,
            in_flight_files: stats.in_flight_files,
            rerouted: stats.rerouted,
            reconnects: stats.reconnects,
            retries: stats.retries,
            acknowledged_already: stats.acknowledged_already,
            dropped: stats.dropped,
            spilled: stats.spilled,
            resent_maybe_stored: stats.resent_maybe_stored,
        }
    }
}

/// Whether a caller's `stats_size` can be written (it holds `size` at least).
pub(crate) fn size_is_valid(stats_size: usize) -> Result<(), (i32, String)> {
    if stats_size < SMALLEST {
        return Err((
            STREAMER_ERR_INVALID_ARGUMENT,
            format!("stats_size {stats_size} is smaller than {SMALLEST}: pass sizeof(PymeStreamerStats)"),
        ));
    }
    Ok(())
}

/// Writes `stats` into the caller's struct of `stats_size` bytes: at most
/// that many, and `size` says how many.
///
/// # Safety
/// `out` points to `stats_size` writable bytes, aligned for `u64`, and
/// `stats_size` passed [`size_is_valid`].
pub(crate) unsafe fn write(out: *mut PymeStreamerStats, stats_size: usize, stats: Stats) -> i32 {
    let mut full = PymeStreamerStats::from(stats);
    let n = stats_size.min(std::mem::size_of::<PymeStreamerStats>());
    full.size = n as u64;
    // SAFETY: `out` holds `stats_size >= n` writable bytes by the contract;
    // `full` is a local, so they do not overlap.
    unsafe {
        std::ptr::copy_nonoverlapping(
            (&full as *const PymeStreamerStats).cast::<u8>(),
            out.cast::<u8>(),
            n,
        );
    }
    STREAMER_OK
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_older_smaller_struct_is_written_only_as_far_as_it_goes() {
        // A caller built when the struct ended after `files_sent`, followed by
        // its own data, which must stay untouched.
        let mut memory = [0xAAu64; 6];
        let stats = Stats {
            files_queued: 5,
            files_sent: 4,
            files_acknowledged: 3,
            ..Stats::default()
        };
        let old_size = 3 * std::mem::size_of::<u64>();
        size_is_valid(old_size).unwrap();
        // SAFETY: `memory` holds 48 writable aligned bytes, more than `old_size`.
        unsafe { write(memory.as_mut_ptr().cast(), old_size, stats) };
        assert_eq!(&memory[..3], &[old_size as u64, 5, 4]);
        assert_eq!(&memory[3..], &[0xAAu64; 3], "beyond the caller's size");
        assert!(size_is_valid(4).is_err());
    }
}
