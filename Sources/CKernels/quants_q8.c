// The fast path: activations quantized to int8 once per matrix-vector product, then
// integer dot products against Q4_0 / Q4_1 / Q8_0 weight blocks (ggml's vec_dot_q4_1_q8_1
// idea). Each AVX2 kernel has its scalar *_ref twin; tests hold them together.
//
// Against the float path this adds one rounding of x to 8 bits per 32-element block
// (relative error ≤ 1/254 of the block's largest |x|); tests bound the logit drift.
#include <assert.h>
#include <math.h>
#include <string.h>

#include "ckernels.h"
#include "quants_internal.h"

#include "simd_x86.h"

#define QK 32

// Same layouts as quants.c.
typedef struct { uint16_t d; uint8_t qs[QK / 2]; } block_q4_0;
typedef struct { uint16_t d; uint16_t m; uint8_t qs[QK / 2]; } block_q4_1;
typedef struct { uint16_t d; int8_t qs[QK]; } block_q8_0;
static_assert(sizeof(ck_block_q8) == 40, "ck_block_q8 size");

// ---- activation quantization ----

void ck_quantize_q8_ref(const float *x, ck_block_q8 *y, int64_t n) {
    for (int64_t i = 0; i < n / QK; i++, x += QK) {
        float amax = 0;
        for (int j = 0; j < QK; j++) amax = fmaxf(amax, fabsf(x[j]));
        const float d = amax / 127.0f, id = d != 0 ? 1.0f / d : 0;
        int sum = 0;
        for (int j = 0; j < QK; j++) {
            const int q = (int)lrintf(x[j] * id);
            y[i].qs[j] = (int8_t)q;
            sum += q;
        }
        y[i].d = d;
        y[i].s = d * (float)sum;
    }
}

// ---- scalar integer dots (the twins) ----

static float dot_q4_0_q8_ref(const block_q4_0 *w, const ck_block_q8 *x, int64_t nb) {
    float s = 0;
    for (int64_t i = 0; i < nb; i++) {
        int acc = 0;
        for (int j = 0; j < QK / 2; j++) {
            acc += (w[i].qs[j] & 0x0f) * x[i].qs[j] + (w[i].qs[j] >> 4) * x[i].qs[j + QK / 2];
        }
        // Σ(q−8)·q8·d8 = d8·Σq·q8 − 8·s8
        s += ck_fp16_to_fp32(w[i].d) * (x[i].d * (float)acc - 8 * x[i].s);
    }
    return s;
}

static float dot_q4_1_q8_ref(const block_q4_1 *w, const ck_block_q8 *x, int64_t nb) {
    float s = 0;
    for (int64_t i = 0; i < nb; i++) {
        int acc = 0;
        for (int j = 0; j < QK / 2; j++) {
            acc += (w[i].qs[j] & 0x0f) * x[i].qs[j] + (w[i].qs[j] >> 4) * x[i].qs[j + QK / 2];
        }
        // Σ(d·q + m)·d8·q8 = d·d8·Σq·q8 + m·s8
        s += ck_fp16_to_fp32(w[i].d) * x[i].d * (float)acc + ck_fp16_to_fp32(w[i].m) * x[i].s;
    }
    return s;
}

static float dot_q8_0_q8_ref(const block_q8_0 *w, const ck_block_q8 *x, int64_t nb) {
    float s = 0;
    for (int64_t i = 0; i < nb; i++) {
        int acc = 0;
        for (int j = 0; j < QK; j++) acc += w[i].qs[j] * x[i].qs[j];
        s += ck_fp16_to_fp32(w[i].d) * x[i].d * (float)acc;
    }
    return s;
}

int ck_type_has_q8_path(int type) {
    return type == CK_TYPE_Q4_0 || type == CK_TYPE_Q4_1 || type == CK_TYPE_Q8_0 ||
           type == CK_TYPE_Q4_1X || type == CK_TYPE_Q5_1X || type == CK_TYPE_Q6_0X || type == CK_TYPE_Q8_0X;
}

