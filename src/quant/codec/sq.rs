//! The scalar quantizer ([`ScalarQuantizer`], every `SQ` variant) under the
//! [`VectorCodec`] contract.
//!
//! Distances are computed on the codes: `q · x̂ = q · lo + Σ_d (q_d·width_d) · L[c_d]`
//! (see [`crate::kernels::sq`]). Each row keeps one auxiliary term — `‖x̂‖²` for L2,
//! `1/‖c + x̂‖` for cosine (so scores stay true cosines of the decoded vectors) — and
//! none for inner product. Under IVF with L2 the query's terms are recomputed for the
//! residual `q − c` of each probed list; for inner product and cosine they do not depend
//! on the list, and the list adds only the constant `⟨q, c⟩`.

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::kernels::{self, sq as ksq};
use crate::metric::Metric;
use crate::quant::codec::{InnerSpec, ListTerms, Stored, VectorCodec};
use crate::quant::scalar::{ScalarQuantizer, SqConfig};
use crate::store::{Container, ContainerWriter};
use crate::topk::TopK;

/// Rows scored per kernel call.
const CHUNK: usize = 1024;

/// The spec of a scalar quantizer: its index-factory name and configuration.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(into = "InnerSpec", try_from = "InnerSpec")]
pub struct SqSpec {
    /// The spec name (`SQ8`, `SQ4lm`, ...).
    pub name: String,
    /// The quantizer configuration.
    pub config: SqConfig,
}

impl From<SqSpec> for InnerSpec {
    fn from(s: SqSpec) -> Self {
        InnerSpec::Scalar {
            name: s.name,
            config: s.config,
        }
    }
}

impl TryFrom<InnerSpec> for SqSpec {
    type Error = String;
    fn try_from(s: InnerSpec) -> std::result::Result<Self, String> {
        match s {
            InnerSpec::Scalar { name, config } => Ok(SqSpec { name, config }),
            other => Err(format!(
                "expected a scalar quantizer, found {}",
                other.name()
            )),
        }
    }
}

/// Reads a scalar quantizer's sections (`lo`, `width`, `levels`) from a container —
/// shared by every kind that stores SQ codes.
fn read_quantizer(c: &Container, dim: usize, config: &SqConfig) -> Result<ScalarQuantizer> {
    let bad = |m: String| Error::format(c.path(), m);
    let nlevels = 1usize << config.bits.min(8);
    let nl = c.section("levels")?.len() / 4;
    if nl > nlevels {
        return Err(bad(format!("{nl} levels for {} bits", config.bits)));
    }
    ScalarQuantizer::from_parts(
        dim,
        config.clone(),
        c.section_f32("lo", dim)?,
        c.section_f32("width", dim)?,
        c.section_f32("levels", nl)?,
    )
    .map_err(|e| bad(format!("quantizer: {e}")))
}

/// Writes the sections [`read_quantizer`] reads.
fn write_quantizer<'a>(w: &mut ContainerWriter<'a>, sq: &'a ScalarQuantizer) {
    w.section_f32("lo", sq.lo())
        .section_f32("width", sq.width())
        .section_f32("levels", sq.codebook().levels());
}

/// Checks that every reconstruction `sq` can produce is usable: each per-dimension level
/// finite and the largest squared norm of a reconstruction (the sum over dimensions of
/// the largest squared level) within [`crate::index::MAX_TERM`], so that correction
/// terms and distances to the codes stay finite. `context` names what was trained on.
fn check_ranges(sq: &ScalarQuantizer, context: &str) -> Result<()> {
    let dim = sq.dim();
    let mut largest = vec![0.0f64; dim];
    let mut buf = vec![0.0f32; dim];
    for c in 0..(1u16 << sq.bits()) {
        let c = c as u8;
        let code = if sq.bits() == 8 {
            vec![c; sq.code_size()]
        } else {
            vec![c | (c << 4); sq.code_size()]
        };
        sq.decode_into(&code, &mut buf);
        for (l, &v) in largest.iter_mut().zip(&buf) {
            let v = f64::from(v);
            *l = if v.is_finite() {
                l.max(v * v)
            } else {
                f64::INFINITY
            };
        }
    }
    let total: f64 = largest.iter().sum();
    crate::index::checks::check_trained_term(
        total,
        context,
        "scalar quantizer's largest reconstruction (squared norm)",
    )
}

/// Bytes of a quantizer's parameters.
fn quantizer_bytes(sq: &ScalarQuantizer) -> usize {
    (sq.lo().len() + sq.width().len() + sq.codebook().len()) * 4
}

