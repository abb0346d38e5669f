//! The descriptor check: at start, a streamer asks whether the process may
//! open the descriptors its servers will need, so that a low limit fails the
//! start with a message saying what to raise, not a connection in the middle
//! of an acquisition.
//!
//! What a streamer opens, per server: the connection's socket, and three
//! duplicates of it (the receiver's, the one any thread shuts it with, and
//! the receiver's probe of the bytes not yet acknowledged), 4 at all times
//! (measured: two streamers of 100 servers hold 805 with the test's own),
//! plus, for a moment, the connection that reads back a file that may already
//! have landed: [`PER_SERVER`] = 5. Besides: the
//! spill folder's lock file, a spilled file and the folders synced with it:
//! [`BASE`] = 5. Threads (two per server) need no descriptor.
//!
//! Several streamers in one process: each one started keeps a claim on its
//! headroom (what it may open beyond what is open now), and one starting
//! claims all it needs until it is running, so the next check counts both.
//!
//! In scope: `RLIMIT_NOFILE` and the descriptors open now (Linux and other
//! Unix systems). Out of scope: Windows, which has no such per-process limit
//! on sockets: no check there.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::Error;

/// Descriptors a streamer may hold per server at once.
pub const PER_SERVER: u64 = 5;
/// Descriptors a streamer may hold besides (spill folder and its files).
pub const BASE: u64 = 5;

/// Descriptors other streamers of this process may still open.
static CLAIMED: AtomicU64 = AtomicU64::new(0);

/// What a streamer may still open, counted in [`CLAIMED`] until dropped.
pub(crate) struct Claim(u64);

impl Claim {
    /// The streamer runs: its sockets are open (and counted as such by the
    /// next check), only its headroom stays claimed.
    pub fn running(&mut self, n_servers: usize) {
        let headroom = n_servers as u64 + BASE;
        let given_back = self.0.saturating_sub(headroom);
        CLAIMED.fetch_sub(given_back, Ordering::SeqCst);
        self.0 -= given_back;
    }

    /// A claim of nothing yet, to [`Claim::grow`] (the servers that join a
    /// running streamer, see `membership`).
    pub fn none() -> Claim {
        Claim(0)
    }

    /// One more server joins a running streamer (its connection is made):
    /// whether the process may still open the descriptors it needs beyond
    /// that connection ([`PER_SERVER`] - 1), with what other streamers may
    /// open; if so its headroom (one descriptor, as [`Claim::running`]
    /// keeps) is claimed. Otherwise the message says which limit to raise.
    pub fn grow(&mut self) -> Result<(), Error> {
        if let Some((soft, _)) = descriptor_limit() {
            let others = CLAIMED.load(Ordering::SeqCst);
            let open = open_now();
            let total = open.saturating_add(others).saturating_add(PER_SERVER - 1);
            if total > soft {
                return Err(Error::Limits(format!(
                    "too few file descriptors for one more server: {open} are open, \
                     the streamers of this process may open {others} more and this server \
                     needs {} more, but the process may open {soft} (RLIMIT_NOFILE): raise it",
                    PER_SERVER - 1
                )));
            }
        }
        CLAIMED.fetch_add(1, Ordering::SeqCst);
        self.0 += 1;
        Ok(())
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        CLAIMED.fetch_sub(self.0, Ordering::SeqCst);
    }
}

/// The descriptors a streamer of `n_servers` servers may hold at once.
pub fn needed(n_servers: usize) -> u64 {
    PER_SERVER
        .saturating_mul(n_servers as u64)
        .saturating_add(BASE)
}

/// Claims what a streamer of `n_servers` needs, or says which limit to raise.
pub(crate) fn claim(n_servers: usize) -> Result<Claim, Error> {
    let need = needed(n_servers);
    let others = CLAIMED.fetch_add(need, Ordering::SeqCst);
    let claim = Claim(need);
    let Some((soft, hard)) = descriptor_limit() else {
        return Ok(claim);
    };
    let open = open_now();
    let total = open.saturating_add(others).saturating_add(need);
    if total <= soft {
        return Ok(claim);
    }
    Err(Error::Limits(format!(
        "too few file descriptors for {n_servers} servers: this streamer may need {need} \
         ({PER_SERVER} per server + {BASE}), {open} are open and other streamers of this \
         process may open {others} more, but the process may open {soft} (RLIMIT_NOFILE, \
         hard limit {hard}): raise it, for example `ulimit -n {suggest}` before starting \
         the program, or setrlimit(RLIMIT_NOFILE) in it",
        suggest = total.next_multiple_of(1024),
        hard = if hard == u64::MAX {
            "unlimited".to_owned()
        } else {
            hard.to_string()
        },
    )))
}

/// The soft and hard limits on open descriptors, or `None` where there is
/// nothing to check (unlimited, or not a Unix system).
#[cfg(unix)]
fn descriptor_limit() -> Option<(u64, u64)> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes the struct it is given, nothing else.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return None;
    }
    // `rlim_t` is not 64 bits wide on every system.
    #[allow(clippy::unnecessary_cast)]
    let as_u64 = |value: libc::rlim_t| {
        if value == libc::RLIM_INFINITY {
            u64::MAX
        } else {
            value as u64
        }
    };
    let soft = as_u64(limit.rlim_cur);
    (soft != u64::MAX).then_some((soft, as_u64(limit.rlim_max)))
}

#[cfg(not(unix))]
fn descriptor_limit() -> Option<(u64, u64)> {
    None
}

/// Descriptors open in this process now (0 where they cannot be listed).
fn open_now() -> u64 {
    let folder = if cfg!(target_os = "linux") {
        "/proc/self/fd"
    } else {
        "/dev/fd"
    };
    // Less one: the listing's own descriptor.
    std::fs::read_dir(folder).map_or(0, |entries| (entries.count() as u64).saturating_sub(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_claim_counts_for_the_next_check_until_it_is_dropped() {
        let before = CLAIMED.load(Ordering::SeqCst);
        let mut claim = claim(3).unwrap();
        assert!(CLAIMED.load(Ordering::SeqCst) >= before + needed(3));
        claim.running(3);
        assert_eq!(claim.0, 3 + BASE);
        drop(claim);
        // Other tests of this process may hold claims of their own meanwhile:
        // only this one's is checked (by the count it left behind).
        if descriptor_limit().is_none() {
            return;
        }
        let huge = super::claim(usize::MAX / 8);
        let Err(Error::Limits(message)) = huge else {
            panic!("no process may open that many");
        };
        assert!(message.contains("ulimit -n"), "{message}");
    }
}
