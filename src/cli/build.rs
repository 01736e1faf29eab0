//! `vecquant build`: train (if the kind needs it), add, save.

use std::path::PathBuf;
use std::time::Instant;

use clap::Args;
use vecquant::data::read_vectors;
use vecquant::index::spec::{BuildOptions, new_index};
use vecquant::{Error, Metric, Result};

use super::spinner;

#[derive(Args)]
pub struct BuildArgs {
    /// Index spec (e.g. Flat).
    #[arg(long)]
    spec: String,
    /// Vectors to index.
    #[arg(long)]
    base: PathBuf,
    /// Training sample (defaults to the base vectors).
    #[arg(long)]
    train: Option<PathBuf>,
    /// l2, ip or cosine.
    #[arg(long, default_value = "l2")]
    metric: Metric,
    /// Seed for training.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Keep the original vectors in the index so searches can re-rank exactly
    /// (`search --rerank R`).
    #[arg(long)]
    keep_raw: bool,
    /// Output index file.
    #[arg(long)]
    out: PathBuf,
}

pub fn run(a: BuildArgs) -> Result<()> {
    let bar = spinner();
    bar.set_message("reading vectors");
    let b = read_vectors(&a.base)?;
    let t = match &a.train {
        Some(p) => read_vectors(p)?,
        None => b.clone(),
    };
    let opts = BuildOptions {
        metric: a.metric,
        seed: a.seed,
        keep_raw: a.keep_raw,
        ..BuildOptions::default()
    };
    let t0 = Instant::now();
    let mut index = new_index(&a.spec, b.dim(), &opts)?;
    if !index.is_trained() {
        if t.dim() != b.dim() {
            return Err(Error::dim("train", b.dim(), t.dim()));
        }
        bar.set_message(format!("training {}", a.spec));
        index.train(t.as_slice())?;
    }
    bar.set_message(format!("encoding and adding {} vectors", b.len()));
    index.add(b.as_slice(), None)?;
    bar.set_message("saving");
    index.save(&a.out)?;
    bar.finish_and_clear();
    println!(
        "built {} over {} vectors (dim {}, {}) in {:.2}s: {:.1} bytes/vector, {:.1} MB → {}",
        index.spec(),
        index.len(),
        index.dim(),
        index.metric(),
        t0.elapsed().as_secs_f64(),
        index.bytes_per_vector(),
        index.memory_bytes() as f64 / 1e6,
        a.out.display()
    );
    Ok(())
}
