//! Running the `vecquant` binary from the CLI tests (`tests/cli*.rs`,
//! `tests/no_surprises_cli.rs`): one run, its success or clean failure, and the small
//! generated data set most of them start from.
#![allow(dead_code)]

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};

/// Runs the binary under test in `cwd`: `VECQUANT_BIN` when set (e.g. an older build, to
/// watch a test fail on it), else the one cargo built for this test.
pub fn vecquant(args: &[&str], cwd: &Path) -> Output {
    vecquant_to(args, cwd, Stdio::piped())
}

/// [`vecquant`] with its standard output sent to `stdout` (a closed pipe, `/dev/full`);
/// its standard error is captured.
pub fn vecquant_to(args: &[&str], cwd: &Path, stdout: impl Into<Stdio>) -> Output {
    command(args, cwd, stdout)
        .output()
        .expect("the vecquant binary runs")
}

/// [`vecquant`] started and left running (both outputs piped): for runs that must
/// overlap; `wait_with_output` collects them.
pub fn spawn_vecquant(args: &[&str], cwd: &Path) -> Child {
    command(args, cwd, Stdio::piped())
        .spawn()
        .expect("the vecquant binary starts")
}

/// The binary under test with `args` in `cwd`, stderr piped.
fn command(args: &[&str], cwd: &Path, stdout: impl Into<Stdio>) -> Command {
    let bin =
        std::env::var_os("VECQUANT_BIN").unwrap_or_else(|| env!("CARGO_BIN_EXE_vecquant").into());
    let mut c = Command::new(bin);
    c.args(args)
        .current_dir(cwd)
        .stdout(stdout)
        .stderr(Stdio::piped());
    c
}

/// Stdout and stderr as text.
pub fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The stdout of a run that must succeed.
pub fn ok(out: &Output) -> String {
    let (o, e) = text(out);
    assert!(out.status.success(), "failed: {o}\n{e}");
    o
}

/// The stderr of a run that must fail cleanly (non-zero exit, no panic).
pub fn fail(out: &Output) -> String {
    let (o, e) = text(out);
    assert!(!out.status.success(), "succeeded but should fail: {o}\n{e}");
    assert!(!e.contains("panicked"), "{e}");
    e
}

/// [`fail`], and the stderr names every one of `needles`.
pub fn fails(out: &Output, needles: &[&str]) -> String {
    let e = fail(out);
    for n in needles {
        assert!(e.contains(n), "stderr does not name `{n}`: {e}");
    }
    e
}

/// `vecquant gen gaussian --dim 16 --n 2000 --queries 20 --out data` in `d`.
pub fn small_data(d: &Path) {
    ok(&vecquant(
        &[
            "gen",
            "gaussian",
            "--dim",
            "16",
            "--n",
            "2000",
            "--queries",
            "20",
            "--out",
            "data",
        ],
        d,
    ));
}
