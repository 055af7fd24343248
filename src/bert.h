/*
 * The BERT encoder of a sentence-transformers model directory: its settings
 * (bert_config.c) and its forward pass over token ids (bert.c). Not installed.
 */
#ifndef EMBETTER_BERT_H
#define EMBETTER_BERT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "internal.h"
#include "safetensors.h"

/* ---- bert_config.c ------------------------------------------------------- */

/* The architecture, all of it from config.json. */
typedef struct eb_bert_config {
    size_t hidden_size;
    size_t num_layers;
    size_t num_heads;
    size_t intermediate_size;
    size_t vocab_size;
    size_t max_positions;
    size_t type_vocab_size;
    float layer_norm_eps;
} eb_bert_config;

typedef enum eb_bert_pooling {
    EB_POOL_MEAN = 1,
    EB_POOL_CLS = 2,
    EB_POOL_MAX = 3
} eb_bert_pooling;

/* Larger than any model these files describe; also keeps every BLAS dimension far inside int. */
enum {
    EB_BERT_MAX_HIDDEN = 1 << 14,
    EB_BERT_MAX_INTERMEDIATE = 1 << 16,
    EB_BERT_MAX_LAYERS = 256,
    EB_BERT_MAX_VOCAB = 1 << 22,
    EB_BERT_MAX_POSITIONS = 1 << 14,
    EB_BERT_MAX_TYPE_VOCAB = 1 << 10
};

/* Config files above this many bytes are refused unread. */
enum { EB_CONFIG_MAX_BYTES = 1 << 20 };

/* What the module files of a sentence-transformers directory say. */
typedef struct eb_sentence_config {
    eb_bert_config bert;
    eb_bert_pooling pooling;
    bool normalize;          /* a Normalize module follows the pooling */
    size_t max_seq_length;   /* tokens per text, [CLS] and [SEP] included */
    bool do_lower_case;      /* sentence_bert_config.json's flag: lowercase before the tokenizer */
    char *transformer_dir;   /* where config.json, model.safetensors and the vocabulary are (from mem) */
    char *pooling_dir;
} eb_sentence_config;

/*
 * Each parser reads one file's JSON from a buffer; source names the file in
 * messages. All refuse malformed JSON, missing or mistyped fields and values
 * out of range with EB_ERR_FORMAT, and an architecture, activation, pooling
 * mode or module the encoder does not implement with EB_ERR_FORMAT naming it.
 */
eb_status eb__bert_config_parse(const char *json, size_t length, const char *source, eb_bert_config *cfg,
                                eb_error *err);
/* 1_Pooling/config.json, classic (pooling_mode_*_tokens flags) or newer ("pooling_mode": "mean"); checks the width. */
eb_status eb__pooling_config_parse(const char *json, size_t length, const char *source, size_t hidden_size,
                                   eb_bert_pooling *pooling, eb_error *err);
/* sentence_bert_config.json; *max_seq_length is 0 when the file leaves it out. */
eb_status eb__sentence_bert_config_parse(const char *json, size_t length, const char *source, size_t *max_seq_length,
                                         bool *do_lower_case, eb_error *err);
/*
 * modules.json: a Transformer, a Pooling module, optionally Normalize, in that
 * order. The two paths are copied into path buffers of capacity bytes each.
 */
eb_status eb__modules_parse(const char *json, size_t length, const char *source, char *transformer_path,
                            char *pooling_path, size_t capacity, bool *normalize, eb_error *err);

/* Read and check every module file of the sentence-transformers model in dir. */
eb_status eb__sentence_config_load(const char *dir, const eb_allocator *mem, eb_sentence_config *cfg, eb_error *err);
void eb__sentence_config_release(eb_sentence_config *cfg, const eb_allocator *mem);

/* ---- bert.c -------------------------------------------------------------- */

typedef struct eb_bert eb_bert;

/* Load the model in dir: module files, config.json and model.safetensors (mapped, not copied, where F32). */
eb_status eb__bert_load(const char *dir, const eb_allocator *mem, eb_bert **out, eb_error *err);

/*
 * A model from parsed settings and an open weights file, whose tensors are
 * named as BertModel names them, with or without the "bert." prefix. On
 * success the model owns st; on failure the caller still does.
 */
eb_status eb__bert_create(const eb_sentence_config *cfg, eb_safetensors *st, const eb_allocator *mem, eb_bert **out,
                          eb_error *err);
void eb__bert_free(eb_bert *model);

const eb_sentence_config *eb__bert_config(const eb_bert *model);
/* Width of a sentence embedding (the hidden size). */
size_t eb__bert_output_dim(const eb_bert *model);

/* At most this many tokens (or one text, if longer) go through the layers at once, which bounds scratch memory. */
enum { EB_BERT_CHUNK_TOKENS = 2048 };

/*
 * Sentence embeddings of n texts given as token ids: text i is the lengths[i]
 * ids starting at ids + (lengths[0] + ... + lengths[i - 1]), [CLS] and [SEP]
 * included, no padding. out receives n x hidden_size floats, pooled (and
 * normalised) as the module files say. With last_hidden non-NULL it also
 * receives the final layer's output, one row of hidden_size per token, in the
 * order of ids. Only the model's allocator is used for scratch; the model is
 * not written, so calls may run concurrently. EB_ERR_INVALID_PARAM names the
 * text and position of an id outside the vocabulary, or a length of 0 or above
 * max_position_embeddings.
 */
eb_status eb__bert_encode(const eb_bert *model, const int32_t *ids, const size_t *lengths, size_t n, float *out,
                          float *last_hidden, eb_error *err);

/*
 * The same for a padded batch x seq matrix of ids with its attention mask
 * (1 for a token, 0 for padding; each row's ones must come first, as a
 * tokenizer pads on the right). last_hidden, if non-NULL, is batch x seq x
 * hidden_size with zeros at padded positions.
 */
eb_status eb__bert_encode_padded(const eb_bert *model, const int32_t *ids, const int32_t *mask, size_t batch,
                                 size_t seq, float *out, float *last_hidden, eb_error *err);

#endif
