#!/usr/bin/env python3
"""Golden logits for a qwen2 model at Qwen 2.5 0.5B's real widths (QwenShapeTests.swift).

Why: the tiny models (make_tiny_models.py) have widths of 256, where every matrix fits every
block type and every kernel loop ends evenly. Qwen 2.5 0.5B does not: d_model 896 (not a
multiple of 256, so a Q4_K_M file holds its q/k/v/o, gate and up matrices as Q5_0 and Q8_0,
and 896 / 32 = 28 blocks end the kernels' steps unevenly), 14 query heads on 2 KV heads
(groups of 7), head dim 64, FFN 4864 (ffn_down 4864 wide: Q4_K / Q6_K, 152 blocks; a Q5_K_M
file holds the 896-wide ones as Q5_1 where it would use Q5_K, as layer 1's attn_q and ffn_up here), RoPE
base 10^6, RMSNorm eps 1e-6, Q/K/V biases, tied embeddings. This model has those widths with
two layers and a 384-token vocabulary (the real 151,936 would only make the head bigger).

The file is 20 MB, so it is not committed: QwenShapeTests builds the same bytes with the
same generator (splitmix64, Engine's RandomGenerator) and these rules, and CHECKSUM below
holds the two constructions together. Each tensor, in file order, takes the generator's
next outputs:
  * a block type: ceil(bytes / 8) outputs, little-endian, cut to the tensor's size; then
    each block's scales are overwritten (SCALES: f16 bit patterns): Q8_0 and Q5_0 d; Q5_1 d
    and m (w = 0.003 q - 0.046, centred); Q4_K
    d, dmin, and its 12 scale bytes all 0x88 (sub-blocks 0-3: scale = min = 8; 4-7: 40,
    so with dmin = 7.5 d each sub-block is centred on 0); Q6_K d, and each int8 sub-block
    scale = (its random byte mod 33) - 16;
  * F32: one output per element, u = (output >> 11) * 2^-53: norms 1 + 0.2 (u - 0.5),
    biases 0.2 (u - 0.5), computed in float64 and rounded to float32.
Every tensor is read back from the written file with GGUFReader and dequantized with
gguf.quants.dequantize (the independent reference), and make_tiny_models.forward runs the
float64 forward pass over TOKENS.

Usage: python3 make_qwen25_shapes.py   (writes tiny/qwen25_shapes_logits.json)
"""

from __future__ import annotations

import json
import os
import sys
import tempfile

import numpy as np
import gguf
from gguf import GGMLQuantizationType as T

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_tiny_models import add_hparams, forward, make_vocab, round6  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "tiny", "qwen25_shapes_logits.json")

SEED = 2025
TOKENS = [3, 141, 59, 265, 358, 97, 323, 84]
N_LAYER, D_MODEL, N_FF, N_HEAD, N_HEAD_KV, HEAD_DIM, N_VOCAB = 2, 896, 4864, 14, 2, 64, 384
N_CTX, ROPE_BASE, RMS_EPS = 32768, 1_000_000.0, 1e-6
KV_DIM = N_HEAD_KV * HEAD_DIM

# f16 bit patterns: 0.002 (embeddings), 0.0004 (attn_v Q8_0), 0.003 (Q5_0 and Q5_1 d), -0.046
# (Q5_1 m), Q4_K d 0.0002 and dmin 0.0015, Q6_K d 0.0001.
SCALES = {"embd": 0x1819, "q8": 0x0E8E, "q5": 0x1A25, "q5_1_m": 0xA9E3, "q4k_d": 0x0A8E, "q4k_dmin": 0x1625,
          "q6k": 0x068E}

M64 = (1 << 64) - 1


class SplitMix64:
    """Engine's RandomGenerator: state += golden gamma, then the splitmix64 finalizer. It is
    a counter, so a run of outputs is computed at once."""

    def __init__(self, seed: int):
        self.count = 0
        self.seed = seed

    def take(self, n: int) -> np.ndarray:
        with np.errstate(over="ignore"):
            k = np.arange(self.count + 1, self.count + n + 1, dtype=np.uint64)
            z = np.uint64(self.seed) + k * np.uint64(0x9E3779B97F4A7C15)
            z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
            z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
            z = z ^ (z >> np.uint64(31))
        self.count += n
        return z


