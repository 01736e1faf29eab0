//! 4-bit PQ fast-scan (André, Kermarrec & Le Scouarnec, "Cache locality is not enough",
//! VLDB 2015; FAISS's `IndexPQFastScan`): look-up tables quantised to `u8` live in SIMD
//! registers and a byte shuffle (`pshufb`) performs 16/32/64 look-ups at once.
//!
//! **Layout.** Vectors are stored in blocks of [`BLOCK`] = 32. Sub-quantizers are taken
//! in pairs; a block stores, per pair `p`, 32 bytes: 16 for sub-quantizer `2p` (byte `i`
//! = code of vector `i` in the low nibble, of vector `i + 16` in the high nibble), then
//! 16 for `2p + 1`. The number of pairs is padded to an even count (zero codes, zero
//! tables) so AVX-512 can take two pairs per 64-byte load.
//!
//! **Tables.** Per query, pair `p` has 32 table bytes: the 16 entries of `2p`, then of
//! `2p + 1` — one 256-bit register whose 128-bit lanes are the two tables, which is what
//! `vpshufb`'s per-lane shuffle needs.
//!
//! **Accumulation.** Shuffle results are `u8`; they are summed as `u16` (even and odd
//! bytes separately), so up to 257 sub-quantizers cannot overflow.

use super::SimdLevel;

/// Vectors per block.
pub const BLOCK: usize = 32;

/// Pairs of sub-quantizers stored per block for `m` sub-quantizers (padded to even).
pub fn padded_pairs(m: usize) -> usize {
    m.div_ceil(2).next_multiple_of(2)
}

/// Bytes per block for `m` sub-quantizers.
pub fn block_bytes(m: usize) -> usize {
    padded_pairs(m) * 32
}

/// Packs `n × m` 4-bit indices (one per byte) into the block layout (`n` padded to a
/// multiple of 32 with zero codes).
pub fn pack_blocks(idx: &[u8], m: usize) -> Vec<u8> {
    let n = idx.len() / m.max(1);
    let nblocks = n.div_ceil(BLOCK);
    let bb = block_bytes(m);
    let mut out = vec![0u8; nblocks * bb];
    for (v, code) in idx.chunks_exact(m).enumerate() {
        let (b, i) = (v / BLOCK, v % BLOCK);
        for (s, &c) in code.iter().enumerate() {
            let at = b * bb + (s / 2) * 32 + (s % 2) * 16 + (i % 16);
            out[at] |= (c & 0x0F) << (4 * (i / 16));
        }
    }
    out
}

/// Index of sub-quantizer `s` of vector `i` (0..32) in a packed block.
#[inline]
pub fn code_in_block(block: &[u8], s: usize, i: usize) -> usize {
    let byte = block[(s / 2) * 32 + (s % 2) * 16 + (i % 16)];
    ((byte >> (4 * (i / 16))) & 0x0F) as usize
}

/// Float ADC distance of vector `r` of packed `blocks` with the table `table`
/// (`m × 16`): the exact score the quantised kernels approximate.
#[inline]
pub fn adc_at(table: &[f32], blocks: &[u8], m: usize, r: usize) -> f32 {
    let block = &blocks[(r / BLOCK) * block_bytes(m)..];
    // Sub-quantizer `s` of lane `i` is the nibble `i / 16` of byte `16 s + i % 16`
    // (`code_in_block`). Summed in sub-quantizer order, one chain: the returned
    // distances are bit-for-bit those of the other float-ADC paths and of the golden
    // files (four chains would be faster by a few per cent and differ in the last bit).
    let (lane, shift) = (r % 16, 4 * ((r % BLOCK) / 16));
    let (rows, _) = table[..m * 16].as_chunks::<16>();
    let (codes, _) = block[..m * 16].as_chunks::<16>();
    rows.iter()
        .zip(codes)
        .map(|(t, c)| t[usize::from((c[lane] >> shift) & 0x0F)])
        .sum()
}

/// Lays out quantised tables (`m × 16` bytes, sub-quantizer-major) for the kernels
/// (`padded_pairs(m) × 32` bytes).
pub fn pack_lut(lut: &[u8], m: usize, out: &mut Vec<u8>) {
    out.clear();
    out.resize(padded_pairs(m) * 32, 0);
    for s in 0..m {
        out[(s / 2) * 32 + (s % 2) * 16..][..16].copy_from_slice(&lut[s * 16..s * 16 + 16]);
    }
}

/// Quantises a float ADC table (`m × 16`, sub-quantizer-major) to bytes for the
/// kernels: per sub-quantizer a bias (its minimum), one scale common to all, so that
/// `Σ_s table[s][j_s] ≈ bias + Σ_s q8[s][j_s] / scale`, each term off by at most
/// `0.5 / scale`. Returns `(bias, scale)`.
pub fn quantize_table(table: &[f32], q8: &mut Vec<u8>) -> (f32, f32) {
    super::active().fastscan.quantize_table(table, q8)
}

