/*
 * BERT's WordPiece tokenizer as Hugging Face `tokenizers` runs it:
 *   added tokens ([CLS], [MASK], ...) are cut out of the raw text first;
 *   BertNormalizer: drop control characters, NUL and U+FFFD and turn white
 *   space into ' ' (clean_text); put spaces around CJK ideographs; NFD and drop
 *   nonspacing marks (strip_accents); lowercase, one character at a time;
 *   BertPreTokenizer: split at white space, isolate each punctuation character;
 *   WordPiece: greedy longest match from the left, continuation pieces carrying
 *   the prefix ("##"), a word with an unmatched rest or over
 *   max_input_chars_per_word characters is one [UNK];
 *   then [CLS] tokens [SEP], the tokens cut to max_length - 2.
 *
 * The text streams through once, a character at a time, into a word buffer of
 * max_input_chars_per_word + 1 characters: memory does not grow with the text,
 * and encoding stops as soon as the truncated output is full.
 */
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include <json-c/json.h>
#include <utf8proc.h>

#include "encoder_internal.h"
#include "wordpiece.h"
#include "wordpiece_tables.h"

/* ---- character classes --------------------------------------------------------------------- */

static bool in_ranges(const wp_range *r, size_t n, uint32_t cp)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (cp < r[mid].first)
            hi = mid;
        else if (cp > r[mid].last)
            lo = mid + 1;
        else
            return true;
    }
    return false;
}

#define IN_TABLE(table, cp) in_ranges(table, sizeof table / sizeof table[0], cp)

static bool is_removed(uint32_t cp)
{
    if (cp < 0x80)
        return cp <= 0x08 || cp == 0x0B || cp == 0x0C || (cp >= 0x0E && cp <= 0x1F) || cp == 0x7F;
    return IN_TABLE(wp_removed, cp);
}

static bool is_clean_space(uint32_t cp)
{
    if (cp < 0x80)
        return cp == ' ' || cp == '\t' || cp == '\n' || cp == '\r';
    return IN_TABLE(wp_clean_spaces, cp);
}

/* Unicode White_Space, which the pre-tokenizer splits at (Rust's char::is_whitespace). */
static bool is_white_space(uint32_t cp)
{
    if (cp < 0x80)
        return cp == ' ' || (cp >= 0x09 && cp <= 0x0D);
    return cp == 0x85 || cp == 0xA0 || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 ||
           cp == 0x2029 || cp == 0x202F || cp == 0x205F || cp == 0x3000;
}

static bool is_punct(uint32_t cp)
{
    if (cp < 0x80)
        return (cp >= 0x21 && cp <= 0x2F) || (cp >= 0x3A && cp <= 0x40) || (cp >= 0x5B && cp <= 0x60) ||
               (cp >= 0x7B && cp <= 0x7E);
    return IN_TABLE(wp_punct, cp);
}

static bool is_mark(uint32_t cp)
{
    return cp >= 0x300 && IN_TABLE(wp_marks, cp);
}

/* The blocks BERT treats as Chinese characters (each becomes its own word). */
static bool is_cjk(uint32_t cp)
{
    return (cp >= 0x4E00 && cp <= 0x9FFF) || (cp >= 0x3400 && cp <= 0x4DBF) || (cp >= 0x20000 && cp <= 0x2A6DF) ||
           (cp >= 0x2A700 && cp <= 0x2B73F) || (cp >= 0x2B740 && cp <= 0x2B81F) ||
           (cp >= 0x2B920 && cp <= 0x2CEAF) || (cp >= 0xF900 && cp <= 0xFAFF) || (cp >= 0x2F800 && cp <= 0x2FA1F);
}

/* Lowercase of cp into out (room for 2); returns the count. */
static size_t lowercase(uint32_t cp, uint32_t *out)
{
    if (cp < 0x80) {
        out[0] = (cp >= 'A' && cp <= 'Z') ? cp + 32 : cp;
        return 1;
    }
    if (cp == 0x130) {
        out[0] = 'i';
        out[1] = 0x307;
        return 2;
    }
    size_t lo = 0, hi = sizeof wp_lower_overrides / sizeof wp_lower_overrides[0];
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (cp < wp_lower_overrides[mid][0])
            hi = mid;
        else if (cp > wp_lower_overrides[mid][0])
            lo = mid + 1;
        else {
            out[0] = wp_lower_overrides[mid][1];
            return 1;
        }
    }
    out[0] = (uint32_t)utf8proc_tolower((utf8proc_int32_t)cp);
    return 1;
}

/* Canonical decomposition of cp into out (room for 8); returns the count. */
static size_t decompose(uint32_t cp, uint32_t *out)
{
    if (cp < 0xC0) {
        out[0] = cp;
        return 1;
    }
    for (size_t i = 0; i < sizeof wp_keep_composed / sizeof wp_keep_composed[0]; i++) {
        if (wp_keep_composed[i] == cp) {
            out[0] = cp;
            return 1;
        }
    }
    utf8proc_int32_t buffer[8];
    int boundclass = UTF8PROC_BOUNDCLASS_START;
    utf8proc_ssize_t n = utf8proc_decompose_char((utf8proc_int32_t)cp, buffer, 8, UTF8PROC_DECOMPOSE, &boundclass);
    if (n < 1 || n > 8) {
        /* No canonical decomposition is this long; keep the character rather than lose it. */
        out[0] = cp;
        return 1;
    }
    for (utf8proc_ssize_t i = 0; i < n; i++)
        out[i] = (uint32_t)buffer[i];
    return (size_t)n;
}

static unsigned combining_class(uint32_t cp)
{
    if (cp < 0x300)
        return 0;
    return utf8proc_get_property((utf8proc_int32_t)cp)->combining_class;
}

/* ---- the vocabulary: an open-addressing hash table over one pool of bytes ----------------- */

typedef struct vocab_entry {
    size_t offset; /* into pool */
    size_t length;
    int32_t id;
    uint32_t hash;
} vocab_entry;

typedef struct added_token {
    size_t offset; /* into pool */
    size_t length;
    int32_t id;
} added_token;

