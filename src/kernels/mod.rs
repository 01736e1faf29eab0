//! Hot loops: f32 squared L2 and inner product, scalar-quantizer scans, PQ distance tables,
//! 8-bit PQ block scans and 4-bit fast-scan.
//!
//! Each kernel has a plain scalar reference and `std::arch` versions for the SIMD levels
//! that pay off for it. The level is chosen once per process ([`simd_level`]: the best
//! [`SimdLevel`] the CPU supports, optionally capped by the `VECQUANT_SIMD` environment
//! variable), so one binary is fast everywhere without `-C target-cpu=native`.
//!
//! **One dispatch table.** All kernels of one level sit in one table of function pointers
//! (`Kernels`, one per level, built at compile time); the safe entry points
//! ([`l2_sq`], [`sq::scan_u8`], [`fastscan::scan_blocks`], …) check their arguments and
//! call through the active table: one atomic load of a once-initialised pointer and one
//! indirect call, the cost of a per-kernel `OnceLock` of a function pointer.
//!
//! **Soundness.** The SIMD versions are `unsafe fn`s compiled with `#[target_feature]`;
//! running one on a CPU without those features is undefined behaviour. Nothing outside
//! this module can name them: they are reached only through a table, each table installs
//! only kernels whose features its level includes, and a table is used only for a level
//! [`SimdLevel::cpu`] reported. Length preconditions of the kernels are checked by the
//! table's safe methods, once per call, outside the loops.
//!
//! **Testing every path.** The tests run every kernel at every level up to
//! [`simd_level`] (scalar, AVX2, AVX-512, AVX-512 VBMI on a CPU that has them all) and
//! compare each to its scalar reference; `.ci/run` runs them once more with
//! `VECQUANT_SIMD=scalar`, so the scalar fallbacks of the dispatched entry points are
//! exercised on any machine.

// The soundness rules above, machine-checked where clippy can: every `unsafe` block in
// this module carries a `// SAFETY:` comment, every exported `unsafe fn` a `# Safety`
// section (the private ones carry theirs by hand).
#![deny(clippy::undocumented_unsafe_blocks, clippy::missing_safety_doc)]

/// Defines an `unsafe fn` that runs the portable function `$body` (which should be
/// `#[inline(always)]`) compiled again with the target features `$features`: the compiler
/// vectorises the same source for wider registers, and as Rust never contracts `a * b + c`
/// into an FMA, the results are bit-identical to the portable version's.
macro_rules! retarget {
    (
        $(#[$meta:meta])*
        $vis:vis unsafe fn $name:ident[$features:literal] = $body:expr;
        ($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)?
    ) => {
        $(#[$meta])*
        ///
        /// # Safety
        #[doc = concat!("The CPU must support `", $features, "`.")]
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = $features)]
        $vis unsafe fn $name($($arg: $ty),*) $(-> $ret)? {
            ($body)($($arg),*)
        }
    };
}
pub(crate) use retarget;

pub mod bits;
pub mod bits_ext;
pub mod bits_fs;
pub mod fastscan;
pub(crate) mod gguf;
pub mod pq;
pub mod pq8;
pub mod scalar;
pub mod sq;
pub mod sums;
#[cfg(target_arch = "x86_64")]
mod x86;

use std::sync::OnceLock;

/// Gives the calling kernel a 64-byte aligned stack frame. Rust only guarantees 16
/// bytes, and LLVM then spills AVX-512 registers to unaligned slots: a spill that
/// happens to straddle a cache line (or a page) costs several times an aligned one,
/// and which slots straddle depends on the stack depth the kernel is called at — the
/// same search ran 12 % slower in the kernel on one thread of a pool than alone.
/// Inlined into a kernel, the aligned local below makes LLVM realign the whole frame,
/// spill slots included. For kernels that spill vector registers in their hot loop.
#[inline(always)]
pub(crate) fn align_frame() {
    #[repr(C, align(64))]
    struct Frame([u8; 64]);
    // (A `let`: a reference to the constant itself would be promoted to a static.)
    let frame = Frame([0; 64]);
    std::hint::black_box(&frame);
}

