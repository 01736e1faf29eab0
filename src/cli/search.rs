//! `vecquant search`: search a saved index, with recall against ground truth if given.

use std::path::PathBuf;

use clap::Args;
use serde_json::json;
use vecquant::data::{read_ground_truth, read_vectors};
use vecquant::eval::{recall_at_1, recall_at_k, timed_search};
use vecquant::{Error, Result};

use super::ParamArgs;

#[derive(Args)]
pub struct SearchArgs {
    /// Index file.
    #[arg(long)]
    index: PathBuf,
    /// Query vectors.
    #[arg(long)]
    queries: PathBuf,
    /// Neighbours per query.
    #[arg(short, long, default_value_t = 10)]
    k: usize,
    /// Ground truth (.ivecs) for recall.
    #[arg(long)]
    gt: Option<PathBuf>,
    /// Threads (default: all cores).
    #[arg(long)]
    threads: Option<usize>,
    #[command(flatten)]
    params: ParamArgs,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

pub fn run(a: SearchArgs) -> Result<()> {
    let gt: Vec<&std::path::Path> = a.gt.as_deref().into_iter().collect();
    super::paths::check_inputs(&[&a.index, &a.queries])?;
    super::paths::check_inputs(&gt)?;
    let idx = vecquant::index::open(&a.index)?;
    let q = read_vectors(&a.queries)?;
    if q.dim() != idx.dim() {
        return Err(Error::dim(
            a.queries.display().to_string(),
            idx.dim(),
            q.dim(),
        ));
    }
    let k = a.k;
    let p = a.params.apply(k);
    let threads = match a.threads {
        Some(n) => vecquant::threads::check_threads(n)?,
        None => rayon::current_num_threads(),
    };
    let (res, qps) =
        timed_search(idx.as_ref(), &q, &p, threads).map_err(|e| e.in_file(&a.queries))?;
    let truth = match &a.gt {
        Some(g) => {
            let t = read_ground_truth(g)?;
            if t.len() != q.len() {
                return Err(Error::format(
                    g,
                    format!("{} ground-truth rows for {} queries", t.len(), q.len()),
                ));
            }
            Some(t)
        }
        None => None,
    };
    let r1 = truth.as_ref().map(|t| recall_at_1(&res, t));
    let r10 = truth.as_ref().map(|t| recall_at_k(&res, t, 10.min(k)));
    if a.json {
        let v = json!({
            "spec": idx.spec(), "n": idx.len(), "dim": idx.dim(), "k": k,
            "recall_at_1": r1, "recall_at_10": r10, "qps": qps,
            "bytes_per_vector": idx.bytes_per_vector(),
            "index_bytes": idx.memory_bytes(), "threads": threads,
        });
        println!("{v}");
        return Ok(());
    }
    println!(
        "{}: {} vectors, dim {}, {:.1} bytes/vector, {:.1} MB",
        idx.spec(),
        idx.len(),
        idx.dim(),
        idx.bytes_per_vector(),
        idx.memory_bytes() as f64 / 1e6
    );
    if let (Some(a), Some(b)) = (r1, r10) {
        println!("recall@1 {a:.4}  10-recall@10 {b:.4}");
    }
    println!("{qps:.0} queries/s on {threads} thread(s)");
    if truth.is_none() {
        for (i, r) in res.iter().take(5).enumerate() {
            let ids: Vec<String> = r.iter().map(|n| n.id.to_string()).collect();
            println!("query {i}: {}", ids.join(" "));
        }
    }
    Ok(())
}
