//! The native HNSW builder: hnswlib's insertion (Malkov & Yashunin, Algorithms 1–4) over
//! the prepared vectors, parallel across rayon's threads, seeded, and incremental.
//!
//! - **Levels** are drawn per row from the seed and the row number alone
//!   (`⌊−ln U · 1/ln M⌋`, capped at the top layer), so they do not depend on thread
//!   timing or on how the rows were split between `add` calls.
//! - **Insertion** is hnswlib's: a greedy descent through the layers above the new node's
//!   level, then per layer a beam of `ef_construction` from the nearest node found so
//!   far, the neighbour-selection heuristic keeping `M` links, and the reverse links
//!   (`M` on upper layers, `2M` on layer 0) re-selected with the same heuristic when a
//!   neighbour's list is full.
//! - **Concurrency**: adjacency slots are atomics read without locks (a reader may see a
//!   list half rewritten, every entry of which is a valid node, as hnswlib readers may);
//!   a list is written only under its node's mutex. The entry point changes under one
//!   mutex, held for the whole insertion of a node that raises the top level (as in
//!   hnswlib). Nothing spins.
//! - **Reproducible**: with one thread the rows go in in order and the graph is a
//!   function of the vectors, `M`, `ef_construction` and the seed (a test builds twice
//!   and compares). With more threads the insertion order, hence the graph, varies.
//! - **Incremental**: an existing graph is taken over as it is and the new rows are
//!   inserted into it, so `add` costs in proportion to what it adds.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering::Relaxed};

use rayon::prelude::*;

use crate::index::hnsw::build::build_distance;
use crate::index::hnsw::search::{self, Cand, Layer};
use crate::index::hnsw::{Graph, MAX_LAYERS, MAX_M, NONE};
use crate::kernels;
use crate::store::Slab;

/// Rows inserted between two progress reports (at least).
const PROGRESS_SLICE: usize = 1024;

/// A graph being built: every row's vector, its level and its lists.
pub(super) struct Builder<'a> {
    vectors: &'a [f32],
    d: usize,
    /// [`build_distance`]'s inner-product shift (`Some(0.0)` for inner product).
    ip_shift: Option<f32>,
    m: usize,
    ef: usize,
    /// Rows already in the graph (inserted by an earlier build).
    first_new: usize,
    levels: Vec<u8>,
    /// `n × 2M` layer-0 slots: a list is its entries up to the first [`NONE`].
    layer0: Vec<AtomicU32>,
    /// Index of each row among the upper nodes (level ≥ 1), [`NONE`] for level 0.
    upper_index: Vec<u32>,
    /// Rows with level ≥ 1, ascending.
    upper_nodes: Vec<u32>,
    /// Slot offset of each upper node's lists (`upper_nodes.len() + 1`): `M` slots for
    /// each of its layers 1..=level.
    upper_start: Vec<u64>,
    upper: Vec<AtomicU32>,
    locks: Vec<Mutex<()>>,
    /// `(entry point, top level)`; `None` until the first node is in.
    top: Mutex<Option<(u32, u8)>>,
}

/// One thread's scratch: the search's epoch-stamped visited array and heaps.
type Scratch = crate::index::hnsw::search::Scratch<()>;

/// The level of row `row`: `⌊−ln U / ln M⌋` for `U` uniform in (0, 1] drawn from the
/// seed and the row number (SplitMix64), capped at the top layer.
pub(super) fn draw_level(seed: u64, row: u64, m: usize) -> u8 {
    let mut z = seed ^ row.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    // (0, 1]: never ln 0.
    let u = ((z >> 11) + 1) as f64 / (1u64 << 53) as f64;
    let level = (-u.ln() / (m.max(2) as f64).ln()).floor();
    level.min((MAX_LAYERS - 1) as f64) as u8
}

