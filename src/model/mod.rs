//! Model-weight quantization: the calibration-free schemes of seeds 001–004.
//!
//! | scheme | what it stores | bits/weight (4096-wide rows) |
//! | --- | --- | --- |
//! | `absmax` (`--bits 8/4/3/2`) | symmetric int codes, one f32 scale per tensor/row/group | b + 32/G |
//! | `zeropoint` | unsigned codes, f32 scale + u8 zero point per tensor/row/group | b + 40/G |
//! | `nf4`, `fp4` | 4-bit NormalFloat / E2M1 codes, f32 absmax per 64 | 4.5 |
//! | `nf4-dq` | NF4 with the absmax constants double-quantized (int8, blocks of 256) | ≈ 4.127 |
//! | `fp8-e4m3`, `fp8-e5m2` | FP8 codes, f32 scale per tensor/row/group | 8 + 32/G |
//! | `f16`, `bf16` | saturating casts | 16 |
//! | `kmeans` (`--bits`) | codes into a 2^b-level k-means codebook per tensor or row | b + ε |
//! | `q8_0`, `q4_0`, `q4_1`, `q4_k`, `q6_k` | GGUF blocks, byte-compatible with llama.cpp | 8.5, 4.5, 5, 4.5, 6.5625 |
//!
//! [`quantize_tensor`] quantizes one 2-D tensor; [`pipeline::quantize_model`] runs a whole
//! weight file (2-D floating tensors are quantized, everything else passes through) and
//! produces a [`report::ModelReport`]. The codebooks (NF4, FP4/FP8 grids, k-means levels)
//! are [`Codebook`](crate::quant::codebook::Codebook)s that the vector
//! [`ScalarQuantizer`](crate::quant::scalar::ScalarQuantizer) accepts as its levels.
//!
//! ```
//! use vecquant::model::{Scheme, SchemeOptions, quantize_tensor};
//! use vecquant::model::io::Tensor;
//! let w: Vec<f32> = (0..64 * 256).map(|i| ((i * 7919) % 1000) as f32 / 1e4 - 0.05).collect();
//! let t = Tensor::matrix("layer.weight", 64, 256, w);
//! let q = quantize_tensor(&t, &Scheme::parse("nf4-dq", &SchemeOptions::default()).unwrap()).unwrap();
//! let r = q.report(&t).unwrap();
//! assert!(r.bits_per_weight < 4.2 && r.rel_weight_error < 0.15);
//! ```

pub mod activation;
pub mod blockwise;
pub mod float;
pub mod formats;
pub mod gguf;
pub mod gptq;
pub mod inspect;
pub mod io;
pub mod kmeans_codebook;
pub mod levels;
pub mod linear;
pub mod options;
pub mod pack;
pub mod pipeline;
pub mod report;
pub mod spqr;
pub mod synthetic;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use blockwise::{BlockConfig, BlockTensor};
use float::{FloatScheme, FloatTensor};
use gguf::GgmlType;
use io::Tensor;
use kmeans_codebook::{KMeansScope, KMeansTensor};
use linear::{Clip, Granularity, LinearConfig, LinearTensor, Rounding};

pub use pipeline::{CalibMethod, QuantizedModel, quantize_model, quantize_model_calibrated};
pub use report::{ModelReport, TensorReport};

/// The calibration-based scheme names (they need `--calib`).
pub const CALIBRATED_SCHEMES: &str = "gptq, spqr, smoothquant, llm-int8";

