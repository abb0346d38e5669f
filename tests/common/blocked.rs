//! Waiting for a thread of this process to block, for tests whose order needs a
//! thread parked inside the library (a producer waiting for room, a flush waiting
//! for its files) where the library keeps no trace to wait on.

use std::time::Duration;
#[cfg(target_os = "linux")]
use std::time::Instant;

/// Waits until this process's thread `name` sleeps on a futex (a lock or a
/// condition variable) and stays there for 50 ms: where a race test put it (a
/// producer waiting for room, a finalize waiting for a lock). The library keeps
/// no trace of that to wait on, so it is read from /proc; a fixed sleep instead
/// failed the test whenever the thread came late.
#[cfg(target_os = "linux")]
pub fn wait_until_blocked(name: &str) {
    fn blocked(name: &str) -> bool {
        let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
            return false;
        };
        tasks.flatten().any(|task| {
            let read =
                |file: &str| std::fs::read_to_string(task.path().join(file)).unwrap_or_default();
            let stat = read("stat");
            // `pid (comm) state ...`: the state follows the last parenthesis.
            let sleeping = stat
                .rsplit_once(')')
                .is_some_and(|(_, rest)| rest.trim_start().starts_with('S'));
            read("comm").trim_end() == name && sleeping && read("wchan").contains("futex")
        })
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut since: Option<Instant> = None;
    loop {
        if !blocked(name) {
            since = None;
        } else if since.get_or_insert_with(Instant::now).elapsed() >= Duration::from_millis(50) {
            return;
        }
        assert!(Instant::now() < deadline, "{name} never blocked");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Elsewhere: time for the thread to get there (no /proc to read).
#[cfg(not(target_os = "linux"))]
pub fn wait_until_blocked(_name: &str) {
    std::thread::sleep(Duration::from_millis(300));
}
