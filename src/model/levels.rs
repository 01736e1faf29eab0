//! The weight pipeline as a codebook source for the vector scalar quantizer: what a
//! `--levels` value names, resolved into the [`Levels`] of an
//! [`SqConfig`](crate::quant::scalar::SqConfig).
//!
//! | value | levels | count |
//! | --- | --- | --- |
//! | `uniform` | evenly spaced ([`Levels::Uniform`]) | `2^bits` |
//! | `normal` (`nq`) | normal quantiles ([`Levels::NormalQuantile`]) | `2^bits` |
//! | `lloyd-max` (`lm`) | trained on the data ([`Levels::LloydMax`]) | `2^bits` |
//! | `nf4` | QLoRA's NormalFloat-4 grid | 16 |
//! | `fp4` (`e2m1`) | the finite FP4 E2M1 values | 15 |
//! | `e4m3` (`fp8-e4m3`) | the finite FP8 E4M3 values | 253 |
//! | `e5m2` (`fp8-e5m2`) | the finite FP8 E5M2 values | 247 |
//! | `PATH:TENSOR` | the k-means codebook of `TENSOR` in a weights container written by `quantize-model --scheme kmeans --granularity tensor` | up to `2^b` |
//!
//! A grid becomes [`Levels::Custom`]: the scalar quantizer maps its extreme levels to each
//! dimension's range ends, so only the grid's *shape* (where its levels crowd) matters,
//! not its units. A grid needs at most `2^bits` levels to fit the codes; fewer leaves
//! codes unused (e.g. `nf4` under `SQ8`).
//!
//! ```
//! use vecquant::model::levels::LevelSource;
//! use vecquant::quant::scalar::Levels;
//! let nf4: LevelSource = "nf4".parse().unwrap();
//! match nf4.levels(4).unwrap() {
//!     Levels::Custom(cb) => assert_eq!(cb.len(), 16),
//!     other => panic!("{other:?}"),
//! }
//! // 253 FP8 values do not fit 4-bit codes.
//! let e = "e4m3".parse::<LevelSource>().unwrap().levels(4).unwrap_err();
//! assert!(e.to_string().contains("253") && e.to_string().contains("16"));
//! assert!("nf5".parse::<LevelSource>().is_err());
//! ```

use std::fmt;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::Deserialize;

use crate::error::{Error, Result};
use crate::model::formats::FloatFormat;
use crate::model::kmeans_codebook::KMeansScope;
use crate::model::pipeline::QuantizedModel;
use crate::model::{Payload, blockwise::BlockGrid};
use crate::quant::codebook::Codebook;
use crate::quant::codec::InnerSpec;
use crate::quant::scalar::{Levels, RangeEstimator, SqConfig};
use crate::store::Container;

/// The accepted `--levels` values, for messages and `--help`.
pub const ACCEPTED: &str = "uniform, normal, lloyd-max, nf4, fp4 (e2m1), e4m3, e5m2, or PATH:TENSOR (a k-means codebook \
     in a weights container from `quantize-model --scheme kmeans --granularity tensor`)";

/// Tensor names listed in an error before the list is cut short.
const LISTED_TENSORS: usize = 24;

/// A fixed grid from a number format or the NF4 table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Grid {
    /// QLoRA's 16 NormalFloat levels.
    Nf4,
    /// FP4 E2M1: ±{0, 0.5, 1, 1.5, 2, 3, 4, 6} (15 distinct values).
    Fp4,
    /// FP8 E4M3 (NaN-only specials): 253 distinct finite values up to ±448.
    E4m3,
    /// FP8 E5M2 (IEEE specials): 247 distinct finite values up to ±57344.
    E5m2,
}

impl Grid {
    /// Every grid, in the order messages list them.
    pub const ALL: [Grid; 4] = [Grid::Nf4, Grid::Fp4, Grid::E4m3, Grid::E5m2];

