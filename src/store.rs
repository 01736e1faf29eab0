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

use std::borrow::Cow;
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

/// Builds a container and saves it atomically.
///
/// The writer holds each section either by reference (the `&'a` slices given to
/// [`section_f32`](Self::section_f32), [`section_u32`](Self::section_u32),
/// [`section_u64`](Self::section_u64), or a borrowed `&'a [u8]` given to
/// [`section`](Self::section)) or as an owned `Vec<u8>`, and computes each section's
/// CRC-32 when it is added. [`save`](Self::save) then streams the preamble, the header and
/// the sections through a buffered writer, so saving needs no second copy of the data: an
/// index saves in the memory it already occupies plus a megabyte of buffer.
///
/// ```
/// use vecquant::Metric;
/// use vecquant::store::{Container, ContainerWriter, OpenOptions};
///
/// let vectors = [1.0f32, 2.0, 3.0, 4.0];
/// let mut w = ContainerWriter::new("flat", "Flat", 2, Metric::L2, 2);
/// w.section_f32("vectors", &vectors).section_u64("ids", &[7, 8]);
/// let c = Container::from_bytes("mem", w.to_bytes()?, OpenOptions::default())?;
/// assert_eq!(c.section_f32("vectors", 4)?, vectors);
/// # Ok::<(), vecquant::Error>(())
/// ```
#[derive(Debug)]
pub struct ContainerWriter<'a> {
    header: Header,
    data: Vec<SectionData<'a>>,
}

