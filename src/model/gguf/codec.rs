//! Rows and matrices: the encode/decode entry points, the per-type dispatch, the float
//! types and the rounding helpers the block encoders share.

use half::f16;
use rayon::prelude::*;

use super::kquants::{q4_k_decode, q4_k_encode, q6_k_decode, q6_k_encode};
use super::legacy::{
    q4_0_decode, q4_0_encode, q4_1_decode, q4_1_encode, q5_0_decode, q5_0_encode, q8_0_decode,
    q8_0_encode,
};
use super::types::GgmlType;
use super::{QK, QK_K};
use crate::error::{Error, Result};
use crate::kernels::gguf::RowEncoder;
pub(super) use crate::kernels::gguf::trunc_clamped;

// ---------------------------------------------------------------------------------------
// Row and tensor entry points
// ---------------------------------------------------------------------------------------

/// Why one row could not be encoded; `col` is the column of the offending weight (or the
/// first column of the offending block).
#[derive(Clone, Copy, Debug)]
pub(crate) enum Fault {
    /// A NaN or infinite weight.
    NonFinite { col: usize, value: f32 },
    /// A block whose `f16` scale would overflow.
    Overflow { col: usize },
}

impl Fault {
    pub(super) fn shift(self, by: usize) -> Fault {
        match self {
            Fault::NonFinite { col, value } => Fault::NonFinite {
                col: col + by,
                value,
            },
            Fault::Overflow { col } => Fault::Overflow { col: col + by },
        }
    }

    fn into_error(self, ty: GgmlType, row: usize) -> Error {
        match self {
            Fault::NonFinite { col, value } => Error::NonFinite {
                context: format!("{} quantization", ty.name()),
                row,
                col,
                value,
            },
            Fault::Overflow { col } => Error::param(
                "data",
                format!(
                    "row {row}, block starting at column {col}: values too large for the f16 \
                     scale of {}",
                    ty.name()
                ),
            ),
        }
    }
}

/// Encodes one row `x` (a multiple of the block size long) into `out`, which must hold
/// exactly [`GgmlType::row_bytes`]`(x.len())` bytes.
///
/// # Errors
/// [`Error::InvalidParameter`] if `x.len()` is not a multiple of the block size or a
/// block's scale overflows `f16`; [`Error::DimensionMismatch`] if `out` has the wrong
/// length; [`Error::NonFinite`] for a NaN or infinite weight.
pub fn quantize_row(ty: GgmlType, x: &[f32], out: &mut [u8]) -> Result<()> {
    let need = ty.row_bytes(x.len())?;
    if out.len() != need {
        return Err(Error::dim(
            format!("{} quantize_row output bytes", ty.name()),
            need,
            out.len(),
        ));
    }
    encode_row(ty, x, out).map_err(|f| f.into_error(ty, 0))
}

/// Decodes one row: `out.len()` weights (a multiple of the block size) from `data`, which
/// must hold exactly [`GgmlType::row_bytes`]`(out.len())` bytes.
///
/// # Errors
/// [`Error::InvalidParameter`] if `out.len()` is not a multiple of the block size;
/// [`Error::DimensionMismatch`] if `data` has the wrong length.
pub fn dequantize_row(ty: GgmlType, data: &[u8], out: &mut [f32]) -> Result<()> {
    let need = ty.row_bytes(out.len())?;
    if data.len() != need {
        return Err(Error::dim(
            format!("{} dequantize_row input bytes", ty.name()),
            need,
            data.len(),
        ));
    }
    decode_row(ty, data, out);
    Ok(())
}

fn checked_len(rows: usize, cols: usize, what: &str) -> Result<usize> {
    rows.checked_mul(cols)
        .ok_or_else(|| Error::param(what, format!("{rows} × {cols} overflows usize")))
}

