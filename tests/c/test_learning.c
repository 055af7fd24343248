/*
 * Both finetuners must actually learn: the training loss falls clearly, and
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
typedef eb_status (*transform_fn)(const void *model, eb_matrix x, eb_mut_matrix out, eb_error *err);

static eb_status ff_transform(const void *model, eb_matrix x, eb_mut_matrix out, eb_error *err)
{
    return eb_feedforward_transform(model, x, out, err);
}

static eb_status cl_transform(const void *model, eb_matrix x, eb_mut_matrix out, eb_error *err)
{
    return eb_contrastive_transform(model, x, out, err);
}

static double embedded_accuracy(const void *model, transform_fn transform, size_t width, const toy_split *s)
{
    float *train_e = malloc(s->n_train * width * sizeof *train_e);
    float *test_e = malloc(s->n_test * width * sizeof *test_e);
    assert_non_null(train_e);
    assert_non_null(test_e);
    eb_error err;
    assert_int_equal(transform(model, eb_matrix_view(s->train_x, s->n_train, s->cols),
                               eb_mut_matrix_view(train_e, s->n_train, width), &err),
                     EB_OK);
    assert_int_equal(transform(model, eb_matrix_view(s->test_x, s->n_test, s->cols),
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

static void check_feedforward_learns(const toy_split *s, size_t hidden, size_t epochs, float learning_rate,
                                     double raw_ceiling, double embedded_floor)
{
    eb_feedforward_params params = eb_feedforward_default_params();
    params.hidden_dim = hidden;
    params.n_epochs = epochs;
    params.learning_rate = learning_rate;
    params.seed = 3;
    eb_feedforward *model = NULL;
    assert_int_equal(eb_feedforward_create(&params, NULL, &model, NULL), EB_OK);
    assert_int_equal(eb_feedforward_fit(model, eb_matrix_view(s->train_x, s->n_train, s->cols), s->train_y,
                                        s->n_classes),
                     EB_OK);
    size_t length;
    const double *history = eb_feedforward_loss_history(model, &length);
    assert_loss_fell(history, length, epochs, 0.5);

    double raw = raw_accuracy(s);
    double embedded = embedded_accuracy(model, ff_transform, hidden, s);
    print_message("feed-forward nearest-centroid: raw %.3f, embedded %.3f\n", raw, embedded);
    assert_true(raw <= raw_ceiling);
    assert_true(embedded >= embedded_floor);
    assert_true(embedded >= raw + 0.2);
    eb_feedforward_free(model);
}

static void feedforward_learns_xor(void **state)
{
    (void)state;
    toy_split s = make_xor_split(11);
    check_feedforward_learns(&s, 8, 300, 0.05f, 0.65, 0.9);
    split_release(&s);
}

static void feedforward_learns_buried_signal(void **state)
{
    (void)state;
    toy_split s = make_buried_split(12);
    check_feedforward_learns(&s, 8, 200, 0.02f, 0.7, 0.9);
    split_release(&s);
}

static void contrastive_learns_buried_signal(void **state)
{
    (void)state;
    toy_split s = make_buried_split(13);
    eb_contrastive_params params = eb_contrastive_default_params();
    params.hidden_dim = 8;
    params.n_epochs = 60;
    params.learning_rate = 0.02f;
    params.seed = 5;
    eb_contrastive *model = NULL;
    assert_int_equal(eb_contrastive_create(&params, NULL, &model, NULL), EB_OK);
    assert_int_equal(eb_contrastive_fit(model, eb_matrix_view(s.train_x, s.n_train, s.cols), s.train_y,
                                        s.n_classes),
                     EB_OK);
    size_t length;
    const double *history = eb_contrastive_loss_history(model, &length);
    assert_loss_fell(history, length, params.n_epochs, 0.5);

    double raw = raw_accuracy(&s);
    double embedded = embedded_accuracy(model, cl_transform, params.hidden_dim, &s);
    print_message("contrastive nearest-centroid: raw %.3f, embedded %.3f\n", raw, embedded);
    assert_true(raw <= 0.7);
    assert_true(embedded >= 0.9);
    assert_true(embedded >= raw + 0.2);
    eb_contrastive_free(model);
    split_release(&s);
}

/* Minibatches with shuffling must learn as well: same problem, small batches. */
static void contrastive_learns_with_minibatches(void **state)
{
    (void)state;
    toy_split s = make_buried_split(14);
    eb_contrastive_params params = eb_contrastive_default_params();
    params.hidden_dim = EB_HIDDEN_DIM_AS_INPUT;
    params.n_epochs = 30;
    params.learning_rate = 0.005f;
    params.batch_size = 32;
    params.seed = 6;
    eb_contrastive *model = NULL;
    assert_int_equal(eb_contrastive_create(&params, NULL, &model, NULL), EB_OK);
    assert_int_equal(eb_contrastive_fit(model, eb_matrix_view(s.train_x, s.n_train, s.cols), s.train_y,
                                        s.n_classes),
                     EB_OK);
    size_t length;
    const double *history = eb_contrastive_loss_history(model, &length);
    assert_loss_fell(history, length, params.n_epochs, 0.5);
    double raw = raw_accuracy(&s);
    double embedded = embedded_accuracy(model, cl_transform, s.cols, &s);
    print_message("contrastive minibatch nearest-centroid: raw %.3f, embedded %.3f\n", raw, embedded);
    assert_true(embedded >= 0.9);
    assert_true(embedded >= raw + 0.2);
    eb_contrastive_free(model);
    split_release(&s);
}

static void feedforward_learns_with_minibatches(void **state)
{
    (void)state;
    toy_split s = make_xor_split(15);
    eb_feedforward_params params = eb_feedforward_default_params();
    params.hidden_dim = 8;
    params.n_epochs = 100;
    params.learning_rate = 0.02f;
    params.batch_size = 16;
    params.seed = 8;
    eb_feedforward *model = NULL;
    assert_int_equal(eb_feedforward_create(&params, NULL, &model, NULL), EB_OK);
    assert_int_equal(eb_feedforward_fit(model, eb_matrix_view(s.train_x, s.n_train, s.cols), s.train_y,
                                        s.n_classes),
                     EB_OK);
    size_t length;
    const double *history = eb_feedforward_loss_history(model, &length);
    assert_loss_fell(history, length, params.n_epochs, 0.5);
    double raw = raw_accuracy(&s);
    double embedded = embedded_accuracy(model, ff_transform, params.hidden_dim, &s);
    print_message("feed-forward minibatch nearest-centroid: raw %.3f, embedded %.3f\n", raw, embedded);
    assert_true(embedded >= 0.9);
    assert_true(embedded >= raw + 0.2);
    eb_feedforward_free(model);
    split_release(&s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(feedforward_learns_xor),
        cmocka_unit_test(feedforward_learns_buried_signal),
        cmocka_unit_test(feedforward_learns_with_minibatches),
        cmocka_unit_test(contrastive_learns_buried_signal),
        cmocka_unit_test(contrastive_learns_with_minibatches),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
