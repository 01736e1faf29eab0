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
//! CRC-32). Opening a file checks, in order: magic, version, header length against the
//! file size, header checksum, header decoding, then every section's bounds, alignment
//! and (unless the caller opts out) checksum — before any byte is trusted. Saving writes
//! `PATH.tmp`, fsyncs it, renames it over `PATH` and fsyncs the directory, so a crash
//! leaves either the old file or the new one.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize, de::DeserializeOwned};

use crate::error::{Error, Result};
use crate::metric::Metric;

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
    /// What the file holds: an index kind (`"flat"`, `"sq"`, `"pq"`, ...) or `"weights"`.
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

/// Builds a container in memory and saves it atomically.
#[derive(Debug)]
pub struct ContainerWriter {
    header: Header,
    data: Vec<Vec<u8>>,
}

impl ContainerWriter {
    /// A writer for a file of `kind`.
    pub fn new(kind: &str, spec: &str, dim: usize, metric: Metric, count: usize) -> Self {
        ContainerWriter {
            header: Header {
                kind: kind.into(),
                spec: spec.into(),
                dim: dim as u64,
                metric,
                count: count as u64,
                params: Vec::new(),
                sections: Vec::new(),
            },
            data: Vec::new(),
        }
    }

    /// Sets the kind-specific parameters.
    pub fn params<T: Serialize>(&mut self, p: &T) -> Result<&mut Self> {
        self.header.params = postcard::to_stdvec(p)
            .map_err(|e| Error::param("params", format!("cannot encode parameters: {e}")))?;
        Ok(self)
    }

    /// Adds a raw section.
    pub fn section(&mut self, name: &str, bytes: Vec<u8>) -> &mut Self {
        self.header.sections.push(SectionEntry {
            name: name.into(),
            offset: 0,
            length: bytes.len() as u64,
            crc32: crc32fast::hash(&bytes),
        });
        self.data.push(bytes);
        self
    }

    /// Replaces section `name` by `new_name` holding `bytes` (tests build files in an
    /// older layout this way).
    #[cfg(test)]
    pub(crate) fn replace_section(&mut self, name: &str, new_name: &str, bytes: Vec<u8>) {
        let i = self
            .header
            .sections
            .iter()
            .position(|e| e.name == name)
            .expect("section present");
        self.header.sections[i] = SectionEntry {
            name: new_name.into(),
            offset: 0,
            length: bytes.len() as u64,
            crc32: crc32fast::hash(&bytes),
        };
        self.data[i] = bytes;
    }

    /// Adds a section of `f32`s (little endian).
    pub fn section_f32(&mut self, name: &str, v: &[f32]) -> &mut Self {
        self.section(name, v.iter().flat_map(|x| x.to_le_bytes()).collect())
    }

    /// Adds a section of `u32`s (little endian).
    pub fn section_u32(&mut self, name: &str, v: &[u32]) -> &mut Self {
        self.section(name, v.iter().flat_map(|x| x.to_le_bytes()).collect())
    }

    /// Adds a section of `u64`s (little endian).
    pub fn section_u64(&mut self, name: &str, v: &[u64]) -> &mut Self {
        self.section(name, v.iter().flat_map(|x| x.to_le_bytes()).collect())
    }

    /// Serialises the whole file.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        // Offsets depend on the header length, which depends on the offsets' varint
        // sizes: iterate until stable (two rounds suffice in practice).
        let mut header = self.header.clone();
        let mut hbytes = Vec::new();
        for _ in 0..8 {
            hbytes = postcard::to_stdvec(&header)
                .map_err(|e| Error::param("header", format!("cannot encode header: {e}")))?;
            let mut off = align_up(PREAMBLE + hbytes.len()) as u64;
            let mut changed = false;
            for s in header.sections.iter_mut() {
                if s.offset != off {
                    s.offset = off;
                    changed = true;
                }
                off = align_up((off + s.length) as usize) as u64;
            }
            if !changed {
                break;
            }
        }
        let mut out = Vec::new();
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        out.extend_from_slice(&(hbytes.len() as u64).to_le_bytes());
        out.extend_from_slice(&crc32fast::hash(&hbytes).to_le_bytes());
        out.extend_from_slice(&hbytes);
        for (s, d) in header.sections.iter().zip(&self.data) {
            out.resize(s.offset as usize, 0);
            out.extend_from_slice(d);
        }
        out.resize(align_up(out.len()), 0);
        Ok(out)
    }

    /// Saves atomically (temp file, fsync, rename, fsync of the directory).
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        crate::data::write_file_atomic(path.as_ref(), &self.to_bytes()?)
    }
}

