//! `--report FILE.html` of `put` and `bench`: one self-contained page (inline
//! CSS and SVG, no script, nothing fetched: labs are often offline) with the
//! run's summary, each server's throughput over time, and a histogram of the
//! put latencies.
//!
//! The page is plain text made here; the SVG elements carry their data as
//! attributes (`class="series" data-server=...`, `class="bar" data-count=...`)
//! so that a test, or a person with a text editor, can read the numbers back.
//!
//! Out of scope: taking the measurements (see `watch` and the subcommands).

use std::fmt::Write as _;
use std::path::Path;

use super::watch::Watched;

const WIDTH: f64 = 760.0;
const HEIGHT: f64 = 280.0;
const LEFT: f64 = 64.0;
const RIGHT: f64 = 16.0;
const TOP: f64 = 16.0;
const BOTTOM: f64 = 40.0;
/// At most this many points per server: longer runs are averaged over wider steps.
const MAX_POINTS: usize = 400;
/// Histogram bins per factor of ten of latency.
const BINS_PER_DECADE: f64 = 5.0;
const COLOURS: [&str; 8] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf",
];

/// What a report shows.
pub struct Report<'a> {
    /// `put` or `bench`.
    pub command: &'a str,
    /// The summary lines printed at the end of the run.
    pub summary: &'a [String],
    pub watched: &'a Watched,
    /// Every put's latency, in nanoseconds.
    pub put_latencies_ns: &'a [u64],
}

/// Writes the page to `path`.
pub fn write(path: &Path, report: &Report<'_>) -> Result<(), String> {
    std::fs::write(path, render(report)).map_err(|e| format!("{}: {e}", path.display()))
}

