/*
 * ContrastiveFinetuner: one shared linear layer e = x W + b, trained so that
 * cos(e_i, e_j) approaches 1 for rows of the same label and 0 otherwise
 * (mean squared error over pairs, Adam).
 *
 * Pairs are index pairs into X. When a batch of pairs touches most rows, the
 * embeddings of all rows are computed once and the per-pair gradients are
 * scattered back onto rows, so an epoch costs two GEMMs over X however many
 * pairs it has. Small minibatches gather just their rows instead. Either way
 * memory is O(rows x width), never O(pairs x width).
 *
 * Weights: W (d x h, row-major), then b (h).
 */
#include "blas.h"
#include <limits.h>
#include <math.h>
#include <string.h>

#include "internal.h"
#include "testing.h"

/* PyTorch's cosine_similarity clamps each norm below at this value. */
static const float NORM_FLOOR = 1e-8f;

struct eb_contrastive {
    eb_model_core core; /* first, so a model pointer is also a core pointer */
    eb_contrastive_params params;
};

typedef struct cl_pair {
    uint32_t left;
    uint32_t right;
    float target;
} cl_pair;

/* Buffers for one call of fit / partial_fit. */
typedef struct cl_workspace {
    size_t n_rows;
    uint32_t *by_label;    /* row indices sorted by label, stable */
    uint32_t *run_start;   /* per row: where its label's run starts in by_label */
    uint32_t *run_length;  /* per row: how many rows share its label */
    size_t distinct_labels;
    cl_pair *pairs;        /* room for n_rows * (1 + n_neg) pairs */
    size_t batch_pairs;    /* pairs per minibatch */
    bool gather;           /* minibatches gather their rows (else they use all of X) */
    float *gathered;       /* 2 * batch_pairs x d when gathering */
    cl_pair *local_pairs;  /* batch pairs re-indexed into gathered */
    float *embed;          /* batch matrix rows x h */
    float *embed_grad;     /* same shape: dLoss/d(embedding) */
    double *norms;         /* one per batch matrix row */
} cl_workspace;

eb_contrastive_params eb_contrastive_default_params(void)
{
    eb_contrastive_params p;
    memset(&p, 0, sizeof p);
    p.hidden_dim = EB_HIDDEN_DIM_AS_INPUT;
    p.n_neg = 3;
    p.n_epochs = 20;
    p.learning_rate = 0.001f;
    p.batch_size = 0;
    p.seed = 0;
    p.on_epoch = NULL;
    p.callback_data = NULL;
    return p;
}

eb_status eb_contrastive_check_params(const eb_contrastive_params *params, eb_error *err)
{
    eb__error_clear(err);
    if (params == NULL)
        return eb__fail(err, EB_ERR_NULL_POINTER, "params is NULL");
    if (params->hidden_dim == 0)
        return eb__fail(err, EB_ERR_INVALID_PARAM,
                        "hidden_dim is 0; it must be at least 1 (or EB_HIDDEN_DIM_AS_INPUT)");
    if (params->hidden_dim != EB_HIDDEN_DIM_AS_INPUT && params->hidden_dim > (size_t)INT_MAX)
        return eb__fail(err, EB_ERR_INVALID_PARAM, "hidden_dim is %zu; it must be at most %d", params->hidden_dim,
                        INT_MAX);
    if (params->n_neg == 0)
        return eb__fail(err, EB_ERR_INVALID_PARAM, "n_neg is 0; it must be at least 1");
    if (params->n_epochs == 0)
        return eb__fail(err, EB_ERR_INVALID_PARAM, "n_epochs is 0; it must be at least 1");
    if (!(params->learning_rate > 0.0f) || !isfinite(params->learning_rate))
        return eb__fail(err, EB_ERR_INVALID_PARAM, "learning_rate is %g; it must be finite and greater than 0",
                        (double)params->learning_rate);
    return EB_OK;
}

