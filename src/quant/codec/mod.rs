//! The quantizer contract: what an index kind needs from a vector quantizer.
//!
//! FAISS cuts the seam between a quantizer and its use with two per-query objects — a
//! *distance computer* (one query against any stored code: graph walks) and an
//! *inverted-list scanner* (one query against a contiguous run of codes, with the
//! list's terms set once per list). [`VectorCodec`] is that seam in one trait:
//!
//! | the index kind | calls |
//! | --- | --- |
//! | training, `add` | [`VectorCodec::train`], [`VectorCodec::encode`], [`VectorCodec::aux_terms`] |
//! | flat scans and IVF lists ([`crate::index::Ivf`]) | [`VectorCodec::begin_query`] once per query, [`VectorCodec::set_list`] once per list, [`VectorCodec::scan`] over a run of [`VectorCodec::pack`]ed codes |
//! | graph walks ([`crate::index::Hnsw`]) | [`VectorCodec::begin_query`], then [`VectorCodec::distance`] per node on row-major codes |
//! | files | [`VectorCodec::write`], [`VectorCodec::read`] |
//!
//! The index kinds are generic over the codec and monomorphised, so no `match` on the
//! kind of quantizer sits in a hot loop, and a new quantizer is one module implementing
//! this trait (plus one arm in the spec parser to name it). Implementations:
//! [`Raw`] (the vectors themselves, exact), [`ScalarQuantizer`] (every SQ
//! variant) and [`ProductQuantizer`] (8-bit PQ in blocks of 64, 4-bit fast-scan in
//! blocks of 32).
//!
//! Vectors reach a codec *prepared*: normalised for cosine, and as residuals to their
//! list's centroid under IVF. Distances a codec returns follow [`Metric`]: squared L2,
//! −⟨q, x⟩ for inner product, 1 − ⟨q, x⟩ for cosine (smaller is better).
//!
//! [`ScalarQuantizer`]: crate::quant::scalar::ScalarQuantizer
//! [`ProductQuantizer`]: crate::quant::product::ProductQuantizer

pub mod pq;
pub mod raw;
pub(crate) mod scan;
pub mod sq;

use std::fmt::Debug;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::metric::Metric;
use crate::quant::scalar::SqConfig;
use crate::store::{Container, ContainerWriter};
use crate::topk::TopK;

pub use pq::PqParams;
pub use raw::{Raw, RawSpec};
pub use sq::SqSpec;

/// The stored description of a built-in inner quantizer, as index files hold it (the
/// built-in codecs' specs serialise as this enum, so files written before the codec
/// contract still open).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum InnerSpec {
    /// The vectors themselves.
    Flat,
    /// A scalar quantizer (name as in its spec, e.g. `SQ8`).
    Scalar {
        /// The spec name (`SQ8`, `SQ4`, ...).
        name: String,
        /// The quantizer configuration.
        config: SqConfig,
    },
    /// A product quantizer.
    Product {
        /// Sub-quantizers.
        m: usize,
        /// Bits per sub-quantizer: 8, or 4 (fast-scan layout).
        nbits: u8,
    },
    /// A RaBitQ quantizer ([`crate::quant::rabitq`]).
    RaBitQ {
        /// Bits per dimension (1 = `RaBitQ`, 2..=9 = `RaBitQ{b}`).
        bits: u8,
    },
    /// A RaBitQ quantizer in the fast-scan layout (`RaBitQfs[{b}]`).
    RaBitQFs {
        /// Bits per dimension (1 = `RaBitQfs`, 2..=9 = `RaBitQfs{b}`).
        bits: u8,
    },
}

impl InnerSpec {
    /// The spec in index-factory words (`Flat`, `SQ8`, `PQ16`, `PQ32x4fs`).
    pub fn name(&self) -> String {
        match self {
            InnerSpec::Flat => "Flat".into(),
            InnerSpec::Scalar { name, .. } => name.clone(),
            InnerSpec::Product { m, nbits: 8 } => format!("PQ{m}"),
            InnerSpec::Product { m, .. } => format!("PQ{m}x4fs"),
            InnerSpec::RaBitQ { bits: 1 } => "RaBitQ".into(),
            InnerSpec::RaBitQ { bits } => format!("RaBitQ{bits}"),
            InnerSpec::RaBitQFs { bits: 1 } => "RaBitQfs".into(),
            InnerSpec::RaBitQFs { bits } => format!("RaBitQfs{bits}"),
        }
    }
}

/// What an index holds for its rows, as the codec reads it: codes (row-major for graph
/// nodes, [`VectorCodec::pack`]ed for runs), one auxiliary term per row when the codec
/// has them ([`VectorCodec::has_aux`]) and the raw vectors when kept.
#[derive(Clone, Copy, Debug)]
pub struct Stored<'a> {
    /// Codes.
    pub codes: &'a [u8],
    /// Per-row auxiliary terms (e.g. the scalar quantizer's correction term).
    pub aux: &'a [f32],
    /// The prepared vectors (`dim` per row), when the index keeps them.
    pub raw: &'a [f32],
}

