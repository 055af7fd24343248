/*
 * model2vec static embeddings: WordPiece tokens looked up in one matrix and averaged, reproducing
 * model2vec.StaticModel.encode (model2vec 0.10) number for number on float32 models.
 */
/* open flags (O_CLOEXEC) and fstat are POSIX.1-2008. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <json-c/json.h>

#include "embetter/encoder.h"
#include "encoder_internal.h"
#include "internal.h"
#include "safetensors.h"
#include "wordpiece.h"

/* model2vec's default when config.json has no max_length. */
enum { M2V_DEFAULT_MAX_LENGTH = 512 };
/* A tokenizer.json of a large multilingual vocabulary is tens of MB; far beyond that is not a tokenizer. */
#define M2V_MAX_TOKENIZER_BYTES ((size_t)512 << 20)
#define M2V_MAX_CONFIG_BYTES ((size_t)1 << 20)
enum { M2V_PATH_CAPACITY = 4096 };

typedef struct static_encoder {
    eb_encoder base;
    eb_allocator mem;
    eb_wordpiece *wp;
    eb_safetensors *st;
    const float *vectors; /* rows x dim */
    float *owned;         /* the converted copy when the file's data was not usable in place */
    size_t rows;
    size_t dim;
    bool normalize;
    bool truncate;        /* false: config.json's max_length is null */
    size_t max_length;    /* tokens kept when truncate */
    size_t max_chars;     /* model2vec first cuts each text to max_length * median token length characters */
    int32_t unk_id;       /* dropped from every text, as model2vec does; -1 when the model has none */
} static_encoder;

static const eb_encoder_vtable static_vtable;

static void release(static_encoder *enc)
{
    if (enc == NULL)
        return;
    eb_allocator mem = enc->mem;
    eb__wordpiece_free(enc->wp);
    eb__free(&mem, enc->owned);
    eb__safetensors_close(enc->st);
    eb__free(&mem, enc);
}

/* ---- loading ------------------------------------------------------------------ */

static eb_status join(char *out, const char *dir, const char *name, eb_error *err)
{
    int n = snprintf(out, M2V_PATH_CAPACITY, "%s/%s", dir, name);
    if (n < 0 || n >= M2V_PATH_CAPACITY)
        return eb__fail(err, EB_ERR_INVALID_PARAM, "model_dir: the path %s/%s is too long", dir, name);
    return EB_OK;
}

static eb_status parse_json(const char *data, size_t size, const char *path, int depth, json_object **out,
                            eb_error *err)
{
    *out = NULL;
    if (size > (size_t)INT32_MAX)
        return eb__fail(err, EB_ERR_FORMAT, "%s: too large to parse", path);
    json_object *root = NULL;
    eb_status status = eb__parse_json_value(data, size, path, depth, &root, err);
    if (status != EB_OK)
        return status;
    if (!json_object_is_type(root, json_type_object)) {
        json_object_put(root);
        return eb__fail(err, EB_ERR_FORMAT, "%s: not a JSON object", path);
    }
    *out = root;
    return EB_OK;
}

