//! One query's prepared state: the rotated query, its target for the current list, and
//! the target quantized to [`QUERY_BITS`] bit planes; the estimators over one code.

use super::code::{self, factor, plane_bytes};
use super::{QUERY_BITS, RaBitQ, Rounding};
use crate::kernels::bits;
use crate::kernels::bits_ext::PlaneLut;
use crate::metric::Metric;

/// Standard deviations of the estimators' errors a multi-bit scan allows between a
/// row's 1-bit and full estimates before it skips the full one (see
/// [`RaBitQ::refine_margin`]). Chosen so the refined scan returns what scoring every row
/// with the full estimate returns (test `item3_refined_scan_equals_full_scan`).
pub const REFINE_SIGMAS: f32 = 2.5;

/// `1/√12`: the standard deviation of a uniform rounding error over a unit step.
const QUANT_SIGMA: f32 = 0.288_675_13;

/// One query's scan state (see [`RaBitQ::estimate`]).
#[derive(Default)]
pub struct RabitqQuery {
    /// `R q`.
    pub(crate) rq: Vec<f32>,
    /// `⟨q, c⟩` (the codec's centroid).
    pub(crate) q_dot_mean: f32,
    /// The rotated target `t = R q'` of the current list.
    pub(crate) t: Vec<f32>,
    /// `‖t‖²`.
    pub(crate) t_norm2: f32,
    /// `Σ t_i` (float).
    pub(crate) t_sum: f32,
    /// The quantized target: `t̄_i = lo + delta · u_i`, `u_i` in bit planes.
    pub(crate) lo: f32,
    pub(crate) delta: f32,
    /// `Σ t̄_i`.
    pub(crate) tq_sum: f32,
    pub(crate) planes: Vec<u64>,
    /// The quantized target's codes `u_i`, one byte per dimension (fast-scan tables).
    pub(crate) qu: Vec<u8>,
    /// Words per plane.
    pub(crate) words: usize,
    /// Inner product and cosine: the constant `⟨q, c⟩ + ⟨q, list centroid⟩`.
    pub(crate) konst: f32,
    /// Scratch of a batch scan: sign planes of a chunk of rows, and their products.
    pub(crate) batch: Vec<u64>,
    pub(crate) ips: Vec<u32>,
    /// Nibble tables of `t` for the full code's bit planes (`bits ≥ 2`).
    pub(crate) lut: PlaneLut,
    /// Plane weights of the full code: `2^(b−1)` for the sign plane, `2^(p−1)` for
    /// extra plane `p`.
    pub(crate) weights: Vec<f32>,
    /// Rows a multi-bit scan has scored with the full code (since the query began).
    pub(crate) refined: u64,
}

/// Estimates of `⟨r, q'⟩` for one code (`r` the vector minus the centroid, `q'` the
/// current target), with their error bounds (`|⟨r, q'⟩ − estimate| ≤ bound` with high
/// probability, up to the query's quantization for the 1-bit one).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Estimate {
    /// From the sign plane and the quantized query.
    pub ip1: f32,
    /// Its bound.
    pub bound1: f32,
    /// From the full code (equal to `ip1` for 1-bit codes).
    pub ip: f32,
    /// Its bound.
    pub bound: f32,
}

/// Factor `k` of a row's factor bytes.
#[inline]
fn fk(f: &[u8], k: usize) -> f32 {
    f32::from_le_bytes([f[4 * k], f[4 * k + 1], f[4 * k + 2], f[4 * k + 3]])
}

/// A 64-bit hash of a vector's bits (the seed of randomized rounding).
fn hash_of(t: &[f32]) -> u64 {
    t.iter().fold(0x9E37_79B9_7F4A_7C15u64, |h, v| {
        crate::rng::splitmix64(h ^ u64::from(v.to_bits()))
    })
}

impl RaBitQ {
    /// Rotates the query (once per query).
    pub(crate) fn prepare_query(&self, s: &mut RabitqQuery, q: &[f32]) {
        let d = self.dim;
        s.rq.resize(d, 0.0);
        crate::linalg::gemm_abt(q, &self.rot, d, &mut s.rq);
        s.q_dot_mean = crate::kernels::dot(q, &self.mean);
        s.words = d.div_ceil(64);
        s.refined = 0;
    }

