//! The crate's one error type.
//!
//! Every fallible public function returns [`Result<T>`](Result). Messages say what is
//! wrong, where (file, record, byte offset, parameter) and, when it helps, what to do.

use std::path::{Path, PathBuf};

/// Everything that can go wrong in vecquant.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An operating-system I/O failure on a named file.
    #[error("{path}: {source}")]
    Io {
        /// The file being read or written.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A file's contents do not follow its format (truncated, wrong magic, bad header, ...).
    #[error("{path}: {message}")]
    Format {
        /// The offending file.
        path: PathBuf,
        /// What is wrong and where (record number, byte offset, field).
        message: String,
    },
    /// Two things that must have the same dimension do not.
    #[error("dimension mismatch in {context}: expected {expected}, got {got}")]
    DimensionMismatch {
        /// What was being checked ("query", "add", ...).
        context: String,
        /// The dimension required.
        expected: usize,
        /// The dimension supplied.
        got: usize,
    },
    /// A vector or weight holds NaN or ±inf.
    #[error("{context}: non-finite value {value} at row {row}, column {col}")]
    NonFinite {
        /// What was being checked.
        context: String,
        /// Row (vector) index.
        row: usize,
        /// Column (component) index.
        col: usize,
        /// The offending value.
        value: f32,
    },
    /// A vector, or a term an index derives from it (norm, correction term, range,
    /// centroid), is finite but so large that distances to it would overflow `f32`.
    #[error("{context}: row {row}: {message}")]
    TooLarge {
        /// What was being checked (`add`, `query`, `training sample`, ...).
        context: String,
        /// Row (vector) index within what was checked.
        row: usize,
        /// What is too large, by how much, and the limit.
        message: String,
    },
    /// An id given to `add` is already held by a live vector, or repeats within the batch.
    #[error(
        "id {id} (row {row}) {}; {count} of the new ids collide (delete them first, or upsert to replace them)",
        if *within_batch { "repeats an earlier id of the same batch" } else { "is already in the index" }
    )]
    DuplicateId {
        /// The first colliding id.
        id: u64,
        /// Its row in the batch.
        row: usize,
        /// How many rows of the batch collide.
        count: usize,
        /// Whether the first collision is within the batch (else with a live vector).
        within_batch: bool,
    },
    /// An id asked for (to reconstruct its vector) that no live vector of the index holds.
    #[error("id {id} (position {position} of the ids asked for) is not in the index{}", if *deleted { " (it was deleted)" } else { "" })]
    UnknownId {
        /// The first id not found.
        id: u64,
        /// Its position in the ids asked for.
        position: usize,
        /// Whether a deleted vector held it.
        deleted: bool,
    },
    /// A parameter is out of its valid range or inconsistent with the data.
    #[error("invalid parameter `{name}`: {message}")]
    InvalidParameter {
        /// The parameter's name as the user wrote it.
        name: String,
        /// Why it is invalid and which values would work.
        message: String,
    },
    /// An index was searched before anything was added to it.
    #[error("the index is empty: add vectors before searching")]
    EmptyIndex,
    /// An index spec string could not be parsed.
    #[error("cannot parse index spec `{spec}`: {message}")]
    Spec {
        /// The spec as given.
        spec: String,
        /// What is wrong, with the accepted forms.
        message: String,
    },
    /// An error while processing one named tensor of a weight file.
    #[error("tensor `{name}`: {source}")]
    Tensor {
        /// The tensor's name in its file.
        name: String,
        /// What went wrong.
        #[source]
        source: Box<Error>,
    },
    /// A numerical routine failed (e.g. a matrix that should be positive definite is not).
    #[error("numerical failure in {context}: {message}")]
    Numerical {
        /// The routine.
        context: String,
        /// What happened.
        message: String,
    },
}

