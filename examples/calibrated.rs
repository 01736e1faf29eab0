//! Calibration-based weight quantization: GPTQ timing on a 4096 × 4096 layer and a
//! method × bits/weight × held-out output error table against round-to-nearest.
//!
//! `cargo run --release --features examples --example calibrated [-- --size 4096 --rows 4096]`
//!
//! Layers are real-shaped synthetic matrices (heavy-tailed Student-t weights, weights with
//! outlier input columns) with correlated activations that have 5 % outlier channels
//! (`model::synthetic::correlated_activations`). Errors are ‖XWᵀ − XŴᵀ‖/‖XWᵀ‖ on the last
//! 10 % of the calibration rows, which the Hessian never saw.

use std::time::Instant;

use vecquant::model::gptq::{GptqConfig, Hessian, gptq};
use vecquant::model::io::Tensor;
use vecquant::model::synthetic::{WeightKind, correlated_activations, matrix};
use vecquant::model::{CalibMethod, quantize_model_calibrated, spqr::SpqrConfig};

fn arg(args: &[String], name: &str, default: usize) -> usize {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() -> vecquant::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let size = arg(&args, "--size", 4096);
    let rows = arg(&args, "--rows", 4096);
    println!("threads: {}", rayon::current_num_threads());

    // 1. GPTQ on one size × size layer with `rows` calibration rows.
    let w = matrix(WeightKind::StudentT, size, size, 0.02, 1);
    let x = correlated_activations(rows, size, 2);
    let t0 = Instant::now();
    let h = Hessian::from_activations(&x, rows, size)?;
    let th = t0.elapsed().as_secs_f64();
    let t1 = Instant::now();
    let q = gptq(&w, size, size, &h, &GptqConfig::default())?;
    let tg = t1.elapsed().as_secs_f64();
    std::hint::black_box(&q);
    println!(
        "GPTQ int4 group128, {size} x {size} layer, {rows} calibration rows: Hessian {th:.2} s + GPTQ {tg:.2} s = {:.2} s",
        th + tg
    );

    // 2. Methods on a few real-shaped layers.
    let shapes = [
        ("attn.q", WeightKind::OutlierColumns, 1024, 1024),
        ("attn.o", WeightKind::StudentT, 1024, 1024),
        ("mlp.up", WeightKind::OutlierColumns, 2048, 512),
        ("mlp.down", WeightKind::StudentT, 512, 2048),
    ];
    let n = 4096;
    let model: Vec<Tensor> = shapes
        .iter()
        .enumerate()
        .map(|(i, (name, k, r, c))| {
            Tensor::matrix(name, *r, *c, matrix(*k, *r, *c, 0.02, 10 + i as u64))
        })
        .collect();
    let calib: Vec<Tensor> = shapes
        .iter()
        .enumerate()
        .map(|(i, (name, _, _, c))| {
            Tensor::matrix(name, n, *c, correlated_activations(n, *c, 20 + i as u64))
        })
        .collect();
    let methods = [
        CalibMethod::Gptq(GptqConfig {
            bits: 4,
            ..GptqConfig::default()
        }),
        CalibMethod::Gptq(GptqConfig {
            bits: 4,
            act_order: true,
            ..GptqConfig::default()
        }),
        CalibMethod::Gptq(GptqConfig {
            bits: 3,
            ..GptqConfig::default()
        }),
        CalibMethod::Gptq(GptqConfig {
            bits: 3,
            act_order: true,
            ..GptqConfig::default()
        }),
        CalibMethod::Gptq(GptqConfig {
            bits: 2,
            group: Some(64),
            ..GptqConfig::default()
        }),
        CalibMethod::Spqr(SpqrConfig::default()),
        CalibMethod::SmoothQuant { alpha: 0.5 },
        CalibMethod::LlmInt8 { threshold: 6.0 },
    ];
    println!();
    println!(
        "| method | bits/weight | median rel. output error | round-to-nearest (same bits/groups; W8A8 / int8 for the last two) | ratio |"
    );
    println!("|---|---:|---:|---:|---:|");
    for m in &methods {
        let (_, r) = quantize_model_calibrated(&model, m, &calib, |_, _, _| {})?;
        let e = median(
            r.tensors
                .iter()
                .filter_map(|t| t.rel_output_error)
                .collect(),
        );
        let b = median(
            r.tensors
                .iter()
                .filter_map(|t| t.rtn_rel_output_error)
                .collect(),
        );
        println!(
            "| {} | {:.4} | {e:.5} | {b:.5} | {:.2} |",
            m.label(),
            r.total.bits_per_weight,
            e / b
        );
    }
    Ok(())
}
