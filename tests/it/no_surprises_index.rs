//! Issue 17 ("No surprises"), the library side: what an index accepts it can search
//! (item 2), ids stay unique unless an upsert replaces them (item 3), and errors name the
//! record (item 16). Every index kind is exercised through the public API.

use vecquant::data::generate::gaussian;
use vecquant::index::spec::{BuildOptions, new_index};
use vecquant::index::{FlatCodes, IdFilter};
use vecquant::quant::codec::SqSpec;
use vecquant::quant::scalar::{ScalarQuantizer, SqConfig};
use vecquant::store::{Container, ContainerWriter, OpenOptions};
use vecquant::{Error, Index, Metric, SearchParams};

const DIM: usize = 16;
const N: usize = 600;

/// Every index kind (and a codec-generic flat scan), untrained and empty.
fn kinds() -> Vec<(String, Box<dyn Index>)> {
    let opts = BuildOptions::default();
    let mut out: Vec<(String, Box<dyn Index>)> = [
        "Flat",
        "SQ8",
        "SQ4",
        "PQ4",
        "PQ8x4fs",
        "OPQ4,PQ4",
        "IVF4,Flat",
        "IVF4,SQ8",
        "IVF4,PQ4",
        "IVF4,PQ8x4fs",
        "HNSW8",
        "HNSW8,SQ8",
        "HNSW8,PQ4",
    ]
    .iter()
    .map(|s| (s.to_string(), new_index(s, DIM, &opts).unwrap()))
    .collect();
    let sq = SqSpec {
        name: "SQ8".into(),
        config: SqConfig::uniform(8),
    };
    out.push((
        "FlatCodes<SQ8>".into(),
        Box::new(FlatCodes::<ScalarQuantizer>::new(sq, DIM, Metric::L2, false, 1).unwrap()),
    ));
    out
}

fn data() -> Vec<f32> {
    gaussian(N, DIM, 0.0, 1.0, 3).unwrap().into_vec()
}

/// Every kind, trained and filled with ids 0..N.
fn built() -> Vec<(String, Box<dyn Index>)> {
    let x = data();
    kinds()
        .into_iter()
        .map(|(s, mut idx)| {
            if !idx.is_trained() {
                idx.train(&x).unwrap();
            }
            idx.add(&x, None).unwrap();
            (s, idx)
        })
        .collect()
}

fn too_large_row(e: &Error) -> Option<usize> {
    match e {
        Error::TooLarge { row, .. } => Some(*row),
        _ => None,
    }
}

/// Item 2: a vector with finite but huge values is refused at `add` by every kind, with
/// a typed error naming its row; the index is left as it was.
#[test]
fn item2_huge_vectors_are_refused_at_add_by_every_kind() {
    let x = data();
    let mut bad = x.clone();
    bad[17 * DIM + 3] = 1e38;
    for (spec, mut idx) in kinds() {
        if !idx.is_trained() {
            idx.train(&x).unwrap();
        }
        let e = idx
            .add(&bad, None)
            .expect_err(&format!("{spec}: a 1e38 component must be refused"));
        assert_eq!(too_large_row(&e), Some(17), "{spec}: {e}");
        assert!(e.to_string().contains("row 17"), "{spec}: {e}");
        assert_eq!(idx.len(), 0, "{spec}: a refused add adds nothing");
        idx.add(&x, None).unwrap();
        assert_eq!(idx.len(), N, "{spec}");
    }
}

/// Item 2: the same for training samples (SQ ranges, PQ centroids and coarse centroids
/// are derived from them).
#[test]
fn item2_huge_training_vectors_are_refused() {
    let mut bad = data();
    bad[5 * DIM] = -3e37;
    for (spec, mut idx) in kinds() {
        if idx.is_trained() {
            continue;
        }
        let e = idx
            .train(&bad)
            .expect_err(&format!("{spec}: a -3e37 component must be refused"));
        assert_eq!(too_large_row(&e), Some(5), "{spec}: {e}");
        assert!(e.to_string().contains("training sample"), "{spec}: {e}");
    }
}

