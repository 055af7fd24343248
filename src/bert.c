/*
 * The BERT forward pass of a sentence-transformers model. Texts are packed
 * without padding: every dense product runs over all tokens of a chunk of
 * texts at once, and attention runs per text on exactly its own tokens, so no
 * work goes to padding and no padding mask is needed inside the layers.
 */
#include "blas.h" /* maps the CBLAS names to the chosen BLAS (scipy-openblas32 prefixes them) */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "bert.h"

typedef struct eb_bert_layer {
    const float *query_w, *query_b, *key_w, *key_b, *value_w, *value_b;
    const float *attn_out_w, *attn_out_b, *attn_norm_w, *attn_norm_b;
    const float *inter_w, *inter_b, *out_w, *out_b, *out_norm_w, *out_norm_b;
} eb_bert_layer;

struct eb_bert {
    eb_allocator mem;
    eb_sentence_config cfg;
    eb_safetensors *st;
    const float *word, *position, *token_type, *embed_norm_w, *embed_norm_b;
    eb_bert_layer *layers;
    float **owned;          /* converted tensors, freed with the model */
    size_t n_owned;
    size_t owned_capacity;
};

const eb_sentence_config *eb__bert_config(const eb_bert *model)
{
    return &model->cfg;
}

size_t eb__bert_output_dim(const eb_bert *model)
{
    return model->cfg.bert.hidden_size;
}

void eb__bert_free(eb_bert *model)
{
    if (model == NULL)
        return;
    eb_allocator mem = model->mem;
    for (size_t i = 0; i < model->n_owned; i++)
        eb__free(&mem, model->owned[i]);
    eb__free(&mem, model->owned);
    eb__free(&mem, model->layers);
    eb__safetensors_close(model->st);
    eb__sentence_config_release(&model->cfg, &mem);
    eb__free(&mem, model);
}

/* Look up prefix + name with exactly the given shape, as float32. */
static eb_status weight(eb_bert *model, const char *prefix, const char *name, size_t rows, size_t cols,
                        const float **out, eb_error *err)
{
    char full[160];
    int n = snprintf(full, sizeof full, "%s%s", prefix, name);
    if (n < 0 || (size_t)n >= sizeof full)
        return eb__fail(err, EB_ERR_FORMAT, "%s: tensor name %s%s is too long", model->st->source, prefix, name);
    const eb_st_tensor *t = eb__safetensors_find(model->st, full);
    if (t == NULL)
        return eb__fail(err, EB_ERR_FORMAT, "%s: tensor '%s' is missing", model->st->source, full);
    size_t shape[2] = {rows, cols};
    float *owned;
    eb_status status = eb__safetensors_f32(model->st, t, shape, cols == 0 ? 1 : 2, out, &owned, err);
    if (status != EB_OK || owned == NULL)
        return status;
    if (model->n_owned == model->owned_capacity) {
        /* Only as many conversions as tensors: the capacity was set from the tensor count at create. */
        eb__free(&model->mem, owned);
        return eb__fail(err, EB_ERR_FORMAT, "%s: more converted tensors than expected", model->st->source);
    }
    model->owned[model->n_owned++] = owned;
    return EB_OK;
}

static eb_status load_layer(eb_bert *model, const char *prefix, size_t index, eb_bert_layer *layer, eb_error *err)
{
    const eb_bert_config *c = &model->cfg.bert;
    size_t h = c->hidden_size, inter = c->intermediate_size;
    char p[96];
    snprintf(p, sizeof p, "%sencoder.layer.%zu.", prefix, index);
    eb_status s;
    if ((s = weight(model, p, "attention.self.query.weight", h, h, &layer->query_w, err)) != EB_OK ||
        (s = weight(model, p, "attention.self.query.bias", h, 0, &layer->query_b, err)) != EB_OK ||
        (s = weight(model, p, "attention.self.key.weight", h, h, &layer->key_w, err)) != EB_OK ||
        (s = weight(model, p, "attention.self.key.bias", h, 0, &layer->key_b, err)) != EB_OK ||
        (s = weight(model, p, "attention.self.value.weight", h, h, &layer->value_w, err)) != EB_OK ||
        (s = weight(model, p, "attention.self.value.bias", h, 0, &layer->value_b, err)) != EB_OK ||
        (s = weight(model, p, "attention.output.dense.weight", h, h, &layer->attn_out_w, err)) != EB_OK ||
        (s = weight(model, p, "attention.output.dense.bias", h, 0, &layer->attn_out_b, err)) != EB_OK ||
        (s = weight(model, p, "attention.output.LayerNorm.weight", h, 0, &layer->attn_norm_w, err)) != EB_OK ||
        (s = weight(model, p, "attention.output.LayerNorm.bias", h, 0, &layer->attn_norm_b, err)) != EB_OK ||
        (s = weight(model, p, "intermediate.dense.weight", inter, h, &layer->inter_w, err)) != EB_OK ||
        (s = weight(model, p, "intermediate.dense.bias", inter, 0, &layer->inter_b, err)) != EB_OK ||
        (s = weight(model, p, "output.dense.weight", h, inter, &layer->out_w, err)) != EB_OK ||
        (s = weight(model, p, "output.dense.bias", h, 0, &layer->out_b, err)) != EB_OK ||
        (s = weight(model, p, "output.LayerNorm.weight", h, 0, &layer->out_norm_w, err)) != EB_OK ||
        (s = weight(model, p, "output.LayerNorm.bias", h, 0, &layer->out_norm_b, err)) != EB_OK)
        return s;
    return EB_OK;
}

