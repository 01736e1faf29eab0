//! Golden search results, bit for bit, for every index kind.
//!
//! Each case builds an index from seeded data made by the crate's own generator, runs a
//! fixed set of searches (plain, re-ranked, filtered, IVF at `nprobe` 1 and `nlist`, HNSW
//! at two `ef_search` values, and again after deleting some ids) and compares every
//! result — ids and f32 distance *bit patterns* — with the files committed under
//! `tests/fixtures/golden/`. Any change to training, encoding, scanning, tie-breaking or
//! distance arithmetic shows up here; a refactor that claims to change nothing must keep
//! this test green without re-blessing. Every search is also run through `search_batch`,
//! which must return the ids of the single-query `search` in the same order with the
//! same distances up to rounding. It is bit-identical for SQ, PQ, HNSW and IVF over
//! Flat; Flat, OPQ and IVF over PQ (and over SQ for IP/cosine) score batches with a
//! GEMM that rounds differently in the last bits, so for those the batch results are
//! goldened too, as extra runs named `<run>@batch`.
//!
//! **Bless** (rewrite the golden files from the current code, after a change that is
//! *meant* to alter results):
//!
//! ```text
//! VECQUANT_BLESS=1 cargo test --test golden
//! ```
//!
//! then review and commit `tests/fixtures/golden/`. The file format is described in
//! `tests/it/common/golden_io.rs`.
//!
//! **Why the goldens are per SIMD level.** Distances come from the runtime-dispatched
//! kernels (`vecquant::kernels`: scalar, AVX2+FMA or AVX-512F) and training runs faer's
//! own runtime-dispatched GEMM; different instruction sets sum in different orders and
//! round differently in the last bits (measured on the blessing machine: capping the
//! kernels with `VECQUANT_SIMD=avx2` changed about 3,800 of the 5,820 stored result lists,
//! `scalar` about 4,200). So the goldens live in one directory per level,
//! `tests/fixtures/golden/<level>/`, and the test compares against the directory of the
//! level this CPU runs at. Only `avx512/` is committed (the project's reference
//! machine). On a CPU of another level, or with `VECQUANT_SIMD` set (which caps this
//! crate's kernels but not faer's, so it matches no real machine), the bit-exact
//! comparison is skipped with a note on stderr and only the properties are checked
//! (batch vs single, filters, deletes, lengths); bless on such a machine from a
//! known-good commit to get a local safety net.
//! Results do not depend on the thread count (checked with `RAYON_NUM_THREADS` 1, 2, 8).
//!
//! **HNSW.** The native builder inserts in parallel, so a graph built on the global pool
//! depends on thread timing; in a one-thread pool it inserts the rows in order and draws
//! the levels from the seed, so the build is deterministic: every HNSW index here is
//! built inside a one-thread rayon pool. (Re-blessed when the native builder replaced
//! hnsw_rs as the default: 5 of the 10 HNSW files changed — the three inner-product ones
//! and three query results at ef 16 in two L2 ones; on 2,000 points most searches are
//! exact on either graph.)
//! `hnsw_build_is_deterministic_in_one_thread` below
//! checks the saved bytes of two builds directly.

use crate::golden_io;

use std::sync::OnceLock;

use golden_io::Runs;
use vecquant::data::generate::{DataDistribution, Dataset, SyntheticSpec};
use vecquant::index::IdFilter;
use vecquant::prelude::*;

/// Vector dimension.
const DIM: usize = 32;
/// Base vectors per index.
const N_BASE: usize = 2000;
/// Queries per run.
const N_QUERY: usize = 20;
/// Training sample.
const N_TRAIN: usize = 1000;
/// Neighbours per query.
const K: usize = 10;
/// Inverted lists of every IVF case (the spec strings below say `IVF16`).
const NLIST: usize = 16;
/// Candidates re-scored exactly in the `rerank` runs.
const RERANK: usize = 40;

/// Clustered data (a Gaussian mixture), on which IVF partitions, OPQ rotations and the
/// SQ range choices all matter. Generated once per test process.
fn data() -> &'static Dataset {
    static DATA: OnceLock<Dataset> = OnceLock::new();
    DATA.get_or_init(|| {
        SyntheticSpec {
            dim: DIM,
            n_base: N_BASE,
            n_query: N_QUERY,
            n_train: N_TRAIN,
            distribution: DataDistribution::Mixture {
                clusters: 24,
                spread: 0.4,
            },
            seed: 2024,
        }
        .generate()
        .expect("generate the golden data set")
    })
}