/// A section's contents as the writer holds them.
#[derive(Debug)]
enum SectionData<'a> {
    /// Bytes already in file order (owned or borrowed).
    Bytes(Cow<'a, [u8]>),
    /// Values written little-endian.
    F32(&'a [f32]),
    U32(&'a [u32]),
    U64(&'a [u64]),
}

impl SectionData<'_> {
    /// Feeds the section's file bytes to `f` in order: in one piece on little-endian
    /// hosts (the values' memory is the file's bytes), in 64 KiB pieces converted through
    /// a small buffer on big-endian ones.
    fn for_each_piece<E>(&self, f: &mut impl FnMut(&[u8]) -> Result<(), E>) -> Result<(), E> {
        match self {
            SectionData::Bytes(b) => f(b),
            SectionData::F32(v) => le_pieces(v, f),
            SectionData::U32(v) => le_pieces(v, f),
            SectionData::U64(v) => le_pieces(v, f),
        }
    }

    fn len(&self) -> usize {
        match self {
            SectionData::Bytes(b) => b.len(),
            SectionData::F32(v) => std::mem::size_of_val(*v),
            SectionData::U32(v) => std::mem::size_of_val(*v),
            SectionData::U64(v) => std::mem::size_of_val(*v),
        }
    }

    fn crc32(&self) -> u32 {
        let mut h = crc32fast::Hasher::new();
        let _ = self.for_each_piece(&mut |b| -> Result<(), ()> {
            h.update(b);
            Ok(())
        });
        h.finalize()
    }
}

/// `v`'s little-endian bytes, handed to `f` without copying on little-endian hosts.
fn le_pieces<T: Plain, E>(v: &[T], f: &mut impl FnMut(&[u8]) -> Result<(), E>) -> Result<(), E> {
    if cfg!(target_endian = "little") {
        return f(bytemuck::cast_slice(v));
    }
    let per = (64 << 10) / std::mem::size_of::<T>();
    let mut buf = Vec::with_capacity(per * std::mem::size_of::<T>());
    for chunk in v.chunks(per) {
        buf.clear();
        for x in chunk {
            buf.extend(bytemuck::bytes_of(x).iter().rev());
        }
        f(&buf)?;
    }
    Ok(())
}

impl<'a> ContainerWriter<'a> {
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
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] if `p` cannot be postcard-encoded (a serde impl that
    /// fails, or a sequence of unknown length).
    pub fn params<T: Serialize>(&mut self, p: &T) -> Result<&mut Self> {
        self.header.params = postcard::to_stdvec(p)
            .map_err(|e| Error::param("params", format!("cannot encode parameters: {e}")))?;
        Ok(self)
    }

    /// Adds a raw section: an owned `Vec<u8>` or bytes borrowed for the writer's life.
    pub fn section(&mut self, name: &str, bytes: impl Into<Cow<'a, [u8]>>) -> &mut Self {
        self.push(name, SectionData::Bytes(bytes.into()))
    }

    fn push(&mut self, name: &str, data: SectionData<'a>) -> &mut Self {
        self.header.sections.push(SectionEntry {
            name: name.into(),
            offset: 0,
            length: data.len() as u64,
            crc32: data.crc32(),
        });
        self.data.push(data);
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
        let data = SectionData::Bytes(bytes.into());
        self.header.sections[i] = SectionEntry {
            name: new_name.into(),
            offset: 0,
            length: data.len() as u64,
            crc32: data.crc32(),
        };
        self.data[i] = data;
    }

    /// Adds a section of `f32`s (written little endian), borrowed until the save.
    pub fn section_f32(&mut self, name: &str, v: &'a [f32]) -> &mut Self {
        self.push(name, SectionData::F32(v))
    }

    /// Adds a section of `u32`s (written little endian), borrowed until the save.
    pub fn section_u32(&mut self, name: &str, v: &'a [u32]) -> &mut Self {
        self.push(name, SectionData::U32(v))
    }

    /// Adds a section of `u64`s (written little endian), borrowed until the save.
    pub fn section_u64(&mut self, name: &str, v: &'a [u64]) -> &mut Self {
        self.push(name, SectionData::U64(v))
    }

    /// Adds a section of values computed for the file alone (written little endian; the
    /// writer keeps their bytes). Arrays the caller keeps anyway are better borrowed
    /// through [`section_f32`](Self::section_f32) and its siblings, which copy nothing.
    pub fn section_vec<T: Plain>(&mut self, name: &str, v: Vec<T>) -> &mut Self {
        let mut bytes = Vec::with_capacity(std::mem::size_of_val(&v[..]));
        let _ = le_pieces(&v, &mut |b: &[u8]| -> Result<()> {
            bytes.extend_from_slice(b);
            Ok(())
        });
        self.section(name, bytes)
    }

    /// The encoded header with every section's offset filled in.
    fn layout(&self) -> Result<Vec<u8>> {
        // Offsets depend on the header length, which depends on the offsets' varint
        // sizes: iterate until stable. Offsets only grow from round to round and a
        // longer varint needs a 128× larger offset, so two or three rounds suffice.
        let mut header = self.header.clone();
        for _ in 0..8 {
            let hbytes = postcard::to_stdvec(&header)
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
                return Ok(hbytes);
            }
        }
        Err(Error::param(
            "header",
            "section offsets do not settle: the header keeps growing",
        ))
    }

    /// Streams the whole file into `put`, piece by piece, in file order.
    fn emit(&self, put: &mut impl FnMut(&[u8]) -> Result<()>) -> Result<()> {
        const ZEROS: [u8; ALIGN] = [0; ALIGN];
        let hbytes = self.layout()?;
        put(MAGIC)?;
        put(&FORMAT_VERSION.to_le_bytes())?;
        put(&(hbytes.len() as u64).to_le_bytes())?;
        put(&crc32fast::hash(&hbytes).to_le_bytes())?;
        put(&hbytes)?;
        let mut pos = PREAMBLE + hbytes.len();
        for d in &self.data {
            // Every gap is the padding to the next 64-byte boundary (see `layout`).
            put(&ZEROS[..align_up(pos) - pos])?;
            pos = align_up(pos);
            d.for_each_piece(put)?;
            pos += d.len();
        }
        put(&ZEROS[..align_up(pos) - pos])
    }

    /// Serialises the whole file into memory (tests and in-memory round trips; use
    /// [`save`](Self::save) for files, which streams instead).
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] if the header cannot be encoded.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        self.emit(&mut |b: &[u8]| {
            out.extend_from_slice(b);
            Ok(())
        })?;
        Ok(out)
    }

    /// Saves atomically: streams the file through a buffered writer into `PATH.tmp`,
    /// fsyncs it, renames it over `path` and fsyncs the directory (a crash leaves the old
    /// file or the new one; a failed save removes the temporary file).
    /// Memory beyond the writer's sections is the 1 MiB buffer and the header.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] if the header cannot be encoded; [`Error::Io`] naming
    /// the temporary file or `path` if creating, writing, syncing or renaming fails (the
    /// temporary file is removed and `path` is left as it was).
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        let mut file = AtomicFile::create(path.as_ref())?;
        self.emit(&mut |b: &[u8]| file.write_all(b))?;
        file.commit()
    }
}

