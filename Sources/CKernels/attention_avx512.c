// AVX-512 decode attention: one KV head's query group over a run of f32 or int8 cache rows,
// the contract of ck_attend_partial (attention.c, which holds the scalar twin
// ck_attend_partial_ref and the AVX2 kernel).
//
// Why a second kernel: with a full window and recalled memory blocks, attention took about
// as long as all the weight matrices (perf, decoding after 10K tokens with memory: 48% of
// the time against 35%). The AVX2 kernel reduces every score with a horizontal sum, calls
// the scalar expf per score, and dequantizes each int8 row into a buffer before using it.
// Here keys go sixteen at a time: each (query, key) product is one 16-lane vector and one
// transpose-and-add tree (sum16_512) turns sixteen of them into sixteen scores; the softmax
// runs on 16 lanes (exp512); each value row is read, int8 rows converted in registers, once
// per G = 16/(head_dim/16) queries (once for SmolLM2's whole group of 3 at head_dim 64).
// Sums run in another order than the twin's: tests hold the two within float rounding.
#include <math.h>

#include "ckernels.h"
#include "attention_internal.h"
#include "simd_x86.h"

#ifdef CK_X86

enum { KEYS = 16, MAX_HD = 256, MAX_GROUP = 16 };

// Lane t = q · row t for the 16 rows of hd floats at k.
CK_AVX512 static inline __attribute__((always_inline)) __m512 dots16(const float *q, const float *k, const int hd) {
    __m512 v[KEYS];
    for (int t = 0; t < KEYS; t++) {
        __m512 a = _mm512_mul_ps(_mm512_loadu_ps(q), _mm512_loadu_ps(k + (int64_t)t * hd));
        for (int j = 16; j < hd; j += 16) a = _mm512_fmadd_ps(_mm512_loadu_ps(q + j), _mm512_loadu_ps(k + (int64_t)t * hd + j), a);
        v[t] = a;
    }
    return sum16_512(v);
}

// 16 int8 codes as floats times their group's scale: what ck_dequantize_kv_row computes.
CK_AVX512 static inline __m512 dequant16(const int8_t *q, float scale) {
    return _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)q))), _mm512_set1_ps(scale));
}

