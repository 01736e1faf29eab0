//! End-to-end CLI runs on small generated data.

use std::path::Path;
use std::process::{Command, Output};

fn vecquant(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vecquant"))
        .args(args)
        .current_dir(cwd)
        .output()
        .expect("the vecquant binary runs")
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn gen_build_search_bench() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    ok(&vecquant(
        &[
            "gen",
            "gaussian",
            "--dim",
            "16",
            "--n",
            "3000",
            "--queries",
            "50",
            "--out",
            "data",
        ],
        d,
    ));
    for f in [
        "train.fvecs",
        "base.fvecs",
        "query.fvecs",
        "groundtruth.ivecs",
    ] {
        assert!(d.join("data").join(f).exists(), "{f}");
    }
    ok(&vecquant(
        &[
            "build",
            "--spec",
            "Flat",
            "--base",
            "data/base.fvecs",
            "--out",
            "flat.vq",
        ],
        d,
    ));
    let json = ok(&vecquant(
        &[
            "search",
            "--index",
            "flat.vq",
            "--queries",
            "data/query.fvecs",
            "--gt",
            "data/groundtruth.ivecs",
            "--json",
            "--threads",
            "1",
        ],
        d,
    ));
    let v: serde_json::Value = serde_json::from_str(json.trim()).unwrap();
    for key in [
        "spec",
        "n",
        "dim",
        "k",
        "recall_at_1",
        "recall_at_10",
        "qps",
        "bytes_per_vector",
        "index_bytes",
        "threads",
    ] {
        assert!(v.get(key).is_some(), "missing {key} in {v}");
    }
    assert_eq!(v["recall_at_10"], 1.0);
    assert_eq!(v["n"], 3000);

    // Ground truth by the dedicated command equals the generator's.
    ok(&vecquant(
        &[
            "groundtruth",
            "--base",
            "data/base.fvecs",
            "--queries",
            "data/query.fvecs",
            "-k",
            "100",
            "--out",
            "gt2.ivecs",
        ],
        d,
    ));
    assert_eq!(
        std::fs::read(d.join("gt2.ivecs")).unwrap(),
        std::fs::read(d.join("data/groundtruth.ivecs")).unwrap()
    );

    // Adding to a saved index keeps what was there.
    ok(&vecquant(
        &[
            "add",
            "--index",
            "flat.vq",
            "--vectors",
            "data/query.fvecs",
            "--first-id",
            "1000000",
        ],
        d,
    ));
    let info = ok(&vecquant(&["inspect", "flat.vq"], d));
    assert!(
        info.contains("count     3050") && info.contains("all ok"),
        "{info}"
    );

    let table = ok(&vecquant(
        &[
            "bench", "--data", "data", "--specs", "Flat", "--out", "out", "--quiet",
        ],
        d,
    ));
    assert!(table.contains("| Flat |"), "{table}");
    assert!(d.join("out/results.json").exists());
}

#[test]
fn bad_input_fails_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("junk.vq"), b"not an index").unwrap();
    std::fs::write(d.join("q.fvecs"), [4u8, 0, 0, 0, 1, 2]).unwrap();
    let out = vecquant(&["search", "--index", "junk.vq", "--queries", "q.fvecs"], d);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("junk.vq") && err.contains("magic"), "{err}");
    let out = vecquant(
        &[
            "build", "--spec", "Flat", "--base", "q.fvecs", "--out", "x.vq",
        ],
        d,
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("truncated"), "{err}");
    let out = vecquant(
        &[
            "build", "--spec", "Nope", "--base", "q.fvecs", "--out", "x.vq",
        ],
        d,
    );
    assert!(!out.status.success());
    let out = vecquant(&["gen", "gaussian", "--dim", "0", "--out", "g"], d);
    assert!(!out.status.success());
    assert!(!String::from_utf8_lossy(&out.stderr).contains("panicked"));
}

