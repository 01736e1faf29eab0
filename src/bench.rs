//! The end-to-end benchmark: data set → build each spec → search → recall, memory, QPS.
//!
//! This is the project's main job (`vecquant bench`). With no data directory it generates
//! the default Gaussian set (100,000 × 128, 1,000 queries, seed 42) into a cache folder
//! and reuses it on later runs.

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::data::generate::{Dataset, SyntheticSpec};
use crate::data::groundtruth::ground_truth;
use crate::data::{read_vectors, vecs};
use crate::error::{Error, Result};
use crate::eval::{gaussian_rd_bound, mean_variance, mse, recall_at_1, recall_at_k};
use crate::index::spec::{BuildOptions, new_index};
use crate::index::{Index, SearchParams};
use crate::metric::Metric;
use crate::topk::Neighbor;
use crate::vectors::VectorSet;

/// Depth of the ground truth files written by the generator.
pub const GT_DEPTH: usize = 100;

/// A data set on disk: `train.fvecs` (optional), `base.fvecs`, `query.fvecs`,
/// `groundtruth.ivecs`.
#[derive(Clone, Debug)]
pub struct LoadedData {
    /// Name for reports (the folder name).
    pub name: String,
    /// The folder.
    pub dir: PathBuf,
    /// Vectors and splits.
    pub data: Dataset,
    /// Ground-truth ids per query, best first.
    pub gt: Vec<Vec<u32>>,
}

/// Writes a data set folder, computing top-[`GT_DEPTH`] L2 ground truth.
pub fn write_dataset(dir: &Path, data: &Dataset, metric: Metric) -> Result<Vec<Vec<u32>>> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    if !data.train.is_empty() {
        vecs::write_fvecs(dir.join("train.fvecs"), &data.train)?;
    }
    vecs::write_fvecs(dir.join("base.fvecs"), &data.base)?;
    vecs::write_fvecs(dir.join("query.fvecs"), &data.query)?;
    let k = GT_DEPTH.min(data.base.len());
    let gt = ground_truth(&data.base, &data.query, k, metric)?;
    write_gt(&dir.join("groundtruth.ivecs"), &gt)?;
    Ok(gt)
}

/// Writes ground truth as `.ivecs`.
pub fn write_gt(path: &Path, gt: &[Vec<u32>]) -> Result<()> {
    let k = gt.first().map_or(0, |r| r.len());
    let flat: Vec<i32> = gt
        .iter()
        .flat_map(|r| r.iter().map(|&x| x as i32))
        .collect();
    vecs::write_ivecs(path, &flat, k.max(1))
}

/// Reads ground truth from `.ivecs`.
pub fn read_gt(path: &Path) -> Result<Vec<Vec<u32>>> {
    let (flat, k) = vecs::read_ivecs(path)?;
    flat.chunks_exact(k)
        .enumerate()
        .map(|(row, r)| {
            r.iter()
                .map(|&x| {
                    u32::try_from(x).map_err(|_| {
                        Error::format(path, format!("record {row}: negative neighbour id {x}"))
                    })
                })
                .collect()
        })
        .collect()
}

/// Reads a data set folder (`train.fvecs` falls back to the base vectors).
pub fn load_dataset(dir: &Path) -> Result<LoadedData> {
    let find = |stem: &str| -> Option<PathBuf> {
        ["fvecs", "bvecs", "npy"]
            .iter()
            .map(|e| dir.join(format!("{stem}.{e}")))
            .find(|p| p.exists())
    };
    let base_path = find("base").ok_or_else(|| {
        Error::format(dir, "no base.fvecs (or .bvecs/.npy) in the data directory")
    })?;
    let query_path = find("query").ok_or_else(|| {
        Error::format(dir, "no query.fvecs (or .bvecs/.npy) in the data directory")
    })?;
    let base = read_vectors(&base_path)?;
    let query = read_vectors(&query_path)?;
    if query.dim() != base.dim() {
        return Err(Error::dim("query.fvecs", base.dim(), query.dim()));
    }
    let train = match find("train") {
        Some(p) => {
            let t = read_vectors(&p)?;
            if t.dim() != base.dim() {
                return Err(Error::dim("train.fvecs", base.dim(), t.dim()));
            }
            t
        }
        None => base.clone(),
    };
    let gt_path = dir.join("groundtruth.ivecs");
    let gt = if gt_path.exists() {
        read_gt(&gt_path)?
    } else {
        let gt = ground_truth(&base, &query, GT_DEPTH.min(base.len()), Metric::L2)?;
        write_gt(&gt_path, &gt)?;
        gt
    };
    if gt.len() != query.len() {
        return Err(Error::format(
            &gt_path,
            format!("{} ground-truth rows for {} queries", gt.len(), query.len()),
        ));
    }
    let name = dir
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "data".into());
    Ok(LoadedData {
        name,
        dir: dir.to_path_buf(),
        data: Dataset { train, base, query },
        gt,
    })
}

