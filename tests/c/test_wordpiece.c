#define _POSIX_C_SOURCE 200809L
/*
 * The WordPiece tokenizer (src/wordpiece.c): token ids equal to Hugging Face
 * `tokenizers`' for every text of tests/fixtures/tokenizer/reference.bin.gz
 * (the fortunes corpus, hand-picked multilingual and odd texts, and a sweep
 * over the code points) under three configurations, each loaded both from
 * tokenizer.json and from vocab.txt; then each rule on small texts, malformed
 * vocabularies, allocation failures and concurrent use.
 *
 * all-MiniLM-L6-v2's files come from scripts/fetch-models.sh; CMake compiles
 * in the model cache (EB_MODEL_CACHE_DIR, overridden by the LIBEMBETTER_MODEL_CACHE
 * environment variable) and the fixture directory. Without the model files the
 * test fails, naming the missing file and the command that fetches it.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>

#include "helpers.h"
#include "wordpiece.h"

/* ---- the reference fixture ------------------------------------------------------------------ */

typedef struct reference_config {
    char name[32];
    size_t max_length;
    uint16_t **ids; /* per text */
    uint16_t *n_ids;
} reference_config;

typedef struct reference {
    size_t n_texts;
    char **texts;
    size_t *lengths;
    size_t n_configs;
    reference_config configs[8];
} reference;

static reference *fixture;

/* LIBEMBETTER_MODEL_CACHE when set (as for scripts/fetch-models.sh), else the cache CMake compiled in. */
static const char *model_cache(void)
{
    const char *dir = getenv("LIBEMBETTER_MODEL_CACHE");
    return dir != NULL && dir[0] != '\0' ? dir : EB_MODEL_CACHE_DIR;
}

static void read_exact(gzFile f, void *out, size_t n, const char *path)
{
    if (n == 0)
        return;
    int got = gzread(f, out, (unsigned)n);
    if (got < 0 || (size_t)got != n)
        fail_msg("%s ends early or is damaged; regenerate it with scripts/make_tokenizer_fixtures.py", path);
}

static uint32_t read_u32(gzFile f, const char *path)
{
    uint8_t b[4];
    read_exact(f, b, 4, path);
    return (uint32_t)b[0] | ((uint32_t)b[1] << 8) | ((uint32_t)b[2] << 16) | ((uint32_t)b[3] << 24);
}

static uint16_t read_u16(gzFile f, const char *path)
{
    uint8_t b[2];
    read_exact(f, b, 2, path);
    return (uint16_t)(b[0] | (b[1] << 8));
}

static void *checked_calloc(size_t n, size_t size)
{
    void *p = calloc(n == 0 ? 1 : n, size == 0 ? 1 : size);
    if (p == NULL)
        fail_msg("out of memory reading the fixture");
    return p;
}

static reference *load_reference(void)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/reference.bin.gz", EB_TOKENIZER_FIXTURE_DIR);
    gzFile f = gzopen(path, "rb");
    if (f == NULL)
        fail_msg("cannot open %s", path);
    char magic[8];
    read_exact(f, magic, 8, path);
    if (memcmp(magic, "EBWPFIX1", 8) != 0)
        fail_msg("%s is not a tokenizer fixture", path);
    reference *r = checked_calloc(1, sizeof *r);
    r->n_texts = read_u32(f, path);
    r->texts = checked_calloc(r->n_texts, sizeof *r->texts);
    r->lengths = checked_calloc(r->n_texts, sizeof *r->lengths);
    for (size_t i = 0; i < r->n_texts; i++) {
        r->lengths[i] = read_u32(f, path);
        r->texts[i] = checked_calloc(r->lengths[i] + 1, 1);
        read_exact(f, r->texts[i], r->lengths[i], path);
    }
    r->n_configs = read_u32(f, path);
    if (r->n_configs > 8)
        fail_msg("%s lists %zu configurations; at most 8 expected", path, r->n_configs);
    for (size_t c = 0; c < r->n_configs; c++) {
        reference_config *cfg = &r->configs[c];
        uint8_t name_length;
        read_exact(f, &name_length, 1, path);
        if (name_length >= sizeof cfg->name)
            fail_msg("%s: configuration name too long", path);
        read_exact(f, cfg->name, name_length, path);
        cfg->max_length = read_u32(f, path);
        cfg->ids = checked_calloc(r->n_texts, sizeof *cfg->ids);
        cfg->n_ids = checked_calloc(r->n_texts, sizeof *cfg->n_ids);
        for (size_t i = 0; i < r->n_texts; i++) {
            cfg->n_ids[i] = read_u16(f, path);
            cfg->ids[i] = checked_calloc(cfg->n_ids[i], sizeof **cfg->ids);
            for (size_t k = 0; k < cfg->n_ids[i]; k++)
                cfg->ids[i][k] = read_u16(f, path);
        }
    }
    gzclose(f);
    return r;
}

