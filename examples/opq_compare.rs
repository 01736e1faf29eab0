//! OPQ recall against FAISS on the same files (`benches/opq_faiss.py` is the FAISS side).
//!
//! `cargo run --features examples --example opq_compare -- gen OUT_DIR` writes two 128-d data sets with
//! 100,000 training, 100,000 base and 1,000 query vectors and top-100 ground truth:
//! - `OUT_DIR/spectrum`: a decaying spectrum under a random rotation — independent
//!   N(0, σ_j²) components with σ_j = e^{−j/32}, then a seeded random orthogonal
//!   rotation, so the variance is spread unevenly and mixed across all dimensions
//!   (what OPQ is for);
//! - `OUT_DIR/mixture`: 64 Gaussian clusters, centres N(0, 1), spread 0.3 (the CLI's
//!   `gen mixture` defaults).
//!
//! `cargo run --features examples --example opq_compare -- run DATA_DIR [SEEDS] [SPEC]` trains `SPEC`
//! (default `OPQ16,PQ16`) with training seeds 0..SEEDS (default 3), adds the base set
//! and prints recall@10 and the training time per seed and their mean.
//!
//! `cargo run --features examples --example opq_compare -- rotation DATA_DIR [SEED] [OUT.fvecs]` learns
//! the `OPQ16` rotation alone (FAISS's settings), prints the PQ distortion of every
//! alternation and writes `R` (row `i` = row `i` of the row-major matrix; rotated =
//! `x · R`), so that `benches/opq_faiss.py` can train FAISS's PQ behind it.

use std::path::Path;
use std::time::Instant;

use faer::Mat;
use rand_distr::{Distribution, StandardNormal};
use vecquant::data::dataset::{load_dataset, write_dataset};
use vecquant::data::generate::{DataDistribution, Dataset, SyntheticSpec};
use vecquant::eval::recall_at_k;
use vecquant::index::{Index, Product, SearchParams};
use vecquant::quant::opq::{OpqTraining, train_opq};
use vecquant::{Error, Metric, Result, VectorSet};

const DIM: usize = 128;
const N_TRAIN: usize = 100_000;
const N_BASE: usize = 100_000;
const N_QUERY: usize = 1_000;
/// e-folding length of the spectrum, in dimensions.
const TAU: f64 = 32.0;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: opq_compare gen OUT_DIR | run DATA_DIR [SEEDS] [SPEC] \
                 | rotation DATA_DIR [SEED] [OUT.fvecs]";
    match (args.get(1).map(String::as_str), args.get(2)) {
        (Some("gen"), Some(out)) => generate(Path::new(out)),
        (Some("run"), Some(dir)) => {
            let seeds = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(3);
            let spec = args.get(4).map_or("OPQ16,PQ16", String::as_str);
            run(Path::new(dir), seeds, spec)
        }
        (Some("rotation"), Some(dir)) => {
            let seed = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(0);
            let out = args.get(4).map_or("rotation.fvecs", String::as_str);
            rotation(Path::new(dir), seed, Path::new(out))
        }
        _ => Err(Error::param("arguments", usage)),
    }
}

fn generate(out: &Path) -> Result<()> {
    let t = Instant::now();
    let rotation = random_orthogonal(DIM, 42);
    let spectrum = Dataset {
        train: spectrum_split(N_TRAIN, &rotation, 1)?,
        base: spectrum_split(N_BASE, &rotation, 2)?,
        query: spectrum_split(N_QUERY, &rotation, 3)?,
    };
    write_dataset(out.join("spectrum"), &spectrum, Metric::L2)?;
    let mixture = SyntheticSpec {
        dim: DIM,
        n_base: N_BASE,
        n_query: N_QUERY,
        n_train: N_TRAIN,
        distribution: DataDistribution::Mixture {
            clusters: 64,
            spread: 0.3,
        },
        seed: 7,
    }
    .generate()?;
    write_dataset(out.join("mixture"), &mixture, Metric::L2)?;
    println!(
        "wrote {0}/spectrum and {0}/mixture in {1:.1} s",
        out.display(),
        t.elapsed().as_secs_f64()
    );
    Ok(())
}

