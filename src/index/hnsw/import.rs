//! Importing a graph the `hnsw_rs` crate dumped (`AnnT::file_dump`), so an hnsw_rs user
//! keeps the graph they built instead of rebuilding it: the dumped vectors become the
//! index's rows (their data ids its ids), the inner quantizer is trained on them and
//! encodes them, and the dumped adjacency lists become the graph.
//!
//! **The dump.** `file_dump(dir, name)` writes two native-endian files (hnsw_rs 0.3.x,
//! format 3 or 4, "full" mode; `usize` fields are 8 bytes on 64-bit targets):
//!
//! | file | contents |
//! | --- | --- |
//! | `name.hnsw.graph` | a description (magic, dump mode, `max_nb_connection` as a byte, level scale (format 4), layer count, `ef_construction`, point count, dimension, distance and data-type names); then per layer a magic, a point count and its points — magic, data id, level, rank, and per layer a neighbour count and a (data id, level, rank, distance) per neighbour; last the entry point (data id, level, rank) |
//! | `name.hnsw.data` | magic, dimension; per point in the graph file's order: magic, data id (u64), byte length, the vector |
//!
//! **Why both files are walked before hnsw_rs loads them.** hnsw_rs's loader
//! (`HnswIo::load_hnsw`) trusts its input: it `unwrap`s short reads, `assert`s magics
//! and ranks, allocates whatever count the file states, indexes its tables with stored
//! ranks, and on a short data record calls `std::process::exit(1)`. A truncated or
//! corrupted dump would panic, abort on an allocation, or end the process. So the walk
//! here bounds every count by the bytes left, checks every magic, rank, id and length,
//! and the loader only ever sees a dump that passed; the load still runs under
//! `catch_unwind`, so a case the walk missed becomes an [`Error::Format`], not a crash.
//!
//! **What is kept.** Layer 0 keeps hnsw_rs's first `2M` links per node (hnsw_rs keeps at
//! most `2M` there), upper layers the first `M`, nearest first; levels are hnsw_rs's.
//! The entry point is the lowest row on the top level (as for a graph built with the
//! `hnsw_rs` builder). Then, as after every build, nodes with few in-links get links
//! from their nearest neighbours and any node layer 0 cannot reach from the entry point
//! is linked in (see `repair_reachability`), which may replace a full node's farthest
//! link. The metric is the dump's distance (`DistL2` → L2, `DistCosine` → cosine,
//! `DistDot` → inner product) and `ef_construction` the dump's (used by later `add`s).

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use hnsw_rs::prelude::{DistCosine, DistDot, DistL2, Distance};

use super::build::{build_distance, graph_from_hnsw_rs, repair_reachability};
use super::{Graph, Hnsw, MAX_M};
use crate::error::{Error, Result};
use crate::index::Index;
use crate::index::checks::{check_terms, check_vectors};
use crate::index::rows::gather_rows;
use crate::index::spec::{BuildOptions, IndexSpec};
use crate::metric::Metric;
use crate::quant::codec::{InnerSpec, PqParams, Raw, RawSpec, SqSpec, VectorCodec};
use crate::quant::product::ProductQuantizer;
use crate::quant::rabitq::{RaBitQ, RabitqSpec};
use crate::quant::scalar::ScalarQuantizer;
use crate::rng::{sample_indices, seeded};
use crate::store::Slab;

/// hnsw_rs's magic of a format-2 description (bincode points; its loader cannot read it).
const MAGIC_DESCR_2: u32 = 0x002a_677f;
/// Format 3: raw little vectors, no level scale.
const MAGIC_DESCR_3: u32 = 0x002a_6771;
/// Format 4: format 3 with the level scale (what hnsw_rs 0.3.x writes).
const MAGIC_DESCR_4: u32 = 0x002a_6779;
/// Start of each layer in the graph file.
const MAGIC_LAYER: u32 = 0x000a_676f;
/// Start of each point in the graph file.
const MAGIC_POINT: u32 = 0x000a_678f;
/// Start of the data file and of each of its records.
const MAGIC_DATA: u32 = 0xa67f_0000;
/// hnsw_rs's `NB_LAYER_MAX` (levels 0..=15).
const HNSW_RS_LAYERS: usize = 16;
/// Longest distance or type name hnsw_rs's loader accepts.
const MAX_NAME: usize = 256;
/// Largest dimension an index file accepts (as [`Hnsw::from_container`]).
const MAX_DIM: usize = 1 << 24;
/// Rows the inner quantizer is trained on at most: a seeded sample when the dump holds
/// more (the same sample `vecquant build` draws from a base file).
const TRAIN_SAMPLE: usize = 1_000_000;
/// Bytes of a `usize` field in the dump (the writer's pointer width; only dumps written
/// by a target of this one's width and endianness can be read).
const USIZE: u64 = std::mem::size_of::<usize>() as u64;
/// Bytes of one neighbour in a full dump: data id, level, rank, distance.
const NEIGHBOUR_BYTES: u64 = USIZE + 1 + 4 + 4;

