//! Seeded synthetic data sets.
//!
//! - i.i.d. Gaussian: every component drawn from N(μ, σ²) — the seed documents' example
//!   is 2,000 vectors of dimension 256; the default benchmark set is 100,000 × 128.
//! - Gaussian mixture: `clusters` centres drawn from N(0, 1)ᵈ, each vector a uniformly
//!   chosen centre plus N(0, spread²)ᵈ noise — clustered data like real embeddings, on
//!   which IVF partitions and OPQ rotations matter.
//!
//! Generation is parallel but deterministic: rows are produced in chunks of
//! [`CHUNK`], each from its own stream derived from (seed, split, chunk), so the output
//! depends only on the parameters and the seed, never on the thread count.

use rand_distr::{Distribution, StandardNormal};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::rng::{self, RngExt};
use crate::vectors::VectorSet;

/// Rows generated per independent random stream.
pub const CHUNK: usize = 1024;

/// What distribution a synthetic set is drawn from.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub enum DataDistribution {
    /// i.i.d. N(mean, std²) components.
    Gaussian {
        /// μ
        mean: f32,
        /// σ
        std: f32,
    },
    /// A mixture of `clusters` Gaussians with centres from N(0, 1) and noise N(0, spread²).
    Mixture {
        /// Number of mixture components.
        clusters: usize,
        /// Standard deviation of the noise around each centre.
        spread: f32,
    },
}

/// Parameters of a synthetic data set with train / base / query splits.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SyntheticSpec {
    /// Vector dimension.
    pub dim: usize,
    /// Number of base (indexed) vectors.
    pub n_base: usize,
    /// Number of query vectors.
    pub n_query: usize,
    /// Number of training vectors (a separate sample, as in SIFT1M's `learn` split).
    pub n_train: usize,
    /// The distribution.
    pub distribution: DataDistribution,
    /// Seed: the same spec and seed give bit-identical files.
    pub seed: u64,
}

impl SyntheticSpec {
    /// The default benchmark set: 100,000 × 128 i.i.d. N(0, 1), 1,000 queries, 50,000
    /// training vectors, seed 42.
    pub fn default_bench() -> Self {
        SyntheticSpec {
            dim: 128,
            n_base: 100_000,
            n_query: 1_000,
            n_train: 50_000,
            distribution: DataDistribution::Gaussian {
                mean: 0.0,
                std: 1.0,
            },
            seed: 42,
        }
    }

    fn validate(&self) -> Result<()> {
        if self.dim == 0 {
            return Err(Error::param("dim", "must be at least 1"));
        }
        if self.n_base == 0 {
            return Err(Error::param(
                "n",
                "the base split needs at least one vector",
            ));
        }
        match self.distribution {
            DataDistribution::Gaussian { mean, std } => {
                if !mean.is_finite() || !std.is_finite() || std < 0.0 {
                    return Err(Error::param(
                        "std",
                        format!(
                            "need a finite mean and a finite std ≥ 0, got mean {mean}, std {std}"
                        ),
                    ));
                }
            }
            DataDistribution::Mixture { clusters, spread } => {
                if clusters == 0 {
                    return Err(Error::param("clusters", "must be at least 1"));
                }
                if !spread.is_finite() || spread < 0.0 {
                    return Err(Error::param(
                        "spread",
                        format!("must be finite and ≥ 0, got {spread}"),
                    ));
                }
            }
        }
        self.check_size(super::memory_total())
    }

