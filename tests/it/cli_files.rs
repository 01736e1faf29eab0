//! Issue 17 ("No surprises"): what the CLI does with the files it is given — outputs
//! that would replace inputs, modes kept across rewrites, output problems found before
//! the work, no temporary files left behind, and directories or missing files given as
//! inputs. Each test names its item.

use std::path::Path;

use crate::cli_util;
use cli_util::*;

/// A temporary folder with a small data set in `data/` and a Flat index `flat.vq`.
fn setup() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    small_data(d);
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
    dir
}

/// Small weights in `w.safetensors`.
fn gen_weights(d: &Path) {
    ok(&vecquant(
        &[
            "gen",
            "weights",
            "--layers",
            "1",
            "--hidden",
            "32",
            "--vocab",
            "64",
            "--out",
            "w.safetensors",
        ],
        d,
    ));
}

/// Every file under `dir` whose name holds `.tmp` (a temporary file left behind).
fn temp_debris(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(p) = stack.pop() {
        for e in std::fs::read_dir(&p).unwrap() {
            let e = e.unwrap();
            let name = e.file_name().to_string_lossy().into_owned();
            if name.contains(".tmp") {
                found.push(e.path().display().to_string());
            }
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            }
        }
    }
    found
}

fn build_args<'a>(base: &'a str, out: &'a str) -> Vec<&'a str> {
    vec!["build", "--spec", "Flat", "--base", base, "--out", out]
}

// ---- item 1: an output that is (or resolves to) an input is refused ----

#[test]
fn item1_build_out_equal_to_base_is_refused() {
    let dir = setup();
    let d = dir.path();
    std::fs::copy(d.join("data/base.fvecs"), d.join("x.fvecs")).unwrap();
    let before = std::fs::read(d.join("x.fvecs")).unwrap();
    let e = fail(&vecquant(&build_args("x.fvecs", "x.fvecs"), d));
    assert!(e.contains("x.fvecs") && e.contains("input"), "{e}");
    assert_eq!(std::fs::read(d.join("x.fvecs")).unwrap(), before);
    // The same file under another spelling.
    let e = fail(&vecquant(
        &build_args("data/base.fvecs", "./data/../data/base.fvecs"),
        d,
    ));
    assert!(e.contains("base.fvecs") && e.contains("input"), "{e}");
    // --train is an input too.
    let mut a = build_args("data/base.fvecs", "data/train.fvecs");
    a.extend(["--train", "data/train.fvecs"]);
    let e = fail(&vecquant(&a, d));
    assert!(e.contains("train.fvecs") && e.contains("input"), "{e}");
    assert_eq!(
        vecquant::data::read_vectors(d.join("data/train.fvecs"))
            .unwrap()
            .dim(),
        16
    );
    assert!(temp_debris(d).is_empty(), "{:?}", temp_debris(d));
}

#[cfg(unix)]
#[test]
fn item1_out_through_symlink_or_hard_link_is_refused() {
    let dir = setup();
    let d = dir.path();
    let before = std::fs::read(d.join("data/base.fvecs")).unwrap();
    std::os::unix::fs::symlink(d.join("data/base.fvecs"), d.join("sym.vq")).unwrap();
    std::fs::hard_link(d.join("data/base.fvecs"), d.join("hard.vq")).unwrap();
    for out in ["sym.vq", "hard.vq"] {
        let e = fail(&vecquant(&build_args("data/base.fvecs", out), d));
        assert!(e.contains(out) && e.contains("input"), "{out}: {e}");
        assert_eq!(std::fs::read(d.join("data/base.fvecs")).unwrap(), before);
    }
    // Ground truth over a hard link of the queries.
    std::fs::hard_link(d.join("data/query.fvecs"), d.join("q.ivecs")).unwrap();
    let q = std::fs::read(d.join("data/query.fvecs")).unwrap();
    let e = fail(&vecquant(
        &[
            "groundtruth",
            "--base",
            "data/base.fvecs",
            "--queries",
            "data/query.fvecs",
            "-k",
            "5",
            "--out",
            "q.ivecs",
        ],
        d,
    ));
    assert!(e.contains("q.ivecs") && e.contains("input"), "{e}");
    assert_eq!(std::fs::read(d.join("data/query.fvecs")).unwrap(), q);
}

#[test]
fn item1_groundtruth_out_equal_to_an_input_is_refused() {
    let dir = setup();
    let d = dir.path();
    let before = std::fs::read(d.join("data/base.fvecs")).unwrap();
    let e = fail(&vecquant(
        &[
            "groundtruth",
            "--base",
            "data/base.fvecs",
            "--queries",
            "data/query.fvecs",
            "-k",
            "5",
            "--out",
            "data/base.fvecs",
        ],
        d,
    ));
    assert!(e.contains("base.fvecs") && e.contains("input"), "{e}");
    assert_eq!(std::fs::read(d.join("data/base.fvecs")).unwrap(), before);
}

