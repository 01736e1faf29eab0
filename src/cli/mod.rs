//! The command line: one module per subcommand; this file holds the command enum, the
//! shared search-parameter flags and the progress spinner.

/// `println!` to standard output, but a failed write is an [`vecquant::Error::Io`]
/// returned with `?` (see [`write_stdout`]) instead of a panic.
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::cli::write_stdout(format_args!("{}\n", format_args!($($arg)*)))?
    };
}

mod add;
mod bench;
mod build;
mod delete;
mod generate;
mod groundtruth;
mod import_hnsw_rs;
mod paths;
mod plot;
mod quantize_model;
mod search;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use vecquant::{Result, SearchParams};

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
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Generate a synthetic data set (train/base/query .fvecs + groundtruth.ivecs)
    ///
    /// Example:
    ///   vecquant gen gaussian --dim 32 --n 10000 --queries 100 --seed 42 --out data
    #[command(subcommand, verbatim_doc_comment)]
    Gen(generate::GenKind),
    /// Compute exact top-k ground truth (.ivecs) by blocked GEMM
    ///
    /// Example:
    ///   vecquant groundtruth --base base.fvecs --queries query.fvecs -k 100 --out gt.ivecs
    #[command(verbatim_doc_comment)]
    Groundtruth(groundtruth::GroundtruthArgs),
    /// Build an index from a vector file and save it
    ///
    /// Examples:
    ///   vecquant build --spec Flat --base data/base.fvecs --out flat.vq
    ///   vecquant build --spec SQ8 --base data/base.fvecs --train data/train.fvecs --keep-raw --out sq8.vq
    ///   vecquant build --spec HNSW32 --base data/base.fvecs --ef-construction 100 --out hnsw.vq
    #[command(verbatim_doc_comment)]
    Build(build::BuildArgs),
    /// Import a graph dumped by the hnsw_rs crate (file_dump) as an HNSW index file
    ///
    /// Reads BASENAME.hnsw.graph and BASENAME.hnsw.data, the two files hnsw_rs's
    /// `file_dump(dir, BASENAME)` writes (hnsw_rs 0.3, f32 vectors, distance DistL2,
    /// DistCosine or DistDot), and writes one index file (--out) that `search`, `add`,
    /// `delete`, `inspect` and `serve` use like one made by `build`.
    ///
    /// Kept from the hnsw_rs graph: every vector (its data id becomes its vecquant id),
    /// the links of every node on every layer (at most 2M on layer 0, M above, nearest
    /// first), the node levels, the metric (DistL2 → l2, DistCosine → cosine, DistDot →
    /// ip) and ef_construction. Added: the quantizer of --spec, trained on the vectors
    /// (seeded by --seed), and, as after every build, links to nodes with few incoming
    /// links or that layer 0 cannot reach from the entry point.
    ///
    /// Examples:
    ///   vecquant import-hnsw-rs dumps/vectors --out vectors.vq
    ///   vecquant import-hnsw-rs vectors --dir dumps --spec HNSW32,SQ8 --keep-raw --out vectors-sq8.vq
    #[command(verbatim_doc_comment)]
    ImportHnswRs(import_hnsw_rs::ImportHnswRsArgs),
    /// Search a saved index; with --gt prints recall, with --out writes every result
    ///
    /// Examples:
    ///   vecquant search --index flat.vq --queries data/query.fvecs --gt data/groundtruth.ivecs --json
    ///   vecquant search --index sq8.vq --queries data/query.fvecs --gt data/groundtruth.ivecs --rerank 100
    ///   vecquant search --index hnsw.vq --queries data/query.fvecs --ef 128 --out res.ivecs --distances res.fvecs
    ///
    /// Printed on stdout:
    ///   text (default)  a line describing the index; with --gt, recall@1 and 10-recall@10;
    ///                   the queries per second; with --out/--distances, a line per file
    ///                   written; with neither --gt nor --out, the ids of the first 5
    ///                   queries and how many more there are.
    ///   --json          one JSON object instead: spec, n, dim, k, recall_at_1 and
    ///                   recall_at_10 (null without --gt), qps, bytes_per_vector,
    ///                   index_bytes, threads, out and distances (the files written, or
    ///                   null); with neither --gt nor --out also "results": every query's
    ///                   {"query": i, "ids": [...], "distances": [...]}.
    /// Written to files: every query's results with --out FILE (.ivecs or .jsonl) and its
    /// distances with --distances FILE (.fvecs).
    ///
    /// --nprobe applies to IVF indexes, --ef to HNSW indexes and --rerank (at least -k) to
    /// quantized indexes built with --keep-raw; any of them on another index is an error.
    #[command(verbatim_doc_comment)]
    Search(search::SearchArgs),
    /// Add vectors to a saved index and save it again (atomically)
    ///
    /// Example:
    ///   vecquant add --index flat.vq --vectors more.fvecs --first-id 100000
    #[command(verbatim_doc_comment)]
    Add(add::AddArgs),
    /// Delete vectors by id from a saved index (rewritten atomically)
    ///
    /// Deleted vectors become tombstones; --compact also frees their space.
    ///
    /// Example:
    ///   vecquant delete --index sq8.vq --ids 3,17,42 --compact
    #[command(verbatim_doc_comment)]
    Delete(delete::DeleteArgs),
    /// Serve a saved index over HTTP (JSON); stops cleanly on Ctrl-C or SIGTERM
    ///
    /// Endpoints: POST /search, POST /search_batch, GET /vectors/{id}, GET /stats, GET /health.
    ///
    /// Example:
    ///   vecquant serve --index sq8.vq --addr 127.0.0.1:8080
    #[command(verbatim_doc_comment)]
    #[cfg(feature = "server")]
    Serve(vecquant::serve::ServeArgs),
    /// Quantize the weights of a model file (.safetensors or .npy)
    ///
    /// Every 2-D floating tensor is quantized with SCHEME; 1-D tensors (biases, norms) and
    /// integer tensors pass through unchanged. The output kind follows the extension of
    /// --out: .vq (vecquant container, quantized), .gguf (GGUF, llama.cpp; GGUF schemes,
    /// f16, bf16; metadata from --gguf-meta / --gguf-meta-from), .safetensors
    /// (dequantized f32, same names and shapes). gptq, spqr, smoothquant and llm-int8 also
    /// read --calib. Every option is checked against the scheme before any file is read.
    ///
    /// Example:
    ///   vecquant quantize-model --weights model.safetensors --scheme nf4-dq --out model.vq --report report.json
    #[command(verbatim_doc_comment)]
    QuantizeModel(quantize_model::QuantizeModelArgs),
    /// Describe a file: an index, quantized weights (.vq), a .gguf, a .safetensors or a vector file
    ///
    /// For an index: its spec, live and deleted counts, build parameters, sections and
    /// checksums; for weights: tensor names, shapes, schemes and bits/weight; for vectors
    /// (.fvecs, .bvecs, .npy): dimension, count, norms and non-finite values; for ground
    /// truth (.ivecs): rows, neighbours per row and the id range. Exits non-zero after the
    /// description when a checksum fails, a record is malformed or a value is not finite.
    ///
    /// Example:
    ///   vecquant inspect flat.vq
    #[command(verbatim_doc_comment)]
    Inspect {
        /// The file.
        file: PathBuf,
    },
    /// Benchmark specs on a data set: recall, bytes/vector, QPS (the main job)
    #[command(long_about = bench::long_about())]
    Bench(bench::BenchArgs),
}

