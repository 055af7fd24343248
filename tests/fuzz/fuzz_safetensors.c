/*
 * libFuzzer target: arbitrary bytes into the safetensors reader and the
 * sentence-transformers config parsers.
 *
 * fuzz-corpus: safetensors
 *
 * As a safetensors file (from a buffer): a refused input fails with
 * EB_ERR_FORMAT and a message and creates nothing. An accepted one must hold
 * only tensors whose byte ranges lie inside the data, match dtype times shape
 * and do not overlap, each found again by its name; every float tensor
 * converts to float32 (reading all of its bytes, so ASan sees any overrun),
 * and every allocation of another open can fail cleanly.
 * As each config file (config.json, 1_Pooling/config.json,
 * sentence_bert_config.json, modules.json): EB_OK with values in range, or
 * EB_ERR_FORMAT with a message.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bert.h"
#include "safetensors.h"

#include "fuzz_support.h"

static size_t dtype_size(eb_st_dtype dtype)
{
    switch (dtype) {
    case EB_ST_F64: case EB_ST_I64: case EB_ST_U64: return 8;
    case EB_ST_F32: case EB_ST_I32: case EB_ST_U32: return 4;
    case EB_ST_F16: case EB_ST_BF16: case EB_ST_I16: case EB_ST_U16: return 2;
    default: return 1;
    }
}

static void check_safetensors(const uint8_t *data, size_t size)
{
    eb_safetensors *st = (eb_safetensors *)&size; /* must become NULL on failure */
    eb_error err;
    eb_status status = eb__safetensors_open_buffer(data, size, "fuzz", NULL, &st, &err);
    if (status != EB_OK) {
        REQUIRE(status == EB_ERR_FORMAT);
        REQUIRE(st == NULL && err.status == status && strstr(err.message, "fuzz") != NULL);
        return;
    }
    REQUIRE(st != NULL && st->data >= data && st->data + st->data_size == data + size);
    for (size_t i = 0; i < st->count; i++) {
        const eb_st_tensor *t = &st->tensors[i];
        REQUIRE(t->begin <= t->end && t->end <= st->data_size);
        REQUIRE(t->end - t->begin == t->count * dtype_size(t->dtype));
        REQUIRE(eb__safetensors_find(st, t->name) == t);
        for (size_t j = 0; j < st->count; j++) {
            const eb_st_tensor *u = &st->tensors[j];
            if (j != i && t->begin < t->end && u->begin < u->end)
                REQUIRE(t->end <= u->begin || u->end <= t->begin);
        }
        const float *values;
        float *owned;
        status = eb__safetensors_f32(st, t, t->shape, t->ndim, &values, &owned, &err);
        if (t->dtype == EB_ST_F32 || t->dtype == EB_ST_F16 || t->dtype == EB_ST_BF16) {
            REQUIRE(status == EB_OK && values != NULL);
            volatile float sink = 0;
            for (size_t k = 0; k < t->count; k++)
                sink += values[k];
            (void)sink;
            free(owned);
        } else {
            REQUIRE(status == EB_ERR_FORMAT && owned == NULL);
        }
        /* Any other shape is refused. */
        size_t other[EB_ST_MAX_DIMS + 1];
        memcpy(other, t->shape, sizeof t->shape);
        other[t->ndim] = 1;
        REQUIRE(eb__safetensors_f32(st, t, other, t->ndim + 1, &values, &owned, &err) == EB_ERR_FORMAT);
    }
    eb__safetensors_close(st);

    failing_allocator counter = {0, SIZE_MAX, 0};
    eb_allocator mem = {failing_calloc, failing_free, &counter};
    REQUIRE(eb__safetensors_open_buffer(data, size, "fuzz", &mem, &st, &err) == EB_OK);
    eb__safetensors_close(st);
    REQUIRE(counter.live == 0);
    size_t allocations = counter.attempts;
    for (size_t fail_at = 0; fail_at < allocations && fail_at < 64; fail_at++) {
        counter = (failing_allocator){0, fail_at, 0};
        REQUIRE(eb__safetensors_open_buffer(data, size, "fuzz", &mem, &st, &err) == EB_ERR_NOMEM);
        REQUIRE(st == NULL && counter.live == 0);
    }
}

static void check_configs(const uint8_t *data, size_t size)
{
    const char *json = (const char *)data;
    eb_error err;
    eb_bert_config cfg;
    eb_status status = eb__bert_config_parse(json, size, "config.json", &cfg, &err);
    REQUIRE(status == EB_OK || (status == EB_ERR_FORMAT && err.message[0] != '\0'));
    if (status == EB_OK) {
        REQUIRE(cfg.hidden_size >= 1 && cfg.hidden_size <= EB_BERT_MAX_HIDDEN);
        REQUIRE(cfg.num_heads >= 1 && cfg.hidden_size % cfg.num_heads == 0);
        REQUIRE(cfg.num_layers >= 1 && cfg.num_layers <= EB_BERT_MAX_LAYERS);
        REQUIRE(cfg.vocab_size >= 1 && cfg.max_positions >= 1 && cfg.type_vocab_size >= 1);
        REQUIRE(cfg.layer_norm_eps > 0 && cfg.layer_norm_eps < 1);
    }
    eb_bert_pooling pooling;
    status = eb__pooling_config_parse(json, size, "1_Pooling/config.json", 384, &pooling, &err);
    REQUIRE(status == EB_OK || (status == EB_ERR_FORMAT && err.message[0] != '\0'));
    if (status == EB_OK)
        REQUIRE(pooling == EB_POOL_MEAN || pooling == EB_POOL_CLS || pooling == EB_POOL_MAX);
    size_t max_seq_length;
    bool lower;
    status = eb__sentence_bert_config_parse(json, size, "sentence_bert_config.json", &max_seq_length, &lower, &err);
    REQUIRE(status == EB_OK || (status == EB_ERR_FORMAT && err.message[0] != '\0'));
    if (status == EB_OK)
        REQUIRE(max_seq_length == 0 || (max_seq_length >= 2 && max_seq_length <= EB_BERT_MAX_POSITIONS));
    char transformer[64], pooling_path[64];
    bool normalize;
    status = eb__modules_parse(json, size, "modules.json", transformer, pooling_path, sizeof transformer, &normalize,
                               &err);
    REQUIRE(status == EB_OK || (status == EB_ERR_FORMAT && err.message[0] != '\0'));
    if (status == EB_OK)
        REQUIRE(strlen(transformer) < sizeof transformer && strstr(pooling_path, "..") == NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const uint8_t no_bytes[1] = {0};
    if (data == NULL)
        data = no_bytes;
    check_safetensors(data, size);
    check_configs(data, size);
    return 0;
}
