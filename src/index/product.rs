//! `Product`: flat scans over product-quantized codes (FAISS's `IndexPQ` and
//! `IndexPQFastScan`), optionally behind a learned OPQ rotation.
//!
//! | spec | codes | scan |
//! | --- | --- | --- |
//! | `PQ{M}` | `M` bytes (256 centroids per sub-space), blocks of 64 | `u8` tables in AVX-512 registers, `vpermi2b` ([`crate::kernels::pq8`]); every candidate within the rounding margin re-scored with the float tables, so results equal a float ADC scan |
//! | `PQ{M}x4fs` | `M/2` bytes (16 centroids), blocks of 32 | `u8` tables in registers, `pshufb` ([`crate::kernels::fastscan`]), best candidates re-scored with the float tables |
//! | `OPQ{M},PQ{M}` / `OPQ{M},PQ{M}x4fs` | as above, after an orthogonal rotation learned by OPQ (Ge et al. 2013) | as above |
//!
//! With `keep_raw`, `rerank = R` re-scores the best `R` candidates with the original
//! vectors.

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::index::rows::{Exact, Rows, rerank_unavailable};
use crate::index::{IdFilter, Index, SearchParams, check_add, check_search, check_single};
use crate::kernels::{fastscan, pq8};
use crate::metric::Metric;
use crate::quant::product::{PqTraining, ProductQuantizer, check_params};
use crate::store::{Container, ContainerWriter, Slab};
use crate::topk::{Neighbor, TopK};
use crate::vectors::{check_batch, check_finite, normalize_in_place};

/// 8-bit blocks scanned by a group of queries before moving on (1,024 vectors × M
/// bytes, so the chunk stays in L2 while each query's byte table stays in L1).
const CHUNK_BLOCKS: usize = 16;
/// Container section of 8-bit codes in blocks of 64.
const CODES8_SECTION: &str = "codes64";
/// Queries per group in batch search.
const QUERY_GROUP: usize = 8;

/// A parsed `PQ…` / `OPQ…,PQ…` spec.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PqSpec {
    /// Sub-quantizers.
    pub m: usize,
    /// 8, or 4 for fast-scan.
    pub nbits: u8,
    /// Learn an OPQ rotation first.
    pub opq: bool,
}

impl PqSpec {
    /// The canonical spec string.
    pub fn name(&self) -> String {
        let pq = if self.nbits == 4 {
            format!("PQ{}x4fs", self.m)
        } else {
            format!("PQ{}", self.m)
        };
        if self.opq {
            format!("OPQ{},{pq}", self.m)
        } else {
            pq
        }
    }
}

/// Parses `PQ{M}`, `PQ{M}x4fs`, `OPQ{M},PQ{M}[x4fs]` (case-insensitive).
pub fn parse_spec(spec: &str) -> Option<PqSpec> {
    let s = spec.trim().to_ascii_lowercase();
    let (opq, pq) = match s.split_once(',') {
        Some((o, p)) => {
            let om: usize = o.strip_prefix("opq")?.parse().ok()?;
            (Some(om), p.trim())
        }
        None => (None, s.as_str()),
    };
    let rest = pq.strip_prefix("pq")?;
    let (m, nbits) = match rest.strip_suffix("x4fs") {
        Some(m) => (m.parse().ok()?, 4),
        None => (rest.parse().ok()?, 8),
    };
    if opq.is_some_and(|om| om != m) {
        return None;
    }
    Some(PqSpec {
        m,
        nbits,
        opq: opq.is_some(),
    })
}

#[derive(Serialize, Deserialize)]
struct StoredParams {
    spec: PqSpec,
    keep_raw: bool,
}

/// Flat index over PQ codes.
#[derive(Clone, Debug)]
pub struct Product {
    spec: PqSpec,
    dim: usize,
    metric: Metric,
    keep_raw: bool,
    seed: u64,
    pq: Option<ProductQuantizer>,
    /// OPQ rotation, row-major `dim × dim`: the rotated vector is `x · R`.
    rotation: Option<Vec<f32>>,
    /// 8-bit blocks ([`pq8`]) or 4-bit fast-scan blocks ([`fastscan`]).
    codes: Slab<u8>,
    rows: Rows,
    raw: Slab<f32>,
}

impl Product {
    /// An untrained index for `spec`.
    pub fn new(spec: &str, dim: usize, metric: Metric, keep_raw: bool, seed: u64) -> Result<Self> {
        let p = parse_spec(spec).ok_or_else(|| Error::Spec {
            spec: spec.to_string(),
            message:
                "not a product-quantizer spec (PQ{M}, PQ{M}x4fs, OPQ{M},PQ{M}, OPQ{M},PQ{M}x4fs)"
                    .into(),
        })?;
        check_params(dim, p.m, p.nbits)?;
        if p.nbits == 4 && p.m > 256 {
            return Err(Error::param(
                "M",
                "fast-scan supports at most 256 sub-quantizers",
            ));
        }
        Ok(Product {
            spec: p,
            dim,
            metric,
            keep_raw,
            seed,
            pq: None,
            rotation: None,
            codes: Slab::default(),
            rows: Rows::default(),
            raw: Slab::default(),
        })
    }

    /// The trained quantizer.
    pub fn quantizer(&self) -> Option<&ProductQuantizer> {
        self.pq.as_ref()
    }

    /// The OPQ rotation (`dim × dim`, row-major), if any.
    pub fn rotation(&self) -> Option<&[f32]> {
        self.rotation.as_deref()
    }

    fn trained(&self) -> Result<&ProductQuantizer> {
        self.pq.as_ref().ok_or_else(|| {
            Error::param(
                "index",
                format!(
                    "{} must be trained before vectors are added or searched",
                    self.spec.name()
                ),
            )
        })
    }

    /// Normalises (cosine) and rotates (OPQ) row-major vectors.
    fn prepare(&self, x: &[f32]) -> Vec<f32> {
        let mut v = x.to_vec();
        if self.metric.normalizes() {
            v.chunks_exact_mut(self.dim).for_each(normalize_in_place);
        }
        match &self.rotation {
            Some(r) => rotate(&v, r, self.dim),
            None => v,
        }
    }

    /// Prepared vectors without the rotation (what raw re-ranking compares against).
    fn unrotated(&self, x: &[f32]) -> Vec<f32> {
        crate::vectors::prepared(x, self.dim, self.metric)
    }

