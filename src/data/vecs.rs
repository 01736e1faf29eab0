//! TEXMEX vector files: each record is a little-endian `i32` dimension followed by that
//! many values — `f32` (`.fvecs`), `i32` (`.ivecs`) or `u8` (`.bvecs`).
//!
//! Readers validate every record: a truncated record, a non-positive dimension, or a
//! record whose dimension differs from the first is an [`Error::Format`] naming the file,
//! the record number and its byte offset.

use std::path::Path;

use super::npy::{Dtype, decode_payload_into};
use super::{read_file, write_file_atomic};
use crate::error::{Error, Result};
use crate::vectors::VectorSet;

/// Parses TEXMEX records with `elem` bytes per value; returns (dim, n, payload offsets).
fn scan_records(path: &Path, bytes: &[u8], elem: usize) -> Result<(usize, usize)> {
    let dim = first_dimension(path, bytes, bytes.len())?;
    let d0 = dim as i32;
    let rec = 4 + dim * elem;
    let n = bytes.len() / rec;
    let rem = bytes.len() % rec;
    // Check every record's dimension, then report truncation of the last one.
    for i in 0..n {
        let off = i * rec;
        let d = i32::from_le_bytes([bytes[off], bytes[off + 1], bytes[off + 2], bytes[off + 3]]);
        if d != d0 {
            return Err(Error::format(
                path,
                format!(
                    "record {i} at byte {off}: dimension {d} differs from the first record's {d0}"
                ),
            ));
        }
    }
    if rem != 0 {
        let off = n * rec;
        if rem >= 4 {
            let d =
                i32::from_le_bytes([bytes[off], bytes[off + 1], bytes[off + 2], bytes[off + 3]]);
            if d != d0 {
                return Err(Error::format(
                    path,
                    format!(
                        "record {n} at byte {off}: dimension {d} differs from the first record's {d0}"
                    ),
                ));
            }
        }
        return Err(truncated(path, n, rec, bytes.len()));
    }
    Ok((dim, n))
}

/// The dimension in the first record header of a TEXMEX file of `len` bytes (`head`:
/// its first 4 bytes, or all of a shorter file).
///
/// # Errors
/// [`Error::Format`] for an empty file, a truncated header, a dimension outside
/// 1..=2^24.
pub(super) fn first_dimension(path: &Path, head: &[u8], len: usize) -> Result<usize> {
    if len == 0 {
        return Err(Error::format(path, "file is empty: no records"));
    }
    if len < 4 || head.len() < 4 {
        return Err(Error::format(
            path,
            format!("record 0 at byte 0: truncated dimension header ({len} of 4 bytes)"),
        ));
    }
    let d0 = i32::from_le_bytes([head[0], head[1], head[2], head[3]]);
    if d0 <= 0 || d0 > (1 << 24) {
        return Err(Error::format(
            path,
            format!("record 0 at byte 0: invalid dimension {d0} (must be 1..=16777216)"),
        ));
    }
    Ok(d0 as usize)
}

/// The error for a file of `len` bytes whose last record (number `n`, `rec` bytes per
/// record) is cut short.
pub(super) fn truncated(path: &Path, n: usize, rec: usize, len: usize) -> Error {
    Error::format(
        path,
        format!(
            "record {n} at byte {} is truncated: {} of {rec} bytes present (file length \
             {len} is not a whole number of records)",
            n * rec,
            len % rec
        ),
    )
}

/// Reads an `.fvecs` file.
///
/// # Errors
/// [`Error::Io`] if the file cannot be read; [`Error::Format`] naming the record and
/// byte offset when the file is empty, a dimension header is not in 1..=2^24 or differs
/// from the first record's, or the last record is truncated.
pub fn read_fvecs(path: impl AsRef<Path>) -> Result<VectorSet> {
    let path = path.as_ref();
    let bytes = read_file(path)?;
    let (dim, n) = scan_records(path, &bytes, 4)?;
    let rec = 4 + 4 * dim;
    let mut data = Vec::with_capacity(n * dim);
    for i in 0..n {
        decode_payload_into(Dtype::F32, &bytes[i * rec + 4..(i + 1) * rec], &mut data);
    }
    VectorSet::new(data, dim)
}

