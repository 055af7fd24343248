/*
 * The analytic gradients of both models against central finite differences
 * of a loss this file computes itself, in double precision, from the weight
 * layout documented in src/testing.h. The library never sees the perturbed
 * weights: they live in the test's double copy, so the finite differences
 * are not limited by float32 rounding.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "helpers.h"
#include "testing.h"

/*
 * Step of the central difference. The double loss has rounding error near
 * 1e-16, so the quotient's noise is about 1e-16 / STEP = 1e-10, and the
 * truncation error (STEP^2 times a third derivative of order one) about
 * 1e-12: both far below the float32 error of the analytic gradient.
 */
static const double STEP = 1e-6;

/*
 * The analytic gradient is computed in float32 over sums of up to a few
 * dozen terms of order one, so its error is a few 1e-7 in absolute terms
 * plus a few 1e-7 relative. A component passes when
 *     |analytic - numeric| <= ABS_TOL + REL_TOL * |numeric|.
 * ABS_TOL 2e-5 and REL_TOL 1e-3 leave a wide margin over that, yet a wrong
 * formula (a missing factor 2, a dropped term, a transposed index) moves
 * components of order 1e-2..1 by far more than either.
 */
static const double ABS_TOL = 2e-5;
static const double REL_TOL = 1e-3;

static double *to_double(const float *values, size_t count)
{
    double *out = malloc(count * sizeof *out);
    assert_non_null(out);
    for (size_t i = 0; i < count; i++)
        out[i] = values[i];
    return out;
}

/* Row-padded float copy of a contiguous n x d matrix, so the library reads it through stride > cols. */
static float *padded_copy(const float *x, size_t n, size_t d, size_t stride)
{
    float *out = malloc(n * stride * sizeof *out);
    assert_non_null(out);
    for (size_t i = 0; i < n * stride; i++)
        out[i] = NAN; /* padding must never be read */
    for (size_t r = 0; r < n; r++)
        memcpy(out + r * stride, x + r * d, d * sizeof *out);
    return out;
}

/* Compare analytic with numeric component by component; returns the largest |numeric| seen. */
static double compare_gradients(const char *what, const float *analytic, const double *numeric, size_t count)
{
    double largest = 0.0;
    size_t failures = 0;
    for (size_t i = 0; i < count; i++) {
        double diff = fabs((double)analytic[i] - numeric[i]);
        double allowed = ABS_TOL + REL_TOL * fabs(numeric[i]);
        if (!(diff <= allowed)) {
            if (failures < 5)
                print_error("%s: weight %zu analytic %.9g numeric %.9g (diff %.3g > %.3g)\n", what, i,
                            (double)analytic[i], numeric[i], diff, allowed);
            failures++;
        }
        if (fabs(numeric[i]) > largest)
            largest = fabs(numeric[i]);
    }
    assert_int_equal(failures, 0);
    return largest;
}

/* ---- feed-forward ------------------------------------------------------------ */

typedef struct ff_case {
    const char *name;
    size_t rows, cols, hidden, classes;
    size_t stride;      /* 0: contiguous */
    bool trivial;       /* one class: the loss is identically 0 */
} ff_case;

/* Mean softmax cross-entropy of sigmoid(x W1 + b1) W2 + b2, in double. */
static double ff_loss(const double *w, const ff_case *c, const double *x, const int32_t *y)
{
    const size_t d = c->cols, h = c->hidden, k = c->classes;
    const double *w1 = w, *b1 = w1 + d * h, *w2 = b1 + h, *b2 = w2 + h * k;
    double *hidden = malloc(h * sizeof *hidden), *scores = malloc(k * sizeof *scores);
    assert_non_null(hidden);
    assert_non_null(scores);
    double total = 0.0;
    for (size_t r = 0; r < c->rows; r++) {
        for (size_t j = 0; j < h; j++) {
            double z = b1[j];
            for (size_t i = 0; i < d; i++)
                z += x[r * d + i] * w1[i * h + j];
            hidden[j] = 1.0 / (1.0 + exp(-z));
        }
        double top = -INFINITY;
        for (size_t m = 0; m < k; m++) {
            double s = b2[m];
            for (size_t j = 0; j < h; j++)
                s += hidden[j] * w2[j * k + m];
            scores[m] = s;
            top = s > top ? s : top;
        }
        double sum = 0.0;
        for (size_t m = 0; m < k; m++)
            sum += exp(scores[m] - top);
        total += top + log(sum) - scores[y[r]];
    }
    free(hidden);
    free(scores);
    return total / (double)c->rows;
}

