//! Activation quantization and the int8 matmuls built on it: static and dynamic int8
//! activations (seed 001), LLM.int8() outlier decomposition (Dettmers et al. 2022),
//! SmoothQuant W8A8 (Xiao et al. 2022), and the fake-quant operation of
//! quantization-aware training with its straight-through-estimator gradient (seeds 001,
//! 004).
//!
//! Integer matmuls accumulate exactly: int8 × int8 products summed in f64 (exact below
//! 2^53) through faer's GEMM, then scaled — the same result as an i32 accumulator.

use faer::linalg::matmul::matmul;
use faer::{Accum, MatMut, MatRef, Par};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::model::linear::{Clip, Granularity, LinearConfig, LinearTensor, Rounding};
use crate::vectors::check_finite;

/// A static (calibrated) activation quantizer: one scale and zero point for a tensor,
/// fixed before inference from calibration data.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct StaticQuant {
    /// Dequantization step.
    pub step: f32,
    /// Zero point (0 for symmetric).
    pub zero: f32,
    /// Bits.
    pub bits: u32,
    /// Symmetric (absmax) or asymmetric.
    pub symmetric: bool,
}

impl StaticQuant {
    /// Calibrates on activations `x` (`cols` features) with the given range method
    /// (min/max, percentile, MSE or KL — seed 001's calibration choices).
    ///
    /// # Errors
    /// [`Error::DimensionMismatch`] when `x` is not whole rows of `cols`;
    /// [`Error::InvalidParameter`] for bad bits or clip parameters; [`Error::NonFinite`]
    /// for a NaN or infinite activation.
    pub fn calibrate(
        x: &[f32],
        cols: usize,
        bits: u32,
        symmetric: bool,
        clip: Clip,
    ) -> Result<Self> {
        let cfg = LinearConfig {
            bits,
            symmetric,
            granularity: Granularity::Tensor,
            rounding: Rounding::Nearest,
            clip,
        };
        let rows = x.len() / cols.max(1);
        if rows * cols != x.len() || x.is_empty() {
            return Err(Error::dim("calibration activations", rows * cols, x.len()));
        }
        let t = LinearTensor::quantize(x, rows, cols, &cfg)?;
        Ok(StaticQuant {
            step: t.steps[0],
            zero: t.zeros.first().map_or(0.0, |&z| z as f32),
            bits,
            symmetric,
        })
    }

    fn range(&self) -> (f32, f32) {
        if self.symmetric {
            let m = ((1u32 << (self.bits - 1)) - 1) as f32;
            (-m, m)
        } else {
            (0.0, ((1u32 << self.bits) - 1) as f32)
        }
    }

    /// Quantize → dequantize with the fixed parameters (values outside the calibrated
    /// range clip).
    pub fn fake_quant(&self, x: &[f32]) -> Vec<f32> {
        let (lo, hi) = self.range();
        x.iter()
            .map(|&v| ((v / self.step).round_ties_even() + self.zero).clamp(lo, hi))
            .map(|q| (q - self.zero) * self.step)
            .collect()
    }
}

/// Dynamic per-token (row) symmetric int8: each row gets its own absmax scale at
/// inference — the crate's linear quantizer with `absmax(8)` per row. Returns the codes
/// and one step per row.
pub fn dynamic_int8_rows(x: &[f32], cols: usize) -> (Vec<i8>, Vec<f32>) {
    let rows = x.len() / cols.max(1);
    match LinearTensor::quantize(x, rows, cols, &w8()) {
        Ok(t) => (t.int_codes().iter().map(|&c| c as i8).collect(), t.steps),
        // Empty or non-finite input: nothing to scale.
        Err(_) => (vec![0; x.len()], vec![1.0; rows]),
    }
}

/// `Y = A Bᵀ` for int8 `a` (`n × k`) and `b` (`m × k`), exact integer sums, rescaled by
/// the row steps of `a` and of `b`.
fn scaled_int8_matmul(a: &[i8], sa: &[f32], b: &[i8], sb: &[f32], k: usize) -> Vec<f32> {
    let (n, m) = (a.len() / k, b.len() / k);
    let af: Vec<f64> = a.par_iter().map(|&v| v as f64).collect();
    let bf: Vec<f64> = b.par_iter().map(|&v| v as f64).collect();
    let mut y = vec![0f64; n * m];
    matmul(
        MatMut::from_row_major_slice_mut(&mut y, n, m),
        Accum::Replace,
        MatRef::from_row_major_slice(&af, n, k),
        MatRef::from_row_major_slice(&bf, m, k).transpose(),
        1.0,
        Par::rayon(0),
    );
    y.par_chunks(m)
        .zip(sa.par_iter())
        .flat_map_iter(|(row, &s)| {
            row.iter()
                .zip(sb)
                .map(move |(&v, &t)| (v * s as f64 * t as f64) as f32)
        })
        .collect()
}

