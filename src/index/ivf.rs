//! `Ivf`: an inverted file (FAISS's `IndexIVFFlat`, `IndexIVFScalarQuantizer`,
//! `IndexIVFPQ`, `IndexIVFPQFastScan`), generic over the inner quantizer.
//!
//! A coarse k-means quantizer ([`crate::kmeans`], `nlist` centroids) partitions the
//! vectors into lists; a query scans only the `nprobe` lists whose centroids are nearest.
//! Inside a list each vector is stored as the code of its *residual* `x − c` (vector
//! minus its list's centroid) under the inner quantizer `C` ([`VectorCodec`]), which
//! spends the code's bits on what the centroid does not already say:
//!
//! | spec | `C` | list entries | distance |
//! | --- | --- | --- | --- |
//! | `IVF{nlist},Flat` | [`Raw`] | the vectors | exact |
//! | `IVF{nlist},SQ8` (any `SQ` variant) | [`ScalarQuantizer`] | scalar codes of residuals, plus a correction term | asymmetric, on the codes |
//! | `IVF{nlist},PQ{M}` | [`ProductQuantizer`] | 8-bit PQ codes of residuals, blocks of 64 | byte tables per probed list, re-scored to float ADC |
//! | `IVF{nlist},PQ{M}x4fs` | [`ProductQuantizer`] | 4-bit PQ codes of residuals, blocks of 32 | fast-scan `u8` tables, re-scored to float ADC |
//!
//! The index asks the codec for everything that depends on the kind of code: a query is
//! prepared once ([`VectorCodec::begin_query`]), each probed list sets its terms
//! ([`VectorCodec::set_list`]: the residual query for L2, or the list's precomputed
//! tables) and its run of codes is scanned ([`VectorCodec::scan`]). For PQ with L2 the
//! per-list tables of Jégou et al. (2011) are computed once from the coarse centroids
//! ([`Ivf::set_precomputed_tables`]).
//!
//! Lists are stored contiguously (codes, ids, auxiliary terms, raw vectors, each one
//! array in list order, plus `nlist + 1` offsets), so a saved index is memory-mapped in
//! place. Adding vectors merges them into their lists (a linear pass over the index).

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::index::rows::{Exact, Rows, rerank_unavailable};
use crate::index::{IdFilter, Index, SearchParams, check_add, check_search, check_single};
use crate::kernels;
use crate::kmeans::{KMeans, KMeansConfig, nearest};
use crate::linalg::gemm_abt;
use crate::metric::Metric;
pub use crate::quant::codec::InnerSpec;
use crate::quant::codec::{ListTerms, PqParams, Raw, RawSpec, SqSpec, Stored, VectorCodec};
use crate::quant::product::ProductQuantizer;
use crate::quant::scalar::ScalarQuantizer;
use crate::store::{Container, ContainerWriter, Slab};
use crate::topk::{Neighbor, TopK};
use crate::vectors::{check_batch, check_finite};

/// Queries per group in batch search (they share one coarse GEMM).
const QUERY_GROUP: usize = 64;
/// Up to this many probes are picked by one insertion pass instead of a selection.
const FEW_PROBES: usize = 16;
/// Largest `nlist` accepted.
pub const MAX_NLIST: usize = 1 << 20;
/// Precomputed tables are skipped when they would exceed this many bytes.
const MAX_PRECOMPUTED_BYTES: usize = 512 << 20;

/// `IVF{nlist},Flat`.
pub type IvfFlat = Ivf<Raw>;
/// `IVF{nlist},SQ…`.
pub type IvfScalar = Ivf<ScalarQuantizer>;
/// `IVF{nlist},PQ{M}` and `IVF{nlist},PQ{M}x4fs`.
pub type IvfProduct = Ivf<ProductQuantizer>;

/// Parses `IVF{nlist},{inner}` (case-insensitive keywords); `None` if malformed.
pub fn parse_spec(spec: &str) -> Option<(usize, InnerSpec)> {
    let s = spec.trim();
    let (head, inner) = s.split_once(',')?;
    let head = head.trim();
    if !head.to_ascii_lowercase().starts_with("ivf") {
        return None;
    }
    let digits = &head[3..];
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let nlist: usize = digits.parse().ok()?;
    if nlist == 0 || nlist > MAX_NLIST {
        return None;
    }
    let inner = inner.trim();
    let lower = inner.to_ascii_lowercase();
    let spec = if lower == "flat" {
        InnerSpec::Flat
    } else if lower.starts_with("sq") {
        let (name, config) = crate::index::scalar::parse_spec(inner)?;
        InnerSpec::Scalar { name, config }
    } else if lower.starts_with("pq") {
        let p = crate::index::product::parse_spec(inner)?;
        if p.opq {
            return None;
        }
        InnerSpec::Product {
            m: p.m,
            nbits: p.nbits,
        }
    } else {
        return None;
    };
    Some((nlist, spec))
}

/// An untrained `IVF{nlist},{inner}` index of the kind its inner spec names.
///
/// # Errors
/// A malformed spec, or an inner quantizer that does not fit `dim`.
pub fn new(
    spec: &str,
    dim: usize,
    metric: Metric,
    keep_raw: bool,
    seed: u64,
) -> Result<Box<dyn Index>> {
    let (nlist, inner) = parse_spec(spec).ok_or_else(|| Error::Spec {
        spec: spec.to_string(),
        message: format!(
            "not an inverted-file spec (IVF{{nlist}},Flat, IVF{{nlist}},SQ8, \
             IVF{{nlist}},PQ{{M}}, IVF{{nlist}},PQ{{M}}x4fs; 1 ≤ nlist ≤ {MAX_NLIST})"
        ),
    })?;
    Ok(match inner {
        InnerSpec::Flat => Box::new(IvfFlat::new(nlist, RawSpec, dim, metric, keep_raw, seed)?),
        InnerSpec::Scalar { name, config } => Box::new(IvfScalar::new(
            nlist,
            SqSpec { name, config },
            dim,
            metric,
            keep_raw,
            seed,
        )?),
        InnerSpec::Product { m, nbits } => Box::new(IvfProduct::new(
            nlist,
            PqParams { m, nbits },
            dim,
            metric,
            keep_raw,
            seed,
        )?),
    })
}

