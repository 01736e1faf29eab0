//! Container files: old versions stay readable, arbitrary bytes never panic the loader.

use vecquant::prelude::*;
use vecquant::store::{Container, OpenOptions};

/// A format-version-1 `Flat` index written by vecquant 0.1.0 (8 vectors of dimension 4,
/// L2, ids 100..108, vector i = [i, i+0.5, -i, 1]). Regenerate only for a *new* version
/// file; never overwrite a shipped one.
const V1_FLAT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/flat_v1.vq");

fn fixture_index() -> Flat {
    let mut idx = Flat::new(4, Metric::L2);
    let v: Vec<f32> = (0..8)
        .flat_map(|i| [i as f32, i as f32 + 0.5, -(i as f32), 1.0])
        .collect();
    let ids: Vec<u64> = (100..108).collect();
    idx.add(&v, Some(&ids)).unwrap();
    idx
}

#[test]
fn version_1_fixture_still_loads() {
    if std::env::var_os("VECQUANT_WRITE_FIXTURES").is_some() {
        fixture_index().save(V1_FLAT).unwrap();
    }
    let idx = vecquant::index::open(V1_FLAT).unwrap();
    assert_eq!(
        (idx.len(), idx.dim(), idx.spec()),
        (8, 4, "Flat".to_string())
    );
    let hits = idx
        .search(&[3.0, 3.5, -3.0, 1.0], &SearchParams::with_k(2))
        .unwrap();
    assert_eq!(hits[0].id, 103);
    assert_eq!(hits[0].distance, 0.0);
    let c = Container::open(V1_FLAT).unwrap();
    assert_eq!(c.version(), 1);
}

/// Valid files of every kind to mutate: the v1 fixture plus freshly written files of every
/// kind (with tombstones, raw vectors, every metric).
fn corpus() -> Vec<Vec<u8>> {
    use vecquant::index::spec::{BuildOptions, new_index};
    let mut files = vec![std::fs::read(V1_FLAT).unwrap()];
    // 300 rows of dimension 5: enough for 256-centroid PQ codebooks.
    let data: Vec<f32> = (0..300 * 5)
        .map(|i| ((i * 37 % 101) as f32 - 50.0) / 17.0)
        .collect();
    for (spec, metric, keep_raw) in [
        ("SQ8", Metric::L2, true),
        ("SQ4", Metric::Cosine, false),
        ("SQ8lm", Metric::InnerProduct, false),
        ("Flat", Metric::Cosine, false),
        ("PQ5", Metric::L2, true),
        ("OPQ5,PQ5x4fs", Metric::InnerProduct, false),
        ("IVF4,SQ8", Metric::L2, true),
        ("IVF4,PQ5x4fs", Metric::Cosine, false),
        ("IVF4,PQ5", Metric::L2, false),
        ("HNSW4", Metric::L2, false),
        ("HNSW4,PQ5", Metric::InnerProduct, true),
    ] {
        let opts = BuildOptions {
            metric,
            seed: 1,
            keep_raw,
            ..BuildOptions::default()
        };
        let mut idx = new_index(spec, 5, &opts).unwrap();
        if !idx.is_trained() {
            idx.train(&data).unwrap();
        }
        idx.add(&data, None).unwrap();
        idx.delete(&[3, 7]).unwrap();
        files.push(idx.to_container().unwrap().to_bytes().unwrap());
    }
    files
}

