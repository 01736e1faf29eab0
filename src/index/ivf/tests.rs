use super::*;
use crate::data::generate::{DataDistribution, SyntheticSpec, gaussian};
use crate::index::Product;
use crate::index::spec::IndexSpec;
use crate::quant::codec::pq::CODES8_SECTION;
use crate::store::OpenOptions;
use crate::vectors::{VectorSet, normalize_in_place};

/// Base and query splits of a 16-cluster Gaussian mixture.
fn mixture_sets(n: usize, nq: usize, dim: usize, seed: u64) -> (VectorSet, VectorSet) {
    let d = SyntheticSpec {
        dim,
        n_base: n,
        n_query: nq,
        n_train: 0,
        distribution: DataDistribution::Mixture {
            clusters: 16,
            spread: 0.3,
        },
        seed,
    }
    .generate()
    .unwrap();
    (d.base, d.query)
}

fn mixture(n: usize, dim: usize, seed: u64) -> Vec<f32> {
    mixture_sets(n, 1, dim, seed).0.into_vec()
}

/// With every list probed, IVF over residual codes ranks like a flat index over the
/// same reconstructions: for `Flat` inner exactly the flat index.
#[test]
fn full_probe_equals_flat() {
    let (n, dim) = (3000, 16);
    let data = mixture(n, dim, 5);
    let queries = gaussian(20, dim, 0.0, 1.0, 6).unwrap();
    for metric in [Metric::L2, Metric::InnerProduct, Metric::Cosine] {
        let mut ivf = new("IVF16,Flat", dim, metric, false, 1).unwrap();
        ivf.train(&data).unwrap();
        ivf.add(&data, None).unwrap();
        let mut flat = crate::index::Flat::new(dim, metric);
        flat.add(&data, None).unwrap();
        let p = SearchParams {
            k: 10,
            nprobe: 16,
            ..Default::default()
        };
        for q in queries.rows() {
            let a = ivf.search(q, &p).unwrap();
            let b = flat.search(q, &p).unwrap();
            let ia: Vec<u64> = a.iter().map(|x| x.id).collect();
            let ib: Vec<u64> = b.iter().map(|x| x.id).collect();
            assert_eq!(ia, ib, "{metric:?}");
            for (x, y) in a.iter().zip(&b) {
                assert!((x.distance - y.distance).abs() <= 1e-3 * (1.0 + y.distance.abs()));
            }
        }
    }
}

/// Quantized inner codes with nprobe = nlist: the distances equal the exact
/// distances to the reconstructions (centroid + decoded residual), and the ranking is
/// the brute-force ranking of those reconstructions.
#[test]
fn full_probe_equals_scan_of_reconstructions() {
    let (n, dim) = (2000, 16);
    let data = mixture(n, dim, 8);
    let queries = gaussian(10, dim, 0.0, 1.0, 9).unwrap();
    for spec in [
        "IVF8,SQ8",
        "IVF8,SQ4",
        "IVF8,PQ4",
        "IVF8,PQ8x4fs",
        "IVF8,SQ8lm",
    ] {
        for metric in [Metric::L2, Metric::InnerProduct, Metric::Cosine] {
            let mut ivf = new(spec, dim, metric, false, 2).unwrap();
            ivf.train(&data).unwrap();
            ivf.add(&data, None).unwrap();
            let rec = ivf.reconstruct(&data).unwrap().unwrap();
            let mut flat = crate::index::Flat::new(dim, Metric::L2);
            let p = SearchParams {
                k: 10,
                nprobe: 8,
                ..Default::default()
            };
            let metric_of = |q: &[f32], x: &[f32]| -> f32 {
                match metric {
                    Metric::L2 => kernels::scalar::l2_sq(q, x),
                    Metric::InnerProduct => -kernels::scalar::dot(q, x),
                    // PQ kinds score cosine as 1 − ⟨q̂, x̂⟩ (FAISS's convention);
                    // SQ kinds divide by the stored ‖x̂‖ as well.
                    Metric::Cosine if spec.contains("PQ") => 1.0 - kernels::scalar::dot(q, x),
                    Metric::Cosine => {
                        let nq = kernels::scalar::dot(q, q).sqrt();
                        let nx = kernels::scalar::dot(x, x).sqrt();
                        1.0 - kernels::scalar::dot(q, x) / (nq * nx)
                    }
                }
            };
            flat.add(&rec, None).unwrap();
            for q in queries.rows() {
                let got = ivf.search(q, &p).unwrap();
                let mut qn = q.to_vec();
                if metric.normalizes() {
                    normalize_in_place(&mut qn);
                }
                // Brute force over reconstructions.
                let mut all: Vec<(f32, u64)> = rec
                    .chunks_exact(dim)
                    .enumerate()
                    .map(|(i, x)| (metric_of(&qn, x), i as u64))
                    .collect();
                all.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
                for (g, want) in got.iter().zip(&all) {
                    assert!(
                        (g.distance - want.0).abs() <= 2e-3 * (1.0 + want.0.abs()),
                        "{spec} {metric:?}: {} vs {}",
                        g.distance,
                        want.0
                    );
                }
                // The returned distances are the true distances of the returned ids.
                for g in &got {
                    let x = &rec[g.id as usize * dim..(g.id as usize + 1) * dim];
                    let want = metric_of(&qn, x);
                    assert!((g.distance - want).abs() <= 2e-3 * (1.0 + want.abs()));
                }
            }
        }
    }
}

