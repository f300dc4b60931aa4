#!/usr/bin/env python3
"""Golden logits for the real default model (SmolLM2-135M-Instruct, Q4_1 blocks / Q8_0 embedding).

An independent float reference for the Swift engine: every tensor is read from the GGUF
with gguf.GGUFReader and dequantized ONCE with gguf.quants.dequantize to float64; then a
plain llama forward pass, one token at a time with a KV cache (like llama2.c's run.c):

    x = token_embd[tok]
    per layer:  h = rmsnorm(x) * attn_norm
                q, k, v = Wq h, Wk h, Wv h          (9 query heads, 3 KV heads, head dim 64)
                rope q, k: llama.cpp "normal" mode, rotate adjacent pairs (2i, 2i+1)
                           by pos * freq_base^(-2i/64)
                causal softmax(q.k / sqrt(64)) . v, query head h reads KV head h // 3
                x += Wo att
                h = rmsnorm(x) * ffn_norm
                x += Wdown (silu(Wgate h) * Wup h)
    logits = token_embd @ (rmsnorm(x) * output_norm)     (tied embeddings: no output.weight)

Activations are never quantized; everything is float64.

Output: reference_logits.json next to this script, a JSON list of cases:
  name         "france", "colors", "haiku", "raw-fox"
  prompt_ids   the prompt fed from position 0; no BOS is prepended (ChatML cases start
               with id 1 = "<|im_start|>", exactly as SmolLM2's chat template renders it)
  greedy_ids   argmax decoding after the prompt, up to N new tokens; stops after emitting
               eos id 2 (the 2 is then included)
  top          [[id, logit] x 20] of the logits after the last prompt token
  probe        {"id": logit} after the last prompt token for fixed ids
               (0, 1, 2, 100, 1000, 10000, 30000, 49151) plus the top-2 ids
  logits_after_each_greedy_step_top5
               one entry per greedy id: entry j is the top-5 [[id, logit]] of the logits
               greedy_ids[j] was chosen from (entry 0 = after the prompt, entry j>0 = after
               feeding greedy_ids[j-1]), so a test can check logits mid-generation
  min_top2_margin
               smallest top1 - top2 logit gap over those same steps (how much numerical
               error the greedy ids can tolerate)
Logits are rounded to 1e-5.

Tokenization of the extra prompts uses hf_tokenizer.py (next to this script, Hugging Face
`tokenizers` built from the GGUF vocabulary); the "france" ids are the design doc's golden
ids and the script checks the ChatML builder reproduces them.

How it was run (repo root, 2 CPU cores, numpy 2.4.6, gguf 0.23.3, tokenizers, Python 3.11):
    python3 Tests/EngineTests/Reference/reference_forward.py
took 40 s in all on an idle machine (93 s with other builds running; ~8 s of it loading
and dequantizing; ~1.1 GB RAM for the float64 weights). Reruns give byte-identical JSON.
Optional argument: path to the .gguf (default models/SmolLM2-135M-Instruct.Q4_1.gguf).
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
SYSTEM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"

# Design doc golden: ChatML prompt for "What is the capital of France?" with the default
# system prompt, and what greedy decoding must produce from it.
FRANCE_IDS = [1, 9690, 198, 2683, 359, 253, 5356, 5646, 11173, 3365, 3511, 308, 34519, 28,
              7018, 411, 407, 19712, 8182, 2, 198, 1, 4093, 198, 1780, 314, 260, 3575, 282,
              4649, 47, 2, 198, 1, 520, 9531, 198]
FRANCE_GREEDY = [504, 3575, 282, 4649, 314, 7042, 30]  # "The capital of France is Paris."
FRANCE_TOP5 = [504, 60, 15319, 2219, 7026]


def chatml(question: str) -> str:
    return (f"<|im_start|>system\n{SYSTEM}<|im_end|>\n"
            f"<|im_start|>user\n{question}<|im_end|>\n"
            f"<|im_start|>assistant\n")


# ----------------------------------------------------------------------------- weights

class Model:
    """Hyperparameters from the GGUF metadata and every tensor as float64 [out][in]."""

    def __init__(self, path: str):
        r = gguf.GGUFReader(path)
        meta = {}
        for f in r.fields.values():
            if len(f.types) == 1 and f.types[0] != gguf.GGUFValueType.ARRAY:
                v = f.parts[f.data[0]]
                meta[f.name] = (bytes(v).decode() if f.types[0] == gguf.GGUFValueType.STRING
                                else v[0].item())
        arch = meta["general.architecture"]
        assert arch == "llama", arch
        self.n_layers = meta[f"{arch}.block_count"]
        self.dim = meta[f"{arch}.embedding_length"]
        self.n_heads = meta[f"{arch}.attention.head_count"]
        self.n_kv_heads = meta[f"{arch}.attention.head_count_kv"]
        self.head_dim = self.dim // self.n_heads
        self.eps = meta[f"{arch}.attention.layer_norm_rms_epsilon"]
        self.rope_base = meta[f"{arch}.rope.freq_base"]

        self.w = {}
        for t in r.tensors:
            # GGUF lists dims innermost first ([in, out]); numpy wants (out, in).
            shape = [int(s) for s in reversed(t.shape)]
            self.w[t.name] = dequantize(t.data, t.tensor_type).astype(np.float64).reshape(shape)
        self.vocab_size = self.w["token_embd.weight"].shape[0]
        # Tied embeddings: no output.weight in this file.
        self.w.setdefault("output.weight", self.w["token_embd.weight"])
        self.meta = meta

    def new_cache(self, max_len: int):
        shape = (self.n_layers, max_len, self.n_kv_heads, self.head_dim)
        return {"k": np.zeros(shape), "v": np.zeros(shape)}


# ----------------------------------------------------------------------------- forward

def rmsnorm(x: np.ndarray, weight: np.ndarray, eps: float) -> np.ndarray:
    return x / np.sqrt(np.mean(x * x) + eps) * weight


def silu(x: np.ndarray) -> np.ndarray:
    return x / (1.0 + np.exp(-x))


def rope(x: np.ndarray, pos: int, base: float) -> np.ndarray:
    """x: [heads][head_dim]. Rotate adjacent pairs (x[2i], x[2i+1]) by pos * base^(-2i/hd)."""
    hd = x.shape[-1]
    theta = pos * base ** (-np.arange(0, hd, 2) / hd)
    cos, sin = np.cos(theta), np.sin(theta)
    x0, x1 = x[:, 0::2], x[:, 1::2]
    out = np.empty_like(x)
    out[:, 0::2] = x0 * cos - x1 * sin
    out[:, 1::2] = x0 * sin + x1 * cos
    return out


def forward(m: Model, cache: dict, token: int, pos: int) -> np.ndarray:
    """Feed `token` at position `pos` (positions 0..pos-1 already cached); return logits."""
    w, hd = m.w, m.head_dim
    kv_group = m.n_heads // m.n_kv_heads  # query head h reads KV head h // kv_group
    x = w["token_embd.weight"][token].copy()

    for l in range(m.n_layers):
        p = f"blk.{l}."

        # ---- attention
        h = rmsnorm(x, w[p + "attn_norm.weight"], m.eps)
        q = (w[p + "attn_q.weight"] @ h).reshape(m.n_heads, hd)
        k = (w[p + "attn_k.weight"] @ h).reshape(m.n_kv_heads, hd)
        v = (w[p + "attn_v.weight"] @ h).reshape(m.n_kv_heads, hd)
        q = rope(q, pos, m.rope_base)
        k = rope(k, pos, m.rope_base)
        cache["k"][l, pos] = k
        cache["v"][l, pos] = v
        keys = cache["k"][l, : pos + 1]    # [t][n_kv][hd], causal: only positions <= pos
        values = cache["v"][l, : pos + 1]

        att = np.empty((m.n_heads, hd))
        for head in range(m.n_heads):
            kvh = head // kv_group
            scores = keys[:, kvh, :] @ q[head] / np.sqrt(hd)
            scores = np.exp(scores - scores.max())
            scores /= scores.sum()
            att[head] = scores @ values[:, kvh, :]
        x = x + w[p + "attn_output.weight"] @ att.reshape(-1)

        # ---- feed-forward (SwiGLU)
        h = rmsnorm(x, w[p + "ffn_norm.weight"], m.eps)
        gate = w[p + "ffn_gate.weight"] @ h
        up = w[p + "ffn_up.weight"] @ h
        x = x + w[p + "ffn_down.weight"] @ (silu(gate) * up)

    x = rmsnorm(x, w["output_norm.weight"], m.eps)
    return w["output.weight"] @ x


# ----------------------------------------------------------------------------- cases

def top_k(logits: np.ndarray, k: int) -> list[list]:
    ids = np.argsort(-logits, kind="stable")[:k]
    return [[int(i), round(float(logits[i]), 5)] for i in ids]


def run_case(m: Model, name: str, prompt: list[int], max_new: int) -> dict:
    cache = m.new_cache(len(prompt) + max_new)
    for pos, tok in enumerate(prompt):
        logits = forward(m, cache, tok, pos)

    top = top_k(logits, N_TOP)
    probe_ids = PROBE_IDS + [i for i, _ in top[:2] if i not in PROBE_IDS]
    case = {"name": name, "prompt_ids": prompt, "greedy_ids": [], "top": top,
            "probe": {str(i): round(float(logits[i]), 5) for i in probe_ids},
            "logits_after_each_greedy_step_top5": []}

    margins = []
    pos = len(prompt)
    while True:
        step_top = top_k(logits, 5)
        nxt = int(np.argmax(logits))
        case["greedy_ids"].append(nxt)
        case["logits_after_each_greedy_step_top5"].append(step_top)
        first, second = np.sort(logits)[-2:][::-1]
        margins.append(float(first - second))
        if nxt == EOS or len(case["greedy_ids"]) == max_new:
            break
        logits = forward(m, cache, nxt, pos)
        pos += 1
    case["min_top2_margin"] = round(min(margins), 5)
    return case


def load_tokenizers(path: str):
    """(plain-text tokenizer, tokenizer that also matches special tokens) from hf_tokenizer.py."""
    sys.path.insert(0, HERE)
    import hf_tokenizer
    plain = hf_tokenizer.load_hf_tokenizer(path)
    if hasattr(hf_tokenizer, "load_hf_tokenizer_with_specials"):
        return plain, hf_tokenizer.load_hf_tokenizer_with_specials(path)
    return plain, hf_tokenizer.load_hf_tokenizer(path, specials=True)


def encode(tk, text: str) -> list[int]:
    return list(tk.encode(text, add_special_tokens=False).ids)


def main() -> int:
    path = sys.argv[1] if len(sys.argv) > 1 else MODEL
    t0 = time.time()
    m = Model(path)
    print(f"loaded {path} in {time.time() - t0:.1f}s: {m.n_layers} layers, dim {m.dim}, "
          f"heads {m.n_heads}/{m.n_kv_heads}, eps {m.eps}, rope base {m.rope_base}")

    plain, specials = load_tokenizers(path)
    # The ChatML builder must reproduce the design doc's golden prompt.
    built = encode(specials, chatml("What is the capital of France?"))
    assert built == FRANCE_IDS, built

    cases = [
        ("france", FRANCE_IDS, len(FRANCE_GREEDY)),
        ("colors", encode(specials, chatml("Name three primary colors.")), 16),
        ("haiku", encode(specials, chatml("Write a haiku about the sea.")), 16),
        ("raw-fox", encode(plain, "The quick brown fox jumps over the lazy dog. The quick brown"), 16),
    ]
    out = []
    for name, prompt, n in cases:
        t1 = time.time()
        c = run_case(m, name, prompt, n)
        out.append(c)
        text = plain.decode(c["greedy_ids"], skip_special_tokens=False)
        print(f"{name} ({len(prompt)} prompt tokens, {time.time() - t1:.1f}s): top5 {c['top'][:5]}\n"
              f"  greedy {c['greedy_ids']} {text!r}\n  min_top2_margin {c['min_top2_margin']}")

    fr = out[0]
    assert fr["greedy_ids"] == FRANCE_GREEDY, fr["greedy_ids"]
    assert [i for i, _ in fr["top"][:5]] == FRANCE_TOP5, fr["top"][:5]
    for tok, want in [(504, 25.33), (60, 25.24), (15319, 24.94)]:  # 'The', 'L', 'La'
        got = fr["probe"].get(str(tok), dict(map(tuple, fr["top"])).get(tok))
        assert abs(got - want) < 0.006, (tok, got, want)

    with open(OUT, "w") as f:
        json.dump(out, f, separators=(",", ":"))
        f.write("\n")
    print(f"wrote {OUT} ({os.path.getsize(OUT)} bytes); total {time.time() - t0:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
