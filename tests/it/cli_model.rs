//! Issue 17 ("No surprises"), model side: `quantize-model` options, calibration matching,
//! GGUF metadata and `inspect`, end to end through the binary.

use std::path::Path;

use crate::cli_util;
use cli_util::*;

/// Runs and expects a failure; returns stdout and stderr.
fn run_fails(args: &[&str], cwd: &Path) -> (String, String) {
    let out = vecquant(args, cwd);
    let (o, e) = text(&out);
    assert!(!out.status.success(), "{args:?} succeeded: {o}\n{e}");
    (o, e)
}

/// A small synthetic model (hidden 128: 7 matrices, 3 pass-through tensors) with
/// calibration activations for every matrix.
fn model(d: &Path) {
    ok(&vecquant(
        &[
            "gen",
            "weights",
            "--layers",
            "1",
            "--hidden",
            "128",
            "--vocab",
            "128",
            "--out",
            "w.safetensors",
            "--calib",
            "c.safetensors",
            "--calib-rows",
            "80",
        ],
        d,
    ));
}

/// Flips one byte in the middle of the first section `inspect` lists under `sections`.
fn corrupt_first_section(d: &Path, file: &str) {
    let listing = ok(&vecquant(&["inspect", file], d));
    let line = listing
        .lines()
        .find(|l| l.contains(" offset ") && l.contains(" length "))
        .unwrap_or_else(|| panic!("no section line in\n{listing}"));
    let words: Vec<&str> = line.split_whitespace().collect();
    let num = |key: &str| -> usize {
        let i = words.iter().position(|w| *w == key).unwrap();
        words[i + 1].parse().unwrap()
    };
    let (offset, length) = (num("offset"), num("length"));
    assert!(length > 0, "{line}");
    let path = d.join(file);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[offset + length / 2] ^= 0x5A;
    std::fs::write(&path, bytes).unwrap();
}

#[test]
fn item6_inspect_of_a_corrupt_file_fails_after_describing_it() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    small_data(d);
    ok(&vecquant(
        &[
            "build",
            "--spec",
            "SQ8",
            "--base",
            "data/base.fvecs",
            "--out",
            "sq8.vq",
        ],
        d,
    ));
    corrupt_first_section(d, "sq8.vq");
    let (o, e) = run_fails(&["inspect", "sq8.vq"], d);
    assert!(o.contains("CORRUPT") && o.contains("FAILED"), "{o}");
    assert!(e.contains("sq8.vq") && e.contains("checksum"), "{e}");

    // A weights container: the description (with the tensor names) is printed too.
    model(d);
    ok(&vecquant(
        &[
            "quantize-model",
            "--weights",
            "w.safetensors",
            "--scheme",
            "nf4",
            "--out",
            "w.vq",
        ],
        d,
    ));
    corrupt_first_section(d, "w.vq");
    let (o, e) = run_fails(&["inspect", "w.vq"], d);
    assert!(
        o.contains("CORRUPT") && o.contains("embed_tokens.weight"),
        "{o}"
    );
    assert!(e.contains("w.vq") && e.contains("checksum"), "{e}");
}

fn write_calib(path: &Path, names: &[&str]) {
    use vecquant::model::io::{Tensor, write_safetensors};
    let ts: Vec<Tensor> = names
        .iter()
        .map(|n| Tensor::matrix(n, 16, 128, (0..16 * 128).map(|i| (i % 7) as f32).collect()))
        .collect();
    write_safetensors(path, &ts, None).unwrap();
}

#[test]
fn item12_calibration_names_must_match_and_are_counted() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    model(d);
    write_calib(
        &d.join("other.safetensors"),
        &["blk.0.attn_q", "blk.0.attn_k"],
    );
    let (_, e) = run_fails(
        &[
            "quantize-model",
            "--weights",
            "w.safetensors",
            "--scheme",
            "gptq",
            "--calib",
            "other.safetensors",
            "--out",
            "g.vq",
        ],
        d,
    );
    assert!(
        e.contains("other.safetensors")
            && e.contains("blk.0.attn_q")
            && e.contains("embed_tokens.weight"),
        "{e}"
    );
    assert!(!d.join("g.vq").exists());

    // A calibration file covering some weights: the summary counts them.
    write_calib(
        &d.join("some.safetensors"),
        &[
            "layers.0.self_attn.q_proj.weight",
            "layers.0.self_attn.k_proj.weight",
        ],
    );
    let o = ok(&vecquant(
        &[
            "quantize-model",
            "--weights",
            "w.safetensors",
            "--scheme",
            "gptq",
            "--calib",
            "some.safetensors",
            "--out",
            "g.vq",
            "--quiet",
        ],
        d,
    ));
    assert!(
        o.contains("calibrated 2 of 7 tensors from some.safetensors"),
        "{o}"
    );
    let o = ok(&vecquant(
        &[
            "quantize-model",
            "--weights",
            "w.safetensors",
            "--scheme",
            "smoothquant",
            "--calib",
            "c.safetensors",
            "--out",
            "s.vq",
            "--quiet",
        ],
        d,
    ));
    assert!(
        o.contains("calibrated 7 of 7 tensors from c.safetensors"),
        "{o}"
    );
}