static eb_status copy_config(eb_sentence_config *dst, const eb_sentence_config *src, const eb_allocator *mem)
{
    *dst = *src;
    dst->transformer_dir = NULL;
    dst->pooling_dir = NULL;
    const char *dirs[2] = {src->transformer_dir != NULL ? src->transformer_dir : "",
                           src->pooling_dir != NULL ? src->pooling_dir : ""};
    char **out[2] = {&dst->transformer_dir, &dst->pooling_dir};
    for (int i = 0; i < 2; i++) {
        size_t length = strlen(dirs[i]);
        *out[i] = eb__calloc(mem, length + 1, 1);
        if (*out[i] == NULL)
            return EB_ERR_NOMEM;
        memcpy(*out[i], dirs[i], length);
    }
    return EB_OK;
}

eb_status eb__bert_create(const eb_sentence_config *cfg, eb_safetensors *st, const eb_allocator *mem, eb_bert **out,
                          eb_error *err)
{
    if (out == NULL)
        return eb__fail(err, EB_ERR_NULL_POINTER, "out is NULL");
    *out = NULL;
    if (cfg == NULL || st == NULL)
        return eb__fail(err, EB_ERR_NULL_POINTER, "%s is NULL", cfg == NULL ? "cfg" : "st");
    if (mem == NULL)
        mem = eb_default_allocator();
    const eb_bert_config *c = &cfg->bert;
    if (c->hidden_size == 0 || c->num_heads == 0 || c->hidden_size % c->num_heads != 0 || c->num_layers == 0 ||
        c->hidden_size > EB_BERT_MAX_HIDDEN || c->intermediate_size == 0 ||
        c->intermediate_size > EB_BERT_MAX_INTERMEDIATE || c->num_layers > EB_BERT_MAX_LAYERS ||
        c->vocab_size == 0 || c->vocab_size > EB_BERT_MAX_VOCAB || c->max_positions == 0 ||
        c->max_positions > EB_BERT_MAX_POSITIONS || c->type_vocab_size == 0 || !(c->layer_norm_eps > 0) ||
        cfg->max_seq_length == 0 || cfg->max_seq_length > c->max_positions || cfg->pooling < EB_POOL_MEAN ||
        cfg->pooling > EB_POOL_MAX)
        return eb__fail(err, EB_ERR_INVALID_PARAM, "the BERT settings are inconsistent");

    eb_bert *model = eb__calloc(mem, 1, sizeof *model);
    if (model == NULL)
        return eb__fail(err, EB_ERR_NOMEM, "out of memory loading %s", st->source);
    model->mem = *mem;
    model->st = st;
    model->owned_capacity = st->count;
    model->layers = eb__calloc(mem, c->num_layers, sizeof *model->layers);
    model->owned = st->count == 0 ? NULL : eb__calloc(mem, st->count, sizeof *model->owned);
    eb_status status = EB_OK;
    if (model->layers == NULL || (st->count != 0 && model->owned == NULL) ||
        copy_config(&model->cfg, cfg, mem) != EB_OK)
        status = eb__fail(err, EB_ERR_NOMEM, "out of memory loading %s", st->source);

    /* BertModel's own checkpoints name tensors plainly; BertFor* checkpoints put them under "bert.". */
    const char *prefix = "";
    if (status == EB_OK && eb__safetensors_find(st, "embeddings.word_embeddings.weight") == NULL) {
        if (eb__safetensors_find(st, "bert.embeddings.word_embeddings.weight") != NULL)
            prefix = "bert.";
        else
            status = eb__fail(err, EB_ERR_FORMAT,
                              "%s: no BERT embeddings (neither 'embeddings.word_embeddings.weight' nor "
                              "'bert.embeddings.word_embeddings.weight')",
                              st->source);
    }
    char p[32];
    snprintf(p, sizeof p, "%sembeddings.", prefix);
    size_t h = c->hidden_size;
    if (status == EB_OK &&
        ((status = weight(model, p, "word_embeddings.weight", c->vocab_size, h, &model->word, err)) != EB_OK ||
         (status = weight(model, p, "position_embeddings.weight", c->max_positions, h, &model->position, err)) !=
             EB_OK ||
         (status = weight(model, p, "token_type_embeddings.weight", c->type_vocab_size, h, &model->token_type,
                          err)) != EB_OK ||
         (status = weight(model, p, "LayerNorm.weight", h, 0, &model->embed_norm_w, err)) != EB_OK ||
         (status = weight(model, p, "LayerNorm.bias", h, 0, &model->embed_norm_b, err)) != EB_OK))
        (void)0;
    for (size_t i = 0; status == EB_OK && i < c->num_layers; i++)
        status = load_layer(model, prefix, i, &model->layers[i], err);
    if (status != EB_OK) {
        model->st = NULL; /* still the caller's */
        eb__bert_free(model);
        return status;
    }
    *out = model;
    return EB_OK;
}

