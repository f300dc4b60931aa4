// Q5_0, Q5_1 and the K-quants Q4_K, Q5_K and Q6_K: block layouts, dequantization and scalar float-path
// dot products.
//
// The layouts are ggml's: the block structs in ggml/src/ggml-common.h and the decoding in
// dequantize_row_q5_0 / dequantize_row_q5_1 / dequantize_row_q4_K (with get_scale_min_k4) / dequantize_row_q5_K /
// dequantize_row_q6_K
// in ggml/src/ggml-quants.c. Each weight is decoded here exactly as there (same float
// operations in the same order), so the results are bit-identical to ggml's dequantizers.
//
// Here: the scalar float path (each dot product decodes weights on the fly, sums one block in
// a float accumulator and adds that to the row total: no temporary buffer of weights), and
// the codes and scales of Q5_0, Q4_K, Q5_K and Q6_K for the int8 copies that the fast kernels multiply
// (ck_make_int8_copy, quants_repack.c).
#include <assert.h>

#include "quants_internal.h"

#define QK5_0 32
#define QK_K 256

// ---- Q5_0 ----------------------------------------------------------------------------

// block_q5_0 (ggml-common.h): 32 weights in 22 bytes.
//   d      f16 scale
//   qh[4]  the fifth (high) bit of each 5-bit code: bit j of the little-endian uint32 qh
//          belongs to element j (0..31)
//   qs[16] the low 4 bits: element j < 16 in the low nibble of qs[j], element j + 16 in
//          the high nibble of qs[j]
// Weight: w = d * (q - 16), q the 5-bit code (0..31).
typedef struct {
    uint16_t d;
    uint8_t qh[4];
    uint8_t qs[QK5_0 / 2];
} block_q5_0;
static_assert(sizeof(block_q5_0) == 22, "block_q5_0 must be 22 bytes");

// The four qh bytes (Q5_0, Q5_1) as the little-endian uint32 that ggml memcpy's out of the block.
static uint32_t q5_high_bits(const uint8_t qh[4]) {
    return (uint32_t)qh[0] | (uint32_t)qh[1] << 8 | (uint32_t)qh[2] << 16 | (uint32_t)qh[3] << 24;
}

// Codes (0..31) of elements j and j + 16 of a Q5_0 or Q5_1 block, j in 0..15.
static inline void q5_codes(const uint8_t qs[16], uint32_t qh, int j, int *lo, int *hi) {
    const int high_lo = (int)((qh >> j) & 1u);         // fifth bit of element j
    const int high_hi = (int)((qh >> (j + 16)) & 1u);  // fifth bit of element j + 16
    *lo = (qs[j] & 0x0F) | (high_lo << 4);
    *hi = (qs[j] >> 4) | (high_hi << 4);
}

static uint32_t q5_0_high_bits(const block_q5_0 *b) { return q5_high_bits(b->qh); }

// A Q5_0 or Q5_1 block's 32 codes (0..31) in element order, for the int8 copies.
static void q5_block_codes(const uint8_t qs[16], const uint8_t qh[4], uint8_t *codes) {
    const uint32_t h = q5_high_bits(qh);
    for (int j = 0; j < 16; j++) {
        int lo, hi;
        q5_codes(qs, h, j, &lo, &hi);
        codes[j] = (uint8_t)lo;
        codes[j + 16] = (uint8_t)hi;
    }
}

// Signed codes (q - 16) of elements j and j + 16 of a block, j in 0..15.
static inline void q5_0_codes(const block_q5_0 *b, uint32_t qh, int j, int *lo, int *hi) {
    q5_codes(b->qs, qh, j, lo, hi);
    *lo -= 16;
    *hi -= 16;
}