#[test]
fn item1_quantize_model_out_or_report_equal_to_an_input_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    gen_weights(d);
    let before = std::fs::read(d.join("w.safetensors")).unwrap();
    let q = |out: &str, extra: &[&str]| {
        let mut a = vec![
            "quantize-model",
            "--weights",
            "w.safetensors",
            "--scheme",
            "absmax",
            "--quiet",
            "--out",
            out,
        ];
        a.extend_from_slice(extra);
        vecquant(&a, d)
    };
    let e = fail(&q("w.safetensors", &[]));
    assert!(e.contains("w.safetensors") && e.contains("input"), "{e}");
    let e = fail(&q("w.vq", &["--report", "w.safetensors"]));
    assert!(e.contains("w.safetensors") && e.contains("input"), "{e}");
    // The report would replace the output just written.
    let e = fail(&q("w.vq", &["--report", "w.vq"]));
    assert!(e.contains("w.vq") && e.contains("--report"), "{e}");
    assert!(!d.join("w.vq").exists());
    // Calibration activations are an input too.
    let e = fail(&vecquant(
        &[
            "quantize-model",
            "--weights",
            "w.safetensors",
            "--calib",
            "w.safetensors",
            "--scheme",
            "gptq",
            "--quiet",
            "--out",
            "w.vq",
            "--report",
            "w.safetensors",
        ],
        d,
    ));
    assert!(e.contains("w.safetensors") && e.contains("input"), "{e}");
    assert_eq!(std::fs::read(d.join("w.safetensors")).unwrap(), before);
    assert!(temp_debris(d).is_empty(), "{:?}", temp_debris(d));
}

#[test]
fn item1_build_levels_file_is_an_input() {
    let dir = setup();
    let d = dir.path();
    gen_weights(d);
    ok(&vecquant(
        &[
            "quantize-model",
            "--weights",
            "w.safetensors",
            "--scheme",
            "kmeans",
            "--bits",
            "4",
            "--granularity",
            "tensor",
            "--quiet",
            "--out",
            "km.vq",
        ],
        d,
    ));
    let before = std::fs::read(d.join("km.vq")).unwrap();
    let e = fail(&vecquant(
        &[
            "build",
            "--spec",
            "SQ4",
            "--base",
            "data/base.fvecs",
            "--levels",
            "km.vq:embed_tokens.weight",
            "--out",
            "km.vq",
        ],
        d,
    ));
    assert!(e.contains("km.vq") && e.contains("input"), "{e}");
    assert_eq!(std::fs::read(d.join("km.vq")).unwrap(), before);
}

#[test]
fn item1_container_under_a_foreign_extension_warns_once() {
    let dir = setup();
    let d = dir.path();
    let out = vecquant(&build_args("data/base.fvecs", "index.fvecs"), d);
    ok(&out);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.matches("warning").count(), 1, "{err}");
    assert!(err.contains("index.fvecs") && err.contains(".vq"), "{err}");
    // The file is a container all the same.
    ok(&vecquant(&["inspect", "index.fvecs"], d));
    // A `.vq` name draws no warning.
    let out = vecquant(&build_args("data/base.fvecs", "index2.vq"), d);
    ok(&out);
    assert!(!String::from_utf8_lossy(&out.stderr).contains("warning"));
}

// ---- item 4: rewrites keep the mode and owner, and leave read-only files alone ----

#[cfg(unix)]
fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
}

#[cfg(unix)]
fn chmod(p: &Path, m: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap();
}

#[cfg(unix)]
#[test]
fn item4_add_and_delete_keep_a_private_mode() {
    let dir = setup();
    let d = dir.path();
    let idx = d.join("flat.vq");
    chmod(&idx, 0o600);
    ok(&vecquant(
        &["add", "--index", "flat.vq", "--vectors", "data/query.fvecs"],
        d,
    ));
    assert_eq!(mode(&idx), 0o600, "add widened the mode");
    ok(&vecquant(
        &["delete", "--index", "flat.vq", "--ids", "1,2"],
        d,
    ));
    assert_eq!(mode(&idx), 0o600, "delete widened the mode");
    chmod(&idx, 0o640);
    ok(&vecquant(
        &["delete", "--index", "flat.vq", "--ids", "3", "--compact"],
        d,
    ));
    assert_eq!(mode(&idx), 0o640);
}

