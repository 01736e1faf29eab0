//! `vecquant bench --compare-faiss`: runs `benches/compare_faiss.py` on the same data-set
//! files and reads back its measurements.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Stdio};

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

/// A running `compare_faiss.py --serve` holding one spec's FAISS index: it times one
/// more search per [`FaissSession::time`] call, so that the bench can time the two
/// libraries in alternating rounds. Dropping it ends the script.
pub struct FaissSession {
    child: Option<Child>,
    stdin: Option<ChildStdin>,
    stdout: Option<BufReader<ChildStdout>>,
}

impl FaissSession {
    /// A session that times nothing (the script ended without serving).
    fn ended() -> Self {
        FaissSession {
            child: None,
            stdin: None,
            stdout: None,
        }
    }

    /// QPS of one more single-threaded search of the session's index with `row`'s
    /// parameter (`nprobe` or `ef`); `None` once the script cannot answer (it exited or
    /// printed something else), after which the session times nothing more.
    pub fn time(&mut self, row: &FaissRow) -> Option<f64> {
        let request = match (row.nprobe, row.ef) {
            (Some(n), _) => serde_json::json!({ "nprobe": n }),
            (None, Some(e)) => serde_json::json!({ "ef": e }),
            (None, None) => serde_json::json!({}),
        };
        let answer = (|| {
            let (w, r) = (self.stdin.as_mut()?, self.stdout.as_mut()?);
            writeln!(w, "{request}").ok()?;
            w.flush().ok()?;
            let mut line = String::new();
            r.read_line(&mut line).ok()?;
            serde_json::from_str::<serde_json::Value>(&line).ok()?["qps"].as_f64()
        })();
        if answer.is_none() {
            self.stdin = None;
            self.stdout = None;
        }
        answer
    }
}

impl Drop for FaissSession {
    fn drop(&mut self) {
        // End of input: the script leaves its serving loop and exits.
        self.stdin = None;
        if let Some(mut c) = self.child.take() {
            let _ = c.wait();
        }
    }
}

/// Runs `benches/compare_faiss.py --serve` with `python` on the data set for `spec`
/// (one that [`faiss_compatible`] accepts), with `cfg`'s nprobe/ef sweeps and `k`,
/// single-threaded; `time_exact` also times FAISS's exact search (its rows then say how
/// long). Returns FAISS's rows and the session that times more searches of its index,
/// or (`Ok(Err(_))`) why FAISS's side is missing.
pub fn run_faiss(
    python: &Path,
    script: &Path,
    data: &LoadedDataset,
    spec: &str,
    cfg: &BenchConfig,
    time_exact: bool,
) -> Result<std::result::Result<(Vec<FaissRow>, FaissSession), Skip>> {
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
        .args(["--ef", &join(&cfg.ef_sweep)])
        .arg("--serve")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if !time_exact {
        cmd.arg("--skip-flat");
    }
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            return Ok(Err(Skip::All(format!(
                "cannot run {}: {e}",
                python.display()
            ))));
        }
    };
    // Standard error read on its own thread: a full pipe must not stall the script.
    let stderr = child.stderr.take().map(|mut e| {
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = std::io::Read::read_to_string(&mut e, &mut s);
            s
        })
    });
    let mut session = FaissSession {
        stdin: child.stdin.take(),
        stdout: child.stdout.take().map(BufReader::new),
        child: Some(child),
    };
    let mut rows = Vec::new();
    let mut serving = false;
    if let Some(out) = session.stdout.as_mut() {
        let mut line = String::new();
        while matches!(out.read_line(&mut line), Ok(n) if n > 0) {
            let l = line.trim_start();
            if l.starts_with("{\"serving\"") {
                serving = true;
                break;
            }
            if l.starts_with('{') {
                rows.extend(serde_json::from_str::<FaissRow>(l).ok());
            }
            line.clear();
        }
    }
    if serving {
        return Ok(Ok((rows, session)));
    }
    // The script ended without serving: its rows, or why it failed.
    session.stdin = None;
    let status = session.child.take().map(|mut c| c.wait());
    let why = stderr.and_then(|t| t.join().ok()).unwrap_or_default();
    match status {
        Some(Ok(s)) if s.success() => Ok(Ok((rows, FaissSession::ended()))),
        // Exit status 2: numpy or faiss-cpu is missing (or the arguments, the same for
        // every spec, are wrong) — the environment's failure, not the spec's.
        Some(Ok(s)) => {
            let why = format!("compare_faiss.py failed: {}", why.trim());
            Ok(Err(if s.code() == Some(2) {
                Skip::All(why)
            } else {
                Skip::Spec(why)
            }))
        }
        _ => Ok(Err(Skip::Spec(format!(
            "compare_faiss.py did not finish: {}",
            why.trim()
        )))),
    }
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
