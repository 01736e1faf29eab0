//! Quantizers: the codebooks that turn floats into small integer codes.
//!
//! - [`codebook`]: one-dimensional level sets (uniform, normal-quantile, NF4,
//!   Lloyd-Max), shared by the vector quantizers and the weight pipeline.
//! - [`scalar`]: per-dimension 8-bit and 4-bit scalar quantization.
//! - [`product`]: product quantization (sub-space k-means codebooks, ADC/SDC tables).
//! - [`opq`]: the OPQ rotation learned for a product quantizer (FAISS's `OPQMatrix`).
//! - [`rabitq`]: RaBitQ sign codes and extended multi-bit codes with error bounds.
//! - [`codec`]: the contract the index kinds use every quantizer through.

pub mod codebook;
pub mod codec;
pub mod opq;
pub mod product;
pub mod rabitq;
pub mod scalar;
