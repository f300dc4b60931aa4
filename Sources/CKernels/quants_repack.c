// Repacked Q4_1 and Q8_0 for the decode kernels. ggml interleaves each block's scales with
// its codes (Q4_1: 20-byte blocks of f16 d, f16 m, 16 bytes of nibbles), so a SIMD loop
// handles one 32-weight block at a time and converts two halves per block. Repacking each
// row at load time into [all codes][all d][all m] (same row size, so row pointers and
// memory traffic are unchanged) lets the AVX2 kernel take two blocks per 32-byte load and
// convert eight scales per instruction: about half the instructions per weight, which is
// what decoding needs to be limited by memory bandwidth rather than by the core.
//
// Row layouts (nb = cols / 32 blocks per row; nb must be even for the paired kernels):
//   Q4_1X: uint8 qs[nb][16] | f16 d[nb] | f16 m[nb]                  (20·nb bytes, as Q4_1)
//   Q5_1X: uint8 qs[nb][16] | f16 d[nb] | f16 m[nb] | uint8 qh[4·nb]  (24·nb bytes)
//   Q6_0X: uint8 qs[nb][16] | f16 d[nb] | f16 e[nb] | uint8 planes[8·nb]  (28·nb bytes)
//   Q8_0X: int8  qs[nb][32] | f16 d[nb]                               (34·nb bytes, as Q8_0)
// Element order inside a block is ggml's Q4_1's: byte j holds element j in its low nibble and
// element j + 16 in its high one; w = d·code + m. Q5_1X is Q4_1X with a fifth bit per code,
// laid out for the kernels' steps of four blocks (two for a row's last pair when nb % 4 = 2):
// for blocks b..b+c−1 of a step, qh[4b …] holds c 16-bit masks of elements 0–15 (block b
// first), then c masks of elements 16–31, so one 64-bit load is the high bits of the 64 low
// nibbles that the VNNI kernel loads at once, and a 32-bit half is those of an AVX2 pair.
// Q6_0X holds Q6_K's sub-blocks of 16: w = d·(code − 32) for elements 0–15 of a block and
// e·(code − 32) for 16–31, codes 0..63 whose bits 4 and 5 are bit planes, per step of four
// blocks b..b+3: planes[8b …] holds four 64-bit masks, bit 4 of elements 0–15 (block b
// first, 16 bits a block), bit 4 of elements 16–31, then bit 5 of each; its rows are a
// multiple of eight blocks (Q6_K's 256 weights).
// These types are internal: never in a file, and every function here takes whole rows.
#include <assert.h>
#include <math.h>
#include <stdlib.h>
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

// The int8 kernels' copy of a type that has none of its own (Gemma 3's block matrices:
// Q5_0, Q4_K, Q6_K; Q5_K and Q5_1 in other files), made once at load; the float path keeps the
// file's weights.
// - Q4_K → Q4_1X, Q5_K → Q5_1X: a K-quant sub-block is a block with a min (w = mul·q − off)
//   whose scale and min are 6-bit multiples of the super-block's d and dmin; the copy rounds
//   mul and −off to f16, so a weight moves by at most 2^-11·(q_max·|mul| + |off|): a few
//   hundredths of its own step.
// - Q5_0 → Q5_1X: d kept and m = −16·d, both exact: the copy is the file's weights; Q5_1 is
//   Q5_1X's own block (d and m kept).
// - Q6_K → Q6_0X: each sub-block of 16 keeps its codes and its scale d·sc rounded to f16, so a
//   weight moves by at most 2^-11·32·|scale|.
// (A requantization to Q8_0X, which these replaced, moved each weight by up to half a step of
// its block's int8 grid, and read 8.5 bits a weight where these read 5 to 7.)
int ck_int8_copy_type(int type) {
    switch (type) {
    case CK_TYPE_Q4_K: return CK_TYPE_Q4_1X;
    case CK_TYPE_Q5_0: case CK_TYPE_Q5_1: case CK_TYPE_Q5_K: return CK_TYPE_Q5_1X;
    case CK_TYPE_Q6_K: return CK_TYPE_Q6_0X;
    default: return type;
    }
}

