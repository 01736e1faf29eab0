//! Benchmark reports: one [`BenchRow`] per measured configuration, rendered as a
//! markdown table, CSV or JSON, optionally beside FAISS's measurements of the same
//! specs ([`FaissRow`], the output of `benches/compare_faiss.py`).

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::index::SearchParams;

/// One measured configuration: an index spec searched with one parameter set.
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
    /// Candidates re-scored exactly per query, on average (re-ranked rows of kinds that
    /// count them: [`crate::Index::search_batch_counted`]).
    #[serde(default)]
    pub reranked_per_query: Option<f64>,
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

/// What a report says about the run besides its rows.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct BenchSetup {
    /// Data set name.
    pub dataset: String,
    /// Base vectors.
    pub n: usize,
    /// Dimension.
    pub dim: usize,
    /// Queries.
    pub queries: usize,
    /// The machine (CPU, threads, SIMD level).
    pub machine: String,
}

impl BenchSetup {
    /// `"name (n x d, q queries)"`, the heading of reports and plots.
    pub fn title(&self) -> String {
        format!(
            "{} ({} x {}, {} queries)",
            self.dataset, self.n, self.dim, self.queries
        )
    }
}

/// The heading of the multi-threaded QPS column: the thread count the rows used
/// (`QPS 2 thr`), or "all" when the rows differ. With `--threads 1` it is a second
/// one-thread timing beside the compared best-of-rounds one, and says so
/// (`QPS 1 thr, again`): two columns both headed "QPS 1 thr" with different numbers read
/// as a mistake.
fn threads_heading(rows: &[BenchRow]) -> String {
    match rows.first().map(|r| r.threads) {
        Some(1) if rows.iter().all(|r| r.threads == 1) => "QPS 1 thr, again".into(),
        Some(t) if t > 0 && rows.iter().all(|r| r.threads == t) => format!("QPS {t} thr"),
        _ => "QPS all thr".into(),
    }
}

/// The heading and alignment lines of a table of `rows`: the columns of
/// [`row_cells`], then `extra` right-aligned ones.
fn table_head(rows: &[BenchRow], extra: &[&str]) -> String {
    let cols = [
        "spec",
        "params",
        "bytes/vec",
        "index MB (w/o raw)",
        "build s",
        "R@1",
        "10-R@10",
        "QPS 1 thr",
        &threads_heading(rows),
        "MSE/D(R)",
    ];
    let names: Vec<&str> = cols.iter().copied().chain(extra.iter().copied()).collect();
    let align: Vec<&str> = (0..names.len())
        .map(|i| if i < 2 { "---" } else { "---:" })
        .collect();
    format!("| {} |\n| {} |\n", names.join(" | "), align.join(" | "))
}

/// A markdown table of benchmark rows.
pub fn markdown_table(rows: &[BenchRow]) -> String {
    let mut s = table_head(rows, &[]);
    for r in rows {
        s.push_str(&row_cells(r));
        s.push('\n');
    }
    s
}

/// A markdown table of benchmark rows with FAISS's recall@10 and QPS beside each row
/// it measured too, and the QPS ratio (`–` where FAISS has no such row).
pub fn comparison_table(rows: &[BenchRow], faiss: &[FaissRow]) -> String {
    let mut s = table_head(rows, &["faiss 10-R@10", "faiss QPS", "QPS ratio"]);
    for r in rows {
        let f = faiss_match(r, faiss);
        s.push_str(&format!(
            "{} {} | {} | {} |\n",
            row_cells(r),
            f.map_or("–".into(), |f| format!("{:.4}", f.recall_at_10)),
            f.map_or("–".into(), |f| format!("{:.0}", f.qps)),
            f.map_or("–".into(), |f| format!("{:.2}×", r.qps / f.qps.max(1e-9))),
        ));
    }
    s
}

/// The full markdown report: machine, title, one table with FAISS's recall and QPS beside
/// each row it measured too (and the QPS ratio), and links to the two plots
/// `recall_vs_memory.png` and `recall_vs_qps.png`.
pub fn markdown_report(setup: &BenchSetup, rows: &[BenchRow], faiss: &[FaissRow]) -> String {
    let mut md = format!(
        "# vecquant benchmark\n\nMachine: {}\n\n## {}\n\n",
        setup.machine,
        setup.title()
    );
    md.push_str(&comparison_table(rows, faiss));
    md.push_str(
        "\n![recall vs memory](recall_vs_memory.png)\n\n![recall vs QPS](recall_vs_qps.png)\n",
    );
    if !faiss.is_empty() {
        md.push_str(&format!(
            "\nQPS 1 thr and faiss QPS of the rows compared: each side's best of {TIMING_ROUNDS} \
             single-threaded timings (each at least 0.2 s), taken in alternating rounds — \
             vecquant, FAISS, vecquant, … — so that both see the same machine load.\n"
        ));
    }
    if faiss.is_empty() {
        md.push_str("\nFAISS was not run (`vecquant bench --compare-faiss --python PATH` runs `benches/compare_faiss.py` on the same files).\n");
    }
    md
}

