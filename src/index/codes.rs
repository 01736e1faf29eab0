//! `FlatCodes`: an exhaustive scan over the codes of any [`VectorCodec`] — the flat
//! index every quantizer gets for free from the contract (FAISS's `IndexFlatCodes`).
//!
//! The codes are one packed run ([`VectorCodec::pack`]); a batch of queries scans it in
//! chunks of a few thousand rows, every query of the group scanning a chunk while it is in
//! cache. Ids, tombstones, filters and exact re-ranking come from the shared row bookkeeping (`index::rows`).

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::index::checks::check_terms;
use crate::index::rows::{Exact, Rows, gather_rows};
use crate::index::{
    GroupSearch, IdFilter, Index, SearchParams, check_add, header_dims, train_codec, untrained,
};
use crate::metric::Metric;
use crate::quant::codec::{InnerSpec, ListTerms, Raw, Stored, VectorCodec};
use crate::quant::product::ProductQuantizer;
use crate::quant::rabitq::{RaBitQ, RaBitQFs};
use crate::quant::scalar::ScalarQuantizer;
use crate::store::{Container, ContainerWriter, Slab};
use crate::topk::{Neighbor, TopK};
use crate::vectors::{check_batch, check_finite};

/// Rows per chunk of a batch scan.
const CHUNK: usize = 4096;
/// Queries that share each chunk in batch search.
const QUERY_GROUP: usize = 16;

/// Loads a `codes` container of a built-in quantizer.
///
/// # Errors
/// A file that is not a valid flat-codes index.
pub fn from_container(c: &Container) -> Result<Box<dyn Index>> {
    let p: StoredParams<InnerSpec> = c.params()?;
    Ok(match p.inner {
        InnerSpec::Flat => Box::new(FlatCodes::<Raw>::from_container(c)?),
        InnerSpec::Scalar { .. } => Box::new(FlatCodes::<ScalarQuantizer>::from_container(c)?),
        InnerSpec::Product { .. } => Box::new(FlatCodes::<ProductQuantizer>::from_container(c)?),
        InnerSpec::RaBitQ { .. } => Box::new(FlatCodes::<RaBitQ>::from_container(c)?),
        InnerSpec::RaBitQFs { .. } => Box::new(FlatCodes::<RaBitQFs>::from_container(c)?),
    })
}

#[derive(Serialize, Deserialize)]
struct StoredParams<S> {
    inner: S,
    keep_raw: bool,
}

/// The stored vectors with `ids` of a kind that keeps row-major `codes` (and `raw`
/// vectors, `dim` per row, when it keeps them): [`Index::reconstruct_ids`].
pub(crate) fn decode_rows<C: VectorCodec>(
    codec: &C,
    rows: &Rows,
    ids: &[u64],
    codes: &[u8],
    raw: Option<&[f32]>,
    dim: usize,
) -> Result<Vec<f32>> {
    let rows = rows.rows_of(ids)?;
    match raw {
        Some(raw) => Ok(gather_rows(raw, dim, &rows)),
        None => codec.decode(&gather_rows(codes, codec.row_size(), &rows)),
    }
}

/// Flat scan over the codes of `C`.
#[derive(Clone, Debug)]
pub struct FlatCodes<C: VectorCodec> {
    dim: usize,
    metric: Metric,
    inner: C::Spec,
    keep_raw: bool,
    seed: u64,
    codec: Option<C>,
    /// Row-major codes.
    codes: Slab<u8>,
    /// The packed run the scans read, when `C` blocks its codes (else empty: the scans
    /// read `codes`).
    run: Slab<u8>,
    aux: Slab<f32>,
    raw: Slab<f32>,
    rows: Rows,
}

/// Rows encoded for a [`FlatCodes`] add, not yet in the index: codes, auxiliary terms
/// and kept vectors.
#[derive(Default)]
struct Appended {
    codes: Vec<u8>,
    aux: Vec<f32>,
    raw: Vec<f32>,
}

