/*
 * The finetuners that learn from class labels must actually learn: the training loss falls clearly, and
 * on held-out rows a nearest-centroid classifier does better on the learned
 * embedding than on the raw rows. The toy problems are built so that raw
 * rows are hard for nearest-centroid: XOR (both class centroids sit at the
 * origin) and a class signal in a few low-variance columns buried among many
 * high-variance noise columns, which swamp Euclidean distances.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>

#include "helpers.h"

typedef struct toy_split {
    size_t n_train, n_test, cols, n_classes;
    float *train_x, *test_x;
    int32_t *train_y, *test_y;
} toy_split;

static void split_release(toy_split *s)
{
    free(s->train_x);
    free(s->test_x);
    free(s->train_y);
    free(s->test_y);
}

static toy_split split_alloc(size_t n_train, size_t n_test, size_t cols, size_t n_classes)
{
    toy_split s = {n_train, n_test, cols, n_classes, NULL, NULL, NULL, NULL};
    s.train_x = malloc(n_train * cols * sizeof(float));
    s.test_x = malloc(n_test * cols * sizeof(float));
    s.train_y = malloc(n_train * sizeof(int32_t));
    s.test_y = malloc(n_test * sizeof(int32_t));
    assert_non_null(s.train_x);
    assert_non_null(s.test_x);
    assert_non_null(s.train_y);
    assert_non_null(s.test_y);
    return s;
}

static toy_split make_xor_split(uint64_t seed)
{
    const size_t n_noise = 6;
    toy_split s = split_alloc(200, 200, 2 + n_noise, 2);
    test_rng rng = test_rng_make(seed);
    toy_xor(&rng, s.n_train, n_noise, 1.0, s.train_x, s.train_y);
    toy_xor(&rng, s.n_test, n_noise, 1.0, s.test_x, s.test_y);
    return s;
}

/* Three classes, a signal of separation 1 (spread 0.1) in 3 columns, 20 noise columns of spread 4. */
static toy_split make_buried_split(uint64_t seed)
{
    const size_t n_signal = 3, n_noise = 20;
    toy_split s = split_alloc(300, 300, n_signal + n_noise, 3);
    test_rng rng = test_rng_make(seed);
    toy_buried_signal(&rng, s.n_train, s.n_classes, n_signal, n_noise, 1.0, 0.1, 4.0, s.train_x, s.train_y);
    toy_buried_signal(&rng, s.n_test, s.n_classes, n_signal, n_noise, 1.0, 0.1, 4.0, s.test_x, s.test_y);
    return s;
}

static double raw_accuracy(const toy_split *s)
{
    return nearest_centroid_accuracy(s->train_x, s->train_y, s->n_train, s->test_x, s->test_y, s->n_test, s->cols,
                                     s->n_classes);
}

/* Nearest-centroid accuracy on the embedding, both splits transformed by the fitted model. */
static double embedded_accuracy(const eb_finetuner *model, const toy_split *s)
{
    const size_t width = eb_finetuner_output_dim(model);
    float *train_e = malloc(s->n_train * width * sizeof *train_e);
    float *test_e = malloc(s->n_test * width * sizeof *test_e);
    assert_non_null(train_e);
    assert_non_null(test_e);
    eb_error err;
    assert_int_equal(eb_finetuner_transform(model, eb_matrix_view(s->train_x, s->n_train, s->cols),
                                            eb_mut_matrix_view(train_e, s->n_train, width), &err),
                     EB_OK);
    assert_int_equal(eb_finetuner_transform(model, eb_matrix_view(s->test_x, s->n_test, s->cols),
                                            eb_mut_matrix_view(test_e, s->n_test, width), &err),
                     EB_OK);
    double accuracy = nearest_centroid_accuracy(train_e, s->train_y, s->n_train, test_e, s->test_y, s->n_test,
                                                width, s->n_classes);
    free(train_e);
    free(test_e);
    return accuracy;
}

/* The last loss must be below a fraction of the first, and the history must have n_epochs entries. */
static void assert_loss_fell(const double *history, size_t length, size_t n_epochs, double fraction)
{
    assert_int_equal(length, n_epochs);
    assert_non_null(history);
    for (size_t i = 0; i < length; i++)
        assert_true(isfinite(history[i]));
    print_message("loss %.4f -> %.4f\n", history[0], history[length - 1]);
    assert_true(history[length - 1] < fraction * history[0]);
}

typedef enum toy_problem { XOR, BURIED } toy_problem;

/* One learning task: a kind, its settings, the toy problem and what it must reach. */
typedef struct learning_case {
    const char *name;
    eb_finetuner_kind kind;
    toy_problem problem;
    uint64_t data_seed;
    size_t hidden, epochs, batch_size;
    float learning_rate;
    uint64_t seed;
    /* The raw rows must be at most this good for the problem to be hard (1: not checked), the embedding at least. */
    double raw_ceiling, embedded_floor;
} learning_case;

static const learning_case CASES[] = {
    {"feed-forward, XOR", EB_KIND_FEEDFORWARD, XOR, 11, 8, 300, 0, 0.05f, 3, 0.65, 0.9},
    {"feed-forward, buried signal", EB_KIND_FEEDFORWARD, BURIED, 12, 8, 200, 0, 0.02f, 3, 0.7, 0.9},
    {"feed-forward, XOR in minibatches", EB_KIND_FEEDFORWARD, XOR, 15, 8, 100, 16, 0.02f, 8, 1.0, 0.9},
    {"contrastive, buried signal", EB_KIND_CONTRASTIVE, BURIED, 13, 8, 60, 0, 0.02f, 5, 0.7, 0.9},
    /* Minibatches with shuffling must learn as well: same problem, small batches, output as wide as the input. */
    {"contrastive, buried signal in minibatches", EB_KIND_CONTRASTIVE, BURIED, 14, EB_HIDDEN_DIM_AS_INPUT, 30, 32,
     0.005f, 6, 1.0, 0.9},
};

static void check_learns(const learning_case *c)
{
    toy_split s = c->problem == XOR ? make_xor_split(c->data_seed) : make_buried_split(c->data_seed);
    eb_finetuner_params params = test_params(c->kind, c->hidden, c->epochs, c->seed);
    params.learning_rate = c->learning_rate;
    params.batch_size = c->batch_size;
    eb_finetuner *model = NULL;
    assert_int_equal(eb_finetuner_create(&params, NULL, &model, NULL), EB_OK);
    assert_int_equal(
        eb_finetuner_fit(model, eb_matrix_view(s.train_x, s.n_train, s.cols), s.train_y, s.n_classes, NULL), EB_OK);
    size_t length;
    const double *history = eb_finetuner_loss_history(model, &length);
    assert_loss_fell(history, length, c->epochs, 0.5);

    double raw = raw_accuracy(&s);
    double embedded = embedded_accuracy(model, &s);
    print_message("%s: nearest-centroid raw %.3f, embedded %.3f\n", c->name, raw, embedded);
    assert_true(raw <= c->raw_ceiling);
    assert_true(embedded >= c->embedded_floor);
    assert_true(embedded >= raw + 0.2);
    eb_finetuner_free(model);
    split_release(&s);
}

static void learns(void **state) { check_learns(*state); }

int main(void)
{
    enum { N_CASES = sizeof CASES / sizeof CASES[0] };
    struct CMUnitTest tests[N_CASES];
    for (size_t i = 0; i < N_CASES; i++) {
        struct CMUnitTest test = {CASES[i].name, learns, NULL, NULL, (void *)&CASES[i]};
        tests[i] = test;
    }
    return cmocka_run_group_tests(tests, NULL, NULL);
}