    /// Sets the target `t` (rotated, `d` values, already in `s.t`) and quantizes it.
    pub(crate) fn quantize_target(&self, s: &mut RabitqQuery) {
        let d = self.dim;
        let levels = ((1u32 << QUERY_BITS) - 1) as f32;
        let (mut lo, mut hi) = (f32::INFINITY, f32::NEG_INFINITY);
        let (mut n2, mut sum) = (0.0f32, 0.0f32);
        for &v in &s.t {
            lo = lo.min(v);
            hi = hi.max(v);
            n2 += v * v;
            sum += v;
        }
        s.t_norm2 = n2;
        s.t_sum = sum;
        let delta = (hi - lo) / levels;
        let words = s.words;
        s.planes.clear();
        s.planes.resize(QUERY_BITS * words, 0);
        s.qu.clear();
        s.qu.resize(d, 0);
        let mut usum = 0u32;
        if delta > 0.0 && delta.is_finite() {
            let inv = 1.0 / delta;
            // Randomized rounding's seed; nearest rounding needs none.
            let mut state = match self.rounding {
                Rounding::Randomized => hash_of(&s.t),
                Rounding::Nearest => 0,
            };
            for (i, &v) in s.t.iter().enumerate() {
                let x = (v - lo) * inv;
                let u = match self.rounding {
                    Rounding::Nearest => (x + 0.5).floor(),
                    Rounding::Randomized => {
                        state = crate::rng::splitmix64(state);
                        let r = (state >> 40) as f32 / (1u64 << 24) as f32;
                        (x + r).floor()
                    }
                };
                let u = u.clamp(0.0, levels) as u32;
                usum += u;
                s.qu[i] = u as u8;
                for j in 0..QUERY_BITS {
                    if u >> j & 1 == 1 {
                        s.planes[j * words + i / 64] |= 1 << (i % 64);
                    }
                }
            }
            s.delta = delta;
        } else {
            s.delta = 0.0;
        }
        s.lo = if lo.is_finite() { lo } else { 0.0 };
        s.tq_sum = s.delta * usum as f32 + d as f32 * s.lo;
        if self.bits > 1 {
            s.lut.set(&s.t);
            let ex = u32::from(self.bits) - 1;
            s.weights.clear();
            s.weights.push((1u32 << ex) as f32);
            s.weights.extend((0..ex).map(|p| (1u32 << p) as f32));
        }
    }

    /// The 1-bit estimate `⟨x̄, t̄⟩ · f1` of one row, with `x̄ = sign/√d`.
    #[inline]
    pub(crate) fn ip_1bit(&self, s: &RabitqQuery, row: &[u8], words: &mut [u64]) -> f32 {
        let d = self.dim;
        code::plane_words(&row[..plane_bytes(d)], words);
        let ipbin = bits::and_popcount_planes(words, &s.planes);
        self.ip_1bit_of(s, self.factor_bytes(row), ipbin, bits::popcount(words))
    }

