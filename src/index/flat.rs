//! `Flat`: exact search over the raw `f32` vectors (FAISS's `IndexFlat`).

use crate::data::groundtruth::knn_blocked;
use crate::error::{Error, Result};
use crate::index::checks::{check_full, check_results};
use crate::index::rows::Rows;
use crate::index::{
    IdFilter, Index, SearchParams, at_query, check_add, check_batch_search, check_single,
};
use crate::kernels;
use crate::metric::Metric;
use crate::store::{Container, ContainerWriter, Slab};
use crate::topk::{Neighbor, TopK};
use crate::vectors::{check_finite, normalize_in_place};

/// Exact nearest-neighbour index: stores every vector as `dim` floats.
///
/// Single queries scan with the SIMD kernels; batches of queries use blocked GEMM
/// (faer) like FAISS's `IndexFlatL2`. For [`Metric::Cosine`] vectors are normalised
/// when added. Loaded indexes use the file's sections in place (memory-mapped).
#[derive(Clone, Debug)]
pub struct Flat {
    dim: usize,
    metric: Metric,
    vectors: Slab<f32>,
    /// Squared norms (L2 only), so batched search is one GEMM plus an add.
    norms: Slab<f32>,
    rows: Rows,
}

/// Below this many queries a batch is answered by per-query scans, not GEMM.
const GEMM_MIN_QUERIES: usize = 8;

impl Flat {
    /// An empty index of dimension `dim`.
    pub fn new(dim: usize, metric: Metric) -> Self {
        Flat {
            dim,
            metric,
            vectors: Slab::default(),
            norms: Slab::default(),
            rows: Rows::default(),
        }
    }

    /// The stored vectors (normalised for cosine), row-major, deleted rows included
    /// until [`Index::compact`].
    pub fn vectors(&self) -> &[f32] {
        &self.vectors
    }

    /// The ids, in insertion order.
    pub fn ids(&self) -> &[u64] {
        self.rows.ids()
    }

    /// Loads a `flat` container. The vectors, ids and norms are used in place.
    pub fn from_container(c: &Container) -> Result<Self> {
        let h = c.header();
        let dim = usize::try_from(h.dim)
            .ok()
            .filter(|&d| d > 0 && d <= 1 << 24)
            .ok_or_else(|| {
                Error::format(c.path(), format!("invalid dimension {} in header", h.dim))
            })?;
        let n = usize::try_from(h.count)
            .map_err(|_| Error::format(c.path(), "vector count overflows"))?;
        let total = n
            .checked_mul(dim)
            .ok_or_else(|| Error::format(c.path(), "vector count × dimension overflows"))?;
        let vectors = c.slab::<f32>("vectors", total)?;
        let rows = Rows::read(c, n)?;
        if c.verified() {
            // The checksum pass already read every byte; scanning for NaN costs little
            // more. Unverified opens (huge files) stay O(1).
            check_finite(&vectors, dim, "stored vectors")
                .map_err(|e| Error::format(c.path(), e.to_string()))?;
        }
        let has_norms = h.sections.iter().any(|s| s.name == "norms");
        let norms = if h.metric != Metric::L2 {
            Slab::default()
        } else if has_norms {
            c.slab::<f32>("norms", n)?
        } else {
            // Format-1 files written before norms were stored.
            Slab::from(kernels::row_norms_sq(&vectors, dim))
        };
        Ok(Flat {
            dim,
            metric: h.metric,
            vectors,
            norms,
            rows,
        })
    }

    /// `add` (`replace`: `upsert`): everything is checked before the index changes.
    fn add_rows(&mut self, vectors: &[f32], ids: Option<&[u64]>, replace: bool) -> Result<usize> {
        let n = check_add(self.dim, vectors, ids)?;
        let replaced = self.rows.admit(n, ids, replace)?;
        let x = crate::vectors::prepared(vectors, self.dim, self.metric);
        if self.metric == Metric::L2 {
            // Finite and ≤ 1e36: `check_add` bounded every squared norm already.
            self.norms
                .to_mut()
                .extend(kernels::row_norms_sq(&x, self.dim));
        }
        self.vectors.to_mut().extend_from_slice(&x);
        self.rows.push_replacing(n, ids, &replaced);
        Ok(replaced.len())
    }