/// One index configuration.
struct Case {
    spec: &'static str,
    metric: Metric,
    keep_raw: bool,
}

const fn case(spec: &'static str, metric: Metric, keep_raw: bool) -> Case {
    Case {
        spec,
        metric,
        keep_raw,
    }
}

/// Every kind and variant the spec parser accepts, under L2, with raw vectors kept so the
/// quantized kinds also run a re-ranked search.
const L2: &[Case] = &[
    case("Flat", Metric::L2, false),
    case("SQ8", Metric::L2, true),
    case("SQ4", Metric::L2, true),
    case("SQ8u", Metric::L2, true),
    case("SQ4u", Metric::L2, true),
    case("SQ8opt", Metric::L2, true),
    case("SQ4opt", Metric::L2, true),
    case("SQ8lm", Metric::L2, true),
    case("SQ4lm", Metric::L2, true),
    case("SQ8nq", Metric::L2, true),
    case("SQ4nq", Metric::L2, true),
    case("PQ8", Metric::L2, true),
    case("PQ8x4fs", Metric::L2, true),
    case("OPQ8,PQ8", Metric::L2, true),
    case("OPQ8,PQ8x4fs", Metric::L2, true),
    case("IVF16,Flat", Metric::L2, true),
    case("IVF16,SQ8", Metric::L2, true),
    case("IVF16,SQ4", Metric::L2, true),
    case("IVF16,SQ8lm", Metric::L2, false),
    case("IVF16,PQ8", Metric::L2, true),
    case("IVF16,PQ8x4fs", Metric::L2, true),
    case("HNSW16", Metric::L2, false),
    case("HNSW16,SQ8", Metric::L2, true),
    case("HNSW16,SQ4u", Metric::L2, false),
    case("HNSW16,PQ8", Metric::L2, true),
];

/// Each family under inner product; raw vectors kept for some so re-ranking by inner
/// product is covered too.
const IP: &[Case] = &[
    case("Flat", Metric::InnerProduct, false),
    case("SQ8", Metric::InnerProduct, false),
    case("SQ4", Metric::InnerProduct, true),
    case("SQ8lm", Metric::InnerProduct, false),
    case("PQ8", Metric::InnerProduct, false),
    case("PQ8x4fs", Metric::InnerProduct, true),
    case("OPQ8,PQ8", Metric::InnerProduct, false),
    case("OPQ8,PQ8x4fs", Metric::InnerProduct, false),
    case("IVF16,Flat", Metric::InnerProduct, false),
    case("IVF16,SQ8", Metric::InnerProduct, false),
    case("IVF16,PQ8", Metric::InnerProduct, true),
    case("IVF16,PQ8x4fs", Metric::InnerProduct, false),
    case("HNSW16", Metric::InnerProduct, false),
    case("HNSW16,SQ8", Metric::InnerProduct, false),
    case("HNSW16,PQ8", Metric::InnerProduct, true),
];

/// Each family under cosine.
const COSINE: &[Case] = &[
    case("Flat", Metric::Cosine, false),
    case("SQ8", Metric::Cosine, true),
    case("SQ4", Metric::Cosine, false),
    case("SQ4nq", Metric::Cosine, false),
    case("PQ8", Metric::Cosine, false),
    case("PQ8x4fs", Metric::Cosine, false),
    case("OPQ8,PQ8", Metric::Cosine, true),
    case("OPQ8,PQ8x4fs", Metric::Cosine, false),
    case("IVF16,Flat", Metric::Cosine, false),
    case("IVF16,SQ8", Metric::Cosine, true),
    case("IVF16,PQ8", Metric::Cosine, false),
    case("IVF16,PQ8x4fs", Metric::Cosine, false),
    case("HNSW16", Metric::Cosine, false),
    case("HNSW16,SQ8", Metric::Cosine, false),
    case("HNSW16,PQ8", Metric::Cosine, false),
];

impl Case {
    fn is_ivf(&self) -> bool {
        self.spec.starts_with("IVF")
    }

    fn is_hnsw(&self) -> bool {
        self.spec.starts_with("HNSW")
    }

    /// File name: the spec lower-cased with `,` → `_`, then the metric.
    fn file_name(&self) -> String {
        let metric = match self.metric {
            Metric::L2 => "l2",
            Metric::InnerProduct => "ip",
            Metric::Cosine => "cos",
        };
        format!(
            "{}_{metric}{}.bin",
            self.spec.to_ascii_lowercase().replace(',', "_"),
            if self.keep_raw { "_raw" } else { "" }
        )
    }

