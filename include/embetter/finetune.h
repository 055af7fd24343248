/*
 * libembetter finetuners: learn a new embedding from a few hundred labelled
 * rows. One handle type, eb_finetuner, and one set of calls serve three
 * kinds, chosen by eb_finetuner_params.kind:
 *   - EB_KIND_FEEDFORWARD: input -> sigmoid hidden layer -> class scores
 *     (softmax, cross-entropy); the hidden layer is the new embedding.
 *   - EB_KIND_CONTRASTIVE: one shared linear layer trained so that the cosine
 *     of two re-embedded rows follows whether their labels agree; the pairs
 *     are drawn from the labels.
 *   - EB_KIND_PAIR_LEARNER: one shared re-embedding trained so that the
 *     cosine of two re-embedded rows approaches a similarity the caller gives
 *     per pair (embetter's ContrastiveLearner).
 * The first two learn from rows with class labels (eb_finetuner_fit), the
 * pair learner from pairs (eb_finetuner_fit_pairs); the rest of the API is
 * the same for all three.
 *
 * Conventions that hold for every function below:
 *   - Every fallible call returns an eb_status; eb_status_string() names it.
 *   - Calls that change a finetuner (fit, partial_fit, set_params,
 *     set_class_labels) keep a message with the detail in it:
 *     eb_finetuner_last_error(). Calls that do not own a writable finetuner
 *     (create, load, transform, predict, save) write it into an optional
 *     eb_error the caller passes (NULL to skip), which keeps them reentrant.
 *   - A call that fails leaves the finetuner exactly as it was before.
 *   - Matrices are row-major float32 views with an explicit row stride.
 *   - Labels are class indices 0 .. n_classes-1 (int32); the classes may also
 *     carry names (integers or UTF-8 strings, eb_class_labels), which are
 *     saved with the model.
 *   - Memory comes from the eb_allocator given at create or load (NULL: the
 *     default one); the finetuner keeps a copy of the struct.
 *   - The library keeps no global mutable state and never prints.
 *
 * Handles. Every handle records its kind and a magic value that free
 * clears. A call given a handle whose magic is wrong returns
 * EB_ERR_INVALID_HANDLE (accessors return 0 or NULL); a call that does not
 * apply to the handle's kind returns EB_ERR_WRONG_KIND. What cannot be
 * detected: a freed handle whose memory the allocator has handed out again,
 * or a pointer to memory that was never a handle and happens to hold the
 * magic. Reading the magic of freed memory is itself undefined behaviour in
 * C; the check is there to turn the common mistake into an error, never to
 * be relied on.
 *
 * Threads. The library takes no locks; what a caller must serialise:
 *   - Different handles are independent: any calls on different handles may
 *     run at the same time on any threads (handles that share one
 *     eb_allocator need an allocator safe to call from those threads; the
 *     default one is).
 *   - On one finetuner, the calls that take a const handle only read it and
 *     may all run at the same time, from any number of threads: transform,
 *     predict_pairs, save, save_to_buffer, saved_size, check_savable,
 *     get_params, kind, is_fitted, n_features, n_classes, output_dim,
 *     loss_history, class_labels, metadata and last_error. transform writes
 *     nothing in the finetuner (its message goes to the caller's eb_error,
 *     its scratch is the caller's out), so failing transforms do not
 *     disturb each other either.
 *   - fit, fit_pairs, partial_fit, partial_fit_pairs, set_params (which also
 *     writes last_error), set_callback, set_threads, set_class_labels,
 *     set_metadata and free change the finetuner: each must run alone, with
 *     no other call on that finetuner in progress on any thread. A
 *     reader-writer lock per finetuner (read lock for the first group, write
 *     lock for this one) is exactly enough; the Python package does that.
 *   - Pointers from loss_history, class_labels, metadata and last_error
 *     stay valid only until the next call of the second group: copy what
 *     they point to under the same read lock.
 *   - The per-epoch callback runs on the training thread inside the call
 *     that holds the finetuner exclusively: it may make calls of the first
 *     group on that finetuner (fit still shows the finetuner as it was
 *     before fit, since fit trains fresh weights aside; partial_fit shows the
 *     pass's weights, which are rolled back if the pass diverges), never
 *     calls of the second group.
 */
#ifndef EMBETTER_FINETUNE_H
#define EMBETTER_FINETUNE_H

#include <stddef.h>
#include <stdint.h>

