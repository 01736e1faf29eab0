//! RaBitQ: random-rotation sign codes with an unbiased inner-product estimator and an
//! error bound (Gao & Long, SIGMOD 2024), and its extension to `b` bits per dimension
//! (extended RaBitQ, Gao et al., SIGMOD 2025) — FAISS's `RaBitQ` and `RaBitQ{b}`.
//!
//! **Encoding.** A vector `x` (a residual to its IVF centroid under IVF) becomes
//! `r = x − c` with `c` the mean of the training sample, rotated by a seeded random
//! orthogonal matrix: `y = P⁻¹ r`. The 1-bit code is `sign(y)`; with `b ≥ 2` bits,
//! `b − 1` extra bits per dimension hold the magnitudes chosen by the rescaling search of
//! extended RaBitQ (see [`code`] for the layout and the per-vector factors, which keep
//! the bytes per vector equal to FAISS's).
//!
//! **Local centres** (flat and graph indexes under L2, [`RaBitQ::train_local`]): the
//! estimator's error scales with the residual's norm, and the residual to one global
//! mean is as large as the data's spread — on clustered data (real embeddings, the
//! `gen mixture` sets) far larger than the distances between neighbours. Flat and HNSW
//! codes are therefore residuals to the nearest of up to 256 k-means centres `c_k`; the
//! centre's number and the estimator's known error on `c_k − c` fit in the factor bytes
//! FAISS's layout already has (the scale `f1` and the bounds in bf16, the distance
//! constants in f32), so the bytes per vector stay FAISS's and a query still quantizes
//! one target, plus one table of `K` inner products. On the 100k × 128 mixture (64
//! clusters) this took 10-recall@10 of `RaBitQ` from 0.040 to 0.377 and of `RaBitQ4`
//! from 0.575 to 0.894; on Gaussian data (no clusters) 0.192 → 0.199 and 0.847 → 0.850.
//! Under IVF the lists are the centres (codes are residuals to their list's centroid).
//!
//! **Estimator.** For a query target `q'` (the query minus the centroid for L2, the query
//! itself for inner product), `⟨r, q'⟩ ≈ ‖r‖ · ⟨ō, q'⟩ / ⟨ō, o⟩` with `o = r/‖r‖` and `ō`
//! the code's unit direction; it is unbiased, and
//! `|⟨o, q⟩ − ⟨ō, q⟩/⟨ō, o⟩| ≤ ε0 · √((1 − ⟨ō,o⟩²)/⟨ō,o⟩²) / √(d − 1)` for unit `q` with
//! high probability (ε0 = 1.9, [`code::EPSILON0`]). The query is rotated once per query
//! (under IVF with L2, the list's rotated centroid comes from [`VectorCodec::list_tables`]),
//! then quantized to [`QUERY_BITS`] bits per dimension by uniform scalar quantization
//! on a grid symmetric about zero, `t̄_i = δ(u_i − 31)` (rounded to nearest, as FAISS
//! does: over 4000 random pairs at d = 128 and 4 query bits its mean squared error of
//! `⟨o, q⟩` was 0.00331 against 0.00337 for the paper's randomized rounding — test
//! `item1_rounding_choice`; see [`Rounding`]) so the 1-bit estimate is
//! `δ · (Σ_j 2^j · popcount(code AND plane_j) − 31 · popcount(code))`
//! ([`crate::kernels::bits`]), and the fast-scan layout reads `Σ_i bit_i (u_i − 31)` from
//! one pass of centred nibble tables (no popcount: a grid over `[min t, max t]` would
//! add `min t · popcount` per row).
//!
//! **Multi-bit scans** (`b ≥ 2`) estimate every row with its sign plane first (the batch
//! popcount path of 1-bit codes, with the stored 1-bit factors `f1`, `f2`), and compute
//! the full estimate `f3 · ⟨v, t⟩` only for rows whose 1-bit distance, less a margin of
//! [`REFINE_SIGMAS`] standard deviations of the two estimates' and the query
//! quantization's errors ([`RaBitQ::refine_margin`]), still beats the heap threshold.
//! The full estimate takes `⟨u, t⟩ = Σ_p w_p ⟨plane_p, t⟩` as masked sums of the
//! weighted float query ([`crate::kernels::bits_ext::MaskedPlanes`]), which changes no
//! estimate beyond float rounding (nibble tables and an 8-bit query with popcounts were
//! measured too; see that module). On seeded data
//! the refined scan returns exactly what scoring every row with the full estimate
//! returns (test `item3_refined_scan_equals_full_scan`), scoring 29–43 % of the rows
//! with the full code at d = 128 (20k Gaussian rows, L2 and inner product together).
//!
//! **Rotation.** Dense: the Q factor of a seeded Gaussian matrix (faer's QR, Haar
//! distributed), `d²` floats stored with the index. For the dimensions this crate targets
//! (≤ 1024) a dense rotation of one query costs `d²` multiply-adds — 16k at d = 128, 150k
//! at d = 384, small against a scan of thousands of codes — and it is exactly orthogonal
//! for every `d`, where a fast Hadamard rotation needs padding to a power of two (or
//! several rounds on overlapping blocks) to rotate an arbitrary `d`.

