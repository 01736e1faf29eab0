//! `Scalar`: the flat scan over scalar-quantized codes (FAISS's `IndexScalarQuantizer`):
//! [`FlatCodes`] over the [`ScalarQuantizer`] codec, the same scan IVF lists and HNSW
//! nodes run over SQ codes.
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
//! (see [`crate::kernels::sq`]), four queries per pass over the codes in batch search.
//! Each vector keeps one `f32` correction term — `‖x̂‖²` for L2, `1/‖x̂‖` for cosine (so
//! scores stay true cosines of the decoded vectors, the per-vector term Qdrant keeps for
//! the same reason); inner product needs none. With
//! [`crate::index::spec::BuildOptions::keep_raw`] the original vectors are kept in a
//! separate section and `rerank = R` re-scores the best `R` candidates exactly.
//!
//! Saved as a `codes` container like every flat index over a codec. Files of the `sq`
//! kind (written before flat SQ became `FlatCodes`: the same sections, the quantizer's
//! configuration as parameters) open as the same index ([`from_sq_container`]).

use serde::Deserialize;

use crate::error::{Error, Result};
use crate::index::FlatCodes;
use crate::index::spec::IndexSpec;
use crate::metric::Metric;
use crate::quant::codec::SqSpec;
use crate::quant::scalar::{ScalarQuantizer, SqConfig};
use crate::store::Container;

/// Flat scan over scalar-quantized codes.
pub type Scalar = FlatCodes<ScalarQuantizer>;

impl FlatCodes<ScalarQuantizer> {
    /// An untrained index for `spec` (see the module table); `keep_raw` keeps the
    /// original vectors for re-ranking.
    ///
    /// # Errors
    /// A spec that is not a scalar quantizer's, or a dimension of 0.
    pub fn from_spec(spec: &str, dim: usize, metric: Metric, keep_raw: bool) -> Result<Self> {
        match spec.parse::<IndexSpec>() {
            Ok(IndexSpec::Scalar(sq)) => {
                Self::with_config(sq.name(), dim, metric, sq.config(), keep_raw)
            }
            _ => Err(Error::Spec {
                spec: spec.to_string(),
                message: "not a scalar-quantizer spec (SQ8, SQ4, SQ8u, SQ4u, SQ8opt, SQ4opt, \
                          SQ8lm, SQ4lm, SQ8nq, SQ4nq)"
                    .into(),
            }),
        }
    }

    /// An untrained index named `spec` with an explicit quantizer configuration (any
    /// range estimator and levels, including a
    /// [`crate::quant::scalar::Levels::Custom`] codebook).
    ///
    /// # Errors
    /// A dimension of 0, or bits per dimension other than 8 and 4.
    pub fn with_config(
        spec: impl Into<String>,
        dim: usize,
        metric: Metric,
        config: SqConfig,
        keep_raw: bool,
    ) -> Result<Self> {
        let spec = SqSpec {
            name: spec.into(),
            config,
        };
        FlatCodes::new(spec, dim, metric, keep_raw, 0)
    }
}

/// The parameters of an `sq` container.
#[derive(Deserialize)]
struct SqParams {
    config: SqConfig,
    keep_raw: bool,
}

/// Loads an `sq` container (flat SQ as saved before it became [`FlatCodes`]): its
/// sections are a `codes` container's over the same quantizer, and its spec is the
/// header's.
///
/// # Errors
/// A malformed header or sections of the wrong size.
pub(crate) fn from_sq_container(c: &Container) -> Result<Scalar> {
    let p: SqParams = c.params()?;
    let spec = SqSpec {
        name: c.header().spec.clone(),
        config: p.config,
    };
    FlatCodes::from_sections(c, spec, p.keep_raw)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::generate::gaussian;
    use crate::data::groundtruth::exact_search;
    use crate::eval::recall_at_k;
    use crate::index::{IdFilter, Index, SearchParams};
    use crate::store::OpenOptions;
    use crate::vectors::normalize_in_place;

    /// Rows of the multi-chunk tests: past one chunk of the flat scan (4,096 rows) and
    /// of the SQ scan within it (1,024), the last of each partial.
    const ROWS: usize = 4096 + 1024 + 300;

    fn build(spec: &str, metric: Metric, keep_raw: bool, n: usize, dim: usize) -> Scalar {
        let data = gaussian(n, dim, 0.0, 1.0, 3).unwrap();
        let mut idx = Scalar::from_spec(spec, dim, metric, keep_raw).unwrap();
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
                let mut idx = Scalar::from_spec(spec, dim, metric, true).unwrap();
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
                let n = ROWS;
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
        let (n, dim, k) = (ROWS, 24, 10);
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

    /// Bytes per vector are known before training too (the spec decides them), flat,
    /// under IVF and in HNSW, for 8- and 4-bit SQ and PQ, odd dimensions rounded up.
    #[test]
    fn untrained_indexes_know_their_bytes_per_vector() {
        use crate::index::spec::{BuildOptions, build_index};
        for (spec, dim, bytes) in [
            ("SQ8", 32, 32.0),
            ("SQ4", 33, 17.0),
            ("SQ8nq", 7, 7.0),
            ("IVF4,SQ8", 32, 32.0),
            ("IVF4,SQ4", 9, 5.0),
            ("IVF4,PQ8", 32, 8.0),
            ("IVF4,PQ8x4fs", 32, 4.0),
            ("HNSW8,SQ8", 32, 32.0),
            ("HNSW8,SQ4", 9, 5.0),
            ("HNSW8,PQ8", 32, 8.0),
        ] {
            let parsed: IndexSpec = spec.parse().unwrap();
            let idx = build_index(&parsed, dim, &BuildOptions::default()).unwrap();
            assert!(!idx.is_trained(), "{spec}");
            assert_eq!(idx.bytes_per_vector(), bytes, "{spec} untrained");
            let mut idx = idx;
            let data = gaussian(300, dim, 0.0, 1.0, 4).unwrap();
            idx.train(data.as_slice()).unwrap();
            assert_eq!(idx.bytes_per_vector(), bytes, "{spec} trained");
        }
    }

    #[test]
    fn bad_input_is_an_error() {
        let mut idx = Scalar::from_spec("SQ8", 4, Metric::L2, false).unwrap();
        assert!(idx.add(&[0.0; 4], None).is_err(), "untrained");
        assert!(Scalar::from_spec("SQ7", 4, Metric::L2, false).is_err());
        assert!(Scalar::from_spec("SQ8xx", 4, Metric::L2, false).is_err());
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
