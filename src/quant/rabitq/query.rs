//! One query's prepared state: the rotated query, its target for the current list, and
//! the target quantized to [`QUERY_BITS`] bit planes; the estimators over one code.

use super::code::{self, factor, plane_bytes};
use super::{QUERY_BITS, RaBitQ, Rounding};
use crate::kernels::bits;
use crate::kernels::bits_ext::MaskedPlanes;
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
    /// The quantized target: `t̄_i = lo + delta · u_i`, `u_i` in bit planes, on a grid
    /// symmetric about zero (`lo = −c · delta`, see [`centre`]).
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
    /// `t` times each plane's weight, for the full code's bit planes (`bits ≥ 2`).
    pub(crate) masked: MaskedPlanes,
    /// Plane weights of the full code: `2^(b−1)` for the sign plane, `2^(p−1)` for
    /// extra plane `p`.
    pub(crate) weights: Vec<f32>,
    /// Rows a multi-bit scan has scored with the full code (since the query began).
    pub(crate) refined: u64,
    /// Error-bound re-ranking: scans push lower bounds of the distances
    /// ([`RaBitQ::push_rows`]).
    pub(crate) bound_keys: bool,
    /// Local centres under L2: `⟨t, R(c_k − c)⟩` for each centre `k`, zero-padded to
    /// [`code::MAX_CENTRES`] entries (empty without local centres).
    pub(crate) tk: Vec<f32>,
    /// Local centres: `‖q' − R(c_k − c)‖` for each centre `k` (the norm a row's error
    /// bound scales with), from `t_norm2`, `tk` and the centres' squared norms, so that
    /// a row looks it up by its centre byte as it looks up `tk`.
    pub(crate) qk: Vec<f32>,
}

/// A query's local-centre tables, as the block kernels read them (indexed by a byte).
#[derive(Clone, Copy)]
pub(crate) struct Local<'a> {
    /// `⟨t, R(c_k − c)⟩`.
    tk: &'a [f32; code::MAX_CENTRES],
    /// `‖q − c_k‖` ([`RabitqQuery::qk`]).
    qk: &'a [f32; code::MAX_CENTRES],
}

/// `‖q − c_k‖` from `‖q − c‖² = t_norm2`, `tk = ⟨t, R(c_k − c)⟩` and
/// `zn = ‖c_k − c‖²`.
#[inline(always)]
fn centre_norm(t_norm2: f32, tk: f32, zn: f32) -> f32 {
    (t_norm2 - 2.0 * tk + zn).max(0.0).sqrt()
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

/// `(min, max, Σ t², Σ t)` of `t`, in eight lanes (`(∞, −∞, 0, 0)` when empty).
#[inline(always)]
fn stats(t: &[f32]) -> (f32, f32, f32, f32) {
    const L: usize = 8;
    let (mut lo, mut hi) = ([f32::INFINITY; L], [f32::NEG_INFINITY; L]);
    let (mut n2, mut sum) = ([0.0f32; L], [0.0f32; L]);
    let mut chunks = t.chunks_exact(L);
    for c in &mut chunks {
        for k in 0..L {
            let v = c[k];
            lo[k] = if v < lo[k] { v } else { lo[k] };
            hi[k] = if v > hi[k] { v } else { hi[k] };
            n2[k] += v * v;
            sum[k] += v;
        }
    }
    for (k, &v) in chunks.remainder().iter().enumerate() {
        lo[k] = lo[k].min(v);
        hi[k] = hi[k].max(v);
        n2[k] += v * v;
        sum[k] += v;
    }
    (
        lo.iter().fold(f32::INFINITY, |a, &b| a.min(b)),
        hi.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b)),
        n2.iter().sum(),
        sum.iter().sum(),
    )
}

/// The `bits` bit planes of the codes `qu` (`words` words per plane, plane `j`
/// holding bit `j` of every code at the dimension's bit): each group of eight codes is
/// read as one word, and a multiply gathers one bit of each byte into a byte.
pub(crate) fn pack_planes(qu: &[u8], words: usize, bits: usize, planes: &mut Vec<u64>) {
    // Byte k of `x & 0x01…01` lands at bit 56 + k of the product (no carries reach it).
    const GATHER: u64 = 0x0102_0408_1020_4080;
    const LOW: u64 = 0x0101_0101_0101_0101;
    planes.clear();
    planes.resize(bits * words, 0);
    for (w, word) in qu.chunks(64).enumerate() {
        for (g, group) in word.chunks(8).enumerate() {
            let mut b = [0u8; 8];
            b[..group.len()].copy_from_slice(group);
            let x = u64::from_le_bytes(b);
            for j in 0..bits {
                let byte = ((x >> j) & LOW).wrapping_mul(GATHER) >> 56;
                planes[j * words + w] |= byte << (8 * g);
            }
        }
    }
}

/// A target's statistics and its rounding (see [`RaBitQ::quantize_target`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Rounded {
    /// The grid's lowest level `−c · delta` (`min t` when the grid is empty or not
    /// finite; infinite for an empty target).
    pub(crate) lo: f32,
    /// `‖t‖²` and `Σ t_i`.
    pub(crate) n2: f32,
    pub(crate) sum: f32,
    /// The grid step (0 when the range is empty or not finite: every code 0).
    pub(crate) delta: f32,
    /// `Σ u_i`.
    pub(crate) usum: u32,
}

