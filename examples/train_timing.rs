//! Times training and encoding of a spec on a data set, single-threaded or not
//! (`cargo run --release --features examples --example train_timing -- SPEC DATA_DIR`).

use std::time::Instant;
use vecquant::data::load_dataset;
use vecquant::index::spec::{BuildOptions, new_index};

fn main() -> vecquant::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let spec = args.get(1).map_or("PQ16", String::as_str);
    let dir = args.get(2).map_or(
        "datasets/cache/gaussian-100000x128-q1000-s42",
        String::as_str,
    );
    let data = load_dataset(dir)?;
    let mut idx = new_index(spec, data.data.base.dim(), &BuildOptions::default())?;
    let t0 = Instant::now();
    idx.train(data.data.train.as_slice())?;
    let train = t0.elapsed().as_secs_f64();
    let t1 = Instant::now();
    idx.add(data.data.base.as_slice(), None)?;
    let add = t1.elapsed().as_secs_f64();
    println!(
        "{spec}: train {train:.3} s, add {add:.3} s ({} train vectors)",
        data.data.train.len()
    );
    Ok(())
}