impl<C: VectorCodec> FlatCodes<C> {
    /// An untrained flat index over the quantizer `inner`.
    ///
    /// # Errors
    /// A quantizer spec that does not fit `dim`.
    pub fn new(
        inner: C::Spec,
        dim: usize,
        metric: Metric,
        keep_raw: bool,
        seed: u64,
    ) -> Result<Self> {
        C::check(&inner, dim)?;
        let codec = if C::STORES_RAW {
            Some(C::train(&inner, &[], dim, seed)?)
        } else {
            None
        };
        Ok(FlatCodes {
            dim,
            metric,
            inner,
            keep_raw,
            seed,
            codec,
            codes: Slab::default(),
            run: Slab::default(),
            aux: Slab::default(),
            raw: Slab::default(),
            rows: Rows::default(),
        })
    }

    /// The trained quantizer.
    pub fn quantizer(&self) -> Option<&C> {
        self.codec.as_ref()
    }

    fn name(&self) -> String {
        C::name(&self.inner)
    }

    fn codec(&self) -> Result<&C> {
        self.codec.as_ref().ok_or_else(|| untrained(&self.name()))
    }

    fn stores_raw(&self) -> bool {
        self.keep_raw || C::STORES_RAW
    }

    fn repack(&mut self) -> Result<()> {
        let codec = self.codec()?;
        self.run = if codec.block() > 1 {
            Slab::from(codec.pack(&self.codes))
        } else {
            Slab::default()
        };
        Ok(())
    }

    /// The codes, [`VectorCodec::row_size`] bytes per row in insertion order (row-major,
    /// as encoded; the scans read a packed copy when the codec blocks its codes).
    pub fn codes(&self) -> &[u8] {
        &self.codes
    }

    /// Loads a `codes` container written with this quantizer.
    ///
    /// # Errors
    /// A malformed header or sections of the wrong size.
    pub fn from_container(c: &Container) -> Result<Self> {
        let p: StoredParams<C::Spec> = c.params()?;
        Self::from_sections(c, p.inner, p.keep_raw)
    }

    /// Loads the sections of a flat index over `inner` codes (`keep_raw`: with the
    /// vectors) from `c`, whatever its stored parameters look like: a `codes` container,
    /// or a kind that predates it with the same sections (`sq`).
    pub(crate) fn from_sections(c: &Container, inner: C::Spec, keep_raw: bool) -> Result<Self> {
        let h = c.header();
        let bad = |m: String| Error::format(c.path(), m);
        let (dim, n) = header_dims(c)?;
        let mut idx =
            Self::new(inner, dim, h.metric, keep_raw, 0).map_err(|e| bad(e.to_string()))?;
        let size =
            |a: usize, b: usize| a.checked_mul(b).ok_or_else(|| bad("size overflows".into()));
        let codec = C::read(&idx.inner, c, dim)?;
        if !C::STORES_RAW {
            idx.codes = c.slab::<u8>("codes", size(n, codec.row_size())?)?;
        }
        if codec.has_aux(h.metric) {
            idx.aux = c.slab::<f32>("corr", n)?;
        }
        if idx.stores_raw() {
            idx.raw = c.slab::<f32>("raw", size(n, dim)?)?;
        }
        idx.rows = Rows::read(c, n)?;
        idx.codec = Some(codec);
        idx.repack()?;
        if c.verified() {
            check_finite(&idx.raw, dim, "stored vectors").map_err(|e| bad(e.to_string()))?;
            if idx.aux.iter().any(|v| !v.is_finite()) {
                return Err(bad("non-finite auxiliary term".into()));
            }
        }
        Ok(idx)
    }

    /// `add` (`replace`: `upsert`): everything is checked before the index changes.
    fn add_rows(&mut self, vectors: &[f32], ids: Option<&[u64]>, replace: bool) -> Result<usize> {
        let n = check_add(self.dim, vectors, ids)?;
        self.codec()?;
        let replaced = self.rows.admit(n, ids, replace)?;
        let mut new = Appended::default();
        self.encode_into(vectors, &mut new)?;
        self.commit(n, ids, &replaced, new)?;
        Ok(replaced.len())
    }

    /// `add_stream` (`replace`: `upsert_stream`): each chunk is encoded as it comes;
    /// the codes, the rows and the packed run change once, after the last chunk (one
    /// `add` per chunk re-packed every stored code each time), so an error leaves the
    /// index unchanged. Given ids are checked before any chunk is read. Returns how many
    /// vectors were replaced.
    fn stream_rows(
        &mut self,
        ids: Option<&[u64]>,
        replace: bool,
        next: &mut dyn FnMut() -> Result<Option<Vec<f32>>>,
    ) -> Result<usize> {
        let mut new = Appended::default();
        let (total, replaced) =
            crate::index::admit_stream(&self.rows, self.dim, ids, replace, next, |v| {
                self.encode_into(v, &mut new)
            })?;
        if total > 0 {
            self.commit(total, ids, &replaced, new)?;
        }
        Ok(replaced.len())
    }

