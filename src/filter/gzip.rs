//! `GzipFilter`: gzip-compresses each file; PYME servers decode `Content-Encoding: gzip`.

use std::io::Write;

use flate2::write::GzEncoder;
use flate2::Compression;

use super::{FileInfo, Filter, FilterError};

/// Compresses files with gzip at a fixed level.
#[derive(Debug, Clone, Copy)]
pub struct GzipFilter {
    level: u32,
}

impl GzipFilter {
    /// The fastest level (1): streaming is usually limited by the sender's CPU.
    pub const DEFAULT_LEVEL: u32 = 1;

    /// A filter compressing at `level`, 0 (store) to 9 (smallest); larger values are taken as 9.
    pub fn new(level: u32) -> Self {
        GzipFilter {
            level: level.min(9),
        }
    }

    /// The compression level.
    pub fn level(&self) -> u32 {
        self.level
    }
}

impl Default for GzipFilter {
    fn default() -> Self {
        GzipFilter::new(Self::DEFAULT_LEVEL)
    }
}

impl Filter for GzipFilter {
    fn apply(
        &self,
        file: &FileInfo<'_>,
        data: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), FilterError> {
        let mut encoder = GzEncoder::new(std::mem::take(out), Compression::new(self.level));
        let written = encoder.write_all(data).and_then(|()| encoder.finish());
        match written {
            Ok(bytes) => {
                *out = bytes;
                Ok(())
            }
            Err(e) => Err(FilterError(format!("{}: gzip: {e}", file.name))),
        }
    }

    fn content_encoding(&self) -> Option<&str> {
        Some("gzip")
    }
}
