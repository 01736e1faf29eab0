//! Files written by format version 1 keep opening, and answer as they did.
//!
//! `tests/fixtures/v1/` holds small indexes of every kind saved by vecquant 0.1.0
//! (container format version 1) and two quantized-weight containers, written once by
//! `examples/make_fixtures.rs` and described by `manifest.json`. Those files are the
//! contract: never regenerate them — after a format change, old files must still open.
//!
//! For each index the test checks spec, metric, dimension, length and tombstones against
//! the manifest, searches the committed queries and compares ids and distance bits with
//! `tests/fixtures/v1/golden/<simd level>/` (per level for the reason given in
//! `tests/golden.rs`), and checks that re-saving in the current format answers the same.
//! Each weights container is opened and every dequantized tensor compared with the
//! FNV-1a hash of its f32 bit patterns (and its first values) in `weights_golden.json`.
//!
//! **Bless** the search results and weight checksums (not the files!) after a change
//! that is meant to alter results: `VECQUANT_BLESS=1 cargo test --test fixtures_v1`.

use crate::golden_io;

use std::path::{Path, PathBuf};

use golden_io::Runs;
use serde_json::{Value, json};
use vecquant::index::IdFilter;
use vecquant::model::io::TensorData;
use vecquant::prelude::*;
use vecquant::store::Container;

const K: usize = 10;

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/v1")
}

fn manifest() -> Value {
    let text = std::fs::read_to_string(dir().join("manifest.json")).expect("manifest.json");
    serde_json::from_str(&text).expect("manifest.json is JSON")
}

fn queries(m: &Value) -> (Vec<f32>, usize) {
    let q = &m["queries"];
    let dim = q["dim"].as_u64().expect("queries.dim") as usize;
    let bytes =
        std::fs::read(dir().join(q["file"].as_str().expect("queries.file"))).expect("queries file");
    let v: Vec<f32> = bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    assert_eq!(
        v.len(),
        q["n"].as_u64().expect("queries.n") as usize * dim,
        "queries file length"
    );
    (v, dim)
}

/// The searches run on a fixture: name → parameters.
fn searches(spec: &str, keep_raw: bool) -> Vec<(String, SearchParams)> {
    let k = SearchParams::with_k(K);
    let mut out = vec![("k10".to_string(), k)];
    if let Some(nlist) = spec
        .strip_prefix("IVF")
        .and_then(|r| r.split(',').next())
        .and_then(|n| n.parse::<usize>().ok())
    {
        out.push(("nprobe1".into(), k.nprobe(1)));
        out.push((format!("nprobe{nlist}"), k.nprobe(nlist)));
    }
    if spec.starts_with("HNSW") {
        out.push(("ef16".into(), k.ef_search(16)));
        out.push(("ef64".into(), k.ef_search(64)));
    }
    if keep_raw {
        out.push(("rerank30".into(), k.rerank(30)));
    }
    out
}

/// Every search of one index over every query.
fn run_all(index: &dyn Index, spec: &str, keep_raw: bool, q: &[f32], dim: usize) -> Runs {
    let mut runs = Runs::new();
    for (name, p) in searches(spec, keep_raw) {
        let r = q
            .chunks_exact(dim)
            .map(|x| {
                index
                    .search(x, &p)
                    .unwrap_or_else(|e| panic!("{spec} {name}: {e}"))
            })
            .collect();
        runs.insert(name, r);
    }
    // A predicate filter (the golden test uses an id list): every other group of three.
    let pred = |id: u64| (id / 3).is_multiple_of(2);
    let filter = IdFilter::Predicate(&pred);
    let p = SearchParams::with_k(K);
    let r = q
        .chunks_exact(dim)
        .map(|x| {
            index
                .search_filtered(x, &p, &filter)
                .unwrap_or_else(|e| panic!("{spec} filtered: {e}"))
        })
        .collect();
    runs.insert("filtered".into(), r);
    runs
}

