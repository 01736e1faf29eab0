//! Evaluation: recall against exact ground truth, throughput, memory, distortion, and
//! the benchmark [`report`]s built from them.

pub mod report;

use std::time::Instant;

use crate::error::{Error, Result};
use crate::index::{Index, SearchParams};
use crate::topk::Neighbor;
use crate::vectors::VectorSet;

/// Recall@1 as FAISS reports it: the fraction of queries whose first result is the true
/// nearest neighbour (`gt[q][0]`).
pub fn recall_at_1(results: &[Vec<Neighbor>], gt: &[Vec<u32>]) -> f64 {
    let n = results.len().min(gt.len());
    if n == 0 {
        return 0.0;
    }
    let hits = results
        .iter()
        .zip(gt)
        .filter(|(r, g)| match (r.first(), g.first()) {
            (Some(a), Some(&b)) => a.id == b as u64,
            _ => false,
        })
        .count();
    hits as f64 / n as f64
}

/// k-recall@k: |returned top-k ∩ true top-k| / k, averaged over queries. With `k = 10`
/// this is the "10-recall@10" of the ANN literature.
pub fn recall_at_k(results: &[Vec<Neighbor>], gt: &[Vec<u32>], k: usize) -> f64 {
    let n = results.len().min(gt.len());
    if n == 0 || k == 0 {
        return 0.0;
    }
    let mut total = 0usize;
    let mut truth: Vec<u64> = Vec::with_capacity(k);
    for (r, g) in results.iter().zip(gt) {
        truth.clear();
        truth.extend(g.iter().take(k).map(|&x| x as u64));
        truth.sort_unstable();
        total += r
            .iter()
            .take(k)
            .filter(|nb| truth.binary_search(&nb.id).is_ok())
            .count();
    }
    total as f64 / (n * k) as f64
}

/// Mean squared reconstruction error per component between `x` and `x_hat`.
pub fn mse(x: &[f32], x_hat: &[f32]) -> f64 {
    if x.is_empty() {
        return 0.0;
    }
    x.iter()
        .zip(x_hat)
        .map(|(&a, &b)| {
            let d = a as f64 - b as f64;
            d * d
        })
        .sum::<f64>()
        / x.len() as f64
}

/// The Gaussian rate-distortion bound D(R) = σ²·2^(−2R) at `bits` per component: no
/// quantizer at that rate can have a lower MSE on a Gaussian source of variance σ².
pub fn gaussian_rd_bound(variance: f64, bits_per_dim: f64) -> f64 {
    variance * (-2.0 * bits_per_dim).exp2()
}

/// Mean per-dimension variance of row-major data.
pub fn mean_variance(data: &[f32], dim: usize) -> f64 {
    let n = data.len() / dim.max(1);
    if n < 2 {
        return 0.0;
    }
    let mut mean = vec![0.0f64; dim];
    for r in data.chunks_exact(dim) {
        for (m, &x) in mean.iter_mut().zip(r) {
            *m += x as f64;
        }
    }
    mean.iter_mut().for_each(|m| *m /= n as f64);
    let mut var = 0.0;
    for r in data.chunks_exact(dim) {
        for (m, &x) in mean.iter().zip(r) {
            var += (x as f64 - m).powi(2);
        }
    }
    var / (n * dim) as f64
}

/// Runs [`Index::search_batch_counted`] on a pool of `threads` threads and returns the
/// results, the queries per second and the mean candidates re-scored exactly per query
/// (`None` for kinds that do not count them).
///
/// One query runs first, untimed: lazily built state (IVF's precomputed tables) and the
/// first touch of a memory-mapped file are one-time costs that FAISS pays at training or
/// load, outside its timed searches. The batch then repeats until at least ~0.2 s (at
/// most 50 runs) have been timed, so short runs on a noisy machine still give a stable
/// rate.
///
/// # Errors
/// [`Error::InvalidParameter`] if the thread pool cannot be built; the errors of
/// [`Index::search_batch`] (wrong query dimension, non-finite values, bad `params`).
pub fn timed_search(
    index: &dyn Index,
    queries: &VectorSet,
    params: &SearchParams,
    threads: usize,
) -> Result<(Vec<Vec<Neighbor>>, f64, Option<f64>)> {
    let pool = pool(threads)?;
    if let Some(q) = queries.rows().next() {
        pool.install(|| index.search(q, params))?;
    }
    let mut reps = 0usize;
    let (mut results, mut counts) = (Vec::new(), None);
    let t0 = Instant::now();
    while reps == 0 || (t0.elapsed().as_secs_f64() < 0.2 && reps < 50) {
        (results, counts) =
            pool.install(|| index.search_batch_counted(queries.as_slice(), params))?;
        reps += 1;
    }
    let secs = t0.elapsed().as_secs_f64();
    let reranked = counts
        .filter(|c| !c.is_empty())
        .map(|c| c.iter().map(|&n| f64::from(n)).sum::<f64>() / c.len() as f64);
    Ok((
        results,
        (queries.len() * reps) as f64 / secs.max(1e-9),
        reranked,
    ))
}

