//! `vecquant build`: train (if the kind needs it), add, save.

use std::path::PathBuf;
use std::time::Instant;

use clap::Args;
use vecquant::data::{VectorReader, read_vectors};
use vecquant::index::hnsw::HnswBuilder;
use vecquant::index::spec::{BuildOptions, IndexSpec, InnerQuantizer, ScalarSpec, build_index};
use vecquant::index::{Index, Scalar, hnsw, ivf};
use vecquant::model::levels::LevelSource;
use vecquant::quant::codec::InnerSpec;
use vecquant::quant::scalar::SqConfig;
use vecquant::{Error, Metric, Result};

use super::{count_to, paths, spin, spinner};

/// `--ef-construction`'s help: the library's default, not a copy of it.
fn ef_construction_help() -> String {
    format!(
        "HNSW specs only: beam width while building the graph (larger: a better graph, a \
         slower build) [default: {}]",
        BuildOptions::default().ef_construction
    )
}

#[derive(Args)]
pub struct BuildArgs {
    /// Index spec (e.g. Flat).
    #[arg(long)]
    spec: String,
    /// Vectors to index.
    #[arg(long)]
    base: PathBuf,
    /// Training sample (default: the base vectors — a seeded sample of 1,000,000 of them
    /// when there are more).
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
    /// Levels of the scalar quantizer (specs with one: SQ…, IVF…,SQ…, HNSW…,SQ…),
    /// replacing the variant's; its range estimator stays. uniform, normal, lloyd-max,
    /// nf4, fp4 (e2m1), e4m3, e5m2, or PATH:TENSOR — the k-means codebook of TENSOR in a
    /// weights container written by `quantize-model --scheme kmeans --granularity tensor`.
    #[arg(long, value_name = "LEVELS")]
    levels: Option<LevelSource>,
    #[arg(long, value_name = "EF", help = ef_construction_help())]
    ef_construction: Option<usize>,
    /// HNSW specs only: the graph builder. `native` (this crate's, hnswlib's algorithm:
    /// seeded — one thread, RAYON_NUM_THREADS=1, gives the same graph every time) or
    /// `hnsw_rs` (the hnsw_rs crate; not seeded, slower). Either way a later `vecquant
    /// add` inserts the new vectors into the saved graph with the native builder.
    #[arg(long, value_name = "BUILDER", default_value = "native")]
    hnsw_builder: HnswBuilder,
    /// Vectors read and added at a time (default: 64 MiB of them): the base file is
    /// streamed, so memory holds the index and one chunk, not the raw vectors. HNSW
    /// specs read the whole file (the graph is built over all vectors at once).
    #[arg(long, value_name = "ROWS")]
    chunk: Option<usize>,
    /// Output index file.
    #[arg(long)]
    out: PathBuf,
}

/// Training vectors sampled from the base file when no `--train` is given and it holds
/// more (k-means and PQ training subsample far below this; scalar ranges are estimated
/// from it).
const TRAIN_SAMPLE: usize = 1_000_000;

/// Bytes of raw vectors read and added at a time (`--chunk`'s default).
const CHUNK_BYTES: usize = 64 << 20;

/// Rows of `dim` floats in [`CHUNK_BYTES`] (at least one).
pub(super) fn default_chunk(dim: usize) -> usize {
    (CHUNK_BYTES / (4 * dim.max(1))).max(1)
}

