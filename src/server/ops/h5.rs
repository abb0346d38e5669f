//! `PUT /__aggregate_h5/<file>.h5/<part>` (PYME's cluster HDF spooling: metadata,
//! events, PZF frames into one `.h5` file) and `GET /<file>.h5/` (its listing) and
//! `GET /<file>.h5/<part>`: the connection's side of `h5.rs`, which decides what the
//! request means. The body and the answer are handled as in `ops/h5r.rs`. Without
//! the `hdf5` feature `h5.rs` answers 501 with the reason. May not parse the names
//! or the bodies itself: that is `h5.rs`'s.

use std::path::Path;

use crate::name::NameError;
use crate::server::connection::{Connection, Next};
use crate::server::h5;
use crate::server::ops::h5r::{put_whole_body, send};
use crate::server::ops::operand;
use crate::server::router::Request;

/// `<file>.h5/<part>` must be a valid stored name (the one rule of `name.rs`); what
/// the operation needs of it beyond that (an `.h5` component, one part after it) is
/// answered by the operation, 400, the connection open.
pub(crate) fn judge(request: &Request<'_>) -> Result<(), NameError> {
    operand(request).map(drop)
}

pub(crate) fn put(connection: &mut Connection<'_>, request: &Request<'_>) -> Next {
    put_whole_body(connection, request, h5::aggregate)
}

/// The files GET's hook: `Some` (answered) when `relative` is inside an `.h5` file
/// that is a file (`<file>.h5/` with `folder`, or `<file>.h5/<part>`); `None` for
/// anything else, the file itself and a real folder named `.h5` included.
pub(crate) fn get(
    connection: &mut Connection<'_>,
    relative: &Path,
    folder: bool,
    with_body: bool,
) -> Option<()> {
    let answer = h5::get(&connection.shared().store, relative, folder)?;
    send(connection, &answer, with_body);
    Some(())
}
