//! `Index`, `index_factory`, `read_index`: the library's indexes behind FAISS's calls.

use std::path::PathBuf;

use numpy::{
    PyArray1, PyArray2, PyArrayMethods, PyReadonlyArray2, PyUntypedArray, PyUntypedArrayMethods,
};
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use vecquant::index::spec::{BuildOptions, IndexSpec, new_index};
use vecquant::store::{Container, OpenOptions};
use vecquant::{Error, Index, Metric, SearchParams};

use crate::{IntoPy, in_pool, invalid};

/// `x` as a C-contiguous float32 `(n, d)` array: the array itself when it already is one
/// (no copy), else converted once by numpy. Errors name `what`.
pub(crate) fn rows_f32<'py>(
    x: &Bound<'py, PyAny>,
    what: &str,
) -> PyResult<PyReadonlyArray2<'py, f32>> {
    let py = x.py();
    let arr = py
        .import("numpy")?
        .call_method1("ascontiguousarray", (x, "float32"))?;
    let arr = arr
        .cast_into::<PyUntypedArray>()
        .map_err(|_| invalid(format!("{what} must be a numpy array")))?;
    if arr.ndim() != 2 {
        return Err(invalid(format!(
            "{what} must be a 2-D array (n, d); got shape {:?}",
            arr.shape()
        )));
    }
    let arr = arr
        .cast_into::<PyArray2<f32>>()
        .map_err(|_| invalid(format!("{what} must be float32")))?;
    Ok(arr.readonly())
}

/// The row-major slice of a C-contiguous array from [`rows_f32`].
fn slice<'a>(a: &'a PyReadonlyArray2<'_, f32>) -> PyResult<&'a [f32]> {
    a.as_slice()
        .map_err(|e| invalid(format!("array is not contiguous: {e}")))
}

/// `ids` as u64 (any integer array-like of `n` non-negative values).
fn ids_u64(ids: &Bound<'_, PyAny>, n: usize) -> PyResult<Vec<u64>> {
    let py = ids.py();
    let arr = py
        .import("numpy")?
        .call_method1("ascontiguousarray", (ids, "int64"))?
        .call_method1("reshape", (-1,))?;
    let arr = arr
        .cast_into::<PyArray1<i64>>()
        .map_err(|_| invalid("ids must be an integer array"))?;
    let ro = arr.readonly();
    let v = ro.as_slice().map_err(|e| invalid(format!("ids: {e}")))?;
    if v.len() != n {
        return Err(Error::param(
            "ids",
            format!("{} ids given for {n} vectors", v.len()),
        ))
        .py_err();
    }
    v.iter()
        .enumerate()
        .map(|(i, &id)| {
            u64::try_from(id)
                .map_err(|_| Error::param("ids", format!("id {id} at position {i} is negative")))
        })
        .collect::<vecquant::Result<Vec<u64>>>()
        .py_err()
}

/// What `search` returns: distances `(nq, k)` and ids `(nq, k)`.
type Hits<'py> = (Bound<'py, PyArray2<f32>>, Bound<'py, PyArray2<i64>>);

/// A vector index (any spec `index_factory` accepts), searched with numpy arrays.
///
/// >>> index = vecquant.index_factory(64, "SQ8")
/// >>> index.train(x); index.add(x)
/// >>> D, I = index.search(q, 10)
#[pyclass(name = "Index", module = "vecquant")]
pub struct PyIndex {
    inner: Box<dyn Index>,
}