/// Encodes a row-major `rows × cols` matrix, rows in parallel. Returns
/// `rows * row_bytes(cols)` bytes.
///
/// # Errors
/// [`Error::InvalidParameter`] if `cols` is not a multiple of the block size, the sizes
/// overflow, or a block's scale overflows `f16` (naming the row and column);
/// [`Error::DimensionMismatch`] if `data` is not `rows × cols` long;
/// [`Error::NonFinite`] for a NaN or infinite weight (naming its row and column).
pub fn quantize(ty: GgmlType, rows: usize, cols: usize, data: &[f32]) -> Result<Vec<u8>> {
    let rb = ty.row_bytes(cols)?;
    let n = checked_len(rows, cols, "rows")?;
    if data.len() != n {
        return Err(Error::dim(
            format!("{} quantize: {rows} × {cols} input", ty.name()),
            n,
            data.len(),
        ));
    }
    let mut out = vec![0u8; checked_len(rows, rb, "rows")?];
    if rb == 0 || rows == 0 {
        return Ok(out);
    }
    out.par_chunks_mut(rb)
        .zip(data.par_chunks(cols))
        .enumerate()
        .try_for_each(|(r, (o, x))| encode_row(ty, x, o).map_err(|f| f.into_error(ty, r)))?;
    Ok(out)
}

/// Decodes `rows` rows of `cols` weights from `bytes` (`rows * row_bytes(cols)` bytes),
/// rows in parallel.
///
/// # Errors
/// [`Error::InvalidParameter`] if `cols` is not a multiple of the block size or the sizes
/// overflow; [`Error::DimensionMismatch`] if `bytes` has the wrong length.
pub fn dequantize(ty: GgmlType, rows: usize, cols: usize, bytes: &[u8]) -> Result<Vec<f32>> {
    let rb = ty.row_bytes(cols)?;
    let nb = checked_len(rows, rb, "rows")?;
    if bytes.len() != nb {
        return Err(Error::dim(
            format!(
                "{} dequantize: {rows} rows of {cols} weights, bytes",
                ty.name()
            ),
            nb,
            bytes.len(),
        ));
    }
    let mut out = vec![0f32; checked_len(rows, cols, "rows")?];
    if rb == 0 || rows == 0 {
        return Ok(out);
    }
    out.par_chunks_mut(cols)
        .zip(bytes.par_chunks(rb))
        .for_each(|(o, b)| decode_row(ty, b, o));
    Ok(out)
}

/// Runs a block encoder over a row. A macro rather than a generic taking the encoder as
/// a function value: calls through `Fn` shims are not inlined into the AVX2 variant, and
/// the encoders must be, to be compiled with its instruction set.
macro_rules! encode_blocks {
    ($x:expr, $out:expr, $encode:ident, $b:expr, $s:expr) => {{
        let xs = $x.as_chunks::<{ $b }>().0;
        let os = $out.as_chunks_mut::<{ $s }>().0;
        for (i, (xb, ob)) in xs.iter().zip(os).enumerate() {
            $encode(xb, ob).map_err(|e| e.shift(i * $b))?;
        }
        Ok(())
    }};
}

/// Runs a block decoder over a row.
macro_rules! decode_blocks {
    ($data:expr, $out:expr, $decode:ident, $b:expr, $s:expr) => {{
        let bs = $data.as_chunks::<{ $s }>().0;
        let os = $out.as_chunks_mut::<{ $b }>().0;
        for (b, o) in bs.iter().zip(os) {
            $decode(b, o);
        }
    }};
}

/// Encodes a row whose lengths have been checked, with the widest compilation of
/// [`encode_row_portable`] the CPU runs (see [`crate::kernels::gguf`]: every variant
/// writes the same bytes, and a test pins them together).
fn encode_row(ty: GgmlType, x: &[f32], out: &mut [u8]) -> Result<(), Fault> {
    crate::kernels::gguf::encode_row(ty, x, out)
}

impl RowEncoder for GgmlType {
    type Fault = Fault;
    #[inline(always)]
    fn encode(self, x: &[f32], out: &mut [u8]) -> Result<(), Fault> {
        encode_row_portable(self, x, out)
    }
}

