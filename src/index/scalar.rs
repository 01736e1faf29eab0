//! `Scalar`: a flat scan over scalar-quantized codes (FAISS's `IndexScalarQuantizer`).
//!
//! | spec | levels | range | bytes/dim |
//! | --- | --- | --- | --- |
//! | `SQ8` | uniform | MSE-optimal per dimension | 1 |
//! | `SQ4` | Lloyd-Max (trained) | mean ± 4σ normalisation | ½ |
//! | `SQ8u`, `SQ4u` | uniform | min/max (the seed's quantizer, FAISS `QT_8bit`/`QT_4bit`) | 1, ½ |
//! | `SQ8opt`, `SQ4opt` | uniform | MSE-optimal per dimension | 1, ½ |
//! | `SQ8lm`, `SQ4lm` | Lloyd-Max | mean ± 4σ | 1, ½ |
//! | `SQ8nq`, `SQ4nq` | normal quantiles | mean ± the outermost quantile·σ | 1, ½ |
//!
//! Distances are computed on the codes: `q · x̂ = q · lo + Σ_d (q_d·width_d) · L[c_d]`
//! (see [`crate::kernels::sq`]). Each vector keeps one `f32` correction term — `‖x̂‖²`
//! for L2, `1/‖x̂‖` for cosine (so scores stay true cosines of the decoded vectors, the
//! per-vector term Qdrant keeps for the same reason); inner product needs none. With
//! [`crate::index::spec::BuildOptions::keep_raw`] the original vectors are kept in a
//! separate section and `rerank = R` re-scores the best `R` candidates exactly.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::index::checks::{check_terms, check_vectors};
use crate::index::rows::{Exact, Rows, gather_rows};
use crate::index::spec::IndexSpec;
use crate::index::{GroupSearch, IdFilter, Index, SearchParams, check_add, header_dims, untrained};
use crate::kernels::{self, sq as ksq};
use crate::metric::Metric;
use crate::quant::codec::sq::{
    Kernel, check_ranges, corr_limit, correction_terms, offer, quantizer_bytes, read_quantizer,
    write_quantizer,
};
use crate::quant::scalar::{ScalarQuantizer, SqConfig};
use crate::store::{Container, ContainerWriter, Slab};
use crate::topk::{Neighbor, TopK};
use crate::vectors::{check_batch, check_finite};

/// Vectors scanned per block: a block of codes stays in cache while a group of queries
/// scans it.
const BLOCK: usize = 1024;
/// Queries that share each code block in batch search.
const QUERY_GROUP: usize = 16;

/// Parameters stored in the container header.
#[derive(Serialize, Deserialize)]
struct StoredParams {
    config: SqConfig,
    keep_raw: bool,
}

/// Flat scan over scalar-quantized codes.
#[derive(Clone, Debug)]
pub struct Scalar {
    spec: String,
    dim: usize,
    metric: Metric,
    config: SqConfig,
    keep_raw: bool,
    sq: Option<ScalarQuantizer>,
    codes: Slab<u8>,
    rows: Rows,
    /// ‖x̂‖² (L2), 1/‖x̂‖ (cosine), empty (inner product).
    corr: Slab<f32>,
    /// Original vectors (normalised for cosine) when `keep_raw`.
    raw: Slab<f32>,
}

/// Per-query state of a scan.
struct QueryState {
    weights: Vec<f32>,
    w4: ksq::Lut4Weights,
    constant: f32,
    norm_sq: f32,
    heap: TopK,
}

impl Scalar {
    /// An untrained index for `spec` (see the module table); `keep_raw` keeps the
    /// original vectors for re-ranking.
    pub fn new(spec: &str, dim: usize, metric: Metric, keep_raw: bool) -> Result<Self> {
        match spec.parse::<IndexSpec>() {
            Ok(IndexSpec::Scalar(sq)) => Ok(Self::with_config(
                sq.name(),
                dim,
                metric,
                sq.config(),
                keep_raw,
            )),
            _ => Err(Error::Spec {
                spec: spec.to_string(),
                message: "not a scalar-quantizer spec (SQ8, SQ4, SQ8u, SQ4u, SQ8opt, SQ4opt, \
                          SQ8lm, SQ4lm, SQ8nq, SQ4nq)"
                    .into(),
            }),
        }
    }

