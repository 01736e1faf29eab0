//! GGUF v3 files: the writer (validated, atomic) and the bounds-checked reader.

use std::path::Path;

use super::types::{GgmlType, GgufTensor, GgufValue, GgufValueType, element_count};
use crate::error::{Error, Result};
use crate::store::AtomicFile;

/// File magic, the bytes `"GGUF"`.
pub const GGUF_MAGIC: [u8; 4] = *b"GGUF";
/// The format version [`write_gguf`] writes.
pub const GGUF_VERSION: u32 = 3;
/// The data alignment when the metadata has no `general.alignment`.
pub const GGUF_DEFAULT_ALIGNMENT: usize = 32;
/// The metadata key that sets the data alignment (a `u32` power of two).
pub const ALIGNMENT_KEY: &str = "general.alignment";
/// ggml's `GGML_MAX_DIMS`: the most dimensions a tensor may have.
pub const MAX_DIMS: usize = 4;
/// ggml's `GGML_MAX_NAME` minus the terminating NUL: the longest tensor name (bytes)
/// llama.cpp accepts.
pub const MAX_TENSOR_NAME: usize = 63;

/// The contents of a GGUF file.
#[derive(Clone, Debug, PartialEq)]
pub struct GgufFile {
    /// Format version (2 or 3).
    pub version: u32,
    /// Data alignment in bytes.
    pub alignment: usize,
    /// Metadata in file order.
    pub metadata: Vec<(String, GgufValue)>,
    /// Tensors in file order.
    pub tensors: Vec<GgufTensor>,
}

