#define _POSIX_C_SOURCE 200809L
/*
 * The encoder interface and the three built-in encoders, from C: the hashing
 * rules on texts small enough to list their n-grams, the input policy (every
 * kind of bad input is a status with a message naming the row), thread
 * independence of the output, histogram buckets at numpy's edges, word-vector
 * files good and malformed, and allocation failures that leak nothing.
 * Element-wise equality with scikit-learn on the fortunes corpus lives in
 * tests/python/test_text_hashing.py.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <float.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "encoder_internal.h"
#include "helpers.h"

static eb_text text_of(const char *s)
{
    eb_text t = {s, strlen(s)};
    return t;
}

static eb_encoder *make_hashing(eb_hashing_params p)
{
    eb_encoder *enc = NULL;
    eb_error err;
    assert_int_equal(eb_hashing_encoder_create(&p, NULL, &enc, &err), EB_OK);
    assert_non_null(enc);
    return enc;
}

/* Encode one text into a fresh row (caller frees). */
static float *encode_one(const eb_encoder *enc, eb_text text)
{
    size_t dim = eb_encoder_output_dim(enc);
    float *row = calloc(dim, sizeof *row);
    assert_non_null(row);
    eb_error err;
    eb_status status = eb_encoder_encode_texts(enc, &text, 1, eb_mut_matrix_view(row, 1, dim), &err);
    if (status != EB_OK)
        fail_msg("encode failed: %s", err.message);
    return row;
}

static void expect_message(const eb_error *err, const char *needle)
{
    if (strstr(err->message, needle) == NULL)
        fail_msg("message \"%s\" lacks \"%s\"", err->message, needle);
}

/* ---- MurmurHash3 ---------------------------------------------------------------- */

/* Reference values of sklearn.utils.murmurhash3_32 (an independent implementation). */
static void murmurhash_matches_scikit_learn(void **state)
{
    (void)state;
    assert_int_equal(eb_murmurhash3_32("foo", 3, 0), -156908512);
    assert_int_equal(eb_murmurhash3_32("foo", 3, 42), -1322301282);
    assert_int_equal(eb_murmurhash3_32("", 0, 0), 0);
    assert_int_equal(eb_murmurhash3_32("", 0, 1), 1364076727);
    assert_int_equal(eb_murmurhash3_32("hello world", 11, 0), 1586663183);
    assert_int_equal(eb_murmurhash3_32("\xc3\xa9\xe6\x97\xa5\xe6\x9c\xac", 8, 0), -378613425);
    assert_int_equal(eb_murmurhash3_32("abcd", 4, 0), 1139631978);
    assert_int_equal(eb_murmurhash3_32("abcde", 5, 7), -1257012173);
}

/* ---- hashing rules ---------------------------------------------------------------- */

/* Expected raw counts built from a list of features with the public hash, the way scikit-learn buckets them. */
static void add_expected(float *expected, size_t n_features, bool alternate_sign, const char *feature)
{
    int32_t h = eb_murmurhash3_32(feature, strlen(feature), 0);
    int64_t magnitude = h < 0 ? -(int64_t)h : (int64_t)h;
    size_t index = (size_t)(magnitude % (int64_t)n_features);
    expected[index] += (alternate_sign && h < 0) ? -1.0f : 1.0f;
}

static void expect_features(eb_hashing_params p, const char *text, const char *const *features, size_t n)
{
    eb_encoder *enc = make_hashing(p);
    float *row = encode_one(enc, text_of(text));
    float *expected = calloc(p.n_features, sizeof *expected);
    assert_non_null(expected);
    for (size_t i = 0; i < n; i++)
        add_expected(expected, p.n_features, p.alternate_sign != 0, features[i]);
    for (size_t c = 0; c < p.n_features; c++) {
        if (row[c] != expected[c])
            fail_msg("\"%s\": bucket %zu is %g, expected %g", text, c, row[c], expected[c]);
    }
    free(expected);
    free(row);
    eb_encoder_free(enc);
}

static void char_wb_pads_words_and_counts_short_ones_once(void **state)
{
    (void)state;
    eb_hashing_params p = eb_hashing_default_params();
    p.norm = EB_NORM_NONE;
    p.n_features = 1 << 20; /* wide enough that these few features do not collide */
    /* " ab " has 4 characters: n = 4 takes it whole and stops; "c" padded is " c ", shorter than 3. */
    const char *features[] = {" a", "ab", "b ", " ab", "ab ", " ab ", " c", "c ", " c "};
    expect_features(p, "AB\t c", features, sizeof features / sizeof *features);
}

static void char_squeezes_whitespace_runs_only(void **state)
{
    (void)state;
    eb_hashing_params p = eb_hashing_default_params();
    p.analyzer = EB_ANALYZER_CHAR;
    p.ngram_min = 1;
    p.ngram_max = 2;
    p.norm = EB_NORM_NONE;
    p.lowercase = 0;
    p.alternate_sign = 0;
    p.n_features = 1 << 20;
    /* "a \t b\nC": the run " \t " becomes one space, the single "\n" stays. */
    const char *features[] = {"a", " ", "b", "\n", "C", "a ", " b", "b\n", "\nC"};
    expect_features(p, "a \t b\nC", features, sizeof features / sizeof *features);
}

static void word_tokens_need_two_word_characters(void **state)
{
    (void)state;
    eb_hashing_params p = eb_hashing_default_params();
    p.analyzer = EB_ANALYZER_WORD;
    p.ngram_min = 1;
    p.ngram_max = 2;
    p.norm = EB_NORM_NONE;
    p.n_features = 1 << 20;
    /* "a" is one character and no token; "_x1" is a token (underscore and digits are word characters). */
    const char *features[] = {"hello", "_x1", "world", "hello _x1", "_x1 world"};
    expect_features(p, "Hello, a _x1 -- WORLD!", features, sizeof features / sizeof *features);
}

static void lowercasing_follows_python(void **state)
{
    (void)state;
    eb_hashing_params p = eb_hashing_default_params();
    p.analyzer = EB_ANALYZER_WORD;
    p.ngram_min = 1;
    p.ngram_max = 1;
    p.norm = EB_NORM_NONE;
    p.n_features = 1 << 20;
    /*
     * U+0130 lowers to "i" + U+0307, a combining mark and so no word character: the token is "stanbul".
     * A word-final capital sigma lowers to U+03C2, one followed by a letter to U+03C3.
     */
    const char *features[] = {"stanbul", "\xce\xbf\xce\xb4\xce\xbf\xcf\x82",
                              "\xcf\x83\xce\xb1\xcf\x83\xce\xb1"};
    expect_features(p, "\xc4\xb0STANBUL \xce\x9f\xce\x94\xce\x9f\xce\xa3 \xce\xa3\xce\x91\xce\xa3\xce\xb1", features,
                    sizeof features / sizeof *features);
}

static void norms_scale_rows(void **state)
{
    (void)state;
    eb_hashing_params p = eb_hashing_default_params();
    const char *text = "the quick brown fox jumps over the lazy dog";
    p.norm = EB_NORM_NONE;
    eb_encoder *raw_enc = make_hashing(p);
    float *raw = encode_one(raw_enc, text_of(text));
    p.norm = EB_NORM_L2;
    eb_encoder *l2_enc = make_hashing(p);
    float *l2 = encode_one(l2_enc, text_of(text));
    p.norm = EB_NORM_L1;
    eb_encoder *l1_enc = make_hashing(p);
    float *l1 = encode_one(l1_enc, text_of(text));
    double sq = 0, abs_sum = 0;
    for (size_t c = 0; c < p.n_features; c++) {
        sq += (double)raw[c] * raw[c];
        abs_sum += fabs(raw[c]);
    }
    assert_true(sq > 0);
    for (size_t c = 0; c < p.n_features; c++) {
        assert_true(l2[c] == (float)(raw[c] / sqrt(sq)));
        assert_true(l1[c] == (float)(raw[c] / abs_sum));
    }
    /* A text of only spaces has no features: a zero row, not NaN. */
    float *spaces = encode_one(l2_enc, text_of("   \n "));
    for (size_t c = 0; c < p.n_features; c++)
        assert_true(spaces[c] == 0.0f);
    free(spaces);
    free(raw);
    free(l2);
    free(l1);
    eb_encoder_free(raw_enc);
    eb_encoder_free(l2_enc);
    eb_encoder_free(l1_enc);
}

