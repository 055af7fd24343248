#define _POSIX_C_SOURCE 200809L
/*
 * The sentence encoder end to end, from text to embedding: the texts stored
 * in tests/fixtures/sentence go through eb_encoder_encode_texts and every row
 * must agree with sentence-transformers' embedding of the same text (cosine
 * >= 0.99999, max abs difference <= 1e-4), for the tiny random model in
 * tests/fixtures/tiny-bert and for all-MiniLM-L6-v2 from the model cache.
 * Also: thread counts give identical bits, batch sizes agree, the vocab.txt
 * fallback, broken directories and bad settings refused by name, allocation
 * failures, the empty-text policy.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "embetter/encoder.h"
#include "helpers.h"
#include "sentence_fixture.h"

#define TINY_DIR EB_FIXTURES_DIR "/tiny-bert"

/* The fixture with the texts compared capped under valgrind (sentence_fixture_cap). */
static sentence_fixture load_fixture(const char *name)
{
    sentence_fixture fx = sentence_fixture_load(name);
    fx.n = sentence_fixture_cap(fx.n, 1);
    return fx;
}

/* Per row: cosine >= 0.99999 and max abs difference <= 1e-4; prints the worst of each. */
static void compare_rows(const char *what, const float *got, const float *want, size_t rows, size_t dim)
{
    double worst_cosine = 1, worst_diff = 0;
    sentence_fixture_compare_rows(what, got, want, rows, dim, 0, &worst_cosine, &worst_diff);
    print_message("%s: %zu texts, worst cosine %.9f, worst max abs difference %.3g\n", what, rows, worst_cosine,
                  worst_diff);
}

static eb_encoder *create(const char *dir, size_t batch_size, size_t n_threads)
{
    eb_sentence_encoder_params params = eb_sentence_encoder_default_params();
    params.batch_size = batch_size;
    params.n_threads = n_threads;
    eb_encoder *encoder = NULL;
    eb_error err;
    eb_status status = eb_sentence_encoder_create(dir, &params, NULL, &encoder, &err);
    if (status != EB_OK)
        fail_msg("loading %s: %s: %s", dir, eb_status_string(status), err.message);
    return encoder;
}

static float *encode(const eb_encoder *encoder, const eb_text *texts, size_t n)
{
    size_t dim = eb_encoder_output_dim(encoder);
    float *out = calloc(n * dim, sizeof *out);
    assert_non_null(out);
    eb_error err;
    eb_status status = eb_encoder_encode_texts(encoder, texts, n, (eb_mut_matrix){out, n, dim, dim}, &err);
    if (status != EB_OK)
        fail_msg("encoding: %s: %s", eb_status_string(status), err.message);
    return out;
}

static void test_defaults_and_settings(void **state)
{
    (void)state;
    eb_sentence_encoder_params p = eb_sentence_encoder_default_params();
    assert_int_equal(p.batch_size, 32);
    assert_int_equal(p.n_threads, EB_ENCODER_THREADS_AUTO);
    eb_encoder *encoder = NULL;
    eb_error err;
    assert_int_equal(eb_sentence_encoder_create(TINY_DIR, NULL, NULL, &encoder, &err), EB_OK);
    assert_string_equal(eb_encoder_name(encoder), "sentence");
    assert_int_equal(eb_encoder_input_kind(encoder), EB_INPUT_TEXT);
    assert_int_equal(eb_encoder_output_dim(encoder), 64);
    assert_int_equal(eb_sentence_encoder_max_tokens(encoder), 48);
    eb_sentence_encoder_params got;
    assert_int_equal(eb_sentence_encoder_get_params(encoder, &got, &err), EB_OK);
    assert_int_equal(got.batch_size, 32);
    eb_encoder_free(encoder);
}

/* All 300 texts in one call, batches of 32 sorted by length: the caller's order must come back. */
static void test_tiny_from_text_matches_sentence_transformers(void **state)
{
    (void)state;
    sentence_fixture fx = load_fixture("tiny-bert");
    size_t n = fx.n;
    eb_encoder *encoder = create(TINY_DIR, 32, 1);
    assert_int_equal(eb_encoder_output_dim(encoder), fx.dim);
    float *out = encode(encoder, fx.texts, n);
    compare_rows("tiny-bert from text", out, fx.embeddings, n, fx.dim);
    free(out);
    eb_encoder_free(encoder);
    sentence_fixture_free(&fx);
}

