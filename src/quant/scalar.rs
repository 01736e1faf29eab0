//! The scalar quantizer: every dimension of a vector becomes one 8-bit or 4-bit code.
//!
//! Training picks, per dimension `d`, a range `[lo_d, lo_d + width_d]` (a
//! [`RangeEstimator`]) and, shared by all dimensions, a set of levels in the normalised
//! domain `u = (x − lo_d) / width_d` (a [`Levels`] choice). A value is encoded as the
//! nearest level and decoded as `lo_d + width_d · level[code]`.
//!
//! With [`Levels::Uniform`] and [`RangeEstimator::MinMax`] this is exactly the quantizer
//! of the seed document: `start = min`, `step = (max − min) / (2^bits − 1)`,
//! `code = round((x − start) / step)`. Values outside the trained range clip to the end
//! codes. A dimension whose training values are all equal has `width = 0`: it encodes to
//! code 0 and decodes exactly to that value.
//!
//! ```
//! use vecquant::quant::scalar::{ScalarQuantizer, SqConfig};
//! let train: Vec<f32> = (0..1000).map(|i| (i % 97) as f32 / 10.0).collect(); // dim 4
//! let sq = ScalarQuantizer::train(&train, 4, &SqConfig::uniform(8)).unwrap();
//! let codes = sq.encode(&[0.0, 9.6, 4.8, 1.0]).unwrap();
//! assert_eq!(codes.len(), 4);
//! let back = sq.decode(&codes).unwrap();
//! assert!((back[1] - 9.6).abs() <= sq.max_error(1));
//! ```

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::quant::codebook::Codebook;
use crate::rng::{RngExt, seeded};
use crate::vectors::{check_batch, check_finite};

/// How each dimension's range `[lo, hi]` is chosen from the training sample.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub enum RangeEstimator {
    /// `[min, max]` of the sample (the seed's definition; FAISS's `QT_8bit`).
    MinMax,
    /// Central percentile range: `Percentile(99.9)` clips to the 0.1st–99.9th
    /// percentiles. The argument must lie in (50, 100].
    Percentile(f32),
    /// `mean ± k·std`.
    MeanStd(f32),
    /// The central-quantile range that minimises the reconstruction MSE on the sample
    /// with the chosen levels (searched per dimension over a grid of clip fractions, from
    /// no clipping to 5% per tail) — "calibration".
    Optimal,
}

/// Which reconstruction levels the quantizer uses (shared by all dimensions, in the
/// normalised domain).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Levels {
    /// `2^bits` evenly spaced levels: the end levels are the range ends.
    Uniform,
    /// Normal quantiles Φ⁻¹((i + ½)/n) — the NormalFloat idea at any bit width — with the
    /// outermost levels at the range ends.
    NormalQuantile,
    /// Lloyd-Max levels trained on the pooled, normalised sample (minimum MSE for the
    /// data's distribution).
    LloydMax,
    /// A given codebook (e.g. NF4 or an FP grid from the weight pipeline), its extreme
    /// levels mapped to the range ends. It must have at most `2^bits` levels.
    Custom(Codebook),
}

/// Training configuration of a [`ScalarQuantizer`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SqConfig {
    /// 8 (one byte per dimension) or 4 (two dimensions per byte).
    pub bits: u8,
    /// Per-dimension range.
    pub range: RangeEstimator,
    /// Level set.
    pub levels: Levels,
    /// Seed for sub-sampling.
    pub seed: u64,
}

impl SqConfig {
    /// Uniform levels over the min/max range: the seed's quantizer.
    pub fn uniform(bits: u8) -> Self {
        SqConfig {
            bits,
            range: RangeEstimator::MinMax,
            levels: Levels::Uniform,
            seed: 42,
        }
    }

    /// Uniform levels with the MSE-optimal (calibrated) range.
    pub fn optimal_range(bits: u8) -> Self {
        SqConfig {
            range: RangeEstimator::Optimal,
            ..Self::uniform(bits)
        }
    }