eb_status eb_contrastive_create(const eb_contrastive_params *params, const eb_allocator *mem,
                                eb_contrastive **out, eb_error *err)
{
    if (out == NULL)
        return eb__fail(err, EB_ERR_NULL_POINTER, "out is NULL");
    *out = NULL;
    eb_status status = eb_contrastive_check_params(params, err);
    if (status != EB_OK)
        return status;
    if (mem == NULL)
        mem = eb_default_allocator();
    if (mem->calloc == NULL || mem->free == NULL)
        return eb__fail(err, EB_ERR_NULL_POINTER, "the allocator's calloc or free is NULL");
    eb_contrastive *model = eb__calloc(mem, 1, sizeof *model);
    if (model == NULL)
        return eb__fail(err, EB_ERR_NOMEM, "out of memory creating the model");
    model->core.mem = *mem;
    model->params = *params;
    *out = model;
    return EB_OK;
}

void eb_contrastive_free(eb_contrastive *model)
{
    if (model == NULL)
        return;
    eb_allocator mem = model->core.mem;
    eb__fit_state_release(&model->core.state, &mem);
    eb__free(&mem, model);
}

static size_t width_for(const eb_contrastive_params *params, size_t n_features)
{
    return params->hidden_dim == EB_HIDDEN_DIM_AS_INPUT ? n_features : params->hidden_dim;
}

static void workspace_release(cl_workspace *ws, const eb_allocator *mem)
{
    eb__free(mem, ws->by_label);
    eb__free(mem, ws->run_start);
    eb__free(mem, ws->run_length);
    eb__free(mem, ws->pairs);
    eb__free(mem, ws->gathered);
    eb__free(mem, ws->local_pairs);
    eb__free(mem, ws->embed);
    eb__free(mem, ws->embed_grad);
    eb__free(mem, ws->norms);
    memset(ws, 0, sizeof *ws);
}

/* Batch buffers for up to batch_pairs pairs over n_rows rows of width d -> h. */
static eb_status alloc_batch_buffers(cl_workspace *ws, size_t n_rows, size_t batch_pairs, size_t d, size_t h,
                                     const eb_allocator *mem)
{
    ws->batch_pairs = batch_pairs;
    size_t matrix_rows = eb_training_step_rows(EB_KIND_CONTRASTIVE, n_rows, batch_pairs);
    ws->gather = matrix_rows < n_rows;
    if (ws->gather) {
        ws->gathered = eb__calloc(mem, matrix_rows, d * sizeof(float));
        ws->local_pairs = eb__calloc(mem, batch_pairs, sizeof *ws->local_pairs);
        if (ws->gathered == NULL || ws->local_pairs == NULL)
            return EB_ERR_NOMEM;
    }
    ws->embed = eb__calloc(mem, matrix_rows, h * sizeof(float));
    ws->embed_grad = eb__calloc(mem, matrix_rows, h * sizeof(float));
    ws->norms = eb__calloc(mem, matrix_rows, sizeof(double));
    if (ws->embed == NULL || ws->embed_grad == NULL || ws->norms == NULL)
        return EB_ERR_NOMEM;
    return EB_OK;
}

/* Stable bottom-up merge sort of row indices by label. */
static void sort_rows_by_label(uint32_t *rows, uint32_t *scratch, size_t n, const int32_t *y)
{
    uint32_t *src = rows, *dst = scratch;
    for (size_t width = 1; width < n; width *= 2) {
        for (size_t lo = 0; lo < n; lo += 2 * width) {
            size_t mid = lo + width < n ? lo + width : n;
            size_t hi = lo + 2 * width < n ? lo + 2 * width : n;
            size_t a = lo, b = mid, out = lo;
            while (a < mid && b < hi)
                dst[out++] = y[src[b]] < y[src[a]] ? src[b++] : src[a++];
            while (a < mid)
                dst[out++] = src[a++];
            while (b < hi)
                dst[out++] = src[b++];
        }
        uint32_t *swap = src;
        src = dst;
        dst = swap;
    }
    if (src != rows)
        memcpy(rows, src, n * sizeof *rows);
}

