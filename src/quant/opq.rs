//! Optimized product quantization (OPQ, Ge, He, Ke & Sun 2013, the non-parametric
//! variant): an orthogonal rotation `R` learned so that the product quantizer of the
//! rotated vectors `x · R` loses as little as possible.
//!
//! The objective is `min_{R, C} Σ ‖x R − c(x R)‖²` over orthogonal `R` and PQ codebooks
//! `C`. It is minimised by alternation:
//!
//! 1. **codes, `R` fixed**: train the product quantizer on `X R` (k-means in each
//!    sub-space) and reconstruct `Y = c(X R)`;
//! 2. **rotation, `Y` fixed**: `min_R ‖X R − Y‖²_F` over orthogonal `R` is the orthogonal
//!    Procrustes problem. Since `‖X R‖ = ‖X‖`, it is `max_R tr(Rᵀ Xᵀ Y)`, solved by
//!    `R = U Vᵀ` for the SVD `Xᵀ Y = U Σ Vᵀ` (Schönemann 1966).
//!
//! Neither step raises the objective, so it decreases monotonically (up to the
//! k-means re-sampling of the first step).
//!
//! [`OpqTraining::default`] is what FAISS's `OPQMatrix::train` does
//! (faiss/VectorTransform.cpp, `OPQMatrix::train`; counts in VectorTransform.h):
//! - at most 65,536 (256 × 256) training points, a random subset;
//! - the sample is centred (the rotation is learned on `x − μ`; applying it needs no
//!   bias, an orthogonal map keeps the distances);
//! - the first rotation is a random orthogonal matrix (QR of a Gaussian matrix), not
//!   the identity;
//! - 50 alternations; the PQ inside them has 256 centroids per sub-space, its k-means
//!   runs 40 Lloyd iterations in the first alternation from a random initialisation,
//!   then 4 per alternation *starting from the previous alternation's centroids*
//!   (`Train_hot_start`), with up to 1,000 points per centroid (so all 65,536).
//!
//! The quantizer that encodes the data is trained afterwards, from scratch, on the
//! rotated full training set — as `index_factory("OPQ16,PQ16")` does in
//! `IndexPreTransform::train` — so the 8-bit PQ here also serves 4-bit fast-scan
//! indexes, exactly as in FAISS, where the `OPQMatrix` has its own 8-bit PQ.
//!
//! ```
//! use vecquant::data::generate::gaussian;
//! use vecquant::quant::opq::{OpqTraining, train_opq};
//! let x = gaussian(2000, 16, 0.0, 1.0, 1).unwrap();
//! let cfg = OpqTraining { iterations: 3, nbits: 4, ..OpqTraining::default() };
//! let opq = train_opq(x.as_slice(), 16, 4, 7, &cfg).unwrap();
//! let r = opq.rotation(); // 16 × 16, row-major: rotated = x · R
//! let col0: f32 = (0..16).map(|i| r[i * 16] * r[i * 16]).sum();
//! assert!((col0 - 1.0).abs() < 1e-4);
//! assert!(train_opq(x.as_slice(), 16, 5, 7, &cfg).is_err()); // 5 ∤ 16
//! ```

use faer::linalg::matmul::matmul;
use faer::{Accum, Mat, MatMut, MatRef, Par};
use rand_distr::{Distribution, StandardNormal};
use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::kmeans::{Init, KMeans, KMeansConfig};
use crate::quant::product::check_params;
use crate::rng::{sample_indices, splitmix64, stream};
use crate::vectors::{check_batch, check_finite};

/// Rows per block of the rotation and `Xᵀ Y` products: blocks run in parallel and
/// their partial `Xᵀ Y` are summed in block order, so the result does not depend on
/// the thread count.
const BLOCK: usize = 4096;