    fn prepared_query<'a>(&self, q: &'a [f32], buf: &'a mut Vec<f32>) -> &'a [f32] {
        if self.metric.normalizes() {
            buf.clear();
            buf.extend_from_slice(q);
            normalize_in_place(buf);
            buf
        } else {
            q
        }
    }
}

impl Index for Flat {
    fn spec(&self) -> String {
        "Flat".into()
    }
    row_accessors!();
    fn bytes_per_vector(&self) -> f64 {
        (self.dim * 4) as f64
    }
    fn memory_bytes(&self) -> usize {
        self.vectors.len() * 4 + self.norms.len() * 4 + self.rows.memory_bytes()
    }
    fn reconstruct_ids(&self, ids: &[u64]) -> Result<Vec<f32>> {
        let rows = self.rows.rows_of(ids)?;
        Ok(crate::index::rows::gather_rows(
            &self.vectors,
            self.dim,
            &rows,
        ))
    }

    fn to_container(&self) -> Result<ContainerWriter<'_>> {
        let mut w =
            ContainerWriter::new("flat", &self.spec(), self.dim, self.metric, self.rows.len());
        w.section_f32("vectors", &self.vectors);
        if self.metric == Metric::L2 {
            w.section_f32("norms", &self.norms);
        }
        self.rows.write(&mut w);
        Ok(w)
    }

    fn add(&mut self, vectors: &[f32], ids: Option<&[u64]>) -> Result<()> {
        self.add_rows(vectors, ids, false).map(|_| ())
    }

    fn upsert(&mut self, vectors: &[f32], ids: &[u64]) -> Result<usize> {
        self.add_rows(vectors, Some(ids), true)
    }

    crate::index::rows_methods!();

    fn compact(&mut self) -> Result<usize> {
        self.vectors = self.rows.compact_slab(&self.vectors, self.dim);
        if self.metric == Metric::L2 {
            self.norms = self.rows.compact_slab(&self.norms, 1);
        }
        Ok(self.rows.compact())
    }

    fn search(&self, query: &[f32], params: &SearchParams) -> Result<Vec<Neighbor>> {
        self.search_filtered(query, params, &IdFilter::All)
    }

    fn search_filtered(
        &self,
        query: &[f32],
        params: &SearchParams,
        filter: &IdFilter<'_>,
    ) -> Result<Vec<Neighbor>> {
        check_single(self.dim, self.len(), query, params)?;
        let all = matches!(filter, IdFilter::All) && !self.rows.has_deleted();
        let mut buf = Vec::new();
        let q = self.prepared_query(query, &mut buf);
        let mut heap = TopK::new(params.k);
        let ids = self.rows.ids();
        let ok = |row: usize| all || (self.rows.is_live(row) && filter.accepts(ids[row]));
        match self.metric {
            Metric::L2 => {
                for (row, x) in self.vectors.chunks_exact(self.dim).enumerate() {
                    if ok(row) {
                        heap.push(ids[row], kernels::l2_sq(q, x));
                    }
                }
            }
            Metric::InnerProduct | Metric::Cosine => {
                for (row, x) in self.vectors.chunks_exact(self.dim).enumerate() {
                    if ok(row) {
                        heap.push(
                            ids[row],
                            self.metric.distance_from_score(kernels::dot(q, x)),
                        );
                    }
                }
            }
        }
        let res = heap.into_sorted();
        check_results(std::slice::from_ref(&res), 0)?;
        if all {
            check_full(std::slice::from_ref(&res), params.k.min(self.len()))?;
        }
        Ok(res)
    }

    fn search_batch(&self, queries: &[f32], params: &SearchParams) -> Result<Vec<Vec<Neighbor>>> {
        let nq = check_batch_search(queries, self.dim, self.len(), params)?;
        if nq < GEMM_MIN_QUERIES {
            return queries
                .chunks_exact(self.dim)
                .enumerate()
                .map(|(i, q)| self.search(q, params).map_err(|e| at_query(e, i)))
                .collect();
        }
        let normalized;
        let q = if self.metric.normalizes() {
            let mut v = queries.to_vec();
            for row in v.chunks_exact_mut(self.dim) {
                normalize_in_place(row);
            }
            normalized = v;
            &normalized[..]
        } else {
            queries
        };
        let l2 = self.metric == Metric::L2;
        let live = |row: usize| self.rows.is_live(row);
        let keep: Option<&(dyn Fn(usize) -> bool + Sync)> = if self.rows.has_deleted() {
            Some(&live)
        } else {
            None
        };
        let mut res = knn_blocked(
            &self.vectors,
            &self.norms,
            q,
            self.dim,
            params.k,
            l2,
            Some(self.rows.ids()),
            keep,
        );
        if self.metric == Metric::Cosine {
            for r in &mut res {
                for n in r.iter_mut() {
                    n.distance += 1.0;
                }
            }
        }
        check_results(&res, 0)?;
        check_full(&res, params.k.min(self.len()))?;
        Ok(res)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::generate::gaussian;
    use crate::error::Error;

    fn brute(data: &[f32], dim: usize, q: &[f32], k: usize, metric: Metric) -> Vec<u64> {
        let mut all: Vec<(u64, f32)> = data
            .chunks_exact(dim)
            .enumerate()
            .map(|(i, r)| (i as u64, metric.distance(q, r)))
            .collect();
        all.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
        all.into_iter().take(k).map(|x| x.0).collect()
    }

    #[test]
    fn top10_equals_brute_force_for_every_metric() {
        let dim = 32;
        let base = gaussian(3000, dim, 0.0, 1.0, 5).unwrap();
        let qs = gaussian(40, dim, 0.0, 1.0, 6).unwrap();
        for metric in [Metric::L2, Metric::InnerProduct, Metric::Cosine] {
            let mut idx = Flat::new(dim, metric);
            idx.add(base.as_slice(), None).unwrap();
            let p = SearchParams::with_k(10);
            let batch = idx.search_batch(qs.as_slice(), &p).unwrap();
            for (qi, q) in qs.rows().enumerate() {
                let want = brute(base.as_slice(), dim, q, 10, metric);
                let single: Vec<u64> = idx.search(q, &p).unwrap().iter().map(|n| n.id).collect();
                assert_eq!(single, want, "{metric} single q{qi}");
                let got: Vec<u64> = batch[qi].iter().map(|n| n.id).collect();
                // GEMM rounding may swap exact near-ties only; Gaussian data has none at
                // this size, so demand equality.
                assert_eq!(got, want, "{metric} batch q{qi}");
            }
        }
    }

    #[test]
    fn save_load_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f.vq");
        let base = gaussian(500, 8, 0.0, 1.0, 1).unwrap();
        for metric in [Metric::L2, Metric::Cosine] {
            let mut idx = Flat::new(8, metric);
            idx.add(base.as_slice(), None).unwrap();
            idx.save_to(&p).unwrap();
            let back = crate::index::open(&p).unwrap();
            assert_eq!(back.len(), 500);
            let q = base.row(3);
            let prm = SearchParams::with_k(5);
            assert_eq!(idx.search(q, &prm).unwrap(), back.search(q, &prm).unwrap());
        }
        std::fs::write(&p, b"something else entirely").unwrap();
        assert!(crate::index::open(&p).is_err());
    }

    #[test]
    fn filtered_search_matches_restricted_brute_force() {
        let dim = 16;
        let base = gaussian(4000, dim, 0.0, 1.0, 21).unwrap();
        let qs = gaussian(10, dim, 0.0, 1.0, 22).unwrap();
        let mut idx = Flat::new(dim, Metric::L2);
        idx.add(base.as_slice(), None).unwrap();
        // A 10 % subset: ids divisible by 10.
        let subset: Vec<u64> = (0..4000).filter(|i| i % 10 == 0).collect();
        let sub_rows: Vec<f32> = subset
            .iter()
            .flat_map(|&i| base.row(i as usize).to_vec())
            .collect();
        let p = SearchParams::with_k(10);
        let pred = |id: u64| id.is_multiple_of(10);
        for q in qs.rows() {
            let want: Vec<u64> = brute(&sub_rows, dim, q, 10, Metric::L2)
                .into_iter()
                .map(|j| subset[j as usize])
                .collect();
            for f in [
                IdFilter::from_ids(subset.clone()),
                IdFilter::Predicate(&pred),
            ] {
                let native: Vec<u64> = idx
                    .search_filtered(q, &p, &f)
                    .unwrap()
                    .iter()
                    .map(|n| n.id)
                    .collect();
                assert_eq!(native, want);
            }
        }
        // The generic (expanding-k) default gives the same answer through a kind that
        // does not override it.
        struct Plain(Flat);
        impl Index for Plain {
            fn spec(&self) -> String {
                self.0.spec()
            }
            fn dim(&self) -> usize {
                self.0.dim()
            }
            fn metric(&self) -> Metric {
                self.0.metric()
            }
            fn len(&self) -> usize {
                self.0.len()
            }
            fn bytes_per_vector(&self) -> f64 {
                self.0.bytes_per_vector()
            }
            fn memory_bytes(&self) -> usize {
                self.0.memory_bytes()
            }
            fn to_container(&self) -> Result<ContainerWriter<'_>> {
                self.0.to_container()
            }
            fn add(&mut self, v: &[f32], ids: Option<&[u64]>) -> Result<()> {
                self.0.add(v, ids)
            }
            fn next_id(&self) -> Option<u64> {
                self.0.next_id()
            }
            fn check_ids(&self, ids: &[u64]) -> Result<()> {
                self.0.check_ids(ids)
            }
            fn delete(&mut self, ids: &[u64]) -> Result<usize> {
                self.0.delete(ids)
            }
            fn deleted(&self) -> usize {
                self.0.deleted()
            }
            fn compact(&mut self) -> Result<usize> {
                self.0.compact()
            }
            fn search(&self, q: &[f32], p: &SearchParams) -> Result<Vec<Neighbor>> {
                self.0.search(q, p)
            }
        }
        let plain = Plain(idx);
        for q in qs.rows() {
            let f = IdFilter::Predicate(&pred);
            assert_eq!(
                plain.search_filtered(q, &p, &f).unwrap(),
                plain.0.search_filtered(q, &p, &f).unwrap()
            );
        }
        // A filter with fewer than k eligible ids returns all of them.
        let few = IdFilter::from_ids(vec![5, 7, 999_999]);
        assert_eq!(plain.search_filtered(qs.row(0), &p, &few).unwrap().len(), 2);
        assert_eq!(
            plain.0.search_filtered(qs.row(0), &p, &few).unwrap().len(),
            2
        );
    }

    #[test]
    fn custom_ids_and_ties() {
        let mut idx = Flat::new(1, Metric::L2);
        idx.add(&[1.0, -1.0, 1.0], Some(&[30, 10, 20])).unwrap();
        let r = idx.search(&[0.0], &SearchParams::with_k(3)).unwrap();
        assert_eq!(r.iter().map(|n| n.id).collect::<Vec<_>>(), vec![10, 20, 30]);
        assert!(r.iter().all(|n| n.distance == 1.0));
    }

    #[test]
    fn bad_input_is_an_error() {
        let mut idx = Flat::new(3, Metric::L2);
        let p = SearchParams::with_k(1);
        assert!(matches!(idx.search(&[0.0; 3], &p), Err(Error::EmptyIndex)));
        assert!(idx.add(&[1.0, 2.0], None).is_err());
        assert!(matches!(
            idx.add(&[1.0, f32::INFINITY, 0.0], None),
            Err(Error::NonFinite { .. })
        ));
        assert!(idx.add(&[1.0, 2.0, 3.0], Some(&[1, 2])).is_err());
        idx.add(&[1.0, 2.0, 3.0], None).unwrap();
        assert!(matches!(
            idx.search(&[0.0; 2], &p),
            Err(Error::DimensionMismatch { .. })
        ));
        assert!(matches!(
            idx.search(&[f32::NAN, 0.0, 0.0], &p),
            Err(Error::NonFinite { .. })
        ));
        assert!(idx.search(&[0.0; 3], &SearchParams::with_k(0)).is_err());
        assert!(idx.search_batch(&[0.0; 4], &p).is_err());
        // k larger than the index returns everything there is.
        assert_eq!(
            idx.search(&[0.0; 3], &SearchParams::with_k(5))
                .unwrap()
                .len(),
            1
        );
    }
}
