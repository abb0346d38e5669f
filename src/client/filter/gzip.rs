//! `GzipFilter`: gzip-compresses each file; PYME servers decode `Content-Encoding: gzip`.
//!
//! The deflate state (a few hundred KB) is kept per thread and reset between files,
//! so that the steady state allocates nothing; the gzip framing is written here.

use std::cell::RefCell;

use flate2::{Compress, Compression, Crc, FlushCompress, Status};

use super::{FileInfo, Filter, FilterError};

/// The gzip member header: magic, deflate, no flags, no time, unknown OS.
const GZIP_HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];

thread_local! {
    /// This thread's raw-deflate state and the level it was made for.
    static DEFLATE: RefCell<Option<(u32, Compress)>> = const { RefCell::new(None) };
}

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
        out.extend_from_slice(&GZIP_HEADER);
        DEFLATE
            .with(|state| {
                let mut state = state.borrow_mut();
                let deflate = match &mut *state {
                    Some((level, deflate)) if *level == self.level => {
                        deflate.reset();
                        deflate
                    }
                    slot => {
                        &mut slot
                            .insert((
                                self.level,
                                Compress::new(Compression::new(self.level), false),
                            ))
                            .1
                    }
                };
                deflate_all(deflate, data, out)
            })
            .map_err(|e| FilterError(format!("{}: gzip: {e}", file.name)))?;
        let mut crc = Crc::new();
        crc.update(data);
        out.extend_from_slice(&crc.sum().to_le_bytes());
        out.extend_from_slice(&(data.len() as u32).to_le_bytes()); // ISIZE is the size mod 2^32
        Ok(())
    }

    fn content_encoding(&self) -> Option<&str> {
        Some("gzip")
    }
}

/// Deflates all of `data` onto the end of `out`, growing it as needed.
fn deflate_all(
    deflate: &mut Compress,
    data: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), flate2::CompressError> {
    out.reserve(data.len() + data.len() / 16 + 64);
    loop {
        // With room for output, every call with Finish makes progress.
        if out.capacity() - out.len() < 64 {
            out.reserve(out.capacity() / 2 + 64);
        }
        let consumed = deflate.total_in() as usize;
        let status = deflate.compress_vec(&data[consumed..], out, FlushCompress::Finish)?;
        if status == Status::StreamEnd {
            return Ok(());
        }
    }
}
