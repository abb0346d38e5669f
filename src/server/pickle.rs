//! The restricted pickle reader: rebuilds a numpy array pickled by `ndarray.dumps()`
//! (or `pickle.dumps(array)`, protocols 2 to 5) without running any code.
//!
//! The idea of the "Restricting Globals" section of Python's `pickle` docs, taken one
//! step further: nothing is ever called. The pickle machine here knows a fixed list of
//! globals and interprets each itself:
//! - `numpy.core.multiarray._reconstruct` and `numpy._core.multiarray._reconstruct`
//!   (numpy 1 and 2): an empty array, filled by the `BUILD` that follows;
//! - `numpy.ndarray`: only as the argument of `_reconstruct`;
//! - `numpy.dtype`: a dtype, completed by its `BUILD` state;
//! - `_codecs.encode(text, 'latin1')`: how protocol 2 carries bytes;
//! - `numpy.core.numeric._frombuffer` and `numpy._core.numeric._frombuffer`: how
//!   protocol 5 carries a contiguous array in-band;
//! - `PYME.localization.remFitBuf.fitResult`: PYME's legacy fit result, only as the
//!   class of `NEWOBJ` with no arguments; it is never made, its state dict is read as
//!   data (its `results` and `driftResults` arrays).
//!
//! Every other global, every opcode that builds or calls objects otherwise (`OBJ`,
//! `INST`, `NEWOBJ` of anything else, extensions, persistent ids, out-of-band buffers), object dtypes and
//! anything that is not a numpy array at the end is refused with the reason. What may
//! not happen here: running code, reading files, allocating more than a bounded
//! multiple of the input.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use super::npy::{Array, ArrayError, Dtype, Field};

/// Why a body was not rebuilt.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PickleError {
    /// It is not a pickle of protocol 2 or more (the caller may try other formats).
    #[error("not a pickle")]
    NotAPickle,
    /// It is a pickle, but holds what this reader refuses, or is malformed.
    #[error("refused pickle: {0}")]
    Refused(String),
}

impl From<ArrayError> for PickleError {
    fn from(error: ArrayError) -> PickleError {
        PickleError::Refused(error.0)
    }
}

fn refuse<T>(reason: impl Into<String>) -> Result<T, PickleError> {
    Err(PickleError::Refused(reason.into()))
}

/// Dtype nodes a pickle may make in all (fields, sub-arrays, scalars, copies included).
const DTYPE_NODE_BUDGET: usize = 1 << 16;

/// Whether `body` starts as a pickle of protocol 2 or more.
pub fn is_pickle(body: &[u8]) -> bool {
    matches!(body, [0x80, 2..=5, ..])
}

/// What a pickle accepted here holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pickled {
    /// A numpy array.
    Array(Array),
    /// A `bytes` object (PYME stores it in a variable-length string array).
    Bytes(Vec<u8>),
    /// PYME's legacy fit result (`PYME.localization.remFitBuf.fitResult`, filed to an
    /// empty table name): its `results` and `driftResults` arrays. The class is never
    /// made: its pickled state is read as data.
    FitResult { results: Array, drift: Array },
}

/// Rebuilds the numpy array a pickle holds.
pub fn read_array(body: &[u8]) -> Result<Array, PickleError> {
    match read(body)? {
        Pickled::Array(array) => Ok(array),
        _ => refuse("the pickle does not hold a numpy array"),
    }
}

/// Rebuilds the numpy array or the bytes a pickle holds.
pub fn read(body: &[u8]) -> Result<Pickled, PickleError> {
    if !is_pickle(body) {
        return Err(PickleError::NotAPickle);
    }
    let mut machine = Machine {
        input: body,
        at: 0,
        stack: Vec::new(),
        marks: Vec::new(),
        memo: HashMap::new(),
        budget: DTYPE_NODE_BUDGET,
    };
    match &machine.run()? {
        Value::Array(array) => {
            let array = array.borrow();
            match &array.built {
                Some(built) => Ok(Pickled::Array(built.clone())),
                None => refuse("the array was never filled"),
            }
        }
        Value::Bytes(bytes) => Ok(Pickled::Bytes(bytes.to_vec())),
        Value::FitResult(state) => {
            let state = state.borrow();
            let array = |key: &str| -> Result<Array, PickleError> {
                let value = state
                    .iter()
                    .find(|(k, _)| matches!(k, Value::Str(k) if &**k == key))
                    .map(|(_, v)| v);
                match value {
                    Some(Value::Array(array)) => array
                        .borrow()
                        .built
                        .clone()
                        .ok_or_else(|| PickleError::Refused("an array was never filled".into())),
                    _ => refuse(format!("the fit result has no '{key}' array")),
                }
            };
            Ok(Pickled::FitResult {
                results: array("results")?,
                drift: array("driftResults")?,
            })
        }
        _ => refuse("the pickle holds neither a numpy array, bytes nor a fit result"),
    }
}