/// What an hnsw_rs dump's graph file says about the index it holds (hnsw_rs's
/// `Description`), read by [`read_hnsw_rs_description`].
#[derive(Clone, Debug, PartialEq)]
pub struct HnswRsDescription {
    /// Dump format: 3 or 4 (hnsw_rs 0.3 writes 4).
    pub format_version: u32,
    /// The element type's name (`f32`, `u8`, ...).
    pub data_type: String,
    /// The distance's type name (`anndists::dist::distances::DistL2`, ...).
    pub distance: String,
    /// hnsw_rs's `max_nb_connection`: vecquant's `M`.
    pub max_nb_connection: usize,
    /// `ef_construction` the graph was built with.
    pub ef_construction: usize,
    /// Number of points.
    pub count: usize,
    /// Dimension of the vectors.
    pub dim: usize,
    /// Layers of the graph's neighbour tables (16 for hnsw_rs 0.3).
    pub layers: usize,
}

impl HnswRsDescription {
    /// The metric of the recorded distance, if vecquant supports it: `DistL2` → L2,
    /// `DistCosine` → cosine, `DistDot` → inner product.
    pub fn metric(&self) -> Option<Metric> {
        match self.distance.rsplit("::").next().unwrap_or_default() {
            "DistL2" => Some(Metric::L2),
            "DistCosine" => Some(Metric::Cosine),
            "DistDot" => Some(Metric::InnerProduct),
            _ => None,
        }
    }
}

/// The two files of the dump `basename` in `dir`.
fn dump_paths(dir: &Path, basename: &str) -> (PathBuf, PathBuf) {
    (
        dir.join(format!("{basename}.hnsw.graph")),
        dir.join(format!("{basename}.hnsw.data")),
    )
}

/// Reads the description at the head of `dir/basename.hnsw.graph` (a few hundred bytes;
/// nothing else is read or checked).
///
/// # Errors
/// [`Error::Io`] if the file cannot be opened; [`Error::Format`] naming it if it is not
/// an hnsw_rs graph dump of format 3 or 4, or is cut short.
pub fn read_hnsw_rs_description(dir: &Path, basename: &str) -> Result<HnswRsDescription> {
    let (graph, _) = dump_paths(dir, basename);
    let mut r = DumpReader::open(&graph)?;
    read_description(&mut r)
}

