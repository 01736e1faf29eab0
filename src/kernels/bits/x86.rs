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
