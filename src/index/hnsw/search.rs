//! Searching the graph: the upper-layer beam, the layer-0 beam and re-ranking, each
//! distance asked of the codec.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use crate::error::{Error, Result};
use crate::index::hnsw::{Hnsw, MAX_M, NONE, PREFETCH_BYTES, upper_beam_width};
use crate::index::rows::Exact;
use crate::index::{IdFilter, SearchParams};
use crate::metric::Metric;
use crate::quant::codec::{ListTerms, Stored, VectorCodec};
use crate::topk::Neighbor;

/// Min-ordering wrapper for (distance, node).
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) struct Cand(pub(super) f32, pub(super) u32);
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

/// Per-thread search scratch: an epoch-stamped visited array, the heaps and the
/// codec's query state.
/// The builder uses it with no query state (`Scratch<()>`).
#[derive(Default)]
pub(super) struct Scratch<Q> {
    /// `u16` stamps, as hnswlib's visited lists: half the cache footprint of `u32`
    /// (a layer-0 expansion reads one stamp per neighbour, at random), cleared once
    /// every 65,535 searches.
    visited: Vec<u16>,
    epoch: u16,
    pub(super) cands: BinaryHeap<std::cmp::Reverse<Cand>>,
    pub(super) results: BinaryHeap<Cand>,
    pub(super) query: Q,
}

impl<Q> Scratch<Q> {
    /// Clears the heaps and starts a new visit epoch over `n` nodes.
    pub(super) fn reset(&mut self, n: usize) {
        if self.visited.len() != n || self.epoch == u16::MAX {
            self.visited.clear();
            self.visited.resize(n, 0);
            self.epoch = 0;
        }
        self.epoch += 1;
        self.cands.clear();
        self.results.clear();
    }
    /// Marks `v` visited; whether it was not yet.
    #[inline]
    pub(super) fn visit(&mut self, v: u32) -> bool {
        let slot = &mut self.visited[v as usize];
        if *slot == self.epoch {
            false
        } else {
            *slot = self.epoch;
            true
        }
    }
    /// The nodes of `list` not yet visited, in order, into `fresh` (at least as long
    /// as `list`), now marked visited; how many. Entries `NONE` or `≥ n` are skipped.
    /// Without a branch on whether each node was visited (about half of a layer-0
    /// list was, in no pattern the CPU could predict): every stamp is written.
    #[inline]
    pub(super) fn unvisited(
        &mut self,
        list: impl IntoIterator<Item = u32>,
        n: usize,
        fresh: &mut [u32],
    ) -> usize {
        let mut nf = 0;
        for u in list {
            if u == NONE || (u as usize) >= n {
                continue;
            }
            let slot = &mut self.visited[u as usize];
            fresh[nf] = u;
            nf += usize::from(*slot != self.epoch);
            *slot = self.epoch;
        }
        nf
    }
}

/// Calls `f` on each node of `nodes` in order, after `prefetch` on the node
/// [`AHEAD`] places later (and on the first `AHEAD` up front). Prefetching a whole
/// expansion at once (up to 64 vectors of 8 cache lines) filled the core's line-fill
/// buffers and stalled on them: with this (and [`Scratch::unvisited`]) 12–20 % more
/// queries per second at `ef` 16–256, same answers.
#[inline]
pub(super) fn prefetched(nodes: &[u32], prefetch: impl Fn(u32), mut f: impl FnMut(u32)) {
    nodes.iter().take(AHEAD).for_each(|&u| prefetch(u));
    for (i, &u) in nodes.iter().enumerate() {
        if let Some(&next) = nodes.get(i + AHEAD) {
            prefetch(next);
        }
        f(u);
    }
}

/// Nodes between a prefetch and the scoring of its node (2 measured 2–3 % slower
/// than 4, 8 the same).
const AHEAD: usize = 4;