/* config.json: normalize (missing or null: false) and max_length (missing: 512, null: no truncation). */
static eb_status read_config(static_encoder *enc, const char *dir, eb_error *err)
{
    char path[M2V_PATH_CAPACITY];
    char *data;
    size_t size;
    json_object *root;
    eb_status status = join(path, dir, "config.json", err);
    if (status == EB_OK)
        status = eb__read_small_file(path, M2V_MAX_CONFIG_BYTES, &enc->mem, &data, &size, err);
    if (status != EB_OK)
        return status;
    status = parse_json(data, size, path, 16, &root, err);
    eb__free(&enc->mem, data);
    if (status != EB_OK)
        return status;
    json_object *value;
    enc->normalize = false;
    if (json_object_object_get_ex(root, "normalize", &value) && value != NULL) {
        if (!json_object_is_type(value, json_type_boolean))
            status = eb__fail(err, EB_ERR_FORMAT, "%s: normalize must be true, false or null", path);
        else
            enc->normalize = json_object_get_boolean(value);
    }
    enc->truncate = true;
    enc->max_length = M2V_DEFAULT_MAX_LENGTH;
    if (status == EB_OK && json_object_object_get_ex(root, "max_length", &value)) {
        if (value == NULL) {
            enc->truncate = false;
        } else {
            errno = 0;
            int64_t v = json_object_get_int64(value);
            if (!json_object_is_type(value, json_type_int) || errno != 0 || v < 1)
                status = eb__fail(err, EB_ERR_FORMAT, "%s: max_length must be a whole number >= 1 or null", path);
            else
                enc->max_length = (uint64_t)v > SIZE_MAX / 8 ? SIZE_MAX / 8 : (size_t)v;
        }
    }
    /* A vocabulary-quantized model keeps a token mapping and weights beside the vectors. */
    if (status == EB_OK && json_object_object_get_ex(root, "vocabulary_quantization", &value) && value != NULL)
        status = eb__fail(err, EB_ERR_FORMAT,
                          "%s: a vocabulary-quantized model2vec model (vocabulary_quantization) is not supported",
                          path);
    json_object_put(root);
    return status;
}

static size_t code_points(const char *s, size_t length)
{
    size_t n = 0;
    for (size_t i = 0; i < length; i++)
        n += ((unsigned char)s[i] & 0xC0) != 0x80;
    return n;
}

static int compare_size(const void *a, const void *b)
{
    size_t x = *(const size_t *)a, y = *(const size_t *)b;
    return x < y ? -1 : x > y;
}

/*
 * The vocabulary model2vec sees (tokenizer.get_vocab(): the model's tokens and the added ones), its size,
 * which the embedding matrix must match, and the median token length in characters, which sets how much
 * of a text model2vec keeps before tokenizing: int(numpy.median(lengths)).
 */
static eb_status read_vocabulary(static_encoder *enc, const char *data, size_t size, const char *path,
                                 size_t *n_tokens, size_t *median, const char **unk_token_out, json_object **root_out,
                                 eb_error *err)
{
    json_object *root, *model, *vocab, *added, *unk;
    eb_status status = parse_json(data, size, path, 64, &root, err);
    if (status != EB_OK)
        return status;
    *root_out = root;
    if (!json_object_object_get_ex(root, "model", &model) || !json_object_is_type(model, json_type_object) ||
        !json_object_object_get_ex(model, "vocab", &vocab) || !json_object_is_type(vocab, json_type_object))
        return eb__fail(err, EB_ERR_FORMAT, "%s: model.vocab is missing or not an object", path);
    size_t n_vocab = (size_t)json_object_object_length(vocab), n_added = 0;
    if (json_object_object_get_ex(root, "added_tokens", &added) && json_object_is_type(added, json_type_array))
        n_added = json_object_array_length(added);
    else
        added = NULL;
    size_t *lengths = eb__calloc(&enc->mem, n_vocab + n_added + 1, sizeof *lengths);
    if (lengths == NULL)
        return eb__fail(err, EB_ERR_NOMEM, "out of memory reading the vocabulary of %s", path);
    size_t n = 0;
    json_object_object_foreach(vocab, key, val)
    {
        (void)val;
        lengths[n++] = code_points(key, strlen(key));
    }
    for (size_t i = 0; i < n_added; i++) {
        json_object *token = json_object_array_get_idx(added, i), *content;
        if (!json_object_object_get_ex(token, "content", &content) || !json_object_is_type(content, json_type_string))
            continue; /* the tokenizer loader has already refused a malformed added token */
        const char *text = json_object_get_string(content);
        if (!json_object_object_get_ex(vocab, text, NULL))
            lengths[n++] = code_points(text, (size_t)json_object_get_string_len(content));
    }
    *n_tokens = n;
    *median = 0;
    if (n > 0) {
        qsort(lengths, n, sizeof *lengths, compare_size);
        *median = n % 2 ? lengths[n / 2] : (lengths[n / 2 - 1] + lengths[n / 2]) / 2;
    }
    eb__free(&enc->mem, lengths);
    *unk_token_out = NULL;
    if (json_object_object_get_ex(model, "unk_token", &unk) && json_object_is_type(unk, json_type_string))
        *unk_token_out = json_object_get_string(unk);
    return EB_OK;
}