/// Reads a `.bvecs` file (bytes widened to `f32`).
///
/// # Errors
/// [`Error::Io`] if the file cannot be read; [`Error::Format`] naming the record and
/// byte offset when the file is empty, a dimension header is not in 1..=2^24 or differs
/// from the first record's, or the last record is truncated.
pub fn read_bvecs(path: impl AsRef<Path>) -> Result<VectorSet> {
    let path = path.as_ref();
    let bytes = read_file(path)?;
    let (dim, n) = scan_records(path, &bytes, 1)?;
    let rec = 4 + dim;
    let mut data = Vec::with_capacity(n * dim);
    for i in 0..n {
        decode_payload_into(Dtype::U8, &bytes[i * rec + 4..(i + 1) * rec], &mut data);
    }
    VectorSet::new(data, dim)
}

/// Reads an `.ivecs` file: returns (row-major values, dimension).
///
/// # Errors
/// [`Error::Io`] if the file cannot be read; [`Error::Format`] naming the record and
/// byte offset when the file is empty, a dimension header is not in 1..=2^24 or differs
/// from the first record's, or the last record is truncated.
pub fn read_ivecs(path: impl AsRef<Path>) -> Result<(Vec<i32>, usize)> {
    let path = path.as_ref();
    let bytes = read_file(path)?;
    let (dim, n) = scan_records(path, &bytes, 4)?;
    let rec = 4 + 4 * dim;
    let mut data = Vec::with_capacity(n * dim);
    for i in 0..n {
        data.extend(
            bytes[i * rec + 4..(i + 1) * rec]
                .chunks_exact(4)
                .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]])),
        );
    }
    Ok((data, dim))
}

fn encode_records<T: Copy>(
    rows: &[T],
    dim: usize,
    elem: usize,
    put: impl Fn(T, &mut Vec<u8>),
) -> Vec<u8> {
    let n = rows.len().checked_div(dim).unwrap_or(0);
    let mut out = Vec::with_capacity(n * (4 + dim * elem));
    for r in rows.chunks_exact(dim.max(1)) {
        out.extend_from_slice(&(dim as i32).to_le_bytes());
        for &x in r {
            put(x, &mut out);
        }
    }
    out
}

/// Writes an `.fvecs` file (atomically: temp file + rename).
///
/// # Errors
/// [`Error::Io`] if the file cannot be written.
pub fn write_fvecs(path: impl AsRef<Path>, v: &VectorSet) -> Result<()> {
    let bytes = encode_records(v.as_slice(), v.dim(), 4, |x: f32, o| {
        o.extend_from_slice(&x.to_le_bytes())
    });
    write_file_atomic(path.as_ref(), &bytes)
}

/// Writes an `.ivecs` file from row-major values of dimension `dim` (atomically).
///
/// # Errors
/// [`Error::InvalidParameter`] when `dim` is zero or does not divide `data.len()`;
/// [`Error::Io`] if the file cannot be written.
pub fn write_ivecs(path: impl AsRef<Path>, data: &[i32], dim: usize) -> Result<()> {
    write_records(path.as_ref(), data, dim, 4, |x: i32, o| {
        o.extend_from_slice(&x.to_le_bytes())
    })
}

/// Writes a `.bvecs` file from row-major bytes of dimension `dim` (atomically).
///
/// # Errors
/// [`Error::InvalidParameter`] when `dim` is zero or does not divide `data.len()`;
/// [`Error::Io`] if the file cannot be written.
pub fn write_bvecs(path: impl AsRef<Path>, data: &[u8], dim: usize) -> Result<()> {
    write_records(path.as_ref(), data, dim, 1, |x: u8, o| o.push(x))
}

