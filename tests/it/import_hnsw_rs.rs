//! Importing graphs dumped by the hnsw_rs crate (`index::hnsw::import_hnsw_rs`,
//! `Hnsw::from_hnsw_rs`, `vecquant import-hnsw-rs`): the graph, the ids and the metric
//! survive, search finds the true neighbours, and a damaged or unsupported dump is a
//! typed error naming its file — never a panic.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use hnsw_rs::prelude::{AnnT, DistCosine, DistDot, DistL1, DistL2, Distance, Hnsw as HnswRs};
use vecquant::data::generate::gaussian;
use vecquant::data::groundtruth::ground_truth;
use vecquant::eval::recall_at_k;
use vecquant::index::hnsw::{HnswFlat, HnswScalar, import_hnsw_rs, read_hnsw_rs_description};
use vecquant::index::spec::{BuildOptions, IndexSpec};
use vecquant::quant::codec::{RawSpec, SqSpec};
use vecquant::{Error, Index, Metric, SearchParams, VectorSet};

const N: usize = 3000;
const DIM: usize = 16;
const M: usize = 16;
const BASENAME: &str = "vectors";

/// Layer-0 neighbour data ids of every data id in an hnsw_rs graph.
type Links = HashMap<u64, Vec<u64>>;

/// Inserts the rows of `data` (row `i` under data id `id(i)`, one at a time so the graph
/// does not depend on thread timing) into an hnsw_rs index with `dist`, dumps it as
/// `dir/vectors.hnsw.{graph,data}` and returns its layer-0 links.
fn dump<Dist: Distance<f32> + Send + Sync>(
    dir: &Path,
    dist: Dist,
    data: &VectorSet,
    id: impl Fn(usize) -> usize,
) -> Links {
    let h = HnswRs::<f32, Dist>::new(M, data.len(), 16, 100, dist);
    for i in 0..data.len() {
        h.insert((data.row(i), id(i)));
    }
    assert_eq!(h.file_dump(dir, BASENAME).unwrap(), BASENAME);
    h.get_point_indexation()
        .into_iter()
        .map(|p| {
            let l0 = p.get_neighborhood_id()[0]
                .iter()
                .map(|n| n.get_origin_id() as u64)
                .collect();
            (p.get_origin_id() as u64, l0)
        })
        .collect()
}

/// Seeded base vectors and queries; unit-norm (scaled by 0.999, so hnsw_rs's DistDot
/// never sees a dot product above 1) for the inner product.
fn data(metric: Metric) -> (VectorSet, VectorSet) {
    let mut base = gaussian(N, DIM, 0.0, 1.0, 11).unwrap();
    let mut queries = gaussian(200, DIM, 0.0, 1.0, 12).unwrap();
    if metric == Metric::InnerProduct {
        for v in [&mut base, &mut queries] {
            v.normalize();
            let scaled: Vec<f32> = v.as_slice().iter().map(|x| x * 0.999).collect();
            *v = VectorSet::new(scaled, DIM).unwrap();
        }
    }
    (base, queries)
}

fn dump_for(metric: Metric, dir: &Path, base: &VectorSet, id: impl Fn(usize) -> usize) -> Links {
    match metric {
        Metric::L2 => dump(dir, DistL2, base, id),
        Metric::Cosine => dump(dir, DistCosine, base, id),
        Metric::InnerProduct => dump(dir, DistDot, base, id),
    }
}

fn sq8() -> SqSpec {
    let IndexSpec::Scalar(sq) = "SQ8".parse().unwrap() else {
        unreachable!()
    };
    SqSpec {
        name: sq.name(),
        config: sq.config(),
    }
}

