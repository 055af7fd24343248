/*
 * The hashing encoder: scikit-learn's HashingVectorizer, dense. Features are
 * the UTF-8 bytes of character or word n-grams, hashed with MurmurHash3
 * (x86, 32-bit, seed 0, signed); bucket |h| mod n_features, sign of h.
 */
#include <math.h>
#include <string.h>

#include "encoder_internal.h"

typedef struct hashing_encoder {
    eb_encoder base;
    eb_hashing_params params;
    eb_allocator mem;
    /* 1 / n_features, so a bucket costs a multiplication instead of a division per n-gram. */
    double inverse_n_features;
} hashing_encoder;

static const eb_encoder_vtable hashing_vtable;

/* ---- MurmurHash3_x86_32 ---------------------------------------------------- */

static uint32_t rotl32(uint32_t x, int r)
{
    return (x << r) | (x >> (32 - r));
}

static inline uint32_t murmur3_32(const uint8_t *p, size_t length, uint32_t seed)
{
    const uint32_t c1 = 0xcc9e2d51u, c2 = 0x1b873593u;
    uint32_t h = seed;
    size_t blocks = length / 4;
    for (size_t i = 0; i < blocks; i++) {
        const uint8_t *b = p + 4 * i;
        uint32_t k = (uint32_t)b[0] | ((uint32_t)b[1] << 8) | ((uint32_t)b[2] << 16) | ((uint32_t)b[3] << 24);
        k *= c1;
        k = rotl32(k, 15);
        k *= c2;
        h ^= k;
        h = rotl32(h, 13);
        h = h * 5 + 0xe6546b64u;
    }
    const uint8_t *tail = p + 4 * blocks;
    uint32_t k = 0;
    switch (length & 3) {
    case 3: k ^= (uint32_t)tail[2] << 16; /* fall through */
    case 2: k ^= (uint32_t)tail[1] << 8;  /* fall through */
    case 1:
        k ^= tail[0];
        k *= c1;
        k = rotl32(k, 15);
        k *= c2;
        h ^= k;
        break;
    default: break;
    }
    h ^= (uint32_t)length;
    h ^= h >> 16;
    h *= 0x85ebca6bu;
    h ^= h >> 13;
    h *= 0xc2b2ae35u;
    h ^= h >> 16;
    return h;
}

uint32_t eb__murmur3_32(const uint8_t *p, size_t length, uint32_t seed)
{
    return murmur3_32(p, length, seed);
}

int32_t eb_murmurhash3_32(const void *data, size_t length, uint32_t seed)
{
    uint32_t h = murmur3_32((const uint8_t *)data, length, seed);
    /* Two's-complement reinterpretation without relying on implementation-defined conversion. */
    return h <= INT32_MAX ? (int32_t)h : (int32_t)(h - 2147483648u) - INT32_MAX - 1;
}

/* ---- params ------------------------------------------------------------------ */

eb_hashing_params eb_hashing_default_params(void)
{
    eb_hashing_params p;
    memset(&p, 0, sizeof p);
    p.analyzer = EB_ANALYZER_CHAR_WB;
    p.ngram_min = 2;
    p.ngram_max = 4;
    p.n_features = 1024;
    p.alternate_sign = 1;
    p.norm = EB_NORM_L2;
    p.lowercase = 1;
    p.n_threads = EB_ENCODER_THREADS_AUTO;
    return p;
}

eb_status eb_hashing_check_params(const eb_hashing_params *params, eb_error *err)
{
    eb__error_clear(err);
    if (params == NULL)
        return eb__fail(err, EB_ERR_NULL_POINTER, "params is NULL");
    if (params->analyzer != EB_ANALYZER_CHAR_WB && params->analyzer != EB_ANALYZER_CHAR &&
        params->analyzer != EB_ANALYZER_WORD)
        return eb__fail(err, EB_ERR_INVALID_PARAM, "analyzer is %d; it must be EB_ANALYZER_CHAR_WB, _CHAR or _WORD",
                        (int)params->analyzer);
    if (params->ngram_min < 1)
        return eb__fail(err, EB_ERR_INVALID_PARAM, "ngram_min is 0; it must be >= 1");
    if (params->ngram_max < params->ngram_min)
        return eb__fail(err, EB_ERR_INVALID_PARAM, "ngram_max (%zu) is less than ngram_min (%zu)", params->ngram_max,
                        params->ngram_min);
    if (params->n_features < 1 || params->n_features > (size_t)INT32_MAX)
        return eb__fail(err, EB_ERR_INVALID_PARAM, "n_features is %zu; it must be between 1 and 2147483647",
                        params->n_features);
    if (params->norm != EB_NORM_L2 && params->norm != EB_NORM_L1 && params->norm != EB_NORM_NONE)
        return eb__fail(err, EB_ERR_INVALID_PARAM, "norm is %d; it must be EB_NORM_L2, _L1 or _NONE",
                        (int)params->norm);
    if (params->n_threads > EB_ENCODER_MAX_THREADS)
        return eb__fail(err, EB_ERR_INVALID_PARAM, "n_threads is %zu; at most %d (0 for automatic)",
                        params->n_threads, EB_ENCODER_MAX_THREADS);
    return EB_OK;
}