    /// The grid's name as `--levels` takes it.
    pub fn name(self) -> &'static str {
        match self {
            Grid::Nf4 => "nf4",
            Grid::Fp4 => "fp4",
            Grid::E4m3 => "e4m3",
            Grid::E5m2 => "e5m2",
        }
    }

    /// The grid as a codebook, in the format's own units (the weight pipeline's grids:
    /// [`BlockGrid`] for NF4, [`FloatFormat::grid`] for the float formats).
    ///
    /// # Errors
    /// None for the built-in grids (each is a valid codebook of at most 256 levels); the
    /// `Result` is that of [`FloatFormat::grid`] and [`Codebook::new`].
    pub fn codebook(self) -> Result<Codebook> {
        let format = match self {
            Grid::Nf4 => return Ok(BlockGrid::Nf4.codebook()),
            Grid::Fp4 => FloatFormat::E2M1,
            Grid::E4m3 => FloatFormat::E4M3,
            Grid::E5m2 => FloatFormat::E5M2,
        };
        Codebook::new(format.grid()?)
    }

    /// The grid whose levels are an affine image of `cb`'s (the scalar quantizer only
    /// sees a grid up to scale and offset), if any.
    pub fn recognise(cb: &Codebook) -> Option<Grid> {
        let unit = unit_levels(cb);
        Grid::ALL.into_iter().find(|g| {
            g.codebook().is_ok_and(|g| {
                let gu = unit_levels(&g);
                gu.len() == unit.len() && gu.iter().zip(&unit).all(|(a, b)| (a - b).abs() < 1e-6)
            })
        })
    }
}

/// `cb`'s levels mapped affinely onto `[0, 1]`.
fn unit_levels(cb: &Codebook) -> Vec<f32> {
    let l = cb.levels();
    let (a, b) = (l[0], l[l.len() - 1]);
    l.iter().map(|&v| (v - a) / (b - a)).collect()
}

/// Where the scalar quantizer's levels come from: a `--levels` value, parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LevelSource {
    /// Evenly spaced levels.
    Uniform,
    /// Normal quantiles.
    Normal,
    /// Lloyd-Max levels trained on the data.
    LloydMax,
    /// A fixed grid.
    Grid(Grid),
    /// The shared k-means codebook of `tensor` in the weights container `path`.
    Weights {
        /// The weights container (`.vq`, kind `weights`).
        path: PathBuf,
        /// The tensor's name in it.
        tensor: String,
    },
}

impl FromStr for LevelSource {
    type Err = Error;

    /// Parses a `--levels` value (names are case-insensitive). Only the form is checked
    /// here; the file of `PATH:TENSOR` is read by [`LevelSource::levels`].
    fn from_str(value: &str) -> Result<Self> {
        let v = value.trim();
        let named = match v.to_ascii_lowercase().as_str() {
            "uniform" | "u" => Some(LevelSource::Uniform),
            "normal" | "nq" | "normal-quantile" => Some(LevelSource::Normal),
            "lloyd-max" | "lloydmax" | "lm" => Some(LevelSource::LloydMax),
            "nf4" => Some(LevelSource::Grid(Grid::Nf4)),
            "fp4" | "e2m1" | "fp4-e2m1" => Some(LevelSource::Grid(Grid::Fp4)),
            "e4m3" | "fp8-e4m3" => Some(LevelSource::Grid(Grid::E4m3)),
            "e5m2" | "fp8-e5m2" => Some(LevelSource::Grid(Grid::E5m2)),
            _ => None,
        };
        if let Some(s) = named {
            return Ok(s);
        }
        // The tensor follows the last colon, so a path may hold colons of its own.
        match v.rsplit_once(':') {
            Some((path, tensor)) if !path.is_empty() && !tensor.is_empty() => {
                Ok(LevelSource::Weights {
                    path: PathBuf::from(path),
                    tensor: tensor.to_string(),
                })
            }
            _ => {
                let hint = if !v.is_empty() && Path::new(v).is_file() {
                    format!(
                        "`{v}` is a file: name the tensor whose k-means codebook to use, \
                         as `{v}:TENSOR`"
                    )
                } else {
                    format!("`{value}` is not a level grid")
                };
                Err(Error::param(
                    "levels",
                    format!("{hint}; accepted: {ACCEPTED}"),
                ))
            }
        }
    }
}

