// Attention of one query over the KV cache, for f32 and int8 cache storage.
//
// Int8 storage (--kv int8) is KIVI-style in spirit (Liu et al. 2024, "KIVI: A Tuning-Free
// Asymmetric 2bit Quantization for KV Cache") but simpler: every cached row of head_dim
// keys or values is quantized on its own, symmetric, one f32 scale per CK_KV_GROUP
// values (x ≈ d·q, d = max|x|/127). Per-token groups let a token be quantized the moment
// it is stored and evicted without touching its neighbours — KIVI's per-channel keys need
// a full-precision residual group of recent tokens, which a ring window would have to
// carry around. 36 bytes per 32 values instead of 128.
#include <math.h>
#include <string.h>

#include "ckernels.h"
#include "attention_internal.h"

#include "simd_x86.h"

// ---- int8 rows ----

void ck_quantize_kv_row(const float *x, int8_t *q, float *scales, int n) {
    for (int g = 0; g < n / CK_KV_GROUP; g++) {
        const float *xg = x + g * CK_KV_GROUP;
        float amax = 0;
        for (int i = 0; i < CK_KV_GROUP; i++) amax = fmaxf(amax, fabsf(xg[i]));
        const float d = amax / 127, id = d != 0 ? 1 / d : 0;
        scales[g] = d;
        for (int i = 0; i < CK_KV_GROUP; i++) q[g * CK_KV_GROUP + i] = (int8_t)lrintf(xg[i] * id);
    }
}

void ck_dequantize_kv_row(const int8_t *q, const float *scales, float *y, int n) {
    for (int i = 0; i < n; i++) y[i] = scales[i / CK_KV_GROUP] * q[i];
}

// ---- the reference: one query head over contiguous f32 rows, plainly ----

void ck_attend_head_ref(const float *q_sink, const float *q, int64_t n_sink,
                        const float *keys, const float *values,
                        int64_t n_keys, int head_dim, int64_t key_stride, int64_t value_stride,
                        float scale, float *scores, float *out) {
    for (int64_t t = 0; t < n_keys; t++) {
        const float *k = keys + t * key_stride;
        const float *qq = t < n_sink ? q_sink : q;
        float s = 0;
        for (int i = 0; i < head_dim; i++) s += qq[i] * k[i];
        scores[t] = s * scale;
    }
    ck_softmax(scores, (int)n_keys);
    for (int i = 0; i < head_dim; i++) out[i] = 0;
    for (int64_t t = 0; t < n_keys; t++) {
        const float *v = values + t * value_stride;
        const float p = scores[t];
        for (int i = 0; i < head_dim; i++) out[i] += p * v[i];
    }
}

// ---- one KV head's query group over a range of keys: partials for split-key attention ----
//
// Decoding (and prefill, which attends token by token) reads every cached key and value
// once per query head: 3 times per KV head for SmolLM2's groups of 3, and with thousands of
// cached tokens that traffic dominated (ppl over a 1024 window ran at 130 t/s). Here the
// group's queries share each key and value row as it is loaded, and the threads split the
// keys rather than the heads (9 heads on 2 threads left one idle a third of the time); the
// partials (max, sum of exponentials, unnormalized output) merge as in flash-decoding.

// Row t of one KV head's keys or values as f32 (int8 rows are dequantized into tmp).
static inline const float *kv_row(const ck_kv_view *kv, int is_key, int64_t row, int head_dim, float *tmp) {
    if (kv->type == CK_KV_F32) return (const float *)(is_key ? kv->keys : kv->values) + row * head_dim;
    const int groups = head_dim / CK_KV_GROUP;
    ck_dequantize_kv_row((const int8_t *)(is_key ? kv->keys : kv->values) + row * head_dim,
                         (is_key ? kv->key_scales : kv->value_scales) + row * groups, tmp, head_dim);
    return tmp;
}

