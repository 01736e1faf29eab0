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
type EncodeFn = unsafe fn(&[f32], &[f32], usize, usize, usize, &mut [u8]);

/// The ADC-table kernels of one SIMD level (part of the dispatch table
/// [`super::Kernels`]).
pub(crate) struct PqKernels {
    adc: AdcFn,
    encode: EncodeFn,
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
            SimdLevel::Avx2 => PqKernels {
                adc: x86::adc_avx2,
                encode: x86::encode_avx2,
            },
            #[cfg(target_arch = "x86_64")]
            SimdLevel::Avx512 | SimdLevel::Avx512Vbmi => PqKernels {
                adc: x86::adc_avx512,
                encode: x86::encode_avx512,
            },
            _ => PqKernels {
                adc: adc_portable,
                encode: encode_portable,
            },
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
    // The same loop with `ksub` a constant for 4-bit codes (one chunk per sub-space, no
    // loop over chunks): 5 % of an IVF fast-scan query at `nprobe` 1 against `ksub`
    // read at run time.
    if ks == W {
        adc_rows(t, q, metric, m, W, ds, table)
    } else {
        adc_rows(t, q, metric, m, ks, ds, table)
    }
}

/// The loop of [`adc_portable`]: 16 entries at a time, summed over the sub-vector's
/// components in registers (one store per entry instead of one per component); ksub
/// is 16 or 256.
#[inline(always)]
fn adc_rows(
    t: &[f32],
    q: &[f32],
    metric: Metric,
    m: usize,
    ks: usize,
    ds: usize,
    table: &mut [f32],
) {
    let rows = table[..m * ks].chunks_exact_mut(ks);
    let books = t[..m * ks * ds].chunks_exact(ks * ds);
    for ((out, book), qs) in rows.zip(books).zip(q[..m * ds].chunks_exact(ds)) {
        for (j, o) in out.chunks_exact_mut(W).enumerate() {
            let acc = if metric == Metric::L2 {
                chunk_entries::<true>(book, qs, ks, j)
            } else {
                chunk_entries::<false>(book, qs, ks, j)
            };
            o.copy_from_slice(&acc);
        }
    }
}

/// Table entries computed at a time (vector lanes).
const W: usize = 16;

/// The entries of centroids `16 j..16 j + 16` of a transposed sub-space book
/// (`dsub × ksub`, one column of `ksub` values per component), summed over the
/// components in order: `‖q_s − c‖²` (`L2`) — the L2 entries of [`adc_table`] and what
/// [`encode`] minimises — or `−⟨q_s, c⟩`. The columns are walked as chunks rather
/// than indexed (`k·ksub + 16 j` per component cost ~13 instructions of index
/// arithmetic and bounds checks per component, 6 % of an IVF fast-scan query at
/// `nprobe` 1).
#[inline(always)]
fn chunk_entries<const L2: bool>(book: &[f32], qs: &[f32], ks: usize, j: usize) -> [f32; W] {
    let mut acc = [0.0f32; W];
    for (col, &qk) in book.chunks_exact(ks).zip(qs) {
        let col: &[f32; W] = col[j * W..][..W].try_into().expect("16");
        for (a, &c) in acc.iter_mut().zip(col) {
            if L2 {
                let diff = qk - c;
                *a += diff * diff;
            } else {
                *a -= qk * c;
            }
        }
    }
    acc
}

