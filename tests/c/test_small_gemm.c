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
#include <pthread.h>
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

/* ---- products over nonzeros listed once (eb_sparse_rows) --------------------------------------------------------- */

/* Whether this build and CPU list nonzeros at all; elsewhere eb__sparse_rows_list must leave its output empty. */
static bool listing_available(void)
{
#ifdef EB_HAVE_AVX512_KERNELS
    return __builtin_cpu_supports("avx512f");
#else
    return false;
#endif
}

/* The sparse kernels' threshold as finetune's listing applies it: 0.4 up to 64 outputs, 0.3 above. */
static double listing_threshold(size_t h) { return h <= 64 ? 0.4 : 0.3; }

/* The most nonzeros of `entries` that the threshold for h still lists. */
static size_t most_listed_nonzeros(size_t entries, size_t h)
{
    double limit = listing_threshold(h) * (double)entries;
    size_t k = (size_t)limit;
    while (k > 0 && (double)k > limit)
        k--;
    while ((double)(k + 1) <= limit)
        k++;
    return k;
}

/* Equal bits, or both NaN (a NaN's payload is not part of the claim). */
static bool same_value(float a, float b)
{
    if (isnan(a) || isnan(b))
        return isnan(a) && isnan(b);
    return memcmp(&a, &b, sizeof a) == 0;
}

static void assert_same_values(const float *expected, const float *got, size_t count, const char *what, size_t h,
                               size_t parts)
{
    for (size_t i = 0; i < count; i++)
        if (!same_value(expected[i], got[i]))
            fail_msg("%s, h %zu, %zu parts: [%zu][%zu] = %.9g, expected %.9g", what, h, parts, i / h, i % h,
                     (double)got[i], (double)expected[i]);
}

/*
 * rows rows of h values: expected's rows h apart, got's ld apart, and got's padding (ld - h after each row) still
 * CANARY, as no product may write it.
 */
static void assert_same_rows(const float *expected, const float *got, size_t rows, size_t h, size_t ld,
                             const char *what, size_t parts)
{
    for (size_t r = 0; r < rows; r++) {
        assert_same_values(expected + r * h, got + r * ld, h, what, h, parts);
        for (size_t c = h; c < ld; c++)
            if (got[r * ld + c] != CANARY)
                fail_msg("%s, h %zu, ld %zu, %zu parts: wrote the padding of row %zu", what, h, ld, parts, r);
    }
}

/* A copy of rows x h values with its rows ld apart, the padding NaN: a product that read it would show NaN. */
static float *padded_copy(const float *m, size_t rows, size_t h, size_t ld)
{
    float *copy = malloc((rows ? rows : 1) * ld * sizeof *copy);
    assert_non_null(copy);
    for (size_t r = 0; r < rows; r++)
        for (size_t c = 0; c < ld; c++)
            copy[r * ld + c] = c < h ? m[r * h + c] : NAN;
    return copy;
}

/*
 * rows x cols (row stride `stride`, the padding filled with values that must not count) with exactly `nonzeros`
 * nonzero entries at random places, `nans` of them NaN; rows listed in empty_rows (every empty_every-th, 0 for
 * none) are cleared afterwards. Returns the number of nonzeros left.
 */
static size_t place_nonzeros(test_rng *rng, float *x, size_t rows, size_t cols, size_t stride, size_t nonzeros,
                             size_t nans, size_t empty_every)
{
    size_t entries = rows * cols;
    uint32_t *where = malloc((entries ? entries : 1) * sizeof *where);
    assert_non_null(where);
    for (size_t i = 0; i < entries; i++)
        where[i] = (uint32_t)i;
    for (size_t i = 0; i < rows * stride; i++)
        x[i] = 0.0f;
    for (size_t r = 0; r < rows; r++)
        for (size_t c = cols; c < stride; c++)
            x[r * stride + c] = 7.0f;
    for (size_t i = 0; i < nonzeros; i++) {
        size_t j = i + (size_t)(test_rng_next(rng) % (entries - i));
        uint32_t t = where[i];
        where[i] = where[j];
        where[j] = t;
        float value = 0.0f;
        while (value == 0.0f)
            value = (float)test_rng_uniform(rng, -1.0, 1.0);
        x[where[i] / cols * stride + where[i] % cols] = i < nans ? NAN : value;
    }
    free(where);
    size_t left = nonzeros;
    if (empty_every > 0)
        for (size_t r = 0; r < rows; r += empty_every)
            for (size_t c = 0; c < cols; c++)
                if (x[r * stride + c] != 0.0f || isnan(x[r * stride + c])) {
                    x[r * stride + c] = 0.0f;
                    left--;
                }
    return left;
}

