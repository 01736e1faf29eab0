//! AVX2+FMA and AVX-512F versions of the f32 kernels, installed in the AVX2 and AVX-512
//! dispatch tables of [`super`]. Each reads `min(a.len(), b.len())` elements of both
//! slices.

use std::arch::x86_64::*;

#[inline]
#[target_feature(enable = "avx2,fma")]
fn hsum256(v: __m256) -> f32 {
    let lo = _mm256_castps256_ps128(v);
    let hi = _mm256_extractf128_ps(v, 1);
    let s = _mm_add_ps(lo, hi);
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 0x55));
    _mm_cvtss_f32(s)
}

/// AVX2 squared L2.
///
/// # Safety
/// The CPU must support AVX2 and FMA.
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn l2_sq_avx2(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (pa, pb) = (a.as_ptr(), b.as_ptr());
    let mut acc0 = _mm256_setzero_ps();
    let mut acc1 = _mm256_setzero_ps();
    let mut i = 0;
    while i + 16 <= n {
        // SAFETY: i + 16 <= n keeps all four loads inside both slices.
        unsafe {
            let d0 = _mm256_sub_ps(_mm256_loadu_ps(pa.add(i)), _mm256_loadu_ps(pb.add(i)));
            let d1 = _mm256_sub_ps(
                _mm256_loadu_ps(pa.add(i + 8)),
                _mm256_loadu_ps(pb.add(i + 8)),
            );
            acc0 = _mm256_fmadd_ps(d0, d0, acc0);
            acc1 = _mm256_fmadd_ps(d1, d1, acc1);
        }
        i += 16;
    }
    while i + 8 <= n {
        // SAFETY: i + 8 <= n keeps both loads inside both slices.
        unsafe {
            let d0 = _mm256_sub_ps(_mm256_loadu_ps(pa.add(i)), _mm256_loadu_ps(pb.add(i)));
            acc0 = _mm256_fmadd_ps(d0, d0, acc0);
        }
        i += 8;
    }
    let mut s = hsum256(_mm256_add_ps(acc0, acc1));
    while i < n {
        let d = a[i] - b[i];
        s += d * d;
        i += 1;
    }
    s
}

/// AVX2 inner product.
///
/// # Safety
/// The CPU must support AVX2 and FMA.
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn dot_avx2(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (pa, pb) = (a.as_ptr(), b.as_ptr());
    let mut acc0 = _mm256_setzero_ps();
    let mut acc1 = _mm256_setzero_ps();
    let mut i = 0;
    while i + 16 <= n {
        // SAFETY: i + 16 <= n keeps all four loads inside both slices.
        unsafe {
            acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(pa.add(i)), _mm256_loadu_ps(pb.add(i)), acc0);
            acc1 = _mm256_fmadd_ps(
                _mm256_loadu_ps(pa.add(i + 8)),
                _mm256_loadu_ps(pb.add(i + 8)),
                acc1,
            );
        }
        i += 16;
    }
    while i + 8 <= n {
        // SAFETY: i + 8 <= n keeps both loads inside both slices.
        unsafe {
            acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(pa.add(i)), _mm256_loadu_ps(pb.add(i)), acc0);
        }
        i += 8;
    }
    let mut s = hsum256(_mm256_add_ps(acc0, acc1));
    while i < n {
        s += a[i] * b[i];
        i += 1;
    }
    s
}

