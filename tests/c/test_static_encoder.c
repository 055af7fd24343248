/*
 * The model2vec static encoder against model2vec's own StaticModel.encode output
 * (tests/fixtures/model2vec/reference.bin.gz, written by scripts/make_static_fixtures.py),
 * and its refusals: other tokenizer types, bad files, allocation failures.
 */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <zlib.h>

#include "embetter/encoder.h"
#include "helpers.h"

#define M2V_DIR EB_FIXTURES_DIR "/model2vec"

typedef struct reference {
    size_t n;
    eb_text *texts;
    size_t n_models;
    char names[8][32];
    size_t dims[8];
    float *vectors[8];
} reference;

static uint32_t read_u32(gzFile f)
{
    unsigned char b[4];
    assert_int_equal(gzread(f, b, 4), 4);
    return (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
}

static reference load_reference(void)
{
    reference ref;
    memset(&ref, 0, sizeof ref);
    gzFile f = gzopen(M2V_DIR "/reference.bin.gz", "rb");
    assert_non_null(f);
    char magic[8];
    assert_int_equal(gzread(f, magic, 8), 8);
    assert_memory_equal(magic, "EBM2V001", 8);
    ref.n = read_u32(f);
    ref.n_models = read_u32(f);
    assert_true(ref.n >= 300 && ref.n_models >= 1 && ref.n_models <= 8);
    ref.texts = calloc(ref.n, sizeof *ref.texts);
    for (size_t i = 0; i < ref.n; i++) {
        uint32_t length = read_u32(f);
        char *text = malloc(length + 1u);
        assert_int_equal(gzread(f, text, length), (int)length);
        ref.texts[i].data = text;
        ref.texts[i].length = length;
    }
    for (size_t m = 0; m < ref.n_models; m++) {
        uint32_t length = read_u32(f);
        assert_true(length < sizeof ref.names[m]);
        assert_int_equal(gzread(f, ref.names[m], length), (int)length);
        ref.dims[m] = read_u32(f);
        size_t count = ref.n * ref.dims[m];
        ref.vectors[m] = malloc(count * sizeof(float));
        /* The fixture is little-endian, as every platform the library is built on. */
        assert_int_equal(gzread(f, ref.vectors[m], (unsigned)(count * sizeof(float))), (int)(count * sizeof(float)));
    }
    gzclose(f);
    return ref;
}

static void free_reference(reference *ref)
{
    for (size_t i = 0; i < ref->n; i++)
        free((char *)ref->texts[i].data);
    free(ref->texts);
    for (size_t m = 0; m < ref->n_models; m++)
        free(ref->vectors[m]);
}

static eb_encoder *open_model(const char *name)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", M2V_DIR, name);
    eb_encoder *enc = NULL;
    eb_error err;
    eb_status status = eb_static_encoder_create(path, NULL, &enc, &err);
    if (status != EB_OK)
        fail_msg("%s: %s", path, err.message);
    return enc;
}

/* Every fixture model on every text, all at once (threads) and one at a time, within 1e-6 of model2vec. */
static void test_equals_model2vec(void **state)
{
    (void)state;
    reference ref = load_reference();
    size_t zero_rows = 0;
    for (size_t m = 0; m < ref.n_models; m++) {
        eb_encoder *enc = open_model(ref.names[m]);
        size_t dim = ref.dims[m];
        assert_int_equal(eb_encoder_output_dim(enc), dim);
        assert_string_equal(eb_encoder_name(enc), "static");
        assert_int_equal(eb_static_encoder_vocab_size(enc), 493);
        float *out = calloc(ref.n * dim, sizeof *out);
        eb_error err;
        eb_mut_matrix all = {out, ref.n, dim, dim};
        assert_int_equal(eb_encoder_encode_texts(enc, ref.texts, ref.n, all, &err), EB_OK);
        double worst = 0;
        size_t bitwise_equal = 0;
        for (size_t i = 0; i < ref.n * dim; i++) {
            double d = fabs((double)out[i] - (double)ref.vectors[m][i]);
            worst = d > worst ? d : worst;
            bitwise_equal += memcmp(&out[i], &ref.vectors[m][i], sizeof(float)) == 0;
        }
        if (worst > 1e-6)
            fail_msg("model %s: max abs difference %g", ref.names[m], worst);
        /* The arithmetic follows numpy's order, so equality is expected to be exact; report if it is not. */
        assert_int_equal(bitwise_equal, ref.n * dim);
        for (size_t r = 0; r < ref.n; r++) {
            float one[64];
            eb_mut_matrix row = {one, 1, dim, dim};
            assert_int_equal(eb_encoder_encode_texts(enc, &ref.texts[r], 1, row, &err), EB_OK);
            assert_memory_equal(one, out + r * dim, dim * sizeof(float));
            int zero = 1;
            for (size_t c = 0; c < dim; c++)
                zero &= out[r * dim + c] == 0.0f;
            zero_rows += zero;
        }
        free(out);
        eb_encoder_free(enc);
    }
    /* The edge texts without tokens (spaces, control characters, only [UNK]) are zero rows in every model. */
    assert_true(zero_rows >= 4 * ref.n_models);
    free_reference(&ref);
}

