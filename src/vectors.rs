//! Row-major `f32` vector sets and the checks every entry point runs on them.

use rayon::prelude::*;

use crate::error::{Error, Result};

/// `n` vectors of dimension `dim`, stored row-major in one contiguous buffer.
///
/// ```
/// use vecquant::VectorSet;
/// let v = VectorSet::new(vec![1.0, 2.0, 3.0, 4.0], 2).unwrap();
/// assert_eq!(v.len(), 2);
/// assert_eq!(v.row(1), &[3.0, 4.0]);
/// ```
#[derive(Clone, Debug, PartialEq, Default)]
pub struct VectorSet {
    data: Vec<f32>,
    dim: usize,
}

impl VectorSet {
    /// Wraps `data` as vectors of dimension `dim`.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] (`dim`) when `dim` is zero or does not divide
    /// `data.len()`.
    pub fn new(data: Vec<f32>, dim: usize) -> Result<Self> {
        if dim == 0 {
            return Err(Error::param("dim", "dimension must be at least 1"));
        }
        if !data.len().is_multiple_of(dim) {
            return Err(Error::param(
                "dim",
                format!(
                    "buffer of {} floats is not a whole number of {dim}-dimensional vectors",
                    data.len()
                ),
            ));
        }
        Ok(VectorSet { data, dim })
    }

    /// An empty set of dimension `dim`.
    pub fn empty(dim: usize) -> Self {
        VectorSet {
            data: Vec::new(),
            dim,
        }
    }

    /// Number of vectors.
    pub fn len(&self) -> usize {
        self.data.len().checked_div(self.dim).unwrap_or(0)
    }

    /// Whether there are no vectors.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// Dimension of every vector.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Vector `i` (panics if out of range, like slice indexing).
    #[inline]
    pub fn row(&self, i: usize) -> &[f32] {
        &self.data[i * self.dim..(i + 1) * self.dim]
    }

    /// The whole row-major buffer.
    pub fn as_slice(&self) -> &[f32] {
        &self.data
    }

    /// The whole row-major buffer, mutable.
    pub fn as_mut_slice(&mut self) -> &mut [f32] {
        &mut self.data
    }

    /// Consumes the set and returns its buffer.
    pub fn into_vec(self) -> Vec<f32> {
        self.data
    }

    /// Iterator over rows.
    pub fn rows(&self) -> std::slice::ChunksExact<'_, f32> {
        self.data.chunks_exact(self.dim)
    }

    /// Appends the row-major rows of `other`.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] (`extend`) when `other` is not a whole number of rows
    /// of this set's dimension; the set is then unchanged.
    pub fn extend(&mut self, other: &[f32]) -> Result<()> {
        check_batch(other, self.dim, "extend")?;
        self.data.extend_from_slice(other);
        Ok(())
    }

    /// The first `n` rows (or all of them when there are fewer).
    pub fn head(&self, n: usize) -> VectorSet {
        let n = n.min(self.len());
        VectorSet {
            data: self.data[..n * self.dim].to_vec(),
            dim: self.dim,
        }
    }

    /// Checks that every component is finite.
    ///
    /// # Errors
    /// [`Error::NonFinite`] naming `context` and the row, column and value of the first
    /// NaN or infinite component.
    pub fn check_finite(&self, context: &str) -> Result<()> {
        check_finite(&self.data, self.dim, context)
    }

    /// Scales every row to unit L2 norm in place (zero rows are left as they are).
    pub fn normalize(&mut self) {
        let dim = self.dim;
        self.data.par_chunks_mut(dim).for_each(normalize_in_place);
    }
}

/// Scales `v` to unit L2 norm (a zero vector stays zero).
pub fn normalize_in_place(v: &mut [f32]) {
    let norm = crate::kernels::dot(v, v).sqrt();
    if norm > 0.0 {
        let inv = 1.0 / norm;
        v.iter_mut().for_each(|x| *x *= inv);
    }
}

/// A copy of row-major `x` ready for `metric`: rows normalised for cosine, unchanged
/// otherwise (what every index stores and queries with).
pub(crate) fn prepared(x: &[f32], dim: usize, metric: crate::metric::Metric) -> Vec<f32> {
    let mut v = x.to_vec();
    if metric.normalizes() {
        v.chunks_exact_mut(dim).for_each(normalize_in_place);
    }
    v
}

/// Checks that `data` is a whole number of `dim`-dimensional rows; returns how many.
pub(crate) fn check_batch(data: &[f32], dim: usize, context: &str) -> Result<usize> {
    if dim == 0 || !data.len().is_multiple_of(dim) {
        return Err(Error::param(
            context,
            format!(
                "a buffer of {} floats is not a whole number of {dim}-dimensional vectors",
                data.len()
            ),
        ));
    }
    Ok(data.len() / dim)
}

/// Fails with [`Error::NonFinite`] naming the first NaN or infinite component of `data`.
/// Large inputs (weight matrices) are scanned in parallel chunks.
pub(crate) fn check_finite(data: &[f32], dim: usize, context: &str) -> Result<()> {
    use rayon::prelude::*;
    const CHUNK: usize = 1 << 16;
    // A branch-free (vectorising) OR per chunk; only on failure find the position.
    let bad = |c: &[f32]| c.iter().fold(false, |a, v| a | !v.is_finite());
    let first_bad_chunk = if data.len() <= CHUNK {
        bad(data).then_some(0)
    } else {
        data.par_chunks(CHUNK).position_first(bad)
    };
    let Some(ci) = first_bad_chunk else {
        return Ok(());
    };
    let pos = ci * CHUNK
        + data[ci * CHUNK..]
            .iter()
            .position(|x| !x.is_finite())
            .unwrap_or(0);
    Err(Error::NonFinite {
        context: context.to_string(),
        row: pos / dim.max(1),
        col: pos % dim.max(1),
        value: data[pos],
    })
}

/// Checks one query: length `dim` and every component finite.
pub(crate) fn check_query(query: &[f32], dim: usize) -> Result<()> {
    if query.len() != dim {
        return Err(Error::dim("query", dim, query.len()));
    }
    check_finite(query, dim, "query")
}
