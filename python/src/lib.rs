//! `pyme_streaming._native`: the Python binding of the pyme-streaming library,
//! with the interface of PYME's `PYME.IO.cluster_streaming`.
//!
//! In scope: converting Python arguments to the library's calls and its errors
//! to Python exceptions, holding Python objects (zero-copy buffers, callbacks)
//! for as long as the library needs them, and never holding the GIL while the
//! library waits. Out of scope: anything the library does (sockets, queues,
//! failover); this crate uses only its public Rust API. The Python-level
//! helpers (`install()`, the computer-name default) live in
//! `pyme_streaming/__init__.py`.

mod buffer;
mod client;
mod policies;

use pyme_streaming::Error;
use pyo3::create_exception;
use pyo3::prelude::*;

create_exception!(
    pyme_streaming,
    StreamingError,
    pyo3::exceptions::PyException,
    "Base class of every error raised by pyme_streaming."
);
create_exception!(
    pyme_streaming,
    InvalidNameError,
    StreamingError,
    "The file name cannot be sent; nothing was queued."
);
create_exception!(
    pyme_streaming,
    ConnectError,
    StreamingError,
    "A server did not accept a connection."
);
create_exception!(
    pyme_streaming,
    QueueFullError,
    StreamingError,
    "The queue stayed full until the put timeout; nothing was queued."
);
create_exception!(
    pyme_streaming,
    ClosedError,
    StreamingError,
    "The streamer or stream is closed; nothing was queued."
);
create_exception!(
    pyme_streaming,
    ServerDownError,
    StreamingError,
    "No live server could take the file; nothing was queued."
);
create_exception!(
    pyme_streaming,
    DistributionError,
    StreamingError,
    "The distribution function chose a server that does not exist; nothing was queued."
);
create_exception!(
    pyme_streaming,
    NoSuchStreamError,
    StreamingError,
    "put_stream named a stream that does not exist; nothing was queued."
);
create_exception!(
    pyme_streaming,
    FlushTimeoutError,
    StreamingError,
    "flush ran out of time with files still waiting for their outcome."
);
create_exception!(
    pyme_streaming,
    DiscoveryError,
    StreamingError,
    "No server of the cluster could be found."
);
create_exception!(
    pyme_streaming,
    SpillFolderError,
    StreamingError,
    "The spill folder could not be used."
);
create_exception!(
    pyme_streaming,
    SpillBusyError,
    SpillFolderError,
    "The spill folder is in use by another Streamer or Stream (in this process or another)."
);
create_exception!(
    pyme_streaming,
    ForkedError,
    StreamingError,
    "Called in a child process forked while this Streamer or Stream was open: it belongs to the parent; nothing was done."
);

create_exception!(
    pyme_streaming,
    LimitsError,
    StreamingError,
    "The process may not open the descriptors the streamer needs for its servers (raise `ulimit -n`); nothing was opened."
);

/// The Python exception for a library error.
pub(crate) fn to_py_err(error: Error) -> PyErr {
    let message = error.to_string();
    match error {
        Error::InvalidName { .. } => InvalidNameError::new_err(message),
        Error::NoServers | Error::BadServerAddress(_) => {
            pyo3::exceptions::PyValueError::new_err(message)
        }
        Error::Connect { .. } => ConnectError::new_err(message),
        Error::DistributionOutOfRange { .. } => DistributionError::new_err(message),
        Error::NoSuchStream { .. } => NoSuchStreamError::new_err(message),
        Error::QueueFull { .. } | Error::MemoryFull { .. } => QueueFullError::new_err(message),
        Error::Limits(_) => LimitsError::new_err(message),
        Error::Closed => ClosedError::new_err(message),
        Error::ServerDown { .. } => ServerDownError::new_err(message),
        Error::FlushTimeout { .. } => FlushTimeoutError::new_err(message),
        Error::Discovery(_) => DiscoveryError::new_err(message),
        Error::SpillFolder(_) => SpillFolderError::new_err(message),
        Error::SpillBusy { .. } => SpillBusyError::new_err(message),
        Error::Forked => ForkedError::new_err(message),
        _ => StreamingError::new_err(message),
    }
}

/// How servers are found by `serverfilter`: PYME's way (mDNS and the local
/// registry), or without mDNS (no multicast), or with another registry file.
pub(crate) fn discovery_options(
    serverfilter: &str,
    mdns: bool,
    registry: Option<std::path::PathBuf>,
) -> pyme_streaming::discovery::DiscoveryOptions {
    let mut options = pyme_streaming::discovery::DiscoveryOptions::for_cluster(serverfilter);
    options.use_mdns = mdns;
    if let Some(registry) = registry {
        options.registry_path = registry;
    }
    options
}

/// PYME's `n_cluster_servers(serverfilter)`: how many live data servers of the
/// cluster named `serverfilter` are found (mDNS and the local registry; 0 when
/// none is). `mdns=False` looks in the registry only.
#[pyfunction]
#[pyo3(signature = (serverfilter, *, mdns=true, registry=None))]
fn n_cluster_servers(
    py: Python<'_>,
    serverfilter: &str,
    mdns: bool,
    registry: Option<std::path::PathBuf>,
) -> PyResult<usize> {
    let options = discovery_options(serverfilter, mdns, registry);
    match py.detach(move || pyme_streaming::discovery::find_servers(&options)) {
        Ok(servers) => Ok(servers.len()),
        Err(pyme_streaming::discovery::DiscoveryError::NoServers { .. }) => Ok(0),
        Err(error) => Err(to_py_err(Error::Discovery(error))),
    }
}

/// This computer's name, as PYME's default `serverfilter`.
#[pyfunction]
fn computer_name() -> String {
    pyme_streaming::discovery::computer_name()
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    client::note_main_thread(py)?;
    m.add("__version__", pyme_streaming::VERSION)?;
    m.add_class::<client::PyStreamer>()?;
    m.add_class::<client::PyStream>()?;
    m.add_class::<client::PyOutcome>()?;
    m.add_class::<policies::PyDistribution>()?;
    m.add_class::<policies::PyFilter>()?;
    m.add_class::<policies::PyPzfFilter>()?;
    m.add_class::<policies::PyGzipFilter>()?;
    m.add_function(wrap_pyfunction!(n_cluster_servers, m)?)?;
    m.add_function(wrap_pyfunction!(computer_name, m)?)?;
    m.add_function(wrap_pyfunction!(client::close_all, m)?)?;
    m.add("StreamingError", py.get_type::<StreamingError>())?;
    m.add("InvalidNameError", py.get_type::<InvalidNameError>())?;
    m.add("ConnectError", py.get_type::<ConnectError>())?;
    m.add("QueueFullError", py.get_type::<QueueFullError>())?;
    m.add("ClosedError", py.get_type::<ClosedError>())?;
    m.add("ServerDownError", py.get_type::<ServerDownError>())?;
    m.add("DistributionError", py.get_type::<DistributionError>())?;
    m.add("NoSuchStreamError", py.get_type::<NoSuchStreamError>())?;
    m.add("FlushTimeoutError", py.get_type::<FlushTimeoutError>())?;
    m.add("DiscoveryError", py.get_type::<DiscoveryError>())?;
    m.add("SpillFolderError", py.get_type::<SpillFolderError>())?;
    m.add("SpillBusyError", py.get_type::<SpillBusyError>())?;
    m.add("ForkedError", py.get_type::<ForkedError>())?;
    m.add("LimitsError", py.get_type::<LimitsError>())?;
    Ok(())
}
