/*
 * The word-vector encoder: static embeddings from word2vec/fastText text,
 * GloVe text or word2vec binary files, averaged over a text's known tokens.
 * The vocabulary is one float32 matrix, one byte pool of words and an
 * open-addressing hash table of row numbers.
 */
#define _POSIX_C_SOURCE 200809L

#include <locale.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "encoder_internal.h"

typedef struct word_vectors_encoder {
    eb_encoder base;
    eb_word_vector_params params;
    eb_allocator mem;
    size_t vocab_size;
    size_t dim;
    float *vectors;       /* vocab_size x dim */
    char *words;          /* every word's bytes, back to back */
    size_t *word_start;   /* vocab_size + 1 entries into words */
    uint32_t *slots;      /* row + 1, 0 for empty; slot_mask + 1 entries */
    size_t slot_mask;
} word_vectors_encoder;

static const eb_encoder_vtable word_vectors_vtable;

eb_word_vector_params eb_word_vectors_default_params(void)
{
    eb_word_vector_params p;
    memset(&p, 0, sizeof p);
    p.format = EB_WORD_VECTORS_AUTO;
    p.normalize = 1;
    p.n_threads = EB_ENCODER_THREADS_AUTO;
    return p;
}

/* ---- vocabulary table ---------------------------------------------------------- */

static size_t slot_of(const word_vectors_encoder *enc, const char *word, size_t length)
{
    return eb__murmur3_32((const uint8_t *)word, length, 0x9747b28cu) & enc->slot_mask;
}

/* Row of word, or SIZE_MAX. */
static size_t find_word(const word_vectors_encoder *enc, const char *word, size_t length)
{
    size_t slot = slot_of(enc, word, length);
    for (;;) {
        uint32_t entry = enc->slots[slot];
        if (entry == 0)
            return SIZE_MAX;
        size_t row = entry - 1;
        size_t start = enc->word_start[row], len = enc->word_start[row + 1] - start;
        if (len == length && memcmp(enc->words + start, word, length) == 0)
            return row;
        slot = (slot + 1) & enc->slot_mask;
    }
}

/* Insert row (whose word is already in the pool); returns the earlier row of the same word, or SIZE_MAX. */
static size_t insert_word(word_vectors_encoder *enc, size_t row)
{
    const char *word = enc->words + enc->word_start[row];
    size_t length = enc->word_start[row + 1] - enc->word_start[row];
    size_t slot = slot_of(enc, word, length);
    for (;;) {
        uint32_t entry = enc->slots[slot];
        if (entry == 0) {
            enc->slots[slot] = (uint32_t)(row + 1);
            return SIZE_MAX;
        }
        size_t other = entry - 1;
        size_t start = enc->word_start[other], len = enc->word_start[other + 1] - start;
        if (len == length && memcmp(enc->words + start, word, length) == 0)
            return other;
        slot = (slot + 1) & enc->slot_mask;
    }
}

/* ---- numbers ------------------------------------------------------------------- */

/*
 * A decimal token to float32 as numpy.float32(float(token)) does: rounded
 * once to double, then to float. Short decimals take Clinger's exact fast
 * path; anything else goes to strtod under the "C" locale, so the caller's
 * locale never changes the decimal point.
 */
typedef struct number_parser {
    locale_t c_locale;
    locale_t previous;
    bool switched;
} number_parser;

static const double powers_of_ten[] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,  1e8,  1e9,  1e10, 1e11,
                                       1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

/* 2^128 - 2^103: FLT_MAX plus half its last step, from where round-to-nearest gives infinity. */
#define FLOAT32_OVERFLOW 0x1.ffffffp+127

typedef enum number_result { NUMBER_OK, NUMBER_BAD, NUMBER_NONFINITE, NUMBER_RANGE, NUMBER_NOLOCALE } number_result;

static number_result parse_slow(number_parser *np, const char *s, size_t length, double *value)
{
    char buffer[128];
    if (length >= sizeof buffer)
        return NUMBER_BAD;
    memcpy(buffer, s, length);
    buffer[length] = '\0';
    if (!np->switched) {
        np->c_locale = newlocale(LC_NUMERIC_MASK, "C", (locale_t)0);
        if (np->c_locale == (locale_t)0)
            return NUMBER_NOLOCALE;
        np->previous = uselocale(np->c_locale);
        np->switched = true;
    }
    char *end;
    *value = strtod(buffer, &end);
    if (end != buffer + length)
        return NUMBER_BAD;
    return NUMBER_OK;
}

static void number_parser_finish(number_parser *np)
{
    if (np->switched) {
        uselocale(np->previous);
        freelocale(np->c_locale);
        np->switched = false;
    }
}