/// The default cached data set (generated once, then reused).
pub fn default_dataset(cache: &Path) -> Result<LoadedData> {
    let spec = SyntheticSpec::default_bench();
    let dir = cache.join(format!(
        "gaussian-{}x{}-q{}-s{}",
        spec.n_base, spec.dim, spec.n_query, spec.seed
    ));
    if !dir.join("groundtruth.ivecs").exists() {
        let data = spec.generate()?;
        write_dataset(&dir, &data, Metric::L2)?;
    }
    load_dataset(&dir)
}

/// One measured configuration.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct BenchRow {
    /// Data set name.
    pub dataset: String,
    /// Index spec.
    pub spec: String,
    /// Search parameters used.
    pub params: SearchParams,
    /// Number of base vectors.
    pub n: usize,
    /// Dimension.
    pub dim: usize,
    /// Results per query.
    pub k: usize,
    /// Fraction of queries whose first result is the true nearest neighbour.
    pub recall_at_1: f64,
    /// 10-recall@10.
    pub recall_at_10: f64,
    /// Queries per second on one thread.
    pub qps: f64,
    /// Queries per second on all threads.
    pub qps_all_threads: f64,
    /// Threads used for `qps_all_threads`.
    pub threads: usize,
    /// Code bytes per vector.
    pub bytes_per_vector: f64,
    /// Total index bytes in memory.
    pub index_bytes: usize,
    /// Train + add time in seconds.
    pub build_secs: f64,
    /// Bytes of raw vectors kept for re-ranking (included in `index_bytes`).
    pub raw_bytes: usize,
    /// Reconstruction MSE per component on a sample of the base vectors (quantized kinds).
    pub mse: Option<f64>,
    /// `mse` over the Gaussian rate-distortion bound σ²·2^(−2R) at the code rate R.
    pub mse_ratio: Option<f64>,
}

/// Runs `search_batch` on a pool of `threads` threads and returns results and QPS.
pub fn timed_search(
    index: &dyn Index,
    queries: &VectorSet,
    params: &SearchParams,
    threads: usize,
) -> Result<(Vec<Vec<Neighbor>>, f64)> {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads.max(1))
        .build()
        .map_err(|e| Error::param("threads", e.to_string()))?;
    // One warm-up query outside the timing: lazily built state (IVF's precomputed
    // tables) and the first touch of a memory-mapped file are one-time costs that FAISS
    // pays at training or load, outside its timed searches.
    if let Some(q) = queries.rows().next() {
        pool.install(|| index.search(q, params))?;
    }
    // Repeat short runs so the timing covers at least ~0.2 s (noisy shared machines).
    let mut reps = 0usize;
    let mut results = Vec::new();
    let t0 = Instant::now();
    while reps == 0 || (t0.elapsed().as_secs_f64() < 0.2 && reps < 50) {
        results = pool.install(|| index.search_batch(queries.as_slice(), params))?;
        reps += 1;
    }
    let secs = t0.elapsed().as_secs_f64();
    Ok((results, (queries.len() * reps) as f64 / secs.max(1e-9)))
}