/// The `bits`-bit grid of `t`, symmetric about zero: `2^bits − 1` levels
/// `lo + δu`, `u ∈ [0, 2^bits − 2]`, with `lo = −cδ` for the centre
/// `c = 2^(bits−1) − 1` ([`centre`]) and `cδ = max |t_i|`, so that `t̄_i = δ(u_i − c)`
/// and `Σ_i bit_i t̄_i = δ Σ_i bit_i (u_i − c)` needs no count of a code's bits (a
/// grid over `[min t, max t]` adds `lo · popcount`). Returns its statistics and the top
/// level.
#[inline(always)]
fn grid(t: &[f32], bits: u32) -> (Rounded, f32) {
    let c = centre(bits) as f32;
    let levels = 2.0 * c;
    let (lo, hi, n2, sum) = stats(t);
    let delta = lo.abs().max(hi.abs()) / c;
    let ok = delta > 0.0 && delta.is_finite();
    let delta = if ok { delta } else { 0.0 };
    let r = Rounded {
        lo: if lo.is_finite() { -c * delta } else { lo },
        n2,
        sum,
        delta,
        usum: 0,
    };
    (r, levels)
}

/// The centre `2^(bits−1) − 1` of a `bits`-bit query grid (31 for 6 bits).
#[inline(always)]
pub(crate) const fn centre(bits: u32) -> u32 {
    (1 << (bits - 1)) - 1
}

/// A row's centred sum `Σ_i bit_i (u_i − c) = ⟨code, u⟩ − c · popcount` from the two
/// counts of the popcount kernels.
#[inline(always)]
pub(crate) fn centred_sum(ipbin: u32, pc: u32) -> i32 {
    ipbin as i32 - (centre(QUERY_BITS as u32) * pc) as i32
}

/// `t` rounded to the nearest level of its grid, into `qu` (`t.len()` zeros on entry).
#[inline(always)]
fn round_nearest_portable(t: &[f32], qu: &mut [u8], bits: u32) -> Rounded {
    let (mut r, levels) = grid(t, bits);
    if r.delta > 0.0 {
        let (lo, inv) = (r.lo, 1.0 / r.delta);
        // `v − lo ≥ 0`, so truncation is the floor (`floorf` is a call without
        // SSE4.1), and capping at `levels + ½` is the clamp. Through `i32` (the same
        // value in 0..=levels): a saturating cast to `u8` does not vectorise.
        let top = levels + 0.5;
        for (u, &v) in qu.iter_mut().zip(t) {
            *u = ((v - lo) * inv + 0.5).min(top) as i32 as u8;
        }
        r.usum = qu.iter().map(|&u| u32::from(u)).sum();
    }
    r
}

/// [`round_nearest_portable`] with AVX-512: the statistics compiled for it, the
/// rounding sixteen dimensions at a time by the same operations (no fused multiply-add;
/// `vminps` returns its second operand for a NaN as `f32::min` does), so the same codes
/// and statistics bit for bit.
///
/// # Safety
/// The CPU must support AVX-512F and AVX-512BW.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx2")]
unsafe fn round_nearest_avx512(t: &[f32], qu: &mut [u8], bits: u32) -> Rounded {
    use std::arch::x86_64::*;
    let (mut r, levels) = grid(t, bits);
    if r.delta > 0.0 {
        let lo = _mm512_set1_ps(r.lo);
        let inv = _mm512_set1_ps(1.0 / r.delta);
        let (half, top) = (_mm512_set1_ps(0.5), _mm512_set1_ps(levels + 0.5));
        let n = t.len().min(qu.len());
        let mut acc = _mm512_setzero_si512();
        let mut i = 0;
        while i < n {
            let m = (n - i).min(16);
            let k: __mmask16 = ((1u32 << m) - 1) as __mmask16;
            // SAFETY: the mask covers elements i..i + m < n of `t` and `qu`.
            unsafe {
                let v = _mm512_maskz_loadu_ps(k, t.as_ptr().add(i));
                let x = _mm512_add_ps(_mm512_mul_ps(_mm512_sub_ps(v, lo), inv), half);
                let u = _mm512_maskz_mov_epi32(k, _mm512_cvttps_epi32(_mm512_min_ps(x, top)));
                acc = _mm512_add_epi32(acc, u);
                _mm512_mask_cvtepi32_storeu_epi8(qu.as_mut_ptr().add(i) as *mut i8, k, u);
            }
            i += m;
        }
        r.usum = _mm512_reduce_add_epi32(acc) as u32;
    }
    r
}

/// [`round_nearest_portable`] at the process's SIMD level.
pub(crate) fn round_nearest(t: &[f32], qu: &mut [u8], bits: u32) -> Rounded {
    #[cfg(target_arch = "x86_64")]
    if crate::kernels::simd_level() >= crate::kernels::SimdLevel::Avx512 {
        // SAFETY: the dispatch level is capped at what the CPU reports.
        return unsafe { round_nearest_avx512(t, qu, bits) };
    }
    round_nearest_portable(t, qu, bits)
}

