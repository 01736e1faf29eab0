//! Small passes and selections around the exact scans — over the `u16` sums of the
//! byte-table kernels, an inverted file's coarse distances and the candidates' keys —
//! dispatched like the other kernels: the crate's baseline target (SSE2) has no unsigned
//! 16-bit compare or `u16` → bit-mask move, so the portable loops run element by
//! element there, while AVX2 and AVX-512BW compile them to a few vector instructions
//! per block. The selections count ranks instead of branching on each value: the
//! short runs here made sorts and branchy selections mispredict.
//!
//! - [`le_mask`]: bit `i` set where `sums[i] ≤ thr` (the threshold masks of a block,
//!   recomputed when a scan's threshold tightened after its kernel ran);
//! - [`strided_minima`]: the minima of the strided groups of a run of sums (the seed
//!   of an unbounded exact scan, `ExactPass::seed`);
//! - [`kth_smallest`]: the `k`-th smallest of up to 64 sums (the seed's threshold
//!   among those minima);
//! - [`smallest_keys`]: the few smallest of a run of `f32` distances, as sorted
//!   [`order_key`]s with their positions (an inverted file's nearest lists);
//! - [`sort_distinct`]: a short run of distinct `u64` keys sorted (the candidates of
//!   an exact scan, in the order they are re-scored).

use super::SimdLevel;

type LeMaskFn = unsafe fn(&[u16], u16) -> u64;
type MinimaFn = unsafe fn(&[u16], &mut [u16]);
type KthFn = unsafe fn(&[u16], usize) -> u16;
type SmallestFn = unsafe fn(&[f32], usize, &mut Vec<u64>);
type SortFn = unsafe fn(&mut [u64]);

