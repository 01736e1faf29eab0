//! Fast-scan layout for 1-bit sign codes (RaBitQ's `RaBitQfs`, after FAISS).
//!
//! A 1-bit code of `d` dimensions is exactly a 4-bit PQ code with `M = ⌈d / 4⌉`
//! sub-quantizers of 16 entries: nibble `j` holds bits `4j..4j + 3`, and the query's
//! table for nibble `j`, entry `p`, is `Σ_{i<4} bit_i(p) · q[4j + i]`. So the codes are
//! stored in the 4-bit fast-scan block layout of [`super::fastscan`] (blocks of
//! [`BLOCK`] = 32 rows) and scanned with its dispatched kernels.
//!
//! **Row-major codes** (the input of [`pack_sign_codes`]) are `⌈d / 8⌉` bytes per row,
//! dimension `i` at bit `i % 8` of byte `i / 8` (so nibble `j` is the low or high half
//! of byte `j / 2`); bits past `d` are ignored.
//!
//! **Tables.** [`SignLut::new`] builds the nibble tables of a float query (the rotated
//! query `q'`) in `f64`, quantises them to bytes (per-nibble minimum as bias, one common
//! scale, rounding to nearest) and states the largest possible error of the resulting
//! estimate of `Σ_i bit_i · q'_i` ([`SignLut::max_error`]); rows whose estimate is within
//! that margin of a decision are re-scored exactly ([`SignLut::exact_in_block`]).
//! [`SignLut::from_query_codes`] builds exact tables from an integer query code (RaBitQ's
//! `Bq`-bit quantised query, `Bq ≤ 6`): its sums are `⟨x, q_u⟩` exactly, the value
//! [`super::bits::and_popcount_planes`] computes, with no error.
//!
//! The kernels add bytes in `u16`, so codes of more than 256 nibbles (`d > 1024`) are
//! scanned in runs of 128 pairs whose sums are added in `u32`.

use super::fastscan::{self, BLOCK, FastScanKernels};
use crate::error::{Error, Result};

/// Nibbles (4-bit sub-quantizers) of a `dim`-dimensional sign code: `⌈dim / 4⌉`.
pub fn nibbles(dim: usize) -> usize {
    dim.div_ceil(4)
}

/// Bytes of one row-major sign code: `⌈dim / 8⌉`.
pub fn row_bytes(dim: usize) -> usize {
    dim.div_ceil(8)
}

/// Bytes of one packed block of [`BLOCK`] codes of `dim` dimensions.
pub fn block_bytes(dim: usize) -> usize {
    fastscan::block_bytes(nibbles(dim))
}

/// Nibble `j` of a row-major code, with the bits at or past `dim` cleared.
#[inline]
fn nibble_of(row: &[u8], j: usize, dim: usize) -> u8 {
    let nib = (row[j / 2] >> (4 * (j % 2))) & 0x0F;
    let valid = dim.saturating_sub(4 * j).min(4);
    nib & ((1u8 << valid) - 1)
}

/// Packs `n` row-major sign codes of `dim` dimensions (`rows`: `n · ⌈dim / 8⌉` bytes)
/// into the fast-scan block layout: `⌈n / 32⌉` blocks of [`block_bytes`]`(dim)` bytes,
/// the padding rows all zero.
///
/// # Panics
/// If `rows` holds fewer than `n · ⌈dim / 8⌉` bytes (a caller's bug: codecs size their
/// buffers from `n` and `dim`).
pub fn pack_sign_codes(rows: &[u8], n: usize, dim: usize) -> Vec<u8> {
    let (rb, m, bb) = (row_bytes(dim), nibbles(dim), block_bytes(dim));
    assert!(
        rows.len() >= n * rb,
        "pack_sign_codes: {} bytes for {n} codes of {dim} dimensions ({rb} bytes each)",
        rows.len()
    );
    if rb == 0 {
        return vec![0u8; n.div_ceil(BLOCK) * bb];
    }
    // One 4-bit index per byte, as PQ's fast-scan codes, then PQ's block packing.
    let idx: Vec<u8> = rows
        .chunks_exact(rb)
        .take(n)
        .flat_map(|row| (0..m).map(move |s| nibble_of(row, s, dim)))
        .collect();
    fastscan::pack_blocks(&idx, m)
}