    fn table_metric(&self) -> Metric {
        if self.metric == Metric::L2 {
            Metric::L2
        } else {
            Metric::InnerProduct
        }
    }

    /// Cosine distances are 1 − ⟨q, x⟩; the tables hold −⟨q_s, c⟩.
    fn offset(&self) -> f32 {
        if self.metric == Metric::Cosine {
            1.0
        } else {
            0.0
        }
    }

    /// Loads a `pq` container.
    pub fn from_container(c: &Container) -> Result<Self> {
        let h = c.header();
        let bad = |m: String| Error::format(c.path(), m);
        let dim = usize::try_from(h.dim)
            .ok()
            .filter(|&d| d > 0 && d <= 1 << 24)
            .ok_or_else(|| bad(format!("invalid dimension {} in header", h.dim)))?;
        let n = usize::try_from(h.count).map_err(|_| bad("vector count overflows".into()))?;
        let p: StoredParams = c.params()?;
        check_params(dim, p.spec.m, p.spec.nbits).map_err(|e| bad(e.to_string()))?;
        if p.spec.nbits == 4 && p.spec.m > 256 {
            return Err(bad("fast-scan with more than 256 sub-quantizers".into()));
        }
        let ncent = (1usize << p.spec.nbits) * dim;
        let centroids = c.section_f32("centroids", ncent)?;
        let pq = ProductQuantizer::from_parts(dim, p.spec.m, p.spec.nbits, centroids)
            .map_err(|e| bad(format!("quantizer: {e}")))?;
        let rotation = if p.spec.opq {
            let r = c.section_f32(
                "rotation",
                dim.checked_mul(dim)
                    .ok_or_else(|| bad("size overflows".into()))?,
            )?;
            if r.iter().any(|v| !v.is_finite()) {
                return Err(bad("non-finite rotation".into()));
            }
            Some(r)
        } else {
            None
        };
        let m = p.spec.m;
        let overflow = || bad("size overflows".into());
        let codes = if p.spec.nbits == 8 {
            let blocked = n
                .div_ceil(pq8::BLOCK)
                .checked_mul(pq8::block_bytes(m))
                .ok_or_else(overflow)?;
            if c.section(CODES8_SECTION).is_ok() {
                c.slab::<u8>(CODES8_SECTION, blocked)?
            } else {
                let rows = n.checked_mul(m).ok_or_else(overflow)?;
                Slab::from(pq8::pack_blocks(c.section_u8("codes", rows)?, m))
            }
        } else {
            let bytes = n
                .div_ceil(fastscan::BLOCK)
                .checked_mul(fastscan::block_bytes(m))
                .ok_or_else(overflow)?;
            c.slab::<u8>("codes", bytes)?
        };
        let rows = Rows::read(c, n)?;
        let raw = if p.keep_raw {
            c.slab::<f32>(
                "raw",
                n.checked_mul(dim)
                    .ok_or_else(|| bad("size overflows".into()))?,
            )?
        } else {
            Slab::default()
        };
        Ok(Product {
            spec: p.spec,
            dim,
            metric: h.metric,
            keep_raw: p.keep_raw,
            seed: 0,
            pq: Some(pq),
            rotation,
            codes,
            rows,
            raw,
        })
    }

    /// 8-bit scan of a group of prepared queries: chunk by chunk of blocks, each query
    /// continuing its own exact top-`depth` search.
    fn scan8(
        &self,
        pq: &ProductQuantizer,
        queries: &[f32],
        depth: usize,
        filter: &IdFilter<'_>,
    ) -> Vec<Vec<Neighbor>> {
        let m = pq.m();
        let tm = self.table_metric();
        let off = self.offset();
        let mut scans: Vec<Scan8> = queries
            .chunks_exact(self.dim)
            .map(|q| {
                let mut t = Vec::new();
                pq.adc_table(q, tm, &mut t);
                Scan8::new(t, m, off)
            })
            .collect();
        let mut heaps: Vec<TopK> = scans.iter().map(|_| TopK::new(depth)).collect();
        let n = self.rows.len();
        let all = matches!(filter, IdFilter::All) && !self.rows.has_deleted();
        let ids = self.rows.ids();
        let ok = |r: usize| all || (self.rows.is_live(r) && filter.accepts(ids[r]));
        let nblocks = n.div_ceil(pq8::BLOCK);
        let mut scratch = Scan8Scratch::default();
        for b0 in (0..nblocks).step_by(CHUNK_BLOCKS) {
            let b1 = (b0 + CHUNK_BLOCKS).min(nblocks);
            for (sc, heap) in scans.iter_mut().zip(heaps.iter_mut()) {
                sc.scan(&self.codes, n, b0..b1, 0, heap, &ok, &mut scratch);
            }
        }
        heaps.into_iter().map(TopK::into_sorted).collect()
    }

