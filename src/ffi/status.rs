//! The status codes every fallible C function returns, their text, and the one
//! place where the core's [`Error`] becomes a code.
//!
//! `STREAMER_OK` is 0; every error is a negative constant. Codes are never
//! renumbered: a new error gets the next free number. C sees them as the enum
//! `PymeStreamerStatus` (a LabVIEW ring); functions return them as `int32_t`.

use std::ffi::{c_char, CStr};

use crate::Error;

/// The status codes: what every fallible function returns (as `int32_t`), and
/// the `status` a completion callback receives.
#[repr(C)]
#[allow(non_camel_case_types, clippy::upper_case_acronyms)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PymeStreamerStatus {
    /// Success.
    STREAMER_OK = 0,
    /// A pointer argument was NULL.
    STREAMER_ERR_NULL_ARGUMENT = -1,
    /// An argument is out of its range (a zero port, an unknown kind, a zero limit...).
    STREAMER_ERR_INVALID_ARGUMENT = -2,
    /// A string argument is not valid UTF-8.
    STREAMER_ERR_UTF8 = -3,
    /// The file name cannot be sent (it breaks the rules the data server applies,
    /// shared in `pyme_streaming::name`); nothing was queued.
    STREAMER_ERR_INVALID_NAME = -4,
    /// The options name no server.
    STREAMER_ERR_NO_SERVERS = -5,
    /// A server address is not a valid `host:port`.
    STREAMER_ERR_BAD_SERVER_ADDRESS = -6,
    /// A server did not accept a connection.
    STREAMER_ERR_CONNECT = -7,
    /// The distribution chose a server index >= the number of servers; nothing was queued.
    STREAMER_ERR_DISTRIBUTION_OUT_OF_RANGE = -8,
    /// `streamer_put_stream` named a server index that does not exist; nothing was queued.
    STREAMER_ERR_NO_SUCH_STREAM = -9,
    /// The queue stayed full for the whole put timeout (at once for a put from a
    /// callback); nothing was queued.
    STREAMER_ERR_QUEUE_FULL = -10,
    /// The streamer or stream is closing, closed or finalized; nothing was queued.
    STREAMER_ERR_CLOSED = -11,
    /// The chosen server's connection failed earlier; nothing was queued.
    STREAMER_ERR_SERVER_DOWN = -12,
    /// The filter failed for this file (a filter callback returned non-zero); nothing was sent for it.
    STREAMER_ERR_FILTER = -13,
    /// The server answered with a non-2xx HTTP status (for example 405: the file exists).
    STREAMER_ERR_HTTP = -14,
    /// The connection failed before the file's answer arrived.
    STREAMER_ERR_CONNECTION_LOST = -15,
    /// The wait ended before every file had its outcome (`streamer_flush`).
    STREAMER_ERR_TIMEOUT = -16,
    /// The close (or finalize) completed, but not every file was acknowledged.
    STREAMER_ERR_FILES_FAILED = -17,
    /// An internal error (a bug): the library caught a panic. The handle may be unusable.
    STREAMER_ERR_PANIC = -18,
    /// The requested feature is not built into this library.
    STREAMER_ERR_UNSUPPORTED = -19,
    /// No server of the cluster could be found by its serverfilter.
    STREAMER_ERR_DISCOVERY = -20,
    /// No server came back before close: the file waits in the spill folder.
    STREAMER_ERR_SPILLED = -21,
    /// The spill folder could not be used.
    STREAMER_ERR_SPILL_FOLDER = -22,
    /// Called from inside a callback of this library, where it would wait for that
    /// very callback (`*_flush`, `*_close*`, `stream_finalize`); nothing was done and
    /// the handle stays valid.
    STREAMER_ERR_IN_CALLBACK = -23,
    /// A bounded close reached its limit: the files still pending were given up (a
    /// file's completion status when it was one of them; the close's status then).
    STREAMER_ERR_CLOSE_TIMEOUT = -24,
    /// As `STREAMER_ERR_CLOSE_TIMEOUT`, and a library thread was still busy (inside
    /// a callback or filter that began before the limit, or reconnecting): it was
    /// left to end on its own; a running callback's `user_data` must stay valid
    /// until it returns. No other callback starts.
    STREAMER_ERR_CLOSE_DETACHED = -25,
    /// The server already holds other bytes under the file's name (storage is
    /// write-once), or a file that may have landed before could not be shown to
    /// hold the same bytes: not stored (a spilled file stays in the folder).
    STREAMER_ERR_NAME_TAKEN = -26,
    /// The spill folder is in use by another streamer or stream, in this process
    /// or another, or is a data server's storage root (its lock file
    /// `.pyme-lock` is held): nothing was opened.
    STREAMER_ERR_SPILL_BUSY = -27,
    /// Called in a child process forked while this handle was open: the handle
    /// belongs to the parent (its threads do not exist in the child). Nothing
    /// was done; `*_close`/`*_free` there only release the handle's memory.
    STREAMER_ERR_FORKED = -28,
    /// The process may not open the descriptors (sockets, files) the streamer
    /// needs for its servers (`RLIMIT_NOFILE`, checked at start): nothing was
    /// opened. The message says how many are needed and what to raise (`ulimit -n`).
    STREAMER_ERR_LIMITS = -29,
}

