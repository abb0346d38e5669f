//! `PUT /__aggregate_h5r/<file>.h5r/<Table>` (PYME's HDF5 results aggregation) and
//! `GET /<file>.h5r/<Table>.npy|.json?from=&to=`, `Metadata.json` (reading results
//! back): the connection's side of `h5r.rs`, which decides what the request means.
//!
//! The body is read whole into memory (gunzipped if sent so, within
//! `--max-body-bytes` and [`MAX_IN_MEMORY_BODY_BYTES`]), handed to `h5r.rs` with the
//! store, and its [`Answer`] sent:
//! an error's reason inside an error page, the connection staying open. Without the
//! `hdf5` feature `h5r.rs` answers 501 with the reason. May not parse the names or
//! the bodies itself: that is `h5r.rs`'s.

use std::path::Path;

use crate::name::NameError;
use crate::server::body::Decoding;
use crate::server::connection::{Connection, End, Next};
use crate::server::h5r::{self, Answer};
use crate::server::ops::operand;
use crate::server::router::Request;
use crate::server::storage::Store;

/// The most bytes of a body held in memory (decoded): the default `--max-body-bytes`
/// is 4 GiB, and a gzip bomb of 2 MiB decoding to 2 GiB was held whole. PYME sends
/// fit results of a task and single frames here, far smaller.
pub const MAX_IN_MEMORY_BODY_BYTES: u64 = 256 << 20;

/// `<file>.h5r/<Table>` must be a valid stored name (the one rule of `name.rs`);
/// what the operation needs of it beyond that (an `.h5r` or `.hdf` component, one
/// table after it) is answered by the operation, 400, the connection open.
pub(crate) fn judge(request: &Request<'_>) -> Result<(), NameError> {
    operand(request).map(drop)
}

pub(crate) fn put(connection: &mut Connection<'_>, request: &Request<'_>) -> Next {
    put_whole_body(connection, request, h5r::aggregate)
}

/// A PUT of an HDF5 operation (`h5r.rs` or `h5.rs`): the body read whole, handed
/// to `aggregate` with the store and the operand, its answer sent.
pub(super) fn put_whole_body(
    connection: &mut Connection<'_>,
    request: &Request<'_>,
    aggregate: fn(&Store, &Path, &[u8]) -> Answer,
) -> Next {
    let Ok(rest) = operand(request) else {
        // The judge accepted it; unreachable, answered as the judge would.
        return connection.refuse(400, "The name is not allowed.");
    };
    let Some(body) = body_in_memory(connection, request)? else {
        return Ok(());
    };
    let answer = aggregate(&connection.shared().store, &rest, &body);
    send(connection, &answer, true);
    Ok(())
}

/// The files GET's hook: `Some` (answered) when `relative` names a part inside an
/// `.h5r`/`.hdf` file (`<file>.h5r/<Table>.npy`); `None` for anything else, the file
/// itself included, which the files GET sends as any file.
pub(crate) fn get(
    connection: &mut Connection<'_>,
    request: &Request<'_>,
    relative: &Path,
    with_body: bool,
) -> Option<()> {
    let answer = h5r::get(&connection.shared().store, relative, request.query)?;
    send(connection, &answer, with_body);
    Some(())
}

/// Reads a whole body into memory, gunzipped if sent so, within the body limit;
/// `None` (answered) when it could not be received.
pub(super) fn body_in_memory(
    connection: &mut Connection<'_>,
    request: &Request<'_>,
) -> Result<Option<Vec<u8>>, End> {
    let limit = connection
        .shared()
        .config
        .max_body_bytes
        .min(MAX_IN_MEMORY_BODY_BYTES);
    if request.body_len > limit {
        return connection
            .refuse(
                413,
                "The body is larger than this operation holds in memory.",
            )
            .map(|()| None);
    }
    let mut sink = Decoding::new(Vec::new(), request.head.gzip, limit);
    let written = connection.read_body(request.body_len, &mut sink)?;
    match sink.finish(written) {
        Ok((body, _)) => Ok(Some(body)),
        Err(e) => {
            connection.body_error(&e, "The body cannot be received.");
            Ok(None)
        }
    }
}

/// Sends an operation's answer: errors as error pages (the connection stays open).
pub(super) fn send(connection: &mut Connection<'_>, answer: &Answer, with_body: bool) {
    if answer.code >= 400 {
        connection.error(answer.code, &String::from_utf8_lossy(&answer.body));
    } else {
        connection.answer(answer.code, answer.content_type, &answer.body, with_body);
    }
}
