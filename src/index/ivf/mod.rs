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
use crate::index::checks::{check_terms, check_vectors};
use crate::index::rows::{Rows, gather_rows};
use crate::index::spec::BuildOptions;
use crate::index::{GroupSearch, IdFilter, Index, SearchParams, check_add, untrained};
use crate::kernels;
use crate::kmeans::{KMeans, KMeansConfig, nearest};
use crate::metric::Metric;
pub use crate::quant::codec::InnerSpec;
use crate::quant::codec::{PqParams, Raw, RawSpec, SqSpec, VectorCodec};
use crate::quant::product::ProductQuantizer;
use crate::quant::rabitq::{RaBitQ, RaBitQFs, RabitqFsSpec, RabitqSpec};
use crate::quant::scalar::ScalarQuantizer;
use crate::store::{Container, ContainerWriter, Slab};
use crate::topk::Neighbor;
use crate::vectors::{check_batch, check_finite};

mod layout;
mod search;
#[cfg(test)]
mod tests;

/// Queries per group in batch search (they share one coarse GEMM).
const QUERY_GROUP: usize = 64;
/// The smallest group a small batch is split into so that every thread gets a share.
const MIN_GROUP: usize = 8;
/// Bounds of the query groups of a codec that scans lists for several queries at once
/// ([`GroupSearch::query_group`]): large enough that several queries share a list,
/// small enough that the group's query tables stay in the L2 cache.
const MIN_LIST_GROUP: usize = 256;
const MAX_LIST_GROUP: usize = 1024;
/// Up to this many probes are picked by [`crate::kernels::sums::smallest_keys`]
/// instead of a selection among every list.
const FEW_PROBES: usize = crate::kernels::sums::FEW;
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
    let opts = BuildOptions {
        metric,
        keep_raw,
        seed,
        ..BuildOptions::default()
    };
    crate::index::spec::new_index_of_kind(spec, "ivf", dim, &opts)
}

/// An untrained inverted file of `nlist` lists over `inner`, behind an OPQ rotation of
/// `opq` sub-spaces if given.
///
/// # Errors
/// `nlist` out of range, or an inner quantizer or OPQ `M` that does not fit `dim`.
pub fn new_typed(
    nlist: usize,
    inner: InnerSpec,
    opq: Option<usize>,
    dim: usize,
    metric: Metric,
    keep_raw: bool,
    seed: u64,
) -> Result<Box<dyn Index>> {
    fn boxed<C: VectorCodec>(ivf: Ivf<C>, opq: Option<usize>) -> Result<Box<dyn Index>> {
        Ok(Box::new(match opq {
            Some(m) => ivf.with_opq(m)?,
            None => ivf,
        }))
    }
    match inner {
        InnerSpec::Flat => boxed(
            IvfFlat::new(nlist, RawSpec, dim, metric, keep_raw, seed)?,
            opq,
        ),
        InnerSpec::Scalar { name, config } => boxed(
            IvfScalar::new(nlist, SqSpec { name, config }, dim, metric, keep_raw, seed)?,
            opq,
        ),
        InnerSpec::Product { m, nbits } => boxed(
            IvfProduct::new(nlist, PqParams { m, nbits }, dim, metric, keep_raw, seed)?,
            opq,
        ),
        InnerSpec::RaBitQ { bits } => boxed(
            Ivf::<RaBitQ>::new(nlist, RabitqSpec { bits }, dim, metric, keep_raw, seed)?,
            opq,
        ),
        InnerSpec::RaBitQFs { bits } => boxed(
            Ivf::<RaBitQFs>::new(nlist, RabitqFsSpec { bits }, dim, metric, keep_raw, seed)?,
            opq,
        ),
    }
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
        InnerSpec::RaBitQ { .. } => Box::new(Ivf::<RaBitQ>::from_container(c)?),
        InnerSpec::RaBitQFs { .. } => Box::new(Ivf::<RaBitQFs>::from_container(c)?),
    })
}