pub(crate) const STREAMER_OK: i32 = PymeStreamerStatus::STREAMER_OK as i32;
pub(crate) const STREAMER_ERR_NULL_ARGUMENT: i32 =
    PymeStreamerStatus::STREAMER_ERR_NULL_ARGUMENT as i32;
pub(crate) const STREAMER_ERR_INVALID_ARGUMENT: i32 =
    PymeStreamerStatus::STREAMER_ERR_INVALID_ARGUMENT as i32;
pub(crate) const STREAMER_ERR_UTF8: i32 = PymeStreamerStatus::STREAMER_ERR_UTF8 as i32;
pub(crate) const STREAMER_ERR_INVALID_NAME: i32 =
    PymeStreamerStatus::STREAMER_ERR_INVALID_NAME as i32;
pub(crate) const STREAMER_ERR_NO_SERVERS: i32 = PymeStreamerStatus::STREAMER_ERR_NO_SERVERS as i32;
pub(crate) const STREAMER_ERR_BAD_SERVER_ADDRESS: i32 =
    PymeStreamerStatus::STREAMER_ERR_BAD_SERVER_ADDRESS as i32;
pub(crate) const STREAMER_ERR_CONNECT: i32 = PymeStreamerStatus::STREAMER_ERR_CONNECT as i32;
pub(crate) const STREAMER_ERR_DISTRIBUTION_OUT_OF_RANGE: i32 =
    PymeStreamerStatus::STREAMER_ERR_DISTRIBUTION_OUT_OF_RANGE as i32;
pub(crate) const STREAMER_ERR_NO_SUCH_STREAM: i32 =
    PymeStreamerStatus::STREAMER_ERR_NO_SUCH_STREAM as i32;
pub(crate) const STREAMER_ERR_QUEUE_FULL: i32 = PymeStreamerStatus::STREAMER_ERR_QUEUE_FULL as i32;
pub(crate) const STREAMER_ERR_CLOSED: i32 = PymeStreamerStatus::STREAMER_ERR_CLOSED as i32;
pub(crate) const STREAMER_ERR_SERVER_DOWN: i32 =
    PymeStreamerStatus::STREAMER_ERR_SERVER_DOWN as i32;
pub(crate) const STREAMER_ERR_FILTER: i32 = PymeStreamerStatus::STREAMER_ERR_FILTER as i32;
pub(crate) const STREAMER_ERR_HTTP: i32 = PymeStreamerStatus::STREAMER_ERR_HTTP as i32;
pub(crate) const STREAMER_ERR_CONNECTION_LOST: i32 =
    PymeStreamerStatus::STREAMER_ERR_CONNECTION_LOST as i32;
pub(crate) const STREAMER_ERR_TIMEOUT: i32 = PymeStreamerStatus::STREAMER_ERR_TIMEOUT as i32;
pub(crate) const STREAMER_ERR_FILES_FAILED: i32 =
    PymeStreamerStatus::STREAMER_ERR_FILES_FAILED as i32;
pub(crate) const STREAMER_ERR_PANIC: i32 = PymeStreamerStatus::STREAMER_ERR_PANIC as i32;
pub(crate) const STREAMER_ERR_UNSUPPORTED: i32 =
    PymeStreamerStatus::STREAMER_ERR_UNSUPPORTED as i32;
