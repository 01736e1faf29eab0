//! Index spec strings, in FAISS's index-factory vocabulary, parsed once into a typed
//! [`IndexSpec`].
//!
//! | spec | index |
//! | --- | --- |
//! | `Flat` | [`Flat`]: exact search over raw f32 vectors |
//! | `PQ{M}`, `PQ{M}x4fs`, `OPQ{M},PQ{M}`, `OPQ{M},PQ{M}x4fs` | [`Product`]: product quantizer, 8-bit or 4-bit fast-scan, optional OPQ rotation (see [`crate::index::product`]) |
//! | `IVF{nlist},Flat`, `IVF{nlist},SQ8` (any SQ variant), `IVF{nlist},PQ{M}`, `IVF{nlist},PQ{M}x4fs`, `OPQ{M},IVF{nlist},PQ{M}[x4fs]` | [`Ivf`](crate::index::Ivf): inverted file over residual codes (see [`crate::index::ivf`]) |
//! | `HNSW{M}`, `HNSW{M},Flat`, `HNSW{M},SQ8` (any SQ variant), `HNSW{M},PQ{m}` | [`Hnsw`](crate::index::Hnsw): graph built by the native builder (or hnsw_rs), searched with asymmetric distances to the stored codes (see [`crate::index::hnsw`]) |
//! | `RaBitQ`, `RaBitQ{b}` (b = 2..=9) | [`FlatCodes`](crate::index::FlatCodes) over [`RaBitQ`](crate::quant::rabitq::RaBitQ) codes (also as the inner quantizer of `IVF{nlist},RaBitQ[{b}]` and `HNSW{M},RaBitQ[{b}]`) |
//! | `RaBitQfs`, `RaBitQfs{b}` | the same codes in the fast-scan block layout ([`RaBitQFs`](crate::quant::rabitq::RaBitQFs); also `IVF{nlist},RaBitQfs[{b}]`, not under HNSW) |
//! | `SQ8`, `SQ4`, `SQ8u`, `SQ4u`, `SQ8opt`, `SQ4opt`, `SQ8lm`, `SQ4lm`, `SQ8nq`, `SQ4nq` | [`Scalar`]: scalar quantizer, 8 or 4 bits per dimension (see [`crate::index::scalar`]) |
//!
//! A spec is checked in two steps. [`IndexSpec::from_str`](std::str::FromStr) checks
//! everything the string alone decides (syntax, `nlist` and `M` ranges, OPQ's `M`
//! against PQ's, 8-bit PQ under HNSW); [`IndexSpec::check_dim`] adds what depends on the
//! vectors' dimension (PQ's `M` must divide it). Keywords are case-insensitive,
//! whitespace around the spec and around commas is ignored, and an error names the rule
//! that failed and lists the accepted forms ([`ACCEPTED`]).

use std::fmt;

use crate::error::{Error, Result};
use crate::index::ivf::{InnerSpec, MAX_NLIST};
use crate::index::product::PqSpec;
use crate::index::{Flat, Index, Product, Scalar};
use crate::metric::Metric;
use crate::quant::scalar::SqConfig;

/// The accepted spec forms, for error messages and `--help`.
pub const ACCEPTED: &str = "Flat, SQ8, SQ4, SQ8u, SQ4u, SQ8opt, SQ4opt, SQ8lm, SQ4lm, SQ8nq, SQ4nq, PQ{M}, PQ{M}x4fs, OPQ{M},PQ{M}, OPQ{M},PQ{M}x4fs, IVF{nlist},Flat, IVF{nlist},SQ8 (any SQ variant), IVF{nlist},PQ{M}, IVF{nlist},PQ{M}x4fs, OPQ{M},IVF{nlist},PQ{M}, OPQ{M},IVF{nlist},PQ{M}x4fs, HNSW{M}, HNSW{M},SQ8 (any SQ variant), HNSW{M},PQ{m}, RaBitQ, RaBitQ{b} (b = 2..=9), IVF{nlist},RaBitQ[{b}], HNSW{M},RaBitQ[{b}], RaBitQfs, RaBitQfs{b}, IVF{nlist},RaBitQfs[{b}]";

/// Most sub-quantizers of a product quantizer (the limit of
/// [`crate::quant::product::check_params`]).
pub const MAX_PQ_M: usize = 4096;