eb_status eb_hashing_encoder_create(const eb_hashing_params *params, const eb_allocator *mem, eb_encoder **out,
                                    eb_error *err)
{
    if (out == NULL)
        return eb__fail(err, EB_ERR_NULL_POINTER, "out is NULL");
    *out = NULL;
    eb_status status = eb_hashing_check_params(params, err);
    if (status != EB_OK)
        return status;
    eb_allocator kept;
    status = eb__encoder_allocator(mem, &kept, err);
    if (status != EB_OK)
        return status;
    hashing_encoder *enc = eb__calloc(&kept, 1, sizeof *enc);
    if (enc == NULL)
        return eb__fail(err, EB_ERR_NOMEM, "out of memory for the hashing encoder");
    enc->base.vtable = &hashing_vtable;
    enc->params = *params;
    enc->mem = kept;
    enc->inverse_n_features = 1.0 / (double)params->n_features;
    *out = &enc->base;
    return EB_OK;
}

eb_status eb_hashing_encoder_get_params(const eb_encoder *encoder, eb_hashing_params *params, eb_error *err)
{
    eb__error_clear(err);
    if (encoder == NULL || params == NULL)
        return eb__fail(err, EB_ERR_NULL_POINTER, "%s is NULL", encoder == NULL ? "encoder" : "params");
    if (encoder->vtable != &hashing_vtable)
        return eb__fail(err, EB_ERR_INVALID_PARAM, "the encoder is a %s encoder, not a hashing one",
                        eb_encoder_name(encoder));
    *params = ((const hashing_encoder *)encoder)->params;
    return EB_OK;
}

/* ---- encoding ---------------------------------------------------------------- */

/* Per-thread scratch for one range of texts. */
typedef struct hashing_scratch {
    eb_text_scratch text;
    double *counts;     /* n_features, all zero between texts */
    uint8_t *seen;      /* n_features flags: bucket already listed in touched */
    uint32_t *touched;  /* the buckets this text added to, so a row costs its features, not n_features */
    size_t n_touched;
    char *joined;       /* a char_wb padded word, or a word n-gram joined by spaces */
    size_t *joined_offsets;
    size_t *tokens;     /* word analyzer: start, end code point index of each token */
} hashing_scratch;

typedef struct hashing_job {
    const hashing_encoder *enc;
    const eb_text *texts;
    eb_mut_matrix out;
    hashing_scratch *scratch;
} hashing_job;

static inline void add_feature(const hashing_encoder *enc, hashing_scratch *s, const char *bytes, size_t length)
{
    uint32_t h = murmur3_32((const uint8_t *)bytes, length, 0);
    /* |h| of the signed value: for h >= 2^31 the signed value is h - 2^32. */
    uint32_t magnitude = h < 0x80000000u ? h : (uint32_t)(0u - h);
    /*
     * magnitude mod n_features: magnitude < 2^32 and the quotient estimate from
     * a double is off by at most one, which the two corrections fix exactly.
     */
    uint32_t d = (uint32_t)enc->params.n_features;
    int64_t r = (int64_t)magnitude - (int64_t)(uint32_t)((double)magnitude * enc->inverse_n_features) * d;
    if (r < 0)
        r += d;
    else if (r >= (int64_t)d)
        r -= d;
    size_t index = (size_t)r;
    if (!s->seen[index]) {
        s->seen[index] = 1;
        s->touched[s->n_touched++] = (uint32_t)index;
    }
    if (enc->params.alternate_sign && h >= 0x80000000u)
        s->counts[index] -= 1.0;
    else
        s->counts[index] += 1.0;
}

/* All n-grams of lengths [lo, hi] of the code points [begin, end), given as byte offsets into bytes. */
static void add_substrings(const hashing_encoder *enc, hashing_scratch *s, const char *bytes, const size_t *offsets,
                           size_t count, size_t lo, size_t hi)
{
    for (size_t n = lo; n <= hi && n <= count; n++) {
        for (size_t i = 0; i + n <= count; i++)
            add_feature(enc, s, bytes + offsets[i], offsets[i + n] - offsets[i]);
    }
}