/// The rows as CSV (header line first), with FAISS's recall and QPS for the rows it
/// measured too. `params` is the row's [`param_label`]; `nprobe`, `ef` and `rerank` are
/// empty where the row's index does not read them ([`effective_params`]).
pub fn results_csv(rows: &[BenchRow], faiss: &[FaissRow]) -> String {
    let mut csv = String::from(
        "dataset,spec,params,k,nprobe,ef,rerank,bytes_per_vector,index_bytes,raw_bytes,build_secs,recall_at_1,recall_at_10,qps,qps_all_threads,threads,mse,mse_ratio,faiss_recall_at_10,faiss_qps\n",
    );
    for r in rows {
        let f = faiss_match(r, faiss);
        let opt = |v: Option<f64>| v.map_or(String::new(), |v| v.to_string());
        let used = |v: Option<usize>| v.map_or(String::new(), |v| v.to_string());
        let (nprobe, ef, rerank) = effective_params(&r.spec, &r.params);
        csv.push_str(&format!(
            "{},\"{}\",{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}\n",
            r.dataset,
            r.spec,
            param_label(&r.spec, &r.params),
            r.params.k,
            used(nprobe),
            used(ef),
            used(rerank),
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
    csv
}

/// The setup's fields, `results` (the rows, each with its [`param_label`] as `label` and
/// [`effective_params`] as `nprobe`, `ef` and `rerank`, `null` where unused) and
/// `faiss`, as pretty-printed JSON.
///
/// # Errors
/// [`Error::InvalidParameter`] if serialisation fails (it does not for these types;
/// the error is surfaced rather than unwrapped).
pub fn results_json(setup: &BenchSetup, rows: &[BenchRow], faiss: &[FaissRow]) -> Result<String> {
    #[derive(Serialize)]
    struct Labelled<'a> {
        #[serde(flatten)]
        row: &'a BenchRow,
        label: String,
        nprobe: Option<usize>,
        ef: Option<usize>,
        rerank: Option<usize>,
    }
    #[derive(Serialize)]
    struct Results<'a> {
        #[serde(flatten)]
        setup: &'a BenchSetup,
        results: Vec<Labelled<'a>>,
        faiss: &'a [FaissRow],
    }
    let results = rows
        .iter()
        .map(|row| {
            let (nprobe, ef, rerank) = effective_params(&row.spec, &row.params);
            Labelled {
                row,
                label: param_label(&row.spec, &row.params),
                nprobe,
                ef,
                rerank,
            }
        })
        .collect();
    serde_json::to_string_pretty(&Results {
        setup,
        results,
        faiss,
    })
    .map_err(|e| Error::param("report", format!("cannot serialise the results: {e}")))
}

/// The FAISS row measured with the same spec and sweep parameter as `r`.
fn faiss_match<'a>(r: &BenchRow, faiss: &'a [FaissRow]) -> Option<&'a FaissRow> {
    faiss.iter().find(|f| faiss_matches(r, f))
}

/// Whether `f` is FAISS's measurement of `r`'s search: the same spec and sweep
/// parameter (`nprobe` for IVF, `ef` for HNSW), and `r` not re-ranked.
pub fn faiss_matches(r: &BenchRow, f: &FaissRow) -> bool {
    r.params.rerank == 0
        && f.spec == r.spec
        && (!r.spec.starts_with("IVF") || f.nprobe == Some(r.params.nprobe))
        && (!r.spec.starts_with("HNSW") || f.ef == Some(r.params.ef_search))
}

/// Timings of each side of a FAISS comparison (`vecquant bench --compare-faiss`): the
/// rows compared keep the best of this many single-threaded timings per side, taken in
/// alternating rounds (vecquant, FAISS, vecquant, …) so that both see the same load on
/// a shared machine.
pub const TIMING_ROUNDS: usize = 3;