static int setup_reference(void **state)
{
    (void)state;
    if (fixture == NULL)
        fixture = load_reference();
    return 0;
}

static const reference_config *config_named(const char *name)
{
    for (size_t c = 0; c < fixture->n_configs; c++) {
        if (strcmp(fixture->configs[c].name, name) == 0)
            return &fixture->configs[c];
    }
    fail_msg("the fixture has no configuration %s; regenerate it with scripts/make_tokenizer_fixtures.py", name);
    return NULL;
}

/* Where a model file is, failing with the command that fetches it when it is not there. */
static void model_file(const char *model, const char *file, char *path, size_t size)
{
    const char *cache = model_cache();
    snprintf(path, size, "%s/%s/%s", cache, model, file);
    struct stat info;
    if (stat(path, &info) != 0)
        fail_msg("model file %s is missing; fetch it with: LIBEMBETTER_MODEL_CACHE=%s scripts/fetch-models.sh %s", path,
                 cache, model);
}

static void fixture_file(const char *file, char *path, size_t size)
{
    snprintf(path, size, "%s/%s", EB_TOKENIZER_FIXTURE_DIR, file);
}

static eb_wordpiece *load_or_fail(const char *path, const eb_wordpiece_options *options)
{
    eb_wordpiece *wp = NULL;
    eb_error err;
    eb_status status = eb__wordpiece_load(path, options, NULL, &wp, &err);
    if (status != EB_OK)
        fail_msg("loading %s: %s: %s", path, eb_status_string(status), err.message);
    return wp;
}

/* Every fixture text through wp, compared id by id with the configuration's reference. */
static void check_against(eb_wordpiece *wp, const char *config_name, const char *source)
{
    const reference_config *cfg = config_named(config_name);
    eb_wordpiece_scratch *scratch = NULL;
    eb_error err;
    assert_int_equal(eb__wordpiece_scratch_create(wp, NULL, &scratch, &err), EB_OK);
    int32_t *ids = checked_calloc(cfg->max_length, sizeof *ids);
    size_t total = 0;
    for (size_t i = 0; i < fixture->n_texts; i++) {
        size_t n = 0;
        eb_status status = eb__wordpiece_encode(wp, scratch, fixture->texts[i], fixture->lengths[i], cfg->max_length,
                                                ids, NULL, &n, &err);
        if (status != EB_OK)
            fail_msg("%s (%s), text %zu: %s: %s", config_name, source, i, eb_status_string(status), err.message);
        size_t common = n < cfg->n_ids[i] ? n : cfg->n_ids[i];
        for (size_t k = 0; k <= common; k++) {
            bool differs = k < common ? ids[k] != (int32_t)cfg->ids[i][k] : n != cfg->n_ids[i];
            if (differs) {
                fail_msg("%s (%s), text %zu \"%.80s\": first difference at position %zu: expected %d, got %d "
                         "(%u ids expected, %zu got)",
                         config_name, source, i, fixture->texts[i], k,
                         k < cfg->n_ids[i] ? (int)cfg->ids[i][k] : -1, k < n ? (int)ids[k] : -1,
                         (unsigned)cfg->n_ids[i], n);
            }
        }
        total += n;
    }
    /* The comparison covered real work, not a corpus of empty encodings. */
    assert_true(fixture->n_texts > 5000);
    assert_true(total > 10 * fixture->n_texts);
    free(ids);
    eb__wordpiece_scratch_free(scratch);
}

static void test_minilm_tokenizer_json_matches_reference(void **state)
{
    (void)state;
    char path[4096];
    model_file("all-MiniLM-L6-v2", "tokenizer.json", path, sizeof path);
    eb_wordpiece *wp = load_or_fail(path, NULL);
    assert_int_equal(eb__wordpiece_id_bound(wp), 30522);
    assert_int_equal(eb__wordpiece_cls_id(wp), 101);
    assert_int_equal(eb__wordpiece_sep_id(wp), 102);
    assert_int_equal(eb__wordpiece_pad_id(wp), 0);
    check_against(wp, "minilm", "tokenizer.json");
    eb__wordpiece_free(wp);
}

static void test_minilm_vocab_txt_matches_reference(void **state)
{
    (void)state;
    char path[4096];
    model_file("all-MiniLM-L6-v2", "vocab.txt", path, sizeof path);
    eb_wordpiece *wp = load_or_fail(path, NULL); /* BertTokenizerFast's defaults: uncased */
    check_against(wp, "minilm", "vocab.txt");
    eb__wordpiece_free(wp);
}

static void test_cased_matches_reference(void **state)
{
    (void)state;
    char path[4096];
    fixture_file("cased-tokenizer.json", path, sizeof path);
    eb_wordpiece *wp = load_or_fail(path, NULL);
    check_against(wp, "cased", "tokenizer.json");
    eb__wordpiece_free(wp);

    fixture_file("cased-vocab.txt", path, sizeof path);
    eb_wordpiece_options options = {true, true, false, 0};
    wp = load_or_fail(path, &options);
    check_against(wp, "cased", "vocab.txt");
    eb__wordpiece_free(wp);
}

