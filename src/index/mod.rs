//! Indexes: the [`Index`] trait and its kinds.
//!
//! The vocabulary is FAISS's: `Flat` (exact), `SQ8`/`SQ4` (scalar quantizer), `PQ{M}`
//! (product quantizer), `PQ{M}x4fs` (4-bit fast-scan), `IVF{nlist},...`, `HNSW{M},...`.
//! Every index is `Send + Sync`, searching takes `&self`, and results are
//! [`Neighbor`]s sorted best first with ties broken by id.

/// The [`Index`] accessors every built-in kind answers from the same three fields (`dim`,
/// `metric` and the `rows` table of ids and tombstones); used inside each `impl Index`.
macro_rules! row_accessors {
    () => {
        fn dim(&self) -> usize {
            self.dim
        }
        fn metric(&self) -> crate::metric::Metric {
            self.metric
        }
        fn len(&self) -> usize {
            self.rows.live()
        }
    };
}

/// The [`Index`] search entry points of a [`GroupSearch`] kind (single, filtered, batch
/// and counted batch search go through its `search_group`); used inside its
/// `impl Index`.
macro_rules! grouped_search {
    () => {
        fn search_filtered(
            &self,
            query: &[f32],
            params: &crate::index::SearchParams,
            filter: &crate::index::IdFilter<'_>,
        ) -> crate::error::Result<Vec<crate::Neighbor>> {
            crate::index::grouped_single(self, query, params, filter)
        }
        fn search_batch(
            &self,
            queries: &[f32],
            params: &crate::index::SearchParams,
        ) -> crate::error::Result<Vec<Vec<crate::Neighbor>>> {
            crate::index::grouped_batch_counted(self, queries, params).map(|(r, _)| r)
        }
        fn search_batch_counted(
            &self,
            queries: &[f32],
            params: &crate::index::SearchParams,
        ) -> crate::error::Result<crate::index::CountedResults> {
            crate::index::grouped_batch_counted(self, queries, params).map(|(r, c)| (r, Some(c)))
        }
    };
}

pub(crate) mod checks;
pub mod codes;
pub mod flat;
pub mod hnsw;
pub mod ivf;
pub mod product;
pub(crate) mod rows;
pub mod scalar;
pub mod spec;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use std::path::Path;

use crate::error::{Error, Result};
use crate::metric::Metric;
use crate::store::{Container, ContainerWriter};
use crate::topk::Neighbor;
use crate::vectors::check_query;

pub use checks::{MAX_NORM_SQ, MAX_TERM};
pub use codes::FlatCodes;
pub use flat::Flat;
pub use hnsw::Hnsw;
pub use ivf::Ivf;
pub use product::Product;
pub use scalar::Scalar;
pub use spec::IndexBuilder;

/// Per-query search parameters. Each index kind reads the ones that apply to it.
///
/// Built from [`SearchParams::new`] (or [`Default`]) and the builder methods, so new
/// parameters can be added without breaking callers:
///
/// ```
/// use vecquant::SearchParams;
/// let p = SearchParams::new(10).nprobe(16).ef_search(128).rerank(100);
/// assert_eq!((p.k, p.nprobe, p.ef_search, p.rerank), (10, 16, 128, 100));
/// assert_eq!(SearchParams::with_k(5), SearchParams::default().k(5));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct SearchParams {
    /// Number of neighbours to return.
    pub k: usize,
    /// IVF: number of inverted lists probed.
    pub nprobe: usize,
    /// HNSW: size of the dynamic candidate list during search.
    pub ef_search: usize,
    /// Quantized indexes: re-score this many best candidates with the exact vectors
    /// (0 = no re-ranking). Needs the raw vectors to have been kept.
    pub rerank: usize,
    /// Error-bound re-ranking (codes with error bounds: RaBitQ…, flat or IVF): the scan
    /// keeps the `rerank` candidates with the smallest *lower bounds* of their distances,
    /// and re-scores them exactly in that order only while a candidate's lower bound
    /// beats the current k-th exact distance — so `rerank` is the most re-scored, and
    /// most queries re-score far fewer ([`Index::search_batch_counted`] counts them).
    #[serde(default)]
    pub adaptive_rerank: bool,
}

impl Default for SearchParams {
    fn default() -> Self {
        SearchParams {
            k: 10,
            nprobe: 8,
            ef_search: 64,
            rerank: 0,
            adaptive_rerank: false,
        }
    }
}

impl SearchParams {
    /// Default parameters with `k` results.
    pub fn new(k: usize) -> Self {
        SearchParams {
            k,
            ..Default::default()
        }
    }

    /// Default parameters with `k` results (the same as [`SearchParams::new`]).
    pub fn with_k(k: usize) -> Self {
        Self::new(k)
    }

