//! Files: a raw little-endian pixel file cut into one PZF file per frame, and a
//! PZF file back to raw pixels. The `pzf` subcommand is a thin layer over these.

use std::fs;
use std::path::{Path, PathBuf};

use super::frame::{decode_into, EncodeParams, Encoder};
use super::{PzfError, PzfHeader};

/// Parses `ROWSxCOLS` or `ROWSxCOLSxDEPTH` into (width, height, depth).
pub fn parse_shape(shape: &str) -> Result<(u32, u32, u32), PzfError> {
    let bad = || PzfError::InvalidParams(format!("shape {shape:?} is not ROWSxCOLS[xDEPTH]"));
    let dims: Vec<u32> = shape
        .split('x')
        .map(|d| d.trim().parse().map_err(|_| bad()))
        .collect::<Result<_, _>>()?;
    match dims[..] {
        [w, h] => Ok((w, h, 1)),
        [w, h, d] => Ok((w, h, d)),
        _ => Err(bad()),
    }
}

/// The name of frame `index`'s file: `PREFIX%05d.pzf`.
pub fn frame_path(prefix: &str, index: usize) -> PathBuf {
    PathBuf::from(format!("{prefix}{index:05}.pzf"))
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> PzfError + '_ {
    move |source| PzfError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Writes one PZF file per frame of the raw file `input` (frames numbered from 0),
/// at most `frames` of them. The file must hold whole frames. Returns the paths written.
pub fn encode_raw_file(
    input: &Path,
    out_prefix: &str,
    params: &EncodeParams,
    frames: Option<usize>,
) -> Result<Vec<PathBuf>, PzfError> {
    let encoder = Encoder::new(*params)?;
    let raw = fs::read(input).map_err(io_error(input))?;
    let frame_bytes = encoder.frame_bytes();
    if raw.len() % frame_bytes != 0 {
        return Err(PzfError::SizeMismatch {
            expected: frame_bytes,
            actual: raw.len() % frame_bytes,
        });
    }
    let available = raw.len() / frame_bytes;
    let count = frames.map_or(available, |n| n.min(available));
    let mut written = Vec::with_capacity(count);
    let mut out = Vec::new();
    for (index, pixels) in raw.chunks_exact(frame_bytes).take(count).enumerate() {
        out.clear();
        let frame_num = u32::try_from(index).map_err(|_| PzfError::TooLarge)?;
        encoder.encode(pixels, frame_num, params.timestamp, &mut out)?;
        let path = frame_path(out_prefix, index);
        fs::write(&path, &out).map_err(io_error(&path))?;
        written.push(path);
    }
    Ok(written)
}

/// Decodes the PZF file `input` and writes its pixels to `output`; returns its header.
pub fn decode_file(input: &Path, output: &Path) -> Result<PzfHeader, PzfError> {
    let bytes = fs::read(input).map_err(io_error(input))?;
    let mut pixels = Vec::new();
    let header = decode_into(&bytes, &mut pixels)?;
    fs::write(output, &pixels).map_err(io_error(output))?;
    Ok(header)
}