/// `t` rounded at random (the paper's unbiased rounding), seeded from `t` so a search
/// is deterministic, into `qu` (`t.len()` zeros on entry).
fn round_randomized(t: &[f32], qu: &mut [u8], bits: u32) -> Rounded {
    let (mut r, levels) = grid(t, bits);
    if r.delta > 0.0 {
        let (lo, inv) = (r.lo, 1.0 / r.delta);
        let mut state = hash_of(t);
        for (u, &v) in qu.iter_mut().zip(t) {
            state = crate::rng::splitmix64(state);
            let x = (state >> 40) as f32 / (1u64 << 24) as f32;
            *u = ((v - lo) * inv + x).min(levels + 0.5) as u8;
        }
        r.usum = qu.iter().map(|&u| u32::from(u)).sum();
    }
    r
}

/// [`pack_planes`] at the process's SIMD level: with AVX-512BW, one byte test per plane
/// and 64 dimensions (`vptestmb` gives the plane's word directly).
pub(crate) fn pack_planes_dispatch(qu: &[u8], words: usize, bits: usize, planes: &mut Vec<u64>) {
    #[cfg(target_arch = "x86_64")]
    if crate::kernels::simd_level() >= crate::kernels::SimdLevel::Avx512 {
        // SAFETY: the dispatch level is capped at what the CPU reports.
        unsafe { pack_planes_avx512(qu, words, bits, planes) };
        return;
    }
    pack_planes(qu, words, bits, planes);
}