static void embedded_nul_is_part_of_the_text(void **state)
{
    (void)state;
    eb_hashing_params p = eb_hashing_default_params();
    p.norm = EB_NORM_NONE;
    eb_encoder *enc = make_hashing(p);
    const char with_nul[] = {'a', 'b', '\0', 'c', 'd'};
    eb_text t = {with_nul, sizeof with_nul};
    float *a = encode_one(enc, t);
    float *b = encode_one(enc, text_of("ab"));
    double total_a = 0, total_b = 0;
    for (size_t c = 0; c < p.n_features; c++) {
        total_a += fabs(a[c]);
        total_b += fabs(b[c]);
    }
    /* "ab\0cd" is one word of 7 padded characters: 6 + 5 + 4 n-grams; "ab" gives 3 + 2 + 1. */
    assert_true(memcmp(a, b, p.n_features * sizeof *a) != 0);
    assert_true(total_a <= 15 && total_a > total_b);
    free(a);
    free(b);
    eb_encoder_free(enc);
}

/*
 * The whole size_t range of ngram_min/ngram_max is valid: SIZE_MAX as the
 * upper end means every length a text has (the same as any bound above its
 * length), and as the lower end nothing at all, or whole padded words for
 * char_wb (a word shorter than n counts once).
 */
static void extreme_ngram_ranges_work(void **state)
{
    (void)state;
    eb_text texts[3] = {text_of("short words \xce\x9f\xce\x94\xce\x9f\xce\xa3"), text_of("x"),
                        text_of("one two three four five six seven")};
    const eb_hashing_analyzer analyzers[] = {EB_ANALYZER_CHAR_WB, EB_ANALYZER_CHAR, EB_ANALYZER_WORD};
    for (size_t a = 0; a < 3; a++) {
        eb_hashing_params p = eb_hashing_default_params();
        p.analyzer = analyzers[a];
        p.n_features = 256;
        p.ngram_min = 1;
        p.ngram_max = SIZE_MAX;
        eb_encoder *widest = make_hashing(p);
        p.ngram_max = 100;
        eb_encoder *wide = make_hashing(p);
        p.ngram_min = SIZE_MAX;
        p.ngram_max = SIZE_MAX;
        eb_encoder *beyond = make_hashing(p);
        float x[3 * 256], y[3 * 256], z[3 * 256];
        eb_error err;
        assert_int_equal(eb_encoder_encode_texts(widest, texts, 3, eb_mut_matrix_view(x, 3, 256), &err), EB_OK);
        assert_int_equal(eb_encoder_encode_texts(wide, texts, 3, eb_mut_matrix_view(y, 3, 256), &err), EB_OK);
        assert_int_equal(eb_encoder_encode_texts(beyond, texts, 3, eb_mut_matrix_view(z, 3, 256), &err), EB_OK);
        assert_memory_equal(x, y, sizeof x);
        size_t nonzero = 0;
        for (size_t i = 0; i < 3 * 256; i++)
            nonzero += z[i] != 0.0f;
        if (analyzers[a] == EB_ANALYZER_CHAR_WB)
            assert_true(nonzero >= 3);
        else
            assert_int_equal(nonzero, 0);
        eb_encoder_free(widest);
        eb_encoder_free(wide);
        eb_encoder_free(beyond);
    }
}

static void hashing_params_are_checked(void **state)
{
    (void)state;
    eb_error err;
    eb_encoder *enc = (eb_encoder *)&err; /* must be reset to NULL on failure */
    eb_hashing_params p = eb_hashing_default_params();
    p.ngram_min = 0;
    assert_int_equal(eb_hashing_encoder_create(&p, NULL, &enc, &err), EB_ERR_INVALID_PARAM);
    assert_null(enc);
    expect_message(&err, "ngram_min");
    p = eb_hashing_default_params();
    p.ngram_min = 3;
    p.ngram_max = 2;
    assert_int_equal(eb_hashing_check_params(&p, &err), EB_ERR_INVALID_PARAM);
    expect_message(&err, "ngram_max");
    p = eb_hashing_default_params();
    p.n_features = 0;
    assert_int_equal(eb_hashing_check_params(&p, &err), EB_ERR_INVALID_PARAM);
    expect_message(&err, "n_features");
    p = eb_hashing_default_params();
    p.norm = (eb_norm)7;
    assert_int_equal(eb_hashing_check_params(&p, &err), EB_ERR_INVALID_PARAM);
    expect_message(&err, "norm");
    p = eb_hashing_default_params();
    p.analyzer = (eb_hashing_analyzer)9;
    assert_int_equal(eb_hashing_check_params(&p, &err), EB_ERR_INVALID_PARAM);
    expect_message(&err, "analyzer");
    p = eb_hashing_default_params();
    p.n_threads = EB_ENCODER_MAX_THREADS + 1;
    assert_int_equal(eb_hashing_check_params(&p, &err), EB_ERR_INVALID_PARAM);
    expect_message(&err, "n_threads");
    assert_int_equal(eb_hashing_encoder_create(NULL, NULL, &enc, &err), EB_ERR_NULL_POINTER);
    p = eb_hashing_default_params();
    p.n_features = 77;
    enc = make_hashing(p);
    eb_hashing_params got;
    assert_int_equal(eb_hashing_encoder_get_params(enc, &got, &err), EB_OK);
    assert_int_equal(got.n_features, 77);
    assert_int_equal(eb_encoder_output_dim(enc), 77);
    assert_int_equal(eb_encoder_input_kind(enc), EB_INPUT_TEXT);
    assert_string_equal(eb_encoder_name(enc), "hashing");
    eb_encoder_free(enc);
    eb_encoder_free(NULL);
}

/* ---- input policy ------------------------------------------------------------------ */

static void expect_text_rejected(const eb_encoder *enc, const eb_text *texts, size_t n, eb_mut_matrix out,
                                 eb_status status, const char *needle)
{
    eb_error err;
    assert_int_equal(eb_encoder_encode_texts(enc, texts, n, out, &err), status);
    assert_int_equal(err.status, status);
    expect_message(&err, needle);
}

static void invalid_utf8_is_rejected_with_row_and_offset(void **state)
{
    (void)state;
    eb_hashing_params p = eb_hashing_default_params();
    p.n_features = 8;
    eb_encoder *enc = make_hashing(p);
    float out[2 * 8];
    eb_mut_matrix view = eb_mut_matrix_view(out, 2, 8);
    const char *bad[] = {
        "abc\xc0\xaf",         /* overlong '/' */
        "abc\xed\xa0\x80",     /* UTF-16 surrogate */
        "abc\xf4\x90\x80\x80", /* above U+10FFFF */
        "abc\xe2\x82",         /* truncated */
        "abc\x80",             /* lone continuation byte */
        "abc\xff",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        eb_text texts[2] = {text_of("fine \xe2\x82\xac"), text_of(bad[i])};
        expect_text_rejected(enc, texts, 2, view, EB_ERR_INVALID_UTF8, "text 1 is not valid UTF-8 at byte 3");
        size_t offset = 99;
        assert_int_equal(eb_utf8_valid(bad[i], strlen(bad[i]), &offset), 0);
        assert_int_equal(offset, 3);
    }
    assert_int_equal(eb_utf8_valid("\xf0\x9f\x98\x80 ok \xc3\xa9", 10, NULL), 1);
    eb_encoder_free(enc);
}

