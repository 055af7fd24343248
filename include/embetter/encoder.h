/*
 * libembetter encoders: thing goes in, vector goes out.
 *
 * One interface, eb_encoder, turns a batch of n inputs into an n x dim
 * float32 matrix. Text encoders take UTF-8 strings as (pointer, length), so
 * embedded NULs and buffers without a terminator are fine; image encoders
 * take uint8 pixel buffers with an explicit row stride.
 *
 * Built-in encoders:
 *   - the hashing encoder: dense feature hashing of character or word
 *     n-grams, equal to scikit-learn's HashingVectorizer for the same settings;
 *   - the word-vector encoder: the mean of pre-trained static word vectors
 *     (word2vec/fastText text, GloVe text, word2vec binary);
 *   - the colour-histogram encoder: per-channel histograms of RGB images;
 *   - the sentence encoder: a BERT sentence-transformers model (for example
 *     all-MiniLM-L6-v2) read from its directory, equal to
 *     sentence-transformers' encode within float32 rounding;
 *   - the static encoder: model2vec static embeddings (WordPiece tokens
 *     looked up and averaged), equal to model2vec's StaticModel.encode.
 *
 * An application can add its own encoder by filling an eb_encoder_vtable
 * (see examples/c/custom_encoder.c); eb_encoder_encode_texts and
 * eb_encoder_encode_images then treat it exactly like a built-in one.
 *
 * Input policy, the same for every encoder because the dispatch functions
 * check it before any encoder sees the batch:
 *   - a batch of 0 inputs is EB_ERR_EMPTY_INPUT;
 *   - a text whose bytes are not valid UTF-8 (overlong forms, surrogates,
 *     code points above U+10FFFF, truncated sequences) is rejected with
 *     EB_ERR_INVALID_UTF8, naming the row and byte offset; nothing is replaced;
 *   - a text with length > 0 and data NULL is EB_ERR_NULL_POINTER;
 *   - an empty text (length 0) is EB_ERR_EMPTY_INPUT naming the row: it is
 *     nearly always a missing value, which a zero row would hide. A text of
 *     only spaces is valid and has no features (a zero row);
 *   - an image with width or height 0 is EB_ERR_EMPTY_INPUT; a stride below
 *     width * channels or a channel count the encoder does not take is
 *     EB_ERR_SHAPE_MISMATCH.
 * After a failed encode the content of out is unspecified.
 *
 * Memory: every built-in encoder takes an eb_allocator at create (NULL: the
 * default one) and keeps a copy of the struct, as the finetuners do, so the
 * struct itself may go away; its ctx must stay valid until the encoder is
 * freed. An allocator whose calloc or free is NULL is refused with
 * EB_ERR_NULL_POINTER before anything is allocated.
 *
 * Threads: every encode call is reentrant; one encoder may serve many
 * threads at once. The built-in encoders can also split one large batch
 * across worker threads (pthreads) inside the call; see EB_ENCODER_THREADS_AUTO.
 */
#ifndef EMBETTER_ENCODER_H
#define EMBETTER_ENCODER_H

#include <stddef.h>
#include <stdint.h>

#include "embetter/common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------ */
/* Inputs                                                                   */
/* ------------------------------------------------------------------------ */

/** One UTF-8 text: length bytes from data, no terminator needed, NULs allowed. */
typedef struct eb_text {
    const char *data;
    size_t length;
} eb_text;

/**
 * One uint8 image. Pixel (x, y) channel c is pixels[y * stride + x * channels + c];
 * channels are interleaved (RGB for 3 channels).
 */
typedef struct eb_image {
    const uint8_t *pixels;
    size_t width;
    size_t height;
    /** Values per pixel: 1 grey, 3 RGB, 4 RGBA. */
    size_t channels;
    /** Bytes between the starts of two rows; at least width * channels. */
    size_t stride;
} eb_image;

/** What an encoder consumes. */
typedef enum eb_input_kind {
    /** Batches of eb_text. */
    EB_INPUT_TEXT = 1,
    /** Batches of eb_image. */
    EB_INPUT_IMAGE = 2
} eb_input_kind;