/* Sort rows by label and note, for every row, its label's run: what pair sampling needs. */
static void index_labels(cl_workspace *ws, const int32_t *y)
{
    size_t n = ws->n_rows;
    for (size_t i = 0; i < n; i++)
        ws->by_label[i] = (uint32_t)i;
    /* run_length doubles as the sort's scratch space; it is filled in afterwards. */
    sort_rows_by_label(ws->by_label, ws->run_length, n, y);
    ws->distinct_labels = 0;
    for (size_t start = 0; start < n;) {
        size_t end = start + 1;
        while (end < n && y[ws->by_label[end]] == y[ws->by_label[start]])
            end++;
        for (size_t i = start; i < end; i++) {
            ws->run_start[ws->by_label[i]] = (uint32_t)start;
            ws->run_length[ws->by_label[i]] = (uint32_t)(end - start);
        }
        ws->distinct_labels++;
        start = end;
    }
}

static eb_status workspace_alloc(cl_workspace *ws, const eb_contrastive *model, eb_matrix x, const int32_t *y,
                                 size_t h, eb_error *err)
{
    const eb_allocator *mem = &model->core.mem;
    size_t n = x.rows;
    memset(ws, 0, sizeof *ws);
    ws->n_rows = n;
    size_t pairs_per_row = model->params.n_neg + 1, max_pairs;
    if (n > UINT32_MAX || pairs_per_row == 0 || !eb__mul_size(n, pairs_per_row, &max_pairs) ||
        max_pairs > SIZE_MAX / sizeof(cl_pair))
        return eb__fail(err, EB_ERR_TOO_LARGE, "%zu rows x %zu pairs per row is too many pairs", n, pairs_per_row);
    size_t batch = model->params.batch_size;
    if (batch == 0 || batch > max_pairs)
        batch = max_pairs;
    ws->by_label = eb__calloc(mem, n, sizeof *ws->by_label);
    ws->run_start = eb__calloc(mem, n, sizeof *ws->run_start);
    ws->run_length = eb__calloc(mem, n, sizeof *ws->run_length);
    ws->pairs = eb__calloc(mem, max_pairs, sizeof *ws->pairs);
    if (ws->by_label == NULL || ws->run_start == NULL || ws->run_length == NULL || ws->pairs == NULL ||
        alloc_batch_buffers(ws, n, batch, x.cols, h, mem) != EB_OK) {
        workspace_release(ws, mem);
        return eb__fail(err, EB_ERR_NOMEM, "out of memory allocating training buffers for %zu rows", n);
    }
    index_labels(ws, y);
    return EB_OK;
}

/* This epoch's pairs: per row one positive and, when other labels are present, n_neg negatives. */
static size_t draw_pairs(cl_workspace *ws, size_t n_neg, eb_rng *rng)
{
    size_t count = 0, n = ws->n_rows;
    for (size_t i = 0; i < n; i++) {
        size_t start = ws->run_start[i], length = ws->run_length[i];
        uint32_t positive = (uint32_t)i;
        if (length >= 2) {
            /* Uniform over the run without i: draw from length-1 slots, i's slot maps to the last. */
            positive = ws->by_label[start + eb__rng_below(rng, length - 1)];
            if (positive == i)
                positive = ws->by_label[start + length - 1];
        }
        ws->pairs[count++] = (cl_pair){(uint32_t)i, positive, 1.0f};
        size_t others = n - length;
        for (size_t k = 0; others > 0 && k < n_neg; k++) {
            size_t r = (size_t)eb__rng_below(rng, others);
            uint32_t negative = ws->by_label[r < start ? r : r + length];
            ws->pairs[count++] = (cl_pair){(uint32_t)i, negative, 0.0f};
        }
    }
    return count;
}

static void shuffle_pairs(cl_pair *pairs, size_t count, eb_rng *rng)
{
    for (size_t i = count; i > 1; i--) {
        size_t j = (size_t)eb__rng_below(rng, i);
        cl_pair tmp = pairs[i - 1];
        pairs[i - 1] = pairs[j];
        pairs[j] = tmp;
    }
}

/*
 * Element-wise loops run in blocks of EB_BLOCK plus a scalar tail, inside
 * non-inlined functions with restrict parameters: a fixed trip count with no
 * possible aliasing is what GCC vectorises also under -O2's cost model (the
 * Python build).
 */
enum { EB_BLOCK = 16 };

/*
 * Sums in double: squares of large float embeddings would overflow a float
 * sum. EB_BLOCK partial sums (one per lane) are added at the end, a fixed
 * order, so results stay deterministic.
 */
