//! `Hnsw`: a hierarchical navigable small-world graph (Malkov & Yashunin) over raw,
//! scalar-quantized or product-quantized vectors.
//!
//! | spec | nodes store | distance the search walks |
//! | --- | --- | --- |
//! | `HNSW{M}` | the vectors | exact |
//! | `HNSW{M},SQ8` (any `SQ` variant) | scalar codes (+ correction term) | asymmetric: f32 query vs codes |
//! | `HNSW{M},PQ{m}` | 8-bit PQ codes | asymmetric (ADC table per query) |
//!
//! **How the graph is built and searched.** The graph is built over the *original*
//! vectors (the raw ones, or the decoded codes when an index that keeps no raw vectors is
//! extended) with the exact metric — squared L2, or for inner product `−⟨a, b⟩`, which
//! orders neighbours like the inner product — so its edges are as good as an
//! uncompressed graph's. Two builders:
//!
//! - **native** (the default, `src/index/hnsw/insert.rs`): hnswlib's insertion — greedy descent, a beam
//!   of `ef_construction` (200 by default) per layer, the neighbour-selection heuristic
//!   keeping `M` links (`2M` slots on layer 0, `M` above) — run in parallel with a lock
//!   per node; levels are drawn from the seed and the row number, so a one-thread build
//!   is reproducible, and `add` inserts the new rows into the existing graph.
//! - **hnsw_rs** (`--hnsw-builder hnsw_rs`): the hnsw_rs crate inserts in parallel and its
//!   adjacency is copied; not seeded, and `add` rebuilds the graph over all vectors.
//!   Graphs an hnsw_rs program dumped import with [`import_hnsw_rs`].
//!
//! The graph lives in flat arrays (layer 0: `n × 2M` slots; upper layers: `M` slots per
//! node and level) that are saved in the container file and memory-mapped on open, and
//! searches walk them with this crate's beam search, scoring each node with asymmetric
//! distances to the stored codes (an f32 query against u8 codes — the same distances the
//! flat SQ/PQ scans use). After either builder, nodes with fewer than three layer-0
//! in-links get links from their nearest out-neighbours and a breadth-first pass from
//! the entry point links in any node layer 0 cannot reach, so every node is reachable by
//! construction.
//!
//! Deleted vectors stay in the graph as waypoints (as in hnswlib's `markDelete`) but are
//! never returned; filtered searches walk the whole neighbourhood and keep only accepted
//! ids, so they still return `k` results when `k` eligible vectors are reachable.
//! `compact` renumbers the rows and so rebuilds the graph over the live vectors.

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::index::checks::{check_results, check_terms};
use crate::index::rows::Rows;
use crate::index::spec::BuildOptions;
use crate::index::{
    IdFilter, Index, SearchParams, check_add, check_batch_search, check_single, untrained,
};
use crate::metric::Metric;
pub use crate::quant::codec::InnerSpec;
use crate::quant::codec::{PqParams, Raw, RawSpec, SqSpec, Stored, VectorCodec};
use crate::quant::product::ProductQuantizer;
use crate::quant::rabitq::{RaBitQ, RabitqSpec};
use crate::quant::scalar::ScalarQuantizer;
use crate::store::{Container, ContainerWriter, Slab};
use crate::topk::Neighbor;
use crate::vectors::{check_batch, check_finite};

mod build;
mod import;
mod insert;
mod search;

pub use build::HnswBuilder;
pub use import::{HnswRsDescription, import_hnsw_rs, read_hnsw_rs_description};
#[cfg(test)]
mod tests;

use search::Scratch;

/// Bytes of a node's stored data prefetched before it is scored (a 128-d f32 vector).
const PREFETCH_BYTES: usize = 512;

