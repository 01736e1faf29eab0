//! Row bookkeeping every index kind shares: user ids and deletion tombstones.
//!
//! Vectors live in rows (insertion order). Each row has a user `u64` id (default: its
//! insertion number). [`Rows::delete`] marks rows with a tombstone bit that every scan
//! checks, so a deleted id never appears in a result; the bits are saved as the
//! `tombstones` section, and [`Rows::compact_slab`] drops deleted rows from a kind's
//! arrays when the index is compacted.

use std::collections::{HashMap, HashSet};
use std::sync::OnceLock;

use crate::error::{Error, Result};
use crate::kernels;
use crate::metric::Metric;
use crate::store::{Container, ContainerWriter, Plain, Slab};
use crate::topk::{Neighbor, TopK};

/// The original vectors and the query, for exact re-ranking of candidates.
pub struct Exact<'a> {
    /// Raw vectors, row-major (normalised for cosine).
    pub raw: &'a [f32],
    /// Dimension.
    pub dim: usize,
    /// Metric.
    pub metric: Metric,
    /// The (prepared) query.
    pub query: &'a [f32],
    /// Error-bound re-ranking: the candidates' distances are lower bounds; re-score in
    /// their order only while a lower bound beats the current k-th exact distance.
    pub adaptive: bool,
}

/// The error for `rerank > 0` on an index built without raw vectors.
pub fn rerank_unavailable(spec: &str) -> Error {
    Error::param(
        "rerank",
        format!("{spec} was built without the raw vectors; rebuild with --keep-raw"),
    )
}

/// Refuses a batch of ids that repeats an id ([`Error::DuplicateId`] naming the first
/// repeat, at its row, and how many rows repeat an earlier one).
pub fn check_batch_ids(ids: &[u64]) -> Result<()> {
    let mut sorted: Vec<(u64, usize)> = ids.iter().copied().zip(0..).collect();
    sorted.sort_unstable();
    // Every row but the first of each run of equal ids repeats an earlier one.
    let repeats: Vec<usize> = sorted
        .windows(2)
        .filter(|w| w[0].0 == w[1].0)
        .map(|w| w[1].1)
        .collect();
    match repeats.iter().min() {
        None => Ok(()),
        Some(&row) => Err(Error::DuplicateId {
            id: ids[row],
            row,
            count: repeats.len(),
            within_batch: true,
        }),
    }
}

/// Rows `order` of `src` (`w` values per row), in that order.
pub fn gather_rows<T: Copy>(src: &[T], w: usize, order: &[usize]) -> Vec<T> {
    let mut out = Vec::with_capacity(order.len() * w);
    for &r in order {
        out.extend_from_slice(&src[r * w..(r + 1) * w]);
    }
    out
}

/// Ids and tombstones of an index's rows.
#[derive(Clone, Debug, Default)]
pub struct Rows {
    ids: Slab<u64>,
    /// One bit per row; empty when nothing was deleted.
    tomb: Vec<u64>,
    deleted: usize,
    /// The largest id held, deleted rows' included (computed on first need, kept up to
    /// date by pushes, forgotten when rows are dropped), so appending new, larger ids
    /// needs no scan of the old ones.
    max_id: OnceLock<u64>,
}

impl Rows {
    /// Number of rows, deleted ones included.
    #[inline]
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Rows not deleted.
    pub fn live(&self) -> usize {
        self.len() - self.deleted
    }

    /// Number of deleted rows.
    pub fn deleted(&self) -> usize {
        self.deleted
    }

    /// The ids, one per row.
    #[inline]
    pub fn ids(&self) -> &[u64] {
        &self.ids
    }

    /// Whether `row` has not been deleted.
    #[inline]
    pub fn is_live(&self, row: usize) -> bool {
        self.deleted == 0 || self.tomb[row / 64] & (1 << (row % 64)) == 0
    }

    /// Whether any row is deleted (scans skip the per-row check otherwise).
    #[inline]
    pub fn has_deleted(&self) -> bool {
        self.deleted > 0
    }

