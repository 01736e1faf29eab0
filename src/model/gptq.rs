//! GPTQ (Frantar et al. 2022): quantize a weight matrix column by column, feeding each
//! column's quantization error back into the columns not yet quantized, weighted by the
//! inverse Hessian of the layer's reconstruction loss ‖XWᵀ − XŴᵀ‖² (seed 003, from
//! Optimal Brain Surgeon / Optimal Brain Quantization).
//!
//! The Hessian proxy is `H = 2XᵀX / n` over the calibration activations `X` (tokens ×
//! in_features), accumulated in f64 ([`Hessian`]). Then, as in the reference
//! implementation: dead columns (`H_ii = 0`) are zeroed; optionally columns are reordered
//! by decreasing `H_ii` (*act-order*); `λ = damp · mean(diag H)` is added to the
//! diagonal; `U` is the upper Cholesky factor of `H⁻¹` (through faer); columns are
//! processed in blocks of 128 — inside a block the error of column `i` updates the block's
//! later columns immediately, `W[:, j] −= (w_i − q_i)/U_ii · U_ij`, and the accumulated
//! block error updates all later columns with one GEMM ("lazy batch" updates). Scales and
//! zero points are asymmetric min/max per row, or per group of `G` columns computed when
//! the group's first column is reached (on the error-updated weights).
//!
//! With a diagonal `H`, `U` is diagonal, no error propagates and GPTQ equals
//! round-to-nearest exactly (tested).

use faer::linalg::matmul::matmul;
use faer::linalg::solvers::DenseSolveCore;
use faer::{Accum, Mat, MatMut, MatRef, Par, Side};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::model::linear::{Clip, Granularity, GroupParams, LinearConfig, LinearTensor, Rounding};
use crate::model::pack::{pack_row, packed_len};
use crate::vectors::check_finite;

/// The running Hessian proxy `H = 2/n Σ x xᵀ` of one layer (f64).
#[derive(Clone, Debug)]
pub struct Hessian {
    cols: usize,
    h: Vec<f64>,
    rows: usize,
}

impl Hessian {
    /// An empty accumulator for `cols` input features.
    pub fn new(cols: usize) -> Self {
        Hessian {
            cols,
            h: vec![0.0; cols * cols],
            rows: 0,
        }
    }

    /// Adds a batch of activations (row-major `rows × cols`), keeping `H` the mean over
    /// all rows seen so far.
    ///
    /// # Errors
    /// [`Error::DimensionMismatch`] when `x` is not `rows × cols`; [`Error::NonFinite`] for
    /// a NaN or infinite activation.
    pub fn add(&mut self, x: &[f32], rows: usize) -> Result<()> {
        if x.len() != rows * self.cols {
            return Err(Error::dim("calibration batch", rows * self.cols, x.len()));
        }
        check_finite(x, self.cols, "calibration activations")?;
        if rows == 0 {
            return Ok(());
        }
        let total = self.rows + rows;
        let old = self.rows as f64 / total as f64;
        let xd: Vec<f64> = x.par_iter().map(|&v| v as f64).collect();
        let xm = MatRef::from_row_major_slice(&xd, rows, self.cols);
        // H ← old·H + (2/total)·XᵀX
        for v in self.h.iter_mut() {
            *v *= old;
        }
        let h = MatMut::from_row_major_slice_mut(&mut self.h, self.cols, self.cols);
        matmul(
            h,
            Accum::Add,
            xm.transpose(),
            xm,
            2.0 / total as f64,
            Par::rayon(0),
        );
        self.rows = total;
        Ok(())
    }

    /// `H` from one batch.
    ///
    /// # Errors
    /// As [`Hessian::add`].
    pub fn from_activations(x: &[f32], rows: usize, cols: usize) -> Result<Self> {
        let mut h = Hessian::new(cols);
        h.add(x, rows)?;
        Ok(h)
    }

    /// A Hessian given directly (row-major, symmetric).
    ///
    /// # Errors
    /// [`Error::DimensionMismatch`] when `h` is not `cols × cols`.
    pub fn from_matrix(h: Vec<f64>, cols: usize) -> Result<Self> {
        if h.len() != cols * cols {
            return Err(Error::dim("Hessian", cols * cols, h.len()));
        }
        Ok(Hessian { cols, h, rows: 1 })
    }

    /// Input features.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Calibration rows accumulated.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// The diagonal.
    pub fn diag(&self) -> Vec<f64> {
        (0..self.cols).map(|i| self.h[i * self.cols + i]).collect()
    }
}