/// Builds a calibration-based method from its name: `gptq` (`--bits` 2..=8, default 4;
/// `--group` default 128, `--granularity row` for none; `act_order`, `damp`), `spqr`
/// (`--bits` default 3, `--group` default 16), `smoothquant` (`alpha`), `llm-int8`
/// (`threshold`). `None` when `name` is not one of them.
///
/// # Errors
/// None at parse time (the result is always `Some(Ok(_))` or `None`): out-of-range
/// options (bits, group, `alpha`, `threshold`, `damp`) are reported by
/// [`quantize_model_calibrated`] when the method runs.
pub fn parse_calibrated(
    name: &str,
    o: &SchemeOptions,
    act_order: bool,
    damp: f64,
    alpha: f32,
    threshold: f32,
) -> Option<Result<CalibMethod>> {
    let group = |default: usize| match o.granularity {
        Some(GranularityKind::Row) => None,
        _ => Some(o.group.unwrap_or(default)),
    };
    Some(Ok(match name.to_ascii_lowercase().as_str() {
        "gptq" => CalibMethod::Gptq(gptq::GptqConfig {
            bits: o.bits.unwrap_or(4),
            group: group(128),
            act_order,
            damp,
            ..gptq::GptqConfig::default()
        }),
        "spqr" => CalibMethod::Spqr(spqr::SpqrConfig {
            bits: o.bits.unwrap_or(3),
            group: o.group.unwrap_or(16),
            act_order,
            damp,
            ..spqr::SpqrConfig::default()
        }),
        "smoothquant" => CalibMethod::SmoothQuant { alpha },
        "llm-int8" | "llm.int8" => CalibMethod::LlmInt8 { threshold },
        _ => return None,
    }))
}

/// The accepted scheme names, for error messages and `--help`.
pub const SCHEMES: &str = "absmax, zeropoint, nf4, nf4-dq, fp4, fp8-e4m3, fp8-e5m2, f16, bf16, kmeans, q8_0, q4_0, q4_1, q4_k, q6_k (and with --calib: gptq, spqr, smoothquant, llm-int8)";

/// Options that refine a scheme name (the CLI flags of `quantize-model`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SchemeOptions {
    /// Bits (absmax/zeropoint 2..=8, kmeans 1..=8); `None` = the scheme's default (8, 4).
    pub bits: Option<u32>,
    /// Scale sharing for absmax/zeropoint/fp8 (default: group of 128 for absmax/zeropoint
    /// with fewer than 8 bits, row otherwise) and codebook sharing for kmeans (tensor or
    /// row).
    pub granularity: Option<GranularityKind>,
    /// Group size for `group` granularity, and block size for nf4/fp4 when given.
    pub group: Option<usize>,
    /// Rounding for absmax/zeropoint.
    pub rounding: Rounding,
    /// Range selection for absmax/zeropoint.
    pub clip: Clip,
    /// Seed (k-means, stochastic rounding).
    pub seed: u64,
}

impl Default for SchemeOptions {
    fn default() -> Self {
        SchemeOptions {
            bits: None,
            granularity: None,
            group: None,
            rounding: Rounding::Nearest,
            clip: Clip::MinMax,
            seed: 42,
        }
    }
}

/// `--granularity` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GranularityKind {
    /// One scale per tensor.
    Tensor,
    /// One scale per row.
    Row,
    /// One scale per group of `--group` weights.
    Group,
}

impl std::str::FromStr for GranularityKind {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "tensor" => Ok(GranularityKind::Tensor),
            "row" | "channel" => Ok(GranularityKind::Row),
            "group" => Ok(GranularityKind::Group),
            _ => Err(Error::param(
                "granularity",
                format!("`{s}` is not one of tensor, row, group"),
            )),
        }
    }
}

/// Parses `--rounding`: nearest, floor, ceil, stochastic (seeded with `seed`).
///
/// # Errors
/// [`Error::InvalidParameter`] (`rounding`) for any other name.
pub fn parse_rounding(s: &str, seed: u64) -> Result<Rounding> {
    match s {
        "nearest" => Ok(Rounding::Nearest),
        "floor" => Ok(Rounding::Floor),
        "ceil" => Ok(Rounding::Ceil),
        "stochastic" => Ok(Rounding::Stochastic { seed }),
        _ => Err(Error::param(
            "rounding",
            format!("`{s}` is not one of nearest, floor, ceil, stochastic"),
        )),
    }
}

/// Parses `--clip`: minmax, percentile:P, mse, kl.
///
/// # Errors
/// [`Error::InvalidParameter`] (`clip`) for any other name or a percentile that is not a
/// number in (50, 100].
pub fn parse_clip(s: &str) -> Result<Clip> {
    match s {
        "minmax" => Ok(Clip::MinMax),
        "mse" => Ok(Clip::Mse),
        "kl" => Ok(Clip::Kl),
        _ => {
            if let Some(p) = s.strip_prefix("percentile:") {
                let p: f32 = p.parse().map_err(|_| {
                    Error::param("clip", format!("`{s}`: the percentile is not a number"))
                })?;
                if !(p > 50.0 && p <= 100.0) {
                    return Err(Error::param(
                        "clip",
                        format!("percentile must be in (50, 100], got {p}"),
                    ));
                }
                Ok(Clip::Percentile(p))
            } else {
                Err(Error::param(
                    "clip",
                    format!("`{s}` is not one of minmax, percentile:P, mse, kl"),
                ))
            }
        }
    }
}

