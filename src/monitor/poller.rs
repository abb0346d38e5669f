//! The pollers: a fixed pool of [`POLLER_THREADS`] threads (`pyme-monitor-poller-N`)
//! shares the watched servers. Each server is due one interval after its previous poll
//! started (or at once when that time has passed, so polls never pile up); a free
//! poller takes the server due first, polls its `/__status`, bounded by the timeout,
//! and writes the outcome into its record. So the monitor holds at most
//! [`POLLER_THREADS`] threads and sockets for polling, however many servers it follows.
//!
//! One silent server costs a poller one timeout. Servers whose last poll failed, or
//! never polled yet, may hold at most [`FAILING_POLLERS`] pollers at once: the others
//! stay free for servers that answer, so a crowd of silent or unreachable servers,
//! even thousands added at once, never delays a healthy one. A server newly added is
//! due at once, before those that failed and are due later. Servers that fail are polled every
//! interval as long as at most `FAILING_POLLERS × interval / timeout` of them take the
//! whole timeout (30 with the defaults); beyond that they are polled less often, which
//! changes nothing for them (they are down) but how soon one that comes back is shown up.
//!
//! What this module may not do: serve anything, or hold the record's lock during a poll.

use std::cmp::Ordering as CmpOrdering;
use std::collections::BinaryHeap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Instant;

use super::{fetch, reading, Shared, Watched};

/// The pollers' threads: at most this many polls are under way at once.
pub const POLLER_THREADS: usize = 32;

/// At most this many pollers at once poll servers whose last poll failed.
pub const FAILING_POLLERS: usize = 24;

/// A server waiting for its next poll.
struct Due {
    at: Instant,
    /// Breaks ties in the order servers were queued.
    order: u64,
    server: Arc<Watched>,
}

impl PartialEq for Due {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == CmpOrdering::Equal
    }
}
impl Eq for Due {}
impl PartialOrd for Due {
    fn partial_cmp(&self, other: &Self) -> Option<CmpOrdering> {
        Some(self.cmp(other))
    }
}
impl Ord for Due {
    /// Reversed: the heap's top is the one due first.
    fn cmp(&self, other: &Self) -> CmpOrdering {
        (other.at, other.order).cmp(&(self.at, self.order))
    }
}

#[derive(Default)]
struct Queue {
    /// Servers that answered their last poll.
    answering: BinaryHeap<Due>,
    /// Servers whose last poll failed, or never polled yet.
    failing: BinaryHeap<Due>,
    /// Pollers polling a server of `failing` now.
    failing_busy: usize,
    next_order: u64,
    stopped: bool,
}

/// The servers to poll, by when each is due; shared by the pollers.
#[derive(Default)]
pub(crate) struct Schedule {
    queue: Mutex<Queue>,
    changed: Condvar,
}

impl Schedule {
    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues a server newly watched, due now.
    pub fn add(&self, server: Arc<Watched>) {
        let mut queue = self.lock();
        let order = queue.next_order;
        queue.next_order += 1;
        queue.failing.push(Due {
            at: Instant::now(),
            order,
            server,
        });
        drop(queue);
        self.changed.notify_one();
    }

    /// Wakes every poller to end.
    pub fn stop(&self) {
        self.lock().stopped = true;
        self.changed.notify_all();
    }

    /// Waits for the next server due; with whether it is a failing one. None at stop.
    fn take(&self) -> Option<(Arc<Watched>, bool)> {
        let mut queue = self.lock();
        loop {
            if queue.stopped {
                return None;
            }
            let now = Instant::now();
            let answering = queue.answering.peek().map(|d| d.at);
            let failing = if queue.failing_busy < FAILING_POLLERS {
                queue.failing.peek().map(|d| d.at)
            } else {
                None
            };
            let take_failing = match (answering, failing) {
                (Some(a), Some(f)) => f < a,
                (None, Some(_)) => true,
                _ => false,
            };
            let first = if take_failing { failing } else { answering };
            match first {
                Some(at) if at <= now => {
                    let due = if take_failing {
                        queue.failing_busy += 1;
                        queue.failing.pop()
                    } else {
                        queue.answering.pop()
                    };
                    let due = due.expect("peeked");
                    return Some((due.server, take_failing));
                }
                Some(at) => {
                    queue = self
                        .changed
                        .wait_timeout(queue, at - now)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0;
                }
                None => {
                    queue = self
                        .changed
                        .wait(queue)
                        .unwrap_or_else(PoisonError::into_inner);
                }
            }
        }
    }

