//! Human-readable descriptions of files for `vecquant inspect`: an index container (live
//! and deleted counts, build parameters, sections and checksums), a weights container,
//! a `.gguf` or a `.safetensors` file (tensor names, shapes, schemes, bits per weight),
//! or a vector file (`.fvecs`, `.bvecs`, `.npy`: shape, norms, non-finite values;
//! `.ivecs`: ground-truth rows and id range).
//!
//! A damaged container is still described (every section is listed with its checksum
//! status) and the damage is returned in [`Inspection::problems`], so the caller can
//! print the description and then fail.

use std::fmt::Write as _;
use std::path::Path;

use crate::error::{Error, Result};
use crate::model::gguf;
use crate::model::io::{self, TensorData};
use crate::model::pipeline::{KIND, TensorMeta};
use crate::model::{Payload, pipeline::validate};
use crate::store::{Container, OpenOptions};

/// What `inspect` found: the description and what is wrong with the file.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Inspection {
    /// The description, one `key value` line per property.
    pub text: String,
    /// Damage found (checksum mismatches, sections that do not decode); empty when the
    /// file is sound.
    pub problems: Vec<String>,
}

impl Inspection {
    /// `Ok` for a sound file; otherwise an [`Error::Format`] naming `path` and every
    /// problem.
    ///
    /// # Errors
    /// As described.
    pub fn verdict(&self, path: impl AsRef<Path>) -> Result<()> {
        if self.problems.is_empty() {
            Ok(())
        } else {
            Err(Error::format(
                path,
                format!("the file is corrupt: {}", self.problems.join("; ")),
            ))
        }
    }
}

/// Describes a container (index or weights), a `.gguf` or a `.safetensors` file (the
/// text of [`inspect_file`]; damage is listed in the text but not an error).
///
/// # Errors
/// As [`inspect_file`].
pub fn describe_file(path: impl AsRef<Path>) -> Result<String> {
    Ok(inspect_file(path)?.text)
}

/// Describes a file and lists its damage.
///
/// # Errors
/// [`Error::Io`] if the file cannot be read; [`Error::Format`] if it is not a container,
/// GGUF or safetensors file at all (the message names what is wrong).
pub fn inspect_file(path: impl AsRef<Path>) -> Result<Inspection> {
    let path = path.as_ref();
    let mut s = String::new();
    let mut problems = Vec::new();
    // A container is described as one whatever its name (an index saved as `x.fvecs`).
    let ext = match path.extension().and_then(|e| e.to_str()) {
        Some(e) if !is_container(path)? => Some(e),
        _ => None,
    };
    match ext {
        Some("gguf") => describe_gguf(path, &mut s)?,
        Some("safetensors") => describe_safetensors(path, &mut s)?,
        Some("fvecs" | "bvecs" | "npy") => describe_vectors(path, &mut s, &mut problems)?,
        Some("ivecs") => describe_ivecs(path, &mut s)?,
        _ => {
            let c = Container::open_with(
                path,
                OpenOptions {
                    verify_checksums: false,
                },
            )?;
            let size = std::fs::metadata(path)
                .map_err(|e| Error::io(path, e))?
                .len();
            let _ = writeln!(s, "file      {}", path.display());
            let _ = writeln!(s, "format    vecquant container, version {}", c.version());
            if c.header().kind == KIND {
                describe_weights(&c, size, &mut s, &mut problems);
            } else {
                describe_index(&c, size, &mut s, &mut problems);
            }
        }
    }
    Ok(Inspection { text: s, problems })
}

/// Whether `path` starts with the container magic.
fn is_container(path: &Path) -> Result<bool> {
    use std::io::Read;
    let mut head = Vec::with_capacity(8);
    std::fs::File::open(path)
        .and_then(|f| f.take(8).read_to_end(&mut head))
        .map_err(|e| Error::io(path, e))?;
    Ok(head == crate::store::MAGIC)
}

/// Rows read at a time when describing a vector file (bounded memory for any size).
const DESCRIBE_CHUNK: usize = 1 << 16;