/// The table of one IVF list for one query, built, quantised and laid out in one
/// pass: `table[i] = pre[i] + 2·qt[i]` (the list's precomputed terms and the query's
/// −⟨q_s, C_sj⟩, both `m × 16`), then [`quantize_table`] of it into `lut` in the
/// [`pack_lut`] layout. Returns `(bias, scale)`; equal to those three steps in turn,
/// except that the bias sums the row minima in [`list_bias`]'s order (a few ulps from
/// [`quantize_table`]'s row order: far inside the unit of float error that the scans'
/// rounding bound allows).
pub fn list_lut(pre: &[f32], qt: &[f32], table: &mut Vec<f32>, lut: &mut Vec<u8>) -> (f32, f32) {
    assert!(
        pre.len() == qt.len() && pre.len().is_multiple_of(16),
        "list tables of {} and {} entries",
        pre.len(),
        qt.len()
    );
    super::active().fastscan.list_lut(pre, qt, table, lut)
}

/// Portable [`list_lut`]: the table, then [`quantize_table`] and [`pack_lut`].
pub fn list_lut_portable(
    pre: &[f32],
    qt: &[f32],
    table: &mut Vec<f32>,
    lut: &mut Vec<u8>,
) -> (f32, f32) {
    table.clear();
    table.extend(pre.iter().zip(qt).map(|(x, y)| x + 2.0 * y));
    // The [`pack_lut`] layout is the sub-quantizers' 16-byte rows in order, padded with
    // zero rows: quantised in place, no intermediate buffer on this per-list path.
    let r = quantize_rows_by::<16>(table, lut, list_bias);
    lut.resize(padded_pairs(table.len() / 16) * 32, 0);
    r
}

type ListLutFn = unsafe fn(&[f32], &[f32], &mut Vec<f32>, &mut Vec<u8>) -> (f32, f32);
type QuantizeFn = unsafe fn(&[f32], &mut Vec<u8>) -> (f32, f32);
type BlockFn = unsafe fn(&[u8], &[u8], usize, u16, &mut [u16; BLOCK]) -> u32;
type BlocksFn = unsafe fn(&[u8], &[u8], usize, u16, &mut [u16], &mut [u32]);
type MultiFn = unsafe fn(&[&[u8]; NQ], &[u8], usize, &[u16; NQ], &mut [u16], &mut [u32]);

/// The fast-scan kernels of one SIMD level (part of the dispatch table
/// [`super::Kernels`]).
pub(crate) struct FastScanKernels {
    quantize: QuantizeFn,
    list_lut: ListLutFn,
    block: BlockFn,
    blocks: BlocksFn,
    multi: MultiFn,
}

impl FastScanKernels {
    /// The kernels of `level`.
    ///
    /// # Safety
    /// The result's methods run code compiled for `level`: the caller must only let them
    /// be called on a CPU that supports `level`.
    pub(super) const unsafe fn for_level(level: SimdLevel) -> FastScanKernels {
        match level {
            #[cfg(target_arch = "x86_64")]
            SimdLevel::Avx2 => FastScanKernels {
                quantize: x86::quantize_avx2,
                list_lut: x86::list_lut_avx2,
                block: x86::block_avx2,
                blocks: x86::blocks_avx2,
                multi: x86::multi_avx2,
            },
            #[cfg(target_arch = "x86_64")]
            SimdLevel::Avx512 => FastScanKernels {
                quantize: x86::quantize_avx512,
                list_lut: x86::list_lut_avx512,
                block: x86::block_avx512,
                blocks: x86::blocks_avx512,
                multi: x86::multi_avx512,
            },
            #[cfg(target_arch = "x86_64")]
            SimdLevel::Avx512Vbmi => FastScanKernels {
                quantize: x86::quantize_avx512,
                list_lut: x86::list_lut_avx512,
                block: vbmi::block_vbmi,
                blocks: vbmi::blocks_vbmi,
                multi: vbmi::multi_vbmi,
            },
            _ => FastScanKernels {
                quantize: quantize_rows_portable::<16>,
                list_lut: list_lut_portable,
                block: scalar_block,
                blocks: scalar_blocks,
                multi: multi_scalar,
            },
        }
    }

    /// [`quantize_table`] at this table's level.
    #[inline]
    pub(crate) fn quantize_table(&self, table: &[f32], q8: &mut Vec<u8>) -> (f32, f32) {
        // SAFETY: the CPU supports this table's level (invariant of `super::Kernels`,
        // which holds this table); the quantisers read whole 16-entry rows of `table`.
        unsafe { (self.quantize)(table, q8) }
    }