/// [`encode_row`] in portable code.
#[inline(always)]
fn encode_row_portable(ty: GgmlType, x: &[f32], out: &mut [u8]) -> Result<(), Fault> {
    match ty {
        GgmlType::F32 => encode_f32(x, out),
        GgmlType::F16 => encode_f16(x, out),
        GgmlType::BF16 => encode_bf16(x, out),
        GgmlType::Q4_0 => encode_blocks!(x, out, q4_0_encode, QK, 18),
        GgmlType::Q4_1 => encode_blocks!(x, out, q4_1_encode, QK, 20),
        GgmlType::Q5_0 => encode_blocks!(x, out, q5_0_encode, QK, 22),
        GgmlType::Q8_0 => encode_blocks!(x, out, q8_0_encode, QK, 34),
        GgmlType::Q4_K => encode_blocks!(x, out, q4_k_encode, QK_K, 144),
        GgmlType::Q6_K => encode_blocks!(x, out, q6_k_encode, QK_K, 210),
        GgmlType::I8 => encode_plain::<1>(x, out, |v| (v as i8).to_le_bytes()),
        GgmlType::I16 => encode_plain::<2>(x, out, |v| (v as i16).to_le_bytes()),
        GgmlType::I32 => encode_plain::<4>(x, out, |v| (v as i32).to_le_bytes()),
        GgmlType::I64 => encode_plain::<8>(x, out, |v| (v as i64).to_le_bytes()),
        GgmlType::F64 => encode_plain::<8>(x, out, |v| (v as f64).to_le_bytes()),
    }
}

/// Integer and f64 element types: a saturating conversion per value.
#[inline(always)]
fn encode_plain<const N: usize>(
    x: &[f32],
    out: &mut [u8],
    f: impl Fn(f32) -> [u8; N],
) -> Result<(), Fault> {
    for (o, &v) in out.as_chunks_mut::<N>().0.iter_mut().zip(x) {
        *o = f(v);
    }
    Ok(())
}

/// Decodes a row whose lengths have been checked.
fn decode_row(ty: GgmlType, data: &[u8], out: &mut [f32]) {
    match ty {
        GgmlType::F32 => {
            for (o, b) in out.iter_mut().zip(data.as_chunks::<4>().0) {
                *o = f32::from_le_bytes(*b);
            }
        }
        GgmlType::F16 => {
            for (o, b) in out.iter_mut().zip(data.as_chunks::<2>().0) {
                *o = f16::from_le_bytes(*b).to_f32();
            }
        }
        GgmlType::BF16 => {
            for (o, b) in out.iter_mut().zip(data.as_chunks::<2>().0) {
                *o = f32::from_bits((u16::from_le_bytes(*b) as u32) << 16);
            }
        }
        GgmlType::Q4_0 => decode_blocks!(data, out, q4_0_decode, QK, 18),
        GgmlType::Q4_1 => decode_blocks!(data, out, q4_1_decode, QK, 20),
        GgmlType::Q5_0 => decode_blocks!(data, out, q5_0_decode, QK, 22),
        GgmlType::Q8_0 => decode_blocks!(data, out, q8_0_decode, QK, 34),
        GgmlType::Q4_K => decode_blocks!(data, out, q4_k_decode, QK_K, 144),
        GgmlType::Q6_K => decode_blocks!(data, out, q6_k_decode, QK_K, 210),
        GgmlType::I8 => decode_plain::<1>(data, out, |b| i8::from_le_bytes(b) as f32),
        GgmlType::I16 => decode_plain::<2>(data, out, |b| i16::from_le_bytes(b) as f32),
        GgmlType::I32 => decode_plain::<4>(data, out, |b| i32::from_le_bytes(b) as f32),
        GgmlType::I64 => decode_plain::<8>(data, out, |b| i64::from_le_bytes(b) as f32),
        GgmlType::F64 => decode_plain::<8>(data, out, |b| f64::from_le_bytes(b) as f32),
    }
}

fn decode_plain<const N: usize>(data: &[u8], out: &mut [f32], f: impl Fn([u8; N]) -> f32) {
    for (o, b) in out.iter_mut().zip(data.as_chunks::<N>().0) {
        *o = f(*b);
    }
}

// ---------------------------------------------------------------------------------------
// Shared helpers
// ---------------------------------------------------------------------------------------

const ABS_MASK: u32 = 0x7fff_ffff;
pub(super) const EXP_MASK: u32 = 0x7f80_0000;

