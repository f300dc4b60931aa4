// AVX2 decode attention: one KV head's query group over a run of f32 or int8 cache rows,
// the contract of ck_attend_partial (attention.c, which holds the scalar twin
// ck_attend_partial_ref), laid out as the AVX-512 kernel (attention_avx512.c) is.
//
// Why: the AVX2 kernel it replaces reduced every score with its own horizontal sum, called
// the scalar expf once per score and query, and dequantized int8 rows into a buffer before
// reading them. On an AVX2-only host it took 65 ns per key and KV head (f32,
// group of 3, 1024 keys; int8 75 ns), so with a full window and recalled memory blocks
// attention took about as long as all the weight matrices, and decoding with the memory on
// ran at 0.69× of memory off after 128K tokens. Here keys go eight at a time: each (query,
// key) product is one 8-lane vector and one hadd tree (sum8) turns eight of them into eight
// scores; the softmax runs on 8 lanes (exp256); value rows are read in 32-dim slices, int8
// rows converted in registers (a slice is one scale group), once per three queries. One KV
// head over 1024 keys, group of 3: f32 65 → 22–24 ns a key, int8 75 → 23–25 (scores ~11 ns,
// bound by loading q and the key rows; softmax ~2; values ~11).
// Sums run in another order than the twin's: tests hold the two within float rounding.
#include <math.h>
#include <string.h>

#include "ckernels.h"
#include "attention_internal.h"
#include "simd_x86.h"

#ifdef CK_X86

enum { KEYS = 8, MAX_HD = 512, QUERIES = 3 };

// Lane t = the sum of v[t]'s eight lanes.
CK_AVX2 static inline __m256 sum8(const __m256 *v) {
    // Per 128-bit half: (v0 01, v0 23, v1 01, v1 23), then the four-lane sums of v0–v3.
    const __m256 v0123 = _mm256_hadd_ps(_mm256_hadd_ps(v[0], v[1]), _mm256_hadd_ps(v[2], v[3]));
    const __m256 v4567 = _mm256_hadd_ps(_mm256_hadd_ps(v[4], v[5]), _mm256_hadd_ps(v[6], v[7]));
    // The low halves hold lanes 0–3 of each, the high halves lanes 4–7: add them.
    return _mm256_add_ps(_mm256_permute2f128_ps(v0123, v4567, 0x20), _mm256_permute2f128_ps(v0123, v4567, 0x31));
}

// Lane t = q · row t for the 8 rows of hd floats at k. (Taking four keys at a time for all
// three queries of a group, so that each key vector is loaded once for them, measured no
// faster.)
CK_AVX2 static inline __attribute__((always_inline)) __m256 dots8(const float *q, const float *k, const int hd) {
    __m256 v[KEYS];
    for (int t = 0; t < KEYS; t++) {
        __m256 a = _mm256_mul_ps(_mm256_loadu_ps(q), _mm256_loadu_ps(k + (int64_t)t * hd));
        for (int j = 8; j < hd; j += 8) a = _mm256_fmadd_ps(_mm256_loadu_ps(q + j), _mm256_loadu_ps(k + (int64_t)t * hd + j), a);
        v[t] = a;
    }
    return sum8(v);
}

// 8 int8 codes as floats times their group's scale: what ck_dequantize_kv_row computes.
CK_AVX2 static inline __m256 dequant8(const int8_t *q, __m256 scale) {
    return _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)q))), scale);
}

// The first nt lanes of s to out.
CK_AVX2 static inline void store_scores(float *out, __m256 s, int nt) {
    if (nt == KEYS) { _mm256_storeu_ps(out, s); return; }
    _Alignas(32) float last[KEYS];
    _mm256_store_ps(last, s);
    memcpy(out, last, sizeof(float) * (size_t)nt);
}

// Lanes below n set (all bits), the rest clear.
CK_AVX2 static inline __m256 lanes_below(int64_t n) {
    const __m256i iota = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    const int c = n < 0 ? 0 : n > KEYS ? KEYS : (int)n;
    return _mm256_castsi256_ps(_mm256_cmpgt_epi32(_mm256_set1_epi32(c), iota));
}