    /// Lloyd-Max levels over a `mean ± 4σ` normalisation.
    pub fn lloyd_max(bits: u8) -> Self {
        SqConfig {
            bits,
            range: RangeEstimator::MeanStd(4.0),
            levels: Levels::LloydMax,
            seed: 42,
        }
    }

    /// Normal-quantile levels spanning `mean ± k·σ`, `k` the largest quantile of the
    /// level count (so the levels are the Gaussian's equal-mass points).
    pub fn normal_quantile(bits: u8) -> Self {
        let n = 1usize << bits.min(8);
        let k = crate::quant::codebook::inverse_normal_cdf((n as f64 - 0.5) / n as f64);
        SqConfig {
            bits,
            range: RangeEstimator::MeanStd(k as f32),
            levels: Levels::NormalQuantile,
            seed: 42,
        }
    }
}

/// Most training rows used (a seeded sub-sample is drawn from larger samples).
pub const MAX_TRAIN_ROWS: usize = 100_000;
/// Values per dimension used by the [`RangeEstimator::Optimal`] search.
const OPTIMAL_SAMPLE: usize = 20_000;
/// Pooled values used to train Lloyd-Max levels.
const LLOYD_SAMPLE: usize = 1 << 21;

/// A trained scalar quantizer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScalarQuantizer {
    dim: usize,
    bits: u8,
    lo: Vec<f32>,
    width: Vec<f32>,
    /// Levels in the normalised domain, ascending.
    codebook: Codebook,
    /// Whether the levels are exactly `i / (n − 1)` (enables the closed-form encoder).
    uniform: bool,
    config: SqConfig,
}

impl ScalarQuantizer {
    /// Trains on row-major `sample` of dimension `dim`.
    pub fn train(sample: &[f32], dim: usize, config: &SqConfig) -> Result<Self> {
        if dim == 0 {
            return Err(Error::param("dim", "must be at least 1"));
        }
        if config.bits != 8 && config.bits != 4 {
            return Err(Error::param(
                "bits",
                format!("{} is not supported; use 8 or 4", config.bits),
            ));
        }
        let n = check_batch(sample, dim, "training sample")?;
        if n == 0 {
            return Err(Error::param("training sample", "is empty"));
        }
        check_finite(sample, dim, "training sample")?;
        match config.range {
            RangeEstimator::Percentile(p) if !(p > 50.0 && p <= 100.0) => {
                return Err(Error::param(
                    "percentile",
                    format!("{p} must lie in (50, 100]"),
                ));
            }
            RangeEstimator::MeanStd(k) if !(k.is_finite() && k > 0.0) => {
                return Err(Error::param(
                    "k",
                    format!("{k} must be positive and finite"),
                ));
            }
            _ => {}
        }
        let nlevels = 1usize << config.bits;
        if let Levels::Custom(cb) = &config.levels
            && cb.len() > nlevels
        {
            return Err(Error::param(
                "levels",
                format!(
                    "the codebook has {} levels but {} bits hold only {nlevels}",
                    cb.len(),
                    config.bits
                ),
            ));
        }

        // Column-major copy of a (sub-sampled) training set: ranges are per dimension.
        let rows = subsample_rows(n, MAX_TRAIN_ROWS, config.seed);
        let cols: Vec<Vec<f32>> = (0..dim)
            .into_par_iter()
            .map(|d| {
                let mut c: Vec<f32> = rows.iter().map(|&r| sample[r * dim + d]).collect();
                c.sort_unstable_by(f32::total_cmp);
                c
            })
            .collect();

        // Fixed (untrained) levels, in the normalised domain.
        let fixed: Option<Codebook> = match &config.levels {
            Levels::Uniform => Some(Codebook::uniform(nlevels)?),
            Levels::NormalQuantile => Some(to_unit(&Codebook::normal_quantile(nlevels)?)?),
            Levels::Custom(cb) => Some(to_unit(cb)?),
            Levels::LloydMax => None,
        };
        // Optimal ranges are searched with the fixed levels, or uniform ones before
        // Lloyd-Max training.
        let search_levels = match &fixed {
            Some(cb) => cb.clone(),
            None => Codebook::uniform(nlevels)?,
        };
        let ranges: Vec<(f32, f32)> = cols
            .par_iter()
            .map(|c| estimate_range(c, config.range, &search_levels))
            .collect();
        let lo: Vec<f32> = ranges.iter().map(|r| r.0).collect();
        let width: Vec<f32> = ranges.iter().map(|r| (r.1 - r.0).max(0.0)).collect();

        let codebook = match fixed {
            Some(cb) => cb,
            None => {
                let pooled = pooled_normalised(&cols, &lo, &width, LLOYD_SAMPLE, config.seed);
                if pooled.is_empty() {
                    // Every dimension is constant: any levels reproduce the data.
                    Codebook::uniform(nlevels)?
                } else {
                    Codebook::lloyd_max(&pooled, nlevels, LLOYD_SAMPLE, config.seed)
                        .or_else(|_| Codebook::uniform(nlevels))?
                }
            }
        };
        let uniform = matches!(config.levels, Levels::Uniform);
        Ok(ScalarQuantizer {
            dim,
            bits: config.bits,
            lo,
            width,
            codebook,
            uniform,
            config: config.clone(),
        })
    }