/// Loads an `ivf` container of any inner quantizer.
///
/// # Errors
/// A file that is not a valid inverted file (see [`Ivf::from_container`]).
pub fn from_container(c: &Container) -> Result<Box<dyn Index>> {
    let p: StoredParams<InnerSpec> = c.params()?;
    Ok(match p.inner {
        InnerSpec::Flat => Box::new(IvfFlat::from_container(c)?),
        InnerSpec::Scalar { .. } => Box::new(IvfScalar::from_container(c)?),
        InnerSpec::Product { .. } => Box::new(IvfProduct::from_container(c)?),
    })
}

#[derive(Serialize, Deserialize)]
struct StoredParams<S> {
    nlist: usize,
    inner: S,
    keep_raw: bool,
}

/// Rows `order` of `src` (`w` values per row), in that order.
fn gather_rows<T: Copy>(src: &[T], w: usize, order: &[usize]) -> Vec<T> {
    let mut out = Vec::with_capacity(order.len() * w);
    for &r in order {
        out.extend_from_slice(&src[r * w..(r + 1) * w]);
    }
    out
}

/// Inverted-file index over the inner quantizer `C`.
#[derive(Clone, Debug)]
pub struct Ivf<C: VectorCodec> {
    dim: usize,
    metric: Metric,
    nlist: usize,
    inner: C::Spec,
    keep_raw: bool,
    seed: u64,
    /// Coarse centroids (`nlist × dim`) and their squared norms; empty until trained.
    centroids: Vec<f32>,
    c_norms: Vec<f32>,
    codec: Option<C>,
    /// Entry offsets of the lists (`nlist + 1`).
    offsets: Vec<usize>,
    /// Block offsets of the lists' packed runs (`nlist + 1`).
    block_starts: Vec<usize>,
    codes: Slab<u8>,
    /// Per-entry auxiliary terms of the codec ([`VectorCodec::has_aux`]); else empty.
    aux: Slab<f32>,
    rows: Rows,
    /// The vectors (prepared) in list order: when the codec needs them or `keep_raw`.
    raw: Slab<f32>,
    /// Per-list tables of the codec ([`VectorCodec::list_tables`]), computed on first
    /// use, so opening a file stays O(1).
    precomputed: std::sync::OnceLock<Vec<f32>>,
    use_precomputed: bool,
}

/// Per-query scratch buffers (reused across lists and queries).
struct Scratch<Q> {
    query: Q,
    probes: Vec<(f32, u32)>,
    first: Vec<usize>,
}

impl<Q: Default> Default for Scratch<Q> {
    fn default() -> Self {
        Scratch {
            query: Q::default(),
            probes: Vec::new(),
            first: Vec::new(),
        }
    }
}

impl<C: VectorCodec> Ivf<C> {
    /// An untrained index of `nlist` lists over the inner quantizer `inner`.
    ///
    /// # Errors
    /// `nlist` outside `1..=MAX_NLIST`, or an inner quantizer that does not fit `dim`.
    pub fn new(
        nlist: usize,
        inner: C::Spec,
        dim: usize,
        metric: Metric,
        keep_raw: bool,
        seed: u64,
    ) -> Result<Self> {
        if nlist == 0 || nlist > MAX_NLIST {
            return Err(Error::param(
                "nlist",
                format!("{nlist} lists (1 ≤ nlist ≤ {MAX_NLIST})"),
            ));
        }
        C::check(&inner, dim)?;
        Ok(Ivf {
            dim,
            metric,
            nlist,
            inner,
            keep_raw,
            seed,
            centroids: Vec::new(),
            c_norms: Vec::new(),
            codec: None,
            offsets: vec![0; nlist + 1],
            block_starts: vec![0; nlist + 1],
            codes: Slab::default(),
            aux: Slab::default(),
            rows: Rows::default(),
            raw: Slab::default(),
            precomputed: std::sync::OnceLock::new(),
            use_precomputed: true,
        })
    }

    /// Number of lists.
    pub fn nlist(&self) -> usize {
        self.nlist
    }

    /// The coarse centroids (`nlist × dim`, row-major); empty until trained.
    pub fn centroids(&self) -> &[f32] {
        &self.centroids
    }

    /// The trained inner quantizer.
    pub fn quantizer(&self) -> Option<&C> {
        self.codec.as_ref()
    }

    /// Number of entries (deleted ones included) in each list.
    pub fn list_sizes(&self) -> Vec<usize> {
        self.offsets.windows(2).map(|w| w[1] - w[0]).collect()
    }

    /// Turns the precomputed per-list tables of the codec on (default) or off (then each
    /// probed list computes its table from the residual query; results are the same up
    /// to float rounding).
    pub fn set_precomputed_tables(&mut self, on: bool) {
        self.use_precomputed = on;
        self.invalidate_tables();
    }

    /// Whether searches use precomputed tables (the codec has them for the metric —
    /// PQ with L2 — they are enabled, and they fit in 512 MiB).
    pub fn uses_precomputed_tables(&self) -> bool {
        match &self.codec {
            Some(codec) => {
                let len = codec.list_table_len();
                len > 0
                    && self.use_precomputed
                    && self.metric == Metric::L2
                    && self.nlist * len * 4 <= MAX_PRECOMPUTED_BYTES
            }
            None => false,
        }
    }

    /// The precomputed tables, computed at the first call.
    fn precomputed_tables(&self) -> Option<&[f32]> {
        if !self.uses_precomputed_tables() {
            return None;
        }
        let codec = self.codec.as_ref()?;
        let t = self.precomputed.get_or_init(|| {
            codec
                .list_tables(&self.centroids, self.metric)
                .unwrap_or_default()
        });
        (!t.is_empty()).then_some(t.as_slice())
    }

    fn name(&self) -> String {
        format!("IVF{},{}", self.nlist, C::name(&self.inner))
    }

    fn codec(&self) -> Result<&C> {
        self.codec.as_ref().ok_or_else(|| {
            Error::param(
                "index",
                format!(
                    "{} must be trained before vectors are added or searched",
                    self.name()
                ),
            )
        })
    }

    fn has_aux(&self) -> bool {
        self.codec.as_ref().is_some_and(|c| c.has_aux(self.metric))
    }

    fn stores_raw(&self) -> bool {
        self.keep_raw || C::STORES_RAW
    }

    fn prepare(&self, x: &[f32]) -> Vec<f32> {
        crate::vectors::prepared(x, self.dim, self.metric)
    }

    /// The list of each prepared vector: nearest centroid (L2, cosine) or largest inner
    /// product (inner product, as FAISS's `IndexFlatIP` coarse quantizer).
    fn assign(&self, x: &[f32]) -> Vec<u32> {
        if self.metric == Metric::InnerProduct {
            nearest(x, self.dim, &self.centroids, &vec![0.0; self.nlist]).0
        } else {
            nearest(x, self.dim, &self.centroids, &self.c_norms).0
        }
    }

