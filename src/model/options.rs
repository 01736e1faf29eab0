//! Which `quantize-model` options each scheme reads, and their validation before any
//! tensor is touched: an option a scheme does not use, or a value it cannot take, is an
//! [`Error::InvalidParameter`] naming the option, the scheme and what the scheme accepts.
//!
//! | scheme | options it reads |
//! | --- | --- |
//! | `absmax`, `zeropoint` | `--bits`, `--granularity`, `--group`, `--rounding`, `--clip`, `--seed` (stochastic rounding) |
//! | `nf4`, `nf4-dq`, `fp4` | `--group` (block size) |
//! | `fp8-e4m3`, `fp8-e5m2` | `--granularity`, `--group` |
//! | `f16`, `bf16`, `q8_0`, `q4_0`, `q4_1`, `q5_0`, `q4_k`, `q6_k` | none |
//! | `kmeans` | `--bits`, `--granularity` (tensor, row), `--seed` |
//! | `gptq` | `--calib`, `--bits`, `--granularity` (row, group), `--group`, `--act-order`, `--damp` |
//! | `spqr` | `--calib`, `--bits`, `--group`, `--act-order`, `--damp` |
//! | `smoothquant` | `--calib`, `--alpha` |
//! | `llm-int8` | `--calib`, `--threshold` |

use crate::error::{Error, Result};
use crate::model::linear::Rounding;
use crate::model::pipeline::CalibMethod;
use crate::model::{GranularityKind, Scheme, SchemeOptions, parse_calibrated, parse_clip};
use crate::model::{gptq, parse_rounding};

/// An option of `quantize-model` that refines a scheme.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModelOption {
    /// `--bits`.
    Bits,
    /// `--granularity`.
    Granularity,
    /// `--group`.
    Group,
    /// `--rounding`.
    Rounding,
    /// `--clip`.
    Clip,
    /// `--seed`.
    Seed,
    /// `--calib`.
    Calib,
    /// `--act-order`.
    ActOrder,
    /// `--damp`.
    Damp,
    /// `--alpha`.
    Alpha,
    /// `--threshold`.
    Threshold,
}

impl ModelOption {
    /// Every option.
    pub const ALL: [ModelOption; 11] = [
        ModelOption::Bits,
        ModelOption::Granularity,
        ModelOption::Group,
        ModelOption::Rounding,
        ModelOption::Clip,
        ModelOption::Seed,
        ModelOption::Calib,
        ModelOption::ActOrder,
        ModelOption::Damp,
        ModelOption::Alpha,
        ModelOption::Threshold,
    ];

    /// The option's name as the error names it (the flag without `--`).
    pub fn name(self) -> &'static str {
        match self {
            ModelOption::Bits => "bits",
            ModelOption::Granularity => "granularity",
            ModelOption::Group => "group",
            ModelOption::Rounding => "rounding",
            ModelOption::Clip => "clip",
            ModelOption::Seed => "seed",
            ModelOption::Calib => "calib",
            ModelOption::ActOrder => "act-order",
            ModelOption::Damp => "damp",
            ModelOption::Alpha => "alpha",
            ModelOption::Threshold => "threshold",
        }
    }
}

/// The options one family of schemes reads and what it accepts.
#[derive(Clone, Copy, Debug)]
pub struct SchemeRule {
    /// Scheme names (lower case).
    pub names: &'static [&'static str],
    /// The options these schemes read.
    pub options: &'static [ModelOption],
    /// What they accept, with defaults (for errors and `--help`).
    pub accepts: &'static str,
}

use ModelOption as O;

