//! How an inverted file lays its lists out: loading, the packed runs, merging new
//! entries into their lists and dropping deleted ones.

use crate::error::{Error, Result};
use crate::index::ivf::{Ivf, StoredParams};
use crate::index::rows::Rows;
use crate::index::rows::gather_rows;
use crate::kernels;
use crate::quant::codec::VectorCodec;
use crate::store::{Container, Slab};
use crate::vectors::check_finite;

impl<C: VectorCodec> Ivf<C> {
    /// Loads an `ivf` container written with this inner quantizer.
    ///
    /// # Errors
    /// A malformed header, sections of the wrong size, offsets that are not a partition
    /// of the entries, or non-finite stored values.
    pub fn from_container(c: &Container) -> Result<Self> {
        let h = c.header();
        let bad = |m: String| Error::format(c.path(), m);
        let (dim, n) = crate::index::header_dims(c)?;
        let p: StoredParams<C::Spec> = c.params()?;
        let mut idx = Ivf::<C>::new(p.nlist, p.inner, dim, h.metric, p.keep_raw, 0)
            .map_err(|e| bad(e.to_string()))?;
        let nlist = p.nlist;
        let size =
            |a: usize, b: usize| a.checked_mul(b).ok_or_else(|| bad("size overflows".into()));
        idx.centroids = c.section_f32("coarse", size(nlist, dim)?)?;
        if idx.centroids.iter().any(|v| !v.is_finite()) {
            return Err(bad("non-finite coarse centroid".into()));
        }
        idx.c_norms = kernels::row_norms_sq(&idx.centroids, dim);
        if c.section("opq_m").is_ok() {
            let m = c.section_u64("opq_m", 1)?[0];
            let m = usize::try_from(m).map_err(|_| bad(format!("invalid OPQ M {m}")))?;
            idx = idx.with_opq(m).map_err(|e| bad(e.to_string()))?;
            let r = c.section_f32("opq_rotation", size(dim, dim)?)?;
            if r.iter().any(|v| !v.is_finite()) {
                return Err(bad("non-finite OPQ rotation".into()));
            }
            idx.rotation = Some(r);
        }
        let offsets = c.section_u64("list_offsets", nlist + 1)?;
        if offsets[0] != 0 || offsets.windows(2).any(|w| w[0] > w[1]) || offsets[nlist] != n as u64
        {
            return Err(bad(format!(
                "list offsets are not a partition of the {n} entries"
            )));
        }
        idx.offsets = offsets.iter().map(|&o| o as usize).collect();
        let codec = C::read(&idx.inner, c, dim)?;
        idx.set_block_starts(codec.block());
        let code_bytes = (0..nlist)
            .map(|l| codec.packed_len(idx.offsets[l + 1] - idx.offsets[l]))
            .sum::<usize>();
        if code_bytes > 0 {
            let section = codec.runs_section();
            idx.codes = if section != "codes" && c.section(section).is_err() {
                // Written before runs were blocked: row-major per list.
                let rs = codec.row_size();
                let rows = c.section_u8("codes", size(n, rs)?)?;
                let mut packed = Vec::with_capacity(code_bytes);
                for w in idx.offsets.windows(2) {
                    packed.extend(codec.pack(&rows[w[0] * rs..w[1] * rs]));
                }
                Slab::from(packed)
            } else {
                c.slab::<u8>(section, code_bytes)?
            };
        }
        idx.rows = Rows::read(c, n)?;
        if codec.has_aux(h.metric) {
            idx.aux = c.slab::<f32>("corr", n)?;
        }
        if p.keep_raw || C::STORES_RAW {
            idx.raw = c.slab::<f32>("raw", size(n, dim)?)?;
        }
        idx.codec = Some(codec);
        if c.verified() {
            check_finite(&idx.raw, dim, "stored vectors").map_err(|e| bad(e.to_string()))?;
            if idx.aux.iter().any(|v| !v.is_finite()) {
                return Err(bad("non-finite correction term".into()));
            }
        }
        Ok(idx)
    }

