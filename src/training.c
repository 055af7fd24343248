/* What both finetuners share: trainable weights with Adam, the loss history, the fit state. */
#include <math.h>
#include <string.h>

#include "internal.h"

static const float ADAM_BETA1 = 0.9f;
static const float ADAM_BETA2 = 0.999f;
static const float ADAM_EPS = 1e-8f;
/* Loss-history entries reserved before the first epoch; more come as epochs run. */
enum { HISTORY_FIRST_RESERVE = 64 };

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
static EB_VECTOR_CLONES void adam_update_portable(size_t count, float *restrict w, const float *restrict g,
                                                  float *restrict m, float *restrict v, float step,
                                                  float inv_sqrt_c2)
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

#ifdef EB_HAVE_AVX512_KERNELS
#  include <immintrin.h>

/*
 * The division is what Adam waits for: vdivps retires 16 quotients every
 * ~10 cycles, which made this pass a quarter of a batch-32 training step,
 * while the loads and stores it needs take about half that time.
 * Instead: a 14-bit reciprocal estimate, one Newton step, then one residual
 * correction q + (a - d q) / d (Markstein). For a normal quotient that is the
 * correctly rounded a / d, the same bits as the division: tests/c/test_adam.c
 * compares it with the formula. Every other lane (a zero, a quotient near
 * underflow or overflow, Inf, NaN) redoes the division, so no input gives
 * different bits. Every other operation is the portable loop's,
 * in its order, with no fused multiply-add (the library is built with
 * -std=c11, which leaves floating-point contraction off).
 */
__attribute__((target("avx512f"))) static void adam_update_avx512(size_t count, float *restrict w,
                                                                  const float *restrict g, float *restrict m,
                                                                  float *restrict v, float step, float inv_sqrt_c2)
{
    const __m512 beta1 = _mm512_set1_ps(ADAM_BETA1), keep1 = _mm512_set1_ps(1.0f - ADAM_BETA1);
    const __m512 beta2 = _mm512_set1_ps(ADAM_BETA2), keep2 = _mm512_set1_ps(1.0f - ADAM_BETA2);
    const __m512 eps = _mm512_set1_ps(ADAM_EPS), scale = _mm512_set1_ps(inv_sqrt_c2);
    const __m512 step_v = _mm512_set1_ps(step), one = _mm512_set1_ps(1.0f);
    /*
     * The correction needs every intermediate to be a normal float. The
     * denominator lies in [1e-8, 2^70] or is Inf (which makes the quotient NaN),
     * so a quotient within [2^-60, 2^90] also bounds the numerator and the
     * residual away from underflow and overflow; zeros, Inf and NaN fail it.
     */
    const __m512 smallest = _mm512_set1_ps(0x1p-60f), largest = _mm512_set1_ps(0x1p90f);
    size_t i = 0;
    for (; i + 16 <= count; i += 16) {
        __m512 grad = _mm512_loadu_ps(g + i);
        __m512 first = _mm512_add_ps(_mm512_mul_ps(beta1, _mm512_loadu_ps(m + i)), _mm512_mul_ps(keep1, grad));
        __m512 second = _mm512_add_ps(_mm512_mul_ps(beta2, _mm512_loadu_ps(v + i)),
                                      _mm512_mul_ps(_mm512_mul_ps(keep2, grad), grad));
        __m512 denominator = _mm512_add_ps(_mm512_mul_ps(_mm512_sqrt_ps(second), scale), eps);
        __m512 numerator = _mm512_mul_ps(step_v, first);

        __m512 reciprocal = _mm512_rcp14_ps(denominator);
        reciprocal = _mm512_fmadd_ps(_mm512_fnmadd_ps(denominator, reciprocal, one), reciprocal, reciprocal);
        __m512 quotient = _mm512_mul_ps(numerator, reciprocal);
        __m512 residual = _mm512_fnmadd_ps(denominator, quotient, numerator);
        quotient = _mm512_fmadd_ps(residual, reciprocal, quotient);

        __m512 quotient_size = _mm512_abs_ps(quotient);
        __mmask16 exact = _mm512_cmp_ps_mask(quotient_size, smallest, _CMP_GE_OQ) &
                          _mm512_cmp_ps_mask(quotient_size, largest, _CMP_LE_OQ);
        if (exact != 0xFFFF)
            quotient = _mm512_mask_div_ps(quotient, (__mmask16)~exact, numerator, denominator);

        _mm512_storeu_ps(m + i, first);
        _mm512_storeu_ps(v + i, second);
        _mm512_storeu_ps(w + i, _mm512_sub_ps(_mm512_loadu_ps(w + i), quotient));
    }
    if (i < count)
        adam_update_portable(count - i, w + i, g + i, m + i, v + i, step, inv_sqrt_c2);
}
#endif

