//! Index spec strings, in FAISS's index-factory vocabulary, parsed once into a typed
//! [`IndexSpec`].
//!
//! | spec | index |
//! | --- | --- |
//! | `Flat` | [`Flat`]: exact search over raw f32 vectors |
//! | `PQ{M}`, `PQ{M}x4fs`, `OPQ{M},PQ{M}`, `OPQ{M},PQ{M}x4fs` | [`Product`]: product quantizer, 8-bit or 4-bit fast-scan, optional OPQ rotation (see [`crate::index::product`]) |
//! | `IVF{nlist},Flat`, `IVF{nlist},SQ8` (any SQ variant), `IVF{nlist},PQ{M}`, `IVF{nlist},PQ{M}x4fs`, `OPQ{M},IVF{nlist},PQ{M}[x4fs]` | [`Ivf`](crate::index::Ivf): inverted file over residual codes (see [`crate::index::ivf`]) |
//! | `HNSW{M}`, `HNSW{M},Flat`, `HNSW{M},SQ8` (any SQ variant), `HNSW{M},PQ{m}` | [`Hnsw`](crate::index::Hnsw): graph built by hnsw_rs, searched with asymmetric distances to the stored codes (see [`crate::index::hnsw`]) |
//! | `SQ8`, `SQ4`, `SQ8u`, `SQ4u`, `SQ8opt`, `SQ4opt`, `SQ8lm`, `SQ4lm`, `SQ8nq`, `SQ4nq` | [`Scalar`]: scalar quantizer, 8 or 4 bits per dimension (see [`crate::index::scalar`]) |
//!
//! A spec is checked in two steps. [`IndexSpec::from_str`](std::str::FromStr) checks
//! everything the string alone decides (syntax, `nlist` and `M` ranges, OPQ's `M`
//! against PQ's, 8-bit PQ under HNSW); [`IndexSpec::check_dim`] adds what depends on the
//! vectors' dimension (PQ's `M` must divide it). Keywords are case-insensitive,
//! whitespace around the spec and around commas is ignored, and an error names the rule
//! that failed and lists the accepted forms ([`ACCEPTED`]).

use std::fmt;
use std::str::FromStr;

use crate::error::{Error, Result};
use crate::index::ivf::{InnerSpec, MAX_NLIST};
use crate::index::product::PqSpec;
use crate::index::{Flat, Index, Product, Scalar};
use crate::metric::Metric;
use crate::quant::scalar::SqConfig;

/// The accepted spec forms, for error messages and `--help`.
pub const ACCEPTED: &str = "Flat, SQ8, SQ4, SQ8u, SQ4u, SQ8opt, SQ4opt, SQ8lm, SQ4lm, SQ8nq, SQ4nq, PQ{M}, PQ{M}x4fs, OPQ{M},PQ{M}, OPQ{M},PQ{M}x4fs, IVF{nlist},Flat, IVF{nlist},SQ8 (any SQ variant), IVF{nlist},PQ{M}, IVF{nlist},PQ{M}x4fs, OPQ{M},IVF{nlist},PQ{M}, OPQ{M},IVF{nlist},PQ{M}x4fs, HNSW{M}, HNSW{M},SQ8 (any SQ variant), HNSW{M},PQ{m}";

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
        }
    }
}

