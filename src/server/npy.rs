//! Numpy arrays as the data server meets them: a record dtype (the layout of one row),
//! an array of rows in that layout, and the `.npy` file format (read for PUT bodies,
//! written for `GET <file>.h5r/<Table>.npy`).
//!
//! Only plain layouts are modelled: booleans, integers, floats, fixed byte strings
//! (`S<n>`), records of those (nested records and sub-arrays included) and raw bytes.
//! Object, unicode, datetime and complex dtypes are refused: HDF5 tables as PyTables
//! writes them cannot hold objects, and PYME's result tables never use the others.
//! Knows nothing of HTTP, HDF5 or pickles (see `pickle.rs`).

use std::fmt::Write as _;

/// Why an array or dtype was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ArrayError(pub String);

fn refuse<T>(reason: impl Into<String>) -> Result<T, ArrayError> {
    Err(ArrayError(reason.into()))
}

/// The largest item (one row) accepted, and the deepest nesting of records.
const MAX_ITEM_BYTES: usize = 1 << 20;
const MAX_DEPTH: usize = 8;

/// A scalar's kind, as numpy's type characters name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Bool,
    Int,
    Uint,
    Float,
    /// Fixed-length byte string (`S<n>`), zero padded.
    Bytes,
}

/// A numpy dtype limited to what HDF5 tables hold (see the module comment).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dtype {
    /// Little-endian when `size > 1` unless `big_endian`.
    Scalar {
        kind: Kind,
        size: usize,
        big_endian: bool,
    },
    /// A record: named fields at offsets inside `itemsize` bytes.
    Record { fields: Vec<Field>, itemsize: usize },
    /// A fixed-shape sub-array of `base`.
    SubArray { base: Box<Dtype>, shape: Vec<usize> },
}

/// One field of a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    pub name: String,
    pub dtype: Dtype,
    pub offset: usize,
}

impl Dtype {
    /// Bytes of one item.
    pub fn itemsize(&self) -> usize {
        match self {
            Dtype::Scalar { size, .. } => *size,
            Dtype::Record { itemsize, .. } => *itemsize,
            Dtype::SubArray { base, shape } => base.itemsize() * shape.iter().product::<usize>(),
        }
    }

    /// A scalar from a numpy type string such as `<f4`, `|S16`, `u1`, `?`.
    /// `order` is the byte order given beside it (`<`, `>`, `|`, `=`), if any.
    pub fn from_type_str(text: &str, order: Option<char>) -> Result<Dtype, ArrayError> {
        let mut chars = text.chars().peekable();
        let mut big_endian = order == Some('>');
        if let Some(&c) = chars.peek() {
            if matches!(c, '<' | '>' | '|' | '=') {
                big_endian = c == '>';
                chars.next();
            }
        }
        let code = chars
            .next()
            .ok_or_else(|| ArrayError("an empty type".into()))?;
        let digits: String = chars.collect();
        let size = if digits.is_empty() {
            None
        } else {
            Some(
                digits
                    .parse::<usize>()
                    .map_err(|_| ArrayError(format!("the type '{text}' is not understood")))?,
            )
        };
        let (kind, size) = match (code, size) {
            ('?', None) | ('b', Some(1)) => (Kind::Bool, 1),
            ('i', Some(s @ (1 | 2 | 4 | 8))) => (Kind::Int, s),
            ('u', Some(s @ (1 | 2 | 4 | 8))) => (Kind::Uint, s),
            ('f', Some(s @ (4 | 8))) => (Kind::Float, s),
            ('S', Some(s)) if (1..=MAX_ITEM_BYTES).contains(&s) => (Kind::Bytes, s),
            ('V', Some(s)) if s <= MAX_ITEM_BYTES => {
                // Raw bytes: a record without fields until its state says otherwise.
                return Ok(Dtype::Record {
                    fields: Vec::new(),
                    itemsize: s,
                });
            }
            ('O', _) => return refuse("object arrays are refused (they are arbitrary pickles)"),
            _ => return refuse(format!("the type '{text}' is not supported in tables")),
        };
        Ok(Dtype::Scalar {
            kind,
            size,
            big_endian: big_endian && size > 1,
        })
    }

