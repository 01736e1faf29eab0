//! Vector files (`.fvecs`, `.ivecs`, `.bvecs`, `.npy`) and model-weight quantization.

use std::path::PathBuf;

use numpy::{PyArray1, PyArray2, PyArrayMethods, PyUntypedArrayMethods};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyDictMethods};
use vecquant::model::options::{self, GivenOptions, Method};
use vecquant::model::pipeline::check_calibration;
use vecquant::model::{self, quantize_model as quantize, quantize_model_calibrated};
use vecquant::vectors::VectorSet;
use vecquant::{Error, Result};

use crate::IntoPy;
use crate::index::rows_f32;

/// read_fvecs(path)
/// --
///
/// The vectors of a ``.fvecs`` file (``.bvecs`` and ``.npy`` too, by extension) as a
/// float32 ``(n, d)`` array.
#[pyfunction]
fn read_fvecs<'py>(py: Python<'py>, path: PathBuf) -> PyResult<Bound<'py, PyArray2<f32>>> {
    let v = py.detach(|| vecquant::data::read_vectors(&path)).py_err()?;
    let (n, d) = (v.len(), v.dim());
    PyArray1::from_vec(py, v.into_vec()).reshape([n, d])
}

/// write_fvecs(path, x)
/// --
///
/// Writes the rows of ``x`` (float32 ``(n, d)``) atomically as ``.fvecs`` (or ``.npy``,
/// by extension).
#[pyfunction]
fn write_fvecs(py: Python<'_>, path: PathBuf, x: &Bound<'_, PyAny>) -> PyResult<()> {
    let a = rows_f32(x, "write_fvecs")?;
    let d = a.shape()[1];
    let data = a
        .as_slice()
        .map_err(|e| crate::invalid(e.to_string()))?
        .to_vec();
    py.detach(|| vecquant::data::write_vectors(&path, &VectorSet::new(data, d)?))
        .py_err()
}

/// read_ivecs(path)
/// --
///
/// The rows of an ``.ivecs`` file (ground truth, result ids) as an int32 ``(n, d)``
/// array.
#[pyfunction]
fn read_ivecs<'py>(py: Python<'py>, path: PathBuf) -> PyResult<Bound<'py, PyArray2<i32>>> {
    let (v, d) = py
        .detach(|| vecquant::data::vecs::read_ivecs(&path))
        .py_err()?;
    let n = v.len().checked_div(d).unwrap_or(0);
    PyArray1::from_vec(py, v).reshape([n, d])
}

/// The keyword options `quantize_model` reads, as the CLI's flags.
fn given(
    options: Option<&Bound<'_, PyDict>>,
) -> PyResult<(GivenOptions, Option<PathBuf>, Option<PathBuf>)> {
    let mut o = GivenOptions::default();
    let (mut calib, mut report) = (None, None);
    let Some(options) = options else {
        return Ok((o, calib, report));
    };
    for (key, value) in options.iter() {
        let key: String = key.extract()?;
        if value.is_none() {
            continue;
        }
        match key.as_str() {
            "bits" => o.bits = Some(value.extract()?),
            "granularity" => {
                o.granularity = Some(value.extract::<String>()?.parse().py_err()?);
            }
            "group" => o.group = Some(value.extract()?),
            "rounding" => o.rounding = Some(value.extract()?),
            "clip" => o.clip = Some(value.extract()?),
            "seed" => o.seed = Some(value.extract()?),
            "calib" => calib = Some(value.extract::<PathBuf>()?),
            "act_order" => o.act_order = value.extract()?,
            "damp" => o.damp = Some(value.extract()?),
            "alpha" => o.alpha = Some(value.extract()?),
            "threshold" => o.threshold = Some(value.extract()?),
            "report" => report = Some(value.extract::<PathBuf>()?),
            other => {
                return Err(Error::param(
                    other,
                    "unknown option; quantize_model reads bits, granularity, group, \
                     rounding, clip, seed, calib, act_order, damp, alpha, threshold, report",
                ))
                .py_err();
            }
        }
    }
    o.calib = calib.is_some();
    Ok((o, calib, report))
}

/// quantize_model(weights, scheme, out, **options)
/// --
///
/// Quantizes every 2-D tensor of ``weights`` (``.safetensors`` or a 2-D ``.npy``) with
/// ``scheme`` and writes ``out`` (``.vq``, ``.gguf`` or dequantized ``.safetensors``), as
/// ``vecquant quantize-model`` does; returns the report as a dict. ``options`` are the
/// CLI's flags with underscores: ``bits``, ``granularity``, ``group``, ``rounding``,
/// ``clip``, ``seed``, ``calib`` (a path), ``act_order``, ``damp``, ``alpha``,
/// ``threshold``, and ``report`` (also write the report to this .json/.md path).
///
/// >>> rep = vecquant.quantize_model("model.safetensors", "absmax", "q.vq", bits=4)
/// >>> rep["total"]["bits_per_weight"]
#[pyfunction]
#[pyo3(signature = (weights, scheme, out, **options))]
fn quantize_model<'py>(
    py: Python<'py>,
    weights: PathBuf,
    scheme: &str,
    out: PathBuf,
    options: Option<&Bound<'py, PyDict>>,
) -> PyResult<Bound<'py, PyAny>> {
    let (given, calib_path, report_path) = given(options)?;
    let method = options::parse_method(scheme, &given).py_err()?;
    let json = py
        .detach(|| -> Result<String> {
            let calib = match (&method, &calib_path) {
                (Method::Calibrated(_), Some(p)) => model::io::read_safetensors(p)?,
                _ => Vec::new(),
            };
            let tensors = model::io::read_weights(&weights)?;
            let (q, rep) = match (&method, &calib_path) {
                (Method::Plain(s), _) => quantize(&tensors, s, |_, _, _| {})?,
                (Method::Calibrated(m), Some(p)) => {
                    check_calibration(&tensors, &calib, p)?;
                    quantize_model_calibrated(&tensors, m, &calib, |_, _, _| {})?
                }
                (Method::Calibrated(_), None) => {
                    return Err(Error::param("calib", "this scheme needs calibration data"));
                }
            };
            q.save(&out)?;
            if let Some(r) = &report_path {
                rep.write(r)?;
            }
            Ok(rep.to_json())
        })
        .py_err()?;
    py.import("json")?.call_method1("loads", (json,))
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(read_fvecs, m)?)?;
    m.add_function(wrap_pyfunction!(write_fvecs, m)?)?;
    m.add_function(wrap_pyfunction!(read_ivecs, m)?)?;
    m.add_function(wrap_pyfunction!(quantize_model, m)?)?;
    Ok(())
}