impl fmt::Display for InnerQuantizer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InnerQuantizer::Flat => f.write_str("Flat"),
            InnerQuantizer::Scalar(s) => s.fmt(f),
            InnerQuantizer::Product(p) => p.fmt(f),
        }
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

    /// The container kind this spec is saved as: `"flat"`, `"sq"`, `"pq"`, `"ivf"` or
    /// `"hnsw"` (the outermost structure decides: an IVF over SQ8 is `"ivf"`).
    pub fn kind(&self) -> &'static str {
        match self {
            IndexSpec::Flat => "flat",
            IndexSpec::Scalar(_) => "sq",
            IndexSpec::Product { .. } => "pq",
            IndexSpec::Ivf { .. } => "ivf",
            IndexSpec::Hnsw { .. } => "hnsw",
        }
    }

    /// Searches read [`crate::index::SearchParams::nprobe`] (IVF).
    pub fn uses_nprobe(&self) -> bool {
        self.is_ivf()
    }

    /// Searches read [`crate::index::SearchParams::ef_search`] (HNSW).
    pub fn uses_ef(&self) -> bool {
        self.is_hnsw()
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
            IndexSpec::Flat | IndexSpec::Scalar(_) => None,
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

impl FromStr for IndexSpec {
    type Err = Error;

    /// Parses a spec string (see the module table): checks the syntax, then
    /// [`IndexSpec::validate`]'s rules. The error names the rule that failed and lists
    /// the accepted forms.
    fn from_str(s: &str) -> Result<Self> {
        let spec = parse_tree(s).map_err(|m| spec_error(s.trim(), m))?;
        spec.rule().map_err(|m| spec_error(s.trim(), m))?;
        Ok(spec)
    }
}

/// An [`Error::Spec`] for `spec` breaking `rule`, with the accepted forms.
fn spec_error(spec: &str, rule: impl fmt::Display) -> Error {
    Error::Spec {
        spec: spec.to_string(),
        message: format!("{rule}; accepted forms: {ACCEPTED}"),
    }
}

/// The divisors of `n ≥ 1`, ascending (pairs `i`, `n / i` up to `√n`).
fn divisors(n: usize) -> Vec<usize> {
    let (mut small, mut large) = (Vec::new(), Vec::new());
    let mut i = 1;
    while i <= n / i {
        if n.is_multiple_of(i) {
            small.push(i);
            if i != n / i {
                large.push(n / i);
            }
        }
        i += 1;
    }
    small.extend(large.into_iter().rev());
    small
}

/// One comma-separated part of a spec, syntax checked, ranges not yet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Component {
    Flat,
    Sq(ScalarSpec),
    Pq(PqParams),
    Opq(usize),
    Ivf(usize),
    Hnsw(usize),
}

/// The accepted SQ names, for the unknown-variant error.
fn sq_names() -> String {
    ScalarSpec::all()
        .map(|s| s.name())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The unsigned decimal after a keyword (`what` names it in errors, `example` shows a
/// valid component). Only ASCII digits: no sign, no spaces.
fn number(
    digits: &str,
    component: &str,
    what: &str,
    example: &str,
) -> std::result::Result<usize, String> {
    if digits.is_empty() {
        return Err(format!("`{component}` needs {what}, e.g. {example}"));
    }
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "`{component}`: {what} must be a decimal number, not `{digits}` (e.g. {example})"
        ));
    }
    digits
        .parse()
        .map_err(|_| format!("`{component}`: {what} {digits} is too large"))
}

/// Parses one trimmed component.
fn parse_component(c: &str) -> std::result::Result<Component, String> {
    // ASCII lower-casing keeps byte offsets, so `c[i..]` and `l[i..]` line up.
    let l = c.to_ascii_lowercase();
    if l == "flat" {
        return Ok(Component::Flat);
    }
    if l.starts_with("opq") {
        return number(&c[3..], c, "OPQ's M", "OPQ16,PQ16").map(Component::Opq);
    }
    if l.starts_with("pq") {
        let rest = &c[2..];
        let x = rest.find(['x', 'X']).unwrap_or(rest.len());
        let nbits = match rest[x..].to_ascii_lowercase().as_str() {
            "" => 8,
            "x4fs" => 4,
            _ => {
                return Err(format!(
                    "`{c}`: unknown PQ suffix `{}`; PQ{{M}} has 8-bit codes, PQ{{M}}x4fs 4-bit \
                     fast-scan codes",
                    &rest[x..]
                ));
            }
        };
        let m = number(&rest[..x], c, "PQ's M", "PQ16")?;
        return Ok(Component::Pq(PqParams { m, nbits }));
    }
    if let Some(rest) = l.strip_prefix("sq") {
        let digits = rest.len()
            - rest
                .trim_start_matches(|ch: char| ch.is_ascii_digit())
                .len();
        let bits = match &rest[..digits] {
            "8" => 8,
            "4" => 4,
            "" => {
                return Err(format!(
                    "`{c}` needs a bit width: SQ8 or SQ4 (then a variant); the scalar \
                     quantizers are {}",
                    sq_names()
                ));
            }
            b => {
                return Err(format!(
                    "`{c}`: a scalar quantizer has 8 or 4 bits per dimension, not {b}; the \
                     scalar quantizers are {}",
                    sq_names()
                ));
            }
        };
        let variant = SqVariant::from_suffix(&rest[digits..]).ok_or_else(|| {
            format!(
                "`{c}`: unknown scalar-quantizer variant `{}`; the scalar quantizers are {}",
                &c[2 + digits..],
                sq_names()
            )
        })?;
        return Ok(Component::Sq(ScalarSpec { bits, variant }));
    }
    if l.starts_with("ivf") {
        return number(&c[3..], c, "a list count (nlist)", "IVF1024,PQ16").map(Component::Ivf);
    }
    if l.starts_with("hnsw") {
        return number(&c[4..], c, "HNSW's M", "HNSW32").map(Component::Hnsw);
    }
    Err(format!(
        "unknown index type `{c}` (the keywords are Flat, SQ, PQ, OPQ, IVF and HNSW)"
    ))
}

