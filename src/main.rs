//! `vecquant` command-line tool: a thin clap front end over the library.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::{Args, Parser, Subcommand};
use serde_json::json;

use vecquant::bench::{self, BenchConfig};
use vecquant::data::generate::{DataDistribution, SyntheticSpec};
use vecquant::data::{self, groundtruth};
use vecquant::eval::{recall_at_1, recall_at_k};
use vecquant::index::spec::{self, BuildOptions};
use vecquant::prelude::*;

#[derive(Parser)]
#[command(
    name = "vecquant",
    version,
    about = "Quantized vector search and model-weight quantization",
    long_about = "Quantized vector search and model-weight quantization.\n\n\
                  Typical session:\n  \
                  vecquant gen gaussian --dim 128 --n 100000 --queries 1000 --out data\n  \
                  vecquant build --spec Flat --base data/base.fvecs --out flat.vq\n  \
                  vecquant search --index flat.vq --queries data/query.fvecs --gt data/groundtruth.ivecs\n  \
                  vecquant bench"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Generate a synthetic data set (train/base/query .fvecs + groundtruth.ivecs).
    #[command(subcommand)]
    Gen(GenKind),
    /// Compute exact top-k ground truth (.ivecs) by blocked GEMM.
    ///
    /// Example: vecquant groundtruth --base base.fvecs --queries query.fvecs -k 100 --out gt.ivecs
    Groundtruth {
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
    },
    /// Build an index from a vector file and save it.
    ///
    /// Examples: vecquant build --spec Flat --base data/base.fvecs --out flat.vq
    ///           vecquant build --spec SQ8 --base data/base.fvecs --train data/train.fvecs --keep-raw --out sq8.vq
    Build {
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
    },
    /// Search a saved index; with --gt prints recall.
    ///
    /// Examples: vecquant search --index flat.vq --queries data/query.fvecs --gt data/groundtruth.ivecs --json
    ///           vecquant search --index sq8.vq --queries data/query.fvecs --gt data/groundtruth.ivecs --rerank 100
    Search {
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
    },
    /// Add vectors to a saved index and save it again (atomically).
    ///
    /// Example: vecquant add --index flat.vq --vectors more.fvecs --first-id 100000
    Add {
        /// Index file (rewritten in place through a temp file and a rename).
        #[arg(long)]
        index: PathBuf,
        /// Vectors to add.
        #[arg(long)]
        vectors: PathBuf,
        /// Id of the first new vector (default: the index's current length); the rest
        /// follow consecutively.
        #[arg(long)]
        first_id: Option<u64>,
    },
    /// Delete vectors by id from a saved index (tombstones; `--compact` also frees their
    /// space). The file is rewritten atomically.
    ///
    /// Example: vecquant delete --index sq8.vq --ids 3,17,42 --compact
    Delete {
        /// Index file.
        #[arg(long)]
        index: PathBuf,
        /// Comma-separated ids.
        #[arg(long, value_delimiter = ',')]
        ids: Vec<u64>,
        /// A text file of ids (whitespace or newline separated).
        #[arg(long)]
        ids_file: Option<PathBuf>,
        /// Drop the deleted vectors from the file instead of keeping tombstones.
        #[arg(long)]
        compact: bool,
    },
    /// Serve a saved index over HTTP: POST /search, POST /search_batch, GET /stats,
    /// GET /health (JSON). Stops cleanly on Ctrl-C or SIGTERM.
    ///
    /// Example: vecquant serve --index sq8.vq --addr 127.0.0.1:8080
    #[cfg(feature = "server")]
    Serve(vecquant::serve::ServeArgs),
    /// Quantize the weights of a model file (.safetensors or .npy).
    ///
    /// Every 2-D floating tensor is quantized with SCHEME; 1-D tensors (biases, norms) and
    /// integer tensors pass through unchanged. The output kind follows the extension of
    /// --out: .vq (vecquant container, quantized), .gguf (GGUF, llama.cpp; GGUF schemes,
    /// f16, bf16), .safetensors (dequantized f32, same names and shapes).
    ///
    /// Example: vecquant quantize-model --weights model.safetensors --scheme nf4-dq --out model.vq --report report.json
    QuantizeModel {
        /// Input weights (.safetensors with f32/f16/bf16 tensors, or a 2-D .npy).
        #[arg(long)]
        weights: PathBuf,
        /// absmax, zeropoint, nf4, nf4-dq, fp4, fp8-e4m3, fp8-e5m2, f16, bf16, kmeans,
        /// q8_0, q4_0, q4_1, q4_k, q6_k.
        #[arg(long)]
        scheme: String,
        /// Scale sharing: tensor, row (output channel) or group (of --group weights along
        /// the input dimension). Default: row for 8 bits, group for fewer; kmeans: tensor.
        #[arg(long)]
        granularity: Option<vecquant::model::GranularityKind>,
        /// Group size for --granularity group (default 128); block size for nf4/fp4
        /// (default 64).
        #[arg(long)]
        group: Option<usize>,
        /// Bits for absmax/zeropoint (8, 4, 3, 2; default 8) and kmeans (1..=8; default 4).
        #[arg(long)]
        bits: Option<u32>,
        /// nearest, floor, ceil or stochastic.
        #[arg(long, default_value = "nearest")]
        rounding: String,
        /// Range: minmax, percentile:P (e.g. percentile:99.9), mse or kl.
        #[arg(long, default_value = "minmax")]
        clip: String,
        /// Seed for k-means and stochastic rounding.
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Calibration activations (.safetensors): for each weight, a tensor with the same
        /// name holding that layer's inputs (tokens × in_features). Required by gptq,
        /// spqr, smoothquant and llm-int8; the last 10 % of the rows are held out to
        /// measure the output error.
        #[arg(long)]
        calib: Option<PathBuf>,
        /// GPTQ/SpQR: quantize columns by decreasing Hessian diagonal.
        #[arg(long)]
        act_order: bool,
        /// GPTQ/SpQR dampening (fraction of the mean Hessian diagonal).
        #[arg(long, default_value_t = 0.01)]
        damp: f64,
        /// SmoothQuant migration strength α.
        #[arg(long, default_value_t = 0.5)]
        alpha: f32,
        /// LLM.int8 outlier threshold on |activation|.
        #[arg(long, default_value_t = 6.0)]
        threshold: f32,
        /// Output file (.vq, .gguf or .safetensors).
        #[arg(long)]
        out: PathBuf,
        /// Report file (.json or .md); the summary is always printed.
        #[arg(long)]
        report: Option<PathBuf>,
        /// No progress bar.
        #[arg(long)]
        quiet: bool,
    },
    /// Describe a file: a container (index or quantized weights: kind, version, sizes,
    /// sections, checksums, tensors), a .gguf or a .safetensors file.
    ///
    /// Example: vecquant inspect flat.vq
    Inspect {
        /// The file.
        file: PathBuf,
    },
    /// Benchmark specs on a data set: recall, bytes/vector, QPS (the main job).
    ///
    /// With no arguments: generates the default Gaussian set (100,000 × 128, 1,000 queries,
    /// seed 42) into a cache folder and benchmarks every known spec.
    Bench {
        /// Data directory with base.fvecs, query.fvecs [, train.fvecs, groundtruth.ivecs].
        #[arg(long)]
        data: Option<PathBuf>,
        /// Specs separated by `;` or `,` (a spec's own commas, as in `OPQ16,PQ16` or
        /// `IVF1024,PQ16`, are kept together). Default: every known spec.
        #[arg(long)]
        specs: Option<String>,
        /// Where to write report.md, results.json, results.csv and the plots
        /// (recall_vs_memory / recall_vs_qps, .svg and .png).
        #[arg(long, default_value = "bench-results")]
        out: PathBuf,
        /// Also run benches/compare_faiss.py (needs Python with faiss-cpu and numpy) on
        /// the same files and put FAISS's points and the QPS ratios in the report.
        #[arg(long)]
        compare_faiss: bool,
        /// The Python interpreter for --compare-faiss (a virtualenv with faiss-cpu).
        #[arg(long, default_value = "python3")]
        python: PathBuf,
        /// Cache folder for generated data.
        #[arg(long, default_value = "datasets/cache")]
        cache: PathBuf,
        /// Threads for the all-threads QPS (default: all cores).
        #[arg(long, default_value_t = 0)]
        threads: usize,
        /// Neighbours per query.
        #[arg(short, long, default_value_t = 10)]
        k: usize,
        #[command(flatten)]
        params: ParamArgs,
        /// Seed for training.
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// No progress messages.
        #[arg(long)]
        quiet: bool,
    },
}