    /// An untrained index with an explicit quantizer configuration (any range estimator
    /// and levels, including a [`crate::quant::scalar::Levels::Custom`] codebook).
    pub fn with_config(
        spec: impl Into<String>,
        dim: usize,
        metric: Metric,
        config: SqConfig,
        keep_raw: bool,
    ) -> Self {
        Scalar {
            spec: spec.into(),
            dim,
            metric,
            config,
            keep_raw,
            sq: None,
            codes: Slab::default(),
            rows: Rows::default(),
            corr: Slab::default(),
            raw: Slab::default(),
        }
    }

    /// The trained quantizer.
    pub fn quantizer(&self) -> Option<&ScalarQuantizer> {
        self.sq.as_ref()
    }

    /// The codes, `code_size` bytes per vector in insertion order.
    pub fn codes(&self) -> &[u8] {
        &self.codes
    }

    fn trained(&self) -> Result<&ScalarQuantizer> {
        self.sq.as_ref().ok_or_else(|| untrained(&self.spec))
    }

    /// Loads an `sq` container.
    pub fn from_container(c: &Container) -> Result<Self> {
        let h = c.header();
        let bad = |m: String| Error::format(c.path(), m);
        let (dim, n) = header_dims(c)?;
        let p: StoredParams = c.params()?;
        let sq = read_quantizer(c, dim, &p.config)?;
        let cs = sq.code_size();
        let codes = c.slab::<u8>(
            "codes",
            n.checked_mul(cs)
                .ok_or_else(|| bad("size overflows".into()))?,
        )?;
        let rows = Rows::read(c, n)?;
        let corr = if h.metric == Metric::InnerProduct {
            Slab::default()
        } else {
            c.slab::<f32>("corr", n)?
        };
        let raw = if p.keep_raw {
            c.slab::<f32>(
                "raw",
                n.checked_mul(dim)
                    .ok_or_else(|| bad("size overflows".into()))?,
            )?
        } else {
            Slab::default()
        };
        if c.verified() {
            // Cheap next to the checksum pass; unverified opens stay O(1).
            check_finite(&raw, dim, "stored raw vectors").map_err(|e| bad(e.to_string()))?;
            if corr.iter().any(|v| !v.is_finite()) {
                return Err(bad("non-finite correction term".into()));
            }
        }
        Ok(Scalar {
            spec: h.spec.clone(),
            dim,
            metric: h.metric,
            config: p.config,
            keep_raw: p.keep_raw,
            sq: Some(sq),
            codes,
            rows,
            corr,
            raw,
        })
    }

    /// `add` (`replace`: `upsert`): everything is checked before the index changes.
    fn add_rows(&mut self, vectors: &[f32], ids: Option<&[u64]>, replace: bool) -> Result<usize> {
        let n = check_add(self.dim, vectors, ids)?;
        let sq = self.trained()?;
        let replaced = self.rows.admit(n, ids, replace)?;
        let x = self.prepare_queries(vectors);
        let codes = sq.encode(&x)?;
        let corr = correction_terms(sq, &codes, self.metric, &|_| None);
        check_terms(&corr, corr_limit(self.metric), "add", "correction term", 0)?;
        self.codes.to_mut().extend_from_slice(&codes);
        if !corr.is_empty() {
            self.corr.to_mut().extend_from_slice(&corr);
        }
        if self.keep_raw {
            self.raw.to_mut().extend_from_slice(&x);
        }
        self.rows.push_replacing(n, ids, &replaced);
        Ok(replaced.len())
    }

    /// Offers the rows of the block at `start`, with their kernel sums, to the query's
    /// heap.
    fn offer<F: Fn(usize) -> bool>(&self, st: &mut QueryState, sums: &[f32], start: usize, ok: &F) {
        let base = match self.metric {
            Metric::L2 => st.norm_sq - 2.0 * st.constant,
            Metric::InnerProduct | Metric::Cosine => st.constant,
        };
        offer(
            self.metric,
            base,
            sums,
            &self.corr,
            (start, 0),
            &mut st.heap,
            ok,
        );
    }

    fn prepare_queries(&self, queries: &[f32]) -> Vec<f32> {
        crate::vectors::prepared(queries, self.dim, self.metric)
    }