/// Settings of [`train_opq`]; [`Default`] is FAISS's `OPQMatrix`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OpqTraining {
    /// Alternations of (PQ training, Procrustes rotation) (FAISS `niter`: 50).
    pub iterations: usize,
    /// Lloyd iterations of the PQ k-means in the first alternation, from a random
    /// initialisation (FAISS `niter_pq_0`: 40).
    pub first_pq_iterations: usize,
    /// Lloyd iterations in each later alternation, started from the previous
    /// centroids (FAISS `niter_pq`: 4).
    pub pq_iterations: usize,
    /// Training points used, a seeded random subset beyond it (FAISS
    /// `max_train_points`: 256 × 256).
    pub max_train_points: usize,
    /// Bits of the PQ used while learning the rotation (FAISS: 8, whatever the index's
    /// PQ; 4 is cheaper).
    pub nbits: u8,
    /// k-means sample cap per centroid inside the alternations (FAISS sets 1,000, so
    /// the whole 65,536-point sample is used).
    pub max_points_per_centroid: usize,
}

impl Default for OpqTraining {
    /// FAISS's `OPQMatrix` counts: 50 alternations, 40 then 4 PQ iterations (hot
    /// start), 65,536 points, an 8-bit PQ, 1,000 points per centroid.
    fn default() -> Self {
        OpqTraining {
            iterations: 50,
            first_pq_iterations: 40,
            pq_iterations: 4,
            max_train_points: 256 * 256,
            nbits: 8,
            max_points_per_centroid: 1000,
        }
    }
}

/// A learned OPQ rotation.
#[derive(Clone, Debug, PartialEq)]
pub struct Opq {
    dim: usize,
    /// Row-major `dim × dim`, orthogonal; the rotated vector is `x · R`.
    rotation: Vec<f32>,
    /// PQ distortion per vector (squared error of the centred, rotated sample) at each
    /// alternation, before its rotation update (FAISS's verbose `obj`).
    objective: Vec<f64>,
}

impl Opq {
    /// Dimension.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// The rotation, row-major `dim × dim`: the rotated vector is `x · R`.
    pub fn rotation(&self) -> &[f32] {
        &self.rotation
    }

    /// Takes the rotation.
    pub fn into_rotation(self) -> Vec<f32> {
        self.rotation
    }

    /// Mean squared PQ reconstruction error per (centred, rotated) training vector at
    /// each alternation, measured with that alternation's rotation and codebooks.
    pub fn objective(&self) -> &[f64] {
        &self.objective
    }

    /// Rotates row-major vectors: `x · R`.
    pub fn apply(&self, x: &[f32]) -> Result<Vec<f32>> {
        check_batch(x, self.dim, "vectors to rotate")?;
        Ok(rotate(x, &self.rotation, self.dim))
    }
}

