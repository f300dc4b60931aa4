// Repacked Q4_1 and Q8_0 for the decode kernels. ggml interleaves each block's scales with
// its codes (Q4_1: 20-byte blocks of f16 d, f16 m, 16 bytes of nibbles), so a SIMD loop
// handles one 32-weight block at a time and converts two halves per block. Repacking each
// row at load time into [all codes][all d][all m] (same row size, so row pointers and
// memory traffic are unchanged) lets the AVX2 kernel take two blocks per 32-byte load and
// convert eight scales per instruction: about half the instructions per weight, which is
// what decoding needs to be limited by memory bandwidth rather than by the core.
//
// Row layouts (nb = cols / 32 blocks per row; nb must be even for the paired kernels):
//   Q4_1X: uint8 qs[nb][16] | f16 d[nb] | f16 m[nb]     (20·nb bytes, as Q4_1)
//   Q8_0X: int8  qs[nb][32] | f16 d[nb]                  (34·nb bytes, as Q8_0)
// Element order inside a block is ggml's. These types are internal: never in a file, and
// every function here takes whole rows.
#include <assert.h>
#include <math.h>
#include <string.h>

#include "ckernels.h"
#include "quants_internal.h"

#include "simd_x86.h"

#define QK 32

typedef struct { uint16_t d; uint16_t m; uint8_t qs[QK / 2]; } block_q4_1;
typedef struct { uint16_t d; int8_t qs[QK]; } block_q8_0;

int ck_repacked_type(int type, int64_t cols) {
    if ((cols / QK) % 2 != 0) return type;
    if (type == CK_TYPE_Q4_1) return CK_TYPE_Q4_1X;
    if (type == CK_TYPE_Q8_0) return CK_TYPE_Q8_0X;
    return type;
}

void ck_repack_rows(int type, const void *src, void *dst, int64_t cols, int64_t rows) {
    const int64_t nb = cols / QK;
    for (int64_t r = 0; r < rows; r++) {
        if (type == CK_TYPE_Q4_1) {
            const block_q4_1 *b = (const block_q4_1 *)src + r * nb;
            uint8_t *row = (uint8_t *)dst + r * nb * 20;
            uint16_t *d = (uint16_t *)(row + nb * 16), *m = d + nb;
            for (int64_t i = 0; i < nb; i++) {
                memcpy(row + i * 16, b[i].qs, 16);
                d[i] = b[i].d;
                m[i] = b[i].m;
            }
        } else if (type == CK_TYPE_Q8_0) {
            const block_q8_0 *b = (const block_q8_0 *)src + r * nb;
            uint8_t *row = (uint8_t *)dst + r * nb * 34;
            uint16_t *d = (uint16_t *)(row + nb * 32);
            for (int64_t i = 0; i < nb; i++) {
                memcpy(row + i * 32, b[i].qs, 32);
                d[i] = b[i].d;
            }
        }
    }
}

// ---- scalar: dequantization and both dot products ----

// Block i of a repacked row of nb blocks into y[32]: its scales sit at the row's end, so
// the row length is needed.
static void dequant_block(int type, const uint8_t *row, int64_t nb, int64_t i, float *y) {
    if (type == CK_TYPE_Q4_1X) {
        const uint16_t *d = (const uint16_t *)(row + nb * 16), *m = d + nb;
        const float di = ck_fp16_to_fp32(d[i]), mi = ck_fp16_to_fp32(m[i]);
        for (int j = 0; j < 16; j++) {
            y[j] = di * (row[i * 16 + j] & 0x0f) + mi;
            y[j + 16] = di * (row[i * 16 + j] >> 4) + mi;
        }
    } else {
        const uint16_t *d = (const uint16_t *)(row + nb * 32);
        const float di = ck_fp16_to_fp32(d[i]);
        for (int j = 0; j < QK; j++) y[j] = di * (int8_t)row[i * 32 + j];
    }
}

void ck_dequant_repacked(int type, const void *row, float *y, int64_t n) {
    for (int64_t i = 0; i < n / QK; i++) dequant_block(type, row, n / QK, i, y + i * QK);
}

float ck_dot_repacked_f32_ref(int type, const void *row, const float *x, int64_t n) {
    float tmp[QK], s = 0;
    for (int64_t i = 0; i < n / QK; i++) {
        dequant_block(type, row, n / QK, i, tmp);
        float acc = 0;
        for (int j = 0; j < QK; j++) acc += tmp[j] * x[i * QK + j];
        s += acc;
    }
    return s;
}