void ck_dequant_q5_0(const void *x, float *y, int64_t n) {
    const block_q5_0 *blocks = x;
    const int64_t n_blocks = n / QK5_0;
    for (int64_t i = 0; i < n_blocks; i++) {
        const block_q5_0 *b = &blocks[i];
        const float d = ck_fp16_to_fp32(b->d);
        const uint32_t qh = q5_0_high_bits(b);
        float *out = y + i * QK5_0;
        for (int j = 0; j < QK5_0 / 2; j++) {
            int lo, hi;
            q5_0_codes(b, qh, j, &lo, &hi);
            out[j] = lo * d;
            out[j + QK5_0 / 2] = hi * d;
        }
    }
}

float ck_dot_q5_0_f32_ref(const void *x, const float *v, int64_t n) {
    const block_q5_0 *blocks = x;
    const int64_t n_blocks = n / QK5_0;
    float total = 0.0f;
    for (int64_t i = 0; i < n_blocks; i++) {
        const block_q5_0 *b = &blocks[i];
        const float d = ck_fp16_to_fp32(b->d);
        const uint32_t qh = q5_0_high_bits(b);
        const float *vb = v + i * QK5_0;
        float block_sum = 0.0f;
        for (int j = 0; j < QK5_0 / 2; j++) {
            int lo, hi;
            q5_0_codes(b, qh, j, &lo, &hi);
            block_sum += (lo * d) * vb[j];
            block_sum += (hi * d) * vb[j + QK5_0 / 2];
        }
        total += block_sum;
    }
    return total;
}

// A Q5_0 row as a block with a min holds it (the Q5_1X copy, quants_repack.c): per block its
// codes (0..31, in the row's element order) and w = mul·code − off with mul = d, off = 16·d
// (both exact: d is a half, 16 a power of two).
void ck_q5_0_sub_blocks(const void *x, int64_t n, uint8_t *codes, float *mul, float *off) {
    const block_q5_0 *blocks = x;
    for (int64_t i = 0; i < n / QK5_0; i++) {
        mul[i] = ck_fp16_to_fp32(blocks[i].d);
        off[i] = 16 * mul[i];
        q5_block_codes(blocks[i].qs, blocks[i].qh, codes + i * QK5_0);
    }
}

// ---- Q5_1 ----------------------------------------------------------------------------

// block_q5_1 (ggml-common.h): 32 weights in 24 bytes; llama.cpp writes it where a Q5_K row is
// not a multiple of 256 (the Q5_K_M files of models 640 or 896 wide).
//   d, m   f16 scale and min
//   qh[4]  the fifth bits, as Q5_0's
//   qs[16] the low 4 bits, as Q5_0's
// Weight: w = d * q + m, q the 5-bit code (0..31).
typedef struct {
    uint16_t d;
    uint16_t m;
    uint8_t qh[4];
    uint8_t qs[QK5_0 / 2];
} block_q5_1;
static_assert(sizeof(block_q5_1) == 24, "block_q5_1 must be 24 bytes");

void ck_dequant_q5_1(const void *x, float *y, int64_t n) {
    const block_q5_1 *blocks = x;
    for (int64_t i = 0; i < n / QK5_0; i++) {
        const block_q5_1 *b = &blocks[i];
        const float d = ck_fp16_to_fp32(b->d), m = ck_fp16_to_fp32(b->m);
        const uint32_t qh = q5_high_bits(b->qh);
        for (int j = 0; j < QK5_0 / 2; j++) {
            int lo, hi;
            q5_codes(b->qs, qh, j, &lo, &hi);
            y[i * QK5_0 + j] = lo * d + m;
            y[i * QK5_0 + j + QK5_0 / 2] = hi * d + m;
        }
    }
}

float ck_dot_q5_1_f32_ref(const void *x, const float *v, int64_t n) {
    const block_q5_1 *blocks = x;
    float total = 0.0f;
    for (int64_t i = 0; i < n / QK5_0; i++) {
        const block_q5_1 *b = &blocks[i];
        const float d = ck_fp16_to_fp32(b->d), m = ck_fp16_to_fp32(b->m);
        const uint32_t qh = q5_high_bits(b->qh);
        const float *vb = v + i * QK5_0;
        float block_sum = 0.0f;
        for (int j = 0; j < QK5_0 / 2; j++) {
            int lo, hi;
            q5_codes(b->qs, qh, j, &lo, &hi);
            block_sum += (lo * d + m) * vb[j];
            block_sum += (hi * d + m) * vb[j + QK5_0 / 2];
        }
        total += block_sum;
    }
    return total;
}

