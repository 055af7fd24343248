#define _POSIX_C_SOURCE 200809L
/*
 * The BERT encoder against sentence-transformers: the fixtures under
 * tests/fixtures/sentence hold the token ids the model's own tokenizer made
 * for fortunes texts and the embeddings sentence-transformers computed from
 * them (scripts/make_sentence_fixtures.py). Every row must agree to cosine
 * >= 0.99999 and max abs difference <= 1e-4, for the tiny random model in
 * tests/fixtures/tiny-bert and for all-MiniLM-L6-v2 from the model cache.
 * Also: the module files' settings, CLS/mean/normalize pooling checked
 * against the reference hidden states, padded and packed input agreeing,
 * bad ids and masks named, broken model directories refused by name,
 * allocation failures and concurrent calls.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bert.h"
#include "helpers.h"
#include "sentence_fixture.h"

#define TINY_DIR EB_FIXTURES_DIR "/tiny-bert"

/* The fixture with the texts compared capped, but never below those that carry hidden states. */
static sentence_fixture load_fixture(const char *name)
{
    sentence_fixture fx = sentence_fixture_load(name);
    fx.n = sentence_fixture_cap(fx.n, fx.n_hidden);
    return fx;
}

/* Encode the whole fixture in batches of 32 texts and compare with sentence-transformers' rows. */
static void check_against_fixture(const eb_bert *model, const sentence_fixture *fx, const char *what)
{
    assert_int_equal(eb__bert_output_dim(model), fx->dim);
    float *out = calloc(fx->n * fx->dim, sizeof *out);
    assert_non_null(out);
    eb_error err;
    for (size_t first = 0; first < fx->n; first += 32) {
        size_t count = fx->n - first < 32 ? fx->n - first : 32;
        eb_status status = eb__bert_encode(model, fx->ids + fx->offsets[first], fx->lengths + first, count,
                                           out + first * fx->dim, NULL, &err);
        if (status != EB_OK)
            fail_msg("%s: %s", eb_status_string(status), err.message);
    }
    double worst_cosine = 1, worst_diff = 0;
    sentence_fixture_compare_rows(what, out, fx->embeddings, fx->n, fx->dim, 0, &worst_cosine, &worst_diff);
    print_message("%s: %zu texts, worst cosine %.9f, worst max abs difference %.3g\n", what, fx->n, worst_cosine,
                  worst_diff);
    free(out);
}

static eb_bert *load_model(const char *dir)
{
    eb_bert *model = NULL;
    eb_error err;
    eb_status status = eb__bert_load(dir, NULL, &model, &err);
    if (status != EB_OK)
        fail_msg("loading %s: %s: %s", dir, eb_status_string(status), err.message);
    return model;
}

static void test_tiny_settings_come_from_the_module_files(void **state)
{
    (void)state;
    eb_bert *model = load_model(TINY_DIR);
    const eb_sentence_config *cfg = eb__bert_config(model);
    assert_int_equal(cfg->bert.hidden_size, 64);
    assert_int_equal(cfg->bert.num_layers, 2);
    assert_int_equal(cfg->bert.num_heads, 4);
    assert_int_equal(cfg->bert.intermediate_size, 128);
    assert_int_equal(cfg->bert.max_positions, 128);
    assert_int_equal(cfg->bert.type_vocab_size, 2);
    assert_true(cfg->bert.layer_norm_eps == 1e-7f);
    assert_int_equal(cfg->pooling, EB_POOL_MAX);
    assert_false(cfg->normalize);
    assert_int_equal(cfg->max_seq_length, 48);
    assert_false(cfg->do_lower_case);
    assert_string_equal(cfg->transformer_dir, TINY_DIR);
    eb__bert_free(model);
}

