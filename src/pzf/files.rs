//! Files: a raw little-endian pixel file cut into one PZF file per frame, and a
//! PZF file back to raw pixels. The `pzf` subcommand is a thin layer over these.

use std::fs::{self, File};
use std::io::{BufReader, Read};
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
/// at most `frames` of them. Returns the paths written.
///
/// The input is read frame by frame into one buffer reused for every frame, and each
/// PZF file is written before the next frame is read, so memory stays at a few
/// frames whatever the input's size (and at what was read, if that is less). A
/// regular file must hold whole frames, checked before anything is written; input
/// whose size is not known in advance (a pipe) ending in a partial frame gives the
/// same error after the whole frames before it.
pub fn encode_raw_file(
    input: &Path,
    out_prefix: &str,
    params: &EncodeParams,
    frames: Option<usize>,
) -> Result<Vec<PathBuf>, PzfError> {
    let encoder = Encoder::new(*params)?;
    let frame_bytes = encoder.frame_bytes();
    let file = File::open(input).map_err(io_error(input))?;
    let metadata = file.metadata().map_err(io_error(input))?;
    if metadata.is_file() {
        check_whole_frames(metadata.len(), frame_bytes)?;
    }
    // Small frames are gathered into fewer reads; larger ones are read straight
    // into `pixels` (a reader without a buffer of its own passes every read on).
    let gather = if frame_bytes < GATHER_FRAMES_BELOW {
        GATHER_BYTES
    } else {
        0
    };
    let mut reader = BufReader::with_capacity(gather, file);
    // Grows with the input actually read, never to a shape's size ahead of the
    // data; from the second frame on, its capacity is reused.
    let mut pixels = Vec::new();
    let mut out = Vec::new();
    let mut written = Vec::new();
    let limit = frames.unwrap_or(usize::MAX);
    while written.len() < limit {
        pixels.clear();
        let filled = Read::by_ref(&mut reader)
            .take(frame_bytes as u64)
            .read_to_end(&mut pixels)
            .map_err(io_error(input))?;
        if filled == 0 {
            break;
        }
        if filled < frame_bytes {
            return Err(PzfError::SizeMismatch {
                expected: frame_bytes,
                actual: filled,
            });
        }
        let index = written.len();
        let frame_num = u32::try_from(index).map_err(|_| PzfError::TooLarge)?;
        out.clear();
        encoder.encode(&pixels, frame_num, params.timestamp, &mut out)?;
        let path = frame_path(out_prefix, index);
        fs::write(&path, &out).map_err(io_error(&path))?;
        written.push(path);
    }
    Ok(written)
}

/// Frames smaller than this are read through a buffer of [`GATHER_BYTES`].
const GATHER_FRAMES_BELOW: usize = 64 << 10;
const GATHER_BYTES: usize = 1 << 20;

/// Errors unless `len` bytes are a whole number of frames (the remainder is reported).
fn check_whole_frames(len: u64, frame_bytes: usize) -> Result<(), PzfError> {
    let remainder = len % frame_bytes as u64;
    if remainder != 0 {
        return Err(PzfError::SizeMismatch {
            expected: frame_bytes,
            // Smaller than `frame_bytes`, which is a usize.
            actual: remainder as usize,
        });
    }
    Ok(())
}

/// Decodes the PZF file `input` and writes its pixels to `output`; returns its header.
pub fn decode_file(input: &Path, output: &Path) -> Result<PzfHeader, PzfError> {
    let bytes = fs::read(input).map_err(io_error(input))?;
    let mut pixels = Vec::new();
    let header = decode_into(&bytes, &mut pixels)?;
    fs::write(output, &pixels).map_err(io_error(output))?;
    Ok(header)
}
