// Q5_0 and the K-quants Q4_K and Q6_K: block layouts, dequantization and scalar float-path
// dot products. Layouts are ggml's (ggml-common.h; dequantize_row_* in ggml-quants.c).
// These types appear in other GGUF files, not in the default model, so only the scalar
// reference exists; the dot products dequantize one block at a time onto the stack.
#include <assert.h>

#include "quants_internal.h"

// Q5_0: 32 weights, w = d * (q - 16) with a 5-bit code q. The low 4 bits are packed like
// Q4_0 (element j < 16 in the low nibble of qs[j], element j + 16 in its high nibble); the
// fifth bit of element j is bit j of the little-endian uint32 qh.
typedef struct { uint16_t d; uint8_t qh[4]; uint8_t qs[16]; } block_q5_0;
static_assert(sizeof(block_q5_0) == 22, "block_q5_0 size");

// Q4_K: a super-block of 256 weights in 8 sub-blocks of 32. Each sub-block has a 6-bit
// scale and a 6-bit min, packed in scales[12] (see scale_min_k4); w = d·sc·q − dmin·m with a
// 4-bit q. qs holds 4 groups of 32 bytes: the low nibbles are sub-block 2g, the high
// nibbles sub-block 2g + 1.
typedef struct { uint16_t d; uint16_t dmin; uint8_t scales[12]; uint8_t qs[128]; } block_q4_K;
static_assert(sizeof(block_q4_K) == 144, "block_q4_K size");

// Q6_K: a super-block of 256 weights in 16 sub-blocks of 16, each with an int8 scale;
// w = d·scale·(q − 32) with a 6-bit q whose low 4 bits are in ql and high 2 bits in qh.
typedef struct { uint8_t ql[128]; uint8_t qh[64]; int8_t scales[16]; uint16_t d; } block_q6_K;
static_assert(sizeof(block_q6_K) == 210, "block_q6_K size");

void ck_dequant_q5_0(const void *x, float *y, int64_t n) {
    const block_q5_0 *b = x;
    for (int64_t i = 0; i < n / 32; i++, y += 32) {
        const float d = ck_fp16_to_fp32(b[i].d);
        const uint32_t qh = (uint32_t)b[i].qh[0] | (uint32_t)b[i].qh[1] << 8 |
                            (uint32_t)b[i].qh[2] << 16 | (uint32_t)b[i].qh[3] << 24;
        for (int j = 0; j < 16; j++) {
            const int hi0 = (qh >> j) & 1, hi1 = (qh >> (j + 16)) & 1;
            y[j] = d * (((b[i].qs[j] & 0x0f) | hi0 << 4) - 16);
            y[j + 16] = d * (((b[i].qs[j] >> 4) | hi1 << 4) - 16);
        }
    }
}

// Scale and min of sub-block j (0..7): sub-blocks 0–3 use the low 6 bits of bytes j and
// j + 4; sub-blocks 4–7 take their low 4 bits from byte j + 4 and their top 2 bits from the
// spare high bits of bytes j − 4 (scale) and j (min).
static void scale_min_k4(int j, const uint8_t *q, uint8_t *sc, uint8_t *m) {
    if (j < 4) {
        *sc = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *sc = (q[j + 4] & 0x0f) | ((q[j - 4] >> 6) << 4);
        *m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
    }
}

static void dequant_block_q4_K(const block_q4_K *b, float *y) {
    const float d = ck_fp16_to_fp32(b->d), dmin = ck_fp16_to_fp32(b->dmin);
    const uint8_t *q = b->qs;
    for (int g = 0; g < 4; g++, q += 32, y += 64) {
        uint8_t sc, m;
        scale_min_k4(2 * g, b->scales, &sc, &m);
        const float d1 = d * sc, m1 = dmin * m;
        scale_min_k4(2 * g + 1, b->scales, &sc, &m);
        const float d2 = d * sc, m2 = dmin * m;
        for (int l = 0; l < 32; l++) {
            y[l] = d1 * (q[l] & 0x0f) - m1;
            y[l + 32] = d2 * (q[l] >> 4) - m2;
        }
    }
}

void ck_dequant_q4_K(const void *x, float *y, int64_t n) {
    const block_q4_K *b = x;
    for (int64_t i = 0; i < n / 256; i++) dequant_block_q4_K(&b[i], y + i * 256);
}

// Each half (128 weights) of the super-block uses 64 bytes of ql, 32 of qh and 8 scales:
// element l of the four 32-runs takes ql[l] low, ql[l+32] low, ql[l] high, ql[l+32] high
// nibbles, and bits 0–1, 2–3, 4–5, 6–7 of qh[l].
static void dequant_block_q6_K(const block_q6_K *b, float *y) {
    const float d = ck_fp16_to_fp32(b->d);
    const uint8_t *ql = b->ql, *qh = b->qh;
    const int8_t *sc = b->scales;
    for (int half = 0; half < 2; half++, y += 128, ql += 64, qh += 32, sc += 8) {
        for (int l = 0; l < 32; l++) {
            const int is = l / 16;
            const int q1 = ((ql[l] & 0x0f) | ((qh[l] >> 0) & 3) << 4) - 32;
            const int q2 = ((ql[l + 32] & 0x0f) | ((qh[l] >> 2) & 3) << 4) - 32;
            const int q3 = ((ql[l] >> 4) | ((qh[l] >> 4) & 3) << 4) - 32;
            const int q4 = ((ql[l + 32] >> 4) | ((qh[l] >> 6) & 3) << 4) - 32;
            y[l] = d * sc[is] * q1;
            y[l + 32] = d * sc[is + 2] * q2;
            y[l + 64] = d * sc[is + 4] * q3;
            y[l + 96] = d * sc[is + 6] * q4;
        }
    }
}

void ck_dequant_q6_K(const void *x, float *y, int64_t n) {
    const block_q6_K *b = x;
    for (int64_t i = 0; i < n / 256; i++) dequant_block_q6_K(&b[i], y + i * 256);
}

static float dot_block(const float *w, const float *v, int n) {
    float s = 0;
    for (int i = 0; i < n; i++) s += w[i] * v[i];
    return s;
}

float ck_dot_q5_0_f32_ref(const void *x, const float *v, int64_t n) {
    const block_q5_0 *b = x;
    float tmp[32], s = 0;
    for (int64_t i = 0; i < n / 32; i++) {
        ck_dequant_q5_0(&b[i], tmp, 32);
        s += dot_block(tmp, v + i * 32, 32);
    }
    return s;
}

float ck_dot_q4_K_f32_ref(const void *x, const float *v, int64_t n) {
    const block_q4_K *b = x;
    float tmp[256], s = 0;
    for (int64_t i = 0; i < n / 256; i++) {
        dequant_block_q4_K(&b[i], tmp);
        s += dot_block(tmp, v + i * 256, 256);
    }
    return s;
}

float ck_dot_q6_K_f32_ref(const void *x, const float *v, int64_t n) {
    const block_q6_K *b = x;
    float tmp[256], s = 0;
    for (int64_t i = 0; i < n / 256; i++) {
        dequant_block_q6_K(&b[i], tmp);
        s += dot_block(tmp, v + i * 256, 256);
    }
    return s;
}
