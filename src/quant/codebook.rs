//! One-dimensional codebooks: a sorted set of reconstruction levels and the nearest-level
//! encoder that goes with it.
//!
//! A [`Codebook`] is the shared currency between the vector quantizers and the
//! model-weight pipeline: the scalar quantizer applies one after a per-dimension affine
//! normalisation, and weight schemes (NF4, FP4/FP8 grids, k-means levels) produce them.
//!
//! ```
//! use vecquant::quant::codebook::Codebook;
//! let nf4 = Codebook::nf4();
//! assert_eq!(nf4.len(), 16);
//! assert_eq!(nf4.decode(nf4.encode(0.0)), 0.0); // NF4 has an exact zero
//! let u = Codebook::uniform(256).unwrap();
//! assert_eq!(u.encode(0.25), 64); // nearest of i / 255
//! ```

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::rng::{RngExt, seeded};

/// The 16 NormalFloat-4 levels published with QLoRA (Dettmers et al. 2023, Appendix E;
/// bitsandbytes' `NF4` table): asymmetric around an exact zero, in `[-1, 1]`.
pub const NF4_LEVELS: [f32; 16] = [
    -1.0,
    -0.696_192_8,
    -0.525_073_05,
    -0.394_917_5,
    -0.284_441_38,
    -0.184_773_43,
    -0.091_050_036,
    0.0,
    0.079_580_3,
    0.160_930_2,
    0.246_112_3,
    0.337_915_24,
    0.440_709_83,
    0.562_617,
    0.722_956_84,
    1.0,
];

/// Most levels a codebook may hold (codes are one byte).
pub const MAX_LEVELS: usize = 256;

/// A sorted set of 2..=256 distinct finite levels.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Codebook {
    levels: Vec<f32>,
    /// Decision thresholds: midpoints between neighbouring levels (`len - 1` of them).
    thresholds: Vec<f32>,
}

impl Codebook {
    /// A codebook with the given levels (sorted here; must be finite and distinct).
    pub fn new(mut levels: Vec<f32>) -> Result<Self> {
        if levels.len() < 2 || levels.len() > MAX_LEVELS {
            return Err(Error::param(
                "codebook",
                format!("needs 2..={MAX_LEVELS} levels, got {}", levels.len()),
            ));
        }
        if let Some(i) = levels.iter().position(|v| !v.is_finite()) {
            return Err(Error::param(
                "codebook",
                format!("level {i} is not finite ({})", levels[i]),
            ));
        }
        levels.sort_by(f32::total_cmp);
        if let Some(w) = levels.windows(2).find(|w| w[0] == w[1]) {
            return Err(Error::param(
                "codebook",
                format!("level {} appears twice", w[0]),
            ));
        }
        let thresholds = levels.windows(2).map(|w| 0.5 * (w[0] + w[1])).collect();
        Ok(Codebook { levels, thresholds })
    }

    /// `n` evenly spaced levels `i / (n - 1)` in `[0, 1]`.
    pub fn uniform(n: usize) -> Result<Self> {
        if n < 2 {
            return Err(Error::param(
                "levels",
                "a uniform codebook needs at least 2 levels",
            ));
        }
        Self::new((0..n).map(|i| i as f32 / (n - 1) as f32).collect())
    }

    /// The published NF4 levels ([`NF4_LEVELS`]).
    pub fn nf4() -> Self {
        Self::new(NF4_LEVELS.to_vec()).expect("NF4 table is valid")
    }

    /// `n` normal quantiles: level `i` is Φ⁻¹((i + ½)/n), the NormalFloat idea (equal
    /// probability mass per level for a standard normal input) for any `n`, scaled so the
    /// outermost levels are ±1.
    pub fn normal_quantile(n: usize) -> Result<Self> {
        if !(2..=MAX_LEVELS).contains(&n) {
            return Err(Error::param(
                "levels",
                format!("needs 2..={MAX_LEVELS} levels, got {n}"),
            ));
        }
        let raw: Vec<f64> = (0..n)
            .map(|i| inverse_normal_cdf((i as f64 + 0.5) / n as f64))
            .collect();
        let m = raw[n - 1];
        Self::new(raw.iter().map(|&v| (v / m) as f32).collect())
    }