static number_result parse_float(number_parser *np, const char *s, size_t length, float *out)
{
    size_t i = 0;
    bool negative = false;
    if (i < length && (s[i] == '+' || s[i] == '-')) {
        negative = s[i] == '-';
        i++;
    }
    uint64_t mantissa = 0;
    int digits = 0, frac_digits = 0, dropped = 0;
    bool any_digit = false;
    while (i < length && s[i] >= '0' && s[i] <= '9') {
        any_digit = true;
        if (digits < 19) {
            mantissa = mantissa * 10 + (uint64_t)(s[i] - '0');
            if (mantissa != 0)
                digits++;
        } else {
            dropped++;
        }
        i++;
    }
    if (i < length && s[i] == '.') {
        i++;
        while (i < length && s[i] >= '0' && s[i] <= '9') {
            any_digit = true;
            if (digits < 19) {
                mantissa = mantissa * 10 + (uint64_t)(s[i] - '0');
                if (mantissa != 0)
                    digits++;
                frac_digits++;
            } else {
                dropped++;
            }
            i++;
        }
    }
    if (!any_digit) {
        /* Not a decimal: let strtod decide (it accepts inf and nan, which are then refused as non-finite). */
        double v;
        number_result r = parse_slow(np, s, length, &v);
        if (r != NUMBER_OK)
            return r;
        return isfinite(v) ? NUMBER_BAD : NUMBER_NONFINITE;
    }
    long exponent = 0;
    if (i < length && (s[i] == 'e' || s[i] == 'E')) {
        i++;
        bool exp_negative = false;
        if (i < length && (s[i] == '+' || s[i] == '-')) {
            exp_negative = s[i] == '-';
            i++;
        }
        if (i >= length || s[i] < '0' || s[i] > '9')
            return NUMBER_BAD;
        while (i < length && s[i] >= '0' && s[i] <= '9') {
            if (exponent < 100000)
                exponent = exponent * 10 + (s[i] - '0');
            i++;
        }
        if (exp_negative)
            exponent = -exponent;
    }
    if (i != length)
        return NUMBER_BAD;
    double value;
    long e10 = exponent - frac_digits;
    if (dropped == 0 && mantissa <= (UINT64_C(1) << 53) && e10 >= -22 && e10 <= 22) {
        value = (double)mantissa;
        value = e10 < 0 ? value / powers_of_ten[-e10] : value * powers_of_ten[e10];
        if (negative)
            value = -value;
    } else {
        number_result r = parse_slow(np, s, length, &value);
        if (r != NUMBER_OK)
            return r;
    }
    if (!isfinite(value))
        return NUMBER_NONFINITE;
    /*
     * The range is what the conversion to float32 gives, not |value| <= FLT_MAX:
     * numpy prints FLT_MAX as 3.4028235e+38, a double just above it that still
     * rounds to it. Only values that round to infinity are out of range.
     */
    if (fabs(value) >= FLOAT32_OVERFLOW)
        return NUMBER_RANGE;
    *out = (float)value;
    return NUMBER_OK;
}

/* ---- parsing ------------------------------------------------------------------- */

static bool is_blank(char c)
{
    return c == ' ' || c == '\t' || c == '\r';
}

/* A line of buffer: [start, end) without the '\n'. */
typedef struct line_span {
    size_t start, end;
} line_span;

static line_span line_at(const char *data, size_t size, size_t start)
{
    const char *nl = memchr(data + start, '\n', size - start);
    line_span l = {start, nl == NULL ? size : (size_t)(nl - data)};
    return l;
}

static bool all_digits(const char *s, size_t length)
{
    if (length == 0)
        return false;
    for (size_t i = 0; i < length; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
    }
    return true;
}

/* A run of digits as a size_t; false when it does not fit. */
static bool parse_size(const char *s, size_t length, size_t *out)
{
    size_t v = 0;
    for (size_t i = 0; i < length; i++) {
        size_t digit = (size_t)(s[i] - '0');
        if (v > (SIZE_MAX - digit) / 10)
            return false;
        v = v * 10 + digit;
    }
    *out = v;
    return true;
}

/* Split a line into blank-separated fields; calls back for each, stops when it returns false. */
typedef struct field_cursor {
    const char *data;
    size_t pos, end;
} field_cursor;

static bool next_field(field_cursor *c, size_t *start, size_t *length)
{
    while (c->pos < c->end && is_blank(c->data[c->pos]))
        c->pos++;
    if (c->pos >= c->end)
        return false;
    *start = c->pos;
    while (c->pos < c->end && !is_blank(c->data[c->pos]))
        c->pos++;
    *length = c->pos - *start;
    return true;
}

typedef enum header_kind {
    /* The line is not two whole numbers: a GloVe file starts with a vector. */
    HEADER_NONE,
    HEADER_OK,
    /* Two whole numbers, one beyond size_t: a header, and an absurd one. */
    HEADER_TOO_LARGE
} header_kind;

