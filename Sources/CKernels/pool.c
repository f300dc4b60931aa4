// A persistent worker pool: threads are created once and wait for work by spinning
// briefly, then sleeping. A token's forward pass dispatches ~200 matrix products a few
// microseconds apart; creating threads or waking sleeping ones for each would cost more
// than the products themselves, which is why the workers spin first.
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "ckernels.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define CPU_RELAX() _mm_pause()
#else
#define CPU_RELAX() ((void)0)
#endif

// Spins before a worker sleeps: ~1 ms of pauses, longer than the gap between two
// dispatches of one token, far shorter than a user's think time.
#define SPIN_LIMIT 20000

struct ck_pool {
    int n_threads;                 // including the caller
    pthread_t *threads;
    pthread_mutex_t mutex;
    pthread_cond_t wake;
    atomic_uint generation;        // bumped once per dispatch
    atomic_int pending;            // workers still running the current task
    atomic_int stop;
    ck_task_fn fn;
    void *ctx;
};

struct worker_arg { ck_pool *pool; int index; };

static void *worker_main(void *p) {
    struct worker_arg arg = *(struct worker_arg *)p;
    free(p);
    ck_pool *pool = arg.pool;
    unsigned seen = 0;
    for (;;) {
        int spins = 0;
        while (atomic_load_explicit(&pool->generation, memory_order_acquire) == seen) {
            if (++spins < SPIN_LIMIT) {
                if (spins % 1024 == 0) sched_yield(); // let a busy core's other work run
                else CPU_RELAX();
                continue;
            }
            pthread_mutex_lock(&pool->mutex);
            while (atomic_load(&pool->generation) == seen && !atomic_load(&pool->stop)) {
                pthread_cond_wait(&pool->wake, &pool->mutex);
            }
            pthread_mutex_unlock(&pool->mutex);
            spins = 0;
        }
        if (atomic_load(&pool->stop)) return NULL;
        seen = atomic_load(&pool->generation);
        pool->fn(pool->ctx, arg.index, pool->n_threads);
        atomic_fetch_sub_explicit(&pool->pending, 1, memory_order_release);
    }
}

ck_pool *ck_pool_create(int n_threads) {
    if (n_threads < 1) n_threads = 1;
    ck_pool *pool = calloc(1, sizeof *pool);
    if (!pool) return NULL;
    pool->n_threads = n_threads;
    pthread_mutex_init(&pool->mutex, NULL);
    pthread_cond_init(&pool->wake, NULL);
    pool->threads = calloc((size_t)n_threads, sizeof(pthread_t));
    for (int i = 1; i < n_threads; i++) {
        struct worker_arg *arg = malloc(sizeof *arg);
        arg->pool = pool;
        arg->index = i;
        if (pthread_create(&pool->threads[i], NULL, worker_main, arg) != 0) {
            free(arg);
            pool->n_threads = i; // run with the threads we got
            break;
        }
    }
    return pool;
}

int ck_pool_size(const ck_pool *pool) { return pool ? pool->n_threads : 1; }

void ck_pool_run(ck_pool *pool, ck_task_fn fn, void *ctx) {
    if (!pool || pool->n_threads == 1) { fn(ctx, 0, 1); return; }
    pool->fn = fn;
    pool->ctx = ctx;
    atomic_store(&pool->pending, pool->n_threads - 1);
    pthread_mutex_lock(&pool->mutex);
    atomic_fetch_add_explicit(&pool->generation, 1, memory_order_release);
    pthread_cond_broadcast(&pool->wake);
    pthread_mutex_unlock(&pool->mutex);
    fn(ctx, 0, pool->n_threads);
    // Spin briefly, then yield: when another process holds the other core, the worker we
    // wait for may be descheduled, and pure spinning would burn our whole time slice
    // (seen: generation at 3 t/s beside a second Scroll process instead of ~50).
    for (int spins = 0; atomic_load_explicit(&pool->pending, memory_order_acquire) > 0; spins++) {
        if (spins < 4000) CPU_RELAX(); else sched_yield();
    }
}

void ck_pool_destroy(ck_pool *pool) {
    if (!pool) return;
    pthread_mutex_lock(&pool->mutex);
    atomic_store(&pool->stop, 1);
    atomic_fetch_add(&pool->generation, 1);
    pthread_cond_broadcast(&pool->wake);
    pthread_mutex_unlock(&pool->mutex);
    for (int i = 1; i < pool->n_threads; i++) pthread_join(pool->threads[i], NULL);
    pthread_mutex_destroy(&pool->mutex);
    pthread_cond_destroy(&pool->wake);
    free(pool->threads);
    free(pool);
}

