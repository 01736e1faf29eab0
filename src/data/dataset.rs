//! Data-set folders: `train`, `base` and `query` vectors plus `groundtruth.ivecs`, the
//! layout of the TEXMEX sets (SIFT1M, GIST1M) that `vecquant gen` writes and
//! `vecquant bench --data DIR` reads.

use std::path::{Path, PathBuf};

use crate::data::generate::Dataset;
use crate::data::groundtruth::{ground_truth, ground_truth_chunked};
use crate::data::{AtomicWriter, read_vectors, vecs};
use crate::error::{Error, Result};
use crate::index::RESULT_BUDGET;
use crate::metric::Metric;
use crate::vectors::VectorSet;

/// Depth of the ground-truth files [`write_dataset`] writes (and [`load_dataset`]
/// computes when a folder has none): top-100, as SIFT1M ships.
pub const GT_DEPTH: usize = 100;

/// A data set read from a folder by [`load_dataset`].
#[derive(Clone, Debug)]
pub struct LoadedDataset {
    /// Name for reports (the folder name).
    pub name: String,
    /// The folder.
    pub dir: PathBuf,
    /// Vectors and splits.
    pub data: Dataset,
    /// Ground-truth ids per query, best first.
    pub gt: Vec<Vec<u32>>,
}

/// Writes a data set folder (`train.fvecs` if the train split is not empty,
/// `base.fvecs`, `query.fvecs`) and its top-[`GT_DEPTH`] ground truth under `metric`
/// (`groundtruth.ivecs`), which it also returns.
///
/// # Errors
/// [`Error::Io`] if the folder or a file cannot be written; the errors of
/// [`ground_truth`] (base and queries of different dimensions, an empty base).
pub fn write_dataset(
    dir: impl AsRef<Path>,
    data: &Dataset,
    metric: Metric,
) -> Result<Vec<Vec<u32>>> {
    let dir = dir.as_ref();
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    if !data.train.is_empty() {
        vecs::write_fvecs(dir.join("train.fvecs"), &data.train)?;
    }
    vecs::write_fvecs(dir.join("base.fvecs"), &data.base)?;
    vecs::write_fvecs(dir.join("query.fvecs"), &data.query)?;
    let k = GT_DEPTH.min(data.base.len());
    let gt = ground_truth(&data.base, &data.query, k, metric)?;
    write_ground_truth(dir.join("groundtruth.ivecs"), &gt)?;
    Ok(gt)
}

/// Writes ground-truth ids (one row per query, all rows as long as the first) as
/// `.ivecs`.
///
/// # Errors
/// [`Error::InvalidParameter`] if the rows differ in length or an id does not fit the format's
/// `i32`; [`Error::Io`] if the file cannot be written.
pub fn write_ground_truth(path: impl AsRef<Path>, gt: &[Vec<u32>]) -> Result<()> {
    let k = gt.first().map_or(0, Vec::len);
    let mut out = AtomicWriter::create(path)?;
    out.write_all(&ivecs_rows(0, gt, k)?)?;
    out.commit()
}

/// Computes the exact ground truth of `queries` over `base` (the `k` nearest under
/// `metric`, [`ground_truth_chunked`]) and writes it as `.ivecs` to `path`, a chunk of
/// queries at a time: memory holds at most [`RESULT_BUDGET`] neighbours however many
/// queries × `k` there are. The file is replaced atomically once every row is written.
///
/// # Errors
/// As [`ground_truth_chunked`] and [`write_ground_truth`].
pub fn write_exact_ground_truth(
    path: impl AsRef<Path>,
    base: &VectorSet,
    queries: &VectorSet,
    k: usize,
    metric: Metric,
) -> Result<()> {
    let mut out = AtomicWriter::create(path)?;
    let chunk = (RESULT_BUDGET / k.max(1)).max(1);
    ground_truth_chunked(base, queries, k, metric, chunk, |first, rows| {
        out.write_all(&ivecs_rows(first, &rows, k)?)
    })?;
    out.commit()
}

