/*
 * The threading contract of include/embetter/finetune.h ("Threads"), checked
 * the way a C caller relies on it, and run under ThreadSanitizer by
 * tests/c/run-tsan.sh:
 *   - every read-only call on one fitted handle of any kind (transform,
 *     save_to_buffer, saved_size, the accessors, loss_history) runs from
 *     many threads at once, and each output equals the serial result bit
 *     for bit;
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

static test_data data_of_seed(uint64_t seed) { return make_data(ROWS, COLS, CLASSES, 4, 1.0, seed); }

/* A finetuner of the kind trained on the data, HIDDEN wide. */
static eb_finetuner *fitted(eb_finetuner_kind kind, const test_data *data, uint64_t seed, size_t n_epochs,
                            size_t batch_size)
{
    eb_finetuner_params params = test_params(kind, HIDDEN, n_epochs, seed);
    params.batch_size = batch_size;
    eb_finetuner *model = NULL;
    assert_int_equal(eb_finetuner_create(&params, NULL, &model, NULL), EB_OK);
    assert_int_equal(train_on(model, data, false, CLASSES), EB_OK);
    return model;
}

/* save_to_buffer's bytes: the whole state of a model, to compare models exactly. */
static unsigned char *saved_bytes(const eb_finetuner *model, size_t *size)
{
    size_t capacity = eb_finetuner_saved_size(model);
    unsigned char *bytes = malloc(capacity);
    assert_non_null(bytes);
    assert_int_equal(eb_finetuner_save_to_buffer(model, bytes, capacity, size, NULL), EB_OK);
    return bytes;
}

/* ---- many readers on one handle ------------------------------------------------------------------ */

typedef struct reader {
    pthread_barrier_t *start;
    const eb_finetuner *model;
    const test_data *data;
    size_t saved_capacity;
    size_t n_classes;
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
        r->statuses[round] = eb_finetuner_transform(r->model, eb_matrix_view(r->data->x, ROWS, COLS),
                                                      eb_mut_matrix_view(out, ROWS, HIDDEN), &err);
        if (r->statuses[round] == EB_OK)
            r->statuses[round] = eb_finetuner_save_to_buffer(r->model, r->saved + round * r->saved_capacity,
                                                               r->saved_capacity, &r->saved_sizes[round], &err);
        const double *history = eb_finetuner_loss_history(r->model, &r->history_lengths[round]);
        r->history_last[round] = r->history_lengths[round] ? history[r->history_lengths[round] - 1] : 0.0;
        if (!eb_finetuner_is_fitted(r->model) || eb_finetuner_n_features(r->model) != COLS ||
            eb_finetuner_n_classes(r->model) != r->n_classes || eb_finetuner_output_dim(r->model) != HIDDEN ||
            eb_finetuner_get_params(r->model).hidden_dim != HIDDEN ||
            eb_finetuner_saved_size(r->model) != r->saved_capacity || eb_finetuner_last_error(r->model)[0] != 0)
            r->shape_errors++;
        /* A failing transform writes only the caller's eb_error, never the model: others must not notice it. */
        float small[HIDDEN];
        if (eb_finetuner_transform(r->model, eb_matrix_view(r->data->x, 1, COLS - 1),
                                     eb_mut_matrix_view(small, 1, HIDDEN), &err) != EB_ERR_SHAPE_MISMATCH)
            r->shape_errors++;
    }
    return NULL;
}

static void check_readers(eb_finetuner_kind kind, const test_data *data)
{
    eb_finetuner *model = fitted(kind, data, 9, 10, 32);
    float *expected = malloc(ROWS * HIDDEN * sizeof *expected);
    assert_non_null(expected);
    assert_int_equal(eb_finetuner_transform(model, eb_matrix_view(data->x, ROWS, COLS),
                                              eb_mut_matrix_view(expected, ROWS, HIDDEN), NULL),
                     EB_OK);
    size_t expected_size = 0;
    unsigned char *expected_bytes = saved_bytes(model, &expected_size);
    size_t history_length = 0;
    const double *history = eb_finetuner_loss_history(model, &history_length);
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
        readers[t].saved_capacity = eb_finetuner_saved_size(model);
        readers[t].n_classes = eb_finetuner_n_classes(model);
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
    eb_finetuner_free(model);
}

static void readers_on_one_handle_equal_the_serial_results(void **state)
{
    (void)state;
    test_data data = data_of_seed(5);
    for (size_t k = 0; k < N_ALL_KINDS; k++)
        check_readers(ALL_KINDS[k], &data);
    data_release(&data);
}

/* ---- independent handles on separate threads ---------------------------------------------------- */

typedef struct trainer {
    pthread_barrier_t *start;
    uint64_t seed;
    const test_data *data;
    unsigned char *saved[N_ALL_KINDS];
    size_t saved_size[N_ALL_KINDS];
    eb_status status;
} trainer;

