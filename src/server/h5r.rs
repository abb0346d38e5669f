//! PYME's HDF5 results aggregation (`__aggregate_h5r`) and reading results back
//! (`GET <file>.h5r/<Table>.npy?from=A&to=B`, `<Table>.json`, `Metadata.json`).
//!
//! The operation behind a small interface: the store, the names from the request
//! path, the query and the (decoded) body in; an [`Answer`] (status, content type,
//! body) out. The request loop reads the body and sends the answer; this file decides
//! what the request means, as PYME's `HTTPDataServer._aggregate_h5r` and
//! `get_tabular_part` do:
//! - `MetaData`: a JSON object of PYME metadata, stored in `/MetaData` as PyTables
//!   stores PYME's `HDFMDHandler` entries;
//! - `<Table>`: rows appended to the table `/<Table>`: a numpy record array pickled
//!   by `ndarray.dumps()` (read by the restricted reader, `pickle.rs`), else `.npy`,
//!   else JSON records; a pickled `bytes` goes to a variable-length string array;
//! - an empty table name: PYME's legacy fit result (its pickled state read as data by
//!   the restricted reader), `results` to `FitResults`, `driftResults` to `DriftResults`.
//!
//! The HDF5 work is in `h5file.rs`, compiled with the `hdf5` feature only; without
//! it every operation here answers 501 with the reason. May not touch sockets.

use std::path::{Path, PathBuf};

use super::npy::{self, Array, Dtype, Kind};
use super::pickle::{self, PickleError, Pickled};
use super::storage::Store;

/// What the request loop sends back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub code: u16,
    pub content_type: &'static str,
    /// For errors: the reason (plain text, sent inside the error page).
    pub body: Vec<u8>,
}

impl Answer {
    #[cfg_attr(not(feature = "hdf5"), allow(dead_code))]
    pub(super) fn ok() -> Answer {
        Answer {
            code: 200,
            content_type: "text/plain",
            body: Vec::new(),
        }
    }

    pub(super) fn error(code: u16, reason: impl Into<String>) -> Answer {
        Answer {
            code,
            content_type: "text/plain",
            body: reason.into().into_bytes(),
        }
    }
}

/// The extensions of HDF5 results files (PYME's `.h5r` and `.hdf`).
const RESULTS_EXTENSIONS: [&str; 2] = [".h5r", ".hdf"];