/// GPTQ parameters.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct GptqConfig {
    /// Bits (2, 3, 4 or 8).
    pub bits: u32,
    /// Columns per scale group (`None` = one scale per row). Default 128.
    pub group: Option<usize>,
    /// Quantize columns by decreasing `H_ii` (and keep the permutation).
    pub act_order: bool,
    /// Dampening fraction λ / mean(diag H). Default 0.01.
    pub damp: f64,
    /// Lazy-update block width. Default 128.
    pub block: usize,
}

impl Default for GptqConfig {
    fn default() -> Self {
        GptqConfig {
            bits: 4,
            group: Some(128),
            act_order: false,
            damp: 0.01,
            block: 128,
        }
    }
}

impl GptqConfig {
    /// The round-to-nearest configuration with the same bits and groups.
    pub fn rtn(&self) -> LinearConfig {
        LinearConfig {
            bits: self.bits,
            symmetric: false,
            granularity: match self.group {
                Some(g) => Granularity::Group(g),
                None => Granularity::Row,
            },
            rounding: Rounding::Nearest,
            clip: Clip::MinMax,
        }
    }
}

/// A GPTQ-quantized matrix: a [`LinearTensor`] over the (possibly permuted) columns and
/// the permutation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GptqTensor {
    /// Codes, scales and zero points, columns in quantization order.
    pub linear: LinearTensor,
    /// With act-order: `perm[k]` is the original column of stored column `k`.
    pub perm: Option<Vec<u32>>,
}

impl GptqTensor {
    /// The reconstruction in the original column order.
    pub fn dequantize(&self) -> Vec<f32> {
        let y = self.linear.dequantize();
        match &self.perm {
            None => y,
            Some(p) => {
                let cols = self.linear.cols;
                let mut out = vec![0f32; y.len()];
                out.par_chunks_mut(cols)
                    .zip(y.par_chunks(cols))
                    .for_each(|(o, r)| {
                        for (k, &c) in p.iter().enumerate() {
                            o[c as usize] = r[k];
                        }
                    });
                out
            }
        }
    }

    /// Stored bits: the linear tensor plus 32 bits per column of permutation.
    pub fn storage_bits(&self) -> u64 {
        self.linear.storage_bits() + self.perm.as_ref().map_or(0, |p| 32 * p.len() as u64)
    }
}

/// What GPTQ's column loop asks of a quantizer (plain GPTQ and SpQR implement it).
pub(crate) trait ColumnQuantizer {
    /// Columns per group: [`ColumnQuantizer::start_group`] is called at multiples of it.
    fn group_len(&self) -> usize;
    /// Computes the group's parameters from the current weights (column-major `wt`,
    /// columns `c..c + group_len`).
    fn start_group(&mut self, c: usize, wt: &[f32], rows: usize);
    /// Quantizes column `c` in place (`col` becomes its reconstruction) and writes its
    /// codes; `d` is `U_cc`, the column's inverse-Hessian Cholesky diagonal.
    fn quantize(&mut self, c: usize, col: &mut [f32], d: f32, codes: &mut [u8]);
}

