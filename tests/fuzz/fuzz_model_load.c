/*
 * libFuzzer target: arbitrary bytes into the model loader, which takes a
 * finetuner of any kind.
 *
 * fuzz-corpus: model_load
 *
 * Mutated bytes almost never keep a valid CRC32, so every input also goes
 * in again with a valid header written over its first 28 bytes (magic,
 * version 1 or 2, each kind, payload length, CRC of the rest): that sends
 * the fuzzer's bytes through the payload checks behind the checksum, of
 * both layouts.
 *
 * A rejected input must fail cleanly (the sanitizers and the leak checker
 * judge that), and eb_model_read_header must refuse exactly the headers the
 * loader refuses, with the same message. An accepted one must behave like a
 * real model: have the header's kind, save back to exactly the input bytes
 * (a version 1 input to version 2 bytes that load as the same model), refuse
 * a buffer one byte short without touching it, answer every accessor (class
 * names, metadata) consistently and take them back unchanged, transform,
 * fail every allocation cleanly on a second load, and after one partial_fit
 * still save and load again, since a model produced by training must always
 * be loadable.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zlib.h>

#include "embetter/embetter.h"

enum { PROBE_ROWS = 4, HEADER_SIZE = 28 };

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

/* False when one partial_fit would need more memory than a fuzzing run should spend. */
static int cheap_to_train(const eb_finetuner *model)
{
    /* An unfitted model's first partial_fit allocates hidden_dim x columns weights; contrastive pairs grow with n_neg. */
    eb_finetuner_params p = eb_finetuner_get_params(model);
    return p.n_neg <= 4096 && (eb_finetuner_is_fitted(model) || p.hidden_dim == EB_HIDDEN_DIM_AS_INPUT ||
                               p.hidden_dim <= 4096);
}

/* Save the model, refusing a buffer one byte short untouched. Returns the saved bytes (malloc'd). */
static uint8_t *save_checked(const eb_finetuner *model, size_t *size)
{
    eb_error err;
    *size = eb_finetuner_saved_size(model);
    REQUIRE(*size > HEADER_SIZE);
    uint8_t *bytes = malloc(*size);
    REQUIRE(bytes != NULL);
    size_t written = 0;
    REQUIRE(eb_finetuner_save_to_buffer(model, bytes, *size, &written, &err) == EB_OK);
    REQUIRE(written == *size);
    uint8_t *short_buffer = malloc(*size);
    REQUIRE(short_buffer != NULL);
    memset(short_buffer, 0x5A, *size);
    REQUIRE(eb_finetuner_save_to_buffer(model, short_buffer, *size - 1, &written, &err) == EB_ERR_BUFFER_TOO_SMALL);
    REQUIRE(written == 0 && err.message[0] != '\0');
    for (size_t i = 0; i < *size; i++)
        REQUIRE(short_buffer[i] == 0x5A);
    free(short_buffer);
    return bytes;
}

/*
 * Class names and metadata as the accessors give them: consistent with the
 * model, every byte readable, and accepted back by the setters unchanged.
 */
static void check_names_and_metadata(eb_finetuner *model)
{
    eb_class_labels names;
    REQUIRE(eb_finetuner_class_labels(model, &names) == EB_OK);
    if (names.type != EB_LABELS_NONE) {
        REQUIRE(eb_finetuner_kind_of(model) != EB_KIND_PAIR_LEARNER);
        REQUIRE(names.count == eb_finetuner_n_classes(model) && names.count > 0);
        unsigned checksum = 0;
        for (size_t i = 0; i < names.count; i++) {
            if (names.type == EB_LABELS_INT64) {
                checksum += (unsigned)names.integers[i];
                continue;
            }
            REQUIRE(names.type == EB_LABELS_UTF8 && names.strings[i] != NULL);
            REQUIRE(names.string_lengths[i] <= EB_MAX_LABEL_BYTES && names.strings[i][names.string_lengths[i]] == '\0');
            for (size_t b = 0; b < names.string_lengths[i]; b++)
                checksum += (unsigned char)names.strings[i][b];
        }
        (void)checksum;
        /* The model's own names are valid names for it: setting them changes nothing. */
        REQUIRE(eb_finetuner_set_class_labels(model, &names) == EB_OK);
    } else {
        REQUIRE(names.count == 0);
    }
    size_t metadata_size = 0;
    const uint8_t *metadata = eb_finetuner_metadata(model, &metadata_size);
    REQUIRE((metadata == NULL) == (metadata_size == 0) && metadata_size <= EB_MAX_METADATA_BYTES);
    unsigned sum = 0;
    for (size_t i = 0; i < metadata_size; i++)
        sum += metadata[i];
    (void)sum;
    REQUIRE(eb_finetuner_set_metadata(model, metadata, metadata_size) == EB_OK);
}

