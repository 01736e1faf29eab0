//! Issue 17 ("No surprises"), CLI items 10, 13, 14 and 15: what `search` prints and
//! writes, flags that do not apply to an index, `gen` sizes and negative numbers, and
//! the `--help` texts (examples on their own lines, defaults shown).

use std::path::Path;
use std::process::Output;
use std::sync::Mutex;

use vecquant::SearchParams;
use vecquant::data::vecs::{read_fvecs, read_ivecs};
use vecquant::data::{read_ground_truth, read_vectors};
use vecquant::index::spec::{BuildOptions, new_index};

use crate::cli_util;
use cli_util::*;

fn build(d: &Path, spec: &str, out: &str, extra: &[&str]) {
    let mut args = vec!["build", "--spec", spec, "--base", "data/base.fvecs"];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["--out", out]);
    ok(&vecquant(&args, d));
}

fn search(d: &Path, index: &str, extra: &[&str]) -> Output {
    let mut args = vec!["search", "--index", index, "--queries", "data/query.fvecs"];
    args.extend_from_slice(extra);
    vecquant(&args, d)
}

// ---- item 10: search results to a file, and in --json ----

#[test]
fn item10_search_out_ivecs_and_distances_hold_every_query() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    small_data(d);
    build(d, "Flat", "flat.vq", &[]);
    let text = ok(&search(
        d,
        "flat.vq",
        &["-k", "7", "--out", "res.ivecs", "--distances", "res.fvecs"],
    ));
    assert!(text.contains("res.ivecs"), "{text}");
    assert!(text.contains("res.fvecs"), "{text}");
    let (ids, k) = read_ivecs(d.join("res.ivecs")).unwrap();
    assert_eq!((ids.len() / k, k), (20, 7));
    let dist = read_fvecs(d.join("res.fvecs")).unwrap();
    assert_eq!((dist.len(), dist.dim()), (20, 7));
    // Flat is exact: the ids are the ground truth's first 7, the distances ascending.
    let gt = read_ground_truth(d.join("data/groundtruth.ivecs")).unwrap();
    for (q, row) in ids.chunks_exact(k).enumerate() {
        let want: Vec<i32> = gt[q][..7].iter().map(|&x| x as i32).collect();
        assert_eq!(row, &want[..], "query {q}");
        assert!(dist.row(q).windows(2).all(|w| w[0] <= w[1]), "query {q}");
    }
    // With --out, stdout no longer lists the first queries' ids.
    assert!(!text.contains("query 0:"), "{text}");
}

#[test]
fn item10_search_out_jsonl_one_line_per_query() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    small_data(d);
    build(d, "Flat", "flat.vq", &[]);
    ok(&search(d, "flat.vq", &["-k", "5", "--out", "res.jsonl"]));
    let gt = read_ground_truth(d.join("data/groundtruth.ivecs")).unwrap();
    let text = std::fs::read_to_string(d.join("res.jsonl")).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 20);
    for (i, line) in lines.iter().enumerate() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(v["query"], i);
        let ids: Vec<u64> = serde_json::from_value(v["ids"].clone()).unwrap();
        let dist: Vec<f32> = serde_json::from_value(v["distances"].clone()).unwrap();
        let want: Vec<u64> = gt[i][..5].iter().map(|&x| x as u64).collect();
        assert_eq!(ids, want, "query {i}");
        assert_eq!(dist.len(), 5);
    }
}

#[test]
fn item10_search_json_without_gt_carries_the_results() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    small_data(d);
    build(d, "Flat", "flat.vq", &[]);
    let out = ok(&search(d, "flat.vq", &["-k", "3", "--json"]));
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    let results = v["results"].as_array().expect("a results array");
    assert_eq!(results.len(), 20);
    let gt = read_ground_truth(d.join("data/groundtruth.ivecs")).unwrap();
    for (i, r) in results.iter().enumerate() {
        assert_eq!(r["query"], i);
        let ids: Vec<u64> = serde_json::from_value(r["ids"].clone()).unwrap();
        assert_eq!(
            ids,
            gt[i][..3].iter().map(|&x| x as u64).collect::<Vec<_>>()
        );
    }
    // With --out the object says where the results went instead.
    let out = ok(&search(
        d,
        "flat.vq",
        &["-k", "3", "--json", "--out", "r.jsonl"],
    ));
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["out"], "r.jsonl");
    assert!(v.get("results").is_none(), "{v}");
}