#[derive(Args, Clone, Copy)]
struct ParamArgs {
    /// IVF lists to probe.
    #[arg(long)]
    nprobe: Option<usize>,
    /// HNSW search beam width.
    #[arg(long)]
    ef: Option<usize>,
    /// Re-rank this many candidates with exact distances.
    #[arg(long)]
    rerank: Option<usize>,
}

impl ParamArgs {
    fn apply(&self, k: usize) -> SearchParams {
        let d = SearchParams::default();
        SearchParams {
            k,
            nprobe: self.nprobe.unwrap_or(d.nprobe),
            ef_search: self.ef.unwrap_or(d.ef_search),
            rerank: self.rerank.unwrap_or(d.rerank),
        }
    }
}

#[derive(Subcommand)]
enum GenKind {
    /// i.i.d. Gaussian vectors N(mean, std²).
    ///
    /// Example: vecquant gen gaussian --dim 128 --n 100000 --queries 1000 --out data
    Gaussian {
        #[command(flatten)]
        common: GenArgs,
        /// Mean of every component.
        #[arg(long, default_value_t = 0.0)]
        mean: f32,
        /// Standard deviation of every component.
        #[arg(long, default_value_t = 1.0)]
        std: f32,
    },
    /// Gaussian mixture: centres from N(0,1), noise N(0, spread²).
    ///
    /// Example: vecquant gen mixture --dim 128 --n 100000 --queries 1000 --clusters 64 --spread 0.3 --out mix
    Mixture {
        #[command(flatten)]
        common: GenArgs,
        /// Number of clusters.
        #[arg(long, default_value_t = 64)]
        clusters: usize,
        /// Noise standard deviation around each centre.
        #[arg(long, default_value_t = 0.3)]
        spread: f32,
    },
    /// A transformer-shaped weight file (.safetensors): embedding, attention and MLP
    /// matrices with Gaussian, heavy-tailed (Student-t) and outlier-column statistics,
    /// biases, layer norms and an integer buffer.
    ///
    /// Example: vecquant gen weights --layers 2 --hidden 384 --out model.safetensors
    Weights {
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
    },
}

