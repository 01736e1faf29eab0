//! GGUF (llama.cpp) quantized tensor blocks and the GGUF v3 file format.
//!
//! # Block types
//!
//! ggml stores a tensor row by row; a row of `cols` weights is cut into blocks of
//! [`GgmlType::block_size`] weights, each encoded in [`GgmlType::type_size`] bytes. All
//! multi-byte fields are little-endian; `f16` is IEEE binary16. The layouts (byte offset:
//! field) and the decoded value of weight `i` are:
//!
//! | type | weights | bytes | layout | weight `i` |
//! | --- | --- | --- | --- | --- |
//! | `F32` | 1 | 4 | `f32` | as stored |
//! | `F16` | 1 | 2 | `f16` | as stored |
//! | `BF16` | 1 | 2 | top 16 bits of an `f32` | `f32::from_bits(b << 16)` |
//! | `Q4_0` | 32 | 18 | `0: d f16`, `2: qs[16]` | `d * (q_i - 8)` |
//! | `Q4_1` | 32 | 20 | `0: d f16`, `2: m f16`, `4: qs[16]` | `d * q_i + m` |
//! | `Q5_0` | 32 | 22 | `0: d f16`, `2: qh u32`, `6: qs[16]` | `d * (q_i - 16)` |
//! | `Q8_0` | 32 | 34 | `0: d f16`, `2: qs[32] i8` | `d * qs[i]` |
//! | `Q4_K` | 256 | 144 | `0: d f16`, `2: dmin f16`, `4: scales[12]`, `16: qs[128]` | see below |
//! | `Q6_K` | 256 | 210 | `0: ql[128]`, `128: qh[64]`, `192: scales[16] i8`, `208: d f16` | see below |
//!
//! In the 32-weight types the 4-bit codes are split in halves: byte `qs[j]` holds weight
//! `j` in its low nibble and weight `j + 16` in its high nibble. `Q5_0` keeps the fifth
//! bit of weight `j` in bit `j` of `qh`.
//!
//! **`Q4_K`**: eight sub-blocks of 32 weights, each with a 6-bit scale `sc_j` and a 6-bit
//! min `m_j`; weight `l` of sub-block `j` is `(d * sc_j) * q - (dmin * m_j)` with a 4-bit
//! `q`. Sub-blocks `2p` and `2p + 1` share `qs[32p .. 32p + 32]`: the low nibbles belong to
//! `2p`, the high nibbles to `2p + 1`. The twelve scale bytes pack sixteen 6-bit numbers:
//! for `j < 4`, `sc_j = scales[j] & 63` and `m_j = scales[j + 4] & 63`; `sc_{j+4}` takes
//! its low four bits from `scales[j + 8] & 15` and its top two from `scales[j] >> 6`;
//! `m_{j+4}` takes `scales[j + 8] >> 4` and `scales[j + 4] >> 6`.
//!
//! **`Q6_K`**: sixteen sub-blocks of 16 weights, each with an `i8` scale; weight `i` is
//! `(d * scales[i / 16]) * (q_i - 32)` with a 6-bit `q_i`. The block is two halves of 128
//! weights; in half `h`, for `l < 32`, the low four bits of weights `l`, `l + 32`, `l + 64`
//! and `l + 96` are the low nibble of `ql[64h + l]`, the low nibble of `ql[64h + l + 32]`,
//! the high nibble of `ql[64h + l]` and the high nibble of `ql[64h + l + 32]`; their top
//! two bits are bits 0–1, 2–3, 4–5 and 6–7 of `qh[32h + l]`.
//!
//! # Encoders
//!
//! `Q4_0`, `Q4_1`, `Q5_0`, `Q8_0`, `F16` and `BF16` reproduce, bit for bit, the reference
//! quantizers of ggml as implemented by llama.cpp's Python package `gguf`
//! (`gguf.quants.quantize`): same scale (`max / -8`, `(max - min) / 15`, `max / -16`,
//! `amax / 127`), same `f32` arithmetic, same rounding. `Q4_K` and `Q6_K` use our own
//! encoders in the spirit of llama.cpp's `make_qkx2_quants` (a weighted least-squares fit
//! of scale and min per sub-block over a small grid of trial scales) and `make_qx_quants`
//! (a grid search of the symmetric scale maximising the explained energy); their bytes are
//! not llama.cpp's, but the layout is, so any ggml reader decodes them exactly as
//! [`dequantize_row`] does. The golden tests in `tests/gguf_golden.rs` check all of this
//! against fixtures produced by the `gguf` package (`benches/gguf_golden.py`).
//!
//! Encoders reject NaN and ±inf ([`Error::NonFinite`]) and values too large for the `f16`
//! scale of the block (where ggml would silently store an infinite scale).
//!
//! [`quantize`] and [`dequantize`] run rows in parallel. Encoding goes through an AVX2
//! compilation of the same portable code when the CPU has it (chosen once, honouring
//! `VECQUANT_SIMD`); without FMA and with fixed summation orders, every variant writes the
//! same bytes, so our `Q4_K`/`Q6_K` output is identical on every machine.
//!
//! # Files
//!
//! [`write_gguf`] and [`read_gguf`] handle GGUF version 3 (little-endian):
//!
//! ```text
//! "GGUF" magic, version u32 = 3, tensor count u64, metadata count u64
//! metadata: key (u64 length + UTF-8), value type u32, value
//! tensor infos: name, n_dims u32, n_dims × u64 dims (ggml order: ne[0] = row length),
//!               type id u32, offset u64 (relative to the data section)
//! zero padding to `general.alignment` (32 unless the metadata says otherwise)
//! data section: each tensor at its offset, each padded to the alignment
//! ```
//!
//! [`read_gguf`] checks every count, size and offset against the file length before it
//! allocates or copies anything, so a corrupt or truncated file gives an
//! [`Error::Format`] naming the byte offset or tensor, never a panic or a huge allocation.

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use half::f16;
use rayon::prelude::*;

use crate::error::{Error, Result};
#[cfg(target_arch = "x86_64")]
use crate::kernels::SimdLevel;

/// Weights per block of the 32-weight types.
const QK: usize = 32;
/// Weights per super-block of the k-quants.
const QK_K: usize = 256;

// ---------------------------------------------------------------------------------------
// Types
// ---------------------------------------------------------------------------------------

/// A ggml tensor element type (the subset this module encodes and decodes).
#[allow(non_camel_case_types)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GgmlType {
    /// 32-bit IEEE float.
    F32,
    /// 16-bit IEEE float.
    F16,
    /// bfloat16: the top half of an `f32`.
    BF16,
    /// 32 weights: `f16` scale and 4-bit codes (4.5 bits per weight).
    Q4_0,
    /// 32 weights: `f16` scale, `f16` min and 4-bit codes (5 bits per weight).
    Q4_1,
    /// 32 weights: `f16` scale and 5-bit codes (5.5 bits per weight).
    Q5_0,
    /// 32 weights: `f16` scale and `i8` codes (8.5 bits per weight).
    Q8_0,
    /// 256 weights: eight sub-blocks with 6-bit scales and mins, 4-bit codes (4.5 bits).
    Q4_K,
    /// 256 weights: sixteen sub-blocks with `i8` scales, 6-bit codes (6.5625 bits).
    Q6_K,
    /// 8-bit signed integer (pass-through buffers).
    I8,
    /// 16-bit signed integer.
    I16,
    /// 32-bit signed integer.
    I32,
    /// 64-bit signed integer.
    I64,
    /// 64-bit IEEE float.
    F64,
}

