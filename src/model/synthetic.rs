//! Seeded synthetic weights with the shapes and statistics of real models, for tests,
//! benchmarks and `vecquant gen weights`.
//!
//! Trained transformer weights are roughly Gaussian with heavier tails, and a few input
//! features (columns) carry much larger magnitudes — the "outlier features" of LLM.int8
//! (seed 003). [`WeightKind`] produces each of these.

use rand_distr::{Distribution, StandardNormal};
use rayon::prelude::*;

use crate::model::io::{Tensor, TensorData};
use crate::rng::{RngExt, stream};

/// Statistical shape of a synthetic weight matrix.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum WeightKind {
    /// N(0, σ²).
    Gaussian,
    /// Student-t with ν = 4 (finite variance, heavy tails), scaled to σ.
    StudentT,
    /// Gaussian with 0.5 % of the columns (input features) scaled by 20.
    OutlierColumns,
}

/// A row-major `rows × cols` matrix with standard deviation `std`.
pub fn matrix(kind: WeightKind, rows: usize, cols: usize, std: f32, seed: u64) -> Vec<f32> {
    let mut out = vec![0f32; rows * cols];
    let outlier_cols: Vec<bool> = {
        let mut rng = stream(seed, u64::MAX);
        (0..cols).map(|_| rng.random::<f32>() < 0.005).collect()
    };
    out.par_chunks_mut(cols).enumerate().for_each(|(r, row)| {
        let mut rng = stream(seed, r as u64);
        for (j, v) in row.iter_mut().enumerate() {
            let z: f32 = StandardNormal.sample(&mut rng);
            *v = match kind {
                WeightKind::Gaussian => std * z,
                WeightKind::StudentT => {
                    // t_4 = Z / sqrt(χ²_4 / 4); Var = 2, so divide by √2.
                    let chi: f32 = (0..4)
                        .map(|_| {
                            let g: f32 = StandardNormal.sample(&mut rng);
                            g * g
                        })
                        .sum();
                    std * z / (chi / 4.0).sqrt() / std::f32::consts::SQRT_2
                }
                WeightKind::OutlierColumns => {
                    if outlier_cols[j] {
                        20.0 * std * z
                    } else {
                        std * z
                    }
                }
            };
        }
    });
    out
}

/// Calibration-like activations (`n × cols`): `X = Z·(I + A)` with Gaussian `Z` and a
/// random mixing matrix `A` (correlated input features), and 5 % of the channels scaled
/// by 8 (outlier features) — the structure under which GPTQ's error feedback pays.
pub fn correlated_activations(n: usize, cols: usize, seed: u64) -> Vec<f32> {
    let z = matrix(WeightKind::Gaussian, n, cols, 1.0, seed);
    let a = matrix(
        WeightKind::Gaussian,
        cols,
        cols,
        (1.0 / cols as f32).sqrt(),
        seed.wrapping_add(1),
    );
    // mixᵀ rows for gemm_abt: mix = I + A, so mixᵀ[j][i] = A[i][j] + δ_ij.
    let mut mix_t = vec![0f32; cols * cols];
    for i in 0..cols {
        for j in 0..cols {
            mix_t[j * cols + i] = a[i * cols + j] + if i == j { 1.0 } else { 0.0 };
        }
    }
    let mut rng = stream(seed, u64::MAX - 1);
    let scale: Vec<f32> = (0..cols)
        .map(|_| if rng.random::<f32>() < 0.05 { 8.0 } else { 1.0 })
        .collect();
    let mut x = vec![0f32; n * cols];
    x.par_chunks_mut(64 * cols)
        .zip(z.par_chunks(64 * cols))
        .for_each(|(xb, zb)| crate::linalg::gemm_abt(zb, &mix_t, cols, xb));
    for row in x.chunks_mut(cols) {
        for (v, s) in row.iter_mut().zip(&scale) {
            *v *= s;
        }
    }
    x
}

