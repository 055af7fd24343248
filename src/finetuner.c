/*
 * eb_finetuner: the one handle of every kind. This file checks handles,
 * kinds and the parameters all kinds share, keeps class names and metadata,
 * and hands the rest to the kind's ops (feedforward.c, contrastive.c,
 * pair_learner.c); saving and loading are in serialize.c.
 */
#include <limits.h>
#include <math.h>
#include <string.h>

#include "internal.h"
#include "testing.h"

const char *eb_finetuner_kind_name(eb_finetuner_kind kind)
{
    switch (kind) {
    case EB_KIND_FEEDFORWARD: return "feedforward";
    case EB_KIND_CONTRASTIVE: return "contrastive";
    case EB_KIND_PAIR_LEARNER: return "pair_learner";
    }
    return "unknown";
}

const eb_kind_ops *eb__kind_ops(eb_finetuner_kind kind)
{
    switch (kind) {
    case EB_KIND_FEEDFORWARD: return &eb__feedforward_ops;
    case EB_KIND_CONTRASTIVE: return &eb__contrastive_ops;
    case EB_KIND_PAIR_LEARNER: return &eb__pair_learner_ops;
    }
    return NULL;
}

eb_finetuner_params eb_finetuner_default_params(eb_finetuner_kind kind)
{
    const eb_kind_ops *ops = eb__kind_ops(kind);
    eb_finetuner_params params;
    memset(&params, 0, sizeof params);
    if (ops != NULL)
        params = ops->default_params();
    params.kind = kind;
    return params;
}

eb_status eb_finetuner_check_params(const eb_finetuner_params *params, eb_error *err)
{
    eb__error_clear(err);
    if (params == NULL)
        return eb__fail(err, EB_ERR_NULL_POINTER, "params is NULL");
    const eb_kind_ops *ops = eb__kind_ops(params->kind);
    if (ops == NULL)
        return eb__fail(err, EB_ERR_INVALID_PARAM, "kind is %d; it must be EB_KIND_FEEDFORWARD (%d), "
                        "EB_KIND_CONTRASTIVE (%d) or EB_KIND_PAIR_LEARNER (%d)",
                        (int)params->kind, EB_KIND_FEEDFORWARD, EB_KIND_CONTRASTIVE, EB_KIND_PAIR_LEARNER);
    bool as_input_allowed = params->kind != EB_KIND_FEEDFORWARD;
    if (params->hidden_dim == 0)
        return eb__fail(err, EB_ERR_INVALID_PARAM, "hidden_dim is 0; it must be at least 1");
    if (params->hidden_dim > (size_t)INT_MAX && !(as_input_allowed && params->hidden_dim == EB_HIDDEN_DIM_AS_INPUT))
        return eb__fail(err, EB_ERR_INVALID_PARAM, "hidden_dim is %zu; it must be at most %d%s", params->hidden_dim,
                        INT_MAX, as_input_allowed ? " (or EB_HIDDEN_DIM_AS_INPUT)" : "");
    if (params->n_epochs == 0)
        return eb__fail(err, EB_ERR_INVALID_PARAM, "n_epochs is 0; it must be at least 1");
    if (!(params->learning_rate > 0.0f) || !isfinite(params->learning_rate))
        return eb__fail(err, EB_ERR_INVALID_PARAM, "learning_rate is %g; it must be finite and greater than 0",
                        (double)params->learning_rate);
    /* A field of another kind that is set would be silently ignored: refuse it, naming the field. */
    if (params->kind != EB_KIND_CONTRASTIVE && params->n_neg != 0)
        return eb__fail(err, EB_ERR_INVALID_PARAM, "n_neg is %zu; n_neg applies to contrastive finetuners only "
                        "and must be 0 for a %s finetuner", params->n_neg, eb_finetuner_kind_name(params->kind));
    if (params->kind != EB_KIND_PAIR_LEARNER && params->layers != EB_PAIR_LINEAR)
        return eb__fail(err, EB_ERR_INVALID_PARAM, "layers is %d; layers applies to pair learners only and must "
                        "be EB_PAIR_LINEAR (0) for a %s finetuner", (int)params->layers,
                        eb_finetuner_kind_name(params->kind));
    return ops->check_params(params, err);
}

