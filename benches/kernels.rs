//! Criterion benchmarks of the distance kernels: dispatched SIMD vs scalar reference.

use criterion::{Criterion, criterion_group, criterion_main};
use std::hint::black_box;
use vecquant::kernels;

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

criterion_group!(benches, bench_kernels);
criterion_main!(benches);
