// Attention of a block of queries at once: batched prefill, and later recalled memory blocks.
//
// Prefill used to attend token by token (the decode path per token): every cached key was
// scored by a dot product per query at ~28 GFLOP/s, and a chunk of a 16K-token window
// prefilled at 25 t/s. Here a block of queries meets a tile of keys in one sgemm (S = Q·Kᵀ)
// and the values in another (acc += P·V), the softmax kept online across tiles as in
// FlashAttention (Dao et al. 2022): running max m, running sum l, and acc rescaled by
// exp(m_old − m_new) whenever the max grows.
//
// Keys come in segments — the cache's sinks, its window ring, the chunk's own new keys —
// each key with its absolute stream position. Key p is visible to query t at position P_t
// when p ≤ P_t and, in a `windowed` segment, p < n_sinks or p > P_t − window: exactly the
// keys the token-by-token path sees once token P_t is stored.
#include <math.h>
#include <string.h>

#include <cblas.h>

#include "ckernels.h"
#include "simd_x86.h"

enum { TILE = 128 };   // keys per sgemm: S rows of 128 floats stay in L1 while softmaxed

int64_t ck_attend_block_scratch(int n_q, int group, int head_dim) {
    const int64_t r = (int64_t)n_q * group;
    return 3 * r * head_dim + r * TILE + 2 * r + 2 * (int64_t)TILE * head_dim;
}

static inline int key_visible(const ck_kv_segment *s, int64_t p, int64_t P, int64_t window, int64_t n_sinks) {
    if (p > P) return 0;
    if (!s->windowed || window <= 0 || p < n_sinks) return 1;
    return p > P - window;
}

// Row j of a segment's keys or values as f32 (int8 rows dequantized into tmp).
static inline const float *segment_row(const ck_kv_segment *s, int is_key, int64_t j, int head_dim, float *tmp) {
    const void *base = is_key ? s->keys : s->values;
    if (s->type == CK_KV_F32) return (const float *)base + j * s->row_stride;
    const float *scales = (is_key ? s->key_scales : s->value_scales) + j * (head_dim / CK_KV_GROUP);
    ck_dequantize_kv_row((const int8_t *)base + j * s->row_stride, scales, tmp, head_dim);
    return tmp;
}

// ---- the reference: each query head on its own, two plain passes over the visible keys ----

static float score_ref(const ck_kv_segment *s, int64_t j, const float *q, int head_dim, float scale, float *tmp) {
    const float *k = segment_row(s, 1, j, head_dim, tmp);
    float d = 0;
    for (int i = 0; i < head_dim; i++) d += q[i] * k[i];
    return d * scale;
}

void ck_attend_block_ref(const float *q, const float *q_sink, int64_t q_stride, int n_q, int group, int head_dim,
                         const int64_t *q_pos, int64_t window, int64_t n_sinks,
                         const ck_kv_segment *segs, int n_segs, float scale, float *scratch,
                         float *out, int64_t out_stride) {
    float *tmp = scratch, *acc = scratch + head_dim;
    for (int t = 0; t < n_q; t++) {
        for (int g = 0; g < group; g++) {
            const float *qw = q + t * q_stride + g * head_dim;
            const float *qs = q_sink ? q_sink + t * q_stride + g * head_dim : qw;
            float mx = -INFINITY;
            for (int si = 0; si < n_segs; si++) {
                const ck_kv_segment *s = &segs[si];
                for (int64_t j = 0; j < s->count; j++) {
                    if (!key_visible(s, s->positions[j], q_pos[t], window, n_sinks)) continue;
                    mx = fmaxf(mx, score_ref(s, j, s->sink_query ? qs : qw, head_dim, scale, tmp));
                }
            }
            float sum = 0;
            for (int i = 0; i < head_dim; i++) acc[i] = 0;
            for (int si = 0; si < n_segs; si++) {
                const ck_kv_segment *s = &segs[si];
                for (int64_t j = 0; j < s->count; j++) {
                    if (!key_visible(s, s->positions[j], q_pos[t], window, n_sinks)) continue;
                    const float p = expf(score_ref(s, j, s->sink_query ? qs : qw, head_dim, scale, tmp) - mx);
                    sum += p;
                    const float *v = segment_row(s, 0, j, head_dim, tmp);
                    for (int i = 0; i < head_dim; i++) acc[i] += p * v[i];
                }
            }
            float *o = out + t * out_stride + g * head_dim;
            for (int i = 0; i < head_dim; i++) o[i] = sum > 0 ? acc[i] / sum : 0;
        }
    }
}

