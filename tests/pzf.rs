//! The PZF codec as a user of the library sees it: round trips over every format,
//! golden vectors made by pymecompress, hostile inputs, and the two filters.

use std::io::Read;

use proptest::prelude::*;
use pyme_streaming::filter::gzip::GzipFilter;
use pyme_streaming::filter::pzf::PzfFilter;
use pyme_streaming::filter::{FileInfo, Filter};
use pyme_streaming::pzf::huffman::{self, HuffmanError};
use pyme_streaming::pzf::quant::{dequant_table, quantize_one};
use pyme_streaming::pzf::{
    decode, decode_into, encode, Compression, DataFormat, DimOrder, EncodeParams, PzfError,
    Quantization,
};

const GOLDEN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/golden");

fn golden(name: &str) -> Vec<u8> {
    std::fs::read(format!("{GOLDEN}/{name}")).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut rng = fastrand::Rng::with_seed(seed);
    (0..len).map(|_| rng.u8(..)).collect()
}

/// uint16 pixels around 100..300, little-endian.
fn camera_pixels(count: usize, seed: u64) -> Vec<u8> {
    let mut rng = fastrand::Rng::with_seed(seed);
    (0..count)
        .flat_map(|_| (100 + rng.u16(..200)).to_le_bytes())
        .collect()
}

/// Bytes with Fibonacci counts over `symbols` symbols, shuffled: the deepest tree
/// for its size, codes `symbols - 1` bits long.
fn fibonacci_bytes(symbols: usize) -> Vec<u8> {
    let mut counts = vec![1usize, 1];
    while counts.len() < symbols {
        counts.push(counts[counts.len() - 1] + counts[counts.len() - 2]);
    }
    let mut data: Vec<u8> = counts
        .iter()
        .enumerate()
        .flat_map(|(s, &c)| std::iter::repeat_n(s as u8, c))
        .collect();
    fastrand::Rng::with_seed(5).shuffle(&mut data);
    data
}

fn round_trip_huffman(data: &[u8]) {
    let block = huffman::encode(data);
    assert_eq!(huffman::decode(&block, data.len()).unwrap(), data);
}

// ------------------------------------------------------------ Huffman blocks

#[test]
fn huffman_edge_cases_round_trip() {
    round_trip_huffman(&[]);
    round_trip_huffman(&[7]);
    round_trip_huffman(&[7; 1000]);
    round_trip_huffman(&[1, 2]);
    round_trip_huffman(&(0..=255).collect::<Vec<u8>>());
    round_trip_huffman(&noise(100_003, 1));
    for len in [1, 2, 3, 7, 8, 9, 15, 16, 17, 31, 33, 63, 65, 4095, 4097] {
        round_trip_huffman(&noise(len, len as u64));
        round_trip_huffman(&camera_pixels(len, 3));
    }
}

#[test]
fn empty_input_gives_empty_block() {
    assert!(huffman::encode(&[]).is_empty());
    assert_eq!(huffman::decode(&[], 0).unwrap(), Vec::<u8>::new());
}

#[test]
fn codes_longer_than_24_bits_round_trip() {
    let data = fibonacci_bytes(28); // codes of 27 bits
    round_trip_huffman(&data);
}

#[test]
fn codes_longer_than_32_and_57_bits_round_trip() {
    // Fibonacci weights give a tree 87 deep; the data holds every symbol a few times.
    let mut weights = [0u64; 256];
    let (mut a, mut b) = (1u64, 1u64);
    for w in weights.iter_mut().take(88) {
        *w = a;
        (a, b) = (b, a + b);
    }
    let mut data: Vec<u8> = (0..88u8).flat_map(|s| [s, 87 - s, s]).collect();
    data.extend(noise(1000, 9).iter().map(|b| b % 88));
    let block = huffman::encode_with_weights(&weights, &data);
    assert_eq!(huffman::decode(&block, data.len()).unwrap(), data);
    // Only the rarest symbols: every code is over 57 bits.
    let rare: Vec<u8> = (0..30u8).cycle().take(500).collect();
    let block = huffman::encode_with_weights(&weights, &rare);
    assert_eq!(huffman::decode(&block, rare.len()).unwrap(), rare);
}