    /// Sets the number of neighbours returned.
    #[must_use]
    pub fn k(mut self, k: usize) -> Self {
        self.k = k;
        self
    }

    /// Sets the number of IVF lists probed.
    #[must_use]
    pub fn nprobe(mut self, nprobe: usize) -> Self {
        self.nprobe = nprobe;
        self
    }

    /// Sets the HNSW candidate-list size.
    #[must_use]
    pub fn ef_search(mut self, ef_search: usize) -> Self {
        self.ef_search = ef_search;
        self
    }

    /// Sets how many candidates are re-scored with the exact vectors (0 = none).
    #[must_use]
    pub fn rerank(mut self, rerank: usize) -> Self {
        self.rerank = rerank;
        self
    }

    /// Sets error-bound (adaptive) re-ranking, with `rerank` as the most candidates
    /// re-scored (see [`SearchParams::adaptive_rerank`]).
    #[must_use]
    pub fn adaptive_rerank(mut self, on: bool) -> Self {
        self.adaptive_rerank = on;
        self
    }
}

/// Largest `k` a search accepts (guards against absurd allocations).
pub const MAX_K: usize = 1 << 20;

/// A searchable collection of vectors.
///
/// ```
/// use vecquant::{Index, Flat, Metric, SearchParams};
/// let mut index = Flat::new(2, Metric::L2);
/// index.add(&[0.0, 0.0, 1.0, 1.0, 5.0, 5.0], None).unwrap();
/// let hits = index.search(&[0.9, 0.8], &SearchParams::with_k(2)).unwrap();
/// assert_eq!(hits[0].id, 1);
/// assert_eq!(hits[1].id, 0);
/// ```
pub trait Index: Send + Sync {
    /// The spec string this index was built from (`"Flat"`, `"SQ8"`, ...).
    fn spec(&self) -> String;
    /// Vector dimension.
    fn dim(&self) -> usize;
    /// The metric.
    fn metric(&self) -> Metric;
    /// Number of (live, not deleted) vectors held.
    fn len(&self) -> usize;
    /// Whether no vectors are held.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Bytes of encoded data per vector (the code size; ids and optional raw vectors for
    /// re-ranking are excluded — see [`Index::memory_bytes`]).
    fn bytes_per_vector(&self) -> f64;
    /// Total bytes held in memory: codes, ids, codebooks, raw vectors if kept.
    fn memory_bytes(&self) -> usize;
    /// Whether the index must be trained before vectors are added.
    fn is_trained(&self) -> bool {
        true
    }
    /// Trains the quantizer on a sample (no-op for indexes that need no training).
    fn train(&mut self, _sample: &[f32]) -> Result<()> {
        Ok(())
    }
    /// Adds row-major `vectors` with `ids` (default: consecutive from [`Index::next_id`]).
    fn add(&mut self, vectors: &[f32], ids: Option<&[u64]>) -> Result<()>;
    /// Adds row-major `vectors` with `ids`, replacing the live vectors that hold any of
    /// these ids: the old rows are deleted once the new ones are in, so the search
    /// never returns an old vector again and the count grows only by the new ids.
    /// Returns how many live vectors were replaced.
    ///
    /// # Errors
    /// What [`Index::add`] refuses, and [`Error::DuplicateId`] when `ids` repeats an id;
    /// the built-in kinds then leave the index unchanged.
    fn upsert(&mut self, vectors: &[f32], ids: &[u64]) -> Result<usize> {
        check_add(self.dim(), vectors, Some(ids))?;
        rows::check_batch_ids(ids)?;
        let replaced = self.delete(ids)?;
        self.add(vectors, Some(ids))?;
        Ok(replaced)
    }
    /// [`Index::add`], calling `progress(done, total)` as it goes: kinds whose `add` takes
    /// long (HNSW, which inserts the `total` new vectors into its graph) report after each
    /// slice of insertions; the others once, when done. The last call has `done == total`.
    fn add_with_progress(
        &mut self,
        vectors: &[f32],
        ids: Option<&[u64]>,
        progress: &(dyn Fn(usize, usize) + Sync),
    ) -> Result<()> {
        self.add(vectors, ids)?;
        let n = vectors.len() / self.dim().max(1);
        progress(n, n);
        Ok(())
    }
    /// Checks that vectors with these ids could be added: no id repeats and none is
    /// held by a live vector (what [`Index::add`] checks before it changes anything).
    ///
    /// # Errors
    /// [`Error::DuplicateId`] naming the first colliding id, its position in `ids` and
    /// how many of them collide.
    fn check_ids(&self, ids: &[u64]) -> Result<()>;
    /// The id the next vector added without explicit ids gets: one past every id the
    /// index holds (deleted ones included) and at least its row count, so default ids
    /// never collide — also after explicit ids or [`Index::compact`]. `None` when that
    /// would pass `u64::MAX`.
    fn next_id(&self) -> Option<u64>;
    /// Adds the vectors a stream yields, chunk after chunk: `next` returns the next chunk
    /// (row-major) or `None` after the last. `ids` are the ids of every row the stream
    /// will yield, in order (default: consecutive from [`Index::next_id`]); the result
    /// is that of one [`Index::add`] per chunk with its share of them, and row numbers
    /// in the errors count from the stream's first row. IVF and flat-code indexes,
    /// whose `add` lays out (IVF) or re-packs (fast-scan codes) every stored entry
    /// again, encode each chunk as it comes and lay out once at the end, so a streamed
    /// build or add of `c` chunks copies the index once, not `c` times; the others add
    /// each chunk as it comes. Given `ids` are checked ([`Index::check_ids`]) before the
    /// first chunk is read.
    ///
    /// # Errors
    /// What `next` or [`Index::add`] returns; [`Error::Param`] when the stream yields
    /// more or fewer rows than `ids` holds. An IVF or flat-code index is then unchanged;
    /// the others keep the chunks added before the failing one.
    fn add_stream(
        &mut self,
        ids: Option<&[u64]>,
        next: &mut dyn FnMut() -> Result<Option<Vec<f32>>>,
    ) -> Result<()> {
        if let Some(ids) = ids {
            self.check_ids(ids)?;
        }
        let dim = self.dim();
        drive_stream(dim, ids, next, |v, chunk_ids| self.add(v, chunk_ids)).map(|_| ())
    }
    /// [`Index::upsert`] of the vectors a stream yields (see [`Index::add_stream`]), with
    /// `ids` those of every row of the stream: the live vectors holding any of them are
    /// deleted once the new ones are in; returns how many were. IVF and flat-code
    /// indexes take the stream in one piece (one layout, ids checked before the first
    /// chunk is read, an id repeated anywhere in the stream refused); the others upsert
    /// each chunk as it comes.
    ///
    /// # Errors
    /// As [`Index::add_stream`].
    fn upsert_stream(
        &mut self,
        ids: &[u64],
        next: &mut dyn FnMut() -> Result<Option<Vec<f32>>>,
    ) -> Result<usize> {
        let dim = self.dim();
        let mut replaced = 0;
        drive_stream(dim, Some(ids), next, |v, chunk_ids| {
            replaced += self.upsert(v, chunk_ids.unwrap_or_default())?;
            Ok(())
        })?;
        Ok(replaced)
    }
    /// Deletes the vectors with these ids (a tombstone per vector: every search skips
    /// them at once; [`Index::compact`] frees their space). Unknown ids are ignored;
    /// returns how many vectors were newly deleted.
    fn delete(&mut self, ids: &[u64]) -> Result<usize>;
    /// Number of deleted vectors still occupying space.
    fn deleted(&self) -> usize;
    /// The structural parameters the index was built with, as (name, value) lines for
    /// `inspect` (IVF: `nlist`; HNSW: `M`, `ef_construction`, layers; whether raw vectors
    /// are kept). Empty for kinds whose spec says everything.
    fn build_params(&self) -> Vec<(&'static str, String)> {
        Vec::new()
    }
    /// Drops deleted vectors from memory (and from the file at the next save); returns
    /// how many were dropped.
    fn compact(&mut self) -> Result<usize>;
    /// The `params.k` nearest neighbours of one query.
    fn search(&self, query: &[f32], params: &SearchParams) -> Result<Vec<Neighbor>>;
    /// Encodes then decodes row-major `vectors` with the index's quantizer, giving the
    /// reconstruction the codes stand for (used for MSE and MSE/D(R) reports). `None` for
    /// kinds that store vectors exactly.
    fn reconstruct(&self, vectors: &[f32]) -> Result<Option<Vec<f32>>> {
        let _ = vectors;
        Ok(None)
    }
    /// The stored vectors with these ids, row-major (`ids.len() × dim`), decoded from
    /// what the index holds (FAISS's `reconstruct_batch`): the vectors themselves where
    /// the index keeps them exactly (`Flat`, `IVF…,Flat`, `HNSW…,Flat`), else the
    /// quantizer's reconstruction of their codes — under IVF the list centroid plus the
    /// decoded residual, OPQ's rotation undone. Vectors come back as the index stores
    /// them: normalised under cosine.
    ///
    /// # Errors
    /// [`Error::UnknownId`] naming the first id no live vector holds; an untrained index;
    /// kinds outside this crate that do not decode.
    fn reconstruct_ids(&self, ids: &[u64]) -> Result<Vec<f32>> {
        let _ = ids;
        Err(Error::param(
            "reconstruct",
            format!(
                "index kind `{}` does not decode its stored vectors",
                self.spec()
            ),
        ))
    }
    /// Serialises the index into a container (see [`crate::store`]).
    fn to_container(&self) -> Result<ContainerWriter<'_>>;
    /// Saves the index atomically to `path`. Call it as `index.save(path)` ([`IndexExt`],
    /// in the prelude), which takes any `impl AsRef<Path>`; this object-safe form is the
    /// one kinds override.
    ///
    /// # Errors
    /// [`Error::Io`] if the file cannot be written.
    fn save_to(&self, path: &Path) -> Result<()> {
        self.to_container()?.save(path)
    }
    /// The `params.k` nearest neighbours among the vectors whose id `filter` accepts
    /// (FAISS's `IDSelector`, hnsw_rs's `FilterT`). Returns `k` results whenever `k`
    /// eligible vectors exist.
    ///
    /// The default works for every kind: it searches with a growing `k` and drops
    /// rejected ids until `k` accepted results are found or the whole index has been
    /// returned. For exhaustive kinds that is exactly the brute-force answer restricted to
    /// the subset; kinds that can test ids inside their scan override it.
    fn search_filtered(
        &self,
        query: &[f32],
        params: &SearchParams,
        filter: &IdFilter<'_>,
    ) -> Result<Vec<Neighbor>> {
        check_single(self.dim(), self.len(), query, params)?;
        let mut k = params.k.saturating_mul(2).max(16);
        loop {
            let p = SearchParams { k, ..*params };
            let all = self.search(query, &p)?;
            let exhausted = all.len() < k || k >= self.len();
            let mut kept: Vec<Neighbor> =
                all.into_iter().filter(|n| filter.accepts(n.id)).collect();
            if kept.len() >= params.k || exhausted || k >= MAX_K {
                kept.truncate(params.k);
                return Ok(kept);
            }
            k = k.saturating_mul(4).min(self.len().max(1)).min(MAX_K);
        }
    }
    /// Searches many row-major queries, in parallel across queries.
    fn search_batch(&self, queries: &[f32], params: &SearchParams) -> Result<Vec<Vec<Neighbor>>> {
        check_batch_search(queries, self.dim(), self.len(), params)?;
        let res: Vec<Vec<Neighbor>> = queries
            .par_chunks(self.dim())
            .enumerate()
            .map(|(i, q)| self.search(q, params).map_err(|e| at_query(e, i)))
            .collect::<Result<_>>()?;
        checks::check_results(&res, 0)?;
        Ok(res)
    }
    /// [`Index::search_batch`], also returning how many candidates each query re-scored
    /// with the exact vectors (`None` for kinds that do not count them; all zeros without
    /// re-ranking). With [`SearchParams::adaptive_rerank`] this is where error-bound
    /// re-ranking shows its saving against a fixed `rerank`.
    ///
    /// # Errors
    /// As [`Index::search_batch`].
    fn search_batch_counted(
        &self,
        queries: &[f32],
        params: &SearchParams,
    ) -> Result<CountedResults> {
        Ok((self.search_batch(queries, params)?, None))
    }
}

