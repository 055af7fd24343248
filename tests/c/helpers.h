/*
 * Shared by the C test programs: deterministic toy data, the table of
 * finetuner kinds and one data set every kind trains on, a nearest-centroid
 * judge, an allocator that counts and fails on demand, and snapshots of a
 * finetuner's observable state for "a failed call changed nothing" checks.
 */
#ifndef EMBETTER_TEST_HELPERS_H
#define EMBETTER_TEST_HELPERS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "embetter/embetter.h"

/* ---- random numbers for building test data (independent of the library's) -- */

typedef struct test_rng {
    uint64_t state;
} test_rng;

test_rng test_rng_make(uint64_t seed);
uint64_t test_rng_next(test_rng *rng);
/* Uniform in [low, high). */
double test_rng_uniform(test_rng *rng, double low, double high);
/* Standard normal (Box-Muller). */
double test_rng_normal(test_rng *rng);

/* ---- toy problems ---------------------------------------------------------- */

/*
 * Labels cycle through 0 .. n_classes-1. The first n_signal columns carry the
 * class: column s belongs to class s mod n_classes and has mean +separation/2
 * in rows of that class, -separation/2 elsewhere, with spread signal_std. The
 * remaining n_noise columns are zero-mean Gaussian noise of noise_std, much
 * larger than the signal, so Euclidean distances on raw rows are dominated by
 * noise. x is n x (n_signal + n_noise), contiguous.
 */
void toy_buried_signal(test_rng *rng, size_t n, size_t n_classes, size_t n_signal, size_t n_noise,
                       double separation, double signal_std, double noise_std, float *x, int32_t *y);

/*
 * Two classes laid out as XOR in the first two columns: the four quadrant
 * centres (+-1, +-1), label = sign(x0) != sign(x1), spread 0.2; n_noise more
 * columns of noise_std noise. Both classes have their centroid at the origin,
 * so nearest-centroid on raw rows is at chance.
 */
void toy_xor(test_rng *rng, size_t n, size_t n_noise, double noise_std, float *x, int32_t *y);

/* Small uniform matrix in [-1, 1) and labels i % n_classes, for tests that only need valid input. */
void toy_uniform(test_rng *rng, size_t n, size_t d, size_t n_classes, float *x, int32_t *y);

/*
 * Fraction of test rows whose nearest (Euclidean) class centroid, computed on
 * the train rows, is their own class. Rows are contiguous with `dim` columns.
 */
double nearest_centroid_accuracy(const float *train, const int32_t *train_y, size_t n_train, const float *test,
                                 const int32_t *test_y, size_t n_test, size_t dim, size_t n_classes);

/* ---- the kinds under test ------------------------------------------------------ */

/* The kinds that learn from rows with class labels (eb_finetuner_fit). */
enum { N_LABELLED_KINDS = 2 };
extern const eb_finetuner_kind LABELLED_KINDS[N_LABELLED_KINDS];

/* Every kind, for the calls that do not depend on how a finetuner learns. */
enum { N_ALL_KINDS = 3 };
extern const eb_finetuner_kind ALL_KINDS[N_ALL_KINDS];

/* eb_finetuner_default_params(kind) with the fields every test sets. */
eb_finetuner_params test_params(eb_finetuner_kind kind, size_t hidden_dim, size_t n_epochs, uint64_t seed);

/* ---- the data every finetuner test trains on ---------------------------------- */

/*
 * Rows with labels, and the same rows as pairs for the pair learner, so one
 * fixture serves every kind. Labels cycle through 0 .. n_classes-1. Pair 2i
 * is (row i, row i+1), similar exactly when their labels agree; pair 2i+1 is
 * (row i, row i+n_classes), which always share a label (indices wrap).
 */
typedef struct test_data {
    size_t rows, cols, n_classes;
    float *x; /* rows x cols, contiguous */
    int32_t *y;
    size_t n_pairs;
    uint32_t *left, *right;
    float *similarity;
} test_data;

