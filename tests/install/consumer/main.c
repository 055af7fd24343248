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

    eb_finetuner_params params = eb_finetuner_default_params(EB_KIND_FEEDFORWARD);
    params.hidden_dim = HIDDEN;
    params.n_epochs = 200;
    eb_error err;
    eb_finetuner *model = NULL;
    eb_status status = eb_finetuner_create(&params, NULL, &model, &err);
    if (status != EB_OK) {
        fprintf(stderr, "create: %s: %s\n", eb_status_string(status), err.message);
        return 1;
    }

    float out[ROWS * HIDDEN];
    status = eb_finetuner_transform(model, eb_matrix_view(x, ROWS, COLS), eb_mut_matrix_view(out, ROWS, HIDDEN),
                                    &err);
    if (status != EB_ERR_NOT_FITTED) {
        fprintf(stderr, "transform before fit returned %s, expected EB_ERR_NOT_FITTED\n", eb_status_string(status));
        eb_finetuner_free(model);
        return 1;
    }

    static const char *const names[2] = {"negative", "positive"};
    const eb_class_labels labels = {EB_LABELS_UTF8, 2, NULL, names, NULL};
    status = eb_finetuner_fit(model, eb_matrix_view(x, ROWS, COLS), y, 2, &labels);
    if (status == EB_OK)
        status = eb_finetuner_transform(model, eb_matrix_view(x, ROWS, COLS),
                                        eb_mut_matrix_view(out, ROWS, HIDDEN), &err);
    if (status != EB_OK) {
        fprintf(stderr, "fit/transform: %s: %s%s\n", eb_status_string(status), eb_finetuner_last_error(model),
                err.message);
        eb_finetuner_free(model);
        return 1;
    }
    size_t epochs = 0;
    const double *losses = eb_finetuner_loss_history(model, &epochs);
    const double first_loss = epochs > 0 ? losses[0] : NAN;
    const double last_loss = epochs > 0 ? losses[epochs - 1] : NAN;

    /* The saved bytes are the whole model, class names included. */
    unsigned char saved[4096];
    size_t written = 0;
    eb_finetuner *loaded = NULL;
    status = eb_finetuner_saved_size(model) <= sizeof saved
                 ? eb_finetuner_save_to_buffer(model, saved, sizeof saved, &written, &err)
                 : EB_ERR_BUFFER_TOO_SMALL;
    if (status == EB_OK)
        status = eb_finetuner_load_from_buffer(saved, written, NULL, &loaded, &err);
    eb_finetuner_free(model);
    eb_class_labels loaded_labels;
    if (status == EB_OK)
        status = eb_finetuner_class_labels(loaded, &loaded_labels);
    if (status != EB_OK) {
        fprintf(stderr, "save/load: %s: %s\n", eb_status_string(status), err.message);
        eb_finetuner_free(loaded);
        return 1;
    }
    int same = eb_finetuner_kind_of(loaded) == EB_KIND_FEEDFORWARD && loaded_labels.type == EB_LABELS_UTF8 &&
               loaded_labels.count == 2 && strcmp(loaded_labels.strings[1], "positive") == 0;
    eb_finetuner_free(loaded);
    if (!same) {
        fprintf(stderr, "the loaded model lost its kind or class names\n");
        return 1;
    }

    for (int i = 0; i < ROWS * HIDDEN; i++)
        if (!(out[i] > 0.0f && out[i] < 1.0f)) {
            fprintf(stderr, "hidden activation %d is %g, outside the sigmoid's range (0, 1)\n", i, (double)out[i]);
            return 1;
        }
    if (epochs != 200 || !(last_loss < first_loss)) {
        fprintf(stderr, "the training loss did not fall over %zu epochs\n", epochs);
        return 1;
    }
    printf("consumer OK: libembetter %s, loss %.4f -> %.4f over %zu epochs, class names saved and loaded\n",
           eb_version(), first_loss, last_loss, epochs);
    return 0;
}
