//! The chunked-Huffman data section: `u16 n_chunks`, then per chunk `u32
//! compressed_len`, `u32 raw_len` and the block. The raw bytes are cut into pieces
//! of `ceil(total / n_chunks)` bytes, coded and decoded on several threads
//! (scoped, named `pzf-chunk`, all joined before returning).

use std::num::NonZeroUsize;
use std::thread;

use super::huffman::{self, EncodePlan, SubSource, SymbolSource};
use super::PzfError;

/// Below this many bytes a frame is coded on the calling thread alone.
const PARALLEL_MIN_BYTES: usize = 256 * 1024;
/// Bytes of a chunk's `compressed_len` and `raw_len`.
const CHUNK_HEADER: usize = 8;

fn cores() -> usize {
    thread::available_parallelism().map_or(1, NonZeroUsize::get)
}

/// Appends the chunked section of `source` cut into `chunks` pieces (0: one per
/// core), coded on several threads when `parallel`, else on the calling thread
/// (then nothing is allocated and no thread is started; the bytes are the same).
pub fn encode_into<S: SymbolSource + ?Sized>(
    source: &S,
    chunks: u16,
    parallel: bool,
    out: &mut Vec<u8>,
) -> Result<(), PzfError> {
    let total = source.len();
    let wanted = if chunks == 0 {
        cores().min(usize::from(u16::MAX))
    } else {
        usize::from(chunks)
    };
    let piece = total.div_ceil(wanted).max(1);
    if u32::try_from(piece).is_err() {
        return Err(PzfError::InvalidParams(
            "chunks over 4 GiB: use more chunks".into(),
        ));
    }
    if !parallel {
        return encode_here(source, piece, out);
    }
    let ranges: Vec<(usize, usize)> = (0..total)
        .step_by(piece)
        .map(|s| (s, piece.min(total - s)))
        .collect();
    let threads = if total < PARALLEL_MIN_BYTES {
        1
    } else {
        cores()
    };

    let mut plans: Vec<Option<EncodePlan>> = ranges.iter().map(|_| None).collect();
    let mut jobs: Vec<_> = ranges.iter().zip(plans.iter_mut()).collect();
    in_parallel(&mut jobs, threads, |(&(start, len), plan)| {
        let sub = SubSource { source, start, len };
        **plan = Some(EncodePlan::new(&huffman::histogram(&sub)));
    });
    let plans: Vec<EncodePlan> = plans.into_iter().map(|p| p.expect("planned")).collect();

    out.extend_from_slice(&(ranges.len() as u16).to_le_bytes());
    let body_len: usize = plans.iter().map(|p| CHUNK_HEADER + p.block_len()).sum();
    let start = out.len();
    out.resize(start + body_len, 0);
    let mut rest = &mut out[start..];
    let mut jobs = Vec::with_capacity(plans.len());
    for (plan, &(begin, len)) in plans.iter().zip(&ranges) {
        let block_len = u32::try_from(plan.block_len()).map_err(|_| PzfError::TooLarge)?;
        let (head, tail) = rest.split_at_mut(CHUNK_HEADER);
        head[..4].copy_from_slice(&block_len.to_le_bytes());
        head[4..].copy_from_slice(&(len as u32).to_le_bytes());
        let (block, tail) = tail.split_at_mut(plan.block_len());
        rest = tail;
        jobs.push((plan, (begin, len), block));
    }
    in_parallel(&mut jobs, threads, |(plan, (start, len), block)| {
        plan.write(
            &SubSource {
                source,
                start: *start,
                len: *len,
            },
            block,
        );
    });
    Ok(())
}

/// The chunked section, one chunk after the other on the calling thread.
fn encode_here<S: SymbolSource + ?Sized>(
    source: &S,
    piece: usize,
    out: &mut Vec<u8>,
) -> Result<(), PzfError> {
    let total = source.len();
    let count = total.div_ceil(piece);
    out.extend_from_slice(&(count as u16).to_le_bytes());
    for start in (0..total).step_by(piece) {
        let len = piece.min(total - start);
        let sub = SubSource { source, start, len };
        let plan = EncodePlan::new(&huffman::histogram(&sub));
        let block_len = u32::try_from(plan.block_len()).map_err(|_| PzfError::TooLarge)?;
        out.extend_from_slice(&block_len.to_le_bytes());
        out.extend_from_slice(&(len as u32).to_le_bytes());
        let begin = out.len();
        out.resize(begin + plan.block_len(), 0);
        plan.write(&sub, &mut out[begin..]);
    }
    Ok(())
}