/// How many of hnsw_rs's layer-0 links the imported graph lacks (repair may give a full
/// node's farthest link to a node with too few in-links), and how many nodes lost one.
fn lost_links(
    h_links: &Links,
    ids: &[u64],
    neighbors: impl Fn(usize) -> Vec<u32>,
) -> (usize, usize) {
    let row_of: HashMap<u64, usize> = ids.iter().enumerate().map(|(r, &id)| (id, r)).collect();
    let (mut lost, mut nodes) = (0, 0);
    for (id, want) in h_links {
        let got: Vec<u64> = neighbors(row_of[id])
            .iter()
            .map(|&r| ids[r as usize])
            .collect();
        let missing = want.iter().filter(|w| !got.contains(w)).count();
        lost += missing;
        nodes += usize::from(missing > 0);
    }
    (lost, nodes)
}

/// Recall@10 at ef 64 of `index` against brute force, where base row `i` has id `id(i)`.
fn recall(
    index: &dyn Index,
    base: &VectorSet,
    queries: &VectorSet,
    metric: Metric,
    id: impl Fn(usize) -> usize,
) -> f64 {
    let gt: Vec<Vec<u32>> = ground_truth(base, queries, 10, metric).unwrap();
    let res = index
        .search_batch(queries.as_slice(), &SearchParams::new(10).ef_search(64))
        .unwrap();
    // recall_at_k compares result ids with ground-truth ids: map rows to data ids.
    let by_row: Vec<Vec<vecquant::Neighbor>> = res
        .into_iter()
        .map(|r| {
            r.into_iter()
                .map(|mut n| {
                    n.id = (0..base.len())
                        .find(|&i| id(i) as u64 == n.id)
                        .map_or(u64::MAX, |i| i as u64);
                    n
                })
                .collect()
        })
        .collect();
    recall_at_k(&by_row, &gt, 10)
}

/// Both specs and all three distances: the graph is hnsw_rs's (plus repair links), the
/// ids are the data ids, the metric is the dump's, search recall is high, and the spec
/// string gives the same index as the typed constructor.
#[test]
fn imported_graph_ids_metric_and_recall() {
    for metric in [Metric::L2, Metric::Cosine, Metric::InnerProduct] {
        let dir = tempfile::tempdir().unwrap();
        let (base, queries) = data(metric);
        let links = dump_for(metric, dir.path(), &base, |i| i);
        let descr = read_hnsw_rs_description(dir.path(), BASENAME).unwrap();
        assert_eq!(
            (
                descr.count,
                descr.dim,
                descr.max_nb_connection,
                descr.metric()
            ),
            (N, DIM, M, Some(metric))
        );
        assert_eq!(descr.data_type, "f32");
        let opts = BuildOptions::default();
        let flat = HnswFlat::from_hnsw_rs(dir.path(), BASENAME, RawSpec, &opts).unwrap();
        let sq = HnswScalar::from_hnsw_rs(dir.path(), BASENAME, sq8(), &opts).unwrap();
        let ids: Vec<u64> = (0..N as u64).collect();
        for (spec, typed) in [
            ("HNSW16", &flat as &dyn Index),
            ("HNSW16,SQ8", &sq as &dyn Index),
        ] {
            assert_eq!(typed.spec(), spec);
            assert_eq!((typed.len(), typed.dim(), typed.metric()), (N, DIM, metric));
            // The spec-string path builds the same index.
            let by_spec = import_hnsw_rs(dir.path(), BASENAME, spec, &opts).unwrap();
            assert_eq!(by_spec.spec(), spec);
            let p = SearchParams::new(10).ef_search(64);
            assert_eq!(
                by_spec.search_batch(queries.as_slice(), &p).unwrap(),
                typed.search_batch(queries.as_slice(), &p).unwrap(),
                "{spec} {metric}"
            );
            let r = recall(typed, &base, &queries, metric, |i| i);
            eprintln!("{spec} {metric}: recall@10 at ef 64 = {r:.4}");
            let floor = if spec == "HNSW16" { 0.99 } else { 0.96 };
            assert!(r >= floor, "{spec} {metric}: recall@10 {r:.4} < {floor}");
        }
        // Layer 0: hnsw_rs's links, nearest first, with repair links added.
        let (lost, nodes) = lost_links(&links, &ids, |r| flat.neighbors(r));
        let total: usize = links.values().map(Vec::len).sum();
        eprintln!("{metric}: {lost} of {total} hnsw_rs links replaced, at {nodes} nodes");
        assert!(
            lost * 1000 <= total,
            "{metric}: {lost} of {total} links lost"
        );
        let same = (0..N)
            .filter(|&r| {
                let want: Vec<u32> = links[&(r as u64)].iter().map(|&v| v as u32).collect();
                flat.neighbors(r).starts_with(&want)
            })
            .count();
        assert!(
            same * 100 >= N * 99,
            "{metric}: {same} of {N} lists start with hnsw_rs's"
        );
        assert!(flat.levels().iter().any(|&l| l > 0));
        // The stored vectors are the dump's (normalised for cosine).
        let back = flat.reconstruct_ids(&[0, 1234]).unwrap();
        let mut want = [base.row(0).to_vec(), base.row(1234).to_vec()].concat();
        if metric == Metric::Cosine {
            want.chunks_exact_mut(DIM)
                .for_each(vecquant::vectors::normalize_in_place);
        }
        assert_eq!(back, want);
    }
}

