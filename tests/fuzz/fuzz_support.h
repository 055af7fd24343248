/* What the fuzz targets share: invariant checks and an allocator that fails on demand. */
#ifndef EMBETTER_FUZZ_SUPPORT_H
#define EMBETTER_FUZZ_SUPPORT_H

#include <stdio.h>
#include <stdlib.h>

/* A failure of an invariant: report it the way libFuzzer records crashes. */
#define REQUIRE(condition)                                                                  \
    do {                                                                                    \
        if (!(condition)) {                                                                 \
            fprintf(stderr, "%s:%d: invariant violated: %s\n", __FILE__, __LINE__, #condition); \
            abort();                                                                        \
        }                                                                                   \
    } while (0)

/* An allocator that fails allocation number fail_at and counts what is live. */
typedef struct failing_allocator {
    size_t attempts;
    size_t fail_at;
    size_t live;
} failing_allocator;

static void *failing_calloc(void *ctx, size_t count, size_t size)
{
    failing_allocator *a = ctx;
    if (a->attempts++ == a->fail_at)
        return NULL;
    void *p = calloc(count, size);
    if (p != NULL)
        a->live++;
    return p;
}

static void failing_free(void *ctx, void *ptr)
{
    failing_allocator *a = ctx;
    if (ptr != NULL) {
        a->live--;
        free(ptr);
    }
}

#endif
