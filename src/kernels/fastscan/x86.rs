//! AVX2 and AVX-512BW block kernels, installed in the dispatch tables of their
//! levels. The block kernels read `pairs · 32` bytes of each table and each block,
//! which [`super::FastScanKernels`] checks.

use super::{BLOCK, NQ, lane_of};
use std::arch::x86_64::*;

/// AVX2 [`super::scan_blocks`].
///
/// # Safety
/// The CPU must support AVX2; `lut` must hold `pairs · 32` bytes, `b` `masks.len() ·
/// pairs · 32` and `sums` `masks.len() · 32`.
#[target_feature(enable = "avx2")]
pub(super) unsafe fn blocks_avx2(
    lut: &[u8],
    b: &[u8],
    pairs: usize,
    thr: u16,
    sums: &mut [u16],
    masks: &mut [u32],
) {
    super::each_block(b, pairs, sums, masks, |block, out| {
        // SAFETY: this function's features; `lut` and each block hold `pairs · 32`
        // bytes by its contract.
        unsafe { block_avx2(lut, block, pairs, thr, out) }
    })
}

/// AVX-512 [`super::scan_blocks`].
///
/// # Safety
/// The CPU must support AVX-512F, AVX-512BW and AVX2; `pairs` must be even, `lut` hold
/// `pairs · 32` bytes, `b` `masks.len() · pairs · 32` and `sums` `masks.len() · 32`.
#[target_feature(enable = "avx512f,avx512bw,avx2")]
pub(super) unsafe fn blocks_avx512(
    lut: &[u8],
    b: &[u8],
    pairs: usize,
    thr: u16,
    sums: &mut [u16],
    masks: &mut [u32],
) {
    // Common sub-quantizer counts get a fully unrolled loop with the tables held in
    // registers across blocks (M = 8, 16, 24, 32, 48, 64, 96, 128; past 64 the
    // compiler keeps part of the tables on the stack, still in L1).
    // SAFETY: this function's features and length contract are the callees'.
    unsafe {
        by_pairs!(
            pairs,
            blocks_avx512_n(lut, b, thr, sums, masks),
            super::each_block(b, pairs, sums, masks, |block, out| {
                block_avx512(lut, block, pairs, thr, out)
            })
        )
    }
}

/// One 16-entry row per register: minimum and maximum by reduction, then
/// [`quantise_rows`] (the portable code's rounding and clamping).
///
/// # Safety
/// The CPU must support AVX-512F, AVX-512BW, AVX2 and FMA.
#[target_feature(enable = "avx512f,avx512bw,avx2,fma")]
pub(super) unsafe fn quantize_avx512(table: &[f32], q8: &mut Vec<u8>) -> (f32, f32) {
    let nsub = table.len() / 16;
    let (mut bias, mut span) = (0.0f32, 0.0f32);
    for row in table.chunks_exact(16) {
        // SAFETY: 16 floats; unaligned load.
        let v = unsafe { _mm512_loadu_ps(row.as_ptr()) };
        let (lo, hi) = (_mm512_reduce_min_ps(v), _mm512_reduce_max_ps(v));
        bias += lo;
        span = span.max(hi - lo);
    }
    let scale = if span > 0.0 { 255.0 / span } else { 1.0 };
    q8.resize(nsub * 16, 0);
    let low = |s: usize| {
        // SAFETY: row `s < nsub` of `table` holds 16 floats.
        _mm512_reduce_min_ps(unsafe { _mm512_loadu_ps(table.as_ptr().add(s * 16)) })
    };
    quantise_rows(table, nsub, low, scale, q8);
    (bias, scale)
}

