/*
 * Which BLAS runs the matrix products, with which kernels and threads, and
 * whether OpenBLAS picked kernels below what the CPU can do.
 *
 * OpenBLAS built with DYNAMIC_ARCH chooses its kernels when it loads, from
 * the CPU model. A release older than the CPU does not know the model and
 * falls back to a generic kernel set (Prescott: SSE3 only), which a caller
 * only notices as slowness; the recommendation here makes it visible.
 * Which OpenBLAS it is (the system's or the scipy-openblas32 wheel's) is
 * fixed when the library is built, see blas.h.
 */
#include "blas.h"
#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include "internal.h"

/* Widest vector instruction set a kernel set uses, or the CPU offers; higher is wider. */
typedef enum isa_rank { ISA_UNKNOWN = 0, ISA_SSE2, ISA_AVX, ISA_AVX2, ISA_AVX512 } isa_rank;

typedef struct core_isa {
    const char *core;
    isa_rank isa;
} core_isa;

/* OpenBLAS's x86-64 core names (as openblas_get_corename spells them) and the widest ISA their kernels use. */
static const core_isa CORE_ISAS[] = {
    {"skylakex", ISA_AVX512},    {"cooperlake", ISA_AVX512}, {"sapphirerapids", ISA_AVX512},
    {"haswell", ISA_AVX2},       {"zen", ISA_AVX2},          {"sandybridge", ISA_AVX},
    {"bulldozer", ISA_AVX},      {"piledriver", ISA_AVX},    {"steamroller", ISA_AVX},
    {"excavator", ISA_AVX},      {"prescott", ISA_SSE2},     {"core2", ISA_SSE2},
    {"penryn", ISA_SSE2},        {"dunnington", ISA_SSE2},   {"nehalem", ISA_SSE2},
    {"atom", ISA_SSE2},          {"nano", ISA_SSE2},         {"opteron", ISA_SSE2},
    {"opteron_sse3", ISA_SSE2},  {"barcelona", ISA_SSE2},    {"bobcat", ISA_SSE2},
    /* OpenBLAS 0.3.34 (scipy-openblas32) runs this generic set when asked for Prescott or Core2. */
    {"katmai", ISA_SSE2},
};

static const char *const ISA_NAMES[] = {"", "sse2", "avx", "avx2", "avx512"};

/* What to set OPENBLAS_CORETYPE to for kernels that use a given ISA. */
static const char *const CORETYPE_FOR_ISA[] = {NULL, NULL, "Sandybridge", "Haswell", "SkylakeX"};

static bool equal_ignoring_case(const char *a, const char *b)
{
    for (; *a != '\0' && *b != '\0'; a++, b++) {
        if (tolower((unsigned char)*a) != tolower((unsigned char)*b))
            return false;
    }
    return *a == *b;
}

static isa_rank core_rank(const char *core)
{
    for (size_t i = 0; i < sizeof CORE_ISAS / sizeof CORE_ISAS[0]; i++) {
        if (equal_ignoring_case(core, CORE_ISAS[i].core))
            return CORE_ISAS[i].isa;
    }
    return ISA_UNKNOWN;
}

static isa_rank isa_rank_of(const char *name)
{
    for (int rank = ISA_SSE2; rank <= ISA_AVX512; rank++) {
        if (strcmp(name, ISA_NAMES[rank]) == 0)
            return (isa_rank)rank;
    }
    return ISA_UNKNOWN;
}

const char *eb_blas_recommended_coretype(const char *core, const char *cpu_vector_isa)
{
    if (core == NULL || cpu_vector_isa == NULL)
        return NULL;
    isa_rank kernels = core_rank(core), cpu = isa_rank_of(cpu_vector_isa);
    if (kernels == ISA_UNKNOWN || cpu == ISA_UNKNOWN || cpu <= kernels)
        return NULL;
    return CORETYPE_FOR_ISA[cpu];
}

static isa_rank cpu_rank(void)
{
#if defined(__x86_64__) && defined(__GNUC__)
    /* OpenBLAS's SkylakeX kernels need the byte/word and 512-bit forms of the AVX-512 subsets, not only F. */
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl"))
        return ISA_AVX512;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        return ISA_AVX2;
    if (__builtin_cpu_supports("avx"))
        return ISA_AVX;
    return ISA_SSE2;
#else
    return ISA_UNKNOWN;
#endif
}

static void copy_field(char *dst, size_t size, const char *src)
{
    snprintf(dst, size, "%s", src == NULL ? "" : src);
}

/* "OpenBLAS 0.3.21 NO_LAPACKE DYNAMIC_ARCH ..." -> "0.3.21": the build string's second word. */
static void version_from_build(const char *build, char *version, size_t size)
{
    const char *start = strchr(build, ' ');
    version[0] = '\0';
    if (start == NULL)
        return;
    start++;
    size_t length = strcspn(start, " ");
    if (length >= size)
        length = size - 1;
    memcpy(version, start, length);
    version[length] = '\0';
}

eb_status eb_blas_info(eb_blas_config *out)
{
    if (out == NULL)
        return EB_ERR_NULL_POINTER;
    memset(out, 0, sizeof *out);
    copy_field(out->cpu_vector_isa, sizeof out->cpu_vector_isa, ISA_NAMES[cpu_rank()]);
#ifdef OPENBLAS_VERSION
    copy_field(out->library, sizeof out->library, EB_BLAS_LIBRARY_NAME);
    copy_field(out->build, sizeof out->build, openblas_get_config());
    version_from_build(out->build, out->version, sizeof out->version);
    copy_field(out->core, sizeof out->core, openblas_get_corename());
    static const char *const THREADING[] = {"sequential", "pthreads", "OpenMP"};
    int parallel = openblas_get_parallel();
    copy_field(out->threading, sizeof out->threading,
               parallel >= 0 && parallel <= 2 ? THREADING[parallel] : "");
    out->threads = openblas_get_num_threads();
#else
    copy_field(out->library, sizeof out->library, "unknown CBLAS");
#endif
    copy_field(out->recommended_coretype, sizeof out->recommended_coretype,
               eb_blas_recommended_coretype(out->core, out->cpu_vector_isa));
    return EB_OK;
}