    /// Checks the layout: fields inside the item, no overlap, sizes bounded.
    pub fn validate(&self) -> Result<(), ArrayError> {
        self.validate_at(0)
    }

    fn validate_at(&self, depth: usize) -> Result<(), ArrayError> {
        if depth > MAX_DEPTH {
            return refuse("the dtype is nested too deeply");
        }
        match self {
            Dtype::Scalar { .. } => Ok(()),
            Dtype::SubArray { base, shape } => {
                if shape.is_empty() || shape.contains(&0) {
                    return refuse("a sub-array needs a shape without zeros");
                }
                let count = shape.iter().try_fold(1usize, |a, &n| a.checked_mul(n));
                match count.and_then(|c| c.checked_mul(base.itemsize())) {
                    Some(bytes) if bytes <= MAX_ITEM_BYTES => base.validate_at(depth + 1),
                    _ => refuse("a sub-array is too large"),
                }
            }
            Dtype::Record { fields, itemsize } => {
                if fields.is_empty() {
                    return refuse("raw void items are not supported in tables");
                }
                if *itemsize > MAX_ITEM_BYTES {
                    return refuse("the item is too large");
                }
                let mut spans: Vec<(usize, usize)> = Vec::new();
                for (i, field) in fields.iter().enumerate() {
                    if field.name.is_empty() || fields[..i].iter().any(|f| f.name == field.name) {
                        return refuse("field names must be unique and not empty");
                    }
                    field.dtype.validate_at(depth + 1)?;
                    let end = field.offset.checked_add(field.dtype.itemsize());
                    match end {
                        Some(end) if end <= *itemsize => spans.push((field.offset, end)),
                        _ => {
                            return refuse(format!("field '{}' lies outside the item", field.name))
                        }
                    }
                }
                spans.sort_unstable();
                if spans.windows(2).any(|w| w[1].0 < w[0].1) {
                    return refuse("fields overlap");
                }
                Ok(())
            }
        }
    }

    /// Whether any scalar inside is big-endian.
    pub fn has_big_endian(&self) -> bool {
        match self {
            Dtype::Scalar { big_endian, .. } => *big_endian,
            Dtype::Record { fields, .. } => fields.iter().any(|f| f.dtype.has_big_endian()),
            Dtype::SubArray { base, .. } => base.has_big_endian(),
        }
    }

    /// The `descr` of `.npy` headers (numpy's `dtype.descr`): a type string for a
    /// scalar, a list of `(name, type[, shape])` with `('', '|Vn')` padding for a record.
    pub fn descr(&self) -> String {
        let mut out = String::new();
        self.write_descr(&mut out);
        out
    }

    fn write_descr(&self, out: &mut String) {
        match self {
            Dtype::Scalar { .. } => {
                let _ = write!(out, "'{}'", self.type_str());
            }
            Dtype::SubArray { base, .. } => base.write_descr(out),
            Dtype::Record { fields, itemsize } => {
                let mut sorted: Vec<&Field> = fields.iter().collect();
                sorted.sort_by_key(|f| f.offset);
                out.push('[');
                let mut at = 0;
                for field in sorted {
                    if field.offset > at {
                        let _ = write!(out, "('', '|V{}'), ", field.offset - at);
                    }
                    let _ = write!(out, "('{}', ", field.name);
                    field.dtype.write_descr(out);
                    if let Dtype::SubArray { shape, .. } = &field.dtype {
                        out.push_str(", ");
                        out.push_str(&shape_tuple(shape));
                    }
                    out.push_str("), ");
                    at = field.offset + field.dtype.itemsize();
                }
                if *itemsize > at {
                    let _ = write!(out, "('', '|V{}'), ", itemsize - at);
                }
                if out.ends_with(", ") {
                    out.truncate(out.len() - 2);
                }
                out.push(']');
            }
        }
    }

    fn type_str(&self) -> String {
        match self {
            Dtype::Scalar {
                kind,
                size,
                big_endian,
            } => {
                let order = match (kind, size, big_endian) {
                    (Kind::Bool | Kind::Bytes, _, _) | (_, 1, _) => '|',
                    (_, _, true) => '>',
                    _ => '<',
                };
                let code = match kind {
                    Kind::Bool => 'b',
                    Kind::Int => 'i',
                    Kind::Uint => 'u',
                    Kind::Float => 'f',
                    Kind::Bytes => 'S',
                };
                format!("{order}{code}{size}")
            }
            other => format!("|V{}", other.itemsize()),
        }
    }
}