eb_status eb__bert_load(const char *dir, const eb_allocator *mem, eb_bert **out, eb_error *err)
{
    if (out == NULL)
        return eb__fail(err, EB_ERR_NULL_POINTER, "out is NULL");
    *out = NULL;
    if (mem == NULL)
        mem = eb_default_allocator();
    eb_sentence_config cfg;
    eb_status status = eb__sentence_config_load(dir, mem, &cfg, err);
    if (status != EB_OK)
        return status;
    char path[4096 + 32];
    int n = snprintf(path, sizeof path, "%s/model.safetensors", cfg.transformer_dir);
    eb_safetensors *st = NULL;
    if (n < 0 || (size_t)n >= sizeof path)
        status = eb__fail(err, EB_ERR_INVALID_PARAM, "the path of %s/model.safetensors is too long",
                          cfg.transformer_dir);
    else
        status = eb__safetensors_open(path, mem, &st, err);
    if (status == EB_OK) {
        status = eb__bert_create(&cfg, st, mem, out, err);
        if (status != EB_OK)
            eb__safetensors_close(st);
    }
    eb__sentence_config_release(&cfg, mem);
    if (status == EB_OK)
        eb__error_clear(err);
    return status;
}

/* ---- forward pass ---------------------------------------------------------- */

/* x = LayerNorm(x + add) row by row (add may be NULL); statistics in double so long rows lose nothing. */
static void add_layer_norm(float *x, const float *add, size_t rows, size_t h, const float *w, const float *b,
                           float eps)
{
    for (size_t r = 0; r < rows; r++) {
        float *row = x + r * h;
        if (add != NULL) {
            const float *a = add + r * h;
            for (size_t c = 0; c < h; c++)
                row[c] += a[c];
        }
        double sum = 0;
        for (size_t c = 0; c < h; c++)
            sum += row[c];
        double mean = sum / (double)h;
        double var = 0;
        for (size_t c = 0; c < h; c++) {
            double d = row[c] - mean;
            var += d * d;
        }
        float inv = (float)(1.0 / sqrt(var / (double)h + (double)eps));
        float m = (float)mean;
        for (size_t c = 0; c < h; c++)
            row[c] = (row[c] - m) * inv * w[c] + b[c];
    }
}

/* out (rows x n) = x (rows x k) W^T + bias, W being PyTorch's n x k Linear weight. */
static void linear(const float *x, size_t rows, size_t k, const float *w, const float *bias, size_t n, float *out)
{
    for (size_t r = 0; r < rows; r++)
        memcpy(out + r * n, bias, n * sizeof *out);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)rows, (int)n, (int)k, 1.0f, x, (int)k, w, (int)k, 1.0f,
                out, (int)n);
}

