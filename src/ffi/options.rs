//! `PymeStreamerOptions`: the builder C fills before `streamer_new` / `stream_new`.
//!
//! It wraps the core's `PymeStreamerOptions` and keeps what the core does not know
//! about: the C completion callback (wrapped per handle in `streamer_new`, so the
//! handle can record failures) and the message of the last failure of a
//! `streamer_options_*`, `streamer_new` or `stream_new` call.

use std::ffi::{c_char, c_void};
use std::time::Duration;

use super::callbacks::{
    CCompletion, CDistribution, CFilter, PymeStreamerCompletionFn, PymeStreamerDistributionFn,
    PymeStreamerFilterFn, UserData,
};
use super::handle::{self, BoxedHandle};
use super::status::{STREAMER_ERR_INVALID_ARGUMENT, STREAMER_ERR_NULL_ARGUMENT, STREAMER_OK};
use super::util::LastError;
use crate::distribution::BuiltinDistribution;

/// The built-in distributions (`streamer_options_set_distribution_kind`).
#[repr(C)]
#[allow(non_camel_case_types, clippy::upper_case_acronyms)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PymeStreamerDistribution {
    /// `index % n_servers` (a frame number spreads frames evenly); a random server
    /// when put is given no index. The default.
    STREAMER_DISTRIBUTION_ROUND_ROBIN = 0,
    /// A random server for every file.
    STREAMER_DISTRIBUTION_RANDOM = 1,
    /// Always one server: the one set by `streamer_options_set_fixed_server` (default 0).
    STREAMER_DISTRIBUTION_FIXED = 2,
    /// A stable hash of the file name (without `?query`): a name always lands on the
    /// same server of a cluster of the same size.
    STREAMER_DISTRIBUTION_HASH = 3,
    /// The live server with the least outstanding work (bytes not yet
    /// acknowledged, over its measured drain rate); ties round-robin, so a uniform
    /// cluster stays round-robin.
    STREAMER_DISTRIBUTION_LEAST_LOADED = 4,
}

/// The built-in filters without parameters (`streamer_options_set_filter_kind`).
#[repr(C)]
#[allow(non_camel_case_types, clippy::upper_case_acronyms)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PymeStreamerFilter {
    /// Send the bytes unchanged (the default; no copy is made).
    STREAMER_FILTER_IDENTITY = 0,
}

/// PZF pixel types (`streamer_options_set_filter_pzf`).
#[repr(C)]
#[allow(non_camel_case_types, clippy::upper_case_acronyms)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PymeStreamerPzfFormat {
    /// uint8.
    STREAMER_PZF_UINT8 = 0,
    /// uint16 (sCMOS cameras).
    STREAMER_PZF_UINT16 = 1,
    /// float32.
    STREAMER_PZF_FLOAT32 = 2,
}

/// PZF compressions (`streamer_options_set_filter_pzf`).
#[repr(C)]
#[allow(non_camel_case_types, clippy::upper_case_acronyms)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PymeStreamerPzfCompression {
    /// None.
    STREAMER_PZF_RAW = 0,
    /// One Huffman block (pymecompress-compatible).
    STREAMER_PZF_HUFFMAN = 1,
    /// Huffman-coded chunks, coded in parallel.
    STREAMER_PZF_HUFFMAN_CHUNKED = 2,
}

/// PZF quantizations (`streamer_options_set_filter_pzf`).
#[repr(C)]
#[allow(non_camel_case_types, clippy::upper_case_acronyms)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PymeStreamerPzfQuantization {
    /// None (lossless).
    STREAMER_PZF_QUANT_NONE = 0,
    /// Square root, uint16 only (within photon shot noise).
    STREAMER_PZF_QUANT_SQRT = 1,
}

const STREAMER_DISTRIBUTION_ROUND_ROBIN: i32 =
    PymeStreamerDistribution::STREAMER_DISTRIBUTION_ROUND_ROBIN as i32;
const STREAMER_DISTRIBUTION_RANDOM: i32 =
    PymeStreamerDistribution::STREAMER_DISTRIBUTION_RANDOM as i32;
const STREAMER_DISTRIBUTION_FIXED: i32 =
    PymeStreamerDistribution::STREAMER_DISTRIBUTION_FIXED as i32;
const STREAMER_DISTRIBUTION_HASH: i32 = PymeStreamerDistribution::STREAMER_DISTRIBUTION_HASH as i32;
const STREAMER_DISTRIBUTION_LEAST_LOADED: i32 =
    PymeStreamerDistribution::STREAMER_DISTRIBUTION_LEAST_LOADED as i32;
const STREAMER_FILTER_IDENTITY: i32 = PymeStreamerFilter::STREAMER_FILTER_IDENTITY as i32;
const STREAMER_PZF_UINT8: i32 = PymeStreamerPzfFormat::STREAMER_PZF_UINT8 as i32;
const STREAMER_PZF_UINT16: i32 = PymeStreamerPzfFormat::STREAMER_PZF_UINT16 as i32;
const STREAMER_PZF_FLOAT32: i32 = PymeStreamerPzfFormat::STREAMER_PZF_FLOAT32 as i32;
const STREAMER_PZF_RAW: i32 = PymeStreamerPzfCompression::STREAMER_PZF_RAW as i32;
const STREAMER_PZF_HUFFMAN: i32 = PymeStreamerPzfCompression::STREAMER_PZF_HUFFMAN as i32;
const STREAMER_PZF_HUFFMAN_CHUNKED: i32 =
    PymeStreamerPzfCompression::STREAMER_PZF_HUFFMAN_CHUNKED as i32;