static void bad_batches_are_rejected(void **state)
{
    (void)state;
    eb_hashing_params p = eb_hashing_default_params();
    p.n_features = 8;
    eb_encoder *enc = make_hashing(p);
    float out[2 * 8];
    eb_text texts[2] = {text_of("one"), text_of("two")};
    expect_text_rejected(enc, texts, 0, eb_mut_matrix_view(out, 0, 8), EB_ERR_EMPTY_INPUT, "0 texts");
    expect_text_rejected(enc, NULL, 2, eb_mut_matrix_view(out, 2, 8), EB_ERR_NULL_POINTER, "texts");
    expect_text_rejected(NULL, texts, 2, eb_mut_matrix_view(out, 2, 8), EB_ERR_NULL_POINTER, "encoder");
    expect_text_rejected(enc, texts, 2, eb_mut_matrix_view(out, 2, 7), EB_ERR_SHAPE_MISMATCH, "2 x 8");
    expect_text_rejected(enc, texts, 2, eb_mut_matrix_view(out, 1, 8), EB_ERR_SHAPE_MISMATCH, "2 x 8");
    expect_text_rejected(enc, texts, 2, eb_mut_matrix_view(NULL, 2, 8), EB_ERR_NULL_POINTER, "out.data");
    eb_text null_text[2] = {text_of("one"), {NULL, 4}};
    expect_text_rejected(enc, null_text, 2, eb_mut_matrix_view(out, 2, 8), EB_ERR_NULL_POINTER, "text 1");
    /* An empty text, with or without data, is refused naming its row. */
    eb_text empty[2] = {text_of("one"), text_of("")};
    expect_text_rejected(enc, empty, 2, eb_mut_matrix_view(out, 2, 8), EB_ERR_EMPTY_INPUT, "text 1 is empty");
    eb_text null_empty[2] = {{NULL, 0}, text_of("two")};
    expect_text_rejected(enc, null_empty, 2, eb_mut_matrix_view(out, 2, 8), EB_ERR_EMPTY_INPUT, "text 0 is empty");
    eb_error err;
    /* A text encoder does not take images. */
    uint8_t pixel[3] = {1, 2, 3};
    eb_image image = {pixel, 1, 1, 3, 3};
    assert_int_equal(eb_encoder_encode_images(enc, &image, 1, eb_mut_matrix_view(out, 1, 8), &err),
                     EB_ERR_WRONG_INPUT_KIND);
    expect_message(&err, "takes texts");
    eb_encoder_free(enc);
}

/* ---- threads ------------------------------------------------------------------ */

typedef struct corpus {
    size_t n;
    char **owned;
    eb_text *texts;
} corpus;

/* Pseudo-random texts with ASCII and multi-byte characters and varied lengths. */
static corpus make_corpus(size_t n, uint64_t seed)
{
    static const char *pieces[] = {"alpha", "BETA", "gamma", " ", "  ", "\t", "\xc3\xa9t\xc3\xa9", "\xce\xa3\xce\xb1",
                                   "\xe6\x97\xa5\xe6\x9c\xac", "\xc4\xb0z", "42", "_x", ".", "\n"};
    corpus c = {n, calloc(n, sizeof(char *)), calloc(n, sizeof(eb_text))};
    assert_non_null(c.owned);
    assert_non_null(c.texts);
    test_rng rng = test_rng_make(seed);
    for (size_t i = 0; i < n; i++) {
        size_t count = 1 + test_rng_next(&rng) % 60; /* empty texts are refused */
        char *s = calloc(count * 12 + 1, 1);
        assert_non_null(s);
        for (size_t k = 0; k < count; k++)
            strcat(s, pieces[test_rng_next(&rng) % (sizeof pieces / sizeof *pieces)]);
        c.owned[i] = s;
        c.texts[i] = text_of(s);
    }
    return c;
}

static void corpus_release(corpus *c)
{
    for (size_t i = 0; i < c->n; i++)
        free(c->owned[i]);
    free(c->owned);
    free(c->texts);
}

static float *encode_corpus(const eb_encoder *enc, const corpus *c)
{
    size_t dim = eb_encoder_output_dim(enc);
    float *out = malloc(c->n * dim * sizeof *out);
    assert_non_null(out);
    eb_error err;
    eb_status status = eb_encoder_encode_texts(enc, c->texts, c->n, eb_mut_matrix_view(out, c->n, dim), &err);
    if (status != EB_OK)
        fail_msg("encode failed: %s", err.message);
    return out;
}

typedef struct concurrent_call {
    const eb_encoder *enc;
    const corpus *c;
    float *out;
} concurrent_call;

static void *encode_in_thread(void *arg)
{
    concurrent_call *call = arg;
    call->out = encode_corpus(call->enc, call->c);
    return NULL;
}

static void output_does_not_depend_on_threads(void **state)
{
    (void)state;
    /* About 4000 texts of ~150 bytes: big enough for the automatic rule to split. */
    corpus c = make_corpus(4000, 7);
    const eb_hashing_analyzer analyzers[] = {EB_ANALYZER_CHAR_WB, EB_ANALYZER_CHAR, EB_ANALYZER_WORD};
    for (size_t a = 0; a < 3; a++) {
        eb_hashing_params p = eb_hashing_default_params();
        p.analyzer = analyzers[a];
        p.ngram_min = 1;
        p.ngram_max = 3;
        p.n_features = 256;
        p.n_threads = 1;
        eb_encoder *single = make_hashing(p);
        p.n_threads = 2;
        eb_encoder *two = make_hashing(p);
        p.n_threads = 7;
        eb_encoder *seven = make_hashing(p);
        p.n_threads = EB_ENCODER_THREADS_AUTO;
        eb_encoder *automatic = make_hashing(p);
        float *expected = encode_corpus(single, &c);
        size_t bytes = c.n * p.n_features * sizeof(float);
        float *got = encode_corpus(two, &c);
        assert_memory_equal(expected, got, bytes);
        free(got);
        got = encode_corpus(seven, &c);
        assert_memory_equal(expected, got, bytes);
        free(got);
        /* Four callers at once on one encoder, each splitting its batch as well. */
        pthread_t threads[4];
        concurrent_call calls[4];
        for (size_t t = 0; t < 4; t++) {
            calls[t].enc = automatic;
            calls[t].c = &c;
            calls[t].out = NULL;
            assert_int_equal(pthread_create(&threads[t], NULL, encode_in_thread, &calls[t]), 0);
        }
        for (size_t t = 0; t < 4; t++) {
            assert_int_equal(pthread_join(threads[t], NULL), 0);
            assert_memory_equal(expected, calls[t].out, bytes);
            free(calls[t].out);
        }
        free(expected);
        eb_encoder_free(single);
        eb_encoder_free(two);
        eb_encoder_free(seven);
        eb_encoder_free(automatic);
    }
    corpus_release(&c);
}

static void allocation_failures_leak_nothing(void **state)
{
    (void)state;
    counting_allocator counter;
    eb_allocator mem = counting_allocator_init(&counter);
    corpus c = make_corpus(3000, 11);
    float *out = malloc(c.n * 64 * sizeof *out);
    float *expected = malloc(c.n * 64 * sizeof *expected);
    assert_non_null(out);
    assert_non_null(expected);
    /* Each analyzer, with and without lowercasing, allocates a different set of scratch buffers. */
    const eb_hashing_analyzer analyzers[] = {EB_ANALYZER_CHAR_WB, EB_ANALYZER_CHAR, EB_ANALYZER_WORD};
    for (size_t setting = 0; setting < 6; setting++) {
        eb_hashing_params p = eb_hashing_default_params();
        p.analyzer = analyzers[setting / 2];
        p.lowercase = (int)(setting % 2);
        p.ngram_min = 1;
        p.ngram_max = 2;
        p.n_features = 64;
        p.n_threads = 2;
        eb_encoder *reference = make_hashing(p);
        eb_error err;
        assert_int_equal(eb_encoder_encode_texts(reference, c.texts, c.n, eb_mut_matrix_view(expected, c.n, 64), &err),
                         EB_OK);
        eb_encoder_free(reference);
        size_t failures_seen = 0;
        for (size_t fail_at = 0;; fail_at++) {
            assert_true(fail_at < 100);
            counting_allocator_arm(&counter, fail_at);
            eb_encoder *enc = NULL;
            eb_status status = eb_hashing_encoder_create(&p, &mem, &enc, &err);
            if (status == EB_OK)
                status = eb_encoder_encode_texts(enc, c.texts, c.n, eb_mut_matrix_view(out, c.n, 64), &err);
            eb_encoder_free(enc);
            assert_int_equal(counter.live_blocks, 0);
            if (status == EB_OK) {
                assert_int_equal(counter.failures, 0);
                assert_memory_equal(out, expected, c.n * 64 * sizeof *out);
                break;
            }
            assert_int_equal(status, EB_ERR_NOMEM);
            expect_message(&err, "out of memory");
            failures_seen++;
        }
        /* create, the thread plan, and per thread the counters, flags, touched list and one or two buffers. */
        assert_true(failures_seen >= 8);
    }
    free(out);
    free(expected);
    corpus_release(&c);
}

/* ---- scratch memory ---------------------------------------------------------------- */

/*
 * One long text costs the hashing encoder a small multiple of its own size:
 * its scratch was 84 bytes per input byte (a code point and a size_t offset
 * per character, several times over), which made a 50 MB text take 1.3 GB.
 * Now at most the n_features arrays plus 4 bytes per byte of the text.
 */
