//! Criterion benchmarks of the client's hot paths, through the public API only:
//! request framing, answer parsing, name validation, the distribution choice, and
//! `put` handed through the queue to an in-process data server that discards bodies.
//!
//! Run with `cargo bench --bench hot_paths` (about two minutes). The machine the
//! figures in docs/PERFORMANCE.md come from is shared and has two cores: compare
//! medians, and only figures taken in the same run.

use std::fmt::Write as _;
use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use pyme_streaming::protocol::{self, ResponseReader};
use pyme_streaming::server::{DataServer, ServerConfig};
use pyme_streaming::{
    name, Bytes, Distribution, FileInfo, FilterError, FnFilter, NameHash, RoundRobin, Streamer,
    StreamerOptions,
};

/// A name as PYMEAcquire writes them.
const TYPICAL_NAME: &str = "series/frame00001.pzf";
/// The answer a data server gives to every successful PUT.
const OK_ANSWER: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
/// Answers read back from one buffer, as the receiver thread sees them when pipelined.
const PIPELINED_ANSWERS: usize = 1000;
/// The size of the small files of the end-to-end benchmarks.
const SMALL_FILE: usize = 4 * 1024;
/// How long `flush` may take before the benchmark is declared broken.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(60);

/// A valid name of exactly 200 bytes, in folders as a long acquisition path would be.
fn long_name() -> String {
    let mut name = String::from("2026_11_27/cells_plate3/well_b07/position_0012/");
    while name.len() < 190 {
        name.push_str("sub_dir-");
    }
    name.truncate(190);
    name.push_str("/f0001.pzf");
    assert_eq!(name.len(), 200);
    name
}

fn protocol_benches(c: &mut Criterion) {
    let mut group = c.benchmark_group("protocol");
    group.throughput(Throughput::Elements(1));

    let mut head = Vec::with_capacity(256);
    group.bench_function("write_put_head", |b| {
        b.iter(|| {
            head.clear();
            protocol::write_put_head(
                &mut head,
                black_box(TYPICAL_NAME),
                black_box(8 << 20),
                None,
                false,
            );
            black_box(head.len())
        })
    });

    group.bench_function("parse_response_head", |b| {
        b.iter(|| protocol::parse_response_head(black_box(OK_ANSWER)).unwrap())
    });

    let answers = OK_ANSWER.repeat(PIPELINED_ANSWERS);
    group.throughput(Throughput::Elements(PIPELINED_ANSWERS as u64));
    group.bench_function("response_reader_1000_pipelined", |b| {
        // The reader's buffer is made once per connection: outside the measurement.
        b.iter_batched(
            || ResponseReader::new(answers.as_slice()),
            |mut reader| {
                for _ in 0..PIPELINED_ANSWERS {
                    black_box(reader.read_response().unwrap());
                }
            },
            BatchSize::LargeInput,
        )
    });
    group.finish();
}

fn name_benches(c: &mut Criterion) {
    let mut group = c.benchmark_group("name");
    group.throughput(Throughput::Elements(1));
    group.bench_function("validate_typical", |b| {
        b.iter(|| name::validate(black_box(TYPICAL_NAME)).unwrap())
    });
    let long = long_name();
    group.bench_function("validate_200_bytes", |b| {
        b.iter(|| name::validate(black_box(&long)).unwrap())
    });
    group.finish();
}

fn distribution_benches(c: &mut Criterion) {
    let mut group = c.benchmark_group("distribution");
    group.throughput(Throughput::Elements(1));
    let mut index = 0i64;
    group.bench_function("round_robin", |b| {
        b.iter(|| {
            index += 1;
            RoundRobin.choose(black_box(3), Some(index), black_box(TYPICAL_NAME))
        })
    });
    group.bench_function("name_hash", |b| {
        b.iter(|| NameHash.choose(black_box(3), None, black_box(TYPICAL_NAME)))
    });
    group.finish();
}