/// Data ids that are not 0..n (descending, with gaps) stay the vecquant ids; the graph
/// is mapped to rows in id order.
#[test]
fn arbitrary_data_ids_are_kept() {
    let dir = tempfile::tempdir().unwrap();
    let (base, queries) = data(Metric::L2);
    let id = |i: usize| 5_000_000_000 + 7 * (N - 1 - i);
    let links = dump(dir.path(), DistL2, &base, id);
    let flat =
        HnswFlat::from_hnsw_rs(dir.path(), BASENAME, RawSpec, &BuildOptions::default()).unwrap();
    let mut ids: Vec<u64> = (0..N).map(|i| id(i) as u64).collect();
    ids.sort_unstable();
    let (lost, _) = lost_links(&links, &ids, |r| flat.neighbors(r));
    assert!(lost * 1000 <= links.values().map(Vec::len).sum::<usize>());
    for i in [0, 17, N - 1] {
        let hit = flat.search(base.row(i), &SearchParams::new(1)).unwrap();
        assert_eq!(hit[0].id, id(i) as u64);
    }
    let r = recall(&flat, &base, &queries, Metric::L2, id);
    eprintln!("arbitrary ids: recall@10 at ef 64 = {r:.4}");
    assert!(r >= 0.99, "{r}");
    // An id that is not a data id is unknown.
    assert!(matches!(
        flat.reconstruct_ids(&[3]),
        Err(Error::UnknownId { id: 3, .. })
    ));
}

/// The imported index saves to a container and opens with the same answers.
#[test]
fn imported_index_saves_and_loads() {
    let dir = tempfile::tempdir().unwrap();
    let (base, queries) = data(Metric::Cosine);
    dump(dir.path(), DistCosine, &base, |i| 10 * i);
    let index =
        import_hnsw_rs(dir.path(), BASENAME, "HNSW16,SQ8", &BuildOptions::default()).unwrap();
    let out = dir.path().join("imported.vq");
    index.save(&out).unwrap();
    let opened = vecquant::index::open(&out).unwrap();
    assert_eq!(
        (opened.spec(), opened.len(), opened.metric()),
        ("HNSW16,SQ8".to_string(), N, Metric::Cosine)
    );
    let p = SearchParams::new(10).ef_search(64);
    assert_eq!(
        opened.search_batch(queries.as_slice(), &p).unwrap(),
        index.search_batch(queries.as_slice(), &p).unwrap()
    );
    assert!(
        opened
            .build_params()
            .iter()
            .any(|(k, v)| *k == "ef_construction" && v == "100"),
        "{:?}",
        opened.build_params()
    );
}

// ---- bad input -------------------------------------------------------------------------