float ck_dot_repacked_q8_ref(int type, const void *row, const ck_block_q8 *x, int64_t n) {
    const int64_t nb = n / QK;
    const uint8_t *qs = row;
    float s = 0;
    if (type == CK_TYPE_Q4_1X) {
        const uint16_t *d = (const uint16_t *)(qs + nb * 16), *m = d + nb;
        for (int64_t i = 0; i < nb; i++) {
            int acc = 0;
            for (int j = 0; j < 16; j++) {
                acc += (qs[i * 16 + j] & 0x0f) * x[i].qs[j] + (qs[i * 16 + j] >> 4) * x[i].qs[j + 16];
            }
            s += ck_fp16_to_fp32(d[i]) * x[i].d * (float)acc + ck_fp16_to_fp32(m[i]) * x[i].s;
        }
    } else {
        const uint16_t *d = (const uint16_t *)(qs + nb * 32);
        for (int64_t i = 0; i < nb; i++) {
            int acc = 0;
            for (int j = 0; j < QK; j++) acc += (int8_t)qs[i * 32 + j] * x[i].qs[j];
            s += ck_fp16_to_fp32(d[i]) * x[i].d * (float)acc;
        }
    }
    return s;
}

// ---- AVX2: one row at a time ----
#ifdef CK_X86

// Rows are taken one at a time, start to end, and prefetched this many rows ahead. The
// kernels used to interleave four rows (one block pair of each in turn) to share x's
// loads: from DRAM that ran far below the bandwidth, row by row is a plain sequential
// stream (a token's matrices on two threads, AVX2 kernels: ~185 against ~245 t/s in a
// microbenchmark, 2026-12-03; the VNNI kernels gained alike).
#define PREFETCH_ROWS 4

// x's per-block scales and offsets as f32 arrays, so eight can be loaded at once.
typedef struct { float d[512], s[512]; } x_scales;
static_assert(sizeof(x_scales) == 4096, "x_scales size");

// Per-row block scales sd[b] = d_b · xd_b, converted eight at a time before the dot
// loop, so the loop itself only loads them. Converting them inside the loop, with a
// lane selector built from the loop counter, cost more than the dot products: the kernel
// ran at 4 weights per cycle, compute-bound even with the matrix in L2 (8 GB/s on one core
// against 17 GB/s of DRAM bandwidth). For Q4_1X, returns Σ m_b · xs_b (the mins' share).
CK_AVX2 static inline float row_scales(const uint8_t *row, int64_t nb, int has_min, size_t code_bytes,
                                       const x_scales *xs, float *sd) {
    const uint16_t *d = (const uint16_t *)(row + nb * code_bytes), *m = d + nb;
    __m256 mins = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 8 <= nb; i += 8) {
        const __m256 dv = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(d + i)));
        _mm256_storeu_ps(sd + i, _mm256_mul_ps(dv, _mm256_loadu_ps(xs->d + i)));
        if (has_min) {
            const __m256 mv = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(m + i)));
            mins = _mm256_fmadd_ps(mv, _mm256_loadu_ps(xs->s + i), mins);
        }
    }
    float tail = 0;
    for (; i < nb; i++) {
        sd[i] = h2f(d[i]) * xs->d[i];
        if (has_min) tail += h2f(m[i]) * xs->s[i];
    }
    return hsum256(mins) + tail;
}

// One row of Q4_1X times x, without the mins. For a block pair (b, b+1) the 32 code bytes
// hold low nibbles = elements 0–15 and high nibbles = elements 16–31 of each block, so x is
// regrouped per pair: lo = [x_b 0–15 | x_b+1 0–15], hi = [x_b 16–31 | x_b+1 16–31].
CK_AVX2 static inline float row_q4_1x(const uint8_t *row, size_t row_bytes, const ck_block_q8 *x, int64_t nb,
                                      const float *sd) {
    const __m256i mask = _mm256_set1_epi8(0x0f), ones = _mm256_set1_epi16(1);
    const __m256i pair = _mm256_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1);  // lanes 0–3: block b, 4–7: b+1
    __m256 acc = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; b += 2) {
        const __m256i x0 = _mm256_loadu_si256((const __m256i *)x[b].qs);
        const __m256i x1 = _mm256_loadu_si256((const __m256i *)x[b + 1].qs);
        const __m256i xlo = _mm256_permute2x128_si256(x0, x1, 0x20);
        const __m256i xhi = _mm256_permute2x128_si256(x0, x1, 0x31);
        // Past the matrix end the prefetch is a harmless hint: prefetches never fault.
        _mm_prefetch((const char *)(row + PREFETCH_ROWS * row_bytes + b * 16), _MM_HINT_T0);
        const __m256i v = _mm256_loadu_si256((const __m256i *)(row + b * 16));
        const __m256i lo = _mm256_and_si256(v, mask);
        const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), mask);
        const __m256i s16 = _mm256_add_epi16(_mm256_maddubs_epi16(lo, xlo), _mm256_maddubs_epi16(hi, xhi));
        const __m256 f = _mm256_cvtepi32_ps(_mm256_madd_epi16(s16, ones));
        const __m256 two = _mm256_castpd_ps(_mm256_broadcast_sd((const double *)(sd + b)));
        acc = _mm256_fmadd_ps(f, _mm256_permutevar8x32_ps(two, pair), acc);
    }
    return hsum256(acc);
}

