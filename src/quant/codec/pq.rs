//! The product quantizer ([`ProductQuantizer`]) under the [`VectorCodec`] contract.
//!
//! | `nbits` | runs (flat scans, IVF lists) | scan |
//! | --- | --- | --- |
//! | 8 | blocks of 64 ([`pq8`]) | byte tables in AVX-512 registers, candidates near the threshold re-scored with the float table (`Scan8`) |
//! | 4 | fast-scan blocks of 32 ([`fastscan`]) | `u8` tables with `vpshufb`, candidates re-scored with the float table (`scan_exact`) |
//!
//! Both scans return exactly the float-ADC answers. Graph nodes keep row-major codes
//! (one index per byte) scored with the float table.
//!
//! Under IVF with L2 the distance to a residual code is decomposed as in Jégou et al.
//! (2011): `‖q − c − r‖² = ‖q − c‖² + (‖r‖² + 2⟨c, r⟩) − 2⟨q, r⟩`; the middle term is a
//! table per list ([`VectorCodec::list_tables`], computed once from the coarse
//! centroids), the last one table per query, so a probed list costs `M·ksub` additions.

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::kernels::{self, fastscan, pq8};
use crate::linalg::gemm_abt;
use crate::metric::Metric;
use crate::quant::codec::scan::{
    Batch, Bound, EXACT_BATCH, ExactPass, Scan8, Scan8Scratch, scan_exact,
};
use crate::quant::codec::{InnerSpec, ListTerms, Stored, VectorCodec};
use crate::quant::product::{ProductQuantizer, check_params, pack4};
use crate::store::{Container, ContainerWriter};
use crate::topk::TopK;

/// Container section of 8-bit runs in blocks of 64 (older files hold row-major `codes`).
pub(crate) const CODES8_SECTION: &str = "codes64";

/// The spec of a product quantizer: `M` sub-quantizers of `nbits` (8, or 4 for
/// fast-scan).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "InnerSpec", try_from = "InnerSpec")]
pub struct PqParams {
    /// Sub-quantizers.
    pub m: usize,
    /// Bits per sub-quantizer: 8, or 4 (fast-scan layout).
    pub nbits: u8,
}

impl From<PqParams> for InnerSpec {
    fn from(p: PqParams) -> Self {
        InnerSpec::Product {
            m: p.m,
            nbits: p.nbits,
        }
    }
}

impl TryFrom<InnerSpec> for PqParams {
    type Error = String;
    fn try_from(s: InnerSpec) -> std::result::Result<Self, String> {
        match s {
            InnerSpec::Product { m, nbits } => Ok(PqParams { m, nbits }),
            other => Err(format!(
                "expected a product quantizer, found {}",
                other.name()
            )),
        }
    }
}

/// Checks that every reconstruction `pq` can produce is usable: the centroids finite and
/// the largest squared norm of a reconstruction (the sum over sub-spaces of the largest
/// centroid's squared norm) within [`crate::index::MAX_TERM`], so that table entries and
/// distances to the codes stay finite. `context` names what was trained on.
pub(crate) fn check_centroids(pq: &ProductQuantizer, context: &str) -> Result<()> {
    let total: f64 = (0..pq.m())
        .map(|s| {
            (0..pq.ksub())
                .map(|j| {
                    let n = crate::index::checks::norm_sq(pq.centroid(s, j));
                    if n.is_finite() { n } else { f64::INFINITY }
                })
                .fold(0.0, f64::max)
        })
        .sum();
    let total = if pq.centroids().iter().all(|c| c.is_finite()) {
        total
    } else {
        f64::INFINITY
    };
    crate::index::checks::check_trained_term(
        total,
        context,
        "product quantizer's largest reconstruction (squared norm)",
    )
}

/// One query's scan state.
#[derive(Default)]
pub struct PqQuery {
    /// −⟨q_s, C_sj⟩ of the query (inner product, cosine, and L2 with list tables).
    qtable: Vec<f32>,
    /// The current float table (4-bit; 8-bit tables live in `scan8`).
    table: Vec<f32>,
    /// The constant added to every distance of the current list.
    konst: f32,
    /// Whether the current table has been quantised for the block kernels.
    quantised: bool,
    scan8: Scan8,
    scratch8: Scan8Scratch,
    q8: Vec<u8>,
    lut: Vec<u8>,
    bias: f32,
    scale: f32,
    masks: Vec<u32>,
    /// Sums of [`ProductQuantizer::scan_fast_many`] (query-major).
    multi_sums: Vec<u16>,
    residual: Vec<f32>,
}

