// Quantized tensor types: block layouts, dequantization and float-path dot products for
// F32, F16, Q4_0, Q4_1 and Q8_0 (Q5_0, Q5_1 and the K-quants are in quants_k.c), plus the
// per-type dispatch that the rest of the engine calls.
//
// Block layouts follow ggml (ggml-common.h); a block covers QK = 32 consecutive weights of
// one row. Each SIMD kernel has a scalar *_ref twin; tests compare the two.
#include <assert.h>
#include <math.h>
#include <string.h>

#include "ckernels.h"
#include "quants_internal.h"

#include "simd_x86.h"

#define QK 32

// Q4_0: w = d * (q - 8), q a 4-bit code. Low nibbles of qs hold elements 0..15,
// high nibbles elements 16..31.
typedef struct { uint16_t d; uint8_t qs[QK / 2]; } block_q4_0;
static_assert(sizeof(block_q4_0) == 18, "block_q4_0 size");

// Q4_1: w = d * q + m, q a 4-bit code, same nibble order as Q4_0.
typedef struct { uint16_t d; uint16_t m; uint8_t qs[QK / 2]; } block_q4_1;
static_assert(sizeof(block_q4_1) == 20, "block_q4_1 size");

// Q8_0: w = d * q, q a signed byte.
typedef struct { uint16_t d; int8_t qs[QK]; } block_q8_0;
static_assert(sizeof(block_q8_0) == 34, "block_q8_0 size");

// ---- half precision ----

float ck_fp16_to_fp32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f;
    uint32_t mant = h & 0x3ff;
    uint32_t bits;
    if (exp == 0) {
        if (mant == 0) {
            bits = sign;
        } else { // subnormal: renormalize
            int e = -1;
            do { e++; mant <<= 1; } while ((mant & 0x400) == 0);
            bits = sign | ((uint32_t)(127 - 15 - e) << 23) | ((mant & 0x3ff) << 13);
        }
    } else if (exp == 31) {
        bits = sign | 0x7f800000u | (mant << 13);
    } else {
        bits = sign | ((exp + 127 - 15) << 23) | (mant << 13);
    }
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

uint16_t ck_fp32_to_fp16(float f) {
    // Round to nearest even, as F16C's _cvtps_ph does with rounding mode 0.
    uint32_t x;
    memcpy(&x, &f, sizeof x);
    uint32_t sign = (x >> 16) & 0x8000;
    uint32_t absx = x & 0x7fffffffu;
    if (absx >= 0x7f800000u) { // inf or nan
        return (uint16_t)(sign | 0x7c00 | (absx > 0x7f800000u ? 0x200 : 0));
    }
    if (absx >= 0x477ff000u) return (uint16_t)(sign | 0x7c00); // overflow to inf
    if (absx < 0x38800000u) { // subnormal or zero in half
        if (absx < 0x33000000u) return (uint16_t)sign;
        uint32_t mant = (absx & 0x7fffff) | 0x800000;
        int shift = 113 - (int)(absx >> 23) + 13; // 14..24
        uint32_t half = mant >> shift;
        uint32_t rem = mant & ((1u << shift) - 1);
        uint32_t halfway = 1u << (shift - 1);
        if (rem > halfway || (rem == halfway && (half & 1))) half++;
        return (uint16_t)(sign | half);
    }
    uint32_t half = ((absx >> 13) - (112u << 10));
    uint32_t rem = absx & 0x1fff;
    if (rem > 0x1000 || (rem == 0x1000 && (half & 1))) half++;
    return (uint16_t)(sign | half);
}

// ---- type table ----

int ck_type_block_size(int type) {
    switch (type) {
    case CK_TYPE_F32: case CK_TYPE_F16: return 1;
    case CK_TYPE_Q4_0: case CK_TYPE_Q4_1: case CK_TYPE_Q5_0: case CK_TYPE_Q5_1: case CK_TYPE_Q8_0:
    case CK_TYPE_Q4_1X: case CK_TYPE_Q5_1X: case CK_TYPE_Q6_0X: case CK_TYPE_Q8_0X: return QK;
    case CK_TYPE_Q4_K: case CK_TYPE_Q5_K: case CK_TYPE_Q6_K: return 256;
    default: return 0;
    }
}