const STREAMER_PZF_QUANT_NONE: i32 = PymeStreamerPzfQuantization::STREAMER_PZF_QUANT_NONE as i32;
const STREAMER_PZF_QUANT_SQRT: i32 = PymeStreamerPzfQuantization::STREAMER_PZF_QUANT_SQRT as i32;

/// Settings for a `Streamer` or a `Stream`. Not thread-safe: fill it from one
/// thread. One options object may create any number of handles; each handle
/// copies what it needs, so the options may be freed right after `streamer_new`.
pub struct PymeStreamerOptions {
    pub(crate) core: crate::StreamerOptions,
    pub(crate) completion: Option<CCompletion>,
    fixed_server: usize,
    pub(crate) last_error: LastError,
}

impl BoxedHandle for PymeStreamerOptions {}

impl PymeStreamerOptions {
    fn update(&mut self, change: impl FnOnce(crate::StreamerOptions) -> crate::StreamerOptions) {
        self.core = change(std::mem::take(&mut self.core));
    }
}

/// Creates options with the defaults: no servers, round-robin distribution, no
/// filter, no completion callback, 256 files / 256 MiB queued per server, a put
/// that waits for room as long as it takes, 5 s connect and 30 s response timeouts.
/// Consumes nothing; the new handle belongs to the caller.
///
/// # Safety
/// `out` is NULL or a valid pointer; on success `*out` is a new handle to free
/// with `streamer_options_free`.
#[no_mangle]
pub unsafe extern "C" fn streamer_options_new(out: *mut *mut PymeStreamerOptions) -> i32 {
    ffi_panic_boundary! {
        let out = try_out!(out);
        *out = BoxedHandle::into_ptr(PymeStreamerOptions {
            core: crate::StreamerOptions::new(),
            completion: None,
            fixed_server: 0,
            last_error: LastError::default(),
        });
        STREAMER_OK
    }
}

/// Frees options. NULL: does nothing.
/// Consumes the options handle.
///
/// # Safety
/// `options` is NULL or a handle from `streamer_options_new`, not used afterwards.
#[no_mangle]
pub unsafe extern "C" fn streamer_options_free(options: *mut PymeStreamerOptions) {
    ffi_panic_boundary! {
        // SAFETY: the contract: NULL or a handle C gives back, not used afterwards.
        drop(unsafe { handle::take(options) });
    }
}

/// Adds a data server. Servers are numbered 0, 1, ... in the order added; that
/// number is the server index of distributions, `streamer_put_stream` and the
/// completion callback. `host` is a name or an IP address (IPv6 without brackets
/// is accepted); `port` must not be 0.
/// Consumes nothing.
///
/// # Safety
/// `options` is NULL or a valid handle; `host` is NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn streamer_options_add_server(
    options: *mut PymeStreamerOptions,
    host: *const c_char,
    port: u16,
) -> i32 {
    ffi_panic_boundary! {
        let options = try_handle_mut!(options);
        let host = match c_string!(host) {
            Ok(host) => host,
            Err(failure) => return options.last_error.fail(failure),
        };
        if host.is_empty() || port == 0 {
            return options.last_error.set(STREAMER_ERR_INVALID_ARGUMENT, format!("invalid server {host:?} port {port}"));
        }
        let address = crate::options::server_address(host, port);
        options.update(|core| core.server(address));
        STREAMER_OK
    }
}

/// Chooses the server of each file with a C callback (see
/// `PymeStreamerDistributionFn`). `user_data` is passed back to every call.
/// Consumes nothing: the options keep `fn` and `user_data` (borrowed, not owned).
///
/// # Safety
/// `options` is NULL or a valid handle; `fn` follows the `PymeStreamerDistributionFn`
/// contract and, with `user_data`, stays usable until every handle created from
/// these options is closed.
#[no_mangle]
pub unsafe extern "C" fn streamer_options_set_distribution(
    options: *mut PymeStreamerOptions,
    r#fn: PymeStreamerDistributionFn,
    user_data: *mut c_void,
) -> i32 {
    ffi_panic_boundary! {
        let options = try_handle_mut!(options);
        let Some(function) = r#fn else {
            return options.last_error.set(STREAMER_ERR_NULL_ARGUMENT, "the distribution function is NULL");
        };
        let distribution = CDistribution { function, user_data: UserData(user_data) };
        options.update(|core| core.distribution(distribution));
        STREAMER_OK
    }
}