/// Learns an OPQ rotation for `m` sub-quantizers from row-major `x` (`dim` columns),
/// seeded: the same data, seed and settings give the same rotation. See the module
/// docs for the algorithm. Costs `iterations` PQ trainings of `pq_iterations` Lloyd
/// steps plus one encoding, each over at most `max_train_points` vectors and `2^nbits`
/// centroids per sub-space — the same work as FAISS's `OPQMatrix::train`, several
/// times a plain PQ training.
///
/// Fails when `m` does not divide `dim`, `nbits` is not 4 or 8, a count is zero,
/// there are fewer points than centroids per sub-space, or the data are not finite.
pub fn train_opq(x: &[f32], dim: usize, m: usize, seed: u64, cfg: &OpqTraining) -> Result<Opq> {
    check_params(dim, m, cfg.nbits)?;
    let n = check_batch(x, dim, "OPQ training data")?;
    check_finite(x, dim, "OPQ training data")?;
    for (name, v) in [
        ("iterations", cfg.iterations),
        ("first_pq_iterations", cfg.first_pq_iterations),
        ("pq_iterations", cfg.pq_iterations),
        ("max_points_per_centroid", cfg.max_points_per_centroid),
    ] {
        if v == 0 {
            return Err(Error::param(name, "must be at least 1"));
        }
    }
    let ksub = 1usize << cfg.nbits;
    let ns = n.min(cfg.max_train_points);
    if ns < ksub {
        return Err(Error::param(
            "training data",
            format!(
                "OPQ needs at least {ksub} training vectors for {ksub} centroids per sub-space, \
                 got {ns} (n = {n}, max_train_points = {})",
                cfg.max_train_points
            ),
        ));
    }
    let xc = centred_sample(x, dim, ns, seed);
    let dsub = dim / m;
    let mut r = random_orthogonal(dim, seed)?;
    let mut books: Vec<Vec<f32>> = Vec::new();
    let mut objective = Vec::with_capacity(cfg.iterations);
    let mut y = vec![0.0f32; ns * dim];
    for it in 0..cfg.iterations {
        let xr = rotate(&xc, &r, dim);
        // Step 1: PQ codebooks and reconstruction of X R.
        let trained: Vec<(Vec<f32>, Vec<f32>, f64)> = (0..m)
            .into_par_iter()
            .map(|s| {
                let sub = columns(&xr, dim, s * dsub, dsub);
                let kcfg = KMeansConfig {
                    max_iter: if it == 0 {
                        cfg.first_pq_iterations
                    } else {
                        cfg.pq_iterations
                    },
                    // FAISS runs every iteration; no early stop.
                    tol: 0.0,
                    init: Init::Random,
                    max_points_per_centroid: cfg.max_points_per_centroid,
                    seed: splitmix64(splitmix64(seed ^ 0x0b0e) ^ s as u64),
                    ..KMeansConfig::new(ksub)
                };
                let km = match books.get(s) {
                    Some(prev) => KMeans::train_from(&sub, dsub, prev.clone(), &kcfg)?,
                    None => KMeans::train(&sub, dsub, &kcfg)?,
                };
                let (assign, dist) = km.assign(&sub);
                let c = km.centroids();
                let rec: Vec<f32> = assign
                    .iter()
                    .flat_map(|&a| {
                        c[a as usize * dsub..(a as usize + 1) * dsub]
                            .iter()
                            .copied()
                    })
                    .collect();
                let err: f64 = dist.iter().map(|&v| v as f64).sum();
                Ok((km.into_centroids(), rec, err))
            })
            .collect::<Result<_>>()?;
        let mut err = 0.0;
        books = Vec::with_capacity(m);
        for (s, (book, rec, e)) in trained.into_iter().enumerate() {
            for (row, part) in y.chunks_exact_mut(dim).zip(rec.chunks_exact(dsub)) {
                row[s * dsub..(s + 1) * dsub].copy_from_slice(part);
            }
            books.push(book);
            err += e;
        }
        objective.push(err / ns as f64);
        // Step 2: orthogonal Procrustes, R = U Vᵀ for Xᵀ Y = U Σ Vᵀ.
        r = procrustes(&xc, &y, dim)?;
    }
    Ok(Opq {
        dim,
        rotation: r,
        objective,
    })
}

/// A seeded random subset of `ns` rows of `x` (all of them, in order, when `ns` = n),
/// minus its mean.
fn centred_sample(x: &[f32], dim: usize, ns: usize, seed: u64) -> Vec<f32> {
    let n = x.len() / dim;
    let mut s: Vec<f32> = if ns < n {
        sample_indices(n, ns, &mut stream(seed, 2))
            .iter()
            .flat_map(|&i| x[i * dim..(i + 1) * dim].iter().copied())
            .collect()
    } else {
        x.to_vec()
    };
    let mut mean = vec![0.0f64; dim];
    for row in s.chunks_exact(dim) {
        for (a, &v) in mean.iter_mut().zip(row) {
            *a += v as f64;
        }
    }
    let mean: Vec<f32> = mean.iter().map(|&a| (a / ns as f64) as f32).collect();
    for row in s.chunks_exact_mut(dim) {
        for (v, &mu) in row.iter_mut().zip(&mean) {
            *v -= mu;
        }
    }
    s
}