/// Row `i` (0..32) of a packed `block`, written row-major into `row` (`⌈dim / 8⌉`
/// bytes).
///
/// # Panics
/// If `i ≥ 32` or `block` or `row` is shorter than `dim` requires.
pub fn row_from_block(block: &[u8], dim: usize, i: usize, row: &mut [u8]) {
    assert!(i < BLOCK, "row {i} of a block of {BLOCK}");
    let row = &mut row[..row_bytes(dim)];
    row.fill(0);
    for s in 0..nibbles(dim) {
        row[s / 2] |= (fastscan::code_in_block(block, s, i) as u8) << (4 * (s % 2));
    }
}

/// The inverse of [`pack_sign_codes`]: the first `n` rows of `blocks`, row-major
/// (`n · ⌈dim / 8⌉` bytes, bits past `dim` zero).
///
/// # Panics
/// If `blocks` holds fewer than `⌈n / 32⌉` blocks.
pub fn unpack_sign_codes(blocks: &[u8], n: usize, dim: usize) -> Vec<u8> {
    let (rb, bb) = (row_bytes(dim), block_bytes(dim));
    let mut out = vec![0u8; n * rb];
    if rb == 0 {
        return out;
    }
    for (r, row) in out.chunks_exact_mut(rb).enumerate() {
        row_from_block(&blocks[(r / BLOCK) * bb..][..bb], dim, r % BLOCK, row);
    }
    out
}

/// Pairs of nibbles per kernel call: 256 nibbles of bytes ≤ 255 cannot overflow the
/// kernels' `u16` sums.
const RUN_PAIRS: usize = 128;

/// Refuses query codes of 64 or more (four of them could overflow a table byte).
fn check_small_codes(qu: &[u8]) -> Result<()> {
    match qu.iter().enumerate().find(|&(_, &v)| v >= 64) {
        Some((i, &v)) => Err(Error::param(
            "query code",
            format!(
                "dimension {i} has value {v}; fast-scan sign tables take query codes \
                 below 64 (at most 6 bits)"
            ),
        )),
        None => Ok(()),
    }
}

/// The quantised nibble tables of one query, laid out for the fast-scan kernels, with
/// the constants that turn their integer sums into `Σ_i bit_i · q_i`.
#[derive(Clone, Debug)]
pub struct SignLut {
    dim: usize,
    /// Padded pairs of nibbles ([`fastscan::padded_pairs`]).
    pairs: usize,
    /// Packed tables ([`fastscan::pack_lut`]): `pairs · 32` bytes.
    lut: Vec<u8>,
    /// Estimate = `bias + sum · step`.
    bias: f32,
    step: f32,
    max_error: f32,
    /// The query, for exact re-scoring.
    q: Vec<f32>,
    /// What [`SignLut::scan_block_centred`] subtracts from the kernels' sums (the
    /// centred tables' bias; 0 for the others).
    offset: u32,
}

impl SignLut {
    /// Tables of the float query `q` (the rotated query, `q.len()` = the codes'
    /// dimension). Non-finite entries make [`SignLut::max_error`] infinite (no estimate
    /// can be trusted; every row must be re-scored).
    pub fn new(q: &[f32]) -> SignLut {
        let m = nibbles(q.len());
        let at = |i: usize| q.get(i).map_or(0.0, |&v| v as f64);
        // Per nibble: the 16 entries in f64 (exact sums of at most four f32 values up to
        // f64 rounding), their minimum and range.
        let mut table = vec![0.0f64; m * 16];
        let (mut bias, mut span) = (0.0f64, 0.0f64);
        let mut lows = vec![0.0f64; m];
        for j in 0..m {
            let v = [at(4 * j), at(4 * j + 1), at(4 * j + 2), at(4 * j + 3)];
            for p in 0..16 {
                table[j * 16 + p] = (0..4).filter(|i| p >> i & 1 == 1).map(|i| v[i]).sum();
            }
            let lo: f64 = v.iter().map(|x| x.min(0.0)).sum();
            let hi: f64 = v.iter().map(|x| x.max(0.0)).sum();
            lows[j] = lo;
            bias += lo;
            span = span.max(hi - lo);
        }
        let finite = q.iter().all(|v| v.is_finite());
        let scale = if span > 0.0 && finite {
            255.0 / span
        } else {
            1.0
        };
        let raw: Vec<u8> = table
            .chunks_exact(16)
            .zip(&lows)
            .flat_map(|(row, &lo)| {
                row.iter()
                    .map(move |&t| ((t - lo) * scale).round().clamp(0.0, 255.0) as u8)
            })
            .collect();
        // Rounding: at most half a unit per nibble. Float error of `bias + sum · step`
        // in f32 (the stored bias and step, the product and the sum, each within 2^-24
        // of their magnitude): bounded with room to spare by 2^-20 of the magnitudes.
        let magnitude = bias.abs() + m as f64 * span;
        // (A zero span means every entry is zero: nothing to round.)
        let rounding = if span > 0.0 {
            0.5 * m as f64 / scale
        } else {
            0.0
        };
        let max_error = if finite {
            (rounding + magnitude * (1.0 / (1u64 << 20) as f64)) as f32
        } else {
            f32::INFINITY
        };
        Self::with_tables(q, &raw, bias as f32, (1.0 / scale) as f32, max_error)
    }

