//! Model-weight quantization.

pub mod blockwise;
pub mod formats;
pub mod io;
pub mod kmeans_codebook;
pub mod linear;
pub mod pack;
