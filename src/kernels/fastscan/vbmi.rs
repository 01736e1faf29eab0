//! AVX-512 VBMI block kernels: the same layout, tables and results as the AVX-512BW
//! kernels of [`super::x86`], with fewer operations per look-up.
//!
//! The BW kernels look each 16-byte lane up in its own sub-quantizer's table
//! (`vpshufb`), which leaves the four sub-quantizers of a 64-byte step in four lanes:
//! summing them per vector needs the bytes widened to `u16` as even and odd halves
//! (two additions and a shift per look-up) and, per block, four accumulators folded
//! and interleaved back into vector order.
//!
//! Here each 64-byte step of codes is first permuted once (`vpermb`, shared by every
//! query of a multi-query scan) so that byte `4i + g` holds lane `g`'s byte `i`: the
//! codes of vector `i` (low nibbles; vector `i + 16` in the high nibbles) for the
//! step's four sub-quantizers side by side. The look-up is then `vpermb` into the
//! step's whole 64-byte table (the index's bits 4–5 select the sub-quantizer), and
//! `vpdpbusd` (VNNI) against ones adds each vector's four adjacent looked-up bytes to
//! its `i32` lane — one instruction per look-up register, one accumulator per half
//! block, already in vector order. A block ends with a truncation to `u16` and one
//! comparison.
//!
//! The `i32` sums are exact; truncated to `u16` they equal the other levels' sums, which
//! wrap modulo 2¹⁶ (only past 256 sub-quantizers), and the threshold is compared on the
//! truncated sums, so all levels agree bit for bit.

use super::{BLOCK, NQ};
use std::arch::x86_64::*;

/// Byte `4i + g` of a permuted step takes byte `16g + i` of the stored step.
const INTERLEAVE: [u8; 64] = {
    let mut a = [0u8; 64];
    let mut j = 0;
    while j < 64 {
        a[j] = (16 * (j % 4) + j / 4) as u8;
        j += 1;
    }
    a
};

/// Bits 4–5 of look-up index `4i + g`: the step's sub-quantizer `g`.
const TAGS: [u8; 64] = {
    let mut a = [0u8; 64];
    let mut j = 0;
    while j < 64 {
        a[j] = ((j % 4) << 4) as u8;
        j += 1;
    }
    a
};

/// `(a & b) | c` as a `vpternlog` immediate.
const AND_OR: i32 = 0xEA;

/// The constant registers of the kernels.
#[derive(Clone, Copy)]
struct Consts {
    perm: __m512i,
    tags: __m512i,
    low: __m512i,
    ones: __m512i,
}

impl Consts {
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw")]
    fn new() -> Consts {
        // SAFETY: both arrays hold 64 bytes.
        let (perm, tags) = unsafe {
            (
                _mm512_loadu_si512(INTERLEAVE.as_ptr() as *const __m512i),
                _mm512_loadu_si512(TAGS.as_ptr() as *const __m512i),
            )
        };
        Consts {
            perm,
            tags,
            low: _mm512_set1_epi8(0x0F),
            ones: _mm512_set1_epi8(1),
        }
    }

    /// The look-up indices of one 64-byte step of codes: vectors 0..16 and 16..32.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vbmi,avx512vnni")]
    fn split(&self, x: __m512i) -> (__m512i, __m512i) {
        let y = _mm512_permutexvar_epi8(self.perm, x);
        let lo = _mm512_ternarylogic_epi32::<AND_OR>(y, self.low, self.tags);
        let hi =
            _mm512_ternarylogic_epi32::<AND_OR>(_mm512_srli_epi16::<4>(y), self.low, self.tags);
        (lo, hi)
    }

