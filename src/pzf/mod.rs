//! PZF: PYME's one-frame-per-file image format (PYME_WIRE.md section 3) and its
//! Huffman coding (section 4).
//!
//! - [`header`]: the 64-byte header, read (versions 1 to 3) and written (version 3).
//! - [`huffman`]: Basic Compression Library Huffman blocks, byte-identical to pymecompress.
//! - [`quant`]: square-root quantization of uint16 pixels.
//! - [`frame`]: whole frames: [`encode`], [`decode`], [`decode_into`], [`Encoder`].
//! - [`chunked`]: the chunked-Huffman data section, coded on several threads.
//! - [`files`]: raw files to PZF files and back (what the `pzf` subcommand does).
//!
//! Pure computation apart from [`files`]: no sockets, no global state beyond a
//! per-thread cache. Decoding treats every byte as hostile: errors, never panics.

pub mod chunked;
pub mod files;
pub mod frame;
pub mod header;
pub mod huffman;
pub mod quant;

use std::path::PathBuf;

pub use frame::{decode, decode_into, encode, EncodeParams, Encoder};
pub use header::{Compression, DataFormat, DimOrder, PzfHeader, Quantization};
pub use huffman::HuffmanError;

/// What can go wrong making or reading a PZF file.
#[derive(Debug, thiserror::Error)]
pub enum PzfError {
    /// Encoding parameters that cannot make a valid file.
    #[error("invalid PZF parameters: {0}")]
    InvalidParams(String),
    /// The pixel buffer does not match the frame's dimensions.
    #[error("pixel data is {actual} bytes, the frame needs {expected}")]
    SizeMismatch { expected: usize, actual: usize },
    /// The frame's size overflows what can be addressed or stored.
    #[error("PZF frame too large")]
    TooLarge,
    /// The header is not a PZF header this reader can take.
    #[error("bad PZF header: {0}")]
    BadHeader(String),
    /// The file ends early.
    #[error("PZF file truncated in its {0}")]
    Truncated(&'static str),
    /// The data section contradicts the header.
    #[error("corrupt PZF data: {0}")]
    Corrupt(String),
    /// A Huffman block is corrupt.
    #[error("corrupt PZF data: {0}")]
    Huffman(#[from] HuffmanError),
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}
