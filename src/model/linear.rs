//! Linear (uniform) weight quantization: symmetric absmax and asymmetric zero-point, for
//! 2..=8 bits, per tensor, per output channel (row) or per group of G along the input
//! dimension, with four rounding modes and four ways to choose the clipping range.
//!
//! **Symmetric absmax** (seed 001): `scale = (2^(b-1) - 1) / α` with `α = max|x|` (or a
//! clipped α), `q = round(scale · x)` in `[-(2^(b-1) - 1), 2^(b-1) - 1]` (one code is
//! left unused so the range is symmetric, seed 003), `x̂ = q / scale`.
//!
//! **Asymmetric zero-point** (seed 004): `s = (r_max - r_min) / (2^b - 1)`,
//! `z = round(-r_min / s)`, `q = clip(round(x / s) + z, 0, 2^b - 1)`, `x̂ = s (q - z)`. The
//! range is widened to contain 0 (as PyTorch's observers and GPTQ do) so that zero — and
//! with it padding and pruned weights — is exactly representable.
//!
//! **Rounding** (seed 004's table): nearest (ties to even), floor, ceil, and stochastic
//! (`floor(v + u)`, `u ~ U[0,1)`, unbiased: `E[q] = v`), seeded per group so results do not
//! depend on the thread count.
//!
//! **Clipping** (seed 001 "calibration"): the plain min/max range; a percentile of the
//! values; the range shrink `t ∈ {1, 0.97, 0.97², …, 0.01}` minimising the squared
//! quantization error of the group (GPTQ's grid search, extended for heavy tails); or the TensorRT entropy method — the threshold
//! minimising KL(P‖Q) between the 2048-bin histogram of |x| and its quantized version.
//! Tensor and row granularities compute the percentile/KL threshold on their own values;
//! groups (too small for a histogram) use the threshold *ratio* found over their row
//! (values normalised by each group's max |x|).
//!
//! ```
//! use vecquant::model::linear::{LinearConfig, LinearTensor};
//! // Seed 001's worked example.
//! let x = [-4.57f32, 3.08, 5.47, -1.95, 10.8];
//! let q = LinearTensor::quantize(&x, 1, 5, &LinearConfig::absmax(8)).unwrap();
//! assert_eq!(q.int_codes(), vec![-54, 36, 64, -23, 127]);
//! assert!((q.scale_factor(0) - 11.76).abs() < 0.01); // 127 / 10.8
//! let back = q.dequantize();
//! assert!((back[0] + 4.59).abs() < 0.005);
//! ```

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::model::pack::{pack_row, packed_len, unpack_row};
use crate::rng::{RngExt, stream};
use crate::vectors::check_finite;

mod range;

use range::group_ranges;

/// Which weights share a scale (and zero point).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Granularity {
    /// One scale for the whole tensor.
    Tensor,
    /// One scale per output channel (row).
    Row,
    /// One scale per `G` consecutive weights of a row (along the input dimension).
    Group(usize),
}

impl Granularity {
    /// Number of consecutive weights (in row-major order) sharing one scale.
    pub fn group_len(&self, rows: usize, cols: usize) -> usize {
        match *self {
            Granularity::Tensor => rows * cols,
            Granularity::Row => cols,
            Granularity::Group(g) => g,
        }
    }

    /// Checks the granularity against a `rows × cols` tensor.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] for a group size of zero or one that does not divide
    /// `cols`.
    pub fn validate(&self, cols: usize) -> Result<()> {
        if let Granularity::Group(g) = *self
            && (g == 0 || !cols.is_multiple_of(g))
        {
            let divisors: Vec<String> = [32usize, 64, 128, 256]
                .iter()
                .filter(|&&d| cols.is_multiple_of(d))
                .map(|d| d.to_string())
                .collect();
            return Err(Error::param(
                "group",
                format!(
                    "group size {g} does not divide the row length {cols}{}",
                    if divisors.is_empty() {
                        String::new()
                    } else {
                        format!(" (these would: {})", divisors.join(", "))
                    }
                ),
            ));
        }
        Ok(())
    }
}