/// Imports the hnsw_rs dump `dir/basename.hnsw.{graph,data}` as the HNSW index `spec`
/// (`HNSW{M}` or `HNSW{M},{inner}` — `SQ…`, `PQ{m}`, `RaBitQ[b]`): see the module docs
/// for what is kept. `M` must be the dump's `max_nb_connection`.
///
/// From `opts`: the seed (training sample and quantizer training), `keep_raw`, and the
/// builder later `add`s use. The metric and `ef_construction` are the dump's;
/// `opts.metric` and `opts.ef_construction` are not used.
///
/// Cost: both files are read twice (a checking walk, then hnsw_rs's loader), and memory
/// holds hnsw_rs's loaded graph and the vectors while the index is built.
///
/// ```
/// use hnsw_rs::prelude::{AnnT, DistL2, Hnsw as HnswRs};
/// use vecquant::data::generate::gaussian;
/// use vecquant::index::hnsw::import_hnsw_rs;
/// use vecquant::index::spec::BuildOptions;
/// use vecquant::{Metric, SearchParams};
///
/// let data = gaussian(500, 8, 0.0, 1.0, 7).unwrap();
/// let h = HnswRs::<f32, DistL2>::new(8, 500, 16, 100, DistL2);
/// for i in 0..500 {
///     h.insert((data.row(i), 1000 + i)); // data ids 1000..1500
/// }
/// let dir = tempfile::tempdir().unwrap();
/// h.file_dump(dir.path(), "vectors").unwrap();
///
/// let index = import_hnsw_rs(dir.path(), "vectors", "HNSW8,SQ8", &BuildOptions::default()).unwrap();
/// assert_eq!((index.len(), index.metric()), (500, Metric::L2));
/// let hits = index.search(data.row(3), &SearchParams::new(1)).unwrap();
/// assert_eq!(hits[0].id, 1003);
/// // The spec's M must be the dump's.
/// let e = import_hnsw_rs(dir.path(), "vectors", "HNSW16", &BuildOptions::default()).err();
/// assert!(e.unwrap().to_string().contains("max_nb_connection 8"));
/// ```
///
/// # Errors
/// [`Error::Spec`] for a spec that does not parse or is not an HNSW spec;
/// [`Error::InvalidParameter`] when its `M` differs from the dump's or its quantizer
/// does not fit the dimension; [`Error::Io`] for a file that cannot be read;
/// [`Error::Format`] naming the file for a dump that is truncated, corrupted, of another
/// data type than `f32` or another distance than `DistL2`/`DistCosine`/`DistDot`, empty,
/// or with an `M` vecquant cannot hold (outside `2..=`[`MAX_M`]).
pub fn import_hnsw_rs(
    dir: &Path,
    basename: &str,
    spec: &str,
    opts: &BuildOptions,
) -> Result<Box<dyn Index>> {
    let typed: IndexSpec = spec.parse()?;
    let IndexSpec::Hnsw { m, inner } = typed else {
        return Err(Error::Spec {
            spec: spec.to_string(),
            message: format!(
                "it builds {}: an hnsw_rs graph imports as HNSW{{M}} or HNSW{{M}},{{SQ…|PQ…|RaBitQ…}}",
                typed.family()
            ),
        });
    };
    // The description alone decides whether the dump and the spec fit: checked before
    // the walk over the whole dump.
    let (graph, _) = dump_paths(dir, basename);
    let descr = read_hnsw_rs_description(dir, basename)?;
    supported(&descr, &graph)?;
    if m != descr.max_nb_connection {
        let mut fix = typed.to_string();
        fix.replace_range(
            ..format!("HNSW{m}").len(),
            &format!("HNSW{}", descr.max_nb_connection),
        );
        return Err(Error::param(
            "spec",
            format!(
                "{typed} has M = {m}, but {} was built with max_nb_connection {}: write {fix} \
                 (the graph keeps the links it was built with)",
                graph.display(),
                descr.max_nb_connection
            ),
        ));
    }
    typed.check_dim(descr.dim)?;
    let dump = Dump::check(dir, basename)?;
    fn boxed<C: VectorCodec>(
        dump: &Dump,
        inner: C::Spec,
        opts: &BuildOptions,
    ) -> Result<Box<dyn Index>> {
        Ok(Box::new(Hnsw::<C>::from_checked_dump(dump, inner, opts)?))
    }
    match inner.to_inner_spec() {
        InnerSpec::Flat => boxed::<Raw>(&dump, RawSpec, opts),
        InnerSpec::Scalar { name, config } => {
            boxed::<ScalarQuantizer>(&dump, SqSpec { name, config }, opts)
        }
        InnerSpec::Product { m: pm, nbits } => {
            boxed::<ProductQuantizer>(&dump, PqParams { m: pm, nbits }, opts)
        }
        InnerSpec::RaBitQ { bits } => boxed::<RaBitQ>(&dump, RabitqSpec { bits }, opts),
        InnerSpec::RaBitQFs { bits } => Err(Error::param(
            "spec",
            format!(
                "HNSW stores row-major RaBitQ codes only, not the fast-scan layout: write \
                 HNSW{m},{}",
                RabitqSpec { bits }.name()
            ),
        )),
    }
}

impl<C: VectorCodec> Hnsw<C> {
    /// [`import_hnsw_rs`] with a typed inner quantizer (`M` is the dump's): for callers
    /// that want the concrete index, e.g. to look at its graph.
    ///
    /// # Errors
    /// As [`import_hnsw_rs`].
    pub fn from_hnsw_rs(
        dir: &Path,
        basename: &str,
        inner: C::Spec,
        opts: &BuildOptions,
    ) -> Result<Self> {
        let dump = Dump::check(dir, basename)?;
        Self::from_checked_dump(&dump, inner, opts)
    }

    /// The index over a dump that passed [`Dump::check`].
    fn from_checked_dump(dump: &Dump, inner: C::Spec, opts: &BuildOptions) -> Result<Self> {
        let (d, metric, m) = (dump.descr.dim, dump.metric, dump.m());
        let mut h = Hnsw::<C>::new(m, inner, d, metric, opts.keep_raw, opts.seed)?;
        h.set_ef_construction(dump.descr.ef_construction.clamp(1, 1 << 16))?;
        h.set_builder(opts.hnsw_builder);
        let loaded = match metric {
            Metric::L2 => dump.load::<DistL2>()?,
            Metric::Cosine => dump.load::<DistCosine>()?,
            Metric::InnerProduct => dump.load::<DistDot>()?,
        };
        let Loaded {
            ids,
            vectors,
            mut graph,
        } = loaded;
        let n = ids.len();
        check_vectors(&vectors, d, "vectors").map_err(|e| match e {
            Error::NonFinite {
                row, col, value, ..
            } => dump.data_error(format!(
                "the vector of data id {} has component {col} = {value} (values must be \
                 finite)",
                ids[row]
            )),
            Error::TooLarge { row, message, .. } => {
                dump.data_error(format!("the vector of data id {}: {message}", ids[row]))
            }
            e => e,
        })?;
        if !h.is_trained() {
            let rows = sample_indices(n, TRAIN_SAMPLE, &mut seeded(opts.seed));
            h.train(&gather_rows(&vectors, d, &rows))?;
        }
        let x = h.prepare(&vectors);
        drop(vectors);
        let codec = h.codec()?;
        if !C::STORES_RAW {
            let codes = codec.encode(&x)?;
            if codec.has_aux(metric) {
                let corr = codec.aux_terms(&codes, metric, &|_| None);
                check_terms(&corr, f64::MAX, "import", "auxiliary term", 0)?;
                h.corr = Slab::from(corr);
            }
            h.codes = Slab::from(codes);
        }
        h.rows.push(n, Some(&ids[..]));
        // The graph was built with the exact distance over the original vectors; repair
        // orders candidate hosts the same way (cosine: L2 of the normalised vectors).
        let ip_shift = (metric == Metric::InnerProduct).then_some(0.0);
        repair_reachability(&mut graph, &x, d, 2 * m, |a, b| {
            build_distance(ip_shift, a, b)
        });
        if h.stores_raw() {
            h.raw = Slab::from(x);
        }
        h.graph = graph;
        Ok(h)
    }
}

