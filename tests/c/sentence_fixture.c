#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "sentence_fixture.h"

static void read_exact(gzFile f, void *out, size_t bytes, const char *path)
{
    if (bytes != 0 && gzread(f, out, (unsigned)bytes) != (int)bytes)
        fail_msg("%s is truncated or unreadable", path);
}

static uint32_t read_u32(gzFile f, const char *path)
{
    uint8_t b[4];
    read_exact(f, b, 4, path);
    return (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
}

sentence_fixture sentence_fixture_load(const char *name)
{
    char path[512];
    snprintf(path, sizeof path, "%s/sentence/%s.bin.gz", EB_FIXTURES_DIR, name);
    gzFile f = gzopen(path, "rb");
    if (f == NULL)
        fail_msg("cannot open %s; scripts/make_sentence_fixtures.py writes it", path);
    char magic[8];
    read_exact(f, magic, 8, path);
    assert_memory_equal(magic, "EBSENT01", 8);
    sentence_fixture fx = {0};
    fx.n = fx.n_read = read_u32(f, path);
    fx.dim = read_u32(f, path);
    fx.hidden_size = read_u32(f, path);
    fx.n_hidden = read_u32(f, path);
    fx.texts = calloc(fx.n + 1, sizeof *fx.texts);
    fx.lengths = calloc(fx.n + 1, sizeof *fx.lengths);
    fx.offsets = calloc(fx.n + 1, sizeof *fx.offsets);
    fx.embeddings = calloc(fx.n * fx.dim + 1, sizeof *fx.embeddings);
    fx.hidden = calloc(fx.n_hidden + 1, sizeof *fx.hidden);
    size_t capacity = 1 << 16;
    fx.ids = calloc(capacity, sizeof *fx.ids);
    assert_true(fx.texts && fx.lengths && fx.offsets && fx.embeddings && fx.hidden && fx.ids);
    for (size_t i = 0; i < fx.n; i++) {
        uint32_t text_bytes = read_u32(f, path);
        char *text = malloc(text_bytes + 1);
        assert_non_null(text);
        read_exact(f, text, text_bytes, path);
        fx.texts[i] = (eb_text){text, text_bytes};
        size_t length = read_u32(f, path);
        fx.lengths[i] = length;
        fx.offsets[i] = fx.total;
        if (fx.total + length > capacity) {
            capacity = 2 * (fx.total + length);
            fx.ids = realloc(fx.ids, capacity * sizeof *fx.ids);
            assert_non_null(fx.ids);
        }
        for (size_t t = 0; t < length; t++)
            fx.ids[fx.total + t] = (int32_t)read_u32(f, path);
        fx.total += length;
        read_exact(f, fx.embeddings + i * fx.dim, fx.dim * sizeof(float), path);
        if (i < fx.n_hidden) {
            fx.hidden[i] = calloc(length * fx.hidden_size + 1, sizeof(float));
            assert_non_null(fx.hidden[i]);
            read_exact(f, fx.hidden[i], length * fx.hidden_size * sizeof(float), path);
        }
    }
    char extra;
    assert_int_equal(gzread(f, &extra, 1), 0);
    gzclose(f);
    return fx;
}

void sentence_fixture_free(sentence_fixture *fx)
{
    for (size_t i = 0; i < fx->n_read; i++)
        free((char *)fx->texts[i].data);
    for (size_t i = 0; i < fx->n_hidden; i++)
        free(fx->hidden[i]);
    free(fx->texts);
    free(fx->hidden);
    free(fx->lengths);
    free(fx->offsets);
    free(fx->ids);
    free(fx->embeddings);
}

void sentence_fixture_copy_file(const char *from, const char *to)
{
    FILE *in = fopen(from, "rb");
    FILE *out = fopen(to, "wb");
    assert_non_null(in);
    assert_non_null(out);
    char buffer[65536];
    size_t n;
    while ((n = fread(buffer, 1, sizeof buffer, in)) > 0)
        assert_int_equal(fwrite(buffer, 1, n, out), n);
    fclose(in);
    assert_int_equal(fclose(out), 0);
}

void sentence_fixture_copy_tiny(const char *dir, const char *const *files, size_t n_files)
{
    char from[512], to[512];
    snprintf(to, sizeof to, "%s/1_Pooling", dir);
    mkdir(to, 0700);
    for (size_t i = 0; i < n_files; i++) {
        snprintf(from, sizeof from, "%s/tiny-bert/%s", EB_FIXTURES_DIR, files[i]);
        snprintf(to, sizeof to, "%s/%s", dir, files[i]);
        sentence_fixture_copy_file(from, to);
    }
}

void sentence_fixture_minilm_dir(char *dir, size_t size)
{
    const char *cache = getenv("LIBEMBETTER_MODEL_CACHE");
    if (cache != NULL && cache[0] != '\0')
        snprintf(dir, size, "%s/all-MiniLM-L6-v2", cache);
    else
        snprintf(dir, size, "%s/.cache/libembetter/models/all-MiniLM-L6-v2",
                 getenv("HOME") != NULL ? getenv("HOME") : "/root");
    char file[1100];
    snprintf(file, sizeof file, "%s/model.safetensors", dir);
    if (access(file, R_OK) != 0)
        fail_msg("%s is missing: fetch it with bash scripts/fetch-models.sh all-MiniLM-L6-v2", file);
}

/* scripts/test.sh's valgrind stage sets EMBETTER_TEST_MAX_TEXTS: its memory checks need every code path, not
 * 1,200 texts at valgrind's 50-fold slowdown. The native and sanitizer runs compare every text. */
size_t sentence_fixture_cap(size_t n, size_t at_least)
{
    const char *limit = getenv("EMBETTER_TEST_MAX_TEXTS");
    if (limit != NULL && limit[0] != '\0') {
        size_t max_texts = strtoul(limit, NULL, 10);
        if (max_texts >= 1 && max_texts < n)
            return max_texts > at_least ? max_texts : at_least;
    }
    return n;
}

void sentence_fixture_compare_rows(const char *what, const float *got, const float *want, size_t rows, size_t dim,
                                   size_t first_row, double *worst_cosine, double *worst_diff)
{
    for (size_t r = 0; r < rows; r++) {
        double dot = 0, ng = 0, nw = 0, diff = 0;
        for (size_t c = 0; c < dim; c++) {
            double g = got[r * dim + c], w = want[r * dim + c];
            dot += g * w;
            ng += g * g;
            nw += w * w;
            diff = fabs(g - w) > diff ? fabs(g - w) : diff;
        }
        double cosine = dot / sqrt(ng * nw);
        if (!(cosine >= 0.99999) || !(diff <= 1e-4))
            fail_msg("%s row %zu: cosine %.8f, max abs difference %.3g", what, first_row + r, cosine, diff);
        *worst_cosine = cosine < *worst_cosine ? cosine : *worst_cosine;
        *worst_diff = diff > *worst_diff ? diff : *worst_diff;
    }
}
