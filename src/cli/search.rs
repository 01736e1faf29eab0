//! `vecquant search`: search a saved index, with recall against ground truth if given,
//! and every query's results written to a file with `--out`.

use std::path::{Path, PathBuf};

use clap::Args;
use serde_json::json;
use vecquant::data::vecs::{write_fvecs, write_ivecs};
use vecquant::data::{read_ground_truth, read_vectors, write_file_atomic};
use vecquant::eval::{recall_at_1, recall_at_k, timed_search};
use vecquant::index::spec::IndexSpec;
use vecquant::topk::Neighbor;
use vecquant::vectors::VectorSet;
use vecquant::{Error, Index, Result, SearchParams};

use super::ParamArgs;

/// Queries whose ids the text output lists when the results go nowhere else.
const PREVIEW: usize = 5;

#[derive(Args)]
#[command(
    mut_arg("nprobe", |a| a.help(format!(
        "IVF indexes only: lists to probe [default: {}]",
        SearchParams::default().nprobe
    ))),
    mut_arg("ef", |a| a.help(format!(
        "HNSW indexes only: search beam width (at least -k is used) [default: {}]",
        SearchParams::default().ef_search
    ))),
    mut_arg("rerank", |a| a.help(format!(
        "Quantized indexes built with --keep-raw only: re-score this many best candidates \
         with exact distances; at least -k [default: {} = no re-ranking]",
        SearchParams::default().rerank
    ))),
)]
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
    /// Write every query's results to FILE, by extension: .ivecs (the ids, k per query,
    /// -1 where fewer than k were found) or .jsonl (one line per query:
    /// {"query": i, "ids": [...], "distances": [...]}).
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// Write every query's distances to FILE (.fvecs, k per query in the order of the
    /// ids, inf where fewer than k were found); with or without --out.
    #[arg(long, value_name = "FILE")]
    distances: Option<PathBuf>,
    /// Print one JSON object instead of text (see above for what it holds).
    #[arg(long)]
    json: bool,
    /// With --rerank R on RaBitQ indexes (flat or IVF): error-bound re-ranking — keep
    /// the R candidates with the smallest lower bounds of their distances and re-score
    /// them in that order only while a lower bound beats the current k-th exact distance
    /// (so at most R, usually far fewer; --json reports how many per query).
    #[arg(long, requires = "rerank")]
    adaptive_rerank: bool,
}

/// The formats `--out` writes.
#[derive(Clone, Copy)]
enum OutFormat {
    Ivecs,
    Jsonl,
}

fn extension(path: &Path) -> String {
    path.extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase()
}

fn out_format(path: &Path) -> Result<OutFormat> {
    match extension(path).as_str() {
        "ivecs" => Ok(OutFormat::Ivecs),
        "jsonl" => Ok(OutFormat::Jsonl),
        other => Err(Error::param(
            "--out",
            format!(
                "{}: cannot write results as `.{other}`; use .ivecs (ids) or .jsonl \
                 (ids and distances, one line per query)",
                path.display()
            ),
        )),
    }
}