#[test]
fn item10_search_out_rejects_unknown_extension_before_searching() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    small_data(d);
    build(d, "Flat", "flat.vq", &[]);
    let err = fail(&search(d, "flat.vq", &["--out", "res.txt"]));
    assert!(
        err.contains("res.txt") && err.contains(".ivecs") && err.contains(".jsonl"),
        "{err}"
    );
    let err = fail(&search(
        d,
        "flat.vq",
        &["--out", "r.ivecs", "--distances", "d.ivecs"],
    ));
    assert!(err.contains("d.ivecs") && err.contains(".fvecs"), "{err}");
    assert!(!d.join("res.txt").exists() && !d.join("r.ivecs").exists());
    let help = ok(&vecquant(&["search", "--help"], d));
    assert!(
        help.contains("--out") && help.contains("--distances"),
        "{help}"
    );
    assert!(help.contains("stdout"), "{help}");
}

// ---- item 13: parameters that do nothing are rejected ----

#[test]
fn item13_search_flags_that_do_not_apply_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    small_data(d);
    build(d, "Flat", "flat.vq", &[]);
    build(d, "HNSW8", "hnsw.vq", &[]);
    build(d, "IVF16,SQ8", "ivf.vq", &["--keep-raw"]);
    build(d, "SQ8", "sq8.vq", &[]);
    build(d, "SQ8", "sq8raw.vq", &["--keep-raw"]);

    for index in ["flat.vq", "hnsw.vq", "sq8.vq"] {
        let err = fail(&search(d, index, &["--nprobe", "4"]));
        assert!(
            err.contains("--nprobe") && err.contains("IVF"),
            "{index}: {err}"
        );
    }
    let err = fail(&search(d, "hnsw.vq", &["--nprobe", "4"]));
    assert!(err.contains("HNSW8") && err.contains("HNSW graph"), "{err}");
    // Says what the index is in the user's words, not the container's storage kind
    // (flat SQ is stored as a `codes` container).
    let err = fail(&search(d, "sq8.vq", &["--nprobe", "4"]));
    assert!(
        err.contains("SQ8 is a flat index") && !err.contains("codes"),
        "{err}"
    );
    for index in ["flat.vq", "ivf.vq", "sq8.vq"] {
        let err = fail(&search(d, index, &["--ef", "32"]));
        assert!(
            err.contains("--ef") && err.contains("HNSW"),
            "{index}: {err}"
        );
    }
    let err = fail(&search(d, "ivf.vq", &["--ef", "32"]));
    assert!(
        err.contains("IVF16,SQ8") && err.contains("inverted-file"),
        "{err}"
    );
    // Re-ranking fewer candidates than -k returns: nothing to re-rank usefully.
    let err = fail(&search(d, "sq8raw.vq", &["--rerank", "5", "-k", "10"]));
    assert!(err.contains("--rerank") && err.contains("-k"), "{err}");
    // Exact indexes have nothing to re-rank.
    for index in ["flat.vq", "hnsw.vq"] {
        let err = fail(&search(d, index, &["--rerank", "50"]));
        assert!(err.contains("--rerank"), "{index}: {err}");
    }
    // No raw vectors kept: the error names the flag, the index and the fix.
    let err = fail(&search(d, "sq8.vq", &["--rerank", "50"]));
    assert!(
        err.contains("rerank") && err.contains("SQ8") && err.contains("--keep-raw"),
        "{err}"
    );
    // Zero is refused with the flag's name and nothing else: no warning that the index
    // caps the value first ("--ef 0 is below -k 10: HNSW searches with ef = 10").
    for (index, flag) in [
        ("ivf.vq", "--nprobe"),
        ("hnsw.vq", "--ef"),
        ("flat.vq", "-k"),
    ] {
        let err = fail(&search(d, index, &[flag, "0"]));
        assert!(
            err.contains(&format!("`{flag}`: must be at least 1")) && err.lines().count() == 1,
            "{index} {flag} 0: {err}"
        );
    }
    // The flags that do apply still work.
    ok(&search(d, "ivf.vq", &["--nprobe", "4", "--rerank", "20"]));
    ok(&search(d, "hnsw.vq", &["--ef", "32"]));
    ok(&search(d, "sq8raw.vq", &["--rerank", "10", "-k", "10"]));
}

