//! Searching an inverted file: coarse distances, the probe order, and the per-list
//! scans through the codec.

use crate::error::{Error, Result};
use crate::index::IdFilter;
use crate::index::SearchParams;
use crate::index::ivf::{FEW_PROBES, Ivf};
use crate::index::rows::Exact;
use crate::kernels;
use crate::linalg::gemm_abt;
use crate::metric::Metric;
use crate::quant::codec::{ListTerms, Stored, VectorCodec};
use crate::topk::{Neighbor, TopK};

/// Per-query scratch buffers (reused across lists and queries).
pub(super) struct Scratch<Q> {
    query: Q,
    probes: Vec<(f32, u32)>,
    first: Vec<usize>,
}

impl<Q: Default> Default for Scratch<Q> {
    fn default() -> Self {
        Scratch {
            query: Q::default(),
            probes: Vec::new(),
            first: Vec::new(),
        }
    }
}

impl<C: VectorCodec> Ivf<C> {
    /// Coarse distances of a group of prepared queries to every centroid
    /// (`nq × nlist`): squared L2, or −⟨q, c⟩ for inner product and cosine.
    pub(super) fn coarse(&self, queries: &[f32]) -> Vec<f32> {
        let nq = queries.len() / self.dim;
        let mut out = vec![0.0f32; nq * self.nlist];
        gemm_abt(queries, &self.centroids, self.dim, &mut out);
        for (q, row) in queries
            .chunks_exact(self.dim)
            .zip(out.chunks_exact_mut(self.nlist))
        {
            if self.metric == Metric::L2 {
                let qn = kernels::dot(q, q);
                for (v, &cn) in row.iter_mut().zip(&self.c_norms) {
                    *v = (qn - 2.0 * *v + cn).max(0.0);
                }
            } else {
                row.iter_mut().for_each(|v| *v = -*v);
            }
        }
        out
    }

