/*
 * libFuzzer target: arbitrary bytes into both model loaders.
 *
 * fuzz-corpus: model_load
 *
 * Mutated bytes almost never keep a valid CRC32, so every input also goes
 * in a second time with a valid header for each kind written over its first
 * 28 bytes (magic, version 1, kind, payload length, CRC of the rest): that
 * sends the fuzzer's bytes through the payload checks behind the checksum.
 *
 * A rejected input must fail cleanly (the sanitizers and the leak checker
 * judge that), and eb_model_read_header must refuse exactly the headers the
 * loaders refuse, with the same message. An accepted one must behave like a real model: save back to
 * exactly the input bytes, transform, fail every allocation cleanly on a
 * second load, and after one partial_fit still save and load again, since a
 * model produced by training must always be loadable.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zlib.h>

#include "embetter/embetter.h"

enum { PROBE_ROWS = 4, HEADER_SIZE = 28, FORMAT_VERSION = 1 };

#include "fuzz_support.h"

/* Finite probe rows derived from the input, so transform sees varied but valid data. */
static float *probe_rows(const uint8_t *data, size_t size, size_t cols)
{
    float *x = calloc(PROBE_ROWS * cols, sizeof *x);
    REQUIRE(x != NULL);
    for (size_t i = 0; i < PROBE_ROWS * cols; i++)
        x[i] = size == 0 ? 0.5f : ((float)data[i % size] - 127.5f) / 64.0f;
    return x;
}

/* One interface over both finetuners keeps the checks below written once. */
typedef struct model_api {
    uint32_t kind;
    eb_status (*load)(const void *buffer, size_t size, const eb_allocator *mem, void **out, eb_error *err);
    void (*release)(void *model);
    size_t (*saved_size)(const void *model);
    eb_status (*save)(const void *model, void *buffer, size_t capacity, size_t *written, eb_error *err);
    int (*is_fitted)(const void *model);
    size_t (*n_features)(const void *model);
    size_t (*n_classes)(const void *model);
    size_t (*output_dim)(const void *model);
    eb_status (*transform)(const void *model, eb_matrix x, eb_mut_matrix out, eb_error *err);
    eb_status (*partial_fit)(void *model, eb_matrix x, const int32_t *y, size_t n_classes);
    /* False when one partial_fit would need more memory than a fuzzing run should spend. */
    int (*cheap_to_train)(const void *model);
    const char *(*last_error)(const void *model);
} model_api;

static eb_status ff_load(const void *b, size_t s, const eb_allocator *mem, void **out, eb_error *err)
{
    eb_feedforward *m = NULL;
    eb_status status = eb_feedforward_load_from_buffer(b, s, mem, &m, err);
    *out = m;
    return status;
}
static void ff_release(void *m) { eb_feedforward_free(m); }
static size_t ff_saved_size(const void *m) { return eb_feedforward_saved_size(m); }
static eb_status ff_save(const void *m, void *b, size_t c, size_t *w, eb_error *e)
{
    return eb_feedforward_save_to_buffer(m, b, c, w, e);
}
static int ff_is_fitted(const void *m) { return eb_feedforward_is_fitted(m); }
static size_t ff_n_features(const void *m) { return eb_feedforward_n_features(m); }
static size_t ff_n_classes(const void *m) { return eb_feedforward_n_classes(m); }
static size_t ff_output_dim(const void *m) { return eb_feedforward_output_dim(m); }
static eb_status ff_transform(const void *m, eb_matrix x, eb_mut_matrix o, eb_error *e)
{
    return eb_feedforward_transform(m, x, o, e);
}
static eb_status ff_partial_fit(void *m, eb_matrix x, const int32_t *y, size_t k)
{
    return eb_feedforward_partial_fit(m, x, y, k);
}
static const char *ff_last_error(const void *m) { return eb_feedforward_last_error(m); }
static int ff_cheap(const void *m)
{
    /* An unfitted model's first partial_fit allocates hidden_dim x columns weights. */
    return eb_feedforward_is_fitted(m) || eb_feedforward_get_params(m).hidden_dim <= 4096;
}