/// How a real value is rounded to an integer code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Rounding {
    /// Nearest, ties to even.
    Nearest,
    /// Towards −∞.
    Floor,
    /// Towards +∞.
    Ceil,
    /// Up with probability equal to the fractional part (seeded).
    Stochastic {
        /// Seed of the per-group random streams.
        seed: u64,
    },
}

/// How the quantization range is chosen.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub enum Clip {
    /// The full min/max (absmax) range.
    MinMax,
    /// The given percentile of |x| (symmetric) or the percentiles `100 − P` and `P`
    /// (asymmetric), `P` in (50, 100].
    Percentile(f32),
    /// The shrunk range minimising the squared quantization error.
    Mse,
    /// The threshold minimising the KL divergence of the |x| histogram (TensorRT).
    Kl,
}

/// Parameters of linear quantization.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct LinearConfig {
    /// Bits per code (2..=8).
    pub bits: u32,
    /// Symmetric absmax (`true`) or asymmetric zero-point (`false`).
    pub symmetric: bool,
    /// Which weights share a scale.
    pub granularity: Granularity,
    /// Rounding mode.
    pub rounding: Rounding,
    /// Range selection.
    pub clip: Clip,
}

impl LinearConfig {
    /// Symmetric absmax at `bits`, per tensor, nearest rounding, min/max range.
    pub fn absmax(bits: u32) -> Self {
        LinearConfig {
            bits,
            symmetric: true,
            granularity: Granularity::Tensor,
            rounding: Rounding::Nearest,
            clip: Clip::MinMax,
        }
    }

    /// Asymmetric zero-point at `bits`, per tensor, nearest rounding, min/max range.
    pub fn zeropoint(bits: u32) -> Self {
        LinearConfig {
            symmetric: false,
            ..Self::absmax(bits)
        }
    }

    /// Checks the parameters.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] for bits outside the supported range or a granularity
    /// that does not fit `cols` (see [`Granularity::validate`]).
    pub fn validate(&self, cols: usize) -> Result<()> {
        if !(2..=8).contains(&self.bits) {
            return Err(Error::param(
                "bits",
                format!("linear quantization takes 2..=8 bits, got {}", self.bits),
            ));
        }
        if let Clip::Percentile(p) = self.clip
            && !(p > 50.0 && p <= 100.0)
        {
            return Err(Error::param(
                "clip",
                format!("percentile must be in (50, 100], got {p}"),
            ));
        }
        self.granularity.validate(cols)
    }

    /// Largest code magnitude (symmetric) or largest code (asymmetric).
    fn qmax(&self) -> f32 {
        if self.symmetric {
            ((1u32 << (self.bits - 1)) - 1) as f32
        } else {
            ((1u32 << self.bits) - 1) as f32
        }
    }

    /// Offset added to a symmetric code to store it unsigned.
    fn code_offset(&self) -> i32 {
        if self.symmetric {
            1 << (self.bits - 1)
        } else {
            0
        }
    }
}

/// The quantization parameters of one group: `x̂ = step · (q − zero)`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct GroupParams {
    pub(crate) step: f32,
    /// 1 / step, the seed's "scale factor".
    pub(crate) inv: f32,
    pub(crate) zero: f32,
}

impl GroupParams {
    pub(crate) fn new(cfg: &LinearConfig, lo: f32, hi: f32) -> Self {
        let qmax = cfg.qmax();
        if cfg.symmetric {
            let alpha = lo.abs().max(hi.abs());
            if alpha > 0.0 && alpha.is_finite() {
                let inv = qmax / alpha;
                GroupParams {
                    step: alpha / qmax,
                    inv,
                    zero: 0.0,
                }
            } else {
                GroupParams {
                    step: 1.0,
                    inv: 1.0,
                    zero: 0.0,
                }
            }
        } else {
            let (lo, hi) = (lo.min(0.0), hi.max(0.0));
            let range = hi - lo;
            if range > 0.0 && range.is_finite() {
                let step = range / qmax;
                let zero = (-lo / step).round_ties_even().clamp(0.0, qmax);
                GroupParams {
                    step,
                    inv: 1.0 / step,
                    zero,
                }
            } else {
                GroupParams {
                    step: 1.0,
                    inv: 1.0,
                    zero: 0.0,
                }
            }
        }
    }

