#!/usr/bin/env python3
"""Golden logits for the real default model (SmolLM2-135M-Instruct, Q4_1 / Q8_0).

Every tensor is read from the GGUF with GGUFReader and dequantized with
gguf.quants.dequantize; a float64 llama forward pass (RMSNorm, "normal" RoPE rotating
adjacent pairs, GQA 9/3 heads, SwiGLU, tied embeddings) with an incremental KV cache then
runs each prompt and greedy-decodes from it. Activations are never quantized.

Output: reference_logits.json next to this script, a list of cases
  {"name", "prompt_ids", "greedy_ids",
   "top": [[id, logit] x 20] after the prompt,
   "probe": {"id": logit} for a few fixed ids after the prompt,
   "min_top2_margin": smallest top1 - top2 logit gap over the prompt's last position and
                      each greedy step (how robust the greedy ids are to small errors)}

Usage: python3 reference_forward.py [path/to/model.gguf]
       (default ../../../models/SmolLM2-135M-Instruct.Q4_1.gguf; needs numpy, gguf,
       tokenizers). Runtime: ~90 s on 2 CPU cores (~10 s of it loading; ~1.2 GB RAM,
       float64 weights).
"""

from __future__ import annotations

import json
import os
import sys
import time

import numpy as np
import gguf
from gguf.quants import dequantize

HERE = os.path.dirname(os.path.abspath(__file__))
MODEL = os.path.join(HERE, "..", "..", "..", "models", "SmolLM2-135M-Instruct.Q4_1.gguf")
OUT = os.path.join(HERE, "reference_logits.json")

EOS = 2
N_TOP = 20
PROBE_IDS = [0, 1, 2, 100, 1000, 10000, 30000, 49151]
# ChatML "system" turn of SmolLM2-Instruct, then "<|im_start|>user\n".
CHAT_HEAD = [1, 9690, 198, 2683, 359, 253, 5356, 5646, 11173, 3365, 3511, 308, 34519, 28,
             7018, 411, 407, 19712, 8182, 2, 198, 1, 4093, 198]
# "<|im_end|>\n<|im_start|>assistant\n"
CHAT_TAIL = [2, 198, 1, 520, 9531, 198]


# ----------------------------------------------------------------------------- loading

def load(path: str):
    """(scalar metadata dict, {name: float64 [rows][cols]}, reader)."""
    r = gguf.GGUFReader(path)
    meta = {}
    for f in r.fields.values():
        if len(f.types) == 1 and f.types[0] != gguf.GGUFValueType.ARRAY:
            v = f.parts[f.data[0]]
            meta[f.name] = bytes(v).decode() if f.types[0] == gguf.GGUFValueType.STRING else v[0].item()
    W = {}
    for t in r.tensors:
        shape = list(reversed([int(s) for s in t.shape]))  # GGUF [cols, rows] -> (rows, cols)
        W[t.name] = dequantize(t.data, t.tensor_type).astype(np.float64).reshape(shape)
    return meta, W, r


def string_array(r: gguf.GGUFReader, key: str) -> list[str]:
    f = r.fields[key]
    return [bytes(f.parts[i]).decode() for i in f.data]


def make_tokenizer(path: str, r: gguf.GGUFReader):
    """tokenizers.Tokenizer for raw text (no special-token handling)."""
    sys.path.insert(0, HERE)
    try:
        from hf_tokenizer import load_hf_tokenizer  # written alongside; preferred if present
        return load_hf_tokenizer(path, specials=False)
    except ImportError:
        pass
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    vocab = {tok: i for i, tok in enumerate(string_array(r, "tokenizer.ggml.tokens"))}
    merges = [tuple(m.split(" ", 1)) for m in string_array(r, "tokenizer.ggml.merges")]
    tk = Tokenizer(models.BPE(vocab, merges))
    tk.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)])
    tk.decoder = decoders.ByteLevel()
    return tk


# ----------------------------------------------------------------------------- model

def rms_norm(x, w, eps):
    return x / np.sqrt(np.mean(x * x) + eps) * w


def silu(x):
    return x / (1.0 + np.exp(-x))