#[test]
fn corrupt_blocks_are_errors() {
    let data = noise(5000, 4);
    let block = huffman::encode(&data);
    for cut in [0, 1, 5, 100, block.len() / 2, block.len() - 1] {
        assert!(
            huffman::decode(&block[..cut], data.len()).is_err(),
            "cut at {cut}"
        );
    }
    // All-zero bits: internal nodes without end.
    assert!(matches!(
        huffman::decode(&[0; 200], 10),
        Err(HuffmanError::TreeTooLarge)
    ));
    assert!(matches!(
        huffman::decode(&[0; 20], 10),
        Err(HuffmanError::TruncatedTree)
    ));
    // More symbols than the block has bits.
    assert!(matches!(
        huffman::decode(&[0x80, 0], 1000),
        Err(HuffmanError::TooShort { .. })
    ));
    // Flipped bytes never panic.
    for i in 0..block.len().min(400) {
        let mut bad = block.clone();
        bad[i] ^= 0x5a;
        let _ = huffman::decode(&bad, data.len());
    }
}

#[test]
fn deep_hostile_tree_decodes_or_fails_cleanly() {
    // A caterpillar tree 255 deep (symbol s has the code 1^s 0), then the deepest code.
    let mut bits = Vec::new();
    for s in 0..255u32 {
        bits.push(0);
        bits.push(1);
        bits.extend((0..8).rev().map(|i| (s >> i) & 1));
    }
    bits.push(1);
    bits.extend([1u32; 8]);
    bits.extend([1u32; 255]); // the deepest code: 255 ones -> symbol 255
    let mut block = vec![0u8; bits.len().div_ceil(8)];
    for (i, b) in bits.iter().enumerate() {
        block[i / 8] |= (*b as u8) << (7 - i % 8);
    }
    assert_eq!(huffman::decode(&block, 1).unwrap(), vec![255]);
    // The two padding bits of the last byte read as two 1-bit codes, then nothing is left.
    assert_eq!(huffman::decode(&block, 3).unwrap(), vec![255, 0, 0]);
    assert!(huffman::decode(&block, 4).is_err());
}

// ------------------------------------------------------------ golden vectors

const BYTE_CASES: [&str; 8] = [
    "empty",
    "one_symbol",
    "two_symbols",
    "skewed",
    "all256",
    "uniform",
    "noise_u16",
    "odd_u16",
];

#[test]
fn golden_blocks_encode_identically() {
    for name in BYTE_CASES {
        let input = golden(&format!("{name}.in"));
        assert_eq!(
            huffman::encode(&input),
            golden(&format!("{name}.huf")),
            "{name}"
        );
    }
}

#[test]
fn golden_blocks_decode_exactly() {
    for name in BYTE_CASES {
        let input = golden(&format!("{name}.in"));
        let block = golden(&format!("{name}.huf"));
        assert_eq!(
            huffman::decode(&block, input.len()).unwrap(),
            input,
            "{name}"
        );
    }
}

#[test]
fn golden_many_small_blocks_both_ways() {
    let bytes = golden("many_small.bin");
    let mut rest = &bytes[..];
    let mut cases = 0;
    let take = |rest: &mut &[u8], n: usize| {
        let (a, b) = rest.split_at(n);
        *rest = b;
        a.to_vec()
    };
    while !rest.is_empty() {
        let n = u32::from_le_bytes(take(&mut rest, 4).try_into().unwrap()) as usize;
        let input = take(&mut rest, n);
        let m = u32::from_le_bytes(take(&mut rest, 4).try_into().unwrap()) as usize;
        let block = take(&mut rest, m);
        assert_eq!(huffman::encode(&input), block, "case {cases}");
        assert_eq!(huffman::decode(&block, n).unwrap(), input, "case {cases}");
        cases += 1;
    }
    assert_eq!(cases, 96);
}

#[test]
fn golden_quantized_blocks() {
    for name in ["quant_u16", "quant_scale_u16"] {
        let pixels = golden(&format!("{name}.in"));
        let theirs_q = golden(&format!("{name}.q"));
        let block = golden(&format!("{name}.huf"));
        let params = golden(&format!("{name}.params"));
        let offset = f32::from_le_bytes(params[..4].try_into().unwrap());
        let scale = f32::from_le_bytes(params[4..].try_into().unwrap());
        // Their block decodes exactly; our block of their bytes is theirs.
        assert_eq!(huffman::decode(&block, theirs_q.len()).unwrap(), theirs_q);
        assert_eq!(huffman::encode(&theirs_q), block);
        // Our quantization is theirs within one step (their square root is approximate).
        for (p, &q) in pixels.chunks_exact(2).zip(&theirs_q) {
            let ours = quantize_one(u16::from_le_bytes([p[0], p[1]]), offset, scale);
            assert!(ours.abs_diff(q) <= 1, "{name}: {ours} vs {q}");
        }
    }
}