size_t ck_type_block_bytes(int type) {
    switch (type) {
    case CK_TYPE_F32: return 4;
    case CK_TYPE_F16: return 2;
    case CK_TYPE_Q4_0: return sizeof(block_q4_0);
    case CK_TYPE_Q4_1: case CK_TYPE_Q4_1X: return sizeof(block_q4_1);
    case CK_TYPE_Q5_1: case CK_TYPE_Q5_1X: return 24;
    case CK_TYPE_Q6_0X: return 28;
    case CK_TYPE_Q5_0: return 22;
    case CK_TYPE_Q8_0: case CK_TYPE_Q8_0X: return sizeof(block_q8_0);
    case CK_TYPE_Q4_K: return 144;
    case CK_TYPE_Q5_K: return 176;
    case CK_TYPE_Q6_K: return 210;
    default: return 0;
    }
}

// ---- checking weights ----

// A NaN or infinity in a norm weight or a block scale turns every output into NaN; a file
// with one (crafted, or damaged on disk) ran with garbage output and exit status 0. Only the
// half-precision scales of each block can hold one (the codes are integers), so this reads
// 2–4 bytes per block: under a millisecond for the default model's 90 MB.
static int half_nonfinite(const uint8_t *p) {
    uint16_t h;
    memcpy(&h, p, 2);
    return (h & 0x7c00) == 0x7c00;
}

int64_t ck_find_nonfinite(int type, const void *x, int64_t n) {
    const uint8_t *b = x;
    const int64_t size = ck_type_block_size(type), blocks = size > 0 ? n / size : 0;
    const size_t bytes = ck_type_block_bytes(type);
    int offsets[2] = {-1, -1};   // where each block's half-precision scales are
    switch (type) {
    case CK_TYPE_F32:
        for (int64_t i = 0; i < n; i++) {
            uint32_t u;
            memcpy(&u, b + 4 * i, 4);
            if ((u & 0x7f800000u) == 0x7f800000u) return i;
        }
        return -1;
    case CK_TYPE_F16: offsets[0] = 0; break;
    case CK_TYPE_Q4_0: case CK_TYPE_Q5_0: case CK_TYPE_Q8_0: offsets[0] = 0; break;
    case CK_TYPE_Q4_1: case CK_TYPE_Q5_1: case CK_TYPE_Q4_K: case CK_TYPE_Q5_K: offsets[0] = 0; offsets[1] = 2; break;
    case CK_TYPE_Q6_K: offsets[0] = 208; break;
    default: return -1;
    }
    for (int64_t i = 0; i < blocks; i++) {
        const uint8_t *block = b + (size_t)i * bytes;
        if (half_nonfinite(block + offsets[0]) || (offsets[1] >= 0 && half_nonfinite(block + offsets[1]))) return i * size;
    }
    return -1;
}

// ---- dequantization ----

static void dequant_f16(const void *x, float *y, int64_t n) {
    const uint16_t *h = x;
    for (int64_t i = 0; i < n; i++) y[i] = ck_fp16_to_fp32(h[i]);
}

static void dequant_q4_0(const void *x, float *y, int64_t n) {
    const block_q4_0 *b = x;
    for (int64_t i = 0; i < n / QK; i++, y += QK) {
        const float d = ck_fp16_to_fp32(b[i].d);
        for (int j = 0; j < QK / 2; j++) {
            y[j] = d * ((b[i].qs[j] & 0x0f) - 8);
            y[j + QK / 2] = d * ((b[i].qs[j] >> 4) - 8);
        }
    }
}

static void dequant_q4_1(const void *x, float *y, int64_t n) {
    const block_q4_1 *b = x;
    for (int64_t i = 0; i < n / QK; i++, y += QK) {
        const float d = ck_fp16_to_fp32(b[i].d), m = ck_fp16_to_fp32(b[i].m);
        for (int j = 0; j < QK / 2; j++) {
            y[j] = d * (b[i].qs[j] & 0x0f) + m;
            y[j + QK / 2] = d * (b[i].qs[j] >> 4) + m;
        }
    }
}