/// The sum kernels of one SIMD level (part of the dispatch table [`super::Kernels`]).
pub(crate) struct SumsKernels {
    le_mask: LeMaskFn,
    minima: MinimaFn,
    kth: KthFn,
    smallest: SmallestFn,
    sort: SortFn,
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
                smallest: smallest_avx2,
                sort: sort_portable,
            },
            #[cfg(target_arch = "x86_64")]
            SimdLevel::Avx512 | SimdLevel::Avx512Vbmi => SumsKernels {
                le_mask: le_mask_avx512,
                minima: minima_avx512,
                kth: kth_avx512,
                smallest: smallest_avx512,
                sort: sort_avx512,
            },
            _ => SumsKernels {
                le_mask: le_mask_portable,
                minima: minima_portable,
                kth: kth_portable::<u16>,
                smallest: smallest_portable,
                sort: sort_portable,
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
            (1..=values.len()).contains(&k) && values.len() <= KTH_MAX,
            "the {k}-th smallest of {} values",
            values.len()
        );
        // SAFETY: as in `le_mask`; the kernels read `values` only.
        unsafe { (self.kth)(values, k) }
    }

    /// [`smallest_keys`] at this table's level.
    #[inline]
    pub(crate) fn smallest_keys(&self, x: &[f32], k: usize, out: &mut Vec<u64>) {
        assert!(
            (1..=FEW).contains(&k) && k <= x.len() && x.len() <= u32::MAX as usize,
            "the {k} smallest of {} values",
            x.len()
        );
        // SAFETY: as in `le_mask`; the kernels read `x` and write `out` only.
        unsafe { (self.smallest)(x, k, out) }
    }

    /// [`sort_distinct`] at this table's level.
    #[inline]
    pub(crate) fn sort_distinct(&self, keys: &mut [u64]) {
        debug_assert!(
            keys.len() > SORT_BY_RANK || (0..keys.len()).all(|i| !keys[i + 1..].contains(&keys[i])),
            "equal keys"
        );
        // SAFETY: as in `le_mask`; the kernels permute `keys` only.
        unsafe { (self.sort)(keys) }
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

/// The most values [`kth_smallest`] takes.
pub const KTH_MAX: usize = 64;

/// The `k`-th smallest of `values` (`1 ≤ k ≤ len ≤ KTH_MAX`): the smallest value with
/// at least `k` values at or under it.
#[inline]
pub fn kth_smallest(values: &[u16], k: usize) -> u16 {
    super::active().sums.kth_smallest(values, k)
}

/// Portable [`kth_smallest`] (any ordered values: also the bound of
/// [`smallest_portable`]): for each value, the values at or under it counted (`len²`
/// compares without data-dependent branches: an insertion sort of a seed's 32 minima
/// mispredicted).
#[inline(always)]
pub fn kth_portable<T: Ord + Copy>(values: &[T], k: usize) -> T {
    let mut t = values[0];
    let mut found = false;
    for &x in values {
        let at_or_under = values.iter().filter(|&&y| y <= x).count();
        if at_or_under >= k && (!found || x < t) {
            (t, found) = (x, true);
        }
    }
    t
}

super::retarget! {
    /// [`kth_portable`] compiled for AVX2.
    unsafe fn kth_avx2["avx2"] = kth_portable::<u16>;
    (values: &[u16], k: usize) -> u16
}

/// AVX-512BW [`kth_smallest`]: the values in one or two registers, and every value's
/// count in a register of lanes (the portable count is a reduction and a branch per
/// value).
///
/// # Safety
/// The CPU must support AVX-512F and AVX-512BW; `values` is at most 64 long.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx2,sse4.1")]
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
    // Every value's count at once, one lane each — per value `x`, a compare with all
    // and a masked add (no data-dependent branch) — then the smallest value whose count
    // reaches `k`.
    let (one, zero) = (_mm512_set1_epi16(1), _mm512_setzero_si512());
    let kv = _mm512_set1_epi16(k as i16);
    let lowest = |v: __m512i, m: __mmask32, counts: __m512i| -> __m256i {
        let reach = _mm512_mask_cmpge_epu16_mask(m, counts, kv);
        let v = _mm512_mask_mov_epi16(_mm512_set1_epi16(-1), reach, v);
        _mm256_min_epu16(_mm512_castsi512_si256(v), _mm512_extracti64x4_epi64::<1>(v))
    };
    let v = if n1 == 0 {
        // (Up to 32 values, the common case: one register.)
        let c0 = values[..n].iter().fold(zero, |c, &x| {
            let ge = _mm512_mask_cmpge_epu16_mask(m0, v0, _mm512_set1_epi16(x as i16));
            _mm512_mask_add_epi16(c, ge, c, one)
        });
        lowest(v0, m0, c0)
    } else {
        let (c0, c1) = values[..n].iter().fold((zero, zero), |(c0, c1), &x| {
            let b = _mm512_set1_epi16(x as i16);
            let (ge0, ge1) = (
                _mm512_mask_cmpge_epu16_mask(m0, v0, b),
                _mm512_mask_cmpge_epu16_mask(m1, v1, b),
            );
            (
                _mm512_mask_add_epi16(c0, ge0, c0, one),
                _mm512_mask_add_epi16(c1, ge1, c1, one),
            )
        });
        _mm256_min_epu16(lowest(v0, m0, c0), lowest(v1, m1, c1))
    };
    let v = _mm_min_epu16(_mm256_castsi256_si128(v), _mm256_extracti128_si256::<1>(v));
    _mm_extract_epi16::<0>(_mm_minpos_epu16(v)) as u16
}

/// Sorts `keys`, which hold no two equal values up to [`SORT_BY_RANK`] of them
/// (longer runs may hold ties).
#[inline]
pub fn sort_distinct(keys: &mut [u64]) {
    super::active().sums.sort_distinct(keys)
}

/// Up to this many keys, the AVX-512 [`sort_distinct`] places each key at its rank.
pub const SORT_BY_RANK: usize = 32;

/// Portable [`sort_distinct`].
pub fn sort_portable(keys: &mut [u64]) {
    keys.sort_unstable();
}