fn align_up(x: usize) -> usize {
    x.div_ceil(ALIGN) * ALIGN
}

/// Options for [`Container::open_with`].
#[derive(Clone, Copy, Debug)]
pub struct OpenOptions {
    /// Verify every section's CRC-32 on open (default `true`). Skipping it makes opening a
    /// huge file O(1), at the cost of not detecting bit rot inside sections.
    pub verify_checksums: bool,
}

impl Default for OpenOptions {
    fn default() -> Self {
        OpenOptions {
            verify_checksums: true,
        }
    }
}

/// An opened, validated container (memory-mapped).
#[derive(Debug)]
pub struct Container {
    path: PathBuf,
    map: Arc<Bytes>,
    verified: bool,
    version: u32,
    header: Header,
}

#[derive(Debug)]
enum Bytes {
    Mapped(memmap2::Mmap),
    Owned(Vec<u8>),
}

impl std::ops::Deref for Bytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Bytes::Mapped(m) => m,
            Bytes::Owned(v) => v,
        }
    }
}

impl Container {
    /// Opens and validates `path` with default options.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        Self::open_with(path, OpenOptions::default())
    }

    /// Opens and validates `path`.
    pub fn open_with(path: impl AsRef<Path>, opts: OpenOptions) -> Result<Self> {
        let path = path.as_ref();
        let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        let len = file.metadata().map_err(|e| Error::io(path, e))?.len();
        let map = if len == 0 {
            Bytes::Owned(Vec::new())
        } else {
            // SAFETY: the map is read-only; the file is replaced only by rename (never
            // written in place) by this crate, so the mapped pages do not change under us.
            // Another process truncating the file is outside what mmap can defend against.
            Bytes::Mapped(unsafe { memmap2::Mmap::map(&file) }.map_err(|e| Error::io(path, e))?)
        };
        Self::validate(path, map, opts)
    }

    /// Validates an in-memory container (`name` is used in error messages).
    pub fn from_bytes(name: impl AsRef<Path>, bytes: Vec<u8>, opts: OpenOptions) -> Result<Self> {
        Self::validate(name.as_ref(), Bytes::Owned(bytes), opts)
    }

    fn validate(path: &Path, map: Bytes, opts: OpenOptions) -> Result<Self> {
        let err = |m: String| Error::format(path, m);
        let b: &[u8] = &map;
        if b.len() < PREAMBLE {
            if b.len() >= 8 && &b[..8] != MAGIC || b.len() < 8 && !MAGIC.starts_with(b) {
                return Err(err("not a vecquant file: bad magic at byte 0".into()));
            }
            return Err(err(format!(
                "file truncated: {} bytes, shorter than the {PREAMBLE}-byte preamble",
                b.len()
            )));
        }
        if &b[..8] != MAGIC {
            return Err(err(
                "not a vecquant file: bad magic at byte 0 (expected \"VECQUANT\")".into(),
            ));
        }
        let version = u32::from_le_bytes([b[8], b[9], b[10], b[11]]);
        if version == 0 {
            return Err(err("invalid format version 0 at byte 8".into()));
        }
        if version > FORMAT_VERSION {
            return Err(err(format!(
                "format version {version} is newer than this build supports ({FORMAT_VERSION}); upgrade vecquant to read it"
            )));
        }
        let hlen = u64::from_le_bytes(b[12..20].try_into().unwrap_or([0; 8]));
        if hlen > MAX_HEADER || PREAMBLE as u64 + hlen > b.len() as u64 {
            return Err(err(format!(
                "header length {hlen} at byte 12 runs past the end of the file ({} bytes): truncated or corrupt",
                b.len()
            )));
        }
        let hcrc = u32::from_le_bytes([b[20], b[21], b[22], b[23]]);
        let hbytes = &b[PREAMBLE..PREAMBLE + hlen as usize];
        if crc32fast::hash(hbytes) != hcrc {
            return Err(err(
                "header checksum mismatch (bytes 24..): the header is corrupt".into(),
            ));
        }
        let header: Header = postcard::from_bytes(hbytes)
            .map_err(|e| err(format!("header does not decode: {e}")))?;
        let data_start = PREAMBLE as u64 + hlen;
        for (i, s) in header.sections.iter().enumerate() {
            let end = s.offset.checked_add(s.length);
            if s.offset < data_start || end.is_none_or(|e| e > b.len() as u64) {
                return Err(err(format!(
                    "section {i} `{}` (offset {}, length {}) lies outside the file's data ({} bytes): truncated or corrupt",
                    s.name,
                    s.offset,
                    s.length,
                    b.len()
                )));
            }
            if s.offset % ALIGN as u64 != 0 {
                return Err(err(format!(
                    "section `{}` at offset {} is not {ALIGN}-byte aligned",
                    s.name, s.offset
                )));
            }
            if opts.verify_checksums {
                let bytes = &b[s.offset as usize..(s.offset + s.length) as usize];
                if crc32fast::hash(bytes) != s.crc32 {
                    return Err(err(format!(
                        "section `{}` (offset {}, length {}) fails its checksum: the data is corrupt",
                        s.name, s.offset, s.length
                    )));
                }
            }
        }
        Ok(Container {
            path: path.to_path_buf(),
            map: Arc::new(map),
            verified: opts.verify_checksums,
            version,
            header,
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether every section's checksum was verified when the file was opened.
    pub fn verified(&self) -> bool {
        self.verified
    }

    /// Section `name` as a [`Slab`] of `expected` values, used in place (zero-copy) when
    /// the mapping is suitably aligned, else copied.
    pub fn slab<T: Plain>(&self, name: &str, expected: usize) -> Result<Slab<T>> {
        let size = std::mem::size_of::<T>();
        let b = self.sized(name, expected, size)?;
        let offset = b.as_ptr() as usize - self.map.as_ptr() as usize;
        Ok(
            Slab::mapped(self.map.clone(), offset, expected).unwrap_or_else(|| {
                Slab::from(b.chunks_exact(size).map(T::from_le).collect::<Vec<T>>())
            }),
        )
    }

    /// The format version the file was written with.
    pub fn version(&self) -> u32 {
        self.version
    }

    /// The decoded header.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// Decodes the kind-specific parameters.
    pub fn params<T: DeserializeOwned>(&self) -> Result<T> {
        postcard::from_bytes(&self.header.params)
            .map_err(|e| Error::format(&self.path, format!("parameters do not decode: {e}")))
    }

    /// The bytes of section `name`.
    pub fn section(&self, name: &str) -> Result<&[u8]> {
        let s = self
            .header
            .sections
            .iter()
            .find(|s| s.name == name)
            .ok_or_else(|| Error::format(&self.path, format!("missing section `{name}`")))?;
        Ok(&self.map[s.offset as usize..(s.offset + s.length) as usize])
    }

    /// Section `name` as `f32`s, checking its length is `expected` values.
    pub fn section_f32(&self, name: &str, expected: usize) -> Result<Vec<f32>> {
        let b = self.sized(name, expected, 4)?;
        Ok(b.chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect())
    }

    /// Section `name` as `u64`s, checking its length is `expected` values.
    pub fn section_u64(&self, name: &str, expected: usize) -> Result<Vec<u64>> {
        let b = self.sized(name, expected, 8)?;
        Ok(b.chunks_exact(8)
            .map(|c| u64::from_le_bytes(c.try_into().unwrap_or([0; 8])))
            .collect())
    }

    /// Section `name` as bytes, checking its length is `expected`.
    pub fn section_u8(&self, name: &str, expected: usize) -> Result<&[u8]> {
        self.sized(name, expected, 1)
    }

    fn sized(&self, name: &str, count: usize, elem: usize) -> Result<&[u8]> {
        let b = self.section(name)?;
        let want = count.checked_mul(elem);
        if want != Some(b.len()) {
            return Err(Error::format(
                &self.path,
                format!(
                    "section `{name}` holds {} bytes but the header implies {count} × {elem}",
                    b.len()
                ),
            ));
        }
        Ok(b)
    }
}

/// Plain little-endian element types a [`Slab`] can hold.
pub trait Plain: Copy + Send + Sync + 'static + std::fmt::Debug {
    /// Decodes one value from its little-endian bytes (`size_of::<Self>()` of them).
    fn from_le(b: &[u8]) -> Self;
}

impl Plain for u8 {
    fn from_le(b: &[u8]) -> Self {
        b[0]
    }
}

impl Plain for f32 {
    fn from_le(b: &[u8]) -> Self {
        f32::from_le_bytes([b[0], b[1], b[2], b[3]])
    }
}

impl Plain for u32 {
    fn from_le(b: &[u8]) -> Self {
        u32::from_le_bytes([b[0], b[1], b[2], b[3]])
    }
}

impl Plain for u64 {
    fn from_le(b: &[u8]) -> Self {
        u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]])
    }
}

