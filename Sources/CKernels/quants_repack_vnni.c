// AVX-512 VNNI kernels for the repacked Q4_1X, Q5_1X, Q6_0X and Q8_0X rows (layouts, scalar twins and
// the AVX2 kernels: quants_repack.c): decoding's matrix-vector products, and prefill's
// int8 matrix products (ck_matmul_q8; a micro-kernel per layout at the end of this file). One
// `vpdpbusd` multiplies 64 unsigned by 64 signed bytes and adds each group of four products
// into an int32 lane: it replaces AVX2's maddubs + add + madd chain and takes twice the
// bytes per instruction, so a block of weights costs about a third of the instructions.
// Decoding is then closer to being bound by memory alone (a 64 MB Q4_1 matrix streams at
// 29–31 GB/s on two threads, against 25–27 GB/s with the AVX2 kernel).
//
// Q4_1X, four blocks per step: the 64 code bytes of blocks b..b+3 hold elements 0–15 of
// each block in their low nibbles and 16–31 in their high nibbles, so x is regrouped once
// per call into lo = [x_b 0–15 | … | x_b+3 0–15] and hi = [x_b 16–31 | …]; int32 lanes
// 4j..4j+3 then belong to block b+j and take its scale d·d8. A row of 18 blocks (576
// columns) ends with a half step of two blocks: a masked load, and zero x and scales
// beyond the row so the missing lanes add nothing. Q5_1X is Q4_1X with one 64-bit load of
// fifth bits per half of a step, put in as 0x10 bytes by a masked move. Q6_0X takes two such
// planes per half, and scales its halves apart (Q6_K's sub-blocks of 16); each int32 lane
// starts from x's prepared −32·Σx of its four bytes, so the offset costs nothing per row.
// Q8_0X, two blocks per step: vpdpbusd needs one unsigned side, so |w| is it and x takes
// w's sign (a code of −128 becomes 128 unsigned, which is exact; x is quantized to ±127).
#include <stdlib.h>
#include <string.h>

#include "ckernels.h"
#include "quants_internal.h"
#include "simd_x86.h"

#define QK 32
#define MAX_BLOCKS 512  // columns ≤ 16384, as the AVX2 kernels' bound (nb ≤ 504)

#ifdef CK_X86
static int avx512_allowed = 1;

int ck_has_avx512vnni(void) {
    static int cached = -1;
    if (cached < 0) {
        __builtin_cpu_init();
        cached = ck_has_avx2() && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                 __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni") &&
                 __builtin_cpu_supports("avx512dq");
        // SCROLL_NO_AVX512=1 runs the AVX2 kernels on an AVX-512 host: how a CI failure
        // (a greedy near-tie that fell the other way on an AVX2-only host) was
        // reproduced, and how to benchmark the AVX2 path anywhere.
        const char *off = getenv("SCROLL_NO_AVX512");
        if (off && *off && *off != '0') cached = 0;
    }
    return cached && avx512_allowed;
}

int ck_set_avx512_allowed(int allowed) {
    const int before = avx512_allowed;
    avx512_allowed = allowed;
    return before;
}

// How far ahead the kernels prefetch: the same bytes this many rows on. Rows are taken one
// at a time, start to end, so this is a plain sequential stream to the prefetchers.
#define PREFETCH_ROWS 4

// Adds a Q5_1X step's fifth bits (the step of blocks b.. of a row with high bits qh) to its
// low-nibble (elements 0–15) and high-nibble (16–31) codes: bit k of each 64-bit mask is
// byte k's (quants_repack.c's layout); a last step of two blocks has 32-bit masks.
CK_AVX512 static inline void fifth_bits_512(const uint8_t *qh, int64_t nb, int64_t b, __m512i *lo, __m512i *hi) {
    const __m512i sixteen = _mm512_set1_epi8(0x10);
    uint64_t lower = 0, upper = 0;
    if (nb - b >= 4) {
        memcpy(&lower, qh + 4 * b, 8);
        memcpy(&upper, qh + 4 * b + 8, 8);
    } else {
        memcpy(&lower, qh + 4 * b, 4);
        memcpy(&upper, qh + 4 * b + 4, 4);
    }
    *lo = _mm512_or_si512(*lo, _mm512_maskz_mov_epi8(_cvtu64_mask64(lower), sixteen));
    *hi = _mm512_or_si512(*hi, _mm512_maskz_mov_epi8(_cvtu64_mask64(upper), sixteen));
}