/// Chooses a built-in distribution: one of `STREAMER_DISTRIBUTION_*`. No
/// callback needed (for LabVIEW and other hosts without function pointers).
/// Consumes nothing.
///
/// # Safety
/// `options` is NULL or a valid handle.
#[no_mangle]
pub unsafe extern "C" fn streamer_options_set_distribution_kind(
    options: *mut PymeStreamerOptions,
    kind: i32,
) -> i32 {
    ffi_panic_boundary! {
        let options = try_handle_mut!(options);
        let builtin = match kind {
            STREAMER_DISTRIBUTION_ROUND_ROBIN => BuiltinDistribution::RoundRobin,
            STREAMER_DISTRIBUTION_RANDOM => BuiltinDistribution::Random,
            STREAMER_DISTRIBUTION_FIXED => BuiltinDistribution::Fixed(options.fixed_server),
            STREAMER_DISTRIBUTION_HASH => BuiltinDistribution::NameHash,
            STREAMER_DISTRIBUTION_LEAST_LOADED => BuiltinDistribution::LeastLoaded,
            _ => return options.last_error.set(STREAMER_ERR_INVALID_ARGUMENT, format!("unknown distribution kind {kind}")),
        };
        options.update(|core| core.shared_distribution(builtin.into_distribution()));
        STREAMER_OK
    }
}

/// Where round-robin starts: the file of index `i` goes to server
/// `(i + start) % n` (`start` 0: server `i % n`, exactly as PYME's
/// `distribution_function_round_robin`). A negative `start` (the default)
/// makes each streamer draw its own start at random when it is created, so
/// that cameras triggered together do not send frame `i` to the same server
/// at the same moment. Applies to `STREAMER_DISTRIBUTION_ROUND_ROBIN` (the
/// default) and to the round-robin tie-break of
/// `STREAMER_DISTRIBUTION_LEAST_LOADED`; a distribution function set with
/// `streamer_options_set_distribution` gets the caller's index unchanged.
/// Consumes nothing.
///
/// # Safety
/// `options` is NULL or a valid handle.
#[no_mangle]
pub unsafe extern "C" fn streamer_options_set_round_robin_start(
    options: *mut PymeStreamerOptions,
    start: i64,
) -> i32 {
    ffi_panic_boundary! {
        let options = try_handle_mut!(options);
        let start = usize::try_from(start).ok();
        options.update(|core| core.round_robin_start(start));
        STREAMER_OK
    }
}

/// Sends every file to server `server` (`STREAMER_DISTRIBUTION_FIXED`). A server
/// index beyond the servers makes every put fail with
/// `STREAMER_ERR_DISTRIBUTION_OUT_OF_RANGE`.
/// Consumes nothing.
///
/// # Safety
/// `options` is NULL or a valid handle.
#[no_mangle]
pub unsafe extern "C" fn streamer_options_set_fixed_server(
    options: *mut PymeStreamerOptions,
    server: usize,
) -> i32 {
    ffi_panic_boundary! {
        let options = try_handle_mut!(options);
        options.fixed_server = server;
        options.update(|core| core.shared_distribution(BuiltinDistribution::Fixed(server).into_distribution()));
        STREAMER_OK
    }
}

/// Runs a C filter on every file before it is sent (see `PymeStreamerFilterFn`).
/// Replaces any filter set before.
/// Consumes nothing: the options keep `fn` and `user_data` (borrowed, not owned).
///
/// # Safety
/// `options` is NULL or a valid handle; `fn` follows the `PymeStreamerFilterFn`
/// contract and, with `user_data`, stays usable until every handle created from
/// these options is closed.
#[no_mangle]
pub unsafe extern "C" fn streamer_options_set_filter(
    options: *mut PymeStreamerOptions,
    r#fn: PymeStreamerFilterFn,
    user_data: *mut c_void,
) -> i32 {
    ffi_panic_boundary! {
        let options = try_handle_mut!(options);
        let Some(function) = r#fn else {
            return options.last_error.set(STREAMER_ERR_NULL_ARGUMENT, "the filter function is NULL");
        };
        let filter = CFilter { function, user_data: UserData(user_data) };
        options.update(|core| core.filter(filter));
        STREAMER_OK
    }
}

/// Chooses a built-in filter: `STREAMER_FILTER_IDENTITY` (send the bytes
/// unchanged; removes any filter set before). Built-in filters with parameters
/// have their own setters: `streamer_options_set_filter_pzf`,
/// `streamer_options_set_filter_gzip`.
/// Consumes nothing.
///
/// # Safety
/// `options` is NULL or a valid handle.
#[no_mangle]
pub unsafe extern "C" fn streamer_options_set_filter_kind(
    options: *mut PymeStreamerOptions,
    kind: i32,
) -> i32 {
    ffi_panic_boundary! {
        let options = try_handle_mut!(options);
        match kind {
            STREAMER_FILTER_IDENTITY => options.update(|core| core.shared_filter(None)),
            _ => return options.last_error.set(STREAMER_ERR_INVALID_ARGUMENT, format!("unknown filter kind {kind}")),
        }
        STREAMER_OK
    }
}