static eb_status read_tokenizer(static_encoder *enc, const char *dir, size_t *n_tokens, eb_error *err)
{
    char path[M2V_PATH_CAPACITY];
    char *data = NULL;
    size_t size = 0, median = 0;
    json_object *root = NULL;
    const char *unk = NULL;
    eb_status status = join(path, dir, "tokenizer.json", err);
    if (status == EB_OK)
        status = eb__read_small_file(path, M2V_MAX_TOKENIZER_BYTES, &enc->mem, &data, &size, err);
    /* The tokenizer's own checks first: they name an unsupported model type (Unigram, BPE) before anything else. */
    if (status == EB_OK)
        status = eb__wordpiece_from_json(data, size, &enc->mem, &enc->wp, err);
    if (status == EB_OK)
        status = read_vocabulary(enc, data, size, path, n_tokens, &median, &unk, &root, err);
    if (status == EB_OK) {
        enc->unk_id = unk == NULL ? -1 : eb__wordpiece_token_id(enc->wp, unk, strlen(unk));
        enc->max_chars = median > 0 && enc->max_length > SIZE_MAX / median ? SIZE_MAX : enc->max_length * median;
    }
    json_object_put(root);
    eb__free(&enc->mem, data);
    return status;
}

static eb_status read_vectors(static_encoder *enc, const char *dir, size_t n_tokens, eb_error *err)
{
    char path[M2V_PATH_CAPACITY];
    eb_status status = join(path, dir, "model.safetensors", err);
    if (status == EB_OK)
        status = eb__safetensors_open(path, &enc->mem, &enc->st, err);
    if (status != EB_OK)
        return status;
    static const char *const quantized[] = {"mapping", "weights"};
    for (size_t i = 0; i < 2; i++)
        if (eb__safetensors_find(enc->st, quantized[i]) != NULL)
            return eb__fail(err, EB_ERR_FORMAT,
                            "%s: tensor \"%s\" (a vocabulary-quantized or weighted model2vec model) is not supported",
                            path, quantized[i]);
    const eb_st_tensor *t = eb__safetensors_find(enc->st, "embeddings");
    if (t == NULL)
        return eb__fail(err, EB_ERR_FORMAT, "%s: no tensor \"embeddings\"%s", path,
                        eb__safetensors_find(enc->st, "embedding.weight") != NULL
                            ? " (the sentence-transformers StaticEmbedding layout is not supported)"
                            : "");
    /* model2vec averages in the matrix's own dtype; only float32 is reproduced exactly, so only it is taken. */
    if (t->dtype != EB_ST_F32)
        return eb__fail(err, EB_ERR_FORMAT, "%s: embeddings are %s; only F32 model2vec models are supported", path,
                        eb__st_dtype_name(t->dtype));
    if (t->ndim != 2 || t->shape[0] == 0 || t->shape[1] == 0)
        return eb__fail(err, EB_ERR_FORMAT, "%s: embeddings must be a non-empty 2-D matrix (tokens x dim)", path);
    if (t->shape[0] != n_tokens)
        return eb__fail(err, EB_ERR_FORMAT, "%s: embeddings have %zu rows but tokenizer.json has %zu tokens", path,
                        t->shape[0], n_tokens);
    if (t->shape[0] < eb__wordpiece_id_bound(enc->wp))
        return eb__fail(err, EB_ERR_FORMAT, "%s: embeddings have %zu rows but the tokenizer gives ids up to %zu",
                        path, t->shape[0], eb__wordpiece_id_bound(enc->wp) - 1);
    if (t->shape[1] > (size_t)INT32_MAX)
        return eb__fail(err, EB_ERR_FORMAT, "%s: embedding width %zu is too large", path, t->shape[1]);
    enc->rows = t->shape[0];
    enc->dim = t->shape[1];
    return eb__safetensors_f32(enc->st, t, t->shape, 2, &enc->vectors, &enc->owned, err);
}