// A Q5_1 row as the Q5_1X copy holds it: codes 0..31 and w = mul·code − off with mul = d and
// off = −m (both halves already: the copy is exact).
void ck_q5_1_sub_blocks(const void *x, int64_t n, uint8_t *codes, float *mul, float *off) {
    const block_q5_1 *blocks = x;
    for (int64_t i = 0; i < n / QK5_0; i++) {
        mul[i] = ck_fp16_to_fp32(blocks[i].d);
        off[i] = -ck_fp16_to_fp32(blocks[i].m);
        q5_block_codes(blocks[i].qs, blocks[i].qh, codes + i * QK5_0);
    }
}

// ---- Q4_K ----------------------------------------------------------------------------

// block_q4_K (ggml-common.h): a super-block of 256 weights in 144 bytes, as 8 sub-blocks
// of 32 weights.
//   d          f16 super-block scale of the sub-block scales
//   dmin       f16 super-block scale of the sub-block mins
//   scales[12] eight 6-bit scales and eight 6-bit mins (decoded by scale_min_k4 below,
//              ggml's get_scale_min_k4)
//   qs[128]    4-bit codes in 4 groups of 32 bytes; group g holds sub-block 2g in the
//              low nibbles and sub-block 2g + 1 in the high nibbles
// Weight in sub-block s: w = (d * scale[s]) * q - (dmin * min[s]), q the 4-bit code.
typedef struct {
    uint16_t d;
    uint16_t dmin;
    uint8_t scales[12];
    uint8_t qs[QK_K / 2];
} block_q4_K;
static_assert(sizeof(block_q4_K) == 144, "block_q4_K must be 144 bytes");

// 6-bit scale and min of sub-block j (0..7), as ggml's get_scale_min_k4:
//   j < 4:  scale = low 6 bits of scales[j], min = low 6 bits of scales[j + 4];
//   j >= 4: the low 4 bits are the low / high nibble of scales[j + 4], and the top 2 bits
//           are the spare top 2 bits of scales[j - 4] (scale) and scales[j] (min).
static inline void scale_min_k4(int j, const uint8_t *scales, uint8_t *scale, uint8_t *min) {
    if (j < 4) {
        *scale = scales[j] & 63;
        *min = scales[j + 4] & 63;
    } else {
        *scale = (uint8_t)((scales[j + 4] & 0x0F) | ((scales[j - 4] >> 6) << 4));
        *min = (uint8_t)((scales[j + 4] >> 4) | ((scales[j] >> 6) << 4));
    }
}

// Multiplier and offset of sub-block j: w = mul * q - off.
static inline void q4_K_sub_block(const block_q4_K *b, float d, float dmin, int j,
                                  float *mul, float *off) {
    uint8_t scale, min;
    scale_min_k4(j, b->scales, &scale, &min);
    *mul = d * scale;
    *off = dmin * min;
}

void ck_dequant_q4_K(const void *x, float *y, int64_t n) {
    const block_q4_K *blocks = x;
    const int64_t n_blocks = n / QK_K;
    for (int64_t i = 0; i < n_blocks; i++) {
        const block_q4_K *b = &blocks[i];
        const float d = ck_fp16_to_fp32(b->d);
        const float dmin = ck_fp16_to_fp32(b->dmin);
        float *out = y + i * QK_K;
        for (int g = 0; g < 4; g++) {  // 4 groups of 64 weights, 32 bytes of qs each
            const uint8_t *q = b->qs + 32 * g;
            float mul_lo, off_lo, mul_hi, off_hi;
            q4_K_sub_block(b, d, dmin, 2 * g, &mul_lo, &off_lo);
            q4_K_sub_block(b, d, dmin, 2 * g + 1, &mul_hi, &off_hi);
            for (int l = 0; l < 32; l++) {
                out[64 * g + l] = mul_lo * (q[l] & 0x0F) - off_lo;
                out[64 * g + 32 + l] = mul_hi * (q[l] >> 4) - off_hi;
            }
        }
    }
}