    /// Rebuilds a quantizer from stored parts, validating them.
    pub fn from_parts(
        dim: usize,
        config: SqConfig,
        lo: Vec<f32>,
        width: Vec<f32>,
        levels: Vec<f32>,
    ) -> Result<Self> {
        if config.bits != 8 && config.bits != 4 {
            return Err(Error::param(
                "bits",
                format!("{} is not 4 or 8", config.bits),
            ));
        }
        if lo.len() != dim || width.len() != dim {
            return Err(Error::param(
                "ranges",
                format!("{} / {} ranges for dimension {dim}", lo.len(), width.len()),
            ));
        }
        if lo.iter().chain(&width).any(|v| !v.is_finite()) || width.iter().any(|&w| w < 0.0) {
            return Err(Error::param("ranges", "non-finite or negative range"));
        }
        let codebook = Codebook::new(levels)?;
        if codebook.len() > 1 << config.bits {
            return Err(Error::param(
                "levels",
                "more levels than the bit width holds",
            ));
        }
        let uniform = matches!(config.levels, Levels::Uniform);
        if uniform && codebook != Codebook::uniform(1 << config.bits)? {
            return Err(Error::param(
                "levels",
                "uniform quantizer with non-uniform levels",
            ));
        }
        Ok(ScalarQuantizer {
            dim,
            bits: config.bits,
            lo,
            width,
            codebook,
            uniform,
            config,
        })
    }

    /// Dimension.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Bits per dimension (8 or 4).
    pub fn bits(&self) -> u8 {
        self.bits
    }

    /// The training configuration.
    pub fn config(&self) -> &SqConfig {
        &self.config
    }

    /// Per-dimension range starts.
    pub fn lo(&self) -> &[f32] {
        &self.lo
    }

    /// Per-dimension range widths (`hi − lo`; 0 for a constant dimension).
    pub fn width(&self) -> &[f32] {
        &self.width
    }

    /// The shared levels in the normalised domain `[0, 1]`-ish, ascending.
    pub fn codebook(&self) -> &Codebook {
        &self.codebook
    }

    /// Whether the levels are uniform (`i / (2^bits − 1)`).
    pub fn is_uniform(&self) -> bool {
        self.uniform
    }

    /// Bytes per encoded vector: `dim` (8-bit) or `⌈dim / 2⌉` (4-bit).
    pub fn code_size(&self) -> usize {
        code_size(self.dim, self.bits)
    }

    /// Largest reconstruction error of an in-range value of dimension `d`: half the
    /// largest gap between neighbouring levels (step/2 for uniform levels).
    pub fn max_error(&self, d: usize) -> f32 {
        let l = self.codebook.levels();
        let gap = l.windows(2).map(|w| w[1] - w[0]).fold(0.0f32, f32::max);
        // A tiny relative slack absorbs the float rounding of lo + width·level.
        0.5 * gap * self.width[d] * (1.0 + 1e-5) + 1e-6 * (self.lo[d].abs() + self.width[d])
    }

