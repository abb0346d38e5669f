//! Speed of the PZF codec on a 2048x2048 uint16 frame of Poisson(50)+100 noise:
//! Huffman and square-root-quantized Huffman, encode and decode, one thread and chunked.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use pyme_streaming::pzf::{self, Compression, DataFormat, EncodeParams, Quantization};

const SIDE: u32 = 2048;

/// Poisson(mean) by Knuth's method, from a seeded generator.
fn poisson(rng: &mut fastrand::Rng, mean: f64) -> u16 {
    let limit = (-mean).exp();
    let mut k = 0;
    let mut p = 1.0;
    loop {
        p *= rng.f64();
        if p <= limit {
            return k;
        }
        k += 1;
    }
}

fn frame() -> Vec<u8> {
    let mut rng = fastrand::Rng::with_seed(42);
    (0..SIDE * SIDE)
        .flat_map(|_| (poisson(&mut rng, 50.0) + 100).to_le_bytes())
        .collect()
}

fn params(compression: Compression, quantized: bool) -> EncodeParams {
    let mut p = EncodeParams::new(DataFormat::U16, SIDE, SIDE);
    p.compression = compression;
    p.chunks = 2;
    if quantized {
        p.quantization = Quantization::Sqrt;
        p.quant_offset = 100.0;
        p.quant_scale = 1.0;
    }
    p
}

fn bench(c: &mut Criterion) {
    let pixels = frame();
    let cases = [
        ("huffman", Compression::Huffman, false),
        ("quant_huffman", Compression::Huffman, true),
        ("chunked2", Compression::HuffmanChunked, false),
        ("quant_chunked2", Compression::HuffmanChunked, true),
    ];
    let mut group = c.benchmark_group("pzf_2048x2048_u16");
    group.throughput(Throughput::BytesDecimal(pixels.len() as u64));
    group.sample_size(20);
    for (name, compression, quantized) in cases {
        let p = params(compression, quantized);
        let mut file = Vec::with_capacity(pixels.len() * 2);
        pzf::encode(&p, &pixels, &mut file).unwrap();
        eprintln!(
            "{name}: compression ratio {:.2}",
            pixels.len() as f64 / file.len() as f64
        );
        group.bench_function(BenchmarkId::new("encode", name), |b| {
            b.iter(|| {
                file.clear();
                pzf::encode(&p, &pixels, &mut file).unwrap();
            })
        });
        let mut decoded = Vec::with_capacity(pixels.len());
        group.bench_function(BenchmarkId::new("decode", name), |b| {
            b.iter(|| pzf::decode_into(&file, &mut decoded).unwrap())
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