/// Results of a batch search with how many candidates each query re-scored exactly
/// (`None` where the kind does not count them): [`Index::search_batch_counted`].
pub type CountedResults = (Vec<Vec<Neighbor>>, Option<Vec<u32>>);

/// Which ids a filtered search may return.
///
/// ```
/// use vecquant::index::IdFilter;
/// let subset = IdFilter::from_ids(vec![9, 3, 5]);
/// assert!(subset.accepts(5) && !subset.accepts(4));
/// let even = IdFilter::Predicate(&|id| id % 2 == 0);
/// assert!(even.accepts(8));
/// ```
pub enum IdFilter<'a> {
    /// Every id.
    All,
    /// Only these ids (kept sorted for binary search).
    Ids(Vec<u64>),
    /// Ids for which the closure returns `true`.
    Predicate(&'a (dyn Fn(u64) -> bool + Sync)),
}

impl IdFilter<'_> {
    /// A filter accepting exactly `ids` (any order, duplicates allowed).
    pub fn from_ids(mut ids: Vec<u64>) -> Self {
        ids.sort_unstable();
        ids.dedup();
        IdFilter::Ids(ids)
    }

    /// Whether `id` may be returned.
    #[inline]
    pub fn accepts(&self, id: u64) -> bool {
        match self {
            IdFilter::All => true,
            IdFilter::Ids(v) => v.binary_search(&id).is_ok(),
            IdFilter::Predicate(f) => f(id),
        }
    }
}