static void test_minilm_from_text_matches_sentence_transformers(void **state)
{
    (void)state;
    char dir[1024];
    sentence_fixture_minilm_dir(dir, sizeof dir);
    sentence_fixture fx = load_fixture("all-MiniLM-L6-v2");
    size_t n = fx.n;
    eb_encoder *encoder = create(dir, 32, EB_ENCODER_THREADS_AUTO);
    assert_int_equal(eb_encoder_output_dim(encoder), 384);
    assert_int_equal(eb_sentence_encoder_max_tokens(encoder), 256);
    float *out = encode(encoder, fx.texts, n);
    compare_rows("all-MiniLM-L6-v2 from text", out, fx.embeddings, n, fx.dim);
    free(out);
    eb_encoder_free(encoder);
    sentence_fixture_free(&fx);
}

/* The thread count never changes a bit; batch sizes change which texts share a product, so only the last bits. */
static void test_threads_and_batch_sizes(void **state)
{
    (void)state;
    sentence_fixture fx = load_fixture("tiny-bert");
    size_t n = fx.n, bytes = n * fx.dim * sizeof(float);
    const size_t batches[] = {1, 7, 32, 300};
    for (size_t b = 0; b < sizeof batches / sizeof *batches; b++) {
        eb_encoder *one = create(TINY_DIR, batches[b], 1), *two = create(TINY_DIR, batches[b], 2),
                   *three = create(TINY_DIR, batches[b], 3);
        float *a = encode(one, fx.texts, n), *c = encode(two, fx.texts, n), *d = encode(three, fx.texts, n);
        assert_memory_equal(a, c, bytes);
        assert_memory_equal(a, d, bytes);
        char what[64];
        snprintf(what, sizeof what, "tiny-bert batch_size %zu", batches[b]);
        compare_rows(what, a, fx.embeddings, n, fx.dim);
        free(a);
        free(c);
        free(d);
        eb_encoder_free(one);
        eb_encoder_free(two);
        eb_encoder_free(three);
    }
    sentence_fixture_free(&fx);
}

/* A text of only spaces is [CLS] [SEP], as in sentence-transformers; an empty one is refused naming its row. */
static void test_empty_and_blank_texts(void **state)
{
    (void)state;
    eb_encoder *encoder = create(TINY_DIR, 32, 1);
    eb_text texts[3] = {{"hello world", 11}, {"   ", 3}, {"", 0}};
    float out[3 * 64];
    eb_error err;
    assert_int_equal(eb_encoder_encode_texts(encoder, texts, 3, (eb_mut_matrix){out, 3, 64, 64}, &err),
                     EB_ERR_EMPTY_INPUT);
    assert_non_null(strstr(err.message, "text 2 is empty"));
    assert_int_equal(eb_encoder_encode_texts(encoder, texts, 2, (eb_mut_matrix){out, 2, 64, 64}, &err), EB_OK);
    /* "\t\n" also cleans to nothing: the same [CLS] [SEP] row. Encoded beside the same first text, so the
     * products have the same shapes: BLAS may round another batch's rows differently (valgrind's CPU does). */
    eb_text others[2] = {{"hello world", 11}, {"\t\n", 2}};
    float again[2 * 64];
    assert_int_equal(eb_encoder_encode_texts(encoder, others, 2, (eb_mut_matrix){again, 2, 64, 64}, &err), EB_OK);
    assert_memory_equal(again + 64, out + 64, 64 * sizeof(float));
    for (size_t c = 0; c < 64; c++)
        assert_true(isfinite(out[64 + c]));
    /* Invalid UTF-8 is named by the dispatcher before the tokenizer sees it. */
    eb_text bad = {"ab\xff", 3};
    assert_int_equal(eb_encoder_encode_texts(encoder, &bad, 1, (eb_mut_matrix){again, 1, 64, 64}, &err),
                     EB_ERR_INVALID_UTF8);
    eb_encoder_free(encoder);
}