    /// Fast-scan of up to [`fastscan::NQ`] prepared queries at once: per query, `depth`
    /// candidates by quantised-table sums, re-scored with the float tables.
    fn scan4_group(
        &self,
        pq: &ProductQuantizer,
        qs: &[f32],
        depth: usize,
        filter: &IdFilter<'_>,
    ) -> Vec<Vec<Neighbor>> {
        const NQ: usize = fastscan::NQ;
        let m = pq.m();
        let nq = qs.len() / self.dim;
        // Missing queries of a short group repeat the last one (their results are dropped).
        let mut tables: Vec<Vec<f32>> = vec![Vec::new(); NQ];
        let mut luts: Vec<Vec<u8>> = vec![Vec::new(); NQ];
        let mut q8 = Vec::new();
        for j in 0..NQ {
            let q = &qs[j.min(nq - 1) * self.dim..][..self.dim];
            pq.adc_table(q, self.table_metric(), &mut tables[j]);
            fastscan::quantize_table(&tables[j], &mut q8);
            fastscan::pack_lut(&q8, m, &mut luts[j]);
        }
        let refs: [&[u8]; NQ] = std::array::from_fn(|j| luts[j].as_slice());
        let pairs = fastscan::padded_pairs(m);
        let bb = fastscan::block_bytes(m);
        let n = self.rows.len();
        let all = matches!(filter, IdFilter::All) && !self.rows.has_deleted();
        let ids = self.rows.ids();
        // Approximate candidates: keep more than `depth`, since quantised sums reorder
        // near-ties; each is re-scored exactly below.
        let keep = (depth * 2).max(depth + 16);
        let mut heaps: Vec<Reservoir> = (0..nq).map(|_| Reservoir::new(keep)).collect();
        // Blocks go to the kernel in batches; the thresholds are refreshed between
        // batches (a stale threshold only lets a few more candidates through).
        const BATCH: usize = 64;
        let mut sums = vec![0u16; NQ * BATCH * fastscan::BLOCK];
        let mut masks = [0u32; NQ * BATCH];
        let mut thr = [u16::MAX; NQ];
        let nblocks = self.codes.len() / bb;
        let mut b0 = 0;
        // The first batches are small so that the thresholds tighten before many
        // candidates reach the heaps; then batches double up to BATCH.
        let mut batch = 1;
        while b0 < nblocks {
            let nb = batch.min(nblocks - b0);
            batch = (batch * 2).min(BATCH);
            fastscan::scan_blocks_multi(
                &refs,
                &self.codes[b0 * bb..(b0 + nb) * bb],
                pairs,
                &thr,
                &mut sums[..NQ * nb * fastscan::BLOCK],
                &mut masks[..NQ * nb],
            );
            for (j, heap) in heaps.iter_mut().enumerate() {
                // Most blocks have no candidate: this query's masks are tested sixteen
                // at a time (a bit per block with candidates) and only those blocks are
                // visited, with the sums and threshold in registers.
                let jm = &masks[j * nb..(j + 1) * nb];
                let js = &sums[j * nb * fastscan::BLOCK..(j + 1) * nb * fastscan::BLOCK];
                let mut t = thr[j];
                for (c, chunk) in jm.chunks(16).enumerate() {
                    let mut nonzero = chunk
                        .iter()
                        .enumerate()
                        .fold(0u32, |acc, (i, &b)| acc | (((b != 0) as u32) << i));
                    while nonzero != 0 {
                        let blk = c * 16 + nonzero.trailing_zeros() as usize;
                        nonzero &= nonzero - 1;
                        let mut mask = jm[blk];
                        while mask != 0 {
                            let i = mask.trailing_zeros() as usize;
                            mask &= mask - 1;
                            let r = (b0 + blk) * fastscan::BLOCK + i;
                            let s = js[blk * fastscan::BLOCK + i];
                            if s > t
                                || r >= n
                                || !(all || (self.rows.is_live(r) && filter.accepts(ids[r])))
                            {
                                continue;
                            }
                            t = heap.push(s, r as u32);
                        }
                    }
                }
                thr[j] = t;
            }
            b0 += nb;
        }
        // Exact ADC re-scoring of the candidates.
        let off = self.offset();
        heaps
            .into_iter()
            .zip(&tables)
            .map(|(heap, table)| {
                let mut exact = TopK::new(depth);
                for r in heap.into_best() {
                    let d = fastscan::adc_at(table, &self.codes, m, r as usize);
                    exact.push(r as u64, d + off);
                }
                exact.into_sorted()
            })
            .collect()
    }

    fn search_group(
        &self,
        queries: &[f32],
        params: &SearchParams,
        filter: &IdFilter<'_>,
    ) -> Result<Vec<Vec<Neighbor>>> {
        let pq = self.trained()?;
        let rerank = params.rerank > 0;
        if rerank && self.raw.is_empty() {
            return Err(rerank_unavailable(&self.spec.name()));
        }
        let depth = if rerank {
            params.rerank.max(params.k)
        } else {
            params.k
        };
        let prepared = self.prepare(queries);
        let cands: Vec<Vec<Neighbor>> = if self.spec.nbits == 8 {
            self.scan8(pq, &prepared, depth, filter)
        } else {
            prepared
                .chunks(self.dim * fastscan::NQ)
                .flat_map(|g| self.scan4_group(pq, g, depth, filter))
                .collect()
        };
        let plain = if rerank {
            self.unrotated(queries)
        } else {
            Vec::new()
        };
        Ok(cands
            .into_iter()
            .enumerate()
            .map(|(qi, c)| {
                let exact = rerank.then(|| Exact {
                    raw: &self.raw,
                    dim: self.dim,
                    metric: self.metric,
                    query: &plain[qi * self.dim..(qi + 1) * self.dim],
                });
                self.rows.finish(c, params.k, exact)
            })
            .collect())
    }

    /// 4-bit indices of every stored row (`n × M`), from either layout.
    fn indices(&self) -> Vec<u8> {
        let m = self.spec.m;
        let n = self.rows.len();
        if self.spec.nbits == 8 {
            return pq8::unpack_blocks(&self.codes, m, n);
        }
        let bb = fastscan::block_bytes(m);
        let mut out = Vec::with_capacity(n * m);
        for r in 0..n {
            let block = &self.codes[(r / fastscan::BLOCK) * bb..];
            out.extend(
                (0..m).map(|s| fastscan::code_in_block(block, s, r % fastscan::BLOCK) as u8),
            );
        }
        out
    }
}

/// `x · R` for row-major `x` (`n × d`) and `R` (`d × d`), by GEMM.
fn rotate(x: &[f32], r: &[f32], d: usize) -> Vec<f32> {
    // gemm_abt computes x · Bᵀ, so pass Rᵀ.
    let rt = transpose(r, d);
    let mut out = vec![0.0f32; x.len()];
    out.par_chunks_mut(1024 * d)
        .zip(x.par_chunks(1024 * d))
        .for_each(|(o, xi)| crate::linalg::gemm_abt(xi, &rt, d, o));
    out
}

fn transpose(r: &[f32], d: usize) -> Vec<f32> {
    let mut t = vec![0.0f32; d * d];
    for i in 0..d {
        for j in 0..d {
            t[j * d + i] = r[i * d + j];
        }
    }
    t
}

/// The `keep` smallest quantised sums seen (ties at the boundary may add a few more):
/// candidates are appended, and when the buffer is full it is cut back to the best
/// `keep` by a selection — cheaper per candidate than a heap (FAISS's reservoir).
struct Reservoir {
    keep: usize,
    cands: Vec<(u16, u32)>,
    thr: u16,
}

impl Reservoir {
    fn new(keep: usize) -> Self {
        Reservoir {
            keep: keep.max(1),
            cands: Vec::with_capacity(4 * keep.max(16)),
            thr: u16::MAX,
        }
    }

    /// Offers row `r` with sum `s`; returns the threshold a sum must not exceed now.
    #[inline]
    fn push(&mut self, s: u16, r: u32) -> u16 {
        if s <= self.thr {
            self.cands.push((s, r));
            if self.cands.len() == self.cands.capacity() {
                self.shrink();
            }
        }
        self.thr
    }

