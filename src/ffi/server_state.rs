//! The state of each server, as C sees it: the enum, reading it
//! (`streamer_server_state`, `stream_server_state`) and the callback on every
//! change (`streamer_options_set_server_callback`). The states themselves are
//! defined once, in the core (`crate::ServerState`); this file only converts.

use std::ffi::c_void;

use super::callbacks::UserData;
use super::handle;
use super::options::PymeStreamerOptions;
use super::status::{STREAMER_ERR_INVALID_ARGUMENT, STREAMER_ERR_NULL_ARGUMENT, STREAMER_OK};
use super::stream::PymeStream;
use super::streamer::PymeStreamer;
use crate::ServerState;

/// The state of one server of a streamer (or of a stream's server).
#[repr(C)]
#[allow(non_camel_case_types, clippy::upper_case_acronyms)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PymeStreamerServerState {
    /// Connected and taking files.
    STREAMER_SERVER_UP = 0,
    /// Not connected: the connection was lost and the link is reconnecting;
    /// no attempt has failed yet. Puts go to other servers (failover).
    STREAMER_SERVER_CONNECTING = 1,
    /// Connected, but out of the rotation for a while after its server kept
    /// answering 5xx (or 507: its disk is full).
    STREAMER_SERVER_RESTING = 2,
    /// Not connected, and the last attempt to connect failed (unreachable,
    /// or its name could not be resolved for now): the library tries again
    /// with the reconnect backoff until the streamer is closed. Also the state
    /// of a server that could not be reached when the streamer was created.
    STREAMER_SERVER_DOWN = 3,
}

pub(super) fn state_for_c(state: ServerState) -> i32 {
    let state = match state {
        ServerState::Up => PymeStreamerServerState::STREAMER_SERVER_UP,
        ServerState::Connecting => PymeStreamerServerState::STREAMER_SERVER_CONNECTING,
        ServerState::Resting => PymeStreamerServerState::STREAMER_SERVER_RESTING,
        ServerState::Down => PymeStreamerServerState::STREAMER_SERVER_DOWN,
    };
    state as i32
}

/// Called on every change of a server's state, with its index and its new
/// state (a `PymeStreamerServerState`); also once, at start, for every server
/// that could not be reached when the streamer was created
/// (`STREAMER_SERVER_DOWN`). Before its first call a server is up. With live
/// membership (`streamer_options_set_discovery_period_ms`), a server that
/// joins during the run has the next index and its first call says
/// `STREAMER_SERVER_UP`; one that discovery no longer finds is reported
/// `STREAMER_SERVER_DOWN`.
///
/// - Thread: a library thread (the link thread of that server, its
///   receiver, or the discovery thread that marked it down). Calls for one server never overlap and come in the order of
///   the changes; calls for different servers may overlap.
/// - It should return quickly: it holds up its server's thread.
/// - May call: the same functions as a completion callback (see
///   `PymeStreamerCompletionFn`), `streamer_server_state` included; a put
///   never waits there, and `*_flush`, `*_close`... return
///   `STREAMER_ERR_IN_CALLBACK`.
/// - No call starts after a bounded close reached its limit; every call has
///   returned when `streamer_close` returns.
/// - Must not: throw a C++ exception or longjmp out of the call.
pub type PymeStreamerServerStateFn =
    Option<unsafe extern "C" fn(user_data: *mut c_void, server_index: usize, state: i32)>;

/// Calls `fn` on every change of a server's state (see
/// `PymeStreamerServerStateFn`). `fn` NULL: no callback (the default).
/// Consumes nothing: the options keep `fn` and `user_data` (borrowed, not owned).
///
/// # Safety
/// `options` is NULL or a valid handle; `fn` follows the
/// `PymeStreamerServerStateFn` contract and, with `user_data`, stays usable
/// until every handle created from these options is closed.
#[no_mangle]
pub unsafe extern "C" fn streamer_options_set_server_callback(
    options: *mut PymeStreamerOptions,
    r#fn: PymeStreamerServerStateFn,
    user_data: *mut c_void,
) -> i32 {
    ffi_panic_boundary! {
        let options = try_handle_mut!(options);
        let callback = r#fn.map(|function| {
            let user_data = UserData(user_data);
            let call = move |index: usize, state: ServerState| {
                let user_data = user_data;
                // SAFETY: the caller's function, of this signature, usable
                // while the handle lives (the contract above).
                unsafe { function(user_data.0, index, state_for_c(state)) }
            };
            std::sync::Arc::new(call) as crate::server_state::ServerStateFn
        });
        options.core = std::mem::take(&mut options.core).shared_server_state_callback(callback);
        STREAMER_OK
    }
}

/// Writes the state of server `index` now (a `PymeStreamerServerState`) to
/// `*state`. It takes no lock a put takes: poll it as often as needed, from
/// any thread (and from callbacks).
/// `STREAMER_ERR_INVALID_ARGUMENT` when `index >= streamer_n_servers`.
/// Consumes nothing.
///
/// # Safety
/// `streamer` is NULL or a valid handle; `state` is NULL or a valid pointer.
#[no_mangle]
pub unsafe extern "C" fn streamer_server_state(
    streamer: *const PymeStreamer,
    index: usize,
    state: *mut i32,
) -> i32 {
    ffi_panic_boundary! {
        // SAFETY: NULL or a valid handle by the contract.
        let Some(streamer) = (unsafe { handle::borrow(streamer) }) else {
            return STREAMER_ERR_NULL_ARGUMENT;
        };
        refuse_forked!(streamer);
        let out = try_out!(state);
        match streamer.server_state(index) {
            Some(now) => {
                *out = state_for_c(now);
                STREAMER_OK
            }
            None => STREAMER_ERR_INVALID_ARGUMENT,
        }
    }
}

/// Writes the state of the stream's server now (a `PymeStreamerServerState`)
/// to `*state`; as `streamer_server_state`.
/// Consumes nothing.
///
/// # Safety
/// `stream` is NULL or a valid handle; `state` is NULL or a valid pointer.
#[no_mangle]
pub unsafe extern "C" fn stream_server_state(stream: *const PymeStream, state: *mut i32) -> i32 {
    ffi_panic_boundary! {
        // SAFETY: NULL or a valid handle by the contract.
        let Some(stream) = (unsafe { handle::borrow(stream) }) else {
            return STREAMER_ERR_NULL_ARGUMENT;
        };
        refuse_forked!(stream);
        let out = try_out!(state);
        *out = state_for_c(stream.server_state());
        STREAMER_OK
    }
}