/// A dump whose two files passed the checking walk.
struct Dump {
    dir: PathBuf,
    basename: String,
    graph: PathBuf,
    data: PathBuf,
    descr: HnswRsDescription,
    metric: Metric,
    /// The data ids, ascending (all distinct): row `i` holds `ids[i]`.
    ids: Vec<u64>,
}

/// What the import takes from hnsw_rs's loaded graph.
struct Loaded {
    /// Data id of each row, ascending.
    ids: Vec<u64>,
    /// The vectors, row-major in row order (as dumped: not normalised).
    vectors: Vec<f32>,
    /// The copied graph over rows (not yet repaired).
    graph: Graph,
}

impl Dump {
    fn m(&self) -> usize {
        self.descr.max_nb_connection
    }

    fn data_error(&self, message: String) -> Error {
        Error::format(&self.data, message)
    }

    /// Walks both files and checks everything hnsw_rs's loader relies on (see the
    /// module docs); the description is checked against what vecquant can import
    /// before the walk.
    fn check(dir: &Path, basename: &str) -> Result<Dump> {
        let (graph_path, data_path) = dump_paths(dir, basename);
        let mut g = DumpReader::open(&graph_path)?;
        let mut data = DumpReader::open(&data_path)?;
        let descr = read_description(&mut g)?;
        let metric = supported(&descr, &graph_path)?;
        let n = descr.count;
        let bad = |m: String| Error::format(&graph_path, m);
        // The data file's size is known from the description: a truncated one fails here.
        let rec = 4 + 8 + 8 + 4 * descr.dim as u64;
        let expected = (n as u64)
            .checked_mul(rec)
            .and_then(|b| b.checked_add(4 + USIZE))
            .ok_or_else(|| {
                bad(format!(
                    "{n} points of dimension {}: size overflows",
                    descr.dim
                ))
            })?;
        if data.len != expected {
            let what = if data.len < expected {
                "truncated"
            } else {
                "has trailing bytes"
            };
            return Err(data.error(format!(
                "{what}: {} bytes, but {n} vectors of dimension {} take {expected} (per \
                 {})",
                data.len,
                descr.dim,
                graph_path.display()
            )));
        }
        if data.u32("the magic")? != MAGIC_DATA {
            return Err(data.error("not an hnsw_rs data dump: bad magic at byte 0".into()));
        }
        let ddim = data.usize("the dimension")?;
        if ddim != descr.dim {
            return Err(data.error(format!(
                "dimension {ddim}, but {} says {}",
                graph_path.display(),
                descr.dim
            )));
        }
        let ids = walk_points(&mut g, &mut data, &descr)?;
        let mut sorted: Vec<u64> = ids.iter().map(|&i| i as u64).collect();
        sorted.sort_unstable();
        if let Some(w) = sorted.windows(2).find(|w| w[0] == w[1]) {
            return Err(bad(format!(
                "data id {} is held by two points: vecquant ids must be distinct",
                w[0]
            )));
        }
        Ok(Dump {
            dir: dir.to_path_buf(),
            basename: basename.to_string(),
            graph: graph_path,
            data: data_path,
            descr,
            metric,
            ids: sorted,
        })
    }

