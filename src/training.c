/* What both finetuners share: trainable weights with Adam, the loss history, the fit state. */
#include <math.h>
#include <string.h>

#include "internal.h"

enum { TRAINABLE_ARRAYS = 4 };
static const float ADAM_BETA1 = 0.9f;
static const float ADAM_BETA2 = 0.999f;
static const float ADAM_EPS = 1e-8f;

eb_status eb__trainable_alloc(eb_trainable *t, size_t count, const eb_allocator *mem)
{
    size_t total;
    memset(t, 0, sizeof *t);
    if (!eb__mul_size(count, TRAINABLE_ARRAYS, &total))
        return EB_ERR_TOO_LARGE;
    float *block = eb__calloc(mem, total, sizeof(float));
    if (block == NULL)
        return EB_ERR_NOMEM;
    t->count = count;
    t->values = block;
    t->grad = block + count;
    t->first_moment = block + 2 * count;
    t->second_moment = block + 3 * count;
    return EB_OK;
}

void eb__trainable_release(eb_trainable *t, const eb_allocator *mem)
{
    eb__free(mem, t->values);
    memset(t, 0, sizeof *t);
}

void eb__init_uniform(float *values, size_t count, size_t fan_in, eb_rng *rng)
{
    float bound = 1.0f / sqrtf((float)fan_in);
    for (size_t i = 0; i < count; i++)
        values[i] = eb__rng_uniform(rng, -bound, bound);
}

/*
 * Element-wise loops run in blocks of a fixed EB_BLOCK elements plus a scalar
 * tail: a fixed trip count is vectorised even under GCC's -O2 "very cheap"
 * cost model (the Python extension is built with -O2), which leaves loops of
 * unknown length scalar. The arithmetic per element is unchanged, so results
 * are bit-identical to the plain loop.
 */
enum { EB_BLOCK = 16 };

/* restrict parameters of a function that is never inlined (an ifunc) are what convinces GCC not to alias-check. */
static EB_VECTOR_CLONES void adam_update(size_t count, float *restrict w, const float *restrict g,
                                         float *restrict m, float *restrict v, float step, float inv_sqrt_c2)
{
    size_t i = 0;
    for (; i + EB_BLOCK <= count; i += EB_BLOCK) {
        for (size_t j = i; j < i + EB_BLOCK; j++) {
            m[j] = ADAM_BETA1 * m[j] + (1.0f - ADAM_BETA1) * g[j];
            v[j] = ADAM_BETA2 * v[j] + (1.0f - ADAM_BETA2) * g[j] * g[j];
            w[j] -= step * m[j] / (sqrtf(v[j]) * inv_sqrt_c2 + ADAM_EPS);
        }
    }
    for (; i < count; i++) {
        m[i] = ADAM_BETA1 * m[i] + (1.0f - ADAM_BETA1) * g[i];
        v[i] = ADAM_BETA2 * v[i] + (1.0f - ADAM_BETA2) * g[i] * g[i];
        w[i] -= step * m[i] / (sqrtf(v[i]) * inv_sqrt_c2 + ADAM_EPS);
    }
}

void eb__adam_step(eb_trainable *t, float learning_rate)
{
    t->steps++;
    /* Bias corrections in double: beta^t underflows slowly but loses float precision early. */
    double correction1 = 1.0 - pow(ADAM_BETA1, (double)t->steps);
    double correction2 = 1.0 - pow(ADAM_BETA2, (double)t->steps);
    float step = (float)(learning_rate / correction1);
    float inv_sqrt_c2 = (float)(1.0 / sqrt(correction2));
    adam_update(t->count, t->values, t->grad, t->first_moment, t->second_moment, step, inv_sqrt_c2);
}

eb_status eb__history_reserve(eb_history *h, size_t extra, const eb_allocator *mem)
{
    if (extra <= h->capacity - h->length)
        return EB_OK;
    if (extra > SIZE_MAX / sizeof(double) - h->length)
        return EB_ERR_TOO_LARGE;
    size_t needed = h->length + extra;
    /* Doubling keeps a long stream of partial_fit calls at amortised O(1) per call. */
    size_t capacity = h->capacity > needed / 2 ? 2 * h->capacity : needed;
    if (capacity < needed || capacity > SIZE_MAX / sizeof(double))
        capacity = needed;
    double *values = eb__calloc(mem, capacity, sizeof(double));
    if (values == NULL)
        return EB_ERR_NOMEM;
    if (h->length > 0)
        memcpy(values, h->values, h->length * sizeof(double));
    eb__free(mem, h->values);
    h->values = values;
    h->capacity = capacity;
    return EB_OK;
}