/// A pool of `threads` threads (at least one) for the timed searches.
fn pool(threads: usize) -> Result<rayon::ThreadPool> {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads.max(1))
        .build()
        .map_err(|e| Error::param("threads", e.to_string()))
}

/// [`timed_search`] for query sets whose results are too many to hold at once: the
/// queries are searched `chunk` at a time (each chunk once: no warm-up, no repeats —
/// meant for sets that take long enough to time in one pass), and `each(first,
/// results)` receives each chunk's results in order (`first`: the index of its first
/// query) before the next is searched. Returns the queries per second of the searches
/// alone (not of `each`) and, for indexes that count them, the mean candidates
/// re-ranked per query.
///
/// # Errors
/// As [`timed_search`], and the first error `each` returns (no later chunk is searched).
pub fn timed_search_chunked(
    index: &dyn Index,
    queries: &VectorSet,
    params: &SearchParams,
    threads: usize,
    chunk: usize,
    mut each: impl FnMut(usize, Vec<Vec<Neighbor>>) -> Result<()>,
) -> Result<(f64, Option<f64>)> {
    let pool = pool(threads)?;
    let (dim, chunk) = (queries.dim(), chunk.max(1));
    let (mut secs, mut reranked, mut counted) = (0.0f64, 0.0f64, 0usize);
    for (c, q) in queries.as_slice().chunks(chunk * dim.max(1)).enumerate() {
        let t0 = Instant::now();
        let (results, counts) = pool.install(|| index.search_batch_counted(q, params))?;
        secs += t0.elapsed().as_secs_f64();
        if let Some(c) = counts.filter(|c| !c.is_empty()) {
            reranked += c.iter().map(|&n| f64::from(n)).sum::<f64>();
            counted += c.len();
        }
        each(c * chunk, results)?;
    }
    Ok((
        queries.len() as f64 / secs.max(1e-9),
        (counted > 0).then(|| reranked / counted as f64),
    ))
}

/// Base vectors [`distortion`] reconstructs.
pub const DISTORTION_SAMPLE: usize = 10_000;