/// Most sub-quantizers of a 4-bit fast-scan product quantizer, the limit `Product` and
/// `Ivf` enforce: the scan sums one `u8` table entry per sub-quantizer in `u16`
/// accumulators, which cannot overflow up to 257 × 255 = 65535 (see
/// [`crate::kernels::fastscan`]).
pub const MAX_FASTSCAN_M: usize = 256;

/// How a scalar quantizer chooses its levels and ranges (the suffix of `SQ8…`/`SQ4…`;
/// see [`crate::index::scalar`] for what each one trains).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SqVariant {
    /// No suffix: the measured best per bit width — MSE-optimal range with uniform levels
    /// at 8 bits, Lloyd-Max levels at 4 bits.
    Default,
    /// `u`: uniform levels over the min/max range (FAISS `QT_8bit`/`QT_4bit`).
    Uniform,
    /// `opt`: uniform levels over the MSE-optimal range.
    OptimalRange,
    /// `lm`: Lloyd-Max levels over `mean ± 4σ`.
    LloydMax,
    /// `nq`: normal-quantile levels.
    NormalQuantile,
}

impl SqVariant {
    /// Every variant, in the order of [`ACCEPTED`].
    pub const ALL: [SqVariant; 5] = [
        SqVariant::Default,
        SqVariant::Uniform,
        SqVariant::OptimalRange,
        SqVariant::LloydMax,
        SqVariant::NormalQuantile,
    ];

    /// The spec suffix (`""`, `"u"`, `"opt"`, `"lm"`, `"nq"`).
    pub fn suffix(self) -> &'static str {
        match self {
            SqVariant::Default => "",
            SqVariant::Uniform => "u",
            SqVariant::OptimalRange => "opt",
            SqVariant::LloydMax => "lm",
            SqVariant::NormalQuantile => "nq",
        }
    }

    /// The variant of a lower-case suffix.
    fn from_suffix(suffix: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.suffix() == suffix)
    }
}

/// A scalar quantizer spec: `SQ{bits}{suffix}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ScalarSpec {
    /// Bits per dimension: 8 or 4.
    pub bits: u8,
    /// Level and range choice.
    pub variant: SqVariant,
}

impl ScalarSpec {
    /// The ten valid scalar specs, in the order of [`ACCEPTED`] (`SQ8`, `SQ4`, `SQ8u`, …).
    pub fn all() -> impl Iterator<Item = ScalarSpec> {
        SqVariant::ALL.into_iter().flat_map(|variant| {
            [8, 4]
                .into_iter()
                .map(move |bits| ScalarSpec { bits, variant })
        })
    }

    /// The quantizer configuration this spec trains.
    pub fn config(&self) -> SqConfig {
        match self.variant {
            SqVariant::Default if self.bits == 8 => SqConfig::optimal_range(self.bits),
            SqVariant::Default => SqConfig::lloyd_max(self.bits),
            SqVariant::Uniform => SqConfig::uniform(self.bits),
            SqVariant::OptimalRange => SqConfig::optimal_range(self.bits),
            SqVariant::LloydMax => SqConfig::lloyd_max(self.bits),
            SqVariant::NormalQuantile => SqConfig::normal_quantile(self.bits),
        }
    }

    /// The canonical name (`SQ8`, `SQ4lm`, …), as stored in containers.
    pub fn name(&self) -> String {
        self.to_string()
    }

    /// The string-independent rule: 8 or 4 bits.
    fn rule(&self) -> std::result::Result<(), String> {
        if self.bits == 8 || self.bits == 4 {
            Ok(())
        } else {
            Err(format!(
                "{self}: a scalar quantizer has 8 or 4 bits per dimension, not {}",
                self.bits
            ))
        }
    }
}

impl fmt::Display for ScalarSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SQ{}{}", self.bits, self.variant.suffix())
    }
}

/// Product-quantizer parameters: `PQ{m}` (8 bits, 256 centroids per sub-space) or
/// `PQ{m}x4fs` (4 bits, 16 centroids, fast-scan layout).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PqParams {
    /// Sub-quantizers (sub-vectors of `d / m` dimensions each).
    pub m: usize,
    /// Bits per sub-quantizer code: 8, or 4 for fast-scan.
    pub nbits: u8,
}

