/*
 * The minibatch kernels of src/small_gemm.c against a double-precision
 * reference, over shapes that exercise every edge of their 8 x 48 register
 * tile and of the sparse kernels' 64-column blocks: fewer rows than a tile,
 * partial column vectors, a single column, an inner dimension of 1, strided
 * inputs, and outputs that must not be written past their last column. Every
 * path is checked on its own (the dense tiles, the sparse kernels, BLAS,
 * which is what CPUs without AVX-512 run, and the automatic choice), on
 * inputs from all zeros to no zeros; the dense and sparse kernels must give
 * the same bits.
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

/* Random values, each kept with probability `density` and zero otherwise (as hashed n-gram counts are). */
static float *sparse_floats(test_rng *rng, size_t count, double density)
{
    float *values = random_floats(rng, count);
    for (size_t i = 0; i < count; i++)
        if (test_rng_uniform(rng, 0.0, 1.0) >= density)
            values[i] = 0.0f;
    return values;
}

static const eb_small_gemm_path PATHS[] = {EB_SMALL_GEMM_AUTO, EB_SMALL_GEMM_DENSE, EB_SMALL_GEMM_SPARSE,
                                           EB_SMALL_GEMM_BLAS};
static const double DENSITIES[] = {0.0, 0.1, 0.3, 0.7, 1.0};

/* |got - exact| within float rounding of a sum of `terms` products bounded by `magnitude`. */
static void assert_close(double exact, double magnitude, size_t terms, float got, const char *what, size_t row,
                         size_t col)
{
    double tolerance = 4.0 * (double)terms * 6e-8 * magnitude + 1e-30;
    if (!(fabs((double)got - exact) <= tolerance))
        fail_msg("%s[%zu][%zu] = %.9g, expected %.9g (tolerance %.3g)", what, row, col, (double)got, exact, tolerance);
}

