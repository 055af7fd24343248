/*
 * The sentence encoder: a sentence-transformers BERT model directory as an
 * eb_encoder. A batch goes through three steps: every text is tokenized (in
 * parallel over ranges of texts), the texts are ordered by token count, and
 * groups of batch_size neighbours in that order go through the model (in
 * parallel over ranges of groups). The groups depend only on the texts and
 * batch_size, never on the thread count, so the output does not either.
 */
#include <string.h>
#include <sys/stat.h>

#include "bert.h"
#include "encoder_internal.h"
#include "wordpiece.h"

typedef struct sentence_encoder {
    eb_encoder base;
    eb_allocator mem;
    eb_sentence_encoder_params params;
    eb_bert *bert;
    eb_wordpiece *tokenizer;
    size_t dim;
    size_t max_tokens;   /* max_seq_length, [CLS] and [SEP] included */
    bool lowercase;      /* sentence_bert_config.json's do_lower_case: str.lower() before the tokenizer */
} sentence_encoder;

static const eb_encoder_vtable sentence_vtable;

eb_sentence_encoder_params eb_sentence_encoder_default_params(void)
{
    eb_sentence_encoder_params p;
    memset(&p, 0, sizeof p);
    p.batch_size = 32;
    p.n_threads = EB_ENCODER_THREADS_AUTO;
    return p;
}

eb_status eb_sentence_encoder_check_params(const eb_sentence_encoder_params *params, eb_error *err)
{
    eb__error_clear(err);
    if (params == NULL)
        return eb__fail(err, EB_ERR_NULL_POINTER, "params is NULL");
    if (params->batch_size < 1 || params->batch_size > EB_SENTENCE_MAX_BATCH_SIZE)
        return eb__fail(err, EB_ERR_INVALID_PARAM, "batch_size is %zu; it must be between 1 and %d",
                        params->batch_size, EB_SENTENCE_MAX_BATCH_SIZE);
    if (params->n_threads > EB_ENCODER_MAX_THREADS)
        return eb__fail(err, EB_ERR_INVALID_PARAM, "n_threads is %zu; at most %d (0 for automatic)",
                        params->n_threads, EB_ENCODER_MAX_THREADS);
    return EB_OK;
}

static bool is_regular_file(const char *path)
{
    struct stat info;
    return stat(path, &info) == 0 && S_ISREG(info.st_mode);
}

/* The tokenizer next to config.json: tokenizer.json when there is one, else vocab.txt with BertTokenizerFast's defaults. */
static eb_status load_tokenizer(const char *transformer_dir, const eb_allocator *mem, eb_wordpiece **out,
                                eb_error *err)
{
    size_t length = strlen(transformer_dir);
    char *path = eb__calloc(mem, length + sizeof "/tokenizer.json", 1);
    if (path == NULL)
        return eb__fail(err, EB_ERR_NOMEM, "out of memory loading the tokenizer of %s", transformer_dir);
    memcpy(path, transformer_dir, length);
    memcpy(path + length, "/tokenizer.json", sizeof "/tokenizer.json");
    eb_status status;
    if (is_regular_file(path)) {
        status = eb__wordpiece_load(path, NULL, mem, out, err);
    } else {
        memcpy(path + length, "/vocab.txt", sizeof "/vocab.txt");
        if (is_regular_file(path))
            status = eb__wordpiece_load(path, NULL, mem, out, err);
        else
            status = eb__fail(err, EB_ERR_IO, "%s has no tokenizer: neither tokenizer.json nor vocab.txt is there",
                              transformer_dir);
    }
    eb__free(mem, path);
    return status;
}