    /// Lloyd-Max levels: the `n`-level scalar quantizer minimising the mean squared error
    /// on `sample` (1-D k-means, solved exactly per iteration on the sorted sample with
    /// prefix sums). At most `max_sample` values are used, drawn with `seed`; non-finite
    /// values are an error.
    pub fn lloyd_max(sample: &[f32], n: usize, max_sample: usize, seed: u64) -> Result<Self> {
        if !(2..=MAX_LEVELS).contains(&n) {
            return Err(Error::param(
                "levels",
                format!("needs 2..={MAX_LEVELS} levels, got {n}"),
            ));
        }
        if let Some(i) = sample.iter().position(|v| !v.is_finite()) {
            return Err(Error::NonFinite {
                context: "codebook training sample".into(),
                row: i,
                col: 0,
                value: sample[i],
            });
        }
        let mut xs: Vec<f64> = if sample.len() > max_sample.max(n) {
            let mut rng = seeded(seed);
            (0..max_sample.max(n))
                .map(|_| sample[rng.random_range(0..sample.len())] as f64)
                .collect()
        } else {
            sample.iter().map(|&v| v as f64).collect()
        };
        xs.sort_by(f64::total_cmp);
        // Run-length encode: distinct values with their multiplicities.
        let mut vals: Vec<f64> = Vec::with_capacity(xs.len());
        let mut weights: Vec<f64> = Vec::with_capacity(xs.len());
        for &x in &xs {
            if vals.last() == Some(&x) {
                *weights.last_mut().expect("non-empty") += 1.0;
            } else {
                vals.push(x);
                weights.push(1.0);
            }
        }
        if vals.len() < n {
            return Err(Error::param(
                "levels",
                format!(
                    "{n} levels need at least {n} distinct training values, got {}",
                    vals.len()
                ),
            ));
        }
        let levels = lloyd_sorted(&vals, &weights, n);
        Self::new(levels.iter().map(|&v| v as f32).collect())
    }

    /// Number of levels.
    #[allow(clippy::len_without_is_empty)]
    pub fn len(&self) -> usize {
        self.levels.len()
    }

    /// The levels, ascending.
    pub fn levels(&self) -> &[f32] {
        &self.levels
    }

    /// The decision thresholds (midpoints), ascending.
    pub fn thresholds(&self) -> &[f32] {
        &self.thresholds
    }

    /// Index of the nearest level (values beyond the ends map to the end levels; a tie
    /// goes to the upper level; NaN maps to the lowest level — callers reject NaN first).
    #[inline]
    pub fn encode(&self, x: f32) -> u8 {
        self.thresholds.partition_point(|&t| t <= x) as u8
    }

    /// The level of `code` (codes past the end clamp to the last level).
    #[inline]
    pub fn decode(&self, code: u8) -> f32 {
        self.levels[(code as usize).min(self.levels.len() - 1)]
    }

    /// Mean squared error of quantizing `xs` with this codebook.
    pub fn mse(&self, xs: &[f32]) -> f64 {
        if xs.is_empty() {
            return 0.0;
        }
        xs.iter()
            .map(|&x| {
                let d = (x - self.decode(self.encode(x))) as f64;
                d * d
            })
            .sum::<f64>()
            / xs.len() as f64
    }
}