static eb_status cl_load(const void *b, size_t s, const eb_allocator *mem, void **out, eb_error *err)
{
    eb_contrastive *m = NULL;
    eb_status status = eb_contrastive_load_from_buffer(b, s, mem, &m, err);
    *out = m;
    return status;
}
static void cl_release(void *m) { eb_contrastive_free(m); }
static size_t cl_saved_size(const void *m) { return eb_contrastive_saved_size(m); }
static eb_status cl_save(const void *m, void *b, size_t c, size_t *w, eb_error *e)
{
    return eb_contrastive_save_to_buffer(m, b, c, w, e);
}
static int cl_is_fitted(const void *m) { return eb_contrastive_is_fitted(m); }
static size_t cl_n_features(const void *m) { return eb_contrastive_n_features(m); }
static size_t cl_n_classes(const void *m) { return eb_contrastive_n_classes(m); }
static size_t cl_output_dim(const void *m) { return eb_contrastive_output_dim(m); }
static eb_status cl_transform(const void *m, eb_matrix x, eb_mut_matrix o, eb_error *e)
{
    return eb_contrastive_transform(m, x, o, e);
}
static eb_status cl_partial_fit(void *m, eb_matrix x, const int32_t *y, size_t k)
{
    return eb_contrastive_partial_fit(m, x, y, k);
}
static const char *cl_last_error(const void *m) { return eb_contrastive_last_error(m); }
static int cl_cheap(const void *m)
{
    /* Pairs per epoch grow with n_neg; the width of an unfitted model with hidden_dim. */
    eb_contrastive_params p = eb_contrastive_get_params(m);
    return p.n_neg <= 4096 && (eb_contrastive_is_fitted(m) || p.hidden_dim == EB_HIDDEN_DIM_AS_INPUT ||
                               p.hidden_dim <= 4096);
}

static const model_api FEEDFORWARD = {1, ff_load,      ff_release,   ff_saved_size, ff_save,
                                      ff_is_fitted, ff_n_features, ff_n_classes, ff_output_dim,
                                      ff_transform, ff_partial_fit, ff_cheap, ff_last_error};
static const model_api CONTRASTIVE = {2, cl_load,      cl_release,   cl_saved_size, cl_save,
                                      cl_is_fitted, cl_n_features, cl_n_classes, cl_output_dim,
                                      cl_transform, cl_partial_fit, cl_cheap, cl_last_error};

/* Save the model and load the bytes again; both must succeed. Returns the saved bytes (malloc'd). */
static uint8_t *save_checked(const model_api *api, const void *model, size_t *size)
{
    eb_error err;
    *size = api->saved_size(model);
    REQUIRE(*size > 0);
    uint8_t *bytes = malloc(*size);
    REQUIRE(bytes != NULL);
    size_t written = 0;
    REQUIRE(api->save(model, bytes, *size, &written, &err) == EB_OK);
    REQUIRE(written == *size);
    REQUIRE(api->save(model, bytes, *size - 1, &written, &err) == EB_ERR_SHAPE_MISMATCH);
    return bytes;
}

