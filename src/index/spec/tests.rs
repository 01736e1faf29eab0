//! Tests of the typed spec: every form's tree, canonical display and round trip, each
//! rule's error, the dimension rules, and a cross-check against the per-kind parsers
//! and constructors the typed spec replaces.

use super::*;
use crate::index::{hnsw, ivf};
use crate::quant::scalar::SqConfig;

fn parse(s: &str) -> IndexSpec {
    s.parse()
        .unwrap_or_else(|e| panic!("`{s}` should parse: {e}"))
}

fn sq(bits: u8, variant: SqVariant) -> ScalarSpec {
    ScalarSpec { bits, variant }
}

fn pq(m: usize, nbits: u8) -> PqParams {
    PqParams { m, nbits }
}

/// The rule message of a spec that must not parse; checks the error's shape too.
fn parse_error(s: &str) -> String {
    match s.parse::<IndexSpec>() {
        Ok(t) => panic!("`{s}` should not parse, got {t:?}"),
        Err(Error::Spec { spec, message }) => {
            assert_eq!(spec, s.trim());
            assert!(
                message.ends_with(&format!("; accepted forms: {ACCEPTED}")),
                "{message}"
            );
            message
        }
        Err(e) => panic!("`{s}`: expected Error::Spec, got {e}"),
    }
}

#[test]
fn parses_and_rejects() {
    let o = BuildOptions::default();
    assert_eq!(new_index("flat", 4, &o).unwrap().spec(), "Flat");
    let e = new_index("IVF", 4, &o).err().unwrap().to_string();
    assert!(e.contains("accepted forms"), "{e}");
    assert!(new_index("", 4, &o).is_err());
    assert!(new_index("Flat", 0, &o).is_err());
}

