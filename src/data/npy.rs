//! NumPy `.npy` arrays (format versions 1.0, 2.0 and 3.0).
//!
//! Supported element types: `<f4`, `<f8`, `|u1` (also spelled `<u1`), C order. Every
//! header field is validated, and the payload length must equal the product of the shape
//! times the element size exactly; anything else is an [`Error::Format`] naming the file
//! and the byte offset or field.

use std::path::Path;

use super::{read_file, write_file_atomic};
use crate::error::{Error, Result};
use crate::vectors::VectorSet;

const MAGIC: &[u8; 6] = b"\x93NUMPY";

/// Element type of an `.npy` array.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dtype {
    /// `<f4`
    F32,
    /// `<f8`
    F64,
    /// `|u1`
    U8,
}

impl Dtype {
    pub(crate) fn size(self) -> usize {
        match self {
            Dtype::F32 => 4,
            Dtype::F64 => 8,
            Dtype::U8 => 1,
        }
    }
}

/// A parsed `.npy` array with values widened to `f32`.
#[derive(Clone, Debug, PartialEq)]
pub struct NpyArray {
    /// The array's shape.
    pub shape: Vec<usize>,
    /// The element type stored in the file.
    pub dtype: Dtype,
    /// Values in C (row-major) order, converted to `f32`.
    pub data: Vec<f32>,
}

/// Parses the bytes of an `.npy` file; `path` is used in error messages only.
///
/// # Errors
/// [`Error::Format`] naming the byte offset or header field when the magic, version,
/// header (dtype, Fortran order, shape) or payload length is wrong or unsupported.
pub fn parse_npy(path: &Path, bytes: &[u8]) -> Result<NpyArray> {
    let h = parse_header(path, bytes, bytes.len())?;
    Ok(NpyArray {
        data: decode_payload(h.dtype, &bytes[h.data_at..]),
        shape: h.shape,
        dtype: h.dtype,
    })
}

/// What an `.npy` header says, checked against the file's length.
#[derive(Clone, Debug)]
pub(crate) struct Header {
    pub shape: Vec<usize>,
    pub dtype: Dtype,
    /// Byte offset of the payload.
    pub data_at: usize,
}

/// Where the header text of an `.npy` file ends (`prefix`: at least the file's first 12
/// bytes, or all of a shorter file; `file_len`: the whole file's length).
pub(crate) fn header_end(path: &Path, prefix: &[u8], file_len: usize) -> Result<(usize, usize)> {
    let err = |m: String| Error::format(path, m);
    if prefix.len() < 10 || &prefix[..6] != MAGIC {
        return Err(err(
            "bad .npy header at byte 0: missing the \\x93NUMPY magic".into(),
        ));
    }
    let (hlen, hstart): (usize, usize) = match prefix[6] {
        1 => (u16::from_le_bytes([prefix[8], prefix[9]]) as usize, 10),
        2 | 3 => {
            if prefix.len() < 12 {
                return Err(err(
                    "bad .npy header at byte 8: truncated header length".into()
                ));
            }
            (
                u32::from_le_bytes([prefix[8], prefix[9], prefix[10], prefix[11]]) as usize,
                12,
            )
        }
        v => {
            return Err(err(format!(
                "bad .npy header at byte 6: unsupported format version {v}"
            )));
        }
    };
    let hend = hstart
        .checked_add(hlen)
        .filter(|&e| e <= file_len)
        .ok_or_else(|| err(format!("bad .npy header at byte {hstart}: header length {hlen} runs past the end of the file ({file_len} bytes)")))?;
    Ok((hstart, hend))
}