/// Encodes row-major vectors (`n × m·dsub`) with transposed centroids
/// (`m × dsub × ksub`): `codes[i·m + s]` is the nearest centroid of sub-space `s` to
/// sub-vector `s` of row `i` — the first `j` with the smallest [`adc_table`] L2 entry
/// `‖x_s − c_sj‖²`, or 0 when no entry is below +∞. Every level computes the same
/// entries as [`adc_table`] and picks the same index (bit-identical codes); the entries
/// are computed directly, one row at a time, where a GEMM over sub-spaces of a few
/// components wrote and re-read an `n × ksub` tile per sub-space.
///
/// # Panics
/// If `ksub` is not a multiple of 16 or more than 256, or the slices do not hold whole
/// rows of the same count.
pub fn encode(transposed: &[f32], x: &[f32], m: usize, ksub: usize, dsub: usize, codes: &mut [u8]) {
    assert!(
        ksub.is_multiple_of(16) && ksub <= 256,
        "ksub must be a multiple of 16 up to 256, got {ksub}"
    );
    let dim = m * dsub;
    assert!(
        transposed.len() >= m * dsub * ksub
            && dim > 0
            && x.len().is_multiple_of(dim)
            && codes.len() == x.len() / dim * m,
        "PQ encode: {} values, {} codes for m = {m}, ksub = {ksub}, dsub = {dsub}",
        x.len(),
        codes.len()
    );
    // SAFETY: as in `PqKernels::adc_table`.
    unsafe { (super::active().pq.encode)(transposed, x, m, ksub, dsub, codes) }
}