#[test]
fn every_form_parses_to_its_tree_and_canonical_name() {
    use InnerQuantizer as I;
    use SqVariant::*;
    let cases: Vec<(&str, IndexSpec, &str)> = vec![
        ("Flat", IndexSpec::Flat, "Flat"),
        ("  fLaT\t", IndexSpec::Flat, "Flat"),
        ("sq8", IndexSpec::Scalar(sq(8, Default)), "SQ8"),
        ("SQ4", IndexSpec::Scalar(sq(4, Default)), "SQ4"),
        ("SQ8u", IndexSpec::Scalar(sq(8, Uniform)), "SQ8u"),
        ("SQ4U", IndexSpec::Scalar(sq(4, Uniform)), "SQ4u"),
        ("SQ8opt", IndexSpec::Scalar(sq(8, OptimalRange)), "SQ8opt"),
        ("SQ4opt", IndexSpec::Scalar(sq(4, OptimalRange)), "SQ4opt"),
        ("SQ8LM", IndexSpec::Scalar(sq(8, LloydMax)), "SQ8lm"),
        ("SQ4lm", IndexSpec::Scalar(sq(4, LloydMax)), "SQ4lm"),
        ("SQ8nq", IndexSpec::Scalar(sq(8, NormalQuantile)), "SQ8nq"),
        ("sq4nq", IndexSpec::Scalar(sq(4, NormalQuantile)), "SQ4nq"),
        (
            "PQ16",
            IndexSpec::Product {
                opq: false,
                pq: pq(16, 8),
            },
            "PQ16",
        ),
        (
            "pq032X4FS",
            IndexSpec::Product {
                opq: false,
                pq: pq(32, 4),
            },
            "PQ32x4fs",
        ),
        (
            "PQ4096",
            IndexSpec::Product {
                opq: false,
                pq: pq(4096, 8),
            },
            "PQ4096",
        ),
        (
            "PQ256x4fs",
            IndexSpec::Product {
                opq: false,
                pq: pq(256, 4),
            },
            "PQ256x4fs",
        ),
        (
            "OPQ16,PQ16",
            IndexSpec::Product {
                opq: true,
                pq: pq(16, 8),
            },
            "OPQ16,PQ16",
        ),
        (
            " opq16 , pq16x4fs ",
            IndexSpec::Product {
                opq: true,
                pq: pq(16, 4),
            },
            "OPQ16,PQ16x4fs",
        ),
        (
            "IVF1024,Flat",
            IndexSpec::Ivf {
                opq: false,
                nlist: 1024,
                inner: I::Flat,
            },
            "IVF1024,Flat",
        ),
        (
            "ivf1,flat",
            IndexSpec::Ivf {
                opq: false,
                nlist: 1,
                inner: I::Flat,
            },
            "IVF1,Flat",
        ),
        (
            "IVF1048576,SQ8",
            IndexSpec::Ivf {
                opq: false,
                nlist: ivf::MAX_NLIST,
                inner: I::Scalar(sq(8, Default)),
            },
            "IVF1048576,SQ8",
        ),
        (
            "IVF256, sq4NQ",
            IndexSpec::Ivf {
                opq: false,
                nlist: 256,
                inner: I::Scalar(sq(4, NormalQuantile)),
            },
            "IVF256,SQ4nq",
        ),
        (
            "IVF1024,PQ32",
            IndexSpec::Ivf {
                opq: false,
                nlist: 1024,
                inner: I::Product(pq(32, 8)),
            },
            "IVF1024,PQ32",
        ),
        (
            "IVF1024,PQ32x4fs",
            IndexSpec::Ivf {
                opq: false,
                nlist: 1024,
                inner: I::Product(pq(32, 4)),
            },
            "IVF1024,PQ32x4fs",
        ),
        (
            "OPQ16,IVF1024,PQ16",
            IndexSpec::Ivf {
                opq: true,
                nlist: 1024,
                inner: I::Product(pq(16, 8)),
            },
            "OPQ16,IVF1024,PQ16",
        ),
        (
            "opq16, ivf1024, pq16x4fs",
            IndexSpec::Ivf {
                opq: true,
                nlist: 1024,
                inner: I::Product(pq(16, 4)),
            },
            "OPQ16,IVF1024,PQ16x4fs",
        ),
        (
            "HNSW32",
            IndexSpec::Hnsw {
                m: 32,
                inner: I::Flat,
            },
            "HNSW32",
        ),
        (
            "hnsw32,FLAT",
            IndexSpec::Hnsw {
                m: 32,
                inner: I::Flat,
            },
            "HNSW32",
        ),
        (
            "HNSW2",
            IndexSpec::Hnsw {
                m: 2,
                inner: I::Flat,
            },
            "HNSW2",
        ),
        (
            "HNSW128,SQ8",
            IndexSpec::Hnsw {
                m: hnsw::MAX_M,
                inner: I::Scalar(sq(8, Default)),
            },
            "HNSW128,SQ8",
        ),
        (
            "HNSW16,SQ4lm",
            IndexSpec::Hnsw {
                m: 16,
                inner: I::Scalar(sq(4, LloydMax)),
            },
            "HNSW16,SQ4lm",
        ),
        (
            "HNSW16,pq8",
            IndexSpec::Hnsw {
                m: 16,
                inner: I::Product(pq(8, 8)),
            },
            "HNSW16,PQ8",
        ),
    ];
    for (input, tree, canonical) in cases {
        let got = parse(input);
        assert_eq!(got, tree, "{input}");
        assert_eq!(got.to_string(), canonical, "{input}");
        assert_eq!(parse(canonical), tree, "{canonical}");
    }
}

#[test]
fn scalar_specs_have_their_variants_configs() {
    let all: Vec<ScalarSpec> = ScalarSpec::all().collect();
    assert_eq!(all.len(), 10);
    let names: Vec<String> = all.iter().map(ScalarSpec::name).collect();
    assert_eq!(
        names.join(", "),
        "SQ8, SQ4, SQ8u, SQ4u, SQ8opt, SQ4opt, SQ8lm, SQ4lm, SQ8nq, SQ4nq"
    );
    for s in all {
        let want = match s.variant {
            SqVariant::Default if s.bits == 8 => SqConfig::optimal_range(8),
            SqVariant::Default => SqConfig::lloyd_max(4),
            SqVariant::Uniform => SqConfig::uniform(s.bits),
            SqVariant::OptimalRange => SqConfig::optimal_range(s.bits),
            SqVariant::LloydMax => SqConfig::lloyd_max(s.bits),
            SqVariant::NormalQuantile => SqConfig::normal_quantile(s.bits),
        };
        assert_eq!(s.config(), want, "{s}");
        assert_eq!(s.to_string(), s.name());
        assert_eq!(parse(&s.name()), IndexSpec::Scalar(s));
    }
    assert_eq!(
        sq(8, SqVariant::Default).config(),
        SqConfig::optimal_range(8)
    );
    assert_eq!(sq(4, SqVariant::Default).config(), SqConfig::lloyd_max(4));
}