    /// Loads the dump with hnsw_rs's loader and copies what the index needs.
    fn load<D: Distance<f32> + Default + Send + Sync>(&self) -> Result<Loaded> {
        // The walk of `check` rules out every panic of the loader we know of; if the
        // files changed since, or a case was missed, the panic becomes an error here
        // (hnsw_rs's state is dropped with the closure, nothing of it is reused).
        let load = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let mut io = hnsw_rs::hnswio::HnswIo::new(&self.dir, &self.basename);
            let h = io.load_hnsw::<f32, D>().map_err(|e| {
                Error::format(&self.graph, format!("hnsw_rs could not load it: {e}"))
            })?;
            self.copy(&h)
        }));
        load.unwrap_or_else(|panic| {
            let why = panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("a panic");
            Err(Error::format(
                &self.graph,
                format!("hnsw_rs's loader failed on this dump: {why}"),
            ))
        })
    }

    /// Vectors and graph of the loaded `h`, in row order.
    fn copy<D: Distance<f32> + Send + Sync>(
        &self,
        h: &hnsw_rs::hnsw::Hnsw<'_, f32, D>,
    ) -> Result<Loaded> {
        let (n, d, m) = (self.ids.len(), self.descr.dim, self.m());
        let changed = |what: &str| {
            Error::format(
                &self.graph,
                format!("{what} differs from the checked files (did they change while reading?)"),
            )
        };
        if h.get_nb_point() != n {
            return Err(changed("the number of loaded points"));
        }
        let row_of = |id: usize| self.ids.binary_search(&(id as u64)).ok();
        let mut vectors = vec![0.0f32; n * d];
        let mut filled = vec![false; n];
        for p in h.get_point_indexation() {
            let v = p.get_v();
            let row = row_of(p.get_origin_id()).ok_or_else(|| changed("a data id"))?;
            if v.len() != d || filled[row] {
                return Err(changed("a loaded vector"));
            }
            vectors[row * d..(row + 1) * d].copy_from_slice(v);
            filled[row] = true;
        }
        // Rows are the data ids in ascending order (for ids 0..n, the ids themselves).
        let graph = graph_from_hnsw_rs(h, n, m, row_of);
        Ok(Loaded {
            ids: self.ids.clone(),
            vectors,
            graph,
        })
    }
}

/// The metric of a dump vecquant can import: `Err` naming `graph` for another data type
/// or distance, an `M` outside `2..=`[`MAX_M`], no points, or a dimension or point
/// count out of range.
fn supported(descr: &HnswRsDescription, graph: &Path) -> Result<Metric> {
    let bad = |m: String| Error::format(graph, m);
    if descr.data_type != std::any::type_name::<f32>() {
        return Err(bad(format!(
            "a dump of `{}` vectors: vecquant imports dumps of f32 vectors only \
             (hnsw_rs `Hnsw<f32, DistL2 | DistCosine | DistDot>`)",
            descr.data_type
        )));
    }
    let Some(metric) = descr.metric() else {
        return Err(bad(format!(
            "distance `{}`: vecquant imports DistL2 (as l2), DistCosine (as cosine) and \
             DistDot (as ip) only",
            descr.distance
        )));
    };
    let m = descr.max_nb_connection;
    if !(2..=MAX_M).contains(&m) {
        return Err(bad(format!(
            "max_nb_connection {m}: vecquant's HNSW holds M in 2..={MAX_M}"
        )));
    }
    let n = descr.count;
    if n == 0 {
        return Err(bad(
            "the dump holds no points: there is no graph to import".into()
        ));
    }
    if descr.dim == 0 || descr.dim > MAX_DIM {
        return Err(bad(format!(
            "dimension {} is out of range (1..={MAX_DIM})",
            descr.dim
        )));
    }
    if n >= i32::MAX as usize {
        return Err(bad(format!(
            "{n} points: HNSW holds at most {}",
            i32::MAX - 1
        )));
    }
    Ok(metric)
}

/// Reads the description (hnsw_rs's `load_description`, with every field checked).
fn read_description(r: &mut DumpReader) -> Result<HnswRsDescription> {
    let format_version = match r.u32("the magic")? {
        MAGIC_DESCR_3 => 3,
        MAGIC_DESCR_4 => 4,
        MAGIC_DESCR_2 => {
            return Err(r.error(
                "an hnsw_rs dump of format 2 (bincode vectors), which hnsw_rs 0.3 cannot \
                 reload: dump the index again with hnsw_rs 0.3"
                    .into(),
            ));
        }
        other => {
            return Err(r.error(format!(
                "not an hnsw_rs graph dump: magic {other:#010x} at byte 0 (hnsw_rs 0.3 \
                 writes {MAGIC_DESCR_4:#010x}); give the .hnsw.graph file `file_dump` wrote"
            )));
        }
    };
    let mode = r.u8("the dump mode")?;
    if mode != 1 {
        return Err(r.error(format!(
            "dump mode {mode}: only full dumps (mode 1, as `file_dump` writes) can be reloaded"
        )));
    }
    let max_nb_connection = usize::from(r.u8("max_nb_connection")?);
    if format_version == 4 {
        let scale = r.f64("the level scale")?;
        if !(scale.is_finite() && scale > 0.0) {
            return Err(r.error(format!("level scale {scale} is not a positive number")));
        }
    }
    let layers = usize::from(r.u8("the layer count")?);
    if layers == 0 || layers > HNSW_RS_LAYERS {
        return Err(r.error(format!(
            "{layers} layers in the description (hnsw_rs uses 1..={HNSW_RS_LAYERS})"
        )));
    }
    let ef_construction = r.usize("ef_construction")?;
    let count = r.usize("the point count")?;
    let dim = r.usize("the dimension")?;
    let distance = r.name("the distance name")?;
    let data_type = r.name("the data type name")?;
    Ok(HnswRsDescription {
        format_version,
        data_type,
        distance,
        max_nb_connection,
        ef_construction,
        count,
        dim,
        layers,
    })
}