/* ---- handles ------------------------------------------------------------------ */

static bool is_live(const eb_finetuner *model)
{
    return model != NULL && model->magic == EB_FINETUNER_MAGIC;
}

eb_status eb__check_handle(const eb_finetuner *model, eb_error *err)
{
    if (model == NULL)
        return eb__fail(err, EB_ERR_NULL_POINTER, "model is NULL");
    if (model->magic != EB_FINETUNER_MAGIC)
        return eb__fail(err, EB_ERR_INVALID_HANDLE,
                        "model is not a live eb_finetuner (freed, or another pointer); nothing was done");
    return EB_OK;
}

eb_status eb__finetuner_new(const eb_finetuner_params *params, const eb_allocator *mem, eb_finetuner **out,
                            eb_error *err)
{
    if (mem == NULL)
        mem = eb_default_allocator();
    if (mem->calloc == NULL || mem->free == NULL)
        return eb__fail(err, EB_ERR_NULL_POINTER, "the allocator's calloc or free is NULL");
    eb_finetuner *model = eb__calloc(mem, 1, sizeof *model);
    if (model == NULL)
        return eb__fail(err, EB_ERR_NOMEM, "out of memory creating the finetuner");
    model->magic = EB_FINETUNER_MAGIC;
    model->ops = eb__kind_ops(params->kind);
    model->params = *params;
    model->core.mem = *mem;
    *out = model;
    return EB_OK;
}

eb_status eb_finetuner_create(const eb_finetuner_params *params, const eb_allocator *mem, eb_finetuner **out,
                              eb_error *err)
{
    eb__error_clear(err);
    if (out == NULL)
        return eb__fail(err, EB_ERR_NULL_POINTER, "out is NULL");
    *out = NULL;
    eb_status status = eb_finetuner_check_params(params, err);
    if (status != EB_OK)
        return status;
    return eb__finetuner_new(params, mem, out, err);
}

void eb_finetuner_free(eb_finetuner *model)
{
    if (!is_live(model))
        return;
    eb_allocator mem = model->core.mem;
    eb__fit_state_release(&model->core.state, &mem);
    eb__labels_release(&model->labels, &mem);
    eb__free(&mem, model->metadata);
    model->magic = 0;
    eb__free(&mem, model);
}

eb_finetuner_kind eb_finetuner_kind_of(const eb_finetuner *model)
{
    return is_live(model) ? model->params.kind : (eb_finetuner_kind)0;
}

/* ---- training ----------------------------------------------------------------- */

eb_status eb__fit_or_continue(eb_finetuner *model, size_t n_features, size_t n_classes, bool partial,
                              eb__train_fn train, const void *data)
{
    eb_error *err = &model->core.last_error;
    if (partial && model->core.state.fitted)
        return train(model, &model->core.state, data, 1, err);
    eb_fit_state fresh;
    eb_status status = model->ops->new_state(model, n_features, n_classes, &fresh, err);
    if (status == EB_OK)
        status = train(model, &fresh, data, partial ? 1 : model->params.n_epochs, err);
    if (status != EB_OK) {
        eb__fit_state_release(&fresh, &model->core.mem);
        return status;
    }
    fresh.fitted = true;
    eb__fit_state_release(&model->core.state, &model->core.mem);
    model->core.state = fresh;
    return EB_OK;
}

eb_status eb__train_model(const eb_finetuner *model, eb_fit_state *state, size_t n_epochs, eb__epoch_fn run_epoch,
                          void *ctx, eb_error *err)
{
    return eb__train_epochs(state, n_epochs, model->params.on_epoch, model->params.callback_data, run_epoch, ctx,
                            state == &model->core.state, &model->core.mem, err);
}

