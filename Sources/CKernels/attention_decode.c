// One token's attention over runs of keys, split across the pool: the one decoding path.
//
// Every run (the cache's sinks, its window, the block memory's recalled blocks and the block
// being filled, the token itself) is split evenly over the threads, so the work is balanced
// whatever the runs' lengths; each thread keeps one running partial per query head and the
// caller merges the threads' partials (ck_partial_merge). Decoding without a memory used a
// second driver that split only the cache's slots; one driver keeps one rule for both.
#include <math.h>
#include <string.h>

#include "ckernels.h"

struct segments_task {
    const float *q_sink, *q;
    const ck_kv_segment *segs;
    const int *seg_offsets;
    float *scratch;
    int64_t scratch_stride;
    int n_heads, n_kv_heads, head_dim;
    float scale;
};

// A thread's scratch: its running partial — m [n_heads], l [n_heads], acc [n_heads][head_dim] —
// then one call's partial — m, l [group], acc [group][head_dim] —, then scores.
static void segments_slice(void *p, int index, int n) {
    const struct segments_task *t = p;
    const int group = t->n_heads / t->n_kv_heads, hd = t->head_dim;
    float *m = t->scratch + (int64_t)index * t->scratch_stride, *l = m + t->n_heads, *acc = l + t->n_heads;
    float *cm = acc + (int64_t)t->n_heads * hd, *cl = cm + group, *cacc = cl + group, *scores = cacc + (int64_t)group * hd;
    const int64_t cap = (t->scratch_stride - (scores - (t->scratch + (int64_t)index * t->scratch_stride))) / group;
    for (int h = 0; h < t->n_heads; h++) { m[h] = -INFINITY; l[h] = 0; }
    memset(acc, 0, sizeof(float) * t->n_heads * hd);
    for (int kvh = 0; kvh < t->n_kv_heads; kvh++) {
        const int h0 = kvh * group;
        for (int si = t->seg_offsets[kvh]; si < t->seg_offsets[kvh + 1]; si++) {
            const ck_kv_segment *s = &t->segs[si];
            const ck_kv_view view = { s->type, s->keys, s->values, s->key_scales, s->value_scales, s->count };
            // This thread's share of the run, in pieces that fit the scores scratch.
            const int64_t k0 = s->count * index / n, k1 = s->count * (index + 1) / n;
            for (int64_t a = k0; a < k1; a += cap) {
                const int64_t b = a + cap < k1 ? a + cap : k1;
                ck_attend_partial(t->q_sink + (int64_t)h0 * hd, t->q + (int64_t)h0 * hd, group,
                                  s->sink_query ? s->count : 0, &view, 0, a, b, hd, t->scale, scores, cm, cl, cacc);
                ck_partial_merge(m + h0, l + h0, acc + (int64_t)h0 * hd, cm, cl, cacc, group, hd);
            }
        }
    }
}

int64_t ck_pool_attend_segments_scratch(int n_heads, int n_kv_heads, int head_dim, int64_t max_keys) {
    const int group = n_heads / n_kv_heads;
    return (int64_t)(n_heads + group) * (head_dim + 2) + (int64_t)group * max_keys;
}

void ck_pool_attend_segments(ck_pool *pool, const float *q_sink, const float *q,
                             const ck_kv_segment *segs, const int *seg_offsets,
                             int n_heads, int n_kv_heads, int head_dim, float scale,
                             float *scratch, int64_t scratch_stride, float *out) {
    // Below 16 keys per KV head and thread the calling thread does it all: a dispatch and a
    // merge cost more than the split saves (the bound the cache-only driver had; the first
    // tokens of every reply start below it, 30 attention calls a token).
    int64_t keys = 0;
    for (int i = 0; i < seg_offsets[n_kv_heads]; i++) keys += segs[i].count;
    const int threads = keys >= (int64_t)16 * ck_pool_size(pool) * n_kv_heads ? ck_pool_size(pool) : 1;
    struct segments_task t = { q_sink, q, segs, seg_offsets, scratch, scratch_stride,
                               n_heads, n_kv_heads, head_dim, scale };
    if (threads == 1) segments_slice(&t, 0, 1);
    else ck_pool_run(pool, segments_slice, &t);
    // The other threads' partials into thread 0's, then normalized.
    float *m = scratch, *l = m + n_heads, *acc = l + n_heads;
    for (int s = 1; s < threads; s++) {
        const float *m2 = scratch + (int64_t)s * scratch_stride, *l2 = m2 + n_heads, *acc2 = l2 + n_heads;
        ck_partial_merge(m, l, acc, m2, l2, acc2, n_heads, head_dim);
    }
    ck_partial_finish(l, acc, n_heads, head_dim, out);
}
