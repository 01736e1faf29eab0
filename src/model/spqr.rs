//! SpQR (Dettmers et al. 2023; seed 003): GPTQ with very small groups whose statistics
//! are themselves quantized (bilevel), plus the few most sensitive weights kept exactly as
//! sparse f16 outliers.
//!
//! - First level: asymmetric min/max quantization of groups of `group` (16) input columns
//!   per row, `bits` (3) per weight.
//! - Second level: each group's scale and zero point are quantized to `stat_bits` (3)
//!   with one min/max quantizer per `stat_group` (16) consecutive rows of the same column
//!   group; that quantizer's minimum and step are stored as f16.
//! - Outliers: in every column, after quantizing, the rows with the largest GPTQ
//!   sensitivity `((w − q) / U_cc)²` — the top `outlier_frac` — keep their (error-updated)
//!   weight as f16 instead; they are stored in CSR form (per-row u32 pointers, u16 column
//!   index and f16 value per outlier).
//!
//! [`SpqrTensor::storage_bits`] counts every stored bit: packed codes, packed statistic
//! codes, the f16 second-level parameters, the CSR arrays and the act-order permutation.

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::model::gptq::{ColumnQuantizer, Hessian, group_min_max, pack_column_major, run_gptq};
use crate::model::pack::{pack_row, packed_len, unpack_row};

/// SpQR parameters.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct SpqrConfig {
    /// Bits per weight code (3).
    pub bits: u32,
    /// Input columns per first-level group (16).
    pub group: usize,
    /// Bits of the quantized group scales and zero points (3).
    pub stat_bits: u32,
    /// Rows per second-level group (16).
    pub stat_group: usize,
    /// Fraction of weights kept as f16 outliers (0.01).
    pub outlier_frac: f64,
    /// GPTQ dampening.
    pub damp: f64,
    /// GPTQ lazy-update block.
    pub block: usize,
    /// GPTQ act-order.
    pub act_order: bool,
}

impl Default for SpqrConfig {
    fn default() -> Self {
        SpqrConfig {
            bits: 3,
            group: 16,
            stat_bits: 3,
            stat_group: 16,
            outlier_frac: 0.01,
            damp: 0.01,
            block: 128,
            act_order: false,
        }
    }
}

/// A SpQR-quantized matrix.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SpqrTensor {
    /// Rows.
    pub rows: usize,
    /// Columns.
    pub cols: usize,
    /// Parameters.
    pub config: SpqrConfig,
    /// Weight codes, packed per row (columns in quantization order).
    pub codes: Vec<u8>,
    /// Scale codes per (row, group), packed per row.
    pub step_codes: Vec<u8>,
    /// Zero-point codes per (row, group), packed per row.
    pub zero_codes: Vec<u8>,
    /// Per (row block, group): f16 bits of the scale quantizer's minimum and step.
    pub step_meta: Vec<u16>,
    /// Per (row block, group): f16 bits of the zero quantizer's minimum and step.
    pub zero_meta: Vec<u16>,
    /// CSR row pointers (`rows + 1`).
    pub row_ptr: Vec<u32>,
    /// Outlier columns (quantization order).
    pub out_cols: Vec<u16>,
    /// Outlier values (f16 bits).
    pub out_vals: Vec<u16>,
    /// Act-order permutation (`perm[k]` = original column of stored column `k`).
    pub perm: Option<Vec<u32>>,
}

fn f16(v: f32) -> u16 {
    half::f16::from_f32(v).to_bits()
}

fn from_f16(b: u16) -> f32 {
    half::f16::from_bits(b).to_f32()
}

/// Min/max quantizer of `v` to `bits` with f16 minimum and step: (codes, min bits, step
/// bits, dequantized values).
fn second_level(v: &[f32], bits: u32) -> (Vec<u8>, u16, u16, Vec<f32>) {
    let lo = v.iter().copied().fold(f32::INFINITY, f32::min);
    let hi = v.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let lo_b = f16(lo);
    let lo = from_f16(lo_b);
    let levels = ((1u32 << bits) - 1) as f32;
    let step_b = f16(((hi - lo) / levels).max(0.0));
    let step = from_f16(step_b);
    let codes: Vec<u8> = v
        .iter()
        .map(|&x| {
            if step > 0.0 {
                ((x - lo) / step).round_ties_even().clamp(0.0, levels) as u8
            } else {
                0
            }
        })
        .collect();
    let deq = codes.iter().map(|&c| lo + step * c as f32).collect();
    (codes, lo_b, step_b, deq)
}