    /// Adds one step's look-ups of `table` to the two half-block accumulators.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vbmi,avx512vnni")]
    fn accumulate(&self, table: __m512i, (lo, hi): (__m512i, __m512i), acc: &mut [__m512i; 2]) {
        let a = _mm512_permutexvar_epi8(lo, table);
        let c = _mm512_permutexvar_epi8(hi, table);
        acc[0] = _mm512_dpbusd_epi32(acc[0], a, self.ones);
        acc[1] = _mm512_dpbusd_epi32(acc[1], c, self.ones);
    }

    /// Two accumulator pairs (alternate steps of a single-query scan, two dependency
    /// chains per half block against `vpdpbusd`'s latency) into one.
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn merge(&self, acc: &[[__m512i; 2]; 2]) -> [__m512i; 2] {
        [
            _mm512_add_epi32(acc[0][0], acc[1][0]),
            _mm512_add_epi32(acc[0][1], acc[1][1]),
        ]
    }

    /// A block's 32 sums (vector order) into `out`, and the mask of those `≤ thr`.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vbmi,avx512vnni")]
    fn finish(&self, acc: &[__m512i; 2], thr: __m512i, out: &mut [u16]) -> u32 {
        let lo = _mm512_cvtepi32_epi16(acc[0]);
        let hi = _mm512_cvtepi32_epi16(acc[1]);
        let sums = _mm512_inserti64x4::<1>(_mm512_castsi256_si512(lo), hi);
        debug_assert!(out.len() >= BLOCK);
        // SAFETY: `out` holds a block's 32 `u16`s (callers pass `BLOCK`-sized chunks).
        unsafe { _mm512_storeu_si512(out.as_mut_ptr() as *mut __m512i, sums) };
        _mm512_cmple_epu16_mask(sums, thr)
    }
}

/// VBMI [`super::scan_block`].
///
/// # Safety
/// The CPU must support AVX-512F, AVX-512BW, VBMI and VNNI; `pairs` must be even,
/// `lut` and `b` hold `pairs · 32` bytes.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vbmi,avx512vnni")]
pub(super) unsafe fn block_vbmi(
    lut: &[u8],
    b: &[u8],
    pairs: usize,
    thr: u16,
    out: &mut [u16; BLOCK],
) -> u32 {
    let k = Consts::new();
    let mut acc = [[_mm512_setzero_si512(); 2]; 2];
    let mut p = 0;
    while p < pairs {
        // SAFETY: pairs is even, so p·32 + 64 <= pairs·32 <= both lengths.
        let (x, t) = unsafe {
            (
                _mm512_loadu_si512(b.as_ptr().add(p * 32) as *const __m512i),
                _mm512_loadu_si512(lut.as_ptr().add(p * 32) as *const __m512i),
            )
        };
        k.accumulate(t, k.split(x), &mut acc[(p / 2) % 2]);
        p += 2;
    }
    k.finish(&k.merge(&acc), _mm512_set1_epi16(thr as i16), out)
}

/// VBMI [`super::scan_blocks`].
///
/// # Safety
/// The CPU must support AVX-512F, AVX-512BW, VBMI and VNNI; `pairs` must be even,
/// `lut` hold `pairs · 32` bytes, `b` `masks.len() · pairs · 32` and `sums`
/// `masks.len() · 32`.
#[target_feature(enable = "avx512f,avx512bw,avx512vbmi,avx512vnni")]
pub(super) unsafe fn blocks_vbmi(
    lut: &[u8],
    b: &[u8],
    pairs: usize,
    thr: u16,
    sums: &mut [u16],
    masks: &mut [u32],
) {
    // SAFETY: this function's features and length contract are the callees'.
    unsafe {
        by_pairs!(
            pairs,
            blocks_n(lut, b, thr, sums, masks),
            super::each_block(b, pairs, sums, masks, |block, out| {
                block_vbmi(lut, block, pairs, thr, out)
            })
        )
    }
}

