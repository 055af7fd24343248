/*
 * The pair learner (EB_KIND_PAIR_LEARNER): its gradient against central
 * finite differences of a loss this file computes in double from the weight
 * layout of src/testing.h, learning on a toy pair problem, the equalities its
 * design promises (aligned = indexed pairs, same seed = same bits, partial_fit
 * = fit, a batch of several slices = one slice, split transforms = one), a
 * save/load round trip, and failures that leave the model as it was (out of
 * memory at every allocation, bad pairs, wrong-kind calls, divergence).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "helpers.h"
#include "internal.h"
#include "testing.h"

/* Both re-embeddings, for the tests that hold for each. */
enum { N_LAYERS = 2 };
static const eb_pair_layers LAYERS[N_LAYERS] = {EB_PAIR_LINEAR, EB_PAIR_LINEAR_RELU_LINEAR};

static void *xmalloc(size_t bytes)
{
    void *p = malloc(bytes == 0 ? 1 : bytes);
    assert_non_null(p);
    return p;
}

static eb_finetuner *make_pair_learner(eb_pair_layers layers, size_t hidden_dim, size_t n_epochs, size_t batch_size,
                                       float learning_rate, uint64_t seed, const eb_allocator *mem)
{
    eb_finetuner_params params = test_params(EB_KIND_PAIR_LEARNER, hidden_dim, n_epochs, seed);
    params.layers = layers;
    params.batch_size = batch_size;
    params.learning_rate = learning_rate;
    eb_finetuner *model = NULL;
    eb_error err;
    eb_status status = eb_finetuner_create(&params, mem, &model, &err);
    if (status != EB_OK)
        fail_msg("create: %s", err.message);
    return model;
}

static void assert_ok(eb_status status, const eb_finetuner *model)
{
    if (status != EB_OK)
        fail_msg("%s: %s", eb_status_string(status), eb_finetuner_last_error(model));
}

static void assert_message_contains(const char *message, const char *part)
{
    if (strstr(message, part) == NULL)
        fail_msg("message \"%s\" does not contain \"%s\"", message, part);
}

/* ---- the loss in double ----------------------------------------------------------- */

typedef struct ref_shape {
    size_t d, h;
    bool two_layers;
} ref_shape;

static const float *row_of(eb_matrix m, size_t r)
{
    return m.data + r * m.stride;
}

/* e = x W1 + b1, or relu(x W1 + b1) W2 + b2; *closest_kink tracks the smallest |pre-activation| of the ReLU. */
static void ref_embed(const double *w, ref_shape s, const float *x, double *hidden, double *e, double *closest_kink)
{
    const double *w1 = w, *b1 = w1 + s.d * s.h, *w2 = b1 + s.h, *b2 = w2 + s.h * s.h;
    double *first = s.two_layers ? hidden : e;
    for (size_t j = 0; j < s.h; j++) {
        double z = b1[j];
        for (size_t i = 0; i < s.d; i++)
            z += (double)x[i] * w1[i * s.h + j];
        first[j] = z;
    }
    if (!s.two_layers)
        return;
    for (size_t j = 0; j < s.h; j++) {
        if (fabs(hidden[j]) < *closest_kink)
            *closest_kink = fabs(hidden[j]);
        hidden[j] = hidden[j] > 0.0 ? hidden[j] : 0.0;
    }
    for (size_t k = 0; k < s.h; k++) {
        double z = b2[k];
        for (size_t j = 0; j < s.h; j++)
            z += hidden[j] * w2[j * s.h + k];
        e[k] = z;
    }
}

static double ref_cosine(const double *a, const double *b, size_t h)
{
    double dot = 0.0, aa = 0.0, bb = 0.0;
    for (size_t i = 0; i < h; i++) {
        dot += a[i] * b[i];
        aa += a[i] * a[i];
        bb += b[i] * b[i];
    }
    double na = sqrt(aa) > 1e-8 ? sqrt(aa) : 1e-8, nb = sqrt(bb) > 1e-8 ? sqrt(bb) : 1e-8;
    return dot / (na * nb);
}

/* Mean over the pairs of (cos - similarity)^2; *smallest_norm is the least embedding norm seen. */
static double ref_loss(const double *w, ref_shape s, const eb_pairs *pairs, double *closest_kink,
                       double *smallest_norm)
{
    double *hidden = xmalloc(s.h * sizeof *hidden), *a = xmalloc(s.h * sizeof *a), *b = xmalloc(s.h * sizeof *b);
    double total = 0.0;
    for (size_t p = 0; p < pairs->count; p++) {
        size_t l = pairs->left_index == NULL ? p : pairs->left_index[p];
        size_t r = pairs->right_index == NULL ? p : pairs->right_index[p];
        ref_embed(w, s, row_of(pairs->left, l), hidden, a, closest_kink);
        ref_embed(w, s, row_of(pairs->right, r), hidden, b, closest_kink);
        double na = 0.0, nb = 0.0;
        for (size_t i = 0; i < s.h; i++) {
            na += a[i] * a[i];
            nb += b[i] * b[i];
        }
        *smallest_norm = fmin(*smallest_norm, fmin(sqrt(na), sqrt(nb)));
        double diff = ref_cosine(a, b, s.h) - pairs->similarity[p];
        total += diff * diff;
    }
    free(hidden);
    free(a);
    free(b);
    return total / (double)pairs->count;
}

/* ---- gradients ---------------------------------------------------------------------- */

/*
 * Central differences in double: rounding noise about 1e-16 / STEP, truncation
 * about STEP^2; both far below the float32 error of the analytic gradient,
 * which a component may differ from the numeric one by ABS_TOL + REL_TOL * |numeric|.
 */
static const double STEP = 1e-6;
static const double ABS_TOL = 2e-5;
static const double REL_TOL = 1e-3;

typedef struct grad_case {
    const char *name;
    eb_pair_layers layers;
    bool indexed;
    size_t rows, cols, hidden, n_pairs;
    size_t stride; /* 0: contiguous */
} grad_case;

/* Pairs over x (rows x cols, with the given stride); for indexed pairs, rows repeat and pair 0 is a row with itself. */
typedef struct pair_set {
    float *x1, *x2;
    uint32_t *left, *right;
    float *similarity;
    eb_pairs pairs;
} pair_set;

static pair_set make_pair_set(const grad_case *c, test_rng *rng)
{
    pair_set p;
    memset(&p, 0, sizeof p);
    size_t stride = c->stride == 0 ? c->cols : c->stride;
    size_t rows = c->indexed ? c->rows : c->n_pairs;
    p.x1 = xmalloc(rows * stride * sizeof(float));
    p.x2 = xmalloc(rows * stride * sizeof(float));
    for (size_t i = 0; i < rows * stride; i++) {
        /* Padding must never be read: NaN there would show up in the loss. */
        p.x1[i] = (i % stride) < c->cols ? (float)test_rng_uniform(rng, -2.0, 2.0) : NAN;
        p.x2[i] = (i % stride) < c->cols ? (float)test_rng_uniform(rng, -2.0, 2.0) : NAN;
    }
    p.similarity = xmalloc(c->n_pairs * sizeof(float));
    for (size_t i = 0; i < c->n_pairs; i++)
        p.similarity[i] = i % 5 == 0 ? 1.0f : i % 5 == 1 ? 0.0f : (float)test_rng_uniform(rng, 0.0, 1.0);
    eb_matrix x1 = {p.x1, rows, c->cols, stride}, x2 = {p.x2, rows, c->cols, stride};
    if (c->indexed) {
        p.left = xmalloc(c->n_pairs * sizeof(uint32_t));
        p.right = xmalloc(c->n_pairs * sizeof(uint32_t));
        for (size_t i = 0; i < c->n_pairs; i++) {
            p.left[i] = (uint32_t)((i * 3) % c->rows);
            p.right[i] = i == 0 ? p.left[0] : (uint32_t)((i * 7 + 1) % c->rows);
        }
        p.pairs = eb_pairs_indexed(x1, p.left, p.right, c->n_pairs, p.similarity);
    } else {
        p.pairs = eb_pairs_aligned(x1, x2, p.similarity);
    }
    return p;
}

static void pair_set_release(pair_set *p)
{
    free(p->x1);
    free(p->x2);
    free(p->left);
    free(p->right);
    free(p->similarity);
    memset(p, 0, sizeof *p);
}

