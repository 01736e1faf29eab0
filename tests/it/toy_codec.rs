//! The quantizer contract from outside the crate: a toy 1-bit sign quantizer, written
//! here against the public [`VectorCodec`] trait only, gets a flat scan, an inverted
//! file and an HNSW graph — with ids, deletes, filters, re-ranking and save/load — with
//! no change to the crate.

use serde::{Deserialize, Serialize};
use vecquant::data::generate::gaussian;
use vecquant::index::{FlatCodes, Hnsw, IdFilter, Index, Ivf, SearchParams};
use vecquant::quant::codec::{ListTerms, Stored, VectorCodec};
use vecquant::store::{Container, ContainerWriter, OpenOptions};
use vecquant::topk::TopK;
use vecquant::{Error, Metric, Result};

/// One bit per dimension: the sign of the (residual) vector, decoded as ±scale_d where
/// scale_d is the mean |x_d| of the training sample.
#[derive(Clone, Debug)]
struct Sign {
    scale: Vec<f32>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct SignSpec;

#[derive(Default)]
struct SignQuery {
    target: Vec<f32>,
    konst: f32,
}

impl Sign {
    fn bytes(&self) -> usize {
        self.scale.len().div_ceil(8)
    }
    fn level(&self, code: &[u8], d: usize) -> f32 {
        if code[d / 8] >> (d % 8) & 1 == 1 {
            self.scale[d]
        } else {
            -self.scale[d]
        }
    }
    /// L2: ‖target − x̂‖²; inner product: konst − ⟨q, x̂⟩.
    fn dist(&self, s: &SignQuery, metric: Metric, code: &[u8]) -> f32 {
        let d = self.scale.len();
        match metric {
            Metric::L2 => (0..d)
                .map(|i| {
                    let e = s.target[i] - self.level(code, i);
                    e * e
                })
                .sum(),
            _ => {
                s.konst
                    - (0..d)
                        .map(|i| s.target[i] * self.level(code, i))
                        .sum::<f32>()
            }
        }
    }
}

impl VectorCodec for Sign {
    type Spec = SignSpec;
    type Query = SignQuery;

    fn train(_: &SignSpec, sample: &[f32], dim: usize, _: u64) -> Result<Self> {
        let n = sample.len() / dim;
        if n == 0 {
            return Err(Error::param("training sample", "empty"));
        }
        let mut scale = vec![0.0f32; dim];
        for v in sample.chunks_exact(dim) {
            scale.iter_mut().zip(v).for_each(|(s, x)| *s += x.abs());
        }
        scale.iter_mut().for_each(|s| *s /= n as f32);
        Ok(Sign { scale })
    }
    fn check(_: &SignSpec, dim: usize) -> Result<()> {
        if dim == 0 {
            return Err(Error::param("dim", "must be at least 1"));
        }
        Ok(())
    }
    fn name(_: &SignSpec) -> String {
        "SIGN".into()
    }
    fn dim(&self) -> usize {
        self.scale.len()
    }
    fn code_size(&self) -> usize {
        self.bytes()
    }
    fn params_bytes(&self) -> usize {
        self.scale.len() * 4
    }
    fn encode(&self, x: &[f32]) -> Result<Vec<u8>> {
        let d = self.scale.len();
        let mut out = vec![0u8; x.len() / d * self.bytes()];
        for (v, code) in x.chunks_exact(d).zip(out.chunks_exact_mut(self.bytes())) {
            for (i, &a) in v.iter().enumerate() {
                if a >= 0.0 {
                    code[i / 8] |= 1 << (i % 8);
                }
            }
        }
        Ok(out)
    }
    fn decode(&self, codes: &[u8]) -> Result<Vec<f32>> {
        Ok(codes
            .chunks_exact(self.bytes())
            .flat_map(|c| (0..self.scale.len()).map(move |i| self.level(c, i)))
            .collect())
    }
    fn write<'a>(&'a self, w: &mut ContainerWriter<'a>) {
        w.section_f32("sign_scale", &self.scale);
    }
    fn read(_: &SignSpec, c: &Container, dim: usize) -> Result<Self> {
        Ok(Sign {
            scale: c.section_f32("sign_scale", dim)?,
        })
    }
    fn begin_query(&self, s: &mut SignQuery, q: &[f32], _: Metric, _: Option<&[f32]>, _: &[usize]) {
        s.target = q.to_vec();
    }
    fn set_list(&self, s: &mut SignQuery, q: &[f32], metric: Metric, list: ListTerms<'_>) {
        s.target.clear();
        match (metric, list.centroid) {
            (Metric::L2, Some(c)) => s.target.extend(q.iter().zip(c).map(|(a, b)| a - b)),
            _ => s.target.extend_from_slice(q),
        }
        s.konst = list.coarse;
    }
    fn scan<F: Fn(usize) -> bool>(
        &self,
        s: &mut SignQuery,
        metric: Metric,
        run: Stored<'_>,
        n: usize,
        first: usize,
        heap: &mut TopK,
        ok: &F,
    ) {
        for (i, code) in run.codes.chunks_exact(self.bytes()).take(n).enumerate() {
            let d = self.dist(s, metric, code);
            if d <= heap.threshold() && ok(first + i) {
                heap.push((first + i) as u64, d);
            }
        }
    }
    fn distance(&self, s: &SignQuery, metric: Metric, stored: Stored<'_>, row: usize) -> f32 {
        let b = self.bytes();
        self.dist(s, metric, &stored.codes[row * b..(row + 1) * b])
    }
    fn prefetch(&self, _: Stored<'_>, _: usize, _: usize) {}
}

/// Brute force over reconstructions: the ids of the `k` nearest decoded vectors.
fn brute(rec: &[f32], dim: usize, q: &[f32], k: usize, metric: Metric) -> Vec<(f32, u64)> {
    let mut all: Vec<(f32, u64)> = rec
        .chunks_exact(dim)
        .enumerate()
        .map(|(i, x)| {
            let d = match metric {
                Metric::L2 => q.iter().zip(x).map(|(a, b)| (a - b) * (a - b)).sum(),
                _ => -q.iter().zip(x).map(|(a, b)| a * b).sum::<f32>(),
            };
            (d, i as u64)
        })
        .collect();
    all.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    all.truncate(k);
    all
}

/// Results equal the reference up to float rounding of the distances (ties may swap).
fn assert_close(got: &[vecquant::Neighbor], want: &[(f32, u64)], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}");
    for (g, w) in got.iter().zip(want) {
        assert!(
            (g.distance - w.0).abs() <= 1e-3 * (1.0 + w.0.abs()),
            "{what}: {} vs {}",
            g.distance,
            w.0
        );
    }
    let close = got.iter().zip(want).filter(|(g, w)| g.id == w.1).count();
    assert!(close + 1 >= got.len(), "{what}: ids {got:?} vs {want:?}");
}

