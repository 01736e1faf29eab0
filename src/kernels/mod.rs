//! Hot loops: f32 squared L2 and inner product.
//!
//! Each kernel has a plain scalar reference ([`scalar`]) and `std::arch` versions for
//! AVX2+FMA and AVX-512F ([`x86`]). The best one the CPU supports is chosen once, at first
//! use, with `is_x86_feature_detected!`, so one binary is fast everywhere without
//! `-C target-cpu=native`. Tests pin every SIMD path to its reference.

pub mod fastscan;
pub(crate) mod gguf;
pub mod pq8;
pub mod scalar;
pub mod sq;
#[cfg(target_arch = "x86_64")]
pub mod x86;

use std::sync::OnceLock;

/// Hints the CPU to bring `data` into the L1 cache ahead of use (nothing elsewhere).
#[inline]
pub fn prefetch_l1<T>(data: &[T]) {
    #[cfg(target_arch = "x86_64")]
    prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }, T>(data);
    #[cfg(not(target_arch = "x86_64"))]
    let _ = data;
}

/// Hints the CPU to bring `data` into the L2 cache ahead of use (nothing elsewhere).
#[inline]
pub fn prefetch_l2<T>(data: &[T]) {
    #[cfg(target_arch = "x86_64")]
    prefetch::<{ std::arch::x86_64::_MM_HINT_T1 }, T>(data);
    #[cfg(not(target_arch = "x86_64"))]
    let _ = data;
}

#[cfg(target_arch = "x86_64")]
#[inline]
fn prefetch<const HINT: i32, T>(data: &[T]) {
    let p = data.as_ptr() as *const i8;
    for off in (0..std::mem::size_of_val(data)).step_by(64) {
        // SAFETY: a prefetch is only a hint and never faults; the address is inside `data`.
        unsafe { std::arch::x86_64::_mm_prefetch::<HINT>(p.add(off)) };
    }
}

/// Which instruction set the dispatched kernels use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SimdLevel {
    /// Portable scalar code.
    Scalar,
    /// AVX2 with FMA (256-bit).
    Avx2,
    /// AVX-512F (512-bit).
    Avx512,
}

type PairFn = fn(&[f32], &[f32]) -> f32;

struct Table {
    level: SimdLevel,
    l2_sq: PairFn,
    dot: PairFn,
}

fn table() -> &'static Table {
    static TABLE: OnceLock<Table> = OnceLock::new();
    TABLE.get_or_init(|| {
        let level = detect();
        match level {
            #[cfg(target_arch = "x86_64")]
            SimdLevel::Avx512 => Table {
                level,
                l2_sq: x86::l2_sq_avx512_safe,
                dot: x86::dot_avx512_safe,
            },
            #[cfg(target_arch = "x86_64")]
            SimdLevel::Avx2 => Table {
                level,
                l2_sq: x86::l2_sq_avx2_safe,
                dot: x86::dot_avx2_safe,
            },
            _ => Table {
                level: SimdLevel::Scalar,
                l2_sq: scalar::l2_sq,
                dot: scalar::dot,
            },
        }
    })
}

/// The best SIMD level this CPU supports (the `VECQUANT_SIMD` environment variable set to
/// `scalar`, `avx2` or `avx512` caps it, for testing and benchmarking).
pub fn detect() -> SimdLevel {
    let cap = std::env::var("VECQUANT_SIMD").ok();
    let allow = |name: &str| match cap.as_deref() {
        None => true,
        Some("avx512") => true,
        Some("avx2") => name != "avx512",
        Some(_) => false,
    };
    #[cfg(target_arch = "x86_64")]
    {
        if allow("avx512") && is_x86_feature_detected!("avx512f") {
            return SimdLevel::Avx512;
        }
        if allow("avx2") && is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
            return SimdLevel::Avx2;
        }
    }
    let _ = allow;
    SimdLevel::Scalar
}

/// The SIMD level the dispatched kernels use in this process.
pub fn simd_level() -> SimdLevel {
    table().level
}

