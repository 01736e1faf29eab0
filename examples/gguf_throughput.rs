//! GGUF block encode / decode throughput on a 4096 × 4096 N(0, 1) matrix, in millions of
//! weights per second (best of three encodes, one decode), for Q4_0, Q8_0, Q4_K and Q6_K.
//!
//! Run: `cargo run --release --features examples --example gguf_throughput` (timing belongs in examples and
//! benchmarks, never in tests; `tests/gguf_golden.rs` checks the same calls' results).

use std::time::Instant;

use vecquant::Result;
use vecquant::model::gguf::{GgmlType, dequantize, quantize};

fn main() -> Result<()> {
    let n = 4096;
    let x = vecquant::data::generate::gaussian(n, n, 0.0, 1.0, 5)?.into_vec();
    for ty in [
        GgmlType::Q4_0,
        GgmlType::Q8_0,
        GgmlType::Q4_K,
        GgmlType::Q6_K,
    ] {
        let _ = quantize(ty, 64, n, &x[..64 * n])?; // warm-up
        let mut best = f64::INFINITY;
        let mut bytes = Vec::new();
        for _ in 0..3 {
            let t = Instant::now();
            bytes = quantize(ty, n, n, &x)?;
            best = best.min(t.elapsed().as_secs_f64());
        }
        let t = Instant::now();
        let y = dequantize(ty, n, n, &bytes)?;
        let dt = t.elapsed().as_secs_f64();
        assert_eq!(y.len(), n * n);
        println!(
            "{ty}: quantize {:.0} M weights/s, dequantize {:.0} M weights/s ({} threads)",
            (n * n) as f64 / best / 1e6,
            (n * n) as f64 / dt / 1e6,
            rayon::current_num_threads()
        );
    }
    Ok(())
}