    /// The splits (and a mixture's centres) are generated in memory: their total size
    /// must be representable and, when the machine's memory is known (`memory`, bytes),
    /// fit in it — an allocation past it would abort the process or wake the OOM killer.
    fn check_size(&self, memory: Option<u64>) -> Result<()> {
        let clusters = match self.distribution {
            DataDistribution::Mixture { clusters, .. } => clusters,
            DataDistribution::Gaussian { .. } => 0,
        };
        let bytes = [self.n_train, self.n_base, self.n_query, clusters]
            .into_iter()
            .try_fold(0usize, usize::checked_add)
            .and_then(|rows| rows.checked_mul(self.dim))
            .and_then(|values| values.checked_mul(4))
            .and_then(|b| u64::try_from(b).ok());
        let what = || {
            format!(
                "{} train + {} base + {} query{} vectors of dimension {}",
                self.n_train,
                self.n_base,
                self.n_query,
                if clusters > 0 {
                    format!(" + {clusters} centre")
                } else {
                    String::new()
                },
                self.dim
            )
        };
        match super::memory_shortfall(bytes, memory) {
            Some(why) => Err(Error::param(
                "n",
                format!("{} {why} (the splits are generated in memory)", what()),
            )),
            None => Ok(()),
        }
    }

    /// Generates the three splits.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] when `dim` or `n_base` is zero, the Gaussian's mean or
    /// standard deviation is not finite (or the deviation is negative), the mixture
    /// has no clusters or a negative or non-finite spread, or the splits would not fit
    /// in memory.
    pub fn generate(&self) -> Result<Dataset> {
        self.validate()?;
        let centres = match self.distribution {
            DataDistribution::Mixture { clusters, .. } => {
                let mut r = rng::stream(self.seed, 0);
                (0..clusters * self.dim)
                    .map(|_| StandardNormal.sample(&mut r))
                    .collect::<Vec<f32>>()
            }
            DataDistribution::Gaussian { .. } => Vec::new(),
        };
        let split = |n: usize, split_id: u64| self.rows(n, split_id, &centres);
        Ok(Dataset {
            train: split(self.n_train, 1)?,
            base: split(self.n_base, 2)?,
            query: split(self.n_query, 3)?,
        })
    }

    fn rows(&self, n: usize, split_id: u64, centres: &[f32]) -> Result<VectorSet> {
        let dim = self.dim;
        // (`validate` checked the sizes against the machine's memory where it is known;
        // elsewhere a failed allocation is still an error, not an abort.)
        let len = n.saturating_mul(dim);
        let mut data = Vec::new();
        data.try_reserve_exact(len).map_err(|_| {
            Error::param(
                "n",
                format!("{n} vectors of dimension {dim} do not fit in memory"),
            )
        })?;
        data.resize(len, 0.0f32);
        data.par_chunks_mut(CHUNK * dim)
            .enumerate()
            .for_each(|(chunk, out)| {
                let mut r = rng::stream(self.seed, (split_id << 40) | chunk as u64);
                match self.distribution {
                    DataDistribution::Gaussian { mean, std } => {
                        for x in out.iter_mut() {
                            let z: f32 = StandardNormal.sample(&mut r);
                            *x = mean + std * z;
                        }
                    }
                    DataDistribution::Mixture { clusters, spread } => {
                        for row in out.chunks_exact_mut(dim) {
                            let c = r.random_range(0..clusters);
                            let centre = &centres[c * dim..(c + 1) * dim];
                            for (x, &m) in row.iter_mut().zip(centre) {
                                let z: f32 = StandardNormal.sample(&mut r);
                                *x = m + spread * z;
                            }
                        }
                    }
                }
            });
        VectorSet::new(data, dim)
    }
}

/// `n` i.i.d. N(mean, std²) vectors of dimension `dim` (one split, stream `seed`).
///
/// # Errors
/// [`Error::InvalidParameter`] when `dim` is zero or `mean`/`std` is not finite (or
/// `std` is negative).
pub fn gaussian(n: usize, dim: usize, mean: f32, std: f32, seed: u64) -> Result<VectorSet> {
    let spec = SyntheticSpec {
        dim,
        n_base: n.max(1),
        n_query: 0,
        n_train: 0,
        distribution: DataDistribution::Gaussian { mean, std },
        seed,
    };
    spec.validate()?;
    spec.rows(n, 2, &[])
}

