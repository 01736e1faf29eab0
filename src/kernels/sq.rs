//! Scan kernels for scalar-quantized codes: weighted sums over code rows without
//! decoding them into a buffer.
//!
//! Every asymmetric scalar-quantizer distance reduces to `s = Σ_d w_d · L[c_d]`, with
//! per-query weights `w` and a level table `L` (see
//! [`crate::quant::scalar::ScalarQuantizer::query_terms`]):
//!
//! - [`scan_u8`]: 8-bit codes with `L[c] = c` (uniform levels): widen, convert, FMA.
//! - [`scan_lut8`]: 8-bit codes with any 256-entry table (AVX-512: register-resident
//!   table, permutes and a blend tree; AVX2: gathers).
//! - [`scan_lut4`]: packed 4-bit codes with any 16-entry table held in one register and
//!   looked up with a permute (`vpermps`), so non-uniform 4-bit levels cost nothing over
//!   uniform ones.
//!
//! Each has a scalar reference; AVX2 and AVX-512 versions are dispatched at runtime and
//! pinned to the reference by the tests. Rows are processed four at a time so the FMA
//! chains overlap.

use super::SimdLevel;

/// Per-query weights for [`scan_lut4`], permuted to the order the SIMD unpacking
/// produces: for every full 16-byte block of a code, the 16 even dimensions then the 16
/// odd ones; the remaining dimensions follow in natural order.
#[derive(Clone, Debug, Default)]
pub struct Lut4Weights {
    dim: usize,
    /// Weights in natural order (the scalar reference reads these).
    natural: Vec<f32>,
    /// Permuted block weights, 32 per full block.
    blocks: Vec<f32>,
}

impl Lut4Weights {
    /// Prepares `w` (natural order, one weight per dimension).
    pub fn new(w: &[f32]) -> Self {
        let mut s = Lut4Weights::default();
        s.set(w);
        s
    }

    /// Re-prepares for new weights, reusing the allocations.
    pub fn set(&mut self, w: &[f32]) {
        self.dim = w.len();
        self.natural.clear();
        self.natural.extend_from_slice(w);
        self.blocks.clear();
        for b in 0..w.len() / 32 {
            let blk = &w[b * 32..b * 32 + 32];
            self.blocks.extend(blk.iter().step_by(2));
            self.blocks.extend(blk.iter().skip(1).step_by(2));
        }
    }

    /// Dimension.
    pub fn dim(&self) -> usize {
        self.dim
    }
}

/// Queries scanned together by the multi-query kernels ([`scan_u8_multi`], …).
pub const NQ: usize = 4;

type U8Fn = unsafe fn(&[f32], &[u8], &mut [f32]);
type Lut8Fn = unsafe fn(&[f32], &[f32; 256], &[u8], &mut [f32]);
type Lut4Fn = unsafe fn(&Lut4Weights, &[f32; 16], &[u8], &mut [f32]);
type U8MultiFn = unsafe fn(&[&[f32]; NQ], &[u8], &mut [f32]);
type Lut8MultiFn = unsafe fn(&[&[f32]; NQ], &[f32; 256], &[u8], &mut [f32]);
type Lut4MultiFn = unsafe fn(&[&Lut4Weights; NQ], &[f32; 16], &[u8], &mut [f32]);

/// The scan kernels of one SIMD level (part of the dispatch table [`super::Kernels`]).
pub(crate) struct SqKernels {
    u8: U8Fn,
    u8_multi: U8MultiFn,
    lut8: Lut8Fn,
    lut8_multi: Lut8MultiFn,
    lut4: Lut4Fn,
    lut4_multi: Lut4MultiFn,
}

impl SqKernels {
    /// The kernels of `level`.
    ///
    /// # Safety
    /// The result's methods run code compiled for `level`: the caller must only let them
    /// be called on a CPU that supports `level`.
    pub(super) const unsafe fn for_level(level: SimdLevel) -> SqKernels {
        match level {
            #[cfg(target_arch = "x86_64")]
            SimdLevel::Avx2 => SqKernels {
                u8: x86::u8_avx2,
                u8_multi: x86::u8_multi_avx2,
                lut8: x86::lut8_avx2,
                lut8_multi: x86::lut8_multi_avx2,
                lut4: x86::lut4_avx2,
                lut4_multi: x86::lut4_multi_avx2,
            },
            #[cfg(target_arch = "x86_64")]
            SimdLevel::Avx512 | SimdLevel::Avx512Vbmi => SqKernels {
                u8: x86::u8_avx512,
                u8_multi: x86::u8_multi_avx512,
                lut8: x86::lut8_avx512,
                lut8_multi: x86::lut8_multi_avx512,
                lut4: x86::lut4_avx512,
                lut4_multi: x86::lut4_multi_avx512,
            },
            _ => SqKernels {
                u8: scalar_u8,
                u8_multi: scalar_u8_multi,
                lut8: scalar_lut8,
                lut8_multi: scalar_lut8_multi,
                lut4: scalar_lut4,
                lut4_multi: scalar_lut4_multi,
            },
        }
    }

    /// [`scan_u8`] at this table's level.
    #[inline]
    pub(crate) fn scan_u8(&self, w: &[f32], codes: &[u8], out: &mut [f32]) {
        assert!(codes.len() >= out.len() * w.len(), "code buffer too short");
        // SAFETY: the CPU supports this table's level (invariant of `super::Kernels`,
        // which holds this table); the kernels need no more than the checked lengths.
        unsafe { (self.u8)(w, codes, out) }
    }

    /// [`scan_u8_multi`] at this table's level.
    #[inline]
    pub(crate) fn scan_u8_multi(&self, w: &[&[f32]; NQ], codes: &[u8], out: &mut [f32]) {
        check_multi(w.map(<[f32]>::len), |d| d, codes, out);
        // SAFETY: as in `scan_u8`.
        unsafe { (self.u8_multi)(w, codes, out) }
    }

    /// [`scan_lut8_multi`] at this table's level.
    #[inline]
    pub(crate) fn scan_lut8_multi(
        &self,
        w: &[&[f32]; NQ],
        lut: &[f32; 256],
        codes: &[u8],
        out: &mut [f32],
    ) {
        check_multi(w.map(<[f32]>::len), |d| d, codes, out);
        // SAFETY: as in `scan_u8`.
        unsafe { (self.lut8_multi)(w, lut, codes, out) }
    }

    /// [`scan_lut8`] at this table's level.
    #[inline]
    pub(crate) fn scan_lut8(&self, w: &[f32], lut: &[f32; 256], codes: &[u8], out: &mut [f32]) {
        assert!(codes.len() >= out.len() * w.len(), "code buffer too short");
        // SAFETY: as in `scan_u8`.
        unsafe { (self.lut8)(w, lut, codes, out) }
    }

    /// [`scan_lut4_multi`] at this table's level.
    #[inline]
    pub(crate) fn scan_lut4_multi(
        &self,
        w: &[&Lut4Weights; NQ],
        lut: &[f32; 16],
        codes: &[u8],
        out: &mut [f32],
    ) {
        check_multi(w.map(|q| q.dim), |d| d.div_ceil(2), codes, out);
        // SAFETY: as in `scan_u8`.
        unsafe { (self.lut4_multi)(w, lut, codes, out) }
    }

    /// [`scan_lut4`] at this table's level.
    #[inline]
    pub(crate) fn scan_lut4(
        &self,
        w: &Lut4Weights,
        lut: &[f32; 16],
        codes: &[u8],
        out: &mut [f32],
    ) {
        assert!(
            codes.len() >= out.len() * w.dim.div_ceil(2),
            "code buffer too short"
        );
        // SAFETY: as in `scan_u8`.
        unsafe { (self.lut4)(w, lut, codes, out) }
    }
}

