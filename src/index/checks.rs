//! What every index accepts: vectors, queries and derived terms small enough that no
//! distance computed from them overflows `f32`.
//!
//! Finite values are not enough: a vector of finite `1e38`s has an infinite squared
//! norm, so every distance to it is `inf` or NaN. An index therefore refuses, at
//! `train`/`add` and when a query is prepared, any vector whose squared norm (computed in
//! `f64`) exceeds [`MAX_NORM_SQ`] (`‖x‖ ≤ 1e18`), with an [`Error::TooLarge`] naming the
//! row; and the terms it derives (norms, correction terms, quantizer ranges, centroids)
//! are checked against [`MAX_TERM`] where they are computed. Then every distance between
//! an accepted query and an accepted vector — ‖q − x‖² ≤ (‖q‖ + ‖x‖)², or through IVF
//! residuals and reconstructions ≤ (2·1e18 + √MAX_TERM)² ≈ 2.7e37 — is finite with a
//! tenfold margin. The checks run once per vector at add/train/query-prepare time, never
//! in the scans; results are checked once per returned distance ([`check_results`]) as
//! the last line of defence for files written before these checks.

use crate::error::{Error, Result};
use crate::topk::Neighbor;
use crate::vectors::{check_batch, check_finite};

/// Largest squared L2 norm of a vector or query an index accepts (`‖x‖ ≤ 1e18`).
pub const MAX_NORM_SQ: f64 = 1e36;

/// Largest squared-norm-like term an index derives and stores (a reconstruction's
/// squared norm, a quantizer's range, a centroid's squared norm).
pub const MAX_TERM: f64 = 1e37;

/// Squared L2 norm of `v` in `f64` (cannot overflow for finite `f32` input). Summed in
/// eight independent lanes, which vectorise: one chain of `f64` additions made this
/// check of every query ~500 cycles of latency at 128 dimensions (about 6 % of an IVF
/// fast-scan search at `nprobe` 1). Each square is exact in `f64`; only the order of
/// the additions differs from a sequential sum (a few ulps, far inside the limits'
/// margins).
#[inline]
pub(crate) fn norm_sq(v: &[f32]) -> f64 {
    let sq = |x: f32| f64::from(x) * f64::from(x);
    let (chunks, rest) = v.as_chunks::<8>();
    let mut acc = [0.0f64; 8];
    for c in chunks {
        for (a, &x) in acc.iter_mut().zip(c) {
            *a += sq(x);
        }
    }
    let tail: f64 = rest.iter().map(|&x| sq(x)).sum();
    ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7])) + tail
}

/// Fails with [`Error::TooLarge`] naming the first row of `data` whose squared norm
/// exceeds [`MAX_NORM_SQ`]; rows are numbered from `first_row`.
pub(crate) fn check_norms(data: &[f32], dim: usize, context: &str, first_row: usize) -> Result<()> {
    use rayon::prelude::*;
    let dim = dim.max(1);
    let bad = |r: &[f32]| norm_sq(r) > MAX_NORM_SQ;
    let at = if data.len() <= 1 << 16 {
        data.chunks_exact(dim).position(bad)
    } else {
        data.par_chunks_exact(dim).position_first(bad)
    };
    match at {
        None => Ok(()),
        Some(r) => {
            let n = norm_sq(&data[r * dim..(r + 1) * dim]);
            Err(Error::TooLarge {
                context: context.to_string(),
                row: first_row + r,
                message: format!(
                    "squared norm {n:.3e} exceeds the limit {MAX_NORM_SQ:.0e} (‖x‖ ≤ 1e18): \
                     distances to it would overflow f32"
                ),
            })
        }
    }
}

/// Checks row-major vectors an index will store, train on or search with: a whole
/// number of rows, every component finite ([`Error::NonFinite`]) and every squared norm
/// within [`MAX_NORM_SQ`] ([`Error::TooLarge`]). Returns the number of rows.
pub(crate) fn check_vectors(data: &[f32], dim: usize, context: &str) -> Result<usize> {
    let n = check_batch(data, dim, context)?;
    check_finite(data, dim, context)?;
    check_norms(data, dim, context, 0)?;
    Ok(n)
}

/// Checks per-row derived terms (`terms[i]` belongs to row `first_row + i`): each must
/// be finite and, in absolute value, at most `limit`.
pub(crate) fn check_terms(
    terms: &[f32],
    limit: f64,
    context: &str,
    what: &str,
    first_row: usize,
) -> Result<()> {
    match terms
        .iter()
        .position(|t| !t.is_finite() || f64::from(t.abs()) > limit)
    {
        None => Ok(()),
        Some(i) => Err(Error::TooLarge {
            context: context.to_string(),
            row: first_row + i,
            message: format!(
                "its {what} is {:e} (the limit is {limit:.0e}): the vector is too large for \
                 this index's quantizer",
                terms[i]
            ),
        }),
    }
}

