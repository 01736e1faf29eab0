//! The container file: one format for indexes and quantized weights.
//!
//! ```text
//! offset 0   magic "VECQUANT"                         8 bytes
//!        8   format version (u32 LE)                  4 bytes
//!       12   header length H (u64 LE)                 8 bytes
//!       20   header CRC-32 (u32 LE)                   4 bytes
//!       24   header: postcard-encoded [`Header`]      H bytes
//!            zero padding to a multiple of 64
//!            sections, each starting 64-byte aligned, raw little-endian arrays
//! ```
//!
//! The header holds the kind, spec, dimension, metric, count, a kind-specific
//! postcard blob (quantizer parameters) and the section table (name, offset, length,
//! CRC-32). The layout leaves no byte unaccounted for: the first section starts at the
//! first 64-byte boundary after the header, each next one at the first boundary after
//! the previous one's end, the file ends at the boundary after the last section, and
//! every padding byte is zero. So every byte is in the preamble, the checksummed header,
//! a checksummed section or zero padding, and flipping any one of them is detected.
//!
//! Opening a file checks, in order: magic, version, header length against the file size,
//! header checksum, header decoding (the postcard value must fill the header exactly),
//! then every section's bounds, alignment and place, the zero padding before it and (unless
//! the caller opts out) its checksum, and the trailing padding — before any byte is
//! trusted. Saving streams the sections from where the index holds them through a
//! buffered writer into `PATH.tmp`, fsyncs it, renames it over `PATH` and fsyncs the
//! directory ([`ContainerWriter::save`]), so a crash leaves either the old file or the new
//! one, and saving needs no second copy of the data.

mod atomic;
mod reader;
mod slab;
#[cfg(test)]
mod tests;
mod writer;

use serde::{Deserialize, Serialize};

use crate::metric::Metric;

pub(crate) use atomic::AtomicFile;
pub use atomic::{Reservation, check_replaceable, reserve};
pub(crate) use reader::map_file;
pub use reader::{Container, OpenOptions};
pub use slab::{Plain, Slab};
pub use writer::ContainerWriter;

/// File magic.
pub const MAGIC: &[u8; 8] = b"VECQUANT";
/// The format version this build writes.
pub const FORMAT_VERSION: u32 = 1;
/// Alignment of every section.
pub const ALIGN: usize = 64;
const PREAMBLE: usize = 24;
/// Largest header accepted (a header holds metadata, never bulk data).
pub const MAX_HEADER: u64 = 64 << 20;

/// One entry of the section table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SectionEntry {
    /// Section name (`"vectors"`, `"codes"`, `"ids"`, ...).
    pub name: String,
    /// Absolute byte offset in the file (a multiple of 64).
    pub offset: u64,
    /// Length in bytes.
    pub length: u64,
    /// CRC-32 (IEEE) of the section's bytes.
    pub crc32: u32,
}

/// The container's metadata.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Header {
    /// What the file holds: an index kind (`"flat"`, `"pq"`, `"codes"`, `"ivf"`, ...) or `"weights"`.
    pub kind: String,
    /// The spec string it was built from.
    pub spec: String,
    /// Vector dimension (0 for weight files).
    pub dim: u64,
    /// The metric (L2 for weight files).
    pub metric: Metric,
    /// Number of vectors (or tensors).
    pub count: u64,
    /// Kind-specific parameters, postcard-encoded.
    pub params: Vec<u8>,
    /// The section table.
    pub sections: Vec<SectionEntry>,
}

fn align_up(x: usize) -> usize {
    x.div_ceil(ALIGN) * ALIGN
}

/// `x` rounded up to a multiple of [`ALIGN`]; `None` on overflow (hostile offsets).
fn align_up_u64(x: u64) -> Option<u64> {
    x.div_ceil(ALIGN as u64).checked_mul(ALIGN as u64)
}