/// Every option that refines a scheme, with a value valid for the schemes that read it.
const OPTIONS: &[(&str, &[&str])] = &[
    ("bits", &["--bits", "4"]),
    ("granularity", &["--granularity", "row"]),
    ("group", &["--group", "32"]),
    ("rounding", &["--rounding", "floor"]),
    ("clip", &["--clip", "mse"]),
    ("seed", &["--seed", "7"]),
    ("calib", &["--calib", "c.safetensors"]),
    ("act-order", &["--act-order"]),
    ("damp", &["--damp", "0.02"]),
    ("alpha", &["--alpha", "0.4"]),
    ("threshold", &["--threshold", "5"]),
];

/// Every scheme and the options it reads (issue 17, item 13).
const SCHEMES: &[(&str, &[&str])] = &[
    (
        "absmax",
        &["bits", "granularity", "group", "rounding", "clip", "seed"],
    ),
    (
        "zeropoint",
        &["bits", "granularity", "group", "rounding", "clip", "seed"],
    ),
    ("nf4", &["group"]),
    ("nf4-dq", &["group"]),
    ("fp4", &["group"]),
    ("fp8-e4m3", &["granularity", "group"]),
    ("fp8-e5m2", &["granularity", "group"]),
    ("f16", &[]),
    ("bf16", &[]),
    ("kmeans", &["bits", "granularity", "seed"]),
    ("q8_0", &[]),
    ("q4_0", &[]),
    ("q4_1", &[]),
    ("q5_0", &[]),
    ("q4_k", &[]),
    ("q6_k", &[]),
    (
        "gptq",
        &["calib", "bits", "granularity", "group", "act-order", "damp"],
    ),
    ("spqr", &["calib", "bits", "group", "act-order", "damp"]),
    ("smoothquant", &["calib", "alpha"]),
    ("llm-int8", &["calib", "threshold"]),
];

fn args_of(option: &str) -> &'static [&'static str] {
    OPTIONS.iter().find(|(n, _)| *n == option).unwrap().1
}

#[test]
fn item13_every_scheme_rejects_the_options_it_does_not_read() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    model(d);
    for (scheme, used) in SCHEMES {
        let needs_calib = used.contains(&"calib");
        for (option, extra) in OPTIONS {
            if used.contains(option) {
                continue;
            }
            let mut args = vec![
                "quantize-model",
                "--weights",
                "w.safetensors",
                "--scheme",
                scheme,
                "--out",
                "x.vq",
                "--quiet",
            ];
            if needs_calib {
                args.extend(["--calib", "c.safetensors"]);
            }
            args.extend(extra.iter());
            let (_, e) = run_fails(&args, d);
            assert!(
                e.contains(&format!("`{option}`"))
                    && e.contains(&format!("--{option}"))
                    && e.contains(scheme)
                    && e.contains("accepts"),
                "{scheme} --{option}: {e}"
            );
            assert!(!e.contains("tensor `"), "{scheme} --{option}: {e}");
        }
    }
}

#[test]
fn item13_every_scheme_accepts_the_options_it_reads() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    model(d);
    for (scheme, used) in SCHEMES {
        let needs_calib = used.contains(&"calib");
        for option in used.iter().filter(|o| **o != "calib") {
            let mut args = vec![
                "quantize-model",
                "--weights",
                "w.safetensors",
                "--scheme",
                scheme,
                "--out",
                "x.vq",
                "--quiet",
            ];
            if needs_calib {
                args.extend(["--calib", "c.safetensors"]);
            }
            args.extend(args_of(option).iter());
            if *option == "seed" && used.contains(&"rounding") {
                args.extend(["--rounding", "stochastic"]);
            }
            if *option == "group" && *scheme == "gptq" {
                args.extend(["--granularity", "group"]);
            }
            ok(&vecquant(&args, d));
        }
    }
}