impl PqParams {
    /// 4-bit fast-scan codes.
    pub fn is_fast_scan(&self) -> bool {
        self.nbits == 4
    }

    /// The index kinds' [`PqSpec`] (`opq`: learn an OPQ rotation first).
    pub fn to_pq_spec(self, opq: bool) -> PqSpec {
        PqSpec {
            m: self.m,
            nbits: self.nbits,
            opq,
        }
    }

    /// The parameters of a [`PqSpec`] and whether it asks for OPQ (not validated; see
    /// `TryFrom<PqSpec> for IndexSpec` for a checked conversion).
    pub fn from_pq_spec(spec: &PqSpec) -> (PqParams, bool) {
        (
            PqParams {
                m: spec.m,
                nbits: spec.nbits,
            },
            spec.opq,
        )
    }

    /// The string-independent rules: 8 or 4 bits, `1 ≤ m ≤` [`MAX_PQ_M`] (8-bit) or
    /// [`MAX_FASTSCAN_M`] (fast-scan).
    fn rule(&self) -> std::result::Result<(), String> {
        match self.nbits {
            8 | 4 => {}
            b => {
                return Err(format!(
                    "PQ{}: {b}-bit codes are not supported; PQ{{M}} has 8 bits, PQ{{M}}x4fs 4",
                    self.m
                ));
            }
        }
        if self.m == 0 {
            return Err(format!("{self}: M (sub-quantizers) must be at least 1"));
        }
        if self.is_fast_scan() && self.m > MAX_FASTSCAN_M {
            return Err(format!(
                "{self}: fast-scan supports at most {MAX_FASTSCAN_M} sub-quantizers (one u8 \
                 table entry each is summed in u16), got M = {}",
                self.m
            ));
        }
        if self.m > MAX_PQ_M {
            return Err(format!(
                "{self}: M must be at most {MAX_PQ_M} sub-quantizers, got {}",
                self.m
            ));
        }
        Ok(())
    }

    /// The dimension rule: `m` divides `dim`; the message lists the `M` that would work.
    fn check_dim(&self, dim: usize, spec: &IndexSpec, opq: bool) -> Result<()> {
        if dim.is_multiple_of(self.m) {
            return Ok(());
        }
        let max = if self.is_fast_scan() {
            MAX_FASTSCAN_M
        } else {
            MAX_PQ_M
        };
        let working: Vec<String> = divisors(dim)
            .into_iter()
            .filter(|&v| v <= max)
            .map(|v| v.to_string())
            .collect();
        let why = if opq {
            " (OPQ rotates all d dimensions, then PQ splits them into M sub-vectors of d/M)"
        } else {
            " (PQ splits a vector into M sub-vectors of d/M dimensions)"
        };
        let which = if self.is_fast_scan() {
            format!("fast-scan M (at most {MAX_FASTSCAN_M}) that divide {dim}")
        } else {
            format!("M that divide {dim}")
        };
        Err(Error::param(
            "M",
            format!(
                "{spec}: M = {} does not divide d = {dim}{why}; {which}: {}",
                self.m,
                working.join(", ")
            ),
        ))
    }
}

impl fmt::Display for PqParams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_fast_scan() {
            write!(f, "PQ{}x4fs", self.m)
        } else {
            write!(f, "PQ{}", self.m)
        }
    }
}

/// What an IVF list entry or an HNSW node stores.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum InnerQuantizer {
    /// The raw vectors.
    Flat,
    /// Scalar-quantizer codes.
    Scalar(ScalarSpec),
    /// Product-quantizer codes.
    Product(PqParams),
    /// RaBitQ codes of this many bits per dimension (1..=9).
    RaBitQ(u8),
    /// RaBitQ codes in the fast-scan layout (`RaBitQfs[{b}]`; IVF only).
    RaBitQFs(u8),
}

impl InnerQuantizer {
    /// The on-disk [`InnerSpec`] (the name and configuration of a scalar quantizer are
    /// those of [`ScalarSpec::name`] and [`ScalarSpec::config`]).
    pub fn to_inner_spec(&self) -> InnerSpec {
        match self {
            InnerQuantizer::Flat => InnerSpec::Flat,
            InnerQuantizer::Scalar(s) => InnerSpec::Scalar {
                name: s.name(),
                config: s.config(),
            },
            InnerQuantizer::Product(p) => InnerSpec::Product {
                m: p.m,
                nbits: p.nbits,
            },
            &InnerQuantizer::RaBitQ(bits) => InnerSpec::RaBitQ { bits },
            &InnerQuantizer::RaBitQFs(bits) => InnerSpec::RaBitQFs { bits },
        }
    }