struct eb_wordpiece {
    eb_allocator mem;
    bool clean_text;
    bool handle_chinese_chars;
    bool strip_accents;
    bool lowercase;
    size_t max_word_chars;
    char prefix[16];
    size_t prefix_length;

    char *pool;
    size_t pool_length;
    vocab_entry *entries;
    size_t n_entries;
    uint32_t *slots; /* entry index + 1; 0 is empty */
    size_t n_slots;  /* a power of two */
    size_t longest_key;
    int32_t max_id;

    int32_t unk_id, cls_id, sep_id, pad_id;

    added_token *added; /* longest first, so the first match at a position is the longest */
    size_t n_added;
    uint8_t added_first_bytes[32]; /* bit set of the first bytes of added tokens */
};

static const uint32_t HASH_SEED = 0x9747b28cu;

static int32_t lookup(const eb_wordpiece *wp, const char *key, size_t length)
{
    if (length > wp->longest_key || wp->n_slots == 0)
        return -1;
    uint32_t h = eb__murmur3_32((const uint8_t *)key, length, HASH_SEED);
    size_t mask = wp->n_slots - 1;
    for (size_t i = h & mask;; i = (i + 1) & mask) {
        uint32_t slot = wp->slots[i];
        if (slot == 0)
            return -1;
        const vocab_entry *e = &wp->entries[slot - 1];
        if (e->hash == h && e->length == length && memcmp(wp->pool + e->offset, key, length) == 0)
            return e->id;
    }
}

/* A growable list of (token, id) while parsing; the strings are copied into one pool at the end. */
typedef struct token_list {
    const eb_allocator *mem;
    vocab_entry *items;
    size_t count, capacity;
    char *bytes;
    size_t length, bytes_capacity;
} token_list;

static void *grow(const eb_allocator *mem, void *old, size_t old_count, size_t new_count, size_t size)
{
    void *fresh = eb__calloc(mem, new_count, size);
    if (fresh != NULL && old != NULL)
        memcpy(fresh, old, old_count * size);
    if (fresh != NULL)
        eb__free(mem, old);
    return fresh;
}

static bool token_list_add(token_list *list, const char *token, size_t length, int32_t id)
{
    if (list->count == list->capacity) {
        size_t capacity = list->capacity ? list->capacity * 2 : 1024;
        vocab_entry *items = grow(list->mem, list->items, list->count, capacity, sizeof *items);
        if (items == NULL)
            return false;
        list->items = items;
        list->capacity = capacity;
    }
    if (length > SIZE_MAX / 2 - list->length)
        return false;
    if (list->bytes == NULL || list->length + length > list->bytes_capacity) {
        size_t capacity = list->bytes_capacity ? list->bytes_capacity : 16384;
        while (capacity < list->length + length)
            capacity *= 2;
        char *bytes = grow(list->mem, list->bytes, list->length, capacity, 1);
        if (bytes == NULL)
            return false;
        list->bytes = bytes;
        list->bytes_capacity = capacity;
    }
    if (length > 0)
        memcpy(list->bytes + list->length, token, length);
    list->items[list->count++] = (vocab_entry){list->length, length, id, 0};
    list->length += length;
    return true;
}

static void token_list_release(token_list *list)
{
    eb__free(list->mem, list->items);
    eb__free(list->mem, list->bytes);
}

void eb__wordpiece_free(eb_wordpiece *wp)
{
    if (wp == NULL)
        return;
    eb_allocator mem = wp->mem;
    eb__free(&mem, wp->pool);
    eb__free(&mem, wp->entries);
    eb__free(&mem, wp->slots);
    eb__free(&mem, wp->added);
    eb__free(&mem, wp);
}

/* Take over list's bytes and entries as the vocabulary; a token listed twice keeps its last id. */
static eb_status build_vocab(eb_wordpiece *wp, token_list *list, eb_error *err)
{
    if (list->count == 0)
        return eb__fail(err, EB_ERR_FORMAT, "the vocabulary is empty");
    size_t n_slots = 16;
    while (n_slots < list->count * 2)
        n_slots *= 2;
    wp->slots = eb__calloc(&wp->mem, n_slots, sizeof *wp->slots);
    if (wp->slots == NULL)
        return eb__fail(err, EB_ERR_NOMEM, "out of memory for a vocabulary of %zu tokens", list->count);
    wp->n_slots = n_slots;
    wp->pool = list->bytes;
    wp->pool_length = list->length;
    wp->entries = list->items;
    list->bytes = NULL;
    list->items = NULL;
    wp->max_id = -1;
    size_t mask = n_slots - 1;
    for (size_t k = 0; k < list->count; k++) {
        vocab_entry *e = &wp->entries[k];
        e->hash = eb__murmur3_32((const uint8_t *)wp->pool + e->offset, e->length, HASH_SEED);
        if (e->id > wp->max_id)
            wp->max_id = e->id;
        for (size_t i = e->hash & mask;; i = (i + 1) & mask) {
            uint32_t slot = wp->slots[i];
            if (slot == 0) {
                wp->slots[i] = (uint32_t)(k + 1);
                break;
            }
            vocab_entry *other = &wp->entries[slot - 1];
            if (other->hash == e->hash && other->length == e->length &&
                memcmp(wp->pool + other->offset, wp->pool + e->offset, e->length) == 0) {
                other->id = e->id;
                break;
            }
        }
        if (e->length > wp->longest_key)
            wp->longest_key = e->length;
    }
    wp->n_entries = list->count;
    return EB_OK;
}