    /// Scans every code for a group of prepared queries.
    fn scan_group(
        &self,
        sq: &ScalarQuantizer,
        queries: &[f32],
        params: &SearchParams,
        filter: &IdFilter<'_>,
    ) -> Result<Vec<(Vec<Neighbor>, u32)>> {
        let (rerank, depth) =
            crate::index::scan_depth(params, false, !self.raw.is_empty(), false, &self.spec)?;
        let kernel = Kernel::for_quantizer(sq);
        let mut states: Vec<QueryState> = queries
            .chunks_exact(self.dim)
            .map(|q| {
                let mut weights = Vec::with_capacity(self.dim);
                let constant = sq.query_terms(q, &mut weights);
                let w4 = kernel.lut4_weights(&weights);
                QueryState {
                    weights,
                    w4,
                    constant,
                    norm_sq: kernels::dot(q, q),
                    heap: TopK::new(depth),
                }
            })
            .collect();
        let cs = sq.code_size();
        let n = self.rows.len();
        let all = matches!(filter, IdFilter::All) && !self.rows.has_deleted();
        let ids = self.rows.ids();
        let ok = |row: usize| all || (self.rows.is_live(row) && filter.accepts(ids[row]));
        // Queries are scored four at a time per pass over each block (each code step
        // loaded and decoded once for the four, sums bit for bit the one-query
        // kernel's); the queries left over one by one.
        const NQ: usize = ksq::NQ;
        let mut sums = vec![0.0f32; NQ * BLOCK];
        let mut start = 0;
        while start < n {
            let rows = BLOCK.min(n - start);
            let codes = &self.codes[start * cs..(start + rows) * cs];
            let grouped = states.len() / NQ * NQ;
            let (fours, single) = states.split_at_mut(grouped);
            for g in fours.chunks_exact_mut(NQ) {
                let w: [&[f32]; NQ] = std::array::from_fn(|j| g[j].weights.as_slice());
                let w4: [&ksq::Lut4Weights; NQ] = std::array::from_fn(|j| &g[j].w4);
                kernel.scan_multi(w, w4, codes, &mut sums[..NQ * rows]);
                for (st, out) in g.iter_mut().zip(sums.chunks_exact(rows)) {
                    self.offer(st, out, start, &ok);
                }
            }
            for st in single {
                let out = &mut sums[..rows];
                kernel.scan(&st.weights, &st.w4, codes, out);
                self.offer(st, out, start, &ok);
            }
            start += rows;
        }
        Ok(states
            .into_iter()
            .zip(queries.chunks_exact(self.dim))
            .map(|(st, q)| {
                let exact = rerank.then_some(Exact {
                    raw: &self.raw,
                    dim: self.dim,
                    metric: self.metric,
                    query: q,
                    adaptive: false,
                });
                self.rows.finish(st.heap.into_sorted(), params.k, exact)
            })
            .collect())
    }
}

impl GroupSearch for Scalar {
    const QUERY_GROUP: usize = QUERY_GROUP;
    fn search_group(
        &self,
        queries: &[f32],
        params: &SearchParams,
        filter: &IdFilter<'_>,
    ) -> Result<Vec<(Vec<Neighbor>, u32)>> {
        let sq = self.trained()?;
        let q = self.prepare_queries(queries);
        self.scan_group(sq, &q, params, filter)
    }
}

impl Index for Scalar {
    fn spec(&self) -> String {
        self.spec.clone()
    }
    row_accessors!();
    /// The code size (as FAISS's `code_size`); the 4-byte correction term per vector
    /// (L2, cosine) is counted in [`Index::memory_bytes`].
    fn bytes_per_vector(&self) -> f64 {
        crate::quant::scalar::code_size(self.dim, self.config.bits) as f64
    }
    fn memory_bytes(&self) -> usize {
        let params = self.sq.as_ref().map_or(0, quantizer_bytes);
        self.codes.len()
            + self.rows.memory_bytes()
            + self.corr.len() * 4
            + self.raw.len() * 4
            + params
    }
    fn is_trained(&self) -> bool {
        self.sq.is_some()
    }

    fn train(&mut self, sample: &[f32]) -> Result<()> {
        check_vectors(sample, self.dim, "training sample")?;
        let sq = if self.metric.normalizes() {
            let s = self.prepare_queries(sample);
            ScalarQuantizer::train(&s, self.dim, &self.config)?
        } else {
            ScalarQuantizer::train(sample, self.dim, &self.config)?
        };
        check_ranges(&sq, "training sample")?;
        self.sq = Some(sq);
        Ok(())
    }

    fn add(&mut self, vectors: &[f32], ids: Option<&[u64]>) -> Result<()> {
        self.add_rows(vectors, ids, false).map(|_| ())
    }