/// Builds `spec` on `data` (train on the train split, add the base).
pub fn build(spec: &str, data: &Dataset, opts: &BuildOptions) -> Result<(Box<dyn Index>, f64)> {
    let t0 = Instant::now();
    let mut index = new_index(spec, data.base.dim(), opts)?;
    if !index.is_trained() {
        index.train(data.train.as_slice())?;
    }
    index.add(data.base.as_slice(), None)?;
    Ok((index, t0.elapsed().as_secs_f64()))
}

/// Benchmark configuration.
#[derive(Clone, Debug)]
pub struct BenchConfig {
    /// Specs to build.
    pub specs: Vec<String>,
    /// Search parameter sets to sweep per spec.
    pub params: Vec<SearchParams>,
    /// Threads for the all-threads QPS (0 = all cores).
    pub threads: usize,
    /// Build options (metric, seed).
    pub build: BuildOptions,
    /// For quantized kinds, also measure with exact re-ranking of this many candidates
    /// (0 = don't). Builds keep the raw vectors when set.
    pub rerank: usize,
    /// IVF specs: `nprobe` values swept (each capped at `nlist`; empty = use `params`).
    pub nprobe_sweep: Vec<usize>,
    /// HNSW specs: `ef_search` values swept (empty = use `params`).
    pub ef_sweep: Vec<usize>,
}

/// `nprobe` values `vecquant bench` sweeps for IVF specs (recall-vs-QPS curves).
pub const DEFAULT_NPROBE_SWEEP: [usize; 8] = [1, 2, 4, 8, 16, 32, 64, 128];
/// `ef_search` values `vecquant bench` sweeps for HNSW specs.
pub const DEFAULT_EF_SWEEP: [usize; 6] = [16, 32, 64, 128, 256, 512];

/// The search parameter sets measured for `spec`: `base` swept over `nprobe` (IVF) or
/// `ef_search` (HNSW) values.
pub fn sweep_params(spec: &str, base: &[SearchParams], cfg: &BenchConfig) -> Vec<SearchParams> {
    let lower = spec.trim().to_ascii_lowercase();
    let nlist = crate::index::ivf::parse_spec(&lower).map(|(n, _)| n);
    let mut out = Vec::new();
    for p in base {
        if let Some(nlist) = nlist.filter(|_| !cfg.nprobe_sweep.is_empty()) {
            let mut seen = Vec::new();
            for &np in &cfg.nprobe_sweep {
                let np = np.clamp(1, nlist);
                if !seen.contains(&np) {
                    seen.push(np);
                    out.push(SearchParams { nprobe: np, ..*p });
                }
            }
        } else if lower.starts_with("hnsw") && !cfg.ef_sweep.is_empty() {
            out.extend(cfg.ef_sweep.iter().map(|&ef| SearchParams {
                ef_search: ef.max(1),
                ..*p
            }));
        } else {
            out.push(*p);
        }
    }
    out
}

/// Candidates re-ranked exactly in the extra row `vecquant bench` measures for each
/// quantized spec.
pub const DEFAULT_RERANK: usize = 100;

/// Base vectors sampled for the reconstruction MSE.
const MSE_SAMPLE: usize = 10_000;

/// Reconstruction MSE and its ratio to D(R) for `index` on the head of `base`.
pub fn distortion(index: &dyn Index, base: &VectorSet) -> Result<(Option<f64>, Option<f64>)> {
    let sample = base.head(MSE_SAMPLE.min(base.len()));
    let Some(rec) = index.reconstruct(sample.as_slice())? else {
        return Ok((None, None));
    };
    let mut x = sample.into_vec();
    if index.metric().normalizes() {
        x.chunks_exact_mut(index.dim())
            .for_each(crate::vectors::normalize_in_place);
    }
    let m = mse(&x, &rec);
    let rate = index.bytes_per_vector() * 8.0 / index.dim() as f64;
    let bound = gaussian_rd_bound(mean_variance(&x, index.dim()), rate);
    Ok((Some(m), (bound > 0.0).then(|| m / bound)))
}

