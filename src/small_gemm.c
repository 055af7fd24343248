/*
 * The two large products of a feed-forward minibatch step, for minibatches of
 * at most EB_SMALL_GEMM_MAX_ROWS rows:
 *
 *   forward   H = X W + bias       (b x d) (d x h), b rows
 *   backward  G = X^T D            (d x b) (b x h), inner dimension b
 *
 * OpenBLAS packs both operands into its own buffers on every call; at 32 rows
 * copying the 384 x 200 weight matrix costs about as much as multiplying by it,
 * and its beta = 0 path clears G before accumulating into it. These kernels
 * read the row-major operands in place (the weight rows are streamed from L2)
 * and write each result once. With AVX-512 the register tile is 8 rows x 48
 * columns: 24 accumulators, 3 loads of the right operand and 8 broadcasts per
 * step of the inner dimension (16 or 32 columns for the last few). Elsewhere
 * (no AVX-512, larger batches) both functions call cblas_sgemm themselves, so
 * callers use them for any batch.
 *
 * Every output element is a sum over the inner dimension in index order with
 * one fused multiply-add per term, starting from zero; the bias is added last,
 * as OpenBLAS does it for a pre-filled output. Results therefore match
 * cblas_sgemm to rounding, not bit for bit (tests/c/test_small_gemm.c).
 */
#include "blas.h"
#include <stdbool.h>
#include <stddef.h>

#include "internal.h"

#ifdef EB_HAVE_AVX512_KERNELS
#  include <immintrin.h>
#endif

bool eb__small_gemm_available(size_t rows)
{
#ifdef EB_HAVE_AVX512_KERNELS
    return rows >= 1 && rows <= EB_SMALL_GEMM_MAX_ROWS && __builtin_cpu_supports("avx512f");
#else
    (void)rows;
    return false;
#endif
}

#ifdef EB_HAVE_AVX512_KERNELS

enum { TILE_ROWS = 8, TILE_VECTORS = 3, LANES = 16, TILE_COLS = TILE_VECTORS * LANES };

#define EB_FOR_TILE_ROWS(op) op(0) op(1) op(2) op(3) op(4) op(5) op(6) op(7)

/*
 * One tile of 8 rows and `vectors` (1 to 3, a constant once inlined) column
 * vectors of 16: C[r][col] = sum over k of a(r, k) * B[k][col] (+ bias[col]),
 * for r < rows. a(r, k) = a_rows[r][k * a_step]; B row k starts at b + k * ldb.
 * Only the last vector may be partial (last_mask). Rows past `rows` repeat
 * the last real row and are not stored, so the code has one fixed shape and
 * its accumulators stay in registers. A narrower tile for the last columns
 * keeps, for instance, the 8 columns left of 200 from costing a full 48.
 */
