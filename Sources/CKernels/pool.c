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