static void check_gradient_case(const grad_case *c, uint64_t seed)
{
    test_rng rng = test_rng_make(seed);
    pair_set set = make_pair_set(c, &rng);
    eb_finetuner *model = make_pair_learner(c->layers, c->hidden, 1, 0, 1e-3f, seed, NULL);
    assert_int_equal(eb__finetuner_init_weights(model, c->cols, 0), EB_OK);
    size_t h = c->hidden == EB_HIDDEN_DIM_AS_INPUT ? c->cols : c->hidden;
    ref_shape s = {c->cols, h, c->layers == EB_PAIR_LINEAR_RELU_LINEAR};
    size_t count;
    float *weights = eb__finetuner_weights(model, &count);
    size_t expected = (c->cols + 1) * h + (s.two_layers ? (h + 1) * h : 0);
    assert_int_equal(count, expected);
    /* Weights of order one, so every term of the gradient matters. */
    for (size_t i = 0; i < count; i++)
        weights[i] = (float)test_rng_uniform(&rng, -1.0, 1.0);

    float *grad = xmalloc(count * sizeof *grad);
    double mean_loss = -1.0;
    assert_ok(eb__pair_learner_gradient(model, &set.pairs, grad, &mean_loss), model);

    double *w = xmalloc(count * sizeof *w);
    for (size_t i = 0; i < count; i++)
        w[i] = weights[i];
    double kink = INFINITY, smallest_norm = INFINITY;
    double loss = ref_loss(w, s, &set.pairs, &kink, &smallest_norm);
    if (!(fabs(mean_loss - loss) <= 1e-5 * (1.0 + loss)))
        fail_msg("%s: loss %.9g, reference %.9g", c->name, mean_loss, loss);
    /* Finite differences need a smooth loss: no ReLU input or embedding norm near the kinks at 0. */
    assert_true(kink > 1e-4);
    assert_true(smallest_norm > 1e-2);

    double largest = 0.0;
    size_t failures = 0;
    for (size_t i = 0; i < count; i++) {
        double saved = w[i];
        w[i] = saved + STEP;
        double plus = ref_loss(w, s, &set.pairs, &kink, &smallest_norm);
        w[i] = saved - STEP;
        double minus = ref_loss(w, s, &set.pairs, &kink, &smallest_norm);
        w[i] = saved;
        double numeric = (plus - minus) / (2.0 * STEP);
        double diff = fabs((double)grad[i] - numeric);
        if (!(diff <= ABS_TOL + REL_TOL * fabs(numeric))) {
            if (failures < 5)
                print_error("%s: weight %zu analytic %.9g numeric %.9g\n", c->name, i, (double)grad[i], numeric);
            failures++;
        }
        largest = fmax(largest, fabs(numeric));
    }
    assert_int_equal(failures, 0);
    /* Not a vacuous pass: the gradient is far from zero somewhere. */
    assert_true(largest > 1e-2);

    free(w);
    free(grad);
    pair_set_release(&set);
    eb_finetuner_free(model);
}