/// The GPTQ procedure on a row-major `rows × cols` matrix: Hessian preparation (dead
/// columns, act-order, dampening, Cholesky of the inverse), then the blocked column loop.
/// Returns the column-major codes and the permutation.
pub(crate) fn run_gptq(
    w: &[f32],
    rows: usize,
    cols: usize,
    h: &Hessian,
    (damp, block, act_order): (f64, usize, bool),
    q: &mut dyn ColumnQuantizer,
) -> Result<(Vec<u8>, Option<Vec<u32>>)> {
    if w.len() != rows * cols || w.is_empty() {
        return Err(Error::dim("GPTQ weights", rows * cols, w.len()));
    }
    if h.cols != cols {
        return Err(Error::dim("GPTQ Hessian (in_features)", cols, h.cols));
    }
    if block == 0 || !(damp >= 0.0 && damp.is_finite()) {
        return Err(Error::param(
            "gptq",
            "block must be positive and damp a finite value ≥ 0",
        ));
    }
    check_finite(w, cols, "GPTQ weights")?;
    // Column-major working copy (column c contiguous over rows) and the Hessian.
    let mut hm = Mat::<f64>::from_fn(cols, cols, |i, j| h.h[i * cols + j]);
    let mut wt = vec![0f32; cols * rows];
    for (r, row) in w.chunks(cols).enumerate() {
        for (c, &v) in row.iter().enumerate() {
            wt[c * rows + r] = v;
        }
    }
    // Dead inputs: no signal, so the weight is irrelevant; zero it and make H invertible.
    for c in 0..cols {
        if hm[(c, c)] == 0.0 {
            hm[(c, c)] = 1.0;
            wt[c * rows..(c + 1) * rows].fill(0.0);
        }
    }
    let perm: Option<Vec<u32>> = act_order.then(|| {
        let mut p: Vec<u32> = (0..cols as u32).collect();
        p.sort_by(|&a, &b| hm[(b as usize, b as usize)].total_cmp(&hm[(a as usize, a as usize)]));
        p
    });
    if let Some(p) = &perm {
        let old = hm.clone();
        hm = Mat::from_fn(cols, cols, |i, j| old[(p[i] as usize, p[j] as usize)]);
        let src = wt.clone();
        for (k, &c) in p.iter().enumerate() {
            wt[k * rows..(k + 1) * rows]
                .copy_from_slice(&src[c as usize * rows..(c as usize + 1) * rows]);
        }
    }
    let mean_diag = (0..cols).map(|i| hm[(i, i)]).sum::<f64>() / cols as f64;
    for i in 0..cols {
        hm[(i, i)] += damp * mean_diag;
    }
    let numerical = |what: &str| Error::Numerical {
        context: "GPTQ".into(),
        message: format!(
            "{what} is not positive definite; raise the dampening (damp = {damp}) or use more calibration rows"
        ),
    };
    let hinv = hm
        .llt(Side::Lower)
        .map_err(|_| numerical("H + λI"))?
        .inverse();
    let l = hinv.llt(Side::Lower).map_err(|_| numerical("H⁻¹"))?;
    let lref = l.L();
    // U = Lᵀ, row-major: u[i][j] = L[j][i] for j ≥ i.
    let mut u = vec![0f32; cols * cols];
    for i in 0..cols {
        for j in i..cols {
            u[i * cols + j] = lref[(j, i)] as f32;
        }
    }
    let g = q.group_len();
    let mut codes_cm = vec![0u8; cols * rows];
    let mut err_block = vec![0f32; block.min(cols) * rows];
    let mut orig = vec![0f32; rows];
    let mut i1 = 0;
    while i1 < cols {
        let i2 = (i1 + block).min(cols);
        for c in i1..i2 {
            if c % g == 0 {
                q.start_group(c, &wt, rows);
            }
            let d = u[c * cols + c];
            let (done, rest) = wt.split_at_mut((c + 1) * rows);
            let col = &mut done[c * rows..];
            orig.copy_from_slice(col);
            q.quantize(c, col, d, &mut codes_cm[c * rows..(c + 1) * rows]);
            let eb = &mut err_block[(c - i1) * rows..(c - i1 + 1) * rows];
            for ((e, &w0), &qv) in eb.iter_mut().zip(&orig).zip(col.iter()) {
                *e = (w0 - qv) / d;
            }
            // Intra-block update of the block's later columns.
            let eb = &err_block[(c - i1) * rows..(c - i1 + 1) * rows];
            rest[..(i2 - c - 1) * rows]
                .par_chunks_mut(rows)
                .enumerate()
                .for_each(|(k, later)| {
                    let f = u[c * cols + c + 1 + k];
                    if f != 0.0 {
                        for (x, &e) in later.iter_mut().zip(eb) {
                            *x -= f * e;
                        }
                    }
                });
        }
        // Lazy batch update: W[:, i2..] −= Err_block · U[i1..i2, i2..] (column-major: the
        // (cols − i2) × rows block minus U_blockᵀ · E).
        if i2 < cols {
            let b = i2 - i1;
            let ub = MatRef::from_row_major_slice(&u, cols, cols).submatrix(i1, i2, b, cols - i2);
            let e = MatRef::from_row_major_slice(&err_block[..b * rows], b, rows);
            let dst = MatMut::from_row_major_slice_mut(&mut wt[i2 * rows..], cols - i2, rows);
            matmul(dst, Accum::Add, ub.transpose(), e, -1.0f32, Par::rayon(0));
        }
        i1 = i2;
    }
    Ok((codes_cm, perm))
}

