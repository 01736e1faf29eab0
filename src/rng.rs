//! Seeded, portable random number generation.
//!
//! `rand`'s `StdRng` is documented as non-portable (its algorithm may change between
//! releases), so every seeded routine uses the named generator Xoshiro256++. Parallel
//! routines derive one independent stream per chunk with [`stream`], so results are
//! bit-identical whatever the thread count.

pub use rand::{RngExt, SeedableRng};

/// The crate's generator.
pub type SeededRng = rand_xoshiro::Xoshiro256PlusPlus;

/// A generator for `seed`.
pub fn seeded(seed: u64) -> SeededRng {
    SeededRng::seed_from_u64(seed)
}

/// An independent generator for (`seed`, `stream`): the pair is mixed with SplitMix64 so
/// nearby seeds and stream numbers give unrelated sequences.
pub fn stream(seed: u64, stream: u64) -> SeededRng {
    let mixed = splitmix64(seed ^ splitmix64(stream.wrapping_add(0x9E37_79B9_7F4A_7C15)));
    SeededRng::seed_from_u64(mixed)
}

/// SplitMix64 finaliser.
pub fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// `k` distinct indices out of `0..n`, chosen uniformly with `rng`, in increasing order
/// (partial Fisher–Yates; `k >= n` returns all of them).
pub fn sample_indices(n: usize, k: usize, rng: &mut SeededRng) -> Vec<usize> {
    if k >= n {
        return (0..n).collect();
    }
    let mut idx: Vec<usize> = (0..n).collect();
    for i in 0..k {
        let j = rng.random_range(i..n);
        idx.swap(i, j);
    }
    idx.truncate(k);
    idx.sort_unstable();
    idx
}