// A Q6_0X step's bits 4 and 5 (blocks b..b+3 of a row whose planes start at `planes`) into
// its low-nibble and high-nibble codes.
CK_AVX512 static inline void q6_bits_512(const uint8_t *planes, int64_t b, __m512i *lo, __m512i *hi) {
    uint64_t m[4];
    memcpy(m, planes + 8 * b, sizeof m);   // bit 4 lo, bit 4 hi, bit 5 lo, bit 5 hi
    const __m512i b4 = _mm512_set1_epi8(0x10), b5 = _mm512_set1_epi8(0x20);
    *lo = _mm512_or_si512(*lo, _mm512_or_si512(_mm512_maskz_mov_epi8(_cvtu64_mask64(m[0]), b4),
                                               _mm512_maskz_mov_epi8(_cvtu64_mask64(m[2]), b5)));
    *hi = _mm512_or_si512(*hi, _mm512_or_si512(_mm512_maskz_mov_epi8(_cvtu64_mask64(m[1]), b4),
                                               _mm512_maskz_mov_epi8(_cvtu64_mask64(m[3]), b5)));
}

// One Q6_0X row times the regrouped x, as 16 lanes to be summed: per step, each half's dot
// starts from x's lane offsets (clo, chi) and takes its own scale (d, e).
CK_AVX512 static inline __m512 row_q6_0x_512(const uint8_t *row, size_t row_bytes, const __m512i *xlo, const __m512i *xhi,
                                             const __m512i *clo, const __m512i *chi, const float *xd, int64_t nb) {
    const __m512i mask = _mm512_set1_epi8(0x0f), four = _mm512_set1_epi32(4);
    const __m512i quad = _mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3);
    const uint16_t *d = (const uint16_t *)(row + nb * 16), *e = d + nb;
    const uint8_t *planes = row + nb * 20;
    __m512 acc = _mm512_setzero_ps();
    for (int64_t c = 0; c < nb; c += 16) {
        const __mmask16 k16 = nb - c >= 16 ? 0xffff : (__mmask16)((1u << (nb - c)) - 1);
        const __m512 x16 = _mm512_maskz_loadu_ps(k16, xd + c);
        const __m512 sd = _mm512_mul_ps(_mm512_cvtph_ps(_mm256_maskz_loadu_epi16(k16, d + c)), x16);
        const __m512 se = _mm512_mul_ps(_mm512_cvtph_ps(_mm256_maskz_loadu_epi16(k16, e + c)), x16);
        __m512i lanes = quad;
        for (int64_t b = c; b < nb && b < c + 16; b += 4) {
            _mm_prefetch((const char *)(row + PREFETCH_ROWS * row_bytes + b * 16), _MM_HINT_T0);
            _mm_prefetch((const char *)(row + PREFETCH_ROWS * row_bytes + nb * 20 + b * 8), _MM_HINT_T0);
            const __m512i v = _mm512_loadu_si512(row + b * 16);
            __m512i lo = _mm512_and_si512(v, mask), hi = _mm512_and_si512(_mm512_srli_epi16(v, 4), mask);
            q6_bits_512(planes, b, &lo, &hi);
            const __m512i dlo = _mm512_dpbusd_epi32(clo[b / 4], lo, xlo[b / 4]);
            const __m512i dhi = _mm512_dpbusd_epi32(chi[b / 4], hi, xhi[b / 4]);
            acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dlo), _mm512_permutexvar_ps(lanes, sd), acc);
            acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dhi), _mm512_permutexvar_ps(lanes, se), acc);
            lanes = _mm512_add_epi32(lanes, four);
        }
    }
    return acc;
}