/*
 * The "count dim" header: a line of exactly two runs of digits. Their size
 * does not decide whether the line is a header, so an absurd count is
 * reported as such instead of turning the file into GloVe vectors whose
 * first word is a number.
 */
static header_kind parse_header(const char *data, line_span line, size_t *count, size_t *dim)
{
    field_cursor c = {data, line.start, line.end};
    size_t s1, l1, s2, l2, s3, l3;
    if (!next_field(&c, &s1, &l1) || !next_field(&c, &s2, &l2) || next_field(&c, &s3, &l3))
        return HEADER_NONE;
    if (!all_digits(data + s1, l1) || !all_digits(data + s2, l2))
        return HEADER_NONE;
    if (!parse_size(data + s1, l1, count) || !parse_size(data + s2, l2, dim))
        return HEADER_TOO_LARGE;
    return HEADER_OK;
}

/* The error for a header parse_header found but could not accept; where names it ("line 1", "byte 0"). */
static eb_status header_failure(const char *data, line_span line, header_kind kind, const char *where,
                                eb_error *err)
{
    int shown = line.end - line.start > 60 ? 60 : (int)(line.end - line.start);
    if (kind == HEADER_TOO_LARGE)
        return eb__fail(err, EB_ERR_FORMAT, "%s: the header \"%.*s\" announces more words or dimensions than fit "
                        "in memory", where, shown, data + line.start);
    return eb__fail(err, EB_ERR_FORMAT, "%s: expected the header \"<word count> <dimensions>\"", where);
}

static bool line_is_blank(const char *data, line_span line)
{
    for (size_t i = line.start; i < line.end; i++)
        if (!is_blank(data[i]))
            return false;
    return true;
}

/*
 * Binary unless the line after the header reads as text: valid UTF-8 without
 * control characters other than tab and CR. Float32 bytes of real vectors
 * hold NULs, control bytes and stray continuation bytes long before a '\n'.
 */
static bool looks_binary(const char *data, size_t size, size_t body)
{
    if (body >= size)
        return false;
    line_span first = line_at(data, size, body);
    for (size_t i = first.start; i < first.end; i++) {
        unsigned char ch = (unsigned char)data[i];
        if ((ch < 0x20 && ch != '\t' && ch != '\r') || ch == 0x7F)
            return true;
    }
    return !eb_utf8_valid(data + first.start, first.end - first.start, NULL);
}

static void release_encoder(word_vectors_encoder *enc)
{
    eb_allocator mem = enc->mem;
    eb__free(&mem, enc->vectors);
    eb__free(&mem, enc->words);
    eb__free(&mem, enc->word_start);
    eb__free(&mem, enc->slots);
    eb__free(&mem, enc);
}

/* Allocate room for rows words of dim floats and pool_bytes bytes of words. */
static eb_status allocate_vocabulary(word_vectors_encoder *enc, size_t rows, size_t dim, size_t pool_bytes,
                                     eb_error *err)
{
    size_t floats;
    if (rows >= UINT32_MAX || !eb__mul_size(rows, dim, &floats) || floats > SIZE_MAX / sizeof(float))
        return eb__fail(err, EB_ERR_TOO_LARGE, "%zu words of %zu dimensions are too many to load", rows, dim);
    size_t capacity = 16;
    while (capacity < 2 * rows)
        capacity *= 2;
    enc->dim = dim;
    enc->vectors = eb__calloc(&enc->mem, floats, sizeof(float));
    enc->words = eb__calloc(&enc->mem, pool_bytes + 1, 1);
    enc->word_start = eb__calloc(&enc->mem, rows + 1, sizeof(size_t));
    enc->slots = eb__calloc(&enc->mem, capacity, sizeof(uint32_t));
    enc->slot_mask = capacity - 1;
    if (enc->vectors == NULL || enc->words == NULL || enc->word_start == NULL || enc->slots == NULL)
        return eb__fail(err, EB_ERR_NOMEM, "out of memory for %zu word vectors of %zu dimensions", rows, dim);
    return EB_OK;
}

/* Append word as row enc->vocab_size; fails on a duplicate. where_fmt names the position for messages. */
static eb_status add_word(word_vectors_encoder *enc, const char *word, size_t length, size_t *pool_used,
                          const size_t *positions, const char *unit, eb_error *err)
{
    size_t row = enc->vocab_size;
    memcpy(enc->words + *pool_used, word, length);
    enc->word_start[row] = *pool_used;
    *pool_used += length;
    enc->word_start[row + 1] = *pool_used;
    size_t earlier = insert_word(enc, row);
    if (earlier != SIZE_MAX) {
        int shown = length > 40 ? 40 : (int)length;
        return eb__fail(err, EB_ERR_FORMAT, "%s %zu: duplicate word \"%.*s%s\", first seen at %s %zu", unit,
                        positions[row], shown, word, length > 40 ? "..." : "", unit, positions[earlier]);
    }
    enc->vocab_size = row + 1;
    return EB_OK;
}