    /// Exact tables of an integer query code `qu` (one value per dimension, each below
    /// 64, e.g. RaBitQ's query quantised to `Bq ≤ 6` bits): the estimate of a row is
    /// `⟨x, qu⟩` exactly, [`SignLut::max_error`] is zero, and [`SignLut::exact_in_block`]
    /// returns the same value.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] if a value is 64 or more (four of them could overflow
    /// a table byte).
    pub fn from_query_codes(qu: &[u8]) -> Result<SignLut> {
        check_small_codes(qu)?;
        Ok(SignLut::from_small_codes(qu))
    }

    /// [`SignLut::from_query_codes`] of codes a quantizer of at most 6 bits produced
    /// (RaBitQ's query codes): no check — each value is taken modulo 64, so no table byte
    /// can overflow whatever the input.
    pub fn from_small_codes(qu: &[u8]) -> SignLut {
        let mut lut = SignLut::empty();
        lut.set_small_codes(qu);
        lut
    }

    /// Tables of no dimensions, to be set in place.
    fn empty() -> SignLut {
        SignLut {
            dim: 0,
            pairs: 0,
            lut: Vec::new(),
            bias: 0.0,
            step: 1.0,
            max_error: 0.0,
            q: Vec::new(),
            offset: 0,
        }
    }

    /// Exact tables of integer query codes centred on `c` (`c ≤ 31`, each code taken
    /// as `min(u_i, 2c)`): the rows' sums are `Σ_i bit_i · (u_i − c)`, signed, from one
    /// table pass ([`SignLut::scan_block_centred`]). Entry `p` of a nibble is
    /// `4c + Σ_{i ∈ p} (u_i − c)` ∈ `[0, 8c]`, so the tables stay bytes and the bias
    /// `4c` per nibble is the same for every row. With `u_i = (t_i − lo)/δ` on a grid
    /// symmetric about zero (`lo = −cδ`), `δ · Σ_i bit_i (u_i − c) = Σ_i bit_i t̄_i`: no
    /// per-row popcount is needed (the `lo · popcount` term is zero).
    pub fn from_centred_codes(qu: &[u8], c: u8) -> SignLut {
        let mut lut = SignLut::empty();
        lut.set_centred_codes(qu, c);
        lut
    }

    /// [`SignLut::from_centred_codes`] in place (no allocation once grown).
    pub fn set_centred_codes(&mut self, qu: &[u8], c: u8) {
        let c = c.min(31);
        self.set_code_tables(qu, 4 * i16::from(c), |v| {
            i16::from(v.min(2 * c)) - i16::from(c)
        });
    }

    /// Exact tables of the per-dimension values `value(u_i)` of integer codes `qu`: entry
    /// `p` of a nibble is `base + Σ_{i ∈ p} value(u_i)` (dimensions past the last one add
    /// 0), which the callers keep within a byte; the kernels' sums then exceed
    /// `Σ_i bit_i value(u_i)` by `base` per nibble, the offset [`SignLut::estimate`] and
    /// [`SignLut::scan_block_centred`] take off.
    fn set_code_tables(&mut self, qu: &[u8], base: i16, value: impl Fn(u8) -> i16) {
        let m = nibbles(qu.len());
        self.dim = qu.len();
        self.pairs = fastscan::padded_pairs(m);
        self.lut.clear();
        self.lut.resize(self.pairs * 32, 0);
        let at = |i: usize| qu.get(i).map_or(0, |&v| value(v));
        for j in 0..m {
            let v = [at(4 * j), at(4 * j + 1), at(4 * j + 2), at(4 * j + 3)];
            // fastscan::pack_lut's layout: nibble j's 16 entries at pair j/2, half j%2.
            let table = &mut self.lut[(j / 2) * 32 + (j % 2) * 16..][..16];
            // Entry p is entry p less its highest bit plus that bit's value.
            let mut e = [base; 16];
            for p in 1..16usize {
                let top = p.ilog2() as usize;
                e[p] = e[p ^ (1 << top)] + v[top];
            }
            for (t, &x) in table.iter_mut().zip(&e) {
                *t = x.clamp(0, 255) as u8;
            }
        }
        self.offset = base.max(0) as u32 * m as u32;
        (self.bias, self.step, self.max_error) = (0.0 - self.offset as f32, 1.0, 0.0);
        self.q.clear();
        self.q.extend(qu.iter().map(|&v| f32::from(value(v))));
    }