/// A vector file (`.fvecs`, `.bvecs`, 2-D `.npy`): its shape, then every row read in
/// chunks — a record whose dimension header differs stops the reading (a problem, with
/// the record and byte offset) — for the norms and the non-finite components that a
/// build or search would refuse (a problem naming the first).
fn describe_vectors(path: &Path, s: &mut String, problems: &mut Vec<String>) -> Result<()> {
    let mut r = crate::data::VectorReader::open(path)?;
    let size = std::fs::metadata(path)
        .map_err(|e| Error::io(path, e))?
        .len();
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    let _ = writeln!(s, "file      {}", path.display());
    let _ = writeln!(
        s,
        "format    {}",
        match ext {
            "fvecs" => "fvecs (f32 records)",
            "bvecs" => "bvecs (u8 records)",
            _ => "npy (2-D array, read as f32)",
        }
    );
    let (n, dim) = (r.len(), r.dim());
    let _ = writeln!(s, "dim       {dim}");
    let _ = writeln!(s, "vectors   {n}");
    let _ = writeln!(s, "size      {size} bytes");
    let (mut lo, mut hi, mut sum) = (f64::INFINITY, 0f64, 0f64);
    let (mut bad, mut first_bad) = (0usize, None);
    let mut read = 0;
    while read < n {
        let rows = match r.read_rows(read, read + DESCRIBE_CHUNK) {
            Ok(rows) => rows,
            Err(e) => {
                // (A format error's message alone: the description names the file.)
                problems.push(match e {
                    Error::Format { message, .. } => message,
                    e => e.to_string(),
                });
                break;
            }
        };
        for (i, v) in rows.as_slice().chunks_exact(dim).enumerate() {
            let mut sq = 0f64;
            for (c, &x) in v.iter().enumerate() {
                if x.is_finite() {
                    sq += f64::from(x) * f64::from(x);
                } else {
                    bad += 1;
                    first_bad.get_or_insert((read + i, c, x));
                }
            }
            let norm = sq.sqrt();
            (lo, hi, sum) = (lo.min(norm), hi.max(norm), sum + norm);
        }
        read += rows.len();
    }
    if read > 0 {
        let _ = writeln!(
            s,
            "norms     min {lo:.4}  mean {:.4}  max {hi:.4} (finite components)",
            sum / read as f64
        );
    }
    if read < n {
        let _ = writeln!(
            s,
            "checked   {read} of {n} vectors (a malformed record stopped the reading)"
        );
    }
    let _ = writeln!(s, "nonfinite {bad} values");
    if let Some((row, col, x)) = first_bad {
        problems.push(format!(
            "{bad} non-finite values (the first: record {row}, component {col} is {x}); \
             build and search refuse them"
        ));
    }
    Ok(())
}

/// An `.ivecs` file (ground truth: neighbour ids per query): rows, width and the id
/// range (`-1` marks a missing neighbour).
fn describe_ivecs(path: &Path, s: &mut String) -> Result<()> {
    let (data, dim) = crate::data::vecs::read_ivecs(path)?;
    let size = std::fs::metadata(path)
        .map_err(|e| Error::io(path, e))?
        .len();
    let _ = writeln!(s, "file      {}", path.display());
    let _ = writeln!(
        s,
        "format    ivecs (i32 records: ground-truth neighbour ids)"
    );
    let _ = writeln!(s, "dim       {dim} (neighbours per query)");
    let _ = writeln!(s, "rows      {}", data.len() / dim.max(1));
    let _ = writeln!(s, "size      {size} bytes");
    let ids = data.iter().filter(|&&v| v >= 0);
    let (lo, hi) = ids.fold((i32::MAX, -1), |(l, h), &v| (l.min(v), h.max(v)));
    if hi >= 0 {
        let _ = writeln!(s, "ids       {lo}..={hi}");
    }
    let _ = writeln!(
        s,
        "missing   {} entries of -1",
        data.iter().filter(|&&v| v < 0).count()
    );
    Ok(())
}

fn bits_per_weight(bits: u64, shape: &[usize]) -> f64 {
    bits as f64 / shape.iter().product::<usize>().max(1) as f64
}

fn describe_gguf(path: &Path, s: &mut String) -> Result<()> {
    let f = gguf::read_gguf(path)?;
    let _ = writeln!(s, "file      {}", path.display());
    let _ = writeln!(s, "format    GGUF v{}", f.version);
    let _ = writeln!(s, "metadata  {} keys", f.metadata.len());
    for (k, v) in &f.metadata {
        let _ = writeln!(s, "  {k} = {v:?}");
    }
    let _ = writeln!(s, "tensors   {}", f.tensors.len());
    for t in &f.tensors {
        let _ = writeln!(
            s,
            "  {:<48} {:<14} {:<6} {:>12} bytes  {:.4} bits/weight",
            t.name,
            format!("{:?}", t.shape),
            t.ty.name(),
            t.data.len(),
            bits_per_weight(8 * t.data.len() as u64, &t.shape)
        );
    }
    Ok(())
}

fn describe_safetensors(path: &Path, s: &mut String) -> Result<()> {
    let ts = io::read_safetensors(path)?;
    let _ = writeln!(s, "file      {}", path.display());
    let _ = writeln!(s, "format    safetensors");
    let _ = writeln!(s, "tensors   {}", ts.len());
    for t in &ts {
        let kind = match t.data {
            TensorData::Float(_) => "float",
            TensorData::Raw(_) => "raw",
        };
        let _ = writeln!(
            s,
            "  {:<48} {:<14} {:<5} {:<5} {:>12} bytes  {:.4} bits/weight",
            t.name,
            format!("{:?}", t.shape),
            t.dtype,
            kind,
            t.source_bytes,
            bits_per_weight(8 * t.source_bytes as u64, &t.shape)
        );
    }
    Ok(())
}

