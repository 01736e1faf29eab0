//! 8-bit PQ scan with byte look-up tables in AVX-512 registers.
//!
//! FAISS scans 8-bit PQ codes one look-up at a time (`IndexPQ`, `IndexIVFPQ`): two loads
//! per code byte (the code, then the float table entry). Here the per-query float table
//! (`m × 256`) is quantised to bytes as in 4-bit fast-scan ([`super::fastscan`]), and
//! one sub-quantizer's 256-byte table sits in four 64-byte registers. AVX-512 VBMI's
//! two-source byte permute (`vpermi2b`) looks up 64 codes in a 128-byte half-table at
//! once; two permutes and a blend on the code's top bit cover all 256 entries. The byte
//! results are summed as `u16` (even and odd bytes separately), so up to [`MAX_M`]
//! sub-quantizers cannot overflow. Callers re-score every candidate whose quantised sum
//! is within a margin of their threshold with the float table, so results are exactly
//! those of a float ADC scan.
//!
//! **Layout.** Vectors are stored in blocks of [`BLOCK`] = 64, sub-quantizer-major:
//! byte `s · 64 + i` of a block is the code of vector `i` in sub-space `s`. The last
//! block is padded with zero codes.
//!
//! **Lanes.** A block's 64 sums come out as the even vectors (0, 2, …, 62) then the odd
//! ones (1, 3, …, 63); [`lane_row`] maps a lane to its vector.

use super::SimdLevel;

/// Vectors per block.
pub const BLOCK: usize = 64;

/// Most sub-quantizers the `u16` sums can hold (`255 · 257 = 65535`).
pub const MAX_M: usize = 257;

/// Bytes per block for `m` sub-quantizers.
pub fn block_bytes(m: usize) -> usize {
    m * BLOCK
}

/// Packs `n × m` 8-bit codes (row-major) into blocks (`n` padded to a multiple of 64).
pub fn pack_blocks(codes: &[u8], m: usize) -> Vec<u8> {
    let mut out = Vec::new();
    append_blocks(&mut out, 0, codes, m);
    out
}

/// Appends `n × m` row-major codes to `blocks`, which holds `have` vectors (its last
/// block partly filled when `have` is not a multiple of 64).
pub fn append_blocks(blocks: &mut Vec<u8>, have: usize, codes: &[u8], m: usize) {
    let n = codes.len() / m.max(1);
    blocks.resize((have + n).div_ceil(BLOCK) * block_bytes(m), 0);
    for (v, code) in codes.chunks_exact(m).enumerate() {
        let r = have + v;
        let base = (r / BLOCK) * block_bytes(m) + r % BLOCK;
        for (s, &c) in code.iter().enumerate() {
            blocks[base + s * BLOCK] = c;
        }
    }
}

/// Code of vector `r` in sub-space `s`.
#[inline]
pub fn code_at(blocks: &[u8], m: usize, r: usize, s: usize) -> u8 {
    blocks[(r / BLOCK) * block_bytes(m) + s * BLOCK + r % BLOCK]
}

/// The first `n` vectors' codes, row-major (`n × m`).
pub fn unpack_blocks(blocks: &[u8], m: usize, n: usize) -> Vec<u8> {
    let mut out = vec![0u8; n * m];
    for (r, code) in out.chunks_exact_mut(m).enumerate() {
        for (s, c) in code.iter_mut().enumerate() {
            *c = code_at(blocks, m, r, s);
        }
    }
    out
}

/// Vector (0..64) whose sum is in lane `lane` of a block's output.
#[inline]
pub fn lane_row(lane: usize) -> usize {
    if lane < BLOCK / 2 {
        2 * lane
    } else {
        2 * (lane - BLOCK / 2) + 1
    }
}

/// Float ADC distance of vector `r`: `Σ_s table[s][code_s]` (`table` is `m × 256`).
#[inline]
pub fn adc_at(table: &[f32], blocks: &[u8], m: usize, r: usize) -> f32 {
    let block = &blocks[(r / BLOCK) * block_bytes(m) + r % BLOCK..];
    let mut acc = [0.0f32; 4];
    for s in 0..m {
        acc[s % 4] += table[s * 256 + block[s * BLOCK] as usize];
    }
    (acc[0] + acc[1]) + (acc[2] + acc[3])
}

