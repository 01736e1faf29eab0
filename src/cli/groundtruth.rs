//! `vecquant groundtruth`: exact top-k by blocked GEMM, written as `.ivecs`.

use std::path::PathBuf;
use std::time::Instant;

use clap::Args;
use vecquant::data::{read_vectors, write_exact_ground_truth};
use vecquant::{Metric, Result};

use super::{paths, spinner};

#[derive(Args)]
pub struct GroundtruthArgs {
    /// Base vectors (.fvecs/.bvecs/.npy).
    #[arg(long)]
    base: PathBuf,
    /// Query vectors.
    #[arg(long)]
    queries: PathBuf,
    /// Neighbours per query.
    #[arg(short, long, default_value_t = 100)]
    k: usize,
    /// l2, ip or cosine.
    #[arg(long, default_value = "l2")]
    metric: Metric,
    /// Output .ivecs file.
    #[arg(long)]
    out: PathBuf,
}

pub fn run(a: GroundtruthArgs) -> Result<()> {
    let inputs = [a.base.as_path(), a.queries.as_path()];
    paths::check_inputs(&inputs)?;
    paths::check_output("--out", &a.out, &inputs)?;
    let bar = spinner();
    bar.set_message("reading vectors");
    let b = read_vectors(&a.base)?;
    let q = read_vectors(&a.queries)?;
    let t0 = Instant::now();
    let k = a.k.min(b.len());
    bar.set_message(format!("exact top-{} by GEMM", a.k));
    write_exact_ground_truth(&a.out, &b, &q, k, a.metric)?;
    bar.finish_and_clear();
    outln!(
        "top-{k} {} ground truth for {} queries over {} vectors in {:.2}s → {}",
        a.metric,
        q.len(),
        b.len(),
        t0.elapsed().as_secs_f64(),
        a.out.display()
    );
    Ok(())
}