/// Walks the layers of the graph file (after the description) and the records of the
/// data file (after its header) in step; returns the data id of every point in file
/// order. Every count is bounded by the bytes left before anything is sized by it.
fn walk_points(
    g: &mut DumpReader,
    data: &mut DumpReader,
    descr: &HnswRsDescription,
) -> Result<Vec<usize>> {
    let n = descr.count;
    let vec_bytes = 4 * descr.dim as u64;
    let nb_layers = usize::from(g.u8("the layer count of the graph")?);
    if nb_layers == 0 || nb_layers > HNSW_RS_LAYERS {
        return Err(g.error(format!(
            "{nb_layers} layers (hnsw_rs uses 1..={HNSW_RS_LAYERS})"
        )));
    }
    // Smallest point record: magic, id, level, rank, and an empty list per layer.
    let min_point = 4 + USIZE + 1 + 4 + descr.layers as u64 * USIZE;
    let mut ids = Vec::with_capacity(n);
    let mut per_layer = vec![0usize; nb_layers];
    // Highest rank a neighbour refers to on each layer (checked once the counts are known).
    let mut max_ref: Vec<Option<(usize, usize, usize)>> = vec![None; nb_layers];
    for (l, layer_count) in per_layer.iter_mut().enumerate() {
        g.at = None;
        if g.u32("a layer magic")? != MAGIC_LAYER {
            return Err(g.error(format!(
                "bad magic at the start of layer {l} (byte {})",
                g.pos - 4
            )));
        }
        let count = g.usize("a layer's point count")?;
        if count > n - ids.len() {
            return Err(g.error(format!(
                "layer {l} holds {count} points, more than the {} left of the {n} the \
                 description states",
                n - ids.len()
            )));
        }
        g.fits(count as u64, min_point, "the points of the layer")?;
        *layer_count = count;
        for rank in 0..count {
            g.at = Some((l, rank));
            if g.u32("the point magic")? != MAGIC_POINT {
                return Err(g.error(format!("bad point magic at byte {}", g.pos - 4)));
            }
            let id = g.usize("the data id")?;
            let level = usize::from(g.u8("the level")?);
            let r = g.i32("the rank")?;
            if level != l || usize::try_from(r).ok() != Some(rank) {
                return Err(g.error(format!(
                    "the point says it is point {r} of layer {level} (data id {id})"
                )));
            }
            for nl in 0..descr.layers {
                let k = g.usize("a neighbour count")?;
                g.fits(k as u64, NEIGHBOUR_BYTES, "the neighbour list")?;
                for _ in 0..k {
                    let _nb_id = g.usize("a neighbour's data id")?;
                    let nb_level = usize::from(g.u8("a neighbour's level")?);
                    let nb_rank = g.i32("a neighbour's rank")?;
                    // hnsw_rs's loader sorts each list by distance and panics on a NaN.
                    if g.f32("a neighbour's distance")?.is_nan() {
                        return Err(g.error(format!(
                            "a layer-{nl} neighbour's distance is NaN (byte {})",
                            g.pos - 4
                        )));
                    }
                    let Some(nb_rank) = usize::try_from(nb_rank)
                        .ok()
                        .filter(|_| nb_level < nb_layers)
                    else {
                        return Err(g.error(format!(
                            "a layer-{nl} neighbour refers to point {nb_rank} of layer \
                             {nb_level}, which cannot exist"
                        )));
                    };
                    if max_ref[nb_level].is_none_or(|(r, ..)| nb_rank > r) {
                        max_ref[nb_level] = Some((nb_rank, l, rank));
                    }
                }
            }
            data_record(data, id, ids.len(), vec_bytes)?;
            ids.push(id);
        }
    }
    g.at = None;
    if ids.len() != n {
        return Err(g.error(format!(
            "the layers hold {} points, the description states {n}",
            ids.len()
        )));
    }
    for (layer, r) in max_ref.iter().enumerate() {
        if let &Some((rank, l, from)) = r
            && rank >= per_layer[layer]
        {
            return Err(g.error(format!(
                "point {from} of layer {l} has a neighbour at point {rank} of layer {layer}, \
                 which holds {} points",
                per_layer[layer]
            )));
        }
    }
    let entry_id = g.usize("the entry point's data id")?;
    let entry_level = usize::from(g.u8("the entry point's level")?);
    let entry_rank = g.i32("the entry point's rank")?;
    let entry_row = usize::try_from(entry_rank)
        .ok()
        .filter(|&r| entry_level < nb_layers && r < per_layer[entry_level])
        .map(|r| per_layer[..entry_level].iter().sum::<usize>() + r);
    if entry_row.map(|r| ids[r]) != Some(entry_id) {
        return Err(g.error(format!(
            "the entry point (data id {entry_id}, point {entry_rank} of layer {entry_level}) \
             is not one of the dumped points"
        )));
    }
    if g.pos != g.len {
        return Err(g.error(format!(
            "{} unexpected bytes after the entry point (byte {} of {})",
            g.len - g.pos,
            g.pos,
            g.len
        )));
    }
    Ok(ids)
}

