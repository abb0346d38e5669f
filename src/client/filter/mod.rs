//! Filters: what is done to a file's bytes before they go on the wire.
//!
//! A filter runs on the sender thread of the stream that carries the file, so
//! filters of different streams run concurrently: a filter must be `Send + Sync`
//! and keep any per-call state on the stack or in the output buffer. The sender
//! thread owns the output buffer and hands the same one back on every call, so a
//! filter that writes into `out` allocates nothing in the steady state.

use std::sync::Arc;

pub mod gzip;
pub mod pzf;

/// What a filter knows about the file it transforms.
#[derive(Debug, Clone, Copy)]
pub struct FileInfo<'a> {
    /// The file's name, as given to `put` (already validated).
    pub name: &'a str,
    /// The distribution index given to `put` (a frame number), if any.
    pub index: Option<i64>,
}

/// A filter failed: the file fails with this message and nothing is sent for it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct FilterError(pub String);

/// Transforms a file's bytes before they are sent (compression, format conversion).
pub trait Filter: Send + Sync {
    /// Write the transformed `data` into `out`. `out` arrives empty, with the
    /// capacity left by earlier calls.
    fn apply(&self, file: &FileInfo<'_>, data: &[u8], out: &mut Vec<u8>)
        -> Result<(), FilterError>;

    /// The `Content-Encoding` the filtered body carries on the wire (for example
    /// `gzip`, which PYME servers decode before storing), if any.
    fn content_encoding(&self) -> Option<&str> {
        None
    }
}

/// Sends the bytes unchanged. The streamer short-cuts it: no copy is made.
#[derive(Debug, Clone, Copy, Default)]
pub struct Identity;

impl Filter for Identity {
    fn apply(
        &self,
        _file: &FileInfo<'_>,
        data: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), FilterError> {
        out.extend_from_slice(data);
        Ok(())
    }
}

/// A filter made from a closure.
pub struct FnFilter<F>(pub F);

impl<F> Filter for FnFilter<F>
where
    F: Fn(&FileInfo<'_>, &[u8], &mut Vec<u8>) -> Result<(), FilterError> + Send + Sync,
{
    fn apply(
        &self,
        file: &FileInfo<'_>,
        data: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), FilterError> {
        (self.0)(file, data, out)
    }
}

/// A shared filter, as the streamer holds it.
pub type SharedFilter = Arc<dyn Filter>;