def tensor_specs() -> list[tuple[str, T, int, int, str]]:
    """(name, type, rows, cols, role) in file order; role picks the scale or float rule."""
    specs = [("token_embd.weight", T.Q8_0, N_VOCAB, D_MODEL, "embd")]
    for layer in range(N_LAYER):
        p = f"blk.{layer}."
        specs += [
            (p + "attn_norm.weight", T.F32, 1, D_MODEL, "norm"),
            (p + "attn_q.weight", T.Q5_0 if layer == 0 else T.Q5_1, D_MODEL, D_MODEL, "q5"),
            (p + "attn_q.bias", T.F32, 1, D_MODEL, "bias"),
            (p + "attn_k.weight", T.Q5_0, KV_DIM, D_MODEL, "q5"),
            (p + "attn_k.bias", T.F32, 1, KV_DIM, "bias"),
            (p + "attn_v.weight", T.Q8_0, KV_DIM, D_MODEL, "q8"),
            (p + "attn_v.bias", T.F32, 1, KV_DIM, "bias"),
            (p + "attn_output.weight", T.Q5_0, D_MODEL, D_MODEL, "q5"),
            (p + "ffn_norm.weight", T.F32, 1, D_MODEL, "norm"),
            (p + "ffn_gate.weight", T.Q5_0, N_FF, D_MODEL, "q5"),
            (p + "ffn_up.weight", T.Q5_0 if layer == 0 else T.Q5_1, N_FF, D_MODEL, "q5"),
            (p + "ffn_down.weight", T.Q4_K if layer == 0 else T.Q6_K, D_MODEL, N_FF, "k"),
        ]
    specs.append(("output_norm.weight", T.F32, 1, D_MODEL, "norm"))
    return specs


BLOCK = {T.Q8_0: (32, 34), T.Q5_0: (32, 22), T.Q5_1: (32, 24), T.Q4_K: (256, 144), T.Q6_K: (256, 210)}


def put_half(raw: np.ndarray, at: int, bits: int) -> None:
    raw[:, at] = bits & 0xFF
    raw[:, at + 1] = bits >> 8


def make_tensor(rng: SplitMix64, qtype: T, rows: int, cols: int, role: str) -> np.ndarray:
    if qtype == T.F32:
        u = (rng.take(rows * cols) >> np.uint64(11)).astype(np.float64) * 2.0 ** -53
        v = 1 + 0.2 * (u - 0.5) if role == "norm" else 0.2 * (u - 0.5)
        return v.astype(np.float32)
    size, nbytes = BLOCK[qtype]
    total = rows * cols // size * nbytes
    raw = rng.take((total + 7) // 8).view(np.uint8)[:total].copy()
    blocks = raw.reshape(-1, nbytes)
    if qtype == T.Q4_K:
        put_half(blocks, 0, SCALES["q4k_d"])
        put_half(blocks, 2, SCALES["q4k_dmin"])
        blocks[:, 4:16] = 0x88
    elif qtype == T.Q6_K:
        blocks[:, 192:208] = ((blocks[:, 192:208].astype(np.int16) % 33) - 16).astype(np.int8).view(np.uint8)
        put_half(blocks, 208, SCALES["q6k"])
    else:
        put_half(blocks, 0, SCALES[role])
        if qtype == T.Q5_1:
            put_half(blocks, 2, SCALES["q5_1_m"])
    return raw.reshape(rows, cols // size * nbytes)


def checksum(chunks: list[bytes]) -> int:
    """Σ word_i · (2i + 1) mod 2^64 over the little-endian 64-bit words of all tensors' bytes
    in file order (zero-padded to a whole word)."""
    data = b"".join(chunks)
    data += b"\0" * (-len(data) % 8)
    words = np.frombuffer(data, dtype=np.uint64)
    with np.errstate(over="ignore"):
        odd = np.arange(len(words), dtype=np.uint64) * np.uint64(2) + np.uint64(1)
        return int(np.sum(words * odd, dtype=np.uint64))


def main() -> int:
    rng = SplitMix64(SEED)
    path = os.path.join(tempfile.mkdtemp(), "qwen25-shapes.gguf")
    w = gguf.GGUFWriter(path, "qwen2")
    add_hparams(w, N_LAYER, N_CTX, D_MODEL, N_FF, N_HEAD, N_HEAD_KV, HEAD_DIM, ROPE_BASE, RMS_EPS)
    tokens, merges = make_vocab()
    w.add_tokenizer_model("gpt2")
    w.add_token_list(tokens)
    w.add_token_merges(merges)
    chunks = []
    for name, qtype, rows, cols, role in tensor_specs():
        data = make_tensor(rng, qtype, rows, cols, role)
        chunks.append(data.tobytes())
        if qtype == T.F32:
            w.add_tensor(name, data)
        else:
            w.add_tensor(name, data, raw_dtype=qtype)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()

    logits = forward(path, TOKENS)
    os.remove(path)
    assert logits.shape == (len(TOKENS), N_VOCAB) and np.all(np.isfinite(logits))
    mx = np.abs(logits).max()
    assert 1.0 < mx < 30.0, f"max |logit| {mx}"
    for i in range(1, len(TOKENS)):
        assert np.abs(logits[i] - logits[i - 1]).max() > 0.1, f"positions {i - 1}, {i} alike"
    result = {"seed": SEED, "tokens": TOKENS, "checksum": str(checksum(chunks)),
              "logits": [[round6(v) for v in row] for row in logits]}
    with open(OUT, "w") as f:
        json.dump(result, f, separators=(",", ":"))
        f.write("\n")
    print(f"checksum {result['checksum']}, logits std {logits.std():.3f}, max |logit| {mx:.3f}, "
          f"argmax per position {logits.argmax(axis=1).tolist()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