static eb_status number_failure(number_result r, const char *data, size_t start, size_t length, size_t line_no,
                                size_t column, eb_error *err)
{
    int shown = length > 40 ? 40 : (int)length;
    switch (r) {
    case NUMBER_NONFINITE:
        return eb__fail(err, EB_ERR_FORMAT, "line %zu, value %zu: \"%.*s\" is not finite", line_no, column, shown,
                        data + start);
    case NUMBER_RANGE:
        return eb__fail(err, EB_ERR_FORMAT, "line %zu, value %zu: \"%.*s\" is outside the float32 range", line_no,
                        column, shown, data + start);
    case NUMBER_NOLOCALE:
        return eb__fail(err, EB_ERR_NOMEM, "line %zu: cannot create the C locale to parse \"%.*s\"", line_no, shown,
                        data + start);
    default:
        return eb__fail(err, EB_ERR_FORMAT, "line %zu, value %zu: \"%.*s\" is not a number", line_no, column, shown,
                        data + start);
    }
}

/*
 * The common value shape, [-]digits[.digits] with at most 19 digits, in one
 * pass; anything else (exponents, long mantissas, garbage) goes through
 * parse_float on the whole token. Returns the bytes consumed, 0 on failure
 * with *result set.
 */
static size_t parse_value(number_parser *np, const char *s, size_t available, float *out, number_result *result)
{
    size_t i = 0;
    bool negative = false;
    if (i < available && s[i] == '-') {
        negative = true;
        i++;
    }
    uint64_t mantissa = 0;
    int digits = 0, frac_digits = 0;
    size_t first_digit = i;
    while (i < available && s[i] >= '0' && s[i] <= '9' && digits < 19) {
        mantissa = mantissa * 10 + (uint64_t)(s[i] - '0');
        digits++;
        i++;
    }
    if (i < available && s[i] == '.') {
        i++;
        while (i < available && s[i] >= '0' && s[i] <= '9' && digits < 19) {
            mantissa = mantissa * 10 + (uint64_t)(s[i] - '0');
            digits++;
            frac_digits++;
            i++;
        }
    }
    if (digits > 0 && i > first_digit && (i == available || is_blank(s[i])) && frac_digits <= 22 &&
        mantissa <= (UINT64_C(1) << 53)) {
        double value = (double)mantissa / powers_of_ten[frac_digits];
        *out = (float)(negative ? -value : value);
        *result = NUMBER_OK;
        return i;
    }
    size_t length = 0;
    while (length < available && !is_blank(s[length]))
        length++;
    *result = parse_float(np, s, length, out);
    return *result == NUMBER_OK ? length : 0;
}

/* What one thread parses of a text file: rows [begin, end), their words recorded for the serial insert. */
typedef struct text_rows_job {
    word_vectors_encoder *enc;
    const char *data;
    size_t size;
    const size_t *line_start;   /* byte offset of every vector line */
    size_t first_line_no;       /* line number of row 0 */
    size_t *word_start, *word_length;
} text_rows_job;

static eb_status parse_text_rows(void *ctx, size_t begin, size_t end, size_t worker, eb_error *err)
{
    (void)worker;
    text_rows_job *job = ctx;
    const char *data = job->data;
    size_t dim = job->enc->dim;
    number_parser np = {0};
    eb_status status = EB_OK;
    for (size_t row = begin; row < end && status == EB_OK; row++) {
        size_t line_no = job->first_line_no + row;
        line_span l = line_at(data, job->size, job->line_start[row]);
        field_cursor c = {data, l.start, l.end};
        size_t ws, wl;
        next_field(&c, &ws, &wl);
        job->word_start[row] = ws;
        job->word_length[row] = wl;
        float *vector = job->enc->vectors + row * dim;
        size_t pos = c.pos, column = 0;
        for (;;) {
            while (pos < l.end && is_blank(data[pos]))
                pos++;
            if (pos >= l.end)
                break;
            if (column == dim) {
                field_cursor rest = {data, pos, l.end};
                size_t extra = 0, fs, fl;
                while (next_field(&rest, &fs, &fl))
                    extra++;
                status = eb__fail(err, EB_ERR_FORMAT, "line %zu: %zu values after the word, expected %zu", line_no,
                                  dim + extra, dim);
                break;
            }
            number_result r;
            size_t used = parse_value(&np, data + pos, l.end - pos, &vector[column], &r);
            if (used == 0) {
                size_t length = 0;
                while (pos + length < l.end && !is_blank(data[pos + length]))
                    length++;
                status = number_failure(r, data, pos, length, line_no, column + 1, err);
                break;
            }
            pos += used;
            column++;
        }
        if (status == EB_OK && column != dim)
            status = eb__fail(err, EB_ERR_FORMAT, "line %zu: %zu values after the word, expected %zu", line_no, column,
                              dim);
    }
    number_parser_finish(&np);
    return status;
}

