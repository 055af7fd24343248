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

uint32_t eb__utf8_prev(const char *str, size_t *pos)
{
    const unsigned char *s = (const unsigned char *)str;
    size_t p = *pos - 1;
    while (p > 0 && (s[p] & 0xC0) == 0x80)
        p--;
    *pos = p;
    return eb__utf8_next(str, &p);
}

/*
 * Python's handle_capital_sigma for the U+03A3 at bytes [at, after) of text:
 * final when preceded by a cased letter and not followed by one, skipping
 * case-ignorable characters both ways. It looks at the original text, as
 * Python does.
 */
static uint32_t lower_capital_sigma(const char *text, size_t length, size_t at, size_t after)
{
    size_t j = at;
    bool preceded = false;
    while (j > 0) {
        uint32_t cp = eb__utf8_prev(text, &j);
        if (!is_case_ignorable(cp)) {
            preceded = is_cased(cp);
            break;
        }
    }
    if (!preceded)
        return 0x3C3;
    j = after;
    while (j < length) {
        uint32_t cp = eb__utf8_next(text, &j);
        if (!is_case_ignorable(cp))
            return is_cased(cp) ? 0x3C3 : 0x3C2;
    }
    return 0x3C2;
}

size_t eb__utf8_lower(const char *text, size_t length, char *out)
{
    const unsigned char *in = (const unsigned char *)text;
    size_t at = 0, pos = 0;
    while (pos < length) {
        unsigned char c = in[pos];
        if (c < 0x80) {
            out[at++] = (char)(c >= 'A' && c <= 'Z' ? c + 32 : c);
            pos++;
            continue;
        }
        size_t begin = pos;
        uint32_t cp = eb__utf8_next(text, &pos);
        if (cp == 0x130) {
            /* The only unconditional multi-character lowercase mapping in SpecialCasing.txt. */
            out[at++] = 'i';
            at += eb__utf8_put(0x307, out + at);
        } else if (cp == 0x3A3) {
            at += eb__utf8_put(lower_capital_sigma(text, length, begin, pos), out + at);
        } else {
            at += eb__utf8_put((uint32_t)utf8proc_tolower((utf8proc_int32_t)cp), out + at);
        }
    }
    return at;
}
