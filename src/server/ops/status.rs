//! `GET /__status`: what the data server reports about itself, under PYME's keys
//! (those of PYME's `HTTPDataServer`, which `clusterIO.get_status` and the cluster UI
//! read) and under our own.
//!
//! PYME's keys, with its types: `IPAddress` (text), `BindAddress` (`[address,
//! port]`), `Port` (an integer: `get_status` matches nodes by it), `Protocol`
//! (`"1.1"`), `TestMode` (`--discard`), `ComputerName`, `Uptime` (text, as Python
//! prints a `timedelta`: `"2 days, 3:04:05.678901"`), `Disk` {total, used, free} of
//! the root's file system, `CPUUsage` (percent busy, one per core), `MemUsage`
//! {total, available, percent, used, and the system's own figures}, `Network`
//! {interface: {send, recv}} in bytes per second. The rates (`CPUUsage`, `Network`)
//! are since the previous sample: zeros in the first answer, and a new sample is
//! taken at most every [`MIN_SAMPLE_INTERVAL`] (answers in between repeat the latest
//! rates, so that two pollers do not each see a sliver). No GPU keys: PYME adds them
//! only with NVIDIA's library, which this server does not use.
//!
//! Our own figures keep their lower-case keys (`port`, `files_stored`, ...).

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};

use crate::server::connection::{Connection, Next};
use crate::server::request::Method;
use crate::server::router::Request;
use crate::server::system::{self, disk_usage, CpuTimes};
use crate::server::Shared;

/// Samples for the rates are taken at most this often.
pub const MIN_SAMPLE_INTERVAL: Duration = Duration::from_millis(500);

/// What `/__status` keeps between answers: the previous sample of the counters the
/// rates are computed from, and the address it reports.
#[derive(Default)]
pub(crate) struct StatusState {
    rates: Mutex<Option<Rates>>,
    address: OnceLock<String>,
}

/// A sample and the rates since the one before it.
struct Rates {
    at: Instant,
    cpu: Vec<CpuTimes>,
    interfaces: Vec<system::Interface>,
    cpu_percent: Vec<f64>,
    /// Bytes per second sent and received, per interface.
    network: BTreeMap<String, (f64, f64)>,
}

impl Rates {
    /// The first sample: every rate zero.
    fn first(at: Instant) -> Rates {
        let cpu = system::cpu_times();
        let interfaces = system::interfaces();
        Rates {
            at,
            cpu_percent: vec![0.0; cpu.len()],
            network: interfaces
                .iter()
                .map(|i| (i.name.clone(), (0.0, 0.0)))
                .collect(),
            cpu,
            interfaces,
        }
    }

    /// A sample taken now, with the rates since `self`.
    fn next(&self, at: Instant) -> Rates {
        let cpu = system::cpu_times();
        let interfaces = system::interfaces();
        let seconds = at.duration_since(self.at).as_secs_f64().max(1e-3);
        let cpu_percent = cpu
            .iter()
            .enumerate()
            .map(|(i, now)| self.cpu.get(i).map_or(0.0, |then| now.percent_since(then)))
            .collect();
        let network = interfaces
            .iter()
            .map(|now| {
                let rates = self
                    .interfaces
                    .iter()
                    .find(|then| then.name == now.name)
                    .map_or((0.0, 0.0), |then| {
                        (
                            now.sent.saturating_sub(then.sent) as f64 / seconds,
                            now.received.saturating_sub(then.received) as f64 / seconds,
                        )
                    });
                (now.name.clone(), rates)
            })
            .collect();
        Rates {
            at,
            cpu,
            interfaces,
            cpu_percent,
            network,
        }
    }
}

pub(crate) fn get(connection: &mut Connection<'_>, request: &Request<'_>) -> Next {
    let json = status_json(connection.shared());
    let with_body = request.head.method == Method::Get;
    connection.answer(200, "application/json", json.as_bytes(), with_body);
    Ok(())
}

/// The JSON object answered to `GET /__status`.
pub(crate) fn status_json(shared: &Shared) -> String {
    let disk = disk_usage(shared.store.root());
    // Null where the server keeps no spares.
    let spares_ready = shared.spares.as_ref().map(|spares| spares.ready());
    let sweep = shared.sweep.report();
    let uptime = shared.started.elapsed();
    let mut status = json!({
        "address": shared.local_addr.ip().to_string(),
        "port": shared.local_addr.port(),
        "serverfilter": shared.config.serverfilter,
        "root": shared.store.root().to_string_lossy(),
        "disk_total_bytes": disk.map(|d| d.total),
        "disk_used_bytes": disk.map(|d| d.used),
        "disk_free_bytes": disk.map(|d| d.free),
        "uptime_s": uptime.as_secs_f64(),
        "files_stored": shared.files_stored.load(Ordering::Relaxed),
        "files_stored_in_spares": shared.files_in_spares.load(Ordering::Relaxed),
        "spares_ready": spares_ready,
        "bodies_spliced": shared.bodies_spliced.load(Ordering::Relaxed),
        "bytes_stored": shared.bytes_stored.load(Ordering::Relaxed),
        "connections_open": shared.connections_open.load(Ordering::Relaxed),
        "connections_evicted": shared.connections_evicted.load(Ordering::Relaxed),
        "discard": shared.config.discard,
        "fsync": shared.store.syncs(),
        "sweep_done": sweep.done,
        "sweep_temporaries_removed": sweep.temporaries_removed,
        "sweep_bytes_removed": sweep.bytes_removed,
        "sweep_appends_repaired": sweep.appends_repaired,
        "version": crate::VERSION,
    });
    let pyme = pyme_keys(shared, uptime);
    if let Value::Object(ours) = &mut status {
        ours.extend(pyme);
    }
    status.to_string()
}