/// Quantizes weights (`m × k`) the way the int8 matmuls store them: symmetric int8, one
/// absmax step per output channel.
///
/// # Errors
/// [`Error::DimensionMismatch`] when `w` is not `m × k`; [`Error::NonFinite`] for a NaN or
/// infinite weight.
pub fn int8_weights(w: &[f32], m: usize, k: usize) -> Result<LinearTensor> {
    LinearTensor::quantize(w, m, k, &w8())
}

/// Vector-wise int8 matmul `X Wᵀ` (X: `n × k`, W: `m × k`): row-wise absmax scales for X
/// (per token) and for W (per output channel), exact integer accumulation, outer-product
/// rescale.
pub fn int8_matmul(x: &[f32], w: &[f32], k: usize) -> Vec<f32> {
    let (xq, xs) = dynamic_int8_rows(x, k);
    let (wq, ws) = dynamic_int8_rows(w, k);
    scaled_int8_matmul(&xq, &xs, &wq, &ws, k)
}

/// LLM.int8(): `X Ŵᵀ` with the stored int8 weights `w` (from [`int8_weights`]). The input
/// feature columns with any |x| ≥ `threshold` (default 6.0) are taken out and multiplied
/// in f32 with the dequantized weight columns, as bitsandbytes does; the rest goes
/// through the vector-wise int8 matmul; the results are added. Returns `n × m` and the
/// outlier columns.
///
/// # Errors
/// [`Error::InvalidParameter`] when `w` is not symmetric int8 with one step per row (as
/// [`int8_weights`] makes it); [`Error::DimensionMismatch`] when `x` is empty or not
/// whole rows of `w`'s columns; [`Error::NonFinite`] for a NaN or infinite activation.
pub fn llm_int8_matmul(
    x: &[f32],
    w: &LinearTensor,
    threshold: f32,
) -> Result<(Vec<f32>, Vec<usize>)> {
    let k = w.cols;
    let c = &w.config;
    if !(c.bits == 8 && c.symmetric && c.granularity == Granularity::Row) {
        return Err(Error::param(
            "llm_int8",
            "weights must be symmetric int8 with one step per row (int8_weights)",
        ));
    }
    if x.is_empty() || !x.len().is_multiple_of(k) {
        return Err(Error::dim(
            "LLM.int8 activations (columns)",
            k,
            x.len() % k.max(1),
        ));
    }
    check_finite(x, k, "LLM.int8 activations")?;
    let outliers: Vec<usize> = (0..k)
        .filter(|&j| x.chunks(k).any(|r| r[j].abs() >= threshold))
        .collect();
    // The int8 part sees X without its outlier columns (so W's outlier columns add 0).
    let mut xi = x.to_vec();
    for r in xi.chunks_mut(k) {
        for &j in &outliers {
            r[j] = 0.0;
        }
    }
    let (xq, xs) = dynamic_int8_rows(&xi, k);
    let wq: Vec<i8> = w.int_codes().iter().map(|&v| v as i8).collect();
    let mut y = scaled_int8_matmul(&xq, &xs, &wq, &w.steps, k);
    if !outliers.is_empty() {
        let gather = |m: &[f32]| -> Vec<f32> {
            m.chunks(k)
                .flat_map(|r| outliers.iter().map(move |&j| r[j]))
                .collect()
        };
        let yo =
            crate::model::gptq::matmul_xwt(&gather(x), &gather(&w.dequantize()), outliers.len());
        for (a, b) in y.iter_mut().zip(yo) {
            *a += b;
        }
    }
    Ok((y, outliers))
}

/// SmoothQuant: per input channel `s_j = max|X_j|^α / max|W_j|^(1−α)`; X is divided and W
/// multiplied by `s` (folded into W offline), then W8A8: W int8 per output channel,
/// activations int8 with one static scale calibrated on `calib` (after smoothing).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SmoothQuant {
    /// Per-input-channel smoothing factors.
    pub smooth: Vec<f32>,
    /// The smoothed weights, int8 per row.
    pub weight: LinearTensor,
    /// The static activation quantizer of the smoothed activations.
    pub act: StaticQuant,
}

