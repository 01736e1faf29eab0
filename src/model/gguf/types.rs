//! The type tables: ggml tensor element types (ids, names, block layouts, llama.cpp's
//! fallback rule), GGUF metadata value types and values, and the tensor record.

use std::fmt;

use super::codec::{dequantize, quantize};
use super::file::MAX_DIMS;
use super::{QK, QK_K};
use crate::error::{Error, Result};

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
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] if `cols` is not a multiple of the block size or the
    /// byte count overflows `usize`.
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
    pub(super) fn min_size(self) -> usize {
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
    /// Tensor name (at most [`MAX_TENSOR_NAME`](super::MAX_TENSOR_NAME) bytes for llama.cpp).
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
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] for a shape of no or more than [`MAX_DIMS`] dimensions,
    /// too many elements, or a row length that is not a multiple of the block size;
    /// [`Error::DimensionMismatch`] if `data` is not the shape's byte count.
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
    ///
    /// # Errors
    /// As [`GgufTensor::new`] for the shape, and as [`quantize`] for the values
    /// (wrong count, NaN or infinite weights, scales that overflow `f16`).
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
    ///
    /// # Errors
    /// As [`dequantize`]: a shape that does not fit the type or a byte count that does not
    /// match it (possible only for a tensor built field by field).
    pub fn dequantize(&self) -> Result<Vec<f32>> {
        dequantize(self.ty, self.rows(), self.cols(), &self.data)
    }

    pub(super) fn expected_bytes(&self) -> Result<usize> {
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
pub(super) fn element_count(shape: &[usize]) -> Option<usize> {
    shape
        .iter()
        .try_fold(1usize, |a, &b| a.checked_mul(b.max(1)))
        .filter(|&n| n <= i64::MAX as usize)?;
    Some(shape.iter().product())
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
