//! Instruction-set dispatch for the GGUF block encoders ([`crate::model::gguf`]).
//!
//! The encoders are portable Rust written to vectorise (fixed summation orders, no FMA:
//! Rust never contracts `a * b + c`). [`encode_row`] runs them compiled once more with
//! AVX2 enabled when the CPU has it (and `VECQUANT_SIMD` allows it); both compilations
//! compute the same `f32` operations in the same order, so they write the same bytes.
//! [`encode_row_scalar`] is the reference; tests here and in `model::gguf` pin the AVX2
//! compilation to it byte for byte.
//!
//! The encoders reach this module through [`RowEncoder`], so the kernels know nothing of
//! ggml types (dependencies point downward) and each encoder is monomorphised, and
//! inlined, into the AVX2 function — a function pointer or `dyn` call would not be.

/// A row encoder: `x` into `out`, lengths already checked by the caller.
///
/// Implementations mark `encode` `#[inline(always)]`, so that its body is compiled with
/// the instruction set of the function it is inlined into.
pub(crate) trait RowEncoder: Copy {
    /// Why a row could not be encoded.
    type Fault;
    /// Encodes one row.
    fn encode(self, x: &[f32], out: &mut [u8]) -> Result<(), Self::Fault>;
}

/// Encodes one row with the widest compilation the CPU runs (chosen once per process).
pub(crate) fn encode_row<E: RowEncoder>(e: E, x: &[f32], out: &mut [u8]) -> Result<(), E::Fault> {
    #[cfg(target_arch = "x86_64")]
    if avx2_selected()
        && let Some(r) = encode_row_avx2(e, x, out)
    {
        return r;
    }
    encode_row_scalar(e, x, out)
}

/// The reference: the encoder compiled for the baseline target.
pub(crate) fn encode_row_scalar<E: RowEncoder>(
    e: E,
    x: &[f32],
    out: &mut [u8],
) -> Result<(), E::Fault> {
    e.encode(x, out)
}

/// Whether [`encode_row`] uses AVX2: the dispatch level allows it (`VECQUANT_SIMD`) and
/// the CPU has it.
#[cfg(target_arch = "x86_64")]
fn avx2_selected() -> bool {
    use super::SimdLevel;
    static USE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *USE.get_or_init(|| super::simd_level() >= SimdLevel::Avx2 && is_x86_feature_detected!("avx2"))
}

/// The encoder compiled with AVX2; `None` if the CPU does not have AVX2.
#[cfg(target_arch = "x86_64")]
pub(crate) fn encode_row_avx2<E: RowEncoder>(
    e: E,
    x: &[f32],
    out: &mut [u8],
) -> Option<Result<(), E::Fault>> {
    /// # Safety
    /// The CPU must support AVX2.
    #[target_feature(enable = "avx2")]
    unsafe fn avx2<E: RowEncoder>(e: E, x: &[f32], out: &mut [u8]) -> Result<(), E::Fault> {
        e.encode(x, out)
    }
    if !is_x86_feature_detected!("avx2") {
        return None;
    }
    // SAFETY: AVX2 support was detected just above.
    Some(unsafe { avx2(e, x, out) })
}

/// `trunc(v)` after clamping `v` to `[lo, hi]` (NaN goes to `lo`), for `lo`, `hi` within
/// `i32` range (the encoders use small whole numbers).
///
/// Clamping first makes the conversion a plain truncating one, which vectorises
/// (`cvttps2dq`); Rust's saturating `as i32` is scalarised on x86-64. For `v ≥ lo ≥ 0`
/// this equals `min(hi, trunc(v))`, the reference quantizers' `trunc` then clip.
#[inline(always)]
pub(crate) fn trunc_clamped(v: f32, lo: f32, hi: f32) -> i32 {
    debug_assert!(lo >= i32::MIN as f32 && hi < i32::MAX as f32 && lo <= hi);
    // `f32::max`/`min` return the non-NaN operand, so `c` is finite and in [lo, hi].
    let c = v.max(lo).min(hi);
    // SAFETY: `c` is finite and within `[lo, hi]`, which the callers keep inside `i32`
    // (checked in debug builds above), so the truncation cannot overflow.
    unsafe { c.to_int_unchecked::<i32>() }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A float-heavy toy encoder in the style of `Q8_0`: per 32 values an absmax scale,
    /// a sum of squares, then codes rounded through `trunc_clamped`.
    #[derive(Clone, Copy)]
    struct Toy;

    impl RowEncoder for Toy {
        type Fault = usize;
        #[inline(always)]
        fn encode(self, x: &[f32], out: &mut [u8]) -> Result<(), usize> {
            for (i, (xb, ob)) in x
                .as_chunks::<32>()
                .0
                .iter()
                .zip(out.as_chunks_mut::<36>().0)
                .enumerate()
            {
                if xb.iter().any(|v| !v.is_finite()) {
                    return Err(i);
                }
                let amax = xb.iter().fold(0f32, |m, v| m.max(v.abs()));
                let energy: f32 = xb.iter().map(|v| v * v).sum();
                let inv = if amax > 0.0 { 127.0 / amax } else { 0.0 };
                ob[..4].copy_from_slice(&energy.to_le_bytes());
                for (o, &v) in ob[4..].iter_mut().zip(xb) {
                    *o = trunc_clamped(v * inv + 127.5, 0.0, 255.0) as u8;
                }
            }
            Ok(())
        }
    }

    fn row(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed;
        (0..n)
            .map(|i| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let u = (s >> 40) as f32 / (1u64 << 24) as f32 - 0.5;
                if i % 97 == 0 { u * 1e6 } else { u * 3.0 }
            })
            .collect()
    }

    #[test]
    fn dispatched_and_avx2_equal_the_scalar_reference() {
        for (blocks, seed) in [(1, 1), (7, 2), (64, 3)] {
            let x = row(32 * blocks, seed);
            let mut reference = vec![0u8; 36 * blocks];
            encode_row_scalar(Toy, &x, &mut reference).unwrap();
            let mut dispatched = vec![0u8; 36 * blocks];
            encode_row(Toy, &x, &mut dispatched).unwrap();
            assert_eq!(dispatched, reference);
            #[cfg(target_arch = "x86_64")]
            if let Some(r) = {
                let mut avx2 = vec![0u8; 36 * blocks];
                encode_row_avx2(Toy, &x, &mut avx2).map(|r| r.map(|()| avx2))
            } {
                assert_eq!(r.unwrap(), reference);
            }
        }
        let mut x = row(64, 4);
        x[40] = f32::NAN;
        assert_eq!(encode_row(Toy, &x, &mut [0u8; 72]), Err(1));
    }

    #[test]
    fn trunc_clamped_is_clamp_then_trunc() {
        for v in [
            -1e30f32,
            -129.5,
            -128.0,
            -3.7,
            -0.5,
            -0.0,
            0.0,
            0.49,
            2.5,
            15.99,
            16.0,
            126.9,
            1e30,
            f32::INFINITY,
            f32::NEG_INFINITY,
        ] {
            for (lo, hi) in [(0.0, 15.0), (-128.0, 127.0), (-32.0, 31.0)] {
                assert_eq!(
                    trunc_clamped(v, lo, hi),
                    v.clamp(lo, hi) as i32,
                    "{v} in [{lo}, {hi}]"
                );
            }
        }
        assert_eq!(trunc_clamped(f32::NAN, -8.0, 7.0), -8);
    }
}
