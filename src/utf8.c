/*
 * UTF-8 checking and decoding, and the few Unicode rules the text encoders
 * need to agree with Python's str methods. Character properties come from
 * utf8proc's read-only tables.
 */
#include <string.h>

#include <utf8proc.h>

#include "encoder_internal.h"

/* Length of the sequence starting at s[0] if it is well-formed (Unicode table 3-7), else 0. */
static size_t well_formed_length(const unsigned char *s, size_t available)
{
    unsigned char b0 = s[0];
    if (b0 < 0x80)
        return 1;
    if (b0 < 0xC2)
        return 0; /* continuation byte or overlong 2-byte lead */
    if (b0 < 0xE0) {
        return (available >= 2 && (s[1] & 0xC0) == 0x80) ? 2 : 0;
    }
    if (b0 < 0xF0) {
        if (available < 3)
            return 0;
        unsigned char lo = 0x80, hi = 0xBF;
        if (b0 == 0xE0)
            lo = 0xA0; /* overlong */
        else if (b0 == 0xED)
            hi = 0x9F; /* surrogates */
        if (s[1] < lo || s[1] > hi || (s[2] & 0xC0) != 0x80)
            return 0;
        return 3;
    }
    if (b0 < 0xF5) {
        if (available < 4)
            return 0;
        unsigned char lo = 0x80, hi = 0xBF;
        if (b0 == 0xF0)
            lo = 0x90; /* overlong */
        else if (b0 == 0xF4)
            hi = 0x8F; /* above U+10FFFF */
        if (s[1] < lo || s[1] > hi || (s[2] & 0xC0) != 0x80 || (s[3] & 0xC0) != 0x80)
            return 0;
        return 4;
    }
    return 0;
}

int eb_utf8_valid(const char *data, size_t length, size_t *bad_offset)
{
    const unsigned char *s = (const unsigned char *)data;
    size_t pos = 0;
    if (length > 0 && data == NULL) {
        if (bad_offset != NULL)
            *bad_offset = 0;
        return 0;
    }
    while (pos < length) {
        /* ASCII is most text; skip it eight bytes at a time. */
        while (pos + 8 <= length) {
            uint64_t chunk;
            memcpy(&chunk, s + pos, 8);
            if (chunk & UINT64_C(0x8080808080808080))
                break;
            pos += 8;
        }
        if (pos >= length)
            break;
        size_t n = well_formed_length(s + pos, length - pos);
        if (n == 0) {
            if (bad_offset != NULL)
                *bad_offset = pos;
            return 0;
        }
        pos += n;
    }
    return 1;
}

uint32_t eb__utf8_next(const char *str, size_t *pos)
{
    const unsigned char *s = (const unsigned char *)str + *pos;
    uint32_t cp;
    if (s[0] < 0x80) {
        *pos += 1;
        return s[0];
    }
    if (s[0] < 0xE0) {
        cp = ((uint32_t)(s[0] & 0x1F) << 6) | (s[1] & 0x3F);
        *pos += 2;
    } else if (s[0] < 0xF0) {
        cp = ((uint32_t)(s[0] & 0x0F) << 12) | ((uint32_t)(s[1] & 0x3F) << 6) | (s[2] & 0x3F);
        *pos += 3;
    } else {
        cp = ((uint32_t)(s[0] & 0x07) << 18) | ((uint32_t)(s[1] & 0x3F) << 12) | ((uint32_t)(s[2] & 0x3F) << 6) |
             (s[3] & 0x3F);
        *pos += 4;
    }
    return cp;
}