CK_AVX2 static inline __attribute__((always_inline))
void attend(const float *q_sink, const float *q, const int group, int64_t n_sink, const ck_kv_view *kv, int kv_head,
            int64_t k0, int64_t k1, const int hd, float scale, float *scores, float *m, float *l, float *acc) {
    const int64_t n = k1 - k0, first = (int64_t)kv_head * kv->capacity + k0;   // row of key k0
    const int groups = hd / CK_KV_GROUP, q8 = kv->type != CK_KV_F32;
    const float *keys = (const float *)kv->keys + first * hd, *values = (const float *)kv->values + first * hd;
    const int8_t *keys8 = (const int8_t *)kv->keys + first * hd, *values8 = (const int8_t *)kv->values + first * hd;
    const float *kscale = kv->key_scales + first * groups, *vscale = kv->value_scales + first * groups;
    _Alignas(32) float rows[KEYS * MAX_HD];

    // 1. Scores, eight keys at a time; keys below n_sink are scored with q_sink.
    for (int64_t t0 = 0; t0 < n; t0 += KEYS) {
        const int nt = n - t0 < KEYS ? (int)(n - t0) : KEYS;
        const int64_t sink_rows = n_sink - (k0 + t0);
        // The rows as f32: in place, or (int8 rows, and a last partial block) in `rows`,
        // zero past nt, so dots8 always takes eight.
        const float *k = keys + t0 * hd;
        if (q8 || nt < KEYS) {
            for (int t = 0; t < KEYS; t++) {
                for (int j = 0; j < hd; j += 8) {
                    const __m256 r = t >= nt ? _mm256_setzero_ps()
                                   : q8 ? dequant8(keys8 + (t0 + t) * hd + j, _mm256_broadcast_ss(kscale + (t0 + t) * groups + j / CK_KV_GROUP))
                                        : _mm256_loadu_ps(k + t * hd + j);
                    _mm256_store_ps(rows + t * hd + j, r);
                }
            }
            k = rows;
        }
        for (int g = 0; g < group; g++) {
            __m256 s = sink_rows < nt ? dots8(q + g * hd, k, hd) : _mm256_setzero_ps();
            if (sink_rows > 0) s = _mm256_blendv_ps(s, dots8(q_sink + g * hd, k, hd), lanes_below(sink_rows));
            store_scores(scores + g * n + t0, _mm256_mul_ps(s, _mm256_set1_ps(scale)), nt);
        }
    }

    // 2. Per query: m = max score, scores ← exp(s − m), l = their sum.
    for (int g = 0; g < group; g++) {
        float *sg = scores + g * n;
        __m256 mx = _mm256_set1_ps(-INFINITY);
        int64_t t = 0;
        for (; t + KEYS <= n; t += KEYS) mx = _mm256_max_ps(mx, _mm256_loadu_ps(sg + t));
        float top = -INFINITY;
        for (; t < n; t++) top = sg[t] > top ? sg[t] : top;
        _Alignas(32) float lanes[KEYS];
        _mm256_store_ps(lanes, mx);
        for (int i = 0; i < KEYS; i++) top = lanes[i] > top ? lanes[i] : top;
        const __m256 topv = _mm256_set1_ps(top);
        __m256 sum = _mm256_setzero_ps();
        for (t = 0; t + KEYS <= n; t += KEYS) {
            const __m256 e = exp256(_mm256_sub_ps(_mm256_loadu_ps(sg + t), topv));
            _mm256_storeu_ps(sg + t, e);
            sum = _mm256_add_ps(sum, e);
        }
        if (t < n) {   // the last few, through a padded copy (exp(−inf) = 0 past the end)
            _Alignas(32) float last[KEYS];
            for (int i = 0; i < KEYS; i++) last[i] = t + i < n ? sg[t + i] : -INFINITY;
            const __m256 e = exp256(_mm256_sub_ps(_mm256_load_ps(last), topv));
            _mm256_store_ps(last, e);
            memcpy(sg + t, last, sizeof(float) * (size_t)(n - t));
            sum = _mm256_add_ps(sum, e);
        }
        m[g] = top;
        l[g] = hsum256(sum);
    }

    // 3. acc[g] = Σ_t scores[g][t] · value row t, in 32-dim slices (one scale group of an
    // int8 row): up to three queries' four accumulators and the slice's four vectors fill
    // the sixteen registers.
    for (int g0 = 0; g0 < group; g0 += QUERIES) {
        const int gn = group - g0 < QUERIES ? group - g0 : QUERIES;
        for (int i = 0; i < hd; i += 32) {
            __m256 a[QUERIES][4];
            for (int g = 0; g < gn; g++) for (int j = 0; j < 4; j++) a[g][j] = _mm256_setzero_ps();
            for (int64_t t = 0; t < n; t++) {
                __m256 v[4];
                if (q8) {
                    const __m256 d = _mm256_broadcast_ss(vscale + t * groups + i / CK_KV_GROUP);
                    for (int j = 0; j < 4; j++) v[j] = dequant8(values8 + t * hd + i + 8 * j, d);
                } else {
                    for (int j = 0; j < 4; j++) v[j] = _mm256_loadu_ps(values + t * hd + i + 8 * j);
                }
                for (int g = 0; g < gn; g++) {
                    const __m256 p = _mm256_broadcast_ss(scores + (g0 + g) * n + t);
                    for (int j = 0; j < 4; j++) a[g][j] = _mm256_fmadd_ps(p, v[j], a[g][j]);
                }
            }
            for (int g = 0; g < gn; g++) {
                for (int j = 0; j < 4; j++) _mm256_storeu_ps(acc + (int64_t)(g0 + g) * hd + i + 8 * j, a[g][j]);
            }
        }
    }
}

