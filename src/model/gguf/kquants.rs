//! The k-quants `Q4_K` and `Q6_K`: llama.cpp's super-block layouts, our own encoders.

use half::f16;

use super::QK_K;
use super::codec::{
    EXP_MASK, Fault, abs_max_bits, f16_at, f16_bytes, non_finite, round_nearest, trunc_clamped,
};

/// Beyond this magnitude the k-quant fits could overflow `f32` (they sum squares); the
/// `f16` super-block scale overflows far earlier (near 6e7 for `Q4_K`, 3e8 for `Q6_K`),
/// so such blocks are rejected as [`Fault::Overflow`] either way.
const K_QUANT_MAX: f32 = (1u64 << 40) as f32;

/// Finite and small enough for the k-quant encoders.
#[inline(always)]
fn check_k_block(x: &[f32]) -> Result<(), Fault> {
    let m = abs_max_bits(x);
    if m >= EXP_MASK {
        return Err(non_finite(x));
    }
    if f32::from_bits(m) > K_QUANT_MAX {
        return Err(Fault::Overflow { col: 0 });
    }
    Ok(())
}

/// Sub-block `j`'s 6-bit (scale, min) from the 12 packed bytes.
#[inline(always)]
fn q4_k_scale_min(s: &[u8], j: usize) -> (u8, u8) {
    if j < 4 {
        (s[j] & 63, s[j + 4] & 63)
    } else {
        (
            (s[j + 4] & 0x0f) | ((s[j - 4] >> 6) << 4),
            (s[j + 4] >> 4) | ((s[j] >> 6) << 4),
        )
    }
}

#[inline(always)]
pub(super) fn q4_k_decode(b: &[u8; 144], out: &mut [f32; QK_K]) {
    let d = f16_at(b, 0);
    let dmin = f16_at(b, 2);
    let scales = &b[4..16];
    let qs = &b[16..];
    for j in 0..8 {
        let (sc, m) = q4_k_scale_min(scales, j);
        let dl = d * sc as f32;
        let ml = dmin * m as f32;
        let shift = 4 * (j % 2);
        let q = &qs[32 * (j / 2)..32 * (j / 2) + 32];
        for (o, &byte) in out[32 * j..32 * j + 32].iter_mut().zip(q) {
            *o = dl * ((byte >> shift) & 0x0f) as f32 - ml;
        }
    }
}

/// Trial scales evaluated side by side in the k-quant searches. The searches keep one
/// accumulator per trial and walk the weights once, so the inner loop runs across trials
/// (independent lanes, no horizontal sums) and vectorises; unused lanes repeat the last
/// trial, which can never win a strict comparison against it.
const TRIALS: usize = 24;