/// Rows `0..n` of `table` (16 floats each) quantised as
/// [`super::quantize_rows_portable`] does — `(v − low(s)) · scale + ½`, at most 255 (a
/// NaN becomes 255: `vminps` returns its second operand), truncated — into bytes
/// `16 s..16 s + 16` of `out`. Four rows per 64-byte store: two signed-saturating packs
/// to `u16` and one to `u8` leave 128-bit lane `i` holding bytes `4i..4i + 4` of each
/// row in turn (a dword per row), which one dword permutation puts in row order — four
/// shuffles per four rows where a saturating `vpmovusdb` per row took two each (a fifth
/// of [`list_lut_avx512`]'s time). Panics unless `table` and `out` hold `n` rows.
#[inline]
#[target_feature(enable = "avx512f,avx512bw")]
fn quantise_rows(table: &[f32], n: usize, low: impl Fn(usize) -> f32, scale: f32, out: &mut [u8]) {
    assert!(table.len() >= n * 16 && out.len() >= n * 16);
    let (vs, half, top) = (
        _mm512_set1_ps(scale),
        _mm512_set1_ps(0.5),
        _mm512_set1_ps(255.0),
    );
    let quant = |s: usize| {
        // SAFETY: row `s < n` of `table` holds 16 floats (asserted above).
        let v = unsafe { _mm512_loadu_ps(table.as_ptr().add(s * 16)) };
        let x = _mm512_fmadd_ps(_mm512_sub_ps(v, _mm512_set1_ps(low(s))), vs, half);
        _mm512_cvttps_epi32(_mm512_min_ps(x, top))
    };
    let order = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
    let mut s = 0;
    while s + 4 <= n {
        let a = _mm512_packus_epi32(quant(s), quant(s + 1));
        let b = _mm512_packus_epi32(quant(s + 2), quant(s + 3));
        let q = _mm512_permutexvar_epi32(order, _mm512_packus_epi16(a, b));
        // SAFETY: bytes `16 s..16 s + 64` of `out` exist (`s + 4 <= n`, asserted above).
        unsafe { _mm512_storeu_si512(out.as_mut_ptr().add(s * 16) as *mut __m512i, q) };
        s += 4;
    }
    for s in s..n {
        let q = _mm512_cvtepi32_epi8(quant(s));
        // SAFETY: bytes `16 s..16 s + 16` of `out` exist (asserted above).
        unsafe { _mm_storeu_si128(out.as_mut_ptr().add(s * 16) as *mut __m128i, q) };
    }
}

/// Minima and maxima of 16 rows of 16 floats, as two vectors whose lane `4k + j`
/// holds row `k + 4j` (see [`lane_of`]): four rounds of a butterfly, each halving
/// the lanes per row with two lane shuffles and a `min`/`max` per pair of vectors —
/// about 3 operations per row instead of a full horizontal reduction per row.
#[inline]
#[target_feature(enable = "avx512f")]
fn rows_min_max16(rows: &[__m512; 16]) -> (__m512, __m512) {
    (
        row_tree(rows, |a, b| _mm512_min_ps(a, b)),
        row_tree(rows, |a, b| _mm512_max_ps(a, b)),
    )
}

/// The butterfly of [`rows_min_max16`] for one operation `f` (`min` or `max`).
#[inline]
#[target_feature(enable = "avx512f")]
fn row_tree<F: Fn(__m512, __m512) -> __m512>(rows: &[__m512; 16], f: F) -> __m512 {
    // Round 1: (a, b) → [a lanes 0-7 ⊓ 8-15 | b likewise], in 128-bit quarters.
    let r1 = |a: __m512, b: __m512| {
        f(
            _mm512_shuffle_f32x4::<0b01_00_01_00>(a, b),
            _mm512_shuffle_f32x4::<0b11_10_11_10>(a, b),
        )
    };
    // Round 2: two round-1 vectors → one quarter (4 lanes) per row.
    let r2 = |a: __m512, b: __m512| {
        f(
            _mm512_shuffle_f32x4::<0b10_00_10_00>(a, b),
            _mm512_shuffle_f32x4::<0b11_01_11_01>(a, b),
        )
    };
    // Rounds 3 and 4 within quarters: 4 lanes → 2 → 1 per row.
    let r3 = |a: __m512, b: __m512| {
        f(
            _mm512_shuffle_ps::<0b01_00_01_00>(a, b),
            _mm512_shuffle_ps::<0b11_10_11_10>(a, b),
        )
    };
    let r4 = |a: __m512, b: __m512| {
        f(
            _mm512_shuffle_ps::<0b10_00_10_00>(a, b),
            _mm512_shuffle_ps::<0b11_01_11_01>(a, b),
        )
    };
    let l1: [__m512; 8] = std::array::from_fn(|i| r1(rows[2 * i], rows[2 * i + 1]));
    let l2: [__m512; 4] = std::array::from_fn(|i| r2(l1[2 * i], l1[2 * i + 1]));
    let l3: [__m512; 2] = std::array::from_fn(|i| r3(l2[2 * i], l2[2 * i + 1]));
    r4(l3[0], l3[1])
}

