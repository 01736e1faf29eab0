//! Number formats: IEEE-style small floats and two's-complement integers, with
//! round-to-nearest-even and saturation.
//!
//! One [`FloatFormat`] describes every binary floating-point format the weight pipeline
//! needs (seed 003 "Number formats"): f16, bf16, TF32, FP8 E4M3 and E5M2 (Micikevicius et
//! al. 2022, "FP8 Formats for Deep Learning"), FP4 E2M1 and E3M0. [`FloatFormat::round`]
//! returns the nearest representable value (ties to an even mantissa); values beyond the
//! largest finite magnitude *saturate* to it instead of overflowing to infinity — the
//! convention of FP8 training and inference kernels, and the only one that makes sense for
//! formats without an infinity (E4M3, E2M1).
//!
//! ```
//! use vecquant::model::formats::FloatFormat;
//! let e4m3 = FloatFormat::E4M3;
//! assert_eq!(e4m3.max_finite(), 448.0);
//! assert_eq!(e4m3.round(1000.0), 448.0);          // saturates, E4M3 has no infinity
//! assert_eq!(e4m3.round(17.0), 16.0);             // 17 = 16 + half a step: ties to even
//! assert_eq!(FloatFormat::F16.max_finite(), 65504.0);
//! assert_eq!(FloatFormat::E5M2.max_finite(), 57344.0);
//! assert_eq!(FloatFormat::E2M1.round(2.6), 3.0);  // E2M1: 0, .5, 1, 1.5, 2, 3, 4, 6
//! let code = e4m3.encode(-0.3125);
//! assert_eq!(e4m3.decode(code), -0.3125);
//! ```

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// How a format spends its all-ones exponent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Special {
    /// IEEE 754: all-ones exponent holds ±inf (mantissa 0) and NaN (f16, bf16, TF32, E5M2).
    Ieee,
    /// Only the all-ones pattern `S.1111.111` is NaN; every other code is finite (OCP FP8
    /// E4M3 "fn").
    NanOnly,
    /// No special values: every code is finite (FP4 E2M1, E3M0).
    None,
}

/// A binary floating-point format: sign bit, `exp_bits` exponent bits with `bias`, and
/// `man_bits` explicit mantissa bits (subnormals included).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FloatFormat {
    /// Human-readable name.
    pub name: &'static str,
    /// Exponent field width.
    pub exp_bits: u32,
    /// Explicit mantissa width.
    pub man_bits: u32,
    /// Exponent bias.
    pub bias: i32,
    /// Use of the all-ones exponent.
    pub special: Special,
}

impl FloatFormat {
    /// IEEE binary16: max 65504.
    pub const F16: FloatFormat = FloatFormat::new("f16", 5, 10, 15, Special::Ieee);
    /// bfloat16: f32's exponent range with 7 mantissa bits.
    pub const BF16: FloatFormat = FloatFormat::new("bf16", 8, 7, 127, Special::Ieee);
    /// NVIDIA TensorFloat-32 (19 bits): f32's range with f16's precision.
    pub const TF32: FloatFormat = FloatFormat::new("tf32", 8, 10, 127, Special::Ieee);
    /// FP8 E4M3 (OCP "fn"): max 448, no infinity, one NaN pattern per sign.
    pub const E4M3: FloatFormat = FloatFormat::new("fp8-e4m3", 4, 3, 7, Special::NanOnly);
    /// FP8 E5M2: IEEE-like, max 57344.
    pub const E5M2: FloatFormat = FloatFormat::new("fp8-e5m2", 5, 2, 15, Special::Ieee);
    /// FP4 E2M1 (OCP MX): ±{0, 0.5, 1, 1.5, 2, 3, 4, 6}.
    pub const E2M1: FloatFormat = FloatFormat::new("fp4-e2m1", 2, 1, 1, Special::None);
    /// FP4 E3M0: powers of two ±{0, 0.25, 0.5, 1, 2, 4, 8, 16}.
    pub const E3M0: FloatFormat = FloatFormat::new("fp4-e3m0", 3, 0, 3, Special::None);

    const fn new(
        name: &'static str,
        exp_bits: u32,
        man_bits: u32,
        bias: i32,
        special: Special,
    ) -> Self {
        FloatFormat {
            name,
            exp_bits,
            man_bits,
            bias,
            special,
        }
    }

