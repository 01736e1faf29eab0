//! Weights stored in a small floating-point format: f16 and bf16 (plain saturating casts)
//! and FP8 E4M3 / E5M2 with a scale per tensor, row or group that maps the largest
//! magnitude onto the format's largest finite value (the usual FP8 weight recipe).
//!
//! ```
//! use vecquant::model::float::{FloatScheme, FloatTensor};
//! use vecquant::model::linear::Granularity;
//! let w = [0.1f32, -2.0, 3.5, 0.0];
//! let q = FloatTensor::quantize(&w, 1, 4, FloatScheme::Fp8E4m3, Granularity::Row).unwrap();
//! assert_eq!(q.dequantize()[2], 3.5); // the row's absmax maps to 448 exactly
//! ```

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::model::formats::{FloatFormat, to_bf16_saturating, to_f16_saturating};
use crate::model::linear::Granularity;
use crate::vectors::check_finite;

/// A floating weight format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum FloatScheme {
    /// IEEE half precision, saturating cast.
    F16,
    /// bfloat16, saturating cast.
    Bf16,
    /// FP8 E4M3 with scales.
    Fp8E4m3,
    /// FP8 E5M2 with scales.
    Fp8E5m2,
}

impl FloatScheme {
    /// The number format.
    pub fn format(&self) -> FloatFormat {
        match self {
            FloatScheme::F16 => FloatFormat::F16,
            FloatScheme::Bf16 => FloatFormat::BF16,
            FloatScheme::Fp8E4m3 => FloatFormat::E4M3,
            FloatScheme::Fp8E5m2 => FloatFormat::E5M2,
        }
    }

    fn is_fp8(&self) -> bool {
        matches!(self, FloatScheme::Fp8E4m3 | FloatScheme::Fp8E5m2)
    }
}

/// A `rows × cols` tensor in a floating format.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FloatTensor {
    /// Rows.
    pub rows: usize,
    /// Columns.
    pub cols: usize,
    /// Format.
    pub scheme: FloatScheme,
    /// Scale sharing (FP8 only; f16/bf16 are unscaled).
    pub granularity: Granularity,
    /// Per group (FP8): `x̂ = scale · fp8`.
    pub scales: Vec<f32>,
    /// Codes: one byte per weight (FP8) or two little-endian bytes (f16/bf16).
    pub codes: Vec<u8>,
}

impl FloatTensor {
    /// Converts a row-major `rows × cols` tensor (finite values).
    ///
    /// # Errors
    /// [`Error::DimensionMismatch`] when `data` is not `rows × cols`; [`Error::NonFinite`]
    /// for a NaN or infinite value; [`Error::InvalidParameter`] when the granularity does
    /// not fit `cols` (a group size of zero or not dividing the row).
    pub fn quantize(
        data: &[f32],
        rows: usize,
        cols: usize,
        scheme: FloatScheme,
        granularity: Granularity,
    ) -> Result<Self> {
        if data.len() != rows * cols || data.is_empty() {
            return Err(Error::dim(
                "float conversion input",
                rows * cols,
                data.len(),
            ));
        }
        check_finite(data, cols, "float conversion")?;
        if !scheme.is_fp8() {
            let mut bits = vec![0u16; data.len()];
            bits.par_chunks_mut(4096)
                .zip(data.par_chunks(4096))
                .for_each(|(o, x)| match scheme {
                    FloatScheme::F16 => to_f16_saturating(x, o),
                    _ => to_bf16_saturating(x, o),
                });
            return Ok(FloatTensor {
                rows,
                cols,
                scheme,
                granularity: Granularity::Tensor,
                scales: Vec::new(),
                codes: bits.iter().flat_map(|b| b.to_le_bytes()).collect(),
            });
        }
        granularity.validate(cols)?;
        let fmt = scheme.format();
        let glen = granularity.group_len(rows, cols);
        let scales: Vec<f32> = data
            .par_chunks(glen)
            .map(|g| {
                let a = g.iter().fold(0f32, |m, v| m.max(v.abs()));
                if a > 0.0 { a / fmt.max_finite() } else { 1.0 }
            })
            .collect();
        let mut codes = vec![0u8; data.len()];
        // Chunks that never straddle a group: the gcd-free choice is the group length
        // itself, capped so per-tensor groups still split across threads.
        let chunk = if glen <= 65_536 { glen } else { cols };
        codes
            .par_chunks_mut(chunk)
            .zip(data.par_chunks(chunk))
            .enumerate()
            .for_each(|(c, (o, x))| {
                let s = scales[c * chunk / glen];
                let inv = 1.0 / s;
                for (q, &v) in o.iter_mut().zip(x) {
                    *q = fmt.encode(v * inv) as u8;
                }
            });
        Ok(FloatTensor {
            rows,
            cols,
            scheme,
            granularity,
            scales,
            codes,
        })
    }