/* What one thread does with handles of its own: create, fit, a few partial_fits, serialise, free; every kind. */
static eb_status train_alone(trainer *t)
{
    static const size_t epochs[N_ALL_KINDS] = {8, 3, 2}, batches[N_ALL_KINDS] = {16, 24, 16};
    eb_status status = EB_OK;
    for (size_t k = 0; k < N_ALL_KINDS && status == EB_OK; k++) {
        eb_finetuner_params params = test_params(ALL_KINDS[k], HIDDEN, epochs[k], t->seed);
        params.batch_size = batches[k];
        eb_finetuner *model = NULL;
        status = eb_finetuner_create(&params, NULL, &model, NULL);
        if (status == EB_OK)
            status = train_on(model, t->data, false, CLASSES);
        for (size_t pass = 0; pass < PASSES && status == EB_OK; pass++)
            status = train_on(model, t->data, true, 0);
        if (status == EB_OK) {
            size_t capacity = eb_finetuner_saved_size(model);
            t->saved[k] = malloc(capacity);
            status = t->saved[k] == NULL ? EB_ERR_NOMEM
                                         : eb_finetuner_save_to_buffer(model, t->saved[k], capacity,
                                                                       &t->saved_size[k], NULL);
        }
        eb_finetuner_free(model);
    }
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
    test_data data = data_of_seed(17);
    pthread_barrier_t start;
    assert_int_equal(pthread_barrier_init(&start, NULL, TRAINERS), 0);
    trainer alone[TRAINERS], together[TRAINERS];
    pthread_t threads[TRAINERS];
    memset(alone, 0, sizeof alone);
    memset(together, 0, sizeof together);
    /* Two threads share each seed: equal seeds must give equal bytes even while training at the same time. */
    for (size_t t = 0; t < TRAINERS; t++) {
        alone[t].seed = together[t].seed = 100 + t / 2;
        alone[t].data = together[t].data = &data;
        together[t].start = &start;
        assert_int_equal(train_alone(&alone[t]), EB_OK);
    }
    for (size_t t = 0; t < TRAINERS; t++)
        assert_int_equal(pthread_create(&threads[t], NULL, run_trainer, &together[t]), 0);
    for (size_t t = 0; t < TRAINERS; t++)
        assert_int_equal(pthread_join(threads[t], NULL), 0);
    for (size_t t = 0; t < TRAINERS; t++) {
        assert_int_equal(together[t].status, EB_OK);
        for (size_t k = 0; k < N_ALL_KINDS; k++) {
            assert_int_equal(together[t].saved_size[k], alone[t].saved_size[k]);
            assert_memory_equal(together[t].saved[k], alone[t].saved[k], alone[t].saved_size[k]);
            free(alone[t].saved[k]);
            free(together[t].saved[k]);
        }
    }
    pthread_barrier_destroy(&start);
    data_release(&data);
}

/* ---- a caller that serialises changes with a reader-writer lock ------------------------------------ */

enum { STATES = PASSES + 1, LOCKED_READS = 40 };

typedef struct shared_model {
    pthread_rwlock_t lock;
    pthread_barrier_t start; /* the trainer and the readers start together, so that they interleave */
    eb_finetuner *model;
    const test_data *data;
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
        eb_status status = eb_finetuner_partial_fit(s->model, eb_matrix_view(s->data->x, ROWS, COLS), s->data->y, 0, NULL);
        if (status == EB_OK)
            status = eb_finetuner_transform(s->model, eb_matrix_view(s->data->x, ROWS, COLS),
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
        r->statuses[i] = eb_finetuner_transform(r->shared->model, eb_matrix_view(r->shared->data->x, ROWS, COLS),
                                                  eb_mut_matrix_view(r->outputs[i], ROWS, HIDDEN), NULL);
        pthread_rwlock_unlock(&r->shared->lock);
    }
    return NULL;
}

static void transforms_under_a_caller_lock_see_whole_states(void **state)
{
    (void)state;
    test_data data = data_of_seed(23);
    shared_model *s = calloc(1, sizeof *s);
    locked_reader *readers = calloc(READERS, sizeof *readers);
    assert_non_null(s);
    assert_non_null(readers);
    assert_int_equal(pthread_rwlock_init(&s->lock, NULL), 0);
    assert_int_equal(pthread_barrier_init(&s->start, NULL, READERS + 1), 0);
    s->data = &data;
    s->model = fitted(EB_KIND_FEEDFORWARD, &data, 3, 10, 32);
    assert_int_equal(eb_finetuner_transform(s->model, data_x(&data),
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
    eb_finetuner_free(s->model);
    pthread_rwlock_destroy(&s->lock);
    pthread_barrier_destroy(&s->start);
    free(readers);
    free(s);
    data_release(&data);
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
