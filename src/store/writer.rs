//! [`ContainerWriter`]: lays out the header and the sections and streams them to a file
//! or into memory.

use std::borrow::Cow;
use std::path::Path;

use serde::Serialize;

use super::{
    ALIGN, AtomicFile, FORMAT_VERSION, Header, MAGIC, PREAMBLE, Plain, SectionEntry, align_up,
};
use crate::error::{Error, Result};
use crate::metric::Metric;

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