/// Hints the CPU to bring `data` into the L1 cache ahead of use (nothing elsewhere).
#[inline]
pub fn prefetch_l1<T>(data: &[T]) {
    #[cfg(target_arch = "x86_64")]
    prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }, T>(data);
    #[cfg(not(target_arch = "x86_64"))]
    let _ = data;
}

/// Hints the CPU to bring `data` into the L2 cache ahead of use (nothing elsewhere).
#[inline]
pub fn prefetch_l2<T>(data: &[T]) {
    #[cfg(target_arch = "x86_64")]
    prefetch::<{ std::arch::x86_64::_MM_HINT_T1 }, T>(data);
    #[cfg(not(target_arch = "x86_64"))]
    let _ = data;
}

#[cfg(target_arch = "x86_64")]
#[inline]
fn prefetch<const HINT: i32, T>(data: &[T]) {
    let p = data.as_ptr() as *const i8;
    for off in (0..std::mem::size_of_val(data)).step_by(64) {
        // SAFETY: a prefetch is only a hint and never faults; the address is inside `data`.
        unsafe { std::arch::x86_64::_mm_prefetch::<HINT>(p.add(off)) };
    }
}

/// An instruction-set level of the kernels. Each level includes every feature of the
/// levels before it (the order is `Scalar < Avx2 < Avx512 < Avx512Vbmi`), so a CPU that
/// supports a level supports all lower ones.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum SimdLevel {
    /// Portable code (the compiler's baseline target, SSE2 on x86-64).
    Scalar,
    /// AVX2 with FMA (256-bit registers), and POPCNT.
    Avx2,
    /// AVX-512F and AVX-512BW (512-bit registers, byte and word operations), plus AVX2
    /// and FMA. (Every AVX-512 CPU since Skylake-SP has both.)
    Avx512,
    /// [`SimdLevel::Avx512`] plus AVX-512 VBMI (byte permutes: `vpermi2b` in the 8-bit
    /// PQ block scan, `vpermb` in 4-bit fast-scan) and AVX-512 VNNI (`vpdpbusd`, the
    /// fast-scan sums), AVX-512 VPOPCNTDQ (`vpopcntq`, RaBitQ's sign-plane counts) and
    /// AVX-512VL. Ice Lake, Zen 4 and later (every CPU with VBMI and VNNI has the other
    /// two).
    Avx512Vbmi,
}

impl SimdLevel {
    /// Every level, lowest first.
    pub const ALL: [SimdLevel; 4] = [
        SimdLevel::Scalar,
        SimdLevel::Avx2,
        SimdLevel::Avx512,
        SimdLevel::Avx512Vbmi,
    ];

    /// The name `VECQUANT_SIMD` takes for this level: `scalar`, `avx2`, `avx512` or `vbmi`.
    pub fn name(self) -> &'static str {
        match self {
            SimdLevel::Scalar => "scalar",
            SimdLevel::Avx2 => "avx2",
            SimdLevel::Avx512 => "avx512",
            SimdLevel::Avx512Vbmi => "vbmi",
        }
    }

    /// The level named `name` ([`SimdLevel::name`], or `avx512vbmi`), ignoring case and
    /// surrounding white space; `None` for anything else.
    pub fn from_name(name: &str) -> Option<SimdLevel> {
        let name = name.trim();
        if name.eq_ignore_ascii_case("avx512vbmi") {
            return Some(SimdLevel::Avx512Vbmi);
        }
        SimdLevel::ALL
            .into_iter()
            .find(|l| name.eq_ignore_ascii_case(l.name()))
    }

    /// The best level this CPU supports, whatever `VECQUANT_SIMD` says (detected once).
    pub fn cpu() -> SimdLevel {
        static CPU: OnceLock<SimdLevel> = OnceLock::new();
        *CPU.get_or_init(detect_cpu)
    }

    /// Whether this CPU can run the kernels of this level.
    pub fn is_supported(self) -> bool {
        self <= SimdLevel::cpu()
    }
}

