//! End-to-end CLI runs on small generated data.

use std::path::Path;
use std::process::Output;

use crate::cli_util;
use cli_util::*;

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
        info.contains("live      3050") && info.contains("all ok"),
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

/// `search --json` on `index`, returning recall@10.
fn recall_at_10(index: &str, d: &Path) -> f64 {
    let out = ok(&vecquant(
        &[
            "search",
            "--index",
            index,
            "--queries",
            "data/query.fvecs",
            "--gt",
            "data/groundtruth.ivecs",
            "--json",
        ],
        d,
    ));
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    v["recall_at_10"].as_f64().unwrap()
}

/// `build --levels`: named grids and a k-means weight codebook become the scalar
/// quantizer's levels, are stored in the index and shown by `inspect`.
#[test]
fn build_with_levels_from_grids_and_weight_codebooks() {
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
    let build = |spec: &str, levels: Option<&str>, out: &str| {
        let mut a = vec![
            "build",
            "--spec",
            spec,
            "--base",
            "data/base.fvecs",
            "--out",
            out,
        ];
        if let Some(l) = levels {
            a.extend(["--levels", l]);
        }
        vecquant(&a, d)
    };

    // A named grid: NF4 under SQ4.
    let msg = ok(&build("SQ4", Some("nf4"), "nf4.vq"));
    assert!(msg.contains("with levels nf4"), "{msg}");
    let r = recall_at_10("nf4.vq", d);
    assert!(r > 0.6, "SQ4 with NF4 levels: recall@10 {r}");
    let info = ok(&vecquant(&["inspect", "nf4.vq"], d));
    assert!(
        info.contains("levels    custom (16, the nf4 grid) [-1.000, -0.6962, -0.5251,")
            && info.contains("range     mean ± 4.000σ"),
        "{info}"
    );
    // Without --levels the variant keeps its own (trained) levels.
    ok(&build("SQ4", None, "sq4.vq"));
    let info = ok(&vecquant(&["inspect", "sq4.vq"], d));
    assert!(info.contains("levels    lloyd-max, trained (16)"), "{info}");

    // FP8 under an 8-bit IVF quantizer, FP4 under HNSW: the spec names stay, the levels
    // are the grids'.
    ok(&build("IVF16,SQ8", Some("e4m3"), "ivf.vq"));
    let info = ok(&vecquant(&["inspect", "ivf.vq"], d));
    assert!(
        info.contains("spec      IVF16,SQ8") && info.contains("custom (253, the e4m3 grid)"),
        "{info}"
    );
    assert!(recall_at_10("ivf.vq", d) > 0.6);
    ok(&build("HNSW8,SQ4", Some("fp4"), "hnsw.vq"));
    let info = ok(&vecquant(&["inspect", "hnsw.vq"], d));
    assert!(info.contains("custom (15, the fp4 grid)"), "{info}");
    assert!(recall_at_10("hnsw.vq", d) > 0.6);

    // Model pipeline → codebook: k-means weights, one shared codebook per tensor.
    ok(&vecquant(
        &[
            "gen",
            "weights",
            "--layers",
            "1",
            "--hidden",
            "64",
            "--vocab",
            "256",
            "--out",
            "w.safetensors",
        ],
        d,
    ));
    let quantize = |scheme: &str, extra: &[&str], out: &str| {
        let mut a = vec![
            "quantize-model",
            "--weights",
            "w.safetensors",
            "--scheme",
            scheme,
            "--out",
            out,
            "--quiet",
        ];
        a.extend_from_slice(extra);
        ok(&vecquant(&a, d));
    };
    quantize(
        "kmeans",
        &["--bits", "4", "--granularity", "tensor"],
        "km.vq",
    );
    let levels = "km.vq:embed_tokens.weight";
    ok(&build("SQ4opt", Some(levels), "km_index.vq"));
    let r = recall_at_10("km_index.vq", d);
    // Measured 0.862 (plain SQ4opt: 0.834, SQ4: 0.85).
    assert!(r > 0.75, "SQ4opt with k-means weight levels: recall@10 {r}");
    let info = ok(&vecquant(&["inspect", "km_index.vq"], d));
    assert!(
        info.contains("levels    custom (16) [") && !info.contains("grid)"),
        "{info}"
    );

    // Bad values: each a non-zero exit naming the problem.
    let e = fail(&build("SQ4", Some("nf5"), "x.vq"));
    assert!(e.contains("`nf5`") && e.contains("accepted"), "{e}");
    let e = fail(&build("SQ4", Some("e4m3"), "x.vq"));
    assert!(e.contains("253 levels") && e.contains("only 16"), "{e}");
    quantize(
        "kmeans",
        &["--bits", "8", "--granularity", "tensor"],
        "km8.vq",
    );
    let e = fail(&build("SQ4", Some("km8.vq:embed_tokens.weight"), "x.vq"));
    assert!(e.contains("256 levels") && e.contains("only 16"), "{e}");
    quantize("nf4", &[], "nf4w.vq");
    let e = fail(&build("SQ4", Some("nf4w.vq:embed_tokens.weight"), "x.vq"));
    assert!(
        e.contains("`nf4 block64`") && e.contains("not k-means"),
        "{e}"
    );
    quantize("kmeans", &["--granularity", "row"], "kmrow.vq");
    let e = fail(&build("SQ4", Some("kmrow.vq:embed_tokens.weight"), "x.vq"));
    assert!(
        e.contains("per row") && e.contains("--granularity tensor"),
        "{e}"
    );
    let e = fail(&build("SQ4", Some("km.vq:nope"), "x.vq"));
    assert!(
        e.contains("no tensor `nope`") && e.contains("embed_tokens.weight"),
        "{e}"
    );
    let e = fail(&build(
        "SQ4",
        Some("km.vq:layers.0.input_layernorm.weight"),
        "x.vq",
    ));
    assert!(e.contains("not quantized"), "{e}");
    let e = fail(&build("SQ4", Some("absent.vq:w"), "x.vq"));
    assert!(e.contains("absent.vq"), "{e}");
    let e = fail(&build("SQ4", Some("km.vq"), "x.vq"));
    assert!(e.contains("km.vq:TENSOR"), "{e}");
    for spec in ["PQ4", "IVF8,Flat", "HNSW8"] {
        let e = fail(&build(spec, Some("nf4"), "x.vq"));
        assert!(e.contains(spec) && e.contains("no scalar quantizer"), "{e}");
    }
    assert!(!d.join("x.vq").exists());
}