fn align_up(x: usize) -> usize {
    x.div_ceil(ALIGN) * ALIGN
}

/// `x` rounded up to a multiple of [`ALIGN`]; `None` on overflow (hostile offsets).
fn align_up_u64(x: u64) -> Option<u64> {
    x.div_ceil(ALIGN as u64).checked_mul(ALIGN as u64)
}

/// `Err` unless bytes `from..to` of `b` (padding; `to ≤ b.len()`) are all zero. Padding is
/// covered by no checksum, so zeros are what makes a flipped padding byte detectable.
fn check_padding(b: &[u8], from: u64, to: u64) -> std::result::Result<(), String> {
    let gap = b.get(from as usize..to as usize).unwrap_or(&[]);
    match gap.iter().position(|&x| x != 0) {
        None => Ok(()),
        Some(i) => Err(format!(
            "padding byte {} is {:#04x}, not zero: the file is corrupt",
            from as usize + i,
            gap[i]
        )),
    }
}

/// A file written atomically: bytes go through a 1 MiB buffer into `PATH.tmp`;
/// [`commit`](Self::commit) flushes, fsyncs, renames it over `PATH` and fsyncs the
/// directory, so a crash leaves the old file or the new one, never half of one. Dropped
/// without a commit (an error on the way), it removes the temporary file.
///
/// The one atomic writer of the crate's binary formats: containers and GGUF files.
pub(crate) struct AtomicFile {
    path: PathBuf,
    tmp: PathBuf,
    out: Option<std::io::BufWriter<std::fs::File>>,
    committed: bool,
}