/// Each rule's error names the rule, with the numbers involved.
#[test]
fn rule_errors_name_the_rule() {
    let cases: &[(&str, &[&str])] = &[
        ("", &["empty spec"]),
        ("   ", &["empty spec"]),
        ("PQ8,,", &["empty component"]),
        (",PQ8", &["empty component"]),
        ("Flta", &["unknown index type `Flta`"]),
        ("LSH", &["unknown index type `LSH`"]),
        (
            "IVF0,Flat",
            &["IVF0", "nlist (the number of lists) must be at least 1"],
        ),
        (
            "IVF1048577,Flat",
            &["nlist must be at most 1048576, got 1048577"],
        ),
        ("IVF,Flat", &["`IVF` needs a list count (nlist)"]),
        ("IVFx,PQ8", &["must be a decimal number, not `x`"]),
        (
            "IVF1024",
            &["`IVF1024` needs an inner quantizer", "IVF1024,PQ16x4fs"],
        ),
        (
            "IVF16,HNSW32",
            &["IVF's inner quantizer must be Flat, SQ…, RaBitQ[{b}] or PQ{M}[x4fs], not `HNSW32`"],
        ),
        ("IVF64,OPQ16,PQ16", &["OPQ comes before IVF"]),
        ("PQ16,IVF64", &["`PQ16` comes after IVF", "IVF{nlist},PQ16"]),
        (
            "HNSW1",
            &["HNSW's M (links per node) must be between 2 and 128, got 1"],
        ),
        ("HNSW129,SQ8", &["must be between 2 and 128, got 129"]),
        ("HNSW0", &["got 0"]),
        ("HNSW", &["`HNSW` needs HNSW's M"]),
        (
            "HNSW32,PQ16x4fs",
            &["HNSW stores 8-bit PQ codes only", "write HNSW32,PQ16"],
        ),
        (
            "HNSW32,IVF8,Flat",
            &["HNSW's inner quantizer must be Flat, SQ…, RaBitQ[{b}] or PQ{m}, not `IVF8`"],
        ),
        (
            "HNSW32,SQ8,PQ8",
            &["`HNSW32,SQ8` is a complete spec", "(got `,PQ8`)"],
        ),
        ("Flat,PQ8", &["`Flat` is a complete spec"]),
        ("OPQ16,PQ32", &["OPQ's M (16) must equal PQ's M (32)"]),
        ("OPQ8,PQ16x4fs", &["OPQ's M (8) must equal PQ's M (16)"]),
        ("OPQ8,IVF64,PQ16", &["OPQ's M (8) must equal PQ's M (16)"]),
        (
            "OPQ16",
            &["`OPQ16` must be followed by PQ16, PQ16x4fs or IVF{nlist},PQ16[x4fs]"],
        ),
        ("OPQ16,SQ8", &["OPQ{M} must be followed by", "not `SQ8`"]),
        (
            "OPQ16,IVF64",
            &[
                "`OPQ16,IVF64` needs its product quantizer",
                "OPQ16,IVF64,PQ16",
            ],
        ),
        (
            "OPQ16,IVF64,SQ8",
            &["after OPQ{M},IVF{nlist} comes PQ{M} or PQ{M}x4fs, not `SQ8`"],
        ),
        (
            "OPQ16,IVF64,PQ16,Flat",
            &["`OPQ16,IVF64,PQ16` is a complete spec"],
        ),
        ("OPQ,PQ16", &["`OPQ` needs OPQ's M"]),
        (
            "SQ8x",
            &[
                "unknown scalar-quantizer variant `x`",
                "SQ8, SQ4, SQ8u, SQ4u, SQ8opt, SQ4opt, SQ8lm, SQ4lm, SQ8nq, SQ4nq",
            ],
        ),
        ("IVF64,SQ4fp", &["unknown scalar-quantizer variant `fp`"]),
        (
            "SQ6",
            &["8 or 4 bits per dimension, not 6", "SQ8, SQ4, SQ8u"],
        ),
        ("SQ", &["`SQ` needs a bit width"]),
        ("PQ0", &["PQ0: M (sub-quantizers) must be at least 1"]),
        (
            "PQ4097",
            &["M must be at most 4096 sub-quantizers, got 4097"],
        ),
        (
            "PQ300x4fs",
            &[
                "fast-scan supports at most 256 sub-quantizers",
                "got M = 300",
            ],
        ),
        ("IVF64,PQ257x4fs", &["fast-scan supports at most 256"]),
        ("PQ16x5fs", &["unknown PQ suffix `x5fs`", "PQ{M}x4fs 4-bit"]),
        ("PQ16x8", &["unknown PQ suffix `x8`"]),
        ("PQx4fs", &["`PQx4fs` needs PQ's M"]),
        ("PQ+16", &["must be a decimal number, not `+16`"]),
        ("PQ 16", &["must be a decimal number, not ` 16`"]),
        (
            "PQ99999999999999999999999",
            &["PQ's M 99999999999999999999999 is too large"],
        ),
    ];
    for (s, wants) in cases {
        let m = parse_error(s);
        for w in *wants {
            assert!(m.contains(w), "`{s}`: {m:?} lacks {w:?}");
        }
    }
}