static void exercise(const model_api *api, const uint8_t *data, size_t size)
{
    static const uint8_t no_bytes[1] = {0};
    if (data == NULL)
        data = no_bytes; /* an empty input; the loaders refuse a NULL buffer outright */
    void *model = NULL;
    eb_error err;
    eb_status status = api->load(data, size, NULL, &model, &err);
    /* eb_model_read_header is the loaders' own header check: what it refuses, they refuse with its message. */
    eb_model_header header;
    eb_error header_err;
    eb_status header_status = eb_model_read_header(data, size, &header, &header_err);
    if (header_status != EB_OK)
        REQUIRE(header_status == EB_ERR_FORMAT && status == EB_ERR_FORMAT &&
                strcmp(header_err.message, err.message) == 0);
    else if (status == EB_OK)
        REQUIRE(header.kind == (eb_model_kind)api->kind && header.payload_size == size - HEADER_SIZE &&
                header.format_version >= 1 && header.format_version <= EB_MODEL_FORMAT_VERSION);
    if (status != EB_OK) {
        REQUIRE(model == NULL);
        REQUIRE(status == EB_ERR_FORMAT);
        REQUIRE(err.status == status && err.message[0] != '\0');
        return;
    }
    REQUIRE(model != NULL);

    /* Every field the loader accepted is written back unchanged. */
    size_t saved_size;
    uint8_t *saved = save_checked(api, model, &saved_size);
    REQUIRE(saved_size == size);
    REQUIRE(memcmp(saved, data, size) == 0);
    free(saved);

    /* Each allocation of a second load may fail; then nothing leaks and nothing is returned. */
    failing_allocator counter = {0, SIZE_MAX, 0};
    eb_allocator mem = {failing_calloc, failing_free, &counter};
    void *again = NULL;
    REQUIRE(api->load(data, size, &mem, &again, &err) == EB_OK);
    api->release(again);
    size_t allocations = counter.attempts;
    for (size_t fail_at = 0; fail_at < allocations; fail_at++) {
        counter = (failing_allocator){0, fail_at, 0};
        again = (void *)&counter;
        REQUIRE(api->load(data, size, &mem, &again, &err) == EB_ERR_NOMEM);
        REQUIRE(again == NULL && counter.live == 0);
    }

    size_t cols = api->is_fitted(model) ? api->n_features(model) : 3;
    float *x = probe_rows(data, size, cols);
    eb_matrix probe = eb_matrix_view(x, PROBE_ROWS, cols);
    if (api->is_fitted(model)) {
        size_t width = api->output_dim(model);
        float *out = calloc(PROBE_ROWS * width, sizeof *out);
        REQUIRE(out != NULL);
        /* Finite weights near FLT_MAX can still overflow an output: that is reported, never returned as inf. */
        status = api->transform(model, probe, eb_mut_matrix_view(out, PROBE_ROWS, width), &err);
        REQUIRE(status == EB_OK || (status == EB_ERR_NONFINITE && err.message[0] != '\0'));
        free(out);
    } else {
        float out[PROBE_ROWS];
        REQUIRE(api->transform(model, probe, eb_mut_matrix_view(out, PROBE_ROWS, 1), &err) == EB_ERR_NOT_FITTED);
    }

    if (api->cheap_to_train(model)) {
        /* Two labels serve both finetuners; a fitted feed-forward model keeps its own class count. */
        size_t classes = api->is_fitted(model) ? api->n_classes(model) : 2;
        int32_t y[PROBE_ROWS];
        for (size_t i = 0; i < PROBE_ROWS; i++)
            y[i] = (int32_t)(i % 2 < classes ? i % 2 : 0);
        status = api->partial_fit(model, probe, y, api->is_fitted(model) ? 0 : classes);
        /* Loaded weights and a loaded learning_rate may be extreme enough to diverge: that must fail cleanly. */
        if (status != EB_OK && status != EB_ERR_NOMEM && status != EB_ERR_TOO_LARGE && status != EB_ERR_NONFINITE)
            fprintf(stderr, "partial_fit on a loaded model: %s: %s\n", eb_status_string(status), api->last_error(model));
        REQUIRE(status == EB_OK || status == EB_ERR_NOMEM || status == EB_ERR_TOO_LARGE || status == EB_ERR_NONFINITE);
        uint8_t *after = save_checked(api, model, &saved_size);
        if (status != EB_OK) {
            /* A failed call leaves the model exactly as it was. */
            REQUIRE(saved_size == size && memcmp(after, data, size) == 0);
        } else {
            /* A model that training produced always loads again. */
            void *reloaded = NULL;
            status = api->load(after, saved_size, NULL, &reloaded, &err);
            if (status != EB_OK)
                fprintf(stderr, "a trained model does not load: %s\n", err.message);
            REQUIRE(status == EB_OK);
            api->release(reloaded);
        }
        free(after);
    }
    free(x);
    api->release(model);
}

static void put_le(uint8_t *at, uint64_t value, size_t count)
{
    for (size_t i = 0; i < count; i++)
        at[i] = (uint8_t)(value >> (8 * i));
}

/* The input with a header that passes every header check for api's kind. */
static void exercise_behind_checksum(const model_api *api, const uint8_t *data, size_t size)
{
    if (size < HEADER_SIZE)
        return;
    /* Exactly sized, so AddressSanitizer catches a read past the end. */
    uint8_t *copy = malloc(size);
    REQUIRE(copy != NULL);
    memcpy(copy, data, size);
    memcpy(copy, "EMBETTER", 8);
    put_le(copy + 8, FORMAT_VERSION, 4);
    put_le(copy + 12, api->kind, 4);
    put_le(copy + 16, size - HEADER_SIZE, 8);
    put_le(copy + 24, crc32(0L, copy + HEADER_SIZE, (uInt)(size - HEADER_SIZE)), 4);
    exercise(api, copy, size);
    free(copy);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    exercise(&FEEDFORWARD, data, size);
    exercise(&CONTRASTIVE, data, size);
    exercise_behind_checksum(&FEEDFORWARD, data, size);
    exercise_behind_checksum(&CONTRASTIVE, data, size);
    return 0;
}