mod code;
mod codec;
mod fs;
mod query;

#[cfg(test)]
mod tests;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::quant::codec::InnerSpec;

pub use code::{EPSILON0, error_bound};
pub use fs::{RaBitQFs, RabitqFsQuery, RabitqFsSpec};
pub use query::{Estimate, REFINE_SIGMAS, RabitqQuery};

/// Bits per dimension of the quantized query. The paper and FAISS's `IndexRaBitQ` use
/// `qb = 4`, FAISS's fast-scan `qb = 8`; 6 is the most the fast-scan byte tables take
/// (four centred 6-bit codes `u − 31` sum to `±124`, a byte with the bias), so both
/// layouts share it and
/// return the same results. Against 4 bits it raised 10-recall@10 of `RaBitQ` on the
/// 100k × 128 Gaussian set from 0.1861 to 0.1922 (FAISS: 0.1879 at `qb = 4`, 0.1931 for
/// `RaBitQfs` at `qb = 8`) for 24 % fewer queries/s of the row-major scan (two more
/// popcount planes) and no cost to the fast-scan tables.
pub const QUERY_BITS: usize = 6;

/// Largest dimension: the rotation is a dense `d × d` matrix.
pub const MAX_DIM: usize = 4096;

/// Largest bits per dimension of a code (`RaBitQ9`).
pub const MAX_BITS: u8 = 9;

/// How the query is rounded to its [`QUERY_BITS`]-bit grid.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Rounding {
    /// To the nearest level (FAISS).
    #[default]
    Nearest,
    /// Randomized rounding (the paper; unbiased), seeded from the query so a search is
    /// deterministic.
    Randomized,
}

/// The spec of a RaBitQ codec: `bits` per dimension (1 = `RaBitQ`, 2..=9 = `RaBitQ{b}`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "InnerSpec", try_from = "InnerSpec")]
pub struct RabitqSpec {
    /// Bits per dimension, 1..=[`MAX_BITS`].
    pub bits: u8,
}

impl From<RabitqSpec> for InnerSpec {
    fn from(s: RabitqSpec) -> Self {
        InnerSpec::RaBitQ { bits: s.bits }
    }
}

impl TryFrom<InnerSpec> for RabitqSpec {
    type Error = String;
    fn try_from(s: InnerSpec) -> std::result::Result<Self, String> {
        match s {
            InnerSpec::RaBitQ { bits } => Ok(RabitqSpec { bits }),
            other => Err(format!(
                "expected a RaBitQ quantizer, found {}",
                other.name()
            )),
        }
    }
}

impl RabitqSpec {
    /// The index-factory name: `RaBitQ` or `RaBitQ{b}`.
    pub fn name(&self) -> String {
        if self.bits == 1 {
            "RaBitQ".into()
        } else {
            format!("RaBitQ{}", self.bits)
        }
    }