/// Ground-truth rows `first..` as `.ivecs` records of `k` ids.
fn ivecs_rows(first: usize, rows: &[Vec<u32>], k: usize) -> Result<Vec<u8>> {
    let mut bytes = Vec::with_capacity(rows.len() * 4 * (k + 1));
    // (Rows of no ids make an empty file, as `write_ivecs` of no values does.)
    let records = k > 0;
    for (q, row) in rows.iter().enumerate() {
        let q = first + q;
        if row.len() != k {
            return Err(Error::param(
                "ground truth",
                format!("row {q} has {} ids, row 0 has {k}", row.len()),
            ));
        }
        if records {
            bytes.extend_from_slice(&(k as i32).to_le_bytes());
        }
        for &id in row {
            let id = i32::try_from(id).map_err(|_| {
                Error::param(
                    "ground truth",
                    format!("row {q}: id {id} does not fit an .ivecs record (i32)"),
                )
            })?;
            bytes.extend_from_slice(&id.to_le_bytes());
        }
    }
    Ok(bytes)
}

/// Reads ground-truth ids from `.ivecs` (one record per query, best first).
///
/// # Errors
/// [`Error::Io`] if the file cannot be read; [`Error::Format`] if it is not a valid
/// `.ivecs` file or holds a negative id.
pub fn read_ground_truth(path: impl AsRef<Path>) -> Result<Vec<Vec<u32>>> {
    let path = path.as_ref();
    let (flat, k) = vecs::read_ivecs(path)?;
    flat.chunks_exact(k.max(1))
        .enumerate()
        .map(|(row, r)| {
            r.iter()
                .map(|&x| {
                    u32::try_from(x).map_err(|_| {
                        Error::format(path, format!("record {row}: negative neighbour id {x}"))
                    })
                })
                .collect()
        })
        .collect()
}