float ck_dot_q4_K_f32_ref(const void *x, const float *v, int64_t n) {
    const block_q4_K *blocks = x;
    const int64_t n_blocks = n / QK_K;
    float total = 0.0f;
    for (int64_t i = 0; i < n_blocks; i++) {
        const block_q4_K *b = &blocks[i];
        const float d = ck_fp16_to_fp32(b->d);
        const float dmin = ck_fp16_to_fp32(b->dmin);
        const float *vb = v + i * QK_K;
        float block_sum = 0.0f;
        for (int g = 0; g < 4; g++) {
            const uint8_t *q = b->qs + 32 * g;
            const float *v_lo = vb + 64 * g, *v_hi = vb + 64 * g + 32;
            float mul_lo, off_lo, mul_hi, off_hi;
            q4_K_sub_block(b, d, dmin, 2 * g, &mul_lo, &off_lo);
            q4_K_sub_block(b, d, dmin, 2 * g + 1, &mul_hi, &off_hi);
            for (int l = 0; l < 32; l++) {
                block_sum += (mul_lo * (q[l] & 0x0F) - off_lo) * v_lo[l];
                block_sum += (mul_hi * (q[l] >> 4) - off_hi) * v_hi[l];
            }
        }
        total += block_sum;
    }
    return total;
}

// A Q4_K row as Q4_1 holds weights (the Q4_1X copy, quants_repack.c): per 32-weight
// sub-block s, its codes (0..15, in the row's element order) and w = mul[s]·code − off[s],
// mul and off computed as ck_dequant_q4_K computes them.
void ck_q4_K_sub_blocks(const void *x, int64_t n, uint8_t *codes, float *mul, float *off) {
    const block_q4_K *blocks = x;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const block_q4_K *b = &blocks[i];
        const float d = ck_fp16_to_fp32(b->d), dmin = ck_fp16_to_fp32(b->dmin);
        for (int g = 0; g < 4; g++) {
            const uint8_t *q = b->qs + 32 * g;
            uint8_t *lo = codes + i * QK_K + 64 * g, *hi = lo + 32;
            for (int l = 0; l < 32; l++) {
                lo[l] = q[l] & 0x0F;
                hi[l] = q[l] >> 4;
            }
            q4_K_sub_block(b, d, dmin, 2 * g, &mul[8 * i + 2 * g], &off[8 * i + 2 * g]);
            q4_K_sub_block(b, d, dmin, 2 * g + 1, &mul[8 * i + 2 * g + 1], &off[8 * i + 2 * g + 1]);
        }
    }
}

// ---- Q5_K ----------------------------------------------------------------------------

// block_q5_K (ggml-common.h): a super-block of 256 weights in 176 bytes, Q4_K's layout with
// a fifth bit per weight.
//   d, dmin, scales[12]  as Q4_K (scale_min_k4)
//   qh[32]     the fifth bits: bit 2g of qh[l] belongs to weight l of sub-block 2g, bit 2g + 1
//              to weight l of sub-block 2g + 1 (ggml's u1, u2 masks shifted by 2 per group)
//   qs[128]    the low 4 bits, as Q4_K's
// Weight in sub-block s: w = (d * scale[s]) * q - (dmin * min[s]), q the 5-bit code.
typedef struct {
    uint16_t d;
    uint16_t dmin;
    uint8_t scales[12];
    uint8_t qh[QK_K / 8];
    uint8_t qs[QK_K / 2];
} block_q5_K;
static_assert(sizeof(block_q5_K) == 176, "block_q5_K must be 176 bytes");

