//! `PzfFilter`: encodes each frame handed to the streamer as a PZF file.
//!
//! The parameters are checked once, at construction; a frame whose size does not
//! match them fails alone. The frame number comes from the file's distribution index.

use super::{FileInfo, Filter, FilterError};
use crate::pzf::{EncodeParams, Encoder, PzfError};

/// Encodes raw little-endian frames as PZF files.
pub struct PzfFilter {
    encoder: Encoder,
}

impl PzfFilter {
    /// A filter for frames described by `params` (its `frame_num` is replaced by
    /// each file's index, 0 when it has none).
    pub fn new(params: EncodeParams) -> Result<Self, PzfError> {
        Ok(PzfFilter {
            encoder: Encoder::new(params)?.on_calling_thread(),
        })
    }

    /// The parameters frames are encoded with.
    pub fn params(&self) -> &EncodeParams {
        self.encoder.params()
    }
}

impl Filter for PzfFilter {
    fn apply(
        &self,
        file: &FileInfo<'_>,
        data: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), FilterError> {
        let frame_num = match file.index {
            None => 0,
            Some(index) => u32::try_from(index).map_err(|_| {
                FilterError(format!(
                    "{}: frame index {index} does not fit a PZF frame number",
                    file.name
                ))
            })?,
        };
        let timestamp = self.encoder.params().timestamp;
        self.encoder
            .encode(data, frame_num, timestamp, out)
            .map_err(|e| FilterError(format!("{}: {e}", file.name)))
    }
}