    /// [`list_lut`] at this table's level (lengths checked by `list_lut`).
    #[inline]
    pub(crate) fn list_lut(
        &self,
        pre: &[f32],
        qt: &[f32],
        table: &mut Vec<f32>,
        lut: &mut Vec<u8>,
    ) -> (f32, f32) {
        // SAFETY: the CPU supports this table's level (as in `quantize_table`); the
        // kernels read whole 16-entry rows of `pre` and `qt`, of equal lengths.
        unsafe { (self.list_lut)(pre, qt, table, lut) }
    }

    /// [`scan_block`] at this table's level.
    #[inline]
    pub(crate) fn scan_block(
        &self,
        lut: &[u8],
        block: &[u8],
        pairs: usize,
        thr: u16,
        out: &mut [u16; BLOCK],
    ) -> u32 {
        assert!(lut.len() >= pairs * 32 && block.len() >= pairs * 32 && pairs.is_multiple_of(2));
        // SAFETY: the CPU supports this table's level (as in `quantize_table`); the
        // kernels read `pairs · 32` bytes of `lut` and `block`, checked above.
        unsafe { (self.block)(lut, block, pairs, thr, out) }
    }

    /// [`scan_blocks`] at this table's level.
    #[inline]
    pub(crate) fn scan_blocks(
        &self,
        lut: &[u8],
        blocks: &[u8],
        pairs: usize,
        thr: u16,
        sums: &mut [u16],
        masks: &mut [u32],
    ) {
        let nb = masks.len();
        assert!(
            lut.len() >= pairs * 32
                && blocks.len() >= nb * pairs * 32
                && sums.len() >= nb * BLOCK
                && pairs.is_multiple_of(2)
        );
        // SAFETY: the CPU supports this table's level (as in `quantize_table`); the
        // kernels read `pairs · 32` bytes of `lut` and of each of the `nb` blocks and
        // write `nb · 32` sums, checked above.
        unsafe { (self.blocks)(lut, blocks, pairs, thr, sums, masks) }
    }

    /// [`scan_blocks_multi`] at this table's level.
    #[inline]
    pub(crate) fn scan_blocks_multi(
        &self,
        luts: &[&[u8]; NQ],
        blocks: &[u8],
        pairs: usize,
        thr: &[u16; NQ],
        sums: &mut [u16],
        masks: &mut [u32],
    ) {
        let nb = masks.len() / NQ;
        assert!(
            luts.iter().all(|l| l.len() >= pairs * 32)
                && blocks.len() >= nb * pairs * 32
                && sums.len() >= NQ * nb * BLOCK
                && masks.len() == NQ * nb
                && pairs.is_multiple_of(2)
        );
        // SAFETY: as in `scan_blocks`, for each of the `NQ` tables.
        unsafe { (self.multi)(luts, blocks, pairs, thr, sums, masks) }
    }
}

/// [`quantize_table`] for tables of `K` entries per sub-quantizer (a multiple of 16:
/// 16 for 4-bit codes, 256 for 8-bit ones), in portable code; the SIMD variants compile
/// this same body with wider instruction sets enabled, and `K` known at compile time
/// unrolls the per-row loops.
#[inline(always)]
pub fn quantize_rows_portable<const K: usize>(table: &[f32], q8: &mut Vec<u8>) -> (f32, f32) {
    quantize_rows_by::<K>(table, q8, |lows| lows.iter().fold(0.0, |a, &l| a + l))
}

/// The lane of a 16-lane vector that holds row `r` (of 16) of a list table's row
/// minima in [`list_lut`]'s AVX-512 form: lane `4k + j` holds row `k + 4j` (the order a
/// four-round butterfly of 16 rows leaves them in).
#[inline]
pub(crate) const fn lane_of(r: usize) -> usize {
    4 * (r % 4) + r / 4
}

/// The bias of a list table ([`list_lut`]): the sum of its row minima `lows`, in the
/// order every SIMD level uses — 16 running sums (row `r` of each group of 16 into lane
/// [`lane_of`]`(r)`, groups in turn), then halves added pairwise (lanes `i + 8`, `i + 4`,
/// `i + 2`, `i + 1` into lane `i`). Independent sums instead of one chain of `m`
/// additions: the chain was a fifth of the AVX-512 kernel's time.
#[inline(always)]
pub(crate) fn list_bias(lows: &[f32]) -> f32 {
    let mut acc = [0.0f32; 16];
    for group in lows.chunks(16) {
        for (r, &l) in group.iter().enumerate() {
            acc[lane_of(r)] += l;
        }
    }
    // (The AVX-512 kernel writes this tree with intrinsics — calling this on its
    // stored lane sums cost 2–5 % of `list_lut`; `list_lut_equals_build_quantise_pack`
    // holds the two to the same bits.)
    let a: [f32; 8] = std::array::from_fn(|i| acc[i] + acc[i + 8]);
    let b: [f32; 4] = std::array::from_fn(|i| a[i] + a[i + 4]);
    (b[0] + b[2]) + (b[1] + b[3])
}

