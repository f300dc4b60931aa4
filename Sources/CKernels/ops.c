// Elementwise transformer ops and single-query attention. Plain C: the compiler
// vectorizes these loops at -O3, and they are a small share of a token's time next to the
// weight matvecs.
#include <math.h>

#include "ckernels.h"

#include "simd_x86.h"

void ck_rmsnorm(float *out, const float *x, const float *weight, int n, float eps) {
    double ss = 0; // double: 576 squares summed in float lose a few ulps against the reference
    for (int i = 0; i < n; i++) ss += (double)x[i] * x[i];
    const float inv = (float)(1.0 / sqrt(ss / n + eps));
    for (int i = 0; i < n; i++) out[i] = x[i] * inv * weight[i];
}

void ck_softmax(float *x, int n) {
    float max = x[0];
    for (int i = 1; i < n; i++) if (x[i] > max) max = x[i];
    float sum = 0;
    for (int i = 0; i < n; i++) { x[i] = expf(x[i] - max); sum += x[i]; }
    const float inv = 1.0f / sum;
    for (int i = 0; i < n; i++) x[i] *= inv;
}

void ck_swiglu(float *gate, const float *up, int n) {
    for (int i = 0; i < n; i++) {
        const float g = gate[i];
        gate[i] = g / (1.0f + expf(-g)) * up[i];
    }
}

void ck_add(float *y, const float *x, int n) {
    for (int i = 0; i < n; i++) y[i] += x[i];
}

void ck_rope(float *x, int head_dim, const float *cos_t, const float *sin_t, int mode) {
    const int half = head_dim / 2;
    for (int i = 0; i < half; i++) {
        // mode 0 pairs (2i, 2i+1); mode 2 (neox) pairs (i, i+half). Pair i always uses
        // frequency i, so both modes share the same table.
        const int a = mode == 0 ? 2 * i : i;
        const int b = mode == 0 ? 2 * i + 1 : i + half;
        const float x0 = x[a], x1 = x[b];
        x[a] = x0 * cos_t[i] - x1 * sin_t[i];
        x[b] = x0 * sin_t[i] + x1 * cos_t[i];
    }
}

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

#ifdef CK_X86

// The scalar loops above do not vectorize: without -ffast-math the compiler may not
// reorder a float sum. In prompt processing they were 38% of the time (perf, pp512).
CK_AVX2 static void attend_head_avx2(const float *q_sink, const float *q, int64_t n_sink,
                                     const float *keys, const float *values,
                                     int64_t n_keys, int head_dim, int64_t key_stride,
                                     int64_t value_stride, float scale, float *scores, float *out) {
    for (int64_t t = 0; t < n_keys; t++) {
        const float *k = keys + t * key_stride;
        const float *qq = t < n_sink ? q_sink : q;
        __m256 acc = _mm256_setzero_ps();
        for (int i = 0; i < head_dim; i += 8) acc = _mm256_fmadd_ps(_mm256_loadu_ps(qq + i), _mm256_loadu_ps(k + i), acc);
        __m128 s = _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps(acc, 1));
        s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        s = _mm_add_ss(s, _mm_movehdup_ps(s));
        scores[t] = _mm_cvtss_f32(s) * scale;
    }
    ck_softmax(scores, (int)n_keys);
    for (int i = 0; i < head_dim; i += 8) {
        __m256 acc = _mm256_setzero_ps();
        for (int64_t t = 0; t < n_keys; t++) {
            acc = _mm256_fmadd_ps(_mm256_set1_ps(scores[t]), _mm256_loadu_ps(values + t * value_stride + i), acc);
        }
        _mm256_storeu_ps(out + i, acc);
    }
}

#endif

void ck_attend_head(const float *q_sink, const float *q, int64_t n_sink,
                    const float *keys, const float *values,
                    int64_t n_keys, int head_dim, int64_t key_stride, int64_t value_stride,
                    float scale, float *scores, float *out) {
#ifdef CK_X86
    if (ck_has_avx2() && head_dim % 8 == 0) {
        attend_head_avx2(q_sink, q, n_sink, keys, values, n_keys, head_dim, key_stride, value_stride, scale, scores, out);
        return;
    }
#endif
    ck_attend_head_ref(q_sink, q, n_sink, keys, values, n_keys, head_dim, key_stride, value_stride, scale, scores, out);
}

float ck_log_softmax_at(const float *x, int n, int target) {
    float max = x[0];
    for (int i = 1; i < n; i++) if (x[i] > max) max = x[i];
    double sum = 0;
    for (int i = 0; i < n; i++) sum += expf(x[i] - max);
    return x[target] - max - (float)log(sum);
}
