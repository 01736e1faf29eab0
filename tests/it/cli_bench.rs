//! `vecquant bench` end to end on small generated data (issue 17, items 9, 11, 15, 18).

use std::path::Path;

use crate::cli_util;
use cli_util::*;

/// Runs `bench` on `d/data` with `specs` and the extra `args`, writing into `d/out`;
/// returns stdout and the parsed results.json.
fn bench(d: &Path, specs: &str, args: &[&str]) -> (String, serde_json::Value) {
    let mut all = vec![
        "bench", "--data", "data", "--specs", specs, "--out", "out", "--quiet",
    ];
    all.extend_from_slice(args);
    let stdout = ok(&vecquant(&all, d));
    let json = std::fs::read_to_string(d.join("out/results.json")).unwrap();
    (stdout, serde_json::from_str(&json).unwrap())
}

/// The distinct specs of the results, in order.
fn specs_of(json: &serde_json::Value) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for r in json["results"].as_array().unwrap() {
        let s = r["spec"].as_str().unwrap().to_string();
        if !out.contains(&s) {
            out.push(s);
        }
    }
    out
}

/// Issue 17 item 9: a spec's own commas are kept together (`HNSW16,SQ8` is one spec),
/// `;` separates unambiguously, and a bad piece is an error naming it.
#[test]
fn item9_bench_keeps_composite_specs_together() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    small_data(d);
    let (table, json) = bench(d, "HNSW16,SQ8,Flat", &["--ef", "32", "--rerank", "20"]);
    assert_eq!(specs_of(&json), ["HNSW16,SQ8", "Flat"], "{table}");
    assert!(table.contains("| HNSW16,SQ8 |") && !table.contains("| HNSW16 |"));

    let (table, json) = bench(d, "OPQ4,IVF16,PQ4;Flat", &["--nprobe", "4"]);
    assert_eq!(specs_of(&json), ["OPQ4,IVF16,PQ4", "Flat"], "{table}");

    let out = vecquant(
        &[
            "bench",
            "--data",
            "data",
            "--specs",
            "Flat,SQ9,PQ4",
            "--out",
            "bad",
            "--quiet",
        ],
        d,
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("`SQ9`") && err.contains("--specs") && err.contains("accepted forms"),
        "{err}"
    );
    assert!(!d.join("bad").exists(), "nothing was benchmarked");
}

/// Issue 17 item 18: every row is labelled with the nprobe / ef / rerank it ran with,
/// defaults included, in the table, the JSON and the CSV.
#[test]
fn item18_rows_are_labelled_with_their_effective_parameters() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    small_data(d);
    let (table, json) = bench(d, "IVF16,Flat;HNSW8;SQ8;Flat", &["--rerank", "20"]);
    // The default nprobe (8) sits in the sweep between 4 and 16 and says so.
    for label in [
        "| IVF16,Flat | k=10 nprobe=4 |",
        "| IVF16,Flat | k=10 nprobe=8 |",
        "| IVF16,Flat | k=10 nprobe=16 |",
        "| HNSW8 | k=10 ef=64 |",
        "| SQ8 | k=10 rerank=0 |",
        "| SQ8 | k=10 rerank=20 |",
        "| Flat | k=10 |",
    ] {
        assert!(table.contains(label), "{label} missing:\n{table}");
    }
    let md = std::fs::read_to_string(d.join("out/report.md")).unwrap();
    assert!(md.contains("| IVF16,Flat | k=10 nprobe=8 |"), "{md}");
    for r in json["results"].as_array().unwrap() {
        let spec = r["spec"].as_str().unwrap();
        let label = r["label"].as_str().unwrap_or_else(|| panic!("{r}"));
        let p = &r["params"];
        match spec {
            "IVF16,Flat" => {
                assert_eq!(label, format!("k=10 nprobe={}", p["nprobe"]));
                assert_eq!(r["nprobe"], p["nprobe"]);
                assert!(r["ef"].is_null() && r["rerank"].is_null(), "{r}");
            }
            "HNSW8" => {
                assert_eq!(label, format!("k=10 ef={}", p["ef_search"]));
                assert_eq!(r["ef"], p["ef_search"]);
                assert!(r["nprobe"].is_null(), "{r}");
            }
            "SQ8" => {
                assert_eq!(label, format!("k=10 rerank={}", p["rerank"]));
                assert_eq!(r["rerank"], p["rerank"]);
            }
            _ => assert_eq!(label, "k=10"),
        }
    }
    let csv = std::fs::read_to_string(d.join("out/results.csv")).unwrap();
    let header: Vec<&str> = csv.lines().next().unwrap().split(',').collect();
    let col = |name: &str| header.iter().position(|h| *h == name).unwrap();
    let (label, nprobe, ef) = (col("params"), col("nprobe"), col("ef"));
    let lines: Vec<Vec<String>> = csv.lines().skip(1).map(csv_fields).collect();
    let ivf8 = lines
        .iter()
        .find(|l| l[1] == "IVF16,Flat" && l[nprobe] == "8")
        .unwrap_or_else(|| panic!("{csv}"));
    assert_eq!(ivf8[label], "k=10 nprobe=8");
    assert_eq!(ivf8[ef], "", "HNSW's ef does not apply to an IVF row");
    let flat = lines.iter().find(|l| l[1] == "Flat").unwrap();
    assert_eq!((flat[nprobe].as_str(), flat[ef].as_str()), ("", ""));
}

