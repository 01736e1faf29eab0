//! Candidate loops shared by every scan over byte-table codes: the exact two-pass block
//! scan ([`scan_exact`]) behind 8-bit PQ ([`Scan8`]) and IVF fast-scan lists, the
//! bound that relates quantised sums to distances ([`Bound`]), and the reservoir that
//! keeps flat fast-scan candidates ([`Reservoir`]).

use crate::kernels::{pq8, sums};
use crate::topk::TopK;

/// The `keep` smallest quantised sums seen (ties at the boundary may add a few more):
/// candidates are appended, and when the buffer is full it is cut back to the best
/// `keep` by a selection — cheaper per candidate than a heap (FAISS's reservoir).
pub(crate) struct Reservoir {
    keep: usize,
    /// Candidates as [`cand_key`]s.
    cands: Vec<u64>,
    /// How many candidates are held before they are cut back to `keep`.
    limit: usize,
    thr: u16,
}

/// A candidate `(sum, row)` as one `u64` ordered as the pair (sum first, then row):
/// selections and sorts compare integers instead of tuples.
#[inline(always)]
fn cand_key(sum: u16, row: u32) -> u64 {
    u64::from(sum) << 32 | u64::from(row)
}

/// The sum of a [`cand_key`].
#[inline(always)]
fn key_sum(k: u64) -> u16 {
    (k >> 32) as u16
}

impl Reservoir {
    pub(crate) fn new(keep: usize) -> Self {
        let limit = 4 * keep.max(16);
        Reservoir {
            keep: keep.max(1),
            // (Grown as candidates come past this: a huge `k` reserves nothing up front.)
            cands: Vec::with_capacity(limit.min(1 << 16)),
            limit,
            thr: u16::MAX,
        }
    }

    /// Offers row `r` with sum `s`; returns the threshold a sum must not exceed now.
    #[inline]
    pub(crate) fn push(&mut self, s: u16, r: u32) -> u16 {
        if s <= self.thr {
            self.cands.push(cand_key(s, r));
            if self.cands.len() >= self.limit {
                self.shrink();
            }
        }
        self.thr
    }

    fn shrink(&mut self) {
        if self.cands.len() > self.keep {
            self.cands.select_nth_unstable(self.keep - 1);
            self.cands.truncate(self.keep);
            self.thr = self
                .cands
                .iter()
                .map(|&c| key_sum(c))
                .max()
                .unwrap_or(u16::MAX);
        }
    }

    /// The rows of the best `keep` sums (ties by row), in no particular order.
    pub(crate) fn into_best(mut self) -> impl Iterator<Item = u32> {
        self.shrink();
        self.cands.into_iter().map(|c| c as u32)
    }
}

/// Reusable buffers of [`Scan8::scan`].
#[derive(Default)]
pub(crate) struct Scan8Scratch {
    sums: Vec<u16>,
    masks: Vec<u64>,
    /// Candidates of [`scan_exact`]: (quantised sum, local row) as [`cand_key`]s.
    cands: Vec<u64>,
    /// Scratch sums: the group minima of [`ExactPass::seed`], the candidates' sums
    /// of [`ExactPass::absorb`].
    work: Vec<u16>,
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

/// Blocks per kernel call of the exact scans, once the bound has tightened.
pub(crate) const EXACT_BATCH: usize = 16;

/// One query's state in the first pass of [`scan_exact`]: the threshold its kernel
/// sums must not exceed and the candidates kept (in its [`Scan8Scratch`]). Scans of
/// several queries over the same blocks ([`ExactPass::absorb`] per query after a
/// multi-query kernel) share this logic with the single-query [`scan_exact`].
pub(crate) struct ExactPass {
    bound: Bound,
    /// The heap's threshold when the pass started, quantised.
    heap_thr: u16,
    /// The current threshold on sums.
    thr: u16,
    /// Sums above the `k`-th smallest kept sum plus `spread` cannot make the top-k.
    spread: u16,
    k: usize,
}

/// The `k`-th smallest of `values` (`1 ≤ k ≤ len`), reordering them: up to
/// [`sums::KTH_MAX`] by [`sums::kth_smallest`] (counting, no data-dependent branches),
/// more selected.
fn kth_of(values: &mut [u16], k: usize) -> u16 {
    if values.len() <= sums::KTH_MAX {
        sums::kth_smallest(values, k)
    } else {
        *values.select_nth_unstable(k - 1).1
    }
}

/// One kernel batch of an exact pass: the sums of every lane of `nb` blocks from block
/// `b0`, with how blocks map to rows.
#[derive(Clone, Copy)]
pub(crate) struct Batch<'a> {
    pub(crate) b0: usize,
    pub(crate) nb: usize,
    /// (vectors per block, lane → row within a block).
    pub(crate) layout: (usize, fn(usize) -> usize),
    /// (valid local rows, id of local row 0).
    pub(crate) rows: (usize, usize),
    /// `nb` blocks of sums, lane order.
    pub(crate) sums: &'a [u16],
}