/// A small transformer-shaped model: token embedding, per layer the attention
/// projections (q, k, v, o), the MLP (up `4h × h`, down `h × 4h`) with biases and layer
/// norms, and an `I64` position-id buffer. Weight statistics alternate between the three
/// [`WeightKind`]s so a report shows each.
pub fn transformer(layers: usize, hidden: usize, vocab: usize, seed: u64) -> Vec<Tensor> {
    let std = 0.02f32;
    let mut out = Vec::new();
    let mut s = seed;
    let mut next = || {
        s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
        s
    };
    out.push(Tensor::matrix(
        "embed_tokens.weight",
        vocab,
        hidden,
        matrix(WeightKind::Gaussian, vocab, hidden, std, next()),
    ));
    let vector = |name: String, v: Vec<f32>| Tensor {
        name,
        shape: vec![v.len()],
        dtype: "F32".into(),
        source_bytes: v.len() * 4,
        data: TensorData::Float(v),
    };
    for l in 0..layers {
        let p = format!("layers.{l}");
        for (i, proj) in ["q_proj", "k_proj", "v_proj", "o_proj"].iter().enumerate() {
            let kind = if i == 3 {
                WeightKind::StudentT
            } else {
                WeightKind::OutlierColumns
            };
            out.push(Tensor::matrix(
                &format!("{p}.self_attn.{proj}.weight"),
                hidden,
                hidden,
                matrix(kind, hidden, hidden, std, next()),
            ));
        }
        out.push(Tensor::matrix(
            &format!("{p}.mlp.up_proj.weight"),
            4 * hidden,
            hidden,
            matrix(WeightKind::OutlierColumns, 4 * hidden, hidden, std, next()),
        ));
        out.push(vector(
            format!("{p}.mlp.up_proj.bias"),
            matrix(WeightKind::Gaussian, 1, 4 * hidden, 0.01, next()),
        ));
        out.push(Tensor::matrix(
            &format!("{p}.mlp.down_proj.weight"),
            hidden,
            4 * hidden,
            matrix(WeightKind::StudentT, hidden, 4 * hidden, std, next()),
        ));
        out.push(vector(
            format!("{p}.input_layernorm.weight"),
            vec![1.0; hidden],
        ));
    }
    let ids: Vec<u8> = (0..64i64).flat_map(|i| i.to_le_bytes()).collect();
    out.push(Tensor {
        name: "position_ids".into(),
        shape: vec![64],
        dtype: "I64".into(),
        source_bytes: ids.len(),
        data: TensorData::Raw(ids),
    });
    out
}

/// Calibration activations for every 2-D floating tensor of `model`: a tensor with the
/// same name, `rows × in_features`, from [`correlated_activations`].
pub fn calibration(model: &[Tensor], rows: usize, seed: u64) -> Vec<Tensor> {
    model
        .iter()
        .enumerate()
        .filter(|(_, t)| t.shape.len() == 2 && matches!(t.data, TensorData::Float(_)))
        .map(|(i, t)| {
            let cols = t.shape[1];
            Tensor::matrix(
                &t.name,
                rows,
                cols,
                correlated_activations(rows, cols, seed.wrapping_add(1000 + i as u64)),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statistics_and_determinism() {
        let g = matrix(WeightKind::StudentT, 256, 256, 0.02, 1);
        assert_eq!(g, matrix(WeightKind::StudentT, 256, 256, 0.02, 1));
        let var = g.iter().map(|v| (*v as f64).powi(2)).sum::<f64>() / g.len() as f64;
        assert!((var.sqrt() - 0.02).abs() < 0.002, "std {}", var.sqrt());
        // Heavy tails: kurtosis of t_4 is infinite in theory, large in a sample.
        let k = g.iter().map(|v| (*v as f64).powi(4)).sum::<f64>() / g.len() as f64 / (var * var);
        assert!(k > 4.5, "kurtosis {k}");
        let o = matrix(WeightKind::OutlierColumns, 64, 2048, 0.02, 2);
        let colmax: Vec<f32> = (0..2048)
            .map(|j| (0..64).map(|r| o[r * 2048 + j].abs()).fold(0.0, f32::max))
            .collect();
        assert!(colmax.iter().filter(|&&m| m > 0.2).count() >= 3);
        let m = transformer(2, 64, 100, 3);
        assert_eq!(m.len(), 1 + 2 * 8 + 1);
        assert_eq!(m[0].shape, vec![100, 64]);
    }
}