// ---- parallel matrix-vector products ----

// Up to three matrices that read the same input (Q/K/V, or gate/up) in one dispatch: the
// rows of all of them form one index space that the threads split, so the 192-row K and V
// products ride along with Q instead of running alone on one core.
struct matvec_task {
    int n;
    const ck_matvec_out *outs;
    const float *x;
    const ck_block_q8 *xq;     // NULL: float path
    int64_t cols, total_rows;
};

// Each thread takes a fixed share of whole 16-row groups (each thread's outputs on their
// own cache lines). Claiming 64-row chunks from a shared counter instead, to ride out a
// descheduled vCPU, measured slower here: tg128 126 against 135 t/s over six paired runs.
static void matvec_slice(void *p, int index, int n) {
    const struct matvec_task *t = p;
    const int64_t groups = (t->total_rows + 15) / 16;
    int64_t r0 = groups * index / n * 16, r1 = groups * (index + 1) / n * 16;
    if (r1 > t->total_rows) r1 = t->total_rows;
    int64_t base = 0;
    for (int m = 0; m < t->n && r0 < r1; m++) {
        const ck_matvec_out *o = &t->outs[m];
        const int64_t lo = r0 > base ? r0 - base : 0, hi = r1 - base < o->rows ? r1 - base : o->rows;
        if (lo < hi) {
            if (t->xq && ck_type_has_q8_path(o->type)) ck_matvec_q8(o->type, o->w, t->xq, o->y, t->cols, lo, hi);
            else ck_matvec_f32(o->type, o->w, t->x, o->y, t->cols, lo, hi);
        }
        base += o->rows;
    }
}

void ck_pool_matvec_multi(ck_pool *pool, const ck_matvec_out *outs, int n, const float *x,
                          ck_block_q8 *xq_scratch, int64_t cols) {
    struct matvec_task t = { n, outs, x, NULL, cols, 0 };
    int any_q8 = 0;
    for (int m = 0; m < n; m++) { t.total_rows += outs[m].rows; any_q8 |= ck_type_has_q8_path(outs[m].type); }
    if (xq_scratch && any_q8) {
        ck_quantize_q8(x, xq_scratch, cols);
        t.xq = xq_scratch;
    }
    // Small products are not worth waking a worker for.
    if (t.total_rows < 256) { matvec_slice(&t, 0, 1); return; }
    ck_pool_run(pool, matvec_slice, &t);
}

void ck_pool_matvec(ck_pool *pool, int type, const void *w, const float *x,
                    ck_block_q8 *xq_scratch, float *y, int64_t cols, int64_t rows) {
    const ck_matvec_out out = { type, w, y, rows };
    ck_pool_matvec_multi(pool, &out, 1, x, xq_scratch, cols);
}

// ---- parallel attention of one token over the cache ----

// The threads split the keys; each runs every query group over its share (attention.c,
// ck_attend_partial) and the caller merges the partials.
struct attention_task {
    const float *q_sink, *q;
    const ck_kv_view *kv;
    float *scratch, *out;
    int64_t n_sink, n_keys, scratch_stride;
    int n_heads, n_kv_heads, head_dim, n_split;
    float scale;
};

// A thread's scratch: scores [group][its keys], then m [n_heads], l [n_heads], acc [n_heads][head_dim].
static float *partials(const struct attention_task *t, int index) {
    const int group = t->n_heads / t->n_kv_heads;
    return t->scratch + (int64_t)index * t->scratch_stride + group * ((t->n_keys + t->n_split - 1) / t->n_split);
}

static void attention_slice(void *p, int index, int n) {
    (void)n;
    const struct attention_task *t = p;
    if (index >= t->n_split) return;
    const int group = t->n_heads / t->n_kv_heads, hd = t->head_dim;
    const int64_t k0 = t->n_keys * index / t->n_split, k1 = t->n_keys * (index + 1) / t->n_split;
    float *scores = t->scratch + (int64_t)index * t->scratch_stride;
    float *m = partials(t, index), *l = m + t->n_heads, *acc = l + t->n_heads;
    for (int kvh = 0; kvh < t->n_kv_heads; kvh++) {
        const int h0 = kvh * group;
        ck_attend_partial(t->q_sink + (int64_t)h0 * hd, t->q + (int64_t)h0 * hd, group, t->n_sink, t->kv, kvh,
                          k0, k1, hd, t->scale, scores, m + h0, l + h0, acc + (int64_t)h0 * hd);
    }
}

