/*
 * libembetter: what every part of the API shares: the export macro, status
 * codes and error details, the library version, the pluggable allocator and
 * the float32 matrix views. Included by finetune.h, encoder.h and blas.h;
 * include embetter/embetter.h to get all of them.
 */
#ifndef EMBETTER_COMMON_H
#define EMBETTER_COMMON_H

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

/**
 * Outcome of a fallible call. EB_OK is 0; every failure is non-zero.
 *
 * Stable: every value below keeps its name, number and meaning in all later
 * versions, so programs and bindings may store and compare them. New
 * statuses are only ever added after the last one (EB_STATUS_COUNT grows);
 * treat an unknown non-zero value as a failure and show eb_status_string().
 * Messages (eb_error.message, last_error) are for people and may change.
 */
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
    EB_ERR_WRONG_INPUT_KIND = 14,
    /** An output buffer (bytes or floats) has less room than the call needs; the message says how much it needs. */
    EB_ERR_BUFFER_TOO_SMALL = 15,
    /** The call does not apply to this kind of finetuner (fit with class labels on a pair learner, or the reverse). */
    EB_ERR_WRONG_KIND = 16,
    /** The handle is not a live one of the type the call takes: freed, of another type, or not a handle at all. */
    EB_ERR_INVALID_HANDLE = 17
} eb_status;

/** Number of distinct eb_status values (one past the largest). */
#define EB_STATUS_COUNT 18

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

#ifdef __cplusplus
}
#endif

#endif /* EMBETTER_COMMON_H */
