//! What one `/__status` answer says, read from either key set: ours (lower-case keys:
//! `bytes_stored`, `files_stored`, `connections_open`, `disk_free_bytes`, `uptime_s`,
//! ...) and PYME's data server's (`Disk` {total, used, free}, `CPUUsage` [percent per
//! core], `MemUsage` {total, available, percent, ...}, `Network` {interface: {send,
//! recv}} in bytes per second, `Uptime` as Python prints a `timedelta`, `ComputerName`).
//! Our server answers both sets; where both say a thing ours wins (it is exact).
//!
//! What this module may not do: touch the network or the clock; it is a pure
//! function from bytes to a [`Reading`], tested here.

use serde_json::Value;

/// Which server software answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Software {
    /// pyme-streaming's `serve` (our keys present).
    Ours,
    /// PYME's own data server (PYME's keys only).
    Pyme,
}

impl Software {
    pub fn name(self) -> &'static str {
        match self {
            Software::Ours => "pyme-streaming",
            Software::Pyme => "PYME",
        }
    }
}

/// The figures of one status answer; `None` where the answer did not say.
#[derive(Debug, Clone, PartialEq)]
pub struct Reading {
    pub software: Software,
    pub computer_name: Option<String>,
    pub uptime_s: Option<f64>,
    pub disk_total_bytes: Option<u64>,
    pub disk_free_bytes: Option<u64>,
    pub bytes_stored: Option<u64>,
    pub files_stored: Option<u64>,
    pub connections_open: Option<u64>,
    /// The mean of `CPUUsage`, in percent.
    pub cpu_percent: Option<f64>,
    pub memory_percent: Option<f64>,
    /// Sums of `Network` over every interface, bytes per second.
    pub network_recv_bytes_per_s: Option<f64>,
    pub network_send_bytes_per_s: Option<f64>,
    pub version: Option<String>,
}

/// Why an answer could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReadingError {
    #[error("the status is not JSON: {0}")]
    NotJson(String),
    #[error("the status is not a JSON object")]
    NotObject,
    #[error("the status has neither PYME's keys nor ours")]
    NoKnownKeys,
}

/// Reads a `/__status` body.
pub fn read(body: &[u8]) -> Result<Reading, ReadingError> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| ReadingError::NotJson(e.to_string()))?;
    let status = value.as_object().ok_or(ReadingError::NotObject)?;
    let ours = status.contains_key("files_stored") || status.contains_key("bytes_stored");
    let pymes = ["Disk", "Uptime", "ComputerName", "Port"]
        .iter()
        .any(|key| status.contains_key(*key));
    if !ours && !pymes {
        return Err(ReadingError::NoKnownKeys);
    }
    let u64_at = |key: &str| status.get(key).and_then(as_u64);
    let disk = status.get("Disk");
    let disk_key = |key: &str| disk.and_then(|d| d.get(key)).and_then(as_u64);
    let memory = status.get("MemUsage");
    let cpu = status
        .get("CPUUsage")
        .and_then(Value::as_array)
        .and_then(|cores| {
            let values: Vec<f64> = cores.iter().filter_map(Value::as_f64).collect();
            (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64)
        });
    let network = status.get("Network").and_then(Value::as_object);
    let network_sum = |direction: &str| {
        network
            .map(|interfaces| {
                interfaces
                    .values()
                    .filter_map(|i| i.get(direction).and_then(Value::as_f64))
                    .filter(|v| v.is_finite() && *v >= 0.0)
                    .sum::<f64>()
            })
            // Two huge figures sum to infinity: unknown, not infinite.
            .filter(|sum| sum.is_finite())
    };
    Ok(Reading {
        software: if ours { Software::Ours } else { Software::Pyme },
        computer_name: status
            .get("ComputerName")
            .and_then(Value::as_str)
            .map(short),
        uptime_s: status
            .get("uptime_s")
            .and_then(Value::as_f64)
            .or_else(|| {
                status
                    .get("Uptime")
                    .and_then(Value::as_str)
                    .and_then(parse_timedelta)
            })
            .filter(|s| s.is_finite() && *s >= 0.0),
        disk_total_bytes: u64_at("disk_total_bytes").or_else(|| disk_key("total")),
        disk_free_bytes: u64_at("disk_free_bytes").or_else(|| disk_key("free")),
        bytes_stored: u64_at("bytes_stored"),
        files_stored: u64_at("files_stored"),
        connections_open: u64_at("connections_open"),
        cpu_percent: cpu.filter(|c| c.is_finite()),
        memory_percent: memory
            .and_then(|m| m.get("percent"))
            .and_then(Value::as_f64)
            .filter(|p| p.is_finite()),
        network_recv_bytes_per_s: network_sum("recv"),
        network_send_bytes_per_s: network_sum("send"),
        version: status.get("version").and_then(Value::as_str).map(short),
    })
}

