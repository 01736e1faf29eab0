//! Peak memory of saving a large `Flat` index: builds `n × d` Gaussian vectors (default
//! 1,000,000 × 128) chunk by chunk, so building never holds a second copy, then saves the
//! index and prints the resident-set peak of the save itself (Linux: `VmHWM` after
//! resetting it through `/proc/self/clear_refs`) next to the index's own size.
//!
//! ```text
//! /usr/bin/time -v cargo run --features examples --example save_rss -- [N] [D] [PATH]
//! ```
//!
//! "Maximum resident set size" from `/usr/bin/time -v` minus the printed index bytes is
//! the extra memory saving needs (the build's peak is the index plus one chunk).

use vecquant::data::generate::gaussian;
use vecquant::prelude::*;

/// `VmRSS` and `VmHWM` of this process in bytes (zero where `/proc` is missing).
fn rss() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let n: usize = args
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let d: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(128);
    let path = args
        .next()
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("vecquant_save_rss.vq"));

    let mut index = Flat::new(d, Metric::L2);
    let chunk = 50_000;
    for (i, start) in (0..n).step_by(chunk).enumerate() {
        let rows = chunk.min(n - start);
        let v = gaussian(rows, d, 0.0, 1.0, 1 + i as u64)?;
        index.add(v.as_slice(), None)?;
    }
    let data = index.memory_bytes() as u64;
    // Reset the peak so VmHWM below measures the save alone (Linux ≥ 4.0).
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let (before, _) = rss();
    index.save(&path)?;
    let (_, peak) = rss();
    let mb = |b: u64| b as f64 / (1 << 20) as f64;
    println!("index  {n} x {d} Flat, {:.1} MB in memory", mb(data));
    println!("rss    {:.1} MB before save", mb(before));
    println!(
        "peak   {:.1} MB during save: {:.1} MB above the RSS before it",
        mb(peak),
        mb(peak.saturating_sub(before))
    );
    println!(
        "file   {} ({:.1} MB)",
        path.display(),
        mb(std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0))
    );
    std::fs::remove_file(&path).map_err(|e| Error::io(&path, e))?;
    Ok(())
}
