//! The whole-model pipeline: quantize every 2-D floating tensor of a weight file, pass the
//! rest through, report, and write the result as a vecquant container (`.vq`), a GGUF
//! file (`.gguf`) or dequantized `.safetensors`.
//!
//! In a container (kind `weights`) the header lists every tensor (name, shape, source
//! dtype, scheme) and section `t{i}` holds tensor `i`'s encoded payload (postcard), each
//! section CRC-checked like every other container section.

use std::path::Path;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::metric::Metric;
use crate::model::activation;
use crate::model::gguf::{self, GgmlType, GgufTensor, GgufValue};
use crate::model::gptq::{GptqConfig, Hessian, gptq, matmul_xwt};
use crate::model::io::{self, Tensor, TensorData};
use crate::model::linear::{Clip, Granularity, LinearConfig, LinearTensor, Rounding};
use crate::model::report::errors;
use crate::model::report::{ModelReport, tensor_report};
use crate::model::spqr::{SpqrConfig, SpqrTensor};
use crate::model::{Payload, QuantizedTensor, Scheme, quantize_tensor};
use crate::store::{Container, ContainerWriter};
use crate::vectors::check_finite;

/// Container kind of weight files.
pub const KIND: &str = "weights";

/// A quantized model: every tensor of the source file, quantized or passed through.
#[derive(Clone, Debug, PartialEq)]
pub struct QuantizedModel {
    /// The requested scheme's label.
    pub scheme: String,
    /// Tensors in source order.
    pub tensors: Vec<QuantizedTensor>,
}

#[derive(Serialize, Deserialize)]
pub(crate) struct TensorMeta {
    pub(crate) name: String,
    pub(crate) shape: Vec<usize>,
    pub(crate) dtype: String,
    pub(crate) scheme: String,
    pub(crate) note: Option<String>,
}

/// Why a tensor is not quantized, or `None` when it is a 2-D floating matrix.
fn passthrough_reason(t: &Tensor) -> Option<String> {
    match (&t.data, t.shape.len()) {
        (TensorData::Raw(_), _) => Some(format!("{} tensor: not a floating type", t.dtype)),
        (TensorData::Float(_), 2) if t.numel() > 0 => None,
        (TensorData::Float(_), d) => Some(format!(
            "{d}-D tensor: only 2-D weight matrices are quantized"
        )),
    }
}

fn passthrough(t: &Tensor, reason: String) -> Result<QuantizedTensor> {
    // Floats are re-encoded in their source dtype (exact: they were read from it); a
    // floating dtype we cannot write back is stored as f32.
    let (dtype, bytes) = match &t.data {
        TensorData::Raw(b) => (t.dtype.clone(), b.clone()),
        TensorData::Float(v) => match io::encode_float_named(&t.dtype, v) {
            Some(b) => (t.dtype.clone(), b),
            None => (
                "F32".into(),
                v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            ),
        },
    };
    Ok(QuantizedTensor {
        name: t.name.clone(),
        shape: t.shape.clone(),
        dtype: dtype.clone(),
        scheme: "passthrough".into(),
        note: Some(reason),
        payload: Payload::Passthrough { dtype, bytes },
    })
}

/// Quantizes every 2-D floating tensor with `scheme` and passes every other tensor
/// through. `progress(i, n, name)` is called before tensor `i` of `n`. Stops at the first
/// error (which names the tensor).
///
/// # Errors
/// The first error of [`quantize_tensor`] or of the report ([`Error::Tensor`] naming the
/// tensor).
pub fn quantize_model(
    tensors: &[Tensor],
    scheme: &Scheme,
    progress: impl FnMut(usize, usize, &str),
) -> Result<(QuantizedModel, ModelReport)> {
    run_pipeline(tensors, scheme.label(), progress, |t| {
        Ok((quantize_tensor(t, scheme)?, None))
    })
}

