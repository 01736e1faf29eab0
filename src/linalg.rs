//! Thin wrappers over faer's GEMM for the row-major buffers this crate uses.

use faer::linalg::matmul::matmul;
use faer::{Accum, MatMut, MatRef, Par};

/// `out[i * nb + j] = ⟨a_i, b_j⟩` for row-major `a` (`na × d`) and `b` (`nb × d`);
/// `out` is row-major `na × nb`. Single-threaded: callers parallelise over blocks.
pub fn gemm_abt(a: &[f32], b: &[f32], d: usize, out: &mut [f32]) {
    let na = a.len() / d;
    let nb = b.len() / d;
    debug_assert_eq!(out.len(), na * nb);
    if na == 0 || nb == 0 {
        return;
    }
    let lhs = MatRef::from_row_major_slice(a, na, d);
    let rhs = MatRef::from_row_major_slice(b, nb, d).transpose();
    let dst = MatMut::from_row_major_slice_mut(out, na, nb);
    matmul(dst, Accum::Replace, lhs, rhs, 1.0f32, Par::Seq);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gemm_matches_loops() {
        let d = 5;
        let a: Vec<f32> = (0..3 * d).map(|i| (i as f32 * 0.37).sin()).collect();
        let b: Vec<f32> = (0..4 * d).map(|i| (i as f32 * 0.11).cos()).collect();
        let mut out = vec![0.0; 12];
        gemm_abt(&a, &b, d, &mut out);
        for i in 0..3 {
            for j in 0..4 {
                let r: f32 = (0..d).map(|t| a[i * d + t] * b[j * d + t]).sum();
                assert!((out[i * 4 + j] - r).abs() < 1e-5);
            }
        }
    }
}