    /// Total width in bits (sign + exponent + mantissa).
    pub const fn bits(&self) -> u32 {
        1 + self.exp_bits + self.man_bits
    }

    /// Largest biased exponent that holds finite values.
    fn max_exp_field(&self) -> i32 {
        let all_ones = (1i32 << self.exp_bits) - 1;
        match self.special {
            Special::Ieee => all_ones - 1,
            Special::NanOnly | Special::None => all_ones,
        }
    }

    /// Largest mantissa field at the largest exponent.
    fn max_man_field(&self) -> u32 {
        let all_ones = (1u32 << self.man_bits) - 1;
        match self.special {
            // S.1111.111 is NaN, so the top finite mantissa is one below all-ones.
            Special::NanOnly => all_ones - 1,
            _ => all_ones,
        }
    }

    /// The largest finite magnitude.
    pub fn max_finite(&self) -> f32 {
        let e = self.max_exp_field() - self.bias;
        let m = 1.0 + self.max_man_field() as f64 / (1u64 << self.man_bits) as f64;
        (m * 2f64.powi(e)) as f32
    }

    /// The smallest positive (subnormal) magnitude.
    pub fn min_subnormal(&self) -> f32 {
        2f64.powi(1 - self.bias - self.man_bits as i32) as f32
    }

    /// The smallest positive normal magnitude.
    pub fn min_normal(&self) -> f32 {
        2f64.powi(1 - self.bias) as f32
    }

    /// Nearest representable value to `x` (ties to even), saturating at ±[`max_finite`].
    /// NaN stays NaN.
    ///
    /// [`max_finite`]: FloatFormat::max_finite
    pub fn round(&self, x: f32) -> f32 {
        if x.is_nan() {
            return x;
        }
        let (mag, _) = self.round_magnitude(x.abs() as f64);
        (mag as f32).copysign(x)
    }

    /// Rounds |x| and returns (value, code without sign).
    fn round_magnitude(&self, a: f64) -> (f64, u32) {
        let max = self.max_finite() as f64;
        if a >= max {
            return (
                max,
                self.encode_field(self.max_exp_field(), self.max_man_field()),
            );
        }
        let emin = 1 - self.bias; // exponent of the smallest normal
        let m_one = 1u64 << self.man_bits;
        // Exponent of a (floor(log2 a)), clamped to the subnormal range.
        let e = if a == 0.0 {
            emin
        } else {
            (exponent_of(a)).max(emin)
        };
        let quantum = 2f64.powi(e - self.man_bits as i32);
        let m = (a / quantum).round_ties_even() as u64; // in [0, 2^(man+1)]
        let value = m as f64 * quantum;
        if value >= max {
            return (
                max,
                self.encode_field(self.max_exp_field(), self.max_man_field()),
            );
        }
        // Encode: subnormal when m < 2^man at emin, else normal (m may have carried to
        // 2^(man+1), which is the next binade with mantissa 0).
        let (exp_field, man_field) = if m < m_one {
            (0, m as u32)
        } else if m == 2 * m_one {
            (e + 1 + self.bias, 0)
        } else {
            (e + self.bias, (m - m_one) as u32)
        };
        (value, self.encode_field(exp_field, man_field))
    }

    fn encode_field(&self, exp_field: i32, man_field: u32) -> u32 {
        ((exp_field as u32) << self.man_bits) | man_field
    }

    /// The bit pattern of the nearest representable value (sign in the top bit of the
    /// format's width). NaN encodes to the format's NaN; formats without NaN have no code
    /// for it — [`FloatFormat::encode_checked`] reports that as an error.
    pub fn encode(&self, x: f32) -> u32 {
        let sign = if x.is_sign_negative() {
            1u32 << (self.exp_bits + self.man_bits)
        } else {
            0
        };
        if x.is_nan() {
            return match self.special {
                Special::Ieee => {
                    ((((1u32 << self.exp_bits) - 1) << self.man_bits) | (1 << (self.man_bits - 1)))
                        | sign
                }
                Special::NanOnly => ((1u32 << (self.exp_bits + self.man_bits)) - 1) | sign,
                Special::None => sign,
            };
        }
        sign | self.round_magnitude(x.abs() as f64).1
    }