/// The page.
pub fn render(report: &Report<'_>) -> String {
    let mut page = String::new();
    let title = format!("pyme-stream {} report", report.command);
    let _ = write!(
        page,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<title>{title}</title>\n<style>\
body{{font-family:sans-serif;margin:2em;color:#222}}\
svg{{background:#fff;border:1px solid #ccc}}\
.axis{{stroke:#444;stroke-width:1}}.grid{{stroke:#ddd;stroke-width:1}}\
text{{font-size:12px;fill:#333}}.series{{fill:none;stroke-width:2}}\
.bar{{fill:#1f77b4}}li{{list-style:none}}.key{{display:inline-block;width:1em;height:.6em;margin-right:.4em}}\
</style></head><body>\n<h1>{title}</h1>\n"
    );
    for line in report.summary {
        let _ = writeln!(page, "<p>{}</p>", escape(line));
    }
    let _ = writeln!(
        page,
        "<h2>Throughput per server (MB/s acknowledged)</h2>\n{}",
        throughput_svg(report.watched)
    );
    let _ = writeln!(page, "<ul>");
    for (i, server) in report.watched.servers.iter().enumerate() {
        let last = report.watched.last.get(i);
        let _ = writeln!(
            page,
            "<li><span class=\"key\" style=\"background:{}\"></span>{}: {} files, {:.1} MB acknowledged, {} failed, {} reconnects, {}</li>",
            COLOURS[i % COLOURS.len()],
            escape(server),
            last.map_or(0, |s| s.files_acknowledged),
            last.map_or(0, |s| s.bytes_acknowledged) as f64 / 1e6,
            last.map_or(0, |s| s.files_failed),
            last.map_or(0, |s| s.reconnects),
            last.map_or("unknown", |s| s.state.name()),
        );
    }
    let _ = writeln!(page, "</ul>");
    let _ = writeln!(
        page,
        "<h2>Put latency ({} puts)</h2>\n{}",
        report.put_latencies_ns.len(),
        latency_svg(report.put_latencies_ns)
    );
    page.push_str("</body></html>\n");
    page
}

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Each server's rate between readings: `(seconds at the end of the step,
/// MB/s)`, at most [`MAX_POINTS`] per server.
pub fn rates(watched: &Watched) -> Vec<Vec<(f64, f64)>> {
    let samples = &watched.samples;
    let step = samples.len().saturating_sub(1).div_ceil(MAX_POINTS).max(1);
    let picked: Vec<_> = samples
        .iter()
        .step_by(step)
        .chain(samples.last().filter(|_| (samples.len() - 1) % step != 0))
        .collect();
    (0..watched.servers.len())
        .map(|server| {
            picked
                .windows(2)
                .filter(|pair| pair[1].seconds > pair[0].seconds)
                .map(|pair| {
                    let bytes = pair[1].bytes_acknowledged[server]
                        .saturating_sub(pair[0].bytes_acknowledged[server]);
                    let seconds = pair[1].seconds - pair[0].seconds;
                    (pair[1].seconds, bytes as f64 / 1e6 / seconds)
                })
                .collect()
        })
        .collect()
}

/// A round upper bound for an axis, and its tick step.
fn nice_axis(largest: f64) -> (f64, f64) {
    if largest <= 0.0 || !largest.is_finite() {
        return (1.0, 0.25);
    }
    let magnitude = 10f64.powf(largest.log10().floor());
    let step = [0.1, 0.2, 0.25, 0.5, 1.0, 2.0, 2.5, 5.0]
        .iter()
        .map(|f| f * magnitude)
        .find(|step| largest / step <= 5.0)
        .unwrap_or(magnitude * 10.0);
    ((largest / step).ceil() * step, step)
}

fn frame(svg: &mut String, label: &str, x_label: &str) {
    let _ = write!(
        svg,
        "<svg class=\"{label}\" width=\"{WIDTH}\" height=\"{HEIGHT}\" viewBox=\"0 0 {WIDTH} {HEIGHT}\" role=\"img\">\
<line class=\"axis\" x1=\"{LEFT}\" y1=\"{bottom}\" x2=\"{right}\" y2=\"{bottom}\"/>\
<line class=\"axis\" x1=\"{LEFT}\" y1=\"{TOP}\" x2=\"{LEFT}\" y2=\"{bottom}\"/>\
<text x=\"{mid}\" y=\"{label_y}\" text-anchor=\"middle\">{x_label}</text>",
        bottom = HEIGHT - BOTTOM,
        right = WIDTH - RIGHT,
        mid = (LEFT + WIDTH - RIGHT) / 2.0,
        label_y = HEIGHT - 6.0,
    );
}

fn y_ticks(svg: &mut String, top: f64, step: f64, unit: &str) {
    let plot = HEIGHT - TOP - BOTTOM;
    let mut value = 0.0;
    while value <= top + step / 2.0 {
        let y = HEIGHT - BOTTOM - value / top * plot;
        let _ = write!(
            svg,
            "<line class=\"grid\" x1=\"{LEFT}\" y1=\"{y:.1}\" x2=\"{}\" y2=\"{y:.1}\"/>\
<text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{}{unit}</text>",
            WIDTH - RIGHT,
            LEFT - 4.0,
            y + 4.0,
            trim_number(value),
        );
        value += step;
    }
}

fn trim_number(value: f64) -> String {
    if value >= 100.0 || value == value.round() {
        format!("{value:.0}")
    } else {
        format!("{value:.2}")
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_owned()
    }
}

fn throughput_svg(watched: &Watched) -> String {
    let series = rates(watched);
    let duration = watched.samples.last().map_or(0.0, |s| s.seconds).max(0.001);
    let largest = series
        .iter()
        .flatten()
        .map(|&(_, rate)| rate)
        .fold(0.0, f64::max);
    let (top, step) = nice_axis(largest);
    let (right_edge, x_step) = nice_axis(duration);
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let mut svg = String::new();
    frame(&mut svg, "throughput", "seconds since the first put");
    y_ticks(&mut svg, top, step, "");
    let mut t = 0.0;
    while t <= right_edge + x_step / 2.0 {
        let x = LEFT + t / right_edge * plot_w;
        let _ = write!(
            svg,
            "<text x=\"{x:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
            HEIGHT - BOTTOM + 16.0,
            trim_number(t)
        );
        t += x_step;
    }
    for (i, points) in series.iter().enumerate() {
        let mut coordinates = format!("{LEFT:.1},{:.1}", HEIGHT - BOTTOM);
        for &(seconds, rate) in points {
            let x = LEFT + seconds / right_edge * plot_w;
            let y = HEIGHT - BOTTOM - rate / top * plot_h;
            let _ = write!(coordinates, " {x:.1},{y:.1}");
        }
        let _ = write!(
            svg,
            "<polyline class=\"series\" data-server=\"{}\" stroke=\"{}\" points=\"{coordinates}\"><title>{}</title></polyline>",
            escape(&watched.servers[i]),
            COLOURS[i % COLOURS.len()],
            escape(&watched.servers[i]),
        );
    }
    svg.push_str("</svg>");
    svg
}

/// Latency bins, log-spaced: `(low µs, high µs, count)`, covering every sample.
pub fn latency_bins(latencies_ns: &[u64]) -> Vec<(f64, f64, u64)> {
    let micros: Vec<f64> = latencies_ns
        .iter()
        .map(|&ns| (ns as f64 / 1000.0).max(0.01))
        .collect();
    let Some(smallest) = micros.iter().copied().reduce(f64::min) else {
        return Vec::new();
    };
    let largest = micros.iter().copied().fold(smallest, f64::max);
    let first = (smallest.log10() * BINS_PER_DECADE).floor() as i64;
    let last = (largest.log10() * BINS_PER_DECADE).floor() as i64;
    let mut counts = vec![0u64; (last - first + 1) as usize];
    for value in &micros {
        let bin = ((value.log10() * BINS_PER_DECADE).floor() as i64 - first)
            .clamp(0, counts.len() as i64 - 1);
        counts[bin as usize] += 1;
    }
    counts
        .into_iter()
        .enumerate()
        .map(|(i, count)| {
            let index = (first + i as i64) as f64;
            (
                10f64.powf(index / BINS_PER_DECADE),
                10f64.powf((index + 1.0) / BINS_PER_DECADE),
                count,
            )
        })
        .collect()
}

fn latency_svg(latencies_ns: &[u64]) -> String {
    let bins = latency_bins(latencies_ns);
    let mut svg = String::new();
    frame(&mut svg, "latency", "put latency, microseconds (log scale)");
    let largest = bins.iter().map(|b| b.2).max().unwrap_or(0);
    let (top, step) = nice_axis(largest as f64);
    y_ticks(&mut svg, top, step.max(1.0), "");
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let width = plot_w / bins.len().max(1) as f64;
    for (i, &(low, high, count)) in bins.iter().enumerate() {
        let x = LEFT + i as f64 * width;
        let h = count as f64 / top * plot_h;
        let _ = write!(
            svg,
            "<rect class=\"bar\" data-low-us=\"{low:.3}\" data-high-us=\"{high:.3}\" data-count=\"{count}\" \
x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{h:.1}\"><title>{} to {} us: {count}</title></rect>",
            x + 1.0,
            HEIGHT - BOTTOM - h,
            (width - 2.0).max(1.0),
            trim_number(low),
            trim_number(high),
        );
        let decade = low.log10();
        if (decade - decade.round()).abs() < 1e-6 || bins.len() <= 8 {
            let _ = write!(
                svg,
                "<text x=\"{x:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
                HEIGHT - BOTTOM + 16.0,
                trim_number(low)
            );
        }
    }
    svg.push_str("</svg>");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::watch::Sample;

    fn watched() -> Watched {
        Watched {
            servers: vec!["a:1".into(), "<b>:2".into()],
            samples: vec![
                Sample {
                    seconds: 0.0,
                    bytes_acknowledged: vec![0, 0],
                },
                Sample {
                    seconds: 0.5,
                    bytes_acknowledged: vec![1_000_000, 0],
                },
                Sample {
                    seconds: 1.0,
                    bytes_acknowledged: vec![1_000_000, 2_000_000],
                },
            ],
            last: Vec::new(),
        }
    }

    #[test]
    fn rates_are_the_bytes_between_readings_over_their_time() {
        let rates = rates(&watched());
        assert_eq!(rates[0], [(0.5, 2.0), (1.0, 0.0)]);
        assert_eq!(rates[1], [(0.5, 0.0), (1.0, 4.0)]);
    }

    #[test]
    fn long_runs_are_thinned_to_the_point_limit_keeping_the_last_reading() {
        let samples: Vec<Sample> = (0..=1001)
            .map(|i| Sample {
                seconds: i as f64,
                bytes_acknowledged: vec![i * 1_000_000],
            })
            .collect();
        let watched = Watched {
            servers: vec!["a:1".into()],
            samples,
            last: Vec::new(),
        };
        let rates = rates(&watched);
        assert!(rates[0].len() <= MAX_POINTS + 1, "{}", rates[0].len());
        assert_eq!(rates[0].last().unwrap().0, 1001.0);
        assert!(rates[0].iter().all(|&(_, rate)| (rate - 1.0).abs() < 1e-9));
    }

    #[test]
    fn every_latency_falls_in_one_bin() {
        let latencies = [900, 1_000, 50_000, 50_001, 2_000_000];
        let bins = latency_bins(&latencies);
        assert_eq!(bins.iter().map(|b| b.2).sum::<u64>(), 5);
        for &ns in &latencies {
            let us = ns as f64 / 1000.0;
            assert!(bins
                .iter()
                .any(|b| b.0 <= us * 1.000001 && us < b.1 * 1.000001));
        }
        assert!(latency_bins(&[]).is_empty());
    }

    #[test]
    fn the_page_escapes_names_and_fetches_nothing() {
        let page = render(&Report {
            command: "put",
            summary: &["a <summary>".into()],
            watched: &watched(),
            put_latencies_ns: &[1000, 2000],
        });
        assert!(page.contains("data-server=\"&lt;b&gt;:2\""));
        assert!(!page.contains("<b>"));
        assert!(!page.contains("http"));
        assert_eq!(page.matches("class=\"series\"").count(), 2);
    }
}
