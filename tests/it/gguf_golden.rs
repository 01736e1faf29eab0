//! GGUF blocks and files against golden fixtures made by llama.cpp's Python package
//! `gguf` (`benches/gguf_golden.py`): encoders and decoders bit for bit, a file written by
//! `gguf.GGUFWriter`, and a file written by us that `gguf.GGUFReader` cross-checks.

use std::path::{Path, PathBuf};

use serde_json::Value;
use vecquant::model::gguf::{
    self, GgmlType, GgufTensor, GgufValue, GgufValueType, dequantize, quantize, read_gguf,
    write_gguf,
};

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/gguf")
}

fn manifest() -> Value {
    let text = std::fs::read_to_string(dir().join("manifest.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn read_bytes(name: &str) -> Vec<u8> {
    std::fs::read(dir().join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn read_f32(name: &str) -> Vec<f32> {
    read_bytes(name)
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

fn ty(v: &Value) -> GgmlType {
    GgmlType::from_name(v.as_str().unwrap()).unwrap()
}

/// Bitwise equality (so -0.0 != 0.0 and every NaN payload counts), with a useful message.
fn assert_bits_eq(what: &str, ours: &[f32], theirs: &[f32]) {
    assert_eq!(ours.len(), theirs.len(), "{what}: lengths");
    if let Some(i) = (0..ours.len()).find(|&i| ours[i].to_bits() != theirs[i].to_bits()) {
        panic!(
            "{what}: value {i} differs: ours {} ({:#010x}), gguf {} ({:#010x})",
            ours[i],
            ours[i].to_bits(),
            theirs[i],
            theirs[i].to_bits()
        );
    }
}

#[test]
fn reference_quantizers_match_gguf_py_bit_for_bit() {
    let m = manifest();
    let rows = m["rows"]["rows"].as_u64().unwrap() as usize;
    let cols = m["rows"]["cols"].as_u64().unwrap() as usize;
    let input = read_f32(m["rows"]["file"].as_str().unwrap());
    assert_eq!(input.len(), rows * cols);
    let cases = m["quantize"].as_array().unwrap();
    assert!(cases.len() >= 6);
    for case in cases {
        let ty = ty(&case["type"]);
        let expected = read_bytes(case["bytes"].as_str().unwrap());
        let ours = quantize(ty, rows, cols, &input).unwrap();
        assert_eq!(ours.len(), expected.len(), "{ty}: byte count");
        if let Some(i) = (0..ours.len()).find(|&i| ours[i] != expected[i]) {
            let rb = ty.row_bytes(cols).unwrap();
            panic!(
                "{ty}: byte {i} (row {}, block {}, byte {} of the block) differs: ours {:#04x}, \
                 gguf {:#04x}",
                i / rb,
                (i % rb) / ty.type_size(),
                (i % rb) % ty.type_size(),
                ours[i],
                expected[i]
            );
        }
        let deq = dequantize(ty, rows, cols, &expected).unwrap();
        assert_bits_eq(
            &format!("{ty} dequantize"),
            &deq,
            &read_f32(case["dequant"].as_str().unwrap()),
        );
    }
}

#[test]
fn k_quant_decoders_match_gguf_py_bit_for_bit() {
    let m = manifest();
    let cases = m["k_blocks"].as_array().unwrap();
    assert_eq!(cases.len(), 2);
    for case in cases {
        let ty = ty(&case["type"]);
        let blocks = case["blocks"].as_u64().unwrap() as usize;
        let bytes = read_bytes(case["bytes"].as_str().unwrap());
        assert_eq!(bytes.len(), blocks * ty.type_size());
        // As one row of all the blocks, and as one row per block.
        let one_row = dequantize(ty, 1, blocks * 256, &bytes).unwrap();
        let per_block = dequantize(ty, blocks, 256, &bytes).unwrap();
        let expected = read_f32(case["dequant"].as_str().unwrap());
        assert_bits_eq(&format!("{ty} dequantize"), &one_row, &expected);
        assert_bits_eq(&format!("{ty} dequantize by block"), &per_block, &expected);
    }
}

fn expected_value(kind: &str, v: &Value) -> GgufValue {
    let scalar = |kind: &str, v: &Value| match kind {
        "String" => GgufValue::String(v.as_str().unwrap().to_string()),
        "U32" => GgufValue::U32(v.as_u64().unwrap() as u32),
        "I32" => GgufValue::I32(v.as_i64().unwrap() as i32),
        "U64" => GgufValue::U64(v.as_u64().unwrap()),
        "I8" => GgufValue::I8(v.as_i64().unwrap() as i8),
        "F32" => GgufValue::F32(v.as_f64().unwrap() as f32),
        "F64" => GgufValue::F64(v.as_f64().unwrap()),
        "Bool" => GgufValue::Bool(v.as_bool().unwrap()),
        other => panic!("fixture kind {other}"),
    };
    match kind.strip_prefix("Array:") {
        Some(elem) => {
            let items: Vec<GgufValue> = v
                .as_array()
                .unwrap()
                .iter()
                .map(|x| scalar(elem, x))
                .collect();
            let ty = items[0].value_type();
            GgufValue::Array(ty, items)
        }
        None => scalar(kind, v),
    }
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

#[test]
fn reads_a_file_written_by_gguf_py() {
    let m = manifest();
    let spec = &m["gguf_py_file"];
    let file = read_gguf(dir().join(spec["file"].as_str().unwrap())).unwrap();
    assert_eq!(file.version, 3);
    assert_eq!(file.alignment, 32);
    let meta = spec["metadata"].as_array().unwrap();
    assert_eq!(file.metadata.len(), meta.len());
    for (got, want) in file.metadata.iter().zip(meta) {
        let want_key = want[0].as_str().unwrap();
        assert_eq!(got.0, want_key);
        assert_eq!(
            got.1,
            expected_value(want[1].as_str().unwrap(), &want[2]),
            "{want_key}"
        );
    }
    let tensors = spec["tensors"].as_array().unwrap();
    assert_eq!(file.tensors.len(), tensors.len());
    for (got, want) in file.tensors.iter().zip(tensors) {
        let shape: Vec<usize> = want["shape"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d.as_u64().unwrap() as usize)
            .collect();
        assert_eq!(got.name, want["name"].as_str().unwrap());
        assert_eq!(got.shape, shape, "{}", got.name);
        assert_eq!(got.ty, ty(&want["type"]), "{}", got.name);
        assert_eq!(got.data, hex(want["hex"].as_str().unwrap()), "{}", got.name);
        assert_eq!(got.dequantize().unwrap().len(), got.n_elements());
    }
    let bias = file.tensor("bias").unwrap();
    assert_eq!((bias.rows(), bias.cols()), (1, 7));
    let w = file.tensor("blk.0.weight").unwrap();
    assert_eq!((w.rows(), w.cols()), (4, 128));
}

/// The tensors of `ours.gguf`: one per type, quantized by our encoders, plus a 1-D F32
/// bias of odd length and a 3-D F16 tensor.
fn ours() -> (Vec<(String, GgufValue)>, Vec<GgufTensor>) {
    let mut x = vecquant::data::generate::gaussian(2, 256, 0.0, 0.05, 11)
        .unwrap()
        .into_vec();
    x[300] = 0.9; // an outlier in the second row
    let mut tensors = vec![GgufTensor::quantize("bias", vec![7], GgmlType::F32, &x[..7]).unwrap()];
    for ty in GgmlType::ALL {
        let name = format!("w.{}", ty.name().to_lowercase());
        tensors.push(GgufTensor::quantize(name, vec![2, 256], ty, &x).unwrap());
    }
    tensors.push(GgufTensor::quantize("cube", vec![2, 3, 32], GgmlType::F16, &x[..192]).unwrap());
    let meta = vec![
        ("general.architecture".to_string(), GgufValue::from("llama")),
        (
            "general.name".to_string(),
            GgufValue::from("vecquant golden"),
        ),
        ("general.file_type".to_string(), GgufValue::U32(15)),
        ("test.f32".to_string(), GgufValue::F32(1e-5)),
        ("test.bool".to_string(), GgufValue::Bool(false)),
        (
            "test.tokens".to_string(),
            GgufValue::Array(
                GgufValueType::String,
                vec!["<s>".into(), "</s>".into(), "é".into()],
            ),
        ),
    ];
    (meta, tensors)
}

/// `ours.gguf` is the file our writer produces, bit for bit; it reads back to the same
/// tensors; and `ours.deq.f32` holds our decoding of it, which `benches/gguf_golden.py
/// check` compares with gguf-py's decoding. `VECQUANT_WRITE_GGUF_FIXTURE=1` rewrites both.
#[test]
fn ours_file() {
    let (meta, tensors) = ours();
    let path = dir().join("ours.gguf");
    let deq: Vec<f32> = tensors
        .iter()
        .flat_map(|t| t.dequantize().unwrap())
        .collect();
    if std::env::var_os("VECQUANT_WRITE_GGUF_FIXTURE").is_some() {
        write_gguf(&path, &meta, &tensors).unwrap();
        let bytes: Vec<u8> = deq.iter().flat_map(|v| v.to_le_bytes()).collect();
        std::fs::write(dir().join("ours.deq.f32"), bytes).unwrap();
        eprintln!("wrote {} and ours.deq.f32", path.display());
    }
    let tmp = tempfile::tempdir().unwrap();
    let again = tmp.path().join("ours.gguf");
    write_gguf(&again, &meta, &tensors).unwrap();
    assert!(
        std::fs::read(&again).unwrap() == read_bytes("ours.gguf"),
        "the writer (or an encoder) no longer reproduces tests/fixtures/gguf/ours.gguf; \
         if intended, rerun with VECQUANT_WRITE_GGUF_FIXTURE=1 and re-check with \
         benches/gguf_golden.py check"
    );
    let file = read_gguf(&path).unwrap();
    assert_eq!(file.tensors, tensors);
    assert_eq!(&file.metadata[..meta.len()], &meta[..]);
    assert_eq!(
        file.get(gguf::ALIGNMENT_KEY),
        Some(&GgufValue::U32(gguf::GGUF_DEFAULT_ALIGNMENT as u32))
    );
    assert_bits_eq("ours.deq.f32", &deq, &read_f32("ours.deq.f32"));
}

/// The shapes the throughput example (`examples/gguf_throughput.rs`, which measures M
/// weights/s; timing has no place in a test) relies on: on a 64 × 4096 N(0, 1) matrix,
/// every type encodes to `rows × row_bytes` bytes and decodes back to `rows × cols`
/// finite values close to the input.
#[test]
fn quantize_dequantize_shapes_for_throughput_types() {
    let (rows, cols) = (64, 4096);
    let x = vecquant::data::generate::gaussian(rows, cols, 0.0, 1.0, 5)
        .unwrap()
        .into_vec();
    for ty in [
        GgmlType::Q4_0,
        GgmlType::Q8_0,
        GgmlType::Q4_K,
        GgmlType::Q6_K,
    ] {
        let bytes = quantize(ty, rows, cols, &x).unwrap();
        assert_eq!(
            bytes.len(),
            rows * ty.row_bytes(cols).unwrap(),
            "{ty}: bytes"
        );
        let y = dequantize(ty, rows, cols, &bytes).unwrap();
        assert_eq!(y.len(), rows * cols, "{ty}: values");
        let err: f64 = x
            .iter()
            .zip(&y)
            .map(|(a, b)| f64::from(a - b).powi(2))
            .sum::<f64>()
            / (rows * cols) as f64;
        // N(0, 1) input: 4-bit blocks keep the MSE well under 0.02; a broken decoder
        // (zeros, wrong block order) gives about 1 or more.
        assert!(err.is_finite() && err < 0.02, "{ty}: mse {err}");
    }
}
