/*
 * FeedForwardFinetuner: X -> sigmoid(X W1 + b1) -> H W2 + b2 -> softmax
 * cross-entropy, trained with Adam. The hidden activations are the embedding.
 *
 * Weights live in one vector, in this order: W1 (d x h, row-major), b1 (h),
 * W2 (h x k), b2 (k). One vector means one Adam loop and one allocation.
 */
#include "blas.h"
#include <limits.h>
#include <math.h>
#include <string.h>

#include "internal.h"
#include "testing.h"

typedef struct ff_shape {
    size_t d, h, k;
} ff_shape;

typedef struct ff_layers {
    float *w1, *b1, *w2, *b2;
} ff_layers;

/* Buffers for one call of fit / partial_fit, sized for the largest batch. */
typedef struct ff_workspace {
    size_t batch_rows;
    uint32_t *order;   /* row permutation; NULL when training full-batch */
    float *gathered;   /* batch_rows x d copy of the batch's rows; NULL when full-batch */
    int32_t *labels;   /* labels of the batch's rows, in batch order */
    float *hidden;     /* batch_rows x h activations */
    float *scores;     /* batch_rows x k logits, then probabilities, then their gradient */
    float *delta;      /* batch_rows x h gradient at the hidden pre-activations */
} ff_workspace;

static ff_layers layers_of(float *values, ff_shape s)
{
    ff_layers l;
    l.w1 = values;
    l.b1 = l.w1 + s.d * s.h;
    l.w2 = l.b1 + s.h;
    l.b2 = l.w2 + s.h * s.k;
    return l;
}

static bool parameter_count(ff_shape s, size_t *count)
{
    size_t input_weights, output_weights;
    if (!eb__mul_size(s.d, s.h, &input_weights) || !eb__mul_size(s.h, s.k, &output_weights))
        return false;
    size_t total = input_weights;
    size_t parts[3] = {s.h, output_weights, s.k};
    for (int i = 0; i < 3; i++) {
        if (parts[i] > SIZE_MAX - total)
            return false;
        total += parts[i];
    }
    *count = total;
    return true;
}

static eb_finetuner_params default_params(void)
{
    eb_finetuner_params p;
    memset(&p, 0, sizeof p);
    p.kind = EB_KIND_FEEDFORWARD;
    p.hidden_dim = 50;
    p.n_epochs = 500;
    p.learning_rate = 0.01f;
    return p;
}

/* Everything feed-forward reads is checked by the shared checks. */
static eb_status check_params(const eb_finetuner_params *params, eb_error *err)
{
    (void)params;
    (void)err;
    return EB_OK;
}

static size_t output_width(const eb_finetuner_params *params, size_t n_features)
{
    (void)n_features;
    return params->hidden_dim;
}

static void workspace_release(ff_workspace *ws, const eb_allocator *mem)
{
    eb__free(mem, ws->order);
    eb__free(mem, ws->gathered);
    eb__free(mem, ws->labels);
    eb__free(mem, ws->hidden);
    eb__free(mem, ws->scores);
    eb__free(mem, ws->delta);
    memset(ws, 0, sizeof *ws);
}

static eb_status workspace_alloc(ff_workspace *ws, size_t n_rows, size_t batch_size, ff_shape s,
                                 const eb_allocator *mem)
{
    memset(ws, 0, sizeof *ws);
    ws->batch_rows = eb_training_step_rows(EB_KIND_FEEDFORWARD, n_rows, batch_size);
    size_t b = ws->batch_rows;
    if (b < n_rows) {
        ws->order = eb__calloc(mem, n_rows, sizeof *ws->order);
        ws->gathered = eb__calloc(mem, b, s.d * sizeof(float));
        if (ws->order == NULL || ws->gathered == NULL)
            goto nomem;
        for (size_t i = 0; i < n_rows; i++)
            ws->order[i] = (uint32_t)i;
    }
    ws->labels = eb__calloc(mem, b, sizeof *ws->labels);
    ws->hidden = eb__calloc(mem, b, s.h * sizeof(float));
    ws->scores = eb__calloc(mem, b, s.k * sizeof(float));
    ws->delta = eb__calloc(mem, b, s.h * sizeof(float));
    if (ws->labels == NULL || ws->hidden == NULL || ws->scores == NULL || ws->delta == NULL)
        goto nomem;
    return EB_OK;
nomem:
    workspace_release(ws, mem);
    return EB_ERR_NOMEM;
}