/// [`quantize_rows_portable`] with the row minima summed by `sum` (row order there,
/// [`list_bias`] for list tables).
#[inline(always)]
fn quantize_rows_by<const K: usize>(
    table: &[f32],
    q8: &mut Vec<u8>,
    sum: impl FnOnce(&[f32]) -> f32,
) -> (f32, f32) {
    const {
        assert!(
            K > 0 && K.is_multiple_of(16),
            "rows must hold a multiple of 16 entries"
        )
    };
    let ksub = K;
    // Per sub-quantizer minimum and span over fixed 16-lane chunks (vectorised; this runs
    // once per query and, in IVF, once per probed list).
    let mut span = 0.0f32;
    // At most 256 sub-quantizers on the stack; larger tables fall back to a Vec.
    let mut stack = [0.0f32; 256];
    let mut heap_lows = Vec::new();
    let nsub = table.len() / ksub;
    let lows: &mut [f32] = if nsub <= 256 {
        &mut stack[..nsub]
    } else {
        heap_lows.resize(nsub, 0.0);
        &mut heap_lows
    };
    // Tree reductions with plain comparisons (no NaN bookkeeping: tables are finite),
    // which compile to packed min/max instead of a 16-long dependency chain.
    #[inline(always)]
    fn tree(t: &[f32; 16], pick: impl Fn(f32, f32) -> f32) -> f32 {
        let a: [f32; 8] = std::array::from_fn(|i| pick(t[i], t[i + 8]));
        let b: [f32; 4] = std::array::from_fn(|i| pick(a[i], a[i + 4]));
        pick(pick(b[0], b[2]), pick(b[1], b[3]))
    }
    let min = |a: f32, b: f32| if a < b { a } else { b };
    let max = |a: f32, b: f32| if a > b { a } else { b };
    for (row, low) in table.chunks_exact(ksub).zip(lows.iter_mut()) {
        let (mut lo, mut hi) = (f32::INFINITY, f32::NEG_INFINITY);
        for t in row.chunks_exact(16) {
            let t: &[f32; 16] = t.try_into().expect("16 entries");
            lo = min(lo, tree(t, min));
            hi = max(hi, tree(t, max));
        }
        *low = lo;
        span = span.max(hi - lo);
    }
    let bias = sum(lows);
    let scale = if span > 0.0 { 255.0 / span } else { 1.0 };
    q8.clear();
    q8.resize(nsub * ksub, 0);
    for ((out, row), &lo) in q8
        .chunks_exact_mut(ksub)
        .zip(table.chunks_exact(ksub))
        .zip(lows.iter())
    {
        for (out, t) in out.chunks_exact_mut(16).zip(row.chunks_exact(16)) {
            let out: &mut [u8; 16] = out.try_into().expect("16 entries");
            let t: &[f32; 16] = t.try_into().expect("16 entries");
            for (o, &v) in out.iter_mut().zip(t) {
                // Non-negative, so adding ½ and truncating rounds to nearest. Clamped
                // first (NaN becomes 255: `min` returns the other operand), so the
                // unchecked conversion vectorises where a saturating `as u8` would not.
                #[allow(clippy::manual_clamp)] // `clamp` would keep a NaN
                let x = ((v - lo) * scale + 0.5).min(255.0).max(0.0);
                // SAFETY: `x` is finite and within [0, 255].
                *o = unsafe { x.to_int_unchecked::<i32>() } as u8;
            }
        }
    }
    (bias, scale)
}

/// [`scan_block`] over `masks.len()` consecutive blocks in one call (no per-block
/// dispatch): `sums` receives 32 sums per block, `masks` one mask per block.
#[inline]
pub fn scan_blocks(
    lut: &[u8],
    blocks: &[u8],
    pairs: usize,
    thr: u16,
    sums: &mut [u16],
    masks: &mut [u32],
) {
    super::active()
        .fastscan
        .scan_blocks(lut, blocks, pairs, thr, sums, masks)
}

/// Queries scanned together by [`scan_blocks_multi`].
pub const NQ: usize = 4;