impl AtomicFile {
    /// Creates `PATH.tmp` (and `path`'s directory if missing). When `path` exists, the
    /// temporary file takes its permissions (and, where the user may give files away, its
    /// owner and group) before any byte is written, so a rewrite neither widens a private
    /// file nor narrows a shared one.
    ///
    /// # Errors
    /// [`Error::Io`] naming `path` if it is a directory or has no write permission bits
    /// (a read-only file is not replaced, whoever runs this — root included); naming the
    /// directory or the temporary file if they cannot be created.
    pub(crate) fn create(path: &Path) -> Result<Self> {
        let existing = match std::fs::metadata(path) {
            Ok(m) if m.is_dir() => {
                return Err(Error::io(
                    path,
                    std::io::Error::new(
                        std::io::ErrorKind::IsADirectory,
                        "is a directory: cannot write a file in its place",
                    ),
                ));
            }
            Ok(m) if m.permissions().readonly() => {
                return Err(Error::io(
                    path,
                    std::io::Error::new(
                        std::io::ErrorKind::PermissionDenied,
                        "is read-only (no write permission): not replacing it",
                    ),
                ));
            }
            Ok(m) => Some(m),
            Err(_) => None,
        };
        if let Some(dir) = path.parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        }
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(".tmp");
        let tmp = PathBuf::from(tmp);
        // A leftover from a crash may have another mode or owner: start afresh.
        let _ = std::fs::remove_file(&tmp);
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        if existing.is_some() {
            // Private until it takes the old file's mode below.
            std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
        }
        let file = opts.open(&tmp).map_err(|e| Error::io(&tmp, e))?;
        let mut out = AtomicFile {
            path: path.to_path_buf(),
            tmp,
            out: None,
            committed: false,
        };
        if let Some(m) = existing {
            out.take_over(&file, &m)?;
        }
        out.out = Some(std::io::BufWriter::with_capacity(1 << 20, file));
        Ok(out)
    }

    /// Gives the temporary file the owner (best effort: changing it needs privilege) and
    /// then the permissions of the file it replaces (after the owner, since a change of
    /// owner clears set-id bits).
    fn take_over(&self, file: &std::fs::File, old: &std::fs::Metadata) -> Result<()> {
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt;
            let now = file.metadata().map_err(|e| Error::io(&self.tmp, e))?;
            if (now.uid(), now.gid()) != (old.uid(), old.gid()) {
                // Refused without privilege (EPERM): the file stays the writer's own.
                if std::os::unix::fs::fchown(file, Some(old.uid()), Some(old.gid())).is_err() {
                    // A user may still hand the file to a group of their own.
                    let _ = std::os::unix::fs::fchown(file, None, Some(old.gid()));
                }
            }
        }
        file.set_permissions(old.permissions())
            .map_err(|e| Error::io(&self.tmp, e))
    }

    /// Appends `bytes`.
    pub(crate) fn write_all(&mut self, bytes: &[u8]) -> Result<()> {
        use std::io::Write;
        match &mut self.out {
            Some(w) => w.write_all(bytes).map_err(|e| Error::io(&self.tmp, e)),
            None => Ok(()),
        }
    }

    /// Appends `n` zero bytes.
    pub(crate) fn write_zeros(&mut self, mut n: usize) -> Result<()> {
        const ZEROS: [u8; 4096] = [0; 4096];
        while n > 0 {
            let k = n.min(ZEROS.len());
            self.write_all(&ZEROS[..k])?;
            n -= k;
        }
        Ok(())
    }

    /// Flushes, fsyncs, renames over the final path and fsyncs the directory.
    pub(crate) fn commit(mut self) -> Result<()> {
        let Some(w) = self.out.take() else {
            return Ok(());
        };
        let file = w
            .into_inner()
            .map_err(|e| Error::io(&self.tmp, e.into_error()))?;
        file.sync_all().map_err(|e| Error::io(&self.tmp, e))?;
        drop(file);
        std::fs::rename(&self.tmp, &self.path).map_err(|e| Error::io(&self.path, e))?;
        // Renamed: nothing left for `drop` to clean up.
        self.committed = true;
        crate::data::sync_parent_dir(&self.path);
        Ok(())
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        drop(self.out.take());
        if !self.committed {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// Memory-maps `file` (opened from `path`) read-only.
///
/// # Errors
/// [`Error::Io`] naming `path` if the map fails.
pub(crate) fn map_file(file: &std::fs::File, path: &Path) -> Result<memmap2::Mmap> {
    if file.metadata().is_ok_and(|m| m.is_dir()) {
        return Err(crate::data::directory_error(path));
    }
    // SAFETY: the map is only read. This crate replaces files only by rename (never
    // writes one in place), so the pages do not change under us; another process
    // truncating or rewriting the file while it is mapped is outside what a memory map
    // can defend against, and every reader bounds-checks against the map's length.
    unsafe { memmap2::Mmap::map(file) }.map_err(|e| Error::io(path, e))
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
    ///
    /// # Errors
    /// As [`open_with`](Self::open_with).
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        Self::open_with(path, OpenOptions::default())
    }

    /// Opens and validates `path`.
    ///
    /// # Errors
    /// [`Error::Io`] if the file cannot be opened or mapped; [`Error::Format`] naming the
    /// file and what is wrong if it is not a valid container: bad magic, a version this
    /// build cannot read, a header that overruns the file, fails its checksum or does not
    /// decode, a section outside the file or away from its place, non-zero padding,
    /// trailing bytes, or (with `verify_checksums`) a section failing its checksum.
    pub fn open_with(path: impl AsRef<Path>, opts: OpenOptions) -> Result<Self> {
        let path = path.as_ref();
        let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        let meta = file.metadata().map_err(|e| Error::io(path, e))?;
        if meta.is_dir() {
            // Opening a directory succeeds; mapping it fails with a baffling "No such
            // device".
            return Err(crate::data::directory_error(path));
        }
        let len = meta.len();
        let map = if len == 0 {
            Bytes::Owned(Vec::new())
        } else {
            Bytes::Mapped(map_file(&file, path)?)
        };
        Self::validate(path, map, opts)
    }

    /// Validates an in-memory container (`name` is used in error messages).
    ///
    /// # Errors
    /// [`Error::Format`] as for [`open_with`](Self::open_with).
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
        let header: Header = match postcard::take_from_bytes(hbytes) {
            Ok((h, [])) => h,
            Ok((_, rest)) => {
                return Err(err(format!(
                    "header has {} bytes after its end: corrupt",
                    rest.len()
                )));
            }
            Err(e) => return Err(err(format!("header does not decode: {e}"))),
        };
        let data_start = PREAMBLE as u64 + hlen;
        let file_len = b.len() as u64;
        // Where the writer put the next section: the first at the 64-byte boundary after
        // the header, each next one at the boundary after the previous one's end. Files
        // are laid out exactly so, which leaves every byte of the file either in the
        // preamble, the checksummed header, a checksummed section or a zero padding gap.
        let mut expected = align_up_u64(data_start);
        let mut pos = data_start;
        for (i, s) in header.sections.iter().enumerate() {
            let end = s.offset.checked_add(s.length);
            if s.offset < data_start || end.is_none_or(|e| e > file_len) {
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
            if Some(s.offset) != expected {
                return Err(err(format!(
                    "section {i} `{}` at offset {} is not where it belongs (byte {}, the first {ALIGN}-byte boundary after the previous part): corrupt section table",
                    s.name,
                    s.offset,
                    expected.unwrap_or(u64::MAX)
                )));
            }
            check_padding(b, pos, s.offset).map_err(&err)?;
            // In bounds: checked above.
            pos = s.offset + s.length;
            expected = align_up_u64(pos);
            if opts.verify_checksums {
                let bytes = &b[s.offset as usize..pos as usize];
                if crc32fast::hash(bytes) != s.crc32 {
                    return Err(err(format!(
                        "section `{}` (offset {}, length {}) fails its checksum: the data is corrupt",
                        s.name, s.offset, s.length
                    )));
                }
            }
        }
        // After the last section: at most the padding to the next boundary (a file cut
        // inside it loses nothing), and only zeros.
        if expected.is_none_or(|e| file_len > e) {
            return Err(err(format!(
                "{} unexpected bytes after the last section (which ends at byte {pos}): corrupt or not written by vecquant",
                file_len - pos
            )));
        }
        check_padding(b, pos, file_len).map_err(&err)?;
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
    ///
    /// # Errors
    /// [`Error::Format`] if the section is missing or is not `expected` values long.
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
    ///
    /// # Errors
    /// [`Error::Format`] if the parameters do not decode as a `T`.
    pub fn params<T: DeserializeOwned>(&self) -> Result<T> {
        postcard::from_bytes(&self.header.params)
            .map_err(|e| Error::format(&self.path, format!("parameters do not decode: {e}")))
    }

    /// The bytes of section `name`.
    ///
    /// # Errors
    /// [`Error::Format`] if the file has no section `name`.
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
    ///
    /// # Errors
    /// [`Error::Format`] if the section is missing or is not `expected` values long.
    pub fn section_f32(&self, name: &str, expected: usize) -> Result<Vec<f32>> {
        let b = self.sized(name, expected, 4)?;
        Ok(b.chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect())
    }

    /// Section `name` as `u64`s, checking its length is `expected` values.
    ///
    /// # Errors
    /// [`Error::Format`] if the section is missing or is not `expected` values long.
    pub fn section_u64(&self, name: &str, expected: usize) -> Result<Vec<u64>> {
        let b = self.sized(name, expected, 8)?;
        Ok(b.chunks_exact(8)
            .map(|c| u64::from_le_bytes(c.try_into().unwrap_or([0; 8])))
            .collect())
    }

    /// Section `name` as bytes, checking its length is `expected`.
    ///
    /// # Errors
    /// [`Error::Format`] if the section is missing or is not `expected` values long.
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

/// The element types a [`Slab`] can hold and a container section stores: `u8`, `u32`,
/// `u64` and `f32`, each written little-endian.
///
/// The trait is sealed (implemented here and nowhere else): a mapped slab reinterprets
/// file bytes as `[T]`, which is sound only for plain numbers that are valid for every bit
/// pattern ([`bytemuck::Pod`]) and whose file encoding is their little-endian bytes.
pub trait Plain: sealed::Sealed + bytemuck::Pod + Send + Sync + std::fmt::Debug {
    /// Decodes one value from its little-endian bytes (`size_of::<Self>()` of them).
    fn from_le(b: &[u8]) -> Self {
        let mut v = Self::zeroed();
        let out = bytemuck::bytes_of_mut(&mut v);
        out.copy_from_slice(&b[..out.len()]);
        if cfg!(target_endian = "big") {
            out.reverse();
        }
        v
    }
}

mod sealed {
    /// Keeps [`super::Plain`] closed to the types below.
    pub trait Sealed {}
    impl Sealed for u8 {}
    impl Sealed for u32 {}
    impl Sealed for u64 {}
    impl Sealed for f32 {}
}

impl Plain for u8 {}
impl Plain for u32 {}
impl Plain for u64 {}
impl Plain for f32 {}

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
                // `mapped` checked that the range lies inside the map and that its address
                // is aligned for `T`, so the cast cannot fail; `T: Pod` makes every bit
                // pattern a valid value, and the host is little-endian like the file.
                bytemuck::cast_slice(&map[*offset..*offset + *len * std::mem::size_of::<T>()])
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
///
/// # Errors
/// As [`Container::open_with`] without checksum verification: a damaged section is
/// reported in the text, a damaged preamble, header or layout is an error.
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
        // Every byte: preamble, header, padding after it, sections, padding between and
        // after them.
        let b = sample();
        for i in 0..b.len() {
            for mask in [0x01, 0x5A, 0xFF] {
                let mut m = b.clone();
                m[i] ^= mask;
                assert!(
                    Container::from_bytes("t", m, OpenOptions::default()).is_err(),
                    "flip {mask:#04x} at {i} of {} accepted",
                    b.len()
                );
            }
        }
    }

    #[test]
    fn streamed_save_equals_to_bytes() {
        let v = [1.0f32, -2.5, 3.25];
        let mut w = ContainerWriter::new("flat", "Flat", 3, Metric::L2, 1);
        w.section_f32("vectors", &v)
            .section_u32("u32s", &[1, 2, 3])
            .section("raw", vec![9u8; 70])
            .section("borrowed", &b"abc"[..]);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.vq");
        w.save(&path).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), w.to_bytes().unwrap());
        assert!(!dir.path().join("x.vq.tmp").exists());
        let c = Container::open(&path).unwrap();
        assert_eq!(c.section_f32("vectors", 3).unwrap(), v);
        assert_eq!(&*c.slab::<u32>("u32s", 3).unwrap(), &[1, 2, 3]);
        assert_eq!(c.section("borrowed").unwrap(), b"abc");
    }

    #[test]
    fn atomic_file_replaces_only_on_commit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join("f.bin");
        let tmp = dir.path().join("sub").join("f.bin.tmp");
        let mut f = AtomicFile::create(&path).unwrap();
        f.write_all(b"old").unwrap();
        f.commit().unwrap();
        // Abandoned (an error on the way): the old file stays, the temporary one goes.
        let mut f = AtomicFile::create(&path).unwrap();
        f.write_all(b"half").unwrap();
        assert!(tmp.exists());
        drop(f);
        assert!(!tmp.exists());
        assert_eq!(std::fs::read(&path).unwrap(), b"old");
        let mut f = AtomicFile::create(&path).unwrap();
        f.write_all(b"new").unwrap();
        f.write_zeros(5000).unwrap();
        f.commit().unwrap();
        let got = std::fs::read(&path).unwrap();
        assert_eq!((&got[..3], got.len()), (&b"new"[..], 5003));
        assert!(got[3..].iter().all(|&b| b == 0));
        assert!(!tmp.exists());
    }

    #[cfg(unix)]
    fn mode(p: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
    }

    #[cfg(unix)]
    fn chmod(p: &Path, m: u32) {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap();
    }

    // Issue 17 item 4: a rewrite keeps the replaced file's mode, whatever the umask.
    #[cfg(unix)]
    #[test]
    fn item4_rewrite_keeps_the_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.vq");
        for m in [0o600, 0o640, 0o604, 0o666] {
            std::fs::write(&path, b"old").unwrap();
            chmod(&path, m);
            let mut f = AtomicFile::create(&path).unwrap();
            f.write_all(b"new").unwrap();
            f.commit().unwrap();
            assert_eq!(std::fs::read(&path).unwrap(), b"new");
            assert_eq!(mode(&path), m, "mode {m:o} not kept");
        }
    }

    // Issue 17 item 4: a file without write bits is refused before anything is written,
    // even for root (for whom access(2) says every file is writable).
    #[cfg(unix)]
    #[test]
    fn item4_read_only_target_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.vq");
        std::fs::write(&path, b"old").unwrap();
        chmod(&path, 0o444);
        let e = AtomicFile::create(&path)
            .err()
            .expect("refused")
            .to_string();
        assert!(e.contains("f.vq") && e.contains("read-only"), "{e}");
        let e = ContainerWriter::new("flat", "Flat", 1, Metric::L2, 0)
            .save(&path)
            .unwrap_err()
            .to_string();
        assert!(e.contains("read-only"), "{e}");
        assert_eq!(std::fs::read(&path).unwrap(), b"old");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    // Issue 17 item 5: a rename that fails after the data is written leaves no
    // temporary file and the target untouched.
    #[test]
    fn item5_failed_commit_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.vq");
        let mut f = AtomicFile::create(&path).unwrap();
        f.write_zeros(100_000).unwrap();
        // The target becomes a non-empty directory: the rename cannot replace it.
        std::fs::create_dir(&path).unwrap();
        std::fs::write(path.join("keep"), b"x").unwrap();
        assert!(f.commit().is_err());
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("f.vq")]);
        // A directory as the target is refused up front.
        let e = AtomicFile::create(&path)
            .err()
            .expect("refused")
            .to_string();
        assert!(e.contains("is a directory"), "{e}");
    }

    // Issue 16: a directory opened as a container says so (mapping one fails with
    // "No such device").
    #[test]
    fn item16_directory_is_not_a_container() {
        let dir = tempfile::tempdir().unwrap();
        let e = Container::open(dir.path()).unwrap_err().to_string();
        assert!(
            e.contains("is a directory") && !e.contains("No such device"),
            "{e}"
        );
    }

    #[test]
    fn trailing_bytes_and_moved_sections_are_refused() {
        let mut b = sample();
        b.extend_from_slice(&[0; 64]);
        let e = Container::from_bytes("t", b, OpenOptions::default()).unwrap_err();
        assert!(e.to_string().contains("after the last section"), "{e}");
        // A section table moved by 64 bytes (header checksum fixed): not where the writer
        // puts it.
        let c = Container::from_bytes("t", sample(), OpenOptions::default()).unwrap();
        let mut h = c.header().clone();
        let last = h.sections.len() - 1;
        h.sections[last].offset += 64;
        let hb = postcard::to_stdvec(&h).unwrap();
        let mut f = sample();
        let hlen = u64::from_le_bytes(f[12..20].try_into().unwrap()) as usize;
        assert_eq!(hb.len(), hlen);
        f[24..24 + hlen].copy_from_slice(&hb);
        f[20..24].copy_from_slice(&crc32fast::hash(&hb).to_le_bytes());
        f.extend_from_slice(&[0; 64]);
        let e = Container::from_bytes("t", f, OpenOptions::default()).unwrap_err();
        assert!(e.to_string().contains("not where it belongs"), "{e}");
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