impl std::fmt::Display for SimdLevel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Runtime feature detection: the highest level all of whose features the CPU reports.
fn detect_cpu() -> SimdLevel {
    #[cfg(target_arch = "x86_64")]
    {
        // Every AVX2 CPU has POPCNT; requiring it lets the bit-code kernels use it.
        let avx2 = is_x86_feature_detected!("avx2")
            && is_x86_feature_detected!("fma")
            && is_x86_feature_detected!("popcnt");
        let avx512 =
            avx2 && is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512bw");
        // VBMI, VNNI and VPOPCNTDQ arrived together (Ice Lake, Zen 4); the level needs
        // all three (and VL, which every AVX-512 CPU since Skylake-SP has).
        let vbmi = avx512
            && is_x86_feature_detected!("avx512vbmi")
            && is_x86_feature_detected!("avx512vnni")
            && is_x86_feature_detected!("avx512vpopcntdq")
            && is_x86_feature_detected!("avx512vl");
        if vbmi {
            return SimdLevel::Avx512Vbmi;
        }
        if avx512 {
            return SimdLevel::Avx512;
        }
        if avx2 {
            return SimdLevel::Avx2;
        }
    }
    SimdLevel::Scalar
}

/// The environment variable that caps the SIMD level, for tests and benchmarks.
pub const SIMD_ENV: &str = "VECQUANT_SIMD";

/// The SIMD level the kernels use in this process: [`SimdLevel::cpu`], capped by the
/// `VECQUANT_SIMD` environment variable when it names a level (`scalar`, `avx2`, `avx512`
/// or `vbmi`, any case). The variable is read once, at the first kernel call; a cap above
/// what the CPU has changes nothing, an empty value means no cap, and any other value is
/// ignored with a one-line warning on standard error.
pub fn simd_level() -> SimdLevel {
    static LEVEL: OnceLock<SimdLevel> = OnceLock::new();
    *LEVEL.get_or_init(|| {
        let value = std::env::var_os(SIMD_ENV).map(|v| v.to_string_lossy().into_owned());
        let (level, warning) = capped_level(SimdLevel::cpu(), value.as_deref());
        if let Some(warning) = warning {
            eprintln!("{warning}");
        }
        level
    })
}

/// `cpu` capped by the value of `VECQUANT_SIMD` (`None`: unset), and the warning to print
/// when the value is not a level name.
fn capped_level(cpu: SimdLevel, value: Option<&str>) -> (SimdLevel, Option<String>) {
    match value {
        None => (cpu, None),
        Some(v) if v.trim().is_empty() => (cpu, None),
        Some(v) => match SimdLevel::from_name(v) {
            Some(cap) => (cpu.min(cap), None),
            None => (
                cpu,
                Some(format!(
                    "vecquant: ignoring {SIMD_ENV}={v:?} (expected scalar, avx2, avx512 or \
                     vbmi); using {cpu}"
                )),
            ),
        },
    }
}

type PairFn = unsafe fn(&[f32], &[f32]) -> f32;
type NearestFn = unsafe fn(&[f32], &[f32]) -> (usize, f32);
type BelowFn = unsafe fn(&[f32], &[f32], f32, &mut [f32]) -> u64;

/// The kernels of one SIMD level.
///
/// Invariant: a `Kernels` is only ever used on a CPU that supports its `level` (the
/// tables live in [`TABLES`] and are reached through [`active`] or, in tests,
/// `Kernels::supported`), and each of its function pointers needs at most that level's
/// features. That is what makes its safe methods, and those of the per-module tables it
/// holds, sound.
pub(crate) struct Kernels {
    level: SimdLevel,
    l2_sq: PairFn,
    dot: PairFn,
    nearest: NearestFn,
    below: BelowFn,
    sq: sq::SqKernels,
    fastscan: fastscan::FastScanKernels,
    pq8: pq8::Pq8Kernels,
    pq: pq::PqKernels,
    bits: bits::BitsKernels,
    sums: sums::SumsKernels,
}