static void dequant_q8_0(const void *x, float *y, int64_t n) {
    const block_q8_0 *b = x;
    for (int64_t i = 0; i < n / QK; i++, y += QK) {
        const float d = ck_fp16_to_fp32(b[i].d);
        for (int j = 0; j < QK; j++) y[j] = d * b[i].qs[j];
    }
}

int ck_dequantize_row(int type, const void *x, float *y, int64_t n) {
    switch (type) {
    case CK_TYPE_F32: memcpy(y, x, (size_t)n * sizeof(float)); return 0;
    case CK_TYPE_F16: dequant_f16(x, y, n); return 0;
    case CK_TYPE_Q4_0: dequant_q4_0(x, y, n); return 0;
    case CK_TYPE_Q4_1: dequant_q4_1(x, y, n); return 0;
    case CK_TYPE_Q5_0: ck_dequant_q5_0(x, y, n); return 0;
    case CK_TYPE_Q5_1: ck_dequant_q5_1(x, y, n); return 0;
    case CK_TYPE_Q8_0: dequant_q8_0(x, y, n); return 0;
    case CK_TYPE_Q4_K: ck_dequant_q4_K(x, y, n); return 0;
    case CK_TYPE_Q5_K: ck_dequant_q5_K(x, y, n); return 0;
    case CK_TYPE_Q6_K: ck_dequant_q6_K(x, y, n); return 0;
    case CK_TYPE_Q4_1X: case CK_TYPE_Q5_1X: case CK_TYPE_Q6_0X: case CK_TYPE_Q8_0X: ck_dequant_repacked(type, x, y, n); return 0;
    default: return -1;
    }
}

// ---- scalar float-path dot products (the reference) ----

static float dot_f32_ref(const float *w, const float *x, int64_t n) {
    float s = 0;
    for (int64_t i = 0; i < n; i++) s += w[i] * x[i];
    return s;
}

static float dot_f16_ref(const uint16_t *w, const float *x, int64_t n) {
    float s = 0;
    for (int64_t i = 0; i < n; i++) s += ck_fp16_to_fp32(w[i]) * x[i];
    return s;
}

static float dot_q4_0_ref(const block_q4_0 *b, const float *x, int64_t n) {
    float s = 0;
    for (int64_t i = 0; i < n / QK; i++, x += QK) {
        float acc = 0;
        for (int j = 0; j < QK / 2; j++) {
            acc += ((b[i].qs[j] & 0x0f) - 8) * x[j] + ((b[i].qs[j] >> 4) - 8) * x[j + QK / 2];
        }
        s += ck_fp16_to_fp32(b[i].d) * acc;
    }
    return s;
}

// Q4_1 row · x = sum over blocks of d·(q·x) + m·sum(x).
static float dot_q4_1_ref(const block_q4_1 *b, const float *x, int64_t n) {
    float s = 0;
    for (int64_t i = 0; i < n / QK; i++, x += QK) {
        float qx = 0, sx = 0;
        for (int j = 0; j < QK / 2; j++) {
            qx += (b[i].qs[j] & 0x0f) * x[j] + (b[i].qs[j] >> 4) * x[j + QK / 2];
            sx += x[j] + x[j + QK / 2];
        }
        s += ck_fp16_to_fp32(b[i].d) * qx + ck_fp16_to_fp32(b[i].m) * sx;
    }
    return s;
}

static float dot_q8_0_ref(const block_q8_0 *b, const float *x, int64_t n) {
    float s = 0;
    for (int64_t i = 0; i < n / QK; i++, x += QK) {
        float acc = 0;
        for (int j = 0; j < QK; j++) acc += b[i].qs[j] * x[j];
        s += ck_fp16_to_fp32(b[i].d) * acc;
    }
    return s;
}