/// One chunk of a section being decoded.
struct Chunk<'a> {
    block: &'a [u8],
    raw_len: usize,
}

/// Reads the chunk table, checking every length against the input and `total`.
fn read_chunks(data: &[u8], total: usize) -> Result<Vec<Chunk<'_>>, PzfError> {
    let count = data.get(..2).ok_or(PzfError::Truncated("chunk table"))?;
    let count = usize::from(u16::from_le_bytes([count[0], count[1]]));
    if data.len() < 2 + count * CHUNK_HEADER {
        return Err(PzfError::Truncated("chunk table"));
    }
    let mut chunks = Vec::with_capacity(count);
    let mut pos = 2;
    let mut raw_total = 0usize;
    for _ in 0..count {
        let field = |at: usize| {
            data.get(at..at + 4)
                .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")))
        };
        let (Some(compressed), Some(raw_len)) = (field(pos), field(pos + 4)) else {
            return Err(PzfError::Truncated("chunk table"));
        };
        pos += CHUNK_HEADER;
        let block = data
            .get(pos..pos + compressed as usize)
            .ok_or(PzfError::Truncated("chunk"))?;
        pos += block.len();
        let raw_len = raw_len as usize;
        huffman::check_capacity(block.len(), raw_len)?;
        raw_total = raw_total.saturating_add(raw_len);
        chunks.push(Chunk { block, raw_len });
    }
    if raw_total != total {
        return Err(PzfError::Corrupt(format!(
            "chunks hold {raw_total} bytes, the frame {total}"
        )));
    }
    Ok(chunks)
}

/// Checks, before anything is allocated, that `data` can hold `total` decoded bytes.
pub fn check_capacity(data: &[u8], total: usize) -> Result<(), PzfError> {
    read_chunks(data, total).map(drop)
}

/// Decodes a chunked section into `out` (exactly the decoded size).
pub fn decode_into(data: &[u8], out: &mut [u8]) -> Result<(), PzfError> {
    let chunks = read_chunks(data, out.len())?;
    let mut jobs = Vec::with_capacity(chunks.len());
    let mut rest = out;
    for chunk in &chunks {
        let (dst, tail) = rest.split_at_mut(chunk.raw_len);
        rest = tail;
        jobs.push((chunk, dst, Ok(())));
    }
    let threads = if data.len() < PARALLEL_MIN_BYTES / 4 {
        1
    } else {
        cores()
    };
    in_parallel(&mut jobs, threads, |(chunk, dst, result)| {
        *result = huffman::decode_into(chunk.block, dst).map(drop);
    });
    for (_, _, result) in jobs {
        result?;
    }
    Ok(())
}

/// Runs `work` on every job, spread over at most `threads` threads in contiguous groups.
fn in_parallel<T: Send>(jobs: &mut [T], threads: usize, work: impl Fn(&mut T) + Sync) {
    let threads = threads.clamp(1, jobs.len().max(1));
    if threads == 1 {
        jobs.iter_mut().for_each(&work);
        return;
    }
    let group = jobs.len().div_ceil(threads);
    let work = &work;
    thread::scope(|scope| {
        let mut groups = jobs.chunks_mut(group);
        let first = groups.next();
        for g in groups {
            // Only when the system has no thread left; in the streamer a filter's
            // panic fails that one file (see `stream::apply_filter`).
            thread::Builder::new()
                .name("pzf-chunk".into())
                .spawn_scoped(scope, move || g.iter_mut().for_each(work))
                .expect("spawn pzf-chunk thread");
        }
        if let Some(g) = first {
            g.iter_mut().for_each(work);
        }
    });
}