#[test]
fn golden_pzf_files_decode() {
    let (raw_h, raw) = decode(&golden("v3_raw_u16.pzf")).unwrap();
    assert_eq!(
        (raw_h.version, raw_h.format, raw_h.compression),
        (3, DataFormat::U16, Compression::Raw)
    );
    assert_eq!((raw_h.width, raw_h.height, raw_h.depth), (24, 20, 1));
    assert_eq!(
        (raw_h.sequence_id, raw_h.frame_num, raw_h.timestamp),
        (77, 5, 123456)
    );
    assert_eq!(raw.len(), 24 * 20 * 2);

    let (h, pixels) = decode(&golden("v3_huffman_u16.pzf")).unwrap();
    assert_eq!(
        (h.compression, h.frame_num, h.timestamp),
        (Compression::Huffman, 6, 123457)
    );
    assert_eq!(pixels, raw);

    let (h, pixels) = decode(&golden("v3_chunked_u16.pzf")).unwrap();
    assert_eq!(
        (h.compression, h.order, h.sequence_id),
        (Compression::HuffmanChunked, DimOrder::F, 78)
    );
    assert_eq!(pixels, raw);

    let (h, pixels) = decode(&golden("v3_quant_u16.pzf")).unwrap();
    assert_eq!(
        (h.quantization, h.quant_offset, h.quant_scale),
        (Quantization::Sqrt, 100.0, 1.0)
    );
    for (a, b) in pixels.chunks_exact(2).zip(raw.chunks_exact(2)) {
        let (a, b) = (
            u16::from_le_bytes([a[0], a[1]]),
            u16::from_le_bytes([b[0], b[1]]),
        );
        // Within one quantization step of the original (steps are ~2*sqrt(x-100)+1 wide).
        let step = 2.0 * f64::from(b - 100).sqrt() + 3.0;
        assert!(f64::from(a.abs_diff(b)) <= step, "{a} vs {b}");
    }

    let (h, pixels) = decode(&golden("v2_huffman_u8.pzf")).unwrap();
    assert_eq!(
        (h.version, h.format, h.depth, h.sequence_id, h.data_offset),
        (2, DataFormat::U8, 2, -1, 48)
    );
    assert_eq!(
        pixels,
        (0..240u32).map(|i| (i % 7) as u8).collect::<Vec<_>>()
    );

    let (h, pixels) = decode(&golden("v1_raw_f32.pzf")).unwrap();
    assert_eq!(
        (h.version, h.format, h.order),
        (1, DataFormat::F32, DimOrder::C)
    ); // v1 implies C
    let values: Vec<f32> = pixels
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    assert_eq!((values[0], values[19]), (-1.0, 1.0));
}

#[test]
fn our_pzf_matches_golden_file_bytes() {
    let file = golden("v3_huffman_u16.pzf");
    let (h, pixels) = decode(&file).unwrap();
    let mut params = EncodeParams::new(h.format, h.width, h.height);
    params.sequence_id = h.sequence_id;
    params.frame_num = h.frame_num;
    params.timestamp = h.timestamp;
    params.quant_scale = h.quant_scale;
    let mut ours = Vec::new();
    encode(&params, &pixels, &mut ours).unwrap();
    assert_eq!(ours, file);
}

// ------------------------------------------------------------ whole frames