    /// The stored (unsigned) code of `x`, with `frac_noise` the stochastic offset in [0,1).
    #[inline]
    pub(crate) fn code(&self, cfg: &LinearConfig, x: f32, rounding: Rounding, noise: f32) -> u8 {
        let v = x * self.inv + self.zero;
        let r = match rounding {
            Rounding::Nearest => v.round_ties_even(),
            Rounding::Floor => v.floor(),
            Rounding::Ceil => v.ceil(),
            Rounding::Stochastic { .. } => (v + noise).floor(),
        };
        let off = cfg.code_offset() as f32;
        let (lo, hi) = if cfg.symmetric {
            (-cfg.qmax(), cfg.qmax())
        } else {
            (0.0, cfg.qmax())
        };
        (r.clamp(lo, hi) + off) as u8
    }

    #[inline]
    pub(crate) fn decode(&self, cfg: &LinearConfig, code: u8) -> f32 {
        self.step * (code as f32 - cfg.code_offset() as f32 - self.zero)
    }
}

/// A linearly quantized `rows × cols` tensor.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LinearTensor {
    /// Rows (output channels).
    pub rows: usize,
    /// Columns (input features).
    pub cols: usize,
    /// The parameters it was quantized with.
    pub config: LinearConfig,
    /// Per group: the dequantization step (`1 / scale factor`).
    pub steps: Vec<f32>,
    /// Per group (asymmetric only): the zero point, an unsigned code.
    pub zeros: Vec<u8>,
    /// Codes, `bits` each, packed per row.
    pub codes: Vec<u8>,
}

impl LinearTensor {
    /// Quantizes a row-major `rows × cols` tensor. Values must be finite.
    ///
    /// # Errors
    /// As [`LinearConfig::validate`]; [`Error::DimensionMismatch`] when `data` is not `rows
    /// × cols`; [`Error::NonFinite`] for a NaN or infinite value.
    pub fn quantize(data: &[f32], rows: usize, cols: usize, cfg: &LinearConfig) -> Result<Self> {
        cfg.validate(cols)?;
        if data.len() != rows * cols || rows * cols == 0 {
            return Err(Error::dim(
                "linear quantization input",
                rows * cols,
                data.len(),
            ));
        }
        check_finite(data, cols, "linear quantization")?;
        let glen = cfg.granularity.group_len(rows, cols);
        let ranges = group_ranges(data, rows, cols, cfg);
        let params: Vec<GroupParams> = ranges
            .iter()
            .map(|&(lo, hi)| GroupParams::new(cfg, lo, hi))
            .collect();
        let row_bytes = packed_len(cols, cfg.bits);
        let mut codes = vec![0u8; rows * row_bytes];
        codes
            .par_chunks_mut(row_bytes)
            .zip(data.par_chunks(cols))
            .enumerate()
            .for_each_init(
                || vec![0u8; cols],
                |buf, (r, (out, x))| {
                    encode_row(cfg, &params, glen, r * cols, x, buf);
                    pack_row(buf, cfg.bits, out);
                },
            );
        Ok(LinearTensor {
            rows,
            cols,
            config: *cfg,
            steps: params.iter().map(|p| p.step).collect(),
            zeros: if cfg.symmetric {
                Vec::new()
            } else {
                params.iter().map(|p| p.zero as u8).collect()
            },
            codes,
        })
    }

    fn params(&self, g: usize) -> GroupParams {
        GroupParams {
            step: self.steps[g],
            inv: 1.0 / self.steps[g],
            zero: self.zeros.get(g).map_or(0.0, |&z| z as f32),
        }
    }

    /// The seed's scale factor of group `g`: codes per unit (`(2^(b-1) - 1) / α`).
    pub fn scale_factor(&self, g: usize) -> f32 {
        1.0 / self.steps[g]
    }

