//! Many servers behind one `put`: the distribution picks a [`Stream`] for each file.
//!
//! The streamer owns one stream per server, in the order the servers were given;
//! the server index the distribution returns is a position in that list.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::distribution::{Distribution, RoundRobin};
use crate::filter::{Filter, SharedFilter};
use crate::outcome::{CompletionFn, Counters, Outcome, Reporter, Stats};
use crate::stream::{check_name, Job, Stream};
use crate::Error;

/// Default queue limit per server, in files.
pub const DEFAULT_QUEUE_FILES: usize = 256;
/// Default queue limit per server, in bytes.
pub const DEFAULT_QUEUE_BYTES: u64 = 256 * 1024 * 1024;
/// Default connect timeout.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Default time a server may take to answer before its connection is failed
/// (30 s, as the reference).
pub const DEFAULT_RESPONSE_TIMEOUT: Duration = Duration::from_secs(30);

/// How to build a [`Streamer`] (or a lone [`Stream`]).
#[derive(Clone)]
pub struct StreamerOptions {
    pub(crate) servers: Vec<String>,
    pub(crate) distribution: Arc<dyn Distribution>,
    pub(crate) filter: Option<SharedFilter>,
    pub(crate) completion: Option<CompletionFn>,
    pub(crate) queue_max_files: usize,
    pub(crate) queue_max_bytes: u64,
    pub(crate) put_timeout: Option<Duration>,
    pub(crate) connect_timeout: Duration,
    pub(crate) response_timeout: Duration,
}

impl Default for StreamerOptions {
    fn default() -> Self {
        StreamerOptions {
            servers: Vec::new(),
            distribution: Arc::new(RoundRobin),
            filter: None,
            completion: None,
            queue_max_files: DEFAULT_QUEUE_FILES,
            queue_max_bytes: DEFAULT_QUEUE_BYTES,
            put_timeout: None,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            response_timeout: DEFAULT_RESPONSE_TIMEOUT,
        }
    }
}

impl StreamerOptions {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a server, `host:port`.
    pub fn server(mut self, server: impl Into<String>) -> Self {
        self.servers.push(server.into());
        self
    }

    /// Adds servers, `host:port` each.
    pub fn servers<S: Into<String>>(mut self, servers: impl IntoIterator<Item = S>) -> Self {
        self.servers.extend(servers.into_iter().map(Into::into));
        self
    }

    /// The distribution policy (default: [`RoundRobin`]).
    pub fn distribution(mut self, distribution: impl Distribution + 'static) -> Self {
        self.distribution = Arc::new(distribution);
        self
    }

    /// The distribution policy, already shared.
    pub fn shared_distribution(mut self, distribution: Arc<dyn Distribution>) -> Self {
        self.distribution = distribution;
        self
    }

    /// The filter run on every file before it is sent (default: none).
    pub fn filter(mut self, filter: impl Filter + 'static) -> Self {
        self.filter = Some(Arc::new(filter));
        self
    }

    /// The filter, already shared.
    pub fn shared_filter(mut self, filter: Option<SharedFilter>) -> Self {
        self.filter = filter;
        self
    }

    /// Called once for every file, with its outcome (see [`CompletionFn`]).
    pub fn on_complete(mut self, completion: impl Fn(&Outcome<'_>) + Send + Sync + 'static) -> Self {
        self.completion = Some(Arc::new(completion));
        self
    }

    /// Queue limits per server: files and bytes accepted and not yet answered.
    pub fn queue_limits(mut self, max_files: usize, max_bytes: u64) -> Self {
        self.queue_max_files = max_files;
        self.queue_max_bytes = max_bytes;
        self
    }

    /// How long `put` waits for room in a full queue before it fails with
    /// [`Error::QueueFull`]; `None` (the default) waits as long as it takes.
    pub fn put_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.put_timeout = timeout;
        self
    }

    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How long a server may stay silent while answers are due before its
    /// connection is failed.
    pub fn response_timeout(mut self, timeout: Duration) -> Self {
        self.response_timeout = timeout;
        self
    }
}

/// Streams files to a cluster of PYME data servers, one persistent pipelined
/// connection per server. `put` may be called from several threads at once.
pub struct Streamer {
    streams: Vec<Stream>,
    distribution: Arc<dyn Distribution>,
    put_timeout: Option<Duration>,
}