#[cfg(unix)]
#[test]
fn item4_add_keeps_the_owner_when_permitted() {
    use std::os::unix::fs::MetadataExt;
    let dir = setup();
    let d = dir.path();
    let idx = d.join("flat.vq");
    // Only a privileged user can give a file away; elsewhere there is nothing to keep.
    if std::os::unix::fs::chown(&idx, Some(4321), Some(4322)).is_err() {
        return;
    }
    ok(&vecquant(
        &["add", "--index", "flat.vq", "--vectors", "data/query.fvecs"],
        d,
    ));
    let m = std::fs::metadata(&idx).unwrap();
    assert_eq!((m.uid(), m.gid()), (4321, 4322));
}

#[cfg(unix)]
#[test]
fn item4_read_only_index_is_not_rewritten() {
    let dir = setup();
    let d = dir.path();
    let idx = d.join("flat.vq");
    chmod(&idx, 0o444);
    let before = std::fs::read(&idx).unwrap();
    let e = fail(&vecquant(
        &["add", "--index", "flat.vq", "--vectors", "data/query.fvecs"],
        d,
    ));
    assert!(e.contains("flat.vq") && e.contains("read-only"), "{e}");
    let e = fail(&vecquant(
        &["delete", "--index", "flat.vq", "--ids", "1"],
        d,
    ));
    assert!(e.contains("flat.vq") && e.contains("read-only"), "{e}");
    assert_eq!(std::fs::read(&idx).unwrap(), before);
    assert_eq!(mode(&idx), 0o444);
    // Nor replaced by a build.
    let e = fail(&vecquant(&build_args("data/base.fvecs", "flat.vq"), d));
    assert!(e.contains("flat.vq") && e.contains("read-only"), "{e}");
    assert_eq!(std::fs::read(&idx).unwrap(), before);
    assert!(temp_debris(d).is_empty(), "{:?}", temp_debris(d));
}

// ---- item 5: output problems are found before the work; no temporary files remain ----

#[test]
fn item5_out_directory_is_refused_before_the_work() {
    let dir = setup();
    let d = dir.path();
    std::fs::create_dir(d.join("outdir")).unwrap();
    // PQ5 does not divide dimension 16: an error found only once the vectors are read.
    // The output's problem is found first.
    let e = fail(&vecquant(
        &[
            "build",
            "--spec",
            "PQ5",
            "--base",
            "data/base.fvecs",
            "--out",
            "outdir",
        ],
        d,
    ));
    assert!(e.contains("outdir") && e.contains("is a directory"), "{e}");
    let e = fail(&vecquant(&build_args("data/base.fvecs", "outdir"), d));
    assert!(e.contains("outdir") && e.contains("is a directory"), "{e}");
    // Ground truth: queries of another dimension fail only in the GEMM.
    ok(&vecquant(
        &[
            "gen",
            "gaussian",
            "--dim",
            "8",
            "--n",
            "100",
            "--queries",
            "5",
            "--out",
            "d8",
        ],
        d,
    ));
    let e = fail(&vecquant(
        &[
            "groundtruth",
            "--base",
            "data/base.fvecs",
            "--queries",
            "d8/query.fvecs",
            "--out",
            "outdir",
        ],
        d,
    ));
    assert!(e.contains("outdir") && e.contains("is a directory"), "{e}");
    assert!(temp_debris(d).is_empty(), "{:?}", temp_debris(d));
    assert_eq!(std::fs::read_dir(d.join("outdir")).unwrap().count(), 0);
}

#[test]
fn item5_quantize_model_out_checked_before_the_work() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    gen_weights(d);
    std::fs::create_dir(d.join("m.vq")).unwrap();
    // gptq with the weights themselves as calibration data fails once it reads them (no
    // tensor there holds layer inputs); the output's problem is reported first.
    let e = fail(&vecquant(
        &[
            "quantize-model",
            "--weights",
            "w.safetensors",
            "--scheme",
            "gptq",
            "--calib",
            "w.safetensors",
            "--quiet",
            "--out",
            "m.vq",
        ],
        d,
    ));
    assert!(e.contains("m.vq") && e.contains("is a directory"), "{e}");
    let e = fail(&vecquant(
        &[
            "quantize-model",
            "--weights",
            "w.safetensors",
            "--scheme",
            "absmax",
            "--quiet",
            "--out",
            "/proc/vecquant-no-such-dir/m.vq",
        ],
        d,
    ));
    assert!(e.contains("/proc/vecquant-no-such-dir"), "{e}");
    assert!(temp_debris(d).is_empty(), "{:?}", temp_debris(d));
}