/// Validates the parameters every search shares.
pub fn check_search(dim: usize, len: usize, params: &SearchParams) -> Result<()> {
    let _ = dim;
    if params.k == 0 {
        return Err(Error::param("k", "must be at least 1"));
    }
    if params.k > MAX_K {
        return Err(Error::param(
            "k",
            format!("{} exceeds the maximum of {MAX_K}", params.k),
        ));
    }
    if len == 0 {
        return Err(Error::EmptyIndex);
    }
    Ok(())
}

/// Validates a single query against an index: its dimension, finite values and a
/// squared norm within [`MAX_NORM_SQ`] (so no distance to it overflows).
pub fn check_single(dim: usize, len: usize, query: &[f32], params: &SearchParams) -> Result<()> {
    check_search(dim, len, params)?;
    check_query(query, dim)?;
    checks::check_norms(query, dim, "query", 0)
}

/// `inspect`'s words for whether an index keeps the raw vectors.
pub(crate) fn raw_kept(keep_raw: bool) -> String {
    if keep_raw {
        "kept (exact re-ranking)".into()
    } else {
        "not kept".into()
    }
}

/// Validates a batch of row-major queries (whole rows, finite, squared norms within
/// [`MAX_NORM_SQ`]); errors name the query's row. Returns the number of queries.
pub fn check_queries(queries: &[f32], dim: usize) -> Result<usize> {
    checks::check_vectors(queries, dim, "queries")
}