    fn shrink(&mut self) {
        if self.cands.len() > self.keep {
            self.cands.select_nth_unstable(self.keep - 1);
            self.cands.truncate(self.keep);
            self.thr = self.cands.iter().map(|c| c.0).max().unwrap_or(u16::MAX);
        }
    }

    /// The rows of the best `keep` sums (ties by row), in no particular order.
    fn into_best(mut self) -> impl Iterator<Item = u32> {
        self.shrink();
        self.cands.into_iter().map(|c| c.1)
    }
}

/// Reusable buffers of [`Scan8::scan`].
#[derive(Default)]
pub(crate) struct Scan8Scratch {
    sums: Vec<u16>,
    masks: Vec<u64>,
    /// Candidates of [`scan_exact`]: (quantised sum, local row).
    cands: Vec<(u16, u32)>,
    /// The smallest candidate sums of [`scan_exact`], ascending.
    best: Vec<u16>,
}

/// One query's exact 8-bit ADC scan over blocked codes ([`pq8`]): its float table, the
/// same table quantised to bytes, and the constant added to every distance.
#[derive(Default)]
pub(crate) struct Scan8 {
    /// The float ADC table (`m × 256`); call [`Scan8::prepare`] after changing it.
    pub(crate) table: Vec<f32>,
    lut: Vec<u8>,
    bias: f32,
    scale: f32,
    m: usize,
    konst: f32,
}

impl Scan8 {
    /// A scanner for a float ADC table (`m × 256`).
    pub(crate) fn new(table: Vec<f32>, m: usize, konst: f32) -> Self {
        let mut s = Scan8 {
            table,
            ..Scan8::default()
        };
        s.prepare(m, konst);
        s
    }

    /// Quantises the current float table to bytes; `konst` is added to every distance.
    pub(crate) fn prepare(&mut self, m: usize, konst: f32) {
        (self.bias, self.scale) = pq8::quantize_table(&self.table, &mut self.lut);
        self.m = m;
        self.konst = konst;
    }

    /// Pushes into `heap` every vector among the first `len` of `blocks` that lies in
    /// blocks `range` and beats its threshold, as `first + row` with the float ADC
    /// distance plus the constant. Vectors `ok` rejects are skipped. Exact: a vector is
    /// skipped only when even its quantised sum's lower bound cannot enter the heap.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn scan(
        &self,
        blocks: &[u8],
        len: usize,
        range: std::ops::Range<usize>,
        first: usize,
        heap: &mut TopK,
        ok: &dyn Fn(usize) -> bool,
        s: &mut Scan8Scratch,
    ) {
        let m = self.m;
        if m > pq8::MAX_M {
            for r in (range.start * pq8::BLOCK..range.end * pq8::BLOCK).take_while(|&r| r < len) {
                let d = self.konst + pq8::adc_at(&self.table, blocks, m, r);
                if d <= heap.threshold() && ok(first + r) {
                    heap.push((first + r) as u64, d);
                }
            }
            return;
        }
        let bb = pq8::block_bytes(m);
        let bound = Bound::rounded(self.konst + self.bias, self.scale, m);
        let mut kernel = |b0: usize, nb: usize, thr: u16, sums: &mut [u16], masks: &mut [u64]| {
            pq8::scan_blocks(
                &self.lut,
                &blocks[b0 * bb..(b0 + nb) * bb],
                m,
                thr,
                sums,
                masks,
            )
        };
        let exact = |local: usize| self.konst + pq8::adc_at(&self.table, blocks, m, local);
        let layout = (pq8::BLOCK, pq8::lane_row as fn(usize) -> usize);
        let rows = (len, first);
        scan_exact(range, layout, rows, bound, heap, ok, s, &mut kernel, &exact);
    }
}

/// How quantised sums relate to distances: `distance ≥ base + (sum − margin) / scale`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Bound {
    pub(crate) base: f32,
    pub(crate) scale: f32,
    pub(crate) margin: f32,
}

impl Bound {
    /// The bound of an `m`-row table quantised by rounding to nearest
    /// ([`fastscan::quantize_table`], [`pq8::quantize_table`]): each entry is off by at
    /// most half a unit, plus one unit for float error.
    pub(crate) fn rounded(base: f32, scale: f32, m: usize) -> Self {
        Bound {
            base,
            scale,
            margin: m as f32 * 0.5 + 1.0,
        }
    }
}

/// A block kernel: sums and threshold masks of `nb` blocks from block `b0`.
pub(crate) type BlockKernel<'a> = dyn FnMut(usize, usize, u16, &mut [u16], &mut [u64]) + 'a;

