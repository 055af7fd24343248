/* The pluggable allocator: every byte the library holds comes through here. */
#include <stdlib.h>

#include "internal.h"

static void *system_calloc(void *ctx, size_t count, size_t size)
{
    (void)ctx;
    return calloc(count, size);
}

static void system_free(void *ctx, void *ptr)
{
    (void)ctx;
    free(ptr);
}

static const eb_allocator system_allocator = {system_calloc, system_free, NULL};

const eb_allocator *eb_default_allocator(void)
{
    return &system_allocator;
}

bool eb__mul_size(size_t a, size_t b, size_t *out)
{
    if (a != 0 && b > SIZE_MAX / a)
        return false;
    *out = a * b;
    return true;
}

void *eb__calloc(const eb_allocator *mem, size_t count, size_t size)
{
    size_t total;
    if (count == 0 || size == 0 || !eb__mul_size(count, size, &total))
        return NULL;
    return mem->calloc(mem->ctx, count, size);
}

void eb__free(const eb_allocator *mem, void *ptr)
{
    if (ptr != NULL)
        mem->free(mem->ctx, ptr);
}