impl Batch<'_> {
    /// The local row of lane `lane` of the batch's block `j`.
    #[inline]
    fn row(&self, j: usize, lane: usize) -> usize {
        let (block, lane_row) = self.layout;
        (self.b0 + j) * block + lane_row(lane)
    }

    /// The sums of the batch's block `j`.
    #[inline]
    fn block_sums(&self, j: usize) -> &[u16] {
        let block = self.layout.0;
        &self.sums[j * block..(j + 1) * block]
    }
}

impl ExactPass {
    /// Starts a pass for `heap` (clearing the candidates in `s`); `None` when no sum
    /// can enter the heap any more.
    pub(crate) fn start(bound: Bound, heap: &TopK, s: &mut Scan8Scratch) -> Option<Self> {
        let heap_thr =
            quantized_threshold(heap.threshold(), bound.base, bound.scale, bound.margin)?;
        s.cands.clear();
        Some(ExactPass {
            bound,
            heap_thr,
            thr: heap_thr,
            spread: (2.0 * bound.margin).ceil().min(u16::MAX as f32) as u16,
            k: heap.k().max(1),
        })
    }

    /// The threshold to give the kernel.
    #[inline]
    pub(crate) fn thr(&self) -> u16 {
        self.thr
    }

    /// Whether the heap had no finite threshold when the pass started and none was
    /// set since (the first batch is then summed without a threshold and
    /// [`ExactPass::seed`] sets one from its sums).
    #[inline]
    pub(crate) fn unbounded(&self) -> bool {
        self.thr == u16::MAX
    }

    /// A threshold for an unbounded pass from the sums of its first batch (all
    /// computed: the kernel ran without a threshold), so that the batch keeps about
    /// `k` candidates instead of every running record. The `k`-th smallest of the
    /// minima of `G ≥ k` disjoint groups of sums, `t`, is at least the `k`-th smallest
    /// sum `S` when `k` distinct accepted rows lie at or under it, so `t + spread ≥
    /// S + spread` is then a valid bound; with `G` about `3k` strided groups (one
    /// vectorised pass, [`sums::strided_minima`]) it is a few sums above `S`. Only full
    /// blocks are used (padding lanes hold no vector), so the `k` group minima under
    /// `t` are `k` distinct rows: the bound holds unless some of them are rejected,
    /// which [`ExactPass::absorb`] checks afterwards from the candidates it keeps
    /// (rather than asking the filter of every row here first). Returns `t`; `None`
    /// when the batch has too few full blocks or `t` is `u16::MAX` (no bound).
    fn seed(&self, batch: &Batch<'_>, s: &mut Scan8Scratch) -> Option<u16> {
        let (block, (len, _)) = (batch.layout.0, batch.rows);
        let k = self.k;
        let full = (len / block).saturating_sub(batch.b0).min(batch.nb);
        let n = full * block;
        let mut g = (3 * k).next_power_of_two().clamp(32, 512);
        while g > n && g / 2 >= k {
            g /= 2;
        }
        if g > n || g < k {
            return None;
        }
        let minima = &mut s.work;
        minima.resize(g, 0);
        sums::strided_minima(&batch.sums[..n], minima);
        let t = kth_of(minima, k);
        (t != u16::MAX).then_some(t)
    }