static void hashing_scratch_is_a_small_multiple_of_the_text(void **state)
{
    (void)state;
    /* Uppercase, final sigma, the one expanding lowercase mapping, whitespace runs, 2- to 4-byte characters. */
    static const char piece[] = "The QUICK brown fox \xce\x9f\xce\x94\xce\x9f\xce\xa3 \xc4\xb0stanbul  \t caf\xc3\xa9 "
                                "\xe6\x97\xa5\xe6\x9c\xac \xf0\x9f\x98\x80 snake_case\n";
    const size_t length = 1 << 20;
    char *text = malloc(length);
    assert_non_null(text);
    size_t at = 0;
    while (at + sizeof piece - 1 <= length) {
        memcpy(text + at, piece, sizeof piece - 1);
        at += sizeof piece - 1;
    }
    eb_text t = {text, at};
    const eb_hashing_analyzer analyzers[] = {EB_ANALYZER_CHAR_WB, EB_ANALYZER_CHAR, EB_ANALYZER_WORD};
    for (size_t a = 0; a < 3; a++) {
        for (int lowercase = 0; lowercase <= 1; lowercase++) {
            eb_hashing_params p = eb_hashing_default_params();
            p.analyzer = analyzers[a];
            p.ngram_min = 1;
            p.ngram_max = 3;
            p.n_features = 64;
            p.lowercase = lowercase;
            p.n_threads = 1;
            counting_allocator counter;
            eb_allocator mem = counting_allocator_init(&counter);
            eb_encoder *enc = NULL;
            eb_error err;
            assert_int_equal(eb_hashing_encoder_create(&p, &mem, &enc, &err), EB_OK);
            counter.peak_bytes = counter.live_bytes;
            size_t before = counter.live_bytes;
            float row[64];
            eb_status status = eb_encoder_encode_texts(enc, &t, 1, eb_mut_matrix_view(row, 1, 64), &err);
            if (status != EB_OK)
                fail_msg("%s", err.message);
            size_t scratch = counter.peak_bytes - before;
            size_t bound = 4 * at + 64 * (sizeof(double) + 1 + sizeof(uint32_t)) + 64;
            if (scratch > bound)
                fail_msg("analyzer %d, lowercase %d: %zu bytes of scratch for a %zu-byte text (bound %zu)",
                         (int)analyzers[a], lowercase, scratch, at, bound);
            double norm = 0;
            for (size_t c = 0; c < 64; c++)
                norm += (double)row[c] * row[c];
            assert_true(fabs(norm - 1.0) < 1e-5);
            eb_encoder_free(enc);
            assert_int_equal(counter.live_blocks, 0);
        }
    }
    free(text);
}

/* The room eb__utf8_lower is promised: no character lowers to more than twice its UTF-8 bytes. */
static void lowercasing_at_most_doubles_the_bytes(void **state)
{
    (void)state;
    char in[4], out[8];
    size_t worst_in = 1, worst_out = 1;
    for (uint32_t cp = 0; cp < 0x110000; cp++) {
        if (cp >= 0xD800 && cp <= 0xDFFF)
            continue;
        size_t n = eb__utf8_put(cp, in);
        size_t m = eb__utf8_lower(in, n, out);
        assert_true(eb_utf8_valid(out, m, NULL));
        if (m > 2 * n)
            fail_msg("U+%04X lowers to %zu bytes from %zu", (unsigned)cp, m, n);
        if (m * worst_in > worst_out * n) {
            worst_in = n;
            worst_out = m;
        }
    }
    /* U+0130 (2 bytes) becomes "i" U+0307 (3 bytes): the bound is not slack by more than a third. */
    assert_true(2 * worst_out >= 3 * worst_in);
}

/* ---- allocators ---------------------------------------------------------------------- */

static void *never_called_calloc(void *ctx, size_t count, size_t size)
{
    (void)ctx;
    (void)count;
    (void)size;
    fail_msg("an allocator the encoder refused was called");
    return NULL;
}

static void never_called_free(void *ctx, void *ptr)
{
    (void)ctx;
    (void)ptr;
    fail_msg("an allocator the encoder refused was called");
}

/* Every way of creating a built-in encoder, with one allocator; path names a valid vector file. */
static eb_status create_kind(size_t kind, const eb_allocator *mem, const char *path, eb_encoder **out, eb_error *err)
{
    eb_hashing_params hp = eb_hashing_default_params();
    eb_word_vector_params wp = eb_word_vectors_default_params();
    switch (kind) {
    case 0: return eb_hashing_encoder_create(&hp, mem, out, err);
    case 1: return eb_word_vectors_load_from_buffer("1 2\nok 1 2\n", 11, &wp, mem, out, err);
    case 2: return eb_word_vectors_load(path, &wp, mem, out, err);
    default: return eb_color_histogram_encoder_create(4, 1, mem, out, err);
    }
}

static void allocators_without_calloc_or_free_are_refused(void **state)
{
    (void)state;
    char path[] = "/tmp/eb_test_allocator_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    FILE *f = fdopen(fd, "w");
    assert_non_null(f);
    fputs("1 2\nok 1 2\n", f);
    fclose(f);
    const eb_allocator bad[] = {
        {NULL, never_called_free, NULL},
        {never_called_calloc, NULL, NULL},
        {NULL, NULL, NULL},
    };
    const char *needles[] = {"the allocator's calloc is NULL", "the allocator's free is NULL",
                             "the allocator's calloc and free are NULL"};
    for (size_t kind = 0; kind < 4; kind++) {
        for (size_t b = 0; b < sizeof bad / sizeof *bad; b++) {
            eb_encoder *enc = (eb_encoder *)&bad;
            eb_error err;
            eb_status status = create_kind(kind, &bad[b], path, &enc, &err);
            if (status != EB_ERR_NULL_POINTER)
                fail_msg("kind %zu, allocator %zu: %s (%s)", kind, b, eb_status_string(status), err.message);
            assert_null(enc);
            expect_message(&err, needles[b]);
        }
    }
    remove(path);
}

/*
 * The encoder keeps a copy of the allocator struct, not a pointer to it: the
 * caller's struct may change or go out of scope after create.
 */
static void encoders_keep_a_copy_of_the_allocator(void **state)
{
    (void)state;
    char path[] = "/tmp/eb_test_allocator_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    FILE *f = fdopen(fd, "w");
    assert_non_null(f);
    fputs("1 2\nok 1 2\n", f);
    fclose(f);
    for (size_t kind = 0; kind < 4; kind++) {
        counting_allocator counter;
        eb_allocator mem = counting_allocator_init(&counter);
        eb_encoder *enc = NULL;
        eb_error err;
        assert_int_equal(create_kind(kind, &mem, path, &enc, &err), EB_OK);
        assert_true(counter.live_blocks >= 1);
        /* What a caller's stack slot holds once it is reused. */
        mem.calloc = never_called_calloc;
        mem.free = never_called_free;
        mem.ctx = NULL;
        size_t dim = eb_encoder_output_dim(enc);
        float *out = calloc(dim, sizeof *out);
        assert_non_null(out);
        if (kind == 3) {
            uint8_t pixels[2 * 2 * 3] = {0};
            eb_image im = {pixels, 2, 2, 3, 6};
            assert_int_equal(eb_encoder_encode_images(enc, &im, 1, eb_mut_matrix_view(out, 1, dim), &err), EB_OK);
        } else {
            eb_text t = text_of("ok then");
            size_t before = counter.attempts;
            assert_int_equal(eb_encoder_encode_texts(enc, &t, 1, eb_mut_matrix_view(out, 1, dim), &err), EB_OK);
            /* The scratch came from the counting allocator the encoder copied. */
            assert_true(counter.attempts > before);
        }
        free(out);
        eb_encoder_free(enc);
        assert_int_equal(counter.live_blocks, 0);
        assert_int_equal(counter.live_bytes, 0);
    }
    remove(path);
}

/* ---- a custom encoder through the same entry points ------------------------------- */

typedef struct length_encoder {
    eb_encoder base;
    int destroyed_flag_unused;
} length_encoder;

static size_t length_dim(const eb_encoder *e)
{
    (void)e;
    return 2;
}

static eb_status length_encode(const eb_encoder *e, const eb_text *texts, size_t n, eb_mut_matrix out, eb_error *err)
{
    (void)e;
    (void)err;
    for (size_t i = 0; i < n; i++) {
        out.data[i * out.stride] = (float)texts[i].length;
        out.data[i * out.stride + 1] = 1.0f;
    }
    return EB_OK;
}

