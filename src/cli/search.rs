//! `vecquant search`: search a saved index, with recall against ground truth if given,
//! and every query's results written to a file with `--out`.

use std::path::{Path, PathBuf};

use clap::Args;
use serde_json::json;
use vecquant::data::{AtomicWriter, read_ground_truth, read_vectors};
use vecquant::eval::{recall_at_1, recall_at_k, timed_search, timed_search_chunked};
use vecquant::index::RESULT_BUDGET;
use vecquant::index::spec::IndexSpec;
use vecquant::topk::Neighbor;
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
    if k > idx.len() && (a.out.is_some() || a.distances.is_some()) {
        eprintln!(
            "warning: -k {k} exceeds the {} vectors of {}: at most {} results per query; \
             each query's row of --out / --distances is padded to {k} entries (-1 / inf)",
            idx.len(),
            a.index.display(),
            idx.len()
        );
    }
    // Queries searched at a time: all of them unless their results would pass
    // RESULT_BUDGET neighbours; then chunk by chunk, each chunk's results written out
    // before the next (memory: one chunk's results, whatever the number of queries).
    let per = (RESULT_BUDGET / k.min(idx.len()).max(1)).max(1);
    let streamed = q.len() > per;
    if streamed && a.json && truth.is_none() && a.out.is_none() {
        return Err(Error::param(
            "--json",
            format!(
                "{} queries × {k} neighbours are too many results to print as one JSON \
                 object (at most {RESULT_BUDGET}): write them with --out FILE.jsonl, which \
                 is streamed",
                q.len()
            ),
        ));
    }
    let mut sinks = Sinks::create(out, a.distances.as_deref(), k)?;
    let nq = q.len();
    let (res, qps, reranked, r1, r10) = if streamed {
        let (mut r1, mut r10, mut kept) = (0.0f64, 0.0f64, Vec::new());
        let (qps, reranked) =
            timed_search_chunked(idx.as_ref(), &q, &p, threads, per, |first, res| {
                if let Some(t) = &truth {
                    let t = &t[first..first + res.len()];
                    r1 += recall_at_1(&res, t) * res.len() as f64;
                    r10 += recall_at_k(&res, t, 10.min(k)) * res.len() as f64;
                }
                sinks.put(first, &res)?;
                kept.extend(res.into_iter().take(PREVIEW.saturating_sub(first)));
                Ok(())
            })
            .map_err(|e| e.in_file(&a.queries))?;
        let recall = |sum: f64| truth.as_ref().map(|_| sum / nq.max(1) as f64);
        (kept, qps, reranked, recall(r1), recall(r10))
    } else {
        let (res, qps, reranked) =
            timed_search(idx.as_ref(), &q, &p, threads).map_err(|e| e.in_file(&a.queries))?;
        sinks.put(0, &res)?;
        let r1 = truth.as_ref().map(|t| recall_at_1(&res, t));
        let r10 = truth.as_ref().map(|t| recall_at_k(&res, t, 10.min(k)));
        (res, qps, reranked, r1, r10)
    };
    sinks.commit()?;
    let reranked = reranked.filter(|_| p.rerank > 0);
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
            outln!("wrote the {what} of {nq} queries to {}", path.display());
        }
    }
    if truth.is_none() && a.out.is_none() {
        for (i, r) in res.iter().take(PREVIEW).enumerate() {
            let ids: Vec<String> = r.iter().map(|n| n.id.to_string()).collect();
            outln!("query {i}: {}", ids.join(" "));
        }
        if nq > PREVIEW {
            outln!(
                "({} more queries not shown; --out FILE writes them all)",
                nq - PREVIEW
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

/// The files `--out` and `--distances` write, filled chunk by chunk of queries and
/// each replaced atomically at the end (an error on the way leaves both as they were).
struct Sinks<'a> {
    out: Option<(&'a Path, OutFormat, AtomicWriter)>,
    distances: Option<AtomicWriter>,
    k: usize,
}

impl<'a> Sinks<'a> {
    fn create(
        out: Option<(&'a Path, OutFormat)>,
        distances: Option<&Path>,
        k: usize,
    ) -> Result<Self> {
        Ok(Sinks {
            out: out
                .map(|(p, f)| AtomicWriter::create(p).map(|w| (p, f, w)))
                .transpose()?,
            distances: distances.map(AtomicWriter::create).transpose()?,
            k,
        })
    }

    /// Appends the results of queries `first..first + res.len()`, a query at a time
    /// (a record of `k` = 2²⁰ padded ids is 4 MiB; a chunk of them would be gigabytes).
    fn put(&mut self, first: usize, res: &[Vec<Neighbor>]) -> Result<()> {
        let (k, mut buf) = (self.k, Vec::new());
        for (i, r) in res.iter().enumerate() {
            if let Some((path, format, w)) = &mut self.out {
                buf.clear();
                match format {
                    OutFormat::Ivecs => ids_record(path, first + i, r, k, &mut buf)?,
                    OutFormat::Jsonl => {
                        buf.extend_from_slice(result_json(first + i, r).to_string().as_bytes());
                        buf.push(b'\n');
                    }
                }
                w.write_all(&buf)?;
            }
            if let Some(w) = &mut self.distances {
                buf.clear();
                distances_record(r, k, &mut buf);
                w.write_all(&buf)?;
            }
        }
        Ok(())
    }

    fn commit(self) -> Result<()> {
        if let Some((_, _, w)) = self.out {
            w.commit()?;
        }
        self.distances.map_or(Ok(()), AtomicWriter::commit)
    }
}

/// Query `q`'s ids as an `.ivecs` record into `out`: `k` ids, `-1` after the last
/// result found.
fn ids_record(path: &Path, q: usize, r: &[Neighbor], k: usize, out: &mut Vec<u8>) -> Result<()> {
    out.extend_from_slice(&record_len(k).to_le_bytes());
    for n in r.iter().take(k) {
        let id = i32::try_from(n.id).map_err(|_| {
            Error::param(
                "--out",
                format!(
                    "{}: query {q}: id {} does not fit an .ivecs record (i32); write .jsonl \
                     instead",
                    path.display(),
                    n.id
                ),
            )
        })?;
        out.extend_from_slice(&id.to_le_bytes());
    }
    for _ in r.len().min(k)..k {
        out.extend_from_slice(&(-1i32).to_le_bytes());
    }
    Ok(())
}

/// One query's distances as an `.fvecs` record into `out`: `k` values, `inf` after the
/// last result found.
fn distances_record(r: &[Neighbor], k: usize, out: &mut Vec<u8>) {
    out.extend_from_slice(&record_len(k).to_le_bytes());
    for n in r.iter().take(k) {
        out.extend_from_slice(&n.distance.to_le_bytes());
    }
    for _ in r.len().min(k)..k {
        out.extend_from_slice(&f32::INFINITY.to_le_bytes());
    }
}

/// The dimension field of a `.ivecs` / `.fvecs` record of `k` values (`k` is at most
/// `MAX_K`, checked before any search).
fn record_len(k: usize) -> i32 {
    i32::try_from(k).unwrap_or(i32::MAX)
}