void eb__adam_update(size_t count, float *w, const float *g, float *m, float *v, float step, float inv_sqrt_c2)
{
#ifdef EB_HAVE_AVX512_KERNELS
    if (__builtin_cpu_supports("avx512f")) {
        adam_update_avx512(count, w, g, m, v, step, inv_sqrt_c2);
        return;
    }
#endif
    adam_update_portable(count, w, g, m, v, step, inv_sqrt_c2);
}

eb_adam_factors eb__adam_begin(eb_trainable *t, float learning_rate)
{
    t->steps++;
    /* Bias corrections in double: beta^t underflows slowly but loses float precision early. */
    double correction1 = 1.0 - pow(ADAM_BETA1, (double)t->steps);
    double correction2 = 1.0 - pow(ADAM_BETA2, (double)t->steps);
    return (eb_adam_factors){(float)(learning_rate / correction1), (float)(1.0 / sqrt(correction2))};
}

void eb__adam_update_range(eb_trainable *t, eb_adam_factors f, size_t first, size_t last)
{
    if (first < last)
        eb__adam_update(last - first, t->values + first, t->grad + first, t->first_moment + first,
                        t->second_moment + first, f.step, f.inv_sqrt_c2);
}

void eb__adam_step(eb_trainable *t, float learning_rate)
{
    eb__adam_update_range(t, eb__adam_begin(t, learning_rate), 0, t->count);
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
    /*
     * The history grows with the epochs actually run: n_epochs is an upper
     * bound that a stop callback may cut short, so reserving all of it up
     * front would let a huge bound fail (or take gigabytes) before epoch 1.
     * A first small reservation keeps short runs to one allocation.
     */
    size_t first = n_epochs < HISTORY_FIRST_RESERVE ? n_epochs : HISTORY_FIRST_RESERVE;
    if (eb__history_reserve(&state->history, first, mem) != EB_OK)
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
    bool out_of_memory = false;
    for (size_t epoch = 1; epoch <= n_epochs; epoch++) {
        double loss = run_epoch(ctx);
        if (!isfinite(loss)) {
            diverged_at = epoch;
            bad_loss = loss;
            break;
        }
        if (eb__history_reserve(&state->history, 1, mem) != EB_OK) {
            out_of_memory = true;
            break;
        }
        state->history.values[state->history.length++] = loss;
        if (on_epoch != NULL && on_epoch(epoch, loss, callback_data))
            break;
    }
    eb_status status = EB_OK;
    if (out_of_memory) {
        status = eb__fail(err, EB_ERR_NOMEM, "out of memory growing the loss history after %zu epochs",
                          state->history.length - history_before);
    } else if (diverged_at != 0 || !all_finite(t->values, t->count)) {
        if (diverged_at != 0)
            status = eb__fail(err, EB_ERR_NONFINITE,
                              "training diverged: the loss became %g in epoch %zu; X holds values too large for "
                              "float32 arithmetic, or learning_rate is too high",
                              bad_loss, diverged_at);
        else
            status = eb__fail(err, EB_ERR_NONFINITE,
                              "training diverged: the weights overflowed; X holds values too large for float32 "
                              "arithmetic, or learning_rate is too high");
    }
    if (status != EB_OK && backup != NULL) {
        memcpy(t->values, backup, t->count * TRAINABLE_ARRAYS * sizeof(float));
        t->steps = steps_before;
        state->rng = rng_before;
        state->history.length = history_before;
    }
    eb__free(mem, backup);
    return status;
}