/// A read-mostly array that is either owned or a view into an opened container's
/// memory map — so opening an index does not copy its big sections, and several
/// processes share the pages. The first mutation copies a mapped slab into memory
/// (copy on write).
///
/// ```
/// use vecquant::store::Slab;
/// let mut s: Slab<u64> = Slab::from(vec![1, 2]);
/// s.to_mut().push(3);
/// assert_eq!(&s[..], &[1, 2, 3]);
/// ```
#[derive(Clone)]
pub struct Slab<T: Plain> {
    inner: SlabInner<T>,
}

#[derive(Clone)]
enum SlabInner<T> {
    Owned(Vec<T>),
    Mapped {
        map: Arc<Bytes>,
        offset: usize,
        len: usize,
    },
}

impl<T: Plain> Slab<T> {
    /// A view of `len` values at byte `offset` of `map`, if the host is little-endian and
    /// the address is aligned for `T` (section offsets are 64-byte aligned and maps are
    /// page aligned, so this holds for files; in-memory buffers may not be).
    fn mapped(map: Arc<Bytes>, offset: usize, len: usize) -> Option<Self> {
        let size = std::mem::size_of::<T>();
        let end = offset.checked_add(len.checked_mul(size)?)?;
        let aligned = (map.as_ptr() as usize + offset).is_multiple_of(std::mem::align_of::<T>());
        if cfg!(target_endian = "little") && aligned && end <= map.len() {
            Some(Slab {
                inner: SlabInner::Mapped { map, offset, len },
            })
        } else {
            None
        }
    }