/// Row-major codes packed per row from column-major codes.
pub(crate) fn pack_column_major(codes_cm: &[u8], rows: usize, cols: usize, bits: u32) -> Vec<u8> {
    let rb = packed_len(cols, bits);
    let mut codes = vec![0u8; rows * rb];
    codes.par_chunks_mut(rb).enumerate().for_each_init(
        || vec![0u8; cols],
        |buf, (r, out)| {
            for (c, b) in buf.iter_mut().enumerate() {
                *b = codes_cm[c * rows + r];
            }
            pack_row(buf, bits, out);
        },
    );
    codes
}

/// Plain GPTQ's quantizer: asymmetric min/max per row or per group.
struct LinearColumns {
    lin: LinearConfig,
    g: usize,
    ngroups: usize,
    params: Vec<GroupParams>,
    steps: Vec<f32>,
    zeros: Vec<u8>,
}

impl ColumnQuantizer for LinearColumns {
    fn group_len(&self) -> usize {
        self.g
    }

    fn start_group(&mut self, c: usize, wt: &[f32], rows: usize) {
        let (lo, hi) = group_min_max(wt, rows, c, self.g);
        for r in 0..rows {
            self.params[r] = GroupParams::new(&self.lin, lo[r], hi[r]);
            let gi = r * self.ngroups + c / self.g;
            self.steps[gi] = self.params[r].step;
            self.zeros[gi] = self.params[r].zero as u8;
        }
    }

    fn quantize(&mut self, _c: usize, col: &mut [f32], _d: f32, codes: &mut [u8]) {
        for ((x, code), p) in col.iter_mut().zip(codes.iter_mut()).zip(&self.params) {
            *code = p.code(&self.lin, *x, Rounding::Nearest, 0.0);
            *x = p.decode(&self.lin, *code);
        }
    }
}

/// Per-row min and max over columns `c..c + g` of column-major `wt`.
pub(crate) fn group_min_max(wt: &[f32], rows: usize, c: usize, g: usize) -> (Vec<f32>, Vec<f32>) {
    let (mut lo, mut hi) = (vec![f32::INFINITY; rows], vec![f32::NEG_INFINITY; rows]);
    for cc in c..c + g {
        for (r, &v) in wt[cc * rows..(cc + 1) * rows].iter().enumerate() {
            lo[r] = lo[r].min(v);
            hi[r] = hi[r].max(v);
        }
    }
    (lo, hi)
}

/// Quantizes `w` (row-major `rows × cols`, rows = output features) with GPTQ.
///
/// # Errors
/// [`Error::InvalidParameter`] for bits outside 2..=8 or a group size that does not fit
/// `cols`; [`Error::DimensionMismatch`] when `w` or the Hessian does not match `rows ×
/// cols`; [`Error::NonFinite`] for a NaN or infinite weight; [`Error::Numerical`] when the
/// dampened Hessian is not positive definite.
pub fn gptq(
    w: &[f32],
    rows: usize,
    cols: usize,
    h: &Hessian,
    cfg: &GptqConfig,
) -> Result<GptqTensor> {
    if !matches!(cfg.bits, 2..=8) {
        return Err(Error::param(
            "bits",
            format!("GPTQ takes 2..=8 bits, got {}", cfg.bits),
        ));
    }
    let lin = cfg.rtn();
    lin.validate(cols)?;
    let (g, ngroups) = match cfg.group {
        Some(g) => (g, cols / g),
        None => (cols, 1),
    };
    let mut q = LinearColumns {
        lin,
        g,
        ngroups,
        params: vec![
            GroupParams {
                step: 1.0,
                inv: 1.0,
                zero: 0.0
            };
            rows
        ],
        steps: vec![0f32; rows * ngroups],
        zeros: vec![0u8; rows * ngroups],
    };
    let (codes_cm, perm) = run_gptq(
        w,
        rows,
        cols,
        h,
        (cfg.damp, cfg.block, cfg.act_order),
        &mut q,
    )?;
    Ok(GptqTensor {
        linear: LinearTensor {
            rows,
            cols,
            config: lin,
            steps: q.steps,
            zeros: q.zeros,
            codes: pack_column_major(&codes_cm, rows, cols, cfg.bits),
        },
        perm,
    })
}

/// ‖X Wᵀ − X Ŵᵀ‖_F / ‖X Wᵀ‖_F for activations `x` (`n × cols`) and weights `rows × cols`.
pub fn output_error(x: &[f32], w: &[f32], w_hat: &[f32], cols: usize) -> f64 {
    let y = matmul_xwt(x, w, cols);
    let yh = matmul_xwt(x, w_hat, cols);
    crate::model::report::errors(&y, &yh).0
}