struct SpqrColumns {
    cfg: SpqrConfig,
    rows: usize,
    ngroups: usize,
    /// Current group's dequantized (step, zero) per row.
    step: Vec<f32>,
    zero: Vec<f32>,
    step_codes: Vec<u8>, // rows × ngroups, one byte each until packing
    zero_codes: Vec<u8>,
    step_meta: Vec<u16>,
    zero_meta: Vec<u16>,
    outliers: Vec<(u32, u16, u16)>, // (row, col, f16)
    scratch: Vec<(f32, u32)>,
    orig: Vec<f32>,
}

impl ColumnQuantizer for SpqrColumns {
    fn group_len(&self) -> usize {
        self.cfg.group
    }

    fn start_group(&mut self, c: usize, wt: &[f32], rows: usize) {
        let (lo, hi) = group_min_max(wt, rows, c, self.cfg.group);
        let qmax = ((1u32 << self.cfg.bits) - 1) as f32;
        let mut steps = vec![0f32; rows];
        let mut zeros = vec![0f32; rows];
        for r in 0..rows {
            let (l, h) = (lo[r].min(0.0), hi[r].max(0.0));
            let s = if h > l { (h - l) / qmax } else { 1.0 };
            steps[r] = s;
            zeros[r] = -l / s;
        }
        let gi = c / self.cfg.group;
        let nblocks = rows.div_ceil(self.cfg.stat_group);
        for b in 0..nblocks {
            let rr = b * self.cfg.stat_group..((b + 1) * self.cfg.stat_group).min(rows);
            let (sc, slo, sst, sd) = second_level(&steps[rr.clone()], self.cfg.stat_bits);
            let (zc, zlo, zst, zd) = second_level(&zeros[rr.clone()], self.cfg.stat_bits);
            let m = (b * self.ngroups + gi) * 2;
            self.step_meta[m] = slo;
            self.step_meta[m + 1] = sst;
            self.zero_meta[m] = zlo;
            self.zero_meta[m + 1] = zst;
            for (k, r) in rr.enumerate() {
                self.step_codes[r * self.ngroups + gi] = sc[k];
                self.zero_codes[r * self.ngroups + gi] = zc[k];
                self.step[r] = sd[k].max(f32::MIN_POSITIVE);
                self.zero[r] = zd[k];
            }
        }
    }

    fn quantize(&mut self, c: usize, col: &mut [f32], d: f32, codes: &mut [u8]) {
        let qmax = ((1u32 << self.cfg.bits) - 1) as f32;
        self.scratch.clear();
        self.orig.clear();
        self.orig.extend_from_slice(col);
        for r in 0..self.rows {
            let x = col[r];
            let code = (x / self.step[r] + self.zero[r])
                .round_ties_even()
                .clamp(0.0, qmax);
            codes[r] = code as u8;
            let q = self.step[r] * (code - self.zero[r]);
            let e = (x - q) / d;
            self.scratch.push((e * e, r as u32));
            col[r] = q;
        }
        let k = ((self.cfg.outlier_frac * self.rows as f64).round() as usize).min(self.rows);
        if k > 0 {
            let n = self.scratch.len();
            self.scratch
                .select_nth_unstable_by(n - k, |a, b| a.0.total_cmp(&b.0));
            for &(_, r) in &self.scratch[n - k..] {
                let r = r as usize;
                let v = f16(self.orig[r]);
                self.outliers.push((r as u32, c as u16, v));
                col[r] = from_f16(v);
            }
        }
    }
}