float ck_dot_row_f32_ref(int type, const void *row, const float *x, int64_t n) {
    switch (type) {
    case CK_TYPE_F32: return dot_f32_ref(row, x, n);
    case CK_TYPE_F16: return dot_f16_ref(row, x, n);
    case CK_TYPE_Q4_0: return dot_q4_0_ref(row, x, n);
    case CK_TYPE_Q4_1: return dot_q4_1_ref(row, x, n);
    case CK_TYPE_Q5_0: return ck_dot_q5_0_f32_ref(row, x, n);
    case CK_TYPE_Q5_1: return ck_dot_q5_1_f32_ref(row, x, n);
    case CK_TYPE_Q8_0: return dot_q8_0_ref(row, x, n);
    case CK_TYPE_Q4_K: return ck_dot_q4_K_f32_ref(row, x, n);
    case CK_TYPE_Q5_K: return ck_dot_q5_K_f32_ref(row, x, n);
    case CK_TYPE_Q6_K: return ck_dot_q6_K_f32_ref(row, x, n);
    case CK_TYPE_Q4_1X: case CK_TYPE_Q5_1X: case CK_TYPE_Q6_0X: case CK_TYPE_Q8_0X: return ck_dot_repacked_f32_ref(type, row, x, n);
    default: return NAN;
    }
}

// ---- AVX2 float-path dot products ----
//
// Compiled with a target attribute and chosen at run time, so one binary runs on any
// x86-64 and uses AVX2+FMA where the CPU has them.
#ifdef CK_X86

// 32 bytes of int8 codes → 4 vectors of 8 floats, in element order.
CK_AVX2 static inline void widen_i8x32(__m256i q, __m256 out[4]) {
    __m128i lo = _mm256_castsi256_si128(q), hi = _mm256_extracti128_si256(q, 1);
    out[0] = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(lo));
    out[1] = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(lo, 8)));
    out[2] = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(hi));
    out[3] = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(hi, 8)));
}

// sum_j q[j]*x[j] over one block of 32 codes and 32 floats, into 8 lanes.
CK_AVX2 static inline __m256 block_dot(__m256i q, const float *x, __m256 acc) {
    __m256 f[4];
    widen_i8x32(q, f);
    for (int k = 0; k < 4; k++) acc = _mm256_fmadd_ps(f[k], _mm256_loadu_ps(x + 8 * k), acc);
    return acc;
}

CK_AVX2 static float dot_f32_avx2(const float *w, const float *x, int64_t n) {
    __m256 acc = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) acc = _mm256_fmadd_ps(_mm256_loadu_ps(w + i), _mm256_loadu_ps(x + i), acc);
    float s = hsum256(acc);
    for (; i < n; i++) s += w[i] * x[i];
    return s;
}

CK_AVX2 static float dot_f16_avx2(const uint16_t *w, const float *x, int64_t n) {
    __m256 acc = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 wf = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(w + i)));
        acc = _mm256_fmadd_ps(wf, _mm256_loadu_ps(x + i), acc);
    }
    float s = hsum256(acc);
    for (; i < n; i++) s += h2f(w[i]) * x[i];
    return s;
}

CK_AVX2 static float dot_q4_0_avx2(const block_q4_0 *b, const float *x, int64_t n) {
    __m256 acc = _mm256_setzero_ps();
    const __m256i eight = _mm256_set1_epi8(8);
    for (int64_t i = 0; i < n / QK; i++, x += QK) {
        __m256i q = _mm256_sub_epi8(unpack_nibbles(b[i].qs), eight);
        __m256 bd = block_dot(q, x, _mm256_setzero_ps());
        acc = _mm256_fmadd_ps(_mm256_set1_ps(h2f(b[i].d)), bd, acc);
    }
    return hsum256(acc);
}

CK_AVX2 static float dot_q4_1_avx2(const block_q4_1 *b, const float *x, int64_t n) {
    __m256 acc = _mm256_setzero_ps();
    for (int64_t i = 0; i < n / QK; i++, x += QK) {
        __m256 bd = block_dot(unpack_nibbles(b[i].qs), x, _mm256_setzero_ps());
        __m256 sx = _mm256_add_ps(_mm256_add_ps(_mm256_loadu_ps(x), _mm256_loadu_ps(x + 8)),
                                  _mm256_add_ps(_mm256_loadu_ps(x + 16), _mm256_loadu_ps(x + 24)));
        acc = _mm256_fmadd_ps(_mm256_set1_ps(h2f(b[i].d)), bd, acc);
        acc = _mm256_fmadd_ps(_mm256_set1_ps(h2f(b[i].m)), sx, acc);
    }
    return hsum256(acc);
}