// One Q4_1X row times the regrouped x as 16 lanes whose sum is the dot product, mins
// included: Σ_b d_b·d8_b·(q_b·x8_b) + Σ_b m_b·s8_b. Sixteen blocks' scales d_b·d8_b sit in
// one register and each step's four are spread to its lanes by a permute; the horizontal
// sum is left to the caller, which does sixteen rows at once (sum16_512). Per row that
// saves a store and reload of the scales and two horizontal sums: on one core, with a
// 576-column matrix in L2, ~17–21 → ~20–23 GB/s (medians of 7 and 15 runs); streaming from
// DRAM on two threads it changed nothing measurable — decoding is bound by memory there.
CK_AVX512 static inline __attribute__((always_inline)) __m512 row_x1_512(const uint8_t *row, size_t row_bytes,
                                                                         const __m512i *xlo, const __m512i *xhi,
                                                                         const float *xd, const float *xs, int64_t nb,
                                                                         const int five) {
    const __m512i mask = _mm512_set1_epi8(0x0f), four = _mm512_set1_epi32(4);
    const uint8_t *qh = row + nb * 20;
    const __m512i quad = _mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3);
    const uint16_t *d = (const uint16_t *)(row + nb * 16), *m = d + nb;
    __m512 acc = _mm512_setzero_ps();
    for (int64_t c = 0; c < nb; c += 16) {
        const __mmask16 k16 = nb - c >= 16 ? 0xffff : (__mmask16)((1u << (nb - c)) - 1);
        const __m512 sd = _mm512_mul_ps(_mm512_cvtph_ps(_mm256_maskz_loadu_epi16(k16, d + c)), _mm512_maskz_loadu_ps(k16, xd + c));
        acc = _mm512_fmadd_ps(_mm512_cvtph_ps(_mm256_maskz_loadu_epi16(k16, m + c)), _mm512_maskz_loadu_ps(k16, xs + c), acc);
        __m512i lanes = quad;
        for (int64_t b = c; b < nb && b < c + 16; b += 4) {
            const __mmask64 k64 = nb - b >= 4 ? ~(__mmask64)0 : ((__mmask64)1 << ((nb - b) * 16)) - 1;
            _mm_prefetch((const char *)(row + PREFETCH_ROWS * row_bytes + b * 16), _MM_HINT_T0);
            const __m512i v = _mm512_maskz_loadu_epi8(k64, row + b * 16);
            __m512i lo = _mm512_and_si512(v, mask);
            __m512i hi = _mm512_and_si512(_mm512_srli_epi16(v, 4), mask);
            if (five) fifth_bits_512(qh, nb, b, &lo, &hi);
            const __m512i dot = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(_mm512_setzero_si512(), lo, xlo[b / 4]), hi, xhi[b / 4]);
            acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), _mm512_permutexvar_ps(lanes, sd), acc);
            lanes = _mm512_add_epi32(lanes, four);
        }
    }
    return acc;
}

// One Q8_0X row times x (two blocks per 64-byte step), as 16 lanes to be summed.
CK_AVX512 static inline __m512 row_q8_0x_512(const uint8_t *row, size_t row_bytes, const __m512i *x2, const float *xd,
                                             int64_t nb) {
    const __m512i pair = _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1), two = _mm512_set1_epi32(2);
    const uint16_t *d = (const uint16_t *)(row + nb * 32);
    // The scales of the row PREFETCH_ROWS on, which sit past its codes and are read first:
    // the 30 MB output head streamed at ~18 GB/s without this, ~21 with it.
    _mm_prefetch((const char *)(row + PREFETCH_ROWS * row_bytes + nb * 32 + 35), _MM_HINT_T0);
    __m512 acc = _mm512_setzero_ps();
    for (int64_t c = 0; c < nb; c += 16) {
        const __mmask16 k16 = nb - c >= 16 ? 0xffff : (__mmask16)((1u << (nb - c)) - 1);
        const __m512 sd = _mm512_mul_ps(_mm512_cvtph_ps(_mm256_maskz_loadu_epi16(k16, d + c)), _mm512_maskz_loadu_ps(k16, xd + c));
        __m512i lanes = pair;
        for (int64_t b = c; b < nb && b < c + 16; b += 2) {
            _mm_prefetch((const char *)(row + PREFETCH_ROWS * row_bytes + b * 32), _MM_HINT_T0);
            const __m512i wv = _mm512_loadu_si512(row + b * 32);
            const __m512i xsigned = _mm512_mask_sub_epi8(x2[b / 2], _mm512_movepi8_mask(wv), _mm512_setzero_si512(), x2[b / 2]);
            const __m512i dot = _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_abs_epi8(wv), xsigned);
            acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), _mm512_permutexvar_ps(lanes, sd), acc);
            lanes = _mm512_add_epi32(lanes, two);
        }
    }
    return acc;
}