static void test_tiny_matches_sentence_transformers(void **state)
{
    (void)state;
    sentence_fixture fx = load_fixture("tiny-bert");
    eb_bert *model = load_model(TINY_DIR);
    check_against_fixture(model, &fx, "tiny-bert");

    /* The last hidden state, token by token, for the texts the fixture keeps it for. */
    size_t tokens = fx.offsets[fx.n_hidden - 1] + fx.lengths[fx.n_hidden - 1];
    float *hidden = calloc(tokens * fx.hidden_size, sizeof *hidden);
    float *pooled = calloc(fx.n_hidden * fx.dim, sizeof *pooled);
    eb_error err;
    assert_int_equal(eb__bert_encode(model, fx.ids, fx.lengths, fx.n_hidden, pooled, hidden, &err), EB_OK);
    double worst_cosine = 1, worst_diff = 0;
    for (size_t i = 0; i < fx.n_hidden; i++)
        sentence_fixture_compare_rows("tiny-bert hidden", hidden + fx.offsets[i] * fx.hidden_size, fx.hidden[i], fx.lengths[i],
                     fx.hidden_size, 0, &worst_cosine, &worst_diff);
    print_message("tiny-bert hidden states: worst cosine %.9f, worst max abs difference %.3g\n", worst_cosine,
                  worst_diff);
    free(hidden);
    free(pooled);
    eb__bert_free(model);
    sentence_fixture_free(&fx);
}

/* CLS, mean and normalised pooling of the same weights, against pooling done here on PyTorch's hidden states. */
static void test_other_poolings_match_the_reference_hidden_states(void **state)
{
    (void)state;
    sentence_fixture fx = load_fixture("tiny-bert");
    eb_error err;
    eb_sentence_config cfg;
    assert_int_equal(eb__sentence_config_load(TINY_DIR, NULL, &cfg, &err), EB_OK);
    size_t h = fx.hidden_size;
    float *want = calloc(fx.n_hidden * h, sizeof *want);
    float *got = calloc(fx.n_hidden * h, sizeof *got);
    const eb_bert_pooling modes[3] = {EB_POOL_CLS, EB_POOL_MEAN, EB_POOL_MEAN};
    for (int m = 0; m < 3; m++) {
        cfg.pooling = modes[m];
        cfg.normalize = m == 2;
        eb_safetensors *st;
        assert_int_equal(eb__safetensors_open(TINY_DIR "/model.safetensors", NULL, &st, &err), EB_OK);
        eb_bert *model;
        assert_int_equal(eb__bert_create(&cfg, st, NULL, &model, &err), EB_OK);
        for (size_t i = 0; i < fx.n_hidden; i++) {
            double norm = 0;
            for (size_t c = 0; c < h; c++) {
                double v = 0;
                if (modes[m] == EB_POOL_CLS) {
                    v = fx.hidden[i][c];
                } else {
                    for (size_t t = 0; t < fx.lengths[i]; t++)
                        v += fx.hidden[i][t * h + c];
                    v /= (double)fx.lengths[i];
                }
                want[i * h + c] = (float)v;
                norm += v * v;
            }
            for (size_t c = 0; m == 2 && c < h; c++)
                want[i * h + c] = (float)(want[i * h + c] / sqrt(norm));
        }
        assert_int_equal(eb__bert_encode(model, fx.ids, fx.lengths, fx.n_hidden, got, NULL, &err), EB_OK);
        double worst_cosine = 1, worst_diff = 0;
        sentence_fixture_compare_rows(m == 0 ? "CLS pooling" : m == 1 ? "mean pooling" : "normalised mean pooling", got, want,
                     fx.n_hidden, h, 0, &worst_cosine, &worst_diff);
        if (m == 2) {
            for (size_t i = 0; i < fx.n_hidden; i++) {
                double norm = 0;
                for (size_t c = 0; c < h; c++)
                    norm += (double)got[i * h + c] * got[i * h + c];
                assert_true(fabs(sqrt(norm) - 1) < 1e-5);
            }
        }
        eb__bert_free(model);
    }
    eb__sentence_config_release(&cfg, eb_default_allocator());
    free(want);
    free(got);
    sentence_fixture_free(&fx);
}

static void test_minilm_matches_sentence_transformers(void **state)
{
    (void)state;
    char dir[1024];
    sentence_fixture_minilm_dir(dir, sizeof dir);
    sentence_fixture fx = load_fixture("all-MiniLM-L6-v2");
    eb_bert *model = load_model(dir);
    const eb_sentence_config *cfg = eb__bert_config(model);
    assert_int_equal(cfg->bert.num_layers, 6);
    assert_int_equal(cfg->bert.num_heads, 12);
    assert_int_equal(cfg->pooling, EB_POOL_MEAN);
    assert_true(cfg->normalize);
    assert_int_equal(cfg->max_seq_length, 256);
    check_against_fixture(model, &fx, "all-MiniLM-L6-v2");
    eb__bert_free(model);
    sentence_fixture_free(&fx);
}

