//! Tests of the flat product-quantizer index.
use super::*;
use crate::data::generate::gaussian;
use crate::store::OpenOptions;

fn build(spec: &str, metric: Metric, n: usize, dim: usize) -> Product {
    let data = gaussian(n, dim, 0.0, 1.0, 3).unwrap();
    let mut idx = Product::new(spec, dim, metric, true, 7).unwrap();
    idx.train(data.as_slice()).unwrap();
    idx.add(data.as_slice(), None).unwrap();
    idx
}

#[test]
fn scan8_equals_float_adc_exactly_with_deletes_and_filters() {
    // The byte-table kernel only pre-selects; every answer must be the float ADC
    // top-k, in order, whatever the metric, deletes or filter — and with more
    // sub-quantizers than u16 sums allow (272 > 257), the float scan it falls back to.
    let n = 3000;
    for (k, m, dim, metric) in [
        (50, 8, 32, Metric::L2),
        (1, 8, 32, Metric::L2),
        (10, 8, 32, Metric::InnerProduct),
        (50, 8, 32, Metric::Cosine),
        (50, 272, 272, Metric::L2),
    ] {
        let mut idx = build(&format!("PQ{m}"), metric, n, dim);
        let deleted: Vec<u64> = (0..n as u64).step_by(7).collect();
        idx.delete(&deleted).unwrap();
        let pq = idx.quantizer().unwrap().clone();
        let codes = idx.indices();
        let q = gaussian(4, dim, 0.0, 1.0, 21).unwrap();
        let odd = |id: u64| id % 2 == 1;
        for filtered in [false, true] {
            let filter = if filtered {
                IdFilter::Predicate(&odd)
            } else {
                IdFilter::All
            };
            let p = SearchParams::with_k(k);
            for qv in q.as_slice().chunks_exact(dim) {
                let got = idx.search_filtered(qv, &p, &filter).unwrap();
                let mut table = Vec::new();
                pq.adc_table(&idx.prepare(qv), idx.table_metric(), &mut table);
                let mut want: Vec<(f32, u64)> = (0..n)
                    .filter(|&r| r % 7 != 0 && (!filtered || odd(r as u64)))
                    .map(|r| {
                        let d: f32 = (0..m)
                            .map(|s| table[s * 256 + codes[r * m + s] as usize])
                            .sum();
                        (d + idx.offset(), r as u64)
                    })
                    .collect();
                want.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
                assert_eq!(got.len(), k);
                for (g, w) in got.iter().zip(&want) {
                    assert!((g.distance - w.0).abs() <= 1e-4 * (1.0 + w.0.abs()));
                    // Same id unless two distances tie to float precision.
                    assert!(g.id == w.1 || (g.distance - w.0).abs() <= 1e-6, "{metric}");
                }
            }
        }
    }
}

#[test]
fn files_with_row_major_8bit_codes_still_open() {
    // 8-bit codes were stored row-major (section "codes") before the blocked layout.
    let idx = build("PQ8", Metric::L2, 300, 16);
    let mut w = idx.to_container().unwrap();
    w.replace_section(CODES8_SECTION, "codes", idx.indices());
    let c = Container::from_bytes("old.vq", w.to_bytes().unwrap(), OpenOptions::default()).unwrap();
    let old = Product::from_container(&c).unwrap();
    assert_eq!(old.codes.to_vec(), idx.codes.to_vec());
    let q = gaussian(5, 16, 0.0, 1.0, 9).unwrap();
    let p = SearchParams::default();
    assert_eq!(
        old.search_batch(q.as_slice(), &p).unwrap(),
        idx.search_batch(q.as_slice(), &p).unwrap()
    );
}

/// Scan results equal brute force over the decoded vectors (8-bit and fast-scan).
#[test]
fn scan_equals_brute_force_over_decoded() {
    for spec in ["PQ8", "PQ8x4fs", "OPQ4,PQ4"] {
        for metric in [Metric::L2, Metric::InnerProduct, Metric::Cosine] {
            let idx = build(spec, metric, 1500, 16);
            let pq = idx.quantizer().unwrap();
            let q = gaussian(5, 16, 0.0, 1.0, 9).unwrap();
            let p = SearchParams::with_k(10);
            let got = idx.search_batch(q.as_slice(), &p).unwrap();
            let idxs = idx.indices();
            let codes = if pq.nbits() == 4 {
                crate::quant::product::pack4(&idxs, pq.m())
            } else {
                idxs
            };
            let dec = pq.decode(&codes).unwrap();
            let qs = idx.prepare(q.as_slice());
            for (qi, qv) in qs.chunks_exact(16).enumerate() {
                let mut all: Vec<(u64, f32)> = dec
                    .chunks_exact(16)
                    .enumerate()
                    .map(|(i, x)| {
                        let d = match metric {
                            Metric::L2 => crate::kernels::scalar::l2_sq(qv, x),
                            Metric::InnerProduct => -crate::kernels::scalar::dot(qv, x),
                            Metric::Cosine => 1.0 - crate::kernels::scalar::dot(qv, x),
                        };
                        (i as u64, d)
                    })
                    .collect();
                all.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
                for (h, w) in got[qi].iter().zip(&all) {
                    assert!(
                        (h.distance - w.1).abs() < 1e-3 * (1.0 + w.1.abs()),
                        "{spec} {metric}"
                    );
                }
                let want: Vec<u64> = all.iter().take(10).map(|x| x.0).collect();
                let ids: Vec<u64> = got[qi].iter().map(|h| h.id).collect();
                let common = ids.iter().filter(|i| want.contains(i)).count();
                assert!(common >= 9, "{spec} {metric}: {ids:?} vs {want:?}");
            }
        }
    }
}

