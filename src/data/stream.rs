//! Reading a vector file in pieces: the rows `lo..hi` of an `.fvecs`, `.bvecs` or 2-D
//! `.npy` file, or a seeded sample of its rows, without holding the file in memory —
//! what streamed builds (`vecquant build`, `vecquant add`) read their base vectors with,
//! so their peak memory is the index plus one chunk rather than the raw vectors.
//!
//! [`VectorReader::open`] checks what can be checked without reading the rows — the
//! format, the first record's dimension, a length that is a whole number of records —
//! and each read checks its records' dimension headers, with the same messages (record
//! number, byte offset) as the whole-file readers of [`super::vecs`] and [`super::npy`].

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use super::npy::{self, Dtype};
use super::vecs;
use crate::error::{Error, Result};
use crate::rng::{sample_indices, seeded};
use crate::vectors::VectorSet;

/// How the rows sit in the file.
#[derive(Clone, Copy, Debug)]
enum Layout {
    /// TEXMEX records: an `i32` dimension then the values (`f32` for `.fvecs`, `u8` for
    /// `.bvecs`).
    Vecs { dtype: Dtype },
    /// A C-order `.npy` payload of `dtype`.
    Npy { dtype: Dtype },
}

/// A vector file opened for reading rows in pieces.
#[derive(Debug)]
pub struct VectorReader {
    path: PathBuf,
    file: File,
    layout: Layout,
    dim: usize,
    n: usize,
    /// Byte offset of row 0's record.
    start: u64,
    /// Bytes per row's record.
    rec: usize,
    buf: Vec<u8>,
}

impl VectorReader {
    /// Opens `path` (format by extension, as [`super::read_vectors`]).
    ///
    /// # Errors
    /// [`Error::Io`] if the file cannot be opened or read; [`Error::Format`] for an
    /// unsupported extension, an empty file, a bad first dimension header, a length that
    /// is not a whole number of records, or a bad `.npy` header.
    pub fn open(path: impl AsRef<Path>) -> Result<VectorReader> {
        let path = path.as_ref();
        let mut file = File::open(path).map_err(|e| Error::io(path, e))?;
        let meta = file.metadata().map_err(|e| Error::io(path, e))?;
        if meta.is_dir() {
            return Err(Error::is_directory(path));
        }
        let len = usize::try_from(meta.len())
            .map_err(|_| Error::format(path, "file too large for this platform"))?;
        let ext = super::extension(path);
        let (layout, dim, n, start, rec) = match ext.as_str() {
            "fvecs" | "bvecs" => {
                let dtype = if ext == "fvecs" {
                    Dtype::F32
                } else {
                    Dtype::U8
                };
                let (dim, n) = vecs_shape(path, &mut file, len, dtype.size())?;
                (Layout::Vecs { dtype }, dim, n, 0u64, 4 + dim * dtype.size())
            }
            "npy" => {
                let mut prefix = vec![0u8; len.min(12)];
                file.read_exact(&mut prefix)
                    .map_err(|e| Error::io(path, e))?;
                let (_, hend) = npy::header_end(path, &prefix, len)?;
                let mut head = vec![0u8; hend];
                file.seek(SeekFrom::Start(0))
                    .and_then(|_| file.read_exact(&mut head))
                    .map_err(|e| Error::io(path, e))?;
                let h = npy::parse_header(path, &head, len)?;
                if h.shape.len() != 2 || h.shape[1] == 0 {
                    return Err(npy::not_2d(path, &h.shape));
                }
                let (n, dim) = (h.shape[0], h.shape[1]);
                let rec = dim * h.dtype.size();
                (
                    Layout::Npy { dtype: h.dtype },
                    dim,
                    n,
                    h.data_at as u64,
                    rec,
                )
            }
            other => {
                return Err(Error::format(
                    path,
                    format!(
                        "unsupported vector file extension `.{other}`; expected .fvecs, \
                         .bvecs or .npy"
                    ),
                ));
            }
        };
        Ok(VectorReader {
            path: path.to_path_buf(),
            file,
            layout,
            dim,
            n,
            start,
            rec,
            buf: Vec::new(),
        })
    }