// v as f16 in *h; 0 if it does not fit (a crafted file's scale of 60000 times a 6-bit
// multiplier): the caller then makes no copy.
static int put_half(float v, uint16_t *h) {
    *h = ck_fp32_to_fp16(v);
    return isfinite(ck_fp16_to_fp32(*h));
}

// Byte offset in a Q5_1X row's qh of the high-bit mask of the pair of blocks b, b+1 (b even):
// elements 0–15, or 16–31 when `upper`. Its 32 bits are the pair's two 16-bit masks.
static inline int64_t q5_1x_pair_mask(int64_t nb, int64_t b, int upper) {
    const int64_t first = b / 4 * 4, c = nb - first < 4 ? nb - first : 4;
    return 4 * first + (upper ? 2 * c : 0) + 2 * (b - first);
}

// A row of codes (0..15 for Q4_1X, 0..31 for Q5_1X) with w = mul·code − off per block.
static int x1_row(int copy, const uint8_t *codes, const float *mul, const float *off, int64_t nb, uint8_t *row) {
    uint16_t *d = (uint16_t *)(row + nb * 16), *m = d + nb;
    uint8_t *qh = row + nb * 20;
    if (copy == CK_TYPE_Q5_1X) memset(qh, 0, (size_t)nb * 4);
    for (int64_t i = 0; i < nb; i++) {
        const uint8_t *c = codes + i * QK;
        for (int j = 0; j < 16; j++) row[i * 16 + j] = (uint8_t)((c[j] & 0x0f) | (c[j + 16] & 0x0f) << 4);
        if (copy == CK_TYPE_Q5_1X) {
            for (int j = 0; j < QK; j++) {
                const int64_t at = q5_1x_pair_mask(nb, i & ~(int64_t)1, j >= 16) + 2 * (i & 1) + (j & 15) / 8;
                qh[at] |= (uint8_t)((c[j] >> 4) << (j & 7));
            }
        }
        if (!put_half(mul[i], &d[i]) || !put_half(-off[i], &m[i])) return 0;
    }
    return 1;
}

// Byte offset in a Q6_0X row's planes of the 64-bit mask of bit `bit` (4 or 5) of elements
// 0–15 (or 16–31 when `upper`) of the step of blocks b..b+3, b % 4 = 0.
static inline int64_t q6_0x_plane(int64_t b, int upper, int bit) {
    return 8 * b + (upper ? 8 : 0) + (bit == 5 ? 16 : 0);
}

// A Q6_0X row from codes 0..63 and scales per 16 weights (w = scale·(code − 32)).
static int q6_0x_row(const uint8_t *codes, const float *scale16, int64_t nb, uint8_t *row) {
    uint16_t *d = (uint16_t *)(row + nb * 16), *e = d + nb;
    uint8_t *planes = row + nb * 20;
    memset(planes, 0, (size_t)nb * 8);
    for (int64_t i = 0; i < nb; i++) {
        const uint8_t *c = codes + i * QK;
        for (int j = 0; j < 16; j++) row[i * 16 + j] = (uint8_t)((c[j] & 0x0f) | (c[j + 16] & 0x0f) << 4);
        for (int j = 0; j < QK; j++) {
            const int64_t k = (i % 4) * 16 + (j & 15);   // the bit of this element in its step's masks
            for (int bit = 4; bit <= 5; bit++) {
                planes[q6_0x_plane(i / 4 * 4, j >= 16, bit) + k / 8] |= (uint8_t)(((c[j] >> bit) & 1) << (k % 8));
            }
        }
        if (!put_half(scale16[2 * i], &d[i]) || !put_half(scale16[2 * i + 1], &e[i])) return 0;
    }
    return 1;
}