#[test]
fn adding_in_pieces_equals_adding_at_once_and_round_trips() {
    let data = gaussian(1000, 16, 0.0, 1.0, 4).unwrap();
    for spec in ["PQ4", "PQ8x4fs", "OPQ8,PQ8x4fs"] {
        let mut a = Product::new(spec, 16, Metric::L2, true, 1).unwrap();
        a.train(data.as_slice()).unwrap();
        let mut b = a.clone();
        a.add(data.as_slice(), None).unwrap();
        for chunk in data.as_slice().chunks(16 * 37) {
            b.add(chunk, None).unwrap();
        }
        assert_eq!(a.codes, b.codes, "{spec}");
        let q = gaussian(4, 16, 0.0, 1.0, 5).unwrap();
        let p = SearchParams {
            rerank: 20,
            ..SearchParams::with_k(5)
        };
        let want = a.search_batch(q.as_slice(), &p).unwrap();
        let bytes = a.to_container().unwrap().to_bytes().unwrap();
        let c = Container::from_bytes("m.vq", bytes, OpenOptions::default()).unwrap();
        let back = crate::index::from_container(&c).unwrap();
        assert_eq!(back.spec(), a.spec());
        assert_eq!(back.search_batch(q.as_slice(), &p).unwrap(), want);
    }
}

#[test]
fn bad_input() {
    assert!(Product::new("PQ3", 16, Metric::L2, false, 0).is_err());
    let mut idx = Product::new("PQ4", 16, Metric::L2, false, 0).unwrap();
    assert!(idx.add(&[0.0; 16], None).is_err(), "untrained");
    let few = gaussian(100, 16, 0.0, 1.0, 1).unwrap();
    assert!(idx.train(few.as_slice()).is_err(), "100 < 256 centroids");
    let idx = build("PQ4x4fs", Metric::L2, 300, 16);
    assert!(idx.search(&[0.0; 15], &SearchParams::default()).is_err());
    let mut no_raw = Product::new("PQ4", 16, Metric::L2, false, 0).unwrap();
    let data = gaussian(300, 16, 0.0, 1.0, 1).unwrap();
    no_raw.train(data.as_slice()).unwrap();
    no_raw.add(data.as_slice(), None).unwrap();
    let p = SearchParams {
        rerank: 10,
        ..SearchParams::default()
    };
    assert!(
        no_raw
            .search(data.row(0), &p)
            .unwrap_err()
            .to_string()
            .contains("--keep-raw")
    );
}

/// A batch of fast-scan queries is scanned four at a time per pass over the codes
/// (`scan_many`); every query's answer equals its single-query search, ids and distances
/// bit for bit, with deletes, for sub-quantizer counts with and without an unrolled
/// kernel and k up to past the candidate reservoir.
#[test]
fn batched_fast_scan_equals_single_query_search() {
    let (n, dim) = (5000, 96);
    for (m, metric) in [
        (24, Metric::L2),
        (96, Metric::L2),
        (32, Metric::InnerProduct),
        (48, Metric::Cosine),
        (12, Metric::L2),
    ] {
        let mut idx = build(&format!("PQ{m}x4fs"), metric, n, dim);
        let deleted: Vec<u64> = (0..n as u64).step_by(11).collect();
        idx.delete(&deleted).unwrap();
        let q = gaussian(23, dim, 0.0, 1.0, 31).unwrap();
        for k in [1usize, 10, 150] {
            let p = SearchParams::with_k(k);
            let batch = idx.search_batch(q.as_slice(), &p).unwrap();
            for (i, got) in batch.iter().enumerate() {
                let want = idx.search(q.row(i), &p).unwrap();
                assert_eq!(got.len(), k, "M {m} k {k} query {i}");
                let ids = |r: &[Neighbor]| r.iter().map(|x| x.id).collect::<Vec<_>>();
                let bits =
                    |r: &[Neighbor]| r.iter().map(|x| x.distance.to_bits()).collect::<Vec<_>>();
                assert_eq!(ids(got), ids(&want), "M {m} {metric:?} k {k} query {i}");
                assert_eq!(bits(got), bits(&want), "M {m} {metric:?} k {k} query {i}");
                assert!(got.iter().all(|x| x.id % 11 != 0), "deleted id returned");
            }
        }
    }
}