/// A small dumped L2 graph (the error tests only need its files).
fn small_dump(dir: &Path) -> (PathBuf, PathBuf) {
    let base = gaussian(300, 8, 0.0, 1.0, 3).unwrap();
    let h = HnswRs::<f32, DistL2>::new(M, 300, 16, 50, DistL2);
    for i in 0..300 {
        h.insert((base.row(i), i));
    }
    h.file_dump(dir, BASENAME).unwrap();
    (
        dir.join("vectors.hnsw.graph"),
        dir.join("vectors.hnsw.data"),
    )
}

fn import(dir: &Path, spec: &str) -> vecquant::Result<Box<dyn Index>> {
    import_hnsw_rs(dir, BASENAME, spec, &BuildOptions::default())
}

/// The error is an `Error::Format` on `path` whose message names every one of `needles`.
#[track_caller]
fn format_error(r: vecquant::Result<Box<dyn Index>>, path: &Path, needles: &[&str]) {
    let e = r.err().expect("the import must fail");
    let text = e.to_string();
    match &e {
        Error::Format { path: p, .. } => assert_eq!(p, path, "{text}"),
        other => panic!("not a format error: {other:?}"),
    }
    assert!(text.contains(path.to_str().unwrap()), "{text}");
    for n in needles {
        assert!(text.contains(n), "`{n}` not in: {text}");
    }
}

#[test]
fn missing_files_are_io_errors_naming_them() {
    let dir = tempfile::tempdir().unwrap();
    let (graph, data) = small_dump(dir.path());
    std::fs::remove_file(&data).unwrap();
    let e = import(dir.path(), "HNSW16").err().unwrap();
    assert!(matches!(&e, Error::Io { path, .. } if *path == data), "{e}");
    std::fs::remove_file(&graph).unwrap();
    let e = import(dir.path(), "HNSW16").err().unwrap();
    assert!(
        matches!(&e, Error::Io { path, .. } if *path == graph),
        "{e}"
    );
    assert!(e.to_string().contains("vectors.hnsw.graph"), "{e}");
}

#[test]
fn truncated_files_are_format_errors_naming_them() {
    let dir = tempfile::tempdir().unwrap();
    let (graph, data) = small_dump(dir.path());
    for path in [&graph, &data] {
        let full = std::fs::read(path).unwrap();
        for cut in [0, 3, 10, 40, full.len() / 2, full.len() - 1] {
            std::fs::write(path, &full[..cut]).unwrap();
            let e = import(dir.path(), "HNSW16").err().unwrap();
            let text = e.to_string();
            assert!(
                matches!(&e, Error::Format { path: p, .. } if p == path),
                "cut {cut}: {text}"
            );
            assert!(
                text.contains("truncated") || text.contains("cannot fit"),
                "cut {cut}: {text}"
            );
        }
        std::fs::write(path, &full).unwrap();
    }
    // Trailing bytes are damage too.
    let mut longer = std::fs::read(&graph).unwrap();
    longer.extend_from_slice(&[0; 5]);
    std::fs::write(&graph, &longer).unwrap();
    format_error(
        import(dir.path(), "HNSW16"),
        &graph,
        &["5 unexpected bytes"],
    );
}

/// Every single-byte corruption of either file (a seeded sample of positions) either
/// imports or fails with a format error naming a dump file: no panic, abort or exit.
#[test]
fn corrupted_bytes_never_crash() {
    let dir = tempfile::tempdir().unwrap();
    let (graph, data) = small_dump(dir.path());
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let (mut failed, mut imported) = (0, 0);
    for path in [&graph, &data] {
        let full = std::fs::read(path).unwrap();
        // The description and headers (every byte), then random positions.
        let positions: Vec<usize> = (0..64)
            .chain((0..150).map(|_| (next() % full.len() as u64) as usize))
            .collect();
        for at in positions {
            let mut bad = full.clone();
            bad[at] ^= 1 << (next() % 8) | 0x40;
            std::fs::write(path, &bad).unwrap();
            match HnswFlat::from_hnsw_rs(dir.path(), BASENAME, RawSpec, &BuildOptions::default()) {
                Ok(_) => imported += 1,
                Err(Error::Format { path: p, message }) => {
                    assert!(p == graph || p == data, "{}: {message}", p.display());
                    failed += 1;
                }
                Err(e) => panic!("byte {at} of {}: {e:?}", path.display()),
            }
        }
        std::fs::write(path, &full).unwrap();
    }
    eprintln!("corruptions: {failed} rejected, {imported} imported");
    assert!(failed > 100, "{failed}");
}