/// Encodes every file as a PZF frame (PYME's one-frame-per-file format) on
/// the library's sender threads, without a callback: each put's `data` is one
/// raw little-endian frame of `rows` x `cols` (x `depth`, 1 for 2-D) pixels in
/// C (row-major) order, and its index is the frame number. (The PZF header
/// calls the first dimension Width: it holds `rows`.)
/// `data_format`: `STREAMER_PZF_UINT8`, `_UINT16` or `_FLOAT32`;
/// `compression`: `STREAMER_PZF_RAW`, `_HUFFMAN` or `_HUFFMAN_CHUNKED`;
/// `quantization`: `STREAMER_PZF_QUANT_NONE` or `_SQRT` (uint16 only, with
/// `quant_offset` (the camera's dark level) and `quant_scale` > 0). Invalid
/// parameters are `STREAMER_ERR_INVALID_ARGUMENT` here; a put whose size does
/// not match fails that file with `STREAMER_ERR_FILTER`, never a corrupt file.
/// Consumes nothing.
///
/// # Safety
/// `options` is NULL or a valid handle.
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn streamer_options_set_filter_pzf(
    options: *mut PymeStreamerOptions,
    data_format: i32,
    rows: u32,
    cols: u32,
    depth: u32,
    compression: i32,
    quantization: i32,
    quant_offset: f32,
    quant_scale: f32,
) -> i32 {
    ffi_panic_boundary! {
        use crate::pzf::{Compression, DataFormat, EncodeParams, Quantization};
        let options = try_handle_mut!(options);
        let format = match data_format {
            STREAMER_PZF_UINT8 => DataFormat::U8,
            STREAMER_PZF_UINT16 => DataFormat::U16,
            STREAMER_PZF_FLOAT32 => DataFormat::F32,
            other => return options.last_error.set(STREAMER_ERR_INVALID_ARGUMENT, format!("unknown PZF data format {other}")),
        };
        let compression = match compression {
            STREAMER_PZF_RAW => Compression::Raw,
            STREAMER_PZF_HUFFMAN => Compression::Huffman,
            STREAMER_PZF_HUFFMAN_CHUNKED => Compression::HuffmanChunked,
            other => return options.last_error.set(STREAMER_ERR_INVALID_ARGUMENT, format!("unknown PZF compression {other}")),
        };
        let quantization = match quantization {
            STREAMER_PZF_QUANT_NONE => Quantization::None,
            STREAMER_PZF_QUANT_SQRT => Quantization::Sqrt,
            other => return options.last_error.set(STREAMER_ERR_INVALID_ARGUMENT, format!("unknown PZF quantization {other}")),
        };
        let mut params = EncodeParams::new(format, rows, cols);
        params.depth = depth;
        params.compression = compression;
        params.quantization = quantization;
        params.quant_offset = quant_offset;
        params.quant_scale = quant_scale;
        match crate::filter::pzf::PzfFilter::new(params) {
            Ok(filter) => {
                options.update(|core| core.filter(filter));
                STREAMER_OK
            }
            Err(error) => options.last_error.set(STREAMER_ERR_INVALID_ARGUMENT, error.to_string()),
        }
    }
}

/// Encodes every file as a PZF frame of a camera image as cameras and
/// Micro-Manager give it: `width` pixels per line (x fastest), `height` lines,
/// little-endian. The frame is stored as PYME indexes images, `[x, y]`: PZF
/// DimOrder `F` with the first dimension (Width) `width`, so PYME's reader
/// (`PZFFormat.loads`) returns an array of shape (`width`, `height`, 1) whose
/// element `[x, y]` is pixel `x` of line `y`; the bytes are not reordered.
/// The index of each put is the frame number. `data_format` and `compression`
/// as `streamer_options_set_filter_pzf`; no quantization.
/// Consumes nothing.
///
/// # Safety
/// `options` is NULL or a valid handle.
#[no_mangle]
pub unsafe extern "C" fn streamer_options_set_filter_pzf_image(
    options: *mut PymeStreamerOptions,
    data_format: i32,
    width: u32,
    height: u32,
    compression: i32,
) -> i32 {
    ffi_panic_boundary! {
        use crate::pzf::{Compression, DataFormat, DimOrder, EncodeParams};
        let options = try_handle_mut!(options);
        let format = match data_format {
            STREAMER_PZF_UINT8 => DataFormat::U8,
            STREAMER_PZF_UINT16 => DataFormat::U16,
            STREAMER_PZF_FLOAT32 => DataFormat::F32,
            other => return options.last_error.set(STREAMER_ERR_INVALID_ARGUMENT, format!("unknown PZF data format {other}")),
        };
        let compression = match compression {
            STREAMER_PZF_RAW => Compression::Raw,
            STREAMER_PZF_HUFFMAN => Compression::Huffman,
            STREAMER_PZF_HUFFMAN_CHUNKED => Compression::HuffmanChunked,
            other => return options.last_error.set(STREAMER_ERR_INVALID_ARGUMENT, format!("unknown PZF compression {other}")),
        };
        let mut params = EncodeParams::new(format, width, height);
        params.order = DimOrder::F;
        params.compression = compression;
        match crate::filter::pzf::PzfFilter::new(params) {
            Ok(filter) => {
                options.update(|core| core.filter(filter));
                STREAMER_OK
            }
            Err(error) => options.last_error.set(STREAMER_ERR_INVALID_ARGUMENT, error.to_string()),
        }
    }
}