/// Parses the header of an `.npy` file from `bytes` (a prefix holding at least the
/// header) and checks that the payload fills the rest of the file's `file_len` bytes
/// exactly.
pub(crate) fn parse_header(path: &Path, bytes: &[u8], file_len: usize) -> Result<Header> {
    let err = |m: String| Error::format(path, m);
    let (hstart, hend) = header_end(path, bytes, file_len)?;
    let header = bytes
        .get(hstart..hend)
        .and_then(|h| std::str::from_utf8(h).ok())
        .ok_or_else(|| err(format!("bad .npy header at byte {hstart}: not valid text")))?;
    let descr = dict_value(header, "descr")
        .ok_or_else(|| err("bad .npy header: no 'descr' field".into()))?;
    let descr = descr.trim().trim_matches(|c| c == '\'' || c == '"');
    let dtype = match descr {
        "<f4" | "f4" => Dtype::F32,
        "<f8" | "f8" => Dtype::F64,
        "|u1" | "<u1" | "u1" | "|b1" => Dtype::U8,
        other => {
            return Err(err(format!(
                "unsupported .npy dtype `{other}`: expected little-endian <f4, <f8 or |u1"
            )));
        }
    };
    let fortran = dict_value(header, "fortran_order")
        .ok_or_else(|| err("bad .npy header: no 'fortran_order' field".into()))?;
    if fortran.trim() != "False" {
        return Err(err(
            "unsupported .npy layout: fortran_order must be False (C order)".into(),
        ));
    }
    let shape_txt = dict_value(header, "shape")
        .ok_or_else(|| err("bad .npy header: no 'shape' field".into()))?;
    let inner = shape_txt
        .trim()
        .strip_prefix('(')
        .and_then(|s| s.strip_suffix(')'))
        .ok_or_else(|| {
            err(format!(
                "bad .npy header: shape `{shape_txt}` is not a tuple"
            ))
        })?;
    let mut shape = Vec::new();
    for part in inner.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        shape.push(part.parse::<usize>().map_err(|_| {
            err(format!(
                "bad .npy header: shape entry `{part}` is not a count"
            ))
        })?);
    }
    let count = shape
        .iter()
        .try_fold(1usize, |a, &b| a.checked_mul(b))
        .ok_or_else(|| err("bad .npy header: shape overflows".into()))?;
    let payload = file_len - hend;
    let want = count
        .checked_mul(dtype.size())
        .ok_or_else(|| err("bad .npy header: shape overflows".into()))?;
    if payload != want {
        return Err(err(format!(
            "payload at byte {hend} holds {payload} bytes but shape {shape:?} of {descr} needs {want}{}",
            if payload < want {
                " (file truncated)"
            } else {
                " (trailing bytes)"
            }
        )));
    }
    Ok(Header {
        shape,
        dtype,
        data_at: hend,
    })
}

/// Payload bytes of `dtype` widened to `f32`.
pub(crate) fn decode_payload(dtype: Dtype, payload: &[u8]) -> Vec<f32> {
    let mut out = Vec::with_capacity(payload.len() / dtype.size());
    decode_payload_into(dtype, payload, &mut out);
    out
}

/// [`decode_payload`], appending to `out` (no intermediate vector): the one decoder of
/// little-endian values for `.npy` payloads and TEXMEX records alike.
pub(crate) fn decode_payload_into(dtype: Dtype, payload: &[u8], out: &mut Vec<f32>) {
    match dtype {
        Dtype::F32 => out.extend(
            payload
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])),
        ),
        Dtype::F64 => out.extend(
            payload
                .chunks_exact(8)
                .map(|c| f64::from_le_bytes(c.try_into().unwrap_or([0; 8])) as f32),
        ),
        Dtype::U8 => out.extend(payload.iter().map(|&b| f32::from(b))),
    }
}

/// The error for an array that is not vectors × dimension.
pub(crate) fn not_2d(path: &Path, shape: &[usize]) -> Error {
    Error::format(
        path,
        format!("expected a 2-D array (vectors × dimension), found shape {shape:?}"),
    )
}

/// The text of `key`'s value in a Python dict literal (up to the next top-level comma).
fn dict_value<'a>(header: &'a str, key: &str) -> Option<&'a str> {
    let pat1 = format!("'{key}'");
    let pat2 = format!("\"{key}\"");
    let start = header
        .find(&pat1)
        .map(|i| i + pat1.len())
        .or_else(|| header.find(&pat2).map(|i| i + pat2.len()))?;
    let rest = header[start..].trim_start().strip_prefix(':')?;
    let mut depth = 0i32;
    for (i, c) in rest.char_indices() {
        match c {
            '(' | '[' => depth += 1,
            ')' | ']' => depth -= 1,
            ',' | '}' if depth == 0 => return Some(rest[..i].trim()),
            _ => {}
        }
    }
    None
}

/// Reads any supported `.npy` file.
///
/// # Errors
/// [`Error::Io`] if the file cannot be read; [`Error::Format`] as [`parse_npy`].
pub fn read_npy(path: impl AsRef<Path>) -> Result<NpyArray> {
    let path = path.as_ref();
    let bytes = read_file(path)?;
    parse_npy(path, &bytes)
}

/// Reads a 2-D `.npy` array as a [`VectorSet`] (rows are vectors).
///
/// # Errors
/// As [`read_npy`], and [`Error::Format`] when the array is not 2-D with at least one
/// column.
pub fn read_npy_f32(path: impl AsRef<Path>) -> Result<VectorSet> {
    let path = path.as_ref();
    let a = read_npy(path)?;
    if a.shape.len() != 2 || a.shape[1] == 0 {
        return Err(not_2d(path, &a.shape));
    }
    VectorSet::new(a.data, a.shape[1])
}