/// Python's tuple notation for a shape: `(3,)`, `(2, 4)`.
fn shape_tuple(shape: &[usize]) -> String {
    match shape {
        [one] => format!("({one},)"),
        _ => {
            let parts: Vec<String> = shape.iter().map(|n| n.to_string()).collect();
            format!("({})", parts.join(", "))
        }
    }
}

/// A one-dimensional array of items (rows) in C order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Array {
    pub dtype: Dtype,
    pub rows: usize,
    pub data: Vec<u8>,
}

impl Array {
    /// An array from its parts, checked: a valid dtype and exactly `rows` items of data.
    /// A multi-dimensional shape is taken as rows only when it has one dimension (or
    /// none: one row), as PyTables' `Table.append` takes it.
    pub fn new(dtype: Dtype, shape: &[usize], data: Vec<u8>) -> Result<Array, ArrayError> {
        dtype.validate()?;
        let rows = match shape {
            [] => 1,
            [rows] => *rows,
            _ => return refuse("only one-dimensional arrays are appended to tables"),
        };
        let expected = rows.checked_mul(dtype.itemsize());
        if expected != Some(data.len()) {
            return refuse(format!(
                "the data holds {} bytes, {rows} rows of {} bytes were announced",
                data.len(),
                dtype.itemsize()
            ));
        }
        Ok(Array { dtype, rows, data })
    }
}

const MAGIC: &[u8] = b"\x93NUMPY";

/// `np.save` of `array` (format 1.0, or 2.0 when the header needs it).
pub fn write_npy(dtype: &Dtype, rows: usize, data: &[u8]) -> Vec<u8> {
    let header = format!(
        "{{'descr': {}, 'fortran_order': False, 'shape': ({rows},), }}",
        dtype.descr()
    );
    // Magic, version, length, header, padded with spaces and ended by '\n' to 64 bytes.
    let v1 = (10 + header.len() + 1).div_ceil(64) * 64 - 10 <= usize::from(u16::MAX);
    let prefix = if v1 { 10 } else { 12 };
    let total = (prefix + header.len() + 1).div_ceil(64) * 64;
    let padded = total - prefix;
    let mut out = Vec::with_capacity(total + data.len());
    out.extend_from_slice(MAGIC);
    if v1 {
        out.extend_from_slice(&[1, 0]);
        out.extend_from_slice(&(padded as u16).to_le_bytes());
    } else {
        out.extend_from_slice(&[2, 0]);
        out.extend_from_slice(&(padded as u32).to_le_bytes());
    }
    out.extend_from_slice(header.as_bytes());
    out.resize(total - 1, b' ');
    out.push(b'\n');
    out.extend_from_slice(data);
    out
}

/// Whether `body` starts like a `.npy` file.
pub fn is_npy(body: &[u8]) -> bool {
    body.starts_with(MAGIC)
}

/// Reads a `.npy` file (`np.save` of a one-dimensional record array).
pub fn read_npy(body: &[u8]) -> Result<Array, ArrayError> {
    if !is_npy(body) || body.len() < 10 {
        return refuse("not a .npy file");
    }
    let (len, start): (usize, usize) = match body[6] {
        1 => (u16::from_le_bytes([body[8], body[9]]) as usize, 10),
        2 | 3 if body.len() >= 12 => (
            u32::from_le_bytes([body[8], body[9], body[10], body[11]]) as usize,
            12,
        ),
        _ => return refuse("unknown .npy version"),
    };
    let end = start
        .checked_add(len)
        .filter(|&e| e <= body.len())
        .ok_or_else(|| ArrayError(".npy header cut short".into()))?;
    let header = std::str::from_utf8(&body[start..end])
        .map_err(|_| ArrayError(".npy header is not text".into()))?;
    let value = literal::parse(header)?;
    let literal::Value::Dict(entries) = value else {
        return refuse(".npy header is not a dict");
    };
    let get = |key: &str| {
        entries
            .iter()
            .find(|(k, _)| matches!(k, literal::Value::Str(s) if s == key))
            .map(|(_, v)| v)
    };
    let descr = get("descr").ok_or_else(|| ArrayError(".npy header has no descr".into()))?;
    if let Some(literal::Value::Bool(true)) = get("fortran_order") {
        // One-dimensional arrays are the same in either order; others are refused below.
    }
    let shape = match get("shape") {
        Some(literal::Value::Tuple(items)) => items
            .iter()
            .map(|v| match v {
                literal::Value::Int(n) if *n >= 0 => Ok(*n as usize),
                _ => refuse("bad shape"),
            })
            .collect::<Result<Vec<usize>, _>>()?,
        _ => return refuse(".npy header has no shape"),
    };
    let dtype = dtype_from_descr(descr, 0)?;
    Array::new(dtype, &shape, body[end..].to_vec())
}