/* The text formats; the data starts at byte start (after a byte-order mark). */
static eb_status parse_text(word_vectors_encoder *enc, const char *data, size_t size, size_t start, bool has_header,
                            eb_error *err)
{
    size_t count = 0, dim = 0, pos = start, first_line_no = 1;
    if (has_header) {
        line_span header = line_at(data, size, start);
        header_kind kind = parse_header(data, header, &count, &dim);
        if (kind != HEADER_OK)
            return header_failure(data, header, kind, "line 1", err);
        if (dim == 0)
            return eb__fail(err, EB_ERR_FORMAT, "line 1: the header announces 0 dimensions");
        pos = header.end < size ? header.end + 1 : size;
        first_line_no = 2;
    } else {
        /* Without a header the first line sets dim, before any line is counted, so the same size guard applies. */
        line_span first = line_at(data, size, start);
        if (!line_is_blank(data, first)) {
            field_cursor c = {data, first.start, first.end};
            size_t fs, fl;
            next_field(&c, &fs, &fl);
            while (next_field(&c, &fs, &fl))
                dim++;
            if (dim == 0)
                return eb__fail(err, EB_ERR_FORMAT, "line 1: a word without any values");
        }
    }
    /* Count the vector lines first, so nothing is allocated from a header's word alone. */
    size_t lines = 0, scan = pos, line_no = first_line_no;
    size_t pool_bytes = 0, first_short_line_no = 0, first_short_length = 0;
    while (scan < size) {
        line_span l = line_at(data, size, scan);
        if (line_is_blank(data, l)) {
            /* Only the very end may be blank (a final newline, or trailing blank lines). */
            size_t rest = l.end;
            while (rest < size && (data[rest] == '\n' || is_blank(data[rest])))
                rest++;
            if (rest < size)
                return eb__fail(err, EB_ERR_FORMAT, "line %zu is empty", line_no);
            break;
        }
        lines++;
        pool_bytes += l.end - l.start;
        if (first_short_line_no == 0 && (l.end - l.start) / 2 < dim) {
            first_short_line_no = line_no;
            first_short_length = l.end - l.start;
        }
        scan = l.end + 1;
        line_no++;
    }
    if (lines == 0)
        return eb__fail(err, EB_ERR_FORMAT, "the file holds no word vectors%s", has_header ? " after its header" : "");
    if (has_header && lines > count)
        return eb__fail(err, EB_ERR_FORMAT, "line %zu: more vector lines than the %zu the header announces",
                        first_line_no + count, count);
    if (has_header && lines < count)
        return eb__fail(err, EB_ERR_FORMAT,
                        "the header announces %zu words, but the file ends after %zu vector lines (line %zu)", count,
                        lines, first_line_no + lines - 1);
    /* Every value takes at least two bytes with its separator. Checking that the lines can hold dim values
     * each before allocating keeps a header's dim alone (17 bytes announcing 10^9 dimensions), or a long
     * first line of a GloVe file followed by many short ones, from allocating gigabytes; the vectors then
     * take at most twice the file's size. */
    if (pool_bytes / 2 / lines < dim) {
        if (has_header)
            return eb__fail(err, EB_ERR_FORMAT,
                            "line %zu has %zu bytes, too few for the %zu values the header announces",
                            first_short_line_no, first_short_length, dim);
        return eb__fail(err, EB_ERR_FORMAT,
                        "line %zu has %zu bytes, too few for the %zu values of line 1 (without a header, every "
                        "line holds as many values as the first)",
                        first_short_line_no, first_short_length, dim);
    }
    eb_status status = allocate_vocabulary(enc, lines, dim, pool_bytes, err);
    if (status != EB_OK)
        return status;
    size_t *line_start = eb__calloc(&enc->mem, lines, sizeof *line_start);
    size_t *word_start = eb__calloc(&enc->mem, lines, sizeof *word_start);
    size_t *word_length = eb__calloc(&enc->mem, lines, sizeof *word_length);
    size_t *line_numbers = eb__calloc(&enc->mem, lines, sizeof *line_numbers);
    if (line_start == NULL || word_start == NULL || word_length == NULL || line_numbers == NULL) {
        status = eb__fail(err, EB_ERR_NOMEM, "out of memory for the index of %zu lines", lines);
        goto done;
    }
    for (size_t row = 0; row < lines; row++) {
        line_start[row] = pos;
        pos = line_at(data, size, pos).end + 1;
        line_numbers[row] = first_line_no + row;
    }
    /* Parsing the values is nearly all the work and rows are independent: split them across threads. */
    size_t n_threads = eb__encoder_threads(enc->params.n_threads, lines, size);
    size_t bounds[EB_ENCODER_MAX_THREADS + 1];
    eb__split_ranges(lines, n_threads, NULL, bounds);
    text_rows_job job = {enc, data, size, line_start, first_line_no, word_start, word_length};
    status = eb__run_ranges(n_threads, bounds, parse_text_rows, &job, err);
    /* Words go in one by one, in file order, so a duplicate is reported against its first line. */
    size_t pool_used = 0;
    for (size_t row = 0; row < lines && status == EB_OK; row++)
        status = add_word(enc, data + word_start[row], word_length[row], &pool_used, line_numbers, "line", err);
done:
    eb__free(&enc->mem, line_start);
    eb__free(&enc->mem, word_start);
    eb__free(&enc->mem, word_length);
    eb__free(&enc->mem, line_numbers);
    return status;
}