/// Per-vector correction terms of `codes` for `metric`: ‖x̂‖² (L2), 1/‖x̂ + offset‖
/// (cosine; `offset(i)` is the vector's IVF centroid, if any); empty for inner product.
fn correction_terms<'a>(
    sq: &ScalarQuantizer,
    codes: &[u8],
    metric: Metric,
    offset: &(dyn Fn(usize) -> Option<&'a [f32]> + Sync),
) -> Vec<f32> {
    if metric == Metric::InnerProduct {
        return Vec::new();
    }
    let dim = sq.dim();
    codes
        .par_chunks(sq.code_size())
        .enumerate()
        .map_init(
            || vec![0.0f32; dim],
            |buf, (i, c)| {
                sq.decode_into(c, buf);
                if metric == Metric::L2 {
                    return kernels::dot(buf, buf);
                }
                if let Some(o) = offset(i) {
                    buf.iter_mut().zip(o).for_each(|(a, b)| *a += b);
                }
                let nn = kernels::dot(buf, buf);
                if nn > 0.0 { 1.0 / nn.sqrt() } else { 0.0 }
            },
        )
        .collect()
}

/// The scan kernel a quantizer needs and its level table (shared by every kind that
/// scans SQ codes: flat, IVF lists, HNSW nodes).
enum Kernel {
    U8,
    Lut8(Box<[f32; 256]>),
    Lut4([f32; 16]),
}

impl Kernel {
    /// The kernel for `sq` (its level table built once).
    fn for_quantizer(sq: &ScalarQuantizer) -> Kernel {
        let table = sq.level_table();
        match (sq.bits(), sq.is_uniform()) {
            (8, true) => Kernel::U8,
            (8, false) => Kernel::Lut8(Box::new(std::array::from_fn(|i| table[i]))),
            _ => Kernel::Lut4(std::array::from_fn(|i| table[i])),
        }
    }

    /// The 4-bit kernel's weight layout for `weights` (empty for the 8-bit kernels).
    fn lut4_weights(&self, weights: &[f32]) -> ksq::Lut4Weights {
        match self {
            Kernel::Lut4(_) => ksq::Lut4Weights::new(weights),
            _ => ksq::Lut4Weights::default(),
        }
    }

    /// The four-query scan ([`ksq::scan_u8_multi`], [`ksq::scan_lut8_multi`],
    /// [`ksq::scan_lut4_multi`]), given each query's weights and 4-bit weight layout:
    /// sums bit for bit [`Kernel::scan`]'s per query.
    fn scan_multi(
        &self,
        weights: [&[f32]; ksq::NQ],
        w4: [&ksq::Lut4Weights; ksq::NQ],
        codes: &[u8],
        out: &mut [f32],
    ) {
        match self {
            Kernel::U8 => ksq::scan_u8_multi(&weights, codes, out),
            Kernel::Lut8(t) => ksq::scan_lut8_multi(&weights, t, codes, out),
            Kernel::Lut4(t) => ksq::scan_lut4_multi(&w4, t, codes, out),
        }
    }

    /// `out[i] = Σ_d weights_d · L[code_i,d]` for consecutive codes.
    #[inline]
    fn scan(&self, weights: &[f32], w4: &ksq::Lut4Weights, codes: &[u8], out: &mut [f32]) {
        match self {
            Kernel::U8 => ksq::scan_u8(weights, codes, out),
            Kernel::Lut8(t) => ksq::scan_lut8(weights, t, codes, out),
            Kernel::Lut4(t) => ksq::scan_lut4(w4, t, codes, out),
        }
    }
}

/// One query's scan state.
#[derive(Default)]
pub struct SqQuery {
    kernel: Option<Kernel>,
    /// `q_d · width_d` (of the query, or of the residual to the current list under L2).
    weights: Vec<f32>,
    w4: ksq::Lut4Weights,
    /// `⟨q, lo⟩` of the query itself.
    constant: f32,
    /// ‖q‖².
    norm_sq: f32,
    /// The current list's terms: L2 `‖q − c‖² − 2⟨q − c, lo⟩`; otherwise `⟨q, c⟩ + ⟨q, lo⟩`.
    base: f32,
    residual: Vec<f32>,
    sums: Vec<f32>,
}

/// Offers rows `start..start + sums.len()` of a run (the id of its row 0 `first`), with
/// their kernel sums, to `heap`: each distance from the query's list term `base`, the
/// row's sum and its auxiliary term.
#[inline]
fn offer<F: Fn(usize) -> bool>(
    metric: Metric,
    base: f32,
    sums: &[f32],
    aux: &[f32],
    (start, first): (usize, usize),
    heap: &mut TopK,
    ok: &F,
) {
    let rows = start..start + sums.len();
    match metric {
        Metric::L2 => offer_by(sums, &aux[rows], heap, ok, start + first, |s, a| {
            base - 2.0 * s + a
        }),
        Metric::InnerProduct => offer_by(sums, sums, heap, ok, start + first, |s, _| -(base + s)),
        Metric::Cosine => offer_by(sums, &aux[rows], heap, ok, start + first, |s, a| {
            1.0 - (base + s) * a
        }),
    }
}