fn fail(out: &Output) -> String {
    assert!(!out.status.success(), "unexpectedly succeeded");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn scalar_quantizer_build_search_rerank() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let gen_args = [
        "gen",
        "gaussian",
        "--dim",
        "24",
        "--n",
        "4000",
        "--queries",
        "40",
        "--out",
        "data",
    ];
    ok(&vecquant(&gen_args, d));
    for (spec, keep) in [("SQ8", true), ("SQ4", true), ("SQ4u", false)] {
        let out = format!("{spec}.vq");
        let mut args = vec![
            "build",
            "--spec",
            spec,
            "--base",
            "data/base.fvecs",
            "--train",
            "data/train.fvecs",
            "--out",
            &out,
        ];
        if keep {
            args.push("--keep-raw");
        }
        ok(&vecquant(&args, d));
        let search = |extra: &[&str]| {
            let mut a = vec![
                "search",
                "--index",
                &out,
                "--queries",
                "data/query.fvecs",
                "--gt",
                "data/groundtruth.ivecs",
                "--json",
            ];
            a.extend_from_slice(extra);
            vecquant(&a, d)
        };
        let v: serde_json::Value = serde_json::from_str(ok(&search(&[])).trim()).unwrap();
        assert_eq!(v["spec"], spec);
        let bpv = if spec.starts_with("SQ8") { 24.0 } else { 12.0 };
        assert_eq!(v["bytes_per_vector"], bpv);
        let r = v["recall_at_10"].as_f64().unwrap();
        assert!(r > 0.5, "{spec}: {r}");
        if keep {
            let v: serde_json::Value =
                serde_json::from_str(ok(&search(&["--rerank", "100"])).trim()).unwrap();
            let rr = v["recall_at_10"].as_f64().unwrap();
            assert!(rr >= 0.99, "{spec} rerank: {rr}");
        } else {
            let e = fail(&search(&["--rerank", "100"]));
            assert!(e.contains("--keep-raw"), "{e}");
        }
    }
    let e = fail(&vecquant(
        &[
            "build",
            "--spec",
            "SQ5",
            "--base",
            "data/base.fvecs",
            "--out",
            "x.vq",
        ],
        d,
    ));
    assert!(e.contains("SQ5") && e.contains("accepted"), "{e}");
}

#[test]
fn delete_from_a_saved_index() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let gen_args = [
        "gen",
        "gaussian",
        "--dim",
        "8",
        "--n",
        "500",
        "--queries",
        "5",
        "--out",
        "data",
    ];
    ok(&vecquant(&gen_args, d));
    let build = [
        "build",
        "--spec",
        "SQ8",
        "--base",
        "data/base.fvecs",
        "--out",
        "i.vq",
    ];
    ok(&vecquant(&build, d));
    let out = ok(&vecquant(
        &["delete", "--index", "i.vq", "--ids", "1,2,3,9999"],
        d,
    ));
    assert!(
        out.contains("deleted 3 of 4") && out.contains("3 tombstones"),
        "{out}"
    );
    let info = ok(&vecquant(&["inspect", "i.vq"], d));
    assert!(info.contains("tombstones"), "{info}");
    std::fs::write(d.join("ids.txt"), "4\n5 6\n").unwrap();
    let out = ok(&vecquant(
        &[
            "delete",
            "--index",
            "i.vq",
            "--ids-file",
            "ids.txt",
            "--compact",
        ],
        d,
    ));
    assert!(
        out.contains("deleted 3 of 3") && out.contains("6 rows dropped"),
        "{out}"
    );
    let info = ok(&vecquant(&["inspect", "i.vq"], d));
    assert!(info.contains("494"), "{info}");
    std::fs::write(d.join("bad.txt"), "4 x\n").unwrap();
    let e = fail(&vecquant(
        &["delete", "--index", "i.vq", "--ids-file", "bad.txt"],
        d,
    ));
    assert!(e.contains("`x`"), "{e}");
    let e = fail(&vecquant(&["delete", "--index", "i.vq"], d));
    assert!(e.contains("no ids"), "{e}");
}