#[test]
fn precomputed_tables_match_direct_tables() {
    let (n, dim) = (3000, 32);
    let data = mixture(n, dim, 11);
    let queries = gaussian(15, dim, 0.0, 1.0, 12).unwrap();
    for pq in [PqParams { m: 8, nbits: 8 }, PqParams { m: 16, nbits: 4 }] {
        let mut ivf = IvfProduct::new(16, pq, dim, Metric::L2, false, 3).unwrap();
        ivf.train(&data).unwrap();
        ivf.add(&data, None).unwrap();
        assert!(ivf.uses_precomputed_tables());
        let p = SearchParams {
            k: 10,
            nprobe: 4,
            ..Default::default()
        };
        let a = ivf.search_batch(queries.as_slice(), &p).unwrap();
        ivf.set_precomputed_tables(false);
        assert!(!ivf.uses_precomputed_tables());
        let b = ivf.search_batch(queries.as_slice(), &p).unwrap();
        for (x, y) in a.iter().zip(&b) {
            for (u, v) in x.iter().zip(y) {
                assert!((u.distance - v.distance).abs() <= 1e-3 * (1.0 + v.distance));
            }
        }
    }
}

/// The fast-scan list scan returns exactly the float-table answer.
#[test]
fn fast_scan_lists_equal_8bit_style_exact_adc() {
    let (n, dim) = (4000, 32);
    let data = mixture(n, dim, 21);
    let queries = gaussian(20, dim, 0.0, 1.0, 22).unwrap();
    let pq16 = PqParams { m: 16, nbits: 4 };
    let mut ivf = IvfProduct::new(8, pq16, dim, Metric::L2, false, 4).unwrap();
    ivf.train(&data).unwrap();
    ivf.add(&data, None).unwrap();
    let Some(pq) = &ivf.codec else {
        panic!("pq codec")
    };
    let lists = ivf.assign(&data);
    let res = ivf.residuals(&data, &lists);
    let idx = pq.encode_indices(&res).unwrap();
    // k = 1, a usual k, and a k larger than some lists: the candidate pruning
    // (k-th smallest byte sum + twice the rounding margin) must never drop an answer.
    for k in [1, 10, 60] {
        let p = SearchParams {
            k,
            nprobe: 3,
            ..Default::default()
        };
        for q in queries.rows() {
            let got = ivf.search(q, &p).unwrap();
            // Reference: float ADC over the entries of the 3 nearest lists.
            let coarse = ivf.coarse(q);
            let mut order: Vec<usize> = (0..8).collect();
            order.sort_by(|&a, &b| coarse[a].total_cmp(&coarse[b]).then(a.cmp(&b)));
            let probe = &order[..3];
            let mut all: Vec<(f32, u64)> = Vec::new();
            for (i, &l) in lists.iter().enumerate() {
                if probe.contains(&(l as usize)) {
                    let c = &ivf.centroids[l as usize * dim..(l as usize + 1) * dim];
                    let qr: Vec<f32> = q.iter().zip(c).map(|(a, b)| a - b).collect();
                    let mut t = Vec::new();
                    pq.adc_table(&qr, Metric::L2, &mut t);
                    let d: f32 = (0..16).map(|s| t[s * 16 + idx[i * 16 + s] as usize]).sum();
                    all.push((d, i as u64));
                }
            }
            all.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
            assert_eq!(got.len(), k);
            for (g, w) in got.iter().zip(&all) {
                assert!(
                    (g.distance - w.0).abs() <= 1e-3 * (1.0 + w.0),
                    "k {k}: {} vs {}",
                    g.distance,
                    w.0
                );
            }
        }
    }
}

