//! `vecquant groundtruth`: exact top-k by blocked GEMM, written as `.ivecs`.

use std::path::PathBuf;
use std::time::Instant;

use clap::Args;
use vecquant::data::groundtruth::ground_truth;
use vecquant::data::{AtomicWriter, read_vectors};
use vecquant::vectors::VectorSet;
use vecquant::{Error, Metric, Result};

/// Neighbours held in memory at once: more queries than this allows at `-k` are
/// computed and written chunk by chunk.
const RESULT_BUDGET: usize = 1 << 24;

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
    // Queries a chunk at a time, each chunk's ids written before the next: memory holds
    // at most RESULT_BUDGET neighbours, whatever the number of queries × k.
    if q.is_empty() {
        // (No chunk to search: the sets are still checked against each other.)
        ground_truth(&b, &q, k, a.metric)?;
    }
    let mut out = AtomicWriter::create(&a.out)?;
    let per = (RESULT_BUDGET / k.max(1)).max(1) * q.dim();
    let mut record = Vec::with_capacity(4 * (k + 1));
    for (c, chunk) in q.as_slice().chunks(per).enumerate() {
        let chunk = VectorSet::new(chunk.to_vec(), q.dim())?;
        for (i, row) in ground_truth(&b, &chunk, k, a.metric)?.iter().enumerate() {
            record.clear();
            record.extend_from_slice(&(row.len() as i32).to_le_bytes());
            for &id in row {
                let id = i32::try_from(id).map_err(|_| {
                    Error::param(
                        "--out",
                        format!(
                            "{}: query {}: id {id} does not fit an .ivecs record (i32)",
                            a.out.display(),
                            c * (per / q.dim()) + i
                        ),
                    )
                })?;
                record.extend_from_slice(&id.to_le_bytes());
            }
            out.write_all(&record)?;
        }
    }
    out.commit()?;
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
