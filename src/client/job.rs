//! One file on its way from `put` to its outcome, and a file a link refused.
//!
//! Out of scope: queues, sockets, outcomes (a `Job` is only carried).

use bytes::Bytes;

use super::buffers::Reservation;
use crate::Error;

/// One file on its way.
pub(crate) struct Job {
    pub name: Box<str>,
    pub index: Option<i64>,
    pub data: Bytes,
    /// The end-of-stream sentinel: sent with `Connection: close`, nothing after it.
    pub last: bool,
    /// Times it was answered 5xx and sent again on the same server.
    pub retries: u32,
    /// Servers it was moved away from after repeated 5xx answers.
    pub moves: u32,
    /// Connections that ended while it was in flight (written, not answered).
    pub interrupted: u32,
    /// It was written to a connection that then failed: it may have landed.
    pub maybe_stored: bool,
    /// It comes from the spill folder, at this path (removed once delivered).
    pub spill_path: Option<std::path::PathBuf>,
    /// Its room in the memory budget, given back when the job is dropped
    /// (`None` when its bytes hold it: a pooled copy).
    pub room: Option<Reservation>,
}

impl Job {
    pub fn new(name: &str, data: Bytes, index: Option<i64>) -> Job {
        Job {
            name: name.into(),
            index,
            data,
            last: false,
            retries: 0,
            moves: 0,
            interrupted: 0,
            maybe_stored: false,
            spill_path: None,
            room: None,
        }
    }

    /// A file holding `room` in the memory budget (see `Job::room`).
    pub fn holding(mut self, room: Option<Reservation>) -> Job {
        self.room = room;
        self
    }

    pub fn len(&self) -> u64 {
        self.data.len() as u64
    }
}

/// A file `push` did not take, and why.
pub(crate) struct Refused {
    pub error: Error,
    pub job: Job,
    /// Refused because the server was silent with a full queue while the
    /// put waited (`error` says the queue is full): the file may go to
    /// another server; it is not a drop.
    pub passed_over: bool,
}

impl Refused {
    pub fn new(error: Error, job: Job) -> Box<Refused> {
        Box::new(Refused {
            error,
            job,
            passed_over: false,
        })
    }
}