#[test]
fn recall_grows_with_nprobe_and_beats_flat_pq_at_full_probe() {
    let (n, dim) = (20_000, 32);
    let (base, queries) = mixture_sets(n, 100, dim, 31);
    let gt = crate::data::groundtruth::ground_truth(&base, &queries, 10, Metric::L2).unwrap();
    let data = base.as_slice();
    let mut ivf = new("IVF64,PQ8", dim, Metric::L2, false, 5).unwrap();
    ivf.train(data).unwrap();
    ivf.add(data, None).unwrap();
    let mut pq = Product::new("PQ8", dim, Metric::L2, false, 5).unwrap();
    pq.train(data).unwrap();
    pq.add(data, None).unwrap();
    let recall = |idx: &dyn Index, nprobe: usize| {
        let p = SearchParams {
            k: 10,
            nprobe,
            ..Default::default()
        };
        let res = idx.search_batch(queries.as_slice(), &p).unwrap();
        crate::eval::recall_at_k(&res, &gt, 10)
    };
    let r1 = recall(&*ivf, 1);
    let r8 = recall(&*ivf, 8);
    let r64 = recall(&*ivf, 64);
    let flat_pq = recall(&pq, 1);
    assert!(r1 < r8 && r8 <= r64 + 1e-9, "{r1} {r8} {r64}");
    // Residual coding spends the bits on what the centroid leaves: better than PQ
    // on the raw vectors at the same code size.
    assert!(r64 > flat_pq + 0.05, "IVF64,PQ8 {r64} vs PQ8 {flat_pq}");
}

#[test]
fn files_with_row_major_8bit_lists_still_open() {
    // 8-bit lists were stored row-major (section "codes") before the blocked layout.
    let (n, dim) = (700, 16);
    let data = mixture(n, dim, 5);
    let pq8 = PqParams { m: 8, nbits: 8 };
    let mut ivf = IvfProduct::new(4, pq8, dim, Metric::L2, false, 6).unwrap();
    ivf.train(&data).unwrap();
    ivf.add(&data, None).unwrap();
    let mut w = ivf.to_container().unwrap();
    let rows = ivf.entry_codes(ivf.quantizer().unwrap());
    w.replace_section(CODES8_SECTION, "codes", rows);
    let c = Container::from_bytes("old.vq", w.to_bytes().unwrap(), OpenOptions::default()).unwrap();
    let old = IvfProduct::from_container(&c).unwrap();
    assert_eq!(old.codes.to_vec(), ivf.codes.to_vec());
    let q = gaussian(5, dim, 0.0, 1.0, 9).unwrap();
    let p = SearchParams {
        nprobe: 2,
        ..Default::default()
    };
    assert_eq!(
        old.search_batch(q.as_slice(), &p).unwrap(),
        ivf.search_batch(q.as_slice(), &p).unwrap()
    );
}