impl SpqrTensor {
    /// Quantizes `w` (`rows × cols`) with SpQR, given the layer's Hessian.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] for bits, group size or outlier fraction out of range,
    /// or more than 65,536 columns;
    /// [`Error::DimensionMismatch`] or [`Error::NonFinite`] for a bad weight or Hessian;
    /// [`Error::Numerical`] when the Hessian is not positive definite.
    pub fn quantize(
        w: &[f32],
        rows: usize,
        cols: usize,
        h: &Hessian,
        cfg: &SpqrConfig,
    ) -> Result<Self> {
        if !(2..=8).contains(&cfg.bits) || !(1..=8).contains(&cfg.stat_bits) {
            return Err(Error::param(
                "bits",
                "SpQR takes 2..=8 weight bits and 1..=8 statistic bits",
            ));
        }
        if cfg.group == 0 || !cols.is_multiple_of(cfg.group) || cfg.stat_group == 0 {
            return Err(Error::param(
                "group",
                format!("SpQR group {} must divide the row length {cols}", cfg.group),
            ));
        }
        if cols > u16::MAX as usize + 1 {
            return Err(Error::param(
                "cols",
                "SpQR stores u16 outlier columns: at most 65,536 columns",
            ));
        }
        if !(0.0..=1.0).contains(&cfg.outlier_frac) {
            return Err(Error::param("outlier_frac", "must be in [0, 1]"));
        }
        let ngroups = cols / cfg.group;
        let nblocks = rows.div_ceil(cfg.stat_group);
        let mut q = SpqrColumns {
            cfg: *cfg,
            rows,
            ngroups,
            step: vec![1.0; rows],
            zero: vec![0.0; rows],
            step_codes: vec![0; rows * ngroups],
            zero_codes: vec![0; rows * ngroups],
            step_meta: vec![0; nblocks * ngroups * 2],
            zero_meta: vec![0; nblocks * ngroups * 2],
            outliers: Vec::new(),
            scratch: Vec::with_capacity(rows),
            orig: Vec::with_capacity(rows),
        };
        let (codes_cm, perm) = run_gptq(
            w,
            rows,
            cols,
            h,
            (cfg.damp, cfg.block, cfg.act_order),
            &mut q,
        )?;
        let mut outliers = std::mem::take(&mut q.outliers);
        outliers.sort_unstable();
        let mut row_ptr = vec![0u32; rows + 1];
        for &(r, _, _) in &outliers {
            row_ptr[r as usize + 1] += 1;
        }
        for r in 0..rows {
            row_ptr[r + 1] += row_ptr[r];
        }
        let pack = |v: &[u8]| -> Vec<u8> {
            let rb = packed_len(ngroups, cfg.stat_bits);
            let mut out = vec![0u8; rows * rb];
            out.par_chunks_mut(rb)
                .zip(v.par_chunks(ngroups))
                .for_each(|(o, c)| pack_row(c, cfg.stat_bits, o));
            out
        };
        Ok(SpqrTensor {
            rows,
            cols,
            config: *cfg,
            codes: pack_column_major(&codes_cm, rows, cols, cfg.bits),
            step_codes: pack(&q.step_codes),
            zero_codes: pack(&q.zero_codes),
            step_meta: q.step_meta,
            zero_meta: q.zero_meta,
            row_ptr,
            out_cols: outliers.iter().map(|o| o.1).collect(),
            out_vals: outliers.iter().map(|o| o.2).collect(),
            perm,
        })
    }

    /// The reconstruction, original column order.
    pub fn dequantize(&self) -> Vec<f32> {
        let (rows, cols, c) = (self.rows, self.cols, &self.config);
        let ngroups = cols / c.group;
        let rb = packed_len(cols, c.bits);
        let sb = packed_len(ngroups, c.stat_bits);
        let mut out = vec![0f32; rows * cols];
        out.par_chunks_mut(cols).enumerate().for_each_init(
            || {
                (
                    vec![0u8; cols],
                    vec![0u8; ngroups],
                    vec![0u8; ngroups],
                    vec![0f32; cols],
                )
            },
            |(codes, sc, zc, tmp), (r, y)| {
                unpack_row(&self.codes[r * rb..(r + 1) * rb], c.bits, codes);
                unpack_row(&self.step_codes[r * sb..(r + 1) * sb], c.stat_bits, sc);
                unpack_row(&self.zero_codes[r * sb..(r + 1) * sb], c.stat_bits, zc);
                let b = r / c.stat_group;
                for gi in 0..ngroups {
                    let m = (b * ngroups + gi) * 2;
                    let step = (from_f16(self.step_meta[m])
                        + from_f16(self.step_meta[m + 1]) * sc[gi] as f32)
                        .max(f32::MIN_POSITIVE);
                    let zero = from_f16(self.zero_meta[m])
                        + from_f16(self.zero_meta[m + 1]) * zc[gi] as f32;
                    for j in gi * c.group..(gi + 1) * c.group {
                        tmp[j] = step * (codes[j] as f32 - zero);
                    }
                }
                for k in self.row_ptr[r] as usize..self.row_ptr[r + 1] as usize {
                    tmp[self.out_cols[k] as usize] = from_f16(self.out_vals[k]);
                }
                match &self.perm {
                    None => y.copy_from_slice(tmp),
                    Some(p) => {
                        for (k, &src) in p.iter().enumerate() {
                            y[src as usize] = tmp[k];
                        }
                    }
                }
            },
        );
        out
    }