/// The loop shared by both pipelines: pass-through of non-matrices, timing, reports,
/// totals. `quantize` handles one 2-D floating tensor and may return (method, RTN)
/// held-out output errors.
fn run_pipeline(
    tensors: &[Tensor],
    label: String,
    mut progress: impl FnMut(usize, usize, &str),
    mut quantize: impl FnMut(&Tensor) -> Result<(QuantizedTensor, Option<(f64, f64)>)>,
) -> Result<(QuantizedModel, ModelReport)> {
    let t0 = Instant::now();
    let mut out = Vec::with_capacity(tensors.len());
    let mut reports = Vec::with_capacity(tensors.len());
    for (i, t) in tensors.iter().enumerate() {
        progress(i, tensors.len(), &t.name);
        let start = Instant::now();
        let (q, errs) = match passthrough_reason(t) {
            Some(reason) => (passthrough(t, reason)?, None),
            None => quantize(t)?,
        };
        let mut r = tensor_report(&q, t)?;
        r.seconds = start.elapsed().as_secs_f64();
        if let Some((e, b)) = errs {
            r.rel_output_error = Some(e);
            r.rtn_rel_output_error = Some(b);
        }
        reports.push(r);
        out.push(q);
    }
    progress(tensors.len(), tensors.len(), "");
    let report = ModelReport::new(label.clone(), reports, t0.elapsed().as_secs_f64());
    Ok((
        QuantizedModel {
            scheme: label,
            tensors: out,
        },
        report,
    ))
}

/// A calibration-based method (issue 8 / seed 003).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum CalibMethod {
    /// GPTQ.
    Gptq(GptqConfig),
    /// SpQR.
    Spqr(SpqrConfig),
    /// SmoothQuant W8A8 with migration strength α.
    SmoothQuant {
        /// α (0.5).
        alpha: f32,
    },
    /// LLM.int8(): int8 weights, outlier activation columns (|x| ≥ threshold) in f32.
    LlmInt8 {
        /// Outlier threshold (6.0).
        threshold: f32,
    },
}

impl CalibMethod {
    /// Short description.
    pub fn label(&self) -> String {
        match self {
            CalibMethod::Gptq(c) => format!(
                "gptq int{} {}{} damp{}",
                c.bits,
                c.group.map_or("row".to_string(), |g| format!("group{g}")),
                if c.act_order { " act-order" } else { "" },
                c.damp
            ),
            CalibMethod::Spqr(c) => format!(
                "spqr int{} group{} stats{}x{} outliers{}%",
                c.bits,
                c.group,
                c.stat_bits,
                c.stat_group,
                c.outlier_frac * 100.0
            ),
            CalibMethod::SmoothQuant { alpha } => format!("smoothquant w8a8 alpha{alpha}"),
            CalibMethod::LlmInt8 { threshold } => format!("llm-int8 threshold{threshold}"),
        }
    }

    /// The round-to-nearest configuration it is compared with (and falls back to).
    pub fn rtn(&self) -> LinearConfig {
        match self {
            CalibMethod::Gptq(c) => c.rtn(),
            CalibMethod::Spqr(c) => LinearConfig {
                bits: c.bits,
                symmetric: false,
                granularity: Granularity::Group(c.group),
                rounding: Rounding::Nearest,
                clip: Clip::MinMax,
            },
            _ => LinearConfig {
                granularity: Granularity::Row,
                ..LinearConfig::absmax(8)
            },
        }
    }
}

/// Rows of each calibration matrix held out from the Hessian / statistics to measure the
/// output error: the last 10 % (at least one row).
pub fn holdout_rows(n: usize) -> usize {
    (n / 10).max(1)
}

