//! The files `vecquant bench` writes: the markdown, JSON and CSV reports (formatted by
//! [`vecquant::eval::report`]) and the two plots.

use std::path::{Path, PathBuf};

use vecquant::data::{LoadedDataset, write_file_atomic};
use vecquant::eval::report::{
    BenchRow, BenchSetup, FaissRow, effective_params, markdown_report, results_csv, results_json,
};
use vecquant::{Error, Result};

use crate::cli::plot::{Chart, Series, Ticks, family_of, write_chart};

/// Curves for the plots: one per spec (and per spec with re-ranking), then one per FAISS
/// spec; x is QPS if `qps`, else bytes per vector; y is 10-recall@10.
///
/// On the memory plot a re-ranked row's x counts the raw vectors it reads besides its
/// codes (issue 17 item 11: at its code size alone it claimed re-ranked recall at 16 B).
/// Legends name the effective parameters ([`param_label`] without `k`, the same for
/// every row); a swept nprobe / ef is written beside each point.
fn curves(rows: &[BenchRow], faiss: &[FaissRow], qps: bool) -> Vec<Series> {
    // (series key, spec, swept parameter name, points, point values)
    struct Curve {
        key: String,
        spec: String,
        fixed: String,
        swept: Option<&'static str>,
        points: Vec<(f64, f64)>,
        values: Vec<usize>,
        reference: bool,
        reranked: bool,
    }
    let mut out: Vec<Curve> = Vec::new();
    let mut add = |c: Curve, point: (f64, f64), value: Option<usize>| {
        let at = match out.iter().position(|s| s.key == c.key) {
            Some(i) => i,
            None => {
                out.push(c);
                out.len() - 1
            }
        };
        out[at].points.push(point);
        out[at].values.extend(value);
    };
    for r in rows {
        let (nprobe, ef, rerank) = effective_params(&r.spec, &r.params);
        let (swept, value) = match (nprobe, ef) {
            (Some(n), _) => (Some("nprobe"), Some(n)),
            (None, Some(e)) => (Some("ef"), Some(e)),
            _ => (None, None),
        };
        let adaptive = if r.params.adaptive_rerank {
            " adaptive"
        } else {
            ""
        };
        let fixed = rerank.map_or(String::new(), |r| format!(" rerank={r}{adaptive}"));
        let reranked = r.params.rerank > 0;
        let x = if qps {
            r.qps
        } else if reranked && r.n > 0 {
            r.bytes_per_vector + r.raw_bytes as f64 / r.n as f64
        } else {
            r.bytes_per_vector
        };
        let curve = Curve {
            key: format!("{}{fixed}", r.spec),
            spec: r.spec.clone(),
            fixed,
            swept,
            points: Vec::new(),
            values: Vec::new(),
            reference: false,
            reranked,
        };
        add(curve, (x, r.recall_at_10), value);
    }
    for f in faiss {
        let x = if qps { f.qps } else { f.bytes_per_vector };
        let (swept, value) = match (f.nprobe, f.ef) {
            (Some(n), _) => (Some("nprobe"), Some(n)),
            (None, Some(e)) => (Some("ef"), Some(e)),
            _ => (None, None),
        };
        let curve = Curve {
            key: format!("faiss {}", f.spec),
            spec: f.spec.clone(),
            fixed: String::new(),
            swept,
            points: Vec::new(),
            values: Vec::new(),
            reference: true,
            reranked: false,
        };
        add(curve, (x, f.recall_at_10), value);
    }
    // One marker shape per spec within its family; FAISS's points take the shape of the
    // same spec of ours.
    let mut shapes: Vec<(String, usize)> = Vec::new();
    out.into_iter()
        .map(|c| {
            let family = family_of(&c.spec);
            let variant = match shapes.iter().find(|(s, _)| *s == c.spec) {
                Some(&(_, v)) => v,
                None => {
                    let v = shapes
                        .iter()
                        .filter(|(s, _)| family_of(s) == family)
                        .count();
                    shapes.push((c.spec.clone(), v));
                    v
                }
            };
            let swept = c
                .swept
                .map_or(String::new(), |name| match c.values.as_slice() {
                    [one] => format!(" {name}={one}"),
                    [first, .., last] => format!(" {name}={first}..{last} (at points)"),
                    [] => String::new(),
                });
            let point_labels = if c.values.len() > 1 {
                c.values.iter().map(|v| v.to_string()).collect()
            } else {
                Vec::new()
            };
            let prefix = if c.reference { "faiss " } else { "" };
            Series {
                label: format!("{prefix}{}{}{swept}", c.spec, c.fixed),
                family,
                variant,
                points: c.points,
                point_labels,
                reference: c.reference,
                reranked: c.reranked,
            }
        })
        .collect()
}

