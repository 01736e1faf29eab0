//! AVX2+FMA and AVX-512F kernels.
//!
//! The `*_safe` wrappers are only installed by the dispatcher in [`super`] after
//! `is_x86_feature_detected!` confirmed the features, which is what makes calling the
//! `#[target_feature]` functions sound.

use std::arch::x86_64::*;

/// AVX2 squared L2. Only called after AVX2+FMA were detected.
pub fn l2_sq_avx2_safe(a: &[f32], b: &[f32]) -> f32 {
    // SAFETY: installed by the dispatcher only when avx2 and fma are available
    // (and the tests call it only after the same check).
    unsafe { l2_sq_avx2(a, b) }
}

/// AVX2 inner product. Only called after AVX2+FMA were detected.
pub fn dot_avx2_safe(a: &[f32], b: &[f32]) -> f32 {
    // SAFETY: as for `l2_sq_avx2_safe`.
    unsafe { dot_avx2(a, b) }
}

/// AVX-512 squared L2. Only called after AVX-512F was detected.
pub fn l2_sq_avx512_safe(a: &[f32], b: &[f32]) -> f32 {
    // SAFETY: installed by the dispatcher only when avx512f is available.
    unsafe { l2_sq_avx512(a, b) }
}

/// AVX-512 inner product. Only called after AVX-512F was detected.
pub fn dot_avx512_safe(a: &[f32], b: &[f32]) -> f32 {
    // SAFETY: as for `l2_sq_avx512_safe`.
    unsafe { dot_avx512(a, b) }
}

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

#[target_feature(enable = "avx2,fma")]
unsafe fn l2_sq_avx2(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (pa, pb) = (a.as_ptr(), b.as_ptr());
    let mut acc0 = _mm256_setzero_ps();
    let mut acc1 = _mm256_setzero_ps();
    let mut i = 0;
    // SAFETY (all loads): i + 16 <= n, resp. i + 8 <= n, keeps every load inside both slices.
    while i + 16 <= n {
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

#[target_feature(enable = "avx2,fma")]
unsafe fn dot_avx2(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (pa, pb) = (a.as_ptr(), b.as_ptr());
    let mut acc0 = _mm256_setzero_ps();
    let mut acc1 = _mm256_setzero_ps();
    let mut i = 0;
    // SAFETY (all loads): bounds as in `l2_sq_avx2`.
    while i + 16 <= n {
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

#[target_feature(enable = "avx512f")]
unsafe fn l2_sq_avx512(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (pa, pb) = (a.as_ptr(), b.as_ptr());
    let mut acc0 = _mm512_setzero_ps();
    let mut acc1 = _mm512_setzero_ps();
    let mut i = 0;
    // SAFETY (all loads): full loads stay below n; the tail uses a mask that
    // only touches the remaining `n - i` lanes.
    while i + 32 <= n {
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

#[target_feature(enable = "avx512f")]
unsafe fn dot_avx512(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (pa, pb) = (a.as_ptr(), b.as_ptr());
    let mut acc0 = _mm512_setzero_ps();
    let mut acc1 = _mm512_setzero_ps();
    let mut i = 0;
    // SAFETY (all loads): as in `l2_sq_avx512`.
    while i + 32 <= n {
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