/// The reconstruction MSE per component of `index`'s codes on the first
/// [`DISTORTION_SAMPLE`] rows of `base` (normalised first for cosine), and its ratio to
/// the Gaussian bound D(R) at the code rate ([`gaussian_rd_bound`]). Both `None` for kinds
/// that store vectors exactly; the ratio is `None` when the bound is zero.
///
/// # Errors
/// The errors of [`Index::reconstruct`] (wrong dimension, non-finite values).
pub fn distortion(index: &dyn Index, base: &VectorSet) -> Result<(Option<f64>, Option<f64>)> {
    let sample = base.head(DISTORTION_SAMPLE.min(base.len()));
    let Some(rec) = index.reconstruct(sample.as_slice())? else {
        return Ok((None, None));
    };
    let mut x = sample.into_vec();
    if index.metric().normalizes() {
        x.chunks_exact_mut(index.dim())
            .for_each(crate::vectors::normalize_in_place);
    }
    let m = mse(&x, &rec);
    let rate = index.bytes_per_vector() * 8.0 / index.dim() as f64;
    let bound = gaussian_rd_bound(mean_variance(&x, index.dim()), rate);
    Ok((Some(m), (bound > 0.0).then(|| m / bound)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res(ids: &[u64]) -> Vec<Neighbor> {
        ids.iter()
            .map(|&id| Neighbor { id, distance: 0.0 })
            .collect()
    }

    #[test]
    fn recall_definitions() {
        let r = vec![res(&[1, 2, 3]), res(&[9, 4, 5])];
        let gt = vec![vec![1, 3, 7], vec![4, 5, 6]];
        assert_eq!(recall_at_1(&r, &gt), 0.5);
        // q0: {1,2,3}∩{1,3,7} = 2; q1: {9,4,5}∩{4,5,6} = 2 → 4/6
        assert!((recall_at_k(&r, &gt, 3) - 4.0 / 6.0).abs() < 1e-12);
    }

    #[test]
    fn timed_search_chunked_hands_over_every_chunk_in_order() {
        use crate::data::generate::gaussian;
        use crate::index::spec::{BuildOptions, new_index};
        let base = gaussian(300, 8, 0.0, 1.0, 1).unwrap();
        let queries = gaussian(10, 8, 0.0, 1.0, 2).unwrap();
        let p = SearchParams::with_k(4);
        let mut idx = new_index("IVF4,SQ8", 8, &BuildOptions::default()).unwrap();
        idx.train(base.as_slice()).unwrap();
        idx.add(base.as_slice(), None).unwrap();
        let (mut firsts, mut all) = (Vec::new(), Vec::new());
        let (qps, _) = timed_search_chunked(idx.as_ref(), &queries, &p, 2, 3, |first, res| {
            firsts.push((first, res.len()));
            all.extend(res);
            Ok(())
        })
        .unwrap();
        assert_eq!(firsts, [(0, 3), (3, 3), (6, 3), (9, 1)]);
        assert_eq!(all, idx.search_batch(queries.as_slice(), &p).unwrap());
        assert!(qps > 0.0 && qps.is_finite());
        // An error from `each` ends the search: no later chunk is handed over.
        let mut calls = 0;
        let e = timed_search_chunked(idx.as_ref(), &queries, &p, 1, 4, |_, _| {
            calls += 1;
            Err(Error::param("out", "disk full"))
        });
        assert!(e.is_err() && calls == 1);
    }

    #[test]
    fn timed_search_returns_the_batch_results_and_distortion_only_for_codes() {
        use crate::data::generate::gaussian;
        use crate::index::spec::{BuildOptions, new_index};
        let base = gaussian(500, 8, 0.0, 1.0, 1).unwrap();
        let queries = gaussian(7, 8, 0.0, 1.0, 2).unwrap();
        let p = SearchParams::with_k(5);
        for spec in ["Flat", "SQ8"] {
            let mut idx = new_index(spec, 8, &BuildOptions::default()).unwrap();
            idx.train(base.as_slice()).unwrap();
            idx.add(base.as_slice(), None).unwrap();
            let (res, qps, _) = timed_search(idx.as_ref(), &queries, &p, 2).unwrap();
            assert_eq!(res, idx.search_batch(queries.as_slice(), &p).unwrap());
            assert!(qps > 0.0 && qps.is_finite());
            let (m, ratio) = distortion(idx.as_ref(), &base).unwrap();
            if spec == "Flat" {
                assert_eq!((m, ratio), (None, None));
            } else {
                // 8 bits per component on N(0, 1): D(R) = 2^-16; SQ8 is within a small
                // factor of it but never below (the bound is a bound).
                let (m, ratio) = (m.unwrap(), ratio.unwrap());
                assert!(m > 0.0 && ratio > 1.0 && ratio < 100.0, "{m} {ratio}");
            }
        }
        let wrong = gaussian(3, 4, 0.0, 1.0, 3).unwrap();
        let flat = new_index("Flat", 8, &BuildOptions::default()).unwrap();
        assert!(timed_search(flat.as_ref(), &wrong, &p, 1).is_err());
    }

    #[test]
    fn rd_bound() {
        assert_eq!(gaussian_rd_bound(1.0, 1.0), 0.25);
        assert!((gaussian_rd_bound(2.0, 4.0) - 2.0 / 256.0).abs() < 1e-15);
        assert_eq!(mse(&[1.0, 2.0], &[1.0, 4.0]), 2.0);
    }
}
