//! `vecquant add`: append vectors to a saved index (rewritten atomically).

use std::path::PathBuf;

use clap::Args;
use vecquant::data::VectorReader;
use vecquant::index::spec::IndexSpec;
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
    /// Id of the first new vector (default: one past the largest id the index holds,
    /// deleted ones included, so default ids never collide); the rest follow
    /// consecutively. Ids already in the index are refused unless --upsert.
    #[arg(long)]
    first_id: Option<u64>,
    /// Replace the vectors that already hold any of the new ids (they are deleted once
    /// the new ones are in) instead of refusing the add.
    #[arg(long)]
    upsert: bool,
    /// Vectors read and added at a time (default: 64 MiB of them): the file is streamed.
    /// HNSW indexes take the file in one piece (the new vectors are inserted into the
    /// graph in one pass).
    #[arg(long, value_name = "ROWS")]
    chunk: Option<usize>,
}

pub fn run(a: AddArgs) -> Result<()> {
    // The index is read and then rewritten: an input that must also be writable.
    paths::check_inputs(&[&a.index, &a.vectors])?;
    paths::check_output("--index", &a.index, &[&a.vectors])?;
    if a.chunk == Some(0) {
        return Err(Error::param("--chunk", "must be at least 1 row"));
    }
    // Held until the save below has replaced the file: no other write in between.
    let _turn = paths::reserve_index(&a.index)?;
    let mut idx = vecquant::index::open(&a.index)?;
    let mut v = VectorReader::open(&a.vectors)?;
    let (dim, n) = (v.dim(), v.len());
    if dim != idx.dim() {
        return Err(Error::dim(a.vectors.display().to_string(), idx.dim(), dim));
    }
    let before = idx.len();
    // Default ids continue past every id the index holds (deleted ones included), so
    // they never collide, also after a compaction.
    let start = match a.first_id {
        Some(f) => f,
        None => idx.next_id().ok_or_else(|| {
            Error::param(
                "first-id",
                "the index holds id 18446744073709551615 (u64::MAX): give the new vectors \
                 free ids with --first-id",
            )
        })?,
    };
    // The new ids are start..=start + n − 1: the last may be u64::MAX itself.
    if n > 0 && start.checked_add(n as u64 - 1).is_none() {
        return Err(Error::param(
            "first-id",
            format!(
                "{n} new ids from {start} run past the largest id, {} (u64::MAX)",
                u64::MAX
            ),
        ));
    }
    // HNSW reads the new vectors in one piece: each `add` call copies the graph and every
    // stored vector once (then inserts only the new rows), so one call, not one per
    // chunk. The others stream the file.
    let hnsw = idx.spec().parse::<IndexSpec>().is_ok_and(|s| s.is_hnsw());
    let chunk = match a.chunk {
        _ if hnsw => n.max(1),
        Some(c) => c,
        None => super::build::default_chunk(dim),
    };
    let ids: Vec<u64> = (0..n as u64).map(|i| start + i).collect();
    let collision = |e: Error| match e {
        Error::DuplicateId {
            id,
            row,
            count,
            within_batch,
        } => Error::format(
            &a.vectors,
            format!(
                "record {row}: id {id} {}; {count} of the {n} new ids collide (nothing was \
                 written: {} is unchanged): pass --upsert to replace the vectors holding \
                 them, or --first-id to choose free ids",
                if within_batch {
                    "repeats an earlier record's id".to_string()
                } else {
                    format!("is already in {}", a.index.display())
                },
                a.index.display()
            ),
        ),
        e => e.in_file(&a.vectors),
    };
    // One streamed add or upsert: the ids are checked before any vector is read, an IVF
    // or flat-code index lays itself out once (one `add` per chunk re-laid it all out
    // each time), and nothing is saved unless every piece goes in (an error leaves the
    // file unchanged).
    let mut lo = 0;
    let mut next = || {
        if lo >= n {
            return Ok(None);
        }
        let x = v.read_rows(lo, lo + chunk)?;
        lo += x.len();
        Ok(Some(x.into_vec()))
    };
    let replaced = if a.upsert {
        idx.upsert_stream(&ids, &mut next)
    } else {
        idx.add_stream(Some(&ids), &mut next).map(|()| 0)
    }
    .map_err(collision)?;
    idx.save(&a.index)?;
    let replacing = if a.upsert {
        format!(", replaced {replaced}")
    } else {
        String::new()
    };
    outln!(
        "added {n} vectors (ids {start}..{}) to {}{replacing}: {before} → {}",
        // (u128: one past u64::MAX when the last new id is u64::MAX.)
        u128::from(start) + n as u128,
        a.index.display(),
        idx.len()
    );
    Ok(())
}