/// The specs `vecquant bench` runs when none are given.
pub fn default_specs() -> Vec<String> {
    [
        "Flat",
        "SQ8",
        "SQ4",
        "SQ8u",
        "SQ4u",
        "SQ8lm",
        "PQ16",
        "PQ32",
        "PQ32x4fs",
        "PQ64x4fs",
        "IVF256,PQ32x4fs",
    ]
    .map(String::from)
    .to_vec()
}

/// Splits a list of specs on `;`, or on `,` while keeping composite specs together:
/// a component that only prefixes a spec (`OPQ16`, `IVF1024`) joins the next one.
///
/// ```
/// use vecquant::bench::split_specs;
/// assert_eq!(split_specs("Flat,OPQ16,PQ16,SQ8"), ["Flat", "OPQ16,PQ16", "SQ8"]);
/// assert_eq!(split_specs("IVF64,PQ8x4fs;HNSW32"), ["IVF64,PQ8x4fs", "HNSW32"]);
/// ```
pub fn split_specs(s: &str) -> Vec<String> {
    if s.contains(';') {
        return s
            .split(';')
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty())
            .collect();
    }
    let is_prefix = |t: &str| {
        let l = t.to_ascii_lowercase();
        l.starts_with("opq") || l.starts_with("ivf")
    };
    let mut out: Vec<String> = Vec::new();
    let mut pending = String::new();
    for t in s.split(',').map(str::trim).filter(|t| !t.is_empty()) {
        if !pending.is_empty() {
            pending.push(',');
        }
        pending.push_str(t);
        if !is_prefix(t) {
            out.push(std::mem::take(&mut pending));
        }
    }
    if !pending.is_empty() {
        out.push(pending);
    }
    out
}

/// Runs every spec × parameter set on `data`; `progress` is told what is happening.
pub fn run(
    data: &LoadedData,
    cfg: &BenchConfig,
    mut progress: impl FnMut(&str),
) -> Result<Vec<BenchRow>> {
    let threads = if cfg.threads == 0 {
        rayon::current_num_threads()
    } else {
        cfg.threads
    };
    let mut rows = Vec::new();
    for spec in &cfg.specs {
        progress(&format!("building {spec}"));
        let opts = BuildOptions {
            keep_raw: cfg.build.keep_raw || cfg.rerank > 0,
            ..cfg.build
        };
        let (index, build_secs) = build(spec, &data.data, &opts)?;
        let (mse, mse_ratio) = distortion(index.as_ref(), &data.data.base)?;
        let raw_bytes = if opts.keep_raw && mse.is_some() {
            index.len() * index.dim() * 4
        } else {
            0
        };
        let mut sets = sweep_params(spec, &cfg.params, cfg);
        if cfg.rerank > 0 && mse.is_some() {
            let plain = sets.clone();
            sets.extend(plain.iter().map(|p| SearchParams {
                rerank: cfg.rerank,
                ..*p
            }));
        }
        for params in &sets {
            progress(&format!("searching {spec}"));
            let (res, qps) = timed_search(index.as_ref(), &data.data.query, params, 1)?;
            let (_, qps_all) = timed_search(index.as_ref(), &data.data.query, params, threads)?;
            rows.push(BenchRow {
                dataset: data.name.clone(),
                spec: spec.clone(),
                params: *params,
                n: index.len(),
                dim: index.dim(),
                k: params.k,
                recall_at_1: recall_at_1(&res, &data.gt),
                recall_at_10: recall_at_k(&res, &data.gt, 10.min(params.k)),
                qps,
                qps_all_threads: qps_all,
                threads,
                bytes_per_vector: index.bytes_per_vector(),
                index_bytes: index.memory_bytes(),
                build_secs,
                raw_bytes,
                mse,
                mse_ratio,
            });
        }
    }
    Ok(rows)
}

