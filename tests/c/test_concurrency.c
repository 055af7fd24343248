/*
 * The threading contract of include/embetter/embetter.h ("Threads"), checked
 * the way a C caller relies on it, and run under ThreadSanitizer by
 * tests/c/run-tsan.sh:
 *   - every read-only call on one fitted handle (transform, save_to_buffer,
 *     saved_size, the accessors, loss_history) runs from many threads at
 *     once, and each output equals the serial result bit for bit;
 *   - different handles are independent: models trained on separate threads
 *     at the same time end exactly as when trained one after another;
 *   - a caller that serialises the changing calls with a reader-writer lock,
 *     as the contract asks, gets transforms that each equal one of the states
 *     the model passed through.
 */
/* pthread_barrier_t and pthread_rwlock_t are POSIX, hidden under strict -std=c11 without this. */
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

enum { READERS = 6, ROUNDS = 12, ROWS = 120, COLS = 16, HIDDEN = 8, CLASSES = 3, TRAINERS = 4, PASSES = 6 };

typedef struct dataset {
    float x[ROWS * COLS];
    int32_t y[ROWS];
} dataset;

static dataset *make_data(uint64_t seed)
{
    dataset *data = malloc(sizeof *data);
    assert_non_null(data);
    test_rng rng = test_rng_make(seed);
    toy_buried_signal(&rng, ROWS, CLASSES, 4, COLS - 4, 1.0, 0.3, 1.0, data->x, data->y);
    return data;
}

static eb_feedforward *fitted_feedforward(const dataset *data, uint64_t seed)
{
    eb_feedforward_params params = eb_feedforward_default_params();
    params.hidden_dim = HIDDEN;
    params.n_epochs = 10;
    params.batch_size = 32;
    params.seed = seed;
    eb_feedforward *model = NULL;
    assert_int_equal(eb_feedforward_create(&params, NULL, &model, NULL), EB_OK);
    assert_int_equal(eb_feedforward_fit(model, eb_matrix_view(data->x, ROWS, COLS), data->y, CLASSES), EB_OK);
    return model;
}

/* save_to_buffer's bytes: the whole state of a model, to compare models exactly. */
static unsigned char *feedforward_bytes(const eb_feedforward *model, size_t *size)
{
    size_t capacity = eb_feedforward_saved_size(model);
    unsigned char *bytes = malloc(capacity);
    assert_non_null(bytes);
    assert_int_equal(eb_feedforward_save_to_buffer(model, bytes, capacity, size, NULL), EB_OK);
    return bytes;
}

/* ---- many readers on one handle ------------------------------------------------------------------ */

typedef struct reader {
    pthread_barrier_t *start;
    const eb_feedforward *model;
    const dataset *data;
    size_t saved_capacity;
    /* ROUNDS outputs of each kind, compared by the main thread after the join. */
    float *outputs;
    unsigned char *saved;
    size_t saved_sizes[ROUNDS];
    size_t history_lengths[ROUNDS];
    double history_last[ROUNDS];
    size_t shape_errors;
    eb_status statuses[ROUNDS];
} reader;

static void *run_reader(void *opaque)
{
    reader *r = opaque;
    pthread_barrier_wait(r->start);
    for (size_t round = 0; round < ROUNDS; round++) {
        float *out = r->outputs + round * ROWS * HIDDEN;
        eb_error err;
        r->statuses[round] = eb_feedforward_transform(r->model, eb_matrix_view(r->data->x, ROWS, COLS),
                                                      eb_mut_matrix_view(out, ROWS, HIDDEN), &err);
        if (r->statuses[round] == EB_OK)
            r->statuses[round] = eb_feedforward_save_to_buffer(r->model, r->saved + round * r->saved_capacity,
                                                               r->saved_capacity, &r->saved_sizes[round], &err);
        const double *history = eb_feedforward_loss_history(r->model, &r->history_lengths[round]);
        r->history_last[round] = r->history_lengths[round] ? history[r->history_lengths[round] - 1] : 0.0;
        if (!eb_feedforward_is_fitted(r->model) || eb_feedforward_n_features(r->model) != COLS ||
            eb_feedforward_n_classes(r->model) != CLASSES || eb_feedforward_output_dim(r->model) != HIDDEN ||
            eb_feedforward_get_params(r->model).hidden_dim != HIDDEN ||
            eb_feedforward_saved_size(r->model) != r->saved_capacity || eb_feedforward_last_error(r->model)[0] != 0)
            r->shape_errors++;
        /* A failing transform writes only the caller's eb_error, never the model: others must not notice it. */
        float small[HIDDEN];
        if (eb_feedforward_transform(r->model, eb_matrix_view(r->data->x, 1, COLS - 1),
                                     eb_mut_matrix_view(small, 1, HIDDEN), &err) != EB_ERR_SHAPE_MISMATCH)
            r->shape_errors++;
    }
    return NULL;
}

