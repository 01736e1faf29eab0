//! Choosing the clipping range of each quantization group: min/max, a percentile, the
//! MSE-minimising shrink, or TensorRT's KL threshold (see the parent module's docs).

use rayon::prelude::*;

use super::{Clip, Granularity, GroupParams, LinearConfig, Rounding};

/// The (lo, hi) range of every group under the configured clipping.
pub(super) fn group_ranges(
    data: &[f32],
    rows: usize,
    cols: usize,
    cfg: &LinearConfig,
) -> Vec<(f32, f32)> {
    let glen = cfg.granularity.group_len(rows, cols);
    match (cfg.clip, cfg.granularity) {
        (Clip::MinMax, _) => data.par_chunks(glen).map(min_max).collect(),
        (Clip::Mse, _) => data.par_chunks(glen).map(|g| mse_range(g, cfg)).collect(),
        (Clip::Percentile(p), Granularity::Tensor | Granularity::Row) => data
            .par_chunks(glen)
            .map(|g| percentile_range(g, p, cfg.symmetric))
            .collect(),
        (Clip::Kl, Granularity::Tensor | Granularity::Row) => data
            .par_chunks(glen)
            .map(|g| {
                let (lo, hi) = min_max(g);
                let t = kl_ratio(g, cfg.bits);
                (lo * t, hi * t)
            })
            .collect(),
        (clip, Granularity::Group(gl)) => {
            // Ratio per row over values normalised by their group's max |x|, then applied
            // to every group of the row.
            data.par_chunks(cols)
                .flat_map_iter(|row| {
                    let normalised: Vec<f32> = row
                        .chunks(gl)
                        .flat_map(|g| {
                            let a = g.iter().fold(0f32, |m, v| m.max(v.abs()));
                            let inv = if a > 0.0 { 1.0 / a } else { 0.0 };
                            g.iter().map(move |v| v * inv)
                        })
                        .collect();
                    let t = match clip {
                        Clip::Percentile(p) => {
                            let (lo, hi) = percentile_range(&normalised, p, true);
                            lo.abs().max(hi.abs()).clamp(f32::MIN_POSITIVE, 1.0)
                        }
                        _ => kl_ratio(&normalised, cfg.bits),
                    };
                    row.chunks(gl)
                        .map(|g| {
                            let (lo, hi) = min_max(g);
                            (lo * t, hi * t)
                        })
                        .collect::<Vec<_>>()
                })
                .collect()
        }
    }
}

fn min_max(g: &[f32]) -> (f32, f32) {
    g.iter()
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &v| {
            (lo.min(v), hi.max(v))
        })
}

/// Linear-interpolated percentile `p` (0..=100) of `v` (sorted in place).
fn percentile_sorted(v: &[f32], p: f32) -> f32 {
    let pos = (p as f64 / 100.0) * (v.len() - 1) as f64;
    let i = pos.floor() as usize;
    let frac = (pos - i as f64) as f32;
    if i + 1 < v.len() {
        v[i] + frac * (v[i + 1] - v[i])
    } else {
        v[i]
    }
}

fn percentile_range(g: &[f32], p: f32, symmetric: bool) -> (f32, f32) {
    if symmetric {
        let mut a: Vec<f32> = g.iter().map(|v| v.abs()).collect();
        a.sort_unstable_by(f32::total_cmp);
        let t = percentile_sorted(&a, p);
        (-t, t)
    } else {
        let mut s = g.to_vec();
        s.sort_unstable_by(f32::total_cmp);
        (percentile_sorted(&s, 100.0 - p), percentile_sorted(&s, p))
    }
}

/// Squared error of quantizing `g` with the range (lo, hi) at nearest rounding.
fn sq_error(g: &[f32], cfg: &LinearConfig, lo: f32, hi: f32) -> f64 {
    let p = GroupParams::new(cfg, lo, hi);
    g.iter()
        .map(|&x| {
            let e = x - p.decode(cfg, p.code(cfg, x, Rounding::Nearest, 0.0));
            (e * e) as f64
        })
        .sum()
}

/// Grid search over range shrinks `t = 0.97^i` (1 down to ~0.01, 150 steps; GPTQ searches
/// linearly down to 0.2, which misses the optimum of heavy-tailed tensors), keeping the `t`
/// with the smallest squared error. Large groups are scored on a strided sample of 65,536
/// values.
fn mse_range(g: &[f32], cfg: &LinearConfig) -> (f32, f32) {
    const SAMPLE: usize = 65_536;
    let (lo, hi) = min_max(g);
    let sample: Vec<f32>;
    let scored = if g.len() > SAMPLE {
        let stride = g.len() / SAMPLE;
        sample = g.iter().step_by(stride).copied().collect();
        &sample[..]
    } else {
        g
    };
    let mut best = (sq_error(scored, cfg, lo, hi), 1.0f32);
    let mut t = 1.0f32;
    for _ in 1..150 {
        t *= 0.97;
        let e = sq_error(scored, cfg, lo * t, hi * t);
        if e < best.0 {
            best = (e, t);
        }
    }
    (lo * best.1, hi * best.1)
}

/// TensorRT entropy calibration: the clipping ratio (threshold / max|x|) minimising
/// KL(P‖Q) between the histogram of |x| clipped at the threshold and that histogram
/// quantized to the code levels available on one side of zero.
fn kl_ratio(g: &[f32], bits: u32) -> f32 {
    const BINS: usize = 2048;
    let amax = g.iter().fold(0f32, |m, v| m.max(v.abs()));
    if amax == 0.0 || g.len() < 16 {
        return 1.0;
    }
    let mut hist = vec![0f64; BINS];
    let w = amax / BINS as f32;
    for &v in g {
        let b = ((v.abs() / w) as usize).min(BINS - 1);
        hist[b] += 1.0;
    }
    // Levels on one side of zero: 2^(b-1) in both cases (an asymmetric range spends about
    // half of its 2^b codes on each side of zero).
    let levels = 1usize << (bits - 1);
    let mut best = (f64::INFINITY, BINS);
    let step = (BINS / 128).max(1);
    let mut i = levels.max(step);
    let mut p = vec![0f64; BINS];
    let mut q = vec![0f64; BINS];
    while i <= BINS {
        // Reference distribution: bins [0, i) with the tail folded into the last bin.
        p[..i].copy_from_slice(&hist[..i]);
        p[i - 1] += hist[i..].iter().sum::<f64>();
        // Quantized distribution: merge i bins into `levels` groups, spread each group's
        // mass evenly over its non-empty bins.
        for l in 0..levels {
            let a = l * i / levels;
            let b = ((l + 1) * i / levels).max(a + 1);
            let mass: f64 = hist[a..b].iter().sum();
            let nz = hist[a..b].iter().filter(|&&c| c > 0.0).count();
            for j in a..b {
                q[j] = if hist[j] > 0.0 { mass / nz as f64 } else { 0.0 };
            }
        }
        let ps: f64 = p[..i].iter().sum();
        let qs: f64 = q[..i].iter().sum();
        let mut kl = 0.0;
        for j in 0..i {
            if p[j] > 0.0 {
                let pj = p[j] / ps;
                let qj = if q[j] > 0.0 { q[j] / qs } else { 1e-12 };
                kl += pj * (pj / qj).ln();
            }
        }
        if kl < best.0 {
            best = (kl, i);
        }
        i += step;
    }
    ((best.1 as f32 + 0.5) / BINS as f32).min(1.0)
}