/// One FAISS (or hnswlib) measurement from `benches/compare_faiss.py`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct FaissRow {
    /// FAISS factory string (or `hnswlib{M}`).
    pub spec: String,
    /// IVF probes (if any).
    #[serde(default)]
    pub nprobe: Option<usize>,
    /// HNSW ef (if any).
    #[serde(default)]
    pub ef: Option<usize>,
    /// Recall@1.
    pub recall_at_1: f64,
    /// 10-recall@10.
    pub recall_at_10: f64,
    /// Queries per second.
    pub qps: f64,
    /// Bytes per vector.
    pub bytes_per_vector: f64,
}

/// Whether FAISS's index factory knows `spec` with the same meaning (our SQ variants
/// `SQ8u`, `SQ4lm`, ... and HNSW over codes are vecquant-only).
pub fn faiss_compatible(spec: &str) -> bool {
    fn pq(s: &str) -> bool {
        let s = s.strip_suffix("x4fs").unwrap_or(s);
        s.strip_prefix("PQ")
            .is_some_and(|m| !m.is_empty() && m.chars().all(|c| c.is_ascii_digit()))
    }
    fn num(s: &str, p: &str) -> bool {
        s.strip_prefix(p)
            .is_some_and(|m| !m.is_empty() && m.chars().all(|c| c.is_ascii_digit()))
    }
    let parts: Vec<&str> = spec.split(',').collect();
    match parts.as_slice() {
        ["Flat"] | ["SQ8"] | ["SQ4"] => true,
        [p] => pq(p) || num(p, "HNSW"),
        [o, p] if num(o, "OPQ") => pq(p),
        [i, c] if num(i, "IVF") => matches!(*c, "Flat" | "SQ8") || pq(c),
        _ => false,
    }
}