/// The exact candidate loop shared by the 8-bit and 4-bit block scans, in two passes
/// over `range`:
///
/// 1. The kernel sums batches of blocks with byte tables; every accepted (`ok`) vector
///    whose sum's lower bound could still enter `heap` is kept as a candidate. Once `k`
///    (the heap's size) candidates are kept, the `k`-th smallest sum `S` also bounds the
///    pass: those `k` vectors are all within `S + margin` of the distance scale, so a
///    sum above `S + 2·margin` cannot reach the top-`k` — the candidates stay few.
/// 2. The candidates are re-scored with the float table (`exact`, by local row) in
///    ascending order of sum and offered to the heap as `first + row`, until a sum's
///    lower bound exceeds the heap's (tightening) threshold.
///
/// Ascending re-scoring fills the heap with near-final entries first, so the heap and
/// the float look-ups see about `k` candidates per range instead of every running
/// record. `layout` is (vectors per block, lane → row within a block); `rows` is (valid
/// local rows, id of local row 0).
#[allow(clippy::too_many_arguments)]
pub(crate) fn scan_exact(
    range: std::ops::Range<usize>,
    layout: (usize, fn(usize) -> usize),
    rows: (usize, usize),
    bound: Bound,
    heap: &mut TopK,
    ok: &dyn Fn(usize) -> bool,
    s: &mut Scan8Scratch,
    kernel: &mut BlockKernel<'_>,
    exact: &dyn Fn(usize) -> f32,
) {
    let ((block, lane_row), (len, first)) = (layout, rows);
    let to_u16 = |t: f32| quantized_threshold(t, bound.base, bound.scale, bound.margin);
    let Some(heap_thr) = to_u16(heap.threshold()) else {
        return;
    };
    let k = heap.k().max(1);
    // Sums above `kth + spread` cannot make the top-k (see above).
    let spread = (2.0 * bound.margin).ceil().min(u16::MAX as f32) as u16;
    const BATCH: usize = 16;
    s.sums.resize(BATCH * block, 0);
    s.masks.resize(BATCH, 0);
    s.cands.clear();
    // The `k` smallest kept sums, ascending.
    s.best.clear();
    let mut thr = heap_thr;
    let mut b0 = range.start;
    // Small first batches while few candidates are kept, so the bound tightens early.
    let mut batch = if heap_thr < u16::MAX { BATCH } else { 1 };
    while b0 < range.end {
        let nb = batch.min(range.end - b0);
        batch = (batch * 2).min(BATCH);
        kernel(b0, nb, thr, &mut s.sums[..nb * block], &mut s.masks[..nb]);
        for j in 0..nb {
            let mut mask = s.masks[j];
            while mask != 0 {
                let lane = mask.trailing_zeros() as usize;
                mask &= mask - 1;
                let local = (b0 + j) * block + lane_row(lane);
                let sum = s.sums[j * block + lane];
                if local >= len || sum > thr || !ok(first + local) {
                    continue;
                }
                s.cands.push((sum, local as u32));
                // Until `k` are kept the bound comes from a selection after the batch.
                if s.best.len() == k && sum < s.best[k - 1] {
                    let mut at = k - 1;
                    while at > 0 && s.best[at - 1] > sum {
                        s.best[at] = s.best[at - 1];
                        at -= 1;
                    }
                    s.best[at] = sum;
                    thr = thr.min(s.best[k - 1].saturating_add(spread));
                }
            }
        }
        if s.best.len() < k && s.cands.len() >= k {
            s.best.extend(s.cands.iter().map(|c| c.0));
            s.best.select_nth_unstable(k - 1);
            s.best.truncate(k);
            s.best.sort_unstable();
            thr = thr.min(s.best[k - 1].saturating_add(spread));
        }
        b0 += nb;
    }
    s.cands.retain(|c| c.0 <= thr);
    s.cands.sort_unstable();
    let mut thr = heap_thr;
    for &(sum, local) in &s.cands {
        if sum > thr {
            break;
        }
        let d = exact(local as usize);
        if d <= heap.threshold() {
            heap.push((first + local as usize) as u64, d);
            match to_u16(heap.threshold()) {
                Some(t) => thr = t,
                None => return,
            }
        }
    }
}

/// The largest quantised sum (table bytes, `scale` units per distance unit, `base`
/// = the distance of an all-zero byte sum) whose lower bound can still be within
/// distance `t` given a rounding `margin` in byte units; `None` when nothing can.
pub(crate) fn quantized_threshold(t: f32, base: f32, scale: f32, margin: f32) -> Option<u16> {
    if !t.is_finite() {
        return Some(u16::MAX);
    }
    let v = (t - base) * scale + margin;
    if v < 0.0 {
        None
    } else {
        // NaN (from a degenerate table) lets everything through to exact re-scoring.
        Some(if v.is_nan() {
            u16::MAX
        } else {
            v.min(u16::MAX as f32) as u16
        })
    }
}

/// OPQ (Ge et al. 2013, non-parametric): alternate PQ training on the rotated data and
/// the orthogonal Procrustes solution `R = U Vᵀ` of `Xᵀ Y = U Σ Vᵀ`, where `Y` is the
/// PQ reconstruction of `X R`. Returns the rotation (`d × d`).
pub fn train_opq(
    x: &[f32],
    d: usize,
    m: usize,
    nbits: u8,
    seed: u64,
    iters: usize,
) -> Result<Vec<f32>> {
    use faer::Mat;
    let n = x.len() / d;
    // A sample keeps the SVDs and PQ re-trainings cheap (FAISS: 256 · ksub points).
    let cap = 256 * (1usize << nbits);
    let sample: Vec<f32> = if n > cap {
        let idx = crate::rng::sample_indices(n, cap, &mut crate::rng::seeded(seed ^ 0x0b0e));
        idx.iter()
            .flat_map(|&i| x[i * d..(i + 1) * d].iter().copied())
            .collect()
    } else {
        x.to_vec()
    };
    let ns = sample.len() / d;
    let xm = Mat::<f32>::from_fn(ns, d, |i, j| sample[i * d + j]);
    let mut r: Vec<f32> = (0..d * d)
        .map(|i| if i / d == i % d { 1.0 } else { 0.0 })
        .collect();
    for it in 0..iters {
        let xr = rotate(&sample, &r, d);
        let pq = ProductQuantizer::train_with(
            &xr,
            d,
            m,
            nbits,
            seed.wrapping_add(it as u64),
            PqTraining {
                iterations: 4,
                runs: 1,
            },
        )?;
        let y = pq.decode(&pq.encode(&xr)?)?;
        let ym = Mat::<f32>::from_fn(ns, d, |i, j| y[i * d + j]);
        let xty = xm.transpose() * &ym;
        let svd = xty.svd().map_err(|e| Error::Numerical {
            context: "OPQ rotation".into(),
            message: format!("SVD of Xᵀ·Y failed: {e:?}"),
        })?;
        let rot = svd.U() * svd.V().transpose();
        for i in 0..d {
            for j in 0..d {
                r[i * d + j] = rot[(i, j)];
            }
        }
    }
    Ok(r)
}