static int custom_destroyed;

static void length_destroy(eb_encoder *e)
{
    (void)e;
    custom_destroyed++;
}

static const eb_encoder_vtable length_vtable = {"length", EB_INPUT_TEXT, length_dim, length_encode, NULL,
                                                length_destroy};

static void custom_encoders_get_the_same_checks(void **state)
{
    (void)state;
    length_encoder custom = {{&length_vtable}, 0};
    eb_encoder *enc = &custom.base;
    float out[6] = {0};
    eb_text texts[3] = {text_of("a"), text_of("abc"), text_of(" ")};
    eb_error err;
    assert_int_equal(eb_encoder_encode_texts(enc, texts, 3, eb_mut_matrix_view(out, 3, 2), &err), EB_OK);
    assert_true(out[0] == 1.0f && out[2] == 3.0f && out[4] == 1.0f && out[5] == 1.0f);
    /* The policy is checked before a custom encoder sees the batch. */
    eb_text with_empty[2] = {text_of("a"), text_of("")};
    assert_int_equal(eb_encoder_encode_texts(enc, with_empty, 2, eb_mut_matrix_view(out, 2, 2), &err),
                     EB_ERR_EMPTY_INPUT);
    eb_text bad[1] = {text_of("\xc3")};
    assert_int_equal(eb_encoder_encode_texts(enc, bad, 1, eb_mut_matrix_view(out, 1, 2), &err), EB_ERR_INVALID_UTF8);
    assert_int_equal(eb_encoder_encode_texts(enc, texts, 3, eb_mut_matrix_view(out, 3, 3), &err),
                     EB_ERR_SHAPE_MISMATCH);
    expect_message(&err, "length encoder");
    assert_string_equal(eb_encoder_name(enc), "length");
    eb_encoder_free(enc);
    assert_int_equal(custom_destroyed, 1);
}

/* ---- colour histogram --------------------------------------------------------------- */

static eb_encoder *make_histogram(size_t n_buckets)
{
    eb_encoder *enc = NULL;
    eb_error err;
    assert_int_equal(eb_color_histogram_encoder_create(n_buckets, 1, NULL, &enc, &err), EB_OK);
    return enc;
}

/* A 256 x 1 image whose red channel holds every value once, green the reverse, blue all 7. */
static void every_value_image(uint8_t *pixels)
{
    for (size_t x = 0; x < 256; x++) {
        pixels[3 * x] = (uint8_t)x;
        pixels[3 * x + 1] = (uint8_t)(255 - x);
        pixels[3 * x + 2] = 7;
    }
}

static void histogram_buckets_follow_numpy_edges(void **state)
{
    (void)state;
    uint8_t pixels[256 * 3];
    every_value_image(pixels);
    eb_image image = {pixels, 256, 1, 3, 256 * 3};
    eb_error err;
    /* 256 buckets: one per value. */
    eb_encoder *enc = make_histogram(256);
    float out[3 * 256];
    assert_int_equal(eb_encoder_encode_images(enc, &image, 1, eb_mut_matrix_view(out, 1, 768), &err), EB_OK);
    for (size_t b = 0; b < 256; b++) {
        assert_true(out[b] == 1.0f);
        assert_true(out[256 + b] == 1.0f);
        assert_true(out[512 + b] == (b == 7 ? 256.0f : 0.0f));
    }
    eb_encoder_free(enc);
    /* 2 buckets, edges 0, 127.5, 255: values 0..127 and 128..255. */
    enc = make_histogram(2);
    assert_int_equal(eb_encoder_encode_images(enc, &image, 1, eb_mut_matrix_view(out, 1, 6), &err), EB_OK);
    assert_true(out[0] == 128.0f && out[1] == 128.0f && out[4] == 256.0f && out[5] == 0.0f);
    eb_encoder_free(enc);
    /* 3 buckets, edges 0, 85, 170, 255: 85 opens bucket 1, 170 bucket 2, which also closes on 255. */
    enc = make_histogram(3);
    assert_int_equal(eb_encoder_encode_images(enc, &image, 1, eb_mut_matrix_view(out, 1, 9), &err), EB_OK);
    assert_true(out[0] == 85.0f && out[1] == 85.0f && out[2] == 86.0f);
    eb_encoder_free(enc);
    /* 1 bucket holds everything. */
    enc = make_histogram(1);
    assert_int_equal(eb_encoder_encode_images(enc, &image, 1, eb_mut_matrix_view(out, 1, 3), &err), EB_OK);
    assert_true(out[0] == 256.0f && out[1] == 256.0f && out[2] == 256.0f);
    eb_encoder_free(enc);
}

static void histogram_honours_stride(void **state)
{
    (void)state;
    /* 2 x 2 image in rows of 8 bytes; the 2 padding bytes of each row are 200 and must not be counted. */
    uint8_t pixels[16] = {10, 20, 30, 11, 21, 31, 200, 200, 12, 22, 32, 13, 23, 33, 200, 200};
    eb_image image = {pixels, 2, 2, 3, 8};
    eb_encoder *enc = make_histogram(256);
    float out[768];
    eb_error err;
    assert_int_equal(eb_encoder_encode_images(enc, &image, 1, eb_mut_matrix_view(out, 1, 768), &err), EB_OK);
    float total = 0;
    for (size_t i = 0; i < 768; i++)
        total += out[i];
    assert_true(total == 12.0f);
    assert_true(out[10] == 1.0f && out[13] == 1.0f && out[256 + 22] == 1.0f && out[512 + 33] == 1.0f);
    assert_true(out[200] == 0.0f);
    eb_encoder_free(enc);
}

static void bad_images_are_rejected(void **state)
{
    (void)state;
    eb_error err;
    eb_encoder *enc = (eb_encoder *)&err;
    assert_int_equal(eb_color_histogram_encoder_create(0, 1, NULL, &enc, &err), EB_ERR_INVALID_PARAM);
    assert_null(enc);
    expect_message(&err, "n_buckets is 0");
    assert_int_equal(eb_color_histogram_encoder_create(257, 1, NULL, &enc, &err), EB_ERR_INVALID_PARAM);
    expect_message(&err, "n_buckets is 257");
    enc = make_histogram(4);
    assert_int_equal(eb_encoder_input_kind(enc), EB_INPUT_IMAGE);
    uint8_t pixels[4 * 4 * 4] = {0};
    float out[2 * 12];
    eb_mut_matrix view = eb_mut_matrix_view(out, 2, 12);
    eb_image ok = {pixels, 2, 2, 3, 6};
    eb_image cases[][2] = {
        {ok, {pixels, 0, 2, 3, 6}},
        {ok, {pixels, 2, 0, 3, 6}},
        {ok, {pixels, 2, 2, 4, 8}},
        {ok, {pixels, 2, 2, 1, 2}},
        {ok, {pixels, 2, 2, 3, 5}},
        {ok, {NULL, 2, 2, 3, 6}},
    };
    eb_status expected[] = {EB_ERR_EMPTY_INPUT, EB_ERR_EMPTY_INPUT, EB_ERR_SHAPE_MISMATCH, EB_ERR_SHAPE_MISMATCH,
                            EB_ERR_SHAPE_MISMATCH, EB_ERR_NULL_POINTER};
    const char *needles[] = {"image 1 is 0 x 2", "image 1 is 2 x 0", "image 1 has 4 channels",
                             "image 1 has 1 channels", "image 1 has a row stride of 5", "image 1 has pixels NULL"};
    for (size_t i = 0; i < sizeof expected / sizeof *expected; i++) {
        assert_int_equal(eb_encoder_encode_images(enc, cases[i], 2, view, &err), expected[i]);
        expect_message(&err, needles[i]);
    }
    eb_text t = text_of("x");
    assert_int_equal(eb_encoder_encode_texts(enc, &t, 1, eb_mut_matrix_view(out, 1, 12), &err),
                     EB_ERR_WRONG_INPUT_KIND);
    eb_encoder_free(enc);
}

/* ---- word vectors ------------------------------------------------------------------ */

static eb_status load_vectors(const char *bytes, size_t size, eb_word_vector_format format, int normalize,
                              eb_encoder **out, eb_error *err)
{
    eb_word_vector_params p = eb_word_vectors_default_params();
    p.format = format;
    p.normalize = normalize;
    return eb_word_vectors_load_from_buffer(bytes, size, &p, NULL, out, err);
}