    /// Takes a batch's sums and the kernel's masks (computed against `kernel_thr`):
    /// every accepted (`ok`) vector whose sum is within the threshold becomes a
    /// candidate. An unbounded pass that has kept nothing yet first seeds its
    /// threshold from these sums ([`ExactPass::seed`]: the kernel must then have summed
    /// every lane, as it does); when fewer than `k` accepted rows turn out to lie under
    /// the seed, the batch is taken again unbounded (what it would have been without
    /// the seed).
    #[inline]
    pub(crate) fn absorb<M: Copy + Into<u64>>(
        &mut self,
        batch: &Batch<'_>,
        masks: &[M],
        kernel_thr: u16,
        ok: &dyn Fn(usize) -> bool,
        s: &mut Scan8Scratch,
    ) {
        // (Only while nothing is kept, so that a failed seed is undone by clearing.)
        let seed = if self.unbounded() && s.cands.is_empty() {
            self.seed(batch, s)
        } else {
            None
        };
        if let Some(t) = seed {
            self.thr = t.saturating_add(self.spread);
        }
        let kth = self.absorb_blocks(batch, masks, kernel_thr, ok, s);
        if let Some(t) = seed {
            // Every accepted row with a sum ≤ t < thr was kept, so the seed held if
            // and only if the k-th smallest kept sum is ≤ t.
            if kth.is_none_or(|kth| kth > t) {
                s.cands.clear();
                self.thr = u16::MAX;
                self.absorb_blocks(batch, masks, kernel_thr, ok, s);
            }
        }
    }

    /// The candidates of a batch under the current threshold (see
    /// [`ExactPass::absorb`]). Once `k` are kept, the threshold follows the `k`-th
    /// smallest kept sum (returned), and candidates above it are dropped, so the list
    /// stays short over many batches.
    fn absorb_blocks<M: Copy + Into<u64>>(
        &mut self,
        batch: &Batch<'_>,
        masks: &[M],
        kernel_thr: u16,
        ok: &dyn Fn(usize) -> bool,
        s: &mut Scan8Scratch,
    ) -> Option<u16> {
        let k = self.k;
        let before = s.cands.len();
        // The blocks with any lane under the kernel's threshold, as bits (a tight loop
        // over the masks): most blocks have none once the threshold is tight, and only
        // these are visited.
        let nb = batch.nb.min(masks.len());
        for (c, chunk) in masks[..nb].chunks(64).enumerate() {
            let mut blocks = chunk
                .iter()
                .enumerate()
                .fold(0u64, |a, (j, &m)| a | u64::from(m.into() != 0) << j);
            while blocks != 0 {
                let j = c * 64 + blocks.trailing_zeros() as usize;
                blocks &= blocks - 1;
                self.absorb_block(batch, j, masks[j].into(), kernel_thr, ok, s);
            }
        }
        if s.cands.len() < k || s.cands.len() == before {
            return None;
        }
        // (One selection per batch instead of keeping the k smallest sorted lane by
        // lane: fewer data-dependent branches; the threshold a batch's later lanes see
        // is its start's, and the few more candidates that keeps are dropped here.)
        s.work.clear();
        s.work.extend(s.cands.iter().map(|&c| key_sum(c)));
        let kth = kth_of(&mut s.work, k);
        self.thr = self.thr.min(kth.saturating_add(self.spread));
        let thr = self.thr;
        s.cands.retain(|&c| key_sum(c) <= thr);
        Some(kth)
    }