/// `X Wᵀ` for row-major `x` (`n × cols`) and `w` (`m × cols`), in parallel row blocks.
pub fn matmul_xwt(x: &[f32], w: &[f32], cols: usize) -> Vec<f32> {
    let m = w.len() / cols;
    let mut y = vec![0f32; x.len() / cols * m];
    y.par_chunks_mut(64 * m)
        .zip(x.par_chunks(64 * cols))
        .for_each(|(yb, xb)| crate::linalg::gemm_abt(xb, w, cols, yb));
    y
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::synthetic::{WeightKind, correlated_activations, matrix};

    #[test]
    fn diagonal_hessian_reduces_to_rtn_exactly() {
        let (rows, cols) = (32, 256);
        let w = matrix(WeightKind::StudentT, rows, cols, 0.02, 1);
        let mut hd = vec![0f64; cols * cols];
        for i in 0..cols {
            hd[i * cols + i] = 0.5 + (i % 7) as f64;
        }
        let h = Hessian::from_matrix(hd, cols).unwrap();
        for group in [None, Some(64), Some(128)] {
            for bits in [2, 3, 4, 8] {
                let cfg = GptqConfig {
                    bits,
                    group,
                    ..GptqConfig::default()
                };
                let g = gptq(&w, rows, cols, &h, &cfg).unwrap();
                let r = LinearTensor::quantize(&w, rows, cols, &cfg.rtn()).unwrap();
                assert_eq!(g.linear, r, "bits {bits} group {group:?}");
                assert_eq!(g.dequantize(), r.dequantize());
            }
        }
    }

    #[test]
    fn beats_rtn_on_correlated_inputs_at_3_and_4_bits() {
        let (rows, cols, n) = (64, 256, 2048);
        let w = matrix(WeightKind::StudentT, rows, cols, 0.02, 3);
        let x = correlated_activations(n, cols, 4);
        let (calib, test) = x.split_at(n * 3 / 4 * cols);
        let h = Hessian::from_activations(calib, n * 3 / 4, cols).unwrap();
        for bits in [3u32, 4] {
            for act_order in [false, true] {
                let cfg = GptqConfig {
                    bits,
                    act_order,
                    group: Some(64),
                    ..GptqConfig::default()
                };
                let g = gptq(&w, rows, cols, &h, &cfg).unwrap().dequantize();
                let r = LinearTensor::quantize(&w, rows, cols, &cfg.rtn())
                    .unwrap()
                    .dequantize();
                let (eg, er) = (
                    output_error(test, &w, &g, cols),
                    output_error(test, &w, &r, cols),
                );
                assert!(
                    eg < 0.8 * er,
                    "bits {bits} act_order {act_order}: gptq {eg} vs rtn {er}"
                );
            }
        }
    }

    #[test]
    fn dead_columns_and_bad_input() {
        let (rows, cols, n) = (8, 64, 256);
        let w = matrix(WeightKind::Gaussian, rows, cols, 0.02, 5);
        let mut x = matrix(WeightKind::Gaussian, n, cols, 1.0, 6);
        for row in x.chunks_mut(cols) {
            row[5] = 0.0;
        }
        let h = Hessian::from_activations(&x, n, cols).unwrap();
        let g = gptq(
            &w,
            rows,
            cols,
            &h,
            &GptqConfig {
                group: Some(32),
                act_order: true,
                ..GptqConfig::default()
            },
        )
        .unwrap();
        let y = g.dequantize();
        assert!(
            (0..rows).all(|r| y[r * cols + 5] == 0.0),
            "dead column zeroed"
        );
        assert!(gptq(&w, rows, cols, &Hessian::new(32), &GptqConfig::default()).is_err());
        assert!(
            gptq(
                &w,
                rows,
                cols,
                &h,
                &GptqConfig {
                    bits: 9,
                    ..GptqConfig::default()
                }
            )
            .is_err()
        );
        assert!(
            gptq(
                &w,
                rows,
                cols,
                &h,
                &GptqConfig {
                    group: Some(48),
                    ..GptqConfig::default()
                }
            )
            .is_err()
        );
        let mut bad = x.clone();
        bad[10] = f32::NAN;
        assert!(Hessian::from_activations(&bad, n, cols).is_err());
    }
}
