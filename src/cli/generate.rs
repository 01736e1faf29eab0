//! `vecquant gen`: synthetic vector data sets and transformer-shaped weight files.

use std::path::PathBuf;
use std::time::Instant;

use clap::{Args, Subcommand};
use vecquant::data::generate::{DataDistribution, SyntheticSpec};
use vecquant::data::{GT_DEPTH, write_dataset};
use vecquant::model::{io::write_safetensors, synthetic};
use vecquant::{Error, Metric, Result};

use super::spinner;

#[derive(Subcommand)]
pub enum GenKind {
    /// i.i.d. Gaussian vectors N(mean, std²)
    ///
    /// Examples:
    ///   vecquant gen gaussian --dim 128 --n 100000 --queries 1000 --out data
    ///   vecquant gen gaussian --dim 64 --n 20000 --queries 200 --mean -1 --std 0.5 --out shifted
    #[command(verbatim_doc_comment)]
    Gaussian {
        #[command(flatten)]
        common: GenArgs,
        /// Mean of every component (may be negative).
        #[arg(long, default_value_t = 0.0, allow_negative_numbers = true)]
        mean: f32,
        /// Standard deviation of every component (≥ 0).
        #[arg(long, default_value_t = 1.0, allow_negative_numbers = true)]
        std: f32,
    },
    /// Gaussian mixture: centres from N(0,1), noise N(0, spread²)
    ///
    /// Example:
    ///   vecquant gen mixture --dim 128 --n 100000 --queries 1000 --clusters 64 --spread 0.3 --out mix
    #[command(verbatim_doc_comment)]
    Mixture {
        #[command(flatten)]
        common: GenArgs,
        /// Number of clusters.
        #[arg(long, default_value_t = 64)]
        clusters: usize,
        /// Noise standard deviation around each centre (≥ 0).
        #[arg(long, default_value_t = 0.3, allow_negative_numbers = true)]
        spread: f32,
    },
    /// A transformer-shaped weight file (.safetensors)
    ///
    /// Embedding, attention and MLP matrices with Gaussian, heavy-tailed (Student-t) and
    /// outlier-column statistics, biases, layer norms and an integer buffer.
    ///
    /// Example:
    ///   vecquant gen weights --layers 2 --hidden 384 --out model.safetensors
    #[command(verbatim_doc_comment)]
    Weights(WeightsArgs),
}

#[derive(Args)]
pub struct GenArgs {
    /// Dimension (≥ 1).
    #[arg(long, default_value_t = 128)]
    dim: usize,
    /// Base vectors (≥ 1).
    #[arg(long, default_value_t = 100_000)]
    n: usize,
    /// Query vectors (≥ 1).
    #[arg(long, default_value_t = 1_000)]
    queries: usize,
    /// Training vectors (default: n / 2, at most 100,000).
    #[arg(long)]
    train: Option<usize>,
    /// Seed.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Output directory.
    #[arg(long)]
    out: PathBuf,
}

impl GenArgs {
    /// Rejects empty splits up front: every file `gen` writes must be one the tool reads
    /// back (an empty query split would leave an empty, unreadable ground-truth file).
    fn check(&self) -> Result<()> {
        let sizes = [
            ("--dim", self.dim, "vectors need at least one component"),
            ("--n", self.n, "the base split needs at least one vector"),
            (
                "--queries",
                self.queries,
                "the query split and its ground truth need at least one query",
            ),
        ];
        for (flag, value, why) in sizes {
            if value == 0 {
                return Err(Error::param(flag, format!("must be at least 1: {why}")));
            }
        }
        Ok(())
    }
}

#[derive(Args)]
pub struct WeightsArgs {
    /// Transformer layers.
    #[arg(long, default_value_t = 2)]
    layers: usize,
    /// Hidden size (384 exercises the GGUF k-quant fallback; 4096 is a 7B model's).
    #[arg(long, default_value_t = 512)]
    hidden: usize,
    /// Vocabulary rows of the embedding.
    #[arg(long, default_value_t = 1024)]
    vocab: usize,
    /// Seed.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Output .safetensors file.
    #[arg(long)]
    out: PathBuf,
    /// Also write calibration activations (one tensor per 2-D weight, same name,
    /// correlated features with 5 % outlier channels) to this .safetensors file.
    #[arg(long)]
    calib: Option<PathBuf>,
    /// Calibration rows (tokens) per weight.
    #[arg(long, default_value_t = 512)]
    calib_rows: usize,
}

pub fn run(kind: GenKind) -> Result<()> {
    let (common, distribution) = match kind {
        GenKind::Gaussian { common, mean, std } => {
            (common, DataDistribution::Gaussian { mean, std })
        }
        GenKind::Mixture {
            common,
            clusters,
            spread,
        } => (common, DataDistribution::Mixture { clusters, spread }),
        GenKind::Weights(w) => return weights(w),
    };
    common.check()?;
    let spec = SyntheticSpec {
        dim: common.dim,
        n_base: common.n,
        n_query: common.queries,
        n_train: common.train.unwrap_or((common.n / 2).min(100_000)),
        distribution,
        seed: common.seed,
    };
    let t0 = Instant::now();
    let bar = spinner();
    bar.set_message("generating vectors");
    let data = spec.generate()?;
    bar.set_message("ground truth and writing");
    write_dataset(&common.out, &data, Metric::L2)?;
    bar.finish_and_clear();
    outln!(
        "wrote {} train, {} base, {} query vectors (dim {}) and top-{} ground truth to {} in {:.1}s",
        data.train.len(),
        data.base.len(),
        data.query.len(),
        spec.dim,
        GT_DEPTH.min(data.base.len()),
        common.out.display(),
        t0.elapsed().as_secs_f64()
    );
    Ok(())
}

fn weights(a: WeightsArgs) -> Result<()> {
    if a.layers == 0 || a.hidden == 0 || a.vocab == 0 || a.hidden > 65_536 || a.vocab > 1 << 20 {
        return Err(Error::param(
            "weights",
            "--layers, --hidden (≤ 65536) and --vocab (≤ 2^20) must be positive",
        ));
    }
    let t = synthetic::transformer(a.layers, a.hidden, a.vocab, a.seed);
    write_safetensors(&a.out, &t, None)?;
    let n: usize = t.iter().map(|t| t.numel()).sum();
    outln!(
        "wrote {} tensors, {n} values, to {}",
        t.len(),
        a.out.display()
    );
    if let Some(cp) = a.calib {
        if !(2..=1 << 20).contains(&a.calib_rows) {
            return Err(Error::param("calib-rows", "must be in 2..=1048576"));
        }
        let c = synthetic::calibration(&t, a.calib_rows, a.seed);
        write_safetensors(&cp, &c, None)?;
        outln!(
            "wrote calibration activations ({} rows) for {} weights to {}",
            a.calib_rows,
            c.len(),
            cp.display()
        );
    }
    Ok(())
}