pub(crate) const STREAMER_ERR_DISCOVERY: i32 = PymeStreamerStatus::STREAMER_ERR_DISCOVERY as i32;
pub(crate) const STREAMER_ERR_SPILLED: i32 = PymeStreamerStatus::STREAMER_ERR_SPILLED as i32;
pub(crate) const STREAMER_ERR_SPILL_FOLDER: i32 =
    PymeStreamerStatus::STREAMER_ERR_SPILL_FOLDER as i32;
pub(crate) const STREAMER_ERR_IN_CALLBACK: i32 =
    PymeStreamerStatus::STREAMER_ERR_IN_CALLBACK as i32;
pub(crate) const STREAMER_ERR_CLOSE_TIMEOUT: i32 =
    PymeStreamerStatus::STREAMER_ERR_CLOSE_TIMEOUT as i32;
pub(crate) const STREAMER_ERR_CLOSE_DETACHED: i32 =
    PymeStreamerStatus::STREAMER_ERR_CLOSE_DETACHED as i32;
pub(crate) const STREAMER_ERR_NAME_TAKEN: i32 = PymeStreamerStatus::STREAMER_ERR_NAME_TAKEN as i32;
pub(crate) const STREAMER_ERR_SPILL_BUSY: i32 = PymeStreamerStatus::STREAMER_ERR_SPILL_BUSY as i32;
pub(crate) const STREAMER_ERR_FORKED: i32 = PymeStreamerStatus::STREAMER_ERR_FORKED as i32;
pub(crate) const STREAMER_ERR_LIMITS: i32 = PymeStreamerStatus::STREAMER_ERR_LIMITS as i32;

/// The status code for a core error. The only conversion from [`Error`] to a code.
pub(crate) fn status_of(error: &Error) -> i32 {
    match error {
        Error::InvalidName { .. } => STREAMER_ERR_INVALID_NAME,
        Error::NoServers => STREAMER_ERR_NO_SERVERS,
        Error::BadServerAddress(_) => STREAMER_ERR_BAD_SERVER_ADDRESS,
        Error::Connect { .. } => STREAMER_ERR_CONNECT,
        Error::DistributionOutOfRange { .. } => STREAMER_ERR_DISTRIBUTION_OUT_OF_RANGE,
        Error::NoSuchStream { .. } => STREAMER_ERR_NO_SUCH_STREAM,
        Error::QueueFull { .. } => STREAMER_ERR_QUEUE_FULL,
        // The same policy as a full queue: the put gave up waiting for room.
        Error::MemoryFull { .. } => STREAMER_ERR_QUEUE_FULL,
        Error::Limits(_) => STREAMER_ERR_LIMITS,
        // Not reachable from C (the C API sets no interrupt check); the nearest
        // meaning: the put gave up waiting for room and queued nothing.
        Error::Interrupted { .. } => STREAMER_ERR_QUEUE_FULL,
        Error::Closed => STREAMER_ERR_CLOSED,
        Error::ServerDown { .. } => STREAMER_ERR_SERVER_DOWN,
        Error::Filter(_) => STREAMER_ERR_FILTER,
        Error::Http { .. } => STREAMER_ERR_HTTP,
        Error::ConnectionLost { .. } => STREAMER_ERR_CONNECTION_LOST,
        Error::FlushTimeout { .. } => STREAMER_ERR_TIMEOUT,
        Error::Discovery(_) => STREAMER_ERR_DISCOVERY,
        Error::Spilled { .. } => STREAMER_ERR_SPILLED,
        Error::SpillFolder(_) => STREAMER_ERR_SPILL_FOLDER,
        Error::InCallback { .. } => STREAMER_ERR_IN_CALLBACK,
        Error::CloseTimeout { .. } => STREAMER_ERR_CLOSE_TIMEOUT,
        Error::NameTaken { .. } => STREAMER_ERR_NAME_TAKEN,
        Error::SpillBusy { .. } => STREAMER_ERR_SPILL_BUSY,
        Error::Forked => STREAMER_ERR_FORKED,
    }
}