/// Checks section `name`'s CRC; `(crc line fragment, ok)`.
fn check_section(c: &Container, name: &str) -> Option<(String, bool)> {
    let e = c.header().sections.iter().find(|e| e.name == name)?;
    let ok = c.section(name).is_ok_and(|b| crc32fast::hash(b) == e.crc32);
    Some((
        format!(
            "offset {:>12}  length {:>12}  crc32 {:08x}  {}",
            e.offset,
            e.length,
            e.crc32,
            if ok { "ok" } else { "CORRUPT" }
        ),
        ok,
    ))
}

fn describe_weights(c: &Container, size: u64, s: &mut String, problems: &mut Vec<String>) {
    let h = c.header();
    let _ = writeln!(s, "kind      weights (a quantized model)");
    let _ = writeln!(s, "scheme    {}", h.spec);
    let _ = writeln!(s, "size      {size} bytes");
    let metas: Vec<TensorMeta> = match c.params() {
        Ok(m) => m,
        Err(e) => {
            problems.push(format!("the tensor list does not decode: {e}"));
            let _ = writeln!(s, "tensors   unreadable ({e})");
            return;
        }
    };
    let quantized = metas.iter().filter(|m| m.scheme != "passthrough").count();
    let _ = writeln!(
        s,
        "tensors   {} ({quantized} quantized, {} passed through)",
        metas.len(),
        metas.len() - quantized
    );
    let mut sections = String::new();
    for (i, m) in metas.iter().enumerate() {
        let sec = format!("t{i}");
        let (line, ok) = check_section(c, &sec).unwrap_or_else(|| ("missing".to_string(), false));
        let _ = writeln!(sections, "  {:<48} {line}", m.name);
        if !ok {
            problems.push(format!(
                "tensor `{}` (section {sec}): checksum mismatch",
                m.name
            ));
        }
        let payload = ok
            .then(|| c.section(&sec).ok())
            .flatten()
            .and_then(|b| postcard::from_bytes::<Payload>(b).ok())
            .filter(|p| validate(p, &m.shape).is_ok());
        let bits = match &payload {
            Some(p) => format!(
                "{:.4} bits/weight",
                bits_per_weight(p.storage_bits(), &m.shape)
            ),
            None => "? bits/weight (unreadable)".to_string(),
        };
        if ok && payload.is_none() {
            problems.push(format!(
                "tensor `{}` (section {sec}) does not decode",
                m.name
            ));
        }
        let _ = writeln!(
            s,
            "  {:<48} {:<14} {:<5} {:<28} {bits}{}",
            m.name,
            format!("{:?}", m.shape),
            m.dtype,
            m.scheme,
            m.note
                .as_ref()
                .map(|n| format!("  ({n})"))
                .unwrap_or_default()
        );
    }
    let _ = writeln!(s, "sections  {} (one per tensor)", metas.len());
    s.push_str(&sections);
    let _ = writeln!(
        s,
        "checksums {}",
        if problems.is_empty() {
            "all ok"
        } else {
            "FAILED"
        }
    );
}

fn describe_index(c: &Container, size: u64, s: &mut String, problems: &mut Vec<String>) {
    let h = c.header();
    let _ = writeln!(s, "kind      {}", h.kind);
    let _ = writeln!(s, "spec      {}", h.spec);
    let _ = writeln!(s, "dim       {}", h.dim);
    let _ = writeln!(s, "metric    {}", h.metric);
    match crate::index::from_container(c) {
        Ok(index) => {
            let _ = writeln!(s, "live      {}", index.len());
            let _ = writeln!(s, "deleted   {}", index.deleted());
            for (name, value) in index.build_params() {
                let _ = writeln!(s, "{name:<9} {value}");
            }
        }
        Err(e) => {
            let _ = writeln!(s, "stored    {} (the index does not load: {e})", h.count);
            problems.push(format!("the index does not load: {e}"));
        }
    }
    let _ = writeln!(s, "size      {size} bytes");
    if h.count > 0 {
        let _ = writeln!(
            s,
            "bytes/vec {:.2} (whole file / stored vectors)",
            size as f64 / h.count as f64
        );
    }
    let _ = writeln!(s, "sections  {}", h.sections.len());
    let mut all_ok = true;
    for sec in &h.sections {
        let (line, ok) = check_section(c, &sec.name).unwrap_or_default();
        all_ok &= ok;
        if !ok {
            problems.push(format!("section `{}`: checksum mismatch", sec.name));
        }
        let _ = writeln!(s, "  {:<12} {line}", sec.name);
    }
    let _ = writeln!(s, "checksums {}", if all_ok { "all ok" } else { "FAILED" });
    // Indexes with a scalar quantizer: where its levels came from.
    s.push_str(&crate::model::levels::describe_levels(c));
}