static void check_feedforward_case(const ff_case *c, uint64_t seed)
{
    test_rng rng = test_rng_make(seed);
    const size_t n = c->rows, d = c->cols;
    float *x = malloc(n * d * sizeof *x);
    int32_t *y = malloc(n * sizeof *y);
    assert_non_null(x);
    assert_non_null(y);
    for (size_t i = 0; i < n * d; i++)
        x[i] = (float)test_rng_uniform(&rng, -2.0, 2.0);
    /* Labels in a scrambled order, every class used whenever rows allow. */
    for (size_t r = 0; r < n; r++)
        y[r] = (int32_t)((r * 7 + 3) % c->classes);

    eb_finetuner_params params = eb_finetuner_default_params(EB_KIND_FEEDFORWARD);
    params.hidden_dim = c->hidden;
    eb_finetuner *model = NULL;
    assert_int_equal(eb_finetuner_create(&params, NULL, &model, NULL), EB_OK);
    assert_int_equal(eb__finetuner_init_weights(model, d, c->classes), EB_OK);
    size_t count;
    float *weights = eb__finetuner_weights(model, &count);
    assert_int_equal(count, d * c->hidden + c->hidden + c->hidden * c->classes + c->classes);
    /* Weights larger than the initial +-1/sqrt(fan_in), so hidden units leave sigmoid's linear middle. */
    for (size_t i = 0; i < count; i++)
        weights[i] = (float)test_rng_uniform(&rng, -1.5, 1.5);

    float *grad = calloc(count, sizeof *grad);
    assert_non_null(grad);
    double mean_loss = -1.0;
    eb_matrix view = eb_matrix_view(x, n, d);
    float *padded = NULL;
    if (c->stride != 0) {
        padded = padded_copy(x, n, d, c->stride);
        view.data = padded;
        view.stride = c->stride;
    }
    assert_int_equal(eb__feedforward_gradient(model, view, y, grad, &mean_loss), EB_OK);

    double *w = to_double(weights, count);
    double *xd = to_double(x, n * d);
    double loss = ff_loss(w, c, xd, y);
    assert_true(fabs(mean_loss - loss) <= 1e-5 * (1.0 + fabs(loss)));

    double *numeric = malloc(count * sizeof *numeric);
    assert_non_null(numeric);
    for (size_t i = 0; i < count; i++) {
        double saved = w[i];
        w[i] = saved + STEP;
        double plus = ff_loss(w, c, xd, y);
        w[i] = saved - STEP;
        double minus = ff_loss(w, c, xd, y);
        w[i] = saved;
        numeric[i] = (plus - minus) / (2.0 * STEP);
    }
    double largest = compare_gradients(c->name, grad, numeric, count);
    if (c->trivial) {
        assert_true(fabs(loss) < 1e-12);
        for (size_t i = 0; i < count; i++)
            assert_true(grad[i] == 0.0f);
    } else {
        /* Guard against a vacuous pass: the gradient must be far from zero somewhere. */
        assert_true(largest > 1e-2);
    }

    free(numeric);
    free(w);
    free(xd);
    free(grad);
    free(padded);
    free(x);
    free(y);
    eb_finetuner_free(model);
}

