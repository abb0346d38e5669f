//! `Streamer`: the public API of the client. It builds the cluster, starts and
//! joins the threads, takes `put`s and closes.
//!
//! Out of scope: what happens to a file once accepted (see `cluster`, `link`,
//! `session`).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::buffers::BufferPool;
use super::cluster::{resend_spilled, Cluster};
use super::job::Job;
use super::link::Link;
use super::outcome::{Counters, Reporter, Stats};
use super::session;
use super::spill::Spill;
use crate::{Error, StreamerOptions};

/// Streams files to a cluster of PYME data servers, one persistent pipelined
/// connection per server. `put` may be called from several threads at once.
pub struct Streamer {
    cluster: Arc<Cluster>,
    threads: Vec<JoinHandle<()>>,
    spill_thread: Option<JoinHandle<()>>,
}

impl Streamer {
    /// Connects to every server of `options`. A server that cannot be reached is
    /// an error naming it (and the connections already made are closed).
    pub fn new(mut options: StreamerOptions) -> Result<Streamer, Error> {
        if let Some(discovery) = &options.discovery {
            let found = crate::discovery::find_servers(discovery)?;
            options
                .servers
                .extend(found.iter().map(|server| server.host_port()));
        }
        if options.servers.is_empty() {
            return Err(Error::NoServers);
        }
        for server in &options.servers {
            check_address(server)?;
        }
        let spill = match &options.spill_dir {
            Some(folder) => Some(
                Spill::open(folder)
                    .map_err(|e| Error::SpillFolder(format!("{}: {e}", folder.display())))?,
            ),
            None => None,
        };
        let sockets = options
            .servers
            .iter()
            .map(|server| session::connect(server, &options))
            .collect::<Result<Vec<_>, _>>()?;
        let links = options
            .servers
            .iter()
            .map(|server| Link::new(server.clone(), &options))
            .collect();
        let buffers = BufferPool::new(
            options
                .queue_max_bytes
                .saturating_mul(options.servers.len() as u64),
            true,
        );
        let reporter = Reporter {
            counters: Arc::new(Counters::default()),
            completion: options.completion.clone(),
        };
        let cluster = Arc::new(Cluster::new(links, options, reporter, spill, buffers));
        let mut streamer = Streamer {
            cluster: Arc::clone(&cluster),
            threads: Vec::with_capacity(sockets.len()),
            spill_thread: None,
        };
        for (index, socket) in sockets.into_iter().enumerate() {
            streamer
                .threads
                .push(session::spawn_link(&cluster, index, socket)?);
        }
        if cluster.spill.is_some() {
            let spill_cluster = Arc::clone(&cluster);
            let thread = std::thread::Builder::new()
                .name("pyme-spill".into())
                .spawn(move || resend_spilled(&spill_cluster))
                .map_err(|e| Error::SpillFolder(format!("cannot start a thread: {e}")))?;
            streamer.spill_thread = Some(thread);
        }
        Ok(streamer)
    }

    /// Number of servers.
    pub fn n_servers(&self) -> usize {
        self.cluster.links.len()
    }

    /// The servers, as given.
    pub fn servers(&self) -> impl Iterator<Item = &str> {
        self.cluster.links.iter().map(|link| link.server.as_str())
    }

    /// Queues a copy of `data` under `name` on the server the distribution picks
    /// for `(name, index)`. See [`Streamer::put_bytes`].
    pub fn put(&self, name: &str, data: &[u8], index: Option<i64>) -> Result<(), Error> {
        crate::name::check_name(name)?;
        let server = self.choose(name, index)?;
        let data = self.cluster.buffers.copy(data);
        self.enqueue(server, Job::new(name, data, index), true)
    }

    /// Makes `count` buffers for copies of files of `file_bytes` bytes ready
    /// now, so that the first copying `put`s of an acquisition do not fault in
    /// fresh memory (1.6 to 30 ms for an 8 MiB frame on the test machine, against
    /// under 1 ms for a recycled buffer). Call it when the camera is armed,
    /// with the frame size and the number of frames expected in flight at once.
    /// The buffers count against the queue byte limit (all servers together),
    /// and files under 64 KiB are copied into plain allocations, so this may
    /// prepare fewer; it returns how many it prepared. Zero-copy puts need no
    /// buffers.
    pub fn prepare_buffers(&self, file_bytes: usize, count: usize) -> usize {
        self.cluster.buffers.prepare(file_bytes, count)
    }