// One token's x prepared for these kernels, in 64-byte units: Q4_1X, Q5_1X: lo[steps], hi[steps]
// (steps = ⌈nb/4⌉, zero past nb), then d8 and s8 as floats; Q6_0X: lo, hi, then their int32
// lanes' −32·Σx (clo[steps], chi[steps]), then d8 and s8; Q8_0X: pairs[nb/2], then d8.
// Prepared once per call, or once per token of a matrix product, for every row.
static int64_t prep_bytes(int type, int64_t nb) {
    const int64_t floats = ((nb + 15) / 16 + 1) * 16;
    const int64_t halves = type == CK_TYPE_Q6_0X ? 4 : 2;
    return type != CK_TYPE_Q8_0X ? (nb + 3) / 4 * 64 * halves + 2 * floats * 4 : nb / 2 * 64 + floats * 4;
}

static void prep_x(int type, const ck_block_q8 *x, int64_t nb, uint8_t *prep) {
    memset(prep, 0, (size_t)prep_bytes(type, nb));
    if (type != CK_TYPE_Q8_0X) {
        const int64_t steps = (nb + 3) / 4, halves = type == CK_TYPE_Q6_0X ? 4 : 2;
        int8_t *lo = (int8_t *)prep, *hi = lo + steps * 64;
        float *d = (float *)(lo + halves * steps * 64), *s = d + ((nb + 15) / 16 + 1) * 16;
        for (int64_t i = 0; i < nb; i++) {
            memcpy(lo + i * 16, x[i].qs, 16);
            memcpy(hi + i * 16, x[i].qs + 16, 16);
            d[i] = x[i].d;
            s[i] = x[i].s;
        }
        if (type == CK_TYPE_Q6_0X) {
            int32_t *corr = (int32_t *)(hi + steps * 64);   // clo[steps][16], then chi
            for (int64_t k = 0; k < 2 * steps * 16; k++) {
                const int8_t *four = lo + 4 * k;   // lo and hi are contiguous, as clo and chi
                corr[k] = -32 * (four[0] + four[1] + four[2] + four[3]);
            }
        }
    } else {
        float *d = (float *)(prep + nb / 2 * 64);
        for (int64_t i = 0; i < nb; i++) {
            memcpy(prep + i * 32, x[i].qs, 32);
            d[i] = x[i].d;
        }
    }
}

// Rows of Q4_1X, Q5_1X, Q6_0X or Q8_0X from row0 times one prepared x, into out[rows], one row at a
// time from its first byte to its last. The kernels used to interleave four rows, one
// 64-byte step of each in turn, to share the x registers: from DRAM that ran at a third
// to a half of the bandwidth (one thread: the 30 MB Q8_0 head at ~7 GB/s, against 16–20
// GB/s row by row; two threads over a token's matrices: ~150 against ~235 t/s in a
// microbenchmark). x lives in registers and L1 either way.
CK_AVX512 static inline void row_group(int type, const uint8_t *row0, size_t row_bytes, int64_t rows,
                                       const uint8_t *prep, int64_t nb, float *out) {
    const int64_t steps = (nb + 3) / 4, floats = ((nb + 15) / 16 + 1) * 16;
    const __m512i *lo = (const __m512i *)prep, *hi = lo + steps, *x2 = (const __m512i *)prep;
    const __m512i *clo = hi + steps, *chi = clo + steps;
    const float *xd = type == CK_TYPE_Q6_0X ? (const float *)(chi + steps)
                    : type != CK_TYPE_Q8_0X ? (const float *)(hi + steps) : (const float *)(x2 + nb / 2), *xs = xd + floats;
    for (int64_t r = 0; r < rows; r += 16) {
        const int nr = rows - r < 16 ? (int)(rows - r) : 16;
        __m512 acc[16];
        for (int k = 0; k < 16; k++) {
            const uint8_t *row = row0 + (r + k) * row_bytes;
            acc[k] = k >= nr ? _mm512_setzero_ps()
                   : type == CK_TYPE_Q4_1X ? row_x1_512(row, row_bytes, lo, hi, xd, xs, nb, 0)
                   : type == CK_TYPE_Q5_1X ? row_x1_512(row, row_bytes, lo, hi, xd, xs, nb, 1)
                   : type == CK_TYPE_Q6_0X ? row_q6_0x_512(row, row_bytes, lo, hi, clo, chi, xd, nb)
                                           : row_q8_0x_512(row, row_bytes, x2, xd, nb);
        }
        _mm512_mask_storeu_ps(out + r, (__mmask16)(nr == 16 ? 0xffff : (1u << nr) - 1), sum16_512(acc));
    }
}

