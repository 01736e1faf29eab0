//! `Ivf`: an inverted file (FAISS's `IndexIVFFlat`, `IndexIVFScalarQuantizer`,
//! `IndexIVFPQ`, `IndexIVFPQFastScan`).
//!
//! A coarse k-means quantizer ([`crate::kmeans`], `nlist` centroids) partitions the
//! vectors into lists; a query scans only the `nprobe` lists whose centroids are nearest.
//! Inside a list each vector is stored as the code of its *residual* `x − c` (vector
//! minus its list's centroid) under the inner quantizer, which spends the code's bits on
//! what the centroid does not already say:
//!
//! | spec | list entries | distance |
//! | --- | --- | --- |
//! | `IVF{nlist},Flat` | the vectors | exact |
//! | `IVF{nlist},SQ8` (any `SQ` variant) | scalar codes of residuals, plus a correction term | asymmetric, on the codes |
//! | `IVF{nlist},PQ{M}` | 8-bit PQ codes of residuals | ADC tables per probed list |
//! | `IVF{nlist},PQ{M}x4fs` | 4-bit PQ codes of residuals, blocks of 32 per list | fast-scan `u8` tables, candidates re-scored with the float tables |
//!
//! For L2 with PQ, the per-list tables use the decomposition of Jégou et al. (2011):
//! `‖q − c − r‖² = ‖q − c‖² + (‖r‖² + 2⟨c, r⟩) − 2⟨q, r⟩`, where the middle term is a
//! table per list precomputed at training time and the last one table per query, so a
//! probed list costs `M·ksub` additions instead of `d·ksub` multiply-adds
//! ([`Ivf::set_precomputed_tables`]). Fast-scan lists are scanned with a threshold that
//! allows for the `u8` rounding of the tables (at most `M/2` units), so the results are
//! exactly those of the float tables.
//!
//! Lists are stored contiguously (codes, ids, correction terms, raw vectors, each one
//! array in list order, plus `nlist + 1` offsets), so a saved index is memory-mapped in
//! place. Adding vectors merges them into their lists (a linear pass over the index).

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::index::product::{Bound, Scan8, Scan8Scratch, scan_exact};
use crate::index::rows::{Exact, Rows, rerank_unavailable};
use crate::index::scalar::Kernel;
use crate::index::{IdFilter, Index, SearchParams, check_add, check_search, check_single};
use crate::kernels::{self, fastscan, pq8, sq as ksq};
use crate::kmeans::{KMeans, KMeansConfig, nearest};
use crate::linalg::gemm_abt;
use crate::metric::Metric;
use crate::quant::product::{ProductQuantizer, check_params};
use crate::quant::scalar::{ScalarQuantizer, SqConfig};
use crate::store::{Container, ContainerWriter, Slab};
use crate::topk::{Neighbor, TopK};
use crate::vectors::{check_batch, check_finite};

/// Queries per group in batch search (they share one coarse GEMM).
const QUERY_GROUP: usize = 64;
/// Up to this many probes are picked by one insertion pass instead of a selection.
const FEW_PROBES: usize = 16;
/// Container section of 8-bit PQ lists in blocks of 64.
const CODES8_SECTION: &str = "codes64";
/// Entries scanned per kernel call.
const CHUNK: usize = 1024;
/// Largest `nlist` accepted.
pub const MAX_NLIST: usize = 1 << 20;
/// Precomputed tables are skipped when they would exceed this many bytes.
const MAX_PRECOMPUTED_BYTES: usize = 512 << 20;

/// What a list entry stores.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum InnerSpec {
    /// The vectors themselves.
    Flat,
    /// A scalar quantizer of the residuals (name as in its spec, e.g. `SQ8`).
    Scalar {
        /// The spec name (`SQ8`, `SQ4`, ...).
        name: String,
        /// The quantizer configuration.
        config: SqConfig,
    },
    /// A product quantizer of the residuals.
    Product {
        /// Sub-quantizers.
        m: usize,
        /// Bits per sub-quantizer: 8, or 4 (fast-scan layout).
        nbits: u8,
    },
}

impl InnerSpec {
    /// 8-bit PQ (lists in [`pq8`] blocks).
    fn is_pq8(&self) -> bool {
        matches!(self, InnerSpec::Product { nbits: 8, .. })
    }

