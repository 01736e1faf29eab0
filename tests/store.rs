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
        fixture_index().save(V1_FLAT.as_ref()).unwrap();
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

#[test]
fn arbitrary_bytes_never_panic() {
    // A bounded, seeded fuzz loop over mutations of a valid file and random garbage.
    let valid = std::fs::read(V1_FLAT).unwrap();
    let mut s: u64 = 0x9E3779B97F4A7C15;
    let mut next = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        s
    };
    for round in 0..3000 {
        let mut b = if round % 10 == 0 {
            (0..(next() % 600) as usize).map(|_| next() as u8).collect()
        } else {
            valid.clone()
        };
        if !b.is_empty() {
            for _ in 0..1 + next() % 4 {
                let i = (next() as usize) % b.len();
                b[i] = next() as u8;
            }
        }
        if round % 7 == 0 {
            let len = (next() as usize) % (b.len() + 1);
            b.truncate(len);
        }
        for verify in [true, false] {
            let opts = OpenOptions {
                verify_checksums: verify,
            };
            if let Ok(c) = Container::from_bytes("fuzz", b.clone(), opts)
                && let Ok(idx) = vecquant::index::from_container(&c)
            {
                // A loaded index must answer (or refuse) without panicking.
                let _ = idx.search(&[0.0; 4], &SearchParams::with_k(3));
            }
        }
    }
}
