/*
 * The pair learner (embetter's ContrastiveLearner): one re-embedding shared by
 * both sides of every pair, trained so that the cosine of the two embeddings
 * approaches the similarity the caller gives for the pair (mean squared
 * error over a minibatch, one Adam step per minibatch).
 *
 * Re-embeddings (params.layers), weights in this order:
 *   EB_PAIR_LINEAR:             e = x W + b;                 W (d x h), b (h).
 *   EB_PAIR_LINEAR_RELU_LINEAR: e = relu(x W1 + b1) W2 + b2;  W1 (d x h), b1 (h),
 *                               W2 (h x h), b2 (h): embetter 0.9's network.
 *
 * A minibatch goes through the layers EB_PAIR_SLICE pairs at a time: a slice
 * gathers its left rows, then its right rows, into one matrix, so each
 * product of the forward and backward pass is one GEMM for the whole slice,
 * and memory stays O(slice x (d + h)) plus an index per pair for the shuffle,
 * however many pairs share rows. The gradients of a batch's slices add up
 * before its one Adam step. Aligned and indexed pairs gather the same rows,
 * so they train to the same bits.
 */
#include "blas.h"
#include <limits.h>
#include <math.h>
#include <string.h>

#include "internal.h"
#include "testing.h"

/* PyTorch's cosine_similarity clamps each norm below at this value. */
static const double NORM_FLOOR = 1e-8;

/*
 * transform keeps the hidden layer of the two-layer re-embedding on the stack
 * (it allocates nothing): this many floats, 32 KiB, a block of rows by at
 * most TRANSFORM_BLOCK_UNITS hidden units at a time (wider layers go through
 * in several blocks of units, so any width fits).
 */
enum { TRANSFORM_SCRATCH_FLOATS = 8192, TRANSFORM_BLOCK_UNITS = 1024 };

/*
 * Element-wise loops run in blocks of EB_BLOCK plus a scalar tail, inside
 * non-inlined functions with restrict parameters: what GCC vectorises also
 * under -O2's cost model (the Python build).
 */
enum { EB_BLOCK = 16 };

typedef struct pl_shape {
    size_t d;        /* input columns */
    size_t h;        /* embedding width, also of the hidden layer */
    bool two_layers; /* EB_PAIR_LINEAR_RELU_LINEAR */
} pl_shape;

/* Views into a weight (or gradient) vector; w2 and b2 are NULL for one layer. */
typedef struct pl_layers {
    float *w1, *b1, *w2, *b2;
} pl_layers;

/* Buffers of one fit or gradient call, sized for one slice of pairs. */
typedef struct pl_workspace {
    size_t slice_pairs;   /* pairs per slice at most */
    uint32_t *order;      /* the pairs of an epoch, shuffled; NULL for one batch in the given order */
    uint32_t *rows;       /* row indices of one side of a slice */
    float *targets;       /* similarity of each pair of the slice */
    float *gathered;      /* 2 x slice_pairs rows of d: left rows, then right rows */
    float *hidden;        /* 2 x slice_pairs rows of h, after the ReLU (two layers only) */
    float *embed;         /* 2 x slice_pairs rows of h; then dLoss/d(hidden) (two layers) */
    float *embed_grad;    /* 2 x slice_pairs rows of h: dLoss/d(embedding) */
    float *column_sums;   /* h: a later slice's bias gradient, before it is added */
} pl_workspace;

static eb_finetuner_params default_params(void)
{
    eb_finetuner_params p;
    memset(&p, 0, sizeof p);
    p.kind = EB_KIND_PAIR_LEARNER;
    p.hidden_dim = 300;
    p.n_epochs = 1;
    p.learning_rate = 2e-5f;
    p.batch_size = 16;
    p.seed = 0;
    p.n_neg = 0;
    p.layers = EB_PAIR_LINEAR;
    p.on_epoch = NULL;
    p.callback_data = NULL;
    return p;
}

