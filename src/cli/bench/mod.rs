//! `vecquant bench`: the benchmark driver ([`driver`]), the FAISS comparison ([`faiss`])
//! and the report files ([`report`]).

mod driver;
mod faiss;
mod report;

use std::path::PathBuf;
use std::time::Instant;

use clap::Args;
use vecquant::Result;
use vecquant::data::load_dataset;
use vecquant::eval::report::{BenchRow, FaissRow, markdown_table};
use vecquant::index::spec::BuildOptions;

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
            let one = BenchConfig {
                specs: vec![spec.to_string()],
                ..cfg.clone()
            };
            driver::run(&loaded, &one, |m| say(m))
        },
        |spec, time_exact| {
            say(&format!("running benches/compare_faiss.py for {spec}"));
            faiss::run_faiss(&a.python, &script, &loaded, spec, &cfg, time_exact)
        },
    )?;
    let table = markdown_table(&rows);
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

/// Every spec measured by `ours`, and with `compare` each FAISS-compatible one by
/// `theirs` straight after it, so that the two sides of a row are measured seconds
/// apart, not minutes (a shared machine's speed drifts). `theirs` times FAISS's exact
/// search (its flag) until a run has returned rows. A spec whose FAISS run fails is
/// named in a note and the others still compare; a failure of the interpreter itself
/// ([`faiss::Skip::All`]) ends the calls, as does having no compatible spec at all.
fn measure_specs(
    specs: &[String],
    compare: bool,
    mut ours: impl FnMut(&str) -> Result<Vec<BenchRow>>,
    mut theirs: impl FnMut(&str, bool) -> Result<std::result::Result<Vec<FaissRow>, faiss::Skip>>,
) -> Result<(Vec<BenchRow>, Vec<FaissRow>)> {
    let mut compare = compare;
    if compare && !specs.iter().any(|s| faiss::faiss_compatible(s)) {
        eprintln!("note: FAISS comparison skipped: no spec has a FAISS equivalent");
        compare = false;
    }
    let (mut rows, mut faiss) = (Vec::new(), Vec::new());
    for spec in specs {
        rows.extend(ours(spec)?);
        if compare && faiss::faiss_compatible(spec) {
            match theirs(spec, faiss.is_empty())? {
                Ok(r) => faiss.extend(r),
                Err(faiss::Skip::Spec(why)) => {
                    eprintln!("note: FAISS comparison of {spec} skipped: {why}")
                }
                Err(faiss::Skip::All(why)) => {
                    eprintln!("note: FAISS comparison skipped: {why}");
                    compare = false;
                }
            }
        }
    }
    Ok((rows, faiss))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each compatible spec's FAISS run comes straight after vecquant's run of the same
    /// spec (not all of FAISS after all of vecquant); exact search is timed until a run
    /// returned rows; a failing spec does not stop the others, a failing interpreter
    /// does; nothing is called for FAISS without `compare`.
    #[test]
    fn faiss_runs_interleave_with_ours_spec_by_spec() {
        let specs: Vec<String> = ["SQ8", "SQ8u", "PQ4", "Flat", "HNSW8", "PQ8"]
            .map(String::from)
            .to_vec();
        let row = |spec: &str| FaissRow {
            spec: spec.into(),
            nprobe: None,
            ef: None,
            recall_at_1: 0.5,
            recall_at_10: 0.5,
            qps: 1.0,
            bytes_per_vector: 1.0,
        };
        let run = |compare: bool| {
            let log = std::cell::RefCell::new(Vec::new());
            let (rows, faiss) = measure_specs(
                &specs,
                compare,
                |s| {
                    log.borrow_mut().push(format!("ours {s}"));
                    Ok(Vec::new())
                },
                |s, exact| {
                    log.borrow_mut().push(format!("faiss {s} {exact}"));
                    Ok(match s {
                        "SQ8" => Err(faiss::Skip::Spec("boom".into())),
                        "HNSW8" => Err(faiss::Skip::All("no faiss".into())),
                        _ => Ok(vec![row(s)]),
                    })
                },
            )
            .unwrap();
            assert!(rows.is_empty());
            (log.into_inner(), faiss)
        };
        let (log, faiss) = run(true);
        assert_eq!(
            log,
            [
                "ours SQ8",
                "faiss SQ8 true",
                "ours SQ8u",
                "ours PQ4",
                "faiss PQ4 true",
                "ours Flat",
                "faiss Flat false",
                "ours HNSW8",
                "faiss HNSW8 false",
                "ours PQ8",
            ]
        );
        assert_eq!(faiss, [row("PQ4"), row("Flat")]);
        let (log, faiss) = run(false);
        assert!(log.iter().all(|l| l.starts_with("ours")) && log.len() == specs.len());
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