    fn residuals(&self, x: &[f32], lists: &[u32]) -> Vec<f32> {
        let d = self.dim;
        let mut r = x.to_vec();
        r.par_chunks_mut(d).zip(lists).for_each(|(v, &l)| {
            let c = &self.centroids[l as usize * d..(l as usize + 1) * d];
            v.iter_mut().zip(c).for_each(|(a, b)| *a -= b);
        });
        r
    }

    /// Drops the tables (they are rebuilt at the next search that uses them).
    fn invalidate_tables(&mut self) {
        self.precomputed = std::sync::OnceLock::new();
    }

    /// Loads an `ivf` container written with this inner quantizer.
    ///
    /// # Errors
    /// A malformed header, sections of the wrong size, offsets that are not a partition
    /// of the entries, or non-finite stored values.
    pub fn from_container(c: &Container) -> Result<Self> {
        let h = c.header();
        let bad = |m: String| Error::format(c.path(), m);
        let dim = usize::try_from(h.dim)
            .ok()
            .filter(|&d| d > 0 && d <= 1 << 24)
            .ok_or_else(|| bad(format!("invalid dimension {} in header", h.dim)))?;
        let n = usize::try_from(h.count).map_err(|_| bad("vector count overflows".into()))?;
        let p: StoredParams<C::Spec> = c.params()?;
        let mut idx = Ivf::<C>::new(p.nlist, p.inner, dim, h.metric, p.keep_raw, 0)
            .map_err(|e| bad(e.to_string()))?;
        let nlist = p.nlist;
        let size =
            |a: usize, b: usize| a.checked_mul(b).ok_or_else(|| bad("size overflows".into()));
        idx.centroids = c.section_f32("coarse", size(nlist, dim)?)?;
        if idx.centroids.iter().any(|v| !v.is_finite()) {
            return Err(bad("non-finite coarse centroid".into()));
        }
        idx.c_norms = kernels::row_norms_sq(&idx.centroids, dim);
        let offsets = c.section_u64("list_offsets", nlist + 1)?;
        if offsets[0] != 0 || offsets.windows(2).any(|w| w[0] > w[1]) || offsets[nlist] != n as u64
        {
            return Err(bad(format!(
                "list offsets are not a partition of the {n} entries"
            )));
        }
        idx.offsets = offsets.iter().map(|&o| o as usize).collect();
        let codec = C::read(&idx.inner, c, dim)?;
        idx.set_block_starts(codec.block());
        let code_bytes = (0..nlist)
            .map(|l| codec.packed_len(idx.offsets[l + 1] - idx.offsets[l]))
            .sum::<usize>();
        if code_bytes > 0 {
            let section = codec.runs_section();
            idx.codes = if section != "codes" && c.section(section).is_err() {
                // Written before runs were blocked: row-major per list.
                let rs = codec.row_size();
                let rows = c.section_u8("codes", size(n, rs)?)?;
                let mut packed = Vec::with_capacity(code_bytes);
                for w in idx.offsets.windows(2) {
                    packed.extend(codec.pack(&rows[w[0] * rs..w[1] * rs]));
                }
                Slab::from(packed)
            } else {
                c.slab::<u8>(section, code_bytes)?
            };
        }
        idx.rows = Rows::read(c, n)?;
        if codec.has_aux(h.metric) {
            idx.aux = c.slab::<f32>("corr", n)?;
        }
        if p.keep_raw || C::STORES_RAW {
            idx.raw = c.slab::<f32>("raw", size(n, dim)?)?;
        }
        idx.codec = Some(codec);
        if c.verified() {
            check_finite(&idx.raw, dim, "stored vectors").map_err(|e| bad(e.to_string()))?;
            if idx.aux.iter().any(|v| !v.is_finite()) {
                return Err(bad("non-finite correction term".into()));
            }
        }
        Ok(idx)
    }

    /// Byte offset of list `l`'s run in `codes`.
    fn run_start(&self, codec: &C, l: usize) -> usize {
        let block = codec.block();
        codec.packed_len(self.block_starts[l] * block)
    }

    fn set_block_starts(&mut self, block: usize) {
        self.block_starts = std::iter::once(0)
            .chain(self.offsets.windows(2).scan(0, |acc, w| {
                *acc += (w[1] - w[0]).div_ceil(block);
                Some(*acc)
            }))
            .collect();
    }

    /// The list of every stored entry.
    fn entry_lists(&self) -> Vec<u32> {
        let mut out = Vec::with_capacity(self.rows.len());
        for (l, w) in self.offsets.windows(2).enumerate() {
            out.extend(std::iter::repeat_n(l as u32, w[1] - w[0]));
        }
        out
    }

    /// Row-major codes of every entry in entry order.
    fn entry_codes(&self, codec: &C) -> Vec<u8> {
        if codec.block() == 1 {
            return self.codes.to_vec();
        }
        let mut out = Vec::with_capacity(self.rows.len() * codec.row_size());
        for l in 0..self.nlist {
            let len = self.offsets[l + 1] - self.offsets[l];
            out.extend(codec.unpack(&self.codes[self.run_start(codec, l)..], len));
        }
        out
    }

    /// Re-lays every array out in list order, keeping the entries `keep` accepts.
    /// `lists`, `codes` (row-major, as [`Ivf::entry_codes`]), `aux` and `raw` cover every
    /// current row (after new rows were pushed).
    fn relayout(
        &mut self,
        lists: &[u32],
        codes: &[u8],
        aux: &[f32],
        raw: &[f32],
        keep: impl Fn(usize) -> bool,
    ) -> Result<()> {
        let codec = self.codec()?.clone();
        let mut counts = vec![0usize; self.nlist];
        for (r, &l) in lists.iter().enumerate() {
            if keep(r) {
                counts[l as usize] += 1;
            }
        }
        let mut offsets = Vec::with_capacity(self.nlist + 1);
        offsets.push(0);
        for c in &counts {
            offsets.push(offsets.last().copied().unwrap_or(0) + c);
        }
        let mut cursor = offsets[..self.nlist].to_vec();
        let mut order = vec![0usize; offsets[self.nlist]];
        for (r, &l) in lists.iter().enumerate() {
            if keep(r) {
                order[cursor[l as usize]] = r;
                cursor[l as usize] += 1;
            }
        }
        let rs = codec.row_size();
        let gathered = gather_rows(codes, rs, &order);
        self.offsets = offsets;
        self.set_block_starts(codec.block());
        self.codes = if codec.block() > 1 {
            let mut packed = Vec::new();
            for l in 0..self.nlist {
                let (a, b) = (self.offsets[l], self.offsets[l + 1]);
                packed.extend(codec.pack(&gathered[a * rs..b * rs]));
            }
            Slab::from(packed)
        } else {
            Slab::from(gathered)
        };
        if !aux.is_empty() {
            self.aux = Slab::from(gather_rows(aux, 1, &order));
        }
        if !raw.is_empty() {
            self.raw = Slab::from(gather_rows(raw, self.dim, &order));
        }
        self.rows = self.rows.gather(&order);
        Ok(())
    }

