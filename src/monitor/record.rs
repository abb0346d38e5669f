//! What the monitor knows of one server: its latest reading, whether its last poll
//! answered, the rates between its last two readings, and the history of rates over
//! the last [`HISTORY`] (in memory only: lost when the monitor restarts).
//!
//! Rates: data in is the growth of `bytes_stored` and files per second that of
//! `files_stored` between two readings (our servers). A counter that goes down, or an
//! uptime that does, means the server restarted: the rate is then the new count over
//! the time since the restart, and `restarts` counts it. PYME's server keeps no such
//! counters: its data in is the receive rate of its machine's network interfaces (as
//! its `Network` reports them), and its files per second is unknown.
//!
//! What this module may not do: touch the network or take the clock itself (times
//! are given), so it is tested here without either.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::reading::{Reading, Software};

/// How long rates are kept for the charts.
pub const HISTORY: Duration = Duration::from_secs(600);

/// The most points kept per server: ten minutes at one a second, both ends
/// included. With a shorter interval the oldest go first (the charts then cover
/// less than [`HISTORY`]), so memory stays bounded whatever the interval.
pub const MAX_POINTS: usize = 601;

/// A server whose last answer is older than its stale limit is down, whatever the
/// poll under way will say (the poller's thread may be stuck in a resolver). The
/// limit is one interval and one timeout (the longest a healthy server's answers
/// are apart) plus this slack: 2.5 s with the defaults.
pub const STALE_SLACK: Duration = Duration::from_millis(700);

/// The stale limit of a monitor polling every `interval` with `timeout`.
pub fn stale_after(interval: Duration, timeout: Duration) -> Duration {
    interval + timeout + STALE_SLACK
}

/// Where a server's data-in rate comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataIn {
    /// The growth of its count of bytes stored.
    Stored,
    /// Its machine's network receive rate (PYME's server).
    Network,
}

impl DataIn {
    pub fn name(self) -> &'static str {
        match self {
            DataIn::Stored => "stored",
            DataIn::Network => "network",
        }
    }
}

/// One point of a chart.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    pub at: Instant,
    pub bytes_per_s: Option<f64>,
    pub files_per_s: Option<f64>,
}

/// Everything known of one server.
#[derive(Debug, Default)]
pub struct Record {
    pub latest: Option<Reading>,
    /// When the last answered poll ended.
    pub last_ok: Option<Instant>,
    /// Why the last poll failed; `None` when it answered.
    pub last_error: Option<String>,
    pub polls_ok: u64,
    pub polls_failed: u64,
    pub restarts: u64,
    pub bytes_per_s: Option<f64>,
    pub files_per_s: Option<f64>,
    pub data_in: Option<DataIn>,
    pub points: VecDeque<Point>,
}

impl Record {
    /// Whether the server is up at `now`: its last poll answered, less than
    /// `stale_after` ago.
    pub fn is_up(&self, now: Instant, stale_after: Duration) -> bool {
        self.last_error.is_none()
            && self
                .last_ok
                .is_some_and(|at| now.saturating_duration_since(at) < stale_after)
    }

    /// A poll that answered with `reading` at `now`.
    pub fn answered(&mut self, reading: Reading, now: Instant) {
        let previous = self.latest.take().zip(self.last_ok);
        let seconds = |since: Instant| now.saturating_duration_since(since).as_secs_f64();
        let restarted = previous.as_ref().is_some_and(|(before, _)| {
            went_down(before.bytes_stored, reading.bytes_stored)
                || went_down(before.files_stored, reading.files_stored)
                || matches!((before.uptime_s, reading.uptime_s), (Some(a), Some(b)) if b + 0.5 < a)
        });
        if restarted {
            self.restarts += 1;
        }
        let rate = |count: fn(&Reading) -> Option<u64>| -> Option<f64> {
            let now_count = count(&reading)? as f64;
            let (before, at) = previous.as_ref()?;
            if restarted {
                // Counted since the restart: over the uptime, or the gap if shorter.
                let span = reading
                    .uptime_s
                    .unwrap_or(f64::INFINITY)
                    .min(seconds(*at))
                    .max(1e-3);
                return Some(now_count / span);
            }
            let before_count = count(before)? as f64;
            Some((now_count - before_count) / seconds(*at).max(1e-3))
        };
        let (bytes_per_s, data_in) = match reading.software {
            Software::Ours => (rate(|r| r.bytes_stored), Some(DataIn::Stored)),
            Software::Pyme => (reading.network_recv_bytes_per_s, Some(DataIn::Network)),
        };
        self.bytes_per_s = bytes_per_s;
        self.files_per_s = rate(|r| r.files_stored);
        self.data_in = data_in;
        self.latest = Some(reading);
        self.last_ok = Some(now);
        self.last_error = None;
        self.polls_ok += 1;
        self.push(Point {
            at: now,
            bytes_per_s: self.bytes_per_s,
            files_per_s: self.files_per_s,
        });
    }

