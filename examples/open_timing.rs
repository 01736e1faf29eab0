//! Time to open a saved index and answer its first query, with and without checksum
//! verification — the container's memory-mapped sections make the unverified open
//! independent of the data size.
//!
//! ```text
//! cargo run --release --features examples --example open_timing -- INDEX.vq [QUERIES.fvecs]
//! ```

use std::time::Instant;

use vecquant::index::{self, SearchParams};
use vecquant::store::{Container, OpenOptions};

fn main() -> Result<(), vecquant::Error> {
    let mut args = std::env::args().skip(1);
    let Some(path) = args.next() else {
        eprintln!("usage: open_timing INDEX.vq [QUERIES.fvecs]");
        std::process::exit(2);
    };
    let query = match args.next() {
        Some(q) => vecquant::data::read_vectors(q)?.row(0).to_vec(),
        None => Vec::new(),
    };
    for verify in [false, true] {
        // Best of 5 opens (the page cache is warm after the first).
        let mut best = f64::INFINITY;
        let mut first_hit = 0.0;
        for _ in 0..5 {
            let t0 = Instant::now();
            let c = Container::open_with(
                &path,
                OpenOptions {
                    verify_checksums: verify,
                },
            )?;
            let idx = index::from_container(&c)?;
            let opened = t0.elapsed().as_secs_f64();
            let q = if query.is_empty() {
                vec![0.0; idx.dim()]
            } else {
                query.clone()
            };
            let hits = idx.search(&q, &SearchParams::with_k(1))?;
            let total = t0.elapsed().as_secs_f64();
            if opened < best {
                best = opened;
                first_hit = total;
            }
            assert!(!hits.is_empty());
        }
        println!(
            "{path}: verify_checksums={verify}: open {:.3} ms, open + first search {:.3} ms",
            best * 1e3,
            first_hit * 1e3
        );
    }
    Ok(())
}