/// Lloyd iterations on sorted distinct values `xs` with weights `w`.
fn lloyd_sorted(xs: &[f64], w: &[f64], n: usize) -> Vec<f64> {
    let len = xs.len();
    let mut cw = vec![0.0f64; len + 1];
    let mut cx = vec![0.0f64; len + 1];
    for i in 0..len {
        cw[i + 1] = cw[i] + w[i];
        cx[i + 1] = cx[i] + w[i] * xs[i];
    }
    // Start from the asymptotically optimal point density ∝ p^(1/3) (Panter-Dite),
    // estimated with a histogram; Lloyd iterations then converge in few steps even at
    // 256 levels, where starting from plain quantiles leaves the tails starved.
    let mut levels = compander_init(xs, w, n);
    dedup_levels(&mut levels, xs);
    let mut bounds = vec![0usize; n + 1];
    for _ in 0..1000 {
        bounds[0] = 0;
        bounds[n] = len;
        for i in 1..n {
            let t = 0.5 * (levels[i - 1] + levels[i]);
            bounds[i] = xs.partition_point(|&x| x < t);
        }
        let mut moved = 0.0f64;
        for i in 0..n {
            let (a, b) = (bounds[i], bounds[i + 1]);
            let wsum = cw[b] - cw[a];
            if wsum > 0.0 {
                let c = (cx[b] - cx[a]) / wsum;
                moved = moved.max((c - levels[i]).abs());
                levels[i] = c;
            }
        }
        let span = (xs[len - 1] - xs[0]).max(f64::MIN_POSITIVE);
        if moved <= 1e-9 * span {
            break;
        }
    }
    dedup_levels(&mut levels, xs);
    levels
}

/// Levels at the quantiles of the density ∝ p^(1/3), p estimated by a histogram.
fn compander_init(xs: &[f64], w: &[f64], n: usize) -> Vec<f64> {
    let (a, b) = (xs[0], xs[xs.len() - 1]);
    let bins = (n * 16).max(1024);
    let width = (b - a) / bins as f64;
    let mut hist = vec![0.0f64; bins];
    for (&x, &wt) in xs.iter().zip(w) {
        let i = (((x - a) / width) as usize).min(bins - 1);
        hist[i] += wt;
    }
    let dens: Vec<f64> = hist.iter().map(|&h| h.cbrt()).collect();
    let total: f64 = dens.iter().sum();
    let mut levels = Vec::with_capacity(n);
    let mut acc = 0.0;
    let mut bin = 0;
    for i in 0..n {
        let target = (i as f64 + 0.5) / n as f64 * total;
        while bin < bins - 1 && acc + dens[bin] < target {
            acc += dens[bin];
            bin += 1;
        }
        let frac = if dens[bin] > 0.0 {
            ((target - acc) / dens[bin]).clamp(0.0, 1.0)
        } else {
            0.5
        };
        levels.push(a + (bin as f64 + frac) * width);
    }
    levels
}

/// Makes levels strictly increasing (an empty cell can leave two equal levels) by
/// nudging duplicates to the next distinct sample value.
fn dedup_levels(levels: &mut [f64], xs: &[f64]) {
    for i in 1..levels.len() {
        if levels[i] <= levels[i - 1] {
            let j = xs.partition_point(|&x| x <= levels[i - 1]);
            levels[i] = if j < xs.len() {
                xs[j]
            } else {
                levels[i - 1] + (levels[i - 1].abs() + 1.0) * 1e-6
            };
        }
    }
}

