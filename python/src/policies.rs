//! The distribution functions and filters as Python objects: the built-in ones
//! run in Rust without the GIL; a Python callable is called with the GIL held.
//!
//! A Python distribution function is called by `put` itself, on the caller's
//! thread, with the GIL (PYME passes it `n_servers=` and `put`'s keyword
//! arguments, which the library's `Distribution` cannot carry). Its choice
//! reaches the library through [`PreChosen`], a thread-local read back by the
//! library's call to `choose` on the same thread. When the library chooses on
//! its own (failover, on one of its threads) it uses round-robin on the index,
//! without Python.
//!
//! This module may not hold the GIL while it waits for anything.

use std::cell::Cell;
use std::sync::Arc;

use pyme_streaming::distribution::round_robin;
use pyme_streaming::filter::gzip::GzipFilter;
use pyme_streaming::filter::pzf::PzfFilter;
use pyme_streaming::pzf::{Compression, DataFormat, EncodeParams, Quantization};
use pyme_streaming::{BuiltinDistribution, Distribution, Filter};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyDict;

/// A built-in distribution policy, run in Rust.
///
/// Callable as a PYME distribution function: `f(n_servers, i=None)`.
#[pyclass(module = "pyme_streaming", name = "Distribution", frozen)]
pub struct PyDistribution {
    pub builtin: BuiltinDistribution,
    name: String,
}

#[pymethods]
impl PyDistribution {
    /// `Distribution(name)`: `"round-robin"`, `"random"`, `"hash"`, `"fixed:N"`
    /// (and any other policy the library knows by name).
    #[new]
    fn new(name: &str) -> PyResult<Self> {
        let builtin = name
            .parse::<BuiltinDistribution>()
            .map_err(PyValueError::new_err)?;
        Ok(PyDistribution {
            builtin,
            name: name.to_owned(),
        })
    }

    /// The policy's name, as given.
    #[getter]
    fn name(&self) -> &str {
        &self.name
    }

    /// The server for a file: `(n_servers, i=None, name="")`, as the streamer asks.
    #[pyo3(signature = (n_servers, i=None, name=""))]
    fn __call__(&self, n_servers: usize, i: Option<i64>, name: &str) -> PyResult<usize> {
        if n_servers == 0 {
            return Err(PyValueError::new_err("n_servers must be at least 1"));
        }
        Ok(self.builtin.into_distribution().choose(n_servers, i, name))
    }

    fn __repr__(&self) -> String {
        format!("pyme_streaming.Distribution({:?})", self.name)
    }
}

thread_local! {
    /// The server a Python distribution function chose for the `put` running on this thread.
    static PRE_CHOSEN: Cell<Option<usize>> = const { Cell::new(None) };
}

/// The library's side of a Python distribution function: the choice `put`
/// made with the GIL, or round-robin when the library chooses on its own.
pub struct PreChosen;

impl PreChosen {
    /// Makes `server` the choice of the next `choose` on this thread.
    pub fn set(server: usize) {
        PRE_CHOSEN.with(|cell| cell.set(Some(server)));
    }

    /// Forgets a choice that was not used (the put failed before choosing).
    pub fn clear() {
        PRE_CHOSEN.with(|cell| cell.set(None));
    }
}

impl Distribution for PreChosen {
    fn choose(&self, n_servers: usize, index: Option<i64>, _name: &str) -> usize {
        match PRE_CHOSEN.with(|cell| cell.take()) {
            Some(server) => server,
            None => round_robin(n_servers, index),
        }
    }
}

/// What the streamer does to choose a server for `put`.
pub enum Chooser {
    /// A built-in policy, in Rust; `put` accepts the keyword `i` only.
    Builtin(Arc<dyn Distribution>),
    /// A Python callable, called by `put` with the GIL.
    Python(Py<PyAny>),
}