    fn name(&self) -> String {
        match self {
            InnerSpec::Flat => "Flat".into(),
            InnerSpec::Scalar { name, .. } => name.clone(),
            InnerSpec::Product { m, nbits: 8 } => format!("PQ{m}"),
            InnerSpec::Product { m, .. } => format!("PQ{m}x4fs"),
        }
    }
}

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

#[derive(Serialize, Deserialize)]
struct StoredParams {
    nlist: usize,
    inner: InnerSpec,
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

/// The trained inner quantizer.
#[derive(Clone, Debug)]
enum Codec {
    Flat,
    Scalar(ScalarQuantizer),
    Product(ProductQuantizer),
}

/// Inverted-file index.
#[derive(Clone, Debug)]
pub struct Ivf {
    dim: usize,
    metric: Metric,
    nlist: usize,
    inner: InnerSpec,
    keep_raw: bool,
    seed: u64,
    /// Coarse centroids (`nlist × dim`) and their squared norms; empty until trained.
    centroids: Vec<f32>,
    c_norms: Vec<f32>,
    codec: Option<Codec>,
    /// Entry offsets of the lists (`nlist + 1`).
    offsets: Vec<usize>,
    /// Fast-scan only: block offsets of the lists (`nlist + 1`).
    block_starts: Vec<usize>,
    codes: Slab<u8>,
    /// Scalar inner: ‖r̂‖² (L2), 1/‖c + r̂‖ (cosine); empty otherwise.
    corr: Slab<f32>,
    rows: Rows,
    /// The vectors (prepared) in list order: always for `Flat`, with `keep_raw` otherwise.
    raw: Slab<f32>,
    /// L2 with PQ: per list `M × ksub` terms ‖C_sj‖² + 2⟨c_s, C_sj⟩.
    /// Computed on first use, so opening a file stays O(1).
    precomputed: std::sync::OnceLock<Vec<f32>>,
    use_precomputed: bool,
}

/// Per-query scratch buffers (reused across lists).
#[derive(Default)]
struct Scratch {
    residual: Vec<f32>,
    weights: Vec<f32>,
    table: Vec<f32>,
    qtable: Vec<f32>,
    q8: Vec<u8>,
    lut: Vec<u8>,
    sums: Vec<f32>,
    masks: Vec<u32>,
    probes: Vec<(f32, u32)>,
    scan8: Scan8,
    scratch8: Scan8Scratch,
}

impl Ivf {
    /// An untrained index for `IVF{nlist},{inner}`.
    pub fn new(spec: &str, dim: usize, metric: Metric, keep_raw: bool, seed: u64) -> Result<Self> {
        let (nlist, inner) = parse_spec(spec).ok_or_else(|| Error::Spec {
            spec: spec.to_string(),
            message: format!(
                "not an inverted-file spec (IVF{{nlist}},Flat, IVF{{nlist}},SQ8, \
                 IVF{{nlist}},PQ{{M}}, IVF{{nlist}},PQ{{M}}x4fs; 1 ≤ nlist ≤ {MAX_NLIST})"
            ),
        })?;
        if let InnerSpec::Product { m, nbits } = inner {
            check_params(dim, m, nbits)?;
            if nbits == 4 && m > 256 {
                return Err(Error::param(
                    "M",
                    "fast-scan supports at most 256 sub-quantizers",
                ));
            }
        }
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
            corr: Slab::default(),
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

    /// Number of entries (deleted ones included) in each list.
    pub fn list_sizes(&self) -> Vec<usize> {
        self.offsets.windows(2).map(|w| w[1] - w[0]).collect()
    }

    /// Turns the precomputed L2 tables of the PQ kinds on (default) or off (then each
    /// probed list computes its table from the residual query; results are the same up to
    /// float rounding).
    pub fn set_precomputed_tables(&mut self, on: bool) {
        self.use_precomputed = on;
        self.invalidate_tables();
    }

    /// Whether searches use precomputed tables (L2, PQ inner, enabled, and the tables
    /// fit in 512 MiB).
    pub fn uses_precomputed_tables(&self) -> bool {
        match &self.codec {
            Some(Codec::Product(pq)) => {
                self.use_precomputed
                    && self.metric == Metric::L2
                    && self.nlist * pq.m() * pq.ksub() * 4 <= MAX_PRECOMPUTED_BYTES
            }
            _ => false,
        }
    }

    /// The precomputed tables, computed at the first call.
    fn precomputed_tables(&self) -> Option<&[f32]> {
        if !self.uses_precomputed_tables() {
            return None;
        }
        Some(self.precomputed.get_or_init(|| self.compute_tables()))
    }

    fn name(&self) -> String {
        format!("IVF{},{}", self.nlist, self.inner.name())
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

    /// PQ lists are stored in blocks: `(m, vectors per block, bytes per block)` — 4-bit
    /// fast-scan blocks of 32 ([`fastscan`]) or 8-bit blocks of 64 ([`pq8`]).
    fn blocks(&self) -> Option<(usize, usize, usize)> {
        match self.inner {
            InnerSpec::Product { m, nbits: 4 } => {
                Some((m, fastscan::BLOCK, fastscan::block_bytes(m)))
            }
            InnerSpec::Product { m, .. } => Some((m, pq8::BLOCK, pq8::block_bytes(m))),
            _ => None,
        }
    }

    /// Packs one list's row-major indices (`len × m`) into its blocks.
    fn pack_list(&self, idx: &[u8]) -> Vec<u8> {
        match self.inner {
            InnerSpec::Product { m, nbits: 4 } => fastscan::pack_blocks(idx, m),
            InnerSpec::Product { m, .. } => pq8::pack_blocks(idx, m),
            _ => idx.to_vec(),
        }
    }

    /// Bytes per entry in `codes` (0 for Flat; fast-scan lists are block-packed).
    fn code_size(&self) -> usize {
        match &self.inner {
            InnerSpec::Flat => 0,
            InnerSpec::Scalar { config, .. } => {
                crate::quant::scalar::code_size(self.dim, config.bits)
            }
            InnerSpec::Product { m, nbits } => m * *nbits as usize / 8,
        }
    }

    fn has_corr(&self) -> bool {
        matches!(self.inner, InnerSpec::Scalar { .. }) && self.metric != Metric::InnerProduct
    }

    fn stores_raw(&self) -> bool {
        self.keep_raw || self.inner == InnerSpec::Flat
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

    fn compute_tables(&self) -> Vec<f32> {
        let Some(Codec::Product(pq)) = &self.codec else {
            return Vec::new();
        };
        let (m, ks, ds, d) = (pq.m(), pq.ksub(), pq.dsub(), self.dim);
        let cn: Vec<f32> = (0..m)
            .flat_map(|s| (0..ks).map(move |j| (s, j)))
            .map(|(s, j)| {
                let c = pq.centroid(s, j);
                kernels::scalar::dot(c, c)
            })
            .collect();
        // ⟨c_l,s, C_sj⟩ for every list l and centroid j: one small GEMM per sub-space.
        let dots: Vec<Vec<f32>> = (0..m)
            .into_par_iter()
            .map(|s| {
                let coarse: Vec<f32> = self
                    .centroids
                    .chunks_exact(d)
                    .flat_map(|c| c[s * ds..(s + 1) * ds].iter().copied())
                    .collect();
                let book = &pq.centroids()[s * ks * ds..(s + 1) * ks * ds];
                let mut out = vec![0.0f32; self.nlist * ks];
                gemm_abt(&coarse, book, ds, &mut out);
                out
            })
            .collect();
        let mut t = vec![0.0f32; self.nlist * m * ks];
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
        t
    }

    /// Loads an `ivf` container.
    pub fn from_container(c: &Container) -> Result<Self> {
        let h = c.header();
        let bad = |m: String| Error::format(c.path(), m);
        let dim = usize::try_from(h.dim)
            .ok()
            .filter(|&d| d > 0 && d <= 1 << 24)
            .ok_or_else(|| bad(format!("invalid dimension {} in header", h.dim)))?;
        let n = usize::try_from(h.count).map_err(|_| bad("vector count overflows".into()))?;
        let p: StoredParams = c.params()?;
        if p.nlist == 0 || p.nlist > MAX_NLIST {
            return Err(bad(format!("invalid nlist {}", p.nlist)));
        }
        let mut idx = Ivf::new(
            &format!("IVF{},{}", p.nlist, p.inner.name()),
            dim,
            h.metric,
            p.keep_raw,
            0,
        )
        .map_err(|e| bad(e.to_string()))?;
        idx.inner = p.inner.clone();
        let size =
            |a: usize, b: usize| a.checked_mul(b).ok_or_else(|| bad("size overflows".into()));
        idx.centroids = c.section_f32("coarse", size(p.nlist, dim)?)?;
        if idx.centroids.iter().any(|v| !v.is_finite()) {
            return Err(bad("non-finite coarse centroid".into()));
        }
        idx.c_norms = kernels::row_norms_sq(&idx.centroids, dim);
        let offsets = c.section_u64("list_offsets", p.nlist + 1)?;
        if offsets[0] != 0
            || offsets.windows(2).any(|w| w[0] > w[1])
            || offsets[p.nlist] != n as u64
        {
            return Err(bad(format!(
                "list offsets are not a partition of the {n} entries"
            )));
        }
        idx.offsets = offsets.iter().map(|&o| o as usize).collect();
        idx.codec = Some(match &p.inner {
            InnerSpec::Flat => Codec::Flat,
            InnerSpec::Scalar { config, .. } => {
                Codec::Scalar(crate::index::scalar::read_quantizer(c, dim, config)?)
            }
            InnerSpec::Product { m, nbits } => {
                let cents = c.section_f32("centroids", size(1usize << nbits, dim)?)?;
                Codec::Product(
                    ProductQuantizer::from_parts(dim, *m, *nbits, cents)
                        .map_err(|e| bad(format!("quantizer: {e}")))?,
                )
            }
        });
        if let Some((m, _, bb)) = idx.blocks() {
            idx.set_block_starts();
            let code_bytes = size(idx.block_starts[p.nlist], bb)?;
            if code_bytes > 0 {
                idx.codes = if idx.inner.is_pq8() && c.section(CODES8_SECTION).is_err() {
                    // Written before 8-bit lists were blocked: row-major per list.
                    let rows = c.section_u8("codes", size(n, m)?)?;
                    let mut packed = Vec::with_capacity(code_bytes);
                    for w in idx.offsets.windows(2) {
                        packed.extend(idx.pack_list(&rows[w[0] * m..w[1] * m]));
                    }
                    Slab::from(packed)
                } else {
                    c.slab::<u8>(idx.codes_section(), code_bytes)?
                };
            }
        } else {
            let code_bytes = size(n, idx.code_size())?;
            if code_bytes > 0 {
                idx.codes = c.slab::<u8>("codes", code_bytes)?;
            }
        }
        idx.rows = Rows::read(c, n)?;
        if idx.has_corr() {
            idx.corr = c.slab::<f32>("corr", n)?;
        }
        if idx.stores_raw() {
            idx.raw = c.slab::<f32>("raw", size(n, dim)?)?;
        }
        if c.verified() {
            check_finite(&idx.raw, dim, "stored vectors").map_err(|e| bad(e.to_string()))?;
            if idx.corr.iter().any(|v| !v.is_finite()) {
                return Err(bad("non-finite correction term".into()));
            }
        }
        Ok(idx)
    }

    /// Container section of the codes: 8-bit blocks are a newer section than the
    /// row-major 8-bit lists of older files.
    fn codes_section(&self) -> &'static str {
        if self.inner.is_pq8() {
            CODES8_SECTION
        } else {
            "codes"
        }
    }

    fn set_block_starts(&mut self) {
        let block = self.blocks().map_or(1, |b| b.1);
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

    /// Per-entry payload in entry order: fixed-size codes, or for PQ the indices one
    /// per byte.
    fn entry_codes(&self) -> Vec<u8> {
        let Some((m, block, bb)) = self.blocks() else {
            return self.codes.to_vec();
        };
        let mut out = Vec::with_capacity(self.rows.len() * m);
        for l in 0..self.nlist {
            let list = &self.codes[self.block_starts[l] * bb..];
            let len = self.offsets[l + 1] - self.offsets[l];
            if block == pq8::BLOCK {
                out.extend(pq8::unpack_blocks(list, m, len));
                continue;
            }
            for i in 0..len {
                let b = &list[(i / block) * bb..];
                out.extend((0..m).map(|s| fastscan::code_in_block(b, s, i % block) as u8));
            }
        }
        out
    }

    /// Re-lays every array out in list order, keeping the entries `keep` accepts.
    /// `lists`, `codes` (per-entry payload as [`Ivf::entry_codes`]), `corr` and `raw`
    /// cover every current row (after new rows were pushed).
    fn relayout(
        &mut self,
        lists: &[u32],
        codes: &[u8],
        corr: &[f32],
        raw: &[f32],
        keep: impl Fn(usize) -> bool,
    ) {
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
        let per = self.blocks().map_or(self.code_size(), |b| b.0);
        let gathered = gather_rows(codes, per, &order);
        self.offsets = offsets;
        self.codes = if let Some((m, _, _)) = self.blocks() {
            let mut packed = Vec::new();
            for l in 0..self.nlist {
                let (a, b) = (self.offsets[l], self.offsets[l + 1]);
                packed.extend(self.pack_list(&gathered[a * m..b * m]));
            }
            self.set_block_starts();
            Slab::from(packed)
        } else {
            Slab::from(gathered)
        };
        if !corr.is_empty() {
            self.corr = Slab::from(gather_rows(corr, 1, &order));
        }
        if !raw.is_empty() {
            self.raw = Slab::from(gather_rows(raw, self.dim, &order));
        }
        self.rows = self.rows.gather(&order);
    }

    /// Encodes prepared vectors assigned to `lists`: (codes as [`Ivf::entry_codes`],
    /// correction terms).
    fn encode(&self, x: &[f32], lists: &[u32]) -> Result<(Vec<u8>, Vec<f32>)> {
        let d = self.dim;
        match self.codec()? {
            Codec::Flat => Ok((Vec::new(), Vec::new())),
            Codec::Scalar(sq) => {
                let res = self.residuals(x, lists);
                let codes = sq.encode(&res)?;
                let corr = if self.has_corr() {
                    let centroid = |i: usize| {
                        let l = lists[i] as usize;
                        Some(&self.centroids[l * d..(l + 1) * d])
                    };
                    crate::index::scalar::correction_terms(sq, &codes, self.metric, &centroid)
                } else {
                    Vec::new()
                };
                Ok((codes, corr))
            }
            Codec::Product(pq) => {
                let res = self.residuals(x, lists);
                let codes = if pq.nbits() == 4 {
                    pq.encode_indices(&res)?
                } else {
                    pq.encode(&res)?
                };
                Ok((codes, Vec::new()))
            }
        }
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
        codec: &Codec,
        q: &[f32],
        coarse: &[f32],
        nprobe: usize,
        depth: usize,
        filter: &IdFilter<'_>,
        s: &mut Scratch,
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
        let cos_off = if self.metric == Metric::Cosine {
            1.0
        } else {
            0.0
        };
        // Query-only parts (inner product / cosine: the residual's score does not depend
        // on the list).
        let mut q_const = 0.0f32;
        let pre_all = if matches!(codec, Codec::Product(_)) {
            self.precomputed_tables()
        } else {
            None
        };
        match codec {
            Codec::Scalar(sq) if self.metric != Metric::L2 => {
                q_const = sq.query_terms(q, &mut s.weights);
            }
            Codec::Product(pq) => {
                if self.metric == Metric::L2 {
                    if let Some(pre) = pre_all {
                        // The first lists' precomputed terms travel from memory while
                        // the query's table is computed.
                        let size = pq.m() * pq.ksub();
                        for p in s.probes.iter().take(nprobe.min(2)) {
                            let l = p.1 as usize;
                            kernels::prefetch_l2(&pre[l * size..(l + 1) * size]);
                        }
                        // −⟨q_s, C_sj⟩ (doubled when added to the list's terms).
                        pq.adc_table(q, Metric::InnerProduct, &mut s.qtable);
                    }
                } else {
                    pq.adc_table(q, Metric::InnerProduct, &mut s.qtable);
                }
            }
            _ => {}
        }
        // SQ: the kernel (and its level table) once per query; for inner product and
        // cosine the weights do not change between lists either.
        let sq_kernel = match codec {
            Codec::Scalar(sq) => Some(Kernel::for_quantizer(sq)),
            _ => None,
        };
        let w4_ip = match &sq_kernel {
            Some(k) if self.metric != Metric::L2 => k.lut4_weights(&s.weights),
            _ => ksq::Lut4Weights::default(),
        };
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
            let c = &self.centroids[l * d..(l + 1) * d];
            match codec {
                Codec::Flat => {
                    for r in a..b {
                        let x = &self.raw[r * d..(r + 1) * d];
                        let dist = match self.metric {
                            Metric::L2 => kernels::l2_sq(q, x),
                            m => m.distance_from_score(kernels::dot(q, x)),
                        };
                        if dist <= heap.threshold() && ok(r) {
                            heap.push(r as u64, dist);
                        }
                    }
                }
                Codec::Scalar(sq) => {
                    let kernel = sq_kernel.as_ref().expect("built for SQ codecs");
                    let cs = sq.code_size();
                    let (base, cdot, w4) = if self.metric == Metric::L2 {
                        s.residual.clear();
                        s.residual.extend(q.iter().zip(c).map(|(x, y)| x - y));
                        let c0 = sq.query_terms(&s.residual, &mut s.weights);
                        (
                            kernels::dot(&s.residual, &s.residual) - 2.0 * c0,
                            0.0,
                            Some(kernel.lut4_weights(&s.weights)),
                        )
                    } else {
                        (0.0, -cd + q_const, None)
                    };
                    let w4 = w4.as_ref().unwrap_or(&w4_ip);
                    let mut start = a;
                    while start < b {
                        let rows = CHUNK.min(b - start);
                        let codes = &self.codes[start * cs..(start + rows) * cs];
                        s.sums.resize(rows, 0.0);
                        let out = &mut s.sums[..rows];
                        kernel.scan(&s.weights, w4, codes, out);
                        for (i, &sv) in out.iter().enumerate() {
                            let r = start + i;
                            let dist = match self.metric {
                                Metric::L2 => base - 2.0 * sv + self.corr[r],
                                Metric::InnerProduct => -(cdot + sv),
                                Metric::Cosine => 1.0 - (cdot + sv) * self.corr[r],
                            };
                            if dist <= heap.threshold() && ok(r) {
                                heap.push(r as u64, dist);
                            }
                        }
                        start += rows;
                    }
                }
                Codec::Product(pq) => {
                    let (m, ks) = (pq.m(), pq.ksub());
                    // The list's table and the constant every entry shares.
                    let konst = if self.metric == Metric::L2 {
                        if let Some(pre_all) = pre_all {
                            let pre = &pre_all[l * m * ks..(l + 1) * m * ks];
                            s.table.clear();
                            s.table
                                .extend(pre.iter().zip(&s.qtable).map(|(x, y)| x + 2.0 * y));
                            cd
                        } else {
                            s.residual.clear();
                            s.residual.extend(q.iter().zip(c).map(|(x, y)| x - y));
                            pq.adc_table(&s.residual, Metric::L2, &mut s.table);
                            0.0
                        }
                    } else {
                        s.table.clear();
                        s.table.extend_from_slice(&s.qtable);
                        cd + cos_off
                    };
                    if pq.nbits() == 8 {
                        // The list's table moves into the scanner and back (no copy).
                        std::mem::swap(&mut s.table, &mut s.scan8.table);
                        s.scan8.prepare(m, konst);
                        let list = &self.codes[self.block_starts[l] * pq8::block_bytes(m)..];
                        let nb = (b - a).div_ceil(pq8::BLOCK);
                        s.scan8
                            .scan(list, b - a, 0..nb, a, &mut heap, &ok, &mut s.scratch8);
                        std::mem::swap(&mut s.table, &mut s.scan8.table);
                    } else {
                        self.scan_fast(l, m, konst, &mut heap, &ok, s);
                    }
                }
            }
        }
        heap.into_sorted()
    }

    /// Fast-scan of list `l` with the float table in `s.table`: entries whose quantised
    /// sum could be within the heap's threshold are re-scored with the float table.
    fn scan_fast(
        &self,
        l: usize,
        m: usize,
        konst: f32,
        heap: &mut TopK,
        ok: &dyn Fn(usize) -> bool,
        s: &mut Scratch,
    ) {
        let (bias, scale) = fastscan::quantize_table(&s.table, &mut s.q8);
        fastscan::pack_lut(&s.q8, m, &mut s.lut);
        let pairs = fastscan::padded_pairs(m);
        let bb = fastscan::block_bytes(m);
        let (a, b) = (self.offsets[l], self.offsets[l + 1]);
        let list = &self.codes[self.block_starts[l] * bb..];
        let bound = Bound::rounded(konst + bias, scale, m);
        let Scratch {
            lut,
            table,
            masks: masks32,
            scratch8,
            ..
        } = s;
        let mut kernel = |b0: usize, nb: usize, thr: u16, sums: &mut [u16], masks: &mut [u64]| {
            masks32.resize(nb, 0);
            let codes = &list[b0 * bb..(b0 + nb) * bb];
            fastscan::scan_blocks(lut, codes, pairs, thr, sums, masks32);
            masks
                .iter_mut()
                .zip(masks32.iter())
                .for_each(|(w, &n)| *w = n as u64);
        };
        let exact = |local: usize| konst + fastscan::adc_at(table, list, m, local);
        let nblocks = (b - a).div_ceil(fastscan::BLOCK);
        let layout = (
            fastscan::BLOCK,
            std::convert::identity as fn(usize) -> usize,
        );
        scan_exact(
            0..nblocks,
            layout,
            (b - a, a),
            bound,
            heap,
            ok,
            scratch8,
            &mut kernel,
            &exact,
        );
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
        let rerank = params.rerank > 0 && self.inner != InnerSpec::Flat;
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

impl Index for Ivf {
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
        match self.inner {
            InnerSpec::Flat => 4.0 * self.dim as f64,
            _ => self.code_size() as f64,
        }
    }
    fn memory_bytes(&self) -> usize {
        let params = match &self.codec {
            Some(Codec::Scalar(sq)) => crate::index::scalar::quantizer_bytes(sq),
            Some(Codec::Product(pq)) => pq.centroids().len() * 4,
            _ => 0,
        };
        self.codes.len()
            + self.rows.memory_bytes()
            + self.corr.len() * 4
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
        let codec = match &self.inner {
            InnerSpec::Flat => Codec::Flat,
            InnerSpec::Scalar { config, .. } => {
                let lists = self.assign(&x);
                let res = self.residuals(&x, &lists);
                Codec::Scalar(ScalarQuantizer::train(&res, self.dim, config)?)
            }
            InnerSpec::Product { m, nbits } => {
                let lists = self.assign(&x);
                let res = self.residuals(&x, &lists);
                Codec::Product(ProductQuantizer::train(
                    &res,
                    self.dim,
                    *m,
                    *nbits,
                    self.seed ^ 0x9e37_79b9,
                )?)
            }
        };
        self.codec = Some(codec);
        // Re-training empties the index: old codes belong to the old quantizers.
        self.offsets = vec![0; self.nlist + 1];
        self.block_starts = vec![0; self.nlist + 1];
        self.codes = Slab::default();
        self.corr = Slab::default();
        self.raw = Slab::default();
        self.rows = Rows::default();
        self.invalidate_tables();
        Ok(())
    }

    fn add(&mut self, vectors: &[f32], ids: Option<&[u64]>) -> Result<()> {
        let n = check_add(self.dim, vectors, ids)?;
        self.codec()?;
        let x = self.prepare(vectors);
        let new_lists = self.assign(&x);
        let (new_codes, new_corr) = self.encode(&x, &new_lists)?;
        let mut lists = self.entry_lists();
        lists.extend_from_slice(&new_lists);
        let mut codes = self.entry_codes();
        codes.extend_from_slice(&new_codes);
        let mut corr = self.corr.to_vec();
        corr.extend_from_slice(&new_corr);
        let raw = if self.stores_raw() {
            let mut r = self.raw.to_vec();
            r.extend_from_slice(&x);
            r
        } else {
            Vec::new()
        };
        self.rows.push(n, ids);
        self.relayout(&lists, &codes, &corr, &raw, |_| true);
        Ok(())
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
        let codes = self.entry_codes();
        let corr = self.corr.to_vec();
        let raw = self.raw.to_vec();
        let live: Vec<bool> = (0..self.rows.len()).map(|r| self.rows.is_live(r)).collect();
        self.relayout(&lists, &codes, &corr, &raw, |r| live[r]);
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
        if matches!(codec, Codec::Flat) {
            return Ok(None);
        }
        let x = self.prepare(vectors);
        let lists = self.assign(&x);
        let res = self.residuals(&x, &lists);
        let mut dec = match codec {
            Codec::Scalar(sq) => sq.decode(&sq.encode(&res)?)?,
            Codec::Product(pq) => pq.decode(&pq.encode(&res)?)?,
            Codec::Flat => unreachable!("handled above"),
        };
        let d = self.dim;
        dec.par_chunks_mut(d)
            .zip(lists.par_iter())
            .for_each(|(v, &l)| {
                let c = &self.centroids[l as usize * d..(l as usize + 1) * d];
                v.iter_mut().zip(c).for_each(|(a, b)| *a += b);
            });
        Ok(Some(dec))
    }

    fn to_container(&self) -> Result<ContainerWriter<'_>> {
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
        w.section_vec("list_offsets", offsets);
        match codec {
            Codec::Flat => {}
            Codec::Scalar(sq) => crate::index::scalar::write_quantizer(&mut w, sq),
            Codec::Product(pq) => {
                w.section_f32("centroids", pq.centroids());
            }
        }
        if !self.codes.is_empty() {
            w.section(self.codes_section(), self.codes.to_vec());
        }
        self.rows.write(&mut w);
        if self.has_corr() {
            w.section_f32("corr", &self.corr);
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
            let mut ivf = Ivf::new("IVF16,Flat", dim, metric, false, 1).unwrap();
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
                let mut ivf = Ivf::new(spec, dim, metric, false, 2).unwrap();
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
        for spec in ["IVF16,PQ8", "IVF16,PQ16x4fs"] {
            let mut ivf = Ivf::new(spec, dim, Metric::L2, false, 3).unwrap();
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
        let mut ivf = Ivf::new("IVF8,PQ16x4fs", dim, Metric::L2, false, 4).unwrap();
        ivf.train(&data).unwrap();
        ivf.add(&data, None).unwrap();
        let Some(Codec::Product(pq)) = &ivf.codec else {
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
        let mut ivf = Ivf::new("IVF64,PQ8", dim, Metric::L2, false, 5).unwrap();
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
        let r1 = recall(&ivf, 1);
        let r8 = recall(&ivf, 8);
        let r64 = recall(&ivf, 64);
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
        let mut ivf = Ivf::new("IVF4,PQ8", dim, Metric::L2, false, 6).unwrap();
        ivf.train(&data).unwrap();
        ivf.add(&data, None).unwrap();
        let mut w = ivf.to_container().unwrap();
        w.replace_section(CODES8_SECTION, "codes", ivf.entry_codes());
        let c =
            Container::from_bytes("old.vq", w.to_bytes().unwrap(), OpenOptions::default()).unwrap();
        let old = Ivf::from_container(&c).unwrap();
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
                let mut ivf = Ivf::new(spec, dim, metric, true, 6).unwrap();
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
                let mut loaded = Ivf::from_container(&c).unwrap();
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
                let mut again = Ivf::from_container(&c).unwrap();
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
        assert!(Ivf::new("IVF8,PQ5", 16, Metric::L2, false, 0).is_err());
        let mut ivf = Ivf::new("IVF64,SQ8", 4, Metric::L2, false, 0).unwrap();
        let e = ivf.train(&[0.0; 4 * 10]).unwrap_err().to_string();
        assert!(e.contains("64 lists"), "{e}");
        assert!(ivf.add(&[0.0; 4], None).is_err(), "untrained");
        let data = mixture(500, 4, 1);
        let mut ivf = Ivf::new("IVF4,SQ8", 4, Metric::L2, false, 0).unwrap();
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
