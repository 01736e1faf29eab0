//! Issue 17 ("No surprises"), through the `vecquant` binary and the HTTP service: huge
//! values are refused at build and search (item 2), `add` refuses colliding ids and
//! `--upsert` replaces (item 3), and errors name the file and the record (item 16).
#![cfg(all(feature = "cli", feature = "server"))]

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::process::Output;
use std::sync::Arc;

use vecquant::data::{read_vectors, write_vectors};
use vecquant::serve::{ServeConfig, serve_with_shutdown};
use vecquant::{Flat, Index, Metric, VectorSet};

use crate::cli_util;
use cli_util::*;

/// A copy of `src` with component `col` of record `row` set to `value`, written to `dst`.
fn with_value(d: &Path, src: &str, dst: &str, row: usize, col: usize, value: f32) {
    let v = read_vectors(d.join(src)).unwrap();
    let dim = v.dim();
    let mut x = v.into_vec();
    x[row * dim + col] = value;
    write_vectors(d.join(dst), &VectorSet::new(x, dim).unwrap()).unwrap();
}

fn build(d: &Path, spec: &str, base: &str, out: &str) -> Output {
    vecquant(&["build", "--spec", spec, "--base", base, "--out", out], d)
}

/// Item 2: base vectors with finite but huge values are refused at build, naming the
/// file and the record, for Flat and SQ8 alike (SQ8 used to build and then fail every
/// search with "non-finite correction term").
#[test]
fn item2_build_refuses_huge_values_naming_file_and_record() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    small_data(d);
    with_value(d, "data/base.fvecs", "big.fvecs", 17, 3, 1e38);
    for spec in ["Flat", "SQ8", "PQ4", "IVF8,SQ8", "HNSW8"] {
        fails(
            &build(d, spec, "big.fvecs", "big.vq"),
            &["big.fvecs", "record 17"],
        );
        assert!(!d.join("big.vq").exists(), "{spec}: no index written");
    }
    // A huge training vector names the training file.
    let out = vecquant(
        &[
            "build",
            "--spec",
            "SQ8",
            "--base",
            "data/base.fvecs",
            "--train",
            "big.fvecs",
            "--out",
            "t.vq",
        ],
        d,
    );
    fails(&out, &["big.fvecs", "record 17"]);
}

/// Item 2: a query file whose record 3 overflows distances is an error naming the file
/// and the record (it used to print ids 0, 1, 2 with `null` distances).
#[test]
fn item2_search_refuses_queries_whose_distances_overflow() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    small_data(d);
    ok(&build(d, "SQ8", "data/base.fvecs", "sq8.vq"));
    ok(&build(d, "Flat", "data/base.fvecs", "flat.vq"));
    for big in [2e19f32, 3.4e38] {
        with_value(d, "data/query.fvecs", "q.fvecs", 3, 0, big);
        for index in ["sq8.vq", "flat.vq"] {
            let out = vecquant(
                &["search", "--index", index, "--queries", "q.fvecs", "--json"],
                d,
            );
            fails(&out, &["q.fvecs", "record 3"]);
        }
    }
}

