//! `vecquant bench`: the benchmark driver ([`driver`]), the FAISS comparison ([`faiss`])
//! and the report files ([`report`]).

mod driver;
mod faiss;
mod report;

use std::path::PathBuf;
use std::time::Instant;

use clap::Args;
use vecquant::data::load_dataset;
use vecquant::eval::report::{
    BenchRow, FaissRow, TIMING_ROUNDS, comparison_table, faiss_matches, markdown_table,
};
use vecquant::eval::timed_search;
use vecquant::index::spec::BuildOptions;
use vecquant::{Result, SearchParams};

use super::{ParamArgs, spinner};
use driver::BenchConfig;

#[derive(Args)]
pub struct BenchArgs {
    /// Data directory with base.fvecs, query.fvecs [, train.fvecs, groundtruth.ivecs].
    #[arg(long)]
    data: Option<PathBuf>,
    #[arg(long, help = specs_help())]
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
}

/// The default set, as `--specs` would take it: [`driver::DEFAULT_SPECS`] joined by `; `.
fn default_set() -> String {
    driver::DEFAULT_SPECS.join("; ")
}

/// `bench --help`'s description (issue 17 item 15): what runs by default, quoted from
/// [`driver::DEFAULT_SPECS`], and an example on a line of its own.
pub fn long_about() -> String {
    format!(
        "Benchmark specs on a data set: recall, bytes/vector, QPS (the main job).\n\n\
         With no arguments: generates the default Gaussian set (100,000 × 128, 1,000 \
         queries, seed 42) into a cache folder and benchmarks the default set: {}. IVF \
         specs are swept over nprobe {:?} and HNSW specs over ef {:?} unless --nprobe / \
         --ef is given; quantized specs also run with --rerank {} (exact re-ranking), \
         and RaBitQ specs with error-bound re-ranking from a pool of {}× as many (the \
         table says how many were re-ranked per query).\n\n\
         Examples:\n\n\
         vecquant bench --data data --specs \"SQ8,IVF64,PQ8x4fs\" --out results\n\n\
         vecquant bench --compare-faiss --python ~/faiss-venv/bin/python",
        default_set(),
        driver::DEFAULT_NPROBE_SWEEP,
        driver::DEFAULT_EF_SWEEP,
        driver::DEFAULT_RERANK,
        driver::ADAPTIVE_POOL,
    )
}

/// The help of `--specs`.
fn specs_help() -> String {
    format!(
        "Specs separated by `;`, or by `,` where a spec's own commas are kept together: \
         `HNSW16,SQ8,Flat` is `HNSW16,SQ8` and `Flat` (the longest run of pieces that is \
         a valid spec wins; write `HNSW16;SQ8;Flat` for three). Default: the default set: \
         {}.",
        default_set()
    )
}

pub fn run(a: BenchArgs) -> Result<()> {
    super::paths::check_output_dir("--out", &a.out)?;
    let t0 = Instant::now();
    // A spinner with the current step when stdout is a terminal; silent otherwise.
    let bar = if a.quiet {
        indicatif::ProgressBar::hidden()
    } else {
        spinner()
    };
    let say = |m: &str| {
        bar.set_message(format!("[{:6.1}s] {m}", t0.elapsed().as_secs_f64()));
    };
    say("loading data");
    let loaded = match &a.data {
        Some(d) => load_dataset(d)?,
        None => driver::default_dataset(&a.cache)?,
    };
    say(&format!(
        "data `{}`: {} base, {} queries, {} train, dim {}",
        loaded.name,
        loaded.data.base.len(),
        loaded.data.query.len(),
        loaded.data.train.len(),
        loaded.data.base.dim()
    ));
    let mut base = a.params.apply(a.k);
    let rerank = std::mem::take(&mut base.rerank);
    let cfg = BenchConfig {
        nprobe_sweep: match a.params.nprobe {
            Some(n) => vec![n],
            None => driver::DEFAULT_NPROBE_SWEEP.to_vec(),
        },
        ef_sweep: match a.params.ef {
            Some(e) => vec![e],
            None => driver::DEFAULT_EF_SWEEP.to_vec(),
        },
        specs: a
            .specs
            .as_deref()
            .map_or_else(|| Ok(driver::default_specs()), driver::split_specs)?,
        params: vec![base],
        rerank: if a.params.rerank.is_some() {
            rerank
        } else {
            driver::DEFAULT_RERANK
        },
        threads: a.threads,
        build: BuildOptions {
            seed: a.seed,
            ..Default::default()
        },
    };
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("benches/compare_faiss.py");
    let (rows, faiss) = measure_specs(
        &cfg.specs,
        a.compare_faiss,
        |spec| {
            let (rows, index) = driver::run_spec(&loaded, &cfg, spec, |m| say(m))?;
            let queries = &loaded.data.query;
            let retime: Retime<'_> = Box::new(move |p: &SearchParams| {
                timed_search(index.as_ref(), queries, p, 1).map(|t| t.1)
            });
            Ok((rows, retime))
        },
        |spec, time_exact| {
            say(&format!("running benches/compare_faiss.py for {spec}"));
            Ok(
                faiss::run_faiss(&a.python, &script, &loaded, spec, &cfg, time_exact)?.map(
                    |(rows, mut session)| {
                        let retime: RetimeFaiss<'_> = Box::new(move |f: &FaissRow| session.time(f));
                        (rows, retime)
                    },
                ),
            )
        },
    )?;
    // FAISS's columns too when it ran: the comparison asked for is on the terminal, not
    // only in report.md.
    let table = if faiss.is_empty() {
        markdown_table(&rows)
    } else {
        comparison_table(&rows, &faiss)
    };
    outln!(
        "\n## {} ({} × {}, {} queries)\n\n{table}",
        loaded.name,
        loaded.data.base.len(),
        loaded.data.base.dim(),
        loaded.data.query.len()
    );
    let files = report::write_report(
        &a.out,
        &loaded,
        &rows,
        &faiss,
        &report::machine_description(),
    )?;
    bar.finish_and_clear();
    outln!(
        "wrote {} ({:.1} s)",
        files
            .iter()
            .map(|f| f.display().to_string())
            .collect::<Vec<_>>()
            .join(", "),
        t0.elapsed().as_secs_f64()
    );
    Ok(())
}