/* One pass of training suited to the kind, on the probe rows. */
static eb_status train_once(eb_finetuner *model, eb_matrix probe)
{
    if (eb_finetuner_kind_of(model) == EB_KIND_PAIR_LEARNER) {
        static const float similarity[PROBE_ROWS] = {1.0f, 0.0f, 0.5f, 1.0f};
        eb_matrix shifted = probe;
        shifted.data += probe.stride;
        shifted.rows = PROBE_ROWS - 1;
        eb_matrix first = probe;
        first.rows = PROBE_ROWS - 1;
        return eb_finetuner_partial_fit_pairs(model, eb_pairs_aligned(first, shifted, similarity));
    }
    /* Two labels serve both kinds; a fitted model keeps its own class count. */
    int fitted = eb_finetuner_is_fitted(model);
    size_t classes = fitted ? eb_finetuner_n_classes(model) : 2;
    int32_t y[PROBE_ROWS];
    for (size_t i = 0; i < PROBE_ROWS; i++)
        y[i] = (int32_t)(i % 2 < classes ? i % 2 : 0);
    return eb_finetuner_partial_fit(model, probe, y, fitted ? 0 : classes, NULL);
}

static void exercise(const uint8_t *data, size_t size)
{
    static const uint8_t no_bytes[1] = {0};
    if (data == NULL)
        data = no_bytes; /* an empty input; the loader refuses a NULL buffer outright */
    eb_finetuner *model = NULL;
    eb_error err;
    eb_status status = eb_finetuner_load_from_buffer(data, size, NULL, &model, &err);
    /* eb_model_read_header is the loader's own header check: what it refuses, the loader refuses with its message. */
    eb_model_header header;
    eb_error header_err;
    eb_status header_status = eb_model_read_header(data, size, &header, &header_err);
    if (header_status != EB_OK)
        REQUIRE(header_status == EB_ERR_FORMAT && status == EB_ERR_FORMAT &&
                strcmp(header_err.message, err.message) == 0);
    else if (status == EB_OK)
        REQUIRE(header.payload_size == size - HEADER_SIZE && header.format_version >= 1 &&
                header.format_version <= EB_MODEL_FORMAT_VERSION);
    if (status != EB_OK) {
        REQUIRE(model == NULL);
        REQUIRE(status == EB_ERR_FORMAT);
        REQUIRE(err.status == status && err.message[0] != '\0');
        return;
    }
    REQUIRE(model != NULL);
    REQUIRE(eb_finetuner_kind_of(model) == header.kind && eb_finetuner_get_params(model).kind == header.kind);

    /* Every field the loader accepted is written back unchanged; version 1 comes back as the same model in version 2. */
    size_t saved_size;
    uint8_t *saved = save_checked(model, &saved_size);
    if (header.format_version == EB_MODEL_FORMAT_VERSION) {
        REQUIRE(saved_size == size);
        REQUIRE(memcmp(saved, data, size) == 0);
    } else {
        eb_finetuner *upgraded = NULL;
        REQUIRE(eb_finetuner_load_from_buffer(saved, saved_size, NULL, &upgraded, &err) == EB_OK);
        size_t again_size;
        uint8_t *again = save_checked(upgraded, &again_size);
        REQUIRE(again_size == saved_size && memcmp(again, saved, saved_size) == 0);
        free(again);
        eb_finetuner_free(upgraded);
    }

    /* The names and metadata, read and set back, leave the bytes as they were. */
    check_names_and_metadata(model);
    size_t resaved_size;
    uint8_t *resaved = save_checked(model, &resaved_size);
    REQUIRE(resaved_size == saved_size && memcmp(resaved, saved, saved_size) == 0);
    free(resaved);
    free(saved);

    /* Each allocation of a second load may fail; then nothing leaks and nothing is returned. */
    failing_allocator counter = {0, SIZE_MAX, 0};
    eb_allocator mem = {failing_calloc, failing_free, &counter};
    eb_finetuner *again = NULL;
    REQUIRE(eb_finetuner_load_from_buffer(data, size, &mem, &again, &err) == EB_OK);
    eb_finetuner_free(again);
    size_t allocations = counter.attempts;
    for (size_t fail_at = 0; fail_at < allocations; fail_at++) {
        counter = (failing_allocator){0, fail_at, 0};
        again = (eb_finetuner *)&counter;
        REQUIRE(eb_finetuner_load_from_buffer(data, size, &mem, &again, &err) == EB_ERR_NOMEM);
        REQUIRE(again == NULL && counter.live == 0);
    }

    size_t cols = eb_finetuner_is_fitted(model) ? eb_finetuner_n_features(model) : 3;
    float *x = probe_rows(data, size, cols);
    eb_matrix probe = eb_matrix_view(x, PROBE_ROWS, cols);
    if (eb_finetuner_is_fitted(model)) {
        size_t width = eb_finetuner_output_dim(model);
        float *out = calloc(PROBE_ROWS * width, sizeof *out);
        REQUIRE(out != NULL);
        /* Finite weights near FLT_MAX can still overflow an output: that is reported, never returned as inf. */
        status = eb_finetuner_transform(model, probe, eb_mut_matrix_view(out, PROBE_ROWS, width), &err);
        REQUIRE(status == EB_OK || (status == EB_ERR_NONFINITE && err.message[0] != '\0'));
        free(out);
    } else {
        float out[PROBE_ROWS];
        REQUIRE(eb_finetuner_transform(model, probe, eb_mut_matrix_view(out, PROBE_ROWS, 1), &err) ==
                EB_ERR_NOT_FITTED);
    }

    if (cheap_to_train(model)) {
        saved = save_checked(model, &saved_size);
        status = train_once(model, probe);
        /* Loaded weights and a loaded learning_rate may be extreme enough to diverge: that must fail cleanly. */
        if (status != EB_OK && status != EB_ERR_NOMEM && status != EB_ERR_TOO_LARGE && status != EB_ERR_NONFINITE)
            fprintf(stderr, "partial_fit on a loaded model: %s: %s\n", eb_status_string(status),
                    eb_finetuner_last_error(model));
        REQUIRE(status == EB_OK || status == EB_ERR_NOMEM || status == EB_ERR_TOO_LARGE || status == EB_ERR_NONFINITE);
        size_t after_size;
        uint8_t *after = save_checked(model, &after_size);
        if (status != EB_OK) {
            /* A failed call leaves the model exactly as it was. */
            REQUIRE(after_size == saved_size && memcmp(after, saved, saved_size) == 0);
        } else {
            /* A model that training produced always loads again. */
            eb_finetuner *reloaded = NULL;
            status = eb_finetuner_load_from_buffer(after, after_size, NULL, &reloaded, &err);
            if (status != EB_OK)
                fprintf(stderr, "a trained model does not load: %s\n", err.message);
            REQUIRE(status == EB_OK);
            eb_finetuner_free(reloaded);
        }
        free(after);
        free(saved);
    }
    free(x);
    eb_finetuner_free(model);
}