/// Quantises a float ADC table (`m × 256`) to bytes, as
/// [`super::fastscan::quantize_table`] with 256 entries per row (same bias, scale and
/// rounding), with AVX2 and AVX-512 paths: this runs once per query, and in IVF once per
/// probed list, where it would otherwise cost as much as scanning a short list.
pub fn quantize_table(table: &[f32], lut: &mut Vec<u8>) -> (f32, f32) {
    super::active().pq8.quantize_table(table, lut)
}

type QuantizeFn = unsafe fn(&[f32], &mut Vec<u8>) -> (f32, f32);
type BlocksFn = unsafe fn(&[u8], &[u8], usize, u16, &mut [u16], &mut [u64]);

/// The 8-bit PQ kernels of one SIMD level (part of the dispatch table
/// [`super::Kernels`]).
pub(crate) struct Pq8Kernels {
    quantize: QuantizeFn,
    blocks: BlocksFn,
}

impl Pq8Kernels {
    /// The kernels of `level`: the block scan needs VBMI (below it, the portable scan);
    /// the table quantiser has AVX2 and AVX-512 versions.
    ///
    /// # Safety
    /// The result's methods run code compiled for `level`: the caller must only let them
    /// be called on a CPU that supports `level`.
    pub(super) const unsafe fn for_level(level: SimdLevel) -> Pq8Kernels {
        match level {
            #[cfg(target_arch = "x86_64")]
            SimdLevel::Avx2 => Pq8Kernels {
                quantize: x86::quantize_avx2,
                blocks: scalar_blocks,
            },
            #[cfg(target_arch = "x86_64")]
            SimdLevel::Avx512 => Pq8Kernels {
                quantize: x86::quantize_avx512,
                blocks: scalar_blocks,
            },
            #[cfg(target_arch = "x86_64")]
            SimdLevel::Avx512Vbmi => Pq8Kernels {
                quantize: x86::quantize_avx512,
                blocks: x86::blocks_vbmi,
            },
            _ => Pq8Kernels {
                quantize: super::fastscan::quantize_rows_portable::<256>,
                blocks: scalar_blocks,
            },
        }
    }

    /// [`quantize_table`] at this table's level.
    #[inline]
    pub(crate) fn quantize_table(&self, table: &[f32], lut: &mut Vec<u8>) -> (f32, f32) {
        // SAFETY: the CPU supports this table's level (invariant of `super::Kernels`,
        // which holds this table); the quantisers read whole 256-entry rows of `table`.
        unsafe { (self.quantize)(table, lut) }
    }

    /// [`scan_blocks`] at this table's level.
    #[inline]
    pub(crate) fn scan_blocks(
        &self,
        lut: &[u8],
        blocks: &[u8],
        m: usize,
        thr: u16,
        sums: &mut [u16],
        masks: &mut [u64],
    ) {
        let nb = masks.len();
        assert!(m <= MAX_M, "at most {MAX_M} sub-quantizers, got {m}");
        assert!(lut.len() >= m * 256, "table of {} bytes", lut.len());
        assert!(blocks.len() >= nb * block_bytes(m), "codes too short");
        assert!(sums.len() >= nb * BLOCK, "sums too short");
        // SAFETY: the CPU supports this table's level (as in `quantize_table`); the
        // kernels read `m · 256` table bytes and `nb` blocks and write `nb · 64` sums,
        // checked above.
        unsafe { (self.blocks)(lut, blocks, m, thr, sums, masks) }
    }
}

/// Sums the byte table `lut` (`m × 256`) over `masks.len()` consecutive blocks: per block
/// 64 `u16` sums in lane order (see [`lane_row`]) and a mask with bit `l` set when lane
/// `l`'s sum is at most `thr`.
///
/// # Panics
/// If `m` exceeds [`MAX_M`] or a slice is shorter than the blocks need.
pub fn scan_blocks(
    lut: &[u8],
    blocks: &[u8],
    m: usize,
    thr: u16,
    sums: &mut [u16],
    masks: &mut [u64],
) {
    super::active()
        .pq8
        .scan_blocks(lut, blocks, m, thr, sums, masks)
}