// ---- item 14: gen sizes and negative numbers ----

#[test]
fn item14_gen_rejects_zero_sizes_up_front() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let sizes = [("--dim", "8"), ("--n", "100"), ("--queries", "5")];
    for (flag, out) in [("--queries", "q0"), ("--n", "n0"), ("--dim", "d0")] {
        let mut args = vec!["gen", "gaussian", "--out", out];
        for (f, v) in sizes {
            args.extend_from_slice(&[f, if f == flag { "0" } else { v }]);
        }
        let err = fail(&vecquant(&args, d));
        assert!(err.contains(&format!("`{flag}`")), "{flag}: {err}");
        assert!(!d.join(out).exists(), "{flag}: wrote {out}");
    }
}

#[test]
fn item14_gen_accepts_negative_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    ok(&vecquant(
        &[
            "gen",
            "gaussian",
            "--dim",
            "8",
            "--n",
            "1000",
            "--queries",
            "5",
            "--mean",
            "-1",
            "--std",
            "0.5",
            "--out",
            "neg",
        ],
        d,
    ));
    let base = read_vectors(d.join("neg/base.fvecs")).unwrap();
    let mean =
        base.as_slice().iter().map(|&x| x as f64).sum::<f64>() / base.as_slice().len() as f64;
    assert!((mean + 1.0).abs() < 0.05, "mean {mean}");
    // A negative value that is invalid is the library's error, not a parse error.
    let err = fail(&vecquant(
        &[
            "gen", "gaussian", "--dim", "8", "--n", "100", "--std", "-2", "--out", "bad",
        ],
        d,
    ));
    assert!(err.contains("std") && err.contains("-2"), "{err}");
}

// ---- item 15: --help examples and defaults, --ef-construction, progress ----

fn subcommands(d: &Path) -> Vec<String> {
    let top = ok(&vecquant(&["--help"], d));
    let list = top
        .split("Commands:")
        .nth(1)
        .expect("a Commands: section")
        .split("Options:")
        .next()
        .unwrap();
    list.lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .map(str::to_string)
        .collect()
}

/// Lines of `help` that are an example command line, trimmed.
fn example_lines(help: &str) -> Vec<String> {
    help.lines()
        .map(str::trim)
        .filter(|l| l.starts_with("vecquant "))
        .map(str::to_string)
        .collect()
}