static const char vec_file[] = "4 3\n"
                               "hello 1 2 3\n"
                               "world -1 0.5 2e-1 \n"
                               "caf\xc3\xa9 0 0 1\n"
                               "Upper 9 9 9\n";

static void word_vectors_average_known_tokens(void **state)
{
    (void)state;
    eb_encoder *enc = NULL;
    eb_error err;
    assert_int_equal(load_vectors(vec_file, sizeof vec_file - 1, EB_WORD_VECTORS_AUTO, 0, &enc, &err), EB_OK);
    assert_int_equal(eb_word_vectors_vocab_size(enc), 4);
    assert_int_equal(eb_encoder_output_dim(enc), 3);
    const float *world = eb_word_vectors_lookup(enc, "world", 5);
    assert_non_null(world);
    assert_true(world[0] == -1.0f && world[1] == 0.5f && world[2] == 0.2f);
    assert_null(eb_word_vectors_lookup(enc, "nope", 4));
    /* "HELLO, World! Caf\u00c9 upper": tokens hello, world, caf\u00e9, upper; "upper" is unknown (stored "Upper"). */
    eb_text texts[3] = {text_of("HELLO, World!! CAF\xc3\x89 upper"), text_of("nothing known"), text_of("!?")};
    float out[9];
    assert_int_equal(eb_encoder_encode_texts(enc, texts, 3, eb_mut_matrix_view(out, 3, 3), &err), EB_OK);
    assert_true(fabsf(out[0] - 0.0f / 3) < 1e-6f);
    assert_true(fabsf(out[1] - 2.5f / 3) < 1e-6f);
    assert_true(fabsf(out[2] - 4.2f / 3) < 1e-6f);
    for (size_t c = 3; c < 9; c++)
        assert_true(out[c] == 0.0f);
    eb_encoder_free(enc);
    /* Normalised: the same direction at unit length; zero rows stay zero. */
    assert_int_equal(load_vectors(vec_file, sizeof vec_file - 1, EB_WORD_VECTORS_TEXT, 1, &enc, &err), EB_OK);
    float unit[9];
    assert_int_equal(eb_encoder_encode_texts(enc, texts, 3, eb_mut_matrix_view(unit, 3, 3), &err), EB_OK);
    double norm = sqrt((double)out[0] * out[0] + (double)out[1] * out[1] + (double)out[2] * out[2]);
    for (size_t c = 0; c < 3; c++)
        assert_true(fabs(unit[c] - out[c] / norm) < 1e-6);
    assert_true(unit[3] == 0.0f && unit[8] == 0.0f);
    eb_encoder_free(enc);
}

static void glove_and_binary_give_the_same_vectors(void **state)
{
    (void)state;
    const char glove[] = "hello 1 2 3\nworld -1 0.5 0.2\n";
    uint8_t binary[64];
    size_t size = 0;
    memcpy(binary, "2 3\n", 4);
    size = 4;
    const char *words[2] = {"hello", "world"};
    const float values[2][3] = {{1, 2, 3}, {-1, 0.5f, 0.2f}};
    for (size_t w = 0; w < 2; w++) {
        memcpy(binary + size, words[w], 5);
        binary[size + 5] = ' ';
        size += 6;
        for (size_t c = 0; c < 3; c++) {
            uint32_t bits;
            memcpy(&bits, &values[w][c], 4);
            for (size_t k = 0; k < 4; k++)
                binary[size++] = (uint8_t)(bits >> (8 * k));
        }
        binary[size++] = '\n';
    }
    eb_encoder *from_glove = NULL, *from_binary = NULL;
    eb_error err;
    assert_int_equal(load_vectors(glove, sizeof glove - 1, EB_WORD_VECTORS_AUTO, 1, &from_glove, &err), EB_OK);
    assert_int_equal(load_vectors((const char *)binary, size, EB_WORD_VECTORS_AUTO, 1, &from_binary, &err), EB_OK);
    for (size_t w = 0; w < 2; w++) {
        const float *a = eb_word_vectors_lookup(from_glove, words[w], 5);
        const float *b = eb_word_vectors_lookup(from_binary, words[w], 5);
        assert_non_null(a);
        assert_non_null(b);
        assert_memory_equal(a, values[w], sizeof values[w]);
        assert_memory_equal(b, values[w], sizeof values[w]);
    }
    eb_encoder_free(from_glove);
    eb_encoder_free(from_binary);
    /* Truncated binary: cut inside the last vector. */
    eb_encoder *enc = (eb_encoder *)&err;
    assert_int_equal(load_vectors((const char *)binary, size - 3, EB_WORD_VECTORS_BINARY, 1, &enc, &err),
                     EB_ERR_FORMAT);
    assert_null(enc);
    expect_message(&err, "byte 29: record 2 of 2 is truncated");
}