CK_AVX2 static void attend_any(const float *q_sink, const float *q, int group, int64_t n_sink, const ck_kv_view *kv,
                               int kv_head, int64_t k0, int64_t k1, int hd, float scale, float *scores, float *m,
                               float *l, float *acc) {
    // head_dim and the group as constants for the shapes of the models at hand (SmolLM2: 64
    // and 3), so the loops unroll and the accumulators stay in registers.
    if (hd == 64 && group == 3) attend(q_sink, q, 3, n_sink, kv, kv_head, k0, k1, 64, scale, scores, m, l, acc);
    else if (hd == 64 && group == 4) attend(q_sink, q, 4, n_sink, kv, kv_head, k0, k1, 64, scale, scores, m, l, acc);
    else if (hd == 128 && group == 4) attend(q_sink, q, 4, n_sink, kv, kv_head, k0, k1, 128, scale, scores, m, l, acc);
    else attend(q_sink, q, group, n_sink, kv, kv_head, k0, k1, hd, scale, scores, m, l, acc);
}

int ck_attend_partial_avx2(const float *q_sink, const float *q, int group, int64_t n_sink,
                           const ck_kv_view *kv, int kv_head, int64_t k0, int64_t k1, int head_dim,
                           float scale, float *scores, float *m, float *l, float *acc) {
    if (!ck_has_avx2() || head_dim % 32 != 0 || head_dim > MAX_HD) return 0;
    attend_any(q_sink, q, group, n_sink, kv, kv_head, k0, k1, head_dim, scale, scores, m, l, acc);
    return 1;
}

#else

int ck_attend_partial_avx2(const float *q_sink, const float *q, int group, int64_t n_sink,
                           const ck_kv_view *kv, int kv_head, int64_t k0, int64_t k1, int head_dim,
                           float scale, float *scores, float *m, float *l, float *acc) {
    (void)q_sink; (void)q; (void)group; (void)n_sink; (void)kv; (void)kv_head; (void)k0; (void)k1;
    (void)head_dim; (void)scale; (void)scores; (void)m; (void)l; (void)acc;
    return 0;
}

#endif
