//! Seeded, parallel k-means (Lloyd), used by the product quantizer, IVF's coarse
//! quantizer and the weight pipeline.
//!
//! - Initialisation: k-means++ or `k` random distinct points (FAISS's default).
//! - Assignment: a GEMM per block of points (`‖x‖² − 2x·c + ‖c‖²`, faer), rayon across
//!   blocks — never a per-pair loop.
//! - Update: per-thread partial sums, reduced; an empty cluster is re-seeded by splitting
//!   the largest one (its centroid nudged apart in two), as FAISS does.
//! - At most `max_points_per_centroid · k` training points (a seeded sample), `max_iter`
//!   iterations, stop early when the relative inertia decrease falls below `tol`; the
//!   inertia of every iteration is recorded.
//! - `runs` independent initialisations on the same sample, the lowest final inertia
//!   kept (FAISS's `nredo`).
//!
//! ```
//! use vecquant::kmeans::{KMeans, KMeansConfig};
//! // Two obvious clusters in 2-D.
//! let pts = [0.0, 0.0, 0.1, 0.0, 0.0, 0.1, 10.0, 10.0, 10.1, 10.0, 10.0, 10.1];
//! let km = KMeans::train(&pts, 2, &KMeansConfig::new(2)).unwrap();
//! let (a, _) = km.assign(&pts);
//! assert_eq!(a[0], a[1]);
//! assert_ne!(a[0], a[3]);
//! ```

use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::kernels;
use crate::linalg::gemm_abt;
use crate::rng::{RngExt, sample_indices, seeded};
use crate::vectors::{check_batch, check_finite};

/// Points per GEMM block in the assignment step.
const ASSIGN_BLOCK: usize = 1024;

/// How the first centroids are chosen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Init {
    /// `k` distinct training points chosen uniformly (FAISS's default).
    Random,
    /// k-means++ (Arthur & Vassilvitskii 2007): each next centroid drawn with
    /// probability proportional to the squared distance to the nearest chosen one.
    KMeansPlusPlus,
}

/// k-means settings.
#[derive(Clone, Debug, PartialEq)]
pub struct KMeansConfig {
    /// Number of clusters.
    pub k: usize,
    /// Most Lloyd iterations (FAISS: 25).
    pub max_iter: usize,
    /// Stop when the inertia decreased by less than this fraction in an iteration
    /// (0 = always run `max_iter`).
    pub tol: f64,
    /// Initialisation.
    pub init: Init,
    /// At most this many training points per centroid are used (FAISS: 256).
    pub max_points_per_centroid: usize,
    /// Seed for sampling and initialisation.
    pub seed: u64,
    /// Independent runs from different initialisations on the same sample; the one
    /// with the lowest final inertia is kept (FAISS's `nredo`; 1 = a single run).
    pub runs: usize,
}

impl KMeansConfig {
    /// FAISS-like defaults for `k` clusters: 25 iterations, random init, 256 points per
    /// centroid, tolerance 10⁻⁵, seed 42.
    pub fn new(k: usize) -> Self {
        KMeansConfig {
            k,
            max_iter: 25,
            tol: 1e-5,
            init: Init::Random,
            max_points_per_centroid: 256,
            seed: 42,
            runs: 1,
        }
    }
}

/// Trained centroids.
#[derive(Clone, Debug, PartialEq)]
pub struct KMeans {
    dim: usize,
    centroids: Vec<f32>,
    norms: Vec<f32>,
    inertia: Vec<f64>,
}