    fn upsert(&mut self, vectors: &[f32], ids: &[u64]) -> Result<usize> {
        self.add_rows(vectors, Some(ids), true)
    }

    crate::index::rows_methods!();

    fn compact(&mut self) -> Result<usize> {
        let cs = crate::quant::scalar::code_size(self.dim, self.config.bits);
        self.codes = self.rows.compact_slab(&self.codes, cs);
        if !self.corr.is_empty() {
            self.corr = self.rows.compact_slab(&self.corr, 1);
        }
        if self.keep_raw {
            self.raw = self.rows.compact_slab(&self.raw, self.dim);
        }
        Ok(self.rows.compact())
    }

    fn search(&self, query: &[f32], params: &SearchParams) -> Result<Vec<Neighbor>> {
        self.search_filtered(query, params, &IdFilter::All)
    }

    grouped_search!();

    fn reconstruct(&self, vectors: &[f32]) -> Result<Option<Vec<f32>>> {
        let sq = self.trained()?;
        check_batch(vectors, self.dim, "vectors")?;
        let x = self.prepare_queries(vectors);
        Ok(Some(sq.decode(&sq.encode(&x)?)?))
    }

    fn reconstruct_ids(&self, ids: &[u64]) -> Result<Vec<f32>> {
        let sq = self.trained()?;
        let rows = self.rows.rows_of(ids)?;
        if self.keep_raw {
            return Ok(gather_rows(&self.raw, self.dim, &rows));
        }
        sq.decode(&gather_rows(&self.codes, sq.code_size(), &rows))
    }

    fn to_container(&self) -> Result<ContainerWriter<'_>> {
        let sq = self.trained()?;
        let n = self.rows.len();
        let mut w = ContainerWriter::new("sq", &self.spec, self.dim, self.metric, n);
        w.params(&StoredParams {
            config: self.config.clone(),
            keep_raw: self.keep_raw,
        })?;
        write_quantizer(&mut w, sq);
        w.section("codes", &self.codes[..]);
        self.rows.write(&mut w);
        if self.metric != Metric::InnerProduct {
            w.section_f32("corr", &self.corr);
        }
        if self.keep_raw {
            w.section_f32("raw", &self.raw);
        }
        Ok(w)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::generate::gaussian;
    use crate::data::groundtruth::exact_search;
    use crate::eval::recall_at_k;
    use crate::store::OpenOptions;
    use crate::vectors::normalize_in_place;

    fn build(spec: &str, metric: Metric, keep_raw: bool, n: usize, dim: usize) -> Scalar {
        let data = gaussian(n, dim, 0.0, 1.0, 3).unwrap();
        let mut idx = Scalar::new(spec, dim, metric, keep_raw).unwrap();
        idx.train(data.as_slice()).unwrap();
        idx.add(data.as_slice(), None).unwrap();
        idx
    }

    /// The code-domain distance equals the exact distance to the decoded vector.
    #[test]
    fn scan_distances_equal_decoded_distances() {
        for spec in ["SQ8", "SQ4", "SQ8u", "SQ4u", "SQ8lm", "SQ8nq"] {
            for metric in [Metric::L2, Metric::InnerProduct, Metric::Cosine] {
                let idx = build(spec, metric, false, 300, 37);
                let sq = idx.quantizer().unwrap();
                let q = gaussian(1, 37, 0.0, 1.0, 99).unwrap();
                let hits = idx
                    .search(q.as_slice(), &SearchParams::with_k(300))
                    .unwrap();
                let mut qn = q.as_slice().to_vec();
                if metric.normalizes() {
                    normalize_in_place(&mut qn);
                }
                let dec = sq.decode(idx.codes()).unwrap();
                for h in hits.iter().take(50) {
                    let x = &dec[h.id as usize * 37..(h.id as usize + 1) * 37];
                    let want = match metric {
                        Metric::L2 => crate::kernels::scalar::l2_sq(&qn, x),
                        Metric::InnerProduct => -crate::kernels::scalar::dot(&qn, x),
                        Metric::Cosine => {
                            let nx = crate::kernels::scalar::dot(x, x).sqrt();
                            1.0 - crate::kernels::scalar::dot(&qn, x) / nx
                        }
                    };
                    assert!(
                        (h.distance - want).abs() < 2e-3 * (1.0 + want.abs()),
                        "{spec} {metric}: {} vs {want}",
                        h.distance
                    );
                }
            }
        }
    }