    /// A poll that failed at `now` for `reason`. The latest reading is kept (shown
    /// greyed as the last known), the rates are no longer current.
    pub fn failed(&mut self, reason: String, now: Instant) {
        if self.last_error.is_none() {
            // A gap in the charts while the server is down.
            self.push(Point {
                at: now,
                bytes_per_s: None,
                files_per_s: None,
            });
        }
        self.last_error = Some(reason);
        self.bytes_per_s = None;
        self.files_per_s = None;
        self.polls_failed += 1;
    }

    fn push(&mut self, point: Point) {
        self.points.push_back(point);
        while self
            .points
            .front()
            .is_some_and(|p| point.at.saturating_duration_since(p.at) > HISTORY)
        {
            self.points.pop_front();
        }
        while self.points.len() > MAX_POINTS {
            self.points.pop_front();
        }
    }
}

fn went_down(before: Option<u64>, now: Option<u64>) -> bool {
    matches!((before, now), (Some(a), Some(b)) if b < a)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ours(bytes: u64, files: u64, uptime: f64) -> Reading {
        Reading {
            software: Software::Ours,
            computer_name: None,
            uptime_s: Some(uptime),
            disk_total_bytes: None,
            disk_free_bytes: None,
            bytes_stored: Some(bytes),
            files_stored: Some(files),
            connections_open: None,
            cpu_percent: None,
            memory_percent: None,
            network_recv_bytes_per_s: Some(5.0),
            network_send_bytes_per_s: None,
            version: None,
        }
    }

    #[test]
    fn rates_between_readings_and_across_a_restart() {
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let mut record = Record::default();
        record.answered(ours(0, 0, 10.0), at(0));
        assert_eq!(record.bytes_per_s, None, "one reading has no rate");
        record.answered(ours(2000, 20, 12.0), at(2));
        assert_eq!(record.bytes_per_s, Some(1000.0));
        assert_eq!(record.files_per_s, Some(10.0));
        assert_eq!(record.data_in, Some(DataIn::Stored));
        // Restarted 1 s ago: counted from zero.
        record.answered(ours(300, 3, 1.0), at(4));
        assert_eq!(record.restarts, 1);
        assert_eq!(record.bytes_per_s, Some(300.0));
        assert_eq!(record.files_per_s, Some(3.0));
        let stale = stale_after(Duration::from_secs(1), Duration::from_millis(800));
        assert_eq!(stale, Duration::from_millis(2500));
        assert!(record.is_up(at(4), stale));
        assert!(!record.is_up(at(4) + stale, stale), "stale");
        assert!(record.is_up(at(8), stale_after(Duration::from_secs(4), stale)));
        record.failed("no answer".into(), at(5));
        assert!(!record.is_up(at(5), stale));
        assert_eq!(record.bytes_per_s, None);
        assert_eq!(record.points.len(), 4, "three readings and a gap");
        record.failed("no answer".into(), at(6));
        assert_eq!(record.points.len(), 4, "one gap per outage");
        assert_eq!(record.polls_failed, 2);
    }

    #[test]
    fn pymes_data_in_is_its_network_and_history_is_ten_minutes() {
        let t0 = Instant::now();
        let mut record = Record::default();
        let mut pyme = ours(0, 0, 1.0);
        pyme.software = Software::Pyme;
        pyme.bytes_stored = None;
        pyme.files_stored = None;
        for s in 0..700 {
            record.answered(pyme.clone(), t0 + Duration::from_secs(s));
        }
        assert_eq!(record.bytes_per_s, Some(5.0));
        assert_eq!(record.files_per_s, None);
        assert_eq!(record.data_in, Some(DataIn::Network));
        assert_eq!(record.points.len(), 601);
    }

    #[test]
    fn history_is_bounded_in_points_whatever_the_interval() {
        let t0 = Instant::now();
        let mut record = Record::default();
        for tenth in 0..7000 {
            record.answered(
                ours(tenth, tenth, 1.0),
                t0 + Duration::from_millis(100 * tenth),
            );
        }
        assert_eq!(record.points.len(), MAX_POINTS);
        assert_eq!(
            record.points.back().unwrap().at,
            t0 + Duration::from_millis(100 * 6999),
            "the newest is kept"
        );
    }
}
