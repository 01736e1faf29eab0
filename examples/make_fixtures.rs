//! Writes the format-version fixtures under `tests/fixtures/v1/` that
//! `tests/fixtures_v1.rs` opens: one small saved index per kind, two quantized-weight
//! containers, the queries the test searches with, and a manifest describing them.
//!
//! Run: `cargo run --features examples --example make_fixtures [-- OUT_DIR]` (default `tests/fixtures/v1`).
//!
//! The committed files are the contract, not this program: files written by an old
//! version must keep opening after a format change, so the example refuses to overwrite
//! an existing fixture. After a change to the container format, write the new version's
//! fixtures into a new directory (e.g. `tests/fixtures/v2`) and keep the old ones. The
//! search results the test compares with are blessed by the test itself
//! (`VECQUANT_BLESS=1 cargo test --test fixtures_v1`), because they belong to the code
//! that reads the files, not to the files.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};
use vecquant::data::generate::{DataDistribution, SyntheticSpec};
use vecquant::index::spec::{BuildOptions, new_index};
use vecquant::model::io::Tensor;
use vecquant::model::synthetic::{WeightKind, calibration, matrix};
use vecquant::model::{
    QuantizedModel, Scheme, SchemeOptions, parse_calibrated, quantize_model,
    quantize_model_calibrated, quantize_tensor,
};
use vecquant::prelude::*;
use vecquant::store::Container;

/// Errors from the library and from the file system alike.
type Res<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// Dimension of every fixture index.
const DIM: usize = 16;
/// Vectors per fixture index (enough for 256-centroid PQ codebooks).
const N: usize = 400;
/// Queries written next to the fixtures.
const N_QUERY: usize = 10;

/// (file stem, spec, metric, keep raw vectors, delete some ids before saving)
const INDEXES: &[(&str, &str, Metric, bool, bool)] = &[
    ("flat", "Flat", Metric::L2, false, true),
    ("sq8", "SQ8", Metric::InnerProduct, false, false),
    ("sq4", "SQ4", Metric::Cosine, false, true),
    ("sq8lm", "SQ8lm", Metric::L2, true, false),
    ("pq4", "PQ4", Metric::L2, true, true),
    ("pq4x4fs", "PQ4x4fs", Metric::InnerProduct, false, false),
    ("opq4_pq4", "OPQ4,PQ4", Metric::Cosine, false, true),
    ("ivf8_flat", "IVF8,Flat", Metric::L2, false, false),
    ("ivf8_sq8", "IVF8,SQ8", Metric::Cosine, true, true),
    ("ivf8_pq4", "IVF8,PQ4", Metric::InnerProduct, false, false),
    ("ivf8_pq4x4fs", "IVF8,PQ4x4fs", Metric::L2, false, true),
    ("hnsw8", "HNSW8", Metric::L2, false, true),
    ("hnsw8_sq8", "HNSW8,SQ8", Metric::InnerProduct, true, false),
];

/// The ids vectors are added with (not 0..n, so id mapping is part of what is checked).
fn id_of(row: usize) -> u64 {
    10_000 + 3 * row as u64
}

fn refuse_existing(path: &Path) -> Res<()> {
    if path.exists() {
        return Err(format!(
            "{} exists: committed fixtures are never rewritten; write a new format \
             version's fixtures into a new directory",
            path.display()
        )
        .into());
    }
    Ok(())
}

fn write_indexes(out: &Path) -> Res<Vec<Value>> {
    let data = SyntheticSpec {
        dim: DIM,
        n_base: N,
        n_query: N_QUERY,
        n_train: 0,
        distribution: DataDistribution::Mixture {
            clusters: 8,
            spread: 0.5,
        },
        seed: 1,
    }
    .generate()?;
    let ids: Vec<u64> = (0..N).map(id_of).collect();
    let mut entries = Vec::new();
    for &(stem, spec, metric, keep_raw, delete) in INDEXES {
        let file = format!("{stem}.vq");
        let path = out.join(&file);
        refuse_existing(&path)?;
        let opts = BuildOptions {
            metric,
            seed: 5,
            keep_raw,
            ..BuildOptions::default()
        };
        let build = || -> Result<Box<dyn Index>> {
            let mut index = new_index(spec, DIM, &opts)?;
            if !index.is_trained() {
                index.train(data.base.as_slice())?;
            }
            index.add(data.base.as_slice(), Some(&ids))?;
            Ok(index)
        };
        // hnsw_rs inserts in parallel; in a one-thread pool the graph is reproducible.
        let mut index = if spec.starts_with("HNSW") {
            rayon::ThreadPoolBuilder::new()
                .num_threads(1)
                .build()?
                .install(build)?
        } else {
            build()?
        };
        let deleted: Vec<u64> = if delete {
            (0..N).step_by(37).map(id_of).collect()
        } else {
            Vec::new()
        };
        index.delete(&deleted)?;
        index.save(&path)?;
        let version = Container::open(&path)?.version();
        println!(
            "{file}: {spec} {} {} vectors, {} bytes, format version {version}",
            metric.name(),
            index.len(),
            std::fs::metadata(&path)?.len()
        );
        entries.push(json!({
            "file": file,
            "spec": index.spec(),
            "metric": metric.name(),
            "dim": DIM,
            "len": index.len(),
            "deleted": deleted,
            "keep_raw": keep_raw,
            "format_version": version,
        }));
    }
    let queries = out.join("queries.f32");
    refuse_existing(&queries)?;
    let bytes: Vec<u8> = data
        .query
        .as_slice()
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    std::fs::write(&queries, bytes)?;
    Ok(entries)
}

