/*
 * Writes the seed corpus of fuzz_model_load: small real models of every kind
 * of finetuner, fitted and unfitted, with and without class names and
 * metadata, plus copies of the version 1 fixtures, so the fuzzer starts from
 * inputs that pass every check and mutates the fields behind the checksum
 * from there.
 *
 * Usage: make_corpus <directory> [<fixtures>]   (tests/fuzz/make_corpus.sh builds and runs it; the
 * version 1 fixtures are read from tests/fixtures/model-v1, found from this file's path, unless given)
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

/* Names for up to four classes, integers or UTF-8 strings (one with a NUL inside). */
static const int64_t INT_NAMES[] = {-3, 0, 7, INT64_MAX};
static const char *const TEXT_NAMES[] = {"spam", "ham", "\xe2\x9c\x93", "a\0b"};
static const size_t TEXT_LENGTHS[] = {4, 3, 3, 3};
static const char METADATA[] = "{\"estimator\": {\"hidden_dim\": 3}}";

enum { NO_NAMES, INT_NAMES_GIVEN, TEXT_NAMES_GIVEN };

typedef struct seed {
    const char *name;
    eb_finetuner_kind kind;
    size_t cols, hidden, n_classes, epochs, batch, extra_partial_fits;
    int fitted;
    int names;    /* class names given to fit */
    int metadata; /* metadata attached */
    size_t n_neg; /* contrastive */
    eb_pair_layers layers; /* pair learner */
} seed;

static const seed SEEDS[] = {
    {"feedforward_fitted_minibatch.ebm", EB_KIND_FEEDFORWARD, 8, 6, 3, 4, 8, 0, 1, NO_NAMES, 0, 0, 0},
    {"feedforward_fitted_full_batch.ebm", EB_KIND_FEEDFORWARD, 5, 4, 2, 3, 0, 0, 1, NO_NAMES, 0, 0, 0},
    {"feedforward_fitted_one_class.ebm", EB_KIND_FEEDFORWARD, 3, 2, 1, 2, 0, 0, 1, NO_NAMES, 0, 0, 0},
    {"feedforward_partial_fit_history.ebm", EB_KIND_FEEDFORWARD, 4, 3, 4, 2, 5, 3, 1, INT_NAMES_GIVEN, 0, 0, 0},
    {"feedforward_text_names_metadata.ebm", EB_KIND_FEEDFORWARD, 4, 3, 4, 2, 0, 0, 1, TEXT_NAMES_GIVEN, 1, 0, 0},
    {"feedforward_unfitted.ebm", EB_KIND_FEEDFORWARD, 0, 7, 0, 10, 16, 0, 0, NO_NAMES, 0, 0, 0},
    {"feedforward_unfitted_metadata.ebm", EB_KIND_FEEDFORWARD, 0, 7, 0, 10, 16, 0, 0, NO_NAMES, 1, 0, 0},
    {"contrastive_fitted_width_3.ebm", EB_KIND_CONTRASTIVE, 6, 3, 3, 3, 10, 0, 1, NO_NAMES, 0, 2, 0},
    {"contrastive_fitted_as_input.ebm", EB_KIND_CONTRASTIVE, 5, EB_HIDDEN_DIM_AS_INPUT, 3, 2, 0, 0, 1, TEXT_NAMES_GIVEN, 0, 3, 0},
    {"contrastive_int_names_metadata.ebm", EB_KIND_CONTRASTIVE, 4, 2, 2, 2, 0, 1, 1, INT_NAMES_GIVEN, 1, 1, 0},
    {"contrastive_unfitted_as_input.ebm", EB_KIND_CONTRASTIVE, 0, EB_HIDDEN_DIM_AS_INPUT, 0, 20, 0, 0, 0, NO_NAMES, 0, 3, 0},
    {"contrastive_unfitted_width_4.ebm", EB_KIND_CONTRASTIVE, 0, 4, 0, 5, 7, 0, 0, NO_NAMES, 0, 1, 0},
    {"pair_learner_fitted_linear.ebm", EB_KIND_PAIR_LEARNER, 6, 3, 0, 2, 4, 1, 1, NO_NAMES, 0, 0, EB_PAIR_LINEAR},
    {"pair_learner_fitted_relu_metadata.ebm", EB_KIND_PAIR_LEARNER, 5, 4, 0, 2, 0, 0, 1, NO_NAMES, 1, 0,
     EB_PAIR_LINEAR_RELU_LINEAR},
    {"pair_learner_unfitted.ebm", EB_KIND_PAIR_LEARNER, 0, 300, 0, 1, 16, 0, 0, NO_NAMES, 0, 0, EB_PAIR_LINEAR},
};

/* Pairs over the rows: row i with row i+1, similar when their labels agree. */
static uint32_t left[ROWS], right[ROWS];
static float similarity[ROWS];