impl KMeans {
    /// Clusters row-major `data` (`dim` columns).
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] when `dim` is zero or does not divide `data.len()`,
    /// when `cfg.k`, `cfg.runs` or `cfg.max_points_per_centroid` is zero, or when there
    /// are fewer points than centroids; [`Error::NonFinite`] for a NaN or infinite
    /// component.
    pub fn train(data: &[f32], dim: usize, cfg: &KMeansConfig) -> Result<Self> {
        if dim == 0 {
            return Err(Error::param("dim", "must be at least 1"));
        }
        let n = check_batch(data, dim, "k-means training data")?;
        check_finite(data, dim, "k-means training data")?;
        if cfg.k == 0 {
            return Err(Error::param("k", "must be at least 1"));
        }
        if cfg.k > n {
            return Err(Error::param(
                "k",
                format!(
                    "{} centroids need at least as many training points, got {n}",
                    cfg.k
                ),
            ));
        }
        if cfg.runs == 0 {
            return Err(Error::param("runs", "must be at least 1"));
        }
        if cfg.max_points_per_centroid == 0 {
            return Err(Error::param(
                "max_points_per_centroid",
                "must be at least 1",
            ));
        }
        let mut rng = seeded(cfg.seed);
        let cap = cfg.k.saturating_mul(cfg.max_points_per_centroid);
        let sample: Vec<f32>;
        let x: &[f32] = if n > cap {
            let idx = sample_indices(n, cap, &mut rng);
            sample = idx
                .iter()
                .flat_map(|&i| data[i * dim..(i + 1) * dim].iter().copied())
                .collect();
            &sample
        } else {
            data
        };
        let n = x.len() / dim;
        let x_norms = kernels::row_norms_sq(x, dim);
        // Each run starts from its own initialisation; the first one continues the
        // sampling generator, so `runs = 1` is the plain algorithm.
        let run_once = |rng: &mut _| {
            let init = match cfg.init {
                Init::Random => sample_indices(n, cfg.k, rng)
                    .iter()
                    .flat_map(|&i| x[i * dim..(i + 1) * dim].iter().copied())
                    .collect(),
                Init::KMeansPlusPlus => plus_plus(x, dim, cfg.k, rng),
            };
            lloyd(x, &x_norms, dim, init, cfg)
        };
        let (mut centroids, mut inertia) = run_once(&mut rng);
        for run in 1..cfg.runs {
            let mut r = seeded(crate::rng::splitmix64(cfg.seed ^ ((run as u64) << 32)));
            let (c, i) = run_once(&mut r);
            if i.last() < inertia.last() {
                (centroids, inertia) = (c, i);
            }
        }
        let norms = kernels::row_norms_sq(&centroids, dim);
        Ok(KMeans {
            dim,
            centroids,
            norms,
            inertia,
        })
    }

    /// Centroids, row-major `k × dim`.
    pub fn centroids(&self) -> &[f32] {
        &self.centroids
    }

    /// Takes the centroids.
    pub fn into_centroids(self) -> Vec<f32> {
        self.centroids
    }

    /// Number of centroids.
    pub fn k(&self) -> usize {
        self.centroids.len() / self.dim
    }

    /// Inertia (sum of squared distances to the assigned centroid) at each iteration's
    /// assignment step.
    pub fn inertia(&self) -> &[f64] {
        &self.inertia
    }

    /// Nearest centroid and its squared distance for each row of `data`.
    pub fn assign(&self, data: &[f32]) -> (Vec<u32>, Vec<f32>) {
        nearest(data, self.dim, &self.centroids, &self.norms)
    }
}

impl KMeans {
    /// Lloyd iterations from given `centroids` (row-major `cfg.k × dim`) instead of a fresh
    /// initialisation: FAISS's `Clustering` with input centroids, which OPQ uses to carry
    /// each sub-quantizer over from one alternation to the next (a "hot start").
    /// `cfg.init` and `cfg.runs` do not apply; the sample cap (seeded by `cfg.seed`),
    /// `max_iter` and `tol` do, as in [`KMeans::train`].
    pub fn train_from(
        data: &[f32],
        dim: usize,
        centroids: Vec<f32>,
        cfg: &KMeansConfig,
    ) -> Result<Self> {
        if dim == 0 {
            return Err(Error::param("dim", "must be at least 1"));
        }
        let n = check_batch(data, dim, "k-means training data")?;
        check_finite(data, dim, "k-means training data")?;
        if cfg.k == 0 || centroids.len() != cfg.k.saturating_mul(dim) {
            return Err(Error::param(
                "centroids",
                format!(
                    "{} values are not k = {} centroids of dimension {dim}",
                    centroids.len(),
                    cfg.k
                ),
            ));
        }
        check_finite(&centroids, dim, "initial centroids")?;
        if cfg.max_points_per_centroid == 0 {
            return Err(Error::param(
                "max_points_per_centroid",
                "must be at least 1",
            ));
        }
        let cap = cfg.k.saturating_mul(cfg.max_points_per_centroid);
        let sample: Vec<f32>;
        let x: &[f32] = if n > cap {
            let idx = sample_indices(n, cap, &mut seeded(cfg.seed));
            sample = idx
                .iter()
                .flat_map(|&i| data[i * dim..(i + 1) * dim].iter().copied())
                .collect();
            &sample
        } else {
            data
        };
        let x_norms = kernels::row_norms_sq(x, dim);
        let (centroids, inertia) = lloyd(x, &x_norms, dim, centroids, cfg);
        let norms = kernels::row_norms_sq(&centroids, dim);
        Ok(KMeans {
            dim,
            centroids,
            norms,
            inertia,
        })
    }
}