/// Parses the syntax of a whole spec into a tree (ranges are checked afterwards by
/// [`IndexSpec::rule`]).
fn parse_tree(s: &str) -> std::result::Result<IndexSpec, String> {
    let s = s.trim();
    if s.is_empty() {
        return Err("empty spec".into());
    }
    let texts: Vec<&str> = s.split(',').map(str::trim).collect();
    if texts.iter().any(|t| t.is_empty()) {
        return Err("empty component: two commas in a row, or a comma at either end".into());
    }
    let parts = texts
        .iter()
        .map(|t| parse_component(t))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    use Component as C;
    let inner_of = |c: Component, t: &str, of: &str| match c {
        C::Flat => Ok(InnerQuantizer::Flat),
        C::Sq(s) => Ok(InnerQuantizer::Scalar(s)),
        C::Pq(p) => Ok(InnerQuantizer::Product(p)),
        C::Opq(_) if of == "IVF" => Err(format!(
            "OPQ comes before IVF, as in FAISS: OPQ{{M}},IVF{{nlist}},PQ{{M}}, not `{t}` after IVF"
        )),
        _ => Err(format!(
            "{of}'s inner quantizer must be Flat, SQ… or {}, not `{t}`",
            if of == "IVF" { "PQ{M}[x4fs]" } else { "PQ{m}" }
        )),
    };
    let opq_match = |om: usize, p: PqParams| {
        if om == p.m {
            Ok(())
        } else {
            Err(format!("OPQ's M ({om}) must equal PQ's M ({})", p.m))
        }
    };
    // Each head keyword decides how many components its form takes; more is an error.
    let (spec, used) = match parts[0] {
        C::Flat => (IndexSpec::Flat, 1),
        C::Sq(s) => (IndexSpec::Scalar(s), 1),
        C::Pq(p) => {
            if let Some(C::Ivf(_)) = parts.get(1) {
                return Err(format!(
                    "`{}` comes after IVF, as in FAISS: IVF{{nlist}},{}",
                    texts[0], texts[0]
                ));
            }
            (IndexSpec::Product { opq: false, pq: p }, 1)
        }
        C::Opq(om) => match parts[1..] {
            [] => {
                return Err(format!(
                    "`{s}` must be followed by PQ{om}, PQ{om}x4fs or IVF{{nlist}},PQ{om}[x4fs]"
                ));
            }
            [C::Pq(p), ..] => {
                opq_match(om, p)?;
                (IndexSpec::Product { opq: true, pq: p }, 2)
            }
            [C::Ivf(_)] => {
                return Err(format!(
                    "`{s}` needs its product quantizer after a comma: {s},PQ{om} or \
                     {s},PQ{om}x4fs"
                ));
            }
            [C::Ivf(nlist), C::Pq(p), ..] => {
                opq_match(om, p)?;
                let inner = InnerQuantizer::Product(p);
                (
                    IndexSpec::Ivf {
                        opq: true,
                        nlist,
                        inner,
                    },
                    3,
                )
            }
            [C::Ivf(_), ..] => {
                return Err(format!(
                    "OPQ learns a rotation for a product quantizer; after OPQ{{M}},IVF{{nlist}} \
                     comes PQ{{M}} or PQ{{M}}x4fs, not `{}`",
                    texts[2]
                ));
            }
            _ => {
                return Err(format!(
                    "OPQ{{M}} must be followed by PQ{{M}}, PQ{{M}}x4fs or \
                     IVF{{nlist}},PQ{{M}}[x4fs], not `{}`",
                    texts[1]
                ));
            }
        },
        C::Ivf(nlist) => match parts.get(1) {
            None => {
                return Err(format!(
                    "`{s}` needs an inner quantizer after a comma: {s},Flat, {s},SQ8, \
                     {s},PQ16 or {s},PQ16x4fs"
                ));
            }
            Some(&c) => {
                let inner = inner_of(c, texts[1], "IVF")?;
                (
                    IndexSpec::Ivf {
                        opq: false,
                        nlist,
                        inner,
                    },
                    2,
                )
            }
        },
        C::Hnsw(m) => match parts.get(1) {
            None => (
                IndexSpec::Hnsw {
                    m,
                    inner: InnerQuantizer::Flat,
                },
                1,
            ),
            Some(&c) => {
                let inner = inner_of(c, texts[1], "HNSW")?;
                (IndexSpec::Hnsw { m, inner }, 2)
            }
        },
    };
    if used < parts.len() {
        return Err(format!(
            "`{}` is a complete spec; nothing may follow it (got `,{}`)",
            texts[..used].join(","),
            texts[used..].join(",")
        ));
    }
    Ok(spec)
}