/*
 * Calls part 0 .. parts-1 of a split product and checks their shares: each starts where the previous ended, none
 * runs backwards, the first starts at 0 and the last ends at `count`.
 */
static void check_shares(const size_t *firsts, const size_t *lasts, size_t parts, size_t count)
{
    size_t expected_first = 0;
    for (size_t p = 0; p < parts; p++) {
        if (firsts[p] != expected_first || lasts[p] < firsts[p])
            fail_msg("part %zu of %zu has [%zu, %zu), expected to start at %zu (%zu items)", p, parts, firsts[p],
                     lasts[p], expected_first, count);
        expected_first = lasts[p];
    }
    assert_int_equal(expected_first, count);
}

/*
 * Listed rows[0 .. count) of x times w (+ bias) against the sparse kernel's (and the dense tiles') full product,
 * the rows of w and of the output ld floats apart.
 */
static void check_listed_affine(const eb_sparse_rows *s, eb_matrix xm, const uint32_t *subset, size_t count,
                                const float *w, const float *bias, size_t h, size_t ld, const float *expected)
{
    float *out = malloc((xm.rows ? xm.rows : 1) * ld * sizeof *out);
    assert_non_null(out);
    for (size_t parts = 1; parts <= EB_TEAM_MAX_PARTS; parts++) {
        for (size_t i = 0; i < xm.rows * ld; i++)
            out[i] = CANARY;
        size_t firsts[EB_TEAM_MAX_PARTS], lasts[EB_TEAM_MAX_PARTS];
        /* In reverse order: a part must not depend on the others having run. */
        for (size_t p = parts; p-- > 0;)
            eb__sparse_rows_affine(s, subset, count, p, parts, w, bias, h, ld, out, &firsts[p], &lasts[p]);
        check_shares(firsts, lasts, parts, count);
        bool *chosen = calloc(xm.rows ? xm.rows : 1, sizeof *chosen);
        assert_non_null(chosen);
        for (size_t i = 0; i < count; i++)
            chosen[subset[i]] = true;
        for (size_t r = 0; r < xm.rows; r++) {
            if (chosen[r])
                assert_same_rows(expected + r * h, out + r * ld, 1, h, ld, "listed affine", parts);
            else
                for (size_t c = 0; c < ld; c++)
                    if (out[r * ld + c] != CANARY)
                        fail_msg("listed affine wrote row %zu, which is not in its %zu rows (%zu parts)", r, count,
                                 parts);
        }
        free(chosen);
    }
    free(out);
}

/* x^T d by the listing against the sparse kernel's, the rows of d and of the output ld floats apart. */
static void check_listed_transposed(const eb_sparse_rows *s, size_t cols, const float *d, size_t h, size_t ld,
                                    const float *expected)
{
    float *g = malloc((cols + 1) * ld * sizeof *g);
    assert_non_null(g);
    for (size_t parts = 1; parts <= EB_TEAM_MAX_PARTS; parts++) {
        for (size_t i = 0; i < (cols + 1) * ld; i++)
            g[i] = CANARY;
        size_t firsts[EB_TEAM_MAX_PARTS], lasts[EB_TEAM_MAX_PARTS];
        for (size_t p = parts; p-- > 0;)
            eb__sparse_rows_transposed_product(s, p, parts, d, h, ld, g, &firsts[p], &lasts[p]);
        check_shares(firsts, lasts, parts, cols);
        assert_same_rows(expected, g, cols, h, ld, "listed transposed", parts);
        for (size_t c = 0; c < ld; c++)
            assert_true(g[cols * ld + c] == CANARY);
    }
    free(g);
}

/*
 * The products in halves (two threads that keep to one half of x's columns each) at border `col`: both halves
 * of every part, the second halves after all the first, give the whole products' bits and shares of rows[];
 * the transposed halves cover g's rows [0, col) and [col, cols) between their parts.
 */
