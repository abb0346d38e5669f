//! Whole PZF frames: pixels to file bytes and back.
//!
//! Encoding checks its parameters before writing anything, so bad parameters give
//! an error, never a corrupt file. Decoding checks every size against the input
//! before allocating, so a lying header cannot make it allocate more than the
//! input could justify (every coded byte takes at least one bit: at most 8 bytes
//! out per byte in, 16 for quantized frames).

use std::cell::RefCell;

use super::chunked;
use super::header::{
    Compression, DataFormat, DimOrder, PzfHeader, Quantization, HEADER_LEN, VERSION,
};
use super::huffman::{self, SymbolSource};
use super::quant::{self, QuantTable};
use super::PzfError;

/// How to encode a frame.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EncodeParams {
    pub format: DataFormat,
    /// First array dimension (rows for C order).
    pub width: u32,
    /// Second dimension.
    pub height: u32,
    /// Third dimension, 1 for a 2-D frame.
    pub depth: u32,
    pub order: DimOrder,
    pub compression: Compression,
    pub quantization: Quantization,
    pub quant_offset: f32,
    pub quant_scale: f32,
    pub sequence_id: i64,
    pub frame_num: u32,
    pub timestamp: u64,
    /// Pieces for [`Compression::HuffmanChunked`]; 0 means one per available core.
    pub chunks: u16,
}

impl EncodeParams {
    /// A 2-D, C-order, Huffman-coded, unquantized frame of `width x height`.
    pub fn new(format: DataFormat, width: u32, height: u32) -> Self {
        EncodeParams {
            format,
            width,
            height,
            depth: 1,
            order: DimOrder::C,
            compression: Compression::Huffman,
            quantization: Quantization::None,
            quant_offset: 0.0,
            quant_scale: 1.0,
            sequence_id: 0,
            frame_num: 0,
            timestamp: 0,
            chunks: 0,
        }
    }

    /// The header these parameters produce.
    pub fn header(&self) -> PzfHeader {
        PzfHeader {
            version: VERSION,
            format: self.format,
            compression: self.compression,
            quantization: self.quantization,
            order: self.order,
            sequence_id: self.sequence_id,
            frame_num: self.frame_num,
            width: self.width,
            height: self.height,
            depth: self.depth,
            timestamp: self.timestamp,
            quant_offset: self.quant_offset,
            quant_scale: self.quant_scale,
            data_offset: HEADER_LEN as u32,
        }
    }

    /// Checks that the parameters describe a frame that can be written; returns
    /// the frame's size in bytes.
    pub fn validate(&self) -> Result<usize, PzfError> {
        if self.width == 0 || self.height == 0 || self.depth == 0 {
            return Err(PzfError::InvalidParams(format!(
                "dimensions {}x{}x{} include a zero",
                self.width, self.height, self.depth
            )));
        }
        if self.quantization == Quantization::Sqrt {
            if self.format != DataFormat::U16 {
                return Err(PzfError::InvalidParams(
                    "quantization needs uint16 data".into(),
                ));
            }
            quant::check_params(self.quant_offset, self.quant_scale)?;
        }
        self.header().pixel_bytes()
    }
}

/// Encodes frames with fixed parameters; holds the quantization table, if any.
pub struct Encoder {
    params: EncodeParams,
    frame_bytes: usize,
    quant: Option<QuantTable>,
    parallel_chunks: bool,
}

impl Encoder {
    /// Checks the parameters and prepares the tables.
    pub fn new(params: EncodeParams) -> Result<Self, PzfError> {
        let frame_bytes = params.validate()?;
        let quant = match params.quantization {
            Quantization::Sqrt => Some(QuantTable::new(params.quant_offset, params.quant_scale)?),
            Quantization::None => None,
        };
        Ok(Encoder {
            params,
            frame_bytes,
            quant,
            parallel_chunks: true,
        })
    }

    /// Codes the chunks of `HuffmanChunked` frames on the calling thread (no
    /// thread started, nothing allocated per frame; same bytes). The streamer's
    /// PZF filter does this: the sender threads of the servers already run in
    /// parallel, and more threads per frame would only oversubscribe the cores.
    pub fn on_calling_thread(mut self) -> Self {
        self.parallel_chunks = false;
        self
    }

    /// The parameters frames are encoded with.
    pub fn params(&self) -> &EncodeParams {
        &self.params
    }

    /// Bytes of pixels a frame must have.
    pub fn frame_bytes(&self) -> usize {
        self.frame_bytes
    }

    /// Appends the PZF file of `pixels` (little-endian, in the parameters' order) to `out`.
    pub fn encode(
        &self,
        pixels: &[u8],
        frame_num: u32,
        timestamp: u64,
        out: &mut Vec<u8>,
    ) -> Result<(), PzfError> {
        if pixels.len() != self.frame_bytes {
            return Err(PzfError::SizeMismatch {
                expected: self.frame_bytes,
                actual: pixels.len(),
            });
        }
        let params = EncodeParams {
            frame_num,
            timestamp,
            ..self.params
        };
        write_frame(
            &params,
            self.quant.as_ref(),
            self.parallel_chunks,
            pixels,
            out,
        )
    }
}

thread_local! {
    /// The last quantization table [`encode`] built on this thread.
    static QUANT_CACHE: RefCell<Option<QuantTable>> = const { RefCell::new(None) };
}

