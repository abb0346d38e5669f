//! Live membership: with a serverfilter and a discovery period
//! ([`crate::StreamerOptions::discovery_period`]), one thread of the streamer
//! (`pyme-discovery`) runs discovery again every period during the
//! acquisition and changes the streamer's servers to match:
//!
//! - a server found that is not one of the streamer's yet joins it: its
//!   connection is made, it is appended to the links (the next index: indices
//!   never change) and gets its link thread like the others; from then on the
//!   distribution counts it. It is refused (and a note says why) past the
//!   descriptor limit of the process or [`super::links::MAX_SERVERS`]; one
//!   that cannot be connected to is tried again next round.
//! - a server found by discovery (never one given by address) that is missing
//!   from [`MISSED_ROUNDS`] rounds in a row is withdrawn: down, taking no new
//!   files, its files moved on by failover as for any server down, and its
//!   thread does not reconnect. Found again, it is readmitted and reconnects.
//! - a round that finds nothing at all (nothing advertised, the registry
//!   unreadable, mDNS failing) changes nothing: it is noted, not believed.
//!
//! The state callback hears of a joining server when its link thread reports
//! it up, and of a withdrawn one from this thread (down).
//!
//! In scope: the rounds and what they change. Out of scope: how servers are
//! found (`crate::discovery`), what a link does (`link`, `session`).
//! Without a serverfilter, or with a zero period, this thread does not exist.

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::cluster::Cluster;
use super::limits::Claim;
use super::link::Link;
use super::session;
use crate::discovery::DiscoveryOptions;
use crate::Error;

/// A server found by discovery is withdrawn once it is missing from this many
/// rounds in a row: one lost mDNS answer does not move a node's files.
pub const MISSED_ROUNDS: u32 = 2;

/// The notes kept (see [`Membership::notes`]): the newest.
const MAX_NOTES: usize = 32;

/// The discovery thread of a streamer.
pub(super) struct Membership {
    shared: Arc<Shared>,
    thread: JoinHandle<Vec<JoinHandle<()>>>,
}

/// What the streamer and its discovery thread share.
#[derive(Default)]
struct Shared {
    stopped: Mutex<bool>,
    wake: Condvar,
    notes: Mutex<Vec<String>>,
}