/// The globals this reader knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Global {
    Reconstruct,
    Ndarray,
    Dtype,
    CodecsEncode,
    FromBuffer,
    /// PYME's legacy fit result: only as the class of `NEWOBJ`, whose state is data.
    FitResult,
}

impl Global {
    fn find(module: &str, name: &str) -> Result<Global, PickleError> {
        Ok(match (module, name) {
            ("numpy.core.multiarray" | "numpy._core.multiarray", "_reconstruct") => {
                Global::Reconstruct
            }
            ("numpy", "ndarray") => Global::Ndarray,
            ("numpy", "dtype") => Global::Dtype,
            ("_codecs", "encode") => Global::CodecsEncode,
            ("numpy.core.numeric" | "numpy._core.numeric", "_frombuffer") => Global::FromBuffer,
            ("PYME.localization.remFitBuf", "fitResult") => Global::FitResult,
            _ => return refuse(format!("the global {module}.{name} is not allowed")),
        })
    }
}

/// A dtype being made: from `numpy.dtype(...)`, completed by `BUILD`.
#[derive(Debug)]
struct DtypeObject {
    dtype: Dtype,
}

/// An array being made: from `_reconstruct`, filled by `BUILD`.
#[derive(Debug, Default)]
struct ArrayObject {
    built: Option<Array>,
}

// Booleans and floats are read (the stack keeps its shape) though no accepted result uses them.
#[allow(dead_code)]
#[derive(Debug, Clone)]
enum Value {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(Rc<str>),
    Bytes(Rc<[u8]>),
    Tuple(Rc<[Value]>),
    List(Rc<RefCell<Vec<Value>>>),
    Dict(Rc<RefCell<Vec<(Value, Value)>>>),
    Global(Global),
    Dtype(Rc<RefCell<DtypeObject>>),
    Array(Rc<RefCell<ArrayObject>>),
    /// A fit result's state (its attribute dict, set by `BUILD`).
    FitResult(Rc<RefCell<Vec<(Value, Value)>>>),
}

/// Dropping a value never recurses: a pickle nests a million tuples in a million
/// bytes (`TUPLE1` over and over), and a drop that followed each level overflowed the
/// thread's stack (aborting the process). The parts of a container this value holds
/// alone are moved out onto a list and dropped one by one.
impl Drop for Value {
    fn drop(&mut self) {
        let mut parts = Vec::new();
        move_parts(self, &mut parts);
        while let Some(mut part) = parts.pop() {
            move_parts(&mut part, &mut parts);
            // `part` is dropped here, holding no containers any more.
        }
    }
}

/// Moves the containers a value holds alone (its `Rc` not shared) onto `parts`.
fn move_parts(value: &mut Value, parts: &mut Vec<Value>) {
    let mut take = |item: &mut Value| {
        if matches!(
            item,
            Value::Tuple(_) | Value::List(_) | Value::Dict(_) | Value::FitResult(_)
        ) {
            parts.push(std::mem::replace(item, Value::None));
        }
    };
    match value {
        Value::Tuple(items) => {
            if let Some(items) = Rc::get_mut(items) {
                items.iter_mut().for_each(&mut take);
            }
        }
        Value::List(list) => {
            if let Some(list) = Rc::get_mut(list) {
                list.get_mut().iter_mut().for_each(&mut take);
            }
        }
        Value::Dict(pairs) | Value::FitResult(pairs) => {
            if let Some(pairs) = Rc::get_mut(pairs) {
                for (key, item) in pairs.get_mut() {
                    take(key);
                    take(item);
                }
            }
        }
        _ => {}
    }
}

struct Machine<'a> {
    input: &'a [u8],
    at: usize,
    stack: Vec<Value>,
    /// Stack lengths at each `MARK`.
    marks: Vec<usize>,
    memo: HashMap<u32, Value>,
    budget: usize,
}

