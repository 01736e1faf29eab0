//! [`Container`]: opens, validates and reads a container file (memory-mapped). Its
//! human-readable description is `vecquant::model::inspect` (`vecquant inspect`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::de::DeserializeOwned;

use super::{
    ALIGN, FORMAT_VERSION, Header, MAGIC, MAX_HEADER, PREAMBLE, Plain, Slab, align_up_u64,
};
use crate::error::{Error, Result};

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

/// Memory-maps `file` (opened from `path`) read-only.
///
/// # Errors
/// [`Error::Io`] naming `path` if the map fails.
pub(crate) fn map_file(file: &std::fs::File, path: &Path) -> Result<memmap2::Mmap> {
    if file.metadata().is_ok_and(|m| m.is_dir()) {
        return Err(Error::is_directory(path));
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
pub(super) enum Bytes {
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
            return Err(Error::is_directory(path));
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
