#!/usr/bin/env python3
"""Golden fixtures for `vecquant::model::gguf`, made with llama.cpp's own `gguf` package.

Setup (once, outside the repository):

    python -m venv /work/gguf-venv && /work/gguf-venv/bin/pip install gguf numpy

Regenerate the fixtures in tests/fixtures/gguf/ (deterministic for a given gguf/numpy):

    /work/gguf-venv/bin/python benches/gguf_golden.py generate

Cross-check a file written by our Rust writer: the Rust test writes
tests/fixtures/gguf/ours.gguf (one tensor per type, quantized by our encoders) and
ours.deq.f32 (our dequantized values); gguf's GGUFReader must read it, and
gguf.quants.dequantize must reproduce our values bit for bit:

    VECQUANT_WRITE_GGUF_FIXTURE=1 cargo test --test gguf_golden ours_file
    /work/gguf-venv/bin/python benches/gguf_golden.py check

With no argument the script does both `generate` and (if ours.gguf exists) `check`.

Fixtures written by `generate`:
  manifest.json        shapes, file names, expected metadata and tensors, package versions
  rows.f32             R x C float32 input rows (little-endian)
  <type>.bin           gguf.quants.quantize(rows, type) bytes, for F16 BF16 Q4_0 Q4_1 Q5_0 Q8_0
  <type>.deq.f32       gguf.quants.dequantize(<type>.bin, type) values
  <type>.blocks.bin    random valid raw blocks for Q4_K and Q6_K (finite f16 scales)
  <type>.blocks.deq.f32  gguf.quants.dequantize of those blocks
  gguf_py.gguf         a small GGUF v3 file written by gguf.GGUFWriter
"""

from __future__ import annotations

import json
import sys
from importlib.metadata import version
from pathlib import Path

import numpy as np

import gguf
from gguf import GGMLQuantizationType as T
from gguf.quants import dequantize, quantize

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "fixtures" / "gguf"
COLS = 128
SEED = 20240611


def input_rows() -> np.ndarray:
    """Seeded rows with the edge cases the reference quantizers must agree on."""
    rng = np.random.default_rng(SEED)
    rows = []
    rows.append(rng.standard_normal(COLS))  # plain Gaussian
    rows.append(np.zeros(COLS))  # all zero: d = 0, id = 0
    rows.append(np.full(COLS, 0.75))  # constant row
    r = rng.standard_normal(COLS)
    r[5], r[70], r[101] = 40.0, -60.0, 1e4  # outliers
    rows.append(r)
    rows.append(-3.0 * np.abs(rng.standard_normal(COLS)))  # negative max in every block
    r = rng.uniform(-3.0, 3.0, COLS)
    r[0::32], r[9::32] = -3.0, 3.0  # magnitude ties: the first one decides the sign
    r[16::32], r[20::32] = 3.0, -3.0
    rows.append(r)
    rows.append(1e-3 * rng.standard_normal(COLS))  # small values
    r = rng.uniform(-1000.0, 1000.0, COLS)
    r[1::3] *= 1e-6
    rows.append(r)  # wide dynamic range
    # Exact rounding boundaries: x/d + 8.5 and x/d + 16.5 land on integers (.5 offsets
    # truncate) and Q8_0 sees exact halves (round half away from zero).
    k = np.arange(COLS) % 16 - 8
    rows.append(0.5 * k)
    h = (np.arange(COLS) % 32).astype(np.float64) - 15.5
    h[0::32] = 127.0
    rows.append(h)
    return np.stack(rows).astype(np.float32)


def random_k_blocks(qtype: T, n: int, rng: np.random.Generator) -> np.ndarray:
    """Random raw blocks whose f16 fields are finite (including 0, negative, subnormal)."""
    block_size, type_size = gguf.GGML_QUANT_SIZES[qtype]
    blocks = rng.integers(0, 256, size=(n, type_size), dtype=np.uint8)
    scales = np.array([0.0123, -0.0456, 0.0, 3.0e-6, 1.5, 0.000977][:n], dtype=np.float16)
    mins = np.array([0.0078, 0.002, 0.5, -0.01, 0.0, 7.0e-7][:n], dtype=np.float16)
    if qtype == T.Q4_K:
        blocks[:, 0:2] = scales.view(np.uint8).reshape(n, 2)
        blocks[:, 2:4] = mins.view(np.uint8).reshape(n, 2)
    elif qtype == T.Q6_K:
        blocks[:, 208:210] = scales.view(np.uint8).reshape(n, 2)
    else:
        raise ValueError(qtype)
    return blocks


def write_f32(path: Path, a: np.ndarray) -> None:
    np.ascontiguousarray(a, dtype="<f4").tofile(path)