/* A text far past max_seq_length costs only its kept part and equals its own first tokens. */
static void test_long_text_is_truncated(void **state)
{
    (void)state;
    eb_encoder *encoder = create(TINY_DIR, 32, 1);
    size_t length = 1 << 20;
    char *text = malloc(length);
    for (size_t i = 0; i < length; i++)
        text[i] = "the cat "[i % 8];
    /* 46 word tokens fit max_seq_length 48; "the cat " repeated 23 times gives exactly those. */
    eb_text texts[2] = {{text, length}, {text, 23 * 8}};
    float out[2 * 64];
    eb_error err;
    assert_int_equal(eb_encoder_encode_texts(encoder, texts, 2, (eb_mut_matrix){out, 2, 64, 64}, &err), EB_OK);
    assert_memory_equal(out, out + 64, 64 * sizeof(float));
    free(text);
    eb_encoder_free(encoder);
}

/* ---- broken directories and settings ------------------------------------------ */

static char work_dir[64];

static const char *const tiny_files[] = {"config.json",      "modules.json",         "sentence_bert_config.json",
                                         "model.safetensors", "1_Pooling/config.json", "tokenizer.json",
                                         "vocab.txt",         "tokenizer_config.json"};
enum { N_TINY_FILES = sizeof tiny_files / sizeof *tiny_files };

static void write_text(const char *name, const char *text)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", work_dir, name);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    fputs(text, f);
    assert_int_equal(fclose(f), 0);
}

static void remove_file(const char *name)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", work_dir, name);
    unlink(path);
}

static void copy_tiny(void)
{
    sentence_fixture_copy_tiny(work_dir, tiny_files, N_TINY_FILES);
}

static void expect_failure(eb_status expected, const char *needle, const char *named)
{
    eb_encoder *encoder = (eb_encoder *)work_dir;
    eb_error err;
    eb_status status = eb_sentence_encoder_create(work_dir, NULL, NULL, &encoder, &err);
    if (status != expected || strstr(err.message, needle) == NULL || strstr(err.message, named) == NULL)
        fail_msg("got %s '%s'; wanted %s with '%s' and '%s'", eb_status_string(status), err.message,
                 eb_status_string(expected), needle, named);
    assert_null(encoder);
}

static void test_vocab_txt_stands_in_for_tokenizer_json(void **state)
{
    (void)state;
    sentence_fixture fx = load_fixture("tiny-bert");
    size_t n = fx.n;
    copy_tiny();
    remove_file("tokenizer.json");
    eb_encoder *from_vocab = create(work_dir, 32, 1), *from_json = create(TINY_DIR, 32, 1);
    float *a = encode(from_vocab, fx.texts, n), *b = encode(from_json, fx.texts, n);
    assert_memory_equal(a, b, n * fx.dim * sizeof(float));
    free(a);
    free(b);
    eb_encoder_free(from_vocab);
    eb_encoder_free(from_json);
    sentence_fixture_free(&fx);
}

