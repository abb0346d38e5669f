//! The PZF header (PYME_WIRE.md section 3): its fields, and its bytes read and written.
//! Version 3 (64 bytes) is written; versions 1 and 2 (48 bytes) are also read.

use super::PzfError;

/// The two bytes every PZF file starts with.
pub const MAGIC: [u8; 2] = *b"BD";
/// The header version written.
pub const VERSION: u8 = 3;
/// Size of the version-3 header, where its data starts.
pub const HEADER_LEN: usize = 64;
/// Size of the version-1 and -2 headers.
pub const OLD_HEADER_LEN: usize = 48;

/// Pixel type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DataFormat {
    U8,
    U16,
    F32,
}

impl DataFormat {
    /// Bytes per pixel.
    pub fn item_size(self) -> usize {
        match self {
            DataFormat::U8 => 1,
            DataFormat::U16 => 2,
            DataFormat::F32 => 4,
        }
    }

    fn code(self) -> u8 {
        self as u8
    }

    fn from_code(code: u8) -> Result<Self, PzfError> {
        match code {
            0 => Ok(DataFormat::U8),
            1 => Ok(DataFormat::U16),
            2 => Ok(DataFormat::F32),
            _ => Err(PzfError::BadHeader(format!("unknown data format {code}"))),
        }
    }
}

/// How the pixel bytes are coded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Compression {
    /// The bytes as they are.
    Raw,
    /// One Huffman block.
    Huffman,
    /// Huffman blocks of equal-size pieces, coded in parallel.
    HuffmanChunked,
}

impl Compression {
    fn from_code(code: u8) -> Result<Self, PzfError> {
        match code {
            0 => Ok(Compression::Raw),
            1 => Ok(Compression::Huffman),
            2 => Ok(Compression::HuffmanChunked),
            _ => Err(PzfError::BadHeader(format!("unknown compression {code}"))),
        }
    }
}

/// Whether pixels were square-root quantized to bytes before coding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Quantization {
    None,
    /// `q = round(sqrt(x - QuantOffset) / QuantScale)`, uint16 data only.
    Sqrt,
}

impl Quantization {
    fn from_code(code: u8) -> Result<Self, PzfError> {
        match code {
            0 => Ok(Quantization::None),
            1 => Ok(Quantization::Sqrt),
            _ => Err(PzfError::BadHeader(format!("unknown quantization {code}"))),
        }
    }
}

/// Memory order of the pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DimOrder {
    /// Row-major.
    C,
    /// Column-major.
    F,
}

impl DimOrder {
    fn code(self) -> u8 {
        match self {
            DimOrder::C => b'C',
            DimOrder::F => b'F',
        }
    }

    fn from_code(code: u8) -> Result<Self, PzfError> {
        match code {
            b'C' => Ok(DimOrder::C),
            b'F' => Ok(DimOrder::F),
            _ => Err(PzfError::BadHeader(format!(
                "unknown dimension order {code:#04x}"
            ))),
        }
    }
}

/// The fields of a PZF header.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PzfHeader {
    /// 1, 2 or 3 when read; 3 when written.
    pub version: u8,
    pub format: DataFormat,
    pub compression: Compression,
    pub quantization: Quantization,
    pub order: DimOrder,
    pub sequence_id: i64,
    pub frame_num: u32,
    /// Size of the first array dimension (rows for C order).
    pub width: u32,
    /// Size of the second dimension.
    pub height: u32,
    /// Third dimension, 1 for a 2-D frame.
    pub depth: u32,
    pub timestamp: u64,
    pub quant_offset: f32,
    pub quant_scale: f32,
    /// Where the data starts (64 for version 3, 48 before).
    pub data_offset: u32,
}

impl PzfHeader {
    /// Number of pixels, or an error if it overflows.
    pub fn pixel_count(&self) -> Result<usize, PzfError> {
        let n = u64::from(self.width)
            .checked_mul(u64::from(self.height))
            .and_then(|n| n.checked_mul(u64::from(self.depth)))
            .ok_or(PzfError::TooLarge)?;
        usize::try_from(n).map_err(|_| PzfError::TooLarge)
    }