static void check_listed_halves(eb_sparse_rows *s, size_t col, eb_matrix xm, const uint32_t *subset, size_t count,
                                const float *w, const float *bias, const float *d, size_t h, size_t ld,
                                const float *expected)
{
    eb__sparse_rows_split_at(s, col);
    assert_int_equal(s->split_col, col);
    float *out = malloc((xm.rows + xm.cols + 1) * ld * sizeof *out);
    float *whole = malloc((xm.rows + 1) * ld * sizeof *whole);
    assert_non_null(out);
    assert_non_null(whole);
    for (size_t parts = 1; parts <= EB_TEAM_MAX_PARTS; parts++) {
        for (size_t i = 0; i < xm.rows * ld; i++)
            out[i] = CANARY;
        size_t firsts[EB_TEAM_MAX_PARTS], lasts[EB_TEAM_MAX_PARTS], whole_first, whole_last;
        for (size_t half = 0; half < 2; half++)
            for (size_t p = parts; p-- > 0;) {
                eb__sparse_rows_affine_half(s, half, subset, count, p, parts, w, bias, h, ld, out, &firsts[p],
                                            &lasts[p]);
                eb__sparse_rows_affine(s, subset, count, p, parts, w, bias, h, ld, whole, &whole_first, &whole_last);
                if (firsts[p] != whole_first || lasts[p] != whole_last)
                    fail_msg("half %zu of part %zu of %zu has rows [%zu, %zu), the whole product [%zu, %zu)", half, p,
                             parts, firsts[p], lasts[p], whole_first, whole_last);
            }
        for (size_t i = 0; i < count; i++)
            assert_same_rows(expected + subset[i] * h, out + subset[i] * ld, 1, h, ld, "affine in halves", parts);
    }
    for (size_t parts = 1; parts <= EB_TEAM_MAX_PARTS / 2; parts++) {
        for (size_t i = 0; i < (xm.cols + 1) * ld; i++)
            out[i] = CANARY;
        size_t firsts[2 * EB_TEAM_MAX_PARTS], lasts[2 * EB_TEAM_MAX_PARTS];
        for (size_t half = 2; half-- > 0;)
            for (size_t p = parts; p-- > 0;)
                eb__sparse_rows_transposed_product_half(s, half, p, parts, d, h, ld, out, &firsts[half * parts + p],
                                                        &lasts[half * parts + p]);
        check_shares(firsts, lasts, parts, col);
        assert_int_equal(firsts[parts], col);
        for (size_t p = 0; p < parts; p++)
            firsts[parts + p] -= col, lasts[parts + p] -= col;
        check_shares(firsts + parts, lasts + parts, parts, xm.cols - col);
        assert_same_rows(expected + xm.rows * h, out, xm.cols, h, ld, "transposed in halves", parts);
        for (size_t c = 0; c < ld; c++)
            assert_true(out[xm.cols * ld + c] == CANARY);
    }
    free(out);
    free(whole);
}

/* Columns [first, first + width) of rows x h values as their own matrix, its rows ld apart, the padding NaN. */
static float *side_copy(const float *m, size_t rows, size_t h, size_t first, size_t width, size_t ld)
{
    float *copy = malloc((rows ? rows : 1) * ld * sizeof *copy);
    assert_non_null(copy);
    for (size_t r = 0; r < rows; r++)
        for (size_t c = 0; c < ld; c++)
            copy[r * ld + c] = c < width ? m[r * h + first + c] : NAN;
    return copy;
}

/* One side's two products, as a thread of a team that splits the columns runs them (see check_listed_sides). */
typedef struct side_products {
    const eb_sparse_rows *s;
    size_t side;
    const uint32_t *subset;
    size_t count;
    const float *w, *bias, *d;
    size_t width, ld;
    float *out, *g;
} side_products;

static void *run_side_products(void *opaque)
{
    side_products *p = opaque;
    eb__sparse_rows_affine_side(p->s, p->side, p->subset, p->count, p->w, p->bias, p->width, p->ld, p->out);
    eb__sparse_rows_transposed_product_side(p->s, p->side, p->d, p->width, p->ld, p->g);
    return NULL;
}

