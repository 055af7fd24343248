/*
 * transform is documented as reentrant on a fitted model: eight threads
 * transforming at once (each its own output, some over strided views, all
 * released together by a barrier) must produce exactly what a serial call
 * does.
 */
/* pthread_barrier_t is POSIX, hidden under strict -std=c11 without this. */
#define _POSIX_C_SOURCE 200809L

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "helpers.h"

enum { THREADS = 8, ROUNDS = 20, ROWS = 150, COLS = 24, HIDDEN = 16, STRIDE = COLS + 5 };

typedef eb_status (*transform_fn)(const void *model, eb_matrix x, eb_mut_matrix out, eb_error *err);

static eb_status ff_transform(const void *model, eb_matrix x, eb_mut_matrix out, eb_error *err)
{
    return eb_feedforward_transform(model, x, out, err);
}

static eb_status cl_transform(const void *model, eb_matrix x, eb_mut_matrix out, eb_error *err)
{
    return eb_contrastive_transform(model, x, out, err);
}

typedef struct worker {
    pthread_barrier_t *start;
    const void *model;
    transform_fn transform;
    eb_matrix x;
    const float *expected;
    size_t width;
    size_t mismatches;
    size_t failures;
    float *out;
} worker;

static void *run_worker(void *opaque)
{
    worker *w = opaque;
    pthread_barrier_wait(w->start);
    for (size_t round = 0; round < ROUNDS; round++) {
        /* Poison the output so a skipped write cannot pass as the serial result. */
        memset(w->out, 0xFF, ROWS * w->width * sizeof(float));
        eb_error err;
        if (w->transform(w->model, w->x, eb_mut_matrix_view(w->out, ROWS, w->width), &err) != EB_OK)
            w->failures++;
        else if (memcmp(w->out, w->expected, ROWS * w->width * sizeof(float)) != 0)
            w->mismatches++;
    }
    return NULL;
}

static void check_concurrent_transform(const void *model, transform_fn transform, const float *x,
                                       const float *x_strided, size_t width)
{
    float *expected = malloc(ROWS * width * sizeof *expected);
    assert_non_null(expected);
    eb_error err;
    assert_int_equal(transform(model, eb_matrix_view(x, ROWS, COLS), eb_mut_matrix_view(expected, ROWS, width), &err),
                     EB_OK);

    pthread_barrier_t start;
    assert_int_equal(pthread_barrier_init(&start, NULL, THREADS), 0);
    worker workers[THREADS];
    pthread_t threads[THREADS];
    for (size_t t = 0; t < THREADS; t++) {
        eb_matrix view = eb_matrix_view(x, ROWS, COLS);
        if (t % 2 == 1) {
            view.data = x_strided;
            view.stride = STRIDE;
        }
        worker w = {&start, model, transform, view, expected, width, 0, 0, malloc(ROWS * width * sizeof(float))};
        assert_non_null(w.out);
        workers[t] = w;
    }
    for (size_t t = 0; t < THREADS; t++)
        assert_int_equal(pthread_create(&threads[t], NULL, run_worker, &workers[t]), 0);
    for (size_t t = 0; t < THREADS; t++)
        assert_int_equal(pthread_join(threads[t], NULL), 0);
    for (size_t t = 0; t < THREADS; t++) {
        assert_int_equal(workers[t].failures, 0);
        assert_int_equal(workers[t].mismatches, 0);
        free(workers[t].out);
    }
    pthread_barrier_destroy(&start);
    free(expected);
}

typedef struct dataset {
    float x[ROWS * COLS];
    float strided[ROWS * STRIDE];
    int32_t y[ROWS];
} dataset;

static dataset *make_data(void)
{
    dataset *data = malloc(sizeof *data);
    assert_non_null(data);
    test_rng rng = test_rng_make(31);
    toy_buried_signal(&rng, ROWS, 3, 4, COLS - 4, 1.0, 0.3, 1.0, data->x, data->y);
    for (size_t r = 0; r < ROWS; r++) {
        memcpy(data->strided + r * STRIDE, data->x + r * COLS, COLS * sizeof(float));
        for (size_t c = COLS; c < STRIDE; c++)
            data->strided[r * STRIDE + c] = -1e30f;
    }
    return data;
}

static void feedforward_transform_is_reentrant(void **state)
{
    (void)state;
    dataset *data = make_data();
    eb_feedforward_params params = eb_feedforward_default_params();
    params.hidden_dim = HIDDEN;
    params.n_epochs = 20;
    eb_feedforward *model = NULL;
    assert_int_equal(eb_feedforward_create(&params, NULL, &model, NULL), EB_OK);
    assert_int_equal(eb_feedforward_fit(model, eb_matrix_view(data->x, ROWS, COLS), data->y, 3), EB_OK);
    check_concurrent_transform(model, ff_transform, data->x, data->strided, HIDDEN);
    eb_feedforward_free(model);
    free(data);
}

static void contrastive_transform_is_reentrant(void **state)
{
    (void)state;
    dataset *data = make_data();
    eb_contrastive_params params = eb_contrastive_default_params();
    params.n_epochs = 5;
    eb_contrastive *model = NULL;
    assert_int_equal(eb_contrastive_create(&params, NULL, &model, NULL), EB_OK);
    assert_int_equal(eb_contrastive_fit(model, eb_matrix_view(data->x, ROWS, COLS), data->y, 3), EB_OK);
    assert_int_equal(eb_contrastive_output_dim(model), COLS);
    check_concurrent_transform(model, cl_transform, data->x, data->strided, COLS);
    eb_contrastive_free(model);
    free(data);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(feedforward_transform_is_reentrant),
        cmocka_unit_test(contrastive_transform_is_reentrant),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
