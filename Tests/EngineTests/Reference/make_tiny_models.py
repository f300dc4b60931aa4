#!/usr/bin/env python3
"""Make the tiny synthetic GGUF models and their golden logits for TinyModelTests.swift.

Why: the default model (SmolLM2-135M, llama arch, Q4_1/Q8_0, tied embeddings) leaves
engine paths unexercised. These 2-layer models cover them:

  * tiny-llama.gguf  llama arch, "normal" RoPE (rotate adjacent pairs), untied Q8_0 output
                     head, layer 0 in Q4_0/Q5_0, layer 1 in Q4_K/Q6_K, plus an F32 and an
                     F16 matrix inside the layers; F16 token embedding.
  * tiny-qwen2.gguf  qwen2 arch: Q/K/V biases and "neox" RoPE (rotate pairs (i, i + 32)),
                     untied F16 output head, Q6_K token embedding (a K-quant row lookup),
                     layer 0 in Q4_K/Q6_K (+ an F32 attn_v), layer 1 in Q4_0/Q5_0/Q8_0
                     (+ an F16 attn_k).
  * tiny-qwen3.gguf  qwen3 arch: each head's q and k RMS-normed before RoPE, no biases.
  * tiny-llama3.gguf llama arch with Llama 3's RoPE frequency factors (rope_freqs.weight),
                     and Q5_K matrices (Q4_K_M and Q5_K_M files of real models have them).

Both: d_model 256, FFN 512, 4 query heads / 2 KV heads (head dim 64, GQA), vocab 384,
context 512, RoPE base 10000, RMSNorm eps 1e-5, and a minimal GPT-2 byte-level BPE
tokenizer (256 byte characters + 128 multi-character tokens, a few of them reachable via
merges, e.g. "Hello world" -> ["Hello", "Ġworld"]). Weights are seeded random normals, so
the files are reproducible byte for byte.

Golden logits: every tensor is read back from the written FILE with GGUFReader and
dequantized with gguf.quants.dequantize, then a float64 causal forward pass runs over
TOKENS and the logits at every position go to tiny/tiny_logits.json (6 significant digits):
  {"tiny-llama": {"tokens": [...], "logits": [[384 floats], ... one row per position]},
   "tiny-qwen2": {...}}
The Swift test feeds the tokens one at a time and compares every position.

gguf-py (0.23.3) can dequantize Q4_K and Q6_K but cannot quantize them, so this script
packs those blocks itself (simple min/max quantizers, checked by a round trip through
gguf.quants.dequantize).

Usage: python3 make_tiny_models.py        (writes into tiny/ next to this script)
"""

from __future__ import annotations

import json
import os
import sys

import numpy as np
import gguf
from gguf import GGMLQuantizationType as T
from gguf.quants import dequantize, quantize

HERE = os.path.dirname(os.path.abspath(__file__))
OUT_DIR = os.path.join(HERE, "tiny")

TOKENS = [5, 17, 300, 42, 7, 255, 100, 383, 64, 12]

N_LAYER = 2
D_MODEL = 256
N_FF = 512
N_HEAD = 4
N_HEAD_KV = 2
HEAD_DIM = D_MODEL // N_HEAD  # 64
N_VOCAB = 384
N_CTX = 512
ROPE_BASE = 10000.0
RMS_EPS = 1e-5
QK_K = 256

# Per-model tensor types. Keys are the tensor name without the "blk.N." prefix / ".weight".
TYPES = {
    "tiny-llama": {
        "arch": "llama",
        "seed": 1234,
        "token_embd": T.F16,
        "output": T.Q8_0,
        "layers": [
            {"attn_q": T.Q4_0, "attn_k": T.F32, "attn_v": T.Q5_0, "attn_output": T.Q5_0,
             "ffn_gate": T.Q4_0, "ffn_up": T.Q5_0, "ffn_down": T.Q4_0},
            {"attn_q": T.Q4_K, "attn_k": T.Q6_K, "attn_v": T.F16, "attn_output": T.Q6_K,
             "ffn_gate": T.Q6_K, "ffn_up": T.Q4_K, "ffn_down": T.Q4_K},
        ],
    },
    "tiny-qwen2": {
        "arch": "qwen2",
        "seed": 5678,
        "token_embd": T.Q6_K,
        "output": T.F16,
        "layers": [
            {"attn_q": T.Q4_K, "attn_k": T.Q6_K, "attn_v": T.F32, "attn_output": T.Q4_K,
             "ffn_gate": T.Q6_K, "ffn_up": T.Q4_K, "ffn_down": T.Q6_K},
            {"attn_q": T.Q5_0, "attn_k": T.F16, "attn_v": T.Q4_0, "attn_output": T.Q4_0,
             "ffn_gate": T.Q5_0, "ffn_up": T.Q8_0, "ffn_down": T.Q4_0},
        ],
    },
}

