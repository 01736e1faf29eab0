//! Criterion benchmarks of the kernels: dispatched SIMD vs scalar reference.
//!
//! "dispatched" runs the level the process chose; set `VECQUANT_SIMD=scalar|avx2|avx512|vbmi`
//! to benchmark a lower level with the same binary.

use criterion::{Criterion, criterion_group, criterion_main};
use std::hint::black_box;
// The kernels are crate-private; `__bench` re-exports them for these benchmarks only.
use vecquant::__bench as kernels;

fn bench_kernels(c: &mut Criterion) {
    for &d in &[128usize, 960] {
        let a: Vec<f32> = (0..d).map(|i| (i as f32 * 0.37).sin()).collect();
        let b: Vec<f32> = (0..d).map(|i| (i as f32 * 0.11).cos()).collect();
        let mut g = c.benchmark_group(format!("l2_sq/d{d}"));
        g.bench_function("dispatched", |bn| {
            bn.iter(|| kernels::l2_sq(black_box(&a), black_box(&b)))
        });
        g.bench_function("scalar", |bn| {
            bn.iter(|| kernels::scalar::l2_sq(black_box(&a), black_box(&b)))
        });
        g.finish();
        let mut g = c.benchmark_group(format!("dot/d{d}"));
        g.bench_function("dispatched", |bn| {
            bn.iter(|| kernels::dot(black_box(&a), black_box(&b)))
        });
        g.bench_function("scalar", |bn| {
            bn.iter(|| kernels::scalar::dot(black_box(&a), black_box(&b)))
        });
        g.finish();
    }
}

/// Scalar-quantizer scans over 1,024 codes of dimension 128 (one cache-resident block).
fn bench_sq_scans(c: &mut Criterion) {
    use kernels::sq;
    let (d, n) = (128usize, 1024usize);
    let w: Vec<f32> = (0..d).map(|i| (i as f32 * 0.37).sin()).collect();
    let c8: Vec<u8> = (0..n * d).map(|i| (i * 31 % 251) as u8).collect();
    let c4: Vec<u8> = c8[..n * d / 2].to_vec();
    let lut8: [f32; 256] = std::array::from_fn(|i| (i as f32).sqrt());
    let lut4: [f32; 16] = std::array::from_fn(|i| (i as f32).sqrt());
    let w4 = sq::Lut4Weights::new(&w);
    let mut out = vec![0.0f32; n];
    let mut g = c.benchmark_group("sq_scan/d128x1024");
    g.bench_function("u8/dispatched", |b| {
        b.iter(|| sq::scan_u8(black_box(&w), black_box(&c8), &mut out))
    });
    g.bench_function("u8/scalar", |b| {
        b.iter(|| sq::scalar_u8(black_box(&w), black_box(&c8), &mut out))
    });
    g.bench_function("lut8/dispatched", |b| {
        b.iter(|| sq::scan_lut8(black_box(&w), &lut8, black_box(&c8), &mut out))
    });
    g.bench_function("lut4/dispatched", |b| {
        b.iter(|| sq::scan_lut4(black_box(&w4), &lut4, black_box(&c4), &mut out))
    });
    g.bench_function("lut4/scalar", |b| {
        b.iter(|| sq::scalar_lut4(black_box(&w4), &lut4, black_box(&c4), &mut out))
    });
    g.finish();
}

