/*
 * libembetter: fine-tune embeddings toward a labelling task.
 *
 * The whole public API. Two finetuners learn a new embedding from a few
 * hundred labelled rows:
 *   - eb_feedforward: input -> sigmoid hidden layer -> class scores; the
 *     hidden layer is the new embedding.
 *   - eb_contrastive: one shared linear layer trained so that the cosine of
 *     two re-embedded rows follows whether their labels agree.
 *
 * Conventions that hold for every function below:
 *   - Every fallible call returns an eb_status; eb_status_string() names it.
 *   - Calls that change a model (fit, partial_fit) keep a message with the
 *     detail in the model: eb_feedforward_last_error(). Calls that do not own
 *     a writable model (create, transform) write it into an optional
 *     eb_error the caller passes (NULL to skip), which keeps them reentrant.
 *   - A call that fails leaves the model exactly as it was before the call.
 *   - Matrices are row-major float32 views with an explicit row stride.
 *   - Labels are class indices 0 .. n_classes-1 (int32).
 *   - Memory comes from the eb_allocator given at create (NULL: malloc).
 *   - The library keeps no global mutable state and never prints.
 *
 * Threads. The library takes no locks; what a caller must serialise:
 *   - Different handles (models, encoders) are independent: any calls on
 *     different handles may run at the same time on any threads (handles
 *     that share one eb_allocator need an allocator safe to call from those
 *     threads; the default one is).
 *   - On one model, the calls that take a const model only read it and may
 *     all run at the same time, from any number of threads: transform,
 *     save, save_to_buffer, saved_size, get_params, is_fitted, n_features,
 *     n_classes, output_dim, loss_history and last_error. transform writes
 *     nothing in the model (its message goes to the caller's eb_error, its
 *     scratch is the caller's out), so failing transforms do not disturb
 *     each other either.
 *   - fit, partial_fit, set_params (which also writes last_error),
 *     set_callback and free change the model: each must run alone, with no
 *     other call on that model in progress on any thread. A reader-writer
 *     lock per model (pthread_rwlock_t: read lock for the first group,
 *     write lock for this one) is exactly enough; the Python package does
 *     that. Unserialised, two partial_fit calls corrupt the heap (both grow
 *     the loss history) and a transform may read half-updated weights.
 *   - The pointer from loss_history and the string from last_error stay
 *     valid only until the next call of the second group: copy them under
 *     the same read lock.
 *   - The per-epoch callback runs on the training thread inside the call
 *     that holds the model exclusively: it may make calls of the first group
 *     on that model (fit still shows the model as it was before fit, since
 *     fit trains fresh weights aside; partial_fit shows the pass's weights,
 *     which are rolled back if the pass diverges), never calls of the
 *     second group.
 *   - Encoders: every encode call is reentrant (encoder.h, "Threads").
 */
#ifndef EMBETTER_EMBETTER_H
#define EMBETTER_EMBETTER_H

#include <stddef.h>
#include <stdint.h>

#include "embetter/version.h"