static eb_status check_params(const eb_finetuner_params *params, eb_error *err)
{
    if (params->layers != EB_PAIR_LINEAR && params->layers != EB_PAIR_LINEAR_RELU_LINEAR)
        return eb__fail(err, EB_ERR_INVALID_PARAM,
                        "layers is %d; it must be EB_PAIR_LINEAR (%d) or EB_PAIR_LINEAR_RELU_LINEAR (%d)",
                        (int)params->layers, (int)EB_PAIR_LINEAR, (int)EB_PAIR_LINEAR_RELU_LINEAR);
    return EB_OK;
}

static size_t output_width(const eb_finetuner_params *params, size_t n_features)
{
    return params->hidden_dim == EB_HIDDEN_DIM_AS_INPUT ? n_features : params->hidden_dim;
}

/* Weights of the re-embedding for d inputs and width h; false when the count overflows. */
static bool weight_count(bool two_layers, size_t d, size_t h, size_t *count)
{
    size_t first, second = 0;
    if (d == SIZE_MAX || !eb__mul_size(d + 1, h, &first))
        return false;
    if (two_layers && (h == SIZE_MAX || !eb__mul_size(h + 1, h, &second)))
        return false;
    if (second > SIZE_MAX - first)
        return false;
    *count = first + second;
    return true;
}

static pl_shape shape_of(const eb_finetuner *model, const eb_fit_state *state)
{
    pl_shape s = {state->n_features, state->out_dim, model->params.layers == EB_PAIR_LINEAR_RELU_LINEAR};
    return s;
}

static pl_layers layers_of(float *values, pl_shape s)
{
    pl_layers l = {values, values + s.d * s.h, NULL, NULL};
    if (s.two_layers) {
        l.w2 = l.b1 + s.h;
        l.b2 = l.w2 + s.h * s.h;
    }
    return l;
}

static eb_status new_state(const eb_finetuner *model, size_t n_features, size_t n_classes, eb_fit_state *state,
                           eb_error *err)
{
    memset(state, 0, sizeof *state);
    if (n_classes != 0)
        return eb__fail(err, EB_ERR_INVALID_PARAM, "n_classes is %zu; the pair learner has no classes", n_classes);
    size_t h = output_width(&model->params, n_features), count;
    bool two_layers = model->params.layers == EB_PAIR_LINEAR_RELU_LINEAR;
    /* CBLAS takes int dimensions. */
    if (n_features == 0 || n_features > (size_t)INT_MAX || h == 0 || h > (size_t)INT_MAX)
        return eb__fail(err, EB_ERR_TOO_LARGE, "%zu features and an output width of %zu cannot go through BLAS",
                        n_features, h);
    if (!weight_count(two_layers, n_features, h, &count))
        return eb__fail(err, EB_ERR_TOO_LARGE, "%zu features x %zu outputs is too many weights", n_features, h);
    eb_status status = eb__trainable_alloc(&state->weights, count, &model->core.mem);
    if (status != EB_OK)
        return eb__fail(err, status, "out of memory allocating %zu weights", count);
    state->n_features = n_features;
    state->n_classes = 0;
    state->out_dim = h;
    eb__rng_seed(&state->rng, model->params.seed);
    /* nn.Linear's initialisation, layer by layer: both its weights and bias within +-1/sqrt(its inputs). */
    size_t first = (n_features + 1) * h;
    eb__init_uniform(state->weights.values, first, n_features, &state->rng);
    if (two_layers)
        eb__init_uniform(state->weights.values + first, count - first, h, &state->rng);
    return EB_OK;
}

/* ---- the loss and its gradient over one slice -------------------------------- */

/* v = max(v, 0), keeping NaN (a comparison with NaN is false), so bad values stay visible. */
static EB_VECTOR_CLONES void relu_in_place(float *restrict v, size_t count)
{
    size_t i = 0;
    for (; i + EB_BLOCK <= count; i += EB_BLOCK) {
        for (size_t j = i; j < i + EB_BLOCK; j++)
            v[j] = v[j] < 0.0f ? 0.0f : v[j];
    }
    for (; i < count; i++)
        v[i] = v[i] < 0.0f ? 0.0f : v[i];
}