/// Item 2: a query whose values are finite but whose distances overflow is an error
/// naming the query (its row in a batch), never `null` distances or an empty list.
#[test]
fn item2_queries_whose_distances_overflow_are_errors() {
    let qs = gaussian(4, DIM, 0.0, 1.0, 9).unwrap().into_vec();
    let p = SearchParams::with_k(3);
    for (spec, idx) in built() {
        for big in [1.9e19f32, 3.4e38] {
            let mut q = qs.clone();
            q[2 * DIM + 1] = big;
            let single = &q[2 * DIM..3 * DIM];
            let e = idx.search(single, &p).expect_err(&format!("{spec} {big}"));
            assert_eq!(too_large_row(&e), Some(0), "{spec}: {e}");
            assert!(e.to_string().contains("query"), "{spec}: {e}");
            let e = idx
                .search_filtered(single, &p, &IdFilter::Predicate(&|id| id % 2 == 0))
                .expect_err(&format!("{spec} filtered {big}"));
            assert_eq!(too_large_row(&e), Some(0), "{spec}: {e}");
            let e = idx
                .search_batch(&q, &p)
                .expect_err(&format!("{spec} batch {big}"));
            assert_eq!(too_large_row(&e), Some(2), "{spec}: {e}");
            // A batch long enough for the grouped and GEMM paths.
            let mut many = gaussian(40, DIM, 0.0, 1.0, 10).unwrap().into_vec();
            many[33 * DIM] = big;
            let e = idx.search_batch(&many, &p).expect_err(&spec);
            assert_eq!(too_large_row(&e), Some(33), "{spec}: {e}");
        }
        // Clean queries still answer, with finite distances.
        for r in idx.search_batch(&qs, &p).unwrap() {
            assert_eq!(r.len(), 3, "{spec}");
            assert!(r.iter().all(|n| n.distance.is_finite()), "{spec}");
        }
    }
}

/// Item 2: an index written before these checks may hold vectors whose distances
/// overflow; a non-finite distance is then an error naming the query, not a result.
#[test]
fn item2_a_non_finite_result_distance_is_an_error() {
    let n = 3;
    let vectors = vec![1e38f32; n * DIM];
    let ids: Vec<u64> = (0..n as u64).collect();
    let mut w = ContainerWriter::new("flat", "Flat", DIM, Metric::L2, n);
    w.section_f32("vectors", &vectors);
    w.section_f32("norms", &[f32::INFINITY; 3]);
    w.section_u64("ids", &ids);
    let bytes = w.to_bytes().unwrap();
    let c = Container::from_bytes("legacy.vq", bytes, OpenOptions::default()).unwrap();
    let idx = vecquant::index::from_container(&c).unwrap();
    let q = vec![0.5f32; DIM];
    let e = idx
        .search(&q, &SearchParams::with_k(2))
        .expect_err("an infinite distance is not a result");
    assert_eq!(too_large_row(&e), Some(0), "{e}");
    let qs = vec![0.5f32; 10 * DIM];
    let e = idx
        .search_batch(&qs, &SearchParams::with_k(2))
        .expect_err("an infinite distance is not a result");
    assert!(too_large_row(&e).is_some(), "{e}");
}