static void readers_on_one_handle_equal_the_serial_results(void **state)
{
    (void)state;
    dataset *data = make_data(5);
    eb_feedforward *model = fitted_feedforward(data, 9);
    float *expected = malloc(ROWS * HIDDEN * sizeof *expected);
    assert_non_null(expected);
    assert_int_equal(eb_feedforward_transform(model, eb_matrix_view(data->x, ROWS, COLS),
                                              eb_mut_matrix_view(expected, ROWS, HIDDEN), NULL),
                     EB_OK);
    size_t expected_size = 0;
    unsigned char *expected_bytes = feedforward_bytes(model, &expected_size);
    size_t history_length = 0;
    const double *history = eb_feedforward_loss_history(model, &history_length);
    assert_int_equal(history_length, 10);

    pthread_barrier_t start;
    assert_int_equal(pthread_barrier_init(&start, NULL, READERS), 0);
    reader *readers = calloc(READERS, sizeof *readers);
    pthread_t threads[READERS];
    assert_non_null(readers);
    for (size_t t = 0; t < READERS; t++) {
        readers[t].start = &start;
        readers[t].model = model;
        readers[t].data = data;
        readers[t].saved_capacity = eb_feedforward_saved_size(model);
        readers[t].outputs = malloc(ROUNDS * ROWS * HIDDEN * sizeof(float));
        readers[t].saved = malloc(ROUNDS * readers[t].saved_capacity);
        assert_non_null(readers[t].outputs);
        assert_non_null(readers[t].saved);
        /* Poison: a skipped write cannot pass as the serial result. */
        memset(readers[t].outputs, 0xFF, ROUNDS * ROWS * HIDDEN * sizeof(float));
        memset(readers[t].saved, 0xFF, ROUNDS * readers[t].saved_capacity);
    }
    for (size_t t = 0; t < READERS; t++)
        assert_int_equal(pthread_create(&threads[t], NULL, run_reader, &readers[t]), 0);
    for (size_t t = 0; t < READERS; t++)
        assert_int_equal(pthread_join(threads[t], NULL), 0);

    for (size_t t = 0; t < READERS; t++) {
        assert_int_equal(readers[t].shape_errors, 0);
        for (size_t round = 0; round < ROUNDS; round++) {
            assert_int_equal(readers[t].statuses[round], EB_OK);
            assert_memory_equal(readers[t].outputs + round * ROWS * HIDDEN, expected, ROWS * HIDDEN * sizeof(float));
            assert_int_equal(readers[t].saved_sizes[round], expected_size);
            assert_memory_equal(readers[t].saved + round * readers[t].saved_capacity, expected_bytes, expected_size);
            assert_int_equal(readers[t].history_lengths[round], history_length);
            assert_true(readers[t].history_last[round] == history[history_length - 1]);
        }
        free(readers[t].outputs);
        free(readers[t].saved);
    }
    free(readers);
    pthread_barrier_destroy(&start);
    free(expected_bytes);
    free(expected);
    eb_feedforward_free(model);
    free(data);
}

/* ---- independent handles on separate threads ---------------------------------------------------- */

typedef struct trainer {
    pthread_barrier_t *start;
    uint64_t seed;
    const dataset *data;
    unsigned char *feedforward;
    size_t feedforward_size;
    unsigned char *contrastive;
    size_t contrastive_size;
    eb_status status;
} trainer;