// ---- the fast path: sgemm tiles and an online softmax ----

// s[j] = exp(s[j] − mx) for j < n; returns the sum. Masked scores (−inf) become exactly 0.
static float exp_row_ref(float *s, int n, float mx) {
    float sum = 0;
    for (int j = 0; j < n; j++) { s[j] = expf(s[j] - mx); sum += s[j]; }
    return sum;
}

#ifdef CK_X86
CK_AVX2 static float exp_row_avx2(float *s, int n, float mx) {
    const __m256 vm = _mm256_set1_ps(mx);
    __m256 acc = _mm256_setzero_ps();
    int j = 0;
    for (; j + 8 <= n; j += 8) {
        const __m256 e = exp256(_mm256_sub_ps(_mm256_loadu_ps(s + j), vm));
        _mm256_storeu_ps(s + j, e);
        acc = _mm256_add_ps(acc, e);
    }
    float sum = hsum256(acc);
    for (; j < n; j++) { s[j] = expf(s[j] - mx); sum += s[j]; }
    return sum;
}

// Sixteen lanes, the tail masked: the softmax of a chunk's scores was 5% of reading a
// document with the memory on, on the eight-lane kernel.
CK_AVX512 static float exp_row_avx512(float *s, int n, float mx) {
    const __m512 vm = _mm512_set1_ps(mx);
    __m512 acc = _mm512_setzero_ps();
    for (int j = 0; j < n; j += 16) {
        const __mmask16 k = n - j >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - j)) - 1);
        const __m512 e = _mm512_maskz_mov_ps(k, exp512(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, s + j), vm)));
        _mm512_mask_storeu_ps(s + j, k, e);
        acc = _mm512_add_ps(acc, e);
    }
    return _mm512_reduce_add_ps(acc);
}
#endif

static float exp_row(float *s, int n, float mx) {
#ifdef CK_X86
    if (ck_has_avx512vnni()) return exp_row_avx512(s, n, mx);
    if (ck_has_avx2()) return exp_row_avx2(s, n, mx);
#endif
    return exp_row_ref(s, n, mx);
}

