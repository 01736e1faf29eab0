//! GGUF (llama.cpp) quantized tensor blocks and the GGUF v3 file format.
//!
//! # Block types
//!
//! ggml stores a tensor row by row; a row of `cols` weights is cut into blocks of
//! [`GgmlType::block_size`] weights, each encoded in [`GgmlType::type_size`] bytes. All
//! multi-byte fields are little-endian; `f16` is IEEE binary16. The layouts (byte offset:
//! field) and the decoded value of weight `i` are:
//!
//! | type | weights | bytes | layout | weight `i` |
//! | --- | --- | --- | --- | --- |
//! | `F32` | 1 | 4 | `f32` | as stored |
//! | `F16` | 1 | 2 | `f16` | as stored |
//! | `BF16` | 1 | 2 | top 16 bits of an `f32` | `f32::from_bits(b << 16)` |
//! | `Q4_0` | 32 | 18 | `0: d f16`, `2: qs[16]` | `d * (q_i - 8)` |
//! | `Q4_1` | 32 | 20 | `0: d f16`, `2: m f16`, `4: qs[16]` | `d * q_i + m` |
//! | `Q5_0` | 32 | 22 | `0: d f16`, `2: qh u32`, `6: qs[16]` | `d * (q_i - 16)` |
//! | `Q8_0` | 32 | 34 | `0: d f16`, `2: qs[32] i8` | `d * qs[i]` |
//! | `Q4_K` | 256 | 144 | `0: d f16`, `2: dmin f16`, `4: scales[12]`, `16: qs[128]` | see below |
//! | `Q6_K` | 256 | 210 | `0: ql[128]`, `128: qh[64]`, `192: scales[16] i8`, `208: d f16` | see below |
//!
//! In the 32-weight types the 4-bit codes are split in halves: byte `qs[j]` holds weight
//! `j` in its low nibble and weight `j + 16` in its high nibble. `Q5_0` keeps the fifth
//! bit of weight `j` in bit `j` of `qh`.
//!
//! **`Q4_K`**: eight sub-blocks of 32 weights, each with a 6-bit scale `sc_j` and a 6-bit
//! min `m_j`; weight `l` of sub-block `j` is `(d * sc_j) * q - (dmin * m_j)` with a 4-bit
//! `q`. Sub-blocks `2p` and `2p + 1` share `qs[32p .. 32p + 32]`: the low nibbles belong to
//! `2p`, the high nibbles to `2p + 1`. The twelve scale bytes pack sixteen 6-bit numbers:
//! for `j < 4`, `sc_j = scales[j] & 63` and `m_j = scales[j + 4] & 63`; `sc_{j+4}` takes
//! its low four bits from `scales[j + 8] & 15` and its top two from `scales[j] >> 6`;
//! `m_{j+4}` takes `scales[j + 8] >> 4` and `scales[j + 4] >> 6`.
//!
//! **`Q6_K`**: sixteen sub-blocks of 16 weights, each with an `i8` scale; weight `i` is
//! `(d * scales[i / 16]) * (q_i - 32)` with a 6-bit `q_i`. The block is two halves of 128
//! weights; in half `h`, for `l < 32`, the low four bits of weights `l`, `l + 32`, `l + 64`
//! and `l + 96` are the low nibble of `ql[64h + l]`, the low nibble of `ql[64h + l + 32]`,
//! the high nibble of `ql[64h + l]` and the high nibble of `ql[64h + l + 32]`; their top
//! two bits are bits 0–1, 2–3, 4–5 and 6–7 of `qh[32h + l]`.
//!
//! # Encoders
//!
//! `Q4_0`, `Q4_1`, `Q5_0`, `Q8_0`, `F16` and `BF16` reproduce, bit for bit, the reference
//! quantizers of ggml as implemented by llama.cpp's Python package `gguf`
//! (`gguf.quants.quantize`): same scale (`max / -8`, `(max - min) / 15`, `max / -16`,
//! `amax / 127`), same `f32` arithmetic, same rounding. `Q4_K` and `Q6_K` use our own
//! encoders in the spirit of llama.cpp's `make_qkx2_quants` (a weighted least-squares fit
//! of scale and min per sub-block over a small grid of trial scales) and `make_qx_quants`
//! (a grid search of the symmetric scale maximising the explained energy); their bytes are
//! not llama.cpp's, but the layout is, so any ggml reader decodes them exactly as
//! [`dequantize_row`] does. The golden tests in `tests/it/gguf_golden.rs` check all of this
//! against fixtures produced by the `gguf` package (`benches/gguf_golden.py`).
//!
//! Encoders reject NaN and ±inf ([`Error::NonFinite`](crate::Error::NonFinite)) and values
//! too large for the `f16` scale of the block (where ggml would silently store an
//! infinite scale).
//!
//! [`quantize`] and [`dequantize`] run rows in parallel. Encoding goes through an AVX2
//! compilation of the same portable code when the CPU has it (chosen once, honouring
//! `VECQUANT_SIMD`); without FMA and with fixed summation orders, every variant writes the
//! same bytes, so our `Q4_K`/`Q6_K` output is identical on every machine.
//!
//! # Files
//!
//! [`write_gguf`] and [`read_gguf`] handle GGUF version 3 (little-endian):
//!
//! ```text
//! "GGUF" magic, version u32 = 3, tensor count u64, metadata count u64
//! metadata: key (u64 length + UTF-8), value type u32, value
//! tensor infos: name, n_dims u32, n_dims × u64 dims (ggml order: ne[0] = row length),
//!               type id u32, offset u64 (relative to the data section)
//! zero padding to `general.alignment` (32 unless the metadata says otherwise)
//! data section: each tensor at its offset, each padded to the alignment
//! ```
//!
//! [`read_gguf`] checks every count, size and offset against the file length before it
//! allocates or copies anything, so a corrupt or truncated file gives an
//! [`Error::Format`](crate::Error::Format) naming the byte offset or tensor, never a panic
//! or a huge allocation. [`write_gguf`] validates everything first, then writes through
//! the container's atomic writer (`PATH.tmp`, fsync, rename, directory fsync).

mod codec;
mod file;
mod kquants;
mod legacy;
mod meta;
mod types;

pub use codec::{dequantize, dequantize_row, quantize, quantize_row};
pub use file::{
    ALIGNMENT_KEY, GGUF_DEFAULT_ALIGNMENT, GGUF_MAGIC, GGUF_VERSION, GgufFile, MAX_DIMS,
    MAX_TENSOR_NAME, parse_gguf, read_gguf, write_gguf,
};
pub use meta::{NOT_COPIED, copyable_metadata, merge_metadata, parse_meta_arg};
pub use types::{GgmlType, GgufTensor, GgufValue, GgufValueType, fallback_type};

/// Weights per block of the 32-weight types.
const QK: usize = 32;
/// Weights per super-block of the k-quants.
const QK_K: usize = 256;