/// Whether a file name is an HDF5 file of PYME's (results or an `.h5` series):
/// `__aggregate_txt` refuses to append to those.
pub fn is_hdf5_name(relative: &Path) -> bool {
    let name = relative
        .file_name()
        .map(|n| n.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    name.ends_with(".h5r") || name.ends_with(".hdf") || name.ends_with(".h5")
}

/// Splits `a/b.h5r/Table` into the file `a/b.h5r` and the part after it (`Table`,
/// or empty). None when no component is a results file.
pub fn split_results_path(relative: &Path) -> Option<(PathBuf, Vec<String>)> {
    let parts: Vec<String> = relative
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    let at = parts.iter().position(|p| {
        RESULTS_EXTENSIONS
            .iter()
            .any(|e| p.ends_with(e) && p.len() > e.len())
    })?;
    let file: PathBuf = parts[..=at].iter().collect();
    Some((file, parts[at + 1..].to_vec()))
}

/// `PUT __aggregate_h5r/<rest>` with its decoded body.
pub fn aggregate(store: &Store, rest: &Path, body: &[u8]) -> Answer {
    #[cfg(not(feature = "hdf5"))]
    if true {
        return Answer::error(501, NOT_BUILT);
    }
    let Some((file, table)) = split_results_path(rest) else {
        return Answer::error(400, "__aggregate_h5r needs a path to an .h5r or .hdf file");
    };
    let table = match table.as_slice() {
        [] => String::new(),
        [one] => one.clone(),
        _ => return Answer::error(400, "a table name is one path component"),
    };
    let (path, new, _claim) = match writable_path(store, &file) {
        Ok(found) => found,
        Err(answer) => return answer,
    };
    let answer = match table.as_str() {
        "MetaData" => put_metadata(&path, body),
        "" => put_fit_result(&path, body),
        _ => put_table(&path, &table, body),
    };
    synced(store, &path, new, answer)
}

/// Under `--fsync` ([`Store::syncs`]), a 200 is sent only once the file, closed, is
/// synced, and, when it is `new`, its entry in its folder and any folder made for it
/// (`Store::sync_entry_of`): the operation survives a power cut. A failed sync is 500.
#[cfg_attr(not(feature = "hdf5"), allow(dead_code))]
pub(super) fn synced(store: &Store, path: &Path, new: bool, answer: Answer) -> Answer {
    if answer.code != 200 || !store.syncs() {
        return answer;
    }
    #[cfg(feature = "hdf5")]
    let file_synced = super::h5file::sync_closed(path);
    #[cfg(not(feature = "hdf5"))]
    let file_synced: std::io::Result<()> = Ok(());
    let result = file_synced.and_then(|()| match new {
        true => store.sync_entry_of(path),
        false => Ok(()),
    });
    match result {
        Ok(()) => answer,
        Err(e) => Answer::error(500, format!("The file could not be synced: {e}")),
    }
}

/// The file's place under the root, its folder created, and whether it is new (no
/// file of that name yet); refused when it is a folder or stored write-once, or
/// when a pyramid owns the name (409, `pyramid::claim`: the claim returned is held
/// until the write is done).
pub(super) fn writable_path(
    store: &Store,
    file: &Path,
) -> Result<(PathBuf, bool, super::pyramid::Claim), Answer> {
    let path = store
        .confined(file)
        .map_err(|_| Answer::error(403, "The name leads out of the storage root."))?;
    let Some(claim) = super::pyramid::claim(store.root(), &path) else {
        return Err(Answer::error(409, super::ops::files::PYRAMID_OWNS));
    };
    let new = std::fs::metadata(&path).is_err();
    if let Ok(meta) = std::fs::metadata(&path) {
        if meta.is_dir() {
            return Err(Answer::error(409, "This name is a folder here."));
        }
        if meta.permissions().readonly() {
            return Err(Answer::error(
                405,
                "The file was stored write-once; HDF5 aggregation appends only to files it made.",
            ));
        }
    } else if let Some(parent) = path.parent() {
        if let Err(e) = std::fs::create_dir_all(parent) {
            return Err(Answer::error(
                409,
                format!("The folder cannot be made: {e}"),
            ));
        }
    }
    Ok((path, new, claim))
}

/// The rows a body holds: a pickle (restricted), else `.npy`, else JSON records.
pub fn rows_of(body: &[u8]) -> Result<Pickled, String> {
    match pickle::read(body) {
        Ok(pickled) => return Ok(pickled),
        Err(PickleError::Refused(reason)) => return Err(reason),
        Err(PickleError::NotAPickle) => {}
    }
    if npy::is_npy(body) {
        return npy::read_npy(body).map(Pickled::Array).map_err(|e| e.0);
    }
    json_records(body).map(Pickled::Array)
}

/// JSON records as pandas' `read_json(...).to_records(False)` reads them: a list of
/// objects, or an object of columns (`{"x": {"0": 1.5, ...}}` or `{"x": [1.5, ...]}`).
/// Columns of booleans become `?`, of integers `<i8`, of numbers `<f8` (null: NaN);
/// other values are refused (pandas would make object columns, which tables cannot
/// hold). Columns come in name order.
fn json_records(body: &[u8]) -> Result<Array, String> {
    use serde_json::Value;
    let value: Value = serde_json::from_slice(body)
        .map_err(|_| "the body is no pickle, .npy or JSON".to_owned())?;
    let mut columns: Vec<(String, Vec<Value>)> = Vec::new();
    match value {
        Value::Array(records) => {
            for record in &records {
                let Value::Object(record) = record else {
                    return Err("JSON records must be objects".into());
                };
                for key in record.keys() {
                    if !columns.iter().any(|(k, _)| k == key) {
                        columns.push((key.clone(), Vec::new()));
                    }
                }
            }
            for (key, values) in &mut columns {
                for record in &records {
                    values.push(record.get(key.as_str()).cloned().unwrap_or(Value::Null));
                }
            }
        }
        Value::Object(map) => {
            for (key, column) in map {
                let values = match column {
                    Value::Array(values) => values,
                    Value::Object(by_index) => {
                        let mut indexed: Vec<(u64, Value)> = by_index
                            .into_iter()
                            .map(|(i, v)| i.parse().map(|i| (i, v)))
                            .collect::<Result<_, _>>()
                            .map_err(|_| "a JSON column index is not a number".to_owned())?;
                        indexed.sort_by_key(|(i, _)| *i);
                        indexed.into_iter().map(|(_, v)| v).collect()
                    }
                    _ => return Err("a JSON column is neither a list nor an object".into()),
                };
                columns.push((key, values));
            }
        }
        _ => return Err("JSON records must be a list or an object of columns".into()),
    }
    columns.sort_by(|a, b| a.0.cmp(&b.0));
    let rows = columns.first().map_or(0, |(_, v)| v.len());
    if columns.is_empty() || columns.iter().any(|(_, v)| v.len() != rows) {
        return Err("JSON columns must be present and of one length".into());
    }
    let mut fields = Vec::new();
    let mut offset = 0;
    let mut encoders: Vec<Kind> = Vec::new();
    for (name, values) in &columns {
        let kind = if values.iter().all(Value::is_boolean) {
            Kind::Bool
        } else if values.iter().all(|v| v.is_i64()) {
            Kind::Int
        } else if values.iter().all(|v| v.is_number() || v.is_null()) {
            Kind::Float
        } else {
            return Err(format!("the JSON column '{name}' is not numeric"));
        };
        let size = if kind == Kind::Bool { 1 } else { 8 };
        fields.push(npy::Field {
            name: name.clone(),
            dtype: Dtype::Scalar {
                kind,
                size,
                big_endian: false,
            },
            offset,
        });
        offset += size;
        encoders.push(kind);
    }
    let mut data = Vec::with_capacity(rows * offset);
    for row in 0..rows {
        for ((_, values), kind) in columns.iter().zip(&encoders) {
            let v = &values[row];
            match kind {
                Kind::Bool => data.push(u8::from(v.as_bool().unwrap_or(false))),
                Kind::Int => data.extend_from_slice(&v.as_i64().unwrap_or(0).to_le_bytes()),
                _ => data.extend_from_slice(&v.as_f64().unwrap_or(f64::NAN).to_le_bytes()),
            }
        }
    }
    let dtype = Dtype::Record {
        fields,
        itemsize: offset,
    };
    Array::new(dtype, &[rows], data).map_err(|e| e.0)
}

/// PYME metadata (a JSON object of dotted names) as attribute values.
#[cfg(feature = "hdf5")]
pub(super) fn metadata_entries(
    body: &[u8],
) -> Result<Vec<(String, super::h5file::AttrValue)>, String> {
    use super::h5file::AttrValue;
    use serde_json::Value;
    let Ok(Value::Object(map)) = serde_json::from_slice::<Value>(body) else {
        return Err("MetaData must be a JSON object".into());
    };
    Ok(map
        .into_iter()
        .map(|(key, value)| {
            let value = match value {
                Value::Bool(b) => AttrValue::Bool(b),
                Value::Number(n) if n.is_i64() => AttrValue::Int(n.as_i64().unwrap_or(0)),
                Value::Number(n) => AttrValue::Float(n.as_f64().unwrap_or(f64::NAN)),
                Value::String(s) => AttrValue::Str(s),
                other => AttrValue::Pickled(pickle::write_protocol0(&other)),
            };
            (key, value)
        })
        .collect())
}

#[cfg(feature = "hdf5")]
fn put_metadata(path: &Path, body: &[u8]) -> Answer {
    match metadata_entries(body) {
        Ok(entries) => from_h5(super::h5file::set_metadata(path, &entries).map(|_| Answer::ok())),
        Err(reason) => Answer::error(400, reason),
    }
}

#[cfg(feature = "hdf5")]
fn put_table(path: &Path, table: &str, body: &[u8]) -> Answer {
    use super::h5file;
    let result = match rows_of(body) {
        Ok(Pickled::Array(array)) => {
            h5file::append_rows(path, table, &array.dtype, array.rows, &array.data).map(|_| ())
        }
        Ok(Pickled::Bytes(bytes)) => h5file::append_bytes(path, table, &bytes),
        Ok(Pickled::FitResult { .. }) => {
            return Answer::error(400, "a fit result goes to the empty table name")
        }
        Err(reason) => return Answer::error(400, reason),
    };
    from_h5(result.map(|()| Answer::ok()))
}

/// PYME's legacy fit result: `results` to `FitResults`, `driftResults` to
/// `DriftResults` (empty arrays add nothing), as PYME's `H5RFile.fileFitResult`.
#[cfg(feature = "hdf5")]
fn put_fit_result(path: &Path, body: &[u8]) -> Answer {
    use super::h5file;
    match pickle::read(body) {
        Ok(Pickled::FitResult { results, drift }) => {
            from_h5(h5file::append_fit_result(path, &results, &drift).map(|()| Answer::ok()))
        }
        Ok(_) => Answer::error(400, "an empty table name takes PYME's fit result object"),
        Err(e) => Answer::error(400, e.to_string()),
    }
}

#[cfg(feature = "hdf5")]
pub(super) fn from_h5(result: Result<Answer, super::h5file::H5Error>) -> Answer {
    use super::h5file::H5Error;
    match result {
        Ok(answer) => answer,
        Err(H5Error::BadRequest(reason)) => Answer::error(400, reason),
        Err(H5Error::NotHdf5(reason)) => Answer::error(409, reason),
        Err(H5Error::Missing(reason)) => Answer::error(404, reason),
        Err(H5Error::WriteOnce(reason)) => Answer::error(405, reason),
        Err(H5Error::TooLarge(reason)) => Answer::error(413, reason),
        Err(e @ H5Error::Library(_)) => Answer::error(500, e.to_string()),
    }
}

/// Why HDF5 operations are refused in a build without HDF5.
#[cfg(not(feature = "hdf5"))]
pub const NOT_BUILT: &str = "HDF5 is not built into this server (build pyme-stream with \
                             --features hdf5): __aggregate_h5r, __aggregate_h5 and reading \
                             .h5r tables are not available";

#[cfg(not(feature = "hdf5"))]
fn put_metadata(_: &Path, _: &[u8]) -> Answer {
    Answer::error(501, NOT_BUILT)
}

#[cfg(not(feature = "hdf5"))]
fn put_table(_: &Path, _: &str, _: &[u8]) -> Answer {
    Answer::error(501, NOT_BUILT)
}

#[cfg(not(feature = "hdf5"))]
fn put_fit_result(_: &Path, _: &[u8]) -> Answer {
    Answer::error(501, NOT_BUILT)
}

/// `GET <file>.h5r/<part>[.npy|.json]?from=A&to=B`, or None when `relative` is not
/// inside a results file (a plain GET then).
pub fn get(store: &Store, relative: &Path, query: Option<&str>) -> Option<Answer> {
    let (file, part) = split_results_path(relative)?;
    if part.is_empty() {
        // The file itself: sent as any file.
        return None;
    }
    let [part] = part.as_slice() else {
        return Some(Answer::error(
            404,
            "Ask for <file>.h5r/<Table>.npy or .json",
        ));
    };
    let path = match store.confined(&file) {
        Ok(path) => path,
        Err(_) => {
            return Some(Answer::error(
                403,
                "The name leads out of the storage root.",
            ))
        }
    };
    Some(read_part(&path, part, query))
}

/// `from` and `to` of the query, as PYME reads them (`int(...)`).
fn slice_bounds(query: Option<&str>) -> Result<(Option<i64>, Option<i64>), String> {
    let (mut from, mut to) = (None, None);
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let parsed = || {
            value
                .trim()
                .parse::<i64>()
                .map_err(|_| format!("'{key}' must be an integer"))
        };
        match key {
            "from" => from = Some(parsed()?),
            "to" => to = Some(parsed()?),
            _ => {}
        }
    }
    Ok((from, to))
}