impl Chooser {
    /// From `distribution_fcn`: a [`PyDistribution`], a policy name, or a callable.
    pub fn from_py(fcn: &Bound<'_, PyAny>) -> PyResult<Self> {
        if let Ok(builtin) = fcn.extract::<PyRef<'_, PyDistribution>>() {
            return Ok(Chooser::Builtin(builtin.builtin.into_distribution()));
        }
        if let Ok(name) = fcn.extract::<String>() {
            let builtin = name
                .parse::<BuiltinDistribution>()
                .map_err(PyValueError::new_err)?;
            return Ok(Chooser::Builtin(builtin.into_distribution()));
        }
        if fcn.is_callable() {
            return Ok(Chooser::Python(fcn.clone().unbind()));
        }
        Err(PyTypeError::new_err(format!(
            "distribution_fcn must be a callable, a pyme_streaming.Distribution or a policy name, not {}",
            type_name(fcn)
        )))
    }

    /// The policy the library is built with.
    pub fn for_library(&self) -> Arc<dyn Distribution> {
        match self {
            Chooser::Builtin(distribution) => Arc::clone(distribution),
            Chooser::Python(_) => Arc::new(PreChosen),
        }
    }

    /// The distribution index (`i=`) among `put`'s keyword arguments, and,
    /// for a Python callable, its choice (also set in [`PreChosen`]).
    pub fn choose(
        &self,
        py: Python<'_>,
        n_servers: usize,
        kwargs: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Option<i64>> {
        let index = match kwargs
            .map(|kwargs| kwargs.get_item(pyo3::intern!(py, "i")))
            .transpose()?
            .flatten()
        {
            Some(i) if !i.is_none() => Some(i.extract::<i64>().map_err(|_| {
                if i.is_instance_of::<pyo3::types::PyInt>() {
                    pyo3::exceptions::PyOverflowError::new_err("i must fit in 64 bits")
                } else {
                    PyTypeError::new_err(format!("i must be an int or None, not {}", type_name(&i)))
                }
            })?),
            _ => None,
        };
        match self {
            Chooser::Builtin(_) => {
                // Only `i` (the common case) is checked without listing the keys.
                let only_i = match kwargs {
                    None => true,
                    Some(kwargs) => {
                        let has_i = kwargs.contains(pyo3::intern!(py, "i")).unwrap_or(false);
                        kwargs.len() <= usize::from(has_i)
                    }
                };
                if let (false, Some(kwargs)) = (only_i, kwargs) {
                    for key in kwargs.keys() {
                        let key: String = key.extract()?;
                        if key != "i" {
                            return Err(PyTypeError::new_err(format!(
                                "put() got an unexpected keyword argument {key:?} (a built-in distribution takes only i)"
                            )));
                        }
                    }
                }
                Ok(index)
            }
            Chooser::Python(fcn) => {
                let call_kwargs = match kwargs {
                    Some(kwargs) => kwargs.copy()?,
                    None => PyDict::new(py),
                };
                call_kwargs.set_item("n_servers", n_servers)?;
                let chosen = fcn.bind(py).call((), Some(&call_kwargs))?;
                let server = chosen.extract::<i64>().map_err(|_| {
                    PyTypeError::new_err(format!(
                        "distribution_fcn must return an int, it returned {}",
                        type_name(&chosen)
                    ))
                })?;
                if server < 0 || server as u64 >= n_servers as u64 {
                    return Err(crate::DistributionError::new_err(format!(
                        "distribution_fcn chose server {server} but there are {n_servers} servers"
                    )));
                }
                PreChosen::set(server as usize);
                Ok(index)
            }
        }
    }
}

/// What is done to a file before it is sent.
pub enum Transform {
    /// Nothing.
    None,
    /// A built-in filter, run by the library on its sender thread without the GIL.
    Builtin(Arc<dyn Filter>),
    /// A Python callable `filter(data) -> bytes-like`, run by `put` with the GIL.
    Python(Py<PyAny>),
}

impl Transform {
    pub fn from_py(filter: Option<&Bound<'_, PyAny>>) -> PyResult<Self> {
        let Some(filter) = filter.filter(|filter| !filter.is_none()) else {
            return Ok(Transform::None);
        };
        if let Ok(builtin) = filter.extract::<PyRef<'_, PyFilter>>() {
            return Ok(Transform::Builtin(Arc::clone(&builtin.filter)));
        }
        if filter.is_callable() {
            return Ok(Transform::Python(filter.clone().unbind()));
        }
        Err(PyTypeError::new_err(format!(
            "filter must be a callable, a pyme_streaming.PzfFilter or GzipFilter, or None, not {}",
            type_name(filter)
        )))
    }

    pub fn for_library(&self) -> Option<Arc<dyn Filter>> {
        match self {
            Transform::Builtin(filter) => Some(Arc::clone(filter)),
            _ => None,
        }
    }
}