/// Item 3: ids colliding with live ids, or repeated within one add, are refused by
/// every kind; the index is unchanged; a deleted id may be used again.
#[test]
fn item3_duplicate_ids_are_refused_by_every_kind() {
    let x = data();
    let one = &x[..DIM];
    for (spec, mut idx) in built() {
        let e = idx.add(one, Some(&[5])).expect_err(&spec);
        assert!(
            matches!(
                e,
                Error::DuplicateId {
                    id: 5,
                    row: 0,
                    count: 1,
                    ..
                }
            ),
            "{spec}: {e}"
        );
        let e = idx
            .add(&x[..3 * DIM], Some(&[1000, 1001, 1000]))
            .expect_err(&spec);
        assert!(
            matches!(
                e,
                Error::DuplicateId {
                    id: 1000,
                    row: 2,
                    ..
                }
            ),
            "{spec}: {e}"
        );
        // Default ids continue past every id held (here the explicit N + 1 above the
        // row count): they never collide.
        idx.add(one, Some(&[N as u64 + 1])).unwrap();
        assert_eq!(idx.next_id(), Some(N as u64 + 2), "{spec}");
        idx.add(&x[..2 * DIM], None).unwrap();
        assert_eq!(idx.len(), N + 3, "{spec}");
        assert_eq!(
            idx.delete(&[N as u64 + 2, N as u64 + 3]).unwrap(),
            2,
            "{spec}"
        );
        assert_eq!(idx.delete(&[5, 5]).unwrap(), 1, "{spec}");
        idx.add(one, Some(&[5])).unwrap();
        assert_eq!(idx.len(), N + 1, "{spec}");
        let all = idx.search(one, &SearchParams::with_k(N + 10)).unwrap();
        assert_eq!(all.iter().filter(|h| h.id == 5).count(), 1, "{spec}");
        assert_eq!(idx.delete(&[5]).unwrap(), 1, "{spec}");
        // After a compaction the row count drops below the ids held: default ids
        // still continue past them (they restarted at the row count and collided).
        idx.compact().unwrap();
        let next = idx.next_id().unwrap();
        assert!(next > N as u64 + 1, "{spec}: next id {next}");
        // One past the largest id still held (N + 1: the deleted N + 2 and N + 3 are
        // gone), which is above the N rows left.
        assert_eq!(next, N as u64 + 2, "{spec}");
        idx.add(&x[..2 * DIM], None).unwrap();
        let mut got: Vec<u64> = idx
            .search(&x[..DIM], &SearchParams::with_k(N + 10))
            .unwrap()
            .iter()
            .map(|h| h.id)
            .filter(|&id| id >= next)
            .collect();
        assert_eq!(got.len(), 2, "{spec}: {got:?}");
        got.sort_unstable();
        assert_eq!(got, [next, next + 1], "{spec}: consecutive from next_id");
        // An index holding u64::MAX has no default ids left: a typed error.
        idx.add(one, Some(&[u64::MAX])).unwrap();
        assert_eq!(idx.next_id(), None, "{spec}");
        let e = idx.add(one, None).expect_err(&spec);
        assert!(e.to_string().contains("explicit ids"), "{spec}: {e}");
    }
}

/// Item 3: `upsert` replaces: the old vector of the id is gone, the new one answers,
/// the count is unchanged; repeated ids within the batch are still refused.
#[test]
fn item3_upsert_replaces_old_vectors() {
    let x = data();
    let far = vec![40.0f32; DIM];
    let p = SearchParams::with_k(N + 10);
    for (spec, mut idx) in built() {
        let old = &x[7 * DIM..8 * DIM];
        let replaced = idx.upsert(&far, &[7]).unwrap();
        assert_eq!(replaced, 1, "{spec}");
        assert_eq!(idx.len(), N, "{spec}: the count is unchanged");
        let hits = idx.search(&far, &SearchParams::with_k(1)).unwrap();
        assert_eq!(hits[0].id, 7, "{spec}: the new vector answers");
        let top = idx.search(old, &SearchParams::with_k(1)).unwrap();
        assert_ne!(top[0].id, 7, "{spec}: the old vector is gone");
        let all = idx.search(old, &p).unwrap();
        let seven: Vec<_> = all.iter().filter(|h| h.id == 7).collect();
        assert!(seven.len() <= 1, "{spec}: one row for id 7");
        // An exhaustive scan (no IVF probe, no graph walk) returns every live row: the
        // new vector of id 7, exactly once.
        let exhaustive = !(spec.starts_with("IVF") || spec.starts_with("HNSW"));
        if exhaustive {
            assert_eq!(seven.len(), 1, "{spec}: id 7 is live exactly once");
        }
        assert!(
            // The old vector itself would be within its quantization error (< 10 here).
            seven.iter().all(|h| h.distance > 20.0),
            "{spec}: the old vector is gone: {seven:?}"
        );
        // New ids are simply added.
        assert_eq!(idx.upsert(&x[..DIM], &[N as u64 + 5]).unwrap(), 0, "{spec}");
        assert_eq!(idx.len(), N + 1, "{spec}");
        let e = idx.upsert(&x[..2 * DIM], &[3, 3]).expect_err(&spec);
        assert!(matches!(e, Error::DuplicateId { id: 3, .. }), "{spec}: {e}");
        assert_eq!(idx.len(), N + 1, "{spec}");
        // Survives a save and load.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("i.vq");
        idx.save(&path).unwrap();
        let back = vecquant::index::open(&path).unwrap();
        assert_eq!(back.len(), N + 1, "{spec}");
        assert_eq!(
            back.search(&far, &SearchParams::with_k(1)).unwrap()[0].id,
            7,
            "{spec}"
        );
    }
}