int ck_make_int8_copy(int type, const void *src, void *dst, int64_t cols, int64_t rows) {
    const int copy = ck_int8_copy_type(type);
    if (copy == type || cols % (2 * QK) != 0 || cols % ck_type_block_size(type) != 0) return -1;
    if (copy == CK_TYPE_Q6_0X && cols % (8 * QK) != 0) return -1;
    const size_t src_row = ck_type_block_bytes(type) * (size_t)(cols / ck_type_block_size(type));
    const size_t dst_row = ck_type_block_bytes(copy) * (size_t)(cols / QK);
    // Per row: the codes, and a scale and a min per 32 weights (Q6_K: a scale per 16, in the same floats).
    float *mul = malloc(2 * (size_t)(cols / QK) * sizeof(float) + (size_t)cols);
    if (!mul) return -1;
    float *off = mul + cols / QK, *scale16 = mul;
    uint8_t *codes = (uint8_t *)(off + cols / QK);
    int ok = 1;
    for (int64_t r = 0; r < rows && ok; r++) {
        const uint8_t *s = (const uint8_t *)src + r * src_row;
        uint8_t *row = (uint8_t *)dst + r * dst_row;
        switch (type) {
        case CK_TYPE_Q4_K: ck_q4_K_sub_blocks(s, cols, codes, mul, off); break;
        case CK_TYPE_Q5_K: ck_q5_K_sub_blocks(s, cols, codes, mul, off); break;
        case CK_TYPE_Q5_0: ck_q5_0_sub_blocks(s, cols, codes, mul, off); break;
        case CK_TYPE_Q5_1: ck_q5_1_sub_blocks(s, cols, codes, mul, off); break;
        case CK_TYPE_Q6_K: ck_q6_K_sub_blocks(s, cols, codes, scale16); break;
        default: break;
        }
        ok = copy == CK_TYPE_Q6_0X ? q6_0x_row(codes, scale16, cols / QK, row) : x1_row(copy, codes, mul, off, cols / QK, row);
    }
    free(mul);
    return ok ? 0 : -1;
}

// ---- scalar: dequantization and both dot products ----

// Code j (0..31) of block i of a Q4_1X or Q5_1X row of nb blocks.
static inline int x1_code(int type, const uint8_t *row, int64_t nb, int64_t i, int j) {
    const int nibble = j < 16 ? row[i * 16 + j] & 0x0f : row[i * 16 + j - 16] >> 4;
    if (type != CK_TYPE_Q5_1X) return nibble;
    const int64_t at = q5_1x_pair_mask(nb, i & ~(int64_t)1, j >= 16) + 2 * (i & 1) + (j & 15) / 8;
    return nibble | ((row[nb * 20 + at] >> (j & 7)) & 1) << 4;
}

// Code j (0..63) of block i of a Q6_0X row of nb blocks.
static inline int q6_0x_code(const uint8_t *row, int64_t nb, int64_t i, int j) {
    const int nibble = j < 16 ? row[i * 16 + j] & 0x0f : row[i * 16 + j - 16] >> 4;
    const uint8_t *planes = row + nb * 20;
    const int64_t k = (i % 4) * 16 + (j & 15), b = i / 4 * 4;
    const int bit4 = (planes[q6_0x_plane(b, j >= 16, 4) + k / 8] >> (k % 8)) & 1;
    const int bit5 = (planes[q6_0x_plane(b, j >= 16, 5) + k / 8] >> (k % 8)) & 1;
    return nibble | bit4 << 4 | bit5 << 5;
}

