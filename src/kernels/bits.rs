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
//! The entry points ([`and_popcount_planes`], [`and_popcount_planes_batch`],
//! [`popcount`]) run the kernels of the process's SIMD level (see [`super`]); the
//! `scalar_*` functions are the portable references, compiled for the baseline target
//! (no `popcnt` instruction on x86-64), which every level must equal exactly. From
//! [`SimdLevel::Avx2`] on, x86-64 uses hardware `popcnt` (part of that level) and, where
//! it measured faster, AVX2 nibble look-ups (`vpshufb`).
//!
//! Plane counts up to 16 are supported (`bq ≤ 16`; RaBitQ uses 4): the result is a `u32`
//! and each plane's count is shifted left by its index.

use super::SimdLevel;

type PlanesFn = unsafe fn(&[u64], &[u64]) -> u32;
type BatchFn = unsafe fn(&[u64], usize, &[u64], &mut [u32]);
type PopFn = unsafe fn(&[u64]) -> u32;

/// The bit-code kernels of one SIMD level (part of the dispatch table
/// [`super::Kernels`]).
pub(crate) struct BitsKernels {
    planes: PlanesFn,
    batch: BatchFn,
    popcount: PopFn,
}

impl BitsKernels {
    /// The kernels of `level`.
    ///
    /// # Safety
    /// The result's methods run code compiled for `level`: the caller must only let them
    /// be called on a CPU that supports `level`.
    pub(super) const unsafe fn for_level(level: SimdLevel) -> BitsKernels {
        match level {
            // Every x86-64 level above scalar includes POPCNT (`super::detect_cpu`).
            #[cfg(target_arch = "x86_64")]
            SimdLevel::Avx2 | SimdLevel::Avx512 | SimdLevel::Avx512Vbmi => BitsKernels {
                planes: x86::planes_popcnt,
                batch: x86::batch_avx2,
                popcount: x86::popcount_popcnt,
            },
            _ => BitsKernels {
                planes: scalar_and_popcount_planes,
                batch: scalar_and_popcount_planes_batch,
                popcount: scalar_popcount,
            },
        }
    }

    /// [`and_popcount_planes`] at this table's level.
    #[inline]
    pub(crate) fn and_popcount_planes(&self, code: &[u64], planes: &[u64]) -> u32 {
        let words = code.len();
        if words == 0 {
            return 0;
        }
        // Whole planes only, as the reference reads them.
        let planes = &planes[..planes.len() - planes.len() % words];
        // SAFETY: the CPU supports this table's level (invariant of `super::Kernels`,
        // which holds this table); the kernels read `code.len()` words of `code` and
        // `planes.len()` (a multiple of it) of `planes`.
        unsafe { (self.planes)(code, planes) }
    }

    /// [`and_popcount_planes_batch`] at this table's level.
    #[inline]
    pub(crate) fn and_popcount_planes_batch(
        &self,
        codes: &[u64],
        words: usize,
        planes: &[u64],
        out: &mut [u32],
    ) {
        if words == 0 {
            out.fill(0);
            return;
        }
        // As the reference: only whole codes and whole planes are read, and outputs
        // past the last whole code are left alone.
        let n = out.len().min(codes.len() / words);
        let planes = &planes[..planes.len() - planes.len() % words];
        // SAFETY: as in `and_popcount_planes`; the kernels read `n · words` words of
        // `codes` and write `n` outputs.
        unsafe { (self.batch)(&codes[..n * words], words, planes, &mut out[..n]) }
    }

    /// [`popcount`] at this table's level.
    #[inline]
    pub(crate) fn popcount(&self, code: &[u64]) -> u32 {
        // SAFETY: as in `and_popcount_planes`.
        unsafe { (self.popcount)(code) }
    }
}

/// `⟨x, q⟩ = Σ_j 2^j · popcount(code AND plane_j)` for one code of `code.len()` words and
/// `bq = planes.len() / code.len()` planes (a partial last plane is ignored; `0` for an
/// empty code).
#[inline]
pub fn and_popcount_planes(code: &[u64], planes: &[u64]) -> u32 {
    super::active().bits.and_popcount_planes(code, planes)
}

/// [`and_popcount_planes`] for consecutive codes of `words` words each in `codes`, into
/// `out` (one per code; entries of `out` past the last whole code are left unchanged,
/// and `words = 0` fills `out` with zeros).
#[inline]
pub fn and_popcount_planes_batch(codes: &[u64], words: usize, planes: &[u64], out: &mut [u32]) {
    super::active()
        .bits
        .and_popcount_planes_batch(codes, words, planes, out)
}