/*
 * Element-wise loops run in blocks of EB_BLOCK plus a scalar tail: a fixed
 * trip count vectorises even under GCC's -O2 cost model (the Python build),
 * and the blocks live in non-inlined functions with restrict parameters so no
 * aliasing check is needed.
 */
enum { EB_BLOCK = 16 };

static inline float sigmoid(float z)
{
    return 1.0f / (1.0f + eb__fast_expf(-z));
}

static EB_VECTOR_CLONES void sigmoid_in_place(float *restrict values, size_t count)
{
    size_t i = 0;
    for (; i + EB_BLOCK <= count; i += EB_BLOCK) {
        for (size_t j = i; j < i + EB_BLOCK; j++)
            values[j] = sigmoid(values[j]);
    }
    for (; i < count; i++)
        values[i] = sigmoid(values[i]);
}

/*
 * A float is NaN or infinite exactly when its exponent bits are all ones;
 * adding one to the exponent field then carries into the top bit, so OR-ing
 * those sums over a row (a reduction that vectorises) sets the top bit exactly
 * when some value is not finite.
 */
static inline uint32_t exponent_carry(float value)
{
    uint32_t bits;
    memcpy(&bits, &value, sizeof bits);
    return (bits & 0x7F800000u) + 0x00800000u;
}

/*
 * Replace a row of pre-activations by their sigmoids if every one is finite,
 * and say whether it was; a row that is not keeps its values for the error
 * message. The row is in L1 after the product, so the check is nearly free,
 * and it is what spares transform a separate pass over X (see there).
 */
static EB_VECTOR_CLONES bool sigmoid_row_if_finite(float *restrict values, size_t count)
{
    uint32_t carries = 0;
    size_t i = 0;
    for (; i + EB_BLOCK <= count; i += EB_BLOCK) {
        for (size_t j = i; j < i + EB_BLOCK; j++)
            carries |= exponent_carry(values[j]);
    }
    for (; i < count; i++)
        carries |= exponent_carry(values[i]);
    if ((carries & 0x80000000u) != 0)
        return false;
    for (i = 0; i + EB_BLOCK <= count; i += EB_BLOCK) {
        for (size_t j = i; j < i + EB_BLOCK; j++)
            values[j] = sigmoid(values[j]);
    }
    if (i < count) {
        /* The tail goes through one padded block too: scalar sigmoids cost as much as a dozen blocks. */
        float tail[EB_BLOCK] = {0};
        memcpy(tail, values + i, (count - i) * sizeof(float));
        for (size_t j = 0; j < EB_BLOCK; j++)
            tail[j] = sigmoid(tail[j]);
        memcpy(values + i, tail, (count - i) * sizeof(float));
    }
    return true;
}

/* delta *= s (1 - s): the sigmoid's derivative from its output s. */
static EB_VECTOR_CLONES void times_sigmoid_slope(float *restrict delta, const float *restrict s, size_t count)
{
    size_t i = 0;
    for (; i + EB_BLOCK <= count; i += EB_BLOCK) {
        for (size_t j = i; j < i + EB_BLOCK; j++)
            delta[j] *= s[j] * (1.0f - s[j]);
    }
    for (; i < count; i++)
        delta[i] *= s[i] * (1.0f - s[i]);
}

/*
 * Forward and backward over one batch (labels in ws->labels): the rows of xb,
 * or with `index` the b rows index[0 .. b) of xb read in place (see
 * eb__small_rows_in_place). Writes the gradient of the batch's mean loss into
 * grad; returns the sum of the rows' losses, so an epoch's mean weighs every
 * row alike.
 */