/// Squared Euclidean distance ‖a − b‖². `a` and `b` must have equal length (checked in
/// debug builds; callers validate dimensions at the API boundary).
#[inline]
pub fn l2_sq(a: &[f32], b: &[f32]) -> f32 {
    debug_assert_eq!(a.len(), b.len());
    (table().l2_sq)(a, b)
}

/// Inner product ⟨a, b⟩.
#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    debug_assert_eq!(a.len(), b.len());
    (table().dot)(a, b)
}

/// Squared L2 norms of each `dim`-long row of `data`.
pub fn row_norms_sq(data: &[f32], dim: usize) -> Vec<f32> {
    data.chunks_exact(dim).map(|r| dot(r, r)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs(len: usize, seed: u32) -> (Vec<f32>, Vec<f32>) {
        // A small LCG keeps the test free of RNG crates and fully deterministic.
        let mut s = seed.wrapping_mul(2654435761).wrapping_add(12345);
        let mut next = || {
            s = s.wrapping_mul(1664525).wrapping_add(1013904223);
            (s >> 8) as f32 / (1u32 << 24) as f32 * 2.0 - 1.0
        };
        let a = (0..len).map(|_| next()).collect();
        let b = (0..len).map(|_| next()).collect();
        (a, b)
    }

    fn close(x: f32, y: f32) -> bool {
        (x - y).abs() <= 1e-5 * (1.0 + x.abs().max(y.abs()))
    }

    const LENGTHS: [usize; 12] = [0, 1, 3, 7, 8, 15, 16, 17, 33, 127, 128, 1000];

    #[test]
    fn dispatched_matches_scalar() {
        for (i, &len) in LENGTHS.iter().enumerate() {
            let (a, b) = inputs(len, i as u32);
            assert!(close(l2_sq(&a, &b), scalar::l2_sq(&a, &b)), "l2 len {len}");
            assert!(close(dot(&a, &b), scalar::dot(&a, &b)), "dot len {len}");
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn every_simd_path_matches_scalar() {
        let mut paths: Vec<(&str, PairFn, PairFn)> = Vec::new();
        if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
            paths.push(("avx2", x86::l2_sq_avx2_safe, x86::dot_avx2_safe));
        }
        if is_x86_feature_detected!("avx512f") {
            paths.push(("avx512", x86::l2_sq_avx512_safe, x86::dot_avx512_safe));
        }
        for (name, l2, dp) in paths {
            for (i, &len) in LENGTHS.iter().enumerate() {
                let (a, b) = inputs(len, 100 + i as u32);
                assert!(
                    close(l2(&a, &b), scalar::l2_sq(&a, &b)),
                    "{name} l2 len {len}"
                );
                assert!(
                    close(dp(&a, &b), scalar::dot(&a, &b)),
                    "{name} dot len {len}"
                );
                // zeros
                let z = vec![0.0f32; len];
                assert_eq!(l2(&z, &z), 0.0);
                assert_eq!(dp(&z, &a), 0.0);
                // large values: relative agreement still holds
                let big_a: Vec<f32> = a.iter().map(|x| x * 1e15).collect();
                let big_b: Vec<f32> = b.iter().map(|x| x * 1e15).collect();
                let (s, v) = (scalar::l2_sq(&big_a, &big_b), l2(&big_a, &big_b));
                assert!(
                    (s - v).abs() <= 1e-4 * s.abs().max(1.0),
                    "{name} big l2 {s} {v}"
                );
            }
        }
    }

    #[test]
    fn known_values() {
        let a = [1.0, 2.0, 3.0];
        let b = [4.0, 6.0, 3.0];
        assert_eq!(scalar::l2_sq(&a, &b), 25.0);
        assert_eq!(scalar::dot(&a, &b), 25.0);
        assert_eq!(l2_sq(&a, &b), 25.0);
        assert_eq!(dot(&a, &b), 25.0);
    }
}