/// Trees built in code are checked by `validate` with the same rules.
#[test]
fn validate_checks_trees_built_in_code() {
    use InnerQuantizer as I;
    let bad: &[(IndexSpec, &str)] = &[
        (IndexSpec::Scalar(sq(5, SqVariant::Uniform)), "8 or 4 bits"),
        (
            IndexSpec::Product {
                opq: false,
                pq: pq(8, 5),
            },
            "5-bit codes are not supported",
        ),
        (
            IndexSpec::Ivf {
                opq: true,
                nlist: 16,
                inner: I::Flat,
            },
            "must be PQ{M} or PQ{M}x4fs, not Flat",
        ),
        (
            IndexSpec::Ivf {
                opq: false,
                nlist: 0,
                inner: I::Flat,
            },
            "at least 1",
        ),
        (
            IndexSpec::Hnsw {
                m: 1000,
                inner: I::Flat,
            },
            "between 2 and 128",
        ),
        (
            IndexSpec::Hnsw {
                m: 16,
                inner: I::Product(pq(8, 4)),
            },
            "8-bit PQ codes only",
        ),
    ];
    for (t, want) in bad {
        let e = t.validate().unwrap_err().to_string();
        assert!(e.contains(want), "{t:?}: {e}");
        let e = t.check_dim(16).unwrap_err().to_string();
        assert!(e.contains(want), "{t:?}: {e}");
    }
    assert!(parse("OPQ8,IVF16,PQ8x4fs").validate().is_ok());
}

#[test]
fn check_dim_lists_the_m_that_divide_d() {
    let cases: &[(&str, usize, &str)] = &[
        (
            "PQ7",
            128,
            "PQ7: M = 7 does not divide d = 128 (PQ splits a vector into M sub-vectors of d/M \
             dimensions); M that divide 128: 1, 2, 4, 8, 16, 32, 64, 128",
        ),
        (
            "PQ7x4fs",
            1024,
            "M = 7 does not divide d = 1024 (PQ splits a vector into M sub-vectors of d/M \
             dimensions); fast-scan M (at most 256) that divide 1024: 1, 2, 4, 8, 16, 32, 64, \
             128, 256",
        ),
        (
            "OPQ12,PQ12",
            128,
            "OPQ12,PQ12: M = 12 does not divide d = 128 (OPQ rotates all d dimensions, then PQ \
             splits them into M sub-vectors of d/M); M that divide 128: 1, 2, 4, 8, 16, 32, 64, \
             128",
        ),
        (
            "IVF1024,PQ7",
            96,
            "IVF1024,PQ7: M = 7 does not divide d = 96 (PQ splits a vector into M sub-vectors \
             of d/M dimensions); M that divide 96: 1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 96",
        ),
        (
            "OPQ16,IVF64,PQ16x4fs",
            100,
            "OPQ16,IVF64,PQ16x4fs: M = 16 does not divide d = 100 (OPQ rotates",
        ),
        ("HNSW32,PQ5", 16, "HNSW32,PQ5: M = 5 does not divide d = 16"),
        ("PQ3", 7, "M that divide 7: 1, 7"),
        ("PQ2", 1, "M that divide 1: 1"),
    ];
    for (s, d, want) in cases {
        let e = parse(s).check_dim(*d).unwrap_err();
        assert!(
            matches!(&e, Error::InvalidParameter { name, .. } if name == "M"),
            "{e:?}"
        );
        let e = e.to_string();
        assert!(e.contains(want), "`{s}`, d = {d}: {e}");
    }
    // An 8-bit M list goes past 256 (up to 4096); a fast-scan one stops at 256.
    let e = parse("PQ3").check_dim(1024).unwrap_err().to_string();
    assert!(e.ends_with("256, 512, 1024"), "{e}");

    for s in [
        "Flat",
        "SQ8",
        "SQ4nq",
        "IVF16,Flat",
        "IVF16,SQ4",
        "HNSW32",
        "HNSW32,SQ8u",
    ] {
        for d in [1, 7, 13, 100] {
            parse(s).check_dim(d).unwrap();
        }
        assert!(
            parse(s)
                .check_dim(0)
                .unwrap_err()
                .to_string()
                .contains("dim")
        );
    }
    for (s, d) in [
        ("PQ16", 128),
        ("PQ128x4fs", 128),
        ("OPQ8,PQ8", 64),
        ("IVF1,PQ1", 3),
        ("OPQ4,IVF8,PQ4x4fs", 12),
        ("HNSW8,PQ4", 12),
    ] {
        parse(s).check_dim(d).unwrap();
        assert!(parse(s).check_dim(0).is_err());
    }
}