static double batch_gradient(ff_shape s, const float *values, float *grad, eb_matrix xb, const uint32_t *index,
                             size_t b, ff_workspace *ws)
{
    ff_layers w = layers_of((float *)values, s);
    ff_layers g = layers_of(grad, s);
    float *hidden = ws->hidden, *scores = ws->scores, *delta = ws->delta;
    const int32_t *labels = ws->labels;

    eb_mut_matrix hidden_view = {hidden, b, s.h, s.h};
    /* Minibatches multiply in src/small_gemm.c's kernels, skipping OpenBLAS's packing; larger batches in BLAS. */
    if (index != NULL)
        eb__small_affine_rows(xb, index, b, w.w1, w.b1, hidden_view, ws->gathered);
    else
        eb__small_affine(xb, w.w1, w.b1, hidden_view);
    sigmoid_in_place(hidden, b * s.h);
    eb_matrix hidden_in = {hidden, b, s.h, s.h};
    eb_mut_matrix scores_view = {scores, b, s.k, s.k};
    eb__affine(hidden_in, w.w2, w.b2, scores_view);

    /* Softmax cross-entropy; the scores become (p - onehot) / b in place. */
    double loss_sum = 0.0;
    const float inv_b = 1.0f / (float)b;
    for (size_t r = 0; r < b; r++) {
        float *z = scores + r * s.k;
        float top = z[0];
        for (size_t c = 1; c < s.k; c++)
            top = z[c] > top ? z[c] : top;
        size_t label = (size_t)labels[r];
        /* log-sum-exp form: stays finite when the true class's probability underflows. */
        double label_margin = (double)z[label] - (double)top;
        float total = 0.0f;
        for (size_t c = 0; c < s.k; c++) {
            z[c] = expf(z[c] - top);
            total += z[c];
        }
        loss_sum += log((double)total) - label_margin;
        float inv_total = 1.0f / total;
        for (size_t c = 0; c < s.k; c++)
            z[c] = z[c] * inv_total * inv_b;
        z[label] -= inv_b;
    }

    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)s.h, (int)s.k, (int)b, 1.0f, hidden, (int)s.h,
                scores, (int)s.k, 0.0f, g.w2, (int)s.k);
    eb__column_sums(scores, b, s.k, s.k, g.b2);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)b, (int)s.h, (int)s.k, 1.0f, scores, (int)s.k,
                w.w2, (int)s.k, 0.0f, delta, (int)s.h);
    times_sigmoid_slope(delta, hidden, b * s.h);
    if (index != NULL)
        eb__small_transposed_product_rows(xb, index, b, delta, s.h, g.w1, ws->gathered);
    else
        eb__small_transposed_product(xb, delta, s.h, g.w1);
    eb__column_sums(delta, b, s.h, s.h, g.b1);
    return loss_sum;
}

static ff_shape shape_of(const eb_finetuner *model, const eb_fit_state *state)
{
    ff_shape s = {state->n_features, model->params.hidden_dim, state->n_classes};
    return s;
}

/* One pass over every row; returns the epoch's mean loss. */
static double run_epoch(const eb_finetuner *model, eb_fit_state *state, eb_matrix x, const int32_t *y,
                        ff_workspace *ws)
{
    ff_shape s = shape_of(model, state);
    eb_trainable *t = &state->weights;
    double loss_sum = 0.0;
    if (ws->order == NULL) {
        memcpy(ws->labels, y, x.rows * sizeof *y);
        loss_sum = batch_gradient(s, t->values, t->grad, x, NULL, x.rows, ws);
        eb__adam_step(t, model->params.learning_rate);
        return loss_sum / (double)x.rows;
    }
    eb__rng_shuffle(&state->rng, ws->order, x.rows);
    for (size_t start = 0; start < x.rows; start += ws->batch_rows) {
        size_t count = x.rows - start < ws->batch_rows ? x.rows - start : ws->batch_rows;
        const uint32_t *rows = ws->order + start;
        for (size_t i = 0; i < count; i++)
            ws->labels[i] = y[rows[i]];
        /* Read where they lie: copying a minibatch's rows cost 7% of a fit on hashed n-gram counts. */
        if (eb__small_rows_in_place(count)) {
            loss_sum += batch_gradient(s, t->values, t->grad, x, rows, count, ws);
        } else {
            eb__gather_rows(x, rows, count, ws->gathered);
            eb_matrix batch = {ws->gathered, count, s.d, s.d};
            loss_sum += batch_gradient(s, t->values, t->grad, batch, NULL, count, ws);
        }
        eb__adam_step(t, model->params.learning_rate);
    }
    return loss_sum / (double)x.rows;
}

