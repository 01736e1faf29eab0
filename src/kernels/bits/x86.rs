//! Hardware-`popcnt` and AVX2 bit-plane kernels, installed in the dispatch tables of
//! the levels from [`super::SimdLevel::Avx2`] on. The safe methods of
//! [`super::BitsKernels`] pass whole codes and whole planes only.

use std::arch::x86_64::*;

retarget! {
    /// [`super::planes_words_outer`] compiled with hardware `popcnt`.
    pub(super) unsafe fn planes_popcnt["popcnt"] = super::planes_words_outer;
    (code: &[u64], planes: &[u64]) -> u32
}

retarget! {
    /// [`super::scalar_popcount`] compiled with hardware `popcnt`.
    pub(super) unsafe fn popcount_popcnt["popcnt"] = super::scalar_popcount;
    (code: &[u64]) -> u32
}

retarget! {
    /// [`super::rows_words_outer`] compiled with hardware `popcnt`.
    pub(super) unsafe fn rows_popcnt["popcnt"] = super::rows_words_outer;
    (rows: &[u8], stride: usize, plane_bytes: usize, planes: &[u64], sums: &mut [u32], pcs: &mut [u32])
}

/// [`super::planes_words_outer`] per code, compiled with hardware `popcnt`.
///
/// # Safety
/// The CPU must support `popcnt`; `words > 0`, `codes.len() = out.len() · words` and
/// `planes.len()` a multiple of `words`.
#[target_feature(enable = "popcnt")]
pub(super) unsafe fn batch_popcnt(codes: &[u64], words: usize, planes: &[u64], out: &mut [u32]) {
    for (o, code) in out.iter_mut().zip(codes.chunks_exact(words)) {
        *o = super::planes_words_outer(code, planes);
    }
}

/// Per-byte population counts of `x` (two 16-entry nibble look-ups).
#[inline]
#[target_feature(enable = "avx2")]
fn byte_counts(x: __m256i) -> __m256i {
    let table = _mm256_setr_epi8(
        0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4, //
        0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4,
    );
    let m = _mm256_set1_epi8(0x0F);
    let lo = _mm256_shuffle_epi8(table, _mm256_and_si256(x, m));
    let hi = _mm256_shuffle_epi8(table, _mm256_and_si256(_mm256_srli_epi16(x, 4), m));
    _mm256_add_epi8(lo, hi)
}

/// Whether codes of other widths use [`planes_avx2`] (else [`batch_popcnt`]). Measured
/// on Zen 3 (`benches/kernels.rs`, `bits_bq4`, 1,024 codes, Bq = 4): at d = 384 and
/// 1,024 the AVX2 kernel was as fast or faster than per-code `popcnt` (57 vs 66 µs,
/// 88 vs 127 µs); at d = 128 the grouped kernel took 7.2 µs against `popcnt`'s 22 µs.
const WIDE_AVX2: bool = true;

/// Most planes the register-held AVX2 kernels take; more go word by word.
const MAX_PLANES: usize = 16;

/// AVX2 [`super::and_popcount_planes_batch`]: codes of 1, 2 or 4 words are taken 4, 2
/// or 1 to a register against planes broadcast to match (per-byte counts by nibble
/// look-up, summed per 64-bit lane by `vpsadbw` and shifted by the plane index); other
/// widths run [`batch_popcnt`].
///
/// # Safety
/// The CPU must support AVX2 and `popcnt`; `words > 0`, `codes.len() = out.len() ·
/// words` and `planes.len()` a multiple of `words`.
#[target_feature(enable = "avx2,popcnt")]
pub(super) unsafe fn batch_avx2(codes: &[u64], words: usize, planes: &[u64], out: &mut [u32]) {
    let bq = planes.len() / words;
    // SAFETY: this function's features and contract are the callees'.
    unsafe {
        match words {
            1 if bq <= MAX_PLANES => grouped::<1>(codes, planes, out),
            2 if bq <= MAX_PLANES => grouped::<2>(codes, planes, out),
            4 if bq <= MAX_PLANES => grouped::<4>(codes, planes, out),
            _ if WIDE_AVX2 => {
                for (o, code) in out.iter_mut().zip(codes.chunks_exact(words)) {
                    *o = planes_avx2(code, planes);
                }
            }
            _ => batch_popcnt(codes, words, planes, out),
        }
    }
}