/// Largest `M` accepted (`2M` layer-0 slots; hnsw_rs allows at most 256 links per layer).
pub const MAX_M: usize = 128;
/// Default `ef_construction` (hnswlib's default).
pub const DEFAULT_EF_CONSTRUCTION: usize = 200;
/// Layers a graph may have (levels `0..MAX_LAYERS`).
const MAX_LAYERS: usize = 16;
/// Fewest layer-0 in-links a node is left with (see [`repair_reachability`]).
const MIN_IN_LINKS: usize = 3;
/// Width of the upper-layer beam for a layer-0 beam of `ef`: a sixteenth of it, 1 to 4
/// nodes (1 = hnswlib's greedy descent, kept for narrow, fast searches).
fn upper_beam_width(ef: usize) -> usize {
    (ef / 16).clamp(1, 4)
}

/// An empty adjacency slot.
const NONE: u32 = u32::MAX;

/// `HNSW{M}` (the vectors themselves).
pub type HnswFlat = Hnsw<Raw>;
/// `HNSW{M},SQ…`.
pub type HnswScalar = Hnsw<ScalarQuantizer>;
/// `HNSW{M},PQ{m}`.
pub type HnswProduct = Hnsw<ProductQuantizer>;

/// An empty `HNSW{M}[,inner]` index of the kind its inner spec names.
///
/// # Errors
/// A malformed spec, or an inner quantizer that does not fit `dim`.
pub fn new(
    spec: &str,
    dim: usize,
    metric: Metric,
    keep_raw: bool,
    seed: u64,
    ef_construction: usize,
) -> Result<Box<dyn Index>> {
    let opts = BuildOptions {
        metric,
        keep_raw,
        seed,
        ef_construction,
        ..BuildOptions::default()
    };
    crate::index::spec::new_index_of_kind(spec, "hnsw", dim, &opts)
}

/// An empty HNSW index with `M` links per node over `inner`, with the metric, seed,
/// raw-vector choice, `ef_construction` and graph builder of `opts`.
///
/// # Errors
/// `M` out of range, `ef_construction` out of range, or an inner quantizer that does
/// not fit `dim`.
pub fn new_typed(
    m: usize,
    inner: InnerSpec,
    dim: usize,
    opts: &BuildOptions,
) -> Result<Box<dyn Index>> {
    fn boxed<C: VectorCodec>(mut h: Hnsw<C>, opts: &BuildOptions) -> Result<Box<dyn Index>> {
        h.set_ef_construction(opts.ef_construction)?;
        h.set_builder(opts.hnsw_builder);
        Ok(Box::new(h))
    }
    let (metric, keep_raw, seed) = (opts.metric, opts.keep_raw, opts.seed);
    match inner {
        InnerSpec::Flat => boxed(
            HnswFlat::new(m, RawSpec, dim, metric, keep_raw, seed)?,
            opts,
        ),
        InnerSpec::Scalar { name, config } => boxed(
            HnswScalar::new(m, SqSpec { name, config }, dim, metric, keep_raw, seed)?,
            opts,
        ),
        InnerSpec::Product { m: pm, nbits } => boxed(
            HnswProduct::new(m, PqParams { m: pm, nbits }, dim, metric, keep_raw, seed)?,
            opts,
        ),
        InnerSpec::RaBitQ { bits } => boxed(
            Hnsw::<RaBitQ>::new(m, RabitqSpec { bits }, dim, metric, keep_raw, seed)?,
            opts,
        ),
        InnerSpec::RaBitQFs { bits } => Err(crate::error::Error::param(
            "spec",
            format!(
                "HNSW stores row-major RaBitQ codes only, not the fast-scan layout: write \
                 HNSW{m},{}",
                RabitqSpec { bits }.name()
            ),
        )),
    }
}

/// Loads an `hnsw` container of any inner quantizer.
///
/// # Errors
/// A file that is not a valid HNSW index (see [`Hnsw::from_container`]).
pub fn from_container(c: &Container) -> Result<Box<dyn Index>> {
    let p: StoredParams<InnerSpec> = c.params()?;
    Ok(match p.inner {
        InnerSpec::Flat => Box::new(HnswFlat::from_container(c)?),
        InnerSpec::Scalar { .. } => Box::new(HnswScalar::from_container(c)?),
        InnerSpec::Product { .. } => Box::new(HnswProduct::from_container(c)?),
        InnerSpec::RaBitQ { .. } => Box::new(Hnsw::<RaBitQ>::from_container(c)?),
        InnerSpec::RaBitQFs { .. } => {
            return Err(crate::error::Error::format(
                c.path(),
                "an HNSW index cannot hold fast-scan RaBitQ codes (RaBitQfs)",
            ));
        }
    })
}