/* What one thread does with handles of its own: create, fit, a few partial_fits, serialise, free. */
static eb_status train_alone(trainer *t)
{
    eb_matrix x = eb_matrix_view(t->data->x, ROWS, COLS);
    eb_feedforward_params ff_params = eb_feedforward_default_params();
    ff_params.hidden_dim = HIDDEN;
    ff_params.n_epochs = 8;
    ff_params.batch_size = 16;
    ff_params.seed = t->seed;
    eb_feedforward *ff = NULL;
    eb_status status = eb_feedforward_create(&ff_params, NULL, &ff, NULL);
    if (status == EB_OK)
        status = eb_feedforward_fit(ff, x, t->data->y, CLASSES);
    for (size_t pass = 0; pass < PASSES && status == EB_OK; pass++)
        status = eb_feedforward_partial_fit(ff, x, t->data->y, 0);
    if (status == EB_OK) {
        t->feedforward = malloc(eb_feedforward_saved_size(ff));
        status = t->feedforward == NULL ? EB_ERR_NOMEM
                                        : eb_feedforward_save_to_buffer(ff, t->feedforward, eb_feedforward_saved_size(ff),
                                                                        &t->feedforward_size, NULL);
    }
    eb_feedforward_free(ff);

    eb_contrastive_params cl_params = eb_contrastive_default_params();
    cl_params.hidden_dim = HIDDEN;
    cl_params.n_epochs = 3;
    cl_params.batch_size = 24;
    cl_params.seed = t->seed;
    eb_contrastive *cl = NULL;
    if (status == EB_OK)
        status = eb_contrastive_create(&cl_params, NULL, &cl, NULL);
    if (status == EB_OK)
        status = eb_contrastive_fit(cl, x, t->data->y, CLASSES);
    for (size_t pass = 0; pass < PASSES && status == EB_OK; pass++)
        status = eb_contrastive_partial_fit(cl, x, t->data->y, 0);
    if (status == EB_OK) {
        t->contrastive = malloc(eb_contrastive_saved_size(cl));
        status = t->contrastive == NULL ? EB_ERR_NOMEM
                                        : eb_contrastive_save_to_buffer(cl, t->contrastive, eb_contrastive_saved_size(cl),
                                                                        &t->contrastive_size, NULL);
    }
    eb_contrastive_free(cl);
    return status;
}

static void *run_trainer(void *opaque)
{
    trainer *t = opaque;
    pthread_barrier_wait(t->start);
    t->status = train_alone(t);
    return NULL;
}

static void independent_handles_train_on_separate_threads_as_alone(void **state)
{
    (void)state;
    dataset *data = make_data(17);
    pthread_barrier_t start;
    assert_int_equal(pthread_barrier_init(&start, NULL, TRAINERS), 0);
    trainer alone[TRAINERS], together[TRAINERS];
    pthread_t threads[TRAINERS];
    memset(alone, 0, sizeof alone);
    memset(together, 0, sizeof together);
    /* Two threads share each seed: equal seeds must give equal bytes even while training at the same time. */
    for (size_t t = 0; t < TRAINERS; t++) {
        alone[t].seed = together[t].seed = 100 + t / 2;
        alone[t].data = together[t].data = data;
        together[t].start = &start;
        assert_int_equal(train_alone(&alone[t]), EB_OK);
    }
    for (size_t t = 0; t < TRAINERS; t++)
        assert_int_equal(pthread_create(&threads[t], NULL, run_trainer, &together[t]), 0);
    for (size_t t = 0; t < TRAINERS; t++)
        assert_int_equal(pthread_join(threads[t], NULL), 0);
    for (size_t t = 0; t < TRAINERS; t++) {
        assert_int_equal(together[t].status, EB_OK);
        assert_int_equal(together[t].feedforward_size, alone[t].feedforward_size);
        assert_memory_equal(together[t].feedforward, alone[t].feedforward, alone[t].feedforward_size);
        assert_int_equal(together[t].contrastive_size, alone[t].contrastive_size);
        assert_memory_equal(together[t].contrastive, alone[t].contrastive, alone[t].contrastive_size);
        free(alone[t].feedforward);
        free(alone[t].contrastive);
        free(together[t].feedforward);
        free(together[t].contrastive);
    }
    pthread_barrier_destroy(&start);
    free(data);
}

/* ---- a caller that serialises changes with a reader-writer lock ------------------------------------ */

enum { STATES = PASSES + 1, LOCKED_READS = 40 };