eb_status eb_sentence_encoder_create(const char *model_dir, const eb_sentence_encoder_params *params,
                                     const eb_allocator *mem, eb_encoder **out, eb_error *err)
{
    eb__error_clear(err);
    if (out == NULL)
        return eb__fail(err, EB_ERR_NULL_POINTER, "out is NULL");
    *out = NULL;
    if (model_dir == NULL)
        return eb__fail(err, EB_ERR_NULL_POINTER, "model_dir is NULL");
    eb_sentence_encoder_params chosen = params != NULL ? *params : eb_sentence_encoder_default_params();
    eb_status status = eb_sentence_encoder_check_params(&chosen, err);
    if (status != EB_OK)
        return status;
    eb_allocator kept;
    status = eb__encoder_allocator(mem, &kept, err);
    if (status != EB_OK)
        return status;
    struct stat info;
    if (stat(model_dir, &info) != 0 || !S_ISDIR(info.st_mode))
        return eb__fail(err, EB_ERR_IO, "%s is not a directory (a sentence-transformers model directory is needed)",
                        model_dir);

    sentence_encoder *enc = eb__calloc(&kept, 1, sizeof *enc);
    if (enc == NULL)
        return eb__fail(err, EB_ERR_NOMEM, "out of memory for the sentence encoder");
    enc->base.vtable = &sentence_vtable;
    enc->mem = kept;
    enc->params = chosen;
    status = eb__bert_load(model_dir, &enc->mem, &enc->bert, err);
    if (status == EB_OK) {
        const eb_sentence_config *cfg = eb__bert_config(enc->bert);
        enc->dim = eb__bert_output_dim(enc->bert);
        enc->max_tokens = cfg->max_seq_length;
        enc->lowercase = cfg->do_lower_case;
        status = load_tokenizer(cfg->transformer_dir, &enc->mem, &enc->tokenizer, err);
        /* An id past the embedding table would be refused at encode time; say so now, naming both files. */
        if (status == EB_OK && eb__wordpiece_id_bound(enc->tokenizer) > cfg->bert.vocab_size)
            status = eb__fail(err, EB_ERR_FORMAT,
                              "%s: the tokenizer's ids go up to %zu but config.json's vocab_size is %zu",
                              cfg->transformer_dir, eb__wordpiece_id_bound(enc->tokenizer) - 1,
                              cfg->bert.vocab_size);
        if (status == EB_OK && enc->max_tokens < 2)
            status = eb__fail(err, EB_ERR_FORMAT,
                              "%s/sentence_bert_config.json: max_seq_length %zu leaves no room for [CLS] and [SEP]",
                              cfg->transformer_dir, enc->max_tokens);
    }
    if (status != EB_OK) {
        eb_encoder_free(&enc->base);
        return status;
    }
    *out = &enc->base;
    return EB_OK;
}

eb_status eb_sentence_encoder_get_params(const eb_encoder *encoder, eb_sentence_encoder_params *params,
                                         eb_error *err)
{
    eb__error_clear(err);
    if (encoder == NULL || params == NULL)
        return eb__fail(err, EB_ERR_NULL_POINTER, "%s is NULL", encoder == NULL ? "encoder" : "params");
    if (encoder->vtable != &sentence_vtable)
        return eb__fail(err, EB_ERR_INVALID_PARAM, "the encoder is a %s encoder, not a sentence one",
                        eb_encoder_name(encoder));
    *params = ((const sentence_encoder *)encoder)->params;
    return EB_OK;
}

size_t eb_sentence_encoder_max_tokens(const eb_encoder *encoder)
{
    if (encoder == NULL || encoder->vtable != &sentence_vtable)
        return 0;
    return ((const sentence_encoder *)encoder)->max_tokens;
}

/* ---- encoding ---------------------------------------------------------------- */

typedef struct worker_scratch {
    eb_wordpiece_scratch *tokens;
    int32_t *ids;        /* max_tokens: one text's ids; in the model step batch_size x max_tokens, packed */
    char *lowered;       /* 2 x the longest text of the range, when lowercasing */
    size_t *lengths;     /* batch_size */
    float *pooled;       /* batch_size x dim */
} worker_scratch;

typedef struct sentence_job {
    const sentence_encoder *enc;
    const eb_text *texts;
    eb_mut_matrix out;
    worker_scratch *scratch;
    size_t *offsets;     /* text i's ids start at ids + offsets[i]; room for min(max_tokens, bytes + 2) */
    size_t *lengths;     /* text i's token count */
    int32_t *ids;
    size_t *order;       /* texts by token count, then by position */
    size_t n;
} sentence_job;