#[derive(Serialize, Deserialize)]
struct StoredParams<S> {
    m: usize,
    inner: S,
    keep_raw: bool,
    ef_construction: usize,
    entry: u32,
    max_level: u8,
}

/// The copied graph.
#[derive(Clone, Debug, Default)]
struct Graph {
    /// Level of each node.
    levels: Slab<u8>,
    /// `n × 2M` layer-0 neighbours, nearest first, padded with [`NONE`].
    layer0: Slab<u32>,
    /// Nodes with level ≥ 1, ascending.
    upper_nodes: Vec<u32>,
    /// Slot offset of each upper node's lists in `upper_adj` (`upper_nodes.len() + 1`);
    /// a node of level `L` has `L` lists of `M` slots (layers 1..=L).
    upper_start: Vec<u64>,
    upper_adj: Slab<u32>,
    entry: u32,
    max_level: u8,
}

/// HNSW index over the inner quantizer `C` (row-major codes, one per node).
#[derive(Clone, Debug)]
pub struct Hnsw<C: VectorCodec> {
    dim: usize,
    metric: Metric,
    m: usize,
    inner: C::Spec,
    keep_raw: bool,
    seed: u64,
    ef_construction: usize,
    builder: HnswBuilder,
    codec: Option<C>,
    codes: Slab<u8>,
    /// Per-node auxiliary terms of the codec ([`VectorCodec::has_aux`]).
    corr: Slab<f32>,
    raw: Slab<f32>,
    rows: Rows,
    graph: Graph,
}

impl<C: VectorCodec> Hnsw<C> {
    /// An empty index with `M` links per node (`2M` on layer 0) over the inner
    /// quantizer `inner`, with `ef_construction` 200.
    ///
    /// # Errors
    /// `M` outside `2..=MAX_M`, or an inner quantizer that does not fit `dim`.
    pub fn new(
        m: usize,
        inner: C::Spec,
        dim: usize,
        metric: Metric,
        keep_raw: bool,
        seed: u64,
    ) -> Result<Self> {
        if !(2..=MAX_M).contains(&m) {
            return Err(Error::param(
                "M",
                format!("HNSW{m}: M must be in 2..={MAX_M}"),
            ));
        }
        C::check(&inner, dim)?;
        let codec = if C::STORES_RAW {
            Some(C::train(&inner, &[], dim, 0)?)
        } else {
            None
        };
        Ok(Hnsw {
            dim,
            metric,
            m,
            codec,
            inner,
            keep_raw,
            seed,
            ef_construction: DEFAULT_EF_CONSTRUCTION,
            builder: HnswBuilder::default(),
            codes: Slab::default(),
            corr: Slab::default(),
            raw: Slab::default(),
            rows: Rows::default(),
            graph: Graph::default(),
        })
    }

    /// Sets `ef_construction` (beam width while building; takes effect at the next
    /// build, i.e. the next `add` or `compact`).
    pub fn set_ef_construction(&mut self, ef: usize) -> Result<()> {
        if ef == 0 || ef > 1 << 16 {
            return Err(Error::param(
                "ef_construction",
                format!("must be in 1..=65536, got {ef}"),
            ));
        }
        self.ef_construction = ef;
        Ok(())
    }

    /// Chooses the graph builder for the next `add` or `compact` (not stored in the
    /// file: an opened index adds with the native builder).
    pub fn set_builder(&mut self, builder: HnswBuilder) {
        self.builder = builder;
    }

    /// `M`: links per node on the upper layers (`2M` on layer 0).
    pub fn m(&self) -> usize {
        self.m
    }

    /// Level of every node (their count per level shows the hierarchy).
    pub fn levels(&self) -> &[u8] {
        &self.graph.levels
    }