    #[inline]
    fn encode_value(&self, d: usize, x: f32) -> u8 {
        let w = self.width[d];
        if w <= 0.0 {
            return 0;
        }
        if self.uniform {
            let top = ((1u32 << self.bits) - 1) as f32;
            let step = w / top;
            ((x - self.lo[d]) / step).round().clamp(0.0, top) as u8
        } else {
            self.codebook.encode((x - self.lo[d]) / w)
        }
    }

    #[inline]
    fn decode_value(&self, d: usize, c: u8) -> f32 {
        let w = self.width[d];
        if self.uniform {
            let top = ((1u32 << self.bits) - 1) as f32;
            self.lo[d] + (w / top) * c.min(top as u8) as f32
        } else {
            self.lo[d] + w * self.codebook.decode(c)
        }
    }

    /// Encodes one vector into `out` (`code_size()` bytes). No validation: the caller
    /// checked length and finiteness.
    pub fn encode_into(&self, x: &[f32], out: &mut [u8]) {
        if self.bits == 8 {
            for (d, (o, &v)) in out.iter_mut().zip(x).enumerate() {
                *o = self.encode_value(d, v);
            }
        } else {
            out.fill(0);
            for (d, &v) in x.iter().enumerate() {
                out[d / 2] |= self.encode_value(d, v) << (4 * (d % 2));
            }
        }
    }

    /// Decodes one code into `out` (`dim` floats).
    pub fn decode_into(&self, code: &[u8], out: &mut [f32]) {
        for (d, o) in out.iter_mut().enumerate() {
            *o = self.decode_value(d, code_at(code, d, self.bits));
        }
    }

    /// Encodes row-major vectors (validated: dimension, finiteness), in parallel.
    pub fn encode(&self, vectors: &[f32]) -> Result<Vec<u8>> {
        let n = check_batch(vectors, self.dim, "vectors to encode")?;
        check_finite(vectors, self.dim, "vectors to encode")?;
        let cs = self.code_size();
        let mut out = vec![0u8; n * cs];
        out.par_chunks_mut(cs)
            .zip(vectors.par_chunks(self.dim))
            .with_min_len(256)
            .for_each(|(o, x)| self.encode_into(x, o));
        Ok(out)
    }

    /// Decodes codes (a whole number of `code_size()` records), in parallel.
    pub fn decode(&self, codes: &[u8]) -> Result<Vec<f32>> {
        let cs = self.code_size();
        if !codes.len().is_multiple_of(cs) {
            return Err(Error::param(
                "codes",
                format!(
                    "{} bytes is not a multiple of the code size {cs}",
                    codes.len()
                ),
            ));
        }
        let n = codes.len() / cs;
        let mut out = vec![0.0f32; n * self.dim];
        out.par_chunks_mut(self.dim)
            .zip(codes.par_chunks(cs))
            .with_min_len(256)
            .for_each(|(o, c)| self.decode_into(c, o));
        Ok(out)
    }

    /// Symmetric squared L2 distance between two codes (code vs code, no decoding into
    /// a buffer).
    pub fn sdc_l2(&self, a: &[u8], b: &[u8]) -> f32 {
        (0..self.dim)
            .map(|d| {
                let diff = self.decode_value(d, code_at(a, d, self.bits))
                    - self.decode_value(d, code_at(b, d, self.bits));
                diff * diff
            })
            .sum()
    }

    /// Symmetric inner product between two codes.
    pub fn sdc_dot(&self, a: &[u8], b: &[u8]) -> f32 {
        (0..self.dim)
            .map(|d| {
                self.decode_value(d, code_at(a, d, self.bits))
                    * self.decode_value(d, code_at(b, d, self.bits))
            })
            .sum()
    }

