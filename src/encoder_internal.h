/* Declarations shared by the encoder source files; not installed. */
#ifndef EMBETTER_ENCODER_INTERNAL_H
#define EMBETTER_ENCODER_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "internal.h"

/* ---- encoder.c: the allocator ------------------------------------------------ */

/*
 * The allocator an encoder keeps, as the finetuners keep theirs: a copy of
 * *mem (of the default allocator when mem is NULL), so the caller's struct
 * need not outlive the encoder. EB_ERR_NULL_POINTER when calloc or free is NULL.
 */
eb_status eb__encoder_allocator(const eb_allocator *mem, eb_allocator *out, eb_error *err);

/* ---- encoder.c: splitting a batch across threads ------------------------- */

/* Encode items [begin, end) of a batch; `worker` indexes the caller's per-thread scratch. */
typedef eb_status (*eb__range_fn)(void *ctx, size_t begin, size_t end, size_t worker, eb_error *err);

/*
 * Threads to use for a batch of n_items holding total_work units, following
 * the rule documented at EB_ENCODER_THREADS_AUTO.
 */
size_t eb__encoder_threads(size_t requested, size_t n_items, size_t total_work);

/*
 * Cut n_items into n_threads contiguous ranges of about equal work (work[i]
 * units for item i; NULL for one unit each): bounds receives n_threads + 1
 * entries, range t being [bounds[t], bounds[t + 1]), none empty.
 * n_threads must be between 1 and n_items.
 */
void eb__split_ranges(size_t n_items, size_t n_threads, const size_t *work, size_t *bounds);

/*
 * Run fn on every range, the first on the calling thread, the others on new
 * threads (or the calling thread when one cannot start). Returns the status
 * of the lowest failing range, with its message in err.
 */
eb_status eb__run_ranges(size_t n_threads, const size_t *bounds, eb__range_fn fn, void *ctx, eb_error *err);

/*
 * How a text encoder spreads a batch over threads: the thread count from
 * requested (EB_ENCODER_THREADS_AUTO's rule) and ranges of about equal bytes in
 * bounds (*n_threads + 1 entries, as eb__split_ranges). Only NOMEM can fail.
 */
eb_status eb__plan_text_threads(const eb_text *texts, size_t n, size_t requested, const eb_allocator *mem,
                                size_t *bounds, size_t *n_threads, eb_error *err);

/* The length of the longest of texts[begin .. end), which sizes a thread's scratch buffers. */
size_t eb__longest_text(const eb_text *texts, size_t begin, size_t end);

/* ---- hashing.c ------------------------------------------------------------- */

/* MurmurHash3 x86 32-bit, unsigned. */
uint32_t eb__murmur3_32(const uint8_t *p, size_t length, uint32_t seed);

/* ---- utf8.c: decoding and the Unicode rules Python's str applies ---------- */

/* Decode the code point at s[*pos] of valid UTF-8 and advance *pos; inline, as the analyzers call it per character. */
static inline uint32_t eb__utf8_next(const char *str, size_t *pos)
{
    const unsigned char *s = (const unsigned char *)str + *pos;
    if (s[0] < 0x80) {
        *pos += 1;
        return s[0];
    }
    if (s[0] < 0xE0) {
        *pos += 2;
        return ((uint32_t)(s[0] & 0x1F) << 6) | (s[1] & 0x3F);
    }
    if (s[0] < 0xF0) {
        *pos += 3;
        return ((uint32_t)(s[0] & 0x0F) << 12) | ((uint32_t)(s[1] & 0x3F) << 6) | (s[2] & 0x3F);
    }
    *pos += 4;
    return ((uint32_t)(s[0] & 0x07) << 18) | ((uint32_t)(s[1] & 0x3F) << 12) | ((uint32_t)(s[2] & 0x3F) << 6) |
           (s[3] & 0x3F);
}
/* Decode the code point ending just before s[*pos] of valid UTF-8 (*pos > 0) and move *pos to its first byte. */
uint32_t eb__utf8_prev(const char *s, size_t *pos);
/* Write cp as UTF-8 to out (room for 4); returns the byte count. */
size_t eb__utf8_put(uint32_t cp, char *out);
/* Bytes a UTF-8 sequence takes, from its first byte. */
static inline size_t eb__utf8_step(unsigned char first)
{
    return first < 0x80 ? 1 : first < 0xE0 ? 2 : first < 0xF0 ? 3 : 4;
}

/* Python's str.isspace(): category Zs or bidirectional class WS, B or S. */
bool eb__unicode_is_space(uint32_t cp);
/* eb__unicode_is_space with the ASCII answer inline, since nearly every character asked about is ASCII. */
static inline bool eb__is_space(uint32_t cp)
{
    if (cp < 0x80)
        return cp == ' ' || (cp >= 0x09 && cp <= 0x0D) || (cp >= 0x1C && cp <= 0x1F);
    return eb__unicode_is_space(cp);
}
/* A character of Python's re \w: a letter (L*), a number (N*) or '_'. */
bool eb__unicode_is_word(uint32_t cp);
/* eb__unicode_is_word with the ASCII answer inline. */
static inline bool eb__is_word(uint32_t cp)
{
    if (cp < 0x80)
        return cp == '_' || (cp >= '0' && cp <= '9') || ((cp | 0x20) >= 'a' && (cp | 0x20) <= 'z');
    return eb__unicode_is_word(cp);
}
/* A letter (L*) or a number (N*). */
bool eb__unicode_is_alnum(uint32_t cp);

/*
 * Python's str.lower() of valid UTF-8 text, as UTF-8: the Unicode full
 * lowercase mapping (U+0130 becomes "i" U+0307) with the Final_Sigma rule for
 * U+03A3. Returns the bytes written to out, which needs room for
 * 2 * length: a one-byte character lowers to one byte, and any other to at
 * most twice its own bytes (a 2-byte U+0130 to 3, any single code point to
 * at most 4).
 */
size_t eb__utf8_lower(const char *text, size_t length, char *out);

#endif