typedef struct epoch_context {
    const eb_finetuner *model;
    eb_fit_state *state;
    eb_matrix x;
    const int32_t *y;
    ff_workspace *ws;
} epoch_context;

static double epoch_thunk(void *opaque)
{
    epoch_context *c = opaque;
    return run_epoch(c->model, c->state, c->x, c->y, c->ws);
}

/* Run up to n_epochs on state (an eb__train_fn); memory is taken before the first epoch, so only NOMEM or divergence fail. */
static eb_status train(const eb_finetuner *model, eb_fit_state *state, const void *data, size_t n_epochs,
                       eb_error *err)
{
    const eb_labelled_rows *rows = data;
    eb_matrix x = rows->x;
    ff_workspace ws;
    const eb_allocator *mem = &model->core.mem;
    if (workspace_alloc(&ws, x.rows, model->params.batch_size, shape_of(model, state), mem) != EB_OK)
        return eb__fail(err, EB_ERR_NOMEM, "out of memory allocating training buffers for %zu rows", x.rows);
    epoch_context ctx = {model, state, x, rows->y, &ws};
    eb_status status = eb__train_model(model, state, n_epochs, epoch_thunk, &ctx, err);
    workspace_release(&ws, mem);
    return status;
}

/* A fresh, initialised state for x.cols features and n_classes classes. */
static eb_status new_state(const eb_finetuner *model, size_t n_features, size_t n_classes, eb_fit_state *state,
                           eb_error *err)
{
    memset(state, 0, sizeof *state);
    ff_shape s = {n_features, model->params.hidden_dim, n_classes};
    size_t count;
    if (n_classes > (size_t)INT_MAX || !parameter_count(s, &count))
        return eb__fail(err, EB_ERR_TOO_LARGE, "%zu features x %zu hidden x %zu classes is too many weights",
                        s.d, s.h, s.k);
    eb_status status = eb__trainable_alloc(&state->weights, count, &model->core.mem);
    if (status != EB_OK)
        return eb__fail(err, status, "out of memory allocating %zu weights", count);
    state->n_features = n_features;
    state->n_classes = n_classes;
    state->out_dim = s.h;
    eb__rng_seed(&state->rng, model->params.seed);
    ff_layers l = layers_of(state->weights.values, s);
    eb__init_uniform(l.w1, s.d * s.h, s.d, &state->rng);
    eb__init_uniform(l.b1, s.h, s.d, &state->rng);
    eb__init_uniform(l.w2, s.h * s.k, s.h, &state->rng);
    eb__init_uniform(l.b2, s.k, s.h, &state->rng);
    return EB_OK;
}

static eb_status fit_labelled(eb_finetuner *model, eb_matrix x, const int32_t *y, size_t n_classes, bool partial)
{
    eb_error *err = &model->core.last_error;
    eb_status status = eb__check_training_input(&model->core.state, x, y, n_classes, partial, err);
    if (status != EB_OK)
        return status;
    eb_labelled_rows rows = {x, y};
    return eb__fit_or_continue(model, x.cols, n_classes, partial, train, &rows);
}