impl fmt::Display for LevelSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LevelSource::Uniform => f.write_str("uniform"),
            LevelSource::Normal => f.write_str("normal"),
            LevelSource::LloydMax => f.write_str("lloyd-max"),
            LevelSource::Grid(g) => f.write_str(g.name()),
            LevelSource::Weights { path, tensor } => write!(f, "{}:{tensor}", path.display()),
        }
    }
}

impl LevelSource {
    /// The levels for a `bits`-bit scalar quantizer (4 or 8).
    ///
    /// # Errors
    /// A grid or codebook with more than `2^bits` levels (the message names both
    /// numbers); for `PATH:TENSOR`, an unreadable file or one that is not a weights
    /// container, a missing tensor (the message lists the k-means tensors there are), a
    /// tensor quantized with another scheme (named), or one with a codebook per row.
    pub fn levels(&self, bits: u8) -> Result<Levels> {
        if bits != 4 && bits != 8 {
            return Err(Error::param(
                "bits",
                format!("{bits} is not supported by the scalar quantizer; use 8 or 4"),
            ));
        }
        let cb = match self {
            LevelSource::Uniform => return Ok(Levels::Uniform),
            LevelSource::Normal => return Ok(Levels::NormalQuantile),
            LevelSource::LloydMax => return Ok(Levels::LloydMax),
            LevelSource::Grid(g) => g.codebook()?,
            LevelSource::Weights { path, tensor } => weights_codebook(path, tensor)?,
        };
        let room = 1usize << bits;
        if cb.len() > room {
            return Err(Error::param(
                "levels",
                format!(
                    "`{self}` has {} levels but {bits}-bit codes hold only {room}; use an \
                     8-bit spec (SQ8…) or a codebook of at most {room} levels",
                    cb.len()
                ),
            ));
        }
        Ok(Levels::Custom(cb))
    }
}

/// The shared k-means codebook of `tensor` in the weights container `path`.
fn weights_codebook(path: &Path, tensor: &str) -> Result<Codebook> {
    let model = QuantizedModel::open(path)?;
    let value = format!("{}:{tensor}", path.display());
    let Some(t) = model.tensors.iter().find(|t| t.name == tensor) else {
        let kmeans: Vec<&str> = model
            .tensors
            .iter()
            .filter(|t| matches!(t.payload, Payload::KMeans(_)))
            .map(|t| t.name.as_str())
            .collect();
        let listed = if kmeans.is_empty() {
            format!(
                "it holds no k-means tensors (quantized with `{}`); quantize with \
                 `quantize-model --scheme kmeans`",
                model.scheme
            )
        } else {
            let mut l = kmeans[..kmeans.len().min(LISTED_TENSORS)].join(", ");
            if kmeans.len() > LISTED_TENSORS {
                let _ = write!(l, ", … ({} more)", kmeans.len() - LISTED_TENSORS);
            }
            format!("its k-means tensors are: {l}")
        };
        return Err(Error::param(
            "levels",
            format!(
                "`{value}`: {} has no tensor `{tensor}`; {listed}",
                path.display()
            ),
        ));
    };
    match &t.payload {
        Payload::KMeans(k) if k.scope == KMeansScope::Tensor => match k.codebooks.as_slice() {
            [cb] => Ok(cb.clone()),
            other => Err(Error::format(
                path,
                format!(
                    "tensor `{tensor}`: a per-tensor k-means codebook stored as {} codebooks",
                    other.len()
                ),
            )),
        },
        Payload::KMeans(k) => Err(Error::param(
            "levels",
            format!(
                "`{value}`: tensor `{tensor}` has one k-means codebook per row ({} of them), \
                 not one shared codebook; re-quantize with `quantize-model --scheme kmeans \
                 --granularity tensor`",
                k.codebooks.len()
            ),
        )),
        Payload::Passthrough { .. } => Err(Error::param(
            "levels",
            format!(
                "`{value}`: tensor `{tensor}` is not quantized ({}), so it has no codebook; \
                 name a k-means tensor",
                t.note.as_deref().unwrap_or("passed through")
            ),
        )),
        _ => Err(Error::param(
            "levels",
            format!(
                "`{value}`: tensor `{tensor}` was quantized with `{}`, not k-means; only a \
                 k-means codebook (`quantize-model --scheme kmeans --granularity tensor`) \
                 can serve as levels",
                t.scheme
            ),
        )),
    }
}