/// Lloyd iterations from `centroids`; returns them and the inertia of every iteration.
fn lloyd(
    x: &[f32],
    x_norms: &[f32],
    dim: usize,
    mut centroids: Vec<f32>,
    cfg: &KMeansConfig,
) -> (Vec<f32>, Vec<f64>) {
    let n = x_norms.len();
    let mut inertia = Vec::with_capacity(cfg.max_iter);
    let mut assign = vec![0u32; n];
    let mut dist = vec![0.0f32; n];
    for _ in 0..cfg.max_iter.max(1) {
        let c_norms = kernels::row_norms_sq(&centroids, dim);
        assign_into(
            x,
            x_norms,
            dim,
            &centroids,
            &c_norms,
            &mut assign,
            &mut dist,
        );
        let obj: f64 = dist.iter().map(|&d| d.max(0.0) as f64).sum();
        let prev = inertia.last().copied();
        inertia.push(obj);
        update(x, dim, &assign, cfg.k, &mut centroids);
        if let Some(p) = prev
            && p > 0.0
            && (p - obj) / p < cfg.tol
        {
            break;
        }
    }
    (centroids, inertia)
}

/// Nearest of `centroids` (row-major, squared norms `c_norms`) for every row of `data`,
/// with the squared distance, by blocked GEMM in parallel.
pub fn nearest(
    data: &[f32],
    dim: usize,
    centroids: &[f32],
    c_norms: &[f32],
) -> (Vec<u32>, Vec<f32>) {
    let n = data.len() / dim;
    let x_norms = kernels::row_norms_sq(data, dim);
    let mut a = vec![0u32; n];
    let mut d = vec![0.0f32; n];
    assign_into(data, &x_norms, dim, centroids, c_norms, &mut a, &mut d);
    (a, d)
}

fn assign_into(
    x: &[f32],
    x_norms: &[f32],
    dim: usize,
    centroids: &[f32],
    c_norms: &[f32],
    assign: &mut [u32],
    dist: &mut [f32],
) {
    let k = c_norms.len();
    assign
        .par_chunks_mut(ASSIGN_BLOCK)
        .zip(dist.par_chunks_mut(ASSIGN_BLOCK))
        .enumerate()
        .for_each_init(Vec::new, |tile: &mut Vec<f32>, (b, (a, d))| {
            let start = b * ASSIGN_BLOCK;
            let rows = a.len();
            tile.resize(rows * k, 0.0);
            gemm_abt(&x[start * dim..(start + rows) * dim], centroids, dim, tile);
            for i in 0..rows {
                let (best, bd) = kernels::nearest(&tile[i * k..(i + 1) * k], c_norms);
                a[i] = best as u32;
                d[i] = (bd + x_norms[start + i]).max(0.0);
            }
        });
}