#[test]
fn item13_item16_bad_values_are_option_errors_before_any_file_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    model(d);
    // (scheme, bad option, option named in the error)
    let cases: &[(&str, &[&str], &str)] = &[
        ("absmax", &["--bits", "9"], "bits"),
        ("absmax", &["--group", "0"], "group"),
        (
            "absmax",
            &["--granularity", "row", "--group", "32"],
            "group",
        ),
        ("absmax", &["--seed", "3"], "seed"),
        ("nf4", &["--group", "33"], "group"),
        ("kmeans", &["--bits", "9"], "bits"),
        ("kmeans", &["--granularity", "group"], "granularity"),
        ("fp8-e4m3", &["--group", "0"], "group"),
        ("gptq", &["--calib", "c.safetensors", "--bits", "9"], "bits"),
        (
            "gptq",
            &["--calib", "c.safetensors", "--granularity", "tensor"],
            "granularity",
        ),
        ("gptq", &["--calib", "c.safetensors", "--damp=-1"], "damp"),
        (
            "spqr",
            &["--calib", "c.safetensors", "--group", "0"],
            "group",
        ),
        (
            "smoothquant",
            &["--calib", "c.safetensors", "--alpha", "2"],
            "alpha",
        ),
        (
            "llm-int8",
            &["--calib", "c.safetensors", "--threshold=-1"],
            "threshold",
        ),
        ("gptq", &[], "calib"),
    ];
    for (scheme, bad, option) in cases {
        for weights in ["w.safetensors", "missing.safetensors"] {
            let mut args = vec![
                "quantize-model",
                "--weights",
                weights,
                "--scheme",
                scheme,
                "--out",
                "x.vq",
            ];
            args.extend(bad.iter());
            let (_, e) = run_fails(&args, d);
            assert!(
                e.contains(&format!("invalid parameter `{option}`")) && e.contains(scheme),
                "{scheme} {bad:?}: {e}"
            );
            assert!(
                !e.contains("tensor `") && !e.contains("missing.safetensors"),
                "{scheme} {bad:?}: {e}"
            );
        }
    }
}

#[test]
fn item15_help_lists_every_scheme_with_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let help = ok(&vecquant(&["quantize-model", "--help"], dir.path()));
    for (scheme, _) in SCHEMES {
        assert!(help.contains(scheme), "{scheme} missing from\n{help}");
    }
    for default in [
        "default 8",
        "default 64",
        "default 4",
        "default 3",
        "default 0.01",
        "default 0.5",
        "default 6.0",
        "default nearest",
        "default minmax",
        "default 42",
    ] {
        assert!(help.contains(default), "`{default}` missing from\n{help}");
    }
}

#[test]
fn item17_inspect_weights_lists_names_shapes_schemes_bits() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    model(d);
    for out in ["w.vq", "w.gguf"] {
        ok(&vecquant(
            &[
                "quantize-model",
                "--weights",
                "w.safetensors",
                "--scheme",
                "q8_0",
                "--out",
                out,
            ],
            d,
        ));
    }
    for file in ["w.vq", "w.gguf", "w.safetensors"] {
        let o = ok(&vecquant(&["inspect", file], d));
        assert!(
            o.contains("layers.0.mlp.down_proj.weight") && o.contains("bits/weight"),
            "{file}: {o}"
        );
        assert!(
            o.contains("[128, 512]") || o.contains("[512, 128]"),
            "{file}: {o}"
        );
        for line in o.lines() {
            let first = line.split_whitespace().next().unwrap_or("");
            assert!(
                !matches!(first, "dim" | "metric" | "t0" | "t1"),
                "{file}: `{line}` in\n{o}"
            );
        }
    }
    let o = ok(&vecquant(&["inspect", "w.vq"], d));
    assert!(o.contains("q8_0") && o.contains("passthrough"), "{o}");
    assert!(o.contains("checksums all ok"), "{o}");
    // A format-v1 weights container opens and lists its tensor names.
    let v1 = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/v1/weights_mixed.vq");
    let o = ok(&vecquant(&["inspect", v1.to_str().unwrap()], d));
    assert!(
        o.contains("version 1") && o.contains("plain.0.absmax"),
        "{o}"
    );
    assert!(!o.contains("dim       0"), "{o}");
}

fn field<'a>(listing: &'a str, key: &str) -> &'a str {
    listing
        .lines()
        .find_map(|l| {
            l.strip_prefix(key)
                .filter(|r| r.starts_with(' '))
                .map(str::trim)
        })
        .unwrap_or_else(|| panic!("no `{key}` line in\n{listing}"))
}