static void test_variant_matches_reference(void **state)
{
    (void)state;
    char path[4096];
    fixture_file("variant-tokenizer.json", path, sizeof path);
    eb_wordpiece *wp = load_or_fail(path, NULL);
    check_against(wp, "variant", "tokenizer.json");
    eb__wordpiece_free(wp);

    fixture_file("cased-vocab.txt", path, sizeof path);
    eb_wordpiece_options options = {false, false, true, 0};
    wp = load_or_fail(path, &options);
    check_against(wp, "variant", "vocab.txt");
    eb__wordpiece_free(wp);
}

/* ---- the rules on a small vocabulary ---------------------------------------------------------- */

static const char *const small_vocab[] = {
    "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "hello", "world", "##s", "un", "##aff", "##able", ",", "!",
    "中", "文", "cafe", "naive", "a", "##a", "x", "y", "##y", ".", "-", "¿", "«", "e", "é", "Hello", "ab", "##b",
    "b", "aa", "##aa", "«x", "ı", "i", "σ", "ς", "\xcc\x81",
};
enum { SMALL_VOCAB_SIZE = sizeof small_vocab / sizeof small_vocab[0] };

static char *small_vocab_txt(void)
{
    size_t length = 0;
    for (size_t i = 0; i < SMALL_VOCAB_SIZE; i++)
        length += strlen(small_vocab[i]) + 1;
    char *text = checked_calloc(length + 1, 1);
    for (size_t i = 0; i < SMALL_VOCAB_SIZE; i++) {
        strcat(text, small_vocab[i]);
        strcat(text, "\n");
    }
    return text;
}

static eb_wordpiece *small_tokenizer(const eb_wordpiece_options *options)
{
    char *text = small_vocab_txt();
    eb_wordpiece *wp = NULL;
    eb_error err;
    eb_status status = eb__wordpiece_from_vocab(text, strlen(text), options, NULL, &wp, &err);
    if (status != EB_OK)
        fail_msg("small vocabulary: %s", err.message);
    free(text);
    return wp;
}

static void expect_ids_v(eb_wordpiece *wp, const char *text, size_t length, size_t max_length, size_t n_expected,
                         const int32_t *expected)
{
    eb_wordpiece_scratch *scratch = NULL;
    eb_error err;
    assert_int_equal(eb__wordpiece_scratch_create(wp, NULL, &scratch, &err), EB_OK);
    int32_t ids[512];
    uint8_t mask[512];
    size_t n = 0;
    assert_true(max_length <= 512);
    eb_status status = eb__wordpiece_encode(wp, scratch, text, length, max_length, ids, mask, &n, &err);
    if (status != EB_OK)
        fail_msg("\"%s\": %s", text, err.message);
    if (n != n_expected)
        fail_msg("\"%s\": %zu ids, expected %zu", text, n, n_expected);
    for (size_t i = 0; i < n; i++) {
        if (ids[i] != expected[i])
            fail_msg("\"%s\": position %zu is %d (%s), expected %d (%s)", text, i, ids[i],
                     ids[i] >= 0 && ids[i] < SMALL_VOCAB_SIZE ? small_vocab[ids[i]] : "?", expected[i],
                     expected[i] < SMALL_VOCAB_SIZE ? small_vocab[expected[i]] : "?");
    }
    for (size_t i = 0; i < max_length; i++)
        assert_int_equal(mask[i], i < n ? 1 : 0);
    eb__wordpiece_scratch_free(scratch);
}

#define EXPECT(wp, text, ...)                                                                              \
    do {                                                                                                   \
        static const int32_t expected_[] = {__VA_ARGS__};                                                  \
        expect_ids_v(wp, text, strlen(text), 512, sizeof expected_ / sizeof expected_[0], expected_);      \
    } while (0)

enum { PAD, UNK, CLS, SEP, MASK, HELLO, WORLD, S_, UN, AFF_, ABLE_, COMMA, BANG, ZHONG, WEN, CAFE, NAIVE, A,
       A_, X, Y, Y_, DOT, DASH, INV_Q, GUILLEMET, E, E_ACUTE, HELLO_CASED, AB, B_, B, AA, AA_, GUILLEMET_X,
       DOTLESS_I, I, SIGMA, FINAL_SIGMA, ACUTE };

static void test_greedy_longest_match(void **state)
{
    (void)state;
    eb_wordpiece *wp = small_tokenizer(NULL);
    EXPECT(wp, "hello worlds", CLS, HELLO, WORLD, S_, SEP);
    EXPECT(wp, "unaffable", CLS, UN, AFF_, ABLE_, SEP);
    /* Longest first: "aa" before "a", then "##aa" before "##a". */
    EXPECT(wp, "aaaaa", CLS, AA, AA_, A_, SEP);
    EXPECT(wp, "ab", CLS, AB, SEP);
    /* A rest that matches nothing makes the whole word one [UNK], dropping the pieces found. */
    EXPECT(wp, "helloz hello", CLS, UNK, HELLO, SEP);
    EXPECT(wp, "", CLS, SEP);
    eb__wordpiece_free(wp);
}