    /// The per-query part of asymmetric distances: for `q`, the weights `q_d · width_d`
    /// (scaled by the uniform step when levels are uniform) and the constant `q · lo`,
    /// so that `q · x̂ = constant + Σ_d weight_d · L[code_d]`, with `L[c] = c` for uniform
    /// levels and the codebook level otherwise.
    pub fn query_terms(&self, q: &[f32], weights: &mut Vec<f32>) -> f32 {
        weights.clear();
        let scale = if self.uniform {
            1.0 / ((1u32 << self.bits) - 1) as f32
        } else {
            1.0
        };
        weights.extend(q.iter().zip(&self.width).map(|(&a, &w)| a * w * scale));
        q.iter().zip(&self.lo).map(|(&a, &l)| a * l).sum()
    }

    /// The level table the scan kernels read for this quantizer: `L[c] = c` for uniform
    /// levels, the codebook levels otherwise (padded to `2^bits` entries by repeating
    /// the last level, which no valid code reaches).
    pub fn level_table(&self) -> Vec<f32> {
        let n = 1usize << self.bits;
        if self.uniform {
            (0..n).map(|c| c as f32).collect()
        } else {
            let l = self.codebook.levels();
            (0..n).map(|c| l[c.min(l.len() - 1)]).collect()
        }
    }
}

/// Bytes per code for `dim` dimensions at `bits` per dimension.
pub fn code_size(dim: usize, bits: u8) -> usize {
    if bits == 4 { dim.div_ceil(2) } else { dim }
}

/// The code of dimension `d` in a packed record.
#[inline]
pub fn code_at(code: &[u8], d: usize, bits: u8) -> u8 {
    if bits == 8 {
        code[d]
    } else {
        (code[d / 2] >> (4 * (d % 2))) & 0x0F
    }
}

/// Row indices of a seeded sub-sample of at most `max` of `n` rows (all rows, in order,
/// when `n <= max`).
fn subsample_rows(n: usize, max: usize, seed: u64) -> Vec<usize> {
    if n <= max {
        return (0..n).collect();
    }
    let mut idx = crate::rng::sample_indices(n, max, &mut seeded(seed));
    idx.sort_unstable();
    idx
}

/// Value at quantile `p` of sorted `c` (nearest rank).
fn quantile(c: &[f32], p: f64) -> f32 {
    let i = ((c.len() - 1) as f64 * p).round() as usize;
    c[i.min(c.len() - 1)]
}

/// `[lo, hi]` for one sorted column.
fn estimate_range(c: &[f32], est: RangeEstimator, levels: &Codebook) -> (f32, f32) {
    let (min, max) = (c[0], c[c.len() - 1]);
    if min == max {
        return (min, min);
    }
    let (lo, hi) = match est {
        RangeEstimator::MinMax => (min, max),
        RangeEstimator::Percentile(p) => {
            let tail = (100.0 - p as f64) / 100.0;
            (quantile(c, tail), quantile(c, 1.0 - tail))
        }
        RangeEstimator::MeanStd(k) => {
            let n = c.len() as f64;
            let mean = c.iter().map(|&v| v as f64).sum::<f64>() / n;
            let var = c.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n;
            let s = k as f64 * var.sqrt();
            ((mean - s) as f32, (mean + s) as f32)
        }
        RangeEstimator::Optimal => optimal_range(c, levels),
    };
    if hi > lo { (lo, hi) } else { (min, max) }
}

/// The clip fractions searched by [`RangeEstimator::Optimal`]: 0 and a log grid from
/// 10⁻⁶ to 5·10⁻².
fn clip_grid() -> impl Iterator<Item = f64> {
    std::iter::once(0.0).chain((0..=40).map(|i| 1e-6 * (5e4f64).powf(i as f64 / 40.0)))
}

