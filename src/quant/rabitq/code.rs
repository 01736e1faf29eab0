//! One vector's RaBitQ code: the sign bit plane, the extended bits chosen by the
//! rescaling search of extended RaBitQ, and the per-vector factors.
//!
//! A row of `b` bits per dimension is laid out as
//!
//! ```text
//! [ sign plane: ⌈d/8⌉ bytes ][ b − 1 extra planes: ⌈d/8⌉ bytes each ][ factors: f32 LE ]
//! ```
//!
//! Dimension `i` sits at bit `i % 8` of byte `i / 8` of each plane (little-endian `u64`
//! words as [`crate::kernels::bits`] reads them). The full code of dimension `i` is
//! `u_i = s_i · 2^(b−1) + e_i` (`s_i` the sign bit, `e_i` the extra bits, plane `j` holding
//! bit `j` of `e_i`), and its value `v_i = u_i − (2^b − 1)/2` ∈ {±0.5, ±1.5, …}: for
//! `b = 1` the classic `±1/2` sign code.
//!
//! Factors, with `r` the vector minus the centroid, `o = P⁻¹ r / ‖r‖` the rotated unit
//! residual and `x̄ = sign(o)/√d`:
//!
//! | index | value | used for |
//! | --- | --- | --- |
//! | 0 | `‖r‖²` | L2 distances |
//! | 1 | `‖r‖ / ⟨x̄, o⟩` | the 1-bit estimate `⟨r, q⟩ ≈ f1 · ⟨x̄, P⁻¹q⟩` |
//! | 2 | `‖r‖ · ε0 · √((1 − ⟨x̄,o⟩²)/⟨x̄,o⟩²) / √(d − 1)` | the 1-bit error bound (per unit ‖q‖) |
//! | 3 | `‖r‖ / ⟨v, o⟩` | the full-code estimate `⟨r, q⟩ ≈ f3 · ⟨v, P⁻¹q⟩` |
//! | 4 | the full code's error bound, as index 2 with `cos(v, o)` | refinement decisions |
//!
//! One-bit codes keep indices 0 and 1 only (8 bytes, FAISS's `SignBitFactors`); codes of
//! `b ≥ 2` bits keep all five (20 bytes: FAISS's 12-byte `SignBitFactorsWithError` plus
//! its 8-byte `ExtraBitsFactors`), so bytes per vector equal FAISS's: `⌈d/8⌉·b + 8` for
//! `b = 1`, `⌈d/8⌉·b + 20` otherwise (d = 128: 24 and, for 4 bits, 84 bytes).
//!
//! **Local centres** (flat and graph indexes under L2, see [`super::RaBitQ`]): the
//! residual is `r = x − c_k` to the nearest of `K ≤ 256` k-means centres, and the same
//! bytes hold ([`localize`])
//!
//! ```text
//! [ F1: f32 ][ f1: bf16 ][ k: u8 ][ ⌊255·⟨x̄,o⟩⌋: u8 ]                                   (b = 1)
//! [ F1: f32 ][ f1: bf16 ][ k: u8 ][ ⌊255·⟨x̄,o⟩⌋: u8 ][ f2: bf16↑ ][ f4: bf16↑ ][ f3: f32 ][ F3: f32 ]
//! ```
//!
//! with `F = ‖x − c‖² − 2g`, `g = ⟨r, c_k − c⟩ − f·⟨code, P⁻¹(c_k − c)⟩` the estimator's
//! (deterministic) error on the fixed vector `c_k − c` (`F1` with the 1-bit estimator
//! and `f1`, `F3` with the full code and `f3`). The scan's target stays `P⁻¹(q − c)`: the
//! estimators are linear in it, so `‖q − x‖² = ‖q − c‖² + F − 2(est + ⟨q − c, c_k − c⟩)`
//! is the estimate the code would give against the target `q − c_k` — error ∝ `‖r‖·‖q − c_k‖`
//! instead of `‖x − c‖·‖q − c‖` — from one quantized query and a `K`-entry table per
//! query. The bounds' factors are rounded up (bf16↑) and the cosine down, so bounds only
//! widen.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// The paper's confidence constant ε0 of the error bound.
pub const EPSILON0: f32 = 1.9;

/// Most local centres (the centre's number is one byte of the factors).
pub const MAX_CENTRES: usize = 256;

/// `v` as bf16 bits, rounded to nearest even (finite `v`).
#[inline]
pub(crate) fn bf16_bits(v: f32) -> u16 {
    half::bf16::from_f32(v).to_bits()
}