    /// The typed form of an on-disk [`InnerSpec`]; `None` if it is not one a spec string
    /// can name (an unknown scalar name, a bit width other than the name's, or PQ
    /// parameters out of range).
    ///
    /// A scalar quantizer is recognised by its name: a container keeps its own trained
    /// [`SqConfig`], so the configuration is not compared with today's defaults (a file
    /// written before a default changed still maps to its spec).
    pub fn from_inner_spec(inner: &InnerSpec) -> Option<Self> {
        match inner {
            InnerSpec::Flat => Some(InnerQuantizer::Flat),
            InnerSpec::Scalar { name, config } => match parse_component(name).ok()? {
                Component::Sq(s) if s.rule().is_ok() && s.bits == config.bits => {
                    Some(InnerQuantizer::Scalar(s))
                }
                _ => None,
            },
            &InnerSpec::Product { m, nbits } => {
                let p = PqParams { m, nbits };
                p.rule().is_ok().then_some(InnerQuantizer::Product(p))
            }
            &InnerSpec::RaBitQ { bits } => rabitq_rule(bits)
                .is_ok()
                .then_some(InnerQuantizer::RaBitQ(bits)),
            &InnerSpec::RaBitQFs { bits } => rabitq_rule(bits)
                .is_ok()
                .then_some(InnerQuantizer::RaBitQFs(bits)),
        }
    }

    /// The PQ parameters, if this is a product quantizer.
    pub fn pq(&self) -> Option<PqParams> {
        match self {
            InnerQuantizer::Product(p) => Some(*p),
            _ => None,
        }
    }

    fn rule(&self) -> std::result::Result<(), String> {
        match self {
            InnerQuantizer::Flat => Ok(()),
            InnerQuantizer::Scalar(s) => s.rule(),
            InnerQuantizer::Product(p) => p.rule(),
            &InnerQuantizer::RaBitQ(bits) | &InnerQuantizer::RaBitQFs(bits) => rabitq_rule(bits),
        }
    }
}

impl fmt::Display for InnerQuantizer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InnerQuantizer::Flat => f.write_str("Flat"),
            InnerQuantizer::Scalar(s) => s.fmt(f),
            InnerQuantizer::Product(p) => p.fmt(f),
            &InnerQuantizer::RaBitQ(bits) => f.write_str(&rabitq_name(bits)),
            &InnerQuantizer::RaBitQFs(bits) => f.write_str(&rabitq_fs_name(bits)),
        }
    }
}

/// `RaBitQ` (1 bit) or `RaBitQ{b}`.
pub(crate) fn rabitq_name(bits: u8) -> String {
    crate::quant::rabitq::RabitqSpec { bits }.name()
}

/// `RaBitQfs` (1 bit) or `RaBitQfs{b}`.
pub(crate) fn rabitq_fs_name(bits: u8) -> String {
    crate::quant::rabitq::RabitqFsSpec { bits }.name()
}

/// The string-independent rule of a RaBitQ code: 1 to 9 bits per dimension.
fn rabitq_rule(bits: u8) -> std::result::Result<(), String> {
    let max = crate::quant::rabitq::MAX_BITS;
    if (1..=max).contains(&bits) {
        Ok(())
    } else {
        Err(format!(
            "RaBitQ{bits}: b (bits per dimension) must be 1..={max}: RaBitQ is 1 bit, \
             RaBitQ2 … RaBitQ{max} add extra bits"
        ))
    }
}

