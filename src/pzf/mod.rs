//! PZF: PYME's one-frame-per-file image format, and its Huffman coding (being written).
