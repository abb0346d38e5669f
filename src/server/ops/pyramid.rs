//! `PUT /__pyramid_<operation>/<folder>?<query>`: PYME's distributed-pyramid node
//! part (`__pyramid_create`, `__pyramid_update_tile`, `__pyramid_finish`). This file is
//! the HTTP side only: it reads the body, gunzipped if sent so, into memory (bounded
//! by [`pyramid::MAX_BODY_BYTES`], a whole tile) and writes the answer of
//! `server/pyramid.rs`, which does the work. A finish builds the levels before the
//! answer, however long that takes.
//!
//! A GET of a pyramid operation is answered 404 (nothing to get: the tiles are files
//! under the pyramid's folder), and so is any other `__pyramid_` name, its body
//! skipped unread.

use crate::server::body::Decoding;
use crate::server::connection::{Connection, Next};
use crate::server::pyramid::{self, Operation};
use crate::server::router::Request;

/// The operation's name, the first segment (`__pyramid_create`).
fn operation_name<'r>(request: &Request<'r>) -> &'r str {
    request.path.split('/').next().unwrap_or_default()
}

pub(crate) fn put(connection: &mut Connection<'_>, request: &Request<'_>) -> Next {
    let body_len = request.body_len;
    let name = operation_name(request);
    if Operation::from_name(name).is_none() {
        connection.skip_body(body_len)?;
        connection.error(
            404,
            "No such pyramid operation (there are __pyramid_create, __pyramid_update_tile and __pyramid_finish).",
        );
        return Ok(());
    }
    let shared = connection.shared();
    let limit = shared.config.max_body_bytes.min(pyramid::MAX_BODY_BYTES);
    if body_len > limit {
        return connection.refuse(413, "The body is larger than a pyramid tile can be.");
    }
    let mut sink = Decoding::new(Vec::new(), request.head.gzip, limit);
    let written = connection.read_body(body_len, &mut sink)?;
    let body = match sink.finish(written) {
        Ok((body, _)) => body,
        Err(e) => {
            connection.body_error(&e, "The body cannot be received.");
            return Ok(());
        }
    };
    let folder = request.rest().unwrap_or_default();
    let root = shared.store.root();
    let sync = shared.store.syncs();
    match pyramid::handle(root, name, folder, request.query, &body, sync) {
        Ok(answer) if answer.code == 200 => connection.ok_empty(),
        Ok(answer) => connection.answer(answer.code, answer.content_type, &answer.body, true),
        Err(e) => connection.storage_error(&e, "The pyramid could not be written."),
    }
    Ok(())
}

/// Nothing to get: 404 rather than the router's 405 for a known operation asked with
/// another method, since a pyramid's operations are named by prefix and no GET of any
/// of them means anything.
pub(crate) fn get(connection: &mut Connection<'_>, _request: &Request<'_>) -> Next {
    connection.error(
        404,
        "Nothing to get here: pyramid operations are PUT; the tiles are files in the pyramid's folder.",
    );
    Ok(())
}
