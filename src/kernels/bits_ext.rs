//! Inner products of one bit plane of a code with a query, for multi-bit codes stored
//! as bit planes (RaBitQ's extended codes: `⟨u, t⟩ = Σ_p w_p ⟨plane_p, t⟩`).
//!
//! A plane is `⌈d/8⌉` bytes, dimension `i` at bit `i % 8` of byte `i / 8`; bits past `d`
//! are zero. Two ways to take `⟨plane, t⟩ = Σ_i bit_i · t_i` against a float query `t`:
//!
//! - [`PlaneLut`]: nibble look-up tables of the float query, 16 sums per 4 dimensions
//!   (`64·d` bytes: 8 KiB at d = 128, 24 KiB at d = 384, in L1/L2), two look-ups per
//!   plane byte. Exact up to float rounding (the sums are formed in `f64`, the lookups
//!   added in `f32`), so a scan with it ranks as the per-dimension float path does.
//! - [`QueryPlanes8`]: the query quantized to 8 bits per dimension (`t_i ≈ lo + δ·u_i`,
//!   rounded to nearest) in 8 bit planes; `⟨plane, t⟩ ≈ lo·|plane| + δ·Σ_j 2^j
//!   popcount(plane AND q_j)` with [`super::bits`]. Its error per plane is at most
//!   `δ/2 · |plane|`.
//!
//! - [`MaskedPlanes`]: the query times each plane's weight, summed sixteen dimensions at
//!   a time under the plane's bits as a mask (a masked add per 16 dimensions with
//!   AVX-512; the portable path adds the same terms in the same order).
//!
//! RaBitQ's scan uses [`MaskedPlanes`]: it changes no estimate beyond float rounding
//! (like [`PlaneLut`]), and with AVX-512 (together with the block-wise 1-bit keys of the
//! refined scan) it took a `RaBitQ4` search of the 100k × 128 Gaussian set from 464–537
//! to 735–749 queries/s on one thread (Sapphire Rapids, same run, recall unchanged),
//! where the nibble tables had been 47 % of the time. `bits_ext` in
//! `benches/kernels.rs` measures the kernels alone. Measured on 1,024 4-bit codes
//! (4 planes; `CARGO_PROFILE_DEV_OPT_LEVEL=3 cargo bench --profile dev --bench kernels --
//! bits_ext`, Zen 3, shared machine): d = 128: per-dimension bit extraction 561 µs,
//! nibble tables 60 µs, 8-bit query popcounts 215 µs; d = 384: 1093 µs, 238 µs and
//! 799 µs. The 8-bit path's recall was not measured: it lost on speed, and its
//! estimates differ from the float path by up to `δ/2` per set bit.

use super::bits;

/// Nibble tables of a float query: `tables[k][p]` for byte `k` of a plane is
/// `Σ_{i<4} bit_i(p) · t[8k + i]` for `p < 16` and `Σ_{i<4} bit_i(p − 16) · t[8k + 4 + i]`
/// for `16 ≤ p < 32`.
#[derive(Clone, Debug, Default)]
pub struct PlaneLut {
    dim: usize,
    tables: Vec<[f32; 32]>,
}

impl PlaneLut {
    /// Tables of `t` (`d` values).
    pub fn new(t: &[f32]) -> PlaneLut {
        let mut lut = PlaneLut::default();
        lut.set(t);
        lut
    }

    /// Rebuilds the tables for `t`, reusing the allocation.
    pub fn set(&mut self, t: &[f32]) {
        let d = t.len();
        self.dim = d;
        self.tables.clear();
        self.tables.resize(d.div_ceil(8), [0.0; 32]);
        for (k, table) in self.tables.iter_mut().enumerate() {
            for half in 0..2 {
                let base = 8 * k + 4 * half;
                let v = |i: usize| t.get(base + i).map_or(0.0, |&x| f64::from(x));
                let vals = [v(0), v(1), v(2), v(3)];
                // Entry p is entry p less its highest bit plus that bit's value: the
                // sum over p's bits in ascending order, in f64, one add per entry.
                let mut sums = [0.0f64; 16];
                for p in 1..16usize {
                    let top = p.ilog2() as usize;
                    sums[p] = sums[p ^ (1 << top)] + vals[top];
                }
                for (e, &v) in table[16 * half..16 * half + 16].iter_mut().zip(&sums) {
                    *e = v as f32;
                }
            }
        }
    }

