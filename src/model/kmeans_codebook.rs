//! Non-linear weight quantization by k-means (seed 004 "Non-linear quantization"): the
//! weights of a tensor (or of each row) are clustered into `2^b` centroids with the crate's
//! [`KMeans`]; each weight stores the index of its nearest centroid, and decoding is a
//! table look-up. The centroids form a [`Codebook`], which the vector
//! [`ScalarQuantizer`](crate::quant::scalar::ScalarQuantizer) accepts as its levels.
//!
//! ```
//! use vecquant::model::kmeans_codebook::{KMeansTensor, KMeansScope};
//! let w: Vec<f32> = (0..2048).map(|i| ((i * 7919) % 1000) as f32 / 1000.0 - 0.5).collect();
//! let q = KMeansTensor::quantize(&w, 16, 128, 3, KMeansScope::Tensor, 1).unwrap();
//! assert_eq!(q.codebooks[0].len(), 8);
//! let back = q.dequantize();
//! assert!(back.iter().zip(&w).all(|(a, b)| (a - b).abs() < 0.1));
//! ```

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::kmeans::{Init, KMeans, KMeansConfig};
use crate::model::pack::{pack_row, packed_len, unpack_row};
use crate::quant::codebook::Codebook;
use crate::vectors::check_finite;

/// Which weights share a codebook.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum KMeansScope {
    /// One codebook for the tensor.
    Tensor,
    /// One codebook per row (output channel).
    Row,
}

/// A k-means-quantized `rows × cols` tensor.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KMeansTensor {
    /// Rows.
    pub rows: usize,
    /// Columns.
    pub cols: usize,
    /// Bits per code (1..=8).
    pub bits: u32,
    /// Codebook sharing.
    pub scope: KMeansScope,
    /// One codebook (tensor) or one per row.
    pub codebooks: Vec<Codebook>,
    /// Codes, packed per row.
    pub codes: Vec<u8>,
}

/// Trains a 1-D codebook of at most `k` centroids on `values` (fewer when the data has
/// fewer distinct values).
///
/// # Errors
/// As [`crate::kmeans::KMeans::train`] (no values, `k` of zero, non-finite values).
pub fn train_codebook(values: &[f32], k: usize, seed: u64) -> Result<Codebook> {
    let mut distinct: Vec<f32> = values.to_vec();
    distinct.sort_unstable_by(f32::total_cmp);
    distinct.dedup();
    if distinct.len() <= k {
        if distinct.len() == 1 {
            distinct.push(distinct[0] + 1.0);
        }
        return Codebook::new(distinct);
    }
    let cfg = KMeansConfig {
        init: Init::KMeansPlusPlus,
        // 1-D k-means is cheap; use more of the tensor than FAISS's 256 per centroid.
        max_points_per_centroid: 4096,
        max_iter: 50,
        tol: 1e-7,
        seed,
        ..KMeansConfig::new(k)
    };
    let km = KMeans::train(values, 1, &cfg)?;
    let mut c = km.into_centroids();
    c.sort_unstable_by(f32::total_cmp);
    c.dedup();
    if c.len() < 2 {
        c.push(c[0] + 1.0);
    }
    Codebook::new(c)
}

impl KMeansTensor {
    /// Quantizes a row-major `rows × cols` tensor with `2^bits` centroids.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] for bits outside 1..=8; [`Error::DimensionMismatch`]
    /// when `data` is not `rows × cols`; [`Error::NonFinite`] for a NaN or infinite value.
    pub fn quantize(
        data: &[f32],
        rows: usize,
        cols: usize,
        bits: u32,
        scope: KMeansScope,
        seed: u64,
    ) -> Result<Self> {
        if !(1..=8).contains(&bits) {
            return Err(Error::param(
                "bits",
                format!("k-means codebooks take 1..=8 bits, got {bits}"),
            ));
        }
        if data.len() != rows * cols || data.is_empty() {
            return Err(Error::dim(
                "k-means quantization input",
                rows * cols,
                data.len(),
            ));
        }
        check_finite(data, cols, "k-means quantization")?;
        let k = 1usize << bits;
        let codebooks = match scope {
            KMeansScope::Tensor => vec![train_codebook(data, k, seed)?],
            KMeansScope::Row => data
                .par_chunks(cols)
                .enumerate()
                .map(|(r, row)| train_codebook(row, k, seed ^ r as u64))
                .collect::<Result<Vec<_>>>()?,
        };
        let rb = packed_len(cols, bits);
        let mut codes = vec![0u8; rows * rb];
        codes
            .par_chunks_mut(rb)
            .zip(data.par_chunks(cols))
            .enumerate()
            .for_each_init(
                || vec![0u8; cols],
                |buf, (r, (out, x))| {
                    let cb = &codebooks[if scope == KMeansScope::Row { r } else { 0 }];
                    for (q, &v) in buf.iter_mut().zip(x) {
                        *q = cb.encode(v);
                    }
                    pack_row(buf, bits, out);
                },
            );
        Ok(KMeansTensor {
            rows,
            cols,
            bits,
            scope,
            codebooks,
            codes,
        })
    }

    /// The reconstruction, row-major.
    pub fn dequantize(&self) -> Vec<f32> {
        let rb = packed_len(self.cols, self.bits);
        let mut out = vec![0f32; self.rows * self.cols];
        out.par_chunks_mut(self.cols).enumerate().for_each_init(
            || vec![0u8; self.cols],
            |buf, (r, y)| {
                unpack_row(&self.codes[r * rb..(r + 1) * rb], self.bits, buf);
                let cb = &self.codebooks[if self.scope == KMeansScope::Row { r } else { 0 }];
                for (o, &c) in y.iter_mut().zip(buf.iter()) {
                    *o = cb.decode(c);
                }
            },
        );
        out
    }