float ck_dot_row_q8_ref(int type, const void *row, const ck_block_q8 *x, int64_t n) {
    switch (type) {
    case CK_TYPE_Q4_0: return dot_q4_0_q8_ref(row, x, n / QK);
    case CK_TYPE_Q4_1: return dot_q4_1_q8_ref(row, x, n / QK);
    case CK_TYPE_Q8_0: return dot_q8_0_q8_ref(row, x, n / QK);
    case CK_TYPE_Q4_1X: case CK_TYPE_Q5_1X: case CK_TYPE_Q6_0X: case CK_TYPE_Q8_0X: return ck_dot_repacked_q8_ref(type, row, x, n);
    default: return NAN;
    }
}

// ---- AVX2 ----
#ifdef CK_X86

// Σ u[j]·s[j] over 32 bytes (u unsigned ≤ 127·2 safe: u ≤ 15 here) as 8 float lanes.
CK_AVX2 static inline __m256 dot_u8_s8(__m256i u, __m256i s) {
    const __m256i pairs = _mm256_maddubs_epi16(u, s);               // 16 × int16
    return _mm256_cvtepi32_ps(_mm256_madd_epi16(pairs, _mm256_set1_epi16(1))); // 8 × int32
}

// Σ a[j]·b[j] of two signed byte vectors: maddubs needs an unsigned left side, so move
// a's sign onto b.
CK_AVX2 static inline __m256 dot_s8_s8(__m256i a, __m256i b) {
    return dot_u8_s8(_mm256_sign_epi8(a, a), _mm256_sign_epi8(b, a));
}

CK_AVX2 static float dot_q4_0_q8_avx2(const block_q4_0 *w, const ck_block_q8 *x, int64_t nb) {
    __m256 acc = _mm256_setzero_ps();
    float corr = 0;
    for (int64_t i = 0; i < nb; i++) {
        const float d = h2f(w[i].d);
        const __m256i q8 = _mm256_loadu_si256((const __m256i *)x[i].qs);
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d * x[i].d), dot_u8_s8(unpack_nibbles(w[i].qs), q8), acc);
        corr += d * x[i].s;
    }
    return hsum256(acc) - 8 * corr;
}

CK_AVX2 static float dot_q4_1_q8_avx2(const block_q4_1 *w, const ck_block_q8 *x, int64_t nb) {
    __m256 acc = _mm256_setzero_ps();
    float mins = 0;
    for (int64_t i = 0; i < nb; i++) {
        const __m256i q8 = _mm256_loadu_si256((const __m256i *)x[i].qs);
        acc = _mm256_fmadd_ps(_mm256_set1_ps(h2f(w[i].d) * x[i].d),
                              dot_u8_s8(unpack_nibbles(w[i].qs), q8), acc);
        mins += h2f(w[i].m) * x[i].s;
    }
    return hsum256(acc) + mins;
}

CK_AVX2 static float dot_q8_0_q8_avx2(const block_q8_0 *w, const ck_block_q8 *x, int64_t nb) {
    __m256 acc = _mm256_setzero_ps();
    for (int64_t i = 0; i < nb; i++) {
        const __m256i qw = _mm256_loadu_si256((const __m256i *)w[i].qs);
        const __m256i q8 = _mm256_loadu_si256((const __m256i *)x[i].qs);
        acc = _mm256_fmadd_ps(_mm256_set1_ps(h2f(w[i].d) * x[i].d), dot_s8_s8(qw, q8), acc);
    }
    return hsum256(acc);
}

// Four rows at once: each activation block is loaded once for four weight rows, and the
// four accumulators are independent chains (one row alone is bound by the latency of its
// single FMA chain).
CK_AVX2 static void dot4_q4_1_q8_avx2(const block_q4_1 *w, size_t stride, const ck_block_q8 *x,
                                      int64_t nb, float *out) {
    __m256 acc[4] = { _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps() };
    float mins[4] = { 0, 0, 0, 0 };
    for (int64_t i = 0; i < nb; i++) {
        const __m256i q8 = _mm256_loadu_si256((const __m256i *)x[i].qs);
        const float xd = x[i].d, xs = x[i].s;
        for (int r = 0; r < 4; r++) {
            const block_q4_1 *b = &w[r * stride + i];
            acc[r] = _mm256_fmadd_ps(_mm256_set1_ps(h2f(b->d) * xd), dot_u8_s8(unpack_nibbles(b->qs), q8), acc[r]);
            mins[r] += h2f(b->m) * xs;
        }
    }
    for (int r = 0; r < 4; r++) out[r] = hsum256(acc[r]) + mins[r];
}