#[cfg(feature = "hdf5")]
fn read_part(path: &Path, part: &str, query: Option<&str>) -> Answer {
    use super::h5file;
    let (name, format) = part.split_once('.').unwrap_or((part, ""));
    if name == "Metadata" || name == "MetaData" {
        return from_h5(h5file::metadata(path).map(|entries| Answer {
            code: 200,
            content_type: "text/json",
            body: metadata_json(&entries).into_bytes(),
        }));
    }
    let (from, to) = match slice_bounds(query) {
        Ok(bounds) => bounds,
        Err(reason) => return Answer::error(400, reason),
    };
    let rows = h5file::read_rows(path, name, from, to);
    from_h5(rows.and_then(|(dtype, rows, data)| match format {
        "npy" => Ok(Answer {
            code: 200,
            content_type: "application/octet-stream",
            body: npy::write_npy(&dtype, rows, &data),
        }),
        "json" => Ok(Answer {
            code: 200,
            content_type: "text/json",
            body: columns_json(&dtype, rows, &data).into_bytes(),
        }),
        _ => Err(h5file::H5Error::BadRequest(
            "ask for <Table>.npy or <Table>.json (pickles are not sent)".into(),
        )),
    }))
}

#[cfg(not(feature = "hdf5"))]
fn read_part(_: &Path, _: &str, query: Option<&str>) -> Answer {
    let _ = slice_bounds(query);
    Answer::error(501, NOT_BUILT)
}