/* The ReLU's derivative from its output: delta is kept where the unit was active (PyTorch's 0 at exactly 0). */
static EB_VECTOR_CLONES void times_relu_slope(float *restrict delta, const float *restrict active, size_t count)
{
    size_t i = 0;
    for (; i + EB_BLOCK <= count; i += EB_BLOCK) {
        for (size_t j = i; j < i + EB_BLOCK; j++)
            delta[j] = active[j] > 0.0f ? delta[j] : 0.0f;
    }
    for (; i < count; i++)
        delta[i] = active[i] > 0.0f ? delta[i] : 0.0f;
}

/*
 * a.b, a.a and b.b in one pass, in double (squares of large float
 * embeddings overflow a float sum), each in EB_BLOCK partial sums added in a
 * fixed order at the end, so results stay deterministic.
 */
static EB_VECTOR_CLONES void pair_products(const float *restrict a, const float *restrict b, size_t h,
                                           double *restrict ab_aa_bb)
{
    double ab[EB_BLOCK] = {0.0}, aa[EB_BLOCK] = {0.0}, bb[EB_BLOCK] = {0.0};
    size_t c = 0;
    for (; c + EB_BLOCK <= h; c += EB_BLOCK) {
        for (size_t j = 0; j < EB_BLOCK; j++) {
            const double x = a[c + j], y = b[c + j];
            ab[j] += x * y;
            aa[j] += x * x;
            bb[j] += y * y;
        }
    }
    double sum_ab = 0.0, sum_aa = 0.0, sum_bb = 0.0;
    for (size_t j = 0; j < EB_BLOCK; j++) {
        sum_ab += ab[j];
        sum_aa += aa[j];
        sum_bb += bb[j];
    }
    for (; c < h; c++) {
        const double x = a[c], y = b[c];
        sum_ab += x * y;
        sum_aa += x * x;
        sum_bb += y * y;
    }
    ab_aa_bb[0] = sum_ab;
    ab_aa_bb[1] = sum_aa;
    ab_aa_bb[2] = sum_bb;
}

/*
 * ga = cross b - self_a a and gb = cross a - self_b b, in double: the factors
 * are 1/(|a||b|) and cos/|a|^2 scaled by the loss, which leave float's range
 * for embeddings of very large or small norm.
 */
static EB_VECTOR_CLONES void cosine_side_gradients(float *restrict ga, float *restrict gb, const float *restrict a,
                                                   const float *restrict b, size_t h, double cross, double self_a,
                                                   double self_b)
{
    size_t c = 0;
    for (; c + EB_BLOCK <= h; c += EB_BLOCK) {
        for (size_t j = c; j < c + EB_BLOCK; j++) {
            const double x = a[j], y = b[j];
            ga[j] = (float)(cross * y - self_a * x);
            gb[j] = (float)(cross * x - self_b * y);
        }
    }
    for (; c < h; c++) {
        const double x = a[c], y = b[c];
        ga[c] = (float)(cross * y - self_a * x);
        gb[c] = (float)(cross * x - self_b * y);
    }
}

/*
 * Pair p of a slice is (row p, row count + p) of embed. Writes
 * scale * (cos - target) * dcos/de of every row into embed_grad (scale is 2
 * over the batch's pairs: the derivative of the batch mean) and returns the
 * sum of the pairs' squared errors.
 */
static double cosine_loss_gradient(const float *embed, float *embed_grad, size_t count, size_t h,
                                   const float *targets, double scale)
{
    double loss_sum = 0.0;
    for (size_t p = 0; p < count; p++) {
        const float *a = embed + p * h, *b = embed + (count + p) * h;
        double sums[3];
        pair_products(a, b, h, sums);
        const double raw_a = sqrt(sums[1]), raw_b = sqrt(sums[2]);
        const double na = raw_a > NORM_FLOOR ? raw_a : NORM_FLOOR;
        const double nb = raw_b > NORM_FLOOR ? raw_b : NORM_FLOOR;
        const double cosine = sums[0] / (na * nb);
        const double diff = cosine - (double)targets[p];
        loss_sum += diff * diff;
        /* dcos/da = b / (|a||b|) - cos a / |a|^2; a clamped norm is a constant, with no second term. */
        const double coef = scale * diff;
        const double cross = coef / (na * nb);
        const double self_a = raw_a > NORM_FLOOR ? coef * cosine / (na * na) : 0.0;
        const double self_b = raw_b > NORM_FLOOR ? coef * cosine / (nb * nb) : 0.0;
        cosine_side_gradients(embed_grad + p * h, embed_grad + (count + p) * h, a, b, h, cross, self_a, self_b);
    }
    return loss_sum;
}