/// [`pack_planes`] with AVX-512BW byte tests.
///
/// # Safety
/// The CPU must support AVX-512F and AVX-512BW.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw")]
pub(crate) unsafe fn pack_planes_avx512(
    qu: &[u8],
    words: usize,
    bits: usize,
    planes: &mut Vec<u64>,
) {
    use std::arch::x86_64::*;
    planes.clear();
    planes.resize(bits * words, 0);
    for (w, chunk) in qu.chunks(64).enumerate().take(words) {
        let k = if chunk.len() == 64 {
            u64::MAX
        } else {
            (1u64 << chunk.len()) - 1
        };
        // SAFETY: the mask covers the chunk's bytes only.
        let v = unsafe { _mm512_maskz_loadu_epi8(k, chunk.as_ptr() as *const i8) };
        for j in 0..bits.min(8) {
            planes[j * words + w] = _mm512_test_epi8_mask(v, _mm512_set1_epi8((1u8 << j) as i8));
        }
    }
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
    /// Under IVF this runs once per probed list, so it is written for a short list's
    /// budget: one pass of eight-lane statistics, one rounding pass into bytes, and the
    /// bit planes gathered eight dimensions at a time ([`pack_planes`]).
    pub(crate) fn quantize_target(&self, s: &mut RabitqQuery) {
        let d = self.dim;
        s.qu.clear();
        s.qu.resize(d, 0);
        let bits = QUERY_BITS;
        let q = match self.rounding {
            Rounding::Nearest => round_nearest(&s.t, &mut s.qu, bits as u32),
            Rounding::Randomized => round_randomized(&s.t, &mut s.qu, bits as u32),
        };
        s.t_norm2 = q.n2;
        s.t_sum = q.sum;
        s.delta = q.delta;
        pack_planes_dispatch(&s.qu, s.words, bits, &mut s.planes);
        s.lo = if q.lo.is_finite() { q.lo } else { 0.0 };
        s.tq_sum = s.delta * q.usum as f32 + d as f32 * s.lo;
        if self.bits > 1 {
            let ex = u32::from(self.bits) - 1;
            s.weights.clear();
            s.weights.push((1u32 << ex) as f32);
            s.weights.extend((0..ex).map(|p| (1u32 << p) as f32));
            s.masked.set(&s.t, &s.weights);
        }
    }

    /// Sets the local centres' table of the current target (L2; see [`code`]).
    pub(crate) fn set_centre_terms(&self, s: &mut RabitqQuery, metric: Metric) {
        s.tk.clear();
        s.qk.clear();
        if self.local() {
            s.tk.resize(code::MAX_CENTRES, 0.0);
            if metric == Metric::L2 {
                let k = self.centre_count();
                crate::linalg::gemm_abt(&s.t, &self.offsets, self.dim, &mut s.tk[..k]);
            }
            let t_norm2 = s.t_norm2;
            s.qk.extend(
                s.tk.iter()
                    .zip(&self.offset_norms)
                    .map(|(&tk, &zn)| centre_norm(t_norm2, tk, zn)),
            );
        }
    }

    /// The query's local-centre tables (`None` without local centres).
    #[inline]
    fn local_of<'a>(&'a self, s: &'a RabitqQuery) -> Option<Local<'a>> {
        if !self.local() {
            return None;
        }
        Some(Local {
            tk: s.tk.as_slice().try_into().ok()?,
            qk: s.qk.as_slice().try_into().ok()?,
        })
    }

    /// A row's factors (either layout).
    #[inline]
    pub(crate) fn row_factors(&self, f: &[u8]) -> code::RowFactors {
        code::row_factors(f, self.bits, self.local())
    }

    /// `(c, ‖q'‖)` of a row for its 1-bit (`full` false) or full estimate: the L2
    /// constant `c` of [`Self::dist_of`] (`‖r‖²`, or with local centres
    /// `F − 2⟨q − c, c_k − c⟩`) and the norm of the target its error scales with
    /// (`‖q − c_k‖` with local centres).
    #[inline]
    pub(crate) fn row_terms(
        &self,
        s: &RabitqQuery,
        f: &code::RowFactors,
        full: bool,
    ) -> (f32, f32) {
        let c = if full { f.c3 } else { f.c1 };
        match self.local_of(s) {
            Some(l) => {
                let k = f.centre.min(code::MAX_CENTRES - 1);
                (c - 2.0 * l.tk[k], l.qk[k])
            }
            None => (c, s.t_norm2.max(0.0).sqrt()),
        }
    }

    /// The 1-bit estimate `⟨x̄, t̄⟩ · f1` of one row, with `x̄ = sign/√d` (`f1` from the
    /// row's factors, which the caller has read).
    #[inline]
    pub(crate) fn ip_1bit(&self, s: &RabitqQuery, row: &[u8], f1: f32) -> f32 {
        let (mut ipbin, mut pc) = ([0u32], [0u32]);
        let pb = plane_bytes(self.dim);
        bits::and_popcount_rows(row, row.len(), pb, &s.planes, &mut ipbin, &mut pc);
        self.ip_1bit_of(s, f1, centred_sum(ipbin[0], pc[0]))
    }

    /// The factor bytes of a row (past its bit planes; see [`code`]).
    #[inline]
    pub(crate) fn factor_bytes<'a>(&self, row: &'a [u8]) -> &'a [u8] {
        &row[self.factor_offset()..]
    }

    /// Where a row-major row's factor bytes start (past its `bits` planes).
    #[inline]
    pub(crate) fn factor_offset(&self) -> usize {
        plane_bytes(self.dim) * self.bits as usize
    }

    /// The 1-bit estimate of a row with scale factor `f1` from its centred sum
    /// `Σ_i bit_i (u_i − c)` ([`centred_sum`]): `Σ_i bit_i t̄_i = δ · sum`.
    #[inline]
    pub(crate) fn ip_1bit_of(&self, s: &RabitqQuery, f1: f32, sum: i32) -> f32 {
        let d = self.dim;
        let dot = (2.0 * (s.delta * sum as f32) - s.tq_sum) / (d as f32).sqrt();
        f1 * dot
    }

    /// Pushes up to a block of rows into `heap`, by the estimate the codes and the query
    /// call for: 1-bit distances ([`Self::push_1bit_rows`]), their lower bounds under
    /// error-bound re-ranking ([`Self::push_bound_rows`]), or for `b ≥ 2` bits the full
    /// estimate where the 1-bit key passes ([`Self::push_refined_rows`]; `full(s, i)` is
    /// `⟨r, q'⟩` of row `i` from its full code). `factors` holds the rows' factor bytes,
    /// `stride` apart; `sums` their centred sums ([`centred_sum`]); row `i` has id
    /// `first + i`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn push_rows<F: Fn(usize) -> bool>(
        &self,
        s: &mut RabitqQuery,
        metric: Metric,
        factors: &[u8],
        stride: usize,
        sums: &[i32],
        first: usize,
        heap: &mut crate::topk::TopK,
        ok: &F,
        full: impl FnMut(&RabitqQuery, usize) -> f32,
    ) {
        if self.bits > 1 {
            self.push_refined_rows(s, metric, factors, stride, sums, first, heap, ok, full);
        } else if s.bound_keys {
            self.push_bound_rows(s, metric, factors, stride, sums, first, heap, ok);
        } else {
            self.push_1bit_rows(s, metric, factors, stride, sums, first, heap, ok);
        }
    }

    /// [`Self::push_rows`] for 1-bit codes under error-bound re-ranking: each row's
    /// 1-bit distance less its error bound ([`Self::bound_1bit`]), a lower bound of the
    /// distance.
    #[allow(clippy::too_many_arguments)]
    fn push_bound_rows<F: Fn(usize) -> bool>(
        &self,
        s: &RabitqQuery,
        metric: Metric,
        factors: &[u8],
        stride: usize,
        sums: &[i32],
        first: usize,
        heap: &mut crate::topk::TopK,
        ok: &F,
    ) {
        let scale = if metric == Metric::L2 { 2.0 } else { 1.0 };
        for (i, &sum) in sums.iter().enumerate() {
            let Some(f) = factors.get(i * stride..) else {
                break;
            };
            let rf = self.row_factors(f);
            let (c, qn) = self.row_terms(s, &rf, false);
            let ip1 = self.ip_1bit_of(s, rf.f1, sum);
            let key = self.dist_of(s, metric, c, ip1) - scale * self.bound_1bit(s, &rf, qn);
            if key <= heap.threshold() && ok(first + i) {
                heap.push((first + i) as u64, key);
            }
        }
    }

    /// [`Self::push_rows`] for 1-bit codes: their
    /// distances ([`Self::dist_of`] of [`Self::ip_1bit_of`], bit for bit the same
    /// operations per row) in loops the compiler vectorises (with AVX-512 where the CPU
    /// has it), then only the rows under the threshold are visited. `rest` holds the
    /// rows' factor bytes, `stride` apart (factors `f0`, `f1` first), `sums` the rows'
    /// centred sums; row `i` has id `first + i`.
    #[allow(clippy::too_many_arguments)]
    fn push_1bit_rows<F: Fn(usize) -> bool>(
        &self,
        s: &RabitqQuery,
        metric: Metric,
        rest: &[u8],
        stride: usize,
        sums: &[i32],
        first: usize,
        heap: &mut crate::topk::TopK,
        ok: &F,
    ) {
        const B: usize = crate::kernels::fastscan::BLOCK;
        let mut dist = [0.0f32; B];
        let out = &mut dist[..sums.len().min(B)];
        let thr = heap.threshold();
        let mut under = self.dist_1bit_rows(s, metric, rest, stride, sums, out, thr);
        // The threshold only falls while the block is pushed: rows at or under it are
        // among those under the block's first threshold.
        while under != 0 {
            let i = under.trailing_zeros() as usize;
            under &= under - 1;
            let d = out[i];
            if d <= heap.threshold() && ok(first + i) {
                heap.push((first + i) as u64, d);
            }
        }
    }

    /// [`Self::push_rows`] for codes of `b ≥ 2` bits: the rows' 1-bit keys (the 1-bit distance less the refinement margin and,
    /// under error-bound keys, the full code's bound) in loops the compiler vectorises,
    /// bit for bit the per-row operations, then only rows whose key is under the
    /// threshold get `full(s, i)` (`⟨r, q'⟩` of row `i` from its full code). `rest`
    /// holds the rows' factor bytes, `stride` apart; row `i` has id `first + i`. Pushes
    /// what scoring the rows one at a time with the same rule pushes, in the same order.
    #[allow(clippy::too_many_arguments)]
    fn push_refined_rows<F: Fn(usize) -> bool>(
        &self,
        s: &mut RabitqQuery,
        metric: Metric,
        rest: &[u8],
        stride: usize,
        sums: &[i32],
        first: usize,
        heap: &mut crate::topk::TopK,
        ok: &F,
        mut full: impl FnMut(&RabitqQuery, usize) -> f32,
    ) {
        const B: usize = crate::kernels::fastscan::BLOCK;
        debug_assert!(self.bits > 1);
        let qn = s.t_norm2.max(0.0).sqrt();
        let scale = if metric == Metric::L2 { 2.0 } else { 1.0 };
        let mut keys = [0.0f32; B];
        let out = &mut keys[..sums.len().min(B)];
        let mut under = {
            let c = KeyM {
                d: self.dist1(s, metric, heap.threshold()),
                qn,
                scale,
                bound_keys: s.bound_keys,
            };
            #[cfg(target_arch = "x86_64")]
            let under = if crate::kernels::simd_level() >= crate::kernels::SimdLevel::Avx512 {
                // SAFETY: the dispatch level is capped at what the CPU reports.
                unsafe { keys_multibit_avx512(&c, rest, stride, sums, out) }
            } else {
                keys_multibit_portable(&c, rest, stride, sums, out)
            };
            #[cfg(not(target_arch = "x86_64"))]
            let under = keys_multibit_portable(&c, rest, stride, sums, out);
            under
        };
        while under != 0 {
            let i = under.trailing_zeros() as usize;
            under &= under - 1;
            if out[i] > heap.threshold() {
                continue;
            }
            s.refined += 1;
            let rf = self.row_factors(&rest[i * stride..]);
            let (c, qn) = self.row_terms(s, &rf, true);
            let full_bound = if s.bound_keys { rf.f4 * qn } else { 0.0 };
            let dist = self.dist_of(s, metric, c, full(s, i)) - scale * full_bound;
            if dist <= heap.threshold() && ok(first + i) {
                heap.push((first + i) as u64, dist);
            }
        }
    }

    /// The query terms of the 1-bit distances, with the threshold `thr` of the returned
    /// masks.
    fn dist1<'a>(&'a self, s: &'a RabitqQuery, metric: Metric, thr: f32) -> Dist1<'a> {
        Dist1 {
            local: self.local_of(s),
            metric,
            sqrt_d: (self.dim as f32).sqrt(),
            delta: s.delta,
            tq_sum: s.tq_sum,
            t_norm2: s.t_norm2,
            konst: s.konst,
            thr,
        }
    }

    /// The distances of [`Self::push_1bit_rows`], into `out` (one per row); returns the
    /// mask of rows (bit `i` for row `i`) whose distance is at most `thr`.
    #[allow(clippy::too_many_arguments)]
    fn dist_1bit_rows(
        &self,
        s: &RabitqQuery,
        metric: Metric,
        rest: &[u8],
        stride: usize,
        sums: &[i32],
        out: &mut [f32],
        thr: f32,
    ) -> u32 {
        let c = self.dist1(s, metric, thr);
        #[cfg(target_arch = "x86_64")]
        if crate::kernels::simd_level() >= crate::kernels::SimdLevel::Avx512 {
            // SAFETY: the dispatch level is capped at what the CPU reports.
            return unsafe { dist_1bit_avx512(&c, rest, stride, sums, out) };
        }
        dist_1bit_portable(&c, rest, stride, sums, out)
    }

    /// The full-code estimate of one row (`bits ≥ 2`): `f3 · ⟨v, t⟩`, with
    /// `⟨u, t⟩ = Σ_p w_p ⟨plane_p, t⟩` as masked sums of the weighted query
    /// ([`MaskedPlanes`]).
    #[inline]
    pub(crate) fn ip_full(&self, s: &RabitqQuery, row: &[u8]) -> f32 {
        let d = self.dim;
        let pb = plane_bytes(d);
        let half = ((1u32 << self.bits) - 1) as f32 / 2.0;
        let ud = s.masked.planes_dot(&row[..pb * self.bits as usize], pb);
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
    #[cfg(test)]
    pub(crate) fn refine_margin(&self, s: &RabitqQuery, f: &[u8], qn: f32) -> f32 {
        let f = self.row_factors(f);
        refine_margin_of((f.f1, f.f2, f.f4), qn, s.delta)
    }

    /// The error bound of a row's 1-bit estimate of `⟨r, q'⟩` (factors `f`,
    /// `qn = ‖q'‖`): [`code::EPSILON0`] standard deviations of the rotation's error
    /// (`‖r‖ · error_bound(⟨x̄, o⟩) · ‖q'‖`, from `‖r‖` and `f1 = ‖r‖/⟨x̄, o⟩`:
    /// `‖r‖ √(1/⟨x̄,o⟩² − 1) = √(f1² − ‖r‖²)`) and of the query's quantization
    /// (`f1 · δ/√12`), added in quadrature as independent errors.
    #[inline]
    pub(crate) fn bound_1bit(&self, s: &RabitqQuery, f: &code::RowFactors, qn: f32) -> f32 {
        let f1 = f.f1;
        let dm1 = (self.dim.max(2) - 1) as f32;
        let rot = (f1 * f1 - f.norm * f.norm).max(0.0).sqrt() * qn / dm1.sqrt();
        let quant = f1 * s.delta * QUANT_SIGMA;
        code::EPSILON0 * (rot * rot + quant * quant).sqrt()
    }

    /// The distance the scans give one row-major code: 1-bit codes by bit planes, wider
    /// codes by the full code (graph walks and re-ranking; the row's factors read once).
    #[inline]
    pub(crate) fn row_distance(&self, s: &RabitqQuery, metric: Metric, row: &[u8]) -> f32 {
        let f = self.row_factors(self.factor_bytes(row));
        let full = self.bits > 1;
        let ip = if full {
            self.ip_full(s, row)
        } else {
            self.ip_1bit(s, row, f.f1)
        };
        let (c, _) = self.row_terms(s, &f, full);
        self.dist_of(s, metric, c, ip)
    }

    /// The distance under `metric` of a row with L2 constant `c` (from
    /// [`Self::row_terms`]) and estimated `⟨r, q'⟩ = ip`.
    #[inline]
    pub(crate) fn dist_of(&self, s: &RabitqQuery, metric: Metric, c: f32, ip: f32) -> f32 {
        match metric {
            Metric::L2 => c + s.t_norm2 - 2.0 * ip,
            Metric::InnerProduct => -(s.konst + ip),
            Metric::Cosine => 1.0 - (s.konst + ip),
        }
    }

    /// Both estimates of `⟨r, q'⟩` for one row-major code under the current target, with
    /// their error bounds (for refinement: decide with the 1-bit estimate where its bound
    /// allows, refine with the full code elsewhere).
    pub fn estimate(&self, s: &RabitqQuery, row: &[u8]) -> Estimate {
        let d = self.dim;
        let f = self.row_factors(self.factor_bytes(row));
        let (_, qn) = self.row_terms(s, &f, false);
        let ip1 = self.ip_1bit(s, row, f.f1);
        let cos1 = if f.f1 > 0.0 { f.norm / f.f1 } else { 1.0 };
        let bound1 = f.norm * code::error_bound(cos1, d, code::EPSILON0) * qn;
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
            bound: f.f4 * qn,
        }
    }
}

