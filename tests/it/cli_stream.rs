//! Issue 20, item 3: streamed builds. `build` and `add` read the base file chunk by
//! chunk; the index they write is byte-for-byte the one a single piece gives, bad
//! records are reported by their place in the whole file, and a failed add leaves the
//! index file unchanged.

use std::path::Path;

use crate::cli_util;
use cli_util::*;

fn build(d: &Path, spec: &str, base: &str, out: &str, chunk: Option<&str>) -> String {
    let mut args = vec!["build", "--spec", spec, "--base", base, "--out", out];
    if let Some(c) = chunk {
        args.extend(["--chunk", c]);
    }
    ok(&vecquant(&args, d))
}

#[test]
fn item3_chunked_build_and_add_write_the_same_file_as_one_piece() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    small_data(d);
    for spec in [
        "Flat",
        "SQ4",
        "PQ8x4fs",
        "IVF16,SQ8",
        "IVF16,PQ8x4fs",
        "RaBitQfs",
    ] {
        build(d, spec, "data/base.fvecs", "one.vq", None);
        build(d, spec, "data/base.fvecs", "chunked.vq", Some("333"));
        let (a, b) = (
            std::fs::read(d.join("one.vq")).unwrap(),
            std::fs::read(d.join("chunked.vq")).unwrap(),
        );
        assert!(a == b, "{spec}: chunked build differs");
        // Adding the queries in chunks of 7 equals adding them at once.
        for (file, chunk) in [("one.vq", "100000"), ("chunked.vq", "7")] {
            ok(&vecquant(
                &[
                    "add",
                    "--index",
                    file,
                    "--vectors",
                    "data/query.fvecs",
                    "--chunk",
                    chunk,
                ],
                d,
            ));
        }
        let (a, b) = (
            std::fs::read(d.join("one.vq")).unwrap(),
            std::fs::read(d.join("chunked.vq")).unwrap(),
        );
        assert!(a == b, "{spec}: chunked add differs");
    }
}

#[test]
fn item3_bad_records_name_their_place_in_the_file_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    small_data(d);
    // A NaN in record 1500 (dim 16: records of 68 bytes), found by the fourth chunk.
    let mut bytes = std::fs::read(d.join("data/base.fvecs")).unwrap();
    let at = 1500 * 68 + 4 + 4 * 3;
    bytes[at..at + 4].copy_from_slice(&f32::NAN.to_le_bytes());
    std::fs::write(d.join("nan.fvecs"), &bytes).unwrap();
    fails(
        &vecquant(
            &[
                "build",
                "--spec",
                "SQ8",
                "--base",
                "nan.fvecs",
                "--chunk",
                "400",
                "--out",
                "x.vq",
            ],
            d,
        ),
        &["nan.fvecs", "record 1500: component 3 is NaN"],
    );
    assert!(!d.join("x.vq").exists(), "a failed build leaves no file");
    // The same record through a chunked add: the index file is unchanged.
    build(d, "IVF16,SQ8", "data/base.fvecs", "i.vq", None);
    let before = std::fs::read(d.join("i.vq")).unwrap();
    fails(
        &vecquant(
            &[
                "add",
                "--index",
                "i.vq",
                "--vectors",
                "nan.fvecs",
                "--chunk",
                "400",
            ],
            d,
        ),
        &["record 1500: component 3 is NaN"],
    );
    assert!(std::fs::read(d.join("i.vq")).unwrap() == before);
    // Ids colliding from a later chunk on: every colliding id counted before anything
    // is added, the file unchanged.
    ok(&vecquant(
        &[
            "add",
            "--index",
            "i.vq",
            "--vectors",
            "data/query.fvecs",
            "--first-id",
            "5000",
        ],
        d,
    ));
    let before = std::fs::read(d.join("i.vq")).unwrap();
    let e = fails(
        &vecquant(
            &[
                "add",
                "--index",
                "i.vq",
                "--vectors",
                "data/query.fvecs",
                "--first-id",
                "4992",
                "--chunk",
                "4",
            ],
            d,
        ),
        &[
            "record 8: id 5000 is already in i.vq",
            "12 of the 20 new ids collide",
            "unchanged",
        ],
    );
    assert!(e.contains("--upsert"), "{e}");
    assert!(std::fs::read(d.join("i.vq")).unwrap() == before);
    // A truncated file is refused before any work; a zero chunk is a bad parameter.
    std::fs::write(d.join("cut.fvecs"), &bytes[..bytes.len() - 10]).unwrap();
    fails(
        &vecquant(
            &[
                "build",
                "--spec",
                "SQ8",
                "--base",
                "cut.fvecs",
                "--out",
                "y.vq",
            ],
            d,
        ),
        &["cut.fvecs", "record 1999", "truncated"],
    );
    fails(
        &vecquant(
            &[
                "build",
                "--spec",
                "SQ8",
                "--base",
                "data/base.fvecs",
                "--chunk",
                "0",
                "--out",
                "y.vq",
            ],
            d,
        ),
        &["--chunk", "at least 1"],
    );
}