/// Every status code, for tests and for `streamer_status_str`.
pub(crate) const ALL: [(i32, &CStr); 30] = [
    (STREAMER_OK, c"ok"),
    (STREAMER_ERR_NULL_ARGUMENT, c"a pointer argument was NULL"),
    (STREAMER_ERR_INVALID_ARGUMENT, c"invalid argument"),
    (STREAMER_ERR_UTF8, c"a string argument is not valid UTF-8"),
    (STREAMER_ERR_INVALID_NAME, c"invalid file name"),
    (STREAMER_ERR_NO_SERVERS, c"no servers given"),
    (STREAMER_ERR_BAD_SERVER_ADDRESS, c"invalid server address"),
    (STREAMER_ERR_CONNECT, c"cannot connect to a server"),
    (
        STREAMER_ERR_DISTRIBUTION_OUT_OF_RANGE,
        c"the distribution chose a server that does not exist",
    ),
    (STREAMER_ERR_NO_SUCH_STREAM, c"no such stream"),
    (STREAMER_ERR_QUEUE_FULL, c"the queue is full"),
    (STREAMER_ERR_CLOSED, c"closed"),
    (
        STREAMER_ERR_SERVER_DOWN,
        c"the server's connection has failed",
    ),
    (STREAMER_ERR_FILTER, c"the filter failed"),
    (STREAMER_ERR_HTTP, c"the server answered with an HTTP error"),
    (
        STREAMER_ERR_CONNECTION_LOST,
        c"the connection failed before the answer",
    ),
    (STREAMER_ERR_TIMEOUT, c"timed out"),
    (
        STREAMER_ERR_FILES_FAILED,
        c"not every file was acknowledged",
    ),
    (STREAMER_ERR_PANIC, c"internal error (panic)"),
    (STREAMER_ERR_UNSUPPORTED, c"not supported by this build"),
    (
        STREAMER_ERR_DISCOVERY,
        c"no server of the cluster was found",
    ),
    (
        STREAMER_ERR_SPILLED,
        c"not delivered: kept in the spill folder",
    ),
    (
        STREAMER_ERR_SPILL_FOLDER,
        c"the spill folder cannot be used",
    ),
    (STREAMER_ERR_IN_CALLBACK, c"not allowed inside a callback"),
    (
        STREAMER_ERR_CLOSE_TIMEOUT,
        c"the close reached its time limit",
    ),
    (
        STREAMER_ERR_CLOSE_DETACHED,
        c"the close reached its time limit; a callback was still running",
    ),
    (
        STREAMER_ERR_NAME_TAKEN,
        c"the name is taken on the server by other bytes",
    ),
    (
        STREAMER_ERR_SPILL_BUSY,
        c"the spill folder is in use by another streamer or a data server",
    ),
    (
        STREAMER_ERR_FORKED,
        c"the handle belongs to the parent process (called after fork)",
    ),
    (
        STREAMER_ERR_LIMITS,
        c"the process may not open enough descriptors (raise ulimit -n)",
    ),
];

/// A static, NUL-terminated English description of `status`, for any value
/// (unknown codes give "unknown status"). Never NULL; never free it. Consumes nothing.
#[no_mangle]
pub extern "C" fn streamer_status_str(status: i32) -> *const c_char {
    ffi_panic_boundary! {
        ALL.iter()
            .find(|(code, _)| *code == status)
            .map_or(c"unknown status".as_ptr(), |(_, text)| text.as_ptr())
    }
}

/// The library version, `"MAJOR.MINOR.PATCH"` (static; equals
/// `PYME_STREAMING_VERSION` of the header the program was built with, unless it
/// runs against another build of the library).
/// Consumes nothing.
#[no_mangle]
pub extern "C" fn streamer_version() -> *const c_char {
    ffi_panic_boundary! {
        concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
    }
}

/// The status of a close: every file acknowledged, or some failed.
pub(super) fn status_of_stats(stats: &crate::Stats) -> i32 {
    if stats.all_acknowledged() {
        STREAMER_OK
    } else {
        STREAMER_ERR_FILES_FAILED
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_is_distinct_and_has_text() {
        for (i, (code, text)) in ALL.iter().enumerate() {
            assert!(!text.to_bytes().is_empty());
            assert!(ALL[i + 1..].iter().all(|(other, _)| other != code));
            assert!(*code <= 0);
        }
        assert_eq!(
            ALL.len() as i32,
            1 - STREAMER_ERR_LIMITS,
            "no gap in the numbering"
        );
    }
}