/* The checks in front of every training call: a live handle of a kind that trains this way. */
static eb_status begin_training(eb_finetuner *model, bool with_pairs)
{
    eb_status status = eb__check_handle(model, NULL);
    if (status != EB_OK)
        return status;
    eb_error *err = &model->core.last_error;
    eb__error_clear(err);
    bool has_pairs = model->ops->fit_pairs != NULL;
    if (with_pairs != has_pairs)
        return eb__fail(err, EB_ERR_WRONG_KIND, "a %s finetuner learns from %s; call eb_finetuner_%s instead",
                        eb_finetuner_kind_name(model->params.kind), has_pairs ? "pairs" : "rows with class labels",
                        has_pairs ? "fit_pairs or partial_fit_pairs" : "fit or partial_fit");
    return EB_OK;
}

static eb_status fit_labelled(eb_finetuner *model, eb_matrix x, const int32_t *y, size_t n_classes,
                              const eb_class_labels *names, bool partial)
{
    eb_status status = begin_training(model, false);
    if (status != EB_OK)
        return status;
    eb_error *err = &model->core.last_error;
    bool continuing = partial && model->core.state.fitted;
    if (continuing) {
        /* The names were fixed by the first call; later ones may only repeat them. */
        if (names != NULL && names->type != EB_LABELS_NONE && !eb__labels_equal(&model->labels, names))
            return eb__fail(err, EB_ERR_LABEL_OUT_OF_RANGE,
                            "names differ from the class names the first partial_fit fixed; pass NULL or the same");
        return model->ops->fit_labelled(model, x, y, n_classes, true);
    }
    eb_label_store fresh;
    status = eb__labels_copy(names, n_classes, &model->core.mem, &fresh, err);
    if (status != EB_OK)
        return status;
    status = model->ops->fit_labelled(model, x, y, n_classes, partial);
    if (status != EB_OK) {
        eb__labels_release(&fresh, &model->core.mem);
        return status;
    }
    eb__labels_release(&model->labels, &model->core.mem);
    model->labels = fresh;
    return EB_OK;
}

eb_status eb_finetuner_fit(eb_finetuner *model, eb_matrix x, const int32_t *y, size_t n_classes,
                           const eb_class_labels *names)
{
    return fit_labelled(model, x, y, n_classes, names, false);
}

eb_status eb_finetuner_partial_fit(eb_finetuner *model, eb_matrix x, const int32_t *y, size_t n_classes,
                                   const eb_class_labels *names)
{
    return fit_labelled(model, x, y, n_classes, names, true);
}

eb_pairs eb_pairs_aligned(eb_matrix x1, eb_matrix x2, const float *similarity)
{
    eb_pairs pairs;
    memset(&pairs, 0, sizeof pairs);
    pairs.left = x1;
    pairs.right = x2;
    pairs.count = x1.rows;
    pairs.similarity = similarity;
    return pairs;
}

eb_pairs eb_pairs_indexed(eb_matrix x, const uint32_t *left, const uint32_t *right, size_t count,
                          const float *similarity)
{
    eb_pairs pairs;
    memset(&pairs, 0, sizeof pairs);
    pairs.left = x;
    pairs.right = x;
    pairs.left_index = left;
    pairs.right_index = right;
    pairs.count = count;
    pairs.similarity = similarity;
    return pairs;
}

