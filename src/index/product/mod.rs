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

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::index::checks::check_vectors;
use crate::index::rows::{Exact, Rows, gather_rows};
use crate::index::spec::IndexSpec;
use crate::index::{GroupSearch, IdFilter, Index, SearchParams, check_add, header_dims, untrained};
use crate::kernels::{fastscan, pq8};
use crate::metric::Metric;
use crate::quant::codec::pq::check_centroids;
use crate::quant::codec::scan::{Reservoir, Scan8, Scan8Scratch};
use crate::quant::opq::{OpqTraining, rotate, train_opq, transpose};
use crate::quant::product::{ProductQuantizer, check_params};
use crate::store::{Container, ContainerWriter, Slab};
use crate::topk::{Neighbor, TopK};
use crate::vectors::{check_batch, normalize_in_place};

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
        let p = spec
            .parse::<IndexSpec>()
            .ok()
            .and_then(|t| t.pq_spec())
            .ok_or_else(|| Error::Spec {
                spec: spec.to_string(),
                message:
                    "not a product-quantizer spec (PQ{M}, PQ{M}x4fs, OPQ{M},PQ{M}, OPQ{M},PQ{M}x4fs)"
                        .into(),
            })?;
        Self::with_spec(p, dim, metric, keep_raw, seed)
    }

    /// An untrained index for a parsed spec.
    ///
    /// # Errors
    /// `M` does not divide `dim`, or fast-scan with more than 256 sub-quantizers.
    pub fn with_spec(
        p: PqSpec,
        dim: usize,
        metric: Metric,
        keep_raw: bool,
        seed: u64,
    ) -> Result<Self> {
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
        self.pq.as_ref().ok_or_else(|| untrained(&self.spec.name()))
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
        let (dim, n) = header_dims(c)?;
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
    ) -> Result<Vec<(Vec<Neighbor>, u32)>> {
        let pq = self.trained()?;
        let (rerank, depth) = crate::index::scan_depth(
            params,
            false,
            !self.raw.is_empty(),
            false,
            &self.spec.name(),
        )?;
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
                    adaptive: false,
                });
                self.rows.finish(c, params.k, exact)
            })
            .collect())
    }

    /// Sub-quantizer indices of every stored row (`n × M`), from either layout.
    fn indices(&self) -> Vec<u8> {
        let m = self.spec.m;
        let n = self.rows.len();
        if self.spec.nbits == 8 {
            return pq8::unpack_blocks(&self.codes, m, n);
        }
        let mut out = Vec::with_capacity(n * m);
        (0..n).for_each(|r| self.row_indices(r, &mut out));
        out
    }

    /// Appends the `M` sub-quantizer indices of stored row `r` to `out`.
    fn row_indices(&self, r: usize, out: &mut Vec<u8>) {
        let m = self.spec.m;
        if self.spec.nbits == 8 {
            out.extend((0..m).map(|s| pq8::code_at(&self.codes, m, r, s)));
        } else {
            let block = &self.codes[(r / fastscan::BLOCK) * fastscan::block_bytes(m)..];
            out.extend(
                (0..m).map(|s| fastscan::code_in_block(block, s, r % fastscan::BLOCK) as u8),
            );
        }
    }

    /// `add` (`replace`: `upsert`): everything is checked before the index changes.
    fn add_rows(&mut self, vectors: &[f32], ids: Option<&[u64]>, replace: bool) -> Result<usize> {
        let n = check_add(self.dim, vectors, ids)?;
        let pq = self.trained()?;
        let replaced = self.rows.admit(n, ids, replace)?;
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
            // (Only the partial block's rows are read back: reading every row made each
            // add of a chunked build cost the whole index.)
            for r in keep_blocks * fastscan::BLOCK..old {
                self.row_indices(r, &mut tail);
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
        self.rows.push_replacing(n, ids, &replaced);
        Ok(replaced.len())
    }
}

impl GroupSearch for Product {
    const QUERY_GROUP: usize = QUERY_GROUP;
    fn search_group(
        &self,
        queries: &[f32],
        params: &SearchParams,
        filter: &IdFilter<'_>,
    ) -> Result<Vec<(Vec<Neighbor>, u32)>> {
        Product::search_group(self, queries, params, filter)
    }
}

impl Index for Product {
    fn spec(&self) -> String {
        self.spec.name()
    }
    row_accessors!();
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
        check_vectors(sample, self.dim, "training sample")?;
        let base = self.unrotated(sample);
        if self.spec.opq {
            let opq = train_opq(
                &base,
                self.dim,
                self.spec.m,
                self.seed,
                &OpqTraining::default(),
            )?;
            self.rotation = Some(opq.into_rotation());
        }
        let x = match &self.rotation {
            Some(r) => rotate(&base, r, self.dim),
            None => base,
        };
        let pq = ProductQuantizer::train(&x, self.dim, self.spec.m, self.spec.nbits, self.seed)?;
        check_centroids(&pq, "training sample")?;
        self.pq = Some(pq);
        Ok(())
    }

    fn add(&mut self, vectors: &[f32], ids: Option<&[u64]>) -> Result<()> {
        self.add_rows(vectors, ids, false).map(|_| ())
    }

    fn upsert(&mut self, vectors: &[f32], ids: &[u64]) -> Result<usize> {
        self.add_rows(vectors, Some(ids), true)
    }

    crate::index::rows_methods!();

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

    grouped_search!();

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

    fn reconstruct_ids(&self, ids: &[u64]) -> Result<Vec<f32>> {
        let pq = self.trained()?;
        let rows = self.rows.rows_of(ids)?;
        if self.keep_raw {
            return Ok(gather_rows(&self.raw, self.dim, &rows));
        }
        let m = self.spec.m;
        let mut idx = Vec::with_capacity(rows.len() * m);
        rows.iter().for_each(|&r| self.row_indices(r, &mut idx));
        let packed = if self.spec.nbits == 8 {
            idx
        } else {
            crate::quant::product::pack4(&idx, m)
        };
        let y = pq.decode(&packed)?;
        Ok(match &self.rotation {
            Some(r) => rotate(&y, &transpose(r, self.dim), self.dim),
            None => y,
        })
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
        w.section(name, &self.codes[..]);
        self.rows.write(&mut w);
        if self.keep_raw {
            w.section_f32("raw", &self.raw);
        }
        Ok(w)
    }
}

#[cfg(test)]
mod tests;