#[test]
fn every_v1_index_opens_and_answers_as_before() {
    let m = manifest();
    let (q, dim) = queries(&m);
    let golden = golden_io::golden_dir("tests/fixtures/v1/golden");
    if let Err(why) = &golden {
        eprintln!("{why}: bit-exact comparison skipped, properties still checked");
    }
    let tmp = tempfile::tempdir().expect("temp dir");
    let entries = m["indexes"].as_array().expect("manifest.indexes");
    assert!(entries.len() >= 13, "every kind has a fixture");
    let mut problems = Vec::new();
    for e in entries {
        let file = e["file"].as_str().expect("file");
        let path = dir().join(file);
        let spec = e["spec"].as_str().expect("spec");
        let keep_raw = e["keep_raw"].as_bool().expect("keep_raw");
        let deleted: Vec<u64> = e["deleted"]
            .as_array()
            .expect("deleted")
            .iter()
            .map(|v| v.as_u64().expect("deleted id"))
            .collect();
        assert_eq!(
            Container::open(&path)
                .unwrap_or_else(|err| panic!("{file}: {err}"))
                .version(),
            1,
            "{file}: a version-1 file"
        );
        let index = vecquant::index::open(&path).unwrap_or_else(|err| panic!("{file}: {err}"));
        assert_eq!(index.spec(), spec, "{file}: spec");
        assert_eq!(index.metric().name(), e["metric"], "{file}: metric");
        assert_eq!(index.dim() as u64, e["dim"], "{file}: dim");
        assert_eq!(index.len() as u64, e["len"], "{file}: len");
        assert_eq!(index.deleted(), deleted.len(), "{file}: tombstones");

        let runs = run_all(&*index, spec, keep_raw, &q, dim);
        for (name, lists) in &runs {
            for hits in lists {
                assert_eq!(hits.len(), K, "{file} {name}: {hits:?}");
                for n in hits {
                    // Ids were added as 10000 + 3·row for 400 rows.
                    let valid = n.id >= 10_000 && (n.id - 10_000) % 3 == 0 && n.id < 11_200;
                    assert!(valid, "{file} {name}: unknown id {}", n.id);
                    assert!(
                        !deleted.contains(&n.id),
                        "{file} {name}: deleted id {}",
                        n.id
                    );
                    assert!(name != "filtered" || (n.id / 3) % 2 == 0, "{file}: filter");
                }
            }
        }

        // Saved again in the current format, it answers bit for bit the same.
        let again = tmp.path().join(file);
        index.save(&again).expect("re-save");
        let reopened = vecquant::index::open(&again).expect("reopen");
        let rerun = run_all(&*reopened, spec, keep_raw, &q, dim);
        for d in golden_io::differences(&runs, &rerun) {
            problems.push(format!("{file} re-saved: {d}"));
        }

        if let Ok(g) = &golden {
            let stem = file.trim_end_matches(".vq");
            problems.extend(golden_io::check_or_bless(
                &g.join(format!("{stem}.bin")),
                &runs,
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "{} mismatch(es) at SIMD level {}:\n{}",
        problems.len(),
        golden_io::level_dir(),
        problems.join("\n")
    );
}

/// FNV-1a 64 over bytes.
fn fnv1a(bytes: impl IntoIterator<Item = u8>) -> u64 {
    bytes.into_iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
    })
}

/// What is checked of one weights container: per tensor its name, shape, scheme, stored
/// bits, and the hash and first four bit patterns of its dequantized values (raw bytes
/// for non-floating pass-through tensors).
fn weights_summary(path: &Path) -> Value {
    let model = QuantizedModel::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let deq = model
        .dequantized()
        .unwrap_or_else(|e| panic!("{}: dequantize: {e}", path.display()));
    assert_eq!(deq.len(), model.tensors.len());
    let tensors: Vec<Value> = model
        .tensors
        .iter()
        .zip(&deq)
        .map(|(t, d)| {
            assert_eq!((&t.name, &t.shape), (&d.name, &d.shape));
            let numel: usize = t.shape.iter().product();
            let (hash, head) = match &d.data {
                TensorData::Float(v) => {
                    assert_eq!(v.len(), numel, "{}", t.name);
                    assert!(v.iter().all(|x| x.is_finite()), "{}: non-finite", t.name);
                    (
                        fnv1a(v.iter().flat_map(|x| x.to_bits().to_le_bytes())),
                        v.iter()
                            .take(4)
                            .map(|x| format!("{:#010x}", x.to_bits()))
                            .collect::<Vec<_>>(),
                    )
                }
                TensorData::Raw(b) => (fnv1a(b.iter().copied()), Vec::new()),
            };
            json!({
                "name": t.name,
                "shape": t.shape,
                "dtype": t.dtype,
                "scheme": t.scheme,
                "storage_bits": t.payload.storage_bits(),
                "fnv1a64": format!("{hash:016x}"),
                "head_bits": head,
            })
        })
        .collect();
    // Saved again in the current format, it reads back equal.
    let tmp = tempfile::tempdir().expect("temp dir");
    let again = tmp.path().join("again.vq");
    model.save(&again).expect("re-save");
    assert!(
        QuantizedModel::open(&again).expect("reopen") == model,
        "{}: re-saved container differs",
        path.display()
    );
    json!({ "scheme": model.scheme, "tensors": tensors })
}

#[test]
fn v1_weight_containers_open_and_dequantize_as_before() {
    let m = manifest();
    let entries = m["weights"].as_array().expect("manifest.weights");
    assert_eq!(entries.len(), 2);
    let mut got = serde_json::Map::new();
    for e in entries {
        let file = e["file"].as_str().expect("file");
        let s = weights_summary(&dir().join(file));
        assert_eq!(
            s["tensors"].as_array().map(Vec::len),
            e["tensors"].as_u64().map(|n| n as usize)
        );
        assert_eq!(s["scheme"], e["scheme"], "{file}");
        got.insert(file.to_string(), s);
    }
    let got = Value::Object(got);
    // Dequantization runs no dispatched kernel, so one golden file serves every level.
    let path = dir().join("weights_golden.json");
    if golden_io::blessing() {
        let text = serde_json::to_string_pretty(&got).expect("json");
        std::fs::write(&path, text + "\n").expect("write weights_golden.json");
        return;
    }
    let want: Value = serde_json::from_str(
        &std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{}: {e} (bless with VECQUANT_BLESS=1)", path.display())),
    )
    .expect("weights_golden.json is JSON");
    for (file, w) in want.as_object().expect("object") {
        let g = &got[file];
        assert_eq!(g["scheme"], w["scheme"], "{file}");
        let (gt, wt) = (
            g["tensors"].as_array().expect("tensors"),
            w["tensors"].as_array().expect("tensors"),
        );
        assert_eq!(gt.len(), wt.len(), "{file}: tensor count");
        for (a, b) in gt.iter().zip(wt) {
            assert_eq!(a, b, "{file}: tensor {} changed", b["name"]);
        }
    }
    assert_eq!(got, want);
}