/* Element-wise loops run in fixed blocks plus a scalar tail, which GCC vectorises even under -O2's cost model. */
enum { BLOCK = 16 };

/*
 * BERT's "gelu" is the erf form, x/2 (1 + erf(x / sqrt 2)), not the tanh
 * approximation. erf comes from Abramowitz and Stegun's formula 7.1.26
 * (absolute error below 1.5e-7, under float rounding of the result), which is
 * also what PyTorch's vectorised CPU kernel evaluates.
 */
static inline float gelu_one(float x)
{
    float z = x * 0.70710678118654752440f;
    float a = z < 0 ? -z : z;
    float t = 1.0f / (1.0f + 0.3275911f * a);
    float poly = t * (0.254829592f + t * (-0.284496736f + t * (1.421413741f + t * (-1.453152027f +
                                                                                 t * 1.061405429f))));
    float erf_abs = 1.0f - poly * eb__fast_expf(-a * a);
    float erf = z < 0 ? -erf_abs : erf_abs;
    return 0.5f * x * (1.0f + erf);
}

static EB_VECTOR_CLONES void gelu(float *restrict x, size_t count)
{
    size_t i = 0;
    for (; i + BLOCK <= count; i += BLOCK) {
        for (size_t j = i; j < i + BLOCK; j++)
            x[j] = gelu_one(x[j]);
    }
    for (; i < count; i++)
        x[i] = gelu_one(x[i]);
}

/* row = softmax(row) over n entries. */
static EB_VECTOR_CLONES void softmax(float *restrict row, size_t n)
{
    float max = row[0];
    for (size_t j = 1; j < n; j++)
        max = row[j] > max ? row[j] : max;
    float sum = 0;
    size_t i = 0;
    for (; i + BLOCK <= n; i += BLOCK) {
        for (size_t j = i; j < i + BLOCK; j++)
            row[j] = eb__fast_expf(row[j] - max);
    }
    for (; i < n; i++)
        row[i] = eb__fast_expf(row[i] - max);
    for (size_t j = 0; j < n; j++)
        sum += row[j];
    float inv = 1.0f / sum;
    for (size_t j = 0; j < n; j++)
        row[j] *= inv;
}

typedef struct scratch {
    float *x, *q, *k, *v, *inter, *scores;
} scratch;

/*
 * Self-attention of one text of length tokens, rows of q/k/v starting at its
 * first token; the context replaces q (each head's block of q is read only
 * before its context is written).
 */
static void attend(const eb_bert_config *c, float *q, const float *k, const float *v, size_t length, float *scores)
{
    size_t h = c->hidden_size, dh = h / c->num_heads;
    float scale = (float)(1.0 / sqrt((double)dh));
    int n = (int)length;
    for (size_t head = 0; head < c->num_heads; head++) {
        size_t col = head * dh;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, n, (int)dh, scale, q + col, (int)h, k + col, (int)h,
                    0.0f, scores, n);
        for (size_t r = 0; r < length; r++)
            softmax(scores + r * length, length);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, (int)dh, n, 1.0f, scores, n, v + col, (int)h, 0.0f,
                    q + col, (int)h);
    }
}