    /// The signed sums `Σ_i bit_i · (u_i − c)` of one block's 32 rows under tables of
    /// [`SignLut::from_centred_codes`] (for other tables, the kernels' sums as `i32`).
    ///
    /// # Panics
    /// If `block` is shorter than [`SignLut::block_bytes`].
    #[inline]
    pub fn scan_block_centred(&self, block: &[u8], out: &mut [i32; BLOCK]) {
        let mut sums = [0u32; BLOCK];
        self.scan_block_sums(block, &mut sums);
        for (o, &s) in out.iter_mut().zip(&sums) {
            *o = s.wrapping_sub(self.offset) as i32;
        }
    }

    /// Rebuilds these tables as [`SignLut::from_query_codes`] of `qu`, in place (no
    /// allocation once the tables have grown to the dimension: an inverted file rebuilds
    /// them for every probed list). Unchanged on error.
    ///
    /// # Errors
    /// As [`SignLut::from_query_codes`].
    pub fn set_query_codes(&mut self, qu: &[u8]) -> Result<()> {
        check_small_codes(qu)?;
        self.set_small_codes(qu);
        Ok(())
    }

    /// [`SignLut::set_query_codes`] without the check, as [`SignLut::from_small_codes`]
    /// (values taken modulo 64: four of them fit a table byte).
    pub fn set_small_codes(&mut self, qu: &[u8]) {
        self.set_code_tables(qu, 0, |v| i16::from(v & 63));
    }

    fn with_tables(q: &[f32], raw: &[u8], bias: f32, step: f32, max_error: f32) -> SignLut {
        let m = nibbles(q.len());
        let mut lut = Vec::new();
        fastscan::pack_lut(raw, m, &mut lut);
        SignLut {
            dim: q.len(),
            pairs: fastscan::padded_pairs(m),
            lut,
            bias,
            step,
            max_error,
            q: q.to_vec(),
            offset: 0,
        }
    }

    /// The codes' dimension.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Bytes of one block of codes this table scans ([`block_bytes`]).
    pub fn block_bytes(&self) -> usize {
        self.pairs * 32
    }

    /// The largest possible `|estimate − Σ_i bit_i · q_i|` of [`SignLut::scan_block`]
    /// for any row (zero for [`SignLut::from_query_codes`]).
    pub fn max_error(&self) -> f32 {
        self.max_error
    }

    /// The estimate `bias + sum · step` of an integer kernel sum.
    #[inline]
    pub fn estimate(&self, sum: u32) -> f32 {
        self.bias + sum as f32 * self.step
    }

    /// The kernels' integer sums over one block: `out[i] = Σ_j lut_j[nibble_j(row i)]`.
    /// For [`SignLut::from_query_codes`] tables these are `⟨x_i, qu⟩`.
    ///
    /// # Panics
    /// If `block` is shorter than [`SignLut::block_bytes`].
    #[inline]
    pub fn scan_block_sums(&self, block: &[u8], out: &mut [u32; BLOCK]) {
        self.sums_with(&super::active().fastscan, block, out)
    }