/// How many of the tensors to quantize (2-D floating) have calibration rows in `calib`
/// (a tensor of the same name): `(matched, eligible)`. `source` names the calibration
/// file in the error.
///
/// # Errors
/// [`Error::InvalidParameter`] (`calib`) when there are tensors to quantize but no
/// calibration tensor matches any of them — every tensor would silently fall back to
/// round-to-nearest. The message names `source` and a few names from each side.
pub fn check_calibration(
    tensors: &[Tensor],
    calib: &[Tensor],
    source: impl AsRef<Path>,
) -> Result<(usize, usize)> {
    let eligible: Vec<&Tensor> = tensors
        .iter()
        .filter(|t| passthrough_reason(t).is_none())
        .collect();
    let matched = eligible
        .iter()
        .filter(|t| calib.iter().any(|c| c.name == t.name))
        .count();
    if matched == 0 && !eligible.is_empty() {
        let few = |names: Vec<&str>| {
            let n = names.len();
            let mut s: Vec<String> = names.iter().take(3).map(|n| format!("`{n}`")).collect();
            if n > 3 {
                s.push(format!("… ({n} in all)"));
            }
            if s.is_empty() {
                "none".to_string()
            } else {
                s.join(", ")
            }
        };
        return Err(Error::param(
            "calib",
            format!(
                "{}: no calibration tensor is named like a weight to quantize, so every weight would fall back to round-to-nearest (calibration tensors: {}; weights: {})",
                source.as_ref().display(),
                few(calib.iter().map(|c| c.name.as_str()).collect()),
                few(eligible.iter().map(|t| t.name.as_str()).collect()),
            ),
        ));
    }
    Ok((matched, eligible.len()))
}

/// Quantizes every 2-D floating tensor with a calibration-based `method`. `calib` holds,
/// for a weight named `N`, a tensor also named `N` with that layer's input activations
/// (tokens × in_features). The first 90 % of its rows build the Hessian (GPTQ, SpQR) or
/// the statistics (SmoothQuant); the last 10 % (see [`holdout_rows`]) measure
/// `rel_output_error` for the method and for round-to-nearest. Weights without
/// calibration rows fall back to round-to-nearest and the report says so.
///
/// # Errors
/// [`Error::InvalidParameter`] (`calib`) when no calibration tensor matches any weight
/// (see [`check_calibration`]);
/// [`Error::Tensor`] naming the tensor when its calibration tensor has the wrong width or
/// non-finite values, the Hessian is not positive definite, or the method's parameters do
/// not fit it.
pub fn quantize_model_calibrated(
    tensors: &[Tensor],
    method: &CalibMethod,
    calib: &[Tensor],
    progress: impl FnMut(usize, usize, &str),
) -> Result<(QuantizedModel, ModelReport)> {
    check_calibration(tensors, calib, "the calibration tensors")?;
    let rtn_cfg = method.rtn();
    run_pipeline(tensors, method.label(), progress, |t| {
        let (rows, cols, w) = t.as_matrix()?;
        let named = |e: Error| Error::in_tensor(&t.name, e);
        let x = calib.iter().find(|c| c.name == t.name);
        let (payload, label, note, errs) = match x {
            None => {
                let lt = LinearTensor::quantize(w, rows, cols, &rtn_cfg).map_err(named)?;
                (
                    Payload::Linear(lt),
                    format!("rtn int{} (fallback)", rtn_cfg.bits),
                    Some("no calibration rows for this tensor: round-to-nearest".to_string()),
                    None,
                )
            }
            Some(c) => {
                let (n, xc, xs) = match (&c.data, c.shape.as_slice()) {
                    (TensorData::Float(v), [n, k]) if *k == cols && *n >= 2 => (*n, v, *k),
                    _ => {
                        return Err(Error::param(
                            format!("calibration tensor `{}`", c.name),
                            format!(
                                "expected floating activations of shape [tokens ≥ 2, {cols}] (in_features of the weight), got {} {:?}",
                                c.dtype, c.shape
                            ),
                        ));
                    }
                };
                check_finite(xc, xs, &format!("calibration tensor `{}`", c.name))?;
                let n_test = holdout_rows(n);
                let (fit, test) = xc.split_at((n - n_test) * cols);
                // X Wᵀ on the held-out rows once; each method and its baseline are
                // compared with it.
                let exact = matmul_xwt(test, w, cols);
                let out_err = |y: &[f32]| errors(&exact, y).0;
                let via = |w_hat: &[f32]| out_err(&matmul_xwt(test, w_hat, cols));
                let rtn = || LinearTensor::quantize(w, rows, cols, &rtn_cfg).map_err(named);
                let (payload, err, rtn_err) = match method {
                    CalibMethod::Gptq(g) => {
                        let h = Hessian::from_activations(fit, n - n_test, cols).map_err(named)?;
                        let q = gptq(w, rows, cols, &h, g).map_err(named)?;
                        let e = via(&q.dequantize());
                        (Payload::Gptq(q), e, via(&rtn()?.dequantize()))
                    }
                    CalibMethod::Spqr(sc) => {
                        let h = Hessian::from_activations(fit, n - n_test, cols).map_err(named)?;
                        let q = SpqrTensor::quantize(w, rows, cols, &h, sc).map_err(named)?;
                        let e = via(&q.dequantize());
                        (Payload::Spqr(q), e, via(&rtn()?.dequantize()))
                    }
                    // Baseline: plain W8A8 with a static activation scale.
                    CalibMethod::SmoothQuant { alpha } => {
                        let sq = activation::SmoothQuant::new(w, rows, cols, fit, *alpha)
                            .map_err(named)?;
                        let e = out_err(&sq.matmul(test));
                        let plain =
                            activation::w8a8_matmul(test, w, rows, cols, fit).map_err(named)?;
                        (Payload::Smooth(sq), e, out_err(&plain))
                    }
                    // Measured with the int8 weights it stores; baseline: vector-wise int8
                    // without the outlier decomposition.
                    CalibMethod::LlmInt8 { threshold } => {
                        let wq = rtn()?;
                        let (y, _) =
                            activation::llm_int8_matmul(test, &wq, *threshold).map_err(named)?;
                        let e = out_err(&y);
                        let plain = activation::int8_matmul(test, w, cols);
                        (Payload::Linear(wq), e, out_err(&plain))
                    }
                };
                (payload, method.label(), None, Some((err, rtn_err)))
            }
        };
        Ok((QuantizedTensor::of(t, label, note, payload), errs))
    })
}

