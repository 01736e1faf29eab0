//! Searching an inverted file: coarse distances, the probe order, and the per-list
//! scans through the codec.

use crate::error::{Error, Result};
use crate::index::IdFilter;
use crate::index::SearchParams;
use crate::index::ivf::{FEW_PROBES, Ivf};
use crate::index::rows::Exact;
use crate::kernels;
use crate::kernels::sums::{self, from_order_key, order_key};
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

/// The order of probes: coarse distance, then list number.
fn probe_order(a: &(f32, u32), b: &(f32, u32)) -> std::cmp::Ordering {
    a.0.total_cmp(&b.0).then(a.1.cmp(&b.1))
}

/// Whether [`select_probes`] keeps only the `nprobe` nearest of `nlist` lists: up to
/// [`FEW_PROBES`] of them, or up to a quarter of the lists (a bound from group minima
/// leaves few lists to sort); otherwise every list is kept.
fn few_probes(nprobe: usize, nlist: usize) -> bool {
    nprobe < nlist && (nprobe <= FEW_PROBES || 4 * nprobe <= nlist)
}

/// Puts the `nprobe` nearest lists of a query (by its coarse distances), sorted, at the
/// start of `probes`; the other lists follow unsorted, or are left out when `nprobe`
/// is small against the lists (the returned flag: [`few_probes`]) and appended only
/// when a search has to go past `nprobe`.
fn select_probes(coarse: &[f32], nprobe: usize, probes: &mut Vec<(f32, u32)>) -> bool {
    probes.clear();
    let few = few_probes(nprobe, coarse.len());
    if few {
        // The nearest lists as `u64` keys that order as `probe_order` (a bound from
        // group minima, then only the lists under it sorted: a dispatched kernel for
        // up to `FEW_PROBES`; at nprobe 32 of 1,024 lists this took the selection
        // among every list from ≈ 11 % of the search's samples to ≈ 7 %).
        KEYS.with_borrow_mut(|keys| {
            if nprobe <= FEW_PROBES {
                sums::smallest_keys(coarse, nprobe, keys);
            } else {
                MINIMA.with_borrow_mut(|m| sums::smallest_keys_many(coarse, nprobe, keys, m));
            }
            probes.extend(
                keys.iter()
                    .map(|&key| (from_order_key((key >> 32) as u32), key as u32)),
            );
        });
    } else {
        select_sorted(coarse, nprobe, probes);
    }
    few
}