/// The leading field of an `sq` container's parameters (flat SQ saved before it became a
/// `codes` index).
#[derive(Deserialize)]
struct ScalarParams {
    config: SqConfig,
}

/// The leading field of a `codes` container's parameters.
#[derive(Deserialize)]
struct CodesParams {
    inner: InnerSpec,
}

/// The leading fields of an `ivf` (`nlist`) or `hnsw` (`M`) container's parameters.
#[derive(Deserialize)]
struct InnerParams {
    _size: usize,
    inner: InnerSpec,
}

/// The scalar quantizer configuration of an index container (`SQ…`, `IVF…,SQ…`,
/// `HNSW…,SQ…`), or `None` for an index without one.
///
/// # Errors
/// Parameters that do not decode.
pub fn stored_sq_config(c: &Container) -> Result<Option<SqConfig>> {
    // Postcard encodes a struct as its fields in order and ignores trailing bytes, so
    // the leading fields of each kind's stored parameters decode on their own.
    let inner = match c.header().kind.as_str() {
        "sq" => return Ok(Some(c.params::<ScalarParams>()?.config)),
        "codes" => c.params::<CodesParams>()?.inner,
        "ivf" | "hnsw" => c.params::<InnerParams>()?.inner,
        _ => return Ok(None),
    };
    Ok(match inner {
        InnerSpec::Scalar { config, .. } => Some(config),
        _ => None,
    })
}

/// `levels` and `range` lines for `vecquant inspect` of an index with a scalar quantizer
/// (empty for other indexes). The levels are shown in their source's units (a custom
/// grid as given; trained Lloyd-Max levels in the normalised domain `[0, 1]`).
///
/// ```
/// use vecquant::index::{IndexExt, Scalar};
/// use vecquant::quant::scalar::{Levels, SqConfig};
/// use vecquant::quant::codebook::Codebook;
/// use vecquant::{Index, Metric};
/// let config = SqConfig { levels: Levels::Custom(Codebook::nf4()), ..SqConfig::optimal_range(4) };
/// let mut index = Scalar::with_config("SQ4", 2, Metric::L2, config, false).unwrap();
/// index.train(&[0.0, 1.0, 2.0, 3.0, 4.0, 5.0]).unwrap();
/// index.add(&[0.0, 1.0], None).unwrap();
/// let dir = tempfile::tempdir().unwrap();
/// let path = dir.path().join("sq4.vq");
/// index.save(&path).unwrap();
/// let c = vecquant::store::Container::open(&path).unwrap();
/// let text = vecquant::model::levels::describe_levels(&c);
/// assert!(text.contains("custom (16, the nf4 grid) [-1.000, -0.6962"), "{text}");
/// assert!(text.contains("range     optimal"), "{text}");
/// ```
pub fn describe_levels(c: &Container) -> String {
    let config = match stored_sq_config(c) {
        Ok(Some(config)) => config,
        Ok(None) => return String::new(),
        Err(e) => return format!("levels    unreadable: {e}\n"),
    };
    let n = 1usize << config.bits.min(8);
    let (kind, values) = match &config.levels {
        Levels::Uniform => (format!("uniform ({n})"), None),
        Levels::NormalQuantile => (format!("normal quantiles ({n})"), None),
        Levels::LloydMax => {
            // Trained: the values live in the `levels` section (normalised domain).
            let stored = c
                .section("levels")
                .ok()
                .and_then(|b| c.section_f32("levels", b.len() / 4).ok());
            (format!("lloyd-max, trained ({n})"), stored)
        }
        Levels::Custom(cb) => {
            let kind = match Grid::recognise(cb) {
                Some(g) => format!("custom ({}, the {} grid)", cb.len(), g.name()),
                None => format!("custom ({})", cb.len()),
            };
            (kind, Some(cb.levels().to_vec()))
        }
    };
    let mut s = format!("levels    {kind}");
    if let Some(v) = values {
        let _ = write!(s, " {}", list_levels(&v));
    }
    s.push('\n');
    let range = match config.range {
        RangeEstimator::MinMax => "min/max per dimension".to_string(),
        RangeEstimator::Percentile(p) => format!("percentile {p} per dimension"),
        RangeEstimator::MeanStd(k) => format!("mean ± {k:.3}σ per dimension"),
        RangeEstimator::Optimal => "optimal (MSE-calibrated clip per dimension)".to_string(),
    };
    let _ = writeln!(s, "range     {range}");
    s
}

