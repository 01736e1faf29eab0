//! Decoding stored vectors by id (`Index::reconstruct_ids`, Python's `reconstruct_n`):
//! every kind gives back exactly what encoding the same vectors afresh decodes to (the
//! codes it holds, read from its own layout — fast-scan blocks, IVF lists, graph nodes),
//! the vectors themselves where it keeps them, and a typed error for ids it does not hold.

use vecquant::data::generate::gaussian;
use vecquant::index::spec::{BuildOptions, new_index};
use vecquant::{Error, Index, Metric};

const DIM: usize = 32;
const N: usize = 700;

/// Every layout a stored code can sit in: row-major, 8-bit PQ blocks, 4-bit fast-scan
/// blocks, RaBitQ sign blocks, IVF lists (residuals, OPQ-rotated), HNSW nodes.
const SPECS: &[&str] = &[
    "Flat",
    "SQ8",
    "SQ4",
    "PQ8",
    "PQ16x4fs",
    "OPQ8,PQ8",
    "RaBitQ",
    "RaBitQ4",
    "RaBitQfs",
    "RaBitQfs4",
    "IVF8,Flat",
    "IVF8,SQ8",
    "IVF8,PQ8",
    "IVF8,PQ16x4fs",
    "OPQ8,IVF8,PQ8",
    "IVF8,RaBitQ",
    "IVF8,RaBitQfs4",
    "HNSW8",
    "HNSW8,SQ8",
    "HNSW8,PQ8",
];

fn data() -> Vec<f32> {
    gaussian(N, DIM, 0.5, 1.0, 11).unwrap().into_vec()
}

/// Ids that are not row numbers, so the id→row map is exercised.
fn ids() -> Vec<u64> {
    (0..N as u64).map(|i| 10_000 + 7 * i).collect()
}

fn build(spec: &str, metric: Metric, keep_raw: bool) -> Box<dyn Index> {
    let opts = BuildOptions {
        metric,
        keep_raw,
        ..BuildOptions::default()
    };
    let x = data();
    let mut idx = new_index(spec, DIM, &opts).unwrap();
    if !idx.is_trained() {
        idx.train(&x).unwrap();
    }
    idx.add(&x, Some(&ids())).unwrap();
    idx
}

/// The vector as the index stores it when exact: normalised under cosine.
fn prepared(v: &[f32], metric: Metric) -> Vec<f32> {
    if metric != Metric::Cosine {
        return v.to_vec();
    }
    let n = v.iter().map(|a| a * a).sum::<f32>().sqrt();
    v.iter().map(|a| a / n).collect()
}

fn assert_close(spec: &str, got: &[f32], want: &[f32], tol: f32) {
    assert_eq!(got.len(), want.len(), "{spec}");
    for (i, (a, b)) in got.iter().zip(want).enumerate() {
        assert!(
            (a - b).abs() <= tol * (1.0 + b.abs()),
            "{spec}: value {i}: {a} vs {b}"
        );
    }
}

/// Rows picked out of order, some twice, spread over every block and list.
const PICK: &[usize] = &[699, 0, 31, 32, 33, 5, 5, 640, 417, 1, 698, 64];

#[test]
fn stored_codes_decode_to_the_fresh_reconstruction_of_the_same_vectors() {
    let x = data();
    let all_ids = ids();
    for metric in [Metric::L2, Metric::Cosine] {
        for spec in SPECS {
            let idx = build(spec, metric, false);
            let want_ids: Vec<u64> = PICK.iter().map(|&r| all_ids[r]).collect();
            let mut chosen = Vec::new();
            PICK.iter()
                .for_each(|&r| chosen.extend_from_slice(&x[r * DIM..(r + 1) * DIM]));
            let got = idx.reconstruct_ids(&want_ids).unwrap();
            let want = match idx.reconstruct(&chosen).unwrap() {
                Some(v) => v,
                None => chosen
                    .chunks(DIM)
                    .flat_map(|v| prepared(v, metric))
                    .collect(),
            };
            let tag = format!("{spec} {metric:?}");
            assert_close(&tag, &got, &want, 1e-5);
            // Exact kinds give the vectors back; quantizers give something near them.
            let err: f32 = got
                .iter()
                .zip(chosen.chunks(DIM).flat_map(|v| prepared(v, metric)))
                .map(|(a, b)| (a - b) * (a - b))
                .sum::<f32>()
                / got.len() as f32;
            let energy: f32 = chosen
                .chunks(DIM)
                .flat_map(|v| prepared(v, metric))
                .map(|a| a * a)
                .sum::<f32>()
                / got.len() as f32;
            assert!(err < 0.5 * energy, "{tag}: MSE {err} vs energy {energy}");
        }
    }
}

#[test]
fn kept_raw_vectors_come_back_exactly_after_save_load_delete_and_compact() {
    let x = data();
    let all_ids = ids();
    let dir = tempfile::tempdir().unwrap();
    for spec in ["SQ4", "PQ16x4fs", "RaBitQfs", "OPQ8,IVF8,PQ8", "HNSW8,SQ8"] {
        let mut idx = build(spec, Metric::L2, true);
        let path = dir.path().join("i.vq");
        idx.save(&path).unwrap();
        let loaded = vecquant::index::open(&path).unwrap();
        let pick = [3usize, 400, 699];
        let want_ids: Vec<u64> = pick.iter().map(|&r| all_ids[r]).collect();
        let want: Vec<f32> = pick
            .iter()
            .flat_map(|&r| x[r * DIM..(r + 1) * DIM].to_vec())
            .collect();
        for (what, i) in [("built", &idx), ("loaded", &loaded)] {
            assert_close(
                &format!("{spec} {what}"),
                &i.reconstruct_ids(&want_ids).unwrap(),
                &want,
                1e-5,
            );
        }
        // Deleting row 10 and compacting moves later rows; ids still find them.
        idx.delete(&[all_ids[10]]).unwrap();
        idx.compact().unwrap();
        assert_close(
            &format!("{spec} compacted"),
            &idx.reconstruct_ids(&want_ids).unwrap(),
            &want,
            1e-5,
        );
    }
}

#[test]
fn ids_not_held_are_typed_errors_naming_the_id_and_its_position() {
    let all_ids = ids();
    for spec in ["Flat", "PQ16x4fs", "IVF8,SQ8", "HNSW8,PQ8", "RaBitQfs"] {
        let mut idx = build(spec, Metric::L2, false);
        match idx.reconstruct_ids(&[all_ids[0], 3, all_ids[1]]) {
            Err(Error::UnknownId {
                id: 3,
                position: 1,
                deleted: false,
            }) => {}
            other => panic!("{spec}: {other:?}"),
        }
        idx.delete(&[all_ids[5]]).unwrap();
        let e = idx.reconstruct_ids(&[all_ids[5]]).unwrap_err();
        assert!(
            matches!(
                e,
                Error::UnknownId {
                    deleted: true,
                    position: 0,
                    ..
                }
            ),
            "{spec}: {e}"
        );
        assert!(e.to_string().contains("was deleted"), "{spec}: {e}");
        assert!(idx.reconstruct_ids(&[]).unwrap().is_empty(), "{spec}");
    }
    let untrained = new_index("SQ8", DIM, &BuildOptions::default()).unwrap();
    assert!(untrained.reconstruct_ids(&[0]).is_err());
}