/*
 * The products in two sides split at column `split` of the outputs, each side's operands and outputs in
 * matrices of their own (rows `width + 3` floats apart, the padding NaN), both sides at once on two threads:
 * together the whole products' bits, in the chosen rows only.
 */
static void check_listed_sides(const eb_sparse_rows *s, size_t split, eb_matrix xm, const uint32_t *subset,
                               size_t count, const float *w, const float *bias, const float *d, size_t h,
                               const float *expected)
{
    side_products sides[2];
    for (size_t side = 0; side < 2; side++) {
        size_t first = side == 0 ? 0 : split, width = side == 0 ? split : h - split, ld = width + 3;
        float *out = malloc((xm.rows ? xm.rows : 1) * ld * sizeof *out), *g = malloc(xm.cols * ld * sizeof *g);
        assert_non_null(out);
        assert_non_null(g);
        for (size_t i = 0; i < xm.rows * ld; i++)
            out[i] = CANARY;
        for (size_t i = 0; i < xm.cols * ld; i++)
            g[i] = CANARY;
        float *side_w = side_copy(w, xm.cols, h, first, width, ld), *side_bias = side_copy(bias, 1, h, first, width, ld);
        float *side_d = side_copy(d, xm.rows, h, first, width, ld);
        sides[side] = (side_products){s, side, subset, count, side_w, side_bias, side_d, width, ld, out, g};
    }
    pthread_t other;
    assert_int_equal(pthread_create(&other, NULL, run_side_products, &sides[1]), 0);
    run_side_products(&sides[0]);
    assert_int_equal(pthread_join(other, NULL), 0);
    for (size_t side = 0; side < 2; side++) {
        const side_products *p = &sides[side];
        size_t first = side == 0 ? 0 : split;
        for (size_t i = 0; i < count; i++) {
            size_t r = subset[i];
            assert_same_values(expected + r * h + first, p->out + r * p->ld, p->width, "affine side", h, side);
            for (size_t c = p->width; c < p->ld; c++)
                assert_true(p->out[r * p->ld + c] == CANARY);
        }
        for (size_t c = 0; c < xm.cols; c++) {
            assert_same_values(expected + (xm.rows + c) * h + first, p->g + c * p->ld, p->width, "transposed side", h,
                               side);
            for (size_t k = p->width; k < p->ld; k++)
                assert_true(p->g[c * p->ld + k] == CANARY);
        }
        free((float *)p->w);
        free((float *)p->bias);
        free((float *)p->d);
        free(p->out);
        free(p->g);
    }
}

/* Rows of x chosen for a batch: all ascending, a random ascending half, a random half in random order, none. */
enum { SUBSET_ALL, SUBSET_ASCENDING, SUBSET_SHUFFLED, SUBSET_NONE, SUBSET_KINDS };

static size_t choose_rows(test_rng *rng, size_t rows, int kind, uint32_t *subset)
{
    size_t count = 0;
    for (size_t r = 0; r < rows; r++)
        if (kind == SUBSET_ALL || ((kind == SUBSET_ASCENDING || kind == SUBSET_SHUFFLED) && test_rng_next(rng) % 2))
            subset[count++] = (uint32_t)r;
    if (kind == SUBSET_SHUFFLED)
        for (size_t i = count; i > 1; i--) {
            size_t j = (size_t)(test_rng_next(rng) % i);
            uint32_t t = subset[i - 1];
            subset[i - 1] = subset[j];
            subset[j] = t;
        }
    return count;
}

/*
 * x (rows x cols in a row stride of stride) with `nonzeros` nonzeros (`nans` of them NaN, every empty_every-th
 * row cleared) listed for products h wide whose other operand's rows are ld floats apart: listed exactly when the
 * share is at most the threshold, and then every product and every split of it gives the bits of the sparse
 * kernels (and of the dense tiles, up to 64 rows), whatever lies in the padding.
 */