static void test_broken_directories_are_refused_by_name(void **state)
{
    (void)state;
    eb_encoder *encoder = (eb_encoder *)work_dir;
    eb_error err;
    assert_int_equal(eb_sentence_encoder_create("/nonexistent/model", NULL, NULL, &encoder, &err), EB_ERR_IO);
    assert_non_null(strstr(err.message, "/nonexistent/model is not a directory"));
    assert_null(encoder);

    copy_tiny();
    remove_file("tokenizer.json");
    remove_file("vocab.txt");
    expect_failure(EB_ERR_IO, "neither tokenizer.json nor vocab.txt", work_dir);

    const char *files[] = {"config.json", "model.safetensors", "modules.json", "sentence_bert_config.json",
                           "1_Pooling/config.json"};
    for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
        copy_tiny();
        remove_file(files[i]);
        expect_failure(EB_ERR_IO, "cannot open", files[i]);
    }

    copy_tiny();
    write_text("config.json", "{\"model_type\": \"roberta\", \"hidden_act\": \"gelu\", \"hidden_size\": 64}");
    expect_failure(EB_ERR_FORMAT, "model_type 'roberta' is not supported", "config.json");

    copy_tiny();
    write_text("tokenizer.json", "{\"model\": {\"type\": \"BPE\", \"vocab\": {}, \"merges\": []}}");
    expect_failure(EB_ERR_FORMAT, "BPE", "tokenizer.json");

    /* A vocabulary longer than the embedding table: the tokenizer could give ids the model has no row for. */
    copy_tiny();
    remove_file("tokenizer.json");
    char from[512], to[512];
    snprintf(from, sizeof from, "%s/vocab.txt", TINY_DIR);
    snprintf(to, sizeof to, "%s/vocab.txt", work_dir);
    sentence_fixture_copy_file(from, to);
    FILE *f = fopen(to, "ab");
    assert_non_null(f);
    fputs("extraword\n", f);
    fclose(f);
    expect_failure(EB_ERR_FORMAT, "ids go up to 493 but config.json's vocab_size is 493", work_dir);

    copy_tiny();
    write_text("sentence_bert_config.json", "{\"max_seq_length\": 129}");
    expect_failure(EB_ERR_FORMAT, "max_seq_length 129 exceeds max_position_embeddings 128",
                   "sentence_bert_config.json");
    copy_tiny();
    write_text("sentence_bert_config.json", "{\"max_seq_length\": 1}");
    expect_failure(EB_ERR_FORMAT, "max_seq_length 1 leaves no room", "sentence_bert_config.json");

    /* do_lower_case true: str.lower() first, which for this uncased tokenizer changes nothing. */
    copy_tiny();
    write_text("sentence_bert_config.json", "{\"max_seq_length\": 48, \"do_lower_case\": true}");
    eb_encoder *lowered = create(work_dir, 32, 1), *plain = create(TINY_DIR, 32, 1);
    eb_text texts[2] = {{"Hello WORLD, \xC3\x84rger!", 19}, {"\xCE\xA3\xCE\xA3 Straße", 12}};
    float *a = encode(lowered, texts, 2), *b = encode(plain, texts, 2);
    assert_memory_equal(a, b, 2 * 64 * sizeof(float));
    free(a);
    free(b);
    eb_encoder_free(lowered);
    eb_encoder_free(plain);
}

static void test_bad_arguments(void **state)
{
    (void)state;
    eb_sentence_encoder_params p = eb_sentence_encoder_default_params();
    eb_encoder *encoder = (eb_encoder *)work_dir;
    eb_error err;
    p.batch_size = 0;
    assert_int_equal(eb_sentence_encoder_create(TINY_DIR, &p, NULL, &encoder, &err), EB_ERR_INVALID_PARAM);
    assert_non_null(strstr(err.message, "batch_size is 0"));
    assert_null(encoder);
    p.batch_size = EB_SENTENCE_MAX_BATCH_SIZE + 1;
    assert_int_equal(eb_sentence_encoder_create(TINY_DIR, &p, NULL, &encoder, &err), EB_ERR_INVALID_PARAM);
    p.batch_size = 32;
    p.n_threads = EB_ENCODER_MAX_THREADS + 1;
    assert_int_equal(eb_sentence_encoder_create(TINY_DIR, &p, NULL, &encoder, &err), EB_ERR_INVALID_PARAM);
    assert_non_null(strstr(err.message, "n_threads is 65"));
    assert_int_equal(eb_sentence_encoder_check_params(NULL, &err), EB_ERR_NULL_POINTER);
    assert_int_equal(eb_sentence_encoder_create(NULL, NULL, NULL, &encoder, &err), EB_ERR_NULL_POINTER);
    assert_int_equal(eb_sentence_encoder_create(TINY_DIR, NULL, NULL, NULL, &err), EB_ERR_NULL_POINTER);
    eb_allocator no_calloc = {NULL, NULL, NULL};
    no_calloc.free = eb_default_allocator()->free;
    assert_int_equal(eb_sentence_encoder_create(TINY_DIR, NULL, &no_calloc, &encoder, &err), EB_ERR_NULL_POINTER);
    assert_non_null(strstr(err.message, "calloc is NULL"));
    assert_null(encoder);

    eb_encoder *hashing;
    eb_hashing_params hp = eb_hashing_default_params();
    assert_int_equal(eb_hashing_encoder_create(&hp, NULL, &hashing, &err), EB_OK);
    assert_int_equal(eb_sentence_encoder_get_params(hashing, &p, &err), EB_ERR_INVALID_PARAM);
    assert_int_equal(eb_sentence_encoder_max_tokens(hashing), 0);
    eb_encoder_free(hashing);
}

