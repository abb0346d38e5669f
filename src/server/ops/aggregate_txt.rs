//! `PUT /__aggregate_txt/<name>`: appends the body to the file `<name>` (created with
//! its folders if missing), as PYME's text aggregation does (logs, spooled tables).
//! A file stored write-once by a plain PUT is never appended to (405), nor is an
//! HDF5 file of PYME's (`.h5r`, `.hdf`, `.h5`: 409, the body skipped).
//!
//! The body, decoded, goes to a spool file first (never into memory), and is appended
//! once complete, so a cut or corrupt body never reaches the file.

use std::sync::atomic::Ordering;

use crate::name::NameError;
use crate::server::body::Decoding;
use crate::server::connection::{Connection, Next};
use crate::server::h5r;
use crate::server::ops::operand;
use crate::server::router::Request;
use crate::server::storage::Appended;

/// `<name>` must be a valid name (the one rule of `name.rs`), query included.
pub(crate) fn judge(request: &Request<'_>) -> Result<(), NameError> {
    operand(request).map(drop)
}

pub(crate) fn put(connection: &mut Connection<'_>, request: &Request<'_>) -> Next {
    let body_len = request.body_len;
    let shared = connection.shared();
    let Ok(relative) = operand(request) else {
        // The judge accepted it; unreachable, answered as the judge would.
        return connection.refuse(400, "The name is not allowed.");
    };
    if h5r::is_hdf5_name(&relative) {
        connection.skip_body(body_len)?;
        connection.error(409, "__aggregate_txt does not append to HDF5 files.");
        return Ok(());
    }
    let spool = match shared.store.spool() {
        Ok(spool) => spool,
        Err(e) => {
            connection.skip_body(body_len)?;
            connection.server_error(&e, "The body cannot be received.");
            return Ok(());
        }
    };
    let limit = shared.config.max_body_bytes;
    let mut sink = Decoding::new(spool, request.head.gzip, limit);
    let written = connection.read_body(body_len, &mut sink)?;
    let (mut spool, len) = match sink.finish(written) {
        Ok(received) => received,
        Err(e) => {
            connection.body_error(&e, "The body cannot be received.");
            return Ok(());
        }
    };
    match shared.store.append(&relative, &mut spool) {
        Ok(Appended::Done) => {
            shared.bytes_stored.fetch_add(len, Ordering::Relaxed);
            connection.ok_empty();
        }
        Ok(Appended::Pyramid) => connection.error(409, super::files::PYRAMID_OWNS),
        Ok(Appended::WriteOnce) => connection.error(
            405,
            "The file was stored write-once; __aggregate_txt appends only to files it made.",
        ),
        Err(e) => connection.storage_error(&e, "The file could not be appended to."),
    }
    Ok(())
}