fn optimal_range(c: &[f32], levels: &Codebook) -> (f32, f32) {
    // Evaluate on an evenly strided subset of the sorted column (keeps the distribution).
    let stride = c.len().div_ceil(OPTIMAL_SAMPLE).max(1);
    let eval: Vec<f32> = c.iter().step_by(stride).copied().collect();
    let mut best = (c[0], c[c.len() - 1]);
    let mut best_mse = f64::INFINITY;
    let mut last = (f32::NAN, f32::NAN);
    for tail in clip_grid() {
        let (lo, hi) = (quantile(c, tail), quantile(c, 1.0 - tail));
        if hi <= lo || (lo, hi) == last {
            continue;
        }
        last = (lo, hi);
        let w = hi - lo;
        let mse = eval
            .iter()
            .map(|&x| {
                let r = lo + w * levels.decode(levels.encode((x - lo) / w));
                ((x - r) as f64).powi(2)
            })
            .sum::<f64>();
        if mse < best_mse {
            best_mse = mse;
            best = (lo, hi);
        }
    }
    best
}

/// A codebook's levels mapped affinely so its extremes are 0 and 1.
fn to_unit(cb: &Codebook) -> Result<Codebook> {
    let l = cb.levels();
    let (a, b) = (l[0], l[l.len() - 1]);
    Codebook::new(l.iter().map(|&v| (v - a) / (b - a)).collect())
}

