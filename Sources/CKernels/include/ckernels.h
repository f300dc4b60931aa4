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
    CK_TYPE_Q5_1 = 7,
    CK_TYPE_Q8_0 = 8,
    CK_TYPE_Q4_K = 12,
    CK_TYPE_Q5_K = 13,
    CK_TYPE_Q6_K = 14,
    // Scroll's own row layouts for the int8 kernels (quants_repack.c), never stored in a file;
    // functions on them take whole rows. Q4_1X and Q8_0X: Q4_1 and Q8_0 repacked (same bytes
    // per row); Q5_1X: 5-bit codes with a scale and a min per 32 weights, the copy of Q5_0 and
    // Q5_K matrices (24 bytes a block); Q6_0X: 6-bit codes with a scale per 16 weights, the copy
    // of Q6_K matrices (28 bytes a block).
    CK_TYPE_Q4_1X = 1003,
    CK_TYPE_Q6_0X = 1005,
    CK_TYPE_Q5_1X = 1007,
    CK_TYPE_Q8_0X = 1008,
};

// The repacked type for `type` at this row length (the type itself if none applies).
int ck_repacked_type(int type, int64_t cols);
// Copies rows of `type` into the repacked layout (dst has the same size as src).
void ck_repack_rows(int type, const void *src, void *dst, int64_t cols, int64_t rows);
// The int8 kernels' copy of a type with none of its own (quants_repack.c): Q4_K → Q4_1X,
// Q5_K → Q5_1X and Q6_K → Q6_0X (scales and mins rounded to f16), Q5_0 and Q5_1 → Q5_1X (exact). ck_int8_copy_type: the copy's layout (`type` if none).
// ck_make_int8_copy: dst holds rows · cols/32 · ck_type_block_bytes(copy type) bytes; needs
// cols % 64 == 0. Returns 0, or -1 when the weights do not fit the copy (a scale beyond f16).
int ck_int8_copy_type(int type);
int ck_make_int8_copy(int type, const void *src, void *dst, int64_t cols, int64_t rows);
// A large buffer (2 MiB-aligned, transparent huge pages requested: repacked weights, the KV
// cache), freed with ck_free_huge. NULL when out of memory.
void *ck_alloc_huge(size_t bytes);
void ck_free_huge(void *p);
// Whether the AVX-512 VNNI decode kernels run (quants_repack_vnni.c): the CPU has them and
// they are allowed. Tests turn them off to compare the AVX2 kernels; returns the old value.
int ck_has_avx512vnni(void);
int ck_set_avx512_allowed(int allowed);

// Elements per block and bytes per block; 0 for a type these kernels do not support.
int ck_type_block_size(int type);
size_t ck_type_block_bytes(int type);

// IEEE half <-> float.
float ck_fp16_to_fp32(uint16_t h);
uint16_t ck_fp32_to_fp16(float f);

// The first of n elements (a multiple of the block size) of the given type whose value or
// block scale is NaN or infinite, or -1 if none (file types only, not the repacked ones).
int64_t ck_find_nonfinite(int type, const void *x, int64_t n);

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

// ---- the fast path: int8 activations (quants_q8.c) ----

// 32 activations quantized to int8: x[j] ≈ d·qs[j]; s = d·Σqs[j] (lets Q4_0/Q4_1 fold their
// offset or min into one multiply per block).
typedef struct { float d; float s; int8_t qs[32]; } ck_block_q8;

// x[n] → y[n/32] blocks (n a multiple of 32).
void ck_quantize_q8(const float *x, ck_block_q8 *y, int64_t n);
void ck_quantize_q8_ref(const float *x, ck_block_q8 *y, int64_t n);

// Whether `type` has an int8 dot (Q4_0, Q4_1, Q8_0 and the repacked layouts); other types use
// the float path.
int ck_type_has_q8_path(int type);
float ck_dot_row_q8(int type, const void *row, const ck_block_q8 *x, int64_t n);
float ck_dot_row_q8_ref(int type, const void *row, const ck_block_q8 *x, int64_t n);
void ck_matvec_q8(int type, const void *w, const ck_block_q8 *x, float *y,
                  int64_t cols, int64_t row_begin, int64_t row_end);
// y[t][r] (row stride ldy) = row r of W · x_t for the n tokens of x ([n][cols/32] blocks),
// rows in [row_begin, row_end): ck_matvec_q8 for each token — bit for bit, except Q4_1X
// with AVX-512 VNNI, whose micro-kernel (each group of four weight rows read once for all
// n tokens) adds the same block products in another order.
void ck_matmul_q8(int type, const void *w, const ck_block_q8 *x, int64_t n, float *y, int64_t ldy,
                  int64_t cols, int64_t row_begin, int64_t row_end);

// ---- worker pool (pool.c) ----

