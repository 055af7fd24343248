/*
 * A program outside the project that uses an installed libembetter: it proves
 * the installed header, library and package files work together. Exits
 * non-zero, saying why, if the library misbehaves.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include <embetter/embetter.h>

enum { ROWS = 40, COLS = 3, HIDDEN = 2 };

int main(void)
{
    if (strcmp(eb_version(), EB_VERSION_STRING) != 0) {
        fprintf(stderr, "installed header says %s but the library says %s\n", EB_VERSION_STRING, eb_version());
        return 1;
    }

    /* Two classes told apart by the sign of the first column. */
    float x[ROWS * COLS];
    int32_t y[ROWS];
    for (int r = 0; r < ROWS; r++) {
        y[r] = r % 2;
        x[r * COLS + 0] = y[r] == 1 ? 1.0f + 0.01f * (float)r : -1.0f - 0.01f * (float)r;
        x[r * COLS + 1] = 0.1f * (float)(r % 5);
        x[r * COLS + 2] = 0.5f;
    }

    eb_feedforward_params params = eb_feedforward_default_params();
    params.hidden_dim = HIDDEN;
    params.n_epochs = 200;
    eb_error err;
    eb_feedforward *model = NULL;
    eb_status status = eb_feedforward_create(&params, NULL, &model, &err);
    if (status != EB_OK) {
        fprintf(stderr, "create: %s: %s\n", eb_status_string(status), err.message);
        return 1;
    }

    float out[ROWS * HIDDEN];
    status = eb_feedforward_transform(model, eb_matrix_view(x, ROWS, COLS), eb_mut_matrix_view(out, ROWS, HIDDEN),
                                      &err);
    if (status != EB_ERR_NOT_FITTED) {
        fprintf(stderr, "transform before fit returned %s, expected EB_ERR_NOT_FITTED\n", eb_status_string(status));
        eb_feedforward_free(model);
        return 1;
    }

    status = eb_feedforward_fit(model, eb_matrix_view(x, ROWS, COLS), y, 2);
    if (status == EB_OK)
        status = eb_feedforward_transform(model, eb_matrix_view(x, ROWS, COLS),
                                          eb_mut_matrix_view(out, ROWS, HIDDEN), &err);
    if (status != EB_OK) {
        fprintf(stderr, "fit/transform: %s: %s%s\n", eb_status_string(status), eb_feedforward_last_error(model),
                err.message);
        eb_feedforward_free(model);
        return 1;
    }
    size_t epochs = 0;
    const double *losses = eb_feedforward_loss_history(model, &epochs);
    const double first_loss = epochs > 0 ? losses[0] : NAN;
    const double last_loss = epochs > 0 ? losses[epochs - 1] : NAN;
    eb_feedforward_free(model);

    for (int i = 0; i < ROWS * HIDDEN; i++)
        if (!(out[i] > 0.0f && out[i] < 1.0f)) {
            fprintf(stderr, "hidden activation %d is %g, outside the sigmoid's range (0, 1)\n", i, (double)out[i]);
            return 1;
        }
    if (epochs != 200 || !(last_loss < first_loss)) {
        fprintf(stderr, "the training loss did not fall over %zu epochs\n", epochs);
        return 1;
    }
    printf("consumer OK: libembetter %s, loss %.4f -> %.4f over %zu epochs\n", eb_version(), first_loss,
           last_loss, epochs);
    return 0;
}