    fn build(&self) -> Box<dyn Index> {
        let d = data();
        let build = || {
            IndexBuilder::new(self.spec)
                .metric(self.metric)
                .seed(7)
                .keep_raw(self.keep_raw)
                .train_on(d.train.as_slice())
                .build(d.base.as_slice(), DIM)
                .unwrap_or_else(|e| panic!("{}: build: {e}", self.spec))
        };
        if self.is_hnsw() {
            // In order insertion: see the module docs.
            rayon::ThreadPoolBuilder::new()
                .num_threads(1)
                .build()
                .expect("a one-thread pool")
                .install(build)
        } else {
            build()
        }
    }

    /// The plain searches of this case: name → parameters.
    fn searches(&self) -> Vec<(String, SearchParams)> {
        let k = SearchParams::with_k(K);
        let mut out = vec![("k10".to_string(), k)];
        if self.is_ivf() {
            out.push(("nprobe1".into(), k.nprobe(1)));
            out.push((format!("nprobe{NLIST}"), k.nprobe(NLIST)));
        }
        if self.is_hnsw() {
            out.push(("ef16".into(), k.ef_search(16)));
            out.push(("ef128".into(), k.ef_search(128)));
        }
        if self.keep_raw {
            out.push((format!("rerank{RERANK}"), k.rerank(RERANK)));
        }
        out
    }

    /// Runs every search of this case; returns the runs and the property violations
    /// found on the way (batch ≠ single, a filtered or deleted id returned, ...).
    fn run(&self) -> (Runs, Vec<String>) {
        let d = data();
        let mut index = self.build();
        let mut problems = Vec::new();
        let mut fail = |m: String| problems.push(format!("{}: {m}", self.file_name()));
        if (index.len(), index.dim(), index.metric()) != (N_BASE, DIM, self.metric) {
            fail(format!(
                "len/dim/metric {:?}",
                (index.len(), index.dim(), index.metric())
            ));
        }
        let mut runs = Runs::new();
        // Runs one search over every query, single and batched. The batched path may
        // score with a GEMM (Flat, the OPQ rotation, IVF coarse assignment), which rounds
        // differently in the last bits; it must return the same ids in the same order
        // with distances within a few ulps, and where it is not bit-identical its results
        // are goldened too, as run `{name}@batch`.
        let search_all = |index: &dyn Index,
                          name: &str,
                          p: &SearchParams,
                          runs: &mut Runs,
                          fail: &mut dyn FnMut(String)| {
            let single: Vec<Vec<Neighbor>> = d
                .query
                .rows()
                .map(|q| {
                    index
                        .search(q, p)
                        .unwrap_or_else(|e| panic!("{} {name}: {e}", self.spec))
                })
                .collect();
            let batch = index
                .search_batch(d.query.as_slice(), p)
                .unwrap_or_else(|e| panic!("{} {name} batch: {e}", self.spec));
            if let Some(q) = (0..single.len().max(batch.len()))
                .find(|&q| !close(&single[q..=q], batch.get(q..=q).unwrap_or(&[])))
            {
                fail(format!(
                    "run `{name}`: search_batch differs from search at query {q}:\n    search {:?}\n    batch  {:?}",
                    single.get(q),
                    batch.get(q)
                ));
            }
            for hits in &single {
                if hits.len() != K {
                    fail(format!("run `{name}`: {} results, want {K}", hits.len()));
                }
            }
            if !bit_equal(&single, &batch) {
                runs.insert(format!("{name}@batch"), batch);
            }
            runs.insert(name.to_string(), single);
        };
        for (name, p) in self.searches() {
            search_all(&*index, &name, &p, &mut runs, &mut fail);
        }

        // Filtered: ids divisible by 3 (a third of the base, so every kind finds k).
        let accepted: Vec<u64> = (0..N_BASE as u64).filter(|id| id % 3 == 0).collect();
        let filter = IdFilter::from_ids(accepted);
        let p = SearchParams::with_k(K);
        let filtered: Vec<Vec<Neighbor>> = d
            .query
            .rows()
            .map(|q| {
                index
                    .search_filtered(q, &p, &filter)
                    .unwrap_or_else(|e| panic!("{} filtered: {e}", self.spec))
            })
            .collect();
        for hits in &filtered {
            if hits.len() != K || hits.iter().any(|n| n.id % 3 != 0) {
                fail(format!(
                    "run `filtered`: rejected id or short list {hits:?}"
                ));
            }
        }
        runs.insert("filtered".into(), filtered);

        // Deleted: the best hit of the first five queries and every 97th id.
        let mut gone: Vec<u64> = runs["k10"].iter().take(5).map(|h| h[0].id).collect();
        gone.extend((0..N_BASE as u64).step_by(97));
        gone.sort_unstable();
        gone.dedup();
        match index.delete(&gone) {
            Ok(n) if n == gone.len() => {}
            other => fail(format!("delete {} ids returned {other:?}", gone.len())),
        }
        if index.len() != N_BASE - gone.len() {
            fail(format!("len {} after deleting {}", index.len(), gone.len()));
        }
        search_all(&*index, "deleted_k10", &p, &mut runs, &mut fail);
        if runs["deleted_k10"]
            .iter()
            .flatten()
            .any(|n| gone.binary_search(&n.id).is_ok())
        {
            fail("run `deleted_k10` returned a deleted id".into());
        }
        (runs, problems)
    }
}