impl<'a> Builder<'a> {
    /// A builder over `vectors` (`n × d`, every row's); `old`, if any, is the graph of
    /// the first rows (its node count), into which the rest will be inserted.
    pub(super) fn new(
        vectors: &'a [f32],
        d: usize,
        ip: bool,
        m: usize,
        ef: usize,
        seed: u64,
        old: Option<Graph>,
    ) -> Self {
        let n = vectors.len() / d;
        let w0 = 2 * m;
        let first_new = old.as_ref().map_or(0, |g| g.levels.len().min(n));
        let mut levels = Vec::with_capacity(n);
        let mut layer0: Vec<AtomicU32> = Vec::with_capacity(n * w0);
        let mut upper_nodes = Vec::new();
        let mut upper_start = vec![0u64];
        let mut upper: Vec<AtomicU32> = Vec::new();
        let mut top = None;
        if let Some(g) = &old {
            // Copy the lists compacted (entries up to the first empty slot are what a
            // reader sees), dropping ids outside the old graph.
            let valid = |v: u32| v != NONE && (v as usize) < first_new;
            for r in 0..first_new {
                let row = g.layer0.get(r * w0..(r + 1) * w0).unwrap_or(&[]);
                let kept = row.iter().copied().filter(|&v| valid(v));
                let before = layer0.len();
                layer0.extend(kept.map(AtomicU32::new));
                layer0.resize_with(before + w0, || AtomicU32::new(NONE));
            }
            levels.extend_from_slice(&g.levels[..first_new]);
            for (i, &node) in g.upper_nodes.iter().enumerate() {
                let (s, e) = (g.upper_start[i] as usize, g.upper_start[i + 1] as usize);
                let lv = levels.get(node as usize).copied().unwrap_or(0) as usize;
                if (node as usize) >= first_new || lv == 0 || e - s != lv * m {
                    continue;
                }
                upper_nodes.push(node);
                for list in g.upper_adj[s..e].chunks_exact(m) {
                    let before = upper.len();
                    upper.extend(
                        list.iter()
                            .copied()
                            .filter(|&v| valid(v))
                            .map(AtomicU32::new),
                    );
                    upper.resize_with(before + m, || AtomicU32::new(NONE));
                }
                upper_start.push(upper.len() as u64);
            }
            // Nodes whose upper lists were malformed count as level 0.
            let mut is_upper = vec![false; first_new];
            for &u in &upper_nodes {
                is_upper[u as usize] = true;
            }
            for (l, up) in levels.iter_mut().zip(&is_upper) {
                if !up {
                    *l = 0;
                }
            }
            if first_new > 0 {
                let entry = (g.entry as usize).min(first_new - 1);
                top = Some((entry as u32, levels[entry]));
            }
        }
        for r in first_new..n {
            let lv = draw_level(seed, r as u64, m);
            levels.push(lv);
            layer0.extend((0..w0).map(|_| AtomicU32::new(NONE)));
            if lv > 0 {
                upper_nodes.push(r as u32);
                upper.extend((0..lv as usize * m).map(|_| AtomicU32::new(NONE)));
                upper_start.push(upper.len() as u64);
            }
        }
        let mut upper_index = vec![NONE; n];
        for (i, &u) in upper_nodes.iter().enumerate() {
            upper_index[u as usize] = i as u32;
        }
        Builder {
            vectors,
            d,
            ip_shift: ip.then_some(0.0),
            m,
            ef: ef.max(1),
            first_new,
            levels,
            layer0,
            upper_index,
            upper_nodes,
            upper_start,
            upper,
            locks: (0..n).map(|_| Mutex::new(())).collect(),
            top: Mutex::new(top),
        }
    }

    fn n(&self) -> usize {
        self.levels.len()
    }

    #[inline]
    fn vector(&self, r: u32) -> &[f32] {
        &self.vectors[r as usize * self.d..(r as usize + 1) * self.d]
    }

    #[inline]
    fn dist(&self, q: &[f32], r: u32) -> f32 {
        build_distance(self.ip_shift, q, self.vector(r))
    }

    /// The slots of `node`'s list on `level` (none above the node's level).
    #[inline]
    fn slots(&self, node: u32, level: u8) -> &[AtomicU32] {
        if level == 0 {
            let w0 = 2 * self.m;
            &self.layer0[node as usize * w0..(node as usize + 1) * w0]
        } else {
            let i = self.upper_index[node as usize];
            if i == NONE || level > self.levels[node as usize] {
                return &[];
            }
            let s = self.upper_start[i as usize] as usize + (level as usize - 1) * self.m;
            &self.upper[s..s + self.m]
        }
    }

