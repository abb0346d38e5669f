//! One thread per server (`pyme-monitor-<host:port>`): polls its `/__status` every
//! interval, each poll bounded by the timeout, and writes the outcome into its
//! record. A poll that takes long delays only its own server's next one; the next
//! poll starts one interval after the previous one started (or at once when that
//! time has passed), so polls never pile up.
//!
//! What this module may not do: serve anything, or hold the record's lock during a poll.

use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError};
use std::thread::JoinHandle;
use std::time::Instant;

use super::{fetch, reading, Shared, Watched};

pub(crate) fn spawn(shared: Arc<Shared>, server: Arc<Watched>) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name(thread_name(&server.address))
        .spawn(move || run(&shared, &server))
}

/// `pyme-monitor-<address>`, with anything but printable ASCII replaced by `?`
/// (a NUL in a thread name panics the spawn).
fn thread_name(address: &str) -> String {
    let printable: String = address
        .chars()
        .map(|c| if c.is_ascii_graphic() { c } else { '?' })
        .collect();
    format!("pyme-monitor-{printable}")
}

fn run(shared: &Shared, server: &Watched) {
    let interval = shared.config.interval;
    let timeout = shared.config.timeout;
    let mut next = Instant::now();
    loop {
        if !shared.sleep_until(next) || server.forgotten.load(Ordering::Relaxed) {
            return;
        }
        let started = Instant::now();
        next = started + interval;
        let outcome = fetch::get(&server.address, "/__status", started + timeout)
            .map_err(|e| e.to_string())
            .and_then(|body| reading::read(&body).map_err(|e| e.to_string()));
        let now = Instant::now();
        let mut record = server.record.lock().unwrap_or_else(PoisonError::into_inner);
        match outcome {
            Ok(reading) => record.answered(reading, now),
            Err(reason) => record.failed(reason, now),
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn thread_names_are_printable() {
        assert_eq!(super::thread_name("a:1"), "pyme-monitor-a:1");
        assert_eq!(
            super::thread_name("1.2.3.4\0x é"),
            "pyme-monitor-1.2.3.4?x??"
        );
        std::thread::Builder::new()
            .name(super::thread_name("\0"))
            .spawn(|| {})
            .unwrap()
            .join()
            .unwrap();
    }
}
