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
type RowsFn = unsafe fn(&[u8], usize, usize, &[u64], &mut [u32], &mut [u32]);

/// The bit-code kernels of one SIMD level (part of the dispatch table
/// [`super::Kernels`]).
pub(crate) struct BitsKernels {
    planes: PlanesFn,
    batch: BatchFn,
    popcount: PopFn,
    rows: RowsFn,
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
            SimdLevel::Avx2 | SimdLevel::Avx512 => BitsKernels {
                planes: x86::planes_popcnt,
                batch: x86::batch_avx2,
                popcount: x86::popcount_popcnt,
                rows: x86::rows_popcnt,
            },
            #[cfg(target_arch = "x86_64")]
            SimdLevel::Avx512Vbmi => BitsKernels {
                planes: x86::planes_popcnt,
                batch: x86::batch_avx2,
                popcount: x86::popcount_popcnt,
                rows: x86::rows_vpopcnt,
            },
            _ => BitsKernels {
                planes: scalar_and_popcount_planes,
                batch: scalar_and_popcount_planes_batch,
                popcount: scalar_popcount,
                rows: scalar_and_popcount_rows,
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

    /// [`and_popcount_rows`] at this table's level.
    #[inline]
    pub(crate) fn and_popcount_rows(
        &self,
        rows: &[u8],
        stride: usize,
        plane_bytes: usize,
        planes: &[u64],
        sums: &mut [u32],
        pcs: &mut [u32],
    ) {
        let words = plane_bytes.div_ceil(8);
        let n = rows_in(rows.len(), stride, plane_bytes)
            .min(sums.len())
            .min(pcs.len());
        if words == 0 {
            sums[..n].fill(0);
            pcs[..n].fill(0);
            return;
        }
        let planes = &planes[..planes.len() - planes.len() % words];
        // SAFETY: the CPU supports this table's level (invariant of `super::Kernels`);
        // the kernels are safe code compiled for it.
        unsafe {
            (self.rows)(
                rows,
                stride,
                plane_bytes,
                planes,
                &mut sums[..n],
                &mut pcs[..n],
            )
        }
    }
}

/// Rows of `stride` bytes whose first `plane_bytes` lie in `len` bytes.
#[inline]
fn rows_in(len: usize, stride: usize, plane_bytes: usize) -> usize {
    if len < plane_bytes {
        0
    } else {
        // A zero stride reads the same row again and again.
        ((len - plane_bytes).checked_div(stride)).map_or(usize::MAX, |r| r + 1)
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

/// [`and_popcount_planes`] and [`popcount`] of row-major codes read in place: row `i`
/// starts at byte `i · stride` of `rows`, and its code is its first `plane_bytes` bytes
/// (little-endian words, zero-padded to `⌈plane_bytes / 8⌉` words — RaBitQ's sign plane
/// followed by the row's other bytes). Writes `sums[i]` and `pcs[i]` for every row whose
/// code lies in `rows`, up to the shorter output; entries past that are left alone.
/// `planes` holds whole planes of `⌈plane_bytes / 8⌉` words (a partial last plane is
/// ignored).
#[inline]
pub fn and_popcount_rows(
    rows: &[u8],
    stride: usize,
    plane_bytes: usize,
    planes: &[u64],
    sums: &mut [u32],
    pcs: &mut [u32],
) {
    super::active()
        .bits
        .and_popcount_rows(rows, stride, plane_bytes, planes, sums, pcs)
}

/// Word `k` of a code (its bytes `8k..8k + 8`, zero past its end).
#[inline(always)]
fn word_at(code: &[u8], k: usize) -> u64 {
    let mut b = [0u8; 8];
    let from = (8 * k).min(code.len());
    let to = (8 * k + 8).min(code.len());
    b[..to - from].copy_from_slice(&code[from..to]);
    u64::from_le_bytes(b)
}

/// The words of one row's code: its first `plane_bytes` bytes, zero-padded.
#[inline]
fn row_words(row: &[u8], words: &mut [u64]) {
    for (k, w) in words.iter_mut().enumerate() {
        *w = word_at(row, k);
    }
}

/// [`and_popcount_rows`] a word at a time, each word counted against every plane as it
/// is read (no buffer): the scalar reference, and the `popcnt` kernel's path for shapes
/// it does not unroll. `sums` and `pcs` hold one entry per row to count.
#[inline(always)]
fn rows_word_by_word(
    rows: &[u8],
    stride: usize,
    plane_bytes: usize,
    planes: &[u64],
    sums: &mut [u32],
    pcs: &mut [u32],
) {
    let words = plane_bytes.div_ceil(8);
    let bq = planes.len().checked_div(words).unwrap_or(0);
    for (i, (s, c)) in sums.iter_mut().zip(pcs.iter_mut()).enumerate() {
        let code = &rows[i * stride..i * stride + plane_bytes];
        let (mut total, mut ones) = (0u32, 0u32);
        for k in 0..words {
            let x = word_at(code, k);
            ones += x.count_ones();
            for j in 0..bq {
                total += (x & planes[j * words + k]).count_ones() << j;
            }
        }
        *s = total;
        *c = ones;
    }
}

/// Scalar reference for [`and_popcount_rows`] (whole rows and planes, as the safe
/// wrapper passes them).
pub fn scalar_and_popcount_rows(
    rows: &[u8],
    stride: usize,
    plane_bytes: usize,
    planes: &[u64],
    sums: &mut [u32],
    pcs: &mut [u32],
) {
    let n = rows_in(rows.len(), stride, plane_bytes)
        .min(sums.len())
        .min(pcs.len());
    rows_word_by_word(
        rows,
        stride,
        plane_bytes,
        planes,
        &mut sums[..n],
        &mut pcs[..n],
    );
}

/// The body of the hardware-`popcnt` [`and_popcount_rows`]: codes of 1 to 8 words with
/// 4 or 6 planes (RaBitQ's query bits) read as unaligned words straight from the rows
/// and counted with the planes held in registers; other shapes word by word.
#[inline(always)]
fn rows_words_outer(
    rows: &[u8],
    stride: usize,
    plane_bytes: usize,
    planes: &[u64],
    sums: &mut [u32],
    pcs: &mut [u32],
) {
    let words = plane_bytes.div_ceil(8);
    match planes.len() / words.max(1) {
        4 if words <= 8 => rows_planes::<4>(rows, stride, plane_bytes, planes, sums, pcs),
        6 if words <= 8 => rows_planes::<6>(rows, stride, plane_bytes, planes, sums, pcs),
        _ => rows_word_by_word(rows, stride, plane_bytes, planes, sums, pcs),
    }
}

/// [`rows_words_outer`] for `Q` planes and codes of 1 to 8 words.
#[inline(always)]
fn rows_planes<const Q: usize>(
    rows: &[u8],
    stride: usize,
    plane_bytes: usize,
    planes: &[u64],
    sums: &mut [u32],
    pcs: &mut [u32],
) {
    let (r, st, pb) = (rows, stride, plane_bytes);
    match plane_bytes.div_ceil(8) {
        1 => rows_fixed::<1, Q>(r, st, pb, planes, sums, pcs),
        2 => rows_fixed::<2, Q>(r, st, pb, planes, sums, pcs),
        3 => rows_fixed::<3, Q>(r, st, pb, planes, sums, pcs),
        4 => rows_fixed::<4, Q>(r, st, pb, planes, sums, pcs),
        5 => rows_fixed::<5, Q>(r, st, pb, planes, sums, pcs),
        6 => rows_fixed::<6, Q>(r, st, pb, planes, sums, pcs),
        7 => rows_fixed::<7, Q>(r, st, pb, planes, sums, pcs),
        _ => rows_fixed::<8, Q>(r, st, pb, planes, sums, pcs),
    }
}

/// [`rows_words_outer`] for `W` words and `Q` planes.
#[inline(always)]
fn rows_fixed<const W: usize, const Q: usize>(
    rows: &[u8],
    stride: usize,
    plane_bytes: usize,
    planes: &[u64],
    sums: &mut [u32],
    pcs: &mut [u32],
) {
    let p: [[u64; W]; Q] = std::array::from_fn(|j| std::array::from_fn(|k| planes[j * W + k]));
    // The last word holds `plane_bytes − 8 (W − 1)` bytes of the code; a whole-word read
    // of it takes the row's next bytes too, which the mask clears.
    let tail = plane_bytes - 8 * (W - 1);
    let mask = if tail >= 8 {
        u64::MAX
    } else {
        (1u64 << (8 * tail)) - 1
    };
    for (i, (s, c)) in sums.iter_mut().zip(pcs.iter_mut()).enumerate() {
        let at = i * stride;
        let mut x = [0u64; W];
        match rows.get(at..at + 8 * W) {
            Some(b) => {
                for (k, w) in x.iter_mut().enumerate() {
                    let bytes: [u8; 8] = b[8 * k..8 * k + 8].try_into().unwrap_or_default();
                    *w = u64::from_le_bytes(bytes);
                }
                x[W - 1] &= mask;
            }
            None => row_words(&rows[at..at + plane_bytes], &mut x),
        }
        let (mut total, mut ones) = (0u32, 0u32);
        for k in 0..W {
            ones += x[k].count_ones();
            for (j, pj) in p.iter().enumerate() {
                total += (x[k] & pj[k]).count_ones() << j;
            }
        }
        *s = total;
        *c = ones;
    }
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

    /// Item 3 (issue 18): the in-place row kernel of every level equals the scalar
    /// reference, and the reference equals the word kernels on the gathered codes: code
    /// widths of 1 to 70 bytes (partial last words), strides equal to the code (no gap),
    /// wider (RaBitQ's factor bytes) and odd, 1..8 planes, and a last row whose code ends
    /// the buffer (no whole-word read past it).
    #[test]
    fn item3_row_kernel_matches_scalar() {
        let mut next = xorshift(0x0bad_cafe_f00d_1234);
        for pb in (1..=20usize).chain([24, 31, 32, 47, 48, 64, 65, 70, 100, 127, 128, 129, 200]) {
            let words = pb.div_ceil(8);
            for bq in [1usize, 2, 3, 4, 5, 6, 8] {
                for stride in [pb, pb + 8, pb + 3, 2 * pb + 16] {
                    let n = 37;
                    // The last row's code ends the buffer.
                    let len = (n - 1) * stride + pb;
                    let rows: Vec<u8> = (0..len).map(|_| next() as u8).collect();
                    let planes = words_of(&mut next, bq * words, pb + bq);
                    let (mut want, mut want_pc) = (vec![0u32; n], vec![0u32; n]);
                    scalar_and_popcount_rows(&rows, stride, pb, &planes, &mut want, &mut want_pc);
                    for (i, (&w, &c)) in want.iter().zip(&want_pc).enumerate() {
                        let mut code = vec![0u64; words];
                        row_words(&rows[i * stride..i * stride + pb], &mut code);
                        assert_eq!(w, scalar_and_popcount_planes(&code, &planes));
                        assert_eq!(c, scalar_popcount(&code));
                    }
                    for k in super::super::Kernels::supported() {
                        let name = k.level();
                        let (mut got, mut got_pc) = (vec![u32::MAX; n + 3], vec![7u32; n + 3]);
                        k.bits
                            .and_popcount_rows(&rows, stride, pb, &planes, &mut got, &mut got_pc);
                        let at = format!("{name} pb {pb} bq {bq} stride {stride}");
                        assert_eq!(got[..n], want[..], "{at}");
                        assert_eq!(got_pc[..n], want_pc[..], "{at}");
                        // Outputs past the last row are left alone.
                        assert_eq!(got[n..], [u32::MAX; 3], "{at}");
                        assert_eq!(got_pc[n..], [7; 3], "{at}");
                    }
                }
            }
        }
        // No code bytes, or a buffer shorter than one code.
        for k in super::super::Kernels::supported() {
            let (mut s, mut c) = ([5u32; 2], [5u32; 2]);
            k.bits
                .and_popcount_rows(&[1, 2, 3], 3, 0, &[1], &mut s, &mut c);
            assert_eq!((s, c), ([0; 2], [0; 2]));
            let (mut s, mut c) = ([5u32; 2], [5u32; 2]);
            k.bits
                .and_popcount_rows(&[1, 2, 3], 8, 4, &[1], &mut s, &mut c);
            assert_eq!((s, c), ([5; 2], [5; 2]));
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