impl GgmlType {
    /// Every supported type.
    pub const ALL: [GgmlType; 9] = [
        GgmlType::F32,
        GgmlType::F16,
        GgmlType::BF16,
        GgmlType::Q4_0,
        GgmlType::Q4_1,
        GgmlType::Q5_0,
        GgmlType::Q8_0,
        GgmlType::Q4_K,
        GgmlType::Q6_K,
    ];

    /// Element types stored only to pass tensors through (integer buffers, f64); they
    /// are not quantization targets.
    pub const PASSTHROUGH: [GgmlType; 5] = [
        GgmlType::I8,
        GgmlType::I16,
        GgmlType::I32,
        GgmlType::I64,
        GgmlType::F64,
    ];

    /// The ggml type id stored in GGUF tensor infos (`enum ggml_type`).
    pub fn id(self) -> u32 {
        match self {
            GgmlType::F32 => 0,
            GgmlType::F16 => 1,
            GgmlType::Q4_0 => 2,
            GgmlType::Q4_1 => 3,
            GgmlType::Q5_0 => 6,
            GgmlType::Q8_0 => 8,
            GgmlType::Q4_K => 12,
            GgmlType::Q6_K => 14,
            GgmlType::BF16 => 30,
            GgmlType::I8 => 24,
            GgmlType::I16 => 25,
            GgmlType::I32 => 26,
            GgmlType::I64 => 27,
            GgmlType::F64 => 28,
        }
    }

    /// The type with ggml id `id`, or `None` for ids this module does not support.
    pub fn from_id(id: u32) -> Option<GgmlType> {
        GgmlType::ALL
            .into_iter()
            .chain(GgmlType::PASSTHROUGH)
            .find(|t| t.id() == id)
    }

    /// ggml's name of the type (`"Q4_K"`, `"F16"`, ...).
    pub fn name(self) -> &'static str {
        match self {
            GgmlType::F32 => "F32",
            GgmlType::F16 => "F16",
            GgmlType::BF16 => "BF16",
            GgmlType::Q4_0 => "Q4_0",
            GgmlType::Q4_1 => "Q4_1",
            GgmlType::Q5_0 => "Q5_0",
            GgmlType::Q8_0 => "Q8_0",
            GgmlType::Q4_K => "Q4_K",
            GgmlType::Q6_K => "Q6_K",
            GgmlType::I8 => "I8",
            GgmlType::I16 => "I16",
            GgmlType::I32 => "I32",
            GgmlType::I64 => "I64",
            GgmlType::F64 => "F64",
        }
    }

    /// The type named `name` (case-insensitive), or `None`.
    pub fn from_name(name: &str) -> Option<GgmlType> {
        GgmlType::ALL
            .into_iter()
            .chain(GgmlType::PASSTHROUGH)
            .find(|t| t.name().eq_ignore_ascii_case(name))
    }

    /// Weights per block: 1 for the float types, 32 or 256 for the quantized ones.
    pub fn block_size(self) -> usize {
        match self {
            GgmlType::F32
            | GgmlType::F16
            | GgmlType::BF16
            | GgmlType::I8
            | GgmlType::I16
            | GgmlType::I32
            | GgmlType::I64
            | GgmlType::F64 => 1,
            GgmlType::Q4_0 | GgmlType::Q4_1 | GgmlType::Q5_0 | GgmlType::Q8_0 => QK,
            GgmlType::Q4_K | GgmlType::Q6_K => QK_K,
        }
    }

    /// Bytes per block.
    pub fn type_size(self) -> usize {
        match self {
            GgmlType::I8 => 1,
            GgmlType::F32 | GgmlType::I32 => 4,
            GgmlType::F16 | GgmlType::BF16 | GgmlType::I16 => 2,
            GgmlType::I64 | GgmlType::F64 => 8,
            GgmlType::Q4_0 => 18,
            GgmlType::Q4_1 => 20,
            GgmlType::Q5_0 => 22,
            GgmlType::Q8_0 => 34,
            GgmlType::Q4_K => 144,
            GgmlType::Q6_K => 210,
        }
    }

    /// Storage cost in bits per weight (`8 * type_size / block_size`).
    pub fn bits_per_weight(self) -> f64 {
        8.0 * self.type_size() as f64 / self.block_size() as f64
    }

    /// Whether the type is a block-quantized one (not a plain float type).
    pub fn is_quantized(self) -> bool {
        self.block_size() > 1
    }

    /// Bytes of a row of `cols` weights; an error unless `cols` is a multiple of the
    /// block size (see [`fallback_type`]).
    pub fn row_bytes(self, cols: usize) -> Result<usize> {
        let bs = self.block_size();
        if !cols.is_multiple_of(bs) {
            return Err(Error::param(
                "cols",
                format!(
                    "a row of {cols} weights cannot be stored as {}: the row length must be a \
                     multiple of its block size {bs} (use fallback_type)",
                    self.name()
                ),
            ));
        }
        (cols / bs).checked_mul(self.type_size()).ok_or_else(|| {
            Error::param(
                "cols",
                format!("{cols} weights per row overflow the byte count"),
            )
        })
    }
}

impl fmt::Display for GgmlType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The type to use for rows of `cols` weights when `ty` is wanted.
///
/// This is llama.cpp's rule (`llama_tensor_get_type` in `src/llama-quant.cpp`): when the
/// row length `ne[0]` is not a multiple of the wanted type's block size, `Q4_K` falls back
/// to `Q5_0` and `Q6_K` to `Q8_0` (block 32); if even the fallback's block does not divide
/// the row, the tensor is stored as `F16`. llama.cpp throws ("Unsupported tensor size")
/// for types without a listed fallback, such as `Q4_0`; here those go to `F16` as well,
/// so the result can always hold the row.
pub fn fallback_type(ty: GgmlType, cols: usize) -> GgmlType {
    if cols.is_multiple_of(ty.block_size()) {
        return ty;
    }
    let fallback = match ty {
        GgmlType::Q4_K => GgmlType::Q5_0,
        GgmlType::Q6_K => GgmlType::Q8_0,
        _ => GgmlType::F16,
    };
    if cols.is_multiple_of(fallback.block_size()) {
        fallback
    } else {
        GgmlType::F16
    }
}

// ---------------------------------------------------------------------------------------
// Row and tensor entry points
// ---------------------------------------------------------------------------------------

/// Why one row could not be encoded; `col` is the column of the offending weight (or the
/// first column of the offending block).
#[derive(Clone, Copy, Debug)]
enum Fault {
    NonFinite { col: usize, value: f32 },
    Overflow { col: usize },
}