eb_status eb__check_pairs(const eb_fit_state *state, const eb_pairs *pairs, bool need_targets, eb_error *err)
{
    if (pairs->count == 0)
        return eb__fail(err, EB_ERR_EMPTY_INPUT, "there are 0 pairs");
    bool indexed = pairs->left_index != NULL;
    if (indexed != (pairs->right_index != NULL))
        return eb__fail(err, EB_ERR_NULL_POINTER, "%s is NULL but %s is not; give both index arrays or neither",
                        indexed ? "right_index" : "left_index", indexed ? "left_index" : "right_index");
    const char *left_name = indexed ? "X" : "X1", *right_name = indexed ? "X" : "X2";
    eb_status status = eb__check_input_layout(pairs->left, left_name, err);
    if (status == EB_OK && !indexed)
        status = eb__check_input_layout(pairs->right, right_name, err);
    if (status != EB_OK)
        return status;
    if (!indexed && (pairs->left.rows != pairs->right.rows || pairs->count != pairs->left.rows))
        return eb__fail(err, EB_ERR_SHAPE_MISMATCH,
                        "X1 has %zu rows and X2 %zu, for %zu pairs; aligned pairs need one row of each per pair",
                        pairs->left.rows, pairs->right.rows, pairs->count);
    if (!indexed && pairs->left.cols != pairs->right.cols)
        return eb__fail(err, EB_ERR_SHAPE_MISMATCH, "X1 has %zu columns and X2 %zu; both sides need the same width",
                        pairs->left.cols, pairs->right.cols);
    if (indexed && pairs->left.rows > UINT32_MAX)
        return eb__fail(err, EB_ERR_TOO_LARGE, "X has %zu rows; indexed pairs address at most 2^32 rows",
                        pairs->left.rows);
    if (state->fitted && pairs->left.cols != state->n_features)
        return eb__fail(err, EB_ERR_SHAPE_MISMATCH, "%s has %zu columns, the model was fitted on %zu", left_name,
                        pairs->left.cols, state->n_features);
    if (pairs->left.cols > (size_t)INT_MAX)
        return eb__fail(err, EB_ERR_TOO_LARGE, "%s has %zu columns; at most %d are supported", left_name,
                        pairs->left.cols, INT_MAX);
    for (size_t i = 0; indexed && i < pairs->count; i++) {
        if (pairs->left_index[i] >= pairs->left.rows || pairs->right_index[i] >= pairs->left.rows)
            return eb__fail(err, EB_ERR_SHAPE_MISMATCH, "pair %zu refers to row %u of X, which has %zu rows", i,
                            (unsigned)(pairs->left_index[i] >= pairs->left.rows ? pairs->left_index[i]
                                                                                : pairs->right_index[i]),
                            pairs->left.rows);
    }
    if (need_targets) {
        if (pairs->similarity == NULL)
            return eb__fail(err, EB_ERR_NULL_POINTER, "similarity is NULL; training needs one target per pair");
        for (size_t i = 0; i < pairs->count; i++) {
            float s = pairs->similarity[i];
            if (!(s >= 0.0f && s <= 1.0f))
                return eb__fail(err, isnan(s) ? EB_ERR_NONFINITE : EB_ERR_INVALID_PARAM,
                                "similarity[%zu] is %g; similarities must be in [0, 1]", i, (double)s);
        }
    }
    status = eb__check_input_values(pairs->left, left_name, 0, err);
    if (status == EB_OK && !indexed)
        status = eb__check_input_values(pairs->right, right_name, 0, err);
    return status;
}

static eb_status fit_pairs(eb_finetuner *model, eb_pairs pairs, bool partial)
{
    eb_status status = begin_training(model, true);
    if (status != EB_OK)
        return status;
    eb_error *err = &model->core.last_error;
    status = eb__check_pairs(&model->core.state, &pairs, true, err);
    if (status != EB_OK)
        return status;
    return model->ops->fit_pairs(model, &pairs, partial);
}

eb_status eb_finetuner_fit_pairs(eb_finetuner *model, eb_pairs pairs)
{
    return fit_pairs(model, pairs, false);
}

eb_status eb_finetuner_partial_fit_pairs(eb_finetuner *model, eb_pairs pairs)
{
    return fit_pairs(model, pairs, true);
}

/* ---- using a fitted finetuner --------------------------------------------------- */

eb_status eb_finetuner_transform(const eb_finetuner *model, eb_matrix x, eb_mut_matrix out, eb_error *err)
{
    eb__error_clear(err);
    eb_status status = eb__check_handle(model, err);
    if (status != EB_OK)
        return status;
    return model->ops->transform(model, x, out, err);
}

/* cos(a, b) with PyTorch's clamp of each norm at 1e-8, so a zero embedding has cosine 0. */
static float cosine(const float *a, const float *b, size_t h)
{
    double dot = 0.0, aa = 0.0, bb = 0.0;
    for (size_t i = 0; i < h; i++) {
        dot += (double)a[i] * b[i];
        aa += (double)a[i] * a[i];
        bb += (double)b[i] * b[i];
    }
    double floor = 1e-8;
    double na = sqrt(aa), nb = sqrt(bb);
    return (float)(dot / ((na > floor ? na : floor) * (nb > floor ? nb : floor)));
}