impl PyIndex {
    /// `Index::reconstruct_ids` as a `(len(ids), d)` array, without the GIL.
    fn decode_ids<'py>(
        &self,
        py: Python<'py>,
        ids: Vec<u64>,
    ) -> PyResult<Bound<'py, PyArray2<f32>>> {
        let inner: &dyn Index = self.inner.as_ref();
        let n = ids.len();
        let out = py.detach(|| inner.reconstruct_ids(&ids)).py_err()?;
        PyArray1::from_vec(py, out).reshape([n, self.inner.dim()])
    }

    fn check_cols(&self, a: &PyReadonlyArray2<'_, f32>, what: &str) -> PyResult<()> {
        let cols = a.shape()[1];
        if cols != self.inner.dim() {
            return Err(Error::dim(what, self.inner.dim(), cols)).py_err();
        }
        Ok(())
    }

    /// The search parameters, refusing the ones that do nothing on this index (the
    /// CLI's checks, with the keyword names).
    fn params(
        &self,
        k: usize,
        nprobe: Option<usize>,
        ef: Option<usize>,
        rerank: Option<usize>,
    ) -> vecquant::Result<SearchParams> {
        let name = self.inner.spec();
        if let Ok(spec) = name.parse::<IndexSpec>() {
            spec.check_knobs(&name, k, nprobe, ef, rerank, "")?;
        }
        let mut p = SearchParams::new(k);
        if let Some(n) = nprobe {
            p = p.nprobe(n);
        }
        if let Some(e) = ef {
            p = p.ef_search(e);
        }
        if let Some(r) = rerank.filter(|&r| r > 0) {
            p = p.rerank(r);
        }
        Ok(p)
    }
}

#[pymethods]
impl PyIndex {
    /// Vector dimension.
    #[getter]
    fn d(&self) -> usize {
        self.inner.dim()
    }

    /// Number of live (not deleted) vectors.
    #[getter]
    fn ntotal(&self) -> usize {
        self.inner.len()
    }

    /// The spec string (``"SQ8"``, ``"IVF1024,PQ32x4fs"``, ...).
    #[getter]
    fn spec(&self) -> String {
        self.inner.spec()
    }

    /// The metric: ``"l2"``, ``"ip"`` or ``"cosine"``.
    #[getter]
    fn metric(&self) -> String {
        self.inner.metric().to_string()
    }

    /// Whether vectors can be added (kinds that need training are untrained until
    /// ``train``).
    #[getter]
    fn is_trained(&self) -> bool {
        self.inner.is_trained()
    }

    /// Bytes of code per vector (ids and kept raw vectors excluded).
    #[getter]
    fn bytes_per_vector(&self) -> f64 {
        self.inner.bytes_per_vector()
    }

    /// Number of deleted vectors still occupying space.
    #[getter]
    fn deleted(&self) -> usize {
        self.inner.deleted()
    }

    /// Bytes held in memory: codes, ids, codebooks, raw vectors if kept.
    #[getter]
    fn memory_bytes(&self) -> usize {
        self.inner.memory_bytes()
    }

    fn __len__(&self) -> usize {
        self.inner.len()
    }

    fn __repr__(&self) -> String {
        format!(
            "<vecquant.Index {} d={} metric={} ntotal={}>",
            self.inner.spec(),
            self.inner.dim(),
            self.inner.metric(),
            self.inner.len()
        )
    }

    /// train(x)
    /// --
    ///
    /// Trains the quantizer on ``x`` (float32 ``(n, d)``; other dtypes are converted
    /// once). A no-op for kinds that need no training (``Flat``).
    ///
    /// >>> index = vecquant.index_factory(32, "PQ8")
    /// >>> index.train(np.random.rand(5000, 32).astype("float32"))
    fn train(&mut self, py: Python<'_>, x: &Bound<'_, PyAny>) -> PyResult<()> {
        let a = rows_f32(x, "train")?;
        self.check_cols(&a, "train")?;
        let x = slice(&a)?;
        let inner = &mut self.inner;
        py.detach(|| in_pool(|| inner.train(x))).py_err()
    }

    /// add(x, ids=None)
    /// --
    ///
    /// Adds the rows of ``x`` (float32 ``(n, d)``) with ``ids`` (``n`` non-negative
    /// integers; default: consecutive past the largest id held). NaN/inf, a wrong
    /// dimension or an id already present raise ``ValueError``.
    ///
    /// >>> index.add(x)                      # ids 0..n-1
    /// >>> index.add(y, ids=np.arange(1000, 1000 + len(y)))
    #[pyo3(signature = (x, ids=None))]
    fn add(
        &mut self,
        py: Python<'_>,
        x: &Bound<'_, PyAny>,
        ids: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        let a = rows_f32(x, "add")?;
        self.check_cols(&a, "add")?;
        let ids = ids.map(|i| ids_u64(i, a.shape()[0])).transpose()?;
        let x = slice(&a)?;
        let inner = &mut self.inner;
        py.detach(|| in_pool(|| inner.add(x, ids.as_deref())))
            .py_err()
    }