/// [`batch_avx2`] for codes of `W` ∈ {1, 2, 4} words: `4 / W` codes per 256-bit load.
///
/// # Safety
/// As for [`batch_avx2`], with `words = W` and at most [`MAX_PLANES`] planes.
#[inline]
#[target_feature(enable = "avx2,popcnt")]
unsafe fn grouped<const W: usize>(codes: &[u64], planes: &[u64], out: &mut [u32]) {
    let g = 4 / W;
    let bq = planes.len() / W;
    // Plane j repeated g times across the register.
    let mut reg = [_mm256_setzero_si256(); MAX_PLANES];
    for (j, r) in reg.iter_mut().enumerate().take(bq) {
        let p: [i64; 4] = std::array::from_fn(|l| planes[j * W + l % W] as i64);
        *r = _mm256_setr_epi64x(p[0], p[1], p[2], p[3]);
    }
    let zero = _mm256_setzero_si256();
    let full = out.len() / g;
    for i in 0..full {
        // SAFETY: i·4 + 4 <= full·g·W <= codes.len() words.
        let x = unsafe { _mm256_loadu_si256(codes.as_ptr().add(i * 4) as *const __m256i) };
        let mut total = zero;
        for (j, &p) in reg.iter().enumerate().take(bq) {
            let c = _mm256_sad_epu8(byte_counts(_mm256_and_si256(x, p)), zero);
            total = _mm256_add_epi64(total, _mm256_sll_epi64(c, _mm_cvtsi32_si128(j as i32)));
        }
        let mut lanes = [0u64; 4];
        // SAFETY: 32 bytes into a 4-word array.
        unsafe { _mm256_storeu_si256(lanes.as_mut_ptr() as *mut __m256i, total) };
        let o = &mut out[i * g..(i + 1) * g];
        for (k, o) in o.iter_mut().enumerate() {
            *o = lanes[k * W..(k + 1) * W].iter().sum::<u64>() as u32;
        }
    }
    let done = full * g;
    for (o, code) in out[done..]
        .iter_mut()
        .zip(codes[done * W..].chunks_exact(W))
    {
        *o = super::planes_words_outer(code, planes);
    }
}

/// AVX2 [`super::and_popcount_planes`] for one code of any width: four words per
/// register, the rest with `popcnt`.
///
/// # Safety
/// The CPU must support AVX2 and `popcnt`; `planes.len()` must be a multiple of
/// `code.len() > 0`.
#[target_feature(enable = "avx2,popcnt")]
pub(super) unsafe fn planes_avx2(code: &[u64], planes: &[u64]) -> u32 {
    let words = code.len();
    let bq = planes.len() / words;
    let chunks = words / 4;
    let zero = _mm256_setzero_si256();
    let mut total = zero;
    for j in 0..bq {
        let plane = &planes[j * words..(j + 1) * words];
        let mut sum = zero;
        // Byte counts reach at most 8 per chunk: fold them into 64-bit lanes every 31.
        let mut from = 0;
        while from < chunks {
            let to = (from + 31).min(chunks);
            let mut bytes = zero;
            for c in from..to {
                // SAFETY: c·4 + 4 <= chunks·4 <= words, for the code and the plane.
                let (x, p) = unsafe {
                    (
                        _mm256_loadu_si256(code.as_ptr().add(c * 4) as *const __m256i),
                        _mm256_loadu_si256(plane.as_ptr().add(c * 4) as *const __m256i),
                    )
                };
                bytes = _mm256_add_epi8(bytes, byte_counts(_mm256_and_si256(x, p)));
            }
            sum = _mm256_add_epi64(sum, _mm256_sad_epu8(bytes, zero));
            from = to;
        }
        total = _mm256_add_epi64(total, _mm256_sll_epi64(sum, _mm_cvtsi32_si128(j as i32)));
    }
    let mut lanes = [0u64; 4];
    // SAFETY: 32 bytes into a 4-word array.
    unsafe { _mm256_storeu_si256(lanes.as_mut_ptr() as *mut __m256i, total) };
    let mut rest = 0u32;
    for w in chunks * 4..words {
        for j in 0..bq {
            rest += (code[w] & planes[j * words + w]).count_ones() << j;
        }
    }
    lanes.iter().sum::<u64>() as u32 + rest
}

/// Most code bytes the wide AVX-512 row kernel holds the planes of in registers (two
/// 64-byte chunks: d ≤ 1,024).
const ROW_WIDE_BYTES: usize = 128;

