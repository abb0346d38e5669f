//! The subcommands of `pyme-stream`, one file each, and what they share.

pub mod bench;
pub mod camera;
pub mod demo;
pub mod discover;
pub mod monitor;
pub mod put;
pub mod pzf;
pub mod report;
pub mod serve;
pub mod watch;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use pyme_streaming::{BuiltinDistribution, Stats, StreamerOptions};

pub type CliResult<T> = Result<T, Box<dyn std::error::Error>>;

/// Options every streaming subcommand takes.
#[derive(clap::Args, Debug, Clone)]
pub struct StreamArgs {
    /// Servers, comma separated: HOST:PORT[,HOST:PORT...]
    #[arg(long, value_delimiter = ',', required_unless_present = "serverfilter")]
    pub servers: Vec<String>,
    /// Find the servers of this cluster by name (mDNS and the local registry)
    /// instead of listing them.
    #[arg(long, value_name = "NAME")]
    pub serverfilter: Option<String>,
    /// With --serverfilter: how long to listen for mDNS answers, in milliseconds.
    #[arg(long, default_value_t = 2000)]
    pub discovery_wait_ms: u64,
    /// With --serverfilter: the local registry file [default: _pyme-http.sqlite in the temporary folder]
    #[arg(long)]
    pub registry: Option<std::path::PathBuf>,
    /// With --serverfilter: do not browse mDNS (no multicast; registry only).
    #[arg(long)]
    pub no_mdns: bool,
    /// With --serverfilter: run discovery again every this many milliseconds
    /// during the run (live membership: servers found join, servers gone are
    /// marked down); 0: only at start.
    #[arg(long, default_value_t = 10_000)]
    pub discovery_period_ms: u64,
    /// round-robin, random, hash, least-loaded or fixed:N
    #[arg(long, default_value = "round-robin")]
    pub distribution: BuiltinDistribution,
    /// Where round-robin starts: frame i goes to server (i + N) % servers (0: as PYME)
    /// [default: a random start]
    #[arg(long)]
    pub round_robin_start: Option<usize>,
    /// Queue limit per server, in files.
    #[arg(long, default_value_t = pyme_streaming::options::DEFAULT_QUEUE_FILES)]
    pub queue_files: usize,
    /// Queue limit per server, in bytes.
    #[arg(long, default_value_t = pyme_streaming::options::DEFAULT_QUEUE_BYTES)]
    pub queue_bytes: u64,
    /// Memory budget of the streamer, in bytes: everything it holds for files,
    /// all servers together (a put finding it full acts as on a full queue).
    #[arg(long, default_value_t = pyme_streaming::options::DEFAULT_MEMORY_LIMIT)]
    pub memory_limit: u64,
    /// Response timeout in milliseconds: a server silent this long while answers are due is failed.
    #[arg(long, default_value_t = 30_000)]
    pub timeout_ms: u64,
    /// Connect timeout in milliseconds.
    #[arg(long, default_value_t = 5_000)]
    pub connect_timeout_ms: u64,
    /// What `put` does when the queue is full: wait for room, or fail at once
    /// (the file is counted as dropped).
    #[arg(long, value_enum, default_value_t = Backpressure::Block)]
    pub backpressure: Backpressure,
    /// With `block`: give up waiting after this many milliseconds (default: never).
    #[arg(long)]
    pub put_timeout_ms: Option<u64>,
    /// Do not move files of a failed server to the live ones: fail them.
    #[arg(long)]
    pub no_failover: bool,
    /// Times a file answered 5xx is sent again before it fails.
    #[arg(long, default_value_t = pyme_streaming::options::DEFAULT_MAX_RETRIES)]
    pub retries: u32,
    /// How often an idle sender looks at its queue (at most 4 times) while files
    /// come at most 4 such intervals apart, in microseconds (a put then makes no
    /// system call); 0: put always wakes the sender.
    #[arg(long, default_value_t = pyme_streaming::options::DEFAULT_SENDER_POLL.as_micros() as u64)]
    pub sender_poll_us: u64,
    /// Ride through a whole-cluster outage: files that cannot be delivered
    /// wait in this folder and are sent when a server is back.
    #[arg(long)]
    pub spill_dir: Option<std::path::PathBuf>,
    /// Filter run on every file before it is sent: gzip (transport
    /// compression, decoded by the server) or PZF encoding of uint16 frames
    /// (raw, Huffman, or square-root quantized + Huffman).
    #[arg(long, value_enum, default_value_t = FilterArg::None)]
    pub filter: FilterArg,
    /// With a pzf filter: the frame shape, ROWSxCOLS or ROWSxCOLSxDEPTH, uint16 pixels.
    #[arg(long)]
    pub shape: Option<String>,
    /// With pzf-huffman-sqrt: the quantization offset (the camera's dark level).
    #[arg(long, default_value_t = 100.0)]
    pub quant_offset: f32,
    /// With pzf-huffman-sqrt: the quantization scale (near 1 keeps the error within shot noise).
    #[arg(long, default_value_t = 1.0)]
    pub quant_scale: f32,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum FilterArg {
    None,
    Gzip,
    PzfRaw,
    PzfHuffman,
    PzfHuffmanSqrt,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backpressure {
    Block,
    FailFast,
}

impl StreamArgs {
    pub fn options(&self) -> CliResult<StreamerOptions> {
        let options = StreamerOptions::new()
            .servers(self.servers.iter().cloned())
            .shared_distribution(self.distribution.into_distribution())
            .round_robin_start(self.round_robin_start)
            .queue_limits(self.queue_files, self.queue_bytes)
            .memory_limit(self.memory_limit)
            .response_timeout(Duration::from_millis(self.timeout_ms))
            .connect_timeout(Duration::from_millis(self.connect_timeout_ms))
            .put_timeout(match self.backpressure {
                Backpressure::FailFast => Some(Duration::ZERO),
                Backpressure::Block => self.put_timeout_ms.map(Duration::from_millis),
            })
            .failover(!self.no_failover)
            .max_retries(self.retries)
            .sender_poll(Some(Duration::from_micros(self.sender_poll_us)));
        let options = match &self.spill_dir {
            Some(folder) => options.spill_dir(folder),
            None => options,
        };
        let options = options.shared_filter(self.filter()?);
        Ok(match &self.serverfilter {
            Some(serverfilter) => {
                let mut discovery =
                    pyme_streaming::discovery::DiscoveryOptions::for_cluster(serverfilter);
                discovery.mdns_wait = Duration::from_millis(self.discovery_wait_ms);
                discovery.use_mdns = !self.no_mdns;
                if let Some(registry) = &self.registry {
                    discovery.registry_path = registry.clone();
                }
                options
                    .discovery(discovery)
                    .discovery_period(Duration::from_millis(self.discovery_period_ms))
            }
            None => options,
        })
    }

    /// The frame size the pzf filters expect, in bytes.
    pub fn frame_bytes(&self) -> CliResult<Option<usize>> {
        if !self.is_pzf() {
            return Ok(None);
        }
        let shape = self
            .shape
            .as_deref()
            .ok_or("a pzf filter needs --shape ROWSxCOLS")?;
        let (rows, cols, depth) = pyme_streaming::pzf::files::parse_shape(shape)?;
        Ok(Some(rows as usize * cols as usize * depth as usize * 2))
    }

    fn is_pzf(&self) -> bool {
        matches!(
            self.filter,
            FilterArg::PzfRaw | FilterArg::PzfHuffman | FilterArg::PzfHuffmanSqrt
        )
    }

    fn filter(&self) -> CliResult<Option<pyme_streaming::filter::SharedFilter>> {
        use pyme_streaming::filter::{gzip::GzipFilter, pzf::PzfFilter};
        use pyme_streaming::pzf::{Compression, DataFormat, EncodeParams, Quantization};
        if self.filter == FilterArg::None {
            return Ok(None);
        }
        if self.filter == FilterArg::Gzip {
            return Ok(Some(Arc::new(GzipFilter::default())));
        }
        let shape = self
            .shape
            .as_deref()
            .ok_or("a pzf filter needs --shape ROWSxCOLS")?;
        let (rows, cols, depth) = pyme_streaming::pzf::files::parse_shape(shape)?;
        let mut params = EncodeParams::new(DataFormat::U16, rows, cols);
        params.depth = depth;
        params.compression = match self.filter {
            FilterArg::PzfRaw => Compression::Raw,
            _ => Compression::Huffman,
        };
        if self.filter == FilterArg::PzfHuffmanSqrt {
            params.quantization = Quantization::Sqrt;
            params.quant_offset = self.quant_offset;
            params.quant_scale = self.quant_scale;
        }
        Ok(Some(Arc::new(PzfFilter::new(params)?)))
    }
}

/// Counts outcomes for a progress bar and remembers the first failures.
#[derive(Default)]
pub struct Tally {
    pub done: AtomicU64,
    pub failed: AtomicU64,
    pub failures: std::sync::Mutex<Vec<String>>,
}

impl Tally {
    /// Options with a completion callback that feeds this tally.
    pub fn attach(self: &Arc<Self>, options: StreamerOptions) -> StreamerOptions {
        let tally = Arc::clone(self);
        options.on_complete(move |outcome| {
            tally.done.fetch_add(1, Ordering::Relaxed);
            if let pyme_streaming::OutcomeResult::Failed(error) = outcome.result {
                tally.failed.fetch_add(1, Ordering::Relaxed);
                let mut failures = tally.failures.lock().unwrap_or_else(|e| e.into_inner());
                if failures.len() < 10 {
                    failures.push(format!("{}: {error}", outcome.name));
                }
            }
        })
    }

    pub fn print_failures(&self) {
        for failure in self
            .failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            eprintln!("failed: {failure}");
        }
    }
}

/// A progress bar on stderr (hidden when stderr is not a terminal). Its
/// message (servers up of all, files failed) is kept by `watch::Watch`.
pub fn progress_bar(total: u64, what: &str) -> ProgressBar {
    let bar = ProgressBar::new(total);
    let template =
        format!("{what} {{bar:40}} {{pos}}/{{len}} files, {{per_sec}}, eta {{eta}}, {{msg}}");
    if let Ok(style) = ProgressStyle::with_template(&template) {
        bar.set_style(style);
    }
    bar
}

/// The one-line human summary shared by `bench`, `put` and `demo`.
pub fn summary_line(stats: &Stats) -> String {
    format!(
        "acknowledged {}/{}, failed {}, lost {}",
        stats.files_acknowledged,
        stats.files_queued,
        stats.files_failed,
        stats.pending()
    )
}