/// `std::result::Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An [`Error::Io`] for `path`.
    pub fn io(path: impl AsRef<Path>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.as_ref().to_path_buf(),
            source,
        }
    }

    /// An [`Error::Io`] for a directory given where a file is read or written
    /// (kind [`std::io::ErrorKind::IsADirectory`]; opening or mapping one would otherwise
    /// report a baffling "No such device").
    pub fn is_directory(path: impl AsRef<Path>) -> Self {
        Error::io(
            path,
            std::io::Error::new(
                std::io::ErrorKind::IsADirectory,
                "is a directory, not a file",
            ),
        )
    }

    /// An [`Error::Format`] for `path`.
    pub fn format(path: impl AsRef<Path>, message: impl Into<String>) -> Self {
        Error::Format {
            path: path.as_ref().to_path_buf(),
            message: message.into(),
        }
    }

    /// An [`Error::InvalidParameter`].
    pub fn param(name: impl Into<String>, message: impl Into<String>) -> Self {
        Error::InvalidParameter {
            name: name.into(),
            message: message.into(),
        }
    }

    /// Wraps `source` as an error of the tensor `name` ([`Error::Tensor`]).
    pub fn in_tensor(name: impl Into<String>, source: Error) -> Self {
        Error::Tensor {
            name: name.into(),
            source: Box::new(source),
        }
    }

    /// The error as reported for input read from `path`: an error naming a row of that
    /// input (a non-finite or too large value, a dimension that does not fit) becomes an
    /// [`Error::Format`] naming the file and the record; others are returned unchanged.
    ///
    /// ```
    /// use vecquant::{Error, Flat, Index, Metric};
    /// let mut index = Flat::new(2, Metric::L2);
    /// let e = index.add(&[0.0, 1.0, f32::NAN, 2.0], None).unwrap_err();
    /// let e = e.in_file("more.fvecs").to_string();
    /// assert!(e.starts_with("more.fvecs: record 1: component 0 is NaN"), "{e}");
    /// ```
    pub fn in_file(self, path: impl AsRef<Path>) -> Error {
        match self {
            Error::NonFinite {
                row, col, value, ..
            } => Error::format(
                path,
                format!("record {row}: component {col} is {value} (values must be finite)"),
            ),
            Error::TooLarge { row, message, .. } => {
                Error::format(path, format!("record {row}: {message}"))
            }
            Error::DimensionMismatch { expected, got, .. } => Error::format(
                path,
                format!("dimension {got} does not match the expected dimension {expected}"),
            ),
            e => e,
        }
    }

    /// The error of a piece of a larger input that starts at row `first`: row numbers
    /// (of a non-finite or too large value, of a colliding id) become rows of the whole
    /// input. Streamed builds add a file chunk by chunk and report the file's records.
    ///
    /// ```
    /// use vecquant::{Error, Flat, Index, Metric};
    /// let mut index = Flat::new(2, Metric::L2);
    /// let e = index.add(&[0.0, 1.0, f32::NAN, 2.0], None).unwrap_err();
    /// let e = e.rows_from(1000).in_file("base.fvecs").to_string();
    /// assert!(e.starts_with("base.fvecs: record 1001: component 0 is NaN"), "{e}");
    /// ```
    pub fn rows_from(self, first: usize) -> Error {
        match self {
            Error::NonFinite {
                context,
                row,
                col,
                value,
            } => Error::NonFinite {
                context,
                row: row + first,
                col,
                value,
            },
            Error::TooLarge {
                context,
                row,
                message,
            } => Error::TooLarge {
                context,
                row: row + first,
                message,
            },
            Error::DuplicateId {
                id,
                row,
                count,
                within_batch,
            } => Error::DuplicateId {
                id,
                row: row + first,
                count,
                within_batch,
            },
            e => e,
        }
    }

    /// An [`Error::DimensionMismatch`].
    pub fn dim(context: impl Into<String>, expected: usize, got: usize) -> Self {
        Error::DimensionMismatch {
            context: context.into(),
            expected,
            got,
        }
    }
}