#[test]
fn divisors_are_all_and_only_the_divisors() {
    for n in 1..=600 {
        let brute: Vec<usize> = (1..=n).filter(|v| n % v == 0).collect();
        assert_eq!(divisors(n), brute, "{n}");
    }
    assert_eq!(divisors(1 << 24).len(), 25);
}

#[test]
fn accessors() {
    /// Spec, kind, nlist, uses nprobe, uses ef, needs training.
    type Row = (&'static str, &'static str, Option<usize>, bool, bool, bool);
    let cases: &[Row] = &[
        ("Flat", "flat", None, false, false, false),
        ("SQ8", "codes", None, false, false, true),
        ("PQ8x4fs", "pq", None, false, false, true),
        ("OPQ8,PQ8", "pq", None, false, false, true),
        ("IVF64,Flat", "ivf", Some(64), true, false, true),
        ("OPQ8,IVF32,PQ8", "ivf", Some(32), true, false, true),
        ("HNSW16", "hnsw", None, false, true, false),
        ("HNSW16,SQ4", "hnsw", None, false, true, true),
        ("HNSW16,PQ8", "hnsw", None, false, true, true),
    ];
    for &(s, kind, nlist, nprobe, ef, train) in cases {
        let t = parse(s);
        assert_eq!(
            (
                t.kind(),
                t.nlist(),
                t.uses_nprobe(),
                t.uses_ef(),
                t.needs_training()
            ),
            (kind, nlist, nprobe, ef, train),
            "{s}"
        );
        assert_eq!(t.is_ivf(), kind == "ivf");
        assert_eq!(t.is_hnsw(), kind == "hnsw");
    }
}

#[test]
fn conversions_to_and_from_the_on_disk_forms() {
    let mut inners = vec![InnerQuantizer::Flat];
    inners.extend(ScalarSpec::all().map(InnerQuantizer::Scalar));
    for m in [1, 8, 16, 256] {
        for nbits in [8, 4] {
            inners.push(InnerQuantizer::Product(pq(m, nbits)));
        }
    }
    for q in &inners {
        assert_eq!(
            InnerQuantizer::from_inner_spec(&q.to_inner_spec()),
            Some(*q),
            "{q}"
        );
    }
    // What the old IVF parser stores is what the typed spec converts to.
    assert_eq!(
        InnerQuantizer::Scalar(sq(4, SqVariant::NormalQuantile)).to_inner_spec(),
        InnerSpec::Scalar {
            name: "SQ4nq".into(),
            config: SqConfig::normal_quantile(4),
        }
    );
    let rejected = [
        InnerSpec::Scalar {
            name: "SQ9".into(),
            config: SqConfig::uniform(8),
        },
        InnerSpec::Scalar {
            name: "SQ8".into(),
            config: SqConfig::uniform(4),
        },
        InnerSpec::Scalar {
            name: "SQ8,PQ8".into(),
            config: SqConfig::uniform(8),
        },
        InnerSpec::Product { m: 0, nbits: 8 },
        InnerSpec::Product { m: 16, nbits: 5 },
        InnerSpec::Product { m: 300, nbits: 4 },
    ];
    for r in &rejected {
        assert_eq!(InnerQuantizer::from_inner_spec(r), None, "{r:?}");
    }
    // A file's own trained configuration is kept by the loader; the name decides.
    let custom = InnerSpec::Scalar {
        name: "SQ8".into(),
        config: SqConfig::uniform(8),
    };
    assert_eq!(
        InnerQuantizer::from_inner_spec(&custom),
        Some(InnerQuantizer::Scalar(sq(8, SqVariant::Default)))
    );

    for s in ["PQ16", "PQ16x4fs", "OPQ8,PQ8", "OPQ8,PQ8x4fs"] {
        let old = parse(s).pq_spec().unwrap();
        let t = IndexSpec::try_from(old).unwrap();
        assert_eq!(t, parse(s));
        assert_eq!(old.name(), t.to_string());
        let (p, opq) = PqParams::from_pq_spec(&old);
        assert_eq!(p.to_pq_spec(opq), old);
    }
    for bad in [
        PqSpec {
            m: 0,
            nbits: 8,
            opq: false,
        },
        PqSpec {
            m: 8,
            nbits: 2,
            opq: true,
        },
        PqSpec {
            m: 512,
            nbits: 4,
            opq: false,
        },
    ] {
        assert!(IndexSpec::try_from(bad).is_err(), "{bad:?}");
    }
    assert_eq!(parse("IVF8,PQ8").pq_spec(), None);
}