/// Compresses every file with gzip for the transport (`Content-Encoding:
/// gzip`; PYME servers store the decoded bytes), at `level` 1 (fast) to 9
/// (small). For non-image files; use the PZF filter for frames.
/// Consumes nothing.
///
/// # Safety
/// `options` is NULL or a valid handle.
#[no_mangle]
pub unsafe extern "C" fn streamer_options_set_filter_gzip(
    options: *mut PymeStreamerOptions,
    level: i32,
) -> i32 {
    ffi_panic_boundary! {
        let options = try_handle_mut!(options);
        let Ok(level @ 1..=9) = u32::try_from(level) else {
            return options.last_error.set(STREAMER_ERR_INVALID_ARGUMENT, format!("gzip level {level} is not 1..9"));
        };
        options.update(|core| core.filter(crate::filter::gzip::GzipFilter::new(level)));
        STREAMER_OK
    }
}

/// Calls `fn` once with the outcome of every file (see `PymeStreamerCompletionFn`).
/// Consumes nothing: the options keep `fn` and `user_data` (borrowed, not owned).
///
/// # Safety
/// `options` is NULL or a valid handle; `fn` follows the `PymeStreamerCompletionFn`
/// contract and, with `user_data`, stays usable until every handle created from
/// these options is closed.
#[no_mangle]
pub unsafe extern "C" fn streamer_options_set_completion(
    options: *mut PymeStreamerOptions,
    r#fn: PymeStreamerCompletionFn,
    user_data: *mut c_void,
) -> i32 {
    ffi_panic_boundary! {
        let options = try_handle_mut!(options);
        let Some(function) = r#fn else {
            return options.last_error.set(STREAMER_ERR_NULL_ARGUMENT, "the completion function is NULL");
        };
        options.completion = Some(CCompletion { function, user_data: UserData(user_data) });
        STREAMER_OK
    }
}

/// Bounds what each server may hold: files and bytes accepted by put and not yet
/// answered. A put waits for room (see `streamer_options_set_put_timeout`). A
/// single file larger than `max_bytes` still goes through, alone. Both must be > 0.
/// Consumes nothing.
///
/// # Safety
/// `options` is NULL or a valid handle.
#[no_mangle]
pub unsafe extern "C" fn streamer_options_set_queue_limits(
    options: *mut PymeStreamerOptions,
    max_files: usize,
    max_bytes: u64,
) -> i32 {
    ffi_panic_boundary! {
        let options = try_handle_mut!(options);
        if max_files == 0 || max_bytes == 0 {
            return options.last_error.set(STREAMER_ERR_INVALID_ARGUMENT, "queue limits must be greater than 0");
        }
        options.update(|core| core.queue_limits(max_files, max_bytes));
        STREAMER_OK
    }
}

/// The memory budget: all the bytes the streamer holds for files at once,
/// whatever the number of servers (default 1 GiB, `1073741824`): files
/// queued or waiting for their answer on every server (files moved by
/// failover included), the copying put's free buffers, filter output while
/// it is sent. The queue limits of each server apply inside it. A put that
/// finds the budget full waits as for a full queue (the put timeout) and then
/// fails with `STREAMER_ERR_QUEUE_FULL`. A file larger than the whole budget
/// is taken only while the streamer holds no other file (it goes alone), so
/// `bytes` 0 or 1 mean one file at a time.
/// Consumes nothing.
///
/// # Safety
/// `options` is NULL or a valid handle.
#[no_mangle]
pub unsafe extern "C" fn streamer_options_set_memory_limit(
    options: *mut PymeStreamerOptions,
    bytes: u64,
) -> i32 {
    ffi_panic_boundary! {
        let options = try_handle_mut!(options);
        options.update(|core| core.memory_limit(bytes));
        STREAMER_OK
    }
}

/// How long connecting to a server may take, and how long a server may stay
/// silent while answers are due before its connection is failed. Both in
/// milliseconds, both > 0.
/// Consumes nothing.
///
/// # Safety
/// `options` is NULL or a valid handle.
#[no_mangle]
pub unsafe extern "C" fn streamer_options_set_timeouts(
    options: *mut PymeStreamerOptions,
    connect_ms: u32,
    response_ms: u32,
) -> i32 {
    ffi_panic_boundary! {
        let options = try_handle_mut!(options);
        if connect_ms == 0 || response_ms == 0 {
            return options.last_error.set(STREAMER_ERR_INVALID_ARGUMENT, "timeouts must be greater than 0");
        }
        options.update(|core| {
            core.connect_timeout(Duration::from_millis(connect_ms.into()))
                .response_timeout(Duration::from_millis(response_ms.into()))
        });
        STREAMER_OK
    }
}

/// How long a put waits for room in a full queue before it fails with
/// `STREAMER_ERR_QUEUE_FULL`: `ms < 0` waits as long as it takes (the
/// default), `0` fails at once, `ms > 0` waits up to that many milliseconds.
/// Consumes nothing.
///
/// # Safety
/// `options` is NULL or a valid handle.
#[no_mangle]
pub unsafe extern "C" fn streamer_options_set_put_timeout(
    options: *mut PymeStreamerOptions,
    ms: i64,
) -> i32 {
    ffi_panic_boundary! {
        let options = try_handle_mut!(options);
        let timeout = u64::try_from(ms).ok().map(Duration::from_millis);
        options.update(|core| core.put_timeout(timeout));
        STREAMER_OK
    }
}