eb_status eb_static_encoder_create(const char *model_dir, const eb_allocator *allocator, eb_encoder **out,
                                   eb_error *err)
{
    eb__error_clear(err);
    if (out == NULL)
        return eb__fail(err, EB_ERR_NULL_POINTER, "out is NULL");
    *out = NULL;
    if (model_dir == NULL)
        return eb__fail(err, EB_ERR_NULL_POINTER, "model_dir is NULL");
    eb_allocator mem;
    eb_status status = eb__encoder_allocator(allocator, &mem, err);
    if (status != EB_OK)
        return status;
    static_encoder *enc = eb__calloc(&mem, 1, sizeof *enc);
    if (enc == NULL)
        return eb__fail(err, EB_ERR_NOMEM, "out of memory creating the static encoder");
    enc->base.vtable = &static_vtable;
    enc->mem = mem;
    struct stat info;
    size_t n_tokens = 0;
    if (stat(model_dir, &info) != 0 || !S_ISDIR(info.st_mode))
        status = eb__fail(err, EB_ERR_IO, "model_dir %s is not a directory (a model2vec model is a local directory "
                                          "with config.json, tokenizer.json and model.safetensors)", model_dir);
    if (status == EB_OK)
        status = read_config(enc, model_dir, err);
    if (status == EB_OK)
        status = read_tokenizer(enc, model_dir, &n_tokens, err);
    if (status == EB_OK)
        status = read_vectors(enc, model_dir, n_tokens, err);
    if (status != EB_OK) {
        release(enc);
        return status;
    }
    *out = &enc->base;
    return EB_OK;
}

/* ---- encoding ---------------------------------------------------------------- */

/*
 * numpy's pairwise sum of float32 values (what np.linalg.norm's add.reduce does along a contiguous row),
 * reproduced step for step so the normalised rows match model2vec's to the bit.
 */
static float pairwise_sum(const float *a, size_t n)
{
    if (n < 8) {
        float r = 0.0f;
        for (size_t i = 0; i < n; i++)
            r += a[i];
        return r;
    }
    if (n <= 128) {
        float r[8];
        for (size_t j = 0; j < 8; j++)
            r[j] = a[j];
        size_t i;
        for (i = 8; i < n - n % 8; i += 8)
            for (size_t j = 0; j < 8; j++)
                r[j] += a[i + j];
        float res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
        for (; i < n; i++)
            res += a[i];
        return res;
    }
    size_t half = n / 2;
    half -= half % 8;
    return pairwise_sum(a, half) + pairwise_sum(a + half, n - half);
}

typedef struct static_scratch {
    eb_wordpiece_scratch *wp;
    int32_t *ids;
    float *sum; /* then the squares */
} static_scratch;

typedef struct static_job {
    const static_encoder *enc;
    const eb_text *texts;
    eb_mut_matrix out;
    static_scratch *scratch;
} static_job;

/* Bytes of text within the first max_chars characters. */
static size_t cut_characters(const char *text, size_t length, size_t max_chars)
{
    size_t seen = 0;
    for (size_t i = 0; i < length; i++) {
        if (((unsigned char)text[i] & 0xC0) != 0x80) {
            if (seen == max_chars)
                return i;
            seen++;
        }
    }
    return length;
}

/* Token capacity for a text of length bytes: every token covers at least one character. */
static size_t token_capacity(const static_encoder *enc, size_t length)
{
    size_t cap = enc->truncate && enc->max_length < length ? enc->max_length : length;
    return cap + 2; /* the tokenizer's [CLS] and [SEP], dropped again below */
}