impl<'a> Machine<'a> {
    fn run(&mut self) -> Result<Value, PickleError> {
        loop {
            let op = self.byte()?;
            match op {
                0x80 => {
                    let protocol = self.byte()?;
                    if !(2..=5).contains(&protocol) {
                        return refuse("unsupported pickle protocol");
                    }
                }
                0x95 => {
                    self.take(8)?; // FRAME: a length hint only.
                }
                b'.' => {
                    let value = self.pop()?;
                    return Ok(value);
                }
                b'c' => {
                    let module = self.line()?;
                    let name = self.line()?;
                    let global = Global::find(&module, &name)?;
                    self.stack.push(Value::Global(global));
                }
                0x93 => {
                    let name = self.pop_str()?;
                    let module = self.pop_str()?;
                    let global = Global::find(&module, &name)?;
                    self.stack.push(Value::Global(global));
                }
                b'q' => {
                    let index = u32::from(self.byte()?);
                    self.put(index)?;
                }
                b'r' => {
                    let index = self.u32()?;
                    self.put(index)?;
                }
                0x94 => {
                    let index = u32::try_from(self.memo.len())
                        .map_err(|_| PickleError::Refused("memo too large".into()))?;
                    self.put(index)?;
                }
                b'h' => {
                    let index = u32::from(self.byte()?);
                    self.get(index)?;
                }
                b'j' => {
                    let index = self.u32()?;
                    self.get(index)?;
                }
                b'(' => self.marks.push(self.stack.len()),
                b't' => {
                    let items = self.pop_mark()?;
                    self.stack.push(Value::Tuple(items.into()));
                }
                b')' => self.stack.push(Value::Tuple(Rc::new([]))),
                0x85..=0x87 => {
                    let n = usize::from(op - 0x84);
                    if self.stack.len() < n + self.marks.last().copied().unwrap_or(0) {
                        return refuse("stack underflow");
                    }
                    let items = self.stack.split_off(self.stack.len() - n);
                    self.stack.push(Value::Tuple(items.into()));
                }
                b']' => self.stack.push(Value::List(Rc::default())),
                b'l' => {
                    let items = self.pop_mark()?;
                    self.stack.push(Value::List(Rc::new(RefCell::new(items))));
                }
                b'}' => self.stack.push(Value::Dict(Rc::default())),
                b'd' => {
                    let items = self.pop_mark()?;
                    let pairs = pairs(items)?;
                    self.stack.push(Value::Dict(Rc::new(RefCell::new(pairs))));
                }
                b'a' => {
                    let item = self.pop()?;
                    match self.top()? {
                        Value::List(list) => list.borrow_mut().push(item),
                        _ => return refuse("APPEND to a non-list"),
                    }
                }
                b'e' => {
                    let items = self.pop_mark()?;
                    match self.top()? {
                        Value::List(list) => list.borrow_mut().extend(items),
                        _ => return refuse("APPENDS to a non-list"),
                    }
                }
                b's' => {
                    let value = self.pop()?;
                    let key = self.pop()?;
                    match self.top()? {
                        Value::Dict(dict) => dict.borrow_mut().push((key, value)),
                        _ => return refuse("SETITEM on a non-dict"),
                    }
                }
                b'u' => {
                    let items = self.pop_mark()?;
                    let new = pairs(items)?;
                    match self.top()? {
                        Value::Dict(dict) => dict.borrow_mut().extend(new),
                        _ => return refuse("SETITEMS on a non-dict"),
                    }
                }
                b'N' => self.stack.push(Value::None),
                0x88 => self.stack.push(Value::Bool(true)),
                0x89 => self.stack.push(Value::Bool(false)),
                b'J' => {
                    let bytes = self.take(4)?;
                    let n = i32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
                    self.stack.push(Value::Int(i64::from(n)));
                }
                b'K' => {
                    let n = self.byte()?;
                    self.stack.push(Value::Int(i64::from(n)));
                }
                b'M' => {
                    let bytes = self.take(2)?;
                    let n = u16::from_le_bytes([bytes[0], bytes[1]]);
                    self.stack.push(Value::Int(i64::from(n)));
                }
                0x8a => {
                    let len = usize::from(self.byte()?);
                    if len > 8 {
                        return refuse("integer too large");
                    }
                    let bytes = self.take(len)?;
                    let mut n: i64 = 0;
                    for (i, b) in bytes.iter().enumerate() {
                        n |= i64::from(*b) << (8 * i);
                    }
                    if len > 0 && len < 8 && bytes[len - 1] & 0x80 != 0 {
                        n -= 1i64 << (8 * len);
                    }
                    self.stack.push(Value::Int(n));
                }
                b'G' => {
                    let bytes = self.take(8)?;
                    let mut raw = [0u8; 8];
                    raw.copy_from_slice(bytes);
                    self.stack.push(Value::Float(f64::from_be_bytes(raw)));
                }
                b'X' => {
                    let len = self.u32()? as usize;
                    self.push_text(len)?;
                }
                0x8c => {
                    let len = usize::from(self.byte()?);
                    self.push_text(len)?;
                }
                0x8d => {
                    let len = self.u64_len()?;
                    self.push_text(len)?;
                }
                b'C' | b'U' => {
                    let len = usize::from(self.byte()?);
                    self.push_bytes(len)?;
                }
                b'B' | b'T' => {
                    let len = self.u32()? as usize;
                    self.push_bytes(len)?;
                }
                0x8e | 0x96 => {
                    let len = self.u64_len()?;
                    self.push_bytes(len)?;
                }
                b'0' => {
                    self.pop()?;
                }
                b'1' => {
                    self.pop_mark()?;
                }
                b'2' => {
                    let top = self.top()?.clone();
                    self.stack.push(top);
                }
                b'R' => {
                    let args = self.pop()?;
                    let callable = self.pop()?;
                    let result = self.reduce(callable, args)?;
                    self.stack.push(result);
                }
                0x81 => {
                    // NEWOBJ: `cls.__new__(cls)`, for the fit result container only.
                    let args = self.pop()?;
                    let class = self.pop()?;
                    match (&class, &args) {
                        (Value::Global(Global::FitResult), Value::Tuple(args))
                            if args.is_empty() =>
                        {
                            self.stack.push(Value::FitResult(Rc::default()));
                        }
                        _ => return refuse("only PYME's fit result may be made by NEWOBJ"),
                    }
                }
                b'b' => {
                    let state = self.pop()?;
                    let target = self.top()?.clone();
                    self.build(target, state)?;
                }
                other => {
                    return refuse(format!("the pickle opcode 0x{other:02x} is not allowed"));
                }
            }
        }
    }