/// A parsed index spec: which index kind, with which quantizer and parameters.
///
/// Parse it from a FAISS-style string once; [`Display`](fmt::Display) gives the
/// canonical form, which parses back to the same value. Parsing checks every rule the
/// string alone decides; [`IndexSpec::check_dim`] adds the rules that depend on the
/// vectors' dimension.
///
/// ```
/// use vecquant::index::spec::{IndexSpec, InnerQuantizer, PqParams};
///
/// let spec: IndexSpec = "ivf1024, pq32X4FS".parse().unwrap();
/// assert_eq!(
///     spec,
///     IndexSpec::Ivf {
///         opq: false,
///         nlist: 1024,
///         inner: InnerQuantizer::Product(PqParams { m: 32, nbits: 4 }),
///     }
/// );
/// assert_eq!(spec.to_string(), "IVF1024,PQ32x4fs");
/// assert_eq!(spec.to_string().parse::<IndexSpec>().unwrap(), spec);
/// assert_eq!((spec.kind(), spec.nlist(), spec.uses_nprobe()), ("ivf", Some(1024), true));
/// assert_eq!("HNSW32,Flat".parse::<IndexSpec>().unwrap().to_string(), "HNSW32");
///
/// // A broken rule is named, and the accepted forms are listed.
/// let err = "OPQ16,PQ32".parse::<IndexSpec>().unwrap_err().to_string();
/// assert!(err.contains("OPQ's M (16) must equal PQ's M (32)"), "{err}");
/// assert!(err.contains("accepted forms: Flat, SQ8"), "{err}");
///
/// // PQ's M must divide the dimension; the error lists the M that do.
/// let err = "PQ7".parse::<IndexSpec>().unwrap().check_dim(128).unwrap_err().to_string();
/// assert!(err.contains("M that divide 128: 1, 2, 4, 8, 16, 32, 64, 128"), "{err}");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum IndexSpec {
    /// `Flat`: exact search over the raw vectors.
    Flat,
    /// `SQ…`: a flat scan over scalar-quantizer codes.
    Scalar(ScalarSpec),
    /// `PQ{M}[x4fs]` or `OPQ{M},PQ{M}[x4fs]`: a flat scan over product-quantizer codes.
    Product {
        /// Learn an OPQ rotation (with PQ's `M`) before the product quantizer.
        opq: bool,
        /// The product quantizer.
        pq: PqParams,
    },
    /// `RaBitQ` or `RaBitQ{b}`: a flat scan over RaBitQ codes of `b` bits per dimension.
    RaBitQ(u8),
    /// `RaBitQfs` or `RaBitQfs{b}`: the same codes in the fast-scan layout.
    RaBitQFs(u8),
    /// `IVF{nlist},{inner}` or `OPQ{M},IVF{nlist},PQ{M}[x4fs]`: an inverted file.
    Ivf {
        /// Learn an OPQ rotation (with the inner PQ's `M`) first; only with a PQ inner
        /// quantizer.
        opq: bool,
        /// Number of lists, `1 ≤ nlist ≤` [`MAX_NLIST`].
        nlist: usize,
        /// What a list entry stores (the residual's code, or the vector for `Flat`).
        inner: InnerQuantizer,
    },
    /// `HNSW{M}[,{inner}]`: a navigable small-world graph.
    Hnsw {
        /// Links per node, `2 ≤ m ≤` [`crate::index::hnsw::MAX_M`].
        m: usize,
        /// What a node stores; a PQ must be 8-bit.
        inner: InnerQuantizer,
    },
}

impl IndexSpec {
    /// Checks the rules the string alone decides (what parsing checks after the syntax):
    /// useful for a spec built in code rather than parsed.
    ///
    /// ```
    /// use vecquant::index::spec::{IndexSpec, InnerQuantizer};
    /// let bad = IndexSpec::Hnsw { m: 1, inner: InnerQuantizer::Flat };
    /// assert!(bad.validate().unwrap_err().to_string().contains("between 2 and"));
    /// ```
    pub fn validate(&self) -> Result<()> {
        self.rule().map_err(|m| spec_error(&self.to_string(), m))
    }