// A matrix product's prepared x (all its tokens) goes in a buffer of the calling thread,
// grown when a longer chunk comes and kept for the thread's life (the pool's threads live
// as long as the process), so prefill allocates only on its first chunk.
static _Thread_local uint8_t *prep_buffer;
static _Thread_local int64_t prep_capacity;

static uint8_t *prep_space(int64_t bytes) {
    if (bytes > prep_capacity) {
        free(prep_buffer);
        prep_buffer = aligned_alloc(64, (size_t)(bytes + 63) / 64 * 64);
        prep_capacity = prep_buffer ? bytes : 0;
    }
    return prep_buffer;
}

static int applies(int type, int64_t nb) {
    return ck_has_avx512vnni() && nb <= MAX_BLOCKS && nb % 2 == 0 &&
           (type == CK_TYPE_Q4_1X || type == CK_TYPE_Q5_1X || type == CK_TYPE_Q8_0X || (type == CK_TYPE_Q6_0X && nb % 4 == 0));
}

static size_t row_bytes_of(int type, int64_t nb) { return (size_t)nb * ck_type_block_bytes(type); }

int ck_matvec_repacked_q8_vnni(int type, const void *w, const ck_block_q8 *x, float *y,
                               int64_t cols, int64_t r0, int64_t r1) {
    const int64_t nb = cols / QK;
    if (!applies(type, nb)) return 0;
    _Alignas(64) uint8_t prep[MAX_BLOCKS / 4 * 256 + 2 * (MAX_BLOCKS + 32) * 4];
    prep_x(type, x, nb, prep);
    const size_t row_bytes = row_bytes_of(type, nb);
    row_group(type, (const uint8_t *)w + r0 * row_bytes, row_bytes, r1 - r0, prep, nb, y + r0);
    return 1;
}

// A prefill tile's four rows (missing rows repeat row 0; their sums are not stored) and the
// two f16 arrays after their codes (d and m; Q6_0X: d and e) as floats, zero past nb up to nf.
CK_AVX512 static inline void tile_rows(const uint8_t *row0, size_t row_bytes, int rows, int64_t nb, int64_t nf,
                                       const uint8_t *row[4], float first[4][MAX_BLOCKS + 32],
                                       float second[4][MAX_BLOCKS + 32]) {
    for (int k = 0; k < 4; k++) {
        row[k] = row0 + (size_t)(k < rows ? k : 0) * row_bytes;
        const uint16_t *a = (const uint16_t *)(row[k] + nb * 16), *b = a + nb;
        for (int64_t i = 0; i < nf; i++) {
            first[k][i] = i < nb ? h2f(a[i]) : 0;
            second[k][i] = i < nb ? h2f(b[i]) : 0;
        }
    }
}