/// Fast-scan (4-bit, 32 vectors a block) and 8-bit PQ block scans over 64 Ki vectors with
/// M = 32, the per-query table work before them (quantising the float table) and the PQ
/// ADC table itself.
fn bench_pq_scans(c: &mut Criterion) {
    use kernels::{fastscan, pq8};
    use vecquant::metric::Metric;
    use vecquant::quant::product::ProductQuantizer;
    let (m, n) = (32usize, 1usize << 16);
    let codes: Vec<u8> = (0..n * m).map(|i| (i * 37 % 253) as u8).collect();
    let mut g = c.benchmark_group("pq_scan/m32x64k");
    // 4-bit fast-scan.
    let idx: Vec<u8> = codes.iter().map(|c| c & 0x0F).collect();
    let blocks = fastscan::pack_blocks(&idx, m);
    let nb = n / fastscan::BLOCK;
    let pairs = fastscan::padded_pairs(m);
    let table: Vec<f32> = (0..m * 16).map(|i| (i as f32 * 0.61).sin() + 1.0).collect();
    let (mut q8, mut lut) = (Vec::new(), Vec::new());
    fastscan::quantize_table(&table, &mut q8);
    fastscan::pack_lut(&q8, m, &mut lut);
    let (mut sums, mut masks) = (vec![0u16; nb * fastscan::BLOCK], vec![0u32; nb]);
    g.bench_function("fastscan/dispatched", |b| {
        b.iter(|| {
            fastscan::scan_blocks(&lut, black_box(&blocks), pairs, 2000, &mut sums, &mut masks)
        })
    });
    g.bench_function("fastscan/scalar", |b| {
        b.iter(|| {
            fastscan::scalar_blocks(&lut, black_box(&blocks), pairs, 2000, &mut sums, &mut masks)
        })
    });
    g.bench_function("fastscan_quantize/dispatched", |b| {
        b.iter(|| fastscan::quantize_table(black_box(&table), &mut q8))
    });
    // One IVF list's table for one query (M = 32): built, quantised and laid out.
    let pre: Vec<f32> = (0..m * 16).map(|i| (i as f32 * 0.37).cos() * 3.0).collect();
    let qt: Vec<f32> = (0..m * 16).map(|i| (i as f32 * 0.13).sin()).collect();
    let mut ft = Vec::new();
    g.bench_function("fastscan_list_lut/dispatched", |b| {
        b.iter(|| fastscan::list_lut(black_box(&pre), black_box(&qt), &mut ft, &mut lut))
    });
    // Four queries' tables over the same blocks (the IVF by-list scan's kernel).
    let luts: [&[u8]; fastscan::NQ] = std::array::from_fn(|_| lut.as_slice());
    let (mut msums, mut mmasks) = (
        vec![0u16; fastscan::NQ * nb * fastscan::BLOCK],
        vec![0u32; fastscan::NQ * nb],
    );
    g.bench_function("fastscan_multi4/dispatched", |b| {
        b.iter(|| {
            fastscan::scan_blocks_multi(
                &luts,
                black_box(&blocks),
                pairs,
                &[2000; fastscan::NQ],
                &mut msums,
                &mut mmasks,
            )
        })
    });
    // 8-bit PQ blocks.
    let blocks8 = pq8::pack_blocks(&codes, m);
    let nb8 = n / pq8::BLOCK;
    let table8: Vec<f32> = (0..m * 256)
        .map(|i| (i as f32 * 0.61).sin() + 1.0)
        .collect();
    let mut lut8 = Vec::new();
    pq8::quantize_table(&table8, &mut lut8);
    let (mut sums8, mut masks8) = (vec![0u16; nb8 * pq8::BLOCK], vec![0u64; nb8]);
    g.bench_function("pq8/dispatched", |b| {
        b.iter(|| pq8::scan_blocks(&lut8, black_box(&blocks8), m, 4000, &mut sums8, &mut masks8))
    });
    g.bench_function("pq8_quantize/dispatched", |b| {
        b.iter(|| pq8::quantize_table(black_box(&table8), &mut lut8))
    });
    g.finish();
    // The float ADC table of an 8-bit PQ with M = 32 on 128 dimensions.
    let (d, train_n) = (128usize, 4096usize);
    let data: Vec<f32> = (0..train_n * d)
        .map(|i| ((i * 7919 % 10007) as f32 / 10007.0) * 2.0 - 1.0)
        .collect();
    let pq = ProductQuantizer::train(&data, d, m, 8, 1).expect("training data is valid");
    let q = &data[..d];
    let mut t = Vec::new();
    let mut g = c.benchmark_group("pq_adc_table/d128m32k256");
    g.bench_function("dispatched", |b| {
        b.iter(|| pq.adc_table(black_box(q), Metric::L2, &mut t))
    });
    g.finish();
}

/// Bit-plane inner products of 1-bit codes with a 4-bit query (RaBitQ's Bq = 4): a
/// batch of 1,024 codes at d = 128, 384 and 1,024, each x86 kernel and the reference.
fn bench_bits(c: &mut Criterion) {
    use kernels::bits;
    let (n, bq) = (1024usize, 4usize);
    let mut s = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        s
    };
    for d in [128usize, 384, 1024] {
        let words = d.div_ceil(64);
        let codes: Vec<u64> = (0..n * words).map(|_| next()).collect();
        let planes: Vec<u64> = (0..bq * words).map(|_| next()).collect();
        let mut out = vec![0u32; n];
        let mut g = c.benchmark_group(format!("bits_bq4/d{d}x1024"));
        g.throughput(criterion::Throughput::Elements(n as u64));
        g.bench_function("dispatched", |b| {
            b.iter(|| bits::and_popcount_planes_batch(black_box(&codes), words, &planes, &mut out))
        });
        g.bench_function("scalar", |b| {
            b.iter(|| {
                bits::scalar_and_popcount_planes_batch(black_box(&codes), words, &planes, &mut out)
            })
        });
        for name in ["popcnt", "avx2", "avx2-wide"] {
            if bits::bench_x86_batch(name, &codes, words, &planes, &mut out) {
                g.bench_function(name, |b| {
                    b.iter(|| {
                        bits::bench_x86_batch(name, black_box(&codes), words, &planes, &mut out)
                    })
                });
            }
        }
        g.finish();
    }
}