/// AVX-512 [`super::list_lut`]: rows built with one FMA each, their minima and maxima
/// by [`rows_min_max16`], then quantised and packed by [`quantise_rows`] (criterion
/// `pq_scan/m32x64k/fastscan_list_lut` 129 → 104 ns against one `vpmovusdb` per row).
///
/// # Safety
/// The CPU must support AVX-512F, AVX-512BW, AVX2 and FMA; `pre` and `qt` must have
/// the same length, a multiple of 16.
#[target_feature(enable = "avx512f,avx512bw,avx2,fma")]
pub(super) unsafe fn list_lut_avx512(
    pre: &[f32],
    qt: &[f32],
    table: &mut Vec<f32>,
    lut: &mut Vec<u8>,
) -> (f32, f32) {
    let nsub = pre.len() / 16;
    table.clear();
    table.reserve(nsub * 16);
    let two = _mm512_set1_ps(2.0);
    // SAFETY: rows `s < nsub` of `pre` and `qt` hold 16 floats; `table` has capacity
    // for `nsub · 16` and its length is set once they are written.
    let row = |s: usize| unsafe {
        _mm512_fmadd_ps(
            _mm512_loadu_ps(qt.as_ptr().add(s * 16)),
            two,
            _mm512_loadu_ps(pre.as_ptr().add(s * 16)),
        )
    };
    // Row minima in the butterfly's lane order: row `g + r` at `g + lane_of(r)`.
    let mut lows = [0.0f32; 256 + 16];
    let mut heap_lows = Vec::new();
    let lows: &mut [f32] = if nsub <= 256 {
        &mut lows[..nsub.next_multiple_of(16)]
    } else {
        heap_lows.resize(nsub.next_multiple_of(16), 0.0);
        &mut heap_lows
    };
    let mut spans = _mm512_setzero_ps();
    for g in (0..nsub).step_by(16) {
        // Rows past the table stay zero: span 0, and their minima are not read.
        let n = (nsub - g).min(16);
        let rows: [__m512; 16] = std::array::from_fn(|i| {
            if i < n {
                let r = row(g + i);
                // SAFETY: within the reserved capacity (see `row`).
                unsafe { _mm512_storeu_ps(table.as_mut_ptr().add((g + i) * 16), r) };
                r
            } else {
                _mm512_setzero_ps()
            }
        });
        let (mn, mx) = rows_min_max16(&rows);
        spans = _mm512_max_ps(spans, _mm512_sub_ps(mx, mn));
        // SAFETY: `lows` holds `g + 16` floats (rounded up to whole groups).
        unsafe { _mm512_storeu_ps(lows.as_mut_ptr().add(g), mn) };
    }
    let span = _mm512_reduce_max_ps(spans);
    let low = |s: usize| lows[(s & !15) + lane_of(s & 15)];
    // [`super::list_bias`]'s order: lane sums over the groups (the lanes of rows past
    // the table hold +0, which adds nothing), then halves added pairwise.
    let bias = {
        let mut acc = _mm512_setzero_ps();
        for g in (0..nsub).step_by(16) {
            // SAFETY: `lows` holds whole groups of 16 (see above).
            acc = _mm512_add_ps(acc, unsafe { _mm512_loadu_ps(lows.as_ptr().add(g)) });
        }
        let a = _mm256_add_ps(
            _mm512_castps512_ps256(acc),
            _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(acc))),
        );
        let b = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps::<1>(a));
        let c = _mm_add_ps(b, _mm_movehl_ps(b, b));
        _mm_cvtss_f32(c) + _mm_cvtss_f32(_mm_shuffle_ps::<1>(c, c))
    };
    // SAFETY: all `nsub · 16` entries were written above.
    unsafe { table.set_len(nsub * 16) };
    let scale = if span > 0.0 { 255.0 / span } else { 1.0 };
    // Every byte of the rows is written by `quantise_rows`; only the padding is
    // zeroed here.
    lut.resize(super::padded_pairs(nsub) * 32, 0);
    lut[nsub * 16..].fill(0);
    quantise_rows(table, nsub, low, scale, lut);
    (bias, scale)
}

retarget! {
    /// [`super::list_lut_portable`] compiled for AVX2.
    pub(super) unsafe fn list_lut_avx2["avx2,fma"] = super::list_lut_portable;
    (pre: &[f32], qt: &[f32], table: &mut Vec<f32>, lut: &mut Vec<u8>) -> (f32, f32)
}

