//! Small passes over the `u16` sums of the byte-table scans, dispatched like the other
//! kernels: the crate's baseline target (SSE2) has no unsigned 16-bit compare or
//! `u16` → bit-mask move, so the portable loops run element by element there, while
//! AVX2 and AVX-512BW compile them to a few vector instructions per block.
//!
//! - [`le_mask`]: bit `i` set where `sums[i] ≤ thr` (the threshold masks of a block,
//!   recomputed when a scan's threshold tightened after its kernel ran);
//! - [`strided_minima`]: the minima of the strided groups of a run of sums (the seed
//!   of an unbounded exact scan, `ExactPass::seed`);
//! - [`kth_smallest`]: the `k`-th smallest of up to 64 sums (the seed's threshold
//!   among those minima).

use super::SimdLevel;

type LeMaskFn = unsafe fn(&[u16], u16) -> u64;
type MinimaFn = unsafe fn(&[u16], &mut [u16]);
type KthFn = unsafe fn(&[u16], usize) -> u16;

/// The sum kernels of one SIMD level (part of the dispatch table [`super::Kernels`]).
pub(crate) struct SumsKernels {
    le_mask: LeMaskFn,
    minima: MinimaFn,
    kth: KthFn,
}

impl SumsKernels {
    /// The kernels of `level`.
    ///
    /// # Safety
    /// The result's methods run code compiled for `level`: the caller must only let them
    /// be called on a CPU that supports `level`.
    pub(super) const unsafe fn for_level(level: SimdLevel) -> SumsKernels {
        match level {
            #[cfg(target_arch = "x86_64")]
            SimdLevel::Avx2 => SumsKernels {
                le_mask: le_mask_avx2,
                minima: minima_avx2,
                kth: kth_avx2,
            },
            #[cfg(target_arch = "x86_64")]
            SimdLevel::Avx512 | SimdLevel::Avx512Vbmi => SumsKernels {
                le_mask: le_mask_avx512,
                minima: minima_avx512,
                kth: kth_avx512,
            },
            _ => SumsKernels {
                le_mask: le_mask_portable,
                minima: minima_portable,
                kth: kth_portable,
            },
        }
    }

    /// [`le_mask`] at this table's level.
    #[inline]
    pub(crate) fn le_mask(&self, sums: &[u16], thr: u16) -> u64 {
        assert!(sums.len() <= 64, "{} sums in one mask", sums.len());
        // SAFETY: the CPU supports this table's level (type invariant of `Kernels`);
        // the kernels read `sums` only.
        unsafe { (self.le_mask)(sums, thr) }
    }

    /// [`kth_smallest`] at this table's level.
    #[inline]
    pub(crate) fn kth_smallest(&self, values: &[u16], k: usize) -> u16 {
        assert!(
            (1..=values.len()).contains(&k) && values.len() <= 64,
            "the {k}-th smallest of {} values",
            values.len()
        );
        // SAFETY: as in `le_mask`; the kernels read `values` only.
        unsafe { (self.kth)(values, k) }
    }

    /// [`strided_minima`] at this table's level.
    #[inline]
    pub(crate) fn strided_minima(&self, sums: &[u16], out: &mut [u16]) {
        // SAFETY: as in `le_mask`; the kernels write `out` only.
        unsafe { (self.minima)(sums, out) }
    }
}

/// Bit `i` set where `sums[i] ≤ thr` (`sums` at most 64 long).
#[inline]
pub fn le_mask(sums: &[u16], thr: u16) -> u64 {
    super::active().sums.le_mask(sums, thr)
}

/// `out[i]` = the minimum of `sums[j]` over `j ≡ i (mod out.len())` (`u16::MAX` for an
/// empty group).
#[inline]
pub fn strided_minima(sums: &[u16], out: &mut [u16]) {
    super::active().sums.strided_minima(sums, out)
}