static eb_status parse_binary(word_vectors_encoder *enc, const char *data, size_t size, size_t start, eb_error *err)
{
    line_span header = line_at(data, size, start);
    size_t count, dim;
    header_kind kind = parse_header(data, header, &count, &dim);
    if (kind != HEADER_OK) {
        char where[32];
        snprintf(where, sizeof where, "byte %zu", start);
        return header_failure(data, header, kind, where, err);
    }
    if (count == 0 || dim == 0)
        return eb__fail(err, EB_ERR_FORMAT, "byte %zu: the header announces %zu words of %zu dimensions", start,
                        count, dim);
    size_t body = header.end < size ? header.end + 1 : size;
    size_t record_floats, vector_bytes;
    /* The vectors alone must fit in what follows, or the header lies; this also bounds the allocation. */
    if (!eb__mul_size(dim, 4, &record_floats) || !eb__mul_size(count, record_floats, &vector_bytes) ||
        vector_bytes > size - body)
        return eb__fail(err, EB_ERR_FORMAT,
                        "byte %zu: the header announces %zu words of %zu dimensions, more than the %zu bytes after it "
                        "can hold",
                        start, count, dim, size - body);
    eb_status status = allocate_vocabulary(enc, count, dim, size - body, err);
    if (status != EB_OK)
        return status;
    size_t *offsets = eb__calloc(&enc->mem, count, sizeof *offsets);
    if (offsets == NULL)
        return eb__fail(err, EB_ERR_NOMEM, "out of memory for %zu record offsets", count);
    size_t pos = body, pool_used = 0;
    for (size_t row = 0; row < count; row++) {
        while (pos < size && (data[pos] == '\n' || data[pos] == '\r'))
            pos++;
        size_t word_start = pos;
        while (pos < size && data[pos] != ' ')
            pos++;
        if (pos >= size) {
            status = eb__fail(err, EB_ERR_FORMAT, "byte %zu: record %zu of %zu is truncated inside its word", word_start,
                              row + 1, count);
            goto done;
        }
        if (pos == word_start) {
            status = eb__fail(err, EB_ERR_FORMAT, "byte %zu: record %zu has an empty word", word_start, row + 1);
            goto done;
        }
        size_t word_length = pos - word_start;
        pos++;
        if (size - pos < record_floats) {
            status = eb__fail(err, EB_ERR_FORMAT,
                              "byte %zu: record %zu of %zu is truncated: %zu bytes of its %zu-byte vector remain", pos,
                              row + 1, count, size - pos, record_floats);
            goto done;
        }
        float *vector = enc->vectors + row * dim;
        for (size_t c = 0; c < dim; c++) {
            const unsigned char *b = (const unsigned char *)data + pos + 4 * c;
            uint32_t bits = (uint32_t)b[0] | ((uint32_t)b[1] << 8) | ((uint32_t)b[2] << 16) | ((uint32_t)b[3] << 24);
            memcpy(&vector[c], &bits, sizeof bits);
            if (!isfinite(vector[c])) {
                status = eb__fail(err, EB_ERR_FORMAT, "byte %zu: value %zu of record %zu is not finite", pos + 4 * c,
                                  c + 1, row + 1);
                goto done;
            }
        }
        offsets[row] = word_start;
        status = add_word(enc, data + word_start, word_length, &pool_used, offsets, "byte", err);
        if (status != EB_OK)
            goto done;
        pos += record_floats;
    }
    while (pos < size && (data[pos] == '\n' || is_blank(data[pos])))
        pos++;
    if (pos < size)
        status = eb__fail(err, EB_ERR_FORMAT, "byte %zu: data after the %zu records the header announces", pos, count);
done:
    eb__free(&enc->mem, offsets);
    return status;
}