static void test_cleaning(void **state)
{
    (void)state;
    eb_wordpiece *wp = small_tokenizer(NULL);
    /* Control characters, format characters, U+FFFD and private use vanish, joining what they separated. */
    EXPECT(wp, "hel\x01lo wor\xe2\x80\x8bld\xef\xbf\xbd \xee\x80\x80x", CLS, HELLO, WORLD, X, SEP);
    static const char with_nul[] = "hel\0lo";
    static const int32_t hello_only[] = {CLS, HELLO, SEP};
    expect_ids_v(wp, with_nul, sizeof with_nul - 1, 512, 3, hello_only);
    /* Every kind of white space separates words; vertical tab and form feed are controls (removed). */
    EXPECT(wp, "hello\tworld\nx\r\xc2\xa0y\xe3\x80\x80hello", CLS, HELLO, WORLD, X, Y, HELLO, SEP);
    EXPECT(wp, "x\x0by x\x0cy", CLS, X, Y_, X, Y_, SEP);
    /* Nothing left after cleaning: only [CLS] [SEP]. */
    EXPECT(wp, "\x01\x02 \xe2\x80\x8b\t ", CLS, SEP);
    eb__wordpiece_free(wp);
}

static void test_chinese_characters_split(void **state)
{
    (void)state;
    eb_wordpiece *wp = small_tokenizer(NULL);
    EXPECT(wp, "x中文y", CLS, X, ZHONG, WEN, Y, SEP);
    eb__wordpiece_free(wp);
    eb_wordpiece_options options = eb__wordpiece_default_options();
    options.handle_chinese_chars = false;
    wp = small_tokenizer(&options);
    EXPECT(wp, "x中文y", CLS, UNK, SEP);
    EXPECT(wp, "中", CLS, ZHONG, SEP);
    eb__wordpiece_free(wp);
}

static void test_lowercase_and_accents(void **state)
{
    (void)state;
    eb_wordpiece *wp = small_tokenizer(NULL);
    /* NFD, nonspacing marks dropped, lowercased: precomposed and combining forms agree. */
    EXPECT(wp, "Café NAÏVE cafe\xcc\x81", CLS, CAFE, NAIVE, CAFE, SEP);
    EXPECT(wp, "HELLO", CLS, HELLO, SEP);
    /* One character at a time: final sigma stays sigma. */
    EXPECT(wp, "Σ ς", CLS, SIGMA, FINAL_SIGMA, SEP);
    eb__wordpiece_free(wp);

    eb_wordpiece_options cased = {true, true, false, 0};
    wp = small_tokenizer(&cased);
    EXPECT(wp, "Hello hello HELLO", CLS, HELLO_CASED, HELLO, UNK, SEP);
    /* Without NFD a combining accent is a character of its word: "e" + "##\u0301" is not in the vocabulary. */
    EXPECT(wp, "é e\xcc\x81 \xcc\x81", CLS, E_ACUTE, UNK, ACUTE, SEP);
    eb__wordpiece_free(wp);

    /* Lowercase without stripping: the accent stays. */
    eb_wordpiece_options keep_accents = {true, true, true, 0};
    wp = small_tokenizer(&keep_accents);
    EXPECT(wp, "É", CLS, E_ACUTE, SEP);
    eb__wordpiece_free(wp);
}

static void test_punctuation_split(void **state)
{
    (void)state;
    eb_wordpiece *wp = small_tokenizer(NULL);
    EXPECT(wp, "hello,world!", CLS, HELLO, COMMA, WORLD, BANG, SEP);
    EXPECT(wp, "x-y.x", CLS, X, DASH, Y, DOT, X, SEP);
    /* Unicode punctuation (Po, Pi) is split too, so "«x" as one vocabulary entry never matches. */
    EXPECT(wp, "¿x «x", CLS, INV_Q, X, GUILLEMET, X, SEP);
    /* '$' is ASCII punctuation by BERT's rule though Unicode calls it a symbol. */
    EXPECT(wp, "x$y", CLS, X, UNK, Y, SEP);
    eb__wordpiece_free(wp);
}

static void test_added_tokens_in_text(void **state)
{
    (void)state;
    eb_wordpiece *wp = small_tokenizer(NULL);
    EXPECT(wp, "hello [MASK] world[SEP]x", CLS, HELLO, MASK, WORLD, SEP, X, SEP);
    /* Matched as written, before lowercasing. */
    EXPECT(wp, "[mask]", CLS, UNK, UNK, UNK, SEP);
    eb__wordpiece_free(wp);
}