/// A random orthogonal `dim × dim` matrix: the Q factor of a seeded Gaussian matrix,
/// its columns' signs fixed by the diagonal of R so that Q is Haar-distributed
/// (Mezzadri 2007). FAISS starts OPQ from the same construction.
pub(crate) fn random_orthogonal(dim: usize, seed: u64) -> Result<Vec<f32>> {
    let mut rng = stream(seed, 1);
    let g = Mat::<f64>::from_fn(dim, dim, |_, _| StandardNormal.sample(&mut rng));
    let qr = g.qr();
    let q = qr.compute_Q();
    let rr = qr.R();
    let mut out = vec![0.0f32; dim * dim];
    for j in 0..dim {
        let sign = if rr[(j, j)] < 0.0 { -1.0 } else { 1.0 };
        for i in 0..dim {
            out[i * dim + j] = (sign * q[(i, j)]) as f32;
        }
    }
    if out.iter().any(|v| !v.is_finite()) {
        return Err(Error::Numerical {
            context: "OPQ rotation".into(),
            message: "QR of the random initial matrix is not finite".into(),
        });
    }
    Ok(out)
}

/// The orthogonal `R` minimising `‖X R − Y‖_F`: `U Vᵀ` for the SVD of `Xᵀ Y`
/// (accumulated in f64 by row blocks, decomposed in f64).
fn procrustes(x: &[f32], y: &[f32], dim: usize) -> Result<Vec<f32>> {
    let partial: Vec<Vec<f32>> = x
        .par_chunks(BLOCK * dim)
        .zip(y.par_chunks(BLOCK * dim))
        .map(|(xb, yb)| {
            let rows = xb.len() / dim;
            let mut out = vec![0.0f32; dim * dim];
            let lhs = MatRef::from_row_major_slice(xb, rows, dim).transpose();
            let rhs = MatRef::from_row_major_slice(yb, rows, dim);
            let dst = MatMut::from_row_major_slice_mut(&mut out, dim, dim);
            matmul(dst, Accum::Replace, lhs, rhs, 1.0f32, Par::Seq);
            out
        })
        .collect();
    let mut xty = vec![0.0f64; dim * dim];
    for p in &partial {
        for (a, &v) in xty.iter_mut().zip(p) {
            *a += v as f64;
        }
    }
    let m = Mat::<f64>::from_fn(dim, dim, |i, j| xty[i * dim + j]);
    let svd = m.svd().map_err(|e| Error::Numerical {
        context: "OPQ rotation".into(),
        message: format!("SVD of Xᵀ·Y failed: {e:?}"),
    })?;
    let rot = svd.U() * svd.V().transpose();
    let mut r = vec![0.0f32; dim * dim];
    for i in 0..dim {
        for j in 0..dim {
            r[i * dim + j] = rot[(i, j)] as f32;
        }
    }
    if r.iter().any(|v| !v.is_finite()) {
        return Err(Error::Numerical {
            context: "OPQ rotation".into(),
            message: "the Procrustes rotation is not finite".into(),
        });
    }
    Ok(r)
}

/// `Rᵀ` of a row-major `dim × dim` matrix.
pub(crate) fn transpose(r: &[f32], dim: usize) -> Vec<f32> {
    let mut t = vec![0.0f32; dim * dim];
    for i in 0..dim {
        for j in 0..dim {
            t[j * dim + i] = r[i * dim + j];
        }
    }
    t
}

/// `x · R` for row-major `x` (`n × dim`) and `R` (`dim × dim`), in parallel blocks.
pub(crate) fn rotate(x: &[f32], r: &[f32], dim: usize) -> Vec<f32> {
    // gemm_abt computes x · Bᵀ, so pass Rᵀ.
    let rt = transpose(r, dim);
    let mut out = vec![0.0f32; x.len()];
    out.par_chunks_mut(BLOCK * dim)
        .zip(x.par_chunks(BLOCK * dim))
        .for_each(|(o, xb)| crate::linalg::gemm_abt(xb, &rt, dim, o));
    out
}