    /// Stored size in bits: codes plus every centroid as f32.
    pub fn storage_bits(&self) -> u64 {
        8 * self.codes.len() as u64
            + 32 * self.codebooks.iter().map(|c| c.len() as u64).sum::<u64>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::linear::{LinearConfig, LinearTensor};
    use crate::quant::scalar::{Levels, ScalarQuantizer, SqConfig};
    use crate::rng::seeded;
    use rand_distr::{Distribution, StandardNormal};

    fn heavy_tailed(n: usize, seed: u64) -> Vec<f32> {
        // Laplace-like: the product of two Gaussians.
        let mut rng = seeded(seed);
        (0..n)
            .map(|_| {
                let a: f32 = StandardNormal.sample(&mut rng);
                let b: f32 = StandardNormal.sample(&mut rng);
                0.05 * a * b
            })
            .collect()
    }

    fn rel(x: &[f32], y: &[f32]) -> f64 {
        let num: f64 = x.iter().zip(y).map(|(a, b)| ((a - b) as f64).powi(2)).sum();
        let den: f64 = x.iter().map(|a| (*a as f64).powi(2)).sum();
        (num / den).sqrt()
    }

    #[test]
    fn recovers_a_discrete_codebook_exactly_and_beats_uniform_on_heavy_tails() {
        let levels = [-1.5f32, -0.2, 0.0, 0.1, 0.9, 3.0, 7.0, 7.5];
        let x: Vec<f32> = (0..4096).map(|i| levels[(i * 31) % 8]).collect();
        let q = KMeansTensor::quantize(&x, 32, 128, 3, KMeansScope::Tensor, 5).unwrap();
        assert_eq!(q.dequantize(), x, "8 distinct values, 8 centroids: exact");
        assert_eq!(q.codes.len(), 32 * 48);

        let w = heavy_tailed(64 * 256, 1);
        let km = KMeansTensor::quantize(&w, 64, 256, 3, KMeansScope::Tensor, 1).unwrap();
        let lin = LinearTensor::quantize(&w, 64, 256, &LinearConfig::zeropoint(3)).unwrap();
        let (ek, el) = (rel(&w, &km.dequantize()), rel(&w, &lin.dequantize()));
        assert!(ek < 0.6 * el, "k-means {ek} vs uniform {el}");
        let per_row = KMeansTensor::quantize(&w, 64, 256, 3, KMeansScope::Row, 1).unwrap();
        assert!(rel(&w, &per_row.dequantize()) < ek);
        assert_eq!(per_row.codebooks.len(), 64);
        assert!(KMeansTensor::quantize(&w, 64, 256, 9, KMeansScope::Tensor, 1).is_err());
    }

    #[test]
    fn weight_codebooks_feed_the_vector_scalar_quantizer() {
        // "Codebook source": a k-means weight codebook, the NF4 grid and the FP8 E4M3
        // grid each become the levels of the vector ScalarQuantizer.
        let w = heavy_tailed(8192, 2);
        let km = KMeansTensor::quantize(&w, 64, 128, 4, KMeansScope::Tensor, 3).unwrap();
        let nf4 = crate::model::blockwise::BlockGrid::Nf4.codebook();
        let e4m3 = Codebook::new(
            crate::model::formats::FloatFormat::E4M3
                .grid()
                .unwrap()
                .into_iter()
                .filter(|v| v.abs() <= 4.0)
                .collect(),
        )
        .unwrap();
        let data = heavy_tailed(2000 * 8, 4);
        for (name, cb, bits) in [
            ("kmeans", km.codebooks[0].clone(), 4),
            ("nf4", nf4, 4),
            ("e4m3", e4m3, 8),
        ] {
            let cfg = SqConfig {
                levels: Levels::Custom(cb.clone()),
                ..SqConfig::uniform(bits)
            };
            let sq = ScalarQuantizer::train(&data, 8, &cfg).unwrap();
            let codes = sq.encode(&data).unwrap();
            let back = sq.decode(&codes).unwrap();
            // The quantizer's levels are exactly the given codebook mapped onto [0, 1]
            // (end levels = range ends), and every reconstructed component is one of them
            // after the per-dimension affine map `lo + width · level`.
            let (a, b) = (cb.levels()[0], cb.levels()[cb.len() - 1]);
            let unit: Vec<f32> = cb.levels().iter().map(|&v| (v - a) / (b - a)).collect();
            assert_eq!(sq.codebook().len(), cb.len(), "{name}");
            for (got, want) in sq.codebook().levels().iter().zip(&unit) {
                assert!((got - want).abs() < 1e-6, "{name}: level {got} vs {want}");
            }
            for d in 0..8 {
                let mut vals: Vec<f32> = back.iter().skip(d).step_by(8).copied().collect();
                vals.sort_unstable_by(f32::total_cmp);
                vals.dedup();
                assert!(vals.len() <= cb.len(), "{name}: {} values", vals.len());
                let (lo, w) = (sq.lo()[d], sq.width()[d]);
                for v in vals {
                    let l = (v - lo) / w;
                    let nearest = unit
                        .iter()
                        .map(|u| (u - l).abs())
                        .fold(f32::INFINITY, f32::min);
                    assert!(
                        nearest < 1e-4,
                        "{name}: dim {d} value {v} is not a codebook level"
                    );
                }
            }
            assert!(rel(&data, &back) < 0.5, "{name}: {}", rel(&data, &back));
        }
    }
}