/// Checks one trained quantity (a range, a centroid norm sum) against [`MAX_TERM`].
pub(crate) fn check_trained_term(value: f64, context: &str, what: &str) -> Result<()> {
    if value.is_finite() && value <= MAX_TERM {
        return Ok(());
    }
    Err(Error::param(
        context,
        format!(
            "the trained {what} is {value:.3e} (the limit is {MAX_TERM:.0e}): the training \
             sample's values are too large"
        ),
    ))
}

/// Fails with [`Error::TooLarge`] naming the query (numbered from `first_query`) of the
/// first result whose distance is not finite: such a distance is never returned.
pub(crate) fn check_results<R: AsRef<[Neighbor]>>(results: &[R], first_query: usize) -> Result<()> {
    for (qi, r) in results.iter().enumerate() {
        if let Some(n) = r.as_ref().iter().find(|n| !n.distance.is_finite()) {
            return Err(Error::TooLarge {
                context: "query".into(),
                row: first_query + qi,
                message: format!(
                    "its distance to id {} is {} (overflows f32): the query or the stored \
                     vectors are too large for this index",
                    n.id, n.distance
                ),
            });
        }
    }
    Ok(())
}

/// For exhaustive unfiltered scans, which return `want` results per query: fails with
/// [`Error::TooLarge`] naming the first query with fewer — candidates whose distance was
/// NaN (an overflow) were dropped, and are not silently missing.
pub(crate) fn check_full<R: AsRef<[Neighbor]>>(results: &[R], want: usize) -> Result<()> {
    match results.iter().position(|r| r.as_ref().len() < want) {
        None => Ok(()),
        Some(qi) => Err(Error::TooLarge {
            context: "query".into(),
            row: qi,
            message: format!(
                "only {} of its {want} nearest distances are numbers (the others overflow \
                 f32): the query or the stored vectors are too large for this index",
                results[qi].as_ref().len()
            ),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The eight-lane sum is within a few ulps of the sequential one (every square is
    /// exact in `f64`), for lengths with and without a tail, and at the limit: a row
    /// just over `MAX_NORM_SQ` is refused, one just under accepted.
    #[test]
    fn lane_sums_match_the_sequential_norm() {
        use crate::rng::{RngExt, seeded};
        let mut rng = seeded(9);
        for len in [0usize, 1, 7, 8, 9, 31, 128, 384, 1001] {
            let v: Vec<f32> = (0..len).map(|_| rng.random::<f32>() * 2e3 - 1e3).collect();
            let seq: f64 = v.iter().map(|&x| f64::from(x) * f64::from(x)).sum();
            let got = norm_sq(&v);
            assert!(
                (got - seq).abs() <= 1e-14 * seq,
                "len {len}: {got} vs {seq}"
            );
        }
        // 100 components of 1e17 (squared norm 1e36 · 1.0000…): over; of 0.99e17: under.
        let over = vec![1.0001e17f32; 100];
        assert!(norm_sq(&over) > MAX_NORM_SQ);
        assert!(check_vectors(&over, 100, "add").is_err());
        assert!(check_vectors(&vec![0.99e17f32; 100], 100, "add").is_ok());
    }

    #[test]
    fn limits() {
        assert!(check_vectors(&[1e17; 16], 16, "add").is_ok());
        let e = check_vectors(&[0.0, 0.0, 1e18, 1e18], 2, "add").unwrap_err();
        assert!(matches!(e, Error::TooLarge { row: 1, .. }), "{e}");
        assert!(check_terms(&[1.0, 2.0], 10.0, "add", "norm", 0).is_ok());
        let e = check_terms(&[1.0, f32::INFINITY], 10.0, "add", "norm", 5).unwrap_err();
        assert!(matches!(e, Error::TooLarge { row: 6, .. }), "{e}");
        let ok = vec![vec![Neighbor {
            id: 1,
            distance: 1.0,
        }]];
        assert!(check_results(&ok, 0).is_ok());
        let bad = vec![
            vec![],
            vec![Neighbor {
                id: 4,
                distance: f32::INFINITY,
            }],
        ];
        let e = check_results(&bad, 10).unwrap_err();
        assert!(matches!(e, Error::TooLarge { row: 11, .. }), "{e}");
    }
}