class Llama:
    def __init__(self, meta, W):
        a = meta["general.architecture"]
        assert a == "llama", a
        self.W = W
        self.n_layer = meta[f"{a}.block_count"]
        self.n_head = meta[f"{a}.attention.head_count"]
        self.n_kv = meta[f"{a}.attention.head_count_kv"]
        self.eps = meta[f"{a}.attention.layer_norm_rms_epsilon"]
        self.base = meta[f"{a}.rope.freq_base"]
        self.hd = meta[f"{a}.embedding_length"] // self.n_head
        self.output = W.get("output.weight", W["token_embd.weight"])  # tied if absent
        half = self.hd // 2
        self.inv_freq = self.base ** (-2.0 * np.arange(half) / self.hd)
        self.reset()

    def reset(self):
        self.K = [[] for _ in range(self.n_layer)]  # per layer: [n_kv][hd] per position
        self.V = [[] for _ in range(self.n_layer)]
        self.pos = 0

    def rope(self, x):
        """x: [heads][hd]; rotate adjacent pairs (2i, 2i+1) by pos * base^(-2i/hd)."""
        th = self.pos * self.inv_freq
        c, s = np.cos(th), np.sin(th)
        x0, x1 = x[:, 0::2], x[:, 1::2]
        y = np.empty_like(x)
        y[:, 0::2] = x0 * c - x1 * s
        y[:, 1::2] = x0 * s + x1 * c
        return y

    def step(self, tok: int) -> np.ndarray:
        """Feed one token at self.pos; return its logits [vocab]."""
        W, hd, group = self.W, self.hd, self.n_head // self.n_kv
        x = W["token_embd.weight"][tok].copy()
        for l in range(self.n_layer):
            p = f"blk.{l}."
            h = rms_norm(x, W[p + "attn_norm.weight"], self.eps)
            q = self.rope((W[p + "attn_q.weight"] @ h).reshape(self.n_head, hd))
            k = self.rope((W[p + "attn_k.weight"] @ h).reshape(self.n_kv, hd))
            v = (W[p + "attn_v.weight"] @ h).reshape(self.n_kv, hd)
            self.K[l].append(k)
            self.V[l].append(v)
            K, V = np.stack(self.K[l]), np.stack(self.V[l])  # [t][n_kv][hd]
            att = np.empty((self.n_head, hd))
            for hh in range(self.n_head):
                kv = hh // group
                s = K[:, kv, :] @ q[hh] / np.sqrt(hd)
                s = np.exp(s - s.max())
                att[hh] = (s / s.sum()) @ V[:, kv, :]
            x = x + W[p + "attn_output.weight"] @ att.reshape(-1)
            h = rms_norm(x, W[p + "ffn_norm.weight"], self.eps)
            x = x + W[p + "ffn_down.weight"] @ (silu(W[p + "ffn_gate.weight"] @ h) * (W[p + "ffn_up.weight"] @ h))
        self.pos += 1
        return self.output @ rms_norm(x, W["output_norm.weight"], self.eps)


def margin(logits: np.ndarray) -> float:
    a, b = np.sort(logits)[-2:]
    return float(b - a)


def run_case(model: Llama, name: str, prompt: list[int], n_steps: int) -> dict:
    model.reset()
    for t in prompt:
        logits = model.step(t)
    top = np.argsort(-logits, kind="stable")[:N_TOP]
    case = {"name": name, "prompt_ids": prompt,
            "top": [[int(i), round(float(logits[i]), 5)] for i in top],
            "probe": {str(i): round(float(logits[i]), 5) for i in PROBE_IDS}}
    greedy, margins = [], [margin(logits)]
    for n in range(n_steps):
        nxt = int(np.argmax(logits))
        greedy.append(nxt)
        if nxt == EOS or n == n_steps - 1:
            break
        logits = model.step(nxt)
        margins.append(margin(logits))
    case["greedy_ids"] = greedy
    case["min_top2_margin"] = round(min(margins), 5)
    return case


def main() -> int:
    path = sys.argv[1] if len(sys.argv) > 1 else MODEL
    t0 = time.time()
    meta, W, reader = load(path)
    tk = make_tokenizer(path, reader)
    ids = lambda text: tk.encode(text, add_special_tokens=False).ids
    model = Llama(meta, W)
    print(f"loaded in {time.time() - t0:.1f}s")

    cases = [
        ("france", CHAT_HEAD + [1780, 314, 260, 3575, 282, 4649, 47] + CHAT_TAIL, 8),
        ("colors", CHAT_HEAD + ids("Name three primary colors.") + CHAT_TAIL, 16),
        ("raw-fox", ids("The quick brown fox jumps over the lazy dog. The quick brown"), 12),
    ]
    out = []
    for name, prompt, n in cases:
        c = run_case(model, name, prompt, n)
        out.append(c)
        print(f"{name}: top5 {c['top'][:5]}\n  greedy {c['greedy_ids']} "
              f"{tk.decode(c['greedy_ids'], skip_special_tokens=False)!r}  "
              f"min_top2_margin {c['min_top2_margin']}")

    fr = out[0]
    assert fr["greedy_ids"] == [504, 3575, 282, 4649, 314, 7042, 30, 2], fr["greedy_ids"]
    assert [t[0] for t in fr["top"][:5]] == [504, 60, 15319, 2219, 7026], fr["top"][:5]

    with open(OUT, "w") as f:
        json.dump(out, f, separators=(",", ":"))
        f.write("\n")
    print(f"wrote {OUT} ({os.path.getsize(OUT)} bytes) in {time.time() - t0:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