/// What [`dist_1bit_portable`] needs of a query and metric.
struct Dist1<'a> {
    /// Local centres' tables (the rows' factors in their layout), or `None`.
    local: Option<Local<'a>>,
    metric: Metric,
    sqrt_d: f32,
    delta: f32,
    tq_sum: f32,
    t_norm2: f32,
    konst: f32,
    /// The threshold of the returned mask.
    thr: f32,
}

/// [`RaBitQ::dist_1bit_rows`]: the operations of [`RaBitQ::ip_1bit_of`] and
/// [`RaBitQ::dist_of`] per row, in the same order (no fused multiply-adds), so the
/// distances are bit for bit the per-row ones.
#[inline(always)]
fn dist_1bit_portable(c: &Dist1, rest: &[u8], stride: usize, sums: &[i32], out: &mut [f32]) -> u32 {
    const B: usize = crate::kernels::fastscan::BLOCK;
    const { assert!(B <= 32) };
    let n = out.len().min(B).min(sums.len());
    let (mut f0, mut f1) = ([0.0f32; B], [0.0f32; B]);
    debug_assert!(stride >= 8 && (n == 0 || rest.len() >= (n - 1) * stride + 8));
    if let Some(l) = c.local {
        local_1bit_factors::<false>(&l, rest, stride, n, &mut f0, &mut f1, &mut [0.0; B]);
    } else if stride == 8 && rest.len() >= 8 * n {
        // 1-bit rows hold exactly these two factors: the block's factors are one run of
        // `f32` pairs, read as such and split (vector loads and shuffles, not a
        // byte-wise `fk` per row, which costs more than the rest).
        let mut pairs = [0.0f32; 2 * B];
        for (p, w) in pairs.iter_mut().zip(rest[..8 * n].chunks_exact(4)) {
            *p = f32::from_le_bytes([w[0], w[1], w[2], w[3]]);
        }
        for i in 0..n {
            f0[i] = pairs[2 * i];
            f1[i] = pairs[2 * i + 1];
        }
    } else if n > 0 && stride >= 8 && rest.len() >= (n - 1) * stride + 8 {
        // Row-major codes: one unaligned 8-byte read per row (checked once above).
        for i in 0..n {
            // SAFETY: `i · stride + 8 ≤ (n − 1) · stride + 8 ≤ rest.len()`.
            let w = u64::from_le(unsafe {
                std::ptr::read_unaligned(rest.as_ptr().add(i * stride) as *const u64)
            });
            f0[i] = f32::from_bits(w as u32);
            f1[i] = f32::from_bits((w >> 32) as u32);
        }
    } else {
        for (i, f) in rest.chunks(stride).take(n).enumerate() {
            let Some(w) = f.first_chunk::<8>() else {
                break;
            };
            let (a, b) = w.split_at(4);
            f0[i] = f32::from_le_bytes(a.try_into().unwrap_or_default());
            f1[i] = f32::from_le_bytes(b.try_into().unwrap_or_default());
        }
    }
    dists_1bit(c, (&f0, &f1), sums, &mut out[..n]);
    under_mask(&out[..n], c.thr)
}