static void test_batch_split_across_threads(void **state)
{
    (void)state;
    /* Enough bytes that the automatic rule starts a second thread on a 2-core machine. */
    reference ref = load_reference();
    size_t copies = 40, n = ref.n * copies, dim = ref.dims[0];
    eb_text *texts = calloc(n, sizeof *texts);
    for (size_t i = 0; i < n; i++)
        texts[i] = ref.texts[i % ref.n];
    float *out = calloc(n * dim, sizeof *out);
    eb_encoder *enc = open_model(ref.names[0]);
    eb_error err;
    eb_mut_matrix all = {out, n, dim, dim};
    assert_int_equal(eb_encoder_encode_texts(enc, texts, n, all, &err), EB_OK);
    for (size_t i = 0; i < n; i++)
        assert_memory_equal(out + i * dim, ref.vectors[0] + (i % ref.n) * dim, dim * sizeof(float));
    eb_encoder_free(enc);
    free(out);
    free(texts);
    free_reference(&ref);
}

/* One encoder shared by several caller threads at once: every call gets model2vec's rows. */
typedef struct shared_call {
    const eb_encoder *enc;
    const reference *ref;
    size_t model;
    int ok;
} shared_call;

static void *encode_shared(void *arg)
{
    shared_call *call = arg;
    size_t n = call->ref->n, dim = call->ref->dims[call->model];
    float *out = calloc(n * dim, sizeof *out);
    eb_mut_matrix all = {out, n, dim, dim};
    eb_error err;
    call->ok = out != NULL && eb_encoder_encode_texts(call->enc, call->ref->texts, n, all, &err) == EB_OK &&
               memcmp(out, call->ref->vectors[call->model], n * dim * sizeof *out) == 0;
    free(out);
    return NULL;
}

static void test_one_encoder_many_callers(void **state)
{
    (void)state;
    reference ref = load_reference();
    size_t model = ref.n_models - 1;
    eb_encoder *enc = open_model(ref.names[model]);
    enum { CALLERS = 4 };
    pthread_t threads[CALLERS];
    shared_call calls[CALLERS];
    for (size_t t = 0; t < CALLERS; t++) {
        calls[t] = (shared_call){enc, &ref, model, 0};
        assert_int_equal(pthread_create(&threads[t], NULL, encode_shared, &calls[t]), 0);
    }
    for (size_t t = 0; t < CALLERS; t++) {
        pthread_join(threads[t], NULL);
        assert_true(calls[t].ok);
    }
    eb_encoder_free(enc);
    free_reference(&ref);
}

static void expect_refusal(const char *dir, eb_status want, const char *needle)
{
    eb_encoder *enc = (eb_encoder *)&enc;
    eb_error err;
    eb_status status = eb_static_encoder_create(dir, NULL, &enc, &err);
    if (status != want || strstr(err.message, needle) == NULL)
        fail_msg("%s: got %s \"%s\", want %s containing \"%s\"", dir, eb_status_string(status), err.message,
                 eb_status_string(want), needle);
    assert_null(enc);
}

static void test_other_tokenizers_refused_by_name(void **state)
{
    (void)state;
    expect_refusal(M2V_DIR "/unigram", EB_ERR_FORMAT, "Unigram");
    expect_refusal(M2V_DIR "/bpe", EB_ERR_FORMAT, "BPE");
}

/* A scratch copy of the normalized model in which one file can be replaced. */
static char work_dir[256];

static void write_file(const char *name, const void *bytes, size_t size)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", work_dir, name);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(bytes, 1, size, f), size);
    fclose(f);
}

static void *read_fixture(const char *name, size_t *size)
{
    char path[512];
    snprintf(path, sizeof path, "%s/normalized/%s", M2V_DIR, name);
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long length = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *data = malloc((size_t)length + 1);
    assert_int_equal(fread(data, 1, (size_t)length, f), (size_t)length);
    fclose(f);
    *size = (size_t)length;
    return data;
}