/// One inverted list as [`VectorCodec::set_list`] sees it.
#[derive(Clone, Copy, Debug, Default)]
pub struct ListTerms<'a> {
    /// The list's centroid (`None` for a flat scan or a graph).
    pub centroid: Option<&'a [f32]>,
    /// The coarse distance of the query to the centroid: squared L2, or −⟨q, c⟩ for
    /// inner product and cosine.
    pub coarse: f32,
    /// This list's slice of the codec's precomputed per-list tables
    /// ([`VectorCodec::list_tables`]), when the index uses them.
    pub tables: Option<&'a [f32]>,
}

/// A trained vector quantizer, as the index kinds use it (see the module docs).
pub trait VectorCodec: Clone + Debug + Send + Sync + Sized + 'static {
    /// The typed description the codec is trained from (stored in the index file).
    type Spec: Clone + Debug + PartialEq + Send + Sync + Serialize + DeserializeOwned;
    /// One query's prepared state (tables, weights, constants), reused across queries.
    type Query: Default + Send;

    /// Trains on a prepared sample (row-major, `dim` columns).
    ///
    /// # Errors
    /// Invalid parameters for `dim` or an unusable sample.
    fn train(spec: &Self::Spec, sample: &[f32], dim: usize, seed: u64) -> Result<Self>;
    /// Trains for a flat or graph index under `metric` (codes of whole vectors, not of
    /// residuals to IVF centroids): codecs whose codes gain from a partition of their own
    /// (RaBitQ's local centres) take it here. Defaults to [`VectorCodec::train`].
    ///
    /// # Errors
    /// As [`VectorCodec::train`].
    fn train_whole(
        spec: &Self::Spec,
        sample: &[f32],
        dim: usize,
        seed: u64,
        metric: Metric,
    ) -> Result<Self> {
        let _ = metric;
        Self::train(spec, sample, dim, seed)
    }
    /// Checks a spec against a dimension before any work.
    ///
    /// # Errors
    /// The spec cannot be trained for `dim`.
    fn check(spec: &Self::Spec, dim: usize) -> Result<()>;
    /// The spec's name in index-factory words (`Flat`, `SQ8`, `PQ16`, `PQ32x4fs`).
    fn name(spec: &Self::Spec) -> String;
    /// Dimension of the vectors.
    fn dim(&self) -> usize;
    /// Bytes of a stored code per vector (0 when the codec keeps the raw vectors).
    fn code_size(&self) -> usize;
    /// [`VectorCodec::code_size`] of any quantizer trained for `spec` over `dim`-d
    /// vectors, when the spec alone decides it (`None` otherwise): what an index not
    /// yet trained reports as its bytes per vector.
    fn spec_code_size(_spec: &Self::Spec, _dim: usize) -> Option<usize> {
        None
    }
    /// Bytes of a row-major code as [`VectorCodec::encode`] returns it (a 4-bit PQ code
    /// keeps one index per byte until packed).
    fn row_size(&self) -> usize {
        self.code_size()
    }
    /// Bytes of the trained parameters (codebooks, ranges).
    fn params_bytes(&self) -> usize;
    /// Whether the codec scores the raw vectors themselves (no codes): the index then
    /// always keeps them, and training learns nothing.
    const STORES_RAW: bool = false;
    /// Whether each row carries one auxiliary `f32` term under `metric`.
    fn has_aux(&self, metric: Metric) -> bool {
        let _ = metric;
        false
    }

    /// Row-major codes of prepared vectors ([`VectorCodec::row_size`] bytes each).
    ///
    /// # Errors
    /// Vectors of the wrong dimension or not finite.
    fn encode(&self, x: &[f32]) -> Result<Vec<u8>>;
    /// The auxiliary terms of row-major `codes` (empty unless [`VectorCodec::has_aux`]);
    /// `base(i)` is the vector row `i` is a residual of (its IVF centroid), if any.
    fn aux_terms<'a>(
        &self,
        codes: &[u8],
        metric: Metric,
        base: &(dyn Fn(usize) -> Option<&'a [f32]> + Sync),
    ) -> Vec<f32> {
        let _ = (codes, metric, base);
        Vec::new()
    }
    /// Decodes row-major codes to vectors.
    ///
    /// # Errors
    /// Codes of the wrong length.
    fn decode(&self, codes: &[u8]) -> Result<Vec<f32>>;

    /// Rows per block of a packed run (1: runs are row-major).
    fn block(&self) -> usize {
        1
    }
    /// Bytes of a packed run of `n` rows.
    fn packed_len(&self, n: usize) -> usize {
        n.div_ceil(self.block()) * self.block() * self.row_size()
    }
    /// Packs row-major codes into a run for [`VectorCodec::scan`].
    fn pack(&self, rows: &[u8]) -> Vec<u8> {
        rows.to_vec()
    }
    /// The row-major codes of the first `n` rows of a packed run.
    fn unpack(&self, run: &[u8], n: usize) -> Vec<u8> {
        run[..n * self.row_size()].to_vec()
    }
    /// The row-major code of row `i` of a packed run (one block unpacked, not the run).
    fn unpack_row(&self, run: &[u8], i: usize) -> Vec<u8> {
        let b = self.block();
        let j = i % b;
        let mut rows = self.unpack(&run[self.packed_len(i - j)..], j + 1);
        rows.split_off(j * self.row_size())
    }
    /// Container section holding packed runs.
    fn runs_section(&self) -> &'static str {
        "codes"
    }

    /// Writes the trained parameters' sections.
    fn write<'a>(&'a self, w: &mut ContainerWriter<'a>);
    /// Reads what [`VectorCodec::write`] wrote.
    ///
    /// # Errors
    /// Missing, truncated or invalid sections.
    fn read(spec: &Self::Spec, c: &Container, dim: usize) -> Result<Self>;

    /// Per-list tables an inverted file can precompute from its coarse centroids
    /// (`nlist × dim`), [`VectorCodec::list_table_len`] values per list; `None` when the
    /// codec has none for `metric`.
    fn list_tables(&self, centroids: &[f32], metric: Metric) -> Option<Vec<f32>> {
        let _ = (centroids, metric);
        None
    }
    /// Values per list of [`VectorCodec::list_tables`] (0: none).
    fn list_table_len(&self) -> usize {
        0
    }

    /// Prepares a query `q` (already prepared like the stored vectors). `tables` are the
    /// precomputed list tables when an inverted file uses them, and `first_lists` the
    /// lists it will probe first (for prefetching).
    fn begin_query(
        &self,
        s: &mut Self::Query,
        q: &[f32],
        metric: Metric,
        tables: Option<&[f32]>,
        first_lists: &[usize],
    );
    /// Sets the list whose run [`VectorCodec::scan`] scans next (for flat scans and
    /// graphs, call it once with [`ListTerms::default`]).
    fn set_list(&self, s: &mut Self::Query, q: &[f32], metric: Metric, list: ListTerms<'_>);
    /// Scans a packed run of `n` rows: every row `i` whose distance beats the heap's
    /// threshold and that `ok(first + i)` accepts is pushed as `first + i`. Exact: the
    /// result equals pushing every accepted row with its distance.
    #[allow(clippy::too_many_arguments)]
    fn scan<F: Fn(usize) -> bool>(
        &self,
        s: &mut Self::Query,
        metric: Metric,
        run: Stored<'_>,
        n: usize,
        first: usize,
        heap: &mut TopK,
        ok: &F,
    );
    /// How many queries [`VectorCodec::scan_many`] scans together to advantage (1: it
    /// only loops over [`VectorCodec::scan`]). An inverted file with a batch of queries
    /// groups them by list for a codec that returns more than 1, so that each list's
    /// codes are read once for several queries.
    fn queries_per_scan(&self) -> usize {
        1
    }
    /// Exchanges what [`VectorCodec::begin_query`] set in two states, so that a
    /// caller holding many prepared queries can scan each with one of a few working
    /// states (whose per-list buffers stay in cache). Default: the whole states.
    fn swap_query(&self, a: &mut Self::Query, b: &mut Self::Query) {
        std::mem::swap(a, b);
    }
    /// [`VectorCodec::scan`] of one run for several queries, each with its own state
    /// (already [`VectorCodec::set_list`] to this run's list) and heap: the same result
    /// as scanning for each query in turn.
    #[allow(clippy::too_many_arguments)]
    fn scan_many<F: Fn(usize) -> bool>(
        &self,
        states: &mut [Self::Query],
        metric: Metric,
        run: Stored<'_>,
        n: usize,
        first: usize,
        heaps: &mut [TopK],
        ok: &F,
    ) {
        for (s, heap) in states.iter_mut().zip(heaps.iter_mut()) {
            self.scan(s, metric, run, n, first, heap, ok);
        }
    }
    /// Whether [`VectorCodec::set_bound_keys`] works: the codes carry error bounds of
    /// their distance estimates (error-bound re-ranking, [`crate::SearchParams::adaptive_rerank`]).
    fn has_error_bounds(&self) -> bool {
        false
    }
    /// Error-bound re-ranking: from now on [`VectorCodec::scan`] pushes each row with a
    /// lower bound of its distance (the estimate less its error bound) instead of the
    /// estimate. Only called when [`VectorCodec::has_error_bounds`].
    fn set_bound_keys(&self, s: &mut Self::Query, on: bool) {
        let _ = (s, on);
    }
    /// Distance of the query to row `row` of row-major `stored` (graph walks).
    fn distance(&self, s: &Self::Query, metric: Metric, stored: Stored<'_>, row: usize) -> f32;
    /// Hints the CPU to load row `row` of row-major `stored` (its first `bytes` bytes).
    fn prefetch(&self, stored: Stored<'_>, row: usize, bytes: usize);
}