__attribute__((target("avx512f"), always_inline)) static inline void
tile_body(size_t rows, const float *const a_rows[TILE_ROWS], size_t a_step, size_t inner, const float *b, size_t ldb,
          const float *bias, __mmask16 last_mask, float *c, size_t ldc, const int vectors)
{
    const __mmask16 full = 0xFFFF;
    const __mmask16 m0 = vectors == 1 ? last_mask : full, m1 = vectors == 2 ? last_mask : full, m2 = last_mask;
    const bool partial = last_mask != full;
#define EB_DECLARE(r)                                                                                               \
    __m512 acc##r##_0 = _mm512_setzero_ps(), acc##r##_1 = _mm512_setzero_ps(), acc##r##_2 = _mm512_setzero_ps(); \
    const float *a##r = a_rows[r];
    EB_FOR_TILE_ROWS(EB_DECLARE)
#undef EB_DECLARE
    for (size_t k = 0; k < inner; k++) {
        const float *b_row = b + k * ldb;
        __m512 b0 = _mm512_setzero_ps(), b1 = _mm512_setzero_ps(), b2 = _mm512_setzero_ps();
        if (partial) {
            b0 = _mm512_maskz_loadu_ps(m0, b_row);
            if (vectors > 1)
                b1 = _mm512_maskz_loadu_ps(m1, b_row + LANES);
            if (vectors > 2)
                b2 = _mm512_maskz_loadu_ps(m2, b_row + 2 * LANES);
        } else {
            b0 = _mm512_loadu_ps(b_row);
            if (vectors > 1)
                b1 = _mm512_loadu_ps(b_row + LANES);
            if (vectors > 2)
                b2 = _mm512_loadu_ps(b_row + 2 * LANES);
        }
        size_t offset = k * a_step;
#define EB_STEP(r)                                                                                                  \
    {                                                                                                               \
        __m512 a = _mm512_set1_ps(a##r[offset]);                                                                  \
        acc##r##_0 = _mm512_fmadd_ps(a, b0, acc##r##_0);                                                            \
        if (vectors > 1)                                                                                            \
            acc##r##_1 = _mm512_fmadd_ps(a, b1, acc##r##_1);                                                        \
        if (vectors > 2)                                                                                            \
            acc##r##_2 = _mm512_fmadd_ps(a, b2, acc##r##_2);                                                        \
    }
        EB_FOR_TILE_ROWS(EB_STEP)
#undef EB_STEP
    }
    __m512 bias0 = _mm512_setzero_ps(), bias1 = _mm512_setzero_ps(), bias2 = _mm512_setzero_ps();
    if (bias != NULL) {
        bias0 = _mm512_maskz_loadu_ps(m0, bias);
        if (vectors > 1)
            bias1 = _mm512_maskz_loadu_ps(m1, bias + LANES);
        if (vectors > 2)
            bias2 = _mm512_maskz_loadu_ps(m2, bias + 2 * LANES);
    }
#define EB_STORE_VECTOR(r, v)                                                                                       \
    _mm512_mask_storeu_ps(c_row + (v) * LANES, m##v, bias != NULL ? _mm512_add_ps(acc##r##_##v, bias##v) : acc##r##_##v);
#define EB_STORE(r)                                                                                                 \
    if (r < rows) {                                                                                                 \
        float *c_row = c + (size_t)(r) * ldc;                                                                       \
        EB_STORE_VECTOR(r, 0)                                                                                       \
        if (vectors > 1) {                                                                                          \
            EB_STORE_VECTOR(r, 1)                                                                                   \
        }                                                                                                           \
        if (vectors > 2) {                                                                                          \
            EB_STORE_VECTOR(r, 2)                                                                                   \
        }                                                                                                           \
    }
    EB_FOR_TILE_ROWS(EB_STORE)
#undef EB_STORE
#undef EB_STORE_VECTOR
}

/* The tile widths, each compiled with its accumulators fixed. */
#define EB_TILE_OF_WIDTH(vectors)                                                                                   \
    __attribute__((target("avx512f"))) static void tile_##vectors(                                                 \
        size_t rows, const float *const a_rows[TILE_ROWS], size_t a_step, size_t inner, const float *b, size_t ldb, \
        const float *bias, __mmask16 last_mask, float *c, size_t ldc)                                               \
    {                                                                                                               \
        tile_body(rows, a_rows, a_step, inner, b, ldb, bias, last_mask, c, ldc, vectors);                           \
    }
EB_TILE_OF_WIDTH(1)
EB_TILE_OF_WIDTH(2)
EB_TILE_OF_WIDTH(3)
#undef EB_TILE_OF_WIDTH

/*
 * C (c_rows x h, row stride ldc) = A B (+ bias), where a(i, k) =
 * a[i * a_row_step + k * a_k_step] and row k of B (h floats) starts at b + k * h.
 */
__attribute__((target("avx512f"))) static void tiled_product(size_t c_rows, const float *a, size_t a_row_step,
                                                            size_t a_k_step, size_t inner, const float *b, size_t h,
                                                            const float *bias, float *c, size_t ldc)
{
    for (size_t col = 0; col < h; col += TILE_COLS) {
        size_t left = h - col < TILE_COLS ? h - col : TILE_COLS;
        size_t vectors = (left + LANES - 1) / LANES;
        size_t last_lanes = left - (vectors - 1) * LANES;
        __mmask16 last_mask = (__mmask16)((1u << last_lanes) - 1u);
        for (size_t row = 0; row < c_rows; row += TILE_ROWS) {
            size_t rows = c_rows - row < TILE_ROWS ? c_rows - row : TILE_ROWS;
            const float *a_rows[TILE_ROWS];
            for (size_t r = 0; r < TILE_ROWS; r++)
                a_rows[r] = a + (row + (r < rows ? r : rows - 1)) * a_row_step;
            const float *tile_bias = bias == NULL ? NULL : bias + col;
            float *tile_c = c + row * ldc + col;
            if (vectors == 3)
                tile_3(rows, a_rows, a_k_step, inner, b + col, h, tile_bias, last_mask, tile_c, ldc);
            else if (vectors == 2)
                tile_2(rows, a_rows, a_k_step, inner, b + col, h, tile_bias, last_mask, tile_c, ldc);
            else
                tile_1(rows, a_rows, a_k_step, inner, b + col, h, tile_bias, last_mask, tile_c, ldc);
        }
    }
}

#endif

void eb__small_affine(eb_matrix x, const float *w, const float *bias, eb_mut_matrix out)
{
#ifdef EB_HAVE_AVX512_KERNELS
    if (eb__small_gemm_available(x.rows)) {
        tiled_product(x.rows, x.data, x.stride, 1, x.cols, w, out.cols, bias, out.data, out.stride);
        return;
    }
#endif
    eb__affine(x, w, bias, out);
}

void eb__small_transposed_product(eb_matrix x, const float *d, size_t h, float *g)
{
#ifdef EB_HAVE_AVX512_KERNELS
    if (eb__small_gemm_available(x.rows)) {
        /* Row i of G sums X[k][i] D[k] over k: A's rows are X's columns, read down X's stride. */
        tiled_product(x.cols, x.data, 1, x.stride, x.rows, d, h, NULL, g, h);
        return;
    }
#endif
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)x.cols, (int)h, (int)x.rows, 1.0f, x.data,
                (int)x.stride, d, (int)h, 0.0f, g, (int)h);
}