/// One table per level, in [`SimdLevel::ALL`] order.
// SAFETY: `Kernels::build` requires each table to be used only on a CPU supporting its
// level; `active` and `Kernels::supported` are the only readers, and both check.
static TABLES: [Kernels; 4] = unsafe {
    [
        Kernels::build(SimdLevel::Scalar),
        Kernels::build(SimdLevel::Avx2),
        Kernels::build(SimdLevel::Avx512),
        Kernels::build(SimdLevel::Avx512Vbmi),
    ]
};

/// The table of [`simd_level`].
#[inline]
fn active() -> &'static Kernels {
    static ACTIVE: OnceLock<&'static Kernels> = OnceLock::new();
    ACTIVE.get_or_init(|| {
        // `simd_level()` is at most `SimdLevel::cpu()`, so the CPU supports this table.
        let table = &TABLES[simd_level() as usize];
        debug_assert_eq!(table.level, simd_level());
        table
    })
}

impl Kernels {
    /// The kernels of `level`.
    ///
    /// # Safety
    /// The result's methods run code compiled for `level`: the caller must only let them
    /// be called on a CPU that supports `level`.
    const unsafe fn build(level: SimdLevel) -> Kernels {
        let (l2_sq, dot): (PairFn, PairFn) = match level {
            #[cfg(target_arch = "x86_64")]
            SimdLevel::Avx2 => (x86::l2_sq_avx2, x86::dot_avx2),
            #[cfg(target_arch = "x86_64")]
            SimdLevel::Avx512 | SimdLevel::Avx512Vbmi => (x86::l2_sq_avx512, x86::dot_avx512),
            _ => (scalar::l2_sq, scalar::dot),
        };
        let nearest: NearestFn = match level {
            #[cfg(target_arch = "x86_64")]
            SimdLevel::Avx2 => nearest_avx2,
            #[cfg(target_arch = "x86_64")]
            SimdLevel::Avx512 | SimdLevel::Avx512Vbmi => nearest_avx512,
            _ => scalar::nearest_lanes,
        };
        let below: BelowFn = match level {
            #[cfg(target_arch = "x86_64")]
            SimdLevel::Avx2 => below_avx2,
            #[cfg(target_arch = "x86_64")]
            SimdLevel::Avx512 | SimdLevel::Avx512Vbmi => x86::below_avx512,
            _ => scalar::below_lanes,
        };
        // SAFETY: the caller takes on the same obligation for the whole table.
        unsafe {
            Kernels {
                level,
                l2_sq,
                dot,
                nearest,
                below,
                sq: sq::SqKernels::for_level(level),
                fastscan: fastscan::FastScanKernels::for_level(level),
                pq8: pq8::Pq8Kernels::for_level(level),
                pq: pq::PqKernels::for_level(level),
                bits: bits::BitsKernels::for_level(level),
                sums: sums::SumsKernels::for_level(level),
            }
        }
    }