    /// Number of f16 outliers.
    pub fn outliers(&self) -> usize {
        self.out_vals.len()
    }

    /// Every stored bit.
    pub fn storage_bits(&self) -> u64 {
        8 * (self.codes.len() + self.step_codes.len() + self.zero_codes.len()) as u64
            + 16 * (self.step_meta.len() + self.zero_meta.len()) as u64
            + 32 * self.row_ptr.len() as u64
            + 16 * (self.out_cols.len() + self.out_vals.len()) as u64
            + self.perm.as_ref().map_or(0, |p| 32 * p.len() as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::gptq::{GptqConfig, gptq, output_error};
    use crate::model::linear::LinearTensor;
    use crate::model::synthetic::{WeightKind, correlated_activations, matrix};

    #[test]
    fn bits_are_accounted_exactly_and_outliers_help() {
        let (rows, cols, n) = (64, 256, 4096);
        let w = matrix(WeightKind::OutlierColumns, rows, cols, 0.02, 1);
        let x = correlated_activations(n, cols, 2);
        let (calib, test) = x.split_at(3584 * cols);
        let h = Hessian::from_activations(calib, 3584, cols).unwrap();
        let cfg = SpqrConfig::default();
        let s = SpqrTensor::quantize(&w, rows, cols, &h, &cfg).unwrap();
        // 1 % of 64 rows = 1 outlier per column.
        assert_eq!(s.outliers(), cols);
        let ngroups = cols / 16;
        let expect = rows * packed_len(cols, 3) * 8        // weight codes
            + 2 * rows * packed_len(ngroups, 3) * 8           // scale + zero codes
            + 2 * (rows / 16) * ngroups * 2 * 16              // f16 min + step, scales and zeros
            + (rows + 1) * 32                                 // CSR row pointers
            + s.outliers() * 32; // u16 column + f16 value
        assert_eq!(s.storage_bits(), expect as u64);
        let bpw = s.storage_bits() as f64 / (rows * cols) as f64;
        assert!(bpw > 3.0 && bpw < 4.5, "{bpw}"); // 4.25 at 64 rows (CSR + 1 % outliers)
        let y = s.dequantize();
        let e_spqr = output_error(test, &w, &y, cols);
        let g3 = GptqConfig {
            bits: 3,
            group: Some(128),
            ..GptqConfig::default()
        };
        let e_gptq = output_error(
            test,
            &w,
            &gptq(&w, rows, cols, &h, &g3).unwrap().dequantize(),
            cols,
        );
        let e_rtn = output_error(
            test,
            &w,
            &LinearTensor::quantize(&w, rows, cols, &g3.rtn())
                .unwrap()
                .dequantize(),
            cols,
        );
        assert!(
            e_spqr < e_gptq && e_gptq < e_rtn,
            "spqr {e_spqr} gptq {e_gptq} rtn {e_rtn}"
        );
        // Act-order and no outliers still decode consistently.
        let c2 = SpqrConfig {
            act_order: true,
            outlier_frac: 0.0,
            ..cfg
        };
        let s2 = SpqrTensor::quantize(&w, rows, cols, &h, &c2).unwrap();
        assert_eq!(s2.outliers(), 0);
        assert!(output_error(test, &w, &s2.dequantize(), cols) < e_rtn);
        assert!(
            SpqrTensor::quantize(&w, rows, cols, &h, &SpqrConfig { group: 24, ..cfg }).is_err()
        );
    }
}