/// Centroid update with empty clusters split off the largest.
fn update(x: &[f32], dim: usize, assign: &[u32], k: usize, centroids: &mut [f32]) {
    let chunk = (assign.len() / rayon::current_num_threads().max(1)).max(4096);
    let (sums, counts) = x
        .par_chunks(chunk * dim)
        .zip(assign.par_chunks(chunk))
        .map(|(xs, a)| {
            let mut s = vec![0.0f64; k * dim];
            let mut c = vec![0usize; k];
            for (row, &j) in xs.chunks_exact(dim).zip(a) {
                let j = j as usize;
                c[j] += 1;
                for (acc, &v) in s[j * dim..(j + 1) * dim].iter_mut().zip(row) {
                    *acc += v as f64;
                }
            }
            (s, c)
        })
        .reduce(
            || (vec![0.0f64; k * dim], vec![0usize; k]),
            |(mut s1, mut c1), (s2, c2)| {
                s1.iter_mut().zip(&s2).for_each(|(a, b)| *a += b);
                c1.iter_mut().zip(&c2).for_each(|(a, b)| *a += b);
                (s1, c1)
            },
        );
    let mut counts = counts;
    for j in 0..k {
        if counts[j] > 0 {
            let inv = 1.0 / counts[j] as f64;
            for t in 0..dim {
                centroids[j * dim + t] = (sums[j * dim + t] * inv) as f32;
            }
        }
    }
    // Split the largest cluster for each empty one.
    const EPS: f32 = 1.0 / 1024.0;
    for j in 0..k {
        if counts[j] != 0 {
            continue;
        }
        let big = (0..k).max_by_key(|&i| counts[i]).unwrap_or(0);
        if counts[big] < 2 {
            break;
        }
        for t in 0..dim {
            let v = centroids[big * dim + t];
            let sign = if t % 2 == 0 { 1.0 } else { -1.0 };
            centroids[j * dim + t] = v * (1.0 + sign * EPS) + sign * EPS * 1e-3;
            centroids[big * dim + t] = v * (1.0 - sign * EPS) - sign * EPS * 1e-3;
        }
        counts[j] = counts[big] / 2;
        counts[big] -= counts[j];
    }
}