#include "embetter/common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------ */
/* Kinds and parameters                                                     */
/* ------------------------------------------------------------------------ */

/** The kinds of finetuner. The value is the one a saved model's header stores (stable). */
typedef enum eb_finetuner_kind {
    /** A sigmoid hidden layer trained with a softmax head on class labels. */
    EB_KIND_FEEDFORWARD = 1,
    /** One linear layer trained on the cosine of pairs drawn from class labels. */
    EB_KIND_CONTRASTIVE = 2,
    /** A re-embedding trained on the cosine of given pairs toward given similarities. */
    EB_KIND_PAIR_LEARNER = 3
} eb_finetuner_kind;

/** Readable name of a kind: "feedforward", "contrastive", "pair_learner"; "unknown" for anything else. */
EB_API const char *eb_finetuner_kind_name(eb_finetuner_kind kind);

/** The pair learner's re-embedding (eb_finetuner_params.layers). */
typedef enum eb_pair_layers {
    /** One linear layer x W + b, output hidden_dim wide. */
    EB_PAIR_LINEAR = 0,
    /** Linear (hidden_dim) -> ReLU -> Linear (hidden_dim): embetter 0.9's ContrastiveLearner network. */
    EB_PAIR_LINEAR_RELU_LINEAR = 1
} eb_pair_layers;

/** hidden_dim value meaning "as many output columns as X has input columns" (contrastive and pair learner). */
#define EB_HIDDEN_DIM_AS_INPUT SIZE_MAX

/**
 * Called after every epoch of fit and after the pass of partial_fit, with the
 * 1-based epoch number within the call and that epoch's mean loss. Return 0 to
 * go on, non-zero to stop training; a stopped fit keeps the weights learned so
 * far and still returns EB_OK (the loss history then has fewer entries).
 */
typedef int (*eb_epoch_callback)(size_t epoch, double loss, void *user_data);

/**
 * Hyper-parameters of a finetuner. Start from eb_finetuner_default_params(kind)
 * and change fields; the defaults differ by kind. A field marked for some
 * kinds must keep its default (0) in the others, so that a setting is never
 * silently ignored.
 */
typedef struct eb_finetuner_params {
    /** Which finetuner; fixed for the life of a handle. */
    eb_finetuner_kind kind;
    /**
     * Width of the output embedding. Feed-forward: the sigmoid hidden layer,
     * default 50. Contrastive: default EB_HIDDEN_DIM_AS_INPUT. Pair learner:
     * default 300 (embetter's shape_out). Otherwise >= 1.
     */
    size_t hidden_dim;
    /** Passes over the data in fit. Defaults: feed-forward 500, contrastive 20, pair learner 1. >= 1. */
    size_t n_epochs;
    /** Adam step size. Defaults: feed-forward 0.01, contrastive 0.001, pair learner 2e-5. Finite and > 0. */
    float learning_rate;
    /**
     * Rows (feed-forward) or pairs (the others) per minibatch, reshuffled
     * every epoch; 0 trains on everything at once. Defaults: 0, 0, 16.
     */
    size_t batch_size;
    /** Seed of the initial weights, pair sampling and shuffling; equal seeds give bit-identical results. Default 0. */
    uint64_t seed;
    /** Contrastive only: negative pairs drawn per row and epoch (rows of other labels). Default 3; >= 1. */
    size_t n_neg;
    /** Pair learner only: the re-embedding. Default EB_PAIR_LINEAR. */
    eb_pair_layers layers;
    /** Optional per-epoch progress callback; NULL for none. Never saved. */
    eb_epoch_callback on_epoch;
    /** Passed to on_epoch. */
    void *callback_data;
} eb_finetuner_params;

/**
 * The defaults listed in eb_finetuner_params for kind. An unknown kind gives
 * params whose kind is that value and whose other fields are 0, which every
 * call refuses with EB_ERR_INVALID_PARAM.
 */
EB_API eb_finetuner_params eb_finetuner_default_params(eb_finetuner_kind kind);

/**
 * Check params without creating anything. Returns EB_OK or
 * EB_ERR_INVALID_PARAM (or EB_ERR_NULL_POINTER) with the offending field
 * named in err (optional), e.g. "n_neg applies to contrastive finetuners only".
 */
EB_API eb_status eb_finetuner_check_params(const eb_finetuner_params *params, eb_error *err);

/* ------------------------------------------------------------------------ */
/* Life cycle                                                               */
/* ------------------------------------------------------------------------ */

