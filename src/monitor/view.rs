//! What the monitor serves, made from the records: `/api/status` (the JSON the page
//! reads; every field is documented in docs/MONITOR.md) and `/metrics` (Prometheus
//! text, each sample labelled `server="host:port"`).
//!
//! What this module may not do: poll, or hold more than one record's lock at a time.

use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use super::record::{stale_after, Record, HISTORY};
use super::{Shared, Watched};
use crate::prometheus::{self, server as metric, Sample};

/// One server at one moment: what its record says, copied out of the lock.
struct Snapshot {
    address: String,
    name: Option<String>,
    up: bool,
    error: Option<String>,
    last_seen_s: Option<f64>,
    record: RecordCopy,
}

/// The parts of a record the views use.
struct RecordCopy {
    latest: Option<super::reading::Reading>,
    restarts: u64,
    polls_ok: u64,
    polls_failed: u64,
    bytes_per_s: Option<f64>,
    files_per_s: Option<f64>,
    data_in: Option<&'static str>,
    /// (seconds before now, bytes/s, files/s).
    history: Vec<(f64, Option<f64>, Option<f64>)>,
}

fn snapshots(shared: &Shared, now: Instant) -> Vec<Snapshot> {
    let stale = stale_after(shared.config.interval, shared.config.timeout);
    let servers: Vec<Arc<Watched>> = shared
        .servers
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    servers
        .iter()
        .map(|server| {
            let name = server
                .name
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone();
            let advertised = server.advertised.load(Ordering::Relaxed);
            let record = server.record.lock().unwrap_or_else(PoisonError::into_inner);
            let up = advertised && record.is_up(now, stale);
            let error = if !advertised {
                Some("no longer advertised".to_owned())
            } else if up {
                None
            } else {
                Some(down_reason(&record, now))
            };
            Snapshot {
                address: server.address.clone(),
                name,
                up,
                error,
                last_seen_s: record
                    .last_ok
                    .map(|at| now.saturating_duration_since(at).as_secs_f64()),
                record: RecordCopy {
                    latest: record.latest.clone(),
                    restarts: record.restarts,
                    polls_ok: record.polls_ok,
                    polls_failed: record.polls_failed,
                    bytes_per_s: if up { record.bytes_per_s } else { None },
                    files_per_s: if up { record.files_per_s } else { None },
                    data_in: record.data_in.map(|d| d.name()),
                    history: record
                        .points
                        .iter()
                        .filter(|p| now.saturating_duration_since(p.at) <= HISTORY)
                        .map(|p| {
                            (
                                now.saturating_duration_since(p.at).as_secs_f64(),
                                p.bytes_per_s,
                                p.files_per_s,
                            )
                        })
                        .collect(),
                },
            }
        })
        .collect()
}

fn down_reason(record: &Record, now: Instant) -> String {
    match (&record.last_error, record.last_ok) {
        (Some(error), _) => error.clone(),
        (None, None) => "not polled yet".to_owned(),
        (None, Some(at)) => format!(
            "no answer for {:.1} s",
            now.saturating_duration_since(at).as_secs_f64()
        ),
    }
}

