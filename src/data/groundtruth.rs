//! Exact k-nearest-neighbour search by blocked GEMM.
//!
//! For L2, ‖q − x‖² = ‖q‖² − 2⟨q, x⟩ + ‖x‖²: a block of queries times a block of base
//! vectors is one GEMM (faer), the norms are added, and each query keeps a bounded top-k.
//! Blocks of queries run in parallel on rayon; each GEMM is single-threaded. This is how
//! FAISS's `IndexFlatL2` answers batches, and it is what ground truth files are made with.

use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::kernels;
use crate::linalg::gemm_abt;
use crate::metric::Metric;
use crate::topk::{Neighbor, TopK};
use crate::vectors::{VectorSet, check_finite};

/// Queries per GEMM block: large enough that packing a base block is amortised over
/// many queries (with 64, packing took a fifth of the time).
pub const QUERY_BLOCK: usize = 256;
/// Base vectors per GEMM block (a 256 × 1024 f32 tile is 1 MiB, L2-resident).
pub const BASE_BLOCK: usize = 1024;
/// The largest query block.
const MAX_QUERY_BLOCK: usize = 1024;
/// The smallest base block.
const MIN_BASE_BLOCK: usize = 256;
/// Floats of a distance tile (1 MiB).
const TILE: usize = 256 * 1024;

/// Exact top-`k` over row-major `base` for every row of `queries`.
///
/// `base_norms` are the squared norms of the base rows (needed for `l2`; ignored
/// otherwise). With `l2` the returned distance is ‖q − x‖² (clamped at 0); without, it is
/// −⟨q, x⟩. Ids are row numbers, mapped through `ids` when given. `keep(row)` filters
/// rows (deleted or not selected); `None` keeps all.
#[allow(clippy::too_many_arguments)]
pub(crate) fn knn_blocked(
    base: &[f32],
    base_norms: &[f32],
    queries: &[f32],
    dim: usize,
    k: usize,
    l2: bool,
    ids: Option<&[u64]>,
    keep: Option<&(dyn Fn(usize) -> bool + Sync)>,
) -> Vec<Vec<Neighbor>> {
    let nb = base.len() / dim;
    let nq = queries.len() / dim;
    if nq == 0 {
        return Vec::new();
    }
    let mut results: Vec<Vec<Neighbor>> = vec![Vec::new(); nq];
    let (qb, bb) = blocks(nq, rayon::current_num_threads());
    results
        .par_chunks_mut(qb)
        .zip(queries.par_chunks(qb * dim))
        .for_each(|(out, qblock)| {
            let bq = qblock.len() / dim;
            let mut heaps: Vec<TopK> = (0..bq).map(|_| TopK::new(k)).collect();
            let mut tile = vec![0.0f32; bq * bb];
            let mut start = 0;
            while start < nb {
                let end = (start + bb).min(nb);
                let bb = end - start;
                let tile = &mut tile[..bq * bb];
                gemm_abt(qblock, &base[start * dim..end * dim], dim, tile);
                for (qi, heap) in heaps.iter_mut().enumerate() {
                    let row = &tile[qi * bb..(qi + 1) * bb];
                    scan_row(row, base_norms, start, l2, heap, ids, keep);
                }
                start = end;
            }
            for (qi, (heap, slot)) in heaps.into_iter().zip(out.iter_mut()).enumerate() {
                let mut v = heap.into_sorted();
                if l2 {
                    let qn = kernels::dot(
                        &qblock[qi * dim..(qi + 1) * dim],
                        &qblock[qi * dim..(qi + 1) * dim],
                    );
                    for n in &mut v {
                        n.distance = (n.distance + qn).max(0.0);
                    }
                }
                *slot = v;
            }
        });
    results
}

/// Queries and base vectors per GEMM block for `nq` queries on `threads` threads: an
/// even share of the queries per thread within [`QUERY_BLOCK`]..=[`MAX_QUERY_BLOCK`]
/// (every query block streams the whole base from memory once, so fewer, larger
/// blocks read it fewer times), and base blocks that keep the distance tile within
/// [`TILE`] floats (L2-resident), from [`MIN_BASE_BLOCK`] up to [`BASE_BLOCK`].
fn blocks(nq: usize, threads: usize) -> (usize, usize) {
    let qb = nq
        .div_ceil(threads.max(1))
        .clamp(QUERY_BLOCK, MAX_QUERY_BLOCK);
    let bb = (TILE / qb / 64 * 64).clamp(MIN_BASE_BLOCK, BASE_BLOCK);
    (qb, bb)
}