eb_status eb_finetuner_predict_pairs(const eb_finetuner *model, eb_pairs pairs, float *out, size_t capacity,
                                     eb_error *err)
{
    eb__error_clear(err);
    eb_status status = eb__check_handle(model, err);
    if (status != EB_OK)
        return status;
    const eb_fit_state *state = &model->core.state;
    if (!state->fitted)
        return eb__fail(err, EB_ERR_NOT_FITTED, "the model is not fitted yet; call fit or partial_fit first");
    if (out == NULL)
        return eb__fail(err, EB_ERR_NULL_POINTER, "out is NULL");
    status = eb__check_pairs(state, &pairs, false, err);
    if (status != EB_OK)
        return status;
    if (capacity < pairs.count)
        return eb__fail(err, EB_ERR_BUFFER_TOO_SMALL, "out holds %zu floats, there are %zu pairs", capacity,
                        pairs.count);
    const size_t d = state->n_features, h = state->out_dim, slice = EB_PAIR_SLICE;
    const eb_allocator *mem = &model->core.mem;
    size_t slice_rows = pairs.count < slice ? pairs.count : slice;
    /* Both sides of a slice of pairs, gathered into one matrix and re-embedded by one transform call. */
    float *gathered = eb__calloc(mem, 2 * slice_rows, d * sizeof(float));
    float *embedded = eb__calloc(mem, 2 * slice_rows, h * sizeof(float));
    uint32_t *rows = eb__calloc(mem, slice_rows, sizeof *rows);
    if (gathered == NULL || embedded == NULL || rows == NULL) {
        status = eb__fail(err, EB_ERR_NOMEM, "out of memory for %zu pairs of %zu columns", slice_rows, d);
    }
    for (size_t start = 0; status == EB_OK && start < pairs.count; start += slice) {
        size_t count = pairs.count - start < slice ? pairs.count - start : slice;
        for (size_t i = 0; i < count; i++)
            rows[i] = (uint32_t)eb__pair_left_row(&pairs, start + i);
        eb__gather_rows(pairs.left, rows, count, gathered);
        for (size_t i = 0; i < count; i++)
            rows[i] = (uint32_t)eb__pair_right_row(&pairs, start + i);
        eb__gather_rows(pairs.right, rows, count, gathered + count * d);
        eb_matrix both = {gathered, 2 * count, d, d};
        eb_mut_matrix result = {embedded, 2 * count, h, h};
        status = model->ops->transform(model, both, result, err);
        for (size_t i = 0; status == EB_OK && i < count; i++)
            out[start + i] = cosine(embedded + i * h, embedded + (count + i) * h, h);
    }
    eb__free(mem, gathered);
    eb__free(mem, embedded);
    eb__free(mem, rows);
    return status;
}

/* ---- accessors ----------------------------------------------------------------- */

const char *eb_finetuner_last_error(const eb_finetuner *model)
{
    if (model == NULL)
        return "";
    return is_live(model) ? model->core.last_error.message : "";
}

eb_finetuner_params eb_finetuner_get_params(const eb_finetuner *model)
{
    eb_finetuner_params params;
    memset(&params, 0, sizeof params);
    return is_live(model) ? model->params : params;
}

int eb_finetuner_is_fitted(const eb_finetuner *model)
{
    return is_live(model) && model->core.state.fitted;
}

size_t eb_finetuner_n_features(const eb_finetuner *model)
{
    return is_live(model) ? model->core.state.n_features : 0;
}

size_t eb_finetuner_n_classes(const eb_finetuner *model)
{
    return is_live(model) ? model->core.state.n_classes : 0;
}

size_t eb_finetuner_output_dim(const eb_finetuner *model)
{
    if (!is_live(model))
        return 0;
    if (model->core.state.fitted)
        return model->core.state.out_dim;
    return model->ops->output_width(&model->params, 0);
}

const double *eb_finetuner_loss_history(const eb_finetuner *model, size_t *length)
{
    size_t n = is_live(model) ? model->core.state.history.length : 0;
    if (length != NULL)
        *length = n;
    return n == 0 ? NULL : model->core.state.history.values;
}

