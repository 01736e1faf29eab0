//! Reading weight tensors from `.safetensors` and `.npy`, and writing (dequantized)
//! tensors back to `.safetensors`.
//!
//! Floating tensors (f32, f16, bf16, f64) are converted to f32 on read; every other dtype
//! (integers, bool, FP8) is kept as raw bytes and passed through unchanged.

use std::collections::HashMap;
use std::path::Path;

use safetensors::tensor::{Dtype, SafeTensors, TensorView};

use crate::error::{Error, Result};

/// The data of a tensor.
#[derive(Clone, Debug, PartialEq)]
pub enum TensorData {
    /// A floating tensor, converted to f32 (row-major).
    Float(Vec<f32>),
    /// Any other dtype, raw little-endian bytes as stored.
    Raw(Vec<u8>),
}

/// One named tensor of a weight file.
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    /// Name as in the file (e.g. `encoder.layer.0.attention.self.query.weight`).
    pub name: String,
    /// Shape, outermost first (`[out_features, in_features]` for a linear layer).
    pub shape: Vec<usize>,
    /// The dtype name in the file (`F32`, `F16`, `BF16`, `I64`, ...).
    pub dtype: String,
    /// Bytes per element in the file (for the "before" size).
    pub source_bytes: usize,
    /// Values.
    pub data: TensorData,
}

impl Tensor {
    /// A 2-D f32 tensor.
    pub fn matrix(name: &str, rows: usize, cols: usize, data: Vec<f32>) -> Self {
        Tensor {
            name: name.to_string(),
            shape: vec![rows, cols],
            dtype: "F32".into(),
            source_bytes: rows * cols * 4,
            data: TensorData::Float(data),
        }
    }

    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// `(rows, cols, values)` when this is a 2-D floating tensor; otherwise an error that
    /// names the tensor and says why.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] naming the tensor when it is not 2-D, not floating
    /// point, or empty.
    pub fn as_matrix(&self) -> Result<(usize, usize, &[f32])> {
        let TensorData::Float(v) = &self.data else {
            return Err(Error::param(
                &self.name,
                format!("dtype {} is not a floating type", self.dtype),
            ));
        };
        if self.shape.len() != 2 {
            return Err(Error::param(
                &self.name,
                format!(
                    "expected a 2-D weight matrix, got shape {:?} ({}-D)",
                    self.shape,
                    self.shape.len()
                ),
            ));
        }
        if self.shape[0] == 0 || self.shape[1] == 0 {
            return Err(Error::param(&self.name, "empty matrix"));
        }
        Ok((self.shape[0], self.shape[1], v))
    }
}

fn st_err(path: &Path, e: safetensors::SafeTensorError) -> Error {
    Error::format(path, format!("not a valid safetensors file: {e}"))
}

fn decode_float(dtype: Dtype, bytes: &[u8]) -> Option<Vec<f32>> {
    Some(match dtype {
        Dtype::F32 => bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect(),
        Dtype::F64 => bytes
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes(c.try_into().unwrap()) as f32)
            .collect(),
        Dtype::F16 => bytes
            .chunks_exact(2)
            .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        Dtype::BF16 => bytes
            .chunks_exact(2)
            .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        _ => return None,
    })
}

/// Decodes little-endian floating bytes of the dtype named `dtype` (`F32`, `F64`, `F16`,
/// `BF16`); `None` for other dtypes.
pub fn decode_float_named(dtype: &str, bytes: &[u8]) -> Option<Vec<f32>> {
    decode_float(parse_dtype(dtype)?, bytes)
}

/// Encodes f32 values as little-endian bytes of the floating dtype `dtype` — exact for
/// values that were read from that dtype. `None` for non-floating dtypes.
pub fn encode_float_named(dtype: &str, v: &[f32]) -> Option<Vec<u8>> {
    Some(match parse_dtype(dtype)? {
        Dtype::F32 => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        Dtype::F64 => v.iter().flat_map(|&x| (x as f64).to_le_bytes()).collect(),
        Dtype::F16 => v
            .iter()
            .flat_map(|&x| half::f16::from_f32(x).to_le_bytes())
            .collect(),
        Dtype::BF16 => v
            .iter()
            .flat_map(|&x| half::bf16::from_f32(x).to_le_bytes())
            .collect(),
        _ => return None,
    })
}