// Block i of a repacked row of nb blocks into y[32]: its scales sit at the row's end, so
// the row length is needed.
static void dequant_block(int type, const uint8_t *row, int64_t nb, int64_t i, float *y) {
    if (type == CK_TYPE_Q6_0X) {
        const uint16_t *d = (const uint16_t *)(row + nb * 16), *e = d + nb;
        const float lo = ck_fp16_to_fp32(d[i]), hi = ck_fp16_to_fp32(e[i]);
        for (int j = 0; j < QK; j++) y[j] = (j < 16 ? lo : hi) * (q6_0x_code(row, nb, i, j) - 32);
    } else if (type == CK_TYPE_Q4_1X || type == CK_TYPE_Q5_1X) {
        const uint16_t *d = (const uint16_t *)(row + nb * 16), *m = d + nb;
        const float di = ck_fp16_to_fp32(d[i]), mi = ck_fp16_to_fp32(m[i]);
        for (int j = 0; j < QK; j++) y[j] = di * x1_code(type, row, nb, i, j) + mi;
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
    if (type == CK_TYPE_Q6_0X) {
        const uint16_t *d = (const uint16_t *)(qs + nb * 16), *e = d + nb;
        for (int64_t i = 0; i < nb; i++) {
            int lo = 0, hi = 0;
            for (int j = 0; j < 16; j++) {
                lo += (q6_0x_code(qs, nb, i, j) - 32) * x[i].qs[j];
                hi += (q6_0x_code(qs, nb, i, j + 16) - 32) * x[i].qs[j + 16];
            }
            s += x[i].d * (ck_fp16_to_fp32(d[i]) * (float)lo + ck_fp16_to_fp32(e[i]) * (float)hi);
        }
    } else if (type == CK_TYPE_Q4_1X || type == CK_TYPE_Q5_1X) {
        const uint16_t *d = (const uint16_t *)(qs + nb * 16), *m = d + nb;
        for (int64_t i = 0; i < nb; i++) {
            int acc = 0;
            for (int j = 0; j < QK; j++) acc += x1_code(type, qs, nb, i, j) * x[i].qs[j];
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
// microbenchmark; the VNNI kernels gained alike).
#define PREFETCH_ROWS 4

// x as every row of a call meets it, prepared once per call: its per-block scales and
// offsets as f32 arrays (eight load at once), and for Q4_1X its codes regrouped per block
// pair (see row_q4_1x). Regrouping x for every row cost two shuffles per pair of blocks.
typedef struct {
    float d[512], s[512];
    __m256i pairs[512];       // Q4_1X, Q5_1X, Q6_0X, per block pair p: [2p] = lo, [2p + 1] = hi
    __m256i corr[512];        // Q6_0X: −32 · the sum of each int32 lane's four bytes of pairs
} x_prepared;
static_assert(sizeof(x_prepared) == 36864, "x_prepared size");

// The kernels below sum eight blocks' integer dot products into one vector of eight lanes
// (two levels of hadd) and apply the eight blocks' scales with one convert and one FMA,
// where a block at a time took a convert, a broadcast, a shuffle and an FMA per block
// (AVX2-only host: one thread, matrix in L2, Q4_1X 13–17 GB/s, Q8_0X 17 GB/s —
// decoding was bound by these instructions, not by memory). Blocks past the last full eight
// go one pair (Q4_1X) or one block (Q8_0X) at a time.

// Lane order of hadd(hadd(a, b), hadd(c, d)) for pairs a–d of blocks (b0 b1)(b2 b3)…: the
// 128-bit halves hold the even and the odd blocks; this permutation puts them in order.
#define PAIR_SUMS_IN_ORDER _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7)

// `value` in byte k where bit k of the 32 bits at `at` is set: a Q5_1X pair's fifth bits, a
// Q6_0X pair's fifth or sixth (as ggml's bytes_from_bits_32: byte k takes byte k / 8 of the
// bits, then tests bit k % 8).
CK_AVX2 static inline __m256i bits_as_bytes(const uint8_t *at, char value) {
    uint32_t bits;
    memcpy(&bits, at, sizeof bits);
    const __m256i spread = _mm256_shuffle_epi8(_mm256_set1_epi32((int)bits),
        _mm256_setr_epi64x(0, 0x0101010101010101, 0x0202020202020202, 0x0303030303030303));
    const __m256i bit = _mm256_set1_epi64x((long long)0x8040201008040201ULL);
    return _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(spread, bit), bit), _mm256_set1_epi8(value));
}

// One 32-byte load of Q4_1X or Q5_1X codes (blocks b, b+1) times the prepared pair: eight
// int32 lanes, four per block. Low nibbles are elements 0–15 of a block and high nibbles
// 16–31, so x is regrouped per pair: lo = [x_b 0–15 | x_b+1 0–15], hi = [x_b 16–31 | x_b+1
// 16–31]. Q5_1X (qh its row's high bits, NULL for Q4_1X) adds the fifth bits; maddubs' pair
// sums stay below 2·31·127, far from int16's saturation.
CK_AVX2 static inline __attribute__((always_inline)) __m256i x1_pair(const uint8_t *codes, const __m256i *xp,
                                                                     const uint8_t *qh, int64_t nb, int64_t b) {
    const __m256i mask = _mm256_set1_epi8(0x0f);
    const __m256i v = _mm256_loadu_si256((const __m256i *)codes);
    __m256i lo = _mm256_and_si256(v, mask);
    __m256i hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), mask);
    if (qh) {
        lo = _mm256_or_si256(lo, bits_as_bytes(qh + q5_1x_pair_mask(nb, b, 0), 0x10));
        hi = _mm256_or_si256(hi, bits_as_bytes(qh + q5_1x_pair_mask(nb, b, 1), 0x10));
    }
    const __m256i s16 = _mm256_add_epi16(_mm256_maddubs_epi16(lo, xp[0]), _mm256_maddubs_epi16(hi, xp[1]));
    return _mm256_madd_epi16(s16, _mm256_set1_epi16(1));
}

