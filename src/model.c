/* What the finetuner kinds share outside training: the checks in front of every transform, and the shape of a training step. */
#include "internal.h"

eb_status eb__check_transform(const eb_model_core *core, eb_matrix x, eb_mut_matrix out, eb_error *err)
{
    eb__error_clear(err);
    const eb_fit_state *state = &core->state;
    if (!state->fitted)
        return eb__fail(err, EB_ERR_NOT_FITTED, "the model is not fitted yet; call fit or partial_fit first");
    eb_status status = eb__check_input(x, "X", err);
    if (status != EB_OK)
        return status;
    if (x.cols != state->n_features)
        return eb__fail(err, EB_ERR_SHAPE_MISMATCH, "X has %zu columns, the model was fitted on %zu", x.cols,
                        state->n_features);
    return eb__check_output(out, x.rows, state->out_dim, err);
}

eb_status eb__check_transform_layout(const eb_model_core *core, eb_matrix x, eb_mut_matrix out, eb_error *err)
{
    eb__error_clear(err);
    const eb_fit_state *state = &core->state;
    if (!state->fitted)
        return eb__fail(err, EB_ERR_NOT_FITTED, "the model is not fitted yet; call fit or partial_fit first");
    eb_status status = eb__check_input_layout(x, "X", err);
    if (status != EB_OK)
        return status;
    eb_error ignored;
    bool shapes_fit = x.cols == state->n_features &&
                      eb__check_output(out, x.rows, state->out_dim, &ignored) == EB_OK;
    if (shapes_fit)
        return EB_OK;
    status = eb__check_input_values(x, "X", 0, err);
    return status != EB_OK ? status : eb__check_transform(core, x, out, err);
}

size_t eb_training_step_rows(eb_finetuner_kind kind, size_t n_rows, size_t batch_size)
{
    switch (kind) {
    case EB_KIND_FEEDFORWARD:
        return batch_size == 0 || batch_size >= n_rows ? n_rows : batch_size;
    case EB_KIND_CONTRASTIVE:
        /* Gathering copies 2 rows per pair; past half of X that is more work than using X whole. */
        return batch_size != 0 && batch_size < n_rows / 2 ? 2 * batch_size : n_rows;
    case EB_KIND_PAIR_LEARNER: {
        /* n_rows counts pairs here; each gathers its two rows, a slice of EB_PAIR_SLICE pairs at a time. */
        size_t pairs = batch_size == 0 || batch_size >= n_rows ? n_rows : batch_size;
        return 2 * (pairs < EB_PAIR_SLICE ? pairs : EB_PAIR_SLICE);
    }
    }
    return 0;
}