/// Item 3: adding the same ids twice is refused (naming the first colliding id and how
/// many collide), `delete` counts right, and `--upsert` replaces without growing.
#[test]
fn item3_add_refuses_colliding_ids_and_upsert_replaces() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    small_data(d);
    ok(&build(d, "SQ8", "data/base.fvecs", "sq8.vq"));
    // `add` of the 20 queries with ids from `first` on.
    let add_at = |first: &str, extra: &[&str]| {
        let mut args = vec![
            "add",
            "--index",
            "sq8.vq",
            "--vectors",
            "data/query.fvecs",
            "--first-id",
            first,
        ];
        args.extend_from_slice(extra);
        vecquant(&args, d)
    };
    let add = |extra: &[&str]| add_at("100000", extra);
    ok(&add(&[]));
    assert_eq!(vecquant::index::open(d.join("sq8.vq")).unwrap().len(), 2020);
    let err = fails(&add(&[]), &["100000", "20 of"]);
    assert!(err.contains("--upsert"), "{err}");
    assert_eq!(vecquant::index::open(d.join("sq8.vq")).unwrap().len(), 2020);
    // Default ids continue past the largest id held and collide with nothing.
    let out = ok(&vecquant(
        &["add", "--index", "sq8.vq", "--vectors", "data/query.fvecs"],
        d,
    ));
    assert!(out.contains("ids 100020..100040"), "{out}");
    // --upsert replaces: the count is unchanged and the old vectors are gone.
    with_value(d, "data/query.fvecs", "moved.fvecs", 0, 0, 50.0);
    let out = ok(&vecquant(
        &[
            "add",
            "--index",
            "sq8.vq",
            "--vectors",
            "moved.fvecs",
            "--first-id",
            "100000",
            "--upsert",
        ],
        d,
    ));
    assert!(out.contains("replaced 20"), "{out}");
    // The index's size, and the ids of the `k` nearest to row `row` of `file`.
    let nearest = |file: &str, row: usize, k: usize| {
        let idx = vecquant::index::open(d.join("sq8.vq")).unwrap();
        let v = read_vectors(d.join(file)).unwrap();
        let hits = idx
            .search(v.row(row), &vecquant::SearchParams::with_k(k))
            .unwrap();
        (idx.len(), hits.iter().map(|h| h.id).collect::<Vec<u64>>())
    };
    let (len, ids) = nearest("moved.fvecs", 0, 1);
    assert_eq!((len, ids[0]), (2040, 100000));
    let out = ok(&vecquant(
        &["delete", "--index", "sq8.vq", "--ids", "100000,100000"],
        d,
    ));
    assert!(out.contains("deleted 1 of 1 "), "{out}");
    // After a compaction (fewer rows than the largest id), a plain add still takes
    // fresh ids.
    ok(&vecquant(
        &["delete", "--index", "sq8.vq", "--ids", "3,4", "--compact"],
        d,
    ));
    let out = ok(&vecquant(
        &["add", "--index", "sq8.vq", "--vectors", "data/query.fvecs"],
        d,
    ));
    assert!(out.contains("ids 100040..100060"), "{out}");
    // The last new id may be u64::MAX itself; one more is refused before anything is
    // written, and so are default ids once u64::MAX is held.
    let err = fails(
        &add_at("18446744073709551597", &[]),
        &["first-id", "u64::MAX"],
    );
    assert!(
        err.contains("20 new ids from 18446744073709551597"),
        "{err}"
    );
    assert_eq!(vecquant::index::open(d.join("sq8.vq")).unwrap().len(), 2057);
    let out = ok(&add_at("18446744073709551596", &[]));
    assert!(
        out.contains("ids 18446744073709551596..18446744073709551616"),
        "{out}"
    );
    // (Query 19 is also held under three earlier ids, at the same distance.)
    let (len, ids) = nearest("data/query.fvecs", 19, 10);
    assert_eq!(len, 2077);
    assert!(ids.contains(&u64::MAX), "{ids:?}");
    fails(
        &vecquant(
            &["add", "--index", "sq8.vq", "--vectors", "data/query.fvecs"],
            d,
        ),
        &["u64::MAX", "--first-id"],
    );
}

/// Item 16: NaN and dimension mismatches name the file and the record, at `add`,
/// `search` and `build`.
#[test]
fn item16_errors_name_the_file_and_record() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    small_data(d);
    ok(&build(d, "SQ8", "data/base.fvecs", "sq8.vq"));
    with_value(d, "data/query.fvecs", "more.fvecs", 17, 3, f32::NAN);
    let out = vecquant(&["add", "--index", "sq8.vq", "--vectors", "more.fvecs"], d);
    fails(&out, &["more.fvecs", "record 17", "NaN"]);
    let out = vecquant(
        &["search", "--index", "sq8.vq", "--queries", "more.fvecs"],
        d,
    );
    fails(&out, &["more.fvecs", "record 17", "NaN"]);
    with_value(d, "data/base.fvecs", "nan_base.fvecs", 17, 3, f32::INFINITY);
    fails(
        &build(d, "Flat", "nan_base.fvecs", "x.vq"),
        &["nan_base.fvecs", "record 17"],
    );
    // Dimension mismatches.
    let eight = VectorSet::new(vec![0.5f32; 8 * 4], 8).unwrap();
    write_vectors(d.join("eight.fvecs"), &eight).unwrap();
    for cmd in [
        vec!["add", "--index", "sq8.vq", "--vectors", "eight.fvecs"],
        vec!["search", "--index", "sq8.vq", "--queries", "eight.fvecs"],
        vec![
            "build",
            "--spec",
            "SQ8",
            "--base",
            "data/base.fvecs",
            "--train",
            "eight.fvecs",
            "--out",
            "y.vq",
        ],
    ] {
        fails(&vecquant(&cmd, d), &["eight.fvecs", "dimension"]);
    }
}

// ---------------------------------------------------------------- HTTP