static eb_status tokenize_range(void *ctx, size_t begin, size_t end, size_t worker, eb_error *err)
{
    sentence_job *job = ctx;
    const sentence_encoder *enc = job->enc;
    worker_scratch *s = &job->scratch[worker];
    for (size_t i = begin; i < end; i++) {
        const char *text = job->texts[i].data;
        size_t length = job->texts[i].length;
        if (enc->lowercase) {
            length = eb__utf8_lower(text, length, s->lowered);
            text = s->lowered;
        }
        size_t n_ids;
        eb_error detail;
        eb_status status = eb__wordpiece_encode(enc->tokenizer, s->tokens, text, length, enc->max_tokens, s->ids,
                                                NULL, &n_ids, &detail);
        if (status != EB_OK)
            return eb__fail(err, status, "text %zu: %s", i, detail.message);
        /* Every token but [CLS] and [SEP] covers at least one character, so it fits the room offsets gave. */
        size_t room = job->offsets[i + 1] - job->offsets[i];
        if (n_ids > room)
            return eb__fail(err, EB_ERR_FORMAT, "text %zu: %zu tokens from %zu bytes", i, n_ids,
                            job->texts[i].length);
        memcpy(job->ids + job->offsets[i], s->ids, n_ids * sizeof *s->ids);
        job->lengths[i] = n_ids;
    }
    return EB_OK;
}

/* Groups [begin, end) of batch_size texts in token-count order. */
static eb_status model_range(void *ctx, size_t begin, size_t end, size_t worker, eb_error *err)
{
    sentence_job *job = ctx;
    const sentence_encoder *enc = job->enc;
    worker_scratch *s = &job->scratch[worker];
    size_t batch = enc->params.batch_size, dim = enc->dim;
    for (size_t g = begin; g < end; g++) {
        size_t first = g * batch, count = job->n - first < batch ? job->n - first : batch, packed = 0;
        for (size_t k = 0; k < count; k++) {
            size_t i = job->order[first + k];
            memcpy(s->ids + packed, job->ids + job->offsets[i], job->lengths[i] * sizeof *s->ids);
            s->lengths[k] = job->lengths[i];
            packed += job->lengths[i];
        }
        eb_status status = eb__bert_encode(enc->bert, s->ids, s->lengths, count, s->pooled, NULL, err);
        if (status != EB_OK)
            return status;
        for (size_t k = 0; k < count; k++)
            memcpy(job->out.data + job->order[first + k] * job->out.stride, s->pooled + k * dim, dim * sizeof(float));
    }
    return EB_OK;
}

/* Stable order by token count (ties keep the caller's order): a bottom-up merge sort, as qsort is not stable. */
static void sort_by_length(size_t *order, size_t *spare, size_t n, const size_t *lengths)
{
    for (size_t width = 1; width < n; width *= 2) {
        for (size_t lo = 0; lo < n; lo += 2 * width) {
            size_t mid = lo + width < n ? lo + width : n, hi = lo + 2 * width < n ? lo + 2 * width : n;
            size_t a = lo, b = mid, k = lo;
            while (a < mid && b < hi)
                spare[k++] = lengths[order[b]] < lengths[order[a]] ? order[b++] : order[a++];
            while (a < mid)
                spare[k++] = order[a++];
            while (b < hi)
                spare[k++] = order[b++];
        }
        memcpy(order, spare, n * sizeof *order);
    }
}

static void release_scratch(worker_scratch *scratch, size_t n, const eb_allocator *mem)
{
    for (size_t t = 0; t < n; t++) {
        eb__wordpiece_scratch_free(scratch[t].tokens);
        eb__free(mem, scratch[t].ids);
        eb__free(mem, scratch[t].lowered);
        eb__free(mem, scratch[t].lengths);
        eb__free(mem, scratch[t].pooled);
    }
}