    /// The vectors' dimension.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Number of vectors in the file.
    pub fn len(&self) -> usize {
        self.n
    }

    /// Whether the file holds no vectors (an `.npy` array of shape `(0, d)`).
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Rows `lo..hi` (clamped to the file) as vectors.
    ///
    /// # Errors
    /// [`Error::Io`] if reading fails; [`Error::Format`] naming the record and its byte
    /// offset when a record's dimension header differs from the first record's.
    pub fn read_rows(&mut self, lo: usize, hi: usize) -> Result<VectorSet> {
        let hi = hi.min(self.n);
        let lo = lo.min(hi);
        let mut out = Vec::with_capacity((hi - lo) * self.dim);
        self.read_into(lo, hi, &mut out)?;
        VectorSet::new(out, self.dim)
    }

    /// A seeded sample of `k` rows (all rows, in order, when `k ≥ len`), in file order.
    ///
    /// # Errors
    /// As [`VectorReader::read_rows`].
    pub fn sample(&mut self, k: usize, seed: u64) -> Result<VectorSet> {
        if k >= self.n {
            return self.read_rows(0, self.n);
        }
        let rows = sample_indices(self.n, k, &mut seeded(seed));
        let mut out = Vec::with_capacity(k * self.dim);
        // Consecutive sampled rows are read in one piece.
        let mut i = 0;
        while i < rows.len() {
            let mut j = i + 1;
            while j < rows.len() && rows[j] == rows[j - 1] + 1 {
                j += 1;
            }
            self.read_into(rows[i], rows[j - 1] + 1, &mut out)?;
            i = j;
        }
        VectorSet::new(out, self.dim)
    }

    /// Appends rows `lo..hi` (within the file) to `out`.
    fn read_into(&mut self, lo: usize, hi: usize, out: &mut Vec<f32>) -> Result<()> {
        let bytes = (hi - lo) * self.rec;
        self.buf.resize(bytes, 0);
        let at = self.start + (lo * self.rec) as u64;
        let path = &self.path;
        self.file
            .seek(SeekFrom::Start(at))
            .and_then(|_| self.file.read_exact(&mut self.buf))
            .map_err(|e| Error::io(path, e))?;
        match self.layout {
            Layout::Npy { dtype } => npy::decode_payload_into(dtype, &self.buf, out),
            Layout::Vecs { dtype } => {
                for (i, r) in self.buf.chunks_exact(self.rec).enumerate() {
                    let d = i32::from_le_bytes([r[0], r[1], r[2], r[3]]);
                    if d as i64 != self.dim as i64 {
                        let row = lo + i;
                        return Err(Error::format(
                            path,
                            format!(
                                "record {row} at byte {}: dimension {d} differs from the \
                                 first record's {}",
                                row * self.rec,
                                self.dim
                            ),
                        ));
                    }
                    npy::decode_payload_into(dtype, &r[4..], out);
                }
            }
        }
        Ok(())
    }
}

