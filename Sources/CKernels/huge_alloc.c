// Large buffers that decoding streams through every token — the repacked weights, the KV
// cache — on transparent huge pages where the kernel gives them. Decoding streams ~98 MB of
// weights per token; on 4 KiB pages that is ~24,000 pages a
// token, far beyond the TLB, and this host's THP setting is "madvise", so without asking
// no allocation gets 2 MiB pages.
#define _GNU_SOURCE
#include <stdlib.h>
#include <sys/mman.h>

#include "ckernels.h"

#define HUGE_PAGE ((size_t)2 << 20)

void *ck_alloc_huge(size_t bytes) {
    const size_t rounded = (bytes + HUGE_PAGE - 1) / HUGE_PAGE * HUGE_PAGE;
    void *p = aligned_alloc(HUGE_PAGE, rounded ? rounded : HUGE_PAGE);
#ifdef MADV_HUGEPAGE
    if (p) (void)madvise(p, rounded, MADV_HUGEPAGE);   // a hint: refused or not, the buffer works
#endif
    return p;
}

void ck_free_huge(void *p) { free(p); }