/* Padded input with a mask gives the packed result exactly, and zeros in the hidden state's padding. */
static void test_padded_batches_equal_packed_ones(void **state)
{
    (void)state;
    sentence_fixture fx = load_fixture("tiny-bert");
    eb_bert *model = load_model(TINY_DIR);
    enum { BATCH = 8 };
    size_t seq = 0;
    for (size_t i = 0; i < BATCH; i++)
        seq = fx.lengths[i] > seq ? fx.lengths[i] : seq;
    int32_t *ids = calloc(BATCH * seq, sizeof *ids);
    int32_t *mask = calloc(BATCH * seq, sizeof *mask);
    for (size_t i = 0; i < BATCH; i++) {
        for (size_t t = 0; t < seq; t++) {
            /* Padding ids are arbitrary but valid; the mask alone must keep them out. */
            ids[i * seq + t] = t < fx.lengths[i] ? fx.ids[fx.offsets[i] + t] : (int32_t)(t % 7);
            mask[i * seq + t] = t < fx.lengths[i];
        }
    }
    float packed[BATCH * 64], padded[BATCH * 64];
    float *hidden = calloc(BATCH * seq * 64, sizeof *hidden);
    eb_error err;
    assert_int_equal(eb__bert_encode(model, fx.ids, fx.lengths, BATCH, packed, NULL, &err), EB_OK);
    assert_int_equal(eb__bert_encode_padded(model, ids, mask, BATCH, seq, padded, hidden, &err), EB_OK);
    assert_memory_equal(packed, padded, sizeof packed);
    for (size_t i = 0; i < BATCH; i++) {
        for (size_t t = fx.lengths[i]; t < seq; t++) {
            for (size_t c = 0; c < 64; c++)
                assert_true(hidden[(i * seq + t) * 64 + c] == 0);
        }
    }

    /* One text alone or among others: the same embedding (up to BLAS blocking). */
    float alone[64];
    assert_int_equal(eb__bert_encode(model, fx.ids + fx.offsets[3], fx.lengths + 3, 1, alone, NULL, &err), EB_OK);
    double worst_cosine = 1, worst_diff = 0;
    sentence_fixture_compare_rows("text 3 alone", alone, packed + 3 * 64, 1, 64, 3, &worst_cosine, &worst_diff);
    assert_true(worst_diff < 1e-5);

    /* A mask that is not ones-then-zeros, or has no token, is refused naming the row and position. */
    mask[2 * seq + 0] = 0;
    assert_int_equal(eb__bert_encode_padded(model, ids, mask, BATCH, seq, padded, NULL, &err), EB_ERR_INVALID_PARAM);
    assert_non_null(strstr(err.message, "row 2"));
    mask[2 * seq + 0] = 1;
    mask[5 * seq + seq - 1] = 1;
    if (fx.lengths[5] < seq - 1) {
        assert_int_equal(eb__bert_encode_padded(model, ids, mask, BATCH, seq, padded, NULL, &err),
                         EB_ERR_INVALID_PARAM);
        assert_non_null(strstr(err.message, "row 5"));
    }
    mask[5 * seq + seq - 1] = fx.lengths[5] == seq;
    for (size_t t = 0; t < seq; t++)
        mask[t] = 0;
    assert_int_equal(eb__bert_encode_padded(model, ids, mask, BATCH, seq, padded, NULL, &err), EB_ERR_INVALID_PARAM);
    assert_non_null(strstr(err.message, "row 0 has no tokens"));
    free(hidden);
    free(ids);
    free(mask);
    eb__bert_free(model);
    sentence_fixture_free(&fx);
}