#ifdef __cplusplus
extern "C" {
#endif

#if defined(_WIN32) && defined(EMBETTER_SHARED)
#  ifdef EMBETTER_BUILDING
#    define EB_API __declspec(dllexport)
#  else
#    define EB_API __declspec(dllimport)
#  endif
#elif defined(__GNUC__)
#  define EB_API __attribute__((visibility("default")))
#else
#  define EB_API
#endif

/* ------------------------------------------------------------------------ */
/* Status, errors, version                                                  */
/* ------------------------------------------------------------------------ */

/** Outcome of a fallible call. EB_OK is 0; every failure is non-zero. */
typedef enum eb_status {
    EB_OK = 0,
    /** A required pointer argument was NULL. */
    EB_ERR_NULL_POINTER = 1,
    /** A field of a params struct is out of range (hidden_dim 0, learning_rate <= 0 or NaN, ...). */
    EB_ERR_INVALID_PARAM = 2,
    /** A matrix has 0 rows or 0 columns. */
    EB_ERR_EMPTY_INPUT = 3,
    /** Shapes disagree: columns differ from the fitted model, output has the wrong shape, stride < cols. */
    EB_ERR_SHAPE_MISMATCH = 4,
    /** X holds a NaN or an infinity (the message names row and column). */
    EB_ERR_NONFINITE = 5,
    /** A label is negative, not below n_classes, or n_classes differs from the one already fitted. */
    EB_ERR_LABEL_OUT_OF_RANGE = 6,
    /** Too few classes to learn from (n_classes 0, or fewer than two distinct labels for contrastive). */
    EB_ERR_TOO_FEW_CLASSES = 7,
    /** transform (or a fitted-only query) was called before the model was fitted. */
    EB_ERR_NOT_FITTED = 8,
    /** The allocator returned NULL. */
    EB_ERR_NOMEM = 9,
    /** A size computation would overflow size_t (or int, as BLAS needs). */
    EB_ERR_TOO_LARGE = 10,
    /** Reading or writing a model file failed (the message carries the system's reason). */
    EB_ERR_IO = 11,
    /** A saved model is not valid: bad magic, other model kind, newer version, truncated, corrupt. */
    EB_ERR_FORMAT = 12,
    /** A text handed to an encoder is not valid UTF-8 (the message names row and byte offset). */
    EB_ERR_INVALID_UTF8 = 13,
    /** An encoder was given the other kind of input (images to a text encoder or the reverse). */
    EB_ERR_WRONG_INPUT_KIND = 14
} eb_status;

/** Number of distinct eb_status values (one past the largest). */
#define EB_STATUS_COUNT 15

/** Readable name of a status, e.g. "EB_ERR_NONFINITE". Never NULL, also for unknown values. */
EB_API const char *eb_status_string(eb_status status);

/** Size of the message buffer in eb_error, including the terminating NUL. */
#define EB_ERROR_MESSAGE_SIZE 256

/** Detail of a failed call, written by functions that take an eb_error pointer. */
typedef struct eb_error {
    /** The status of the call that filled it in. */
    eb_status status;
    /** NUL-terminated human-readable detail; empty after success. */
    char message[EB_ERROR_MESSAGE_SIZE];
} eb_error;

/** The library's version string at run time (EB_VERSION_STRING of the build). */
EB_API const char *eb_version(void);

/* ------------------------------------------------------------------------ */
/* Memory                                                                   */
/* ------------------------------------------------------------------------ */

/**
 * The allocator a model draws all its memory from. calloc must return zeroed
 * memory aligned for any type, or NULL; free accepts NULL. ctx is passed back
 * untouched, so one allocator can serve many models with separate bookkeeping.
 */
typedef struct eb_allocator {
    void *(*calloc)(void *ctx, size_t count, size_t size);
    void (*free)(void *ctx, void *ptr);
    void *ctx;
} eb_allocator;

/** The allocator used when NULL is passed: the C library's calloc and free. */
EB_API const eb_allocator *eb_default_allocator(void);

/* ------------------------------------------------------------------------ */
/* Matrices                                                                 */
/* ------------------------------------------------------------------------ */

/** A read-only row-major float32 matrix view: element (r, c) is data[r * stride + c]. */
typedef struct eb_matrix {
    const float *data;
    size_t rows;
    size_t cols;
    /** Distance between row starts, in floats; at least cols. */
    size_t stride;
} eb_matrix;

/** A writable row-major float32 matrix view, for outputs. */
typedef struct eb_mut_matrix {
    float *data;
    size_t rows;
    size_t cols;
    size_t stride;
} eb_mut_matrix;

/** A view of a contiguous rows x cols array (stride = cols). */
EB_API eb_matrix eb_matrix_view(const float *data, size_t rows, size_t cols);

/** A writable view of a contiguous rows x cols array (stride = cols). */
EB_API eb_mut_matrix eb_mut_matrix_view(float *data, size_t rows, size_t cols);

/* ------------------------------------------------------------------------ */
/* Training progress                                                        */
/* ------------------------------------------------------------------------ */

/**
 * Called after every epoch of fit and after the pass of partial_fit, with the
 * 1-based epoch number within the call and that epoch's mean loss. Return 0 to
 * go on, non-zero to stop training; a stopped fit keeps the weights learned so
 * far and still returns EB_OK (the loss history then has fewer entries).
 */
typedef int (*eb_epoch_callback)(size_t epoch, double loss, void *user_data);

/* ------------------------------------------------------------------------ */
/* FeedForwardFinetuner                                                     */
/* ------------------------------------------------------------------------ */

/** Hyper-parameters of the feed-forward finetuner. Start from eb_feedforward_default_params(). */
typedef struct eb_feedforward_params {
    /** Width of the sigmoid hidden layer, which is the output embedding. Default 50; must be >= 1. */
    size_t hidden_dim;
    /** Passes over the data in fit. Default 500; must be >= 1. */
    size_t n_epochs;
    /** Adam step size. Default 0.01; must be finite and > 0. */
    float learning_rate;
    /** Rows per minibatch, reshuffled every epoch; 0 (default) trains on all rows at once. */
    size_t batch_size;
    /** Seed of the initial weights and of the shuffling; equal seeds give bit-identical results. Default 0. */
    uint64_t seed;
    /** Optional per-epoch progress callback; NULL for none. */
    eb_epoch_callback on_epoch;
    /** Passed to on_epoch. */
    void *callback_data;
} eb_feedforward_params;

/** The feed-forward finetuner. Opaque; create with eb_feedforward_create. */
typedef struct eb_feedforward eb_feedforward;

/** The defaults listed in eb_feedforward_params. */
EB_API eb_feedforward_params eb_feedforward_default_params(void);

/**
 * Check params without creating anything. Returns EB_OK or EB_ERR_INVALID_PARAM
 * with the offending field named in err (optional).
 */
EB_API eb_status eb_feedforward_check_params(const eb_feedforward_params *params, eb_error *err);

/**
 * Create an unfitted model with a copy of params. mem may be NULL for the
 * default allocator; it is used for every allocation of this model and must
 * outlive it. On failure *out is set to NULL.
 */
EB_API eb_status eb_feedforward_create(const eb_feedforward_params *params, const eb_allocator *mem,
                                       eb_feedforward **out, eb_error *err);

/** Release a model and everything it owns. NULL is a no-op. */
EB_API void eb_feedforward_free(eb_feedforward *model);

/**
 * Train from fresh weights for params.n_epochs epochs. X is n x d, y holds n
 * labels in 0 .. n_classes-1. Replaces any earlier fit, including n_classes
 * and the loss history.
 */
EB_API eb_status eb_feedforward_fit(eb_feedforward *model, eb_matrix X, const int32_t *y, size_t n_classes);

/**
 * One pass over X, y, keeping weights and Adam state. The first call on an
 * unfitted model initialises the weights and fixes n_classes (>= 1); later calls
 * must pass the same n_classes or 0, and X must have the fitted column count.
 */
EB_API eb_status eb_feedforward_partial_fit(eb_feedforward *model, eb_matrix X, const int32_t *y, size_t n_classes);

/**
 * Write the hidden-layer activations of X into out, which must be
 * X.rows x hidden_dim. Allocates nothing; safe from many threads at once.
 * err (optional) receives the detail of a failure. EB_ERR_NONFINITE names the
 * first NaN or infinity in X, or else the first row whose pre-activations
 * overflow float32; out's content is then unspecified (X is checked during the
 * product, not before it). A failed shape or layout check leaves out untouched.
 */
EB_API eb_status eb_feedforward_transform(const eb_feedforward *model, eb_matrix X, eb_mut_matrix out,
                                          eb_error *err);

/** Message of the last failed fit or partial_fit on this model; "" after a success. */
EB_API const char *eb_feedforward_last_error(const eb_feedforward *model);

/** The params the model was created with. */
EB_API eb_feedforward_params eb_feedforward_get_params(const eb_feedforward *model);

/** Non-zero once fit or partial_fit has succeeded. */
EB_API int eb_feedforward_is_fitted(const eb_feedforward *model);

/** Column count the model was fitted on; 0 when unfitted. */
EB_API size_t eb_feedforward_n_features(const eb_feedforward *model);

/** Number of classes fixed by the first fit; 0 when unfitted. */
EB_API size_t eb_feedforward_n_classes(const eb_feedforward *model);

/** Width of transform's output (params.hidden_dim). */
EB_API size_t eb_feedforward_output_dim(const eb_feedforward *model);

/**
 * Mean training loss of every epoch since the last fit, oldest first; each
 * partial_fit appends one. *length receives the count. The pointer stays
 * valid until the next fit, partial_fit or free.
 */
EB_API const double *eb_feedforward_loss_history(const eb_feedforward *model, size_t *length);

/**
 * Replace the model's params, e.g. a new learning_rate for the next
 * partial_fit. Rejected (EB_ERR_INVALID_PARAM, model unchanged) when invalid or
 * when a fitted model would change hidden_dim, which fixes its weight shapes.
 * The new params, callback included, apply from the next fit or partial_fit.
 */
EB_API eb_status eb_feedforward_set_params(eb_feedforward *model, const eb_feedforward_params *params);

/**
 * Replace the progress callback (and its user pointer) of an existing model,
 * e.g. after loading one, since callbacks are never saved. NULL removes it.
 */
EB_API void eb_feedforward_set_callback(eb_feedforward *model, eb_epoch_callback on_epoch, void *callback_data);

/**
 * Bytes eb_feedforward_save_to_buffer needs for this model: header, params,
 * weights, Adam state, RNG state and loss history.
 */
EB_API size_t eb_feedforward_saved_size(const eb_feedforward *model);

/**
 * Serialise the model (fitted or not) into buffer, which has capacity bytes;
 * *written receives the size used. See docs/model-format.md for the layout.
 */
EB_API eb_status eb_feedforward_save_to_buffer(const eb_feedforward *model, void *buffer, size_t capacity,
                                               size_t *written, eb_error *err);

/**
 * Rebuild a model from bytes saved by eb_feedforward_save_to_buffer. Nothing in
 * the bytes is trusted: any inconsistency is EB_ERR_FORMAT with a message and
 * no read goes past size. The loaded model has no callback; a following
 * partial_fit continues exactly as the saved model would have.
 */
EB_API eb_status eb_feedforward_load_from_buffer(const void *buffer, size_t size, const eb_allocator *mem,
                                                 eb_feedforward **out, eb_error *err);

/**
 * Save to a file atomically: the bytes go to a temporary file in the same
 * directory, which is flushed, synced and renamed over path, so path holds
 * either the old content or the complete new model, never a partial one.
 */
EB_API eb_status eb_feedforward_save(const eb_feedforward *model, const char *path, eb_error *err);

/**
 * Load a model saved by eb_feedforward_save (or any save_to_buffer bytes in a
 * file). Never blocks: path is opened non-blocking and must be a regular file
 * (a FIFO, directory or device is EB_ERR_IO naming the path and what it is).
 * The header is read first and the file must be exactly as long as it
 * announces, so no more than that is ever allocated or read; a format error is
 * EB_ERR_FORMAT with the path in front of the message.
 */
EB_API eb_status eb_feedforward_load(const char *path, const eb_allocator *mem, eb_feedforward **out,
                                     eb_error *err);

/* ------------------------------------------------------------------------ */
/* ContrastiveFinetuner                                                     */
/* ------------------------------------------------------------------------ */

/** hidden_dim value meaning "as many output columns as X has input columns". */
#define EB_HIDDEN_DIM_AS_INPUT SIZE_MAX

/** Hyper-parameters of the contrastive finetuner. Start from eb_contrastive_default_params(). */
typedef struct eb_contrastive_params {
    /** Output width of the shared linear layer. Default EB_HIDDEN_DIM_AS_INPUT; otherwise >= 1. */
    size_t hidden_dim;
    /** Negative pairs drawn per row and epoch (rows of other labels). Default 3; must be >= 1. */
    size_t n_neg;
    /** Passes in fit; each draws fresh pairs. Default 20; must be >= 1. */
    size_t n_epochs;
    /** Adam step size. Default 0.001; must be finite and > 0. */
    float learning_rate;
    /** Pairs per minibatch; 0 (default) trains on all pairs of an epoch at once. */
    size_t batch_size;
    /** Seed of the initial weights, the pair sampling and the shuffling. Default 0. */
    uint64_t seed;
    /** Optional per-epoch progress callback; NULL for none. */
    eb_epoch_callback on_epoch;
    /** Passed to on_epoch. */
    void *callback_data;
} eb_contrastive_params;

/** The contrastive finetuner. Opaque; create with eb_contrastive_create. */
typedef struct eb_contrastive eb_contrastive;

/** The defaults listed in eb_contrastive_params. */
EB_API eb_contrastive_params eb_contrastive_default_params(void);

/** Check params without creating anything; see eb_feedforward_check_params. */
EB_API eb_status eb_contrastive_check_params(const eb_contrastive_params *params, eb_error *err);

/** Create an unfitted model; see eb_feedforward_create. */
EB_API eb_status eb_contrastive_create(const eb_contrastive_params *params, const eb_allocator *mem,
                                       eb_contrastive **out, eb_error *err);

/** Release a model. NULL is a no-op. */
EB_API void eb_contrastive_free(eb_contrastive *model);

/**
 * Train from fresh weights for params.n_epochs epochs. Every epoch pairs each
 * row with one positive (another row of its label, itself when it is alone)
 * and n_neg negatives (rows of other labels). y must hold at least two
 * distinct labels in 0 .. n_classes-1.
 */
EB_API eb_status eb_contrastive_fit(eb_contrastive *model, eb_matrix X, const int32_t *y, size_t n_classes);

/**
 * One epoch of freshly drawn pairs over X, y, keeping weights and Adam state.
 * On an unfitted model it needs two distinct labels, initialises the weights
 * and fixes n_classes; later calls must pass that n_classes or 0, and may hold
 * a single label (then only positive pairs are drawn).
 */
EB_API eb_status eb_contrastive_partial_fit(eb_contrastive *model, eb_matrix X, const int32_t *y, size_t n_classes);

/**
 * Write the re-embedding X W + b into out (X.rows x output_dim). Allocates
 * nothing; thread-safe. When a row overflows float32 through the weights the
 * call fails with EB_ERR_NONFINITE naming the row, and out's content is
 * unspecified.
 */
EB_API eb_status eb_contrastive_transform(const eb_contrastive *model, eb_matrix X, eb_mut_matrix out,
                                          eb_error *err);

/** Message of the last failed fit or partial_fit on this model; "" after a success. */
EB_API const char *eb_contrastive_last_error(const eb_contrastive *model);

/** The params the model was created with. */
EB_API eb_contrastive_params eb_contrastive_get_params(const eb_contrastive *model);

/** Non-zero once fit or partial_fit has succeeded. */
EB_API int eb_contrastive_is_fitted(const eb_contrastive *model);

/** Column count the model was fitted on; 0 when unfitted. */
EB_API size_t eb_contrastive_n_features(const eb_contrastive *model);

/** Number of classes fixed by the first fit; 0 when unfitted. */
EB_API size_t eb_contrastive_n_classes(const eb_contrastive *model);

/**
 * Width of transform's output: params.hidden_dim, or the fitted column count
 * when that is EB_HIDDEN_DIM_AS_INPUT (0 while such a model is unfitted).
 */
EB_API size_t eb_contrastive_output_dim(const eb_contrastive *model);

/** Mean loss per epoch since the last fit; see eb_feedforward_loss_history. */
EB_API const double *eb_contrastive_loss_history(const eb_contrastive *model, size_t *length);

/** Replace the params of a model; see eb_feedforward_set_params (hidden_dim is likewise fixed once fitted). */
EB_API eb_status eb_contrastive_set_params(eb_contrastive *model, const eb_contrastive_params *params);

/** Replace the progress callback; see eb_feedforward_set_callback. */
EB_API void eb_contrastive_set_callback(eb_contrastive *model, eb_epoch_callback on_epoch, void *callback_data);

/** Bytes eb_contrastive_save_to_buffer needs; see eb_feedforward_saved_size. */
EB_API size_t eb_contrastive_saved_size(const eb_contrastive *model);

/** Serialise into a caller buffer; see eb_feedforward_save_to_buffer. */
EB_API eb_status eb_contrastive_save_to_buffer(const eb_contrastive *model, void *buffer, size_t capacity,
                                               size_t *written, eb_error *err);

/** Rebuild from saved bytes, trusting nothing; see eb_feedforward_load_from_buffer. */
EB_API eb_status eb_contrastive_load_from_buffer(const void *buffer, size_t size, const eb_allocator *mem,
                                                 eb_contrastive **out, eb_error *err);

/** Save to a file atomically; see eb_feedforward_save. */
EB_API eb_status eb_contrastive_save(const eb_contrastive *model, const char *path, eb_error *err);

/** Load from a file; see eb_feedforward_load. */
EB_API eb_status eb_contrastive_load(const char *path, const eb_allocator *mem, eb_contrastive **out,
                                     eb_error *err);

/* ------------------------------------------------------------------------ */
/* Either kind of model: saved headers and how the work divides             */
/* ------------------------------------------------------------------------ */

/** The kinds of model. The value is the one a saved model's header stores. */
typedef enum eb_model_kind {
    /** eb_feedforward: a sigmoid hidden layer trained with a softmax head. */
    EB_KIND_FEEDFORWARD = 1,
    /** eb_contrastive: one linear layer trained on the cosine of pairs. */
    EB_KIND_CONTRASTIVE = 2
} eb_model_kind;

/** Bytes of the fixed header that starts every saved model (docs/model-format.md). */
#define EB_MODEL_HEADER_SIZE 28

/** The format version this library writes; it reads every version from 1 up to this one. */
#define EB_MODEL_FORMAT_VERSION 1

/** The fixed header of a saved model, as eb_model_read_header decodes it. */
typedef struct eb_model_header {
    /** Format version, 1 .. EB_MODEL_FORMAT_VERSION. */
    uint32_t format_version;
    /** Which loader reads the model: eb_feedforward_load* or eb_contrastive_load*. */
    eb_model_kind kind;
    /** Bytes that follow the header, as the header announces them. */
    uint64_t payload_size;
    /** CRC-32 (zlib's) of the payload, as stored. */
    uint32_t payload_crc32;
} eb_model_header;

/**
 * Decode the header at the start of saved model bytes without loading the
 * model, e.g. to pick the loader for a file of unknown kind. size may cover
 * only the header. Checks what the header alone can show, exactly as the
 * loaders do: at least EB_MODEL_HEADER_SIZE bytes, the EMBETTER magic, a
 * version this library reads and a known kind; anything else is
 * EB_ERR_FORMAT with a message starting "saved model:". The payload length
 * and checksum are reported, not checked (the loaders check them against the
 * payload). EB_ERR_NULL_POINTER when buffer or out is NULL. On failure *out
 * is zeroed. err is optional.
 */
EB_API eb_status eb_model_read_header(const void *buffer, size_t size, eb_model_header *out, eb_error *err);

/**
 * eb_model_read_header on the first EB_MODEL_HEADER_SIZE bytes of the file
 * at path, which is read no further. A file that cannot be opened or read is
 * EB_ERR_IO with the path and the system's reason, as is anything but a
 * regular file (opened non-blocking, so a FIFO does not block); a shorter
 * file is EB_ERR_FORMAT.
 */
EB_API eb_status eb_model_read_file_header(const char *path, eb_model_header *out, eb_error *err);

/**
 * Rows per slice of transform. The feed-forward transform works through X in
 * slices of this many rows, so that a slice stays in cache from the product
 * to the sigmoid. Splitting one transform of either kind into several calls
 * at multiples of this many rows (e.g. one call per thread) puts every row
 * through the same products as one call, so the output has the same bits.
 */
#define EB_TRANSFORM_SLICE_ROWS 512

/**
 * Rows of the largest matrix that one training step of a model of this
 * kind multiplies through its weights, when it trains on n_rows rows with
 * params.batch_size batch_size (0 for full batch): what the cost of one
 * step scales with, e.g. to decide how many BLAS threads a fit deserves.
 * Feed-forward: the rows of a minibatch (all n_rows when batch_size is 0 or
 * at least n_rows). Contrastive: a minibatch of pairs gathers its two rows
 * per pair when that is fewer than half of X (2 * batch_size rows), else it
 * multiplies all n_rows. The training code itself uses this rule. An
 * unknown kind gives 0.
 */
EB_API size_t eb_training_step_rows(eb_model_kind kind, size_t n_rows, size_t batch_size);

/* ------------------------------------------------------------------------ */
/* The BLAS underneath                                                      */
/* ------------------------------------------------------------------------ */

/** Size of each text field of eb_blas_config, including the terminating NUL. */
#define EB_BLAS_FIELD_SIZE 64
/** Size of eb_blas_config.build, including the terminating NUL. */
#define EB_BLAS_BUILD_SIZE 256

/**
 * What the BLAS that does the training's matrix products is and how it runs,
 * as it reports itself at the moment of the call. Every text field is
 * NUL-terminated; "" means the BLAS gives no way to ask.
 */
typedef struct eb_blas_config {
    /** "OpenBLAS" (the system's), "scipy-openblas32" (PyPI's wheel), or "unknown CBLAS" for another. */
    char library[EB_BLAS_FIELD_SIZE];
    /** The library's version, e.g. "0.3.21". */
    char version[EB_BLAS_FIELD_SIZE];
    /** The kernel set it runs (OpenBLAS's core name), e.g. "SkylakeX", "Haswell", "Prescott". */
    char core[EB_BLAS_FIELD_SIZE];
    /** Threading layer: "pthreads", "OpenMP" or "sequential". */
    char threading[EB_BLAS_FIELD_SIZE];
    /** The library's own build description (OpenBLAS: openblas_get_config()). */
    char build[EB_BLAS_BUILD_SIZE];
    /** The widest vector instruction set this CPU offers: "avx512", "avx2", "avx", "sse2"; "" off x86-64. */
    char cpu_vector_isa[EB_BLAS_FIELD_SIZE];
    /**
     * The OPENBLAS_CORETYPE value that would run faster kernels than `core`
     * on this CPU (see eb_blas_recommended_coretype), or "" when `core`
     * already uses what the CPU offers.
     */
    char recommended_coretype[EB_BLAS_FIELD_SIZE];
    /** Threads one BLAS call may use (OpenBLAS: openblas_get_num_threads()); 0 when unknown. */
    int threads;
} eb_blas_config;

/**
 * Describe the BLAS in use into *out. Reads only; safe from many threads.
 * Returns EB_ERR_NULL_POINTER when out is NULL, else EB_OK.
 */
EB_API eb_status eb_blas_info(eb_blas_config *out);

/**
 * The OPENBLAS_CORETYPE to set when OpenBLAS runs kernels for a lesser CPU
 * than this one, else NULL. core is an OpenBLAS core name as eb_blas_config
 * reports it, cpu_vector_isa a value of eb_blas_config.cpu_vector_isa.
 * Example: OpenBLAS 0.3.21 does not know some recent Xeons and falls back to
 * its generic "Prescott" kernels, several times slower; on an AVX-512 CPU this
 * returns "SkylakeX", on an AVX2 one "Haswell". Unknown core names (another
 * architecture, a newer OpenBLAS) and NULL arguments give NULL. A pure
 * function: eb_blas_info applies it to the real core and CPU.
 */
EB_API const char *eb_blas_recommended_coretype(const char *core, const char *cpu_vector_isa);

#ifdef __cplusplus
}
#endif

/* Encoders (text and image to vectors) build on the types above. */
#include "embetter/encoder.h"

#endif /* EMBETTER_EMBETTER_H */