/// A dtype from a `.npy` `descr` (see [`Dtype::descr`]).
fn dtype_from_descr(descr: &literal::Value, depth: usize) -> Result<Dtype, ArrayError> {
    use literal::Value;
    if depth > MAX_DEPTH {
        return refuse("the dtype is nested too deeply");
    }
    match descr {
        Value::Str(text) => Dtype::from_type_str(text, None),
        Value::List(items) => {
            let mut fields = Vec::new();
            let mut offset = 0usize;
            for item in items {
                let Value::Tuple(parts) = item else {
                    return refuse("a descr entry is not a tuple");
                };
                let (name, ty, shape) = match parts.as_slice() {
                    [Value::Str(n), t] => (n, t, None),
                    [Value::Str(n), t, Value::Tuple(s)] => (n, t, Some(s)),
                    _ => return refuse("a descr entry is malformed"),
                };
                let mut dtype = dtype_from_descr(ty, depth + 1)?;
                if let Some(shape) = shape {
                    let shape = shape
                        .iter()
                        .map(|v| match v {
                            Value::Int(n) if *n > 0 => Ok(*n as usize),
                            _ => refuse("bad sub-array shape"),
                        })
                        .collect::<Result<Vec<usize>, _>>()?;
                    dtype = Dtype::SubArray {
                        base: Box::new(dtype),
                        shape,
                    };
                    dtype.validate()?;
                }
                let size = dtype.itemsize();
                if !name.is_empty() {
                    fields.push(Field {
                        name: name.clone(),
                        dtype,
                        offset,
                    });
                }
                offset = offset
                    .checked_add(size)
                    .filter(|&o| o <= MAX_ITEM_BYTES)
                    .ok_or_else(|| ArrayError("the item is too large".into()))?;
            }
            Ok(Dtype::Record {
                fields,
                itemsize: offset,
            })
        }
        _ => refuse("the descr is not understood"),
    }
}

/// The Python literals of `.npy` headers: dicts, lists, tuples, strings, integers,
/// `True`/`False`. Nothing is evaluated.
mod literal {
    use super::{refuse, ArrayError};

    #[derive(Debug, Clone, PartialEq)]
    pub enum Value {
        Str(String),
        Int(i64),
        Bool(bool),
        Tuple(Vec<Value>),
        List(Vec<Value>),
        Dict(Vec<(Value, Value)>),
    }

    const MAX_DEPTH: usize = 32;

    pub fn parse(text: &str) -> Result<Value, ArrayError> {
        let mut parser = Parser {
            bytes: text.as_bytes(),
            at: 0,
        };
        let value = parser.value(0)?;
        parser.space();
        if parser.at != parser.bytes.len() {
            return refuse("trailing text in the .npy header");
        }
        Ok(value)
    }