/// AVX-512 [`super::scan_blocks_multi`].
///
/// # Safety
/// The CPU must support AVX-512F, AVX-512BW and AVX2; every table must hold
/// `pairs · 32` bytes (`pairs` even) and `b` `nb · pairs · 32`, with
/// `masks.len() = NQ · nb` and `sums.len() >= NQ · nb · 32`.
#[target_feature(enable = "avx512f,avx512bw,avx2")]
pub(super) unsafe fn multi_avx512(
    luts: &[&[u8]; NQ],
    b: &[u8],
    pairs: usize,
    thr: &[u16; NQ],
    sums: &mut [u16],
    masks: &mut [u32],
) {
    // SAFETY: this function's features and preconditions are the callees'.
    unsafe {
        by_pairs!(
            pairs,
            multi_avx512_n(luts, b, thr, sums, masks),
            super::per_query(luts, thr, sums, masks, |lut, thr, sums, masks| {
                blocks_avx512(lut, b, pairs, thr, sums, masks)
            })
        )
    }
}

/// AVX2 [`super::scan_blocks_multi`]: [`blocks_avx2`] once per query.
///
/// # Safety
/// As for [`multi_avx512`], with AVX2 for the CPU.
#[target_feature(enable = "avx2")]
pub(super) unsafe fn multi_avx2(
    luts: &[&[u8]; NQ],
    b: &[u8],
    pairs: usize,
    thr: &[u16; NQ],
    sums: &mut [u16],
    masks: &mut [u32],
) {
    super::per_query(luts, thr, sums, masks, |lut, thr, sums, masks| {
        // SAFETY: this function's features and preconditions are the callee's.
        unsafe { blocks_avx2(lut, b, pairs, thr, sums, masks) }
    })
}

retarget! {
    /// [`super::quantize_rows_portable`] for 16-entry rows, compiled for AVX2.
    pub(super) unsafe fn quantize_avx2["avx2,fma"] = super::quantize_rows_portable::<16>;
    (table: &[f32], q8: &mut Vec<u8>) -> (f32, f32)
}

/// Even/odd sums of one block (four accumulators) → 32 sums and the ≤ `thr` mask.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx2")]
fn epilogue(acc: &[__m512i; 4], t: __m128i, out: &mut [u16]) -> u32 {
    let fold = |v: __m512i| {
        let h = _mm256_add_epi16(_mm512_castsi512_si256(v), _mm512_extracti64x4_epi64(v, 1));
        _mm_add_epi16(_mm256_castsi256_si128(h), _mm256_extracti128_si256(h, 1))
    };
    let (ol, oh) = (fold(acc[1]), fold(acc[3]));
    let el = _mm_sub_epi16(fold(acc[0]), _mm_slli_epi16(ol, 8));
    let eh = _mm_sub_epi16(fold(acc[2]), _mm_slli_epi16(oh, 8));
    let (first, second) = out.split_at_mut(16);
    let m0 = finish16(el, ol, t, first);
    let m1 = finish16(eh, oh, t, second);
    m0 | (m1 << 16)
}

/// `Q` steps per block, [`super::NQ`] queries: the block's 64-byte code vectors are
/// loaded and split once, each query's table rows are read from L1.
///
/// # Safety
/// The CPU must support AVX-512F, AVX-512BW and AVX2; every table must hold `Q · 64`
/// bytes, `b` `nb · Q · 64`, with `masks.len() = NQ · nb` and `sums.len() >= NQ · nb ·
/// 32`.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx2")]
unsafe fn multi_avx512_n<const Q: usize>(
    luts: &[&[u8]; NQ],
    b: &[u8],
    thr: &[u16; NQ],
    sums: &mut [u16],
    masks: &mut [u32],
) {
    let nb = masks.len() / NQ;
    let bb = Q * 64;
    // (The unrolled steps' look-ups and accumulators do not all fit in registers.)
    crate::kernels::align_frame();
    let m = _mm512_set1_epi8(0x0F);
    let t: [__m128i; NQ] = std::array::from_fn(|j| _mm_set1_epi16(thr[j] as i16));
    for i in 0..nb {
        let base = b[i * bb..(i + 1) * bb].as_ptr();
        let mut acc = [[_mm512_setzero_si512(); 4]; NQ];
        for q in 0..Q {
            // SAFETY: q·64 + 64 <= bb bytes of this block.
            let x = unsafe { _mm512_loadu_si512(base.add(q * 64) as *const __m512i) };
            let lo = _mm512_and_si512(x, m);
            let hi = _mm512_and_si512(_mm512_srli_epi16(x, 4), m);
            for (j, a4) in acc.iter_mut().enumerate() {
                // SAFETY: each table holds Q·64 bytes (this function's contract).
                let l =
                    unsafe { _mm512_loadu_si512(luts[j].as_ptr().add(q * 64) as *const __m512i) };
                let a = _mm512_shuffle_epi8(l, lo);
                let c = _mm512_shuffle_epi8(l, hi);
                a4[0] = _mm512_add_epi16(a4[0], a);
                a4[1] = _mm512_add_epi16(a4[1], _mm512_srli_epi16(a, 8));
                a4[2] = _mm512_add_epi16(a4[2], c);
                a4[3] = _mm512_add_epi16(a4[3], _mm512_srli_epi16(c, 8));
            }
        }
        for (j, a4) in acc.iter().enumerate() {
            let at = (j * nb + i) * BLOCK;
            masks[j * nb + i] = epilogue(a4, t[j], &mut sums[at..at + BLOCK]);
        }
    }
}

