//! Building indexes from typed specs: the build options, the one constructor every spec
//! goes through, and the [`IndexBuilder`].

use super::*;

/// Options shared by every index built from a spec.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BuildOptions {
    /// The metric.
    pub metric: Metric,
    /// Seed for every training routine.
    pub seed: u64,
    /// Keep the raw vectors so searches can re-rank exactly (`--rerank`).
    pub keep_raw: bool,
    /// HNSW: the beam width while building (hnswlib's default 200).
    pub ef_construction: usize,
    /// HNSW: which code builds the graph (the native builder by default).
    pub hnsw_builder: crate::index::hnsw::HnswBuilder,
}

impl Default for BuildOptions {
    fn default() -> Self {
        BuildOptions {
            metric: Metric::L2,
            seed: 42,
            keep_raw: false,
            ef_construction: crate::index::hnsw::DEFAULT_EF_CONSTRUCTION,
            hnsw_builder: crate::index::hnsw::HnswBuilder::default(),
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
    build_index(&spec.parse()?, dim, opts)
}

/// [`new_index`] restricted to one container kind (`"ivf"`, `"hnsw"`, ...): the
/// per-kind constructors (`ivf::new`, `hnsw::new`) are this.
pub(crate) fn new_index_of_kind(
    spec: &str,
    kind: &'static str,
    dim: usize,
    opts: &BuildOptions,
) -> Result<Box<dyn Index>> {
    let typed: IndexSpec = spec.parse()?;
    if typed.kind() != kind {
        return Err(Error::Spec {
            spec: spec.to_string(),
            message: format!(
                "it builds {}, where a `{kind}` index is needed; accepted forms: {ACCEPTED}",
                typed.family()
            ),
        });
    }
    build_index(&typed, dim, opts)
}

/// Creates an empty (untrained) index for a typed spec over `dim`-dimensional vectors:
/// the one constructor every spec string goes through.
///
/// ```
/// use vecquant::index::spec::{BuildOptions, IndexSpec, build_index};
/// let spec: IndexSpec = "IVF16,SQ8".parse().unwrap();
/// let idx = build_index(&spec, 32, &BuildOptions::default()).unwrap();
/// assert_eq!(idx.spec(), "IVF16,SQ8");
/// ```
///
/// # Errors
/// `dim` is 0 or does not fit the spec (PQ's `M` must divide it).
pub fn build_index(spec: &IndexSpec, dim: usize, opts: &BuildOptions) -> Result<Box<dyn Index>> {
    spec.check_dim(dim)?;
    let (metric, keep_raw, seed) = (opts.metric, opts.keep_raw, opts.seed);
    Ok(match *spec {
        IndexSpec::Flat => Box::new(Flat::new(dim, metric)),
        IndexSpec::Scalar(sq) => Box::new(Scalar::with_config(
            sq.name(),
            dim,
            metric,
            sq.config(),
            keep_raw,
        )?),
        IndexSpec::Product { opq, pq } => Box::new(Product::with_spec(
            pq.to_pq_spec(opq),
            dim,
            metric,
            keep_raw,
            seed,
        )?),
        IndexSpec::RaBitQ(bits) => Box::new(
            crate::index::FlatCodes::<crate::quant::rabitq::RaBitQ>::new(
                crate::quant::rabitq::RabitqSpec { bits },
                dim,
                metric,
                keep_raw,
                seed,
            )?,
        ),
        IndexSpec::RaBitQFs(bits) => Box::new(crate::index::FlatCodes::<
            crate::quant::rabitq::RaBitQFs,
        >::new(
            crate::quant::rabitq::RabitqFsSpec { bits },
            dim,
            metric,
            keep_raw,
            seed,
        )?),
        IndexSpec::Ivf { opq, nlist, inner } => crate::index::ivf::new_typed(
            nlist,
            inner.to_inner_spec(),
            inner.pq().filter(|_| opq).map(|p| p.m),
            dim,
            metric,
            keep_raw,
            seed,
        )?,
        IndexSpec::Hnsw { m, inner } => {
            crate::index::hnsw::new_typed(m, inner.to_inner_spec(), dim, opts)?
        }
    })
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