static void gradient_linear(void **state)
{
    (void)state;
    const grad_case cases[] = {
        {"linear, aligned", EB_PAIR_LINEAR, false, 0, 5, 4, 9, 0},
        {"linear, indexed with repeated rows and a self pair", EB_PAIR_LINEAR, true, 6, 5, 3, 11, 0},
        {"linear, aligned, strided rows", EB_PAIR_LINEAR, false, 0, 4, 6, 7, 7},
        {"linear, width as input, one pair", EB_PAIR_LINEAR, false, 0, 6, EB_HIDDEN_DIM_AS_INPUT, 1, 0},
        /* Wider than the kernels' blocks of 16, so their tails and full blocks both count. */
        {"linear, wide embedding", EB_PAIR_LINEAR, true, 10, 7, 37, 13, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        check_gradient_case(&cases[i], 100 + i);
}

static void gradient_two_layers(void **state)
{
    (void)state;
    const grad_case cases[] = {
        {"two layers, aligned", EB_PAIR_LINEAR_RELU_LINEAR, false, 0, 5, 4, 9, 0},
        {"two layers, indexed with repeated rows and a self pair", EB_PAIR_LINEAR_RELU_LINEAR, true, 6, 4, 5, 12, 0},
        {"two layers, indexed, strided rows", EB_PAIR_LINEAR_RELU_LINEAR, true, 8, 3, 6, 10, 5},
        {"two layers, wide embedding", EB_PAIR_LINEAR_RELU_LINEAR, false, 0, 5, 21, 6, 0},
        {"two layers, width as input", EB_PAIR_LINEAR_RELU_LINEAR, true, 9, 6, EB_HIDDEN_DIM_AS_INPUT, 8, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        check_gradient_case(&cases[i], 200 + i);
}

/*
 * A batch larger than EB_PAIR_SLICE goes through the layers in slices whose
 * gradients add up: the gradient of all pairs equals the pair-weighted mean
 * of the gradients of its slices, each computed alone, and finite
 * differences agree with it too.
 */
static void gradient_over_several_slices(void **state)
{
    (void)state;
    const size_t n_pairs = EB_PAIR_SLICE + 476;
    const grad_case c = {"two layers, two slices", EB_PAIR_LINEAR_RELU_LINEAR, true, 40, 4, 3, n_pairs, 0};
    check_gradient_case(&c, 300);

    test_rng rng = test_rng_make(301);
    pair_set set = make_pair_set(&c, &rng);
    eb_finetuner *model = make_pair_learner(c.layers, c.hidden, 1, 0, 1e-3f, 7, NULL);
    assert_int_equal(eb__finetuner_init_weights(model, c.cols, 0), EB_OK);
    size_t count;
    float *weights = eb__finetuner_weights(model, &count);
    for (size_t i = 0; i < count; i++)
        weights[i] = (float)test_rng_uniform(&rng, -1.0, 1.0);
    float *all = xmalloc(count * sizeof *all), *first = xmalloc(count * sizeof *first),
          *rest = xmalloc(count * sizeof *rest);
    double loss_all, loss_first, loss_rest;
    assert_ok(eb__pair_learner_gradient(model, &set.pairs, all, &loss_all), model);
    eb_pairs head = set.pairs, tail = set.pairs;
    head.count = EB_PAIR_SLICE;
    tail.count = n_pairs - EB_PAIR_SLICE;
    tail.left_index += EB_PAIR_SLICE;
    tail.right_index += EB_PAIR_SLICE;
    tail.similarity += EB_PAIR_SLICE;
    assert_ok(eb__pair_learner_gradient(model, &head, first, &loss_first), model);
    assert_ok(eb__pair_learner_gradient(model, &tail, rest, &loss_rest), model);
    const double share = (double)EB_PAIR_SLICE / (double)n_pairs;
    double largest = 0.0;
    for (size_t i = 0; i < count; i++) {
        double expected = share * first[i] + (1.0 - share) * rest[i];
        if (!(fabs(all[i] - expected) <= 1e-6 + 1e-4 * fabs(expected)))
            fail_msg("weight %zu: all pairs %.9g, slices combined %.9g", i, (double)all[i], expected);
        largest = fmax(largest, fabs(expected));
    }
    assert_true(largest > 1e-2);
    assert_true(fabs(loss_all - (share * loss_first + (1.0 - share) * loss_rest)) <= 1e-9);
    free(all);
    free(first);
    free(rest);
    pair_set_release(&set);
    eb_finetuner_free(model);
}

/*
 * One epoch of one batch over more pairs than a slice is exactly one Adam
 * step on the whole batch's gradient: from zero moments Adam moves every
 * weight by learning_rate * g / (|g| + 1e-8).
 */
static void one_batch_of_several_slices_is_one_adam_step(void **state)
{
    (void)state;
    const size_t n_pairs = 2 * EB_PAIR_SLICE + 100;
    const grad_case c = {"linear, three slices", EB_PAIR_LINEAR, true, 50, 6, 5, n_pairs, 0};
    test_rng rng = test_rng_make(400);
    pair_set set = make_pair_set(&c, &rng);
    const float learning_rate = 1e-3f;
    eb_finetuner *trained = make_pair_learner(c.layers, c.hidden, 1, 0, learning_rate, 41, NULL);
    eb_finetuner *reference = make_pair_learner(c.layers, c.hidden, 1, 0, learning_rate, 41, NULL);
    assert_ok(eb_finetuner_fit_pairs(trained, set.pairs), trained);
    /* init_weights starts from the weights fit starts from: same seed, same draws. */
    assert_int_equal(eb__finetuner_init_weights(reference, c.cols, 0), EB_OK);
    size_t count, trained_count;
    const float *start = eb__finetuner_weights(reference, &count);
    const float *after = eb__finetuner_weights(trained, &trained_count);
    assert_int_equal(count, trained_count);
    float *grad = xmalloc(count * sizeof *grad);
    double mean_loss;
    assert_ok(eb__pair_learner_gradient(reference, &set.pairs, grad, &mean_loss), reference);
    size_t moved = 0;
    for (size_t i = 0; i < count; i++) {
        double expected = start[i] - learning_rate * grad[i] / (fabs(grad[i]) + 1e-8);
        if (!(fabs(after[i] - expected) <= 1e-7))
            fail_msg("weight %zu: %.9g after fit, %.9g after one Adam step (gradient %.3g)", i, (double)after[i],
                     expected, (double)grad[i]);
        moved += fabs(after[i] - start[i]) > 0.5 * learning_rate;
    }
    assert_true(moved > count / 2);
    /* The epoch's loss is its one batch's mean loss at the starting weights. */
    size_t length;
    const double *history = eb_finetuner_loss_history(trained, &length);
    assert_int_equal(length, 1);
    assert_true(history[0] == mean_loss);
    free(grad);
    pair_set_release(&set);
    eb_finetuner_free(trained);
    eb_finetuner_free(reference);
}

/*
 * The training loop as specified, replayed from the library's parts: the RNG
 * as the initial weights left it shuffles the pairs afresh every epoch, each
 * minibatch of batch_size pairs (the last one shorter) takes one Adam step on
 * its gradient, and the epoch's loss is the mean of its batches' mean losses.
 * fit must give exactly these bits.
 */
static void fit_follows_the_specified_walk(void **state)
{
    (void)state;
    test_data d = make_data(20, 5, 2, 2, 2.0, 141);
    const size_t batch = 7, epochs = 3, n = d.n_pairs;
    const float learning_rate = 1e-2f;
    for (size_t k = 0; k < N_LAYERS; k++) {
        eb_finetuner *fitted = make_pair_learner(LAYERS[k], 4, epochs, batch, learning_rate, 142, NULL);
        eb_finetuner *replay = make_pair_learner(LAYERS[k], 4, epochs, batch, learning_rate, 142, NULL);
        assert_ok(eb_finetuner_fit_pairs(fitted, data_pairs(&d)), fitted);
        assert_int_equal(eb__finetuner_init_weights(replay, d.cols, 0), EB_OK);
        size_t count;
        float *weights = eb__finetuner_weights(replay, &count);
        eb_trainable t;
        assert_int_equal(eb__trainable_alloc(&t, count, eb_default_allocator()), EB_OK);
        memcpy(t.values, weights, count * sizeof(float));
        eb_rng rng = replay->core.state.rng;
        uint32_t *order = xmalloc(n * sizeof *order), *left = xmalloc(batch * sizeof *left),
                 *right = xmalloc(batch * sizeof *right);
        float *target = xmalloc(batch * sizeof *target);
        double history[3];
        for (size_t epoch = 0; epoch < epochs; epoch++) {
            for (size_t i = 0; i < n; i++)
                order[i] = (uint32_t)i;
            eb__rng_shuffle(&rng, order, n);
            double loss_sum = 0.0;
            size_t batches = 0;
            for (size_t start = 0; start < n; start += batch) {
                size_t size = n - start < batch ? n - start : batch;
                for (size_t i = 0; i < size; i++) {
                    left[i] = d.left[order[start + i]];
                    right[i] = d.right[order[start + i]];
                    target[i] = d.similarity[order[start + i]];
                }
                eb_pairs minibatch = eb_pairs_indexed(data_x(&d), left, right, size, target);
                memcpy(weights, t.values, count * sizeof(float));
                double mean_loss;
                assert_ok(eb__pair_learner_gradient(replay, &minibatch, t.grad, &mean_loss), replay);
                eb__adam_step(&t, learning_rate);
                loss_sum += mean_loss;
                batches++;
            }
            history[epoch] = loss_sum / (double)batches;
        }
        size_t fitted_count, length;
        const float *fitted_weights = eb__finetuner_weights(fitted, &fitted_count);
        assert_int_equal(fitted_count, count);
        assert_memory_equal(fitted_weights, t.values, count * sizeof(float));
        const double *fitted_history = eb_finetuner_loss_history(fitted, &length);
        assert_int_equal(length, epochs);
        assert_memory_equal(fitted_history, history, epochs * sizeof(double));
        eb__trainable_release(&t, eb_default_allocator());
        free(order);
        free(left);
        free(right);
        free(target);
        eb_finetuner_free(fitted);
        eb_finetuner_free(replay);
    }
    data_release(&d);
}

/* ---- learning --------------------------------------------------------------------- */

/* Mean predicted cosine of the similar and of the dissimilar pairs of d. */
static void mean_cosines(const eb_finetuner *model, const test_data *d, double *similar, double *dissimilar)
{
    float *cosines = xmalloc(d->n_pairs * sizeof *cosines);
    eb_error err;
    eb_status status = eb_finetuner_predict_pairs(model, data_pairs(d), cosines, d->n_pairs, &err);
    if (status != EB_OK)
        fail_msg("predict_pairs: %s", err.message);
    double sums[2] = {0.0, 0.0};
    size_t counts[2] = {0, 0};
    for (size_t i = 0; i < d->n_pairs; i++) {
        int same = d->similarity[i] == 1.0f;
        sums[same] += cosines[i];
        counts[same]++;
    }
    assert_true(counts[0] > 0 && counts[1] > 0);
    *similar = sums[1] / (double)counts[1];
    *dissimilar = sums[0] / (double)counts[0];
    free(cosines);
}

/* Raw cosines of the pairs of d, the baseline the learned embedding must beat. */
static void raw_mean_cosines(const test_data *d, double *similar, double *dissimilar)
{
    double sums[2] = {0.0, 0.0}, a[64], b[64];
    size_t counts[2] = {0, 0};
    assert_true(d->cols <= 64);
    for (size_t i = 0; i < d->n_pairs; i++) {
        for (size_t c = 0; c < d->cols; c++) {
            a[c] = d->x[d->left[i] * d->cols + c];
            b[c] = d->x[d->right[i] * d->cols + c];
        }
        int same = d->similarity[i] == 1.0f;
        sums[same] += ref_cosine(a, b, d->cols);
        counts[same]++;
    }
    *similar = sums[1] / (double)counts[1];
    *dissimilar = sums[0] / (double)counts[0];
}

/*
 * Labels hidden in a few columns under louder noise: pairs of rows with the
 * same label have similarity 1, others 0. Trained on one sample, the learner
 * must separate similar from dissimilar pairs of a fresh sample far better
 * than the raw rows do.
 */
static void check_learning(eb_pair_layers layers)
{
    test_data train = make_data(150, 24, 3, 6, 2.0, 11);
    test_data held_out = make_data(150, 24, 3, 6, 2.0, 12);
    eb_finetuner *model = make_pair_learner(layers, 16, 40, 16, 5e-3f, 1, NULL);
    assert_ok(eb_finetuner_fit_pairs(model, data_pairs(&train)), model);
    size_t length;
    const double *history = eb_finetuner_loss_history(model, &length);
    assert_int_equal(length, 40);
    print_message("%s: loss %.4f -> %.4f\n", layers == EB_PAIR_LINEAR ? "linear" : "two layers", history[0],
                  history[length - 1]);
    assert_true(history[length - 1] < 0.4 * history[0]);

    double similar, dissimilar, raw_similar, raw_dissimilar;
    mean_cosines(model, &held_out, &similar, &dissimilar);
    raw_mean_cosines(&held_out, &raw_similar, &raw_dissimilar);
    print_message("held-out cosines: similar %.3f, dissimilar %.3f (raw rows %.3f, %.3f)\n", similar, dissimilar,
                  raw_similar, raw_dissimilar);
    assert_true(similar - dissimilar > 0.5);
    assert_true(similar - dissimilar > 2.0 * (raw_similar - raw_dissimilar));
    eb_finetuner_free(model);
    data_release(&train);
    data_release(&held_out);
}

static void learning_linear(void **state)
{
    (void)state;
    check_learning(EB_PAIR_LINEAR);
}

static void learning_two_layers(void **state)
{
    (void)state;
    check_learning(EB_PAIR_LINEAR_RELU_LINEAR);
}

/* ---- equalities ----------------------------------------------------------------- */

static model_snapshot snapshot_on(eb_finetuner *model, const test_data *d)
{
    return snapshot_finetuner(model, data_x(d));
}

/* Aligned pairs whose rows are copies of the indexed pairs' rows (X1 with padded rows) train to the same bits. */
static void aligned_and_indexed_pairs_agree(void **state)
{
    (void)state;
    test_data d = make_data(40, 7, 3, 3, 2.0, 21);
    const size_t stride = d.cols + 3;
    float *x1 = xmalloc(d.n_pairs * stride * sizeof(float)), *x2 = xmalloc(d.n_pairs * d.cols * sizeof(float));
    for (size_t p = 0; p < d.n_pairs; p++) {
        memcpy(x1 + p * stride, d.x + d.left[p] * d.cols, d.cols * sizeof(float));
        memcpy(x2 + p * d.cols, d.x + d.right[p] * d.cols, d.cols * sizeof(float));
    }
    eb_matrix m1 = {x1, d.n_pairs, d.cols, stride};
    eb_pairs aligned = eb_pairs_aligned(m1, eb_matrix_view(x2, d.n_pairs, d.cols), d.similarity);
    for (size_t k = 0; k < N_LAYERS; k++) {
        eb_finetuner *a = make_pair_learner(LAYERS[k], 5, 3, 7, 1e-2f, 5, NULL);
        eb_finetuner *b = make_pair_learner(LAYERS[k], 5, 3, 7, 1e-2f, 5, NULL);
        assert_ok(eb_finetuner_fit_pairs(a, data_pairs(&d)), a);
        assert_ok(eb_finetuner_fit_pairs(b, aligned), b);
        model_snapshot sa = snapshot_on(a, &d), sb = snapshot_on(b, &d);
        assert_int_equal(sa.transform_status, EB_OK);
        assert_true(fits_identical(&sa, &sb));
        snapshot_release(&sa);
        snapshot_release(&sb);
        eb_finetuner_free(a);
        eb_finetuner_free(b);
    }
    free(x1);
    free(x2);
    data_release(&d);
}

static void same_seed_same_bits(void **state)
{
    (void)state;
    test_data d = make_data(60, 8, 3, 3, 2.0, 31);
    for (size_t k = 0; k < N_LAYERS; k++) {
        eb_finetuner *a = make_pair_learner(LAYERS[k], 6, 4, 10, 1e-2f, 9, NULL);
        eb_finetuner *b = make_pair_learner(LAYERS[k], 6, 4, 10, 1e-2f, 9, NULL);
        eb_finetuner *c = make_pair_learner(LAYERS[k], 6, 4, 10, 1e-2f, 10, NULL);
        assert_ok(eb_finetuner_fit_pairs(a, data_pairs(&d)), a);
        assert_ok(eb_finetuner_fit_pairs(b, data_pairs(&d)), b);
        assert_ok(eb_finetuner_fit_pairs(c, data_pairs(&d)), c);
        model_snapshot sa = snapshot_on(a, &d), sb = snapshot_on(b, &d), sc = snapshot_on(c, &d);
        assert_true(fits_identical(&sa, &sb));
        assert_int_equal(sa.weight_count, sc.weight_count);
        assert_true(memcmp(sa.weights, sc.weights, sa.weight_count * sizeof(float)) != 0);
        snapshot_release(&sa);
        snapshot_release(&sb);
        snapshot_release(&sc);
        eb_finetuner_free(a);
        eb_finetuner_free(b);
        eb_finetuner_free(c);
    }
    data_release(&d);
}

/* The same seed with another batch size shuffles and steps differently: the batches matter. */
static void batch_size_changes_training(void **state)
{
    (void)state;
    test_data d = make_data(60, 8, 3, 3, 2.0, 32);
    eb_finetuner *a = make_pair_learner(EB_PAIR_LINEAR, 6, 2, 10, 1e-2f, 9, NULL);
    eb_finetuner *b = make_pair_learner(EB_PAIR_LINEAR, 6, 2, 0, 1e-2f, 9, NULL);
    assert_ok(eb_finetuner_fit_pairs(a, data_pairs(&d)), a);
    assert_ok(eb_finetuner_fit_pairs(b, data_pairs(&d)), b);
    size_t ca, cb;
    const float *wa = eb__finetuner_weights(a, &ca), *wb = eb__finetuner_weights(b, &cb);
    assert_int_equal(ca, cb);
    assert_true(memcmp(wa, wb, ca * sizeof(float)) != 0);
    /* batch_size 10 over 120 pairs: 12 Adam steps an epoch; one batch: 1. */
    size_t length;
    eb_finetuner_loss_history(a, &length);
    assert_int_equal(length, 2);
    /* A batch_size of at least the pair count is one batch, as 0 is. */
    eb_finetuner *c = make_pair_learner(EB_PAIR_LINEAR, 6, 2, d.n_pairs, 1e-2f, 9, NULL);
    eb_finetuner *e = make_pair_learner(EB_PAIR_LINEAR, 6, 2, 10 * d.n_pairs, 1e-2f, 9, NULL);
    assert_ok(eb_finetuner_fit_pairs(c, data_pairs(&d)), c);
    assert_ok(eb_finetuner_fit_pairs(e, data_pairs(&d)), e);
    model_snapshot sb = snapshot_on(b, &d), sc = snapshot_on(c, &d), se = snapshot_on(e, &d);
    assert_true(fits_identical(&sb, &sc));
    assert_true(fits_identical(&sb, &se));
    snapshot_release(&sb);
    snapshot_release(&sc);
    snapshot_release(&se);
    eb_finetuner_free(a);
    eb_finetuner_free(b);
    eb_finetuner_free(c);
    eb_finetuner_free(e);
    data_release(&d);
}

/*
 * Many indexed pairs over few rows: training memory is O(slice x (d + h))
 * plus an index per pair, never O(pairs x d). The counting allocator's peak
 * is compared with what gathering every pair's rows would take.
 */
static void memory_does_not_grow_with_pairs_times_width(void **state)
{
    (void)state;
    const size_t rows = 50, d = 64, h = 8, n_pairs = 12000;
    test_data data = make_data(rows, d, 2, 0, 0.0, 51);
    uint32_t *left = xmalloc(n_pairs * sizeof *left), *right = xmalloc(n_pairs * sizeof *right);
    float *similarity = xmalloc(n_pairs * sizeof *similarity);
    for (size_t i = 0; i < n_pairs; i++) {
        left[i] = (uint32_t)(i % rows);
        right[i] = (uint32_t)((i / rows + i) % rows);
        similarity[i] = (float)(i % 3) / 2.0f;
    }
    eb_pairs pairs = eb_pairs_indexed(data_x(&data), left, right, n_pairs, similarity);
    const size_t every_pair_gathered = 2 * n_pairs * d * sizeof(float);
    /* Gathered rows, hidden, embeddings and their gradient for one slice, and an index per pair. */
    const size_t bound = 2 * EB_PAIR_SLICE * (d + 3 * h) * sizeof(float) + n_pairs * sizeof(uint32_t) + 65536;
    const size_t batches[] = {0, 5000};
    for (size_t k = 0; k < N_LAYERS; k++) {
        for (size_t b = 0; b < 2; b++) {
            counting_allocator counter;
            eb_allocator mem = counting_allocator_init(&counter);
            eb_finetuner *model = make_pair_learner(LAYERS[k], h, 1, batches[b], 1e-2f, 52, &mem);
            assert_ok(eb_finetuner_fit_pairs(model, pairs), model);
            print_message("%s, batch %zu: peak %zu bytes (all pairs gathered: %zu)\n",
                          LAYERS[k] == EB_PAIR_LINEAR ? "linear" : "two layers", batches[b], counter.peak_bytes,
                          every_pair_gathered);
            assert_true(counter.peak_bytes <= bound);
            assert_true(counter.peak_bytes < every_pair_gathered / 5);
            eb_finetuner_free(model);
        }
    }
    /* What a caller sizing BLAS threads is told: two rows a pair, one slice at most. */
    assert_int_equal(eb_training_step_rows(EB_KIND_PAIR_LEARNER, n_pairs, 16), 32);
    assert_int_equal(eb_training_step_rows(EB_KIND_PAIR_LEARNER, n_pairs, 0), 2 * EB_PAIR_SLICE);
    assert_int_equal(eb_training_step_rows(EB_KIND_PAIR_LEARNER, 100, 0), 200);
    free(left);
    free(right);
    free(similarity);
    data_release(&data);
}

/*
 * partial_fit continues the model's own state: three partial fits equal a
 * three-epoch fit bit for bit (weights, Adam moments through the next steps,
 * the shuffling RNG, the loss history), also across a save and load.
 */
static void partial_fits_continue_like_fit(void **state)
{
    (void)state;
    test_data d = make_data(50, 6, 2, 2, 2.0, 41);
    for (size_t k = 0; k < N_LAYERS; k++) {
        eb_finetuner *whole = make_pair_learner(LAYERS[k], 4, 3, 8, 1e-2f, 3, NULL);
        eb_finetuner *parts = make_pair_learner(LAYERS[k], 4, 3, 8, 1e-2f, 3, NULL);
        assert_ok(eb_finetuner_fit_pairs(whole, data_pairs(&d)), whole);
        assert_ok(eb_finetuner_partial_fit_pairs(parts, data_pairs(&d)), parts);
        assert_true(eb_finetuner_is_fitted(parts));

        size_t size = eb_finetuner_saved_size(parts), written;
        void *bytes = xmalloc(size);
        eb_error err;
        assert_int_equal(eb_finetuner_save_to_buffer(parts, bytes, size, &written, &err), EB_OK);
        assert_int_equal(written, size);
        eb_finetuner *loaded = NULL;
        if (eb_finetuner_load_from_buffer(bytes, size, NULL, &loaded, &err) != EB_OK)
            fail_msg("load: %s", err.message);
        free(bytes);

        for (int i = 0; i < 2; i++) {
            assert_ok(eb_finetuner_partial_fit_pairs(parts, data_pairs(&d)), parts);
            assert_ok(eb_finetuner_partial_fit_pairs(loaded, data_pairs(&d)), loaded);
        }
        model_snapshot sw = snapshot_on(whole, &d), sp = snapshot_on(parts, &d), sl = snapshot_on(loaded, &d);
        assert_int_equal(sp.history_length, 3);
        assert_true(fits_identical(&sw, &sp));
        assert_true(fits_identical(&sw, &sl));
        /* A fit starts afresh: the history has n_epochs entries again. */
        assert_ok(eb_finetuner_fit_pairs(parts, data_pairs(&d)), parts);
        model_snapshot again = snapshot_on(parts, &d);
        assert_true(fits_identical(&sw, &again));
        snapshot_release(&again);
        snapshot_release(&sw);
        snapshot_release(&sp);
        snapshot_release(&sl);
        eb_finetuner_free(whole);
        eb_finetuner_free(parts);
        eb_finetuner_free(loaded);
    }
    data_release(&d);
}

/* ---- transform ----------------------------------------------------------------- */

/* Transform of x (rows x d) against the double reference, within float rounding of the products. */
static void check_transform_against_reference(eb_pair_layers layers, size_t rows, size_t d, size_t h)
{
    eb_finetuner *model = make_pair_learner(layers, h, 1, 0, 1e-3f, 51, NULL);
    assert_int_equal(eb__finetuner_init_weights(model, d, 0), EB_OK);
    test_rng rng = test_rng_make(52);
    float *x = xmalloc(rows * d * sizeof *x), *out = xmalloc(rows * h * sizeof *out);
    for (size_t i = 0; i < rows * d; i++)
        x[i] = (float)test_rng_uniform(&rng, -1.0, 1.0);
    eb_error err;
    eb_status status = eb_finetuner_transform(model, eb_matrix_view(x, rows, d), eb_mut_matrix_view(out, rows, h),
                                              &err);
    if (status != EB_OK)
        fail_msg("transform: %s", err.message);
    size_t count;
    const float *weights = eb__finetuner_weights(model, &count);
    double *w = xmalloc(count * sizeof *w), *hidden = xmalloc(h * sizeof *hidden), *e = xmalloc(h * sizeof *e);
    for (size_t i = 0; i < count; i++)
        w[i] = weights[i];
    ref_shape s = {d, h, layers == EB_PAIR_LINEAR_RELU_LINEAR};
    double kink = INFINITY, largest = 0.0;
    for (size_t r = 0; r < rows; r++) {
        ref_embed(w, s, x + r * d, hidden, e, &kink);
        for (size_t j = 0; j < h; j++) {
            if (!(fabs(out[r * h + j] - e[j]) <= 1e-5 * (1.0 + fabs(e[j]))))
                fail_msg("row %zu column %zu: %.9g, reference %.9g", r, j, (double)out[r * h + j], e[j]);
            largest = fmax(largest, fabs(e[j]));
        }
    }
    assert_true(largest > 1e-2);
    free(w);
    free(hidden);
    free(e);
    free(x);
    free(out);
    eb_finetuner_free(model);
}

static void transform_matches_reference(void **state)
{
    (void)state;
    check_transform_against_reference(EB_PAIR_LINEAR, 30, 9, 7);
    check_transform_against_reference(EB_PAIR_LINEAR_RELU_LINEAR, 30, 9, 7);
    /* Rows past one stack block of the hidden layer. */
    check_transform_against_reference(EB_PAIR_LINEAR_RELU_LINEAR, 700, 5, 300);
    /* Wider than a block of hidden units: the second product adds up several blocks. */
    check_transform_against_reference(EB_PAIR_LINEAR_RELU_LINEAR, 9, 3, 2500);
}

/*
 * predict_pairs is the cosine of the two transformed rows of each pair, over
 * more pairs than one slice; a zero embedding has cosine 0 with anything.
 */
static void predict_is_the_cosine_of_transforms(void **state)
{
    (void)state;
    const size_t rows = 60, d = 5, h = 4;
    test_data data = make_data(rows, d, 3, 0, 0.0, 65);
    const size_t n = EB_PAIR_SLICE + 300;
    uint32_t *left = xmalloc(n * sizeof *left), *right = xmalloc(n * sizeof *right);
    for (size_t i = 0; i < n; i++) {
        left[i] = (uint32_t)(i % rows);
        right[i] = (uint32_t)((i * 13 + 5) % rows);
    }
    for (size_t c = 0; c < d; c++)
        data.x[c] = 0.0f; /* row 0 */
    eb_pairs pairs = eb_pairs_indexed(data_x(&data), left, right, n, NULL);
    float *cosines = xmalloc(n * sizeof *cosines), *embedded = xmalloc(rows * h * sizeof *embedded);
    double a[4], b[4];
    for (size_t k = 0; k < N_LAYERS; k++) {
        eb_finetuner *model = make_pair_learner(LAYERS[k], h, 1, 0, 1e-2f, 66, NULL);
        eb_error err;
        assert_int_equal(eb_finetuner_predict_pairs(model, pairs, cosines, n, &err), EB_ERR_NOT_FITTED);
        assert_int_equal(eb__finetuner_init_weights(model, d, 0), EB_OK);
        size_t count;
        float *weights = eb__finetuner_weights(model, &count);
        /* The last layer's bias 0, so row 0 of X (all zeros) embeds to zero. */
        memset(weights + count - h, 0, h * sizeof(float));
        if (LAYERS[k] == EB_PAIR_LINEAR_RELU_LINEAR)
            memset(weights + d * h, 0, h * sizeof(float));
        assert_int_equal(eb_finetuner_predict_pairs(model, pairs, cosines, n - 1, &err), EB_ERR_BUFFER_TOO_SMALL);
        assert_int_equal(eb_finetuner_predict_pairs(model, pairs, cosines, n, &err), EB_OK);
        assert_int_equal(eb_finetuner_transform(model, data_x(&data), eb_mut_matrix_view(embedded, rows, h), &err),
                         EB_OK);
        size_t zero_pairs = 0;
        for (size_t i = 0; i < n; i++) {
            for (size_t j = 0; j < h; j++) {
                a[j] = embedded[left[i] * h + j];
                b[j] = embedded[right[i] * h + j];
            }
            double expected = ref_cosine(a, b, h);
            if (left[i] == 0 || right[i] == 0) {
                assert_true(cosines[i] == 0.0f);
                zero_pairs++;
            }
            if (!(fabs(cosines[i] - expected) <= 1e-6))
                fail_msg("pair %zu: predicted %.9g, cosine of the transforms %.9g", i, (double)cosines[i], expected);
        }
        assert_true(zero_pairs > 0);
        eb_finetuner_free(model);
    }
    free(left);
    free(right);
    free(cosines);
    free(embedded);
    data_release(&data);
}

/* Splitting X at multiples of EB_TRANSFORM_SLICE_ROWS gives the bits of one call. */
static void transform_split_is_bit_identical(void **state)
{
    (void)state;
    const size_t rows = 2 * EB_TRANSFORM_SLICE_ROWS + 77, d = 10, h = 12;
    test_data data = make_data(rows, d, 3, 0, 0.0, 61);
    for (size_t k = 0; k < N_LAYERS; k++) {
        eb_finetuner *model = make_pair_learner(LAYERS[k], h, 1, 32, 1e-2f, 62, NULL);
        assert_ok(eb_finetuner_fit_pairs(model, data_pairs(&data)), model);
        float *whole = xmalloc(rows * h * sizeof(float)), *split = xmalloc(rows * h * sizeof(float));
        assert_int_equal(eb_finetuner_transform(model, data_x(&data), eb_mut_matrix_view(whole, rows, h), NULL),
                         EB_OK);
        for (size_t start = 0; start < rows; start += EB_TRANSFORM_SLICE_ROWS) {
            size_t count = rows - start < EB_TRANSFORM_SLICE_ROWS ? rows - start : EB_TRANSFORM_SLICE_ROWS;
            eb_matrix part = eb_matrix_view(data.x + start * d, count, d);
            assert_int_equal(eb_finetuner_transform(model, part, eb_mut_matrix_view(split + start * h, count, h), NULL),
                             EB_OK);
        }
        assert_memory_equal(whole, split, rows * h * sizeof(float));
        free(whole);
        free(split);
        eb_finetuner_free(model);
    }
    data_release(&data);
}

typedef struct transform_job {
    const eb_finetuner *model;
    eb_matrix x;
    float *out;
    size_t h;
    eb_status status;
} transform_job;

static void *run_transform(void *opaque)
{
    transform_job *job = opaque;
    for (int repeat = 0; repeat < 3 && job->status == EB_OK; repeat++)
        job->status = eb_finetuner_transform(job->model, job->x, eb_mut_matrix_view(job->out, job->x.rows, job->h),
                                             NULL);
    return NULL;
}

/* transform keeps its scratch on the caller's stack: threads sharing one model get the bits of a lone call. */
static void transforms_on_many_threads_agree(void **state)
{
    (void)state;
    enum { THREADS = 4 };
    const size_t rows = EB_TRANSFORM_SLICE_ROWS + 100, d = 16, h = 40;
    test_data data = make_data(rows, d, 3, 0, 0.0, 67);
    eb_finetuner *model = make_pair_learner(EB_PAIR_LINEAR_RELU_LINEAR, h, 1, 32, 1e-2f, 68, NULL);
    assert_ok(eb_finetuner_fit_pairs(model, data_pairs(&data)), model);
    float *expected = xmalloc(rows * h * sizeof(float));
    assert_int_equal(eb_finetuner_transform(model, data_x(&data), eb_mut_matrix_view(expected, rows, h), NULL), EB_OK);
    pthread_t threads[THREADS];
    transform_job jobs[THREADS];
    for (size_t t = 0; t < THREADS; t++) {
        jobs[t] = (transform_job){model, data_x(&data), xmalloc(rows * h * sizeof(float)), h, EB_OK};
        assert_int_equal(pthread_create(&threads[t], NULL, run_transform, &jobs[t]), 0);
    }
    for (size_t t = 0; t < THREADS; t++) {
        assert_int_equal(pthread_join(threads[t], NULL), 0);
        assert_int_equal(jobs[t].status, EB_OK);
        assert_memory_equal(jobs[t].out, expected, rows * h * sizeof(float));
        free(jobs[t].out);
    }
    free(expected);
    eb_finetuner_free(model);
    data_release(&data);
}

/* Bad values in X and overflow are named by their row, also past the first slice. */
static void transform_reports_bad_rows(void **state)
{
    (void)state;
    const size_t rows = EB_TRANSFORM_SLICE_ROWS + 200, d = 4, h = 3;
    test_data data = make_data(rows, d, 2, 0, 0.0, 71);
    float *out = xmalloc(rows * h * sizeof(float));
    eb_mut_matrix out_view = eb_mut_matrix_view(out, rows, h);
    for (size_t k = 0; k < N_LAYERS; k++) {
        eb_finetuner *model = make_pair_learner(LAYERS[k], h, 1, 16, 1e-2f, 72, NULL);
        eb_error err;
        assert_int_equal(eb_finetuner_transform(model, data_x(&data), out_view, &err), EB_ERR_NOT_FITTED);
        assert_ok(eb_finetuner_fit_pairs(model, data_pairs(&data)), model);

        /* -Inf, which a ReLU would turn into 0 were X not scanned. */
        data.x[600 * d + 1] = -INFINITY;
        assert_int_equal(eb_finetuner_transform(model, data_x(&data), out_view, &err), EB_ERR_NONFINITE);
        assert_message_contains(err.message, "X[600, 1]");
        data.x[600 * d + 1] = NAN;
        assert_int_equal(eb_finetuner_transform(model, data_x(&data), out_view, &err), EB_ERR_NONFINITE);
        assert_message_contains(err.message, "X[600, 1]");

        /*
         * Finite input that overflows through the weights: the first unit's
         * weights set to 0.5, so d inputs of 3e38 make it infinite, and the
         * ReLU passes that on.
         */
        size_t count;
        float *weights = eb__finetuner_weights(model, &count);
        for (size_t c = 0; c < d; c++)
            weights[c * h] = 0.5f;
        for (size_t c = 0; c < d; c++) {
            data.x[600 * d + c] = 3e38f;
            data.x[601 * d + c] = 3e38f;
        }
        assert_int_equal(eb_finetuner_transform(model, data_x(&data), out_view, &err), EB_ERR_NONFINITE);
        assert_message_contains(err.message, "row 600 of X overflows");
        for (size_t c = 0; c < d; c++) {
            data.x[600 * d + c] = 0.5f;
            data.x[601 * d + c] = 0.5f;
        }

        /* out of the wrong shape, untouched. */
        out[0] = 42.0f;
        assert_int_equal(eb_finetuner_transform(model, data_x(&data), eb_mut_matrix_view(out, rows, h + 1), &err),
                         EB_ERR_SHAPE_MISMATCH);
        assert_true(out[0] == 42.0f);
        assert_int_equal(eb_finetuner_transform(model, data_x(&data), out_view, &err), EB_OK);
        eb_finetuner_free(model);
    }
    free(out);
    data_release(&data);
}

/* ---- saving ------------------------------------------------------------------- */

static void save_and_load_round_trip(void **state)
{
    (void)state;
    test_data d = make_data(40, 6, 2, 2, 2.0, 81);
    for (size_t k = 0; k < N_LAYERS; k++) {
        eb_finetuner *model = make_pair_learner(LAYERS[k], EB_HIDDEN_DIM_AS_INPUT, 2, 8, 1e-2f, 82, NULL);
        assert_int_equal(eb_finetuner_output_dim(model), 0);
        eb_error err;
        /* An unfitted pair learner saves and loads too. */
        for (int fitted = 0; fitted < 2; fitted++) {
            if (fitted) {
                assert_ok(eb_finetuner_fit_pairs(model, data_pairs(&d)), model);
                assert_int_equal(eb_finetuner_output_dim(model), d.cols);
                assert_int_equal(eb_finetuner_n_classes(model), 0);
            }
            size_t size = eb_finetuner_saved_size(model), written = 0;
            assert_true(size > EB_MODEL_HEADER_SIZE);
            void *bytes = xmalloc(size);
            assert_int_equal(eb_finetuner_save_to_buffer(model, bytes, size, &written, &err), EB_OK);
            eb_model_header header;
            assert_int_equal(eb_model_read_header(bytes, size, &header, &err), EB_OK);
            assert_int_equal(header.kind, EB_KIND_PAIR_LEARNER);
            eb_finetuner *loaded = NULL;
            if (eb_finetuner_load_from_buffer(bytes, size, NULL, &loaded, &err) != EB_OK)
                fail_msg("load: %s", err.message);
            assert_int_equal(eb_finetuner_kind_of(loaded), EB_KIND_PAIR_LEARNER);
            model_snapshot a = snapshot_on(model, &d), b = snapshot_on(loaded, &d);
            assert_true(snapshots_identical(&a, &b));
            assert_int_equal(b.params.layers, LAYERS[k]);
            snapshot_release(&a);
            snapshot_release(&b);
            eb_finetuner_free(loaded);
            free(bytes);
        }
        eb_finetuner_free(model);
    }
    data_release(&d);
}

/*
 * Offsets in a saved pair learner (docs/model-format.md, version 2): the
 * header's version (the checksum covers the header from there to itself),
 * then the params' layers and the fit state's n_classes.
 */
enum {
    VERSION_AT = 8,
    CRC_AT = 24,
    LAYERS_AT = EB_MODEL_HEADER_SIZE + 8 + 8 + 4 + 8 + 8 + 8,
    N_CLASSES_AT = LAYERS_AT + 4 + 1 + 8
};

static void put_le(unsigned char *at, uint64_t value, size_t bytes)
{
    for (size_t i = 0; i < bytes; i++)
        at[i] = (unsigned char)(value >> (8 * i));
}

/* Load bytes after one change, with the checksum made right again so the check behind it is the one that refuses. */
static void expect_load_refusal(const unsigned char *saved, size_t size, size_t at, uint64_t value, size_t bytes,
                                const char *what)
{
    unsigned char *copy = xmalloc(size);
    memcpy(copy, saved, size);
    put_le(copy + at, value, bytes);
    put_le(copy + CRC_AT, saved_model_crc(copy, size), 4);
    eb_finetuner *loaded = (eb_finetuner *)copy; /* load must set it to NULL */
    eb_error err;
    assert_int_equal(eb_finetuner_load_from_buffer(copy, size, NULL, &loaded, &err), EB_ERR_FORMAT);
    assert_null(loaded);
    assert_message_contains(err.message, what);
    free(copy);
}

/* A file whose parts disagree is refused by name: no version 1 pair learners, layers that do not fit the weights. */
static void inconsistent_files_are_refused(void **state)
{
    (void)state;
    test_data d = make_data(20, 5, 2, 2, 2.0, 85);
    eb_finetuner *model = make_pair_learner(EB_PAIR_LINEAR, 3, 1, 4, 1e-2f, 86, NULL);
    assert_ok(eb_finetuner_fit_pairs(model, data_pairs(&d)), model);
    size_t size = eb_finetuner_saved_size(model), written;
    unsigned char *saved = xmalloc(size);
    assert_int_equal(eb_finetuner_save_to_buffer(model, saved, size, &written, NULL), EB_OK);
    /* The offsets are right: the bytes there hold what the model has. */
    assert_int_equal(saved[LAYERS_AT], EB_PAIR_LINEAR);
    assert_int_equal(saved[N_CLASSES_AT - 9], 1); /* fitted */
    assert_int_equal(saved[N_CLASSES_AT - 8], 5); /* n_features */
    /* ... and so is the checksum's. */
    unsigned char stored[4];
    put_le(stored, saved_model_crc(saved, size), 4);
    assert_memory_equal(stored, saved + CRC_AT, 4);
    expect_load_refusal(saved, size, VERSION_AT, 1, 4, "format version 1 has no pair_learner finetuners");
    expect_load_refusal(saved, size, LAYERS_AT, EB_PAIR_LINEAR_RELU_LINEAR, 4, "shapes disagree");
    expect_load_refusal(saved, size, LAYERS_AT, 7, 4, "layers is 7");
    expect_load_refusal(saved, size, N_CLASSES_AT, 2, 8, "shapes disagree");
    eb_finetuner *loaded = NULL;
    assert_int_equal(eb_finetuner_load_from_buffer(saved, size, NULL, &loaded, NULL), EB_OK);
    eb_finetuner_free(loaded);
    free(saved);
    eb_finetuner_free(model);
    data_release(&d);
}

/* ---- failures leave the model as it was ----------------------------------------------- */

static const size_t ATTEMPT_LIMIT = 1000;

typedef eb_status (*pair_call)(eb_finetuner *model, eb_pairs pairs);

static eb_status predict_call(eb_finetuner *model, eb_pairs pairs)
{
    float out[256];
    assert_true(pairs.count <= 256);
    return eb_finetuner_predict_pairs(model, pairs, out, 256, NULL);
}

/*
 * Fail allocation 0, 1, 2, ... of call until it gets through: each failure is
 * EB_ERR_NOMEM, leaks nothing and changes nothing; the call that succeeds
 * gives the model a call without failures gives.
 */
static void check_every_allocation(eb_pair_layers layers, bool prefit, pair_call call, size_t batch_size)
{
    test_data d = make_data(30, 5, 3, 2, 2.0, 91);
    counting_allocator counter;
    eb_allocator mem = counting_allocator_init(&counter);
    eb_finetuner *model = make_pair_learner(layers, 4, 3, batch_size, 1e-2f, 92, &mem);
    eb_finetuner *clean = make_pair_learner(layers, 4, 3, batch_size, 1e-2f, 92, NULL);
    if (prefit) {
        assert_ok(eb_finetuner_fit_pairs(model, data_pairs(&d)), model);
        assert_ok(eb_finetuner_fit_pairs(clean, data_pairs(&d)), clean);
    }
    model_snapshot before = snapshot_on(model, &d);
    size_t live_before = counter.live_blocks, failures = 0;
    eb_status status = EB_ERR_NOMEM;
    for (size_t k = 0; k < ATTEMPT_LIMIT; k++) {
        counting_allocator_arm(&counter, k);
        status = call(model, data_pairs(&d));
        if (status == EB_OK)
            break;
        assert_int_equal(status, EB_ERR_NOMEM);
        assert_int_equal(counter.live_blocks, live_before);
        model_snapshot after = snapshot_on(model, &d);
        assert_true(snapshots_identical(&before, &after));
        snapshot_release(&after);
        failures++;
    }
    assert_int_equal(status, EB_OK);
    assert_true(failures >= 1);
    counting_allocator_arm(&counter, SIZE_MAX);
    assert_ok(call(clean, data_pairs(&d)), clean);
    model_snapshot got = snapshot_on(model, &d), expected = snapshot_on(clean, &d);
    assert_true(fits_identical(&got, &expected));
    snapshot_release(&got);
    snapshot_release(&expected);
    snapshot_release(&before);
    eb_finetuner_free(model);
    eb_finetuner_free(clean);
    assert_int_equal(counter.live_blocks, 0);
    data_release(&d);
}

static void out_of_memory_at_every_allocation(void **state)
{
    (void)state;
    for (size_t k = 0; k < N_LAYERS; k++) {
        for (int prefit = 0; prefit < 2; prefit++) {
            /* Minibatches (a shuffled order) and one batch. */
            check_every_allocation(LAYERS[k], prefit, eb_finetuner_fit_pairs, 7);
            check_every_allocation(LAYERS[k], prefit, eb_finetuner_fit_pairs, 0);
            check_every_allocation(LAYERS[k], prefit, eb_finetuner_partial_fit_pairs, 7);
        }
        check_every_allocation(LAYERS[k], true, predict_call, 7);
    }
}

/* A call that must fail with status (and a message naming what) and leave the fitted model unchanged. */
static void expect_refusal(eb_finetuner *model, const test_data *d, pair_call call, eb_pairs pairs,
                           eb_status status, const char *what)
{
    model_snapshot before = snapshot_on(model, d);
    eb_status got = call(model, pairs);
    if (got != status)
        fail_msg("expected %s, got %s: %s", eb_status_string(status), eb_status_string(got),
                 eb_finetuner_last_error(model));
    assert_message_contains(eb_finetuner_last_error(model), what);
    model_snapshot after = snapshot_on(model, d);
    assert_true(snapshots_identical(&before, &after));
    snapshot_release(&before);
    snapshot_release(&after);
}

static void bad_pairs_are_refused(void **state)
{
    (void)state;
    test_data d = make_data(20, 4, 2, 2, 2.0, 101);
    eb_finetuner *model = make_pair_learner(EB_PAIR_LINEAR_RELU_LINEAR, 3, 2, 4, 1e-2f, 102, NULL);
    assert_ok(eb_finetuner_fit_pairs(model, data_pairs(&d)), model);
    const pair_call calls[] = {eb_finetuner_fit_pairs, eb_finetuner_partial_fit_pairs};
    for (size_t c = 0; c < 2; c++) {
        pair_call call = calls[c];
        /* X1 and X2 of different row counts. */
        eb_pairs aligned = eb_pairs_aligned(eb_matrix_view(d.x, 10, d.cols), eb_matrix_view(d.x, 9, d.cols),
                                            d.similarity);
        expect_refusal(model, &d, call, aligned, EB_ERR_SHAPE_MISMATCH, "X1 has 10 rows and X2 9");
        /* X1 and X2 of different widths. */
        aligned = eb_pairs_aligned(eb_matrix_view(d.x, 5, d.cols), eb_matrix_view(d.x, 5, d.cols - 1), d.similarity);
        expect_refusal(model, &d, call, aligned, EB_ERR_SHAPE_MISMATCH, "X1 has 4 columns and X2 3");
        /* Similarities outside [0, 1], or NaN. */
        const float bad[] = {1.5f, -0.25f, NAN, INFINITY};
        const eb_status expected[] = {EB_ERR_INVALID_PARAM, EB_ERR_INVALID_PARAM, EB_ERR_NONFINITE,
                                      EB_ERR_INVALID_PARAM};
        for (size_t b = 0; b < 4; b++) {
            float saved = d.similarity[3];
            d.similarity[3] = bad[b];
            expect_refusal(model, &d, call, data_pairs(&d), expected[b], "similarity[3]");
            d.similarity[3] = saved;
        }
        eb_pairs no_targets = data_pairs(&d);
        no_targets.similarity = NULL;
        expect_refusal(model, &d, call, no_targets, EB_ERR_NULL_POINTER, "similarity");
        /* Another width than the fitted one. */
        eb_pairs wider = eb_pairs_indexed(eb_matrix_view(d.x, d.rows / 2, 2 * d.cols), d.left, d.right, 3,
                                          d.similarity);
        expect_refusal(model, &d, call, wider, EB_ERR_SHAPE_MISMATCH, "X has 8 columns, the model was fitted on 4");
        /* An index past the rows of X. */
        uint32_t saved = d.right[5];
        d.right[5] = (uint32_t)d.rows;
        expect_refusal(model, &d, call, data_pairs(&d), EB_ERR_SHAPE_MISMATCH, "pair 5");
        d.right[5] = saved;
        /* A NaN in X. */
        float value = d.x[7 * d.cols + 2];
        d.x[7 * d.cols + 2] = NAN;
        expect_refusal(model, &d, call, data_pairs(&d), EB_ERR_NONFINITE, "[7, 2]");
        d.x[7 * d.cols + 2] = value;
        /* No pairs. */
        eb_pairs none = data_pairs(&d);
        none.count = 0;
        expect_refusal(model, &d, call, none, EB_ERR_EMPTY_INPUT, "0 pairs");
    }
    eb_finetuner_free(model);
    data_release(&d);
}

static void set_learning_rate(eb_finetuner *model, float learning_rate)
{
    eb_finetuner_params params = eb_finetuner_get_params(model);
    params.learning_rate = learning_rate;
    assert_ok(eb_finetuner_set_params(model, &params), model);
}

/*
 * Adam moves each weight by about learning_rate a step: at 3e38, two steps
 * the same way overflow float32. EB_ERR_NONFINITE, and the model (fitted or
 * not, fit or partial_fit) stays as it was.
 */
static void divergence_leaves_the_model_unchanged(void **state)
{
    (void)state;
    test_data d = make_data(20, 4, 2, 2, 2.0, 111);
    for (size_t k = 0; k < N_LAYERS; k++) {
        eb_finetuner *model = make_pair_learner(LAYERS[k], 3, 2, 4, 3e38f, 112, NULL);
        expect_refusal(model, &d, eb_finetuner_fit_pairs, data_pairs(&d), EB_ERR_NONFINITE, "diverged");
        expect_refusal(model, &d, eb_finetuner_partial_fit_pairs, data_pairs(&d), EB_ERR_NONFINITE, "diverged");
        assert_false(eb_finetuner_is_fitted(model));
        set_learning_rate(model, 1e-2f);
        assert_ok(eb_finetuner_fit_pairs(model, data_pairs(&d)), model);
        set_learning_rate(model, 3e38f);
        expect_refusal(model, &d, eb_finetuner_fit_pairs, data_pairs(&d), EB_ERR_NONFINITE, "diverged");
        expect_refusal(model, &d, eb_finetuner_partial_fit_pairs, data_pairs(&d), EB_ERR_NONFINITE, "diverged");
        eb_finetuner_free(model);
    }
    data_release(&d);
}

/* ---- params and kinds ----------------------------------------------------------- */

static void params_and_wrong_kind_calls(void **state)
{
    (void)state;
    eb_finetuner_params params = eb_finetuner_default_params(EB_KIND_PAIR_LEARNER);
    assert_int_equal(params.kind, EB_KIND_PAIR_LEARNER);
    assert_int_equal(params.hidden_dim, 300);
    assert_int_equal(params.n_epochs, 1);
    assert_true(params.learning_rate == 2e-5f);
    assert_int_equal(params.batch_size, 16);
    assert_int_equal(params.n_neg, 0);
    assert_int_equal(params.layers, EB_PAIR_LINEAR);
    eb_error err;
    assert_int_equal(eb_finetuner_check_params(&params, &err), EB_OK);
    params.layers = (eb_pair_layers)7;
    assert_int_equal(eb_finetuner_check_params(&params, &err), EB_ERR_INVALID_PARAM);
    assert_message_contains(err.message, "layers is 7");
    params.layers = EB_PAIR_LINEAR;
    params.n_neg = 3;
    assert_int_equal(eb_finetuner_check_params(&params, &err), EB_ERR_INVALID_PARAM);
    assert_message_contains(err.message, "n_neg");

    test_data d = make_data(20, 4, 2, 2, 2.0, 121);
    eb_finetuner *model = make_pair_learner(EB_PAIR_LINEAR, 3, 2, 4, 1e-2f, 122, NULL);
    assert_int_equal(eb_finetuner_output_dim(model), 3);
    assert_ok(eb_finetuner_fit_pairs(model, data_pairs(&d)), model);
    /* Rows with class labels are for the other kinds. */
    model_snapshot before = snapshot_on(model, &d);
    assert_int_equal(eb_finetuner_fit(model, data_x(&d), d.y, d.n_classes, NULL), EB_ERR_WRONG_KIND);
    assert_message_contains(eb_finetuner_last_error(model), "fit_pairs");
    assert_int_equal(eb_finetuner_partial_fit(model, data_x(&d), d.y, d.n_classes, NULL), EB_ERR_WRONG_KIND);
    assert_message_contains(eb_finetuner_last_error(model), "fit_pairs");
    model_snapshot after = snapshot_on(model, &d);
    assert_true(snapshots_identical(&before, &after));
    snapshot_release(&before);
    snapshot_release(&after);
    eb_class_labels names = {EB_LABELS_NONE, 0, NULL, NULL, NULL};
    assert_int_equal(eb_finetuner_set_class_labels(model, &names), EB_ERR_WRONG_KIND);
    assert_int_equal(eb_finetuner_n_classes(model), 0);
    /* A fitted pair learner keeps its layers. */
    params = eb_finetuner_get_params(model);
    params.layers = EB_PAIR_LINEAR_RELU_LINEAR;
    assert_int_equal(eb_finetuner_set_params(model, &params), EB_ERR_INVALID_PARAM);
    assert_int_equal(eb_finetuner_get_params(model).layers, EB_PAIR_LINEAR);

    eb_finetuner_params ff_params = test_params(EB_KIND_FEEDFORWARD, 3, 2, 1);
    eb_finetuner *feedforward = NULL;
    assert_int_equal(eb_finetuner_create(&ff_params, NULL, &feedforward, &err), EB_OK);
    assert_int_equal(eb_finetuner_fit_pairs(feedforward, data_pairs(&d)), EB_ERR_WRONG_KIND);
    float grad[1];
    double loss;
    eb_pairs pairs = data_pairs(&d);
    assert_int_equal(eb__pair_learner_gradient(feedforward, &pairs, grad, &loss), EB_ERR_WRONG_KIND);
    assert_int_equal(eb_finetuner_partial_fit_pairs(feedforward, data_pairs(&d)), EB_ERR_WRONG_KIND);
    assert_false(eb_finetuner_is_fitted(feedforward));
    ff_params.layers = EB_PAIR_LINEAR_RELU_LINEAR;
    assert_int_equal(eb_finetuner_check_params(&ff_params, &err), EB_ERR_INVALID_PARAM);
    eb_finetuner_free(feedforward);
    eb_finetuner_free(model);
    data_release(&d);
}

/* A callback that stops after its epoch: fit keeps what it learned and succeeds. */
static int stop_after_second(size_t epoch, double loss, void *data)
{
    size_t *calls = data;
    (*calls)++;
    assert_true(isfinite(loss) && loss >= 0.0);
    return epoch >= 2;
}

static void callback_stops_training(void **state)
{
    (void)state;
    test_data d = make_data(20, 4, 2, 2, 2.0, 131);
    eb_finetuner *model = make_pair_learner(EB_PAIR_LINEAR_RELU_LINEAR, 3, 10, 4, 1e-2f, 132, NULL);
    size_t calls = 0;
    assert_int_equal(eb_finetuner_set_callback(model, stop_after_second, &calls), EB_OK);
    assert_ok(eb_finetuner_fit_pairs(model, data_pairs(&d)), model);
    size_t length;
    eb_finetuner_loss_history(model, &length);
    assert_int_equal(calls, 2);
    assert_int_equal(length, 2);
    assert_true(eb_finetuner_is_fitted(model));
    eb_finetuner_free(model);
    data_release(&d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(gradient_linear),
        cmocka_unit_test(gradient_two_layers),
        cmocka_unit_test(gradient_over_several_slices),
        cmocka_unit_test(one_batch_of_several_slices_is_one_adam_step),
        cmocka_unit_test(fit_follows_the_specified_walk),
        cmocka_unit_test(learning_linear),
        cmocka_unit_test(learning_two_layers),
        cmocka_unit_test(aligned_and_indexed_pairs_agree),
        cmocka_unit_test(same_seed_same_bits),
        cmocka_unit_test(batch_size_changes_training),
        cmocka_unit_test(memory_does_not_grow_with_pairs_times_width),
        cmocka_unit_test(partial_fits_continue_like_fit),
        cmocka_unit_test(transform_matches_reference),
        cmocka_unit_test(predict_is_the_cosine_of_transforms),
        cmocka_unit_test(transform_split_is_bit_identical),
        cmocka_unit_test(transforms_on_many_threads_agree),
        cmocka_unit_test(transform_reports_bad_rows),
        cmocka_unit_test(save_and_load_round_trip),
        cmocka_unit_test(inconsistent_files_are_refused),
        cmocka_unit_test(out_of_memory_at_every_allocation),
        cmocka_unit_test(bad_pairs_are_refused),
        cmocka_unit_test(divergence_leaves_the_model_unchanged),
        cmocka_unit_test(params_and_wrong_kind_calls),
        cmocka_unit_test(callback_stops_training),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