#[derive(Serialize, Deserialize)]
struct StoredParams<S> {
    nlist: usize,
    inner: S,
    keep_raw: bool,
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
    /// `OPQ{M},IVF…`: the `M` of the OPQ rotation learned before the coarse quantizer,
    /// and the rotation (`dim × dim`, row-major, `x · R`) once trained.
    opq: Option<usize>,
    rotation: Option<Vec<f32>>,
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
            opq: None,
            rotation: None,
        })
    }

    /// Learns an OPQ rotation for `m` sub-quantizers before the coarse quantizer
    /// (FAISS's `OPQ{M},IVF{nlist},…`): every vector and query is rotated by it first.
    ///
    /// # Errors
    /// `m` does not divide the dimension.
    pub fn with_opq(mut self, m: usize) -> Result<Self> {
        if m == 0 || !self.dim.is_multiple_of(m) {
            return Err(Error::param(
                "OPQ",
                format!("OPQ{m}: M must divide d = {}", self.dim),
            ));
        }
        self.opq = Some(m);
        Ok(self)
    }

    /// The OPQ rotation (`dim × dim`, row-major), once trained.
    pub fn rotation(&self) -> Option<&[f32]> {
        self.rotation.as_deref()
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
        let opq = self.opq.map(|m| format!("OPQ{m},")).unwrap_or_default();
        format!("{opq}IVF{},{}", self.nlist, C::name(&self.inner))
    }

    fn codec(&self) -> Result<&C> {
        self.codec.as_ref().ok_or_else(|| untrained(&self.name()))
    }

    fn has_aux(&self) -> bool {
        self.codec.as_ref().is_some_and(|c| c.has_aux(self.metric))
    }

    fn stores_raw(&self) -> bool {
        self.keep_raw || C::STORES_RAW
    }

    /// Normalised (cosine) and rotated (OPQ) vectors.
    fn prepare(&self, x: &[f32]) -> Vec<f32> {
        let v = crate::vectors::prepared(x, self.dim, self.metric);
        match &self.rotation {
            Some(r) => crate::quant::opq::rotate(&v, r, self.dim),
            None => v,
        }
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

    /// Takes decoded rows back to the vectors' space: adds each row's list centroid
    /// (`lists`; `None` when the rows are the prepared vectors themselves) and undoes the
    /// OPQ rotation (R is orthogonal: Rᵀ is its inverse).
    fn unresidual(&self, mut v: Vec<f32>, lists: Option<&[u32]>) -> Vec<f32> {
        let d = self.dim;
        if let Some(lists) = lists {
            v.par_chunks_mut(d)
                .zip(lists.par_iter())
                .for_each(|(v, &l)| {
                    let c = &self.centroids[l as usize * d..(l as usize + 1) * d];
                    v.iter_mut().zip(c).for_each(|(a, b)| *a += b);
                });
        }
        match &self.rotation {
            Some(r) => crate::quant::opq::rotate(&v, &crate::quant::opq::transpose(r, d), d),
            None => v,
        }
    }

    /// `add` (`replace`: `upsert`): everything is checked before the index changes.
    fn add_rows(&mut self, vectors: &[f32], ids: Option<&[u64]>, replace: bool) -> Result<usize> {
        let n = check_add(self.dim, vectors, ids)?;
        let mut entries = self.entries()?;
        let replaced = self.rows.admit(n, ids, replace)?;
        self.encode_into(vectors, &mut entries)?;
        self.rows.push_replacing(n, ids, &replaced);
        self.relayout_entries(&entries)?;
        Ok(replaced.len())
    }

    /// The entries held, in entry order (what [`Ivf::relayout`] takes), to append new
    /// ones to.
    fn entries(&self) -> Result<Entries> {
        let codec = self.codec()?;
        Ok(Entries {
            lists: self.entry_lists(),
            codes: self.entry_codes(codec),
            aux: self.aux.to_vec(),
            raw: if self.stores_raw() {
                self.raw.to_vec()
            } else {
                Vec::new()
            },
        })
    }

    /// Assigns and encodes `vectors` (checked by the caller) and appends them to
    /// `entries`; on an error `entries` is unchanged.
    fn encode_into(&self, vectors: &[f32], entries: &mut Entries) -> Result<()> {
        let x = self.prepare(vectors);
        let lists = self.assign(&x);
        let (codes, aux) = self.encode(&x, &lists)?;
        check_terms(&aux, f64::MAX, "add", "auxiliary term", 0)?;
        entries.lists.extend_from_slice(&lists);
        entries.codes.extend_from_slice(&codes);
        entries.aux.extend_from_slice(&aux);
        if self.stores_raw() {
            entries.raw.extend_from_slice(&x);
        }
        Ok(())
    }

    /// Lays `entries` out as the index's lists.
    fn relayout_entries(&mut self, e: &Entries) -> Result<()> {
        self.relayout(&e.lists, &e.codes, &e.aux, &e.raw, |_| true)
    }

    /// `add_stream` (`replace`: `upsert_stream`): every chunk is assigned and encoded as
    /// it comes; the rows and the list layout change once, after the last chunk (one
    /// `add_rows` per chunk re-laid the whole index out each time: 17.5 million page
    /// faults in a 58-chunk 10M build). Given ids are checked before any chunk is read.
    /// Returns how many vectors were replaced.
    fn stream_rows(
        &mut self,
        ids: Option<&[u64]>,
        replace: bool,
        next: &mut dyn FnMut() -> Result<Option<Vec<f32>>>,
    ) -> Result<usize> {
        let mut entries = self.entries()?;
        let (total, replaced) =
            crate::index::admit_stream(&self.rows, self.dim, ids, replace, next, |v| {
                self.encode_into(v, &mut entries)
            })?;
        if total == 0 {
            return Ok(0);
        }
        self.rows.push_replacing(total, ids, &replaced);
        self.relayout_entries(&entries)?;
        Ok(replaced.len())
    }

    /// Drops the tables (they are rebuilt at the next search that uses them).
    fn invalidate_tables(&mut self) {
        self.precomputed = std::sync::OnceLock::new();
    }
}