static EB_VECTOR_CLONES double dot_of(const float *restrict a, const float *restrict b, size_t h)
{
    double lanes[EB_BLOCK] = {0.0};
    size_t c = 0;
    for (; c + EB_BLOCK <= h; c += EB_BLOCK) {
        for (size_t j = 0; j < EB_BLOCK; j++)
            lanes[j] += (double)a[c + j] * (double)b[c + j];
    }
    double sum = 0.0;
    for (size_t j = 0; j < EB_BLOCK; j++)
        sum += lanes[j];
    for (; c < h; c++)
        sum += (double)a[c] * (double)b[c];
    return sum;
}

static double norm_of(const float *v, size_t h)
{
    return sqrt(dot_of(v, v, h));
}

/* The cosine's gradient onto rows a and b of a pair of two different rows (see pair_gradient). */
static EB_VECTOR_CLONES void add_pair_gradient(float *restrict ga, float *restrict gb, const float *restrict a,
                                               const float *restrict b, size_t h, float unit_a, float unit_b,
                                               float step_a, float step_b, float self_a, float self_b)
{
    size_t c = 0;
    for (; c + EB_BLOCK <= h; c += EB_BLOCK) {
        for (size_t j = c; j < c + EB_BLOCK; j++) {
            const float ac = a[j] * unit_a, bc = b[j] * unit_b;
            ga[j] += step_a * (bc - self_a * ac);
            gb[j] += step_b * (ac - self_b * bc);
        }
    }
    for (; c < h; c++) {
        const float ac = a[c] * unit_a, bc = b[c] * unit_b;
        ga[c] += step_a * (bc - self_a * ac);
        gb[c] += step_b * (ac - self_b * bc);
    }
}

/* The same for a row paired with itself: both updates land on one row, in the same order. */
static EB_VECTOR_CLONES void add_self_pair_gradient(float *restrict g, const float *restrict a, size_t h,
                                                    float unit_a, float unit_b, float step_a, float step_b,
                                                    float self_a, float self_b)
{
    size_t c = 0;
    for (; c + EB_BLOCK <= h; c += EB_BLOCK) {
        for (size_t j = c; j < c + EB_BLOCK; j++) {
            const float ac = a[j] * unit_a, bc = a[j] * unit_b;
            g[j] = (g[j] + step_a * (bc - self_a * ac)) + step_b * (ac - self_b * bc);
        }
    }
    for (; c < h; c++) {
        const float ac = a[c] * unit_a, bc = a[c] * unit_b;
        g[c] = (g[c] + step_a * (bc - self_a * ac)) + step_b * (ac - self_b * bc);
    }
}

/*
 * Gradient of the mean pair loss over `count` pairs indexing rows of xb.
 * Buffers embed, embed_grad and norms must have xb.rows rows. Returns the sum
 * of the pairs' losses.
 */