    /// Bytes of pixels once decoded.
    pub fn pixel_bytes(&self) -> Result<usize, PzfError> {
        self.pixel_count()?
            .checked_mul(self.format.item_size())
            .ok_or(PzfError::TooLarge)
    }

    /// Bytes the data section holds once Huffman-decoded: one per pixel when quantized.
    pub fn coded_bytes(&self) -> Result<usize, PzfError> {
        match self.quantization {
            Quantization::Sqrt => self.pixel_count(),
            Quantization::None => self.pixel_bytes(),
        }
    }

    /// Appends the version-3 header bytes to `out` (`version` and `data_offset` are ignored).
    pub fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&[
            VERSION,
            self.format.code(),
            self.compression as u8,
            self.quantization as u8,
            self.order.code(),
            0,
        ]);
        out.extend_from_slice(&self.sequence_id.to_le_bytes());
        out.extend_from_slice(&self.frame_num.to_le_bytes());
        out.extend_from_slice(&self.width.to_le_bytes());
        out.extend_from_slice(&self.height.to_le_bytes());
        out.extend_from_slice(&self.depth.to_le_bytes());
        out.extend_from_slice(&self.timestamp.to_le_bytes());
        out.extend_from_slice(&self.quant_offset.to_le_bytes());
        out.extend_from_slice(&self.quant_scale.to_le_bytes());
        out.extend_from_slice(&(HEADER_LEN as u32).to_le_bytes());
        out.extend_from_slice(&[0; 12]);
    }

    /// Reads a header of any supported version from the start of `bytes`.
    pub fn read(bytes: &[u8]) -> Result<Self, PzfError> {
        let fixed = bytes
            .get(..OLD_HEADER_LEN)
            .ok_or(PzfError::Truncated("header"))?;
        if fixed[..2] != MAGIC {
            return Err(PzfError::BadHeader("not a PZF file (no BD magic)".into()));
        }
        let version = fixed[2];
        if !(1..=3).contains(&version) {
            return Err(PzfError::BadHeader(format!(
                "unsupported version {version}"
            )));
        }
        let order = if version == 1 {
            DimOrder::C
        } else {
            DimOrder::from_code(fixed[6])?
        };
        let data_offset = if version >= 3 {
            read_data_offset(bytes)?
        } else {
            OLD_HEADER_LEN as u32
        };
        Ok(PzfHeader {
            version,
            format: DataFormat::from_code(fixed[3])?,
            compression: Compression::from_code(fixed[4])?,
            quantization: Quantization::from_code(fixed[5])?,
            order,
            sequence_id: i64::from_le_bytes(array(fixed, 8)),
            frame_num: u32::from_le_bytes(array(fixed, 16)),
            width: u32::from_le_bytes(array(fixed, 20)),
            height: u32::from_le_bytes(array(fixed, 24)),
            depth: u32::from_le_bytes(array(fixed, 28)),
            timestamp: u64::from_le_bytes(array(fixed, 32)),
            quant_offset: f32::from_le_bytes(array(fixed, 40)),
            quant_scale: f32::from_le_bytes(array(fixed, 44)),
            data_offset,
        })
    }
}

fn read_data_offset(bytes: &[u8]) -> Result<u32, PzfError> {
    let field = bytes.get(48..52).ok_or(PzfError::Truncated("header"))?;
    let offset = u32::from_le_bytes(array(field, 0));
    if (offset as usize) < HEADER_LEN || offset as usize > bytes.len() {
        return Err(PzfError::BadHeader(format!(
            "data offset {offset} outside the file"
        )));
    }
    Ok(offset)
}

fn array<const N: usize>(bytes: &[u8], at: usize) -> [u8; N] {
    bytes[at..at + N].try_into().expect("in the fixed header")
}
