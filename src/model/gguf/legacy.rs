//! The 32-weight block types `Q4_0`, `Q4_1`, `Q5_0` and `Q8_0`, bit-exact with the
//! reference quantizers of `gguf.quants`.

use super::QK;
use super::codec::{
    EXP_MASK, Fault, abs_max_bits, check_finite, f16_at, f16_bytes, non_finite, round_away,
    signed_abs_max, trunc_clamped,
};

/// `Q4_0`: `d = max / -8` where `max` is the signed value of largest magnitude,
/// `q = min(15, trunc(x / d + 8.5))` (computed as `x * (1 / d) + 8.5` in `f32`).
#[inline(always)]
pub(super) fn q4_0_encode(x: &[f32; QK], out: &mut [u8; 18]) -> Result<(), Fault> {
    let max = signed_abs_max(x)?;
    let d = max / -8.0;
    let id = if d == 0.0 { 0.0 } else { 1.0 / d };
    [out[0], out[1]] = f16_bytes(d)?;
    let mut q = [0u8; QK];
    for (q, &v) in q.iter_mut().zip(x) {
        *q = trunc_clamped(v * id + 8.5, 0.0, 15.0) as u8;
    }
    for (j, o) in out[2..].iter_mut().enumerate() {
        *o = q[j] | (q[j + 16] << 4);
    }
    Ok(())
}

#[inline(always)]
pub(super) fn q4_0_decode(b: &[u8; 18], out: &mut [f32; QK]) {
    let d = f16_at(b, 0);
    for j in 0..16 {
        let byte = b[2 + j];
        out[j] = d * ((byte & 0x0f) as i32 - 8) as f32;
        out[j + 16] = d * ((byte >> 4) as i32 - 8) as f32;
    }
}

/// `Q4_1`: `d = (max - min) / 15`, `m = min`, `q = min(15, trunc((x - min) / d + 0.5))`.
#[inline(always)]
pub(super) fn q4_1_encode(x: &[f32; QK], out: &mut [u8; 20]) -> Result<(), Fault> {
    check_finite(x)?;
    let (mut lo, mut hi) = (x[0], x[0]);
    for &v in &x[1..] {
        lo = if v < lo { v } else { lo };
        hi = if v > hi { v } else { hi };
    }
    let d = (hi - lo) / 15.0;
    let id = if d == 0.0 { 0.0 } else { 1.0 / d };
    [out[0], out[1]] = f16_bytes(d)?;
    [out[2], out[3]] = f16_bytes(lo)?;
    let mut q = [0u8; QK];
    for (q, &v) in q.iter_mut().zip(x) {
        *q = trunc_clamped((v - lo) * id + 0.5, 0.0, 15.0) as u8;
    }
    for (j, o) in out[4..].iter_mut().enumerate() {
        *o = q[j] | (q[j + 16] << 4);
    }
    Ok(())
}

#[inline(always)]
pub(super) fn q4_1_decode(b: &[u8; 20], out: &mut [f32; QK]) {
    let d = f16_at(b, 0);
    let m = f16_at(b, 2);
    for j in 0..16 {
        let byte = b[4 + j];
        out[j] = d * (byte & 0x0f) as f32 + m;
        out[j + 16] = d * (byte >> 4) as f32 + m;
    }
}

/// `Q5_0`: `d = max / -16` (signed value of largest magnitude),
/// `q = min(31, trunc(x / d + 16.5))`; low nibbles as in `Q4_0`, bit 4 of weight `j` in
/// bit `j` of `qh`.
#[inline(always)]
pub(super) fn q5_0_encode(x: &[f32; QK], out: &mut [u8; 22]) -> Result<(), Fault> {
    let max = signed_abs_max(x)?;
    let d = max / -16.0;
    let id = if d == 0.0 { 0.0 } else { 1.0 / d };
    [out[0], out[1]] = f16_bytes(d)?;
    let mut q = [0u8; QK];
    for (q, &v) in q.iter_mut().zip(x) {
        *q = trunc_clamped(v * id + 16.5, 0.0, 31.0) as u8;
    }
    let mut qh = 0u32;
    for (j, &q) in q.iter().enumerate() {
        qh |= ((q >> 4) as u32) << j;
    }
    out[2..6].copy_from_slice(&qh.to_le_bytes());
    for (j, o) in out[6..].iter_mut().enumerate() {
        *o = (q[j] & 0x0f) | ((q[j + 16] & 0x0f) << 4);
    }
    Ok(())
}

#[inline(always)]
pub(super) fn q5_0_decode(b: &[u8; 22], out: &mut [f32; QK]) {
    let d = f16_at(b, 0);
    let qh = u32::from_le_bytes([b[2], b[3], b[4], b[5]]);
    for j in 0..16 {
        let byte = b[6 + j];
        let lo = (byte & 0x0f) as u32 | (((qh >> j) & 1) << 4);
        let hi = (byte >> 4) as u32 | (((qh >> (j + 16)) & 1) << 4);
        out[j] = d * (lo as i32 - 16) as f32;
        out[j + 16] = d * (hi as i32 - 16) as f32;
    }
}

/// `Q8_0`: `d = amax / 127`, `q = round(x / d)` half away from zero (computed as
/// `x * (1 / d)`).
#[inline(always)]
pub(super) fn q8_0_encode(x: &[f32; QK], out: &mut [u8; 34]) -> Result<(), Fault> {
    let m = abs_max_bits(x);
    if m >= EXP_MASK {
        return Err(non_finite(x));
    }
    let d = f32::from_bits(m) / 127.0;
    let id = if d == 0.0 { 0.0 } else { 1.0 / d };
    [out[0], out[1]] = f16_bytes(d)?;
    for (o, &v) in out[2..].iter_mut().zip(x) {
        *o = round_away(v * id, 127.0) as i8 as u8;
    }
    Ok(())
}

#[inline(always)]
pub(super) fn q8_0_decode(b: &[u8; 34], out: &mut [f32; QK]) {
    let d = f16_at(b, 0);
    for (o, &q) in out.iter_mut().zip(&b[2..]) {
        *o = (q as i8) as f32 * d;
    }
}