/// Runs `benches/compare_faiss.py` with `python` on the data set for the FAISS-compatible
/// specs, with the same nprobe/ef sweeps, single-threaded. `Ok(None)` with a reason when
/// Python or faiss-cpu is missing.
pub fn run_faiss(
    python: &Path,
    script: &Path,
    data: &LoadedData,
    cfg: &BenchConfig,
) -> Result<std::result::Result<Vec<FaissRow>, String>> {
    let specs: Vec<&String> = cfg.specs.iter().filter(|s| faiss_compatible(s)).collect();
    if specs.is_empty() {
        return Ok(Err("no spec has a FAISS equivalent".into()));
    }
    let join = |v: &[usize]| {
        v.iter()
            .map(|x| x.to_string())
            .collect::<Vec<_>>()
            .join(",")
    };
    let k = cfg.params.first().map_or(10, |p| p.k);
    let out = std::process::Command::new(python)
        .arg(script)
        .arg("--data")
        .arg(&data.dir)
        .arg("--specs")
        .arg(
            specs
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(";"),
        )
        .args(["--threads", "1", "-k", &k.to_string()])
        .args(["--nprobe", &join(&cfg.nprobe_sweep)])
        .args(["--ef", &join(&cfg.ef_sweep)])
        .output();
    let out = match out {
        Ok(o) => o,
        Err(e) => return Ok(Err(format!("cannot run {}: {e}", python.display()))),
    };
    if !out.status.success() {
        return Ok(Err(format!(
            "compare_faiss.py failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    let rows = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.trim_start().starts_with('{'))
        .filter_map(|l| serde_json::from_str::<FaissRow>(l).ok())
        .collect();
    Ok(Ok(rows))
}

/// The FAISS row measured with the same spec and sweep parameter as `r`.
fn faiss_match<'a>(r: &BenchRow, faiss: &'a [FaissRow]) -> Option<&'a FaissRow> {
    if r.params.rerank != 0 {
        return None;
    }
    faiss.iter().find(|f| {
        f.spec == r.spec
            && (!r.spec.starts_with("IVF") || f.nprobe == Some(r.params.nprobe))
            && (!r.spec.starts_with("HNSW") || f.ef == Some(r.params.ef_search))
    })
}

/// Curves for the plots: one per spec (and per spec with re-ranking), x from `x`.
fn curves(rows: &[BenchRow], faiss: &[FaissRow], qps: bool) -> Vec<crate::plot::Series> {
    let mut out: Vec<crate::plot::Series> = Vec::new();
    for r in rows {
        let label = if r.params.rerank > 0 {
            format!("{} +rerank{}", r.spec, r.params.rerank)
        } else {
            r.spec.clone()
        };
        let x = if qps { r.qps } else { r.bytes_per_vector };
        match out.iter_mut().find(|s| s.label == label) {
            Some(s) => s.points.push((x, r.recall_at_10)),
            None => out.push(crate::plot::Series {
                label,
                points: vec![(x, r.recall_at_10)],
                reference: false,
            }),
        }
    }
    for f in faiss {
        let label = format!("faiss {}", f.spec);
        let x = if qps { f.qps } else { f.bytes_per_vector };
        match out.iter_mut().find(|s| s.label == label) {
            Some(s) => s.points.push((x, f.recall_at_10)),
            None => out.push(crate::plot::Series {
                label,
                points: vec![(x, f.recall_at_10)],
                reference: true,
            }),
        }
    }
    out
}

/// Writes `report.md`, `results.json`, `results.csv`, `recall_vs_memory.{svg,png}` and
/// `recall_vs_qps.{svg,png}` into `dir`. Returns the files written.
pub fn write_report(
    dir: &Path,
    data: &LoadedData,
    rows: &[BenchRow],
    faiss: &[FaissRow],
    machine: &str,
) -> Result<Vec<PathBuf>> {
    use crate::plot::{Chart, write_chart};
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let mut files = Vec::new();
    let (n, d, nq) = (
        data.data.base.len(),
        data.data.base.dim(),
        data.data.query.len(),
    );
    let title = format!("{} ({n} x {d}, {nq} queries)", data.name);
    write_chart(
        &dir.join("recall_vs_memory"),
        &Chart {
            title: &format!("recall@10 vs memory: {title}"),
            x_label: "bytes per vector (codes, log scale)",
            y_label: "10-recall@10",
            larger_x_is_better: false,
        },
        &curves(rows, faiss, false),
    )?;
    write_chart(
        &dir.join("recall_vs_qps"),
        &Chart {
            title: &format!("recall@10 vs speed: {title}"),
            x_label: "queries per second, 1 thread (log scale)",
            y_label: "10-recall@10",
            larger_x_is_better: true,
        },
        &curves(rows, faiss, true),
    )?;
    for f in ["recall_vs_memory", "recall_vs_qps"] {
        files.push(dir.join(format!("{f}.svg")));
        files.push(dir.join(format!("{f}.png")));
    }
    // Markdown.
    let mut md = format!(
        "# vecquant benchmark

Machine: {machine}

## {title}

"
    );
    md.push_str(
        "| spec | params | bytes/vec | index MB (w/o raw) | build s | R@1 | 10-R@10 | QPS 1 thr | QPS all thr | MSE/D(R) | faiss 10-R@10 | faiss QPS | QPS ratio |\n\
         | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n",
    );
    for r in rows {
        let f = faiss_match(r, faiss);
        md.push_str(&format!(
            "{} {} | {} | {} |\n",
            row_cells(r),
            f.map_or("–".into(), |f| format!("{:.4}", f.recall_at_10)),
            f.map_or("–".into(), |f| format!("{:.0}", f.qps)),
            f.map_or("–".into(), |f| format!("{:.2}×", r.qps / f.qps.max(1e-9))),
        ));
    }
    md.push_str(
        "\n![recall vs memory](recall_vs_memory.png)\n\n![recall vs QPS](recall_vs_qps.png)\n",
    );
    if faiss.is_empty() {
        md.push_str("\nFAISS was not run (`vecquant bench --compare-faiss --python PATH` runs `benches/compare_faiss.py` on the same files).\n");
    }
    let p = dir.join("report.md");
    crate::data::write_file_atomic(&p, md.as_bytes())?;
    files.push(p);
    // JSON.
    let json = serde_json::json!({
        "dataset": data.name, "n": n, "dim": d, "queries": nq, "machine": machine,
        "results": rows, "faiss": faiss,
    });
    let p = dir.join("results.json");
    crate::data::write_file_atomic(
        &p,
        serde_json::to_string_pretty(&json)
            .expect("json")
            .as_bytes(),
    )?;
    files.push(p);
    // CSV.
    let mut csv = String::from(
        "dataset,spec,k,nprobe,ef,rerank,bytes_per_vector,index_bytes,raw_bytes,build_secs,recall_at_1,recall_at_10,qps,qps_all_threads,threads,mse,mse_ratio,faiss_recall_at_10,faiss_qps\n",
    );
    for r in rows {
        let f = faiss_match(r, faiss);
        let opt = |v: Option<f64>| v.map_or(String::new(), |v| v.to_string());
        csv.push_str(&format!(
            "{},\"{}\",{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}\n",
            r.dataset,
            r.spec,
            r.params.k,
            r.params.nprobe,
            r.params.ef_search,
            r.params.rerank,
            r.bytes_per_vector,
            r.index_bytes,
            r.raw_bytes,
            r.build_secs,
            r.recall_at_1,
            r.recall_at_10,
            r.qps,
            r.qps_all_threads,
            r.threads,
            opt(r.mse),
            opt(r.mse_ratio),
            opt(f.map(|f| f.recall_at_10)),
            opt(f.map(|f| f.qps)),
        ));
    }
    let p = dir.join("results.csv");
    crate::data::write_file_atomic(&p, csv.as_bytes())?;
    files.push(p);
    Ok(files)
}

/// A one-line description of this machine (CPU model, cores, SIMD level).
pub fn machine_description() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_string());
    format!(
        "{cpu}, {} threads, SIMD {:?}",
        rayon::current_num_threads(),
        crate::kernels::simd_level()
    )
}