#[test]
fn item15_every_help_has_examples_on_their_own_lines_that_parse() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut commands: Vec<Vec<String>> = subcommands(d).into_iter().map(|c| vec![c]).collect();
    assert!(commands.len() >= 7, "{commands:?}");
    for g in ["gaussian", "mixture", "weights"] {
        commands.push(vec!["gen".into(), g.into()]);
    }
    // The top-level help's session too: one command per line.
    let top = ok(&vecquant(&["--help"], d));
    for line in example_lines(&top) {
        assert_eq!(line.matches("vecquant ").count(), 1, "run together: {line}");
    }
    for cmd in commands {
        let mut args: Vec<&str> = cmd.iter().map(String::as_str).collect();
        args.push("--help");
        let help = ok(&vecquant(&args, d));
        assert!(help.contains("Example"), "{cmd:?}:\n{help}");
        let examples = example_lines(&help);
        assert!(!examples.is_empty(), "{cmd:?} has no example line:\n{help}");
        for ex in examples {
            assert_eq!(
                ex.matches("vecquant ").count(),
                1,
                "{cmd:?}: examples run together: {ex}"
            );
            let words: Vec<&str> = ex.split_whitespace().skip(1).collect();
            assert!(
                words.starts_with(&args[..args.len() - 1]),
                "{cmd:?}: example of another command: {ex}"
            );
            // clap parses every flag and value before it acts on --help.
            let mut check = words.clone();
            check.push("--help");
            let out = vecquant(&check, d);
            assert!(
                out.status.success(),
                "{cmd:?}: example does not parse: {ex}\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

/// The help paragraph of the flag `--name`.
fn flag_help(help: &str, name: &str) -> String {
    let options = help.split("Options:").nth(1).expect("an Options: section");
    let mut lines = options.lines().skip_while(|l| {
        !l.trim_start()
            .split([' ', ','])
            .any(|w| w == name || w.starts_with(&format!("{name}=")))
    });
    let first = lines
        .next()
        .unwrap_or_else(|| panic!("no {name} in:\n{help}"));
    let rest: Vec<&str> = lines
        .take_while(|l| !l.trim_start().starts_with('-'))
        .collect();
    format!("{first} {}", rest.join(" "))
}

#[test]
fn item15_helps_show_the_library_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let p = SearchParams::default();
    let help = ok(&vecquant(&["search", "--help"], d));
    let nprobe = flag_help(&help, "--nprobe");
    assert!(
        nprobe.contains(&format!("[default: {}]", p.nprobe)),
        "{nprobe}"
    );
    let ef = flag_help(&help, "--ef");
    assert!(ef.contains(&format!("[default: {}]", p.ef_search)), "{ef}");
    let rerank = flag_help(&help, "--rerank");
    assert!(
        rerank.contains(&format!("[default: {}", p.rerank)),
        "{rerank}"
    );
    let help = ok(&vecquant(&["build", "--help"], d));
    let efc = flag_help(&help, "--ef-construction");
    let want = BuildOptions::default().ef_construction;
    assert!(efc.contains(&format!("[default: {want}]")), "{efc}");
}

#[test]
fn item15_build_ef_construction_is_hnsw_only() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    small_data(d);
    build(d, "HNSW8", "h.vq", &["--ef-construction", "40"]);
    ok(&search(d, "h.vq", &["--gt", "data/groundtruth.ivecs"]));
    for spec in ["Flat", "IVF16,SQ8", "SQ8"] {
        let out = vecquant(
            &[
                "build",
                "--spec",
                spec,
                "--base",
                "data/base.fvecs",
                "--ef-construction",
                "40",
                "--out",
                "x.vq",
            ],
            d,
        );
        let err = fail(&out);
        assert!(
            err.contains("--ef-construction") && err.contains("HNSW") && err.contains(spec),
            "{spec}: {err}"
        );
    }
    assert!(!d.join("x.vq").exists());
    let err = fail(&vecquant(
        &[
            "build",
            "--spec",
            "HNSW8",
            "--base",
            "data/base.fvecs",
            "--ef-construction",
            "0",
            "--out",
            "x.vq",
        ],
        d,
    ));
    assert!(err.contains("ef"), "{err}");
}

#[test]
fn item15_hnsw_add_reports_progress_up_to_the_total() {
    let base = vecquant::data::generate::gaussian(3000, 8, 0.0, 1.0, 7).unwrap();
    let mut idx = new_index("HNSW8", 8, &BuildOptions::default()).unwrap();
    let seen = Mutex::new(Vec::new());
    idx.add_with_progress(base.as_slice(), None, &|done, total| {
        seen.lock().unwrap().push((done, total));
    })
    .unwrap();
    let seen = seen.into_inner().unwrap();
    assert!(seen.len() >= 2, "{seen:?}");
    assert!(seen.iter().all(|&(_, t)| t == 3000), "{seen:?}");
    assert!(seen.windows(2).all(|w| w[0].0 <= w[1].0), "{seen:?}");
    assert_eq!(seen.last(), Some(&(3000, 3000)));
    assert_eq!(idx.len(), 3000);
    // Every kind reports at least its completion.
    let mut flat = new_index("Flat", 8, &BuildOptions::default()).unwrap();
    let last = Mutex::new(None);
    flat.add_with_progress(base.as_slice(), None, &|d, t| {
        *last.lock().unwrap() = Some((d, t));
    })
    .unwrap();
    assert_eq!(last.into_inner().unwrap(), Some((3000, 3000)));
    let hits = idx.search(base.row(3), &SearchParams::new(1)).unwrap();
    assert_eq!(hits[0].id, 3);
}