#[inline]
fn scan_row(
    row: &[f32],
    base_norms: &[f32],
    start: usize,
    l2: bool,
    heap: &mut TopK,
    ids: Option<&[u64]>,
    keep: Option<&(dyn Fn(usize) -> bool + Sync)>,
) {
    let id_of = |j: usize| ids.map_or(j as u64, |ids| ids[j]);
    let norms = if l2 {
        &base_norms[start..start + row.len()]
    } else {
        &[][..]
    };
    let offer = |j: usize, d: f32, heap: &mut TopK| {
        if d <= heap.threshold() {
            let r = start + j;
            if keep.is_none_or(|f| f(r)) {
                heap.push(id_of(r), d);
            }
        }
    };
    // Most distances lose to the threshold once the heap is full: a dispatched kernel
    // computes a chunk's distances and the mask of those within the threshold (it cost
    // a quarter of a flat search as a loop the SSE2 baseline build could not turn into
    // vector comparisons), and only the lanes of the mask are offered (`offer` tests
    // them again against the threshold, which tightens along the chunk).
    let mut d = [0.0f32; kernels::BELOW_CHUNK];
    for (c, chunk) in row.chunks(kernels::BELOW_CHUNK).enumerate() {
        let at = c * kernels::BELOW_CHUNK;
        let nrm = if l2 {
            &norms[at..at + chunk.len()]
        } else {
            &[][..]
        };
        let mut hits = kernels::below(chunk, nrm, heap.threshold(), &mut d);
        while hits != 0 {
            let l = hits.trailing_zeros() as usize;
            hits &= hits - 1;
            offer(at + l, d[l], heap);
        }
    }
}

/// Exact ground truth: the ids (row numbers of `base`) of the `k` nearest base vectors of
/// each query under `metric`, best first, ties by id.
///
/// ```
/// use vecquant::{VectorSet, Metric};
/// use vecquant::data::groundtruth::ground_truth;
/// let base = VectorSet::new(vec![0.0, 0.0, 1.0, 0.0, 5.0, 5.0], 2).unwrap();
/// let q = VectorSet::new(vec![0.9, 0.1], 2).unwrap();
/// assert_eq!(ground_truth(&base, &q, 2, Metric::L2).unwrap(), vec![vec![1, 0]]);
/// ```
///
/// # Errors
/// As [`exact_search`] (the ids, 4 more bytes per neighbour, count towards its memory
/// check).
pub fn ground_truth(
    base: &VectorSet,
    queries: &VectorSet,
    k: usize,
    metric: Metric,
) -> Result<Vec<Vec<u32>>> {
    let ex = ExactBase::new(base, queries.dim(), k, metric)?;
    let per = std::mem::size_of::<Neighbor>() + 4;
    Ok(ids_of(ex.search(queries.as_slice(), per)?))
}

/// [`ground_truth`] of `queries` a chunk of `chunk` queries at a time: `each(first,
/// ids)` receives each chunk's rows in order (`first`: the index of its first query)
/// before the next chunk is searched, so memory holds one chunk's results however many
/// queries × `k` there are. The base is checked, normalised (cosine) and its norms
/// computed once for all chunks. Equal to [`ground_truth`] row for row.
///
/// # Errors
/// As [`ground_truth`] (the memory check per chunk), and the first error of `each`.
pub fn ground_truth_chunked(
    base: &VectorSet,
    queries: &VectorSet,
    k: usize,
    metric: Metric,
    chunk: usize,
    mut each: impl FnMut(usize, Vec<Vec<u32>>) -> Result<()>,
) -> Result<()> {
    let ex = ExactBase::new(base, queries.dim(), k, metric)?;
    let (dim, chunk) = (queries.dim().max(1), chunk.max(1));
    let per = std::mem::size_of::<Neighbor>() + 4;
    for (c, q) in queries.as_slice().chunks(chunk * dim).enumerate() {
        each(c * chunk, ids_of(ex.search(q, per)?))?;
    }
    Ok(())
}

/// Results as ground-truth rows (row numbers).
fn ids_of(res: Vec<Vec<Neighbor>>) -> Vec<Vec<u32>> {
    res.into_iter()
        .map(|r| r.into_iter().map(|n| n.id as u32).collect())
        .collect()
}

