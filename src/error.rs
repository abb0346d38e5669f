//! The errors of the streaming client, one enum for the whole core.
//!
//! `ffi/` maps each variant to one C status code; nothing else converts them.

use crate::filter::FilterError;
use crate::name::NameError;

/// Everything that can go wrong for a streamer, a stream or one file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The name cannot be sent (see [`crate::name`]); nothing was queued.
    #[error("invalid file name {name:?}: {reason}")]
    InvalidName { name: String, reason: NameError },
    /// A streamer needs at least one server.
    #[error("no servers given")]
    NoServers,
    /// A server address is not `host:port`.
    #[error("invalid server address {0:?}: expected host:port")]
    BadServerAddress(String),
    /// A server did not accept a connection.
    #[error("cannot connect to server {server}: {detail}")]
    Connect { server: String, detail: String },
    /// The distribution function chose a server that does not exist; nothing was queued.
    #[error("distribution chose server {chosen} but there are {n_servers} servers")]
    DistributionOutOfRange { chosen: usize, n_servers: usize },
    /// `put_stream` named a stream that does not exist; nothing was queued.
    #[error("no stream {index}: there are {n_servers} streams")]
    NoSuchStream { index: usize, n_servers: usize },
    /// The queue stayed full until the put timeout; nothing was queued.
    #[error("queue for server {server} is full ({files} files, {bytes} bytes)")]
    QueueFull {
        server: String,
        files: usize,
        bytes: u64,
    },
    /// The streamer's memory budget ([`crate::StreamerOptions::memory_limit`])
    /// stayed full until the put timeout; nothing was queued. The C status is
    /// the full queue's.
    #[error("the streamer's memory budget is full ({held} of {limit} bytes held for files)")]
    MemoryFull { held: u64, limit: u64 },
    /// The process cannot open the descriptors the streamer needs (checked
    /// at start, against `RLIMIT_NOFILE`); nothing was opened.
    #[error("{0}")]
    Limits(String),
    /// The interrupt check ([`crate::StreamerOptions::interrupt_check`]) ended
    /// a put's wait for room; nothing was queued.
    #[error("interrupted while waiting for room in the queue for server {server}")]
    Interrupted { server: String },
    /// The streamer or stream is closing or closed; nothing was queued.
    #[error("the stream is closed")]
    Closed,
    /// The server's connection failed earlier; nothing was queued.
    #[error("server {server} is down: {detail}")]
    ServerDown { server: String, detail: String },
    /// The filter refused the file; nothing was sent for it.
    #[error("filter failed for this file: {0}")]
    Filter(#[from] FilterError),
    /// The server answered with a non-2xx status.
    #[error("server {server} answered {status}: {detail}")]
    Http {
        server: String,
        status: u16,
        detail: String,
    },
    /// The connection failed while the file was queued or waiting for its answer.
    #[error("connection to {server} failed before the answer: {detail}")]
    ConnectionLost { server: String, detail: String },
    /// No server of the cluster could be found.
    #[error(transparent)]
    Discovery(#[from] crate::discovery::DiscoveryError),
    /// No server was live until `close`: the file waits in the spill folder,
    /// for a later streamer given the same folder.
    /// The server already holds a file under this name (storage is
    /// write-once), and it is not known to hold these very bytes.
    #[error("{server}: the name is taken: {detail}")]
    NameTaken { server: String, detail: String },
    #[error("not delivered: kept in the spill folder at {path}")]
    Spilled { path: String },
    /// The spill folder could not be used.
    #[error("spill folder: {0}")]
    SpillFolder(String),
    /// Another streamer or stream, in this process or another, has the spill
    /// folder open, or a data server uses the folder as its storage root (it
    /// holds the folder's lock file `.pyme-lock`); `holder` says which.
    #[error("spill folder {folder} is in use by {holder} (its lock file .pyme-lock is held)")]
    SpillBusy { folder: String, holder: String },
    /// Called in a child process forked while this streamer or stream was
    /// open: its threads and connections belong to the parent; nothing was done.
    #[error(
        "this streamer was opened before the process forked: it belongs to the parent process"
    )]
    Forked,
    /// `flush` ran out of time with files still waiting for their outcome.
    #[error("timed out with {pending} files still waiting for their outcome")]
    FlushTimeout { pending: u64 },
    /// Called from inside a completion callback, where waiting for files to
    /// end could wait for that very callback; nothing was done.
    #[error(
        "{call} cannot be called from inside a completion callback (it would wait for itself)"
    )]
    InCallback { call: &'static str },
    /// A bounded close reached its limit: the file was still pending and was
    /// given up (it may or may not have been stored).
    #[error("given up by a close bounded to {limit_ms} ms")]
    CloseTimeout { limit_ms: u64 },
}