    /// Checks the ids of `n` rows about to be added, before anything is added:
    /// `ids` (default: consecutive from [`Rows::next_id`], which cannot collide) must not
    /// repeat within the batch, and must not be held by a live row — unless `replace`,
    /// when the live rows holding them are returned, to be deleted by
    /// [`Rows::push_replacing`] once the new rows are in.
    ///
    /// # Errors
    /// [`Error::DuplicateId`] naming the first colliding id, its row in the batch and
    /// how many rows of the batch collide.
    pub fn admit(&self, n: usize, ids: Option<&[u64]>, replace: bool) -> Result<Vec<usize>> {
        let ids = match ids {
            Some(ids) => ids,
            None if n == 0 => return Ok(Vec::new()),
            // Default ids lie past every id held: they cannot collide.
            None => {
                return match self.next_id().and_then(|b| b.checked_add(n as u64 - 1)) {
                    Some(_) => Ok(Vec::new()),
                    None => Err(Error::param(
                        "ids",
                        format!(
                            "default ids for {n} vectors would pass {}: give them explicit ids",
                            u64::MAX
                        ),
                    )),
                };
            }
        };
        check_batch_ids(ids)?;
        let (lo, hi) = match (ids.iter().min(), ids.iter().max()) {
            (Some(&a), Some(&b)) => (a, b),
            _ => return Ok(Vec::new()),
        };
        if self.live() == 0 {
            return Ok(Vec::new());
        }
        let bound = *self
            .max_id
            .get_or_init(|| self.ids.iter().copied().max().unwrap_or(0));
        if lo > bound {
            return Ok(Vec::new());
        }
        let mut sorted = ids.to_vec();
        sorted.sort_unstable();
        let in_batch = |id: u64| (lo..=hi).contains(&id) && sorted.binary_search(&id).is_ok();
        let taken: Vec<usize> = (0..self.len())
            .filter(|&r| in_batch(self.ids[r]) && self.is_live(r))
            .collect();
        if taken.is_empty() || replace {
            return Ok(taken);
        }
        let mut hit: Vec<u64> = taken.iter().map(|&r| self.ids[r]).collect();
        hit.sort_unstable();
        hit.dedup();
        let colliding: Vec<usize> = (0..n)
            .filter(|&r| hit.binary_search(&ids[r]).is_ok())
            .collect();
        let row = colliding[0];
        Err(Error::DuplicateId {
            id: ids[row],
            row,
            count: colliding.len(),
            within_batch: false,
        })
    }

    /// [`Rows::push`], then deletes the old rows `replaced` (from [`Rows::admit`]).
    pub fn push_replacing(&mut self, n: usize, ids: Option<&[u64]>, replaced: &[usize]) {
        self.push(n, ids);
        self.tombstone_rows(replaced.iter().copied());
    }

    /// Marks `rows` deleted; returns how many were live.
    fn tombstone_rows(&mut self, rows: impl Iterator<Item = usize>) -> usize {
        let mut newly = 0;
        for row in rows {
            if self.tomb.is_empty() {
                self.tomb = vec![0; self.len().div_ceil(64)];
            }
            let (w, b) = (row / 64, 1u64 << (row % 64));
            if self.tomb[w] & b == 0 {
                self.tomb[w] |= b;
                newly += 1;
            }
        }
        self.deleted += newly;
        newly
    }

    /// The first default id: one past every id held (deleted rows' included), and at
    /// least the row count — so default ids continue the numbering and never collide,
    /// also after explicit ids or a compaction. `None` when that would pass `u64::MAX`.
    pub fn next_id(&self) -> Option<u64> {
        if self.ids.is_empty() {
            return Some(0);
        }
        let top = *self
            .max_id
            .get_or_init(|| self.ids.iter().copied().max().unwrap_or(0));
        top.checked_add(1).map(|t| t.max(self.len() as u64))
    }