/* g = x^T delta, or g += x^T delta when a later slice of the batch adds to it. */
static void weight_gradient(eb_matrix x, const float *delta, size_t h, float *g, bool accumulate)
{
    if (!accumulate) {
        eb__small_transposed_product(x, delta, h, g);
        return;
    }
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)x.cols, (int)h, (int)x.rows, 1.0f, x.data,
                (int)x.stride, delta, (int)h, 1.0f, g, (int)h);
}

/* g = column sums of delta, or g += them (through scratch) for a later slice. */
static void bias_gradient(const float *delta, size_t rows, size_t h, float *g, bool accumulate, float *scratch)
{
    if (!accumulate) {
        eb__column_sums(delta, rows, h, h, g);
        return;
    }
    eb__column_sums(delta, rows, h, h, scratch);
    for (size_t c = 0; c < h; c++)
        g[c] += scratch[c];
}

/*
 * Forward and backward over the `count` pairs gathered in ws. The gradient of
 * the batch mean goes into grad (added to it when accumulate is set); returns
 * the sum of the pairs' squared errors.
 */
static double slice_gradient(pl_shape s, const float *values, float *grad, size_t count, double scale,
                             bool accumulate, pl_workspace *ws)
{
    const size_t rows = 2 * count;
    pl_layers w = layers_of((float *)values, s);
    pl_layers g = layers_of(grad, s);
    eb_matrix xg = {ws->gathered, rows, s.d, s.d};
    eb_mut_matrix embed_view = {ws->embed, rows, s.h, s.h};
    /* Minibatches multiply in src/small_gemm.c's kernels, skipping OpenBLAS's packing; larger slices in BLAS. */
    if (s.two_layers) {
        eb_mut_matrix hidden_view = {ws->hidden, rows, s.h, s.h};
        eb__small_affine(xg, w.w1, w.b1, hidden_view);
        relu_in_place(ws->hidden, rows * s.h);
        eb_matrix hidden_in = {ws->hidden, rows, s.h, s.h};
        eb__small_affine(hidden_in, w.w2, w.b2, embed_view);
    } else {
        eb__small_affine(xg, w.w1, w.b1, embed_view);
    }
    double loss_sum = cosine_loss_gradient(ws->embed, ws->embed_grad, count, s.h, ws->targets, scale);
    const float *delta = ws->embed_grad;
    if (s.two_layers) {
        eb_matrix hidden_in = {ws->hidden, rows, s.h, s.h};
        weight_gradient(hidden_in, ws->embed_grad, s.h, g.w2, accumulate);
        bias_gradient(ws->embed_grad, rows, s.h, g.b2, accumulate, ws->column_sums);
        /* The embeddings are spent: their buffer takes dLoss/d(hidden) = dLoss/de W2^T, masked by the ReLU. */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)rows, (int)s.h, (int)s.h, 1.0f, ws->embed_grad,
                    (int)s.h, w.w2, (int)s.h, 0.0f, ws->embed, (int)s.h);
        times_relu_slope(ws->embed, ws->hidden, rows * s.h);
        delta = ws->embed;
    }
    weight_gradient(xg, delta, s.h, g.w1, accumulate);
    bias_gradient(delta, rows, s.h, g.b1, accumulate, ws->column_sums);
    return loss_sum;
}

/* The pair at position i of the walk: order[i], or i itself without an order. */
static size_t pair_at(const uint32_t *order, size_t i)
{
    return order == NULL ? i : order[i];
}