static void analyze_char_wb(const hashing_encoder *enc, hashing_scratch *s, eb_decoded_text d)
{
    size_t i = 0;
    while (i < d.count) {
        while (i < d.count && eb__is_space(d.cps[i]))
            i++;
        if (i == d.count)
            break;
        size_t start = i;
        while (i < d.count && !eb__is_space(d.cps[i]))
            i++;
        /* The word padded with one space each side, as its own byte string. */
        size_t word_bytes = d.offsets[i] - d.offsets[start];
        size_t padded = i - start + 2;
        s->joined[0] = ' ';
        memcpy(s->joined + 1, d.bytes + d.offsets[start], word_bytes);
        s->joined[word_bytes + 1] = ' ';
        if (word_bytes + 2 == padded) {
            /* One byte per character (ASCII words): n-grams are byte ranges, no offset table needed. */
            for (size_t n = enc->params.ngram_min; n <= enc->params.ngram_max; n++) {
                if (padded <= n) {
                    add_feature(enc, s, s->joined, padded);
                    break;
                }
                for (size_t k = 0; k + n <= padded; k++)
                    add_feature(enc, s, s->joined + k, n);
            }
            continue;
        }
        s->joined_offsets[0] = 0;
        for (size_t k = start; k <= i; k++)
            s->joined_offsets[k - start + 1] = d.offsets[k] - d.offsets[start] + 1;
        s->joined_offsets[padded] = word_bytes + 2;
        for (size_t n = enc->params.ngram_min; n <= enc->params.ngram_max; n++) {
            if (padded <= n) {
                /* A word no longer than n counts once, whole, and ends the n loop (scikit-learn's rule). */
                add_feature(enc, s, s->joined, word_bytes + 2);
                break;
            }
            for (size_t k = 0; k + n <= padded; k++)
                add_feature(enc, s, s->joined + s->joined_offsets[k],
                            s->joined_offsets[k + n] - s->joined_offsets[k]);
        }
    }
}

static void analyze_char(const hashing_encoder *enc, hashing_scratch *s, eb_decoded_text d)
{
    /* Runs of two or more whitespace characters become one space; a single one stays as it is. */
    size_t count = 0, at = 0, i = 0;
    while (i < d.count) {
        if (eb__is_space(d.cps[i]) && i + 1 < d.count && eb__is_space(d.cps[i + 1])) {
            while (i < d.count && eb__is_space(d.cps[i]))
                i++;
            s->joined_offsets[count++] = at;
            s->joined[at++] = ' ';
            continue;
        }
        size_t len = d.offsets[i + 1] - d.offsets[i];
        s->joined_offsets[count++] = at;
        memcpy(s->joined + at, d.bytes + d.offsets[i], len);
        at += len;
        i++;
    }
    s->joined_offsets[count] = at;
    if (at == count) {
        /* One byte per character: n-grams are byte ranges. */
        for (size_t n = enc->params.ngram_min; n <= enc->params.ngram_max && n <= count; n++) {
            for (size_t k = 0; k + n <= count; k++)
                add_feature(enc, s, s->joined + k, n);
        }
        return;
    }
    add_substrings(enc, s, s->joined, s->joined_offsets, count, enc->params.ngram_min,
                   enc->params.ngram_max);
}

static void analyze_word(const hashing_encoder *enc, hashing_scratch *s, eb_decoded_text d)
{
    /* Tokens: maximal runs of word characters, at least two long (the pattern \b\w\w+\b). */
    size_t n_tokens = 0, i = 0;
    while (i < d.count) {
        while (i < d.count && !eb__is_word(d.cps[i]))
            i++;
        size_t start = i;
        while (i < d.count && eb__is_word(d.cps[i]))
            i++;
        if (i - start >= 2) {
            s->tokens[2 * n_tokens] = start;
            s->tokens[2 * n_tokens + 1] = i;
            n_tokens++;
        }
    }
    for (size_t n = enc->params.ngram_min; n <= enc->params.ngram_max && n <= n_tokens; n++) {
        for (size_t t = 0; t + n <= n_tokens; t++) {
            if (n == 1) {
                size_t b = d.offsets[s->tokens[2 * t]], e = d.offsets[s->tokens[2 * t + 1]];
                add_feature(enc, s, d.bytes + b, e - b);
                continue;
            }
            size_t at = 0;
            for (size_t k = t; k < t + n; k++) {
                size_t b = d.offsets[s->tokens[2 * k]], e = d.offsets[s->tokens[2 * k + 1]];
                if (k > t)
                    s->joined[at++] = ' ';
                memcpy(s->joined + at, d.bytes + b, e - b);
                at += e - b;
            }
            add_feature(enc, s, s->joined, at);
        }
    }
}