    fn byte(&mut self) -> Result<u8, PickleError> {
        let b = *self
            .input
            .get(self.at)
            .ok_or_else(|| PickleError::Refused("the pickle ends early".into()))?;
        self.at += 1;
        Ok(b)
    }

    fn take(&mut self, len: usize) -> Result<&'a [u8], PickleError> {
        let end = self
            .at
            .checked_add(len)
            .filter(|&end| end <= self.input.len())
            .ok_or_else(|| PickleError::Refused("the pickle ends early".into()))?;
        let input: &'a [u8] = self.input;
        let bytes = &input[self.at..end];
        self.at = end;
        Ok(bytes)
    }

    fn u32(&mut self) -> Result<u32, PickleError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64_len(&mut self) -> Result<usize, PickleError> {
        let b = self.take(8)?;
        let mut raw = [0u8; 8];
        raw.copy_from_slice(b);
        usize::try_from(u64::from_le_bytes(raw))
            .map_err(|_| PickleError::Refused("length too large".into()))
    }

    fn line(&mut self) -> Result<String, PickleError> {
        let rest = &self.input[self.at..];
        let len = rest
            .iter()
            .position(|&b| b == b'\n')
            .filter(|&n| n <= 256)
            .ok_or_else(|| PickleError::Refused("a global's name is malformed".into()))?;
        let text = std::str::from_utf8(&rest[..len])
            .map_err(|_| PickleError::Refused("a global's name is not text".into()))?
            .to_owned();
        self.at += len + 1;
        Ok(text)
    }

    fn push_text(&mut self, len: usize) -> Result<(), PickleError> {
        let bytes = self.take(len)?;
        let text = std::str::from_utf8(bytes)
            .map_err(|_| PickleError::Refused("a string is not UTF-8".into()))?;
        self.stack.push(Value::Str(text.into()));
        Ok(())
    }

    fn push_bytes(&mut self, len: usize) -> Result<(), PickleError> {
        let bytes = self.take(len)?;
        self.stack.push(Value::Bytes(bytes.into()));
        Ok(())
    }

    fn pop(&mut self) -> Result<Value, PickleError> {
        if self.stack.len() <= self.marks.last().copied().unwrap_or(0) && !self.marks.is_empty() {
            return refuse("stack underflow at a mark");
        }
        self.stack
            .pop()
            .ok_or_else(|| PickleError::Refused("stack underflow".into()))
    }

    fn pop_str(&mut self) -> Result<String, PickleError> {
        match &self.pop()? {
            Value::Str(s) => Ok(s.to_string()),
            _ => refuse("a global's name is not a string"),
        }
    }

    fn top(&self) -> Result<&Value, PickleError> {
        self.stack
            .last()
            .ok_or_else(|| PickleError::Refused("stack underflow".into()))
    }

    fn pop_mark(&mut self) -> Result<Vec<Value>, PickleError> {
        let mark = self
            .marks
            .pop()
            .ok_or_else(|| PickleError::Refused("no mark".into()))?;
        if mark > self.stack.len() {
            return refuse("mark beyond the stack");
        }
        Ok(self.stack.split_off(mark))
    }

    fn put(&mut self, index: u32) -> Result<(), PickleError> {
        let top = self.top()?.clone();
        self.memo.insert(index, top);
        Ok(())
    }

    fn get(&mut self, index: u32) -> Result<(), PickleError> {
        let value = self
            .memo
            .get(&index)
            .cloned()
            .ok_or_else(|| PickleError::Refused("memo entry missing".into()))?;
        self.stack.push(value);
        Ok(())
    }

    /// `callable(*args)`, for the known callables only.
    fn reduce(&mut self, callable: Value, args: Value) -> Result<Value, PickleError> {
        let Value::Global(global) = callable else {
            return refuse("only allowed globals may be called");
        };
        let Value::Tuple(args) = &args else {
            return refuse("call arguments are not a tuple");
        };
        match (global, &args[..]) {
            (Global::Reconstruct, [Value::Global(Global::Ndarray), Value::Tuple(_), _]) => {
                Ok(Value::Array(Rc::default()))
            }
            (Global::Dtype, [Value::Str(code), rest @ ..]) if rest.len() <= 2 => {
                let dtype = Dtype::from_type_str(code, None)?;
                self.spend(1)?;
                Ok(Value::Dtype(Rc::new(RefCell::new(DtypeObject { dtype }))))
            }
            (Global::CodecsEncode, [Value::Str(text), Value::Str(codec)])
                if matches!(&**codec, "latin1" | "latin-1" | "iso-8859-1") =>
            {
                let bytes = text
                    .chars()
                    .map(|c| u8::try_from(u32::from(c)))
                    .collect::<Result<Vec<u8>, _>>()
                    .map_err(|_| PickleError::Refused("text beyond latin-1".into()))?;
                Ok(Value::Bytes(bytes.into()))
            }
            (
                Global::FromBuffer,
                [Value::Bytes(data), Value::Dtype(dtype), Value::Tuple(shape), Value::Str(order)],
            ) if matches!(&**order, "C" | "F") => {
                let shape = shape_of(shape)?;
                let dtype = dtype.borrow().dtype.clone();
                let array = Array::new(dtype, &shape, data.to_vec())?;
                Ok(Value::Array(Rc::new(RefCell::new(ArrayObject {
                    built: Some(array),
                }))))
            }
            _ => refuse("a call with arguments this reader does not take"),
        }
    }

    /// `BUILD`: sets the state of a dtype or an array made by `reduce`.
    fn build(&mut self, target: Value, state: Value) -> Result<(), PickleError> {
        if let Value::FitResult(object) = &target {
            let Value::Dict(items) = &state else {
                return refuse("a fit result's state is not a dict");
            };
            object.borrow_mut().extend(items.borrow().iter().cloned());
            return Ok(());
        }
        let Value::Tuple(state) = &state else {
            return refuse("a state that is not a tuple");
        };
        match &target {
            Value::Dtype(dtype) => {
                let built = self.dtype_state(&dtype.borrow().dtype, state)?;
                dtype.borrow_mut().dtype = built;
                Ok(())
            }
            Value::Array(array) => {
                if array.borrow().built.is_some() {
                    return refuse("an array built twice");
                }
                let (shape, dtype, data) = match &state[..] {
                    [Value::Int(1), Value::Tuple(shape), Value::Dtype(dtype), Value::Bool(_), data] => {
                        (shape, dtype, data)
                    }
                    [_, _, _, _, Value::List(_)] => {
                        return refuse("object arrays are refused (they are arbitrary pickles)")
                    }
                    _ => return refuse("an array state this reader does not know"),
                };
                let data = match data {
                    Value::Bytes(bytes) => bytes.to_vec(),
                    _ => return refuse("array data is not bytes"),
                };
                let shape = shape_of(shape)?;
                let built = Array::new(dtype.borrow().dtype.clone(), &shape, data)?;
                array.borrow_mut().built = Some(built);
                Ok(())
            }
            _ => refuse("BUILD of something this reader did not make"),
        }
    }

    /// A dtype's `__setstate__`: `(version, byteorder, subarray, names, fields,
    /// elsize, alignment, flags[, metadata])`.
    fn dtype_state(&mut self, base: &Dtype, state: &[Value]) -> Result<Dtype, PickleError> {
        let (order, subarray, names, fields, elsize, flags) = match state {
            [Value::Int(3 | 4), Value::Str(order), subarray, names, fields, Value::Int(elsize), Value::Int(_), Value::Int(flags), ..]
                if state.len() <= 9 =>
            {
                (order, subarray, names, fields, *elsize, *flags)
            }
            _ => return refuse("a dtype state this reader does not know"),
        };
        // NPY_ITEM_REFCOUNT / NPY_ITEM_HASOBJECT: the items hold Python objects.
        if flags & 0x01 != 0 {
            return refuse("object dtypes are refused (they are arbitrary pickles)");
        }
        let order = order.chars().next();
        match base {
            Dtype::Scalar { .. } => {
                let Dtype::Scalar { kind, size, .. } = base.clone() else {
                    unreachable!()
                };
                let size = if elsize > 0 {
                    usize::try_from(elsize).unwrap_or(size)
                } else {
                    size
                };
                let big_endian = order == Some('>') && size > 1;
                let dtype = Dtype::Scalar {
                    kind,
                    size,
                    big_endian,
                };
                dtype.validate()?;
                Ok(dtype)
            }
            Dtype::Record { itemsize, .. } => {
                let itemsize = match elsize {
                    n if n > 0 => usize::try_from(n).unwrap_or(*itemsize),
                    _ => *itemsize,
                };
                if let Value::Tuple(sub) = subarray {
                    let [Value::Dtype(inner), Value::Tuple(shape)] = &sub[..] else {
                        return refuse("a sub-array state this reader does not know");
                    };
                    let inner = inner.borrow().dtype.clone();
                    self.spend_for(&inner)?;
                    let dtype = Dtype::SubArray {
                        base: Box::new(inner),
                        shape: shape_of(shape)?,
                    };
                    dtype.validate()?;
                    if dtype.itemsize() != itemsize {
                        return refuse("a sub-array's size does not match its item");
                    }
                    return Ok(dtype);
                }
                let (Value::Tuple(names), Value::Dict(fields)) = (names, fields) else {
                    return refuse("raw void items are not supported in tables");
                };
                let fields = fields.borrow();
                let mut made = Vec::with_capacity(names.len());
                for name in names.iter() {
                    let Value::Str(name) = name else {
                        return refuse("a field name is not a string");
                    };
                    let entry = fields
                        .iter()
                        .find(|(k, _)| matches!(k, Value::Str(k) if k == name))
                        .map(|(_, v)| v)
                        .ok_or_else(|| PickleError::Refused("a named field is missing".into()))?;
                    let Value::Tuple(entry) = entry else {
                        return refuse("a field entry is not a tuple");
                    };
                    let (Some(Value::Dtype(field_dtype)), Some(Value::Int(offset))) =
                        (entry.first(), entry.get(1))
                    else {
                        return refuse("a field entry is malformed");
                    };
                    let offset = usize::try_from(*offset)
                        .map_err(|_| PickleError::Refused("a negative offset".into()))?;
                    let field_dtype = field_dtype.borrow();
                    // Bounds before the copy, so that copies stay within the budget.
                    if offset.saturating_add(field_dtype.dtype.itemsize()) > itemsize {
                        return refuse(format!("field '{name}' lies outside the item"));
                    }
                    self.spend_for(&field_dtype.dtype)?;
                    made.push(Field {
                        name: name.to_string(),
                        dtype: field_dtype.dtype.clone(),
                        offset,
                    });
                }
                let dtype = Dtype::Record {
                    fields: made,
                    itemsize,
                };
                dtype.validate()?;
                Ok(dtype)
            }
            Dtype::SubArray { .. } => refuse("a dtype built twice"),
        }
    }

    fn spend(&mut self, nodes: usize) -> Result<(), PickleError> {
        self.budget = self
            .budget
            .checked_sub(nodes)
            .ok_or_else(|| PickleError::Refused("the dtype is too large".into()))?;
        Ok(())
    }

    /// Spends the nodes a copy of `dtype` makes, counting no further than the budget.
    fn spend_for(&mut self, dtype: &Dtype) -> Result<(), PickleError> {
        fn count(dtype: &Dtype, left: &mut usize) -> bool {
            if *left == 0 {
                return false;
            }
            *left -= 1;
            match dtype {
                Dtype::Scalar { .. } => true,
                Dtype::SubArray { base, .. } => count(base, left),
                Dtype::Record { fields, .. } => fields.iter().all(|f| count(&f.dtype, left)),
            }
        }
        let mut left = self.budget;
        if !count(dtype, &mut left) {
            return refuse("the dtype is too large");
        }
        self.budget = left;
        Ok(())
    }
}