/* Copy the rows and targets of pairs first .. first+count-1 of the walk into ws. */
static void gather_slice(const eb_pairs *pairs, const uint32_t *order, size_t first, size_t count,
                         pl_workspace *ws)
{
    const size_t d = pairs->left.cols;
    for (size_t p = 0; p < count; p++)
        ws->rows[p] = (uint32_t)eb__pair_left_row(pairs, pair_at(order, first + p));
    eb__gather_rows(pairs->left, ws->rows, count, ws->gathered);
    for (size_t p = 0; p < count; p++)
        ws->rows[p] = (uint32_t)eb__pair_right_row(pairs, pair_at(order, first + p));
    eb__gather_rows(pairs->right, ws->rows, count, ws->gathered + count * d);
    for (size_t p = 0; p < count; p++)
        ws->targets[p] = pairs->similarity[pair_at(order, first + p)];
}

/* Gradient of the mean loss of one minibatch (pairs first .. first+count-1 of the walk) into grad; returns the loss sum. */
static double batch_gradient(pl_shape s, const float *values, float *grad, const eb_pairs *pairs,
                             const uint32_t *order, size_t first, size_t count, pl_workspace *ws)
{
    const double scale = 2.0 / (double)count;
    double loss_sum = 0.0;
    for (size_t done = 0; done < count; done += ws->slice_pairs) {
        size_t size = count - done < ws->slice_pairs ? count - done : ws->slice_pairs;
        gather_slice(pairs, order, first + done, size, ws);
        loss_sum += slice_gradient(s, values, grad, size, scale, done > 0, ws);
    }
    return loss_sum;
}

/* ---- training ------------------------------------------------------------------ */

static void workspace_release(pl_workspace *ws, const eb_allocator *mem)
{
    eb__free(mem, ws->order);
    eb__free(mem, ws->rows);
    eb__free(mem, ws->targets);
    eb__free(mem, ws->gathered);
    eb__free(mem, ws->hidden);
    eb__free(mem, ws->embed);
    eb__free(mem, ws->embed_grad);
    eb__free(mem, ws->column_sums);
    memset(ws, 0, sizeof *ws);
}

/* Buffers for minibatches of batch pairs (an order of n_pairs entries when shuffling). */
static eb_status workspace_alloc(pl_workspace *ws, pl_shape s, size_t n_pairs, size_t batch, bool shuffled,
                                 const eb_allocator *mem, eb_error *err)
{
    memset(ws, 0, sizeof *ws);
    if (n_pairs > UINT32_MAX)
        return eb__fail(err, EB_ERR_TOO_LARGE, "%zu pairs is too many; at most %lu per call", n_pairs,
                        (unsigned long)UINT32_MAX);
    size_t slice = batch < EB_PAIR_SLICE ? batch : EB_PAIR_SLICE, rows = 2 * slice;
    ws->slice_pairs = slice;
    if (shuffled)
        ws->order = eb__calloc(mem, n_pairs, sizeof *ws->order);
    ws->rows = eb__calloc(mem, slice, sizeof *ws->rows);
    ws->targets = eb__calloc(mem, slice, sizeof *ws->targets);
    ws->gathered = eb__calloc(mem, rows, s.d * sizeof(float));
    if (s.two_layers)
        ws->hidden = eb__calloc(mem, rows, s.h * sizeof(float));
    ws->embed = eb__calloc(mem, rows, s.h * sizeof(float));
    ws->embed_grad = eb__calloc(mem, rows, s.h * sizeof(float));
    ws->column_sums = eb__calloc(mem, s.h, sizeof(float));
    if ((shuffled && ws->order == NULL) || ws->rows == NULL || ws->targets == NULL || ws->gathered == NULL ||
        (s.two_layers && ws->hidden == NULL) || ws->embed == NULL || ws->embed_grad == NULL ||
        ws->column_sums == NULL) {
        workspace_release(ws, mem);
        return eb__fail(err, EB_ERR_NOMEM, "out of memory allocating training buffers for %zu pairs of %zu columns",
                        slice, s.d);
    }
    return EB_OK;
}

typedef struct epoch_context {
    const eb_finetuner *model;
    eb_fit_state *state;
    const eb_pairs *pairs;
    size_t batch;
    pl_workspace *ws;
} epoch_context;