/// AVX-512 VPOPCNTDQ [`super::and_popcount_rows`] for 4 or 6 planes: codes of up to 16 bytes
/// (d ≤ 128) four rows to a register, longer ones (up to [`ROW_WIDE_BYTES`]) a row per
/// register; each row's code bytes are read by byte-masked loads (nothing past them),
/// each lane's plane sums and popcount packed into one 64-bit lane (sums below, popcount
/// above bit 32) before the per-row reduction. Other shapes run [`rows_popcnt`].
///
/// # Safety
/// The CPU must support AVX-512F/BW/VL, VPOPCNTDQ and `popcnt`; `sums` and `pcs` are as
/// long as each other and every row's code lies in `rows` (what
/// [`super::BitsKernels::and_popcount_rows`] passes).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vpopcntdq,popcnt")]
pub(super) unsafe fn rows_vpopcnt(
    rows: &[u8],
    stride: usize,
    plane_bytes: usize,
    planes: &[u64],
    sums: &mut [u32],
    pcs: &mut [u32],
) {
    let words = plane_bytes.div_ceil(8);
    let n = sums.len().min(pcs.len());
    let fits = n == 0 || (n - 1) * stride + plane_bytes <= rows.len();
    let q = planes.len().checked_div(words).unwrap_or(0);
    let shaped = words > 0 && planes.len() == q * words && (q == 4 || q == 6);
    if !shaped || !fits || plane_bytes > ROW_WIDE_BYTES {
        // SAFETY: the same features include `popcnt`.
        unsafe { rows_popcnt(rows, stride, plane_bytes, planes, sums, pcs) };
        return;
    }
    let (sums, pcs) = (&mut sums[..n], &mut pcs[..n]);
    let (r, st, pb) = (rows, stride, plane_bytes);
    // SAFETY: features as above; every row's `plane_bytes` lie in `rows` (checked).
    unsafe {
        match (plane_bytes <= 16, q) {
            (true, 4) => rows_narrow::<4>(r, st, pb, planes, sums, pcs),
            (true, _) => rows_narrow::<6>(r, st, pb, planes, sums, pcs),
            (false, 4) => rows_wide::<4>(r, st, pb, planes, sums, pcs),
            (false, _) => rows_wide::<6>(r, st, pb, planes, sums, pcs),
        }
    }
}

/// `Σ_j popcount(x AND p_j) << j` per 64-bit lane, plus the lane's popcount shifted to
/// bit 32.
#[inline]
#[target_feature(enable = "avx512f,avx512vpopcntdq")]
fn lane_sums<const Q: usize>(x: __m512i, p: &[__m512i; Q]) -> __m512i {
    let c = |j: usize| _mm512_popcnt_epi64(_mm512_and_si512(x, p[j]));
    // Horner: ((c_{Q−1} · 2 + c_{Q−2}) · 2 + …) + c_0.
    let mut s = c(Q - 1);
    for j in (0..Q - 1).rev() {
        s = _mm512_add_epi64(_mm512_add_epi64(s, s), c(j));
    }
    _mm512_add_epi64(s, _mm512_slli_epi64::<32>(_mm512_popcnt_epi64(x)))
}