/// Neighbours (about 16 bytes each) a streamed batch holds at once: `vecquant search`
/// and [`crate::data::write_exact_ground_truth`] take more queries × `k` than this a
/// chunk of queries at a time.
pub const RESULT_BUDGET: usize = 1 << 24;

/// Validates a batch search: the parameters ([`check_search`]), the queries
/// ([`check_queries`]) and that their results fit in memory ([`check_result_memory`]:
/// up to `min(k, len)` neighbours per query). Returns the number of queries.
///
/// # Errors
/// As those three.
pub fn check_batch_search(
    queries: &[f32],
    dim: usize,
    len: usize,
    params: &SearchParams,
) -> Result<usize> {
    check_search(dim, len, params)?;
    let nq = check_queries(queries, dim)?;
    check_result_memory(nq, params.k.min(len), std::mem::size_of::<Neighbor>())?;
    Ok(nq)
}

/// `Err` when `nq` queries' results of `per_query` entries of `bytes` bytes each would
/// take more than this machine's physical memory (or more bytes than it can address):
/// such a batch is refused before any work, where allocating its results would abort the
/// process or wake the OOM killer. Unchecked where the machine's memory is unknown
/// (only the addressable size is then).
///
/// # Errors
/// [`Error::InvalidParameter`] (`k`) giving the size, the machine's memory and what to
/// do instead.
pub fn check_result_memory(nq: usize, per_query: usize, bytes: usize) -> Result<()> {
    let need = nq
        .checked_mul(per_query)
        .and_then(|n| n.checked_mul(bytes))
        .filter(|&b| b <= isize::MAX as usize)
        .map(|b| b as u64);
    // (Under a gigabyte fits any machine this runs on: no need to ask.)
    let memory = match need {
        Some(b) if b <= 1 << 30 => None,
        _ => crate::data::memory_total(),
    };
    match crate::data::memory_shortfall(need, memory) {
        Some(why) => Err(Error::param(
            "k",
            format!(
                "the results of {nq} queries × {per_query} neighbours {why}: search the \
                 queries in smaller batches (`vecquant search` streams them) or ask for \
                 fewer neighbours"
            ),
        )),
        None => Ok(()),
    }
}

/// An error of the single search of query `i` of a batch, renumbered to that query.
pub(crate) fn at_query(e: Error, i: usize) -> Error {
    match e {
        Error::TooLarge {
            context,
            row: 0,
            message,
        } => Error::TooLarge {
            context,
            row: i,
            message,
        },
        Error::NonFinite {
            context,
            row: 0,
            col,
            value,
        } => Error::NonFinite {
            context,
            row: i,
            col,
            value,
        },
        e => e,
    }
}

/// Validates vectors and ids passed to `add`, returning the number of vectors: whole
/// rows, finite values, squared norms within [`MAX_NORM_SQ`] ([`Error::TooLarge`] naming
/// the row), and as many ids as vectors.
pub fn check_add(dim: usize, vectors: &[f32], ids: Option<&[u64]>) -> Result<usize> {
    let n = checks::check_vectors(vectors, dim, "add")?;
    if let Some(ids) = ids
        && ids.len() != n
    {
        return Err(Error::param(
            "ids",
            format!("{} ids given for {n} vectors", ids.len()),
        ));
    }
    Ok(n)
}

/// The [`Index`] methods every kind answers from its `rows` field ([`rows::Rows`]):
/// `next_id`, `check_ids`, `delete` and `deleted` — one definition instead of a copy in
/// each kind's `impl Index`.
macro_rules! rows_methods {
    () => {
        fn next_id(&self) -> Option<u64> {
            self.rows.next_id()
        }
        fn check_ids(&self, ids: &[u64]) -> $crate::error::Result<()> {
            self.rows.admit(ids.len(), Some(ids), false).map(|_| ())
        }
        fn delete(&mut self, ids: &[u64]) -> $crate::error::Result<usize> {
            Ok(self.rows.delete(ids))
        }
        fn deleted(&self) -> usize {
            self.rows.deleted()
        }
    };
}
pub(crate) use rows_methods;