void ck_attend_block(const float *q, const float *q_sink, int64_t q_stride, int n_q, int group, int head_dim,
                     const int64_t *q_pos, int64_t window, int64_t n_sinks,
                     const ck_kv_segment *segs, int n_segs, float scale, float *scratch,
                     float *out, int64_t out_stride) {
    const int hd = head_dim;
    const int64_t R = (int64_t)n_q * group;   // one S row per (query, head): r = t·group + g
    float *qp = scratch, *qs = qp + R * hd, *acc = qs + R * hd, *S = acc + R * hd;
    float *m = S + R * TILE, *l = m + R, *kt = l + R, *vt = kt + TILE * hd;

    // Queries packed [R][hd], pre-multiplied by the score scale so S needs no pass of its own.
    for (int t = 0; t < n_q; t++) {
        for (int g = 0; g < group; g++) {
            const int64_t r = (int64_t)t * group + g;
            for (int i = 0; i < hd; i++) qp[r * hd + i] = q[t * q_stride + g * hd + i] * scale;
            if (q_sink) for (int i = 0; i < hd; i++) qs[r * hd + i] = q_sink[t * q_stride + g * hd + i] * scale;
        }
    }
    for (int64_t r = 0; r < R; r++) { m[r] = -INFINITY; l[r] = 0; }
    memset(acc, 0, sizeof(float) * R * hd);

    for (int si = 0; si < n_segs; si++) {
        const ck_kv_segment *s = &segs[si];
        for (int64_t j0 = 0; j0 < s->count; j0 += TILE) {
            const int T = (int)(s->count - j0 < TILE ? s->count - j0 : TILE);
            const int64_t *pos = s->positions + j0;
            int64_t pmin = pos[0], pmax = pos[0];
            for (int j = 1; j < T; j++) { pmin = pos[j] < pmin ? pos[j] : pmin; pmax = pos[j] > pmax ? pos[j] : pmax; }
            const int windowed = s->windowed && window > 0;
            // Per query: 0 = sees none of the tile, 1 = some, 2 = all. Only the rows of the
            // queries from the first to the last that see some go through the products: a
            // chunk's first queries see none of its last tiles (causal), its last queries none
            // of the window's oldest tile.
            int t_lo = n_q, t_hi = -1;
            unsigned char seen[n_q];
            for (int t = 0; t < n_q; t++) {
                const int64_t P = q_pos[t];
                if (pmin > P || (windowed && pmin >= n_sinks && pmax <= P - window)) seen[t] = 0;
                else if (pmax <= P && (!windowed || pmin > P - window || pmax < n_sinks)) seen[t] = 2;
                else seen[t] = 1;
                if (seen[t]) { t_lo = t < t_lo ? t : t_lo; t_hi = t; }
            }
            if (t_hi < 0) continue;
            const int64_t r0 = (int64_t)t_lo * group, rows = (int64_t)(t_hi + 1 - t_lo) * group;

            const float *K, *V;
            int64_t ldk, ldv;
            if (s->type == CK_KV_F32) {
                K = (const float *)s->keys + j0 * s->row_stride;
                V = (const float *)s->values + j0 * s->row_stride;
                ldk = ldv = s->row_stride;
            } else {
                for (int j = 0; j < T; j++) {
                    segment_row(s, 1, j0 + j, hd, kt + j * hd);
                    segment_row(s, 0, j0 + j, hd, vt + j * hd);
                }
                K = kt, V = vt, ldk = ldv = hd;
            }
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)rows, T, hd, 1,
                        (s->sink_query && q_sink ? qs : qp) + r0 * hd, hd, K, (int)ldk, 0, S + r0 * TILE, TILE);

            for (int t = t_lo; t <= t_hi; t++) {
                for (int g = 0; g < group; g++) {
                    const int64_t r = (int64_t)t * group + g;
                    float *row = S + r * TILE;
                    if (seen[t] == 0) { memset(row, 0, sizeof(float) * T); continue; }
                    if (seen[t] == 1) {
                        for (int j = 0; j < T; j++) {
                            if (!key_visible(s, pos[j], q_pos[t], window, n_sinks)) row[j] = -INFINITY;
                        }
                    }
                    float mt = -INFINITY;
                    for (int j = 0; j < T; j++) mt = fmaxf(mt, row[j]);
                    if (mt == -INFINITY) { memset(row, 0, sizeof(float) * T); continue; }
                    if (mt > m[r]) {
                        const float c = expf(m[r] - mt);   // 0 on the first visible tile
                        for (int i = 0; i < hd; i++) acc[r * hd + i] *= c;
                        l[r] *= c;
                        m[r] = mt;
                    }
                    l[r] += exp_row(row, T, m[r]);
                }
            }
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)rows, hd, T, 1,
                        S + r0 * TILE, TILE, V, (int)ldv, 1, acc + r0 * hd, hd);
        }
    }

    for (int t = 0; t < n_q; t++) {
        for (int g = 0; g < group; g++) {
            const int64_t r = (int64_t)t * group + g;
            const float inv = l[r] > 0 ? 1 / l[r] : 0;
            float *o = out + t * out_stride + g * hd;
            for (int i = 0; i < hd; i++) o[i] = acc[r * hd + i] * inv;
        }
    }
}