/// `search` of more queries than fit in memory at `-k` (past 2²⁴ neighbours) searches
/// and writes them chunk by chunk: the files equal, byte for byte, those of the same
/// queries searched in two halves small enough to take in one piece, and the recall is
/// the halves' mean. One JSON object cannot hold them: `--json` without `--out` is
/// refused, naming the streamed alternative. `groundtruth` streams likewise.
#[test]
fn search_and_groundtruth_stream_results_past_the_memory_budget() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (n, nq, k) = (2000usize, 8500usize, "2000");
    ok(&vecquant(
        &[
            "gen",
            "gaussian",
            "--dim",
            "2",
            "--n",
            "2000",
            "--queries",
            "8500",
            "--out",
            "data",
        ],
        d,
    ));
    build(d, "Flat", "data/base.fvecs", "f.vq", None);
    // The halves: the first 4,250 query records (4 + 2·4 bytes each) and the rest, and
    // the ground truth likewise.
    let split = |file: &str, rec: usize| {
        let b = std::fs::read(d.join("data").join(file)).unwrap();
        assert_eq!(b.len(), nq * rec);
        std::fs::write(d.join(format!("a_{file}")), &b[..nq / 2 * rec]).unwrap();
        std::fs::write(d.join(format!("b_{file}")), &b[nq / 2 * rec..]).unwrap();
    };
    split("query.fvecs", 12);
    let gt = std::fs::read(d.join("data/groundtruth.ivecs")).unwrap();
    split("groundtruth.ivecs", gt.len() / nq);
    let search = |q: &str, gt: &str, tag: &str| -> serde_json::Value {
        let (ids, dist) = (format!("{tag}.ivecs"), format!("{tag}.fvecs"));
        let out = ok(&vecquant(
            &[
                "search",
                "--index",
                "f.vq",
                "--queries",
                q,
                "--gt",
                gt,
                "-k",
                k,
                "--out",
                &ids,
                "--distances",
                &dist,
                "--json",
            ],
            d,
        ));
        serde_json::from_str(&out).unwrap()
    };
    let all = search("data/query.fvecs", "data/groundtruth.ivecs", "all");
    let a = search("a_query.fvecs", "a_groundtruth.ivecs", "a");
    let b = search("b_query.fvecs", "b_groundtruth.ivecs", "b");
    for ext in ["ivecs", "fvecs"] {
        let read = |t: &str| std::fs::read(d.join(format!("{t}.{ext}"))).unwrap();
        let whole = read("all");
        assert_eq!(whole.len(), nq * (n + 1) * 4, "{ext}");
        assert!(
            whole == [read("a"), read("b")].concat(),
            "{ext}: streamed file differs"
        );
    }
    for key in ["recall_at_1", "recall_at_10"] {
        let r = |v: &serde_json::Value| v[key].as_f64().unwrap();
        assert!(
            (r(&all) - (r(&a) + r(&b)) / 2.0).abs() < 1e-9,
            "{key}: {all} vs {a} {b}"
        );
    }
    fails(
        &vecquant(
            &[
                "search",
                "--index",
                "f.vq",
                "--queries",
                "data/query.fvecs",
                "-k",
                k,
                "--json",
            ],
            d,
        ),
        &["--json", "8500 queries", "--out FILE.jsonl"],
    );
    // `groundtruth` streams the same way: its file equals the halves' files joined, and
    // its ids are the exact search's.
    let gt = |q: &str, out: &str| {
        ok(&vecquant(
            &[
                "groundtruth",
                "--base",
                "data/base.fvecs",
                "--queries",
                q,
                "-k",
                k,
                "--out",
                out,
            ],
            d,
        ));
        std::fs::read(d.join(out)).unwrap()
    };
    let whole = gt("data/query.fvecs", "gt_all.ivecs");
    let halves = [
        gt("a_query.fvecs", "gt_a.ivecs"),
        gt("b_query.fvecs", "gt_b.ivecs"),
    ];
    assert!(whole == halves.concat(), "streamed ground truth differs");
    assert!(
        whole == std::fs::read(d.join("all.ivecs")).unwrap(),
        "ground truth ≠ Flat search"
    );
}