    /// The dimension of the tables.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// `Σ_i bit_i · t_i` over one plane (`⌈d/8⌉` bytes; shorter planes read as zero
    /// past their end).
    #[inline]
    pub fn plane_dot(&self, plane: &[u8]) -> f32 {
        let mut acc = [0.0f32; 4];
        let mut pairs = self.tables.chunks_exact(2).zip(plane.chunks_exact(2));
        for (t, b) in &mut pairs {
            acc[0] += t[0][usize::from(b[0] & 15)];
            acc[1] += t[0][16 + usize::from(b[0] >> 4)];
            acc[2] += t[1][usize::from(b[1] & 15)];
            acc[3] += t[1][16 + usize::from(b[1] >> 4)];
        }
        let done = 2 * (self.tables.len().min(plane.len()) / 2);
        for (t, &b) in self.tables[done..]
            .iter()
            .zip(&plane[done.min(plane.len())..])
        {
            acc[0] += t[usize::from(b & 15)];
            acc[1] += t[16 + usize::from(b >> 4)];
        }
        (acc[0] + acc[1]) + (acc[2] + acc[3])
    }

    /// `Σ_p weights[p] · ⟨plane_p, t⟩` over consecutive planes of `pb` bytes each.
    #[inline]
    pub fn planes_dot(&self, planes: &[u8], pb: usize, weights: &[f32]) -> f32 {
        planes
            .chunks_exact(pb.max(1))
            .zip(weights)
            .map(|(plane, &w)| w * self.plane_dot(plane))
            .sum()
    }
}

/// Weighted copies of a float query for multi-plane codes: `Σ_p w_p ⟨plane_p, t⟩` as
/// masked sums — sixteen dimensions of plane `p` at a time, the plane's 16 bits
/// selecting which of `w_p · t_i` to add (one masked add with AVX-512). `w_p · t_i` is
/// stored per plane (`planes · ⌈d/16⌉ · 16` floats, zero past `d`), so with power-of-two
/// weights (RaBitQ's) every term is exact and only the sums round, in `f32`, in four
/// chains of sixteen lanes (chunk `c` of a plane into chain `c mod 4`).
#[derive(Clone, Debug, Default)]
pub struct MaskedPlanes {
    /// Floats per plane (`d` rounded up to 16).
    padded: usize,
    weighted: Vec<f32>,
}

/// Lanes of a [`MaskedPlanes`] chunk.
const LANES: usize = 16;
/// Independent accumulators of [`MaskedPlanes::planes_dot`].
const CHAINS: usize = 4;

impl MaskedPlanes {
    /// Sets the weighted copies of `t` for planes of weights `weights`, reusing the
    /// allocation.
    pub fn set(&mut self, t: &[f32], weights: &[f32]) {
        self.padded = t.len().div_ceil(LANES) * LANES;
        self.weighted.clear();
        self.weighted.resize(weights.len() * self.padded, 0.0);
        for (row, &w) in self.weighted.chunks_exact_mut(self.padded).zip(weights) {
            row.iter_mut().zip(t).for_each(|(o, &v)| *o = w * v);
        }
    }

    /// `Σ_p w_p · ⟨plane_p, t⟩` over consecutive planes of `pb` bytes each (dimension
    /// `i` at bit `i % 8` of byte `i / 8`; bits past `d` must be zero), at the process's
    /// SIMD level (every level gives the same value bit for bit).
    #[inline]
    pub fn planes_dot(&self, planes: &[u8], pb: usize) -> f32 {
        #[cfg(target_arch = "x86_64")]
        if super::simd_level() >= super::SimdLevel::Avx512 {
            // SAFETY: the dispatch level is capped at what the CPU reports.
            return unsafe { masked_dot_avx512(planes, pb, &self.weighted, self.padded) };
        }
        self.planes_dot_portable(planes, pb)
    }

    /// [`Self::planes_dot`] in portable code (the reference of the SIMD path).
    pub fn planes_dot_portable(&self, planes: &[u8], pb: usize) -> f32 {
        masked_dot_portable(planes, pb, &self.weighted, self.padded)
    }
}

