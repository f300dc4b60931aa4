// CKernels: the heavy math of Scroll, in C so it is compiled optimized even in debug builds.
//
// Conventions (as in ggml/llama.cpp):
// - A weight matrix is row-major [rows][cols] ("GGUF shape [cols, rows]"); each row is
//   cols/block_size quantized blocks laid end to end.
// - Every SIMD kernel has a plain scalar twin named *_ref; tests hold them together.
// - Activations are f32. The "float path" (dot_*_f32) dequantizes weights on the fly and
//   never quantizes activations: it is the reference the fast paths are measured against.
#ifndef CKERNELS_H
#define CKERNELS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

// ggml type ids, as stored in GGUF tensor infos.
enum ck_type {
    CK_TYPE_F32  = 0,
    CK_TYPE_F16  = 1,
    CK_TYPE_Q4_0 = 2,
    CK_TYPE_Q4_1 = 3,
    CK_TYPE_Q5_0 = 6,
    CK_TYPE_Q8_0 = 8,
    CK_TYPE_Q4_K = 12,
    CK_TYPE_Q6_K = 14,
};

// Elements per block and bytes per block; 0 for a type these kernels do not support.
int ck_type_block_size(int type);
size_t ck_type_block_bytes(int type);

// IEEE half <-> float.
float ck_fp16_to_fp32(uint16_t h);
uint16_t ck_fp32_to_fp16(float f);

// Dequantize n elements (a multiple of the block size) of the given type into y[n].
// Returns 0 on success, -1 for an unsupported type.
int ck_dequantize_row(int type, const void *x, float *y, int64_t n);

// Float-path dot product: sum_i w[i] * x[i] for one row of n elements of the given type.
float ck_dot_row_f32(int type, const void *row, const float *x, int64_t n);
float ck_dot_row_f32_ref(int type, const void *row, const float *x, int64_t n);

// Float-path matrix-vector product: y[r] = dot(row r of w, x) for r in [row_begin, row_end).
// w: [rows][cols] of `type`, x: [cols], y: [rows].
void ck_matvec_f32(int type, const void *w, const float *x, float *y,
                   int64_t cols, int64_t row_begin, int64_t row_end);

// ---- elementwise ops (ops.c) ----

// out[n] = x[n] / rms(x) * weight[n]
void ck_rmsnorm(float *out, const float *x, const float *weight, int n, float eps);
// In-place softmax over x[n].
void ck_softmax(float *x, int n);
// SwiGLU: gate[n] = silu(gate[n]) * up[n]
void ck_swiglu(float *gate, const float *up, int n);
// y[n] += x[n]
void ck_add(float *y, const float *x, int n);

// RoPE on one head vector of head_dim elements, using precomputed cos/sin tables of
// head_dim/2 entries for the token's position.
// mode 0 ("normal", llama.cpp): rotate adjacent pairs (x[2i], x[2i+1]).
// mode 2 ("neox", rotate-half):  rotate pairs (x[i], x[i + head_dim/2]).
void ck_rope(float *x, int head_dim, const float *cos_t, const float *sin_t, int mode);

// Attention of one query head over n_keys cached keys/values of one KV head.
// q: [head_dim], keys: n_keys rows of stride key_stride floats, values likewise,
// scores: scratch [n_keys], out: [head_dim]. scale multiplies q·k before the softmax.
void ck_attend_head(const float *q, const float *keys, const float *values,
                    int64_t n_keys, int head_dim, int64_t key_stride, int64_t value_stride,
                    float scale, float *scores, float *out);

#ifdef __cplusplus
}
#endif

#endif