eb_status eb_finetuner_set_params(eb_finetuner *model, const eb_finetuner_params *params)
{
    eb_status status = eb__check_handle(model, NULL);
    if (status != EB_OK)
        return status;
    eb_error *err = &model->core.last_error;
    status = eb_finetuner_check_params(params, err);
    if (status != EB_OK)
        return status;
    if (params->kind != model->params.kind)
        return eb__fail(err, EB_ERR_INVALID_PARAM, "kind is %s, the finetuner is %s; a handle keeps its kind",
                        eb_finetuner_kind_name(params->kind), eb_finetuner_kind_name(model->params.kind));
    if (model->core.state.fitted && params->hidden_dim != model->params.hidden_dim)
        return eb__fail(err, EB_ERR_INVALID_PARAM,
                        "hidden_dim cannot change once fitted (the weights have hidden_dim %zu); call fit instead",
                        model->params.hidden_dim);
    if (model->core.state.fitted && params->layers != model->params.layers)
        return eb__fail(err, EB_ERR_INVALID_PARAM,
                        "layers cannot change once fitted (the weights are for layers %d); call fit instead",
                        (int)model->params.layers);
    model->params = *params;
    return EB_OK;
}

eb_status eb_finetuner_set_callback(eb_finetuner *model, eb_epoch_callback on_epoch, void *callback_data)
{
    eb_status status = eb__check_handle(model, NULL);
    if (status != EB_OK)
        return status;
    model->params.on_epoch = on_epoch;
    model->params.callback_data = callback_data;
    return EB_OK;
}

eb_status eb_finetuner_set_threads(eb_finetuner *model, size_t n_threads)
{
    eb_status status = eb__check_handle(model, NULL);
    if (status != EB_OK)
        return status;
    eb_error *err = &model->core.last_error;
    eb__error_clear(err);
    if (n_threads > EB_FINETUNER_MAX_THREADS)
        return eb__fail(err, EB_ERR_INVALID_PARAM, "n_threads is %zu; at most %d (0 decides per call)", n_threads,
                        EB_FINETUNER_MAX_THREADS);
    model->threads = n_threads;
    return EB_OK;
}

size_t eb__training_threads(const eb_finetuner *model, size_t work_per_product)
{
    return eb__threads_for(model->threads, work_per_product, EB_FINETUNER_MIN_WORK_PER_THREAD,
                           EB_FINETUNER_MAX_THREADS);
}

eb_status eb_finetuner_set_class_labels(eb_finetuner *model, const eb_class_labels *labels)
{
    eb_status status = eb__check_handle(model, NULL);
    if (status != EB_OK)
        return status;
    eb_error *err = &model->core.last_error;
    eb__error_clear(err);
    if (labels == NULL)
        return eb__fail(err, EB_ERR_NULL_POINTER, "labels is NULL");
    if (model->ops->fit_pairs != NULL)
        return eb__fail(err, EB_ERR_WRONG_KIND, "a %s finetuner has no classes to name",
                        eb_finetuner_kind_name(model->params.kind));
    if (!model->core.state.fitted)
        return eb__fail(err, EB_ERR_NOT_FITTED,
                        "the finetuner is not fitted, so it has no classes yet; pass the names to fit");
    eb_label_store fresh;
    status = eb__labels_copy(labels, model->core.state.n_classes, &model->core.mem, &fresh, err);
    if (status != EB_OK)
        return status;
    eb__labels_release(&model->labels, &model->core.mem);
    model->labels = fresh;
    return EB_OK;
}

eb_status eb_finetuner_class_labels(const eb_finetuner *model, eb_class_labels *out)
{
    if (out != NULL)
        memset(out, 0, sizeof *out);
    eb_status status = eb__check_handle(model, NULL);
    if (status != EB_OK)
        return status;
    if (out == NULL)
        return EB_ERR_NULL_POINTER;
    *out = eb__labels_view(&model->labels);
    return EB_OK;
}