    fn rule(&self) -> std::result::Result<(), String> {
        match self {
            IndexSpec::Flat => Ok(()),
            IndexSpec::Scalar(s) => s.rule(),
            IndexSpec::Product { pq, .. } => pq.rule(),
            &IndexSpec::RaBitQ(bits) | &IndexSpec::RaBitQFs(bits) => rabitq_rule(bits),
            IndexSpec::Ivf { opq, nlist, inner } => {
                if *nlist == 0 {
                    return Err("IVF0: nlist (the number of lists) must be at least 1".into());
                }
                if *nlist > MAX_NLIST {
                    return Err(format!(
                        "IVF{nlist}: nlist must be at most {MAX_NLIST}, got {nlist}"
                    ));
                }
                if *opq && inner.pq().is_none() {
                    return Err(format!(
                        "OPQ before IVF{nlist} learns a rotation for a product quantizer: \
                         the inner quantizer must be PQ{{M}} or PQ{{M}}x4fs, not {inner}"
                    ));
                }
                inner.rule()
            }
            IndexSpec::Hnsw { m, inner } => {
                let max = crate::index::hnsw::MAX_M;
                if !(2..=max).contains(m) {
                    return Err(format!(
                        "HNSW{m}: HNSW's M (links per node) must be between 2 and {max}, got {m}"
                    ));
                }
                if let InnerQuantizer::Product(p) = inner
                    && p.is_fast_scan()
                {
                    return Err(format!(
                        "{self}: HNSW stores 8-bit PQ codes only (fast-scan codes are \
                         interleaved in blocks of 32 vectors; a graph visits one vector at a \
                         time): write HNSW{m},PQ{}",
                        p.m
                    ));
                }
                if let &InnerQuantizer::RaBitQFs(bits) = inner {
                    return Err(format!(
                        "{self}: HNSW stores row-major RaBitQ codes only (fast-scan codes are \
                         interleaved in blocks of 32 vectors): write HNSW{m},{}",
                        rabitq_name(bits)
                    ));
                }
                inner.rule()
            }
        }
    }

    /// Checks the spec against the vectors' dimension `dim` (after [`IndexSpec::validate`]):
    /// `dim ≥ 1`, and a product quantizer's `M` must divide `dim` (the error lists the `M`
    /// that do, at most [`MAX_FASTSCAN_M`] for fast-scan). Flat and scalar quantizers
    /// take any dimension.
    ///
    /// ```
    /// use vecquant::index::spec::IndexSpec;
    /// let spec: IndexSpec = "OPQ16,IVF256,PQ16x4fs".parse().unwrap();
    /// assert!(spec.check_dim(128).is_ok());
    /// let err = spec.check_dim(100).unwrap_err().to_string();
    /// assert!(err.contains("that divide 100: 1, 2, 4, 5, 10, 20, 25, 50, 100"), "{err}");
    /// ```
    pub fn check_dim(&self, dim: usize) -> Result<()> {
        self.validate()?;
        if dim == 0 {
            return Err(Error::param("dim", "must be at least 1"));
        }
        match self {
            IndexSpec::Product { opq, pq } => pq.check_dim(dim, self, *opq),
            IndexSpec::Ivf {
                opq,
                inner: InnerQuantizer::Product(pq),
                ..
            } => pq.check_dim(dim, self, *opq),
            IndexSpec::Hnsw {
                inner: InnerQuantizer::Product(pq),
                ..
            } => pq.check_dim(dim, self, false),
            _ => Ok(()),
        }
    }

    /// The number of IVF lists, for IVF specs.
    pub fn nlist(&self) -> Option<usize> {
        match self {
            IndexSpec::Ivf { nlist, .. } => Some(*nlist),
            _ => None,
        }
    }

    /// An inverted file.
    pub fn is_ivf(&self) -> bool {
        matches!(self, IndexSpec::Ivf { .. })
    }

    /// An HNSW graph.
    pub fn is_hnsw(&self) -> bool {
        matches!(self, IndexSpec::Hnsw { .. })
    }