/** A finetuner of any kind. Opaque; create with eb_finetuner_create or load one. */
typedef struct eb_finetuner eb_finetuner;

/**
 * Create an unfitted finetuner with a copy of params. mem may be NULL for the
 * default allocator; its ctx must outlive the finetuner. On failure *out is
 * set to NULL.
 */
EB_API eb_status eb_finetuner_create(const eb_finetuner_params *params, const eb_allocator *mem,
                                     eb_finetuner **out, eb_error *err);

/** Release a finetuner and everything it owns. NULL is a no-op; so is a handle whose magic is wrong. */
EB_API void eb_finetuner_free(eb_finetuner *model);

/** The kind the finetuner was created with; 0 for NULL or an invalid handle. */
EB_API eb_finetuner_kind eb_finetuner_kind_of(const eb_finetuner *model);

/* ------------------------------------------------------------------------ */
/* Class names                                                              */
/* ------------------------------------------------------------------------ */

/** What names the classes of a finetuner carry. */
typedef enum eb_label_type {
    /** The classes are only numbered 0 .. n_classes-1. */
    EB_LABELS_NONE = 0,
    /** Each class is named by a signed 64-bit integer. */
    EB_LABELS_INT64 = 1,
    /** Each class is named by a UTF-8 string (any bytes but invalid UTF-8; NULs allowed). */
    EB_LABELS_UTF8 = 2
} eb_label_type;

/**
 * The names of classes 0 .. count-1, as a view: the arrays belong to whoever
 * filled it in. Names must be distinct. In a view the library returns,
 * strings are also NUL-terminated (after their length bytes).
 */
typedef struct eb_class_labels {
    eb_label_type type;
    /** Number of classes named; 0 with EB_LABELS_NONE. */
    size_t count;
    /** EB_LABELS_INT64: count integers. */
    const int64_t *integers;
    /** EB_LABELS_UTF8: count strings of string_lengths[i] bytes each. */
    const char *const *strings;
    /** EB_LABELS_UTF8: the byte length of each string; NULL means every string is NUL-terminated. */
    const size_t *string_lengths;
} eb_class_labels;

/** Limits on class names, so a saved model stays small enough to check before loading. */
#define EB_MAX_LABEL_BYTES 65536

/**
 * Name the classes of a fitted finetuner, e.g. one fitted without names or
 * loaded from a version 1 file; count must equal n_classes (an unfitted
 * finetuner is EB_ERR_NOT_FITTED: fit and partial_fit take the names). Labels
 * are checked before anything changes: distinct, strings valid UTF-8 and at
 * most EB_MAX_LABEL_BYTES each; a failure names the label by index. A type
 * of EB_LABELS_NONE removes the names. Pair learners have no classes:
 * EB_ERR_WRONG_KIND.
 */
EB_API eb_status eb_finetuner_set_class_labels(eb_finetuner *model, const eb_class_labels *labels);

/**
 * The names of the classes into *out (type EB_LABELS_NONE and count 0 when
 * there are none). The arrays belong to the finetuner: valid until the next
 * call that changes it.
 */
EB_API eb_status eb_finetuner_class_labels(const eb_finetuner *model, eb_class_labels *out);

/* ------------------------------------------------------------------------ */
/* Training                                                                 */
/* ------------------------------------------------------------------------ */

/**
 * Train from fresh weights for params.n_epochs epochs on rows with class
 * labels (feed-forward and contrastive). X is n x d, y holds n labels in
 * 0 .. n_classes-1. names (optional, NULL to keep none) names the classes
 * and must have n_classes entries. Replaces any earlier fit, including
 * n_classes, the class names and the loss history. Contrastive: every epoch
 * pairs each row with one positive (another row of its label, itself when
 * it is alone) and n_neg negatives; y must hold two distinct labels.
 */
EB_API eb_status eb_finetuner_fit(eb_finetuner *model, eb_matrix X, const int32_t *y, size_t n_classes,
                                  const eb_class_labels *names);

/**
 * One pass over X, y keeping the weights and Adam state. The first call on
 * an unfitted finetuner initialises the weights and fixes n_classes (and the
 * names, when given; contrastive needs two distinct labels there); later
 * calls must pass the same n_classes or 0, names NULL or equal to the ones
 * fixed, and X with the fitted column count.
 */
EB_API eb_status eb_finetuner_partial_fit(eb_finetuner *model, eb_matrix X, const int32_t *y, size_t n_classes,
                                          const eb_class_labels *names);