/// Checks the data record of point `index` (data id `id`) and skips its vector.
fn data_record(data: &mut DumpReader, id: usize, index: usize, vec_bytes: u64) -> Result<()> {
    data.at = None;
    let start = data.pos;
    if data.u32("a record magic")? != MAGIC_DATA {
        return Err(data.error(format!(
            "bad magic at byte {start} (record {index}, data id {id})"
        )));
    }
    let got = data.u64("a record's data id")?;
    if got != id as u64 {
        return Err(data.error(format!(
            "record {index} at byte {start} is data id {got}, but the graph file's point \
             {index} is data id {id}"
        )));
    }
    let len = data.u64("a record's length")?;
    if len != vec_bytes {
        return Err(data.error(format!(
            "record {index} (data id {id}) at byte {start} holds {len} bytes, not the {vec_bytes} \
             of one vector of the dump's dimension"
        )));
    }
    data.skip(vec_bytes, "a vector")
}

/// A buffered reader of one dump file that knows its length and position, so every
/// read past the end and every count too large for the bytes left is an
/// [`Error::Format`] naming the file, the byte and the point being read.
struct DumpReader {
    inner: BufReader<File>,
    path: PathBuf,
    pos: u64,
    len: u64,
    /// The point being read (layer, rank), for messages.
    at: Option<(usize, usize)>,
}

impl DumpReader {
    fn open(path: &Path) -> Result<DumpReader> {
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        let meta = file.metadata().map_err(|e| Error::io(path, e))?;
        if meta.is_dir() {
            return Err(Error::is_directory(path));
        }
        Ok(DumpReader {
            inner: BufReader::with_capacity(1 << 16, file),
            path: path.to_path_buf(),
            pos: 0,
            len: meta.len(),
            at: None,
        })
    }

    fn where_(&self) -> String {
        match self.at {
            Some((l, r)) => format!(" (point {r} of layer {l})"),
            None => String::new(),
        }
    }

    fn error(&self, message: String) -> Error {
        Error::format(&self.path, format!("{message}{}", self.where_()))
    }

    fn truncated(&self, what: &str, need: u64) -> Error {
        Error::format(
            &self.path,
            format!(
                "truncated: {what} at byte {} needs {need} bytes, but the file ends at byte \
                 {}{}",
                self.pos,
                self.len,
                self.where_()
            ),
        )
    }

    /// `count` items of at least `each` bytes fit in what is left.
    fn fits(&self, count: u64, each: u64, what: &str) -> Result<()> {
        let left = self.len - self.pos;
        match count.checked_mul(each) {
            Some(b) if b <= left => Ok(()),
            _ => Err(self.error(format!(
                "{what}: {count} entries cannot fit in the {left} bytes left after byte {} \
                 (corrupted or truncated)",
                self.pos
            ))),
        }
    }

    fn bytes<const N: usize>(&mut self, what: &str) -> Result<[u8; N]> {
        if self.len - self.pos < N as u64 {
            return Err(self.truncated(what, N as u64));
        }
        let mut b = [0u8; N];
        self.inner.read_exact(&mut b).map_err(|e| match e.kind() {
            std::io::ErrorKind::UnexpectedEof => self.truncated(what, N as u64),
            _ => Error::io(&self.path, e),
        })?;
        self.pos += N as u64;
        Ok(b)
    }

    fn skip(&mut self, n: u64, what: &str) -> Result<()> {
        if self.len - self.pos < n {
            return Err(self.truncated(what, n));
        }
        let step = i64::try_from(n).map_err(|_| self.truncated(what, n))?;
        self.inner
            .seek_relative(step)
            .map_err(|e| Error::io(&self.path, e))?;
        self.pos += n;
        Ok(())
    }

    fn u8(&mut self, what: &str) -> Result<u8> {
        Ok(self.bytes::<1>(what)?[0])
    }
    fn u32(&mut self, what: &str) -> Result<u32> {
        self.bytes(what).map(u32::from_ne_bytes)
    }
    fn i32(&mut self, what: &str) -> Result<i32> {
        self.bytes(what).map(i32::from_ne_bytes)
    }
    fn f32(&mut self, what: &str) -> Result<f32> {
        self.bytes(what).map(f32::from_ne_bytes)
    }
    fn f64(&mut self, what: &str) -> Result<f64> {
        self.bytes(what).map(f64::from_ne_bytes)
    }
    fn u64(&mut self, what: &str) -> Result<u64> {
        self.bytes(what).map(u64::from_ne_bytes)
    }
    fn usize(&mut self, what: &str) -> Result<usize> {
        self.bytes(what).map(usize::from_ne_bytes)
    }