static eb_status transform(const eb_finetuner *model, eb_matrix x, eb_mut_matrix out, eb_error *err)
{
    eb_status status = eb__check_transform_layout(&model->core, x, out, err);
    if (status != EB_OK)
        return status;
    const eb_fit_state *state = &model->core.state;
    ff_layers l = layers_of(state->weights.values, shape_of(model, state));
    /*
     * X is read once, by the product: a NaN or infinity in a row of X makes
     * every pre-activation of that row non-finite (NaN propagates, infinity
     * times a weight is infinite, or NaN when the weight is zero), so the check
     * of each row's pre-activations finds bad input as well as overflow, and a
     * separate scan of X (15% of transform's time) is not needed. Rows go in
     * slices small enough to stay in cache from the product to the sigmoid.
     */
    const size_t slice_rows = EB_TRANSFORM_SLICE_ROWS; /* 512 rows of 384 floats: 768 KiB, within a 1 MiB L2 */
    for (size_t start = 0; start < x.rows; start += slice_rows) {
        size_t count = x.rows - start < slice_rows ? x.rows - start : slice_rows;
        eb_matrix x_slice = {x.data + start * x.stride, count, x.cols, x.stride};
        eb_mut_matrix out_slice = {out.data + start * out.stride, count, out.cols, out.stride};
        eb__affine(x_slice, l.w1, l.b1, out_slice);
        for (size_t r = start; r < start + count; r++) {
            if (sigmoid_row_if_finite(out.data + r * out.stride, out.cols))
                continue;
            /* Rows before r are finite. A non-finite value in X is reported before an overflow, as elsewhere. */
            eb_matrix rest = {x.data + r * x.stride, x.rows - r, x.cols, x.stride};
            status = eb__check_input_values(rest, "X", r, err);
            if (status != EB_OK)
                return status;
            eb_mut_matrix overflowed = {out.data, r + 1, out.cols, out.stride};
            return eb__check_result(overflowed, err);
        }
    }
    return EB_OK;
}

/* The saved state must be exactly what fit would have built for these params. */
static eb_status check_state(const eb_finetuner *model, eb_error *err)
{
    const eb_fit_state *st = &model->core.state;
    if (!st->fitted)
        return EB_OK;
    ff_shape s = shape_of(model, st);
    size_t expected;
    if (st->n_features == 0 || st->n_features > (size_t)INT_MAX || st->n_classes == 0 ||
        st->n_classes > (size_t)INT_MAX || st->out_dim != s.h || !parameter_count(s, &expected) ||
        expected != st->weights.count)
        return eb__fail(err, EB_ERR_FORMAT,
                        "saved model: shapes disagree (%zu features, %zu classes, width %zu, hidden_dim %zu, %zu weights)",
                        st->n_features, st->n_classes, st->out_dim, s.h, st->weights.count);
    return EB_OK;
}

/* Version 1 files: hidden_dim, n_epochs, learning_rate, batch_size, seed. */
static eb_status read_v1_params(eb_reader *r, eb_finetuner_params *params, eb_error *err)
{
    if (!eb__read_size(r, &params->hidden_dim) || !eb__read_size(r, &params->n_epochs) ||
        !eb__read_f32(r, &params->learning_rate) || !eb__read_size(r, &params->batch_size) ||
        !eb__read_u64(r, &params->seed))
        return eb__fail(err, EB_ERR_FORMAT, "saved model: truncated params");
    return EB_OK;
}

const eb_kind_ops eb__feedforward_ops = {
    EB_KIND_FEEDFORWARD, default_params, check_params, output_width, new_state,
    fit_labelled,        NULL,           transform,    check_state,  read_v1_params,
};

/* ---- testing hooks --------------------------------------------------------- */

eb_status eb__feedforward_gradient(eb_finetuner *model, eb_matrix x, const int32_t *y, float *grad,
                                   double *mean_loss)
{
    if (eb__check_handle(model, NULL) != EB_OK || model->params.kind != EB_KIND_FEEDFORWARD)
        return EB_ERR_WRONG_KIND;
    eb_error *err = &model->core.last_error;
    eb_status status = eb__check_training_input(&model->core.state, x, y, 0, true, err);
    if (status != EB_OK)
        return status;
    ff_workspace ws;
    ff_shape s = shape_of(model, &model->core.state);
    if (workspace_alloc(&ws, x.rows, 0, s, &model->core.mem) != EB_OK)
        return EB_ERR_NOMEM;
    memcpy(ws.labels, y, x.rows * sizeof *y);
    *mean_loss = batch_gradient(s, model->core.state.weights.values, grad, x, NULL, x.rows, &ws) / (double)x.rows;
    workspace_release(&ws, &model->core.mem);
    return EB_OK;
}