/// The dimension (first record) and record count of a TEXMEX file of `len` bytes.
fn vecs_shape(path: &Path, file: &mut File, len: usize, elem: usize) -> Result<(usize, usize)> {
    let mut head = [0u8; 4];
    let got = len.min(4);
    file.read_exact(&mut head[..got])
        .map_err(|e| Error::io(path, e))?;
    let dim = vecs::first_dimension(path, &head[..got], len)?;
    let rec = 4 + dim * elem;
    if !len.is_multiple_of(rec) {
        return Err(vecs::truncated(path, len / rec, rec, len));
    }
    Ok((dim, len / rec))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{read_vectors, write_vectors};

    fn data(n: usize, dim: usize) -> VectorSet {
        VectorSet::new((0..n * dim).map(|i| i as f32 * 0.5 - 7.0).collect(), dim).unwrap()
    }

    /// Every format: pieces and samples equal the whole-file reader's rows.
    #[test]
    fn pieces_and_samples_equal_the_whole_file() {
        let dir = tempfile::tempdir().unwrap();
        let v = data(1000, 7);
        let bytes: Vec<u8> = (0..300 * 5).map(|i| (i * 7 % 251) as u8).collect();
        let b = dir.path().join("b.bvecs");
        vecs::write_bvecs(&b, &bytes, 5).unwrap();
        let mut files = vec![b];
        for name in ["a.fvecs", "a.npy"] {
            let p = dir.path().join(name);
            write_vectors(&p, &v).unwrap();
            files.push(p);
        }
        for p in files {
            let whole = read_vectors(&p).unwrap();
            let mut r = VectorReader::open(&p).unwrap();
            assert_eq!((r.len(), r.dim()), (whole.len(), whole.dim()), "{p:?}");
            let d = r.dim();
            let mut joined = Vec::new();
            for lo in (0..r.len()).step_by(128) {
                joined.extend_from_slice(r.read_rows(lo, lo + 128).unwrap().as_slice());
            }
            assert_eq!(joined, whole.as_slice(), "{p:?}");
            let s = r.sample(100, 3).unwrap();
            let rows = sample_indices(r.len(), 100, &mut seeded(3));
            for (i, &row) in rows.iter().enumerate() {
                assert_eq!(
                    &s.as_slice()[i * d..(i + 1) * d],
                    &whole.as_slice()[row * d..(row + 1) * d]
                );
            }
            assert_eq!(r.sample(10_000, 3).unwrap().as_slice(), whole.as_slice());
            assert!(r.read_rows(r.len() + 5, r.len() + 9).unwrap().is_empty());
        }
    }

    /// Bad files are the whole-file readers' errors, found at open or at the read of
    /// the bad record.
    #[test]
    fn bad_files_are_format_errors_naming_the_record() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.fvecs");
        write_vectors(&p, &data(10, 4)).unwrap();
        let mut bytes = std::fs::read(&p).unwrap();
        // Truncated: refused at open, as read_fvecs refuses it.
        std::fs::write(&p, &bytes[..bytes.len() - 3]).unwrap();
        let e = VectorReader::open(&p).unwrap_err().to_string();
        assert!(e.contains("record 9 at byte 180 is truncated"), "{e}");
        assert_eq!(e, read_vectors(&p).unwrap_err().to_string());
        // A record with another dimension: found by the read that covers it.
        bytes[7 * 20..7 * 20 + 4].copy_from_slice(&5i32.to_le_bytes());
        std::fs::write(&p, &bytes).unwrap();
        let mut r = VectorReader::open(&p).unwrap();
        assert_eq!(r.read_rows(0, 5).unwrap().len(), 5);
        let e = r.read_rows(5, 10).unwrap_err().to_string();
        assert!(
            e.contains("record 7 at byte 140: dimension 5 differs"),
            "{e}"
        );
        assert_eq!(e, read_vectors(&p).unwrap_err().to_string());
        // Empty, unknown extension, a directory, a 1-D npy.
        let empty = dir.path().join("e.fvecs");
        std::fs::write(&empty, b"").unwrap();
        assert!(
            VectorReader::open(&empty)
                .unwrap_err()
                .to_string()
                .contains("empty")
        );
        let txt = dir.path().join("a.txt");
        std::fs::write(&txt, b"1 2 3").unwrap();
        assert!(
            VectorReader::open(&txt)
                .unwrap_err()
                .to_string()
                .contains(".txt")
        );
        assert!(VectorReader::open(dir.path()).is_err());
        let npy1 = dir.path().join("one.npy");
        std::fs::write(&npy1, npy::encode_npy_f32(&[1.0, 2.0], &[2])).unwrap();
        let e = VectorReader::open(&npy1).unwrap_err().to_string();
        assert!(e.contains("expected a 2-D array"), "{e}");
        let short = dir.path().join("s.npy");
        let mut b = npy::encode_npy_f32(&[1.0; 8], &[2, 4]);
        b.truncate(b.len() - 4);
        std::fs::write(&short, &b).unwrap();
        let e = VectorReader::open(&short).unwrap_err().to_string();
        assert!(e.contains("file truncated"), "{e}");
    }
}