static void test_bad_token_input_is_named(void **state)
{
    (void)state;
    eb_bert *model = load_model(TINY_DIR);
    float out[3 * 64];
    int32_t ids[6] = {2, 10, 3, 2, 493, 3};
    size_t lengths[2] = {3, 3};
    eb_error err;
    assert_int_equal(eb__bert_encode(model, ids, lengths, 2, out, NULL, &err), EB_ERR_INVALID_PARAM);
    assert_non_null(strstr(err.message, "text 1, token 1: id 493"));
    ids[4] = -1;
    assert_int_equal(eb__bert_encode(model, ids, lengths, 2, out, NULL, &err), EB_ERR_INVALID_PARAM);
    ids[4] = 492;
    assert_int_equal(eb__bert_encode(model, ids, lengths, 2, out, NULL, &err), EB_OK);
    lengths[1] = 0;
    assert_int_equal(eb__bert_encode(model, ids, lengths, 2, out, NULL, &err), EB_ERR_INVALID_PARAM);
    assert_non_null(strstr(err.message, "text 1 has 0 tokens"));
    int32_t *many = calloc(129, sizeof *many);
    size_t long_length = 129;
    assert_int_equal(eb__bert_encode(model, many, &long_length, 1, out, NULL, &err), EB_ERR_INVALID_PARAM);
    assert_non_null(strstr(err.message, "129 tokens"));
    long_length = 128; /* max_position_embeddings itself is fine */
    assert_int_equal(eb__bert_encode(model, many, &long_length, 1, out, NULL, &err), EB_OK);
    free(many);
    assert_int_equal(eb__bert_encode(model, ids, lengths, 0, out, NULL, &err), EB_ERR_EMPTY_INPUT);
    assert_int_equal(eb__bert_encode(model, NULL, lengths, 1, out, NULL, &err), EB_ERR_NULL_POINTER);
    assert_int_equal(eb__bert_encode(model, ids, lengths, 1, NULL, NULL, &err), EB_ERR_NULL_POINTER);
    eb__bert_free(model);
}

/* ---- broken model directories ------------------------------------------------ */

static char work_dir[64];

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    fputs(text, f);
    assert_int_equal(fclose(f), 0);
}

static const char *const tiny_files[] = {"config.json", "modules.json", "sentence_bert_config.json",
                                         "model.safetensors", "1_Pooling/config.json"};

/* A fresh copy of the tiny model in work_dir. */
static void copy_tiny(void)
{
    sentence_fixture_copy_tiny(work_dir, tiny_files, 5);
}

static const char *tiny_config =
    "{\"model_type\": \"bert\", \"hidden_act\": \"gelu\", \"hidden_size\": 64, \"num_hidden_layers\": 2,"
    " \"num_attention_heads\": 4, \"intermediate_size\": 128, \"vocab_size\": 493,"
    " \"max_position_embeddings\": 128, \"type_vocab_size\": 2, \"layer_norm_eps\": 1e-07%s}";

/* Replace one file of the copy with text, load, and expect status with needle and the named file in the message. */
static void expect_load_failure_naming(const char *file, const char *text, eb_status expected, const char *needle,
                                       const char *named)
{
    copy_tiny();
    char path[512];
    snprintf(path, sizeof path, "%s/%s", work_dir, file);
    if (text == NULL)
        unlink(path);
    else
        write_text(path, text);
    eb_bert *model = (eb_bert *)path;
    eb_error err;
    eb_status status = eb__bert_load(work_dir, NULL, &model, &err);
    if (status != expected || strstr(err.message, needle) == NULL || strstr(err.message, named) == NULL)
        fail_msg("%s = %s: %s '%s' (wanted %s and '%s')", file, text == NULL ? "(missing)" : text,
                 eb_status_string(status), err.message, eb_status_string(expected), needle);
    assert_null(model);
}

static void expect_load_failure(const char *file, const char *text, eb_status expected, const char *needle)
{
    expect_load_failure_naming(file, text, expected, needle, file);
}