/// PYME's `to_JSON` of metadata: one flat object of dotted names, sorted, indented.
#[cfg(feature = "hdf5")]
pub(super) fn metadata_json(entries: &[(String, super::h5file::AttrValue)]) -> String {
    use super::h5file::AttrValue;
    use serde_json::Value;
    let mut map = serde_json::Map::new();
    for (key, value) in entries {
        let value = match value {
            AttrValue::Int(n) => Value::from(*n),
            AttrValue::Float(x) => Value::from(*x),
            AttrValue::Bool(b) => Value::from(*b),
            AttrValue::Str(s) => Value::from(s.as_str()),
            AttrValue::Pickled(p) => pickle::read_protocol0(p).unwrap_or(Value::Null),
        };
        map.insert(key.clone(), value);
    }
    serde_json::to_string_pretty(&Value::Object(map)).unwrap_or_default()
}

/// pandas' `DataFrame(rows).to_json()` of the rows (nested fields unnested as PYME's
/// `unnest_dtype` names them, `parent_child`): `{"column": {"0": value, ...}, ...}`.
pub fn columns_json(dtype: &Dtype, rows: usize, data: &[u8]) -> String {
    use serde_json::{Map, Value};
    let mut leaves = Vec::new();
    flatten(dtype, "", 0, &mut leaves);
    let itemsize = dtype.itemsize();
    let mut out = Map::new();
    for (name, leaf, offset) in leaves {
        let mut column = Map::new();
        for row in 0..rows {
            let at = row * itemsize + offset;
            let value = scalar_json(&leaf, &data[at..at + leaf.itemsize()]);
            column.insert(row.to_string(), value);
        }
        out.insert(name, Value::Object(column));
    }
    Value::Object(out).to_string()
}