static eb_status train(eb_finetuner *model, const seed *s, uint64_t data_seed, int partial)
{
    size_t n_classes = s->n_classes > 0 ? s->n_classes : 2;
    eb_matrix data = make_data(s->cols, n_classes, data_seed);
    if (s->kind == EB_KIND_PAIR_LEARNER) {
        for (size_t i = 0; i < ROWS; i++) {
            left[i] = (uint32_t)i;
            right[i] = (uint32_t)((i + 1) % ROWS);
            similarity[i] = y[i] == y[(i + 1) % ROWS] ? 1.0f : 0.0f;
        }
        eb_pairs pairs = eb_pairs_indexed(data, left, right, ROWS, similarity);
        return partial ? eb_finetuner_partial_fit_pairs(model, pairs) : eb_finetuner_fit_pairs(model, pairs);
    }
    eb_class_labels names;
    memset(&names, 0, sizeof names);
    names.count = s->n_classes;
    if (s->names == INT_NAMES_GIVEN) {
        names.type = EB_LABELS_INT64;
        names.integers = INT_NAMES;
    } else if (s->names == TEXT_NAMES_GIVEN) {
        names.type = EB_LABELS_UTF8;
        names.strings = TEXT_NAMES;
        names.string_lengths = TEXT_LENGTHS;
    }
    const eb_class_labels *given = s->names == NO_NAMES ? NULL : &names;
    return partial ? eb_finetuner_partial_fit(model, data, y, 0, given)
                   : eb_finetuner_fit(model, data, y, s->n_classes, given);
}

static int save_seed(const char *dir, const seed *s)
{
    eb_finetuner_params p = eb_finetuner_default_params(s->kind);
    p.hidden_dim = s->hidden;
    p.n_epochs = s->epochs;
    p.batch_size = s->batch;
    p.seed = s->cols * 31 + s->hidden;
    if (s->kind == EB_KIND_CONTRASTIVE) {
        p.n_neg = s->n_neg;
        p.learning_rate = 0.01f;
    }
    p.layers = s->layers;
    eb_error err;
    eb_finetuner *model = NULL;
    if (check(eb_finetuner_create(&p, NULL, &model, &err), "create", err.message))
        return 1;
    int failed = 0;
    if (s->fitted) {
        failed |= check(train(model, s, 1, 0), "fit", eb_finetuner_last_error(model));
        for (size_t i = 0; !failed && i < s->extra_partial_fits; i++)
            failed |= check(train(model, s, 2 + i, 1), "partial_fit", eb_finetuner_last_error(model));
    }
    if (!failed && s->metadata)
        failed |= check(eb_finetuner_set_metadata(model, METADATA, sizeof METADATA - 1), "set_metadata",
                        eb_finetuner_last_error(model));
    size_t size = eb_finetuner_saved_size(model);
    void *bytes = malloc(size);
    if (!failed && bytes != NULL &&
        !check(eb_finetuner_save_to_buffer(model, bytes, size, NULL, &err), "save", err.message))
        failed |= write_file(dir, s->name, bytes, size);
    else
        failed = 1;
    free(bytes);
    eb_finetuner_free(model);
    return failed;
}

/* The version 1 fixtures, copied as they are, so the fuzzer also mutates the older layout. */
static int copy_v1_fixture(const char *fixtures, const char *dir, const char *stem)
{
    char path[1024], name[128];
    snprintf(path, sizeof path, "%s/%s.ebm", fixtures, stem);
    snprintf(name, sizeof name, "v1_%s.ebm", stem);
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        fprintf(stderr, "make_corpus: cannot read %s\n", path);
        return 1;
    }
    static unsigned char bytes[1 << 16];
    size_t size = fread(bytes, 1, sizeof bytes, f);
    int failed = ferror(f) || !feof(f);
    fclose(f);
    if (failed) {
        fprintf(stderr, "make_corpus: cannot read %s whole\n", path);
        return 1;
    }
    return write_file(dir, name, bytes, size);
}

int main(int argc, char **argv)
{
    if (argc != 2 && argc != 3) {
        fprintf(stderr, "usage: %s <corpus directory> [<tests/fixtures/model-v1>]\n", argv[0]);
        return 2;
    }
    /* By default the fixtures next to this source file. */
    char fixtures[1024];
    const char *slash = strrchr(__FILE__, '/');
    if (argc == 3)
        snprintf(fixtures, sizeof fixtures, "%s", argv[2]);
    else
        snprintf(fixtures, sizeof fixtures, "%.*s/../fixtures/model-v1", slash == NULL ? 1 : (int)(slash - __FILE__),
                 slash == NULL ? "." : __FILE__);
    int failed = 0;
    for (size_t i = 0; i < sizeof SEEDS / sizeof SEEDS[0]; i++)
        failed |= save_seed(argv[1], &SEEDS[i]);
    failed |= copy_v1_fixture(fixtures, argv[1], "feedforward");
    failed |= copy_v1_fixture(fixtures, argv[1], "contrastive");
    return failed;
}
