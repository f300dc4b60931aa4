"""Quant test vectors: raw blocks of every supported type, dequantized by gguf-py.

gguf-py (the `gguf` package, llama.cpp's own Python reader) is the independent reference for
the C dequantizers. Rows are quantized from random data where gguf-py can quantize the type;
for Q4_K and Q6_K, which it can only dequantize, rows are random bytes with sane f16 scales.
Each case also holds a random activation vector and the float64 dot product with the
dequantized row.

Run from the repo root:  python3 Tests/EngineTests/Reference/make_quant_vectors.py
Writes Tests/EngineTests/Reference/quant_vectors.json (deterministic: fixed seed).
"""
import base64
import json
import pathlib

import numpy as np
from gguf import GGMLQuantizationType as T
from gguf.quants import dequantize, quantize

OUT = pathlib.Path(__file__).with_name("quant_vectors.json")
rng = np.random.default_rng(2024)


def random_k_blocks(qtype, n_blocks, block_bytes, scale_offsets):
    """Random code bytes; the f16 fields at scale_offsets get values in [0.01, 0.1)."""
    raw = rng.integers(0, 256, size=(n_blocks, block_bytes), dtype=np.uint8)
    for off in scale_offsets:
        halves = rng.uniform(0.01, 0.1, size=n_blocks).astype(np.float16).view(np.uint8).reshape(n_blocks, 2)
        raw[:, off:off + 2] = halves
    return raw.reshape(-1)


cases = []
for qtype, n in [(T.F16, 96), (T.Q8_0, 128), (T.Q4_0, 128), (T.Q4_1, 128), (T.Q5_0, 128),
                 (T.Q4_K, 512), (T.Q6_K, 512)]:
    if qtype == T.Q4_K:    # d, dmin at bytes 0 and 2 of a 144-byte block
        raw = random_k_blocks(qtype, n // 256, 144, [0, 2])
    elif qtype == T.Q6_K:  # d at byte 208 of a 210-byte block
        raw = random_k_blocks(qtype, n // 256, 210, [208])
    else:
        data = (rng.standard_normal(n) * 0.5).astype(np.float32).reshape(1, n)
        raw = np.asarray(quantize(data, qtype)).view(np.uint8).reshape(-1)
    values = dequantize(raw.reshape(1, -1), qtype).reshape(-1).astype(np.float64)
    assert values.size == n and np.all(np.isfinite(values))
    x = rng.standard_normal(n)
    cases.append({
        "type": qtype.name.lower(),
        "type_id": int(qtype),
        "n": n,
        "raw_b64": base64.b64encode(raw.tobytes()).decode(),
        "values": [float(f"{v:.9g}") for v in values],
        "x": [float(f"{v:.7g}") for v in x.astype(np.float32)],
        # the dot uses x exactly as stored (rounded to float32 and 7 digits)
        "dot": 0.0,
    })
    xs = np.array(cases[-1]["x"], dtype=np.float32).astype(np.float64)
    cases[-1]["dot"] = float(np.dot(values, xs))

OUT.write_text(json.dumps({"cases": cases}, indent=None))
print(f"wrote {OUT} ({OUT.stat().st_size} bytes, {len(cases)} cases)")