    /// Byte offset of list `l`'s run in `codes`.
    pub(super) fn run_start(&self, codec: &C, l: usize) -> usize {
        let block = codec.block();
        codec.packed_len(self.block_starts[l] * block)
    }

    pub(super) fn set_block_starts(&mut self, block: usize) {
        self.block_starts = std::iter::once(0)
            .chain(self.offsets.windows(2).scan(0, |acc, w| {
                *acc += (w[1] - w[0]).div_ceil(block);
                Some(*acc)
            }))
            .collect();
    }

    /// The list of every stored entry.
    pub(super) fn entry_lists(&self) -> Vec<u32> {
        let mut out = Vec::with_capacity(self.rows.len());
        for (l, w) in self.offsets.windows(2).enumerate() {
            out.extend(std::iter::repeat_n(l as u32, w[1] - w[0]));
        }
        out
    }

    /// Row-major codes of every entry in entry order.
    pub(super) fn entry_codes(&self, codec: &C) -> Vec<u8> {
        if codec.block() == 1 {
            return self.codes.to_vec();
        }
        let mut out = Vec::with_capacity(self.rows.len() * codec.row_size());
        for l in 0..self.nlist {
            let len = self.offsets[l + 1] - self.offsets[l];
            out.extend(codec.unpack(&self.codes[self.run_start(codec, l)..], len));
        }
        out
    }

    /// Re-lays every array out in list order, keeping the entries `keep` accepts.
    /// `lists`, `codes` (row-major, as [`Ivf::entry_codes`]), `aux` and `raw` cover every
    /// current row (after new rows were pushed).
    pub(super) fn relayout(
        &mut self,
        lists: &[u32],
        codes: &[u8],
        aux: &[f32],
        raw: &[f32],
        keep: impl Fn(usize) -> bool,
    ) -> Result<()> {
        let codec = self.codec()?.clone();
        let mut counts = vec![0usize; self.nlist];
        for (r, &l) in lists.iter().enumerate() {
            if keep(r) {
                counts[l as usize] += 1;
            }
        }
        let mut offsets = Vec::with_capacity(self.nlist + 1);
        offsets.push(0);
        for c in &counts {
            offsets.push(offsets.last().copied().unwrap_or(0) + c);
        }
        let mut cursor = offsets[..self.nlist].to_vec();
        let mut order = vec![0usize; offsets[self.nlist]];
        for (r, &l) in lists.iter().enumerate() {
            if keep(r) {
                order[cursor[l as usize]] = r;
                cursor[l as usize] += 1;
            }
        }
        let rs = codec.row_size();
        let gathered = gather_rows(codes, rs, &order);
        self.offsets = offsets;
        self.set_block_starts(codec.block());
        self.codes = if codec.block() > 1 {
            let mut packed = Vec::new();
            for l in 0..self.nlist {
                let (a, b) = (self.offsets[l], self.offsets[l + 1]);
                packed.extend(codec.pack(&gathered[a * rs..b * rs]));
            }
            Slab::from(packed)
        } else {
            Slab::from(gathered)
        };
        if !aux.is_empty() {
            self.aux = Slab::from(gather_rows(aux, 1, &order));
        }
        if !raw.is_empty() {
            self.raw = Slab::from(gather_rows(raw, self.dim, &order));
        }
        self.rows = self.rows.gather(&order);
        Ok(())
    }

    /// Encodes prepared vectors assigned to `lists`: (row-major codes, auxiliary terms).
    pub(super) fn encode(&self, x: &[f32], lists: &[u32]) -> Result<(Vec<u8>, Vec<f32>)> {
        let d = self.dim;
        let codec = self.codec()?;
        if C::STORES_RAW {
            return Ok((Vec::new(), Vec::new()));
        }
        let res = self.residuals(x, lists);
        let codes = codec.encode(&res)?;
        let aux = if codec.has_aux(self.metric) {
            let centroid = |i: usize| {
                let l = lists[i] as usize;
                Some(&self.centroids[l * d..(l + 1) * d])
            };
            codec.aux_terms(&codes, self.metric, &centroid)
        } else {
            Vec::new()
        };
        Ok((codes, aux))
    }
}