    /// Layer-0 neighbours of `node` (row number), nearest first.
    pub fn neighbors(&self, node: usize) -> Vec<u32> {
        let w = 2 * self.m;
        self.graph.layer0[node * w..(node + 1) * w]
            .iter()
            .copied()
            .filter(|&v| v != NONE)
            .collect()
    }

    fn name(&self) -> String {
        if C::STORES_RAW {
            format!("HNSW{}", self.m)
        } else {
            format!("HNSW{},{}", self.m, C::name(&self.inner))
        }
    }

    fn codec(&self) -> Result<&C> {
        self.codec.as_ref().ok_or_else(|| untrained(&self.name()))
    }

    fn stores_raw(&self) -> bool {
        self.keep_raw || C::STORES_RAW
    }

    fn stored(&self) -> Stored<'_> {
        Stored {
            codes: &self.codes,
            aux: &self.corr,
            raw: &self.raw,
        }
    }

    fn prepare(&self, x: &[f32]) -> Vec<f32> {
        crate::vectors::prepared(x, self.dim, self.metric)
    }

    /// The vectors of every row (raw when kept, else decoded codes).
    fn all_vectors(&self) -> Result<Vec<f32>> {
        if self.stores_raw() {
            return Ok(self.raw.to_vec());
        }
        self.codec()?.decode(&self.codes)
    }

    /// Loads an `hnsw` container.
    pub fn from_container(c: &Container) -> Result<Self> {
        let h = c.header();
        let bad = |m: String| Error::format(c.path(), m);
        let dim = usize::try_from(h.dim)
            .ok()
            .filter(|&d| d > 0 && d <= 1 << 24)
            .ok_or_else(|| bad(format!("invalid dimension {} in header", h.dim)))?;
        let n = usize::try_from(h.count)
            .ok()
            .filter(|&n| n < i32::MAX as usize)
            .ok_or_else(|| bad("vector count out of range".into()))?;
        let p: StoredParams<C::Spec> = c.params()?;
        let mut idx = Hnsw::<C>::new(p.m, p.inner, dim, h.metric, p.keep_raw, 0)
            .map_err(|e| bad(e.to_string()))?;
        idx.ef_construction = p.ef_construction.clamp(1, 1 << 16);
        let size =
            |a: usize, b: usize| a.checked_mul(b).ok_or_else(|| bad("size overflows".into()));
        let codec = C::read(&idx.inner, c, dim)?;
        if !C::STORES_RAW {
            idx.codes = c.slab::<u8>("codes", size(n, codec.row_size())?)?;
            if codec.has_aux(h.metric) {
                idx.corr = c.slab::<f32>("corr", n)?;
            }
        }
        idx.codec = Some(codec);
        if idx.stores_raw() {
            idx.raw = c.slab::<f32>("raw", size(n, dim)?)?;
        }
        idx.rows = Rows::read(c, n)?;
        // The graph: bounds of every stored id are checked where it is used, so an
        // unverified open stays O(upper nodes).
        let levels = c.slab::<u8>("node_levels", n)?;
        let layer0 = c.slab::<u32>("layer0", size(n, 2 * p.m)?)?;
        let nu = c.section("upper_nodes")?.len() / 4;
        let upper_nodes: Vec<u32> = c.slab::<u32>("upper_nodes", nu)?.to_vec();
        let upper_start = c.section_u64("upper_start", nu + 1)?;
        if upper_nodes.windows(2).any(|w| w[0] >= w[1])
            || upper_nodes.last().is_some_and(|&v| v as usize >= n)
            || upper_start[0] != 0
            || upper_start.windows(2).any(|w| w[0] > w[1])
        {
            return Err(bad("malformed upper-layer index".into()));
        }
        let nadj = usize::try_from(upper_start[nu]).map_err(|_| bad("size overflows".into()))?;
        let upper_adj = c.slab::<u32>("upper_adj", nadj)?;
        if n > 0 && (p.entry as usize >= n || p.max_level as usize > MAX_LAYERS) {
            return Err(bad(format!(
                "entry point {} / top level {} out of range",
                p.entry, p.max_level
            )));
        }
        idx.graph = Graph {
            levels,
            layer0,
            upper_nodes,
            upper_start,
            upper_adj,
            entry: p.entry,
            max_level: p.max_level,
        };
        if c.verified() {
            check_finite(&idx.raw, dim, "stored vectors").map_err(|e| bad(e.to_string()))?;
            if idx.corr.iter().any(|v| !v.is_finite()) {
                return Err(bad("non-finite correction term".into()));
            }
        }
        Ok(idx)
    }

    /// `add` (`replace`: `upsert`): everything is checked before the index changes.
    fn add_rows(
        &mut self,
        vectors: &[f32],
        ids: Option<&[u64]>,
        replace: bool,
        progress: &(dyn Fn(usize, usize) + Sync),
    ) -> Result<usize> {
        let n = check_add(self.dim, vectors, ids)?;
        if self.rows.len() + n >= i32::MAX as usize {
            return Err(Error::param(
                "add",
                format!("HNSW holds at most {} vectors", i32::MAX - 1),
            ));
        }
        let replaced = self.rows.admit(n, ids, replace)?;
        let first_new = self.rows.len();
        let x = self.prepare(vectors);
        // The graph is built over the stored raw vectors when there are any (no copy),
        // else over the decoded codes of the old rows and the new vectors themselves.
        let decoded = if self.stores_raw() {
            None
        } else {
            Some(self.all_vectors()?)
        };
        let codec = self.codec()?;
        if !C::STORES_RAW {
            let codes = codec.encode(&x)?;
            if codec.has_aux(self.metric) {
                let corr = codec.aux_terms(&codes, self.metric, &|_| None);
                check_terms(&corr, f64::MAX, "add", "auxiliary term", 0)?;
                self.corr.to_mut().extend_from_slice(&corr);
            }
            self.codes.to_mut().extend_from_slice(&codes);
        }
        if self.stores_raw() {
            self.raw.to_mut().extend_from_slice(&x);
        }
        self.rows.push_replacing(n, ids, &replaced);
        match decoded {
            Some(mut all) => {
                all.extend_from_slice(&x);
                drop(x);
                self.build_graph(&all, first_new, progress)?;
            }
            None => {
                drop(x);
                let raw = std::mem::take(&mut self.raw);
                let built = self.build_graph(&raw, first_new, progress);
                self.raw = raw;
                built?;
            }
        }
        Ok(replaced.len())
    }
}