static void test_unk_over_max_word_chars(void **state)
{
    (void)state;
    eb_wordpiece *wp = small_tokenizer(NULL);
    char word[260];
    memset(word, 'a', 100);
    word[100] = '\0';
    /* 100 characters: split as usual ("aa" then 49 "##aa"). */
    eb_wordpiece_scratch *scratch = NULL;
    eb_error err;
    assert_int_equal(eb__wordpiece_scratch_create(wp, NULL, &scratch, &err), EB_OK);
    int32_t ids[64];
    size_t n = 0;
    assert_int_equal(eb__wordpiece_encode(wp, scratch, word, 100, 64, ids, NULL, &n, &err), EB_OK);
    assert_int_equal(n, 52);
    assert_int_equal(ids[1], AA);
    assert_int_equal(ids[50], AA_);
    /* 101 characters: one [UNK]. */
    word[100] = 'a';
    assert_int_equal(eb__wordpiece_encode(wp, scratch, word, 101, 64, ids, NULL, &n, &err), EB_OK);
    assert_int_equal(n, 3);
    assert_int_equal(ids[1], UNK);
    /* The limit counts characters, not bytes: 100 two-byte letters still split. */
    for (size_t i = 0; i < 100; i++)
        memcpy(word + 2 * i, "\xc3\xa9", 2); /* é, which becomes "e" after stripping */
    EXPECT(wp, "x", CLS, X, SEP);
    assert_int_equal(eb__wordpiece_encode(wp, scratch, word, 200, 64, ids, NULL, &n, &err), EB_OK);
    assert_int_equal(n, 3);
    assert_int_equal(ids[1], UNK); /* "e" then "##e", which is not in the vocabulary */
    eb__wordpiece_scratch_free(scratch);
    eb__wordpiece_free(wp);
}

static void test_truncation(void **state)
{
    (void)state;
    eb_wordpiece *wp = small_tokenizer(NULL);
    static const int32_t cut[] = {CLS, HELLO, WORLD, SEP};
    expect_ids_v(wp, "hello world hello world", 23, 4, 4, cut);
    static const int32_t cut_inside_word[] = {CLS, UN, AFF_, SEP};
    expect_ids_v(wp, "unaffable", 9, 4, 4, cut_inside_word);
    static const int32_t only_specials[] = {CLS, SEP};
    expect_ids_v(wp, "hello", 5, 2, 2, only_specials);

    /* A text of many megabytes costs only its kept part: the output is the first 254 tokens. */
    size_t length = 8u << 20;
    char *big = checked_calloc(length + 1, 1);
    for (size_t i = 0; i < length; i += 6)
        memcpy(big + i, i + 6 <= length ? "hello " : "      ", i + 6 <= length ? 6 : length - i);
    eb_wordpiece_scratch *scratch = NULL;
    eb_error err;
    assert_int_equal(eb__wordpiece_scratch_create(wp, NULL, &scratch, &err), EB_OK);
    int32_t ids[256];
    size_t n = 0;
    assert_int_equal(eb__wordpiece_encode(wp, scratch, big, length, 256, ids, NULL, &n, &err), EB_OK);
    assert_int_equal(n, 256);
    assert_int_equal(ids[254], HELLO);
    assert_int_equal(ids[255], SEP);
    assert_int_equal(eb__wordpiece_encode(wp, scratch, big, length, 1, ids, NULL, &n, &err), EB_ERR_INVALID_PARAM);
    assert_non_null(strstr(err.message, "max_length"));
    big[5] = (char)0xff;
    assert_int_equal(eb__wordpiece_encode(wp, scratch, big, length, 256, ids, NULL, &n, &err), EB_ERR_INVALID_UTF8);
    assert_non_null(strstr(err.message, "byte 5"));
    free(big);
    eb__wordpiece_scratch_free(scratch);
    eb__wordpiece_free(wp);
}

/* ---- malformed files ----------------------------------------------------------------------------- */

static void expect_vocab_error(const char *text, size_t length, const char *needle)
{
    eb_wordpiece *wp = (eb_wordpiece *)&wp;
    eb_error err;
    eb_status status = eb__wordpiece_from_vocab(text, length, NULL, NULL, &wp, &err);
    assert_int_equal(status, EB_ERR_FORMAT);
    assert_null(wp);
    if (strstr(err.message, needle) == NULL)
        fail_msg("message \"%s\" does not mention \"%s\"", err.message, needle);
}