/// One in-process data server that discards bodies, and its temporary root.
struct DiscardServer {
    server: DataServer,
    _root: tempfile::TempDir,
}

impl DiscardServer {
    fn start() -> DiscardServer {
        let root = tempfile::tempdir().expect("temporary root");
        let server = DataServer::start(ServerConfig {
            root: root.path().to_owned(),
            port: 0,
            discard: true,
            ..ServerConfig::default()
        })
        .expect("start the data server");
        DiscardServer {
            server,
            _root: root,
        }
    }

    fn address(&self) -> String {
        self.server.local_addr().to_string()
    }
}

/// How one file is handed to the streamer.
#[derive(Clone, Copy)]
enum Handoff {
    /// `put`: the library copies the caller's slice.
    Copy,
    /// `put_bytes`: the library keeps a reference to a shared buffer.
    Shared,
}

/// Puts `files` files of `body` (unique names from `next_name` on), then waits for
/// every answer: the time from the first `put` to the end of `flush`.
fn put_batch(
    streamer: &Streamer,
    body: &Bytes,
    handoff: Handoff,
    next_name: &mut u64,
    files: u64,
) -> Duration {
    let mut name = String::with_capacity(64);
    let started = Instant::now();
    for _ in 0..files {
        name.clear();
        write!(name, "bench/frame{:09}.pzf", *next_name).unwrap();
        let index = Some(*next_name as i64);
        *next_name += 1;
        match handoff {
            Handoff::Copy => streamer.put(&name, body, index),
            Handoff::Shared => streamer.put_bytes(&name, body.clone(), index),
        }
        .expect("put");
    }
    streamer.flush(Some(FLUSH_TIMEOUT)).expect("flush");
    started.elapsed()
}

/// Benchmarks `put` + `flush` of 4 KiB files against a discarding server,
/// `iter_custom` so that each sample is one batch of puts followed by one flush.
fn bench_put(c: &mut Criterion, id: &str, options: StreamerOptions, handoff: Handoff) {
    let server = DiscardServer::start();
    let streamer = Streamer::new(options.server(server.address())).expect("streamer");
    let body = Bytes::from(vec![0x5a; SMALL_FILE]);
    let mut next_name = 0u64;
    let mut group = c.benchmark_group("streamer");
    group
        .throughput(Throughput::Elements(1))
        .sample_size(20)
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(6));
    group.bench_function(id, |b| {
        b.iter_custom(|files| put_batch(&streamer, &body, handoff, &mut next_name, files))
    });
    group.finish();
    let stats = streamer.close();
    if !stats.all_acknowledged() {
        eprintln!("warning: {id}: not every file was acknowledged: {stats:?}");
    }
    server.server.shutdown();
}

fn copy_filter(_file: &FileInfo<'_>, data: &[u8], out: &mut Vec<u8>) -> Result<(), FilterError> {
    out.extend_from_slice(data);
    Ok(())
}

fn streamer_benches(c: &mut Criterion) {
    bench_put(c, "put_4KiB", StreamerOptions::new(), Handoff::Copy);
    bench_put(c, "put_bytes_4KiB", StreamerOptions::new(), Handoff::Shared);
    bench_put(
        c,
        "put_4KiB_copy_filter",
        StreamerOptions::new().filter(FnFilter(copy_filter)),
        Handoff::Copy,
    );
}

/// A reader allocates its buffer (64 KiB) once per connection: measured apart
/// from the pipelined figure.
fn reader_setup_bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("protocol");
    group.bench_function("response_reader_new", |b| {
        b.iter(|| ResponseReader::new(black_box(OK_ANSWER)))
    });
    group.finish();
}

criterion_group! {
    name = micro;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2));
    targets = protocol_benches, reader_setup_bench, name_benches, distribution_benches
}
criterion_group!(end_to_end, streamer_benches);
criterion_main!(micro, end_to_end);
