//! [`RaBitQ`] under the [`VectorCodec`] contract: codes carry their own factors (no
//! auxiliary terms), runs are row-major, and under IVF with L2 the list tables are the
//! rotated centroids `R (c_list + c)`.

use super::query::RabitqQuery;
use super::{RaBitQ, RabitqSpec};
use crate::error::{Error, Result};
use crate::kernels::{self, bits};
use crate::metric::Metric;
use crate::quant::codec::{ListTerms, Stored, VectorCodec};
use crate::store::{Container, ContainerWriter};
use crate::topk::TopK;

/// Container sections of the trained parameters.
const MEAN: &str = "rabitq_mean";
const ROTATION: &str = "rabitq_rotation";
/// The local centres (absent without, as in files written before them).
const CENTRES: &str = "rabitq_centres";

impl VectorCodec for RaBitQ {
    type Spec = RabitqSpec;
    type Query = RabitqQuery;

    fn train(spec: &RabitqSpec, sample: &[f32], dim: usize, seed: u64) -> Result<Self> {
        RaBitQ::train(*spec, sample, dim, seed)
    }
    fn train_whole(
        spec: &RabitqSpec,
        sample: &[f32],
        dim: usize,
        seed: u64,
        metric: Metric,
    ) -> Result<Self> {
        if metric == Metric::L2 {
            RaBitQ::train_local(*spec, sample, dim, seed)
        } else {
            RaBitQ::train(*spec, sample, dim, seed)
        }
    }
    fn check(spec: &RabitqSpec, dim: usize) -> Result<()> {
        spec.check(dim)
    }
    fn name(spec: &RabitqSpec) -> String {
        spec.name()
    }
    fn dim(&self) -> usize {
        self.dim
    }
    fn code_size(&self) -> usize {
        self.row_bytes()
    }
    fn params_bytes(&self) -> usize {
        (self.mean.len() + self.rot.len() + 2 * self.centres.len()) * 4
    }
    fn encode(&self, x: &[f32]) -> Result<Vec<u8>> {
        self.encode_rows(x)
    }
    fn decode(&self, codes: &[u8]) -> Result<Vec<f32>> {
        self.decode_rows(codes)
    }
    fn write<'a>(&'a self, w: &mut ContainerWriter<'a>) {
        w.section_f32(MEAN, &self.mean)
            .section_f32(ROTATION, &self.rot);
        if self.local() {
            w.section_f32(CENTRES, &self.centres);
        }
    }
    fn read(spec: &RabitqSpec, c: &Container, dim: usize) -> Result<Self> {
        let bad = |m: String| Error::format(c.path(), m);
        spec.check(dim)
            .map_err(|e| bad(format!("RaBitQ parameters: {e}")))?;
        let mean = c.section_f32(MEAN, dim)?;
        let rot = c.section_f32(ROTATION, dim * dim)?;
        let centres = match c.section(CENTRES) {
            Ok(b) if b.len() % (4 * dim) == 0 => c.section_f32(CENTRES, b.len() / 4)?,
            Ok(b) => {
                return Err(bad(format!(
                    "section `{CENTRES}` of {} bytes is not a whole number of {dim}-d centres",
                    b.len()
                )));
            }
            Err(_) => Vec::new(),
        };
        RaBitQ::from_parts(*spec, mean, rot)
            .and_then(|q| q.with_centres(centres))
            .map_err(|e| bad(format!("RaBitQ parameters: {e}")))
    }

    fn list_tables(&self, centroids: &[f32], metric: Metric) -> Option<Vec<f32>> {
        if metric != Metric::L2 || centroids.is_empty() {
            return None;
        }
        let d = self.dim;
        let mut out = vec![0.0f32; centroids.len()];
        crate::linalg::gemm_abt(centroids, &self.rot, d, &mut out);
        for row in out.chunks_exact_mut(d) {
            row.iter_mut()
                .zip(&self.rot_mean)
                .for_each(|(a, b)| *a += b);
        }
        Some(out)
    }
    fn list_table_len(&self) -> usize {
        self.dim
    }

    fn begin_query(
        &self,
        s: &mut RabitqQuery,
        q: &[f32],
        _: Metric,
        _: Option<&[f32]>,
        _: &[usize],
    ) {
        self.prepare_query(s, q);
    }

    fn set_list(&self, s: &mut RabitqQuery, q: &[f32], metric: Metric, list: ListTerms<'_>) {
        let _ = q;
        s.t.clear();
        match metric {
            Metric::L2 => {
                // The target is R q − R (c_list + c): the list table when the inverted
                // file precomputed it, else rotated here (no copy of a table per list).
                match (list.tables, list.centroid) {
                    (Some(t), _) if t.len() == self.dim => {
                        s.t.extend(s.rq.iter().zip(t).map(|(a, b)| a - b));
                    }
                    (_, Some(c)) => {
                        let rc = self.rotate(c);
                        s.t.extend(
                            s.rq.iter()
                                .zip(rc.iter().zip(&self.rot_mean))
                                .map(|(a, (b, m))| a - (b + m)),
                        );
                    }
                    _ => {
                        s.t.extend(s.rq.iter().zip(&self.rot_mean).map(|(a, b)| a - b))
                    }
                }
                s.konst = 0.0;
            }
            _ => {
                s.t.extend_from_slice(&s.rq);
                let list_dot = if list.centroid.is_some() {
                    -list.coarse
                } else {
                    0.0
                };
                s.konst = s.q_dot_mean + list_dot;
            }
        }
        self.quantize_target(s);
        self.set_centre_terms(s, metric);
    }

    fn scan<F: Fn(usize) -> bool>(
        &self,
        s: &mut RabitqQuery,
        metric: Metric,
        run: Stored<'_>,
        n: usize,
        first: usize,
        heap: &mut TopK,
        ok: &F,
    ) {
        let rb = self.row_bytes();
        // Every row gets the 1-bit estimate of its sign plane: a block's sign planes are
        // counted in place (one kernel call per block of rows), then the block is pushed
        // by the estimate the codes and query call for (`RaBitQ::push_rows`).
        const B: usize = crate::kernels::fastscan::BLOCK;
        let (pb, fo) = (super::code::plane_bytes(self.dim), self.factor_offset());
        let (mut ips, mut pcs, mut sums) = ([0u32; B], [0u32; B], [0i32; B]);
        let mut start = 0;
        while start < n {
            let rows = B.min(n - start);
            let chunk = &run.codes[start * rb..(start + rows) * rb];
            let (ips, pcs) = (&mut ips[..rows], &mut pcs[..rows]);
            bits::and_popcount_rows(chunk, rb, pb, &s.planes, ips, pcs);
            for ((o, &ip), &pc) in sums.iter_mut().zip(ips.iter()).zip(pcs.iter()) {
                *o = super::query::centred_sum(ip, pc);
            }
            let sp = &sums[..rows];
            let full = |s: &RabitqQuery, i: usize| self.ip_full(s, &chunk[i * rb..][..rb]);
            self.push_rows(
                s,
                metric,
                &chunk[fo..],
                rb,
                sp,
                first + start,
                heap,
                ok,
                full,
            );
            start += rows;
        }
    }

    fn has_error_bounds(&self) -> bool {
        true
    }
    fn set_bound_keys(&self, s: &mut RabitqQuery, on: bool) {
        s.bound_keys = on;
    }

    fn distance(&self, s: &RabitqQuery, metric: Metric, stored: Stored<'_>, row: usize) -> f32 {
        let rb = self.row_bytes();
        let code = &stored.codes[row * rb..(row + 1) * rb];
        self.row_distance(s, metric, code)
    }

    fn prefetch(&self, stored: Stored<'_>, row: usize, bytes: usize) {
        let rb = self.row_bytes();
        kernels::prefetch_l1(&stored.codes[row * rb..row * rb + rb.min(bytes)]);
    }
}