/// A whole number of a JSON number, also one written as a float (`1.0e12`), as
/// psutil's figures may come.
fn as_u64(value: &Value) -> Option<u64> {
    value.as_u64().or_else(|| {
        value
            .as_f64()
            .filter(|v| v.is_finite() && *v >= 0.0 && *v < 1.8e19)
            .map(|v| v as u64)
    })
}

/// A text shown on the page, cut to 200 characters (a server's name is not a novel).
fn short(text: &str) -> String {
    text.chars().take(200).collect()
}

/// Seconds of a Python `timedelta` printed by `str()`: `H:MM:SS[.ffffff]`, after
/// `N day, ` or `N days, ` (negative days, which an uptime never has, are refused).
pub fn parse_timedelta(text: &str) -> Option<f64> {
    let (days, clock) = match text.split_once(", ") {
        Some((days, clock)) => {
            let days = days
                .strip_suffix(" days")
                .or_else(|| days.strip_suffix(" day"))?;
            (days.parse::<u64>().ok()?, clock)
        }
        None => (0, text),
    };
    let mut parts = clock.split(':');
    let hours: u64 = parts.next()?.parse().ok()?;
    let minutes: u64 = parts.next()?.parse().ok()?;
    let seconds: f64 = parts.next()?.parse().ok()?;
    if parts.next().is_some() || minutes >= 60 || !(0.0..60.0).contains(&seconds) {
        return None;
    }
    Some(days as f64 * 86_400.0 + hours as f64 * 3600.0 + minutes as f64 * 60.0 + seconds)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::strategy::Strategy;

    #[test]
    fn timedeltas_as_python_prints_them() {
        assert_eq!(parse_timedelta("0:00:05.500000"), Some(5.5));
        assert_eq!(parse_timedelta("1:01:02"), Some(3662.0));
        assert_eq!(parse_timedelta("1 day, 0:00:00"), Some(86_400.0));
        assert_eq!(parse_timedelta("2 days, 3:04:05"), Some(183_845.0));
        for bad in ["", "5", "0:60:00", "-1 day, 23:59:59", "1:2:3:4", "x:00:00"] {
            assert_eq!(parse_timedelta(bad), None, "{bad}");
        }
    }

    #[test]
    fn pymes_keys_are_read() {
        // The shape of PYME's HTTPDataServer status (psutil's figures).
        let body = br#"{"IPAddress": "127.0.0.1", "BindAddress": ["127.0.0.1", 15348],
            "Port": 15348, "Protocol": "1.0", "TestMode": false, "ComputerName": "node1",
            "Disk": {"total": 1000, "used": 400, "free": 600},
            "Uptime": "0:01:00.250000", "CPUUsage": [10.0, 30.0],
            "MemUsage": {"total": 8, "available": 4, "percent": 50.0, "used": 4, "free": 2},
            "Network": {"lo": {"send": 100.5, "recv": 100.5}, "eth0": {"send": 1.0, "recv": 2.0}}}"#;
        let reading = read(body).unwrap();
        assert_eq!(reading.software, Software::Pyme);
        assert_eq!(reading.computer_name.as_deref(), Some("node1"));
        assert_eq!(reading.uptime_s, Some(60.25));
        assert_eq!(reading.disk_total_bytes, Some(1000));
        assert_eq!(reading.disk_free_bytes, Some(600));
        assert_eq!(reading.cpu_percent, Some(20.0));
        assert_eq!(reading.memory_percent, Some(50.0));
        assert_eq!(reading.network_recv_bytes_per_s, Some(102.5));
        assert_eq!(reading.network_send_bytes_per_s, Some(101.5));
        assert_eq!(reading.bytes_stored, None);
        assert_eq!(reading.files_stored, None);
    }

    #[test]
    fn ours_win_where_both_say() {
        let body = br#"{"files_stored": 3, "bytes_stored": 30, "connections_open": 2,
            "disk_free_bytes": 7, "disk_total_bytes": 9, "uptime_s": 1.5,
            "Disk": {"total": 1, "used": 1, "free": 0}, "Uptime": "0:00:01"}"#;
        let reading = read(body).unwrap();
        assert_eq!(reading.software, Software::Ours);
        assert_eq!(reading.disk_free_bytes, Some(7));
        assert_eq!(reading.disk_total_bytes, Some(9));
        assert_eq!(reading.uptime_s, Some(1.5));
        assert_eq!(reading.files_stored, Some(3));
        assert_eq!(reading.connections_open, Some(2));
    }

    #[test]
    fn garbage_is_refused_not_read() {
        assert!(matches!(read(b"{not json"), Err(ReadingError::NotJson(_))));
        assert_eq!(read(b"[1, 2]"), Err(ReadingError::NotObject));
        assert_eq!(read(b"{\"a\": 1}"), Err(ReadingError::NoKnownKeys));
        // Known keys of the wrong types read as unknown figures, never a panic.
        let reading = read(
            br#"{"Disk": "full", "CPUUsage": {"a": 1}, "Uptime": 5,
            "Network": [1], "MemUsage": null, "files_stored": -1}"#,
        )
        .unwrap();
        assert_eq!(reading.disk_free_bytes, None);
        assert_eq!(reading.cpu_percent, None);
        assert_eq!(reading.uptime_s, None);
        assert_eq!(reading.files_stored, None);
    }

    proptest::proptest! {
        /// Whatever a server answers, reading it never panics.
        #[test]
        fn any_bytes_are_read_or_refused(body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300)) {
            let _ = read(&body);
        }

        /// PYME's and our keys with values of any JSON type: read or unknown, never a panic.
        #[test]
        fn known_keys_of_any_type_never_panic(
            values in proptest::collection::vec(
                proptest::prop_oneof![
                    proptest::strategy::Just("null".to_owned()),
                    proptest::prelude::any::<i64>().prop_map(|v| v.to_string()),
                    proptest::prelude::any::<f64>().prop_filter("finite", |v| v.is_finite()).prop_map(|v| format!("{v:e}")),
                    "[a-z:0-9., ]{0,20}".prop_map(|v| format!("{v:?}")),
                    proptest::strategy::Just("{\"lo\": {\"send\": -1, \"recv\": 1e308}, \"eth0\": {\"recv\": 1e308}}".to_owned()),
                    proptest::strategy::Just("[1, \"x\", null]".to_owned()),
                ],
                12,
            )
        ) {
            let keys = ["Disk", "CPUUsage", "MemUsage", "Network", "Uptime", "ComputerName",
                "files_stored", "bytes_stored", "uptime_s", "disk_free_bytes", "connections_open", "version"];
            let body = format!("{{{}}}", keys.iter().zip(&values)
                .map(|(k, v)| format!("{k:?}: {v}")).collect::<Vec<_>>().join(", "));
            let reading = read(body.as_bytes()).unwrap();
            proptest::prop_assert!(reading.uptime_s.is_none_or(|s| s.is_finite() && s >= 0.0));
            proptest::prop_assert!(reading.network_recv_bytes_per_s.is_none_or(f64::is_finite));
        }
    }
}
