//! Criterion benchmarks of exact search: single-query scans and GEMM batches.

use criterion::{Criterion, criterion_group, criterion_main};
use std::hint::black_box;
use vecquant::data::generate::gaussian;
use vecquant::prelude::*;

fn bench_flat(c: &mut Criterion) {
    let dim = 128;
    let base = gaussian(20_000, dim, 0.0, 1.0, 1).unwrap();
    let queries = gaussian(256, dim, 0.0, 1.0, 2).unwrap();
    let mut index = Flat::new(dim, Metric::L2);
    index.add(base.as_slice(), None).unwrap();
    let p = SearchParams::with_k(10);
    let mut g = c.benchmark_group("flat_l2_20k_d128");
    g.sample_size(10);
    g.bench_function("single_query", |b| {
        b.iter(|| index.search(black_box(queries.row(0)), &p).unwrap())
    });
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    g.bench_function("batch_256_gemm_1thread", |b| {
        b.iter(|| {
            pool.install(|| {
                index
                    .search_batch(black_box(queries.as_slice()), &p)
                    .unwrap()
            })
        })
    });
    g.finish();
}

criterion_group!(benches, bench_flat);
criterion_main!(benches);