    /// Queues `data` under `name` without copying it (`Bytes` can wrap a
    /// `Vec<u8>` or any owner). Blocks while the chosen queue is full, up to the
    /// put timeout. `Ok`: the file will get exactly one outcome. `Err`: nothing
    /// was queued and no outcome will follow.
    pub fn put_bytes(&self, name: &str, data: Bytes, index: Option<i64>) -> Result<(), Error> {
        crate::name::check_name(name)?;
        let server = self.choose(name, index)?;
        self.enqueue(server, Job::new(name, data, index), true)
    }

    /// Queues a copy of `data` under `name` on server `stream`, bypassing the
    /// distribution and failover at put time.
    pub fn put_stream(&self, stream: usize, name: &str, data: &[u8]) -> Result<(), Error> {
        self.put_stream_bytes(stream, name, self.cluster.buffers.copy(data))
    }

    /// Queues `data` under `name` on server `stream` without copying it.
    pub fn put_stream_bytes(&self, stream: usize, name: &str, data: Bytes) -> Result<(), Error> {
        crate::name::check_name(name)?;
        let n_servers = self.n_servers();
        if stream >= n_servers {
            return Err(Error::NoSuchStream {
                index: stream,
                n_servers,
            });
        }
        self.enqueue(stream, Job::new(name, data, None), false)
    }

    /// Waits until every file accepted so far has its outcome (or waits in the
    /// spill folder), up to `timeout` (`None`: as long as it takes).
    pub fn flush(&self, timeout: Option<Duration>) -> Result<(), Error> {
        let deadline = timeout.map(|timeout| Instant::now() + timeout);
        self.cluster
            .wait_idle(deadline)
            .map_err(|pending| Error::FlushTimeout { pending })
    }

    /// The statistics now.
    pub fn stats(&self) -> Stats {
        let mut stats = self.cluster.counters().snapshot();
        for link in &self.cluster.links {
            let (files, bytes, in_flight) = link.depth();
            stats.queue_files += files;
            stats.queue_bytes += bytes;
            stats.in_flight_files += in_flight;
        }
        stats.spilled = self.cluster.spilled_count();
        stats
    }

    /// Sends everything queued, waits for the answer to every request, joins
    /// every thread and returns the final statistics: each accepted file is
    /// then either acknowledged or failed (`files_queued == acknowledged + failed`).
    /// Files still in the spill folder (no server came back) fail with
    /// [`Error::Spilled`] and stay in the folder; `spilled` counts them.
    pub fn close(mut self) -> Stats {
        self.close_all()
    }

    fn close_all(&mut self) -> Stats {
        self.cluster.accepting.store(false, Ordering::SeqCst);
        if let Some(thread) = self.spill_thread.take() {
            self.cluster.stop_spilling();
            let _ = thread.join();
        }
        // Links must keep running until every file has its outcome: a failing
        // link hands its files to the others.
        let _ = self.cluster.wait_idle(None);
        let spilled = self.cluster.fail_spilled();
        for link in &self.cluster.links {
            link.start_close();
        }
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
        self.cluster.buffers.stop();
        Stats {
            spilled,
            ..self.stats()
        }
    }

    /// Ends the stream of server 0 with the end-of-stream sentinel, then closes.
    pub(crate) fn finalize(mut self, name: &str) -> Result<Stats, Error> {
        crate::name::check_name(name)?;
        self.cluster.accepting.store(false, Ordering::SeqCst);
        let mut job = Job::new(name, Bytes::new(), None);
        job.last = true;
        self.cluster
            .admit(0, job, None)
            .map_err(|refused| refused.error)?;
        Ok(self.close_all())
    }

    fn choose(&self, name: &str, index: Option<i64>) -> Result<usize, Error> {
        let n_servers = self.n_servers();
        let chosen = self.cluster.distribution.choose(n_servers, index, name);
        if chosen >= n_servers {
            return Err(Error::DistributionOutOfRange { chosen, n_servers });
        }
        Ok(chosen)
    }

    fn enqueue(&self, server: usize, job: Job, may_move: bool) -> Result<(), Error> {
        if !self.cluster.accepting.load(Ordering::SeqCst) {
            return Err(Error::Closed);
        }
        self.cluster.enqueue(server, job, may_move)
    }
}

impl Drop for Streamer {
    fn drop(&mut self) {
        if !self.threads.is_empty() {
            self.close_all();
        }
    }
}

fn check_address(server: &str) -> Result<(), Error> {
    match server.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => Ok(()),
        _ => Err(Error::BadServerAddress(server.to_owned())),
    }
}