    /// search(q, k, *, nprobe=None, ef=None, rerank=None, adaptive_rerank=False)
    /// --
    ///
    /// The ``k`` nearest neighbours of each row of ``q`` (float32 ``(nq, d)``), as FAISS
    /// returns them: ``D`` float32 ``(nq, k)`` distances (squared L2, or negated inner
    /// product / cosine similarity — smaller is better) and ``I`` int64 ``(nq, k)`` ids,
    /// best first, ties by id; ``-1`` ids and ``inf`` distances where fewer than ``k``
    /// vectors exist.
    ///
    /// nprobe: IVF lists probed (IVF only). ef: HNSW beam width (HNSW only). rerank:
    /// re-score this many candidates with exact distances (quantized indexes built
    /// with raw vectors kept). adaptive_rerank: RaBitQ indexes (flat or IVF) with
    /// ``rerank=R``: keep the ``R`` candidates with the smallest lower bounds of their
    /// distances and re-score them only while a bound beats the current k-th exact
    /// distance (at most ``R``, usually far fewer).
    ///
    /// >>> D, I = index.search(q, 10)
    /// >>> D, I = ivf.search(q, 10, nprobe=16)
    /// >>> D, I = rabitq.search(q, 10, rerank=100, adaptive_rerank=True)
    #[pyo3(signature = (q, k, *, nprobe=None, ef=None, rerank=None, adaptive_rerank=false))]
    #[allow(clippy::too_many_arguments)]
    fn search<'py>(
        &self,
        py: Python<'py>,
        q: &Bound<'py, PyAny>,
        k: usize,
        nprobe: Option<usize>,
        ef: Option<usize>,
        rerank: Option<usize>,
        adaptive_rerank: bool,
    ) -> PyResult<Hits<'py>> {
        let a = rows_f32(q, "search")?;
        self.check_cols(&a, "search")?;
        let p = self
            .params(k, nprobe, ef, rerank)
            .py_err()?
            .adaptive_rerank(adaptive_rerank);
        let nq = a.shape()[0];
        let q = slice(&a)?;
        let inner: &dyn Index = self.inner.as_ref();
        let (d, i) = py
            .detach(|| -> vecquant::Result<(Vec<f32>, Vec<i64>)> {
                // The answer arrays hold `k` distances (f32) and ids (i64) per query.
                vecquant::index::check_result_memory(nq, k, 12)?;
                let res = if nq == 0 {
                    vecquant::index::check_search(inner.dim(), inner.len(), &p)?;
                    Vec::new()
                } else {
                    in_pool(|| inner.search_batch(q, &p))?
                };
                let mut d = vec![f32::INFINITY; nq * k];
                let mut i = vec![-1i64; nq * k];
                for (row, hits) in res.iter().enumerate() {
                    for (j, n) in hits.iter().take(k).enumerate() {
                        d[row * k + j] = n.distance;
                        i[row * k + j] = i64::try_from(n.id).map_err(|_| {
                            Error::param("ids", format!("id {} does not fit int64", n.id))
                        })?;
                    }
                }
                Ok((d, i))
            })
            .py_err()?;
        let d = PyArray1::from_vec(py, d).reshape([nq, k])?;
        let i = PyArray1::from_vec(py, i).reshape([nq, k])?;
        Ok((d, i))
    }

    /// delete(ids)
    /// --
    ///
    /// Deletes the vectors with these ids (unknown ids are ignored); returns how many
    /// were deleted.
    fn delete(&mut self, py: Python<'_>, ids: &Bound<'_, PyAny>) -> PyResult<usize> {
        let n = ids.len()?;
        let ids = ids_u64(ids, n)?;
        let inner = &mut self.inner;
        py.detach(|| inner.delete(&ids)).py_err()
    }

    /// reconstruct(x)
    /// --
    ///
    /// With an integer id (FAISS's ``reconstruct(key)``): the stored vector with that id,
    /// decoded from its code — float32 ``(d,)``; see ``reconstruct_batch``.
    ///
    /// With an array: encodes then decodes the rows of ``x`` with the index's quantizer,
    /// giving what their codes would stand for (float32 ``(n, d)``). Kinds that store
    /// vectors exactly (``Flat``) return ``x`` unchanged (as float32).
    ///
    /// >>> v = index.reconstruct(42)             # stored vector of id 42
    /// >>> r = index.reconstruct(x[:10])         # quantization of new rows
    fn reconstruct<'py>(
        &self,
        py: Python<'py>,
        x: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        if let Ok(id) = x.extract::<i64>() {
            let id = u64::try_from(id).map_err(|_| invalid(format!("id {id} is negative")))?;
            let v = self.decode_ids(py, vec![id])?;
            return Ok(v.reshape([self.inner.dim()])?.into_any());
        }
        let a = rows_f32(x, "reconstruct")?;
        self.check_cols(&a, "reconstruct")?;
        let n = a.shape()[0];
        let xs = slice(&a)?;
        let inner: &dyn Index = self.inner.as_ref();
        let out = py
            .detach(|| in_pool(|| inner.reconstruct(xs)))
            .py_err()?
            .unwrap_or_else(|| xs.to_vec());
        Ok(PyArray1::from_vec(py, out)
            .reshape([n, self.inner.dim()])?
            .into_any())
    }

    /// reconstruct_batch(ids)
    /// --
    ///
    /// The stored vectors with these ids, float32 ``(len(ids), d)``, decoded from what
    /// the index holds: the vectors themselves for exact kinds (``Flat``, ``IVF…,Flat``,
    /// ``HNSW…,Flat``) and for indexes built with ``keep_raw=True``, else the quantizer's
    /// reconstruction of their codes (under IVF the list centroid plus the decoded
    /// residual; OPQ's rotation undone). Normalised under cosine, as stored. An id that no
    /// live vector holds raises ``ValueError`` naming it (and saying if it was deleted).
    ///
    /// >>> index.reconstruct_batch([7, 3, 7]).shape
    /// (3, 64)
    fn reconstruct_batch<'py>(
        &self,
        py: Python<'py>,
        ids: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyArray2<f32>>> {
        let n = py
            .import("numpy")?
            .call_method1("size", (ids,))?
            .extract::<usize>()?;
        let ids = ids_u64(ids, n)?;
        self.decode_ids(py, ids)
    }

    /// reconstruct_n(n0=0, ni=None)
    /// --
    ///
    /// ``reconstruct_batch(range(n0, n0 + ni))`` as FAISS's ``reconstruct_n``: the vectors
    /// with ids ``n0 … n0 + ni − 1`` (``ni`` defaults to ``ntotal − n0``) — with the
    /// default consecutive ids, the vectors in the order they were added.
    ///
    /// >>> everything = index.reconstruct_n()    # ids 0..ntotal-1
    /// >>> first = index.reconstruct_n(0, 100)
    #[pyo3(signature = (n0=0, ni=None))]
    fn reconstruct_n<'py>(
        &self,
        py: Python<'py>,
        n0: u64,
        ni: Option<u64>,
    ) -> PyResult<Bound<'py, PyArray2<f32>>> {
        let ni = ni.unwrap_or_else(|| (self.inner.len() as u64).saturating_sub(n0));
        let end = n0
            .checked_add(ni)
            .ok_or_else(|| invalid(format!("n0 {n0} + ni {ni} overflows")))?;
        self.decode_ids(py, (n0..end).collect())
    }

    /// save(path)
    /// --
    ///
    /// Saves the index atomically (temporary file, fsync, rename); ``vecquant.read_index``
    /// and the CLI read it.
    fn save(&self, py: Python<'_>, path: PathBuf) -> PyResult<()> {
        let inner: &dyn Index = self.inner.as_ref();
        py.detach(|| inner.save(&path)).py_err()
    }

    /// serialize()
    /// --
    ///
    /// The index file's bytes (what ``save`` writes); ``vecquant.deserialize_index``
    /// reads them back.
    fn serialize<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        let inner: &dyn Index = self.inner.as_ref();
        let bytes = py.detach(|| inner.to_container()?.to_bytes()).py_err()?;
        Ok(PyBytes::new(py, &bytes))
    }
}

