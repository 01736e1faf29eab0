//! `vecquant add`: append vectors to a saved index (rewritten atomically).

use std::path::PathBuf;

use clap::Args;
use vecquant::data::read_vectors;
use vecquant::{Error, Result};

use super::paths;

#[derive(Args)]
pub struct AddArgs {
    /// Index file (rewritten in place through a temp file and a rename).
    #[arg(long)]
    index: PathBuf,
    /// Vectors to add.
    #[arg(long)]
    vectors: PathBuf,
    /// Id of the first new vector (default: the index's current length); the rest
    /// follow consecutively. Ids already in the index are refused unless --upsert.
    #[arg(long)]
    first_id: Option<u64>,
    /// Replace the vectors that already hold any of the new ids (they are deleted once
    /// the new ones are in) instead of refusing the add.
    #[arg(long)]
    upsert: bool,
}

pub fn run(a: AddArgs) -> Result<()> {
    // The index is read and then rewritten: an input that must also be writable.
    paths::check_inputs(&[&a.index, &a.vectors])?;
    paths::check_output("--index", &a.index, &[&a.vectors])?;
    let mut idx = vecquant::index::open(&a.index)?;
    let v = read_vectors(&a.vectors)?;
    if v.dim() != idx.dim() {
        return Err(Error::dim(
            a.vectors.display().to_string(),
            idx.dim(),
            v.dim(),
        ));
    }
    let before = idx.len();
    // Default ids continue the insertion numbering (deleted rows included).
    let start = a.first_id.unwrap_or((before + idx.deleted()) as u64);
    let ids: Vec<u64> = (0..v.len() as u64)
        .map(|i| start.checked_add(i))
        .collect::<Option<_>>()
        .ok_or_else(|| Error::param("first-id", "ids overflow u64"))?;
    let added = if a.upsert {
        idx.upsert(v.as_slice(), &ids)
    } else {
        idx.add(v.as_slice(), Some(&ids)).map(|()| 0)
    };
    let replaced = added.map_err(|e| match e {
        Error::DuplicateId {
            id,
            row,
            count,
            within_batch,
        } => Error::format(
            &a.vectors,
            format!(
                "record {row}: id {id} {}; {count} of the {} new ids collide: pass --upsert to \
                 replace the vectors holding them, or --first-id to choose free ids",
                if within_batch {
                    "repeats an earlier record's id".to_string()
                } else {
                    format!("is already in {}", a.index.display())
                },
                ids.len()
            ),
        ),
        e => e.in_file(&a.vectors),
    })?;
    idx.save(&a.index)?;
    let replacing = if a.upsert {
        format!(", replaced {replaced}")
    } else {
        String::new()
    };
    println!(
        "added {} vectors (ids {start}..{}) to {}{replacing}: {before} → {}",
        v.len(),
        start + v.len() as u64,
        a.index.display(),
        idx.len()
    );
    Ok(())
}