CK_AVX2 static float dot_q8_0_avx2(const block_q8_0 *b, const float *x, int64_t n) {
    __m256 acc = _mm256_setzero_ps();
    for (int64_t i = 0; i < n / QK; i++, x += QK) {
        __m256i q = _mm256_loadu_si256((const __m256i *)b[i].qs);
        __m256 bd = block_dot(q, x, _mm256_setzero_ps());
        acc = _mm256_fmadd_ps(_mm256_set1_ps(h2f(b[i].d)), bd, acc);
    }
    return hsum256(acc);
}

// Float path on the repacked row layouts of quants_repack.c ([codes][d][m]): the same
// block arithmetic as above, reading codes and scales from their separate arrays.
CK_AVX2 static float dot_q4_1x_avx2(const uint8_t *row, const float *x, int64_t n) {
    const int64_t nb = n / QK;
    const uint16_t *d = (const uint16_t *)(row + nb * 16), *m = d + nb;
    __m256 acc = _mm256_setzero_ps();
    for (int64_t i = 0; i < nb; i++, x += QK) {
        __m256 bd = block_dot(unpack_nibbles(row + i * 16), x, _mm256_setzero_ps());
        __m256 sx = _mm256_add_ps(_mm256_add_ps(_mm256_loadu_ps(x), _mm256_loadu_ps(x + 8)),
                                  _mm256_add_ps(_mm256_loadu_ps(x + 16), _mm256_loadu_ps(x + 24)));
        acc = _mm256_fmadd_ps(_mm256_set1_ps(h2f(d[i])), bd, acc);
        acc = _mm256_fmadd_ps(_mm256_set1_ps(h2f(m[i])), sx, acc);
    }
    return hsum256(acc);
}

CK_AVX2 static float dot_q8_0x_avx2(const uint8_t *row, const float *x, int64_t n) {
    const int64_t nb = n / QK;
    const uint16_t *d = (const uint16_t *)(row + nb * 32);
    __m256 acc = _mm256_setzero_ps();
    for (int64_t i = 0; i < nb; i++, x += QK) {
        __m256 bd = block_dot(_mm256_loadu_si256((const __m256i *)(row + i * 32)), x, _mm256_setzero_ps());
        acc = _mm256_fmadd_ps(_mm256_set1_ps(h2f(d[i])), bd, acc);
    }
    return hsum256(acc);
}

int ck_has_avx2(void) {
    static int cached = -1;
    if (cached < 0) {
        __builtin_cpu_init();
        cached = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
                 __builtin_cpu_supports("f16c");
    }
    return cached;
}
#endif

float ck_dot_row_f32(int type, const void *row, const float *x, int64_t n) {
#ifdef CK_X86
    if (ck_has_avx2()) {
        switch (type) {
        case CK_TYPE_F32: return dot_f32_avx2(row, x, n);
        case CK_TYPE_F16: return dot_f16_avx2(row, x, n);
        case CK_TYPE_Q4_0: return dot_q4_0_avx2(row, x, n);
        case CK_TYPE_Q4_1: return dot_q4_1_avx2(row, x, n);
        case CK_TYPE_Q8_0: return dot_q8_0_avx2(row, x, n);
        case CK_TYPE_Q4_1X: return dot_q4_1x_avx2(row, x, n);
        case CK_TYPE_Q8_0X: return dot_q8_0x_avx2(row, x, n);
        default: break; // the rest use the scalar path
        }
    }
#endif
    return ck_dot_row_f32_ref(type, row, x, n);
}

void ck_matvec_f32(int type, const void *w, const float *x, float *y,
                   int64_t cols, int64_t row_begin, int64_t row_end) {
    const size_t row_bytes = (size_t)(cols / ck_type_block_size(type)) * ck_type_block_bytes(type);
    const uint8_t *base = w;
    for (int64_t r = row_begin; r < row_end; r++) {
        y[r] = ck_dot_row_f32(type, base + (size_t)r * row_bytes, x, cols);
    }
}
