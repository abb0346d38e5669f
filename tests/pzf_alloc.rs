//! The steady state allocates nothing: once buffers have grown to a frame's size,
//! encoding, decoding and filtering more frames makes no heap allocation; and
//! encoding a raw file holds a few frames in memory, not the file.
//! (In a binary of their own, one test at a time, so no other thread allocates meanwhile.)

mod common;

use std::sync::Mutex;

use common::counting::{allocations, live_bytes, peak_bytes, reset_peak, Counting};
use pyme_streaming::filter::gzip::GzipFilter;
use pyme_streaming::filter::pzf::PzfFilter;
use pyme_streaming::filter::{FileInfo, Filter};
use pyme_streaming::pzf::files::encode_raw_file;
use pyme_streaming::pzf::{decode_into, Compression, DataFormat, EncodeParams, Quantization};

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Held by each test: the counters are global, so the tests must not overlap.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

#[test]
fn steady_state_makes_no_allocation() {
    let _alone = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut rng = fastrand::Rng::with_seed(1);
    let frames: Vec<Vec<u8>> = (0..3)
        .map(|_| {
            // 512 KiB frames: large enough for pair coding and chunks.
            (0..512 * 512)
                .flat_map(|_| (100 + rng.u16(..60)).to_le_bytes())
                .collect()
        })
        .collect();
    // (filter, whether it is lossless)
    let mut filters: Vec<(Box<dyn Filter>, bool)> = Vec::new();
    for quantization in [Quantization::None, Quantization::Sqrt] {
        for compression in [
            Compression::Raw,
            Compression::Huffman,
            Compression::HuffmanChunked,
        ] {
            let mut p = EncodeParams::new(DataFormat::U16, 512, 512);
            p.compression = compression;
            p.chunks = 4;
            p.quantization = quantization;
            p.quant_offset = 100.0;
            let lossless = quantization == Quantization::None;
            filters.push((Box::new(PzfFilter::new(p).unwrap()), lossless));
        }
    }
    filters.push((Box::new(GzipFilter::default()), true));
    let mut out = Vec::new();
    let mut pixels = Vec::new();
    for (filter, lossless) in &filters {
        for round in 0..2 {
            let mut made = 0;
            for (i, frame) in frames.iter().enumerate() {
                out.clear();
                let before = allocations();
                filter
                    .apply(
                        &FileInfo {
                            name: "f",
                            index: Some(i as i64),
                        },
                        frame,
                        &mut out,
                    )
                    .unwrap();
                made += allocations() - before;
                // Checked outside the count: decoding is not the filter's work.
                if out[..2] == *b"BD" {
                    decode_into(&out, &mut pixels).unwrap();
                    assert!(!lossless || pixels == *frame, "decoded frame differs");
                }
            }
            if round == 1 {
                assert_eq!(made, 0, "allocations in the steady state");
            }
        }
    }
}

#[test]
fn encoding_a_raw_file_holds_frames_not_the_file() {
    let _alone = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    const FRAME_BYTES: usize = 256 * 512 * 2;
    const FRAMES: usize = 64;
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.raw");
    {
        use std::io::Write;
        let mut file = std::io::BufWriter::new(std::fs::File::create(&input).unwrap());
        let mut rng = fastrand::Rng::with_seed(2);
        for _ in 0..FRAMES * FRAME_BYTES / 2 {
            file.write_all(&(100 + rng.u16(..60)).to_le_bytes())
                .unwrap();
        }
    }
    let prefix = dir.path().join("f").to_str().unwrap().to_owned();
    for quantization in [Quantization::None, Quantization::Sqrt] {
        let mut params = EncodeParams::new(DataFormat::U16, 256, 512);
        params.quantization = quantization;
        params.quant_offset = 100.0;
        let before = live_bytes();
        reset_peak();
        let written = encode_raw_file(&input, &prefix, &params, None).unwrap();
        let peak = peak_bytes() - before;
        assert_eq!(written.len(), FRAMES);
        // A frame read, its coded file (about a frame at most), the quantized
        // frame, the coder's tables and the list of paths: far below the 16 MiB
        // file, which the encoder once read whole.
        assert!(
            peak < 4 * FRAME_BYTES + (2 << 20),
            "{quantization:?}: {peak} bytes held at the peak for a {} byte file",
            FRAMES * FRAME_BYTES
        );
    }
}