static eb_status encode_range(void *ctx, size_t begin, size_t end, size_t worker, eb_error *err)
{
    const static_job *job = ctx;
    const static_encoder *enc = job->enc;
    static_scratch *s = &job->scratch[worker];
    size_t dim = enc->dim;
    for (size_t r = begin; r < end; r++) {
        const char *text = job->texts[r].data;
        size_t length = job->texts[r].length;
        if (enc->truncate)
            length = cut_characters(text, length, enc->max_chars);
        float *row = job->out.data + r * job->out.stride;
        memset(row, 0, dim * sizeof *row);
        size_t n_ids = 0;
        if (length > 0) {
            eb_status status = eb__wordpiece_encode(enc->wp, s->wp, text, length, token_capacity(enc, length), s->ids,
                                                    NULL, &n_ids, err);
            if (status != EB_OK)
                return status;
        }
        /* In float32 and token order, as numpy's mean over the tokens axis adds them. */
        memset(s->sum, 0, dim * sizeof *s->sum);
        size_t count = 0;
        for (size_t i = 1; i + 1 < n_ids; i++) {
            if (s->ids[i] == enc->unk_id)
                continue;
            const float *v = enc->vectors + (size_t)s->ids[i] * dim;
            for (size_t c = 0; c < dim; c++)
                s->sum[c] += v[c];
            count++;
        }
        if (count == 0)
            continue;
        float divisor = (float)count;
        for (size_t c = 0; c < dim; c++)
            row[c] = s->sum[c] / divisor;
        if (enc->normalize) {
            for (size_t c = 0; c < dim; c++)
                s->sum[c] = row[c] * row[c];
            /* model2vec adds 1e-32 to the norm; it only matters for zero rows, which stay zero either way. */
            float norm = sqrtf(pairwise_sum(s->sum, dim)) + 1e-32f;
            for (size_t c = 0; c < dim; c++)
                row[c] = row[c] / norm;
        }
    }
    return EB_OK;
}

static eb_status static_encode(const eb_encoder *encoder, const eb_text *texts, size_t n, eb_mut_matrix out,
                               eb_error *err)
{
    const static_encoder *enc = (const static_encoder *)encoder;
    const eb_allocator *mem = &enc->mem;
    size_t bounds[EB_ENCODER_MAX_THREADS + 1], n_threads;
    eb_status status =
        eb__plan_text_threads(texts, n, EB_ENCODER_THREADS_AUTO, mem, bounds, &n_threads, err);
    if (status != EB_OK)
        return status;
    static_scratch scratch[EB_ENCODER_MAX_THREADS];
    memset(scratch, 0, sizeof scratch);
    for (size_t t = 0; t < n_threads && status == EB_OK; t++) {
        size_t longest = eb__longest_text(texts, bounds[t], bounds[t + 1]);
        if (longest > SIZE_MAX / sizeof(int32_t) - 2) {
            status = eb__fail(err, EB_ERR_TOO_LARGE, "a text of %zu bytes is too large to encode", longest);
            break;
        }
        status = eb__wordpiece_scratch_create(enc->wp, mem, &scratch[t].wp, err);
        if (status != EB_OK)
            break;
        scratch[t].ids = eb__calloc(mem, token_capacity(enc, longest), sizeof *scratch[t].ids);
        scratch[t].sum = eb__calloc(mem, enc->dim, sizeof *scratch[t].sum);
        if (scratch[t].ids == NULL || scratch[t].sum == NULL)
            status = eb__fail(err, EB_ERR_NOMEM, "out of memory for the scratch of the static encoder");
    }
    if (status == EB_OK) {
        static_job job = {enc, texts, out, scratch};
        status = eb__run_ranges(n_threads, bounds, encode_range, &job, err);
    }
    for (size_t t = 0; t < n_threads; t++) {
        eb__wordpiece_scratch_free(scratch[t].wp);
        eb__free(mem, scratch[t].ids);
        eb__free(mem, scratch[t].sum);
    }
    return status;
}

static size_t static_output_dim(const eb_encoder *encoder)
{
    return ((const static_encoder *)encoder)->dim;
}

static void static_destroy(eb_encoder *encoder)
{
    release((static_encoder *)encoder);
}

static const eb_encoder_vtable static_vtable = {
    "static", EB_INPUT_TEXT, static_output_dim, static_encode, NULL, static_destroy,
};

size_t eb_static_encoder_vocab_size(const eb_encoder *encoder)
{
    if (encoder == NULL || encoder->vtable != &static_vtable)
        return 0;
    return ((const static_encoder *)encoder)->rows;
}