impl PqQuery {
    fn table_mut(&mut self, nbits: u8) -> &mut Vec<f32> {
        if nbits == 8 {
            &mut self.scan8.table
        } else {
            &mut self.table
        }
    }
    fn table(&self, nbits: u8) -> &[f32] {
        if nbits == 8 {
            &self.scan8.table
        } else {
            &self.table
        }
    }
}

impl ProductQuantizer {
    /// Fast-scan of a packed 4-bit run with the state's float table: entries whose
    /// quantised sum could be within the heap's threshold are re-scored with the float
    /// table.
    #[allow(clippy::too_many_arguments)]
    fn scan_fast(
        &self,
        s: &mut PqQuery,
        codes: &[u8],
        n: usize,
        first: usize,
        heap: &mut TopK,
        ok: &dyn Fn(usize) -> bool,
    ) {
        let m = self.m();
        let pairs = fastscan::padded_pairs(m);
        let bb = fastscan::block_bytes(m);
        let konst = s.konst;
        let bound = Bound::rounded(konst + s.bias, s.scale, m);
        let PqQuery {
            lut,
            table,
            masks: masks32,
            scratch8,
            ..
        } = s;
        let mut kernel = |b0: usize, nb: usize, thr: u16, sums: &mut [u16], masks: &mut [u64]| {
            masks32.resize(nb, 0);
            let blocks = &codes[b0 * bb..(b0 + nb) * bb];
            fastscan::scan_blocks(lut, blocks, pairs, thr, sums, masks32);
            masks
                .iter_mut()
                .zip(masks32.iter())
                .for_each(|(w, &n)| *w = n as u64);
        };
        let exact = |local: usize| konst + fastscan::adc_at(table, codes, m, local);
        let nblocks = n.div_ceil(fastscan::BLOCK);
        let layout = (
            fastscan::BLOCK,
            std::convert::identity as fn(usize) -> usize,
        );
        scan_exact(
            0..nblocks,
            layout,
            (n, first),
            bound,
            heap,
            ok,
            scratch8,
            &mut kernel,
            &exact,
        );
    }
}

impl ProductQuantizer {
    /// [`ProductQuantizer::scan_fast`] for up to [`fastscan::NQ`] queries over the same
    /// packed run (each state's table quantised): the code blocks are loaded once for
    /// all of them ([`fastscan::scan_blocks_multi`]); each query keeps its own
    /// candidates and exact re-scoring, so the result is that of `scan_fast` per query.
    fn scan_fast_many(
        &self,
        states: &mut [PqQuery],
        codes: &[u8],
        n: usize,
        first: usize,
        heaps: &mut [TopK],
        ok: &dyn Fn(usize) -> bool,
    ) {
        const NQ: usize = fastscan::NQ;
        let nq = states.len().min(heaps.len()).min(NQ);
        if nq == 0 {
            return;
        }
        let m = self.m();
        let pairs = fastscan::padded_pairs(m);
        let bb = fastscan::block_bytes(m);
        let mut scratch: [Scan8Scratch; NQ] = Default::default();
        let mut passes: [Option<ExactPass>; NQ] = Default::default();
        for j in 0..nq {
            let st = &mut states[j];
            std::mem::swap(&mut scratch[j], &mut st.scratch8);
            let bound = Bound::rounded(st.konst + st.bias, st.scale, m);
            passes[j] = ExactPass::start(bound, &heaps[j], &mut scratch[j]);
        }
        if passes.iter().any(Option::is_some) {
            // Missing queries of a short group repeat the last table (threshold 0,
            // their sums are not read).
            const BATCH: usize = EXACT_BATCH;
            // Kept in the first state between calls (no per-call clearing).
            let (mut sums, mut masks) = (
                std::mem::take(&mut states[0].multi_sums),
                std::mem::take(&mut states[0].masks),
            );
            sums.resize(NQ * BATCH * fastscan::BLOCK, 0);
            masks.resize(NQ * BATCH, 0);
            let luts: [&[u8]; NQ] = std::array::from_fn(|j| states[j.min(nq - 1)].lut.as_slice());
            let nblocks = n.div_ceil(fastscan::BLOCK);
            let layout = (
                fastscan::BLOCK,
                std::convert::identity as fn(usize) -> usize,
            );
            let mut b0 = 0;
            while b0 < nblocks {
                let nb = BATCH.min(nblocks - b0);
                let thr: [u16; NQ] =
                    std::array::from_fn(|j| passes[j].as_ref().map_or(0, ExactPass::thr));
                fastscan::scan_blocks_multi(
                    &luts,
                    &codes[b0 * bb..(b0 + nb) * bb],
                    pairs,
                    &thr,
                    &mut sums[..NQ * nb * fastscan::BLOCK],
                    &mut masks[..NQ * nb],
                );
                for (j, pass) in passes.iter_mut().enumerate() {
                    if let Some(p) = pass {
                        let s = &sums[j * nb * fastscan::BLOCK..(j + 1) * nb * fastscan::BLOCK];
                        let mk = &masks[j * nb..(j + 1) * nb];
                        let batch = Batch {
                            b0,
                            nb,
                            layout,
                            rows: (n, first),
                            sums: s,
                        };
                        p.absorb(&batch, mk, thr[j], ok, &mut scratch[j]);
                    }
                }
                b0 += nb;
            }
            (states[0].multi_sums, states[0].masks) = (sums, masks);
        }
        for (j, pass) in passes.into_iter().enumerate().take(nq) {
            let st = &mut states[j];
            if let Some(p) = pass {
                let (konst, table) = (st.konst, &st.table);
                let exact = |local: usize| konst + fastscan::adc_at(table, codes, m, local);
                p.finish(first, &mut heaps[j], &mut scratch[j], &exact);
            }
            std::mem::swap(&mut scratch[j], &mut st.scratch8);
        }
    }