/* ------------------------------------------------------------------------ */
/* The interface                                                            */
/* ------------------------------------------------------------------------ */

/** An encoder of any kind, built-in or custom; the struct is defined below its vtable. */
typedef struct eb_encoder eb_encoder;

/**
 * The operations of one kind of encoder. A custom encoder defines one static
 * const instance of this table and a struct whose first member is an
 * eb_encoder pointing at it.
 */
typedef struct eb_encoder_vtable {
    /** Short name for messages, e.g. "hashing"; never NULL. */
    const char *name;
    /** Which of the two encode functions this encoder implements. */
    eb_input_kind input_kind;
    /** Width of each output row; must not change during the encoder's life. */
    size_t (*output_dim)(const eb_encoder *encoder);
    /**
     * Encode n >= 1 texts into out (n x output_dim). Called only through
     * eb_encoder_encode_texts, which has already checked the arguments and the
     * UTF-8 of every text. Must be safe to call from many threads at once.
     * NULL for image encoders.
     */
    eb_status (*encode_texts)(const eb_encoder *encoder, const eb_text *texts, size_t n, eb_mut_matrix out,
                              eb_error *err);
    /**
     * Encode n >= 1 images into out (n x output_dim). Called only through
     * eb_encoder_encode_images after the generic checks (non-empty, stride
     * large enough); channel counts are the encoder's to check. Must be
     * reentrant. NULL for text encoders.
     */
    eb_status (*encode_images)(const eb_encoder *encoder, const eb_image *images, size_t n, eb_mut_matrix out,
                               eb_error *err);
    /** Release the encoder and all it owns (the pointer passed is never NULL). */
    void (*destroy)(eb_encoder *encoder);
} eb_encoder_vtable;

/**
 * The handle every encoder starts with. Built-in encoders are opaque beyond
 * this member; custom ones embed it first and set vtable.
 */
struct eb_encoder {
    const eb_encoder_vtable *vtable;
};

/** Width of the rows the encoder writes; 0 for NULL. */
EB_API size_t eb_encoder_output_dim(const eb_encoder *encoder);

/** EB_INPUT_TEXT or EB_INPUT_IMAGE; 0 for NULL. */
EB_API eb_input_kind eb_encoder_input_kind(const eb_encoder *encoder);

/**
 * The vtable's name ("hashing", "word_vectors", "color_histogram", "sentence", "static", or a custom one);
 * "" for NULL.
 */
EB_API const char *eb_encoder_name(const eb_encoder *encoder);

/**
 * Encode n texts into out, which must be n x eb_encoder_output_dim(encoder)
 * with stride >= cols. Checks everything in the input policy at the top of
 * this header first. A text encoder only; an image encoder gives
 * EB_ERR_WRONG_INPUT_KIND. err (optional) receives the detail of a failure.
 */
EB_API eb_status eb_encoder_encode_texts(const eb_encoder *encoder, const eb_text *texts, size_t n,
                                         eb_mut_matrix out, eb_error *err);

/** Encode n images into out (n x output_dim); the image counterpart of eb_encoder_encode_texts. */
EB_API eb_status eb_encoder_encode_images(const eb_encoder *encoder, const eb_image *images, size_t n,
                                          eb_mut_matrix out, eb_error *err);

/** Release an encoder through its vtable. NULL is a no-op. */
EB_API void eb_encoder_free(eb_encoder *encoder);

/**
 * Check that bytes are valid UTF-8 (the rules eb_encoder_encode_texts applies).
 * Returns 1 if valid; otherwise 0 with *bad_offset (optional) set to the byte
 * offset of the first byte of the first invalid sequence.
 */
EB_API int eb_utf8_valid(const char *data, size_t length, size_t *bad_offset);

/* ------------------------------------------------------------------------ */
/* Threads                                                                  */
/* ------------------------------------------------------------------------ */

