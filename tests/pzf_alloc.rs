//! The steady state allocates nothing: once buffers have grown to a frame's size,
//! encoding, decoding and filtering more frames makes no heap allocation.
//! (One test in its own binary, so no other thread allocates meanwhile.)

mod common;

use common::counting::{allocations, Counting};
use pyme_streaming::filter::gzip::GzipFilter;
use pyme_streaming::filter::pzf::PzfFilter;
use pyme_streaming::filter::{FileInfo, Filter};
use pyme_streaming::pzf::{decode_into, Compression, DataFormat, EncodeParams, Quantization};

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn steady_state_makes_no_allocation() {
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