eb_status eb_finetuner_set_metadata(eb_finetuner *model, const void *data, size_t size)
{
    eb_status status = eb__check_handle(model, NULL);
    if (status != EB_OK)
        return status;
    eb_error *err = &model->core.last_error;
    eb__error_clear(err);
    if (size > EB_MAX_METADATA_BYTES)
        return eb__fail(err, EB_ERR_TOO_LARGE, "metadata of %zu bytes; at most %u are kept", size,
                        (unsigned)EB_MAX_METADATA_BYTES);
    if (size > 0 && data == NULL)
        return eb__fail(err, EB_ERR_NULL_POINTER, "data is NULL for %zu metadata bytes", size);
    uint8_t *copy = NULL;
    if (size > 0) {
        copy = eb__calloc(&model->core.mem, size, 1);
        if (copy == NULL)
            return eb__fail(err, EB_ERR_NOMEM, "out of memory copying %zu metadata bytes", size);
        memcpy(copy, data, size);
    }
    eb__free(&model->core.mem, model->metadata);
    model->metadata = copy;
    model->metadata_size = size;
    return EB_OK;
}

const void *eb_finetuner_metadata(const eb_finetuner *model, size_t *size)
{
    size_t n = is_live(model) ? model->metadata_size : 0;
    if (size != NULL)
        *size = n;
    return n == 0 ? NULL : model->metadata;
}

/* ---- saving and loading (the bytes are serialize.c's) ------------------------------- */

eb_status eb_finetuner_check_savable(const eb_finetuner *model, eb_error *err)
{
    eb__error_clear(err);
    eb_status status = eb__check_handle(model, err);
    if (status != EB_OK)
        return status;
    return model->ops->check_state(model, err);
}

size_t eb_finetuner_saved_size(const eb_finetuner *model)
{
    return is_live(model) ? eb__finetuner_saved_size(model) : 0;
}

eb_status eb_finetuner_save_to_buffer(const eb_finetuner *model, void *buffer, size_t capacity, size_t *written,
                                      eb_error *err)
{
    eb__error_clear(err);
    if (written != NULL)
        *written = 0;
    eb_status status = eb__check_handle(model, err);
    if (status != EB_OK)
        return status;
    if (buffer == NULL)
        return eb__fail(err, EB_ERR_NULL_POINTER, "buffer is NULL");
    return eb__finetuner_save_to_buffer(model, buffer, capacity, written, err);
}

eb_status eb_finetuner_load_from_buffer(const void *buffer, size_t size, const eb_allocator *mem,
                                        eb_finetuner **out, eb_error *err)
{
    eb__error_clear(err);
    if (out == NULL || buffer == NULL)
        return eb__fail(err, EB_ERR_NULL_POINTER, "%s is NULL", out == NULL ? "out" : "buffer");
    *out = NULL;
    if (mem != NULL && (mem->calloc == NULL || mem->free == NULL))
        return eb__fail(err, EB_ERR_NULL_POINTER, "the allocator's calloc or free is NULL");
    return eb__finetuner_load_from_buffer(buffer, size, mem, out, err);
}

/* ---- testing hooks -------------------------------------------------------------------- */

eb_status eb__finetuner_init_weights(eb_finetuner *model, size_t n_features, size_t n_classes)
{
    if (!is_live(model) || n_features == 0)
        return EB_ERR_INVALID_PARAM;
    eb_fit_state fresh;
    eb_status status = model->ops->new_state(model, n_features, n_classes, &fresh, &model->core.last_error);
    if (status != EB_OK)
        return status;
    fresh.fitted = true;
    eb__fit_state_release(&model->core.state, &model->core.mem);
    model->core.state = fresh;
    return EB_OK;
}

eb_status eb__finetuner_set_team_split(eb_finetuner *model, int split)
{
    if (!is_live(model) || split < EB_TEAM_SPLIT_MEASURED || split > EB_TEAM_SPLIT_COLUMNS)
        return EB_ERR_INVALID_PARAM;
    model->team_split = (eb_team_split)split;
    return EB_OK;
}

float *eb__finetuner_weights(eb_finetuner *model, size_t *count)
{
    *count = model->core.state.weights.count;
    return model->core.state.weights.values;
}