    /// Encodes prepared vectors assigned to `lists`: (row-major codes, auxiliary terms).
    fn encode(&self, x: &[f32], lists: &[u32]) -> Result<(Vec<u8>, Vec<f32>)> {
        let d = self.dim;
        let codec = self.codec()?;
        if C::STORES_RAW {
            return Ok((Vec::new(), Vec::new()));
        }
        let res = self.residuals(x, lists);
        let codes = codec.encode(&res)?;
        let aux = if codec.has_aux(self.metric) {
            let centroid = |i: usize| {
                let l = lists[i] as usize;
                Some(&self.centroids[l * d..(l + 1) * d])
            };
            codec.aux_terms(&codes, self.metric, &centroid)
        } else {
            Vec::new()
        };
        Ok((codes, aux))
    }

    /// Coarse distances of a group of prepared queries to every centroid
    /// (`nq × nlist`): squared L2, or −⟨q, c⟩ for inner product and cosine.
    fn coarse(&self, queries: &[f32]) -> Vec<f32> {
        let nq = queries.len() / self.dim;
        let mut out = vec![0.0f32; nq * self.nlist];
        gemm_abt(queries, &self.centroids, self.dim, &mut out);
        for (q, row) in queries
            .chunks_exact(self.dim)
            .zip(out.chunks_exact_mut(self.nlist))
        {
            if self.metric == Metric::L2 {
                let qn = kernels::dot(q, q);
                for (v, &cn) in row.iter_mut().zip(&self.c_norms) {
                    *v = (qn - 2.0 * *v + cn).max(0.0);
                }
            } else {
                row.iter_mut().for_each(|v| *v = -*v);
            }
        }
        out
    }

    /// Candidates (entry rows, best first) for one prepared query with its coarse
    /// distances.
    #[allow(clippy::too_many_arguments)]
    fn scan_query(
        &self,
        codec: &C,
        q: &[f32],
        coarse: &[f32],
        nprobe: usize,
        depth: usize,
        filter: &IdFilter<'_>,
        s: &mut Scratch<C::Query>,
    ) -> Vec<Neighbor> {
        let d = self.dim;
        let cmp = |a: &(f32, u32), b: &(f32, u32)| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1));
        // `s.probes` starts with the `nprobe` nearest lists, sorted; the other lists
        // follow, sorted only if the search has to go past `nprobe` (see below).
        s.probes.clear();
        let few = nprobe <= FEW_PROBES && nprobe < coarse.len();
        if few {
            // One pass keeping a short sorted prefix: cheaper than a selection over all
            // lists when nprobe is small; the others are appended only when needed.
            for (l, &v) in coarse.iter().enumerate() {
                let e = (v, l as u32);
                if s.probes.len() == nprobe {
                    let worst = &s.probes[nprobe - 1];
                    if v > worst.0 || cmp(&e, worst).is_ge() {
                        continue;
                    }
                    s.probes.pop();
                }
                let at = s.probes.partition_point(|p| cmp(p, &e).is_lt());
                s.probes.insert(at, e);
            }
        } else {
            s.probes
                .extend(coarse.iter().enumerate().map(|(l, &v)| (v, l as u32)));
            if nprobe < s.probes.len() {
                s.probes.select_nth_unstable_by(nprobe, cmp);
                s.probes[..nprobe].sort_unstable_by(cmp);
            } else {
                s.probes.sort_unstable_by(cmp);
            }
        }
        let mut rest_sorted = nprobe >= coarse.len();
        // With a filter, probing continues past `nprobe` lists until as many eligible
        // entries were scanned as `nprobe` lists hold: a filter keeping 10 % of the
        // vectors probes about 10× the lists, so filtered recall tracks unfiltered.
        // (Deletes alone do not widen the probe, so compaction keeps every answer.)
        let filtered = !matches!(filter, IdFilter::All);
        let (mut target, mut eligible) = (0usize, 0usize);
        let mut heap = TopK::new(depth);
        let all = matches!(filter, IdFilter::All) && !self.rows.has_deleted();
        let ids = self.rows.ids();
        let ok = |r: usize| all || (self.rows.is_live(r) && filter.accepts(ids[r]));
        let tables = self.precomputed_tables();
        s.first.clear();
        s.first
            .extend(s.probes.iter().take(nprobe.min(2)).map(|p| p.1 as usize));
        codec.begin_query(&mut s.query, q, self.metric, tables, &s.first);
        let table_len = codec.list_table_len();
        let has_aux = !self.aux.is_empty();
        for pi in 0..coarse.len() {
            // After `nprobe` lists, go on (nearest lists first) while fewer than `depth`
            // results were found — a search returns `k` results whenever `k` eligible
            // ones exist — or, filtered, while fewer eligible entries than `target` were
            // scanned.
            if pi >= nprobe {
                if heap.len() >= depth && (!filtered || eligible >= target) {
                    break;
                }
                if !rest_sorted {
                    if few {
                        let chosen: Vec<u32> = s.probes.iter().map(|p| p.1).collect();
                        s.probes.extend(
                            coarse
                                .iter()
                                .enumerate()
                                .filter(|(l, _)| !chosen.contains(&(*l as u32)))
                                .map(|(l, &v)| (v, l as u32)),
                        );
                    }
                    s.probes[nprobe..].sort_unstable_by(cmp);
                    rest_sorted = true;
                }
            }
            let (cd, l) = s.probes[pi];
            let l = l as usize;
            let (a, b) = (self.offsets[l], self.offsets[l + 1]);
            if pi < nprobe {
                target += b - a;
            }
            if filtered {
                eligible += (a..b).filter(|&r| ok(r)).count();
            }
            if a == b {
                continue;
            }
            let list = ListTerms {
                centroid: Some(&self.centroids[l * d..(l + 1) * d]),
                coarse: cd,
                tables: tables.map(|t| &t[l * table_len..(l + 1) * table_len]),
            };
            codec.set_list(&mut s.query, q, self.metric, list);
            let run = Stored {
                codes: &self.codes[self.run_start(codec, l)..],
                aux: if has_aux { &self.aux[a..b] } else { &[] },
                raw: if self.raw.is_empty() {
                    &[]
                } else {
                    &self.raw[a * d..b * d]
                },
            };
            codec.scan(&mut s.query, self.metric, run, b - a, a, &mut heap, &ok);
        }
        heap.into_sorted()
    }

    fn search_group(
        &self,
        queries: &[f32],
        params: &SearchParams,
        filter: &IdFilter<'_>,
    ) -> Result<Vec<Vec<Neighbor>>> {
        let codec = self.codec()?;
        if params.nprobe == 0 {
            return Err(Error::param("nprobe", "must be at least 1"));
        }
        let rerank = params.rerank > 0 && !C::STORES_RAW;
        if rerank && self.raw.is_empty() {
            return Err(rerank_unavailable(&self.name()));
        }
        let depth = if rerank {
            params.rerank.max(params.k)
        } else {
            params.k
        };
        let nprobe = params.nprobe.min(self.nlist);
        let prepared = self.prepare(queries);
        let coarse = self.coarse(&prepared);
        let mut scratch = Scratch::default();
        Ok(prepared
            .chunks_exact(self.dim)
            .zip(coarse.chunks_exact(self.nlist))
            .map(|(q, cd)| {
                let cands = self.scan_query(codec, q, cd, nprobe, depth, filter, &mut scratch);
                let exact = rerank.then(|| Exact {
                    raw: &self.raw,
                    dim: self.dim,
                    metric: self.metric,
                    query: q,
                });
                self.rows.finish(cands, params.k, exact)
            })
            .collect())
    }
}