    /// The reconstruction, row-major.
    pub fn dequantize(&self) -> Vec<f32> {
        let n = self.rows * self.cols;
        if !self.scheme.is_fp8() {
            return self
                .codes
                .par_chunks(2)
                .map(|b| {
                    let v = u16::from_le_bytes([b[0], b[1]]);
                    match self.scheme {
                        FloatScheme::F16 => half::f16::from_bits(v).to_f32(),
                        _ => half::bf16::from_bits(v).to_f32(),
                    }
                })
                .collect();
        }
        let fmt = self.scheme.format();
        let mut lut = [0f32; 256];
        for (c, l) in lut.iter_mut().enumerate() {
            *l = fmt.decode(c as u32);
        }
        let glen = self.granularity.group_len(self.rows, self.cols);
        let mut out = vec![0f32; n];
        out.par_chunks_mut(self.cols)
            .zip(self.codes.par_chunks(self.cols))
            .enumerate()
            .for_each(|(r, (y, c))| {
                for (j, (o, &q)) in y.iter_mut().zip(c).enumerate() {
                    *o = lut[q as usize] * self.scales[(r * self.cols + j) / glen];
                }
            });
        out
    }

    /// Stored size in bits: codes plus f32 scales.
    pub fn storage_bits(&self) -> u64 {
        8 * self.codes.len() as u64 + 32 * self.scales.len() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fp8_relative_error_is_bounded_by_half_an_ulp() {
        let (rows, cols) = (8, 256);
        let w: Vec<f32> = (0..rows * cols)
            .map(|i| ((i * 7919 % 4001) as f32 / 2000.0 - 1.0) * (1.0 + (i / cols) as f32))
            .collect();
        for (scheme, man) in [(FloatScheme::Fp8E4m3, 3), (FloatScheme::Fp8E5m2, 2)] {
            for g in [
                Granularity::Tensor,
                Granularity::Row,
                Granularity::Group(64),
            ] {
                let q = FloatTensor::quantize(&w, rows, cols, scheme, g).unwrap();
                let y = q.dequantize();
                let glen = g.group_len(rows, cols);
                for (i, (a, b)) in w.iter().zip(&y).enumerate() {
                    let s = q.scales[i / glen];
                    // Normal range: relative error ≤ 2^-(man+1); subnormals: half a quantum.
                    let fmt = scheme.format();
                    let bound = (a.abs() * 2f32.powi(-(man + 1)))
                        .max(0.5 * fmt.min_subnormal() * s)
                        * 1.0001;
                    assert!(
                        (a - b).abs() <= bound,
                        "{scheme:?} {g:?} at {i}: {a} vs {b}"
                    );
                }
                assert_eq!(
                    q.storage_bits(),
                    8 * (rows * cols) as u64 + 32 * q.scales.len() as u64
                );
            }
        }
        let h = FloatTensor::quantize(&w, rows, cols, FloatScheme::F16, Granularity::Row).unwrap();
        assert!(
            h.dequantize()
                .iter()
                .zip(&w)
                .all(|(a, b)| (a - b).abs() <= b.abs() * 4.9e-4)
        );
        let big = [1e6f32, -1e6];
        let h = FloatTensor::quantize(&big, 1, 2, FloatScheme::F16, Granularity::Row).unwrap();
        assert_eq!(h.dequantize(), vec![65504.0, -65504.0], "saturates");
    }
}
