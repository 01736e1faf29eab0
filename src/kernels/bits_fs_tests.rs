//! Tests of the sign-code fast-scan layout and tables (issue 18, item 3).

use super::*;
use crate::kernels::Kernels;
use crate::kernels::bits;
use crate::rng::{RngExt, seeded};

const DIMS: [usize; 12] = [1, 3, 4, 7, 8, 9, 31, 100, 128, 384, 1030, 2048];

/// `n` random row-major codes of `dim` dimensions; with `junk`, the unused bits of each
/// row's last byte are set too (they must be ignored).
fn random_rows(rng: &mut impl RngExt, n: usize, dim: usize, junk: bool) -> Vec<u8> {
    let rb = row_bytes(dim);
    let mut rows: Vec<u8> = (0..n * rb).map(|_| rng.random::<u8>()).collect();
    if !junk && !dim.is_multiple_of(8) {
        for row in rows.chunks_exact_mut(rb) {
            row[rb - 1] &= (1u8 << (dim % 8)) - 1;
        }
    }
    rows
}

fn bit(row: &[u8], i: usize) -> bool {
    row[i / 8] >> (i % 8) & 1 == 1
}

/// Σ_i bit_i · q_i in f64.
fn exact64(row: &[u8], q: &[f32]) -> f64 {
    q.iter()
        .enumerate()
        .filter(|&(i, _)| bit(row, i))
        .map(|(_, &v)| v as f64)
        .sum()
}

#[test]
fn item3_pack_unpack_round_trip() {
    let mut rng = seeded(18);
    for dim in DIMS {
        for n in [1usize, 31, 32, 33, 70] {
            let rows = random_rows(&mut rng, n, dim, false);
            let blocks = pack_sign_codes(&rows, n, dim);
            assert_eq!(
                blocks.len(),
                n.div_ceil(32) * block_bytes(dim),
                "d {dim} n {n}"
            );
            assert_eq!(unpack_sign_codes(&blocks, n, dim), rows, "d {dim} n {n}");
            // The layout is PQ fast-scan's with nibble j = bits 4j..4j+3.
            for r in 0..n {
                let block = &blocks[(r / 32) * block_bytes(dim)..];
                for j in 0..nibbles(dim) {
                    let want = (0..4)
                        .filter(|&b| 4 * j + b < dim && bit(&rows[r * row_bytes(dim)..], 4 * j + b))
                        .map(|b| 1usize << b)
                        .sum::<usize>();
                    assert_eq!(fastscan::code_in_block(block, j, r % 32), want);
                }
            }
            // Padding rows are zero codes.
            let padded = n.div_ceil(32) * 32;
            let all = unpack_sign_codes(&blocks, padded, dim);
            assert!(all[n * row_bytes(dim)..].iter().all(|&b| b == 0));
            // Bits past `dim` in the input are ignored.
            let junk = random_rows(&mut rng, n, dim, true);
            let clean: Vec<u8> = unpack_sign_codes(&pack_sign_codes(&junk, n, dim), n, dim);
            for (r, (c, j)) in clean
                .chunks_exact(row_bytes(dim))
                .zip(junk.chunks_exact(row_bytes(dim)))
                .enumerate()
            {
                for i in 0..row_bytes(dim) * 8 {
                    assert_eq!(bit(c, i), i < dim && bit(j, i), "d {dim} row {r} bit {i}");
                }
            }
        }
    }
}

/// Queries that stress the quantisation: Gaussian-like, one large outlier, all equal,
/// all zero, tiny and huge magnitudes, all negative.
fn queries(rng: &mut impl RngExt, dim: usize) -> Vec<Vec<f32>> {
    let normal =
        |rng: &mut dyn FnMut() -> f32| -> f32 { (0..12).map(|_| rng()).sum::<f32>() - 6.0 };
    let mut u = || rng.random::<f32>();
    let g: Vec<f32> = (0..dim).map(|_| normal(&mut u)).collect();
    let mut outlier = g.clone();
    outlier[dim / 2] = 1000.0;
    vec![
        g.clone(),
        outlier,
        vec![0.25; dim],
        vec![0.0; dim],
        g.iter().map(|v| v * 1e-30).collect(),
        g.iter().map(|v| v * 1e30).collect(),
        g.iter().map(|v| -v.abs() - 1.0).collect(),
    ]
}