/// Reads every tensor of a `.safetensors` file, in file order.
///
/// # Errors
/// [`Error::Io`] if the file cannot be read; [`Error::Format`] if it is not valid
/// safetensors or a tensor has an unsupported dtype or inconsistent size.
pub fn read_safetensors(path: impl AsRef<Path>) -> Result<Vec<Tensor>> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let st = SafeTensors::deserialize(&bytes).map_err(|e| st_err(path, e))?;
    let (_, meta) = SafeTensors::read_metadata(&bytes).map_err(|e| st_err(path, e))?;
    let mut out = Vec::with_capacity(st.len());
    for name in meta.offset_keys() {
        let view = st.tensor(&name).map_err(|e| st_err(path, e))?;
        let dtype = view.dtype();
        let data = match decode_float(dtype, view.data()) {
            Some(v) => TensorData::Float(v),
            None => TensorData::Raw(view.data().to_vec()),
        };
        out.push(Tensor {
            name,
            shape: view.shape().to_vec(),
            dtype: dtype.to_string(),
            source_bytes: view.data().len(),
            data,
        });
    }
    Ok(out)
}

/// Reads a 2-D `.npy` array (f32/f64/u8) as one tensor named after the file stem.
///
/// # Errors
/// As [`crate::data::npy::read_npy_f32`] (I/O, a malformed or non-2-D array).
pub fn read_npy(path: impl AsRef<Path>) -> Result<Vec<Tensor>> {
    let path = path.as_ref();
    let set = crate::data::npy::read_npy_f32(path)?;
    let name = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "weight".into());
    let (rows, cols) = (set.len(), set.dim());
    Ok(vec![Tensor::matrix(
        &name,
        rows,
        cols,
        set.as_slice().to_vec(),
    )])
}

/// Reads a weight file by extension: `.safetensors` or `.npy`.
///
/// # Errors
/// [`Error::Format`] for an extension other than `.safetensors` or `.npy`; otherwise as
/// [`read_safetensors`] and [`read_npy`].
pub fn read_weights(path: impl AsRef<Path>) -> Result<Vec<Tensor>> {
    let path = path.as_ref();
    match path.extension().and_then(|e| e.to_str()) {
        Some("safetensors") => read_safetensors(path),
        Some("npy") => read_npy(path),
        _ => Err(Error::format(
            path,
            "unknown weight file extension (expected .safetensors or .npy)",
        )),
    }
}

fn parse_dtype(s: &str) -> Option<Dtype> {
    Some(match s {
        "BOOL" => Dtype::BOOL,
        "U8" => Dtype::U8,
        "I8" => Dtype::I8,
        "I16" => Dtype::I16,
        "U16" => Dtype::U16,
        "F16" => Dtype::F16,
        "BF16" => Dtype::BF16,
        "I32" => Dtype::I32,
        "U32" => Dtype::U32,
        "F32" => Dtype::F32,
        "F64" => Dtype::F64,
        "I64" => Dtype::I64,
        "U64" => Dtype::U64,
        "F8_E5M2" => Dtype::F8_E5M2,
        "F8_E4M3" => Dtype::F8_E4M3,
        _ => return None,
    })
}