/// Runs one parsed command line.
pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Gen(kind) => generate::run(kind),
        Command::Groundtruth(a) => groundtruth::run(a),
        Command::Build(a) => build::run(a),
        Command::ImportHnswRs(a) => import_hnsw_rs::run(a),
        Command::Search(a) => search::run(a),
        Command::Add(a) => add::run(a),
        Command::Delete(a) => delete::run(a),
        // The service owns its flags and its runtime; nothing to add here.
        #[cfg(feature = "server")]
        Command::Serve(a) => vecquant::serve::run_cli(&a),
        Command::QuantizeModel(a) => quantize_model::run(a),
        // The description is printed even for a damaged file; the damage is then the
        // exit status (issue 17, item 6).
        Command::Inspect { file } => {
            paths::check_input(&file)?;
            let found = vecquant::model::inspect::inspect_file(&file)?;
            write_stdout(format_args!("{}", found.text))?;
            found.verdict(&file)
        }
        Command::Bench(a) => bench::run(a),
    }
}

/// Writes to standard output. `println!` panics when the write fails, which it does as
/// soon as a reader closes the pipe (`vecquant search … | head`); here the failure is an
/// [`vecquant::Error::Io`] on "standard output" that stops the command, and
/// [`is_closed_pipe`] lets `main` end such a run quietly.
pub(crate) fn write_stdout(args: std::fmt::Arguments<'_>) -> Result<()> {
    use std::io::Write;
    std::io::stdout()
        .lock()
        .write_fmt(args)
        .map_err(|e| vecquant::Error::io(STDOUT, e))
}

/// The path [`write_stdout`]'s errors name.
const STDOUT: &str = "standard output";

/// Whether `e` is [`write_stdout`]'s error for a reader that closed the pipe: the
/// output was not wanted any more, which is not a failure (as for `grep` or `rg`).
pub(crate) fn is_closed_pipe(e: &vecquant::Error) -> bool {
    matches!(e, vecquant::Error::Io { path, source }
        if path.as_os_str() == STDOUT && source.kind() == std::io::ErrorKind::BrokenPipe)
}

// Search parameters shared by `search` and `bench`. (No doc comment: clap would take it
// for the help text of the commands that flatten these flags.)
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
    /// The library's defaults with `k` and whichever flags were given.
    fn apply(&self, k: usize) -> SearchParams {
        let d = SearchParams::new(k);
        d.nprobe(self.nprobe.unwrap_or(d.nprobe))
            .ef_search(self.ef.unwrap_or(d.ef_search))
            .rerank(self.rerank.unwrap_or(d.rerank))
    }
}

/// A spinner naming the current step when stdout and stderr are terminals (hidden
/// otherwise, so pipelines and logs stay clean); [`count_to`] turns it into a bar.
fn spinner() -> indicatif::ProgressBar {
    use std::io::IsTerminal;
    if !std::io::stdout().is_terminal() || !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let b = indicatif::ProgressBar::new_spinner();
    b.enable_steady_tick(std::time::Duration::from_millis(120));
    b
}

/// Turns `bar` into a bar counting to `total` (done/total, rate, elapsed time, estimate).
fn count_to(bar: &indicatif::ProgressBar, total: usize) {
    let style = indicatif::ProgressStyle::with_template(
        "{msg} [{bar:30}] {pos}/{len} ({per_sec}, {elapsed}, about {eta} left)",
    )
    .map(|s| s.progress_chars("=> "));
    if let Ok(style) = style {
        bar.set_style(style);
    }
    bar.set_length(total as u64);
    bar.set_position(0);
}

/// Turns a bar from [`count_to`] back into a spinner.
fn spin(bar: &indicatif::ProgressBar) {
    bar.set_style(indicatif::ProgressStyle::default_spinner());
}
