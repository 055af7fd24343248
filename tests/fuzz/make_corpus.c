/*
 * Writes the seed corpus of fuzz_model_load: small real models of both
 * finetuners, fitted and unfitted, so the fuzzer starts from inputs that pass
 * every check and mutates the fields behind the checksum from there.
 *
 * Usage: make_corpus <directory>   (tests/fuzz/make_corpus.sh builds and runs it)
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "embetter/embetter.h"

enum { ROWS = 24, MAX_COLS = 8 };

static float x[ROWS * MAX_COLS];
static int32_t y[ROWS];

/* Deterministic rows in [-1, 1) and labels cycling through n_classes. */
static eb_matrix make_data(size_t cols, size_t n_classes, uint64_t seed)
{
    uint64_t state = seed * 2862933555777941757ULL + 3037000493ULL;
    for (size_t i = 0; i < ROWS * cols; i++) {
        state = state * 6364136223846793005ULL + 1442695040888963407ULL;
        x[i] = (float)(state >> 40) / 8388608.0f - 1.0f;
    }
    for (size_t i = 0; i < ROWS; i++)
        y[i] = (int32_t)(i % n_classes);
    return eb_matrix_view(x, ROWS, cols);
}

static int write_file(const char *dir, const char *name, const void *bytes, size_t size)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (f == NULL || fwrite(bytes, 1, size, f) != size || fclose(f) != 0) {
        fprintf(stderr, "make_corpus: cannot write %s\n", path);
        return 1;
    }
    printf("%-40s %5zu bytes\n", name, size);
    return 0;
}

static int check(eb_status status, const char *what, const char *detail)
{
    if (status != EB_OK)
        fprintf(stderr, "make_corpus: %s failed: %s (%s)\n", what, eb_status_string(status), detail);
    return status != EB_OK;
}

typedef struct ff_seed {
    const char *name;
    size_t cols, hidden, n_classes, epochs, batch, extra_partial_fits;
    int fitted;
} ff_seed;

typedef struct cl_seed {
    const char *name;
    size_t cols, hidden, n_neg, epochs, batch;
    int fitted;
} cl_seed;

static const ff_seed FF_SEEDS[] = {
    {"feedforward_fitted_minibatch.ebm", 8, 6, 3, 4, 8, 0, 1},
    {"feedforward_fitted_full_batch.ebm", 5, 4, 2, 3, 0, 0, 1},
    {"feedforward_fitted_one_class.ebm", 3, 2, 1, 2, 0, 0, 1},
    {"feedforward_partial_fit_history.ebm", 4, 3, 4, 2, 5, 3, 1},
    {"feedforward_unfitted.ebm", 0, 7, 0, 10, 16, 0, 0},
};

static const cl_seed CL_SEEDS[] = {
    {"contrastive_fitted_width_3.ebm", 6, 3, 2, 3, 10, 1},
    {"contrastive_fitted_as_input.ebm", 5, EB_HIDDEN_DIM_AS_INPUT, 3, 2, 0, 1},
    {"contrastive_unfitted_as_input.ebm", 0, EB_HIDDEN_DIM_AS_INPUT, 3, 20, 0, 0},
    {"contrastive_unfitted_width_4.ebm", 0, 4, 1, 5, 7, 0},
};

static int save_feedforward(const char *dir, const ff_seed *s)
{
    eb_feedforward_params p = eb_feedforward_default_params();
    p.hidden_dim = s->hidden;
    p.n_epochs = s->epochs;
    p.batch_size = s->batch;
    p.seed = s->cols * 31 + s->hidden;
    eb_error err;
    eb_feedforward *model = NULL;
    if (check(eb_feedforward_create(&p, NULL, &model, &err), "create", err.message))
        return 1;
    int failed = 0;
    if (s->fitted) {
        eb_matrix data = make_data(s->cols, s->n_classes, 1);
        failed |= check(eb_feedforward_fit(model, data, y, s->n_classes), "fit", eb_feedforward_last_error(model));
        for (size_t i = 0; !failed && i < s->extra_partial_fits; i++) {
            data = make_data(s->cols, s->n_classes, 2 + i);
            failed |= check(eb_feedforward_partial_fit(model, data, y, 0), "partial_fit",
                            eb_feedforward_last_error(model));
        }
    }
    size_t size = eb_feedforward_saved_size(model);
    void *bytes = malloc(size);
    if (!failed && bytes != NULL &&
        !check(eb_feedforward_save_to_buffer(model, bytes, size, NULL, &err), "save", err.message))
        failed |= write_file(dir, s->name, bytes, size);
    else
        failed = 1;
    free(bytes);
    eb_feedforward_free(model);
    return failed;
}

static int save_contrastive(const char *dir, const cl_seed *s)
{
    eb_contrastive_params p = eb_contrastive_default_params();
    p.hidden_dim = s->hidden;
    p.n_neg = s->n_neg;
    p.n_epochs = s->epochs;
    p.learning_rate = 0.01f;
    p.batch_size = s->batch;
    p.seed = s->cols * 17 + s->n_neg;
    eb_error err;
    eb_contrastive *model = NULL;
    if (check(eb_contrastive_create(&p, NULL, &model, &err), "create", err.message))
        return 1;
    int failed = 0;
    if (s->fitted) {
        eb_matrix data = make_data(s->cols, 3, 7);
        failed |= check(eb_contrastive_fit(model, data, y, 3), "fit", eb_contrastive_last_error(model));
    }
    size_t size = eb_contrastive_saved_size(model);
    void *bytes = malloc(size);
    if (!failed && bytes != NULL &&
        !check(eb_contrastive_save_to_buffer(model, bytes, size, NULL, &err), "save", err.message))
        failed |= write_file(dir, s->name, bytes, size);
    else
        failed = 1;
    free(bytes);
    eb_contrastive_free(model);
    return failed;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s <corpus directory>\n", argv[0]);
        return 2;
    }
    int failed = 0;
    for (size_t i = 0; i < sizeof FF_SEEDS / sizeof FF_SEEDS[0]; i++)
        failed |= save_feedforward(argv[1], &FF_SEEDS[i]);
    for (size_t i = 0; i < sizeof CL_SEEDS / sizeof CL_SEEDS[0]; i++)
        failed |= save_contrastive(argv[1], &CL_SEEDS[i]);
    return failed;
}