/// Columns `from..from + width` of row-major `x`, contiguous.
fn columns(x: &[f32], dim: usize, from: usize, width: usize) -> Vec<f32> {
    x.chunks_exact(dim)
        .flat_map(|r| r[from..from + width].iter().copied())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::generate::gaussian;
    use crate::quant::product::ProductQuantizer;

    /// Correlated data: a random linear mix of independent Gaussians with decaying
    /// scales, so that the variance is spread unevenly across the PQ sub-spaces.
    fn correlated(n: usize, d: usize) -> Vec<f32> {
        let z = gaussian(n, d, 0.0, 1.0, 8).unwrap();
        let mix = gaussian(d, d, 0.0, 1.0, 9).unwrap();
        z.rows()
            .flat_map(|r| {
                (0..d)
                    .map(|j| {
                        (0..d)
                            .map(|i| r[i] * mix.row(i)[j] / (1.0 + i as f32))
                            .sum::<f32>()
                    })
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    fn small() -> OpqTraining {
        OpqTraining {
            iterations: 8,
            first_pq_iterations: 10,
            ..OpqTraining::default()
        }
    }

    /// Mean squared reconstruction error per vector of a PQ trained on `x`.
    fn pq_mse(x: &[f32], d: usize, m: usize, nbits: u8) -> f64 {
        let pq = ProductQuantizer::train(x, d, m, nbits, 5).unwrap();
        let y = pq.decode(&pq.encode(x).unwrap()).unwrap();
        x.iter()
            .zip(&y)
            .map(|(a, b)| ((a - b) as f64).powi(2))
            .sum::<f64>()
            / (x.len() / d) as f64
    }

    #[test]
    fn rotation_is_orthogonal_and_lowers_pq_distortion_on_correlated_data() {
        let (n, d) = (4000, 16);
        let x = correlated(n, d);
        for nbits in [8, 4] {
            let cfg = OpqTraining { nbits, ..small() };
            let opq = train_opq(&x, d, 4, 2, &cfg).unwrap();
            let r = opq.rotation();
            for i in 0..d {
                for j in 0..d {
                    // Rows and columns: RᵀR = RRᵀ = I.
                    let rows: f32 = (0..d).map(|t| r[i * d + t] * r[j * d + t]).sum();
                    let cols: f32 = (0..d).map(|t| r[t * d + i] * r[t * d + j]).sum();
                    let want = if i == j { 1.0 } else { 0.0 };
                    assert!((rows - want).abs() < 1e-5, "RRᵀ[{i},{j}] = {rows}");
                    assert!((cols - want).abs() < 1e-5, "RᵀR[{i},{j}] = {cols}");
                }
            }
            let xr = opq.apply(&x).unwrap();
            // An orthogonal map keeps every norm.
            for (a, b) in x.chunks_exact(d).zip(xr.chunks_exact(d)).take(50) {
                let (na, nb): (f32, f32) =
                    (a.iter().map(|v| v * v).sum(), b.iter().map(|v| v * v).sum());
                assert!((na - nb).abs() <= 1e-4 * na.max(1.0));
            }
            let (plain, rotated) = (pq_mse(&x, d, 4, 4), pq_mse(&xr, d, 4, 4));
            assert!(
                rotated < plain * 0.95,
                "{nbits}-bit OPQ: PQ4x4 MSE {rotated} after the rotation vs {plain} without"
            );
        }
    }

    #[test]
    fn objective_decreases_over_the_alternations() {
        let (n, d) = (3000, 16);
        let x = correlated(n, d);
        let cfg = OpqTraining {
            iterations: 12,
            nbits: 4,
            ..OpqTraining::default()
        };
        let opq = train_opq(&x, d, 4, 3, &cfg).unwrap();
        let obj = opq.objective();
        assert_eq!(obj.len(), 12);
        // Both steps are descent steps on the same sample (hot-started k-means, exact
        // Procrustes), so the distortion can only go down (up to float rounding).
        for w in obj.windows(2) {
            assert!(w[1] <= w[0] * (1.0 + 1e-5), "{obj:?}");
        }
        assert!(obj[11] < obj[0] * 0.9, "{obj:?}");
    }

    #[test]
    fn procrustes_recovers_a_known_rotation() {
        // Y = X Q for an orthogonal Q: the minimiser of ‖X R − Y‖ is Q itself.
        let (n, d) = (500, 8);
        let x = gaussian(n, d, 0.0, 1.0, 4).unwrap();
        let q = random_orthogonal(d, 11).unwrap();
        let y = rotate(x.as_slice(), &q, d);
        let r = procrustes(x.as_slice(), &y, d).unwrap();
        for (a, b) in r.iter().zip(&q) {
            assert!((a - b).abs() < 1e-4, "{a} vs {b}");
        }
    }

    #[test]
    fn deterministic_under_a_seed() {
        let (n, d) = (1500, 16);
        let x = correlated(n, d);
        let cfg = OpqTraining {
            iterations: 4,
            nbits: 4,
            // A sample smaller than the data, so its selection is exercised too.
            max_train_points: 1000,
            ..OpqTraining::default()
        };
        let a = train_opq(&x, d, 4, 9, &cfg).unwrap();
        let b = train_opq(&x, d, 4, 9, &cfg).unwrap();
        assert_eq!(a, b);
        let c = train_opq(&x, d, 4, 10, &cfg).unwrap();
        assert_ne!(a.rotation(), c.rotation());
    }

    #[test]
    fn hot_start_continues_from_the_given_centroids() {
        let x = gaussian(2000, 4, 0.0, 1.0, 6).unwrap();
        let cfg = KMeansConfig {
            max_iter: 10,
            tol: 0.0,
            ..KMeansConfig::new(16)
        };
        let first = KMeans::train(x.as_slice(), 4, &cfg).unwrap();
        let more = KMeans::train_from(x.as_slice(), 4, first.centroids().to_vec(), &cfg).unwrap();
        // Its first assignment is with the given centroids: the inertia picks up where
        // the first run stopped instead of restarting from a random initialisation.
        let (_, d) = first.assign(x.as_slice());
        let after: f64 = d.iter().map(|&v| v as f64).sum();
        assert!((more.inertia()[0] - after).abs() <= 1e-3 * after);
        assert!(more.inertia()[9] <= more.inertia()[0]);
        assert!(KMeans::train_from(x.as_slice(), 4, vec![0.0; 7], &cfg).is_err());
        assert!(KMeans::train_from(x.as_slice(), 4, vec![f32::NAN; 64], &cfg).is_err());
    }

    #[test]
    fn bad_parameters_are_errors() {
        let d = 16;
        let x = correlated(600, d);
        let ok = OpqTraining {
            iterations: 1,
            first_pq_iterations: 2,
            nbits: 4,
            ..OpqTraining::default()
        };
        assert!(train_opq(&x, d, 4, 0, &ok).is_ok());
        let e = |cfg: OpqTraining, m: usize| train_opq(&x, d, m, 0, &cfg).unwrap_err().to_string();
        assert!(e(ok, 5).contains("divide"));
        assert!(e(OpqTraining { nbits: 6, ..ok }, 4).contains("nbits"));
        assert!(
            e(
                OpqTraining {
                    iterations: 0,
                    ..ok
                },
                4
            )
            .contains("iterations")
        );
        assert!(
            e(
                OpqTraining {
                    pq_iterations: 0,
                    ..ok
                },
                4
            )
            .contains("pq_iterations")
        );
        assert!(
            e(
                OpqTraining {
                    first_pq_iterations: 0,
                    ..ok
                },
                4
            )
            .contains("first_pq")
        );
        assert!(
            e(
                OpqTraining {
                    max_points_per_centroid: 0,
                    ..ok
                },
                4
            )
            .contains("max_points_per_centroid")
        );
        // 16 centroids per sub-space need 16 points; a cap of 10 leaves too few.
        assert!(
            e(
                OpqTraining {
                    max_train_points: 10,
                    ..ok
                },
                4
            )
            .contains("at least 16")
        );
        let few = correlated(200, d);
        assert!(
            train_opq(&few, d, 4, 0, &OpqTraining::default()).is_err(),
            "200 < 256"
        );
        let mut bad = x.clone();
        bad[37] = f32::NAN;
        assert!(train_opq(&bad, d, 4, 0, &ok).is_err());
        assert!(train_opq(&x[..d * 10 + 3], d, 4, 0, &ok).is_err(), "ragged");
        let opq = train_opq(&x, d, 4, 0, &ok).unwrap();
        assert!(opq.apply(&[0.0; 15]).is_err());
    }
}
