//! `Hnsw`: a hierarchical navigable small-world graph (Malkov & Yashunin) over raw,
//! scalar-quantized or product-quantized vectors.
//!
//! | spec | nodes store | distance the search walks |
//! | --- | --- | --- |
//! | `HNSW{M}` | the vectors | exact |
//! | `HNSW{M},SQ8` (any `SQ` variant) | scalar codes (+ correction term) | asymmetric: f32 query vs codes |
//! | `HNSW{M},PQ{m}` | 8-bit PQ codes | asymmetric (ADC table per query) |
//!
//! **How the graph is built and searched.** The graph is built by the `hnsw_rs` crate
//! (parallel insertion, `M` links per node on the upper layers and `2M` on layer 0,
//! `ef_construction` 200 by default) over the *original* vectors with the exact metric
//! (squared L2; for inner product the shifted `max‖x‖² − ⟨a, b⟩`, which orders
//! neighbours like the inner product but stays non-negative), so its edges are as good as
//! an uncompressed graph's. Its per-layer adjacency lists are then copied into flat arrays
//! (layer 0: `n × 2M` slots; upper layers: `M` slots per node and level) that are saved
//! in the container file and memory-mapped on open, and searches walk them with this
//! crate's own beam search. This answers three limits of hnsw_rs 0.3.5: its `Distance<T>`
//! takes one type for query and data, so an f32 query could not be scored against u8
//! codes — our search uses asymmetric distances to the stored codes, the same ones the
//! flat SQ/PQ scans use; its dump/reload writes two files whose loaded graph borrows its
//! loader — ours is one memory-mapped section set; and nodes can end up unreachable after
//! `parallel_insert` (hnsw_rs issues #32, #37) — after copying, a breadth-first pass from
//! the entry point finds any node layer 0 cannot reach and links it from its nearest
//! reachable neighbour, so every node is reachable by construction.
//!
//! Deleted vectors stay in the graph as waypoints (as in hnswlib's `markDelete`) but are
//! never returned; filtered searches walk the whole neighbourhood and keep only accepted
//! ids, so they still return `k` results when `k` eligible vectors are reachable.
//! `add` and `compact` rebuild the graph with hnsw_rs over all live vectors (the raw
//! ones when kept, else the reconstructions): the stored graph cannot be handed back to
//! hnsw_rs for incremental insertion.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use hnsw_rs::prelude::Distance;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::index::ivf::InnerSpec;
use crate::index::rows::{Exact, Rows, rerank_unavailable};
use crate::index::scalar::Kernel;
use crate::index::{IdFilter, Index, SearchParams, check_add, check_search, check_single};
use crate::kernels::{self, sq as ksq};
use crate::metric::Metric;
use crate::quant::product::{ProductQuantizer, check_params};
use crate::quant::scalar::ScalarQuantizer;
use crate::store::{Container, ContainerWriter, Slab};
use crate::topk::Neighbor;
use crate::vectors::{check_batch, check_finite};

/// Bytes of a node's stored data prefetched before it is scored (a 128-d f32 vector).
const PREFETCH_BYTES: usize = 512;

/// Largest `M` accepted (hnsw_rs allows at most 256 links per layer).
pub const MAX_M: usize = 128;
/// Default `ef_construction` (hnswlib's default).
pub const DEFAULT_EF_CONSTRUCTION: usize = 200;
/// Layers hnsw_rs may use.
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

/// Parses `HNSW{M}` or `HNSW{M},{inner}` (inner: any SQ variant or 8-bit `PQ{m}`).
pub fn parse_spec(spec: &str) -> Option<(usize, InnerSpec)> {
    let s = spec.trim();
    let (head, inner) = match s.split_once(',') {
        Some((h, i)) => (h.trim(), Some(i.trim())),
        None => (s, None),
    };
    if !head.to_ascii_lowercase().starts_with("hnsw") {
        return None;
    }
    let digits = &head[4..];
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let m: usize = digits.parse().ok()?;
    if !(2..=MAX_M).contains(&m) {
        return None;
    }
    let inner = match inner {
        None => InnerSpec::Flat,
        Some(i) if i.eq_ignore_ascii_case("flat") => InnerSpec::Flat,
        Some(i) if i.to_ascii_lowercase().starts_with("sq") => {
            let (name, config) = crate::index::scalar::parse_spec(i)?;
            InnerSpec::Scalar { name, config }
        }
        Some(i) if i.to_ascii_lowercase().starts_with("pq") => {
            let p = crate::index::product::parse_spec(i)?;
            if p.opq || p.nbits != 8 {
                return None;
            }
            InnerSpec::Product { m: p.m, nbits: 8 }
        }
        Some(_) => return None,
    };
    Some((m, inner))
}

#[derive(Serialize, Deserialize)]
struct StoredParams {
    m: usize,
    inner: InnerSpec,
    keep_raw: bool,
    ef_construction: usize,
    entry: u32,
    max_level: u8,
}

#[derive(Clone, Debug)]
enum Codec {
    Flat,
    Scalar(ScalarQuantizer),
    Product(ProductQuantizer),
}

/// The distance hnsw_rs builds the graph with.
struct BuildDist {
    ip_shift: Option<f32>,
}