/// AVX-512 [`sort_distinct`]: up to [`SORT_BY_RANK`] keys in four registers, every
/// key's rank counted at once in lanes (per key one compare with all and a masked
/// add), then each key scattered to its rank — no data-dependent branch, where an
/// insertion sort of the few candidates of an exact scan mispredicted. Longer runs
/// are sorted by the standard library.
///
/// # Safety
/// The CPU must support AVX-512F; `keys` holds distinct values when at most
/// [`SORT_BY_RANK`] long.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn sort_avx512(keys: &mut [u64]) {
    use std::arch::x86_64::*;
    const L: usize = 8;
    let n = keys.len();
    if n > SORT_BY_RANK {
        return keys.sort_unstable();
    }
    let used = n.div_ceil(L);
    let mut regs = [_mm512_setzero_si512(); SORT_BY_RANK / L];
    let mut masks = [0 as __mmask8; SORT_BY_RANK / L];
    for r in 0..used {
        let c = (n - r * L).min(L);
        masks[r] = ((1u32 << c) - 1) as u8;
        // SAFETY: `r · 8 < n`; the masked load reads only the `c` keys from there
        // (masked lanes never fault).
        regs[r] =
            unsafe { _mm512_maskz_loadu_epi64(masks[r], keys.as_ptr().add(r * L) as *const i64) };
    }
    let one = _mm512_set1_epi64(1);
    let mut ranks = [_mm512_setzero_si512(); SORT_BY_RANK / L];
    for &x in keys.iter() {
        let b = _mm512_set1_epi64(x as i64);
        for r in 0..used {
            let ge = _mm512_mask_cmpge_epu64_mask(masks[r], regs[r], b);
            ranks[r] = _mm512_mask_add_epi64(ranks[r], ge, ranks[r], one);
        }
    }
    // Rank `i + 1` (distinct keys: `i` keys are smaller) → position `i`.
    let base = keys.as_mut_ptr().wrapping_sub(1) as *mut i64;
    for r in 0..used {
        // SAFETY: each rank is in 1..=n, so every store lands in `keys[0..n]`; the
        // ranks of distinct keys are distinct, so each position is written once.
        unsafe { _mm512_mask_i64scatter_epi64::<8>(base, masks[r], ranks[r], regs[r]) };
    }
}

/// The most values [`smallest_keys`] selects.
pub const FEW: usize = 16;

/// A `u32` whose unsigned order is `f32::total_cmp`'s order of `v`.
#[inline(always)]
pub fn order_key(v: f32) -> u32 {
    let b = v.to_bits() as i32;
    ((b ^ (((b >> 31) as u32) >> 1) as i32) as u32) ^ 0x8000_0000
}

/// The inverse of [`order_key`] (the same bits, NaN payloads included).
#[inline]
pub fn from_order_key(k: u32) -> f32 {
    let t = (k ^ 0x8000_0000) as i32;
    f32::from_bits((t ^ (((t >> 31) as u32) >> 1) as i32) as u32)
}

/// Sets `out` to the `k` smallest of `order_key(x[i]) << 32 | i` (`1 ≤ k ≤ FEW`,
/// `k ≤ x.len()`), ascending: the `k` smallest values by `f32::total_cmp`, ties by
/// position.
#[inline]
pub fn smallest_keys(x: &[f32], k: usize, out: &mut Vec<u64>) {
    super::active().sums.smallest_keys(x, k, out)
}

/// [`smallest_keys`] for more than [`FEW`] values (`1 ≤ k`, `2k ≤ x.len()`), in
/// portable code that vectorises: `2k` rounded up to a power of two strided groups,
/// whose minima's `k`-th smallest `t` is at least the `k`-th smallest key (the `k`
/// groups with minima `≤ t` hold `k` distinct keys `≤ t`); the keys `≤ t` — about
/// `1.4 k` of them — are collected in one more pass, the `k` smallest selected and
/// sorted. Two passes over `x` and a selection among `≈ 1.4 k` keys instead of keys for
/// every value and a selection among all of them. `minima` is scratch. (The count
/// `1.4 k` is for values in no particular order; with many equal values more keys are
/// collected, at worst all of them. Compiled for AVX-512 through the dispatch table
/// this was no faster: 8.0 against 6.7 % of a search's samples at nprobe 32 of 1,024
/// lists.)
pub fn smallest_keys_many(x: &[f32], k: usize, out: &mut Vec<u64>, minima: &mut Vec<u32>) {
    assert!(
        k >= 1 && 2 * k <= x.len(),
        "the {k} smallest of {} values",
        x.len()
    );
    let groups = (2 * k).next_power_of_two().min(x.len());
    minima.clear();
    minima.resize(groups, u32::MAX);
    for row in x.chunks(groups) {
        for (m, &v) in minima.iter_mut().zip(row) {
            *m = (*m).min(order_key(v));
        }
    }
    let t = *minima.select_nth_unstable(k - 1).1;
    out.clear();
    out.extend(
        x.iter()
            .enumerate()
            .filter(|&(_, &v)| order_key(v) <= t)
            .map(|(i, &v)| u64::from(order_key(v)) << 32 | i as u64),
    );
    if out.len() > k {
        out.select_nth_unstable(k - 1);
        out.truncate(k);
    }
    out.sort_unstable();
}