/// AVX-512 squared L2.
///
/// # Safety
/// The CPU must support AVX-512F.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn l2_sq_avx512(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (pa, pb) = (a.as_ptr(), b.as_ptr());
    let mut acc0 = _mm512_setzero_ps();
    let mut acc1 = _mm512_setzero_ps();
    let mut i = 0;
    while i + 32 <= n {
        // SAFETY: i + 32 <= n keeps all four loads inside both slices.
        unsafe {
            let d0 = _mm512_sub_ps(_mm512_loadu_ps(pa.add(i)), _mm512_loadu_ps(pb.add(i)));
            let d1 = _mm512_sub_ps(
                _mm512_loadu_ps(pa.add(i + 16)),
                _mm512_loadu_ps(pb.add(i + 16)),
            );
            acc0 = _mm512_fmadd_ps(d0, d0, acc0);
            acc1 = _mm512_fmadd_ps(d1, d1, acc1);
        }
        i += 32;
    }
    while i < n {
        let rem = (n - i).min(16);
        let mask: __mmask16 = if rem == 16 { 0xFFFF } else { (1u16 << rem) - 1 };
        // SAFETY: the masked loads touch only lanes i..i + rem, and i + rem <= n.
        unsafe {
            let d0 = _mm512_sub_ps(
                _mm512_maskz_loadu_ps(mask, pa.add(i)),
                _mm512_maskz_loadu_ps(mask, pb.add(i)),
            );
            acc0 = _mm512_fmadd_ps(d0, d0, acc0);
        }
        i += rem;
    }
    _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1))
}

/// AVX-512 inner product.
///
/// # Safety
/// The CPU must support AVX-512F.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn dot_avx512(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (pa, pb) = (a.as_ptr(), b.as_ptr());
    let mut acc0 = _mm512_setzero_ps();
    let mut acc1 = _mm512_setzero_ps();
    let mut i = 0;
    while i + 32 <= n {
        // SAFETY: i + 32 <= n keeps all four loads inside both slices.
        unsafe {
            acc0 = _mm512_fmadd_ps(_mm512_loadu_ps(pa.add(i)), _mm512_loadu_ps(pb.add(i)), acc0);
            acc1 = _mm512_fmadd_ps(
                _mm512_loadu_ps(pa.add(i + 16)),
                _mm512_loadu_ps(pb.add(i + 16)),
                acc1,
            );
        }
        i += 32;
    }
    while i < n {
        let rem = (n - i).min(16);
        let mask: __mmask16 = if rem == 16 { 0xFFFF } else { (1u16 << rem) - 1 };
        // SAFETY: the masked loads touch only lanes i..i + rem, and i + rem <= n.
        unsafe {
            acc0 = _mm512_fmadd_ps(
                _mm512_maskz_loadu_ps(mask, pa.add(i)),
                _mm512_maskz_loadu_ps(mask, pb.add(i)),
                acc0,
            );
        }
        i += rem;
    }
    _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1))
}

/// AVX-512 [`super::scalar::below`]: 16-lane steps, with masked loads, stores and
/// comparisons for the lanes past a short chunk's end. The inner-product distance is
/// the sign bit flipped (as `−x`, also for ±0 and NaN), not a subtraction from zero.
///
/// # Safety
/// The CPU must support AVX-512F.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn below_avx512(dots: &[f32], norms: &[f32], thr: f32, out: &mut [f32]) -> u64 {
    let l2 = !norms.is_empty();
    let mut n = dots.len().min(out.len()).min(super::scalar::BELOW_CHUNK);
    if l2 {
        n = n.min(norms.len());
    }
    let t = _mm512_set1_ps(thr);
    let sign = _mm512_set1_epi32(i32::MIN);
    let mut mask = 0u64;
    let mut i = 0;
    while i < n {
        let m: __mmask16 = if n - i >= 16 {
            0xFFFF
        } else {
            (1u16 << (n - i)) - 1
        };
        // SAFETY: the lanes of `m` are the elements `i..min(i + 16, n)`, inside `dots`
        // and `out`, and inside `norms` when it is read (`n ≤ norms.len()` then).
        unsafe {
            let d = _mm512_maskz_loadu_ps(m, dots.as_ptr().add(i));
            let v = if l2 {
                let nv = _mm512_maskz_loadu_ps(m, norms.as_ptr().add(i));
                _mm512_sub_ps(nv, _mm512_add_ps(d, d))
            } else {
                _mm512_castsi512_ps(_mm512_xor_si512(_mm512_castps_si512(d), sign))
            };
            _mm512_mask_storeu_ps(out.as_mut_ptr().add(i), m, v);
            let k = _mm512_mask_cmp_ps_mask::<_CMP_LE_OQ>(m, v, t);
            mask |= u64::from(k) << i;
        }
        i += 16;
    }
    mask
}