fn pairs(items: Vec<Value>) -> Result<Vec<(Value, Value)>, PickleError> {
    if items.len() % 2 != 0 {
        return refuse("an odd number of dict items");
    }
    let mut out = Vec::with_capacity(items.len() / 2);
    let mut items = items.into_iter();
    while let (Some(k), Some(v)) = (items.next(), items.next()) {
        out.push((k, v));
    }
    Ok(out)
}

fn shape_of(items: &[Value]) -> Result<Vec<usize>, PickleError> {
    items
        .iter()
        .map(|v| match v {
            Value::Int(n) if *n >= 0 => usize::try_from(*n)
                .map_err(|_| PickleError::Refused("a dimension too large".into())),
            _ => refuse("a shape that is not a tuple of sizes"),
        })
        .collect()
}

// ---- plain values (PyTables' pickled attributes) -----------------------------------

/// A JSON value as `pickle.dumps(value, 0)` writes it (how PyTables stores an
/// attribute value that is no scalar: lists, dicts, None). Readable by any Python.
pub fn write_protocol0(value: &serde_json::Value) -> Vec<u8> {
    let mut out = Vec::new();
    write_value0(value, &mut out);
    out.push(b'.');
    out
}

fn write_value0(value: &serde_json::Value, out: &mut Vec<u8>) {
    use serde_json::Value;
    match value {
        Value::Null => out.push(b'N'),
        Value::Bool(b) => out.extend_from_slice(if *b { b"I01\n" } else { b"I00\n" }),
        Value::Number(n) => match n.as_i64() {
            Some(i) if i32::try_from(i).is_ok() => {
                out.extend_from_slice(format!("I{i}\n").as_bytes())
            }
            Some(i) => out.extend_from_slice(format!("L{i}L\n").as_bytes()),
            None => {
                let x = n.as_f64().unwrap_or(f64::NAN);
                out.extend_from_slice(format!("F{x:?}\n").as_bytes());
            }
        },
        Value::String(s) => {
            out.push(b'V');
            for c in s.chars() {
                match c {
                    ' '..='~' if c != '\\' => out.push(c as u8),
                    c if u32::from(c) <= 0xFFFF => {
                        out.extend_from_slice(format!("\\u{:04x}", u32::from(c)).as_bytes())
                    }
                    c => out.extend_from_slice(format!("\\U{:08x}", u32::from(c)).as_bytes()),
                }
            }
            out.push(b'\n');
        }
        Value::Array(items) => {
            out.extend_from_slice(b"(l");
            for item in items {
                write_value0(item, out);
                out.push(b'a');
            }
        }
        Value::Object(map) => {
            out.extend_from_slice(b"(d");
            for (key, item) in map {
                write_value0(&Value::String(key.clone()), out);
                write_value0(item, out);
                out.push(b's');
            }
        }
    }
}