    /// Checks `bits` (1..=9) and the dimension.
    ///
    /// # Errors
    /// Bits out of range, `dim` of 0 or above [`MAX_DIM`].
    pub fn check(&self, dim: usize) -> Result<()> {
        if !(1..=MAX_BITS).contains(&self.bits) {
            return Err(Error::param(
                "bits",
                format!(
                    "RaBitQ codes have 1 to {MAX_BITS} bits per dimension, not {}",
                    self.bits
                ),
            ));
        }
        if dim == 0 || dim > MAX_DIM {
            return Err(Error::param(
                "dim",
                format!("RaBitQ takes 1 to {MAX_DIM} dimensions (a dense rotation), not {dim}"),
            ));
        }
        Ok(())
    }
}

/// A trained RaBitQ quantizer (see the module docs).
#[derive(Clone, Debug)]
pub struct RaBitQ {
    dim: usize,
    bits: u8,
    /// Mean of the training sample (`c`).
    mean: Vec<f32>,
    /// Row-major `d × d` orthogonal `R = P⁻¹`: the rotated vector is `y_j = ⟨rot_j, x⟩`.
    rot: Vec<f32>,
    /// `R c`.
    rot_mean: Vec<f32>,
    rounding: Rounding,
    /// Local centres `c_k` (`K × d`, `2 ≤ K ≤ 256`), or empty: see [`RaBitQ::train_local`].
    centres: Vec<f32>,
    /// `‖c_k‖²`, for assigning vectors to centres.
    centre_norms: Vec<f32>,
    /// `R (c_k − c)` (`K × d`).
    offsets: Vec<f32>,
    /// `‖c_k − c‖²`, padded with zeros to [`code::MAX_CENTRES`] entries.
    offset_norms: Vec<f32>,
}

impl RaBitQ {
    /// A quantizer with centroid `mean` and rotation `rot` (row-major `d × d`,
    /// orthogonal).
    ///
    /// # Errors
    /// Lengths that do not match, non-finite values, or bits out of range.
    pub fn from_parts(spec: RabitqSpec, mean: Vec<f32>, rot: Vec<f32>) -> Result<Self> {
        let d = mean.len();
        spec.check(d)?;
        if rot.len() != d * d {
            return Err(Error::param(
                "rotation",
                format!("{} values for a {d} × {d} rotation", rot.len()),
            ));
        }
        if mean.iter().chain(&rot).any(|v| !v.is_finite()) {
            return Err(Error::param("rotation", "non-finite centroid or rotation"));
        }
        // A cheap orthogonality check: every row of the rotation has unit norm.
        for (j, row) in rot.chunks_exact(d).enumerate() {
            let n: f32 = row.iter().map(|v| v * v).sum();
            if (n - 1.0).abs() > 1e-3 {
                return Err(Error::param(
                    "rotation",
                    format!("row {j} has squared norm {n}, not 1 (not orthogonal)"),
                ));
            }
        }
        let mut q = RaBitQ {
            dim: d,
            bits: spec.bits,
            rot_mean: vec![0.0; d],
            mean,
            rot,
            rounding: Rounding::default(),
            centres: Vec::new(),
            centre_norms: Vec::new(),
            offsets: Vec::new(),
            offset_norms: Vec::new(),
        };
        q.rot_mean = q.rotate(&q.mean);
        Ok(q)
    }

    /// Sets the local centres (`K × d` row-major, `K` = 0 or 2..=256; 0 or 1 centre
    /// means none).
    ///
    /// # Errors
    /// A length that is not a multiple of `d`, more than 256 centres, or non-finite
    /// values.
    pub fn with_centres(mut self, centres: Vec<f32>) -> Result<Self> {
        let d = self.dim;
        if !centres.len().is_multiple_of(d) || centres.len() / d > code::MAX_CENTRES {
            return Err(Error::param(
                "centres",
                format!(
                    "{} values is not 0 to {} centres of dimension {d}",
                    centres.len(),
                    code::MAX_CENTRES
                ),
            ));
        }
        if centres.iter().any(|v| !v.is_finite()) {
            return Err(Error::param("centres", "non-finite local centre"));
        }
        if centres.len() <= d {
            self.centres.clear();
            self.centre_norms.clear();
            self.offsets.clear();
            self.offset_norms.clear();
            return Ok(self);
        }
        let k = centres.len() / d;
        let diff: Vec<f32> = centres
            .chunks_exact(d)
            .flat_map(|c| c.iter().zip(&self.mean).map(|(a, m)| a - m))
            .collect();
        let mut offsets = vec![0.0f32; k * d];
        for (o, r) in offsets.chunks_exact_mut(d).zip(diff.chunks_exact(d)) {
            crate::linalg::gemm_abt(r, &self.rot, d, o);
        }
        self.offset_norms = diff
            .chunks_exact(d)
            .map(|r| r.iter().map(|v| v * v).sum())
            .collect();
        self.offset_norms.resize(code::MAX_CENTRES, 0.0);
        self.centre_norms = crate::kernels::row_norms_sq(&centres, d);
        self.offsets = offsets;
        self.centres = centres;
        Ok(self)
    }