static double pair_gradient(const float *values, float *grad, size_t h, eb_matrix xb, const cl_pair *pairs,
                            size_t count, float *embed, float *embed_grad, double *norms)
{
    const size_t d = xb.cols, rows = xb.rows;
    const float *w = values, *bias = values + d * h;
    eb_mut_matrix embed_view = {embed, rows, h, h};
    /* src/small_gemm.c: sparse rows (hashed n-grams) skip their zeros; dense minibatches skip OpenBLAS's packing. */
    eb__small_affine(xb, w, bias, embed_view);
    for (size_t r = 0; r < rows; r++)
        norms[r] = norm_of(embed + r * h, h);
    memset(embed_grad, 0, rows * h * sizeof(float));

    /* Per-pair scalars in double: products of two large norms overflow a float. */
    double loss_sum = 0.0;
    const double scale = 2.0 / (double)count;
    for (size_t p = 0; p < count; p++) {
        const size_t i = pairs[p].left, j = pairs[p].right;
        const float *a = embed + i * h, *b = embed + j * h;
        const double na = norms[i] > NORM_FLOOR ? norms[i] : NORM_FLOOR;
        const double nb = norms[j] > NORM_FLOOR ? norms[j] : NORM_FLOOR;
        const double cosine = dot_of(a, b, h) / (na * nb);
        const double diff = cosine - pairs[p].target;
        loss_sum += diff * diff;
        const double coef = scale * diff;
        /*
         * d cos / d a = (b/|b| - cos a/|a|) / |a|. Working on unit vectors keeps
         * every float factor near 1: 1/(|a||b|) alone underflows for large rows.
         * A clamped norm is constant, so it contributes no self term.
         */
        const float unit_a = (float)(1.0 / na), unit_b = (float)(1.0 / nb);
        const float step_a = (float)(coef / na), step_b = (float)(coef / nb);
        const float self_a = norms[i] > NORM_FLOOR ? (float)cosine : 0.0f;
        const float self_b = norms[j] > NORM_FLOOR ? (float)cosine : 0.0f;
        /* When i == j both updates land on one row, which is the correct total. */
        if (i != j)
            add_pair_gradient(embed_grad + i * h, embed_grad + j * h, a, b, h, unit_a, unit_b, step_a, step_b,
                              self_a, self_b);
        else
            add_self_pair_gradient(embed_grad + i * h, a, h, unit_a, unit_b, step_a, step_b, self_a, self_b);
    }
    eb__small_transposed_product(xb, embed_grad, h, grad);
    eb__column_sums(embed_grad, rows, h, grad + d * h);
    return loss_sum;
}

/* Gradient of one batch of pairs, gathering its rows when that is cheaper. */
static double batch_gradient(const eb_fit_state *state, cl_workspace *ws, eb_matrix x, const cl_pair *pairs,
                             size_t count)
{
    const eb_trainable *t = &state->weights;
    const size_t h = state->out_dim;
    if (!ws->gather)
        return pair_gradient(t->values, t->grad, h, x, pairs, count, ws->embed, ws->embed_grad, ws->norms);
    for (size_t p = 0; p < count; p++) {
        memcpy(ws->gathered + p * x.cols, x.data + (size_t)pairs[p].left * x.stride, x.cols * sizeof(float));
        memcpy(ws->gathered + (count + p) * x.cols, x.data + (size_t)pairs[p].right * x.stride,
               x.cols * sizeof(float));
        ws->local_pairs[p] = (cl_pair){(uint32_t)p, (uint32_t)(count + p), pairs[p].target};
    }
    eb_matrix batch = {ws->gathered, 2 * count, x.cols, x.cols};
    return pair_gradient(t->values, t->grad, h, batch, ws->local_pairs, count, ws->embed, ws->embed_grad,
                         ws->norms);
}

typedef struct epoch_context {
    const eb_contrastive *model;
    eb_fit_state *state;
    eb_matrix x;
    cl_workspace *ws;
} epoch_context;

static double run_epoch(void *opaque)
{
    epoch_context *c = opaque;
    cl_workspace *ws = c->ws;
    eb_fit_state *state = c->state;
    size_t count = draw_pairs(ws, c->model->params.n_neg, &state->rng);
    bool minibatches = ws->batch_pairs < count;
    if (minibatches)
        shuffle_pairs(ws->pairs, count, &state->rng);
    double loss_sum = 0.0;
    for (size_t start = 0; start < count; start += ws->batch_pairs) {
        size_t size = count - start < ws->batch_pairs ? count - start : ws->batch_pairs;
        loss_sum += batch_gradient(state, ws, c->x, ws->pairs + start, size);
        eb__adam_step(&state->weights, c->model->params.learning_rate);
    }
    return loss_sum / (double)count;
}

static eb_status new_state(const eb_contrastive *model, size_t n_features, size_t n_classes, eb_fit_state *state,
                           eb_error *err)
{
    memset(state, 0, sizeof *state);
    size_t h = width_for(&model->params, n_features), weights;
    if (!eb__mul_size(n_features + 1, h, &weights))
        return eb__fail(err, EB_ERR_TOO_LARGE, "%zu features x %zu outputs is too many weights", n_features, h);
    eb_status status = eb__trainable_alloc(&state->weights, weights, &model->core.mem);
    if (status != EB_OK)
        return eb__fail(err, status, "out of memory allocating %zu weights", weights);
    state->n_features = n_features;
    state->n_classes = n_classes;
    state->out_dim = h;
    eb__rng_seed(&state->rng, model->params.seed);
    eb__init_uniform(state->weights.values, weights, n_features, &state->rng);
    return EB_OK;
}