def generate() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    rows = input_rows()
    write_f32(OUT / "rows.f32", rows)
    manifest: dict = {
        "generator": "benches/gguf_golden.py",
        "gguf_version": version("gguf"),
        "numpy_version": np.__version__,
        "rows": {"file": "rows.f32", "rows": int(rows.shape[0]), "cols": COLS},
        "quantize": [],
        "k_blocks": [],
    }
    for qtype in (T.F16, T.BF16, T.Q4_0, T.Q4_1, T.Q5_0, T.Q8_0):
        q = quantize(rows, qtype)
        b = np.ascontiguousarray(q).view(np.uint8)
        name = qtype.name.lower()
        b.tofile(OUT / f"{name}.bin")
        deq = dequantize(b.reshape(rows.shape[0], -1), qtype)
        write_f32(OUT / f"{name}.deq.f32", deq)
        manifest["quantize"].append(
            {"type": qtype.name, "bytes": f"{name}.bin", "dequant": f"{name}.deq.f32"}
        )

    rng = np.random.default_rng(SEED + 1)
    for qtype in (T.Q4_K, T.Q6_K):
        blocks = random_k_blocks(qtype, 6, rng)
        name = qtype.name.lower()
        blocks.tofile(OUT / f"{name}.blocks.bin")
        deq = dequantize(blocks, qtype)
        assert np.all(np.isfinite(deq))
        write_f32(OUT / f"{name}.blocks.deq.f32", deq)
        manifest["k_blocks"].append(
            {
                "type": qtype.name,
                "blocks": int(blocks.shape[0]),
                "bytes": f"{name}.blocks.bin",
                "dequant": f"{name}.blocks.deq.f32",
            }
        )

    manifest["gguf_py_file"] = write_gguf_py_file(rows)
    (OUT / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    total = sum(p.stat().st_size for p in OUT.iterdir())
    print(f"wrote {len(list(OUT.iterdir()))} fixture files, {total} bytes, to {OUT}")


def write_gguf_py_file(rows: np.ndarray) -> dict:
    """A small GGUF v3 file from gguf.GGUFWriter, with the expected contents."""
    path = OUT / "gguf_py.gguf"
    w = gguf.GGUFWriter(path, "llama")
    w.add_name("gguf-py golden")
    w.add_uint32("test.u32", 4096)
    w.add_int32("test.i32", -7)
    w.add_uint64("test.u64", 1 << 40)
    w.add_float32("test.f32", 1e-5)
    w.add_float64("test.f64", 0.1)
    w.add_bool("test.bool", True)
    w.add_int8("test.i8", -3)
    w.add_array("test.tokens", ["<s>", "é", "tok"])
    w.add_array("test.ints", [1, -2, 3])
    bias = rows[0, :7].copy()
    weight = np.ascontiguousarray(quantize(rows[:4], T.Q8_0))
    cube = rows[0, :96].reshape(1, 3, 32).repeat(2, axis=0).astype(np.float16)
    kblocks = np.fromfile(OUT / "q4_k.blocks.bin", dtype=np.uint8).reshape(-1, 144)[:2]
    w.add_tensor("bias", bias)
    w.add_tensor("blk.0.weight", weight, raw_dtype=T.Q8_0)
    w.add_tensor("cube", cube)
    w.add_tensor("kq", kblocks.reshape(1, 288), raw_dtype=T.Q4_K)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    tensors = [
        ("bias", [7], "F32", bias.tobytes()),
        ("blk.0.weight", [4, COLS], "Q8_0", weight.tobytes()),
        ("cube", [2, 3, 32], "F16", cube.tobytes()),
        ("kq", [1, 512], "Q4_K", kblocks.tobytes()),
    ]
    return {
        "file": "gguf_py.gguf",
        "metadata": [
            ["general.architecture", "String", "llama"],
            ["general.name", "String", "gguf-py golden"],
            ["test.u32", "U32", 4096],
            ["test.i32", "I32", -7],
            ["test.u64", "U64", 1 << 40],
            ["test.f32", "F32", float(np.float32(1e-5))],
            ["test.f64", "F64", 0.1],
            ["test.bool", "Bool", True],
            ["test.i8", "I8", -3],
            ["test.tokens", "Array:String", ["<s>", "é", "tok"]],
            ["test.ints", "Array:I32", [1, -2, 3]],
        ],
        "tensors": [
            {"name": n, "shape": s, "type": t, "hex": b.hex()} for (n, s, t, b) in tensors
        ],
    }


def check() -> bool:
    """Reads ours.gguf with gguf.GGUFReader and compares gguf's dequantization with ours."""
    path = OUT / "ours.gguf"
    ours = np.fromfile(OUT / "ours.deq.f32", dtype="<f4")
    reader = gguf.GGUFReader(path)
    arch = reader.fields["general.architecture"].contents()
    align = reader.fields["general.alignment"].contents()
    print(f"{path.name}: architecture {arch!r}, alignment {align}, {len(reader.tensors)} tensors")
    ok = arch == "llama" and align == 32
    at = 0
    for t in reader.tensors:
        theirs = dequantize(t.data, t.tensor_type).astype(np.float32).ravel()
        mine = ours[at : at + theirs.size]
        at += theirs.size
        same = mine.size == theirs.size and np.array_equal(
            mine.view(np.uint32), theirs.view(np.uint32)
        )
        shape = list(reversed([int(d) for d in t.shape]))
        print(f"  {t.name:<12} {t.tensor_type.name:<5} {shape}: {'bit-identical' if same else 'MISMATCH'}")
        ok &= same
    if at != ours.size:
        print(f"  ours.deq.f32 holds {ours.size} values, the file {at}")
        ok = False
    print("cross-check", "PASSED" if ok else "FAILED")
    return ok


def main(argv: list[str]) -> int:
    cmd = argv[1] if len(argv) > 1 else "all"
    if cmd not in ("generate", "check", "all"):
        print(__doc__)
        return 2
    if cmd in ("generate", "all"):
        generate()
    if cmd == "check" or (cmd == "all" and (OUT / "ours.gguf").exists()):
        return 0 if check() else 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
