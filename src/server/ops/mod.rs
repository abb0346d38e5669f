//! The data server's operations, one file per family, each with its own parser of
//! names and queries and its own tests. The router (`router.rs`) picks one per
//! request; each answers through the `Connection` it is given (its body readers and
//! answer writers) and stores through `storage.rs`.
//!
//! - `files`: PUT and GET of plain files and folders (listings), the bulk of traffic.
//! - `aggregate_txt`: `PUT /__aggregate_txt/<name>`, appends.
//! - `h5r`: `PUT /__aggregate_h5r/<file>.h5r/<Table>`, HDF5 results (`h5r.rs`), and
//!   the files GET's reading of tables back.
//! - `h5`: `PUT /__aggregate_h5/<file>.h5/<part>`, an HDF5 series (`h5.rs`), and the
//!   files GET's listing and parts of `.h5` files.
//! - `status`: `GET /__status`, PYME's figures of the node and ours.
//! - `metrics`: `GET /__metrics`, our figures in the Prometheus text format.
//! - `glob`: `GET /__glob?pattern=<glob>`, the matching paths (PYME's `cglob`).
//! - `mirror`: `PUT /<name>?MirrorSource=<url>`, a copy fetched from a peer.
//! - `pyramid`: `PUT /__pyramid_<operation>/<folder>`, PYME's distributed pyramid
//!   (the HTTP side; the work is `server/pyramid.rs`).
//!
//! What these modules may not do: touch the socket other than through the
//! connection's methods, or parse what another operation is sent.

pub mod aggregate_txt;
pub mod files;
pub mod glob;
pub mod h5;
pub mod h5r;
pub mod metrics;
pub mod mirror;
pub mod pyramid;
pub mod status;

use std::path::PathBuf;

use super::router::Request;
use crate::name::{self, NameError};

/// The judge of operations that name nothing: every request is accepted.
pub(crate) fn accept(_request: &Request<'_>) -> Result<(), NameError> {
    Ok(())
}

/// The name an operation acts on, `<name>` in `__operation/<name>?query`, judged by
/// the one rule for stored names (`name::validate_stored`, query included), as the client judged the
/// whole name before sending it.
pub(crate) fn operand(request: &Request<'_>) -> Result<PathBuf, NameError> {
    let rest = request.rest().unwrap_or_default();
    match request.query {
        Some(query) => name::validate_stored(&format!("{rest}?{query}"))?,
        None => name::validate_stored(rest)?,
    }
    Ok(rest.split('/').collect())
}

/// [`operand`] as a judge.
pub(crate) fn judge_operand(request: &Request<'_>) -> Result<(), NameError> {
    operand(request).map(drop)
}