impl<C: VectorCodec> Index for Ivf<C> {
    fn spec(&self) -> String {
        self.name()
    }
    fn dim(&self) -> usize {
        self.dim
    }
    fn metric(&self) -> Metric {
        self.metric
    }
    fn len(&self) -> usize {
        self.rows.live()
    }
    /// The code size of a list entry (4·d for `Flat`); the list ids are counted in
    /// [`Index::memory_bytes`].
    fn bytes_per_vector(&self) -> f64 {
        match &self.codec {
            _ if C::STORES_RAW => 4.0 * self.dim as f64,
            Some(c) => c.code_size() as f64,
            None => 0.0,
        }
    }
    fn memory_bytes(&self) -> usize {
        let params = self.codec.as_ref().map_or(0, C::params_bytes);
        self.codes.len()
            + self.rows.memory_bytes()
            + self.aux.len() * 4
            + self.raw.len() * 4
            + (self.centroids.len() + self.precomputed.get().map_or(0, Vec::len)) * 4
            + self.offsets.len() * 8
            + params
    }
    fn is_trained(&self) -> bool {
        self.codec.is_some()
    }

    fn train(&mut self, sample: &[f32]) -> Result<()> {
        let n = check_batch(sample, self.dim, "training sample")?;
        check_finite(sample, self.dim, "training sample")?;
        if n < self.nlist {
            return Err(Error::param(
                "training sample",
                format!(
                    "{n} vectors cannot train {} lists (IVF{} needs at least {} training vectors)",
                    self.nlist, self.nlist, self.nlist
                ),
            ));
        }
        let x = self.prepare(sample);
        // FAISS trains the coarse quantizer with 10 iterations.
        let cfg = KMeansConfig {
            max_iter: 10,
            seed: self.seed,
            ..KMeansConfig::new(self.nlist)
        };
        let km = KMeans::train(&x, self.dim, &cfg)?;
        self.centroids = km.into_centroids();
        self.c_norms = kernels::row_norms_sq(&self.centroids, self.dim);
        // The inner quantizer learns the residuals (exact storage learns nothing, so
        // its residuals are not even computed).
        let codec = if C::STORES_RAW {
            C::train(&self.inner, &[], self.dim, 0)?
        } else {
            let lists = self.assign(&x);
            let res = self.residuals(&x, &lists);
            C::train(&self.inner, &res, self.dim, self.seed ^ 0x9e37_79b9)?
        };
        self.codec = Some(codec);
        // Re-training empties the index: old codes belong to the old quantizers.
        self.offsets = vec![0; self.nlist + 1];
        self.block_starts = vec![0; self.nlist + 1];
        self.codes = Slab::default();
        self.aux = Slab::default();
        self.raw = Slab::default();
        self.rows = Rows::default();
        self.invalidate_tables();
        Ok(())
    }

    fn add(&mut self, vectors: &[f32], ids: Option<&[u64]>) -> Result<()> {
        let n = check_add(self.dim, vectors, ids)?;
        let codec = self.codec()?;
        let x = self.prepare(vectors);
        let new_lists = self.assign(&x);
        let (new_codes, new_aux) = self.encode(&x, &new_lists)?;
        let mut lists = self.entry_lists();
        lists.extend_from_slice(&new_lists);
        let mut codes = self.entry_codes(codec);
        codes.extend_from_slice(&new_codes);
        let mut aux = self.aux.to_vec();
        aux.extend_from_slice(&new_aux);
        let raw = if self.stores_raw() {
            let mut r = self.raw.to_vec();
            r.extend_from_slice(&x);
            r
        } else {
            Vec::new()
        };
        self.rows.push(n, ids);
        self.relayout(&lists, &codes, &aux, &raw, |_| true)
    }

    fn delete(&mut self, ids: &[u64]) -> Result<usize> {
        Ok(self.rows.delete(ids))
    }

    fn deleted(&self) -> usize {
        self.rows.deleted()
    }

    fn compact(&mut self) -> Result<usize> {
        let dropped = self.rows.deleted();
        if dropped == 0 {
            return Ok(0);
        }
        let lists = self.entry_lists();
        let codes = self.entry_codes(self.codec()?);
        let aux = self.aux.to_vec();
        let raw = self.raw.to_vec();
        let live: Vec<bool> = (0..self.rows.len()).map(|r| self.rows.is_live(r)).collect();
        self.relayout(&lists, &codes, &aux, &raw, |r| live[r])?;
        Ok(dropped)
    }

