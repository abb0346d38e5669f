//! The client: the path of a file from `put` to its acknowledgement.
//!
//! ```text
//! Streamer::put ─► name check ─► distribution ─► Cluster::enqueue ─► Link queue
//!      (streamer.rs)                (distribution.rs)  (cluster.rs)     (link.rs)
//!                                                                        │
//!   session.rs, sender (link thread): filter ─► protocol: PUT head + body ─► socket
//!   session.rs, receiver thread: protocol: parse answer ◄──────────────── socket
//!                                        │
//!   Cluster::finish ─► Outcome ─► completion callback, statistics (outcome.rs)
//!
//!   connection failed ─► Cluster::reroute ─► another live link, or spill.rs, or failed
//!
//!   with a serverfilter, membership.rs (discovery thread), every period:
//!   found ─► new Link appended (links.rs) + its thread; gone ─► Link withdrawn (down)
//! ```
//!
//! One word for one idea: a **link** is one server of a streamer: its queue,
//! its files in flight, its connection (one at a time) and its thread. A
//! **session** is one connection of a link. A **job** is one file on its way.
//!
//! In scope: queues and their limits, the memory budget, the descriptor
//! check, pipelined connections, failover, the spill folder, retries,
//! timeouts, outcomes and statistics, servers joining and leaving a running
//! streamer (live membership).
//! Out of scope: the C ABI (`crate::ffi`), the data server (`crate::server`),
//! finding servers (`crate::discovery`), the PZF codec (`crate::pzf`), and which
//! names are valid (`crate::name`, shared with the server).

#[allow(unsafe_code)] // touching fresh pages and prefetching in the copying put
pub(crate) mod buffers;
mod cluster;
pub mod distribution;
pub mod filter;
#[allow(unsafe_code)] // fcntl(F_OFD_SETLK) / LockFileEx
mod folder_lock;
mod folder_sync;
#[allow(unsafe_code)] // pthread_atfork and close(2) in the child handler
pub mod fork;
mod job;
#[allow(unsafe_code)] // getrlimit
mod limits;
mod link;
mod links;
mod membership;
pub mod options;
pub mod outcome;
pub mod protocol;
mod resolve;
pub mod server_state;
pub mod server_stats;
mod session;
mod spill;
pub mod stream;
pub mod streamer;