/**
 * Pairs for the pair learner, with a similarity target per pair in [0, 1].
 * Build them with eb_pairs_aligned or eb_pairs_indexed.
 */
typedef struct eb_pairs {
    /** Rows the pairs' left sides come from. */
    eb_matrix left;
    /** Rows the pairs' right sides come from; the same view as left for indexed pairs. */
    eb_matrix right;
    /** Row of left for each pair; NULL when pair i is row i of left and row i of right. */
    const uint32_t *left_index;
    /** Row of right for each pair; NULL exactly when left_index is. */
    const uint32_t *right_index;
    /** Number of pairs. */
    size_t count;
    /** Similarity target of each pair, in [0, 1]; NULL for predict. */
    const float *similarity;
} eb_pairs;

/** Pair i is (X1 row i, X2 row i) with target similarity[i]; count is X1.rows (X2 must have as many). */
EB_API eb_pairs eb_pairs_aligned(eb_matrix X1, eb_matrix X2, const float *similarity);

/**
 * Pair i is (X row left[i], X row right[i]) with target similarity[i]: many
 * pairs over one matrix, in memory O(rows x d + pairs), never O(pairs x d).
 */
EB_API eb_pairs eb_pairs_indexed(eb_matrix X, const uint32_t *left, const uint32_t *right, size_t count,
                                 const float *similarity);

/**
 * Train the pair learner from fresh weights for params.n_epochs epochs:
 * minibatches of batch_size pairs, reshuffled every epoch, minimise the mean
 * squared difference between the cosine of the two re-embedded rows and
 * the pair's similarity (Adam). Replaces any earlier fit. Other kinds:
 * EB_ERR_WRONG_KIND.
 */
EB_API eb_status eb_finetuner_fit_pairs(eb_finetuner *model, eb_pairs pairs);

/** One epoch over the pairs keeping the weights and Adam state; the first call initialises the weights. */
EB_API eb_status eb_finetuner_partial_fit_pairs(eb_finetuner *model, eb_pairs pairs);

/* ------------------------------------------------------------------------ */
/* Using a fitted finetuner                                                 */
/* ------------------------------------------------------------------------ */

/**
 * Write the new embedding of X into out, which must be X.rows x output_dim.
 * Allocates nothing; safe from many threads at once. err (optional) receives
 * the detail of a failure. EB_ERR_NONFINITE names the first NaN or infinity
 * in X, or else the first row whose output overflows float32; out's content
 * is then unspecified. A failed shape or layout check leaves out untouched.
 * Splitting one transform into several calls at multiples of
 * EB_TRANSFORM_SLICE_ROWS rows gives the same bits as one call.
 */
EB_API eb_status eb_finetuner_transform(const eb_finetuner *model, eb_matrix X, eb_mut_matrix out, eb_error *err);

/** Rows per slice of transform; see eb_finetuner_transform. */
#define EB_TRANSFORM_SLICE_ROWS 512

/**
 * The cosine of the two re-embedded rows of every pair (the pair learner's
 * prediction of their similarity) into out[0 .. pairs.count). capacity is
 * out's length in floats: fewer than pairs.count is EB_ERR_BUFFER_TOO_SMALL.
 * pairs.similarity is ignored. Any kind may predict, since all three
 * re-embed rows; a zero embedding has cosine 0 with everything.
 * Allocates only scratch for one slice of pairs; thread-safe.
 */
EB_API eb_status eb_finetuner_predict_pairs(const eb_finetuner *model, eb_pairs pairs, float *out, size_t capacity,
                                            eb_error *err);

/** Message of the last failed call that changes this finetuner; "" after a success; "" for NULL. */
EB_API const char *eb_finetuner_last_error(const eb_finetuner *model);

/** The params the finetuner holds (those of a NULL or invalid handle: all zero). */
EB_API eb_finetuner_params eb_finetuner_get_params(const eb_finetuner *model);

/** Non-zero once a fit or partial_fit has succeeded. */
EB_API int eb_finetuner_is_fitted(const eb_finetuner *model);

/** Column count the finetuner was fitted on; 0 when unfitted. */
EB_API size_t eb_finetuner_n_features(const eb_finetuner *model);

/** Number of classes fixed by the first fit; 0 when unfitted and always for the pair learner. */
EB_API size_t eb_finetuner_n_classes(const eb_finetuner *model);