/// `out[i] = Σ_d w[d] · codes[i·dim + d]` for `out.len()` rows of `dim = w.len()` bytes.
///
/// # Panics
/// If `codes` holds fewer than `out.len() · w.len()` bytes.
#[inline]
pub fn scan_u8(w: &[f32], codes: &[u8], out: &mut [f32]) {
    super::active().sq.scan_u8(w, codes, out)
}

/// The lengths every multi-query kernel needs (one check for all kinds and levels):
/// the queries' weights of one dimension `dims[0]`, whole groups of [`NQ`] sums, and
/// `codes` holding every row (`row_bytes(dim)` bytes each).
fn check_multi(dims: [usize; NQ], row_bytes: impl Fn(usize) -> usize, codes: &[u8], out: &[f32]) {
    assert!(
        dims.iter().all(|&d| d == dims[0]),
        "weights of different lengths"
    );
    assert!(
        out.len().is_multiple_of(NQ),
        "{} sums for {NQ} queries",
        out.len()
    );
    assert!(
        codes.len() >= out.len() / NQ * row_bytes(dims[0]),
        "code buffer too short"
    );
}

/// [`scan_u8`] for [`NQ`] queries over the same rows: `out[q·rows + i] = Σ_d w[q][d] ·
/// codes[i·dim + d]` (`rows = out.len() / NQ`, query-major), each code row loaded and
/// converted once for all the queries. Every sum is bit for bit the one [`scan_u8`]
/// returns for that query and row (the same accumulation, lane for lane).
///
/// # Panics
/// If the weights differ in length, `out.len()` is not a multiple of [`NQ`], or `codes`
/// holds fewer than `rows · dim` bytes.
#[inline]
pub fn scan_u8_multi(w: &[&[f32]; NQ], codes: &[u8], out: &mut [f32]) {
    super::active().sq.scan_u8_multi(w, codes, out)
}

/// [`scan_lut8`] for [`NQ`] queries over the same rows, as [`scan_u8_multi`] (each code
/// step looked up once for all the queries; sums bit for bit [`scan_lut8`]'s).
///
/// # Panics
/// As [`scan_u8_multi`].
#[inline]
pub fn scan_lut8_multi(w: &[&[f32]; NQ], lut: &[f32; 256], codes: &[u8], out: &mut [f32]) {
    super::active().sq.scan_lut8_multi(w, lut, codes, out)
}

/// `out[i] = Σ_d w[d] · lut[codes[i·dim + d]]`.
///
/// # Panics
/// If `codes` holds fewer than `out.len() · w.len()` bytes.
#[inline]
pub fn scan_lut8(w: &[f32], lut: &[f32; 256], codes: &[u8], out: &mut [f32]) {
    super::active().sq.scan_lut8(w, lut, codes, out)
}

/// [`scan_lut4`] for [`NQ`] queries over the same rows, as [`scan_u8_multi`] (each
/// block's levels looked up once for all the queries; sums bit for bit
/// [`scan_lut4`]'s).
///
/// # Panics
/// If the weights differ in dimension, `out.len()` is not a multiple of [`NQ`], or
/// `codes` holds fewer than `rows · ⌈dim/2⌉` bytes.
#[inline]
pub fn scan_lut4_multi(w: &[&Lut4Weights; NQ], lut: &[f32; 16], codes: &[u8], out: &mut [f32]) {
    super::active().sq.scan_lut4_multi(w, lut, codes, out)
}

/// `out[i] = Σ_d w[d] · lut[nibble_d(row i)]` for packed 4-bit rows of `⌈dim/2⌉` bytes
/// (dimension `2j` in the low nibble of byte `j`, `2j + 1` in the high nibble).
///
/// # Panics
/// If `codes` holds fewer than `out.len() · ⌈dim/2⌉` bytes.
#[inline]
pub fn scan_lut4(w: &Lut4Weights, lut: &[f32; 16], codes: &[u8], out: &mut [f32]) {
    super::active().sq.scan_lut4(w, lut, codes, out)
}

/// Scalar reference for [`scan_u8`].
pub fn scalar_u8(w: &[f32], codes: &[u8], out: &mut [f32]) {
    let dim = w.len();
    for (o, row) in out.iter_mut().zip(codes.chunks_exact(dim.max(1))) {
        *o = w.iter().zip(row).map(|(&a, &c)| a * c as f32).sum();
    }
}

/// Scalar [`scan_u8_multi`]: [`scalar_u8`] per query.
pub fn scalar_u8_multi(w: &[&[f32]; NQ], codes: &[u8], out: &mut [f32]) {
    per_query(w, out, |q, o| scalar_u8(q, codes, o));
}

/// Scalar [`scan_lut8_multi`]: [`scalar_lut8`] per query.
pub fn scalar_lut8_multi(w: &[&[f32]; NQ], lut: &[f32; 256], codes: &[u8], out: &mut [f32]) {
    per_query(w, out, |q, o| scalar_lut8(q, lut, codes, o));
}

/// A multi-query kernel as its one-query kernel `one(weights, sums)` per query.
#[inline(always)]
fn per_query<W: Copy>(w: &[W; NQ], out: &mut [f32], mut one: impl FnMut(W, &mut [f32])) {
    let rows = out.len() / NQ;
    for (q, o) in w.iter().zip(out.chunks_exact_mut(rows.max(1))) {
        one(*q, o);
    }
}

/// Scalar [`scan_lut4_multi`]: [`scalar_lut4`] per query.
pub fn scalar_lut4_multi(w: &[&Lut4Weights; NQ], lut: &[f32; 16], codes: &[u8], out: &mut [f32]) {
    per_query(w, out, |q, o| scalar_lut4(q, lut, codes, o));
}

/// Scalar reference for [`scan_lut8`].
pub fn scalar_lut8(w: &[f32], lut: &[f32; 256], codes: &[u8], out: &mut [f32]) {
    let dim = w.len();
    for (o, row) in out.iter_mut().zip(codes.chunks_exact(dim.max(1))) {
        *o = w.iter().zip(row).map(|(&a, &c)| a * lut[c as usize]).sum();
    }
}