/// `v ≥ 0` as bf16 bits rounded up (the smallest bf16 at least `v`).
#[inline]
pub(crate) fn bf16_bits_up(v: f32) -> u16 {
    let b = bf16_bits(v.max(0.0));
    if from_bf16(b) < v { b + 1 } else { b }
}

/// The `f32` of bf16 bits.
#[inline(always)]
pub(crate) fn from_bf16(b: u16) -> f32 {
    f32::from_bits(u32::from(b) << 16)
}

/// A row's factors in either layout (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct RowFactors {
    /// The L2 constant of the 1-bit estimate: `‖r‖²`, or `F1` with local centres.
    pub(crate) c1: f32,
    pub(crate) f1: f32,
    pub(crate) f2: f32,
    pub(crate) f3: f32,
    pub(crate) f4: f32,
    /// The L2 constant of the full estimate: `‖r‖²`, or `F3` with local centres.
    pub(crate) c3: f32,
    /// The local centre (0 without).
    pub(crate) centre: usize,
    /// `‖r‖`, exact without local centres, else `f1 · ⌊255·⟨x̄,o⟩⌋/255` (within 0.6 %:
    /// bf16 `f1`, the cosine floored to a byte).
    pub(crate) norm: f32,
}

/// The factors of a row's factor bytes `f` (`bits` per dimension; `local`: the local
/// centres' layout). Factors a layout does not hold read as 0.
pub(crate) fn row_factors(f: &[u8], bits: u8, local: bool) -> RowFactors {
    let w = |k: usize| -> f32 {
        f.get(4 * k..4 * k + 4)
            .map_or(0.0, |b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    let h = |at: usize| -> f32 {
        f.get(at..at + 2)
            .map_or(0.0, |b| from_bf16(u16::from_le_bytes([b[0], b[1]])))
    };
    let multi = bits > 1;
    if !local {
        let f0 = w(0);
        let g = |k| if multi { w(k) } else { 0.0 };
        return RowFactors {
            c1: f0,
            f1: w(1),
            f2: g(2),
            f3: g(3),
            f4: g(4),
            c3: f0,
            centre: 0,
            norm: f0.max(0.0).sqrt(),
        };
    }
    let (c1, f1) = (w(0), h(4));
    let centre = f.get(6).map_or(0, |&b| usize::from(b));
    let cos = f.get(7).map_or(0.0, |&b| f32::from(b) / 255.0);
    let (f2, f4, f3, c3) = if multi {
        (h(8), h(10), w(3), w(4))
    } else {
        (0.0, 0.0, 0.0, c1)
    };
    RowFactors {
        c1,
        f1,
        f2,
        f3,
        f4,
        c3,
        centre,
        norm: f1 * cos,
    }
}

/// Rewrites the factors of a row that [`encode_rotated`] wrote for the rotated residual
/// `y = P⁻¹(x − c_k)` in the local centres' layout (module docs): `z = P⁻¹(c_k − c)`,
/// `a = ‖x − c‖²`, `centre = k`.
pub(crate) fn localize(row: &mut [u8], y: &[f32], bits: u8, z: &[f32], a: f64, centre: u8) {
    let d = y.len();
    let pb = plane_bytes(d);
    let at = pb * bits as usize;
    let old = row_factors(&row[at..], bits, false);
    let yz: f64 = y
        .iter()
        .zip(z)
        .map(|(&a, &b)| f64::from(a) * f64::from(b))
        .sum();
    // The 1-bit estimator on `z`, with the stored (rounded) `f1`.
    let f1b = bf16_bits(old.f1);
    let sz: f64 = z
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            let s = if row[i / 8] >> (i % 8) & 1 == 1 {
                1.0
            } else {
                -1.0
            };
            s * f64::from(v)
        })
        .sum::<f64>()
        / (d as f64).sqrt();
    let g1 = yz - f64::from(from_bf16(f1b)) * sz;
    let cos = if old.f1 > 0.0 { old.norm / old.f1 } else { 1.0 };
    let cosq = (cos * 255.0).floor().clamp(0.0, 255.0) as u8;
    let mut f = [0u8; 20];
    f[..4].copy_from_slice(&((a - 2.0 * g1) as f32).to_le_bytes());
    f[4..6].copy_from_slice(&f1b.to_le_bytes());
    f[6] = centre;
    f[7] = cosq;
    if bits > 1 {
        let v = code_values(row, d, bits);
        let vz: f64 = v
            .iter()
            .zip(z)
            .map(|(&a, &b)| f64::from(a) * f64::from(b))
            .sum();
        let g3 = yz - f64::from(old.f3) * vz;
        f[8..10].copy_from_slice(&bf16_bits_up(old.f2).to_le_bytes());
        f[10..12].copy_from_slice(&bf16_bits_up(old.f4).to_le_bytes());
        f[12..16].copy_from_slice(&old.f3.to_le_bytes());
        f[16..20].copy_from_slice(&((a - 2.0 * g3) as f32).to_le_bytes());
    }
    let n = 4 * factor_count(bits);
    row[at..at + n].copy_from_slice(&f[..n]);
}

