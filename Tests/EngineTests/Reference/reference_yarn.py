#!/usr/bin/env python3
"""Golden RoPE cos/sin under YaRN and linear scaling, for RopeScalingTests.

An independent float64 transcription of llama.cpp's ggml-cpu rope code (ggml_rope_yarn_corr_dims,
rope_yarn_ramp, rope_yarn), which follows the YaRN reference implementation
(github.com/jquesnelle/yarn, scaled_rope/LlamaYaRNScaledRotaryEmbedding):

    corr_dim(n_rot)  = d * ln(n_ctx_orig / (n_rot * 2 pi)) / (2 ln base)
    low, high        = max(0, floor(corr_dim(beta_fast))), min(d - 1, ceil(corr_dim(beta_slow)))
    theta_extrap     = p * base^(-2i/d)          (i = pair index, i0 = 2i in ggml)
    theta_interp     = theta_extrap / s           (freq_scale = 1/s)
    ramp             = 1 - clamp((i - low) / max(0.001, high - low), 0, 1)
    mix              = ramp * ext_factor
    theta            = theta_interp * (1 - mix) + theta_extrap * mix
    mscale           = attn_factor * (1 + 0.1 ln s)        only when ext_factor != 0
    cos, sin         = cos(theta) * mscale, sin(theta) * mscale

Linear scaling is ext_factor = 0 (theta_interp, mscale = attn_factor). Output: yarn_golden.json
next to this script: a list of cases {kind, head_dim, orig_ctx, base, factor, positions,
corr_dims, mscale, cos[p][i], sin[p][i]}.
"""
import json
import math
import os


def corr_dims(d, n_ctx_orig, base, beta_fast=32.0, beta_slow=1.0):
    def dim(n_rot):
        return d * math.log(n_ctx_orig / (n_rot * 2 * math.pi)) / (2 * math.log(base))
    return max(0.0, math.floor(dim(beta_fast))), min(d - 1.0, math.ceil(dim(beta_slow)))


def rope_row(p, d, base, s, ext_factor, low, high, attn_factor=1.0):
    mscale = attn_factor * (1 + 0.1 * math.log(s)) if ext_factor != 0 else attn_factor
    cos, sin = [], []
    for i in range(d // 2):
        theta_extrap = p * base ** (-2.0 * i / d)
        theta_interp = theta_extrap / s
        y = (i - low) / max(0.001, high - low)
        ramp = 1 - min(1.0, max(0.0, y))
        mix = ramp * ext_factor
        theta = theta_interp * (1 - mix) + theta_extrap * mix
        cos.append(math.cos(theta) * mscale)
        sin.append(math.sin(theta) * mscale)
    return cos, sin, mscale


def case(kind, d, orig, base, s, positions):
    low, high = corr_dims(d, orig, base)
    ext = 1.0 if kind == "yarn" else 0.0
    rows = [rope_row(p, d, base, s, ext, low, high) for p in positions]
    return {"kind": kind, "head_dim": d, "orig_ctx": orig, "base": base, "factor": s,
            "positions": positions, "corr_dims": [low, high], "mscale": rows[0][2],
            "cos": [r[0] for r in rows], "sin": [r[1] for r in rows]}


def main():
    cases = [
        case("yarn", 64, 2048, 10000.0, 4.0, [0, 1, 37, 2047, 5000, 8191]),
        case("yarn", 128, 4096, 10000.0, 2.0, [0, 3, 4095, 8191]),
        case("yarn", 64, 8192, 100000.0, 2.0, [0, 1000, 16383]),   # SmolLM2's base and context
        case("linear", 64, 2048, 10000.0, 2.0, [0, 5, 4000]),
    ]
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "yarn_golden.json")
    with open(out, "w") as f:
        json.dump(cases, f)
    for c in cases:
        print(c["kind"], c["head_dim"], c["orig_ctx"], "corr dims", c["corr_dims"], "mscale", round(c["mscale"], 4))


if __name__ == "__main__":
    main()