    /// A poll ended: the server is queued again, due `at`, unless it was forgotten.
    fn done(&self, server: Arc<Watched>, was_failing: bool, answered: bool, at: Instant) {
        let mut queue = self.lock();
        if was_failing {
            queue.failing_busy -= 1;
        }
        if !server.forgotten.load(Ordering::Relaxed) {
            let order = queue.next_order;
            queue.next_order += 1;
            let due = Due { at, order, server };
            if answered {
                queue.answering.push(due);
            } else {
                queue.failing.push(due);
            }
        }
        drop(queue);
        // A failing slot may have come free, or a server be due sooner than awaited.
        self.changed.notify_all();
    }
}

/// Starts `count` pollers.
pub(crate) fn spawn(shared: &Arc<Shared>, count: usize) -> std::io::Result<Vec<JoinHandle<()>>> {
    let mut pollers = Vec::with_capacity(count);
    for index in 0..count {
        let own = Arc::clone(shared);
        let spawned = std::thread::Builder::new()
            .name(format!("pyme-monitor-poller-{index}"))
            .spawn(move || run(&own));
        match spawned {
            Ok(handle) => pollers.push(handle),
            Err(error) => {
                shared.schedule.stop();
                for poller in pollers {
                    let _ = poller.join();
                }
                return Err(error);
            }
        }
    }
    Ok(pollers)
}

fn run(shared: &Shared) {
    let interval = shared.config.interval;
    let timeout = shared.config.timeout;
    while let Some((server, was_failing)) = shared.schedule.take() {
        if server.forgotten.load(Ordering::Relaxed) {
            shared
                .schedule
                .done(server, was_failing, false, Instant::now());
            continue;
        }
        let started = Instant::now();
        let outcome = fetch::get(&server.address, "/__status", started + timeout)
            .map_err(|e| e.to_string())
            .and_then(|body| reading::read(&body).map_err(|e| e.to_string()));
        let now = Instant::now();
        let answered = outcome.is_ok();
        {
            let mut record = server.record.lock().unwrap_or_else(PoisonError::into_inner);
            match outcome {
                Ok(reading) => record.answered(reading, now),
                Err(reason) => record.failed(reason, now),
            }
        }
        shared
            .schedule
            .done(server, was_failing, answered, started + interval);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;
    use std::sync::Mutex;

    fn watched(i: usize) -> Arc<Watched> {
        Arc::new(Watched {
            address: format!("127.0.0.1:{i}"),
            name: Mutex::new(None),
            listed: AtomicBool::new(true),
            advertised: AtomicBool::new(true),
            unadvertised_since: Mutex::new(None),
            forgotten: AtomicBool::new(false),
            record: Mutex::new(Default::default()),
        })
    }

    /// Servers not answering (new ones included) never hold more than FAILING_POLLERS
    /// pollers: with all of those busy, an answering server due is still taken at
    /// once (take would wait forever otherwise: nothing else is due).
    #[test]
    fn failing_servers_leave_pollers_to_answering_ones() {
        let schedule = Schedule::default();
        for i in 0..FAILING_POLLERS + 6 {
            schedule.add(watched(i));
        }
        let busy: Vec<_> = (0..FAILING_POLLERS)
            .map(|_| schedule.take().unwrap())
            .collect();
        assert!(busy.iter().all(|(_, failing)| *failing));
        let healthy = watched(1000);
        schedule.done(Arc::clone(&healthy), false, true, Instant::now());
        let (taken, failing) = schedule.take().unwrap();
        assert!(Arc::ptr_eq(&taken, &healthy) && !failing);
        // One failing poll ends (due again later): a waiting one takes its place.
        let (first, _) = &busy[0];
        let later = Instant::now() + std::time::Duration::from_secs(60);
        schedule.done(Arc::clone(first), true, false, later);
        let (next, failing) = schedule.take().unwrap();
        assert!(failing && next.address == format!("127.0.0.1:{FAILING_POLLERS}"));
        schedule.stop();
        assert!(schedule.take().is_none());
    }
}
