/*
 * The one place the library names its BLAS. The sources call the standard
 * CBLAS and OpenBLAS names; which library answers them is chosen when the
 * library is built (CMake option EMBETTER_BLAS):
 *   - system: the OpenBLAS of the machine (Debian's libopenblas), plain names.
 *   - scipy-openblas32: the OpenBLAS wheel NumPy and SciPy ship for packaging.
 *     It prefixes every symbol with scipy_ so that it can share a process with
 *     another OpenBLAS (NumPy's own, or the system's) without the two
 *     resolving each other's functions; its cblas.h declares the prefixed
 *     names, and the macros below point the plain names at them.
 */
#ifndef EMBETTER_SRC_BLAS_H
#define EMBETTER_SRC_BLAS_H

#include <cblas.h>

#if defined(EB_BLAS_SCIPY_OPENBLAS)
/* What eb_blas_info reports as the library: the wheel, since its build string only says "OpenBLAS". */
#define EB_BLAS_LIBRARY_NAME "scipy-openblas32"
#define cblas_sgemm scipy_cblas_sgemm
#define openblas_get_config scipy_openblas_get_config
#define openblas_get_corename scipy_openblas_get_corename
#define openblas_get_num_threads scipy_openblas_get_num_threads
#define openblas_get_parallel scipy_openblas_get_parallel
#else
#define EB_BLAS_LIBRARY_NAME "OpenBLAS"
#endif

#endif /* EMBETTER_SRC_BLAS_H */
