//! # vecquant
//!
//! Quantized vector similarity search and model-weight quantization.
//!
//! A *codebook* maps real numbers (or sub-vectors) to small integer codes; everything in
//! this crate is built on trained codebooks:
//!
//! - **Indexes** ([`index`]): exact [`Flat`] search, scalar and product quantizers,
//!   fast-scan, IVF and HNSW — all behind one [`Index`] trait that is `Send + Sync` and
//!   searched through `&self`.
//! - **Data** ([`data`]): `.fvecs`/`.ivecs`/`.bvecs`/`.npy` readers and writers that
//!   validate every record, seeded Gaussian generators and exact ground truth by GEMM.
//! - **Storage** ([`store`]): one memory-mapped, checksummed, crash-safe container file.
//! - **Evaluation** ([`eval`]): recall@1, k-recall@k, MSE and the Gaussian
//!   rate-distortion bound, QPS, benchmark reports.
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
    pub use crate::kernels::{dot, fastscan, l2_sq, pq8, scalar, sq};
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