/// Weighted least-squares fit of `x ≈ scale * q - m` with `q ∈ 0..=15`, `scale ≥ 0`,
/// `m ≥ 0`, in the manner of llama.cpp's `make_qkx2_quants`. Trial 0 is the plain
/// min/max grid (`scale = (max - min) / 15`, `m = -min`); trials 1 to 21 assign codes with
/// inverse scales `(14 + 0.1 t) / (max - min)`, `t = 0..=20`, then solve the 2×2 normal
/// equations for (scale, min) given those codes. The weighted squared error of each is
/// evaluated in closed form from the same sums (`Σ w (s q + m - x)²` expanded), and the
/// first trial with the smallest error wins. Returns `(scale, m)`.
#[inline(always)]
fn fit_scale_min(x: &[f32; 32], w: &[f32; 32]) -> (f32, f32) {
    const NMAX: f32 = 15.0;
    const USED: usize = 22;
    let (mut lo, mut hi) = (x[0], x[0]);
    for &v in &x[1..] {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    let lo = lo.min(0.0);
    if hi <= lo {
        return (0.0, -lo);
    }
    let range = hi - lo;
    let mut iscale = [0f32; TRIALS];
    for (t, v) in iscale.iter_mut().enumerate() {
        *v = match t.min(USED - 1) {
            0 => NMAX / range,
            t => (NMAX - 1.0 + 0.1 * (t - 1) as f32) / range,
        };
    }
    let (mut sum_w, mut sum_x, mut sum_x2) = (0f32, 0f32, 0f32);
    let (mut sl, mut sl2, mut sxl) = ([0f32; TRIALS], [0f32; TRIALS], [0f32; TRIALS]);
    for (&v, &wi) in x.iter().zip(w) {
        sum_w += wi;
        sum_x += wi * v;
        sum_x2 += wi * v * v;
        let dv = v - lo;
        for t in 0..TRIALS {
            let q = round_nearest(dv * iscale[t]).min(NMAX);
            let wq = wi * q;
            sl[t] += wq;
            sl2[t] += wq * q;
            sxl[t] += wq * v;
        }
    }
    let mut err = [0f32; TRIALS];
    let mut scale = [0f32; TRIALS];
    let mut min = [0f32; TRIALS];
    for t in 0..TRIALS {
        let det = sum_w * sl2[t] - sl[t] * sl[t];
        let inv_det = 1.0 / det;
        let mut s = (sum_w * sxl[t] - sum_x * sl[t]) * inv_det;
        let mut m = (sl2[t] * sum_x - sl[t] * sxl[t]) * inv_det;
        if m > 0.0 {
            m = 0.0;
            s = sxl[t] / sl2[t];
        }
        let ok = det > 0.0 && s > 0.0 && s.is_finite() && m.is_finite();
        if t == 0 {
            (s, m) = (range / NMAX, lo);
        }
        let e = s * s * sl2[t] + 2.0 * s * m * sl[t] - 2.0 * s * sxl[t] + m * m * sum_w
            - 2.0 * m * sum_x
            + sum_x2;
        err[t] = if ok || t == 0 { e } else { f32::INFINITY };
        scale[t] = s;
        min[t] = m;
    }
    let mut best = 0;
    for t in 1..USED {
        if err[t] < err[best] {
            best = t;
        }
    }
    (scale[best], -min[best])
}

/// `Q4_K` encoder: per 32-weight sub-block a (scale, min) fit weighted by
/// `sqrt(mean x²) + |x|` (llama.cpp's importance weights without an imatrix), then the
/// sixteen numbers quantized to 6 bits against `d = max scale / 63` and
/// `dmin = max min / 63`, and the 4-bit codes recomputed with the stored scales.
#[inline(always)]
pub(super) fn q4_k_encode(x: &[f32; QK_K], out: &mut [u8; 144]) -> Result<(), Fault> {
    check_k_block(x)?;
    let mut scales = [0f32; 8];
    let mut mins = [0f32; 8];
    for (j, xs) in x.as_chunks::<32>().0.iter().enumerate() {
        let sum_x2: f32 = xs.iter().map(|v| v * v).sum();
        let av = (sum_x2 / 32.0).sqrt();
        let mut w = [0f32; 32];
        for (w, &v) in w.iter_mut().zip(xs) {
            *w = av + v.abs();
        }
        (scales[j], mins[j]) = fit_scale_min(xs, &w);
    }
    let max_scale = scales.iter().fold(0f32, |a, &b| a.max(b));
    let max_min = mins.iter().fold(0f32, |a, &b| a.max(b));
    let inv_scale = if max_scale > 0.0 {
        63.0 / max_scale
    } else {
        0.0
    };
    let inv_min = if max_min > 0.0 { 63.0 / max_min } else { 0.0 };
    let mut ls = [0u8; 8];
    let mut lm = [0u8; 8];
    for j in 0..8 {
        ls[j] = trunc_clamped(round_nearest(inv_scale * scales[j]), 0.0, 63.0) as u8;
        lm[j] = trunc_clamped(round_nearest(inv_min * mins[j]), 0.0, 63.0) as u8;
    }
    let dh = f16_bytes(max_scale / 63.0)?;
    let dminh = f16_bytes(max_min / 63.0)?;
    [out[0], out[1]] = dh;
    [out[2], out[3]] = dminh;
    for j in 0..4 {
        out[4 + j] = (ls[j] & 63) | ((ls[j + 4] >> 4) << 6);
        out[8 + j] = (lm[j] & 63) | ((lm[j + 4] >> 4) << 6);
        out[12 + j] = (ls[j + 4] & 0x0f) | ((lm[j + 4] & 0x0f) << 4);
    }
    let d = f16::from_le_bytes(dh).to_f32();
    let dmin = f16::from_le_bytes(dminh).to_f32();
    let mut q = [0u8; QK_K];
    for (j, (qj, xs)) in q
        .as_chunks_mut::<32>()
        .0
        .iter_mut()
        .zip(x.as_chunks::<32>().0)
        .enumerate()
    {
        let dl = d * ls[j] as f32;
        if dl == 0.0 {
            continue;
        }
        let ml = dmin * lm[j] as f32;
        let idl = 1.0 / dl;
        for (q, &v) in qj.iter_mut().zip(xs) {
            *q = trunc_clamped(round_nearest((v + ml) * idl), 0.0, 15.0) as u8;
        }
    }
    let qs = &mut out[16..];
    for p in 0..4 {
        for l in 0..32 {
            qs[32 * p + l] = q[64 * p + l] | (q[64 * p + 32 + l] << 4);
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Q6_K
// ---------------------------------------------------------------------------------------

#[inline(always)]
pub(super) fn q6_k_decode(b: &[u8; 210], out: &mut [f32; QK_K]) {
    let d = f16_at(b, 208);
    for h in 0..2 {
        let ql = &b[64 * h..64 * h + 64];
        let qh = &b[128 + 32 * h..128 + 32 * h + 32];
        let sc = &b[192 + 8 * h..192 + 8 * h + 8];
        let o = &mut out[128 * h..128 * h + 128];
        for l in 0..32 {
            let q1 = (ql[l] & 0x0f) | ((qh[l] & 3) << 4);
            let q2 = (ql[l + 32] & 0x0f) | (((qh[l] >> 2) & 3) << 4);
            let q3 = (ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4);
            let q4 = (ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4);
            // Weight k of this half belongs to sub-block k / 16.
            for (k, q) in [(l, q1), (l + 32, q2), (l + 64, q3), (l + 96, q4)] {
                let ds = d * (sc[k / 16] as i8) as f32;
                o[k] = ds * (q as i32 - 32) as f32;
            }
        }
    }
}

/// Symmetric scale for 16 weights and codes in `-32..=31`, in the manner of llama.cpp's
/// `make_qx_quants` with energy weights `x²`: trial inverse scales `-(32 + 0.1 t) / max`,
/// `t ∈ -9..=9`, each giving codes and their least-squares scale; the first trial that
/// explains the most weighted energy (`(Σ w x q)² / Σ w q²`) wins. The sign follows
/// `-max`, so the largest weight can use code `-32`.
#[inline(always)]
fn fit_scale_symmetric(x: &[f32; 16]) -> f32 {
    const USED: usize = 19;
    let max = x
        .iter()
        .fold(0f32, |m, &v| if v.abs() > m.abs() { v } else { m });
    if max.abs() < 1e-15 {
        return 0.0;
    }
    let mut iscale = [0f32; TRIALS];
    for (t, v) in iscale.iter_mut().enumerate() {
        *v = -(32.0 + 0.1 * (t.min(USED - 1) as f32 - 9.0)) / max;
    }
    let (mut slx, mut sl2) = ([0f32; TRIALS], [0f32; TRIALS]);
    for &v in x {
        let w = v * v;
        let wv = w * v;
        for t in 0..TRIALS {
            let q = round_nearest(iscale[t] * v).clamp(-32.0, 31.0);
            slx[t] += wv * q;
            sl2[t] += w * q * q;
        }
    }
    let mut best = 0f32;
    let mut best_scale = 0f32;
    for t in 0..USED {
        let (sumlx, suml2) = (slx[t], sl2[t]);
        if suml2 > 0.0 && sumlx * sumlx > best * suml2 {
            best = sumlx * sumlx / suml2;
            best_scale = sumlx / suml2;
        }
    }
    best_scale
}

/// `Q6_K` encoder: a symmetric scale per 16 weights, the sixteen scales quantized to
/// `i8` against `d = -max_scale / 128`, then the 6-bit codes recomputed with the stored
/// scales.
#[inline(always)]
pub(super) fn q6_k_encode(x: &[f32; QK_K], out: &mut [u8; 210]) -> Result<(), Fault> {
    check_k_block(x)?;
    let mut scales = [0f32; 16];
    let mut max_scale = 0f32;
    for (s, xs) in scales.iter_mut().zip(x.as_chunks::<16>().0) {
        *s = fit_scale_symmetric(xs);
        if s.abs() > max_scale.abs() {
            max_scale = *s;
        }
    }
    out.fill(0);
    if max_scale.abs() < 1e-15 {
        return Ok(());
    }
    let iscale = -128.0 / max_scale;
    let dh = f16_bytes(1.0 / iscale)?;
    [out[208], out[209]] = dh;
    let d = f16::from_le_bytes(dh).to_f32();
    let mut sc = [0i8; 16];
    for (c, &s) in sc.iter_mut().zip(&scales) {
        *c = trunc_clamped(round_nearest(iscale * s), -128.0, 127.0) as i8;
    }
    let mut q = [0u8; QK_K];
    for ((qb, xs), &c) in q
        .as_chunks_mut::<16>()
        .0
        .iter_mut()
        .zip(x.as_chunks::<16>().0)
        .zip(&sc)
    {
        let ds = d * c as f32;
        if ds == 0.0 {
            qb.fill(32);
            continue;
        }
        let ids = 1.0 / ds;
        for (q, &v) in qb.iter_mut().zip(xs) {
            *q = (trunc_clamped(round_nearest(v * ids), -32.0, 31.0) + 32) as u8;
        }
    }
    for (o, &c) in out[192..208].iter_mut().zip(&sc) {
        *o = c as u8;
    }
    for h in 0..2 {
        let qh = &q[128 * h..128 * h + 128];
        for l in 0..32 {
            let (q1, q2, q3, q4) = (qh[l], qh[l + 32], qh[l + 64], qh[l + 96]);
            out[64 * h + l] = (q1 & 0x0f) | ((q3 & 0x0f) << 4);
            out[64 * h + l + 32] = (q2 & 0x0f) | ((q4 & 0x0f) << 4);
            out[128 + 32 * h + l] =
                (q1 >> 4) | ((q2 >> 4) << 2) | ((q3 >> 4) << 4) | ((q4 >> 4) << 6);
        }
    }
    Ok(())
}