/// [`scan_blocks`] for [`NQ`] queries at once (FAISS's query-blocked fast-scan): each
/// code vector is loaded and split into nibbles once for all the queries. `sums` is
/// query-major (`NQ × nb × 32`), `masks` too (`NQ × nb`), with `nb = masks.len() / NQ`.
#[inline]
pub fn scan_blocks_multi(
    luts: &[&[u8]; NQ],
    blocks: &[u8],
    pairs: usize,
    thr: &[u16; NQ],
    sums: &mut [u16],
    masks: &mut [u32],
) {
    super::active()
        .fastscan
        .scan_blocks_multi(luts, blocks, pairs, thr, sums, masks)
}

/// Reference for [`scan_blocks_multi`]: [`scan_blocks`] once per query.
pub fn multi_by_query(
    luts: &[&[u8]; NQ],
    blocks: &[u8],
    pairs: usize,
    thr: &[u16; NQ],
    sums: &mut [u16],
    masks: &mut [u32],
) {
    per_query(luts, thr, sums, masks, |lut, thr, sums, masks| {
        scan_blocks(lut, blocks, pairs, thr, sums, masks)
    })
}

/// The scalar [`scan_blocks_multi`]: [`scalar_blocks`] once per query.
fn multi_scalar(
    luts: &[&[u8]; NQ],
    blocks: &[u8],
    pairs: usize,
    thr: &[u16; NQ],
    sums: &mut [u16],
    masks: &mut [u32],
) {
    per_query(luts, thr, sums, masks, |lut, thr, sums, masks| {
        scalar_blocks(lut, blocks, pairs, thr, sums, masks)
    })
}

/// Runs `scan(lut, thr, sums, masks)` for each of the [`NQ`] queries on its share of the
/// query-major `sums` and `masks`.
#[inline(always)]
fn per_query(
    luts: &[&[u8]; NQ],
    thr: &[u16; NQ],
    sums: &mut [u16],
    masks: &mut [u32],
    mut scan: impl FnMut(&[u8], u16, &mut [u16], &mut [u32]),
) {
    let nb = masks.len() / NQ;
    if nb == 0 {
        return;
    }
    for (j, (s, m)) in sums
        .chunks_exact_mut(nb * BLOCK)
        .zip(masks.chunks_exact_mut(nb))
        .enumerate()
        .take(NQ)
    {
        scan(luts[j], thr[j], s, m);
    }
}

/// Scalar reference for [`scan_blocks`].
pub fn scalar_blocks(
    lut: &[u8],
    blocks: &[u8],
    pairs: usize,
    thr: u16,
    sums: &mut [u16],
    masks: &mut [u32],
) {
    assert!(sums.len() >= masks.len() * BLOCK, "sums too short");
    each_block(blocks, pairs, sums, masks, |block, out| {
        scalar_block(lut, block, pairs, thr, out)
    })
}

/// Runs the one-block kernel `scan(block, out)` on each of the `masks.len()` blocks of
/// `blocks` (`pairs · 32` bytes each), with its share of `sums` and its mask.
#[inline(always)]
fn each_block(
    blocks: &[u8],
    pairs: usize,
    sums: &mut [u16],
    masks: &mut [u32],
    mut scan: impl FnMut(&[u8], &mut [u16; BLOCK]) -> u32,
) {
    let bb = pairs * 32;
    for (i, (mask, out)) in masks
        .iter_mut()
        .zip(sums.chunks_exact_mut(BLOCK))
        .enumerate()
    {
        let out: &mut [u16; BLOCK] = out.try_into().expect("32");
        *mask = scan(&blocks[i * bb..(i + 1) * bb], out);
    }
}

/// Sums the tables over one block: `out[i] = Σ_s lut_s[code(i, s)]` for its 32 vectors,
/// and returns a mask with bit `i` set when `out[i] <= thr`. `lut` and `block` are in
/// the packed layouts (`pairs` padded pairs).
#[inline]
pub fn scan_block(lut: &[u8], block: &[u8], pairs: usize, thr: u16, out: &mut [u16; BLOCK]) -> u32 {
    super::active()
        .fastscan
        .scan_block(lut, block, pairs, thr, out)
}

/// Scalar reference for [`scan_block`].
pub fn scalar_block(
    lut: &[u8],
    block: &[u8],
    pairs: usize,
    thr: u16,
    out: &mut [u16; BLOCK],
) -> u32 {
    let mut mask = 0u32;
    for (i, o) in out.iter_mut().enumerate() {
        let mut sum = 0u16;
        for s in 0..pairs * 2 {
            let t = &lut[(s / 2) * 32 + (s % 2) * 16..][..16];
            sum += t[code_in_block(block, s, i)] as u16;
        }
        *o = sum;
        mask |= ((sum <= thr) as u32) << i;
    }
    mask
}