// Prefill's micro-kernel: four Q4_1X (or Q5_1X: five = 1) rows × two tokens at a time. The rows' scales and mins
// become floats once for all tokens; each 64-byte step of a row is unpacked once for both
// tokens; the mins join the accumulators, so each (row, token) ends in one reduction. (Run
// per token, the decode kernel spent more on per-row scale setup and reductions than on
// its dot products: int8 prefill was then no faster than sgemm.) The per-block products are
// the decode kernel's; only the order of the final sums differs.
CK_AVX512 static inline __attribute__((always_inline)) void matmul_x1_tile(const uint8_t *row0, size_t row_bytes, int rows,
                                                                           const uint8_t *prep, int64_t each, int64_t n,
                                                                           int64_t nb, float *y, int64_t ldy, const int five) {
    const int64_t steps = (nb + 3) / 4, nf = ((nb + 15) / 16 + 1) * 16;
    const __m512i mask = _mm512_set1_epi8(0x0f);
    const __m512i quad = _mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3);
    float dw[4][MAX_BLOCKS + 32], mw[4][MAX_BLOCKS + 32];
    const uint8_t *row[4];
    tile_rows(row0, row_bytes, rows, nb, nf, row, dw, mw);
    for (int64_t t = 0; t < n; t += 2) {
        const int tn = n - t >= 2 ? 2 : 1;
        const uint8_t *p[2] = { prep + t * each, prep + (t + tn - 1) * each };
        const __m512i *lo[2], *hi[2];
        const float *dx[2], *sx[2];
        for (int j = 0; j < 2; j++) {
            lo[j] = (const __m512i *)p[j];
            hi[j] = lo[j] + steps;
            dx[j] = (const float *)(hi[j] + steps);
            sx[j] = dx[j] + nf;
        }
        __m512 acc[4][2];
        for (int k = 0; k < 4; k++) acc[k][0] = acc[k][1] = _mm512_setzero_ps();
        for (int64_t s = 0; s < steps; s++) {
            const __mmask64 k64 = nb - 4 * s >= 4 ? ~(__mmask64)0 : ((__mmask64)1 << ((nb - 4 * s) * 16)) - 1;
            __m512i wl[4], wh[4];
            __m512 ws[4];
            for (int k = 0; k < 4; k++) {
                const __m512i v = _mm512_maskz_loadu_epi8(k64, row[k] + s * 64);
                wl[k] = _mm512_and_si512(v, mask);
                wh[k] = _mm512_and_si512(_mm512_srli_epi16(v, 4), mask);
                if (five) fifth_bits_512(row[k] + nb * 20, nb, 4 * s, &wl[k], &wh[k]);
                ws[k] = _mm512_permutexvar_ps(quad, _mm512_castps128_ps512(_mm_loadu_ps(dw[k] + 4 * s)));
            }
            for (int j = 0; j < 2; j++) {
                const __m512i xl = lo[j][s], xh = hi[j][s];
                const __m512 xs = _mm512_permutexvar_ps(quad, _mm512_castps128_ps512(_mm_loadu_ps(dx[j] + 4 * s)));
                for (int k = 0; k < 4; k++) {
                    const __m512i dot = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(_mm512_setzero_si512(), wl[k], xl), wh[k], xh);
                    acc[k][j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), _mm512_mul_ps(ws[k], xs), acc[k][j]);
                }
            }
        }
        for (int j = 0; j < tn; j++) {
            for (int k = 0; k < rows; k++) {
                __m512 a = acc[k][j];
                for (int64_t i = 0; i < nf; i += 16) a = _mm512_fmadd_ps(_mm512_loadu_ps(mw[k] + i), _mm512_loadu_ps(sx[j] + i), a);
                y[(t + j) * ldy + k] = _mm512_reduce_add_ps(a);
            }
        }
    }
}

CK_AVX512 static void matmul_q4_1x_tile(const uint8_t *row0, size_t row_bytes, int rows, const uint8_t *prep,
                                        int64_t each, int64_t n, int64_t nb, float *y, int64_t ldy) {
    matmul_x1_tile(row0, row_bytes, rows, prep, each, n, nb, y, ldy, 0);
}

CK_AVX512 static void matmul_q5_1x_tile(const uint8_t *row0, size_t row_bytes, int rows, const uint8_t *prep,
                                        int64_t each, int64_t n, int64_t nb, float *y, int64_t ldy) {
    matmul_x1_tile(row0, row_bytes, rows, prep, each, n, nb, y, ldy, 1);
}