/// Runs a server over `index` on loopback for the duration of `f`.
fn with_server(index: Arc<dyn Index>, f: impl FnOnce(SocketAddr)) {
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            addr_tx.send(listener.local_addr().unwrap()).unwrap();
            serve_with_shutdown(listener, index, ServeConfig::default(), async {
                let _ = stopped.await;
            })
            .await
            .unwrap();
        });
    });
    let addr = addr_rx.recv().unwrap();
    f(addr);
    let _ = stop.send(());
    thread.join().unwrap();
}

/// One POST on a fresh connection (`connection: close`): (status, JSON body).
fn post(addr: SocketAddr, path: &str, body: &str) -> (u16, serde_json::Value) {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    let req = format!(
        "POST {path} HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8_lossy(&raw);
    let status: u16 = text.split_whitespace().nth(1).unwrap().parse().unwrap();
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    let v = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {text}"));
    (status, v)
}

/// Item 2 over HTTP: a query whose distances overflow is a 422 naming the query, in
/// `/search` and at its index in `/search_batch` (it used to be 200 with `null`).
#[test]
fn item2_http_queries_whose_distances_overflow_are_422() {
    let base = vecquant::data::generate::gaussian(500, 16, 0.0, 1.0, 1).unwrap();
    let mut flat = Flat::new(16, Metric::L2);
    flat.add(base.as_slice(), None).unwrap();
    with_server(Arc::new(flat), |addr| {
        let ok_vec = vec!["0.5"; 16].join(",");
        let mut big = vec!["0.5"; 16];
        big[1] = "2e19";
        let big = big.join(",");
        let (s, v) = post(
            addr,
            "/search",
            &format!(r#"{{"vector":[{ok_vec}],"k":3}}"#),
        );
        assert_eq!(s, 200, "{v}");
        let (s, v) = post(addr, "/search", &format!(r#"{{"vector":[{big}],"k":3}}"#));
        assert_eq!(s, 422, "{v}");
        let msg = v["error"].as_str().unwrap();
        assert!(msg.contains("`vector`"), "{msg}");
        let body = format!(r#"{{"vectors":[[{ok_vec}],[{big}]],"k":3}}"#);
        let (s, v) = post(addr, "/search_batch", &body);
        assert_eq!(s, 422, "{v}");
        let msg = v["error"].as_str().unwrap();
        assert!(msg.contains("vectors[1]"), "{msg}");
    });
}

/// Runs the binary in `cwd` with its standard output a pipe whose reader has already
/// gone (`vecquant … | head` after `head` exited): every write fails with `EPIPE`.
fn with_closed_stdout(args: &[&str], cwd: &Path) -> Output {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    vecquant_to(args, cwd, writer)
}

/// A reader that closes the pipe early (`vecquant search … | head -1`) ends the command
/// quietly, exit status 0, after the files it was asked for were written: `println!`
/// panicked with "failed printing to stdout: Broken pipe" and a backtrace.
#[test]
fn closed_stdout_pipe_ends_commands_quietly() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    small_data(d);
    let runs: [&[&str]; 5] = [
        &[
            "gen",
            "gaussian",
            "--dim",
            "8",
            "--n",
            "300",
            "--queries",
            "5",
            "--out",
            "g",
        ],
        &[
            "build",
            "--spec",
            "IVF4,PQ4x4fs",
            "--base",
            "data/base.fvecs",
            "--out",
            "i.vq",
        ],
        &[
            "search",
            "--index",
            "i.vq",
            "--queries",
            "data/query.fvecs",
            "--json",
        ],
        &[
            "search",
            "--index",
            "i.vq",
            "--queries",
            "data/query.fvecs",
            "--out",
            "r.ivecs",
        ],
        &["inspect", "i.vq"],
    ];
    for args in runs {
        let out = with_closed_stdout(args, d);
        let e = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{args:?}: {:?} {e}", out.status);
        assert!(e.is_empty(), "{args:?}: {e}");
    }
    // The files were written in full before the summary line failed.
    assert_eq!(read_vectors(d.join("g/base.fvecs")).unwrap().len(), 300);
    let r = std::fs::read(d.join("r.ivecs")).unwrap();
    assert_eq!(r.len(), 20 * (1 + 10) * 4);
}

/// Any other failure to write standard output (here a full disk) is an error that names
/// standard output and the cause, exit status 1, no panic.
#[cfg(target_os = "linux")]
#[test]
fn full_stdout_is_an_error_naming_standard_output() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .unwrap();
    let out = vecquant_to(
        &["gen", "gaussian", "--dim", "4", "--n", "50", "--out", "g"],
        d,
        full,
    );
    fails(&out, &["standard output", "No space left on device"]);
}