/* Train `state` for n_epochs; a fresh state must be fully set up. */
static eb_status train(const eb_contrastive *model, eb_fit_state *state, eb_matrix x, cl_workspace *ws,
                       size_t n_epochs, eb_error *err)
{
    epoch_context ctx = {model, state, x, ws};
    return eb__train_epochs(state, n_epochs, model->params.on_epoch, model->params.callback_data, run_epoch, &ctx,
                            state == &model->core.state, &model->core.mem, err);
}

static eb_status fit_common(eb_contrastive *model, eb_matrix x, const int32_t *y, size_t n_classes, bool partial)
{
    if (model == NULL)
        return EB_ERR_NULL_POINTER;
    eb_error *err = &model->core.last_error;
    eb__error_clear(err);
    eb_status status = eb__check_training_input(&model->core.state, x, y, n_classes, partial, err);
    if (status != EB_OK)
        return status;
    bool continuing = partial && model->core.state.fitted;
    size_t h = continuing ? model->core.state.out_dim : width_for(&model->params, x.cols);
    if (h > (size_t)INT_MAX)
        return eb__fail(err, EB_ERR_TOO_LARGE, "an output width of %zu is too large", h);
    cl_workspace ws;
    status = workspace_alloc(&ws, model, x, y, h, err);
    if (status != EB_OK)
        return status;
    if (!continuing && ws.distinct_labels < 2) {
        workspace_release(&ws, &model->core.mem);
        return eb__fail(err, EB_ERR_TOO_FEW_CLASSES,
                        "y holds a single label (%d); the first fit needs at least two distinct labels", (int)y[0]);
    }
    if (continuing) {
        status = train(model, &model->core.state, x, &ws, 1, err);
    } else {
        eb_fit_state fresh;
        status = new_state(model, x.cols, n_classes, &fresh, err);
        if (status == EB_OK)
            status = train(model, &fresh, x, &ws, partial ? 1 : model->params.n_epochs, err);
        if (status == EB_OK) {
            fresh.fitted = true;
            eb__fit_state_release(&model->core.state, &model->core.mem);
            model->core.state = fresh;
        } else {
            eb__fit_state_release(&fresh, &model->core.mem);
        }
    }
    workspace_release(&ws, &model->core.mem);
    return status;
}

eb_status eb_contrastive_fit(eb_contrastive *model, eb_matrix x, const int32_t *y, size_t n_classes)
{
    return fit_common(model, x, y, n_classes, false);
}

eb_status eb_contrastive_partial_fit(eb_contrastive *model, eb_matrix x, const int32_t *y, size_t n_classes)
{
    return fit_common(model, x, y, n_classes, true);
}

eb_status eb_contrastive_transform(const eb_contrastive *model, eb_matrix x, eb_mut_matrix out, eb_error *err)
{
    if (model == NULL) {
        eb__error_clear(err);
        return eb__fail(err, EB_ERR_NULL_POINTER, "model is NULL");
    }
    eb_status status = eb__check_transform(&model->core, x, out, err);
    if (status != EB_OK)
        return status;
    const eb_fit_state *state = &model->core.state;
    eb__affine(x, state->weights.values, state->weights.values + state->n_features * state->out_dim, out);
    return eb__check_result(out, err);
}

const char *eb_contrastive_last_error(const eb_contrastive *model)
{
    return model == NULL ? "model is NULL" : model->core.last_error.message;
}

eb_contrastive_params eb_contrastive_get_params(const eb_contrastive *model)
{
    return model == NULL ? eb_contrastive_default_params() : model->params;
}

int eb_contrastive_is_fitted(const eb_contrastive *model)
{
    return model != NULL && model->core.state.fitted;
}

size_t eb_contrastive_n_features(const eb_contrastive *model)
{
    return model == NULL ? 0 : model->core.state.n_features;
}

size_t eb_contrastive_n_classes(const eb_contrastive *model)
{
    return model == NULL ? 0 : model->core.state.n_classes;
}

