/*
 * BERT's WordPiece tokenizer, giving the ids Hugging Face `tokenizers` gives
 * (BertNormalizer, BertPreTokenizer, the WordPiece model, [CLS] ... [SEP] and
 * truncation). Internal: the sentence encoder wraps it; not installed.
 *
 * A loaded tokenizer is read-only, so any number of threads may encode with it
 * at once, each with its own scratch.
 */
#ifndef EMBETTER_WORDPIECE_H
#define EMBETTER_WORDPIECE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "internal.h"

typedef struct eb_wordpiece eb_wordpiece;

/* The normalizer settings a vocab.txt does not carry (tokenizer.json does), as BertWordPieceTokenizer names them. */
typedef struct eb_wordpiece_options {
    bool clean_text;
    bool handle_chinese_chars;
    bool lowercase;
    /* -1: strip accents exactly when lowercasing; 0 or 1: as said. */
    int strip_accents;
} eb_wordpiece_options;

/* BertTokenizerFast's defaults for an uncased vocabulary: all on, accents follow lowercase. */
eb_wordpiece_options eb__wordpiece_default_options(void);

/* Longest word the model splits; longer ones are one [UNK] (tokenizers' max_input_chars_per_word). */
enum { EB_WORDPIECE_MAX_WORD_CHARS_LIMIT = 10000 };

/*
 * From the bytes of a vocab.txt: one token a line, its id the line number
 * (counting from 0), trailing white space dropped as tokenizers does; must
 * hold [UNK], [CLS] and [SEP]. [PAD], [UNK], [CLS], [SEP] and [MASK] written in
 * a text are those tokens, as BertTokenizerFast's special tokens. mem NULL:
 * malloc. EB_ERR_FORMAT names the line and problem.
 */
eb_status eb__wordpiece_from_vocab(const char *data, size_t size, const eb_wordpiece_options *options,
                                   const eb_allocator *mem, eb_wordpiece **out, eb_error *err);

/*
 * From the bytes of a tokenizer.json. Accepted: a WordPiece model, a
 * BertNormalizer (or none), the BertPreTokenizer, a BertProcessing or
 * TemplateProcessing post-processor that wraps a text as [CLS] text [SEP], and
 * added tokens matched as written (normalized false, no lstrip, rstrip or
 * single_word). Anything else is EB_ERR_FORMAT naming it (e.g. a BPE or
 * Unigram model). The file's own truncation and padding are ignored: the
 * caller gives max_length to eb__wordpiece_encode.
 */
eb_status eb__wordpiece_from_json(const char *data, size_t size, const eb_allocator *mem, eb_wordpiece **out,
                                  eb_error *err);

/*
 * From a file: a name ending in ".json" is a tokenizer.json, anything else a
 * vocab.txt read with options (NULL: the defaults). Messages name the path.
 */
eb_status eb__wordpiece_load(const char *path, const eb_wordpiece_options *options, const eb_allocator *mem,
                             eb_wordpiece **out, eb_error *err);

void eb__wordpiece_free(eb_wordpiece *wp);

/* One more than the largest id the tokenizer can produce: the rows an embedding table needs. */
size_t eb__wordpiece_id_bound(const eb_wordpiece *wp);
/* The id of a token spelled exactly so in the vocabulary, or -1. */
int32_t eb__wordpiece_token_id(const eb_wordpiece *wp, const char *token, size_t length);
/* The [CLS], [SEP] and [PAD] ids ([PAD]: 0 when the vocabulary has none, as BERT pads with 0). */
int32_t eb__wordpiece_cls_id(const eb_wordpiece *wp);
int32_t eb__wordpiece_sep_id(const eb_wordpiece *wp);
int32_t eb__wordpiece_pad_id(const eb_wordpiece *wp);

/* Per-thread working memory for encoding with one tokenizer; its size does not grow with the text. */
typedef struct eb_wordpiece_scratch eb_wordpiece_scratch;

eb_status eb__wordpiece_scratch_create(const eb_wordpiece *wp, const eb_allocator *mem,
                                       eb_wordpiece_scratch **out, eb_error *err);
void eb__wordpiece_scratch_free(eb_wordpiece_scratch *scratch);

/*
 * Token ids of text (length bytes of UTF-8): [CLS], the text's tokens cut to
 * max_length - 2, [SEP]. ids has room for max_length (>= 2); *n_ids receives
 * the count. mask, when not NULL, receives max_length entries: 1 for each
 * token, 0 for the padding after. Work stops once max_length is reached, so a
 * long text costs only what its kept part does. Invalid UTF-8 is
 * EB_ERR_INVALID_UTF8 with the byte offset; allocates nothing.
 */
eb_status eb__wordpiece_encode(const eb_wordpiece *wp, eb_wordpiece_scratch *scratch, const char *text,
                               size_t length, size_t max_length, int32_t *ids, uint8_t *mask, size_t *n_ids,
                               eb_error *err);

#endif