    /// The signed integer codes (`q`, before the unsigned storage offset), row-major.
    pub fn int_codes(&self) -> Vec<i32> {
        let mut out = Vec::with_capacity(self.rows * self.cols);
        let mut buf = vec![0u8; self.cols];
        let rb = packed_len(self.cols, self.config.bits);
        for r in 0..self.rows {
            unpack_row(
                &self.codes[r * rb..(r + 1) * rb],
                self.config.bits,
                &mut buf,
            );
            out.extend(buf.iter().map(|&c| c as i32 - self.config.code_offset()));
        }
        out
    }

    /// The reconstruction, row-major.
    pub fn dequantize(&self) -> Vec<f32> {
        let (rows, cols) = (self.rows, self.cols);
        let glen = self.config.granularity.group_len(rows, cols);
        let rb = packed_len(cols, self.config.bits);
        let mut out = vec![0f32; rows * cols];
        out.par_chunks_mut(cols).enumerate().for_each_init(
            || vec![0u8; cols],
            |buf, (r, y)| {
                unpack_row(&self.codes[r * rb..(r + 1) * rb], self.config.bits, buf);
                for (j, (o, &c)) in y.iter_mut().zip(buf.iter()).enumerate() {
                    let p = self.params((r * cols + j) / glen);
                    *o = p.decode(&self.config, c);
                }
            },
        );
        out
    }

    /// Stored size in bits: codes, steps (32 bits each) and zero points (8 bits each).
    pub fn storage_bits(&self) -> u64 {
        (self.codes.len() as u64 + self.zeros.len() as u64) * 8 + self.steps.len() as u64 * 32
    }
}