    /// Trains with local centres: the mean and rotation of [`RaBitQ::train`], then `K`
    /// k-means centres of the sample (`K` = one per 256 sample vectors, at most 256;
    /// none below 512 vectors). Codes are then residuals of their nearest centre, whose
    /// estimator error scales with `‖x − c_k‖` rather than `‖x − c‖` (see [`code`]); a
    /// query still quantizes one target, plus a `K`-entry table. For L2 only (the flat
    /// and graph indexes use it; under IVF the lists are the centres).
    ///
    /// # Errors
    /// As [`RaBitQ::train`], or a failed k-means.
    pub fn train_local(spec: RabitqSpec, sample: &[f32], dim: usize, seed: u64) -> Result<Self> {
        let q = Self::train(spec, sample, dim, seed)?;
        let k = (sample.len() / dim / 256).min(code::MAX_CENTRES);
        if k < 2 {
            return Ok(q);
        }
        let mut cfg = crate::kmeans::KMeansConfig::new(k);
        cfg.seed = seed ^ 0x006c_6f63_616c;
        let km = crate::kmeans::KMeans::train(sample, dim, &cfg)?;
        q.with_centres(km.into_centroids())
    }

    /// Number of local centres (0: codes are residuals of the mean).
    pub fn centre_count(&self) -> usize {
        self.offsets.len() / self.dim
    }

    /// Whether codes are residuals of local centres.
    #[inline]
    pub(crate) fn local(&self) -> bool {
        !self.offsets.is_empty()
    }

    /// The local centres (`K × d`, empty without).
    pub fn centres(&self) -> &[f32] {
        &self.centres
    }

    /// Trains on a prepared sample: the centroid is its mean, the rotation a seeded
    /// random orthogonal matrix.
    ///
    /// # Errors
    /// An empty or non-finite sample, or an invalid spec.
    pub fn train(spec: RabitqSpec, sample: &[f32], dim: usize, seed: u64) -> Result<Self> {
        spec.check(dim)?;
        let n = sample.len() / dim;
        if n == 0 {
            return Err(Error::param("training sample", "empty"));
        }
        let mut mean = vec![0.0f64; dim];
        for v in sample.chunks_exact(dim) {
            mean.iter_mut()
                .zip(v)
                .for_each(|(m, &x)| *m += f64::from(x));
        }
        let mean: Vec<f32> = mean.iter().map(|m| (m / n as f64) as f32).collect();
        let rot = crate::quant::opq::random_orthogonal(dim, seed ^ 0x5261_4269_7451)?;
        Self::from_parts(spec, mean, rot)
    }

    /// Sets the query rounding (for measurements).
    pub fn set_rounding(&mut self, rounding: Rounding) {
        self.rounding = rounding;
    }

    /// Bits per dimension.
    pub fn bits(&self) -> u8 {
        self.bits
    }

    /// The centroid (training mean).
    pub fn mean(&self) -> &[f32] {
        &self.mean
    }

    /// The rotation `R = P⁻¹`, row-major `d × d`.
    pub fn rotation(&self) -> &[f32] {
        &self.rot
    }

    /// `R x`.
    pub fn rotate(&self, x: &[f32]) -> Vec<f32> {
        let mut y = vec![0.0f32; self.dim];
        crate::linalg::gemm_abt(x, &self.rot, self.dim, &mut y);
        y
    }

    /// Bytes of one code.
    pub fn row_bytes(&self) -> usize {
        code::row_bytes(self.dim, self.bits)
    }