/// Options shared by every index built from a spec.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BuildOptions {
    /// The metric.
    pub metric: Metric,
    /// Seed for every training routine.
    pub seed: u64,
    /// Keep the raw vectors so searches can re-rank exactly (`--rerank`).
    pub keep_raw: bool,
    /// HNSW: the beam width while building (hnswlib's default 200).
    pub ef_construction: usize,
}

impl Default for BuildOptions {
    fn default() -> Self {
        BuildOptions {
            metric: Metric::L2,
            seed: 42,
            keep_raw: false,
            ef_construction: crate::index::hnsw::DEFAULT_EF_CONSTRUCTION,
        }
    }
}

/// Creates an empty (untrained) index for `spec` over `dim`-dimensional vectors.
///
/// ```
/// use vecquant::index::spec::{new_index, BuildOptions};
/// let idx = new_index("Flat", 64, &BuildOptions::default()).unwrap();
/// assert_eq!(idx.spec(), "Flat");
/// assert!(new_index("Flta", 64, &BuildOptions::default()).is_err());
/// ```
pub fn new_index(spec: &str, dim: usize, opts: &BuildOptions) -> Result<Box<dyn Index>> {
    build_index(&spec.parse()?, dim, opts)
}

/// [`new_index`] restricted to one container kind (`"ivf"`, `"hnsw"`, ...): the
/// per-kind constructors (`ivf::new`, `hnsw::new`) are this.
pub(crate) fn new_index_of_kind(
    spec: &str,
    kind: &'static str,
    dim: usize,
    opts: &BuildOptions,
) -> Result<Box<dyn Index>> {
    let typed: IndexSpec = spec.parse()?;
    if typed.kind() != kind {
        return Err(Error::Spec {
            spec: spec.to_string(),
            message: format!(
                "a `{}` spec where a `{kind}` one is needed; accepted forms: {ACCEPTED}",
                typed.kind()
            ),
        });
    }
    build_index(&typed, dim, opts)
}