impl Fault {
    fn shift(self, by: usize) -> Fault {
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

type EncodeFn = fn(GgmlType, &[f32], &mut [u8]) -> Result<(), Fault>;

/// Encodes a row whose lengths have been checked, with the widest code the CPU runs.
///
/// The AVX2 variant compiles the same portable body with AVX2 enabled (no FMA: Rust never
/// contracts `a * b + c`, and every sum runs in a fixed lane order), so every variant
/// produces the same bytes; a test pins them together.
fn encode_row(ty: GgmlType, x: &[f32], out: &mut [u8]) -> Result<(), Fault> {
    static F: OnceLock<EncodeFn> = OnceLock::new();
    (F.get_or_init(|| match crate::kernels::simd_level() {
        #[cfg(target_arch = "x86_64")]
        level if level >= SimdLevel::Avx2 && is_x86_feature_detected!("avx2") => {
            encode_row_avx2_safe
        }
        _ => encode_row_portable,
    }))(ty, x, out)
}

#[cfg(target_arch = "x86_64")]
fn encode_row_avx2_safe(ty: GgmlType, x: &[f32], out: &mut [u8]) -> Result<(), Fault> {
    #[target_feature(enable = "avx2")]
    unsafe fn avx2(ty: GgmlType, x: &[f32], out: &mut [u8]) -> Result<(), Fault> {
        encode_row_portable(ty, x, out)
    }
    // SAFETY: selected by `encode_row` only after `is_x86_feature_detected!("avx2")`.
    unsafe { avx2(ty, x, out) }
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
const EXP_MASK: u32 = 0x7f80_0000;

/// The largest `|x|` as bit pattern. For non-negative floats the bit patterns order like
/// the values, and NaN / ±inf compare above every finite value, so one integer max
/// reduction (which vectorises) gives both the maximum and the finiteness check.
#[inline(always)]
fn abs_max_bits(x: &[f32]) -> u32 {
    x.iter().fold(0u32, |m, v| m.max(v.to_bits() & ABS_MASK))
}

#[cold]
fn non_finite(x: &[f32]) -> Fault {
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
fn check_finite(x: &[f32]) -> Result<(), Fault> {
    if abs_max_bits(x) >= EXP_MASK {
        Err(non_finite(x))
    } else {
        Ok(())
    }
}

/// The value of largest magnitude, the first one on ties (as ggml's reference loop and
/// NumPy's `argmax` pick it), after checking that all values are finite.
#[inline(always)]
fn signed_abs_max(x: &[f32]) -> Result<f32, Fault> {
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
fn f16_bytes(v: f32) -> Result<[u8; 2], Fault> {
    let h = f16::from_f32(v);
    if h.is_infinite() || h.is_nan() {
        Err(Fault::Overflow { col: 0 })
    } else {
        Ok(h.to_le_bytes())
    }
}

#[inline(always)]
fn f16_at(b: &[u8], at: usize) -> f32 {
    f16::from_le_bytes([b[at], b[at + 1]]).to_f32()
}

/// `trunc(v)` after clamping `v` to `[lo, hi]` (NaN goes to `lo`), for small `lo`, `hi`.
///
/// Clamping first makes the conversion a plain truncating one, which vectorises
/// (`cvttps2dq`); Rust's saturating `as i32` is scalarised on x86-64. For `v ≥ lo ≥ 0`
/// this equals `min(hi, trunc(v))`, the reference quantizers' `trunc` then clip.
#[inline(always)]
fn trunc_clamped(v: f32, lo: f32, hi: f32) -> i32 {
    // `f32::max`/`min` return the non-NaN operand, so `c` is finite and in [lo, hi].
    let c = v.max(lo).min(hi);
    // SAFETY: `c` is finite and within `[lo, hi]`, which the callers keep inside `i32`.
    unsafe { c.to_int_unchecked::<i32>() }
}

/// Rounds half away from zero (C's `roundf`, NumPy's `np_roundf` in `gguf.quants`),
/// saturating at `±lim` (a small whole number): `t = trunc(|v|)`, `t + (|v| - t >= 0.5)`,
/// then the sign. `|v| - t` is exact, and every step vectorises without SSE4.1.
#[inline(always)]
fn round_away(v: f32, lim: f32) -> i32 {
    let a = v.abs();
    let t = trunc_clamped(a, 0.0, lim);
    let r = t + ((a.min(lim) - t as f32) >= 0.5) as i32;
    if v < 0.0 { -r } else { r }
}

/// Round to nearest (ties to even) for `|v| < 2^22` by the `1.5 · 2^23` trick: pure
/// `f32` adds, so it vectorises. Used only by our own k-quant searches.
#[inline(always)]
fn round_nearest(v: f32) -> f32 {
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

// ---------------------------------------------------------------------------------------
// 32-weight blocks (bit-exact with gguf.quants)
// ---------------------------------------------------------------------------------------

/// `Q4_0`: `d = max / -8` where `max` is the signed value of largest magnitude,
/// `q = min(15, trunc(x / d + 8.5))` (computed as `x * (1 / d) + 8.5` in `f32`).
#[inline(always)]
fn q4_0_encode(x: &[f32; QK], out: &mut [u8; 18]) -> Result<(), Fault> {
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
fn q4_0_decode(b: &[u8; 18], out: &mut [f32; QK]) {
    let d = f16_at(b, 0);
    for j in 0..16 {
        let byte = b[2 + j];
        out[j] = d * ((byte & 0x0f) as i32 - 8) as f32;
        out[j + 16] = d * ((byte >> 4) as i32 - 8) as f32;
    }
}

/// `Q4_1`: `d = (max - min) / 15`, `m = min`, `q = min(15, trunc((x - min) / d + 0.5))`.
#[inline(always)]
fn q4_1_encode(x: &[f32; QK], out: &mut [u8; 20]) -> Result<(), Fault> {
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
fn q4_1_decode(b: &[u8; 20], out: &mut [f32; QK]) {
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
fn q5_0_encode(x: &[f32; QK], out: &mut [u8; 22]) -> Result<(), Fault> {
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
fn q5_0_decode(b: &[u8; 22], out: &mut [f32; QK]) {
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
fn q8_0_encode(x: &[f32; QK], out: &mut [u8; 34]) -> Result<(), Fault> {
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
fn q8_0_decode(b: &[u8; 34], out: &mut [f32; QK]) {
    let d = f16_at(b, 0);
    for (o, &q) in out.iter_mut().zip(&b[2..]) {
        *o = (q as i8) as f32 * d;
    }
}

// ---------------------------------------------------------------------------------------
// Q4_K
// ---------------------------------------------------------------------------------------

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
fn q4_k_decode(b: &[u8; 144], out: &mut [f32; QK_K]) {
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
fn q4_k_encode(x: &[f32; QK_K], out: &mut [u8; 144]) -> Result<(), Fault> {
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
fn q6_k_decode(b: &[u8; 210], out: &mut [f32; QK_K]) {
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
fn q6_k_encode(x: &[f32; QK_K], out: &mut [u8; 210]) -> Result<(), Fault> {
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

// ---------------------------------------------------------------------------------------
// GGUF files
// ---------------------------------------------------------------------------------------

/// File magic, the bytes `"GGUF"`.
pub const GGUF_MAGIC: [u8; 4] = *b"GGUF";
/// The format version [`write_gguf`] writes.
pub const GGUF_VERSION: u32 = 3;
/// The data alignment when the metadata has no `general.alignment`.
pub const GGUF_DEFAULT_ALIGNMENT: usize = 32;
/// The metadata key that sets the data alignment (a `u32` power of two).
pub const ALIGNMENT_KEY: &str = "general.alignment";
/// ggml's `GGML_MAX_DIMS`: the most dimensions a tensor may have.
pub const MAX_DIMS: usize = 4;
/// ggml's `GGML_MAX_NAME` minus the terminating NUL: the longest tensor name (bytes)
/// llama.cpp accepts.
pub const MAX_TENSOR_NAME: usize = 63;

/// The type tag of a metadata value (`enum gguf_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GgufValueType {
    /// `u8` (tag 0).
    U8,
    /// `i8` (tag 1).
    I8,
    /// `u16` (tag 2).
    U16,
    /// `i16` (tag 3).
    I16,
    /// `u32` (tag 4).
    U32,
    /// `i32` (tag 5).
    I32,
    /// `f32` (tag 6).
    F32,
    /// `bool`, one byte 0 or 1 (tag 7).
    Bool,
    /// UTF-8 string: `u64` length then bytes (tag 8).
    String,
    /// Array: element tag `u32`, count `u64`, elements (tag 9).
    Array,
    /// `u64` (tag 10).
    U64,
    /// `i64` (tag 11).
    I64,
    /// `f64` (tag 12).
    F64,
}

impl GgufValueType {
    /// The tag stored in the file.
    pub fn id(self) -> u32 {
        match self {
            GgufValueType::U8 => 0,
            GgufValueType::I8 => 1,
            GgufValueType::U16 => 2,
            GgufValueType::I16 => 3,
            GgufValueType::U32 => 4,
            GgufValueType::I32 => 5,
            GgufValueType::F32 => 6,
            GgufValueType::Bool => 7,
            GgufValueType::String => 8,
            GgufValueType::Array => 9,
            GgufValueType::U64 => 10,
            GgufValueType::I64 => 11,
            GgufValueType::F64 => 12,
        }
    }

    /// The type with tag `id`.
    pub fn from_id(id: u32) -> Option<GgufValueType> {
        Some(match id {
            0 => GgufValueType::U8,
            1 => GgufValueType::I8,
            2 => GgufValueType::U16,
            3 => GgufValueType::I16,
            4 => GgufValueType::U32,
            5 => GgufValueType::I32,
            6 => GgufValueType::F32,
            7 => GgufValueType::Bool,
            8 => GgufValueType::String,
            9 => GgufValueType::Array,
            10 => GgufValueType::U64,
            11 => GgufValueType::I64,
            12 => GgufValueType::F64,
            _ => return None,
        })
    }

    /// The fewest bytes one value of this type occupies in a file.
    fn min_size(self) -> usize {
        match self {
            GgufValueType::U8 | GgufValueType::I8 | GgufValueType::Bool => 1,
            GgufValueType::U16 | GgufValueType::I16 => 2,
            GgufValueType::U32 | GgufValueType::I32 | GgufValueType::F32 => 4,
            GgufValueType::U64 | GgufValueType::I64 | GgufValueType::F64 => 8,
            GgufValueType::String => 8,
            GgufValueType::Array => 12,
        }
    }
}

/// A metadata value.
#[derive(Clone, Debug, PartialEq)]
pub enum GgufValue {
    /// `u8`.
    U8(u8),
    /// `i8`.
    I8(i8),
    /// `u16`.
    U16(u16),
    /// `i16`.
    I16(i16),
    /// `u32`.
    U32(u32),
    /// `i32`.
    I32(i32),
    /// `u64`.
    U64(u64),
    /// `i64`.
    I64(i64),
    /// `f32`.
    F32(f32),
    /// `f64`.
    F64(f64),
    /// `bool`.
    Bool(bool),
    /// UTF-8 string.
    String(String),
    /// A homogeneous array: the element type and the elements, each of that type. Arrays
    /// of arrays are not supported (ggml rejects them too).
    Array(GgufValueType, Vec<GgufValue>),
}

impl GgufValue {
    /// The value's type tag.
    pub fn value_type(&self) -> GgufValueType {
        match self {
            GgufValue::U8(_) => GgufValueType::U8,
            GgufValue::I8(_) => GgufValueType::I8,
            GgufValue::U16(_) => GgufValueType::U16,
            GgufValue::I16(_) => GgufValueType::I16,
            GgufValue::U32(_) => GgufValueType::U32,
            GgufValue::I32(_) => GgufValueType::I32,
            GgufValue::U64(_) => GgufValueType::U64,
            GgufValue::I64(_) => GgufValueType::I64,
            GgufValue::F32(_) => GgufValueType::F32,
            GgufValue::F64(_) => GgufValueType::F64,
            GgufValue::Bool(_) => GgufValueType::Bool,
            GgufValue::String(_) => GgufValueType::String,
            GgufValue::Array(..) => GgufValueType::Array,
        }
    }

    /// The string, if this is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            GgufValue::String(s) => Some(s),
            _ => None,
        }
    }

    /// The value as `u64`, if it is a non-negative integer.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            GgufValue::U8(v) => Some(v.into()),
            GgufValue::U16(v) => Some(v.into()),
            GgufValue::U32(v) => Some(v.into()),
            GgufValue::U64(v) => Some(v),
            GgufValue::I8(v) => u64::try_from(v).ok(),
            GgufValue::I16(v) => u64::try_from(v).ok(),
            GgufValue::I32(v) => u64::try_from(v).ok(),
            GgufValue::I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }
}

impl From<&str> for GgufValue {
    fn from(s: &str) -> Self {
        GgufValue::String(s.to_string())
    }
}

impl From<String> for GgufValue {
    fn from(s: String) -> Self {
        GgufValue::String(s)
    }
}

/// One tensor of a GGUF file: name, shape, element type and encoded bytes.
#[derive(Clone, Debug, PartialEq)]
pub struct GgufTensor {
    /// Tensor name (at most [`MAX_TENSOR_NAME`] bytes for llama.cpp).
    pub name: String,
    /// Row-major shape, outermost dimension first (NumPy order): a matrix is
    /// `[rows, cols]`, a bias vector `[len]`. The last entry is the row length, ggml's
    /// `ne[0]`; the file stores the dimensions reversed.
    pub shape: Vec<usize>,
    /// Element type.
    pub ty: GgmlType,
    /// Encoded rows, `rows() * ty.row_bytes(cols())` bytes.
    pub data: Vec<u8>,
}

impl GgufTensor {
    /// A tensor from already-encoded bytes, checking that the shape and byte count agree
    /// with the type.
    pub fn new(
        name: impl Into<String>,
        shape: Vec<usize>,
        ty: GgmlType,
        data: Vec<u8>,
    ) -> Result<GgufTensor> {
        let t = GgufTensor {
            name: name.into(),
            shape,
            ty,
            data,
        };
        let need = t.expected_bytes()?;
        if t.data.len() != need {
            return Err(Error::dim(
                format!("tensor `{}` ({} {:?}) bytes", t.name, t.ty, t.shape),
                need,
                t.data.len(),
            ));
        }
        Ok(t)
    }

    /// Encodes `values` (row-major, `shape` product long) as `ty`.
    pub fn quantize(
        name: impl Into<String>,
        shape: Vec<usize>,
        ty: GgmlType,
        values: &[f32],
    ) -> Result<GgufTensor> {
        let name = name.into();
        check_shape(&name, &shape)?;
        let cols = shape.last().copied().unwrap_or(0);
        let rows = shape[..shape.len() - 1]
            .iter()
            .try_fold(1usize, |a, &b| a.checked_mul(b))
            .ok_or_else(|| {
                Error::param("shape", format!("tensor `{name}`: {shape:?} overflows"))
            })?;
        let data = quantize(ty, rows, cols, values)?;
        Ok(GgufTensor {
            name,
            shape,
            ty,
            data,
        })
    }

    /// Number of rows: the product of all dimensions but the last (1 for a vector;
    /// saturating for shapes no valid tensor has).
    pub fn rows(&self) -> usize {
        match self.shape.split_last() {
            Some((_, outer)) => outer.iter().fold(1usize, |a, &b| a.saturating_mul(b)),
            None => 0,
        }
    }

    /// Row length: the last dimension (ggml's `ne[0]`).
    pub fn cols(&self) -> usize {
        self.shape.last().copied().unwrap_or(0)
    }

    /// Number of weights (saturating for shapes no valid tensor has).
    pub fn n_elements(&self) -> usize {
        self.shape.iter().fold(1usize, |a, &b| a.saturating_mul(b))
    }

    /// Decodes the tensor to `f32`, row-major.
    pub fn dequantize(&self) -> Result<Vec<f32>> {
        dequantize(self.ty, self.rows(), self.cols(), &self.data)
    }

    fn expected_bytes(&self) -> Result<usize> {
        check_shape(&self.name, &self.shape)?;
        let rb = self.ty.row_bytes(self.cols()).map_err(|_| {
            Error::param(
                "shape",
                format!(
                    "tensor `{}`: row length {} is not a multiple of the {} block size {}",
                    self.name,
                    self.cols(),
                    self.ty,
                    self.ty.block_size()
                ),
            )
        })?;
        self.shape[..self.shape.len() - 1]
            .iter()
            .try_fold(rb, |a, &b| a.checked_mul(b))
            .ok_or_else(|| {
                Error::param(
                    "shape",
                    format!("tensor `{}`: {:?} overflows", self.name, self.shape),
                )
            })
    }
}

fn check_shape(name: &str, shape: &[usize]) -> Result<()> {
    if shape.is_empty() || shape.len() > MAX_DIMS {
        return Err(Error::param(
            "shape",
            format!(
                "tensor `{name}`: {} dimensions, GGUF tensors have 1 to {MAX_DIMS}",
                shape.len()
            ),
        ));
    }
    if element_count(shape).is_none() {
        return Err(Error::param(
            "shape",
            format!("tensor `{name}`: {shape:?} has more than 2^63 elements"),
        ));
    }
    Ok(())
}

/// The product of the dimensions, if it fits in an `i64` (ggml's element count type)
/// even with zero dimensions counted as one (so `[2^40, 2^40, 0]` is rejected, not
/// accepted as empty).
fn element_count(shape: &[usize]) -> Option<usize> {
    shape
        .iter()
        .try_fold(1usize, |a, &b| a.checked_mul(b.max(1)))
        .filter(|&n| n <= i64::MAX as usize)?;
    Some(shape.iter().product())
}

/// The contents of a GGUF file.
#[derive(Clone, Debug, PartialEq)]
pub struct GgufFile {
    /// Format version (2 or 3).
    pub version: u32,
    /// Data alignment in bytes.
    pub alignment: usize,
    /// Metadata in file order.
    pub metadata: Vec<(String, GgufValue)>,
    /// Tensors in file order.
    pub tensors: Vec<GgufTensor>,
}

impl GgufFile {
    /// The metadata value under `key`.
    pub fn get(&self, key: &str) -> Option<&GgufValue> {
        self.metadata.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// The tensor named `name`.
    pub fn tensor(&self, name: &str) -> Option<&GgufTensor> {
        self.tensors.iter().find(|t| t.name == name)
    }
}

/// Writes a GGUF v3 file: `metadata` in order (plus `general.alignment = 32` unless it
/// is given), then `tensors` in order, each at an offset aligned to the alignment.
///
/// The file is written to `PATH.tmp`, fsynced and renamed over `path`, so a crash never
/// leaves a half-written file under the final name. Everything is validated before the
/// file is created: unique keys and tensor names, array elements of the declared type,
/// tensor names of at most [`MAX_TENSOR_NAME`] bytes, 1 to 4 dimensions, byte counts.
pub fn write_gguf(
    path: impl AsRef<Path>,
    metadata: &[(String, GgufValue)],
    tensors: &[GgufTensor],
) -> Result<()> {
    let path = path.as_ref();
    let (header, alignment) = encode_header(metadata, tensors)?;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let result = write_file(&tmp, &header, alignment, tensors);
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Error::io(path, e)
    })?;
    crate::data::sync_parent_dir(path);
    Ok(())
}

fn write_file(tmp: &Path, header: &[u8], alignment: usize, tensors: &[GgufTensor]) -> Result<()> {
    let io = |e| Error::io(tmp, e);
    let file = std::fs::File::create(tmp).map_err(io)?;
    let mut w = std::io::BufWriter::with_capacity(1 << 20, file);
    w.write_all(header).map_err(io)?;
    for t in tensors {
        w.write_all(&t.data).map_err(io)?;
        let n = pad(t.data.len(), alignment) as u64;
        std::io::copy(&mut std::io::Read::take(std::io::repeat(0), n), &mut w).map_err(io)?;
    }
    let file = w.into_inner().map_err(|e| io(e.into_error()))?;
    file.sync_all().map_err(io)
}

/// Bytes needed after `n` to reach a multiple of `align` (a power of two).
fn pad(n: usize, align: usize) -> usize {
    n.wrapping_neg() & (align - 1)
}

/// Everything before the data section, padding included, and the alignment.
fn encode_header(
    metadata: &[(String, GgufValue)],
    tensors: &[GgufTensor],
) -> Result<(Vec<u8>, usize)> {
    let mut alignment = GGUF_DEFAULT_ALIGNMENT;
    let mut has_alignment = false;
    let mut keys = std::collections::HashSet::new();
    for (k, v) in metadata {
        if !keys.insert(k.as_str()) {
            return Err(Error::param("metadata", format!("duplicate key `{k}`")));
        }
        if k == ALIGNMENT_KEY {
            alignment = match v {
                GgufValue::U32(a) if a.is_power_of_two() => *a as usize,
                _ => {
                    return Err(Error::param(
                        "metadata",
                        format!("`{ALIGNMENT_KEY}` must be a U32 power of two, got {v:?}"),
                    ));
                }
            };
            has_alignment = true;
        }
        check_value(k, v)?;
    }
    let mut names = std::collections::HashSet::new();
    for t in tensors {
        if t.name.len() > MAX_TENSOR_NAME {
            return Err(Error::param(
                "tensors",
                format!(
                    "tensor name `{}` is {} bytes, llama.cpp accepts at most {MAX_TENSOR_NAME}",
                    t.name,
                    t.name.len()
                ),
            ));
        }
        if !names.insert(t.name.as_str()) {
            return Err(Error::param(
                "tensors",
                format!("duplicate tensor name `{}`", t.name),
            ));
        }
        let need = t.expected_bytes()?;
        if t.data.len() != need {
            return Err(Error::dim(
                format!("tensor `{}` ({} {:?}) bytes", t.name, t.ty, t.shape),
                need,
                t.data.len(),
            ));
        }
    }

    let mut h = Vec::new();
    h.extend_from_slice(&GGUF_MAGIC);
    h.extend_from_slice(&GGUF_VERSION.to_le_bytes());
    h.extend_from_slice(&(tensors.len() as u64).to_le_bytes());
    let n_kv = metadata.len() + usize::from(!has_alignment);
    h.extend_from_slice(&(n_kv as u64).to_le_bytes());
    for (k, v) in metadata {
        put_str(&mut h, k);
        h.extend_from_slice(&v.value_type().id().to_le_bytes());
        put_value(&mut h, v);
    }
    if !has_alignment {
        put_str(&mut h, ALIGNMENT_KEY);
        h.extend_from_slice(&GgufValueType::U32.id().to_le_bytes());
        h.extend_from_slice(&(alignment as u32).to_le_bytes());
    }
    let mut offset = 0u64;
    for t in tensors {
        put_str(&mut h, &t.name);
        h.extend_from_slice(&(t.shape.len() as u32).to_le_bytes());
        for &d in t.shape.iter().rev() {
            h.extend_from_slice(&(d as u64).to_le_bytes());
        }
        h.extend_from_slice(&t.ty.id().to_le_bytes());
        h.extend_from_slice(&offset.to_le_bytes());
        let len = t.data.len() + pad(t.data.len(), alignment);
        offset = offset
            .checked_add(len as u64)
            .ok_or_else(|| Error::param("tensors", "total data size overflows u64"))?;
    }
    h.resize(h.len() + pad(h.len(), alignment), 0);
    Ok((h, alignment))
}

fn check_value(key: &str, v: &GgufValue) -> Result<()> {
    if let GgufValue::Array(ty, items) = v {
        if *ty == GgufValueType::Array {
            return Err(Error::param(
                "metadata",
                format!("`{key}`: arrays of arrays are not supported"),
            ));
        }
        if let Some((i, item)) = items
            .iter()
            .enumerate()
            .find(|(_, x)| x.value_type() != *ty)
        {
            return Err(Error::param(
                "metadata",
                format!(
                    "`{key}`: array of {ty:?} has element {i} of type {:?}",
                    item.value_type()
                ),
            ));
        }
    }
    Ok(())
}

fn put_str(h: &mut Vec<u8>, s: &str) {
    h.extend_from_slice(&(s.len() as u64).to_le_bytes());
    h.extend_from_slice(s.as_bytes());
}

fn put_value(h: &mut Vec<u8>, v: &GgufValue) {
    match v {
        GgufValue::U8(x) => h.push(*x),
        GgufValue::I8(x) => h.push(*x as u8),
        GgufValue::U16(x) => h.extend_from_slice(&x.to_le_bytes()),
        GgufValue::I16(x) => h.extend_from_slice(&x.to_le_bytes()),
        GgufValue::U32(x) => h.extend_from_slice(&x.to_le_bytes()),
        GgufValue::I32(x) => h.extend_from_slice(&x.to_le_bytes()),
        GgufValue::U64(x) => h.extend_from_slice(&x.to_le_bytes()),
        GgufValue::I64(x) => h.extend_from_slice(&x.to_le_bytes()),
        GgufValue::F32(x) => h.extend_from_slice(&x.to_le_bytes()),
        GgufValue::F64(x) => h.extend_from_slice(&x.to_le_bytes()),
        GgufValue::Bool(x) => h.push(u8::from(*x)),
        GgufValue::String(s) => put_str(h, s),
        GgufValue::Array(ty, items) => {
            h.extend_from_slice(&ty.id().to_le_bytes());
            h.extend_from_slice(&(items.len() as u64).to_le_bytes());
            for item in items {
                put_value(h, item);
            }
        }
    }
}

/// Reads and validates a GGUF file (version 2 or 3, little-endian): metadata and every
/// tensor's name, shape, type and bytes.
///
/// Every count, length, dimension and offset is checked against the file size before use;
/// tensors must use a type of [`GgmlType`], lie inside the data section at offsets that
/// are multiples of the alignment, and have unique names. Failures are
/// [`Error::Format`] naming the byte offset or the tensor.
pub fn read_gguf(path: impl AsRef<Path>) -> Result<GgufFile> {
    let path = path.as_ref();
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let len = file.metadata().map_err(|e| Error::io(path, e))?.len();
    if len < 24 {
        return Err(Error::format(
            path,
            format!("file is {len} bytes, shorter than the 24-byte GGUF header"),
        ));
    }
    // SAFETY: the map is only read, and every access is bounds-checked against its
    // length; like every memory map it assumes the file is not truncated while open.
    let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| Error::io(path, e))?;
    parse_gguf(&map, path)
}

/// Parses a whole GGUF file held in memory (`path` only names it in errors).
pub fn parse_gguf(bytes: &[u8], path: &Path) -> Result<GgufFile> {
    let mut c = Cursor {
        buf: bytes,
        pos: 0,
        path,
    };
    let magic = c.take(4, "magic")?;
    if magic != GGUF_MAGIC {
        return Err(Error::format(
            path,
            format!("bad magic {magic:02x?} at byte offset 0: not a GGUF file"),
        ));
    }
    let version = c.u32("version")?;
    if version == 3u32.swap_bytes() || version == 2u32.swap_bytes() {
        return Err(Error::format(
            path,
            "big-endian GGUF files are not supported (version field at byte offset 4)",
        ));
    }
    if !(2..=3).contains(&version) {
        return Err(Error::format(
            path,
            format!("unsupported GGUF version {version} at byte offset 4 (2 and 3 are)"),
        ));
    }
    // A tensor info takes at least 8 (name) + 4 + 8 (one dim) + 4 + 8 = 32 bytes; a
    // key-value pair at least 8 (key) + 4 + 1 = 13.
    let n_tensors = c.count("tensor count", 32)?;
    let n_kv = c.count("metadata count", 13)?;

    let mut metadata: Vec<(String, GgufValue)> = Vec::with_capacity(n_kv);
    let mut alignment = GGUF_DEFAULT_ALIGNMENT;
    for i in 0..n_kv {
        let at = c.pos;
        let key = c.string(&format!("metadata key {i}"))?;
        if metadata.iter().any(|(k, _)| *k == key) {
            return Err(c.err_at(at, format!("duplicate metadata key `{key}`")));
        }
        let tag_at = c.pos;
        let tag = c.u32("metadata value type")?;
        let ty = GgufValueType::from_id(tag)
            .ok_or_else(|| c.err_at(tag_at, format!("`{key}`: unknown value type {tag}")))?;
        let value = c.value(ty, &key)?;
        if key == ALIGNMENT_KEY {
            alignment = match value {
                GgufValue::U32(a) if a.is_power_of_two() => a as usize,
                _ => {
                    return Err(c.err_at(
                        tag_at,
                        format!("`{ALIGNMENT_KEY}` must be a U32 power of two, got {value:?}"),
                    ));
                }
            };
        }
        metadata.push((key, value));
    }

    struct Info {
        name: String,
        shape: Vec<usize>,
        ty: GgmlType,
        offset: u64,
        nbytes: usize,
        at: usize,
    }
    let mut infos: Vec<Info> = Vec::with_capacity(n_tensors);
    let mut names = std::collections::HashSet::new();
    for i in 0..n_tensors {
        let at = c.pos;
        let name = c.string(&format!("tensor {i} name"))?;
        if !names.insert(name.clone()) {
            return Err(c.err_at(at, format!("duplicate tensor name `{name}`")));
        }
        let nd_at = c.pos;
        let n_dims = c.u32("tensor dimension count")? as usize;
        if n_dims == 0 || n_dims > MAX_DIMS {
            return Err(c.err_at(
                nd_at,
                format!("tensor `{name}`: {n_dims} dimensions (1 to {MAX_DIMS} allowed)"),
            ));
        }
        let mut ne = [1usize; MAX_DIMS];
        for d in ne.iter_mut().take(n_dims) {
            let d_at = c.pos;
            let v = c.u64("tensor dimension")?;
            *d = usize::try_from(v)
                .ok()
                .filter(|&v| v <= i64::MAX as usize)
                .ok_or_else(|| {
                    c.err_at(d_at, format!("tensor `{name}`: dimension {v} too large"))
                })?;
        }
        let ty_at = c.pos;
        let ty_id = c.u32("tensor type")?;
        let ty = GgmlType::from_id(ty_id).ok_or_else(|| {
            c.err_at(
                ty_at,
                format!("tensor `{name}`: unsupported ggml type id {ty_id}"),
            )
        })?;
        let offset = c.u64("tensor offset")?;
        if offset % alignment as u64 != 0 {
            return Err(c.err_at(
                at,
                format!("tensor `{name}`: data offset {offset} is not a multiple of the alignment {alignment}"),
            ));
        }
        let rb = ty.row_bytes(ne[0]).map_err(|_| {
            c.err_at(
                at,
                format!(
                    "tensor `{name}`: row length {} is not a multiple of the {ty} block size {}",
                    ne[0],
                    ty.block_size()
                ),
            )
        })?;
        let nbytes = ne[1..]
            .iter()
            .try_fold(rb, |a, &b| a.checked_mul(b))
            .ok_or_else(|| c.err_at(at, format!("tensor `{name}`: size overflows")))?;
        if element_count(&ne).is_none() {
            return Err(c.err_at(
                at,
                format!("tensor `{name}`: {:?} elements overflow", &ne[..n_dims]),
            ));
        }
        let shape = ne[..n_dims].iter().rev().copied().collect();
        infos.push(Info {
            name,
            shape,
            ty,
            offset,
            nbytes,
            at,
        });
    }

    let data_start = c.pos + pad(c.pos, alignment);
    if data_start > bytes.len() {
        return Err(c.err_at(
            c.pos,
            format!(
                "truncated: the data section would start at byte offset {data_start}, past the \
                 end of the {}-byte file",
                bytes.len()
            ),
        ));
    }
    let data_len = (bytes.len() - data_start) as u64;
    let mut tensors = Vec::with_capacity(infos.len());
    for info in infos {
        let end = info.offset.checked_add(info.nbytes as u64);
        match end {
            Some(end) if end <= data_len => {}
            _ => {
                return Err(c.err_at(
                    info.at,
                    format!(
                        "tensor `{}` ({} {:?}): {} bytes at data offset {} (file byte offset \
                         {}) run past the end of the {}-byte file",
                        info.name,
                        info.ty,
                        info.shape,
                        info.nbytes,
                        info.offset,
                        data_start as u64 + info.offset.min(data_len),
                        bytes.len()
                    ),
                ));
            }
        }
        let start = data_start + info.offset as usize;
        tensors.push(GgufTensor {
            name: info.name,
            shape: info.shape,
            ty: info.ty,
            data: bytes[start..start + info.nbytes].to_vec(),
        });
    }
    Ok(GgufFile {
        version,
        alignment,
        metadata,
        tensors,
    })
}

/// A bounds-checked little-endian reader over the file bytes.
struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
    path: &'a Path,
}

impl<'a> Cursor<'a> {
    fn err_at(&self, at: usize, msg: String) -> Error {
        Error::format(self.path, format!("{msg} (at byte offset {at})"))
    }

    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8]> {
        if n > self.remaining() {
            return Err(Error::format(
                self.path,
                format!(
                    "truncated: {what} needs {n} bytes at byte offset {}, the file has {} bytes",
                    self.pos,
                    self.buf.len()
                ),
            ));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N]> {
        let s = self.take(N, what)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    fn u32(&mut self, what: &str) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    fn u64(&mut self, what: &str) -> Result<u64> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    /// A `u64` count of items of at least `min_size` bytes each, checked against the
    /// bytes left so that a corrupt count cannot trigger a huge allocation.
    fn count(&mut self, what: &str, min_size: usize) -> Result<usize> {
        let at = self.pos;
        let n = self.u64(what)?;
        let fits = (self.remaining() / min_size) as u64;
        if n > fits {
            return Err(self.err_at(
                at,
                format!(
                    "{what} {n} is impossible: {} bytes remain, room for at most {fits}",
                    self.remaining()
                ),
            ));
        }
        Ok(n as usize)
    }

    fn string(&mut self, what: &str) -> Result<String> {
        let at = self.pos;
        let n = self.count(what, 1)?;
        let s = self.take(n, what)?;
        String::from_utf8(s.to_vec())
            .map_err(|e| self.err_at(at, format!("{what} is not valid UTF-8: {e}")))
    }

    fn value(&mut self, ty: GgufValueType, key: &str) -> Result<GgufValue> {
        Ok(match ty {
            GgufValueType::U8 => GgufValue::U8(self.array::<1>(key)?[0]),
            GgufValueType::I8 => GgufValue::I8(self.array::<1>(key)?[0] as i8),
            GgufValueType::U16 => GgufValue::U16(u16::from_le_bytes(self.array(key)?)),
            GgufValueType::I16 => GgufValue::I16(i16::from_le_bytes(self.array(key)?)),
            GgufValueType::U32 => GgufValue::U32(self.u32(key)?),
            GgufValueType::I32 => GgufValue::I32(i32::from_le_bytes(self.array(key)?)),
            GgufValueType::U64 => GgufValue::U64(self.u64(key)?),
            GgufValueType::I64 => GgufValue::I64(i64::from_le_bytes(self.array(key)?)),
            GgufValueType::F32 => GgufValue::F32(f32::from_le_bytes(self.array(key)?)),
            GgufValueType::F64 => GgufValue::F64(f64::from_le_bytes(self.array(key)?)),
            GgufValueType::Bool => {
                let at = self.pos;
                match self.array::<1>(key)?[0] {
                    0 => GgufValue::Bool(false),
                    1 => GgufValue::Bool(true),
                    b => return Err(self.err_at(at, format!("`{key}`: bool byte {b}"))),
                }
            }
            GgufValueType::String => GgufValue::String(self.string(key)?),
            GgufValueType::Array => {
                let at = self.pos;
                let tag = self.u32(key)?;
                let elem = GgufValueType::from_id(tag).ok_or_else(|| {
                    self.err_at(at, format!("`{key}`: unknown array element type {tag}"))
                })?;
                if elem == GgufValueType::Array {
                    return Err(
                        self.err_at(at, format!("`{key}`: arrays of arrays are not supported"))
                    );
                }
                let n = self.count(&format!("`{key}` array length"), elem.min_size())?;
                let mut items = Vec::with_capacity(n);
                for _ in 0..n {
                    items.push(self.value(elem, key)?);
                }
                GgufValue::Array(elem, items)
            }
        })
    }
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
    fn type_table() {
        for ty in GgmlType::ALL {
            assert_eq!(GgmlType::from_id(ty.id()), Some(ty));
            assert_eq!(GgmlType::from_name(ty.name()), Some(ty));
            assert_eq!(
                ty.row_bytes(256).unwrap(),
                256 / ty.block_size() * ty.type_size()
            );
        }
        assert_eq!(GgmlType::from_id(7), None);
        assert_eq!(GgmlType::Q4_K.bits_per_weight(), 4.5);
        assert_eq!(GgmlType::Q6_K.bits_per_weight(), 6.5625);
        assert_eq!(GgmlType::Q8_0.bits_per_weight(), 8.5);
        assert!(GgmlType::Q4_K.row_bytes(4000).is_err());
        assert!(GgmlType::Q4_0.row_bytes(48).is_err());
        assert_eq!(GgmlType::F16.row_bytes(3).unwrap(), 6);
    }

    #[test]
    fn fallback_follows_llama_cpp() {
        assert_eq!(fallback_type(GgmlType::Q4_K, 4096), GgmlType::Q4_K);
        assert_eq!(fallback_type(GgmlType::Q4_K, 4000), GgmlType::Q5_0);
        assert_eq!(fallback_type(GgmlType::Q6_K, 4000), GgmlType::Q8_0);
        assert_eq!(fallback_type(GgmlType::Q4_K, 4001), GgmlType::F16);
        assert_eq!(fallback_type(GgmlType::Q6_K, 100), GgmlType::F16);
        assert_eq!(fallback_type(GgmlType::Q4_0, 100), GgmlType::F16);
        assert_eq!(fallback_type(GgmlType::Q8_0, 96), GgmlType::Q8_0);
        assert_eq!(fallback_type(GgmlType::F32, 7), GgmlType::F32);
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
                encode_row_portable(ty, r, o).unwrap();
            }
            assert!(
                dispatched == portable,
                "{ty}: dispatched and portable bytes differ"
            );
            #[cfg(target_arch = "x86_64")]
            if is_x86_feature_detected!("avx2") {
                let mut avx2 = vec![0u8; rows * rb];
                for (o, r) in avx2.chunks_mut(rb).zip(x.chunks(cols)) {
                    encode_row_avx2_safe(ty, r, o).unwrap();
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

    fn sample_file() -> (Vec<(String, GgufValue)>, Vec<GgufTensor>) {
        let meta = vec![
            ("general.architecture".to_string(), GgufValue::from("llama")),
            ("general.name".to_string(), GgufValue::from("tiny")),
            ("t.u8".to_string(), GgufValue::U8(7)),
            ("t.i8".to_string(), GgufValue::I8(-7)),
            ("t.u16".to_string(), GgufValue::U16(65535)),
            ("t.i16".to_string(), GgufValue::I16(-300)),
            ("t.u32".to_string(), GgufValue::U32(4096)),
            ("t.i32".to_string(), GgufValue::I32(-5)),
            ("t.u64".to_string(), GgufValue::U64(1 << 40)),
            ("t.i64".to_string(), GgufValue::I64(-(1 << 40))),
            ("t.f32".to_string(), GgufValue::F32(1e-5)),
            ("t.f64".to_string(), GgufValue::F64(0.1)),
            ("t.bool".to_string(), GgufValue::Bool(true)),
            (
                "t.tokens".to_string(),
                GgufValue::Array(
                    GgufValueType::String,
                    vec!["<s>".into(), "é".into(), "".into()],
                ),
            ),
            (
                "t.ints".to_string(),
                GgufValue::Array(
                    GgufValueType::I32,
                    vec![GgufValue::I32(1), GgufValue::I32(-2)],
                ),
            ),
            (
                "t.empty".to_string(),
                GgufValue::Array(GgufValueType::F32, vec![]),
            ),
        ];
        let x = gaussian_rows(2, 256, 3);
        let tensors = vec![
            GgufTensor::quantize("bias", vec![5], GgmlType::F32, &x[..5]).unwrap(),
            GgufTensor::quantize("w.q4k", vec![2, 256], GgmlType::Q4_K, &x).unwrap(),
            GgufTensor::quantize("w.q8", vec![2, 2, 64], GgmlType::Q8_0, &x[..256]).unwrap(),
            GgufTensor::quantize("w.f16", vec![3], GgmlType::F16, &x[..3]).unwrap(),
        ];
        (meta, tensors)
    }

    #[test]
    fn write_read_roundtrip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.gguf");
        let (meta, tensors) = sample_file();
        write_gguf(&path, &meta, &tensors).unwrap();
        assert!(!dir.path().join("m.gguf.tmp").exists());
        let f = read_gguf(&path).unwrap();
        assert_eq!(f.version, 3);
        assert_eq!(f.alignment, 32);
        assert_eq!(&f.metadata[..meta.len()], &meta[..]);
        assert_eq!(f.get(ALIGNMENT_KEY), Some(&GgufValue::U32(32)));
        assert_eq!(f.tensors, tensors);
        assert_eq!(f.tensor("w.q8").unwrap().rows(), 4);
        assert_eq!(f.tensor("bias").unwrap().rows(), 1);

        // A custom alignment is honoured.
        let mut meta64 = meta.clone();
        meta64.push((ALIGNMENT_KEY.to_string(), GgufValue::U32(64)));
        write_gguf(&path, &meta64, &tensors).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        let f = parse_gguf(&bytes, &path).unwrap();
        assert_eq!(f.alignment, 64);
        assert_eq!(f.tensors, tensors);
        assert!(bytes.len().is_multiple_of(64));
    }

    #[test]
    fn writer_rejects_bad_input() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.gguf");
        let (meta, tensors) = sample_file();
        let mut dup = tensors.clone();
        dup.push(tensors[0].clone());
        assert!(write_gguf(&path, &meta, &dup).is_err());
        let mut m = meta.clone();
        m.push(meta[0].clone());
        assert!(write_gguf(&path, &m, &tensors).is_err());
        let mut m = meta.clone();
        m.push((ALIGNMENT_KEY.into(), GgufValue::U32(24)));
        assert!(write_gguf(&path, &m, &tensors).is_err());
        let mut m = meta.clone();
        m.push((
            "mixed".into(),
            GgufValue::Array(GgufValueType::U8, vec![GgufValue::I8(1)]),
        ));
        assert!(write_gguf(&path, &m, &tensors).is_err());
        let mut t = tensors.clone();
        t[1].data.pop();
        assert!(write_gguf(&path, &meta, &t).is_err());
        let mut t = tensors.clone();
        t[0].name = "x".repeat(64);
        assert!(write_gguf(&path, &meta, &t).is_err());
        let mut t = tensors.clone();
        t[0].shape = vec![1, 1, 1, 1, 5];
        assert!(write_gguf(&path, &meta, &t).is_err());
        assert!(GgufTensor::new("q", vec![2, 100], GgmlType::Q4_K, vec![]).is_err());
        assert!(!path.exists());
    }

    #[test]
    fn corrupt_and_truncated_files_never_panic() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.gguf");
        let (meta, tensors) = sample_file();
        write_gguf(&path, &meta, &tensors).unwrap();
        let good = std::fs::read(&path).unwrap();
        assert!(parse_gguf(&good, &path).is_ok());
        // Every truncation fails cleanly (the last tensor's padding is optional).
        let last = tensors.last().unwrap().data.len();
        let unpadded = good.len() - pad(last, 32);
        for n in 0..unpadded {
            let r = parse_gguf(&good[..n], &path);
            assert!(r.is_err(), "truncated to {n} bytes parsed");
        }
        // Every single-byte corruption either fails with an error or parses.
        let mut bad = good.clone();
        for i in 0..good.len() {
            for x in [0x01u8, 0x80, 0xff] {
                bad[i] = good[i] ^ x;
                let _ = parse_gguf(&bad, &path);
            }
            bad[i] = good[i];
        }
        // Seeded random multi-byte damage, including huge little-endian integers.
        let mut rng = crate::rng::seeded(99);
        use crate::rng::RngExt;
        for _ in 0..3000 {
            let mut b = good.clone();
            for _ in 0..rng.random_range(1..4usize) {
                let at = rng.random_range(0..b.len());
                let end = (at + 8).min(b.len());
                match rng.random_range(0..3u32) {
                    0 => b[at] = rng.random(),
                    1 => b[at..end].fill(0xff),
                    _ => b[at..end].fill(0),
                }
            }
            let cut = rng.random_range(0..=b.len());
            let _ = parse_gguf(&b[..cut], &path);
            if let Ok(f) = parse_gguf(&b, &path) {
                for t in &f.tensors {
                    let _ = t.dequantize();
                }
            }
        }
        // Huge counts and lengths are rejected before any allocation.
        for at in [8usize, 16, 24] {
            let mut b = good.clone();
            b[at..at + 8].copy_from_slice(&u64::MAX.to_le_bytes());
            let e = parse_gguf(&b, &path).unwrap_err();
            assert!(e.to_string().contains("byte offset"), "{e}");
        }
        // An empty tensor whose other dimensions multiply past i64: rejected, not wrapped.
        let z = GgufTensor::new("z", vec![1, 1, 0], GgmlType::F32, vec![]).unwrap();
        write_gguf(&path, &[], &[z]).unwrap();
        let mut b = std::fs::read(&path).unwrap();
        assert_eq!(parse_gguf(&b, &path).unwrap().tensors[0].n_elements(), 0);
        let dims = b.windows(5).position(|w| w == b"z\x03\0\0\0").unwrap() + 5;
        for k in 1..3 {
            b[dims + 8 * k..dims + 8 * k + 8].copy_from_slice(&(1u64 << 40).to_le_bytes());
        }
        let e = parse_gguf(&b, &path).unwrap_err();
        assert!(e.to_string().contains("overflow"), "{e}");
        let huge = GgufTensor {
            name: "h".into(),
            shape: vec![1 << 40, 1 << 40, 0],
            ty: GgmlType::F32,
            data: vec![],
        };
        assert!(write_gguf(&path, &[], &[huge]).is_err());

        let e = read_gguf(dir.path().join("missing.gguf")).unwrap_err();
        assert!(matches!(e, Error::Io { .. }));
        std::fs::write(&path, b"GGUF").unwrap();
        assert!(matches!(read_gguf(&path), Err(Error::Format { .. })));
    }
}