/// An index's entries in entry order, as [`Ivf::relayout`] takes them: list numbers,
/// row-major codes, auxiliary terms and kept vectors.
struct Entries {
    lists: Vec<u32>,
    codes: Vec<u8>,
    aux: Vec<f32>,
    raw: Vec<f32>,
}

impl<C: VectorCodec> GroupSearch for Ivf<C> {
    const QUERY_GROUP: usize = QUERY_GROUP;
    /// An even share of the batch per thread (at least [`MIN_GROUP`]): a codec that
    /// scans several queries at once takes up to about `nlist` queries per group
    /// (within [`MIN_LIST_GROUP`]..=[`MAX_LIST_GROUP`]), so that about `nprobe` queries
    /// of a group probe each list; others up to [`QUERY_GROUP`]. (A batch of 50 queries
    /// was one group of 64 on one thread: 2 threads answered it no faster than one.)
    fn query_group(&self, nq: usize) -> usize {
        let max = match &self.codec {
            Some(c) if c.queries_per_scan() > 1 => self.nlist.clamp(MIN_LIST_GROUP, MAX_LIST_GROUP),
            _ => QUERY_GROUP,
        };
        crate::index::share_per_thread(nq, MIN_GROUP, max)
    }
    fn search_group(
        &self,
        queries: &[f32],
        params: &SearchParams,
        filter: &IdFilter<'_>,
    ) -> Result<Vec<(Vec<Neighbor>, u32)>> {
        Ivf::search_group(self, queries, params, filter)
    }
}