    /// A length-prefixed name (at most [`MAX_NAME`] bytes of UTF-8).
    fn name(&mut self, what: &str) -> Result<String> {
        let len = self.usize(what)?;
        if len > MAX_NAME {
            return Err(self.error(format!(
                "{what} is {len} bytes long (at most {MAX_NAME}): not an hnsw_rs description"
            )));
        }
        if self.len - self.pos < len as u64 {
            return Err(self.truncated(what, len as u64));
        }
        let mut b = vec![0u8; len];
        self.inner
            .read_exact(&mut b)
            .map_err(|e| Error::io(&self.path, e))?;
        self.pos += len as u64;
        String::from_utf8(b).map_err(|_| self.error(format!("{what} is not UTF-8")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::generate::gaussian;
    use crate::index::hnsw::NONE;
    use hnsw_rs::prelude::AnnT;

    /// An hnsw_rs index over `n` Gaussian vectors with data ids `id(i)`, dumped in `dir`.
    fn dumped(dir: &Path, n: usize, d: usize, m: usize, id: impl Fn(usize) -> usize) {
        let data = gaussian(n, d, 0.0, 1.0, 5).unwrap();
        let h = hnsw_rs::hnsw::Hnsw::<f32, DistL2>::new(m, n, HNSW_RS_LAYERS, 64, DistL2);
        for i in 0..n {
            h.insert((data.row(i), id(i)));
        }
        h.file_dump(dir, "g").unwrap();
    }

    /// Before repair, the copied layer 0 (and every upper layer) is hnsw_rs's, for data
    /// ids 0..n (the build's copy) and for arbitrary ones (the row-mapped copy).
    #[test]
    fn copied_graph_is_hnsw_rs_graph() {
        for sparse in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            let id = |i: usize| if sparse { 7 + 3 * (999 - i) } else { i };
            dumped(dir.path(), 1000, 8, 6, id);
            let dump = Dump::check(dir.path(), "g").unwrap();
            let loaded = dump.load::<DistL2>().unwrap();
            let g = &loaded.graph;
            let mut io = hnsw_rs::hnswio::HnswIo::new(dir.path(), "g");
            let h = io.load_hnsw::<f32, DistL2>().unwrap();
            let row_of = |id: usize| loaded.ids.binary_search(&(id as u64)).unwrap();
            for p in h.get_point_indexation() {
                let row = row_of(p.get_origin_id());
                let nbs = p.get_neighborhood_id();
                assert_eq!(g.levels[row], p.get_point_id().0);
                let want: Vec<u32> = nbs[0]
                    .iter()
                    .map(|n| row_of(n.get_origin_id()) as u32)
                    .collect();
                let got: Vec<u32> = g.layer0[row * 12..(row + 1) * 12]
                    .iter()
                    .copied()
                    .filter(|&v| v != NONE)
                    .collect();
                assert_eq!(got, want, "row {row}");
                let at = g.upper_nodes.binary_search(&(row as u32));
                assert_eq!(at.is_ok(), p.get_point_id().0 > 0);
                if let Ok(at) = at {
                    let start = g.upper_start[at] as usize;
                    let level = usize::from(p.get_point_id().0);
                    for (l, list) in nbs.iter().enumerate().take(level + 1).skip(1) {
                        let want: Vec<u32> = list
                            .iter()
                            .map(|n| row_of(n.get_origin_id()) as u32)
                            .collect();
                        let got: Vec<u32> = g.upper_adj[start + (l - 1) * 6..start + l * 6]
                            .iter()
                            .copied()
                            .filter(|&v| v != NONE)
                            .collect();
                        assert_eq!(got, want, "row {row} layer {l}");
                    }
                }
            }
            let want_ids: Vec<u64> = {
                let mut v: Vec<u64> = (0..1000).map(|i| id(i) as u64).collect();
                v.sort_unstable();
                v
            };
            assert_eq!(loaded.ids, want_ids);
        }
    }

    /// Every byte-length truncation of both files is an `Error::Format` naming the file
    /// (never a panic, an abort or an exit of the process).
    #[test]
    fn every_truncation_is_a_format_error() {
        let dir = tempfile::tempdir().unwrap();
        dumped(dir.path(), 60, 4, 4, |i| i);
        let (graph, data) = dump_paths(dir.path(), "g");
        for path in [&graph, &data] {
            let full = std::fs::read(path).unwrap();
            let step = (full.len() / 200).max(1);
            for cut in (0..full.len()).step_by(step) {
                std::fs::write(path, &full[..cut]).unwrap();
                match Dump::check(dir.path(), "g") {
                    Err(Error::Format { path: p, .. }) => assert_eq!(&p, path, "cut {cut}"),
                    other => panic!("cut {cut} of {}: {:?}", path.display(), other.err()),
                }
            }
            std::fs::write(path, &full).unwrap();
        }
        assert!(Dump::check(dir.path(), "g").is_ok());
    }
}
