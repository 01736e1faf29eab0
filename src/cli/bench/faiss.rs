//! `vecquant bench --compare-faiss`: runs `benches/compare_faiss.py` on the same data-set
//! files and reads back its measurements.

use std::path::Path;

use vecquant::Result;
use vecquant::data::LoadedDataset;
use vecquant::eval::report::FaissRow;

use super::driver::BenchConfig;

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
    // `RaBitQ`, `RaBitQ{b}`, `RaBitQfs`, `RaBitQfs{b}` (FAISS 1.15's names, run with
    // FAISS's default query bits: 4, and 8 for fast-scan).
    fn rabitq(s: &str) -> bool {
        s.strip_prefix("RaBitQ").is_some_and(|m| {
            let m = m.strip_prefix("fs").unwrap_or(m);
            m.is_empty() || m.chars().all(|c| c.is_ascii_digit())
        })
    }
    let parts: Vec<&str> = spec.split(',').collect();
    match parts.as_slice() {
        ["Flat"] | ["SQ8"] | ["SQ4"] => true,
        [p] => pq(p) || num(p, "HNSW") || rabitq(p),
        [o, p] if num(o, "OPQ") => pq(p),
        [i, c] if num(i, "IVF") => matches!(*c, "Flat" | "SQ8") || pq(c) || rabitq(c),
        _ => false,
    }
}

/// Why FAISS's side of a comparison is missing.
#[derive(Debug)]
pub enum Skip {
    /// Python or faiss-cpu cannot be run: nothing can be compared.
    All(String),
    /// The script failed on this spec.
    Spec(String),
}

/// Runs `benches/compare_faiss.py` with `python` on the data set for `spec` (one that
/// [`faiss_compatible`] accepts), with `cfg`'s nprobe/ef sweeps and `k`,
/// single-threaded; `time_exact` also times FAISS's exact search (its rows then say how
/// long). `Ok(Err(_))` when FAISS's side is missing, and why.
pub fn run_faiss(
    python: &Path,
    script: &Path,
    data: &LoadedDataset,
    spec: &str,
    cfg: &BenchConfig,
    time_exact: bool,
) -> Result<std::result::Result<Vec<FaissRow>, Skip>> {
    let join = |v: &[usize]| {
        v.iter()
            .map(|x| x.to_string())
            .collect::<Vec<_>>()
            .join(",")
    };
    let k = cfg.params.first().map_or(10, |p| p.k);
    let mut cmd = std::process::Command::new(python);
    cmd.arg(script)
        .arg("--data")
        .arg(&data.dir)
        .args(["--specs", spec])
        .args(["--threads", "1", "-k", &k.to_string()])
        .args(["--nprobe", &join(&cfg.nprobe_sweep)])
        .args(["--ef", &join(&cfg.ef_sweep)]);
    if !time_exact {
        cmd.arg("--skip-flat");
    }
    let out = match cmd.output() {
        Ok(o) => o,
        Err(e) => {
            return Ok(Err(Skip::All(format!(
                "cannot run {}: {e}",
                python.display()
            ))));
        }
    };
    if !out.status.success() {
        let why = format!(
            "compare_faiss.py failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
        // Exit status 2: numpy or faiss-cpu is missing (or the arguments, the same for
        // every spec, are wrong) — the environment's failure, not the spec's.
        return Ok(Err(if out.status.code() == Some(2) {
            Skip::All(why)
        } else {
            Skip::Spec(why)
        }));
    }
    let rows = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.trim_start().starts_with('{'))
        .filter_map(|l| serde_json::from_str::<FaissRow>(l).ok())
        .collect();
    Ok(Ok(rows))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faiss_knows_the_factory_strings_it_shares() {
        for s in [
            "Flat",
            "SQ8",
            "PQ16",
            "PQ32x4fs",
            "OPQ16,PQ16",
            "IVF1024,PQ32x4fs",
            "IVF64,Flat",
            "HNSW32",
            "RaBitQ",
            "RaBitQ4",
            "RaBitQfs",
            "RaBitQfs4",
            "IVF1024,RaBitQ",
            "IVF1024,RaBitQfs",
        ] {
            assert!(faiss_compatible(s), "{s}");
        }
        for s in [
            "SQ8u",
            "SQ4lm",
            "HNSW32,SQ8",
            "IVF64,SQ4",
            "PQx4fs",
            "OPQ,PQ16",
            "RaBitQx",
            "HNSW32,RaBitQ",
        ] {
            assert!(!faiss_compatible(s), "{s}");
        }
    }
}