/// The ids and the chunks of a streamed add or upsert of an index that lays itself out
/// once (IVF, flat codes): given `ids` are admitted by `rows` (replacing with
/// `replace`) before any chunk is read, each chunk is checked ([`check_add`]) and
/// handed to `take`, and default ids are admitted for the rows the stream yielded.
/// Returns the rows taken and the live rows they replace; `rows` is not changed, so
/// the caller lays out and pushes the rows once, and an error leaves it all as it was.
///
/// # Errors
/// What [`rows::Rows::admit`], `next`, `check_add` or `take` returns, with the errors of
/// [`drive_stream`].
pub(crate) fn admit_stream(
    rows: &rows::Rows,
    dim: usize,
    ids: Option<&[u64]>,
    replace: bool,
    next: &mut dyn FnMut() -> Result<Option<Vec<f32>>>,
    mut take: impl FnMut(&[f32]) -> Result<()>,
) -> Result<(usize, Vec<usize>)> {
    let admitted = ids
        .map(|ids| rows.admit(ids.len(), Some(ids), replace))
        .transpose()?;
    let total = drive_stream(dim, ids, next, |v, chunk_ids| {
        check_add(dim, v, chunk_ids)?;
        take(v)
    })?;
    let replaced = match admitted {
        Some(r) => r,
        None => rows.admit(total, None, false)?,
    };
    Ok((total, replaced))
}

/// Runs the stream of an [`Index::add_stream`]: each chunk goes to `take` with its
/// share of `ids` (an error's rows then count from the stream's first row), and the
/// stream must yield exactly as many rows as `ids` holds. Returns the rows taken.
///
/// # Errors
/// What `next` or `take` returns; [`Error::Param`] when the stream yields more or
/// fewer rows than `ids` holds.
pub(crate) fn drive_stream(
    dim: usize,
    ids: Option<&[u64]>,
    next: &mut dyn FnMut() -> Result<Option<Vec<f32>>>,
    mut take: impl FnMut(&[f32], Option<&[u64]>) -> Result<()>,
) -> Result<usize> {
    let mut first = 0;
    while let Some(v) = next()? {
        let n = v.len() / dim.max(1);
        let chunk_ids = match ids {
            None => None,
            Some(ids) => Some(ids.get(first..first + n).ok_or_else(|| {
                Error::param(
                    "ids",
                    format!(
                        "{} ids given for a stream of at least {} vectors",
                        ids.len(),
                        first + n
                    ),
                )
            })?),
        };
        take(&v, chunk_ids).map_err(|e| e.rows_from(first))?;
        first += n;
    }
    match ids {
        Some(ids) if ids.len() != first => Err(Error::param(
            "ids",
            format!("{} ids given for a stream of {first} vectors", ids.len()),
        )),
        _ => Ok(first),
    }
}

/// Kinds that answer a group of queries in one pass (the group shares a coarse GEMM or
/// a chunk of codes in cache): single and batch search, with their checks, are written
/// once for all of them ([`grouped_single`], [`grouped_batch`]).
pub(crate) trait GroupSearch: Index {
    /// Queries per group in batch search.
    const QUERY_GROUP: usize;
    /// Queries per group for a batch of `nq`: by default an even share per thread
    /// (at least [`MIN_QUERY_GROUP`], at most [`GroupSearch::QUERY_GROUP`] — see
    /// [`share_per_thread`]).
    fn query_group(&self, nq: usize) -> usize {
        share_per_thread(nq, MIN_QUERY_GROUP, Self::QUERY_GROUP)
    }
    /// Answers a group of row-major queries (as given, not yet prepared): each query's
    /// neighbours and how many candidates it re-scored exactly.
    fn search_group(
        &self,
        queries: &[f32],
        params: &SearchParams,
        filter: &IdFilter<'_>,
    ) -> Result<Vec<(Vec<Neighbor>, u32)>>;
}

/// The smallest default query group: one pass of the four-query scans.
pub(crate) const MIN_QUERY_GROUP: usize = 4;

/// Queries per group for a batch of `nq` split across the pool's threads: an even share
/// per thread, within `min..=max`. One thread and batches of at least `max` per thread
/// get groups of `max` as before; a small batch is no longer one or two full groups on
/// some of the threads (20 queries in groups of 16 kept one thread on 16 and the other
/// on 4).
pub(crate) fn share_per_thread(nq: usize, min: usize, max: usize) -> usize {
    nq.div_ceil(rayon::current_num_threads().max(1))
        .clamp(min.min(max), max)
}