/// The first ten cells of a row of [`markdown_table`] (spec … MSE/D(R)), with the
/// leading and trailing `|`.
fn row_cells(r: &BenchRow) -> String {
    format!(
        "| {} | {} | {:.1} | {:.1} | {:.2} | {:.4} | {:.4} | {:.0} | {:.0} | {} |",
        r.spec,
        match r.reranked_per_query {
            Some(m) if r.params.adaptive_rerank && r.params.rerank > 0 => {
                format!(
                    "{} ({m:.1} re-ranked/query)",
                    param_label(&r.spec, &r.params)
                )
            }
            _ => param_label(&r.spec, &r.params),
        },
        r.bytes_per_vector,
        r.index_bytes.saturating_sub(r.raw_bytes) as f64 / 1e6,
        r.build_secs,
        r.recall_at_1,
        r.recall_at_10,
        r.qps,
        r.qps_all_threads,
        r.mse_ratio.map_or("–".into(), |m| format!("{m:.2}"))
    )
}

/// The search parameters a row of `spec` ran with that its index reads (issue 17 item
/// 18): `nprobe` for an inverted file, `ef` for an HNSW graph, `rerank` for an index over
/// codes; `None` for the ones it ignores. A spec that does not parse reports all three.
pub fn effective_params(
    spec: &str,
    p: &SearchParams,
) -> (Option<usize>, Option<usize>, Option<usize>) {
    use crate::index::spec::IndexSpec;
    let Ok(typed) = spec.parse::<IndexSpec>() else {
        return (Some(p.nprobe), Some(p.ef_search), Some(p.rerank));
    };
    let codes = !typed.is_exact();
    (
        typed.uses_nprobe().then_some(p.nprobe),
        typed.uses_ef().then_some(p.ef_search),
        (codes || p.rerank > 0).then_some(p.rerank),
    )
}