/**
 * n_threads value of the built-in encoders' params meaning "decide per call":
 * the batch is split across as many threads as the calling thread may use
 * CPUs (its CPU affinity on Linux, else the online CPUs; at most
 * EB_ENCODER_MAX_THREADS), but only as far as every thread gets at
 * least EB_ENCODER_MIN_WORK_PER_THREAD units of work, so small batches stay on
 * the calling thread. A unit is one input byte for texts and one pixel for
 * images. A fixed n_threads >= 1 is used as given (1: never start a thread),
 * still limited to one thread per input. Output does not depend on the thread
 * count. A thread that cannot be started is replaced by the calling thread.
 */
#define EB_ENCODER_THREADS_AUTO 0

/** Most threads one encode call uses. */
#define EB_ENCODER_MAX_THREADS 64

/** Work units each thread must get before EB_ENCODER_THREADS_AUTO adds a thread. */
#define EB_ENCODER_MIN_WORK_PER_THREAD 65536

/* ------------------------------------------------------------------------ */
/* HashingEncoder                                                           */
/* ------------------------------------------------------------------------ */

/** How the hashing encoder cuts a text into features (scikit-learn's analyzer). */
typedef enum eb_hashing_analyzer {
    /** Character n-grams inside words padded with one space each side ("char_wb"). */
    EB_ANALYZER_CHAR_WB = 0,
    /** Character n-grams over the whole text, whitespace runs squeezed to one space ("char"). */
    EB_ANALYZER_CHAR = 1,
    /** n-grams of word tokens (runs of two or more word characters) joined by a space ("word"). */
    EB_ANALYZER_WORD = 2
} eb_hashing_analyzer;

/** Row normalisation applied after hashing. */
typedef enum eb_norm {
    /** Divide each row by its Euclidean norm (rows of zeros stay zero). */
    EB_NORM_L2 = 0,
    /** Divide each row by the sum of absolute values. */
    EB_NORM_L1 = 1,
    /** Raw signed counts. */
    EB_NORM_NONE = 2
} eb_norm;

/** Settings of the hashing encoder. Start from eb_hashing_default_params(). */
typedef struct eb_hashing_params {
    /** Default EB_ANALYZER_CHAR_WB. */
    eb_hashing_analyzer analyzer;
    /** Smallest n-gram length, >= 1. Default 2. */
    size_t ngram_min;
    /** Largest n-gram length, >= ngram_min. Default 4. */
    size_t ngram_max;
    /** Output width: number of hash buckets, 1 .. 2^31 - 1. Default 1024. */
    size_t n_features;
    /** Non-zero: the sign of each hash decides whether a feature adds +1 or -1. Default 1. */
    int alternate_sign;
    /** Default EB_NORM_L2. */
    eb_norm norm;
    /** Non-zero: lowercase the text first (Unicode full lowercase mapping). Default 1. */
    int lowercase;
    /** Threads per encode call; EB_ENCODER_THREADS_AUTO (default) or a fixed count >= 1. */
    size_t n_threads;
} eb_hashing_params;

/** The defaults listed in eb_hashing_params. */
EB_API eb_hashing_params eb_hashing_default_params(void);

/** Check params without creating anything; EB_ERR_INVALID_PARAM names the field in err. */
EB_API eb_status eb_hashing_check_params(const eb_hashing_params *params, eb_error *err);

/**
 * Create a hashing text encoder with a copy of params. It is stateless: there
 * is nothing to fit. mem is copied (see Memory above). Encode calls draw
 * their scratch memory from it too (in the calling thread, before any worker
 * starts), so concurrent encode calls need an allocator that is safe to call
 * concurrently. The scratch of one call is O(n_features) per thread plus at
 * most 4 bytes per byte of the longest text (a copy of the text lowercased,
 * and room for one n-gram), so one long text costs a small multiple of its
 * own size. On failure *out is NULL.
 */
EB_API eb_status eb_hashing_encoder_create(const eb_hashing_params *params, const eb_allocator *mem,
                                           eb_encoder **out, eb_error *err);

/** The params of a hashing encoder; EB_ERR_INVALID_PARAM if encoder is another kind. */
EB_API eb_status eb_hashing_encoder_get_params(const eb_encoder *encoder, eb_hashing_params *params,
                                               eb_error *err);

/**
 * scikit-learn's murmurhash3_32(bytes, seed, positive=False): MurmurHash3
 * x86 32-bit as a signed value. Exposed so callers can check bucket choices.
 */