/* Record the added tokens of list (content, id), longest first; their bytes are copied into one block. */
static eb_status set_added_tokens(eb_wordpiece *wp, const token_list *list, eb_error *err)
{
    if (list->count == 0)
        return EB_OK;
    wp->added = eb__calloc(&wp->mem, list->count, sizeof *wp->added);
    if (wp->added == NULL)
        return eb__fail(err, EB_ERR_NOMEM, "out of memory for %zu added tokens", list->count);
    /* The added tokens' text lives in the pool: append it there. */
    char *pool = grow(&wp->mem, wp->pool, wp->pool_length, wp->pool_length + list->length + 1, 1);
    if (pool == NULL)
        return eb__fail(err, EB_ERR_NOMEM, "out of memory for %zu added tokens", list->count);
    wp->pool = pool;
    if (list->length > 0)
        memcpy(wp->pool + wp->pool_length, list->bytes, list->length);
    for (size_t k = 0; k < list->count; k++) {
        const vocab_entry *src = &list->items[k];
        if (src->length == 0)
            continue;
        added_token t = {wp->pool_length + src->offset, src->length, src->id};
        /* Insertion by length, longest first; equal lengths keep file order. */
        size_t at = wp->n_added;
        while (at > 0 && wp->added[at - 1].length < t.length) {
            wp->added[at] = wp->added[at - 1];
            at--;
        }
        wp->added[at] = t;
        wp->n_added++;
        unsigned char first = (unsigned char)wp->pool[t.offset];
        wp->added_first_bytes[first >> 3] |= (uint8_t)(1u << (first & 7));
        if (t.id > wp->max_id)
            wp->max_id = t.id;
    }
    wp->pool_length += list->length;
    return EB_OK;
}

static eb_status new_tokenizer(const eb_allocator *mem, eb_wordpiece **out, eb_error *err)
{
    eb_wordpiece *wp = eb__calloc(mem, 1, sizeof *wp);
    if (wp == NULL)
        return eb__fail(err, EB_ERR_NOMEM, "out of memory for a tokenizer");
    wp->mem = *mem;
    wp->max_word_chars = 100;
    memcpy(wp->prefix, "##", 2);
    wp->prefix_length = 2;
    wp->unk_id = wp->cls_id = wp->sep_id = wp->pad_id = -1;
    *out = wp;
    return EB_OK;
}

eb_wordpiece_options eb__wordpiece_default_options(void)
{
    eb_wordpiece_options o = {true, true, true, -1};
    return o;
}

/* ---- vocab.txt ------------------------------------------------------------------------------- */

static const char *const bert_specials[] = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"};

eb_status eb__wordpiece_from_vocab(const char *data, size_t size, const eb_wordpiece_options *options,
                                   const eb_allocator *mem, eb_wordpiece **out, eb_error *err)
{
    eb__error_clear(err);
    if (out == NULL)
        return eb__fail(err, EB_ERR_NULL_POINTER, "out is NULL");
    *out = NULL;
    if (data == NULL && size > 0)
        return eb__fail(err, EB_ERR_NULL_POINTER, "vocab.txt data is NULL");
    eb_wordpiece_options o = options != NULL ? *options : eb__wordpiece_default_options();
    if (o.strip_accents < -1 || o.strip_accents > 1)
        return eb__fail(err, EB_ERR_INVALID_PARAM, "strip_accents is %d; it must be -1, 0 or 1", o.strip_accents);
    if (mem == NULL)
        mem = eb_default_allocator();
    size_t bad;
    if (!eb_utf8_valid(data, size, &bad)) {
        size_t line = 1;
        for (size_t i = 0; i < bad; i++)
            line += data[i] == '\n';
        return eb__fail(err, EB_ERR_FORMAT, "vocab.txt line %zu is not valid UTF-8 (byte %zu)", line, bad);
    }
    if (size / 2 > (size_t)INT32_MAX)
        return eb__fail(err, EB_ERR_TOO_LARGE, "vocab.txt of %zu bytes has too many lines for 32-bit ids", size);

    eb_wordpiece *wp = NULL;
    eb_status status = new_tokenizer(mem, &wp, err);
    if (status != EB_OK)
        return status;
    wp->clean_text = o.clean_text;
    wp->handle_chinese_chars = o.handle_chinese_chars;
    wp->lowercase = o.lowercase;
    wp->strip_accents = o.strip_accents < 0 ? o.lowercase : o.strip_accents == 1;

    token_list list = {mem, NULL, 0, 0, NULL, 0, 0};
    size_t pos = 0;
    int32_t id = 0;
    /* Like Rust's lines(): a final newline ends the last line rather than starting an empty one. */
    while (pos < size) {
        size_t end = pos;
        while (end < size && data[end] != '\n')
            end++;
        size_t next = end < size ? end + 1 : end;
        if (end > pos && data[end - 1] == '\r')
            end--;
        /* trim_end: drop trailing White_Space characters. */
        size_t keep = pos, at = pos;
        while (at < end) {
            uint32_t cp = eb__utf8_next(data, &at);
            if (!is_white_space(cp))
                keep = at;
        }
        if (!token_list_add(&list, data + pos, keep - pos, id)) {
            token_list_release(&list);
            eb__wordpiece_free(wp);
            return eb__fail(err, EB_ERR_NOMEM, "out of memory reading vocab.txt line %d", (int)id + 1);
        }
        id++;
        pos = next;
    }
    status = build_vocab(wp, &list, err);
    token_list_release(&list);
    if (status != EB_OK) {
        eb__wordpiece_free(wp);
        if (status == EB_ERR_FORMAT)
            return eb__fail(err, EB_ERR_FORMAT, "vocab.txt holds no tokens");
        return status;
    }
    wp->unk_id = lookup(wp, "[UNK]", 5);
    wp->cls_id = lookup(wp, "[CLS]", 5);
    wp->sep_id = lookup(wp, "[SEP]", 5);
    wp->pad_id = lookup(wp, "[PAD]", 5);
    const char *missing = wp->unk_id < 0 ? "[UNK]" : wp->cls_id < 0 ? "[CLS]" : wp->sep_id < 0 ? "[SEP]" : NULL;
    if (missing != NULL) {
        eb__wordpiece_free(wp);
        return eb__fail(err, EB_ERR_FORMAT, "vocab.txt has no line %s, which a BERT tokenizer needs", missing);
    }
    token_list specials = {mem, NULL, 0, 0, NULL, 0, 0};
    for (size_t i = 0; i < sizeof bert_specials / sizeof bert_specials[0]; i++) {
        size_t length = strlen(bert_specials[i]);
        int32_t special_id = lookup(wp, bert_specials[i], length);
        if (special_id >= 0 && !token_list_add(&specials, bert_specials[i], length, special_id)) {
            token_list_release(&specials);
            eb__wordpiece_free(wp);
            return eb__fail(err, EB_ERR_NOMEM, "out of memory for the special tokens");
        }
    }
    status = set_added_tokens(wp, &specials, err);
    token_list_release(&specials);
    if (status != EB_OK) {
        eb__wordpiece_free(wp);
        return status;
    }
    *out = wp;
    return EB_OK;
}