/// The `k`-th smallest of `values` (`1 ≤ k ≤ len ≤ 64`): the smallest value with at
/// least `k` values at or under it.
#[inline]
pub fn kth_smallest(values: &[u16], k: usize) -> u16 {
    super::active().sums.kth_smallest(values, k)
}

/// Portable [`kth_smallest`]: for each value, the values at or under it counted
/// (`len²` compares without data-dependent branches: an insertion sort of a seed's
/// 32 minima mispredicted).
#[inline(always)]
pub fn kth_portable(values: &[u16], k: usize) -> u16 {
    values.iter().fold(u16::MAX, |t, &x| {
        let at_or_under: u16 = values.iter().map(|&y| u16::from(y <= x)).sum();
        if usize::from(at_or_under) >= k {
            t.min(x)
        } else {
            t
        }
    })
}

super::retarget! {
    /// [`kth_portable`] compiled for AVX2.
    unsafe fn kth_avx2["avx2"] = kth_portable;
    (values: &[u16], k: usize) -> u16
}

/// AVX-512BW [`kth_smallest`]: the values in two registers, and per value one
/// `vpcmpuw` into a mask and a population count each (the portable count is a
/// reduction per value, four times the instructions).
///
/// # Safety
/// The CPU must support AVX-512F and AVX-512BW; `values` is at most 64 long.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,popcnt")]
unsafe fn kth_avx512(values: &[u16], k: usize) -> u16 {
    use std::arch::x86_64::*;
    let n = values.len().min(64);
    let (n0, n1) = (n.min(32), n.saturating_sub(32));
    let lanes = |c: usize| -> __mmask32 { if c >= 32 { !0 } else { (1u32 << c) - 1 } };
    let (m0, m1) = (lanes(n0), lanes(n1));
    // SAFETY: the masked loads read only the `n0` and `n1` lanes set in `m0` and `m1`
    // (masked lanes never fault), all within `values`; the features are this
    // function's.
    let (v0, v1) = unsafe {
        (
            _mm512_maskz_loadu_epi16(m0, values.as_ptr() as *const i16),
            _mm512_maskz_loadu_epi16(m1, values.as_ptr().add(n0) as *const i16),
        )
    };
    values[..n].iter().fold(u16::MAX, |t, &x| {
        let b = _mm512_set1_epi16(x as i16);
        let at_or_under = _mm512_mask_cmple_epu16_mask(m0, v0, b).count_ones()
            + _mm512_mask_cmple_epu16_mask(m1, v1, b).count_ones();
        if at_or_under as usize >= k {
            t.min(x)
        } else {
            t
        }
    })
}

/// Portable [`le_mask`].
#[inline(always)]
pub fn le_mask_portable(sums: &[u16], thr: u16) -> u64 {
    sums.iter()
        .enumerate()
        .fold(0u64, |m, (i, &v)| m | (u64::from(v <= thr) << i))
}

/// Portable [`strided_minima`]: whole rows of `out.len()` sums folded element-wise (one
/// vector minimum per register of sums when compiled for AVX2 or AVX-512BW).
#[inline(always)]
pub fn minima_portable(sums: &[u16], out: &mut [u16]) {
    out.fill(u16::MAX);
    let g = out.len();
    if g == 0 {
        return;
    }
    let mut rows = sums.chunks_exact(g);
    for row in &mut rows {
        for (o, &v) in out.iter_mut().zip(row) {
            *o = (*o).min(v);
        }
    }
    for (o, &v) in out.iter_mut().zip(rows.remainder()) {
        *o = (*o).min(v);
    }
}

super::retarget! {
    /// [`le_mask_portable`] compiled for AVX2.
    unsafe fn le_mask_avx2["avx2"] = le_mask_portable;
    (sums: &[u16], thr: u16) -> u64
}