/// Bytes of one bit plane of `d` dimensions.
pub(crate) fn plane_bytes(d: usize) -> usize {
    d.div_ceil(8)
}

/// Factors (f32) per row for `bits` bits per dimension.
pub(crate) fn factor_count(bits: u8) -> usize {
    if bits == 1 { 2 } else { 5 }
}

/// Bytes of one row.
pub(crate) fn row_bytes(d: usize, bits: u8) -> usize {
    plane_bytes(d) * bits as usize + 4 * factor_count(bits)
}

/// `ε0 · √((1 − a²)/a²) / √(d − 1)`: the error bound of an estimate of `⟨o, q⟩` for unit
/// `o`, `q` from a code whose direction has cosine `a` with `o` (0 when `d = 1` or the
/// code is exact).
pub fn error_bound(cos: f32, d: usize, eps0: f32) -> f32 {
    if d <= 1 || cos <= 0.0 || cos >= 1.0 {
        return 0.0;
    }
    eps0 * ((1.0 - cos * cos) / (cos * cos)).sqrt() / ((d - 1) as f32).sqrt()
}

/// The extended code's magnitudes: `m_i ∈ [0, 2^ex − 1]` maximising the cosine between
/// `(m_i + 1/2)_i` and `|o|`, searched over the critical rescaling factors `t` at which
/// some `⌊t·|o_i|⌋` steps up (extended RaBitQ, Gao et al. 2025), every one of them up to
/// full saturation (`d · (2^ex − 1)` events through a heap: exact; a cut at the scale
/// where the largest coordinate saturates misses the optimum for 2 bits). Returns the
/// magnitudes and `Σ (m_i + 1/2)|o_i|` and `Σ (m_i + 1/2)²` of the best code.
pub(crate) fn rescaled_magnitudes(abs_o: &[f32], ex_bits: u32) -> (Vec<u16>, f64, f64) {
    let d = abs_o.len();
    let maxm = (1u32 << ex_bits) - 1;
    let mut m = vec![0u16; d];
    let mut s1: f64 = abs_o.iter().map(|&a| 0.5 * f64::from(a)).sum();
    let mut s2: f64 = 0.25 * d as f64;
    let top = abs_o.iter().fold(0.0f32, |a, &b| a.max(b));
    if top <= 0.0 || maxm == 0 {
        return (m, s1, s2);
    }
    // Events `(t, i)`: dimension i steps from m_i to m_i + 1 at t = (m_i + 1)/|o_i|.
    // f64 `t > 0` orders like its bit pattern.
    let mut heap: BinaryHeap<Reverse<(u64, u32)>> = BinaryHeap::with_capacity(d);
    for (i, &a) in abs_o.iter().enumerate() {
        if a > 0.0 {
            heap.push(Reverse(((1.0 / f64::from(a)).to_bits(), i as u32)));
        }
    }
    let mut order: Vec<u32> = Vec::new();
    let mut best = s1 / s2.sqrt();
    let (mut best_k, mut best_s1, mut best_s2) = (0usize, s1, s2);
    while let Some(Reverse((_, i))) = heap.pop() {
        let i = i as usize;
        let a = f64::from(abs_o[i]);
        let y = f64::from(m[i]) + 0.5;
        s1 += a;
        s2 += 2.0 * y + 1.0;
        m[i] += 1;
        order.push(i as u32);
        let cos = s1 / s2.sqrt();
        if cos > best {
            (best, best_k, best_s1, best_s2) = (cos, order.len(), s1, s2);
        }
        if u32::from(m[i]) < maxm {
            let t = (f64::from(m[i]) + 1.0) / a;
            heap.push(Reverse((t.to_bits(), i as u32)));
        }
    }
    m.fill(0);
    for &i in &order[..best_k] {
        m[i as usize] += 1;
    }
    (m, best_s1, best_s2)
}