    /// Encodes `vectors` (checked by the caller) into `new`: their codes, terms and
    /// kept vectors; on an error `new` is unchanged.
    fn encode_into(&self, vectors: &[f32], new: &mut Appended) -> Result<()> {
        let codec = self.codec()?;
        let x = crate::vectors::prepared(vectors, self.dim, self.metric);
        if !C::STORES_RAW {
            let codes = codec.encode(&x)?;
            if codec.has_aux(self.metric) {
                let aux = codec.aux_terms(&codes, self.metric, &|_| None);
                check_terms(&aux, f64::MAX, "add", "auxiliary term", 0)?;
                new.aux.extend_from_slice(&aux);
            }
            new.codes.extend_from_slice(&codes);
        }
        if self.stores_raw() {
            new.raw.extend_from_slice(&x);
        }
        Ok(())
    }

    /// Appends `n` encoded rows with their ids (admitted, replacing the rows
    /// `replaced`) and re-packs the run.
    fn commit(
        &mut self,
        n: usize,
        ids: Option<&[u64]>,
        replaced: &[usize],
        new: Appended,
    ) -> Result<()> {
        self.codes.append(new.codes);
        self.aux.append(new.aux);
        self.raw.append(new.raw);
        self.rows.push_replacing(n, ids, replaced);
        self.repack()
    }

    fn search_group(
        &self,
        queries: &[f32],
        params: &SearchParams,
        filter: &IdFilter<'_>,
    ) -> Result<Vec<(Vec<Neighbor>, u32)>> {
        let codec = self.codec()?;
        let (rerank, depth) = crate::index::scan_depth(
            params,
            C::STORES_RAW,
            !self.raw.is_empty(),
            codec.has_error_bounds(),
            &self.name(),
        )?;
        let prepared = crate::vectors::prepared(queries, self.dim, self.metric);
        let mut states: Vec<C::Query> = prepared
            .chunks_exact(self.dim)
            .map(|q| {
                let mut s = C::Query::default();
                codec.begin_query(&mut s, q, self.metric, None, &[]);
                if params.adaptive_rerank {
                    codec.set_bound_keys(&mut s, true);
                }
                codec.set_list(&mut s, q, self.metric, ListTerms::default());
                s
            })
            .collect();
        let mut heaps: Vec<TopK> = states.iter().map(|_| TopK::new(depth)).collect();
        let n = self.rows.len();
        let all = matches!(filter, IdFilter::All) && !self.rows.has_deleted();
        let ids = self.rows.ids();
        let ok = |r: usize| all || (self.rows.is_live(r) && filter.accepts(ids[r]));
        // Chunks start on block boundaries of the packed run.
        let block = codec.block();
        let chunk = CHUNK.div_ceil(block) * block;
        let packed: &[u8] = if block > 1 { &self.run } else { &self.codes };
        let mut start = 0;
        while start < n {
            let rows = chunk.min(n - start);
            let run = Stored {
                codes: &packed[codec.packed_len(start)..],
                aux: if self.aux.is_empty() {
                    &[]
                } else {
                    &self.aux[start..start + rows]
                },
                raw: if C::STORES_RAW {
                    &self.raw[start * self.dim..(start + rows) * self.dim]
                } else {
                    &[]
                },
            };
            // Codecs that scan several queries per pass over the codes (4-bit PQ
            // fast-scan: each block loaded once for four tables) take the group's
            // queries together; the others loop over `scan`.
            codec.scan_many(&mut states, self.metric, run, rows, start, &mut heaps, &ok);
            start += rows;
        }
        Ok(heaps
            .into_iter()
            .zip(prepared.chunks_exact(self.dim))
            .map(|(heap, q)| {
                let exact = rerank.then(|| Exact {
                    raw: &self.raw,
                    dim: self.dim,
                    metric: self.metric,
                    query: q,
                    adaptive: params.adaptive_rerank,
                });
                self.rows.finish(heap.into_sorted(), params.k, exact)
            })
            .collect())
    }
}