/// `Q` 64-byte steps (two pairs each) per block. Even and odd bytes are summed with
/// FAISS's trick: add the shuffled bytes as `u16` (even + 256·odd) and, separately,
/// the odd bytes; the even sums are recovered at the end modulo 2^16.
///
/// # Safety
/// The CPU must support AVX-512F, AVX-512BW and AVX2; `lut` must hold `Q · 64` bytes,
/// `b` `masks.len() · Q · 64` and `sums` `masks.len() · 32`.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx2")]
unsafe fn blocks_avx512_n<const Q: usize>(
    lut: &[u8],
    b: &[u8],
    thr: u16,
    sums: &mut [u16],
    masks: &mut [u32],
) {
    let bb = Q * 64;
    let m = _mm512_set1_epi8(0x0F);
    // SAFETY: `lut` holds Q·64 bytes (checked by `scan_blocks`).
    let tables: [__m512i; Q] = std::array::from_fn(|q| unsafe {
        _mm512_loadu_si512(lut.as_ptr().add(q * 64) as *const __m512i)
    });
    let t = _mm_set1_epi16(thr as i16);
    for (i, (mask, out)) in masks
        .iter_mut()
        .zip(sums.chunks_exact_mut(BLOCK))
        .enumerate()
    {
        let base = b[i * bb..(i + 1) * bb].as_ptr();
        let mut full_lo = _mm512_setzero_si512();
        let mut odd_lo = _mm512_setzero_si512();
        let mut full_hi = _mm512_setzero_si512();
        let mut odd_hi = _mm512_setzero_si512();
        for (q, &l) in tables.iter().enumerate() {
            // SAFETY: q·64 + 64 <= bb bytes of this block.
            let x = unsafe { _mm512_loadu_si512(base.add(q * 64) as *const __m512i) };
            let lo = _mm512_and_si512(x, m);
            let hi = _mm512_and_si512(_mm512_srli_epi16(x, 4), m);
            let a = _mm512_shuffle_epi8(l, lo);
            let c = _mm512_shuffle_epi8(l, hi);
            full_lo = _mm512_add_epi16(full_lo, a);
            odd_lo = _mm512_add_epi16(odd_lo, _mm512_srli_epi16(a, 8));
            full_hi = _mm512_add_epi16(full_hi, c);
            odd_hi = _mm512_add_epi16(odd_hi, _mm512_srli_epi16(c, 8));
        }
        *mask = epilogue(&[full_lo, odd_lo, full_hi, odd_hi], t, out);
    }
}

/// Interleaves even/odd vector sums (8 each) into vectors 0..8 and 8..16, stores
/// them and returns the ≤ `thr` mask of those 16 vectors.
#[inline]
#[target_feature(enable = "avx2")]
fn finish16(even: __m128i, odd: __m128i, thr: __m128i, out: &mut [u16]) -> u32 {
    let r0 = _mm_unpacklo_epi16(even, odd);
    let r1 = _mm_unpackhi_epi16(even, odd);
    // SAFETY: `out` has 16 u16s (callers pass halves of a 32-entry array).
    unsafe {
        _mm_storeu_si128(out.as_mut_ptr() as *mut __m128i, r0);
        _mm_storeu_si128(out.as_mut_ptr().add(8) as *mut __m128i, r1);
    }
    let le0 = _mm_cmpeq_epi16(_mm_max_epu16(r0, thr), thr);
    let le1 = _mm_cmpeq_epi16(_mm_max_epu16(r1, thr), thr);
    _mm_movemask_epi8(_mm_packs_epi16(le0, le1)) as u32
}