void ck_attend_partial_ref(const float *q_sink, const float *q, int group, int64_t n_sink,
                           const ck_kv_view *kv, int kv_head, int64_t k0, int64_t k1, int head_dim,
                           float scale, float *scores, float *m, float *l, float *acc) {
    float tmp[512];
    const int64_t n = k1 - k0, base = (int64_t)kv_head * kv->capacity;
    for (int64_t t = 0; t < n; t++) {
        const float *k = kv_row(kv, 1, base + k0 + t, head_dim, tmp);
        for (int g = 0; g < group; g++) {
            const float *qq = (k0 + t < n_sink ? q_sink : q) + g * head_dim;
            float s = 0;
            for (int i = 0; i < head_dim; i++) s += qq[i] * k[i];
            scores[g * n + t] = s * scale;
        }
    }
    for (int g = 0; g < group; g++) {
        float *sg = scores + g * n, mx = -INFINITY, sum = 0;
        for (int64_t t = 0; t < n; t++) mx = sg[t] > mx ? sg[t] : mx;
        for (int64_t t = 0; t < n; t++) { sg[t] = expf(sg[t] - mx); sum += sg[t]; }
        m[g] = mx;
        l[g] = sum;
        for (int i = 0; i < head_dim; i++) acc[g * head_dim + i] = 0;
    }
    for (int64_t t = 0; t < n; t++) {
        const float *v = kv_row(kv, 0, base + k0 + t, head_dim, tmp);
        for (int g = 0; g < group; g++) {
            for (int i = 0; i < head_dim; i++) acc[g * head_dim + i] += scores[g * n + t] * v[i];
        }
    }
}

void ck_attend_partial(const float *q_sink, const float *q, int group, int64_t n_sink,
                       const ck_kv_view *kv, int kv_head, int64_t k0, int64_t k1, int head_dim,
                       float scale, float *scores, float *m, float *l, float *acc) {
    if (k1 <= k0) {   // nothing to attend: the partial that merges as nothing
        for (int g = 0; g < group; g++) { m[g] = -INFINITY; l[g] = 0; }
        for (int64_t i = 0; i < (int64_t)group * head_dim; i++) acc[i] = 0;
        return;
    }
    if (ck_attend_partial_avx512(q_sink, q, group, n_sink, kv, kv_head, k0, k1, head_dim, scale, scores, m, l, acc)) return;
    if (ck_attend_partial_avx2(q_sink, q, group, n_sink, kv, kv_head, k0, k1, head_dim, scale, scores, m, l, acc)) return;
    ck_attend_partial_ref(q_sink, q, group, n_sink, kv, kv_head, k0, k1, head_dim, scale, scores, m, l, acc);
}

// ---- merging partials ----
//
// Two partials over disjoint keys, (m, l, acc) and (m2, l2, acc2), merge exactly: with
// M = max(m, m2), l ← e^(m−M)·l + e^(m2−M)·l2 and acc likewise (flash-decoding). An empty
// partial (m = −inf) merges as nothing.
void ck_partial_merge(float *m, float *l, float *acc, const float *m2, const float *l2, const float *acc2,
                      int n, int head_dim) {
    for (int g = 0; g < n; g++) {
        if (m2[g] == -INFINITY) continue;
        const float mx = m2[g] > m[g] ? m2[g] : m[g];
        const float wa = m[g] == -INFINITY ? 0 : expf(m[g] - mx), wb = expf(m2[g] - mx);
        float *o = acc + (int64_t)g * head_dim;
        const float *c = acc2 + (int64_t)g * head_dim;
        for (int i = 0; i < head_dim; i++) o[i] = o[i] * wa + c[i] * wb;
        l[g] = l[g] * wa + l2[g] * wb;
        m[g] = mx;
    }
}

void ck_partial_finish(const float *l, const float *acc, int n, int head_dim, float *out) {
    for (int g = 0; g < n; g++) {
        const float inv = l[g] > 0 ? 1 / l[g] : 0;
        for (int i = 0; i < head_dim; i++) out[(int64_t)g * head_dim + i] = acc[(int64_t)g * head_dim + i] * inv;
    }
}