/// `[a, b, …, z]`: every level up to 16, else the first and last 6.
fn list_levels(v: &[f32]) -> String {
    let shown: Vec<String> = if v.len() <= 16 {
        v.iter().map(|&x| fmt_level(x)).collect()
    } else {
        let mut s: Vec<String> = v[..6].iter().map(|&x| fmt_level(x)).collect();
        s.push("…".into());
        s.extend(v[v.len() - 6..].iter().map(|&x| fmt_level(x)));
        s
    };
    format!("[{}]", shown.join(", "))
}

/// A level with four significant digits (k-means weight codebooks hold values like
/// 0.0123; FP8 grids reach 57344).
fn fmt_level(x: f32) -> String {
    let a = x.abs();
    if x == 0.0 {
        "0".into()
    } else if (1e-3..1e5).contains(&a) {
        let decimals = (3 - a.log10().floor() as i32).max(0) as usize;
        format!("{x:.decimals$}")
    } else {
        format!("{x:.3e}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::generate::gaussian;
    use crate::index::{Index, IndexExt, Ivf, Scalar, SearchParams};
    use crate::metric::Metric;
    use crate::model::io::Tensor;
    use crate::model::{Scheme, SchemeOptions, quantize_tensor};
    use crate::quant::codec::SqSpec;
    use crate::quant::scalar::ScalarQuantizer;

    fn parse(v: &str) -> Result<LevelSource> {
        v.parse()
    }

    #[test]
    fn names_resolve_to_their_levels() {
        assert_eq!(
            parse("uniform").unwrap().levels(8).unwrap(),
            Levels::Uniform
        );
        assert_eq!(
            parse("Normal").unwrap().levels(4).unwrap(),
            Levels::NormalQuantile
        );
        assert_eq!(
            parse("lloyd-max").unwrap().levels(4).unwrap(),
            Levels::LloydMax
        );
        assert_eq!(
            parse("nf4").unwrap().levels(4).unwrap(),
            Levels::Custom(Codebook::nf4())
        );
        // NF4 under 8-bit codes is legal (16 of 256 codes used).
        assert_eq!(
            parse("NF4").unwrap().levels(8).unwrap(),
            Levels::Custom(Codebook::nf4())
        );
        let fp4 = [
            -6.0, -4.0, -3.0, -2.0, -1.5, -1.0, -0.5, 0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0,
        ];
        for name in ["fp4", "e2m1"] {
            match parse(name).unwrap().levels(4).unwrap() {
                Levels::Custom(cb) => assert_eq!(cb.levels(), &fp4[..]),
                other => panic!("{name}: {other:?}"),
            }
        }
        // FP8: every finite value once (±0 merged), within 256 codes.
        for (name, count, max) in [("e4m3", 253, 448.0f32), ("fp8-e5m2", 247, 57344.0)] {
            match parse(name).unwrap().levels(8).unwrap() {
                Levels::Custom(cb) => {
                    assert_eq!(cb.len(), count, "{name}");
                    assert_eq!(cb.levels()[count - 1], max, "{name}");
                    assert_eq!(cb.levels()[0], -max, "{name}");
                    assert_eq!(cb.encode(0.0), (count / 2) as u8, "{name}: one zero");
                }
                other => panic!("{name}: {other:?}"),
            }
        }
        // Display round-trips through the parser.
        for v in [
            "uniform",
            "normal",
            "lloyd-max",
            "nf4",
            "fp4",
            "e4m3",
            "e5m2",
            "m.vq:w",
        ] {
            assert_eq!(parse(v).unwrap().to_string(), v);
        }
        assert_eq!(
            parse("C:\\models\\m.vq:layers.0.weight").unwrap(),
            LevelSource::Weights {
                path: PathBuf::from("C:\\models\\m.vq"),
                tensor: "layers.0.weight".into()
            }
        );
    }

    #[test]
    fn bad_values_are_errors_naming_them() {
        for v in ["nf5", "", "x:", ":w"] {
            let e = parse(v).unwrap_err().to_string();
            assert!(e.contains("levels") && e.contains("nf4"), "{v}: {e}");
        }
        assert!(parse("nf5").unwrap_err().to_string().contains("`nf5`"));
        let e = parse("e4m3").unwrap().levels(4).unwrap_err().to_string();
        assert!(
            e.contains("e4m3") && e.contains("253") && e.contains("16"),
            "{e}"
        );
        assert!(parse("fp4").unwrap().levels(5).is_err());
        // A file named without its tensor says how to name one.
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("w.vq");
        std::fs::write(&f, b"x").unwrap();
        let e = parse(f.to_str().unwrap()).unwrap_err().to_string();
        assert!(e.contains(":TENSOR"), "{e}");
        // A missing file is an I/O error naming it.
        let e = parse("nope.vq:w")
            .unwrap()
            .levels(4)
            .unwrap_err()
            .to_string();
        assert!(e.contains("nope.vq"), "{e}");
    }

    fn weights(n: usize, seed: u64) -> Vec<f32> {
        gaussian(n, 1, 0.0, 0.02, seed).unwrap().as_slice().to_vec()
    }

    /// A weights container with a per-tensor k-means tensor (`a`), a per-row one (`b`),
    /// an NF4 one (`c`).
    fn weights_file(dir: &Path) -> (PathBuf, Codebook) {
        let opts = |g: Option<crate::model::GranularityKind>| SchemeOptions {
            bits: Some(4),
            granularity: g,
            ..SchemeOptions::default()
        };
        let a = Tensor::matrix("a", 16, 64, weights(1024, 1));
        let b = Tensor::matrix("b", 16, 64, weights(1024, 2));
        let c = Tensor::matrix("c", 16, 64, weights(1024, 3));
        let tensors = vec![
            quantize_tensor(&a, &Scheme::parse("kmeans", &opts(None)).unwrap()).unwrap(),
            quantize_tensor(
                &b,
                &Scheme::parse("kmeans", &opts(Some(crate::model::GranularityKind::Row))).unwrap(),
            )
            .unwrap(),
            quantize_tensor(&c, &Scheme::parse("nf4", &opts(None)).unwrap()).unwrap(),
        ];
        let cb = match &tensors[0].payload {
            Payload::KMeans(k) => k.codebooks[0].clone(),
            _ => unreachable!(),
        };
        let path = dir.join("w.vq");
        QuantizedModel {
            scheme: "kmeans".into(),
            tensors,
        }
        .save_container(&path)
        .unwrap();
        (path, cb)
    }

    #[test]
    fn a_kmeans_tensor_is_a_codebook_source() {
        let dir = tempfile::tempdir().unwrap();
        let (path, cb) = weights_file(dir.path());
        assert_eq!(cb.len(), 16);
        let p = path.display().to_string();
        let at = |t: &str| parse(&format!("{p}:{t}")).unwrap();
        assert_eq!(at("a").levels(4).unwrap(), Levels::Custom(cb.clone()));
        assert_eq!(at("a").levels(8).unwrap(), Levels::Custom(cb));
        let e = at("b").levels(4).unwrap_err().to_string();
        assert!(
            e.contains("per row") && e.contains("--granularity tensor"),
            "{e}"
        );
        let e = at("c").levels(4).unwrap_err().to_string();
        assert!(
            e.contains("`c`") && e.contains("nf4") && e.contains("not k-means"),
            "{e}"
        );
        let e = at("zz").levels(4).unwrap_err().to_string();
        assert!(
            e.contains("`zz`") && e.contains("k-means tensors are: a, b"),
            "{e}"
        );
        // An index file is not a weights container.
        let mut idx = Scalar::from_spec("SQ8", 2, Metric::L2, false).unwrap();
        idx.train(&[0.0, 1.0, 2.0, 3.0]).unwrap();
        idx.add(&[0.0, 1.0], None).unwrap();
        let ip = dir.path().join("i.vq");
        idx.save(&ip).unwrap();
        let e = parse(&format!("{}:a", ip.display()))
            .unwrap()
            .levels(4)
            .unwrap_err()
            .to_string();
        assert!(e.contains("not quantized weights"), "{e}");
    }

    #[test]
    fn recognises_grids_up_to_an_affine_map() {
        let nf4 = Codebook::nf4();
        assert_eq!(Grid::recognise(&nf4), Some(Grid::Nf4));
        let shifted = Codebook::new(nf4.levels().iter().map(|v| 3.0 * v + 1.0).collect()).unwrap();
        assert_eq!(Grid::recognise(&shifted), Some(Grid::Nf4));
        assert_eq!(Grid::recognise(&Codebook::uniform(16).unwrap()), None);
        for g in Grid::ALL {
            assert_eq!(Grid::recognise(&g.codebook().unwrap()), Some(g));
        }
        assert_eq!(fmt_level(-0.696_192_8), "-0.6962");
        assert_eq!(fmt_level(0.012_36), "0.01236");
        assert_eq!(fmt_level(448.0), "448.0");
        assert_eq!(fmt_level(57344.0), "57344");
        assert_eq!(fmt_level(1e-5), "1.000e-5");
    }

    /// Custom levels survive save → open: the reopened index answers every query
    /// exactly as the one that was built, and `inspect` shows where the levels came from.
    #[test]
    fn custom_levels_persist_in_scalar_and_ivf_indexes() {
        let dim = 12;
        let data = gaussian(1500, dim, 0.0, 1.0, 7).unwrap();
        let queries = gaussian(20, dim, 0.0, 1.0, 8).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let (wpath, kcb) = weights_file(dir.path());
        let source = parse(&format!("{}:a", wpath.display())).unwrap();
        let crate::index::spec::IndexSpec::Scalar(sq4) = "SQ4".parse().unwrap() else {
            unreachable!()
        };
        let mut config = sq4.config();
        config.levels = source.levels(4).unwrap();
        let built: Vec<Box<dyn Index>> = vec![
            Box::new(Scalar::with_config("SQ4", dim, Metric::L2, config.clone(), false).unwrap()),
            Box::new(
                Ivf::<ScalarQuantizer>::new(
                    4,
                    SqSpec {
                        name: "SQ4".into(),
                        config: config.clone(),
                    },
                    dim,
                    Metric::L2,
                    false,
                    3,
                )
                .unwrap(),
            ),
        ];
        let params = SearchParams::new(10).nprobe(2);
        for (i, mut index) in built.into_iter().enumerate() {
            index.train(data.as_slice()).unwrap();
            index.add(data.as_slice(), None).unwrap();
            let path = dir.path().join(format!("i{i}.vq"));
            index.save(&path).unwrap();
            let back = <dyn Index>::open(&path).unwrap();
            let want = index.search_batch(queries.as_slice(), &params).unwrap();
            assert_eq!(
                back.search_batch(queries.as_slice(), &params).unwrap(),
                want
            );
            let c = Container::open(&path).unwrap();
            assert_eq!(stored_sq_config(&c).unwrap(), Some(config.clone()));
            let text = describe_levels(&c);
            assert!(text.starts_with("levels    custom (16) ["), "{text}");
            assert!(text.contains(&fmt_level(kcb.levels()[0])), "{text}");
            assert!(text.contains("mean ± 4.000σ"), "{text}");
        }
        // The levels changed the codes: the same spec with its own (Lloyd-Max) levels
        // reconstructs differently.
        let mut own = Scalar::from_spec("SQ4", dim, Metric::L2, false).unwrap();
        own.train(data.as_slice()).unwrap();
        let custom = ScalarQuantizer::train(data.as_slice(), dim, &config).unwrap();
        assert_ne!(own.quantizer().unwrap().codebook(), custom.codebook());
        // Indexes without a scalar quantizer describe nothing.
        let mut flat = crate::index::Flat::new(dim, Metric::L2);
        flat.add(data.as_slice(), None).unwrap();
        let fp = dir.path().join("flat.vq");
        flat.save(&fp).unwrap();
        assert_eq!(describe_levels(&Container::open(&fp).unwrap()), "");
    }
}