impl<C: VectorCodec> Index for Hnsw<C> {
    fn spec(&self) -> String {
        self.name()
    }
    row_accessors!();
    /// The code size per vector (4·d for `HNSW{M}`); graph links are counted in
    /// [`Index::memory_bytes`].
    fn bytes_per_vector(&self) -> f64 {
        crate::index::codec_bytes_per_vector(self.codec.as_ref(), &self.inner, self.dim)
    }
    fn memory_bytes(&self) -> usize {
        let g = &self.graph;
        let params = self.codec.as_ref().map_or(0, C::params_bytes);
        self.codes.len()
            + self.corr.len() * 4
            + self.raw.len() * 4
            + self.rows.memory_bytes()
            + g.levels.len()
            + g.layer0.len() * 4
            + g.upper_nodes.len() * 4
            + g.upper_start.len() * 8
            + g.upper_adj.len() * 4
            + params
    }
    fn is_trained(&self) -> bool {
        self.codec.is_some()
    }

    fn train(&mut self, sample: &[f32]) -> Result<()> {
        self.codec = Some(crate::index::train_codec(
            &self.inner,
            sample,
            self.dim,
            self.seed,
            self.metric,
        )?);
        self.codes = Slab::default();
        self.corr = Slab::default();
        self.raw = Slab::default();
        self.rows = Rows::default();
        self.graph = Graph::default();
        Ok(())
    }

    fn add(&mut self, vectors: &[f32], ids: Option<&[u64]>) -> Result<()> {
        self.add_rows(vectors, ids, false, &|_, _| {}).map(|_| ())
    }

    fn add_with_progress(
        &mut self,
        vectors: &[f32],
        ids: Option<&[u64]>,
        progress: &(dyn Fn(usize, usize) + Sync),
    ) -> Result<()> {
        self.add_rows(vectors, ids, false, progress).map(|_| ())
    }