static void test_broken_model_directories_are_refused_by_name(void **state)
{
    (void)state;
    char text[1024];
    copy_tiny();
    eb_bert *model = load_model(work_dir);
    eb__bert_free(model);

    expect_load_failure("config.json", NULL, EB_ERR_IO, "cannot open");
    expect_load_failure("model.safetensors", NULL, EB_ERR_IO, "cannot open");
    expect_load_failure("modules.json", NULL, EB_ERR_IO, "cannot open");
    expect_load_failure("1_Pooling/config.json", NULL, EB_ERR_IO, "cannot open");
    expect_load_failure("config.json", "{\"model_type\": \"bert\",", EB_ERR_FORMAT, "not valid JSON");
    snprintf(text, sizeof text,
             "{\"model_type\": \"roberta\", \"hidden_act\": \"gelu\", \"hidden_size\": 64}");
    expect_load_failure("config.json", text, EB_ERR_FORMAT, "model_type 'roberta' is not supported");
    snprintf(text, sizeof text, "{\"model_type\": \"bert\", \"hidden_act\": \"gelu_new\", \"hidden_size\": 64}");
    expect_load_failure("config.json", text, EB_ERR_FORMAT, "hidden_act 'gelu_new' is not supported");
    snprintf(text, sizeof text, tiny_config, ", \"position_embedding_type\": \"relative_key\"");
    expect_load_failure("config.json", text, EB_ERR_FORMAT, "position_embedding_type 'relative_key'");
    expect_load_failure("config.json", "{\"model_type\": \"bert\", \"hidden_act\": \"gelu\"}", EB_ERR_FORMAT,
                        "hidden_size is missing");
    expect_load_failure("config.json",
                        "{\"model_type\": \"bert\", \"hidden_act\": \"gelu\", \"hidden_size\": 64,"
                        " \"num_hidden_layers\": 2, \"num_attention_heads\": 5, \"intermediate_size\": 128,"
                        " \"vocab_size\": 493, \"max_position_embeddings\": 128, \"type_vocab_size\": 2,"
                        " \"layer_norm_eps\": 1e-07}",
                        EB_ERR_FORMAT, "not a multiple of num_attention_heads 5");
    expect_load_failure("config.json",
                        "{\"model_type\": \"bert\", \"hidden_act\": \"gelu\", \"hidden_size\": -64}", EB_ERR_FORMAT,
                        "hidden_size is -64");
    expect_load_failure("config.json",
                        "{\"model_type\": \"bert\", \"hidden_act\": \"gelu\", \"hidden_size\": \"64\"}",
                        EB_ERR_FORMAT, "hidden_size is not an integer");
    /* The config's sizes must match the weights: a vocabulary of 500 finds a 493-row embedding. */
    snprintf(text, sizeof text,
             "{\"model_type\": \"bert\", \"hidden_act\": \"gelu\", \"hidden_size\": 64, \"num_hidden_layers\": 2,"
             " \"num_attention_heads\": 4, \"intermediate_size\": 128, \"vocab_size\": 500,"
             " \"max_position_embeddings\": 128, \"type_vocab_size\": 2, \"layer_norm_eps\": 1e-07}");
    expect_load_failure_naming("config.json", text, EB_ERR_FORMAT,
                               "'bert.embeddings.word_embeddings.weight' has shape [493, 64], expected [500, 64]",
                               "model.safetensors");
    snprintf(text, sizeof text,
             "{\"model_type\": \"bert\", \"hidden_act\": \"gelu\", \"hidden_size\": 64, \"num_hidden_layers\": 3,"
             " \"num_attention_heads\": 4, \"intermediate_size\": 128, \"vocab_size\": 493,"
             " \"max_position_embeddings\": 128, \"type_vocab_size\": 2, \"layer_norm_eps\": 1e-07}");
    expect_load_failure("model.safetensors", "", EB_ERR_FORMAT, "too short");
    copy_tiny();
    char path[512];
    snprintf(path, sizeof path, "%s/config.json", work_dir);
    write_text(path, text);
    eb_error err;
    assert_int_equal(eb__bert_load(work_dir, NULL, &model, &err), EB_ERR_FORMAT);
    assert_non_null(strstr(err.message, "'bert.encoder.layer.2.attention.self.query.weight' is missing"));

    expect_load_failure("modules.json",
                        "[{\"type\": \"sentence_transformers.models.Transformer\", \"path\": \"\"},"
                        " {\"type\": \"sentence_transformers.models.Pooling\", \"path\": \"1_Pooling\"},"
                        " {\"type\": \"sentence_transformers.models.Dense\", \"path\": \"2_Dense\"}]",
                        EB_ERR_FORMAT, "module 2 is 'sentence_transformers.models.Dense'");
    expect_load_failure("modules.json",
                        "[{\"type\": \"sentence_transformers.models.Transformer\", \"path\": \"\"},"
                        " {\"type\": \"sentence_transformers.models.Pooling\", \"path\": \"../1_Pooling\"}]",
                        EB_ERR_FORMAT, "path '../1_Pooling'");
    expect_load_failure("modules.json", "[{\"type\": \"sentence_transformers.models.Transformer\"}]", EB_ERR_FORMAT,
                        "1 modules");
    expect_load_failure("1_Pooling/config.json",
                        "{\"word_embedding_dimension\": 64, \"pooling_mode_mean_sqrt_len_tokens\": true}",
                        EB_ERR_FORMAT, "pooling_mode_mean_sqrt_len_tokens is not supported");
    expect_load_failure("1_Pooling/config.json",
                        "{\"word_embedding_dimension\": 64, \"pooling_mode_mean_tokens\": true,"
                        " \"pooling_mode_max_tokens\": true}",
                        EB_ERR_FORMAT, "exactly one pooling mode");
    expect_load_failure("1_Pooling/config.json", "{\"word_embedding_dimension\": 32, \"pooling_mode_cls_token\": true}",
                        EB_ERR_FORMAT, "word_embedding_dimension is 32");
    expect_load_failure("1_Pooling/config.json", "{\"embedding_dimension\": 64, \"pooling_mode\": \"lasttoken\"}",
                        EB_ERR_FORMAT, "pooling_mode 'lasttoken'");
    expect_load_failure("sentence_bert_config.json", "{\"max_seq_length\": 129}", EB_ERR_FORMAT,
                        "max_seq_length 129 exceeds max_position_embeddings 128");
    expect_load_failure("sentence_bert_config.json", "{\"max_seq_length\": 16, \"do_lower_case\": 1}", EB_ERR_FORMAT,
                        "do_lower_case is not true or false");

    /* The newer sentence-transformers spellings load: dotted module paths and "pooling_mode". */
    copy_tiny();
    snprintf(path, sizeof path, "%s/modules.json", work_dir);
    write_text(path, "[{\"type\": \"sentence_transformers.base.modules.transformer.Transformer\", \"path\": \"\"},"
                     " {\"type\": \"sentence_transformers.sentence_transformer.modules.pooling.Pooling\","
                     " \"path\": \"1_Pooling\"}, {\"type\": \"sentence_transformers.models.Normalize\"}]");
    snprintf(path, sizeof path, "%s/1_Pooling/config.json", work_dir);
    write_text(path, "{\"embedding_dimension\": 64, \"pooling_mode\": \"cls\", \"include_prompt\": true}");
    snprintf(path, sizeof path, "%s/sentence_bert_config.json", work_dir);
    write_text(path, "{\"transformer_task\": \"feature-extraction\"}");
    model = load_model(work_dir);
    assert_int_equal(eb__bert_config(model)->pooling, EB_POOL_CLS);
    assert_true(eb__bert_config(model)->normalize);
    assert_int_equal(eb__bert_config(model)->max_seq_length, 128);
    eb__bert_free(model);

    /* A FIFO in place of a config file is refused at once rather than waited on. */
    copy_tiny();
    snprintf(path, sizeof path, "%s/modules.json", work_dir);
    unlink(path);
    assert_int_equal(mkfifo(path, 0600), 0);
    assert_int_equal(eb__bert_load(work_dir, NULL, &model, &err), EB_ERR_IO);
    assert_non_null(strstr(err.message, "not a regular file"));
    unlink(path);
}