/// A built-in filter (base class of [`PyPzfFilter`] and [`PyGzipFilter`]).
#[pyclass(module = "pyme_streaming", name = "Filter", subclass, frozen)]
pub struct PyFilter {
    filter: Arc<dyn Filter>,
}

/// Encodes each file (a raw frame) as a PZF file on the library's sender
/// thread, without the GIL. The frame number is `put`'s `i`.
#[pyclass(module = "pyme_streaming", name = "PzfFilter", extends = PyFilter, frozen)]
pub struct PyPzfFilter;

#[pymethods]
impl PyPzfFilter {
    /// `PzfFilter(width, height, dtype="uint16", compression="huffman",
    /// quantization=None, quant_offset=0.0, quant_scale=1.0, sequence_id=0, depth=1)`.
    /// `width` is the first array dimension (rows of a C-order numpy frame).
    #[new]
    #[pyo3(signature = (width, height, dtype="uint16", compression="huffman", quantization=None, quant_offset=0.0, quant_scale=1.0, sequence_id=0, depth=1))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        width: u32,
        height: u32,
        dtype: &str,
        compression: &str,
        quantization: Option<&str>,
        quant_offset: f32,
        quant_scale: f32,
        sequence_id: i64,
        depth: u32,
    ) -> PyResult<(Self, PyFilter)> {
        let format = match dtype {
            "uint8" | "u1" => DataFormat::U8,
            "uint16" | "u2" => DataFormat::U16,
            "float32" | "f4" => DataFormat::F32,
            _ => {
                return Err(PyValueError::new_err(format!(
                    "dtype {dtype:?}: PZF takes uint8, uint16 or float32"
                )))
            }
        };
        let mut params = EncodeParams::new(format, width, height);
        params.depth = depth;
        params.compression = match compression {
            "raw" | "none" => Compression::Raw,
            "huffman" => Compression::Huffman,
            "huffman-chunked" => Compression::HuffmanChunked,
            _ => {
                return Err(PyValueError::new_err(format!(
                    "compression {compression:?}: expected raw, huffman or huffman-chunked"
                )))
            }
        };
        params.quantization = match quantization {
            None | Some("none") => Quantization::None,
            Some("sqrt") => Quantization::Sqrt,
            Some(other) => {
                return Err(PyValueError::new_err(format!(
                    "quantization {other:?}: expected None or \"sqrt\""
                )))
            }
        };
        params.quant_offset = quant_offset;
        params.quant_scale = quant_scale;
        params.sequence_id = sequence_id;
        let filter = PzfFilter::new(params).map_err(|e| PyValueError::new_err(e.to_string()))?;
        Ok((
            PyPzfFilter,
            PyFilter {
                filter: Arc::new(filter),
            },
        ))
    }
}

/// Gzip-compresses each file on the library's sender thread, without the GIL
/// (sent with `Content-Encoding: gzip`, which PYME servers decode).
#[pyclass(module = "pyme_streaming", name = "GzipFilter", extends = PyFilter, frozen)]
pub struct PyGzipFilter;

#[pymethods]
impl PyGzipFilter {
    /// `GzipFilter(level=1)`, level 0 to 9.
    #[new]
    #[pyo3(signature = (level=GzipFilter::DEFAULT_LEVEL))]
    fn new(level: u32) -> PyResult<(Self, PyFilter)> {
        if level > 9 {
            return Err(PyValueError::new_err(format!(
                "gzip level {level}: expected 0 to 9"
            )));
        }
        Ok((
            PyGzipFilter,
            PyFilter {
                filter: Arc::new(GzipFilter::new(level)),
            },
        ))
    }
}

/// The type name of `object`, for error messages.
pub fn type_name(object: &Bound<'_, PyAny>) -> String {
    object
        .get_type()
        .name()
        .map(|name| name.to_string())
        .unwrap_or_else(|_| "?".into())
}