/// Sign-code fast-scan (`RaBitQfs`) block scans of 1,024 codes (32 blocks) against the
/// bit-plane popcount path with a 4-bit query, at d = 128 and 384: float tables, exact
/// integer tables of the 4-bit query code, and the popcount batch.
fn bench_sign_fastscan(c: &mut Criterion) {
    use kernels::{bits, bits_fs};
    let (n, bq) = (1024usize, 4usize);
    let mut s = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        s
    };
    for d in [128usize, 384] {
        let rows: Vec<u8> = (0..n * bits_fs::row_bytes(d))
            .map(|_| next() as u8)
            .collect();
        let blocks = bits_fs::pack_sign_codes(&rows, n, d);
        let q: Vec<f32> = (0..d).map(|i| (i as f32 * 0.37).sin()).collect();
        let qu: Vec<u8> = (0..d).map(|_| (next() % 16) as u8).collect();
        let lut = bits_fs::SignLut::new(&q);
        let lut_u = bits_fs::SignLut::from_query_codes(&qu).expect("4-bit codes");
        let words = d.div_ceil(64);
        let codes: Vec<u64> = (0..n * words).map(|_| next()).collect();
        let planes: Vec<u64> = (0..bq * words).map(|_| next()).collect();
        let mut out = vec![0.0f32; n];
        let mut ints = vec![0u32; n];
        let mut g = c.benchmark_group(format!("sign_scan/d{d}x1024"));
        g.throughput(criterion::Throughput::Elements(n as u64));
        g.bench_function("fastscan_f32_lut", |b| {
            b.iter(|| lut.scan_blocks(black_box(&blocks), &mut out))
        });
        g.bench_function("fastscan_query_code_lut", |b| {
            b.iter(|| lut_u.scan_blocks(black_box(&blocks), &mut out))
        });
        g.bench_function("fastscan_build_lut", |b| {
            b.iter(|| bits_fs::SignLut::new(black_box(&q)))
        });
        g.bench_function("popcount_bq4", |b| {
            b.iter(|| bits::and_popcount_planes_batch(black_box(&codes), words, &planes, &mut ints))
        });
        g.finish();
    }
}

/// Full-code inner products of 1,024 4-bit RaBitQ codes (4 bit planes each) with a float
/// query, at d = 128 and 384: per-dimension bit extraction (the former path), nibble
/// tables of the float query, masked sums of the weighted query, and the query quantized
/// to 8 bits with popcounts.
fn bench_bits_ext(c: &mut Criterion) {
    use kernels::bits_ext::{MaskedPlanes, PlaneLut, QueryPlanes8};
    let (n, planes) = (1024usize, 4usize);
    let mut s = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        s
    };
    for d in [128usize, 384] {
        let pb = d.div_ceil(8);
        let codes: Vec<u8> = (0..n * planes * pb).map(|_| next() as u8).collect();
        let t: Vec<f32> = (0..d).map(|i| (i as f32 * 0.37).sin()).collect();
        let weights = [8.0f32, 1.0, 2.0, 4.0];
        let lut = PlaneLut::new(&t);
        let mut masked = MaskedPlanes::default();
        masked.set(&t, &weights);
        let q8 = QueryPlanes8::new(&t);
        let words = d.div_ceil(64);
        let mut g = c.benchmark_group(format!("bits_ext/d{d}x1024"));
        g.throughput(criterion::Throughput::Elements(n as u64));
        g.bench_function("float_bit_extraction", |b| {
            b.iter(|| {
                let mut total = 0.0f32;
                for row in black_box(&codes).chunks_exact(planes * pb) {
                    for (plane, w) in row.chunks_exact(pb).zip(weights) {
                        let mut acc = 0.0f32;
                        for (k, chunk) in plane.chunks(8).enumerate() {
                            let mut bytes = [0u8; 8];
                            bytes[..chunk.len()].copy_from_slice(chunk);
                            let mut x = u64::from_le_bytes(bytes);
                            while x != 0 {
                                acc += t[64 * k + x.trailing_zeros() as usize];
                                x &= x - 1;
                            }
                        }
                        total += w * acc;
                    }
                }
                total
            })
        });
        g.bench_function("nibble_lut", |b| {
            b.iter(|| {
                black_box(&codes)
                    .chunks_exact(planes * pb)
                    .map(|row| lut.planes_dot(row, pb, &weights))
                    .sum::<f32>()
            })
        });
        g.bench_function("masked_planes", |b| {
            b.iter(|| {
                black_box(&codes)
                    .chunks_exact(planes * pb)
                    .map(|row| masked.planes_dot(row, pb))
                    .sum::<f32>()
            })
        });
        g.bench_function("popcount_query8", |b| {
            let mut buf = vec![0u64; words];
            b.iter(|| {
                let mut total = 0.0f32;
                for row in black_box(&codes).chunks_exact(planes * pb) {
                    for (plane, w) in row.chunks_exact(pb).zip(weights) {
                        for (k, word) in buf.iter_mut().enumerate() {
                            let mut bytes = [0u8; 8];
                            let chunk = &plane[8 * k..(8 * k + 8).min(pb)];
                            bytes[..chunk.len()].copy_from_slice(chunk);
                            *word = u64::from_le_bytes(bytes);
                        }
                        total += w * q8.plane_dot(&buf);
                    }
                }
                total
            })
        });
        g.bench_function("build_nibble_lut", |b| {
            b.iter(|| PlaneLut::new(black_box(&t)))
        });
        g.finish();
    }
}

criterion_group!(
    benches,
    bench_bits_ext,
    bench_kernels,
    bench_sq_scans,
    bench_pq_scans,
    bench_bits,
    bench_sign_fastscan
);
criterion_main!(benches);