    /// Copies `node`'s list on `level` into `out`; returns its length.
    #[inline]
    fn read_list(&self, node: u32, level: u8, out: &mut [u32; 2 * MAX_M]) -> usize {
        let mut len = 0;
        for s in self.slots(node, level) {
            let v = s.load(Relaxed);
            if v == NONE {
                break;
            }
            out[len] = v;
            len += 1;
        }
        len
    }

    /// Writes `list` as `node`'s list on `level` (caller holds the node's lock).
    fn write_list(&self, node: u32, level: u8, list: &[u32]) {
        let slots = self.slots(node, level);
        for (i, s) in slots.iter().enumerate() {
            s.store(list.get(i).copied().unwrap_or(NONE), Relaxed);
        }
    }

    /// Inserts every new row, `progress(inserted, n)` after each slice, and returns the
    /// graph in the stored layout.
    pub(super) fn insert_all(self, progress: &(dyn Fn(usize, usize) + Sync)) -> Graph {
        let n = self.n();
        // Into an empty graph, the first row inserted becomes the entry point (`insert`).
        let mut next = self.first_new;
        let threads = rayon::current_num_threads();
        // One scratch per pool thread (its visited array is `n` long).
        let scratch: Vec<Mutex<Scratch>> = (0..threads)
            .map(|_| Mutex::new(Scratch::default()))
            .collect();
        let slice = (n / 64).max(PROGRESS_SLICE);
        while next < n {
            let end = (next + slice).min(n);
            if threads == 1 {
                // In order: the graph is reproducible.
                let mut s = scratch[0].lock().unwrap_or_else(|e| e.into_inner());
                for r in next..end {
                    self.insert(r as u32, &mut s);
                }
            } else {
                (next..end).into_par_iter().for_each(|r| {
                    let t = rayon::current_thread_index().unwrap_or(0) % threads;
                    let mut s = scratch[t].lock().unwrap_or_else(|e| e.into_inner());
                    self.insert(r as u32, &mut s);
                });
            }
            next = end;
            progress(next - self.first_new, n - self.first_new);
        }
        if n == self.first_new {
            progress(0, 0);
        }
        self.into_graph()
    }

    /// Inserts row `q` (hnswlib's `addPoint`).
    fn insert(&self, q: u32, s: &mut Scratch) {
        let level = self.levels[q as usize];
        let mut top = self.top.lock().unwrap_or_else(|e| e.into_inner());
        let Some((entry, max_level)) = *top else {
            *top = Some((q, level));
            return;
        };
        // A node that raises the top level holds the lock until it is the entry point.
        let held = if level > max_level {
            Some(top)
        } else {
            drop(top);
            None
        };
        let x = self.vector(q);
        let mut buf = [0u32; 2 * MAX_M];
        // Greedy descent through the layers above the node's own.
        let mut cur = Cand(self.dist(x, entry), entry);
        for lc in (level.saturating_add(1)..=max_level).rev() {
            loop {
                let mut moved = false;
                let len = self.read_list(cur.1, lc, &mut buf);
                for &v in &buf[..len] {
                    let dv = self.dist(x, v);
                    if dv < cur.0 {
                        cur = Cand(dv, v);
                        moved = true;
                    }
                }
                if !moved {
                    break;
                }
            }
        }
        // Every layer's neighbours are chosen first and written as the node's lists, and
        // only then is the node linked in (reverse links, top layer down). So another
        // thread can meet it only once all its lists are complete: a beam started from
        // a node that was still being inserted would find no links below the layer it
        // was met on, and a reverse link added to such a list would be overwritten. One
        // thread gives hnswlib's graph exactly (its own searches never meet the node).
        let top = level.min(max_level) as usize;
        let mut found = Vec::with_capacity(self.ef);
        let mut chosen: Vec<Vec<u32>> = vec![Vec::new(); top + 1];
        for lc in (0..=top).rev() {
            self.search_layer(x, cur, lc as u8, s, &mut found);
            chosen[lc] = self.select(&found, self.m);
            cur = found[0];
        }
        {
            let _own = self.locks[q as usize]
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            for (lc, list) in chosen.iter().enumerate() {
                self.write_list(q, lc as u8, list);
            }
        }
        for (lc, list) in chosen.iter().enumerate().rev() {
            for &e in list {
                self.link_back(e, q, lc as u8);
            }
        }
        if let Some(mut top) = held {
            *top = Some((q, level));
        }
    }

