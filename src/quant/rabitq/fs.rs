//! `RaBitQfs` / `RaBitQfs{b}` (FAISS's words): RaBitQ codes in the fast-scan block
//! layout. The codes, factors, training and estimates are [`RaBitQ`]'s; only the runs
//! differ: blocks of [`BLOCK`] = 32 rows, each
//!
//! ```text
//! [ the 32 sign planes, packed by bits_fs::pack_sign_codes ][ 32 × the rest of the row ]
//! ```
//!
//! (the rest: the `b − 1` extra planes and the factors, row-major). A scan builds, per
//! query and list, the exact nibble tables of the `QUERY_BITS`-bit query code centred
//! on its grid's zero ([`SignLut::from_centred_codes`]: its sums are
//! `Σ_i sign_i (u_i − 31)` exactly, `max_error` = 0), and so forms in one table pass the
//! very 1-bit estimate of [`RaBitQ`]'s popcount scan (which computes the same integer
//! from `⟨sign, u⟩` and the popcount); codes of `b ≥ 2` bits are refined with the full estimate
//! where the 1-bit bound cannot decide, as [`RaBitQ`] does. Results equal the row-major
//! codec's (integration test `item3_fs_results_equal_row_major`). Graph walks and
//! `distance` read row-major codes and are [`RaBitQ`]'s.

use serde::{Deserialize, Serialize};

use super::code::plane_bytes;
use super::query::{RabitqQuery, centre};
use super::{QUERY_BITS, RaBitQ, RabitqSpec};
use crate::error::Result;
use crate::kernels::bits_fs::{self, SignLut};
use crate::kernels::fastscan::BLOCK;
use crate::metric::Metric;
use crate::quant::codec::{InnerSpec, ListTerms, Stored, VectorCodec};
use crate::store::{Container, ContainerWriter};
use crate::topk::TopK;

/// The spec of a fast-scan RaBitQ codec: `bits` per dimension (1 = `RaBitQfs`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "InnerSpec", try_from = "InnerSpec")]
pub struct RabitqFsSpec {
    /// Bits per dimension, 1..=[`super::MAX_BITS`].
    pub bits: u8,
}

impl From<RabitqFsSpec> for InnerSpec {
    fn from(s: RabitqFsSpec) -> Self {
        InnerSpec::RaBitQFs { bits: s.bits }
    }
}

impl TryFrom<InnerSpec> for RabitqFsSpec {
    type Error = String;
    fn try_from(s: InnerSpec) -> std::result::Result<Self, String> {
        match s {
            InnerSpec::RaBitQFs { bits } => Ok(RabitqFsSpec { bits }),
            other => Err(format!(
                "expected a fast-scan RaBitQ quantizer, found {}",
                other.name()
            )),
        }
    }
}

impl RabitqFsSpec {
    /// The index-factory name: `RaBitQfs` or `RaBitQfs{b}`.
    pub fn name(&self) -> String {
        if self.bits == 1 {
            "RaBitQfs".into()
        } else {
            format!("RaBitQfs{}", self.bits)
        }
    }

    fn plain(&self) -> RabitqSpec {
        RabitqSpec { bits: self.bits }
    }
}

/// A trained RaBitQ quantizer whose runs are in the fast-scan layout.
#[derive(Clone, Debug)]
pub struct RaBitQFs {
    inner: RaBitQ,
}

impl RaBitQFs {
    /// The row-major quantizer (codes, factors and estimates are its own).
    pub fn inner(&self) -> &RaBitQ {
        &self.inner
    }

    fn with(inner: RaBitQ) -> Self {
        RaBitQFs { inner }
    }

    /// Bytes of the packed sign planes of one block.
    fn sign_block(&self) -> usize {
        bits_fs::block_bytes(self.inner.dim)
    }

    /// Bytes of one row past its sign plane.
    fn rest(&self) -> usize {
        self.inner.row_bytes() - plane_bytes(self.inner.dim)
    }

    /// Bytes of one packed block.
    fn block_len(&self) -> usize {
        self.sign_block() + BLOCK * self.rest()
    }
}

/// One query's state: the row-major codec's, the list's exact sign tables and scratch.
#[derive(Default)]
pub struct RabitqFsQuery {
    pub(crate) q: RabitqQuery,
    lut: Option<SignLut>,
    row: Vec<u8>,
}

impl VectorCodec for RaBitQFs {
    type Spec = RabitqFsSpec;
    type Query = RabitqFsQuery;

    fn train(spec: &RabitqFsSpec, sample: &[f32], dim: usize, seed: u64) -> Result<Self> {
        RaBitQ::train(spec.plain(), sample, dim, seed).map(Self::with)
    }
    fn train_whole(
        spec: &RabitqFsSpec,
        sample: &[f32],
        dim: usize,
        seed: u64,
        metric: Metric,
    ) -> Result<Self> {
        RaBitQ::train_whole(&spec.plain(), sample, dim, seed, metric).map(Self::with)
    }
    fn check(spec: &RabitqFsSpec, dim: usize) -> Result<()> {
        spec.plain().check(dim)
    }
    fn name(spec: &RabitqFsSpec) -> String {
        spec.name()
    }
    fn dim(&self) -> usize {
        self.inner.dim
    }
    fn code_size(&self) -> usize {
        self.inner.row_bytes()
    }
    fn params_bytes(&self) -> usize {
        self.inner.params_bytes()
    }
    fn encode(&self, x: &[f32]) -> Result<Vec<u8>> {
        self.inner.encode_rows(x)
    }
    fn decode(&self, codes: &[u8]) -> Result<Vec<f32>> {
        self.inner.decode_rows(codes)
    }

