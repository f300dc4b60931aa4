"""Quant test vectors: one row of raw blocks per supported type, dequantized by gguf-py.

gguf-py (the `gguf` package, llama.cpp's own Python GGUF library) is the independent
reference for the C dequantizers and float-path dot products in Sources/CKernels.

For each type a small row is built from a fixed seed:
  - F16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1: random floats quantized with gguf.quants.quantize;
  - Q4_K, Q5_K, Q6_K (gguf-py can only dequantize them): random bytes, with the f16 scale
    fields overwritten by finite values in [0.01, 0.1).
The row is dequantized with gguf.quants.dequantize, and the float64 dot product with a
random activation vector x is computed from the float32 values and x that are written.

Floats are written as the shortest decimal that round-trips to the same float32 (at most
9 significant digits, 7 or 8 for most), so reading them as float32 gives the exact values.

Run from the repo root:  python3 Tests/EngineTests/Reference/make_quant_vectors.py
Writes Tests/EngineTests/Reference/quant_vectors.json (deterministic).

JSON: {"cases": [{"type": "q4_1", "type_id": 3, "n": 128, "raw_b64": "...",
                  "values": [...], "x": [...], "dot": ...}, ...]}
"""
import base64
import json
import pathlib

import numpy as np
from gguf import GGMLQuantizationType as T
from gguf.quants import dequantize, quantize

OUT = pathlib.Path(__file__).with_name("quant_vectors.json")
SEED = 20240611

# (type, row length). K-quants get two super-blocks.
ROWS = [
    (T.F16, 96),
    (T.Q8_0, 128),
    (T.Q4_0, 128),
    (T.Q4_1, 128),
    (T.Q5_0, 128),
    (T.Q4_K, 512),
    (T.Q6_K, 512),
    (T.Q5_K, 512),
    (T.Q5_1, 128),   # last: the cases above keep their random draws
]

# K-quants built from random bytes: block size in bytes and offsets of the f16 scale fields.
RANDOM_BYTE_LAYOUTS = {
    T.Q4_K: (144, [0, 2]),   # d, dmin, scales[12], qs[128]
    T.Q6_K: (210, [208]),    # ql[128], qh[64], scales[16], d
    T.Q5_K: (176, [0, 2]),   # d, dmin, scales[12], qh[32], qs[128]
}


def f32(v) -> float:
    """The shortest decimal that reads back as the same float32, as a Python float."""
    return float(str(np.float32(v)))


def random_byte_row(rng, qtype, n):
    block_bytes, scale_offsets = RANDOM_BYTE_LAYOUTS[qtype]
    n_blocks = n // 256
    raw = rng.integers(0, 256, size=(n_blocks, block_bytes), dtype=np.uint8)
    for off in scale_offsets:
        halves = rng.uniform(0.01, 0.1, size=n_blocks).astype(np.float16)
        raw[:, off:off + 2] = halves.view(np.uint8).reshape(n_blocks, 2)
    return raw.reshape(-1)


def make_case(rng, qtype, n):
    if qtype in RANDOM_BYTE_LAYOUTS:
        raw = random_byte_row(rng, qtype, n)
    else:
        data = (rng.standard_normal(n) * 0.5).astype(np.float32).reshape(1, n)
        raw = np.asarray(quantize(data, qtype)).view(np.uint8).reshape(-1)
    values = np.asarray(dequantize(raw.reshape(1, -1), qtype), dtype=np.float32).reshape(-1)
    assert values.size == n and np.all(np.isfinite(values)), qtype.name
    x = rng.standard_normal(n).astype(np.float32)

    values_out = [f32(v) for v in values]
    x_out = [f32(v) for v in x]
    # The float64 dot of the float32 values and x (what the JSON decimals read back as).
    dot = float(np.dot(values.astype(np.float64), x.astype(np.float64)))
    return {
        "type": qtype.name.lower(),
        "type_id": int(qtype),
        "n": n,
        "raw_b64": base64.b64encode(raw.tobytes()).decode("ascii"),
        "values": values_out,
        "x": x_out,
        "dot": float(f"{dot:.17g}"),
    }


def main():
    rng = np.random.default_rng(SEED)
    cases = [make_case(rng, qtype, n) for qtype, n in ROWS]
    OUT.write_text(json.dumps({"cases": cases}, separators=(",", ":")) + "\n")
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes, {len(cases)} cases)")


if __name__ == "__main__":
    main()