fn all_params() -> Vec<EncodeParams> {
    let mut all = Vec::new();
    for format in [DataFormat::U8, DataFormat::U16, DataFormat::F32] {
        for compression in [
            Compression::Raw,
            Compression::Huffman,
            Compression::HuffmanChunked,
        ] {
            for quantization in [Quantization::None, Quantization::Sqrt] {
                if quantization == Quantization::Sqrt && format != DataFormat::U16 {
                    continue;
                }
                for order in [DimOrder::C, DimOrder::F] {
                    for (width, height, depth) in [(7, 5, 1), (16, 9, 3), (1, 1, 1)] {
                        let mut p = EncodeParams::new(format, width, height);
                        p.depth = depth;
                        p.compression = compression;
                        p.quantization = quantization;
                        p.quant_offset = 90.0;
                        p.quant_scale = 0.8;
                        p.order = order;
                        p.sequence_id = -42;
                        p.frame_num = 17;
                        p.timestamp = 1 << 40;
                        p.chunks = 3;
                        all.push(p);
                    }
                }
            }
        }
    }
    all
}

fn expected_pixels(p: &EncodeParams, pixels: &[u8]) -> Vec<u8> {
    if p.quantization == Quantization::None {
        return pixels.to_vec();
    }
    let table = dequant_table(p.quant_offset, p.quant_scale);
    pixels
        .chunks_exact(2)
        .flat_map(|c| {
            table[quantize_one(
                u16::from_le_bytes([c[0], c[1]]),
                p.quant_offset,
                p.quant_scale,
            ) as usize]
                .to_le_bytes()
        })
        .collect()
}

#[test]
fn every_combination_round_trips() {
    for (i, p) in all_params().iter().enumerate() {
        let size = (p.width * p.height * p.depth) as usize * p.format.item_size();
        let pixels = camera_pixels(size / 2 + 1, i as u64)[..size].to_vec();
        let mut file = Vec::new();
        encode(p, &pixels, &mut file).unwrap();
        let (h, decoded) = decode(&file).unwrap();
        assert_eq!(h, p.header(), "{p:?}");
        assert_eq!(decoded, expected_pixels(p, &pixels), "{p:?}");
    }
}

#[test]
fn large_chunked_frame_round_trips_on_threads() {
    let pixels = camera_pixels(512 * 600, 8);
    for chunks in [0, 1, 2, 5, 1000] {
        let mut p = EncodeParams::new(DataFormat::U16, 512, 600);
        p.compression = Compression::HuffmanChunked;
        p.chunks = chunks;
        let mut file = Vec::new();
        encode(&p, &pixels, &mut file).unwrap();
        let mut out = Vec::new();
        decode_into(&file, &mut out).unwrap();
        assert_eq!(out, pixels, "{chunks} chunks");
    }
}

#[test]
fn invalid_parameters_are_errors() {
    let pixels = vec![0u8; 8];
    let mut out = Vec::new();
    let mut p = EncodeParams::new(DataFormat::U16, 2, 2);
    assert!(matches!(
        encode(&p, &pixels[..6], &mut out),
        Err(PzfError::SizeMismatch {
            expected: 8,
            actual: 6
        })
    ));
    p.width = 0;
    assert!(matches!(
        encode(&p, &pixels, &mut out),
        Err(PzfError::InvalidParams(_))
    ));
    let mut p = EncodeParams::new(DataFormat::U8, 2, 4);
    p.quantization = Quantization::Sqrt;
    assert!(matches!(
        encode(&p, &pixels, &mut out),
        Err(PzfError::InvalidParams(_))
    ));
    for scale in [0.0, -1.0, f32::NAN, f32::INFINITY] {
        let mut p = EncodeParams::new(DataFormat::U16, 2, 2);
        p.quantization = Quantization::Sqrt;
        p.quant_scale = scale;
        assert!(
            matches!(
                encode(&p, &pixels, &mut out),
                Err(PzfError::InvalidParams(_))
            ),
            "{scale}"
        );
    }
    let mut p = EncodeParams::new(DataFormat::F32, u32::MAX, u32::MAX);
    p.depth = u32::MAX;
    assert!(matches!(
        encode(&p, &pixels, &mut out),
        Err(PzfError::TooLarge)
    ));
    assert!(out.is_empty(), "nothing written on error");
}

fn sample_file(compression: Compression) -> Vec<u8> {
    let mut p = EncodeParams::new(DataFormat::U16, 30, 20);
    p.compression = compression;
    p.chunks = 3;
    let mut file = Vec::new();
    encode(&p, &camera_pixels(600, 2), &mut file).unwrap();
    file
}

