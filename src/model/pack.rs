//! Packing of b-bit codes (1..=8 bits) into bytes, least significant bits first, one row
//! at a time (each row starts on a byte boundary so rows can be packed in parallel).
//!
//! ```
//! use vecquant::model::pack::{pack_row, packed_len, unpack_row};
//! let codes = [1u8, 2, 3, 4, 5, 6, 7, 0, 5];
//! let mut bytes = vec![0u8; packed_len(codes.len(), 3)];
//! pack_row(&codes, 3, &mut bytes);
//! assert_eq!(bytes.len(), 4); // 27 bits
//! let mut back = [0u8; 9];
//! unpack_row(&bytes, 3, &mut back);
//! assert_eq!(back, codes);
//! ```

/// Bytes needed for `n` codes of `bits` bits.
pub fn packed_len(n: usize, bits: u32) -> usize {
    (n * bits as usize).div_ceil(8)
}

/// Packs `codes` (each `< 2^bits`) into `out` (`packed_len(codes.len(), bits)` bytes).
pub fn pack_row(codes: &[u8], bits: u32, out: &mut [u8]) {
    debug_assert_eq!(out.len(), packed_len(codes.len(), bits));
    match bits {
        8 => out.copy_from_slice(codes),
        4 => {
            for (o, pair) in out.iter_mut().zip(codes.chunks(2)) {
                *o = pair[0] | (pair.get(1).copied().unwrap_or(0) << 4);
            }
        }
        2 => {
            for (o, quad) in out.iter_mut().zip(codes.chunks(4)) {
                *o = quad
                    .iter()
                    .enumerate()
                    .fold(0u8, |acc, (i, &c)| acc | (c << (2 * i)));
            }
        }
        _ => {
            out.fill(0);
            let mask = (1u16 << bits) - 1;
            let mut bit = 0usize;
            for &c in codes {
                let v = (c as u16 & mask) << (bit % 8);
                out[bit / 8] |= v as u8;
                if bit % 8 + bits as usize > 8 {
                    out[bit / 8 + 1] |= (v >> 8) as u8;
                }
                bit += bits as usize;
            }
        }
    }
}

/// Unpacks `out.len()` codes of `bits` bits from `bytes`.
pub fn unpack_row(bytes: &[u8], bits: u32, out: &mut [u8]) {
    match bits {
        8 => out.copy_from_slice(&bytes[..out.len()]),
        4 => {
            for (pair, &b) in out.chunks_mut(2).zip(bytes) {
                pair[0] = b & 15;
                if let Some(h) = pair.get_mut(1) {
                    *h = b >> 4;
                }
            }
        }
        _ => {
            let mask = (1u16 << bits) - 1;
            let mut bit = 0usize;
            for o in out.iter_mut() {
                let lo = bytes[bit / 8] as u16;
                let hi = if bit % 8 + bits as usize > 8 {
                    (bytes[bit / 8 + 1] as u16) << 8
                } else {
                    0
                };
                *o = (((lo | hi) >> (bit % 8)) & mask) as u8;
                bit += bits as usize;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::{RngExt, seeded};

    #[test]
    fn every_width_round_trips_at_odd_lengths() {
        let mut rng = seeded(3);
        for bits in 1..=8u32 {
            for n in [1usize, 2, 3, 7, 8, 9, 31, 64, 385] {
                let codes: Vec<u8> = (0..n)
                    .map(|_| rng.random_range(0..1u32 << bits) as u8)
                    .collect();
                let mut bytes = vec![0xAAu8; packed_len(n, bits)];
                pack_row(&codes, bits, &mut bytes);
                let mut back = vec![0u8; n];
                unpack_row(&bytes, bits, &mut back);
                assert_eq!(back, codes, "bits {bits} n {n}");
            }
        }
        assert_eq!(packed_len(64, 4), 32);
        assert_eq!(packed_len(10, 3), 4);
    }
}