static void test_bad_vocab_txt(void **state)
{
    (void)state;
    expect_vocab_error("", 0, "no tokens");
    expect_vocab_error("[UNK]\n[CLS]\nhello\n", 18, "[SEP]");
    expect_vocab_error("[CLS]\n[SEP]\n", 12, "[UNK]");
    expect_vocab_error("\n\n\n", 3, "[UNK]"); /* only empty tokens */
    expect_vocab_error("[UNK]\n[CLS]\n[SEP]\nbad\xff\n", 22, "line 4");

    /* Trailing white space and CRLF line ends are dropped, as tokenizers reads vocab.txt. */
    static const char crlf[] = "[UNK]\r\n[CLS]  \r\n[SEP]\t\nhello\xe3\x80\x80\n";
    eb_wordpiece *wp = NULL;
    eb_error err;
    assert_int_equal(eb__wordpiece_from_vocab(crlf, sizeof crlf - 1, NULL, NULL, &wp, &err), EB_OK);
    assert_int_equal(eb__wordpiece_token_id(wp, "hello", 5), 3);
    assert_int_equal(eb__wordpiece_cls_id(wp), 1);
    assert_int_equal(eb__wordpiece_id_bound(wp), 4);
    eb__wordpiece_free(wp);

    eb_wordpiece_options bad = {true, true, true, 7};
    assert_int_equal(eb__wordpiece_from_vocab(crlf, sizeof crlf - 1, &bad, NULL, &wp, &err), EB_ERR_INVALID_PARAM);
    assert_non_null(strstr(err.message, "strip_accents"));

    assert_int_equal(eb__wordpiece_load("/nonexistent/vocab.txt", NULL, NULL, &wp, &err), EB_ERR_IO);
    assert_non_null(strstr(err.message, "/nonexistent/vocab.txt"));
}

#define JSON_MODEL \
    "\"model\": {\"type\": \"WordPiece\", \"unk_token\": \"[UNK]\", \"continuing_subword_prefix\": \"##\"," \
    " \"max_input_chars_per_word\": 100, \"vocab\": {\"[UNK]\": 0, \"[CLS]\": 1, \"[SEP]\": 2, \"hi\": 3, \"##s\": 4}}"
#define JSON_NORMALIZER \
    "\"normalizer\": {\"type\": \"BertNormalizer\", \"clean_text\": true, \"handle_chinese_chars\": true," \
    " \"strip_accents\": null, \"lowercase\": true}"
#define JSON_PRE "\"pre_tokenizer\": {\"type\": \"BertPreTokenizer\"}"
#define JSON_POST \
    "\"post_processor\": {\"type\": \"BertProcessing\", \"sep\": [\"[SEP]\", 2], \"cls\": [\"[CLS]\", 1]}"
#define JSON_ADDED \
    "\"added_tokens\": [{\"id\": 1, \"content\": \"[CLS]\", \"single_word\": false, \"lstrip\": false," \
    " \"rstrip\": false, \"normalized\": false, \"special\": true}]"

static const char good_json[] = "{" JSON_ADDED ", " JSON_NORMALIZER ", " JSON_PRE ", " JSON_POST ", " JSON_MODEL "}";

static void expect_json_error(const char *text, const char *needle)
{
    eb_wordpiece *wp = (eb_wordpiece *)&wp;
    eb_error err;
    eb_status status = eb__wordpiece_from_json(text, strlen(text), NULL, &wp, &err);
    if (status != EB_ERR_FORMAT)
        fail_msg("%s: status %s, expected EB_ERR_FORMAT (%s)", text, eb_status_string(status), err.message);
    assert_null(wp);
    if (strstr(err.message, needle) == NULL)
        fail_msg("message \"%s\" does not mention \"%s\"", err.message, needle);
}