/// `k=10 nprobe=8 rerank=0`: `k` and every parameter [`effective_params`] says the row
/// of `spec` used, defaults included.
pub fn param_label(spec: &str, p: &SearchParams) -> String {
    let (nprobe, ef, rerank) = effective_params(spec, p);
    let mut parts = vec![format!("k={}", p.k)];
    for (name, v) in [("nprobe", nprobe), ("ef", ef), ("rerank", rerank)] {
        if let Some(v) = v {
            parts.push(format!("{name}={v}"));
        }
    }
    if p.adaptive_rerank && p.rerank > 0 {
        parts.push("adaptive".into());
    }
    parts.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(spec: &str, params: SearchParams, recall_at_10: f64, qps: f64) -> BenchRow {
        BenchRow {
            dataset: "toy".into(),
            spec: spec.into(),
            params,
            n: 1000,
            dim: 16,
            k: params.k,
            recall_at_1: 0.5,
            recall_at_10,
            qps,
            qps_all_threads: 2.0 * qps,
            threads: 2,
            bytes_per_vector: 16.0,
            index_bytes: 2_000_000,
            build_secs: 0.25,
            raw_bytes: 500_000,
            mse: Some(0.01),
            mse_ratio: Some(1.5),
            reranked_per_query: None,
        }
    }

    #[test]
    fn markdown_csv_and_json_carry_every_row_and_the_matching_faiss_point() {
        let p = SearchParams::with_k(10);
        let rows = vec![
            row("SQ8", p, 0.9, 2000.0),
            row("SQ8", p.rerank(100), 0.99, 1500.0),
            row("IVF16,Flat", p.nprobe(4), 0.8, 4000.0),
            row("IVF16,Flat", p.nprobe(16), 1.0, 1000.0),
        ];
        let faiss = vec![
            FaissRow {
                spec: "SQ8".into(),
                nprobe: None,
                ef: None,
                recall_at_1: 0.5,
                recall_at_10: 0.95,
                qps: 1000.0,
                bytes_per_vector: 16.0,
            },
            FaissRow {
                spec: "IVF16,Flat".into(),
                nprobe: Some(16),
                ef: None,
                recall_at_1: 1.0,
                recall_at_10: 1.0,
                qps: 500.0,
                bytes_per_vector: 64.0,
            },
        ];
        let setup = BenchSetup {
            dataset: "toy".into(),
            n: 1000,
            dim: 16,
            queries: 20,
            machine: "test machine".into(),
        };
        let md = markdown_report(&setup, &rows, &faiss);
        assert!(
            md.contains("Machine: test machine") && md.contains("## toy (1000 x 16, 20 queries)")
        );
        // index MB excludes the raw vectors: (2,000,000 − 500,000) bytes.
        assert!(md.contains("| SQ8 | k=10 rerank=0 | 16.0 | 1.5 | 0.25 | 0.5000 | 0.9000 | 2000 | 4000 | 1.50 | 0.9500 | 1000 | 2.00× |"), "{md}");
        // Re-ranked rows and other nprobe values have no FAISS counterpart.
        assert!(md.contains("| SQ8 | k=10 rerank=100 |") && md.contains("| 1.50 | – | – | – |"));
        assert!(
            md.contains("| IVF16,Flat | k=10 nprobe=16 |")
                && md.contains("| 1.0000 | 500 | 2.00× |")
        );
        assert!(!md.contains("FAISS was not run"));
        assert!(markdown_report(&setup, &rows, &[]).contains("FAISS was not run"));

        let table = markdown_table(&rows);
        assert_eq!(table.lines().count(), 2 + rows.len());
        assert!(table.contains("| IVF16,Flat | k=10 nprobe=4 |"));
        // The multi-threaded column names the rows' thread count ("all" only when
        // they differ): with `--threads 1` it must not claim "all threads".
        assert!(table.contains("| QPS 1 thr | QPS 2 thr |") && md.contains("| QPS 2 thr |"));
        // The exact heading lines (one shared builder for both tables).
        assert!(table.starts_with(
            "| spec | params | bytes/vec | index MB (w/o raw) | build s | R@1 | 10-R@10 | QPS 1 thr | QPS 2 thr | MSE/D(R) |\n\
             | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n"
        ));
        assert!(md.contains(
            "| spec | params | bytes/vec | index MB (w/o raw) | build s | R@1 | 10-R@10 | QPS 1 thr | QPS 2 thr | MSE/D(R) | faiss 10-R@10 | faiss QPS | QPS ratio |\n\
             | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n"
        ));
        let mut one = rows.clone();
        one.iter_mut().for_each(|r| r.threads = 1);
        assert!(markdown_table(&one).contains("| QPS 1 thr | QPS 1 thr, again |"));
        one[0].threads = 2;
        assert!(markdown_table(&one).contains("| QPS all thr |"));

        let csv = results_csv(&rows, &faiss);
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(lines.len(), 1 + rows.len());
        // Every line has the header's number of fields (commas inside the quoted spec
        // do not count).
        let fields = |l: &str| {
            let mut quoted = false;
            1 + l
                .chars()
                .filter(|&c| {
                    quoted ^= c == '"';
                    c == ',' && !quoted
                })
                .count()
        };
        assert!(lines.iter().all(|l| fields(l) == fields(lines[0])), "{csv}");
        assert!(lines[1].ends_with(",0.95,1000"), "{}", lines[1]);
        assert!(
            lines[1].starts_with("toy,\"SQ8\",k=10 rerank=0,10,,,0,"),
            "{}",
            lines[1]
        );
        assert!(
            lines[4].starts_with("toy,\"IVF16,Flat\",k=10 nprobe=16,10,16,,,"),
            "{}",
            lines[4]
        );
        assert!(lines[2].ends_with(",,"), "{}", lines[2]);

        let json: serde_json::Value =
            serde_json::from_str(&results_json(&setup, &rows, &faiss).unwrap()).unwrap();
        assert_eq!(json["dataset"], "toy");
        assert_eq!(json["machine"], "test machine");
        let back: Vec<BenchRow> = serde_json::from_value(json["results"].clone()).unwrap();
        assert_eq!(back, rows);
        assert_eq!(json["faiss"].as_array().unwrap().len(), 2);
        assert_eq!(json["results"][2]["label"], "k=10 nprobe=4");
        assert_eq!(json["results"][2]["nprobe"], 4);
        assert!(json["results"][2]["ef"].is_null());
    }

    /// Issue 17 item 18: a row is labelled with every parameter its index reads, defaults
    /// included (the default-nprobe row of a sweep said only `k=10`).
    #[test]
    fn item18_labels_name_the_effective_parameters_defaults_included() {
        let p = SearchParams::with_k(10);
        assert_eq!(param_label("IVF256,PQ32x4fs", &p), "k=10 nprobe=8 rerank=0");
        assert_eq!(param_label("IVF16,Flat", &p.nprobe(4)), "k=10 nprobe=4");
        assert_eq!(param_label("HNSW32", &p), "k=10 ef=64");
        assert_eq!(
            param_label("HNSW32,SQ8", &p.rerank(50)),
            "k=10 ef=64 rerank=50"
        );
        assert_eq!(param_label("SQ8", &p.rerank(100)), "k=10 rerank=100");
        assert_eq!(param_label("PQ16", &p), "k=10 rerank=0");
        assert_eq!(param_label("Flat", &p), "k=10");
        assert_eq!(
            effective_params("OPQ16,IVF64,PQ16", &p.nprobe(32)),
            (Some(32), None, Some(0))
        );
        let table = markdown_table(&[row("IVF16,Flat", p, 0.9, 100.0)]);
        assert!(table.contains("| IVF16,Flat | k=10 nprobe=8 |"), "{table}");
    }
}