fn scheme(name: &str, bits: Option<u32>) -> Res<Scheme> {
    Ok(Scheme::parse(
        name,
        &SchemeOptions {
            bits,
            ..SchemeOptions::default()
        },
    )?)
}

/// One model through the pipeline (`quantize-model --scheme q4_k`): Q4_K where rows are
/// 256 wide, llama.cpp's fallbacks elsewhere, 1-D and integer tensors passed through.
fn pipeline_model() -> Res<QuantizedModel> {
    let model = vecquant::model::synthetic::transformer(1, 64, 32, 11);
    Ok(quantize_model(&model, &scheme("q4_k", None)?, |_, _, _| {})?.0)
}

/// Every payload kind in one container: each plain scheme on its own 8 × 256 matrix, and
/// the calibrated methods (GPTQ, SpQR, SmoothQuant, LLM.int8) on a 16 × 128 layer.
fn mixed_model() -> Res<QuantizedModel> {
    let plain: [(&str, Option<u32>); 18] = [
        ("absmax", Some(8)),
        ("absmax", Some(4)),
        ("zeropoint", Some(8)),
        ("zeropoint", Some(3)),
        ("nf4", None),
        ("nf4-dq", None),
        ("fp4", None),
        ("fp8-e4m3", None),
        ("fp8-e5m2", None),
        ("f16", None),
        ("bf16", None),
        ("kmeans", Some(3)),
        ("q8_0", None),
        ("q4_0", None),
        ("q4_1", None),
        ("q5_0", None),
        ("q4_k", None),
        ("q6_k", None),
    ];
    let mut tensors = Vec::new();
    for (i, (name, bits)) in plain.iter().enumerate() {
        let t = Tensor::matrix(
            &format!("plain.{i}.{name}"),
            8,
            256,
            matrix(WeightKind::StudentT, 8, 256, 0.02, 100 + i as u64),
        );
        tensors.push(quantize_tensor(&t, &scheme(name, *bits)?)?);
    }
    let layer = [Tensor::matrix(
        "calibrated.weight",
        16,
        128,
        matrix(WeightKind::OutlierColumns, 16, 128, 0.02, 200),
    )];
    let calib = calibration(&layer, 64, 201);
    for method in ["gptq", "spqr", "smoothquant", "llm-int8"] {
        let m = parse_calibrated(
            method,
            &SchemeOptions {
                group: Some(32),
                ..SchemeOptions::default()
            },
            true,
            0.01,
            0.5,
            6.0,
        )
        .ok_or_else(|| format!("unknown calibrated method {method}"))??;
        let (q, _) = quantize_model_calibrated(&layer, &m, &calib, |_, _, _| {})?;
        for mut t in q.tensors {
            t.name = format!("calibrated.{method}");
            tensors.push(t);
        }
    }
    Ok(QuantizedModel {
        scheme: "mixed (every payload kind)".into(),
        tensors,
    })
}

fn write_weights(out: &Path) -> Res<Vec<Value>> {
    let mut entries = Vec::new();
    for (stem, model) in [
        ("weights_q4k", pipeline_model()?),
        ("weights_mixed", mixed_model()?),
    ] {
        let file = format!("{stem}.vq");
        let path = out.join(&file);
        refuse_existing(&path)?;
        model.save(&path)?;
        println!(
            "{file}: {} tensors, {} bytes",
            model.tensors.len(),
            std::fs::metadata(&path)?.len()
        );
        entries.push(json!({
            "file": file,
            "scheme": model.scheme,
            "tensors": model.tensors.len(),
        }));
    }
    Ok(entries)
}

fn main() -> Res<()> {
    let out = std::env::args().nth(1).map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/v1"),
        PathBuf::from,
    );
    std::fs::create_dir_all(&out)?;
    let manifest = out.join("manifest.json");
    refuse_existing(&manifest)?;
    let indexes = write_indexes(&out)?;
    let weights = write_weights(&out)?;
    let text = serde_json::to_string_pretty(&json!({
        "about": "Saved by examples/make_fixtures.rs; opened by tests/fixtures_v1.rs. Never rewrite these files: old files must keep opening.",
        "queries": { "file": "queries.f32", "n": N_QUERY, "dim": DIM },
        "indexes": indexes,
        "weights": weights,
    }))?;
    std::fs::write(&manifest, text + "\n")?;
    println!("wrote {}", out.display());
    Ok(())
}