    fn search(&self, query: &[f32], params: &SearchParams) -> Result<Vec<Neighbor>> {
        self.search_filtered(query, params, &IdFilter::All)
    }

    fn search_filtered(
        &self,
        query: &[f32],
        params: &SearchParams,
        filter: &IdFilter<'_>,
    ) -> Result<Vec<Neighbor>> {
        check_single(self.dim, self.len(), query, params)?;
        let mut r = self.search_group(query, params, filter)?;
        Ok(r.pop().unwrap_or_default())
    }

    fn search_batch(&self, queries: &[f32], params: &SearchParams) -> Result<Vec<Vec<Neighbor>>> {
        check_search(self.dim, self.len(), params)?;
        check_batch(queries, self.dim, "queries")?;
        check_finite(queries, self.dim, "queries")?;
        let groups: Vec<Vec<Vec<Neighbor>>> = queries
            .par_chunks(self.dim * QUERY_GROUP)
            .map(|g| self.search_group(g, params, &IdFilter::All))
            .collect::<Result<_>>()?;
        Ok(groups.into_iter().flatten().collect())
    }

    fn reconstruct(&self, vectors: &[f32]) -> Result<Option<Vec<f32>>> {
        check_batch(vectors, self.dim, "vectors")?;
        check_finite(vectors, self.dim, "vectors")?;
        let codec = self.codec()?;
        if C::STORES_RAW {
            return Ok(None);
        }
        let x = self.prepare(vectors);
        let lists = self.assign(&x);
        let res = self.residuals(&x, &lists);
        let mut dec = codec.decode(&codec.encode(&res)?)?;
        let d = self.dim;
        dec.par_chunks_mut(d)
            .zip(lists.par_iter())
            .for_each(|(v, &l)| {
                let c = &self.centroids[l as usize * d..(l as usize + 1) * d];
                v.iter_mut().zip(c).for_each(|(a, b)| *a += b);
            });
        Ok(Some(dec))
    }