    struct Parser<'a> {
        bytes: &'a [u8],
        at: usize,
    }

    impl Parser<'_> {
        fn space(&mut self) {
            while self.at < self.bytes.len() && self.bytes[self.at].is_ascii_whitespace() {
                self.at += 1;
            }
        }

        fn peek(&mut self) -> Option<u8> {
            self.space();
            self.bytes.get(self.at).copied()
        }

        fn value(&mut self, depth: usize) -> Result<Value, ArrayError> {
            if depth > MAX_DEPTH {
                return refuse("the .npy header is nested too deeply");
            }
            match self.peek() {
                Some(b'{') => {
                    self.at += 1;
                    let mut entries = Vec::new();
                    loop {
                        if self.peek() == Some(b'}') {
                            self.at += 1;
                            return Ok(Value::Dict(entries));
                        }
                        let key = self.value(depth + 1)?;
                        if self.peek() != Some(b':') {
                            return refuse("expected ':' in the .npy header");
                        }
                        self.at += 1;
                        let value = self.value(depth + 1)?;
                        entries.push((key, value));
                        self.separator(b'}')?;
                    }
                }
                Some(open @ (b'[' | b'(')) => {
                    self.at += 1;
                    let close = if open == b'[' { b']' } else { b')' };
                    let mut items = Vec::new();
                    loop {
                        if self.peek() == Some(close) {
                            self.at += 1;
                            return Ok(if open == b'[' {
                                Value::List(items)
                            } else {
                                Value::Tuple(items)
                            });
                        }
                        items.push(self.value(depth + 1)?);
                        self.separator(close)?;
                    }
                }
                Some(quote @ (b'\'' | b'"')) => {
                    self.at += 1;
                    let start = self.at;
                    while self.at < self.bytes.len() && self.bytes[self.at] != quote {
                        if self.bytes[self.at] == b'\\' {
                            return refuse("escapes are not supported in .npy headers");
                        }
                        self.at += 1;
                    }
                    if self.at >= self.bytes.len() {
                        return refuse("unterminated string in the .npy header");
                    }
                    let text = String::from_utf8_lossy(&self.bytes[start..self.at]).into_owned();
                    self.at += 1;
                    Ok(Value::Str(text))
                }
                Some(c) if c.is_ascii_digit() || c == b'-' => {
                    let start = self.at;
                    self.at += 1;
                    while self.at < self.bytes.len() && self.bytes[self.at].is_ascii_digit() {
                        self.at += 1;
                    }
                    let text = std::str::from_utf8(&self.bytes[start..self.at]).unwrap_or("");
                    // Python 2 headers wrote 3L.
                    if self.bytes.get(self.at) == Some(&b'L') {
                        self.at += 1;
                    }
                    text.parse()
                        .map(Value::Int)
                        .map_err(|_| ArrayError("bad integer in the .npy header".into()))
                }
                Some(_) => {
                    for (word, value) in [("True", true), ("False", false)] {
                        if self.bytes[self.at..].starts_with(word.as_bytes()) {
                            self.at += word.len();
                            return Ok(Value::Bool(value));
                        }
                    }
                    refuse("unexpected text in the .npy header")
                }
                None => refuse("the .npy header ends early"),
            }
        }

        fn separator(&mut self, close: u8) -> Result<(), ArrayError> {
            match self.peek() {
                Some(b',') => {
                    self.at += 1;
                    Ok(())
                }
                Some(c) if c == close => Ok(()),
                _ => refuse("expected ',' in the .npy header"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f4() -> Dtype {
        Dtype::Scalar {
            kind: Kind::Float,
            size: 4,
            big_endian: false,
        }
    }

    #[test]
    fn npy_round_trip_of_a_record_with_padding_and_sub_arrays() {
        let dtype = Dtype::Record {
            fields: vec![
                Field {
                    name: "x".into(),
                    dtype: f4(),
                    offset: 0,
                },
                Field {
                    name: "v".into(),
                    dtype: Dtype::SubArray {
                        base: Box::new(f4()),
                        shape: vec![2],
                    },
                    offset: 8,
                },
            ],
            itemsize: 20,
        };
        let data: Vec<u8> = (0..40).collect();
        let file = write_npy(&dtype, 2, &data);
        // The header is padded so that the data starts on a 64-byte boundary.
        assert_eq!((file.len() - data.len()) % 64, 0);
        let back = read_npy(&file).unwrap();
        assert_eq!(back.rows, 2);
        assert_eq!(back.dtype, dtype);
        assert_eq!(back.data, data);
    }

    #[test]
    fn refuses_objects_and_short_data() {
        assert!(Dtype::from_type_str("|O", None).is_err());
        assert!(Dtype::from_type_str("<U4", None).is_err());
        assert!(Array::new(f4(), &[3], vec![0; 11]).is_err());
        assert!(read_npy(b"\x93NUMPY\x01\x00\x05\x00{'a'}").is_err());
    }
}