/// Builds the bytes of a version-1.0 `.npy` file holding `data` as `<f4` with `shape`.
pub fn encode_npy_f32(data: &[f32], shape: &[usize]) -> Vec<u8> {
    let shape_txt = match shape.len() {
        1 => format!("({},)", shape[0]),
        _ => format!(
            "({})",
            shape
                .iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape_txt}, }}");
    // Pad so the payload starts on a 64-byte boundary, ending the header with '\n'.
    let total = 10 + header.len() + 1;
    let pad = (64 - total % 64) % 64;
    header.push_str(&" ".repeat(pad));
    header.push('\n');
    let mut out = Vec::with_capacity(10 + header.len() + data.len() * 4);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[1, 0]);
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    for x in data {
        out.extend_from_slice(&x.to_le_bytes());
    }
    out
}

/// Writes `data` with `shape` as a `<f4` `.npy` file (atomically).
///
/// # Errors
/// [`Error::InvalidParameter`] when `shape` does not hold `data.len()` values;
/// [`Error::Io`] if the file cannot be written.
pub fn write_npy_f32(path: impl AsRef<Path>, data: &[f32], shape: &[usize]) -> Result<()> {
    let count: usize = shape.iter().product();
    if count != data.len() {
        return Err(Error::param(
            "shape",
            format!(
                "shape {shape:?} holds {count} values but {} were given",
                data.len()
            ),
        ));
    }
    write_file_atomic(path.as_ref(), &encode_npy_f32(data, shape))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_f32() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("a.npy");
        let v = VectorSet::new((0..24).map(|i| i as f32 / 3.0).collect(), 6).unwrap();
        write_npy_f32(&p, v.as_slice(), &[4, 6]).unwrap();
        assert_eq!(read_npy_f32(&p).unwrap(), v);
        let raw = std::fs::read(&p).unwrap();
        assert_eq!((raw.len() - 24 * 4) % 64, 0, "payload is 64-byte aligned");
    }

    fn with_header(descr: &str, shape: &str, payload: &[u8]) -> Vec<u8> {
        let h = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}\n");
        let mut out = MAGIC.to_vec();
        out.extend_from_slice(&[1, 0]);
        out.extend_from_slice(&(h.len() as u16).to_le_bytes());
        out.extend_from_slice(h.as_bytes());
        out.extend_from_slice(payload);
        out
    }

    #[test]
    fn f64_and_u8_are_widened() {
        let p = Path::new("x.npy");
        let mut payload = Vec::new();
        for x in [1.5f64, -2.0, 3.25, 4.0] {
            payload.extend_from_slice(&x.to_le_bytes());
        }
        let a = parse_npy(p, &with_header("<f8", "(2, 2)", &payload)).unwrap();
        assert_eq!(a.data, vec![1.5, -2.0, 3.25, 4.0]);
        let b = parse_npy(p, &with_header("|u1", "(3,)", &[7, 8, 255])).unwrap();
        assert_eq!((b.shape, b.data), (vec![3], vec![7.0, 8.0, 255.0]));
    }

    #[test]
    fn malformed_files_are_named() {
        let p = Path::new("bad.npy");
        let m = parse_npy(p, b"NOTNUMPY12345").unwrap_err().to_string();
        assert!(m.contains("bad.npy") && m.contains("magic"), "{m}");
        let m = parse_npy(p, &with_header(">f4", "(1, 1)", &[0; 4]))
            .unwrap_err()
            .to_string();
        assert!(m.contains("unsupported .npy dtype `>f4`"), "{m}");
        let m = parse_npy(p, &with_header("<i8", "(1, 1)", &[0; 8]))
            .unwrap_err()
            .to_string();
        assert!(m.contains("unsupported .npy dtype"), "{m}");
        let m = parse_npy(p, &with_header("<f4", "(2, 2)", &[0; 12]))
            .unwrap_err()
            .to_string();
        assert!(m.contains("truncated") && m.contains("needs 16"), "{m}");
        let mut bytes = with_header("<f4", "(1, 1)", &[0; 4]);
        bytes[8] = 0xff;
        bytes[9] = 0xff;
        let m = parse_npy(p, &bytes).unwrap_err().to_string();
        assert!(m.contains("runs past the end"), "{m}");
        let m = parse_npy(p, &with_header("<f4", "(a, 1)", &[0; 4]))
            .unwrap_err()
            .to_string();
        assert!(m.contains("not a count"), "{m}");
    }
}
