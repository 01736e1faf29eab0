//! The `vecquant._vecquant` extension module: vecquant's indexes, vector files and model
//! quantization for Python, numpy in and out (the `vecquant` package re-exports it).
//!
//! Errors keep the library's messages and map by variant: bad input (shapes, values,
//! dimensions, specs, parameters) raises `vecquant.InvalidInputError`, a subclass of
//! `ValueError`; file problems (I/O, a file's format) raise `vecquant.FileError`, a
//! subclass of `OSError`; both derive from `vecquant.VecquantError`.

use std::sync::{Arc, Mutex};

use pyo3::create_exception;
use pyo3::exceptions::{PyException, PyOSError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyTuple, PyType};

mod files;
mod index;

create_exception!(
    _vecquant,
    VecquantError,
    PyException,
    "Base class of every error raised by vecquant itself."
);

/// `InvalidInputError(VecquantError, ValueError)` and `FileError(VecquantError, OSError)`,
/// made once at import (a class with two bases is made by calling `type`).
static INVALID_INPUT: PyOnceLock<Py<PyType>> = PyOnceLock::new();
static FILE_ERROR: PyOnceLock<Py<PyType>> = PyOnceLock::new();

fn make_class<'py>(
    py: Python<'py>,
    name: &str,
    other: Bound<'py, PyType>,
    doc: &str,
) -> PyResult<Bound<'py, PyType>> {
    let bases = PyTuple::new(py, [py.get_type::<VecquantError>(), other])?;
    let ns = PyDict::new(py);
    ns.set_item("__doc__", doc)?;
    ns.set_item("__module__", "vecquant")?;
    let cls = py
        .get_type::<PyType>()
        .call1((name, bases, ns))?
        .cast_into::<PyType>()?;
    Ok(cls)
}

/// The Python exception of a library error: the class by variant, the message as is.
pub(crate) fn to_py(e: vecquant::Error) -> PyErr {
    use vecquant::Error as E;
    let msg = e.to_string();
    let cell = match root(&e) {
        E::Io { .. } | E::Format { .. } => &FILE_ERROR,
        _ => &INVALID_INPUT,
    };
    Python::attach(|py| match cell.get(py) {
        Some(cls) => PyErr::from_type(cls.bind(py).clone(), msg),
        None => VecquantError::new_err(msg),
    })
}

/// The error a [`vecquant::Error::Tensor`] wraps (the class follows the cause).
fn root(e: &vecquant::Error) -> &vecquant::Error {
    match e {
        vecquant::Error::Tensor { source, .. } => root(source),
        e => e,
    }
}

/// A bad-input error raised by the bindings themselves (a wrong shape or dtype).
pub(crate) fn invalid(msg: impl Into<String>) -> PyErr {
    to_py(vecquant::Error::param("input", msg.into()))
}

/// `Result<T, vecquant::Error>` → `PyResult<T>`.
pub(crate) trait IntoPy<T> {
    fn py_err(self) -> PyResult<T>;
}

impl<T> IntoPy<T> for vecquant::Result<T> {
    fn py_err(self) -> PyResult<T> {
        self.map_err(to_py)
    }
}

/// The thread pool `set_num_threads` chose (`None`: rayon's global pool, every core).
static POOL: Mutex<Option<Arc<rayon::ThreadPool>>> = Mutex::new(None);

/// Runs `f` on the pool `set_num_threads` chose (rayon's global pool by default).
pub(crate) fn in_pool<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    let pool = POOL.lock().map(|p| p.clone()).unwrap_or(None);
    match pool {
        Some(p) => p.install(f),
        None => f(),
    }
}

/// set_num_threads(n)
/// --
///
/// Sets how many threads train, add and search use (default: every core). ``n = 0``
/// returns to the default.
///
/// >>> vecquant.set_num_threads(2)
#[pyfunction]
fn set_num_threads(n: usize) -> PyResult<()> {
    let pool = if n == 0 {
        None
    } else {
        let n = vecquant::threads::check_threads(n).py_err()?;
        let p = rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build()
            .map_err(|e| invalid(e.to_string()))?;
        Some(Arc::new(p))
    };
    if let Ok(mut g) = POOL.lock() {
        *g = pool;
    }
    Ok(())
}

/// get_num_threads()
/// --
///
/// The number of threads train, add and search use.
#[pyfunction]
fn get_num_threads() -> usize {
    in_pool(rayon::current_num_threads)
}

#[pymodule]
fn _vecquant(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("VecquantError", py.get_type::<VecquantError>())?;
    let invalid = make_class(
        py,
        "InvalidInputError",
        py.get_type::<PyValueError>(),
        "Bad input: a shape, a value (NaN/inf), a dimension, a spec or a parameter.",
    )?;
    let file = make_class(
        py,
        "FileError",
        py.get_type::<PyOSError>(),
        "A file that cannot be read or written, or whose contents do not follow its format.",
    )?;
    m.add("InvalidInputError", &invalid)?;
    m.add("FileError", &file)?;
    let _ = INVALID_INPUT.set(py, invalid.unbind());
    let _ = FILE_ERROR.set(py, file.unbind());
    m.add_function(wrap_pyfunction!(set_num_threads, m)?)?;
    m.add_function(wrap_pyfunction!(get_num_threads, m)?)?;
    m.add("SIMD_LEVEL", format!("{:?}", vecquant::simd_level()))?;
    index::register(m)?;
    files::register(m)?;
    Ok(())
}