impl Shared {
    /// Waits `period`; `true` when the streamer stops first.
    fn wait_stopped(&self, period: Duration) -> bool {
        let deadline = Instant::now() + period;
        let mut stopped = self.stopped.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            let now = Instant::now();
            if *stopped || now >= deadline {
                return *stopped;
            }
            stopped = self
                .wake
                .wait_timeout(stopped, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    fn is_stopped(&self) -> bool {
        *self.stopped.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn note(&self, note: String) {
        let mut notes = self.notes.lock().unwrap_or_else(|e| e.into_inner());
        if notes.len() == MAX_NOTES {
            notes.remove(0);
        }
        notes.push(note);
    }
}

impl Membership {
    /// Starts the discovery thread of `cluster`: a round every `period`.
    pub fn start(
        cluster: &Arc<Cluster>,
        discovery: DiscoveryOptions,
        period: Duration,
    ) -> Result<Membership, Error> {
        let shared = Arc::<Shared>::default();
        let for_thread = (Arc::clone(cluster), Arc::clone(&shared));
        let thread = std::thread::Builder::new()
            .name("pyme-discovery".into())
            .spawn(move || {
                let (cluster, shared) = for_thread;
                let mut rounds = Rounds::new(&cluster, &shared);
                while !shared.wait_stopped(period) {
                    let stopped = || shared.is_stopped();
                    let found = crate::discovery::find_servers_until(&discovery, &stopped);
                    if shared.is_stopped() {
                        break;
                    }
                    match found {
                        Ok(found) => {
                            let found = found.iter().map(|server| server.host_port()).collect();
                            rounds.round(&found);
                        }
                        Err(error) => shared.note(format!("round ignored: {error}")),
                    }
                }
                rounds.threads
            })
            .map_err(|e| Error::Limits(format!("cannot start the discovery thread: {e}")))?;
        Ok(Membership { shared, thread })
    }

    /// What the rounds refused or could not do, newest last (at most 32).
    pub fn notes(&self) -> Vec<String> {
        self.shared
            .notes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Stops the thread: it wakes from its wait at once; a round in progress
    /// cuts its mDNS browse short (its registry read and its probes are
    /// short) and adds no server after the one it may be connecting (at most
    /// `connect_timeout`). Returns the link threads it started, for the close
    /// to join.
    pub fn stop(self) -> Vec<JoinHandle<()>> {
        *self
            .shared
            .stopped
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = true;
        self.shared.wake.notify_all();
        self.thread.join().unwrap_or_default()
    }
}

/// What the discovery thread keeps between rounds.
struct Rounds<'a> {
    cluster: &'a Arc<Cluster>,
    shared: &'a Shared,
    /// Rounds in a row each link was missing from, by index.
    missed: Vec<u32>,
    /// The descriptors of the servers that joined.
    descriptors: Claim,
    /// Their link threads.
    threads: Vec<JoinHandle<()>>,
}

impl<'a> Rounds<'a> {
    fn new(cluster: &'a Arc<Cluster>, shared: &'a Shared) -> Rounds<'a> {
        Rounds {
            cluster,
            shared,
            missed: Vec::new(),
            descriptors: Claim::none(),
            threads: Vec::new(),
        }
    }

    /// One round: `found` (`host:port` each) is what discovery found.
    fn round(&mut self, found: &HashSet<String>) {
        let cluster = self.cluster;
        let links = &cluster.links;
        self.missed.resize(links.len(), 0);
        for (index, link) in links.iter().enumerate() {
            if !link.discovered {
                continue;
            }
            if found.contains(&link.server) {
                self.missed[index] = 0;
                link.readmit();
                continue;
            }
            self.missed[index] += 1;
            if self.missed[index] >= MISSED_ROUNDS {
                let reason = format!(
                    "withdrawn: discovery has not found it for {} rounds",
                    self.missed[index]
                );
                if link.withdraw(reason) {
                    cluster.report_state(index);
                }
            }
        }
        let known: HashSet<&str> = links.iter().map(|link| link.server.as_str()).collect();
        let mut joining: Vec<&String> = found
            .iter()
            .filter(|server| !known.contains(server.as_str()))
            .collect();
        joining.sort();
        for server in joining {
            // A close stops the thread before the cluster stops accepting: it
            // waits for the join under way (one connect), not for the rest.
            if !cluster.accepting.load(Ordering::SeqCst) || self.shared.is_stopped() {
                return;
            }
            if let Err(note) = self.join(server) {
                self.shared.note(note);
            }
        }
    }

    /// Adds `server` to the streamer, or says why not.
    fn join(&mut self, server: &str) -> Result<(), String> {
        let cluster = self.cluster;
        let capacity = cluster.links.capacity();
        if cluster.links.len() >= capacity {
            return Err(format!(
                "{server} not added: the streamer holds {capacity} servers, its most"
            ));
        }
        let socket = session::connect(server, &cluster.options)
            .map_err(|error| format!("{server} not added for now: {error}"))?;
        self.descriptors
            .grow()
            .map_err(|error| format!("{server} not added: {error}"))?;
        let link = Link::starting(server.to_owned(), &cluster.options, None).joining();
        let index = cluster
            .links
            .push(link)
            .ok_or_else(|| format!("{server} not added: the streamer holds its most servers"))?;
        match session::spawn_link(cluster, index, Some(socket)) {
            Ok(thread) => {
                self.threads.push(thread);
                Ok(())
            }
            Err(error) => {
                // No thread sends for it: down for good, and any file a put
                // placed there meanwhile moves on.
                let reason = format!("no link thread: {error}");
                cluster.links[index].withdraw(reason.clone());
                cluster.report_state(index);
                session::hand_on_files(cluster, index, &reason);
                Err(format!("{server} added but not used: {error}"))
            }
        }
    }
}