    /// Codes of prepared vectors (row-major).
    ///
    /// # Errors
    /// Vectors of the wrong length or not finite.
    pub fn encode_rows(&self, x: &[f32]) -> Result<Vec<u8>> {
        let d = self.dim;
        if !x.len().is_multiple_of(d) {
            return Err(Error::param(
                "vectors",
                format!("{} values is not a multiple of the dimension {d}", x.len()),
            ));
        }
        if let Some(i) = x.iter().position(|v| !v.is_finite()) {
            return Err(Error::param(
                "vectors",
                format!("vector {} has a non-finite value", i / d),
            ));
        }
        let rb = self.row_bytes();
        let n = x.len() / d;
        let mut out = vec![0u8; n * rb];
        const CHUNK: usize = 256;
        out.par_chunks_mut(CHUNK * rb)
            .zip(x.par_chunks(CHUNK * d))
            .for_each(|(o, v)| {
                let rows = v.len() / d;
                let mut r = v.to_vec();
                // With local centres: each row's centre and ‖x − c‖² (the distance
                // constant's base); then the residuals.
                let (near, a): (Vec<u32>, Vec<f64>) = if self.local() {
                    let a = r
                        .chunks_exact(d)
                        .map(|x| {
                            x.iter()
                                .zip(&self.mean)
                                .map(|(&x, &m)| f64::from(x - m) * f64::from(x - m))
                                .sum()
                        })
                        .collect();
                    let near = crate::kmeans::nearest(v, d, &self.centres, &self.centre_norms).0;
                    (near, a)
                } else {
                    (Vec::new(), Vec::new())
                };
                for (i, row) in r.chunks_exact_mut(d).enumerate() {
                    let c = match near.get(i) {
                        Some(&k) => &self.centres[k as usize * d..][..d],
                        None => &self.mean[..],
                    };
                    row.iter_mut().zip(c).for_each(|(a, m)| *a -= m);
                }
                let mut y = vec![0.0f32; rows * d];
                crate::linalg::gemm_abt(&r, &self.rot, d, &mut y);
                for (i, (yr, orow)) in y.chunks_exact(d).zip(o.chunks_exact_mut(rb)).enumerate() {
                    code::encode_rotated(yr, self.bits, orow);
                    if let Some(&k) = near.get(i) {
                        let z = &self.offsets[k as usize * d..][..d];
                        code::localize(orow, yr, self.bits, z, a[i], k as u8);
                    }
                }
            });
        Ok(out)
    }

    /// Decodes codes: `c + ‖r‖ · P · v/‖v‖` with `v` the code's values (the sign vector
    /// for 1 bit) — the centroid (the row's local centre, if any) plus the code's unit
    /// direction scaled to the stored norm (with local centres, the norm from `f1` and
    /// the byte of `⟨x̄, o⟩`: within 0.6 %).
    ///
    /// # Errors
    /// Codes of the wrong length.
    pub fn decode_rows(&self, codes: &[u8]) -> Result<Vec<f32>> {
        let (d, rb) = (self.dim, self.row_bytes());
        if !codes.len().is_multiple_of(rb) {
            return Err(Error::param(
                "codes",
                format!(
                    "{} bytes is not a multiple of the code size {rb}",
                    codes.len()
                ),
            ));
        }
        let mut out = Vec::with_capacity(codes.len() / rb * d);
        let k = self.centre_count();
        for row in codes.chunks_exact(rb) {
            let v = code::code_values(row, d, self.bits);
            let vn: f32 = v.iter().map(|a| a * a).sum::<f32>().sqrt();
            let f = code::row_factors(self.factor_bytes(row), self.bits, self.local());
            let s = if vn > 0.0 { f.norm / vn } else { 0.0 };
            // x = c_k + Rᵀ (s v) (c_k the row's centre, or the mean).
            let mut x = if self.local() {
                self.centres[f.centre.min(k - 1) * d..][..d].to_vec()
            } else {
                self.mean.clone()
            };
            for (j, &vj) in v.iter().enumerate() {
                let w = s * vj;
                x.iter_mut()
                    .zip(&self.rot[j * d..(j + 1) * d])
                    .for_each(|(a, &p)| *a += w * p);
            }
            out.extend_from_slice(&x);
        }
        Ok(out)
    }
}