    /// The container kind this spec is saved as: `"flat"`, `"pq"`, `"codes"` (a flat scan
    /// over a codec's codes: SQ, RaBitQ), `"ivf"` or `"hnsw"` (the outermost structure
    /// decides: an IVF over SQ8 is `"ivf"`). Flat SQ saved before it became a `codes`
    /// index is `"sq"`, which still opens.
    pub fn kind(&self) -> &'static str {
        match self {
            IndexSpec::Flat => "flat",
            IndexSpec::Product { .. } => "pq",
            IndexSpec::Scalar(_) | IndexSpec::RaBitQ(_) | IndexSpec::RaBitQFs(_) => "codes",
            IndexSpec::Ivf { .. } => "ivf",
            IndexSpec::Hnsw { .. } => "hnsw",
        }
    }

    /// What the spec builds, in words for messages: a flat index (every vector scanned:
    /// `Flat`, SQ, PQ, RaBitQ), an inverted file or an HNSW graph. (The container
    /// [`IndexSpec::kind`] names storage, which a user need not know: flat SQ is a
    /// `codes` container.)
    pub fn family(&self) -> &'static str {
        match self {
            IndexSpec::Ivf { .. } => "an inverted-file (IVF) index",
            IndexSpec::Hnsw { .. } => "an HNSW graph index",
            _ => "a flat index (every vector is scanned)",
        }
    }

    /// The index stores the exact vectors (`Flat`, `IVF{n},Flat`, `HNSW{M}`): its
    /// distances are exact, so re-ranking (`SearchParams::rerank`) has nothing to do.
    pub fn is_exact(&self) -> bool {
        matches!(
            self,
            IndexSpec::Flat
                | IndexSpec::Ivf {
                    inner: InnerQuantizer::Flat,
                    ..
                }
                | IndexSpec::Hnsw {
                    inner: InnerQuantizer::Flat,
                    ..
                }
        )
    }

    /// Searches read [`crate::index::SearchParams::nprobe`] (IVF).
    pub fn uses_nprobe(&self) -> bool {
        self.is_ivf()
    }

    /// Searches read [`crate::index::SearchParams::ef_search`] (HNSW).
    pub fn uses_ef(&self) -> bool {
        self.is_hnsw()
    }

    /// The codes carry error bounds of their distance estimates, so a search can re-rank
    /// adaptively ([`crate::SearchParams::adaptive_rerank`]): RaBitQ codes scanned flat or
    /// under IVF (graph walks rank by estimates, so HNSW re-ranks a fixed number).
    pub fn has_error_bounds(&self) -> bool {
        matches!(
            self,
            IndexSpec::RaBitQ(_)
                | IndexSpec::RaBitQFs(_)
                | IndexSpec::Ivf {
                    inner: InnerQuantizer::RaBitQ(_) | InnerQuantizer::RaBitQFs(_),
                    ..
                }
        )
    }

    /// Checks the search knobs a caller names for an index of this spec, `name` being
    /// its spec string: `nprobe` off IVF, `ef` off HNSW, `rerank` on an exact index or
    /// below `k` are errors (each would do nothing). Returns warnings about values the
    /// index caps (`nprobe` above the list count, `ef` below `k`). `flag` prefixes the
    /// knob names in messages: `"--"` for the CLI's flags (whose `k` is `-k`), `""` for
    /// keyword arguments.
    ///
    /// # Errors
    /// `k`, `nprobe` or `ef` of 0, a knob that does not apply to this index, or
    /// `rerank < k`.
    pub fn check_knobs(
        &self,
        name: &str,
        k: usize,
        nprobe: Option<usize>,
        ef: Option<usize>,
        rerank: Option<usize>,
        flag: &str,
    ) -> Result<Vec<String>> {
        let family = self.family();
        let k_name = if flag == "--" { "-k" } else { "k" };
        // Zero is never a valid value: refused before any warning about capping it.
        if k == 0 {
            return Err(Error::param(k_name, "must be at least 1"));
        }
        for (name, v) in [("nprobe", nprobe), ("ef", ef)] {
            if v == Some(0) {
                return Err(Error::param(format!("{flag}{name}"), "must be at least 1"));
            }
        }
        let mut warnings = Vec::new();
        if let Some(nprobe) = nprobe {
            let Some(nlist) = self.nlist() else {
                return Err(Error::param(
                    format!("{flag}nprobe"),
                    format!("applies to IVF indexes (IVF{{nlist}},…) only; {name} is {family}"),
                ));
            };
            if nprobe > nlist {
                warnings.push(format!(
                    "{flag}nprobe {nprobe} exceeds the {nlist} lists of {name}: all {nlist} are \
                     probed"
                ));
            }
        }
        if let Some(ef) = ef {
            if !self.uses_ef() {
                return Err(Error::param(
                    format!("{flag}ef"),
                    format!("applies to HNSW indexes (HNSW{{M}}[,…]) only; {name} is {family}"),
                ));
            }
            if ef < k {
                warnings.push(format!(
                    "{flag}ef {ef} is below {k_name} {k}: HNSW searches with ef = {k}"
                ));
            }
        }
        if let Some(rerank) = rerank.filter(|&r| r > 0) {
            if self.is_exact() {
                return Err(Error::param(
                    format!("{flag}rerank"),
                    format!(
                        "{name} stores the exact vectors, so its distances are exact already; \
                         {flag}rerank applies to quantized indexes (SQ…, PQ…, RaBitQ…, \
                         IVF…/HNSW… over them) built with the raw vectors kept"
                    ),
                ));
            }
            if rerank < k {
                return Err(Error::param(
                    format!("{flag}rerank"),
                    format!(
                        "re-ranking {rerank} candidates cannot fill {k_name} {k} results; give \
                         {flag}rerank ≥ {k} (or leave it out)"
                    ),
                ));
            }
        }
        Ok(warnings)
    }

    /// The index must be trained before vectors are added (everything but `Flat` and
    /// an HNSW graph over raw vectors).
    pub fn needs_training(&self) -> bool {
        !matches!(
            self,
            IndexSpec::Flat
                | IndexSpec::Hnsw {
                    inner: InnerQuantizer::Flat,
                    ..
                }
        )
    }

    /// The product quantizer, if the spec has one (`PQ…`, `IVF…,PQ…`, `HNSW…,PQ…`).
    pub fn pq(&self) -> Option<PqParams> {
        match self {
            IndexSpec::Product { pq, .. } => Some(*pq),
            IndexSpec::Ivf { inner, .. } | IndexSpec::Hnsw { inner, .. } => inner.pq(),
            IndexSpec::Flat
            | IndexSpec::Scalar(_)
            | IndexSpec::RaBitQ(_)
            | IndexSpec::RaBitQFs(_) => None,
        }
    }

    /// An OPQ rotation is learned before the product quantizer.
    pub fn opq(&self) -> bool {
        matches!(
            self,
            IndexSpec::Product { opq: true, .. } | IndexSpec::Ivf { opq: true, .. }
        )
    }

    /// The index kinds' [`PqSpec`] of a `PQ…`/`OPQ…,PQ…` spec.
    pub fn pq_spec(&self) -> Option<PqSpec> {
        match self {
            IndexSpec::Product { opq, pq } => Some(pq.to_pq_spec(*opq)),
            _ => None,
        }
    }
}