/// Bits `16c..16c + 16` of a plane (zero past its end).
#[inline(always)]
fn chunk_bits(plane: &[u8], c: usize) -> u16 {
    let lo = plane.get(2 * c).copied().unwrap_or(0);
    let hi = plane.get(2 * c + 1).copied().unwrap_or(0);
    u16::from_le_bytes([lo, hi])
}

/// The sixteen lanes of the chains summed: chains pairwise, then lanes by halves.
#[inline(always)]
fn reduce_chains(acc: &[[f32; LANES]; CHAINS]) -> f32 {
    let mut v: [f32; LANES] =
        std::array::from_fn(|l| (acc[0][l] + acc[1][l]) + (acc[2][l] + acc[3][l]));
    let mut width = LANES / 2;
    while width > 0 {
        for l in 0..width {
            v[l] += v[l + width];
        }
        width /= 2;
    }
    v[0]
}

/// [`MaskedPlanes::planes_dot_portable`].
fn masked_dot_portable(planes: &[u8], pb: usize, weighted: &[f32], padded: usize) -> f32 {
    let mut acc = [[0.0f32; LANES]; CHAINS];
    if pb == 0 || padded == 0 {
        return 0.0;
    }
    for (plane, w) in planes.chunks_exact(pb).zip(weighted.chunks_exact(padded)) {
        for (c, wc) in w.chunks_exact(LANES).enumerate() {
            let bits = chunk_bits(plane, c);
            let a = &mut acc[c % CHAINS];
            for l in 0..LANES {
                if bits >> l & 1 == 1 {
                    a[l] += wc[l];
                }
            }
        }
    }
    reduce_chains(&acc)
}

/// [`masked_dot_portable`] with AVX-512 masked adds (the same additions in the same
/// order).
///
/// # Safety
/// The CPU must support AVX-512F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn masked_dot_avx512(planes: &[u8], pb: usize, weighted: &[f32], padded: usize) -> f32 {
    use std::arch::x86_64::*;
    if pb == 0 || padded == 0 {
        return 0.0;
    }
    // The chains in named registers (an indexed array of them stays in memory).
    let (mut a0, mut a1, mut a2, mut a3) = (
        _mm512_setzero_ps(),
        _mm512_setzero_ps(),
        _mm512_setzero_ps(),
        _mm512_setzero_ps(),
    );
    let chunks = padded / LANES;
    for (plane, w) in planes.chunks_exact(pb).zip(weighted.chunks_exact(padded)) {
        let add = |a: __m512, c: usize| {
            // SAFETY: chunk c < chunks of `w` holds 16 floats.
            let v = unsafe { _mm512_loadu_ps(w.as_ptr().add(c * LANES)) };
            _mm512_mask_add_ps(a, chunk_bits(plane, c), a, v)
        };
        let mut c = 0;
        while c + CHAINS <= chunks {
            a0 = add(a0, c);
            a1 = add(a1, c + 1);
            a2 = add(a2, c + 2);
            a3 = add(a3, c + 3);
            c += CHAINS;
        }
        if c < chunks {
            a0 = add(a0, c);
        }
        if c + 1 < chunks {
            a1 = add(a1, c + 1);
        }
        if c + 2 < chunks {
            a2 = add(a2, c + 2);
        }
    }
    let mut lanes = [[0.0f32; LANES]; CHAINS];
    for (l, a) in lanes.iter_mut().zip([a0, a1, a2, a3]) {
        // SAFETY: 16 floats into a 16-float array.
        unsafe { _mm512_storeu_ps(l.as_mut_ptr(), a) };
    }
    reduce_chains(&lanes)
}

/// A float query quantized to 8 bits per dimension, as 8 bit planes of `⌈d/64⌉` words.
#[derive(Clone, Debug, Default)]
pub struct QueryPlanes8 {
    words: usize,
    lo: f32,
    delta: f32,
    planes: Vec<u64>,
}