/* ---- tokenizer.json -------------------------------------------------------------------------- */

/* The member key of obj when it is there and not null, else NULL. */
static json_object *member(json_object *obj, const char *key)
{
    json_object *value = NULL;
    if (!json_object_object_get_ex(obj, key, &value))
        return NULL;
    return value;
}

static eb_status get_bool(json_object *obj, const char *where, const char *key, bool fallback, bool *out,
                          eb_error *err)
{
    json_object *value = member(obj, key);
    if (value == NULL) {
        *out = fallback;
        return EB_OK;
    }
    if (!json_object_is_type(value, json_type_boolean))
        return eb__fail(err, EB_ERR_FORMAT, "tokenizer.json: %s.%s must be true or false", where, key);
    *out = json_object_get_boolean(value);
    return EB_OK;
}

static eb_status get_id(json_object *value, const char *what, int32_t *out, eb_error *err)
{
    if (value == NULL || !json_object_is_type(value, json_type_int))
        return eb__fail(err, EB_ERR_FORMAT, "tokenizer.json: %s must be an integer id", what);
    int64_t id = json_object_get_int64(value);
    if (id < 0 || id > INT32_MAX - 1)
        return eb__fail(err, EB_ERR_FORMAT, "tokenizer.json: %s is %lld; ids must be between 0 and %d", what,
                        (long long)id, INT32_MAX - 1);
    *out = (int32_t)id;
    return EB_OK;
}

/* The "type" of a component, or NULL with a message when it has none. */
static const char *component_type(json_object *obj, const char *what, eb_error *err)
{
    json_object *type = member(obj, "type");
    if (!json_object_is_type(obj, json_type_object) || type == NULL || !json_object_is_type(type, json_type_string)) {
        eb__fail(err, EB_ERR_FORMAT, "tokenizer.json: %s is not an object with a \"type\"", what);
        return NULL;
    }
    return json_object_get_string(type);
}

static eb_status parse_normalizer(eb_wordpiece *wp, json_object *normalizer, eb_error *err)
{
    if (normalizer == NULL)
        return EB_OK; /* no normalizer: the text is pre-tokenized as it is */
    const char *type = component_type(normalizer, "normalizer", err);
    if (type == NULL)
        return EB_ERR_FORMAT;
    if (strcmp(type, "BertNormalizer") != 0)
        return eb__fail(err, EB_ERR_FORMAT,
                        "tokenizer.json: normalizer type \"%.60s\" is not supported (only BertNormalizer)", type);
    eb_status status;
    if ((status = get_bool(normalizer, "normalizer", "clean_text", true, &wp->clean_text, err)) != EB_OK ||
        (status = get_bool(normalizer, "normalizer", "handle_chinese_chars", true, &wp->handle_chinese_chars,
                           err)) != EB_OK ||
        (status = get_bool(normalizer, "normalizer", "lowercase", true, &wp->lowercase, err)) != EB_OK)
        return status;
    /* strip_accents null (or absent) follows lowercase, as tokenizers does. */
    return get_bool(normalizer, "normalizer", "strip_accents", wp->lowercase, &wp->strip_accents, err);
}

static eb_status parse_model(eb_wordpiece *wp, json_object *model, eb_error *err)
{
    if (model == NULL)
        return eb__fail(err, EB_ERR_FORMAT, "tokenizer.json has no \"model\"");
    const char *type = component_type(model, "model", err);
    if (type == NULL)
        return EB_ERR_FORMAT;
    if (strcmp(type, "WordPiece") != 0)
        return eb__fail(err, EB_ERR_FORMAT, "tokenizer.json: model type \"%.60s\" is not supported (only WordPiece)",
                        type);
    json_object *prefix = member(model, "continuing_subword_prefix");
    if (prefix != NULL) {
        if (!json_object_is_type(prefix, json_type_string))
            return eb__fail(err, EB_ERR_FORMAT, "tokenizer.json: model.continuing_subword_prefix must be a string");
        size_t length = (size_t)json_object_get_string_len(prefix);
        if (length >= sizeof wp->prefix)
            return eb__fail(err, EB_ERR_FORMAT,
                            "tokenizer.json: model.continuing_subword_prefix is %zu bytes; at most %zu supported",
                            length, sizeof wp->prefix - 1);
        memcpy(wp->prefix, json_object_get_string(prefix), length);
        wp->prefix_length = length;
    }
    json_object *max_chars = member(model, "max_input_chars_per_word");
    if (max_chars != NULL) {
        if (!json_object_is_type(max_chars, json_type_int))
            return eb__fail(err, EB_ERR_FORMAT, "tokenizer.json: model.max_input_chars_per_word must be an integer");
        int64_t value = json_object_get_int64(max_chars);
        if (value < 0 || value > EB_WORDPIECE_MAX_WORD_CHARS_LIMIT)
            return eb__fail(err, EB_ERR_FORMAT,
                            "tokenizer.json: model.max_input_chars_per_word is %lld; between 0 and %d supported",
                            (long long)value, EB_WORDPIECE_MAX_WORD_CHARS_LIMIT);
        wp->max_word_chars = (size_t)value;
    }
    json_object *vocab = member(model, "vocab");
    if (vocab == NULL || !json_object_is_type(vocab, json_type_object))
        return eb__fail(err, EB_ERR_FORMAT, "tokenizer.json: model.vocab must be an object of token: id");
    if (json_object_object_length(vocab) == 0)
        return eb__fail(err, EB_ERR_FORMAT, "tokenizer.json: model.vocab is empty");
    token_list list = {&wp->mem, NULL, 0, 0, NULL, 0, 0};
    eb_status status = EB_OK;
    json_object_object_foreach(vocab, key, value)
    {
        int32_t id = 0;
        if (status != EB_OK)
            break;
        if (get_id(value, "every model.vocab value", &id, err) != EB_OK) {
            status = eb__fail(err, EB_ERR_FORMAT, "tokenizer.json: model.vocab[\"%.40s\"] is not an id from 0 to %d",
                              key, INT32_MAX - 1);
            break;
        }
        if (!token_list_add(&list, key, strlen(key), id))
            status = eb__fail(err, EB_ERR_NOMEM, "out of memory reading the vocabulary");
    }
    if (status == EB_OK)
        status = build_vocab(wp, &list, err);
    token_list_release(&list);
    if (status != EB_OK)
        return status;
    json_object *unk = member(model, "unk_token");
    const char *unk_token = "[UNK]";
    size_t unk_length = 5;
    if (unk != NULL) {
        if (!json_object_is_type(unk, json_type_string))
            return eb__fail(err, EB_ERR_FORMAT, "tokenizer.json: model.unk_token must be a string");
        unk_token = json_object_get_string(unk);
        unk_length = (size_t)json_object_get_string_len(unk);
    }
    wp->unk_id = lookup(wp, unk_token, unk_length);
    if (wp->unk_id < 0)
        return eb__fail(err, EB_ERR_FORMAT, "tokenizer.json: the unk_token \"%.40s\" is not in model.vocab",
                        unk_token);
    return EB_OK;
}

