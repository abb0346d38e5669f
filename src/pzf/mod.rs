//! PZF: PYME's one-frame-per-file image format, and its Huffman coding.
pub mod huffman;