// Two f16 values into the low lanes of a vector, the rest 0.
CK_AVX2 static inline __m128i two_halves(const uint16_t *h) {
    int32_t bits;
    memcpy(&bits, h, sizeof bits);
    return _mm_cvtsi32_si128(bits);
}

// One row of Q4_1X (five = 0) or Q5_1X (five = 1) times x, mins included:
// Σ_b d_b·xd_b·(codes·x)_b + m_b·xs_b.
CK_AVX2 static inline __attribute__((always_inline)) float row_x1(const uint8_t *row, size_t row_bytes, const x_prepared *xp,
                                                                  int64_t nb, const int five) {
    const uint16_t *d = (const uint16_t *)(row + nb * 16), *m = d + nb;
    const uint8_t *qh = five ? row + nb * 20 : NULL;
    const uint8_t *ahead = row + PREFETCH_ROWS * row_bytes;
    __m256 acc = _mm256_setzero_ps(), mins = _mm256_setzero_ps();
    int64_t b = 0;
    for (; b + 8 <= nb; b += 8) {
        // Eight blocks are 160 (Q5_1X: 192) bytes of the row: three lines ahead.
        // Past the matrix end a prefetch is a harmless hint: prefetches never fault.
        _mm_prefetch((const char *)(ahead + b * 20), _MM_HINT_T0);
        _mm_prefetch((const char *)(ahead + b * 20 + 64), _MM_HINT_T0);
        _mm_prefetch((const char *)(ahead + b * 20 + 128), _MM_HINT_T0);
        if (five) _mm_prefetch((const char *)(ahead + nb * 20 + b * 4), _MM_HINT_T0);
        const __m256i s01 = x1_pair(row + b * 16, xp->pairs + b, qh, nb, b);
        const __m256i s23 = x1_pair(row + b * 16 + 32, xp->pairs + b + 2, qh, nb, b + 2);
        const __m256i s45 = x1_pair(row + b * 16 + 64, xp->pairs + b + 4, qh, nb, b + 4);
        const __m256i s67 = x1_pair(row + b * 16 + 96, xp->pairs + b + 6, qh, nb, b + 6);
        const __m256i sums = _mm256_permutevar8x32_epi32(
            _mm256_hadd_epi32(_mm256_hadd_epi32(s01, s23), _mm256_hadd_epi32(s45, s67)), PAIR_SUMS_IN_ORDER);
        const __m256 scale = _mm256_mul_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(d + b))), _mm256_loadu_ps(xp->d + b));
        acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sums), scale, acc);
        mins = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(m + b))), _mm256_loadu_ps(xp->s + b), mins);
    }
    __m128 tail_mins = _mm_setzero_ps();
    for (; b < nb; b += 2) {
        _mm_prefetch((const char *)(ahead + b * 20), _MM_HINT_T0);
        // The pair's two scales, [d_b·xd_b ×4 | d_b+1·xd_b+1 ×4], and its two mins in lanes 0–1.
        const __m128 xd = _mm_castsi128_ps(_mm_loadl_epi64((const __m128i *)(xp->d + b)));
        const __m128 two = _mm_mul_ps(_mm_cvtph_ps(two_halves(d + b)), xd);
        const __m256 scale = _mm256_permutevar8x32_ps(_mm256_castps128_ps256(two), _mm256_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1));
        acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(x1_pair(row + b * 16, xp->pairs + b, qh, nb, b)), scale, acc);
        const __m128 xs = _mm_castsi128_ps(_mm_loadl_epi64((const __m128i *)(xp->s + b)));
        tail_mins = _mm_fmadd_ps(_mm_cvtph_ps(two_halves(m + b)), xs, tail_mins);
    }
    // The upper lanes of tail_mins are 0 (cvtph of zero halves times zero-filled loads).
    return hsum256(_mm256_add_ps(_mm256_add_ps(acc, mins), _mm256_zextps128_ps256(tail_mins)));
}