/* One pass over the pairs in minibatches; the epoch's loss is the mean of its batches' mean losses. */
static double run_epoch(void *opaque)
{
    epoch_context *c = opaque;
    eb_fit_state *state = c->state;
    pl_workspace *ws = c->ws;
    const size_t n = c->pairs->count;
    if (ws->order != NULL) {
        for (size_t i = 0; i < n; i++)
            ws->order[i] = (uint32_t)i;
        eb__rng_shuffle(&state->rng, ws->order, n);
    }
    pl_shape s = shape_of(c->model, state);
    eb_trainable *t = &state->weights;
    double loss_sum = 0.0;
    size_t batches = 0;
    for (size_t start = 0; start < n; start += c->batch) {
        size_t size = n - start < c->batch ? n - start : c->batch;
        loss_sum += batch_gradient(s, t->values, t->grad, c->pairs, ws->order, start, size, ws) / (double)size;
        eb__adam_step(t, c->model->params.learning_rate);
        batches++;
    }
    return loss_sum / (double)batches;
}

static eb_status train(const eb_finetuner *model, eb_fit_state *state, const void *data, size_t n_epochs,
                       eb_error *err)
{
    const eb_pairs *pairs = data;
    size_t n = pairs->count, batch = model->params.batch_size;
    if (n == 0)
        return eb__fail(err, EB_ERR_EMPTY_INPUT, "there are no pairs to train on");
    if (batch == 0 || batch > n)
        batch = n;
    pl_workspace ws;
    /* One batch of every pair in order needs no shuffling: the mean does not depend on the order. */
    eb_status status = workspace_alloc(&ws, shape_of(model, state), n, batch, batch < n, &model->core.mem, err);
    if (status != EB_OK)
        return status;
    epoch_context ctx = {model, state, pairs, batch, &ws};
    status = eb__train_model(model, state, n_epochs, run_epoch, &ctx, err);
    workspace_release(&ws, &model->core.mem);
    return status;
}

static eb_status fit_pairs(eb_finetuner *model, const eb_pairs *pairs, bool partial)
{
    return eb__fit_or_continue(model, pairs->left.cols, 0, partial, train, pairs);
}

/* ---- transform ----------------------------------------------------------------- */

/*
 * relu(x W1 + b1) W2 + b2 into out without allocating: the hidden layer goes
 * through a stack block of `rows_per_block` rows by `units` hidden units, and
 * out adds up each block's share of the second product. Up to
 * TRANSFORM_BLOCK_UNITS wide, a block holds whole hidden rows and each output
 * element is one BLAS product, as eb__affine computes it.
 */
static void two_layer_embed(pl_layers w, size_t h, eb_matrix x, eb_mut_matrix out)
{
    float scratch[TRANSFORM_SCRATCH_FLOATS];
    const size_t units = h < TRANSFORM_BLOCK_UNITS ? h : TRANSFORM_BLOCK_UNITS;
    const size_t rows_per_block = TRANSFORM_SCRATCH_FLOATS / units;
    for (size_t start = 0; start < x.rows; start += rows_per_block) {
        size_t rows = x.rows - start < rows_per_block ? x.rows - start : rows_per_block;
        const float *xr = x.data + start * x.stride;
        float *outr = out.data + start * out.stride;
        for (size_t r = 0; r < rows; r++)
            memcpy(outr + r * out.stride, w.b2, h * sizeof(float));
        for (size_t first = 0; first < h; first += units) {
            size_t width = h - first < units ? h - first : units;
            for (size_t r = 0; r < rows; r++)
                memcpy(scratch + r * width, w.b1 + first, width * sizeof(float));
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)rows, (int)width, (int)x.cols, 1.0f, xr,
                        (int)x.stride, w.w1 + first, (int)h, 1.0f, scratch, (int)width);
            relu_in_place(scratch, rows * width);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)rows, (int)h, (int)width, 1.0f, scratch,
                        (int)width, w.w2 + first * h, (int)h, 1.0f, outr, (int)out.stride);
        }
    }
}