/// A generated (or loaded) data set.
#[derive(Clone, Debug)]
pub struct Dataset {
    /// Training sample for quantizers.
    pub train: VectorSet,
    /// The vectors to index.
    pub base: VectorSet,
    /// The queries.
    pub query: VectorSet,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(seed: u64) -> SyntheticSpec {
        SyntheticSpec {
            dim: 16,
            n_base: 3000,
            n_query: 10,
            n_train: 500,
            distribution: DataDistribution::Gaussian {
                mean: 1.0,
                std: 2.0,
            },
            seed,
        }
    }

    /// Sizes past the machine's memory, or past what `usize` holds, are parameter
    /// errors before anything is allocated (`gen gaussian --n 100000000 --dim 100000000`
    /// aborted with "memory allocation of 40000000000000 bytes failed").
    #[test]
    fn sizes_past_memory_are_errors_not_aborts() {
        let mut s = spec(1);
        // 500 + 3000 + 10 rows × 16 × 4 bytes = 224,640 bytes.
        assert!(s.check_size(Some(224_640)).is_ok());
        let e = s.check_size(Some(224_639)).unwrap_err().to_string();
        assert!(e.contains("3000 base") && e.contains("memory"), "{e}");
        s.distribution = DataDistribution::Mixture {
            clusters: 10,
            spread: 1.0,
        };
        let e = s.check_size(Some(224_640)).unwrap_err().to_string();
        assert!(e.contains("10 centre"), "{e}");
        s.n_base = usize::MAX / 8;
        let e = s.check_size(None).unwrap_err().to_string();
        assert!(
            e.contains("more bytes than this machine can address"),
            "{e}"
        );
        assert!(s.generate().is_err());
        // Representable but huge: refused by the memory check where the machine's
        // memory is known, by the failed reservation elsewhere.
        s.n_base = 100_000_000;
        s.dim = 100_000_000;
        let e = s.generate().unwrap_err().to_string();
        assert!(e.contains("memory"), "{e}");
    }

    #[test]
    fn deterministic_under_seed_and_thread_count() {
        let a = spec(7).generate().unwrap();
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap();
        let b = pool.install(|| spec(7).generate().unwrap());
        assert_eq!(a.base, b.base);
        assert_eq!(a.query, b.query);
        assert_eq!(a.train, b.train);
        let c = spec(8).generate().unwrap();
        assert_ne!(a.base, c.base);
        assert_ne!(
            a.base.row(0),
            a.train.row(0),
            "splits are independent streams"
        );
    }

    #[test]
    fn gaussian_moments() {
        let d = spec(1).generate().unwrap();
        let x = d.base.as_slice();
        let n = x.len() as f64;
        let mean = x.iter().map(|&v| v as f64).sum::<f64>() / n;
        let var = x.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n;
        assert!((mean - 1.0).abs() < 0.03, "mean {mean}");
        assert!((var - 4.0).abs() < 0.1, "var {var}");
    }

    #[test]
    fn mixture_is_clustered() {
        let s = SyntheticSpec {
            distribution: DataDistribution::Mixture {
                clusters: 4,
                spread: 0.05,
            },
            ..spec(3)
        };
        let d = s.generate().unwrap();
        // With tiny spread every point is within a few spreads of one of 4 centres, so
        // the distinct rounded first coordinates number about 4.
        let mut firsts: Vec<i32> = d.base.rows().map(|r| (r[0] * 2.0).round() as i32).collect();
        firsts.sort_unstable();
        firsts.dedup();
        assert!(firsts.len() <= 8, "{firsts:?}");
    }

    #[test]
    fn bad_parameters() {
        let mut s = spec(1);
        s.dim = 0;
        assert!(s.generate().is_err());
        let s = SyntheticSpec {
            distribution: DataDistribution::Mixture {
                clusters: 0,
                spread: 1.0,
            },
            ..spec(1)
        };
        assert!(s.generate().is_err());
        assert!(gaussian(10, 4, 0.0, f32::NAN, 1).is_err());
    }
}