size_t eb_contrastive_output_dim(const eb_contrastive *model)
{
    if (model == NULL)
        return 0;
    if (model->core.state.fitted)
        return model->core.state.out_dim;
    return model->params.hidden_dim == EB_HIDDEN_DIM_AS_INPUT ? 0 : model->params.hidden_dim;
}

const double *eb_contrastive_loss_history(const eb_contrastive *model, size_t *length)
{
    size_t n = model == NULL ? 0 : model->core.state.history.length;
    if (length != NULL)
        *length = n;
    return n == 0 ? NULL : model->core.state.history.values;
}

/* ---- saving and loading ------------------------------------------------------- */

static void write_params(const void *opaque, eb_writer *w)
{
    const eb_contrastive *model = opaque;
    /* The sentinel is SIZE_MAX, which differs between 32- and 64-bit builds; the file always says UINT64_MAX. */
    eb__write_u64(w, model->params.hidden_dim == EB_HIDDEN_DIM_AS_INPUT ? UINT64_MAX
                                                                         : (uint64_t)model->params.hidden_dim);
    eb__write_u64(w, model->params.n_neg);
    eb__write_u64(w, model->params.n_epochs);
    eb__write_f32(w, model->params.learning_rate);
    eb__write_u64(w, model->params.batch_size);
    eb__write_u64(w, model->params.seed);
}

eb_status eb_contrastive_set_params(eb_contrastive *model, const eb_contrastive_params *params)
{
    if (model == NULL)
        return EB_ERR_NULL_POINTER;
    eb_error *err = &model->core.last_error;
    eb_status status = eb_contrastive_check_params(params, err);
    if (status != EB_OK)
        return status;
    if (model->core.state.fitted && params->hidden_dim != model->params.hidden_dim)
        return eb__fail(err, EB_ERR_INVALID_PARAM,
                        "hidden_dim cannot change once fitted (the weights have hidden_dim %zu); call fit instead",
                        model->params.hidden_dim);
    model->params = *params;
    return EB_OK;
}

void eb_contrastive_set_callback(eb_contrastive *model, eb_epoch_callback on_epoch, void *callback_data)
{
    if (model != NULL) {
        model->params.on_epoch = on_epoch;
        model->params.callback_data = callback_data;
    }
}

/* The saved state must be exactly what fit would have built for these params. */
static eb_status check_loaded_state(const void *opaque, eb_error *err)
{
    const eb_contrastive *model = opaque;
    const eb_fit_state *st = &model->core.state;
    if (!st->fitted)
        return EB_OK;
    size_t expected;
    if (st->n_features == 0 || st->n_features > (size_t)INT_MAX || st->n_classes < 2 ||
        st->out_dim != width_for(&model->params, st->n_features) || st->out_dim > (size_t)INT_MAX ||
        !eb__mul_size(st->n_features + 1, st->out_dim, &expected) || expected != st->weights.count)
        return eb__fail(err, EB_ERR_FORMAT,
                        "saved model: shapes disagree (%zu features, %zu classes, width %zu, %zu weights)",
                        st->n_features, st->n_classes, st->out_dim, st->weights.count);
    return EB_OK;
}

/* The params part of a saved model, checked, as a new unfitted model. */
static eb_status create_from_params(eb_reader *r, const eb_allocator *mem, void **out, eb_error *err)
{
    eb_contrastive_params params = eb_contrastive_default_params();
    uint64_t saved_hidden_dim;
    if (!eb__read_u64(r, &saved_hidden_dim))
        return eb__fail(err, EB_ERR_FORMAT, "saved model: truncated params");
    if (saved_hidden_dim != UINT64_MAX && saved_hidden_dim > (uint64_t)INT_MAX)
        return eb__fail(err, EB_ERR_FORMAT, "saved model: invalid params: hidden_dim is %llu; it must be at most %d",
                        (unsigned long long)saved_hidden_dim, INT_MAX);
    params.hidden_dim = saved_hidden_dim == UINT64_MAX ? EB_HIDDEN_DIM_AS_INPUT : (size_t)saved_hidden_dim;
    if (!eb__read_size(r, &params.n_neg) ||
        !eb__read_size(r, &params.n_epochs) ||
        !eb__read_f32(r, &params.learning_rate) || !eb__read_size(r, &params.batch_size) ||
        !eb__read_u64(r, &params.seed))
        return eb__fail(err, EB_ERR_FORMAT, "saved model: truncated params");
    eb_error detail;
    if (eb_contrastive_check_params(&params, &detail) != EB_OK)
        return eb__fail(err, EB_ERR_FORMAT, "saved model: invalid params: %s", detail.message);
    eb_contrastive *model;
    eb_status status = eb_contrastive_create(&params, mem, &model, err);
    if (status != EB_OK)
        return status;
    *out = model;
    return EB_OK;
}