#[cfg(target_os = "linux")]
#[test]
fn item5_unwritable_out_is_refused_before_the_work() {
    let dir = setup();
    let d = dir.path();
    // Bench writes its report last: a place it cannot write is found before the
    // benchmark runs (no result table printed).
    let out = vecquant(
        &[
            "bench",
            "--data",
            "data",
            "--specs",
            "Flat",
            "--quiet",
            "--out",
            "/proc/vecquant-bench-out",
        ],
        d,
    );
    let e = fail(&out);
    assert!(e.contains("/proc/vecquant-bench-out"), "{e}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        !stdout.contains("Flat"),
        "the benchmark ran first: {stdout}"
    );
    // An existing file where bench wants a folder.
    let before = std::fs::read(d.join("data/base.fvecs")).unwrap();
    let out = vecquant(
        &[
            "bench",
            "--data",
            "data",
            "--specs",
            "Flat",
            "--quiet",
            "--out",
            "data/base.fvecs",
        ],
        d,
    );
    let e = fail(&out);
    assert!(
        e.contains("base.fvecs") && e.contains("not a directory"),
        "{e}"
    );
    assert!(!String::from_utf8_lossy(&out.stdout).contains("Flat"));
    assert_eq!(std::fs::read(d.join("data/base.fvecs")).unwrap(), before);
    // Build and ground truth into /proc: refused before reading anything.
    let e = fail(&vecquant(
        &[
            "build",
            "--spec",
            "PQ5",
            "--base",
            "data/base.fvecs",
            "--out",
            "/proc/vecquant-x.vq",
        ],
        d,
    ));
    assert!(e.contains("/proc/vecquant-x.vq"), "{e}");
    assert!(!e.contains("PQ5"), "{e}");
    assert!(temp_debris(d).is_empty(), "{:?}", temp_debris(d));
}

#[test]
fn item5_failed_rename_leaves_no_temporary_file() {
    // The library's atomic writers: the rename onto a directory fails after the data
    // is written; the temporary file goes with the error.
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir(d.join("x.fvecs")).unwrap();
    let v = vecquant::VectorSet::new(vec![1.0; 32], 4).unwrap();
    assert!(vecquant::data::write_vectors(d.join("x.fvecs"), &v).is_err());
    assert!(vecquant::data::write_file_atomic(d.join("x.fvecs"), b"abc").is_err());
    assert!(temp_debris(d).is_empty(), "{:?}", temp_debris(d));
}

// ---- item 16 (part): directories and missing files given as inputs ----

#[test]
fn item16_directory_as_input_says_so() {
    let dir = setup();
    let d = dir.path();
    gen_weights(d);
    let runs: Vec<Vec<&str>> = vec![
        vec!["search", "--index", "data", "--queries", "data/query.fvecs"],
        vec!["add", "--index", "data", "--vectors", "data/query.fvecs"],
        vec!["delete", "--index", "data", "--ids", "1"],
        vec!["inspect", "data"],
        build_args("data", "x.vq"),
        vec!["search", "--index", "flat.vq", "--queries", "data"],
        vec![
            "quantize-model",
            "--weights",
            "data",
            "--scheme",
            "absmax",
            "--out",
            "m.vq",
        ],
        vec![
            "groundtruth",
            "--base",
            "data/base.fvecs",
            "--queries",
            "data",
            "--out",
            "gt.ivecs",
        ],
    ];
    for a in runs {
        let e = fail(&vecquant(&a, d));
        assert!(
            e.contains("data: is a directory") && !e.contains("No such device"),
            "{a:?}: {e}"
        );
    }
}

#[test]
fn item16_missing_input_names_the_path() {
    let dir = setup();
    let d = dir.path();
    let runs: Vec<Vec<&str>> = vec![
        vec![
            "search",
            "--index",
            "nope.vq",
            "--queries",
            "data/query.fvecs",
        ],
        vec!["add", "--index", "flat.vq", "--vectors", "nope.fvecs"],
        build_args("nope.fvecs", "x.vq"),
        vec![
            "quantize-model",
            "--weights",
            "nope.safetensors",
            "--scheme",
            "absmax",
            "--out",
            "m.vq",
        ],
        vec![
            "groundtruth",
            "--base",
            "nope.fvecs",
            "--queries",
            "data/query.fvecs",
            "--out",
            "gt.ivecs",
        ],
    ];
    for a in runs {
        let e = fail(&vecquant(&a, d));
        assert!(
            e.contains("nope.") && e.contains("No such file"),
            "{a:?}: {e}"
        );
    }
    assert!(!d.join("x.vq").exists() && !d.join("gt.ivecs").exists());
}