static void reset_work_dir(void)
{
    static const char *const names[] = {"config.json", "tokenizer.json", "model.safetensors"};
    for (size_t i = 0; i < 3; i++) {
        size_t size;
        void *data = read_fixture(names[i], &size);
        write_file(names[i], data, size);
        free(data);
    }
}

static void write_string(const char *name, const char *text)
{
    write_file(name, text, strlen(text));
}

/* A safetensors file of one tensor, given its header JSON and payload size (the payload is zeros). */
static void write_safetensors(const char *header, size_t payload)
{
    size_t hlen = strlen(header);
    unsigned char *bytes = calloc(8 + hlen + payload, 1);
    for (int i = 0; i < 8; i++)
        bytes[i] = (unsigned char)((uint64_t)hlen >> (8 * i));
    memcpy(bytes + 8, header, hlen);
    write_file("model.safetensors", bytes, 8 + hlen + payload);
    free(bytes);
}

static void test_bad_files(void **state)
{
    (void)state;
    snprintf(work_dir, sizeof work_dir, "/tmp/eb-static-test-%ld", (long)getpid());
    assert_int_equal(mkdir(work_dir, 0700), 0);
    reset_work_dir();
    eb_encoder *enc;
    eb_error err;
    assert_int_equal(eb_static_encoder_create(work_dir, NULL, &enc, &err), EB_OK);
    eb_encoder_free(enc);

    expect_refusal(M2V_DIR "/does-not-exist", EB_ERR_IO, "not a directory");
    expect_refusal(M2V_DIR "/reference.bin.gz", EB_ERR_IO, "local directory");

    write_string("config.json", "{\"normalize\": 1}");
    expect_refusal(work_dir, EB_ERR_FORMAT, "normalize");
    write_string("config.json", "{\"max_length\": 0}");
    expect_refusal(work_dir, EB_ERR_FORMAT, "max_length");
    write_string("config.json", "{\"max_length\": \"long\"}");
    expect_refusal(work_dir, EB_ERR_FORMAT, "max_length");
    write_string("config.json", "{\"normalize\": true,");
    expect_refusal(work_dir, EB_ERR_FORMAT, "config.json: not valid JSON");
    write_string("config.json", "[1, 2]");
    expect_refusal(work_dir, EB_ERR_FORMAT, "not a JSON object");
    write_string("config.json", "{\"vocabulary_quantization\": 64}");
    expect_refusal(work_dir, EB_ERR_FORMAT, "vocabulary-quantized");
    char path[512];
    snprintf(path, sizeof path, "%s/config.json", work_dir);
    unlink(path);
    expect_refusal(work_dir, EB_ERR_IO, "config.json");
    reset_work_dir();

    write_string("tokenizer.json", "{\"model\": ");
    expect_refusal(work_dir, EB_ERR_FORMAT, "tokenizer.json");
    reset_work_dir();

    write_string("model.safetensors", "short");
    expect_refusal(work_dir, EB_ERR_FORMAT, "model.safetensors");
    write_safetensors("{\"other\":{\"dtype\":\"F32\",\"shape\":[493,4],\"data_offsets\":[0,7888]}}", 7888);
    expect_refusal(work_dir, EB_ERR_FORMAT, "no tensor \"embeddings\"");
    write_safetensors("{\"embedding.weight\":{\"dtype\":\"F32\",\"shape\":[493,4],\"data_offsets\":[0,7888]}}", 7888);
    expect_refusal(work_dir, EB_ERR_FORMAT, "sentence-transformers");
    write_safetensors("{\"embeddings\":{\"dtype\":\"F16\",\"shape\":[493,4],\"data_offsets\":[0,3944]}}", 3944);
    expect_refusal(work_dir, EB_ERR_FORMAT, "F16");
    write_safetensors("{\"embeddings\":{\"dtype\":\"I8\",\"shape\":[493,4],\"data_offsets\":[0,1972]}}", 1972);
    expect_refusal(work_dir, EB_ERR_FORMAT, "I8");
    write_safetensors("{\"embeddings\":{\"dtype\":\"F32\",\"shape\":[400,4],\"data_offsets\":[0,6400]}}", 6400);
    expect_refusal(work_dir, EB_ERR_FORMAT, "400 rows but tokenizer.json has 493 tokens");
    write_safetensors("{\"embeddings\":{\"dtype\":\"F32\",\"shape\":[1972],\"data_offsets\":[0,7888]}}", 7888);
    expect_refusal(work_dir, EB_ERR_FORMAT, "2-D");
    write_safetensors("{\"embeddings\":{\"dtype\":\"F32\",\"shape\":[493,4],\"data_offsets\":[0,7888]},"
                      "\"mapping\":{\"dtype\":\"I64\",\"shape\":[1],\"data_offsets\":[7888,7896]}}",
                      7896);
    expect_refusal(work_dir, EB_ERR_FORMAT, "\"mapping\"");
    /* A well-formed replacement is accepted: width from the file. */
    write_safetensors("{\"embeddings\":{\"dtype\":\"F32\",\"shape\":[493,4],\"data_offsets\":[0,7888]}}", 7888);
    assert_int_equal(eb_static_encoder_create(work_dir, NULL, &enc, &err), EB_OK);
    assert_int_equal(eb_encoder_output_dim(enc), 4);
    eb_encoder_free(enc);

    static const char *const names[] = {"config.json", "tokenizer.json", "model.safetensors"};
    for (size_t i = 0; i < 3; i++) {
        snprintf(path, sizeof path, "%s/%s", work_dir, names[i]);
        unlink(path);
    }
    rmdir(work_dir);
}

