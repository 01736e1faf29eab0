//! Quantize weight matrices with every scheme and report time, bits per weight and error.
//!
//! `cargo run --release --features examples --example quantize_weights` — a 4096 × 4096 f32 matrix per scheme
//! (the throughput figure: M weights/s with all threads), then a table of bits per weight
//! and relative Frobenius error on real-world-shaped matrices: Gaussian, heavy-tailed
//! (Student-t, ν = 4) and Gaussian with outlier input columns (LLM.int8's outlier
//! features). `-- --size N` changes the timing matrix to N × N.

use std::time::Instant;

use vecquant::model::io::Tensor;
use vecquant::model::synthetic::{WeightKind, matrix};
use vecquant::model::{GranularityKind, Scheme, SchemeOptions, quantize_tensor};

fn scheme(name: &str, bits: Option<u32>, gran: Option<GranularityKind>) -> Scheme {
    let o = SchemeOptions {
        bits,
        granularity: gran,
        ..SchemeOptions::default()
    };
    Scheme::parse(name, &o).expect("known scheme")
}

fn main() -> vecquant::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let size = args
        .iter()
        .position(|a| a == "--size")
        .and_then(|i| args.get(i + 1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(4096usize);
    let schemes: Vec<(&str, Scheme)> = vec![
        ("absmax int8 row", scheme("absmax", Some(8), None)),
        ("absmax int4 g128", scheme("absmax", Some(4), None)),
        ("zeropoint int4 g128", scheme("zeropoint", Some(4), None)),
        ("zeropoint int3 g128", scheme("zeropoint", Some(3), None)),
        ("zeropoint int2 g128", scheme("zeropoint", Some(2), None)),
        ("nf4", scheme("nf4", None, None)),
        ("nf4-dq", scheme("nf4-dq", None, None)),
        ("fp4", scheme("fp4", None, None)),
        ("fp8-e4m3 row", scheme("fp8-e4m3", None, None)),
        ("fp8-e5m2 row", scheme("fp8-e5m2", None, None)),
        ("f16", scheme("f16", None, None)),
        ("bf16", scheme("bf16", None, None)),
        ("kmeans 4-bit tensor", scheme("kmeans", Some(4), None)),
        (
            "kmeans 3-bit row",
            scheme("kmeans", Some(3), Some(GranularityKind::Row)),
        ),
        ("q8_0", scheme("q8_0", None, None)),
        ("q4_0", scheme("q4_0", None, None)),
        ("q4_1", scheme("q4_1", None, None)),
        ("q4_k", scheme("q4_k", None, None)),
        ("q6_k", scheme("q6_k", None, None)),
    ];
    println!(
        "threads: {}  timing matrix: {size} x {size} Gaussian (std 0.02)",
        rayon::current_num_threads()
    );
    let w = Tensor::matrix(
        "w",
        size,
        size,
        matrix(WeightKind::Gaussian, size, size, 0.02, 1),
    );
    println!("| scheme | seconds | M weights/s |");
    println!("|---|---:|---:|");
    for (name, s) in &schemes {
        // Warm-up on a slice of the matrix (page faults, thread pool), then the timed run.
        let _ = quantize_tensor(&Tensor::matrix("w", 64, size, vec![0.01; 64 * size]), s)?;
        let t0 = Instant::now();
        let q = quantize_tensor(&w, s)?;
        let dt = t0.elapsed().as_secs_f64();
        std::hint::black_box(&q);
        println!(
            "| {name} | {dt:.4} | {:.0} |",
            (size * size) as f64 / dt / 1e6
        );
    }
    let shapes = [
        ("gaussian 1024x4096", WeightKind::Gaussian, 1024, 4096),
        ("student-t 1024x4096", WeightKind::StudentT, 1024, 4096),
        (
            "outlier-cols 1024x4096",
            WeightKind::OutlierColumns,
            1024,
            4096,
        ),
        (
            "outlier-cols 1536x384",
            WeightKind::OutlierColumns,
            1536,
            384,
        ),
    ];
    println!();
    print!("| scheme |");
    for (n, ..) in &shapes {
        print!(" {n}: bits/w | rel. err |");
    }
    println!();
    println!("|---|{}", "---:|---:|".repeat(shapes.len()));
    let mats: Vec<Tensor> = shapes
        .iter()
        .enumerate()
        .map(|(i, (n, k, r, c))| Tensor::matrix(n, *r, *c, matrix(*k, *r, *c, 0.02, 10 + i as u64)))
        .collect();
    for (name, s) in &schemes {
        print!("| {name} |");
        for m in &mats {
            let q = quantize_tensor(m, s)?;
            let r = q.report(m)?;
            let fb = if q.note.is_some() {
                format!(" ({})", q.scheme)
            } else {
                String::new()
            };
            print!(
                " {:.4}{fb} | {:.5} |",
                r.bits_per_weight, r.rel_weight_error
            );
        }
        println!();
    }
    Ok(())
}