impl GgufFile {
    /// The metadata value under `key`.
    pub fn get(&self, key: &str) -> Option<&GgufValue> {
        self.metadata.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// The tensor named `name`.
    pub fn tensor(&self, name: &str) -> Option<&GgufTensor> {
        self.tensors.iter().find(|t| t.name == name)
    }
}

/// Writes a GGUF v3 file: `metadata` in order (plus `general.alignment = 32` unless it
/// is given), then `tensors` in order, each at an offset aligned to the alignment.
///
/// The file is written to `PATH.tmp`, fsynced and renamed over `path`, so a crash never
/// leaves a half-written file under the final name. Everything is validated before the
/// file is created: unique keys and tensor names, array elements of the declared type,
/// tensor names of at most [`MAX_TENSOR_NAME`] bytes, 1 to 4 dimensions, byte counts.
///
/// # Errors
/// [`Error::InvalidParameter`] for duplicate keys or tensor names, a bad
/// `general.alignment`, nested arrays or array elements of another type, tensor names
/// over [`MAX_TENSOR_NAME`] bytes, bad shapes; [`Error::DimensionMismatch`] for a
/// tensor whose bytes do not match its shape and type — all before any file is created.
/// [`Error::Io`] if creating, writing, syncing or renaming the file fails (the temporary
/// file is removed and `path` is left as it was).
pub fn write_gguf(
    path: impl AsRef<Path>,
    metadata: &[(String, GgufValue)],
    tensors: &[GgufTensor],
) -> Result<()> {
    let path = path.as_ref();
    let (header, alignment) = encode_header(metadata, tensors)?;
    let mut file = AtomicFile::create(path)?;
    file.write_all(&header)?;
    for t in tensors {
        file.write_all(&t.data)?;
        file.write_zeros(pad(t.data.len(), alignment))?;
    }
    file.commit()
}

/// Bytes needed after `n` to reach a multiple of `align` (a power of two).
fn pad(n: usize, align: usize) -> usize {
    n.wrapping_neg() & (align - 1)
}

/// Everything before the data section, padding included, and the alignment.
fn encode_header(
    metadata: &[(String, GgufValue)],
    tensors: &[GgufTensor],
) -> Result<(Vec<u8>, usize)> {
    let mut alignment = GGUF_DEFAULT_ALIGNMENT;
    let mut has_alignment = false;
    let mut keys = std::collections::HashSet::new();
    for (k, v) in metadata {
        if !keys.insert(k.as_str()) {
            return Err(Error::param("metadata", format!("duplicate key `{k}`")));
        }
        if k == ALIGNMENT_KEY {
            alignment = match v {
                GgufValue::U32(a) if a.is_power_of_two() => *a as usize,
                _ => {
                    return Err(Error::param(
                        "metadata",
                        format!("`{ALIGNMENT_KEY}` must be a U32 power of two, got {v:?}"),
                    ));
                }
            };
            has_alignment = true;
        }
        check_value(k, v)?;
    }
    let mut names = std::collections::HashSet::new();
    for t in tensors {
        if t.name.len() > MAX_TENSOR_NAME {
            return Err(Error::param(
                "tensors",
                format!(
                    "tensor name `{}` is {} bytes, llama.cpp accepts at most {MAX_TENSOR_NAME}",
                    t.name,
                    t.name.len()
                ),
            ));
        }
        if !names.insert(t.name.as_str()) {
            return Err(Error::param(
                "tensors",
                format!("duplicate tensor name `{}`", t.name),
            ));
        }
        let need = t.expected_bytes()?;
        if t.data.len() != need {
            return Err(Error::dim(
                format!("tensor `{}` ({} {:?}) bytes", t.name, t.ty, t.shape),
                need,
                t.data.len(),
            ));
        }
    }

    let mut h = Vec::new();
    h.extend_from_slice(&GGUF_MAGIC);
    h.extend_from_slice(&GGUF_VERSION.to_le_bytes());
    h.extend_from_slice(&(tensors.len() as u64).to_le_bytes());
    let n_kv = metadata.len() + usize::from(!has_alignment);
    h.extend_from_slice(&(n_kv as u64).to_le_bytes());
    for (k, v) in metadata {
        put_str(&mut h, k);
        h.extend_from_slice(&v.value_type().id().to_le_bytes());
        put_value(&mut h, v);
    }
    if !has_alignment {
        put_str(&mut h, ALIGNMENT_KEY);
        h.extend_from_slice(&GgufValueType::U32.id().to_le_bytes());
        h.extend_from_slice(&(alignment as u32).to_le_bytes());
    }
    let mut offset = 0u64;
    for t in tensors {
        put_str(&mut h, &t.name);
        h.extend_from_slice(&(t.shape.len() as u32).to_le_bytes());
        for &d in t.shape.iter().rev() {
            h.extend_from_slice(&(d as u64).to_le_bytes());
        }
        h.extend_from_slice(&t.ty.id().to_le_bytes());
        h.extend_from_slice(&offset.to_le_bytes());
        let len = t.data.len() + pad(t.data.len(), alignment);
        offset = offset
            .checked_add(len as u64)
            .ok_or_else(|| Error::param("tensors", "total data size overflows u64"))?;
    }
    h.resize(h.len() + pad(h.len(), alignment), 0);
    Ok((h, alignment))
}

fn check_value(key: &str, v: &GgufValue) -> Result<()> {
    if let GgufValue::Array(ty, items) = v {
        if *ty == GgufValueType::Array {
            return Err(Error::param(
                "metadata",
                format!("`{key}`: arrays of arrays are not supported"),
            ));
        }
        if let Some((i, item)) = items
            .iter()
            .enumerate()
            .find(|(_, x)| x.value_type() != *ty)
        {
            return Err(Error::param(
                "metadata",
                format!(
                    "`{key}`: array of {ty:?} has element {i} of type {:?}",
                    item.value_type()
                ),
            ));
        }
    }
    Ok(())
}

fn put_str(h: &mut Vec<u8>, s: &str) {
    h.extend_from_slice(&(s.len() as u64).to_le_bytes());
    h.extend_from_slice(s.as_bytes());
}

fn put_value(h: &mut Vec<u8>, v: &GgufValue) {
    match v {
        GgufValue::U8(x) => h.push(*x),
        GgufValue::I8(x) => h.push(*x as u8),
        GgufValue::U16(x) => h.extend_from_slice(&x.to_le_bytes()),
        GgufValue::I16(x) => h.extend_from_slice(&x.to_le_bytes()),
        GgufValue::U32(x) => h.extend_from_slice(&x.to_le_bytes()),
        GgufValue::I32(x) => h.extend_from_slice(&x.to_le_bytes()),
        GgufValue::U64(x) => h.extend_from_slice(&x.to_le_bytes()),
        GgufValue::I64(x) => h.extend_from_slice(&x.to_le_bytes()),
        GgufValue::F32(x) => h.extend_from_slice(&x.to_le_bytes()),
        GgufValue::F64(x) => h.extend_from_slice(&x.to_le_bytes()),
        GgufValue::Bool(x) => h.push(u8::from(*x)),
        GgufValue::String(s) => put_str(h, s),
        GgufValue::Array(ty, items) => {
            h.extend_from_slice(&ty.id().to_le_bytes());
            h.extend_from_slice(&(items.len() as u64).to_le_bytes());
            for item in items {
                put_value(h, item);
            }
        }
    }
}

/// Reads and validates a GGUF file (version 2 or 3, little-endian): metadata and every
/// tensor's name, shape, type and bytes.
///
/// Every count, length, dimension and offset is checked against the file size before use;
/// tensors must use a type of [`GgmlType`], lie inside the data section at offsets that
/// are multiples of the alignment, and have unique names. Failures are
/// [`Error::Format`] naming the byte offset or the tensor.
///
/// # Errors
/// [`Error::Io`] if the file cannot be opened or mapped; otherwise as [`parse_gguf`].
pub fn read_gguf(path: impl AsRef<Path>) -> Result<GgufFile> {
    let path = path.as_ref();
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let len = file.metadata().map_err(|e| Error::io(path, e))?.len();
    if len < 24 {
        return Err(Error::format(
            path,
            format!("file is {len} bytes, shorter than the 24-byte GGUF header"),
        ));
    }
    let map = crate::store::map_file(&file, path)?;
    parse_gguf(&map, path)
}

/// Parses a whole GGUF file held in memory (`path` only names it in errors).
///
/// # Errors
/// [`Error::Format`] naming `path` and the byte offset or tensor for anything that is
/// not a valid GGUF version 2 or 3 file: bad magic or version, truncation, counts or
/// lengths past the end, unknown value or tensor types, duplicate names, shapes over
/// [`MAX_DIMS`] dimensions or `i64` elements, misaligned or overlapping tensor data.
pub fn parse_gguf(bytes: &[u8], path: &Path) -> Result<GgufFile> {
    let mut c = Cursor {
        buf: bytes,
        pos: 0,
        path,
    };
    let magic = c.take(4, "magic")?;
    if magic != GGUF_MAGIC {
        return Err(Error::format(
            path,
            format!("bad magic {magic:02x?} at byte offset 0: not a GGUF file"),
        ));
    }
    let version = c.u32("version")?;
    if version == 3u32.swap_bytes() || version == 2u32.swap_bytes() {
        return Err(Error::format(
            path,
            "big-endian GGUF files are not supported (version field at byte offset 4)",
        ));
    }
    if !(2..=3).contains(&version) {
        return Err(Error::format(
            path,
            format!("unsupported GGUF version {version} at byte offset 4 (2 and 3 are)"),
        ));
    }
    // A tensor info takes at least 8 (name) + 4 + 8 (one dim) + 4 + 8 = 32 bytes; a
    // key-value pair at least 8 (key) + 4 + 1 = 13.
    let n_tensors = c.count("tensor count", 32)?;
    let n_kv = c.count("metadata count", 13)?;

    let mut metadata: Vec<(String, GgufValue)> = Vec::with_capacity(n_kv);
    let mut alignment = GGUF_DEFAULT_ALIGNMENT;
    for i in 0..n_kv {
        let at = c.pos;
        let key = c.string(&format!("metadata key {i}"))?;
        if metadata.iter().any(|(k, _)| *k == key) {
            return Err(c.err_at(at, format!("duplicate metadata key `{key}`")));
        }
        let tag_at = c.pos;
        let tag = c.u32("metadata value type")?;
        let ty = GgufValueType::from_id(tag)
            .ok_or_else(|| c.err_at(tag_at, format!("`{key}`: unknown value type {tag}")))?;
        let value = c.value(ty, &key)?;
        if key == ALIGNMENT_KEY {
            alignment = match value {
                GgufValue::U32(a) if a.is_power_of_two() => a as usize,
                _ => {
                    return Err(c.err_at(
                        tag_at,
                        format!("`{ALIGNMENT_KEY}` must be a U32 power of two, got {value:?}"),
                    ));
                }
            };
        }
        metadata.push((key, value));
    }

    struct Info {
        name: String,
        shape: Vec<usize>,
        ty: GgmlType,
        offset: u64,
        nbytes: usize,
        at: usize,
    }
    let mut infos: Vec<Info> = Vec::with_capacity(n_tensors);
    let mut names = std::collections::HashSet::new();
    for i in 0..n_tensors {
        let at = c.pos;
        let name = c.string(&format!("tensor {i} name"))?;
        if !names.insert(name.clone()) {
            return Err(c.err_at(at, format!("duplicate tensor name `{name}`")));
        }
        let nd_at = c.pos;
        let n_dims = c.u32("tensor dimension count")? as usize;
        if n_dims == 0 || n_dims > MAX_DIMS {
            return Err(c.err_at(
                nd_at,
                format!("tensor `{name}`: {n_dims} dimensions (1 to {MAX_DIMS} allowed)"),
            ));
        }
        let mut ne = [1usize; MAX_DIMS];
        for d in ne.iter_mut().take(n_dims) {
            let d_at = c.pos;
            let v = c.u64("tensor dimension")?;
            *d = usize::try_from(v)
                .ok()
                .filter(|&v| v <= i64::MAX as usize)
                .ok_or_else(|| {
                    c.err_at(d_at, format!("tensor `{name}`: dimension {v} too large"))
                })?;
        }
        let ty_at = c.pos;
        let ty_id = c.u32("tensor type")?;
        let ty = GgmlType::from_id(ty_id).ok_or_else(|| {
            c.err_at(
                ty_at,
                format!("tensor `{name}`: unsupported ggml type id {ty_id}"),
            )
        })?;
        let offset = c.u64("tensor offset")?;
        if offset % alignment as u64 != 0 {
            return Err(c.err_at(
                at,
                format!("tensor `{name}`: data offset {offset} is not a multiple of the alignment {alignment}"),
            ));
        }
        let rb = ty.row_bytes(ne[0]).map_err(|_| {
            c.err_at(
                at,
                format!(
                    "tensor `{name}`: row length {} is not a multiple of the {ty} block size {}",
                    ne[0],
                    ty.block_size()
                ),
            )
        })?;
        let nbytes = ne[1..]
            .iter()
            .try_fold(rb, |a, &b| a.checked_mul(b))
            .ok_or_else(|| c.err_at(at, format!("tensor `{name}`: size overflows")))?;
        if element_count(&ne).is_none() {
            return Err(c.err_at(
                at,
                format!("tensor `{name}`: {:?} elements overflow", &ne[..n_dims]),
            ));
        }
        let shape = ne[..n_dims].iter().rev().copied().collect();
        infos.push(Info {
            name,
            shape,
            ty,
            offset,
            nbytes,
            at,
        });
    }

    let data_start = c.pos + pad(c.pos, alignment);
    if data_start > bytes.len() {
        return Err(c.err_at(
            c.pos,
            format!(
                "truncated: the data section would start at byte offset {data_start}, past the \
                 end of the {}-byte file",
                bytes.len()
            ),
        ));
    }
    let data_len = (bytes.len() - data_start) as u64;
    let mut tensors = Vec::with_capacity(infos.len());
    for info in infos {
        let end = info.offset.checked_add(info.nbytes as u64);
        match end {
            Some(end) if end <= data_len => {}
            _ => {
                return Err(c.err_at(
                    info.at,
                    format!(
                        "tensor `{}` ({} {:?}): {} bytes at data offset {} (file byte offset \
                         {}) run past the end of the {}-byte file",
                        info.name,
                        info.ty,
                        info.shape,
                        info.nbytes,
                        info.offset,
                        data_start as u64 + info.offset.min(data_len),
                        bytes.len()
                    ),
                ));
            }
        }
        let start = data_start + info.offset as usize;
        tensors.push(GgufTensor {
            name: info.name,
            shape: info.shape,
            ty: info.ty,
            data: bytes[start..start + info.nbytes].to_vec(),
        });
    }
    Ok(GgufFile {
        version,
        alignment,
        metadata,
        tensors,
    })
}

/// A bounds-checked little-endian reader over the file bytes.
struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
    path: &'a Path,
}

