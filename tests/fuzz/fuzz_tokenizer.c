/*
 * libFuzzer target: the WordPiece tokenizer's loaders (tokenizer.json and
 * vocab.txt) and its encoding of arbitrary bytes.
 *
 * fuzz-corpus: tokenizer
 *
 * Input: one flag byte, then a tokenizer file, then (after the first two NUL
 * bytes, if any) a text; without the separator the file's own bytes are also
 * the text. Flag bit 0 picks tokenizer.json over vocab.txt, bits 1-4 the
 * vocab.txt options, bits 5-7 the max_length.
 *
 * A refused file must fail with EB_ERR_FORMAT (EB_ERR_TOO_LARGE for a huge
 * one) and a message, and create nothing. An accepted one must survive every
 * allocation failing in turn without leaking. Encoding, with the loaded
 * tokenizer and with a fixed small one, must succeed or refuse invalid UTF-8,
 * give [CLS] ... [SEP] within max_length with every id below the id bound,
 * give the same ids twice, and a shorter max_length must give a prefix of the
 * longer one's tokens.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "embetter/embetter.h"
#include "wordpiece.h"

#include "fuzz_support.h"

static const size_t max_lengths[8] = {2, 3, 5, 8, 16, 64, 128, 512};

static eb_wordpiece *load(const uint8_t *file, size_t size, uint8_t flags, const eb_allocator *mem,
                          eb_status *status, eb_error *err)
{
    eb_wordpiece *wp = (eb_wordpiece *)&wp; /* must be overwritten with NULL on failure */
    if (flags & 1) {
        *status = eb__wordpiece_from_json((const char *)file, size, mem, &wp, err);
    } else {
        eb_wordpiece_options options = {(flags & 2) != 0, (flags & 4) != 0, (flags & 8) != 0,
                                        (flags & 16) ? -1 : (flags & 8) != 0};
        *status = eb__wordpiece_from_vocab((const char *)file, size, &options, mem, &wp, err);
    }
    return wp;
}

/* Encode text with wp at max_length and at the longest length, checking every invariant. */
static void check_encoding(const eb_wordpiece *wp, const uint8_t *text, size_t length, size_t max_length)
{
    eb_error err;
    eb_wordpiece_scratch *scratch = NULL;
    REQUIRE(eb__wordpiece_scratch_create(wp, NULL, &scratch, &err) == EB_OK);
    int32_t *ids = calloc(512, sizeof *ids);
    int32_t *again = calloc(512, sizeof *again);
    int32_t *longer = calloc(512, sizeof *longer);
    uint8_t *mask = calloc(512, 1);
    REQUIRE(ids != NULL && again != NULL && longer != NULL && mask != NULL);
    size_t n = 0, n_again = 0, n_longer = 0;
    eb_status status = eb__wordpiece_encode(wp, scratch, (const char *)text, length, max_length, ids, mask, &n, &err);
    if (status != EB_OK) {
        REQUIRE(status == EB_ERR_INVALID_UTF8 && err.message[0] != '\0');
    } else {
        size_t bound = eb__wordpiece_id_bound(wp);
        REQUIRE(n >= 2 && n <= max_length);
        REQUIRE(ids[0] == eb__wordpiece_cls_id(wp) && ids[n - 1] == eb__wordpiece_sep_id(wp));
        for (size_t i = 0; i < n; i++)
            REQUIRE(ids[i] >= 0 && (size_t)ids[i] < bound);
        for (size_t i = 0; i < max_length; i++)
            REQUIRE(mask[i] == (i < n));
        REQUIRE(eb__wordpiece_encode(wp, scratch, (const char *)text, length, max_length, again, NULL, &n_again,
                                     &err) == EB_OK);
        REQUIRE(n_again == n && memcmp(ids, again, n * sizeof *ids) == 0);
        REQUIRE(eb__wordpiece_encode(wp, scratch, (const char *)text, length, 512, longer, NULL, &n_longer, &err) ==
                EB_OK);
        REQUIRE(n_longer >= n && memcmp(ids, longer, (n - 1) * sizeof *ids) == 0);
        if (n < max_length)
            REQUIRE(n_longer == n);
    }
    free(ids);
    free(again);
    free(longer);
    free(mask);
    eb__wordpiece_scratch_free(scratch);
}

static const eb_wordpiece *fixed_tokenizer(void)
{
    static eb_wordpiece *wp;
    if (wp == NULL) {
        static const char vocab[] = "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nthe\n##s\na\n##a\nb\n##b\n,\n.\n!\n中\n"
                                    "e\n##e\nhello\nworld\n\xc3\xa9\n##\xc3\xa9\n";
        eb_error err;
        REQUIRE(eb__wordpiece_from_vocab(vocab, sizeof vocab - 1, NULL, NULL, &wp, &err) == EB_OK);
    }
    return wp;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    uint8_t flags = data[0];
    const uint8_t *file = data + 1;
    size_t file_size = size - 1;
    const uint8_t *text = file;
    size_t text_size = file_size;
    for (size_t i = 0; i + 1 < file_size; i++) {
        if (file[i] == 0 && file[i + 1] == 0) {
            text = file + i + 2;
            text_size = file_size - i - 2;
            file_size = i;
            break;
        }
    }
    size_t max_length = max_lengths[flags >> 5];

    check_encoding(fixed_tokenizer(), text, text_size, max_length);

    eb_status status;
    eb_error err;
    eb_wordpiece *wp = load(file, file_size, flags, NULL, &status, &err);
    if (status != EB_OK) {
        REQUIRE(wp == NULL);
        REQUIRE(status == EB_ERR_FORMAT || status == EB_ERR_TOO_LARGE);
        REQUIRE(err.status == status && err.message[0] != '\0');
        return 0;
    }
    REQUIRE(wp != NULL);
    REQUIRE(eb__wordpiece_id_bound(wp) > 0);

    /* Each allocation of another load may fail; then nothing leaks and nothing is returned. */
    failing_allocator counter = {0, SIZE_MAX, 0};
    eb_allocator mem = {failing_calloc, failing_free, &counter};
    eb_wordpiece *again = load(file, file_size, flags, &mem, &status, &err);
    REQUIRE(status == EB_OK);
    eb__wordpiece_free(again);
    REQUIRE(counter.live == 0);
    size_t allocations = counter.attempts;
    for (size_t fail_at = 0; fail_at < allocations; fail_at++) {
        counter = (failing_allocator){0, fail_at, 0};
        again = load(file, file_size, flags, &mem, &status, &err);
        REQUIRE(status == EB_ERR_NOMEM && again == NULL && counter.live == 0);
    }

    check_encoding(wp, text, text_size, max_length);
    eb__wordpiece_free(wp);
    return 0;
}
