//! Bounded top-k selection with deterministic tie-breaking.

use serde::{Deserialize, Serialize};
use std::cmp::Ordering;
use std::collections::BinaryHeap;

/// One search result: a vector's id and its distance to the query (smaller is better; see
/// [`Metric`](crate::Metric) for what the number means under each metric).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Neighbor {
    /// The id the vector was added with.
    pub id: u64,
    /// Distance to the query; smaller is better.
    pub distance: f32,
}

impl Neighbor {
    /// The total order results are sorted by: distance ascending, then id ascending, so
    /// that runs are reproducible even with ties.
    #[inline]
    pub fn cmp_best_first(&self, other: &Self) -> Ordering {
        self.distance
            .total_cmp(&other.distance)
            .then(self.id.cmp(&other.id))
    }
}

#[derive(Clone, Copy, Debug)]
struct Entry(Neighbor);

impl PartialEq for Entry {
    fn eq(&self, o: &Self) -> bool {
        self.cmp(o) == Ordering::Equal
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Entry {
    fn cmp(&self, o: &Self) -> Ordering {
        self.0.cmp_best_first(&o.0)
    }
}

/// Keeps the `k` best (smallest distance, then smallest id) of everything pushed.
///
/// The hot-path check is one float comparison against [`TopK::threshold`]; only
/// candidates that beat it touch the heap.
#[derive(Clone, Debug)]
pub struct TopK {
    k: usize,
    heap: BinaryHeap<Entry>,
    threshold: f32,
}

/// Entries a [`TopK`] allocates up front; a larger `k` grows the heap as entries come
/// (a search with `k` near [`crate::index::MAX_K`] over a group of queries would
/// otherwise reserve gigabytes that a small index never fills).
const PREALLOC: usize = 1024;

impl TopK {
    /// An empty collector for `k` results.
    pub fn new(k: usize) -> Self {
        TopK {
            k,
            heap: BinaryHeap::with_capacity(k.min(PREALLOC) + 1),
            threshold: f32::INFINITY,
        }
    }

    /// Forgets everything pushed, keeping the allocation.
    pub fn clear(&mut self) {
        self.heap.clear();
        self.threshold = f32::INFINITY;
    }

    /// The distance a candidate must not exceed to enter (∞ until `k` are held).
    #[inline]
    pub fn threshold(&self) -> f32 {
        self.threshold
    }

    /// How many results it keeps.
    pub fn k(&self) -> usize {
        self.k
    }

    /// Number of results held.
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }

    /// Offers a candidate.
    #[inline]
    pub fn push(&mut self, id: u64, distance: f32) {
        if self.k == 0 || distance > self.threshold || distance.is_nan() {
            return;
        }
        let e = Entry(Neighbor { id, distance });
        if self.heap.len() < self.k {
            self.heap.push(e);
            if self.heap.len() == self.k {
                self.threshold = self.heap.peek().map_or(f32::INFINITY, |w| w.0.distance);
            }
        } else if let Some(mut worst) = self.heap.peek_mut() {
            if e < *worst {
                *worst = e;
            } else {
                return;
            }
        }
        if self.heap.len() == self.k {
            self.threshold = self.heap.peek().map_or(f32::INFINITY, |w| w.0.distance);
        }
    }

    /// The results, best first.
    pub fn into_sorted(self) -> Vec<Neighbor> {
        let mut v: Vec<Neighbor> = self.heap.into_iter().map(|e| e.0).collect();
        v.sort_unstable_by(Neighbor::cmp_best_first);
        v
    }

    /// The results, best first, leaving the collector empty for reuse.
    pub fn take_sorted(&mut self) -> Vec<Neighbor> {
        let mut v: Vec<Neighbor> = self.heap.drain().map(|e| e.0).collect();
        self.threshold = f32::INFINITY;
        v.sort_unstable_by(Neighbor::cmp_best_first);
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_k_smallest_with_id_ties() {
        let mut t = TopK::new(3);
        for (id, d) in [(5, 1.0), (1, 3.0), (2, 0.5), (9, 1.0), (3, 1.0), (4, 7.0)] {
            t.push(id, d);
        }
        let r = t.into_sorted();
        let ids: Vec<u64> = r.iter().map(|n| n.id).collect();
        assert_eq!(ids, vec![2, 3, 5]);
    }

    #[test]
    fn matches_full_sort() {
        let mut vals: Vec<(u64, f32)> = (0..500).map(|i| (i, ((i * 7919) % 101) as f32)).collect();
        let mut t = TopK::new(17);
        for &(id, d) in &vals {
            t.push(id, d);
        }
        vals.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
        let got: Vec<u64> = t.into_sorted().iter().map(|n| n.id).collect();
        let want: Vec<u64> = vals[..17].iter().map(|v| v.0).collect();
        assert_eq!(got, want);
    }

    /// A collector for the largest `k` a search takes reserves a small heap up front
    /// (one per query of a group: a full reservation was 16 MiB each) and still keeps
    /// every entry, best first, when more than that reservation come.
    #[test]
    fn huge_k_reserves_little_and_keeps_everything() {
        let mut t = TopK::new(crate::index::MAX_K);
        assert!(
            t.heap.capacity() <= 2 * (PREALLOC + 1),
            "{}",
            t.heap.capacity()
        );
        let n = 3 * PREALLOC as u64;
        for id in 0..n {
            t.push(id, ((id * 7919) % n) as f32);
        }
        let got: Vec<f32> = t.into_sorted().iter().map(|x| x.distance).collect();
        let want: Vec<f32> = (0..n).map(|d| d as f32).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn nan_is_ignored_and_k_zero_is_empty() {
        let mut t = TopK::new(2);
        t.push(1, f32::NAN);
        t.push(2, 1.0);
        assert_eq!(t.into_sorted().len(), 1);
        let mut z = TopK::new(0);
        z.push(1, 0.0);
        assert!(z.into_sorted().is_empty());
    }
}