/// One more single-threaded timing (QPS) of the search a row measured.
type Retime<'a> = Box<dyn FnMut(&SearchParams) -> Result<f64> + 'a>;
/// One more timing (QPS) of the search a FAISS row measured; `None` once FAISS cannot
/// answer.
type RetimeFaiss<'a> = Box<dyn FnMut(&FaissRow) -> Option<f64> + 'a>;

/// Every spec measured by `ours`, and with `compare` each FAISS-compatible one by
/// `theirs` straight after it; then each row both measured is timed again on both
/// sides in alternating rounds, and each side keeps its best of [`TIMING_ROUNDS`]
/// timings — a shared machine's speed drifts by tens of per cent within seconds, so
/// one timing per side gave ratios that moved from 0.64× to 1.28× between runs of the
/// same code. `theirs` times FAISS's exact search (its flag) until a run has returned
/// rows. A spec whose FAISS run fails is named in a note and the others still compare;
/// a failure of the interpreter itself ([`faiss::Skip::All`]) ends the calls, as does
/// having no compatible spec at all.
fn measure_specs<'a>(
    specs: &[String],
    compare: bool,
    mut ours: impl FnMut(&str) -> Result<(Vec<BenchRow>, Retime<'a>)>,
    mut theirs: impl FnMut(
        &str,
        bool,
    )
        -> Result<std::result::Result<(Vec<FaissRow>, RetimeFaiss<'a>), faiss::Skip>>,
) -> Result<(Vec<BenchRow>, Vec<FaissRow>)> {
    let mut compare = compare;
    if compare && !specs.iter().any(|s| faiss::faiss_compatible(s)) {
        eprintln!("note: FAISS comparison skipped: no spec has a FAISS equivalent");
        compare = false;
    }
    let (mut rows, mut faiss) = (Vec::new(), Vec::new());
    for spec in specs {
        let (mut mine, mut retime) = ours(spec)?;
        if compare && faiss::faiss_compatible(spec) {
            match theirs(spec, faiss.is_empty())? {
                Ok((mut theirs_rows, mut retime_theirs)) => {
                    for _ in 1..TIMING_ROUNDS {
                        for r in mine.iter_mut() {
                            let Some(f) = theirs_rows.iter_mut().find(|f| faiss_matches(r, f))
                            else {
                                continue;
                            };
                            r.qps = r.qps.max(retime(&r.params)?);
                            if let Some(q) = retime_theirs(f) {
                                f.qps = f.qps.max(q);
                            }
                        }
                    }
                    faiss.extend(theirs_rows);
                }
                Err(faiss::Skip::Spec(why)) => {
                    eprintln!("note: FAISS comparison of {spec} skipped: {why}")
                }
                Err(faiss::Skip::All(why)) => {
                    eprintln!("note: FAISS comparison skipped: {why}");
                    compare = false;
                }
            }
        }
        rows.extend(mine);
    }
    Ok((rows, faiss))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each compatible spec's FAISS run comes straight after vecquant's run of the same
    /// spec (not all of FAISS after all of vecquant), and the rows both measured are
    /// then timed again alternately, each side keeping its best; exact search is timed
    /// until a run returned rows; a failing spec does not stop the others, a failing
    /// interpreter does; nothing is called for FAISS without `compare`.
    #[test]
    fn faiss_runs_interleave_with_ours_spec_by_spec() {
        let specs: Vec<String> = ["SQ8", "SQ8u", "PQ4", "Flat", "HNSW8", "PQ8"]
            .map(String::from)
            .to_vec();
        let row = |spec: &str, qps: f64| FaissRow {
            spec: spec.into(),
            nprobe: None,
            ef: None,
            recall_at_1: 0.5,
            recall_at_10: 0.5,
            qps,
            bytes_per_vector: 1.0,
        };
        // Ours: one plain and one re-ranked row per spec (only the plain one is
        // compared), first timed at 10 QPS.
        let ours_rows = |spec: &str| -> Vec<BenchRow> {
            let p = SearchParams::with_k(10);
            [p, p.rerank(50)]
                .into_iter()
                .map(|params| BenchRow {
                    dataset: "toy".into(),
                    spec: spec.into(),
                    params,
                    n: 100,
                    dim: 4,
                    k: 10,
                    recall_at_1: 1.0,
                    recall_at_10: 1.0,
                    qps: 10.0,
                    qps_all_threads: 20.0,
                    threads: 2,
                    bytes_per_vector: 4.0,
                    index_bytes: 400,
                    build_secs: 0.1,
                    raw_bytes: 0,
                    mse: None,
                    mse_ratio: None,
                    reranked_per_query: None,
                })
                .collect()
        };
        let run = |compare: bool| {
            let log = std::cell::RefCell::new(Vec::new());
            let log = &log;
            let (rows, faiss) = measure_specs(
                &specs,
                compare,
                |s| {
                    log.borrow_mut().push(format!("ours {s}"));
                    // Later timings: 30, then 20 QPS (the best, 30, is kept).
                    let mut next = [30.0, 20.0].into_iter();
                    let spec = s.to_string();
                    let retime: Retime<'_> = Box::new(move |p: &SearchParams| {
                        assert_eq!(p.rerank, 0, "only compared rows are timed again");
                        log.borrow_mut().push(format!("ours again {spec}"));
                        Ok(next.next().expect("two more rounds"))
                    });
                    Ok((ours_rows(s), retime))
                },
                |s, exact| {
                    log.borrow_mut().push(format!("faiss {s} {exact}"));
                    // FAISS's later timings: 3, then none (it stopped answering).
                    let mut next = [Some(3.0), None].into_iter();
                    let spec = s.to_string();
                    let retime: RetimeFaiss<'_> = Box::new(move |f: &FaissRow| {
                        assert_eq!(f.spec, spec);
                        log.borrow_mut().push(format!("faiss again {spec}"));
                        next.next().expect("two more rounds")
                    });
                    Ok(match s {
                        "SQ8" => Err(faiss::Skip::Spec("boom".into())),
                        "HNSW8" => Err(faiss::Skip::All("no faiss".into())),
                        _ => Ok((vec![row(s, 2.0)], retime)),
                    })
                },
            )
            .unwrap();
            (log.take(), rows, faiss)
        };
        let (log, rows, faiss) = run(true);
        let again = |s: &str| [format!("ours again {s}"), format!("faiss again {s}")];
        let mut want: Vec<String> = vec!["ours SQ8".into(), "faiss SQ8 true".into()];
        want.extend([
            "ours SQ8u".into(),
            "ours PQ4".into(),
            "faiss PQ4 true".into(),
        ]);
        want.extend(again("PQ4").into_iter().chain(again("PQ4")));
        want.extend(["ours Flat".into(), "faiss Flat false".into()]);
        want.extend(again("Flat").into_iter().chain(again("Flat")));
        want.extend([
            "ours HNSW8".into(),
            "faiss HNSW8 false".into(),
            "ours PQ8".into(),
        ]);
        assert_eq!(log, want);
        assert_eq!(faiss, [row("PQ4", 3.0), row("Flat", 3.0)]);
        // Every spec's rows, in order; the compared plain rows keep their best timing.
        let got: Vec<(&str, usize, f64)> = rows
            .iter()
            .map(|r| (r.spec.as_str(), r.params.rerank, r.qps))
            .collect();
        let mut expect = Vec::new();
        for s in ["SQ8", "SQ8u", "PQ4", "Flat", "HNSW8", "PQ8"] {
            let best = if matches!(s, "PQ4" | "Flat") {
                30.0
            } else {
                10.0
            };
            expect.extend([(s, 0, best), (s, 50, 10.0)]);
        }
        assert_eq!(got, expect);
        let (log, _, faiss) = run(false);
        assert!(log.iter().all(|l| l.starts_with("ours ")) && log.len() == specs.len());
        assert!(faiss.is_empty());
    }

    /// Issue 17 item 15: the help lists exactly the specs a plain `bench` runs.
    #[test]
    fn item15_help_lists_the_default_set_the_code_runs() {
        use clap::CommandFactory;
        let mut cli = crate::cli::Cli::command();
        let bench = cli.find_subcommand_mut("bench").unwrap();
        let help = bench.render_long_help().to_string();
        let listed = help
            .split("the default set: ")
            .nth(1)
            .and_then(|t| t.split(". ").next())
            .unwrap_or_else(|| panic!("{help}"));
        assert_eq!(
            driver::split_specs(listed).unwrap(),
            driver::default_specs()
        );
        assert!(!help.contains("every known spec"), "{help}");
        assert!(help.contains(&format!("Default: the default set: {}.", default_set())));
    }
}
