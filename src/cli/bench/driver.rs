//! The end-to-end benchmark: data set → build each spec → search → recall, memory, QPS.
//!
//! This is the project's main job (`vecquant bench`). With no data directory it generates
//! the default Gaussian set (100,000 × 128, 1,000 queries, seed 42) into a cache folder
//! and reuses it on later runs.

use std::path::Path;
use std::time::Instant;

use vecquant::data::generate::{Dataset, SyntheticSpec};
use vecquant::data::{LoadedDataset, load_dataset, write_dataset};
use vecquant::eval::report::BenchRow;
use vecquant::eval::{distortion, recall_at_1, recall_at_k, timed_search};
use vecquant::index::spec::{ACCEPTED, BuildOptions, IndexSpec, new_index};
use vecquant::{Error, Index, Metric, Result, SearchParams};

/// The default cached data set (generated once, then reused).
pub fn default_dataset(cache: &Path) -> Result<LoadedDataset> {
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

/// Builds `spec` on `data` (train on the train split, add the base); returns the index
/// and the seconds it took.
fn build(spec: &str, data: &Dataset, opts: &BuildOptions) -> Result<(Box<dyn Index>, f64)> {
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

/// How many times `rerank` candidates the adaptive (error-bound) re-ranked rows of
/// RaBitQ specs keep as their pool.
pub const ADAPTIVE_POOL: usize = 10;

/// `nprobe` values `vecquant bench` sweeps for IVF specs (recall-vs-QPS curves).
pub const DEFAULT_NPROBE_SWEEP: [usize; 8] = [1, 2, 4, 8, 16, 32, 64, 128];
/// `ef_search` values `vecquant bench` sweeps for HNSW specs.
pub const DEFAULT_EF_SWEEP: [usize; 6] = [16, 32, 64, 128, 256, 512];
/// Candidates re-ranked exactly in the extra row `vecquant bench` measures for each
/// quantized spec.
pub const DEFAULT_RERANK: usize = 100;

/// The search parameter sets measured for `spec`: `base` swept over `nprobe` (IVF) or
/// `ef_search` (HNSW) values.
fn sweep_params(spec: &str, base: &[SearchParams], cfg: &BenchConfig) -> Vec<SearchParams> {
    let typed = spec.parse::<vecquant::index::spec::IndexSpec>().ok();
    let nlist = typed.and_then(|t| t.nlist());
    let uses_ef = typed.is_some_and(|t| t.uses_ef());
    let mut out = Vec::new();
    for p in base {
        if let Some(nlist) = nlist.filter(|_| !cfg.nprobe_sweep.is_empty()) {
            let mut seen = Vec::new();
            for &np in &cfg.nprobe_sweep {
                let np = np.clamp(1, nlist);
                if !seen.contains(&np) {
                    seen.push(np);
                    out.push(p.nprobe(np));
                }
            }
        } else if uses_ef && !cfg.ef_sweep.is_empty() {
            out.extend(cfg.ef_sweep.iter().map(|&ef| p.ef_search(ef.max(1))));
        } else {
            out.push(*p);
        }
    }
    out
}

/// The specs `vecquant bench` runs when none are given (also quoted by `bench --help`).
pub const DEFAULT_SPECS: [&str; 13] = [
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
    "RaBitQfs",
    "RaBitQ4",
];

/// [`DEFAULT_SPECS`] as owned strings.
pub fn default_specs() -> Vec<String> {
    DEFAULT_SPECS.map(String::from).to_vec()
}

/// The most comma-separated components one spec has (`OPQ{M},IVF{nlist},PQ{M}`).
const MAX_SPEC_PARTS: usize = 3;

/// Splits a list of specs (item 9 of issue 17). `;` always separates specs; within each
/// `;`-separated part, the comma-separated pieces are grouped greedily: at each position
/// the longest run of pieces that parses as an [`IndexSpec`] is one spec, so
/// `HNSW16,SQ8,Flat` is `HNSW16,SQ8` and `Flat`, and `OPQ16,IVF64,PQ16` stays whole.
/// Returns the specs in canonical form ([`IndexSpec`]'s `Display`).
///
/// # Errors
/// [`Error::InvalidParameter`] for `--specs` naming the piece no run starting at it
/// parses, why, and the accepted forms; or if the list holds no spec at all.
pub fn split_specs(s: &str) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for part in s.split(';') {
        let pieces: Vec<&str> = part
            .split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .collect();
        let mut i = 0;
        while i < pieces.len() {
            let longest = (1..=MAX_SPEC_PARTS.min(pieces.len() - i))
                .rev()
                .find_map(|n| {
                    let text = pieces[i..i + n].join(",");
                    text.parse::<IndexSpec>().ok().map(|spec| (n, spec))
                });
            let Some((n, spec)) = longest else {
                return Err(unparsable_piece(&pieces[i..], s));
            };
            out.push(spec.to_string());
            i += n;
        }
    }
    if out.is_empty() {
        return Err(Error::param(
            "--specs",
            format!("`{s}` names no spec; accepted forms: {ACCEPTED}"),
        ));
    }
    Ok(out)
}

/// The error for `rest[0]`, which starts no valid spec (alone or joined with the
/// pieces after it): the reason the piece alone fails, and the reason the piece joined
/// with the next one fails (often the more telling one, as in `OPQ16,PQ32`).
fn unparsable_piece(rest: &[&str], list: &str) -> Error {
    let why = |text: &str| match text.parse::<IndexSpec>() {
        Err(Error::Spec { message, .. }) => message
            .split("; accepted forms:")
            .next()
            .unwrap_or_default()
            .to_string(),
        Err(e) => e.to_string(),
        Ok(_) => String::new(),
    };
    let mut msg = format!("`{}` in `{list}` is not a spec: {}", rest[0], why(rest[0]));
    if rest.len() > 1 {
        let joined = rest[..2].join(",");
        msg.push_str(&format!("; nor is `{joined}`: {}", why(&joined)));
    }
    msg.push_str(&format!(
        " (specs are separated by `;`, or by `,` where a spec's own commas are kept \
         together; accepted forms: {ACCEPTED})"
    ));
    Error::param("--specs", msg)
}

/// Every spec of `cfg` through [`run_spec`], rows only (the tests' driver; the bench
/// runs spec by spec to time FAISS between them).
#[cfg(test)]
pub(crate) fn run(
    data: &LoadedDataset,
    cfg: &BenchConfig,
    mut progress: impl FnMut(&str),
) -> Result<Vec<BenchRow>> {
    let mut rows = Vec::new();
    for spec in &cfg.specs {
        rows.extend(run_spec(data, cfg, spec, &mut progress)?.0);
    }
    Ok(rows)
}

/// Builds `spec` on `data`, searches it with every parameter set of `cfg`'s sweeps
/// (recall, QPS on one thread and on `cfg.threads`, memory, distortion) and returns
/// the rows with the index they measured (for more timings of the same searches).
pub fn run_spec(
    data: &LoadedDataset,
    cfg: &BenchConfig,
    spec: &str,
    mut progress: impl FnMut(&str),
) -> Result<(Vec<BenchRow>, Box<dyn Index>)> {
    let threads = if cfg.threads == 0 {
        rayon::current_num_threads()
    } else {
        cfg.threads
    };
    let mut rows = Vec::new();
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
        sets.extend(plain.iter().map(|p| p.rerank(cfg.rerank)));
        // Codes with error bounds also re-rank adaptively, from a pool ten times as
        // deep: only candidates whose lower bound beats the k-th exact distance are
        // re-scored, so the pool must hold them all (a pool cut short by lower
        // bounds favours the least certain rows), and the row reports how many
        // were re-scored per query.
        if spec
            .parse::<IndexSpec>()
            .is_ok_and(|t| t.has_error_bounds())
        {
            sets.extend(plain.iter().map(|p| {
                p.rerank(cfg.rerank.saturating_mul(ADAPTIVE_POOL))
                    .adaptive_rerank(true)
            }));
        }
    }
    for params in &sets {
        progress(&format!("searching {spec}"));
        let (res, qps, reranked) = timed_search(index.as_ref(), &data.data.query, params, 1)?;
        let (_, qps_all, _) = timed_search(index.as_ref(), &data.data.query, params, threads)?;
        let reranked_per_query = reranked.filter(|_| params.rerank > 0);
        rows.push(BenchRow {
            dataset: data.name.clone(),
            spec: spec.to_string(),
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
            reranked_per_query,
        });
    }
    Ok((rows, index))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use vecquant::data::generate::DataDistribution;
    use vecquant::eval::report::markdown_table;

    /// A 2000 × 16 seeded Gaussian set with `n_train` training vectors, on disk.
    pub(crate) fn small_set(n_train: usize) -> (tempfile::TempDir, LoadedDataset) {
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
    fn splits_spec_lists_keeping_composites_together() {
        assert_eq!(
            split_specs("Flat,OPQ16,PQ16,SQ8").unwrap(),
            ["Flat", "OPQ16,PQ16", "SQ8"]
        );
        assert_eq!(
            split_specs("IVF64,PQ8x4fs;HNSW32").unwrap(),
            ["IVF64,PQ8x4fs", "HNSW32"]
        );
        assert_eq!(
            split_specs(" SQ8 , ,IVF16,Flat,").unwrap(),
            ["SQ8", "IVF16,Flat"]
        );
    }

    /// Issue 17 item 9: a spec's own commas are kept (HNSW over SQ8, OPQ before IVF),
    /// `;` separates, and a piece that starts no spec is an error naming it.
    #[test]
    fn item9_composite_specs_split_by_the_spec_grammar() {
        assert_eq!(
            split_specs("HNSW16,SQ8,Flat").unwrap(),
            ["HNSW16,SQ8", "Flat"]
        );
        assert_eq!(
            split_specs("OPQ16,IVF64,PQ16;Flat").unwrap(),
            ["OPQ16,IVF64,PQ16", "Flat"]
        );
        assert_eq!(
            split_specs("OPQ16,IVF64,PQ16x4fs,SQ8,HNSW8,PQ4,PQ8").unwrap(),
            ["OPQ16,IVF64,PQ16x4fs", "SQ8", "HNSW8,PQ4", "PQ8"]
        );
        assert_eq!(
            split_specs("HNSW16;SQ8;Flat").unwrap(),
            ["HNSW16", "SQ8", "Flat"]
        );
        assert_eq!(
            split_specs("hnsw16,sq8 ; ivf64, pq8x4fs").unwrap(),
            ["HNSW16,SQ8", "IVF64,PQ8x4fs"]
        );
        for (list, piece) in [
            ("Flat,SQ9,PQ16", "`SQ9`"),
            ("OPQ16,PQ32", "`OPQ16`"),
            ("SQ8;IVF64", "`IVF64`"),
        ] {
            let err = split_specs(list).unwrap_err().to_string();
            assert!(err.contains("`--specs`"), "{list}: {err}");
            assert!(err.contains(piece), "{list}: {err}");
            assert!(err.contains("accepted forms: Flat, SQ8"), "{list}: {err}");
        }
        let err = split_specs("OPQ16,PQ32").unwrap_err().to_string();
        assert!(
            err.contains("`OPQ16,PQ32`") && err.contains("must equal"),
            "{err}"
        );
        assert!(split_specs(" ; , ").is_err());
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