// The same for four Q6_0X rows × two tokens: each half of a step its own dot (starting from
// x's lane offsets) and its own scale; no mins.
CK_AVX512 static void matmul_q6_0x_tile(const uint8_t *row0, size_t row_bytes, int rows, const uint8_t *prep,
                                        int64_t each, int64_t n, int64_t nb, float *y, int64_t ldy) {
    const int64_t steps = nb / 4, nf = ((nb + 15) / 16 + 1) * 16;
    const __m512i mask = _mm512_set1_epi8(0x0f);
    const __m512i quad = _mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3);
    float dw[4][MAX_BLOCKS + 32], ew[4][MAX_BLOCKS + 32];
    const uint8_t *row[4];
    tile_rows(row0, row_bytes, rows, nb, nf, row, dw, ew);
    for (int64_t t = 0; t < n; t += 2) {
        const int tn = n - t >= 2 ? 2 : 1;
        const __m512i *lo[2], *hi[2], *cl[2], *ch[2];
        const float *dx[2];
        for (int j = 0; j < 2; j++) {
            lo[j] = (const __m512i *)(prep + (t + (j < tn ? j : 0)) * each);
            hi[j] = lo[j] + steps;
            cl[j] = hi[j] + steps;
            ch[j] = cl[j] + steps;
            dx[j] = (const float *)(ch[j] + steps);
        }
        __m512 acc[4][2];
        for (int k = 0; k < 4; k++) acc[k][0] = acc[k][1] = _mm512_setzero_ps();
        for (int64_t s = 0; s < steps; s++) {
            __m512i wl[4], wh[4];
            __m512 wd[4], we[4];
            for (int k = 0; k < 4; k++) {
                const __m512i v = _mm512_loadu_si512(row[k] + s * 64);
                wl[k] = _mm512_and_si512(v, mask);
                wh[k] = _mm512_and_si512(_mm512_srli_epi16(v, 4), mask);
                q6_bits_512(row[k] + nb * 20, 4 * s, &wl[k], &wh[k]);
                wd[k] = _mm512_permutexvar_ps(quad, _mm512_castps128_ps512(_mm_loadu_ps(dw[k] + 4 * s)));
                we[k] = _mm512_permutexvar_ps(quad, _mm512_castps128_ps512(_mm_loadu_ps(ew[k] + 4 * s)));
            }
            for (int j = 0; j < 2; j++) {
                const __m512 xs = _mm512_permutexvar_ps(quad, _mm512_castps128_ps512(_mm_loadu_ps(dx[j] + 4 * s)));
                for (int k = 0; k < 4; k++) {
                    const __m512i dl = _mm512_dpbusd_epi32(cl[j][s], wl[k], lo[j][s]);
                    const __m512i dh = _mm512_dpbusd_epi32(ch[j][s], wh[k], hi[j][s]);
                    acc[k][j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dl), _mm512_mul_ps(wd[k], xs), acc[k][j]);
                    acc[k][j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dh), _mm512_mul_ps(we[k], xs), acc[k][j]);
                }
            }
        }
        for (int j = 0; j < tn; j++)
            for (int k = 0; k < rows; k++) y[(t + j) * ldy + k] = _mm512_reduce_add_ps(acc[k][j]);
    }
}

// The same for four Q8_0X rows × two tokens (Gemma 3's matrices, requantized at load). The
// decode kernel makes x take w's sign per row; here x is made unsigned once per token and
// step instead (x + 128, x's bytes xor 0x80), shared by the four rows, and each block's
// 128·Σw — fixed per row — is taken off at the end: Σ(x + 128)·w − 128·Σw = Σx·w, the same
// integers as the decode kernel's, summed in another order.
CK_AVX512 static void matmul_q8_0x_tile(const uint8_t *row0, size_t row_bytes, int rows, const uint8_t *prep,
                                        int64_t each, int64_t n, int64_t nb, float *y, int64_t ldy) {
    const int64_t nf = ((nb + 15) / 16 + 1) * 16;
    const __m512i pair = _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1), flip = _mm512_set1_epi8((char)0x80);
    float dw[4][MAX_BLOCKS + 32], cw[4][MAX_BLOCKS + 32];   // each block's scale, and scale · 128 · Σw
    const uint8_t *row[4];
    for (int k = 0; k < 4; k++) {
        row[k] = row0 + (size_t)(k < rows ? k : 0) * row_bytes;   // missing rows repeat row 0; not stored
        const int8_t *qs = (const int8_t *)row[k];
        const uint16_t *d = (const uint16_t *)(row[k] + nb * 32);
        for (int64_t i = 0; i < nf; i++) {
            int sum = 0;
            if (i < nb) for (int j = 0; j < QK; j++) sum += qs[i * QK + j];
            dw[k][i] = i < nb ? h2f(d[i]) : 0;
            cw[k][i] = dw[k][i] * 128.0f * (float)sum;
        }
    }
    for (int64_t t = 0; t < n; t += 2) {
        const int tn = n - t >= 2 ? 2 : 1;
        const __m512i *x2[2];
        const float *dx[2];
        for (int j = 0; j < 2; j++) {
            x2[j] = (const __m512i *)(prep + (t + (j < tn ? j : 0)) * each);
            dx[j] = (const float *)(x2[j] + nb / 2);
        }
        __m512 acc[4][2];
        for (int k = 0; k < 4; k++) acc[k][0] = acc[k][1] = _mm512_setzero_ps();
        for (int64_t s = 0; s < nb / 2; s++) {
            __m512i wv[4];
            __m512 ws[4];
            for (int k = 0; k < 4; k++) {
                wv[k] = _mm512_loadu_si512(row[k] + s * 64);
                ws[k] = _mm512_permutexvar_ps(pair, _mm512_castps128_ps512(_mm_castpd_ps(_mm_load_sd((const double *)(dw[k] + 2 * s)))));
            }
            for (int j = 0; j < 2; j++) {
                const __m512i xu = _mm512_xor_si512(x2[j][s], flip);
                const __m512 xs = _mm512_permutexvar_ps(pair, _mm512_castps128_ps512(_mm_castpd_ps(_mm_load_sd((const double *)(dx[j] + 2 * s)))));
                for (int k = 0; k < 4; k++) {
                    const __m512i dot = _mm512_dpbusd_epi32(_mm512_setzero_si512(), xu, wv[k]);
                    acc[k][j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), _mm512_mul_ps(ws[k], xs), acc[k][j]);
                }
            }
        }
        for (int j = 0; j < tn; j++) {
            for (int k = 0; k < rows; k++) {
                __m512 a = acc[k][j];
                for (int64_t i = 0; i < nf; i += 16) a = _mm512_fnmadd_ps(_mm512_loadu_ps(cw[k] + i), _mm512_loadu_ps(dx[j] + i), a);
                y[(t + j) * ldy + k] = _mm512_reduce_add_ps(a);
            }
        }
    }
}