/// CSV fields of one line (double-quoted fields may hold commas).
fn csv_fields(line: &str) -> Vec<String> {
    let mut out = vec![String::new()];
    let mut quoted = false;
    for c in line.chars() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => out.push(String::new()),
            c => out.last_mut().unwrap().push(c),
        }
    }
    out
}

/// Splits an example command line on spaces, keeping double-quoted words together.
fn shell_words(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    for c in line.chars() {
        match c {
            '"' => quoted = !quoted,
            ' ' if !quoted => {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
            }
            c => cur.push(c),
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// The example lines of `help`: lines that start with `vecquant <command>` (after
/// optional indentation and an `Example:` prefix).
fn examples(help: &str, command: &str) -> Vec<String> {
    help.lines()
        .map(|l| l.trim().trim_start_matches("Example:").trim())
        .filter(|l| l.starts_with(&format!("vecquant {command} ")))
        .map(str::to_string)
        .collect()
}

/// Issue 17 item 15: `bench --help` says exactly which specs run by default (not "every
/// known spec") and `gen --help` and `bench --help` each show an example on its own line
/// that runs as written.
#[test]
fn item15_bench_and_gen_help_have_runnable_examples_and_the_default_set() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let bench_help = ok(&vecquant(&["bench", "--help"], d));
    assert!(!bench_help.contains("every known spec"), "{bench_help}");
    let flat: String = bench_help.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(
        flat.contains(
            "the default set: Flat; SQ8; SQ4; SQ8u; SQ4u; SQ8lm; PQ16; PQ32; PQ32x4fs; \
             PQ64x4fs; IVF256,PQ32x4fs; RaBitQfs; RaBitQ4"
        ),
        "{bench_help}"
    );
    let gen_help = ok(&vecquant(&["gen", "--help"], d));
    let gen_examples = examples(&gen_help, "gen");
    let bench_examples = examples(&bench_help, "bench");
    assert!(!gen_examples.is_empty(), "{gen_help}");
    assert!(!bench_examples.is_empty(), "{bench_help}");
    // Each example is a whole line of its own and runs: the gen example makes the data
    // the bench example reads.
    for line in gen_examples.iter().chain(&bench_examples) {
        let words = shell_words(line);
        assert_eq!(words[0], "vecquant");
        let args: Vec<&str> = words[1..].iter().map(String::as_str).collect();
        if args[0] == "bench" && !args.contains(&"--data") {
            // The data-less form generates the 100,000-vector default set: only check
            // that it parses.
            let mut check = args.clone();
            check.push("--help");
            ok(&vecquant(&check, d));
            continue;
        }
        let mut run = args.clone();
        if args[0] == "bench" {
            run.push("--quiet");
        }
        ok(&vecquant(&run, d));
    }
}

/// `--compare-faiss` runs FAISS's script spec by spec, each straight after vecquant's
/// rows of the same spec (so both sides of a row are measured close in time), times
/// FAISS's exact search only once, skips specs FAISS lacks, reports a spec whose run
/// failed by name and goes on, and stops calling after the interpreter itself fails
/// (exit status 2: numpy or faiss-cpu missing). A script that serves (PQ4 here) is
/// asked for two more timings of each row both sides measured, and each side keeps its
/// best; one that exits keeps its one timing (Flat). A stand-in interpreter logs its
/// calls.
#[test]
fn faiss_comparison_runs_spec_by_spec() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    small_data(d);
    let fake = d.join("fake-python");
    std::fs::write(
        &fake,
        r#"#!/bin/sh
shift
echo "$@" >> calls.txt
while [ "$1" != "--specs" ]; do shift; done
spec=$2
if [ -e exit2 ]; then echo "needs numpy" >&2; exit 2; fi
if [ "$spec" = "SQ8" ]; then echo "boom" >&2; exit 1; fi
echo "{\"spec\": \"$spec\", \"recall_at_1\": 0.5, \"recall_at_10\": 0.25, \"qps\": 1234.0, \"bytes_per_vector\": 8.0, \"groundtruth_secs\": null}"
if [ "$spec" = "PQ4" ]; then
  echo "{\"serving\": \"PQ4\"}"
  while read -r line; do
    [ -z "$line" ] && break
    echo "$line" >> requests.txt
    echo "{\"qps\": 5000.0}"
  done
fi
"#,
    )
    .unwrap();
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    let args = ["--compare-faiss", "--python", "./fake-python"];
    let specs = "Flat;SQ8u;SQ8;PQ4";
    let run = |d: &Path| {
        let mut all = vec![
            "bench", "--data", "data", "--specs", specs, "--out", "out", "--quiet",
        ];
        all.extend_from_slice(&args);
        let out = vecquant(&all, d);
        ok(&out);
        let calls = std::fs::read_to_string(d.join("calls.txt")).unwrap();
        std::fs::remove_file(d.join("calls.txt")).unwrap();
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        (calls, err, stdout)
    };
    let (calls, err, stdout) = run(d);
    let calls: Vec<&str> = calls.lines().collect();
    // SQ8u has no FAISS equivalent; the others are one call each, in order, and only
    // the first times the exact search.
    assert_eq!(calls.len(), 3, "{calls:?}");
    for (c, spec) in calls.iter().zip(["Flat", "SQ8", "PQ4"]) {
        assert!(c.contains(&format!("--specs {spec} ")), "{c}");
    }
    assert!(!calls[0].contains("--skip-flat"));
    assert!(calls[1].contains("--skip-flat") && calls[2].contains("--skip-flat"));
    assert!(
        err.contains("FAISS comparison of SQ8 skipped") && err.contains("boom"),
        "{err}"
    );
    let md = std::fs::read_to_string(d.join("out/report.md")).unwrap();
    let row = |spec: &str| {
        md.lines()
            .find(|l| l.starts_with(&format!("| {spec} |")))
            .unwrap_or_else(|| panic!("{spec} in {md}"))
            .to_string()
    };
    assert!(row("Flat").contains("| 0.2500 | 1234 |"), "{md}");
    assert!(row("PQ4").contains("| 0.2500 | 5000 |"), "{md}");
    assert!(md.contains("best of 3"), "{md}");
    let requests = std::fs::read_to_string(d.join("requests.txt")).unwrap();
    assert_eq!(requests, "{}\n{}\n", "two more timings of PQ4's one row");
    assert!(row("SQ8").ends_with("| – | – | – |"), "{md}");
    // The terminal shows the same comparison as report.md (it showed vecquant's
    // columns only).
    for spec in ["Flat", "PQ4", "SQ8"] {
        assert!(stdout.contains(&row(spec)), "{spec}: {stdout}");
    }
    assert!(stdout.contains("QPS ratio"), "{stdout}");

    // The interpreter cannot run the script: one call, one note, no FAISS columns.
    std::fs::write(d.join("exit2"), "").unwrap();
    let (calls, err, stdout) = run(d);
    assert_eq!(calls.lines().count(), 1, "{calls}");
    assert!(!stdout.contains("faiss"), "{stdout}");
    assert_eq!(err.matches("FAISS comparison skipped").count(), 1, "{err}");
    assert!(err.contains("needs numpy"), "{err}");

    // No spec FAISS knows: no call, and a note that says why.
    std::fs::remove_file(d.join("exit2")).unwrap();
    let out = vecquant(
        &[
            "bench",
            "--data",
            "data",
            "--specs",
            "SQ8u",
            "--out",
            "out2",
            "--quiet",
            "--compare-faiss",
            "--python",
            "./fake-python",
        ],
        d,
    );
    ok(&out);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("FAISS comparison skipped: no spec has a FAISS equivalent"),
        "{err}"
    );
    assert!(!d.join("calls.txt").exists());
}