    /// Recall against exact ground truth for every metric, including maximum inner
    /// product (where uncorrected integer scores collapse, apache/lucene#13350).
    #[test]
    fn recall_for_every_metric() {
        let dim = 32;
        let base = gaussian(5000, dim, 0.3, 1.0, 5).unwrap();
        let queries = gaussian(100, dim, 0.3, 1.0, 6).unwrap();
        for metric in [Metric::L2, Metric::InnerProduct, Metric::Cosine] {
            let gt = exact_search(&base, &queries, 10, metric).unwrap();
            let gt: Vec<Vec<u32>> = gt
                .iter()
                .map(|r| r.iter().map(|n| n.id as u32).collect())
                .collect();
            for (spec, min) in [("SQ8", 0.93), ("SQ4", 0.6)] {
                let mut idx = Scalar::new(spec, dim, metric, true).unwrap();
                idx.train(base.as_slice()).unwrap();
                idx.add(base.as_slice(), None).unwrap();
                let p = SearchParams::with_k(10);
                let res = idx.search_batch(queries.as_slice(), &p).unwrap();
                let r = recall_at_k(&res, &gt, 10);
                assert!(r >= min, "{spec} {metric}: recall {r}");
                let p = SearchParams {
                    rerank: 100,
                    ..SearchParams::with_k(10)
                };
                let res = idx.search_batch(queries.as_slice(), &p).unwrap();
                let rr = recall_at_k(&res, &gt, 10);
                assert!(rr >= 0.99, "{spec} {metric} rerank: recall {rr}");
            }
        }
    }

    #[test]
    fn batch_equals_single_and_filter_is_exact() {
        let idx = build("SQ4", Metric::L2, false, 2000, 20);
        let qs = gaussian(20, 20, 0.0, 1.0, 8).unwrap();
        let p = SearchParams::with_k(7);
        let batch = idx.search_batch(qs.as_slice(), &p).unwrap();
        for (q, b) in qs.rows().zip(&batch) {
            assert_eq!(&idx.search(q, &p).unwrap(), b);
        }
        let even = |id: u64| id.is_multiple_of(2);
        let f = IdFilter::Predicate(&even);
        let hits = idx.search_filtered(qs.row(0), &p, &f).unwrap();
        assert_eq!(hits.len(), 7);
        assert!(hits.iter().all(|h| h.id % 2 == 0));
        let full = idx.search(qs.row(0), &SearchParams::with_k(2000)).unwrap();
        let want: Vec<_> = full.into_iter().filter(|h| h.id % 2 == 0).take(7).collect();
        assert_eq!(hits, want);
    }

    /// Batch search scores four queries per pass over each block (and the rest of a
    /// group query by query), for 8-bit codes with uniform and non-uniform levels and
    /// 4-bit codes; every answer equals the single-query
    /// search's bit for bit — ids and distances — for each metric, over several blocks
    /// (the last one partial), for query counts with and without a partial group of
    /// four, a `k` past the vectors, and deleted rows (never returned).
    #[test]
    fn four_query_batches_equal_single_query_search() {
        for metric in [Metric::L2, Metric::InnerProduct, Metric::Cosine] {
            for (spec, dim) in [("SQ8", 37), ("SQ8u", 16), ("SQ8nq", 48), ("SQ4", 70)] {
                let n = 2 * BLOCK + 300;
                let mut idx = build(spec, metric, false, n, dim);
                let dead: Vec<u64> = (0..n as u64).filter(|i| i % 9 == 4).collect();
                idx.delete(&dead).unwrap();
                for nq in [1usize, 4, 7, 22] {
                    let qs = gaussian(nq, dim, 0.0, 1.0, 17).unwrap();
                    for k in [10, n + 5] {
                        let p = SearchParams::with_k(k);
                        let batch = idx.search_batch(qs.as_slice(), &p).unwrap();
                        for (qi, (q, b)) in qs.rows().zip(&batch).enumerate() {
                            let single = idx.search(q, &p).unwrap();
                            assert_eq!(single.len(), b.len(), "{spec} {metric} nq {nq} k {k}");
                            assert!(b.iter().all(|h| h.id % 9 != 4), "a deleted row");
                            for (x, y) in single.iter().zip(b) {
                                assert!(
                                    x.id == y.id && x.distance.to_bits() == y.distance.to_bits(),
                                    "{spec} {metric} dim {dim} nq {nq} k {k} query {qi}: \
                                     {x:?} vs {y:?}"
                                );
                            }
                        }
                    }
                }
            }
        }
    }