thread_local! {
    /// Scratch keys of the probe selection.
    static KEYS: std::cell::RefCell<Vec<u64>> = const { std::cell::RefCell::new(Vec::new()) };
    /// Scratch group minima of the probe selection.
    static MINIMA: std::cell::RefCell<Vec<u32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Every list into `probes`, the `nprobe` nearest first and sorted, the others after
/// them unsorted: selected and sorted as `u64` keys that order as `probe_order` (the
/// distance's total-order bits above the list number): integer comparisons instead of
/// a closure over pairs, 2–3× less time in the selection.
fn select_sorted(coarse: &[f32], nprobe: usize, probes: &mut Vec<(f32, u32)>) {
    KEYS.with_borrow_mut(|keys| {
        keys.clear();
        keys.extend(
            coarse
                .iter()
                .enumerate()
                .map(|(l, &v)| u64::from(order_key(v)) << 32 | l as u64),
        );
        if nprobe < keys.len() {
            keys.select_nth_unstable(nprobe);
            keys[..nprobe].sort_unstable();
        } else {
            keys.sort_unstable();
        }
        probes.clear();
        probes.extend(
            keys.iter()
                .map(|&k| (from_order_key((k >> 32) as u32), k as u32)),
        );
    });
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

    /// What [`VectorCodec::set_list`] needs of list `l` for a query at coarse distance
    /// `cd`.
    fn list_terms<'a>(
        &'a self,
        l: usize,
        cd: f32,
        tables: Option<&'a [f32]>,
        table_len: usize,
    ) -> ListTerms<'a> {
        let d = self.dim;
        ListTerms {
            centroid: Some(&self.centroids[l * d..(l + 1) * d]),
            coarse: cd,
            tables: tables.map(|t| &t[l * table_len..(l + 1) * table_len]),
        }
    }

    /// The stored run of list `l` (its packed codes from the list's first block, its
    /// auxiliary terms and kept vectors).
    fn run(&self, codec: &C, l: usize) -> Stored<'_> {
        let (a, b, d) = (self.offsets[l], self.offsets[l + 1], self.dim);
        Stored {
            codes: &self.codes[self.run_start(codec, l)..],
            aux: if self.aux.is_empty() {
                &[]
            } else {
                &self.aux[a..b]
            },
            raw: if self.raw.is_empty() {
                &[]
            } else {
                &self.raw[a * d..b * d]
            },
        }
    }

    /// Candidates of a batch of prepared queries (with their coarse distances) scanned
    /// list by list, for a codec that scans several queries at once
    /// ([`VectorCodec::queries_per_scan`]): the queries probing each list are scanned
    /// together while the list's codes are in cache (FAISS's `search_implem_12`), in
    /// two passes — every query's nearest list first (so that each heap holds a good
    /// threshold), then the other lists. The candidates are those of [`Ivf::scan_query`]: every scan
    /// is exact, so the order lists are scanned in does not change them; a query whose
    /// `nprobe` lists hold fewer than `depth` accepted entries is answered by
    /// `scan_query` itself (which goes on to further lists).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn scan_by_list<F: Fn(usize) -> bool>(
        &self,
        codec: &C,
        prepared: &[f32],
        coarse: &[f32],
        nprobe: usize,
        depth: usize,
        ok: &F,
        s: &mut Scratch<C::Query>,
    ) -> Vec<Vec<Neighbor>> {
        let (d, nlist, metric) = (self.dim, self.nlist, self.metric);
        let nq = prepared.len() / d;
        let tables = self.precomputed_tables();
        let table_len = codec.list_table_len();
        let mut states: Vec<C::Query> = (0..nq).map(|_| C::Query::default()).collect();
        let mut heaps: Vec<TopK> = (0..nq).map(|_| TopK::new(depth)).collect();
        // The `nprobe` lists of each query, nearest first, and their coarse distances
        // (kept here: reading them back from the `nq × nlist` coarse matrix list by
        // list missed the cache on every query — 14 % of a search at nprobe 32 of
        // 1,024 lists).
        let mut probes = vec![0u32; nq * nprobe];
        let mut probe_d = vec![0f32; nq * nprobe];
        for (i, ((q, cd), st)) in prepared
            .chunks_exact(d)
            .zip(coarse.chunks_exact(nlist))
            .zip(states.iter_mut())
            .enumerate()
        {
            select_probes(cd, nprobe, &mut s.probes);
            for ((p, pd), e) in probes[i * nprobe..(i + 1) * nprobe]
                .iter_mut()
                .zip(&mut probe_d[i * nprobe..(i + 1) * nprobe])
                .zip(&s.probes)
            {
                (*pd, *p) = *e;
            }
            // (No list to prefetch: the lists are scanned after every query began.)
            codec.begin_query(st, q, metric, tables, &[]);
        }
        // Two passes, both list by list: every query's nearest list (so that each heap
        // holds a good threshold before the other lists), then the other lists (none
        // with one probe).
        let passes = [0..1, 1..nprobe];
        let per = codec.queries_per_scan().max(1);
        // Working states: each query's prepared part (`begin_query`) is swapped into
        // one of these to scan a list, so their per-list buffers stay in cache.
        let mut work: Vec<C::Query> = (0..per).map(|_| C::Query::default()).collect();
        let mut bheaps: Vec<TopK> = (0..per).map(|_| TopK::new(0)).collect();
        let mut start = vec![0usize; nlist + 1];
        let mut by_list = Vec::new();
        for ranks in passes.iter().filter(|r| !r.is_empty()) {
            // The queries probing each list at these ranks (counting sort by list,
            // queries ascending).
            start.fill(0);
            for i in 0..nq {
                for &l in &probes[i * nprobe..(i + 1) * nprobe][ranks.clone()] {
                    start[l as usize + 1] += 1;
                }
            }
            for l in 0..nlist {
                start[l + 1] += start[l];
            }
            let mut fill = start.clone();
            by_list.clear();
            by_list.resize(start[nlist], (0u32, 0f32));
            for i in 0..nq {
                let at = i * nprobe..(i + 1) * nprobe;
                for (&l, &cd) in probes[at.clone()][ranks.clone()]
                    .iter()
                    .zip(&probe_d[at][ranks.clone()])
                {
                    by_list[fill[l as usize]] = (i as u32, cd);
                    fill[l as usize] += 1;
                }
            }
            for l in 0..nlist {
                let (a, b) = (self.offsets[l], self.offsets[l + 1]);
                if a == b {
                    continue;
                }
                let run = self.run(codec, l);
                // (Prefetching the next group's query tables into L1 cost 3–5 % at
                // nprobe ≥ 32 and into L2 more: the hardware prefetcher does better.)
                for group in by_list[start[l]..start[l + 1]].chunks(per) {
                    for (j, &(i, cd)) in group.iter().enumerate() {
                        let i = i as usize;
                        codec.swap_query(&mut work[j], &mut states[i]);
                        std::mem::swap(&mut bheaps[j], &mut heaps[i]);
                        let list = self.list_terms(l, cd, tables, table_len);
                        codec.set_list(&mut work[j], &prepared[i * d..(i + 1) * d], metric, list);
                    }
                    let g = group.len();
                    codec.scan_many(&mut work[..g], metric, run, b - a, a, &mut bheaps[..g], ok);
                    for (j, &(i, _)) in group.iter().enumerate() {
                        codec.swap_query(&mut work[j], &mut states[i as usize]);
                        std::mem::swap(&mut bheaps[j], &mut heaps[i as usize]);
                    }
                }
            }
        }
        let filter = IdFilter::All;
        heaps
            .into_iter()
            .enumerate()
            .map(|(i, heap)| {
                if heap.len() >= depth || nprobe >= nlist {
                    heap.into_sorted()
                } else {
                    let q = &prepared[i * d..(i + 1) * d];
                    let cd = &coarse[i * nlist..(i + 1) * nlist];
                    self.scan_query(codec, q, cd, nprobe, depth, &filter, s)
                }
            })
            .collect()
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
        let cmp = probe_order;
        let few = select_probes(coarse, nprobe, &mut s.probes);
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
                        let mut chosen = vec![false; coarse.len()];
                        for p in &s.probes {
                            chosen[p.1 as usize] = true;
                        }
                        s.probes.extend(
                            coarse
                                .iter()
                                .enumerate()
                                .filter(|&(l, _)| !chosen[l])
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
            let list = self.list_terms(l, cd, tables, table_len);
            codec.set_list(&mut s.query, q, self.metric, list);
            let run = self.run(codec, l);
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
        let nq = prepared.len() / self.dim;
        // Queries scanned list by list (see `scan_by_list`): unfiltered batches of a
        // codec that scans several queries at once, when on average at least two
        // queries of the batch probe each list beyond their nearest one.
        let by_list = codec.queries_per_scan() > 1
            && nq * nprobe.saturating_sub(1) >= 2 * self.nlist
            && matches!(filter, IdFilter::All)
            && !params.adaptive_rerank;
        let mut listed = if by_list {
            let all = !self.rows.has_deleted();
            let ok = |r: usize| all || self.rows.is_live(r);
            self.scan_by_list(codec, &prepared, &coarse, nprobe, depth, &ok, &mut scratch)
        } else {
            Vec::new()
        }
        .into_iter();
        Ok(prepared
            .chunks_exact(self.dim)
            .zip(coarse.chunks_exact(self.nlist))
            .map(|(q, cd)| {
                let cands = match listed.next() {
                    Some(c) => c,
                    None => self.scan_query(codec, q, cd, nprobe, depth, filter, &mut scratch),
                };
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

#[cfg(test)]
mod tests {
    use super::{from_order_key, order_key, probe_order, select_probes};

    use crate::rng::{RngExt, seeded};

    /// The first `nprobe` entries are those of a full sort by (distance, list), for
    /// both the few-probes pass and the selection, with ties, ±0 and infinities.
    #[test]
    fn order_keys_order_as_total_cmp_and_invert() {
        let mut rng = seeded(6);
        let mut vals: Vec<f32> = vec![
            0.0,
            -0.0,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::NAN,
            -f32::NAN,
            f32::MIN_POSITIVE,
            -f32::MIN_POSITIVE,
            f32::MAX,
            f32::MIN,
        ];
        vals.extend((0..200).map(|_| f32::from_bits(rng.random::<u32>())));
        for &a in &vals {
            assert_eq!(from_order_key(order_key(a)).to_bits(), a.to_bits());
            for &b in &vals {
                assert_eq!(order_key(a).cmp(&order_key(b)), a.total_cmp(&b), "{a} {b}");
            }
        }
    }

    #[test]
    fn selected_probes_equal_a_full_sort() {
        let mut rng = seeded(5);
        let mut probes = Vec::new();
        for trial in 0..300 {
            let nlist = 1 + rng.random_range(0..300usize);
            let coarse: Vec<f32> = (0..nlist)
                .map(|_| match rng.random_range(0..10u32) {
                    0 => 0.0,
                    1 => -0.0,
                    2 => f32::INFINITY,
                    3 => 1.5,
                    // (No NaN: coarse distances of validated queries are never NaN;
                    // the keys' order on NaN is tested above.)
                    6 if trial % 5 == 0 => f32::NEG_INFINITY,
                    _ => rng.random_range(-4.0f32..4.0),
                })
                .collect();
            let mut want: Vec<(f32, u32)> = coarse
                .iter()
                .enumerate()
                .map(|(l, &v)| (v, l as u32))
                .collect();
            want.sort_unstable_by(probe_order);
            for nprobe in [1usize, 2, 3, 7, 16, 17, 33, 64, 75, nlist] {
                let few = select_probes(&coarse, nprobe, &mut probes);
                let n = nprobe.min(nlist);
                let got: Vec<(u32, u32)> =
                    probes[..n].iter().map(|p| (p.0.to_bits(), p.1)).collect();
                let exp: Vec<(u32, u32)> = want[..n].iter().map(|p| (p.0.to_bits(), p.1)).collect();
                assert_eq!(got, exp, "trial {trial} nlist {nlist} nprobe {nprobe}");
                assert_eq!(
                    few,
                    nprobe < nlist && (nprobe <= super::FEW_PROBES || 4 * nprobe <= nlist)
                );
                if few {
                    assert_eq!(probes.len(), n);
                } else {
                    assert_eq!(probes.len(), nlist);
                }
            }
        }
    }
}
