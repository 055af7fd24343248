/*
 * transform is documented as reentrant on a fitted finetuner of any kind: eight threads
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

typedef struct worker {
    pthread_barrier_t *start;
    const eb_finetuner *model;
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
        if (eb_finetuner_transform(w->model, w->x, eb_mut_matrix_view(w->out, ROWS, w->width), &err) != EB_OK)
            w->failures++;
        else if (memcmp(w->out, w->expected, ROWS * w->width * sizeof(float)) != 0)
            w->mismatches++;
    }
    return NULL;
}

static void check_concurrent_transform(const eb_finetuner *model, const float *x, const float *x_strided)
{
    const size_t width = eb_finetuner_output_dim(model);
    float *expected = malloc(ROWS * width * sizeof *expected);
    assert_non_null(expected);
    eb_error err;
    assert_int_equal(eb_finetuner_transform(model, eb_matrix_view(x, ROWS, COLS), eb_mut_matrix_view(expected, ROWS, width), &err),
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
        worker w = {&start, model, view, expected, width, 0, 0, malloc(ROWS * width * sizeof(float))};
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

/* The data, and a copy of it whose rows are padded with values that would show if read. */
static float *strided_copy(const test_data *data)
{
    float *strided = malloc(ROWS * STRIDE * sizeof *strided);
    assert_non_null(strided);
    for (size_t r = 0; r < ROWS; r++) {
        memcpy(strided + r * STRIDE, data->x + r * COLS, COLS * sizeof(float));
        for (size_t c = COLS; c < STRIDE; c++)
            strided[r * STRIDE + c] = -1e30f;
    }
    return strided;
}

static void transform_is_reentrant(void **state)
{
    (void)state;
    test_data data = make_data(ROWS, COLS, 3, 4, 1.0, 31);
    float *strided = strided_copy(&data);
    for (size_t k = 0; k < N_ALL_KINDS; k++) {
        /* Contrastive keeps its default width, as wide as the input. */
        eb_finetuner_params params = eb_finetuner_default_params(ALL_KINDS[k]);
        params.n_epochs = ALL_KINDS[k] == EB_KIND_FEEDFORWARD ? 20 : ALL_KINDS[k] == EB_KIND_CONTRASTIVE ? 5 : 1;
        if (ALL_KINDS[k] != EB_KIND_CONTRASTIVE)
            params.hidden_dim = HIDDEN;
        eb_finetuner *model = NULL;
        assert_int_equal(eb_finetuner_create(&params, NULL, &model, NULL), EB_OK);
        assert_int_equal(train_on(model, &data, false, 3), EB_OK);
        assert_int_equal(eb_finetuner_output_dim(model), ALL_KINDS[k] == EB_KIND_CONTRASTIVE ? COLS : HIDDEN);
        check_concurrent_transform(model, data.x, strided);
        eb_finetuner_free(model);
    }
    free(strided);
    data_release(&data);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(transform_is_reentrant),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