    /// The `ef` nearest nodes to `x` on `level` reachable from `from`, nearest first,
    /// into `out` (hnswlib's `searchBaseLayer`).
    fn search_layer(&self, x: &[f32], from: Cand, level: u8, s: &mut Scratch, out: &mut Vec<Cand>) {
        s.reset(self.n());
        s.visit(from.1);
        s.cands.push(std::cmp::Reverse(from));
        s.results.push(from);
        let layer = Layer {
            n: self.n(),
            // (Entries up to the first empty slot are the list; a list being rewritten
            // by another thread may show entries past one, every one a valid node.)
            list: |v: u32| self.slots(v, level).iter().map(|a| a.load(Relaxed)),
            prefetch_list: |v: u32| kernels::prefetch_l1(self.slots(v, level)),
            prefetch: |v: u32| kernels::prefetch_l1(self.vector(v)),
            dist: |_: &(), v: u32| self.dist(x, v),
            ok: |_: u32| true,
        };
        search::beam(s, self.ef, &layer);
        out.clear();
        out.extend(s.results.drain());
        out.sort_unstable();
    }

    /// hnswlib's neighbour-selection heuristic over `cands` (nearest first, distances
    /// to the node being linked): a candidate is kept when it is nearer to that node
    /// than to every candidate kept before it, up to `keep`.
    fn select(&self, cands: &[Cand], keep: usize) -> Vec<u32> {
        if cands.len() <= keep {
            return cands.iter().map(|c| c.1).collect();
        }
        let mut chosen: Vec<u32> = Vec::with_capacity(keep);
        for c in cands {
            if chosen.len() == keep {
                break;
            }
            let xc = self.vector(c.1);
            if chosen.iter().all(|&r| self.dist(xc, r) >= c.0) {
                chosen.push(c.1);
            }
        }
        chosen
    }

    /// Adds `q` to `e`'s list on `level`, re-selecting with the heuristic when full.
    fn link_back(&self, e: u32, q: u32, level: u8) {
        let cap = if level == 0 { 2 * self.m } else { self.m };
        let _lock = self.locks[e as usize]
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let slots = self.slots(e, level);
        let mut buf = [0u32; 2 * MAX_M];
        let len = self.read_list(e, level, &mut buf);
        if buf[..len].contains(&q) {
            return;
        }
        if len < cap {
            slots[len].store(q, Relaxed);
            return;
        }
        let xe = self.vector(e);
        let mut cands: Vec<Cand> = buf[..len]
            .iter()
            .chain(std::iter::once(&q))
            .map(|&v| Cand(self.dist(xe, v), v))
            .collect();
        cands.sort_unstable();
        let chosen = self.select(&cands, cap);
        self.write_list(e, level, &chosen);
    }

    /// The built graph in the stored layout (lists padded with [`NONE`]).
    fn into_graph(self) -> Graph {
        let (entry, max_level) = self
            .top
            .into_inner()
            .unwrap_or_else(|e| e.into_inner())
            .unwrap_or((0, 0));
        Graph {
            levels: Slab::from(self.levels),
            layer0: Slab::from(
                self.layer0
                    .into_iter()
                    .map(AtomicU32::into_inner)
                    .collect::<Vec<u32>>(),
            ),
            upper_nodes: self.upper_nodes,
            upper_start: self.upper_start,
            upper_adj: Slab::from(
                self.upper
                    .into_iter()
                    .map(AtomicU32::into_inner)
                    .collect::<Vec<u32>>(),
            ),
            entry,
            max_level,
        }
    }
}