/// `n` rows of `z · Q`, `z_j ~ N(0, e^{−2j/τ})`, `Q` the given orthogonal matrix.
fn spectrum_split(n: usize, q: &[f64], split: u64) -> Result<VectorSet> {
    let mut rng = stream(7, split);
    let sigma: Vec<f64> = (0..DIM).map(|j| (-(j as f64) / TAU).exp()).collect();
    let mut data = Vec::with_capacity(n * DIM);
    let mut z = vec![0.0f64; DIM];
    for _ in 0..n {
        for (zj, s) in z.iter_mut().zip(&sigma) {
            let g: f64 = StandardNormal.sample(&mut rng);
            *zj = g * s;
        }
        data.extend((0..DIM).map(|c| (0..DIM).map(|j| z[j] * q[j * DIM + c]).sum::<f64>() as f32));
    }
    VectorSet::new(data, DIM)
}

/// A seeded Haar-random orthogonal matrix (row-major): Q of the QR of a Gaussian
/// matrix, columns' signs fixed by R's diagonal.
fn random_orthogonal(d: usize, seed: u64) -> Vec<f64> {
    let mut rng = stream(seed, 0);
    let g = Mat::<f64>::from_fn(d, d, |_, _| StandardNormal.sample(&mut rng));
    let qr = g.qr();
    let (q, r) = (qr.compute_Q(), qr.R());
    let mut out = vec![0.0; d * d];
    for j in 0..d {
        let s = if r[(j, j)] < 0.0 { -1.0 } else { 1.0 };
        for i in 0..d {
            out[i * d + j] = s * q[(i, j)];
        }
    }
    out
}

fn rotation(dir: &Path, seed: u64, out: &Path) -> Result<()> {
    let data = load_dataset(dir)?;
    let train = &data.data.train;
    let d = train.dim();
    let t = Instant::now();
    let opq = train_opq(train.as_slice(), d, 16, seed, &OpqTraining::default())?;
    let secs = t.elapsed().as_secs_f64();
    for (i, o) in opq.objective().iter().enumerate() {
        println!("alternation {i}: PQ distortion {o:.5}");
    }
    println!("{} OPQ16 rotation, seed {seed}: {secs:.1} s", data.name);
    vecquant::data::vecs::write_fvecs(out, &VectorSet::new(opq.into_rotation(), d)?)
}

fn run(dir: &Path, seeds: u64, spec: &str) -> Result<()> {
    let data = load_dataset(dir)?;
    let (train, base, query) = (&data.data.train, &data.data.base, &data.data.query);
    let d = base.dim();
    let params = SearchParams::new(10);
    let (mut recalls, mut times) = (Vec::new(), Vec::new());
    for seed in 0..seeds {
        let mut idx = Product::new(spec, d, Metric::L2, false, seed)?;
        let t = Instant::now();
        idx.train(train.as_slice())?;
        let secs = t.elapsed().as_secs_f64();
        idx.add(base.as_slice(), None)?;
        let found = idx.search_batch(query.as_slice(), &params)?;
        let recall = recall_at_k(&found, &data.gt, 10);
        println!(
            "{} {spec} seed {seed}: recall@10 {recall:.4}, training {secs:.1} s",
            data.name
        );
        recalls.push(recall);
        times.push(secs);
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    println!(
        "{} {spec} over {seeds} seeds: recall@10 {:.4}, training {:.1} s",
        data.name,
        mean(&recalls),
        mean(&times)
    );
    Ok(())
}

/// The crate's seeded stream (`vecquant::rng::stream`, crate-private): SplitMix64-mixed
/// (seed, stream) into Xoshiro256++, so the data sets match earlier runs.
fn stream(seed: u64, stream: u64) -> rand_xoshiro::Xoshiro256PlusPlus {
    use rand::SeedableRng;
    fn splitmix64(mut z: u64) -> u64 {
        z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    let mixed = splitmix64(seed ^ splitmix64(stream.wrapping_add(0x9E37_79B9_7F4A_7C15)));
    rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(mixed)
}