/// Strided groups whose minima bound [`smallest_keys`]' selection.
const GROUPS: usize = 32;

/// Portable [`smallest_keys`]: `t`, the `k`-th smallest of the minima of [`GROUPS`]
/// strided groups, is at least the `k`-th smallest key (the `k` groups with minima
/// `≤ t` hold `k` distinct keys `≤ t`), so the answer is among the few keys `≤ t`:
/// collected in one more pass and sorted. Short runs are sorted whole.
#[inline(always)]
pub fn smallest_portable(x: &[f32], k: usize, out: &mut Vec<u64>) {
    out.clear();
    let key = |i: usize, v: f32| u64::from(order_key(v)) << 32 | i as u64;
    if x.len() < 2 * GROUPS {
        out.extend(x.iter().enumerate().map(|(i, &v)| key(i, v)));
    } else {
        let mut minima = [u32::MAX; GROUPS];
        for row in x.chunks(GROUPS) {
            for (m, &v) in minima.iter_mut().zip(row) {
                *m = (*m).min(order_key(v));
            }
        }
        let t = kth_portable(&minima, k);
        out.extend(
            x.iter()
                .enumerate()
                .filter(|&(_, &v)| order_key(v) <= t)
                .map(|(i, &v)| key(i, v)),
        );
    }
    keep_smallest(out, k, <[u64]>::sort_unstable);
}

/// Cuts the distinct keys collected by [`smallest_keys`] to the `k` smallest, sorted:
/// up to [`SORT_BY_RANK`] of them sorted whole by the level's `sort`, more selected
/// first.
#[inline(always)]
fn keep_smallest(out: &mut Vec<u64>, k: usize, sort: impl FnOnce(&mut [u64])) {
    if out.len() <= SORT_BY_RANK {
        sort(out);
    } else {
        out.select_nth_unstable(k);
        out.truncate(k);
        out.sort_unstable();
    }
    out.truncate(k);
}

super::retarget! {
    /// [`smallest_portable`] compiled for AVX2.
    unsafe fn smallest_avx2["avx2"] = smallest_portable;
    (x: &[f32], k: usize, out: &mut Vec<u64>)
}