static void release(void *model)
{
    eb_contrastive_free(model);
}

static const eb_model_codec CODEC = {EB_KIND_CONTRASTIVE, write_params, create_from_params, check_loaded_state,
                                     release};

eb_status eb_contrastive_load_from_buffer(const void *buffer, size_t size, const eb_allocator *mem,
                                          eb_contrastive **out, eb_error *err)
{
    void *model = NULL;
    eb_status status = eb__model_load_from_buffer(&CODEC, buffer, size, mem, out == NULL ? NULL : &model, err);
    if (out != NULL)
        *out = model;
    return status;
}

eb_status eb_contrastive_load(const char *path, const eb_allocator *mem, eb_contrastive **out, eb_error *err)
{
    void *model = NULL;
    eb_status status = eb__model_load(&CODEC, path, mem, out == NULL ? NULL : &model, err);
    if (out != NULL)
        *out = model;
    return status;
}

eb_status eb_contrastive_save_to_buffer(const eb_contrastive *model, void *buffer, size_t capacity,
                                        size_t *written, eb_error *err)
{
    return eb__model_save_to_buffer(&CODEC, model, buffer, capacity, written, err);
}

eb_status eb_contrastive_save(const eb_contrastive *model, const char *path, eb_error *err)
{
    return eb__model_save(&CODEC, model, path, err);
}

size_t eb_contrastive_saved_size(const eb_contrastive *model)
{
    return eb__model_saved_size(&CODEC, model);
}

/* ---- testing hooks --------------------------------------------------------- */

eb_status eb__contrastive_init_weights(eb_contrastive *model, size_t n_features, size_t n_classes)
{
    if (model == NULL || n_features == 0)
        return EB_ERR_INVALID_PARAM;
    eb_fit_state fresh;
    eb_status status = new_state(model, n_features, n_classes, &fresh, &model->core.last_error);
    if (status != EB_OK)
        return status;
    fresh.fitted = true;
    eb__fit_state_release(&model->core.state, &model->core.mem);
    model->core.state = fresh;
    return EB_OK;
}

float *eb__contrastive_weights(eb_contrastive *model, size_t *count)
{
    *count = model->core.state.weights.count;
    return model->core.state.weights.values;
}

eb_status eb__contrastive_gradient(eb_contrastive *model, eb_matrix x, const uint32_t *left,
                                   const uint32_t *right, const float *target, size_t n_pairs, float *grad,
                                   double *mean_loss)
{
    const eb_allocator *mem = &model->core.mem;
    size_t h = model->core.state.out_dim;
    eb_status status = EB_ERR_NOMEM;
    cl_pair *pairs = eb__calloc(mem, n_pairs, sizeof *pairs);
    float *embed = eb__calloc(mem, x.rows, h * sizeof(float));
    float *embed_grad = eb__calloc(mem, x.rows, h * sizeof(float));
    double *norms = eb__calloc(mem, x.rows, sizeof(double));
    if (pairs != NULL && embed != NULL && embed_grad != NULL && norms != NULL) {
        for (size_t p = 0; p < n_pairs; p++)
            pairs[p] = (cl_pair){left[p], right[p], target[p]};
        *mean_loss = pair_gradient(model->core.state.weights.values, grad, h, x, pairs, n_pairs, embed, embed_grad,
                                   norms) /
                     (double)n_pairs;
        status = EB_OK;
    }
    eb__free(mem, pairs);
    eb__free(mem, embed);
    eb__free(mem, embed_grad);
    eb__free(mem, norms);
    return status;
}