/// Up to `max` normalised values `(x − lo) / width` pooled over non-constant dimensions.
fn pooled_normalised(
    cols: &[Vec<f32>],
    lo: &[f32],
    width: &[f32],
    max: usize,
    seed: u64,
) -> Vec<f32> {
    let live: Vec<usize> = (0..cols.len()).filter(|&d| width[d] > 0.0).collect();
    if live.is_empty() {
        return Vec::new();
    }
    let total: usize = live.iter().map(|&d| cols[d].len()).sum();
    let mut rng = seeded(seed ^ 0x5151);
    let take = total.min(max);
    let per = take.div_ceil(live.len());
    let mut out = Vec::with_capacity(per * live.len());
    for &d in &live {
        let c = &cols[d];
        for _ in 0..per.min(c.len()) {
            let v = if c.len() <= per {
                c[out.len() % c.len()]
            } else {
                c[rng.random_range(0..c.len())]
            };
            out.push((v - lo[d]) / width[d]);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::generate::gaussian;
    use crate::eval::{gaussian_rd_bound, mse};

    #[test]
    fn seed_arithmetic_is_exact() {
        // dim 2: column 0 spans [-1, 4], column 1 is constant 7.
        let train = [-1.0, 7.0, 4.0, 7.0, 0.5, 7.0];
        let sq = ScalarQuantizer::train(&train, 2, &SqConfig::uniform(8)).unwrap();
        assert_eq!(sq.lo(), &[-1.0, 7.0]);
        let step = 5.0f32 / 255.0;
        for x in [-1.0f32, 0.0, 0.5, 1.234, 3.99, 4.0] {
            let c = sq.encode(&[x, 7.0]).unwrap();
            let want = ((x - -1.0) / step).round() as u8;
            assert_eq!(c[0], want, "x = {x}");
            assert_eq!(c[1], 0);
            let back = sq.decode(&c).unwrap();
            assert!((back[0] - (-1.0 + step * want as f32)).abs() < 1e-6);
            assert!((back[0] - x).abs() <= step / 2.0 + 1e-6);
            assert_eq!(back[1], 7.0, "constant dimension decodes exactly");
        }
        // Out of range clips to the end codes.
        assert_eq!(sq.encode(&[-50.0, 7.0]).unwrap()[0], 0);
        assert_eq!(sq.encode(&[50.0, 7.0]).unwrap()[0], 255);
    }

    #[test]
    fn in_range_error_is_at_most_half_a_step_and_codes_in_range() {
        let data = gaussian(5000, 7, 0.5, 2.0, 1).unwrap();
        for cfg in [
            SqConfig::uniform(8),
            SqConfig::uniform(4),
            SqConfig::lloyd_max(4),
            SqConfig::normal_quantile(8),
        ] {
            let sq = ScalarQuantizer::train(data.as_slice(), 7, &cfg).unwrap();
            let codes = sq.encode(data.as_slice()).unwrap();
            assert_eq!(codes.len(), 5000 * sq.code_size());
            let back = sq.decode(&codes).unwrap();
            for (i, (&x, &y)) in data.as_slice().iter().zip(&back).enumerate() {
                let d = i % 7;
                let (lo, hi) = (sq.lo()[d], sq.lo()[d] + sq.width()[d]);
                let l = sq.codebook().levels();
                let (first, last) = (
                    lo + sq.width()[d] * l[0],
                    lo + sq.width()[d] * l[l.len() - 1],
                );
                if x >= first.max(lo) && x <= last.min(hi) {
                    assert!(
                        (x - y).abs() <= sq.max_error(d),
                        "{cfg:?} d={d} x={x} y={y}"
                    );
                }
            }
            if cfg.bits == 4 {
                assert!(codes.iter().all(|_| true));
                for r in codes.chunks(sq.code_size()) {
                    // Odd dimension: the padding nibble is zero.
                    assert_eq!(r[3] >> 4, 0);
                }
            }
        }
    }

    #[test]
    fn four_bit_packing_round_trip() {
        let train: Vec<f32> = (0..16 * 5).map(|i| (i / 5) as f32).collect(); // dim 5
        let sq = ScalarQuantizer::train(&train, 5, &SqConfig::uniform(4)).unwrap();
        assert_eq!(sq.code_size(), 3);
        let x = [0.0, 15.0, 7.0, 3.0, 12.0];
        let c = sq.encode(&x).unwrap();
        assert_eq!(c, vec![0xF0, 0x37, 0x0C]);
        assert_eq!(sq.decode(&c).unwrap(), x.to_vec());
    }

    #[test]
    fn rejects_bad_input() {
        let good = [0.0f32, 1.0, 2.0, 3.0];
        assert!(ScalarQuantizer::train(&[0.0, f32::NAN], 2, &SqConfig::uniform(8)).is_err());
        assert!(ScalarQuantizer::train(&good, 3, &SqConfig::uniform(8)).is_err());
        assert!(ScalarQuantizer::train(&good, 2, &SqConfig::uniform(3)).is_err());
        assert!(ScalarQuantizer::train(&[], 2, &SqConfig::uniform(8)).is_err());
        let mut c = SqConfig::uniform(8);
        c.range = RangeEstimator::Percentile(20.0);
        assert!(ScalarQuantizer::train(&good, 2, &c).is_err());
        let sq = ScalarQuantizer::train(&good, 2, &SqConfig::uniform(8)).unwrap();
        assert!(sq.encode(&[0.0, f32::INFINITY]).is_err());
        assert!(sq.encode(&[0.0, 1.0, 2.0]).is_err());
        assert!(sq.decode(&[1, 2, 3]).is_err());
        let big = Levels::Custom(Codebook::uniform(17).unwrap());
        let c = SqConfig {
            levels: big,
            ..SqConfig::uniform(4)
        };
        assert!(ScalarQuantizer::train(&good, 2, &c).is_err());
    }

    #[test]
    fn deterministic() {
        let data = gaussian(3000, 8, 0.0, 1.0, 5).unwrap();
        let a = ScalarQuantizer::train(data.as_slice(), 8, &SqConfig::lloyd_max(4)).unwrap();
        let b = ScalarQuantizer::train(data.as_slice(), 8, &SqConfig::lloyd_max(4)).unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn sdc_matches_decoded_distance() {
        let data = gaussian(100, 9, 0.0, 1.0, 2).unwrap();
        for cfg in [SqConfig::uniform(8), SqConfig::lloyd_max(4)] {
            let sq = ScalarQuantizer::train(data.as_slice(), 9, &cfg).unwrap();
            let codes = sq.encode(data.as_slice()).unwrap();
            let dec = sq.decode(&codes).unwrap();
            let cs = sq.code_size();
            let (a, b) = (&codes[..cs], &codes[cs..2 * cs]);
            let (x, y) = (&dec[..9], &dec[9..18]);
            let l2: f32 = x.iter().zip(y).map(|(p, q)| (p - q) * (p - q)).sum();
            let ip: f32 = x.iter().zip(y).map(|(p, q)| p * q).sum();
            assert!((sq.sdc_l2(a, b) - l2).abs() < 1e-4);
            assert!((sq.sdc_dot(a, b) - ip).abs() < 1e-4);
        }
    }

    #[test]
    fn query_terms_give_the_decoded_inner_product() {
        let data = gaussian(50, 6, 1.0, 1.0, 4).unwrap();
        for cfg in [
            SqConfig::uniform(8),
            SqConfig::uniform(4),
            SqConfig::lloyd_max(8),
        ] {
            let sq = ScalarQuantizer::train(data.as_slice(), 6, &cfg).unwrap();
            let q = data.row(3);
            let mut w = Vec::new();
            let c0 = sq.query_terms(q, &mut w);
            let lut = sq.level_table();
            let code = sq.encode(data.row(9)).unwrap();
            let dec = sq.decode(&code).unwrap();
            let want: f32 = q.iter().zip(&dec).map(|(a, b)| a * b).sum();
            let got: f32 = c0
                + (0..6)
                    .map(|d| w[d] * lut[code_at(&code, d, sq.bits()) as usize])
                    .sum::<f32>();
            assert!((got - want).abs() < 1e-4, "{cfg:?}: {got} vs {want}");
        }
    }

    /// On i.i.d. Gaussian data the seed's min/max bins sit far above the rate-distortion
    /// bound; calibrated ranges and Lloyd-Max levels approach the fixed-rate scalar
    /// limit (≈ 2.4–2.7 × D(R)).
    #[test]
    fn distortion_relative_to_rate_distortion_bound() {
        let train = gaussian(100_000, 16, 0.0, 1.0, 11).unwrap();
        let test = gaussian(20_000, 16, 0.0, 1.0, 12).unwrap();
        let ratio = |cfg: SqConfig| {
            let sq = ScalarQuantizer::train(train.as_slice(), 16, &cfg).unwrap();
            let back = sq.decode(&sq.encode(test.as_slice()).unwrap()).unwrap();
            mse(test.as_slice(), &back) / gaussian_rd_bound(1.0, cfg.bits as f64)
        };
        let u4 = ratio(SqConfig::uniform(4));
        let o4 = ratio(SqConfig::optimal_range(4));
        let l4 = ratio(SqConfig::lloyd_max(4));
        let u8_ = ratio(SqConfig::uniform(8));
        let l8 = ratio(SqConfig::lloyd_max(8));
        assert!(u4 > 5.0, "min/max 4-bit {u4}");
        assert!(o4 < 3.2, "optimal-range 4-bit {o4}");
        assert!(l4 < 2.6, "Lloyd-Max 4-bit {l4}");
        assert!(u8_ > 5.0, "min/max 8-bit {u8_}");
        // At 8 bits the few test values beyond the outermost trained level weigh
        // heavily against the tiny D(R): the tails need a large pooled sample (1.6M).
        assert!(l8 < 3.0, "Lloyd-Max 8-bit {l8}");
    }

    #[test]
    fn custom_codebook_from_the_weight_pipeline() {
        let data = gaussian(4000, 4, 0.0, 1.0, 8).unwrap();
        let cfg = SqConfig {
            bits: 4,
            range: RangeEstimator::MinMax,
            levels: Levels::Custom(Codebook::nf4()),
            seed: 1,
        };
        let sq = ScalarQuantizer::train(data.as_slice(), 4, &cfg).unwrap();
        assert_eq!(sq.codebook().len(), 16);
        // The NF4 zero lands at the middle of each range's normalised image.
        let l = sq.codebook().levels();
        assert!((l[7] - 0.5).abs() < 1e-6);
        let back = sq.decode(&sq.encode(data.as_slice()).unwrap()).unwrap();
        assert!(mse(data.as_slice(), &back) < 0.05);
    }
}
