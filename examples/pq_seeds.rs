//! Spread of product-quantizer recall over training seeds: trains `PQ{M}` (4- or 8-bit)
//! with several seeds and prints, per seed and on average, the recall@10 of the exact
//! ADC ranking (what the fast-scan and 8-bit scans return) and the reconstruction MSE.
//!
//! `cargo run --release --features examples --example pq_seeds -- DATA_DIR [M] [NBITS] [SEEDS] [RUNS]`
//! (defaults: the default set, 32, 4, 8, 1; RUNS = k-means runs per sub-space).

use vecquant::data::groundtruth::exact_search;
use vecquant::data::load_dataset;
use vecquant::eval::{self, recall_at_k};
use vecquant::quant::product::{PqTraining, ProductQuantizer};
use vecquant::{Metric, VectorSet};

fn main() -> vecquant::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let arg = |i: usize, default: usize| -> usize {
        args.get(i).and_then(|s| s.parse().ok()).unwrap_or(default)
    };
    let dir = args.get(1).map_or(
        "datasets/cache/gaussian-100000x128-q1000-s42",
        String::as_str,
    );
    let (m, nbits, seeds, runs) = (arg(2, 32), arg(3, 4) as u8, arg(4, 8), arg(5, 1));
    let data = load_dataset(dir)?;
    let d = data.data.base.dim();
    let (base, queries) = (&data.data.base, &data.data.query);
    let mut recalls = Vec::new();
    let mut mses = Vec::new();
    for seed in 0..seeds as u64 {
        let opts = PqTraining {
            runs,
            ..PqTraining::default()
        };
        let pq = ProductQuantizer::train_with(
            data.data.train.as_slice(),
            d,
            m,
            nbits,
            1000 + seed,
            opts,
        )?;
        let rec = pq.decode(&pq.encode(base.as_slice())?)?;
        // Per vector (the crate's `mse` is per component).
        let mse = eval::mse(base.as_slice(), &rec) * d as f64;
        // Exact ADC ranking = exact search over the reconstructions.
        let rec = VectorSet::new(rec, d)?;
        let found = exact_search(&rec, queries, 10, Metric::L2)?;
        let recall = recall_at_k(&found, &data.gt, 10);
        println!("seed {seed}: recall@10 {recall:.4}, MSE {mse:.3}");
        recalls.push(recall);
        mses.push(mse);
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let r = mean(&recalls);
    let sd = (recalls.iter().map(|x| (x - r).powi(2)).sum::<f64>() / recalls.len() as f64).sqrt();
    println!(
        "PQ{m} ({nbits}-bit, {runs} run(s)) over {seeds} seeds: recall@10 {r:.4} ± {sd:.4}, MSE {:.3}",
        mean(&mses)
    );
    Ok(())
}