// Weight l (0..31) of sub-blocks 2g (lo) and 2g + 1 (hi), from ggml's dequantize_row_q5_K.
static inline void q5_K_pair(const block_q5_K *b, float d, float dmin, int g, int l, float *lo, float *hi) {
    uint8_t sc, m;
    scale_min_k4(2 * g, b->scales, &sc, &m);
    const float d1 = d * sc, m1 = dmin * m;
    scale_min_k4(2 * g + 1, b->scales, &sc, &m);
    const float d2 = d * sc, m2 = dmin * m;
    const uint8_t q = b->qs[32 * g + l], h = b->qh[l];
    *lo = d1 * ((q & 0xF) + ((h >> (2 * g)) & 1 ? 16 : 0)) - m1;
    *hi = d2 * ((q >> 4) + ((h >> (2 * g + 1)) & 1 ? 16 : 0)) - m2;
}

void ck_dequant_q5_K(const void *x, float *y, int64_t n) {
    const block_q5_K *blocks = x;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const block_q5_K *b = &blocks[i];
        const float d = ck_fp16_to_fp32(b->d), dmin = ck_fp16_to_fp32(b->dmin);
        float *out = y + i * QK_K;
        for (int g = 0; g < 4; g++)
            for (int l = 0; l < 32; l++) q5_K_pair(b, d, dmin, g, l, &out[64 * g + l], &out[64 * g + 32 + l]);
    }
}

float ck_dot_q5_K_f32_ref(const void *x, const float *v, int64_t n) {
    const block_q5_K *blocks = x;
    float total = 0.0f;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const block_q5_K *b = &blocks[i];
        const float d = ck_fp16_to_fp32(b->d), dmin = ck_fp16_to_fp32(b->dmin);
        const float *vb = v + i * QK_K;
        float block_sum = 0.0f;
        for (int g = 0; g < 4; g++) {
            for (int l = 0; l < 32; l++) {
                float lo, hi;
                q5_K_pair(b, d, dmin, g, l, &lo, &hi);
                block_sum += lo * vb[64 * g + l];
                block_sum += hi * vb[64 * g + 32 + l];
            }
        }
        total += block_sum;
    }
    return total;
}

// A Q5_K row as a block with a min holds it (the Q5_1X copy): as ck_q4_K_sub_blocks, codes 0..31.
void ck_q5_K_sub_blocks(const void *x, int64_t n, uint8_t *codes, float *mul, float *off) {
    const block_q5_K *blocks = x;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const block_q5_K *b = &blocks[i];
        const float d = ck_fp16_to_fp32(b->d), dmin = ck_fp16_to_fp32(b->dmin);
        for (int g = 0; g < 4; g++) {
            uint8_t *lo = codes + i * QK_K + 64 * g, *hi = lo + 32;
            for (int l = 0; l < 32; l++) {
                const uint8_t q = b->qs[32 * g + l], h = b->qh[l];
                lo[l] = (uint8_t)((q & 0xF) | ((h >> (2 * g)) & 1) << 4);
                hi[l] = (uint8_t)((q >> 4) | ((h >> (2 * g + 1)) & 1) << 4);
            }
            for (int s = 2 * g; s <= 2 * g + 1; s++) {
                uint8_t sc, m;
                scale_min_k4(s, b->scales, &sc, &m);
                mul[8 * i + s] = d * sc;
                off[8 * i + s] = dmin * m;
            }
        }
    }
}

// ---- Q6_K ----------------------------------------------------------------------------

// block_q6_K (ggml-common.h): a super-block of 256 weights in 210 bytes, as 16 sub-blocks
// of 16 weights.
//   ql[128]    low 4 bits of the 6-bit codes
//   qh[64]     high 2 bits of the codes, four per byte
//   scales[16] int8 scale of each sub-block
//   d          f16 super-block scale
// Weight: w = (d * scales[s]) * (q - 32), q the 6-bit code, s = element / 16.
// Each half h (elements 128h .. 128h + 127) uses ql[64h ..], qh[32h ..], scales[8h ..]; for
// l in 0..31 its elements l, l + 32, l + 64, l + 96 take their low bits from the low nibble
// of ql[l], the low nibble of ql[l + 32], the high nibble of ql[l], the high nibble of
// ql[l + 32], and their high bits from bits 0-1, 2-3, 4-5, 6-7 of qh[l].
typedef struct {
    uint8_t ql[QK_K / 2];
    uint8_t qh[QK_K / 4];
    int8_t scales[QK_K / 16];
    uint16_t d;
} block_q6_K;
static_assert(sizeof(block_q6_K) == 210, "block_q6_K must be 210 bytes");