/// PYME's keys (see the module documentation).
fn pyme_keys(shared: &Shared, uptime: Duration) -> Map<String, Value> {
    let state = &shared.status;
    let disk = disk_usage(shared.store.root()).unwrap_or(system::DiskUsage {
        total: 0,
        used: 0,
        free: 0,
    });
    let (cpu_percent, network) = {
        let mut rates = state.rates.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        let sample = match rates.take() {
            None => Rates::first(now),
            Some(previous) if now.duration_since(previous.at) < MIN_SAMPLE_INTERVAL => previous,
            Some(previous) => previous.next(now),
        };
        let answer = (sample.cpu_percent.clone(), sample.network.clone());
        *rates = Some(sample);
        answer
    };
    let memory = system::memory();
    let mut mem_usage = Map::new();
    mem_usage.insert("total".into(), memory.total.into());
    mem_usage.insert("available".into(), memory.available.into());
    mem_usage.insert("percent".into(), memory.percent.into());
    mem_usage.insert("used".into(), memory.used.into());
    for (key, value) in memory.more {
        mem_usage.insert(key.into(), value.into());
    }
    let network: Map<String, Value> = network
        .into_iter()
        .map(|(name, (send, recv))| (name, json!({"send": send, "recv": recv})))
        .collect();
    let address = state.address.get_or_init(|| reported_address(shared));
    let port = shared.local_addr.port();
    let keys = json!({
        "IPAddress": address,
        "BindAddress": [shared.config.bind, port],
        "Port": port,
        "Protocol": "1.1",
        "TestMode": shared.config.discard,
        "ComputerName": crate::discovery::computer_name(),
        "Uptime": python_timedelta(uptime),
        "Disk": {"total": disk.total, "used": disk.used, "free": disk.free},
        "CPUUsage": cpu_percent,
        "MemUsage": mem_usage,
        "Network": network,
    });
    match keys {
        Value::Object(keys) => keys,
        _ => Map::new(),
    }
}

/// The address clients reach this server at: the one it listens on, or, listening
/// on every address, the host name's (as PYME's server reports it), else loopback.
fn reported_address(shared: &Shared) -> String {
    let ip = shared.local_addr.ip();
    if !ip.is_unspecified() {
        return ip.to_string();
    }
    use std::net::ToSocketAddrs;
    (crate::discovery::host_name().as_str(), 0)
        .to_socket_addrs()
        .ok()
        .and_then(|mut addresses| addresses.find(|a| a.is_ipv4()))
        .map_or_else(|| "127.0.0.1".to_owned(), |a| a.ip().to_string())
}

/// A duration as Python prints a `datetime.timedelta`: `H:MM:SS`, then
/// `.ffffff` unless the microseconds are zero, after `N day, ` or `N days, `.
pub fn python_timedelta(duration: Duration) -> String {
    let micros = duration.subsec_micros();
    let seconds = duration.as_secs();
    let (days, rest) = (seconds / 86_400, seconds % 86_400);
    let mut text = match days {
        0 => String::new(),
        1 => "1 day, ".to_owned(),
        n => format!("{n} days, "),
    };
    text.push_str(&format!(
        "{}:{:02}:{:02}",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    ));
    if micros != 0 {
        text.push_str(&format!(".{micros:06}"));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uptime_as_python_prints_a_timedelta() {
        assert_eq!(python_timedelta(Duration::ZERO), "0:00:00");
        assert_eq!(
            python_timedelta(Duration::from_micros(5_000_001)),
            "0:00:05.000001"
        );
        assert_eq!(python_timedelta(Duration::from_secs(3600 + 62)), "1:01:02");
        assert_eq!(
            python_timedelta(Duration::from_secs(86_400)),
            "1 day, 0:00:00"
        );
        assert_eq!(
            python_timedelta(
                Duration::from_secs(2 * 86_400 + 3 * 3600 + 4 * 60 + 5)
                    + Duration::from_micros(678_901)
            ),
            "2 days, 3:04:05.678901"
        );
    }
}
