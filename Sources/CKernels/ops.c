// Elementwise transformer ops. Plain C: the compiler
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

// GELU in its tanh form, as Gemma is trained with it and ggml computes it (ggml_gelu):
// gelu(g) = g/2 · (1 + tanh(z)), z = √(2/π) · (g + 0.044715 g³).
void ck_geglu_ref(float *gate, const float *up, int n) {
    const float sqrt_2_over_pi = 0.79788456080286535587989211986876f, coef = 0.044715f;
    for (int i = 0; i < n; i++) {
        const float g = gate[i];
        gate[i] = 0.5f * g * (1.0f + tanhf(sqrt_2_over_pi * g * (1.0f + coef * g * g))) * up[i];
    }
}

#ifdef CK_X86
// The same on 8 lanes, as g / (1 + e^(−2z)) (½(1 + tanh z) is the logistic of 2z), e^x by
// exp256: glibc's tanhf (through expm1f) was 12% of Gemma's prefill (perf).
CK_AVX2 static void geglu_avx2(float *gate, const float *up, int n) {
    const __m256 k = _mm256_set1_ps(-2 * 0.79788456080286535587989211986876f), coef = _mm256_set1_ps(0.044715f);
    const __m256 one = _mm256_set1_ps(1.0f);
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 g = _mm256_loadu_ps(gate + i);
        const __m256 z2 = _mm256_mul_ps(_mm256_mul_ps(k, g), _mm256_fmadd_ps(_mm256_mul_ps(coef, g), g, one));
        const __m256 gelu = _mm256_div_ps(g, _mm256_add_ps(one, exp256(z2)));
        _mm256_storeu_ps(gate + i, _mm256_mul_ps(gelu, _mm256_loadu_ps(up + i)));
    }
    ck_geglu_ref(gate + i, up + i, n - i);
}
#endif

void ck_geglu(float *gate, const float *up, int n) {
#ifdef CK_X86
    if (ck_has_avx2()) { geglu_avx2(gate, up, n); return; }
#endif
    ck_geglu_ref(gate, up, n);
}

void ck_scale(float *y, float s, int n) {
    for (int i = 0; i < n; i++) y[i] *= s;
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

float ck_log_softmax_at(const float *x, int n, int target) {
    float max = x[0];
    for (int i = 1; i < n; i++) if (x[i] > max) max = x[i];
    double sum = 0;
    for (int i = 0; i < n; i++) sum += expf(x[i] - max);
    return x[target] - max - (float)log(sum);
}
