//! Generate a data set, build an index, search it, and measure recall — in 30 lines.
//!
//! Run: `cargo run --release --features examples --example quickstart`

use vecquant::data::generate::{DataDistribution, SyntheticSpec};
use vecquant::data::groundtruth::ground_truth;
use vecquant::eval::{recall_at_1, recall_at_k};
use vecquant::index::spec::{BuildOptions, new_index};
use vecquant::prelude::*;

fn main() -> Result<()> {
    let data = SyntheticSpec {
        dim: 64,
        n_base: 20_000,
        n_query: 200,
        n_train: 5_000,
        distribution: DataDistribution::Gaussian {
            mean: 0.0,
            std: 1.0,
        },
        seed: 7,
    }
    .generate()?;
    let truth = ground_truth(&data.base, &data.query, 10, Metric::L2)?;

    let mut index = new_index("Flat", 64, &BuildOptions::default())?;
    index.train(data.train.as_slice())?;
    index.add(data.base.as_slice(), None)?;

    let results = index.search_batch(data.query.as_slice(), &SearchParams::with_k(10))?;
    println!(
        "{}: recall@1 {:.3}, 10-recall@10 {:.3}, {:.0} bytes/vector",
        index.spec(),
        recall_at_1(&results, &truth),
        recall_at_k(&results, &truth, 10),
        index.bytes_per_vector()
    );
    Ok(())
}