static void test_tokenizer_json(void **state)
{
    (void)state;
    eb_wordpiece *wp = NULL;
    eb_error err;
    assert_int_equal(eb__wordpiece_from_json(good_json, strlen(good_json), NULL, &wp, &err), EB_OK);
    static const int32_t his[] = {1, 3, 4, 0, 1, 2};
    expect_ids_v(wp, "HIs there[CLS]", 14, 16, 6, his);
    eb__wordpiece_free(wp);

    expect_json_error("", "empty");
    expect_json_error("{\"model\": ", "ends early");
    expect_json_error("{\"model\": }", "not valid JSON");
    expect_json_error("[1, 2]", "object");
    expect_json_error("{} x", "after its JSON value");
    expect_json_error("{" JSON_NORMALIZER "}", "no \"model\"");
    expect_json_error("{\"model\": {\"type\": \"BPE\", \"vocab\": {}, \"merges\": []}}", "model type \"BPE\"");
    expect_json_error("{\"model\": {\"type\": \"Unigram\", \"vocab\": []}}", "model type \"Unigram\"");
    expect_json_error("{\"model\": {\"vocab\": {}}}", "\"type\"");
    expect_json_error("{\"model\": {\"type\": \"WordPiece\", \"vocab\": {}}}", "model.vocab is empty");
    expect_json_error("{\"model\": {\"type\": \"WordPiece\", \"vocab\": {\"a\": -1}}}", "model.vocab[\"a\"]");
    expect_json_error("{\"model\": {\"type\": \"WordPiece\", \"vocab\": {\"a\": 0}}}", "unk_token \"[UNK]\"");
    expect_json_error("{\"model\": {\"type\": \"WordPiece\", \"max_input_chars_per_word\": 99999999, "
                      "\"vocab\": {\"[UNK]\": 0}}}",
                      "max_input_chars_per_word");
    expect_json_error("{" JSON_MODEL ", \"normalizer\": {\"type\": \"Sequence\", \"normalizers\": []}}",
                      "normalizer type \"Sequence\"");
    expect_json_error("{" JSON_MODEL ", \"normalizer\": {\"type\": \"BertNormalizer\", \"lowercase\": 1}}",
                      "normalizer.lowercase");
    expect_json_error("{" JSON_MODEL ", " JSON_NORMALIZER "}", "no pre_tokenizer");
    expect_json_error("{" JSON_MODEL ", \"pre_tokenizer\": {\"type\": \"Metaspace\"}}", "pre_tokenizer type \"Metaspace\"");
    expect_json_error("{" JSON_MODEL ", " JSON_PRE "}", "no post_processor");
    expect_json_error("{" JSON_MODEL ", " JSON_PRE ", \"post_processor\": {\"type\": \"RobertaProcessing\"}}",
                      "post_processor type \"RobertaProcessing\"");
    expect_json_error("{" JSON_MODEL ", " JSON_PRE ", \"post_processor\": {\"type\": \"BertProcessing\", "
                      "\"sep\": [\"[SEP]\"], \"cls\": [\"[CLS]\", 1]}}",
                      "post_processor.sep");
    expect_json_error("{" JSON_MODEL ", " JSON_PRE ", \"post_processor\": {\"type\": \"TemplateProcessing\", "
                      "\"single\": [{\"Sequence\": {\"id\": \"A\", \"type_id\": 0}}], \"special_tokens\": {}}}",
                      "post_processor.single");
    expect_json_error("{" JSON_MODEL ", " JSON_PRE ", " JSON_POST ", \"added_tokens\": [{\"id\": 5, "
                      "\"content\": \"<x>\", \"normalized\": true, \"special\": false}]}",
                      "\"<x>\" is normalized");
    expect_json_error("{" JSON_MODEL ", " JSON_PRE ", " JSON_POST ", \"added_tokens\": [{\"id\": 5, "
                      "\"content\": \"<x>\", \"normalized\": false, \"lstrip\": true, \"special\": true}]}",
                      "lstrip");
    expect_json_error("{\"model\": {\"type\": \"WordPiece\", \"vocab\": {\"[UNK]\": 0}}, \"x\": \"\xff\"}", "UTF-8");

    /* A TemplateProcessing post-processor as tokenizers writes it, with its own special token names. */
    static const char template_json[] =
        "{\"model\": {\"type\": \"WordPiece\", \"vocab\": {\"[UNK]\": 0, \"<s>\": 7, \"</s>\": 8, \"hi\": 3}}, "
        JSON_PRE ", \"post_processor\": {\"type\": \"TemplateProcessing\", \"single\": ["
        "{\"SpecialToken\": {\"id\": \"<s>\", \"type_id\": 0}}, {\"Sequence\": {\"id\": \"A\", \"type_id\": 0}}, "
        "{\"SpecialToken\": {\"id\": \"</s>\", \"type_id\": 0}}], \"special_tokens\": {"
        "\"<s>\": {\"id\": \"<s>\", \"ids\": [7], \"tokens\": [\"<s>\"]}, "
        "\"</s>\": {\"id\": \"</s>\", \"ids\": [8], \"tokens\": [\"</s>\"]}}}}";
    assert_int_equal(eb__wordpiece_from_json(template_json, strlen(template_json), NULL, &wp, &err), EB_OK);
    /* No normalizer: nothing is lowercased. */
    static const int32_t template_ids[] = {7, 3, 0, 8};
    expect_ids_v(wp, "hi HI", 5, 16, 4, template_ids);
    assert_int_equal(eb__wordpiece_id_bound(wp), 9);
    eb__wordpiece_free(wp);
}

/* ---- allocation failure and threads ------------------------------------------------------------- */