/// How a [`beam`] reads the graph and scores its nodes.
pub(super) struct Layer<L, PL, P, D, A> {
    /// Nodes in the graph (stamps of the visited array; larger ids are skipped).
    pub(super) n: usize,
    /// A node's list on the layer (entries `NONE` skipped).
    pub(super) list: L,
    /// Starts loading a node's list.
    pub(super) prefetch_list: PL,
    /// Starts loading a node's stored data.
    pub(super) prefetch: P,
    /// The query's distance to a node.
    pub(super) dist: D,
    /// Whether a node may be a result (every node is expanded).
    pub(super) ok: A,
}

/// The beam search of one layer that searches and construction share (hnswlib's
/// `searchBaseLayer`): the waiting candidates in `s.cands` (visited, with their
/// distances; the caller seeds them and `s.results` after [`Scratch::reset`]) are
/// expanded nearest first, each unvisited neighbour scored with its data prefetched a
/// few nodes ahead, and `s.results` keeps the `ef` nearest accepted nodes. It stops at
/// the first candidate farther than the farthest result once `ef` results are held: a
/// search whose filter rejects nodes goes on while it has fewer. (When every node is
/// accepted, as in construction, a waiting candidate is never farther than the
/// farthest result before `ef` are held — nothing was dropped yet — so this is also
/// hnswlib's construction rule, which stops at the first such candidate.)
///
/// The list of the node expanded next is prefetched as soon as it is known (the lists
/// are stored apart from the vectors, so scoring a node does not bring its list into
/// cache): the best waiting candidate's, or a neighbour's just scored that beats it.
#[inline(always)]
pub(super) fn beam<Q, I, L, PL, P, D, A>(
    s: &mut Scratch<Q>,
    ef: usize,
    layer: &Layer<L, PL, P, D, A>,
) where
    I: IntoIterator<Item = u32>,
    L: Fn(u32) -> I,
    PL: Fn(u32),
    P: Fn(u32),
    D: Fn(&Q, u32) -> f32,
    A: Fn(u32) -> bool,
{
    while let Some(std::cmp::Reverse(Cand(d, v))) = s.cands.pop() {
        if s.results.len() >= ef && s.results.peek().is_some_and(|w| d > w.0) {
            break;
        }
        if let Some(std::cmp::Reverse(next)) = s.cands.peek() {
            (layer.prefetch_list)(next.1);
        }
        // Unvisited neighbours first, then scored with their data prefetched a few
        // nodes ahead.
        let mut fresh = [0u32; 2 * MAX_M];
        let nf = s.unvisited((layer.list)(v), layer.n, &mut fresh);
        prefetched(&fresh[..nf], &layer.prefetch, |u| {
            let du = (layer.dist)(&s.query, u);
            if s.results.len() >= ef && s.results.peek().is_some_and(|w| du >= w.0) {
                return;
            }
            if s.cands.peek().is_none_or(|c| du < c.0.0) {
                (layer.prefetch_list)(u);
            }
            s.cands.push(std::cmp::Reverse(Cand(du, u)));
            if (layer.ok)(u) {
                s.results.push(Cand(du, u));
                if s.results.len() > ef {
                    s.results.pop();
                }
            }
        });
    }
}

/// How one query is scored against stored nodes.
pub(super) struct Scorer<'a, C: VectorCodec> {
    codec: &'a C,
    metric: Metric,
    stored: Stored<'a>,
}

impl<C: VectorCodec> Scorer<'_, C> {
    /// Hints the CPU to load `node`'s stored data (its first [`PREFETCH_BYTES`]).
    #[inline]
    fn prefetch(&self, node: usize) {
        self.codec.prefetch(self.stored, node, PREFETCH_BYTES);
    }

    #[inline]
    pub(super) fn dist(&self, q: &C::Query, node: usize) -> f32 {
        self.codec.distance(q, self.metric, self.stored, node)
    }
}