    fn block(&self) -> usize {
        BLOCK
    }
    fn packed_len(&self, n: usize) -> usize {
        n.div_ceil(BLOCK) * self.block_len()
    }
    fn pack(&self, rows: &[u8]) -> Vec<u8> {
        let (d, rb) = (self.inner.dim, self.inner.row_bytes());
        let (pb, rest) = (plane_bytes(d), self.rest());
        let n = rows.len() / rb;
        let mut out = Vec::with_capacity(self.packed_len(n));
        let mut signs = Vec::with_capacity(BLOCK * pb);
        for chunk in rows.chunks(BLOCK * rb) {
            signs.clear();
            for row in chunk.chunks_exact(rb) {
                signs.extend_from_slice(&row[..pb]);
            }
            out.extend(bits_fs::pack_sign_codes(&signs, chunk.len() / rb, d));
            let at = out.len();
            for row in chunk.chunks_exact(rb) {
                out.extend_from_slice(&row[pb..]);
            }
            out.resize(at + BLOCK * rest, 0);
        }
        out
    }
    fn unpack(&self, run: &[u8], n: usize) -> Vec<u8> {
        let (d, rb) = (self.inner.dim, self.inner.row_bytes());
        let (pb, rest, sb) = (plane_bytes(d), self.rest(), self.sign_block());
        let mut out = vec![0u8; n * rb];
        for (k, row) in out.chunks_exact_mut(rb).enumerate() {
            let block = &run[(k / BLOCK) * self.block_len()..][..self.block_len()];
            let i = k % BLOCK;
            bits_fs::row_from_block(&block[..sb], d, i, &mut row[..pb]);
            row[pb..].copy_from_slice(&block[sb + i * rest..sb + (i + 1) * rest]);
        }
        out
    }
    fn runs_section(&self) -> &'static str {
        "codes_rabitq_fs"
    }

    fn write<'a>(&'a self, w: &mut ContainerWriter<'a>) {
        self.inner.write(w);
    }
    fn read(spec: &RabitqFsSpec, c: &Container, dim: usize) -> Result<Self> {
        RaBitQ::read(&spec.plain(), c, dim).map(Self::with)
    }

    fn list_tables(&self, centroids: &[f32], metric: Metric) -> Option<Vec<f32>> {
        self.inner.list_tables(centroids, metric)
    }
    fn list_table_len(&self) -> usize {
        self.inner.list_table_len()
    }

    fn begin_query(
        &self,
        s: &mut RabitqFsQuery,
        q: &[f32],
        metric: Metric,
        tables: Option<&[f32]>,
        first: &[usize],
    ) {
        self.inner.begin_query(&mut s.q, q, metric, tables, first);
    }

    fn set_list(&self, s: &mut RabitqFsQuery, q: &[f32], metric: Metric, list: ListTerms<'_>) {
        self.inner.set_list(&mut s.q, q, metric, list);
        // Query codes are at most 2c on the grid symmetric about zero (centre c ≤ 31 for
        // at most 6 bits): the centred tables give Σ bit_i (u_i − c) in one pass, no
        // popcount (rebuilt in place after the first list).
        const _: () = assert!(QUERY_BITS <= 6);
        let c = centre(QUERY_BITS as u32) as u8;
        match &mut s.lut {
            Some(lut) => lut.set_centred_codes(&s.q.qu, c),
            None => s.lut = Some(SignLut::from_centred_codes(&s.q.qu, c)),
        }
    }

    fn scan<F: Fn(usize) -> bool>(
        &self,
        s: &mut RabitqFsQuery,
        metric: Metric,
        run: Stored<'_>,
        n: usize,
        first: usize,
        heap: &mut TopK,
        ok: &F,
    ) {
        // `set_list` always sets the tables; only a scan before any `set_list` (outside
        // the contract) finds them missing.
        let Some(lut) = s.lut.take() else {
            return;
        };
        let q = &mut s.q;
        let quant = &self.inner;
        let (d, rb) = (quant.dim, quant.row_bytes());
        let (pb, rest, sb) = (plane_bytes(d), self.rest(), self.sign_block());
        s.row.resize(rb, 0);
        let row = &mut s.row;
        // Factor bytes start this far into a row's rest (after its extra planes).
        let fo = pb * (quant.bits as usize - 1);
        let mut sums = [0i32; BLOCK];
        for (b, block) in run.codes.chunks_exact(self.block_len()).enumerate() {
            let base = b * BLOCK;
            if base >= n {
                break;
            }
            lut.scan_block_centred(&block[..sb], &mut sums);
            let m = BLOCK.min(n - base);
            let factors = &block[sb + fo..sb + m * rest];
            let full = |q: &RabitqQuery, i: usize| {
                let own = &block[sb + i * rest..sb + (i + 1) * rest];
                bits_fs::row_from_block(&block[..sb], d, i, &mut row[..pb]);
                row[pb..].copy_from_slice(own);
                quant.ip_full(q, row)
            };
            let sp = &sums[..m];
            quant.push_rows(q, metric, factors, rest, sp, first + base, heap, ok, full);
        }
        s.lut = Some(lut);
    }

    fn has_error_bounds(&self) -> bool {
        true
    }
    fn set_bound_keys(&self, s: &mut RabitqFsQuery, on: bool) {
        s.q.bound_keys = on;
    }

    fn distance(&self, s: &RabitqFsQuery, metric: Metric, stored: Stored<'_>, row: usize) -> f32 {
        self.inner.distance(&s.q, metric, stored, row)
    }

    fn prefetch(&self, stored: Stored<'_>, row: usize, bytes: usize) {
        self.inner.prefetch(stored, row, bytes);
    }
}