fn encode_row(
    cfg: &LinearConfig,
    params: &[GroupParams],
    glen: usize,
    start: usize,
    x: &[f32],
    out: &mut [u8],
) {
    // Stored code = clamp(round(x·inv + zero), lo, hi) + offset; clamping first keeps the
    // value small enough for the 1.5·2^23 rounding trick, which rounds to nearest-even in
    // the default FP mode and vectorises (f32::round_ties_even is a libm call without
    // SSE4.1).
    const MAGIC: f32 = 12_582_912.0;
    let off = cfg.code_offset() as f32;
    let (lo, hi) = if cfg.symmetric {
        (-cfg.qmax(), cfg.qmax())
    } else {
        (0.0, cfg.qmax())
    };
    // Walk the row one group segment at a time (a row holds whole groups, or lies inside
    // one group for per-tensor granularity).
    let mut j = 0;
    while j < x.len() {
        let g = (start + j) / glen;
        let end = (((g + 1) * glen) - start).min(x.len());
        let p = params[g];
        let (xs, os) = (&x[j..end], &mut out[j..end]);
        match cfg.rounding {
            Rounding::Nearest => {
                for (o, &v) in os.iter_mut().zip(xs) {
                    let c = (v * p.inv + p.zero).clamp(lo, hi);
                    *o = ((c + MAGIC) - MAGIC + off) as u8;
                }
            }
            Rounding::Stochastic { seed } => {
                let mut rng = stream(seed, (start + j) as u64);
                for (o, &v) in os.iter_mut().zip(xs) {
                    *o = p.code(cfg, v, cfg.rounding, rng.random::<f32>());
                }
            }
            r => {
                for (o, &v) in os.iter_mut().zip(xs) {
                    *o = p.code(cfg, v, r, 0.0);
                }
            }
        }
        j = end;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::seeded;
    use rand_distr::{Distribution, StandardNormal};

    fn gaussian(n: usize, seed: u64) -> Vec<f32> {
        let mut rng = seeded(seed);
        (0..n).map(|_| StandardNormal.sample(&mut rng)).collect()
    }

    #[test]
    fn seed_001_absmax_worked_example() {
        let x = [-4.57f32, 3.08, 5.47, -1.95, 10.8, 3.02];
        let q = LinearTensor::quantize(&x, 1, 6, &LinearConfig::absmax(8)).unwrap();
        // scale = 127 / 10.8 = 11.76; 3.08 and 3.02 both land on 36 (the seed's point).
        assert!((q.scale_factor(0) - 11.759_259).abs() < 1e-4);
        assert_eq!(q.int_codes(), vec![-54, 36, 64, -23, 127, 36]);
        let back = q.dequantize();
        let expect = [-4.59f32, 3.06, 5.44, -1.96, 10.8, 3.06];
        for (b, e) in back.iter().zip(expect) {
            assert!((b - e).abs() < 0.006, "{b} vs {e}");
        }
    }

    #[test]
    fn seed_004_zero_point_formula() {
        // r in [-1, 3], b = 8: s = 4/255, z = round(1/s) = round(63.75) = 64.
        let x = [-1.0f32, 0.0, 3.0, 1.0];
        let q = LinearTensor::quantize(&x, 1, 4, &LinearConfig::zeropoint(8)).unwrap();
        assert!((q.steps[0] - 4.0 / 255.0).abs() < 1e-7);
        assert_eq!(q.zeros, vec![64]);
        assert_eq!(q.int_codes(), vec![0, 64, 255, 128]);
        let back = q.dequantize();
        assert_eq!(back[1], 0.0, "zero is exact");
        // Clip: the codes never leave [0, 255]; -1 maps to 0 - 64 = -64 steps = -1.0039.
        assert!((back[0] + 1.0).abs() <= q.steps[0]);
    }

    #[test]
    fn error_within_half_a_step_for_every_bits_and_granularity() {
        let (rows, cols) = (16, 256);
        let x = gaussian(rows * cols, 1);
        for bits in [8u32, 4, 3, 2] {
            for symmetric in [true, false] {
                for gran in [
                    Granularity::Tensor,
                    Granularity::Row,
                    Granularity::Group(32),
                    Granularity::Group(64),
                    Granularity::Group(128),
                ] {
                    let cfg = LinearConfig {
                        granularity: gran,
                        symmetric,
                        ..LinearConfig::absmax(bits)
                    };
                    let q = LinearTensor::quantize(&x, rows, cols, &cfg).unwrap();
                    let y = q.dequantize();
                    let glen = gran.group_len(rows, cols);
                    for (i, (a, b)) in x.iter().zip(&y).enumerate() {
                        let step = q.steps[i / glen];
                        assert!(
                            (a - b).abs() <= 0.5 * step * 1.0001,
                            "bits {bits} sym {symmetric} {gran:?} at {i}: {a} vs {b}, step {step}"
                        );
                    }
                    let bytes_codes = rows * packed_len(cols, bits);
                    assert_eq!(q.codes.len(), bytes_codes);
                }
            }
        }
    }

    #[test]
    fn finer_granularity_lowers_error_on_rows_of_different_scale() {
        let (rows, cols) = (32, 128);
        let mut x = gaussian(rows * cols, 2);
        for (r, row) in x.chunks_mut(cols).enumerate() {
            let s = 0.01 * (1.0 + r as f32 * r as f32);
            row.iter_mut().for_each(|v| *v *= s);
        }
        let err = |g| {
            let cfg = LinearConfig {
                granularity: g,
                ..LinearConfig::absmax(4)
            };
            let y = LinearTensor::quantize(&x, rows, cols, &cfg)
                .unwrap()
                .dequantize();
            rel_error(&x, &y)
        };
        let (t, r, g) = (
            err(Granularity::Tensor),
            err(Granularity::Row),
            err(Granularity::Group(32)),
        );
        assert!(r < 0.6 * t, "row {r} vs tensor {t}");
        assert!(g < r, "group {g} vs row {r}");
    }

    fn rel_error(x: &[f32], y: &[f32]) -> f64 {
        let num: f64 = x.iter().zip(y).map(|(a, b)| ((a - b) as f64).powi(2)).sum();
        let den: f64 = x.iter().map(|a| (*a as f64).powi(2)).sum();
        (num / den).sqrt()
    }

    #[test]
    fn rounding_modes() {
        let x: Vec<f32> = (0..1000).map(|i| i as f32 * 0.01 - 5.0).collect();
        let base = LinearConfig::absmax(4);
        let q = |r| {
            LinearTensor::quantize(
                &x,
                1,
                1000,
                &LinearConfig {
                    rounding: r,
                    ..base
                },
            )
            .unwrap()
            .dequantize()
        };
        let (n, f, c) = (q(Rounding::Nearest), q(Rounding::Floor), q(Rounding::Ceil));
        for i in 0..x.len() {
            assert!(f[i] <= x[i] + 1e-6 && c[i] >= x[i] - 1e-6, "at {i}");
            assert!((n[i] - x[i]).abs() <= (f[i] - x[i]).abs().max((c[i] - x[i]).abs()));
        }
        // Stochastic rounding is unbiased: the mean error over many values is near 0
        // while floor's is about −step/2.
        let s = q(Rounding::Stochastic { seed: 9 });
        let s2 = q(Rounding::Stochastic { seed: 9 });
        assert_eq!(s, s2, "seeded");
        let mean = |y: &[f32]| y.iter().zip(&x).map(|(a, b)| (a - b) as f64).sum::<f64>() / 1000.0;
        let step = 5.0 / 7.0;
        assert!(mean(&s).abs() < 0.05 * step, "stochastic bias {}", mean(&s));
        assert!(mean(&f) < -0.4 * step, "floor bias {}", mean(&f));
        assert!(mean(&c) > 0.4 * step);
        assert!(
            q(Rounding::Stochastic { seed: 10 }) != s,
            "another seed, other draws"
        );
    }

    #[test]
    fn clipping_helps_heavy_tails() {
        // Heavy-tailed weights: Gaussian with 0.1 % outliers 12× larger.
        let mut x = gaussian(64 * 512, 3);
        for (i, v) in x.iter_mut().enumerate() {
            if i % 1000 == 7 {
                *v *= 12.0;
            }
        }
        let run = |clip| {
            let cfg = LinearConfig {
                clip,
                granularity: Granularity::Tensor,
                ..LinearConfig::absmax(4)
            };
            rel_error(
                &x,
                &LinearTensor::quantize(&x, 64, 512, &cfg)
                    .unwrap()
                    .dequantize(),
            )
        };
        let mm = run(Clip::MinMax);
        let mse = run(Clip::Mse);
        let pct = run(Clip::Percentile(99.9));
        let kl = run(Clip::Kl);
        assert!(mse < 0.8 * mm, "mse {mse} vs minmax {mm}");
        assert!(pct < mm, "percentile {pct} vs minmax {mm}");
        assert!(kl < mm, "kl {kl} vs minmax {mm}");
        // Group granularity with per-row ratios works too.
        let cfg = LinearConfig {
            clip: Clip::Kl,
            granularity: Granularity::Group(64),
            ..LinearConfig::zeropoint(4)
        };
        let y = LinearTensor::quantize(&x, 64, 512, &cfg)
            .unwrap()
            .dequantize();
        assert!(rel_error(&x, &y) < 0.2);
    }

    #[test]
    fn bad_parameters_are_errors() {
        let x = vec![0.5f32; 96];
        let g = LinearConfig {
            granularity: Granularity::Group(64),
            ..LinearConfig::absmax(4)
        };
        let e = LinearTensor::quantize(&x, 1, 96, &g)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("does not divide the row length 96") && e.contains("32"),
            "{e}"
        );
        assert!(LinearTensor::quantize(&x, 1, 96, &LinearConfig::absmax(1)).is_err());
        assert!(LinearTensor::quantize(&x, 1, 96, &LinearConfig::absmax(9)).is_err());
        assert!(LinearTensor::quantize(&x, 2, 96, &LinearConfig::absmax(8)).is_err());
        let mut y = x.clone();
        y[50] = f32::NAN;
        let e = LinearTensor::quantize(&y, 1, 96, &LinearConfig::absmax(8))
            .unwrap_err()
            .to_string();
        assert!(e.contains("column 50"), "{e}");
        // Constant and all-zero groups stay exact.
        let z = vec![0f32; 64];
        let q = LinearTensor::quantize(&z, 1, 64, &LinearConfig::zeropoint(4)).unwrap();
        assert!(q.dequantize().iter().all(|&v| v == 0.0));
    }
}
