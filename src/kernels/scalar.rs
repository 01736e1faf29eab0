//! Plain scalar reference kernels. They define the results the SIMD versions must match.

/// Squared Euclidean distance, scalar reference.
pub fn l2_sq(a: &[f32], b: &[f32]) -> f32 {
    // Four independent accumulators: the same association the SIMD code uses per lane,
    // and lets the compiler pipeline the adds.
    let mut acc = [0.0f32; 4];
    let chunks = a.len() / 4;
    for i in 0..chunks {
        for l in 0..4 {
            let d = a[4 * i + l] - b[4 * i + l];
            acc[l] += d * d;
        }
    }
    let mut s = (acc[0] + acc[1]) + (acc[2] + acc[3]);
    for i in chunks * 4..a.len() {
        let d = a[i] - b[i];
        s += d * d;
    }
    s
}

/// Inner product, scalar reference.
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; 4];
    let chunks = a.len() / 4;
    for i in 0..chunks {
        for l in 0..4 {
            acc[l] += a[4 * i + l] * b[4 * i + l];
        }
    }
    let mut s = (acc[0] + acc[1]) + (acc[2] + acc[3]);
    for i in chunks * 4..a.len() {
        s += a[i] * b[i];
    }
    s
}

/// The nearest centroid of one row from its GEMM row: the first `j` minimising
/// `norms[j] − 2·dots[j]` (the squared distance less the row's own squared norm), and
/// that value; NaN values are never chosen, and `(0, +∞)` is returned when no value is
/// below +∞. The definition: one pass in order with a strict `<`.
pub fn nearest(dots: &[f32], norms: &[f32]) -> (usize, f32) {
    let (mut best, mut bd) = (0usize, f32::INFINITY);
    for (j, (&dot, &n)) in dots.iter().zip(norms).enumerate() {
        let v = n - 2.0 * dot;
        if v < bd {
            bd = v;
            best = j;
        }
    }
    (best, bd)
}

/// Lanes of [`nearest_lanes`].
const NEAREST_LANES: usize = 16;

/// [`nearest`] in [`NEAREST_LANES`] independent lanes (lane `l` keeps the first minimum
/// of the values at `j ≡ l` mod 16, as a compare and two selects the compiler
/// vectorises), then the lanes' minima, ties to the smaller index, then the tail in
/// order: the same index and value as `nearest`. The one-pass loop is a chain of
/// data-dependent branches the compiler cannot vectorise: over 4,096 centroids it cost
/// more than the GEMM that computed the dots.
#[inline(always)]
pub fn nearest_lanes(dots: &[f32], norms: &[f32]) -> (usize, f32) {
    const L: usize = NEAREST_LANES;
    let n = dots.len().min(norms.len());
    if u32::try_from(n).is_err() {
        return nearest(dots, norms);
    }
    let (dots, norms) = (&dots[..n], &norms[..n]);
    let mut bv = [f32::INFINITY; L];
    let mut bi = [0u32; L];
    let mut at: [u32; L] = std::array::from_fn(|l| l as u32);
    let (dc, dt) = dots.as_chunks::<L>();
    let (nc, nt) = norms.as_chunks::<L>();
    for (d, c) in dc.iter().zip(nc) {
        for l in 0..L {
            let v = c[l] - 2.0 * d[l];
            let lt = v < bv[l];
            bv[l] = if lt { v } else { bv[l] };
            bi[l] = if lt { at[l] } else { bi[l] };
            at[l] += L as u32;
        }
    }
    // Lanes never chose (value +∞, index 0) keep index 0, which loses every tie to a
    // chosen +∞-free value and, when nothing was chosen anywhere, is `nearest`'s 0.
    let (mut best, mut bd) = (0usize, f32::INFINITY);
    for l in 0..L {
        let (v, i) = (bv[l], bi[l] as usize);
        if v < bd || (v == bd && i < best && v < f32::INFINITY) {
            (best, bd) = (i, v);
        }
    }
    let start = dc.len() * L;
    for (j, (&dot, &c)) in dt.iter().zip(nt).enumerate() {
        let v = c - 2.0 * dot;
        if v < bd {
            (best, bd) = (start + j, v);
        }
    }
    (best, bd)
}

/// Values per [`below`] call.
pub const BELOW_CHUNK: usize = 64;

/// The distances of up to [`BELOW_CHUNK`] GEMM values and which are within a threshold:
/// `out[i] = norms[i] − 2·dots[i]` (the squared distance less the query's own squared
/// norm), or `−dots[i]` when `norms` is empty (inner product), for `i < n` with `n` the
/// shortest of `dots`, `out`, [`BELOW_CHUNK`] and (when not empty) `norms`; bit `i` of the
/// result set where `out[i] ≤ thr` (never for NaN). The definition: one pass in order.
pub fn below(dots: &[f32], norms: &[f32], thr: f32, out: &mut [f32]) -> u64 {
    let mut n = dots.len().min(out.len()).min(BELOW_CHUNK);
    if !norms.is_empty() {
        n = n.min(norms.len());
    }
    let mut mask = 0u64;
    for i in 0..n {
        let d = if norms.is_empty() {
            -dots[i]
        } else {
            norms[i] - 2.0 * dots[i]
        };
        out[i] = d;
        mask |= u64::from(d <= thr) << i;
    }
    mask
}

/// [`below`] for a whole chunk of [`BELOW_CHUNK`] values as four 16-lane steps without
/// branches (what the compiler vectorises: per step a subtraction, a comparison and a
/// mask); shorter chunks take `below`. The same values and bits.
#[inline(always)]
pub fn below_lanes(dots: &[f32], norms: &[f32], thr: f32, out: &mut [f32]) -> u64 {
    const L: usize = 16;
    let l2 = !norms.is_empty();
    let (Some(d), Some(o)) = (
        dots.first_chunk::<BELOW_CHUNK>(),
        out.first_chunk_mut::<BELOW_CHUNK>(),
    ) else {
        return below(dots, norms, thr, out);
    };
    let nrm = match norms.first_chunk::<BELOW_CHUNK>() {
        Some(n) => n,
        None if !l2 => &[0.0; BELOW_CHUNK],
        None => return below(dots, norms, thr, out),
    };
    let mut mask = 0u64;
    for ((step, (d, n)), o) in d
        .as_chunks::<L>()
        .0
        .iter()
        .zip(nrm.as_chunks::<L>().0)
        .enumerate()
        .zip(o.as_chunks_mut::<L>().0)
    {
        let mut bits = 0u64;
        for l in 0..L {
            o[l] = if l2 { n[l] - 2.0 * d[l] } else { -d[l] };
            bits |= u64::from(o[l] <= thr) << l;
        }
        mask |= bits << (L * step);
    }
    mask
}
