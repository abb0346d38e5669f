//! `Stream`: a connection to one data server, as PYME's `Stream` is: a
//! streamer of one.

use std::time::Duration;

use bytes::Bytes;

use super::streamer::{CloseError, StatsProbe, Streamer};
use crate::outcome::Stats;
use crate::{Error, StreamerOptions};

/// A connection to one PYME data server (PYME's `Stream`): a streamer of one.
///
/// `put` may be called from several threads at once.
pub struct Stream {
    streamer: Streamer,
}

impl Stream {
    /// Connects to `server` (`host:port`) with the options' queue limits,
    /// filter, completion callback and timeouts (servers and distribution in
    /// `options` are ignored).
    ///
    /// A server that cannot be reached is an error ([`Error::Connect`]), as
    /// PYME's `Stream` is, unless the options have a spill folder: the stream
    /// then opens with its server [`crate::ServerState::Down`], spills what
    /// is put, and sends it once the server can be reached.
    pub fn connect(server: &str, options: &StreamerOptions) -> Result<Stream, Error> {
        let mut options = options.clone();
        options.servers = vec![server.to_owned()];
        if options.spill_dir.is_none() {
            options.require_all_servers = true;
        }
        Ok(Stream {
            streamer: Streamer::new(options)?,
        })
    }

    /// The state of the server now (see [`Streamer::server_state`]).
    pub fn server_state(&self) -> crate::ServerState {
        self.streamer
            .server_state(0)
            .unwrap_or(crate::ServerState::Down)
    }

    /// Whether this process is a child forked after the stream was opened:
    /// see [`Streamer::is_forked`].
    pub fn is_forked(&self) -> bool {
        self.streamer.is_forked()
    }

    /// The server, as `host:port`.
    pub fn server(&self) -> &str {
        self.streamer.servers().next().unwrap_or_default()
    }

    /// Queues a copy of `data` under `name`. See [`Streamer::put_bytes`].
    pub fn put(&self, name: &str, data: &[u8]) -> Result<(), Error> {
        self.streamer.put_stream(0, name, data)
    }

    /// Queues `data` under `name` without copying it.
    pub fn put_bytes(&self, name: &str, data: Bytes) -> Result<(), Error> {
        self.streamer.put_stream_bytes(0, name, data)
    }

    /// Waits until every accepted file has its outcome.
    pub fn flush(&self, timeout: Option<Duration>) -> Result<(), Error> {
        self.streamer.flush(timeout)
    }

    pub fn stats(&self) -> Stats {
        self.streamer.stats()
    }

    /// Reads the statistics while another thread finalizes or closes this stream.
    pub fn stats_probe(&self) -> StatsProbe {
        self.streamer.stats_probe()
    }

    /// Sends the end-of-stream sentinel (an empty `PUT /<name>` with
    /// `Connection: close`) after everything queued, then closes as [`Stream::close`].
    /// [`Error::InCallback`] from inside a completion callback (the stream
    /// then closes in the background, without the sentinel).
    pub fn finalize(self, name: &str) -> Result<Stats, Error> {
        self.streamer.finalize(name)
    }

    /// Sends everything queued, waits for every answer, joins the threads and
    /// returns the statistics. From inside a completion callback, as
    /// [`Streamer::close`]: closes in the background.
    pub fn close(self) -> Stats {
        self.streamer.close()
    }

    /// As [`Streamer::close_timeout`]: returns within `limit` plus
    /// [`super::streamer::CLOSE_MARGIN`], giving up what is still pending.
    pub fn close_timeout(self, limit: Duration) -> Result<Stats, Box<CloseError>> {
        self.streamer.close_timeout(limit)
    }
}