/* Texts [first, first + count) whose tokens (total of them) start at ids; results to out and last_hidden. */
static void forward_chunk(const eb_bert *model, const int32_t *ids, const size_t *lengths, size_t count,
                          size_t total, scratch *s, float *out, float *last_hidden)
{
    const eb_sentence_config *cfg = &model->cfg;
    const eb_bert_config *c = &cfg->bert;
    size_t h = c->hidden_size, inter = c->intermediate_size;

    /* Embeddings: every text here has token type 0 (single sentences). */
    size_t row = 0;
    for (size_t t = 0; t < count; t++) {
        for (size_t pos = 0; pos < lengths[t]; pos++, row++) {
            const float *word = model->word + (size_t)ids[row] * h;
            const float *position = model->position + pos * h;
            float *x = s->x + row * h;
            for (size_t j = 0; j < h; j++)
                x[j] = word[j] + position[j] + model->token_type[j];
        }
    }
    add_layer_norm(s->x, NULL, total, h, model->embed_norm_w, model->embed_norm_b, c->layer_norm_eps);

    for (size_t l = 0; l < c->num_layers; l++) {
        const eb_bert_layer *layer = &model->layers[l];
        linear(s->x, total, h, layer->query_w, layer->query_b, h, s->q);
        linear(s->x, total, h, layer->key_w, layer->key_b, h, s->k);
        linear(s->x, total, h, layer->value_w, layer->value_b, h, s->v);
        size_t start = 0;
        for (size_t t = 0; t < count; t++) {
            attend(c, s->q + start * h, s->k + start * h, s->v + start * h, lengths[t], s->scores);
            start += lengths[t];
        }
        /* q holds the context now; k is free for the projection. */
        linear(s->q, total, h, layer->attn_out_w, layer->attn_out_b, h, s->k);
        add_layer_norm(s->x, s->k, total, h, layer->attn_norm_w, layer->attn_norm_b, c->layer_norm_eps);
        linear(s->x, total, h, layer->inter_w, layer->inter_b, inter, s->inter);
        gelu(s->inter, total * inter);
        linear(s->inter, total, inter, layer->out_w, layer->out_b, h, s->k);
        add_layer_norm(s->x, s->k, total, h, layer->out_norm_w, layer->out_norm_b, c->layer_norm_eps);
    }

    if (last_hidden != NULL)
        memcpy(last_hidden, s->x, total * h * sizeof *s->x);
    size_t start = 0;
    for (size_t t = 0; t < count; t++) {
        const float *tokens = s->x + start * h;
        float *pooled = out + t * h;
        size_t length = lengths[t];
        if (cfg->pooling == EB_POOL_CLS) {
            memcpy(pooled, tokens, h * sizeof *pooled);
        } else if (cfg->pooling == EB_POOL_MAX) {
            memcpy(pooled, tokens, h * sizeof *pooled);
            for (size_t r = 1; r < length; r++) {
                for (size_t j = 0; j < h; j++)
                    pooled[j] = tokens[r * h + j] > pooled[j] ? tokens[r * h + j] : pooled[j];
            }
        } else {
            for (size_t j = 0; j < h; j++) {
                double sum = 0;
                for (size_t r = 0; r < length; r++)
                    sum += tokens[r * h + j];
                pooled[j] = (float)(sum / (double)length);
            }
        }
        if (cfg->normalize) {
            double norm = 0;
            for (size_t j = 0; j < h; j++)
                norm += (double)pooled[j] * pooled[j];
            norm = sqrt(norm);
            /* sentence-transformers' Normalize divides by max(norm, 1e-12). */
            float inv = (float)(1.0 / (norm > 1e-12 ? norm : 1e-12));
            for (size_t j = 0; j < h; j++)
                pooled[j] *= inv;
        }
        start += length;
    }
}

eb_status eb__bert_encode(const eb_bert *model, const int32_t *ids, const size_t *lengths, size_t n, float *out,
                          float *last_hidden, eb_error *err)
{
    if (model == NULL || ids == NULL || lengths == NULL || out == NULL)
        return eb__fail(err, EB_ERR_NULL_POINTER, "%s is NULL",
                        model == NULL ? "model" : ids == NULL ? "ids" : lengths == NULL ? "lengths" : "out");
    if (n == 0)
        return eb__fail(err, EB_ERR_EMPTY_INPUT, "no texts to encode");
    const eb_bert_config *c = &model->cfg.bert;
    size_t h = c->hidden_size;
    size_t longest = 0, offset = 0;
    for (size_t t = 0; t < n; t++) {
        if (lengths[t] == 0 || lengths[t] > c->max_positions)
            return eb__fail(err, EB_ERR_INVALID_PARAM,
                            "text %zu has %zu tokens; between 1 and max_position_embeddings (%zu) are allowed", t,
                            lengths[t], c->max_positions);
        for (size_t pos = 0; pos < lengths[t]; pos++) {
            int32_t id = ids[offset + pos];
            if (id < 0 || (size_t)id >= c->vocab_size)
                return eb__fail(err, EB_ERR_INVALID_PARAM,
                                "text %zu, token %zu: id %d is outside the vocabulary of %zu", t, pos, (int)id,
                                c->vocab_size);
        }
        offset += lengths[t];
        longest = lengths[t] > longest ? lengths[t] : longest;
    }

    size_t capacity = longest > EB_BERT_CHUNK_TOKENS ? longest : EB_BERT_CHUNK_TOKENS;
    if (capacity > offset)
        capacity = offset;
    scratch s;
    size_t per_token = 4 * h + c->intermediate_size;
    float *block = eb__calloc(&model->mem, capacity * per_token + longest * longest, sizeof(float));
    if (block == NULL)
        return eb__fail(err, EB_ERR_NOMEM, "out of memory for the scratch of %zu tokens", capacity);
    s.x = block;
    s.q = s.x + capacity * h;
    s.k = s.q + capacity * h;
    s.v = s.k + capacity * h;
    s.inter = s.v + capacity * h;
    s.scores = s.inter + capacity * c->intermediate_size;

    size_t first = 0;
    offset = 0;
    while (first < n) {
        size_t count = 0, total = 0;
        while (first + count < n && (count == 0 || total + lengths[first + count] <= capacity))
            total += lengths[first + count++];
        forward_chunk(model, ids + offset, lengths + first, count, total, &s, out + first * h,
                      last_hidden == NULL ? NULL : last_hidden + offset * h);
        first += count;
        offset += total;
    }
    eb__free(&model->mem, block);
    eb__error_clear(err);
    return EB_OK;
}