/// Reads a data set folder: `base` and `query` vectors (`.fvecs`, `.bvecs` or `.npy`),
/// `train` vectors if present (the base vectors otherwise) and `groundtruth.ivecs`. A
/// folder without ground truth gets one: top-[`GT_DEPTH`] under L2, computed and written
/// there, so later loads are fast.
///
/// # Errors
/// [`Error::Format`] if `base` or `query` is missing, a file is malformed or the ground
/// truth has a row count other than the number of queries; [`Error::DimensionMismatch`] if the splits
/// differ in dimension; [`Error::Io`] if a file cannot be read or the computed ground
/// truth cannot be written.
pub fn load_dataset(dir: impl AsRef<Path>) -> Result<LoadedDataset> {
    let dir = dir.as_ref();
    let find = |stem: &str| -> Option<PathBuf> {
        ["fvecs", "bvecs", "npy"]
            .iter()
            .map(|e| dir.join(format!("{stem}.{e}")))
            .find(|p| p.exists())
    };
    let base_path = find("base").ok_or_else(|| {
        Error::format(dir, "no base.fvecs (or .bvecs/.npy) in the data directory")
    })?;
    let query_path = find("query").ok_or_else(|| {
        Error::format(dir, "no query.fvecs (or .bvecs/.npy) in the data directory")
    })?;
    let base = read_vectors(&base_path)?;
    let query = read_vectors(&query_path)?;
    if query.dim() != base.dim() {
        return Err(Error::dim("query.fvecs", base.dim(), query.dim()));
    }
    let train = match find("train") {
        Some(p) => {
            let t = read_vectors(&p)?;
            if t.dim() != base.dim() {
                return Err(Error::dim("train.fvecs", base.dim(), t.dim()));
            }
            t
        }
        None => base.clone(),
    };
    let gt_path = dir.join("groundtruth.ivecs");
    let gt = if gt_path.exists() {
        read_ground_truth(&gt_path)?
    } else {
        let gt = ground_truth(&base, &query, GT_DEPTH.min(base.len()), Metric::L2)?;
        write_ground_truth(&gt_path, &gt)?;
        gt
    };
    if gt.len() != query.len() {
        return Err(Error::format(
            &gt_path,
            format!("{} ground-truth rows for {} queries", gt.len(), query.len()),
        ));
    }
    let name = dir
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "data".into());
    Ok(LoadedDataset {
        name,
        dir: dir.to_path_buf(),
        data: Dataset { train, base, query },
        gt,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::generate::{DataDistribution, SyntheticSpec};

    #[test]
    fn folder_round_trip_and_missing_ground_truth() {
        let dir = tempfile::tempdir().unwrap();
        let spec = SyntheticSpec {
            dim: 8,
            n_base: 300,
            n_query: 5,
            n_train: 0,
            distribution: DataDistribution::Gaussian {
                mean: 0.0,
                std: 1.0,
            },
            seed: 9,
        };
        let data = spec.generate().unwrap();
        let gt = write_dataset(dir.path(), &data, Metric::L2).unwrap();
        assert_eq!((gt.len(), gt[0].len()), (5, GT_DEPTH));
        let loaded = load_dataset(dir.path()).unwrap();
        assert_eq!(loaded.gt, gt);
        assert_eq!(loaded.data.query.as_slice(), data.query.as_slice());
        // No train.fvecs: training falls back to the base vectors.
        assert_eq!(loaded.data.train.as_slice(), data.base.as_slice());
        // Without ground truth on disk the loader computes the same ids again.
        std::fs::remove_file(dir.path().join("groundtruth.ivecs")).unwrap();
        assert_eq!(load_dataset(dir.path()).unwrap().gt, gt);
        assert!(dir.path().join("groundtruth.ivecs").exists());
        // Fewer ground-truth rows than queries is an error naming the file.
        write_ground_truth(dir.path().join("groundtruth.ivecs"), &gt[..3]).unwrap();
        let e = load_dataset(dir.path()).unwrap_err().to_string();
        assert!(e.contains("3 ground-truth rows for 5 queries"), "{e}");
        std::fs::remove_file(dir.path().join("base.fvecs")).unwrap();
        let e = load_dataset(dir.path()).unwrap_err().to_string();
        assert!(e.contains("no base.fvecs"), "{e}");
    }

    /// The streamed ground-truth file is the one `write_ground_truth` makes of
    /// `ground_truth`, byte for byte, and reads back as it; rows of no ids make an
    /// empty file.
    #[test]
    fn exact_ground_truth_file_equals_the_whole_written() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a.ivecs"), dir.path().join("b.ivecs"));
        let base = crate::data::generate::gaussian(150, 4, 0.0, 1.0, 3).unwrap();
        let q = crate::data::generate::gaussian(9, 4, 0.0, 1.0, 4).unwrap();
        let gt = ground_truth(&base, &q, 7, Metric::L2).unwrap();
        write_ground_truth(&a, &gt).unwrap();
        write_exact_ground_truth(&b, &base, &q, 7, Metric::L2).unwrap();
        assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
        assert_eq!(read_ground_truth(&b).unwrap(), gt);
        write_ground_truth(&a, &[vec![], vec![]]).unwrap();
        assert!(std::fs::read(&a).unwrap().is_empty());
    }

    #[test]
    fn ground_truth_rejects_ragged_rows_and_negative_ids() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("gt.ivecs");
        assert!(write_ground_truth(&p, &[vec![1, 2], vec![3]]).is_err());
        assert!(write_ground_truth(&p, &[vec![u32::MAX]]).is_err());
        vecs::write_ivecs(&p, &[4, -1], 2).unwrap();
        let e = read_ground_truth(&p).unwrap_err().to_string();
        assert!(e.contains("negative neighbour id -1"), "{e}");
    }
}