static void feedforward_gradient_matches_finite_differences(void **state)
{
    (void)state;
    static const ff_case cases[] = {
        {"ff 8x3 h4 k2", 8, 3, 4, 2, 0, false},
        {"ff 6x5 h1 k3 (hidden_dim 1)", 6, 5, 1, 3, 0, false},
        {"ff 5x4 h3 k5 (one class per row)", 5, 4, 3, 5, 0, false},
        {"ff 12x7 h6 k4 strided", 12, 7, 6, 4, 11, false},
        {"ff 1x2 h2 k2 (one row)", 1, 2, 2, 2, 0, false},
        {"ff 4x3 h2 k1 (one class)", 4, 3, 2, 1, 0, true},
        {"ff 20x10 h9 k3", 20, 10, 9, 3, 0, false},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        check_feedforward_case(&cases[i], 100 + i);
}

/* ---- contrastive ------------------------------------------------------------- */

typedef struct cl_case {
    const char *name;
    size_t rows, cols, hidden; /* hidden EB_HIDDEN_DIM_AS_INPUT: as many as cols */
    size_t stride;
} cl_case;

typedef struct cl_pairs {
    size_t count;
    uint32_t *left, *right;
    float *target;
} cl_pairs;

/* Mean over pairs of (cos(e_l, e_r) - target)^2, e = x W + b, each norm clamped below at 1e-8. */
static double cl_loss(const double *w, size_t d, size_t h, const double *x, size_t n, const cl_pairs *p)
{
    const double *bias = w + d * h;
    double *embed = malloc(n * h * sizeof *embed);
    assert_non_null(embed);
    for (size_t r = 0; r < n; r++)
        for (size_t j = 0; j < h; j++) {
            double e = bias[j];
            for (size_t i = 0; i < d; i++)
                e += x[r * d + i] * w[i * h + j];
            embed[r * h + j] = e;
        }
    double total = 0.0;
    for (size_t q = 0; q < p->count; q++) {
        const double *a = embed + (size_t)p->left[q] * h, *b = embed + (size_t)p->right[q] * h;
        double dot = 0.0, aa = 0.0, bb = 0.0;
        for (size_t j = 0; j < h; j++) {
            dot += a[j] * b[j];
            aa += a[j] * a[j];
            bb += b[j] * b[j];
        }
        double na = fmax(sqrt(aa), 1e-8), nb = fmax(sqrt(bb), 1e-8);
        double diff = dot / (na * nb) - p->target[q];
        total += diff * diff;
    }
    free(embed);
    return total / (double)p->count;
}

static void check_contrastive_case(const cl_case *c, uint64_t seed)
{
    test_rng rng = test_rng_make(seed);
    const size_t n = c->rows, d = c->cols;
    const size_t h = c->hidden == EB_HIDDEN_DIM_AS_INPUT ? d : c->hidden;
    float *x = malloc(n * d * sizeof *x);
    assert_non_null(x);
    for (size_t i = 0; i < n * d; i++)
        x[i] = (float)test_rng_uniform(&rng, -2.0, 2.0);

    /* Every row against a random partner, plus self-pairs with both targets and a repeated pair. */
    cl_pairs pairs;
    pairs.count = 2 * n + 3;
    pairs.left = malloc(pairs.count * sizeof *pairs.left);
    pairs.right = malloc(pairs.count * sizeof *pairs.right);
    pairs.target = malloc(pairs.count * sizeof *pairs.target);
    assert_non_null(pairs.left);
    assert_non_null(pairs.right);
    assert_non_null(pairs.target);
    size_t q = 0;
    for (size_t r = 0; r < n; r++) {
        pairs.left[q] = (uint32_t)r;
        pairs.right[q] = (uint32_t)(test_rng_next(&rng) % n);
        pairs.target[q++] = (float)(r % 2);
        pairs.left[q] = (uint32_t)(test_rng_next(&rng) % n);
        pairs.right[q] = (uint32_t)r;
        pairs.target[q++] = (float)((r + 1) % 2);
    }
    pairs.left[q] = 0, pairs.right[q] = 0, pairs.target[q++] = 1.0f;
    pairs.left[q] = (uint32_t)(n - 1), pairs.right[q] = (uint32_t)(n - 1), pairs.target[q++] = 0.0f;
    pairs.left[q] = pairs.left[0], pairs.right[q] = pairs.right[0], pairs.target[q++] = pairs.target[0];
    assert_int_equal(q, pairs.count);

    eb_finetuner_params params = eb_finetuner_default_params(EB_KIND_CONTRASTIVE);
    params.hidden_dim = c->hidden;
    eb_finetuner *model = NULL;
    assert_int_equal(eb_finetuner_create(&params, NULL, &model, NULL), EB_OK);
    assert_int_equal(eb__finetuner_init_weights(model, d, 2), EB_OK);
    assert_int_equal(eb_finetuner_output_dim(model), h);
    size_t count;
    float *weights = eb__finetuner_weights(model, &count);
    assert_int_equal(count, d * h + h);
    for (size_t i = 0; i < count; i++)
        weights[i] = (float)test_rng_uniform(&rng, -1.0, 1.0);

    float *grad = calloc(count, sizeof *grad);
    assert_non_null(grad);
    eb_matrix view = eb_matrix_view(x, n, d);
    float *padded = NULL;
    if (c->stride != 0) {
        padded = padded_copy(x, n, d, c->stride);
        view.data = padded;
        view.stride = c->stride;
    }
    double mean_loss = -1.0;
    assert_int_equal(
        eb__contrastive_gradient(model, view, pairs.left, pairs.right, pairs.target, pairs.count, grad, &mean_loss),
        EB_OK);

    double *w = to_double(weights, count);
    double *xd = to_double(x, n * d);
    double loss = cl_loss(w, d, h, xd, n, &pairs);
    assert_true(fabs(mean_loss - loss) <= 1e-5 * (1.0 + fabs(loss)));

    double *numeric = malloc(count * sizeof *numeric);
    assert_non_null(numeric);
    for (size_t i = 0; i < count; i++) {
        double saved = w[i];
        w[i] = saved + STEP;
        double plus = cl_loss(w, d, h, xd, n, &pairs);
        w[i] = saved - STEP;
        double minus = cl_loss(w, d, h, xd, n, &pairs);
        w[i] = saved;
        numeric[i] = (plus - minus) / (2.0 * STEP);
    }
    double largest = compare_gradients(c->name, grad, numeric, count);
    /* With one output column every cosine is +-1 and the loss is flat; otherwise it must not be. */
    if (h > 1)
        assert_true(largest > 1e-2);

    free(numeric);
    free(w);
    free(xd);
    free(grad);
    free(padded);
    free(pairs.left);
    free(pairs.right);
    free(pairs.target);
    free(x);
    eb_finetuner_free(model);
}

static void contrastive_gradient_matches_finite_differences(void **state)
{
    (void)state;
    static const cl_case cases[] = {
        {"cl 6x4 h3", 6, 4, 3, 0},
        {"cl 5x5 h=d", 5, 5, EB_HIDDEN_DIM_AS_INPUT, 0},
        {"cl 7x3 h1 (hidden_dim 1)", 7, 3, 1, 0},
        {"cl 10x6 h8 strided", 10, 6, 8, 9},
        {"cl 2x2 h2", 2, 2, 2, 0},
        {"cl 16x9 h5", 16, 9, 5, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        check_contrastive_case(&cases[i], 200 + i);
}

/*
 * A pair of a row with itself has cosine exactly 1 whatever the weights, so
 * with target 1 its loss and gradient are 0, and with target 0 the loss is 1
 * with gradient 0; the double-counting of the shared row must cancel.
 */
static void contrastive_self_pairs_have_zero_gradient(void **state)
{
    (void)state;
    test_rng rng = test_rng_make(7);
    enum { N = 4, D = 5 };
    float x[N * D];
    for (size_t i = 0; i < N * D; i++)
        x[i] = (float)test_rng_uniform(&rng, -1.0, 1.0);
    eb_finetuner_params params = eb_finetuner_default_params(EB_KIND_CONTRASTIVE);
    params.hidden_dim = 3;
    eb_finetuner *model = NULL;
    assert_int_equal(eb_finetuner_create(&params, NULL, &model, NULL), EB_OK);
    assert_int_equal(eb__finetuner_init_weights(model, D, 2), EB_OK);
    size_t count;
    eb__finetuner_weights(model, &count);
    float *grad = calloc(count, sizeof *grad);
    assert_non_null(grad);
    const uint32_t rows[N] = {0, 1, 2, 3};
    for (int target_value = 0; target_value <= 1; target_value++) {
        const float targets[N] = {(float)target_value, (float)target_value, (float)target_value,
                                  (float)target_value};
        double mean_loss = -1.0;
        assert_int_equal(eb__contrastive_gradient(model, eb_matrix_view(x, N, D), rows, rows, targets, N, grad,
                                                  &mean_loss),
                         EB_OK);
        assert_true(fabs(mean_loss - (target_value ? 0.0 : 1.0)) < 1e-5);
        for (size_t i = 0; i < count; i++)
            assert_true(fabsf(grad[i]) < 1e-5f);
    }
    free(grad);
    eb_finetuner_free(model);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(feedforward_gradient_matches_finite_differences),
        cmocka_unit_test(contrastive_gradient_matches_finite_differences),
        cmocka_unit_test(contrastive_self_pairs_have_zero_gradient),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
