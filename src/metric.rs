//! Similarity metrics and what their scores mean.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

use crate::error::{Error, Result};

/// How two vectors are compared.
///
/// Every index reports a *distance* for which smaller is better, whatever the metric, so
/// results can always be sorted ascending:
///
/// | metric | reported `distance` |
/// | --- | --- |
/// | `L2` | squared Euclidean distance ‖q − x‖² |
/// | `InnerProduct` | −⟨q, x⟩ (negated, so the largest inner product comes first) |
/// | `Cosine` | 1 − cos(q, x); vectors are normalised when added and queries when searched |
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub enum Metric {
    /// Squared Euclidean distance.
    #[default]
    L2,
    /// Maximum inner product search.
    InnerProduct,
    /// Cosine similarity (inner product of normalised vectors).
    Cosine,
}

impl Metric {
    /// The short name used on the command line and in files: `l2`, `ip`, `cosine`.
    pub fn name(self) -> &'static str {
        match self {
            Metric::L2 => "l2",
            Metric::InnerProduct => "ip",
            Metric::Cosine => "cosine",
        }
    }

    /// Whether vectors are L2-normalised before they are stored or compared.
    pub fn normalizes(self) -> bool {
        matches!(self, Metric::Cosine)
    }

    /// Whether the comparison is (after normalisation) an inner product.
    pub fn is_similarity(self) -> bool {
        !matches!(self, Metric::L2)
    }

    /// Turns a raw score into the reported distance: squared L2 for `L2`, `−ip` for
    /// `InnerProduct`, `1 − ip` for `Cosine` (where `ip` is between normalised vectors).
    #[inline]
    pub fn distance_from_score(self, score: f32) -> f32 {
        match self {
            Metric::L2 => score,
            Metric::InnerProduct => -score,
            Metric::Cosine => 1.0 - score,
        }
    }

    /// The exact distance between two vectors of equal length under this metric.
    /// For `Cosine` both are normalised on the fly (a zero vector has cosine 0).
    pub fn distance(self, a: &[f32], b: &[f32]) -> f32 {
        match self {
            Metric::L2 => crate::kernels::l2_sq(a, b),
            Metric::InnerProduct => -crate::kernels::dot(a, b),
            Metric::Cosine => {
                let na = crate::kernels::dot(a, a).sqrt();
                let nb = crate::kernels::dot(b, b).sqrt();
                if na == 0.0 || nb == 0.0 {
                    1.0
                } else {
                    1.0 - crate::kernels::dot(a, b) / (na * nb)
                }
            }
        }
    }
}

impl fmt::Display for Metric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Metric {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "l2" | "euclidean" => Ok(Metric::L2),
            "ip" | "inner_product" | "innerproduct" | "dot" => Ok(Metric::InnerProduct),
            "cosine" | "cos" | "angular" => Ok(Metric::Cosine),
            _ => Err(Error::param(
                "metric",
                format!("unknown metric `{s}`; expected one of l2, ip, cosine"),
            )),
        }
    }
}