/// AVX-512 [`smallest_keys`]: the keys made, their group minima kept and the values
/// under the bound found sixteen at a time, and the bound selected by counting every
/// minimum's rank at once in lanes (no data-dependent branch).
///
/// # Safety
/// The CPU must support AVX-512F and AVX-512BW.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw")]
unsafe fn smallest_avx512(x: &[f32], k: usize, out: &mut Vec<u64>) {
    use std::arch::x86_64::*;
    const L: usize = 16;
    let n = x.len();
    if n < 2 * GROUPS {
        return smallest_portable(x, k, out);
    }
    let keys = |v: __m512i| {
        let s = _mm512_srli_epi32::<1>(_mm512_srai_epi32::<31>(v));
        _mm512_xor_si512(_mm512_xor_si512(v, s), _mm512_set1_epi32(i32::MIN))
    };
    let tail = n % L;
    let tail_mask: __mmask16 = ((1u32 << tail) - 1) as u16;
    let max = _mm512_set1_epi32(-1);
    // The keys of the 16 values from `at` (`u32::MAX` past the end).
    let load = |at: usize| -> __m512i {
        if at + L <= n {
            // SAFETY: `at + 16 ≤ n`; the features are this function's.
            keys(unsafe { _mm512_loadu_si512(x.as_ptr().add(at) as *const _) })
        } else {
            // SAFETY: the masked load reads only the `n − at` lanes left (masked
            // lanes never fault).
            let v =
                unsafe { _mm512_maskz_loadu_epi32(tail_mask, x.as_ptr().add(at) as *const i32) };
            _mm512_mask_mov_epi32(max, tail_mask, keys(v))
        }
    };
    let (mut m0, mut m1) = (max, max);
    for at in (0..n).step_by(GROUPS) {
        m0 = _mm512_min_epu32(m0, load(at));
        if at + L < n {
            m1 = _mm512_min_epu32(m1, load(at + L));
        }
    }
    let mut minima = [0u32; GROUPS];
    // SAFETY: `minima` holds 32 `u32`s: two unaligned 64-byte stores.
    unsafe {
        _mm512_storeu_si512(minima.as_mut_ptr() as *mut _, m0);
        _mm512_storeu_si512(minima.as_mut_ptr().add(L) as *mut _, m1);
    }
    // The k-th smallest of the minima: every minimum's count at once (as in
    // `kth_avx512`), then the smallest minimum whose count reaches `k`.
    let (one, zero) = (_mm512_set1_epi32(1), _mm512_setzero_si512());
    let (c0, c1) = minima.iter().fold((zero, zero), |(c0, c1), &m| {
        let b = _mm512_set1_epi32(m as i32);
        (
            _mm512_mask_add_epi32(c0, _mm512_cmpge_epu32_mask(m0, b), c0, one),
            _mm512_mask_add_epi32(c1, _mm512_cmpge_epu32_mask(m1, b), c1, one),
        )
    });
    let kv = _mm512_set1_epi32(k as i32);
    let t = _mm512_reduce_min_epu32(_mm512_min_epu32(
        _mm512_mask_mov_epi32(max, _mm512_cmpge_epu32_mask(c0, kv), m0),
        _mm512_mask_mov_epi32(max, _mm512_cmpge_epu32_mask(c1, kv), m1),
    ));
    out.clear();
    let tv = _mm512_set1_epi32(t as i32);
    for at in (0..n).step_by(L) {
        let mut mask = _mm512_cmple_epu32_mask(load(at), tv);
        while mask != 0 {
            let i = at + mask.trailing_zeros() as usize;
            mask &= mask - 1;
            out.push(u64::from(order_key(x[i])) << 32 | i as u64);
        }
    }
    // (Distinct keys: the positions differ. Two or more sorted by rank, without
    // branches.)
    keep_smallest(out, k, |keys| {
        if keys.len() > 1 {
            // SAFETY: the CPU supports AVX-512F (this function's features).
            unsafe { sort_avx512(keys) }
        }
    });
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

    /// Every level's kernels equal their definitions: masks for every length up to 64
    /// and the `k`-th smallest for every `k` (ties, 0 and `u16::MAX`), the `k ≤ 16`
    /// smallest keys and more (up to half the values) against a full sort (NaN,
    /// infinities, signed zeros), the distinct
    /// keys' sort against `sort_unstable`, and minima for group counts 1…512.
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
            for n in [1usize, 2, 15, 16, 17, 63, 64, 65, 100, 256, 1000] {
                let x: Vec<f32> = (0..n)
                    .map(|_| match rng.random_range(0..12u32) {
                        0 => 0.0,
                        1 => -0.0,
                        2 => f32::INFINITY,
                        3 => f32::NEG_INFINITY,
                        4 => f32::NAN,
                        5 => 1.5,
                        _ => rng.random_range(-4.0f32..4.0),
                    })
                    .collect();
                let mut want: Vec<u64> = x
                    .iter()
                    .enumerate()
                    .map(|(i, &v)| u64::from(super::order_key(v)) << 32 | i as u64)
                    .collect();
                want.sort_unstable();
                let mut got = Vec::new();
                for kk in 1..=n.min(super::FEW) {
                    k.sums.smallest_keys(&x, kk, &mut got);
                    assert_eq!(got, want[..kk], "{:?} n {n} k {kk}", k.level());
                }
                // More than `FEW`, up to half of the values (portable code).
                let mut minima = Vec::new();
                for kk in [1, 17, 31, 32, 33, 64, 100, 333, n / 2] {
                    if kk >= 1 && 2 * kk <= n {
                        super::smallest_keys_many(&x, kk, &mut got, &mut minima);
                        assert_eq!(got, want[..kk], "n {n} many k {kk}");
                    }
                }
            }
            for n in [0usize, 1, 2, 7, 8, 9, 16, 31, 32, 33, 100] {
                let mut keys: Vec<u64> = Vec::new();
                while keys.len() < n {
                    // Few distinct high halves (ties of sums), distinct rows.
                    let key =
                        u64::from(rng.random_range(0..4u32)) << 32 | rng.random_range(0..200u64);
                    if !keys.contains(&key) {
                        keys.push(key);
                    }
                }
                if n > 0 {
                    keys[0] = u64::MAX;
                }
                let mut want = keys.clone();
                want.sort_unstable();
                k.sums.sort_distinct(&mut keys);
                assert_eq!(keys, want, "{:?} n {n}", k.level());
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
