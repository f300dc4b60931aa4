// The session file's KV codec (Engine/Session/SessionFile.swift).
//
// Rows of d values (one token's keys or values of one KV head) are coded per channel, over
// groups of CK_SESSION_GROUP consecutive tokens: each (group, channel) keeps an f16 mean μ
// and an f16 step Δ = max(rms(x − μ) / steps, max|x − μ| / 127), and each value an int8 code
// q = round((x − μ) / Δ). Per channel, because keys have a few outlier channels whose
// magnitude would swamp a per-token scale (KIVI, Liu et al. 2024, quantizes keys per channel
// for the same reason), and the slowly turning RoPE dimensions hardly move within a group.
// With `steps` ≈ 10 most codes lie within ±2·steps, so zstd's Huffman stage stores them in
// ~5.5 bits where a per-token absmax int8 code needs all 8.
#include "ckernels.h"
#include <math.h>

// Smallest f16 not below v (v ≥ 0, finite): the step that is stored is never smaller than
// the one the codes were made for, so no code leaves [−127, 127].
static uint16_t f16_at_least(float v) {
    uint16_t h = ck_fp32_to_fp16(v);
    if (ck_fp16_to_fp32(h) < v && h < 0x7bff) h++;
    return h;
}

void ck_session_encode(const float *x, int64_t rows, int d, float steps, int8_t *codes, uint16_t *params) {
    for (int64_t g0 = 0; g0 < rows; g0 += CK_SESSION_GROUP) {
        const int64_t n = rows - g0 < CK_SESSION_GROUP ? rows - g0 : CK_SESSION_GROUP;
        for (int c = 0; c < d; c++) {
            const float *col = x + g0 * d + c;
            double sum = 0;
            for (int64_t t = 0; t < n; t++) sum += col[t * d];
            float mean = (float)(sum / (double)n);
            uint16_t mh = ck_fp32_to_fp16(mean);
            if (!isfinite(ck_fp16_to_fp32(mh))) mh = 0;     // beyond f16: code around 0
            const float mu = ck_fp16_to_fp32(mh);
            double sq = 0;
            float maxdev = 0;
            for (int64_t t = 0; t < n; t++) {
                const float dev = col[t * d] - mu;
                sq += (double)dev * dev;
                if (fabsf(dev) > maxdev) maxdev = fabsf(dev);
            }
            float step = fmaxf((float)sqrt(sq / (double)n) / steps, maxdev / 127.0f);
            const uint16_t sh = f16_at_least(step);
            step = ck_fp16_to_fp32(sh);
            uint16_t *p = params + ((g0 / CK_SESSION_GROUP) * d + c) * 2;
            p[0] = mh;
            p[1] = sh;
            int8_t *q = codes + g0 * d + (int64_t)c * n;
            const float inv = step > 0 ? 1.0f / step : 0;
            for (int64_t t = 0; t < n; t++) {
                float v = rintf((col[t * d] - mu) * inv);
                q[t] = (int8_t)(v > 127 ? 127 : v < -127 ? -127 : v);
            }
        }
    }
}

void ck_session_decode(const int8_t *codes, const uint16_t *params, int64_t rows, int d, float *y) {
    for (int64_t g0 = 0; g0 < rows; g0 += CK_SESSION_GROUP) {
        const int64_t n = rows - g0 < CK_SESSION_GROUP ? rows - g0 : CK_SESSION_GROUP;
        for (int c = 0; c < d; c++) {
            const uint16_t *p = params + ((g0 / CK_SESSION_GROUP) * d + c) * 2;
            const float mu = ck_fp16_to_fp32(p[0]), step = ck_fp16_to_fp32(p[1]);
            const int8_t *q = codes + g0 * d + (int64_t)c * n;
            for (int64_t t = 0; t < n; t++) y[(g0 + t) * d + c] = mu + step * (float)q[t];
        }
    }
}
