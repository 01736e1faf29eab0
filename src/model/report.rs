//! Per-tensor and whole-model quantization reports (JSON and Markdown).

use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;

use crate::error::{Error, Result};
use crate::model::QuantizedTensor;
use crate::model::io::{Tensor, TensorData};

/// What quantizing one tensor cost and gained.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TensorReport {
    /// Tensor name.
    pub name: String,
    /// Shape.
    pub shape: Vec<usize>,
    /// Scheme actually used (`passthrough` for tensors left as they were).
    pub scheme: String,
    /// Stored bits per weight, every scale, zero point and constant included.
    pub bits_per_weight: f64,
    /// ‖W − Ŵ‖_F / ‖W‖_F (0 for pass-through).
    pub rel_weight_error: f64,
    /// max |W − Ŵ|.
    pub max_abs_error: f64,
    /// Bytes in the source file.
    pub bytes_before: u64,
    /// Bytes after quantization.
    pub bytes_after: u64,
    /// Wall time of quantizing this tensor.
    pub seconds: f64,
    /// ‖XWᵀ − XŴᵀ‖/‖XWᵀ‖ on held-out calibration rows (calibration-based methods; for
    /// SmoothQuant and LLM.int8 with their activation quantization).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rel_output_error: Option<f64>,
    /// The same for round-to-nearest at the same bits and groups (the baseline).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rtn_rel_output_error: Option<f64>,
    /// Why the scheme differs from the requested one, or why the tensor passed through.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// Totals over the model.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TotalReport {
    /// Tensors in the file.
    pub tensors: usize,
    /// Tensors quantized.
    pub quantized: usize,
    /// Tensors passed through unchanged.
    pub passthrough: usize,
    /// Weights in quantized tensors.
    pub quantized_weights: u64,
    /// Bits per weight over the quantized tensors.
    pub bits_per_weight: f64,
    /// Source size (all tensors).
    pub bytes_before: u64,
    /// Size after quantization (all tensors).
    pub bytes_after: u64,
    /// bytes_before / bytes_after.
    pub compression_ratio: f64,
    /// Wall time.
    pub seconds: f64,
}

/// The whole report: one object per tensor plus totals.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ModelReport {
    /// The requested scheme.
    pub scheme: String,
    /// Per tensor, in file order.
    pub tensors: Vec<TensorReport>,
    /// Totals.
    pub total: TotalReport,
}

/// Measures a quantized tensor against its source.
///
/// # Errors
/// [`Error::DimensionMismatch`] when the reconstruction and the source differ in size; the
/// errors of dequantizing the payload.
pub fn tensor_report(q: &QuantizedTensor, source: &Tensor) -> Result<TensorReport> {
    let n = source.numel().max(1);
    let bits = q.payload.storage_bits();
    // Pass-through tensors are stored unchanged: nothing to decode and compare.
    let decoded = match &q.payload {
        crate::model::Payload::Passthrough { .. } => None,
        p => p.dequantize()?,
    };
    let (rel, max) = match (&source.data, decoded) {
        (TensorData::Float(w), Some(y)) => {
            if y.len() != w.len() {
                return Err(Error::dim(
                    format!("reconstruction of tensor `{}`", q.name),
                    w.len(),
                    y.len(),
                ));
            }
            errors(w, &y)
        }
        _ => (0.0, 0.0),
    };
    Ok(TensorReport {
        name: q.name.clone(),
        shape: q.shape.clone(),
        scheme: q.scheme.clone(),
        bits_per_weight: bits as f64 / n as f64,
        rel_weight_error: rel,
        max_abs_error: max,
        bytes_before: source.source_bytes as u64,
        bytes_after: bits.div_ceil(8),
        seconds: 0.0,
        rel_output_error: None,
        rtn_rel_output_error: None,
        note: q.note.clone(),
    })
}

