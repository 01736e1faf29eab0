//! Index spec strings, in FAISS's index-factory vocabulary.
//!
//! | spec | index |
//! | --- | --- |
//! | `Flat` | [`Flat`]: exact search over raw f32 vectors |
//! | `PQ{M}`, `PQ{M}x4fs`, `OPQ{M},PQ{M}`, `OPQ{M},PQ{M}x4fs` | [`Product`]: product quantizer, 8-bit or 4-bit fast-scan, optional OPQ rotation (see [`crate::index::product`]) |
//! | `IVF{nlist},Flat`, `IVF{nlist},SQ8` (any SQ variant), `IVF{nlist},PQ{M}`, `IVF{nlist},PQ{M}x4fs` | [`Ivf`]: inverted file over residual codes (see [`crate::index::ivf`]) |
//! | `HNSW{M}`, `HNSW{M},SQ8` (any SQ variant), `HNSW{M},PQ{m}` | [`Hnsw`]: graph built by hnsw_rs, searched with asymmetric distances to the stored codes (see [`crate::index::hnsw`]) |
//! | `SQ8`, `SQ4`, `SQ8u`, `SQ4u`, `SQ8opt`, `SQ4opt`, `SQ8lm`, `SQ4lm`, `SQ8nq`, `SQ4nq` | [`Scalar`]: scalar quantizer, 8 or 4 bits per dimension (see [`crate::index::scalar`]) |
//!
//! Parsing is case-insensitive for the keywords; a malformed spec is an
//! [`Error::Spec`] listing the accepted forms.

use crate::error::{Error, Result};
use crate::index::{Flat, Index, Product, Scalar};
use crate::metric::Metric;

/// The accepted spec forms, for error messages and `--help`.
pub const ACCEPTED: &str = "Flat, SQ8, SQ4, SQ8u, SQ4u, SQ8opt, SQ4opt, SQ8lm, SQ4lm, SQ8nq, SQ4nq, PQ{M}, PQ{M}x4fs, OPQ{M},PQ{M}, OPQ{M},PQ{M}x4fs, IVF{nlist},Flat, IVF{nlist},SQ8 (any SQ variant), IVF{nlist},PQ{M}, IVF{nlist},PQ{M}x4fs, HNSW{M}, HNSW{M},SQ8 (any SQ variant), HNSW{M},PQ{m}";

/// Options shared by every index built from a spec.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BuildOptions {
    /// The metric.
    pub metric: Metric,
    /// Seed for every training routine.
    pub seed: u64,
    /// Keep the raw vectors so searches can re-rank exactly (`--rerank`).
    pub keep_raw: bool,
}

impl Default for BuildOptions {
    fn default() -> Self {
        BuildOptions {
            metric: Metric::L2,
            seed: 42,
            keep_raw: false,
        }
    }
}