impl<'a> Cursor<'a> {
    fn err_at(&self, at: usize, msg: String) -> Error {
        Error::format(self.path, format!("{msg} (at byte offset {at})"))
    }

    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8]> {
        if n > self.remaining() {
            return Err(Error::format(
                self.path,
                format!(
                    "truncated: {what} needs {n} bytes at byte offset {}, the file has {} bytes",
                    self.pos,
                    self.buf.len()
                ),
            ));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N]> {
        let s = self.take(N, what)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    fn u32(&mut self, what: &str) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    fn u64(&mut self, what: &str) -> Result<u64> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    /// A `u64` count of items of at least `min_size` bytes each, checked against the
    /// bytes left so that a corrupt count cannot trigger a huge allocation.
    fn count(&mut self, what: &str, min_size: usize) -> Result<usize> {
        let at = self.pos;
        let n = self.u64(what)?;
        let fits = (self.remaining() / min_size) as u64;
        if n > fits {
            return Err(self.err_at(
                at,
                format!(
                    "{what} {n} is impossible: {} bytes remain, room for at most {fits}",
                    self.remaining()
                ),
            ));
        }
        Ok(n as usize)
    }

    fn string(&mut self, what: &str) -> Result<String> {
        let at = self.pos;
        let n = self.count(what, 1)?;
        let s = self.take(n, what)?;
        String::from_utf8(s.to_vec())
            .map_err(|e| self.err_at(at, format!("{what} is not valid UTF-8: {e}")))
    }

    fn value(&mut self, ty: GgufValueType, key: &str) -> Result<GgufValue> {
        Ok(match ty {
            GgufValueType::U8 => GgufValue::U8(self.array::<1>(key)?[0]),
            GgufValueType::I8 => GgufValue::I8(self.array::<1>(key)?[0] as i8),
            GgufValueType::U16 => GgufValue::U16(u16::from_le_bytes(self.array(key)?)),
            GgufValueType::I16 => GgufValue::I16(i16::from_le_bytes(self.array(key)?)),
            GgufValueType::U32 => GgufValue::U32(self.u32(key)?),
            GgufValueType::I32 => GgufValue::I32(i32::from_le_bytes(self.array(key)?)),
            GgufValueType::U64 => GgufValue::U64(self.u64(key)?),
            GgufValueType::I64 => GgufValue::I64(i64::from_le_bytes(self.array(key)?)),
            GgufValueType::F32 => GgufValue::F32(f32::from_le_bytes(self.array(key)?)),
            GgufValueType::F64 => GgufValue::F64(f64::from_le_bytes(self.array(key)?)),
            GgufValueType::Bool => {
                let at = self.pos;
                match self.array::<1>(key)?[0] {
                    0 => GgufValue::Bool(false),
                    1 => GgufValue::Bool(true),
                    b => return Err(self.err_at(at, format!("`{key}`: bool byte {b}"))),
                }
            }
            GgufValueType::String => GgufValue::String(self.string(key)?),
            GgufValueType::Array => {
                let at = self.pos;
                let tag = self.u32(key)?;
                let elem = GgufValueType::from_id(tag).ok_or_else(|| {
                    self.err_at(at, format!("`{key}`: unknown array element type {tag}"))
                })?;
                if elem == GgufValueType::Array {
                    return Err(
                        self.err_at(at, format!("`{key}`: arrays of arrays are not supported"))
                    );
                }
                let n = self.count(&format!("`{key}` array length"), elem.min_size())?;
                let mut items = Vec::with_capacity(n);
                for _ in 0..n {
                    items.push(self.value(elem, key)?);
                }
                GgufValue::Array(elem, items)
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gaussian_rows(rows: usize, cols: usize, seed: u64) -> Vec<f32> {
        crate::data::generate::gaussian(rows, cols, 0.0, 1.0, seed)
            .unwrap()
            .into_vec()
    }

    fn sample_file() -> (Vec<(String, GgufValue)>, Vec<GgufTensor>) {
        let meta = vec![
            ("general.architecture".to_string(), GgufValue::from("llama")),
            ("general.name".to_string(), GgufValue::from("tiny")),
            ("t.u8".to_string(), GgufValue::U8(7)),
            ("t.i8".to_string(), GgufValue::I8(-7)),
            ("t.u16".to_string(), GgufValue::U16(65535)),
            ("t.i16".to_string(), GgufValue::I16(-300)),
            ("t.u32".to_string(), GgufValue::U32(4096)),
            ("t.i32".to_string(), GgufValue::I32(-5)),
            ("t.u64".to_string(), GgufValue::U64(1 << 40)),
            ("t.i64".to_string(), GgufValue::I64(-(1 << 40))),
            ("t.f32".to_string(), GgufValue::F32(1e-5)),
            ("t.f64".to_string(), GgufValue::F64(0.1)),
            ("t.bool".to_string(), GgufValue::Bool(true)),
            (
                "t.tokens".to_string(),
                GgufValue::Array(
                    GgufValueType::String,
                    vec!["<s>".into(), "é".into(), "".into()],
                ),
            ),
            (
                "t.ints".to_string(),
                GgufValue::Array(
                    GgufValueType::I32,
                    vec![GgufValue::I32(1), GgufValue::I32(-2)],
                ),
            ),
            (
                "t.empty".to_string(),
                GgufValue::Array(GgufValueType::F32, vec![]),
            ),
        ];
        let x = gaussian_rows(2, 256, 3);
        let tensors = vec![
            GgufTensor::quantize("bias", vec![5], GgmlType::F32, &x[..5]).unwrap(),
            GgufTensor::quantize("w.q4k", vec![2, 256], GgmlType::Q4_K, &x).unwrap(),
            GgufTensor::quantize("w.q8", vec![2, 2, 64], GgmlType::Q8_0, &x[..256]).unwrap(),
            GgufTensor::quantize("w.f16", vec![3], GgmlType::F16, &x[..3]).unwrap(),
        ];
        (meta, tensors)
    }

    #[test]
    fn write_read_roundtrip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.gguf");
        let (meta, tensors) = sample_file();
        write_gguf(&path, &meta, &tensors).unwrap();
        assert!(!dir.path().join("m.gguf.tmp").exists());
        let f = read_gguf(&path).unwrap();
        assert_eq!(f.version, 3);
        assert_eq!(f.alignment, 32);
        assert_eq!(&f.metadata[..meta.len()], &meta[..]);
        assert_eq!(f.get(ALIGNMENT_KEY), Some(&GgufValue::U32(32)));
        assert_eq!(f.tensors, tensors);
        assert_eq!(f.tensor("w.q8").unwrap().rows(), 4);
        assert_eq!(f.tensor("bias").unwrap().rows(), 1);

        // A custom alignment is honoured.
        let mut meta64 = meta.clone();
        meta64.push((ALIGNMENT_KEY.to_string(), GgufValue::U32(64)));
        write_gguf(&path, &meta64, &tensors).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        let f = parse_gguf(&bytes, &path).unwrap();
        assert_eq!(f.alignment, 64);
        assert_eq!(f.tensors, tensors);
        assert!(bytes.len().is_multiple_of(64));
    }

    #[test]
    fn writer_rejects_bad_input() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.gguf");
        let (meta, tensors) = sample_file();
        let mut dup = tensors.clone();
        dup.push(tensors[0].clone());
        assert!(write_gguf(&path, &meta, &dup).is_err());
        let mut m = meta.clone();
        m.push(meta[0].clone());
        assert!(write_gguf(&path, &m, &tensors).is_err());
        let mut m = meta.clone();
        m.push((ALIGNMENT_KEY.into(), GgufValue::U32(24)));
        assert!(write_gguf(&path, &m, &tensors).is_err());
        let mut m = meta.clone();
        m.push((
            "mixed".into(),
            GgufValue::Array(GgufValueType::U8, vec![GgufValue::I8(1)]),
        ));
        assert!(write_gguf(&path, &m, &tensors).is_err());
        let mut t = tensors.clone();
        t[1].data.pop();
        assert!(write_gguf(&path, &meta, &t).is_err());
        let mut t = tensors.clone();
        t[0].name = "x".repeat(64);
        assert!(write_gguf(&path, &meta, &t).is_err());
        let mut t = tensors.clone();
        t[0].shape = vec![1, 1, 1, 1, 5];
        assert!(write_gguf(&path, &meta, &t).is_err());
        assert!(GgufTensor::new("q", vec![2, 100], GgmlType::Q4_K, vec![]).is_err());
        assert!(!path.exists());
    }

    #[test]
    fn corrupt_and_truncated_files_never_panic() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.gguf");
        let (meta, tensors) = sample_file();
        write_gguf(&path, &meta, &tensors).unwrap();
        let good = std::fs::read(&path).unwrap();
        assert!(parse_gguf(&good, &path).is_ok());
        // Every truncation fails cleanly (the last tensor's padding is optional).
        let last = tensors.last().unwrap().data.len();
        let unpadded = good.len() - pad(last, 32);
        for n in 0..unpadded {
            let r = parse_gguf(&good[..n], &path);
            assert!(r.is_err(), "truncated to {n} bytes parsed");
        }
        // Every single-byte corruption either fails with an error or parses.
        let mut bad = good.clone();
        for i in 0..good.len() {
            for x in [0x01u8, 0x80, 0xff] {
                bad[i] = good[i] ^ x;
                let _ = parse_gguf(&bad, &path);
            }
            bad[i] = good[i];
        }
        // Seeded random multi-byte damage, including huge little-endian integers.
        let mut rng = crate::rng::seeded(99);
        use crate::rng::RngExt;
        for _ in 0..3000 {
            let mut b = good.clone();
            for _ in 0..rng.random_range(1..4usize) {
                let at = rng.random_range(0..b.len());
                let end = (at + 8).min(b.len());
                match rng.random_range(0..3u32) {
                    0 => b[at] = rng.random(),
                    1 => b[at..end].fill(0xff),
                    _ => b[at..end].fill(0),
                }
            }
            let cut = rng.random_range(0..=b.len());
            let _ = parse_gguf(&b[..cut], &path);
            if let Ok(f) = parse_gguf(&b, &path) {
                for t in &f.tensors {
                    let _ = t.dequantize();
                }
            }
        }
        // Huge counts and lengths are rejected before any allocation.
        for at in [8usize, 16, 24] {
            let mut b = good.clone();
            b[at..at + 8].copy_from_slice(&u64::MAX.to_le_bytes());
            let e = parse_gguf(&b, &path).unwrap_err();
            assert!(e.to_string().contains("byte offset"), "{e}");
        }
        // An empty tensor whose other dimensions multiply past i64: rejected, not wrapped.
        let z = GgufTensor::new("z", vec![1, 1, 0], GgmlType::F32, vec![]).unwrap();
        write_gguf(&path, &[], &[z]).unwrap();
        let mut b = std::fs::read(&path).unwrap();
        assert_eq!(parse_gguf(&b, &path).unwrap().tensors[0].n_elements(), 0);
        let dims = b.windows(5).position(|w| w == b"z\x03\0\0\0").unwrap() + 5;
        for k in 1..3 {
            b[dims + 8 * k..dims + 8 * k + 8].copy_from_slice(&(1u64 << 40).to_le_bytes());
        }
        let e = parse_gguf(&b, &path).unwrap_err();
        assert!(e.to_string().contains("overflow"), "{e}");
        let huge = GgufTensor {
            name: "h".into(),
            shape: vec![1 << 40, 1 << 40, 0],
            ty: GgmlType::F32,
            data: vec![],
        };
        assert!(write_gguf(&path, &[], &[huge]).is_err());

        let e = read_gguf(dir.path().join("missing.gguf")).unwrap_err();
        assert!(matches!(e, Error::Io { .. }));
        std::fs::write(&path, b"GGUF").unwrap();
        assert!(matches!(read_gguf(&path), Err(Error::Format { .. })));
    }
}