/// A seeded, structure-aware fuzz loop over the loader: random garbage, byte flips
/// anywhere, truncations, and header mutations with the header checksum recomputed (so
/// the postcard decoder and the section-table validation see hostile input). Every
/// opened index must answer or refuse a search without panicking.
///
/// Bounded for CI; `VECQUANT_FUZZ_SECS=600 cargo test --release --test store fuzz --
/// --nocapture` runs it for ten minutes and prints the execution count.
#[test]
fn fuzz_loader_never_panics() {
    let corpus = corpus();
    let secs: u64 = std::env::var("VECQUANT_FUZZ_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let t0 = std::time::Instant::now();
    let mut s: u64 = 0x9E3779B97F4A7C15;
    let mut next = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        s
    };
    let (mut execs, mut loaded) = (0u64, 0u64);
    let mut round = 0u64;
    while (secs == 0 && round < 4000) || (secs > 0 && t0.elapsed().as_secs() < secs) {
        round += 1;
        let mut b: Vec<u8> = if round.is_multiple_of(10) {
            (0..(next() % 600) as usize).map(|_| next() as u8).collect()
        } else {
            corpus[(next() as usize) % corpus.len()].clone()
        };
        let mode = next() % 4;
        if !b.is_empty() {
            for _ in 0..1 + next() % 4 {
                let i = (next() as usize) % b.len();
                b[i] = next() as u8;
            }
        }
        if mode == 1 && b.len() > 24 {
            // Mutate inside the header, then fix its checksum.
            let hlen = u64::from_le_bytes(b[12..20].try_into().unwrap()) as usize;
            if 24 + hlen <= b.len() && hlen > 0 {
                for _ in 0..1 + next() % 3 {
                    let i = 24 + (next() as usize) % hlen;
                    b[i] = next() as u8;
                }
                let crc = crc32fast::hash(&b[24..24 + hlen]);
                b[20..24].copy_from_slice(&crc.to_le_bytes());
            }
        }
        if mode == 2 {
            let len = (next() as usize) % (b.len() + 1);
            b.truncate(len);
        }
        for verify in [true, false] {
            let opts = OpenOptions {
                verify_checksums: verify,
            };
            execs += 1;
            if let Ok(c) = Container::from_bytes("fuzz", b.clone(), opts)
                && let Ok(idx) = vecquant::index::from_container(&c)
            {
                loaded += 1;
                let q = vec![0.5; idx.dim().min(64)];
                let p = SearchParams::new(3).rerank(4);
                let _ = idx.search(&q, &p);
                let _ = idx.search_batch(&q, &SearchParams::with_k(2));
            }
        }
    }
    eprintln!(
        "fuzz: {execs} executions ({loaded} loaded and searched) in {:.1}s",
        t0.elapsed().as_secs_f64()
    );
}

/// Flipping any single byte of a saved file — preamble, header, padding, section data —
/// is refused when the file is opened with checksums on. Small indexes of each kind (a
/// few KB each), every byte xor 0x01 and xor 0xFF.
#[test]
fn every_single_byte_flip_is_refused() {
    use vecquant::index::spec::{BuildOptions, new_index};
    // 61 rows: odd sizes leave padding between sections.
    let (n, d) = (61, 8);
    let data: Vec<f32> = (0..n * d)
        .map(|i| ((i * 53 % 97) as f32 - 48.0) / 13.0)
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let mut gaps_between_sections = false;
    let mut flipped = 0;
    for (spec, delete) in [
        ("Flat", true),
        ("SQ8", false),
        ("PQ4x4fs", false),
        ("IVF4,SQ8", true),
        ("HNSW4", false),
    ] {
        let opts = BuildOptions {
            metric: Metric::L2,
            seed: 3,
            keep_raw: false,
            ..BuildOptions::default()
        };
        let mut idx = new_index(spec, d, &opts).unwrap();
        if !idx.is_trained() {
            idx.train(&data).unwrap();
        }
        idx.add(&data, None).unwrap();
        if delete {
            idx.delete(&[5]).unwrap();
        }
        let path = dir.path().join(format!("{}.vq", spec.replace(',', "_")));
        idx.save(&path).unwrap();
        let good = std::fs::read(&path).unwrap();
        assert!(good.len() < 16 << 10, "{spec}: {} bytes", good.len());
        flipped += good.len();
        let c = Container::open(&path).unwrap();
        // The files must have padding after the header and between sections for the test
        // to cover the bytes no checksum covers.
        let sections = &c.header().sections;
        let header_end = 24 + u64::from_le_bytes(good[12..20].try_into().unwrap());
        assert!(sections[0].offset > header_end, "{spec}: no header padding");
        gaps_between_sections |= sections
            .windows(2)
            .any(|w| w[1].offset > w[0].offset + w[0].length);
        let mut bad = good.clone();
        for i in 0..good.len() {
            for mask in [0x01u8, 0xFF] {
                bad[i] = good[i] ^ mask;
                assert!(
                    Container::from_bytes("flip", bad.clone(), OpenOptions::default()).is_err(),
                    "{spec}: byte {i} of {} xor {mask:#04x} accepted",
                    good.len()
                );
            }
            bad[i] = good[i];
        }
        // The same through the file system for the bytes before the first section
        // (preamble, header, header padding), the ones no section checksum covers.
        for i in 0..sections[0].offset as usize {
            bad[i] = good[i] ^ 0xFF;
            std::fs::write(&path, &bad).unwrap();
            assert!(Container::open(&path).is_err(), "{spec}: byte {i} accepted");
            bad[i] = good[i];
        }
    }
    assert!(
        gaps_between_sections,
        "no file has padding between sections"
    );
    eprintln!("flipped each of {flipped} bytes of files two ways: every flip refused");
}