impl Index for Product {
    fn spec(&self) -> String {
        self.spec.name()
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
    fn bytes_per_vector(&self) -> f64 {
        if self.spec.nbits == 8 {
            self.spec.m as f64
        } else {
            fastscan::block_bytes(self.spec.m) as f64 / fastscan::BLOCK as f64
        }
    }
    fn memory_bytes(&self) -> usize {
        let params = self.pq.as_ref().map_or(0, |p| p.centroids().len() * 4)
            + self.rotation.as_ref().map_or(0, |r| r.len() * 4);
        self.codes.len() + self.rows.memory_bytes() + self.raw.len() * 4 + params
    }
    fn is_trained(&self) -> bool {
        self.pq.is_some()
    }

    fn train(&mut self, sample: &[f32]) -> Result<()> {
        check_batch(sample, self.dim, "training sample")?;
        check_finite(sample, self.dim, "training sample")?;
        let base = self.unrotated(sample);
        if self.spec.opq {
            self.rotation = Some(train_opq(
                &base,
                self.dim,
                self.spec.m,
                self.spec.nbits,
                self.seed,
                20,
            )?);
        }
        let x = match &self.rotation {
            Some(r) => rotate(&base, r, self.dim),
            None => base,
        };
        self.pq = Some(ProductQuantizer::train(
            &x,
            self.dim,
            self.spec.m,
            self.spec.nbits,
            self.seed,
        )?);
        Ok(())
    }

    fn add(&mut self, vectors: &[f32], ids: Option<&[u64]>) -> Result<()> {
        let n = check_add(self.dim, vectors, ids)?;
        let pq = self.trained()?;
        let x = self.prepare(vectors);
        let idx = pq.encode_indices(&x)?;
        if self.spec.nbits == 8 {
            let old = self.rows.len();
            pq8::append_blocks(self.codes.to_mut(), old, &idx, self.spec.m);
        } else {
            // Re-pack the partial last block together with the new codes.
            let m = self.spec.m;
            let old = self.rows.len();
            let bb = fastscan::block_bytes(m);
            let keep_blocks = old / fastscan::BLOCK;
            let mut tail: Vec<u8> = Vec::new();
            if !old.is_multiple_of(fastscan::BLOCK) {
                let all = self.indices();
                tail.extend_from_slice(&all[keep_blocks * fastscan::BLOCK * m..]);
            }
            tail.extend_from_slice(&idx);
            let codes = self.codes.to_mut();
            codes.truncate(keep_blocks * bb);
            codes.extend(fastscan::pack_blocks(&tail, m));
        }
        if self.keep_raw {
            let plain = self.unrotated(vectors);
            self.raw.to_mut().extend_from_slice(&plain);
        }
        self.rows.push(n, ids);
        Ok(())
    }

    fn delete(&mut self, ids: &[u64]) -> Result<usize> {
        Ok(self.rows.delete(ids))
    }

    fn deleted(&self) -> usize {
        self.rows.deleted()
    }

    fn compact(&mut self) -> Result<usize> {
        if !self.rows.has_deleted() {
            return Ok(0);
        }
        let m = self.spec.m;
        let idx = Slab::from(self.indices());
        let kept = self.rows.compact_slab(&idx, m);
        self.codes = Slab::from(if self.spec.nbits == 8 {
            pq8::pack_blocks(&kept, m)
        } else {
            fastscan::pack_blocks(&kept, m)
        });
        if self.keep_raw {
            self.raw = self.rows.compact_slab(&self.raw, self.dim);
        }
        Ok(self.rows.compact())
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
        Ok(self
            .search_group(query, params, filter)?
            .pop()
            .unwrap_or_default())
    }

    fn search_batch(&self, queries: &[f32], params: &SearchParams) -> Result<Vec<Vec<Neighbor>>> {
        check_search(self.dim, self.len(), params)?;
        check_batch(queries, self.dim, "queries")?;
        check_finite(queries, self.dim, "queries")?;
        self.trained()?;
        let groups: Vec<Vec<Vec<Neighbor>>> = queries
            .par_chunks(self.dim * QUERY_GROUP)
            .map(|g| self.search_group(g, params, &IdFilter::All))
            .collect::<Result<_>>()?;
        Ok(groups.into_iter().flatten().collect())
    }

    fn reconstruct(&self, vectors: &[f32]) -> Result<Option<Vec<f32>>> {
        let pq = self.trained()?;
        check_batch(vectors, self.dim, "vectors")?;
        let x = self.prepare(vectors);
        let y = pq.decode(&pq.encode(&x)?)?;
        Ok(Some(match &self.rotation {
            // R is orthogonal: undo it with Rᵀ.
            Some(r) => rotate(&y, &transpose(r, self.dim), self.dim),
            None => y,
        }))
    }

    fn to_container(&self) -> Result<ContainerWriter<'_>> {
        let pq = self.trained()?;
        let n = self.rows.len();
        let mut w = ContainerWriter::new("pq", &self.spec.name(), self.dim, self.metric, n);
        w.params(&StoredParams {
            spec: self.spec,
            keep_raw: self.keep_raw,
        })?;
        w.section_f32("centroids", pq.centroids());
        if let Some(r) = &self.rotation {
            w.section_f32("rotation", r);
        }
        // 8-bit codes in blocks are a new section; files with row-major "codes" (written
        // before blocks) are re-packed when opened.
        let name = if self.spec.nbits == 8 {
            CODES8_SECTION
        } else {
            "codes"
        };
        w.section(name, self.codes.to_vec());
        self.rows.write(&mut w);
        if self.keep_raw {
            w.section_f32("raw", &self.raw);
        }
        Ok(w)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::generate::gaussian;
    use crate::store::OpenOptions;

    fn build(spec: &str, metric: Metric, n: usize, dim: usize) -> Product {
        let data = gaussian(n, dim, 0.0, 1.0, 3).unwrap();
        let mut idx = Product::new(spec, dim, metric, true, 7).unwrap();
        idx.train(data.as_slice()).unwrap();
        idx.add(data.as_slice(), None).unwrap();
        idx
    }

    #[test]
    fn scan8_equals_float_adc_exactly_with_deletes_and_filters() {
        // The byte-table kernel only pre-selects; every answer must be the float ADC
        // top-k, in order, whatever the metric, deletes or filter — and with more
        // sub-quantizers than u16 sums allow (272 > 257), the float scan it falls back to.
        let n = 3000;
        for (k, m, dim, metric) in [
            (50, 8, 32, Metric::L2),
            (1, 8, 32, Metric::L2),
            (10, 8, 32, Metric::InnerProduct),
            (50, 8, 32, Metric::Cosine),
            (50, 272, 272, Metric::L2),
        ] {
            let mut idx = build(&format!("PQ{m}"), metric, n, dim);
            let deleted: Vec<u64> = (0..n as u64).step_by(7).collect();
            idx.delete(&deleted).unwrap();
            let pq = idx.quantizer().unwrap().clone();
            let codes = idx.indices();
            let q = gaussian(4, dim, 0.0, 1.0, 21).unwrap();
            let odd = |id: u64| id % 2 == 1;
            for filtered in [false, true] {
                let filter = if filtered {
                    IdFilter::Predicate(&odd)
                } else {
                    IdFilter::All
                };
                let p = SearchParams::with_k(k);
                for qv in q.as_slice().chunks_exact(dim) {
                    let got = idx.search_filtered(qv, &p, &filter).unwrap();
                    let mut table = Vec::new();
                    pq.adc_table(&idx.prepare(qv), idx.table_metric(), &mut table);
                    let mut want: Vec<(f32, u64)> = (0..n)
                        .filter(|&r| r % 7 != 0 && (!filtered || odd(r as u64)))
                        .map(|r| {
                            let d: f32 = (0..m)
                                .map(|s| table[s * 256 + codes[r * m + s] as usize])
                                .sum();
                            (d + idx.offset(), r as u64)
                        })
                        .collect();
                    want.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
                    assert_eq!(got.len(), k);
                    for (g, w) in got.iter().zip(&want) {
                        assert!((g.distance - w.0).abs() <= 1e-4 * (1.0 + w.0.abs()));
                        // Same id unless two distances tie to float precision.
                        assert!(g.id == w.1 || (g.distance - w.0).abs() <= 1e-6, "{metric}");
                    }
                }
            }
        }
    }

    #[test]
    fn reservoir_keeps_the_smallest_sums() {
        let mut r = Reservoir::new(5);
        let sums: Vec<u16> = (0..1000u32).map(|i| ((i * 7919) % 1000) as u16).collect();
        let mut thr = u16::MAX;
        for (i, &s) in sums.iter().enumerate() {
            if s <= thr {
                thr = r.push(s, i as u32);
            }
        }
        let mut best: Vec<u32> = r.into_best().collect();
        best.sort_unstable();
        let mut want: Vec<u32> = (0..1000u32).filter(|&i| sums[i as usize] < 5).collect();
        want.sort_unstable();
        assert_eq!(best, want);
    }

    /// `scan_exact` against adversarial byte sums: every sum is off from its scaled
    /// distance by up to the full rounding margin, in either direction, so a vector whose
    /// sum is up to twice the margin above the k-th smallest can still be in the top-k.
    /// The answer must be the exact top-k of the float distances, over several ranges
    /// sharing one heap, with a filter.
    #[test]
    fn exact_scan_survives_worst_case_rounding() {
        use crate::rng::{RngExt, seeded};
        let mut rng = seeded(11);
        let (block, n) = (32usize, 700usize);
        let bound = Bound::rounded(-10.0, 4.0, 16); // margin 9 units
        let dist: Vec<f32> = (0..n).map(|_| 1.0 + rng.random::<f32>() * 40.0).collect();
        let sums: Vec<u16> = dist
            .iter()
            .map(|&d| {
                let exact = (d - bound.base) * bound.scale;
                // At the extremes: either end of the allowed error, at random.
                let sign = if rng.random::<bool>() { 1.0 } else { -1.0 };
                let err = sign * (bound.margin - 1.0);
                (exact + err).round().max(0.0) as u16
            })
            .collect();
        let ok = |r: usize| r % 5 != 3;
        for k in [1, 5, 20, 200] {
            let mut heap = TopK::new(k);
            let mut scratch = Scan8Scratch::default();
            // Three ranges (a list each), all offered to the same heap.
            for (lo, hi) in [(0, 250), (250, 251), (251, n)] {
                let len = hi - lo;
                let mut kernel =
                    |b0: usize, nb: usize, thr: u16, out: &mut [u16], masks: &mut [u64]| {
                        for j in 0..nb {
                            masks[j] = 0;
                            for i in 0..block {
                                let local = (b0 + j) * block + i;
                                let v = if local < len {
                                    sums[lo + local]
                                } else {
                                    u16::MAX
                                };
                                out[j * block + i] = v;
                                if v <= thr {
                                    masks[j] |= 1 << i;
                                }
                            }
                        }
                    };
                let exact = |local: usize| dist[lo + local];
                scan_exact(
                    0..len.div_ceil(block),
                    (block, std::convert::identity as fn(usize) -> usize),
                    (len, lo),
                    bound,
                    &mut heap,
                    &ok,
                    &mut scratch,
                    &mut kernel,
                    &exact,
                );
            }
            let mut want: Vec<(f32, u64)> = (0..n)
                .filter(|&r| ok(r))
                .map(|r| (dist[r], r as u64))
                .collect();
            want.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
            let got: Vec<(f32, u64)> = heap
                .into_sorted()
                .iter()
                .map(|nb| (nb.distance, nb.id))
                .collect();
            assert_eq!(got, want[..k.min(want.len())], "k {k}");
        }
    }

    #[test]
    fn quantized_thresholds() {
        // Anything may pass while the threshold is infinite or NaN-producing.
        assert_eq!(
            quantized_threshold(f32::INFINITY, 0.0, 2.0, 3.0),
            Some(u16::MAX)
        );
        assert_eq!(quantized_threshold(1.0, f32::NAN, 2.0, 3.0), Some(u16::MAX));
        // (t − base)·scale + margin, truncated and capped.
        assert_eq!(quantized_threshold(10.0, 4.0, 2.0, 3.5), Some(15));
        assert_eq!(quantized_threshold(1e9, 0.0, 1.0, 0.0), Some(u16::MAX));
        // Below every reachable sum: nothing can enter.
        assert_eq!(quantized_threshold(0.0, 4.0, 2.0, 3.0), None);
    }

    #[test]
    fn files_with_row_major_8bit_codes_still_open() {
        // 8-bit codes were stored row-major (section "codes") before the blocked layout.
        let idx = build("PQ8", Metric::L2, 300, 16);
        let mut w = idx.to_container().unwrap();
        w.replace_section(CODES8_SECTION, "codes", idx.indices());
        let c =
            Container::from_bytes("old.vq", w.to_bytes().unwrap(), OpenOptions::default()).unwrap();
        let old = Product::from_container(&c).unwrap();
        assert_eq!(old.codes.to_vec(), idx.codes.to_vec());
        let q = gaussian(5, 16, 0.0, 1.0, 9).unwrap();
        let p = SearchParams::default();
        assert_eq!(
            old.search_batch(q.as_slice(), &p).unwrap(),
            idx.search_batch(q.as_slice(), &p).unwrap()
        );
    }

    #[test]
    fn parses_specs() {
        let p = parse_spec("PQ16").unwrap();
        assert_eq!((p.m, p.nbits, p.opq), (16, 8, false));
        let p = parse_spec("opq32,pq32x4fs").unwrap();
        assert_eq!((p.m, p.nbits, p.opq), (32, 4, true));
        assert_eq!(p.name(), "OPQ32,PQ32x4fs");
        for bad in ["PQ", "PQx4fs", "OPQ8,PQ16", "PQ16x5fs", "PQ-1", "OPQ8"] {
            assert!(parse_spec(bad).is_none(), "{bad}");
        }
        let e = Product::new("PQ5", 16, Metric::L2, false, 0)
            .unwrap_err()
            .to_string();
        assert!(e.contains("1, 2, 4, 8, 16"), "{e}");
    }

    /// Scan results equal brute force over the decoded vectors (8-bit and fast-scan).
    #[test]
    fn scan_equals_brute_force_over_decoded() {
        for spec in ["PQ8", "PQ8x4fs", "OPQ4,PQ4"] {
            for metric in [Metric::L2, Metric::InnerProduct, Metric::Cosine] {
                let idx = build(spec, metric, 1500, 16);
                let pq = idx.quantizer().unwrap();
                let q = gaussian(5, 16, 0.0, 1.0, 9).unwrap();
                let p = SearchParams::with_k(10);
                let got = idx.search_batch(q.as_slice(), &p).unwrap();
                let idxs = idx.indices();
                let codes = if pq.nbits() == 4 {
                    crate::quant::product::pack4(&idxs, pq.m())
                } else {
                    idxs
                };
                let dec = pq.decode(&codes).unwrap();
                let qs = idx.prepare(q.as_slice());
                for (qi, qv) in qs.chunks_exact(16).enumerate() {
                    let mut all: Vec<(u64, f32)> = dec
                        .chunks_exact(16)
                        .enumerate()
                        .map(|(i, x)| {
                            let d = match metric {
                                Metric::L2 => crate::kernels::scalar::l2_sq(qv, x),
                                Metric::InnerProduct => -crate::kernels::scalar::dot(qv, x),
                                Metric::Cosine => 1.0 - crate::kernels::scalar::dot(qv, x),
                            };
                            (i as u64, d)
                        })
                        .collect();
                    all.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
                    for (h, w) in got[qi].iter().zip(&all) {
                        assert!(
                            (h.distance - w.1).abs() < 1e-3 * (1.0 + w.1.abs()),
                            "{spec} {metric}"
                        );
                    }
                    let want: Vec<u64> = all.iter().take(10).map(|x| x.0).collect();
                    let ids: Vec<u64> = got[qi].iter().map(|h| h.id).collect();
                    let common = ids.iter().filter(|i| want.contains(i)).count();
                    assert!(common >= 9, "{spec} {metric}: {ids:?} vs {want:?}");
                }
            }
        }
    }

    #[test]
    fn adding_in_pieces_equals_adding_at_once_and_round_trips() {
        let data = gaussian(1000, 16, 0.0, 1.0, 4).unwrap();
        for spec in ["PQ4", "PQ8x4fs", "OPQ8,PQ8x4fs"] {
            let mut a = Product::new(spec, 16, Metric::L2, true, 1).unwrap();
            a.train(data.as_slice()).unwrap();
            let mut b = a.clone();
            a.add(data.as_slice(), None).unwrap();
            for chunk in data.as_slice().chunks(16 * 37) {
                b.add(chunk, None).unwrap();
            }
            assert_eq!(a.codes, b.codes, "{spec}");
            let q = gaussian(4, 16, 0.0, 1.0, 5).unwrap();
            let p = SearchParams {
                rerank: 20,
                ..SearchParams::with_k(5)
            };
            let want = a.search_batch(q.as_slice(), &p).unwrap();
            let bytes = a.to_container().unwrap().to_bytes().unwrap();
            let c = Container::from_bytes("m.vq", bytes, OpenOptions::default()).unwrap();
            let back = crate::index::from_container(&c).unwrap();
            assert_eq!(back.spec(), a.spec());
            assert_eq!(back.search_batch(q.as_slice(), &p).unwrap(), want);
        }
    }

    #[test]
    fn opq_rotation_is_orthogonal_and_lowers_distortion_on_correlated_data() {
        // Correlated data: a random linear mix of independent Gaussians with
        // decaying scales.
        let (n, d) = (4000, 16);
        let z = gaussian(n, d, 0.0, 1.0, 8).unwrap();
        let mix = gaussian(d, d, 0.0, 1.0, 9).unwrap();
        let x: Vec<f32> = z
            .rows()
            .flat_map(|r| {
                (0..d)
                    .map(|j| {
                        (0..d)
                            .map(|i| r[i] * mix.row(i)[j] / (1.0 + i as f32))
                            .sum::<f32>()
                    })
                    .collect::<Vec<_>>()
            })
            .collect();
        let mse = |spec: &str| {
            let mut idx = Product::new(spec, d, Metric::L2, false, 2).unwrap();
            idx.train(&x).unwrap();
            let y = idx.reconstruct(&x).unwrap().unwrap();
            crate::eval::mse(&x, &y)
        };
        let (plain, opq) = (mse("PQ4x4fs"), mse("OPQ4,PQ4x4fs"));
        assert!(opq < plain * 0.95, "OPQ {opq} vs PQ {plain}");
        let mut idx = Product::new("OPQ4,PQ4", d, Metric::L2, false, 2).unwrap();
        idx.train(&x).unwrap();
        let r = idx.rotation().unwrap();
        for i in 0..d {
            for j in 0..d {
                let dot: f32 = (0..d).map(|t| r[i * d + t] * r[j * d + t]).sum();
                let want = if i == j { 1.0 } else { 0.0 };
                assert!((dot - want).abs() < 1e-4);
            }
        }
    }

    #[test]
    fn bad_input() {
        assert!(Product::new("PQ3", 16, Metric::L2, false, 0).is_err());
        let mut idx = Product::new("PQ4", 16, Metric::L2, false, 0).unwrap();
        assert!(idx.add(&[0.0; 16], None).is_err(), "untrained");
        let few = gaussian(100, 16, 0.0, 1.0, 1).unwrap();
        assert!(idx.train(few.as_slice()).is_err(), "100 < 256 centroids");
        let idx = build("PQ4x4fs", Metric::L2, 300, 16);
        assert!(idx.search(&[0.0; 15], &SearchParams::default()).is_err());
        let mut no_raw = Product::new("PQ4", 16, Metric::L2, false, 0).unwrap();
        let data = gaussian(300, 16, 0.0, 1.0, 1).unwrap();
        no_raw.train(data.as_slice()).unwrap();
        no_raw.add(data.as_slice(), None).unwrap();
        let p = SearchParams {
            rerank: 10,
            ..SearchParams::default()
        };
        assert!(
            no_raw
                .search(data.row(0), &p)
                .unwrap_err()
                .to_string()
                .contains("--keep-raw")
        );
    }
}