#[test]
fn sign_codes_in_flat_ivf_and_hnsw() {
    let (n, dim) = (3000, 24);
    let base = gaussian(n, dim, 0.0, 1.0, 1).unwrap();
    let queries = gaussian(20, dim, 0.0, 1.0, 2).unwrap();
    let data = base.as_slice();
    let dir = tempfile::tempdir().unwrap();
    for metric in [Metric::L2, Metric::InnerProduct] {
        let p = SearchParams::new(10).nprobe(16).ef_search(200);
        // Flat: exactly the brute force over the reconstructions.
        let mut flat = FlatCodes::<Sign>::new(SignSpec, dim, metric, true, 3).unwrap();
        assert!(!flat.is_trained());
        flat.train(data).unwrap();
        flat.add(data, None).unwrap();
        assert_eq!(flat.bytes_per_vector(), 3.0);
        let rec = flat.reconstruct(data).unwrap().unwrap();
        for q in queries.rows() {
            let got = flat.search(q, &p).unwrap();
            assert_close(&got, &brute(&rec, dim, q, 10, metric), "flat");
        }
        // IVF probing every list: the brute force over centroid + decoded residual.
        let mut ivf = Ivf::<Sign>::new(16, SignSpec, dim, metric, true, 3).unwrap();
        ivf.train(data).unwrap();
        ivf.add(data, None).unwrap();
        assert_eq!(ivf.spec(), "IVF16,SIGN");
        let rec = ivf.reconstruct(data).unwrap().unwrap();
        for q in queries.rows() {
            let got = ivf.search(q, &p).unwrap();
            assert_close(&got, &brute(&rec, dim, q, 10, metric), "ivf");
        }
        // HNSW walking the sign codes: finds most of the brute-force answer.
        let mut hnsw = Hnsw::<Sign>::new(16, SignSpec, dim, metric, true, 3).unwrap();
        hnsw.train(data).unwrap();
        hnsw.add(data, None).unwrap();
        assert_eq!(hnsw.spec(), "HNSW16,SIGN");
        let rec = hnsw.reconstruct(data).unwrap().unwrap();
        let mut hits = 0;
        for q in queries.rows() {
            let got = hnsw.search(q, &p).unwrap();
            let want = brute(&rec, dim, q, 10, metric);
            hits += got
                .iter()
                .filter(|g| want.iter().any(|w| w.1 == g.id))
                .count();
        }
        assert!(hits >= 180, "HNSW over sign codes found {hits} of 200");

        // Ids, deletes, filters, re-ranking and files come with every kind.
        let kinds: Vec<Box<dyn Index>> = vec![Box::new(flat), Box::new(ivf), Box::new(hnsw)];
        for (i, mut idx) in kinds.into_iter().enumerate() {
            let q = queries.row(0);
            let rr = p.rerank(100);
            let exact = idx.search(q, &rr).unwrap();
            assert_eq!(exact.len(), 10);
            let gone: Vec<u64> = (0..n as u64).step_by(2).collect();
            idx.delete(&gone).unwrap();
            let odd = idx.search(q, &p).unwrap();
            assert!(odd.iter().all(|r| r.id % 2 == 1), "kind {i}");
            let keep = IdFilter::from_ids((0..n as u64).filter(|i| i % 3 == 1).collect());
            let f = idx.search_filtered(q, &p, &keep).unwrap();
            assert!(f.iter().all(|r| r.id % 3 == 1 && r.id % 2 == 1), "kind {i}");
            let path = dir.path().join(format!("sign{i}.vq"));
            idx.save(&path).unwrap();
            let c = Container::open_with(&path, OpenOptions::default()).unwrap();
            let again: Box<dyn Index> = match i {
                0 => Box::new(FlatCodes::<Sign>::from_container(&c).unwrap()),
                1 => Box::new(Ivf::<Sign>::from_container(&c).unwrap()),
                _ => Box::new(Hnsw::<Sign>::from_container(&c).unwrap()),
            };
            assert_eq!(again.search(q, &p).unwrap(), odd, "kind {i} after reload");
            // The built-in registry does not know the toy: a named error, not a panic.
            let e = vecquant::index::open(&path).map(|_| ()).unwrap_err();
            let msg = e.to_string();
            assert!(
                msg.contains(&path.display().to_string()) && msg.contains("parameters"),
                "kind {i}: {msg}"
            );
        }
    }
}