/// [`offer`] with the distance `dist(sum, aux)`: rows are first checked 16 at a time
/// against the heap's threshold in one branch-free pass (which the compiler
/// vectorises), and only a group with a row within it is offered row by row — the
/// same distances and pushes as a loop over every row, without its branch per row
/// once the threshold is tight.
#[inline(always)]
fn offer_by<F: Fn(usize) -> bool>(
    sums: &[f32],
    aux: &[f32],
    heap: &mut TopK,
    ok: &F,
    first: usize,
    dist: impl Fn(f32, f32) -> f32,
) {
    const GROUP: usize = 16;
    for (g, (s, a)) in sums.chunks(GROUP).zip(aux.chunks(GROUP)).enumerate() {
        let thr = heap.threshold();
        let any = s
            .iter()
            .zip(a)
            .fold(false, |any, (&s, &a)| any | (dist(s, a) <= thr));
        if !any {
            continue;
        }
        for (j, (&s, &a)) in s.iter().zip(a).enumerate() {
            let d = dist(s, a);
            let r = first + g * GROUP + j;
            if d <= heap.threshold() && ok(r) {
                heap.push(r as u64, d);
            }
        }
    }
}

impl VectorCodec for ScalarQuantizer {
    type Spec = SqSpec;
    type Query = SqQuery;