/// The first eight factor bytes of `n` rows in the local centres' layout (`stride`
/// apart): `F1 − 2⟨t, R(c_k − c)⟩` into `f0`, `f1` into `f1`, and with `QN` each row's
/// `‖q − c_k‖` into `qn`. Every centre term is looked up as its row is read: separate loops over
/// the block were vectorised into AVX-512 gathers, slow on Zen 4 (a fifth of a flat
/// `RaBitQfs` search; same operations, same bits).
#[inline(always)]
fn local_1bit_factors<const QN: bool>(
    l: &Local<'_>,
    rest: &[u8],
    stride: usize,
    n: usize,
    f0: &mut [f32; 32],
    f1: &mut [f32; 32],
    qn: &mut [f32; 32],
) {
    let n = n.min(32);
    if n > 0 && stride >= 8 && rest.len() >= (n - 1) * stride + 8 {
        for i in 0..n {
            // SAFETY: `i · stride + 8 ≤ (n − 1) · stride + 8 ≤ rest.len()`.
            let w = u64::from_le(unsafe {
                std::ptr::read_unaligned(rest.as_ptr().add(i * stride) as *const u64)
            });
            let k = usize::from((w >> 48) as u8);
            f0[i] = f32::from_bits(w as u32) - 2.0 * l.tk[k];
            f1[i] = f32::from_bits(((w >> 32) as u32) << 16);
            if QN {
                qn[i] = l.qk[k];
            }
        }
    } else {
        for (i, f) in rest.chunks(stride.max(1)).take(n).enumerate() {
            let Some(w) = f.first_chunk::<8>() else {
                break;
            };
            let k = usize::from(w[6]);
            f0[i] = f32::from_le_bytes([w[0], w[1], w[2], w[3]]) - 2.0 * l.tk[k];
            f1[i] = code::from_bf16(u16::from_le_bytes([w[4], w[5]]));
            if QN {
                qn[i] = l.qk[k];
            }
        }
    }
}