static void check_listing(test_rng *rng, size_t rows, size_t cols, size_t stride, size_t h, size_t ld,
                          size_t nonzeros, size_t nans, size_t empty_every)
{
    float *x = malloc(rows * stride * sizeof *x);
    assert_non_null(x);
    size_t count = place_nonzeros(rng, x, rows, cols, stride, nonzeros, nans, empty_every);
    eb_matrix xm = {x, rows, cols, stride};
    counting_allocator counter;
    eb_allocator mem = counting_allocator_init(&counter);
    eb_sparse_rows s;
    memset(&s, 0xAB, sizeof s);
    assert_int_equal(eb__sparse_rows_list(xm, h, ld, &mem, &s), EB_OK);
    bool listed = listing_available() && count <= most_listed_nonzeros(rows * cols, h);
    if (!listed) {
        if (s.row_start != NULL)
            fail_msg("%zu x %zu with %zu nonzeros for h %zu was listed (AVX-512: %d)", rows, cols, count, h,
                     (int)listing_available());
        assert_int_equal(counter.live_blocks, 0);
        eb__sparse_rows_release(&s, &mem);
        free(x);
        return;
    }
    if (s.row_start == NULL)
        fail_msg("%zu x %zu with %zu nonzeros (at most %zu listed) for h %zu was not listed", rows, cols, count,
                 most_listed_nonzeros(rows * cols, h), h);
    assert_int_equal(s.rows, rows);
    assert_int_equal(s.cols, cols);
    assert_int_equal(s.nonzeros, count);
    assert_int_equal(s.row_start[rows], count);
    assert_int_equal(s.col_start[cols], count);

    float *w = random_floats(rng, cols * h), *bias = random_floats(rng, h), *d = random_floats(rng, rows * h);
    float *expected = malloc((rows + cols) * h * sizeof *expected), *dense = malloc((rows + cols) * h * sizeof *dense);
    uint32_t *subset = malloc(rows * sizeof *subset);
    assert_non_null(expected);
    assert_non_null(dense);
    assert_non_null(subset);
    eb_mut_matrix em = {expected, rows, h, h}, dm = {dense, rows, h, h};
    eb__small_affine_via(EB_SMALL_GEMM_SPARSE, xm, w, bias, em);
    eb__small_transposed_product_via(EB_SMALL_GEMM_SPARSE, xm, d, h, expected + rows * h);
    /* Past 64 rows the dense path is BLAS, whose sums run in another order. */
    if (rows <= EB_SMALL_GEMM_MAX_ROWS) {
        eb__small_affine_via(EB_SMALL_GEMM_DENSE, xm, w, bias, dm);
        eb__small_transposed_product_via(EB_SMALL_GEMM_DENSE, xm, d, h, dense + rows * h);
        assert_same_values(expected, dense, (rows + cols) * h, "dense against sparse kernel", h, 1);
    }
    float *padded_w = padded_copy(w, cols, h, ld), *padded_d = padded_copy(d, rows, h, ld);
    for (int kind = 0; kind < SUBSET_KINDS; kind++) {
        size_t chosen = choose_rows(rng, rows, kind, subset);
        check_listed_affine(&s, xm, subset, chosen, padded_w, bias, h, ld, expected);
    }
    check_listed_transposed(&s, cols, padded_d, h, ld, expected + rows * h);
    /* The listing's own border holds half the nonzeros; the others fall at and around the slices' edges. */
    size_t own = s.split_col, half_nonzeros = 0;
    assert_true(own <= cols);
    for (size_t r = 0; r < rows; r++)
        half_nonzeros += s.row_split[r] - s.row_start[r];
    assert_int_equal(half_nonzeros, s.col_start[own]);
    assert_true(s.col_start[own] >= count / 2 && (own == 0 || s.col_start[own - 1] < count / 2));
    const size_t borders[] = {own, 0, cols, cols / 2, s.slice_cols, s.slice_cols - 1, s.slice_cols + 1,
                              cols - s.slice_cols};
    for (size_t b = 0; b < sizeof borders / sizeof borders[0]; b++) {
        if (borders[b] > cols)
            continue;
        size_t chosen = choose_rows(rng, rows, b % 2 ? SUBSET_SHUFFLED : SUBSET_ALL, subset);
        check_listed_halves(&s, borders[b], xm, subset, chosen, padded_w, bias, padded_d, h, ld, expected);
    }
    /* Output columns in two sides: at a vector's edge, inside a vector, and one column either side. */
    const size_t splits[] = {16, h / 2, 1, h - 1};
    for (size_t k = 0; k < sizeof splits / sizeof splits[0]; k++) {
        if (splits[k] == 0 || splits[k] >= h)
            continue;
        size_t chosen = choose_rows(rng, rows, k % 2 ? SUBSET_SHUFFLED : SUBSET_ASCENDING, subset);
        check_listed_sides(&s, splits[k], xm, subset, chosen, w, bias, d, h, expected);
    }
    free(padded_w);
    free(padded_d);

    eb__sparse_rows_release(&s, &mem);
    assert_null(s.row_start);
    assert_int_equal(counter.live_blocks, 0);
    /* Releasing twice is harmless: release leaves the listing empty. */
    eb__sparse_rows_release(&s, &mem);
    free(x);
    free(w);
    free(bias);
    free(d);
    free(expected);
    free(dense);
    free(subset);
}