    /// Offering candidates to the heap skips a group of 16 rows whose distances all pass
    /// its threshold; that loses nothing: the `k` nearest (batch, four queries per pass,
    /// and, flat, single) are bit for bit the first `k` of a search for every row (whose heap
    /// has no threshold until the last row, so nothing is skipped) — for flat `Scalar`
    /// and for the codec's scan under IVF with every list probed, each metric, 8-bit and
    /// 4-bit codes.
    #[test]
    fn skipped_groups_lose_no_neighbour() {
        let (n, dim, k) = (2 * BLOCK + 300, 24, 10);
        let qs = gaussian(9, dim, 0.0, 1.0, 23).unwrap();
        for metric in [Metric::L2, Metric::InnerProduct, Metric::Cosine] {
            for spec in ["SQ8", "SQ8nq", "SQ4"] {
                let flat = build(spec, metric, false, n, dim);
                let data = gaussian(n, dim, 0.0, 1.0, 3).unwrap();
                let mut ivf =
                    crate::index::ivf::new(&format!("IVF6,{spec}"), dim, metric, false, 1).unwrap();
                ivf.train(data.as_slice()).unwrap();
                ivf.add(data.as_slice(), None).unwrap();
                for (idx, nprobe) in [(&flat as &dyn Index, 1), (ivf.as_ref(), 6)] {
                    let p = |k: usize| SearchParams {
                        nprobe,
                        ..SearchParams::with_k(k)
                    };
                    let all = idx.search_batch(qs.as_slice(), &p(n)).unwrap();
                    let top = idx.search_batch(qs.as_slice(), &p(k)).unwrap();
                    for (qi, (a, t)) in all.iter().zip(&top).enumerate() {
                        assert_eq!(a.len(), n, "{spec} {metric}");
                        assert_eq!(&a[..k], &t[..], "{} {metric} query {qi}", idx.spec());
                        // (Single IVF searches differ from batches in the last bits of the
                        // coarse GEMM, so only the flat ones are compared bit for bit.)
                        if nprobe == 1 {
                            let single = idx.search(qs.row(qi), &p(k)).unwrap();
                            assert_eq!(single, *t, "{} {metric} query {qi} single", idx.spec());
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn container_round_trip() {
        for (spec, metric, raw) in [
            ("SQ8", Metric::L2, true),
            ("SQ4", Metric::Cosine, false),
            ("SQ8nq", Metric::InnerProduct, false),
        ] {
            let idx = build(spec, metric, raw, 500, 24);
            let bytes = idx.to_container().unwrap().to_bytes().unwrap();
            let c = Container::from_bytes("mem.vq", bytes, OpenOptions::default()).unwrap();
            let back = crate::index::from_container(&c).unwrap();
            assert_eq!(back.spec(), spec);
            let q = gaussian(3, 24, 0.0, 1.0, 1).unwrap();
            let p = SearchParams {
                rerank: if raw { 20 } else { 0 },
                ..SearchParams::with_k(5)
            };
            assert_eq!(
                idx.search_batch(q.as_slice(), &p).unwrap(),
                back.search_batch(q.as_slice(), &p).unwrap()
            );
        }
    }

    #[test]
    fn bad_input_is_an_error() {
        let mut idx = Scalar::new("SQ8", 4, Metric::L2, false).unwrap();
        assert!(idx.add(&[0.0; 4], None).is_err(), "untrained");
        assert!(Scalar::new("SQ7", 4, Metric::L2, false).is_err());
        assert!(Scalar::new("SQ8xx", 4, Metric::L2, false).is_err());
        idx.train(&[0.0, 1.0, 2.0, 3.0, 1.0, 1.0, 1.0, 1.0])
            .unwrap();
        idx.add(&[0.5; 8], None).unwrap();
        assert!(idx.search(&[0.0; 3], &SearchParams::default()).is_err());
        assert!(
            idx.search(&[f32::NAN; 4], &SearchParams::default())
                .is_err()
        );
        let p = SearchParams {
            rerank: 10,
            ..SearchParams::with_k(1)
        };
        let e = idx.search(&[0.0; 4], &p).unwrap_err().to_string();
        assert!(e.contains("--keep-raw"), "{e}");
        assert!(idx.add(&[f32::INFINITY; 4], None).is_err());
    }
}