eb_status eb_word_vectors_load_from_buffer(const void *bytes, size_t size, const eb_word_vector_params *params,
                                           const eb_allocator *mem, eb_encoder **out, eb_error *err)
{
    eb__error_clear(err);
    if (out == NULL)
        return eb__fail(err, EB_ERR_NULL_POINTER, "out is NULL");
    *out = NULL;
    if (params == NULL)
        return eb__fail(err, EB_ERR_NULL_POINTER, "params is NULL");
    if (bytes == NULL && size > 0)
        return eb__fail(err, EB_ERR_NULL_POINTER, "bytes is NULL");
    if (params->format < EB_WORD_VECTORS_AUTO || params->format > EB_WORD_VECTORS_BINARY)
        return eb__fail(err, EB_ERR_INVALID_PARAM, "format is %d; it must be one of EB_WORD_VECTORS_*",
                        (int)params->format);
    if (params->n_threads > EB_ENCODER_MAX_THREADS)
        return eb__fail(err, EB_ERR_INVALID_PARAM, "n_threads is %zu; at most %d (0 for automatic)",
                        params->n_threads, EB_ENCODER_MAX_THREADS);
    if (size == 0)
        return eb__fail(err, EB_ERR_FORMAT, "the word-vector file is empty");
    eb_allocator kept;
    eb_status status = eb__encoder_allocator(mem, &kept, err);
    if (status != EB_OK)
        return status;
    const char *data = bytes;
    /* A UTF-8 byte-order mark (editors on Windows write one) is not part of the first word or header. */
    size_t start = size >= 3 && memcmp(data, "\xEF\xBB\xBF", 3) == 0 ? 3 : 0;
    if (start == size)
        return eb__fail(err, EB_ERR_FORMAT, "the word-vector file holds only a byte-order mark");
    eb_word_vector_format format = params->format;
    if (format == EB_WORD_VECTORS_AUTO) {
        size_t count, dim;
        line_span first = line_at(data, size, start);
        header_kind kind = parse_header(data, first, &count, &dim);
        if (kind == HEADER_TOO_LARGE)
            return header_failure(data, first, kind, "line 1", err);
        if (kind == HEADER_NONE)
            format = EB_WORD_VECTORS_GLOVE;
        else
            format = looks_binary(data, size, first.end + 1) ? EB_WORD_VECTORS_BINARY : EB_WORD_VECTORS_TEXT;
    }
    word_vectors_encoder *enc = eb__calloc(&kept, 1, sizeof *enc);
    if (enc == NULL)
        return eb__fail(err, EB_ERR_NOMEM, "out of memory for the word-vector encoder");
    enc->base.vtable = &word_vectors_vtable;
    enc->params = *params;
    enc->params.format = format;
    enc->mem = kept;
    status = format == EB_WORD_VECTORS_BINARY
                 ? parse_binary(enc, data, size, start, err)
                 : parse_text(enc, data, size, start, format == EB_WORD_VECTORS_TEXT, err);
    if (status != EB_OK) {
        release_encoder(enc);
        return status;
    }
    *out = &enc->base;
    return EB_OK;
}

eb_status eb_word_vectors_load(const char *path, const eb_word_vector_params *params, const eb_allocator *mem,
                               eb_encoder **out, eb_error *err)
{
    eb__error_clear(err);
    if (out == NULL)
        return eb__fail(err, EB_ERR_NULL_POINTER, "out is NULL");
    *out = NULL;
    if (params == NULL)
        return eb__fail(err, EB_ERR_NULL_POINTER, "params is NULL");
    eb_allocator alloc;
    eb_status status = eb__encoder_allocator(mem, &alloc, err);
    if (status != EB_OK)
        return status;
    void *bytes;
    size_t size;
    status = eb__read_file(path, &alloc, &bytes, &size, err);
    if (status != EB_OK)
        return status;
    status = eb_word_vectors_load_from_buffer(bytes, size, params, &alloc, out, err);
    eb__free(&alloc, bytes);
    if (status != EB_OK && err != NULL) {
        /* Say which file the line or byte belongs to. */
        char detail[EB_ERROR_MESSAGE_SIZE];
        memcpy(detail, err->message, sizeof detail);
        eb__fail(err, status, "%s: %s", path, detail);
    }
    return status;
}

size_t eb_word_vectors_vocab_size(const eb_encoder *encoder)
{
    if (encoder == NULL || encoder->vtable != &word_vectors_vtable)
        return 0;
    return ((const word_vectors_encoder *)encoder)->vocab_size;
}

const float *eb_word_vectors_lookup(const eb_encoder *encoder, const char *word, size_t length)
{
    if (encoder == NULL || encoder->vtable != &word_vectors_vtable || (word == NULL && length > 0))
        return NULL;
    const word_vectors_encoder *enc = (const word_vectors_encoder *)encoder;
    size_t row = find_word(enc, word, length);
    return row == SIZE_MAX ? NULL : enc->vectors + row * enc->dim;
}