impl QuantizedModel {
    /// Writes by extension: `.vq` (container, quantized), `.gguf` (GGUF blocks; only GGUF
    /// schemes, f16, bf16 and floating pass-through tensors fit), `.safetensors`
    /// (dequantized f32 with the same names and shapes; pass-through tensors unchanged).
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] for an unknown extension or, for `.gguf`, a tensor GGUF
    /// cannot hold; [`Error::Io`] if the file cannot be written.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        match path.extension().and_then(|e| e.to_str()) {
            Some("vq") => self.save_container(path),
            Some("gguf") => self.save_gguf(path),
            Some("safetensors") => self.save_dequantized(path),
            _ => Err(Error::param(
                "out",
                format!(
                    "{}: the output kind follows the extension: .vq, .gguf or .safetensors",
                    path.display()
                ),
            )),
        }
    }

    /// Saves as a vecquant container of kind `weights`.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] if a tensor payload cannot be encoded; [`Error::Io`] if
    /// the file cannot be written.
    pub fn save_container(&self, path: impl AsRef<Path>) -> Result<()> {
        let metas: Vec<TensorMeta> = self
            .tensors
            .iter()
            .map(|t| TensorMeta {
                name: t.name.clone(),
                shape: t.shape.clone(),
                dtype: t.dtype.clone(),
                scheme: t.scheme.clone(),
                note: t.note.clone(),
            })
            .collect();
        let mut w = ContainerWriter::new(KIND, &self.scheme, 0, Metric::L2, self.tensors.len());
        w.params(&metas)?;
        for (i, t) in self.tensors.iter().enumerate() {
            let bytes = postcard::to_stdvec(&t.payload)
                .map_err(|e| Error::param(&t.name, format!("cannot encode tensor payload: {e}")))?;
            w.section(&format!("t{i}"), bytes);
        }
        w.save(path)
    }

    /// Opens a container written by [`QuantizedModel::save_container`].
    ///
    /// # Errors
    /// [`Error::Io`] if the file cannot be read; [`Error::Format`] if it is not a valid
    /// container of kind `weights` or a tensor section is corrupt.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let c = Container::open(path)?;
        if c.header().kind != KIND {
            return Err(Error::format(
                path,
                format!(
                    "holds a `{}` index, not quantized weights (kind `{KIND}`)",
                    c.header().kind
                ),
            ));
        }
        let metas: Vec<TensorMeta> = c.params()?;
        let mut tensors = Vec::with_capacity(metas.len());
        for (i, m) in metas.into_iter().enumerate() {
            let bytes = c.section(&format!("t{i}"))?;
            let payload: Payload = postcard::from_bytes(bytes).map_err(|e| {
                Error::format(path, format!("tensor `{}` (section t{i}): {e}", m.name))
            })?;
            validate(&payload, &m.shape)
                .map_err(|e| Error::format(path, format!("tensor `{}`: {e}", m.name)))?;
            tensors.push(QuantizedTensor {
                name: m.name,
                shape: m.shape,
                dtype: m.dtype,
                scheme: m.scheme,
                note: m.note,
                payload,
            });
        }
        Ok(QuantizedModel {
            scheme: c.header().spec.clone(),
            tensors,
        })
    }

    /// Every tensor dequantized to f32 (pass-through tensors unchanged).
    ///
    /// # Errors
    /// As [`Payload::dequantize`](crate::model::Payload::dequantize).
    pub fn dequantized(&self) -> Result<Vec<Tensor>> {
        self.tensors
            .iter()
            .map(|t| {
                let numel: usize = t.shape.iter().product();
                Ok(match (&t.payload, t.payload.dequantize()?) {
                    (Payload::Passthrough { dtype, bytes }, None) => Tensor {
                        name: t.name.clone(),
                        shape: t.shape.clone(),
                        dtype: dtype.clone(),
                        source_bytes: bytes.len(),
                        data: TensorData::Raw(bytes.clone()),
                    },
                    (_, Some(v)) => Tensor {
                        name: t.name.clone(),
                        shape: t.shape.clone(),
                        dtype: "F32".into(),
                        source_bytes: numel * 4,
                        data: TensorData::Float(v),
                    },
                    (_, None) => unreachable!("only pass-through payloads lack floats"),
                })
            })
            .collect()
    }

    /// Writes the dequantized tensors as `.safetensors`.
    ///
    /// # Errors
    /// As [`QuantizedModel::dequantized`] and [`io::write_safetensors`].
    pub fn save_dequantized(&self, path: impl AsRef<Path>) -> Result<()> {
        let mut meta = std::collections::HashMap::new();
        meta.insert("vecquant.scheme".to_string(), self.scheme.clone());
        io::write_safetensors(path, &self.dequantized()?, Some(meta))
    }

    /// Writes a GGUF v3 file (tensor names kept).
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] naming a tensor that is neither a GGUF block type,
    /// f16/bf16 nor floating pass-through; [`Error::Io`] if the file cannot be written.
    pub fn save_gguf(&self, path: impl AsRef<Path>) -> Result<()> {
        self.save_gguf_with(path, &[])
    }

    /// Writes a GGUF v3 file with extra metadata: `general.name = "vecquant"`,
    /// `general.quantization_version = 2` and `vecquant.scheme`, then `metadata` in order
    /// (an entry with the same key replaces the default in place).
    ///
    /// # Errors
    /// As [`QuantizedModel::save_gguf`], and [`Error::InvalidParameter`] for metadata
    /// [`gguf::write_gguf`] refuses (a bad `general.alignment`, mixed-type arrays).
    pub fn save_gguf_with(
        &self,
        path: impl AsRef<Path>,
        metadata: &[(String, GgufValue)],
    ) -> Result<()> {
        let tensors = self
            .tensors
            .iter()
            .map(|t| {
                let (ty, bytes) = match &t.payload {
                    Payload::Gguf { type_id, bytes, .. } => (
                        crate::model::gguf_type(*type_id)?,
                        bytes.clone(),
                    ),
                    Payload::Float(f) if f.scales.is_empty() => (
                        match f.scheme {
                            crate::model::float::FloatScheme::F16 => GgmlType::F16,
                            _ => GgmlType::BF16,
                        },
                        f.codes.clone(),
                    ),
                    Payload::Passthrough { dtype, bytes } => match dtype.as_str() {
                        "F32" => (GgmlType::F32, bytes.clone()),
                        "F16" => (GgmlType::F16, bytes.clone()),
                        "BF16" => (GgmlType::BF16, bytes.clone()),
                        "F64" => (GgmlType::F64, bytes.clone()),
                        "I8" => (GgmlType::I8, bytes.clone()),
                        "I16" => (GgmlType::I16, bytes.clone()),
                        "I32" => (GgmlType::I32, bytes.clone()),
                        "I64" => (GgmlType::I64, bytes.clone()),
                        other => {
                            return Err(Error::param(
                                &t.name,
                                format!("a {other} tensor cannot be written to GGUF"),
                            ));
                        }
                    },
                    _ => {
                        return Err(Error::param(
                            &t.name,
                            format!(
                                "scheme `{}` has no GGUF encoding; write .vq or .safetensors, or use q8_0/q4_0/q4_1/q4_k/q6_k/f16/bf16",
                                t.scheme
                            ),
                        ));
                    }
                };
                GgufTensor::new(t.name.clone(), t.shape.clone(), ty, bytes)
            })
            .collect::<Result<Vec<_>>>()?;
        let meta = vec![
            (
                "general.name".to_string(),
                GgufValue::String("vecquant".into()),
            ),
            (
                "general.quantization_version".to_string(),
                GgufValue::U32(2),
            ),
            (
                "vecquant.scheme".to_string(),
                GgufValue::String(self.scheme.clone()),
            ),
        ];
        let mut meta = meta;
        gguf::merge_metadata(&mut meta, metadata.to_vec());
        gguf::write_gguf(path, &meta, &tensors)
    }
}