#[test]
fn save_load_add_delete_compact() {
    let (n, dim) = (3000, 16);
    let data = mixture(n, dim, 41);
    let queries = gaussian(10, dim, 0.0, 1.0, 42).unwrap();
    let dir = tempfile::tempdir().unwrap();
    for spec in [
        "IVF8,Flat",
        "IVF8,SQ8",
        "IVF8,SQ4",
        "IVF8,PQ4",
        "IVF8,PQ8x4fs",
    ] {
        for metric in [Metric::L2, Metric::Cosine] {
            let mut ivf = new(spec, dim, metric, true, 6).unwrap();
            ivf.train(&data).unwrap();
            ivf.add(&data[..2000 * dim], None).unwrap();
            let p = SearchParams {
                k: 10,
                nprobe: 3,
                rerank: 20,
                ..Default::default()
            };
            let path = dir.path().join("i.vq");
            ivf.save(&path).unwrap();
            let c = Container::open_with(&path, OpenOptions::default()).unwrap();
            let mut loaded = from_container(&c).unwrap();
            assert_eq!(loaded.spec(), ivf.spec());
            let a = ivf.search_batch(queries.as_slice(), &p).unwrap();
            let b = loaded.search_batch(queries.as_slice(), &p).unwrap();
            assert_eq!(a, b, "{spec} {metric:?}");
            // Adding to the loaded index keeps what was there.
            loaded.add(&data[2000 * dim..], None).unwrap();
            ivf.add(&data[2000 * dim..], None).unwrap();
            assert_eq!(loaded.len(), n);
            assert_eq!(
                ivf.search_batch(queries.as_slice(), &p).unwrap(),
                loaded.search_batch(queries.as_slice(), &p).unwrap()
            );
            // Deletes never come back, compaction keeps the answers.
            let gone: Vec<u64> = (0..n as u64).step_by(3).collect();
            assert_eq!(loaded.delete(&gone).unwrap(), gone.len());
            let before = loaded.search_batch(queries.as_slice(), &p).unwrap();
            for r in before.iter().flatten() {
                assert!(r.id % 3 != 0);
            }
            loaded.save(&path).unwrap();
            let c = Container::open_with(&path, OpenOptions::default()).unwrap();
            let mut again = from_container(&c).unwrap();
            assert_eq!(again.deleted(), gone.len());
            assert_eq!(again.search_batch(queries.as_slice(), &p).unwrap(), before);
            assert_eq!(again.compact().unwrap(), gone.len());
            assert_eq!(again.len(), n - gone.len());
            assert_eq!(again.search_batch(queries.as_slice(), &p).unwrap(), before);
        }
    }
}

#[test]
fn bad_parameters() {
    assert!(new("IVF8,PQ5", 16, Metric::L2, false, 0).is_err());
    let mut ivf = new("IVF64,SQ8", 4, Metric::L2, false, 0).unwrap();
    let e = ivf.train(&[0.0; 4 * 10]).unwrap_err().to_string();
    assert!(e.contains("64 lists"), "{e}");
    assert!(ivf.add(&[0.0; 4], None).is_err(), "untrained");
    let data = mixture(500, 4, 1);
    let mut ivf = new("IVF4,SQ8", 4, Metric::L2, false, 0).unwrap();
    ivf.train(&data).unwrap();
    ivf.add(&data, None).unwrap();
    let p = SearchParams {
        nprobe: 0,
        ..Default::default()
    };
    assert!(ivf.search(&[0.0; 4], &p).is_err());
    assert!(
        ivf.search(
            &[0.0; 4],
            &SearchParams {
                rerank: 5,
                ..Default::default()
            }
        )
        .is_err(),
        "rerank without raw vectors"
    );
    assert!(
        ivf.search(&[f32::NAN, 0.0, 0.0, 0.0], &SearchParams::default())
            .is_err()
    );
}