/// Scalar reference for [`scan_lut4`].
pub fn scalar_lut4(w: &Lut4Weights, lut: &[f32; 16], codes: &[u8], out: &mut [f32]) {
    let dim = w.dim;
    let cs = dim.div_ceil(2);
    for (o, row) in out.iter_mut().zip(codes.chunks_exact(cs.max(1))) {
        *o = (0..dim)
            .map(|d| w.natural[d] * lut[((row[d / 2] >> (4 * (d % 2))) & 0x0F) as usize])
            .sum();
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    //! AVX2 and AVX-512 scan kernels, installed in the dispatch tables of their levels.
    //! Each scans `out.len()` rows and needs `codes` to hold them (checked by
    //! [`super::SqKernels`]).

    use super::Lut4Weights;
    use std::arch::x86_64::*;

    /// Scalar tail of a `w · L[code]` sum over dims `from..w.len()`.
    #[inline(always)]
    fn tail8(w: &[f32], row: &[u8], from: usize, lut: impl Fn(u8) -> f32) -> f32 {
        let mut s = 0.0;
        for d in from..w.len() {
            s += w[d] * lut(row[d]);
        }
        s
    }

    #[inline(always)]
    fn tail4(w: &Lut4Weights, lut: &[f32; 16], row: &[u8], from: usize) -> f32 {
        let mut s = 0.0;
        for d in from..w.dim {
            s += w.natural[d] * lut[((row[d / 2] >> (4 * (d % 2))) & 0x0F) as usize];
        }
        s
    }

    /// Runs `body` on groups of four rows then on single rows; `body(rows, sums)` fills
    /// `sums[..rows.len()]`.
    #[inline(always)]
    fn by_four(
        codes: &[u8],
        stride: usize,
        out: &mut [f32],
        mut four: impl FnMut([&[u8]; 4]) -> [f32; 4],
        mut one: impl FnMut(&[u8]) -> f32,
    ) {
        let n = out.len();
        let mut i = 0;
        while i + 4 <= n {
            let r = |k: usize| &codes[(i + k) * stride..(i + k + 1) * stride];
            let s = four([r(0), r(1), r(2), r(3)]);
            out[i..i + 4].copy_from_slice(&s);
            i += 4;
        }
        while i < n {
            out[i] = one(&codes[i * stride..(i + 1) * stride]);
            i += 1;
        }
    }

    /// The sum of 16 lanes by halves: lanes `i + 8` onto `i`, then `i + 4`, `i + 2`
    /// and `i + 1` (the tree `_mm512_reduce_add_ps` compiles to here, written out so
    /// that [`hsum16x4`] can reproduce it bit for bit).
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn hsum16(a: __m512) -> f32 {
        let h = _mm512_castps512_ps256(a);
        let h = _mm256_add_ps(h, upper256(a));
        let q = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps::<1>(h));
        let p = _mm_add_ps(q, _mm_permute_ps::<0b01_00_11_10>(q));
        _mm_cvtss_f32(_mm_add_ss(p, _mm_movehdup_ps(p)))
    }

    /// The upper 256 bits of `a` (AVX-512F alone: `vextractf32x8` needs DQ).
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn upper256(a: __m512) -> __m256 {
        _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(a)))
    }

    /// [`hsum16`] of four vectors at once, in lane order: the same additions on the same
    /// operands, four rows per instruction (shuffles between 128-bit blocks instead of
    /// a reduction per vector).
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn hsum16x4(a: __m512, b: __m512, c: __m512, d: __m512) -> __m128 {
        // Lanes i + 8 onto i: blocks (0, 1) + (2, 3) of two vectors side by side.
        let ab = _mm512_add_ps(
            _mm512_shuffle_f32x4::<0b01_00_01_00>(a, b),
            _mm512_shuffle_f32x4::<0b11_10_11_10>(a, b),
        );
        let cd = _mm512_add_ps(
            _mm512_shuffle_f32x4::<0b01_00_01_00>(c, d),
            _mm512_shuffle_f32x4::<0b11_10_11_10>(c, d),
        );
        // Lanes i + 4 onto i: block k of the result is vector k's four partial sums.
        let s = _mm512_add_ps(
            _mm512_shuffle_f32x4::<0b10_00_10_00>(ab, cd),
            _mm512_shuffle_f32x4::<0b11_01_11_01>(ab, cd),
        );
        // Lanes i + 2 onto i, then i + 1 onto i, within each block.
        let s = _mm512_add_ps(s, _mm512_permute_ps::<0b01_00_11_10>(s));
        let s = _mm512_add_ps(s, _mm512_movehdup_ps(s));
        let first = _mm512_setr_epi32(0, 4, 8, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0);
        _mm512_castps512_ps128(_mm512_permutexvar_ps(first, s))
    }

    /// One row's sum: the FMA chain over 16-lane steps of `decode`d code bytes (byte
    /// value → level), reduced by [`hsum16`], plus the scalar tail (`level` per byte).
    ///
    /// # Safety
    /// The CPU must support AVX-512F; `row` holds `w.len()` bytes.
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn row_sum(
        w: &[f32],
        row: &[u8],
        decode: impl Fn(__m128i) -> __m512,
        level: impl Fn(u8) -> f32,
    ) -> f32 {
        let full = w.len() / 16 * 16;
        let mut acc = _mm512_setzero_ps();
        let mut j = 0;
        while j < full {
            // SAFETY: 16 bytes at j < full <= dim of the row, 16 floats of `w`.
            let (c, wv) = unsafe {
                (
                    _mm_loadu_si128(row.as_ptr().add(j) as *const __m128i),
                    _mm512_loadu_ps(w.as_ptr().add(j)),
                )
            };
            acc = _mm512_fmadd_ps(decode(c), wv, acc);
            j += 16;
        }
        hsum16(acc) + tail8(w, row, full, level)
    }

    /// The scalar tails (dimensions `full..`) of four rows, as a vector.
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn tails4(w: &[f32], rows: &[&[u8]; 4], full: usize, level: impl Fn(u8) -> f32) -> __m128 {
        let t = |k: usize| tail8(w, rows[k], full, &level);
        _mm_setr_ps(t(0), t(1), t(2), t(3))
    }

    /// The `decode`d code steps of four rows at dimension `j`.
    ///
    /// # Safety
    /// The CPU must support AVX-512F; each row holds `j + 16` bytes.
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn step4(
        rows: &[&[u8]; 4],
        j: usize,
        decode: impl Fn(__m128i) -> __m512,
    ) -> [__m512; 4] {
        // (Written out: an `array::from_fn` closure is not compiled for AVX-512, so it
        // was called per step rather than inlined.)
        // SAFETY: as the caller guarantees.
        let c = |k: usize| unsafe { _mm_loadu_si128(rows[k].as_ptr().add(j) as *const __m128i) };
        [decode(c(0)), decode(c(1)), decode(c(2)), decode(c(3))]
    }

    /// Four rows' sums for one query: four FMA chains side by side, each [`row_sum`]'s
    /// (reduced four at once by [`hsum16x4`], the same bits).
    ///
    /// # Safety
    /// The CPU must support AVX-512F; every row holds `w.len()` bytes.
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn four_sums(
        w: &[f32],
        rows: [&[u8]; 4],
        decode: impl Fn(__m128i) -> __m512,
        level: impl Fn(u8) -> f32,
    ) -> [f32; 4] {
        let full = w.len() / 16 * 16;
        let mut acc = [_mm512_setzero_ps(); 4];
        let mut j = 0;
        while j < full {
            // SAFETY: 16 bytes at j < full <= dim of each row, 16 floats of `w`.
            let (wv, f) = unsafe { (_mm512_loadu_ps(w.as_ptr().add(j)), step4(&rows, j, &decode)) };
            for k in 0..4 {
                acc[k] = _mm512_fmadd_ps(f[k], wv, acc[k]);
            }
            j += 16;
        }
        let t = tails4(w, &rows, full, level);
        let mut s = [0.0f32; 4];
        // SAFETY: `s` holds four floats.
        unsafe {
            _mm_storeu_ps(
                s.as_mut_ptr(),
                _mm_add_ps(hsum16x4(acc[0], acc[1], acc[2], acc[3]), t),
            )
        };
        s
    }

    /// Every row's sum for [`super::NQ`] queries (query-major `out`), four rows by four
    /// queries per step (16 accumulators): each code step is loaded and decoded once for
    /// all the queries, and each accumulator is the chain [`four_sums`] / [`row_sum`]
    /// computes for its query and row.
    ///
    /// # Safety
    /// The CPU must support AVX-512F; every weight slice holds `dim` floats and `codes`
    /// `out.len() / NQ` rows of `dim` bytes.
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn multi_sums(
        w: &[&[f32]; super::NQ],
        codes: &[u8],
        out: &mut [f32],
        decode: impl Fn(__m128i) -> __m512,
        level: impl Fn(u8) -> f32,
    ) {
        const NQ: usize = super::NQ;
        let dim = w[0].len();
        let full = dim / 16 * 16;
        let rows = out.len() / NQ;
        let mut i = 0;
        while i + 4 <= rows {
            let block = &codes[i * dim..(i + 4) * dim];
            let (r01, r23) = block.split_at(2 * dim);
            let r: [&[u8]; 4] = [&r01[..dim], &r01[dim..], &r23[..dim], &r23[dim..]];
            let mut acc = [[_mm512_setzero_ps(); 4]; NQ];
            let mut j = 0;
            while j < full {
                // SAFETY: 16 bytes at j < full <= dim of each row.
                let f = unsafe { step4(&r, j, &decode) };
                for (a, q) in acc.iter_mut().zip(w) {
                    // SAFETY: 16 floats at j < full <= dim of each query's weights.
                    let wv = unsafe { _mm512_loadu_ps(q.as_ptr().add(j)) };
                    for k in 0..4 {
                        a[k] = _mm512_fmadd_ps(f[k], wv, a[k]);
                    }
                }
                j += 16;
            }
            for (qi, (a, q)) in acc.iter().zip(w).enumerate() {
                let t = tails4(q, &r, full, &level);
                let v = _mm_add_ps(hsum16x4(a[0], a[1], a[2], a[3]), t);
                let o = &mut out[qi * rows + i..qi * rows + i + 4];
                // SAFETY: `o` holds four floats.
                unsafe { _mm_storeu_ps(o.as_mut_ptr(), v) };
            }
            i += 4;
        }
        while i < rows {
            let row = &codes[i * dim..(i + 1) * dim];
            for (qi, q) in w.iter().enumerate() {
                // SAFETY: a row of `dim` bytes.
                out[qi * rows + i] = unsafe { row_sum(q, row, &decode, &level) };
            }
            i += 1;
        }
    }

    /// Uniform levels: a code byte is its level.
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn widen(c: __m128i) -> __m512 {
        _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(c))
    }

    /// AVX-512 [`super::scan_u8`].
    ///
    /// # Safety
    /// The CPU must support AVX-512F; `codes` must hold `out.len()` rows.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn u8_avx512(w: &[f32], codes: &[u8], out: &mut [f32]) {
        let level = |c: u8| c as f32;
        // SAFETY: rows of `dim` bytes.
        let four = |rows: [&[u8]; 4]| unsafe { four_sums(w, rows, |c| widen(c), level) };
        // SAFETY: as above.
        let one = |row: &[u8]| unsafe { row_sum(w, row, |c| widen(c), level) };
        by_four(codes, w.len(), out, four, one);
    }

    /// AVX-512 [`super::scan_u8_multi`].
    ///
    /// # Safety
    /// The CPU must support AVX-512F; every weight slice holds `dim` floats and `codes`
    /// `out.len() / NQ` rows of `dim` bytes.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn u8_multi_avx512(w: &[&[f32]; super::NQ], codes: &[u8], out: &mut [f32]) {
        // SAFETY: as the caller guarantees.
        unsafe { multi_sums(w, codes, out, |c| widen(c), |c| c as f32) }
    }

    /// Looks up 16 byte-valued indices in a 256-entry table held in 16 registers:
    /// eight two-register permutes (32 entries each, index bits 0–4), then a blend tree
    /// on index bits 5, 6 and 7. Measured ~2× faster than a 16-lane gather.
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn lookup256(idx: __m512i, t: &[__m512; 16]) -> __m512 {
        let p = |k: usize| _mm512_permutex2var_ps(t[2 * k], idx, t[2 * k + 1]);
        let r = [p(0), p(1), p(2), p(3), p(4), p(5), p(6), p(7)];
        let m5 = _mm512_test_epi32_mask(idx, _mm512_set1_epi32(32));
        let m6 = _mm512_test_epi32_mask(idx, _mm512_set1_epi32(64));
        let m7 = _mm512_test_epi32_mask(idx, _mm512_set1_epi32(128));
        let s0 = _mm512_mask_blend_ps(m5, r[0], r[1]);
        let s1 = _mm512_mask_blend_ps(m5, r[2], r[3]);
        let s2 = _mm512_mask_blend_ps(m5, r[4], r[5]);
        let s3 = _mm512_mask_blend_ps(m5, r[6], r[7]);
        let u0 = _mm512_mask_blend_ps(m6, s0, s1);
        let u1 = _mm512_mask_blend_ps(m6, s2, s3);
        _mm512_mask_blend_ps(m7, u0, u1)
    }

    /// The 256-entry table in registers, for [`lookup256`].
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn table256(lut: &[f32; 256]) -> [__m512; 16] {
        // SAFETY: each load reads 16 floats at 16k < 256 of the table.
        let t = |k: usize| unsafe { _mm512_loadu_ps(lut.as_ptr().add(16 * k)) };
        [
            t(0),
            t(1),
            t(2),
            t(3),
            t(4),
            t(5),
            t(6),
            t(7),
            t(8),
            t(9),
            t(10),
            t(11),
            t(12),
            t(13),
            t(14),
            t(15),
        ]
    }

    /// AVX-512 [`super::scan_lut8`].
    ///
    /// # Safety
    /// The CPU must support AVX-512F; `codes` must hold `out.len()` rows.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn lut8_avx512(w: &[f32], lut: &[f32; 256], codes: &[u8], out: &mut [f32]) {
        let t = table256(lut);
        let decode = |c: __m128i| lookup256(_mm512_cvtepu8_epi32(c), &t);
        let level = |c: u8| lut[c as usize];
        // SAFETY: rows of `dim` bytes.
        let four = |rows: [&[u8]; 4]| unsafe { four_sums(w, rows, decode, level) };
        // SAFETY: as above.
        let one = |row: &[u8]| unsafe { row_sum(w, row, decode, level) };
        by_four(codes, w.len(), out, four, one);
    }

    /// AVX-512 [`super::scan_lut8_multi`]: each code step looked up once for the four
    /// queries.
    ///
    /// # Safety
    /// The CPU must support AVX-512F; every weight slice holds `dim` floats and `codes`
    /// `out.len() / NQ` rows of `dim` bytes.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn lut8_multi_avx512(
        w: &[&[f32]; super::NQ],
        lut: &[f32; 256],
        codes: &[u8],
        out: &mut [f32],
    ) {
        let t = table256(lut);
        let decode = |c: __m128i| lookup256(_mm512_cvtepu8_epi32(c), &t);
        // SAFETY: as the caller guarantees.
        unsafe { multi_sums(w, codes, out, decode, |c| lut[c as usize]) }
    }

    /// AVX-512 [`super::scan_lut4`].
    ///
    /// # Safety
    /// The CPU must support AVX-512F; `codes` must hold `out.len()` rows.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn lut4_avx512(
        w: &Lut4Weights,
        lut: &[f32; 16],
        codes: &[u8],
        out: &mut [f32],
    ) {
        let lv = lut16(lut);
        // SAFETY: rows of `⌈dim / 2⌉` bytes, weights of `w.dim` dimensions.
        let four = |rows: [&[u8]; 4]| unsafe {
            let mut acc = [_mm512_setzero_ps(); 4];
            for b in 0..w.dim / 32 {
                let (we, wo) = lut4_weights(w, b);
                let v = lut4_step4(&rows, b, lv);
                for k in 0..4 {
                    acc[k] = _mm512_fmadd_ps(v[k].0, we, acc[k]);
                    acc[k] = _mm512_fmadd_ps(v[k].1, wo, acc[k]);
                }
            }
            let mut s = [0.0f32; 4];
            _mm_storeu_ps(
                s.as_mut_ptr(),
                _mm_add_ps(
                    hsum16x4(acc[0], acc[1], acc[2], acc[3]),
                    lut4_tails4(w, lut, &rows),
                ),
            );
            s
        };
        // SAFETY: as above.
        let one = |row: &[u8]| unsafe { lut4_row(w, lut, lv, row) };
        by_four(codes, w.dim.div_ceil(2), out, four, one);
    }

    /// The 16-entry table in a register.
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn lut16(lut: &[f32; 16]) -> __m512 {
        // SAFETY: 16 floats.
        unsafe { _mm512_loadu_ps(lut.as_ptr()) }
    }

    /// The weights of 32-dimension block `b` (its even then its odd dimensions).
    ///
    /// # Safety
    /// `w` has at least `32 (b + 1)` dimensions.
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn lut4_weights(w: &Lut4Weights, b: usize) -> (__m512, __m512) {
        let bw = w.blocks.as_ptr();
        // SAFETY: `w.blocks` holds 32 weights per full block.
        unsafe {
            (
                _mm512_loadu_ps(bw.add(b * 32)),
                _mm512_loadu_ps(bw.add(b * 32 + 16)),
            )
        }
    }

    /// The levels of block `b` (bytes `16b..16b + 16`) of a packed 4-bit row: low
    /// nibbles (even dimensions), high nibbles (odd ones).
    ///
    /// # Safety
    /// `row` holds `16 (b + 1)` bytes.
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn lut4_step(row: &[u8], b: usize, lv: __m512) -> (__m512, __m512) {
        let m = _mm_set1_epi8(0x0F);
        // SAFETY: as the caller guarantees.
        let x = unsafe { _mm_loadu_si128(row.as_ptr().add(b * 16) as *const __m128i) };
        let lo = _mm_and_si128(x, m);
        let hi = _mm_and_si128(_mm_srli_epi16(x, 4), m);
        (
            _mm512_permutexvar_ps(_mm512_cvtepu8_epi32(lo), lv),
            _mm512_permutexvar_ps(_mm512_cvtepu8_epi32(hi), lv),
        )
    }

    /// [`lut4_step`] of four rows.
    ///
    /// # Safety
    /// As [`lut4_step`] for each row.
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn lut4_step4(rows: &[&[u8]; 4], b: usize, lv: __m512) -> [(__m512, __m512); 4] {
        // SAFETY: as the caller guarantees.
        let v = |k: usize| unsafe { lut4_step(rows[k], b, lv) };
        [v(0), v(1), v(2), v(3)]
    }

    /// One packed 4-bit row's sum: two FMAs per 32-dimension block in one chain,
    /// reduced by [`hsum16`], plus the scalar tail.
    ///
    /// # Safety
    /// `row` holds `⌈w.dim / 2⌉` bytes.
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn lut4_row(w: &Lut4Weights, lut: &[f32; 16], lv: __m512, row: &[u8]) -> f32 {
        let mut acc = _mm512_setzero_ps();
        for b in 0..w.dim / 32 {
            // SAFETY: as the caller guarantees.
            let ((we, wo), (vlo, vhi)) = unsafe { (lut4_weights(w, b), lut4_step(row, b, lv)) };
            acc = _mm512_fmadd_ps(vlo, we, acc);
            acc = _mm512_fmadd_ps(vhi, wo, acc);
        }
        hsum16(acc) + tail4(w, lut, row, w.dim / 32 * 32)
    }

    /// The scalar tails of four packed 4-bit rows, as a vector.
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn lut4_tails4(w: &Lut4Weights, lut: &[f32; 16], rows: &[&[u8]; 4]) -> __m128 {
        let done = w.dim / 32 * 32;
        let t = |k: usize| tail4(w, lut, rows[k], done);
        _mm_setr_ps(t(0), t(1), t(2), t(3))
    }

    /// AVX-512 [`super::scan_lut4_multi`]: four rows by four queries per block, each
    /// block's levels looked up once for the four queries; every sum bit for bit
    /// [`lut4_avx512`]'s.
    ///
    /// # Safety
    /// The CPU must support AVX-512F; every weight set has the same `dim` and `codes`
    /// holds `out.len() / NQ` rows of `⌈dim / 2⌉` bytes.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn lut4_multi_avx512(
        w: &[&Lut4Weights; super::NQ],
        lut: &[f32; 16],
        codes: &[u8],
        out: &mut [f32],
    ) {
        const NQ: usize = super::NQ;
        let (dim, lv) = (w[0].dim, lut16(lut));
        let cs = dim.div_ceil(2);
        let rows = out.len() / NQ;
        let mut i = 0;
        while i + 4 <= rows {
            let block = &codes[i * cs..(i + 4) * cs];
            let (r01, r23) = block.split_at(2 * cs);
            let r: [&[u8]; 4] = [&r01[..cs], &r01[cs..], &r23[..cs], &r23[cs..]];
            let mut acc = [[_mm512_setzero_ps(); 4]; NQ];
            for b in 0..dim / 32 {
                // SAFETY: block b of rows of `cs` bytes.
                let v = unsafe { lut4_step4(&r, b, lv) };
                for (a, q) in acc.iter_mut().zip(w) {
                    // SAFETY: every weight set has `dim` dimensions.
                    let (we, wo) = unsafe { lut4_weights(q, b) };
                    for k in 0..4 {
                        a[k] = _mm512_fmadd_ps(v[k].0, we, a[k]);
                        a[k] = _mm512_fmadd_ps(v[k].1, wo, a[k]);
                    }
                }
            }
            for (qi, (a, q)) in acc.iter().zip(w).enumerate() {
                let t = lut4_tails4(q, lut, &r);
                let v = _mm_add_ps(hsum16x4(a[0], a[1], a[2], a[3]), t);
                let o = &mut out[qi * rows + i..qi * rows + i + 4];
                // SAFETY: `o` holds four floats.
                unsafe { _mm_storeu_ps(o.as_mut_ptr(), v) };
            }
            i += 4;
        }
        while i < rows {
            let row = &codes[i * cs..(i + 1) * cs];
            for (qi, q) in w.iter().enumerate() {
                // SAFETY: a row of `cs` bytes.
                out[qi * rows + i] = unsafe { lut4_row(q, lut, lv, row) };
            }
            i += 1;
        }
    }

    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn hsum(v: __m256) -> f32 {
        let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 0x55));
        _mm_cvtss_f32(s)
    }

    /// AVX2 [`super::scan_u8`].
    ///
    /// # Safety
    /// The CPU must support AVX2 and FMA; `codes` must hold `out.len()` rows.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn u8_avx2(w: &[f32], codes: &[u8], out: &mut [f32]) {
        let decode = |c: __m128i| _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(c));
        let level = |c: u8| c as f32;
        // SAFETY: rows of `dim` bytes.
        let four = |rows: [&[u8]; 4]| unsafe { four8_avx2(w, rows, decode, level) };
        // SAFETY: as above.
        let one = |row: &[u8]| unsafe { row8_avx2(w, row, decode, level) };
        by_four(codes, w.len(), out, four, one);
    }

    /// Four rows' sums for one query at the AVX2 level: four FMA chains side by side,
    /// each [`row8_avx2`]'s.
    ///
    /// # Safety
    /// The CPU must support AVX2 and FMA; every row holds `w.len()` bytes.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn four8_avx2(
        w: &[f32],
        rows: [&[u8]; 4],
        decode: impl Fn(__m128i) -> __m256,
        level: impl Fn(u8) -> f32,
    ) -> [f32; 4] {
        let full = w.len() / 8 * 8;
        let mut acc = [_mm256_setzero_ps(); 4];
        let mut j = 0;
        while j < full {
            // SAFETY: 8 floats of `w` and 8 bytes of each row at j < full <= dim.
            let wv = unsafe { _mm256_loadu_ps(w.as_ptr().add(j)) };
            for k in 0..4 {
                // SAFETY: as above.
                let c = unsafe { _mm_loadl_epi64(rows[k].as_ptr().add(j) as *const __m128i) };
                acc[k] = _mm256_fmadd_ps(decode(c), wv, acc[k]);
            }
            j += 8;
        }
        let t = |k: usize| hsum(acc[k]) + tail8(w, rows[k], full, &level);
        [t(0), t(1), t(2), t(3)]
    }

    /// One row's sum at the AVX2 level: the FMA chain over 8-lane steps of `decode`d
    /// code bytes, [`hsum`], plus the scalar tail (the one-row path of [`u8_avx2`] and
    /// [`lut8_avx2`], and of [`multi8_avx2`]).
    ///
    /// # Safety
    /// The CPU must support AVX2 and FMA; `row` holds `w.len()` bytes.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn row8_avx2(
        w: &[f32],
        row: &[u8],
        decode: impl Fn(__m128i) -> __m256,
        level: impl Fn(u8) -> f32,
    ) -> f32 {
        let full = w.len() / 8 * 8;
        let mut acc = _mm256_setzero_ps();
        let mut j = 0;
        while j < full {
            // SAFETY: 8 bytes at j < full <= dim of the row, 8 floats of `w`.
            let (c, wv) = unsafe {
                (
                    _mm_loadl_epi64(row.as_ptr().add(j) as *const __m128i),
                    _mm256_loadu_ps(w.as_ptr().add(j)),
                )
            };
            acc = _mm256_fmadd_ps(decode(c), wv, acc);
            j += 8;
        }
        hsum(acc) + tail8(w, row, full, level)
    }

    /// The AVX2 four-query scan of 8-bit codes: two rows by four queries per step (eight
    /// accumulators, all sixteen registers' worth with the steps and weights), each code
    /// step loaded and decoded once for the four queries; every sum is [`row8_avx2`]'s.
    ///
    /// # Safety
    /// The CPU must support AVX2 and FMA; every weight slice holds `dim` floats and
    /// `codes` `out.len() / NQ` rows of `dim` bytes.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn multi8_avx2(
        w: &[&[f32]; super::NQ],
        codes: &[u8],
        out: &mut [f32],
        decode: impl Fn(__m128i) -> __m256,
        level: impl Fn(u8) -> f32,
    ) {
        const NQ: usize = super::NQ;
        let dim = w[0].len();
        let full = dim / 8 * 8;
        let rows = out.len() / NQ;
        let mut i = 0;
        while i + 2 <= rows {
            let (r0, r1) = codes[i * dim..(i + 2) * dim].split_at(dim);
            let mut acc = [[_mm256_setzero_ps(); 2]; NQ];
            let mut j = 0;
            while j < full {
                // SAFETY: 8 bytes at j < full <= dim of each row.
                let (c0, c1) = unsafe {
                    (
                        _mm_loadl_epi64(r0.as_ptr().add(j) as *const __m128i),
                        _mm_loadl_epi64(r1.as_ptr().add(j) as *const __m128i),
                    )
                };
                let (f0, f1) = (decode(c0), decode(c1));
                for (a, q) in acc.iter_mut().zip(w) {
                    // SAFETY: 8 floats at j < full <= dim of each query's weights.
                    let wv = unsafe { _mm256_loadu_ps(q.as_ptr().add(j)) };
                    a[0] = _mm256_fmadd_ps(f0, wv, a[0]);
                    a[1] = _mm256_fmadd_ps(f1, wv, a[1]);
                }
                j += 8;
            }
            for (qi, (a, q)) in acc.iter().zip(w).enumerate() {
                out[qi * rows + i] = hsum(a[0]) + tail8(q, r0, full, &level);
                out[qi * rows + i + 1] = hsum(a[1]) + tail8(q, r1, full, &level);
            }
            i += 2;
        }
        if i < rows {
            let row = &codes[i * dim..(i + 1) * dim];
            for (qi, q) in w.iter().enumerate() {
                // SAFETY: a row of `dim` bytes.
                out[qi * rows + i] = unsafe { row8_avx2(q, row, &decode, &level) };
            }
        }
    }

    /// AVX2 [`super::scan_u8_multi`].
    ///
    /// # Safety
    /// As [`multi8_avx2`].
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn u8_multi_avx2(w: &[&[f32]; super::NQ], codes: &[u8], out: &mut [f32]) {
        let decode = |c: __m128i| _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(c));
        // SAFETY: as the caller guarantees.
        unsafe { multi8_avx2(w, codes, out, decode, |c| c as f32) }
    }

    /// AVX2 [`super::scan_lut8_multi`]: each step's gather done once for the four queries.
    ///
    /// # Safety
    /// As [`multi8_avx2`].
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn lut8_multi_avx2(
        w: &[&[f32]; super::NQ],
        lut: &[f32; 256],
        codes: &[u8],
        out: &mut [f32],
    ) {
        let lp = lut.as_ptr();
        // SAFETY: the gather indexes the 256-entry table with byte values.
        let decode = |c: __m128i| unsafe { _mm256_i32gather_ps::<4>(lp, _mm256_cvtepu8_epi32(c)) };
        // SAFETY: as the caller guarantees.
        unsafe { multi8_avx2(w, codes, out, decode, |c| lut[c as usize]) }
    }

    /// The nibbles of 32-dimension block `b` of a packed 4-bit row (its bytes
    /// `16b..16b + 16`): low (even dimensions), high (odd ones).
    ///
    /// # Safety
    /// The CPU must support AVX2; `row` holds `16 (b + 1)` bytes.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn lut4_nibbles_avx2(row: &[u8], b: usize) -> (__m128i, __m128i) {
        let m = _mm_set1_epi8(0x0F);
        // SAFETY: as the caller guarantees.
        let x = unsafe { _mm_loadu_si128(row.as_ptr().add(b * 16) as *const __m128i) };
        (_mm_and_si128(x, m), _mm_and_si128(_mm_srli_epi16(x, 4), m))
    }

    /// The levels of part `part` of a block from its [`lut4_nibbles_avx2`], in the
    /// order [`lut4_avx2`] sums them (weights `8·part..` of the block): the low nibbles
    /// of bytes 0–7 and 8–15, then the high nibbles of bytes 0–7 and 8–15. The one-row
    /// and the multi-query paths both take their levels from here.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn lut4_part_avx2((lo, hi): (__m128i, __m128i), part: usize, l0: __m256, l1: __m256) -> __m256 {
        let n = if part < 2 { lo } else { hi };
        let n = if part % 2 == 1 {
            _mm_srli_si128(n, 8)
        } else {
            n
        };
        lookup16(_mm256_cvtepu8_epi32(n), l0, l1)
    }

    /// AVX2 [`super::scan_lut4_multi`]: two rows by four queries per step (eight
    /// accumulators), each step's levels looked up once for the four queries; every sum
    /// bit for bit [`lut4_avx2`]'s (the same chain: blocks in order, the four parts of a
    /// block in order).
    ///
    /// # Safety
    /// The CPU must support AVX2 and FMA; every weight set has the same `dim` and `codes`
    /// holds `out.len() / NQ` rows of `⌈dim / 2⌉` bytes.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn lut4_multi_avx2(
        w: &[&Lut4Weights; super::NQ],
        lut: &[f32; 16],
        codes: &[u8],
        out: &mut [f32],
    ) {
        const NQ: usize = super::NQ;
        let dim = w[0].dim;
        let (cs, blocks, done) = (dim.div_ceil(2), dim / 32, dim / 32 * 32);
        // SAFETY: 16 floats.
        let (l0, l1) = unsafe {
            (
                _mm256_loadu_ps(lut.as_ptr()),
                _mm256_loadu_ps(lut.as_ptr().add(8)),
            )
        };
        let rows = out.len() / NQ;
        let mut i = 0;
        while i + 2 <= rows {
            let (r0, r1) = codes[i * cs..(i + 2) * cs].split_at(cs);
            let mut acc = [[_mm256_setzero_ps(); 2]; NQ];
            for b in 0..blocks {
                // SAFETY: block b of rows of `cs` bytes.
                let (n0, n1) = unsafe { (lut4_nibbles_avx2(r0, b), lut4_nibbles_avx2(r1, b)) };
                for part in 0..4 {
                    let (f0, f1) = (
                        lut4_part_avx2(n0, part, l0, l1),
                        lut4_part_avx2(n1, part, l0, l1),
                    );
                    for (a, q) in acc.iter_mut().zip(w) {
                        // SAFETY: `q.blocks` holds 32 weights per full block.
                        let wv =
                            unsafe { _mm256_loadu_ps(q.blocks.as_ptr().add(b * 32 + 8 * part)) };
                        a[0] = _mm256_fmadd_ps(f0, wv, a[0]);
                        a[1] = _mm256_fmadd_ps(f1, wv, a[1]);
                    }
                }
            }
            for (qi, (a, q)) in acc.iter().zip(w).enumerate() {
                out[qi * rows + i] = hsum(a[0]) + tail4(q, lut, r0, done);
                out[qi * rows + i + 1] = hsum(a[1]) + tail4(q, lut, r1, done);
            }
            i += 2;
        }
        if i < rows {
            let row = &codes[i * cs..(i + 1) * cs];
            for (qi, q) in w.iter().enumerate() {
                let mut one = [0.0f32];
                // SAFETY: a row of `cs` bytes.
                unsafe { lut4_avx2(q, lut, row, &mut one) };
                out[qi * rows + i] = one[0];
            }
        }
    }

    /// AVX2 [`super::scan_lut8`] (gathers).
    ///
    /// # Safety
    /// The CPU must support AVX2 and FMA; `codes` must hold `out.len()` rows.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn lut8_avx2(w: &[f32], lut: &[f32; 256], codes: &[u8], out: &mut [f32]) {
        let lp = lut.as_ptr();
        // SAFETY: the gather indexes the 256-entry table with byte values.
        let decode = |c: __m128i| unsafe { _mm256_i32gather_ps::<4>(lp, _mm256_cvtepu8_epi32(c)) };
        let level = |c: u8| lut[c as usize];
        // SAFETY: rows of `dim` bytes.
        let four = |rows: [&[u8]; 4]| unsafe { four8_avx2(w, rows, decode, level) };
        // SAFETY: as above.
        let one = |row: &[u8]| unsafe { row8_avx2(w, row, decode, level) };
        by_four(codes, w.len(), out, four, one);
    }

    /// Looks up 8 indices (0..16) in a 16-entry table split into two registers.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn lookup16(idx: __m256i, lo: __m256, hi: __m256) -> __m256 {
        let a = _mm256_permutevar8x32_ps(lo, idx);
        let b = _mm256_permutevar8x32_ps(hi, idx);
        // Bit 3 of the index selects the upper half; move it to the sign bit for blendv.
        _mm256_blendv_ps(a, b, _mm256_castsi256_ps(_mm256_slli_epi32(idx, 28)))
    }

    /// AVX2 [`super::scan_lut4`].
    ///
    /// # Safety
    /// The CPU must support AVX2 and FMA; `codes` must hold `out.len()` rows.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn lut4_avx2(
        w: &Lut4Weights,
        lut: &[f32; 16],
        codes: &[u8],
        out: &mut [f32],
    ) {
        let cs = w.dim.div_ceil(2);
        let blocks = w.dim / 32;
        let done = blocks * 32;
        // SAFETY: as in `lut4_avx512`.
        unsafe {
            let l0 = _mm256_loadu_ps(lut.as_ptr());
            let l1 = _mm256_loadu_ps(lut.as_ptr().add(8));
            let bw = w.blocks.as_ptr();
            let block = |row: &[u8], b: usize, acc: __m256| {
                let p = bw.add(b * 32);
                let mut acc = acc;
                let n = lut4_nibbles_avx2(row, b);
                for part in 0..4 {
                    let f = lut4_part_avx2(n, part, l0, l1);
                    acc = _mm256_fmadd_ps(f, _mm256_loadu_ps(p.add(8 * part)), acc);
                }
                acc
            };
            let four = |rows: [&[u8]; 4]| {
                let mut acc = [_mm256_setzero_ps(); 4];
                for b in 0..blocks {
                    for k in 0..4 {
                        acc[k] = block(rows[k], b, acc[k]);
                    }
                }
                let mut s = [0.0f32; 4];
                for k in 0..4 {
                    s[k] = hsum(acc[k]) + tail4(w, lut, rows[k], done);
                }
                s
            };
            let one = |row: &[u8]| {
                let mut acc = _mm256_setzero_ps();
                for b in 0..blocks {
                    acc = block(row, b, acc);
                }
                hsum(acc) + tail4(w, lut, row, done)
            };
            by_four(codes, cs, out, four, one);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::Kernels;
    use crate::rng::{RngExt, seeded};

    fn close(a: &[f32], b: &[f32], what: &str) {
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            let tol = 1e-4 * (1.0 + x.abs().max(y.abs()));
            assert!((x - y).abs() <= tol, "{what} row {i}: {x} vs {y}");
        }
    }

    /// Every level's kernels equal the scalar reference on odd dimensions and row counts
    /// (tails of both the SIMD width and the four-row groups).
    #[test]
    fn every_level_matches_scalar_reference() {
        let mut rng = seeded(7);
        for dim in [1usize, 3, 15, 16, 17, 31, 32, 33, 64, 100, 127, 128, 1000] {
            for n in [1usize, 3, 4, 5, 9] {
                let w: Vec<f32> = (0..dim).map(|_| rng.random::<f32>() * 2.0 - 1.0).collect();
                let c8: Vec<u8> = (0..n * dim).map(|_| rng.random::<u8>()).collect();
                let c4: Vec<u8> = (0..n * dim.div_ceil(2))
                    .map(|_| rng.random::<u8>())
                    .collect();
                let lut8: [f32; 256] = std::array::from_fn(|i| (i as f32 * 0.37).sin());
                let lut4: [f32; 16] = std::array::from_fn(|i| (i as f32 * 1.3).cos());
                let w4 = Lut4Weights::new(&w);
                let mut want = vec![0.0; n];
                let mut got = vec![0.0; n];
                for k in Kernels::supported() {
                    let name = k.level();
                    scalar_u8(&w, &c8, &mut want);
                    k.sq.scan_u8(&w, &c8, &mut got);
                    close(&want, &got, &format!("{name} u8 dim {dim}"));
                    scalar_lut8(&w, &lut8, &c8, &mut want);
                    k.sq.scan_lut8(&w, &lut8, &c8, &mut got);
                    close(&want, &got, &format!("{name} lut8 dim {dim}"));
                    scalar_lut4(&w4, &lut4, &c4, &mut want);
                    k.sq.scan_lut4(&w4, &lut4, &c4, &mut got);
                    close(&want, &got, &format!("{name} lut4 dim {dim}"));
                }
                // And the dispatched entry points.
                scalar_u8(&w, &c8, &mut want);
                scan_u8(&w, &c8, &mut got);
                close(&want, &got, "dispatched u8");
                scalar_lut8(&w, &lut8, &c8, &mut want);
                scan_lut8(&w, &lut8, &c8, &mut got);
                close(&want, &got, "dispatched lut8");
                scalar_lut4(&w4, &lut4, &c4, &mut want);
                scan_lut4(&w4, &lut4, &c4, &mut got);
                close(&want, &got, "dispatched lut4");
            }
        }
    }

    /// The four-query kernels (uniform 8-bit, 8-bit table, 4-bit table) return, at
    /// every level, exactly the bits the one-query kernel of that level returns for each
    /// query and row — on dimensions with and without SIMD tails and row counts with and
    /// without a partial group of four (whose rows take the one-row path) — and a row's
    /// sum does not depend on whether it was scored in a group of four or alone. Large
    /// signed weights, so that another order of additions would show in the last bits.
    #[test]
    fn four_query_kernels_are_bit_identical_to_one_query_kernels() {
        let mut rng = seeded(11);
        let lut8: [f32; 256] = std::array::from_fn(|i| (i as f32 * 0.37).sin() * 3.0);
        let lut4: [f32; 16] = std::array::from_fn(|i| (i as f32 * 1.3).cos() * 5.0);
        for dim in [1usize, 7, 16, 20, 33, 64, 100, 128, 131] {
            for rows in [0usize, 1, 3, 4, 5, 8, 11] {
                let w: Vec<Vec<f32>> = (0..NQ)
                    .map(|_| {
                        (0..dim)
                            .map(|_| (rng.random::<f32>() * 2.0 - 1.0) * 1e3)
                            .collect()
                    })
                    .collect();
                let w4: Vec<Lut4Weights> = w.iter().map(|q| Lut4Weights::new(q)).collect();
                let wr: [&[f32]; NQ] = std::array::from_fn(|q| w[q].as_slice());
                let w4r: [&Lut4Weights; NQ] = std::array::from_fn(|q| &w4[q]);
                let c8: Vec<u8> = (0..rows * dim).map(|_| rng.random::<u8>()).collect();
                let cs4 = dim.div_ceil(2);
                let c4: Vec<u8> = (0..rows * cs4).map(|_| rng.random::<u8>()).collect();
                for k in Kernels::supported() {
                    let name = k.level();
                    // (kind, codes, bytes per row, the four-query sums, the one-query
                    // kernel of query q)
                    type One<'a> = Box<dyn Fn(usize, &[u8], &mut [f32]) + 'a>;
                    type Case<'a> = (&'a str, &'a [u8], usize, Vec<f32>, One<'a>);
                    let cases: [Case; 3] = [
                        (
                            "u8",
                            &c8,
                            dim,
                            multi(|o| k.sq.scan_u8_multi(&wr, &c8, o), rows),
                            { Box::new(|q, c, o| k.sq.scan_u8(&w[q], c, o)) },
                        ),
                        (
                            "lut8",
                            &c8,
                            dim,
                            multi(|o| k.sq.scan_lut8_multi(&wr, &lut8, &c8, o), rows),
                            Box::new(|q, c, o| k.sq.scan_lut8(&w[q], &lut8, c, o)),
                        ),
                        (
                            "lut4",
                            &c4,
                            cs4,
                            multi(|o| k.sq.scan_lut4_multi(&w4r, &lut4, &c4, o), rows),
                            Box::new(|q, c, o| k.sq.scan_lut4(&w4[q], &lut4, c, o)),
                        ),
                    ];
                    for (kind, codes, cs, got, one) in cases {
                        for q in 0..NQ {
                            let mut want = vec![0.0f32; rows];
                            one(q, codes, &mut want);
                            for (i, &x) in want.iter().enumerate() {
                                let g = got[q * rows + i];
                                assert_eq!(
                                    g.to_bits(),
                                    x.to_bits(),
                                    "{name} {kind} dim {dim} rows {rows} query {q} row {i}: \
                                     {g} vs {x}"
                                );
                                let mut alone = [0.0f32];
                                one(q, &codes[i * cs..(i + 1) * cs], &mut alone);
                                assert_eq!(
                                    alone[0].to_bits(),
                                    x.to_bits(),
                                    "{name} {kind} dim {dim} row {i} alone"
                                );
                            }
                        }
                    }
                }
                // The dispatched entry points, against the dispatched one-query kernels.
                let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                let mut want = vec![0.0f32; rows];
                let got = multi(|o| scan_u8_multi(&wr, &c8, o), rows);
                scan_u8(&w[NQ - 1], &c8, &mut want);
                assert_eq!(bits(&got[(NQ - 1) * rows..]), bits(&want), "dispatched u8");
                let got = multi(|o| scan_lut8_multi(&wr, &lut8, &c8, o), rows);
                scan_lut8(&w[0], &lut8, &c8, &mut want);
                assert_eq!(bits(&got[..rows]), bits(&want), "dispatched lut8");
                let got = multi(|o| scan_lut4_multi(&w4r, &lut4, &c4, o), rows);
                scan_lut4(&w4[1], &lut4, &c4, &mut want);
                assert_eq!(bits(&got[rows..2 * rows]), bits(&want), "dispatched lut4");
            }
        }
    }

    /// The sums a multi-query kernel writes for `rows` rows (NaN where it wrote none).
    fn multi(kernel: impl FnOnce(&mut [f32]), rows: usize) -> Vec<f32> {
        let mut out = vec![f32::NAN; NQ * rows];
        kernel(&mut out);
        out
    }

    #[test]
    #[should_panic(expected = "weights of different lengths")]
    fn four_query_kernel_refuses_ragged_weights() {
        let (a, b) = ([1.0f32; 8], [1.0f32; 7]);
        let mut out = [0.0f32; NQ];
        scan_u8_multi(&[&a, &a, &b, &a], &[0u8; 8], &mut out);
    }

    #[test]
    #[should_panic(expected = "code buffer too short")]
    fn short_codes_panic_before_any_kernel_runs() {
        let w = [1.0f32; 16];
        let mut out = [0.0f32; 3];
        scan_lut8(&w, &[0.0; 256], &[0u8; 47], &mut out);
    }

    #[test]
    fn large_and_zero_values() {
        let dim = 40;
        let w = vec![1e6f32; dim];
        let codes = vec![255u8; dim * 2];
        let mut a = vec![0.0; 2];
        let mut b = vec![0.0; 2];
        scalar_u8(&w, &codes, &mut a);
        scan_u8(&w, &codes, &mut b);
        close(&a, &b, "large");
        let z = vec![0.0f32; dim];
        for k in Kernels::supported() {
            k.sq.scan_u8(&w, &codes, &mut b);
            close(&a, &b, &format!("{} large", k.level()));
            k.sq.scan_u8(&z, &codes, &mut b);
            assert_eq!(b, vec![0.0, 0.0]);
        }
    }
}