impl TryFrom<PqSpec> for IndexSpec {
    type Error = Error;

    /// The `PQ…`/`OPQ…,PQ…` spec of a [`PqSpec`] (e.g. one read from a container),
    /// checked by [`IndexSpec::validate`].
    fn try_from(p: PqSpec) -> Result<Self> {
        let (pq, opq) = PqParams::from_pq_spec(&p);
        let spec = IndexSpec::Product { opq, pq };
        spec.validate()?;
        Ok(spec)
    }
}

impl fmt::Display for IndexSpec {
    /// The canonical form: upper-case keywords, `Flat`, no spaces, no leading zeros,
    /// `HNSW{M}` for an HNSW over raw vectors.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IndexSpec::Flat => f.write_str("Flat"),
            IndexSpec::Scalar(s) => s.fmt(f),
            IndexSpec::Product { opq: true, pq } => write!(f, "OPQ{},{pq}", pq.m),
            IndexSpec::Product { opq: false, pq } => pq.fmt(f),
            &IndexSpec::RaBitQ(bits) => f.write_str(&rabitq_name(bits)),
            &IndexSpec::RaBitQFs(bits) => f.write_str(&rabitq_fs_name(bits)),
            IndexSpec::Ivf { opq, nlist, inner } => {
                if let (true, Some(pq)) = (opq, inner.pq()) {
                    write!(f, "OPQ{},", pq.m)?;
                }
                write!(f, "IVF{nlist},{inner}")
            }
            IndexSpec::Hnsw {
                m,
                inner: InnerQuantizer::Flat,
            } => write!(f, "HNSW{m}"),
            IndexSpec::Hnsw { m, inner } => write!(f, "HNSW{m},{inner}"),
        }
    }
}

mod build;
mod parse;

pub(crate) use build::new_index_of_kind;
pub use build::{BuildOptions, IndexBuilder, build_index, new_index};
use parse::{Component, divisors, parse_component, spec_error};

#[cfg(test)]
mod tests;