    fn upsert(&mut self, vectors: &[f32], ids: &[u64]) -> Result<usize> {
        self.add_rows(vectors, Some(ids), true, &|_, _| {})
    }

    crate::index::rows_methods!();

    fn build_params(&self) -> Vec<(&'static str, String)> {
        let top = self.graph.max_level;
        vec![
            ("M", self.m.to_string()),
            ("ef_construction", self.ef_construction.to_string()),
            (
                "layers",
                format!("{} (graph levels 0..={top})", usize::from(top) + 1),
            ),
            ("raw", crate::index::raw_kept(self.keep_raw)),
        ]
    }
    fn compact(&mut self) -> Result<usize> {
        let dropped = self.rows.deleted();
        if dropped == 0 {
            return Ok(0);
        }
        let all = self.all_vectors()?;
        let cs = self.codes.len() / self.rows.len().max(1);
        let live_vectors = self.rows.compact_slab(&Slab::from(all), self.dim);
        self.codes = self.rows.compact_slab(&self.codes, cs);
        if !self.corr.is_empty() {
            self.corr = self.rows.compact_slab(&self.corr, 1);
        }
        if !self.raw.is_empty() {
            self.raw = self.rows.compact_slab(&self.raw, self.dim);
        }
        self.rows.compact();
        self.build_graph(&live_vectors, 0, &|_, _| {})?;
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
        self.codec()?;
        let q = self.prepare(query);
        let res = self.search_prepared(&q, params, filter, &mut Scratch::default())?;
        check_results(std::slice::from_ref(&res), 0)?;
        Ok(res)
    }

    fn search_batch(&self, queries: &[f32], params: &SearchParams) -> Result<Vec<Vec<Neighbor>>> {
        check_batch_search(queries, self.dim, self.len(), params)?;
        self.codec()?;
        let q = self.prepare(queries);
        let res: Vec<Vec<Neighbor>> = q
            .par_chunks(self.dim)
            .map_init(Scratch::default, |s, q| {
                self.search_prepared(q, params, &IdFilter::All, s)
            })
            .collect::<Result<_>>()?;
        check_results(&res, 0)?;
        Ok(res)
    }

    fn reconstruct(&self, vectors: &[f32]) -> Result<Option<Vec<f32>>> {
        check_batch(vectors, self.dim, "vectors")?;
        check_finite(vectors, self.dim, "vectors")?;
        let x = self.prepare(vectors);
        let codec = self.codec()?;
        if C::STORES_RAW {
            return Ok(None);
        }
        Ok(Some(codec.decode(&codec.encode(&x)?)?))
    }

    fn reconstruct_ids(&self, ids: &[u64]) -> Result<Vec<f32>> {
        let raw = self.stores_raw().then_some(&self.raw[..]);
        let codes = &self.codes;
        crate::index::codes::decode_rows(self.codec()?, &self.rows, ids, codes, raw, self.dim)
    }

    fn to_container(&self) -> Result<ContainerWriter<'_>> {
        let codec = self.codec()?;
        let n = self.rows.len();
        let g = &self.graph;
        let mut w = ContainerWriter::new("hnsw", &self.name(), self.dim, self.metric, n);
        w.params(&StoredParams {
            m: self.m,
            inner: self.inner.clone(),
            keep_raw: self.keep_raw,
            ef_construction: self.ef_construction,
            entry: g.entry,
            max_level: g.max_level,
        })?;
        if !C::STORES_RAW {
            codec.write(&mut w);
            w.section("codes", &self.codes[..]);
            if codec.has_aux(self.metric) {
                w.section_f32("corr", &self.corr);
            }
        }
        if self.stores_raw() {
            w.section_f32("raw", &self.raw);
        }
        self.rows.write(&mut w);
        w.section("node_levels", &g.levels[..])
            .section_u32("layer0", &g.layer0)
            .section_u32("upper_nodes", &g.upper_nodes)
            .section_u64("upper_start", &g.upper_start)
            .section_u32("upper_adj", &g.upper_adj);
        Ok(w)
    }
}
