//! Product-quantizer ADC tables: the distance from one query to every centroid of every
//! sub-space (`m × ksub` floats), computed once per query, and per probed list in IVF
//! without precomputed tables.
//!
//! The portable code walks the centroids transposed (`m × dsub × ksub`), so each query
//! component updates 16 table entries at once; the AVX2 and AVX-512 versions are the same
//! source compiled for wider registers. Rust never contracts `a * b + c` into an FMA and
//! every entry sums its components in the same order, so all levels produce bit-identical
//! tables.

use super::SimdLevel;
use crate::metric::Metric;

type AdcFn = unsafe fn(&[f32], &[f32], Metric, usize, usize, usize, &mut [f32]);

/// The ADC-table kernels of one SIMD level (part of the dispatch table
/// [`super::Kernels`]).
pub(crate) struct PqKernels {
    adc: AdcFn,
}

impl PqKernels {
    /// The kernels of `level`.
    ///
    /// # Safety
    /// The result's methods run code compiled for `level`: the caller must only let them
    /// be called on a CPU that supports `level`.
    pub(super) const unsafe fn for_level(level: SimdLevel) -> PqKernels {
        match level {
            #[cfg(target_arch = "x86_64")]
            SimdLevel::Avx2 => PqKernels { adc: x86::adc_avx2 },
            #[cfg(target_arch = "x86_64")]
            SimdLevel::Avx512 | SimdLevel::Avx512Vbmi => PqKernels {
                adc: x86::adc_avx512,
            },
            _ => PqKernels { adc: adc_portable },
        }
    }

    /// [`adc_table`] at this table's level.
    #[allow(clippy::too_many_arguments)] // the shape of the tables, spelled out
    #[inline]
    pub(crate) fn adc_table(
        &self,
        transposed: &[f32],
        q: &[f32],
        metric: Metric,
        m: usize,
        ksub: usize,
        dsub: usize,
        table: &mut [f32],
    ) {
        assert!(
            ksub.is_multiple_of(16),
            "ksub must be a multiple of 16, got {ksub}"
        );
        assert!(
            transposed.len() >= m * dsub * ksub && q.len() >= m * dsub && table.len() >= m * ksub,
            "ADC table: slices shorter than m = {m}, ksub = {ksub}, dsub = {dsub} need"
        );
        // SAFETY: the CPU supports this table's level (invariant of `super::Kernels`,
        // which holds this table); the kernels are safe code otherwise.
        unsafe { (self.adc)(transposed, q, metric, m, ksub, dsub, table) }
    }
}

/// Fills `table[s·ksub + j]` with the distance from sub-vector `s` of the query `q` to
/// centroid `j` of sub-space `s`: `‖q_s − c_sj‖²` for [`Metric::L2`], `−⟨q_s, c_sj⟩`
/// otherwise (so smaller is nearer). `transposed` holds the centroids as
/// `m × dsub × ksub` (component-major within each sub-space).
///
/// # Panics
/// If `ksub` is not a multiple of 16 or a slice is shorter than `m`, `ksub` and `dsub`
/// require.
pub fn adc_table(
    transposed: &[f32],
    q: &[f32],
    metric: Metric,
    m: usize,
    ksub: usize,
    dsub: usize,
    table: &mut [f32],
) {
    super::active()
        .pq
        .adc_table(transposed, q, metric, m, ksub, dsub, table)
}