/// The largest `|x|` as bit pattern. For non-negative floats the bit patterns order like
/// the values, and NaN / ±inf compare above every finite value, so one integer max
/// reduction (which vectorises) gives both the maximum and the finiteness check.
#[inline(always)]
pub(super) fn abs_max_bits(x: &[f32]) -> u32 {
    x.iter().fold(0u32, |m, v| m.max(v.to_bits() & ABS_MASK))
}

#[cold]
pub(super) fn non_finite(x: &[f32]) -> Fault {
    match x.iter().enumerate().find(|(_, v)| !v.is_finite()) {
        Some((col, &value)) => Fault::NonFinite { col, value },
        None => Fault::NonFinite {
            col: 0,
            value: f32::NAN,
        },
    }
}

/// `Err` unless every value is finite.
#[inline(always)]
pub(super) fn check_finite(x: &[f32]) -> Result<(), Fault> {
    if abs_max_bits(x) >= EXP_MASK {
        Err(non_finite(x))
    } else {
        Ok(())
    }
}

/// The value of largest magnitude, the first one on ties (as ggml's reference loop and
/// NumPy's `argmax` pick it), after checking that all values are finite.
#[inline(always)]
pub(super) fn signed_abs_max(x: &[f32]) -> Result<f32, Fault> {
    let m = abs_max_bits(x);
    if m >= EXP_MASK {
        return Err(non_finite(x));
    }
    Ok(x.iter()
        .copied()
        .find(|v| v.to_bits() & ABS_MASK == m)
        .unwrap_or(0.0))
}

/// `v` as little-endian `f16` bytes (round to nearest even); `Err` if it overflows.
#[inline(always)]
pub(super) fn f16_bytes(v: f32) -> Result<[u8; 2], Fault> {
    let h = f16::from_f32(v);
    if h.is_infinite() || h.is_nan() {
        Err(Fault::Overflow { col: 0 })
    } else {
        Ok(h.to_le_bytes())
    }
}

#[inline(always)]
pub(super) fn f16_at(b: &[u8], at: usize) -> f32 {
    f16::from_le_bytes([b[at], b[at + 1]]).to_f32()
}

/// Rounds half away from zero (C's `roundf`, NumPy's `np_roundf` in `gguf.quants`),
/// saturating at `±lim` (a small whole number): `t = trunc(|v|)`, `t + (|v| - t >= 0.5)`,
/// then the sign. `|v| - t` is exact, and every step vectorises without SSE4.1.
#[inline(always)]
pub(super) fn round_away(v: f32, lim: f32) -> i32 {
    let a = v.abs();
    let t = trunc_clamped(a, 0.0, lim);
    let r = t + ((a.min(lim) - t as f32) >= 0.5) as i32;
    if v < 0.0 { -r } else { r }
}

/// Round to nearest (ties to even) for `|v| < 2^22` by the `1.5 · 2^23` trick: pure
/// `f32` adds, so it vectorises. Used only by our own k-quant searches.
#[inline(always)]
pub(super) fn round_nearest(v: f32) -> f32 {
    const MAGIC: f32 = 12_582_912.0;
    (v + MAGIC) - MAGIC
}

// ---------------------------------------------------------------------------------------
// Float types
// ---------------------------------------------------------------------------------------

#[inline(always)]
fn encode_f32(x: &[f32], out: &mut [u8]) -> Result<(), Fault> {
    check_finite(x)?;
    for (o, v) in out.as_chunks_mut::<4>().0.iter_mut().zip(x) {
        *o = v.to_le_bytes();
    }
    Ok(())
}

#[inline(always)]
fn encode_f16(x: &[f32], out: &mut [u8]) -> Result<(), Fault> {
    check_finite(x)?;
    for (i, (o, &v)) in out.as_chunks_mut::<2>().0.iter_mut().zip(x).enumerate() {
        *o = f16_bytes(v).map_err(|f| f.shift(i))?;
    }
    Ok(())
}