static void test_allocation_failures_leak_nothing(void **state)
{
    (void)state;
    counting_allocator counter;
    eb_allocator mem = counting_allocator_init(&counter);
    eb_bert *model;
    eb_error err;
    assert_int_equal(eb__bert_load(TINY_DIR, &mem, &model, &err), EB_OK);
    eb__bert_free(model);
    assert_int_equal(counter.live_blocks, 0);
    size_t needed = counter.attempts;
    for (size_t fail_at = 0; fail_at < needed; fail_at++) {
        counting_allocator_arm(&counter, fail_at);
        assert_int_equal(eb__bert_load(TINY_DIR, &mem, &model, &err), EB_ERR_NOMEM);
        assert_null(model);
        assert_int_equal(counter.live_blocks, 0);
    }
    counting_allocator_arm(&counter, SIZE_MAX);
    assert_int_equal(eb__bert_load(TINY_DIR, &mem, &model, &err), EB_OK);
    int32_t ids[8] = {2, 10, 11, 12, 3, 2, 20, 3};
    size_t lengths[2] = {5, 3};
    int32_t mask[10] = {1, 1, 1, 1, 1, 1, 1, 1, 0, 0};
    int32_t padded_ids[10] = {2, 10, 11, 12, 3, 2, 20, 3, 0, 0};
    float out[2 * 64], hidden[10 * 64];
    for (int padded = 0; padded < 2; padded++) {
        size_t before = counter.live_blocks;
        counting_allocator_arm(&counter, SIZE_MAX);
        eb_status ok = padded ? eb__bert_encode_padded(model, padded_ids, mask, 2, 5, out, hidden, &err)
                              : eb__bert_encode(model, ids, lengths, 2, out, hidden, &err);
        assert_int_equal(ok, EB_OK);
        size_t calls = counter.attempts;
        assert_true(calls >= 1);
        for (size_t fail_at = 0; fail_at < calls; fail_at++) {
            counting_allocator_arm(&counter, fail_at);
            eb_status status = padded ? eb__bert_encode_padded(model, padded_ids, mask, 2, 5, out, hidden, &err)
                                      : eb__bert_encode(model, ids, lengths, 2, out, hidden, &err);
            assert_int_equal(status, EB_ERR_NOMEM);
            assert_int_equal(counter.live_blocks, before);
        }
    }
    eb__bert_free(model);
    assert_int_equal(counter.live_blocks, 0);
}