#[test]
fn corrupt_files_are_errors() {
    for compression in [
        Compression::Raw,
        Compression::Huffman,
        Compression::HuffmanChunked,
    ] {
        let file = sample_file(compression);
        for cut in 0..file.len() {
            assert!(
                decode(&file[..cut]).is_err(),
                "{compression:?} cut at {cut}"
            );
        }
    }
    let file = sample_file(Compression::Huffman);
    let with = |at: usize, bytes: &[u8]| {
        let mut f = file.clone();
        f[at..at + bytes.len()].copy_from_slice(bytes);
        decode(&f)
    };
    assert!(matches!(with(0, b"XY"), Err(PzfError::BadHeader(_))));
    assert!(matches!(with(2, &[9]), Err(PzfError::BadHeader(_))));
    assert!(matches!(with(3, &[7]), Err(PzfError::BadHeader(_))));
    assert!(matches!(with(4, &[3]), Err(PzfError::BadHeader(_))));
    assert!(matches!(with(6, b"X"), Err(PzfError::BadHeader(_))));
    assert!(matches!(
        with(48, &100_000u32.to_le_bytes()),
        Err(PzfError::BadHeader(_))
    ));
    // Lying dimensions: far more pixels than the data could hold; no huge allocation.
    assert!(with(20, &u32::MAX.to_le_bytes()).is_err());
    assert!(with(24, &100_000u32.to_le_bytes()).is_err());
    // Quantized float data.
    let mut f = file.clone();
    f[3] = 2;
    f[5] = 1;
    assert!(decode(&f).is_err());
}

#[test]
fn lying_chunk_tables_are_errors() {
    let file = sample_file(Compression::HuffmanChunked);
    let body = 64;
    let mut f = file.clone();
    f[body..body + 2].copy_from_slice(&u16::MAX.to_le_bytes());
    assert!(decode(&f).is_err());
    let mut f = file.clone();
    f[body + 6..body + 10].copy_from_slice(&u32::MAX.to_le_bytes()); // raw_len of chunk 0
    assert!(decode(&f).is_err());
    let mut f = file.clone();
    f[body + 2..body + 6].copy_from_slice(&u32::MAX.to_le_bytes()); // compressed_len of chunk 0
    assert!(decode(&f).is_err());
}

// ------------------------------------------------------------ filters

fn filter_params() -> EncodeParams {
    let mut p = EncodeParams::new(DataFormat::U16, 16, 8);
    p.sequence_id = 1234;
    p
}

#[test]
fn pzf_filter_encodes_frames_with_their_index() {
    let filter = PzfFilter::new(filter_params()).unwrap();
    let pixels = camera_pixels(128, 1);
    let mut out = Vec::new();
    let info = FileInfo {
        name: "frame0007.pzf",
        index: Some(7),
    };
    filter.apply(&info, &pixels, &mut out).unwrap();
    let (h, decoded) = decode(&out).unwrap();
    assert_eq!((h.frame_num, h.sequence_id), (7, 1234));
    assert_eq!(decoded, pixels);
    assert_eq!(filter.content_encoding(), None);

    out.clear();
    let err = filter.apply(&info, &pixels[..10], &mut out).unwrap_err();
    assert!(err.0.contains("frame0007.pzf"), "{err}");
    let negative = FileInfo {
        name: "x",
        index: Some(-1),
    };
    out.clear();
    assert!(filter.apply(&negative, &pixels, &mut out).is_err());
}

#[test]
fn pzf_filter_rejects_bad_parameters() {
    let mut p = filter_params();
    p.quantization = Quantization::Sqrt;
    p.quant_scale = 0.0;
    assert!(PzfFilter::new(p).is_err());
    let mut p = filter_params();
    p.height = 0;
    assert!(PzfFilter::new(p).is_err());
}

#[test]
fn pzf_filter_runs_on_many_threads_at_once() {
    let mut p = filter_params();
    p.quantization = Quantization::Sqrt;
    p.quant_offset = 100.0;
    let filter = PzfFilter::new(p).unwrap();
    let pixels = camera_pixels(128, 3);
    let mut reference = Vec::new();
    filter
        .apply(
            &FileInfo {
                name: "f",
                index: Some(1),
            },
            &pixels,
            &mut reference,
        )
        .unwrap();
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                let mut out = Vec::new();
                for _ in 0..50 {
                    out.clear();
                    filter
                        .apply(
                            &FileInfo {
                                name: "f",
                                index: Some(1),
                            },
                            &pixels,
                            &mut out,
                        )
                        .unwrap();
                    assert_eq!(out, reference);
                }
            });
        }
    });
}

