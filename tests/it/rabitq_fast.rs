//! Issue 18 items 3 and 4: the fast-scan RaBitQ codecs (`RaBitQfs`, `RaBitQfs{b}`,
//! `IVF{n},RaBitQfs[{b}]`) return exactly what the row-major codecs return, save and
//! load, and their specs round-trip.

use vecquant::data::generate::gaussian;
use vecquant::index::spec::{ACCEPTED, BuildOptions, IndexSpec, InnerQuantizer, new_index};
use vecquant::index::{Index, SearchParams};
use vecquant::{Metric, Neighbor};

const N: usize = 3000;
const DIM: usize = 100;
const K: usize = 10;

fn data() -> (Vec<f32>, Vec<f32>) {
    let base = gaussian(N, DIM, 0.0, 1.0, 11).unwrap();
    let queries = gaussian(40, DIM, 0.0, 1.0, 12).unwrap();
    (base.as_slice().to_vec(), queries.as_slice().to_vec())
}

/// Builds `spec`, adding the base in two uneven parts (partial blocks get appended to).
fn build(spec: &str, base: &[f32], metric: Metric) -> Box<dyn Index> {
    let opts = BuildOptions {
        metric,
        seed: 5,
        ..BuildOptions::default()
    };
    let mut idx = new_index(spec, DIM, &opts).unwrap();
    idx.train(base).unwrap();
    let cut = 1037 * DIM;
    idx.add(&base[..cut], None).unwrap();
    idx.add(&base[cut..], None).unwrap();
    idx
}

fn search_all(idx: &dyn Index, queries: &[f32]) -> Vec<Vec<Neighbor>> {
    let p = SearchParams::new(K).nprobe(6);
    queries
        .chunks_exact(DIM)
        .map(|q| idx.search(q, &p).unwrap())
        .collect()
}

/// Item 3: every fast-scan spec returns the row-major codec's results (ids and
/// distances), flat and under IVF, for L2 and inner product, at the same bytes/vector.
#[test]
fn item3_fs_results_equal_row_major() {
    let (base, queries) = data();
    for metric in [Metric::L2, Metric::InnerProduct] {
        for (fs, plain) in [
            ("RaBitQfs", "RaBitQ"),
            ("RaBitQfs4", "RaBitQ4"),
            ("IVF16,RaBitQfs", "IVF16,RaBitQ"),
            ("IVF16,RaBitQfs3", "IVF16,RaBitQ3"),
        ] {
            let a = build(fs, &base, metric);
            let b = build(plain, &base, metric);
            assert_eq!(a.spec(), fs);
            assert_eq!(a.bytes_per_vector(), b.bytes_per_vector(), "{fs}");
            assert_eq!(
                search_all(a.as_ref(), &queries),
                search_all(b.as_ref(), &queries),
                "{fs} vs {plain}, {metric:?}"
            );
        }
    }
}

/// Item 4: save and load give identical searches and the same spec.
#[test]
fn item4_fs_save_load_round_trip() {
    let (base, queries) = data();
    let dir = tempfile::tempdir().unwrap();
    for spec in ["RaBitQfs", "RaBitQfs2", "IVF8,RaBitQfs", "IVF8,RaBitQfs4"] {
        let idx = build(spec, &base, Metric::L2);
        let path = dir.path().join(format!("{}.vq", spec.replace(',', "_")));
        idx.save(&path).unwrap();
        let again = vecquant::index::open(&path).unwrap();
        assert_eq!(again.spec(), spec);
        assert_eq!(again.bytes_per_vector(), idx.bytes_per_vector());
        assert_eq!(
            search_all(idx.as_ref(), &queries),
            search_all(again.as_ref(), &queries),
            "{spec}"
        );
    }
}

/// Item 4 (specs): FAISS's fast-scan words parse, print back canonically, are listed in
/// the accepted forms, and HNSW refuses the fast-scan layout.
#[test]
fn item4_fs_specs_round_trip() {
    for (text, canon, want) in [
        ("RaBitQfs", "RaBitQfs", IndexSpec::RaBitQFs(1)),
        ("rabitqFS4", "RaBitQfs4", IndexSpec::RaBitQFs(4)),
        ("RaBitQfs1", "RaBitQfs", IndexSpec::RaBitQFs(1)),
        (
            "IVF64, RaBitQfs",
            "IVF64,RaBitQfs",
            IndexSpec::Ivf {
                opq: false,
                nlist: 64,
                inner: InnerQuantizer::RaBitQFs(1),
            },
        ),
        (
            "IVF64,RaBitQfs9",
            "IVF64,RaBitQfs9",
            IndexSpec::Ivf {
                opq: false,
                nlist: 64,
                inner: InnerQuantizer::RaBitQFs(9),
            },
        ),
    ] {
        let s: IndexSpec = text.parse().unwrap();
        assert_eq!(s, want, "{text}");
        assert_eq!(s.to_string(), canon);
        assert_eq!(canon.parse::<IndexSpec>().unwrap(), s);
    }
    assert_eq!("RaBitQfs".parse::<IndexSpec>().unwrap().kind(), "codes");
    assert!(ACCEPTED.contains("RaBitQfs{b}") && ACCEPTED.contains("IVF{nlist},RaBitQfs[{b}]"));
    let e = "HNSW16,RaBitQfs"
        .parse::<IndexSpec>()
        .unwrap_err()
        .to_string();
    assert!(e.contains("HNSW16,RaBitQ"), "{e}");
    let e = "RaBitQfs10".parse::<IndexSpec>().unwrap_err().to_string();
    assert!(e.contains("1..=9"), "{e}");
}