    /// Whether the data is a view into a memory-mapped file.
    pub fn is_mapped(&self) -> bool {
        matches!(&self.inner, SlabInner::Mapped { map, .. } if matches!(**map, Bytes::Mapped(_)))
    }

    /// The owned vector, copying a mapped slab first.
    pub fn to_mut(&mut self) -> &mut Vec<T> {
        if let SlabInner::Mapped { .. } = self.inner {
            let v = self.to_vec();
            self.inner = SlabInner::Owned(v);
        }
        match &mut self.inner {
            SlabInner::Owned(v) => v,
            SlabInner::Mapped { .. } => unreachable!("converted above"),
        }
    }
}

impl<T: Plain> From<Vec<T>> for Slab<T> {
    fn from(v: Vec<T>) -> Self {
        Slab {
            inner: SlabInner::Owned(v),
        }
    }
}

impl<T: Plain> Default for Slab<T> {
    fn default() -> Self {
        Slab::from(Vec::new())
    }
}

impl<T: Plain> std::ops::Deref for Slab<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        match &self.inner {
            SlabInner::Owned(v) => v,
            SlabInner::Mapped { map, offset, len } => {
                // SAFETY: `mapped` checked that `offset + len·size_of::<T>()` lies inside
                // the map, that the address is aligned for `T`, and that the host is
                // little-endian; `T: Plain` types (u8, f32, u64) are valid for every bit
                // pattern. The map is immutable and kept alive by the `Arc`.
                unsafe { std::slice::from_raw_parts(map.as_ptr().add(*offset) as *const T, *len) }
            }
        }
    }
}

impl<T: Plain> std::fmt::Debug for Slab<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Slab({} values, mapped: {})",
            self.len(),
            self.is_mapped()
        )
    }
}

impl<T: Plain + PartialEq> PartialEq for Slab<T> {
    fn eq(&self, o: &Self) -> bool {
        self[..] == o[..]
    }
}