typedef struct ck_pool ck_pool;
// fn(ctx, index, n) runs on every thread; index 0 is the caller.
typedef void (*ck_task_fn)(void *ctx, int index, int n);

// A pool of n_threads (the caller counts as one; n_threads − 1 workers are created).
ck_pool *ck_pool_create(int n_threads);
void ck_pool_destroy(ck_pool *pool);
int ck_pool_size(const ck_pool *pool);
// Runs fn on all threads and returns when all are done. pool may be NULL (runs inline).
void ck_pool_run(ck_pool *pool, ck_task_fn fn, void *ctx);

// y[rows] = W·x split across the pool. With xq_scratch ([cols/32] blocks) and a type that
// has one, the int8 path is used; with xq_scratch NULL, the float path.
void ck_pool_matvec(ck_pool *pool, int type, const void *w, const float *x,
                    ck_block_q8 *xq_scratch, float *y, int64_t cols, int64_t rows);

// One matrix of a fused product: y[rows] = w·x.
typedef struct { int type; const void *w; float *y; int64_t rows; } ck_matvec_out;

// Several products of the same input x[cols] (Q/K/V; gate/up) in one dispatch.
void ck_pool_matvec_multi(ck_pool *pool, const ck_matvec_out *outs, int n, const float *x,
                          ck_block_q8 *xq_scratch, int64_t cols);


// ---- elementwise ops (ops.c) ----

// out[n] = x[n] / rms(x) * weight[n]
void ck_rmsnorm(float *out, const float *x, const float *weight, int n, float eps);
// In-place softmax over x[n].
void ck_softmax(float *x, int n);
// log softmax(x)[target] over x[n], for perplexity.
float ck_log_softmax_at(const float *x, int n, int target);
// SwiGLU: gate[n] = silu(gate[n]) * up[n]
void ck_swiglu(float *gate, const float *up, int n);
// gate[i] = gelu(gate[i]) · up[i], GELU in its tanh form (Gemma's FFN); AVX2 where the CPU
// has it, held to the scalar twin by QuantTests.
void ck_geglu(float *gate, const float *up, int n);
void ck_geglu_ref(float *gate, const float *up, int n);
void ck_scale(float *y, float s, int n);
// y[n] += x[n]
void ck_add(float *y, const float *x, int n);

// RoPE on one head vector of head_dim elements, using precomputed cos/sin tables of
// head_dim/2 entries for the token's position.
// mode 0 ("normal", llama.cpp): rotate adjacent pairs (x[2i], x[2i+1]).
// mode 2 ("neox", rotate-half):  rotate pairs (x[i], x[i + head_dim/2]).
void ck_rope(float *x, int head_dim, const float *cos_t, const float *sin_t, int mode);

// ---- attention over the KV cache (attention.c) ----

// The plain reference: one query head over n_keys cached keys/values of one KV head; keys
// 0 … n_sink−1 (the attention sinks) are scored with q_sink, the rest with q — the same
// query rotated to two positions (see KVCache.swift). One softmax over all keys.
// keys/values: n_keys rows of stride key_stride/value_stride floats; scores: scratch
// [n_keys]; out: [head_dim]. scale multiplies q·k before the softmax. The decode path
// (ck_pool_attend_segments → ck_attend_partial) is held to it by tests.
void ck_attend_head_ref(const float *q_sink, const float *q, int64_t n_sink,
                        const float *keys, const float *values,
                        int64_t n_keys, int head_dim, int64_t key_stride, int64_t value_stride,
                        float scale, float *scores, float *out);

// Int8 cache rows: head_dim codes with one f32 scale per CK_KV_GROUP of them, x ≈ d·q.
#define CK_KV_GROUP 32
// x[n] → q[n], scales[n/CK_KV_GROUP]; |x − d·q| ≤ d/2 = max|group|/254.
void ck_quantize_kv_row(const float *x, int8_t *q, float *scales, int n);
void ck_dequantize_kv_row(const int8_t *q, const float *scales, float *y, int n);

// Session KV codec (session_codec.c): `rows` rows of d floats → int8 codes laid out
// [group][channel][token in group] and f16 (mean, step) params [group][channel][2], groups of
// CK_SESSION_GROUP tokens; |x − decoded| ≤ step/2 per value. `steps`: rms deviations per step.
#define CK_SESSION_GROUP 64
void ck_session_encode(const float *x, int64_t rows, int d, float steps, int8_t *codes, uint16_t *params);
void ck_session_decode(const int8_t *codes, const uint16_t *params, int64_t rows, int d, float *y);

// One layer of the cache as the attention reads it: per KV head, `capacity` slots of
// head_dim values, f32 or int8 (then with per-group scales).
enum ck_kv_type { CK_KV_F32 = 0, CK_KV_Q8 = 1 };
typedef struct ck_kv_view {
    int type;
    const void *keys, *values;               // [n_kv_heads][capacity][head_dim] f32 or int8
    const float *key_scales, *value_scales;  // int8: [n_kv_heads][capacity][head_dim/32]
    int64_t capacity;
} ck_kv_view;