/// Checks that a payload read from a file is consistent with its shape before anything
/// indexes into it.
pub(crate) fn validate(p: &Payload, shape: &[usize]) -> std::result::Result<(), String> {
    use crate::model::pack::packed_len;
    let numel: usize = shape.iter().product();
    let dims = |rows: usize, cols: usize| -> std::result::Result<(), String> {
        if shape.len() == 2 && shape[0] == rows && shape[1] == cols {
            Ok(())
        } else {
            Err(format!("payload is {rows}×{cols}, header says {shape:?}"))
        }
    };
    let want = |what: &str, got: usize, need: usize| {
        if got == need {
            Ok(())
        } else {
            Err(format!("{what}: {got} entries, expected {need}"))
        }
    };
    match p {
        Payload::Linear(t) => {
            dims(t.rows, t.cols)?;
            t.config.validate(t.cols).map_err(|e| e.to_string())?;
            let groups = numel / t.config.granularity.group_len(t.rows, t.cols);
            want("steps", t.steps.len(), groups)?;
            if !t.config.symmetric {
                want("zero points", t.zeros.len(), groups)?;
            }
            want(
                "codes",
                t.codes.len(),
                t.rows * packed_len(t.cols, t.config.bits),
            )
        }
        Payload::Block(t) => {
            dims(t.rows, t.cols)?;
            if t.config.block == 0 || !t.config.block.is_multiple_of(2) {
                return Err(format!("bad block size {}", t.config.block));
            }
            let blocks = numel.div_ceil(t.config.block);
            match &t.constants {
                crate::model::blockwise::Constants::Plain(v) => want("constants", v.len(), blocks)?,
                crate::model::blockwise::Constants::Double {
                    block,
                    scales,
                    codes,
                    ..
                } => {
                    if *block == 0 {
                        return Err("bad constant block".into());
                    }
                    want("constants", codes.len(), blocks)?;
                    want("constant scales", scales.len(), blocks.div_ceil(*block))?;
                }
            }
            want("codes", t.codes.len(), numel.div_ceil(2))
        }
        Payload::Float(t) => {
            dims(t.rows, t.cols)?;
            match t.scheme {
                crate::model::float::FloatScheme::F16 | crate::model::float::FloatScheme::Bf16 => {
                    want("codes", t.codes.len(), 2 * numel)
                }
                _ => {
                    t.granularity.validate(t.cols).map_err(|e| e.to_string())?;
                    want(
                        "scales",
                        t.scales.len(),
                        numel / t.granularity.group_len(t.rows, t.cols),
                    )?;
                    want("codes", t.codes.len(), numel)
                }
            }
        }
        Payload::KMeans(t) => {
            dims(t.rows, t.cols)?;
            if !(1..=8).contains(&t.bits) {
                return Err(format!("bad bits {}", t.bits));
            }
            let books = match t.scope {
                crate::model::kmeans_codebook::KMeansScope::Tensor => 1,
                crate::model::kmeans_codebook::KMeansScope::Row => t.rows,
            };
            want("codebooks", t.codebooks.len(), books)?;
            want("codes", t.codes.len(), t.rows * packed_len(t.cols, t.bits))
        }
        Payload::Gguf {
            type_id,
            rows,
            cols,
            bytes,
        } => {
            dims(*rows, *cols)?;
            let ty = crate::model::gguf_type(*type_id).map_err(|e| e.to_string())?;
            let rb = ty.row_bytes(*cols).map_err(|e| e.to_string())?;
            want("bytes", bytes.len(), rows * rb)
        }
        Payload::Gptq(t) => {
            validate(&Payload::Linear(t.linear.clone()), shape)?;
            match &t.perm {
                Some(p)
                    if p.len() != t.linear.cols
                        || p.iter().any(|&c| c as usize >= t.linear.cols) =>
                {
                    Err("bad act-order permutation".into())
                }
                _ => Ok(()),
            }
        }
        Payload::Spqr(t) => {
            dims(t.rows, t.cols)?;
            let c = &t.config;
            if !(2..=8).contains(&c.bits)
                || !(1..=8).contains(&c.stat_bits)
                || c.group == 0
                || !t.cols.is_multiple_of(c.group)
                || c.stat_group == 0
            {
                return Err("bad SpQR parameters".into());
            }
            let ng = t.cols / c.group;
            want("codes", t.codes.len(), t.rows * packed_len(t.cols, c.bits))?;
            want(
                "scale codes",
                t.step_codes.len(),
                t.rows * packed_len(ng, c.stat_bits),
            )?;
            want(
                "zero codes",
                t.zero_codes.len(),
                t.rows * packed_len(ng, c.stat_bits),
            )?;
            let metas = t.rows.div_ceil(c.stat_group) * ng * 2;
            want("scale parameters", t.step_meta.len(), metas)?;
            want("zero parameters", t.zero_meta.len(), metas)?;
            want("row pointers", t.row_ptr.len(), t.rows + 1)?;
            let n = t.out_vals.len();
            want("outlier columns", t.out_cols.len(), n)?;
            if t.row_ptr[0] != 0
                || t.row_ptr.windows(2).any(|w| w[0] > w[1])
                || t.row_ptr[t.rows] as usize != n
                || t.out_cols.iter().any(|&c| c as usize >= t.cols)
            {
                return Err("bad outlier CSR".into());
            }
            match &t.perm {
                Some(p) if p.len() != t.cols || p.iter().any(|&c| c as usize >= t.cols) => {
                    Err("bad act-order permutation".into())
                }
                _ => Ok(()),
            }
        }
        Payload::Smooth(t) => {
            validate(&Payload::Linear(t.weight.clone()), shape)?;
            want("smoothing factors", t.smooth.len(), t.weight.cols)
        }
        Payload::Passthrough { bytes, .. } => {
            if bytes.len() < numel {
                Err(format!("{} bytes for {numel} elements", bytes.len()))
            } else {
                Ok(())
            }
        }
    }
}