typedef struct shared_model {
    pthread_rwlock_t lock;
    pthread_barrier_t start; /* the trainer and the readers start together, so that they interleave */
    eb_feedforward *model;
    const dataset *data;
    /* Written by the trainer under the write lock: the transform of data->x after each pass (0: before any). */
    float states[STATES][ROWS * HIDDEN];
    size_t states_recorded;
} shared_model;

typedef struct locked_reader {
    shared_model *shared;
    float outputs[LOCKED_READS][ROWS * HIDDEN];
    eb_status statuses[LOCKED_READS];
} locked_reader;

static void *run_locked_trainer(void *opaque)
{
    shared_model *s = opaque;
    pthread_barrier_wait(&s->start);
    for (size_t pass = 1; pass < STATES; pass++) {
        pthread_rwlock_wrlock(&s->lock);
        eb_status status = eb_feedforward_partial_fit(s->model, eb_matrix_view(s->data->x, ROWS, COLS), s->data->y, 0);
        if (status == EB_OK)
            status = eb_feedforward_transform(s->model, eb_matrix_view(s->data->x, ROWS, COLS),
                                              eb_mut_matrix_view(s->states[pass], ROWS, HIDDEN), NULL);
        if (status == EB_OK)
            s->states_recorded = pass + 1;
        pthread_rwlock_unlock(&s->lock);
    }
    return NULL;
}

static void *run_locked_reader(void *opaque)
{
    locked_reader *r = opaque;
    pthread_barrier_wait(&r->shared->start);
    for (size_t i = 0; i < LOCKED_READS; i++) {
        pthread_rwlock_rdlock(&r->shared->lock);
        r->statuses[i] = eb_feedforward_transform(r->shared->model, eb_matrix_view(r->shared->data->x, ROWS, COLS),
                                                  eb_mut_matrix_view(r->outputs[i], ROWS, HIDDEN), NULL);
        pthread_rwlock_unlock(&r->shared->lock);
    }
    return NULL;
}

static void transforms_under_a_caller_lock_see_whole_states(void **state)
{
    (void)state;
    dataset *data = make_data(23);
    shared_model *s = calloc(1, sizeof *s);
    locked_reader *readers = calloc(READERS, sizeof *readers);
    assert_non_null(s);
    assert_non_null(readers);
    assert_int_equal(pthread_rwlock_init(&s->lock, NULL), 0);
    assert_int_equal(pthread_barrier_init(&s->start, NULL, READERS + 1), 0);
    s->data = data;
    s->model = fitted_feedforward(data, 3);
    assert_int_equal(eb_feedforward_transform(s->model, eb_matrix_view(data->x, ROWS, COLS),
                                              eb_mut_matrix_view(s->states[0], ROWS, HIDDEN), NULL),
                     EB_OK);
    s->states_recorded = 1;
    pthread_t trainer_thread, threads[READERS];
    for (size_t t = 0; t < READERS; t++) {
        readers[t].shared = s;
        assert_int_equal(pthread_create(&threads[t], NULL, run_locked_reader, &readers[t]), 0);
    }
    assert_int_equal(pthread_create(&trainer_thread, NULL, run_locked_trainer, s), 0);
    for (size_t t = 0; t < READERS; t++)
        assert_int_equal(pthread_join(threads[t], NULL), 0);
    assert_int_equal(pthread_join(trainer_thread, NULL), 0);
    assert_int_equal(s->states_recorded, STATES);
    for (size_t state_index = 1; state_index < STATES; state_index++)
        assert_memory_not_equal(s->states[state_index], s->states[state_index - 1], sizeof s->states[0]);
    for (size_t t = 0; t < READERS; t++) {
        for (size_t i = 0; i < LOCKED_READS; i++) {
            assert_int_equal(readers[t].statuses[i], EB_OK);
            size_t matches = 0;
            for (size_t state_index = 0; state_index < STATES; state_index++)
                matches += memcmp(readers[t].outputs[i], s->states[state_index], sizeof s->states[0]) == 0;
            assert_int_equal(matches, 1);
        }
    }
    eb_feedforward_free(s->model);
    pthread_rwlock_destroy(&s->lock);
    pthread_barrier_destroy(&s->start);
    free(readers);
    free(s);
    free(data);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(readers_on_one_handle_equal_the_serial_results),
        cmocka_unit_test(independent_handles_train_on_separate_threads_as_alone),
        cmocka_unit_test(transforms_under_a_caller_lock_see_whole_states),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