/// Failover (on by default): when a server's connection fails, its queued and
/// unanswered files move to the live servers. `enabled == 0`: they fail with
/// `STREAMER_ERR_CONNECTION_LOST` instead (a strict placement policy).
/// Consumes nothing.
///
/// # Safety
/// `options` is NULL or a valid handle.
#[no_mangle]
pub unsafe extern "C" fn streamer_options_set_failover(
    options: *mut PymeStreamerOptions,
    enabled: i32,
) -> i32 {
    ffi_panic_boundary! {
        let options = try_handle_mut!(options);
        options.update(|core| core.failover(enabled != 0));
        STREAMER_OK
    }
}

/// `required != 0`: `streamer_new` fails with `STREAMER_ERR_CONNECT` (naming
/// the server in `streamer_options_last_error`) unless every server can be
/// reached. The default (0): a server that cannot be reached (refused, timed
/// out, or its name cannot be resolved for now) starts
/// `STREAMER_SERVER_DOWN` and is connected with the reconnect backoff, as
/// after an outage that began later. A host name that does not exist is an
/// error either way. A stream (`stream_new`) requires its server unless it
/// has a spill folder.
/// Consumes nothing.
///
/// # Safety
/// `options` is NULL or a valid handle.
#[no_mangle]
pub unsafe extern "C" fn streamer_options_set_require_all_servers(
    options: *mut PymeStreamerOptions,
    required: i32,
) -> i32 {
    ffi_panic_boundary! {
        let options = try_handle_mut!(options);
        options.update(|core| core.require_all_servers(required != 0));
        STREAMER_OK
    }
}

/// How many times a file answered 5xx is sent again before it fails (default 2).
/// Consumes nothing.
///
/// # Safety
/// `options` is NULL or a valid handle.
#[no_mangle]
pub unsafe extern "C" fn streamer_options_set_max_retries(
    options: *mut PymeStreamerOptions,
    retries: u32,
) -> i32 {
    ffi_panic_boundary! {
        let options = try_handle_mut!(options);
        options.update(|core| core.max_retries(retries));
        STREAMER_OK
    }
}

/// How `streamer_put` hands a file to an idle sender thread. `interval_us > 0`
/// (the default is 1000): while files come close together (at most 4
/// intervals apart), an idle sender looks at its queue every `interval_us`
/// microseconds, at most 4 times, so a put makes no system call; a file may
/// wait that long before it is sent. Files further apart, or none: the sender
/// sleeps until a put wakes it, and an idle link never wakes. `0`: the sender
/// always sleeps until a put wakes it.
/// Consumes nothing.
///
/// # Safety
/// `options` is NULL or a valid handle.
#[no_mangle]
pub unsafe extern "C" fn streamer_options_set_sender_poll_us(
    options: *mut PymeStreamerOptions,
    interval_us: u32,
) -> i32 {
    ffi_panic_boundary! {
        let options = try_handle_mut!(options);
        let interval = std::time::Duration::from_micros(u64::from(interval_us));
        options.update(|core| core.sender_poll(Some(interval)));
        STREAMER_OK
    }
}

/// Rides through a whole-cluster outage (off by default): files that cannot be
/// delivered because no server is live are written below `folder` instead of
/// failing, and sent again, oldest first, when a server is back. Files still
/// there at close complete with `STREAMER_ERR_SPILLED` and are sent by a later
/// streamer given the same folder. A put that spills returns once the file's
/// data and every folder entry it needed are synced to disk. One streamer or
/// stream per folder: it holds the lock file `folder/.pyme-lock` while open
/// (released by its close, or by the death of its process; a forked child
/// does not keep it); `streamer_new` / `stream_new` on a folder in use, in
/// this process or another, fail with `STREAMER_ERR_SPILL_BUSY`.
/// Consumes nothing.
///
/// # Safety
/// `options` is NULL or a valid handle; `folder` is NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn streamer_options_set_spill_dir(
    options: *mut PymeStreamerOptions,
    folder: *const c_char,
) -> i32 {
    ffi_panic_boundary! {
        let options = try_handle_mut!(options);
        let folder = match c_string!(folder) {
            Ok(folder) if !folder.is_empty() => folder.to_owned(),
            Ok(_) => return options.last_error.set(STREAMER_ERR_INVALID_ARGUMENT, "the spill folder is empty"),
            Err(failure) => return options.last_error.fail(failure),
        };
        options.update(|core| core.spill_dir(folder));
        STREAMER_OK
    }
}

/// Finds the servers of the cluster named `serverfilter` when the streamer is
/// created (PYME's way: every data server whose advertised name contains it,
/// over mDNS and the local registry, this computer's servers first), in
/// addition to any added with `streamer_options_add_server`. Finding none makes
/// `streamer_new` fail with `STREAMER_ERR_DISCOVERY`. `""` takes every server.
/// Consumes nothing.
///
/// # Safety
/// `options` is NULL or a valid handle; `serverfilter` is NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn streamer_options_set_serverfilter(
    options: *mut PymeStreamerOptions,
    serverfilter: *const c_char,
) -> i32 {
    ffi_panic_boundary! {
        let options = try_handle_mut!(options);
        let serverfilter = match c_string!(serverfilter) {
            Ok(text) => text,
            Err(failure) => return options.last_error.fail(failure),
        };
        options.update(|core| core.serverfilter(serverfilter));
        STREAMER_OK
    }
}