/// [`rows_vpopcnt`] for codes of at most 16 bytes: rows 0–3 and 4–7 of a group of eight
/// in two registers (two words per row; a code of 8 bytes or less has a zero second
/// word), the two words of each row added by one pair of permutes.
///
/// # Safety
/// As for [`rows_vpopcnt`], with `plane_bytes ≤ 16`, `sums.len() = pcs.len()` rows.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vpopcntdq")]
unsafe fn rows_narrow<const Q: usize>(
    rows: &[u8],
    stride: usize,
    plane_bytes: usize,
    planes: &[u64],
    sums: &mut [u32],
    pcs: &mut [u32],
) {
    let words = plane_bytes.div_ceil(8);
    let p: [__m512i; Q] = std::array::from_fn(|j| {
        let w0 = planes[j * words] as i64;
        let w1 = if words > 1 {
            planes[j * words + 1] as i64
        } else {
            0
        };
        _mm512_set_epi64(w1, w0, w1, w0, w1, w0, w1, w0)
    });
    let km: __mmask16 = ((1u32 << plane_bytes) - 1) as __mmask16;
    let even = _mm512_set_epi64(14, 12, 10, 8, 6, 4, 2, 0);
    let odd = _mm512_set_epi64(15, 13, 11, 9, 7, 5, 3, 1);
    let n = sums.len();
    let base = rows.as_ptr();
    let mut g = 0;
    while g < n {
        let m = (n - g).min(8);
        // Row r of the group, or zeros past the last row.
        let load = |r: usize| {
            if r < m {
                // SAFETY: row g + r < n: its `plane_bytes` bytes lie in `rows` (the
                // caller's contract); the masked load reads only those.
                unsafe { _mm_maskz_loadu_epi8(km, base.add((g + r) * stride) as *const i8) }
            } else {
                _mm_setzero_si128()
            }
        };
        let four = |r: usize| {
            let x = _mm512_castsi128_si512(load(r));
            let x = _mm512_inserti32x4::<1>(x, load(r + 1));
            let x = _mm512_inserti32x4::<2>(x, load(r + 2));
            _mm512_inserti32x4::<3>(x, load(r + 3))
        };
        let (a, b) = (lane_sums(four(0), &p), lane_sums(four(4), &p));
        let t = _mm512_add_epi64(
            _mm512_permutex2var_epi64(a, even, b),
            _mm512_permutex2var_epi64(a, odd, b),
        );
        let lo = _mm512_cvtepi64_epi32(t);
        let hi = _mm512_cvtepi64_epi32(_mm512_srli_epi64::<32>(t));
        let k: __mmask8 = ((1u32 << m) - 1) as __mmask8;
        // SAFETY: lanes below `m` store into `sums[g..g + m]` and `pcs[g..g + m]`.
        unsafe {
            _mm256_mask_storeu_epi32(sums.as_mut_ptr().add(g) as *mut i32, k, lo);
            _mm256_mask_storeu_epi32(pcs.as_mut_ptr().add(g) as *mut i32, k, hi);
        }
        g += m;
    }
}

/// [`rows_vpopcnt`] for codes of 17 to [`ROW_WIDE_BYTES`] bytes: one row per register
/// (two 64-byte chunks at most, the last one byte-masked), reduced per row.
///
/// # Safety
/// As for [`rows_vpopcnt`], with `16 < plane_bytes ≤ ROW_WIDE_BYTES`,
/// `sums.len() = pcs.len()` rows.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vpopcntdq")]
unsafe fn rows_wide<const Q: usize>(
    rows: &[u8],
    stride: usize,
    plane_bytes: usize,
    planes: &[u64],
    sums: &mut [u32],
    pcs: &mut [u32],
) {
    let words = plane_bytes.div_ceil(8);
    let chunks = plane_bytes.div_ceil(64);
    // Chunk c of plane j: words 8c.. of the plane, zero past its end.
    let p: [[__m512i; Q]; 2] = std::array::from_fn(|c| {
        std::array::from_fn(|j| {
            let mut w = [0u64; 8];
            for (k, v) in w.iter_mut().enumerate() {
                if 8 * c + k < words {
                    *v = planes[j * words + 8 * c + k];
                }
            }
            // SAFETY: 64 bytes from an 8-word array.
            unsafe { _mm512_loadu_si512(w.as_ptr() as *const _) }
        })
    });
    let kmask = |c: usize| -> __mmask64 {
        let len = (plane_bytes - 64 * c).min(64);
        if len == 64 {
            u64::MAX
        } else {
            (1u64 << len) - 1
        }
    };
    let (k0, k1) = (kmask(0), if chunks > 1 { kmask(1) } else { 0 });
    let base = rows.as_ptr();
    for (i, (s, c)) in sums.iter_mut().zip(pcs.iter_mut()).enumerate() {
        // SAFETY: row i < n: its `plane_bytes` bytes lie in `rows`; the masked loads
        // read only those.
        let row = unsafe { base.add(i * stride) };
        // SAFETY: as above (the first 64 bytes of the code, masked to its length).
        let x0 = unsafe { _mm512_maskz_loadu_epi8(k0, row as *const i8) };
        let mut acc = lane_sums(x0, &p[0]);
        if chunks > 1 {
            // SAFETY: as above (bytes 64.. of the code, masked to its length).
            let x1 = unsafe { _mm512_maskz_loadu_epi8(k1, row.add(64) as *const i8) };
            acc = _mm512_add_epi64(acc, lane_sums(x1, &p[1]));
        }
        let t = _mm512_reduce_add_epi64(acc) as u64;
        *s = t as u32;
        *c = (t >> 32) as u32;
    }
}