    /// Appends `n` rows with `ids` (default: consecutive from [`Rows::next_id`]).
    /// Callers check the ids first with [`Rows::admit`] (which refuses default ids past
    /// `u64::MAX`; unchecked, they would saturate there).
    pub fn push(&mut self, n: usize, ids: Option<&[u64]>) {
        let top = match ids {
            Some(ids) => {
                self.ids.to_mut().extend_from_slice(ids);
                ids.iter().copied().max()
            }
            None => {
                let base = self.next_id().unwrap_or(u64::MAX);
                let ids = (0..n as u64).map(|i| base.saturating_add(i));
                self.ids.to_mut().extend(ids);
                (n > 0).then(|| base.saturating_add(n as u64 - 1))
            }
        };
        if let Some(m) = self.max_id.get_mut() {
            *m = top.map_or(*m, |t| t.max(*m));
        }
        if !self.tomb.is_empty() {
            self.tomb.resize(self.ids.len().div_ceil(64), 0);
        }
    }

    /// Marks every row whose id is in `ids` deleted; returns how many rows were newly
    /// deleted.
    pub fn delete(&mut self, ids: &[u64]) -> usize {
        if ids.is_empty() || self.is_empty() {
            return 0;
        }
        let set: HashSet<u64> = ids.iter().copied().collect();
        let rows: Vec<usize> = (0..self.len())
            .filter(|&r| set.contains(&self.ids[r]))
            .collect();
        self.tombstone_rows(rows.into_iter())
    }

    /// Keeps only the live rows of `data` (`per_row` values per row).
    pub fn compact_slab<T: Plain>(&self, data: &Slab<T>, per_row: usize) -> Slab<T> {
        if self.deleted == 0 {
            return data.clone();
        }
        let mut out = Vec::with_capacity(self.live() * per_row);
        for (row, chunk) in data.chunks_exact(per_row.max(1)).enumerate() {
            if self.is_live(row) {
                out.extend_from_slice(chunk);
            }
        }
        Slab::from(out)
    }

    /// Drops deleted rows' ids and clears the tombstones (call after compacting every
    /// per-row array with [`Rows::compact_slab`]). Returns the number of rows dropped.
    pub fn compact(&mut self) -> usize {
        let dropped = self.deleted;
        if dropped > 0 {
            self.ids = self.compact_slab(&self.ids, 1);
            self.tomb.clear();
            self.deleted = 0;
            // The dropped ids may have held the largest: recomputed on next need, as
            // after a reload, so `next_id` does not depend on whether the index was
            // saved and opened again since.
            self.max_id = OnceLock::new();
        }
        dropped
    }

    /// The live row holding each of `ids`, in their order (what `reconstruct` decodes).
    /// An id equal to its row number (the default ids, nothing compacted) is found
    /// directly; the others through one map of the live rows, built on first need.
    ///
    /// # Errors
    /// [`Error::UnknownId`] for the first id no live row holds.
    pub fn rows_of(&self, ids: &[u64]) -> Result<Vec<usize>> {
        let direct = |id: u64| {
            let r = usize::try_from(id).ok()?;
            (r < self.len() && self.ids[r] == id && self.is_live(r)).then_some(r)
        };
        let mut map: Option<HashMap<u64, usize>> = None;
        let mut out = Vec::with_capacity(ids.len());
        for (position, &id) in ids.iter().enumerate() {
            if let Some(r) = direct(id) {
                out.push(r);
                continue;
            }
            let live = map.get_or_insert_with(|| {
                (0..self.len())
                    .filter(|&r| self.is_live(r))
                    .map(|r| (self.ids[r], r))
                    .collect()
            });
            match live.get(&id) {
                Some(&r) => out.push(r),
                None => {
                    return Err(Error::UnknownId {
                        id,
                        position,
                        deleted: self.ids.contains(&id),
                    });
                }
            }
        }
        Ok(out)
    }