EB_API int32_t eb_murmurhash3_32(const void *data, size_t length, uint32_t seed);

/* ------------------------------------------------------------------------ */
/* WordVectorEncoder                                                        */
/* ------------------------------------------------------------------------ */

/** Layout of a word-vector file. */
typedef enum eb_word_vector_format {
    /**
     * Decide from the bytes: no "count dim" first line means GloVe text; with
     * one, text if the line after it is valid UTF-8 without control
     * characters (tab and CR allowed), binary otherwise.
     */
    EB_WORD_VECTORS_AUTO = 0,
    /** word2vec/fastText text (.vec): a "count dim" line, then "word v1 ... vdim" lines. */
    EB_WORD_VECTORS_TEXT = 1,
    /** GloVe text: "word v1 ... vdim" lines without a header; dim from the first line. */
    EB_WORD_VECTORS_GLOVE = 2,
    /** word2vec binary: a "count dim" line, then per word "word " and dim little-endian float32. */
    EB_WORD_VECTORS_BINARY = 3
} eb_word_vector_format;

/** Settings of the word-vector encoder. Start from eb_word_vectors_default_params(). */
typedef struct eb_word_vector_params {
    /** Default EB_WORD_VECTORS_AUTO. */
    eb_word_vector_format format;
    /** Non-zero (default): scale each text's mean vector to unit L2 norm (zero rows stay zero). */
    int normalize;
    /**
     * Threads per encode call, and for parsing the values of a text file (one
     * work unit per file byte); EB_ENCODER_THREADS_AUTO (default) or a fixed count >= 1.
     */
    size_t n_threads;
} eb_word_vector_params;

/** The defaults listed in eb_word_vector_params. */
EB_API eb_word_vector_params eb_word_vectors_default_params(void);

/**
 * Build a word-vector encoder from the bytes of a vector file. Every line (or
 * binary record) is checked: wrong column count, a value that is not a finite
 * float, a duplicate word, a truncated binary record, or a header whose count
 * or dim disagrees with the data or does not fit a size_t fail with
 * EB_ERR_FORMAT and a message naming the line (text) or byte offset (binary);
 * no encoder is created then. A value is read as numpy.float32(float(token)):
 * rounded once to double, then to float32, so "3.4028235e+38" is FLT_MAX and
 * only values that round to infinity are out of range. A leading UTF-8
 * byte-order mark is skipped. Nothing is allocated for the vectors before the
 * lines are known to be able to hold them (every value takes two bytes), for
 * GloVe files as for files with a header: the vectors take at most twice the
 * size of the file.
 *
 * Encoding: the text is lowercased (full Unicode mapping) and split into
 * tokens, maximal runs of letters (L*) and numbers (N*); the vector is the
 * mean of the vectors of the tokens found in the vocabulary (looked up byte
 * for byte as the file spells them), a zero row when none is found, then
 * L2-normalised if params.normalize.
 */
EB_API eb_status eb_word_vectors_load_from_buffer(const void *bytes, size_t size,
                                                  const eb_word_vector_params *params, const eb_allocator *mem,
                                                  eb_encoder **out, eb_error *err);

/**
 * Read the file at path and build the encoder as eb_word_vectors_load_from_buffer
 * does. Encode calls take scratch memory of at most 2 bytes per byte of the
 * longest text per thread, plus one vector of doubles.
 */
EB_API eb_status eb_word_vectors_load(const char *path, const eb_word_vector_params *params,
                                      const eb_allocator *mem, eb_encoder **out, eb_error *err);

/** Number of words of a word-vector encoder; 0 if encoder is another kind. */
EB_API size_t eb_word_vectors_vocab_size(const eb_encoder *encoder);

/**
 * The stored (unnormalised) vector of word (UTF-8 bytes, exact match), or
 * NULL when the word is unknown or encoder is another kind. The pointer
 * stays valid until the encoder is freed; it holds output_dim floats.
 */
EB_API const float *eb_word_vectors_lookup(const eb_encoder *encoder, const char *word, size_t length);