/// Writes `report.md`, `results.json`, `results.csv`, `recall_vs_memory.{svg,png}` and
/// `recall_vs_qps.{svg,png}` into `dir`. Returns the files written.
pub fn write_report(
    dir: &Path,
    data: &LoadedDataset,
    rows: &[BenchRow],
    faiss: &[FaissRow],
    machine: &str,
) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let setup = BenchSetup {
        dataset: data.name.clone(),
        n: data.data.base.len(),
        dim: data.data.base.dim(),
        queries: data.data.query.len(),
        machine: machine.to_string(),
    };
    let title = setup.title();
    let mut files = Vec::new();
    let memory = Chart {
        title: &format!("recall@10 vs memory: {title}"),
        x_label: "bytes per vector (codes; re-ranked rows add the raw vectors; log scale)",
        y_label: "10-recall@10",
        larger_x_is_better: false,
        ticks: Ticks::PowersOfTwo,
    };
    let speed = Chart {
        title: &format!("recall@10 vs speed: {title}"),
        x_label: "queries per second, 1 thread (log scale)",
        y_label: "10-recall@10",
        larger_x_is_better: true,
        ticks: Ticks::Decimal,
    };
    for (stem, chart, qps) in [
        ("recall_vs_memory", memory, false),
        ("recall_vs_qps", speed, true),
    ] {
        write_chart(&dir.join(stem), &chart, &curves(rows, faiss, qps))?;
        files.push(dir.join(format!("{stem}.svg")));
        files.push(dir.join(format!("{stem}.png")));
    }
    for (name, text) in [
        ("report.md", markdown_report(&setup, rows, faiss)),
        ("results.json", results_json(&setup, rows, faiss)?),
        ("results.csv", results_csv(rows, faiss)),
    ] {
        let p = dir.join(name);
        write_file_atomic(&p, text.as_bytes())?;
        files.push(p);
    }
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
        vecquant::simd_level()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::bench::driver::tests::small_set;
    use crate::cli::bench::driver::{BenchConfig, run};
    use vecquant::SearchParams;
    use vecquant::index::spec::BuildOptions;

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
        assert!(files.iter().all(|f| f.exists()), "{files:?}");
        let md = std::fs::read_to_string(out.join("report.md")).unwrap();
        assert!(
            md.contains("| SQ8 | k=10 rerank=0 |")
                && md.contains("0.9500")
                && md.contains("test machine")
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
        // One curve per spec (IVF's two nprobe points on one curve) plus FAISS's.
        let c = curves(&rows, &faiss, true);
        let labels: Vec<&str> = c.iter().map(|s| s.label.as_str()).collect();
        assert_eq!(
            labels,
            [
                "Flat",
                "SQ8 rerank=0",
                "IVF16,Flat nprobe=1..4 (at points)",
                "faiss SQ8"
            ]
        );
        assert_eq!(c[2].points.len(), 2);
        assert_eq!(c[2].point_labels, ["1", "4"]);
        assert!(c[3].reference && !c[0].reference);
        assert_eq!((c[3].family, c[3].variant), (c[1].family, c[1].variant));
    }

    /// Issue 17 item 11: on the memory plot a re-ranked row sits at its codes plus the raw
    /// vectors it reads, so the frontier no longer claims re-ranked recall at code size.
    #[test]
    fn item11_reranked_rows_count_their_raw_vectors_on_the_memory_plot() {
        let p = SearchParams::with_k(10);
        let row = |params: SearchParams, recall: f64| BenchRow {
            dataset: "toy".into(),
            spec: "PQ16".into(),
            params,
            n: 1000,
            dim: 128,
            k: 10,
            recall_at_1: recall,
            recall_at_10: recall,
            qps: 1000.0,
            qps_all_threads: 2000.0,
            threads: 2,
            bytes_per_vector: 16.0,
            index_bytes: 1000 * (16 + 512),
            build_secs: 1.0,
            raw_bytes: 1000 * 512,
            mse: Some(1.0),
            mse_ratio: Some(1.3),
            reranked_per_query: Some(100.0),
        };
        let rows = [row(p, 0.13), row(p.rerank(100), 0.977)];
        let c = curves(&rows, &[], false);
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].points, [(16.0, 0.13)]);
        assert_eq!(c[1].points, [(528.0, 0.977)], "codes + 512 B of raw vector");
        assert!(c[1].reranked && c[1].label == "PQ16 rerank=100");
        let all: Vec<(f64, f64)> = c.iter().flat_map(|s| s.points.clone()).collect();
        let front = crate::cli::plot::pareto(&all, false);
        assert!(!front.contains(&(16.0, 0.977)));
        assert_eq!(front, [(16.0, 0.13), (528.0, 0.977)]);
        // Speed is what it is: the QPS plot keeps the measured rate.
        assert_eq!(curves(&rows, &[], true)[1].points, [(1000.0, 0.977)]);
    }
}
