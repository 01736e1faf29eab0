//! The files `vecquant bench` writes: the markdown, JSON and CSV reports (formatted by
//! [`vecquant::eval::report`]) and the two plots.

use std::path::{Path, PathBuf};

use vecquant::data::{LoadedDataset, write_file_atomic};
use vecquant::eval::report::{
    BenchRow, BenchSetup, FaissRow, markdown_report, results_csv, results_json,
};
use vecquant::{Error, Result};

use crate::cli::plot::{Chart, Series, write_chart};

/// Curves for the plots: one per spec (and per spec with re-ranking), then one per FAISS
/// spec; x is QPS if `qps`, else bytes per vector; y is 10-recall@10.
fn curves(rows: &[BenchRow], faiss: &[FaissRow], qps: bool) -> Vec<Series> {
    let mut out: Vec<Series> = Vec::new();
    let mut add = |label: String, point: (f64, f64), reference: bool| match out
        .iter_mut()
        .find(|s| s.label == label)
    {
        Some(s) => s.points.push(point),
        None => out.push(Series {
            label,
            points: vec![point],
            reference,
        }),
    };
    for r in rows {
        let label = if r.params.rerank > 0 {
            format!("{} +rerank{}", r.spec, r.params.rerank)
        } else {
            r.spec.clone()
        };
        let x = if qps { r.qps } else { r.bytes_per_vector };
        add(label, (x, r.recall_at_10), false);
    }
    for f in faiss {
        let x = if qps { f.qps } else { f.bytes_per_vector };
        add(format!("faiss {}", f.spec), (x, f.recall_at_10), true);
    }
    out
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
        x_label: "bytes per vector (codes, log scale)",
        y_label: "10-recall@10",
        larger_x_is_better: false,
    };
    let speed = Chart {
        title: &format!("recall@10 vs speed: {title}"),
        x_label: "queries per second, 1 thread (log scale)",
        y_label: "10-recall@10",
        larger_x_is_better: true,
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
            md.contains("| SQ8 | k=10 rerank=0 |") && md.contains("0.9500") && md.contains("test machine")
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
        assert_eq!(labels, ["Flat", "SQ8", "IVF16,Flat", "faiss SQ8"]);
        assert_eq!(c[2].points.len(), 2);
        assert!(c[3].reference && !c[0].reference);
    }
}
