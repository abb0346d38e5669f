//! `GET /__metrics`: the server's figures in the Prometheus text format, without
//! labels (a scraper labels them with its target), under the names the monitor's
//! `/metrics` uses (`crate::prometheus::server`). The figures are those `/__status`
//! reports (`status.rs`), read the same way.
//!
//! What this module may not do: keep any state of its own.

use std::sync::atomic::Ordering;

use crate::prometheus::{self, server, Sample};
use crate::server::connection::{Connection, Next};
use crate::server::request::Method;
use crate::server::router::Request;
use crate::server::system::disk_usage;
use crate::server::Shared;

pub(crate) fn get(connection: &mut Connection<'_>, request: &Request<'_>) -> Next {
    let text = metrics_text(connection.shared());
    let with_body = request.head.method == Method::Get;
    connection.answer(200, prometheus::CONTENT_TYPE, text.as_bytes(), with_body);
    Ok(())
}

/// The text answered to `GET /__metrics`.
pub(crate) fn metrics_text(shared: &Shared) -> String {
    let mut out = String::new();
    let one = |value: f64| [Sample::plain(value)];
    prometheus::metric(&mut out, server::UP, &one(1.0));
    if let Some(disk) = disk_usage(shared.store.root()) {
        prometheus::metric(&mut out, server::DISK_FREE, &one(disk.free as f64));
        prometheus::metric(&mut out, server::DISK_TOTAL, &one(disk.total as f64));
    }
    let bytes = shared.bytes_stored.load(Ordering::Relaxed);
    let files = shared.files_stored.load(Ordering::Relaxed);
    let connections = shared.connections_open.load(Ordering::Relaxed);
    prometheus::metric(&mut out, server::BYTES_STORED, &one(bytes as f64));
    prometheus::metric(&mut out, server::FILES_STORED, &one(files as f64));
    prometheus::metric(&mut out, server::CONNECTIONS_OPEN, &one(connections as f64));
    let uptime = shared.started.elapsed().as_secs_f64();
    prometheus::metric(&mut out, server::UPTIME, &one(uptime));
    out
}