/// Number of set bits of a code.
#[inline]
pub fn popcount(code: &[u64]) -> u32 {
    super::active().bits.popcount(code)
}

/// Scalar reference for [`and_popcount_planes`].
#[inline]
pub fn scalar_and_popcount_planes(code: &[u64], planes: &[u64]) -> u32 {
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

/// Scalar reference for [`and_popcount_planes_batch`].
pub fn scalar_and_popcount_planes_batch(
    codes: &[u64],
    words: usize,
    planes: &[u64],
    out: &mut [u32],
) {
    if words == 0 {
        out.fill(0);
        return;
    }
    for (o, code) in out.iter_mut().zip(codes.chunks_exact(words)) {
        *o = scalar_and_popcount_planes(code, planes);
    }
}

/// Scalar reference for [`popcount`].
#[inline]
pub fn scalar_popcount(code: &[u64]) -> u32 {
    code.iter().map(|w| w.count_ones()).sum()
}

/// [`scalar_and_popcount_planes`] with the code word held across the planes (words
/// outer, planes inner): the body the `popcnt` kernels compile.
#[inline(always)]
fn planes_words_outer(code: &[u64], planes: &[u64]) -> u32 {
    let words = code.len();
    if words == 0 {
        return 0;
    }
    let bq = planes.len() / words;
    let mut total = 0u32;
    for (w, &c) in code.iter().enumerate() {
        for j in 0..bq {
            total += (c & planes[j * words + w]).count_ones() << j;
        }
    }
    total
}

/// For the benchmarks: the x86 batch kernel `name` (`"popcnt"`: hardware `popcnt`
/// per code; `"avx2"`: the AVX2 kernel as installed; `"avx2-wide"`: AVX2 four words per
/// register for every width) on the arguments of [`and_popcount_planes_batch`].
/// Returns `false` (and does nothing) when the CPU lacks AVX2 + POPCNT, the name is
/// unknown or `words` is zero.
#[doc(hidden)]
pub fn bench_x86_batch(
    name: &str,
    codes: &[u64],
    words: usize,
    planes: &[u64],
    out: &mut [u32],
) -> bool {
    #[cfg(target_arch = "x86_64")]
    if SimdLevel::Avx2.is_supported() && words > 0 {
        let n = out.len().min(codes.len() / words);
        let (codes, out) = (&codes[..n * words], &mut out[..n]);
        let planes = &planes[..planes.len() - planes.len() % words];
        // SAFETY: AVX2 and POPCNT checked; whole codes and planes, as the kernels need.
        unsafe {
            match name {
                "popcnt" => x86::batch_popcnt(codes, words, planes, out),
                "avx2" => x86::batch_avx2(codes, words, planes, out),
                "avx2-wide" => {
                    for (o, c) in out.iter_mut().zip(codes.chunks_exact(words)) {
                        *o = x86::planes_avx2(c, planes);
                    }
                }
                _ => return false,
            }
        }
        return true;
    }
    let _ = (name, codes, words, planes, out);
    false
}

#[cfg(target_arch = "x86_64")]
mod x86;
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
                assert_eq!(
                    scalar_and_popcount_planes(&code, &planes),
                    by_dimension(&x, &q),
                    "d {d} bq {bq}"
                );
                let mut out = [0u32; 2];
                let two: Vec<u64> = code.iter().chain(&code).copied().collect();
                and_popcount_planes_batch(&two, words, &planes, &mut out);
                assert_eq!(out, [by_dimension(&x, &q); 2]);
                scalar_and_popcount_planes_batch(&two, words, &planes, &mut out);
                assert_eq!(out, [by_dimension(&x, &q); 2]);
                assert_eq!(popcount(&code), x.iter().map(|&b| b as u32).sum::<u32>());
                assert_eq!(
                    scalar_popcount(&code),
                    x.iter().map(|&b| b as u32).sum::<u32>()
                );
            }
        }
    }

    fn xorshift(seed: u64) -> impl FnMut() -> u64 {
        let mut s = seed | 1;
        move || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s
        }
    }

    /// Code widths: every width up to 20 words (each residue of the 4-word registers and
    /// the 1/2/4-word grouped kernels), then larger ones up to 1,024 words.
    const WORDS: [usize; 27] = [
        1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 31, 64, 123, 124,
        125, 129, 1024,
    ];

    /// Random bits of varying density (all zeros, all ones, sparse, dense, uniform).
    fn words_of(next: &mut impl FnMut() -> u64, n: usize, kind: usize) -> Vec<u64> {
        (0..n)
            .map(|_| match kind % 5 {
                0 => 0,
                1 => u64::MAX,
                2 => next() & next() & next(),
                3 => next() | next(),
                _ => next(),
            })
            .collect()
    }

    /// Item 3 (issue 18): every level's bit-plane kernels equal the scalar references
    /// exactly, for widths of 1..1,024 words, 1..8 planes (and 16), batches whose length
    /// is not a multiple of the codes per register, and all-zero / all-one bits.
    #[test]
    fn item3_every_level_matches_scalar() {
        let mut next = xorshift(0x9e37_79b9_7f4a_7c15);
        for (t, &words) in WORDS.iter().enumerate() {
            for bq in (1..=8usize).chain([16]) {
                let kind = t + bq;
                let n = if words > 200 { 5 } else { 4 * 3 + (t + bq) % 4 };
                let codes = words_of(&mut next, n * words, kind);
                let planes = words_of(&mut next, bq * words, kind / 2 + 1);
                let mut want = vec![0u32; n];
                scalar_and_popcount_planes_batch(&codes, words, &planes, &mut want);
                for k in super::super::Kernels::supported() {
                    let name = k.level();
                    let bits = &k.bits;
                    let mut got = vec![u32::MAX; n];
                    bits.and_popcount_planes_batch(&codes, words, &planes, &mut got);
                    assert_eq!(got, want, "{name} batch words {words} bq {bq}");
                    for (i, code) in codes.chunks_exact(words).enumerate() {
                        assert_eq!(
                            bits.and_popcount_planes(code, &planes),
                            want[i],
                            "{name} words {words} bq {bq} code {i}"
                        );
                        assert_eq!(bits.popcount(code), scalar_popcount(code), "{name}");
                    }
                    // Short output, a partial trailing code and a partial plane: only
                    // whole codes and planes are read, as the reference does.
                    let mut short = vec![7u32; n + 2];
                    let mut ref_short = short.clone();
                    let cut = &codes[..codes.len() - (words > 1) as usize];
                    let ragged = &planes[..planes.len() + 1 - (bq > 1) as usize - 1];
                    scalar_and_popcount_planes_batch(cut, words, ragged, &mut ref_short);
                    bits.and_popcount_planes_batch(cut, words, ragged, &mut short);
                    assert_eq!(short, ref_short, "{name} ragged words {words} bq {bq}");
                }
                // The dispatched entry points.
                let mut got = vec![0u32; n];
                and_popcount_planes_batch(&codes, words, &planes, &mut got);
                assert_eq!(got, want);
            }
        }
        // Empty codes.
        for k in super::super::Kernels::supported() {
            let mut out = [5u32; 3];
            k.bits.and_popcount_planes_batch(&[], 0, &[1, 2], &mut out);
            assert_eq!(out, [0; 3]);
            assert_eq!(k.bits.and_popcount_planes(&[], &[1, 2]), 0);
            assert_eq!(k.bits.popcount(&[]), 0);
        }
    }

    /// Item 3 (issue 18): each x86 kernel, whether or not the table installs it, equals
    /// the scalar reference (so the choice between them can follow measurements).
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn item3_each_x86_kernel_matches_scalar() {
        if !SimdLevel::Avx2.is_supported() {
            eprintln!("AVX2 + POPCNT not available: x86 bit kernels not run");
            return;
        }
        let mut next = xorshift(0x1234_5678_9abc_def1);
        for (t, &words) in WORDS.iter().enumerate() {
            for bq in (1..=8usize).chain([16]) {
                let n = if words > 200 { 3 } else { 9 };
                let codes = words_of(&mut next, n * words, t + bq);
                let planes = words_of(&mut next, bq * words, t);
                let mut want = vec![0u32; n];
                scalar_and_popcount_planes_batch(&codes, words, &planes, &mut want);
                let mut got = vec![0u32; n];
                // SAFETY: AVX2 and POPCNT checked above; whole codes and planes.
                unsafe {
                    x86::batch_popcnt(&codes, words, &planes, &mut got);
                    assert_eq!(got, want, "popcnt batch words {words} bq {bq}");
                    x86::batch_avx2(&codes, words, &planes, &mut got);
                    assert_eq!(got, want, "avx2 batch words {words} bq {bq}");
                    for (code, &w) in codes.chunks_exact(words).zip(&want) {
                        assert_eq!(x86::planes_avx2(code, &planes), w, "avx2 words {words}");
                        assert_eq!(x86::planes_popcnt(code, &planes), w, "popcnt");
                        assert_eq!(x86::popcount_popcnt(code), scalar_popcount(code));
                    }
                }
            }
        }
    }
}