/// Writes the code of one rotated residual `y` (`d` values, `‖y‖ = ‖r‖`) into `out`
/// ([`row_bytes`] long, zeroed).
pub(crate) fn encode_rotated(y: &[f32], bits: u8, out: &mut [u8]) {
    let d = y.len();
    let pb = plane_bytes(d);
    let norm2: f64 = y.iter().map(|&v| f64::from(v) * f64::from(v)).sum();
    let norm = norm2.sqrt();
    for (i, &v) in y.iter().enumerate() {
        if v > 0.0 {
            out[i / 8] |= 1 << (i % 8);
        }
    }
    let mut f = [0.0f32; 5];
    f[0] = norm2 as f32;
    if norm > 0.0 {
        let inv = 1.0 / norm;
        let abs_o: Vec<f32> = y
            .iter()
            .map(|&v| (f64::from(v).abs() * inv) as f32)
            .collect();
        let l1: f64 = abs_o.iter().map(|&a| f64::from(a)).sum();
        let cos1 = l1 / (d as f64).sqrt();
        if cos1 > 0.0 {
            f[1] = (norm / cos1) as f32;
            f[2] = (norm * f64::from(error_bound(cos1 as f32, d, EPSILON0))) as f32;
        }
        if bits > 1 {
            let ex = u32::from(bits) - 1;
            let (m, s1, s2) = rescaled_magnitudes(&abs_o, ex);
            let top = (1u16 << ex) - 1;
            for (i, (&mi, &v)) in m.iter().zip(y).enumerate() {
                let e = if v > 0.0 { mi } else { top - mi };
                for j in 0..ex as usize {
                    if e >> j & 1 == 1 {
                        out[pb * (1 + j) + i / 8] |= 1 << (i % 8);
                    }
                }
            }
            if s1 > 0.0 {
                f[3] = (norm / s1) as f32;
                let cos = (s1 / s2.sqrt()) as f32;
                f[4] = (norm * f64::from(error_bound(cos, d, EPSILON0))) as f32;
            }
        }
    }
    let at = pb * bits as usize;
    for (k, v) in f.iter().take(factor_count(bits)).enumerate() {
        out[at + 4 * k..at + 4 * k + 4].copy_from_slice(&v.to_le_bytes());
    }
}

/// Factor `k` of a row.
#[inline]
pub(crate) fn factor(row: &[u8], d: usize, bits: u8, k: usize) -> f32 {
    let at = plane_bytes(d) * bits as usize + 4 * k;
    f32::from_le_bytes([row[at], row[at + 1], row[at + 2], row[at + 3]])
}

/// The values `v_i = u_i − (2^b − 1)/2` of a row's full code.
pub(crate) fn code_values(row: &[u8], d: usize, bits: u8) -> Vec<f32> {
    let pb = plane_bytes(d);
    let ex = bits as usize - 1;
    let half = ((1u32 << bits) - 1) as f32 / 2.0;
    (0..d)
        .map(|i| {
            let bit = |p: usize| u32::from(row[p * pb + i / 8] >> (i % 8) & 1);
            let e: u32 = (0..ex).map(|j| bit(1 + j) << j).sum();
            (bit(0) << ex | e) as f32 - half
        })
        .collect()
}

/// `Σ_i u_i t_i` over a row's full code (`bits` planes), iterating set bits (the
/// reference of the scans' table path).
#[cfg(test)]
pub(crate) fn full_dot(row: &[u8], d: usize, bits: u8, t: &[f32]) -> f32 {
    let pb = plane_bytes(d);
    let ex = bits as usize - 1;
    let mut total = 0.0f32;
    for p in 0..bits as usize {
        let weight = if p == 0 {
            (1u32 << ex) as f32
        } else {
            (1u32 << (p - 1)) as f32
        };
        let plane = &row[p * pb..(p + 1) * pb];
        let mut acc = 0.0f32;
        for (k, chunk) in plane.chunks(8).enumerate() {
            let mut b = [0u8; 8];
            b[..chunk.len()].copy_from_slice(chunk);
            let mut w = u64::from_le_bytes(b);
            while w != 0 {
                let i = 64 * k + w.trailing_zeros() as usize;
                acc += t[i];
                w &= w - 1;
            }
        }
        total += weight * acc;
    }
    total
}