static void check_affine(eb_small_gemm_path path, size_t rows, size_t d, size_t h, size_t stride, double density,
                         test_rng *rng)
{
    float *x = sparse_floats(rng, rows * stride, density);
    float *w = random_floats(rng, d * h);
    float *bias = random_floats(rng, h);
    size_t out_stride = h + 5;
    float *out = malloc(rows * out_stride * sizeof *out);
    assert_non_null(out);
    for (size_t i = 0; i < rows * out_stride; i++)
        out[i] = CANARY;
    eb_matrix xm = {x, rows, d, stride};
    eb_mut_matrix om = {out, rows, h, out_stride};
    eb__small_affine_via(path, xm, w, bias, om);
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

static void check_transposed(eb_small_gemm_path path, size_t rows, size_t d, size_t h, size_t stride, double density,
                             test_rng *rng)
{
    float *x = sparse_floats(rng, rows * stride, density);
    float *delta = random_floats(rng, rows * h);
    /* One spare row after g: nothing may be written there. */
    float *g = malloc((d + 1) * h * sizeof *g);
    assert_non_null(g);
    for (size_t i = 0; i < (d + 1) * h; i++)
        g[i] = CANARY;
    eb_matrix xm = {x, rows, d, stride};
    eb__small_transposed_product_via(path, xm, delta, h, g);
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
    /* Past EB_SMALL_GEMM_MAX_ROWS the sparse kernels work in blocks of 64 rows; the dense path is BLAS's. */
    static const size_t row_counts[] = {1, 3, 7, 8, 9, 16, 31, 32, 33, EB_SMALL_GEMM_MAX_ROWS, 65, 200};
    static const size_t widths[] = {1, 5, 15, 16, 17, 47, 48, 49, 50, 64, 65, 96, 200};
    static const size_t depths[] = {1, 2, 9, 64, 384};
    test_rng rng = test_rng_make(99);
    /* AUTO takes one of the other three: dense_and_sparse_kernels_give_the_same_bits checks it. */
    for (size_t p = 1; p < sizeof PATHS / sizeof PATHS[0]; p++)
        for (size_t a = 0; a < sizeof row_counts / sizeof row_counts[0]; a++)
            for (size_t b = 0; b < sizeof widths / sizeof widths[0]; b++)
                for (size_t c = 0; c < sizeof depths / sizeof depths[0]; c++) {
                    size_t rows = row_counts[a], h = widths[b], d = depths[c];
                    /* Past 64 rows the blocks' continuation is what is new; small depths test it in less time. */
                    if (rows > EB_SMALL_GEMM_MAX_ROWS && d > 64)
                        continue;
                    /* Every density on some shapes; the whole grid would take minutes under valgrind. */
                    double density = DENSITIES[(a + b + c) % (sizeof DENSITIES / sizeof DENSITIES[0])];
                    check_affine(PATHS[p], rows, d, h, d, density, &rng);
                    check_transposed(PATHS[p], rows, d, h, d, density, &rng);
                    /* Row views of a wider matrix, as a gathered batch never is but a caller's view may be. */
                    check_affine(PATHS[p], rows, d, h, d + 3, 1.0 - density, &rng);
                    check_transposed(PATHS[p], rows, d, h, d + 3, 1.0 - density, &rng);
                }
}

/*
 * The sparse kernels skip zero entries of x, in order, with the dense tiles'
 * fused multiply-adds on the rest: the same bits, whichever the automatic
 * choice takes (it depends on the share of zeros). Also what lets a fit move
 * between them from batch to batch without changing its result.
 */
static void dense_and_sparse_kernels_give_the_same_bits(void **state)
{
    (void)state;
    static const size_t shapes[][3] = {{32, 1024, 50}, {32, 384, 200}, {8, 1024, 50}, {64, 300, 65}, {7, 33, 17}};
    /* Beyond 64 rows only the sparse kernel is this file's (the dense path is BLAS): AUTO must match it when x is sparse. */
    static const size_t large_shapes[][3] = {{200, 1024, 50}, {129, 300, 65}};
    test_rng rng = test_rng_make(5);
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
        for (size_t t = 0; t < sizeof DENSITIES / sizeof DENSITIES[0]; t++) {
            size_t rows = shapes[s][0], d = shapes[s][1], h = shapes[s][2];
            float *x = sparse_floats(&rng, rows * d, DENSITIES[t]);
            float *w = random_floats(&rng, d * h), *bias = random_floats(&rng, h);
            float *delta = random_floats(&rng, rows * h);
            float *results[4];
            for (size_t i = 0; i < 4; i++) {
                results[i] = malloc((rows + d) * h * sizeof(float));
                assert_non_null(results[i]);
            }
            eb_matrix xm = {x, rows, d, d};
            for (size_t p = 0; p < 3; p++) {
                eb_mut_matrix om = {results[p], rows, h, h};
                eb__small_affine_via(PATHS[p], xm, w, bias, om);
                eb__small_transposed_product_via(PATHS[p], xm, delta, h, results[p] + rows * h);
            }
            assert_memory_equal(results[1], results[2], (rows + d) * h * sizeof(float));
            assert_memory_equal(results[0], results[1], (rows + d) * h * sizeof(float));
            for (size_t i = 0; i < 4; i++)
                free(results[i]);
            free(x);
            free(w);
            free(bias);
            free(delta);
        }
    for (size_t s = 0; s < sizeof large_shapes / sizeof large_shapes[0]; s++) {
        size_t rows = large_shapes[s][0], d = large_shapes[s][1], h = large_shapes[s][2];
        float *x = sparse_floats(&rng, rows * d, 0.1);
        float *w = random_floats(&rng, d * h), *bias = random_floats(&rng, h);
        float *delta = random_floats(&rng, rows * h);
        float *automatic = malloc((rows + d) * h * sizeof(float)), *sparse = malloc((rows + d) * h * sizeof(float));
        assert_non_null(automatic);
        assert_non_null(sparse);
        eb_matrix xm = {x, rows, d, d};
        eb_mut_matrix am = {automatic, rows, h, h}, sm = {sparse, rows, h, h};
        eb__small_affine_via(EB_SMALL_GEMM_AUTO, xm, w, bias, am);
        eb__small_transposed_product_via(EB_SMALL_GEMM_AUTO, xm, delta, h, automatic + rows * h);
        eb__small_affine_via(EB_SMALL_GEMM_SPARSE, xm, w, bias, sm);
        eb__small_transposed_product_via(EB_SMALL_GEMM_SPARSE, xm, delta, h, sparse + rows * h);
        assert_memory_equal(automatic, sparse, (rows + d) * h * sizeof(float));
        free(automatic);
        free(sparse);
        free(x);
        free(w);
        free(bias);
        free(delta);
    }
}

/* A NaN in x reaches every output it touches, in the sparse kernels too (NaN is not zero). */
static void sparse_kernels_propagate_nan(void **state)
{
    (void)state;
    enum { ROWS = 4, D = 40, H = 50 };
    test_rng rng = test_rng_make(8);
    float *x = sparse_floats(&rng, ROWS * D, 0.1);
    float *w = random_floats(&rng, D * H), *bias = random_floats(&rng, H), *delta = random_floats(&rng, ROWS * H);
    float out[ROWS * H], g[D * H];
    x[2 * D + 17] = NAN;
    eb_matrix xm = {x, ROWS, D, D};
    eb_mut_matrix om = {out, ROWS, H, H};
    eb__small_affine_via(EB_SMALL_GEMM_SPARSE, xm, w, bias, om);
    eb__small_transposed_product_via(EB_SMALL_GEMM_SPARSE, xm, delta, H, g);
    for (size_t r = 0; r < ROWS; r++)
        for (size_t c = 0; c < H; c++)
            assert_true(isnan(out[r * H + c]) == (r == 2));
    for (size_t i = 0; i < D; i++)
        for (size_t c = 0; c < H; c++)
            assert_true(isnan(g[i * H + c]) == (i == 17));
    free(x);
    free(w);
    free(bias);
    free(delta);
}

/*
 * A minibatch read in place through its row indices (training's shuffled
 * batches) gives the bits of the same rows gathered first, on every path a
 * chunk can take: sparse, dense (copied into scratch), and a mix of both,
 * from a strided x larger than the batch.
 */
static void rows_read_in_place_give_the_gathered_bits(void **state)
{
    (void)state;
    static const size_t shapes[][4] = {{200, 32, 1024, 50}, {100, 8, 600, 65}, {70, 64, 300, 17}, {9, 1, 33, 50}};
    static const double densities[] = {0.0, 0.1, 0.3, 0.7, 1.0, -1.0}; /* -1: sparse, with a dense last chunk */
    test_rng rng = test_rng_make(11);
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
        for (size_t t = 0; t < sizeof densities / sizeof densities[0]; t++) {
            size_t n = shapes[s][0], b = shapes[s][1], d = shapes[s][2], h = shapes[s][3], stride = d + 3;
            float *x = sparse_floats(&rng, n * stride, densities[t] < 0.0 ? 0.1 : densities[t]);
            size_t dense_from = d % 256 == 0 ? d - 256 : d - d % 256; /* the last 256-column chunk */
            if (densities[t] < 0.0)
                for (size_t r = 0; r < n; r++)
                    for (size_t c = dense_from; c < d; c++)
                        x[r * stride + c] = (float)test_rng_uniform(&rng, 0.5, 1.0);
            float *w = random_floats(&rng, d * h), *bias = random_floats(&rng, h);
            float *delta = random_floats(&rng, b * h), *scratch = random_floats(&rng, b * d);
            float *gathered = malloc(b * d * sizeof(float));
            float *expected = malloc((b + d) * h * sizeof(float)), *got = malloc((b + d) * h * sizeof(float));
            uint32_t *index = malloc(b * sizeof *index);
            assert_non_null(gathered);
            assert_non_null(expected);
            assert_non_null(got);
            assert_non_null(index);
            for (size_t i = 0; i < b; i++)
                index[i] = (uint32_t)((i * 37 + s) % n);
            eb_matrix xm = {x, n, d, stride};
            eb__gather_rows(xm, index, b, gathered);
            eb_matrix gm = {gathered, b, d, d};
            eb_mut_matrix em = {expected, b, h, h}, om = {got, b, h, h};
            eb__small_affine(gm, w, bias, em);
            eb__small_transposed_product(gm, delta, h, expected + b * h);
            eb__small_affine_rows(xm, index, b, w, bias, om, scratch);
            eb__small_transposed_product_rows(xm, index, b, delta, h, got + b * h, scratch);
            assert_memory_equal(expected, got, (b + d) * h * sizeof(float));
            free(x);
            free(w);
            free(bias);
            free(delta);
            free(scratch);
            free(gathered);
            free(expected);
            free(got);
            free(index);
        }
    /* In place wherever the minibatch kernels serve the batch. */
    assert_false(eb__small_rows_in_place(0));
    assert_false(eb__small_rows_in_place(EB_SMALL_GEMM_MAX_ROWS + 1));
    assert_true(eb__small_rows_in_place(EB_SMALL_GEMM_MAX_ROWS) == eb__small_gemm_available(EB_SMALL_GEMM_MAX_ROWS));
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
        cmocka_unit_test(dense_and_sparse_kernels_give_the_same_bits),
        cmocka_unit_test(sparse_kernels_propagate_nan),
        cmocka_unit_test(availability_follows_the_row_limit),
        cmocka_unit_test(rows_read_in_place_give_the_gathered_bits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