/// How deep protocol 0 values may nest (metadata nests a few levels): a JSON value is
/// dropped by recursion, and 99 000 nested lists overflowed a thread's stack.
const PROTOCOL0_MAX_DEPTH: usize = 64;
/// What the copies into and out of the memo (`p`, `g`) may cost in all, in values and string bytes:
/// each copy is deep, and a list of two copies of the list before, 40 times over, was
/// 2^40 values from 500 bytes of input.
const PROTOCOL0_COPY_BUDGET: usize = 1 << 22;

/// A protocol 0 pickle of plain values (None, booleans, numbers, strings, lists,
/// tuples, dicts) as JSON; None for anything else (no global is ever looked up), for
/// values nested deeper than `PROTOCOL0_MAX_DEPTH`, and for memo copies beyond
/// `PROTOCOL0_COPY_BUDGET`.
pub fn read_protocol0(body: &[u8]) -> Option<serde_json::Value> {
    use serde_json::Value;
    /// How deep a value nests (0 for a scalar); a recursion bounded by the depth
    /// every value here was checked against when it was made.
    fn depth(value: &Value) -> usize {
        match value {
            Value::Array(items) => 1 + items.iter().map(depth).max().unwrap_or(0),
            Value::Object(map) => 1 + map.values().map(depth).max().unwrap_or(0),
            _ => 0,
        }
    }
    /// What a copy of a value costs: its values and string bytes.
    fn cost(value: &Value) -> usize {
        1 + match value {
            Value::Array(items) => items.iter().map(cost).sum(),
            Value::Object(map) => map.iter().map(|(k, v)| k.len() + cost(v)).sum(),
            Value::String(text) => text.len(),
            _ => 0,
        }
    }
    /// Whether a value may go inside a container.
    fn fits(value: &Value) -> bool {
        depth(value) < PROTOCOL0_MAX_DEPTH
    }
    let mut copies = 0usize;
    #[derive(Clone)]
    enum Item {
        Mark,
        Value(Value),
    }
    let mut stack: Vec<Item> = Vec::new();
    let mut memo: HashMap<String, Value> = HashMap::new();
    let mut at = 0;
    let line = |at: &mut usize| -> Option<String> {
        let rest = body.get(*at..)?;
        let len = rest.iter().position(|&b| b == b'\n')?;
        *at += len + 1;
        Some(String::from_utf8_lossy(&rest[..len]).into_owned())
    };
    fn since_mark(stack: &mut Vec<Item>) -> Option<Vec<Value>> {
        let mark = stack.iter().rposition(|i| matches!(i, Item::Mark))?;
        let items = stack.split_off(mark + 1);
        stack.pop();
        items
            .into_iter()
            .map(|i| match i {
                Item::Value(v) => Some(v),
                Item::Mark => None,
            })
            .collect()
    }
    loop {
        let op = *body.get(at)?;
        at += 1;
        match op {
            b'.' => {
                return match stack.pop()? {
                    Item::Value(v) => Some(v),
                    Item::Mark => None,
                }
            }
            b'(' => stack.push(Item::Mark),
            b'N' => stack.push(Item::Value(Value::Null)),
            b'I' => {
                let text = line(&mut at)?;
                let value = match text.as_str() {
                    "01" => Value::Bool(true),
                    "00" => Value::Bool(false),
                    t => Value::from(t.parse::<i64>().ok()?),
                };
                stack.push(Item::Value(value));
            }
            b'L' => {
                let text = line(&mut at)?;
                stack.push(Item::Value(Value::from(
                    text.trim_end_matches('L').parse::<i64>().ok()?,
                )));
            }
            b'F' => {
                let x: f64 = line(&mut at)?.parse().ok()?;
                stack.push(Item::Value(
                    serde_json::Number::from_f64(x).map_or(Value::Null, Value::Number),
                ));
            }
            b'V' => {
                let raw = line(&mut at)?;
                stack.push(Item::Value(Value::String(unescape_raw_unicode(&raw)?)));
            }
            b'S' => {
                let raw = line(&mut at)?;
                let inner = raw
                    .strip_prefix('\'')
                    .and_then(|r| r.strip_suffix('\''))
                    .or_else(|| raw.strip_prefix('"').and_then(|r| r.strip_suffix('"')))?;
                if inner.contains('\\') {
                    return None;
                }
                stack.push(Item::Value(Value::String(inner.to_owned())));
            }
            b'l' | b't' => {
                let items = since_mark(&mut stack)?;
                if !items.iter().all(fits) {
                    return None;
                }
                stack.push(Item::Value(Value::Array(items)));
            }
            b'd' => {
                let items = since_mark(&mut stack)?;
                if items.len() % 2 != 0 || !items.iter().all(fits) {
                    return None;
                }
                let mut map = serde_json::Map::new();
                for pair in items.chunks(2) {
                    map.insert(pair[0].as_str()?.to_owned(), pair[1].clone());
                }
                stack.push(Item::Value(Value::Object(map)));
            }
            b'a' => {
                let Item::Value(item) = stack.pop()? else {
                    return None;
                };
                if !fits(&item) {
                    return None;
                }
                let Some(Item::Value(Value::Array(list))) = stack.last_mut() else {
                    return None;
                };
                list.push(item);
            }
            b's' => {
                let Item::Value(value) = stack.pop()? else {
                    return None;
                };
                if !fits(&value) {
                    return None;
                }
                let Item::Value(Value::String(key)) = stack.pop()? else {
                    return None;
                };
                let Some(Item::Value(Value::Object(map))) = stack.last_mut() else {
                    return None;
                };
                map.insert(key, value);
            }
            b'p' => {
                let key = line(&mut at)?;
                let Some(Item::Value(top)) = stack.last() else {
                    return None;
                };
                copies = copies.saturating_add(cost(top));
                if copies > PROTOCOL0_COPY_BUDGET {
                    return None;
                }
                memo.insert(key, top.clone());
            }
            b'g' => {
                let key = line(&mut at)?;
                let value = memo.get(&key)?;
                copies = copies.saturating_add(cost(value));
                if copies > PROTOCOL0_COPY_BUDGET {
                    return None;
                }
                stack.push(Item::Value(value.clone()));
            }
            b'0' => {
                stack.pop()?;
            }
            _ => return None,
        }
        if stack.len() > 100_000 {
            return None;
        }
    }
}