static void test_allocation_failure(void **state)
{
    (void)state;
    char *vocab = small_vocab_txt();
    counting_allocator counter;
    eb_allocator mem = counting_allocator_init(&counter);
    for (int kind = 0; kind < 3; kind++) {
        counting_allocator_arm(&counter, SIZE_MAX);
        eb_wordpiece *wp = NULL;
        eb_wordpiece_scratch *scratch = NULL;
        eb_error err;
        eb_status status;
        if (kind == 0)
            status = eb__wordpiece_from_vocab(vocab, strlen(vocab), NULL, &mem, &wp, &err);
        else
            status = eb__wordpiece_from_json(good_json, strlen(good_json), &mem, &wp, &err);
        assert_int_equal(status, EB_OK);
        if (kind == 2)
            assert_int_equal(eb__wordpiece_scratch_create(wp, &mem, &scratch, &err), EB_OK);
        size_t allocations = counter.attempts;
        assert_true(allocations >= 3);
        eb__wordpiece_scratch_free(scratch);
        eb__wordpiece_free(wp);
        assert_int_equal(counter.live_blocks, 0);
        for (size_t fail_at = 0; fail_at < allocations; fail_at++) {
            counting_allocator_arm(&counter, fail_at);
            wp = (eb_wordpiece *)&wp;
            if (kind == 0)
                status = eb__wordpiece_from_vocab(vocab, strlen(vocab), NULL, &mem, &wp, &err);
            else
                status = eb__wordpiece_from_json(good_json, strlen(good_json), &mem, &wp, &err);
            if (kind == 2 && status == EB_OK) {
                scratch = (eb_wordpiece_scratch *)&scratch;
                assert_int_equal(eb__wordpiece_scratch_create(wp, &mem, &scratch, &err), EB_ERR_NOMEM);
                assert_null(scratch);
                eb__wordpiece_free(wp);
            } else {
                assert_int_equal(status, EB_ERR_NOMEM);
                assert_null(wp);
            }
            assert_non_null(strstr(err.message, "out of memory"));
            assert_int_equal(counter.live_blocks, 0);
        }
    }
    free(vocab);
}

typedef struct thread_job {
    const eb_wordpiece *wp;
    const char *text;
    size_t length;
    int32_t ids[128];
    size_t n;
    eb_status status;
} thread_job;

static void *run_job(void *arg)
{
    thread_job *job = arg;
    eb_wordpiece_scratch *scratch = NULL;
    eb_error err;
    job->status = eb__wordpiece_scratch_create(job->wp, NULL, &scratch, &err);
    for (int repeat = 0; repeat < 200 && job->status == EB_OK; repeat++)
        job->status = eb__wordpiece_encode(job->wp, scratch, job->text, job->length, 128, job->ids, NULL, &job->n,
                                           &err);
    eb__wordpiece_scratch_free(scratch);
    return NULL;
}

static void test_threads_share_a_tokenizer(void **state)
{
    (void)state;
    eb_wordpiece *wp = small_tokenizer(NULL);
    static const char *const texts[] = {"hello, worlds! unaffable", "Café [MASK] 中文 naive", "aaaaa ab x-y"};
    thread_job jobs[6];
    pthread_t threads[6];
    for (size_t t = 0; t < 6; t++) {
        memset(&jobs[t], 0, sizeof jobs[t]);
        jobs[t].wp = wp;
        jobs[t].text = texts[t % 3];
        jobs[t].length = strlen(texts[t % 3]);
        assert_int_equal(pthread_create(&threads[t], NULL, run_job, &jobs[t]), 0);
    }
    for (size_t t = 0; t < 6; t++)
        assert_int_equal(pthread_join(threads[t], NULL), 0);
    for (size_t t = 0; t < 6; t++) {
        assert_int_equal(jobs[t].status, EB_OK);
        assert_true(jobs[t].n > 3);
        assert_int_equal(jobs[t].n, jobs[t % 3].n);
        assert_memory_equal(jobs[t].ids, jobs[t % 3].ids, jobs[t].n * sizeof(int32_t));
    }
    eb__wordpiece_free(wp);
}

static void free_fixture(void)
{
    if (fixture == NULL)
        return;
    for (size_t c = 0; c < fixture->n_configs; c++) {
        for (size_t i = 0; i < fixture->n_texts; i++)
            free(fixture->configs[c].ids[i]);
        free(fixture->configs[c].ids);
        free(fixture->configs[c].n_ids);
    }
    for (size_t i = 0; i < fixture->n_texts; i++)
        free(fixture->texts[i]);
    free(fixture->texts);
    free(fixture->lengths);
    free(fixture);
    fixture = NULL;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_greedy_longest_match),
        cmocka_unit_test(test_cleaning),
        cmocka_unit_test(test_chinese_characters_split),
        cmocka_unit_test(test_lowercase_and_accents),
        cmocka_unit_test(test_punctuation_split),
        cmocka_unit_test(test_added_tokens_in_text),
        cmocka_unit_test(test_unk_over_max_word_chars),
        cmocka_unit_test(test_truncation),
        cmocka_unit_test(test_bad_vocab_txt),
        cmocka_unit_test(test_tokenizer_json),
        cmocka_unit_test(test_allocation_failure),
        cmocka_unit_test(test_threads_share_a_tokenizer),
        cmocka_unit_test_setup(test_cased_matches_reference, setup_reference),
        cmocka_unit_test_setup(test_variant_matches_reference, setup_reference),
        cmocka_unit_test_setup(test_minilm_tokenizer_json_matches_reference, setup_reference),
        cmocka_unit_test_setup(test_minilm_vocab_txt_matches_reference, setup_reference),
    };
    int failures = cmocka_run_group_tests(tests, NULL, NULL);
    free_fixture();
    return failures;
}