/// Item 16: library errors name the record (row) of bad input.
#[test]
fn item16_library_errors_name_the_record() {
    let x = data();
    let mut bad = x.clone();
    bad[17 * DIM + 3] = f32::NAN;
    for (spec, idx) in built() {
        let e = idx.search_batch(&bad[..20 * DIM], &SearchParams::with_k(2));
        let e = e.expect_err(&spec).to_string();
        assert!(
            e.contains("row 17") && e.contains("column 3"),
            "{spec}: {e}"
        );
    }
    for (spec, mut idx) in kinds() {
        if !idx.is_trained() {
            let e = idx.train(&bad).expect_err(&spec).to_string();
            assert!(e.contains("row 17"), "{spec}: {e}");
            idx.train(&x).unwrap();
        }
        let e = idx.add(&bad, None).expect_err(&spec).to_string();
        assert!(e.contains("row 17"), "{spec}: {e}");
    }
}

/// A batch whose results alone cannot fit in this machine's memory (`min(k, n)`
/// neighbours per query) is refused before any search, by every batch path (exact flat
/// scan, code scans, IVF, HNSW), with an error naming the size and the way out —
/// instead of aborting on an allocation. One query fewer fits and passes the check.
/// (Skipped where the machine's memory is unknown.)
#[test]
fn batches_whose_results_cannot_fit_in_memory_are_refused() {
    let Some(mem) = std::fs::read_to_string("/proc/meminfo").ok().and_then(|s| {
        let line = s.lines().find(|l| l.starts_with("MemTotal:"))?.to_owned();
        line.split_whitespace().nth(1)?.parse::<u64>().ok()
    }) else {
        return;
    };
    let n = 1usize << 16;
    let per_query = n * std::mem::size_of::<vecquant::Neighbor>();
    let nq = (mem * 1024) as usize / per_query + 1;
    let x = gaussian(n, 1, 0.0, 1.0, 5).unwrap().into_vec();
    let queries = vec![0.5f32; nq];
    let p = SearchParams::with_k(1 << 20);
    for spec in ["Flat", "SQ8", "IVF4,SQ8", "HNSW4"] {
        let mut idx = new_index(spec, 1, &BuildOptions::default()).unwrap();
        if !idx.is_trained() {
            idx.train(&x).unwrap();
        }
        idx.add(&x, None).unwrap();
        let e = idx.search_batch(&queries, &p).unwrap_err().to_string();
        assert!(
            e.contains(&format!("{nq} queries × {n} neighbours")) && e.contains("smaller batches"),
            "{spec}: {e}"
        );
        assert!(
            vecquant::index::check_result_memory(nq - 1, n, 16).is_ok(),
            "{spec}"
        );
    }
    assert!(vecquant::index::check_result_memory(usize::MAX / 2, 4, 16).is_err());
}
