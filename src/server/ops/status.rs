//! `GET /__status`: what the data server reports about itself.

use std::sync::atomic::Ordering;

use crate::server::connection::{Connection, Next};
use crate::server::request::Method;
use crate::server::router::Request;
use crate::server::system::disk_usage;
use crate::server::Shared;

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
    serde_json::json!({
        "address": shared.local_addr.ip().to_string(),
        "port": shared.local_addr.port(),
        "serverfilter": shared.config.serverfilter,
        "root": shared.store.root().to_string_lossy(),
        "disk_total_bytes": disk.map(|d| d.total),
        "disk_used_bytes": disk.map(|d| d.used),
        "disk_free_bytes": disk.map(|d| d.free),
        "uptime_s": shared.started.elapsed().as_secs_f64(),
        "files_stored": shared.files_stored.load(Ordering::Relaxed),
        "files_stored_in_spares": shared.files_in_spares.load(Ordering::Relaxed),
        "spares_ready": spares_ready,
        "bodies_spliced": shared.bodies_spliced.load(Ordering::Relaxed),
        "bytes_stored": shared.bytes_stored.load(Ordering::Relaxed),
        "connections_open": shared.connections_open.load(Ordering::Relaxed),
        "connections_evicted": shared.connections_evicted.load(Ordering::Relaxed),
        "discard": shared.config.discard,
        "version": crate::VERSION,
    })
    .to_string()
}