    /// [`SignLut::scan_block_sums`] with the kernels of one level.
    fn sums_with(&self, k: &FastScanKernels, block: &[u8], out: &mut [u32; BLOCK]) {
        let bytes = self.block_bytes();
        assert!(
            block.len() >= bytes,
            "sign-code block of {} bytes, {bytes} needed",
            block.len()
        );
        let mut part = [0u16; BLOCK];
        if self.pairs <= RUN_PAIRS {
            k.scan_block(&self.lut, block, self.pairs, 0, &mut part);
            for (o, &p) in out.iter_mut().zip(&part) {
                *o = p as u32;
            }
            return;
        }
        out.fill(0);
        let mut from = 0;
        while from < self.pairs {
            // Runs of an even number of pairs (`pairs` is even), as the kernels need.
            let run = RUN_PAIRS.min(self.pairs - from);
            let (lut, codes) = (&self.lut[from * 32..], &block[from * 32..bytes]);
            k.scan_block(lut, codes, run, 0, &mut part);
            for (o, &p) in out.iter_mut().zip(&part) {
                *o += p as u32;
            }
            from += run;
        }
    }

    /// The estimates of `Σ_i bit_i · q_i` for the 32 rows of one packed block, each
    /// within [`SignLut::max_error`] of the exact value.
    ///
    /// # Panics
    /// If `block` is shorter than [`SignLut::block_bytes`].
    #[inline]
    pub fn scan_block(&self, block: &[u8], out: &mut [f32; BLOCK]) {
        let mut sums = [0u32; BLOCK];
        self.scan_block_sums(block, &mut sums);
        for (o, &s) in out.iter_mut().zip(&sums) {
            *o = self.estimate(s);
        }
    }

    /// [`SignLut::scan_block`] over consecutive blocks: `out` receives 32 estimates per
    /// block for `out.len() / 32` blocks.
    ///
    /// # Panics
    /// If `blocks` holds fewer than `out.len() / 32` blocks.
    pub fn scan_blocks(&self, blocks: &[u8], out: &mut [f32]) {
        let bytes = self.block_bytes();
        let nb = out.len() / BLOCK;
        assert!(
            blocks.len() >= nb * bytes,
            "{} bytes of sign-code blocks, {} needed",
            blocks.len(),
            nb * bytes
        );
        if self.pairs > RUN_PAIRS {
            for (b, o) in out.chunks_exact_mut(BLOCK).enumerate() {
                let o: &mut [f32; BLOCK] = o.try_into().expect("32");
                self.scan_block(&blocks[b * bytes..], o);
            }
            return;
        }
        // Up to 16 blocks per kernel call (no per-block dispatch).
        const GROUP: usize = 16;
        let mut sums = [0u16; GROUP * BLOCK];
        let mut masks = [0u32; GROUP];
        for (g, o) in out[..nb * BLOCK].chunks_mut(GROUP * BLOCK).enumerate() {
            let nbg = o.len() / BLOCK;
            let codes = &blocks[g * GROUP * bytes..][..nbg * bytes];
            fastscan::scan_blocks(
                &self.lut,
                codes,
                self.pairs,
                0,
                &mut sums[..nbg * BLOCK],
                &mut masks[..nbg],
            );
            for (o, &s) in o.iter_mut().zip(&sums) {
                *o = self.estimate(s as u32);
            }
        }
    }

    /// The exact `Σ_i bit_i · q_i` (in `f32`, summed in dimension order) of row `i`
    /// (0..32) of a packed `block`: for re-scoring rows whose estimate is within
    /// [`SignLut::max_error`] of a decision.
    ///
    /// # Panics
    /// If `i ≥ 32` or `block` is shorter than [`SignLut::block_bytes`].
    pub fn exact_in_block(&self, block: &[u8], i: usize) -> f32 {
        assert!(i < BLOCK, "row {i} of a block of {BLOCK}");
        let mut sum = 0.0f32;
        for s in 0..nibbles(self.dim) {
            let nib = fastscan::code_in_block(block, s, i);
            for b in 0..4 {
                if nib >> b & 1 == 1 {
                    sum += self.q.get(4 * s + b).copied().unwrap_or(0.0);
                }
            }
        }
        sum
    }

    /// The exact `Σ_i bit_i · q_i` of a row-major code (`⌈dim / 8⌉` bytes), summed in
    /// dimension order: equal to [`SignLut::exact_in_block`] of the same code.
    pub fn exact_row(&self, row: &[u8]) -> f32 {
        let mut sum = 0.0f32;
        for (i, &v) in self.q.iter().enumerate() {
            if row[i / 8] >> (i % 8) & 1 == 1 {
                sum += v;
            }
        }
        sum
    }
}

#[cfg(test)]
#[path = "bits_fs_tests.rs"]
mod tests;