/// Every scheme and the options it reads (the table in the module documentation).
pub const SCHEME_RULES: &[SchemeRule] = &[
    SchemeRule {
        names: &["absmax", "zeropoint"],
        options: &[
            O::Bits,
            O::Granularity,
            O::Group,
            O::Rounding,
            O::Clip,
            O::Seed,
        ],
        accepts: "--bits 2..=8 (default 8), --granularity tensor|row|group (default row at 8 bits, group below), --group N (default 128; implies --granularity group), --rounding nearest|floor|ceil|stochastic (default nearest), --clip minmax|percentile:P|mse|kl (default minmax), --seed (with --rounding stochastic; default 42)",
    },
    SchemeRule {
        names: &["nf4", "nf4-dq", "fp4"],
        options: &[O::Group],
        accepts: "--group N: the block size, a positive even number (default 64); 4 bits, fixed",
    },
    SchemeRule {
        names: &["fp8-e4m3", "fp8-e5m2"],
        options: &[O::Granularity, O::Group],
        accepts: "--granularity tensor|row|group (default row), --group N (default 128; implies --granularity group); 8 bits, fixed",
    },
    SchemeRule {
        names: &["f16", "bf16"],
        options: &[],
        accepts: "no options (a 16-bit cast)",
    },
    SchemeRule {
        names: &["kmeans"],
        options: &[O::Bits, O::Granularity, O::Seed],
        accepts: "--bits 1..=8 (default 4), --granularity tensor|row (default tensor), --seed (default 42)",
    },
    SchemeRule {
        names: &["q8_0", "q4_0", "q4_1", "q5_0", "q4_k", "q6_k"],
        options: &[],
        accepts: "no options (GGUF blocks have a fixed layout)",
    },
    SchemeRule {
        names: &["gptq"],
        options: &[
            O::Calib,
            O::Bits,
            O::Granularity,
            O::Group,
            O::ActOrder,
            O::Damp,
        ],
        accepts: "--calib (required), --bits 2..=8 (default 4), --group N (default 128) or --granularity row (one group per row), --act-order, --damp ≥ 0 (default 0.01)",
    },
    SchemeRule {
        names: &["spqr"],
        options: &[O::Calib, O::Bits, O::Group, O::ActOrder, O::Damp],
        accepts: "--calib (required), --bits 2..=8 (default 3), --group N (default 16), --act-order, --damp ≥ 0 (default 0.01)",
    },
    SchemeRule {
        names: &["smoothquant"],
        options: &[O::Calib, O::Alpha],
        accepts: "--calib (required), --alpha in [0, 1] (default 0.5)",
    },
    SchemeRule {
        names: &["llm-int8", "llm.int8"],
        options: &[O::Calib, O::Threshold],
        accepts: "--calib (required), --threshold > 0 (default 6.0)",
    },
];

/// The rule of scheme `name` (case-insensitive), if it is one.
pub fn rule_of(name: &str) -> Option<&'static SchemeRule> {
    let lower = name.to_ascii_lowercase();
    SCHEME_RULES
        .iter()
        .find(|r| r.names.contains(&lower.as_str()))
}

/// The options exactly as the user gave them (`None` / `false`: not given).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct GivenOptions {
    /// `--bits`.
    pub bits: Option<u32>,
    /// `--granularity`.
    pub granularity: Option<GranularityKind>,
    /// `--group`.
    pub group: Option<usize>,
    /// `--rounding`.
    pub rounding: Option<String>,
    /// `--clip`.
    pub clip: Option<String>,
    /// `--seed`.
    pub seed: Option<u64>,
    /// Whether `--calib` was given.
    pub calib: bool,
    /// `--act-order`.
    pub act_order: bool,
    /// `--damp`.
    pub damp: Option<f64>,
    /// `--alpha`.
    pub alpha: Option<f32>,
    /// `--threshold`.
    pub threshold: Option<f32>,
}

impl GivenOptions {
    fn given(&self, o: ModelOption) -> bool {
        match o {
            O::Bits => self.bits.is_some(),
            O::Granularity => self.granularity.is_some(),
            O::Group => self.group.is_some(),
            O::Rounding => self.rounding.is_some(),
            O::Clip => self.clip.is_some(),
            O::Seed => self.seed.is_some(),
            O::Calib => self.calib,
            O::ActOrder => self.act_order,
            O::Damp => self.damp.is_some(),
            O::Alpha => self.alpha.is_some(),
            O::Threshold => self.threshold.is_some(),
        }
    }
}

/// A scheme applied weight by weight, or a method that also reads each layer's inputs.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Method {
    /// A calibration-free scheme.
    Plain(Scheme),
    /// A calibration-based method (needs `--calib`).
    Calibrated(CalibMethod),
}

impl Method {
    /// Short description of the method.
    pub fn label(&self) -> String {
        match self {
            Method::Plain(s) => s.label(),
            Method::Calibrated(m) => m.label(),
        }
    }
}

fn all_schemes() -> String {
    SCHEME_RULES
        .iter()
        .flat_map(|r| r.names.iter().copied())
        .filter(|n| *n != "llm.int8")
        .collect::<Vec<_>>()
        .join(", ")
}

