/*
 * libFuzzer target: arbitrary bytes into the word-vector loader.
 *
 * fuzz-corpus: word_vectors
 *
 * Every input is loaded from a buffer (eb_word_vectors_load_from_buffer) in
 * each of the four formats. A refused input must fail with EB_ERR_FORMAT (or
 * EB_ERR_TOO_LARGE for a header announcing more than memory can count) and a
 * message, and create nothing. An accepted one must behave like a real
 * vocabulary: a non-zero width and vocabulary, every stored vector finite,
 * loading again on three threads gives the same vectors, every allocation
 * of another load can fail cleanly, and encoding texts made from the input
 * gives finite rows of unit or zero length, the same on one or four threads.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "embetter/embetter.h"

enum { PROBE_TEXTS = 4 };

#include "fuzz_support.h"

static eb_encoder *load(const uint8_t *data, size_t size, eb_word_vector_format format, int normalize,
                        size_t threads, const eb_allocator *mem, eb_status *status, eb_error *err)
{
    eb_word_vector_params params = eb_word_vectors_default_params();
    params.format = format;
    params.normalize = normalize;
    params.n_threads = threads;
    eb_encoder *encoder = (eb_encoder *)&params; /* must be overwritten with NULL on failure */
    *status = eb_word_vectors_load_from_buffer(data, size, &params, mem, &encoder, err);
    return encoder;
}

/*
 * Encode probe texts cut from the input, so they share its words: first the raw bytes, which must encode or be
 * refused as invalid UTF-8 (or as an empty text), then the same cuts kept to printable ASCII, which must encode.
 */
static float *encode_probes(const eb_encoder *encoder, const uint8_t *data, size_t size, size_t dim)
{
    enum { PROBE_BYTES = 64 };
    eb_text texts[PROBE_TEXTS];
    char ascii[PROBE_TEXTS][PROBE_BYTES];
    eb_text ascii_texts[PROBE_TEXTS];
    for (size_t i = 0; i < PROBE_TEXTS; i++) {
        size_t start = size * i / PROBE_TEXTS;
        size_t length = size - start < PROBE_BYTES ? size - start : PROBE_BYTES;
        texts[i] = (eb_text){(const char *)data + start, length};
        size_t kept = 0;
        for (size_t b = 0; b < length; b++) {
            if (data[start + b] >= 0x20 && data[start + b] < 0x7f)
                ascii[i][kept++] = (char)data[start + b];
        }
        if (kept == 0)
            ascii[i][kept++] = 'x';
        ascii_texts[i] = (eb_text){ascii[i], kept};
    }
    float *out = calloc(PROBE_TEXTS * dim, sizeof *out);
    REQUIRE(out != NULL);
    eb_error err;
    eb_mut_matrix view = eb_mut_matrix_view(out, PROBE_TEXTS, dim);
    eb_status status = eb_encoder_encode_texts(encoder, texts, PROBE_TEXTS, view, &err);
    REQUIRE(status == EB_OK || status == EB_ERR_INVALID_UTF8 || status == EB_ERR_EMPTY_INPUT);
    REQUIRE(status == EB_OK || err.message[0] != '\0');
    REQUIRE(eb_encoder_encode_texts(encoder, ascii_texts, PROBE_TEXTS, view, &err) == EB_OK);
    return out;
}

static void exercise(const uint8_t *data, size_t size, eb_word_vector_format format)
{
    eb_status status;
    eb_error err;
    int normalize = size % 2 == 0;
    eb_encoder *encoder = load(data, size, format, normalize, 1, NULL, &status, &err);
    if (status != EB_OK) {
        REQUIRE(encoder == NULL);
        REQUIRE(status == EB_ERR_FORMAT || status == EB_ERR_TOO_LARGE);
        REQUIRE(err.status == status && err.message[0] != '\0');
        return;
    }
    REQUIRE(encoder != NULL);
    size_t dim = eb_encoder_output_dim(encoder);
    size_t vocab = eb_word_vectors_vocab_size(encoder);
    REQUIRE(dim > 0 && vocab > 0);
    REQUIRE(strcmp(eb_encoder_name(encoder), "word_vectors") == 0);

    /* Splitting the parse across threads changes nothing. */
    eb_encoder *threaded = load(data, size, format, normalize, 3, NULL, &status, &err);
    REQUIRE(status == EB_OK);
    REQUIRE(eb_encoder_output_dim(threaded) == dim && eb_word_vectors_vocab_size(threaded) == vocab);

    /* Each allocation of another load may fail; then nothing leaks and nothing is returned. */
    failing_allocator counter = {0, SIZE_MAX, 0};
    eb_allocator mem = {failing_calloc, failing_free, &counter};
    eb_encoder *again = load(data, size, format, normalize, 1, &mem, &status, &err);
    REQUIRE(status == EB_OK);
    eb_encoder_free(again);
    REQUIRE(counter.live == 0);
    size_t allocations = counter.attempts;
    for (size_t fail_at = 0; fail_at < allocations; fail_at++) {
        counter = (failing_allocator){0, fail_at, 0};
        again = load(data, size, format, normalize, 1, &mem, &status, &err);
        REQUIRE(status == EB_ERR_NOMEM && again == NULL && counter.live == 0);
    }

    float *out = encode_probes(encoder, data, size, dim);
    float *out_threaded = encode_probes(threaded, data, size, dim);
    REQUIRE(memcmp(out, out_threaded, PROBE_TEXTS * dim * sizeof *out) == 0);
    for (size_t i = 0; i < PROBE_TEXTS; i++) {
        double norm = 0;
        for (size_t c = 0; c < dim; c++) {
            REQUIRE(isfinite(out[i * dim + c]));
            norm += (double)out[i * dim + c] * out[i * dim + c];
        }
        if (normalize)
            REQUIRE(norm == 0 || fabs(sqrt(norm) - 1.0) < 1e-3);
    }
    free(out);
    free(out_threaded);
    eb_encoder_free(threaded);
    eb_encoder_free(encoder);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const uint8_t no_bytes[1] = {0};
    if (data == NULL)
        data = no_bytes; /* an empty input; the loader refuses a NULL buffer with a size outright */
    static const eb_word_vector_format formats[] = {EB_WORD_VECTORS_AUTO, EB_WORD_VECTORS_TEXT, EB_WORD_VECTORS_GLOVE,
                                                    EB_WORD_VECTORS_BINARY};
    for (size_t i = 0; i < sizeof formats / sizeof formats[0]; i++)
        exercise(data, size, formats[i]);
    return 0;
}