/// Every level's kernels give estimates within `max_error` of the exact Σ bit_i·q_i for
/// every row; the dispatched scans equal the active level's; the exact re-score from a
/// block equals the one from the row-major code and the f64 value to f32 precision.
#[test]
fn item3_estimates_within_the_stated_bound_at_every_level() {
    let mut rng = seeded(33);
    for dim in DIMS {
        let n = 70;
        let rows = random_rows(&mut rng, n, dim, false);
        let blocks = pack_sign_codes(&rows, n, dim);
        let bb = block_bytes(dim);
        let nb = blocks.len() / bb;
        for (t, q) in queries(&mut rng, dim).into_iter().enumerate() {
            let lut = SignLut::new(&q);
            assert_eq!(lut.block_bytes(), bb);
            // The bound is the rounding bound, not vacuous: at most (M/2 + 1) table units.
            let span = (0..nibbles(dim))
                .map(|j| {
                    q[4 * j..(4 * j + 4).min(dim)]
                        .iter()
                        .map(|v| v.abs() as f64)
                        .sum::<f64>()
                })
                .fold(0.0f64, f64::max);
            let unit = span / 255.0;
            let worst = lut.max_error() as f64;
            assert!(
                worst <= (0.5 * nibbles(dim) as f64 + 1.0) * unit,
                "d {dim} query {t}: bound {worst} vs unit {unit}"
            );
            let mut dispatched = vec![0.0f32; nb * 32];
            lut.scan_blocks(&blocks, &mut dispatched);
            for k in Kernels::supported() {
                for b in 0..nb {
                    let block = &blocks[b * bb..(b + 1) * bb];
                    let mut sums = [0u32; 32];
                    lut.sums_with(&k.fastscan, block, &mut sums);
                    for (i, &sum) in sums.iter().enumerate().take(32.min(n - b * 32)) {
                        let r = b * 32 + i;
                        let row = &rows[r * row_bytes(dim)..(r + 1) * row_bytes(dim)];
                        let exact = exact64(row, &q);
                        let est = lut.estimate(sum) as f64;
                        assert!(
                            (est - exact).abs() <= worst,
                            "{} d {dim} query {t} row {r}: {est} vs {exact}, bound {worst}",
                            k.level()
                        );
                        if k.level() == crate::kernels::simd_level() {
                            assert_eq!(dispatched[r] as f64, est, "dispatched d {dim}");
                        }
                        let rescored = lut.exact_in_block(block, i);
                        assert_eq!(rescored.to_bits(), lut.exact_row(row).to_bits());
                        let scale: f64 = q.iter().map(|v| v.abs() as f64).sum();
                        assert!(
                            (rescored as f64 - exact).abs() <= scale * dim as f64 * 1.2e-7,
                            "d {dim} query {t} row {r}: exact {rescored} vs {exact}"
                        );
                    }
                }
            }
            let mut one = [0.0f32; 32];
            lut.scan_block(&blocks[..bb], &mut one);
            assert_eq!(&one[..], &dispatched[..32]);
        }
    }
}

