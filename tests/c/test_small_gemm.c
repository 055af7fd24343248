/*
 * The minibatch kernels of src/small_gemm.c against a double-precision
 * reference, over shapes that exercise every edge of their 8 x 48 register
 * tile: fewer rows than a tile, partial column vectors, a single column, an
 * inner dimension of 1, strided inputs, and outputs that must not be written
 * past their last column.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "helpers.h"
#include "internal.h"

static const float CANARY = -12345.0f;

static float *random_floats(test_rng *rng, size_t count)
{
    float *values = malloc((count ? count : 1) * sizeof *values);
    assert_non_null(values);
    for (size_t i = 0; i < count; i++)
        values[i] = (float)test_rng_uniform(rng, -1.0, 1.0);
    return values;
}

/* |got - exact| within float rounding of a sum of `terms` products bounded by `magnitude`. */
static void assert_close(double exact, double magnitude, size_t terms, float got, const char *what, size_t row,
                         size_t col)
{
    double tolerance = 4.0 * (double)terms * 6e-8 * magnitude + 1e-30;
    if (!(fabs((double)got - exact) <= tolerance))
        fail_msg("%s[%zu][%zu] = %.9g, expected %.9g (tolerance %.3g)", what, row, col, (double)got, exact, tolerance);
}

static void check_affine(size_t rows, size_t d, size_t h, size_t stride, test_rng *rng)
{
    float *x = random_floats(rng, rows * stride);
    float *w = random_floats(rng, d * h);
    float *bias = random_floats(rng, h);
    size_t out_stride = h + 5;
    float *out = malloc(rows * out_stride * sizeof *out);
    assert_non_null(out);
    for (size_t i = 0; i < rows * out_stride; i++)
        out[i] = CANARY;
    eb_matrix xm = {x, rows, d, stride};
    eb_mut_matrix om = {out, rows, h, out_stride};
    eb__small_affine(xm, w, bias, om);
    for (size_t r = 0; r < rows; r++) {
        for (size_t c = 0; c < h; c++) {
            double exact = bias[c], magnitude = fabs(bias[c]);
            for (size_t k = 0; k < d; k++) {
                exact += (double)x[r * stride + k] * w[k * h + c];
                magnitude += fabs((double)x[r * stride + k] * w[k * h + c]);
            }
            assert_close(exact, magnitude, d + 1, out[r * out_stride + c], "affine", r, c);
        }
        for (size_t c = h; c < out_stride; c++)
            assert_true(out[r * out_stride + c] == CANARY);
    }
    free(x);
    free(w);
    free(bias);
    free(out);
}

static void check_transposed(size_t rows, size_t d, size_t h, size_t stride, test_rng *rng)
{
    float *x = random_floats(rng, rows * stride);
    float *delta = random_floats(rng, rows * h);
    /* One spare row after g: nothing may be written there. */
    float *g = malloc((d + 1) * h * sizeof *g);
    assert_non_null(g);
    for (size_t i = 0; i < (d + 1) * h; i++)
        g[i] = CANARY;
    eb_matrix xm = {x, rows, d, stride};
    eb__small_transposed_product(xm, delta, h, g);
    for (size_t i = 0; i < d; i++) {
        for (size_t c = 0; c < h; c++) {
            double exact = 0.0, magnitude = 0.0;
            for (size_t k = 0; k < rows; k++) {
                exact += (double)x[k * stride + i] * delta[k * h + c];
                magnitude += fabs((double)x[k * stride + i] * delta[k * h + c]);
            }
            assert_close(exact, magnitude, rows, g[i * h + c], "transposed", i, c);
        }
    }
    for (size_t c = 0; c < h; c++)
        assert_true(g[d * h + c] == CANARY);
    free(x);
    free(delta);
    free(g);
}

static void kernels_match_the_reference_on_every_tile_edge(void **state)
{
    (void)state;
    static const size_t row_counts[] = {1, 3, 7, 8, 9, 16, 31, 32, 33, EB_SMALL_GEMM_MAX_ROWS};
    static const size_t widths[] = {1, 5, 15, 16, 17, 47, 48, 49, 96, 200};
    static const size_t depths[] = {1, 2, 9, 64, 384};
    test_rng rng = test_rng_make(99);
    for (size_t a = 0; a < sizeof row_counts / sizeof row_counts[0]; a++)
        for (size_t b = 0; b < sizeof widths / sizeof widths[0]; b++)
            for (size_t c = 0; c < sizeof depths / sizeof depths[0]; c++) {
                size_t rows = row_counts[a], h = widths[b], d = depths[c];
                check_affine(rows, d, h, d, &rng);
                check_transposed(rows, d, h, d, &rng);
                /* Row views of a wider matrix, as a gathered batch never is but a caller's view may be. */
                check_affine(rows, d, h, d + 3, &rng);
                check_transposed(rows, d, h, d + 3, &rng);
            }
}

/* The cut-over: batches up to EB_SMALL_GEMM_MAX_ROWS rows, never an empty one. */
static void availability_follows_the_row_limit(void **state)
{
    (void)state;
    assert_false(eb__small_gemm_available(0));
    assert_false(eb__small_gemm_available(EB_SMALL_GEMM_MAX_ROWS + 1));
    /* On a CPU with AVX-512 (the development machine) the kernels are in use up to the limit. */
    if (__builtin_cpu_supports("avx512f")) {
        assert_true(eb__small_gemm_available(1));
        assert_true(eb__small_gemm_available(EB_SMALL_GEMM_MAX_ROWS));
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(kernels_match_the_reference_on_every_tile_edge),
        cmocka_unit_test(availability_follows_the_row_limit),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