/// The 1-bit distances of `out.len()` rows from their factors `f0`, `f1` and sums: the
/// operations of [`RaBitQ::ip_1bit_of`] and [`RaBitQ::dist_of`] per row, one loop per
/// metric (a match inside the loop keeps it scalar).
#[inline(always)]
fn dists_1bit(c: &Dist1, (f0, f1): (&[f32], &[f32]), sums: &[i32], out: &mut [f32]) {
    const B: usize = crate::kernels::fastscan::BLOCK;
    let n = out.len().min(B).min(sums.len());
    let mut ip = [0.0f32; B];
    for i in 0..n {
        let dot = (2.0 * (c.delta * sums[i] as f32) - c.tq_sum) / c.sqrt_d;
        ip[i] = f1[i] * dot;
    }
    match c.metric {
        Metric::L2 => {
            for i in 0..n {
                out[i] = f0[i] + c.t_norm2 - 2.0 * ip[i];
            }
        }
        Metric::InnerProduct => {
            for i in 0..n {
                out[i] = -(c.konst + ip[i]);
            }
        }
        Metric::Cosine => {
            for i in 0..n {
                out[i] = 1.0 - (c.konst + ip[i]);
            }
        }
    }
}

/// Bit `i` set for each `v[i] ≤ thr` (at most 32 values).
#[inline(always)]
fn under_mask(v: &[f32], thr: f32) -> u32 {
    let mut under = 0u32;
    for (i, &d) in v.iter().take(32).enumerate() {
        under |= u32::from(d <= thr) << i;
    }
    under
}