    /// [`FloatFormat::encode`] that refuses NaN and infinities.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] for NaN or an infinity.
    pub fn encode_checked(&self, x: f32) -> Result<u32> {
        if !x.is_finite() {
            return Err(Error::param(
                self.name,
                format!("cannot encode non-finite value {x}"),
            ));
        }
        Ok(self.encode(x))
    }

    /// The value of a bit pattern.
    pub fn decode(&self, code: u32) -> f32 {
        let man_mask = (1u32 << self.man_bits) - 1;
        let exp_mask = (1u32 << self.exp_bits) - 1;
        let sign = (code >> (self.exp_bits + self.man_bits)) & 1;
        let exp_field = (code >> self.man_bits) & exp_mask;
        let man_field = code & man_mask;
        let s = if sign == 1 { -1.0 } else { 1.0 };
        match self.special {
            Special::Ieee if exp_field == exp_mask => {
                return if man_field == 0 {
                    s * f32::INFINITY
                } else {
                    f32::NAN
                };
            }
            Special::NanOnly if exp_field == exp_mask && man_field == man_mask => return f32::NAN,
            _ => {}
        }
        let m_one = (1u64 << self.man_bits) as f64;
        let v = if exp_field == 0 {
            man_field as f64 / m_one * 2f64.powi(1 - self.bias)
        } else {
            (1.0 + man_field as f64 / m_one) * 2f64.powi(exp_field as i32 - self.bias)
        };
        (s as f64 * v) as f32
    }

    /// Every distinct finite value, sorted (±0 counted once) — the format as a codebook
    /// grid. Only for formats of at most 8 bits.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] for formats wider than 8 bits.
    pub fn grid(&self) -> Result<Vec<f32>> {
        if self.bits() > 8 {
            return Err(Error::param(
                self.name,
                format!(
                    "a {}-bit format has too many values for a grid",
                    self.bits()
                ),
            ));
        }
        let mut v: Vec<f32> = (0..1u32 << self.bits())
            .map(|c| self.decode(c))
            .filter(|x| x.is_finite())
            .map(|x| if x == 0.0 { 0.0 } else { x })
            .collect();
        v.sort_by(f32::total_cmp);
        v.dedup();
        Ok(v)
    }
}

/// floor(log2 a) for a finite positive f64, exactly (from the bit pattern).
fn exponent_of(a: f64) -> i32 {
    let bits = a.to_bits();
    let e = ((bits >> 52) & 0x7ff) as i32;
    if e == 0 {
        // f64 subnormal: never reached from f32 inputs, but stay exact.
        let lz = (bits & ((1u64 << 52) - 1)).leading_zeros() as i32 - 12;
        -1022 - lz - 1
    } else {
        e - 1023
    }
}

/// A two's-complement integer format of `bits` bits (2..=16), seed 003: range
/// `[-2^(b-1), 2^(b-1) - 1]`; symmetric quantization drops the most negative value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IntFormat {
    /// Width in bits.
    pub bits: u32,
}

impl IntFormat {
    /// A `bits`-wide signed integer (2..=16).
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] when `bits` is outside 2..=16.
    pub fn new(bits: u32) -> Result<Self> {
        if !(2..=16).contains(&bits) {
            return Err(Error::param(
                "bits",
                format!("integer formats are 2..=16 bits wide, got {bits}"),
            ));
        }
        Ok(IntFormat { bits })
    }

    /// Most negative value, `-2^(b-1)`.
    pub fn min(&self) -> i32 {
        -(1 << (self.bits - 1))
    }

    /// Largest value, `2^(b-1) - 1`.
    pub fn max(&self) -> i32 {
        (1 << (self.bits - 1)) - 1
    }

    /// Nearest integer (ties to even), saturated to `[min, max]`; NaN maps to 0.
    pub fn round(&self, x: f32) -> i32 {
        if x.is_nan() {
            return 0;
        }
        (x.round_ties_even() as f64).clamp(self.min() as f64, self.max() as f64) as i32
    }
}

/// Converts a slice to f16 bits with round-to-nearest-even and saturation (±65504 instead
/// of ±inf); NaN stays NaN. Fast path through the `half` crate, pinned to
/// [`FloatFormat::F16`] by the tests.
pub fn to_f16_saturating(x: &[f32], out: &mut [u16]) {
    let max = FloatFormat::F16.max_finite();
    for (o, &v) in out.iter_mut().zip(x) {
        *o = half::f16::from_f32(v.clamp(-max, max)).to_bits();
    }
}

