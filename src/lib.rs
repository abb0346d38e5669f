//! pyme-streaming: stream files (above all camera frames) to a cluster of PYME data
//! servers over persistent, pipelined HTTP/1.1 connections, with nothing lost.
//!
//! - [`client`]: the path of a file from `put` to its acknowledgement (its
//!   module doc has the picture): [`Streamer`], [`Stream`], [`StreamerOptions`],
//!   the distributions, the filters, the wire protocol, outcomes and statistics.
//! - [`name`]: which file names may be sent and stored (shared with the server).
//! - [`error`]: the library's errors.
//! - [`pzf`]: the PZF frame format and its Huffman coding.
//! - [`server`]: a PYME-compatible data server.
//! - [`monitor`]: the cluster monitor (`pyme-stream monitor`): polling, page, metrics.
//! - [`prometheus`]: the Prometheus text format (`/__metrics`, the monitor's `/metrics`).
//! - [`discovery`]: finding the servers of a cluster (mDNS and the local registry).
//! - [`ffi`]: the C ABI, which only converts and calls the rest.

#![deny(unsafe_code)]
#![deny(unsafe_op_in_unsafe_fn)]

pub mod client;
pub mod discovery;
pub mod error;
#[allow(unsafe_code)] // the C ABI: raw pointers from C, each with a SAFETY line
pub mod ffi;
#[allow(unsafe_code)] // fcntl(F_OFD_SETLK) / flock / LockFileEx
mod lock_file;
pub mod monitor;
pub mod name;
pub mod prometheus;
pub mod pzf;
pub mod server;
#[allow(unsafe_code)] // one system call to set the scheduling policy
mod threads;

pub use client::{
    distribution, filter, fork, options, outcome, protocol, server_state, server_stats, stream,
    streamer,
};

pub use bytes::Bytes;
pub use distribution::{BuiltinDistribution, Distribution, Fixed, NameHash, Random, RoundRobin};
pub use error::Error;
pub use filter::{FileInfo, Filter, FilterError, FnFilter, Identity};
pub use options::StreamerOptions;
pub use outcome::{Outcome, OutcomeResult, Stats};
pub use server_state::ServerState;
pub use server_stats::ServerStats;
pub use stream::Stream;
pub use streamer::{StatsProbe, Streamer};
pub use threads::NO_SCHED_BATCH_ENV;

/// The version of this library, as in Cargo.toml.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