impl Distance<f32> for BuildDist {
    fn eval(&self, a: &[f32], b: &[f32]) -> f32 {
        match self.ip_shift {
            None => kernels::l2_sq(a, b),
            Some(s) => (s - kernels::dot(a, b)).max(0.0),
        }
    }
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

/// HNSW index.
#[derive(Clone, Debug)]
pub struct Hnsw {
    dim: usize,
    metric: Metric,
    m: usize,
    inner: InnerSpec,
    keep_raw: bool,
    seed: u64,
    ef_construction: usize,
    codec: Option<Codec>,
    codes: Slab<u8>,
    /// Scalar inner: ‖x̂‖² (L2), 1/‖x̂‖ (cosine).
    corr: Slab<f32>,
    raw: Slab<f32>,
    rows: Rows,
    graph: Graph,
}

/// Min-ordering wrapper for (distance, node).
#[derive(Clone, Copy, Debug, PartialEq)]
struct Cand(f32, u32);
impl Eq for Cand {}
impl PartialOrd for Cand {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Cand {
    fn cmp(&self, o: &Self) -> Ordering {
        self.0.total_cmp(&o.0).then(self.1.cmp(&o.1))
    }
}

/// Per-thread search scratch: an epoch-stamped visited array and the heaps.
#[derive(Default)]
struct Scratch {
    visited: Vec<u32>,
    epoch: u32,
    cands: BinaryHeap<std::cmp::Reverse<Cand>>,
    results: BinaryHeap<Cand>,
    weights: Vec<f32>,
    table: Vec<f32>,
}

impl Scratch {
    fn reset(&mut self, n: usize) {
        if self.visited.len() != n || self.epoch == u32::MAX {
            self.visited.clear();
            self.visited.resize(n, 0);
            self.epoch = 0;
        }
        self.epoch += 1;
        self.cands.clear();
        self.results.clear();
    }
    #[inline]
    fn visit(&mut self, v: u32) -> bool {
        let slot = &mut self.visited[v as usize];
        if *slot == self.epoch {
            false
        } else {
            *slot = self.epoch;
            true
        }
    }
}

/// How one query is scored against stored nodes.
struct Scorer<'a> {
    idx: &'a Hnsw,
    q: &'a [f32],
    constant: f32,
    norm_sq: f32,
    /// SQ codes: the shared scan kernel and its 4-bit weight layout.
    kernel: Option<Kernel>,
    w4: ksq::Lut4Weights,
}

impl Scorer<'_> {
    /// Hints the CPU to load `node`'s stored data (its first [`PREFETCH_BYTES`]).
    #[inline]
    fn prefetch(&self, node: usize) {
        let idx = self.idx;
        let cap = |bytes: usize| bytes.min(PREFETCH_BYTES);
        match idx.codec.as_ref() {
            Some(Codec::Flat) | None => {
                let d = cap(idx.dim * 4) / 4;
                kernels::prefetch_l1(&idx.raw[node * idx.dim..node * idx.dim + d]);
            }
            Some(Codec::Scalar(sq)) => {
                let cs = sq.code_size();
                kernels::prefetch_l1(&idx.codes[node * cs..node * cs + cap(cs)]);
            }
            Some(Codec::Product(pq)) => {
                let cs = pq.m();
                kernels::prefetch_l1(&idx.codes[node * cs..node * cs + cap(cs)]);
            }
        }
    }

    #[inline]
    fn dist(&self, s: &Scratch, node: usize) -> f32 {
        let idx = self.idx;
        let d = idx.dim;
        match idx.codec.as_ref() {
            Some(Codec::Flat) | None => {
                let x = &idx.raw[node * d..(node + 1) * d];
                match idx.metric {
                    Metric::L2 => kernels::l2_sq(self.q, x),
                    m => m.distance_from_score(kernels::dot(self.q, x)),
                }
            }
            Some(Codec::Scalar(sq)) => {
                let cs = sq.code_size();
                let code = &idx.codes[node * cs..(node + 1) * cs];
                let mut out = [0.0f32; 1];
                if let Some(k) = &self.kernel {
                    k.scan(&s.weights, &self.w4, code, &mut out);
                }
                let dot = self.constant + out[0];
                match idx.metric {
                    Metric::L2 => self.norm_sq - 2.0 * dot + idx.corr[node],
                    Metric::InnerProduct => -dot,
                    Metric::Cosine => 1.0 - dot * idx.corr[node],
                }
            }
            Some(Codec::Product(pq)) => {
                let m = pq.m();
                let code = &idx.codes[node * m..(node + 1) * m];
                let mut acc = 0.0f32;
                for (sub, &c) in code.iter().enumerate() {
                    acc += s.table[sub * 256 + c as usize];
                }
                acc + self.constant
            }
        }
    }
}