impl SmoothQuant {
    /// Builds from weights (`m × k`) and calibration activations (`n × k`).
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] when `alpha` is outside [0, 1];
    /// [`Error::DimensionMismatch`] when `w` is not `m × k` or `calib` not whole rows of
    /// `k`; [`Error::NonFinite`] for a NaN or infinite input.
    pub fn new(w: &[f32], m: usize, k: usize, calib: &[f32], alpha: f32) -> Result<Self> {
        if !(0.0..=1.0).contains(&alpha) {
            return Err(Error::param(
                "alpha",
                format!("must be in [0, 1], got {alpha}"),
            ));
        }
        if calib.is_empty() || !calib.len().is_multiple_of(k) || w.len() != m * k {
            return Err(Error::dim("SmoothQuant inputs", m * k, w.len()));
        }
        check_finite(calib, k, "SmoothQuant calibration")?;
        let xmax: Vec<f32> = (0..k)
            .map(|j| calib.chunks(k).fold(0f32, |a, r| a.max(r[j].abs())))
            .collect();
        let wmax: Vec<f32> = (0..k)
            .map(|j| w.chunks(k).fold(0f32, |a, r| a.max(r[j].abs())))
            .collect();
        let smooth: Vec<f32> = xmax
            .iter()
            .zip(&wmax)
            .map(|(&a, &b)| {
                let s = a.max(1e-5).powf(alpha) / b.max(1e-5).powf(1.0 - alpha);
                if s.is_finite() && s > 0.0 { s } else { 1.0 }
            })
            .collect();
        let ws: Vec<f32> = w
            .chunks(k)
            .flat_map(|r| r.iter().zip(&smooth).map(|(v, s)| v * s))
            .collect();
        let weight = int8_weights(&ws, m, k)?;
        let xs = divide_columns(calib, &smooth);
        let act = StaticQuant::calibrate(&xs, k, 8, true, Clip::MinMax)?;
        Ok(SmoothQuant {
            smooth,
            weight,
            act,
        })
    }

    /// `X Wᵀ` through the smoothed W8A8 path.
    pub fn matmul(&self, x: &[f32]) -> Vec<f32> {
        let k = self.smooth.len();
        let xq = self.act.fake_quant(&divide_columns(x, &self.smooth));
        crate::model::gptq::matmul_xwt(&xq, &self.weight.dequantize(), k)
    }

    /// The effective weights `Ŵ = Q(W·s) / s` (what a dequantized file stores).
    pub fn dequantize(&self) -> Vec<f32> {
        divide_columns(&self.weight.dequantize(), &self.smooth)
    }
}

fn w8() -> LinearConfig {
    LinearConfig {
        granularity: Granularity::Row,
        ..LinearConfig::absmax(8)
    }
}

fn divide_columns(x: &[f32], s: &[f32]) -> Vec<f32> {
    x.chunks(s.len())
        .flat_map(|r| r.iter().zip(s).map(|(v, s)| v / s))
        .collect()
}

/// Plain W8A8 without smoothing: W int8 per row, X static int8 per tensor from `calib`.
///
/// # Errors
/// As [`StaticQuant::calibrate`] and [`int8_weights`] (shapes, non-finite values).
pub fn w8a8_matmul(x: &[f32], w: &[f32], m: usize, k: usize, calib: &[f32]) -> Result<Vec<f32>> {
    let act = StaticQuant::calibrate(calib, k, 8, true, Clip::MinMax)?;
    let wq = int8_weights(w, m, k)?.dequantize();
    Ok(crate::model::gptq::matmul_xwt(&act.fake_quant(x), &wq, k))
}

/// Fake quantization (QAT forward): `x̂ = s · (clamp(round(x/s) + z, qmin, qmax) − z)`.
pub fn fake_quant(x: f32, step: f32, zero: f32, qmin: f32, qmax: f32) -> f32 {
    (((x / step).round_ties_even() + zero).clamp(qmin, qmax) - zero) * step
}