    fn train(spec: &SqSpec, sample: &[f32], dim: usize, _seed: u64) -> Result<Self> {
        let sq = ScalarQuantizer::train(sample, dim, &spec.config)?;
        check_ranges(&sq, "training sample")?;
        Ok(sq)
    }
    fn check(spec: &SqSpec, dim: usize) -> Result<()> {
        if dim == 0 {
            return Err(Error::param("dim", "must be at least 1"));
        }
        if !matches!(spec.config.bits, 4 | 8) {
            return Err(Error::param(
                "bits",
                format!(
                    "{} bits per dimension (SQ supports 8 and 4)",
                    spec.config.bits
                ),
            ));
        }
        Ok(())
    }
    fn name(spec: &SqSpec) -> String {
        spec.name.clone()
    }
    fn dim(&self) -> usize {
        ScalarQuantizer::dim(self)
    }
    fn code_size(&self) -> usize {
        ScalarQuantizer::code_size(self)
    }
    fn spec_code_size(spec: &SqSpec, dim: usize) -> Option<usize> {
        Some(crate::quant::scalar::code_size(dim, spec.config.bits))
    }
    fn params_bytes(&self) -> usize {
        quantizer_bytes(self)
    }
    fn has_aux(&self, metric: Metric) -> bool {
        metric != Metric::InnerProduct
    }
    fn encode(&self, x: &[f32]) -> Result<Vec<u8>> {
        ScalarQuantizer::encode(self, x)
    }
    fn aux_terms<'a>(
        &self,
        codes: &[u8],
        metric: Metric,
        base: &(dyn Fn(usize) -> Option<&'a [f32]> + Sync),
    ) -> Vec<f32> {
        correction_terms(self, codes, metric, base)
    }
    fn decode(&self, codes: &[u8]) -> Result<Vec<f32>> {
        ScalarQuantizer::decode(self, codes)
    }
    fn write<'a>(&'a self, w: &mut ContainerWriter<'a>) {
        write_quantizer(w, self);
    }
    fn read(spec: &SqSpec, c: &Container, dim: usize) -> Result<Self> {
        read_quantizer(c, dim, &spec.config)
    }

    fn begin_query(&self, s: &mut SqQuery, q: &[f32], _: Metric, _: Option<&[f32]>, _: &[usize]) {
        let kernel = s.kernel.get_or_insert_with(|| Kernel::for_quantizer(self));
        s.constant = self.query_terms(q, &mut s.weights);
        s.w4 = kernel.lut4_weights(&s.weights);
        s.norm_sq = kernels::dot(q, q);
        s.base = 0.0;
    }

    fn set_list(&self, s: &mut SqQuery, q: &[f32], metric: Metric, list: ListTerms<'_>) {
        match (metric, list.centroid) {
            (Metric::L2, Some(c)) => {
                s.residual.clear();
                s.residual.extend(q.iter().zip(c).map(|(x, y)| x - y));
                let c0 = self.query_terms(&s.residual, &mut s.weights);
                s.base = kernels::dot(&s.residual, &s.residual) - 2.0 * c0;
                if let Some(k) = &s.kernel {
                    s.w4 = k.lut4_weights(&s.weights);
                }
            }
            (Metric::L2, None) => s.base = s.norm_sq - 2.0 * s.constant,
            _ => s.base = -list.coarse + s.constant,
        }
    }

    fn scan<F: Fn(usize) -> bool>(
        &self,
        s: &mut SqQuery,
        metric: Metric,
        run: Stored<'_>,
        n: usize,
        first: usize,
        heap: &mut TopK,
        ok: &F,
    ) {
        let Some(kernel) = &s.kernel else {
            return;
        };
        let cs = ScalarQuantizer::code_size(self);
        let mut start = 0;
        while start < n {
            let rows = CHUNK.min(n - start);
            let codes = &run.codes[start * cs..(start + rows) * cs];
            s.sums.resize(rows, 0.0);
            let out = &mut s.sums[..rows];
            kernel.scan(&s.weights, &s.w4, codes, out);
            offer(metric, s.base, out, run.aux, (start, first), heap, ok);
            start += rows;
        }
    }

    /// [`ksq::NQ`]: [`VectorCodec::scan_many`] scores that many queries per pass.
    fn queries_per_scan(&self) -> usize {
        ksq::NQ
    }

    /// Queries are scored [`ksq::NQ`] at a time per pass over each chunk of rows
    /// ([`Kernel::scan_multi`]: each code step loaded and decoded once for the four
    /// queries, the sums bit for bit [`VectorCodec::scan`]'s); the queries left over
    /// one by one.
    fn scan_many<F: Fn(usize) -> bool>(
        &self,
        states: &mut [SqQuery],
        metric: Metric,
        run: Stored<'_>,
        n: usize,
        first: usize,
        heaps: &mut [TopK],
        ok: &F,
    ) {
        const NQ: usize = ksq::NQ;
        let cs = ScalarQuantizer::code_size(self);
        let mut states = states.chunks_exact_mut(NQ);
        let mut heaps = heaps.chunks_exact_mut(NQ);
        for (ss, hs) in (&mut states).zip(&mut heaps) {
            // The four queries' sums side by side in the first state's buffer.
            let mut sums = std::mem::take(&mut ss[0].sums);
            let (Some(kernel), true) = (&ss[0].kernel, ss.iter().all(|s| s.kernel.is_some()))
            else {
                // (Not begun: nothing to score, as `scan` does.)
                ss[0].sums = sums;
                continue;
            };
            let mut start = 0;
            while start < n {
                let rows = CHUNK.min(n - start);
                sums.resize(NQ * rows, 0.0);
                let w: [&[f32]; NQ] = std::array::from_fn(|j| ss[j].weights.as_slice());
                let w4: [&ksq::Lut4Weights; NQ] = std::array::from_fn(|j| &ss[j].w4);
                let codes = &run.codes[start * cs..(start + rows) * cs];
                kernel.scan_multi(w, w4, codes, &mut sums[..NQ * rows]);
                for ((s, heap), out) in ss.iter().zip(hs.iter_mut()).zip(sums.chunks_exact(rows)) {
                    offer(metric, s.base, out, run.aux, (start, first), heap, ok);
                }
                start += rows;
            }
            ss[0].sums = sums;
        }
        let rest = states
            .into_remainder()
            .iter_mut()
            .zip(heaps.into_remainder());
        for (s, heap) in rest {
            self.scan(s, metric, run, n, first, heap, ok);
        }
    }

    #[inline]
    fn distance(&self, s: &SqQuery, metric: Metric, stored: Stored<'_>, row: usize) -> f32 {
        let cs = ScalarQuantizer::code_size(self);
        let code = &stored.codes[row * cs..(row + 1) * cs];
        let mut out = [0.0f32; 1];
        if let Some(k) = &s.kernel {
            k.scan(&s.weights, &s.w4, code, &mut out);
        }
        let dot = s.constant + out[0];
        match metric {
            Metric::L2 => s.norm_sq - 2.0 * dot + stored.aux[row],
            Metric::InnerProduct => -dot,
            Metric::Cosine => 1.0 - dot * stored.aux[row],
        }
    }

    #[inline]
    fn prefetch(&self, stored: Stored<'_>, row: usize, bytes: usize) {
        let cs = ScalarQuantizer::code_size(self);
        kernels::prefetch_l1(&stored.codes[row * cs..row * cs + cs.min(bytes)]);
        // The row's norm (L2) or inverse norm (cosine), read with the code.
        if let Some(a) = stored.aux.get(row..row + 1) {
            kernels::prefetch_l1(a);
        }
    }
}