/* ---- encoding ---------------------------------------------------------------- */

/* Per-thread scratch: the lowercased text (at most twice the longest text's bytes) and the vector sum. */
typedef struct pooling_scratch {
    char *lowered;
    double *sum;
} pooling_scratch;

typedef struct pooling_job {
    const word_vectors_encoder *enc;
    const eb_text *texts;
    eb_mut_matrix out;
    pooling_scratch *scratch;
} pooling_job;

static eb_status pool_range(void *ctx, size_t begin, size_t end, size_t worker, eb_error *err)
{
    (void)err;
    const pooling_job *job = ctx;
    const word_vectors_encoder *enc = job->enc;
    pooling_scratch *s = &job->scratch[worker];
    size_t dim = enc->dim;
    for (size_t r = begin; r < end; r++) {
        const char *text = s->lowered;
        size_t length = eb__utf8_lower(job->texts[r].data, job->texts[r].length, s->lowered);
        memset(s->sum, 0, dim * sizeof *s->sum);
        size_t found = 0, pos = 0;
        while (pos < length) {
            size_t next = pos;
            if (!eb__unicode_is_alnum(eb__utf8_next(text, &next))) {
                pos = next;
                continue;
            }
            size_t start = pos;
            while (pos < length) {
                next = pos;
                if (!eb__unicode_is_alnum(eb__utf8_next(text, &next)))
                    break;
                pos = next;
            }
            size_t row = find_word(enc, text + start, pos - start);
            if (row == SIZE_MAX)
                continue;
            const float *v = enc->vectors + row * dim;
            for (size_t c = 0; c < dim; c++)
                s->sum[c] += v[c];
            found++;
        }
        float *out = job->out.data + r * job->out.stride;
        double scale = 0;
        if (found > 0) {
            if (enc->params.normalize) {
                /* The mean's direction is the sum's: normalising the sum skips a division. */
                double norm = 0;
                for (size_t c = 0; c < dim; c++)
                    norm += s->sum[c] * s->sum[c];
                scale = norm > 0 ? 1.0 / sqrt(norm) : 0;
            } else {
                scale = 1.0 / (double)found;
            }
        }
        for (size_t c = 0; c < dim; c++)
            out[c] = (float)(s->sum[c] * scale);
    }
    return EB_OK;
}

static eb_status word_vectors_encode(const eb_encoder *encoder, const eb_text *texts, size_t n, eb_mut_matrix out,
                                     eb_error *err)
{
    const word_vectors_encoder *enc = (const word_vectors_encoder *)encoder;
    const eb_allocator *mem = &enc->mem;
    size_t bounds[EB_ENCODER_MAX_THREADS + 1], n_threads;
    eb_status planned = eb__plan_text_threads(texts, n, enc->params.n_threads, mem, bounds, &n_threads, err);
    if (planned != EB_OK)
        return planned;
    pooling_scratch scratch[EB_ENCODER_MAX_THREADS];
    memset(scratch, 0, sizeof scratch);
    eb_status status = EB_OK;
    for (size_t t = 0; t < n_threads && status == EB_OK; t++) {
        size_t longest = eb__longest_text(texts, bounds[t], bounds[t + 1]), room;
        /* Lowercasing at most doubles the bytes (eb__utf8_lower). */
        if (!eb__mul_size(longest, 2, &room)) {
            status = eb__fail(err, EB_ERR_TOO_LARGE, "a text of %zu bytes is too large to encode", longest);
            break;
        }
        scratch[t].lowered = eb__calloc(mem, room, 1);
        scratch[t].sum = eb__calloc(mem, enc->dim, sizeof *scratch[t].sum);
        if (scratch[t].lowered == NULL || scratch[t].sum == NULL)
            status = eb__fail(err, EB_ERR_NOMEM, "out of memory for the scratch of the word-vector encoder");
    }
    if (status == EB_OK) {
        pooling_job job = {enc, texts, out, scratch};
        status = eb__run_ranges(n_threads, bounds, pool_range, &job, err);
    }
    for (size_t t = 0; t < n_threads; t++) {
        eb__free(mem, scratch[t].lowered);
        eb__free(mem, scratch[t].sum);
    }
    return status;
}

static size_t word_vectors_output_dim(const eb_encoder *encoder)
{
    return ((const word_vectors_encoder *)encoder)->dim;
}

static void word_vectors_destroy(eb_encoder *encoder)
{
    release_encoder((word_vectors_encoder *)encoder);
}

static const eb_encoder_vtable word_vectors_vtable = {
    "word_vectors", EB_INPUT_TEXT, word_vectors_output_dim, word_vectors_encode, NULL, word_vectors_destroy,
};