/// Creates an empty (untrained) index for `spec` over `dim`-dimensional vectors.
///
/// ```
/// use vecquant::index::spec::{new_index, BuildOptions};
/// let idx = new_index("Flat", 64, &BuildOptions::default()).unwrap();
/// assert_eq!(idx.spec(), "Flat");
/// assert!(new_index("Flta", 64, &BuildOptions::default()).is_err());
/// ```
pub fn new_index(spec: &str, dim: usize, opts: &BuildOptions) -> Result<Box<dyn Index>> {
    if dim == 0 {
        return Err(Error::param("dim", "must be at least 1"));
    }
    let s = spec.trim();
    let bad = |m: &str| Error::Spec {
        spec: spec.to_string(),
        message: format!("{m}; accepted forms: {ACCEPTED}"),
    };
    if s.is_empty() {
        return Err(bad("empty spec"));
    }
    match s.to_ascii_lowercase().as_str() {
        "flat" => Ok(Box::new(Flat::new(dim, opts.metric))),
        l if l.starts_with("opq")
            && l.split(',')
                .nth(1)
                .is_some_and(|p| p.trim().starts_with("ivf")) =>
        {
            crate::index::ivf::new(s, dim, opts.metric, opts.keep_raw, opts.seed)
        }
        l if l.starts_with("pq") || l.starts_with("opq") => {
            match crate::index::product::parse_spec(l) {
                Some(_) => Ok(Box::new(Product::new(
                    s,
                    dim,
                    opts.metric,
                    opts.keep_raw,
                    opts.seed,
                )?)),
                None => Err(bad("malformed product-quantizer spec")),
            }
        }
        l if l.starts_with("hnsw") => match crate::index::hnsw::parse_spec(l) {
            Some(_) => crate::index::hnsw::new(
                s,
                dim,
                opts.metric,
                opts.keep_raw,
                opts.seed,
                crate::index::hnsw::DEFAULT_EF_CONSTRUCTION,
            ),
            None => Err(bad("malformed HNSW spec")),
        },
        l if l.starts_with("ivf") => match crate::index::ivf::parse_spec(l) {
            Some(_) => crate::index::ivf::new(s, dim, opts.metric, opts.keep_raw, opts.seed),
            None => Err(bad("malformed inverted-file spec")),
        },
        l if l.starts_with("sq") => match crate::index::scalar::parse_spec(l) {
            Some(_) => Ok(Box::new(Scalar::new(s, dim, opts.metric, opts.keep_raw)?)),
            None => Err(bad("unknown scalar-quantizer variant")),
        },
        _ => Err(bad("unknown index type")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_rejects() {
        let o = BuildOptions::default();
        assert_eq!(new_index("flat", 4, &o).unwrap().spec(), "Flat");
        let e = new_index("IVF", 4, &o).err().unwrap().to_string();
        assert!(e.contains("accepted forms"), "{e}");
        assert!(new_index("", 4, &o).is_err());
        assert!(new_index("Flat", 0, &o).is_err());
    }
}

/// Builds an index from a spec string in one expression: choose the metric, seed and
/// whether to keep raw vectors for re-ranking, then train on a sample and add the base.
///
/// ```
/// use vecquant::prelude::*;
/// use vecquant::data::generate::gaussian;
///
/// let base = gaussian(2000, 32, 0.0, 1.0, 1).unwrap();
/// let index = IndexBuilder::new("SQ8")
///     .metric(Metric::L2)
///     .keep_raw(true)
///     .build(base.as_slice(), 32)
///     .unwrap();
/// let hits = index
///     .search(base.row(5), &SearchParams::new(3).rerank(20))
///     .unwrap();
/// assert_eq!(hits[0].id, 5);
/// assert!(IndexBuilder::new("PQ7x").build(base.as_slice(), 32).is_err());
/// ```
#[derive(Clone, Debug)]
pub struct IndexBuilder {
    spec: String,
    opts: BuildOptions,
    train: Option<Vec<f32>>,
}

impl IndexBuilder {
    /// A builder for `spec` (see [`new_index`] for the accepted forms).
    pub fn new(spec: &str) -> Self {
        IndexBuilder {
            spec: spec.to_string(),
            opts: BuildOptions::default(),
            train: None,
        }
    }

    /// The metric (default L2).
    pub fn metric(mut self, metric: Metric) -> Self {
        self.opts.metric = metric;
        self
    }

    /// Seed for every training routine (default 42).
    pub fn seed(mut self, seed: u64) -> Self {
        self.opts.seed = seed;
        self
    }

    /// Keep the raw vectors so searches can re-rank exactly (default off).
    pub fn keep_raw(mut self, keep: bool) -> Self {
        self.opts.keep_raw = keep;
        self
    }

    /// Train on this sample instead of the base vectors (row-major, same dimension).
    pub fn train_on(mut self, sample: &[f32]) -> Self {
        self.train = Some(sample.to_vec());
        self
    }

    /// An empty index (trained if a sample was given with [`IndexBuilder::train_on`]).
    pub fn empty(self, dim: usize) -> Result<Box<dyn Index>> {
        let mut index = new_index(&self.spec, dim, &self.opts)?;
        if let Some(t) = &self.train {
            index.train(t)?;
        }
        Ok(index)
    }

    /// Trains (on the sample, or on `base`) and adds `base` (row-major, `dim` columns,
    /// ids 0..n).
    pub fn build(self, base: &[f32], dim: usize) -> Result<Box<dyn Index>> {
        let train = self.train.clone();
        let mut index = new_index(&self.spec, dim, &self.opts)?;
        if !index.is_trained() {
            index.train(train.as_deref().unwrap_or(base))?;
        }
        index.add(base, None)?;
        Ok(index)
    }
}