/**
 * Width of transform's output: params.hidden_dim, or the fitted column count
 * when that is EB_HIDDEN_DIM_AS_INPUT (0 while such a finetuner is unfitted).
 */
EB_API size_t eb_finetuner_output_dim(const eb_finetuner *model);

/**
 * Mean training loss of every epoch since the last fit, oldest first; each
 * partial_fit appends one. *length receives the count.
 */
EB_API const double *eb_finetuner_loss_history(const eb_finetuner *model, size_t *length);

/**
 * Replace the params, e.g. a new learning_rate for the next partial_fit.
 * Rejected (EB_ERR_INVALID_PARAM, finetuner unchanged) when invalid, when
 * params.kind differs from the handle's, or when a fitted finetuner would
 * change hidden_dim or layers, which fix its weight shapes. The new params,
 * callback included, apply from the next fit or partial_fit.
 */
EB_API eb_status eb_finetuner_set_params(eb_finetuner *model, const eb_finetuner_params *params);

/**
 * Replace the progress callback (and its user pointer), e.g. after loading
 * a finetuner, since callbacks are never saved. NULL removes it.
 */
EB_API eb_status eb_finetuner_set_callback(eb_finetuner *model, eb_epoch_callback on_epoch, void *callback_data);

/**
 * eb_finetuner_set_threads' value meaning "decide per training call", the
 * setting of every finetuner created or loaded: contrastive training on rows
 * that are mostly zeros (hashed n-gram counts; their nonzeros are listed once
 * per call) splits each step's products and weight update over as many
 * threads as the calling thread may use CPUs (its CPU affinity on Linux, else
 * the online CPUs; at most EB_FINETUNER_MAX_THREADS), as
 * far as each thread gets EB_FINETUNER_MIN_WORK_PER_THREAD multiply-adds of a
 * product. Other training runs on the calling thread (OpenBLAS may use
 * threads of its own inside a product).
 */
#define EB_FINETUNER_THREADS_AUTO 0

/** Most threads, the calling one included, one training call uses. */
#define EB_FINETUNER_MAX_THREADS 8

/** Multiply-adds of one product each thread must get before EB_FINETUNER_THREADS_AUTO adds a thread. */
#define EB_FINETUNER_MIN_WORK_PER_THREAD 1000000

/**
 * Threads later training calls may use: 1 keeps training on the calling
 * thread, n_threads >= 2 uses that many where EB_FINETUNER_THREADS_AUTO would
 * use any, and EB_FINETUNER_THREADS_AUTO decides per call. Results never
 * depend on it: every sum is still computed by one thread, in one order.
 * The threads live for one call; a helper thread the system does not run
 * leaves its work to the others. Not saved with the model. Rejected
 * (EB_ERR_INVALID_PARAM, setting unchanged) above EB_FINETUNER_MAX_THREADS.
 * Set 1 when you train many finetuners on threads of your own.
 */
EB_API eb_status eb_finetuner_set_threads(eb_finetuner *model, size_t n_threads);

/**
 * Attach bytes the library stores and saves but never interprets, for a
 * binding's own settings (the Python package keeps its estimator's
 * parameters there as JSON). size 0 removes them. At most
 * EB_MAX_METADATA_BYTES.
 */
EB_API eb_status eb_finetuner_set_metadata(eb_finetuner *model, const void *data, size_t size);

/** Largest metadata a finetuner holds. */
#define EB_MAX_METADATA_BYTES (16u << 20)

/** The metadata bytes (NULL and 0 when there are none); valid until the next call that changes the finetuner. */
EB_API const void *eb_finetuner_metadata(const eb_finetuner *model, size_t *size);

/* ------------------------------------------------------------------------ */
/* Saving and loading                                                       */
/* ------------------------------------------------------------------------ */

/**
 * Whether save would accept this finetuner, without writing anything:
 * EB_OK, or the refusal save would give (the same status and message). A
 * finetuner that set_params left in a state load would refuse is refused
 * here, so a save never writes a file that cannot be loaded.
 */
EB_API eb_status eb_finetuner_check_savable(const eb_finetuner *model, eb_error *err);

/**
 * Bytes eb_finetuner_save_to_buffer needs: header, params, weights, Adam
 * state, RNG state, loss history, class names and metadata. 0 for NULL or
 * an invalid handle.
 */
EB_API size_t eb_finetuner_saved_size(const eb_finetuner *model);