static void malformed_vector_files_name_the_line(void **state)
{
    (void)state;
    static const struct {
        const char *bytes;
        eb_word_vector_format format;
        const char *needle;
    } cases[] = {
        {"2 3\nhello 1 2 3\nworld 1 2\n", EB_WORD_VECTORS_TEXT, "line 3: 2 values after the word, expected 3"},
        {"2 3\nhello 1 2 3\nworld 1 2 3 4\n", EB_WORD_VECTORS_TEXT, "line 3: 4 values after the word, expected 3"},
        {"2 3\nhello 1 2 3\nworld 1 x2 3\n", EB_WORD_VECTORS_TEXT, "line 3, value 2: \"x2\" is not a number"},
        {"2 3\nhello 1 2 3\nworld 1 1e99 3\n", EB_WORD_VECTORS_TEXT, "line 3, value 2: \"1e99\" is outside"},
        {"2 3\nhello 1 2 3\nworld 1 inf 3\n", EB_WORD_VECTORS_TEXT, "line 3, value 2: \"inf\" is not finite"},
        {"3 3\nhello 1 2 3\nworld 1 2 3\nhello 4 5 6\n", EB_WORD_VECTORS_TEXT,
         "line 4: duplicate word \"hello\", first seen at line 2"},
        {"3 3\nhello 1 2 3\nworld 1 2 3\n", EB_WORD_VECTORS_TEXT, "announces 3 words, but the file ends after 2"},
        {"1 3\nhello 1 2 3\nworld 1 2 3\n", EB_WORD_VECTORS_TEXT, "line 3: more vector lines than the 1"},
        {"2 3\nhello 1 2 3\n\nworld 1 2 3\n", EB_WORD_VECTORS_TEXT, "line 3 is empty"},
        {"hello 1 2 3\nworld 1 2 3\n", EB_WORD_VECTORS_TEXT, "line 1: expected the header"},
        {"hello 1 2 3\nworld 1 2\n", EB_WORD_VECTORS_GLOVE, "line 2: 2 values after the word, expected 3"},
        {"hello\n", EB_WORD_VECTORS_GLOVE, "line 1: a word without any values"},
        {"5 3\nab \x01\x02\x03", EB_WORD_VECTORS_BINARY, "more than the 6 bytes after it can hold"},
        {"", EB_WORD_VECTORS_AUTO, "empty"},
        {"2 0\n", EB_WORD_VECTORS_TEXT, "0 dimensions"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        eb_encoder *enc = (eb_encoder *)&cases;
        eb_error err;
        eb_status status = load_vectors(cases[i].bytes, strlen(cases[i].bytes), cases[i].format, 1, &enc, &err);
        if (status != EB_ERR_FORMAT)
            fail_msg("case %zu: status %s (%s)", i, eb_status_string(status), err.message);
        assert_null(enc);
        expect_message(&err, cases[i].needle);
    }
}

static void word_vector_file_errors_name_the_file(void **state)
{
    (void)state;
    char path[] = "/tmp/eb_test_vectors_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    FILE *f = fdopen(fd, "w");
    assert_non_null(f);
    fputs("2 2\nok 1 2\nbad 1\n", f);
    fclose(f);
    eb_word_vector_params p = eb_word_vectors_default_params();
    eb_encoder *enc = NULL;
    eb_error err;
    assert_int_equal(eb_word_vectors_load(path, &p, NULL, &enc, &err), EB_ERR_FORMAT);
    expect_message(&err, path);
    expect_message(&err, "line 3: 1 values after the word, expected 2");
    remove(path);
    assert_int_equal(eb_word_vectors_load(path, &p, NULL, &enc, &err), EB_ERR_IO);
    assert_null(enc);
}

static void word_vector_allocation_failures_leak_nothing(void **state)
{
    (void)state;
    counting_allocator counter;
    eb_allocator mem = counting_allocator_init(&counter);
    eb_word_vector_params p = eb_word_vectors_default_params();
    size_t failures_seen = 0;
    for (size_t fail_at = 0; fail_at < 20; fail_at++) {
        counting_allocator_arm(&counter, fail_at);
        eb_encoder *enc = NULL;
        eb_error err;
        eb_status status = eb_word_vectors_load_from_buffer(vec_file, sizeof vec_file - 1, &p, &mem, &enc, &err);
        if (status == EB_OK) {
            eb_text t = text_of("hello world");
            float out[3];
            status = eb_encoder_encode_texts(enc, &t, 1, eb_mut_matrix_view(out, 1, 3), &err);
        }
        if (status != EB_OK) {
            assert_int_equal(status, EB_ERR_NOMEM);
            failures_seen++;
        }
        eb_encoder_free(enc);
        assert_int_equal(counter.live_blocks, 0);
    }
    assert_true(failures_seen >= 5);
}

/*
 * numpy.float32(float(token)) semantics at the ends of the range: what numpy
 * prints for the largest float, the smallest normal and subnormals (repr and
 * savetxt's %.18e) loads as exactly that float; only what rounds to infinity
 * is out of range.
 */
static void numpy_float32_extremes_load(void **state)
{
    (void)state;
    static const struct {
        const char *token;
        float expected;
    } values[] = {
        {"3.4028235e+38", FLT_MAX},
        {"-3.4028235e+38", -FLT_MAX},
        {"3.402823466385288598e+38", FLT_MAX},
        {"3.4028235677973362e38", FLT_MAX},
        {"1.1754944e-38", FLT_MIN},
        {"1.175494350822287508e-38", FLT_MIN},
        {"1e-45", 0x1p-149f},
        {"-1e-45", -0x1p-149f},
        {"1.401298464324817071e-45", 0x1p-149f},
        {"3e-45", 0x1p-148f},
        {"7e-46", 0.0f},
    };
    char file[1024];
    size_t at = 0;
    for (size_t i = 0; i < sizeof values / sizeof *values; i++)
        at += (size_t)snprintf(file + at, sizeof file - at, "w%zu %s 1\n", i, values[i].token);
    eb_encoder *enc = NULL;
    eb_error err;
    eb_status status = load_vectors(file, at, EB_WORD_VECTORS_AUTO, 0, &enc, &err);
    if (status != EB_OK)
        fail_msg("%s", err.message);
    for (size_t i = 0; i < sizeof values / sizeof *values; i++) {
        char word[8];
        int length = snprintf(word, sizeof word, "w%zu", i);
        const float *v = eb_word_vectors_lookup(enc, word, (size_t)length);
        assert_non_null(v);
        if (memcmp(&v[0], &values[i].expected, sizeof(float)) != 0)
            fail_msg("\"%s\" loaded as %a, expected %a", values[i].token, (double)v[0], (double)values[i].expected);
    }
    eb_encoder_free(enc);
    /* The first double that rounds to infinity in float32 (numpy gives inf with an overflow warning). */
    const char *over[] = {"w 3.4028235677973366e38 1\n", "w -3.4028236e+38 1\n", "w 1e39 1\n"};
    for (size_t i = 0; i < 3; i++) {
        assert_int_equal(load_vectors(over[i], strlen(over[i]), EB_WORD_VECTORS_GLOVE, 0, &enc, &err), EB_ERR_FORMAT);
        expect_message(&err, "is outside the float32 range");
    }
}

/* A UTF-8 byte-order mark before the header or the first word is skipped, in every format. */
static void byte_order_mark_is_skipped(void **state)
{
    (void)state;
    const char vec[] = "\xEF\xBB\xBF" "2 3\nhello 1 2 3\nworld 4 5 6\n";
    const char glove[] = "\xEF\xBB\xBF" "hello 1 2 3\nworld 4 5 6\n";
    uint8_t binary[64];
    memcpy(binary, "\xEF\xBB\xBF" "1 2\nhello ", 13);
    const float pair[2] = {1.0f, 2.0f};
    memcpy(binary + 13, pair, sizeof pair);
    static const float hello[3] = {1, 2, 3};
    const struct {
        const char *bytes;
        size_t size;
        eb_word_vector_format format;
    } cases[] = {
        {vec, sizeof vec - 1, EB_WORD_VECTORS_AUTO},
        {vec, sizeof vec - 1, EB_WORD_VECTORS_TEXT},
        {glove, sizeof glove - 1, EB_WORD_VECTORS_AUTO},
        {glove, sizeof glove - 1, EB_WORD_VECTORS_GLOVE},
        {(const char *)binary, 21, EB_WORD_VECTORS_AUTO},
        {(const char *)binary, 21, EB_WORD_VECTORS_BINARY},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        eb_encoder *enc = NULL;
        eb_error err;
        eb_status status = load_vectors(cases[i].bytes, cases[i].size, cases[i].format, 0, &enc, &err);
        if (status != EB_OK)
            fail_msg("case %zu: %s", i, err.message);
        const float *v = eb_word_vectors_lookup(enc, "hello", 5);
        if (v == NULL)
            fail_msg("case %zu: \"hello\" is not in the vocabulary", i);
        assert_memory_equal(v, i < 4 ? hello : pair, (i < 4 ? 3 : 2) * sizeof(float));
        eb_encoder_free(enc);
    }
    eb_encoder *enc = NULL;
    eb_error err;
    assert_int_equal(load_vectors("\xEF\xBB\xBF", 3, EB_WORD_VECTORS_AUTO, 0, &enc, &err), EB_ERR_FORMAT);
    expect_message(&err, "only a byte-order mark");
    /* Line numbers still count the line the mark is on as line 1. */
    const char bad[] = "\xEF\xBB\xBF" "2 3\nhello 1 2 3\nworld 4 5\n";
    assert_int_equal(load_vectors(bad, sizeof bad - 1, EB_WORD_VECTORS_AUTO, 0, &enc, &err), EB_ERR_FORMAT);
    expect_message(&err, "line 3: 2 values after the word, expected 3");
}

/*
 * A GloVe file takes its dim from the first line. A long first line followed
 * by many short ones once asked for lines x dim floats (an 800 KB file asked
 * for 160 GB) before any line was checked; the guard that files with a header
 * have must refuse it by name without allocating it.
 */
static void glove_files_get_the_allocation_guard(void **state)
{
    (void)state;
    const size_t dim = 20000, short_lines = 20000;
    size_t capacity = 16 + dim * 2 + short_lines * 4;
    char *file = malloc(capacity);
    assert_non_null(file);
    size_t at = 0;
    file[at++] = 'a';
    for (size_t c = 0; c < dim; c++) {
        file[at++] = ' ';
        file[at++] = '1';
    }
    file[at++] = '\n';
    for (size_t r = 0; r < short_lines; r++) {
        memcpy(file + at, "b 1\n", 4);
        at += 4;
    }
    counting_allocator counter;
    eb_allocator mem = counting_allocator_init(&counter);
    eb_word_vector_params p = eb_word_vectors_default_params();
    const eb_word_vector_format formats[] = {EB_WORD_VECTORS_AUTO, EB_WORD_VECTORS_GLOVE};
    for (size_t f = 0; f < 2; f++) {
        p.format = formats[f];
        eb_encoder *enc = NULL;
        eb_error err;
        assert_int_equal(eb_word_vectors_load_from_buffer(file, at, &p, &mem, &enc, &err), EB_ERR_FORMAT);
        assert_null(enc);
        expect_message(&err, "line 2 has 3 bytes, too few for the 20000 values of line 1");
        /* Refused before the vectors were allocated: nothing near the 1.6 GB they would take. */
        assert_true(counter.peak_bytes < 4096);
        assert_int_equal(counter.live_blocks, 0);
    }
    free(file);
}

/* Two whole numbers on line 1 are a header however large: too large is an error, not a one-value word. */
static void absurd_header_counts_are_errors(void **state)
{
    (void)state;
    static const struct {
        const char *bytes;
        eb_word_vector_format format;
        const char *needle;
    } cases[] = {
        {"99999999999999999999 300\nhello 1 2\n", EB_WORD_VECTORS_AUTO,
         "line 1: the header \"99999999999999999999 300\" announces more words or dimensions than fit"},
        {"2 184467440737095516160\nhello 1 2\n", EB_WORD_VECTORS_AUTO, "line 1: the header \"2 1844674407370955"},
        {"99999999999999999999 3\nhello 1 2 3\n", EB_WORD_VECTORS_TEXT, "line 1: the header"},
        {"99999999999999999999 3\nhello \x01\x02", EB_WORD_VECTORS_BINARY, "byte 0: the header"},
        {"18446744073709551615 3\nhello 1 2 3\n", EB_WORD_VECTORS_AUTO,
         "announces 18446744073709551615 words, but the file ends after 1"},
        {"1 18446744073709551615\nhello 1 2 3\n", EB_WORD_VECTORS_AUTO, "too few for the 18446744073709551615 values"},
        {"1 18446744073709551615\nhello \x01\x02\x03\x04", EB_WORD_VECTORS_BINARY, "more than the"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        eb_encoder *enc = (eb_encoder *)&cases;
        eb_error err;
        eb_status status = load_vectors(cases[i].bytes, strlen(cases[i].bytes), cases[i].format, 1, &enc, &err);
        if (status != EB_ERR_FORMAT)
            fail_msg("case %zu: status %s (%s)", i, eb_status_string(status), err.message);
        assert_null(enc);
        expect_message(&err, cases[i].needle);
    }
}

/* A text vector file of rows x dim values, big enough for threads; caller frees. */
static char *big_vector_file(size_t rows, size_t dim, size_t *size)
{
    size_t capacity = 32 + rows * (16 + dim * 12);
    char *text = malloc(capacity);
    assert_non_null(text);
    size_t at = (size_t)snprintf(text, capacity, "%zu %zu\n", rows, dim);
    test_rng rng = test_rng_make(5);
    for (size_t r = 0; r < rows; r++) {
        at += (size_t)snprintf(text + at, capacity - at, "word%zu", r);
        for (size_t c = 0; c < dim; c++)
            at += (size_t)snprintf(text + at, capacity - at, " %.6f", test_rng_uniform(&rng, -1, 1));
        text[at++] = '\n';
    }
    *size = at;
    return text;
}

static eb_encoder *load_with_threads(const char *bytes, size_t size, size_t n_threads, eb_status expected,
                                     eb_error *err)
{
    eb_word_vector_params p = eb_word_vectors_default_params();
    p.n_threads = n_threads;
    eb_encoder *enc = NULL;
    assert_int_equal(eb_word_vectors_load_from_buffer(bytes, size, &p, NULL, &enc, err), expected);
    return enc;
}

static void word_vector_parsing_does_not_depend_on_threads(void **state)
{
    (void)state;
    size_t size;
    char *text = big_vector_file(2000, 50, &size);
    eb_error err;
    eb_encoder *one = load_with_threads(text, size, 1, EB_OK, &err);
    eb_encoder *two = load_with_threads(text, size, 2, EB_OK, &err);
    eb_encoder *automatic = load_with_threads(text, size, EB_ENCODER_THREADS_AUTO, EB_OK, &err);
    assert_int_equal(eb_word_vectors_vocab_size(two), 2000);
    char word[32];
    for (size_t r = 0; r < 2000; r += 37) {
        size_t length = (size_t)snprintf(word, sizeof word, "word%zu", r);
        const float *a = eb_word_vectors_lookup(one, word, length);
        assert_non_null(a);
        assert_memory_equal(a, eb_word_vectors_lookup(two, word, length), 50 * sizeof(float));
        assert_memory_equal(a, eb_word_vectors_lookup(automatic, word, length), 50 * sizeof(float));
    }
    eb_encoder_free(one);
    eb_encoder_free(two);
    eb_encoder_free(automatic);
    /* Bad values in both halves: the earlier line is the one reported, whichever thread finds it. */
    char *late = strstr(text, "\nword1900 ") + 1;
    char *early = strstr(text, "\nword300 ") + 1;
    memcpy(strchr(late, ' ') + 1, "x", 1);
    memcpy(strchr(early, ' ') + 1, "y", 1);
    for (size_t threads = 1; threads <= 4; threads++) {
        assert_null(load_with_threads(text, size, threads, EB_ERR_FORMAT, &err));
        expect_message(&err, "line 302, value 1");
    }
    free(text);
}

static void histograms_do_not_depend_on_threads(void **state)
{
    (void)state;
    enum { N = 40, W = 64, H = 48 };
    uint8_t *pixels = malloc(N * W * H * 3);
    assert_non_null(pixels);
    test_rng rng = test_rng_make(9);
    eb_image images[N];
    for (size_t i = 0; i < N; i++) {
        for (size_t k = 0; k < W * H * 3; k++)
            pixels[i * W * H * 3 + k] = (uint8_t)(test_rng_next(&rng) >> 56);
        eb_image im = {pixels + i * W * H * 3, W, H, 3, W * 3};
        images[i] = im;
    }
    float *expected = malloc(N * 3 * 10 * sizeof(float)), *got = malloc(N * 3 * 10 * sizeof(float));
    assert_non_null(expected);
    assert_non_null(got);
    eb_error err;
    eb_encoder *enc = NULL;
    assert_int_equal(eb_color_histogram_encoder_create(10, 1, NULL, &enc, &err), EB_OK);
    assert_int_equal(eb_encoder_encode_images(enc, images, N, eb_mut_matrix_view(expected, N, 30), &err), EB_OK);
    eb_encoder_free(enc);
    for (size_t threads = 2; threads <= 3; threads++) {
        assert_int_equal(eb_color_histogram_encoder_create(10, threads, NULL, &enc, &err), EB_OK);
        assert_int_equal(eb_encoder_encode_images(enc, images, N, eb_mut_matrix_view(got, N, 30), &err), EB_OK);
        assert_memory_equal(expected, got, N * 30 * sizeof(float));
        eb_encoder_free(enc);
    }
    for (size_t i = 0; i < N; i++) {
        float total = 0;
        for (size_t b = 0; b < 30; b++)
            total += expected[i * 30 + b];
        assert_true(total == 3.0f * W * H);
    }
    free(expected);
    free(got);
    free(pixels);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(murmurhash_matches_scikit_learn),
        cmocka_unit_test(char_wb_pads_words_and_counts_short_ones_once),
        cmocka_unit_test(char_squeezes_whitespace_runs_only),
        cmocka_unit_test(word_tokens_need_two_word_characters),
        cmocka_unit_test(lowercasing_follows_python),
        cmocka_unit_test(norms_scale_rows),
        cmocka_unit_test(embedded_nul_is_part_of_the_text),
        cmocka_unit_test(hashing_params_are_checked),
        cmocka_unit_test(extreme_ngram_ranges_work),
        cmocka_unit_test(invalid_utf8_is_rejected_with_row_and_offset),
        cmocka_unit_test(bad_batches_are_rejected),
        cmocka_unit_test(output_does_not_depend_on_threads),
        cmocka_unit_test(allocation_failures_leak_nothing),
        cmocka_unit_test(hashing_scratch_is_a_small_multiple_of_the_text),
        cmocka_unit_test(lowercasing_at_most_doubles_the_bytes),
        cmocka_unit_test(allocators_without_calloc_or_free_are_refused),
        cmocka_unit_test(encoders_keep_a_copy_of_the_allocator),
        cmocka_unit_test(custom_encoders_get_the_same_checks),
        cmocka_unit_test(histogram_buckets_follow_numpy_edges),
        cmocka_unit_test(histogram_honours_stride),
        cmocka_unit_test(bad_images_are_rejected),
        cmocka_unit_test(word_vectors_average_known_tokens),
        cmocka_unit_test(glove_and_binary_give_the_same_vectors),
        cmocka_unit_test(malformed_vector_files_name_the_line),
        cmocka_unit_test(word_vector_file_errors_name_the_file),
        cmocka_unit_test(numpy_float32_extremes_load),
        cmocka_unit_test(byte_order_mark_is_skipped),
        cmocka_unit_test(glove_files_get_the_allocation_guard),
        cmocka_unit_test(absurd_header_counts_are_errors),
        cmocka_unit_test(word_vector_allocation_failures_leak_nothing),
        cmocka_unit_test(word_vector_parsing_does_not_depend_on_threads),
        cmocka_unit_test(histograms_do_not_depend_on_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
