//! Bit-code kernels for sign (1-bit) codes such as RaBitQ's.
//!
//! A 1-bit code of a `d`-dimensional vector is `words = ⌈d / 64⌉` little-endian `u64`
//! words, dimension `i` at bit `i % 64` of word `i / 64` (bits past `d` are zero). A query
//! quantized to `bq` bits per dimension is stored as `bq` *bit planes* of `words` words
//! each, plane-major: plane `j` (`planes[j * words..(j + 1) * words]`) holds bit `j` of
//! every dimension's query code. The inner product of a code `x ∈ {0,1}^d` with the query
//! code `q ∈ [0, 2^bq)^d` is then
//!
//! ```text
//! ⟨x, q⟩ = Σ_j 2^j · popcount(x AND plane_j)
//! ```
//!
//! These are the scalar references; SIMD versions must return identical integers.

/// `⟨x, q⟩ = Σ_j 2^j · popcount(code AND plane_j)` for one code of `code.len()` words and
/// `bq = planes.len() / code.len()` planes.
#[inline]
pub fn and_popcount_planes(code: &[u64], planes: &[u64]) -> u32 {
    let words = code.len();
    if words == 0 {
        return 0;
    }
    planes
        .chunks_exact(words)
        .enumerate()
        .map(|(j, plane)| {
            let ones: u32 = code
                .iter()
                .zip(plane)
                .map(|(c, p)| (c & p).count_ones())
                .sum();
            ones << j
        })
        .sum()
}

/// [`and_popcount_planes`] for `out.len()` consecutive codes of `words` words each in
/// `codes`, into `out`.
pub fn and_popcount_planes_batch(codes: &[u64], words: usize, planes: &[u64], out: &mut [u32]) {
    if words == 0 {
        out.fill(0);
        return;
    }
    for (o, code) in out.iter_mut().zip(codes.chunks_exact(words)) {
        *o = and_popcount_planes(code, planes);
    }
}

/// Number of set bits of a code.
#[inline]
pub fn popcount(code: &[u64]) -> u32 {
    code.iter().map(|w| w.count_ones()).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The definition, dimension by dimension.
    fn by_dimension(x: &[u8], q: &[u8]) -> u32 {
        x.iter().zip(q).map(|(&a, &b)| a as u32 * b as u32).sum()
    }

    fn to_words(bits: impl Iterator<Item = bool>, words: usize) -> Vec<u64> {
        let mut w = vec![0u64; words];
        for (i, b) in bits.enumerate() {
            w[i / 64] |= (b as u64) << (i % 64);
        }
        w
    }

    #[test]
    fn planes_inner_product_equals_the_definition() {
        let mut s = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s
        };
        for d in [1usize, 7, 63, 64, 65, 128, 200, 384] {
            for bq in 1..=8usize {
                let words = d.div_ceil(64);
                let x: Vec<u8> = (0..d).map(|_| (next() & 1) as u8).collect();
                let q: Vec<u8> = (0..d).map(|_| (next() % (1 << bq)) as u8).collect();
                let code = to_words(x.iter().map(|&b| b == 1), words);
                let planes: Vec<u64> = (0..bq)
                    .flat_map(|j| to_words(q.iter().map(|&v| v >> j & 1 == 1), words))
                    .collect();
                assert_eq!(
                    and_popcount_planes(&code, &planes),
                    by_dimension(&x, &q),
                    "d {d} bq {bq}"
                );
                let mut out = [0u32; 2];
                let two: Vec<u64> = code.iter().chain(&code).copied().collect();
                and_popcount_planes_batch(&two, words, &planes, &mut out);
                assert_eq!(out, [by_dimension(&x, &q); 2]);
                assert_eq!(popcount(&code), x.iter().map(|&b| b as u32).sum::<u32>());
            }
        }
    }
}
