//! `PymeStreamerStats` and `PymeStreamerServerStats` as C sees them, and how
//! they are written so that counters can be added without breaking programs
//! built against an older header (or LabVIEW clusters made from one).
//!
//! Every stats call takes the caller's `sizeof` of the struct: the library
//! writes only that many bytes (never more), and sets `size` to how many it
//! wrote, so a program built against a newer header, run with an older
//! library, knows which fields were filled. Fields are only ever appended,
//! and all are 64-bit, so the layout is the same with or without padding
//! (a LabVIEW cluster of U64/I64 maps it field by field).

use super::handle;
use super::status::{STREAMER_ERR_INVALID_ARGUMENT, STREAMER_ERR_NULL_ARGUMENT, STREAMER_OK};
use super::streamer::PymeStreamer;
use crate::{ServerState, ServerStats, Stats};

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
    size_holds_size_field(stats_size, "PymeStreamerStats")
}

fn size_holds_size_field(size: usize, name: &str) -> Result<(), (i32, String)> {
    if size < SMALLEST {
        return Err((
            STREAMER_ERR_INVALID_ARGUMENT,
            format!("stats_size {size} is smaller than {SMALLEST}: pass sizeof({name})"),
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
    // SAFETY: as this function's contract.
    unsafe { write_prefix(out, n, &full) };
    STREAMER_OK
}

/// Copies the first `n` bytes of `full` to `out`.
///
/// # Safety
/// `out` holds `n` writable bytes; `n <= size_of::<T>()`.
unsafe fn write_prefix<T: Copy>(out: *mut T, n: usize, full: &T) {
    debug_assert!(n <= std::mem::size_of::<T>());
    // SAFETY: `out` holds `n` writable bytes by the contract, `full` holds
    // `size_of::<T>() >= n`; `full` is the caller's local, so they do not overlap.
    unsafe {
        std::ptr::copy_nonoverlapping((full as *const T).cast::<u8>(), out.cast::<u8>(), n);
    }
}

/// The counters of one server of a streamer (`streamer_server_stats`), for
/// programs that draw their own view of the cluster. Pass
/// `sizeof(PymeStreamerServerStats)` with it; new fields are only ever
/// appended. Every field is 64 bits (a LabVIEW cluster: one U64, one I64,
/// then U64s). Each counter is exact, but a reading is not one snapshot: two
/// counters may be read a file apart while files move; after
/// `streamer_flush` they agree with `PymeStreamerStats`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PymeStreamerServerStats {
    /// Written by the library: how many bytes of this struct it filled (its
    /// own `sizeof(PymeStreamerServerStats)`, or the caller's if smaller).
    pub size: u64,
    /// The server's state now: a `PymeStreamerServerState` (as
    /// `streamer_server_state` reads it).
    pub state: i64,
    /// Files this server acknowledged (2xx, or 405 for a re-sent file whose
    /// stored bytes were found equal).
    pub files_acknowledged: u64,
    /// Bytes (as given to put) of the files this server acknowledged.
    pub bytes_acknowledged: u64,
    /// Files whose final outcome was a failure given by this server (an
    /// error answer, a lost connection with nowhere to move the file, a
    /// filter error). A file moved away and failed elsewhere counts on the
    /// other server; a file failed in the spill folder counts on none.
    pub files_failed: u64,
    /// Bytes (as given to put) of the files counted in `files_failed`.
    pub bytes_failed: u64,
    /// Files waiting in this server's queue now, not yet sent.
    pub queue_files: u64,
    /// Bytes (as given to put) waiting in this server's queue now.
    pub queue_bytes: u64,
    /// Files sent to this server and waiting for its answer now.
    pub in_flight_files: u64,
    /// Bytes (as given to put) of the files in flight now.
    pub in_flight_bytes: u64,
    /// Requests written to this server's connections (a file sent again
    /// counts again).
    pub files_sent: u64,
    /// Body bytes written to this server's connections (after the filter).
    pub bytes_sent: u64,
    /// Connections to this server re-established after one ended.
    pub reconnects: u64,
    /// Files sent to this server again after it answered 5xx.
    pub retries: u64,
    /// Files this server handed to another server: its connection failed
    /// (failover), or it kept answering 5xx after its retries.
    pub moved_away: u64,
}

fn state_for_c(state: ServerState) -> i64 {
    super::server_state::state_for_c(state).into()
}

impl From<ServerStats> for PymeStreamerServerStats {
    fn from(stats: ServerStats) -> Self {
        PymeStreamerServerStats {
            size: std::mem::size_of::<PymeStreamerServerStats>() as u64,
            state: state_for_c(stats.state),
            files_acknowledged: stats.files_acknowledged,
            bytes_acknowledged: stats.bytes_acknowledged,
            files_failed: stats.files_failed,
            bytes_failed: stats.bytes_failed,
            queue_files: stats.queue_files,
            queue_bytes: stats.queue_bytes,
            in_flight_files: stats.in_flight_files,
            in_flight_bytes: stats.in_flight_bytes,
            files_sent: stats.files_sent,
            bytes_sent: stats.bytes_sent,
            reconnects: stats.reconnects,
            retries: stats.retries,
            moved_away: stats.moved_away,
        }
    }
}

/// Writes the counters of server `index` now to `*out`, `stats_size` bytes
/// of it at most (pass `sizeof(PymeStreamerServerStats)`; see its `size`).
/// It takes no lock that a put takes: poll it as often as a UI needs, from
/// any thread and from callbacks (a completion callback sees its own file
/// counted). `STREAMER_ERR_INVALID_ARGUMENT` when `index >=
/// streamer_n_servers` or `stats_size < 8`; `*out` is written only on
/// success. Consumes nothing.
///
/// # Safety
/// `streamer` is NULL or a valid handle; `out` is NULL or points to
/// `stats_size` writable bytes, aligned for `uint64_t`.
#[no_mangle]
pub unsafe extern "C" fn streamer_server_stats(
    streamer: *const PymeStreamer,
    index: usize,
    out: *mut PymeStreamerServerStats,
    stats_size: usize,
) -> i32 {
    ffi_panic_boundary! {
        // SAFETY: NULL or a valid handle by the contract.
        let Some(streamer) = (unsafe { handle::borrow(streamer) }) else {
            return STREAMER_ERR_NULL_ARGUMENT;
        };
        refuse_forked!(streamer);
        if out.is_null() {
            return STREAMER_ERR_NULL_ARGUMENT;
        }
        if let Err(failure) = size_holds_size_field(stats_size, "PymeStreamerServerStats") {
            return streamer.last_error().fail(failure);
        }
        let Some(stats) = streamer.server_stats(index) else {
            let n = streamer.n_servers();
            let message = format!("server index {index} is out of range: the streamer has {n} servers");
            return streamer.last_error().fail((STREAMER_ERR_INVALID_ARGUMENT, message));
        };
        let mut full = PymeStreamerServerStats::from(stats);
        let n = stats_size.min(std::mem::size_of::<PymeStreamerServerStats>());
        full.size = n as u64;
        // SAFETY: `out` holds `stats_size >= n` writable bytes by the contract.
        unsafe { write_prefix(out, n, &full) };
        STREAMER_OK
    }
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