    /// The tables of every level up to [`simd_level`], lowest first: what the tests run
    /// against the scalar references.
    #[cfg(test)]
    pub(crate) fn supported() -> impl Iterator<Item = &'static Kernels> {
        // Every level up to `simd_level()` is at most `SimdLevel::cpu()`.
        TABLES.iter().filter(|k| k.level <= simd_level())
    }

    /// This table's level.
    #[cfg(test)]
    pub(crate) fn level(&self) -> SimdLevel {
        self.level
    }

    /// [`l2_sq`] at this table's level.
    #[inline]
    pub(crate) fn l2_sq(&self, a: &[f32], b: &[f32]) -> f32 {
        debug_assert_eq!(a.len(), b.len());
        // SAFETY: the CPU supports `self.level` (type invariant); the kernels read
        // `min(a.len(), b.len())` elements of each slice.
        unsafe { (self.l2_sq)(a, b) }
    }

    /// [`dot`] at this table's level.
    #[inline]
    pub(crate) fn dot(&self, a: &[f32], b: &[f32]) -> f32 {
        debug_assert_eq!(a.len(), b.len());
        // SAFETY: as in `Kernels::l2_sq`.
        unsafe { (self.dot)(a, b) }
    }

    /// [`nearest`] at this table's level.
    #[inline]
    pub(crate) fn nearest(&self, dots: &[f32], norms: &[f32]) -> (usize, f32) {
        // SAFETY: as in `Kernels::l2_sq`; the kernels read `min(dots.len(),
        // norms.len())` elements of each slice.
        unsafe { (self.nearest)(dots, norms) }
    }

    /// [`below`] at this table's level.
    #[inline]
    pub(crate) fn below(&self, dots: &[f32], norms: &[f32], thr: f32, out: &mut [f32]) -> u64 {
        // SAFETY: as in `Kernels::l2_sq`; the kernels read and write only the first
        // elements that `scalar::below` defines.
        unsafe { (self.below)(dots, norms, thr, out) }
    }
}

retarget! {
    /// [`scalar::nearest_lanes`] compiled for AVX2.
    unsafe fn nearest_avx2["avx2"] = scalar::nearest_lanes;
    (dots: &[f32], norms: &[f32]) -> (usize, f32)
}

retarget! {
    /// [`scalar::nearest_lanes`] compiled for AVX-512.
    unsafe fn nearest_avx512["avx512f,avx512bw,avx2"] = scalar::nearest_lanes;
    (dots: &[f32], norms: &[f32]) -> (usize, f32)
}

retarget! {
    /// [`scalar::below_lanes`] compiled for AVX2.
    unsafe fn below_avx2["avx2"] = scalar::below_lanes;
    (dots: &[f32], norms: &[f32], thr: f32, out: &mut [f32]) -> u64
}

pub use scalar::BELOW_CHUNK;

/// The distances of a chunk of GEMM values (up to [`BELOW_CHUNK`]) and the mask of those
/// within `thr`, as [`scalar::below`] defines them: `norms[i] − 2·dots[i]` (L2 less the
/// query's squared norm) or `−dots[i]` (inner product, `norms` empty) into `out`, bit
/// `i` set where that is `≤ thr`. The exact scans' threshold test, a chunk at a time.
#[inline]
pub fn below(dots: &[f32], norms: &[f32], thr: f32, out: &mut [f32]) -> u64 {
    active().below(dots, norms, thr, out)
}

/// The nearest of `k` centroids to a row, from the row's GEMM row `dots` (⟨x, c_j⟩) and
/// the centroids' squared norms `norms`: the first `j` minimising `norms[j] − 2·dots[j]`
/// and that value (add ‖x‖² for the squared distance). NaN values are never chosen;
/// `(0, +∞)` when no value is below +∞. Exactly [`scalar::nearest`]'s answer, in 16
/// vector lanes.
#[inline]
pub fn nearest(dots: &[f32], norms: &[f32]) -> (usize, f32) {
    active().nearest(dots, norms)
}

/// Squared Euclidean distance ‖a − b‖². `a` and `b` must have equal length (checked in
/// debug builds; callers validate dimensions at the API boundary).
#[inline]
pub fn l2_sq(a: &[f32], b: &[f32]) -> f32 {
    active().l2_sq(a, b)
}

/// Inner product ⟨a, b⟩.
#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    active().dot(a, b)
}

