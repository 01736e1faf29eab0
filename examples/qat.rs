//! Quantization-aware training vs post-training quantization at 4 bits (seeds 001, 004).
//!
//! `cargo run --release --features examples --example qat`
//!
//! A teacher MLP (32 → 64 → 8, ReLU) labels correlated Gaussian inputs. A student of the
//! same shape is trained in f32, then
//! - **PTQ**: its weights are rounded to 4-bit symmetric per-row absmax;
//! - **QAT**: training continues from the f32 weights with fake-quant nodes on both weight
//!   matrices (forward: quantize → dequantize with the current per-row scale; backward:
//!   the straight-through estimator, `model::activation::fake_quant_grad`), then the
//!   weights are rounded the same way.
//!
//! Both are evaluated with 4-bit weights on held-out data; the example prints the test MSE
//! of f32, PTQ and QAT and exits non-zero if QAT does not beat PTQ.

use rand::SeedableRng;
use rand_distr::{Distribution, StandardNormal};
use rand_xoshiro::Xoshiro256PlusPlus;
use vecquant::model::activation::{fake_quant, fake_quant_grad};

/// The generator vecquant seeds its own routines with (portable across `rand` releases).
fn seeded(seed: u64) -> Xoshiro256PlusPlus {
    Xoshiro256PlusPlus::seed_from_u64(seed)
}

const IN: usize = 32;
const HID: usize = 64;
const OUT: usize = 8;
const QMAX: f32 = 7.0; // 4-bit symmetric: codes in [-7, 7]
const QAT_STEPS: usize = 6000;
const QAT_LR: f32 = 0.005;

struct Mlp {
    w1: Vec<f32>, // HID × IN
    w2: Vec<f32>, // OUT × HID
}

fn gaussian(n: usize, std: f32, seed: u64) -> Vec<f32> {
    let mut rng = seeded(seed);
    (0..n)
        .map(|_| {
            let z: f32 = StandardNormal.sample(&mut rng);
            std * z
        })
        .collect()
}

/// Per-row absmax step of a row-major matrix.
fn steps(w: &[f32], cols: usize) -> Vec<f32> {
    w.chunks(cols)
        .map(|r| r.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-8) / QMAX)
        .collect()
}

/// Fake-quantized copy of a matrix (per-row absmax, 4 bits).
fn quantized(w: &[f32], cols: usize) -> Vec<f32> {
    let s = steps(w, cols);
    w.iter()
        .enumerate()
        .map(|(i, &v)| fake_quant(v, s[i / cols], 0.0, -QMAX, QMAX))
        .collect()
}

fn forward(w1: &[f32], w2: &[f32], x: &[f32]) -> (Vec<f32>, Vec<f32>) {
    let h: Vec<f32> = (0..HID)
        .map(|j| (0..IN).map(|i| w1[j * IN + i] * x[i]).sum::<f32>().max(0.0))
        .collect();
    let y = (0..OUT)
        .map(|o| (0..HID).map(|j| w2[o * HID + j] * h[j]).sum())
        .collect();
    (h, y)
}

fn mse(m: &Mlp, xs: &[f32], ys: &[f32], quant: bool) -> f64 {
    let (w1, w2) = if quant {
        (quantized(&m.w1, IN), quantized(&m.w2, HID))
    } else {
        (m.w1.clone(), m.w2.clone())
    };
    let n = xs.len() / IN;
    let mut s = 0f64;
    for k in 0..n {
        let (_, y) = forward(&w1, &w2, &xs[k * IN..(k + 1) * IN]);
        for o in 0..OUT {
            s += ((y[o] - ys[k * OUT + o]) as f64).powi(2);
        }
    }
    s / (n * OUT) as f64
}