/// The straight-through estimator (QAT backward): the gradient passes unchanged where
/// the input is inside the representable range and is zero where it was clipped.
pub fn fake_quant_grad(x: f32, grad: f32, step: f32, zero: f32, qmin: f32, qmax: f32) -> f32 {
    let v = x / step + zero;
    if v >= qmin - 0.5 && v <= qmax + 0.5 {
        grad
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::report::errors;
    use crate::model::synthetic::{WeightKind, matrix};

    /// Activations with a few outlier channels (|x| up to ~60), as in LLM.int8's analysis.
    fn outlier_acts(n: usize, k: usize, seed: u64) -> Vec<f32> {
        let mut x = matrix(WeightKind::Gaussian, n, k, 1.0, seed);
        for r in x.chunks_mut(k) {
            for j in [3usize, k / 2, k - 7] {
                r[j] *= 25.0;
            }
        }
        x
    }

    #[test]
    fn llm_int8_is_close_to_f32_and_beats_plain_int8_with_outliers() {
        let (n, m, k) = (128, 64, 256);
        let x = outlier_acts(n, k, 1);
        let w = matrix(WeightKind::Gaussian, m, k, 0.02, 2);
        let exact = crate::model::gptq::matmul_xwt(&x, &w, k);
        let wq = int8_weights(&w, m, k).unwrap();
        let (y, outl) = llm_int8_matmul(&x, &wq, 6.0).unwrap();
        assert_eq!(outl, vec![3, k / 2, k - 7]);
        let plain = int8_matmul(&x, &w, k);
        let (e_llm, e_plain) = (errors(&exact, &y).0, errors(&exact, &plain).0);
        // Stated tolerance: 1 % relative error; plain int8 is far worse here.
        assert!(e_llm < 0.01, "llm.int8 {e_llm}");
        assert!(e_llm < 0.5 * e_plain, "llm.int8 {e_llm} vs int8 {e_plain}");
        // Without outliers the decomposition is plain int8 exactly.
        let xs = matrix(WeightKind::Gaussian, n, k, 1.0, 3);
        let (y2, o2) = llm_int8_matmul(&xs, &wq, 6.0).unwrap();
        assert!(o2.is_empty());
        assert_eq!(y2, int8_matmul(&xs, &w, k));
    }

    #[test]
    fn smoothquant_beats_plain_w8a8_on_outlier_channels() {
        let (n, m, k) = (256, 64, 256);
        let x = outlier_acts(n, k, 4);
        let w = matrix(WeightKind::Gaussian, m, k, 0.02, 5);
        let (calib, test) = x.split_at(192 * k);
        let exact = crate::model::gptq::matmul_xwt(test, &w, k);
        let sq = SmoothQuant::new(&w, m, k, calib, 0.5).unwrap();
        let e_sq = errors(&exact, &sq.matmul(test)).0;
        let e_plain = errors(&exact, &w8a8_matmul(test, &w, m, k, calib).unwrap()).0;
        assert!(e_sq < 0.7 * e_plain, "smoothquant {e_sq} vs w8a8 {e_plain}");
        assert!(SmoothQuant::new(&w, m, k, calib, 1.5).is_err());
    }

    #[test]
    fn static_and_dynamic_activation_quantization() {
        let k = 64;
        let x = outlier_acts(64, k, 6);
        let st = StaticQuant::calibrate(&x, k, 8, false, Clip::MinMax).unwrap();
        let y = st.fake_quant(&x);
        assert!(errors(&x, &y).1 <= 0.5 * st.step as f64 * 1.001);
        // Out-of-range values at inference clip to the calibrated range's top code.
        let top = (255.0 - st.zero) * st.step;
        assert_eq!(st.fake_quant(&[1e4])[0], top);
        let calib_max = x.iter().fold(f32::MIN, |m, &v| m.max(v));
        assert!((top - calib_max).abs() <= st.step, "{top} vs {calib_max}");
        let (codes, steps) = dynamic_int8_rows(&x, k);
        assert_eq!(steps.len(), 64);
        for (r, row) in x.chunks(k).enumerate() {
            let a = row.iter().fold(0f32, |m, v| m.max(v.abs()));
            assert_eq!(steps[r], a / 127.0);
            assert!(codes[r * k..(r + 1) * k].iter().any(|&c| c.abs() == 127));
        }
        let pct = StaticQuant::calibrate(&x, k, 8, true, Clip::Percentile(99.0)).unwrap();
        assert!(
            pct.step
                < StaticQuant::calibrate(&x, k, 8, true, Clip::MinMax)
                    .unwrap()
                    .step
        );
    }

    #[test]
    fn fake_quant_gradient_is_the_straight_through_estimator() {
        let (s, z, lo, hi) = (0.1f32, 0.0f32, -8.0f32, 7.0f32);
        assert_eq!(fake_quant(0.33, s, z, lo, hi), 0.3);
        assert_eq!(fake_quant(5.0, s, z, lo, hi), 0.7); // clipped at qmax
        assert_eq!(fake_quant(-5.0, s, z, lo, hi), -0.8);
        for &x in &[-0.8f32, -0.3, 0.0, 0.33, 0.7, 0.74] {
            assert_eq!(fake_quant_grad(x, 2.5, s, z, lo, hi), 2.5, "inside at {x}");
        }
        for &x in &[-0.9f32, 0.8, 5.0, -5.0] {
            assert_eq!(fake_quant_grad(x, 2.5, s, z, lo, hi), 0.0, "clipped at {x}");
        }
    }
}
