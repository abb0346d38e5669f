//! pyme-streaming: stream files (above all camera frames) to a cluster of PYME data
//! servers over persistent, pipelined HTTP/1.1 connections, with nothing lost.
//!
//! How data flows, one file per module:
//!
//! ```text
//! Streamer::put ──► distribution ──► Stream queue ──► sender thread: filter ──► protocol (PUT on the wire)
//!                                                                                    │
//!  completion callback ◄── Outcome ◄── receiver thread: protocol (parse answer) ◄────┘
//! ```
//!
//! - [`name`]: which file names may be sent.
//! - [`distribution`]: which server gets a file.
//! - [`filter`]: what is done to a file's bytes before they are sent.
//! - [`stream`]: one server: its queue, its connection, its sender and receiver threads.
//! - [`streamer`]: many servers behind one `put`, and failover between them.
//! - [`options`]: how a streamer is built: servers, policies, limits, timeouts.
//! - [`protocol`]: the HTTP/1.1 bytes, written and parsed (no sockets).
//! - [`outcome`]: what happened to each file, and the statistics.
//! - [`pzf`]: the PZF frame format and its Huffman coding.
//! - `spill`: files waiting on disk while no server is live.
//! - [`server`]: a PYME-compatible data server.

mod buffers;
pub mod discovery;
pub mod distribution;
pub mod error;
pub mod ffi;
pub mod filter;
pub mod name;
pub mod options;
pub mod outcome;
pub mod protocol;
pub mod pzf;
pub mod server;
mod spill;
pub mod stream;
pub mod streamer;
mod threads;

pub use bytes::Bytes;
pub use distribution::{BuiltinDistribution, Distribution, Fixed, NameHash, Random, RoundRobin};
pub use error::Error;
pub use filter::{FileInfo, Filter, FilterError, FnFilter, Identity};
pub use options::StreamerOptions;
pub use outcome::{Outcome, OutcomeResult, Stats};
pub use stream::Stream;
pub use streamer::Streamer;

/// The version of this library, as in Cargo.toml.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