pub fn run(a: SearchArgs) -> Result<()> {
    // Every file this reads, then the output names and places: all before any work.
    let inputs: Vec<&std::path::Path> = [a.index.as_path(), a.queries.as_path()]
        .into_iter()
        .chain(a.gt.as_deref())
        .collect();
    super::paths::check_inputs(&inputs)?;
    let out = a
        .out
        .as_deref()
        .map(|p| out_format(p).map(|f| (p, f)))
        .transpose()?;
    if let Some(p) = &a.distances
        && extension(p) != "fvecs"
    {
        return Err(Error::param(
            "--distances",
            format!("{}: distances are written as .fvecs", p.display()),
        ));
    }
    for (flag, o) in [("--out", &a.out), ("--distances", &a.distances)] {
        if let Some(o) = o {
            super::paths::check_output(flag, o, &inputs)?;
        }
    }
    if let (Some(o), Some(d)) = (&a.out, &a.distances) {
        super::paths::check_distinct(("--out", o), ("--distances", d))?;
    }
    let idx = vecquant::index::open(&a.index)?;
    let k = a.k;
    check_flags(idx.as_ref(), &a.params, k)?;
    let q = read_vectors(&a.queries)?;
    if q.dim() != idx.dim() {
        return Err(Error::dim(
            a.queries.display().to_string(),
            idx.dim(),
            q.dim(),
        ));
    }
    let p = a.params.apply(k).adaptive_rerank(a.adaptive_rerank);
    let threads = match a.threads {
        Some(n) => vecquant::threads::check_threads(n)?,
        None => rayon::current_num_threads(),
    };
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
    let (res, qps, reranked) =
        timed_search(idx.as_ref(), &q, &p, threads).map_err(|e| e.in_file(&a.queries))?;
    if let Some((path, format)) = out {
        match format {
            OutFormat::Ivecs => write_ids(path, &res, k)?,
            OutFormat::Jsonl => write_jsonl(path, &res)?,
        }
    }
    if let Some(path) = &a.distances {
        write_distances(path, &res, k)?;
    }
    let reranked = reranked.filter(|_| p.rerank > 0);
    let r1 = truth.as_ref().map(|t| recall_at_1(&res, t));
    let r10 = truth.as_ref().map(|t| recall_at_k(&res, t, 10.min(k)));
    if a.json {
        let mut v = json!({
            "spec": idx.spec(), "n": idx.len(), "dim": idx.dim(), "k": k,
            "recall_at_1": r1, "recall_at_10": r10, "qps": qps,
            "bytes_per_vector": idx.bytes_per_vector(),
            "index_bytes": idx.memory_bytes(), "threads": threads,
            "out": a.out, "distances": a.distances,
            "rerank": p.rerank, "adaptive_rerank": p.adaptive_rerank,
            "reranked_per_query": reranked,
        });
        if truth.is_none() && a.out.is_none() {
            v["results"] = res
                .iter()
                .enumerate()
                .map(|(i, r)| result_json(i, r))
                .collect();
        }
        outln!("{v}");
        return Ok(());
    }
    outln!(
        "{}: {} vectors, dim {}, {:.1} bytes/vector, {:.1} MB",
        idx.spec(),
        idx.len(),
        idx.dim(),
        idx.bytes_per_vector(),
        idx.memory_bytes() as f64 / 1e6
    );
    if let (Some(a), Some(b)) = (r1, r10) {
        outln!("recall@1 {a:.4}  10-recall@10 {b:.4}");
    }
    outln!("{qps:.0} queries/s on {threads} thread(s)");
    for (what, path) in [("results", &a.out), ("distances", &a.distances)] {
        if let Some(path) = path {
            outln!(
                "wrote the {what} of {} queries to {}",
                res.len(),
                path.display()
            );
        }
    }
    if truth.is_none() && a.out.is_none() {
        for (i, r) in res.iter().take(PREVIEW).enumerate() {
            let ids: Vec<String> = r.iter().map(|n| n.id.to_string()).collect();
            outln!("query {i}: {}", ids.join(" "));
        }
        if res.len() > PREVIEW {
            outln!(
                "({} more queries not shown; --out FILE writes them all)",
                res.len() - PREVIEW
            );
        }
    }
    Ok(())
}

/// Rejects search flags that would do nothing on this index
/// ([`IndexSpec::check_knobs`]) and warns (on stderr) about values the index caps. An
/// index whose spec is outside the spec grammar is left to the library's own checks.
fn check_flags(idx: &dyn Index, p: &ParamArgs, k: usize) -> Result<()> {
    let name = idx.spec();
    let Ok(spec) = name.parse::<IndexSpec>() else {
        return Ok(());
    };
    for w in spec.check_knobs(&name, k, p.nprobe, p.ef, p.rerank, "--")? {
        eprintln!("warning: {w}");
    }
    Ok(())
}

/// One query's results as JSON: `{"query": i, "ids": [...], "distances": [...]}`.
fn result_json(query: usize, r: &[Neighbor]) -> serde_json::Value {
    json!({
        "query": query,
        "ids": r.iter().map(|n| n.id).collect::<Vec<_>>(),
        "distances": r.iter().map(|n| n.distance).collect::<Vec<_>>(),
    })
}

fn write_jsonl(path: &Path, res: &[Vec<Neighbor>]) -> Result<()> {
    let mut text = String::new();
    for (i, r) in res.iter().enumerate() {
        text.push_str(&result_json(i, r).to_string());
        text.push('\n');
    }
    write_file_atomic(path, text.as_bytes())
}

/// The ids as `.ivecs`: `k` per query, `-1` after the last result found.
fn write_ids(path: &Path, res: &[Vec<Neighbor>], k: usize) -> Result<()> {
    let mut flat = vec![-1i32; res.len() * k];
    for (q, r) in res.iter().enumerate() {
        for (slot, n) in flat[q * k..(q + 1) * k].iter_mut().zip(r) {
            *slot = i32::try_from(n.id).map_err(|_| {
                Error::param(
                    "--out",
                    format!(
                        "{}: query {q}: id {} does not fit an .ivecs record (i32); write \
                         .jsonl instead",
                        path.display(),
                        n.id
                    ),
                )
            })?;
        }
    }
    write_ivecs(path, &flat, k)
}

/// The distances as `.fvecs`: `k` per query, `inf` after the last result found.
fn write_distances(path: &Path, res: &[Vec<Neighbor>], k: usize) -> Result<()> {
    let mut flat = vec![f32::INFINITY; res.len() * k];
    for (q, r) in res.iter().enumerate() {
        for (slot, n) in flat[q * k..(q + 1) * k].iter_mut().zip(r) {
            *slot = n.distance;
        }
    }
    write_fvecs(path, &VectorSet::new(flat, k)?)
}