/// Squared L2 norms of each `dim`-long row of `data`.
pub fn row_norms_sq(data: &[f32], dim: usize) -> Vec<f32> {
    let k = active();
    data.chunks_exact(dim).map(|r| k.dot(r, r)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs(len: usize, seed: u32) -> (Vec<f32>, Vec<f32>) {
        // A small LCG keeps the test free of RNG crates and fully deterministic.
        let mut s = seed.wrapping_mul(2654435761).wrapping_add(12345);
        let mut next = || {
            s = s.wrapping_mul(1664525).wrapping_add(1013904223);
            (s >> 8) as f32 / (1u32 << 24) as f32 * 2.0 - 1.0
        };
        let a = (0..len).map(|_| next()).collect();
        let b = (0..len).map(|_| next()).collect();
        (a, b)
    }

    fn close(x: f32, y: f32) -> bool {
        (x - y).abs() <= 1e-5 * (1.0 + x.abs().max(y.abs()))
    }

    const LENGTHS: [usize; 12] = [0, 1, 3, 7, 8, 15, 16, 17, 33, 127, 128, 1000];

    #[test]
    fn dispatched_matches_scalar() {
        for (i, &len) in LENGTHS.iter().enumerate() {
            let (a, b) = inputs(len, i as u32);
            assert!(close(l2_sq(&a, &b), scalar::l2_sq(&a, &b)), "l2 len {len}");
            assert!(close(dot(&a, &b), scalar::dot(&a, &b)), "dot len {len}");
        }
        let data: Vec<f32> = (0..3 * 17).map(|i| i as f32 * 0.25 - 3.0).collect();
        let want: Vec<f32> = data.chunks(17).map(|r| scalar::dot(r, r)).collect();
        for (got, want) in row_norms_sq(&data, 17).into_iter().zip(want) {
            assert!(close(got, want), "{got} vs {want}");
        }
    }

    /// Every level's threshold chunk is the one-pass definition's, distance bits and
    /// mask: both metrics, every length from 0 past a chunk, norms shorter than the
    /// values, ±0, infinities and NaN among values, norms and thresholds.
    #[test]
    fn below_equals_the_one_pass_definition() {
        use crate::rng::{RngExt, seeded};
        let mut rng = seeded(33);
        let pick = |rng: &mut crate::rng::SeededRng, trial: u32| match rng.random_range(0..24u32) {
            0 if trial.is_multiple_of(3) => f32::NAN,
            1 if trial % 3 == 1 => f32::INFINITY,
            2 if trial % 3 == 1 => f32::NEG_INFINITY,
            3 => 0.0,
            4 => -0.0,
            _ if trial.is_multiple_of(2) => rng.random_range(-4i32..4) as f32,
            _ => rng.random_range(-100.0f32..100.0),
        };
        for trial in 0..600u32 {
            let len = rng.random_range(0..=70usize);
            let dots: Vec<f32> = (0..len).map(|_| pick(&mut rng, trial)).collect();
            let norms: Vec<f32> = match trial % 4 {
                0 => Vec::new(),
                1 => (0..len.saturating_sub(3))
                    .map(|_| pick(&mut rng, trial))
                    .collect(),
                _ => (0..len).map(|_| pick(&mut rng, trial)).collect(),
            };
            let thr = match trial % 7 {
                0 => f32::INFINITY,
                1 => f32::NAN,
                2 => 0.0,
                _ => pick(&mut rng, trial + 1),
            };
            let mut want = [7.5f32; 80];
            let wm = scalar::below(&dots, &norms, thr, &mut want);
            let n = dots.len().min(BELOW_CHUNK).min(if norms.is_empty() {
                usize::MAX
            } else {
                norms.len()
            });
            assert!(n >= 64 || wm >> n == 0, "trial {trial}: bits past {n}");
            let run = |f: &dyn Fn(&mut [f32]) -> u64| {
                let mut out = [7.5f32; 80];
                let m = f(&mut out);
                (m, out.map(f32::to_bits))
            };
            let mut got = vec![
                run(&|o| scalar::below_lanes(&dots, &norms, thr, o)),
                run(&|o| below(&dots, &norms, thr, o)),
            ];
            got.extend(Kernels::supported().map(|k| run(&|o| k.below(&dots, &norms, thr, o))));
            for (i, g) in got.into_iter().enumerate() {
                assert_eq!(
                    g,
                    (wm, want.map(f32::to_bits)),
                    "run {i} trial {trial} len {len}"
                );
            }
        }
        // The definition itself, on a worked chunk.
        let mut out = [0.0f32; 4];
        let m = scalar::below(
            &[1.0, 2.0, -1.0, f32::NAN],
            &[3.0, 3.0, 3.0, 3.0],
            1.0,
            &mut out,
        );
        assert_eq!(out[..3], [1.0, -1.0, 5.0]);
        assert!(out[3].is_nan());
        assert_eq!(m, 0b0011);
        let m = scalar::below(&[1.0, -2.0, 0.0], &[], -1.0, &mut out);
        assert_eq!(
            (out[0], out[1], out[2].to_bits()),
            (-1.0, 2.0, (-0.0f32).to_bits())
        );
        assert_eq!(m, 0b001);
    }

    /// Every level's nearest centroid is the one-pass definition's, index and value
    /// bits: lengths around the 16 lanes, many ties (values on a coarse grid), ±0,
    /// infinities and NaN, and rows where nothing is below +∞.
    #[test]
    fn nearest_equals_the_one_pass_definition() {
        use crate::rng::{RngExt, seeded};
        let mut rng = seeded(21);
        for len in [0usize, 1, 2, 15, 16, 17, 31, 32, 33, 100, 256, 1000, 4096] {
            for trial in 0..40 {
                let pick = |rng: &mut crate::rng::SeededRng| match rng.random_range(0..20u32) {
                    0 if trial % 4 == 0 => f32::NAN,
                    1 if trial % 4 == 1 => f32::INFINITY,
                    2 if trial % 4 == 1 => f32::NEG_INFINITY,
                    3 => 0.0,
                    4 => -0.0,
                    _ if trial % 2 == 0 => rng.random_range(-4i32..4) as f32,
                    _ => rng.random_range(-100.0f32..100.0),
                };
                let dots: Vec<f32> = (0..len).map(|_| pick(&mut rng)).collect();
                let mut norms: Vec<f32> = (0..len).map(|_| pick(&mut rng)).collect();
                if trial == 39 {
                    // Nothing below +∞: (0, +∞).
                    norms
                        .iter_mut()
                        .enumerate()
                        .for_each(|(j, v)| *v = if j % 2 == 0 { f32::INFINITY } else { f32::NAN });
                }
                let (wi, wv) = scalar::nearest(&dots, &norms);
                let mut got = vec![scalar::nearest_lanes(&dots, &norms), nearest(&dots, &norms)];
                got.extend(Kernels::supported().map(|k| k.nearest(&dots, &norms)));
                for (i, v) in got {
                    assert_eq!(
                        (i, v.to_bits()),
                        (wi, wv.to_bits()),
                        "len {len} trial {trial}"
                    );
                }
            }
        }
    }

    #[test]
    fn every_level_matches_scalar() {
        for k in Kernels::supported() {
            let name = k.level();
            for (i, &len) in LENGTHS.iter().enumerate() {
                let (a, b) = inputs(len, 100 + i as u32);
                let (l2, dp) = (
                    |x: &[f32], y: &[f32]| k.l2_sq(x, y),
                    |x: &[f32], y: &[f32]| k.dot(x, y),
                );
                assert!(
                    close(l2(&a, &b), scalar::l2_sq(&a, &b)),
                    "{name} l2 len {len}"
                );
                assert!(
                    close(dp(&a, &b), scalar::dot(&a, &b)),
                    "{name} dot len {len}"
                );
                // Zeros.
                let z = vec![0.0f32; len];
                assert_eq!(l2(&z, &z), 0.0);
                assert_eq!(dp(&z, &a), 0.0);
                // Large values: relative agreement still holds.
                let big_a: Vec<f32> = a.iter().map(|x| x * 1e15).collect();
                let big_b: Vec<f32> = b.iter().map(|x| x * 1e15).collect();
                let (s, v) = (scalar::l2_sq(&big_a, &big_b), l2(&big_a, &big_b));
                assert!(
                    (s - v).abs() <= 1e-4 * s.abs().max(1.0),
                    "{name} big l2 {s} {v}"
                );
            }
            let a = [1.0, 2.0, 3.0];
            let b = [4.0, 6.0, 3.0];
            assert_eq!(k.l2_sq(&a, &b), 25.0, "{name}");
            assert_eq!(k.dot(&a, &b), 25.0, "{name}");
        }
    }

    #[test]
    fn known_values() {
        let a = [1.0, 2.0, 3.0];
        let b = [4.0, 6.0, 3.0];
        assert_eq!(scalar::l2_sq(&a, &b), 25.0);
        assert_eq!(scalar::dot(&a, &b), 25.0);
        assert_eq!(l2_sq(&a, &b), 25.0);
        assert_eq!(dot(&a, &b), 25.0);
    }

    #[test]
    fn level_names_round_trip() {
        for level in SimdLevel::ALL {
            assert_eq!(SimdLevel::from_name(level.name()), Some(level));
            assert_eq!(level.to_string(), level.name());
        }
        assert_eq!(SimdLevel::from_name(" AVX512 "), Some(SimdLevel::Avx512));
        assert_eq!(
            SimdLevel::from_name("Avx512Vbmi"),
            Some(SimdLevel::Avx512Vbmi)
        );
        for bad in ["", "avx", "sse2", "avx-512", "native"] {
            assert_eq!(SimdLevel::from_name(bad), None, "{bad:?}");
        }
        assert!(SimdLevel::ALL.windows(2).all(|w| w[0] < w[1]));
    }

    /// The `VECQUANT_SIMD` cap, computed from given values (the process's real
    /// environment is not touched).
    #[test]
    fn environment_caps_the_level() {
        use SimdLevel::*;
        for cpu in SimdLevel::ALL {
            assert_eq!(capped_level(cpu, None), (cpu, None));
            assert_eq!(capped_level(cpu, Some("")), (cpu, None));
            assert_eq!(capped_level(cpu, Some("  ")), (cpu, None));
            for cap in SimdLevel::ALL {
                assert_eq!(capped_level(cpu, Some(cap.name())), (cpu.min(cap), None));
            }
            // An unknown value is ignored, with a warning naming it and the variable.
            let (level, warning) = capped_level(cpu, Some("avx3"));
            assert_eq!(level, cpu);
            let warning = warning.expect("a warning");
            assert!(
                warning.contains("VECQUANT_SIMD") && warning.contains("avx3"),
                "{warning}"
            );
            assert_eq!(warning.lines().count(), 1);
        }
        assert_eq!(capped_level(Avx512Vbmi, Some("scalar")).0, Scalar);
        assert_eq!(capped_level(Avx512Vbmi, Some("AVX2")).0, Avx2);
        assert_eq!(capped_level(Avx512Vbmi, Some("avx512")).0, Avx512);
        // A cap above the CPU cannot raise the level.
        assert_eq!(capped_level(Avx2, Some("vbmi")).0, Avx2);
        assert_eq!(capped_level(Scalar, Some("avx512")).0, Scalar);
    }

    /// The tables are in level order, the active one is the process's level, and the
    /// tests see every level up to it.
    #[test]
    fn tables_follow_the_levels() {
        for (table, level) in TABLES.iter().zip(SimdLevel::ALL) {
            assert_eq!(table.level, level);
        }
        assert!(simd_level() <= SimdLevel::cpu());
        assert_eq!(active().level, simd_level());
        let tested: Vec<SimdLevel> = Kernels::supported().map(|k| k.level()).collect();
        let want: Vec<SimdLevel> = SimdLevel::ALL
            .into_iter()
            .filter(|&l| l <= simd_level())
            .collect();
        assert_eq!(tested, want);
        assert!(SimdLevel::Scalar.is_supported());
        if std::env::var_os(SIMD_ENV).is_none() {
            assert_eq!(simd_level(), SimdLevel::cpu());
        }
        eprintln!(
            "kernel levels tested: {tested:?} (CPU: {})",
            SimdLevel::cpu()
        );
    }
}
