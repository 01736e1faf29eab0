//! Golden search results on disk, shared by `tests/golden.rs` and `tests/fixtures_v1.rs`.
//!
//! A golden file holds named *runs*; a run is the result lists of a fixed set of queries.
//! Each neighbour is stored exactly — its id and the bit pattern of its f32 distance — so
//! a comparison is bit equality, never a tolerance. Layout (all little-endian):
//!
//! ```text
//! magic "VQGOLD1\n"
//! u32 number of runs
//! per run: u8 name length, name (UTF-8), u32 number of queries,
//!          per query: u32 number of neighbours, then per neighbour u32 id, u32 f32 bits
//! ```
//!
//! Ids are stored as u32 (the data sets here hold a few thousand vectors) to keep the
//! committed files small.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use vecquant::Neighbor;
use vecquant::{SimdLevel, simd_level};

const MAGIC: &[u8; 8] = b"VQGOLD1\n";

/// Named runs: run name → one result list per query.
pub type Runs = BTreeMap<String, Vec<Vec<Neighbor>>>;

/// Whether `VECQUANT_BLESS=1` asks the tests to (re)write their golden files.
pub fn blessing() -> bool {
    std::env::var("VECQUANT_BLESS").is_ok_and(|v| v == "1")
}

/// The name of the SIMD level this process's kernels run at (golden files are per level:
/// see `tests/golden.rs`).
pub fn level_dir() -> &'static str {
    match simd_level() {
        SimdLevel::Scalar => "scalar",
        SimdLevel::Avx2 => "avx2",
        // The committed goldens were made on an AVX-512 machine with VBMI.
        SimdLevel::Avx512Vbmi => "avx512",
        SimdLevel::Avx512 => "avx512-novbmi",
        _ => "other",
    }
}

/// The golden directory `<crate>/<rel>/<level>` to compare with (or bless into), or why
/// there is none: `VECQUANT_SIMD` is set (it caps vecquant's kernels but not faer's, so
/// results under it match no real machine), or nothing was blessed for this level.
pub fn golden_dir(rel: &str) -> Result<PathBuf, String> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join(rel)
        .join(level_dir());
    if let Some(cap) = std::env::var_os("VECQUANT_SIMD") {
        assert!(
            !blessing(),
            "do not bless with VECQUANT_SIMD set: it caps vecquant's kernels but not faer's, \
             so the files would match no real machine"
        );
        return Err(format!(
            "VECQUANT_SIMD={} is set: goldens are per real CPU level",
            cap.to_string_lossy()
        ));
    }
    if !dir.is_dir() && !blessing() {
        return Err(format!(
            "no golden files for SIMD level {} ({} missing)",
            level_dir(),
            dir.display()
        ));
    }
    Ok(dir)
}

/// Serialises `runs` in the layout above.
pub fn encode(runs: &Runs) -> Vec<u8> {
    let mut out = MAGIC.to_vec();
    let u32le = |out: &mut Vec<u8>, v: usize| {
        let v = u32::try_from(v).expect("golden counts and ids fit in u32");
        out.extend_from_slice(&v.to_le_bytes());
    };
    u32le(&mut out, runs.len());
    for (name, queries) in runs {
        let name_len = u8::try_from(name.len()).expect("run names are short");
        out.push(name_len);
        out.extend_from_slice(name.as_bytes());
        u32le(&mut out, queries.len());
        for hits in queries {
            u32le(&mut out, hits.len());
            for n in hits {
                u32le(&mut out, n.id as usize);
                out.extend_from_slice(&n.distance.to_bits().to_le_bytes());
            }
        }
    }
    out
}

/// Parses a file written by [`encode`]; the error says where it is malformed.
pub fn decode(bytes: &[u8]) -> Result<Runs, String> {
    let mut c = Cursor { bytes, pos: 0 };
    if c.take(8)? != MAGIC {
        return Err("not a golden file (bad magic)".into());
    }
    let mut runs = Runs::new();
    for _ in 0..c.u32()? {
        let len = c.take(1)?[0] as usize;
        let name = std::str::from_utf8(c.take(len)?)
            .map_err(|e| format!("run name: {e}"))?
            .to_string();
        let nq = c.u32()? as usize;
        let mut queries = Vec::with_capacity(nq.min(1 << 12));
        for _ in 0..nq {
            let k = c.u32()? as usize;
            let mut hits = Vec::with_capacity(k.min(1 << 12));
            for _ in 0..k {
                let id = c.u32()? as u64;
                let distance = f32::from_bits(c.u32()?);
                hits.push(Neighbor { id, distance });
            }
            queries.push(hits);
        }
        runs.insert(name, queries);
    }
    if c.pos != bytes.len() {
        return Err(format!("{} trailing bytes", bytes.len() - c.pos));
    }
    Ok(runs)
}

struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let s = self
            .bytes
            .get(self.pos..self.pos + n)
            .ok_or_else(|| format!("truncated at byte {} (wanted {n} more)", self.pos))?;
        self.pos += n;
        Ok(s)
    }

    fn u32(&mut self) -> Result<u32, String> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
}

fn show(hits: &[Neighbor]) -> String {
    hits.iter()
        .map(|n| format!("{}:{}({:#010x})", n.id, n.distance, n.distance.to_bits()))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Every difference between `want` and `got`, one line each (empty when bit-identical).
pub fn differences(want: &Runs, got: &Runs) -> Vec<String> {
    let mut out = Vec::new();
    for name in want
        .keys()
        .chain(got.keys().filter(|k| !want.contains_key(*k)))
    {
        match (want.get(name), got.get(name)) {
            (Some(_), None) => out.push(format!("run `{name}`: in the golden file, not produced")),
            (None, Some(_)) => out.push(format!("run `{name}`: produced, not in the golden file")),
            (Some(w), Some(g)) => {
                if w.len() != g.len() {
                    out.push(format!(
                        "run `{name}`: {} queries, golden has {}",
                        g.len(),
                        w.len()
                    ));
                }
                for (q, (wq, gq)) in w.iter().zip(g).enumerate() {
                    let same = wq.len() == gq.len()
                        && wq.iter().zip(gq).all(|(a, b)| {
                            a.id == b.id && a.distance.to_bits() == b.distance.to_bits()
                        });
                    if !same {
                        out.push(format!(
                            "run `{name}` query {q}:\n    golden {}\n    now    {}",
                            show(wq),
                            show(gq)
                        ));
                    }
                }
            }
            (None, None) => unreachable!("name comes from one of the maps"),
        }
    }
    out
}

/// Compares `got` with the golden file at `path`, or rewrites the file when blessing.
/// Returns the problems found (empty = identical, or blessed).
pub fn check_or_bless(path: &Path, got: &Runs) -> Vec<String> {
    if blessing() {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).expect("create the golden directory");
        }
        std::fs::write(path, encode(got)).expect("write the golden file");
        return Vec::new();
    }
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) => {
            return vec![format!(
                "{}: {e} (bless with VECQUANT_BLESS=1 to create it)",
                path.display()
            )];
        }
    };
    match decode(&bytes) {
        Ok(want) => differences(&want, got)
            .into_iter()
            .map(|d| format!("{}: {d}", path.display()))
            .collect(),
        Err(e) => vec![format!("{}: {e}", path.display())],
    }
}