static eb_status parse_pre_tokenizer(json_object *pre, eb_error *err)
{
    if (pre == NULL)
        return eb__fail(err, EB_ERR_FORMAT, "tokenizer.json has no pre_tokenizer; only BertPreTokenizer is supported");
    const char *type = component_type(pre, "pre_tokenizer", err);
    if (type == NULL)
        return EB_ERR_FORMAT;
    if (strcmp(type, "BertPreTokenizer") != 0)
        return eb__fail(err, EB_ERR_FORMAT,
                        "tokenizer.json: pre_tokenizer type \"%.60s\" is not supported (only BertPreTokenizer)", type);
    return EB_OK;
}

/* The id of a [name, id] pair of BertProcessing. */
static eb_status processing_pair(json_object *post, const char *key, int32_t *id, eb_error *err)
{
    json_object *pair = member(post, key);
    if (pair == NULL || !json_object_is_type(pair, json_type_array) || json_object_array_length(pair) != 2 ||
        !json_object_is_type(json_object_array_get_idx(pair, 0), json_type_string))
        return eb__fail(err, EB_ERR_FORMAT, "tokenizer.json: post_processor.%s must be [token, id]", key);
    char what[48];
    snprintf(what, sizeof what, "post_processor.%s's id", key);
    return get_id(json_object_array_get_idx(pair, 1), what, id, err);
}

/* The single id of special token `name` in a TemplateProcessing's special_tokens. */
static eb_status template_special(json_object *post, const char *name, int32_t *id, eb_error *err)
{
    json_object *specials = member(post, "special_tokens");
    json_object *entry = specials != NULL && json_object_is_type(specials, json_type_object) ? member(specials, name)
                                                                                              : NULL;
    json_object *ids = entry != NULL && json_object_is_type(entry, json_type_object) ? member(entry, "ids") : NULL;
    if (ids == NULL || !json_object_is_type(ids, json_type_array) || json_object_array_length(ids) != 1)
        return eb__fail(err, EB_ERR_FORMAT,
                        "tokenizer.json: post_processor.special_tokens[\"%.40s\"] must have exactly one id", name);
    return get_id(json_object_array_get_idx(ids, 0), "a post_processor special token id", id, err);
}

/* The name of item i of the "single" template when it is a SpecialToken, "" for Sequence A, else NULL. */
static const char *template_item(json_object *single, size_t i)
{
    json_object *item = json_object_array_get_idx(single, i);
    if (item == NULL || !json_object_is_type(item, json_type_object))
        return NULL;
    json_object *special = member(item, "SpecialToken");
    json_object *sequence = member(item, "Sequence");
    json_object *name = special != NULL ? member(special, "id") : sequence != NULL ? member(sequence, "id") : NULL;
    if (name == NULL || !json_object_is_type(name, json_type_string))
        return NULL;
    if (sequence != NULL)
        return strcmp(json_object_get_string(name), "A") == 0 ? "" : NULL;
    return json_object_get_string(name);
}

static eb_status parse_post_processor(eb_wordpiece *wp, json_object *post, eb_error *err)
{
    if (post == NULL)
        return eb__fail(err, EB_ERR_FORMAT,
                        "tokenizer.json has no post_processor; a BERT tokenizer wraps texts in [CLS] and [SEP]");
    const char *type = component_type(post, "post_processor", err);
    if (type == NULL)
        return EB_ERR_FORMAT;
    if (strcmp(type, "BertProcessing") == 0) {
        eb_status status = processing_pair(post, "cls", &wp->cls_id, err);
        return status != EB_OK ? status : processing_pair(post, "sep", &wp->sep_id, err);
    }
    if (strcmp(type, "TemplateProcessing") != 0)
        return eb__fail(err, EB_ERR_FORMAT,
                        "tokenizer.json: post_processor type \"%.60s\" is not supported (BertProcessing or "
                        "TemplateProcessing)",
                        type);
    json_object *single = member(post, "single");
    const char *first = NULL, *middle = NULL, *last = NULL;
    if (single != NULL && json_object_is_type(single, json_type_array) && json_object_array_length(single) == 3) {
        first = template_item(single, 0);
        middle = template_item(single, 1);
        last = template_item(single, 2);
    }
    if (first == NULL || middle == NULL || last == NULL || first[0] == '\0' || middle[0] != '\0' || last[0] == '\0')
        return eb__fail(err, EB_ERR_FORMAT,
                        "tokenizer.json: post_processor.single must be [SpecialToken, Sequence A, SpecialToken]");
    eb_status status = template_special(post, first, &wp->cls_id, err);
    return status != EB_OK ? status : template_special(post, last, &wp->sep_id, err);
}