/* ------------------------------------------------------------------------ */
/* ColorHistogramEncoder                                                    */
/* ------------------------------------------------------------------------ */

/** Largest n_buckets of the colour-histogram encoder: one bucket per uint8 value. */
#define EB_COLOR_HISTOGRAM_MAX_BUCKETS 256

/**
 * Create an image encoder of 3 * n_buckets pixel counts, the R histogram,
 * then G, then B. Bucket edges are numpy's linspace(0, 255, n_buckets + 1);
 * a value v falls in bucket i when edge[i] <= v < edge[i + 1], the last bucket
 * also holding 255, which is numpy.histogram's rule. Images must have 3
 * channels (convert others first). n_threads as in eb_hashing_params.
 * Counts are exact up to 2^24 pixels per bucket (float32).
 */
EB_API eb_status eb_color_histogram_encoder_create(size_t n_buckets, size_t n_threads, const eb_allocator *mem,
                                                   eb_encoder **out, eb_error *err);

/* ------------------------------------------------------------------------ */
/* SentenceEncoder                                                          */
/* ------------------------------------------------------------------------ */

/** Largest batch_size of the sentence encoder. */
#define EB_SENTENCE_MAX_BATCH_SIZE 4096

/** Settings of the sentence encoder. Start from eb_sentence_encoder_default_params(). */
typedef struct eb_sentence_encoder_params {
    /**
     * Texts per forward pass, 1 .. EB_SENTENCE_MAX_BATCH_SIZE. Default 32, as
     * sentence-transformers. Texts are grouped by token count first, so a
     * group holds texts of similar length.
     */
    size_t batch_size;
    /**
     * Threads per encode call; EB_ENCODER_THREADS_AUTO (default) or a fixed
     * count >= 1. Work units are input bytes, as for the other text
     * encoders; the model step uses at most one thread per group of
     * batch_size texts.
     */
    size_t n_threads;
} eb_sentence_encoder_params;

/** The defaults listed in eb_sentence_encoder_params. */
EB_API eb_sentence_encoder_params eb_sentence_encoder_default_params(void);

/** Check params without loading anything; EB_ERR_INVALID_PARAM names the field in err. */
EB_API eb_status eb_sentence_encoder_check_params(const eb_sentence_encoder_params *params, eb_error *err);

/**
 * Load a sentence-transformers BERT model from model_dir and make a text
 * encoder of it (params NULL: the defaults). The directory is read as
 * sentence-transformers lays it out: modules.json (a Transformer, a Pooling
 * module, optionally Normalize; any other module is refused by name),
 * sentence_bert_config.json (max_seq_length, do_lower_case), the pooling
 * module's config.json (mean, CLS or max), and in the Transformer's directory
 * config.json (model_type "bert", absolute positions, gelu), model.safetensors
 * (F32, F16 or BF16; F32 tensors are memory-mapped, not copied) and the
 * tokenizer: tokenizer.json when present (a BERT WordPiece tokenizer; its own
 * truncation and padding settings are ignored, max_seq_length rules), else
 * vocab.txt read with BertTokenizerFast's uncased defaults. A missing file is
 * EB_ERR_IO naming its path; a malformed or unsupported file or setting is
 * EB_ERR_FORMAT naming the file and field, as is a tokenizer whose ids pass
 * config.json's vocab_size. On failure *out is NULL.
 *
 * Encoding a text: lowercased first (Python's str.lower()) when do_lower_case
 * is true; then [CLS], its WordPiece tokens cut to max_seq_length - 2, [SEP];
 * the BERT layers; pooling, and L2 normalisation when a Normalize module is
 * listed. Output width is the model's hidden size. Texts are ordered by token
 * count and run batch_size at a time, each group on one thread; rows come out
 * in the caller's order. The groups do not depend on the thread count, so
 * neither do the results (bit for bit); a different batch_size changes which
 * texts share a BLAS product and may change the last bits of a row.
 *
 * Empty texts follow the input policy above (EB_ERR_EMPTY_INPUT naming the
 * row), although sentence-transformers would embed "" as [CLS] [SEP]: an
 * empty text is nearly always a missing value. A text of only spaces is
 * embedded as [CLS] [SEP], exactly as sentence-transformers does.
 *
 * Memory: the model's weights (about 90 MB for MiniLM-L6, mapped) stay for the
 * encoder's life. An encode call takes per text 4 bytes per token kept (at
 * most max_seq_length) plus a few words, per thread one batch of token
 * ids and embeddings, the model's activations for at most
 * max(2048, max_seq_length) tokens at a time, and, when lowercasing, twice the
 * bytes of the longest text. Worker threads allocate from mem too, so with
 * n_threads other than 1 the allocator must be safe to call concurrently.
 * The loaded model is never written: encode calls may run concurrently.
 *
 * BLAS threads: the products run through OpenBLAS, which may start threads
 * of its own inside each product. When this encoder splits a batch (n_threads
 * other than 1) or calls run concurrently, hold OpenBLAS to one thread
 * (OPENBLAS_NUM_THREADS=1 or openblas_set_num_threads(1)) so the threads do
 * not compete for the cores; the Python SentenceEncoder does this per call.
 */