void eb__history_release(eb_history *h, const eb_allocator *mem)
{
    eb__free(mem, h->values);
    memset(h, 0, sizeof *h);
}

void eb__fit_state_release(eb_fit_state *state, const eb_allocator *mem)
{
    eb__trainable_release(&state->weights, mem);
    eb__history_release(&state->history, mem);
    memset(state, 0, sizeof *state);
}

eb_status eb__check_training_input(const eb_fit_state *state, eb_matrix x, const int32_t *y, size_t n_classes,
                                   bool partial, eb_error *err)
{
    if (y == NULL)
        return eb__fail(err, EB_ERR_NULL_POINTER, "y is NULL");
    eb_status status = eb__check_input(x, "X", err);
    if (status != EB_OK)
        return status;
    bool continuing = partial && state->fitted;
    if (continuing) {
        if (x.cols != state->n_features)
            return eb__fail(err, EB_ERR_SHAPE_MISMATCH, "X has %zu columns, the model was fitted on %zu", x.cols,
                            state->n_features);
        if (n_classes != 0 && n_classes != state->n_classes)
            return eb__fail(err, EB_ERR_LABEL_OUT_OF_RANGE,
                            "n_classes is %zu, the model was fitted with %zu (pass 0 or %zu)", n_classes,
                            state->n_classes, state->n_classes);
        n_classes = state->n_classes;
    } else if (n_classes == 0) {
        return eb__fail(err, EB_ERR_TOO_FEW_CLASSES, "n_classes is 0; the first fit needs at least one class");
    }
    return eb__check_labels(y, x.rows, n_classes, err);
}

/* The weights hold only finite values (Adam can push them to Inf before the loss shows it). */
static bool all_finite(const float *values, size_t count)
{
    for (size_t i = 0; i < count; i++) {
        if (!isfinite(values[i]))
            return false;
    }
    return true;
}

eb_status eb__train_epochs(eb_fit_state *state, size_t n_epochs, eb_epoch_callback on_epoch, void *callback_data,
                           eb__epoch_fn run_epoch, void *ctx, bool restorable, const eb_allocator *mem,
                           eb_error *err)
{
    eb_trainable *t = &state->weights;
    if (eb__history_reserve(&state->history, n_epochs, mem) != EB_OK)
        return eb__fail(err, EB_ERR_NOMEM, "out of memory growing the loss history");
    /* A continuing partial_fit trains the model's own weights: keep a copy to undo a diverged pass. */
    float *backup = NULL;
    eb_rng rng_before = state->rng;
    uint64_t steps_before = t->steps;
    size_t history_before = state->history.length;
    if (restorable) {
        backup = eb__calloc(mem, t->count, TRAINABLE_ARRAYS * sizeof(float));
        if (backup == NULL)
            return eb__fail(err, EB_ERR_NOMEM, "out of memory copying %zu weights before training", t->count);
        memcpy(backup, t->values, t->count * TRAINABLE_ARRAYS * sizeof(float));
    }
    size_t diverged_at = 0;
    double bad_loss = 0.0;
    for (size_t epoch = 1; epoch <= n_epochs; epoch++) {
        double loss = run_epoch(ctx);
        if (!isfinite(loss)) {
            diverged_at = epoch;
            bad_loss = loss;
            break;
        }
        state->history.values[state->history.length++] = loss;
        if (on_epoch != NULL && on_epoch(epoch, loss, callback_data))
            break;
    }
    eb_status status = EB_OK;
    if (diverged_at != 0 || !all_finite(t->values, t->count)) {
        if (diverged_at != 0)
            status = eb__fail(err, EB_ERR_NONFINITE,
                              "training diverged: the loss became %g in epoch %zu; X holds values too large for "
                              "float32 arithmetic, or learning_rate is too high",
                              bad_loss, diverged_at);
        else
            status = eb__fail(err, EB_ERR_NONFINITE,
                              "training diverged: the weights overflowed; X holds values too large for float32 "
                              "arithmetic, or learning_rate is too high");
        if (backup != NULL) {
            memcpy(t->values, backup, t->count * TRAINABLE_ARRAYS * sizeof(float));
            t->steps = steps_before;
            state->rng = rng_before;
            state->history.length = history_before;
        }
    }
    eb__free(mem, backup);
    return status;
}
