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
//! - [`streamer`]: many servers behind one `put`.
//! - [`protocol`]: the HTTP/1.1 bytes, written and parsed (no sockets).
//! - [`outcome`]: what happened to each file, and the statistics.
//! - [`pzf`]: the PZF frame format and its Huffman coding.
//! - [`server`]: a PYME-compatible data server.

pub mod distribution;
pub mod error;
pub mod filter;
pub mod name;
pub mod outcome;
pub mod protocol;
pub mod pzf;
pub mod server;
pub mod stream;
pub mod streamer;

/// The version of this library, as in Cargo.toml.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