impl<C: VectorCodec> Index for Ivf<C> {
    fn spec(&self) -> String {
        self.name()
    }
    row_accessors!();
    /// The code size of a list entry (4·d for `Flat`); the list ids are counted in
    /// [`Index::memory_bytes`].
    fn bytes_per_vector(&self) -> f64 {
        crate::index::codec_bytes_per_vector(self.codec.as_ref(), &self.inner, self.dim)
    }
    fn memory_bytes(&self) -> usize {
        let params = self.codec.as_ref().map_or(0, C::params_bytes);
        self.codes.len()
            + self.rows.memory_bytes()
            + self.aux.len() * 4
            + self.raw.len() * 4
            + (self.centroids.len() + self.precomputed.get().map_or(0, Vec::len)) * 4
            + self.offsets.len() * 8
            + self.rotation.as_ref().map_or(0, |r| r.len() * 4)
            + params
    }
    fn is_trained(&self) -> bool {
        self.codec.is_some()
    }

    fn train(&mut self, sample: &[f32]) -> Result<()> {
        let n = check_vectors(sample, self.dim, "training sample")?;
        if n < self.nlist {
            return Err(Error::param(
                "training sample",
                format!(
                    "{n} vectors cannot train {} lists (IVF{} needs at least {} training vectors)",
                    self.nlist, self.nlist, self.nlist
                ),
            ));
        }
        // Until training succeeds the index is untrained (a failure part-way leaves no
        // codec paired with centroids it was not trained with).
        self.codec = None;
        self.rotation = None;
        if let Some(m) = self.opq {
            let x = crate::vectors::prepared(sample, self.dim, self.metric);
            let cfg = crate::quant::opq::OpqTraining::default();
            let opq = crate::quant::opq::train_opq(&x, self.dim, m, self.seed, &cfg)?;
            self.rotation = Some(opq.into_rotation());
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
        check_terms(
            &self.c_norms,
            crate::index::MAX_TERM,
            "training sample",
            "coarse centroid's squared norm",
            0,
        )?;
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
        self.add_rows(vectors, ids, false).map(|_| ())
    }

    fn upsert(&mut self, vectors: &[f32], ids: &[u64]) -> Result<usize> {
        self.add_rows(vectors, Some(ids), true)
    }

    fn add_stream(
        &mut self,
        ids: Option<&[u64]>,
        next: &mut dyn FnMut() -> Result<Option<Vec<f32>>>,
    ) -> Result<()> {
        self.stream_rows(ids, false, next).map(|_| ())
    }

    fn upsert_stream(
        &mut self,
        ids: &[u64],
        next: &mut dyn FnMut() -> Result<Option<Vec<f32>>>,
    ) -> Result<usize> {
        self.stream_rows(Some(ids), true, next)
    }

    crate::index::rows_methods!();

    fn build_params(&self) -> Vec<(&'static str, String)> {
        vec![
            ("nlist", self.nlist.to_string()),
            ("raw", crate::index::raw_kept(self.keep_raw)),
        ]
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

    grouped_search!();

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
        let dec = codec.decode(&codec.encode(&res)?)?;
        Ok(Some(self.unresidual(dec, Some(&lists))))
    }

    fn reconstruct_ids(&self, ids: &[u64]) -> Result<Vec<f32>> {
        let codec = self.codec()?;
        let rows = self.rows.rows_of(ids)?;
        if self.stores_raw() {
            return Ok(self.unresidual(gather_rows(&self.raw, self.dim, &rows), None));
        }
        // Rows are in list order: list `l` holds rows `offsets[l]..offsets[l + 1]`.
        let lists: Vec<u32> = rows
            .iter()
            .map(|&r| (self.offsets.partition_point(|&o| o <= r) - 1) as u32)
            .collect();
        let mut codes = Vec::with_capacity(rows.len() * codec.row_size());
        for (&r, &l) in rows.iter().zip(&lists) {
            let l = l as usize;
            let run = &self.codes[self.run_start(codec, l)..];
            codes.extend(codec.unpack_row(run, r - self.offsets[l]));
        }
        let dec = codec.decode(&codes)?;
        Ok(self.unresidual(dec, Some(&lists)))
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
        if let (Some(m), Some(r)) = (self.opq, &self.rotation) {
            w.section_vec("opq_m", vec![m as u64]);
            w.section_f32("opq_rotation", r);
        }
        codec.write(&mut w);
        if !self.codes.is_empty() {
            w.section(codec.runs_section(), &self.codes[..]);
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
