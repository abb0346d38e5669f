//! The counters of one server of a streamer, for programs that draw their own
//! view of a cluster: [`Streamer::server_stats`](crate::Streamer::server_stats),
//! C's `streamer_server_stats` and Python's `Streamer.server_stats` read them
//! here.
//!
//! Each link owns one `ServerCounters`: plain atomics, written where the
//! link's files move (under the link's lock, or by the thread that finishes a
//! file) and read with `Relaxed` loads, so that reading them takes no lock a
//! put takes and can be done often (a UI polling at 1 kHz) without slowing
//! puts down. A reading is not one snapshot: each counter is exact, but two
//! of them may be read a file apart while files move. Once the streamer is
//! idle (after `flush`) they agree with each other and with `Stats`.
//!
//! In scope: the counters, their snapshot ([`ServerStats`]).
//! Out of scope: the state itself (see `server_state`), the totals of the
//! streamer (see `outcome::Counters`).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use super::server_state::ServerState;

/// The counters of one server now: from [`crate::Streamer::server_stats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerStats {
    /// The server's state now (as [`crate::Streamer::server_state`]).
    pub state: ServerState,
    /// Files this server acknowledged (2xx, or 405 for a re-sent file whose
    /// stored bytes were found equal).
    pub files_acknowledged: u64,
    /// Bytes (as given to put) of the files this server acknowledged.
    pub bytes_acknowledged: u64,
    /// Files whose final outcome was a failure given by this server: an
    /// answer that is not a success, a lost connection with nowhere to move
    /// the file, a filter error on its link. A file moved away and failed
    /// elsewhere counts on the other server; a file that failed in the spill
    /// folder counts on no server.
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
    /// (failover), or it kept answering 5xx after the retries.
    pub moved_away: u64,
}

/// The atomics behind [`ServerStats`], one set per link.
#[derive(Debug, Default)]
pub(crate) struct ServerCounters {
    files_acknowledged: AtomicU64,
    bytes_acknowledged: AtomicU64,
    files_failed: AtomicU64,
    bytes_failed: AtomicU64,
    queue_files: AtomicU64,
    queue_bytes: AtomicU64,
    in_flight_files: AtomicU64,
    in_flight_bytes: AtomicU64,
    files_sent: AtomicU64,
    bytes_sent: AtomicU64,
    reconnects: AtomicU64,
    retries: AtomicU64,
    moved_away: AtomicU64,
}

impl ServerCounters {
    pub fn acknowledged(&self, bytes: u64) {
        self.bytes_acknowledged.fetch_add(bytes, Relaxed);
        self.files_acknowledged.fetch_add(1, Relaxed);
    }

    pub fn failed(&self, bytes: u64) {
        self.bytes_failed.fetch_add(bytes, Relaxed);
        self.files_failed.fetch_add(1, Relaxed);
    }

    /// Files entered (`files` > 0) or left the queue; called under the
    /// link's lock, so the count never goes below zero.
    pub fn queue_changed(&self, files: i64, bytes: i64) {
        add_signed(&self.queue_files, files);
        add_signed(&self.queue_bytes, bytes);
    }

    /// As [`ServerCounters::queue_changed`], for the files in flight.
    pub fn in_flight_changed(&self, files: i64, bytes: i64) {
        add_signed(&self.in_flight_files, files);
        add_signed(&self.in_flight_bytes, bytes);
    }

    pub fn sent(&self, wire_bytes: u64) {
        self.files_sent.fetch_add(1, Relaxed);
        self.bytes_sent.fetch_add(wire_bytes, Relaxed);
    }

    pub fn reconnected(&self) {
        self.reconnects.fetch_add(1, Relaxed);
    }

    pub fn retried(&self) {
        self.retries.fetch_add(1, Relaxed);
    }

    pub fn moved_away(&self) {
        self.moved_away.fetch_add(1, Relaxed);
    }

    /// The counters now, with the state given by the caller (the link).
    pub fn read(&self, state: ServerState) -> ServerStats {
        ServerStats {
            state,
            files_acknowledged: self.files_acknowledged.load(Relaxed),
            bytes_acknowledged: self.bytes_acknowledged.load(Relaxed),
            files_failed: self.files_failed.load(Relaxed),
            bytes_failed: self.bytes_failed.load(Relaxed),
            queue_files: self.queue_files.load(Relaxed),
            queue_bytes: self.queue_bytes.load(Relaxed),
            in_flight_files: self.in_flight_files.load(Relaxed),
            in_flight_bytes: self.in_flight_bytes.load(Relaxed),
            files_sent: self.files_sent.load(Relaxed),
            bytes_sent: self.bytes_sent.load(Relaxed),
            reconnects: self.reconnects.load(Relaxed),
            retries: self.retries.load(Relaxed),
            moved_away: self.moved_away.load(Relaxed),
        }
    }
}

fn add_signed(counter: &AtomicU64, delta: i64) {
    if delta >= 0 {
        counter.fetch_add(delta.unsigned_abs(), Relaxed);
    } else {
        counter.fetch_sub(delta.unsigned_abs(), Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gauges_go_up_and_down_and_counters_only_up() {
        let counters = ServerCounters::default();
        counters.queue_changed(2, 300);
        counters.queue_changed(-1, -100);
        counters.in_flight_changed(1, 100);
        counters.sent(90);
        counters.acknowledged(100);
        counters.in_flight_changed(-1, -100);
        counters.failed(7);
        let now = counters.read(ServerState::Resting);
        assert_eq!(now.state, ServerState::Resting);
        assert_eq!((now.queue_files, now.queue_bytes), (1, 200));
        assert_eq!((now.in_flight_files, now.in_flight_bytes), (0, 0));
        assert_eq!((now.files_sent, now.bytes_sent), (1, 90));
        assert_eq!((now.files_acknowledged, now.bytes_acknowledged), (1, 100));
        assert_eq!((now.files_failed, now.bytes_failed), (1, 7));
    }
}