/// `inspect` describes vector and ground-truth files (their shape, checked record by
/// record), fails after the description on a non-finite value or a malformed record
/// (naming it), and still describes a container saved under a vector extension.
#[test]
fn inspect_describes_vector_files_and_names_their_damage() {
    let dir = setup();
    let d = dir.path();
    let info = ok(&vecquant(&["inspect", "data/base.fvecs"], d));
    assert!(
        info.contains("format    fvecs")
            && info.contains("dim       16")
            && info.contains("vectors   2000")
            && info.contains("nonfinite 0 values"),
        "{info}"
    );
    let gt = ok(&vecquant(&["inspect", "data/groundtruth.ivecs"], d));
    assert!(
        gt.contains("format    ivecs") && gt.contains("rows      20"),
        "{gt}"
    );

    let base = std::fs::read(d.join("data/base.fvecs")).unwrap();
    let rec = 4 + 16 * 4;
    // Record 7, component 3 is NaN.
    let mut nan = base.clone();
    nan[7 * rec + 4 + 3 * 4..7 * rec + 4 + 4 * 4].copy_from_slice(&f32::NAN.to_le_bytes());
    std::fs::write(d.join("nan.fvecs"), &nan).unwrap();
    let out = vecquant(&["inspect", "nan.fvecs"], d);
    let e = fails(&out, &["nan.fvecs", "record 7, component 3 is NaN"]);
    assert!(e.contains("1 non-finite values"), "{e}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("nonfinite 1 values"));
    // Record 9's dimension header says 15.
    let mut bad = base;
    bad[9 * rec..9 * rec + 4].copy_from_slice(&15i32.to_le_bytes());
    std::fs::write(d.join("bad.fvecs"), &bad).unwrap();
    let out = vecquant(&["inspect", "bad.fvecs"], d);
    fails(&out, &["bad.fvecs", "record 9", "dimension 15"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("checked   0 of 2000 vectors"));

    // An index saved as `.fvecs` is still described as a container.
    std::fs::copy(d.join("flat.vq"), d.join("index.fvecs")).unwrap();
    let info = ok(&vecquant(&["inspect", "index.fvecs"], d));
    assert!(info.contains("vecquant container"), "{info}");
}

/// `add` and `delete` take their turn before they read the index: while another writer
/// holds it (here this test, through the library's `store::reserve`, as another
/// `vecquant add` would), `add` says on stderr that it waits, writes nothing, and then
/// adds on top of what the other writer saved — no change is lost. Two `add`s and a
/// `delete` started together all land. (Both used to start from the old file: the later
/// save undid the earlier one's change, or failed with "No such file or directory".)
#[test]
fn concurrent_adds_and_deletes_all_land() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    small_data(d);
    let build = ["build", "--spec", "SQ8", "--base", "data/base.fvecs"];
    ok(&vecquant(&[&build[..], &["--out", "i.vq"]].concat(), d));
    let live = |d: &Path| -> usize {
        let o = ok(&vecquant(&["inspect", "i.vq"], d));
        let line = o
            .lines()
            .find(|l| l.starts_with("live"))
            .expect("live line");
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    };
    let index = d.join("i.vq");
    let turn = vecquant::store::reserve(&index, &mut || {}).unwrap();
    let add = ["add", "--index", "i.vq", "--vectors", "data/query.fvecs"];
    let child = spawn_vecquant(&add, d);
    std::thread::sleep(std::time::Duration::from_millis(500));
    // The other writer's save (this test's): 5 of the 2,000 deleted.
    let mut idx = vecquant::index::open(&index).unwrap();
    idx.delete(&[0, 1, 2, 3, 4]).unwrap();
    idx.save(&index).unwrap();
    drop(turn);
    let out = child.wait_with_output().unwrap();
    let (_, err) = text(&out);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("waiting for another process"), "{err}");
    // 2,000 − 5 + 20: the add went on top of the delete.
    assert_eq!(live(d), 2015);

    // Three rewrites at once: every one lands.
    let runs = [
        spawn_vecquant(&[&add[..], &["--first-id", "10000"]].concat(), d),
        spawn_vecquant(&[&add[..], &["--first-id", "20000"]].concat(), d),
        spawn_vecquant(&["delete", "--index", "i.vq", "--ids", "5,6,7"], d),
    ];
    for r in runs {
        let out = r.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", text(&out).1);
    }
    assert_eq!(live(d), 2015 + 40 - 3);
    assert!(temp_debris(d).is_empty(), "{:?}", temp_debris(d));
}