    /// The factor bytes of a row (past its bit planes; see [`code`]).
    #[inline]
    pub(crate) fn factor_bytes<'a>(&self, row: &'a [u8]) -> &'a [u8] {
        &row[plane_bytes(self.dim) * self.bits as usize..]
    }

    /// The 1-bit estimate of a row with factor bytes `f` from `⟨code, u⟩ = ipbin` and its
    /// popcount `pc`.
    #[inline]
    pub(crate) fn ip_1bit_of(&self, s: &RabitqQuery, f: &[u8], ipbin: u32, pc: u32) -> f32 {
        let d = self.dim;
        let dot =
            (2.0 * (s.lo * pc as f32 + s.delta * ipbin as f32) - s.tq_sum) / (d as f32).sqrt();
        fk(f, 1) * dot
    }

    /// The full-code estimate of one row (`bits ≥ 2`): `f3 · ⟨v, t⟩`, with
    /// `⟨u, t⟩ = Σ_p w_p ⟨plane_p, t⟩` through the nibble tables of `t`
    /// ([`PlaneLut`]).
    #[inline]
    pub(crate) fn ip_full(&self, s: &RabitqQuery, row: &[u8]) -> f32 {
        let d = self.dim;
        let pb = plane_bytes(d);
        let half = ((1u32 << self.bits) - 1) as f32 / 2.0;
        let ud = s
            .lut
            .planes_dot(&row[..pb * self.bits as usize], pb, &s.weights);
        factor(row, d, self.bits, 3) * (ud - half * s.t_sum)
    }

    /// The reference of [`Self::ip_full`]: per-dimension bit extraction against `t`.
    #[cfg(test)]
    pub(crate) fn ip_full_reference(&self, s: &RabitqQuery, row: &[u8]) -> f32 {
        let d = self.dim;
        let half = ((1u32 << self.bits) - 1) as f32 / 2.0;
        let dot = code::full_dot(row, d, self.bits, &s.t) - half * s.t_sum;
        factor(row, d, self.bits, 3) * dot
    }

    /// How far (in `⟨r, q'⟩`) the full-code estimate of a row may lie from its 1-bit
    /// estimate `ip1`: [`REFINE_SIGMAS`] standard deviations of each estimate's error
    /// (the stored bounds `f2`, `f4` are [`code::EPSILON0`] of them, per unit `‖q'‖`) plus
    /// as many of the query's quantization error in `ip1` (`f1 · δ/√12`: uniform rounding
    /// error `±δ/2` per dimension against `x̄_i = ±1/√d`). `qn = ‖q'‖`.
    #[inline]
    pub(crate) fn refine_margin(&self, s: &RabitqQuery, f: &[u8], qn: f32) -> f32 {
        let per_sigma =
            (fk(f, 2) + fk(f, 4)) * qn / code::EPSILON0 + fk(f, 1) * s.delta * QUANT_SIGMA;
        REFINE_SIGMAS * per_sigma
    }

    /// The estimate the scans use: 1-bit codes by bit planes, wider codes by the full
    /// code.
    #[inline]
    pub(crate) fn ip_scan(&self, s: &RabitqQuery, row: &[u8], words: &mut [u64]) -> f32 {
        if self.bits == 1 {
            self.ip_1bit(s, row, words)
        } else {
            self.ip_full(s, row)
        }
    }

    /// The distance under `metric` of a row with factor bytes `f` and estimated
    /// `⟨r, q'⟩ = ip`.
    #[inline]
    pub(crate) fn dist_of(&self, s: &RabitqQuery, metric: Metric, f: &[u8], ip: f32) -> f32 {
        match metric {
            Metric::L2 => fk(f, 0) + s.t_norm2 - 2.0 * ip,
            Metric::InnerProduct => -(s.konst + ip),
            Metric::Cosine => 1.0 - (s.konst + ip),
        }
    }

    /// Both estimates of `⟨r, q'⟩` for one row-major code under the current target, with
    /// their error bounds (for refinement: decide with the 1-bit estimate where its bound
    /// allows, refine with the full code elsewhere).
    pub fn estimate(&self, s: &RabitqQuery, row: &[u8]) -> Estimate {
        let mut words = vec![0u64; s.words.max(1)];
        let d = self.dim;
        let qn = s.t_norm2.max(0.0).sqrt();
        let ip1 = self.ip_1bit(s, row, &mut words);
        let cos1 = {
            let f1 = factor(row, d, self.bits, 1);
            let n = factor(row, d, self.bits, 0).max(0.0).sqrt();
            if f1 > 0.0 { n / f1 } else { 1.0 }
        };
        let bound1 = factor(row, d, self.bits, 0).max(0.0).sqrt()
            * code::error_bound(cos1, d, code::EPSILON0)
            * qn;
        if self.bits == 1 {
            return Estimate {
                ip1,
                bound1,
                ip: ip1,
                bound: bound1,
            };
        }
        Estimate {
            ip1,
            bound1,
            ip: self.ip_full(s, row),
            bound: factor(row, d, self.bits, 4) * qn,
        }
    }
}