/// Converts a slice to bf16 bits with round-to-nearest-even and saturation.
pub fn to_bf16_saturating(x: &[f32], out: &mut [u16]) {
    let max = FloatFormat::BF16.max_finite();
    for (o, &v) in out.iter_mut().zip(x) {
        *o = half::bf16::from_f32(v.clamp(-max, max)).to_bits();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::{RngExt, seeded};

    #[test]
    fn published_maxima_and_minima() {
        assert_eq!(FloatFormat::F16.max_finite(), 65504.0);
        assert_eq!(FloatFormat::F16.min_normal(), 6.103_515_6e-5);
        assert_eq!(FloatFormat::F16.min_subnormal(), 5.960_464_5e-8);
        assert_eq!(FloatFormat::BF16.max_finite(), 3.389_531_4e38);
        assert_eq!(FloatFormat::TF32.max_finite(), 3.401_162_1e38);
        assert_eq!(FloatFormat::E4M3.max_finite(), 448.0);
        assert_eq!(FloatFormat::E4M3.min_subnormal(), 2f32.powi(-9));
        assert_eq!(FloatFormat::E5M2.max_finite(), 57344.0);
        assert_eq!(FloatFormat::E5M2.min_subnormal(), 2f32.powi(-16));
        assert_eq!(FloatFormat::E2M1.max_finite(), 6.0);
        assert_eq!(
            FloatFormat::E2M1.grid().unwrap(),
            vec![
                -6.0, -4.0, -3.0, -2.0, -1.5, -1.0, -0.5, 0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0
            ]
        );
        assert_eq!(FloatFormat::E3M0.max_finite(), 16.0);
        // E4M3: 256 codes, 2 NaN, ±0 → 253 distinct finite values; E5M2: 256 − 6 inf/NaN − 1.
        assert_eq!(FloatFormat::E4M3.grid().unwrap().len(), 253);
        assert_eq!(FloatFormat::E5M2.grid().unwrap().len(), 256 - 8 - 1);
    }

    #[test]
    fn saturation_instead_of_overflow() {
        for f in [
            FloatFormat::F16,
            FloatFormat::E4M3,
            FloatFormat::E5M2,
            FloatFormat::E2M1,
            FloatFormat::BF16,
        ] {
            let m = f.max_finite();
            assert_eq!(f.round(m), m, "{}", f.name);
            assert_eq!(f.round(m * 1.5), m, "{}", f.name);
            assert_eq!(f.round(-f32::MAX), -m, "{}", f.name);
            assert_eq!(f.round(f32::INFINITY), m, "{}", f.name);
            assert_eq!(f.decode(f.encode(m * 4.0)), m, "{}", f.name);
        }
        // f16: 65520 is exactly halfway to the (non-existent) next step and would round to
        // inf in IEEE; saturation keeps it finite.
        assert_eq!(FloatFormat::F16.round(65519.0), 65504.0);
        assert_eq!(FloatFormat::F16.round(65520.0), 65504.0);
    }

    #[test]
    fn ties_go_to_even() {
        // f16 around 1: step 2^-10. 1 + 2^-11 is a tie between 1 (even) and 1 + 2^-10.
        let f = FloatFormat::F16;
        assert_eq!(f.round(1.0 + 2f32.powi(-11)), 1.0);
        assert_eq!(
            f.round(1.0 + 3.0 * 2f32.powi(-11)),
            1.0 + 2.0 * 2f32.powi(-10)
        );
        // E4M3 between 16 and 18 (step 2): 17 → 16 (mantissa 000 even); 19 → 20.
        assert_eq!(FloatFormat::E4M3.round(17.0), 16.0);
        assert_eq!(FloatFormat::E4M3.round(19.0), 20.0);
        // E2M1: 2.5 is a tie between 2 (mantissa 0) and 3 (mantissa 1) → 2; 5 → 4.
        assert_eq!(FloatFormat::E2M1.round(2.5), 2.0);
        assert_eq!(FloatFormat::E2M1.round(5.0), 4.0);
        assert_eq!(FloatFormat::E2M1.round(0.25), 0.0); // tie with 0.5: 0 is even
        assert_eq!(FloatFormat::E2M1.round(0.75), 1.0); // tie between 0.5 (odd) and 1
        // Subnormal rounding in E4M3: quantum 2^-9.
        let q = 2f32.powi(-9);
        assert_eq!(FloatFormat::E4M3.round(0.5 * q), 0.0);
        assert_eq!(FloatFormat::E4M3.round(1.5 * q), 2.0 * q);
        assert_eq!(FloatFormat::E4M3.round(0.51 * q), q);
    }

    #[test]
    fn codes_round_trip_every_pattern() {
        for f in [
            FloatFormat::E4M3,
            FloatFormat::E5M2,
            FloatFormat::E2M1,
            FloatFormat::E3M0,
        ] {
            for c in 0..1u32 << f.bits() {
                let v = f.decode(c);
                if !v.is_finite() {
                    continue;
                }
                let back = f.encode(v);
                // ±0 is the only value with two codes.
                if v == 0.0 {
                    assert_eq!(f.decode(back), 0.0);
                } else {
                    assert_eq!(back, c, "{} code {c:#x} value {v}", f.name);
                }
            }
        }
        assert!(FloatFormat::E4M3.decode(0x7f).is_nan());
        assert_eq!(FloatFormat::E4M3.decode(0x7e), 448.0);
        assert_eq!(FloatFormat::E5M2.decode(0x7c), f32::INFINITY);
        assert_eq!(FloatFormat::E5M2.decode(0x7b), 57344.0);
        assert!(FloatFormat::E4M3.encode_checked(f32::NAN).is_err());
    }

    #[test]
    fn generic_f16_bf16_equal_the_half_crate() {
        let mut rng = seeded(5);
        let mut xs: Vec<f32> = (0..20_000)
            .map(|i| {
                let scale = 10f32.powi((i % 13) - 8);
                (rng.random::<f32>() - 0.5) * scale
            })
            .collect();
        xs.extend([
            0.0,
            -0.0,
            1.0,
            65504.0,
            65519.99,
            65520.0,
            1e-8,
            6e-8,
            3e-8,
            1e38,
            -f32::MAX,
        ]);
        let mut h = vec![0u16; xs.len()];
        let mut b = vec![0u16; xs.len()];
        to_f16_saturating(&xs, &mut h);
        to_bf16_saturating(&xs, &mut b);
        for (i, &x) in xs.iter().enumerate() {
            let fh = half::f16::from_bits(h[i]).to_f32();
            assert_eq!(FloatFormat::F16.round(x), fh, "f16 of {x}");
            assert_eq!(FloatFormat::F16.encode(x), h[i] as u32, "f16 bits of {x}");
            let fb = half::bf16::from_bits(b[i]).to_f32();
            assert_eq!(FloatFormat::BF16.round(x), fb, "bf16 of {x}");
        }
        // TF32 keeps f32's range with 10 mantissa bits.
        assert_eq!(FloatFormat::TF32.round(1.0 + 2f32.powi(-12)), 1.0);
        assert_eq!(
            FloatFormat::TF32.round(3.0e38),
            3.0e38f32.round_ties_to_step(13)
        );
    }

    /// Rounds an f32 to `drop` fewer mantissa bits (a reference for TF32).
    trait RoundStep {
        fn round_ties_to_step(self, drop: u32) -> f32;
    }
    impl RoundStep for f32 {
        fn round_ties_to_step(self, drop: u32) -> f32 {
            let bits = self.to_bits();
            let half = 1u32 << (drop - 1);
            let mask = (1u32 << drop) - 1;
            let low = bits & mask;
            let mut hi = bits & !mask;
            if low > half || (low == half && (hi >> drop) & 1 == 1) {
                hi += 1 << drop;
            }
            f32::from_bits(hi)
        }
    }

    #[test]
    fn int_formats_follow_seed_003() {
        let i8f = IntFormat::new(8).unwrap();
        assert_eq!((i8f.min(), i8f.max()), (-128, 127));
        let i4 = IntFormat::new(4).unwrap();
        assert_eq!((i4.min(), i4.max()), (-8, 7));
        assert_eq!(i4.round(7.6), 7);
        assert_eq!(i4.round(-100.0), -8);
        assert_eq!(i8f.round(2.5), 2);
        assert_eq!(i8f.round(3.5), 4);
        assert!(IntFormat::new(1).is_err());
        assert!(IntFormat::new(17).is_err());
    }
}