/// Checks a kind's `query_group` (called inside pools of 1, 2, 3 and 8 threads, for
/// batches of 1 to 10,000 queries) against the split [`share_per_thread`] promises:
/// groups within `min..=max`; at least as many groups as threads whenever the batch
/// has `min` queries per thread to give; and groups of `max` (or the whole batch, at
/// least `min`) on one thread or when every thread has `max` queries.
#[cfg(test)]
pub(crate) fn check_query_groups(
    name: &str,
    group: impl Fn(usize) -> usize + Sync,
    min: usize,
    max: usize,
) {
    for threads in [1usize, 2, 3, 8] {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        for nq in [1usize, 4, 7, 16, 20, 23, 50, 64, 100, 1000, 10_000] {
            let g = pool.install(|| group(nq));
            assert!(
                (min..=max).contains(&g),
                "{name} {threads} threads {nq}: {g}"
            );
            if nq >= threads * min {
                assert!(
                    nq.div_ceil(g) >= threads,
                    "{name}: {nq} queries in groups of {g} leave some of {threads} threads idle"
                );
            }
            if threads == 1 || nq >= threads * max {
                assert_eq!(g, max.min(nq.max(min)), "{name} {threads} threads {nq}");
            }
        }
    }
}

/// [`Index::search_filtered`] of a [`GroupSearch`] kind.
pub(crate) fn grouped_single<I: GroupSearch>(
    idx: &I,
    query: &[f32],
    params: &SearchParams,
    filter: &IdFilter<'_>,
) -> Result<Vec<Neighbor>> {
    check_single(idx.dim(), idx.len(), query, params)?;
    let r: Vec<Vec<Neighbor>> = idx
        .search_group(query, params, filter)?
        .into_iter()
        .map(|(r, _)| r)
        .collect();
    checks::check_results(&r, 0)?;
    Ok(r.into_iter().next().unwrap_or_default())
}

/// [`Index::search_batch_counted`] (and `search_batch`) of a [`GroupSearch`] kind:
/// groups in parallel.
pub(crate) fn grouped_batch_counted<I: GroupSearch>(
    idx: &I,
    queries: &[f32],
    params: &SearchParams,
) -> Result<(Vec<Vec<Neighbor>>, Vec<u32>)> {
    let dim = idx.dim();
    check_batch_search(queries, dim, idx.len(), params)?;
    let group = idx.query_group(queries.len() / dim.max(1)).max(1);
    let groups: Vec<Vec<(Vec<Neighbor>, u32)>> = queries
        .par_chunks(dim * group)
        .map(|g| idx.search_group(g, params, &IdFilter::All))
        .collect::<Result<_>>()?;
    let (res, counts): (Vec<Vec<Neighbor>>, Vec<u32>) = groups.into_iter().flatten().unzip();
    checks::check_results(&res, 0)?;
    Ok((res, counts))
}

/// How deep a quantized scan goes for `params`: `(re-rank, depth)` — the best
/// `max(rerank, k)` candidates when re-ranking, else `k`. `exact` kinds never re-rank;
/// re-ranking without kept raw vectors is an error naming the spec, and so is adaptive
/// re-ranking on codes without error bounds (`bounds`) or without a `rerank` cap.
pub(crate) fn scan_depth(
    params: &SearchParams,
    exact: bool,
    has_raw: bool,
    bounds: bool,
    spec: &str,
) -> Result<(bool, usize)> {
    if params.adaptive_rerank && !exact {
        if !bounds {
            return Err(Error::param(
                "adaptive_rerank",
                format!(
                    "error-bound re-ranking needs a scan over codes with error bounds \
                     (RaBitQ… or RaBitQfs…, flat or under IVF); {spec} is not one: use a \
                     fixed rerank"
                ),
            ));
        }
        if params.rerank == 0 {
            return Err(Error::param(
                "adaptive_rerank",
                format!(
                    "error-bound re-ranking of {spec} needs rerank R > 0: the most \
                     candidates it may re-score"
                ),
            ));
        }
    }
    let rerank = params.rerank > 0 && !exact;
    if rerank && !has_raw {
        return Err(rows::rerank_unavailable(spec));
    }
    Ok((
        rerank,
        if rerank {
            params.rerank.max(params.k)
        } else {
            params.k
        },
    ))
}

/// A codec trained on the whole of a training sample, as flat and graph indexes train
/// theirs: the sample checked (finite, whole rows of `dim`), prepared for `metric`
/// (normalised for cosine), then [`VectorCodec::train_whole`].
pub(crate) fn train_codec<C: crate::quant::codec::VectorCodec>(
    spec: &C::Spec,
    sample: &[f32],
    dim: usize,
    seed: u64,
    metric: crate::metric::Metric,
) -> Result<C> {
    checks::check_vectors(sample, dim, "training sample")?;
    let x = crate::vectors::prepared(sample, dim, metric);
    C::train_whole(spec, &x, dim, seed, metric)
}