size_t eb__utf8_put(uint32_t cp, char *out)
{
    unsigned char *o = (unsigned char *)out;
    if (cp < 0x80) {
        o[0] = (unsigned char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (unsigned char)(0xC0 | (cp >> 6));
        o[1] = (unsigned char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (unsigned char)(0xE0 | (cp >> 12));
        o[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (unsigned char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (unsigned char)(0xF0 | (cp >> 18));
    o[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
    o[3] = (unsigned char)(0x80 | (cp & 0x3F));
    return 4;
}

bool eb__unicode_is_space(uint32_t cp)
{
    if (cp < 0x80)
        return cp == ' ' || (cp >= 0x09 && cp <= 0x0D) || (cp >= 0x1C && cp <= 0x1F);
    const utf8proc_property_t *p = utf8proc_get_property((utf8proc_int32_t)cp);
    return p->category == UTF8PROC_CATEGORY_ZS || p->bidi_class == UTF8PROC_BIDI_CLASS_WS ||
           p->bidi_class == UTF8PROC_BIDI_CLASS_B || p->bidi_class == UTF8PROC_BIDI_CLASS_S;
}

static bool category_is_alnum(utf8proc_category_t c)
{
    return (c >= UTF8PROC_CATEGORY_LU && c <= UTF8PROC_CATEGORY_LO) ||
           (c >= UTF8PROC_CATEGORY_ND && c <= UTF8PROC_CATEGORY_NO);
}

bool eb__unicode_is_alnum(uint32_t cp)
{
    if (cp < 0x80)
        return (cp >= '0' && cp <= '9') || ((cp | 0x20) >= 'a' && (cp | 0x20) <= 'z');
    return category_is_alnum(utf8proc_category((utf8proc_int32_t)cp));
}

bool eb__unicode_is_word(uint32_t cp)
{
    return cp == '_' || eb__unicode_is_alnum(cp);
}

/*
 * Cased (DerivedCoreProperties): letters of the three case categories, or
 * anything with a case mapping. Other_Lowercase/Other_Uppercase characters
 * without a mapping (U+00AA, U+00BA, modifier letters) are not covered by
 * utf8proc's tables and count as uncased; docs/encoders.md lists this.
 */
static bool is_cased(uint32_t cp)
{
    const utf8proc_property_t *p = utf8proc_get_property((utf8proc_int32_t)cp);
    if (p->category == UTF8PROC_CATEGORY_LU || p->category == UTF8PROC_CATEGORY_LL ||
        p->category == UTF8PROC_CATEGORY_LT)
        return true;
    return p->lowercase_seqindex != UINT16_MAX || p->uppercase_seqindex != UINT16_MAX ||
           p->titlecase_seqindex != UINT16_MAX;
}

/*
 * Case_Ignorable (DerivedCoreProperties): general category Mn, Me, Cf, Lm or
 * Sk, or Word_Break MidLetter, MidNumLet or Single_Quote. utf8proc has no
 * Word_Break property, so its 17 members (stable since Unicode 6.0) are listed.
 */
static bool is_case_ignorable(uint32_t cp)
{
    static const uint32_t word_break_mid[] = {0x0027, 0x002E, 0x003A, 0x00B7, 0x0387, 0x055F, 0x05F4, 0x2018, 0x2019,
                                              0x2024, 0x2027, 0xFE13, 0xFE52, 0xFE55, 0xFF07, 0xFF0E, 0xFF1A};
    for (size_t i = 0; i < sizeof word_break_mid / sizeof *word_break_mid; i++) {
        if (cp == word_break_mid[i])
            return true;
    }
    utf8proc_category_t c = utf8proc_category((utf8proc_int32_t)cp);
    return c == UTF8PROC_CATEGORY_MN || c == UTF8PROC_CATEGORY_ME || c == UTF8PROC_CATEGORY_CF ||
           c == UTF8PROC_CATEGORY_LM || c == UTF8PROC_CATEGORY_SK;
}

/* Python's handle_capital_sigma: final when preceded by a cased letter and not followed by one. */
static uint32_t lower_capital_sigma(const uint32_t *cps, size_t n, size_t i)
{
    size_t j = i;
    bool preceded = false;
    while (j > 0) {
        j--;
        if (!is_case_ignorable(cps[j])) {
            preceded = is_cased(cps[j]);
            break;
        }
    }
    if (!preceded)
        return 0x3C3;
    for (j = i + 1; j < n; j++) {
        if (!is_case_ignorable(cps[j]))
            return is_cased(cps[j]) ? 0x3C3 : 0x3C2;
    }
    return 0x3C2;
}

size_t eb__unicode_lower(const uint32_t *cps, size_t n, uint32_t *out)
{
    size_t count = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t cp = cps[i];
        if (cp < 0x80) {
            out[count++] = (cp >= 'A' && cp <= 'Z') ? cp + 32 : cp;
        } else if (cp == 0x130) {
            /* The only unconditional multi-character lowercase mapping in SpecialCasing.txt. */
            out[count++] = 'i';
            out[count++] = 0x307;
        } else if (cp == 0x3A3) {
            out[count++] = lower_capital_sigma(cps, n, i);
        } else {
            out[count++] = (uint32_t)utf8proc_tolower((utf8proc_int32_t)cp);
        }
    }
    return count;
}

eb_status eb__text_scratch_alloc(eb_text_scratch *s, size_t max_length, const eb_allocator *mem, eb_error *err)
{
    memset(s, 0, sizeof *s);
    /* Lowercasing never more than doubles the code points, nor the UTF-8 bytes; +1 keeps empty texts allocatable. */
    size_t room = max_length + 1, doubled;
    if (!eb__mul_size(room, 2, &doubled))
        return eb__fail(err, EB_ERR_TOO_LARGE, "a text of %zu bytes is too large to encode", max_length);
    s->max_length = max_length;
    s->raw = eb__calloc(mem, room, sizeof *s->raw);
    s->lowered = eb__calloc(mem, doubled, sizeof *s->lowered);
    s->bytes = eb__calloc(mem, doubled, 4);
    s->offsets = eb__calloc(mem, doubled + 1, sizeof *s->offsets);
    if (s->raw == NULL || s->lowered == NULL || s->bytes == NULL || s->offsets == NULL) {
        eb__text_scratch_release(s, mem);
        return eb__fail(err, EB_ERR_NOMEM, "out of memory for the scratch of a %zu-byte text", max_length);
    }
    return EB_OK;
}

void eb__text_scratch_release(eb_text_scratch *s, const eb_allocator *mem)
{
    eb__free(mem, s->raw);
    eb__free(mem, s->lowered);
    eb__free(mem, s->bytes);
    eb__free(mem, s->offsets);
    memset(s, 0, sizeof *s);
}

/* Pure ASCII needs no decoding: code points are the bytes and every offset is its index. */
static bool decode_ascii(eb_text_scratch *s, eb_text text, bool lowercase, eb_decoded_text *d)
{
    const unsigned char *in = (const unsigned char *)text.data;
    for (size_t i = 0; i < text.length; i++) {
        if (in[i] >= 0x80)
            return false;
    }
    for (size_t i = 0; i < text.length; i++) {
        unsigned char c = in[i];
        if (lowercase && c >= 'A' && c <= 'Z')
            c = (unsigned char)(c + 32);
        s->raw[i] = c;
        s->bytes[i] = (char)c;
        s->offsets[i] = i;
    }
    s->offsets[text.length] = text.length;
    d->cps = s->raw;
    d->count = text.length;
    d->bytes = s->bytes;
    d->offsets = s->offsets;
    return true;
}

eb_decoded_text eb__decode_text(eb_text_scratch *s, eb_text text, bool lowercase)
{
    eb_decoded_text d;
    if (decode_ascii(s, text, lowercase, &d))
        return d;
    size_t n = 0, pos = 0;
    while (pos < text.length)
        s->raw[n++] = eb__utf8_next(text.data, &pos);
    if (lowercase) {
        d.cps = s->lowered;
        d.count = eb__unicode_lower(s->raw, n, s->lowered);
    } else {
        d.cps = s->raw;
        d.count = n;
    }
    size_t at = 0;
    for (size_t i = 0; i < d.count; i++) {
        s->offsets[i] = at;
        at += eb__utf8_put(d.cps[i], s->bytes + at);
    }
    s->offsets[d.count] = at;
    d.bytes = s->bytes;
    d.offsets = s->offsets;
    return d;
}