int ck_matmul_repacked_q8_vnni(int type, const void *w, const ck_block_q8 *x, int64_t n, float *y, int64_t ldy,
                               int64_t cols, int64_t r0, int64_t r1) {
    const int64_t nb = cols / QK, each = prep_bytes(type, nb);
    if (!applies(type, nb)) return 0;
    uint8_t *prep = prep_space(n * each);
    if (!prep) return 0;
    for (int64_t t = 0; t < n; t++) prep_x(type, x + t * nb, nb, prep + t * each);
    const size_t row_bytes = row_bytes_of(type, nb);
    // Four weight rows at a time against every token: the rows stay in L1 while the tokens'
    // prepared x (≤ 256 · 2.5 KB) stream from L2, so each weight byte comes from memory once.
    for (int64_t r = r0; r < r1; r += 4) {
        const int rows = r1 - r < 4 ? (int)(r1 - r) : 4;
        const uint8_t *row0 = (const uint8_t *)w + r * row_bytes;
        if (type == CK_TYPE_Q4_1X) matmul_q4_1x_tile(row0, row_bytes, rows, prep, each, n, nb, y + r, ldy);
        else if (type == CK_TYPE_Q5_1X) matmul_q5_1x_tile(row0, row_bytes, rows, prep, each, n, nb, y + r, ldy);
        else if (type == CK_TYPE_Q6_0X) matmul_q6_0x_tile(row0, row_bytes, rows, prep, each, n, nb, y + r, ldy);
        else matmul_q8_0x_tile(row0, row_bytes, rows, prep, each, n, nb, y + r, ldy);
    }
    return 1;
}

#else

int ck_has_avx512vnni(void) { return 0; }
int ck_set_avx512_allowed(int allowed) { (void)allowed; return 0; }
int ck_matvec_repacked_q8_vnni(int type, const void *w, const ck_block_q8 *x, float *y,
                               int64_t cols, int64_t r0, int64_t r1) {
    (void)type; (void)w; (void)x; (void)y; (void)cols; (void)r0; (void)r1;
    return 0;
}
int ck_matmul_repacked_q8_vnni(int type, const void *w, const ck_block_q8 *x, int64_t n, float *y, int64_t ldy,
                               int64_t cols, int64_t r0, int64_t r1) {
    (void)type; (void)w; (void)x; (void)n; (void)y; (void)ldy; (void)cols; (void)r0; (void)r1;
    return 0;
}

#endif