crate::kernels::retarget! {
    /// [`dist_1bit_portable`] compiled for AVX-512 (sixteen rows per instruction).
    unsafe fn dist_1bit_avx512["avx512f,avx512bw,avx2"] = dist_1bit_portable;
    (c: &Dist1, rest: &[u8], stride: usize, sums: &[i32], out: &mut [f32]) -> u32
}

/// [`round_nearest_portable`], for the tests of the dispatched path.
#[cfg(test)]
pub(crate) fn round_nearest_portable_for_tests(t: &[f32], qu: &mut [u8], bits: u32) -> Rounded {
    round_nearest_portable(t, qu, bits)
}

/// What [`keys_multibit_portable`] needs besides [`Dist1`].
struct KeyM<'a> {
    d: Dist1<'a>,
    /// `‖q'‖`.
    qn: f32,
    /// 2 for L2, else 1.
    scale: f32,
    bound_keys: bool,
}

/// The 1-bit keys of [`RaBitQ::push_refined_rows`] into `out`, by the operations of
/// the 1-bit distance and [`RaBitQ::refine_margin`] per row, in the same order;
/// returns the mask of rows whose key is at most the threshold. Factor `k` of row `i`
/// is at `rest[i · stride + 4k..]` (five factors).
#[inline(always)]
fn keys_multibit_portable(
    c: &KeyM,
    rest: &[u8],
    stride: usize,
    sums: &[i32],
    out: &mut [f32],
) -> u32 {
    const B: usize = crate::kernels::fastscan::BLOCK;
    const { assert!(B <= 32) };
    let n = out.len().min(B).min(sums.len());
    let mut f = [[0.0f32; B]; 4];
    let mut qns = [c.qn; B];
    if let Some(l) = c.d.local {
        let [f0, f1, f2, f4] = &mut f;
        local_1bit_factors::<true>(&l, rest, stride, n, f0, f1, &mut qns);
        for (i, row) in rest.chunks(stride.max(1)).take(n).enumerate() {
            if let Some(w) = row.get(8..12) {
                f2[i] = code::from_bf16(u16::from_le_bytes([w[0], w[1]]));
                f4[i] = code::from_bf16(u16::from_le_bytes([w[2], w[3]]));
            }
        }
    } else if n > 0 && stride >= 20 && rest.len() >= (n - 1) * stride + 20 {
        #[allow(clippy::needless_range_loop)] // `i` indexes four arrays and the rows.
        for i in 0..n {
            // SAFETY: `i · stride + 20 ≤ (n − 1) · stride + 20 ≤ rest.len()`.
            let (a, b, e) = unsafe {
                let p = rest.as_ptr().add(i * stride);
                (
                    u64::from_le(std::ptr::read_unaligned(p as *const u64)),
                    u64::from_le(std::ptr::read_unaligned(p.add(8) as *const u64)),
                    u32::from_le(std::ptr::read_unaligned(p.add(16) as *const u32)),
                )
            };
            f[0][i] = f32::from_bits(a as u32);
            f[1][i] = f32::from_bits((a >> 32) as u32);
            f[2][i] = f32::from_bits(b as u32);
            f[3][i] = f32::from_bits(e);
        }
    } else {
        for (i, row) in rest.chunks(stride.max(1)).take(n).enumerate() {
            if row.len() < 20 {
                break;
            }
            for (slot, k) in [0usize, 1, 2, 4].into_iter().enumerate() {
                f[slot][i] = fk(row, k);
            }
        }
    }
    let (d, scale) = (&c.d, c.scale);
    let mut dist = [0.0f32; B];
    dists_1bit(d, (&f[0], &f[1]), sums, &mut dist[..n]);
    let bound_on = if c.bound_keys { 1.0 } else { 0.0 };
    for i in 0..n {
        let (f4, qn) = (f[3][i], qns[i]);
        let margin = refine_margin_of((f[1][i], f[2][i], f4), qn, d.delta);
        // `f4 · qn` under error-bound keys, else exactly 0 (`f4 · qn · 0` for finite
        // factors).
        let full_bound = f4 * qn * bound_on;
        out[i] = dist[i] - scale * (margin + full_bound);
    }
    under_mask(&out[..n], d.thr)
}

crate::kernels::retarget! {
    /// [`keys_multibit_portable`] compiled for AVX-512.
    unsafe fn keys_multibit_avx512["avx512f,avx512bw,avx2"] = keys_multibit_portable;
    (c: &KeyM, rest: &[u8], stride: usize, sums: &[i32], out: &mut [f32]) -> u32
}

/// [`RaBitQ::refine_margin`] from a row's factors `f1`, `f2`, `f4`, `qn = ‖q'‖` and the
/// query's grid step `delta`.
#[inline(always)]
fn refine_margin_of((f1, f2, f4): (f32, f32, f32), qn: f32, delta: f32) -> f32 {
    REFINE_SIGMAS * ((f2 + f4) * qn / code::EPSILON0 + f1 * delta * QUANT_SIGMA)
}