    /// Quantises the state's float table for the fast-scan kernels, once per list.
    fn quantise4(&self, s: &mut PqQuery) {
        if !s.quantised {
            (s.bias, s.scale) = fastscan::quantize_table(&s.table, &mut s.q8);
            fastscan::pack_lut(&s.q8, self.m(), &mut s.lut);
            s.quantised = true;
        }
    }
}

/// Bytes of a code of `m` indices of `nbits` bits, as the codec reports it (`m · nbits / 8`).
fn packed_bytes(m: usize, nbits: u8) -> usize {
    m * nbits as usize / 8
}

impl VectorCodec for ProductQuantizer {
    type Spec = PqParams;
    type Query = PqQuery;

    fn train(spec: &PqParams, sample: &[f32], dim: usize, seed: u64) -> Result<Self> {
        let pq = ProductQuantizer::train(sample, dim, spec.m, spec.nbits, seed)?;
        check_centroids(&pq, "training sample")?;
        Ok(pq)
    }
    fn check(spec: &PqParams, dim: usize) -> Result<()> {
        check_params(dim, spec.m, spec.nbits)?;
        if spec.nbits == 4 && spec.m > 256 {
            return Err(Error::param(
                "M",
                "fast-scan supports at most 256 sub-quantizers",
            ));
        }
        Ok(())
    }
    fn name(spec: &PqParams) -> String {
        if spec.nbits == 4 {
            format!("PQ{}x4fs", spec.m)
        } else {
            format!("PQ{}", spec.m)
        }
    }
    fn dim(&self) -> usize {
        ProductQuantizer::dim(self)
    }
    fn code_size(&self) -> usize {
        packed_bytes(self.m(), self.nbits())
    }
    fn spec_code_size(spec: &PqParams, _dim: usize) -> Option<usize> {
        Some(packed_bytes(spec.m, spec.nbits))
    }
    fn row_size(&self) -> usize {
        self.m()
    }
    fn params_bytes(&self) -> usize {
        self.centroids().len() * 4
    }
    fn encode(&self, x: &[f32]) -> Result<Vec<u8>> {
        self.encode_indices(x)
    }
    fn decode(&self, codes: &[u8]) -> Result<Vec<f32>> {
        if self.nbits() == 8 {
            ProductQuantizer::decode(self, codes)
        } else {
            ProductQuantizer::decode(self, &pack4(codes, self.m()))
        }
    }
    fn block(&self) -> usize {
        if self.nbits() == 4 {
            fastscan::BLOCK
        } else {
            pq8::BLOCK
        }
    }
    fn packed_len(&self, n: usize) -> usize {
        let m = self.m();
        if self.nbits() == 4 {
            n.div_ceil(fastscan::BLOCK) * fastscan::block_bytes(m)
        } else {
            n.div_ceil(pq8::BLOCK) * pq8::block_bytes(m)
        }
    }
    fn pack(&self, rows: &[u8]) -> Vec<u8> {
        if self.nbits() == 4 {
            fastscan::pack_blocks(rows, self.m())
        } else {
            pq8::pack_blocks(rows, self.m())
        }
    }
    fn unpack(&self, run: &[u8], n: usize) -> Vec<u8> {
        let m = self.m();
        if self.nbits() == 8 {
            return pq8::unpack_blocks(run, m, n);
        }
        let bb = fastscan::block_bytes(m);
        let mut out = Vec::with_capacity(n * m);
        for i in 0..n {
            let b = &run[(i / fastscan::BLOCK) * bb..];
            out.extend((0..m).map(|s| fastscan::code_in_block(b, s, i % fastscan::BLOCK) as u8));
        }
        out
    }
    fn runs_section(&self) -> &'static str {
        if self.nbits() == 8 {
            CODES8_SECTION
        } else {
            "codes"
        }
    }
    fn write<'a>(&'a self, w: &mut ContainerWriter<'a>) {
        w.section_f32("centroids", self.centroids());
    }
    fn read(spec: &PqParams, c: &Container, dim: usize) -> Result<Self> {
        let bad = |m: String| Error::format(c.path(), m);
        let len = (1usize << spec.nbits)
            .checked_mul(dim)
            .ok_or_else(|| bad("size overflows".into()))?;
        let cents = c.section_f32("centroids", len)?;
        ProductQuantizer::from_parts(dim, spec.m, spec.nbits, cents)
            .map_err(|e| bad(format!("quantizer: {e}")))
    }

    fn list_tables(&self, centroids: &[f32], metric: Metric) -> Option<Vec<f32>> {
        if metric != Metric::L2 {
            return None;
        }
        let (m, ks, ds, d) = (
            self.m(),
            self.ksub(),
            self.dsub(),
            ProductQuantizer::dim(self),
        );
        let nlist = centroids.len() / d;
        let cn: Vec<f32> = (0..m)
            .flat_map(|s| (0..ks).map(move |j| (s, j)))
            .map(|(s, j)| {
                let c = self.centroid(s, j);
                kernels::scalar::dot(c, c)
            })
            .collect();
        // ⟨c_l,s, C_sj⟩ for every list l and centroid j: one small GEMM per sub-space.
        let dots: Vec<Vec<f32>> = (0..m)
            .into_par_iter()
            .map(|s| {
                let coarse: Vec<f32> = centroids
                    .chunks_exact(d)
                    .flat_map(|c| c[s * ds..(s + 1) * ds].iter().copied())
                    .collect();
                let book = &self.centroids()[s * ks * ds..(s + 1) * ks * ds];
                let mut out = vec![0.0f32; nlist * ks];
                gemm_abt(&coarse, book, ds, &mut out);
                out
            })
            .collect();
        let mut t = vec![0.0f32; nlist * m * ks];
        t.par_chunks_mut(m * ks).enumerate().for_each(|(l, tl)| {
            for (s, dots) in dots.iter().enumerate() {
                let row = &dots[l * ks..(l + 1) * ks];
                for ((o, &c), &dt) in tl[s * ks..(s + 1) * ks]
                    .iter_mut()
                    .zip(&cn[s * ks..(s + 1) * ks])
                    .zip(row)
                {
                    *o = c + 2.0 * dt;
                }
            }
        });
        Some(t)
    }
    fn list_table_len(&self) -> usize {
        self.m() * self.ksub()
    }

    fn begin_query(
        &self,
        s: &mut PqQuery,
        q: &[f32],
        metric: Metric,
        tables: Option<&[f32]>,
        first_lists: &[usize],
    ) {
        if metric == Metric::L2 {
            if let Some(pre) = tables {
                // The first lists' precomputed terms travel from memory while the
                // query's table is computed.
                let size = self.list_table_len();
                for &l in first_lists {
                    kernels::prefetch_l2(&pre[l * size..(l + 1) * size]);
                }
                // −⟨q_s, C_sj⟩ (doubled when added to the list's terms).
                self.adc_table(q, Metric::InnerProduct, &mut s.qtable);
            }
        } else {
            self.adc_table(q, Metric::InnerProduct, &mut s.qtable);
        }
    }

    fn set_list(&self, s: &mut PqQuery, q: &[f32], metric: Metric, list: ListTerms<'_>) {
        let nbits = self.nbits();
        s.quantised = false;
        s.konst = if metric == Metric::L2 {
            if let Some(pre) = list.tables {
                let PqQuery {
                    qtable,
                    table,
                    scan8,
                    lut,
                    ..
                } = s;
                if nbits == 4 {
                    // Built, quantised and laid out for the kernels in one pass.
                    (s.bias, s.scale) = fastscan::list_lut(pre, qtable, table, lut);
                    s.quantised = true;
                } else {
                    let t = &mut scan8.table;
                    t.clear();
                    t.extend(pre.iter().zip(qtable.iter()).map(|(x, y)| x + 2.0 * y));
                }
                list.coarse
            } else {
                match list.centroid {
                    Some(c) => {
                        s.residual.clear();
                        s.residual.extend(q.iter().zip(c).map(|(x, y)| x - y));
                        let r = std::mem::take(&mut s.residual);
                        self.adc_table(&r, Metric::L2, s.table_mut(nbits));
                        s.residual = r;
                    }
                    None => self.adc_table(q, Metric::L2, s.table_mut(nbits)),
                }
                0.0
            }
        } else {
            let PqQuery {
                qtable,
                table,
                scan8,
                ..
            } = s;
            let t = if nbits == 8 { &mut scan8.table } else { table };
            t.clear();
            t.extend_from_slice(qtable);
            let cos_off = if metric == Metric::Cosine { 1.0 } else { 0.0 };
            list.coarse + cos_off
        };
    }

    fn scan<F: Fn(usize) -> bool>(
        &self,
        s: &mut PqQuery,
        _: Metric,
        run: Stored<'_>,
        n: usize,
        first: usize,
        heap: &mut TopK,
        ok: &F,
    ) {
        let m = self.m();
        if self.nbits() == 8 {
            if !s.quantised {
                s.scan8.prepare(m, s.konst);
                s.quantised = true;
            }
            let nb = n.div_ceil(pq8::BLOCK);
            s.scan8
                .scan(run.codes, n, 0..nb, first, heap, ok, &mut s.scratch8);
        } else {
            self.quantise4(s);
            self.scan_fast(s, run.codes, n, first, heap, ok);
        }
    }

    fn swap_query(&self, a: &mut PqQuery, b: &mut PqQuery) {
        // `begin_query` sets only the query's table; the rest is per list.
        std::mem::swap(&mut a.qtable, &mut b.qtable);
    }

    fn queries_per_scan(&self) -> usize {
        if self.nbits() == 4 { fastscan::NQ } else { 1 }
    }

    fn scan_many<F: Fn(usize) -> bool>(
        &self,
        states: &mut [PqQuery],
        metric: Metric,
        run: Stored<'_>,
        n: usize,
        first: usize,
        heaps: &mut [TopK],
        ok: &F,
    ) {
        for (ss, hs) in states
            .chunks_mut(fastscan::NQ)
            .zip(heaps.chunks_mut(fastscan::NQ))
        {
            if self.nbits() == 4 && ss.len() > 1 {
                for s in ss.iter_mut() {
                    self.quantise4(s);
                }
                self.scan_fast_many(ss, run.codes, n, first, hs, ok);
            } else {
                // 8-bit codes, or one query: the single-query scan.
                for (s, heap) in ss.iter_mut().zip(hs.iter_mut()) {
                    self.scan(s, metric, run, n, first, heap, ok);
                }
            }
        }
    }

    #[inline]
    fn distance(&self, s: &PqQuery, _: Metric, stored: Stored<'_>, row: usize) -> f32 {
        let (m, ks) = (self.m(), self.ksub());
        let table = s.table(self.nbits());
        let code = &stored.codes[row * m..(row + 1) * m];
        let mut acc = 0.0f32;
        for (sub, &c) in code.iter().enumerate() {
            acc += table[sub * ks + c as usize];
        }
        acc + s.konst
    }

    #[inline]
    fn prefetch(&self, stored: Stored<'_>, row: usize, bytes: usize) {
        let m = self.m();
        kernels::prefetch_l1(&stored.codes[row * m..row * m + m.min(bytes)]);
    }
}