// The `group` query heads sharing KV head kv_head (q_sink, q: [group][head_dim]) over keys
// [k0, k1) of kv; keys below n_sink are scored with q_sink. Per query head g: m[g] = max
// score, l[g] = Σ exp(s − m[g]), acc[g][head_dim] = Σ exp(s − m[g])·v, unnormalized, so
// partials over disjoint key ranges merge exactly. scores: scratch [group][k1 − k0].
void ck_attend_partial(const float *q_sink, const float *q, int group, int64_t n_sink,
                       const ck_kv_view *kv, int kv_head, int64_t k0, int64_t k1, int head_dim,
                       float scale, float *scores, float *m, float *l, float *acc);
void ck_attend_partial_ref(const float *q_sink, const float *q, int group, int64_t n_sink,
                           const ck_kv_view *kv, int kv_head, int64_t k0, int64_t k1, int head_dim,
                           float scale, float *scores, float *m, float *l, float *acc);
// Merges the n partials (m2, l2, acc2) into (m, l, acc), as if their keys had been one
// range; an empty partial has m = −inf, l = 0. ck_partial_finish: out = acc / l (0 if l = 0).
void ck_partial_merge(float *m, float *l, float *acc, const float *m2, const float *l2, const float *acc2,
                      int n, int head_dim);
void ck_partial_finish(const float *l, const float *acc, int n, int head_dim, float *out);

// ---- a block of queries at once (attention_block.c) ----

// A run of one KV head's keys and values that a block of queries attends to: the cache's
// sinks, its window ring, a chunk's new keys, a recalled memory block.
typedef struct ck_kv_segment {
    int32_t type;                            // CK_KV_F32 or CK_KV_Q8
    int32_t sink_query;                      // 1: scored with the sink-rotated queries
    int32_t windowed;                        // 1: subject to the window rule below
    const void *keys, *values;               // row 0 of the run
    const float *key_scales, *value_scales;  // Q8: head_dim/CK_KV_GROUP scales per row, rows packed
    int64_t row_stride;                      // floats or codes from one row to the next
    int64_t count;
    const int64_t *positions;                // [count] absolute stream position of each key
} ck_kv_segment;

// Floats of scratch ck_attend_block needs (the reference needs 2·head_dim of it).
int64_t ck_attend_block_scratch(int n_q, int group, int head_dim);
// The `group` query heads sharing one KV head, for n_q queries: query t, head g is the row
// q + t·q_stride + g·head_dim (q_sink alike, or NULL when no query needs a separate sink
// rotation), at stream position q_pos[t]. Key p of a segment is visible to query t when
// p ≤ q_pos[t] and, in a windowed segment with window > 0, p < n_sinks or p > q_pos[t] − window.
// out row (t, g) = softmax over all visible keys · values, at out + t·out_stride + g·head_dim.
void ck_attend_block(const float *q, const float *q_sink, int64_t q_stride, int n_q, int group, int head_dim,
                     const int64_t *q_pos, int64_t window, int64_t n_sinks,
                     const ck_kv_segment *segs, int n_segs, float scale, float *scratch,
                     float *out, int64_t out_stride);
void ck_attend_block_ref(const float *q, const float *q_sink, int64_t q_stride, int n_q, int group, int head_dim,
                         const int64_t *q_pos, int64_t window, int64_t n_sinks,
                         const ck_kv_segment *segs, int n_segs, float scale, float *scratch,
                         float *out, int64_t out_stride);

// ---- decoding (attention_decode.c) ----

// One token's attention, all heads, over runs of keys given per KV head: segments
// seg_offsets[kvh] ..< seg_offsets[kvh + 1] of `segs` (f32 or Q8 rows of head_dim, row_stride
// = head_dim; keys of a sink_query run scored with q_sink, the rest with q; no masking). The
// threads split every run; their partials merge (ck_partial_merge). This is all decoding:
// the cache's sinks and window, the block memory's recalled blocks and the block being
// filled, and the token itself, without ck_attend_block's two sgemm calls per tile of keys.
// scratch: [pool size][scratch_stride ≥ ck_pool_attend_segments_scratch(…, a few hundred)];
// longer runs are taken in pieces. out: [n_heads][head_dim].
int64_t ck_pool_attend_segments_scratch(int n_heads, int n_kv_heads, int head_dim, int64_t max_keys);
void ck_pool_attend_segments(ck_pool *pool, const float *q_sink, const float *q,
                             const ck_kv_segment *segs, const int *seg_offsets,
                             int n_heads, int n_kv_heads, int head_dim, float scale,
                             float *scratch, int64_t scratch_stride, float *out);

#ifdef __cplusplus
}
#endif

#endif
