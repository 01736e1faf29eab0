//! Data sets: vector file formats, generators and exact ground truth.
//!
//! - [`vecs`]: the TEXMEX `.fvecs` / `.ivecs` / `.bvecs` formats (SIFT1M, GIST1M,
//!   ann-benchmarks exports).
//! - [`npy`]: NumPy `.npy` arrays (f32, f64, u8; C order, little endian).
//! - [`generate`]: seeded Gaussian and Gaussian-mixture sets with train/base/query splits.
//! - [`groundtruth`]: exact top-k by blocked GEMM.
//! - [`stream`]: a vector file's rows read in pieces (streamed builds).
//! - [`dataset`]: data-set folders (`base`/`query`/`train` vectors and
//!   `groundtruth.ivecs`), as `vecquant gen` writes and `vecquant bench` reads them.

pub mod dataset;
pub mod generate;
pub mod groundtruth;
pub mod npy;
pub mod stream;
pub mod vecs;

use std::path::Path;

use crate::error::{Error, Result};
use crate::vectors::VectorSet;

pub use dataset::{
    GT_DEPTH, LoadedDataset, load_dataset, read_ground_truth, write_dataset,
    write_exact_ground_truth, write_ground_truth,
};
pub use stream::VectorReader;

/// Reads a vector file, choosing the format by extension: `.fvecs`, `.bvecs` (bytes
/// widened to f32), `.npy`.
///
/// # Errors
/// [`Error::Format`] for any other extension or a malformed file (see
/// [`vecs::read_fvecs`], [`vecs::read_bvecs`], [`npy::read_npy_f32`]); [`Error::Io`] if
/// the file cannot be read.
pub fn read_vectors(path: impl AsRef<Path>) -> Result<VectorSet> {
    let path = path.as_ref();
    match extension(path).as_str() {
        "fvecs" => vecs::read_fvecs(path),
        "bvecs" => vecs::read_bvecs(path),
        "npy" => npy::read_npy_f32(path),
        other => Err(Error::format(
            path,
            format!(
                "unsupported vector file extension `.{other}`; expected .fvecs, .bvecs or .npy"
            ),
        )),
    }
}

/// Writes vectors (atomically), choosing the format by extension: `.fvecs` or `.npy`.
///
/// # Errors
/// [`Error::Format`] for any other extension; [`Error::Io`] if the file cannot be
/// written.
pub fn write_vectors(path: impl AsRef<Path>, v: &VectorSet) -> Result<()> {
    let path = path.as_ref();
    match extension(path).as_str() {
        "fvecs" => vecs::write_fvecs(path, v),
        "npy" => npy::write_npy_f32(path, v.as_slice(), &[v.len(), v.dim()]),
        other => Err(Error::format(
            path,
            format!("cannot write vectors as `.{other}`; use .fvecs or .npy"),
        )),
    }
}

fn extension(path: &Path) -> String {
    path.extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase()
}

pub(crate) fn read_file(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::IsADirectory => Error::is_directory(path),
        _ => Error::io(path, e),
    })
}

/// Writes `bytes` to `path` through a temporary file (`path` + `.tmp`), an fsync and a
/// rename, so a crash never leaves a half-written file under the final name. Creates the
/// parent directories.
///
/// # Errors
/// [`Error::Io`] naming the directory, the temporary file or `path` if creating,
/// writing, syncing or renaming fails.
pub fn write_file_atomic(path: impl AsRef<Path>, bytes: &[u8]) -> Result<()> {
    // The crate's one atomic writer (temp file, fsync, rename, directory fsync; the
    // temp file is removed on any error).
    let mut f = crate::store::AtomicFile::create(path.as_ref())?;
    f.write_all(bytes)?;
    f.commit()
}

/// A file written piece by piece that replaces `path` atomically when
/// [`commit`](Self::commit)ted (temporary file, fsync, rename, directory fsync — what
/// [`write_file_atomic`] does for bytes already in memory), for output too large to
/// hold at once. Dropped without a commit (an error on the way), it removes the
/// temporary file and leaves `path` as it was.
pub struct AtomicWriter(crate::store::AtomicFile);

impl AtomicWriter {
    /// Starts writing `path` (through `path` + `.tmp`; creates the parent directories).
    ///
    /// # Errors
    /// [`Error::Io`] naming `path` if it is a directory or read-only, or naming the
    /// directory or the temporary file if they cannot be created.
    pub fn create(path: impl AsRef<Path>) -> Result<Self> {
        crate::store::AtomicFile::create(path.as_ref()).map(AtomicWriter)
    }

    /// Appends `bytes`.
    ///
    /// # Errors
    /// [`Error::Io`] naming the temporary file if writing fails (a full disk).
    pub fn write_all(&mut self, bytes: &[u8]) -> Result<()> {
        self.0.write_all(bytes)
    }

    /// Flushes, fsyncs and renames the file over `path`.
    ///
    /// # Errors
    /// [`Error::Io`] naming the temporary file or `path` if flushing, syncing or
    /// renaming fails (the temporary file is removed; `path` is left as it was).
    pub fn commit(self) -> Result<()> {
        self.0.commit()
    }
}

/// The machine's physical memory in bytes (`MemTotal` of `/proc/meminfo`), where known
/// (read once per process).
pub(crate) fn memory_total() -> Option<u64> {
    static TOTAL: std::sync::OnceLock<Option<u64>> = std::sync::OnceLock::new();
    *TOTAL.get_or_init(|| {
        let info = std::fs::read_to_string("/proc/meminfo").ok()?;
        let line = info.lines().find(|l| l.starts_with("MemTotal:"))?;
        let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        kb.checked_mul(1024)
    })
}

/// Why `bytes` (`None`: past what this machine can address) cannot be held in
/// `memory` bytes (`None`: unknown), as the end of a sentence about them ("… take 9.1
/// GB, more than this machine's 8.0 GB of memory"); `None` when they can, or when the
/// memory is unknown. Sizes refused this way are checked before anything is allocated:
/// an allocation past memory aborts the process or wakes the OOM killer.
pub(crate) fn memory_shortfall(bytes: Option<u64>, memory: Option<u64>) -> Option<String> {
    match (bytes, memory) {
        (None, _) => Some("are more bytes than this machine can address".into()),
        (Some(b), Some(m)) if b > m => Some(format!(
            "take {:.1} GB, more than this machine's {:.1} GB of memory",
            b as f64 / 1e9,
            m as f64 / 1e9
        )),
        _ => None,
    }
}

/// Fsyncs the directory holding `path` so a rename into it is durable (best effort).
pub(crate) fn sync_parent_dir(path: &Path) {
    if let Some(dir) = path.parent() {
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
}
