//! Square-root quantization of uint16 pixels to bytes, and its inverse, through
//! lookup tables (PYME_WIRE.md section 3).

use super::PzfError;

/// Checks a quantization offset and scale: both finite, the scale positive.
pub fn check_params(offset: f32, scale: f32) -> Result<(), PzfError> {
    if !offset.is_finite() {
        return Err(PzfError::InvalidParams(format!(
            "quantization offset {offset} is not finite"
        )));
    }
    if !scale.is_finite() || scale <= 0.0 {
        return Err(PzfError::InvalidParams(format!(
            "quantization scale {scale} is not a positive number"
        )));
    }
    Ok(())
}

/// The quantized byte of every uint16 value for one offset and scale.
pub struct QuantTable {
    offset: f32,
    scale: f32,
    table: Box<[u8; 65536]>,
}

impl QuantTable {
    /// Builds the table; the parameters must pass [`check_params`].
    pub fn new(offset: f32, scale: f32) -> Result<Self, PzfError> {
        check_params(offset, scale)?;
        let mut table = Box::new([0u8; 65536]);
        for (x, q) in table.iter_mut().enumerate() {
            *q = quantize_one(x as u16, offset, scale);
        }
        Ok(QuantTable {
            offset,
            scale,
            table,
        })
    }

    /// True if the table was built for these parameters.
    pub fn is_for(&self, offset: f32, scale: f32) -> bool {
        self.offset.to_bits() == offset.to_bits() && self.scale.to_bits() == scale.to_bits()
    }

    /// The quantized byte of `x`.
    pub fn get(&self, x: u16) -> u8 {
        self.table[x as usize]
    }
}

/// `round(sqrt(x - offset) / scale)`, saturated to 0..=255; 0 below the offset.
pub fn quantize_one(x: u16, offset: f32, scale: f32) -> u8 {
    let above = f64::from(x) - f64::from(offset);
    if above <= 0.0 {
        return 0;
    }
    (above.sqrt() / f64::from(scale)).round().min(255.0) as u8
}

/// Quantizes little-endian uint16 `pixels` into `out` (one byte per pixel).
pub fn quantize_into(table: &QuantTable, pixels: &[u8], out: &mut [u8]) {
    for (q, p) in out.iter_mut().zip(pixels.chunks_exact(2)) {
        *q = table.get(u16::from_le_bytes([p[0], p[1]]));
    }
}

/// Appends the quantized bytes of little-endian uint16 `pixels` to `out`,
/// four pixels per read, without first zeroing the room they take.
pub fn quantize_extend(table: &QuantTable, pixels: &[u8], out: &mut Vec<u8>) {
    let t = &table.table;
    let mut words = pixels.chunks_exact(8);
    out.reserve(pixels.len() / 2);
    out.extend(words.by_ref().flat_map(|word| {
        let v = u64::from_le_bytes(word.try_into().expect("8 bytes"));
        [
            t[(v & 0xffff) as usize],
            t[((v >> 16) & 0xffff) as usize],
            t[((v >> 32) & 0xffff) as usize],
            t[(v >> 48) as usize],
        ]
    }));
    out.extend(
        words
            .remainder()
            .chunks_exact(2)
            .map(|p| table.get(u16::from_le_bytes([p[0], p[1]]))),
    );
}

/// The restored uint16 value of each byte: `(q * scale)^2 + offset`, cast to uint16.
pub fn dequant_table(offset: f32, scale: f32) -> [u16; 256] {
    let mut table = [0u16; 256];
    for (q, x) in table.iter_mut().enumerate() {
        let v = q as f32 * scale;
        *x = (v * v + offset) as u16;
    }
    table
}

/// Restores little-endian uint16 pixels into `out` from quantized bytes.
pub fn dequantize_into(table: &[u16; 256], quantized: &[u8], out: &mut [u8]) {
    for (p, &q) in out.chunks_exact_mut(2).zip(quantized) {
        p.copy_from_slice(&table[q as usize].to_le_bytes());
    }
}