/// VBMI [`super::scan_blocks_multi`].
///
/// # Safety
/// The CPU must support AVX-512F, AVX-512BW, VBMI and VNNI; every table must hold
/// `pairs · 32` bytes (`pairs` even) and `b` `nb · pairs · 32`, with
/// `masks.len() = NQ · nb` and `sums.len() >= NQ · nb · 32`.
#[target_feature(enable = "avx512f,avx512bw,avx512vbmi,avx512vnni")]
pub(super) unsafe fn multi_vbmi(
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
            multi_n(luts, b, thr, sums, masks),
            super::per_query(luts, thr, sums, masks, |lut, thr, sums, masks| {
                blocks_vbmi(lut, b, pairs, thr, sums, masks)
            })
        )
    }
}

/// `Q` 64-byte steps per block, one table: the tables stay in registers across blocks
/// (for `Q` up to about 24; beyond, the compiler keeps some on the stack, in L1).
///
/// # Safety
/// As [`blocks_vbmi`] with `pairs = 2Q`.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vbmi,avx512vnni")]
unsafe fn blocks_n<const Q: usize>(
    lut: &[u8],
    b: &[u8],
    thr: u16,
    sums: &mut [u16],
    masks: &mut [u32],
) {
    let bb = Q * 64;
    let k = Consts::new();
    // SAFETY: `lut` holds Q·64 bytes (checked by `scan_blocks`).
    let tables: [__m512i; Q] = std::array::from_fn(|q| unsafe {
        _mm512_loadu_si512(lut.as_ptr().add(q * 64) as *const __m512i)
    });
    let t = _mm512_set1_epi16(thr as i16);
    for (i, (mask, out)) in masks
        .iter_mut()
        .zip(sums.chunks_exact_mut(BLOCK))
        .enumerate()
    {
        let base = b[i * bb..(i + 1) * bb].as_ptr();
        let mut acc = [[_mm512_setzero_si512(); 2]; 2];
        for (q, &table) in tables.iter().enumerate() {
            // SAFETY: q·64 + 64 <= bb bytes of this block.
            let x = unsafe { _mm512_loadu_si512(base.add(q * 64) as *const __m512i) };
            k.accumulate(table, k.split(x), &mut acc[q % 2]);
        }
        *mask = k.finish(&k.merge(&acc), t, out);
    }
}

/// `Q` steps per block, [`NQ`] queries: each step of codes is loaded and permuted once
/// for all the queries, whose table rows are read from L1.
///
/// # Safety
/// As [`multi_vbmi`] with `pairs = 2Q`.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vbmi,avx512vnni")]
unsafe fn multi_n<const Q: usize>(
    luts: &[&[u8]; NQ],
    b: &[u8],
    thr: &[u16; NQ],
    sums: &mut [u16],
    masks: &mut [u32],
) {
    let nb = masks.len() / NQ;
    let bb = Q * 64;
    let k = Consts::new();
    // (The unrolled steps' indices and accumulators do not all fit in registers.)
    crate::kernels::align_frame();
    let t: [__m512i; NQ] = std::array::from_fn(|j| _mm512_set1_epi16(thr[j] as i16));
    for i in 0..nb {
        let base = b[i * bb..(i + 1) * bb].as_ptr();
        let mut acc = [[_mm512_setzero_si512(); 2]; NQ];
        for q in 0..Q {
            // SAFETY: q·64 + 64 <= bb bytes of this block.
            let x = unsafe { _mm512_loadu_si512(base.add(q * 64) as *const __m512i) };
            let idx = k.split(x);
            for (j, a) in acc.iter_mut().enumerate() {
                // SAFETY: each table holds Q·64 bytes (this function's contract).
                let table =
                    unsafe { _mm512_loadu_si512(luts[j].as_ptr().add(q * 64) as *const __m512i) };
                k.accumulate(table, idx, a);
            }
        }
        for (j, a) in acc.iter().enumerate() {
            let at = (j * nb + i) * BLOCK;
            masks[j * nb + i] = k.finish(a, t[j], &mut sums[at..at + BLOCK]);
        }
    }
}