#[test]
fn unsupported_data_type_and_distance() {
    let dir = tempfile::tempdir().unwrap();
    let graph = dir.path().join("vectors.hnsw.graph");
    // u8 vectors.
    let h = HnswRs::<u8, DistL2>::new(M, 50, 16, 50, DistL2);
    for i in 0..50u8 {
        h.insert((&[i, 1, 2, 3][..], usize::from(i)));
    }
    h.file_dump(dir.path(), BASENAME).unwrap();
    format_error(import(dir.path(), "HNSW16"), &graph, &["`u8`", "f32"]);
    // The L1 distance.
    let base = gaussian(50, 4, 0.0, 1.0, 1).unwrap();
    let h = HnswRs::<f32, DistL1>::new(M, 50, 16, 50, DistL1);
    for i in 0..50 {
        h.insert((base.row(i), i));
    }
    h.file_dump(dir.path(), BASENAME).unwrap();
    format_error(
        import(dir.path(), "HNSW16"),
        &graph,
        &["DistL1", "DistL2", "DistCosine", "DistDot"],
    );
}

#[test]
fn spec_must_match_the_dump() {
    let dir = tempfile::tempdir().unwrap();
    let (graph, _) = small_dump(dir.path());
    let e = import(dir.path(), "HNSW32,SQ8").err().unwrap();
    let text = e.to_string();
    assert!(matches!(e, Error::InvalidParameter { .. }), "{text}");
    for n in [
        "M = 32",
        "max_nb_connection 16",
        "HNSW16,SQ8",
        graph.to_str().unwrap(),
    ] {
        assert!(text.contains(n), "`{n}` not in: {text}");
    }
    assert!(matches!(import(dir.path(), "SQ8"), Err(Error::Spec { .. })));
    assert!(matches!(
        import(dir.path(), "HNSW16,RaBitQfs"),
        Err(Error::Spec { .. } | Error::InvalidParameter { .. })
    ));
    // PQ's M must divide the dump's dimension (8).
    assert!(matches!(
        import(dir.path(), "HNSW16,PQ3"),
        Err(Error::InvalidParameter { .. })
    ));
    assert_eq!(
        import(dir.path(), "HNSW16,PQ4").unwrap().spec(),
        "HNSW16,PQ4"
    );
}

/// Offsets in a format-4 description: magic 4, mode 1, then M (1 byte), level scale 8,
/// layers 1, ef 8, point count 8, dimension 8.
const AT_M: usize = 5;
const AT_COUNT: usize = 23;
const AT_DIM: usize = 31;