impl Streamer {
    /// Connects to every server of `options`. A server that cannot be reached is
    /// an error naming it (and the connections already made are closed).
    pub fn new(options: StreamerOptions) -> Result<Streamer, Error> {
        if options.servers.is_empty() {
            return Err(Error::NoServers);
        }
        for server in &options.servers {
            check_address(server)?;
        }
        let counters = Arc::new(Counters::default());
        let streams = options
            .servers
            .iter()
            .enumerate()
            .map(|(index, server)| {
                let reporter = Reporter {
                    counters: Arc::clone(&counters),
                    completion: options.completion.clone(),
                };
                Stream::open(server, index, &options, reporter)
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Streamer {
            streams,
            distribution: Arc::clone(&options.distribution),
            put_timeout: options.put_timeout,
        })
    }

    /// Number of servers.
    pub fn n_servers(&self) -> usize {
        self.streams.len()
    }

    /// The servers, as given.
    pub fn servers(&self) -> impl Iterator<Item = &str> {
        self.streams.iter().map(Stream::server)
    }

    /// Queues a copy of `data` under `name` on the server the distribution picks
    /// for `(name, index)`. See [`Streamer::put_bytes`].
    pub fn put(&self, name: &str, data: &[u8], index: Option<i64>) -> Result<(), Error> {
        check_name(name)?;
        let server = self.choose(name, index)?;
        self.enqueue(server, name, Bytes::copy_from_slice(data), index)
    }

    /// Queues `data` under `name` without copying it (`Bytes` can wrap a
    /// `Vec<u8>` or any owner). Blocks while the chosen queue is full, up to the
    /// put timeout. `Ok`: the file will get exactly one outcome. `Err`: nothing
    /// was queued and no outcome will follow.
    pub fn put_bytes(&self, name: &str, data: Bytes, index: Option<i64>) -> Result<(), Error> {
        check_name(name)?;
        let server = self.choose(name, index)?;
        self.enqueue(server, name, data, index)
    }

    /// Queues a copy of `data` under `name` on server `stream`, bypassing the distribution.
    pub fn put_stream(&self, stream: usize, name: &str, data: &[u8]) -> Result<(), Error> {
        check_name(name)?;
        if stream >= self.streams.len() {
            return Err(Error::NoSuchStream {
                index: stream,
                n_servers: self.streams.len(),
            });
        }
        self.enqueue(stream, name, Bytes::copy_from_slice(data), None)
    }

    /// Waits until every file accepted so far has its outcome, up to `timeout`
    /// (`None`: as long as it takes).
    pub fn flush(&self, timeout: Option<Duration>) -> Result<(), Error> {
        let deadline = timeout.map(|timeout| Instant::now() + timeout);
        for stream in &self.streams {
            if stream.wait_idle(deadline).is_err() {
                return Err(Error::FlushTimeout {
                    pending: self.stats().pending(),
                });
            }
        }
        Ok(())
    }

    /// The statistics now.
    pub fn stats(&self) -> Stats {
        let mut stats = self.streams[0].stats();
        for stream in &self.streams[1..] {
            let (files, bytes, in_flight) = stream.depth();
            stats.queue_files += files;
            stats.queue_bytes += bytes;
            stats.in_flight_files += in_flight;
        }
        stats
    }

    /// Sends everything queued, waits for the answer to every request, joins
    /// every thread and returns the final statistics: each accepted file is
    /// then either acknowledged or failed (`files_queued == acknowledged + failed`).
    pub fn close(mut self) -> Stats {
        self.close_all()
    }

    fn close_all(&mut self) -> Stats {
        for stream in &self.streams {
            stream.start_close();
        }
        for stream in &mut self.streams {
            stream.join();
        }
        self.stats()
    }

    fn choose(&self, name: &str, index: Option<i64>) -> Result<usize, Error> {
        let n_servers = self.streams.len();
        let chosen = self.distribution.choose(n_servers, index, name);
        if chosen >= n_servers {
            return Err(Error::DistributionOutOfRange { chosen, n_servers });
        }
        Ok(chosen)
    }

    fn enqueue(&self, server: usize, name: &str, data: Bytes, index: Option<i64>) -> Result<(), Error> {
        let job = Job {
            name: name.into(),
            index,
            data,
            last: false,
        };
        let deadline = self.put_timeout.map(|timeout| Instant::now() + timeout);
        self.streams[server].enqueue(job, deadline)
    }
}

impl Drop for Streamer {
    fn drop(&mut self) {
        self.close_all();
    }
}

fn check_address(server: &str) -> Result<(), Error> {
    match server.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => Ok(()),
        _ => Err(Error::BadServerAddress(server.to_owned())),
    }
}