/// ADC table from transposed centroids (`m × dsub × ksub`): each component of the query
/// sub-vector updates all `ksub` entries at once (vectorised over the centroids).
#[inline(always)]
fn adc_portable(
    t: &[f32],
    q: &[f32],
    metric: Metric,
    m: usize,
    ks: usize,
    ds: usize,
    table: &mut [f32],
) {
    // 16 entries at a time, summed over the sub-vector's components in registers (one
    // store per entry instead of one per component); ksub is 16 or 256.
    const W: usize = 16;
    for s in 0..m {
        let out = &mut table[s * ks..(s + 1) * ks];
        let book = &t[s * ks * ds..(s + 1) * ks * ds];
        let qs = &q[s * ds..(s + 1) * ds];
        for (j, o) in out.chunks_exact_mut(W).enumerate() {
            let mut acc = [0.0f32; W];
            for (k, &qk) in qs.iter().enumerate() {
                let c: &[f32; W] = book[k * ks + j * W..][..W].try_into().expect("16");
                if metric == Metric::L2 {
                    for (a, &c) in acc.iter_mut().zip(c) {
                        let diff = qk - c;
                        *a += diff * diff;
                    }
                } else {
                    for (a, &c) in acc.iter_mut().zip(c) {
                        *a -= qk * c;
                    }
                }
            }
            o.copy_from_slice(&acc);
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    //! The portable ADC code compiled for AVX2 and AVX-512.

    use crate::metric::Metric;

    retarget! {
        /// [`super::adc_portable`] compiled for AVX2.
        pub(super) unsafe fn adc_avx2["avx2,fma"] = super::adc_portable;
        (t: &[f32], q: &[f32], metric: Metric, m: usize, ks: usize, ds: usize, table: &mut [f32])
    }

    retarget! {
        /// [`super::adc_portable`] compiled for AVX-512.
        pub(super) unsafe fn adc_avx512["avx512f"] = super::adc_portable;
        (t: &[f32], q: &[f32], metric: Metric, m: usize, ks: usize, ds: usize, table: &mut [f32])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::Kernels;
    use crate::rng::{RngExt, seeded};

    /// Every level's table is bit-identical to the portable one, which equals the
    /// distances computed directly from the centroids.
    #[test]
    fn every_level_is_bit_identical_to_portable() {
        let mut rng = seeded(21);
        for (m, ks, ds) in [
            (1usize, 16usize, 1usize),
            (3, 16, 5),
            (8, 256, 4),
            (4, 256, 3),
        ] {
            // Centroids `m × ksub × dsub`, and their transpose `m × dsub × ksub`.
            let books: Vec<f32> = (0..m * ks * ds)
                .map(|_| rng.random::<f32>() * 4.0 - 2.0)
                .collect();
            let mut t = vec![0.0f32; books.len()];
            for s in 0..m {
                for j in 0..ks {
                    for k in 0..ds {
                        t[(s * ds + k) * ks + j] = books[(s * ks + j) * ds + k];
                    }
                }
            }
            let q: Vec<f32> = (0..m * ds).map(|_| rng.random::<f32>() * 3.0).collect();
            for metric in [Metric::L2, Metric::InnerProduct, Metric::Cosine] {
                let mut want = vec![0.0f32; m * ks];
                adc_portable(&t, &q, metric, m, ks, ds, &mut want);
                for s in 0..m {
                    let qs = &q[s * ds..(s + 1) * ds];
                    for j in 0..ks {
                        let c = &books[(s * ks + j) * ds..(s * ks + j + 1) * ds];
                        let direct = match metric {
                            Metric::L2 => crate::kernels::scalar::l2_sq(qs, c),
                            _ => -crate::kernels::scalar::dot(qs, c),
                        };
                        let got = want[s * ks + j];
                        assert!((got - direct).abs() <= 1e-5 * (1.0 + direct.abs()));
                    }
                }
                for k in Kernels::supported() {
                    let mut got = vec![f32::NAN; m * ks];
                    k.pq.adc_table(&t, &q, metric, m, ks, ds, &mut got);
                    let (gb, wb): (Vec<u32>, Vec<u32>) = (
                        got.iter().map(|x| x.to_bits()).collect(),
                        want.iter().map(|x| x.to_bits()).collect(),
                    );
                    assert_eq!(gb, wb, "{} {metric:?} m {m} ksub {ks}", k.level());
                }
                let mut got = vec![f32::NAN; m * ks];
                adc_table(&t, &q, metric, m, ks, ds, &mut got);
                assert!(
                    got.iter()
                        .zip(&want)
                        .all(|(a, b)| a.to_bits() == b.to_bits())
                );
            }
        }
    }

    #[test]
    #[should_panic(expected = "multiple of 16")]
    fn odd_ksub_is_refused() {
        adc_table(&[0.0; 10], &[0.0; 1], Metric::L2, 1, 10, 1, &mut [0.0; 10]);
    }
}
