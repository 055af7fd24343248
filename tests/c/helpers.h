/*
 * Shared by the C test programs: deterministic toy data, a nearest-centroid
 * judge, an allocator that counts and fails on demand, and snapshots of a
 * model's observable state for "a failed call changed nothing" checks.
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
} counting_allocator;

/* An eb_allocator drawing on `counter`, which starts clear and never failing. */
eb_allocator counting_allocator_init(counting_allocator *counter);
/* Clear the attempt counter and arm the failure at allocation number fail_at (SIZE_MAX: never). */
void counting_allocator_arm(counting_allocator *counter, size_t fail_at);

/* ---- snapshots of what a caller can observe of a model --------------------- */

typedef struct model_snapshot {
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
} model_snapshot;

/* probe must have the model's column count when the model is fitted. */
model_snapshot snapshot_feedforward(eb_feedforward *model, eb_matrix probe);
model_snapshot snapshot_contrastive(eb_contrastive *model, eb_matrix probe);
/* Bit-for-bit equality of every field (memcmp of the arrays). */
bool snapshots_identical(const model_snapshot *a, const model_snapshot *b);
void snapshot_release(model_snapshot *s);

/* Copy of a loss history (malloc'd; NULL when empty). */
double *copy_history(const double *values, size_t length);

/*
 * The calls both finetuners answer, behind one signature each, so a test can
 * run one table of cases over both models. Creating a model stays with each
 * test: what it needs (params, allocator) differs.
 */
typedef struct model_calls {
    const char *name;
    eb_status (*fit)(void *model, eb_matrix x, const int32_t *y, size_t n_classes);
    eb_status (*partial_fit)(void *model, eb_matrix x, const int32_t *y, size_t n_classes);
    eb_status (*transform)(const void *model, eb_matrix x, eb_mut_matrix out, eb_error *err);
    const char *(*last_error)(const void *model);
    model_snapshot (*snapshot)(void *model, eb_matrix probe);
    void (*release)(void *model);
} model_calls;

extern const model_calls FEEDFORWARD_CALLS;
extern const model_calls CONTRASTIVE_CALLS;

#endif