static eb_status sentence_encode(const eb_encoder *encoder, const eb_text *texts, size_t n, eb_mut_matrix out,
                                 eb_error *err)
{
    const sentence_encoder *enc = (const sentence_encoder *)encoder;
    const eb_allocator *mem = &enc->mem;
    size_t batch = enc->params.batch_size, groups = (n + batch - 1) / batch;

    /* Room per text: a text of b bytes has at most b + 2 tokens, and never more than max_tokens. */
    size_t *offsets = eb__calloc(mem, n + 1, sizeof *offsets);
    size_t *lengths = eb__calloc(mem, n, sizeof *lengths);
    size_t *order = eb__calloc(mem, n, sizeof *order);
    size_t *spare = eb__calloc(mem, n, sizeof *spare);
    int32_t *ids = NULL;
    worker_scratch scratch[EB_ENCODER_MAX_THREADS];
    memset(scratch, 0, sizeof scratch);
    size_t n_workers = 0, bounds[EB_ENCODER_MAX_THREADS + 1], n_threads = 1;
    eb_status status = EB_OK;
    if (offsets == NULL || lengths == NULL || order == NULL || spare == NULL)
        status = eb__fail(err, EB_ERR_NOMEM, "out of memory for a batch of %zu texts", n);
    for (size_t i = 0; status == EB_OK && i < n; i++) {
        size_t room = texts[i].length < enc->max_tokens - 2 ? texts[i].length + 2 : enc->max_tokens;
        offsets[i + 1] = offsets[i] + room;
        order[i] = i;
    }
    size_t id_bytes;
    if (status == EB_OK && (!eb__mul_size(offsets[n], sizeof *ids, &id_bytes) ||
                            (ids = eb__calloc(mem, offsets[n], sizeof *ids)) == NULL))
        status = eb__fail(err, EB_ERR_NOMEM, "out of memory for the token ids of %zu texts", n);

    /* Step 1: tokenize, threads over ranges of about equal bytes. */
    if (status == EB_OK)
        status = eb__plan_text_threads(texts, n, enc->params.n_threads, mem, bounds, &n_threads, err);
    /* The model step may use as many threads as groups allow; scratch for the larger of the two counts. */
    size_t model_threads = 1;
    if (status == EB_OK) {
        size_t total_bytes = 0;
        for (size_t i = 0; i < n; i++)
            total_bytes = total_bytes > SIZE_MAX - texts[i].length - 1 ? SIZE_MAX : total_bytes + texts[i].length + 1;
        model_threads = eb__encoder_threads(enc->params.n_threads, groups, total_bytes);
        n_workers = n_threads > model_threads ? n_threads : model_threads;
    }
    for (size_t t = 0; status == EB_OK && t < n_workers; t++) {
        worker_scratch *s = &scratch[t];
        size_t longest = t < n_threads ? eb__longest_text(texts, bounds[t], bounds[t + 1]) : 0, lowered_room = 0;
        if (enc->lowercase && !eb__mul_size(longest, 2, &lowered_room)) {
            status = eb__fail(err, EB_ERR_TOO_LARGE, "a text of %zu bytes is too large to encode", longest);
            break;
        }
        status = eb__wordpiece_scratch_create(enc->tokenizer, mem, &s->tokens, err);
        if (status != EB_OK)
            break;
        s->ids = eb__calloc(mem, batch * enc->max_tokens, sizeof *s->ids);
        s->lengths = eb__calloc(mem, batch, sizeof *s->lengths);
        s->pooled = eb__calloc(mem, batch * enc->dim, sizeof *s->pooled);
        if (lowered_room > 0)
            s->lowered = eb__calloc(mem, lowered_room, 1);
        if (s->ids == NULL || s->lengths == NULL || s->pooled == NULL || (lowered_room > 0 && s->lowered == NULL))
            status = eb__fail(err, EB_ERR_NOMEM, "out of memory for the scratch of the sentence encoder");
    }
    sentence_job job = {enc, texts, out, scratch, offsets, lengths, ids, order, n};
    if (status == EB_OK)
        status = eb__run_ranges(n_threads, bounds, tokenize_range, &job, err);

    /* Step 2: neighbours in token count share a group, so a group pads (and wastes) little. */
    if (status == EB_OK)
        sort_by_length(order, spare, n, lengths);

    /* Step 3: the model, threads over ranges of groups of about equal tokens. */
    if (status == EB_OK) {
        size_t *work = spare; /* free again: groups <= n */
        for (size_t g = 0; g < groups; g++) {
            work[g] = 0;
            for (size_t k = g * batch; k < n && k < (g + 1) * batch; k++)
                work[g] += lengths[order[k]];
        }
        eb__split_ranges(groups, model_threads, work, bounds);
        status = eb__run_ranges(model_threads, bounds, model_range, &job, err);
    }
    release_scratch(scratch, n_workers, mem);
    eb__free(mem, ids);
    eb__free(mem, spare);
    eb__free(mem, order);
    eb__free(mem, lengths);
    eb__free(mem, offsets);
    return status;
}

static size_t sentence_output_dim(const eb_encoder *encoder)
{
    return ((const sentence_encoder *)encoder)->dim;
}

static void sentence_destroy(eb_encoder *encoder)
{
    sentence_encoder *enc = (sentence_encoder *)encoder;
    eb_allocator mem = enc->mem;
    eb__wordpiece_free(enc->tokenizer);
    eb__bert_free(enc->bert);
    eb__free(&mem, enc);
}

static const eb_encoder_vtable sentence_vtable = {
    "sentence", EB_INPUT_TEXT, sentence_output_dim, sentence_encode, NULL, sentence_destroy,
};