/// index_factory(d, spec, metric="l2", *, keep_raw=False, seed=42, ef_construction=None, hnsw_builder=None)
/// --
///
/// An empty index over ``d``-dimensional vectors for any spec the CLI accepts:
/// ``Flat``, ``SQ8``/``SQ4``/..., ``PQ{M}``, ``PQ{M}x4fs``, ``OPQ{M},PQ{M}``,
/// ``IVF{nlist},...``, ``HNSW{M},...``. ``metric``: ``"l2"``, ``"ip"`` or ``"cosine"``.
/// ``keep_raw`` keeps the raw vectors so ``search(..., rerank=R)`` can re-rank exactly.
/// HNSW specs only: ``ef_construction`` (the build's beam width, 200 by default) and
/// ``hnsw_builder`` (``"native"``, the default: seeded, parallel, ``add`` inserts into
/// the graph; or ``"hnsw_rs"``), as ``vecquant build --ef-construction/--hnsw-builder``.
///
/// >>> index = vecquant.index_factory(128, "IVF256,PQ32x4fs", metric="ip")
/// >>> graph = vecquant.index_factory(128, "HNSW32,SQ8", ef_construction=100)
#[pyfunction]
#[pyo3(signature = (d, spec, metric="l2", *, keep_raw=false, seed=42, ef_construction=None, hnsw_builder=None))]
fn index_factory(
    d: usize,
    spec: &str,
    metric: &str,
    keep_raw: bool,
    seed: u64,
    ef_construction: Option<usize>,
    hnsw_builder: Option<&str>,
) -> PyResult<PyIndex> {
    let metric: Metric = metric.parse().py_err()?;
    let typed: IndexSpec = spec.parse().py_err()?;
    let hnsw_only = |name: &str| {
        Error::param(
            name,
            format!(
                "applies to HNSW specs (HNSW{{M}}[,…]) only; {spec} builds {}",
                typed.family()
            ),
        )
    };
    if ef_construction.is_some() && !typed.is_hnsw() {
        return vecquant::Result::Err(hnsw_only("ef_construction")).py_err();
    }
    if hnsw_builder.is_some() && !typed.is_hnsw() {
        return vecquant::Result::Err(hnsw_only("hnsw_builder")).py_err();
    }
    let defaults = BuildOptions::default();
    let opts = BuildOptions {
        metric,
        keep_raw,
        seed,
        ef_construction: ef_construction.unwrap_or(defaults.ef_construction),
        hnsw_builder: match hnsw_builder {
            Some(b) => b.parse().py_err()?,
            None => defaults.hnsw_builder,
        },
    };
    Ok(PyIndex {
        inner: new_index(spec, d, &opts).py_err()?,
    })
}