/// AVX2 [`super::scan_block`].
///
/// # Safety
/// The CPU must support AVX2; `lut` and `b` must hold `pairs · 32` bytes.
#[inline]
#[target_feature(enable = "avx2")]
pub(super) unsafe fn block_avx2(
    lut: &[u8],
    b: &[u8],
    pairs: usize,
    thr: u16,
    out: &mut [u16; BLOCK],
) -> u32 {
    let m = _mm256_set1_epi8(0x0F);
    let low = _mm256_set1_epi16(0x00FF);
    let mut acc = [_mm256_setzero_si256(); 4];
    for p in 0..pairs {
        // SAFETY: p·32 + 32 <= pairs·32 <= both lengths.
        let (x, l) = unsafe {
            (
                _mm256_loadu_si256(b.as_ptr().add(p * 32) as *const __m256i),
                _mm256_loadu_si256(lut.as_ptr().add(p * 32) as *const __m256i),
            )
        };
        let lo = _mm256_and_si256(x, m);
        let hi = _mm256_and_si256(_mm256_srli_epi16(x, 4), m);
        let a = _mm256_shuffle_epi8(l, lo);
        let c = _mm256_shuffle_epi8(l, hi);
        acc[0] = _mm256_add_epi16(acc[0], _mm256_and_si256(a, low));
        acc[1] = _mm256_add_epi16(acc[1], _mm256_srli_epi16(a, 8));
        acc[2] = _mm256_add_epi16(acc[2], _mm256_and_si256(c, low));
        acc[3] = _mm256_add_epi16(acc[3], _mm256_srli_epi16(c, 8));
    }
    let fold =
        |v: __m256i| _mm_add_epi16(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    let t = _mm_set1_epi16(thr as i16);
    let (first, second) = out.split_at_mut(16);
    let m0 = finish16(fold(acc[0]), fold(acc[1]), t, first);
    let m1 = finish16(fold(acc[2]), fold(acc[3]), t, second);
    m0 | (m1 << 16)
}

/// AVX-512 [`super::scan_block`].
///
/// # Safety
/// The CPU must support AVX-512F, AVX-512BW and AVX2; `pairs` must be even, `lut` and
/// `b` hold `pairs · 32` bytes.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx2")]
pub(super) unsafe fn block_avx512(
    lut: &[u8],
    b: &[u8],
    pairs: usize,
    thr: u16,
    out: &mut [u16; BLOCK],
) -> u32 {
    let m = _mm512_set1_epi8(0x0F);
    let low = _mm512_set1_epi16(0x00FF);
    let mut acc = [_mm512_setzero_si512(); 4];
    let mut p = 0;
    while p < pairs {
        // SAFETY: pairs is even, so p·32 + 64 <= pairs·32 <= both lengths.
        let (x, l) = unsafe {
            (
                _mm512_loadu_si512(b.as_ptr().add(p * 32) as *const __m512i),
                _mm512_loadu_si512(lut.as_ptr().add(p * 32) as *const __m512i),
            )
        };
        let lo = _mm512_and_si512(x, m);
        let hi = _mm512_and_si512(_mm512_srli_epi16(x, 4), m);
        let a = _mm512_shuffle_epi8(l, lo);
        let c = _mm512_shuffle_epi8(l, hi);
        acc[0] = _mm512_add_epi16(acc[0], _mm512_and_si512(a, low));
        acc[1] = _mm512_add_epi16(acc[1], _mm512_srli_epi16(a, 8));
        acc[2] = _mm512_add_epi16(acc[2], _mm512_and_si512(c, low));
        acc[3] = _mm512_add_epi16(acc[3], _mm512_srli_epi16(c, 8));
        p += 2;
    }
    let fold = |v: __m512i| {
        let h = _mm256_add_epi16(_mm512_castsi512_si256(v), _mm512_extracti64x4_epi64(v, 1));
        _mm_add_epi16(_mm256_castsi256_si128(h), _mm256_extracti128_si256(h, 1))
    };
    let t = _mm_set1_epi16(thr as i16);
    let (first, second) = out.split_at_mut(16);
    let m0 = finish16(fold(acc[0]), fold(acc[1]), t, first);
    let m1 = finish16(fold(acc[2]), fold(acc[3]), t, second);
    m0 | (m1 << 16)
}