    /// Candidates (entry rows, best first) for one prepared query with its coarse
    /// distances.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn scan_query(
        &self,
        codec: &C,
        q: &[f32],
        coarse: &[f32],
        nprobe: usize,
        depth: usize,
        filter: &IdFilter<'_>,
        s: &mut Scratch<C::Query>,
    ) -> Vec<Neighbor> {
        let d = self.dim;
        let cmp = |a: &(f32, u32), b: &(f32, u32)| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1));
        // `s.probes` starts with the `nprobe` nearest lists, sorted; the other lists
        // follow, sorted only if the search has to go past `nprobe` (see below).
        s.probes.clear();
        let few = nprobe <= FEW_PROBES && nprobe < coarse.len();
        if few {
            // One pass keeping a short sorted prefix: cheaper than a selection over all
            // lists when nprobe is small; the others are appended only when needed.
            for (l, &v) in coarse.iter().enumerate() {
                let e = (v, l as u32);
                if s.probes.len() == nprobe {
                    let worst = &s.probes[nprobe - 1];
                    if v > worst.0 || cmp(&e, worst).is_ge() {
                        continue;
                    }
                    s.probes.pop();
                }
                let at = s.probes.partition_point(|p| cmp(p, &e).is_lt());
                s.probes.insert(at, e);
            }
        } else {
            s.probes
                .extend(coarse.iter().enumerate().map(|(l, &v)| (v, l as u32)));
            if nprobe < s.probes.len() {
                s.probes.select_nth_unstable_by(nprobe, cmp);
                s.probes[..nprobe].sort_unstable_by(cmp);
            } else {
                s.probes.sort_unstable_by(cmp);
            }
        }
        let mut rest_sorted = nprobe >= coarse.len();
        // With a filter, probing continues past `nprobe` lists until as many eligible
        // entries were scanned as `nprobe` lists hold: a filter keeping 10 % of the
        // vectors probes about 10× the lists, so filtered recall tracks unfiltered.
        // (Deletes alone do not widen the probe, so compaction keeps every answer.)
        let filtered = !matches!(filter, IdFilter::All);
        let (mut target, mut eligible) = (0usize, 0usize);
        let mut heap = TopK::new(depth);
        let all = matches!(filter, IdFilter::All) && !self.rows.has_deleted();
        let ids = self.rows.ids();
        let ok = |r: usize| all || (self.rows.is_live(r) && filter.accepts(ids[r]));
        let tables = self.precomputed_tables();
        s.first.clear();
        s.first
            .extend(s.probes.iter().take(nprobe.min(2)).map(|p| p.1 as usize));
        codec.begin_query(&mut s.query, q, self.metric, tables, &s.first);
        let table_len = codec.list_table_len();
        let has_aux = !self.aux.is_empty();
        for pi in 0..coarse.len() {
            // After `nprobe` lists, go on (nearest lists first) while fewer than `depth`
            // results were found — a search returns `k` results whenever `k` eligible
            // ones exist — or, filtered, while fewer eligible entries than `target` were
            // scanned.
            if pi >= nprobe {
                if heap.len() >= depth && (!filtered || eligible >= target) {
                    break;
                }
                if !rest_sorted {
                    if few {
                        let chosen: Vec<u32> = s.probes.iter().map(|p| p.1).collect();
                        s.probes.extend(
                            coarse
                                .iter()
                                .enumerate()
                                .filter(|(l, _)| !chosen.contains(&(*l as u32)))
                                .map(|(l, &v)| (v, l as u32)),
                        );
                    }
                    s.probes[nprobe..].sort_unstable_by(cmp);
                    rest_sorted = true;
                }
            }
            let (cd, l) = s.probes[pi];
            let l = l as usize;
            let (a, b) = (self.offsets[l], self.offsets[l + 1]);
            if pi < nprobe {
                target += b - a;
            }
            if filtered {
                eligible += (a..b).filter(|&r| ok(r)).count();
            }
            if a == b {
                continue;
            }
            let list = ListTerms {
                centroid: Some(&self.centroids[l * d..(l + 1) * d]),
                coarse: cd,
                tables: tables.map(|t| &t[l * table_len..(l + 1) * table_len]),
            };
            codec.set_list(&mut s.query, q, self.metric, list);
            let run = Stored {
                codes: &self.codes[self.run_start(codec, l)..],
                aux: if has_aux { &self.aux[a..b] } else { &[] },
                raw: if self.raw.is_empty() {
                    &[]
                } else {
                    &self.raw[a * d..b * d]
                },
            };
            codec.scan(&mut s.query, self.metric, run, b - a, a, &mut heap, &ok);
        }
        heap.into_sorted()
    }

    pub(super) fn search_group(
        &self,
        queries: &[f32],
        params: &SearchParams,
        filter: &IdFilter<'_>,
    ) -> Result<Vec<(Vec<Neighbor>, u32)>> {
        let codec = self.codec()?;
        if params.nprobe == 0 {
            return Err(Error::param("nprobe", "must be at least 1"));
        }
        let (rerank, depth) = crate::index::scan_depth(
            params,
            C::STORES_RAW,
            !self.raw.is_empty(),
            codec.has_error_bounds(),
            &self.name(),
        )?;
        let nprobe = params.nprobe.min(self.nlist);
        let prepared = self.prepare(queries);
        let coarse = self.coarse(&prepared);
        let mut scratch = Scratch::default();
        if params.adaptive_rerank {
            codec.set_bound_keys(&mut scratch.query, true);
        }
        Ok(prepared
            .chunks_exact(self.dim)
            .zip(coarse.chunks_exact(self.nlist))
            .map(|(q, cd)| {
                let cands = self.scan_query(codec, q, cd, nprobe, depth, filter, &mut scratch);
                let exact = rerank.then(|| Exact {
                    raw: &self.raw,
                    dim: self.dim,
                    metric: self.metric,
                    query: q,
                    adaptive: params.adaptive_rerank,
                });
                self.rows.finish(cands, params.k, exact)
            })
            .collect())
    }
}