fn unix_seconds(at: SystemTime) -> f64 {
    at.duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Rounds a rate for the JSON (three decimals are plenty for a page).
fn round(value: Option<f64>) -> Value {
    value
        .filter(|v| v.is_finite())
        .map_or(Value::Null, |v| json!((v * 1000.0).round() / 1000.0))
}

/// The JSON of `/api/status`.
pub(crate) fn status_json(shared: &Shared) -> String {
    let now = Instant::now();
    let snapshots = snapshots(shared, now);
    let mut totals = (0usize, 0.0f64, 0.0f64, 0u64, 0u64);
    let servers: Vec<Value> = snapshots
        .iter()
        .map(|s| {
            let latest = s.record.latest.as_ref();
            if s.up {
                totals.0 += 1;
                totals.1 += s.record.bytes_per_s.unwrap_or(0.0);
                totals.2 += s.record.files_per_s.unwrap_or(0.0);
                // A server may report anything up to u64::MAX: saturate, never wrap.
                let free = latest.and_then(|r| r.disk_free_bytes).unwrap_or(0);
                let total = latest.and_then(|r| r.disk_total_bytes).unwrap_or(0);
                totals.3 = totals.3.saturating_add(free);
                totals.4 = totals.4.saturating_add(total);
            }
            let disk_used_fraction = latest.and_then(|r| {
                let total = r.disk_total_bytes.filter(|t| *t > 0)? as f64;
                Some(1.0 - r.disk_free_bytes? as f64 / total)
            });
            let history = &s.record.history;
            json!({
                "server": s.address,
                "name": s.name,
                "up": s.up,
                "state": if s.up { "up" } else { "down" },
                "error": s.error,
                "last_seen_s_ago": round(s.last_seen_s),
                "software": latest.map(|r| r.software.name()),
                "version": latest.and_then(|r| r.version.clone()),
                "computer_name": latest.and_then(|r| r.computer_name.clone()),
                "uptime_s": round(latest.and_then(|r| r.uptime_s)),
                "disk_total_bytes": latest.and_then(|r| r.disk_total_bytes),
                "disk_free_bytes": latest.and_then(|r| r.disk_free_bytes),
                "disk_used_fraction": round(disk_used_fraction),
                "disk_over_90_percent": disk_used_fraction.is_some_and(|f| f > 0.9),
                "bytes_stored": latest.and_then(|r| r.bytes_stored),
                "files_stored": latest.and_then(|r| r.files_stored),
                "connections_open": latest.and_then(|r| r.connections_open),
                "cpu_percent": round(latest.and_then(|r| r.cpu_percent)),
                "memory_percent": round(latest.and_then(|r| r.memory_percent)),
                "network_recv_bytes_per_s": round(latest.and_then(|r| r.network_recv_bytes_per_s)),
                "network_send_bytes_per_s": round(latest.and_then(|r| r.network_send_bytes_per_s)),
                "bytes_per_s": round(s.record.bytes_per_s),
                "files_per_s": round(s.record.files_per_s),
                "data_in": s.record.data_in,
                "restarts": s.record.restarts,
                "polls_ok": s.record.polls_ok,
                "polls_failed": s.record.polls_failed,
                "history": {
                    "seconds_ago": history.iter().map(|h| round(Some(h.0))).collect::<Vec<_>>(),
                    "bytes_per_s": history.iter().map(|h| round(h.1)).collect::<Vec<_>>(),
                    "files_per_s": history.iter().map(|h| round(h.2)).collect::<Vec<_>>(),
                },
            })
        })
        .collect();
    let config = &shared.config;
    json!({
        "monitor": {
            "version": crate::VERSION,
            "started_unix_s": unix_seconds(shared.started_unix),
            "uptime_s": round(Some(shared.started.elapsed().as_secs_f64())),
            "now_unix_s": unix_seconds(SystemTime::now()),
            "poll_interval_ms": config.interval.as_millis() as u64,
            "poll_timeout_ms": config.timeout.as_millis() as u64,
            "history_s": HISTORY.as_secs(),
            "serverfilter": config.discovery.as_ref().map(|d| d.serverfilter.clone()),
            "max_servers": config.max_servers,
        },
        "totals": {
            "servers": snapshots.len(),
            "servers_up": totals.0,
            "servers_left_out": shared.left_out(),
            "bytes_per_s": round(Some(totals.1)),
            "files_per_s": round(Some(totals.2)),
            "disk_free_bytes": totals.3,
            "disk_total_bytes": totals.4,
        },
        "servers": servers,
    })
    .to_string()
}

/// One figure of a reading, as a metric's value.
type Figure = fn(&super::reading::Reading) -> Option<f64>;

/// The text of `/metrics`. A down server has only `pyme_server_up 0`: its last
/// figures would be stale. PYME's servers have no stored-files counters.
pub(crate) fn metrics_text(shared: &Shared) -> String {
    let now = Instant::now();
    let snapshots = snapshots(shared, now);
    let mut out = String::new();
    let samples = |value: &dyn Fn(&Snapshot) -> Option<f64>| -> Vec<Sample<'_>> {
        snapshots
            .iter()
            .filter_map(|s| value(s).map(|v| Sample::labelled("server", &s.address, v)))
            .collect()
    };
    let up_latest = |s: &Snapshot| s.record.latest.clone().filter(|_| s.up);
    prometheus::metric(
        &mut out,
        metric::UP,
        &samples(&|s| Some(if s.up { 1.0 } else { 0.0 })),
    );
    let families: [(prometheus::Metric, Figure); 6] = [
        (metric::DISK_FREE, |r| r.disk_free_bytes.map(|v| v as f64)),
        (metric::DISK_TOTAL, |r| r.disk_total_bytes.map(|v| v as f64)),
        (metric::BYTES_STORED, |r| r.bytes_stored.map(|v| v as f64)),
        (metric::FILES_STORED, |r| r.files_stored.map(|v| v as f64)),
        (metric::CONNECTIONS_OPEN, |r| {
            r.connections_open.map(|v| v as f64)
        }),
        (metric::UPTIME, |r| r.uptime_s),
    ];
    for (family, value) in families {
        let samples = samples(&|s| up_latest(s).as_ref().and_then(value));
        prometheus::metric(&mut out, family, &samples);
    }
    out
}