    fn to_container(&self) -> Result<ContainerWriter> {
        let codec = self.codec()?;
        let n = self.rows.len();
        let mut w = ContainerWriter::new("ivf", &self.name(), self.dim, self.metric, n);
        w.params(&StoredParams {
            nlist: self.nlist,
            inner: self.inner.clone(),
            keep_raw: self.keep_raw,
        })?;
        w.section_f32("coarse", &self.centroids);
        let offsets: Vec<u64> = self.offsets.iter().map(|&o| o as u64).collect();
        w.section_u64("list_offsets", &offsets);
        codec.write(&mut w);
        if !self.codes.is_empty() {
            w.section(codec.runs_section(), self.codes.to_vec());
        }
        self.rows.write(&mut w);
        if self.has_aux() {
            w.section_f32("corr", &self.aux);
        }
        if self.stores_raw() {
            w.section_f32("raw", &self.raw);
        }
        Ok(w)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::generate::{DataDistribution, SyntheticSpec, gaussian};
    use crate::index::Product;
    use crate::quant::codec::pq::CODES8_SECTION;
    use crate::store::OpenOptions;
    use crate::vectors::{VectorSet, normalize_in_place};

    /// Base and query splits of a 16-cluster Gaussian mixture.
    fn mixture_sets(n: usize, nq: usize, dim: usize, seed: u64) -> (VectorSet, VectorSet) {
        let d = SyntheticSpec {
            dim,
            n_base: n,
            n_query: nq,
            n_train: 0,
            distribution: DataDistribution::Mixture {
                clusters: 16,
                spread: 0.3,
            },
            seed,
        }
        .generate()
        .unwrap();
        (d.base, d.query)
    }

    fn mixture(n: usize, dim: usize, seed: u64) -> Vec<f32> {
        mixture_sets(n, 1, dim, seed).0.into_vec()
    }

    #[test]
    fn parses_specs() {
        assert_eq!(parse_spec("IVF64,Flat"), Some((64, InnerSpec::Flat)));
        assert_eq!(
            parse_spec("ivf8,pq4x4fs"),
            Some((8, InnerSpec::Product { m: 4, nbits: 4 }))
        );
        assert!(matches!(
            parse_spec("IVF8,SQ8"),
            Some((8, InnerSpec::Scalar { .. }))
        ));
        for bad in [
            "IVF,Flat",
            "IVF0,Flat",
            "IVF8",
            "IVF8,",
            "IVFx,Flat",
            "IVF8,OPQ4,PQ4",
            "IVF8,HNSW",
            "IVF-3,Flat",
            "IVF99999999999999999999,Flat",
        ] {
            assert_eq!(parse_spec(bad), None, "{bad}");
        }
    }

    /// With every list probed, IVF over residual codes ranks like a flat index over the
    /// same reconstructions: for `Flat` inner exactly the flat index.
    #[test]
    fn full_probe_equals_flat() {
        let (n, dim) = (3000, 16);
        let data = mixture(n, dim, 5);
        let queries = gaussian(20, dim, 0.0, 1.0, 6).unwrap();
        for metric in [Metric::L2, Metric::InnerProduct, Metric::Cosine] {
            let mut ivf = new("IVF16,Flat", dim, metric, false, 1).unwrap();
            ivf.train(&data).unwrap();
            ivf.add(&data, None).unwrap();
            let mut flat = crate::index::Flat::new(dim, metric);
            flat.add(&data, None).unwrap();
            let p = SearchParams {
                k: 10,
                nprobe: 16,
                ..Default::default()
            };
            for q in queries.rows() {
                let a = ivf.search(q, &p).unwrap();
                let b = flat.search(q, &p).unwrap();
                let ia: Vec<u64> = a.iter().map(|x| x.id).collect();
                let ib: Vec<u64> = b.iter().map(|x| x.id).collect();
                assert_eq!(ia, ib, "{metric:?}");
                for (x, y) in a.iter().zip(&b) {
                    assert!((x.distance - y.distance).abs() <= 1e-3 * (1.0 + y.distance.abs()));
                }
            }
        }
    }

    /// Quantized inner codes with nprobe = nlist: the distances equal the exact
    /// distances to the reconstructions (centroid + decoded residual), and the ranking is
    /// the brute-force ranking of those reconstructions.
    #[test]
    fn full_probe_equals_scan_of_reconstructions() {
        let (n, dim) = (2000, 16);
        let data = mixture(n, dim, 8);
        let queries = gaussian(10, dim, 0.0, 1.0, 9).unwrap();
        for spec in [
            "IVF8,SQ8",
            "IVF8,SQ4",
            "IVF8,PQ4",
            "IVF8,PQ8x4fs",
            "IVF8,SQ8lm",
        ] {
            for metric in [Metric::L2, Metric::InnerProduct, Metric::Cosine] {
                let mut ivf = new(spec, dim, metric, false, 2).unwrap();
                ivf.train(&data).unwrap();
                ivf.add(&data, None).unwrap();
                let rec = ivf.reconstruct(&data).unwrap().unwrap();
                let mut flat = crate::index::Flat::new(dim, Metric::L2);
                let p = SearchParams {
                    k: 10,
                    nprobe: 8,
                    ..Default::default()
                };
                let metric_of = |q: &[f32], x: &[f32]| -> f32 {
                    match metric {
                        Metric::L2 => kernels::scalar::l2_sq(q, x),
                        Metric::InnerProduct => -kernels::scalar::dot(q, x),
                        // PQ kinds score cosine as 1 − ⟨q̂, x̂⟩ (FAISS's convention);
                        // SQ kinds divide by the stored ‖x̂‖ as well.
                        Metric::Cosine if spec.contains("PQ") => 1.0 - kernels::scalar::dot(q, x),
                        Metric::Cosine => {
                            let nq = kernels::scalar::dot(q, q).sqrt();
                            let nx = kernels::scalar::dot(x, x).sqrt();
                            1.0 - kernels::scalar::dot(q, x) / (nq * nx)
                        }
                    }
                };
                flat.add(&rec, None).unwrap();
                for q in queries.rows() {
                    let got = ivf.search(q, &p).unwrap();
                    let mut qn = q.to_vec();
                    if metric.normalizes() {
                        normalize_in_place(&mut qn);
                    }
                    // Brute force over reconstructions.
                    let mut all: Vec<(f32, u64)> = rec
                        .chunks_exact(dim)
                        .enumerate()
                        .map(|(i, x)| (metric_of(&qn, x), i as u64))
                        .collect();
                    all.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
                    for (g, want) in got.iter().zip(&all) {
                        assert!(
                            (g.distance - want.0).abs() <= 2e-3 * (1.0 + want.0.abs()),
                            "{spec} {metric:?}: {} vs {}",
                            g.distance,
                            want.0
                        );
                    }
                    // The returned distances are the true distances of the returned ids.
                    for g in &got {
                        let x = &rec[g.id as usize * dim..(g.id as usize + 1) * dim];
                        let want = metric_of(&qn, x);
                        assert!((g.distance - want).abs() <= 2e-3 * (1.0 + want.abs()));
                    }
                }
            }
        }
    }

    #[test]
    fn precomputed_tables_match_direct_tables() {
        let (n, dim) = (3000, 32);
        let data = mixture(n, dim, 11);
        let queries = gaussian(15, dim, 0.0, 1.0, 12).unwrap();
        for pq in [PqParams { m: 8, nbits: 8 }, PqParams { m: 16, nbits: 4 }] {
            let mut ivf = IvfProduct::new(16, pq, dim, Metric::L2, false, 3).unwrap();
            ivf.train(&data).unwrap();
            ivf.add(&data, None).unwrap();
            assert!(ivf.uses_precomputed_tables());
            let p = SearchParams {
                k: 10,
                nprobe: 4,
                ..Default::default()
            };
            let a = ivf.search_batch(queries.as_slice(), &p).unwrap();
            ivf.set_precomputed_tables(false);
            assert!(!ivf.uses_precomputed_tables());
            let b = ivf.search_batch(queries.as_slice(), &p).unwrap();
            for (x, y) in a.iter().zip(&b) {
                for (u, v) in x.iter().zip(y) {
                    assert!((u.distance - v.distance).abs() <= 1e-3 * (1.0 + v.distance));
                }
            }
        }
    }

    /// The fast-scan list scan returns exactly the float-table answer.
    #[test]
    fn fast_scan_lists_equal_8bit_style_exact_adc() {
        let (n, dim) = (4000, 32);
        let data = mixture(n, dim, 21);
        let queries = gaussian(20, dim, 0.0, 1.0, 22).unwrap();
        let pq16 = PqParams { m: 16, nbits: 4 };
        let mut ivf = IvfProduct::new(8, pq16, dim, Metric::L2, false, 4).unwrap();
        ivf.train(&data).unwrap();
        ivf.add(&data, None).unwrap();
        let Some(pq) = &ivf.codec else {
            panic!("pq codec")
        };
        let lists = ivf.assign(&data);
        let res = ivf.residuals(&data, &lists);
        let idx = pq.encode_indices(&res).unwrap();
        // k = 1, a usual k, and a k larger than some lists: the candidate pruning
        // (k-th smallest byte sum + twice the rounding margin) must never drop an answer.
        for k in [1, 10, 60] {
            let p = SearchParams {
                k,
                nprobe: 3,
                ..Default::default()
            };
            for q in queries.rows() {
                let got = ivf.search(q, &p).unwrap();
                // Reference: float ADC over the entries of the 3 nearest lists.
                let coarse = ivf.coarse(q);
                let mut order: Vec<usize> = (0..8).collect();
                order.sort_by(|&a, &b| coarse[a].total_cmp(&coarse[b]).then(a.cmp(&b)));
                let probe = &order[..3];
                let mut all: Vec<(f32, u64)> = Vec::new();
                for (i, &l) in lists.iter().enumerate() {
                    if probe.contains(&(l as usize)) {
                        let c = &ivf.centroids[l as usize * dim..(l as usize + 1) * dim];
                        let qr: Vec<f32> = q.iter().zip(c).map(|(a, b)| a - b).collect();
                        let mut t = Vec::new();
                        pq.adc_table(&qr, Metric::L2, &mut t);
                        let d: f32 = (0..16).map(|s| t[s * 16 + idx[i * 16 + s] as usize]).sum();
                        all.push((d, i as u64));
                    }
                }
                all.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
                assert_eq!(got.len(), k);
                for (g, w) in got.iter().zip(&all) {
                    assert!(
                        (g.distance - w.0).abs() <= 1e-3 * (1.0 + w.0),
                        "k {k}: {} vs {}",
                        g.distance,
                        w.0
                    );
                }
            }
        }
    }

    #[test]
    fn recall_grows_with_nprobe_and_beats_flat_pq_at_full_probe() {
        let (n, dim) = (20_000, 32);
        let (base, queries) = mixture_sets(n, 100, dim, 31);
        let gt = crate::data::groundtruth::ground_truth(&base, &queries, 10, Metric::L2).unwrap();
        let data = base.as_slice();
        let mut ivf = new("IVF64,PQ8", dim, Metric::L2, false, 5).unwrap();
        ivf.train(data).unwrap();
        ivf.add(data, None).unwrap();
        let mut pq = Product::new("PQ8", dim, Metric::L2, false, 5).unwrap();
        pq.train(data).unwrap();
        pq.add(data, None).unwrap();
        let recall = |idx: &dyn Index, nprobe: usize| {
            let p = SearchParams {
                k: 10,
                nprobe,
                ..Default::default()
            };
            let res = idx.search_batch(queries.as_slice(), &p).unwrap();
            crate::eval::recall_at_k(&res, &gt, 10)
        };
        let r1 = recall(&*ivf, 1);
        let r8 = recall(&*ivf, 8);
        let r64 = recall(&*ivf, 64);
        let flat_pq = recall(&pq, 1);
        assert!(r1 < r8 && r8 <= r64 + 1e-9, "{r1} {r8} {r64}");
        // Residual coding spends the bits on what the centroid leaves: better than PQ
        // on the raw vectors at the same code size.
        assert!(r64 > flat_pq + 0.05, "IVF64,PQ8 {r64} vs PQ8 {flat_pq}");
    }

    #[test]
    fn files_with_row_major_8bit_lists_still_open() {
        // 8-bit lists were stored row-major (section "codes") before the blocked layout.
        let (n, dim) = (700, 16);
        let data = mixture(n, dim, 5);
        let pq8 = PqParams { m: 8, nbits: 8 };
        let mut ivf = IvfProduct::new(4, pq8, dim, Metric::L2, false, 6).unwrap();
        ivf.train(&data).unwrap();
        ivf.add(&data, None).unwrap();
        let mut w = ivf.to_container().unwrap();
        let rows = ivf.entry_codes(ivf.quantizer().unwrap());
        w.replace_section(CODES8_SECTION, "codes", rows);
        let c =
            Container::from_bytes("old.vq", w.to_bytes().unwrap(), OpenOptions::default()).unwrap();
        let old = IvfProduct::from_container(&c).unwrap();
        assert_eq!(old.codes.to_vec(), ivf.codes.to_vec());
        let q = gaussian(5, dim, 0.0, 1.0, 9).unwrap();
        let p = SearchParams {
            nprobe: 2,
            ..Default::default()
        };
        assert_eq!(
            old.search_batch(q.as_slice(), &p).unwrap(),
            ivf.search_batch(q.as_slice(), &p).unwrap()
        );
    }

    #[test]
    fn save_load_add_delete_compact() {
        let (n, dim) = (3000, 16);
        let data = mixture(n, dim, 41);
        let queries = gaussian(10, dim, 0.0, 1.0, 42).unwrap();
        let dir = tempfile::tempdir().unwrap();
        for spec in [
            "IVF8,Flat",
            "IVF8,SQ8",
            "IVF8,SQ4",
            "IVF8,PQ4",
            "IVF8,PQ8x4fs",
        ] {
            for metric in [Metric::L2, Metric::Cosine] {
                let mut ivf = new(spec, dim, metric, true, 6).unwrap();
                ivf.train(&data).unwrap();
                ivf.add(&data[..2000 * dim], None).unwrap();
                let p = SearchParams {
                    k: 10,
                    nprobe: 3,
                    rerank: 20,
                    ..Default::default()
                };
                let path = dir.path().join("i.vq");
                ivf.save(&path).unwrap();
                let c = Container::open_with(&path, OpenOptions::default()).unwrap();
                let mut loaded = from_container(&c).unwrap();
                assert_eq!(loaded.spec(), ivf.spec());
                let a = ivf.search_batch(queries.as_slice(), &p).unwrap();
                let b = loaded.search_batch(queries.as_slice(), &p).unwrap();
                assert_eq!(a, b, "{spec} {metric:?}");
                // Adding to the loaded index keeps what was there.
                loaded.add(&data[2000 * dim..], None).unwrap();
                ivf.add(&data[2000 * dim..], None).unwrap();
                assert_eq!(loaded.len(), n);
                assert_eq!(
                    ivf.search_batch(queries.as_slice(), &p).unwrap(),
                    loaded.search_batch(queries.as_slice(), &p).unwrap()
                );
                // Deletes never come back, compaction keeps the answers.
                let gone: Vec<u64> = (0..n as u64).step_by(3).collect();
                assert_eq!(loaded.delete(&gone).unwrap(), gone.len());
                let before = loaded.search_batch(queries.as_slice(), &p).unwrap();
                for r in before.iter().flatten() {
                    assert!(r.id % 3 != 0);
                }
                loaded.save(&path).unwrap();
                let c = Container::open_with(&path, OpenOptions::default()).unwrap();
                let mut again = from_container(&c).unwrap();
                assert_eq!(again.deleted(), gone.len());
                assert_eq!(again.search_batch(queries.as_slice(), &p).unwrap(), before);
                assert_eq!(again.compact().unwrap(), gone.len());
                assert_eq!(again.len(), n - gone.len());
                assert_eq!(again.search_batch(queries.as_slice(), &p).unwrap(), before);
            }
        }
    }

    #[test]
    fn bad_parameters() {
        assert!(new("IVF8,PQ5", 16, Metric::L2, false, 0).is_err());
        let mut ivf = new("IVF64,SQ8", 4, Metric::L2, false, 0).unwrap();
        let e = ivf.train(&[0.0; 4 * 10]).unwrap_err().to_string();
        assert!(e.contains("64 lists"), "{e}");
        assert!(ivf.add(&[0.0; 4], None).is_err(), "untrained");
        let data = mixture(500, 4, 1);
        let mut ivf = new("IVF4,SQ8", 4, Metric::L2, false, 0).unwrap();
        ivf.train(&data).unwrap();
        ivf.add(&data, None).unwrap();
        let p = SearchParams {
            nprobe: 0,
            ..Default::default()
        };
        assert!(ivf.search(&[0.0; 4], &p).is_err());
        assert!(
            ivf.search(
                &[0.0; 4],
                &SearchParams {
                    rerank: 5,
                    ..Default::default()
                }
            )
            .is_err(),
            "rerank without raw vectors"
        );
        assert!(
            ivf.search(&[f32::NAN, 0.0, 0.0, 0.0], &SearchParams::default())
                .is_err()
        );
    }
}
