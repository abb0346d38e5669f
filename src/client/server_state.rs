//! The state of one server of a streamer, defined once for the whole library:
//! [`Streamer::server_state`](crate::Streamer::server_state), the state
//! callback ([`crate::StreamerOptions::on_server_state`]), the C enum
//! `PymeServerState` and Python's `Streamer.server_state` all read it here.
//!
//! Reading a state takes no lock (two atomic loads, and a clock read only
//! while the server rests), so that it can be polled often without slowing
//! puts down. Changes are reported by the link's own threads, one call at a
//! time per server, in the order they happen.
//!
//! In scope: the states, their atomic cell, reporting changes.
//! Out of scope: deciding when a connection is up or down (see `session`), or
//! when a server rests (see `link`, `cluster`).

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};

use super::outcome::CallbackScope;

/// The state of one server of a streamer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum ServerState {
    /// Connected and taking files (also while it reconnects at once after
    /// the server ended a connection in order).
    Up = 0,
    /// Not connected: the connection was lost and the link is reconnecting;
    /// no attempt has failed yet. Puts go to other servers (failover).
    Connecting = 1,
    /// Connected, but out of the rotation for a while after its server kept
    /// answering 5xx (or 507: its disk is full). Files already queued there
    /// are still sent.
    Resting = 2,
    /// Not connected, and the last attempt to connect failed (the server is
    /// unreachable, or its name did not resolve for now): the link tries
    /// again with the reconnect backoff, until the streamer is closed. Also
    /// the state of every server once the streamer is closed.
    Down = 3,
}

impl ServerState {
    fn from_u8(value: u8) -> ServerState {
        match value {
            0 => ServerState::Up,
            1 => ServerState::Connecting,
            2 => ServerState::Resting,
            _ => ServerState::Down,
        }
    }

    /// The lower-case name: `up`, `connecting`, `resting`, `down`.
    pub fn name(self) -> &'static str {
        match self {
            ServerState::Up => "up",
            ServerState::Connecting => "connecting",
            ServerState::Resting => "resting",
            ServerState::Down => "down",
        }
    }
}

impl std::fmt::Display for ServerState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Called on every change of a server's state, with the server's index and
/// its new state. Also called once at start for every server that could not
/// be reached then ([`ServerState::Down`]); before its first call a server is
/// [`ServerState::Up`]. A server that joins during the run (live membership,
/// [`crate::StreamerOptions::discovery_period`]) gets a new index, one past
/// the last, and its first call says [`ServerState::Up`]; one that discovery
/// no longer finds is reported [`ServerState::Down`].
///
/// It runs on one of the library's threads (the link thread of that server,
/// the receiver that saw the errors that make it rest, or the discovery
/// thread that withdrew it), with the same
/// rules as the completion callback ([`crate::outcome::CompletionFn`]):
/// `stats`, `server_state` and `put` work (a put never waits there);
/// `flush`, `close` and `finalize` refuse with
/// [`crate::Error::InCallback`]. Calls for one server do not overlap and come
/// in order; calls for different servers may overlap. No call starts after a
/// bounded close reached its limit. It should return quickly.
pub type ServerStateFn = Arc<dyn Fn(usize, ServerState) + Send + Sync>;

/// The connection half of a server's state (the rest is `Link::is_resting`),
/// and the last state reported to the callback.
pub(crate) struct StateCell {
    connection: AtomicU8,
    /// A copy of `reported`, so that finding nothing new to report takes no lock.
    last_reported: AtomicU8,
    /// The last state handed to the callback (`None`: none yet, see
    /// [`StateCell::unreported`]), under a lock that only the threads
    /// reporting changes take (never a put, never a reader).
    reported: Mutex<Option<ServerState>>,
}

/// `last_reported` of a cell that has reported nothing yet.
const UNREPORTED: u8 = u8::MAX;

impl StateCell {
    pub fn new(connection: ServerState) -> StateCell {
        StateCell {
            connection: AtomicU8::new(connection as u8),
            last_reported: AtomicU8::new(ServerState::Up as u8),
            reported: Mutex::new(Some(ServerState::Up)),
        }
    }

    /// A cell whose every state is news for the callback: the first report
    /// tells it the state then (for a server that joins a running streamer).
    pub fn unreported(connection: ServerState) -> StateCell {
        StateCell {
            connection: AtomicU8::new(connection as u8),
            last_reported: AtomicU8::new(UNREPORTED),
            reported: Mutex::new(None),
        }
    }

    /// Sets the connection state (`Up`, `Connecting` or `Down`).
    pub fn set_connection(&self, state: ServerState) {
        self.connection.store(state as u8, Ordering::SeqCst);
    }

    /// The connection state, without the rest.
    pub fn connection(&self) -> ServerState {
        ServerState::from_u8(self.connection.load(Ordering::SeqCst))
    }

    /// The state now, given whether the server rests.
    pub fn state(&self, resting: impl FnOnce() -> bool) -> ServerState {
        match self.connection() {
            ServerState::Up if resting() => ServerState::Resting,
            state => state,
        }
    }

    /// Tells `callback` about the state now (`current`) if it differs from
    /// what it was told last. The state is read under the reporters' lock, so
    /// that a report never overtakes a later one. `silenced`: no callback may
    /// start any more (the change is still noted).
    pub fn report(
        &self,
        index: usize,
        current: impl Fn() -> ServerState,
        callback: Option<&ServerStateFn>,
        silenced: bool,
    ) {
        if self.last_reported.load(Ordering::SeqCst) == current() as u8 {
            return;
        }
        let mut reported = self.reported.lock().unwrap_or_else(|e| e.into_inner());
        let now = current();
        if *reported == Some(now) {
            return;
        }
        *reported = Some(now);
        self.last_reported.store(now as u8, Ordering::SeqCst);
        let Some(callback) = callback.filter(|_| !silenced) else {
            return;
        };
        let _inside = CallbackScope::enter();
        // Held during the call, so that the calls for one server come in order.
        let call = std::panic::AssertUnwindSafe(|| callback(index, now));
        let _ = std::panic::catch_unwind(call);
        drop(reported);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_state_is_reported_once_per_change_and_rest_counts_only_when_up() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = Arc::clone(&seen);
        let callback: ServerStateFn = Arc::new(move |index, state| {
            record.lock().unwrap().push((index, state));
        });
        let cell = StateCell::new(ServerState::Down);
        assert_eq!(
            cell.state(|| true),
            ServerState::Down,
            "down, resting or not"
        );
        let now = || cell.state(|| false);
        cell.report(2, now, Some(&callback), false);
        cell.report(2, now, Some(&callback), false);
        cell.set_connection(ServerState::Up);
        assert_eq!(cell.state(|| true), ServerState::Resting);
        cell.report(2, now, Some(&callback), false);
        cell.set_connection(ServerState::Connecting);
        cell.report(2, now, Some(&callback), true);
        assert_eq!(
            *seen.lock().unwrap(),
            [(2, ServerState::Down), (2, ServerState::Up)]
        );
    }

    #[test]
    fn a_joining_servers_first_state_is_reported_even_when_up() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = Arc::clone(&seen);
        let callback: ServerStateFn = Arc::new(move |index, state| {
            record.lock().unwrap().push((index, state));
        });
        let cell = StateCell::unreported(ServerState::Up);
        let now = || cell.state(|| false);
        cell.report(5, now, Some(&callback), false);
        cell.report(5, now, Some(&callback), false);
        assert_eq!(*seen.lock().unwrap(), [(5, ServerState::Up)]);
    }
}