eb_status eb__bert_encode_padded(const eb_bert *model, const int32_t *ids, const int32_t *mask, size_t batch,
                                 size_t seq, float *out, float *last_hidden, eb_error *err)
{
    if (model == NULL || ids == NULL || mask == NULL || out == NULL)
        return eb__fail(err, EB_ERR_NULL_POINTER, "%s is NULL",
                        model == NULL ? "model" : ids == NULL ? "ids" : mask == NULL ? "mask" : "out");
    if (batch == 0 || seq == 0)
        return eb__fail(err, EB_ERR_EMPTY_INPUT, "the batch is %zu x %zu", batch, seq);
    size_t cells;
    if (!eb__mul_size(batch, seq, &cells))
        return eb__fail(err, EB_ERR_TOO_LARGE, "a batch of %zu x %zu tokens is too large", batch, seq);
    size_t h = model->cfg.bert.hidden_size, hidden_cells;
    if (last_hidden != NULL && !eb__mul_size(cells, h, &hidden_cells))
        return eb__fail(err, EB_ERR_TOO_LARGE, "the hidden states of a %zu x %zu batch are too large", batch, seq);
    size_t *lengths = eb__calloc(&model->mem, batch, sizeof *lengths);
    int32_t *packed = eb__calloc(&model->mem, cells, sizeof *packed);
    float *hidden = NULL;
    eb_status status = EB_OK;
    if (lengths == NULL || packed == NULL)
        status = eb__fail(err, EB_ERR_NOMEM, "out of memory packing a %zu x %zu batch", batch, seq);
    size_t total = 0;
    for (size_t b = 0; status == EB_OK && b < batch; b++) {
        const int32_t *row = mask + b * seq;
        size_t length = 0;
        while (length < seq && row[length] == 1)
            length++;
        for (size_t pos = length; pos < seq; pos++) {
            if (row[pos] != 0) {
                status = eb__fail(err, EB_ERR_INVALID_PARAM,
                                  "attention mask row %zu, position %zu: %d after the padding began (the mask must "
                                  "be ones then zeros)",
                                  b, pos, (int)row[pos]);
                break;
            }
        }
        if (status == EB_OK && length == 0)
            status = eb__fail(err, EB_ERR_INVALID_PARAM, "attention mask row %zu has no tokens", b);
        lengths[b] = length;
        if (status == EB_OK)
            memcpy(packed + total, ids + b * seq, length * sizeof *packed);
        total += length;
    }
    if (status == EB_OK && last_hidden != NULL) {
        size_t floats;
        if (!eb__mul_size(total, h, &floats) || (hidden = eb__calloc(&model->mem, floats, sizeof *hidden)) == NULL)
            status = eb__fail(err, EB_ERR_NOMEM, "out of memory for the hidden states of %zu tokens", total);
    }
    if (status == EB_OK)
        status = eb__bert_encode(model, packed, lengths, batch, out, hidden, err);
    if (status == EB_OK && last_hidden != NULL) {
        memset(last_hidden, 0, cells * h * sizeof *last_hidden);
        size_t offset = 0;
        for (size_t b = 0; b < batch; b++) {
            memcpy(last_hidden + b * seq * h, hidden + offset * h, lengths[b] * h * sizeof *hidden);
            offset += lengths[b];
        }
    }
    eb__free(&model->mem, hidden);
    eb__free(&model->mem, packed);
    eb__free(&model->mem, lengths);
    return status;
}
