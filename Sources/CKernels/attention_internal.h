// Internal declarations shared by the attention kernel files (not part of the public API).
#ifndef CK_ATTENTION_INTERNAL_H
#define CK_ATTENTION_INTERNAL_H

#include "ckernels.h"

// The AVX-512 decode kernel (attention_avx512.c): ck_attend_partial's contract; 1 if it ran,
// 0 if it does not apply (CPU, head_dim not a multiple of 64 or above 256, group above 16).
int ck_attend_partial_avx512(const float *q_sink, const float *q, int group, int64_t n_sink,
                             const ck_kv_view *kv, int kv_head, int64_t k0, int64_t k1, int head_dim,
                             float scale, float *scores, float *m, float *l, float *acc);

// The AVX2 decode kernel (attention_avx2.c), the same contract; 0 without AVX2/FMA/F16C or
// when head_dim is not a multiple of 32 or above 512.
int ck_attend_partial_avx2(const float *q_sink, const float *q, int group, int64_t n_sink,
                           const ck_kv_view *kv, int kv_head, int64_t k0, int64_t k1, int head_dim,
                           float scale, float *scores, float *m, float *l, float *acc);

#endif