CK_AVX2 static void matvec_q4_1x(const uint8_t *w, const ck_block_q8 *x, const x_scales *xs,
                                 float *y, int64_t nb, int64_t r0, int64_t r1) {
    const size_t row_bytes = (size_t)nb * 20;
    float sd[512];
    for (int64_t r = r0; r < r1; r++) {
        const uint8_t *row = w + (size_t)r * row_bytes;
        const float mins = row_scales(row, nb, 1, 16, xs, sd);
        y[r] = row_q4_1x(row, row_bytes, x, nb, sd) + mins;
    }
}

// One row of Q8_0X times x. maddubs multiplies unsigned by signed bytes, so |w| is the
// unsigned side and x takes w's sign. (Not the other way round, though |x| could be shared
// by the rows: a code of −128, which ggml never writes but a file may hold, has no positive
// int8 twin; x is quantized to ±127.)
CK_AVX2 static inline float row_q8_0x(const uint8_t *row, size_t row_bytes, const ck_block_q8 *x, int64_t nb,
                                      const float *sd) {
    const __m256i ones = _mm256_set1_epi16(1);
    __m256 acc = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const __m256i xv = _mm256_loadu_si256((const __m256i *)x[b].qs);
        _mm_prefetch((const char *)(row + PREFETCH_ROWS * row_bytes + b * 32), _MM_HINT_T0);
        const __m256i wv = _mm256_loadu_si256((const __m256i *)(row + b * 32));
        const __m256i p16 = _mm256_maddubs_epi16(_mm256_sign_epi8(wv, wv), _mm256_sign_epi8(xv, wv));
        const __m256 f = _mm256_cvtepi32_ps(_mm256_madd_epi16(p16, ones));
        acc = _mm256_fmadd_ps(f, _mm256_broadcast_ss(sd + b), acc);
    }
    return hsum256(acc);
}

CK_AVX2 static void matvec_q8_0x(const uint8_t *w, const ck_block_q8 *x, const x_scales *xs,
                                 float *y, int64_t nb, int64_t r0, int64_t r1) {
    const size_t row_bytes = (size_t)nb * 34;
    float sd[512];
    for (int64_t r = r0; r < r1; r++) {
        const uint8_t *row = w + (size_t)r * row_bytes;
        row_scales(row, nb, 0, 32, xs, sd);
        y[r] = row_q8_0x(row, row_bytes, x, nb, sd);
    }
}

#endif

void ck_matvec_repacked_q8(int type, const void *w, const ck_block_q8 *x, float *y,
                           int64_t cols, int64_t r0, int64_t r1) {
    const int64_t nb = cols / QK;
    if (ck_matvec_repacked_q8_vnni(type, w, x, y, cols, r0, r1)) return;
#ifdef CK_X86
    if (ck_has_avx2() && nb <= 504) {
        x_scales xs;
        for (int64_t i = 0; i < nb; i++) { xs.d[i] = x[i].d; xs.s[i] = x[i].s; }
        for (int64_t i = nb; i < nb + 8; i++) { xs.d[i] = 0; xs.s[i] = 0; }
        if (type == CK_TYPE_Q4_1X) matvec_q4_1x(w, x, &xs, y, nb, r0, r1);
        else matvec_q8_0x(w, x, &xs, y, nb, r0, r1);
        return;
    }
#endif
    const size_t row_bytes = (size_t)nb * (type == CK_TYPE_Q4_1X ? 20 : 34);
    for (int64_t r = r0; r < r1; r++) y[r] = ck_dot_repacked_q8_ref(type, (const uint8_t *)w + r * row_bytes, x, cols);
}