/// [`encode`] in portable code: per sub-space, 16 lanes each keep the first smallest
/// entry of their centroids `j ≡ lane (mod 16)` (a compare and two selects, which
/// vectorise), then the lanes' minima, ties to the smaller index.
#[inline(always)]
fn encode_portable(t: &[f32], x: &[f32], m: usize, ks: usize, ds: usize, codes: &mut [u8]) {
    for (row, out) in x.chunks_exact(m * ds).zip(codes.chunks_exact_mut(m)) {
        for (s, code) in out.iter_mut().enumerate() {
            let book = &t[s * ks * ds..(s + 1) * ks * ds];
            let qs = &row[s * ds..(s + 1) * ds];
            let mut bv = [f32::INFINITY; W];
            let mut bj = [0u32; W];
            for j in 0..ks / W {
                let acc = chunk_entries::<true>(book, qs, ks, j);
                for l in 0..W {
                    let lt = acc[l] < bv[l];
                    bv[l] = if lt { acc[l] } else { bv[l] };
                    bj[l] = if lt { j as u32 } else { bj[l] };
                }
            }
            // The lanes' minimum by halving (vector shuffles, no branches), then the
            // smallest index among the lanes holding it; 0 when nothing is below +∞.
            let mut low = bv;
            let mut w = W / 2;
            while w > 0 {
                for l in 0..w {
                    low[l] = if low[l + w] < low[l] {
                        low[l + w]
                    } else {
                        low[l]
                    };
                }
                w /= 2;
            }
            let at_low = (0..W).fold(0u32, |a, l| a | u32::from(bv[l] == low[0]) << l);
            let best = if ks == W {
                // One chunk: the first lane holding the minimum (a bit scan).
                at_low.trailing_zeros()
            } else {
                (0..W)
                    .filter(|&l| at_low >> l & 1 == 1)
                    .map(|l| bj[l] * W as u32 + l as u32)
                    .min()
                    .unwrap_or(0)
            };
            *code = if low[0] < f32::INFINITY {
                best as u8
            } else {
                0
            };
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

    retarget! {
        /// [`super::encode_portable`] compiled for AVX2.
        pub(super) unsafe fn encode_avx2["avx2,fma"] = super::encode_portable;
        (t: &[f32], x: &[f32], m: usize, ks: usize, ds: usize, codes: &mut [u8])
    }

    retarget! {
        /// [`super::encode_portable`] compiled for AVX-512.
        pub(super) unsafe fn encode_avx512["avx512f"] = super::encode_portable;
        (t: &[f32], x: &[f32], m: usize, ks: usize, ds: usize, codes: &mut [u8])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::Kernels;
    use crate::quant::product::transpose_books;
    use crate::rng::{RngExt, seeded};

    /// Every level's table is bit-identical to the portable one, which equals the
    /// distances computed directly from the centroids — to the bit, summed over the
    /// components in order from 0 (the order [`encode`] shares through
    /// `chunk_entries`, so codes and tables agree; fails on any other order) — for
    /// 16-entry tables (4-bit codes, `ksub` a constant) and 256-entry ones.
    #[test]
    fn every_level_is_bit_identical_to_portable() {
        let mut rng = seeded(21);
        for (m, ks, ds) in [
            (1usize, 16usize, 1usize),
            (3, 16, 5),
            (32, 16, 4),
            (7, 16, 8),
            (8, 256, 4),
            (4, 256, 3),
            (2, 256, 7),
        ] {
            // Centroids `m × ksub × dsub`.
            let books: Vec<f32> = (0..m * ks * ds)
                .map(|_| rng.random::<f32>() * 4.0 - 2.0)
                .collect();
            let t = transpose_books(&books, m, ks, ds);
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
                        let in_order = qs.iter().zip(c).fold(0.0f32, |a, (&x, &y)| {
                            if metric == Metric::L2 {
                                a + (x - y) * (x - y)
                            } else {
                                a - x * y
                            }
                        });
                        assert_eq!(
                            got.to_bits(),
                            in_order.to_bits(),
                            "{metric:?} m {m} ksub {ks} dsub {ds} entry ({s}, {j})"
                        );
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

    /// Every level's codes are the first index of the smallest entry of the portable
    /// L2 table's rows (the one-pass definition), with tied centroids (a duplicated
    /// centroid must lose to its first copy) and rows where every entry overflows to +∞.
    #[test]
    fn encode_is_the_first_smallest_table_entry_at_every_level() {
        let mut rng = seeded(22);
        for (m, ks, ds) in [
            (1usize, 16usize, 1usize),
            (6, 16, 2),
            (3, 16, 5),
            (4, 256, 3),
        ] {
            let mut books: Vec<f32> = (0..m * ks * ds)
                .map(|_| (rng.random::<f32>() * 4.0 - 2.0).round() / 2.0)
                .collect();
            // Centroid 9 of every sub-space repeats centroid 3.
            for s in 0..m {
                let (a, b) = ((s * ks + 3) * ds, (s * ks + 9) * ds);
                books.copy_within(a..a + ds, b);
            }
            let t = transpose_books(&books, m, ks, ds);
            let n = 50;
            let mut x: Vec<f32> = (0..n * m * ds)
                .map(|_| (rng.random::<f32>() * 5.0 - 2.5).round() / 2.0)
                .collect();
            // Row 1: exactly centroid 9 (= 3) of every sub-space; row 2: overflows.
            for s in 0..m {
                let c = (s * ks + 9) * ds;
                x[(m + s) * ds..(m + s + 1) * ds].copy_from_slice(&books[c..c + ds]);
            }
            x[2 * m * ds..3 * m * ds].fill(f32::MAX);
            let mut want = vec![0u8; n * m];
            let mut table = vec![0.0f32; m * ks];
            for (row, w) in x.chunks_exact(m * ds).zip(want.chunks_exact_mut(m)) {
                adc_portable(&t, row, Metric::L2, m, ks, ds, &mut table);
                for (s, w) in w.iter_mut().enumerate() {
                    let (mut best, mut bd) = (0usize, f32::INFINITY);
                    for (j, &v) in table[s * ks..(s + 1) * ks].iter().enumerate() {
                        if v < bd {
                            (best, bd) = (j, v);
                        }
                    }
                    *w = best as u8;
                }
            }
            assert!(
                want[m..2 * m].iter().all(|&c| c == 3),
                "tie to the first copy"
            );
            assert!(
                want[2 * m..3 * m].iter().all(|&c| c == 0),
                "all +inf gives 0"
            );
            for k in Kernels::supported() {
                let mut got = vec![0xEEu8; n * m];
                // SAFETY: `supported` tables run on this CPU.
                unsafe { (k.pq.encode)(&t, &x, m, ks, ds, &mut got) };
                assert_eq!(got, want, "{} m {m} ksub {ks} dsub {ds}", k.level());
            }
            let mut got = vec![0xEEu8; n * m];
            encode(&t, &x, m, ks, ds, &mut got);
            assert_eq!(got, want);
        }
    }

    #[test]
    #[should_panic(expected = "multiple of 16")]
    fn odd_ksub_is_refused() {
        adc_table(&[0.0; 10], &[0.0; 1], Metric::L2, 1, 10, 1, &mut [0.0; 10]);
    }
}