/// A markdown table of benchmark rows.
pub fn markdown_table(rows: &[BenchRow]) -> String {
    let mut s = String::from(
        "| spec | params | bytes/vec | index MB (w/o raw) | build s | R@1 | 10-R@10 | QPS 1 thr | QPS all thr | MSE/D(R) |\n\
         | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n",
    );
    for r in rows {
        s.push_str(&row_cells(r));
        s.push('\n');
    }
    s
}

/// The first ten cells of a row of [`markdown_table`] (spec … MSE/D(R)), with the
/// leading and trailing `|`.
fn row_cells(r: &BenchRow) -> String {
    format!(
        "| {} | {} | {:.1} | {:.1} | {:.2} | {:.4} | {:.4} | {:.0} | {:.0} | {} |",
        r.spec,
        param_label(&r.params),
        r.bytes_per_vector,
        (r.index_bytes - r.raw_bytes) as f64 / 1e6,
        r.build_secs,
        r.recall_at_1,
        r.recall_at_10,
        r.qps,
        r.qps_all_threads,
        r.mse_ratio.map_or("–".into(), |m| format!("{m:.2}"))
    )
}

fn param_label(p: &SearchParams) -> String {
    let d = SearchParams::default();
    let mut parts = vec![format!("k={}", p.k)];
    if p.nprobe != d.nprobe {
        parts.push(format!("nprobe={}", p.nprobe));
    }
    if p.ef_search != d.ef_search {
        parts.push(format!("ef={}", p.ef_search));
    }
    if p.rerank != 0 {
        parts.push(format!("rerank={}", p.rerank));
    }
    parts.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::generate::DataDistribution;

    /// A 2000 × 16 seeded Gaussian set with `n_train` training vectors, on disk.
    fn small_set(n_train: usize) -> (tempfile::TempDir, LoadedData) {
        let dir = tempfile::tempdir().unwrap();
        let spec = SyntheticSpec {
            dim: 16,
            n_base: 2000,
            n_query: 20,
            n_train,
            distribution: DataDistribution::Gaussian {
                mean: 0.0,
                std: 1.0,
            },
            seed: 3,
        };
        write_dataset(dir.path(), &spec.generate().unwrap(), Metric::L2).unwrap();
        let data = load_dataset(dir.path()).unwrap();
        (dir, data)
    }

    #[test]
    fn report_writes_markdown_json_csv_and_plots() {
        let (dir, data) = small_set(500);
        let cfg = BenchConfig {
            specs: vec!["Flat".into(), "SQ8".into(), "IVF16,Flat".into()],
            params: vec![SearchParams::with_k(10)],
            threads: 1,
            build: BuildOptions::default(),
            rerank: 0,
            nprobe_sweep: vec![1, 4],
            ef_sweep: vec![],
        };
        let rows = run(&data, &cfg, |_| {}).unwrap();
        let faiss = vec![FaissRow {
            spec: "SQ8".into(),
            nprobe: None,
            ef: None,
            recall_at_1: 0.9,
            recall_at_10: 0.95,
            qps: 1000.0,
            bytes_per_vector: 16.0,
        }];
        let out = dir.path().join("out");
        let files = write_report(&out, &data, &rows, &faiss, "test machine").unwrap();
        assert_eq!(files.len(), 7);
        let md = std::fs::read_to_string(out.join("report.md")).unwrap();
        assert!(
            md.contains("| SQ8 | k=10 |") && md.contains("0.9500") && md.contains("test machine")
        );
        assert!(md.contains("| IVF16,Flat | k=10 nprobe=4 |"));
        let csv = std::fs::read_to_string(out.join("results.csv")).unwrap();
        assert_eq!(csv.lines().count(), 1 + rows.len());
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("results.json")).unwrap())
                .unwrap();
        assert_eq!(json["results"].as_array().unwrap().len(), rows.len());
        for f in ["recall_vs_memory.png", "recall_vs_qps.png"] {
            assert_eq!(&std::fs::read(out.join(f)).unwrap()[1..4], b"PNG");
        }
        assert!(faiss_compatible("IVF1024,PQ32x4fs") && faiss_compatible("OPQ16,PQ16"));
        assert!(!faiss_compatible("SQ8u") && !faiss_compatible("HNSW32,SQ8"));
    }

    #[test]
    fn flat_bench_on_small_set_has_perfect_recall() {
        let (_dir, data) = small_set(200);
        let cfg = BenchConfig {
            specs: vec![
                "Flat".into(),
                "SQ8".into(),
                "SQ4".into(),
                "IVF4,Flat".into(),
            ],
            params: vec![SearchParams::default()],
            threads: 2,
            build: BuildOptions::default(),
            rerank: 50,
            nprobe_sweep: vec![1, 2, 8],
            ef_sweep: vec![],
        };
        let rows = run(&data, &cfg, |_| {}).unwrap();
        assert_eq!(
            rows.len(),
            8,
            "Flat once, each SQ with and without re-ranking, IVF4 at nprobe 1, 2, 4"
        );
        let ivf: Vec<usize> = rows[5..].iter().map(|r| r.params.nprobe).collect();
        assert_eq!(ivf, [1, 2, 4], "the sweep is capped at nlist");
        assert_eq!(rows[7].recall_at_10, 1.0, "every list probed: exact");
        assert!(rows[5].recall_at_10 < 1.0);
        assert_eq!(rows[0].recall_at_10, 1.0);
        assert_eq!(rows[0].recall_at_1, 1.0);
        assert_eq!(rows[0].bytes_per_vector, 64.0);
        assert_eq!(rows[0].mse, None);
        let sq8 = &rows[1];
        assert_eq!(sq8.bytes_per_vector, 16.0);
        assert!(sq8.recall_at_10 > 0.9, "{sq8:?}");
        // No quantizer beats the rate-distortion bound on Gaussian data.
        assert!(sq8.mse_ratio.unwrap() > 1.0, "{sq8:?}");
        assert_eq!(sq8.raw_bytes, 2000 * 16 * 4);
        assert!(rows[2].recall_at_10 >= 0.99 && rows[2].params.rerank == 50);
        assert_eq!(rows[3].bytes_per_vector, 8.0);
        let table = markdown_table(&rows);
        assert!(table.contains("| Flat |") && table.contains("| SQ4 |"));
    }
}