/// A fully specified quantization scheme.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Scheme {
    /// Symmetric absmax or asymmetric zero-point.
    Linear(LinearConfig),
    /// NF4 / FP4 blocks.
    Block(BlockConfig),
    /// f16, bf16, FP8.
    Float(FloatScheme, Granularity),
    /// k-means codebook.
    KMeans {
        /// Bits per code.
        bits: u32,
        /// Codebook sharing.
        scope: KMeansScope,
        /// Seed.
        seed: u64,
    },
    /// A GGUF block type.
    Gguf(GgmlType),
}

impl Scheme {
    /// Builds a scheme from its name and options; the error lists the accepted names.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] for an unknown name (the message lists the accepted
    /// ones) or options the scheme does not accept (bits, group).
    pub fn parse(name: &str, o: &SchemeOptions) -> Result<Scheme> {
        let lower = name.to_ascii_lowercase();
        let group = o.group.unwrap_or(128);
        let gran = |default: GranularityKind| match o.granularity.unwrap_or(default) {
            GranularityKind::Tensor => Granularity::Tensor,
            GranularityKind::Row => Granularity::Row,
            GranularityKind::Group => Granularity::Group(group),
        };
        let scheme = match lower.as_str() {
            "absmax" | "zeropoint" => {
                let bits = o.bits.unwrap_or(8);
                let default = if bits >= 8 {
                    GranularityKind::Row
                } else {
                    GranularityKind::Group
                };
                Scheme::Linear(LinearConfig {
                    bits,
                    symmetric: lower == "absmax",
                    granularity: gran(default),
                    rounding: o.rounding,
                    clip: o.clip,
                })
            }
            "nf4" | "nf4-dq" | "fp4" => Scheme::Block(BlockConfig {
                block: o.group.unwrap_or(64),
                ..match lower.as_str() {
                    "nf4" => BlockConfig::nf4(),
                    "nf4-dq" => BlockConfig::nf4_double(),
                    _ => BlockConfig::fp4(),
                }
            }),
            "fp8-e4m3" => Scheme::Float(FloatScheme::Fp8E4m3, gran(GranularityKind::Row)),
            "fp8-e5m2" => Scheme::Float(FloatScheme::Fp8E5m2, gran(GranularityKind::Row)),
            "f16" => Scheme::Float(FloatScheme::F16, Granularity::Tensor),
            "bf16" => Scheme::Float(FloatScheme::Bf16, Granularity::Tensor),
            "kmeans" => Scheme::KMeans {
                bits: o.bits.unwrap_or(4),
                scope: match o.granularity {
                    Some(GranularityKind::Row) => KMeansScope::Row,
                    Some(GranularityKind::Group) => {
                        return Err(Error::param(
                            "granularity",
                            "kmeans shares a codebook per tensor or per row, not per group",
                        ));
                    }
                    _ => KMeansScope::Tensor,
                },
                seed: o.seed,
            },
            _ => match GgmlType::from_name(&lower) {
                Some(t) if t.is_quantized() => Scheme::Gguf(t),
                _ => {
                    return Err(Error::param(
                        "scheme",
                        format!("unknown scheme `{name}`; accepted: {SCHEMES}"),
                    ));
                }
            },
        };
        if let Scheme::Linear(c) = &scheme
            && !(2..=8).contains(&c.bits)
        {
            return Err(Error::param(
                "bits",
                format!(
                    "{name} takes --bits 2..=8 (8, 4, 3, 2 are usual), got {}",
                    c.bits
                ),
            ));
        }
        if let Scheme::KMeans { bits, .. } = scheme
            && !(1..=8).contains(&bits)
        {
            return Err(Error::param(
                "bits",
                format!("kmeans takes --bits 1..=8, got {bits}"),
            ));
        }
        Ok(scheme)
    }