static eb_status encode_range(void *ctx, size_t begin, size_t end, size_t worker, eb_error *err)
{
    (void)err;
    const hashing_job *job = ctx;
    const hashing_encoder *enc = job->enc;
    hashing_scratch *s = &job->scratch[worker];
    size_t dim = enc->params.n_features;
    for (size_t r = begin; r < end; r++) {
        s->n_touched = 0;
        eb_decoded_text d = eb__decode_text(&s->text, job->texts[r], enc->params.lowercase != 0);
        switch (enc->params.analyzer) {
        case EB_ANALYZER_CHAR_WB: analyze_char_wb(enc, s, d); break;
        case EB_ANALYZER_CHAR: analyze_char(enc, s, d); break;
        case EB_ANALYZER_WORD: analyze_word(enc, s, d); break;
        }
        /*
         * Norms in double, then one rounding to float: the same values scikit-learn's
         * float64 result rounds to. The counts are whole numbers, so their squares and
         * absolute values sum exactly in any order.
         */
        double norm = 0;
        if (enc->params.norm == EB_NORM_L2) {
            for (size_t k = 0; k < s->n_touched; k++)
                norm += s->counts[s->touched[k]] * s->counts[s->touched[k]];
            norm = sqrt(norm);
        } else if (enc->params.norm == EB_NORM_L1) {
            for (size_t k = 0; k < s->n_touched; k++)
                norm += fabs(s->counts[s->touched[k]]);
        }
        float *row = job->out.data + r * job->out.stride;
        memset(row, 0, dim * sizeof *row);
        for (size_t k = 0; k < s->n_touched; k++) {
            uint32_t index = s->touched[k];
            row[index] = (float)(norm > 0 ? s->counts[index] / norm : s->counts[index]);
            s->counts[index] = 0;
            s->seen[index] = 0;
        }
    }
    return EB_OK;
}

static void release_scratch(hashing_scratch *scratch, size_t n, const eb_allocator *mem)
{
    for (size_t t = 0; t < n; t++) {
        eb__text_scratch_release(&scratch[t].text, mem);
        eb__free(mem, scratch[t].counts);
        eb__free(mem, scratch[t].seen);
        eb__free(mem, scratch[t].touched);
        eb__free(mem, scratch[t].joined);
        eb__free(mem, scratch[t].joined_offsets);
        eb__free(mem, scratch[t].tokens);
    }
}

static eb_status hashing_encode(const eb_encoder *encoder, const eb_text *texts, size_t n, eb_mut_matrix out,
                                eb_error *err)
{
    const hashing_encoder *enc = (const hashing_encoder *)encoder;
    const eb_allocator *mem = &enc->mem;
    size_t bounds[EB_ENCODER_MAX_THREADS + 1], n_threads;
    eb_status planned = eb__plan_text_threads(texts, n, enc->params.n_threads, mem, bounds, &n_threads, err);
    if (planned != EB_OK)
        return planned;
    hashing_scratch scratch[EB_ENCODER_MAX_THREADS];
    memset(scratch, 0, sizeof scratch);

    eb_status status = EB_OK;
    for (size_t t = 0; t < n_threads && status == EB_OK; t++) {
        size_t longest = eb__longest_text(texts, bounds[t], bounds[t + 1]);
        hashing_scratch *s = &scratch[t];
        status = eb__text_scratch_alloc(&s->text, longest, mem, err);
        if (status != EB_OK)
            break;
        /* A padded word, a squeezed text or a joined word n-gram: at most twice the lowered bytes plus padding. */
        size_t room = 2 * 8 * (longest + 1) + 2;
        s->counts = eb__calloc(mem, enc->params.n_features, sizeof *s->counts);
        s->seen = eb__calloc(mem, enc->params.n_features, sizeof *s->seen);
        s->touched = eb__calloc(mem, enc->params.n_features, sizeof *s->touched);
        s->joined = eb__calloc(mem, room, 1);
        s->joined_offsets = eb__calloc(mem, 2 * (longest + 1) + 3, sizeof *s->joined_offsets);
        s->tokens = eb__calloc(mem, 2 * (longest + 1), sizeof *s->tokens);
        if (s->counts == NULL || s->seen == NULL || s->touched == NULL || s->joined == NULL ||
            s->joined_offsets == NULL || s->tokens == NULL)
            status = eb__fail(err, EB_ERR_NOMEM, "out of memory for the scratch of the hashing encoder");
    }
    if (status == EB_OK) {
        hashing_job job = {enc, texts, out, scratch};
        status = eb__run_ranges(n_threads, bounds, encode_range, &job, err);
    }
    release_scratch(scratch, n_threads, mem);
    return status;
}

static size_t hashing_output_dim(const eb_encoder *encoder)
{
    return ((const hashing_encoder *)encoder)->params.n_features;
}

static void hashing_destroy(eb_encoder *encoder)
{
    hashing_encoder *enc = (hashing_encoder *)encoder;
    eb_allocator mem = enc->mem;
    eb__free(&mem, enc);
}

static const eb_encoder_vtable hashing_vtable = {
    "hashing", EB_INPUT_TEXT, hashing_output_dim, hashing_encode, NULL, hashing_destroy,
};