fn bit_equal(a: &[Vec<Neighbor>], b: &[Vec<Neighbor>]) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|(x, y)| {
            x.len() == y.len()
                && x.iter()
                    .zip(y)
                    .all(|(m, n)| m.id == n.id && m.distance.to_bits() == n.distance.to_bits())
        })
}

/// Same ids in the same order, distances equal up to float rounding (relative 1e-5).
fn close(a: &[Vec<Neighbor>], b: &[Vec<Neighbor>]) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|(x, y)| {
            x.len() == y.len()
                && x.iter().zip(y).all(|(m, n)| {
                    m.id == n.id
                        && (m.distance - n.distance).abs()
                            <= 1e-5 * m.distance.abs().max(n.distance.abs()).max(1.0)
                })
        })
}

/// Runs `cases` and compares (or blesses) each one's golden file; panics with every
/// difference found.
fn check(cases: &[Case]) {
    let dir = golden_io::golden_dir("tests/fixtures/golden");
    if let Err(why) = &dir {
        eprintln!("{why}: bit-exact comparison skipped, properties still checked");
    }
    let mut problems = Vec::new();
    for c in cases {
        let (runs, mut p) = c.run();
        problems.append(&mut p);
        if let Ok(dir) = &dir {
            problems.extend(golden_io::check_or_bless(&dir.join(c.file_name()), &runs));
        }
    }
    assert!(
        problems.is_empty(),
        "{} golden mismatch(es) at SIMD level {} (bless with VECQUANT_BLESS=1 only if the \
         change is meant to alter results):\n{}",
        problems.len(),
        golden_io::level_dir(),
        problems.join("\n")
    );
}

#[test]
fn golden_l2_every_kind() {
    check(L2);
}

#[test]
fn golden_inner_product_every_family() {
    check(IP);
}

#[test]
fn golden_cosine_every_family() {
    check(COSINE);
}

/// The golden file format round-trips (so a mismatch above is never the reader's fault).
#[test]
fn golden_format_round_trips() {
    let mut runs = Runs::new();
    runs.insert(
        "a".into(),
        vec![
            vec![
                Neighbor {
                    id: 3,
                    distance: -0.0,
                },
                Neighbor {
                    id: 9,
                    distance: f32::from_bits(0x7fc0_0001),
                },
            ],
            vec![],
        ],
    );
    let bytes = golden_io::encode(&runs);
    let back = golden_io::decode(&bytes).unwrap();
    assert!(golden_io::differences(&runs, &back).is_empty());
    assert!(golden_io::decode(&bytes[..bytes.len() - 1]).is_err());
    let mut other = runs.clone();
    other.get_mut("a").unwrap()[0][0].distance = 0.0;
    assert_eq!(golden_io::differences(&runs, &other).len(), 1);
}

/// Two HNSW builds in a one-thread pool serialise to the same bytes (graph, codes,
/// entry point), which is what lets the HNSW goldens above golden a *rebuilt* graph.
#[test]
fn hnsw_build_is_deterministic_in_one_thread() {
    for c in [
        case("HNSW16", Metric::L2, false),
        case("HNSW16,PQ8", Metric::InnerProduct, true),
    ] {
        let bytes = || {
            c.build()
                .to_container()
                .and_then(|w| w.to_bytes())
                .unwrap_or_else(|e| panic!("{}: {e}", c.spec))
        };
        assert!(bytes() == bytes(), "{}: two builds differ", c.spec);
    }
}