/// (‖w − y‖ / ‖w‖, max |w − y|), accumulated in f64.
pub fn errors(w: &[f32], y: &[f32]) -> (f64, f64) {
    let (mut num, mut den, mut max) = (0f64, 0f64, 0f64);
    for (&a, &b) in w.iter().zip(y) {
        let d = (a - b) as f64;
        num += d * d;
        den += (a as f64) * (a as f64);
        max = max.max(d.abs());
    }
    let rel = if den > 0.0 {
        (num / den).sqrt()
    } else if num > 0.0 {
        f64::INFINITY
    } else {
        0.0
    };
    (rel, max)
}

impl ModelReport {
    /// Builds the totals from per-tensor reports.
    pub fn new(scheme: String, tensors: Vec<TensorReport>, seconds: f64) -> Self {
        let quantized: Vec<&TensorReport> = tensors
            .iter()
            .filter(|t| t.scheme != "passthrough")
            .collect();
        let qw: u64 = quantized
            .iter()
            .map(|t| t.shape.iter().product::<usize>() as u64)
            .sum();
        let qbits: f64 = quantized
            .iter()
            .map(|t| t.bits_per_weight * t.shape.iter().product::<usize>() as f64)
            .sum();
        let before: u64 = tensors.iter().map(|t| t.bytes_before).sum();
        let after: u64 = tensors.iter().map(|t| t.bytes_after).sum();
        let total = TotalReport {
            tensors: tensors.len(),
            quantized: quantized.len(),
            passthrough: tensors.len() - quantized.len(),
            quantized_weights: qw,
            bits_per_weight: if qw > 0 { qbits / qw as f64 } else { 0.0 },
            bytes_before: before,
            bytes_after: after,
            compression_ratio: if after > 0 {
                before as f64 / after as f64
            } else {
                1.0
            },
            seconds,
        };
        ModelReport {
            scheme,
            tensors,
            total,
        }
    }

    /// Pretty JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("reports serialise")
    }

    /// A Markdown table.
    pub fn to_markdown(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "# Quantization report: {}\n", self.scheme);
        let _ = writeln!(
            s,
            "| tensor | shape | scheme | bits/weight | rel. error | max abs error | rel. output error (RTN) | bytes before | bytes after | note |"
        );
        let _ = writeln!(s, "|---|---|---|---:|---:|---:|---:|---:|---:|---|");
        for t in &self.tensors {
            let _ = writeln!(
                s,
                "| {} | {:?} | {} | {:.4} | {:.5} | {:.4e} | {} | {} | {} | {} |",
                t.name,
                t.shape,
                t.scheme,
                t.bits_per_weight,
                t.rel_weight_error,
                t.max_abs_error,
                match (t.rel_output_error, t.rtn_rel_output_error) {
                    (Some(a), Some(b)) => format!("{a:.5} ({b:.5})"),
                    (Some(a), None) => format!("{a:.5}"),
                    _ => String::new(),
                },
                t.bytes_before,
                t.bytes_after,
                t.note.as_deref().unwrap_or("")
            );
        }
        let t = &self.total;
        let _ = writeln!(
            s,
            "\n**Total**: {} tensors ({} quantized, {} passed through), {} quantized weights at {:.4} bits/weight; {} → {} bytes ({:.2}× smaller) in {:.2} s.",
            t.tensors,
            t.quantized,
            t.passthrough,
            t.quantized_weights,
            t.bits_per_weight,
            t.bytes_before,
            t.bytes_after,
            t.compression_ratio,
            t.seconds
        );
        s
    }

    /// Writes `.json` or `.md` by extension.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] for an extension other than `.json` or `.md`;
    /// [`Error::Io`] if the file cannot be written.
    pub fn write(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let text = match path.extension().and_then(|e| e.to_str()) {
            Some("json") => self.to_json(),
            Some("md") => self.to_markdown(),
            _ => {
                return Err(Error::param(
                    "report",
                    format!("{}: use a .json or .md file name", path.display()),
                ));
            }
        };
        crate::data::write_file_atomic(path, text.as_bytes())
    }
}