    /// A short description, e.g. `absmax int4 group128 nearest minmax`.
    pub fn label(&self) -> String {
        fn g(x: &Granularity) -> String {
            match x {
                Granularity::Tensor => "tensor".into(),
                Granularity::Row => "row".into(),
                Granularity::Group(n) => format!("group{n}"),
            }
        }
        match self {
            Scheme::Linear(c) => {
                let clip = match c.clip {
                    Clip::MinMax => "minmax".to_string(),
                    Clip::Percentile(p) => format!("percentile:{p}"),
                    Clip::Mse => "mse".into(),
                    Clip::Kl => "kl".into(),
                };
                let r = match c.rounding {
                    Rounding::Nearest => "nearest",
                    Rounding::Floor => "floor",
                    Rounding::Ceil => "ceil",
                    Rounding::Stochastic { .. } => "stochastic",
                };
                format!(
                    "{} int{} {} {r} {clip}",
                    if c.symmetric { "absmax" } else { "zeropoint" },
                    c.bits,
                    g(&c.granularity)
                )
            }
            Scheme::Block(b) => format!(
                "{}{} block{}",
                match b.grid {
                    blockwise::BlockGrid::Nf4 => "nf4",
                    blockwise::BlockGrid::Fp4 => "fp4",
                },
                if b.double_block.is_some() { "-dq" } else { "" },
                b.block
            ),
            Scheme::Float(f, gr) => match f {
                FloatScheme::F16 => "f16".into(),
                FloatScheme::Bf16 => "bf16".into(),
                FloatScheme::Fp8E4m3 => format!("fp8-e4m3 {}", g(gr)),
                FloatScheme::Fp8E5m2 => format!("fp8-e5m2 {}", g(gr)),
            },
            Scheme::KMeans { bits, scope, .. } => format!(
                "kmeans {}-bit per {}",
                bits,
                match scope {
                    KMeansScope::Tensor => "tensor",
                    KMeansScope::Row => "row",
                }
            ),
            Scheme::Gguf(t) => t.name().to_ascii_lowercase(),
        }
    }
}

/// The encoded form of one tensor.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Payload {
    /// absmax / zeropoint.
    Linear(LinearTensor),
    /// NF4 / FP4.
    Block(BlockTensor),
    /// f16 / bf16 / FP8.
    Float(FloatTensor),
    /// k-means codebook.
    KMeans(KMeansTensor),
    /// GGUF blocks (`type_id` is the ggml type id).
    Gguf {
        /// ggml type id.
        type_id: u32,
        /// Rows.
        rows: usize,
        /// Columns.
        cols: usize,
        /// Encoded rows.
        bytes: Vec<u8>,
    },
    /// GPTQ (codes in act-order when permuted).
    Gptq(gptq::GptqTensor),
    /// SpQR.
    Spqr(spqr::SpqrTensor),
    /// SmoothQuant W8A8: smoothed int8 weights, smoothing factors, activation scale.
    Smooth(activation::SmoothQuant),
    /// Not quantized: the original little-endian bytes in the source dtype.
    Passthrough {
        /// Source dtype (`F32`, `F16`, `I64`, ...).
        dtype: String,
        /// Bytes.
        bytes: Vec<u8>,
    },
}

impl Payload {
    /// Stored size in bits, every scale, zero point and constant included.
    pub fn storage_bits(&self) -> u64 {
        match self {
            Payload::Linear(t) => t.storage_bits(),
            Payload::Gptq(t) => t.storage_bits(),
            Payload::Spqr(t) => t.storage_bits(),
            // Int8 weights and per-row steps, plus one f32 smoothing factor per input
            // column and the activation step.
            Payload::Smooth(t) => t.weight.storage_bits() + 32 * t.smooth.len() as u64 + 32,
            Payload::Block(t) => t.storage_bits(),
            Payload::Float(t) => t.storage_bits(),
            Payload::KMeans(t) => t.storage_bits(),
            Payload::Gguf { bytes, .. } | Payload::Passthrough { bytes, .. } => {
                8 * bytes.len() as u64
            }
        }
    }