    /// [`ExactPass::absorb`] for the batch's block `j`, whose kernel mask `mask` is
    /// not zero.
    #[inline]
    fn absorb_block(
        &mut self,
        batch: &Batch<'_>,
        j: usize,
        mut mask: u64,
        kernel_thr: u16,
        ok: &dyn Fn(usize) -> bool,
        s: &mut Scan8Scratch,
    ) {
        let (block, (len, first)) = (batch.layout.0, batch.rows);
        if self.thr < kernel_thr {
            // The threshold tightened since the kernel ran: drop the lanes above it in
            // one vectorised pass rather than bit by bit.
            mask &= sums::le_mask(batch.block_sums(j), self.thr);
        }
        while mask != 0 {
            let lane = mask.trailing_zeros() as usize;
            mask &= mask - 1;
            let local = batch.row(j, lane);
            let sum = batch.sums[j * block + lane];
            if local >= len || sum > self.thr || !ok(first + local) {
                continue;
            }
            s.cands.push(cand_key(sum, local as u32));
        }
    }

    /// The second pass: the candidates are re-scored (`exact`, by local row) in
    /// ascending order of sum and offered to `heap` as `first + row`, until a sum's
    /// lower bound exceeds the heap's (tightening) threshold.
    pub(crate) fn finish(
        self,
        first: usize,
        heap: &mut TopK,
        s: &mut Scan8Scratch,
        exact: &dyn Fn(usize) -> f32,
    ) {
        let bound = self.bound;
        let to_u16 = |t: f32| quantized_threshold(t, bound.base, bound.scale, bound.margin);
        // (Every candidate is within the threshold: `absorb_block` pushes only those,
        // and `absorb_blocks` drops the rest whenever it tightens the threshold.)
        debug_assert!(s.cands.iter().all(|&c| key_sum(c) <= self.thr));
        // (Distinct keys: each row is a candidate once per pass.)
        sums::sort_distinct(&mut s.cands);
        let mut thr = self.heap_thr;
        for &c in &s.cands {
            let (sum, local) = (key_sum(c), c as u32);
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
}

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
    let Some(mut pass) = ExactPass::start(bound, heap, s) else {
        return;
    };
    let block = layout.0;
    s.sums.resize(EXACT_BATCH * block, 0);
    s.masks.resize(EXACT_BATCH, 0);
    let mut b0 = range.start;
    let (mut sums, mut masks) = (std::mem::take(&mut s.sums), std::mem::take(&mut s.masks));
    while b0 < range.end {
        let nb = EXACT_BATCH.min(range.end - b0);
        let thr = pass.thr();
        kernel(b0, nb, thr, &mut sums[..nb * block], &mut masks[..nb]);
        let batch = Batch {
            b0,
            nb,
            layout,
            rows,
            sums: &sums,
        };
        pass.absorb(&batch, &masks[..nb], thr, ok, s);
        b0 += nb;
    }
    (s.sums, s.masks) = (sums, masks);
    pass.finish(rows.1, heap, s, exact);
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

#[cfg(test)]
mod tests {
    use super::*;

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

    /// A reservoir for a huge `keep` reserves a bounded buffer, grows it as candidates
    /// come and cuts back to `keep` only past `4·keep` of them: with more candidates
    /// than the initial buffer it keeps exactly the smallest `keep` (ties by row).
    #[test]
    fn reservoir_with_a_huge_keep_grows_and_keeps_the_smallest() {
        let keep = 1 << 20;
        let mut r = Reservoir::new(keep);
        assert!(r.cands.capacity() <= 1 << 16);
        let n = 5 * keep as u32;
        let sums: Vec<u16> = (0..n)
            .map(|i| (i.wrapping_mul(7919) % 60_000) as u16)
            .collect();
        for (i, &s) in sums.iter().enumerate() {
            r.push(s, i as u32);
        }
        let mut best: Vec<u32> = r.into_best().collect();
        best.sort_unstable();
        let mut want: Vec<(u16, u32)> = sums.iter().zip(0..).map(|(&s, i)| (s, i)).collect();
        want.sort_unstable();
        let mut want: Vec<u32> = want[..keep].iter().map(|p| p.1).collect();
        want.sort_unstable();
        assert_eq!(best, want);
    }

    /// After the first batch of an unbounded pass, its threshold is never below the
    /// `k`-th smallest sum of the accepted rows plus the spread, and every accepted row
    /// under that is a candidate (so no top-`k` row is lost) — also when rows are
    /// rejected (some seeds then fail and the batch is taken again) or sums tie — and
    /// is close to it (at most `4k` sums under it in nine passes of ten): both block
    /// layouts, partial last blocks, `k` from 1 to past the batch.
    #[test]
    fn seeded_thresholds_are_valid_and_tight() {
        use crate::rng::{RngExt, seeded};
        let mut rng = seeded(12);
        let bound = Bound::rounded(0.0, 1.0, 16);
        let (mut bounded, mut tight, mut seeds, mut failed_seeds) = (0, 0, 0, 0);
        for trial in 0..400 {
            let (block, lane_row) = if trial % 2 == 0 {
                (32usize, std::convert::identity as fn(usize) -> usize)
            } else {
                (pq8::BLOCK, pq8::lane_row as fn(usize) -> usize)
            };
            let nb = 1 + rng.random_range(0..EXACT_BATCH);
            let (b0, len) = (
                rng.random_range(0..3usize),
                rng.random_range(0..nb * block + 1),
            );
            let len = b0 * block + len;
            let k = [1, 3, 10, 10, 30, 100, 1000][rng.random_range(0..7usize)];
            let top = if trial % 3 == 0 { 64 } else { 60_000 };
            let sums: Vec<u16> = (0..nb * block).map(|_| rng.random_range(0..top)).collect();
            let row = |at: usize| (b0 + at / block) * block + lane_row(at % block);
            let reject = trial % 4 == 1;
            let ok = |r: usize| !reject || !r.is_multiple_of(7);
            let heap = TopK::new(k);
            let mut s = Scan8Scratch::default();
            let mut pass = ExactPass::start(bound, &heap, &mut s).unwrap();
            let batch = Batch {
                b0,
                nb,
                layout: (block, lane_row),
                rows: (len, 0),
                sums: &sums,
            };
            let mut valid: Vec<(u16, usize)> = (0..nb * block)
                .filter(|&at| row(at) < len && ok(row(at)))
                .map(|at| (sums[at], row(at)))
                .collect();
            valid.sort_unstable();
            if let Some(t) = pass.seed(&batch, &mut s) {
                seeds += 1;
                if valid.len() < k || valid[k - 1].0 > t {
                    failed_seeds += 1;
                }
            }
            // (The masks of a kernel run without a threshold: every lane.)
            let masks = vec![u64::MAX >> (64 - block); nb];
            pass.absorb(&batch, &masks, u16::MAX, &ok, &mut s);
            if valid.len() < k {
                assert!(pass.unbounded(), "trial {trial}: bounded by too few rows");
                continue;
            }
            assert!(!pass.unbounded(), "trial {trial}");
            bounded += 1;
            let sk = valid[k - 1].0;
            assert!(
                pass.thr() >= sk.saturating_add(pass.spread),
                "trial {trial}"
            );
            let kept: std::collections::HashSet<usize> =
                s.cands.iter().map(|&c| c as u32 as usize).collect();
            for &(v, r) in &valid {
                if v <= sk.saturating_add(pass.spread) {
                    assert!(kept.contains(&r), "trial {trial}: row {r} (sum {v}) lost");
                }
            }
            let under = valid.partition_point(|&(v, _)| v <= pass.thr() - pass.spread);
            if under <= 4 * k {
                tight += 1;
            }
        }
        assert!(bounded >= 150, "{bounded} bounded");
        assert!(
            seeds >= 150 && failed_seeds >= 5,
            "{failed_seeds} of {seeds} seeds failed"
        );
        assert!(tight * 10 >= bounded * 9, "{tight} of {bounded} tight");
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
}