#[test]
fn item17_inspect_index_shows_counts_and_build_parameters() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    small_data(d);
    for (spec, out) in [
        ("SQ8", "sq8.vq"),
        ("IVF16,Flat", "ivf.vq"),
        ("HNSW8", "hnsw.vq"),
    ] {
        ok(&vecquant(
            &[
                "build",
                "--spec",
                spec,
                "--base",
                "data/base.fvecs",
                "--out",
                out,
            ],
            d,
        ));
        ok(&vecquant(
            &["delete", "--index", out, "--ids", "3,17,42"],
            d,
        ));
        let o = ok(&vecquant(&["inspect", out], d));
        assert_eq!(field(&o, "live"), "1997", "{o}");
        assert_eq!(field(&o, "deleted"), "3", "{o}");
        assert!(field(&o, "spec").contains(spec), "{o}");
    }
    let o = ok(&vecquant(&["inspect", "ivf.vq"], d));
    assert_eq!(field(&o, "nlist"), "16", "{o}");
    let o = ok(&vecquant(&["inspect", "hnsw.vq"], d));
    assert_eq!(field(&o, "M"), "8", "{o}");
    assert_eq!(field(&o, "ef_construction"), "200", "{o}");
    let levels: usize = field(&o, "layers")
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=10).contains(&levels), "{o}");
}

#[test]
fn item19_gguf_metadata_is_written_copied_and_checked() {
    use vecquant::model::gguf::{GgufValue, read_gguf};
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    model(d);
    fn with<'a>(extra: &[&'a str]) -> Vec<&'a str> {
        let mut a = vec![
            "quantize-model",
            "--weights",
            "w.safetensors",
            "--scheme",
            "q8_0",
            "--quiet",
        ];
        a.extend(extra);
        a
    }
    ok(&vecquant(
        &with(&[
            "--out",
            "a.gguf",
            "--gguf-meta",
            "general.architecture=llama",
            "--gguf-meta",
            "llama.context_length=2048",
            "--gguf-meta",
            "llama.rope.freq_base=10000.0",
            "--gguf-meta",
            "llama.use_parallel_residual=false",
            "--gguf-meta",
            "llama.vocab_size:u64=128",
            "--gguf-meta",
            "general.name=tiny",
        ]),
        d,
    ));
    let f = read_gguf(d.join("a.gguf")).unwrap();
    assert_eq!(
        f.get("general.architecture"),
        Some(&GgufValue::String("llama".into()))
    );
    assert_eq!(f.get("llama.context_length"), Some(&GgufValue::U32(2048)));
    assert_eq!(
        f.get("llama.rope.freq_base"),
        Some(&GgufValue::F32(10000.0))
    );
    assert_eq!(
        f.get("llama.use_parallel_residual"),
        Some(&GgufValue::Bool(false))
    );
    assert_eq!(f.get("llama.vocab_size"), Some(&GgufValue::U64(128)));
    assert_eq!(
        f.get("general.name"),
        Some(&GgufValue::String("tiny".into()))
    );

    // Copied from another GGUF, with an override.
    ok(&vecquant(
        &with(&[
            "--out",
            "b.gguf",
            "--gguf-meta-from",
            "a.gguf",
            "--gguf-meta",
            "llama.context_length=4096",
        ]),
        d,
    ));
    let g = read_gguf(d.join("b.gguf")).unwrap();
    assert_eq!(
        g.get("general.architecture"),
        Some(&GgufValue::String("llama".into()))
    );
    assert_eq!(
        g.get("llama.rope.freq_base"),
        Some(&GgufValue::F32(10000.0))
    );
    assert_eq!(g.get("llama.context_length"), Some(&GgufValue::U32(4096)));

    // Bad syntax, or metadata for a file that is not GGUF: option errors, nothing written.
    for (bad, out) in [
        (["--gguf-meta", "general.architecture"], "c.gguf"),
        (["--gguf-meta", "x:u8=300"], "c.gguf"),
        (["--gguf-meta", "general.architecture=llama"], "c.vq"),
    ] {
        let mut a = with(&["--out", out]);
        a.extend(bad);
        let (_, e) = run_fails(&a, d);
        assert!(e.contains("invalid parameter `gguf-meta`"), "{bad:?}: {e}");
        assert!(!d.join(out).exists());
    }
    let help = ok(&vecquant(&["quantize-model", "--help"], d));
    for needed in [
        "general.architecture",
        "context_length",
        "embedding_length",
        "block_count",
        "blk.N.attn_q.weight",
        "tokenizer.ggml",
    ] {
        assert!(help.contains(needed), "{needed} missing from\n{help}");
    }
}