/// k-means++ seeding.
fn plus_plus(x: &[f32], dim: usize, k: usize, rng: &mut crate::rng::SeededRng) -> Vec<f32> {
    let n = x.len() / dim;
    let mut c = Vec::with_capacity(k * dim);
    let first = rng.random_range(0..n);
    c.extend_from_slice(&x[first * dim..(first + 1) * dim]);
    let mut d2: Vec<f32> = x
        .par_chunks(dim)
        .map(|r| kernels::l2_sq(r, &c[..dim]))
        .collect();
    for _ in 1..k {
        let total: f64 = d2.iter().map(|&v| v as f64).sum();
        let pick = if total > 0.0 {
            let mut target = rng.random::<f64>() * total;
            let mut idx = n - 1;
            for (i, &v) in d2.iter().enumerate() {
                target -= v as f64;
                if target <= 0.0 {
                    idx = i;
                    break;
                }
            }
            idx
        } else {
            rng.random_range(0..n)
        };
        let new = x[pick * dim..(pick + 1) * dim].to_vec();
        d2.par_iter_mut()
            .zip(x.par_chunks(dim))
            .for_each(|(d, r)| *d = d.min(kernels::l2_sq(r, &new)));
        c.extend_from_slice(&new);
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::generate::gaussian;

    /// 8 tight clusters around far-apart centres: every point lands with its own.
    fn clusters(per: usize, dim: usize) -> (Vec<f32>, Vec<usize>) {
        let noise = gaussian(8 * per, dim, 0.0, 0.05, 3).unwrap();
        let mut x = Vec::new();
        let mut label = Vec::new();
        for (i, r) in noise.rows().enumerate() {
            let c = i % 8;
            label.push(c);
            x.extend(
                r.iter()
                    .enumerate()
                    .map(|(t, &v)| v + if t % 8 == c { 20.0 } else { 0.0 }),
            );
        }
        (x, label)
    }

    #[test]
    fn recovers_separated_clusters_exactly() {
        let (x, label) = clusters(200, 16);
        for init in [Init::KMeansPlusPlus, Init::Random] {
            let cfg = KMeansConfig {
                init,
                ..KMeansConfig::new(8)
            };
            let km = KMeans::train(&x, 16, &cfg).unwrap();
            let (a, _) = km.assign(&x);
            // Same partition up to relabelling.
            for i in 0..label.len() {
                for j in 0..8 {
                    assert_eq!(label[i] == label[j], a[i] == a[j], "{init:?} {i} {j}");
                }
            }
        }
    }

    #[test]
    fn more_runs_keep_the_lowest_inertia() {
        // 16 centroids in 4-D Gaussian data: runs land in different local optima.
        let x = gaussian(4096, 4, 0.0, 1.0, 9).unwrap();
        let last = |runs: usize| {
            let cfg = KMeansConfig {
                runs,
                seed: 3,
                ..KMeansConfig::new(16)
            };
            let km = KMeans::train(x.as_slice(), 4, &cfg).unwrap();
            *km.inertia().last().unwrap()
        };
        let finals: Vec<f64> = [1, 2, 4, 8].into_iter().map(last).collect();
        // The first run is the single-run result, so more runs are never worse…
        for w in finals.windows(2) {
            assert!(w[1] <= w[0], "{finals:?}");
        }
        // …and here eight find a strictly better optimum than one.
        assert!(finals[3] < finals[0], "{finals:?}");
    }

    #[test]
    fn inertia_never_increases_and_is_deterministic() {
        let x = gaussian(5000, 8, 0.0, 1.0, 4).unwrap();
        let cfg = KMeansConfig {
            max_iter: 30,
            tol: 0.0,
            init: Init::KMeansPlusPlus,
            ..KMeansConfig::new(32)
        };
        let km = KMeans::train(x.as_slice(), 8, &cfg).unwrap();
        let h = km.inertia();
        assert_eq!(h.len(), 30);
        for w in h.windows(2) {
            assert!(w[1] <= w[0] * (1.0 + 1e-6), "{} > {}", w[1], w[0]);
        }
        assert!(h[29] < h[0]);
        let again = KMeans::train(x.as_slice(), 8, &cfg).unwrap();
        assert_eq!(km, again);
        // The recorded inertia matches a brute-force recomputation at the last step.
        let (_, d) = km.assign(x.as_slice());
        let brute: f64 = x
            .rows()
            .map(|r| {
                km.centroids()
                    .chunks_exact(8)
                    .map(|c| crate::kernels::scalar::l2_sq(r, c))
                    .fold(f32::INFINITY, f32::min) as f64
            })
            .sum();
        let got: f64 = d.iter().map(|&v| v as f64).sum();
        assert!((got - brute).abs() / brute < 1e-4);
    }

    #[test]
    fn empty_clusters_are_reseeded_by_splitting_the_largest() {
        // 1-D: cluster 0 holds 3 points, cluster 1 one point, cluster 2 none.
        let x = [1.0f32, 2.0, 3.0, 10.0];
        let assign = [0u32, 0, 0, 1];
        let mut c = vec![0.0f32, 0.0, 0.0];
        update(&x, 1, &assign, 3, &mut c);
        assert_eq!(c[1], 10.0);
        // The largest cluster's mean (2.0) is split in two distinct nearby centroids.
        assert!(c[0] != c[2], "{c:?}");
        assert!(
            (c[0] - 2.0).abs() < 0.01 && (c[2] - 2.0).abs() < 0.01,
            "{c:?}"
        );
        // Lloyd then separates the points between the two halves.
        let km = KMeans::train(&x, 1, &KMeansConfig::new(3)).unwrap();
        let (a, _) = km.assign(&x);
        let mut used = a.clone();
        used.sort_unstable();
        used.dedup();
        assert_eq!(used.len(), 3);
    }

    #[test]
    fn bad_parameters() {
        let x = [0.0f32, 1.0, 2.0, 3.0];
        assert!(
            KMeans::train(&x, 2, &KMeansConfig::new(3)).is_err(),
            "k > n"
        );
        assert!(KMeans::train(&x, 2, &KMeansConfig::new(0)).is_err());
        assert!(
            KMeans::train(&x, 3, &KMeansConfig::new(1)).is_err(),
            "ragged"
        );
        assert!(KMeans::train(&[0.0, f32::NAN], 1, &KMeansConfig::new(1)).is_err());
        let mut c = KMeansConfig::new(1);
        c.max_points_per_centroid = 0;
        assert!(KMeans::train(&x, 2, &c).is_err());
        let zero_runs = KMeansConfig {
            runs: 0,
            ..KMeansConfig::new(1)
        };
        assert!(KMeans::train(&x, 2, &zero_runs).is_err());
    }

    #[test]
    fn training_sample_is_capped() {
        let x = gaussian(10_000, 4, 0.0, 1.0, 6).unwrap();
        let cfg = KMeansConfig {
            max_points_per_centroid: 10,
            max_iter: 3,
            tol: 0.0,
            ..KMeansConfig::new(5)
        };
        let km = KMeans::train(x.as_slice(), 4, &cfg).unwrap();
        // Inertia is summed over the 50 sampled points only: ≈ 50 · 4 · (1 − ...) ≪ 10 000.
        assert!(km.inertia()[0] < 1000.0, "{}", km.inertia()[0]);
    }
}