static void put_le(uint8_t *at, uint64_t value, size_t count)
{
    for (size_t i = 0; i < count; i++)
        at[i] = (uint8_t)(value >> (8 * i));
}

/* The input with a header that passes every header check for this version and kind. */
static void exercise_behind_checksum(uint32_t version, uint32_t kind, const uint8_t *data, size_t size)
{
    if (size < HEADER_SIZE)
        return;
    /* Exactly sized, so AddressSanitizer catches a read past the end. */
    uint8_t *copy = malloc(size);
    REQUIRE(copy != NULL);
    memcpy(copy, data, size);
    memcpy(copy, "EMBETTER", 8);
    put_le(copy + 8, version, 4);
    put_le(copy + 12, kind, 4);
    put_le(copy + 16, size - HEADER_SIZE, 8);
    /* Version 2's CRC also covers version, kind and length (bytes 8 to 24); version 1's only the payload. */
    uLong crc = crc32(0L, Z_NULL, 0);
    if (version >= 2)
        crc = crc32(crc, copy + 8, 16);
    put_le(copy + 24, crc32(crc, copy + HEADER_SIZE, (uInt)(size - HEADER_SIZE)), 4);
    exercise(copy, size);
    free(copy);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    exercise(data, size);
    /* Version 1 had no pair learners: the header check refuses that pairing before the payload. */
    for (uint32_t version = 1; version <= EB_MODEL_FORMAT_VERSION; version++)
        for (uint32_t kind = EB_KIND_FEEDFORWARD; kind <= EB_KIND_PAIR_LEARNER; kind++)
            if (version > 1 || kind != EB_KIND_PAIR_LEARNER)
                exercise_behind_checksum(version, kind, data, size);
    return 0;
}