/// Creates an empty (untrained) index for a typed spec over `dim`-dimensional vectors:
/// the one constructor every spec string goes through.
///
/// ```
/// use vecquant::index::spec::{BuildOptions, IndexSpec, build_index};
/// let spec: IndexSpec = "IVF16,SQ8".parse().unwrap();
/// let idx = build_index(&spec, 32, &BuildOptions::default()).unwrap();
/// assert_eq!(idx.spec(), "IVF16,SQ8");
/// ```
///
/// # Errors
/// `dim` is 0 or does not fit the spec (PQ's `M` must divide it).
pub fn build_index(spec: &IndexSpec, dim: usize, opts: &BuildOptions) -> Result<Box<dyn Index>> {
    spec.check_dim(dim)?;
    let (metric, keep_raw, seed) = (opts.metric, opts.keep_raw, opts.seed);
    Ok(match *spec {
        IndexSpec::Flat => Box::new(Flat::new(dim, metric)),
        IndexSpec::Scalar(sq) => Box::new(Scalar::with_config(
            sq.name(),
            dim,
            metric,
            sq.config(),
            keep_raw,
        )),
        IndexSpec::Product { opq, pq } => Box::new(Product::with_spec(
            pq.to_pq_spec(opq),
            dim,
            metric,
            keep_raw,
            seed,
        )?),
        IndexSpec::Ivf { opq, nlist, inner } => crate::index::ivf::new_typed(
            nlist,
            inner.to_inner_spec(),
            inner.pq().filter(|_| opq).map(|p| p.m),
            dim,
            metric,
            keep_raw,
            seed,
        )?,
        IndexSpec::Hnsw { m, inner } => crate::index::hnsw::new_typed(
            m,
            inner.to_inner_spec(),
            dim,
            metric,
            keep_raw,
            seed,
            opts.ef_construction,
        )?,
    })
}

/// Builds an index from a spec string in one expression: choose the metric, seed and
/// whether to keep raw vectors for re-ranking, then train on a sample and add the base.
///
/// ```
/// use vecquant::prelude::*;
/// use vecquant::data::generate::gaussian;
///
/// let base = gaussian(2000, 32, 0.0, 1.0, 1).unwrap();
/// let index = IndexBuilder::new("SQ8")
///     .metric(Metric::L2)
///     .keep_raw(true)
///     .build(base.as_slice(), 32)
///     .unwrap();
/// let hits = index
///     .search(base.row(5), &SearchParams::new(3).rerank(20))
///     .unwrap();
/// assert_eq!(hits[0].id, 5);
/// assert!(IndexBuilder::new("PQ7x").build(base.as_slice(), 32).is_err());
/// ```
#[derive(Clone, Debug)]
pub struct IndexBuilder {
    spec: String,
    opts: BuildOptions,
    train: Option<Vec<f32>>,
}

impl IndexBuilder {
    /// A builder for `spec` (see [`new_index`] for the accepted forms).
    pub fn new(spec: &str) -> Self {
        IndexBuilder {
            spec: spec.to_string(),
            opts: BuildOptions::default(),
            train: None,
        }
    }

    /// The metric (default L2).
    pub fn metric(mut self, metric: Metric) -> Self {
        self.opts.metric = metric;
        self
    }

    /// Seed for every training routine (default 42).
    pub fn seed(mut self, seed: u64) -> Self {
        self.opts.seed = seed;
        self
    }

    /// Keep the raw vectors so searches can re-rank exactly (default off).
    pub fn keep_raw(mut self, keep: bool) -> Self {
        self.opts.keep_raw = keep;
        self
    }

    /// Train on this sample instead of the base vectors (row-major, same dimension).
    pub fn train_on(mut self, sample: &[f32]) -> Self {
        self.train = Some(sample.to_vec());
        self
    }

    /// An empty index (trained if a sample was given with [`IndexBuilder::train_on`]).
    pub fn empty(self, dim: usize) -> Result<Box<dyn Index>> {
        let mut index = new_index(&self.spec, dim, &self.opts)?;
        if let Some(t) = &self.train {
            index.train(t)?;
        }
        Ok(index)
    }

    /// Trains (on the sample, or on `base`) and adds `base` (row-major, `dim` columns,
    /// ids 0..n).
    pub fn build(self, base: &[f32], dim: usize) -> Result<Box<dyn Index>> {
        let train = self.train.clone();
        let mut index = new_index(&self.spec, dim, &self.opts)?;
        if !index.is_trained() {
            index.train(train.as_deref().unwrap_or(base))?;
        }
        index.add(base, None)?;
        Ok(index)
    }
}

#[cfg(test)]
mod tests;