CK_AVX512 static inline __attribute__((always_inline))
void attend(const float *q_sink, const float *q, const int group, int64_t n_sink, const ck_kv_view *kv, int kv_head,
            int64_t k0, int64_t k1, const int hd, float scale, float *scores, float *m, float *l, float *acc) {
    const int64_t n = k1 - k0, first = (int64_t)kv_head * kv->capacity + k0;   // row of key k0
    const int groups = hd / CK_KV_GROUP, q8 = kv->type != CK_KV_F32;
    const float *keys = (const float *)kv->keys + first * hd, *values = (const float *)kv->values + first * hd;
    const int8_t *keys8 = (const int8_t *)kv->keys + first * hd, *values8 = (const int8_t *)kv->values + first * hd;
    const float *kscale = kv->key_scales + first * groups, *vscale = kv->value_scales + first * groups;
    _Alignas(64) float rows[KEYS * MAX_HD];

    // 1. Scores, sixteen keys at a time; keys below n_sink are scored with q_sink.
    for (int64_t t0 = 0; t0 < n; t0 += KEYS) {
        const int nt = n - t0 < KEYS ? (int)(n - t0) : KEYS;
        const __mmask16 valid = (__mmask16)(nt == KEYS ? 0xffff : (1u << nt) - 1);
        const int64_t sink_rows = n_sink - (k0 + t0);
        const __mmask16 sinks = sink_rows <= 0 ? 0 : sink_rows >= KEYS ? valid : (__mmask16)((1u << sink_rows) - 1) & valid;
        // The rows as f32: in place, or (int8 rows, and a last partial block) in `rows`,
        // zero past nt, so dots16 always takes sixteen.
        const float *k = keys + t0 * hd;
        if (q8 || nt < KEYS) {
            for (int t = 0; t < KEYS; t++) {
                for (int j = 0; j < hd; j += 16) {
                    const __m512 r = t >= nt ? _mm512_setzero_ps()
                                   : q8 ? dequant16(keys8 + (t0 + t) * hd + j, kscale[(t0 + t) * groups + j / CK_KV_GROUP])
                                        : _mm512_loadu_ps(k + t * hd + j);
                    _mm512_store_ps(rows + t * hd + j, r);
                }
            }
            k = rows;
        }
        for (int g = 0; g < group; g++) {
            __m512 s = sinks != valid ? dots16(q + g * hd, k, hd) : _mm512_setzero_ps();
            if (sinks) s = _mm512_mask_mov_ps(s, sinks, dots16(q_sink + g * hd, k, hd));
            _mm512_mask_storeu_ps(scores + g * n + t0, valid, _mm512_mul_ps(s, _mm512_set1_ps(scale)));
        }
    }

    // 2. Per query: m = max score, scores ← exp(s − m), l = their sum.
    for (int g = 0; g < group; g++) {
        float *sg = scores + g * n;
        __m512 mx = _mm512_set1_ps(-INFINITY);
        for (int64_t t = 0; t < n; t += KEYS) {
            const __mmask16 k16 = (__mmask16)(n - t >= KEYS ? 0xffff : (1u << (n - t)) - 1);
            mx = _mm512_max_ps(mx, _mm512_mask_loadu_ps(_mm512_set1_ps(-INFINITY), k16, sg + t));
        }
        const float top = _mm512_reduce_max_ps(mx);
        __m512 sum = _mm512_setzero_ps();
        for (int64_t t = 0; t < n; t += KEYS) {
            const __mmask16 k16 = (__mmask16)(n - t >= KEYS ? 0xffff : (1u << (n - t)) - 1);
            const __m512 e = _mm512_maskz_mov_ps(k16, exp512(_mm512_sub_ps(_mm512_maskz_loadu_ps(k16, sg + t), _mm512_set1_ps(top))));
            _mm512_mask_storeu_ps(sg + t, k16, e);
            sum = _mm512_add_ps(sum, e);
        }
        m[g] = top;
        l[g] = _mm512_reduce_add_ps(sum);
    }

    // 3. acc[g] = Σ_t scores[g][t] · value row t: each row loaded (and converted) once for
    // up to G queries, whose G · hd/16 accumulators stay in registers.
    const int J = hd / 16, G = 16 / J;
    for (int g0 = 0; g0 < group; g0 += G) {
        const int gn = group - g0 < G ? group - g0 : G;
        __m512 a[16];
        for (int i = 0; i < gn * J; i++) a[i] = _mm512_setzero_ps();
        for (int64_t t = 0; t < n; t++) {
            __m512 v[16];
            for (int j = 0; j < J; j++) {
                v[j] = q8 ? dequant16(values8 + t * hd + 16 * j, vscale[t * groups + j / 2])
                          : _mm512_loadu_ps(values + t * hd + 16 * j);
            }
            for (int g = 0; g < gn; g++) {
                const __m512 p = _mm512_set1_ps(scores[(g0 + g) * n + t]);
                for (int j = 0; j < J; j++) a[g * J + j] = _mm512_fmadd_ps(p, v[j], a[g * J + j]);
            }
        }
        for (int g = 0; g < gn; g++) {
            for (int j = 0; j < J; j++) _mm512_storeu_ps(acc + (int64_t)(g0 + g) * hd + 16 * j, a[g * J + j]);
        }
    }
}

CK_AVX512 static void attend_any(const float *q_sink, const float *q, int group, int64_t n_sink, const ck_kv_view *kv,
                                 int kv_head, int64_t k0, int64_t k1, int hd, float scale, float *scores, float *m,
                                 float *l, float *acc) {
    // head_dim and the group as constants for the shapes of the models at hand (SmolLM2:
    // 64 and 3), so the accumulators stay in registers (else the compiler keeps them on the stack).
    if (hd == 64 && group == 3) attend(q_sink, q, 3, n_sink, kv, kv_head, k0, k1, 64, scale, scores, m, l, acc);
    else if (hd == 64 && group == 4) attend(q_sink, q, 4, n_sink, kv, kv_head, k0, k1, 64, scale, scores, m, l, acc);
    else if (hd == 128 && group == 4) attend(q_sink, q, 4, n_sink, kv, kv_head, k0, k1, 128, scale, scores, m, l, acc);
    else attend(q_sink, q, group, n_sink, kv, kv_head, k0, k1, hd, scale, scores, m, l, acc);
}

int ck_attend_partial_avx512(const float *q_sink, const float *q, int group, int64_t n_sink,
                             const ck_kv_view *kv, int kv_head, int64_t k0, int64_t k1, int head_dim,
                             float scale, float *scores, float *m, float *l, float *acc) {
    if (!ck_has_avx512vnni() || head_dim % 64 != 0 || head_dim > MAX_HD || group > MAX_GROUP) return 0;
    attend_any(q_sink, q, group, n_sink, kv, kv_head, k0, k1, head_dim, scale, scores, m, l, acc);
    return 1;
}

#else

int ck_attend_partial_avx512(const float *q_sink, const float *q, int group, int64_t n_sink,
                             const ck_kv_view *kv, int kv_head, int64_t k0, int64_t k1, int head_dim,
                             float scale, float *scores, float *m, float *l, float *acc) {
    (void)q_sink; (void)q; (void)group; (void)n_sink; (void)kv; (void)kv_head; (void)k0; (void)k1;
    (void)head_dim; (void)scale; (void)scores; (void)m; (void)l; (void)acc;
    return 0;
}

#endif