/// ggml's `fp32 -> bf16`: round to nearest even on the bit pattern.
#[inline(always)]
fn encode_bf16(x: &[f32], out: &mut [u8]) -> Result<(), Fault> {
    check_finite(x)?;
    for (i, (o, &v)) in out.as_chunks_mut::<2>().0.iter_mut().zip(x).enumerate() {
        let n = v.to_bits();
        let h = ((n + (0x7fff + ((n >> 16) & 1))) >> 16) as u16;
        if h & 0x7fff == 0x7f80 {
            return Err(Fault::Overflow { col: i });
        }
        *o = h.to_le_bytes();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gaussian_rows(rows: usize, cols: usize, seed: u64) -> Vec<f32> {
        crate::data::generate::gaussian(rows, cols, 0.0, 1.0, seed)
            .unwrap()
            .into_vec()
    }

    fn rel_rms(a: &[f32], b: &[f32]) -> f64 {
        let num: f64 = a.iter().zip(b).map(|(x, y)| ((x - y) as f64).powi(2)).sum();
        let den: f64 = a.iter().map(|x| (*x as f64).powi(2)).sum();
        (num / den).sqrt()
    }

    #[test]
    fn error_per_type_on_gaussian_rows() {
        let (rows, cols) = (8, 4096);
        let x = gaussian_rows(rows, cols, 7);
        // Thresholds a little above the measured errors (printed with --nocapture).
        let limits = [
            (GgmlType::F32, 0.0),
            (GgmlType::F16, 2.5e-4),  // measured 0.00021
            (GgmlType::BF16, 2.0e-3), // 0.00165
            (GgmlType::Q8_0, 0.006),  // 0.00536
            (GgmlType::Q6_K, 0.019),  // 0.01758
            (GgmlType::Q5_0, 0.046),  // 0.04300
            (GgmlType::Q4_1, 0.082),  // 0.07791
            (GgmlType::Q4_K, 0.075),  // 0.07169
            (GgmlType::Q4_0, 0.090),  // 0.08592
        ];
        for (ty, limit) in limits {
            let q = quantize(ty, rows, cols, &x).unwrap();
            assert_eq!(q.len(), rows * ty.row_bytes(cols).unwrap());
            let y = dequantize(ty, rows, cols, &q).unwrap();
            let e = rel_rms(&x, &y);
            println!("{ty}: relative RMS error {e:.5}");
            assert!(e <= limit, "{ty}: relative RMS error {e} > {limit}");
            // Row functions agree with the parallel ones.
            let mut row = vec![0u8; ty.row_bytes(cols).unwrap()];
            quantize_row(ty, &x[cols..2 * cols], &mut row).unwrap();
            assert_eq!(row, q[row.len()..2 * row.len()]);
            let mut back = vec![0f32; cols];
            dequantize_row(ty, &row, &mut back).unwrap();
            assert_eq!(back, y[cols..2 * cols]);
        }
    }

    #[test]
    fn special_rows_k_quants() {
        let cols = 512;
        let mut rows: Vec<Vec<f32>> = vec![
            vec![0.0; cols],
            vec![1.5; cols],
            vec![-2.25; cols],
            (0..cols)
                .map(|i| {
                    if i == 77 {
                        1000.0
                    } else {
                        0.01 * (i as f32).sin()
                    }
                })
                .collect(),
            (0..cols).map(|i| i as f32 * 1e-3 + 5.0).collect(),
            (0..cols).map(|i| -(i as f32)).collect(),
        ];
        rows.push(
            (0..cols)
                .map(|i| if i % 2 == 0 { 1e-30 } else { -1e-30 })
                .collect(),
        );
        for ty in [GgmlType::Q4_K, GgmlType::Q6_K] {
            for x in &rows {
                let q = quantize(ty, 1, cols, x).unwrap();
                let y = dequantize(ty, 1, cols, &q).unwrap();
                assert!(y.iter().all(|v| v.is_finite()), "{ty}");
                let amax = x.iter().fold(0f32, |a, v| a.max(v.abs()));
                let err = x
                    .iter()
                    .zip(&y)
                    .fold(0f32, |a, (u, v)| a.max((u - v).abs()));
                assert!(
                    err <= 0.1 * amax + 1e-6,
                    "{ty}: max error {err} for amax {amax}"
                );
            }
        }
        // Constant rows are exact enough to keep their sign and rough value.
        let y = dequantize(
            GgmlType::Q4_K,
            1,
            cols,
            &quantize(GgmlType::Q4_K, 1, cols, &rows[2]).unwrap(),
        )
        .unwrap();
        assert!(y.iter().all(|v| (v + 2.25).abs() < 0.01), "{:?}", &y[..4]);
    }

    #[test]
    fn non_finite_and_overflow_are_errors() {
        let cols = 256;
        for ty in GgmlType::ALL {
            let mut x = vec![0.5f32; 3 * cols];
            x[2 * cols + 40] = f32::NAN;
            match quantize(ty, 3, cols, &x) {
                Err(Error::NonFinite { row, col, .. }) => {
                    assert_eq!((row, col), (2, 40), "{ty}");
                }
                other => panic!("{ty}: {other:?}"),
            }
            x[2 * cols + 40] = f32::INFINITY;
            assert!(matches!(
                quantize_row(
                    ty,
                    &x[2 * cols..],
                    &mut vec![0; ty.row_bytes(cols).unwrap()]
                ),
                Err(Error::NonFinite { col: 40, .. })
            ));
            if ty != GgmlType::F32 {
                x[2 * cols + 40] = 3.4e38;
                let e = quantize(ty, 3, cols, &x).unwrap_err();
                assert!(e.to_string().contains("row 2"), "{ty}: {e}");
            }
        }
    }

    #[test]
    fn length_errors() {
        let x = vec![0f32; 64];
        assert!(quantize(GgmlType::Q4_0, 2, 32, &x[..63]).is_err());
        assert!(quantize(GgmlType::Q4_K, 1, 64, &x).is_err());
        assert!(quantize_row(GgmlType::Q8_0, &x, &mut [0u8; 67]).is_err());
        assert!(dequantize_row(GgmlType::Q8_0, &[0u8; 67], &mut [0f32; 64]).is_err());
        assert!(dequantize(GgmlType::Q8_0, 2, 32, &[0u8; 67]).is_err());
        assert!(quantize(GgmlType::Q8_0, usize::MAX, 32, &x).is_err());
        assert_eq!(
            quantize(GgmlType::Q8_0, 0, 32, &[]).unwrap(),
            Vec::<u8>::new()
        );
        assert_eq!(
            dequantize(GgmlType::Q8_0, 3, 0, &[]).unwrap(),
            Vec::<f32>::new()
        );
    }

    #[test]
    fn every_simd_variant_encodes_the_same_bytes() {
        let (rows, cols) = (6, 1024);
        let mut x = gaussian_rows(rows, cols, 21);
        x[5] = 40.0;
        x[cols + 7] = -1e-7;
        for v in &mut x[2 * cols..3 * cols] {
            *v *= 1e-3;
        }
        for ty in GgmlType::ALL {
            let rb = ty.row_bytes(cols).unwrap();
            let dispatched = quantize(ty, rows, cols, &x).unwrap();
            let mut portable = vec![0u8; rows * rb];
            for (o, r) in portable.chunks_mut(rb).zip(x.chunks(cols)) {
                crate::kernels::gguf::encode_row_scalar(ty, r, o).unwrap();
            }
            assert!(
                dispatched == portable,
                "{ty}: dispatched and portable bytes differ"
            );
            #[cfg(target_arch = "x86_64")]
            if is_x86_feature_detected!("avx2") {
                let mut avx2 = vec![0u8; rows * rb];
                for (o, r) in avx2.chunks_mut(rb).zip(x.chunks(cols)) {
                    crate::kernels::gguf::encode_row_avx2(ty, r, o)
                        .expect("AVX2 detected")
                        .unwrap();
                }
                assert!(avx2 == portable, "{ty}: AVX2 and portable bytes differ");
            }
        }
    }

    #[test]
    fn round_away_matches_roundf() {
        for v in [
            0.0f32, 0.5, -0.5, 1.5, 2.5, -2.5, 0.49999997, 126.5, -127.49, 3.4999998,
        ] {
            assert_eq!(round_away(v, 127.0), v.round() as i32, "{v}");
        }
    }
}