// Signed codes (q - 32) of elements l, l + 32, l + 64, l + 96 of one half (ql, qh already
// offset to that half), l in 0..31.
static inline void q6_K_codes(const uint8_t *ql, const uint8_t *qh, int l, int q[4]) {
    q[0] = ((ql[l] & 0x0F) | (((qh[l] >> 0) & 3) << 4)) - 32;
    q[1] = ((ql[l + 32] & 0x0F) | (((qh[l] >> 2) & 3) << 4)) - 32;
    q[2] = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
    q[3] = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
}

void ck_dequant_q6_K(const void *x, float *y, int64_t n) {
    const block_q6_K *blocks = x;
    const int64_t n_blocks = n / QK_K;
    for (int64_t i = 0; i < n_blocks; i++) {
        const block_q6_K *b = &blocks[i];
        const float d = ck_fp16_to_fp32(b->d);
        for (int half = 0; half < 2; half++) {
            const uint8_t *ql = b->ql + 64 * half;
            const uint8_t *qh = b->qh + 32 * half;
            const int8_t *sc = b->scales + 8 * half;
            float *out = y + i * QK_K + 128 * half;
            for (int l = 0; l < 32; l++) {
                const int is = l / 16;  // sub-block of element l within its run of 32
                int q[4];
                q6_K_codes(ql, qh, l, q);
                for (int r = 0; r < 4; r++) out[l + 32 * r] = d * sc[is + 2 * r] * q[r];
            }
        }
    }
}

// A Q6_K row as the Q6_0X copy holds it (quants_repack.c): codes 0..63 in element order and
// each 16-weight sub-block's scale d·sc (exact in a float), so w = scale·(code − 32).
void ck_q6_K_sub_blocks(const void *x, int64_t n, uint8_t *codes, float *scale16) {
    const block_q6_K *blocks = x;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const block_q6_K *b = &blocks[i];
        const float d = ck_fp16_to_fp32(b->d);
        for (int s = 0; s < QK_K / 16; s++) scale16[i * (QK_K / 16) + s] = d * b->scales[s];
        for (int half = 0; half < 2; half++) {
            for (int l = 0; l < 32; l++) {
                int q[4];
                q6_K_codes(b->ql + 64 * half, b->qh + 32 * half, l, q);
                for (int r = 0; r < 4; r++) codes[i * QK_K + 128 * half + 32 * r + l] = (uint8_t)(q[r] + 32);
            }
        }
    }
}

float ck_dot_q6_K_f32_ref(const void *x, const float *v, int64_t n) {
    const block_q6_K *blocks = x;
    const int64_t n_blocks = n / QK_K;
    float total = 0.0f;
    for (int64_t i = 0; i < n_blocks; i++) {
        const block_q6_K *b = &blocks[i];
        const float d = ck_fp16_to_fp32(b->d);
        float block_sum = 0.0f;
        for (int half = 0; half < 2; half++) {
            const uint8_t *ql = b->ql + 64 * half;
            const uint8_t *qh = b->qh + 32 * half;
            const int8_t *sc = b->scales + 8 * half;
            const float *vh = v + i * QK_K + 128 * half;
            for (int l = 0; l < 32; l++) {
                const int is = l / 16;
                int q[4];
                q6_K_codes(ql, qh, l, q);
                for (int r = 0; r < 4; r++) block_sum += (d * sc[is + 2 * r] * q[r]) * vh[l + 32 * r];
            }
        }
        total += block_sum;
    }
    return total;
}