/// Tables of an integer query code are exact: their sums are the bit-plane inner
/// products ⟨x, q_u⟩ the popcount kernels compute, at every level.
#[test]
fn item3_query_code_tables_equal_the_popcount_path() {
    let mut rng = seeded(44);
    for dim in DIMS {
        for bq in [1usize, 4, 6] {
            let n = 40;
            let rows = random_rows(&mut rng, n, dim, false);
            let blocks = pack_sign_codes(&rows, n, dim);
            let bb = block_bytes(dim);
            let qu: Vec<u8> = (0..dim).map(|_| rng.random_range(0..1u8 << bq)).collect();
            let lut = SignLut::from_query_codes(&qu).expect("codes below 64");
            assert_eq!(lut.max_error(), 0.0);
            let words = dim.div_ceil(64);
            let to_words = |bits: &dyn Fn(usize) -> bool| {
                let mut w = vec![0u64; words];
                for i in (0..dim).filter(|&i| bits(i)) {
                    w[i / 64] |= 1 << (i % 64);
                }
                w
            };
            let planes: Vec<u64> = (0..bq)
                .flat_map(|j| to_words(&|i| qu[i] >> j & 1 == 1))
                .collect();
            for k in Kernels::supported() {
                for r in 0..n {
                    let block = &blocks[(r / 32) * bb..(r / 32 + 1) * bb];
                    let mut sums = [0u32; 32];
                    lut.sums_with(&k.fastscan, block, &mut sums);
                    let row = &rows[r * row_bytes(dim)..];
                    let code = to_words(&|i| bit(row, i));
                    let want = bits::scalar_and_popcount_planes(&code, &planes);
                    assert_eq!(sums[r % 32], want, "{} d {dim} bq {bq} row {r}", k.level());
                    assert_eq!(lut.estimate(sums[r % 32]), want as f32);
                    assert_eq!(lut.exact_in_block(block, r % 32), want as f32);
                }
            }
        }
    }
    let err = SignLut::from_query_codes(&[1, 2, 64]).expect_err("64 is too large");
    assert!(matches!(err, Error::InvalidParameter { .. }), "{err}");
    assert!(err.to_string().contains("query code") && err.to_string().contains("64"));
}

/// Centred tables: one pass gives `Σ_i bit_i (u_i − c)` exactly (signed), at every
/// level, for codes of up to `2c` (larger ones clamped), dimensions that are and are not
/// multiples of 4 and long enough for the kernels' runs to split; `estimate` and
/// `exact_in_block` agree, and rebuilding in place after other tables gives the same.
#[test]
fn centred_query_code_tables_equal_the_reference() {
    let mut rng = seeded(45);
    for dim in DIMS.iter().copied().chain([2051]) {
        for c in [1u8, 7, 31] {
            let n = 40;
            let rows = random_rows(&mut rng, n, dim, false);
            let blocks = pack_sign_codes(&rows, n, dim);
            let bb = block_bytes(dim);
            let qu: Vec<u8> = (0..dim).map(|_| rng.random_range(0..=2 * c + 1)).collect();
            let lut = SignLut::from_centred_codes(&qu, c);
            let mut again = SignLut::from_query_codes(&vec![5u8; dim + 3]).expect("small");
            again.set_centred_codes(&qu, c);
            assert_eq!(lut.max_error(), 0.0);
            for k in Kernels::supported() {
                for r in 0..n {
                    let block = &blocks[(r / 32) * bb..(r / 32 + 1) * bb];
                    let row = &rows[r * row_bytes(dim)..];
                    let want: i32 = (0..dim)
                        .filter(|&i| bit(row, i))
                        .map(|i| i32::from(qu[i].min(2 * c)) - i32::from(c))
                        .sum();
                    let mut sums = [0u32; 32];
                    lut.sums_with(&k.fastscan, block, &mut sums);
                    let got = sums[r % 32].wrapping_sub(lut.offset) as i32;
                    assert_eq!(got, want, "{} d {dim} c {c} row {r}", k.level());
                    assert_eq!(lut.estimate(sums[r % 32]), want as f32);
                    assert_eq!(lut.exact_in_block(block, r % 32), want as f32);
                    let mut centred = [0i32; 32];
                    again.scan_block_centred(block, &mut centred);
                    assert_eq!(centred[r % 32], want, "in place, d {dim} c {c} row {r}");
                }
            }
        }
    }
}

/// A non-finite query cannot be estimated: the bound says so instead of lying.
#[test]
fn item3_non_finite_query_has_no_finite_bound() {
    for bad in [f32::NAN, f32::INFINITY] {
        let lut = SignLut::new(&[1.0, bad, 0.5, 2.0, -1.0]);
        assert_eq!(lut.max_error(), f32::INFINITY);
    }
    assert!(SignLut::new(&[1.0, -2.0, 0.5]).max_error().is_finite());
}