/// Exact search results (ids are row numbers) with distances as [`Metric`] defines them.
///
/// # Errors
/// [`Error::DimensionMismatch`] when base and queries differ in dimension;
/// [`Error::InvalidParameter`] when `k` is zero or the results (`min(k, n)` per query)
/// cannot fit in the machine's memory ([`crate::index::check_result_memory`]);
/// [`Error::EmptyIndex`] for an empty base; [`Error::NonFinite`] for a NaN or infinite
/// component in either set.
pub fn exact_search(
    base: &VectorSet,
    queries: &VectorSet,
    k: usize,
    metric: Metric,
) -> Result<Vec<Vec<Neighbor>>> {
    ExactBase::new(base, queries.dim(), k, metric)?
        .search(queries.as_slice(), std::mem::size_of::<Neighbor>())
}

/// A base prepared for exact search: checked, normalised for cosine, with its squared
/// norms for L2 — the work that does not depend on the queries, done once.
struct ExactBase<'a> {
    base: std::borrow::Cow<'a, [f32]>,
    norms: Vec<f32>,
    dim: usize,
    k: usize,
    metric: Metric,
}

impl<'a> ExactBase<'a> {
    /// Checks, in this order: the queries' dimension `qdim` against the base's, `k`,
    /// an empty base, non-finite base values.
    fn new(base: &'a VectorSet, qdim: usize, k: usize, metric: Metric) -> Result<Self> {
        if base.dim() != qdim {
            return Err(Error::dim("queries", base.dim(), qdim));
        }
        if k == 0 {
            return Err(Error::param("k", "must be at least 1"));
        }
        if base.is_empty() {
            return Err(Error::EmptyIndex);
        }
        check_finite(base.as_slice(), base.dim(), "base vectors")?;
        let dim = base.dim();
        let base: std::borrow::Cow<'a, [f32]> = if metric.normalizes() {
            let mut b = base.clone();
            b.normalize();
            b.into_vec().into()
        } else {
            base.as_slice().into()
        };
        let norms = if metric == Metric::L2 {
            kernels::row_norms_sq(&base, dim)
        } else {
            Vec::new()
        };
        Ok(ExactBase {
            base,
            norms,
            dim,
            k,
            metric,
        })
    }

    /// The exact results of row-major `queries`, whose results may take `bytes` per
    /// neighbour ([`crate::index::check_result_memory`]).
    fn search(&self, queries: &[f32], bytes: usize) -> Result<Vec<Vec<Neighbor>>> {
        let (dim, n) = (self.dim, self.base.len() / self.dim);
        let nq = queries.len() / dim;
        crate::index::check_result_memory(nq, self.k.min(n), bytes)?;
        check_finite(queries, dim, "queries")?;
        let normalized;
        let q = if self.metric.normalizes() {
            let mut v = VectorSet::new(queries.to_vec(), dim)?;
            v.normalize();
            normalized = v;
            normalized.as_slice()
        } else {
            queries
        };
        let l2 = self.metric == Metric::L2;
        let mut res = knn_blocked(&self.base, &self.norms, q, dim, self.k, l2, None, None);
        if self.metric == Metric::Cosine {
            for r in &mut res {
                for n in r.iter_mut() {
                    n.distance += 1.0; // −cos → 1 − cos
                }
            }
        }
        Ok(res)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::generate::gaussian;

    fn brute(base: &VectorSet, q: &[f32], k: usize, metric: Metric) -> Vec<(u64, f32)> {
        let mut all: Vec<(u64, f32)> = base
            .rows()
            .enumerate()
            .map(|(i, r)| (i as u64, metric.distance(q, r)))
            .collect();
        all.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
        all.truncate(k);
        all
    }

    /// Each query's top-10 in `got` equals brute force (ids up to numerical near-ties,
    /// distances within float error).
    fn assert_brute_force(base: &VectorSet, qs: &VectorSet, got: &[Vec<Neighbor>], metric: Metric) {
        assert_eq!(got.len(), qs.len());
        for (qi, r) in got.iter().enumerate() {
            let want = brute(base, qs.row(qi), 10, metric);
            assert_eq!(r.len(), want.len(), "{metric} q{qi}");
            for (g, w) in r.iter().zip(&want) {
                assert!(
                    (g.distance - w.1).abs() <= 1e-3 * (1.0 + w.1.abs()),
                    "{metric} q{qi}"
                );
                if g.id != w.0 {
                    // Only a numerical near-tie may reorder ids.
                    let dg = metric.distance(qs.row(qi), base.row(g.id as usize));
                    assert!(
                        (dg - w.1).abs() < 1e-4 * (1.0 + w.1.abs()),
                        "{metric} q{qi}"
                    );
                }
            }
        }
    }

    /// Chunked ground truth equals the whole at every chunk size (1, uneven, all), for
    /// each metric, with chunks handed over in order.
    #[test]
    fn chunked_ground_truth_equals_the_whole() {
        let base = gaussian(200, 6, 0.0, 1.0, 7).unwrap();
        let queries = gaussian(11, 6, 0.0, 1.0, 8).unwrap();
        for metric in [Metric::L2, Metric::InnerProduct, Metric::Cosine] {
            let whole = ground_truth(&base, &queries, 9, metric).unwrap();
            for chunk in [1, 4, 11, 50] {
                let mut got = Vec::new();
                ground_truth_chunked(&base, &queries, 9, metric, chunk, |first, rows| {
                    assert_eq!(first, got.len());
                    assert!(rows.len() <= chunk);
                    got.extend(rows);
                    Ok(())
                })
                .unwrap();
                assert_eq!(got, whole, "{metric:?} chunk {chunk}");
            }
        }
    }

    #[test]
    fn matches_brute_force_all_metrics() {
        let base = gaussian(5000, 24, 0.0, 1.0, 11).unwrap();
        let qs = gaussian(70, 24, 0.0, 1.0, 12).unwrap();
        for metric in [Metric::L2, Metric::InnerProduct, Metric::Cosine] {
            let got = exact_search(&base, &qs, 10, metric).unwrap();
            assert_brute_force(&base, &qs, &got, metric);
        }
    }

    /// The block shapes: an even share of the queries per thread within 256..=1024, and
    /// base blocks keeping the tile within 1 MiB (multiples of 64, 256..=1024).
    #[test]
    fn block_shapes() {
        assert_eq!(blocks(100, 2), (256, 1024));
        assert_eq!(blocks(1000, 2), (500, 512));
        assert_eq!(blocks(600, 1), (600, 384));
        assert_eq!(blocks(10_000, 1), (1024, 256));
        assert_eq!(blocks(10_000, 0), (1024, 256));
        for (nq, t) in [(1, 1), (300, 1), (777, 1), (5000, 3), (2048, 2)] {
            let (qb, bb) = blocks(nq, t);
            assert!((QUERY_BLOCK..=MAX_QUERY_BLOCK).contains(&qb), "{nq} {t}");
            assert!(
                qb * bb <= TILE && bb % 64 == 0 && bb >= MIN_BASE_BLOCK,
                "{nq} {t}"
            );
        }
    }

    /// One thread, 600 queries: one block of 600 queries against base blocks of 384
    /// with a short last one (2,000 = 5 × 384 + 80); each query's top-10 equals brute
    /// force up to numerical near-ties, for every metric.
    #[test]
    fn large_query_blocks_match_brute_force() {
        let base = gaussian(2000, 16, 0.0, 1.0, 31).unwrap();
        let qs = gaussian(600, 16, 0.0, 1.0, 32).unwrap();
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap();
        for metric in [Metric::L2, Metric::InnerProduct, Metric::Cosine] {
            let got = pool
                .install(|| exact_search(&base, &qs, 10, metric))
                .unwrap();
            assert_brute_force(&base, &qs, &got, metric);
        }
    }

    #[test]
    fn rejects_bad_input() {
        let base = gaussian(10, 4, 0.0, 1.0, 1).unwrap();
        let q = gaussian(2, 3, 0.0, 1.0, 1).unwrap();
        assert!(matches!(
            exact_search(&base, &q, 1, Metric::L2),
            Err(Error::DimensionMismatch { .. })
        ));
        let q = VectorSet::new(vec![0.0, f32::NAN, 0.0, 0.0], 4).unwrap();
        assert!(matches!(
            exact_search(&base, &q, 1, Metric::L2),
            Err(Error::NonFinite { .. })
        ));
        let q = gaussian(1, 4, 0.0, 1.0, 1).unwrap();
        assert!(exact_search(&base, &q, 0, Metric::L2).is_err());
        assert!(matches!(
            exact_search(&VectorSet::empty(4), &q, 1, Metric::L2),
            Err(Error::EmptyIndex)
        ));
    }
}