typedef struct job {
    const eb_bert *model;
    const sentence_fixture *fx;
    float *out;
    eb_status status;
} job;

static void *run_job(void *arg)
{
    job *j = arg;
    j->status = EB_OK;
    for (size_t first = 0; first < j->fx->n && j->status == EB_OK; first += 16) {
        size_t count = j->fx->n - first < 16 ? j->fx->n - first : 16;
        j->status = eb__bert_encode(j->model, j->fx->ids + j->fx->offsets[first], j->fx->lengths + first, count,
                                    j->out + first * j->fx->dim, NULL, NULL);
    }
    return NULL;
}

/* One model, four threads at once: each gets what one thread alone gets, bit for bit. */
static void test_concurrent_calls_agree(void **state)
{
    (void)state;
    sentence_fixture fx = load_fixture("tiny-bert");
    eb_bert *model = load_model(TINY_DIR);
    job jobs[4];
    pthread_t threads[4];
    for (int i = 0; i < 4; i++) {
        jobs[i] = (job){model, &fx, calloc(fx.n * fx.dim, sizeof(float)), EB_ERR_NOMEM};
        assert_non_null(jobs[i].out);
    }
    run_job(&jobs[0]);
    for (int i = 1; i < 4; i++)
        assert_int_equal(pthread_create(&threads[i], NULL, run_job, &jobs[i]), 0);
    for (int i = 1; i < 4; i++) {
        pthread_join(threads[i], NULL);
        assert_int_equal(jobs[i].status, EB_OK);
        assert_memory_equal(jobs[i].out, jobs[0].out, fx.n * fx.dim * sizeof(float));
    }
    for (int i = 0; i < 4; i++)
        free(jobs[i].out);
    eb__bert_free(model);
    sentence_fixture_free(&fx);
}

static int make_work_dir(void **state)
{
    (void)state;
    snprintf(work_dir, sizeof work_dir, "/tmp/eb-bert-XXXXXX");
    return mkdtemp(work_dir) == NULL ? -1 : 0;
}

static int remove_work_dir(void **state)
{
    (void)state;
    char path[512];
    for (size_t i = 0; i < 5; i++) {
        snprintf(path, sizeof path, "%s/%s", work_dir, tiny_files[i]);
        unlink(path);
    }
    snprintf(path, sizeof path, "%s/1_Pooling", work_dir);
    rmdir(path);
    return rmdir(work_dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tiny_settings_come_from_the_module_files),
        cmocka_unit_test(test_tiny_matches_sentence_transformers),
        cmocka_unit_test(test_other_poolings_match_the_reference_hidden_states),
        cmocka_unit_test(test_minilm_matches_sentence_transformers),
        cmocka_unit_test(test_padded_batches_equal_packed_ones),
        cmocka_unit_test(test_bad_token_input_is_named),
        cmocka_unit_test(test_broken_model_directories_are_refused_by_name),
        cmocka_unit_test(test_allocation_failures_leak_nothing),
        cmocka_unit_test(test_concurrent_calls_agree),
    };
    return cmocka_run_group_tests(tests, make_work_dir, remove_work_dir);
}