fn write_records<T: Copy>(
    path: &Path,
    data: &[T],
    dim: usize,
    elem: usize,
    put: impl Fn(T, &mut Vec<u8>),
) -> Result<()> {
    if dim == 0 || !data.len().is_multiple_of(dim) {
        return Err(Error::param(
            "dim",
            format!(
                "{}: {} values are not whole rows of a positive dimension {dim}",
                path.display(),
                data.len()
            ),
        ));
    }
    write_file_atomic(path, &encode_records(data, dim, elem, put))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp() -> tempfile::TempDir {
        tempfile::tempdir().unwrap()
    }

    #[test]
    fn fvecs_round_trip() {
        let d = tmp();
        let p = d.path().join("a.fvecs");
        let v = VectorSet::new((0..30).map(|i| i as f32 * 0.5 - 3.0).collect(), 3).unwrap();
        write_fvecs(&p, &v).unwrap();
        assert_eq!(read_fvecs(&p).unwrap(), v);
    }

    #[test]
    fn ivecs_and_bvecs_round_trip() {
        let d = tmp();
        let p = d.path().join("a.ivecs");
        let data: Vec<i32> = (0..40).map(|i| i * 7 - 100).collect();
        write_ivecs(&p, &data, 4).unwrap();
        assert_eq!(read_ivecs(&p).unwrap(), (data, 4));
        let pb = d.path().join("a.bvecs");
        let bytes: Vec<u8> = (0..=255).collect();
        write_bvecs(&pb, &bytes, 16).unwrap();
        let back = read_bvecs(&pb).unwrap();
        assert_eq!(back.dim(), 16);
        assert_eq!(
            back.as_slice(),
            bytes
                .iter()
                .map(|&b| b as f32)
                .collect::<Vec<_>>()
                .as_slice()
        );
    }

    fn message(e: Error) -> String {
        e.to_string()
    }

    #[test]
    fn truncated_record_names_record_and_offset() {
        let d = tmp();
        let p = d.path().join("t.fvecs");
        let v = VectorSet::new(vec![1.0; 12], 4).unwrap();
        write_fvecs(&p, &v).unwrap();
        let mut b = std::fs::read(&p).unwrap();
        b.truncate(b.len() - 3);
        std::fs::write(&p, &b).unwrap();
        let m = message(read_fvecs(&p).unwrap_err());
        assert!(
            m.contains("record 2 at byte 40") && m.contains("truncated"),
            "{m}"
        );
        assert!(m.contains("t.fvecs"), "{m}");
    }

    #[test]
    fn dimension_change_is_reported() {
        let d = tmp();
        let p = d.path().join("m.fvecs");
        let mut b = Vec::new();
        for dim in [2i32, 2, 3] {
            b.extend_from_slice(&dim.to_le_bytes());
            for _ in 0..dim {
                b.extend_from_slice(&1.0f32.to_le_bytes());
            }
        }
        std::fs::write(&p, &b).unwrap();
        let m = message(read_fvecs(&p).unwrap_err());
        assert!(
            m.contains("record 2 at byte 24") && m.contains("dimension 3 differs"),
            "{m}"
        );
    }

    #[test]
    fn bad_dimension_and_empty_file() {
        let d = tmp();
        let p = d.path().join("z.fvecs");
        std::fs::write(&p, (-5i32).to_le_bytes()).unwrap();
        assert!(message(read_fvecs(&p).unwrap_err()).contains("invalid dimension -5"));
        std::fs::write(&p, []).unwrap();
        assert!(message(read_fvecs(&p).unwrap_err()).contains("empty"));
        std::fs::write(&p, [1u8, 0]).unwrap();
        assert!(message(read_fvecs(&p).unwrap_err()).contains("truncated dimension header"));
        let missing = d.path().join("missing.fvecs");
        assert!(matches!(read_fvecs(&missing), Err(Error::Io { .. })));
    }
}