CK_AVX2 static void matvec_q4_1x(const uint8_t *w, const x_prepared *xp, float *y, int64_t nb, int64_t r0, int64_t r1) {
    const size_t row_bytes = (size_t)nb * 20;
    for (int64_t r = r0; r < r1; r++) y[r] = row_x1(w + (size_t)r * row_bytes, row_bytes, xp, nb, 0);
}

CK_AVX2 static void matvec_q5_1x(const uint8_t *w, const x_prepared *xp, float *y, int64_t nb, int64_t r0, int64_t r1) {
    const size_t row_bytes = (size_t)nb * 24;
    for (int64_t r = r0; r < r1; r++) y[r] = row_x1(w + (size_t)r * row_bytes, row_bytes, xp, nb, 1);
}

// One row of Q6_0X times x: Σ_b xd_b·(d_b·(codes − 32)·x_lo + e_b·(codes − 32)·x_hi). Eight
// blocks at a time (its rows are a multiple of eight); a pair's low-nibble half (elements
// 0–15, scale d) and high-nibble half (16–31, scale e) are summed apart, the −32 offset taken
// off each int32 lane by x's prepared lane sums. maddubs' pair sums stay below 2·63·127.
CK_AVX2 static float row_q6_0x(const uint8_t *row, size_t row_bytes, const x_prepared *xp, int64_t nb) {
    const uint16_t *d = (const uint16_t *)(row + nb * 16), *e = d + nb;
    const uint8_t *planes = row + nb * 20, *ahead = row + PREFETCH_ROWS * row_bytes;
    const __m256i mask = _mm256_set1_epi8(0x0f), ones = _mm256_set1_epi16(1);
    __m256 acc = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; b += 8) {
        // Eight blocks: 128 bytes of codes, 64 of planes, 16 of each scale.
        _mm_prefetch((const char *)(ahead + b * 16), _MM_HINT_T0);
        _mm_prefetch((const char *)(ahead + b * 16 + 64), _MM_HINT_T0);
        _mm_prefetch((const char *)(ahead + nb * 20 + b * 8), _MM_HINT_T0);
        _mm_prefetch((const char *)(ahead + nb * 16 + b * 2), _MM_HINT_T0);
        __m256i lo_sums[4], hi_sums[4];
        for (int p = 0; p < 4; p++) {
            const int64_t pb = b + 2 * p;
            const uint8_t *pl = planes + q6_0x_plane(pb / 4 * 4, 0, 4) + 4 * ((pb % 4) / 2);
            const __m256i v = _mm256_loadu_si256((const __m256i *)(row + pb * 16));
            __m256i lo = _mm256_and_si256(v, mask), hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), mask);
            lo = _mm256_or_si256(lo, _mm256_or_si256(bits_as_bytes(pl, 0x10), bits_as_bytes(pl + 16, 0x20)));
            hi = _mm256_or_si256(hi, _mm256_or_si256(bits_as_bytes(pl + 8, 0x10), bits_as_bytes(pl + 24, 0x20)));
            lo_sums[p] = _mm256_add_epi32(_mm256_madd_epi16(_mm256_maddubs_epi16(lo, xp->pairs[pb]), ones), xp->corr[pb]);
            hi_sums[p] = _mm256_add_epi32(_mm256_madd_epi16(_mm256_maddubs_epi16(hi, xp->pairs[pb + 1]), ones), xp->corr[pb + 1]);
        }
        const __m256i lo8 = _mm256_permutevar8x32_epi32(_mm256_hadd_epi32(_mm256_hadd_epi32(lo_sums[0], lo_sums[1]),
                                                                          _mm256_hadd_epi32(lo_sums[2], lo_sums[3])), PAIR_SUMS_IN_ORDER);
        const __m256i hi8 = _mm256_permutevar8x32_epi32(_mm256_hadd_epi32(_mm256_hadd_epi32(hi_sums[0], hi_sums[1]),
                                                                          _mm256_hadd_epi32(hi_sums[2], hi_sums[3])), PAIR_SUMS_IN_ORDER);
        const __m256 xd = _mm256_loadu_ps(xp->d + b);
        acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(lo8), _mm256_mul_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(d + b))), xd), acc);
        acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(hi8), _mm256_mul_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(e + b))), xd), acc);
    }
    return hsum256(acc);
}

