// Decode's matrix products alone, through Scroll's own pool and kernels (Sources/CKernels),
// on random weights of the default model's shapes: per token, for 30 layers, Q/K/V as one
// dispatch, the output projection, gate/up as one dispatch, down; then the Q8_0 output head.
// Prints GB/s of weights streamed for the layers and the head, and the tokens/s those alone
// allow. Built and run by scripts/kernel-bench.sh; none of this is part of the scroll binary.
//
//   kernel_bench [threads=2] [tokens=300] [avx2]     ("avx2": the AVX-512 kernels off)
//
// Each matrix is its own huge-page allocation, as the model's repacked matrices are, and the
// 98 MB of a token's weights exceed the last-level cache, so every token streams from DRAM.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ckernels.h"

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

typedef struct { int type; int64_t rows, cols; void *w; float *y; } matrix;

static size_t row_bytes(int type, int64_t cols) { return (size_t)(cols / ck_type_block_size(type)) * ck_type_block_bytes(type); }

// Random codes; block scales set to small f16 values (random bits could be NaN or subnormal).
static matrix make(int type, int64_t rows, int64_t cols) {
    matrix m = { type, rows, cols, NULL, NULL };
    const size_t rb = row_bytes(type, cols), codes = (size_t)(cols / 32) * (type == CK_TYPE_Q4_1X ? 16 : 32);
    uint8_t *p = ck_alloc_huge(rb * rows);
    if (!p) { fprintf(stderr, "out of memory\n"); exit(1); }
    for (size_t i = 0; i < rb * rows; i++) p[i] = (uint8_t)rand();
    for (int64_t r = 0; r < rows; r++) {
        uint16_t *h = (uint16_t *)(p + r * rb + codes);
        for (size_t j = 0; j < (rb - codes) / 2; j++) h[j] = (uint16_t)(0x2000 + (rand() & 0xff));
    }
    m.w = p;
    m.y = aligned_alloc(64, (size_t)(rows + 15) / 16 * 64);
    return m;
}

static ck_matvec_out out(const matrix *m) { return (ck_matvec_out){ m->type, m->w, m->y, m->rows }; }

int main(int argc, char **argv) {
    const int threads = argc > 1 ? atoi(argv[1]) : 2, tokens = argc > 2 ? atoi(argv[2]) : 300;
    if (argc > 3 && strcmp(argv[3], "avx2") == 0) ck_set_avx512_allowed(0);
    enum { L = 30, D = 576, F = 1536, KV = 192, VOCAB = 49152 };
    const int q4 = CK_TYPE_Q4_1X;
    ck_pool *pool = ck_pool_create(threads);
    matrix wq[L], wk[L], wv[L], wo[L], gate[L], up[L], down[L];
    for (int l = 0; l < L; l++) {
        wq[l] = make(q4, D, D); wk[l] = make(q4, KV, D); wv[l] = make(q4, KV, D); wo[l] = make(q4, D, D);
        gate[l] = make(q4, F, D); up[l] = make(q4, F, D); down[l] = make(q4, D, F);
    }
    matrix head = make(CK_TYPE_Q8_0X, VOCAB, D);
    float *x = aligned_alloc(64, sizeof(float) * F);
    for (int i = 0; i < F; i++) x[i] = (float)(rand() % 2000) / 1000 - 1;
    ck_block_q8 *xq = aligned_alloc(64, sizeof(ck_block_q8) * (F / 32));

    const double layer_bytes = (double)L * (row_bytes(q4, D) * (2 * D + 2 * KV + 2 * F) + row_bytes(q4, F) * D);
    const double head_bytes = (double)row_bytes(CK_TYPE_Q8_0X, D) * VOCAB;
    double t_layers = 0, t_head = 0;
    for (int t = -10; t < tokens; t++) {   // ten untimed tokens first
        const double t0 = now();
        for (int l = 0; l < L; l++) {
            const ck_matvec_out qkv[3] = { out(&wq[l]), out(&wk[l]), out(&wv[l]) }, gu[2] = { out(&gate[l]), out(&up[l]) };
            ck_pool_matvec_multi(pool, qkv, 3, x, xq, D);
            ck_pool_matvec(pool, q4, wo[l].w, x, xq, wo[l].y, D, D);
            ck_pool_matvec_multi(pool, gu, 2, x, xq, D);
            ck_pool_matvec(pool, q4, down[l].w, x, xq, down[l].y, F, D);
        }
        const double t1 = now();
        ck_pool_matvec(pool, head.type, head.w, x, xq, head.y, D, VOCAB);
        const double t2 = now();
        if (t >= 0) { t_layers += t1 - t0; t_head += t2 - t1; }
    }
    printf("threads %d, %s kernels: layers %.1f GB/s, output head %.1f GB/s, %.2f ms a token -> %.1f t/s from the matrices alone\n",
           threads, ck_has_avx512vnni() ? "AVX-512 VNNI" : "AVX2", layer_bytes * tokens / t_layers / 1e9,
           head_bytes * tokens / t_head / 1e9, (t_layers + t_head) / tokens * 1e3, tokens / (t_layers + t_head));
    ck_pool_destroy(pool);
    return 0;
}