/// Dispatches on the number of sub-quantizer pairs to the kernel unrolled for it
/// (`$f::<Q>` with `Q = pairs / 2` 64-byte steps per block: M = 8, 16, 24, 32, 48, 64,
/// 96, 128), or to `$other` for any other count. One list for every level's block and
/// multi-query kernels.
#[cfg(target_arch = "x86_64")]
macro_rules! by_pairs {
    ($pairs:expr, $f:ident($($arg:expr),*), $other:expr) => {
        match $pairs {
            4 => $f::<2>($($arg),*),
            8 => $f::<4>($($arg),*),
            12 => $f::<6>($($arg),*),
            16 => $f::<8>($($arg),*),
            24 => $f::<12>($($arg),*),
            32 => $f::<16>($($arg),*),
            48 => $f::<24>($($arg),*),
            64 => $f::<32>($($arg),*),
            _ => $other,
        }
    };
}

#[cfg(target_arch = "x86_64")]
mod vbmi;
#[cfg(target_arch = "x86_64")]
mod x86;

/// Test helper: `quantize` (a dispatching table quantiser for `K`-entry rows) agrees
/// with [`quantize_rows_portable`] — same scale, bias to float precision, bytes equal
/// but for FMA rounding of exact halves — and every byte is within half a unit of its
/// scaled value.
#[cfg(test)]
pub(crate) fn assert_quantiser_matches_portable<const K: usize>(
    quantize: impl Fn(&[f32], &mut Vec<u8>) -> (f32, f32),
    seed: u64,
    ms: &[usize],
) {
    use crate::rng::{RngExt, seeded};
    let mut rng = seeded(seed);
    for &m in ms {
        let table: Vec<f32> = (0..m * K)
            .map(|_| rng.random::<f32>() * 50.0 - 5.0)
            .collect();
        let (mut a, mut b) = (Vec::new(), Vec::new());
        let (ba, sa) = quantize(&table, &mut a);
        let (bb, sb) = quantize_rows_portable::<K>(&table, &mut b);
        assert_eq!(sa, sb);
        assert!((ba - bb).abs() <= 1e-4 * bb.abs().max(1.0), "{ba} vs {bb}");
        // FMA may round (v − lo)·scale + ½ differently at an exact .5 boundary.
        let off = a.iter().zip(&b).filter(|(x, y)| x != y).count();
        assert!(a.iter().zip(&b).all(|(x, y)| x.abs_diff(*y) <= 1), "m {m}");
        assert!(off <= table.len() / 1000, "m {m}: {off} differ");
        // Every entry within half a unit (plus float error) of its scaled value.
        for (s, (row, q)) in table.chunks_exact(K).zip(a.chunks_exact(K)).enumerate() {
            let lo = row.iter().copied().fold(f32::INFINITY, f32::min);
            for (j, (&v, &q)) in row.iter().zip(q).enumerate() {
                assert!(
                    ((v - lo) * sa - q as f32).abs() <= 0.5 + 1e-3,
                    "m {m} s {s} j {j}"
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::Kernels;
    use crate::rng::{RngExt, seeded};

    #[test]
    fn table_quantisation_equals_portable_code() {
        for k in Kernels::supported() {
            let quantize = |t: &[f32], q8: &mut Vec<u8>| k.fastscan.quantize_table(t, q8);
            assert_quantiser_matches_portable::<16>(quantize, 6, &[1, 7, 32, 300]);
        }
        assert_quantiser_matches_portable::<16>(quantize_table, 6, &[1, 7, 32, 300]);
    }

    /// An infinite table entry makes the span infinite and the scale 0: that entry's
    /// scaled value is NaN, which every level clamps to 255 as the portable code does
    /// (a plain truncation would give 0 or wrap), and every finite entry quantises to 0.
    #[test]
    fn infinite_entries_quantise_as_the_portable_code() {
        let mut rng = seeded(13);
        for m in [1usize, 7, 32, 33] {
            let mut table: Vec<f32> = (0..m * 16).map(|_| rng.random::<f32>() * 9.0).collect();
            table[5] = f32::INFINITY;
            let mut want = vec![0u8; m * 16];
            want[5] = 255;
            let mut q8 = Vec::new();
            assert_eq!(quantize_rows_portable::<16>(&table, &mut q8).1, 0.0);
            assert_eq!(q8, want, "portable, m {m}");
            let zeros = vec![0.0f32; m * 16];
            let (mut t, mut lut) = (Vec::new(), Vec::new());
            list_lut_portable(&table, &zeros, &mut t, &mut lut);
            let mut packed = Vec::new();
            pack_lut(&want, m, &mut packed);
            assert_eq!(lut, packed, "portable list table, m {m}");
            for k in Kernels::supported() {
                let mut q = vec![7u8; 4000];
                assert_eq!(k.fastscan.quantize_table(&table, &mut q).1, 0.0);
                assert_eq!(q, want, "m {m}");
                let (mut t, mut l) = (Vec::new(), vec![7u8; 4000]);
                assert_eq!(k.fastscan.list_lut(&table, &zeros, &mut t, &mut l).1, 0.0);
                assert_eq!(l, packed, "m {m}");
            }
        }
    }

    /// The fused list table (build, quantise, lay out) of every level equals the three
    /// portable steps: the float table bit for bit, the same bias and scale, bytes off
    /// by at most one (FMA rounding at exact halves) and the padding zero.
    #[test]
    fn list_lut_equals_build_quantise_pack() {
        let mut rng = seeded(8);
        for m in [1usize, 7, 16, 17, 32, 33, 64, 300] {
            let pre: Vec<f32> = (0..m * 16).map(|_| rng.random::<f32>() * 30.0).collect();
            let qt: Vec<f32> = (0..m * 16)
                .map(|_| rng.random::<f32>() * 20.0 - 10.0)
                .collect();
            let (mut t0, mut l0) = (Vec::new(), Vec::new());
            let (b0, s0) = list_lut_portable(&pre, &qt, &mut t0, &mut l0);
            let want: Vec<f32> = pre.iter().zip(&qt).map(|(x, y)| x + 2.0 * y).collect();
            assert_eq!(t0, want);
            // The scale of quantising the table alone; the bias within float error of
            // its row-order sum (`list_bias` orders the additions differently).
            // (Tolerance: the error bound of summing the `m` row minima in any order —
            // not of the whole table — so a sum missing a row minimum fails.)
            let (row_bias, row_scale) = quantize_rows_portable::<16>(&t0, &mut Vec::new());
            assert_eq!(s0, row_scale, "m {m}");
            let lows = t0
                .chunks_exact(16)
                .map(|r| r.iter().copied().fold(f32::INFINITY, f32::min));
            let tol = m as f32 * f32::EPSILON * lows.map(f32::abs).sum::<f32>();
            assert!((b0 - row_bias).abs() <= tol, "m {m}: {b0} vs {row_bias}");
            assert_eq!(l0.len(), padded_pairs(m) * 32);
            let mut levels: Vec<_> = Kernels::supported()
                .map(|k| {
                    // (Stale bytes past the new table: its padding must be zeroed.)
                    let (mut t, mut l) = (vec![9.0; 3], vec![7u8; 20_000]);
                    let r = k.fastscan.list_lut(&pre, &qt, &mut t, &mut l);
                    (r, t, l)
                })
                .collect();
            let (mut t, mut l) = (Vec::new(), Vec::new());
            levels.push((list_lut(&pre, &qt, &mut t, &mut l), t, l));
            for ((b, s), t, l) in levels {
                assert_eq!(t, t0, "m {m}");
                assert_eq!(s, s0, "m {m}");
                assert_eq!(b.to_bits(), b0.to_bits(), "m {m}");
                assert_eq!(l.len(), l0.len(), "m {m}");
                assert!(l[m * 16..].iter().all(|&x| x == 0), "m {m}: padding");
                let off = l.iter().zip(&l0).filter(|(x, y)| x != y).count();
                assert!(l.iter().zip(&l0).all(|(x, y)| x.abs_diff(*y) <= 1), "m {m}");
                assert!(off <= (m * 16).div_ceil(500), "m {m}: {off} differ");
            }
        }
    }

    #[test]
    fn layout_round_trip() {
        let mut rng = seeded(1);
        for m in [2usize, 4, 6, 8, 32] {
            let n = 70;
            let idx: Vec<u8> = (0..n * m).map(|_| rng.random_range(0..16u8)).collect();
            let packed = pack_blocks(&idx, m);
            assert_eq!(packed.len(), 3 * block_bytes(m));
            for v in 0..n {
                let block = &packed[(v / 32) * block_bytes(m)..];
                for s in 0..m {
                    assert_eq!(code_in_block(block, s, v % 32), idx[v * m + s] as usize);
                }
            }
        }
    }

    /// The multi-query kernel of every level equals one scalar scan per query, sums and
    /// masks, for sub-quantizer counts with and without an unrolled kernel.
    #[test]
    fn multi_query_matches_per_query() {
        let mut rng = seeded(3);
        for m in [8usize, 16, 24, 32, 48, 64, 96, 128, 6, 12, 100] {
            let n = 32 * 5 + 7;
            let idx: Vec<u8> = (0..n * m).map(|_| rng.random_range(0..16u8)).collect();
            let blocks = pack_blocks(&idx, m);
            let nb = blocks.len() / block_bytes(m);
            let pairs = padded_pairs(m);
            let luts: Vec<Vec<u8>> = (0..NQ)
                .map(|_| {
                    let raw: Vec<u8> = (0..m * 16).map(|_| rng.random::<u8>()).collect();
                    let mut l = Vec::new();
                    pack_lut(&raw, m, &mut l);
                    l
                })
                .collect();
            let refs: [&[u8]; NQ] = std::array::from_fn(|j| luts[j].as_slice());
            let thr = [0u16, 60 * m as u16, 128 * m as u16, u16::MAX];
            // The definition: the scalar scan once per query.
            let (mut want, mut wm) = (vec![0u16; NQ * nb * BLOCK], vec![0u32; NQ * nb]);
            for j in 0..NQ {
                scalar_blocks(
                    refs[j],
                    &blocks,
                    pairs,
                    thr[j],
                    &mut want[j * nb * BLOCK..(j + 1) * nb * BLOCK],
                    &mut wm[j * nb..(j + 1) * nb],
                );
            }
            for k in Kernels::supported() {
                let (mut s1, mut m1) = (vec![0u16; NQ * nb * BLOCK], vec![0u32; NQ * nb]);
                k.fastscan
                    .scan_blocks_multi(&refs, &blocks, pairs, &thr, &mut s1, &mut m1);
                assert_eq!(s1, want, "{} M = {m}", k.level());
                assert_eq!(m1, wm, "{} M = {m}", k.level());
            }
            let (mut s1, mut m1) = (vec![0u16; NQ * nb * BLOCK], vec![0u32; NQ * nb]);
            scan_blocks_multi(&refs, &blocks, pairs, &thr, &mut s1, &mut m1);
            assert_eq!((&s1, &m1), (&want, &wm), "dispatched M = {m}");
            multi_by_query(&refs, &blocks, pairs, &thr, &mut s1, &mut m1);
            assert_eq!((&s1, &m1), (&want, &wm), "per query M = {m}");
        }
    }

    /// Every level's block kernels equal the scalar reference, sums and masks, including
    /// sums near the u16 limit and thresholds at the extremes.
    #[test]
    fn simd_matches_scalar_reference() {
        let mut rng = seeded(2);
        for m in [2usize, 4, 6, 16, 24, 32, 48, 64, 96, 128, 256] {
            let idx: Vec<u8> = (0..32 * m).map(|_| rng.random_range(0..16u8)).collect();
            let block = pack_blocks(&idx, m);
            let raw: Vec<u8> = if m == 256 {
                vec![255; m * 16]
            } else {
                (0..m * 16).map(|_| rng.random::<u8>()).collect()
            };
            let mut lut = Vec::new();
            pack_lut(&raw, m, &mut lut);
            let pairs = padded_pairs(m);
            for thr in [0u16, 1000, 2000, 4000, u16::MAX] {
                let mut want = [0u16; BLOCK];
                let wm = scalar_block(&lut, &block, pairs, thr, &mut want);
                // The reference is itself the definition.
                for (i, &w) in want.iter().enumerate() {
                    let s: u32 = (0..m)
                        .map(|s| raw[s * 16 + idx[i * m + s] as usize] as u32)
                        .sum();
                    assert_eq!(w as u32, s);
                }
                let two = [block.clone(), block.clone()].concat();
                for k in Kernels::supported() {
                    let name = k.level();
                    let mut got = [0u16; BLOCK];
                    let gm = k.fastscan.scan_block(&lut, &block, pairs, thr, &mut got);
                    assert_eq!(got, want, "{name} m={m}");
                    assert_eq!(gm, wm, "{name} m={m} thr={thr}");
                    // The multi-block kernel over the same block twice.
                    let mut sums = vec![0u16; 2 * BLOCK];
                    let mut masks = [0u32; 2];
                    k.fastscan
                        .scan_blocks(&lut, &two, pairs, thr, &mut sums, &mut masks);
                    assert_eq!(masks, [wm, wm], "{name} m={m} thr={thr}");
                    assert_eq!(&sums[..BLOCK], &want[..], "{name} m={m}");
                    assert_eq!(&sums[BLOCK..], &want[..], "{name} m={m}");
                }
                // And the dispatched entry points.
                let mut got = [0u16; BLOCK];
                assert_eq!(scan_block(&lut, &block, pairs, thr, &mut got), wm);
                assert_eq!(got, want);
                let mut sums = vec![0u16; 2 * BLOCK];
                let mut masks = [0u32; 2];
                scan_blocks(&lut, &two, pairs, thr, &mut sums, &mut masks);
                assert_eq!(masks, [wm, wm]);
                assert_eq!(&sums[BLOCK..], &want[..]);
            }
        }
    }
}