/*
 * n_signal > 0: toy_buried_signal with that many signal columns of the given
 * separation (spread 0.3) among unit-variance noise columns. n_signal 0:
 * toy_uniform (values in [-1, 1)). Never fails (an allocation failure aborts the test).
 */
test_data make_data(size_t rows, size_t cols, size_t n_classes, size_t n_signal, double separation, uint64_t seed);
void data_release(test_data *d);
eb_matrix data_x(const test_data *d);
/* The data's pairs over its rows, with their similarities. */
eb_pairs data_pairs(const test_data *d);

/*
 * Train any kind on the data: fit (partial false) or partial_fit with
 * n_classes and no class names for the kinds with labels, fit_pairs or
 * partial_fit_pairs on the data's pairs for the pair learner.
 */
eb_status train_on(eb_finetuner *model, const test_data *d, bool partial, size_t n_classes);

/* ---- an allocator that counts and fails on demand ------------------------------ */

typedef struct counting_allocator {
    /* Allocation number (0-based, counted since the last reset) that returns NULL; SIZE_MAX for never. */
    size_t fail_at;
    /* Allocation attempts since the last reset, failed ones included. */
    size_t attempts;
    size_t failures;
    size_t live_blocks;
    size_t live_bytes;
    size_t peak_bytes;
    /*
     * When set, free keeps the blocks (counted as freed) instead of releasing
     * them, so a test may look at a freed handle without undefined behaviour
     * in the allocator's memory; counting_allocator_release_kept returns them.
     */
    bool keep_freed;
    void *kept;
} counting_allocator;

/* An eb_allocator drawing on `counter`, which starts clear and never failing. */
eb_allocator counting_allocator_init(counting_allocator *counter);
/* Clear the attempt counter and arm the failure at allocation number fail_at (SIZE_MAX: never). */
void counting_allocator_arm(counting_allocator *counter, size_t fail_at);
/* Release the blocks kept by keep_freed. */
void counting_allocator_release_kept(counting_allocator *counter);

/* ---- snapshots of what a caller can observe of a finetuner ------------------- */

typedef struct model_snapshot {
    eb_finetuner_kind kind;
    eb_finetuner_params params;
    int fitted;
    size_t n_features;
    size_t n_classes;
    size_t output_dim;
    eb_status transform_status;
    float *embedding;  /* transform of the probe, when fitted */
    size_t embedding_count;
    double *history;
    size_t history_length;
    float *weights;    /* through the testing hooks */
    size_t weight_count;
    /* The class names, flattened: the int64 values, or each string's length (size_t) followed by its bytes. */
    eb_label_type label_type;
    size_t label_count;
    unsigned char *labels;
    size_t labels_size;
    unsigned char *metadata;
    size_t metadata_size;
} model_snapshot;

/* probe must have the model's column count when the model is fitted. */
model_snapshot snapshot_finetuner(eb_finetuner *model, eb_matrix probe);
/* Bit-for-bit equality of every field (memcmp of the arrays), params included. */
bool snapshots_identical(const model_snapshot *a, const model_snapshot *b);
/* What training decides, equal bit for bit: everything but the params (n_epochs, callback, ...). */
bool fits_identical(const model_snapshot *a, const model_snapshot *b);
void snapshot_release(model_snapshot *s);

/* Copy of a loss history (malloc'd; NULL when empty). */
double *copy_history(const double *values, size_t length);

/* Whether two views name the same classes: type, count and every name byte for byte. */
bool class_labels_equal(const eb_class_labels *a, const eb_class_labels *b);

/*
 * The CRC a saved model stores, computed from the bytes as docs/model-format.md
 * says: format version 2 covers header bytes 8 .. 24 (version, kind, length)
 * and the payload, version 1 the payload alone. The version is read from the
 * bytes, which must hold at least the 28-byte header.
 */
uint32_t saved_model_crc(const unsigned char *bytes, size_t size);

#endif