EB_API eb_status eb_sentence_encoder_create(const char *model_dir, const eb_sentence_encoder_params *params,
                                            const eb_allocator *mem, eb_encoder **out, eb_error *err);

/** The params of a sentence encoder; EB_ERR_INVALID_PARAM if encoder is another kind. */
EB_API eb_status eb_sentence_encoder_get_params(const eb_encoder *encoder, eb_sentence_encoder_params *params,
                                                eb_error *err);

/** Tokens a text keeps ([CLS] and [SEP] included): max_seq_length; 0 if encoder is another kind. */
EB_API size_t eb_sentence_encoder_max_tokens(const eb_encoder *encoder);

/* ------------------------------------------------------------------------ */
/* Static (model2vec) encoder                                               */
/* ------------------------------------------------------------------------ */

/**
 * Create a text encoder from a model2vec model directory (embetter 0.9's
 * default text encoder, model2vec.StaticModel): config.json, tokenizer.json
 * and model.safetensors, read from the local directory model_dir (nothing is
 * downloaded). The encoder is read-only after creation.
 *
 * Accepted: a WordPiece tokenizer.json (the BERT tokenizer the sentence
 * encoder uses; a Unigram or BPE tokenizer is EB_ERR_FORMAT naming the model
 * type), a float32 matrix "embeddings" with one row per vocabulary entry
 * (model tokens and added tokens), and config.json's "normalize" (missing or
 * null: false) and "max_length" (missing: 512; null: no truncation). Refused
 * with EB_ERR_FORMAT naming the tensor, dtype or field: F16, int8 and other
 * non-float32 matrices, vocabulary-quantized models ("mapping", "weights"
 * tensors or config "vocabulary_quantization"), a row count that differs from
 * the vocabulary, malformed JSON. A missing file is EB_ERR_IO naming it.
 *
 * Encoding follows model2vec 0.10's StaticModel.encode exactly: with
 * truncation the text is first cut to max_length times the median vocabulary
 * token length in characters (code points), then tokenized without [CLS] and
 * [SEP] and cut to max_length tokens; [UNK] tokens are dropped; the row is the
 * float32 mean of the token vectors, added in token order, then scaled to unit
 * L2 norm when normalize is set. A text without tokens (only spaces, control
 * characters, or unknown words) is a zero row. The results equal model2vec's
 * to the last bit on the test models (float32 arithmetic in the same order).
 *
 * Large batches are split across threads under the EB_ENCODER_THREADS_AUTO
 * rule. Encode calls take scratch memory from mem of about 4 bytes per byte of
 * the longest text (token ids) per thread. On failure *out is NULL.
 */
EB_API eb_status eb_static_encoder_create(const char *model_dir, const eb_allocator *mem, eb_encoder **out,
                                          eb_error *err);

/** Rows of a static encoder's embedding matrix (its vocabulary size); 0 if encoder is another kind. */
EB_API size_t eb_static_encoder_vocab_size(const eb_encoder *encoder);

#ifdef __cplusplus
}
#endif

#endif /* EMBETTER_ENCODER_H */