CK_AVX2 static void dot4_q4_0_q8_avx2(const block_q4_0 *w, size_t stride, const ck_block_q8 *x,
                                      int64_t nb, float *out) {
    __m256 acc[4] = { _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps() };
    float corr[4] = { 0, 0, 0, 0 };
    for (int64_t i = 0; i < nb; i++) {
        const __m256i q8 = _mm256_loadu_si256((const __m256i *)x[i].qs);
        const float xd = x[i].d, xs = x[i].s;
        for (int r = 0; r < 4; r++) {
            const block_q4_0 *b = &w[r * stride + i];
            const float d = h2f(b->d);
            acc[r] = _mm256_fmadd_ps(_mm256_set1_ps(d * xd), dot_u8_s8(unpack_nibbles(b->qs), q8), acc[r]);
            corr[r] += d * xs;
        }
    }
    for (int r = 0; r < 4; r++) out[r] = hsum256(acc[r]) - 8 * corr[r];
}

CK_AVX2 static void dot4_q8_0_q8_avx2(const block_q8_0 *w, size_t stride, const ck_block_q8 *x,
                                      int64_t nb, float *out) {
    __m256 acc[4] = { _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps() };
    for (int64_t i = 0; i < nb; i++) {
        const __m256i q8 = _mm256_loadu_si256((const __m256i *)x[i].qs);
        for (int r = 0; r < 4; r++) {
            const block_q8_0 *b = &w[r * stride + i];
            const __m256i qw = _mm256_loadu_si256((const __m256i *)b->qs);
            acc[r] = _mm256_fmadd_ps(_mm256_set1_ps(h2f(b->d) * x[i].d), dot_s8_s8(qw, q8), acc[r]);
        }
    }
    for (int r = 0; r < 4; r++) out[r] = hsum256(acc[r]);
}

// Rows [r0, r1) of w·x for every supported type, four at a time.
CK_AVX2 static void matvec_q8_avx2(int type, const uint8_t *w, size_t row_bytes, const ck_block_q8 *x,
                                   float *y, int64_t cols, int64_t r0, int64_t r1) {
    const int64_t nb = cols / QK;
    int64_t r = r0;
    for (; r + 4 <= r1; r += 4) {
        const void *rows = w + (size_t)r * row_bytes;
        switch (type) {
        case CK_TYPE_Q4_0: dot4_q4_0_q8_avx2(rows, (size_t)nb, x, nb, y + r); break;
        case CK_TYPE_Q4_1: dot4_q4_1_q8_avx2(rows, (size_t)nb, x, nb, y + r); break;
        default:           dot4_q8_0_q8_avx2(rows, (size_t)nb, x, nb, y + r); break;
        }
    }
    for (; r < r1; r++) {
        const void *row = w + (size_t)r * row_bytes;
        switch (type) {
        case CK_TYPE_Q4_0: y[r] = dot_q4_0_q8_avx2(row, x, nb); break;
        case CK_TYPE_Q4_1: y[r] = dot_q4_1_q8_avx2(row, x, nb); break;
        default:           y[r] = dot_q8_0_q8_avx2(row, x, nb); break;
        }
    }
}