impl<C: VectorCodec> GroupSearch for FlatCodes<C> {
    const QUERY_GROUP: usize = QUERY_GROUP;
    fn search_group(
        &self,
        queries: &[f32],
        params: &SearchParams,
        filter: &IdFilter<'_>,
    ) -> Result<Vec<(Vec<Neighbor>, u32)>> {
        FlatCodes::search_group(self, queries, params, filter)
    }
}

impl<C: VectorCodec> Index for FlatCodes<C> {
    fn spec(&self) -> String {
        self.name()
    }
    row_accessors!();
    fn bytes_per_vector(&self) -> f64 {
        crate::index::codec_bytes_per_vector(self.codec.as_ref(), &self.inner, self.dim)
    }
    fn memory_bytes(&self) -> usize {
        self.codes.len()
            + self.run.len()
            + self.aux.len() * 4
            + self.raw.len() * 4
            + self.rows.memory_bytes()
            + self.codec.as_ref().map_or(0, C::params_bytes)
    }
    fn is_trained(&self) -> bool {
        self.codec.is_some()
    }
    fn train(&mut self, sample: &[f32]) -> Result<()> {
        self.codec = Some(train_codec(
            &self.inner,
            sample,
            self.dim,
            self.seed,
            self.metric,
        )?);
        self.codes = Slab::default();
        self.run = Slab::default();
        self.aux = Slab::default();
        self.raw = Slab::default();
        self.rows = Rows::default();
        Ok(())
    }
    fn add(&mut self, vectors: &[f32], ids: Option<&[u64]>) -> Result<()> {
        self.add_rows(vectors, ids, false).map(|_| ())
    }
    fn upsert(&mut self, vectors: &[f32], ids: &[u64]) -> Result<usize> {
        self.add_rows(vectors, Some(ids), true)
    }
    fn add_stream(
        &mut self,
        ids: Option<&[u64]>,
        next: &mut dyn FnMut() -> Result<Option<Vec<f32>>>,
    ) -> Result<()> {
        self.stream_rows(ids, false, next).map(|_| ())
    }
    fn upsert_stream(
        &mut self,
        ids: &[u64],
        next: &mut dyn FnMut() -> Result<Option<Vec<f32>>>,
    ) -> Result<usize> {
        self.stream_rows(Some(ids), true, next)
    }
    crate::index::rows_methods!();

    fn compact(&mut self) -> Result<usize> {
        let dropped = self.rows.deleted();
        if dropped == 0 {
            return Ok(0);
        }
        let rs = self.codec()?.row_size();
        self.codes = self.rows.compact_slab(&self.codes, rs);
        if !self.aux.is_empty() {
            self.aux = self.rows.compact_slab(&self.aux, 1);
        }
        if !self.raw.is_empty() {
            self.raw = self.rows.compact_slab(&self.raw, self.dim);
        }
        self.rows.compact();
        self.repack()?;
        Ok(dropped)
    }
    fn search(&self, query: &[f32], params: &SearchParams) -> Result<Vec<Neighbor>> {
        self.search_filtered(query, params, &IdFilter::All)
    }
    grouped_search!();
    fn reconstruct(&self, vectors: &[f32]) -> Result<Option<Vec<f32>>> {
        check_batch(vectors, self.dim, "vectors")?;
        check_finite(vectors, self.dim, "vectors")?;
        let codec = self.codec()?;
        if C::STORES_RAW {
            return Ok(None);
        }
        let x = crate::vectors::prepared(vectors, self.dim, self.metric);
        Ok(Some(codec.decode(&codec.encode(&x)?)?))
    }
    fn reconstruct_ids(&self, ids: &[u64]) -> Result<Vec<f32>> {
        let raw = self.stores_raw().then_some(&self.raw[..]);
        decode_rows(self.codec()?, &self.rows, ids, &self.codes, raw, self.dim)
    }
    fn to_container(&self) -> Result<ContainerWriter<'_>> {
        let codec = self.codec()?;
        let mut w = ContainerWriter::new(
            "codes",
            &self.name(),
            self.dim,
            self.metric,
            self.rows.len(),
        );
        w.params(&StoredParams {
            inner: self.inner.clone(),
            keep_raw: self.keep_raw,
        })?;
        codec.write(&mut w);
        if !C::STORES_RAW {
            w.section("codes", &self.codes[..]);
        }
        if codec.has_aux(self.metric) {
            w.section_f32("corr", &self.aux);
        }
        if self.stores_raw() {
            w.section_f32("raw", &self.raw);
        }
        self.rows.write(&mut w);
        Ok(w)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::generate::gaussian;
    use crate::quant::codec::PqParams;