/*
 * The listed products against the kernels they replace, bit for bit, on every width that ends a 16-lane vector
 * or a 64-column block differently, row counts around the 64-row blocks, inner dimensions that are and are not
 * a multiple of 16 (and long enough for several L1 slices), and shares of nonzeros from none to the threshold.
 */
static void listed_products_give_the_kernels_bits(void **state)
{
    (void)state;
    static const size_t widths[] = {1, 8, 15, 16, 17, 48, 50, 64, 65, 130, 200};
    static const size_t row_counts[] = {1, 7, 64, 65, 200, 300};
    /* Per-mille of entries that are nonzero; 1000 stands for "exactly at the threshold". */
    static const size_t per_mille[] = {0, 10, 250, 1000};
    static const size_t col_counts[] = {300, 256, 45, 16};
    test_rng rng = test_rng_make(2026);
    for (size_t a = 0; a < sizeof widths / sizeof widths[0]; a++)
        for (size_t b = 0; b < sizeof row_counts / sizeof row_counts[0]; b++)
            for (size_t c = 0; c < sizeof per_mille / sizeof per_mille[0]; c++) {
                size_t h = widths[a], rows = row_counts[b];
                size_t cols = col_counts[(a + b + c) % (sizeof col_counts / sizeof col_counts[0])];
                size_t stride = (a + c) % 2 ? cols : cols + 3;
                size_t entries = rows * cols;
                size_t nonzeros = per_mille[c] == 1000 ? most_listed_nonzeros(entries, h)
                                                      : (entries * per_mille[c] + 500) / 1000;
                /* A NaN or two among the nonzeros, and some empty rows, where the share leaves room. */
                size_t nans = nonzeros > 4 && b % 2 ? 2 : 0;
                size_t empty_every = per_mille[c] == 1000 || rows < 7 ? 0 : 5;
                /* Rows of the other operand packed, padded to whole vectors (as a contrastive fit trains), or to odd. */
                size_t ld = (a + b) % 3 == 0 ? h : (a + b) % 3 == 1 ? (h + 15) / 16 * 16 : h + 3;
                check_listing(&rng, rows, cols, stride, h, ld, nonzeros, nans, empty_every);
            }
}

/* Inner dimensions of several L1 slices for every width, so that partial sums carry over between slices. */
static void listed_products_carry_sums_across_slices(void **state)
{
    (void)state;
    static const size_t shapes[][3] = {{70, 1000, 16}, {200, 800, 50}, {300, 1040, 8}, {130, 700, 200},
                                       {9, 2000, 1}, {260, 97, 65}};
    test_rng rng = test_rng_make(41);
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        size_t rows = shapes[s][0], cols = shapes[s][1], h = shapes[s][2];
        /* The slices hold fewer rows of the other operand when they are padded to whole vectors. */
        check_listing(&rng, rows, cols, cols, h, h, rows * cols / 10, 1, 4);
        check_listing(&rng, rows, cols, cols + 1, h, (h + 15) / 16 * 16, most_listed_nonzeros(rows * cols, h), 0, 0);
    }
}

