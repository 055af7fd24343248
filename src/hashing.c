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

/*
 * Per-thread scratch for one range of texts. Besides the n_features arrays it
 * holds at most two buffers of about twice the longest text, so a long text
 * costs a small multiple of its own size: the analyzers walk the UTF-8 bytes
 * with two cursors instead of keeping a code-point array and an offset per
 * character (which took 84 bytes per input byte).
 */
typedef struct hashing_scratch {
    double *counts;     /* n_features, all zero between texts */
    uint8_t *seen;      /* n_features flags: bucket already listed in touched */
    uint32_t *touched;  /* the buckets this text added to, so a row costs its features, not n_features */
    size_t n_touched;
    char *text;         /* the lowercased text, or a copy the char analyzer squeezes in place */
    char *joined;       /* a char_wb padded word, or a word n-gram joined by spaces */
    size_t joined_room;
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

/*
 * Every n-gram of exactly n code points of the count code points in bytes[0 ..
 * length), as a window whose two ends step one code point at a time.
 * n <= count.
 */
static void add_windows(const hashing_encoder *enc, hashing_scratch *s, const char *bytes, size_t length, size_t n)
{
    size_t begin = 0, end = 0;
    for (size_t k = 0; k < n; k++)
        end += eb__utf8_step((unsigned char)bytes[end]);
    for (;;) {
        add_feature(enc, s, bytes + begin, end - begin);
        if (end == length)
            break;
        begin += eb__utf8_step((unsigned char)bytes[begin]);
        end += eb__utf8_step((unsigned char)bytes[end]);
    }
}

/* The n-grams of one space-padded word of count code points in length bytes (scikit-learn's _char_wb_ngrams). */
static void add_padded_word(const hashing_encoder *enc, hashing_scratch *s, const char *padded, size_t length,
                            size_t count)
{
    for (size_t n = enc->params.ngram_min; n <= enc->params.ngram_max; n++) {
        if (count <= n) {
            /* A word no longer than n counts once, whole, and ends the n loop (scikit-learn's rule). */
            add_feature(enc, s, padded, length);
            break;
        }
        if (length == count) {
            /* One byte per character (ASCII words): n-grams are byte ranges. */
            for (size_t k = 0; k + n <= length; k++)
                add_feature(enc, s, padded + k, n);
        } else {
            add_windows(enc, s, padded, length, n);
        }
    }
}

static void analyze_char_wb(const hashing_encoder *enc, hashing_scratch *s, const char *text, size_t length)
{
    size_t pos = 0;
    while (pos < length) {
        size_t next = pos;
        if (eb__is_space(eb__utf8_next(text, &next))) {
            pos = next;
            continue;
        }
        size_t start = pos, count = 0;
        while (pos < length) {
            next = pos;
            if (eb__is_space(eb__utf8_next(text, &next)))
                break;
            pos = next;
            count++;
        }
        /* The word padded with one space each side, as its own byte string. */
        size_t word_bytes = pos - start;
        s->joined[0] = ' ';
        memcpy(s->joined + 1, text + start, word_bytes);
        s->joined[word_bytes + 1] = ' ';
        add_padded_word(enc, s, s->joined, word_bytes + 2, count + 2);
    }
}

/* text is writable: runs of whitespace are squeezed in place, which never moves a byte forward. */
static void analyze_char(const hashing_encoder *enc, hashing_scratch *s, char *text, size_t length)
{
    /* Runs of two or more whitespace characters become one space; a single one stays as it is. */
    size_t read = 0, write = 0, count = 0;
    while (read < length) {
        unsigned char c = (unsigned char)text[read];
        if (c < 0x80 && !eb__is_space(c)) {
            text[write++] = (char)c;
            read++;
            count++;
            continue;
        }
        size_t next = read;
        uint32_t cp = eb__utf8_next(text, &next);
        if (eb__is_space(cp) && next < length) {
            size_t after = next;
            if (eb__is_space(eb__utf8_next(text, &after))) {
                read = after;
                while (read < length) {
                    after = read;
                    if (!eb__is_space(eb__utf8_next(text, &after)))
                        break;
                    read = after;
                }
                text[write++] = ' ';
                count++;
                continue;
            }
        }
        memmove(text + write, text + read, next - read);
        write += next - read;
        read = next;
        count++;
    }
    for (size_t n = enc->params.ngram_min; n <= enc->params.ngram_max && n <= count; n++) {
        if (write == count) {
            /* One byte per character: n-grams are byte ranges. */
            for (size_t k = 0; k + n <= count; k++)
                add_feature(enc, s, text + k, n);
        } else {
            add_windows(enc, s, text, write, n);
        }
    }
}

/* Tokens of the word analyzer: maximal runs of word characters, at least two long (the pattern \b\w\w+\b). */
static bool next_token(const char *text, size_t length, size_t *pos, size_t *start, size_t *end)
{
    while (*pos < length) {
        size_t next = *pos;
        if (!eb__is_word(eb__utf8_next(text, &next))) {
            *pos = next;
            continue;
        }
        size_t begin = *pos, count = 0;
        while (*pos < length) {
            next = *pos;
            if (!eb__is_word(eb__utf8_next(text, &next)))
                break;
            *pos = next;
            count++;
        }
        if (count >= 2) {
            *start = begin;
            *end = *pos;
            return true;
        }
    }
    return false;
}

/* The token ending last before byte `before`, found walking backwards (the token rule is symmetric). */
static bool previous_token(const char *text, size_t before, size_t *start, size_t *end)
{
    size_t pos = before;
    while (pos > 0) {
        size_t prev = pos;
        if (!eb__is_word(eb__utf8_prev(text, &prev))) {
            pos = prev;
            continue;
        }
        size_t last = pos, count = 0;
        while (pos > 0) {
            prev = pos;
            if (!eb__is_word(eb__utf8_prev(text, &prev)))
                break;
            pos = prev;
            count++;
        }
        if (count >= 2) {
            *start = pos;
            *end = last;
            return true;
        }
    }
    return false;
}

/*
 * Word n-grams without a token list: at each token, the n-grams that end with
 * it, found by walking back one token at a time while the joined n-gram grows
 * at the front of s->joined. Counts do not depend on the order n-grams come in.
 */
static void analyze_word(const hashing_encoder *enc, hashing_scratch *s, const char *text, size_t length)
{
    size_t lo = enc->params.ngram_min, hi = enc->params.ngram_max;
    /* The last few tokens, so short n-grams (the usual ranges) need no walk back; token t is at recent[t % RECENT]. */
    enum { RECENT = 16 };
    size_t recent_start[RECENT], recent_end[RECENT];
    size_t pos = 0, start, end, t = 0;
    for (; next_token(text, length, &pos, &start, &end); t++) {
        recent_start[t % RECENT] = start;
        recent_end[t % RECENT] = end;
        if (lo == 1)
            add_feature(enc, s, text + start, end - start);
        /* Fewer than lo tokens so far: no n-gram in range ends here, and walking back would only cost time. */
        if (hi < 2 || lo > t + 1)
            continue;
        /* The joined n-gram is never longer than the stretch of text it spans, which fits joined_room. */
        size_t first = s->joined_room - (end - start);
        memcpy(s->joined + first, text + start, end - start);
        size_t before = start, prev_start, prev_end;
        for (size_t n = 2; n <= hi; n++) {
            if (n - 1 <= t && n - 1 < RECENT) {
                prev_start = recent_start[(t - (n - 1)) % RECENT];
                prev_end = recent_end[(t - (n - 1)) % RECENT];
            } else if (!previous_token(text, before, &prev_start, &prev_end)) {
                break;
            }
            first -= prev_end - prev_start + 1;
            memcpy(s->joined + first, text + prev_start, prev_end - prev_start);
            s->joined[first + (prev_end - prev_start)] = ' ';
            if (n >= lo)
                add_feature(enc, s, s->joined + first, s->joined_room - first);
            before = prev_start;
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
        eb_text t = job->texts[r];
        const char *text = t.data;
        size_t length = t.length;
        if (enc->params.lowercase) {
            length = eb__utf8_lower(t.data, t.length, s->text);
            text = s->text;
        } else if (enc->params.analyzer == EB_ANALYZER_CHAR) {
            memcpy(s->text, t.data, t.length);
            text = s->text;
        }
        switch (enc->params.analyzer) {
        case EB_ANALYZER_CHAR_WB: analyze_char_wb(enc, s, text, length); break;
        case EB_ANALYZER_CHAR: analyze_char(enc, s, s->text, length); break;
        case EB_ANALYZER_WORD: analyze_word(enc, s, text, length); break;
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
        eb__free(mem, scratch[t].counts);
        eb__free(mem, scratch[t].seen);
        eb__free(mem, scratch[t].touched);
        eb__free(mem, scratch[t].text);
        eb__free(mem, scratch[t].joined);
    }
}

/* Scratch for texts of up to longest bytes; only the buffers this encoder's settings use. */
static eb_status alloc_scratch(const hashing_encoder *enc, hashing_scratch *s, size_t longest, eb_error *err)
{
    const eb_allocator *mem = &enc->mem;
    bool lowercase = enc->params.lowercase != 0, squeeze = enc->params.analyzer == EB_ANALYZER_CHAR;
    /* Lowercasing at most doubles the bytes (eb__utf8_lower); a padded word or a joined n-gram adds 2 at most. */
    size_t text_room = longest, joined_room;
    if ((lowercase && !eb__mul_size(longest, 2, &text_room)) || text_room > SIZE_MAX - 2)
        return eb__fail(err, EB_ERR_TOO_LARGE, "a text of %zu bytes is too large to encode", longest);
    joined_room = text_room + 2;
    s->counts = eb__calloc(mem, enc->params.n_features, sizeof *s->counts);
    s->seen = eb__calloc(mem, enc->params.n_features, sizeof *s->seen);
    s->touched = eb__calloc(mem, enc->params.n_features, sizeof *s->touched);
    bool ok = s->counts != NULL && s->seen != NULL && s->touched != NULL;
    if (ok && (lowercase || squeeze)) {
        s->text = eb__calloc(mem, text_room, 1);
        ok = s->text != NULL;
    }
    if (ok && !squeeze) {
        s->joined = eb__calloc(mem, joined_room, 1);
        s->joined_room = joined_room;
        ok = s->joined != NULL;
    }
    if (!ok)
        return eb__fail(err, EB_ERR_NOMEM, "out of memory for the scratch of the hashing encoder (texts of %zu bytes)",
                        longest);
    return EB_OK;
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
    for (size_t t = 0; t < n_threads && status == EB_OK; t++)
        status = alloc_scratch(enc, &scratch[t], eb__longest_text(texts, bounds[t], bounds[t + 1]), err);
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