impl QueryPlanes8 {
    /// Quantizes `t` to 256 levels over `[min t, max t]`, rounding to nearest.
    pub fn new(t: &[f32]) -> QueryPlanes8 {
        let words = t.len().div_ceil(64);
        let (lo, hi) = t
            .iter()
            .fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &v| {
                (a.min(v), b.max(v))
            });
        let delta = (hi - lo) / 255.0;
        let mut planes = vec![0u64; 8 * words];
        if delta > 0.0 && delta.is_finite() {
            for (i, &v) in t.iter().enumerate() {
                let u = ((v - lo) / delta + 0.5).floor().clamp(0.0, 255.0) as u32;
                for j in 0..8 {
                    if u >> j & 1 == 1 {
                        planes[j * words + i / 64] |= 1 << (i % 64);
                    }
                }
            }
        }
        QueryPlanes8 {
            words,
            lo: if lo.is_finite() { lo } else { 0.0 },
            delta: if delta.is_finite() { delta } else { 0.0 },
            planes,
        }
    }

    /// Words per plane.
    pub fn words(&self) -> usize {
        self.words
    }

    /// `≈ Σ_i bit_i · t_i` for one plane given as [`Self::words`] little-endian words.
    #[inline]
    pub fn plane_dot(&self, plane: &[u64]) -> f32 {
        let ip = bits::and_popcount_planes(plane, &self.planes);
        self.lo * bits::popcount(plane) as f32 + self.delta * ip as f32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plane_words(plane: &[u8], words: usize) -> Vec<u64> {
        let mut out = vec![0u64; words];
        for (i, &b) in plane.iter().enumerate() {
            out[i / 8] |= u64::from(b) << (8 * (i % 8));
        }
        out
    }

    /// Issue 18 item 3: both plane products equal the per-dimension sum (the LUT up to
    /// float rounding, the 8-bit query within δ/2 per set bit), for every tail length.
    #[test]
    fn item3_plane_products_match_reference() {
        let mut state = 7u64;
        for d in [
            1usize, 3, 4, 5, 8, 12, 40, 63, 64, 65, 96, 100, 128, 130, 384,
        ] {
            let t: Vec<f32> = (0..d)
                .map(|_| {
                    state = crate::rng::splitmix64(state);
                    (state >> 40) as f32 / (1u64 << 24) as f32 * 4.0 - 2.0
                })
                .collect();
            let pb = d.div_ceil(8);
            let mut plane: Vec<u8> = (0..pb)
                .map(|_| {
                    state = crate::rng::splitmix64(state);
                    state as u8
                })
                .collect();
            if !d.is_multiple_of(8) {
                plane[pb - 1] &= (1u8 << (d % 8)) - 1;
            }
            let want: f32 = (0..d)
                .filter(|&i| plane[i / 8] >> (i % 8) & 1 == 1)
                .map(|i| t[i])
                .sum();
            let ones = (0..d).filter(|&i| plane[i / 8] >> (i % 8) & 1 == 1).count() as f32;
            let lut = PlaneLut::new(&t);
            let got = lut.plane_dot(&plane);
            assert!(
                (got - want).abs() <= 1e-4 * (1.0 + d as f32),
                "d {d}: {got} vs {want}"
            );
            let two = lut.planes_dot(&[plane.clone(), plane.clone()].concat(), pb, &[2.0, 0.5]);
            assert!((two - 2.5 * want).abs() <= 1e-3 * (1.0 + d as f32), "d {d}");
            let mut masked = MaskedPlanes::default();
            masked.set(&t, &[2.0, 0.5]);
            let two_planes = [plane.clone(), plane.clone()].concat();
            let m = masked.planes_dot(&two_planes, pb);
            assert!((m - 2.5 * want).abs() <= 1e-3 * (1.0 + d as f32), "d {d}");
            assert_eq!(
                m.to_bits(),
                masked.planes_dot_portable(&two_planes, pb).to_bits(),
                "d {d}: SIMD and portable masked sums"
            );
            let q8 = QueryPlanes8::new(&t);
            let got8 = q8.plane_dot(&plane_words(&plane, q8.words()));
            let tol = q8.delta / 2.0 * ones + 1e-4 * (1.0 + d as f32);
            assert!(
                (got8 - want).abs() <= tol,
                "d {d}: {got8} vs {want} (tol {tol})"
            );
        }
    }
}