CK_AVX2 static void matvec_q6_0x(const uint8_t *w, const x_prepared *xp, float *y, int64_t nb, int64_t r0, int64_t r1) {
    const size_t row_bytes = (size_t)nb * 28;
    for (int64_t r = r0; r < r1; r++) y[r] = row_q6_0x(w + (size_t)r * row_bytes, row_bytes, xp, nb);
}

// One block of Q8_0X times x: eight int32 lanes. maddubs multiplies unsigned by signed
// bytes, so |w| is the unsigned side and x takes w's sign. (Not the other way round, though
// |x| could be shared by the rows: a code of −128, which ggml never writes but a file may
// hold, has no positive int8 twin; x is quantized to ±127.)
CK_AVX2 static inline __m256i q8_block(const uint8_t *codes, const int8_t *x) {
    const __m256i xv = _mm256_loadu_si256((const __m256i *)x);
    const __m256i wv = _mm256_loadu_si256((const __m256i *)codes);
    return _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_sign_epi8(wv, wv), _mm256_sign_epi8(xv, wv)), _mm256_set1_epi16(1));
}

CK_AVX2 static inline float row_q8_0x(const uint8_t *row, size_t row_bytes, const ck_block_q8 *x, const x_prepared *xp,
                                      int64_t nb) {
    const uint16_t *d = (const uint16_t *)(row + nb * 32);
    const uint8_t *ahead = row + PREFETCH_ROWS * row_bytes;
    __m256 acc = _mm256_setzero_ps();
    int64_t b = 0;
    for (; b + 8 <= nb; b += 8) {
        // Eight blocks are 272 bytes of the row: five lines ahead.
        for (int k = 0; k < 5; k++) _mm_prefetch((const char *)(ahead + b * 34 + 64 * k), _MM_HINT_T0);
        __m256i s[8];
        for (int k = 0; k < 8; k++) s[k] = q8_block(row + (b + k) * 32, x[b + k].qs);
        // Per 128-bit half: the four blocks' sums of that half; the halves added give the eight blocks in order.
        const __m256i s0123 = _mm256_hadd_epi32(_mm256_hadd_epi32(s[0], s[1]), _mm256_hadd_epi32(s[2], s[3]));
        const __m256i s4567 = _mm256_hadd_epi32(_mm256_hadd_epi32(s[4], s[5]), _mm256_hadd_epi32(s[6], s[7]));
        const __m256i sums = _mm256_add_epi32(_mm256_permute2x128_si256(s0123, s4567, 0x20),
                                              _mm256_permute2x128_si256(s0123, s4567, 0x31));
        const __m256 scale = _mm256_mul_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(d + b))), _mm256_loadu_ps(xp->d + b));
        acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sums), scale, acc);
    }
    for (; b < nb; b++) {
        _mm_prefetch((const char *)(ahead + b * 34), _MM_HINT_T0);
        acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(q8_block(row + b * 32, x[b].qs)), _mm256_set1_ps(h2f(d[b]) * xp->d[b]), acc);
    }
    return hsum256(acc);
}