/// AVX-512BW [`le_mask`]: masked loads of up to 32 sums and `vpcmpuw` straight into a
/// mask register, twice at most.
///
/// # Safety
/// The CPU must support AVX-512F and AVX-512BW; `sums` is at most 64 long.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw")]
unsafe fn le_mask_avx512(sums: &[u16], thr: u16) -> u64 {
    use std::arch::x86_64::*;
    let t = _mm512_set1_epi16(thr as i16);
    let half = |part: &[u16]| -> u64 {
        let k: __mmask32 = if part.len() >= 32 {
            !0
        } else {
            (1u32 << part.len()) - 1
        };
        // SAFETY: the masked load reads only the `part.len()` lanes set in `k` (masked
        // lanes never fault); the features are this function's.
        unsafe {
            let v = _mm512_maskz_loadu_epi16(k, part.as_ptr() as *const i16);
            u64::from(_mm512_mask_cmple_epu16_mask(k, v, t))
        }
    };
    let (lo, hi) = sums.split_at(sums.len().min(32));
    if hi.is_empty() {
        half(lo)
    } else {
        half(lo) | half(&hi[..hi.len().min(32)]) << 32
    }
}

super::retarget! {
    /// [`minima_portable`] compiled for AVX2.
    unsafe fn minima_avx2["avx2"] = minima_portable;
    (sums: &[u16], out: &mut [u16])
}

super::retarget! {
    /// [`minima_portable`] compiled for AVX-512BW.
    unsafe fn minima_avx512["avx512f,avx512bw,avx2"] = minima_portable;
    (sums: &[u16], out: &mut [u16])
}

#[cfg(test)]
mod tests {
    use crate::kernels::Kernels;
    use crate::rng::{RngExt, seeded};

    /// Every level's masks and minima equal the element-by-element definitions, for
    /// every length up to 64 (masks, k-th smallest for every k, with ties) and group counts 1…512 over odd lengths, with
    /// thresholds and sums at 0 and `u16::MAX`.
    #[test]
    fn sum_kernels_equal_their_definitions() {
        let mut rng = seeded(3);
        for k in Kernels::supported() {
            for len in 0..=64usize {
                let sums: Vec<u16> = (0..len)
                    .map(|_| match rng.random_range(0..6u32) {
                        0 => 0,
                        1 => u16::MAX,
                        _ => rng.random_range(0..2000),
                    })
                    .collect();
                for thr in [0u16, 1, 999, 1000, u16::MAX - 1, u16::MAX] {
                    let want = (0..len).fold(0u64, |m, i| m | (u64::from(sums[i] <= thr) << i));
                    assert_eq!(
                        k.sums.le_mask(&sums, thr),
                        want,
                        "{:?} len {len} thr {thr}",
                        k.level()
                    );
                }
            }
            for len in 1..=64usize {
                let spread = [1u16, 3, 2000, u16::MAX][len % 4];
                let values: Vec<u16> = (0..len)
                    .map(|_| match rng.random_range(0..8u32) {
                        0 => 0,
                        1 => u16::MAX,
                        _ => rng.random_range(0..=spread),
                    })
                    .collect();
                let mut sorted = values.clone();
                sorted.sort_unstable();
                for kk in 1..=len {
                    assert_eq!(
                        k.sums.kth_smallest(&values, kk),
                        sorted[kk - 1],
                        "{:?} len {len} k {kk}",
                        k.level()
                    );
                }
            }
            for g in [1usize, 3, 32, 64, 100, 512] {
                for n in [0usize, 1, g - 1, g, g + 1, 5 * g + 7] {
                    let sums: Vec<u16> = (0..n).map(|_| rng.random::<u16>()).collect();
                    let mut got = vec![0u16; g];
                    k.sums.strided_minima(&sums, &mut got);
                    let want: Vec<u16> = (0..g)
                        .map(|i| {
                            sums.iter()
                                .skip(i)
                                .step_by(g)
                                .copied()
                                .min()
                                .unwrap_or(u16::MAX)
                        })
                        .collect();
                    assert_eq!(got, want, "{:?} g {g} n {n}", k.level());
                }
            }
        }
    }
}