/// `steps` of minibatch SGD with momentum; with `qat`, the forward pass uses
/// fake-quantized weights and the gradient passes through the STE.
fn train(m: &mut Mlp, xs: &[f32], ys: &[f32], steps_n: usize, lr: f32, qat: bool, seed: u64) {
    let n = xs.len() / IN;
    let batch = 128;
    let mut rng = seeded(seed);
    let (mut v1, mut v2) = (vec![0f32; HID * IN], vec![0f32; OUT * HID]);
    for step in 0..steps_n {
        // Cosine learning-rate decay: the last steps settle instead of jittering codes.
        let lr = lr * 0.5 * (1.0 + (std::f32::consts::PI * step as f32 / steps_n as f32).cos());
        let (s1, s2) = (steps(&m.w1, IN), steps(&m.w2, HID));
        let (w1, w2) = if qat {
            (quantized(&m.w1, IN), quantized(&m.w2, HID))
        } else {
            (m.w1.clone(), m.w2.clone())
        };
        let (mut g1, mut g2) = (vec![0f32; HID * IN], vec![0f32; OUT * HID]);
        for _ in 0..batch {
            let k = (rand::RngExt::random::<u64>(&mut rng) % n as u64) as usize;
            let x = &xs[k * IN..(k + 1) * IN];
            let (h, y) = forward(&w1, &w2, x);
            let dy: Vec<f32> = (0..OUT)
                .map(|o| 2.0 * (y[o] - ys[k * OUT + o]) / OUT as f32)
                .collect();
            let mut dh = vec![0f32; HID];
            for o in 0..OUT {
                for j in 0..HID {
                    g2[o * HID + j] += dy[o] * h[j];
                    dh[j] += dy[o] * w2[o * HID + j];
                }
            }
            for j in 0..HID {
                if h[j] > 0.0 {
                    for i in 0..IN {
                        g1[j * IN + i] += dh[j] * x[i];
                    }
                }
            }
        }
        // The STE: gradients w.r.t. the fake-quantized weights pass to the latent weights
        // where they were not clipped.
        if qat {
            for (i, g) in g1.iter_mut().enumerate() {
                *g = fake_quant_grad(m.w1[i], *g, s1[i / IN], 0.0, -QMAX, QMAX);
            }
            for (i, g) in g2.iter_mut().enumerate() {
                *g = fake_quant_grad(m.w2[i], *g, s2[i / HID], 0.0, -QMAX, QMAX);
            }
        }
        for (w, (v, g)) in m.w1.iter_mut().zip(v1.iter_mut().zip(&g1)) {
            *v = 0.9 * *v + g / batch as f32;
            *w -= lr * *v;
        }
        for (w, (v, g)) in m.w2.iter_mut().zip(v2.iter_mut().zip(&g2)) {
            *v = 0.9 * *v + g / batch as f32;
            *w -= lr * *v;
        }
    }
}

fn main() {
    // Teacher and correlated inputs x = z · (I + 0.5 A).
    let teacher = Mlp {
        w1: gaussian(HID * IN, (2.0 / IN as f32).sqrt(), 1),
        w2: gaussian(OUT * HID, (1.0 / HID as f32).sqrt(), 2),
    };
    let mix = gaussian(IN * IN, 0.5 / (IN as f32).sqrt(), 3);
    let sample = |n: usize, seed: u64| {
        let z = gaussian(n * IN, 1.0, seed);
        let mut x = vec![0f32; n * IN];
        for k in 0..n {
            for i in 0..IN {
                x[k * IN + i] = z[k * IN + i]
                    + (0..IN)
                        .map(|t| z[k * IN + t] * mix[t * IN + i])
                        .sum::<f32>();
            }
        }
        let mut y = vec![0f32; n * OUT];
        for k in 0..n {
            let (_, out) = forward(&teacher.w1, &teacher.w2, &x[k * IN..(k + 1) * IN]);
            y[k * OUT..(k + 1) * OUT].copy_from_slice(&out);
        }
        (x, y)
    };
    let (xtr, ytr) = sample(8192, 10);
    let (xte, yte) = sample(2048, 11);
    let mut student = Mlp {
        w1: gaussian(HID * IN, (2.0 / IN as f32).sqrt(), 4),
        w2: gaussian(OUT * HID, (1.0 / HID as f32).sqrt(), 5),
    };
    train(&mut student, &xtr, &ytr, 6000, 0.02, false, 6);
    let f32_mse = mse(&student, &xte, &yte, false);
    let ptq = mse(&student, &xte, &yte, true);
    let mut qat = Mlp {
        w1: student.w1.clone(),
        w2: student.w2.clone(),
    };
    train(&mut qat, &xtr, &ytr, QAT_STEPS, QAT_LR, true, 7);
    let qat_mse = mse(&qat, &xte, &yte, true);
    // Control: the same extra training in f32, then PTQ — so QAT's gain is not just
    // more training.
    let mut more = Mlp {
        w1: student.w1.clone(),
        w2: student.w2.clone(),
    };
    train(&mut more, &xtr, &ytr, QAT_STEPS, QAT_LR, false, 7);
    let ptq_more = mse(&more, &xte, &yte, true);
    let ptq = ptq.min(ptq_more);
    println!("test MSE, f32 weights:             {f32_mse:.5}");
    println!(
        "test MSE, 4-bit PTQ (round-to-nearest per-row absmax), best of the f32 model and the f32 model trained {QAT_STEPS} more steps: {ptq:.5} (more steps alone: {ptq_more:.5}, f32 {:.5})",
        mse(&more, &xte, &yte, false)
    );
    println!("test MSE, 4-bit QAT (fake quant + STE, then the same rounding): {qat_mse:.5}");
    println!("QAT / PTQ = {:.3}", qat_mse / ptq);
    if qat_mse >= ptq {
        eprintln!("QAT did not beat PTQ");
        std::process::exit(1);
    }
}
