/*
 * libembetter: which BLAS does the matrix products and how it runs, so that
 * benchmarks and bug reports can say which kernels ran.
 */
#ifndef EMBETTER_BLAS_H
#define EMBETTER_BLAS_H

#include "embetter/common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------ */
/* The BLAS underneath                                                      */
/* ------------------------------------------------------------------------ */

/** Size of each text field of eb_blas_config, including the terminating NUL. */
#define EB_BLAS_FIELD_SIZE 64
/** Size of eb_blas_config.build, including the terminating NUL. */
#define EB_BLAS_BUILD_SIZE 256

/**
 * What the BLAS that does the training's matrix products is and how it runs,
 * as it reports itself at the moment of the call. Every text field is
 * NUL-terminated; "" means the BLAS gives no way to ask.
 */
typedef struct eb_blas_config {
    /** "OpenBLAS" (the system's), "scipy-openblas32" (PyPI's wheel), or "unknown CBLAS" for another. */
    char library[EB_BLAS_FIELD_SIZE];
    /** The library's version, e.g. "0.3.21". */
    char version[EB_BLAS_FIELD_SIZE];
    /** The kernel set it runs (OpenBLAS's core name), e.g. "SkylakeX", "Haswell", "Prescott". */
    char core[EB_BLAS_FIELD_SIZE];
    /** Threading layer: "pthreads", "OpenMP" or "sequential". */
    char threading[EB_BLAS_FIELD_SIZE];
    /** The library's own build description (OpenBLAS: openblas_get_config()). */
    char build[EB_BLAS_BUILD_SIZE];
    /** The widest vector instruction set this CPU offers: "avx512", "avx2", "avx", "sse2"; "" off x86-64. */
    char cpu_vector_isa[EB_BLAS_FIELD_SIZE];
    /**
     * The OPENBLAS_CORETYPE value that would run faster kernels than `core`
     * on this CPU (see eb_blas_recommended_coretype), or "" when `core`
     * already uses what the CPU offers.
     */
    char recommended_coretype[EB_BLAS_FIELD_SIZE];
    /** Threads one BLAS call may use (OpenBLAS: openblas_get_num_threads()); 0 when unknown. */
    int threads;
} eb_blas_config;

/**
 * Describe the BLAS in use into *out. Reads only; safe from many threads.
 * Returns EB_ERR_NULL_POINTER when out is NULL, else EB_OK.
 */
EB_API eb_status eb_blas_info(eb_blas_config *out);

/**
 * The OPENBLAS_CORETYPE to set when OpenBLAS runs kernels for a lesser CPU
 * than this one, else NULL. core is an OpenBLAS core name as eb_blas_config
 * reports it, cpu_vector_isa a value of eb_blas_config.cpu_vector_isa.
 * Example: OpenBLAS 0.3.21 does not know some recent Xeons and falls back to
 * its generic "Prescott" kernels, several times slower; on an AVX-512 CPU this
 * returns "SkylakeX", on an AVX2 one "Haswell". Unknown core names (another
 * architecture, a newer OpenBLAS) and NULL arguments give NULL. A pure
 * function: eb_blas_info applies it to the real core and CPU.
 */
EB_API const char *eb_blas_recommended_coretype(const char *core, const char *cpu_vector_isa);

#ifdef __cplusplus
}
#endif

#endif /* EMBETTER_BLAS_H */