    /// The rows `order` (indices into these rows, each at most once) in that order, with
    /// their ids and tombstones: how kinds that group rows (IVF lists) re-order them.
    pub fn gather(&self, order: &[usize]) -> Rows {
        let ids: Vec<u64> = order.iter().map(|&r| self.ids[r]).collect();
        let mut out = Rows {
            ids: Slab::from(ids),
            tomb: Vec::new(),
            deleted: 0,
            // Kept only when every row is (the largest id may be among those left out).
            max_id: if order.len() == self.len() {
                self.max_id.clone()
            } else {
                OnceLock::new()
            },
        };
        if self.deleted > 0 {
            let mut tomb = vec![0u64; order.len().div_ceil(64)];
            for (i, &r) in order.iter().enumerate() {
                if !self.is_live(r) {
                    tomb[i / 64] |= 1 << (i % 64);
                    out.deleted += 1;
                }
            }
            if out.deleted > 0 {
                out.tomb = tomb;
            }
        }
        out
    }

    /// Writes the `ids` section and, when rows are deleted, the `tombstones` section.
    pub fn write<'a>(&'a self, w: &mut ContainerWriter<'a>) {
        w.section_u64("ids", &self.ids);
        if self.deleted > 0 {
            w.section_u64("tombstones", &self.tomb);
        }
    }

    /// Reads `n` rows' ids and tombstones (a file without a `tombstones` section has
    /// none).
    pub fn read(c: &Container, n: usize) -> Result<Self> {
        let ids = c.slab::<u64>("ids", n)?;
        let has = c.header().sections.iter().any(|s| s.name == "tombstones");
        let (tomb, deleted) = if has {
            let t = c.section_u64("tombstones", n.div_ceil(64))?;
            if !n.is_multiple_of(64) && t.last().is_some_and(|&w| w >> (n % 64) != 0) {
                return Err(Error::format(
                    c.path(),
                    "tombstone bits set past the last row",
                ));
            }
            let d = t.iter().map(|w| w.count_ones() as usize).sum();
            (t, d)
        } else {
            (Vec::new(), 0)
        };
        Ok(Rows {
            ids,
            tomb: if deleted > 0 { tomb } else { Vec::new() },
            deleted,
            max_id: OnceLock::new(),
        })
    }

    /// The final `k` results of a query from its candidates (`cands`, ascending), with
    /// how many were re-scored exactly: with `exact`, the candidates are re-scored with
    /// the raw vectors (all of them, or under [`Exact::adaptive`] only while a candidate's
    /// lower bound beats the current k-th exact distance); without, the best `k` keep
    /// their estimates. Row numbers become ids.
    pub fn finish(
        &self,
        cands: Vec<Neighbor>,
        k: usize,
        exact: Option<Exact<'_>>,
    ) -> (Vec<Neighbor>, u32) {
        match exact {
            Some(e) => {
                let mut heap = TopK::new(k);
                let mut scored = 0u32;
                for c in cands {
                    // Candidates come in ascending lower bound: once one cannot beat
                    // the k-th exact distance, none after it can.
                    if e.adaptive && heap.len() == k && c.distance >= heap.threshold() {
                        break;
                    }
                    let row = c.id as usize;
                    let x = &e.raw[row * e.dim..(row + 1) * e.dim];
                    let d = match e.metric {
                        Metric::L2 => kernels::l2_sq(e.query, x),
                        m => m.distance_from_score(kernels::dot(e.query, x)),
                    };
                    heap.push(self.ids[row], d);
                    scored += 1;
                }
                (heap.into_sorted(), scored)
            }
            None => (
                cands
                    .into_iter()
                    .take(k)
                    .map(|c| Neighbor {
                        id: self.ids[c.id as usize],
                        distance: c.distance,
                    })
                    .collect(),
                0,
            ),
        }
    }

    /// Bytes held (ids and tombstones).
    pub fn memory_bytes(&self) -> usize {
        self.ids.len() * 8 + self.tomb.len() * 8
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delete_compact_and_ids() {
        let mut r = Rows::default();
        r.push(3, None);
        r.push(2, Some(&[100, 7]));
        assert_eq!(r.ids(), &[0, 1, 2, 100, 7]);
        assert_eq!(r.delete(&[1, 100, 55]), 2);
        assert_eq!(r.delete(&[1]), 0, "already deleted");
        assert!(!r.is_live(1) && !r.is_live(3) && r.is_live(4));
        assert_eq!(r.live(), 3);
        let data = Slab::from(vec![0.0f32, 0.1, 1.0, 1.1, 2.0, 2.1, 3.0, 3.1, 4.0, 4.1]);
        let kept = r.compact_slab(&data, 2);
        assert_eq!(&kept[..], &[0.0, 0.1, 2.0, 2.1, 4.0, 4.1]);
        assert_eq!(r.compact(), 2);
        assert_eq!(r.ids(), &[0, 2, 7]);
        assert!(!r.has_deleted());
        // Rows added after a delete extend the tombstone words.
        r.delete(&[0]);
        r.push(100, None);
        assert!(r.is_live(102) && !r.is_live(0));
        // Gathering re-orders ids and carries tombstones along.
        let g = r.gather(&[2, 0, 1]);
        assert_eq!(g.ids(), &[7, 0, 2]);
        assert!(g.is_live(0) && !g.is_live(1) && g.is_live(2));
        assert_eq!(g.deleted(), 1);
        assert_eq!(r.gather(&[1, 2]).deleted(), 0);
    }

    /// The adaptive stop rule of `finish` on synthetic lower bounds: with true lower
    /// bounds it returns exactly what re-scoring every candidate returns, re-scores a
    /// prefix of the candidates, and stops only at a bound that cannot beat the final
    /// k-th exact distance; loose bounds re-score more, exact ones exactly `k`.
    #[test]
    fn adaptive_finish_equals_full_rerank_and_stops_at_the_first_useless_bound() {
        use crate::rng::RngExt;
        let mut rng = crate::rng::seeded(5);
        let (n, dim, k) = (300usize, 4usize, 10usize);
        let mut rows = Rows::default();
        rows.push(
            n,
            Some(&(0..n as u64).map(|i| 1000 + i).collect::<Vec<_>>()),
        );
        let mut total = [0u32; 2];
        for trial in 0..40 {
            let raw: Vec<f32> = (0..n * dim)
                .map(|_| rng.random::<f32>() * 4.0 - 2.0)
                .collect();
            let query: Vec<f32> = (0..dim).map(|_| rng.random::<f32>() - 0.5).collect();
            let exact_d = |r: usize| kernels::l2_sq(&query, &raw[r * dim..(r + 1) * dim]);
            for (tight, slack) in [(0usize, 0.0f32), (1, 3.0)] {
                // Lower bound = exact − a random share of `slack` (never above exact).
                let mut cands: Vec<Neighbor> = (0..n)
                    .map(|r| Neighbor {
                        id: r as u64,
                        distance: exact_d(r) - slack * rng.random::<f32>(),
                    })
                    .collect();
                cands.sort_by(|a, b| a.distance.total_cmp(&b.distance));
                let exact = |adaptive| Exact {
                    raw: &raw,
                    dim,
                    metric: Metric::L2,
                    query: &query,
                    adaptive,
                };
                let (full, all) = rows.finish(cands.clone(), k, Some(exact(false)));
                let (got, scored) = rows.finish(cands.clone(), k, Some(exact(true)));
                assert_eq!(all as usize, n);
                assert_eq!(got, full, "trial {trial} slack {slack}");
                let kth = got[k - 1].distance;
                let s = scored as usize;
                assert!(s >= k && s <= n, "{s}");
                if s < n {
                    assert!(cands[s].distance >= kth, "stopped before a useful bound");
                }
                total[tight] += scored;
            }
        }
        assert!(
            total[0] < total[1],
            "exact bounds {} vs loose {}",
            total[0],
            total[1]
        );
        // Exact "bounds": the first k candidates are the answer and the next one stops.
        assert_eq!(total[0] as usize, 40 * k);
    }
}