TYPES["tiny-qwen3"] = {
    # Qwen 3: each head's q and k RMS-normed before RoPE (attn_q_norm, attn_k_norm), no
    # biases, "neox" RoPE.
    "arch": "qwen3",
    "seed": 9012,
    "token_embd": T.Q8_0,
    "output": T.Q6_K,
    "layers": [
        {"attn_q": T.Q8_0, "attn_k": T.Q4_K, "attn_v": T.Q6_K, "attn_output": T.Q5_0,
         "ffn_gate": T.Q4_K, "ffn_up": T.Q6_K, "ffn_down": T.Q8_0},
        {"attn_q": T.Q6_K, "attn_k": T.Q5_0, "attn_v": T.Q8_0, "attn_output": T.Q4_K,
         "ffn_gate": T.Q8_0, "ffn_up": T.Q4_0, "ffn_down": T.Q6_K},
    ],
}
TYPES["tiny-llama3"] = {
    # Llama 3.x: a llama model with RoPE frequency factors (rope_freqs.weight, one per pair:
    # pair i turns by pos · base^(−2i/head_dim) / factor_i, as ggml_rope_ext's freq_factors).
    # Here a ramp from 1 to 8 over the pairs, so that the factors move these ten positions'
    # logits (Llama 3.1's own put 8 only on pairs too slow to matter at short range).
    "arch": "llama",
    "seed": 3456,
    "token_embd": T.Q8_0,
    "output": T.Q8_0,
    "rope_freqs": True,
    "layers": [
        {"attn_q": T.Q5_K, "attn_k": T.Q8_0, "attn_v": T.Q4_0, "attn_output": T.Q6_K,
         "ffn_gate": T.Q5_0, "ffn_up": T.Q8_0, "ffn_down": T.Q5_K},
        {"attn_q": T.Q8_0, "attn_k": T.Q6_K, "attn_v": T.Q5_0, "attn_output": T.Q5_K,
         "ffn_gate": T.Q4_K, "ffn_up": T.Q6_K, "ffn_down": T.Q5_0},
    ],
}
ROPE_FACTORS = np.linspace(1.0, 8.0, HEAD_DIM // 2)

# (rows = out, cols = in) of each layer matrix, and the std of its random weights.
Q_DIM = N_HEAD * HEAD_DIM
KV_DIM = N_HEAD_KV * HEAD_DIM
LAYER_SHAPES = {
    "attn_q": (Q_DIM, D_MODEL, 0.05),
    "attn_k": (KV_DIM, D_MODEL, 0.05),
    "attn_v": (KV_DIM, D_MODEL, 0.05),
    "attn_output": (D_MODEL, Q_DIM, 0.04),
    "ffn_gate": (N_FF, D_MODEL, 0.05),
    "ffn_up": (N_FF, D_MODEL, 0.05),
    "ffn_down": (D_MODEL, N_FF, 0.04),
}
EMBD_STD = 1.0
OUTPUT_STD = 0.1  # larger than the layers' so the logits come out O(1-10)
BIAS_STD = 0.2


# ----------------------------------------------------------------------------- tokenizer

def bytes_to_unicode() -> list[str]:
    """GPT-2's byte -> printable character map, as a list indexed by token id 0..255
    (same order as GPT-2's vocabulary: printable bytes first, then the remapped ones)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) \
        + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return [chr(c) for c in cs]


# Each merge "a b" makes the token a+b; every part exists (as a byte character or an
# earlier merge's result) before the merge that uses it.
MERGES = [
    "Ġ t", "h e", "Ġt he", "i n", "in g", "a n", "n d", "Ġ a", "Ġa nd", "e r", "o n",
    "r e", "a t", "e n", "o u", "Ġ s", "Ġ w", "Ġ o", "Ġo f", "Ġ i", "Ġi n", "l l",
    "H e", "He ll", "Hell o", "o r", "Ġw or", "l d", "Ġwor ld",
]


def make_vocab() -> tuple[list[str], list[str]]:
    tokens = bytes_to_unicode()
    for m in MERGES:
        a, b = m.split(" ")
        assert a in tokens and b in tokens, m
        if a + b not in tokens:
            tokens.append(a + b)
    # Fill up to N_VOCAB with made-up multi-character tokens no merge produces.
    cons, vows = "bcdfgkmpstvz", "aeiou"
    fill = [c + v + c2 for c in cons for v in vows for c2 in "xq"]
    for t in fill:
        if len(tokens) == N_VOCAB:
            break
        if t not in tokens:
            tokens.append(t)
    assert len(tokens) == N_VOCAB and len(set(tokens)) == N_VOCAB
    return tokens, MERGES


# ----------------------------------------------------------------------------- K-quants
# gguf-py has no quantize_blocks for Q4_K / Q5_K / Q6_K, so pack them here (block layouts as
# in ggml's block_q4_K / block_q5_K / block_q6_K, i.e. as gguf.quants' dequantizers read them).

def f16(x: np.ndarray) -> np.ndarray:
    return np.asarray(x, dtype=np.float16)


def _scale_min_codes(w: np.ndarray, top: int):
    """Q4_K's and Q5_K's shared part: per super-block f16 d and dmin, the 12 bytes of packed
    6-bit (scale, min) for 8 sub-blocks of 32, and the codes q in 0..top, so that
    x = d * sc[j] * q - dmin * m[j]."""
    x = w.reshape(-1, 8, 32).astype(np.float64)
    nb = x.shape[0]
    lo = np.minimum(x.min(axis=-1), 0.0)             # [nb, 8]
    hi = np.maximum(x.max(axis=-1), 0.0)
    sub_scale = (hi - lo) / float(top)
    sub_min = -lo                                       # >= 0
    d = f16(np.maximum(sub_scale.max(axis=-1), 1e-8) / 63.0)
    dmin = f16(np.maximum(sub_min.max(axis=-1), 1e-8) / 63.0)
    d64, dmin64 = d.astype(np.float64)[:, None], dmin.astype(np.float64)[:, None]
    sc = np.clip(np.rint(sub_scale / d64), 1, 63).astype(np.uint8)
    mn = np.clip(np.rint(sub_min / dmin64), 0, 63).astype(np.uint8)
    step = (d64 * sc)[..., None]
    off = (dmin64 * mn)[..., None]
    q = np.clip(np.rint((x + off) / step), 0, top).astype(np.uint8)   # [nb, 8, 32]
    scales = np.zeros((nb, 12), dtype=np.uint8)
    scales[:, 0:4] = sc[:, 0:4] | ((sc[:, 4:8] >> 4) << 6)
    scales[:, 4:8] = mn[:, 0:4] | ((mn[:, 4:8] >> 4) << 6)
    scales[:, 8:12] = (sc[:, 4:8] & 0x0F) | ((mn[:, 4:8] & 0x0F) << 4)
    head = np.concatenate([d.reshape(nb, 1).view(np.uint8), dmin.reshape(nb, 1).view(np.uint8), scales], axis=1)
    return nb, head, q


def quantize_q4_k(w: np.ndarray) -> np.ndarray:
    """[rows][cols] float -> [rows][cols/256*144] uint8. Per block: f16 d, f16 dmin,
    12 bytes of packed 6-bit (scale, min) for 8 sub-blocks of 32, 128 bytes of nibbles.
    x = d * sc[j] * q - dmin * m[j], q in 0..15."""
    rows, cols = w.shape
    nb, head, q = _scale_min_codes(w, 15)
    qs = (q[:, 0::2, :] | (q[:, 1::2, :] << 4)).reshape(nb, 128)      # chunk j: sub 2j | 2j+1
    blocks = np.concatenate([head, qs], axis=1)
    assert blocks.shape[1] == 144
    return blocks.reshape(rows, cols // QK_K * 144)


def quantize_q5_k(w: np.ndarray) -> np.ndarray:
    """[rows][cols] float -> [rows][cols/256*176] uint8: Q4_K's layout plus qh[32], the fifth
    bits (bit 2j of qh[l]: weight l of sub-block 2j; bit 2j+1: of sub-block 2j+1), before
    the 128 bytes of low nibbles. q in 0..31."""
    rows, cols = w.shape
    nb, head, q = _scale_min_codes(w, 31)
    low = q & 0x0F
    qs = (low[:, 0::2, :] | (low[:, 1::2, :] << 4)).reshape(nb, 128)
    qh = np.zeros((nb, 32), dtype=np.uint8)
    for j in range(8):
        qh |= ((q[:, j, :] >> 4) & 1) << j
    blocks = np.concatenate([head, qh, qs], axis=1)
    assert blocks.shape[1] == 176
    return blocks.reshape(rows, cols // QK_K * 176)


def quantize_q6_k(w: np.ndarray) -> np.ndarray:
    """[rows][cols] float -> [rows][cols/256*210] uint8. Per block: 128 bytes low nibbles,
    64 bytes high 2-bit pairs, 16 int8 scales (sub-blocks of 16), f16 d.
    x = d * scale[j] * (q - 32), q in 0..63."""
    rows, cols = w.shape
    x = w.reshape(-1, 16, 16).astype(np.float64)
    nb = x.shape[0]
    sub_scale = np.abs(x).max(axis=-1) / 31.0           # [nb, 16]
    d = f16(np.maximum(sub_scale.max(axis=-1), 1e-8) / 127.0)
    d64 = d.astype(np.float64)[:, None]
    sc = np.clip(np.rint(sub_scale / d64), 1, 127).astype(np.int8)
    step = (d64 * sc)[..., None]
    q = (np.clip(np.rint(x / step), -32, 31) + 32).astype(np.uint8).reshape(nb, 256)

    low, high = q & 0x0F, q >> 4
    ql = np.zeros((nb, 128), dtype=np.uint8)
    qh = np.zeros((nb, 64), dtype=np.uint8)
    for h in range(2):  # each half of 128 values
        base = h * 128
        ql[:, h * 64:(h + 1) * 64] = low[:, base:base + 64] | (low[:, base + 64:base + 128] << 4)
        for t in range(4):
            qh[:, h * 32:(h + 1) * 32] |= high[:, base + t * 32:base + (t + 1) * 32] << (2 * t)
    blocks = np.concatenate([ql, qh, sc.view(np.uint8), d.reshape(nb, 1).view(np.uint8)], axis=1)
    assert blocks.shape[1] == 210
    return blocks.reshape(rows, cols // QK_K * 210)


def encode(w: np.ndarray, qtype: T) -> np.ndarray:
    """float32 [rows][cols] -> array GGUFWriter.add_tensor writes as `qtype`."""
    w = w.astype(np.float32)
    if qtype == T.Q4_K:
        raw = quantize_q4_k(w)
    elif qtype == T.Q5_K:
        raw = quantize_q5_k(w)
    elif qtype == T.Q6_K:
        raw = quantize_q6_k(w)
    else:
        raw = quantize(w, qtype)  # F32 / F16 arrays, or uint8 blocks for Q4_0/Q5_0/Q8_0
    if raw.dtype == np.uint8:
        # Round-trip check of the packing: errors must be within the type's step size.
        back = dequantize(raw, qtype)
        assert back.shape == w.shape, (back.shape, w.shape)
        rel = np.abs(back - w).max() / np.abs(w).max()
        assert rel < 0.15, f"{qtype.name} round trip error {rel:.3f}"
    return raw


# ----------------------------------------------------------------------------- writing

def add_hparams(w: gguf.GGUFWriter, n_layer: int, n_ctx: int, d_model: int, n_ff: int, n_head: int,
                n_head_kv: int, head_dim: int, rope_base: float, rms_eps: float) -> None:
    """The architecture's hyperparameters, in the order the tiny files were written with."""
    w.add_block_count(n_layer)
    w.add_context_length(n_ctx)
    w.add_embedding_length(d_model)
    w.add_feed_forward_length(n_ff)
    w.add_head_count(n_head)
    w.add_head_count_kv(n_head_kv)
    w.add_rope_dimension_count(head_dim)
    w.add_rope_freq_base(rope_base)
    w.add_layer_norm_rms_eps(rms_eps)


def write_model(name: str) -> str:
    spec = TYPES[name]
    arch = spec["arch"]
    rng = np.random.default_rng(spec["seed"])
    path = os.path.join(OUT_DIR, f"{name}.gguf")

    w = gguf.GGUFWriter(path, arch)
    w.add_name(name)
    add_hparams(w, N_LAYER, N_CTX, D_MODEL, N_FF, N_HEAD, N_HEAD_KV, HEAD_DIM, ROPE_BASE, RMS_EPS)
    w.add_vocab_size(N_VOCAB)

    tokens, merges = make_vocab()
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("gpt2")
    w.add_token_list(tokens)
    w.add_token_types([int(gguf.TokenType.NORMAL)] * N_VOCAB)
    w.add_token_merges(merges)

    def add(tname: str, data: np.ndarray, qtype: T):
        raw = encode(data, qtype)
        if raw.dtype == np.uint8:
            # numpy shape (rows, bytes per row); the writer turns it into the element
            # shape and reverses it to GGUF's [cols, rows].
            w.add_tensor(tname, raw, raw_dtype=qtype)
        else:
            w.add_tensor(tname, raw)

    def norm(n: int) -> np.ndarray:
        return 1.0 + 0.1 * rng.standard_normal(n)

    add("token_embd.weight", EMBD_STD * rng.standard_normal((N_VOCAB, D_MODEL)), spec["token_embd"])
    for i, ltypes in enumerate(spec["layers"]):
        p = f"blk.{i}."
        add(p + "attn_norm.weight", norm(D_MODEL), T.F32)
        for mname in ("attn_q", "attn_k", "attn_v"):
            rows, cols, std = LAYER_SHAPES[mname]
            add(p + mname + ".weight", std * rng.standard_normal((rows, cols)), ltypes[mname])
            if arch == "qwen2":
                add(p + mname + ".bias", BIAS_STD * rng.standard_normal(rows), T.F32)
        if arch == "qwen3":
            add(p + "attn_q_norm.weight", norm(HEAD_DIM), T.F32)
            add(p + "attn_k_norm.weight", norm(HEAD_DIM), T.F32)
        rows, cols, std = LAYER_SHAPES["attn_output"]
        add(p + "attn_output.weight", std * rng.standard_normal((rows, cols)), ltypes["attn_output"])
        add(p + "ffn_norm.weight", norm(D_MODEL), T.F32)
        for mname in ("ffn_gate", "ffn_up", "ffn_down"):
            rows, cols, std = LAYER_SHAPES[mname]
            add(p + mname + ".weight", std * rng.standard_normal((rows, cols)), ltypes[mname])
    add("output_norm.weight", norm(D_MODEL), T.F32)
    add("output.weight", OUTPUT_STD * rng.standard_normal((N_VOCAB, D_MODEL)), spec["output"])
    if spec.get("rope_freqs"):
        add("rope_freqs.weight", ROPE_FACTORS, T.F32)

    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def expected_types(name: str) -> dict[str, tuple[T, list[int]]]:
    """tensor name -> (type, GGUF shape [cols, rows]) as the file must hold them."""
    spec = TYPES[name]
    exp = {"token_embd.weight": (spec["token_embd"], [D_MODEL, N_VOCAB]),
           "output_norm.weight": (T.F32, [D_MODEL]),
           "output.weight": (spec["output"], [D_MODEL, N_VOCAB])}
    for i, ltypes in enumerate(spec["layers"]):
        p = f"blk.{i}."
        exp[p + "attn_norm.weight"] = (T.F32, [D_MODEL])
        exp[p + "ffn_norm.weight"] = (T.F32, [D_MODEL])
        for mname, (rows, cols, _) in LAYER_SHAPES.items():
            exp[p + mname + ".weight"] = (ltypes[mname], [cols, rows])
        if spec["arch"] == "qwen2":
            for mname in ("attn_q", "attn_k", "attn_v"):
                exp[p + mname + ".bias"] = (T.F32, [LAYER_SHAPES[mname][0]])
        if spec["arch"] == "qwen3":
            exp[p + "attn_q_norm.weight"] = (T.F32, [HEAD_DIM])
            exp[p + "attn_k_norm.weight"] = (T.F32, [HEAD_DIM])
    if spec.get("rope_freqs"):
        exp["rope_freqs.weight"] = (T.F32, [HEAD_DIM // 2])
    return exp


# ----------------------------------------------------------------------------- reference

def load(path: str):
    """Read a GGUF back: (metadata dict of scalars, {name: float64 array [rows][cols]},
    {name: (type, shape)})."""
    r = gguf.GGUFReader(path)
    meta = {}
    for f in r.fields.values():
        if len(f.types) == 1 and f.types[0] != gguf.GGUFValueType.ARRAY:
            v = f.parts[f.data[0]]
            meta[f.name] = bytes(v).decode() if f.types[0] == gguf.GGUFValueType.STRING else v[0].item()
    tensors, info = {}, {}
    for t in r.tensors:
        shape = [int(s) for s in t.shape]  # GGUF order: [cols, rows]
        vals = dequantize(t.data, t.tensor_type).astype(np.float64)
        tensors[t.name] = vals.reshape(list(reversed(shape)))
        info[t.name] = (t.tensor_type, shape)
    return meta, tensors, info


def rms_norm(x: np.ndarray, w: np.ndarray, eps: float) -> np.ndarray:
    return x / np.sqrt(np.mean(x * x) + eps) * w


def rope(x: np.ndarray, pos: int, base: float, neox: bool, factors=None) -> np.ndarray:
    """x: [n_heads][head_dim]. Pair i rotates by pos * base^(-2i/head_dim) (divided by
    factors[i] when given): pairs (2i, 2i+1) in llama.cpp's "normal" mode, (i, i +
    head_dim/2) in "neox" mode."""
    hd = x.shape[-1]
    half = hd // 2
    theta = pos * base ** (-2.0 * np.arange(half) / hd)
    if factors is not None:
        theta = theta / factors
    cos, sin = np.cos(theta), np.sin(theta)
    if neox:
        a, b = np.arange(half), np.arange(half) + half
    else:
        a, b = 2 * np.arange(half), 2 * np.arange(half) + 1
    y = x.copy()
    x0, x1 = x[:, a], x[:, b]
    y[:, a] = x0 * cos - x1 * sin
    y[:, b] = x0 * sin + x1 * cos
    return y


def silu(x: np.ndarray) -> np.ndarray:
    return x / (1.0 + np.exp(-x))


def forward(path: str, tokens: list[int], use_factors: bool = True) -> np.ndarray:
    """float64 causal forward pass over `tokens`; returns logits [len(tokens)][vocab]."""
    meta, W, _ = load(path)
    arch = meta["general.architecture"]
    n_layer = meta[f"{arch}.block_count"]
    n_head = meta[f"{arch}.attention.head_count"]
    n_kv = meta[f"{arch}.attention.head_count_kv"]
    eps = meta[f"{arch}.attention.layer_norm_rms_epsilon"]
    base = meta[f"{arch}.rope.freq_base"]
    d = meta[f"{arch}.embedding_length"]
    hd = d // n_head
    group = n_head // n_kv
    neox = arch in ("qwen2", "qwen3")
    bias = arch == "qwen2"
    factors = W.get("rope_freqs.weight") if use_factors else None
    output = W.get("output.weight", W["token_embd.weight"])

    keys = [[] for _ in range(n_layer)]    # per layer: list of [n_kv][hd] per position
    values = [[] for _ in range(n_layer)]
    all_logits = []
    for pos, tok in enumerate(tokens):
        x = W["token_embd.weight"][tok].copy()
        for l in range(n_layer):
            p = f"blk.{l}."
            h = rms_norm(x, W[p + "attn_norm.weight"], eps)
            q = W[p + "attn_q.weight"] @ h
            k = W[p + "attn_k.weight"] @ h
            v = W[p + "attn_v.weight"] @ h
            if bias:
                q += W[p + "attn_q.bias"]
                k += W[p + "attn_k.bias"]
                v += W[p + "attn_v.bias"]
            q, k = q.reshape(n_head, hd), k.reshape(n_kv, hd)
            if arch == "qwen3":
                q = np.stack([rms_norm(row, W[p + "attn_q_norm.weight"], eps) for row in q])
                k = np.stack([rms_norm(row, W[p + "attn_k_norm.weight"], eps) for row in k])
            q = rope(q, pos, base, neox, factors)
            k = rope(k, pos, base, neox, factors)
            keys[l].append(k)
            values[l].append(v.reshape(n_kv, hd))
            K = np.stack(keys[l])    # [t][n_kv][hd]
            V = np.stack(values[l])
            att = np.zeros((n_head, hd))
            for hh in range(n_head):
                kv = hh // group
                s = K[:, kv, :] @ q[hh] / np.sqrt(hd)
                s = np.exp(s - s.max())
                s /= s.sum()
                att[hh] = s @ V[:, kv, :]
            x = x + W[p + "attn_output.weight"] @ att.reshape(-1)
            h = rms_norm(x, W[p + "ffn_norm.weight"], eps)
            ff = silu(W[p + "ffn_gate.weight"] @ h) * (W[p + "ffn_up.weight"] @ h)
            x = x + W[p + "ffn_down.weight"] @ ff
        x = rms_norm(x, W["output_norm.weight"], eps)
        all_logits.append(output @ x)
    return np.array(all_logits)


def round6(v: float) -> float:
    return float(f"{v:.6g}")


# ----------------------------------------------------------------------------- main

def main() -> int:
    os.makedirs(OUT_DIR, exist_ok=True)
    result = {}
    for name in TYPES:
        path = write_model(name)
        size = os.path.getsize(path)
        assert size < 1_500_000, f"{path} is {size} bytes"

        # Verify types and shapes came out as intended.
        meta, W, info = load(path)
        exp = expected_types(name)
        assert set(info) == set(exp), set(info) ^ set(exp)
        for tname, (qtype, shape) in exp.items():
            got = info[tname]
            assert got[0] == qtype and got[1] == shape, f"{tname}: got {got}, want {(qtype, shape)}"
        assert meta["general.architecture"] == TYPES[name]["arch"]

        logits = forward(path, TOKENS)
        assert logits.shape == (len(TOKENS), N_VOCAB)
        assert np.all(np.isfinite(logits))
        mx = np.abs(logits).max()
        assert 1.0 < mx < 30.0, f"{name}: max |logit| {mx}"
        for i in range(1, len(TOKENS)):
            assert np.abs(logits[i] - logits[i - 1]).max() > 0.1, f"{name}: positions {i - 1}, {i} alike"
        if TYPES[name].get("rope_freqs"):
            moved = np.abs(forward(path, TOKENS, use_factors=False) - logits).max()
            assert moved > 0.05, f"{name}: the frequency factors move the logits by only {moved}"
        result[name] = {"tokens": TOKENS,
                        "logits": [[round6(v) for v in row] for row in logits]}

        print(f"{name}: {size} bytes, logits std {logits.std():.3f}, max |logit| {mx:.3f}, "
              f"argmax per position {logits.argmax(axis=1).tolist()}")
        for tname, (qtype, shape) in info.items():
            print(f"    {tname:24s} {qtype.name:5s} {shape}")

    with open(os.path.join(OUT_DIR, "tiny_logits.json"), "w") as f:
        json.dump(result, f, separators=(",", ":"))
        f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