/**
 * Serialise the finetuner (fitted or not) into buffer, which has capacity
 * bytes; *written receives the size used. Less capacity than saved_size is
 * EB_ERR_BUFFER_TOO_SMALL (nothing is written). See docs/model-format.md.
 */
EB_API eb_status eb_finetuner_save_to_buffer(const eb_finetuner *model, void *buffer, size_t capacity,
                                             size_t *written, eb_error *err);

/**
 * Rebuild a finetuner of whatever kind the bytes hold. Nothing in the bytes
 * is trusted: any inconsistency is EB_ERR_FORMAT with a message and no read
 * goes past size. The loaded finetuner has no callback; a following
 * partial_fit continues exactly as the saved one would have.
 */
EB_API eb_status eb_finetuner_load_from_buffer(const void *buffer, size_t size, const eb_allocator *mem,
                                               eb_finetuner **out, eb_error *err);

/**
 * Save to a file atomically, after every check that can refuse: the bytes go
 * to a temporary file in the same directory, which is flushed, synced and
 * renamed over path, so path holds either its old content or the complete
 * new model, never a partial one.
 */
EB_API eb_status eb_finetuner_save(const eb_finetuner *model, const char *path, eb_error *err);

/**
 * Load a finetuner saved by eb_finetuner_save (or save_to_buffer bytes in a
 * file). Never blocks: path must be a regular file (a FIFO, directory or
 * device is EB_ERR_IO naming the path and what it is). The header is read
 * first and the file must be exactly as long as it announces; a format
 * error is EB_ERR_FORMAT with the path in front of the message.
 */
EB_API eb_status eb_finetuner_load(const char *path, const eb_allocator *mem, eb_finetuner **out, eb_error *err);

/** Bytes of the fixed header that starts every saved model (docs/model-format.md). */
#define EB_MODEL_HEADER_SIZE 28

/**
 * The format version this library writes. It reads every version from 1 up
 * to this one: version 1 files (libembetter 0.1) load with no class names
 * and no metadata.
 */
#define EB_MODEL_FORMAT_VERSION 2

/** The fixed header of a saved model, as eb_model_read_header decodes it. */
typedef struct eb_model_header {
    /** Format version, 1 .. EB_MODEL_FORMAT_VERSION. */
    uint32_t format_version;
    /** The kind of finetuner saved. */
    eb_finetuner_kind kind;
    /** Bytes that follow the header, as the header announces them. */
    uint64_t payload_size;
    /** CRC-32 (zlib's) of the payload, as stored. */
    uint32_t payload_crc32;
} eb_model_header;

/**
 * Decode the header at the start of saved model bytes without loading the
 * model. size may cover only the header. Checks what the header alone can
 * show, exactly as the loaders do: at least EB_MODEL_HEADER_SIZE bytes, the
 * EMBETTER magic, a version this library reads and a known kind; anything
 * else is EB_ERR_FORMAT with a message starting "saved model:". The payload
 * length and checksum are reported, not checked. On failure *out is zeroed.
 */
EB_API eb_status eb_model_read_header(const void *buffer, size_t size, eb_model_header *out, eb_error *err);

/**
 * eb_model_read_header on the first EB_MODEL_HEADER_SIZE bytes of the file
 * at path, which is read no further. A file that cannot be opened or read is
 * EB_ERR_IO with the path and the system's reason, as is anything but a
 * regular file; a shorter file is EB_ERR_FORMAT.
 */
EB_API eb_status eb_model_read_file_header(const char *path, eb_model_header *out, eb_error *err);

/**
 * Rows of the largest matrix that one training step of a finetuner of this
 * kind multiplies through its weights, when it trains on n_rows rows (or
 * pairs, for the pair learner) with batch_size (0 for full batch): what the
 * cost of one step scales with, e.g. to decide how many BLAS threads a fit
 * deserves. Feed-forward: the rows of a minibatch. Contrastive: 2 *
 * batch_size when that is fewer than half of X, else n_rows. Pair learner:
 * two rows per pair of a minibatch, at most EB_PAIR_SLICE pairs at a time.
 * An unknown kind gives 0.
 */
EB_API size_t eb_training_step_rows(eb_finetuner_kind kind, size_t n_rows, size_t batch_size);

/** Pairs the pair learner puts through its layers at once; larger batches accumulate slices. */
#define EB_PAIR_SLICE 1024

#ifdef __cplusplus
}
#endif

#endif /* EMBETTER_FINETUNE_H */