fn flatten(dtype: &Dtype, prefix: &str, base: usize, out: &mut Vec<(String, Dtype, usize)>) {
    match dtype {
        Dtype::Record { fields, .. } => {
            for field in fields {
                let name = format!("{prefix}{}", field.name);
                match &field.dtype {
                    Dtype::Record { .. } => {
                        flatten(&field.dtype, &format!("{name}_"), base + field.offset, out)
                    }
                    other => out.push((name, other.clone(), base + field.offset)),
                }
            }
        }
        other => out.push((prefix.trim_end_matches('_').to_owned(), other.clone(), base)),
    }
}

fn scalar_json(dtype: &Dtype, bytes: &[u8]) -> serde_json::Value {
    use serde_json::Value;
    match dtype {
        Dtype::Scalar {
            kind,
            size,
            big_endian,
        } => {
            let mut raw = [0u8; 8];
            let take = (*size).min(8);
            raw[..take].copy_from_slice(&bytes[..take]);
            if *big_endian {
                raw[..take].reverse();
            }
            match (kind, size) {
                (Kind::Bool, _) => Value::from(raw[0] != 0),
                (Kind::Int, n) => {
                    let shift = 64 - 8 * n;
                    Value::from((i64::from_le_bytes(raw) << shift) >> shift)
                }
                (Kind::Uint, _) => Value::from(u64::from_le_bytes(raw)),
                (Kind::Float, 4) => {
                    let x = f32::from_le_bytes([raw[0], raw[1], raw[2], raw[3]]);
                    serde_json::Number::from_f64(f64::from(x)).map_or(Value::Null, Value::Number)
                }
                (Kind::Float, _) => serde_json::Number::from_f64(f64::from_le_bytes(raw))
                    .map_or(Value::Null, Value::Number),
                (Kind::Bytes, _) => {
                    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
                    Value::from(String::from_utf8_lossy(&bytes[..end]).into_owned())
                }
            }
        }
        Dtype::SubArray { base, .. } => {
            let size = base.itemsize();
            Value::Array(
                bytes
                    .chunks(size)
                    .map(|chunk| scalar_json(base, chunk))
                    .collect(),
            )
        }
        Dtype::Record { .. } => Value::Null,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_results_paths() {
        let (file, rest) = split_results_path(Path::new("a/b.h5r/FitResults")).unwrap();
        assert_eq!(file, PathBuf::from("a/b.h5r"));
        assert_eq!(rest, vec!["FitResults".to_owned()]);
        let (file, rest) = split_results_path(Path::new("x.hdf")).unwrap();
        assert_eq!(file, PathBuf::from("x.hdf"));
        assert!(rest.is_empty());
        assert!(split_results_path(Path::new("a/b.txt")).is_none());
        assert!(split_results_path(Path::new("a/.h5r/x")).is_none());
    }

    #[test]
    fn json_columns_and_records_make_the_same_rows() {
        let records = rows_of(br#"[{"x": 1, "y": 2.5}, {"x": 3, "y": null}]"#).unwrap();
        let columns = rows_of(br#"{"x": {"1": 3, "0": 1}, "y": [2.5, null]}"#).unwrap();
        let (Pickled::Array(a), Pickled::Array(b)) = (records, columns) else {
            panic!("arrays expected");
        };
        assert_eq!(a.dtype, b.dtype);
        assert_eq!(a.rows, 2);
        assert_eq!(&a.data[..8], &1i64.to_le_bytes());
        assert_eq!(a.data[..24], b.data[..24]);
        assert!(rows_of(br#"[{"s": "text"}]"#).is_err());
    }
}
