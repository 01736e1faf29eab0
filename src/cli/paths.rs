//! Checks on the files a command reads and writes, made before any work: an input that
//! is missing or a directory, an output that would replace an input (under any name: a
//! symlink, a hard link, `dir/../dir/file`), an output that is a directory or read-only,
//! or one in a place that cannot be written. A command calls these first, so a mistake
//! costs nothing and leaves nothing behind.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use vecquant::{Error, Result};

/// File extensions of formats that are not containers: a container written under one of
/// them is a surprise for the next tool that trusts the name.
const FOREIGN: [&str; 6] = ["fvecs", "ivecs", "bvecs", "npy", "safetensors", "gguf"];

/// An input file: `Err` naming `path` if it does not exist or is a directory.
pub fn check_input(path: &Path) -> Result<()> {
    let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
    if meta.is_dir() {
        return Err(Error::is_directory(path));
    }
    Ok(())
}

/// Every input of `inputs` checked by [`check_input`].
pub fn check_inputs(inputs: &[&Path]) -> Result<()> {
    inputs.iter().try_for_each(|p| check_input(p))
}

/// An output file, `flag` naming its option (`--out`, `--report`): `Err` naming `out` if
/// it is one of `inputs` (the same file under any name), an existing directory, an
/// existing file without write permission, or in a place where no file can be created.
pub fn check_output(flag: &str, out: &Path, inputs: &[&Path]) -> Result<()> {
    if let Some(input) = inputs.iter().find(|i| same_file(out, i)) {
        return Err(Error::param(
            flag.trim_start_matches('-'),
            format!(
                "{} is the input {}: writing it would replace the input; choose another output file",
                out.display(),
                input.display()
            ),
        ));
    }
    vecquant::store::check_replaceable(out)?;
    check_creatable(out, out.parent())
}

/// Outputs that must differ from each other (`--out` and `--report`), given as
/// (flag, path): `Err` naming the second if it is the first, existing or not.
pub fn check_distinct(first: (&str, &Path), second: (&str, &Path)) -> Result<()> {
    if same_file(first.1, second.1) {
        return Err(Error::param(
            second.0.trim_start_matches('-'),
            format!(
                "{} {} is also the {} file: one would replace the other",
                second.0,
                second.1.display(),
                first.0
            ),
        ));
    }
    Ok(())
}

/// An output folder (created if missing): `Err` naming `out` if it exists and is not a
/// directory, or cannot be created or written in.
pub fn check_output_dir(flag: &str, out: &Path) -> Result<()> {
    match std::fs::metadata(out) {
        Ok(m) if !m.is_dir() => Err(Error::io(
            out,
            std::io::Error::new(
                ErrorKind::NotADirectory,
                format!("{flag} names an existing file, not a directory"),
            ),
        )),
        Ok(_) => check_creatable(out, Some(out)),
        Err(_) => check_creatable(out, out.parent()),
    }
}

/// Warns (on stderr) when a container is written under the extension of another format.
pub fn warn_foreign_extension(out: &Path) {
    let ext = out
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    if FOREIGN.contains(&ext.as_str()) {
        eprintln!(
            "warning: {} will hold a vecquant container (.vq), not a .{ext} file; \
             tools that trust the extension will misread it",
            out.display()
        );
    }
}

/// `Err` naming `out` unless a file can be created in `dir` (missing folders are created
/// by the writers, so the nearest existing ancestor is tried). The test creates and
/// removes a probe file: permission bits say nothing for root, read-only mounts or
/// `/proc`, and the attempt is what the writer will do.
fn check_creatable(out: &Path, dir: Option<&Path>) -> Result<()> {
    let mut dir = match dir {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    while std::fs::symlink_metadata(&dir).is_err() {
        match dir.parent() {
            Some(p) if !p.as_os_str().is_empty() => dir = p.to_path_buf(),
            _ => {
                dir = PathBuf::from(".");
                break;
            }
        }
    }
    let cannot = |why: String| {
        Error::io(
            out,
            std::io::Error::new(
                ErrorKind::PermissionDenied,
                format!("cannot be written: {why}"),
            ),
        )
    };
    if !std::fs::metadata(&dir).is_ok_and(|m| m.is_dir()) {
        return Err(cannot(format!("{} is not a directory", dir.display())));
    }
    for attempt in 0..16u32 {
        let probe = dir.join(format!(
            ".vecquant-write-check-{}-{attempt}",
            std::process::id()
        ));
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&probe)
        {
            Ok(f) => {
                drop(f);
                let _ = std::fs::remove_file(&probe);
                return Ok(());
            }
            Err(e) if e.kind() == ErrorKind::AlreadyExists => continue,
            Err(e) => {
                return Err(cannot(format!(
                    "no file can be created in {}: {e}",
                    dir.display()
                )));
            }
        }
    }
    Ok(())
}

/// Whether `a` and `b` name the same file: the same (device, inode) on unix (which sees
/// through symlinks and hard links), else the same canonical path (for a file not yet
/// created: its canonical folder and its name).
fn same_file(a: &Path, b: &Path) -> bool {
    #[cfg(unix)]
    if let (Ok(ma), Ok(mb)) = (std::fs::metadata(a), std::fs::metadata(b)) {
        use std::os::unix::fs::MetadataExt;
        if (ma.dev(), ma.ino()) == (mb.dev(), mb.ino()) {
            return true;
        }
    }
    matches!((resolved(a), resolved(b)), (Some(x), Some(y)) if x == y)
}

/// `p` canonicalized, or its folder canonicalized and its name appended when `p` does
/// not exist yet.
fn resolved(p: &Path) -> Option<PathBuf> {
    if let Ok(c) = std::fs::canonicalize(p) {
        return Some(c);
    }
    let dir = match p.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    Some(std::fs::canonicalize(dir).ok()?.join(p.file_name()?))
}

/// Takes this process's turn to rewrite the index at `path` before reading it
/// ([`vecquant::store::reserve`]): `add` and `delete` read the index, change it and save
/// it, and two of them at once both started from the old file — the later save undid
/// the earlier one's change (or failed: each removed the other's temporary file). While
/// another process writes `path`, this one says so on stderr and waits.
pub fn reserve_index(path: &Path) -> Result<vecquant::store::Reservation> {
    vecquant::store::reserve(path, &mut || {
        eprintln!(
            "note: waiting for another process to finish writing {}",
            path.display()
        )
    })
}