static eb_status parse_added_tokens(eb_wordpiece *wp, json_object *added, eb_error *err)
{
    if (added == NULL)
        return EB_OK;
    if (!json_object_is_type(added, json_type_array))
        return eb__fail(err, EB_ERR_FORMAT, "tokenizer.json: added_tokens must be an array");
    token_list list = {&wp->mem, NULL, 0, 0, NULL, 0, 0};
    eb_status status = EB_OK;
    size_t n = json_object_array_length(added);
    for (size_t i = 0; i < n && status == EB_OK; i++) {
        json_object *token = json_object_array_get_idx(added, i);
        json_object *content = token != NULL && json_object_is_type(token, json_type_object) ? member(token, "content")
                                                                                              : NULL;
        if (content == NULL || !json_object_is_type(content, json_type_string)) {
            status = eb__fail(err, EB_ERR_FORMAT, "tokenizer.json: added_tokens[%zu] has no string \"content\"", i);
            break;
        }
        int32_t id = 0;
        char what[48];
        snprintf(what, sizeof what, "added_tokens[%zu].id", i);
        if ((status = get_id(member(token, "id"), what, &id, err)) != EB_OK)
            break;
        /* Matching after normalization, or with the space around a token, is not implemented: refuse it. */
        bool special = false, normalized = false;
        char where[48];
        snprintf(where, sizeof where, "added_tokens[%zu]", i);
        if ((status = get_bool(token, where, "special", false, &special, err)) != EB_OK ||
            (status = get_bool(token, where, "normalized", !special, &normalized, err)) != EB_OK)
            break;
        if (normalized)
            status = eb__fail(err, EB_ERR_FORMAT,
                              "tokenizer.json: added token \"%.40s\" is normalized, which is not supported",
                              json_object_get_string(content));
        static const char *const flags[] = {"lstrip", "rstrip", "single_word"};
        for (size_t f = 0; f < 3 && status == EB_OK; f++) {
            bool on = false;
            if ((status = get_bool(token, where, flags[f], false, &on, err)) == EB_OK && on)
                status = eb__fail(err, EB_ERR_FORMAT,
                                  "tokenizer.json: added token \"%.40s\" has %s true, which is not supported",
                                  json_object_get_string(content), flags[f]);
        }
        if (status == EB_OK &&
            !token_list_add(&list, json_object_get_string(content), (size_t)json_object_get_string_len(content), id))
            status = eb__fail(err, EB_ERR_NOMEM, "out of memory reading the added tokens");
    }
    if (status == EB_OK)
        status = set_added_tokens(wp, &list, err);
    token_list_release(&list);
    return status;
}

eb_status eb__wordpiece_from_json(const char *data, size_t size, const eb_allocator *mem, eb_wordpiece **out,
                                  eb_error *err)
{
    eb__error_clear(err);
    if (out == NULL)
        return eb__fail(err, EB_ERR_NULL_POINTER, "out is NULL");
    *out = NULL;
    if (data == NULL && size > 0)
        return eb__fail(err, EB_ERR_NULL_POINTER, "tokenizer.json data is NULL");
    if (size > INT_MAX)
        return eb__fail(err, EB_ERR_TOO_LARGE, "tokenizer.json of %zu bytes is larger than the JSON parser takes",
                        size);
    if (mem == NULL)
        mem = eb_default_allocator();
    if (size == 0)
        return eb__fail(err, EB_ERR_FORMAT, "tokenizer.json is empty");
    size_t bad;
    if (!eb_utf8_valid(data, size, &bad))
        return eb__fail(err, EB_ERR_FORMAT, "tokenizer.json is not valid UTF-8 at byte %zu", bad);
    if (memchr(data, '\0', size) != NULL)
        return eb__fail(err, EB_ERR_FORMAT, "tokenizer.json holds a NUL byte at %zu",
                        (size_t)((const char *)memchr(data, '\0', size) - data));

    struct json_tokener *tokener = json_tokener_new_ex(64);
    if (tokener == NULL)
        return eb__fail(err, EB_ERR_NOMEM, "out of memory for the JSON parser");
    json_object *root = json_tokener_parse_ex(tokener, data, (int)size);
    enum json_tokener_error parse_error = json_tokener_get_error(tokener);
    size_t end = json_tokener_get_parse_end(tokener);
    json_tokener_free(tokener);
    if (root == NULL || parse_error != json_tokener_success) {
        json_object_put(root);
        if (parse_error == json_tokener_continue)
            return eb__fail(err, EB_ERR_FORMAT, "tokenizer.json ends early (truncated JSON)");
        return eb__fail(err, EB_ERR_FORMAT, "tokenizer.json is not valid JSON near byte %zu: %s", end,
                        json_tokener_error_desc(parse_error));
    }
    for (size_t i = end; i < size; i++) {
        if (!is_white_space((unsigned char)data[i])) {
            json_object_put(root);
            return eb__fail(err, EB_ERR_FORMAT, "tokenizer.json has data after its JSON value at byte %zu", i);
        }
    }
    if (!json_object_is_type(root, json_type_object)) {
        json_object_put(root);
        return eb__fail(err, EB_ERR_FORMAT, "tokenizer.json does not hold a JSON object");
    }

    eb_wordpiece *wp = NULL;
    eb_status status = new_tokenizer(mem, &wp, err);
    if (status == EB_OK) {
        /* No normalizer at all means none of the BERT normalization. */
        wp->clean_text = wp->handle_chinese_chars = wp->lowercase = wp->strip_accents = false;
        if ((status = parse_model(wp, member(root, "model"), err)) != EB_OK ||
            (status = parse_normalizer(wp, member(root, "normalizer"), err)) != EB_OK ||
            (status = parse_pre_tokenizer(member(root, "pre_tokenizer"), err)) != EB_OK ||
            (status = parse_post_processor(wp, member(root, "post_processor"), err)) != EB_OK ||
            (status = parse_added_tokens(wp, member(root, "added_tokens"), err)) != EB_OK) {
            eb__wordpiece_free(wp);
            wp = NULL;
        }
    }
    json_object_put(root);
    if (status != EB_OK)
        return status;
    if (wp->cls_id > wp->max_id)
        wp->max_id = wp->cls_id;
    if (wp->sep_id > wp->max_id)
        wp->max_id = wp->sep_id;
    wp->pad_id = lookup(wp, "[PAD]", 5);
    *out = wp;
    return EB_OK;
}

static bool ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