/// Portable reference of [`scan_blocks`].
pub fn scalar_blocks(
    lut: &[u8],
    blocks: &[u8],
    m: usize,
    thr: u16,
    sums: &mut [u16],
    masks: &mut [u64],
) {
    let bb = block_bytes(m);
    for (b, (mask, out)) in masks
        .iter_mut()
        .zip(sums.chunks_exact_mut(BLOCK))
        .enumerate()
    {
        let block = &blocks[b * bb..(b + 1) * bb];
        let mut acc = [0u16; BLOCK];
        for (s, codes) in block.chunks_exact(BLOCK).enumerate() {
            let t: &[u8; 256] = lut[s * 256..(s + 1) * 256].try_into().expect("256");
            for (a, &c) in acc.iter_mut().zip(codes) {
                *a += t[c as usize] as u16;
            }
        }
        *mask = 0;
        for (lane, o) in out.iter_mut().enumerate() {
            *o = acc[lane_row(lane)];
            if *o <= thr {
                *mask |= 1 << lane;
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    //! The AVX-512 VBMI block scan and the AVX2 and AVX-512 table quantisers, installed in
    //! the dispatch tables of their levels.

    use super::{BLOCK, block_bytes};
    use std::arch::x86_64::*;

    retarget! {
        /// [`super::super::fastscan::quantize_rows_portable`] for 256-entry rows, compiled
        /// for AVX2.
        pub(super) unsafe fn quantize_avx2["avx2,fma"] =
            super::super::fastscan::quantize_rows_portable::<256>;
        (table: &[f32], lut: &mut Vec<u8>) -> (f32, f32)
    }

    /// AVX-512 [`super::quantize_table`].
    ///
    /// # Safety
    /// The CPU must support AVX-512F and AVX-512BW.
    #[target_feature(enable = "avx512f,avx512bw")]
    pub(super) unsafe fn quantize_avx512(table: &[f32], lut: &mut Vec<u8>) -> (f32, f32) {
        let nsub = table.len() / 256;
        let mut stack = [0.0f32; 256];
        let mut heap_lows = Vec::new();
        let lows: &mut [f32] = if nsub <= 256 {
            &mut stack[..nsub]
        } else {
            heap_lows.resize(nsub, 0.0);
            &mut heap_lows
        };
        let (mut bias, mut span) = (0.0f32, 0.0f32);
        for (row, low) in table.chunks_exact(256).zip(lows.iter_mut()) {
            // SAFETY: `row` holds 256 floats; unaligned loads.
            let (lo, hi) = unsafe {
                let p = row.as_ptr();
                let mut lo = _mm512_loadu_ps(p);
                let mut hi = lo;
                for c in 1..16 {
                    let v = _mm512_loadu_ps(p.add(16 * c));
                    lo = _mm512_min_ps(lo, v);
                    hi = _mm512_max_ps(hi, v);
                }
                (_mm512_reduce_min_ps(lo), _mm512_reduce_max_ps(hi))
            };
            *low = lo;
            bias += lo;
            span = span.max(hi - lo);
        }
        let scale = if span > 0.0 { 255.0 / span } else { 1.0 };
        lut.clear();
        lut.resize(nsub * 256, 0);
        let vs = _mm512_set1_ps(scale);
        let half = _mm512_set1_ps(0.5);
        for ((out, row), &lo) in lut
            .chunks_exact_mut(256)
            .zip(table.chunks_exact(256))
            .zip(lows.iter())
        {
            let vlo = _mm512_set1_ps(lo);
            // SAFETY: 256 floats in, 256 bytes out; unaligned loads and stores.
            unsafe {
                for c in 0..16 {
                    let v = _mm512_loadu_ps(row.as_ptr().add(16 * c));
                    // (v − lo)·scale + ½ ≥ 0, truncated: round to nearest, as the
                    // portable code; the unsigned saturating pack caps at 255.
                    let x = _mm512_fmadd_ps(_mm512_sub_ps(v, vlo), vs, half);
                    let q = _mm512_cvtusepi32_epi8(_mm512_cvttps_epu32(x));
                    _mm_storeu_si128(out.as_mut_ptr().add(16 * c) as *mut __m128i, q);
                }
            }
        }
        (bias, scale)
    }

    /// One sub-quantizer's 256-byte table in four registers.
    ///
    /// # Safety
    /// The CPU must support AVX-512F, AVX-512BW and AVX-512 VBMI; `lut` must hold
    /// `(s + 1) · 256` bytes.
    #[target_feature(enable = "avx512f,avx512bw,avx512vbmi")]
    #[inline]
    unsafe fn table(lut: &[u8], s: usize) -> [__m512i; 4] {
        // SAFETY: the caller checked `lut` holds m × 256 bytes and s < m.
        unsafe {
            let t = lut.as_ptr().add(s * 256);
            [
                _mm512_loadu_si512(t as *const _),
                _mm512_loadu_si512(t.add(64) as *const _),
                _mm512_loadu_si512(t.add(128) as *const _),
                _mm512_loadu_si512(t.add(192) as *const _),
            ]
        }
    }

    /// Looks up 64 codes in one sub-quantizer's 256-byte table.
    #[target_feature(enable = "avx512f,avx512bw,avx512vbmi")]
    #[inline]
    fn lookup(c: __m512i, t: [__m512i; 4]) -> __m512i {
        let lo = _mm512_permutex2var_epi8(t[0], c, t[1]);
        let hi = _mm512_permutex2var_epi8(t[2], c, t[3]);
        _mm512_mask_blend_epi8(_mm512_movepi8_mask(c), lo, hi)
    }

    /// Stores one block's even/odd sums and returns its threshold mask.
    ///
    /// # Safety
    /// The CPU must support AVX-512F, AVX-512BW and AVX-512 VBMI; `out` must point to 64
    /// writable `u16`s.
    #[target_feature(enable = "avx512f,avx512bw,avx512vbmi")]
    #[inline]
    unsafe fn finish(e: __m512i, o: __m512i, thr: __m512i, out: *mut u16) -> u64 {
        // SAFETY: the caller passes 64 writable sums.
        unsafe {
            _mm512_storeu_si512(out as *mut _, e);
            _mm512_storeu_si512(out.add(32) as *mut _, o);
        }
        let me = _mm512_cmple_epu16_mask(e, thr) as u64;
        let mo = _mm512_cmple_epu16_mask(o, thr) as u64;
        me | (mo << 32)
    }

    /// AVX-512 VBMI [`super::scan_blocks`].
    ///
    /// # Safety
    /// The CPU must support AVX-512F, AVX-512BW and AVX-512 VBMI; `lut` must hold
    /// `m · 256` bytes, `blocks` `masks.len() · m · 64` and `sums` `masks.len() · 64`.
    #[target_feature(enable = "avx512f,avx512bw,avx512vbmi")]
    pub(super) unsafe fn blocks_vbmi(
        lut: &[u8],
        blocks: &[u8],
        m: usize,
        thr: u16,
        sums: &mut [u16],
        masks: &mut [u64],
    ) {
        let nb = masks.len();
        let bb = block_bytes(m);
        let low = _mm512_set1_epi16(0xFF);
        let vthr = _mm512_set1_epi16(thr as i16);
        // SAFETY: by this function's contract `lut` holds m × 256 bytes, `blocks` nb × bb
        // and `sums` nb × 64, which bound every (unaligned) load and store below.
        unsafe {
            let mut b = 0;
            // Two blocks per pass share each table's four loads.
            while b + 2 <= nb {
                let p0 = blocks.as_ptr().add(b * bb);
                let p1 = p0.add(bb);
                let z = _mm512_setzero_si512();
                let (mut e0, mut o0, mut e1, mut o1) = (z, z, z, z);
                for s in 0..m {
                    let t = table(lut, s);
                    let r0 = lookup(_mm512_loadu_si512(p0.add(s * BLOCK) as *const _), t);
                    let r1 = lookup(_mm512_loadu_si512(p1.add(s * BLOCK) as *const _), t);
                    e0 = _mm512_add_epi16(e0, _mm512_and_si512(r0, low));
                    o0 = _mm512_add_epi16(o0, _mm512_srli_epi16::<8>(r0));
                    e1 = _mm512_add_epi16(e1, _mm512_and_si512(r1, low));
                    o1 = _mm512_add_epi16(o1, _mm512_srli_epi16::<8>(r1));
                }
                let out = sums.as_mut_ptr().add(b * BLOCK);
                masks[b] = finish(e0, o0, vthr, out);
                masks[b + 1] = finish(e1, o1, vthr, out.add(BLOCK));
                b += 2;
            }
            if b < nb {
                let p0 = blocks.as_ptr().add(b * bb);
                let z = _mm512_setzero_si512();
                let (mut e0, mut o0) = (z, z);
                for s in 0..m {
                    let r0 = lookup(
                        _mm512_loadu_si512(p0.add(s * BLOCK) as *const _),
                        table(lut, s),
                    );
                    e0 = _mm512_add_epi16(e0, _mm512_and_si512(r0, low));
                    o0 = _mm512_add_epi16(o0, _mm512_srli_epi16::<8>(r0));
                }
                masks[b] = finish(e0, o0, vthr, sums.as_mut_ptr().add(b * BLOCK));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::Kernels;
    use crate::rng::{RngExt, seeded};

    #[test]
    fn layout_round_trips_and_appends() {
        let m = 5;
        let mut rng = seeded(3);
        let codes: Vec<u8> = (0..150 * m).map(|_| rng.random::<u8>()).collect();
        let packed = pack_blocks(&codes, m);
        assert_eq!(packed.len(), 3 * block_bytes(m));
        assert_eq!(unpack_blocks(&packed, m, 150), codes);
        let mut grown = pack_blocks(&codes[..70 * m], m);
        append_blocks(&mut grown, 70, &codes[70 * m..], m);
        assert_eq!(grown, packed);
        for r in [0, 1, 63, 64, 149] {
            for s in 0..m {
                assert_eq!(code_at(&packed, m, r, s), codes[r * m + s]);
            }
        }
    }

    #[test]
    fn table_quantisation_equals_portable_code() {
        use crate::kernels::fastscan::assert_quantiser_matches_portable;
        for k in Kernels::supported() {
            let quantize = |t: &[f32], lut: &mut Vec<u8>| k.pq8.quantize_table(t, lut);
            assert_quantiser_matches_portable::<256>(quantize, 5, &[1, 8, 32, 300]);
        }
        assert_quantiser_matches_portable::<256>(quantize_table, 5, &[1, 8, 32, 300]);
    }

    /// Every level's block scan equals the scalar reference, which equals a direct sum.
    #[test]
    fn every_level_matches_scalar_reference() {
        let mut rng = seeded(11);
        for m in [1, 4, 8, 16, 32, 33, 64, 257] {
            for nb in [1, 2, 3, 6] {
                let lut: Vec<u8> = (0..m * 256).map(|_| rng.random::<u8>()).collect();
                let blocks: Vec<u8> = (0..nb * block_bytes(m))
                    .map(|_| rng.random::<u8>())
                    .collect();
                let thr = (m * 128) as u16;
                let (mut s1, mut m1) = (vec![0u16; nb * BLOCK], vec![0u64; nb]);
                let (mut s2, mut m2) = (vec![0u16; nb * BLOCK], vec![0u64; nb]);
                scalar_blocks(&lut, &blocks, m, thr, &mut s2, &mut m2);
                for k in Kernels::supported() {
                    k.pq8.scan_blocks(&lut, &blocks, m, thr, &mut s1, &mut m1);
                    let name = k.level();
                    assert_eq!((&s1, &m1), (&s2, &m2), "{name} m {m}, {nb} blocks");
                }
                scan_blocks(&lut, &blocks, m, thr, &mut s1, &mut m1);
                assert_eq!((&s1, &m1), (&s2, &m2), "dispatched m {m}, {nb} blocks");
                // The reference against a direct sum over the row-major codes.
                for b in 0..nb {
                    for lane in 0..BLOCK {
                        let r = b * BLOCK + lane_row(lane);
                        let want: u32 = (0..m)
                            .map(|s| lut[s * 256 + code_at(&blocks, m, r, s) as usize] as u32)
                            .sum();
                        assert_eq!(s2[b * BLOCK + lane] as u32, want);
                        assert_eq!(m2[b] >> lane & 1 == 1, want <= thr as u32);
                    }
                }
            }
        }
    }
}