/// How long discovery listens for mDNS answers (default 2000 ms). Call after
/// `streamer_options_set_serverfilter`.
/// Consumes nothing.
///
/// # Safety
/// `options` is NULL or a valid handle.
#[no_mangle]
pub unsafe extern "C" fn streamer_options_set_discovery_timeout_ms(
    options: *mut PymeStreamerOptions,
    ms: u32,
) -> i32 {
    ffi_panic_boundary! {
        let options = try_handle_mut!(options);
        match options.core.discovery_options_mut() {
            Some(discovery) => {
                discovery.mdns_wait = Duration::from_millis(ms.into());
                STREAMER_OK
            }
            None => options.last_error.set(STREAMER_ERR_INVALID_ARGUMENT, "set a serverfilter first"),
        }
    }
}

/// Live membership: with a serverfilter, how often discovery runs again
/// during the acquisition, in milliseconds (default 10000; 0: only once, at
/// start). A server found that the streamer does not have yet joins it with
/// the next index (`streamer_n_servers` grows; indices never change); a
/// server found by discovery that two rounds in a row do not find is marked
/// down (`STREAMER_SERVER_DOWN`), takes no new file (its files move to live
/// servers) and does not reconnect until found again. Servers given by
/// address are never marked down by discovery. The server-state callback
/// hears of both: a joining server's first call says `STREAMER_SERVER_UP`.
/// Without a serverfilter it has no effect. May be called before or after
/// `streamer_options_set_serverfilter`.
/// Consumes nothing.
///
/// # Safety
/// `options` is NULL or a valid handle.
#[no_mangle]
pub unsafe extern "C" fn streamer_options_set_discovery_period_ms(
    options: *mut PymeStreamerOptions,
    period_ms: u32,
) -> i32 {
    ffi_panic_boundary! {
        let options = try_handle_mut!(options);
        options.update(|core| core.discovery_period(Duration::from_millis(period_ms.into())));
        STREAMER_OK
    }
}

/// Where discovery looks: `use_mdns` (multicast on the network) and the local
/// registry file `registry_path` (NULL: the default, `<temp dir>/_pyme-http.sqlite`,
/// also after another path or `""` was set; `""`: no registry). Call after
/// `streamer_options_set_serverfilter`. Hosts that cannot pass a NULL pointer
/// (LabVIEW) use `streamer_options_set_discovery_default_registry`.
/// Consumes nothing.
///
/// # Safety
/// `options` is NULL or a valid handle; `registry_path` is NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn streamer_options_set_discovery_sources(
    options: *mut PymeStreamerOptions,
    use_mdns: i32,
    registry_path: *const c_char,
) -> i32 {
    ffi_panic_boundary! {
        let options = try_handle_mut!(options);
        let registry = if registry_path.is_null() {
            Registry::Default
        } else {
            match c_string!(registry_path) {
                Ok("") => Registry::None,
                Ok(path) => Registry::Path(path.into()),
                Err(failure) => return options.last_error.fail(failure),
            }
        };
        set_discovery_sources(options, use_mdns != 0, registry)
    }
}

/// Where discovery looks: `use_mdns` (multicast on the network) and the default
/// local registry (`<temp dir>/_pyme-http.sqlite`): the same as
/// `streamer_options_set_discovery_sources` with a NULL `registry_path`, for hosts
/// that cannot pass a NULL pointer (a LabVIEW string is never NULL, and `""` means
/// no registry). Call after `streamer_options_set_serverfilter`.
/// Consumes nothing.
///
/// # Safety
/// `options` is NULL or a valid handle.
#[no_mangle]
pub unsafe extern "C" fn streamer_options_set_discovery_default_registry(
    options: *mut PymeStreamerOptions,
    use_mdns: i32,
) -> i32 {
    ffi_panic_boundary! {
        let options = try_handle_mut!(options);
        set_discovery_sources(options, use_mdns != 0, Registry::Default)
    }
}

/// Which local registry discovery reads.
enum Registry {
    Default,
    None,
    Path(std::path::PathBuf),
}

fn set_discovery_sources(
    options: &mut PymeStreamerOptions,
    use_mdns: bool,
    registry: Registry,
) -> i32 {
    match options.core.discovery_options_mut() {
        Some(discovery) => {
            discovery.use_mdns = use_mdns;
            match registry {
                Registry::Default => {
                    discovery.use_registry = true;
                    discovery.registry_path = crate::discovery::registry::default_path();
                }
                Registry::None => discovery.use_registry = false,
                Registry::Path(path) => {
                    discovery.use_registry = true;
                    discovery.registry_path = path;
                }
            }
            STREAMER_OK
        }
        None => options
            .last_error
            .set(STREAMER_ERR_INVALID_ARGUMENT, "set a serverfilter first"),
    }
}