/// A human-readable description of a container file: kind, version, dimensions, counts,
/// every section with its size and checksum status, and bytes per vector.
pub fn describe(path: impl AsRef<Path>) -> Result<String> {
    use std::fmt::Write;
    let path = path.as_ref();
    // Open without verification so a damaged section can be reported, not just refused.
    let c = Container::open_with(
        path,
        OpenOptions {
            verify_checksums: false,
        },
    )?;
    let h = c.header();
    let size = c.map.len();
    let mut s = String::new();
    let _ = writeln!(s, "file      {}", path.display());
    let _ = writeln!(s, "format    vecquant container, version {}", c.version());
    let _ = writeln!(s, "kind      {} (spec `{}`)", h.kind, h.spec);
    let _ = writeln!(s, "dim       {}", h.dim);
    let _ = writeln!(s, "metric    {}", h.metric);
    let _ = writeln!(s, "count     {}", h.count);
    let _ = writeln!(s, "size      {size} bytes");
    if h.count > 0 {
        let _ = writeln!(
            s,
            "bytes/vec {:.2} (whole file / count)",
            size as f64 / h.count as f64
        );
    }
    let _ = writeln!(s, "sections  {}", h.sections.len());
    let mut all_ok = true;
    for sec in &h.sections {
        let bytes = &c.map[sec.offset as usize..(sec.offset + sec.length) as usize];
        let ok = crc32fast::hash(bytes) == sec.crc32;
        all_ok &= ok;
        let _ = writeln!(
            s,
            "  {:<12} offset {:>12}  length {:>12}  crc32 {:08x}  {}",
            sec.name,
            sec.offset,
            sec.length,
            sec.crc32,
            if ok { "ok" } else { "CORRUPT" }
        );
    }
    let _ = writeln!(s, "checksums {}", if all_ok { "all ok" } else { "FAILED" });
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        let mut w = ContainerWriter::new("flat", "Flat", 2, Metric::L2, 3);
        w.params(&(7u32, "x".to_string())).unwrap();
        w.section_f32("vectors", &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        w.section_u64("ids", &[10, 11, 12]);
        w.to_bytes().unwrap()
    }

    #[test]
    fn round_trip_and_alignment() {
        let c = Container::from_bytes("t", sample(), OpenOptions::default()).unwrap();
        assert_eq!(c.header().kind, "flat");
        assert_eq!(c.section_f32("vectors", 6).unwrap()[5], 6.0);
        assert_eq!(c.section_u64("ids", 3).unwrap(), vec![10, 11, 12]);
        assert_eq!(c.params::<(u32, String)>().unwrap(), (7, "x".into()));
        assert!(c.header().sections.iter().all(|s| s.offset % 64 == 0));
        assert!(c.section_f32("vectors", 5).is_err());
        assert!(c.section("nope").is_err());
    }

    #[test]
    fn every_truncation_is_an_error() {
        let b = sample();
        for len in 0..b.len() {
            let r = Container::from_bytes("t", b[..len].to_vec(), OpenOptions::default());
            // Trailing alignment padding after the last section may be cut without loss.
            let last_end = {
                let c = Container::from_bytes("t", b.clone(), OpenOptions::default()).unwrap();
                c.header()
                    .sections
                    .iter()
                    .map(|s| s.offset + s.length)
                    .max()
                    .unwrap() as usize
            };
            if len < last_end {
                assert!(r.is_err(), "truncated to {len} accepted");
            }
        }
    }

    #[test]
    fn every_flipped_byte_is_caught() {
        let b = sample();
        let c = Container::from_bytes("t", b.clone(), OpenOptions::default()).unwrap();
        let last_end = c
            .header()
            .sections
            .iter()
            .map(|s| s.offset + s.length)
            .max()
            .unwrap() as usize;
        let covered: Vec<bool> = (0..b.len())
            .map(|i| {
                i < PREAMBLE + c.header().sections[0].offset as usize
                    && i < 24 + postcard::to_stdvec(c.header()).unwrap().len()
                    || c.header()
                        .sections
                        .iter()
                        .any(|s| (s.offset as usize..(s.offset + s.length) as usize).contains(&i))
            })
            .collect();
        for i in 0..last_end {
            if !covered[i] {
                continue; // padding
            }
            let mut m = b.clone();
            m[i] ^= 0x5A;
            assert!(
                Container::from_bytes("t", m, OpenOptions::default()).is_err(),
                "flip at {i} accepted"
            );
        }
    }

    #[test]
    fn newer_version_is_refused() {
        let mut b = sample();
        b[8..12].copy_from_slice(&(FORMAT_VERSION + 1).to_le_bytes());
        let e = Container::from_bytes("t", b, OpenOptions::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("newer"), "{e}");
    }
}