static void test_allocation_failures_leak_nothing(void **state)
{
    (void)state;
    counting_allocator counter;
    eb_allocator mem = counting_allocator_init(&counter);
    eb_sentence_encoder_params p = eb_sentence_encoder_default_params();
    p.batch_size = 2;
    p.n_threads = 1; /* the counting allocator is not thread-safe */
    eb_encoder *encoder;
    eb_error err;
    assert_int_equal(eb_sentence_encoder_create(TINY_DIR, &p, &mem, &encoder, &err), EB_OK);
    eb_encoder_free(encoder);
    assert_int_equal(counter.live_blocks, 0);
    size_t needed = counter.attempts;
    for (size_t fail_at = 0; fail_at < needed; fail_at++) {
        counting_allocator_arm(&counter, fail_at);
        assert_int_equal(eb_sentence_encoder_create(TINY_DIR, &p, &mem, &encoder, &err), EB_ERR_NOMEM);
        assert_null(encoder);
        assert_int_equal(counter.live_blocks, 0);
    }
    counting_allocator_arm(&counter, SIZE_MAX);
    assert_int_equal(eb_sentence_encoder_create(TINY_DIR, &p, &mem, &encoder, &err), EB_OK);
    eb_text texts[3] = {{"The cat sat.", 12}, {"A much longer sentence about dogs and cats.", 43}, {"Hi", 2}};
    float out[3 * 64];
    size_t before = counter.live_blocks;
    counting_allocator_arm(&counter, SIZE_MAX);
    assert_int_equal(eb_encoder_encode_texts(encoder, texts, 3, (eb_mut_matrix){out, 3, 64, 64}, &err), EB_OK);
    size_t calls = counter.attempts;
    for (size_t fail_at = 0; fail_at < calls; fail_at++) {
        counting_allocator_arm(&counter, fail_at);
        assert_int_equal(eb_encoder_encode_texts(encoder, texts, 3, (eb_mut_matrix){out, 3, 64, 64}, &err),
                         EB_ERR_NOMEM);
        assert_int_equal(counter.live_blocks, before);
    }
    eb_encoder_free(encoder);
    assert_int_equal(counter.live_blocks, 0);
}

static int make_work_dir(void **state)
{
    (void)state;
    snprintf(work_dir, sizeof work_dir, "/tmp/eb-sentence-XXXXXX");
    return mkdtemp(work_dir) == NULL ? -1 : 0;
}

static int remove_work_dir(void **state)
{
    (void)state;
    for (size_t i = 0; i < N_TINY_FILES; i++)
        remove_file(tiny_files[i]);
    char path[512];
    snprintf(path, sizeof path, "%s/1_Pooling", work_dir);
    rmdir(path);
    return rmdir(work_dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults_and_settings),
        cmocka_unit_test(test_tiny_from_text_matches_sentence_transformers),
        cmocka_unit_test(test_minilm_from_text_matches_sentence_transformers),
        cmocka_unit_test(test_threads_and_batch_sizes),
        cmocka_unit_test(test_empty_and_blank_texts),
        cmocka_unit_test(test_long_text_is_truncated),
        cmocka_unit_test(test_vocab_txt_stands_in_for_tokenizer_json),
        cmocka_unit_test(test_broken_directories_are_refused_by_name),
        cmocka_unit_test(test_bad_arguments),
        cmocka_unit_test(test_allocation_failures_leak_nothing),
    };
    return cmocka_run_group_tests(tests, make_work_dir, remove_work_dir);
}