impl Hnsw {
    /// An empty index for `HNSW{M}[,inner]` with `ef_construction` 200.
    pub fn new(spec: &str, dim: usize, metric: Metric, keep_raw: bool, seed: u64) -> Result<Self> {
        let (m, inner) = parse_spec(spec).ok_or_else(|| Error::Spec {
            spec: spec.to_string(),
            message: format!(
                "not an HNSW spec (HNSW{{M}}, HNSW{{M}},SQ8 (any SQ variant), HNSW{{M}},PQ{{m}}; \
                 2 ≤ M ≤ {MAX_M})"
            ),
        })?;
        if let InnerSpec::Product { m, nbits } = inner {
            check_params(dim, m, nbits)?;
        }
        Ok(Hnsw {
            dim,
            metric,
            m,
            codec: (inner == InnerSpec::Flat).then_some(Codec::Flat),
            inner,
            keep_raw,
            seed,
            ef_construction: DEFAULT_EF_CONSTRUCTION,
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
        match &self.inner {
            InnerSpec::Flat => format!("HNSW{}", self.m),
            InnerSpec::Scalar { name, .. } => format!("HNSW{},{name}", self.m),
            InnerSpec::Product { m, .. } => format!("HNSW{},PQ{m}", self.m),
        }
    }

    fn codec(&self) -> Result<&Codec> {
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

    fn stores_raw(&self) -> bool {
        self.keep_raw || self.inner == InnerSpec::Flat
    }

    fn prepare(&self, x: &[f32]) -> Vec<f32> {
        crate::vectors::prepared(x, self.dim, self.metric)
    }

    /// The vectors of every row (raw when kept, else decoded codes).
    fn all_vectors(&self) -> Result<Vec<f32>> {
        if self.stores_raw() {
            return Ok(self.raw.to_vec());
        }
        match self.codec()? {
            Codec::Scalar(sq) => sq.decode(&self.codes),
            Codec::Product(pq) => pq.decode(&self.codes),
            Codec::Flat => Ok(self.raw.to_vec()),
        }
    }

    /// Builds the graph over `vectors` (one per row) with hnsw_rs and copies it.
    fn build_graph(&mut self, vectors: &[f32]) -> Result<()> {
        let d = self.dim;
        let n = vectors.len() / d;
        if n == 0 {
            self.graph = Graph::default();
            return Ok(());
        }
        if n >= (i32::MAX as usize) {
            return Err(Error::param(
                "add",
                format!("HNSW holds at most {} vectors", i32::MAX - 1),
            ));
        }
        let ip_shift = (self.metric == Metric::InnerProduct).then(|| {
            vectors
                .chunks_exact(d)
                .map(|v| kernels::dot(v, v))
                .fold(0.0f32, f32::max)
                * 1.0001
                + 1e-6
        });
        let h = hnsw_rs::hnsw::Hnsw::<f32, BuildDist>::new(
            self.m,
            n,
            MAX_LAYERS,
            self.ef_construction,
            BuildDist { ip_shift },
        );
        let data: Vec<(&[f32], usize)> = vectors.chunks_exact(d).zip(0..n).collect();
        h.parallel_insert_slice(&data);
        let (m, w0) = (self.m, 2 * self.m);
        let mut levels = vec![0u8; n];
        let mut layer0 = vec![NONE; n * w0];
        let mut upper: Vec<(u32, Vec<Vec<u32>>)> = Vec::new();
        let pi = h.get_point_indexation();
        for p in pi {
            let id = p.get_origin_id();
            if id >= n {
                return Err(Error::param(
                    "hnsw",
                    format!("graph returned unknown id {id}"),
                ));
            }
            let level = p.get_point_id().0;
            levels[id] = level;
            let nbs = p.get_neighborhood_id();
            let ids = |l: usize, cap: usize| -> Vec<u32> {
                nbs.get(l)
                    .map(|v| {
                        v.iter()
                            .map(|nb| nb.get_origin_id() as u32)
                            .filter(|&x| (x as usize) < n && x as usize != id)
                            .take(cap)
                            .collect()
                    })
                    .unwrap_or_default()
            };
            let l0 = ids(0, w0);
            layer0[id * w0..id * w0 + l0.len()].copy_from_slice(&l0);
            if level > 0 {
                upper.push((id as u32, (1..=level as usize).map(|l| ids(l, m)).collect()));
            }
        }
        let max_level = h.get_max_level_observed();
        let entry = pi
            .get_layer_iterator(max_level as usize)
            .map(|p| p.get_origin_id() as u32)
            .min()
            .unwrap_or(0);
        drop(h);
        upper.sort_by_key(|u| u.0);
        let mut upper_nodes = Vec::with_capacity(upper.len());
        let mut upper_start = vec![0u64];
        let mut upper_adj = Vec::new();
        for (node, lists) in upper {
            upper_nodes.push(node);
            for l in lists {
                let mut slots = l;
                slots.resize(m, NONE);
                upper_adj.extend(slots);
            }
            upper_start.push(upper_adj.len() as u64);
        }
        let mut g = Graph {
            levels: Slab::from(levels),
            layer0: Slab::from(layer0),
            upper_nodes,
            upper_start,
            upper_adj: Slab::from(upper_adj),
            entry,
            max_level,
        };
        repair_reachability(&mut g, vectors, d, w0, |a, b| {
            BuildDist { ip_shift }.eval(a, b)
        });
        self.graph = g;
        Ok(())
    }

    /// Upper-layer neighbours of `node` at `level` (≥ 1).
    fn upper(&self, node: u32, level: u8) -> &[u32] {
        let g = &self.graph;
        match g.upper_nodes.binary_search(&node) {
            Ok(i) => {
                let start = g.upper_start[i] as usize + (level as usize - 1) * self.m;
                let end = g.upper_start[i + 1] as usize;
                if start + self.m <= end {
                    &g.upper_adj[start..start + self.m]
                } else {
                    &[]
                }
            }
            Err(_) => &[],
        }
    }

    fn scorer<'a>(&'a self, q: &'a [f32], s: &mut Scratch) -> Scorer<'a> {
        let mut sc = Scorer {
            idx: self,
            q,
            constant: 0.0,
            norm_sq: kernels::dot(q, q),
            kernel: None,
            w4: ksq::Lut4Weights::default(),
        };
        match self.codec.as_ref() {
            Some(Codec::Scalar(sq)) => {
                sc.constant = sq.query_terms(q, &mut s.weights);
                let k = Kernel::for_quantizer(sq);
                sc.w4 = k.lut4_weights(&s.weights);
                sc.kernel = Some(k);
            }
            Some(Codec::Product(pq)) => {
                let tm = if self.metric == Metric::L2 {
                    Metric::L2
                } else {
                    Metric::InnerProduct
                };
                pq.adc_table(q, tm, &mut s.table);
                sc.constant = if self.metric == Metric::Cosine {
                    1.0
                } else {
                    0.0
                };
            }
            _ => {}
        }
        sc
    }

    /// Beam search for one prepared query: `depth` best accepted rows.
    fn search_one(
        &self,
        q: &[f32],
        ef: usize,
        depth: usize,
        filter: &IdFilter<'_>,
        s: &mut Scratch,
    ) -> Vec<Neighbor> {
        let n = self.rows.len();
        let g = &self.graph;
        if n == 0 || g.levels.len() != n {
            return Vec::new();
        }
        let sc = self.scorer(q, s);
        let all = matches!(filter, IdFilter::All) && !self.rows.has_deleted();
        let ids = self.rows.ids();
        let ok = |r: usize| all || (self.rows.is_live(r) && filter.accepts(ids[r]));
        // Descent through the upper layers with a narrow beam (hnswlib is greedy, one
        // node wide): on clustered data a greedy descent can settle in a neighbouring
        // cluster that layer 0 then rarely leaves, whatever `ef` is.
        let width = upper_beam_width(ef.max(depth));
        let entry = (g.entry as usize).min(n - 1) as u32;
        let mut entries = vec![Cand(sc.dist(s, entry as usize), entry)];
        for level in (1..=g.max_level).rev() {
            entries = self.upper_beam(&sc, s, entries, level, width);
        }
        // Layer-0 beam from the entries.
        let ef = ef.max(depth);
        s.reset(n);
        for &Cand(d, v) in &entries {
            s.visit(v);
            s.cands.push(std::cmp::Reverse(Cand(d, v)));
            if ok(v as usize) {
                s.results.push(Cand(d, v));
            }
        }
        let w0 = 2 * self.m;
        while let Some(std::cmp::Reverse(Cand(d, v))) = s.cands.pop() {
            if s.results.len() >= ef && s.results.peek().is_some_and(|w| d > w.0) {
                break;
            }
            let start = v as usize * w0;
            // Unvisited neighbours first, their data prefetched while the list is walked
            // (the scoring then finds them in cache).
            let mut fresh = [0u32; 2 * MAX_M];
            let mut nf = 0;
            for &u in &g.layer0[start..start + w0] {
                if u == NONE || (u as usize) >= n || !s.visit(u) {
                    continue;
                }
                sc.prefetch(u as usize);
                fresh[nf] = u;
                nf += 1;
            }
            for &u in &fresh[..nf] {
                let du = sc.dist(s, u as usize);
                let full = s.results.len() >= ef;
                if full && s.results.peek().is_some_and(|w| du >= w.0) {
                    continue;
                }
                s.cands.push(std::cmp::Reverse(Cand(du, u)));
                if ok(u as usize) {
                    s.results.push(Cand(du, u));
                    if s.results.len() > ef {
                        s.results.pop();
                    }
                }
            }
        }
        let mut out: Vec<Neighbor> = s
            .results
            .drain()
            .map(|c| Neighbor {
                id: c.1 as u64,
                distance: c.0,
            })
            .collect();
        out.sort_by(|a, b| a.cmp_best_first(b));
        out.truncate(depth);
        out
    }

    /// Beam search of width `width` in upper layer `level` from `entries`; the best
    /// `width` nodes found, nearest first.
    fn upper_beam(
        &self,
        sc: &Scorer<'_>,
        s: &mut Scratch,
        entries: Vec<Cand>,
        level: u8,
        width: usize,
    ) -> Vec<Cand> {
        let n = self.rows.len();
        s.reset(n);
        for c in entries {
            s.visit(c.1);
            s.cands.push(std::cmp::Reverse(c));
            s.results.push(c);
        }
        while s.results.len() > width {
            s.results.pop();
        }
        while let Some(std::cmp::Reverse(Cand(d, v))) = s.cands.pop() {
            if s.results.len() >= width && s.results.peek().is_some_and(|w| d > w.0) {
                break;
            }
            for &u in self.upper(v, level) {
                if (u as usize) >= n || !s.visit(u) {
                    continue;
                }
                let du = sc.dist(s, u as usize);
                if s.results.len() < width || s.results.peek().is_some_and(|w| du < w.0) {
                    s.cands.push(std::cmp::Reverse(Cand(du, u)));
                    s.results.push(Cand(du, u));
                    if s.results.len() > width {
                        s.results.pop();
                    }
                }
            }
        }
        let mut out: Vec<Cand> = s.results.drain().collect();
        out.sort();
        out
    }

    fn search_prepared(
        &self,
        q: &[f32],
        params: &SearchParams,
        filter: &IdFilter<'_>,
        s: &mut Scratch,
    ) -> Result<Vec<Neighbor>> {
        let rerank = params.rerank > 0 && self.inner != InnerSpec::Flat;
        if rerank && self.raw.is_empty() {
            return Err(rerank_unavailable(&self.name()));
        }
        if params.ef_search == 0 {
            return Err(Error::param("ef", "must be at least 1"));
        }
        let depth = if rerank {
            params.rerank.max(params.k)
        } else {
            params.k
        };
        let cands = self.search_one(q, params.ef_search, depth, filter, s);
        let exact = rerank.then(|| Exact {
            raw: &self.raw,
            dim: self.dim,
            metric: self.metric,
            query: q,
        });
        Ok(self.rows.finish(cands, params.k, exact))
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
        let p: StoredParams = c.params()?;
        let spec = match &p.inner {
            InnerSpec::Flat => format!("HNSW{}", p.m),
            InnerSpec::Scalar { name, .. } => format!("HNSW{},{name}", p.m),
            InnerSpec::Product { m, .. } => format!("HNSW{},PQ{m}", p.m),
        };
        let mut idx =
            Hnsw::new(&spec, dim, h.metric, p.keep_raw, 0).map_err(|e| bad(e.to_string()))?;
        if idx.inner != p.inner {
            return Err(bad("inner quantizer does not match the spec".into()));
        }
        idx.ef_construction = p.ef_construction.clamp(1, 1 << 16);
        let size =
            |a: usize, b: usize| a.checked_mul(b).ok_or_else(|| bad("size overflows".into()));
        idx.codec = Some(match &p.inner {
            InnerSpec::Flat => Codec::Flat,
            InnerSpec::Scalar { config, .. } => {
                Codec::Scalar(crate::index::scalar::read_quantizer(c, dim, config)?)
            }
            InnerSpec::Product { m, nbits } => Codec::Product(
                ProductQuantizer::from_parts(
                    dim,
                    *m,
                    *nbits,
                    c.section_f32("centroids", size(1usize << nbits, dim)?)?,
                )
                .map_err(|e| bad(format!("quantizer: {e}")))?,
            ),
        });
        match idx.codec.as_ref() {
            Some(Codec::Scalar(sq)) => {
                idx.codes = c.slab::<u8>("codes", size(n, sq.code_size())?)?;
                if h.metric != Metric::InnerProduct {
                    idx.corr = c.slab::<f32>("corr", n)?;
                }
            }
            Some(Codec::Product(pq)) => idx.codes = c.slab::<u8>("codes", size(n, pq.m())?)?,
            _ => {}
        }
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
}

/// Makes every node findable on layer 0.
///
/// First, every node with fewer than [`MIN_IN_LINKS`] in-links gets links from its
/// nearest out-neighbours (hnsw_rs's pruning keeps links one-way, and a node only its
/// far neighbours point to is reachable but rarely reached by a beam). Then a
/// breadth-first search from the entry point finds any node still unreachable and links
/// it from its nearest reachable nodes, until none is left. A full host gives up its
/// farthest link whose target keeps enough other in-links, so no node loses its way in.
fn repair_reachability(
    g: &mut Graph,
    vectors: &[f32],
    d: usize,
    w0: usize,
    dist: impl Fn(&[f32], &[f32]) -> f32,
) {
    let n = g.levels.len();
    if n == 0 {
        return;
    }
    let entry = (g.entry as usize).min(n - 1);
    let layer0 = g.layer0.to_mut();
    let vec_of = |i: usize| &vectors[i * d..(i + 1) * d];
    let bfs = |from: usize, seen: &mut [bool], layer0: &[u32]| {
        let mut queue = std::collections::VecDeque::from([from]);
        seen[from] = true;
        while let Some(v) = queue.pop_front() {
            for &u in &layer0[v * w0..(v + 1) * w0] {
                if u != NONE && (u as usize) < seen.len() && !seen[u as usize] {
                    seen[u as usize] = true;
                    queue.push_back(u as usize);
                }
            }
        }
    };
    let mut indeg = vec![0u32; n];
    for &u in layer0.iter() {
        if u != NONE && (u as usize) < n {
            indeg[u as usize] += 1;
        }
    }
    // Links `u` from up to `want` of `hosts` (nearest first); returns how many.
    let link_in =
        |u: usize, hosts: &[usize], want: usize, layer0: &mut [u32], indeg: &mut [u32]| {
            let mut by_dist: Vec<(f32, usize)> = hosts
                .iter()
                .map(|&h| (dist(vec_of(u), vec_of(h)), h))
                .collect();
            by_dist.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
            let mut linked = 0;
            for &(_, host) in &by_dist {
                if linked == want {
                    break;
                }
                let slots = &mut layer0[host * w0..(host + 1) * w0];
                if slots.contains(&(u as u32)) {
                    continue;
                }
                let at = slots.iter().position(|&v| v == NONE).or_else(|| {
                    (0..w0)
                        .filter(|&i| {
                            (slots[i] as usize) < n
                                && indeg[slots[i] as usize] > MIN_IN_LINKS as u32
                        })
                        .max_by(|&a, &b| {
                            dist(vec_of(host), vec_of(slots[a] as usize))
                                .total_cmp(&dist(vec_of(host), vec_of(slots[b] as usize)))
                        })
                });
                if let Some(at) = at {
                    if slots[at] != NONE {
                        indeg[slots[at] as usize] -= 1;
                    }
                    slots[at] = u as u32;
                    indeg[u] += 1;
                    linked += 1;
                }
            }
            linked
        };
    for u in 0..n {
        let have = indeg[u] as usize;
        if have < MIN_IN_LINKS {
            let own: Vec<usize> = layer0[u * w0..(u + 1) * w0]
                .iter()
                .filter(|&&v| v != NONE && (v as usize) < n && v as usize != u)
                .map(|&v| v as usize)
                .collect();
            link_in(u, &own, MIN_IN_LINKS - have, layer0, &mut indeg);
        }
    }
    for _ in 0..64 {
        let mut seen = vec![false; n];
        bfs(entry, &mut seen, layer0);
        if seen.iter().all(|&s| s) {
            return;
        }
        for u in 0..n {
            if seen[u] {
                continue;
            }
            let own: Vec<usize> = layer0[u * w0..(u + 1) * w0]
                .iter()
                .filter(|&&v| v != NONE && (v as usize) < n && seen[v as usize])
                .map(|&v| v as usize)
                .collect();
            let hosts = if own.is_empty() {
                (0..n).filter(|&v| seen[v]).collect()
            } else {
                own
            };
            link_in(u, &hosts, MIN_IN_LINKS, layer0, &mut indeg);
            bfs(u, &mut seen, layer0);
        }
    }
}

impl Index for Hnsw {
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
    /// The code size per vector (4·d for `HNSW{M}`); graph links are counted in
    /// [`Index::memory_bytes`].
    fn bytes_per_vector(&self) -> f64 {
        match &self.inner {
            InnerSpec::Flat => 4.0 * self.dim as f64,
            InnerSpec::Scalar { config, .. } => {
                crate::quant::scalar::code_size(self.dim, config.bits) as f64
            }
            InnerSpec::Product { m, .. } => *m as f64,
        }
    }
    fn memory_bytes(&self) -> usize {
        let g = &self.graph;
        let params = match &self.codec {
            Some(Codec::Scalar(sq)) => crate::index::scalar::quantizer_bytes(sq),
            Some(Codec::Product(pq)) => pq.centroids().len() * 4,
            _ => 0,
        };
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
        check_batch(sample, self.dim, "training sample")?;
        check_finite(sample, self.dim, "training sample")?;
        let x = self.prepare(sample);
        let codec = match &self.inner {
            InnerSpec::Flat => Codec::Flat,
            InnerSpec::Scalar { config, .. } => {
                Codec::Scalar(ScalarQuantizer::train(&x, self.dim, config)?)
            }
            InnerSpec::Product { m, nbits } => Codec::Product(ProductQuantizer::train(
                &x, self.dim, *m, *nbits, self.seed,
            )?),
        };
        self.codec = Some(codec);
        self.codes = Slab::default();
        self.corr = Slab::default();
        self.raw = Slab::default();
        self.rows = Rows::default();
        self.graph = Graph::default();
        Ok(())
    }

    fn add(&mut self, vectors: &[f32], ids: Option<&[u64]>) -> Result<()> {
        let n = check_add(self.dim, vectors, ids)?;
        if self.rows.len() + n >= i32::MAX as usize {
            return Err(Error::param(
                "add",
                format!("HNSW holds at most {} vectors", i32::MAX - 1),
            ));
        }
        let x = self.prepare(vectors);
        let mut all = self.all_vectors()?;
        match self.codec()? {
            Codec::Flat => {}
            Codec::Scalar(sq) => {
                let codes = sq.encode(&x)?;
                let corr =
                    crate::index::scalar::correction_terms(sq, &codes, self.metric, &|_| None);
                self.corr.to_mut().extend_from_slice(&corr);
                self.codes.to_mut().extend_from_slice(&codes);
            }
            Codec::Product(pq) => {
                let codes = pq.encode(&x)?;
                self.codes.to_mut().extend_from_slice(&codes);
            }
        }
        if self.stores_raw() {
            self.raw.to_mut().extend_from_slice(&x);
        }
        all.extend_from_slice(&x);
        self.rows.push(n, ids);
        self.build_graph(&all)
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
        self.build_graph(&live_vectors)?;
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
        self.search_prepared(&q, params, filter, &mut Scratch::default())
    }

    fn search_batch(&self, queries: &[f32], params: &SearchParams) -> Result<Vec<Vec<Neighbor>>> {
        check_search(self.dim, self.len(), params)?;
        check_batch(queries, self.dim, "queries")?;
        check_finite(queries, self.dim, "queries")?;
        self.codec()?;
        let q = self.prepare(queries);
        q.par_chunks(self.dim)
            .map_init(Scratch::default, |s, q| {
                self.search_prepared(q, params, &IdFilter::All, s)
            })
            .collect()
    }

    fn reconstruct(&self, vectors: &[f32]) -> Result<Option<Vec<f32>>> {
        check_batch(vectors, self.dim, "vectors")?;
        check_finite(vectors, self.dim, "vectors")?;
        let x = self.prepare(vectors);
        match self.codec()? {
            Codec::Flat => Ok(None),
            Codec::Scalar(sq) => Ok(Some(sq.decode(&sq.encode(&x)?)?)),
            Codec::Product(pq) => Ok(Some(pq.decode(&pq.encode(&x)?)?)),
        }
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
        match codec {
            Codec::Flat => {}
            Codec::Scalar(sq) => {
                crate::index::scalar::write_quantizer(&mut w, sq);
                w.section("codes", self.codes.to_vec());
                if self.metric != Metric::InnerProduct {
                    w.section_f32("corr", &self.corr);
                }
            }
            Codec::Product(pq) => {
                w.section_f32("centroids", pq.centroids())
                    .section("codes", self.codes.to_vec());
            }
        }
        if self.stores_raw() {
            w.section_f32("raw", &self.raw);
        }
        self.rows.write(&mut w);
        w.section("node_levels", g.levels.to_vec())
            .section_u32("layer0", &g.layer0)
            .section_u32("upper_nodes", &g.upper_nodes)
            .section_u64("upper_start", &g.upper_start)
            .section_u32("upper_adj", &g.upper_adj);
        Ok(w)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::generate::gaussian;
    use crate::data::groundtruth::ground_truth;
    use crate::eval::recall_at_k;
    use crate::store::OpenOptions;

    #[test]
    fn parses_specs() {
        assert_eq!(parse_spec("HNSW32"), Some((32, InnerSpec::Flat)));
        assert_eq!(
            parse_spec("hnsw16,PQ8"),
            Some((16, InnerSpec::Product { m: 8, nbits: 8 }))
        );
        assert!(matches!(
            parse_spec("HNSW8,SQ4"),
            Some((8, InnerSpec::Scalar { .. }))
        ));
        for bad in [
            "HNSW",
            "HNSW1",
            "HNSW300",
            "HNSWx",
            "HNSW16,PQ8x4fs",
            "HNSW16,OPQ8,PQ8",
            "HNSW16,IVF8,Flat",
            "HNSW16,",
        ] {
            assert_eq!(parse_spec(bad), None, "{bad}");
        }
    }

    /// Every inserted point is reachable and finds itself (catches orphaned nodes).
    #[test]
    fn every_point_finds_itself() {
        let (n, dim) = (5000, 16);
        let data = gaussian(n, dim, 0.0, 1.0, 77).unwrap();
        let mut h = Hnsw::new("HNSW16", dim, Metric::L2, false, 1).unwrap();
        h.add(data.as_slice(), None).unwrap();
        let search = |ef: usize, rows: &[usize]| -> Vec<usize> {
            let p = SearchParams {
                k: 1,
                ef_search: ef,
                ..Default::default()
            };
            rows.iter()
                .copied()
                .filter(|&i| h.search(data.row(i), &p).unwrap()[0].id != i as u64)
                .collect()
        };
        // hnsw_rs inserts in parallel, so the graph depends on thread timing: at ef 64 a
        // rare point can be missed by the beam (seen: 1 of 5000 under a loaded test
        // run), but none may be unfindable — an orphan is missed at any ef.
        let all: Vec<usize> = (0..n).collect();
        let missed = search(64, &all);
        assert!(
            missed.len() <= n / 1000,
            "{} of {n} missed at ef 64",
            missed.len()
        );
        let still = search(n, &missed);
        for &i in &still {
            let indeg = (0..n)
                .filter(|&v| h.neighbors(v).contains(&(i as u32)))
                .count();
            eprintln!("missed {i}: in-degree {indeg}, level {}", h.levels()[i]);
        }
        assert!(
            still.is_empty(),
            "{} points did not find themselves",
            still.len()
        );
        // Layer 0 is connected from the entry point.
        let mut seen = vec![false; n];
        let mut stack = vec![h.graph.entry as usize];
        seen[stack[0]] = true;
        while let Some(v) = stack.pop() {
            for u in h.neighbors(v) {
                if !seen[u as usize] {
                    seen[u as usize] = true;
                    stack.push(u as usize);
                }
            }
        }
        assert!(seen.iter().all(|&s| s));
        // A hierarchy exists: some nodes above layer 0, fewer on each layer up.
        let l1 = h.levels().iter().filter(|&&l| l >= 1).count();
        assert!(l1 > 0 && l1 < n / 4, "{l1}");
    }

    #[test]
    fn upper_beam_finds_what_the_layer_holds() {
        let (n, dim) = (5000, 16);
        let data = gaussian(n, dim, 0.0, 1.0, 78).unwrap();
        let mut h = Hnsw::new("HNSW8", dim, Metric::L2, false, 1).unwrap();
        h.add(data.as_slice(), None).unwrap();
        let level = 1u8;
        assert!(h.graph.max_level >= level);
        let queries = gaussian(20, dim, 0.0, 1.0, 79).unwrap();
        let mut s = Scratch::default();
        let start = h.graph.upper_nodes[0];
        for q in queries.as_slice().chunks_exact(dim) {
            let sc = h.scorer(q, &mut s);
            let entry = vec![Cand(sc.dist(&s, start as usize), start)];
            // Every node of the layer reachable from the start, nearest first.
            let mut seen = std::collections::BTreeSet::from([start]);
            let mut stack = vec![start];
            while let Some(v) = stack.pop() {
                for &u in h.upper(v, level) {
                    if (u as usize) < n && seen.insert(u) {
                        stack.push(u);
                    }
                }
            }
            let mut all: Vec<Cand> = seen
                .iter()
                .map(|&v| Cand(sc.dist(&s, v as usize), v))
                .collect();
            all.sort();
            // A beam as wide as the layer returns all of it, in order.
            let wide = h.upper_beam(&sc, &mut s, entry.clone(), level, all.len());
            assert_eq!(wide, all);
            // Width 1 is the greedy descent: from the start, move to the best neighbour
            // while it improves.
            let (mut cur, mut cur_d) = (start, entry[0].0);
            loop {
                let best = h
                    .upper(cur, level)
                    .iter()
                    .filter(|&&u| (u as usize) < n)
                    .map(|&u| Cand(sc.dist(&s, u as usize), u))
                    .min();
                match best {
                    Some(b) if b.0 < cur_d => (cur, cur_d) = (b.1, b.0),
                    _ => break,
                }
            }
            let one = h.upper_beam(&sc, &mut s, entry.clone(), level, 1);
            assert_eq!(one.len(), 1);
            assert_eq!(one[0].0, cur_d);
            // A wider beam is never worse than the greedy one, and sorted.
            let four = h.upper_beam(&sc, &mut s, entry, level, 4);
            assert!(four.len() <= 4 && four[0].0 <= cur_d);
            assert!(four.windows(2).all(|w| w[0] <= w[1]));
        }
    }

    #[test]
    fn repair_links_orphans() {
        // Three nodes, node 2 has no in-edge: the repair must add one.
        let vectors = [0.0f32, 1.0, 2.0];
        let mut g = Graph {
            levels: Slab::from(vec![0u8; 3]),
            layer0: Slab::from(vec![1, NONE, 0, NONE, 1, NONE]),
            entry: 0,
            ..Default::default()
        };
        repair_reachability(&mut g, &vectors, 1, 2, |a, b| (a[0] - b[0]).abs());
        assert!(g.layer0[2..4].contains(&2), "{:?}", &g.layer0[..]);
    }

    #[test]
    fn recall_on_20k_for_each_inner_and_metric() {
        let (n, dim) = (20_000, 32);
        let data = gaussian(n, dim, 0.0, 1.0, 5).unwrap();
        let queries = gaussian(200, dim, 0.0, 1.0, 6).unwrap();
        // (spec, metric, minimum recall@10 at ef 64). Measured 0.935, 0.974, 0.964, 0.924,
        // 0.815; hnsw_rs's parallel insertion order and level draws are not seeded, so
        // the floors sit about 0.03 below.
        for (spec, metric, min) in [
            ("HNSW16", Metric::L2, 0.90),
            ("HNSW16", Metric::InnerProduct, 0.94),
            ("HNSW16", Metric::Cosine, 0.93),
            ("HNSW16,SQ8", Metric::L2, 0.89),
            ("HNSW16,PQ16", Metric::L2, 0.78),
        ] {
            let gt = ground_truth(&data, &queries, 10, metric).unwrap();
            let mut h = Hnsw::new(spec, dim, metric, false, 3).unwrap();
            h.set_ef_construction(100).unwrap();
            if !h.is_trained() {
                h.train(data.as_slice()).unwrap();
            }
            h.add(data.as_slice(), None).unwrap();
            let p = SearchParams {
                k: 10,
                ef_search: 64,
                ..Default::default()
            };
            let r = recall_at_k(&h.search_batch(queries.as_slice(), &p).unwrap(), &gt, 10);
            eprintln!("{spec} {metric:?}: recall@10 {r} at ef 64");
            assert!(r >= min, "{spec} {metric:?}: recall {r} < {min}");
            // Larger beams never hurt much and usually help.
            let p2 = SearchParams {
                ef_search: 256,
                ..p
            };
            let r2 = recall_at_k(&h.search_batch(queries.as_slice(), &p2).unwrap(), &gt, 10);
            assert!(r2 >= r - 0.01, "{spec}: ef 256 {r2} vs ef 64 {r}");
        }
    }

    #[test]
    fn save_load_delete_filter_compact() {
        let (n, dim) = (3000, 16);
        let data = gaussian(n, dim, 0.0, 1.0, 9).unwrap();
        let queries = gaussian(20, dim, 0.0, 1.0, 10).unwrap();
        let dir = tempfile::tempdir().unwrap();
        for spec in ["HNSW8", "HNSW8,SQ8", "HNSW8,SQ4", "HNSW8,PQ4"] {
            let mut h = Hnsw::new(spec, dim, Metric::L2, true, 2).unwrap();
            if !h.is_trained() {
                h.train(data.as_slice()).unwrap();
            }
            h.add(&data.as_slice()[..2000 * dim], None).unwrap();
            let p = SearchParams {
                k: 10,
                ef_search: 50,
                rerank: 20,
                ..Default::default()
            };
            let path = dir.path().join("h.vq");
            h.save(&path).unwrap();
            let c = Container::open_with(&path, OpenOptions::default()).unwrap();
            let mut loaded = Hnsw::from_container(&c).unwrap();
            let a = h.search_batch(queries.as_slice(), &p).unwrap();
            assert_eq!(
                loaded.search_batch(queries.as_slice(), &p).unwrap(),
                a,
                "{spec}"
            );
            loaded.add(&data.as_slice()[2000 * dim..], None).unwrap();
            assert_eq!(loaded.len(), n);
            let gone: Vec<u64> = (0..n as u64).filter(|i| i % 4 == 1).collect();
            loaded.delete(&gone).unwrap();
            let res = loaded.search_batch(queries.as_slice(), &p).unwrap();
            assert!(res.iter().flatten().all(|r| r.id % 4 != 1));
            let subset: Vec<u64> = (0..n as u64).filter(|i| i % 10 == 3).collect();
            let f = IdFilter::from_ids(subset);
            for q in queries.rows() {
                let r = loaded.search_filtered(q, &p, &f).unwrap();
                assert_eq!(r.len(), 10);
                assert!(r.iter().all(|x| x.id % 10 == 3));
            }
            assert_eq!(loaded.compact().unwrap(), gone.len());
            assert_eq!(loaded.len(), n - gone.len());
            let after = loaded.search_batch(queries.as_slice(), &p).unwrap();
            assert!(after.iter().flatten().all(|r| r.id % 4 != 1));
        }
    }

    #[test]
    fn bad_parameters() {
        assert!(Hnsw::new("HNSW1000", 8, Metric::L2, false, 0).is_err());
        assert!(Hnsw::new("HNSW16,PQ3", 8, Metric::L2, false, 0).is_err());
        let mut h = Hnsw::new("HNSW16,SQ8", 4, Metric::L2, false, 0).unwrap();
        assert!(h.add(&[0.0; 4], None).is_err(), "untrained");
        let mut h = Hnsw::new("HNSW4", 2, Metric::L2, false, 0).unwrap();
        h.add(&[0.0, 0.0, 1.0, 1.0, 2.0, 2.0], None).unwrap();
        let p = SearchParams {
            ef_search: 0,
            ..Default::default()
        };
        assert!(h.search(&[0.0, 0.0], &p).is_err());
        assert!(h.set_ef_construction(0).is_err());
        let r = h.search(&[0.9, 0.9], &SearchParams::with_k(2)).unwrap();
        assert_eq!(r[0].id, 1);
    }
}