void ck_pool_attention(ck_pool *pool, const float *q_sink, const float *q, int64_t n_sink,
                       const ck_kv_view *kv, int64_t n_keys,
                       int n_heads, int n_kv_heads, int head_dim, float scale,
                       float *scores, int64_t scores_stride, float *out) {
    const int threads = ck_pool_size(pool);
    // Below 16 keys a thread the merge costs more than the split saves. (The bound was 64,
    // for waking a worker; but while decoding the workers are awake, spinning between the
    // matrix products, and tg128 — 128 tokens from an empty cache — ran all its attention
    // on the calling thread while the other core spun: 5% of its samples against 0.)
    const int n_split = n_keys >= 16 * threads ? threads : 1;
    struct attention_task t = { q_sink, q, kv, scores, out, n_sink, n_keys, scores_stride,
                                n_heads, n_kv_heads, head_dim, n_split, scale };
    if (n_split == 1) attention_slice(&t, 0, 1);
    else ck_pool_run(pool, attention_slice, &t);
    // Merge: out_h = Σ_s e^(m_s − M) acc_s / Σ_s e^(m_s − M) l_s over the splits s.
    for (int h = 0; h < n_heads; h++) {
        float mx = -INFINITY;
        for (int s = 0; s < n_split; s++) { const float ms = partials(&t, s)[h]; mx = ms > mx ? ms : mx; }
        float denom = 0, *o = out + (int64_t)h * head_dim;
        for (int i = 0; i < head_dim; i++) o[i] = 0;
        for (int s = 0; s < n_split; s++) {
            const float *m = partials(&t, s), *l = m + n_heads, *acc = l + n_heads + (int64_t)h * head_dim;
            const float w = expf(m[h] - mx);
            denom += w * l[h];
            for (int i = 0; i < head_dim; i++) o[i] += w * acc[i];
        }
        const float inv = 1 / denom;
        for (int i = 0; i < head_dim; i++) o[i] *= inv;
    }
}

// ---- one token's attention over runs of keys (the cache plus the block memory) ----

struct segments_task {
    const float *q_sink, *q;
    const ck_kv_segment *segs;
    const int *seg_offsets;
    float *scratch, *out;
    int64_t scratch_stride;
    int n_heads, n_kv_heads, head_dim;
    float scale;
};

// A thread's scratch: m [n_heads], l [n_heads], acc [n_heads][head_dim] (its running
// partial), then one call's m, l [group] and acc [group][head_dim], then scores.
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
                // Merge into the running partial (the same rule as ck_pool_attention's merge).
                for (int g = 0; g < group; g++) {
                    const int h = h0 + g;
                    if (cm[g] == -INFINITY) continue;
                    const float mx = cm[g] > m[h] ? cm[g] : m[h];
                    const float wa = m[h] == -INFINITY ? 0 : expf(m[h] - mx), wb = expf(cm[g] - mx);
                    float *o = acc + (int64_t)h * hd;
                    const float *c = cacc + (int64_t)g * hd;
                    for (int i = 0; i < hd; i++) o[i] = o[i] * wa + c[i] * wb;
                    l[h] = l[h] * wa + cl[g] * wb;
                    m[h] = mx;
                }
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
    const int threads = ck_pool_size(pool);
    struct segments_task t = { q_sink, q, segs, seg_offsets, scratch, out, scratch_stride,
                               n_heads, n_kv_heads, head_dim, scale };
    if (threads == 1) segments_slice(&t, 0, 1);
    else ck_pool_run(pool, segments_slice, &t);
    for (int h = 0; h < n_heads; h++) {
        float mx = -INFINITY;
        for (int s = 0; s < threads; s++) { const float ms = (scratch + (int64_t)s * scratch_stride)[h]; mx = ms > mx ? ms : mx; }
        float denom = 0, *o = out + (int64_t)h * head_dim;
        for (int i = 0; i < head_dim; i++) o[i] = 0;
        for (int s = 0; s < threads; s++) {
            const float *m = scratch + (int64_t)s * scratch_stride, *l = m + n_heads, *acc = l + n_heads + (int64_t)h * head_dim;
            if (m[h] == -INFINITY) continue;
            const float w = expf(m[h] - mx);
            denom += w * l[h];
            for (int i = 0; i < head_dim; i++) o[i] += w * acc[i];
        }
        const float inv = denom > 0 ? 1 / denom : 0;
        for (int i = 0; i < head_dim; i++) o[i] *= inv;
    }
}