#[test]
fn absurd_description_fields() {
    let dir = tempfile::tempdir().unwrap();
    let (graph, data) = small_dump(dir.path());
    let full = std::fs::read(&graph).unwrap();
    let patched = |at: usize, bytes: &[u8]| {
        let mut b = full.clone();
        b[at..at + bytes.len()].copy_from_slice(bytes);
        std::fs::write(&graph, b).unwrap();
    };
    for m in [0u8, 1, 200] {
        patched(AT_M, &[m]);
        format_error(
            import(dir.path(), "HNSW16"),
            &graph,
            &[&format!("max_nb_connection {m}"), "2..=128"],
        );
    }
    patched(AT_COUNT, &u64::MAX.to_ne_bytes());
    format_error(import(dir.path(), "HNSW16"), &graph, &["points"]);
    patched(AT_COUNT, &301u64.to_ne_bytes());
    format_error(
        import(dir.path(), "HNSW16"),
        &data,
        &["truncated", "301 vectors"],
    );
    // A dimension the data file does not have.
    patched(AT_DIM, &9u64.to_ne_bytes());
    format_error(import(dir.path(), "HNSW16"), &data, &["dimension 9"]);
    std::fs::write(&graph, &full).unwrap();
    let mut d = std::fs::read(&data).unwrap();
    d[4..12].copy_from_slice(&9u64.to_ne_bytes());
    std::fs::write(&data, &d).unwrap();
    format_error(
        import(dir.path(), "HNSW16"),
        &data,
        &["dimension 9", "says 8"],
    );
    // Not a dump at all.
    std::fs::write(&graph, b"#!/bin/sh\necho hello\n").unwrap();
    format_error(
        import(dir.path(), "HNSW16"),
        &graph,
        &["not an hnsw_rs graph dump"],
    );
}

#[test]
fn empty_graph_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    // hnsw_rs refuses to finish a dump of an empty index, but writes its description.
    let h = HnswRs::<f32, DistL2>::new(M, 10, 16, 50, DistL2);
    assert!(h.file_dump(dir.path(), BASENAME).is_err());
    let graph = dir.path().join("vectors.hnsw.graph");
    format_error(import(dir.path(), "HNSW16"), &graph, &["no points"]);
}

// ---- the command line --------------------------------------------------------------------

#[cfg(feature = "cli")]
#[test]
fn cli_imports_a_dump() {
    use crate::cli_util::{fails, ok, vecquant};
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir(d.join("dumps")).unwrap();
    let (base, queries) = data(Metric::L2);
    dump(&d.join("dumps"), DistL2, &base, |i| i);
    vecquant::data::write_vectors(d.join("q.fvecs"), &queries).unwrap();
    let out = ok(&vecquant(
        &[
            "import-hnsw-rs",
            "dumps/vectors",
            "--spec",
            "HNSW16,SQ8",
            "--out",
            "v.vq",
        ],
        d,
    ));
    eprintln!("{out}");
    for n in [
        "imported 3000 vectors",
        "HNSW16,SQ8",
        "M 16",
        "levels",
        "MB",
        "v.vq",
    ] {
        assert!(out.contains(n), "`{n}` not in: {out}");
    }
    let search = ok(&vecquant(
        &[
            "search",
            "--index",
            "v.vq",
            "--queries",
            "q.fvecs",
            "-k",
            "10",
            "--ef",
            "64",
        ],
        d,
    ));
    assert!(search.contains("HNSW16,SQ8"), "{search}");
    // --dir, the default spec (the dump's M, raw vectors) and a file name as BASENAME.
    let out = ok(&vecquant(
        &[
            "import-hnsw-rs",
            "vectors.hnsw.graph",
            "--dir",
            "dumps",
            "--out",
            "raw.vq",
        ],
        d,
    ));
    assert!(out.contains("as HNSW16:"), "{out}");
    fails(
        &vecquant(&["import-hnsw-rs", "dumps/nothing", "--out", "x.vq"], d),
        &["nothing.hnsw.graph"],
    );
    fails(
        &vecquant(
            &[
                "import-hnsw-rs",
                "dumps/vectors",
                "--spec",
                "HNSW8",
                "--out",
                "x.vq",
            ],
            d,
        ),
        &["max_nb_connection 16", "HNSW16"],
    );
    let help = ok(&vecquant(&["import-hnsw-rs", "--help"], d));
    for n in [
        ".hnsw.graph",
        ".hnsw.data",
        "file_dump",
        "data id",
        "--spec",
        "--out",
    ] {
        assert!(help.contains(n), "`{n}` not in: {help}");
    }
}