/// Appends the PZF file of `pixels` to `out`.
pub fn encode(params: &EncodeParams, pixels: &[u8], out: &mut Vec<u8>) -> Result<(), PzfError> {
    let expected = params.validate()?;
    if pixels.len() != expected {
        return Err(PzfError::SizeMismatch {
            expected,
            actual: pixels.len(),
        });
    }
    if params.quantization == Quantization::None {
        return write_frame(params, None, true, pixels, out);
    }
    QUANT_CACHE.with(|cache| {
        let mut cache = cache.borrow_mut();
        if !cache
            .as_ref()
            .is_some_and(|t| t.is_for(params.quant_offset, params.quant_scale))
        {
            *cache = Some(QuantTable::new(params.quant_offset, params.quant_scale)?);
        }
        write_frame(params, cache.as_ref(), true, pixels, out)
    })
}

thread_local! {
    /// Quantized bytes of the frame being encoded on this thread; kept between
    /// frames so that the steady state allocates nothing.
    static QUANTIZED: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Writes header and data; parameters and sizes are already checked.
fn write_frame(
    params: &EncodeParams,
    quant: Option<&QuantTable>,
    parallel: bool,
    pixels: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), PzfError> {
    params.header().write(out);
    let Some(table) = quant else {
        return write_data(params.compression, params.chunks, parallel, pixels, out);
    };
    if params.compression == Compression::Raw {
        let start = out.len();
        out.resize(start + pixels.len() / 2, 0);
        quant::quantize_into(table, pixels, &mut out[start..]);
        return Ok(());
    }
    // Quantizing once into a buffer beats quantizing on the fly twice (histogram, codes).
    QUANTIZED.with(|scratch| {
        let mut scratch = scratch.borrow_mut();
        scratch.clear();
        quant::quantize_extend(table, pixels, &mut scratch);
        write_data(
            params.compression,
            params.chunks,
            parallel,
            &scratch[..],
            out,
        )
    })
}

fn write_data<S: SymbolSource + ?Sized>(
    compression: Compression,
    chunks: u16,
    parallel: bool,
    source: &S,
    out: &mut Vec<u8>,
) -> Result<(), PzfError> {
    match compression {
        Compression::Raw => {
            let start = out.len();
            out.resize(start + source.len(), 0);
            copy_symbols(source, &mut out[start..]);
        }
        Compression::Huffman => huffman::encode_into(source, out),
        Compression::HuffmanChunked => chunked::encode_into(source, chunks, parallel, out)?,
    }
    Ok(())
}

fn copy_symbols<S: SymbolSource + ?Sized>(source: &S, out: &mut [u8]) {
    const STEP: usize = 4096;
    let mut buf = [0u8; STEP];
    for (i, dst) in out.chunks_mut(STEP).enumerate() {
        let n = dst.len();
        dst.copy_from_slice(source.block(i * STEP, &mut buf[..n]));
    }
}

/// Decodes a PZF file: its header and its pixels (little-endian, in its order).
pub fn decode(bytes: &[u8]) -> Result<(PzfHeader, Vec<u8>), PzfError> {
    let mut pixels = Vec::new();
    let header = decode_into(bytes, &mut pixels)?;
    Ok((header, pixels))
}

/// Decodes a PZF file into `pixels` (cleared first; its capacity is reused).
pub fn decode_into(bytes: &[u8], pixels: &mut Vec<u8>) -> Result<PzfHeader, PzfError> {
    pixels.clear();
    let header = PzfHeader::read(bytes)?;
    check_decodable(&header)?;
    let data = &bytes[header.data_offset as usize..];
    let pixel_bytes = header.pixel_bytes()?;
    let coded_bytes = header.coded_bytes()?;
    check_data_size(header.compression, data, coded_bytes)?;
    pixels.resize(pixel_bytes, 0);
    // Quantized bytes are decoded into the upper half, then expanded in place.
    let coded = &mut pixels[pixel_bytes - coded_bytes..];
    match header.compression {
        Compression::Raw => coded.copy_from_slice(&data[..coded_bytes]),
        Compression::Huffman => {
            huffman::decode_into(data, coded)?;
        }
        Compression::HuffmanChunked => chunked::decode_into(data, coded)?,
    }
    if header.quantization == Quantization::Sqrt {
        dequantize_in_place(&header, pixels);
    }
    Ok(header)
}

fn check_decodable(header: &PzfHeader) -> Result<(), PzfError> {
    if header.quantization == Quantization::Sqrt && header.format != DataFormat::U16 {
        return Err(PzfError::BadHeader(
            "quantized data that is not uint16".into(),
        ));
    }
    Ok(())
}

/// Rejects a data section too small for the frame the header announces.
fn check_data_size(
    compression: Compression,
    data: &[u8],
    coded_bytes: usize,
) -> Result<(), PzfError> {
    match compression {
        Compression::Raw if data.len() < coded_bytes => Err(PzfError::Truncated("pixel data")),
        Compression::Huffman => Ok(huffman::check_capacity(data.len(), coded_bytes)?),
        Compression::HuffmanChunked => chunked::check_capacity(data, coded_bytes),
        Compression::Raw => Ok(()),
    }
}

/// `pixels` holds the quantized bytes in its upper half: expand them forward,
/// which never overwrites a byte not yet read.
fn dequantize_in_place(header: &PzfHeader, pixels: &mut [u8]) {
    let table = quant::dequant_table(header.quant_offset, header.quant_scale);
    let n = pixels.len() / 2;
    // Pixels `i..i + k` read bytes `n + i..n + i + k` and write `2i..2i + 2k`:
    // disjoint while `k <= (n - i) / 2`, so whole runs go at once.
    let mut i = 0;
    while n - i >= 2 {
        let k = (n - i) / 2;
        let (low, high) = pixels.split_at_mut(n + i);
        quant::dequantize_into(&table, &high[..k], &mut low[2 * i..2 * (i + k)]);
        i += k;
    }
    if i < n {
        let x = table[pixels[n + i] as usize].to_le_bytes();
        pixels[2 * i..2 * i + 2].copy_from_slice(&x);
    }
}