static eb_status transform(const eb_finetuner *model, eb_matrix x, eb_mut_matrix out, eb_error *err)
{
    eb_status status = eb__check_transform_layout(&model->core, x, out, err);
    if (status != EB_OK)
        return status;
    const eb_fit_state *state = &model->core.state;
    pl_shape s = shape_of(model, state);
    pl_layers w = layers_of(state->weights.values, s);
    /*
     * Slices at fixed offsets from row 0 keep each row's products the same
     * however a caller splits X at multiples of the slice; X is scanned slice
     * by slice while it is in cache (the ReLU maps -Inf to 0, so the output
     * alone would not show every bad input).
     */
    const size_t slice_rows = EB_TRANSFORM_SLICE_ROWS;
    for (size_t start = 0; start < x.rows; start += slice_rows) {
        size_t count = x.rows - start < slice_rows ? x.rows - start : slice_rows;
        eb_matrix x_slice = {x.data + start * x.stride, count, x.cols, x.stride};
        eb_mut_matrix out_slice = {out.data + start * out.stride, count, out.cols, out.stride};
        status = eb__check_input_values(x_slice, "X", start, err);
        if (status != EB_OK)
            return status;
        if (s.two_layers)
            two_layer_embed(w, s.h, x_slice, out_slice);
        else
            eb__affine(x_slice, w.w1, w.b1, out_slice);
        eb_error ignored;
        if (eb__check_result(out_slice, &ignored) != EB_OK) {
            /* The rows before this slice are finite, so the first bad row found from row 0 is named by its place in X. */
            eb_mut_matrix so_far = {out.data, start + count, out.cols, out.stride};
            return eb__check_result(so_far, err);
        }
    }
    return EB_OK;
}

/* ---- the state a file may hold ------------------------------------------------- */

static eb_status check_state(const eb_finetuner *model, eb_error *err)
{
    const eb_fit_state *st = &model->core.state;
    if (!st->fitted)
        return EB_OK;
    bool two_layers = model->params.layers == EB_PAIR_LINEAR_RELU_LINEAR;
    size_t expected;
    if (st->n_features == 0 || st->n_features > (size_t)INT_MAX || st->n_classes != 0 ||
        st->out_dim != output_width(&model->params, st->n_features) || st->out_dim == 0 ||
        st->out_dim > (size_t)INT_MAX || !weight_count(two_layers, st->n_features, st->out_dim, &expected) ||
        expected != st->weights.count)
        return eb__fail(err, EB_ERR_FORMAT,
                        "saved model: shapes disagree (%zu features, %zu classes, width %zu, %zu weights for %s)",
                        st->n_features, st->n_classes, st->out_dim, st->weights.count,
                        two_layers ? "EB_PAIR_LINEAR_RELU_LINEAR" : "EB_PAIR_LINEAR");
    return EB_OK;
}

const eb_kind_ops eb__pair_learner_ops = {
    .kind = EB_KIND_PAIR_LEARNER,
    .default_params = default_params,
    .check_params = check_params,
    .output_width = output_width,
    .new_state = new_state,
    .fit_labelled = NULL,
    .fit_pairs = fit_pairs,
    .transform = transform,
    .check_state = check_state,
    .read_v1_params = NULL, /* version 1 files predate the pair learner */
};

/* ---- testing hooks ----------------------------------------------------------- */

eb_status eb__pair_learner_gradient(eb_finetuner *model, const eb_pairs *pairs, float *grad, double *mean_loss)
{
    if (model == NULL || pairs == NULL || grad == NULL || mean_loss == NULL)
        return EB_ERR_NULL_POINTER;
    if (model->ops != &eb__pair_learner_ops)
        return EB_ERR_WRONG_KIND;
    eb_error *err = &model->core.last_error;
    const eb_fit_state *state = &model->core.state;
    if (!state->fitted)
        return eb__fail(err, EB_ERR_NOT_FITTED, "the pair learner has no weights yet");
    eb_status status = eb__check_pairs(state, pairs, true, err);
    if (status != EB_OK)
        return status;
    pl_shape s = shape_of(model, state);
    pl_workspace ws;
    status = workspace_alloc(&ws, s, pairs->count, pairs->count, false, &model->core.mem, err);
    if (status != EB_OK)
        return status;
    *mean_loss = batch_gradient(s, state->weights.values, grad, pairs, NULL, 0, pairs->count, &ws) /
                 (double)pairs->count;
    workspace_release(&ws, &model->core.mem);
    return EB_OK;
}