/* One nonzero past the threshold, NaN counted as a nonzero: nothing is listed and nothing stays allocated. */
static void listing_stops_past_the_threshold(void **state)
{
    (void)state;
    static const size_t widths[] = {1, 16, 50, 64, 65, 130, 200};
    static const size_t shapes[][2] = {{1, 16}, {7, 45}, {64, 256}, {65, 300}, {200, 300}, {300, 33}};
    test_rng rng = test_rng_make(3);
    for (size_t a = 0; a < sizeof widths / sizeof widths[0]; a++)
        for (size_t b = 0; b < sizeof shapes / sizeof shapes[0]; b++) {
            size_t rows = shapes[b][0], cols = shapes[b][1], h = widths[a];
            size_t limit = most_listed_nonzeros(rows * cols, h);
            /* Past the limit by one, the last one a NaN: a NaN is a nonzero. */
            check_listing(&rng, rows, cols, cols + 2, h, h, limit + 1, 1, 0);
            /* All nonzeros, none NaN. */
            check_listing(&rng, rows, cols, cols, h, h, rows * cols, 0, 0);
            /* At the limit with NaNs: still listed (on AVX-512). */
            check_listing(&rng, rows, cols, cols, h, h, limit, limit > 2 ? 2 : limit, 0);
        }
    /* No rows, no columns or no outputs: nothing to list. */
    float one = 1.0f;
    counting_allocator counter;
    eb_allocator mem = counting_allocator_init(&counter);
    eb_sparse_rows s;
    const eb_matrix empties[] = {{&one, 0, 1, 1}, {&one, 1, 0, 1}};
    for (size_t i = 0; i < 2; i++) {
        assert_int_equal(eb__sparse_rows_list(empties[i], 4, 4, &mem, &s), EB_OK);
        assert_null(s.row_start);
    }
    eb_matrix single = {&one, 1, 1, 1};
    /* 1 of 1 entries is above every threshold; h 0 lists nothing either. */
    assert_int_equal(eb__sparse_rows_list(single, 0, 0, &mem, &s), EB_OK);
    assert_null(s.row_start);
    assert_int_equal(counter.attempts, 0);
}

/* Whether every field of a listing is zero, as list leaves it when it lists nothing. */
static bool listing_is_empty(const eb_sparse_rows *s)
{
    eb_sparse_rows zero;
    memset(&zero, 0, sizeof zero);
    return memcmp(s, &zero, sizeof zero) == 0;
}

/* Each allocation of eb__sparse_rows_list failing in turn: EB_ERR_NOMEM, nothing kept, the listing empty. */
static void listing_survives_allocation_failure(void **state)
{
    (void)state;
    static const size_t shapes[][3] = {{200, 300, 50}, {7, 45, 130}, {1, 16, 1}};
    test_rng rng = test_rng_make(17);
    for (size_t k = 0; k < sizeof shapes / sizeof shapes[0]; k++) {
        size_t rows = shapes[k][0], cols = shapes[k][1], h = shapes[k][2];
        float *x = malloc(rows * cols * sizeof *x);
        assert_non_null(x);
        place_nonzeros(&rng, x, rows, cols, cols, rows * cols / 4, 0, 0);
        eb_matrix xm = {x, rows, cols, cols};
        counting_allocator counter;
        eb_allocator mem = counting_allocator_init(&counter);
        size_t failed_runs = 0;
        for (size_t n = 0;; n++) {
            assert_true(n < 100);
            counting_allocator_arm(&counter, n);
            eb_sparse_rows s;
            memset(&s, 0xAB, sizeof s);
            eb_status status = eb__sparse_rows_list(xm, h, h, &mem, &s);
            size_t failures = counter.failures;
            counting_allocator_arm(&counter, SIZE_MAX);
            if (status == EB_OK) {
                assert_int_equal(failures, 0);
                assert_true((s.row_start != NULL) == listing_available());
                eb__sparse_rows_release(&s, &mem);
                assert_int_equal(counter.live_blocks, 0);
                break;
            }
            assert_int_equal(status, EB_ERR_NOMEM);
            assert_int_equal(failures, 1);
            assert_true(listing_is_empty(&s));
            assert_int_equal(counter.live_blocks, 0);
            eb__sparse_rows_release(&s, &mem);
            assert_true(listing_is_empty(&s));
            failed_runs++;
        }
        /* Nine arrays on AVX-512 (a failure at any of them); none elsewhere. */
        assert_true(listing_available() ? failed_runs >= 1 : failed_runs == 0);
        free(x);
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
        cmocka_unit_test(listed_products_give_the_kernels_bits),
        cmocka_unit_test(listed_products_carry_sums_across_slices),
        cmocka_unit_test(listing_stops_past_the_threshold),
        cmocka_unit_test(listing_survives_allocation_failure),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
