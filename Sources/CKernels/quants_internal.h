// Internal declarations shared by the quant kernel files (not part of the public API).
#ifndef CK_QUANTS_INTERNAL_H
#define CK_QUANTS_INTERNAL_H

#include "ckernels.h"

// Block layouts: see quants.c (Q4_0, Q4_1, Q8_0) and quants_k.c (Q5_0, Q5_1, Q4_K, Q5_K, Q6_K).
// Each type has a dequantizer and a scalar float-path dot product; n is a multiple of
// the type's block size.
void ck_dequant_q5_0(const void *x, float *y, int64_t n);
void ck_dequant_q5_1(const void *x, float *y, int64_t n);
void ck_dequant_q4_K(const void *x, float *y, int64_t n);
void ck_dequant_q5_K(const void *x, float *y, int64_t n);
void ck_dequant_q6_K(const void *x, float *y, int64_t n);
float ck_dot_q5_0_f32_ref(const void *x, const float *v, int64_t n);
float ck_dot_q5_1_f32_ref(const void *x, const float *v, int64_t n);
float ck_dot_q4_K_f32_ref(const void *x, const float *v, int64_t n);
float ck_dot_q5_K_f32_ref(const void *x, const float *v, int64_t n);
float ck_dot_q6_K_f32_ref(const void *x, const float *v, int64_t n);
// The codes and scales the int8 copies are made of (ck_make_int8_copy): per 32 weights, the
// unsigned codes (0..15 or 0..31) and w = mul·code − off.
void ck_q5_0_sub_blocks(const void *x, int64_t n, uint8_t *codes, float *mul, float *off);
void ck_q5_1_sub_blocks(const void *x, int64_t n, uint8_t *codes, float *mul, float *off);
void ck_q4_K_sub_blocks(const void *x, int64_t n, uint8_t *codes, float *mul, float *off);
void ck_q5_K_sub_blocks(const void *x, int64_t n, uint8_t *codes, float *mul, float *off);
// Q6_K: codes 0..63 and w = scale16[element / 16]·(code − 32).
void ck_q6_K_sub_blocks(const void *x, int64_t n, uint8_t *codes, float *scale16);

// Repacked layouts (quants_repack.c); whole rows only.
void ck_dequant_repacked(int type, const void *row, float *y, int64_t n);
float ck_dot_repacked_f32_ref(int type, const void *row, const float *x, int64_t n);
float ck_dot_repacked_q8_ref(int type, const void *row, const ck_block_q8 *x, int64_t n);
void ck_matvec_repacked_q8(int type, const void *w, const ck_block_q8 *x, float *y,
                           int64_t cols, int64_t r0, int64_t r1);
// The AVX-512 VNNI kernels (quants_repack_vnni.c): 1 if they ran, 0 if they do not apply.
int ck_matvec_repacked_q8_vnni(int type, const void *w, const ck_block_q8 *x, float *y,
                               int64_t cols, int64_t r0, int64_t r1);
int ck_matmul_repacked_q8_vnni(int type, const void *w, const ck_block_q8 *x, int64_t n, float *y, int64_t ldy,
                               int64_t cols, int64_t r0, int64_t r1);

#endif