#[test]
fn gzip_filter_round_trips_through_flate2() {
    for filter in [
        GzipFilter::default(),
        GzipFilter::new(9),
        GzipFilter::new(0),
    ] {
        assert_eq!(filter.content_encoding(), Some("gzip"));
        let data = camera_pixels(5000, 4);
        let mut out = Vec::new();
        filter
            .apply(
                &FileInfo {
                    name: "a",
                    index: None,
                },
                &data,
                &mut out,
            )
            .unwrap();
        let mut back = Vec::new();
        flate2::read::GzDecoder::new(&out[..])
            .read_to_end(&mut back)
            .unwrap();
        assert_eq!(back, data);
    }
}

// ------------------------------------------------------------ properties

fn arb_params() -> impl Strategy<Value = EncodeParams> {
    (
        0usize..3,
        0usize..3,
        any::<bool>(),
        any::<bool>(),
        1u32..40,
        1u32..40,
        1u32..4,
        0u16..5,
        0.5f32..3.0,
    )
        .prop_map(|(f, c, quant, order, w, h, d, chunks, scale)| {
            let format = [DataFormat::U8, DataFormat::U16, DataFormat::F32][f];
            let mut p = EncodeParams::new(format, w, h);
            p.depth = d;
            p.compression = [
                Compression::Raw,
                Compression::Huffman,
                Compression::HuffmanChunked,
            ][c];
            p.order = if order { DimOrder::C } else { DimOrder::F };
            if quant && format == DataFormat::U16 {
                p.quantization = Quantization::Sqrt;
                p.quant_offset = 50.0;
                p.quant_scale = scale;
            }
            p.chunks = chunks;
            p
        })
}

proptest! {
    #[test]
    fn huffman_round_trips(data in proptest::collection::vec(any::<u8>(), 0..3000), skew in 1u8..=255) {
        let skewed: Vec<u8> = data.iter().map(|b| b % skew).collect();
        let block = huffman::encode(&skewed);
        prop_assert_eq!(huffman::decode(&block, skewed.len()).unwrap(), skewed);
    }

    #[test]
    fn frames_round_trip(p in arb_params(), seed in any::<u64>()) {
        let size = (p.width * p.height * p.depth) as usize * p.format.item_size();
        let pixels = noise(size, seed);
        let mut file = Vec::new();
        encode(&p, &pixels, &mut file).unwrap();
        let (h, decoded) = decode(&file).unwrap();
        prop_assert_eq!(h, p.header());
        prop_assert_eq!(decoded, expected_pixels(&p, &pixels));
    }

    #[test]
    fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600), n in 0usize..5000) {
        let _ = huffman::decode(&bytes, n);
        let _ = decode(&bytes);
    }

    #[test]
    fn decoding_damaged_files_never_panics(c in 0usize..3, at in any::<prop::sample::Index>(), xor in 1u8..=255) {
        let compression = [Compression::Raw, Compression::Huffman, Compression::HuffmanChunked][c];
        let mut file = sample_file(compression);
        let i = at.index(file.len());
        file[i] ^= xor;
        let _ = decode(&file);
    }
}

#[test]
fn chunks_coded_on_the_calling_thread_are_the_same_bytes() {
    use pyme_streaming::pzf::Encoder;
    let mut rng = fastrand::Rng::with_seed(5);
    let pixels: Vec<u8> = (0..1024 * 768)
        .flat_map(|_| (100 + rng.u16(..200)).to_le_bytes())
        .collect();
    for quantization in [Quantization::None, Quantization::Sqrt] {
        let mut params = EncodeParams::new(DataFormat::U16, 1024, 768);
        params.compression = Compression::HuffmanChunked;
        params.chunks = 5;
        params.quantization = quantization;
        params.quant_offset = 100.0;
        let mut parallel = Vec::new();
        pyme_streaming::pzf::encode(&params, &pixels, &mut parallel).unwrap();
        let mut here = Vec::new();
        let encoder = Encoder::new(params).unwrap().on_calling_thread();
        encoder.encode(&pixels, 0, 0, &mut here).unwrap();
        assert!(parallel == here, "{quantization:?}: the two codings differ");
    }
}
