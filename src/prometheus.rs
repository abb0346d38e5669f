//! The Prometheus text exposition format (version 0.0.4), written: a metric family is
//! a `# HELP` line, a `# TYPE` line and its samples, one per label set. Used by the
//! data server's `GET /__metrics` (no labels) and the monitor's `/metrics` (each
//! sample labelled `server="host:port"`).
//!
//! What this module may not do: read anything; it only formats what it is given.

use std::fmt::Write;

/// The `Content-Type` of the text format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A metric's type, as its `# TYPE` line names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A value that only goes up, and back to zero when its source restarts.
    Counter,
    /// A value that goes up and down.
    Gauge,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
        }
    }
}

/// A metric family's name, help line and type.
#[derive(Debug, Clone, Copy)]
pub struct Metric {
    pub name: &'static str,
    pub help: &'static str,
    pub kind: Kind,
}

/// The metrics of a data server, as its `GET /__metrics` answers them (no label) and
/// the monitor's `/metrics` (labelled by server). One list, so the names agree.
pub mod server {
    use super::{Kind, Metric};

    pub const UP: Metric = Metric {
        name: "pyme_server_up",
        help: "1 when the data server answered its last status poll in time, else 0.",
        kind: Kind::Gauge,
    };
    pub const DISK_FREE: Metric = Metric {
        name: "pyme_server_disk_free_bytes",
        help: "Bytes free for the server on the file system of its root.",
        kind: Kind::Gauge,
    };
    pub const DISK_TOTAL: Metric = Metric {
        name: "pyme_server_disk_total_bytes",
        help: "Size of the file system of the server's root, in bytes.",
        kind: Kind::Gauge,
    };
    pub const BYTES_STORED: Metric = Metric {
        name: "pyme_server_bytes_stored_total",
        help: "Bytes stored by the server since it started (reset when it restarts).",
        kind: Kind::Counter,
    };
    pub const FILES_STORED: Metric = Metric {
        name: "pyme_server_files_stored_total",
        help: "Files stored by the server since it started (reset when it restarts).",
        kind: Kind::Counter,
    };
    pub const CONNECTIONS_OPEN: Metric = Metric {
        name: "pyme_server_connections_open",
        help: "Client connections the server has open.",
        kind: Kind::Gauge,
    };
    pub const UPTIME: Metric = Metric {
        name: "pyme_server_uptime_seconds",
        help: "Seconds since the server started.",
        kind: Kind::Gauge,
    };
}

/// Appends one family of `metric` (see [`family`]).
pub fn metric(out: &mut String, metric: Metric, samples: &[Sample<'_>]) {
    family(out, metric.name, metric.help, metric.kind, samples);
}

/// Appends one family: its `# HELP` and `# TYPE` lines, then a line per sample
/// (`name{label="value",...} number`, the braces left out without labels). `help`
/// must be one line.
pub fn family(out: &mut String, name: &str, help: &str, kind: Kind, samples: &[Sample<'_>]) {
    let _ = writeln!(out, "# HELP {name} {}", escape_help(help));
    let _ = writeln!(out, "# TYPE {name} {}", kind.name());
    for sample in samples {
        out.push_str(name);
        if !sample.labels.is_empty() {
            out.push('{');
            for (i, (label, value)) in sample.labels.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                let _ = write!(out, "{label}=\"{}\"", escape_label(value));
            }
            out.push('}');
        }
        let _ = writeln!(out, " {}", number(sample.value));
    }
}

/// One sample of a family: its labels (name, value) and its value.
#[derive(Debug, Clone)]
pub struct Sample<'a> {
    pub labels: Vec<(&'a str, &'a str)>,
    pub value: f64,
}

impl<'a> Sample<'a> {
    /// A sample without labels.
    pub fn plain(value: f64) -> Sample<'a> {
        Sample {
            labels: Vec::new(),
            value,
        }
    }

    /// A sample with one label.
    pub fn labelled(label: &'a str, label_value: &'a str, value: f64) -> Sample<'a> {
        Sample {
            labels: vec![(label, label_value)],
            value,
        }
    }
}

/// A value as the format writes it: integers without a fraction, `NaN`, `+Inf`, `-Inf`.
fn number(value: f64) -> String {
    if value.is_nan() {
        "NaN".to_owned()
    } else if value.is_infinite() {
        if value > 0.0 { "+Inf" } else { "-Inf" }.to_owned()
    } else if value.fract() == 0.0 && value.abs() < 1e15 {
        format!("{}", value as i64)
    } else {
        format!("{value}")
    }
}

/// A label value: backslash, double quote and line feed escaped.
fn escape_label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// A help text: backslash and line feed escaped.
fn escape_help(help: &str) -> String {
    help.replace('\\', "\\\\").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_family_has_help_type_and_its_samples() {
        let mut out = String::new();
        family(
            &mut out,
            "pyme_server_up",
            "1 when up",
            Kind::Gauge,
            &[
                Sample::labelled("server", "127.0.0.1:1", 1.0),
                Sample::labelled("server", "a\"b\\c\nd", 0.0),
            ],
        );
        family(
            &mut out,
            "x_total",
            "a\nb",
            Kind::Counter,
            &[Sample::plain(2.5)],
        );
        assert_eq!(
            out,
            "# HELP pyme_server_up 1 when up\n# TYPE pyme_server_up gauge\n\
             pyme_server_up{server=\"127.0.0.1:1\"} 1\n\
             pyme_server_up{server=\"a\\\"b\\\\c\\nd\"} 0\n\
             # HELP x_total a\\nb\n# TYPE x_total counter\nx_total 2.5\n"
        );
    }

    #[test]
    fn numbers_as_the_format_writes_them() {
        assert_eq!(number(3.0), "3");
        assert_eq!(number(f64::NAN), "NaN");
        assert_eq!(number(f64::INFINITY), "+Inf");
        assert_eq!(number(f64::NEG_INFINITY), "-Inf");
        assert_eq!(number(0.25), "0.25");
        assert_eq!(number(1e20), "100000000000000000000");
    }
}