static void test_bad_arguments_and_input(void **state)
{
    (void)state;
    eb_encoder *enc = NULL;
    eb_error err;
    assert_int_equal(eb_static_encoder_create(NULL, NULL, &enc, &err), EB_ERR_NULL_POINTER);
    assert_int_equal(eb_static_encoder_create(M2V_DIR "/normalized", NULL, NULL, &err), EB_ERR_NULL_POINTER);
    eb_allocator broken = *eb_default_allocator();
    broken.free = NULL;
    assert_int_equal(eb_static_encoder_create(M2V_DIR "/normalized", &broken, &enc, &err), EB_ERR_NULL_POINTER);
    assert_null(enc);
    enc = open_model("normalized");
    float out[2 * 16];
    eb_mut_matrix m = {out, 2, 16, 16};
    eb_text texts[2] = {{"hello", 5}, {"", 0}};
    assert_int_equal(eb_encoder_encode_texts(enc, texts, 2, m, &err), EB_ERR_EMPTY_INPUT);
    texts[1] = (eb_text){"bad \xff byte", 10};
    assert_int_equal(eb_encoder_encode_texts(enc, texts, 2, m, &err), EB_ERR_INVALID_UTF8);
    assert_int_equal(eb_static_encoder_vocab_size(NULL), 0);
    eb_encoder_free(enc);
}

static void test_allocation_failures_leak_nothing(void **state)
{
    (void)state;
    counting_allocator counter;
    eb_allocator mem = counting_allocator_init(&counter);
    eb_encoder *enc;
    eb_error err;
    const char *dir = M2V_DIR "/raw-short";
    assert_int_equal(eb_static_encoder_create(dir, &mem, &enc, &err), EB_OK);
    eb_encoder_free(enc);
    assert_int_equal(counter.live_blocks, 0);
    size_t needed = counter.attempts;
    assert_true(needed >= 3);
    for (size_t fail_at = 0; fail_at < needed; fail_at++) {
        counting_allocator_arm(&counter, fail_at);
        enc = (eb_encoder *)&enc;
        assert_int_equal(eb_static_encoder_create(dir, &mem, &enc, &err), EB_ERR_NOMEM);
        assert_null(enc);
        assert_int_equal(counter.live_blocks, 0);
    }
    counting_allocator_arm(&counter, SIZE_MAX);
    assert_int_equal(eb_static_encoder_create(dir, &mem, &enc, &err), EB_OK);
    eb_text texts[3] = {{"the computer", 12}, {"zippy trek", 10}, {"unaffable", 9}};
    float out[3 * 16];
    eb_mut_matrix m = {out, 3, 16, 16};
    size_t before = counter.live_blocks;
    counting_allocator_arm(&counter, SIZE_MAX);
    assert_int_equal(eb_encoder_encode_texts(enc, texts, 3, m, &err), EB_OK);
    size_t calls = counter.attempts;
    assert_true(calls >= 1);
    for (size_t fail_at = 0; fail_at < calls; fail_at++) {
        counting_allocator_arm(&counter, fail_at);
        assert_int_equal(eb_encoder_encode_texts(enc, texts, 3, m, &err), EB_ERR_NOMEM);
        assert_int_equal(counter.live_blocks, before);
    }
    eb_encoder_free(enc);
    assert_int_equal(counter.live_blocks, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_equals_model2vec),
        cmocka_unit_test(test_batch_split_across_threads),
        cmocka_unit_test(test_one_encoder_many_callers),
        cmocka_unit_test(test_other_tokenizers_refused_by_name),
        cmocka_unit_test(test_bad_files),
        cmocka_unit_test(test_bad_arguments_and_input),
        cmocka_unit_test(test_allocation_failures_leak_nothing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