impl<C: VectorCodec> Hnsw<C> {
    /// Upper-layer neighbours of `node` at `level` (≥ 1).
    pub(super) fn upper(&self, node: u32, level: u8) -> &[u32] {
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

    /// Prepares `q` in `s` and returns its scorer (`None` until trained).
    pub(super) fn scorer<'a>(
        &'a self,
        q: &[f32],
        s: &mut Scratch<C::Query>,
    ) -> Option<Scorer<'a, C>> {
        let codec = self.codec.as_ref()?;
        codec.begin_query(&mut s.query, q, self.metric, None, &[]);
        codec.set_list(&mut s.query, q, self.metric, ListTerms::default());
        Some(Scorer {
            codec,
            metric: self.metric,
            stored: self.stored(),
        })
    }

    /// Beam search for one prepared query: `depth` best accepted rows.
    pub(super) fn search_one(
        &self,
        q: &[f32],
        ef: usize,
        depth: usize,
        filter: &IdFilter<'_>,
        s: &mut Scratch<C::Query>,
    ) -> Vec<Neighbor> {
        let n = self.rows.len();
        let g = &self.graph;
        if n == 0 || g.levels.len() != n {
            return Vec::new();
        }
        let Some(sc) = self.scorer(q, s) else {
            return Vec::new();
        };
        let all = matches!(filter, IdFilter::All) && !self.rows.has_deleted();
        let ids = self.rows.ids();
        let ok = |r: usize| all || (self.rows.is_live(r) && filter.accepts(ids[r]));
        // Descent through the upper layers with a narrow beam (hnswlib is greedy, one
        // node wide): on clustered data a greedy descent can settle in a neighbouring
        // cluster that layer 0 then rarely leaves, whatever `ef` is.
        let width = upper_beam_width(ef.max(depth));
        let entry = (g.entry as usize).min(n - 1) as u32;
        let mut entries = vec![Cand(sc.dist(&s.query, entry as usize), entry)];
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
        let list = |v: u32| &g.layer0[v as usize * w0..(v as usize + 1) * w0];
        let layer = Layer {
            n,
            list: |v: u32| list(v).iter().copied(),
            prefetch_list: |v: u32| crate::kernels::prefetch_l1(list(v)),
            prefetch: |u: u32| sc.prefetch(u as usize),
            dist: |q: &C::Query, u: u32| sc.dist(q, u as usize),
            ok: |u: u32| ok(u as usize),
        };
        beam(s, ef, &layer);
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
    pub(super) fn upper_beam(
        &self,
        sc: &Scorer<'_, C>,
        s: &mut Scratch<C::Query>,
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
        let layer = Layer {
            n,
            list: |v: u32| self.upper(v, level).iter().copied(),
            prefetch_list: |_: u32| {},
            prefetch: |u: u32| sc.prefetch(u as usize),
            dist: |q: &C::Query, u: u32| sc.dist(q, u as usize),
            ok: |_: u32| true,
        };
        beam(s, width, &layer);
        let mut out: Vec<Cand> = s.results.drain().collect();
        out.sort();
        out
    }

    pub(super) fn search_prepared(
        &self,
        q: &[f32],
        params: &SearchParams,
        filter: &IdFilter<'_>,
        s: &mut Scratch<C::Query>,
    ) -> Result<Vec<Neighbor>> {
        if params.ef_search == 0 {
            return Err(Error::param("ef", "must be at least 1"));
        }
        let (rerank, depth) = crate::index::scan_depth(
            params,
            C::STORES_RAW,
            !self.raw.is_empty(),
            false,
            &self.name(),
        )?;
        let cands = self.search_one(q, params.ef_search, depth, filter, s);
        let exact = rerank.then(|| Exact {
            raw: &self.raw,
            dim: self.dim,
            metric: self.metric,
            query: q,
            adaptive: false,
        });
        Ok(self.rows.finish(cands, params.k, exact).0)
    }
}
