/*
 * The sentence-encoder fixtures under tests/fixtures/sentence (format:
 * scripts/make_sentence_fixtures.py), shared by test_bert and
 * test_sentence_encoder so that both read the file, cap the texts compared
 * and judge rows the same way.
 */
#ifndef EMBETTER_TEST_SENTENCE_FIXTURE_H
#define EMBETTER_TEST_SENTENCE_FIXTURE_H

#include <stddef.h>
#include <stdint.h>

#include "embetter/encoder.h"

typedef struct sentence_fixture {
    size_t n;              /* texts the test compares: n_read unless capped */
    size_t n_read;         /* texts in the file */
    size_t dim, hidden_size, n_hidden;
    eb_text *texts;        /* the texts themselves */
    size_t *lengths;       /* tokens of text i */
    size_t *offsets;       /* first token of text i in ids */
    int32_t *ids;          /* all texts' ids, packed */
    size_t total;
    float *embeddings;     /* n_read x dim, sentence-transformers' */
    float **hidden;        /* n_hidden arrays of lengths[i] x hidden_size */
} sentence_fixture;

/* Reads tests/fixtures/sentence/<name>.bin.gz whole; fails the test naming the file if it is missing or broken. */
sentence_fixture sentence_fixture_load(const char *name);
void sentence_fixture_free(sentence_fixture *fx);

/* all-MiniLM-L6-v2's directory in the model cache ($LIBEMBETTER_MODEL_CACHE, else ~/.cache/libembetter/models)
 * into dir; fails the test, saying how to fetch it, when its model.safetensors cannot be read. */
void sentence_fixture_minilm_dir(char *dir, size_t size);

/* Copies file from to file to, failing the test if either cannot be opened or the copy is short. */
void sentence_fixture_copy_file(const char *from, const char *to);
/* Copies the named files of tests/fixtures/tiny-bert (paths relative to it, at most one directory deep:
 * 1_Pooling) into dir, for tests that break one file of a model directory. */
void sentence_fixture_copy_tiny(const char *dir, const char *const *files, size_t n_files);

/* n, or fewer when EMBETTER_TEST_MAX_TEXTS (>= 1) asks for fewer, but never fewer than at_least. */
size_t sentence_fixture_cap(size_t n, size_t at_least);

/* Per row: cosine >= 0.99999 and max abs difference <= 1e-4, failing the test naming the row (counted from
 * first_row) otherwise; folds the worst of each into *worst_cosine and *worst_diff. */
void sentence_fixture_compare_rows(const char *what, const float *got, const float *want, size_t rows, size_t dim,
                                   size_t first_row, double *worst_cosine, double *worst_diff);

#endif