eb_status eb__wordpiece_load(const char *path, const eb_wordpiece_options *options, const eb_allocator *mem,
                             eb_wordpiece **out, eb_error *err)
{
    eb__error_clear(err);
    if (out == NULL)
        return eb__fail(err, EB_ERR_NULL_POINTER, "out is NULL");
    *out = NULL;
    if (path == NULL)
        return eb__fail(err, EB_ERR_NULL_POINTER, "path is NULL");
    if (mem == NULL)
        mem = eb_default_allocator();
    void *bytes;
    size_t size;
    eb_status status = eb__read_file(path, mem, &bytes, &size, err);
    if (status != EB_OK)
        return status;
    eb_error detail;
    if (ends_with(path, ".json"))
        status = eb__wordpiece_from_json(bytes, size, mem, out, &detail);
    else
        status = eb__wordpiece_from_vocab(bytes, size, options, mem, out, &detail);
    eb__free(mem, bytes);
    if (status != EB_OK)
        return eb__fail(err, status, "%s: %s", path, detail.message);
    return EB_OK;
}

size_t eb__wordpiece_id_bound(const eb_wordpiece *wp)
{
    return (size_t)wp->max_id + 1;
}

int32_t eb__wordpiece_token_id(const eb_wordpiece *wp, const char *token, size_t length)
{
    return lookup(wp, token, length);
}

int32_t eb__wordpiece_cls_id(const eb_wordpiece *wp)
{
    return wp->cls_id;
}

int32_t eb__wordpiece_sep_id(const eb_wordpiece *wp)
{
    return wp->sep_id;
}

int32_t eb__wordpiece_pad_id(const eb_wordpiece *wp)
{
    return wp->pad_id < 0 ? 0 : wp->pad_id;
}

/* ---- encoding ------------------------------------------------------------------------------ */

struct eb_wordpiece_scratch {
    eb_allocator mem;
    size_t capacity;  /* characters a word buffer holds: max_word_chars + 1 */
    uint32_t *chars;  /* the current word's characters */
    char *bytes;      /* prefix room, then the word as UTF-8 */
    size_t *offsets;  /* capacity + 1 byte offsets of the characters in the word's UTF-8 */
    int32_t *pieces;  /* a word's pieces before they are known to cover it */
};

eb_status eb__wordpiece_scratch_create(const eb_wordpiece *wp, const eb_allocator *mem,
                                       eb_wordpiece_scratch **out, eb_error *err)
{
    eb__error_clear(err);
    if (out == NULL)
        return eb__fail(err, EB_ERR_NULL_POINTER, "out is NULL");
    *out = NULL;
    if (wp == NULL)
        return eb__fail(err, EB_ERR_NULL_POINTER, "tokenizer is NULL");
    if (mem == NULL)
        mem = eb_default_allocator();
    eb_wordpiece_scratch *s = eb__calloc(mem, 1, sizeof *s);
    if (s == NULL)
        return eb__fail(err, EB_ERR_NOMEM, "out of memory for tokenizer scratch");
    s->mem = *mem;
    s->capacity = wp->max_word_chars + 1;
    s->chars = eb__calloc(mem, s->capacity, sizeof *s->chars);
    s->bytes = eb__calloc(mem, s->capacity * 4 + sizeof wp->prefix, 1);
    s->offsets = eb__calloc(mem, s->capacity + 1, sizeof *s->offsets);
    s->pieces = eb__calloc(mem, s->capacity, sizeof *s->pieces);
    if (s->chars == NULL || s->bytes == NULL || s->offsets == NULL || s->pieces == NULL) {
        eb__wordpiece_scratch_free(s);
        return eb__fail(err, EB_ERR_NOMEM, "out of memory for tokenizer scratch");
    }
    *out = s;
    return EB_OK;
}

void eb__wordpiece_scratch_free(eb_wordpiece_scratch *s)
{
    if (s == NULL)
        return;
    eb_allocator mem = s->mem;
    eb__free(&mem, s->chars);
    eb__free(&mem, s->bytes);
    eb__free(&mem, s->offsets);
    eb__free(&mem, s->pieces);
    eb__free(&mem, s);
}

typedef struct encode_state {
    const eb_wordpiece *wp;
    eb_wordpiece_scratch *s;
    int32_t *ids;    /* ids[1 ..] receive the tokens */
    size_t n_tokens; /* tokens so far, at most limit */
    size_t limit;
    size_t word_chars; /* characters in the current word, also those past the buffer */
    size_t run;        /* the word's trailing characters of non-zero combining class */
} encode_state;

static bool full(const encode_state *st)
{
    return st->n_tokens >= st->limit;
}

static void emit(encode_state *st, int32_t id)
{
    if (st->n_tokens < st->limit)
        st->ids[1 + st->n_tokens++] = id;
}

/* Split the current word into vocabulary pieces and emit them (or one [UNK]). */
static void finish_word(encode_state *st)
{
    const eb_wordpiece *wp = st->wp;
    eb_wordpiece_scratch *s = st->s;
    size_t n = st->word_chars;
    st->word_chars = 0;
    st->run = 0;
    if (n == 0 || full(st))
        return;
    if (n > wp->max_word_chars) {
        emit(st, wp->unk_id);
        return;
    }
    size_t p = wp->prefix_length;
    char *word = s->bytes + p; /* the prefix room stays in front */
    size_t length = 0;
    for (size_t i = 0; i < n; i++) {
        s->offsets[i] = length;
        length += eb__utf8_put(s->chars[i], word + length);
    }
    s->offsets[n] = length;

    size_t n_pieces = 0;
    size_t start = 0;
    /*
     * Nothing longer than the longest vocabulary entry can match, so each start
     * tries ends from `reach` down. reach only moves forward (but for the
     * prefix's bytes once the pieces start to carry it): linear in the word.
     */
    size_t reach = 0;
    while (start < n) {
        size_t key_extra = start > 0 ? p : 0;
        size_t budget = wp->longest_key >= key_extra ? wp->longest_key - key_extra : 0;
        if (reach < start)
            reach = start;
        while (reach > start && s->offsets[reach] - s->offsets[start] > budget)
            reach--;
        while (reach < n && s->offsets[reach + 1] - s->offsets[start] <= budget)
            reach++;
        size_t end = reach;
        if (start > 0)
            memcpy(word + s->offsets[start] - p, wp->prefix, p); /* over bytes already matched */
        const char *key = word + s->offsets[start] - key_extra;
        int32_t id = -1;
        for (; end > start; end--) {
            id = lookup(wp, key, s->offsets[end] - s->offsets[start] + key_extra);
            if (id >= 0)
                break;
        }
        if (id < 0) {
            emit(st, wp->unk_id);
            return;
        }
        s->pieces[n_pieces++] = id;
        start = end;
    }
    for (size_t i = 0; i < n_pieces; i++)
        emit(st, s->pieces[i]);
}