CK_AVX2 static void quantize_q8_avx2(const float *x, ck_block_q8 *y, int64_t n) {
    const __m256 sign = _mm256_set1_ps(-0.0f);
    for (int64_t i = 0; i < n / QK; i++, x += QK) {
        __m256 v[4], m = _mm256_setzero_ps();
        for (int k = 0; k < 4; k++) {
            v[k] = _mm256_loadu_ps(x + 8 * k);
            m = _mm256_max_ps(m, _mm256_andnot_ps(sign, v[k]));
        }
        __m128 h = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
        h = _mm_max_ps(h, _mm_movehl_ps(h, h));
        h = _mm_max_ss(h, _mm_movehdup_ps(h));
        const float amax = _mm_cvtss_f32(h);
        const float d = amax / 127.0f, id = d != 0 ? 1.0f / d : 0;
        __m256i q32[4];
        __m256i sum = _mm256_setzero_si256();
        for (int k = 0; k < 4; k++) {
            // Round half to even, as lrintf in the twin does under the default rounding mode.
            q32[k] = _mm256_cvtps_epi32(_mm256_mul_ps(v[k], _mm256_set1_ps(id)));
            sum = _mm256_add_epi32(sum, q32[k]);
        }
        // Pack 32 int32 → 32 int8 in element order (packs work within 128-bit lanes).
        __m256i p16a = _mm256_packs_epi32(q32[0], q32[1]);
        __m256i p16b = _mm256_packs_epi32(q32[2], q32[3]);
        __m256i p8 = _mm256_packs_epi16(p16a, p16b);
        p8 = _mm256_permutevar8x32_epi32(p8, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
        _mm256_storeu_si256((__m256i *)y[i].qs, p8);
        __m128i s4 = _mm_add_epi32(_mm256_castsi256_si128(sum), _mm256_extracti128_si256(sum, 1));
        s4 = _mm_hadd_epi32(s4, s4);
        s4 = _mm_hadd_epi32(s4, s4);
        y[i].d = d;
        y[i].s = d * (float)_mm_cvtsi128_si32(s4);
    }
}

#endif

void ck_quantize_q8(const float *x, ck_block_q8 *y, int64_t n) {
#ifdef CK_X86
    if (ck_has_avx2()) { quantize_q8_avx2(x, y, n); return; }
#endif
    ck_quantize_q8_ref(x, y, n);
}

float ck_dot_row_q8(int type, const void *row, const ck_block_q8 *x, int64_t n) {
#ifdef CK_X86
    if (ck_has_avx2()) {
        switch (type) {
        case CK_TYPE_Q4_0: return dot_q4_0_q8_avx2(row, x, n / QK);
        case CK_TYPE_Q4_1: return dot_q4_1_q8_avx2(row, x, n / QK);
        case CK_TYPE_Q8_0: return dot_q8_0_q8_avx2(row, x, n / QK);
        default: break;
        }
    }
#endif
    return ck_dot_row_q8_ref(type, row, x, n);
}

void ck_matvec_q8(int type, const void *w, const ck_block_q8 *x, float *y,
                  int64_t cols, int64_t row_begin, int64_t row_end) {
    if (type == CK_TYPE_Q4_1X || type == CK_TYPE_Q5_1X || type == CK_TYPE_Q6_0X || type == CK_TYPE_Q8_0X) {
        ck_matvec_repacked_q8(type, w, x, y, cols, row_begin, row_end);
        return;
    }
    const size_t row_bytes = (size_t)(cols / QK) * ck_type_block_bytes(type);
    const uint8_t *base = w;
#ifdef CK_X86
    if (ck_has_avx2() && ck_type_has_q8_path(type)) {
        matvec_q8_avx2(type, base, row_bytes, x, y, cols, row_begin, row_end);
        return;
    }
#endif
    for (int64_t r = row_begin; r < row_end; r++) {
        y[r] = ck_dot_row_q8(type, base + (size_t)r * row_bytes, x, cols);
    }
}

void ck_matmul_q8(int type, const void *w, const ck_block_q8 *x, int64_t n, float *y, int64_t ldy,
                  int64_t cols, int64_t row_begin, int64_t row_end) {
    if (ck_matmul_repacked_q8_vnni(type, w, x, n, y, ldy, cols, row_begin, row_end)) return;
    for (int64_t t = 0; t < n; t++) ck_matvec_q8(type, w, x + t * (cols / QK), y + t * ldy, cols, row_begin, row_end);
}