/// ~300 specs, valid and invalid, from combinations of every component.
fn corpus() -> Vec<String> {
    let mut v: Vec<String> = Vec::new();
    for bits in ["8", "4", "7", "16", "", "08"] {
        for var in ["", "u", "opt", "lm", "nq", "x", "LM", "fp"] {
            v.push(format!("SQ{bits}{var}"));
        }
    }
    let big = "99999999999999999999999";
    for m in [
        "0", "1", "7", "16", "32", "256", "257", "4096", "4097", "", "016", big,
    ] {
        for sfx in ["", "x4fs", "X4FS", "x4", "x8"] {
            v.push(format!("PQ{m}{sfx}"));
        }
    }
    for (o, m) in [
        ("16", "16"),
        ("16", "32"),
        ("8", "8"),
        ("0", "0"),
        ("300", "300"),
        ("", "16"),
        ("5000", "5000"),
    ] {
        for sfx in ["", "x4fs"] {
            v.push(format!("OPQ{o},PQ{m}{sfx}"));
        }
    }
    for n in ["0", "1", "1024", "1048576", "1048577", "", "x", big] {
        for inner in [
            "Flat",
            "sq8",
            "SQ4nq",
            "SQ7",
            "PQ16",
            "pq16x4fs",
            "PQ0",
            "PQ300x4fs",
            "OPQ16,PQ16",
            "HNSW32",
            "IVF8,Flat",
            "",
            "Flat,Flat",
        ] {
            v.push(format!("IVF{n},{inner}"));
        }
    }
    for m in ["1", "2", "32", "128", "129", "0", "", "x"] {
        v.push(format!("HNSW{m}"));
        for inner in [
            "Flat",
            "SQ8",
            "sq4u",
            "PQ8",
            "PQ8x4fs",
            "PQ0",
            "OPQ8,PQ8",
            "IVF16,Flat",
            "SQx",
        ] {
            v.push(format!("HNSW{m},{inner}"));
        }
    }
    for s in [
        "OPQ16,IVF1024,PQ16",
        "opq16,ivf1024,pq16x4fs",
        "OPQ8,IVF1024,PQ16",
        "OPQ16,IVF1024,Flat",
        "OPQ16,IVF1024,SQ8",
        "OPQ16,IVF0,PQ16",
        "OPQ16,IVF1024",
        "OPQ300,IVF16,PQ300x4fs",
        "OPQ16,IVF16,PQ16,Flat",
        "",
        "  ",
        "Flat",
        "flat",
        " FLAT ",
        "Flat,PQ8",
        "Flta",
        "LSH",
        ",",
        "PQ8,",
        ",PQ8",
        "PQ8,IVF16",
        " IVF16 , PQ8 ",
        "HNSW16 , SQ8 ",
        "PQ 16",
        "IVF 16,Flat",
        "SQ 8",
        "OPQ16, PQ16",
        "OPQ16",
    ] {
        v.push(s.to_string());
    }
    v
}

/// Every accepted spec's canonical form parses back to the same tree, and is a fixed
/// point of parse ∘ display.
#[test]
fn display_round_trips_for_every_accepted_spec() {
    let mut n = 0;
    for s in corpus() {
        let Ok(t) = s.parse::<IndexSpec>() else {
            continue;
        };
        let canonical = t.to_string();
        assert!(!canonical.contains(' '), "{canonical}");
        let back: IndexSpec = canonical.parse().unwrap();
        assert_eq!(back, t, "`{s}` → `{canonical}`");
        assert_eq!(back.to_string(), canonical);
        assert_eq!(canonical.to_lowercase().parse::<IndexSpec>().unwrap(), t);
        n += 1;
    }
    assert!(n >= 60, "{n}");
}