/// Copies the message of the last failure of a call on these options (or of
/// `streamer_new` / `stream_new` with them) into `buf`, as `streamer_last_error`.
/// Consumes nothing.
///
/// # Safety
/// `options` is NULL or a valid handle; `buf` is NULL (with `buf_len` 0) or
/// points to `buf_len` writable bytes; `out_len` is NULL or valid.
#[no_mangle]
pub unsafe extern "C" fn streamer_options_last_error(
    options: *const PymeStreamerOptions,
    buf: *mut c_char,
    buf_len: usize,
    out_len: *mut usize,
) -> i32 {
    ffi_panic_boundary! {
        let options = try_handle!(options);
        // SAFETY: `buf` and `out_len` as the contract says.
        unsafe { options.last_error.copy_out(buf, buf_len, out_len) }
    }
}

impl PymeStreamerOptions {
    /// The core options for one new handle: the C completion (if any) wrapped so
    /// that, inside it, `*_last_error` gives the failed file's message.
    pub(crate) fn for_handle(&self, last_error: &LastError) -> crate::StreamerOptions {
        let completion = self.completion;
        let last_error = last_error.clone();
        self.core.clone().on_complete(move |outcome| {
            // Recorded for the library thread that runs the callback: only the
            // callback can read it (`*_last_error` is per thread).
            let Some(completion) = &completion else {
                return;
            };
            if let crate::OutcomeResult::Failed(error) = outcome.result {
                last_error.error(error);
            }
            completion.call(outcome);
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry_of(options: *mut PymeStreamerOptions) -> (bool, std::path::PathBuf, bool) {
        // SAFETY: a live handle made by the test.
        let options = unsafe { &mut *options };
        let discovery = options.core.discovery_options_mut().unwrap();
        (
            discovery.use_registry,
            discovery.registry_path.clone(),
            discovery.use_mdns,
        )
    }

    #[test]
    fn the_memory_limit_reaches_the_options_and_null_is_refused() {
        let mut options = std::ptr::null_mut();
        // SAFETY: the handle is made here, used from this thread and freed at the end.
        unsafe {
            assert_eq!(streamer_options_new(&mut options), STREAMER_OK);
            assert_eq!(
                (*options).core.memory_limit,
                crate::options::DEFAULT_MEMORY_LIMIT
            );
            for bytes in [0, 1, 123 << 20, u64::MAX] {
                assert_eq!(
                    streamer_options_set_memory_limit(options, bytes),
                    STREAMER_OK
                );
                assert_eq!((*options).core.memory_limit, bytes);
            }
            assert_eq!(
                streamer_options_set_memory_limit(std::ptr::null_mut(), 1),
                STREAMER_ERR_NULL_ARGUMENT
            );
            streamer_options_free(options);
        }
    }

    #[test]
    fn the_discovery_period_reaches_the_options_and_null_is_refused() {
        let mut options = std::ptr::null_mut();
        // SAFETY: the handle is made here, used from this thread and freed at the end.
        unsafe {
            assert_eq!(streamer_options_new(&mut options), STREAMER_OK);
            assert_eq!(
                (*options).core.discovery_period,
                crate::options::DEFAULT_DISCOVERY_PERIOD
            );
            for ms in [0, 200, u32::MAX] {
                assert_eq!(
                    streamer_options_set_discovery_period_ms(options, ms),
                    STREAMER_OK
                );
                assert_eq!(
                    (*options).core.discovery_period,
                    Duration::from_millis(ms.into())
                );
            }
            assert_eq!(
                streamer_options_set_discovery_period_ms(std::ptr::null_mut(), 1),
                STREAMER_ERR_NULL_ARGUMENT
            );
            streamer_options_free(options);
        }
    }

    /// The default registry comes back after "" (none) or another path, with
    /// NULL and with the setter that needs no NULL (LabVIEW).
    #[test]
    fn the_default_registry_can_be_asked_for_with_and_without_null() {
        let default = crate::discovery::registry::default_path();
        let mut options = std::ptr::null_mut();
        // SAFETY: the handle is made here, used from this thread and freed at the end.
        unsafe {
            assert_eq!(streamer_options_new(&mut options), STREAMER_OK);
            assert_eq!(
                streamer_options_set_serverfilter(options, c"cluster".as_ptr()),
                STREAMER_OK
            );
            assert_eq!(
                streamer_options_set_discovery_sources(options, 1, c"".as_ptr()),
                STREAMER_OK
            );
            assert!(!registry_of(options).0);
            assert_eq!(
                streamer_options_set_discovery_default_registry(options, 0),
                STREAMER_OK
            );
            assert_eq!(registry_of(options), (true, default.clone(), false));
            assert_eq!(
                streamer_options_set_discovery_sources(options, 1, c"/elsewhere.sqlite".as_ptr()),
                STREAMER_OK
            );
            assert_eq!(
                registry_of(options),
                (true, "/elsewhere.sqlite".into(), true)
            );
            assert_eq!(
                streamer_options_set_discovery_sources(options, 1, c"".as_ptr()),
                STREAMER_OK
            );
            assert_eq!(
                streamer_options_set_discovery_sources(options, 1, std::ptr::null()),
                STREAMER_OK
            );
            assert_eq!(registry_of(options), (true, default, true));
            streamer_options_free(options);
        }
    }
}
