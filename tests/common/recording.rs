//! Outcomes as the streamer reports them, kept per file name for the tests to check
//! (every file exactly one outcome, which server, which status or error).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use pyme_streaming::{OutcomeResult, StreamerOptions};

/// One outcome: the server's index, and the HTTP status of an acknowledgement or the
/// text of the error a file failed with.
pub type Recorded = (usize, Result<u16, String>);

/// Outcomes by file name, in the order they were reported.
pub type Seen = Arc<Mutex<HashMap<String, Vec<Recorded>>>>;

/// `options` with an outcome callback that records every outcome into the returned map.
pub fn recording(options: StreamerOptions) -> (StreamerOptions, Seen) {
    let seen: Seen = Arc::default();
    let sink = Arc::clone(&seen);
    let options = options.on_complete(move |outcome| {
        let result = match outcome.result {
            OutcomeResult::Acknowledged { http_status } => Ok(http_status),
            OutcomeResult::Failed(error) => Err(error.to_string()),
        };
        sink.lock()
            .unwrap()
            .entry(outcome.name.to_owned())
            .or_default()
            .push((outcome.server, result));
    });
    (options, seen)
}

/// The error text of a failed outcome; panics, saying so, on an acknowledgement.
pub fn failure(recorded: &Recorded) -> &str {
    match &recorded.1 {
        Err(text) => text,
        Ok(status) => panic!("acknowledged with {status}, expected a failure"),
    }
}