/// Python's `raw-unicode-escape` decoding: `\uXXXX` and `\UXXXXXXXX`; other bytes
/// are Latin-1.
fn unescape_raw_unicode(raw: &str) -> Option<String> {
    let mut out = String::new();
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        let mut look = chars.clone();
        let digits = match look.next() {
            Some('u') => 4,
            Some('U') => 8,
            _ => {
                out.push(c);
                continue;
            }
        };
        let hex: String = look.by_ref().take(digits).collect();
        let code = u32::from_str_radix(&hex, 16)
            .ok()
            .filter(|_| hex.len() == digits)?;
        out.push(char::from_u32(code)?);
        chars = look;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocol0_round_trip() {
        let value: serde_json::Value = serde_json::from_str(
            r#"{"a": [1, 2.5, "x\\y\u00e9\ud83d\ude00", null, true], "b": {"c": -3}}"#,
        )
        .unwrap();
        assert_eq!(read_protocol0(&write_protocol0(&value)), Some(value));
    }

    #[test]
    fn not_a_pickle_is_told_apart() {
        assert_eq!(read_array(b"{\"a\": 1}"), Err(PickleError::NotAPickle));
        assert_eq!(read_array(b"\x93NUMPY"), Err(PickleError::NotAPickle));
    }

    #[test]
    fn refuses_os_system() {
        // pickle.dumps of a class whose __reduce__ returns (os.system, ('true',)), protocol 2.
        let body = b"\x80\x02cposix\nsystem\nq\x00X\x04\x00\x00\x00trueq\x01\x85q\x02Rq\x03.";
        let error = read_array(body).unwrap_err();
        assert!(matches!(&error, PickleError::Refused(r) if r.contains("posix.system")));
    }

    #[test]
    fn truncated_input_is_refused_not_panicking() {
        let body = b"\x80\x02cnumpy\ndtype\nX\x02\x00\x00\x00f4";
        for cut in 0..body.len() {
            let _ = read_array(&body[..cut]);
        }
    }
}