/// Checks every option against scheme `name` and builds the method. Nothing here looks
/// at a tensor, so every error is about an option.
///
/// # Errors
/// [`Error::InvalidParameter`] naming the option (`scheme` for an unknown name, listing
/// every scheme): an option the scheme does not read (the message says what it reads),
/// a value out of its range, `--group` with `--granularity tensor|row`, `--seed` without
/// stochastic rounding, a calibration-based scheme without `--calib`.
pub fn parse_method(name: &str, o: &GivenOptions) -> Result<Method> {
    let rule = rule_of(name).ok_or_else(|| {
        Error::param(
            "scheme",
            format!("unknown scheme `{name}`; accepted: {}", all_schemes()),
        )
    })?;
    let lower = name.to_ascii_lowercase();
    let scheme = lower.as_str();
    let refuse = |opt: &str, why: String| {
        Error::param(
            opt,
            format!("{why}; scheme {scheme} accepts: {}", rule.accepts),
        )
    };
    for opt in ModelOption::ALL {
        if o.given(opt) && !rule.options.contains(&opt) {
            return Err(refuse(
                opt.name(),
                format!("scheme {scheme} does not use --{}", opt.name()),
            ));
        }
    }
    if rule.options.contains(&O::Calib) && !o.calib {
        return Err(refuse(
            "calib",
            format!(
                "scheme {scheme} needs --calib CALIB.safetensors (layer inputs per weight name)"
            ),
        ));
    }
    let bits_range = match scheme {
        "kmeans" => 1..=8,
        _ => 2..=8,
    };
    if let Some(b) = o.bits
        && !bits_range.contains(&b)
    {
        return Err(refuse(
            "bits",
            format!(
                "--bits {b} is out of range for {scheme} ({}..={})",
                bits_range.start(),
                bits_range.end()
            ),
        ));
    }
    if let Some(g) = o.group {
        let even = rule.names.contains(&"nf4");
        if g == 0 || (even && !g.is_multiple_of(2)) {
            return Err(refuse(
                "group",
                format!(
                    "--group {g} must be a positive{} number",
                    if even { " even" } else { "" }
                ),
            ));
        }
    }
    if let Some(gr) = o.granularity {
        let allowed: &[GranularityKind] = match scheme {
            "kmeans" => &[GranularityKind::Tensor, GranularityKind::Row],
            "gptq" => &[GranularityKind::Row, GranularityKind::Group],
            _ => &[
                GranularityKind::Tensor,
                GranularityKind::Row,
                GranularityKind::Group,
            ],
        };
        if !allowed.contains(&gr) {
            return Err(refuse(
                "granularity",
                format!("--granularity {} does not apply to {scheme}", gran_name(gr)),
            ));
        }
        if gr != GranularityKind::Group && o.group.is_some() {
            return Err(refuse(
                "group",
                format!(
                    "--group sizes groups, but --granularity is {}",
                    gran_name(gr)
                ),
            ));
        }
    }
    let seed = o.seed.unwrap_or(42);
    let rounding = match &o.rounding {
        Some(r) => parse_rounding(r, seed)?,
        None => Rounding::Nearest,
    };
    if o.seed.is_some() && rule.options.contains(&O::Rounding) {
        // absmax/zeropoint read the seed only for stochastic rounding.
        if !matches!(rounding, Rounding::Stochastic { .. }) {
            return Err(refuse(
                "seed",
                "--seed is used only with --rounding stochastic".into(),
            ));
        }
    }
    let clip = match &o.clip {
        Some(c) => parse_clip(c)?,
        None => SchemeOptions::default().clip,
    };
    if let Some(d) = o.damp
        && !(d.is_finite() && d >= 0.0)
    {
        return Err(refuse(
            "damp",
            format!("--damp {d} must be a finite value ≥ 0"),
        ));
    }
    if let Some(a) = o.alpha
        && !(0.0..=1.0).contains(&a)
    {
        return Err(refuse("alpha", format!("--alpha {a} must be in [0, 1]")));
    }
    if let Some(t) = o.threshold
        && !(t.is_finite() && t > 0.0)
    {
        return Err(refuse(
            "threshold",
            format!("--threshold {t} must be a finite value > 0"),
        ));
    }
    // --group alone implies group granularity (where groups exist).
    let granularity = match (o.granularity, o.group) {
        (None, Some(_)) if rule.options.contains(&O::Granularity) => Some(GranularityKind::Group),
        (g, _) => g,
    };
    let opts = SchemeOptions {
        bits: o.bits,
        granularity,
        group: o.group,
        rounding,
        clip,
        seed,
    };
    let damp = o.damp.unwrap_or(gptq::GptqConfig::default().damp);
    match parse_calibrated(
        scheme,
        &opts,
        o.act_order,
        damp,
        o.alpha.unwrap_or(0.5),
        o.threshold.unwrap_or(6.0),
    ) {
        Some(m) => Ok(Method::Calibrated(m?)),
        None => Ok(Method::Plain(Scheme::parse(scheme, &opts)?)),
    }
}

fn gran_name(g: GranularityKind) -> &'static str {
    match g {
        GranularityKind::Tensor => "tensor",
        GranularityKind::Row => "row",
        GranularityKind::Group => "group",
    }
}