    /// Over PQ codes (8-bit blocks and 4-bit fast-scan blocks) the scan returns the
    /// brute-force ranking of the reconstructions; save/load and compaction keep it.
    #[test]
    fn flat_codes_over_pq_equal_brute_force_and_round_trip() {
        let (n, dim) = (2500, 16);
        let data = gaussian(n, dim, 0.0, 1.0, 7).unwrap();
        let queries = gaussian(10, dim, 0.0, 1.0, 8).unwrap();
        let dir = tempfile::tempdir().unwrap();
        for nbits in [8u8, 4] {
            let spec = PqParams { m: 8, nbits };
            let mut idx =
                FlatCodes::<ProductQuantizer>::new(spec, dim, Metric::L2, false, 2).unwrap();
            idx.train(data.as_slice()).unwrap();
            idx.add(data.as_slice(), None).unwrap();
            let rec = idx.reconstruct(data.as_slice()).unwrap().unwrap();
            let p = SearchParams::with_k(10);
            for q in queries.rows() {
                let got = idx.search(q, &p).unwrap();
                let mut all: Vec<(f32, u64)> = rec
                    .chunks_exact(dim)
                    .enumerate()
                    .map(|(i, x)| (crate::kernels::scalar::l2_sq(q, x), i as u64))
                    .collect();
                all.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
                for (g, w) in got.iter().zip(&all) {
                    assert!((g.distance - w.0).abs() <= 1e-3 * (1.0 + w.0), "{nbits}");
                }
            }
            idx.delete(&(0..n as u64).step_by(5).collect::<Vec<_>>())
                .unwrap();
            let before = idx.search_batch(queries.as_slice(), &p).unwrap();
            let path = dir.path().join("pq.vq");
            idx.save_to(&path).unwrap();
            let mut again = crate::index::open(&path).unwrap();
            assert_eq!(again.spec(), idx.spec());
            assert_eq!(again.search_batch(queries.as_slice(), &p).unwrap(), before);
            again.compact().unwrap();
            assert_eq!(again.search_batch(queries.as_slice(), &p).unwrap(), before);
        }
    }

    /// A small batch is split so that every thread gets a share (20 queries were groups
    /// of 16 and 4: one thread did four fifths of the work), one thread and large
    /// batches keep groups of `QUERY_GROUP`, and the answers are the same however the
    /// batch is grouped (1, 2, 3 or 8 threads; 4-bit PQ fast-scan and SQ8, whose scans
    /// take queries four at a time).
    #[test]
    fn small_batches_are_split_across_threads() {
        use crate::index::{GroupSearch, MIN_QUERY_GROUP};
        let (n, dim) = (3000, 16);
        let data = gaussian(n, dim, 0.0, 1.0, 4).unwrap();
        let queries = gaussian(23, dim, 0.0, 1.0, 5).unwrap();
        let spec = PqParams { m: 8, nbits: 4 };
        let mut pq = FlatCodes::<ProductQuantizer>::new(spec, dim, Metric::L2, false, 2).unwrap();
        pq.train(data.as_slice()).unwrap();
        pq.add(data.as_slice(), None).unwrap();
        let mut sq = crate::index::Scalar::from_spec("SQ8", dim, Metric::L2, false).unwrap();
        sq.train(data.as_slice()).unwrap();
        sq.add(data.as_slice(), None).unwrap();
        let p = SearchParams::with_k(10);
        let one = (
            pq.search_batch(queries.as_slice(), &p).unwrap(),
            sq.search_batch(queries.as_slice(), &p).unwrap(),
        );
        crate::index::check_query_groups(
            "PQ8x4fs",
            |nq| pq.query_group(nq),
            MIN_QUERY_GROUP,
            QUERY_GROUP,
        );
        for threads in [1usize, 2, 3, 8] {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            let got = pool.install(|| {
                (
                    pq.search_batch(queries.as_slice(), &p).unwrap(),
                    sq.search_batch(queries.as_slice(), &p).unwrap(),
                )
            });
            assert_eq!(got, one, "{threads} threads");
        }
    }
}