/// Bytes per vector of a kind that stores the codes of `C` (or, for a codec that scores
/// the raw vectors, the vectors): the trained codec's code size, or before training
/// the size its spec decides ([`VectorCodec::spec_code_size`]; 0 when it does not).
/// (HNSW keeps its rows as encoded; it takes only codecs whose rows are their codes.)
///
/// [`VectorCodec::spec_code_size`]: crate::quant::codec::VectorCodec::spec_code_size
pub(crate) fn codec_bytes_per_vector<C: crate::quant::codec::VectorCodec>(
    codec: Option<&C>,
    spec: &C::Spec,
    dim: usize,
) -> f64 {
    if C::STORES_RAW {
        return 4.0 * dim as f64;
    }
    match codec {
        Some(c) => c.code_size() as f64,
        None => C::spec_code_size(spec, dim).map_or(0.0, |s| s as f64),
    }
}

/// The error for adding to or searching an index before it was trained.
pub(crate) fn untrained(spec: &str) -> Error {
    Error::param(
        "index",
        format!("{spec} must be trained before vectors are added or searched"),
    )
}

/// The dimension and row count a container's header declares, validated.
pub(crate) fn header_dims(c: &Container) -> Result<(usize, usize)> {
    let h = c.header();
    let dim = usize::try_from(h.dim)
        .ok()
        .filter(|&d| d > 0 && d <= 1 << 24)
        .ok_or_else(|| Error::format(c.path(), format!("invalid dimension {} in header", h.dim)))?;
    let n =
        usize::try_from(h.count).map_err(|_| Error::format(c.path(), "vector count overflows"))?;
    Ok((dim, n))
}

/// Opens an index file of any kind (memory-mapped, validated; see [`crate::store`]).
///
/// ```no_run
/// let index = vecquant::index::open("sift.vq").unwrap();
/// println!("{} vectors of dimension {}", index.len(), index.dim());
/// ```
pub fn open(path: impl AsRef<Path>) -> Result<Box<dyn Index>> {
    let c = Container::open(path.as_ref())?;
    from_container(&c)
}

impl dyn Index {
    /// Opens an index file of any kind: `<dyn Index>::open(path)` (the same as
    /// [`open`]).
    ///
    /// ```no_run
    /// use vecquant::prelude::*;
    /// let index = <dyn Index>::open("sq8.vq").unwrap();
    /// let hits = index.search(&vec![0.0; index.dim()], &SearchParams::with_k(10)).unwrap();
    /// ```
    pub fn open(path: impl AsRef<Path>) -> Result<Box<dyn Index>> {
        open(path)
    }

    /// Saves the index atomically to `path`: [`IndexExt::save`] for trait objects,
    /// callable without importing [`IndexExt`].
    ///
    /// # Errors
    /// [`Error::Io`] if the file cannot be written.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        self.save_to(path.as_ref())
    }
}

/// Methods of every [`Index`] that are generic and so cannot be in the object-safe trait
/// itself (in the prelude). `Box<dyn Index>` has the same methods inherently.
pub trait IndexExt: Index {
    /// Saves the index atomically to `path` (a temporary file, fsync, rename): the same
    /// call on a concrete kind and on a `Box<dyn Index>`.
    ///
    /// ```
    /// use vecquant::prelude::*;
    /// let dir = tempfile::tempdir().unwrap();
    /// let mut flat = Flat::new(2, Metric::L2);
    /// flat.add(&[1.0, 2.0], None).unwrap();
    /// flat.save(dir.path().join("flat.vq")).unwrap();
    /// let boxed: Box<dyn Index> = index::open(dir.path().join("flat.vq")).unwrap();
    /// boxed.save(dir.path().join("again.vq")).unwrap();
    /// ```
    ///
    /// # Errors
    /// [`Error::Io`] if the file cannot be written.
    fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        self.save_to(path.as_ref())
    }
}

impl<T: Index + ?Sized> IndexExt for T {}

/// Rebuilds an index from an opened container.
pub fn from_container(c: &Container) -> Result<Box<dyn Index>> {
    match c.header().kind.as_str() {
        "flat" => Ok(Box::new(Flat::from_container(c)?)),
        "sq" => Ok(Box::new(scalar::from_sq_container(c)?)),
        "pq" => Ok(Box::new(Product::from_container(c)?)),
        "ivf" => ivf::from_container(c),
        "hnsw" => hnsw::from_container(c),
        "codes" => codes::from_container(c),
        other => Err(Error::format(
            c.path(),
            format!(
                "unknown index kind `{other}` (this build reads: flat, sq, pq, ivf, hnsw, codes)"
            ),
        )),
    }
}