    /// The reconstruction (f32, row-major); `None` for non-floating pass-through data.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] for an unknown GGUF type id; [`Error::Format`] when GGUF
    /// block bytes do not match the shape.
    pub fn dequantize(&self) -> Result<Option<Vec<f32>>> {
        Ok(Some(match self {
            Payload::Linear(t) => t.dequantize(),
            Payload::Gptq(t) => t.dequantize(),
            Payload::Spqr(t) => t.dequantize(),
            Payload::Smooth(t) => t.dequantize(),
            Payload::Block(t) => t.dequantize(),
            Payload::Float(t) => t.dequantize(),
            Payload::KMeans(t) => t.dequantize(),
            Payload::Gguf {
                type_id,
                rows,
                cols,
                bytes,
            } => {
                let ty = gguf_type(*type_id)?;
                gguf::dequantize(ty, *rows, *cols, bytes)?
            }
            Payload::Passthrough { dtype, bytes } => match io::decode_float_named(dtype, bytes) {
                Some(v) => v,
                None => return Ok(None),
            },
        }))
    }
}

/// The ggml type of a stored `Payload::Gguf`.
pub(crate) fn gguf_type(type_id: u32) -> Result<GgmlType> {
    GgmlType::from_id(type_id)
        .ok_or_else(|| Error::param("gguf type", format!("unknown ggml type id {type_id}")))
}

/// One quantized (or passed-through) tensor.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct QuantizedTensor {
    /// Name as in the source file.
    pub name: String,
    /// Shape as in the source file.
    pub shape: Vec<usize>,
    /// Source dtype.
    pub dtype: String,
    /// What was actually used (`q5_0 (fallback from q4_k: ...)`, `passthrough`, ...).
    pub scheme: String,
    /// Why the scheme differs from the requested one, if it does.
    pub note: Option<String>,
    /// The encoded data.
    pub payload: Payload,
}

/// Quantizes one 2-D floating tensor with `scheme`. Errors name the tensor.
///
/// # Errors
/// [`Error::Tensor`] naming the tensor and wrapping why: not a 2-D float tensor, non-finite
/// values, or parameters that do not fit its shape.
pub fn quantize_tensor(t: &Tensor, scheme: &Scheme) -> Result<QuantizedTensor> {
    let (rows, cols, data) = t.as_matrix()?;
    // Every quantizer validates its input (finite values, shapes, parameters) in its
    // own pass; errors are wrapped with the tensor's name.
    let named = |e: Error| Error::in_tensor(&t.name, e);
    let mut note = None;
    let mut label = scheme.label();
    let payload = match scheme {
        Scheme::Linear(c) => {
            Payload::Linear(LinearTensor::quantize(data, rows, cols, c).map_err(named)?)
        }
        Scheme::Block(c) => {
            Payload::Block(BlockTensor::quantize(data, rows, cols, c).map_err(named)?)
        }
        Scheme::Float(f, g) => {
            Payload::Float(FloatTensor::quantize(data, rows, cols, *f, *g).map_err(named)?)
        }
        Scheme::KMeans { bits, scope, seed } => Payload::KMeans(
            KMeansTensor::quantize(data, rows, cols, *bits, *scope, *seed).map_err(named)?,
        ),
        Scheme::Gguf(want) => {
            let ty = gguf::fallback_type(*want, cols);
            if ty != *want {
                label = ty.name().to_ascii_lowercase();
                note = Some(format!(
                    "row length {cols} is not a multiple of {}'s block of {}: stored as {} (llama.cpp's fallback)",
                    want.name(),
                    want.block_size(),
                    ty.name()
                ));
            }
            Payload::Gguf {
                type_id: ty.id(),
                rows,
                cols,
                bytes: gguf::quantize(ty, rows, cols, data).map_err(named)?,
            }
        }
    };
    Ok(QuantizedTensor::of(t, label, note, payload))
}

impl QuantizedTensor {
    /// `t`'s name, shape and dtype with the scheme used, a note and the encoded data.
    pub fn of(t: &Tensor, scheme: String, note: Option<String>, payload: Payload) -> Self {
        QuantizedTensor {
            name: t.name.clone(),
            shape: t.shape.clone(),
            dtype: t.dtype.clone(),
            scheme,
            note,
            payload,
        }
    }

    /// Measures this tensor against its source: bits per weight, relative Frobenius error
    /// and max abs error.
    ///
    /// # Errors
    /// As [`report::tensor_report`].
    pub fn report(&self, source: &Tensor) -> Result<TensorReport> {
        report::tensor_report(self, source)
    }
}
