//! Criterion benchmarks of the distance kernels: dispatched SIMD vs scalar reference.

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

criterion_group!(benches, bench_kernels, bench_sq_scans);
criterion_main!(benches);