#[derive(Args)]
struct GenArgs {
    /// Dimension.
    #[arg(long, default_value_t = 128)]
    dim: usize,
    /// Base vectors.
    #[arg(long, default_value_t = 100_000)]
    n: usize,
    /// Query vectors.
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

/// A spinner naming the current step when stdout is a terminal (hidden otherwise, so
/// pipelines and logs stay clean).
fn spinner() -> indicatif::ProgressBar {
    use std::io::IsTerminal;
    if !std::io::stdout().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let b = indicatif::ProgressBar::new_spinner();
    b.enable_steady_tick(std::time::Duration::from_millis(120));
    b
}

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Gen(kind) => {
            let (common, distribution) = match kind {
                GenKind::Gaussian { common, mean, std } => {
                    (common, DataDistribution::Gaussian { mean, std })
                }
                GenKind::Mixture {
                    common,
                    clusters,
                    spread,
                } => (common, DataDistribution::Mixture { clusters, spread }),
                GenKind::Weights {
                    layers,
                    hidden,
                    vocab,
                    seed,
                    out,
                    calib,
                    calib_rows,
                } => {
                    if layers == 0
                        || hidden == 0
                        || vocab == 0
                        || hidden > 65_536
                        || vocab > 1 << 20
                    {
                        return Err(Error::param(
                            "weights",
                            "--layers, --hidden (≤ 65536) and --vocab (≤ 2^20) must be positive",
                        ));
                    }
                    let t = vecquant::model::synthetic::transformer(layers, hidden, vocab, seed);
                    vecquant::model::io::write_safetensors(&out, &t, None)?;
                    let n: usize = t.iter().map(|t| t.numel()).sum();
                    println!(
                        "wrote {} tensors, {n} values, to {}",
                        t.len(),
                        out.display()
                    );
                    if let Some(cp) = calib {
                        if !(2..=1 << 20).contains(&calib_rows) {
                            return Err(Error::param("calib-rows", "must be in 2..=1048576"));
                        }
                        let c = vecquant::model::synthetic::calibration(&t, calib_rows, seed);
                        vecquant::model::io::write_safetensors(&cp, &c, None)?;
                        println!(
                            "wrote calibration activations ({calib_rows} rows) for {} weights to {}",
                            c.len(),
                            cp.display()
                        );
                    }
                    return Ok(());
                }
            };
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
            bench::write_dataset(&common.out, &data, Metric::L2)?;
            bar.finish_and_clear();
            println!(
                "wrote {} train, {} base, {} query vectors (dim {}) and top-{} ground truth to {} in {:.1}s",
                data.train.len(),
                data.base.len(),
                data.query.len(),
                spec.dim,
                bench::GT_DEPTH.min(data.base.len()),
                common.out.display(),
                t0.elapsed().as_secs_f64()
            );
        }
        Command::Groundtruth {
            base,
            queries,
            k,
            metric,
            out,
        } => {
            let bar = spinner();
            bar.set_message("reading vectors");
            let b = data::read_vectors(&base)?;
            let q = data::read_vectors(&queries)?;
            let t0 = Instant::now();
            bar.set_message(format!("exact top-{k} by GEMM"));
            let gt = groundtruth::ground_truth(&b, &q, k.min(b.len()), metric)?;
            bar.set_message("writing");
            bench::write_gt(&out, &gt)?;
            bar.finish_and_clear();
            println!(
                "top-{} {} ground truth for {} queries over {} vectors in {:.2}s → {}",
                k.min(b.len()),
                metric,
                q.len(),
                b.len(),
                t0.elapsed().as_secs_f64(),
                out.display()
            );
        }
        Command::Build {
            spec: s,
            base,
            train,
            metric,
            seed,
            keep_raw,
            out,
        } => {
            let bar = spinner();
            bar.set_message("reading vectors");
            let b = data::read_vectors(&base)?;
            let t = match train {
                Some(p) => data::read_vectors(&p)?,
                None => b.clone(),
            };
            let opts = BuildOptions {
                metric,
                seed,
                keep_raw,
            };
            let t0 = Instant::now();
            let mut index = spec::new_index(&s, b.dim(), &opts)?;
            if !index.is_trained() {
                if t.dim() != b.dim() {
                    return Err(Error::dim("train", b.dim(), t.dim()));
                }
                bar.set_message(format!("training {s}"));
                index.train(t.as_slice())?;
            }
            bar.set_message(format!("encoding and adding {} vectors", b.len()));
            index.add(b.as_slice(), None)?;
            bar.set_message("saving");
            index.save(&out)?;
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
                out.display()
            );
        }
        Command::Search {
            index,
            queries,
            k,
            gt,
            threads,
            params,
            json,
        } => {
            let idx = vecquant::index::open(&index)?;
            let q = data::read_vectors(&queries)?;
            if q.dim() != idx.dim() {
                return Err(Error::dim("queries", idx.dim(), q.dim()));
            }
            let p = params.apply(k);
            let threads = threads.unwrap_or_else(rayon::current_num_threads).max(1);
            let (res, qps) = bench::timed_search(idx.as_ref(), &q, &p, threads)?;
            let truth = match gt {
                Some(g) => {
                    let t = bench::read_gt(&g)?;
                    if t.len() != q.len() {
                        return Err(Error::format(
                            &g,
                            format!("{} ground-truth rows for {} queries", t.len(), q.len()),
                        ));
                    }
                    Some(t)
                }
                None => None,
            };
            let r1 = truth.as_ref().map(|t| recall_at_1(&res, t));
            let r10 = truth.as_ref().map(|t| recall_at_k(&res, t, 10.min(k)));
            if json {
                let v = json!({
                    "spec": idx.spec(), "n": idx.len(), "dim": idx.dim(), "k": k,
                    "recall_at_1": r1, "recall_at_10": r10, "qps": qps,
                    "bytes_per_vector": idx.bytes_per_vector(),
                    "index_bytes": idx.memory_bytes(), "threads": threads,
                });
                println!("{v}");
            } else {
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
            }
        }
        Command::Delete {
            index,
            mut ids,
            ids_file,
            compact,
        } => {
            if let Some(f) = ids_file {
                let text = std::fs::read_to_string(&f).map_err(|e| Error::io(&f, e))?;
                for (i, tok) in text.split_whitespace().enumerate() {
                    ids.push(tok.parse().map_err(|_| {
                        Error::format(&f, format!("token {i} `{tok}` is not a u64 id"))
                    })?);
                }
            }
            if ids.is_empty() {
                return Err(Error::param(
                    "ids",
                    "no ids given (use --ids or --ids-file)",
                ));
            }
            let mut idx = vecquant::index::open(&index)?;
            let before = idx.len();
            let n = idx.delete(&ids)?;
            let dropped = if compact { idx.compact()? } else { 0 };
            idx.save(&index)?;
            println!(
                "deleted {n} of {} ids from {}: {before} → {} vectors{}",
                ids.len(),
                index.display(),
                idx.len(),
                if compact {
                    format!(", compacted ({dropped} rows dropped)")
                } else {
                    format!(" ({} tombstones)", idx.deleted())
                }
            );
        }
        Command::Add {
            index,
            vectors,
            first_id,
        } => {
            let mut idx = vecquant::index::open(&index)?;
            let v = data::read_vectors(&vectors)?;
            if v.dim() != idx.dim() {
                return Err(Error::dim("vectors", idx.dim(), v.dim()));
            }
            let before = idx.len();
            // Default ids continue the insertion numbering (deleted rows included).
            let start = first_id.unwrap_or((before + idx.deleted()) as u64);
            let ids: Vec<u64> = (0..v.len() as u64)
                .map(|i| start.checked_add(i))
                .collect::<Option<_>>()
                .ok_or_else(|| Error::param("first-id", "ids overflow u64"))?;
            idx.add(v.as_slice(), Some(&ids))?;
            idx.save(&index)?;
            println!(
                "added {} vectors (ids {start}..{}) to {}: {before} → {}",
                v.len(),
                start + v.len() as u64,
                index.display(),
                idx.len()
            );
        }
        #[cfg(feature = "server")]
        Command::Serve(args) => vecquant::serve::run_cli(&args)?,
        Command::QuantizeModel {
            weights,
            scheme,
            granularity,
            group,
            bits,
            rounding,
            clip,
            seed,
            calib,
            act_order,
            damp,
            alpha,
            threshold,
            out,
            report,
            quiet,
        } => {
            use vecquant::model;
            let opts = model::SchemeOptions {
                bits,
                granularity,
                group,
                rounding: model::parse_rounding(&rounding, seed)?,
                clip: model::parse_clip(&clip)?,
                seed,
            };
            let calibrated =
                model::parse_calibrated(&scheme, &opts, act_order, damp, alpha, threshold)
                    .transpose()?;
            let plain = match calibrated {
                Some(_) => None,
                None => Some(model::Scheme::parse(&scheme, &opts)?),
            };
            let calib = match (&calibrated, &calib) {
                (Some(_), Some(p)) => model::io::read_safetensors(p)?,
                (Some(_), None) => {
                    return Err(Error::param(
                        "calib",
                        format!(
                            "scheme `{scheme}` needs --calib CALIB.safetensors (layer inputs per weight name)"
                        ),
                    ));
                }
                (None, _) => Vec::new(),
            };
            let tensors = model::io::read_weights(&weights)?;
            let bar = if quiet {
                indicatif::ProgressBar::hidden()
            } else {
                let b = indicatif::ProgressBar::new(tensors.len() as u64);
                b.set_style(
                    indicatif::ProgressStyle::with_template(
                        "{bar:30} {pos}/{len} tensors  {elapsed_precise}  {msg}",
                    )
                    .expect("valid template"),
                );
                b
            };
            let on_tensor = |i: usize, _: usize, name: &str| {
                bar.set_position(i as u64);
                bar.set_message(name.to_string());
            };
            let (q, rep) = match (&plain, &calibrated) {
                (Some(s), _) => model::quantize_model(&tensors, s, on_tensor)?,
                (None, Some(m)) => {
                    model::quantize_model_calibrated(&tensors, m, &calib, on_tensor)?
                }
                (None, None) => unreachable!("one of the two parsers accepted the scheme"),
            };
            bar.finish_and_clear();
            q.save(&out)?;
            if let Some(r) = &report {
                rep.write(r)?;
            }
            let t = &rep.total;
            for r in rep.tensors.iter().filter(|r| r.scheme != "passthrough") {
                if let Some(n) = &r.note {
                    eprintln!("note: {}: {n}", r.name);
                }
            }
            let outs: Vec<(f64, f64)> = rep
                .tensors
                .iter()
                .filter_map(|r| Some((r.rel_output_error?, r.rtn_rel_output_error?)))
                .collect();
            if !outs.is_empty() {
                println!(
                    "held-out output error (last 10 % of calibration rows): median {:.5} vs round-to-nearest {:.5} over {} tensors",
                    median(outs.iter().map(|o| o.0).collect()),
                    median(outs.iter().map(|o| o.1).collect()),
                    outs.len()
                );
            }
            println!(
                "{}: {} tensors ({} quantized, {} passed through) with {}: {:.4} bits/weight, {} -> {} bytes ({:.2}x), median rel. error {:.5}, {:.2} s -> {}",
                weights.display(),
                t.tensors,
                t.quantized,
                t.passthrough,
                rep.scheme,
                t.bits_per_weight,
                t.bytes_before,
                t.bytes_after,
                t.compression_ratio,
                median(
                    rep.tensors
                        .iter()
                        .filter(|r| r.scheme != "passthrough")
                        .map(|r| r.rel_weight_error)
                        .collect()
                ),
                t.seconds,
                out.display()
            );
        }
        Command::Inspect { file } => {
            print!("{}", vecquant::model::inspect::describe_file(&file)?);
        }
        Command::Bench {
            data: dir,
            specs,
            out,
            cache,
            threads,
            k,
            params,
            seed,
            quiet,
            compare_faiss,
            python,
        } => {
            let t0 = Instant::now();
            // A spinner with the current step when stdout is a terminal; silent otherwise.
            let bar = if quiet {
                indicatif::ProgressBar::hidden()
            } else {
                spinner()
            };
            let say = |m: &str| {
                bar.set_message(format!("[{:6.1}s] {m}", t0.elapsed().as_secs_f64()));
            };
            say("loading data");
            let loaded = match dir {
                Some(d) => bench::load_dataset(&d)?,
                None => bench::default_dataset(&cache)?,
            };
            say(&format!(
                "data `{}`: {} base, {} queries, {} train, dim {}",
                loaded.name,
                loaded.data.base.len(),
                loaded.data.query.len(),
                loaded.data.train.len(),
                loaded.data.base.dim()
            ));
            let mut base = params.apply(k);
            let rerank = std::mem::take(&mut base.rerank);
            let cfg = BenchConfig {
                nprobe_sweep: match params.nprobe {
                    Some(n) => vec![n],
                    None => bench::DEFAULT_NPROBE_SWEEP.to_vec(),
                },
                ef_sweep: match params.ef {
                    Some(e) => vec![e],
                    None => bench::DEFAULT_EF_SWEEP.to_vec(),
                },
                specs: specs.map_or_else(bench::default_specs, |s| bench::split_specs(&s)),
                params: vec![base],
                rerank: if params.rerank.is_some() {
                    rerank
                } else {
                    bench::DEFAULT_RERANK
                },
                threads,
                build: BuildOptions {
                    seed,
                    ..Default::default()
                },
            };
            let rows = bench::run(&loaded, &cfg, |m| say(m))?;
            let table = bench::markdown_table(&rows);
            println!(
                "\n## {} ({} × {}, {} queries)\n\n{table}",
                loaded.name,
                loaded.data.base.len(),
                loaded.data.base.dim(),
                loaded.data.query.len()
            );
            let faiss = if compare_faiss {
                say("running benches/compare_faiss.py");
                let script =
                    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("benches/compare_faiss.py");
                match bench::run_faiss(&python, &script, &loaded, &cfg)? {
                    Ok(rows) => rows,
                    Err(why) => {
                        eprintln!("note: FAISS comparison skipped: {why}");
                        Vec::new()
                    }
                }
            } else {
                Vec::new()
            };
            let files =
                bench::write_report(&out, &loaded, &rows, &faiss, &bench::machine_description())?;
            bar.finish_and_clear();
            println!(
                "wrote {} ({:.1} s)",
                files
                    .iter()
                    .map(|f| f.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
                t0.elapsed().as_secs_f64()
            );
        }
    }
    Ok(())
}