/// Φ⁻¹(p), the standard normal quantile (Acklam's rational approximation, relative error
/// below 1.2·10⁻⁹, refined by one Halley step). `p` must lie in (0, 1).
pub fn inverse_normal_cdf(p: f64) -> f64 {
    const A: [f64; 6] = [
        -3.969_683_028_665_376e1,
        2.209_460_984_245_205e2,
        -2.759_285_104_469_687e2,
        1.383_577_518_672_69e2,
        -3.066_479_806_614_716e1,
        2.506_628_277_459_239,
    ];
    const B: [f64; 5] = [
        -5.447_609_879_822_406e1,
        1.615_858_368_580_409e2,
        -1.556_989_798_598_866e2,
        6.680_131_188_771_972e1,
        -1.328_068_155_288_572e1,
    ];
    const C: [f64; 6] = [
        -7.784_894_002_430_293e-3,
        -3.223_964_580_411_365e-1,
        -2.400_758_277_161_838,
        -2.549_732_539_343_734,
        4.374_664_141_464_968,
        2.938_163_982_698_783,
    ];
    const D: [f64; 4] = [
        7.784_695_709_041_462e-3,
        3.224_671_290_700_398e-1,
        2.445_134_137_142_996,
        3.754_408_661_907_416,
    ];
    let p_low = 0.02425;
    if p <= p_low {
        let q = (-2.0 * p.ln()).sqrt();
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    } else if p <= 1.0 - p_low {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    } else {
        -inverse_normal_cdf(1.0 - p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::generate::gaussian;

    #[test]
    fn nf4_matches_published_table() {
        let c = Codebook::nf4();
        assert_eq!(c.levels(), &NF4_LEVELS);
        assert_eq!(c.levels()[7], 0.0);
        assert_eq!(c.levels()[0], -1.0);
        assert_eq!(c.levels()[15], 1.0);
    }

    #[test]
    fn encode_is_nearest_level() {
        let c = Codebook::new(vec![-1.0, 0.0, 0.5, 2.0]).unwrap();
        for (x, want) in [
            (-9.0, 0u8),
            (-0.6, 0),
            (-0.4, 1),
            (0.3, 2),
            (1.3, 3),
            (9.0, 3),
        ] {
            assert_eq!(c.encode(x), want, "x = {x}");
        }
        let xs: Vec<f32> = (0..1000).map(|i| i as f32 / 100.0 - 5.0).collect();
        for &x in &xs {
            let got = c.decode(c.encode(x));
            let best = c
                .levels()
                .iter()
                .map(|&l| (l - x).abs())
                .fold(f32::INFINITY, f32::min);
            assert!(((got - x).abs() - best).abs() < 1e-6);
        }
    }

    #[test]
    fn rejects_bad_levels() {
        assert!(Codebook::new(vec![1.0]).is_err());
        assert!(Codebook::new(vec![1.0, 1.0]).is_err());
        assert!(Codebook::new(vec![0.0, f32::NAN]).is_err());
        assert!(Codebook::new(vec![0.0; 257]).is_err());
        assert!(Codebook::uniform(1).is_err());
        assert!(Codebook::lloyd_max(&[1.0, 2.0], 4, 100, 0).is_err());
        assert!(Codebook::lloyd_max(&[1.0, f32::INFINITY], 2, 100, 0).is_err());
    }

    #[test]
    fn inverse_normal_cdf_known_values() {
        assert!(inverse_normal_cdf(0.5).abs() < 1e-12);
        assert!((inverse_normal_cdf(0.975) - 1.959_963_984_540_054).abs() < 1e-8);
        assert!((inverse_normal_cdf(0.001) + 3.090_232_306_167_813).abs() < 1e-8);
    }

    /// Published Lloyd-Max MSE for a unit Gaussian (Max 1960): 0.1175 at 4 levels,
    /// 0.03454 at 8, 0.009497 at 16.
    #[test]
    fn lloyd_max_reaches_published_gaussian_distortion() {
        let v = gaussian(200_000, 1, 0.0, 1.0, 3).unwrap();
        let xs = v.as_slice();
        for (n, want) in [(4usize, 0.1175f64), (8, 0.03454), (16, 0.009497)] {
            let c = Codebook::lloyd_max(xs, n, 1 << 20, 1).unwrap();
            let got = c.mse(xs);
            assert!((got / want - 1.0).abs() < 0.03, "n={n}: {got} vs {want}");
        }
        // Deterministic under the seed.
        let a = Codebook::lloyd_max(xs, 16, 50_000, 9).unwrap();
        let b = Codebook::lloyd_max(xs, 16, 50_000, 9).unwrap();
        assert_eq!(a, b);
    }
}