pub fn run(a: BuildArgs) -> Result<()> {
    // Every file this reads, then the output: all checked before any work.
    let mut inputs = vec![a.base.as_path()];
    inputs.extend(a.train.as_deref());
    if let Some(LevelSource::Weights { path, .. }) = &a.levels {
        inputs.push(path);
    }
    paths::check_inputs(&inputs)?;
    paths::check_output("--out", &a.out, &inputs)?;
    paths::warn_foreign_extension(&a.out);
    // The spec's own checks first, then the flags that apply to some kinds only.
    let typed: IndexSpec = a.spec.parse()?;
    if a.ef_construction.is_some() && !typed.is_hnsw() {
        return Err(Error::param(
            "--ef-construction",
            format!(
                "applies to HNSW specs (HNSW{{M}}[,…]) only; {} builds {}",
                a.spec,
                typed.family()
            ),
        ));
    }
    if a.hnsw_builder != HnswBuilder::default() && !typed.is_hnsw() {
        return Err(Error::param(
            "--hnsw-builder",
            format!(
                "applies to HNSW specs (HNSW{{M}}[,…]) only; {} builds {}",
                a.spec,
                typed.family()
            ),
        ));
    }
    if a.chunk == Some(0) {
        return Err(Error::param("--chunk", "must be at least 1 row"));
    }
    let bar = spinner();
    bar.set_message("reading vectors");
    let mut base = VectorReader::open(&a.base)?;
    let (dim, n) = (base.dim(), base.len());
    let opts = BuildOptions {
        metric: a.metric,
        seed: a.seed,
        keep_raw: a.keep_raw,
        ef_construction: a
            .ef_construction
            .unwrap_or(BuildOptions::default().ef_construction),
        hnsw_builder: a.hnsw_builder,
    };
    let t0 = Instant::now();
    let mut index = match &a.levels {
        None => build_index(&typed, dim, &opts)?,
        Some(levels) => with_levels(&a.spec, levels, dim, &opts)?,
    };
    if !index.is_trained() {
        let (t, train) = match &a.train {
            Some(p) => (read_vectors(p)?, p),
            None => {
                bar.set_message("sampling the training vectors");
                (base.sample(TRAIN_SAMPLE, a.seed)?, &a.base)
            }
        };
        if t.dim() != dim {
            return Err(Error::dim(train.display().to_string(), dim, t.dim()));
        }
        bar.set_message(format!("training {}", a.spec));
        index.train(t.as_slice()).map_err(|e| e.in_file(train))?;
    }
    if typed.is_hnsw() {
        let b = base.read_rows(0, n)?;
        // HNSW's add is the long graph build: a bar of inserted / total vectors.
        bar.set_message("building the graph");
        count_to(&bar, n);
        index
            .add_with_progress(b.as_slice(), None, &|done, total| {
                bar.set_length(total as u64);
                bar.set_position(done as u64);
            })
            .map_err(|e| e.in_file(&a.base))?;
        spin(&bar);
    } else {
        let chunk = a.chunk.unwrap_or_else(|| default_chunk(dim));
        bar.set_message("encoding and adding");
        count_to(&bar, n);
        let mut lo = 0;
        index
            .add_stream(None, &mut || {
                if lo >= n {
                    return Ok(None);
                }
                let v = base.read_rows(lo, lo + chunk)?;
                lo += v.len();
                bar.set_position(lo as u64);
                Ok(Some(v.into_vec()))
            })
            .map_err(|e| e.in_file(&a.base))?;
        spin(&bar);
    }
    bar.set_message("saving");
    index.save(&a.out)?;
    bar.finish_and_clear();
    let levels = a
        .levels
        .as_ref()
        .map(|l| format!(" with levels {l}"))
        .unwrap_or_default();
    outln!(
        "built {}{levels} over {} vectors (dim {}, {}) in {:.2}s: {:.1} bytes/vector, {:.1} MB → {}",
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

/// An empty index for `spec` whose scalar quantizer takes its levels from `levels`
/// instead of the variant's (the variant's range estimator stays).
fn with_levels(
    spec: &str,
    levels: &LevelSource,
    dim: usize,
    opts: &BuildOptions,
) -> Result<Box<dyn Index>> {
    // The spec's own checks and messages first: a malformed spec is reported as such.
    let parsed: IndexSpec = spec.parse()?;
    parsed.check_dim(dim)?;
    let config = |sq: ScalarSpec| -> Result<SqConfig> {
        let mut config = sq.config();
        config.levels = levels.levels(sq.bits)?;
        Ok(config)
    };
    let inner = |sq: ScalarSpec| -> Result<InnerSpec> {
        Ok(InnerSpec::Scalar {
            name: sq.name(),
            config: config(sq)?,
        })
    };
    let (metric, keep_raw, seed) = (opts.metric, opts.keep_raw, opts.seed);
    match parsed {
        IndexSpec::Scalar(sq) => Ok(Box::new(Scalar::with_config(
            sq.name(),
            dim,
            metric,
            config(sq)?,
            keep_raw,
        )?)),
        IndexSpec::Ivf {
            nlist,
            inner: InnerQuantizer::Scalar(sq),
            ..
        } => ivf::new_typed(nlist, inner(sq)?, None, dim, metric, keep_raw, seed),
        IndexSpec::Hnsw {
            m,
            inner: InnerQuantizer::Scalar(sq),
        } => hnsw::new_typed(m, inner(sq)?, dim, opts),
        _ => Err(Error::param(
            "levels",
            format!(
                "`{spec}` has no scalar quantizer to take levels `{levels}`; --levels \
                 applies to SQ8, SQ4 (any SQ variant), IVF{{nlist}},SQ… and HNSW{{M}},SQ…"
            ),
        )),
    }
}
