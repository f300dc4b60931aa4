#!/usr/bin/env python3
"""StreamingLLM reference logits for the tiny models (attention sinks + sliding window).

What: a float64 NumPy forward pass over the tiny GGUF models (tiny/tiny-llama.gguf,
tiny/tiny-qwen2.gguf, made by make_tiny_models.py, NOT regenerated here) with the KV-cache
policy of StreamingLLM (Xiao et al. 2023, "Efficient Streaming Language Models with
Attention Sinks", mit-han-lab/streaming-llm, pos_shift), written to
tiny/tiny_streaming_logits.json:
  {"tiny-llama": {"S2W5": {"sinks": 2, "window": 5, "tokens": [...],
                           "logits": [[384 floats] per step]},
                  "S0W6": {...}},
   "tiny-qwen2": {...}}                                   (6 significant digits)

Why: Scroll's KVCache (KVCache.swift) implements the same policy differently (keys stored
rotated once, query rotated to compensate); this independent implementation of the
paper's scheme is what CacheTests.testMatchesTheStreamingLLMReference holds it to.

How (the paper's scheme, per layer, per step):
  * K/V of the current token are computed (qwen2: + biases) and appended to the cache
    with keys BEFORE RoPE; each layer's K/V are computed once, when the token is
    processed, and never recomputed.
  * If the cache now holds more than S + W entries, the oldest non-sink entry is evicted
    (the current token is always cached, so the window of W includes it).
  * The cached keys get positions 0..len-1 by index in the cache (sinks first, then the
    window oldest to newest) and are rotated with those; the query, the newest entry, is
    rotated with position len-1. Then plain softmax(q.k / sqrt(head_dim)) attention.
  Everything else (RMSNorm, GQA, SwiGLU, RoPE mode per arch: llama adjacent pairs, qwen2
  rotate-half; base from metadata) is make_tiny_models.py's dense reference, imported.
Sanity (asserted): with S=4, W=20 (nothing evicted) the first 10 steps equal the dense
logits in tiny/tiny_logits.json. Per case it prints max |streaming - dense| at the last
step, non-zero once eviction happened.

Run from anywhere:  python3 Tests/EngineTests/Reference/reference_streaming.py
"""

from __future__ import annotations

import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_tiny_models import OUT_DIR, load, rms_norm, rope, round6, silu  # noqa: E402

TOKENS = [5, 17, 300, 42, 7, 255, 100, 383, 64, 12, 99, 1, 250, 33, 77, 200]
CASES = {"S2W5": (2, 5), "S0W6": (0, 6)}
MODELS = ("tiny-llama", "tiny-qwen2")


def streaming_forward(model, tokens: list[int], sinks: int, window: int) -> np.ndarray:
    """Logits per step [len(tokens)][vocab] with a sinks + window cache of pre-RoPE keys.
    sinks=0, window=inf with positions = absolute positions would be the dense pass."""
    meta, W, _ = model
    arch = meta["general.architecture"]
    n_layer = meta[f"{arch}.block_count"]
    n_head = meta[f"{arch}.attention.head_count"]
    n_kv = meta[f"{arch}.attention.head_count_kv"]
    eps = meta[f"{arch}.attention.layer_norm_rms_epsilon"]
    base = meta[f"{arch}.rope.freq_base"]
    d = meta[f"{arch}.embedding_length"]
    hd = d // n_head
    group = n_head // n_kv
    neox = bias = arch == "qwen2"
    output = W.get("output.weight", W["token_embd.weight"])

    cache = [[] for _ in range(n_layer)]  # per layer: [(pre-RoPE k [n_kv][hd], v [n_kv][hd])]
    out = []
    for tok in tokens:
        x = W["token_embd.weight"][tok].copy()
        for l in range(n_layer):
            p = f"blk.{l}."
            h = rms_norm(x, W[p + "attn_norm.weight"], eps)
            q = W[p + "attn_q.weight"] @ h
            k = W[p + "attn_k.weight"] @ h
            v = W[p + "attn_v.weight"] @ h
            if bias:
                q = q + W[p + "attn_q.bias"]
                k = k + W[p + "attn_k.bias"]
                v = v + W[p + "attn_v.bias"]
            c = cache[l]
            c.append((k.reshape(n_kv, hd), v.reshape(n_kv, hd)))
            if len(c) > sinks + window:          # evict the oldest non-sink entry
                del c[sinks]
            n = len(c)
            K = np.stack([rope(kk, i, base, neox) for i, (kk, _) in enumerate(c)])  # cache positions
            V = np.stack([vv for _, vv in c])
            qr = rope(q.reshape(n_head, hd), n - 1, base, neox)                    # newest entry
            att = np.zeros((n_head, hd))
            for hh in range(n_head):
                kv = hh // group
                s = K[:, kv, :] @ qr[hh] / np.sqrt(hd)
                s = np.exp(s - s.max())
                att[hh] = (s / s.sum()) @ V[:, kv, :]
            x = x + W[p + "attn_output.weight"] @ att.reshape(-1)
            h = rms_norm(x, W[p + "ffn_norm.weight"], eps)
            ff = silu(W[p + "ffn_gate.weight"] @ h) * (W[p + "ffn_up.weight"] @ h)
            x = x + W[p + "ffn_down.weight"] @ ff
        out.append(output @ rms_norm(x, W["output_norm.weight"], eps))
    return np.array(out)


def main() -> int:
    with open(os.path.join(OUT_DIR, "tiny_logits.json")) as f:
        dense_json = json.load(f)
    result = {}
    for name in MODELS:
        path = os.path.join(OUT_DIR, f"{name}.gguf")
        model = load(path)

        # Sanity: a cache that never evicts (S=4, W=20 >= 16) is dense attention, so the
        # first 10 steps must match tiny_logits.json (stored with 6 significant digits).
        ref = dense_json[name]
        n = len(ref["tokens"])
        assert TOKENS[:n] == ref["tokens"], (name, ref["tokens"])
        dense_ref = np.array(ref["logits"])
        nowindow = streaming_forward(model, TOKENS, 4, 20)
        err = np.abs(nowindow[:n] - dense_ref).max()
        assert np.allclose(nowindow[:n], dense_ref, rtol=1e-5, atol=1e-5), f"{name}: {err}"
        print(f"{name}: sanity S=4 W=20 vs tiny_logits.json, first {n} steps: "
              f"max |diff| {err:.2e} (rounding only) OK")
        # No eviction over all 16 tokens, so this is also the dense pass over TOKENS.
        dense = nowindow

        result[name] = {}
        for case, (s, w) in CASES.items():
            logits = streaming_forward(model, TOKENS, s, w)
            assert logits.shape == (len(TOKENS), dense.shape[1]) and np.all(np.isfinite(logits))
            first_evict = s + w  # step index at which the first eviction happens
            same = np.abs(logits[:first_evict] - dense[:first_evict]).max()
            assert same < 1e-9, f"{name} {case}: differs from dense before any eviction ({same})"
            last = np.abs(logits[-1] - dense[-1]).max()
            assert last > 1e-3, f"{name} {case}: eviction had no effect"
            print(f"{name} {case}: identical to dense for steps 0..{first_evict - 1} "
                  f"({same:.1e}); last-step max |streaming - dense| = {last:.4f}")
            result[name][case] = {"sinks": s, "window": w, "tokens": TOKENS,
                                  "logits": [[round6(v) for v in row] for row in logits]}

    out = os.path.join(OUT_DIR, "tiny_streaming_logits.json")
    with open(out, "w") as f:
        json.dump(result, f)
        f.write("\n")
    print(f"wrote {out} ({os.path.getsize(out)} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