CK_AVX2 static void matvec_q8_0x(const uint8_t *w, const ck_block_q8 *x, const x_prepared *xp, float *y, int64_t nb,
                                 int64_t r0, int64_t r1) {
    const size_t row_bytes = (size_t)nb * 34;
    for (int64_t r = r0; r < r1; r++) y[r] = row_q8_0x(w + (size_t)r * row_bytes, row_bytes, x, xp, nb);
}

// Fills xp for one call: scales always, the regrouped codes for Q4_1X, Q5_1X and Q6_0X, and
// Q6_0X's lane sums.
CK_AVX2 static void prepare_x(int type, const ck_block_q8 *x, int64_t nb, x_prepared *xp) {
    for (int64_t i = 0; i < nb; i++) { xp->d[i] = x[i].d; xp->s[i] = x[i].s; }
    if (type == CK_TYPE_Q8_0X) return;
    for (int64_t b = 0; b + 1 < nb; b += 2) {
        const __m256i x0 = _mm256_loadu_si256((const __m256i *)x[b].qs);
        const __m256i x1 = _mm256_loadu_si256((const __m256i *)x[b + 1].qs);
        xp->pairs[b] = _mm256_permute2x128_si256(x0, x1, 0x20);
        xp->pairs[b + 1] = _mm256_permute2x128_si256(x0, x1, 0x31);
    }
    if (type != CK_TYPE_Q6_0X) return;
    const __m256i thirty_two = _mm256_set1_epi8(32), ones = _mm256_set1_epi16(1);
    for (int64_t k = 0; k < nb; k++) {
        const __m256i sums = _mm256_madd_epi16(_mm256_maddubs_epi16(thirty_two, xp->pairs[k]), ones);
        xp->corr[k] = _mm256_sub_epi32(_mm256_setzero_si256(), sums);
    }
}

#endif

void ck_matvec_repacked_q8(int type, const void *w, const ck_block_q8 *x, float *y,
                           int64_t cols, int64_t r0, int64_t r1) {
    const int64_t nb = cols / QK;
    if (ck_matvec_repacked_q8_vnni(type, w, x, y, cols, r0, r1)) return;
#ifdef CK_X86
    if (ck_has_avx2() && nb <= 512 && (type != CK_TYPE_Q6_0X || nb % 8 == 0)) {
        // 20 KB on the calling thread's stack, filled per call: a few instructions per block
        // of x against a dispatch's share of at least sixteen rows.
        x_prepared xp;
        prepare_x(type, x, nb, &xp);
        if (type == CK_TYPE_Q4_1X) matvec_q4_1x(w, &xp, y, nb, r0, r1);
        else if (type == CK_TYPE_Q5_1X) matvec_q5_1x(w, &xp, y, nb, r0, r1);
        else if (type == CK_TYPE_Q6_0X) matvec_q6_0x(w, &xp, y, nb, r0, r1);
        else matvec_q8_0x(w, x, &xp, y, nb, r0, r1);
        return;
    }
#endif
    const size_t row_bytes = (size_t)nb * ck_type_block_bytes(type);
    for (int64_t r = r0; r < r1; r++) y[r] = ck_dot_repacked_q8_ref(type, (const uint8_t *)w + r * row_bytes, x, cols);
}
