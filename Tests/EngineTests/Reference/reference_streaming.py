"""StreamingLLM reference for the tiny models: attention sinks + a sliding window, the way
the paper's code does it (Xiao et al. 2023, mit-han-lab/streaming-llm): keys are cached
BEFORE RoPE, and at every step the cache's keys get positions 0..len-1 in cache order
(sinks first, then the window oldest to newest); the query, the newest entry, is at len-1.

Scroll stores keys rotated once and rotates the query twice instead (KVCache.swift); this
independent float64 implementation of the paper's scheme is what CacheTests holds it to.

Run from the repo root:  python3 Tests/EngineTests/Reference/reference_streaming.py
Writes Tests/EngineTests/Reference/tiny/tiny_streaming_logits.json (about a second).
"""
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_tiny_models import OUT_DIR, load, rms_norm, rope, round6, silu, forward  # noqa: E402

TOKENS = [5, 17, 300, 42, 7, 255, 100, 383, 64, 12, 99, 1, 250, 33, 77, 200]
CASES = {"S2W5": (2, 5), "S0W6": (0, 6)}


def streaming_forward(path, tokens, sinks, window):
    """Logits per step [len(tokens)][vocab] with a sinks + window cache of pre-RoPE keys."""
    meta, W, _ = load(path)
    arch = meta["general.architecture"]
    n_layer, n_head = meta[f"{arch}.block_count"], meta[f"{arch}.attention.head_count"]
    n_kv, eps = meta[f"{arch}.attention.head_count_kv"], meta[f"{arch}.attention.layer_norm_rms_epsilon"]
    base, d = meta[f"{arch}.rope.freq_base"], meta[f"{arch}.embedding_length"]
    hd, neox, bias = d // n_head, arch == "qwen2", arch == "qwen2"
    group = n_head // n_kv
    output = W.get("output.weight", W["token_embd.weight"])
    cache = [[] for _ in range(n_layer)]  # per layer: list of (pre-RoPE k [n_kv][hd], v [n_kv][hd])
    out = []
    for tok in tokens:
        x = W["token_embd.weight"][tok].copy()
        for l in range(n_layer):
            p = f"blk.{l}."
            h = rms_norm(x, W[p + "attn_norm.weight"], eps)
            q, k, v = (W[p + f"attn_{n}.weight"] @ h for n in "qkv")
            if bias:
                q, k, v = q + W[p + "attn_q.bias"], k + W[p + "attn_k.bias"], v + W[p + "attn_v.bias"]
            c = cache[l]
            c.append((k.reshape(n_kv, hd), v.reshape(n_kv, hd)))
            if len(c) > sinks + window:      # evict the oldest non-sink entry
                del c[sinks]
            n = len(c)
            K = np.stack([rope(kk, i, base, neox) for i, (kk, _) in enumerate(c)])  # cache positions
            V = np.stack([vv for _, vv in c])
            qr = rope(q.reshape(n_head, hd), n - 1, base, neox)
            att = np.zeros((n_head, hd))
            for hh in range(n_head):
                s = K[:, hh // group, :] @ qr[hh] / np.sqrt(hd)
                s = np.exp(s - s.max())
                att[hh] = (s / s.sum()) @ V[:, hh // group, :]
            x = x + W[p + "attn_output.weight"] @ att.reshape(-1)
            h = rms_norm(x, W[p + "ffn_norm.weight"], eps)
            x = x + W[p + "ffn_down.weight"] @ (silu(W[p + "ffn_gate.weight"] @ h) * (W[p + "ffn_up.weight"] @ h))
        out.append(output @ rms_norm(x, W["output_norm.weight"], eps))
    return np.array(out)


def main():
    result = {}
    for name in ("tiny-llama", "tiny-qwen2"):
        path = os.path.join(OUT_DIR, f"{name}.gguf")
        # Sanity: a cache that never evicts is dense attention.
        dense = forward(path, TOKENS[:10])
        assert np.allclose(streaming_forward(path, TOKENS[:10], 4, 20), dense, atol=1e-9), name
        result[name] = {}
        for case, (s, w) in CASES.items():
            logits = streaming_forward(path, TOKENS, s, w)
            full = forward(path, TOKENS)
            print(f"{name} {case}: last-step max |streaming - dense| = {np.abs(logits[-1] - full[-1]).max():.3f}")
            result[name][case] = {"sinks": s, "window": w, "tokens": TOKENS,
                                  "logits": [[round6(v) for v in row] for row in logits]}
    path = os.path.join(OUT_DIR, "tiny_streaming_logits.json")
    with open(path, "w") as f:
        json.dump(result, f)
    print(f"wrote {path} ({os.path.getsize(path)} bytes)")


if __name__ == "__main__":
    main()