/// `OPQ{M},IVF{n},PQ{M}`: the rotation is learned first and applied to vectors and
/// queries alike; full probing equals the brute force over the (un-rotated)
/// reconstructions, OPQ lowers the distortion on correlated data, and files keep it.
#[test]
fn opq_in_front_of_the_inverted_file() {
    let (n, dim) = (3000, 16);
    // Correlated data: Gaussian times a fixed mixing matrix with decaying scales.
    let z = gaussian(n, dim, 0.0, 1.0, 51).unwrap();
    let mix = gaussian(dim, dim, 0.0, 1.0, 52).unwrap();
    let mut data = vec![0.0f32; n * dim];
    for (zi, xi) in z.rows().zip(data.chunks_exact_mut(dim)) {
        for (j, x) in xi.iter_mut().enumerate() {
            *x = (0..dim)
                .map(|k| zi[k] * mix.row(k)[j] / (1.0 + k as f32))
                .sum();
        }
    }
    let queries = gaussian(10, dim, 0.0, 0.3, 53).unwrap();
    let mse = |idx: &dyn Index| {
        let rec = idx.reconstruct(&data).unwrap().unwrap();
        crate::eval::mse(&data, &rec)
    };
    let mut plain = new("IVF8,PQ4", dim, Metric::L2, false, 7).unwrap();
    let mut opq = new("OPQ4,IVF8,PQ4", dim, Metric::L2, true, 7).unwrap();
    for idx in [&mut plain, &mut opq] {
        idx.train(&data).unwrap();
        idx.add(&data, None).unwrap();
    }
    assert_eq!(opq.spec(), "OPQ4,IVF8,PQ4");
    assert!(
        mse(&*opq) < mse(&*plain),
        "OPQ {} vs plain {}",
        mse(&*opq),
        mse(&*plain)
    );
    let rec = opq.reconstruct(&data).unwrap().unwrap();
    let p = SearchParams::new(10).nprobe(8);
    for q in queries.rows() {
        let got = opq.search(q, &p).unwrap();
        let mut all: Vec<(f32, u64)> = rec
            .chunks_exact(dim)
            .enumerate()
            .map(|(i, x)| (crate::kernels::scalar::l2_sq(q, x), i as u64))
            .collect();
        all.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        for (g, w) in got.iter().zip(&all) {
            assert!(
                (g.distance - w.0).abs() <= 1e-3 * (1.0 + w.0),
                "{g:?} vs {w:?}"
            );
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("opq.vq");
    opq.save(&path).unwrap();
    let again = crate::index::open(&path).unwrap();
    assert_eq!(again.spec(), "OPQ4,IVF8,PQ4");
    let rr = p.rerank(50);
    assert_eq!(
        again.search_batch(queries.as_slice(), &rr).unwrap(),
        opq.search_batch(queries.as_slice(), &rr).unwrap()
    );
    assert!(new("OPQ3,IVF8,PQ4", dim, Metric::L2, false, 7).is_err());
    assert!(new("OPQ8,IVF8,PQ4", dim, Metric::L2, false, 7).is_err());
}

/// Batch search of a fast-scan or SQ IVF scans lists for several queries at once; every
/// answer must equal the single-query search's — the same distances rank by rank — for
/// each metric, with and without the precomputed tables, with deleted rows, at probe
/// counts from 1 to every list, and at a `k` larger than two lists hold (a query whose
/// probed lists hold fewer than `k` entries goes on to further lists). 400 queries, so
/// that groups are large enough to be scanned list by list (at least two queries per
/// list beyond their nearest; nprobe 1 is the per-query path).
#[test]
fn list_by_list_batches_equal_single_query_search() {
    let (n, dim) = (6000, 32);
    let (base, queries) = mixture_sets(n, 400, dim, 41);
    let data = base.as_slice();
    for (spec, metric) in [
        ("IVF48,PQ16x4fs", Metric::L2),
        ("IVF48,PQ16x4fs", Metric::InnerProduct),
        ("IVF48,PQ8x4fs", Metric::Cosine),
        ("IVF48,PQ32x4fs", Metric::L2),
        ("IVF48,SQ8", Metric::L2),
        ("IVF48,SQ8", Metric::InnerProduct),
        ("IVF48,SQ8u", Metric::Cosine),
        ("IVF48,SQ4", Metric::L2),
        ("IVF48,SQ8nq", Metric::InnerProduct),
    ] {
        let mut ivf = new(spec, dim, metric, false, 3).unwrap();
        ivf.train(data).unwrap();
        ivf.add(data, None).unwrap();
        let dead: Vec<u64> = (0..n as u64).filter(|i| i % 7 == 3).collect();
        ivf.delete(&dead).unwrap();
        for (k, nprobe) in [(1, 1), (10, 2), (10, 7), (25, 16), (300, 2), (10, 48)] {
            let p = SearchParams {
                k,
                nprobe,
                ..Default::default()
            };
            let batch = ivf.search_batch(queries.as_slice(), &p).unwrap();
            let (mut same, mut total) = (0usize, 0usize);
            for (qi, (q, got)) in queries.rows().zip(&batch).enumerate() {
                let want = ivf.search(q, &p).unwrap();
                assert_eq!(
                    got.len(),
                    want.len(),
                    "{spec} {metric:?} k {k} nprobe {nprobe}"
                );
                // The coarse distances come from a GEMM over the whole batch or over
                // one query, which may round differently: each rank's distance agrees
                // to float precision (a missed candidate would shift the ranks).
                for (g, w) in got.iter().zip(&want) {
                    assert!(
                        (g.distance - w.distance).abs() <= 1e-5 * (1.0 + w.distance.abs()),
                        "{spec} {metric:?} k {k} nprobe {nprobe} query {qi}: {g:?} vs {w:?}"
                    );
                }
                same += got.iter().zip(&want).filter(|(g, w)| g.id == w.id).count();
                total += want.len();
            }
            // Ids differ only where two distances tie to float precision.
            assert!(
                same * 1000 >= total * 999,
                "{spec} k {k} nprobe {nprobe}: {same}/{total}"
            );
        }
    }
}

/// The list-by-list scan itself (not only through `search_batch`, which might not take
/// it): for a batch where it applies, every query's candidates equal `scan_query`'s on
/// the same coarse distances — ids and distances bit for bit — with deleted rows, for
/// probe counts 2 to all and a `k` above what two lists hold (the fallback); for 4-bit
/// PQ fast-scan and for SQ with 8-bit (uniform and table) and 4-bit codes (four queries
/// per pass over a list's codes).
#[test]
fn scan_by_list_equals_scan_query_bit_for_bit() {
    let (n, dim, nlist) = (5000, 32, 40);
    let (base, queries) = mixture_sets(n, 300, dim, 43);
    let pq = IvfProduct::new(
        nlist,
        PqParams { m: 16, nbits: 4 },
        dim,
        Metric::L2,
        false,
        6,
    )
    .unwrap();
    by_list_equals_scan_query(pq, &base, &queries);
    for (spec, metric) in [
        ("SQ8", Metric::L2),
        ("SQ8", Metric::InnerProduct),
        ("SQ8lm", Metric::L2),
        ("SQ4", Metric::L2),
    ] {
        let config = match spec.parse::<IndexSpec>().unwrap() {
            IndexSpec::Scalar(sq) => sq.config(),
            other => panic!("{other:?}"),
        };
        let name = spec.to_string();
        let sq = IvfScalar::new(nlist, SqSpec { name, config }, dim, metric, false, 6).unwrap();
        by_list_equals_scan_query(sq, &base, &queries);
    }
}

/// [`scan_by_list_equals_scan_query_bit_for_bit`] for one untrained index.
fn by_list_equals_scan_query<C: VectorCodec>(
    mut ivf: Ivf<C>,
    base: &VectorSet,
    queries: &VectorSet,
) {
    let (n, dim, nlist) = (base.len(), base.dim(), ivf.nlist);
    let data = base.as_slice();
    ivf.train(data).unwrap();
    ivf.add(data, None).unwrap();
    let dead: Vec<u64> = (0..n as u64).filter(|i| i % 5 == 1).collect();
    ivf.delete(&dead).unwrap();
    let codec = ivf.codec().unwrap();
    assert!(codec.queries_per_scan() > 1);
    let prepared = ivf.prepare(queries.as_slice());
    let coarse = ivf.coarse(&prepared);
    let ok = |r: usize| ivf.rows.is_live(r);
    // (nprobe 1: the nearest-list pass alone.)
    for (depth, nprobe) in [(10, 1), (1, 2), (10, 5), (20, 17), (250, 2), (10, nlist)] {
        let mut s = search::Scratch::default();
        let listed = ivf.scan_by_list(codec, &prepared, &coarse, nprobe, depth, &ok, &mut s);
        assert_eq!(listed.len(), queries.len());
        for (i, got) in listed.iter().enumerate() {
            let q = &prepared[i * dim..(i + 1) * dim];
            let cd = &coarse[i * nlist..(i + 1) * nlist];
            let want = ivf.scan_query(codec, q, cd, nprobe, depth, &IdFilter::All, &mut s);
            assert_eq!(
                got.len(),
                want.len(),
                "{} depth {depth} nprobe {nprobe} query {i}",
                ivf.name()
            );
            for (g, w) in got.iter().zip(&want) {
                assert!(
                    g.id == w.id && g.distance.to_bits() == w.distance.to_bits(),
                    "{} depth {depth} nprobe {nprobe} query {i}: {g:?} vs {w:?}",
                    ivf.name()
                );
            }
        }
    }
}

/// `add_stream` equals one `add` per chunk (the same saved bytes), for IVF and
/// flat-code kinds, on an index that already holds entries and keeps raw vectors, with one layout instead of one per
/// chunk; a chunk holding a NaN fails naming the stream's row, and the index is then
/// unchanged (the same saved bytes as before the call).
#[test]
fn add_stream_equals_chunked_adds_and_fails_unchanged() {
    let dim = 16;
    let data = mixture(1000, dim, 7);
    let dir = tempfile::tempdir().unwrap();
    let bytes = |ivf: &dyn Index, name: &str| {
        let path = dir.path().join(name);
        crate::index::IndexExt::save(ivf, &path).unwrap();
        std::fs::read(&path).unwrap()
    };
    let rows = |a: usize, b: usize| data[a * dim..b * dim].to_vec();
    // IVF and flat-code kinds: the kinds with their own streams.
    for spec in [
        "IVF8,SQ8",
        "IVF8,PQ8x4fs",
        "IVF8,Flat",
        "RaBitQfs",
        "RaBitQ4",
    ] {
        let fresh = || {
            let opts = crate::index::spec::BuildOptions {
                keep_raw: true,
                seed: 6,
                ..Default::default()
            };
            let mut ivf = crate::index::spec::new_index(spec, dim, &opts).unwrap();
            ivf.train(&data).unwrap();
            ivf.add(&data[..300 * dim], None).unwrap();
            ivf
        };
        let mut one_by_one = fresh();
        one_by_one.add(&rows(300, 550), None).unwrap();
        one_by_one.add(&rows(550, 1000), None).unwrap();
        let mut streamed = fresh();
        let mut chunks = vec![rows(300, 550), rows(550, 1000)].into_iter();
        streamed
            .add_stream(None, &mut || Ok(chunks.next()))
            .unwrap();
        assert_eq!(streamed.len(), 1000, "{spec}");
        assert!(
            bytes(&*one_by_one, "a.vq") == bytes(&*streamed, "b.vq"),
            "{spec}: streamed adds differ"
        );
        let before = bytes(&*streamed, "c.vq");
        let mut bad = rows(0, 40);
        bad[5 * dim + 3] = f32::NAN;
        let mut chunks = vec![rows(0, 250), bad].into_iter();
        let e = streamed
            .add_stream(None, &mut || Ok(chunks.next()))
            .unwrap_err()
            .to_string();
        assert!(e.contains("row 255"), "{spec}: {e}");
        assert_eq!(streamed.len(), 1000, "{spec}");
        assert!(
            before == bytes(&*streamed, "d.vq"),
            "{spec}: changed by a failed stream"
        );

        // Explicit ids: the same bytes as chunked adds with their shares of the ids.
        let ids: Vec<u64> = (0..700u64).map(|i| 5000 + 3 * i).collect();
        one_by_one.add(&rows(300, 550), Some(&ids[..250])).unwrap();
        one_by_one.add(&rows(550, 1000), Some(&ids[250..])).unwrap();
        let mut chunks = vec![rows(300, 550), rows(550, 1000)].into_iter();
        streamed
            .add_stream(Some(&ids), &mut || Ok(chunks.next()))
            .unwrap();
        assert_eq!(streamed.len(), 1700, "{spec}");
        assert!(
            bytes(&*one_by_one, "e.vq") == bytes(&*streamed, "f.vq"),
            "{spec}: streamed adds with ids differ"
        );
        let before = bytes(&*streamed, "g.vq");
        // Ids already held fail before any chunk is read; rows past or short of the
        // ids given fail; the index is unchanged each time.
        let mut reads = 0;
        let taken: Vec<u64> = (0..10u64).map(|i| 9000 + i).chain([5000 + 3 * 7]).collect();
        let e = streamed
            .add_stream(Some(&taken), &mut || {
                reads += 1;
                Ok(Some(rows(0, 11)))
            })
            .unwrap_err();
        assert!(
            matches!(
                e,
                Error::DuplicateId {
                    id: 5021,
                    row: 10,
                    count: 1,
                    ..
                }
            ),
            "{spec}: {e}"
        );
        assert_eq!(
            reads, 0,
            "{spec}: a chunk was read before the ids were checked"
        );
        let fresh_ids: Vec<u64> = (0..25u64).map(|i| 100_000 + i).collect();
        for (given, chunks) in [
            (15, vec![rows(0, 10), rows(10, 20)]),
            (25, vec![rows(0, 20)]),
        ] {
            let mut chunks = chunks.into_iter();
            let e = streamed
                .add_stream(Some(&fresh_ids[..given]), &mut || Ok(chunks.next()))
                .unwrap_err()
                .to_string();
            assert!(e.contains(&format!("{given} ids given")), "{spec}: {e}");
            assert_eq!(streamed.len(), 1700, "{spec}");
            assert!(
                before == bytes(&*streamed, "h.vq"),
                "{spec}: changed by a failed stream with ids"
            );
        }

        // Upserts: 40 ids held (ids[100..140]) and 30 new ones, in chunks of 45 and 25,
        // equal chunked upserts; an id repeated across chunks is refused before any
        // chunk is read, the index unchanged.
        let up: Vec<u64> = ids[100..140]
            .iter()
            .copied()
            .chain(200_000..200_030)
            .collect();
        let a = one_by_one.upsert(&rows(0, 45), &up[..45]).unwrap();
        let b = one_by_one.upsert(&rows(45, 70), &up[45..]).unwrap();
        assert_eq!(a + b, 40, "{spec}");
        let mut chunks = vec![rows(0, 45), rows(45, 70)].into_iter();
        let replaced = streamed
            .upsert_stream(&up, &mut || Ok(chunks.next()))
            .unwrap();
        assert_eq!(replaced, 40, "{spec}");
        assert_eq!(streamed.len(), 1730, "{spec}");
        assert!(
            bytes(&*one_by_one, "i.vq") == bytes(&*streamed, "j.vq"),
            "{spec}: streamed upserts differ"
        );
        let before = bytes(&*streamed, "k.vq");
        let twice: Vec<u64> = (0..20u64).map(|i| 300_000 + i % 15).collect();
        let mut reads = 0;
        let e = streamed
            .upsert_stream(&twice, &mut || {
                reads += 1;
                Ok(Some(rows(0, 10)))
            })
            .unwrap_err();
        assert!(
            matches!(
                e,
                Error::DuplicateId {
                    id: 300_000,
                    row: 15,
                    within_batch: true,
                    ..
                }
            ),
            "{spec}: {e}"
        );
        assert_eq!(reads, 0, "{spec}");
        assert!(before == bytes(&*streamed, "l.vq"), "{spec}");
    }
}

/// Batch search splits a batch so that every thread gets a share: groups of at least
/// `MIN_GROUP` queries, at least as many groups as threads when the batch has that many
/// queries to give (a batch of 50 was one group of 64 on one thread), and on one
/// thread the groups a large batch always had (64 queries sharing a coarse GEMM, or a
/// list-scanning codec's `nlist`-sized groups).
#[test]
fn small_batches_are_split_across_threads() {
    fn check<C: VectorCodec>(mut ivf: Ivf<C>, name: &str, base: &[f32]) {
        ivf.train(base).unwrap();
        let multi = ivf.codec.as_ref().is_some_and(|c| c.queries_per_scan() > 1);
        let cap = if multi { MIN_LIST_GROUP } else { QUERY_GROUP };
        crate::index::check_query_groups(name, |nq| ivf.query_group(nq), MIN_GROUP, cap);
    }
    let (n, dim, nlist) = (3000, 16, 32);
    let (base, _) = mixture_sets(n, 1, dim, 5);
    let base = base.as_slice();
    let flat = IvfFlat::new(nlist, RawSpec, dim, Metric::L2, false, 3).unwrap();
    check(flat, "IVF32,Flat", base);
    let pq = PqParams { m: 8, nbits: 4 };
    let fs = IvfProduct::new(nlist, pq, dim, Metric::L2, false, 3).unwrap();
    check(fs, "IVF32,PQ8x4fs", base);
    let config = match "SQ8".parse::<IndexSpec>().unwrap() {
        IndexSpec::Scalar(sq) => sq.config(),
        other => panic!("{other:?}"),
    };
    let name = "SQ8".to_string();
    let sq = IvfScalar::new(nlist, SqSpec { name, config }, dim, Metric::L2, false, 3).unwrap();
    check(sq, "IVF32,SQ8", base);
}