/*
 * Append one normalized character to the current word. With NFD, a character
 * of non-zero combining class moves before the word's trailing ones of a higher
 * class (canonical ordering); runs are short, and one longer than the buffer
 * makes the word [UNK] anyway.
 */
static void append(encode_state *st, uint32_t cp, bool reorder)
{
    if (is_white_space(cp)) {
        finish_word(st);
        return;
    }
    if (is_punct(cp)) {
        finish_word(st);
        st->s->chars[0] = cp;
        st->word_chars = 1;
        finish_word(st);
        return;
    }
    eb_wordpiece_scratch *s = st->s;
    size_t at = st->word_chars;
    unsigned ccc = reorder ? combining_class(cp) : 0;
    if (at < s->capacity) {
        if (ccc != 0) {
            size_t first = at - (st->run < at ? st->run : at);
            while (at > first && combining_class(s->chars[at - 1]) > ccc) {
                s->chars[at] = s->chars[at - 1];
                at--;
            }
        }
        s->chars[at] = cp;
    }
    st->word_chars++;
    st->run = ccc != 0 ? st->run + 1 : 0;
}

/* A nonspacing mark of class 0 that accent stripping drops still ends a run of combining marks. */
static void drop_mark(encode_state *st, uint32_t cp)
{
    if (combining_class(cp) == 0)
        st->run = 0;
}

/* Normalize one character of the cleaned text and feed what it becomes to the word. */
static void normalize_char(encode_state *st, uint32_t cp)
{
    const eb_wordpiece *wp = st->wp;
    uint32_t decomposed[8];
    size_t n = 1;
    decomposed[0] = cp;
    if (wp->strip_accents)
        n = decompose(cp, decomposed);
    for (size_t i = 0; i < n; i++) {
        uint32_t c = decomposed[i];
        if (wp->strip_accents && is_mark(c)) {
            drop_mark(st, c);
            continue;
        }
        if (wp->lowercase) {
            uint32_t lowered[2];
            size_t m = lowercase(c, lowered);
            for (size_t k = 0; k < m; k++)
                append(st, lowered[k], wp->strip_accents);
        } else {
            append(st, c, wp->strip_accents);
        }
    }
}

/* Normalize and split text[begin, end), a stretch without added tokens. */
static void encode_stretch(encode_state *st, const char *text, size_t begin, size_t end)
{
    const eb_wordpiece *wp = st->wp;
    size_t pos = begin;
    while (pos < end && !full(st)) {
        uint32_t cp = eb__utf8_next(text, &pos);
        if (wp->clean_text) {
            if (cp == 0 || is_removed(cp))
                continue;
            if (is_clean_space(cp))
                cp = ' ';
        }
        if (wp->handle_chinese_chars && is_cjk(cp)) {
            finish_word(st);
            normalize_char(st, cp);
            finish_word(st);
            continue;
        }
        normalize_char(st, cp);
    }
    finish_word(st);
}

/* The longest added token at text[pos], or NULL. */
static const added_token *added_at(const eb_wordpiece *wp, const char *text, size_t pos, size_t length)
{
    unsigned char first = (unsigned char)text[pos];
    if (!(wp->added_first_bytes[first >> 3] & (1u << (first & 7))))
        return NULL;
    for (size_t i = 0; i < wp->n_added; i++) {
        const added_token *t = &wp->added[i];
        if (t->length <= length - pos && memcmp(wp->pool + t->offset, text + pos, t->length) == 0)
            return t;
    }
    return NULL;
}

eb_status eb__wordpiece_encode(const eb_wordpiece *wp, eb_wordpiece_scratch *scratch, const char *text,
                               size_t length, size_t max_length, int32_t *ids, uint8_t *mask, size_t *n_ids,
                               eb_error *err)
{
    eb__error_clear(err);
    if (wp == NULL || scratch == NULL || ids == NULL || n_ids == NULL || (text == NULL && length > 0))
        return eb__fail(err, EB_ERR_NULL_POINTER, "%s is NULL",
                        wp == NULL ? "tokenizer" : scratch == NULL ? "scratch" : ids == NULL ? "ids"
                        : n_ids == NULL ? "n_ids" : "text");
    *n_ids = 0;
    if (max_length < 2)
        return eb__fail(err, EB_ERR_INVALID_PARAM, "max_length is %zu; it must leave room for [CLS] and [SEP] (>= 2)",
                        max_length);
    if (scratch->capacity != wp->max_word_chars + 1)
        return eb__fail(err, EB_ERR_INVALID_PARAM, "scratch was made for another tokenizer");
    size_t bad;
    if (!eb_utf8_valid(text, length, &bad))
        return eb__fail(err, EB_ERR_INVALID_UTF8, "text is not valid UTF-8 at byte %zu", bad);

    encode_state st = {wp, scratch, ids, 0, max_length - 2, 0, 0};
    size_t begin = 0;
    if (wp->n_added > 0) {
        for (size_t pos = 0; pos < length && !full(&st);) {
            const added_token *t = added_at(wp, text, pos, length);
            if (t == NULL) {
                pos++;
                continue;
            }
            encode_stretch(&st, text, begin, pos);
            emit(&st, t->id);
            pos += t->length;
            begin = pos;
        }
    }
    if (begin < length)
        encode_stretch(&st, text, begin, length);
    ids[0] = wp->cls_id;
    ids[st.n_tokens + 1] = wp->sep_id;
    *n_ids = st.n_tokens + 2;
    if (mask != NULL) {
        for (size_t i = 0; i < max_length; i++)
            mask[i] = i < *n_ids;
    }
    return EB_OK;
}
