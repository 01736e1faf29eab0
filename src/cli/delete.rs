//! `vecquant delete`: tombstone ids in a saved index, optionally compacting it.

use std::path::PathBuf;

use clap::Args;
use vecquant::{Error, Result};

use super::paths;

#[derive(Args)]
pub struct DeleteArgs {
    /// Index file.
    #[arg(long)]
    index: PathBuf,
    /// Comma-separated ids.
    #[arg(long, value_delimiter = ',')]
    ids: Vec<u64>,
    /// A text file of ids (whitespace or newline separated).
    #[arg(long)]
    ids_file: Option<PathBuf>,
    /// Drop the deleted vectors from the file instead of keeping tombstones.
    #[arg(long)]
    compact: bool,
}

pub fn run(a: DeleteArgs) -> Result<()> {
    // The index is read and then rewritten: an input that must also be writable.
    let ids_file: Vec<&std::path::Path> = a.ids_file.as_deref().into_iter().collect();
    paths::check_input(&a.index)?;
    paths::check_inputs(&ids_file)?;
    paths::check_output("--index", &a.index, &ids_file)?;
    let mut ids = a.ids;
    if let Some(f) = &a.ids_file {
        let text = std::fs::read_to_string(f).map_err(|e| Error::io(f, e))?;
        for (i, tok) in text.split_whitespace().enumerate() {
            ids.push(
                tok.parse()
                    .map_err(|_| Error::format(f, format!("token {i} `{tok}` is not a u64 id")))?,
            );
        }
    }
    if ids.is_empty() {
        return Err(Error::param(
            "ids",
            "no ids given (use --ids or --ids-file)",
        ));
    }
    // Each id counts once ("deleted 1 of 1 ids" for `--ids 7,7`).
    ids.sort_unstable();
    ids.dedup();
    // Held until the save below has replaced the file: no other write in between.
    let _turn = paths::reserve_index(&a.index)?;
    let mut idx = vecquant::index::open(&a.index)?;
    let before = idx.len();
    let n = idx.delete(&ids)?;
    let dropped = if a.compact { idx.compact()? } else { 0 };
    idx.save(&a.index)?;
    outln!(
        "deleted {n} of {} ids from {}: {before} → {} vectors{}",
        ids.len(),
        a.index.display(),
        idx.len(),
        if a.compact {
            format!(", compacted ({dropped} rows dropped)")
        } else {
            format!(" ({} tombstones)", idx.deleted())
        }
    );
    Ok(())
}
