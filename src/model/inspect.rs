//! Human-readable descriptions of weight files for `vecquant inspect`.

use std::fmt::Write as _;
use std::path::Path;

use crate::error::Result;
use crate::model::gguf;
use crate::model::io::{self, TensorData};
use crate::model::pipeline::{KIND, QuantizedModel};

/// Describes a container (index or weights), a `.gguf` or a `.safetensors` file.
///
/// # Errors
/// [`Error::Io`](crate::Error::Io) if the file cannot be read; [`Error::Format`](crate::Error::Format) if it is not a valid
/// container, GGUF or safetensors file (the message names what is wrong).
pub fn describe_file(path: impl AsRef<Path>) -> Result<String> {
    let path = path.as_ref();
    let mut s = String::new();
    match path.extension().and_then(|e| e.to_str()) {
        Some("gguf") => {
            let f = gguf::read_gguf(path)?;
            let _ = writeln!(s, "file      {}", path.display());
            let _ = writeln!(s, "format    GGUF v3");
            let _ = writeln!(s, "metadata  {} keys", f.metadata.len());
            for (k, v) in &f.metadata {
                let _ = writeln!(s, "  {k} = {v:?}");
            }
            let _ = writeln!(s, "tensors   {}", f.tensors.len());
            for t in &f.tensors {
                let n: usize = t.shape.iter().product();
                let _ = writeln!(
                    s,
                    "  {:<48} {:<14} {:<6} {:>12} bytes  {:.4} bits/weight",
                    t.name,
                    format!("{:?}", t.shape),
                    t.ty.name(),
                    t.data.len(),
                    8.0 * t.data.len() as f64 / n.max(1) as f64
                );
            }
        }
        Some("safetensors") => {
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
                    "  {:<48} {:<14} {:<5} {:<5} {:>12} bytes",
                    t.name,
                    format!("{:?}", t.shape),
                    t.dtype,
                    kind,
                    t.source_bytes
                );
            }
        }
        _ => {
            s.push_str(&crate::store::describe(path)?);
            let c = crate::store::Container::open_with(
                path,
                crate::store::OpenOptions {
                    verify_checksums: false,
                },
            )?;
            // Indexes with a scalar quantizer: where its levels came from.
            s.push_str(&crate::model::levels::describe_levels(&c));
            if c.header().kind == KIND {
                drop(c);
                let m = QuantizedModel::open(path)?;
                let _ = writeln!(s, "tensors   {}", m.tensors.len());
                for t in &m.tensors {
                    let n: usize = t.shape.iter().product();
                    let _ = writeln!(
                        s,
                        "  {:<48} {:<14} {:<5} {:<28} {:.4} bits/weight{}",
                        t.name,
                        format!("{:?}", t.shape),
                        t.dtype,
                        t.scheme,
                        t.payload.storage_bits() as f64 / n.max(1) as f64,
                        t.note
                            .as_ref()
                            .map(|n| format!("  ({n})"))
                            .unwrap_or_default()
                    );
                }
            }
        }
    }
    Ok(s)
}