/// Writes tensors to a `.safetensors` file (atomically: PATH.tmp, then rename). Float
/// tensors are written as f32; raw tensors keep their dtype and bytes.
///
/// # Errors
/// [`Error::InvalidParameter`] naming a tensor whose dtype cannot be written or whose data
/// does not match its shape; [`Error::Io`] if the file cannot be written.
pub fn write_safetensors(
    path: impl AsRef<Path>,
    tensors: &[Tensor],
    metadata: Option<HashMap<String, String>>,
) -> Result<()> {
    let path = path.as_ref();
    let bytes: Vec<(String, Dtype, Vec<u8>)> = tensors
        .iter()
        .map(|t| {
            Ok(match &t.data {
                TensorData::Float(v) => (
                    t.name.clone(),
                    Dtype::F32,
                    v.iter().flat_map(|x| x.to_le_bytes()).collect(),
                ),
                TensorData::Raw(b) => (
                    t.name.clone(),
                    parse_dtype(&t.dtype).ok_or_else(|| {
                        Error::param(&t.name, format!("cannot write dtype {}", t.dtype))
                    })?,
                    b.clone(),
                ),
            })
        })
        .collect::<Result<_>>()?;
    let views = bytes
        .iter()
        .zip(tensors)
        .map(|((name, dt, b), t)| {
            TensorView::new(*dt, t.shape.clone(), b)
                .map(|v| (name.clone(), v))
                .map_err(|e| Error::param(name, format!("inconsistent tensor: {e}")))
        })
        .collect::<Result<Vec<_>>>()?;
    let out = safetensors::serialize(views, metadata).map_err(|e| st_err(path, e))?;
    crate::data::write_file_atomic(path, &out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn safetensors_round_trip_with_every_float_dtype_and_raw_passthrough() {
        let dir = tempfile::tempdir().unwrap();
        let w: Vec<f32> = (0..12).map(|i| i as f32 * 0.25 - 1.0).collect();
        let f16b: Vec<u8> = w
            .iter()
            .flat_map(|&x| half::f16::from_f32(x).to_le_bytes())
            .collect();
        let bf16b: Vec<u8> = w
            .iter()
            .flat_map(|&x| half::bf16::from_f32(x).to_le_bytes())
            .collect();
        let f32b: Vec<u8> = w.iter().flat_map(|x| x.to_le_bytes()).collect();
        let ids: Vec<u8> = [1i64, 2, 3].iter().flat_map(|x| x.to_le_bytes()).collect();
        let views = vec![
            (
                "a.f32",
                TensorView::new(Dtype::F32, vec![3, 4], &f32b).unwrap(),
            ),
            (
                "b.f16",
                TensorView::new(Dtype::F16, vec![4, 3], &f16b).unwrap(),
            ),
            (
                "c.bf16",
                TensorView::new(Dtype::BF16, vec![12], &bf16b).unwrap(),
            ),
            ("d.ids", TensorView::new(Dtype::I64, vec![3], &ids).unwrap()),
        ];
        let p = dir.path().join("m.safetensors");
        std::fs::write(&p, safetensors::serialize(views, None).unwrap()).unwrap();
        let mut t = read_safetensors(&p).unwrap();
        t.sort_by(|a, b| a.name.cmp(&b.name));
        assert_eq!(t.len(), 4);
        for x in &t[..3] {
            assert_eq!(x.data, TensorData::Float(w.clone()), "{}", x.name);
        }
        assert_eq!(t[1].shape, vec![4, 3]);
        assert_eq!(t[1].source_bytes, 24);
        assert_eq!(t[3].data, TensorData::Raw(ids.clone()));
        assert_eq!(t[3].dtype, "I64");
        assert!(t[2].as_matrix().unwrap_err().to_string().contains("c.bf16"));
        assert!(
            t[3].as_matrix()
                .unwrap_err()
                .to_string()
                .contains("not a floating")
        );
        let q = dir.path().join("out.safetensors");
        write_safetensors(&q, &t, None).unwrap();
        let mut back = read_safetensors(&q).unwrap();
        back.sort_by(|a, b| a.name.cmp(&b.name));
        assert_eq!(back.len(), 4);
        assert_eq!(back[3].data, TensorData::Raw(ids));
        assert_eq!(back[1].dtype, "F32");
        // Truncated and garbage files are errors naming the file.
        let bytes = std::fs::read(&p).unwrap();
        for cut in [0, 7, 8, 20, bytes.len() - 1] {
            std::fs::write(&q, &bytes[..cut]).unwrap();
            let e = read_safetensors(&q).unwrap_err().to_string();
            assert!(e.contains("out.safetensors"), "{e}");
        }
    }
}