/// read_index(path, *, verify_checksums=True)
/// --
///
/// Opens an index file written by ``Index.save`` or the ``vecquant`` CLI, memory-mapped
/// (pages are read as searches touch them). ``verify_checksums=False`` skips the CRC
/// pass over every section, making opening a huge file O(1).
///
/// >>> index = vecquant.read_index("sift-sq8.vq")
#[pyfunction]
#[pyo3(signature = (path, *, verify_checksums=true))]
fn read_index(py: Python<'_>, path: PathBuf, verify_checksums: bool) -> PyResult<PyIndex> {
    let inner = py
        .detach(|| {
            let c = Container::open_with(&path, OpenOptions { verify_checksums })?;
            vecquant::index::from_container(&c)
        })
        .py_err()?;
    Ok(PyIndex { inner })
}

/// deserialize_index(data)
/// --
///
/// The index whose file bytes ``data`` holds (``Index.serialize()``).
#[pyfunction]
fn deserialize_index(py: Python<'_>, data: &[u8]) -> PyResult<PyIndex> {
    let bytes = data.to_vec();
    let inner = py
        .detach(|| {
            let c = Container::from_bytes("<serialized index>", bytes, OpenOptions::default())?;
            vecquant::index::from_container(&c)
        })
        .py_err()?;
    Ok(PyIndex { inner })
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyIndex>()?;
    m.add_function(wrap_pyfunction!(index_factory, m)?)?;
    m.add_function(wrap_pyfunction!(read_index, m)?)?;
    m.add_function(wrap_pyfunction!(deserialize_index, m)?)?;
    Ok(())
}
