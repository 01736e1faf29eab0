//! [`Raw`]: the "codec" that keeps the vectors themselves (FAISS's `Flat` inner
//! storage): exact distances, no training, nothing stored but the raw vectors.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::kernels;
use crate::metric::Metric;
use crate::quant::codec::{InnerSpec, ListTerms, Stored, VectorCodec};
use crate::store::{Container, ContainerWriter};
use crate::topk::TopK;

/// Exact storage: every distance is computed on the raw (prepared) vectors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Raw {
    dim: usize,
}

/// The spec of [`Raw`] (`Flat` in index-factory words).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "InnerSpec", try_from = "InnerSpec")]
pub struct RawSpec;

impl From<RawSpec> for InnerSpec {
    fn from(_: RawSpec) -> Self {
        InnerSpec::Flat
    }
}

impl TryFrom<InnerSpec> for RawSpec {
    type Error = String;
    fn try_from(s: InnerSpec) -> std::result::Result<Self, String> {
        match s {
            InnerSpec::Flat => Ok(RawSpec),
            other => Err(format!("expected Flat storage, found {}", other.name())),
        }
    }
}

impl Raw {
    /// Exact storage for `dim`-dimensional vectors.
    pub fn new(dim: usize) -> Self {
        Raw { dim }
    }
}

/// Distance of a prepared query to a prepared vector under `metric`.
#[inline]
fn exact(q: &[f32], x: &[f32], metric: Metric) -> f32 {
    match metric {
        Metric::L2 => kernels::l2_sq(q, x),
        m => m.distance_from_score(kernels::dot(q, x)),
    }
}

/// The query, copied once (scans read it for every row).
#[derive(Default)]
pub struct RawQuery {
    q: Vec<f32>,
}

impl VectorCodec for Raw {
    type Spec = RawSpec;
    type Query = RawQuery;
    const STORES_RAW: bool = true;

    fn train(_: &RawSpec, _: &[f32], dim: usize, _: u64) -> Result<Self> {
        Ok(Raw { dim })
    }
    fn check(_: &RawSpec, dim: usize) -> Result<()> {
        if dim == 0 {
            return Err(Error::param("dim", "must be at least 1"));
        }
        Ok(())
    }
    fn name(_: &RawSpec) -> String {
        "Flat".into()
    }
    fn dim(&self) -> usize {
        self.dim
    }
    fn code_size(&self) -> usize {
        0
    }
    fn params_bytes(&self) -> usize {
        0
    }
    fn encode(&self, x: &[f32]) -> Result<Vec<u8>> {
        let _ = x;
        Ok(Vec::new())
    }
    fn decode(&self, codes: &[u8]) -> Result<Vec<f32>> {
        let _ = codes;
        Err(Error::param(
            "codes",
            "Flat storage has no codes: the vectors are stored as they are",
        ))
    }
    fn packed_len(&self, _: usize) -> usize {
        0
    }
    fn unpack(&self, _: &[u8], _: usize) -> Vec<u8> {
        Vec::new()
    }
    fn write<'a>(&'a self, _: &mut ContainerWriter<'a>) {}
    fn read(_: &RawSpec, _: &Container, dim: usize) -> Result<Self> {
        Ok(Raw { dim })
    }
    fn begin_query(&self, s: &mut RawQuery, q: &[f32], _: Metric, _: Option<&[f32]>, _: &[usize]) {
        s.q.clear();
        s.q.extend_from_slice(q);
    }
    fn set_list(&self, _: &mut RawQuery, _: &[f32], _: Metric, _: ListTerms<'_>) {}
    fn scan<F: Fn(usize) -> bool>(
        &self,
        s: &mut RawQuery,
        metric: Metric,
        run: Stored<'_>,
        n: usize,
        first: usize,
        heap: &mut TopK,
        ok: &F,
    ) {
        let d = self.dim;
        for (i, x) in run.raw[..n * d].chunks_exact(d).enumerate() {
            let dist = exact(&s.q, x, metric);
            if dist <= heap.threshold() && ok(first + i) {
                heap.push((first + i) as u64, dist);
            }
        }
    }
    #[inline]
    fn distance(&self, s: &RawQuery, metric: Metric, stored: Stored<'_>, row: usize) -> f32 {
        let d = self.dim;
        exact(&s.q, &stored.raw[row * d..(row + 1) * d], metric)
    }
    #[inline]
    fn prefetch(&self, stored: Stored<'_>, row: usize, bytes: usize) {
        let d = self.dim;
        let len = (bytes / 4).min(d);
        kernels::prefetch_l1(&stored.raw[row * d..row * d + len]);
    }
}
