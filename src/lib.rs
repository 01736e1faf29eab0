//! # vecquant
//!
//! Quantized vector similarity search and model-weight quantization.
//!
//! A *codebook* maps real numbers (or sub-vectors) to small integer codes; everything in
//! this crate is built on trained codebooks.
//!
//! ## Module map
//!
//! | module | what lives there |
//! | --- | --- |
//! | [`data`] | `.fvecs`/`.ivecs`/`.bvecs`/`.npy` readers and writers, seeded generators, exact ground truth by GEMM, data-set folders |
//! | [`vectors`], [`metric`] | [`VectorSet`] (row-major f32) and [`Metric`] (L2, inner product, cosine) |
//! | [`quant`] | the quantizers: [`quant::scalar`] (SQ), [`quant::product`] (PQ), [`quant::opq`] (OPQ rotations), [`quant::codebook`] (1-D level sets shared with the weight pipeline) — and [`quant::codec`], the **quantizer contract** ([`quant::codec::VectorCodec`]) every index kind uses them through |
//! | [`kmeans`] | seeded k-means (GEMM assignment, k-means++, hot start) for PQ, IVF and weight codebooks |
//! | [`index`] | the [`Index`] trait and its kinds: [`Flat`], [`index::Product`] (specialised flat scans), and the kinds generic over any codec — [`index::FlatCodes`] (flat SQ is [`index::Scalar`] = `FlatCodes<ScalarQuantizer>`), [`index::Ivf`], [`index::Hnsw`]; [`index::spec`] parses spec strings once into a typed [`index::spec::IndexSpec`] |
//! | [`store`] | the container file: header, 64-byte aligned CRC-checked sections, streaming atomic save, memory-mapped load |
//! | [`model`] | weight quantization: formats, absmax/zero-point, NF4, k-means codebooks, GGUF, GPTQ, SpQR, SmoothQuant, LLM.int8 |
//! | [`eval`] | recall, MSE and D(R), timed search, benchmark reports |
//! | [`serve`] | the HTTP search service (feature `server`) |
//! | `kernels` (crate-private) | SIMD hot loops with scalar references, one dispatch table per [`SimdLevel`] |
//!
//! ## Data flow
//!
//! ```text
//! vectors ─► VectorSet ─► IndexSpec ─► index kind ─► train: VectorCodec::train (on residuals under IVF)
//!                                                 └► add:   VectorCodec::encode (+ aux terms) ─► codes, ids
//! query ─► prepare (normalise, OPQ) ─► begin_query ─► per list: set_list + scan (flat/IVF)
//!                                                  └► per node: distance (HNSW) ─► top-k ─► re-rank ─► Neighbor
//! index ─► to_container ─► store (sections, CRC, atomic) ◄─► index::open (mmap)
//! ```
//!
//! A new quantizer is one module implementing [`quant::codec::VectorCodec`]: it then
//! has a flat scan, an inverted file and an HNSW graph (`FlatCodes<C>`, `Ivf<C>`,
//! `Hnsw<C>`) with ids, deletes, filters, re-ranking and files; naming it in spec
//! strings is one arm in [`index::spec`].
//!
//! Cargo features, both on by default: `cli` builds the `vecquant` command (clap,
//! progress bars, benchmark plots) and `server` the HTTP service (`serve`: axum, tokio).
//! With `default-features = false` the crate is the library alone, without any of them.
//!
//! ```
//! use vecquant::prelude::*;
//! use vecquant::data::generate::gaussian;
//!
//! let base = gaussian(1000, 16, 0.0, 1.0, 1).unwrap();
//! let mut index = Flat::new(16, Metric::L2);
//! index.add(base.as_slice(), None).unwrap();
//! let hits = index.search(base.row(7), &SearchParams::with_k(3)).unwrap();
//! assert_eq!(hits[0].id, 7);
//! ```

#![deny(missing_docs)]

pub mod data;
pub mod error;
pub mod eval;
pub mod index;
pub(crate) mod kernels;
pub mod kmeans;
pub(crate) mod linalg;
pub mod metric;
pub mod model;
pub mod quant;
pub(crate) mod rng;
#[cfg(feature = "server")]
pub mod serve;
pub mod store;
pub mod threads;
pub mod topk;
pub mod vectors;

/// The kernels, for the criterion benchmarks in `benches/` (separate crates, which
/// cannot see `pub(crate)` items). Not part of the API: no stability promise, hidden
/// from the documentation.
#[doc(hidden)]
pub mod __bench {
    pub use crate::kernels::{bits, bits_ext, bits_fs, dot, fastscan, l2_sq, pq8, scalar, sq};
}

pub use error::{Error, Result};
pub use index::{Flat, Index, IndexExt, SearchParams};
pub use kernels::{SimdLevel, simd_level};
pub use metric::Metric;
pub use topk::Neighbor;
pub use vectors::VectorSet;

/// The README's Rust snippets, compiled as doctests so they keep up with the API.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
mod readme {}

/// The names most programs need.
pub mod prelude {
    pub use crate::error::{Error, Result};
    pub use crate::index::{self, Flat, IdFilter, Index, IndexBuilder, IndexExt, SearchParams};
    pub use crate::metric::Metric;
    pub use crate::model::io::Tensor;
    pub use crate::model::{
        QuantizedModel, Scheme, SchemeOptions, quantize_model, quantize_tensor,
    };
    pub use crate::topk::Neighbor;
    pub use crate::vectors::VectorSet;
}
