#include "helpers.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "testing.h"

/* ---- random numbers ---------------------------------------------------------- */

test_rng test_rng_make(uint64_t seed)
{
    test_rng rng = {seed ^ 0x5DEECE66DULL};
    return rng;
}

uint64_t test_rng_next(test_rng *rng)
{
    /* splitmix64: a different generator from the library's, so test data never mirrors its draws. */
    uint64_t z = (rng->state += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

double test_rng_uniform(test_rng *rng, double low, double high)
{
    double unit = (double)(test_rng_next(rng) >> 11) * (1.0 / 9007199254740992.0);
    return low + (high - low) * unit;
}

double test_rng_normal(test_rng *rng)
{
    double u1 = test_rng_uniform(rng, DBL_MIN, 1.0);
    double u2 = test_rng_uniform(rng, 0.0, 1.0);
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

/* ---- toy problems ---------------------------------------------------------- */

void toy_buried_signal(test_rng *rng, size_t n, size_t n_classes, size_t n_signal, size_t n_noise,
                       double separation, double signal_std, double noise_std, float *x, int32_t *y)
{
    size_t d = n_signal + n_noise;
    for (size_t i = 0; i < n; i++) {
        int32_t label = (int32_t)(i % n_classes);
        y[i] = label;
        for (size_t s = 0; s < n_signal; s++) {
            double centre = (s % n_classes == (size_t)label ? 0.5 : -0.5) * separation;
            x[i * d + s] = (float)(centre + signal_std * test_rng_normal(rng));
        }
        for (size_t c = n_signal; c < d; c++)
            x[i * d + c] = (float)(noise_std * test_rng_normal(rng));
    }
}

void toy_xor(test_rng *rng, size_t n, size_t n_noise, double noise_std, float *x, int32_t *y)
{
    size_t d = 2 + n_noise;
    for (size_t i = 0; i < n; i++) {
        /* Cycle through the four quadrants so each holds a quarter of the rows. */
        double sx = (i & 1) ? 1.0 : -1.0;
        double sy = (i & 2) ? 1.0 : -1.0;
        y[i] = (sx > 0) != (sy > 0);
        x[i * d + 0] = (float)(sx + 0.2 * test_rng_normal(rng));
        x[i * d + 1] = (float)(sy + 0.2 * test_rng_normal(rng));
        for (size_t c = 2; c < d; c++)
            x[i * d + c] = (float)(noise_std * test_rng_normal(rng));
    }
}

void toy_uniform(test_rng *rng, size_t n, size_t d, size_t n_classes, float *x, int32_t *y)
{
    for (size_t i = 0; i < n; i++) {
        y[i] = (int32_t)(i % n_classes);
        for (size_t c = 0; c < d; c++)
            x[i * d + c] = (float)test_rng_uniform(rng, -1.0, 1.0);
    }
}

double nearest_centroid_accuracy(const float *train, const int32_t *train_y, size_t n_train, const float *test,
                                 const int32_t *test_y, size_t n_test, size_t dim, size_t n_classes)
{
    double *centroids = calloc(n_classes * dim, sizeof *centroids);
    size_t *counts = calloc(n_classes, sizeof *counts);
    if (centroids == NULL || counts == NULL) {
        free(centroids);
        free(counts);
        return -1.0;
    }
    for (size_t i = 0; i < n_train; i++) {
        size_t label = (size_t)train_y[i];
        counts[label]++;
        for (size_t c = 0; c < dim; c++)
            centroids[label * dim + c] += train[i * dim + c];
    }
    for (size_t k = 0; k < n_classes; k++)
        for (size_t c = 0; c < dim; c++)
            centroids[k * dim + c] /= counts[k] > 0 ? (double)counts[k] : 1.0;
    size_t correct = 0;
    for (size_t i = 0; i < n_test; i++) {
        size_t best = 0;
        double best_distance = INFINITY;
        for (size_t k = 0; k < n_classes; k++) {
            if (counts[k] == 0)
                continue;
            double distance = 0.0;
            for (size_t c = 0; c < dim; c++) {
                double diff = test[i * dim + c] - centroids[k * dim + c];
                distance += diff * diff;
            }
            if (distance < best_distance) {
                best_distance = distance;
                best = k;
            }
        }
        correct += best == (size_t)test_y[i];
    }
    free(centroids);
    free(counts);
    return (double)correct / (double)n_test;
}

/* ---- counting allocator ---------------------------------------------------- */

/* Each block carries its size in a header, padded so the caller's part stays maximally aligned. */
typedef union block_header {
    size_t size;
    max_align_t align;
} block_header;

static void *counting_calloc(void *ctx, size_t count, size_t size)
{
    counting_allocator *counter = ctx;
    size_t attempt = counter->attempts++;
    if (attempt == counter->fail_at) {
        counter->failures++;
        return NULL;
    }
    if (size != 0 && count > (SIZE_MAX - sizeof(block_header)) / size)
        return NULL;
    size_t bytes = count * size;
    block_header *block = calloc(1, sizeof(block_header) + bytes);
    if (block == NULL)
        return NULL;
    block->size = bytes;
    counter->live_blocks++;
    counter->live_bytes += bytes;
    if (counter->live_bytes > counter->peak_bytes)
        counter->peak_bytes = counter->live_bytes;
    return block + 1;
}

static void counting_free(void *ctx, void *ptr)
{
    counting_allocator *counter = ctx;
    if (ptr == NULL)
        return;
    block_header *block = (block_header *)ptr - 1;
    counter->live_blocks--;
    counter->live_bytes -= block->size;
    free(block);
}

eb_allocator counting_allocator_init(counting_allocator *counter)
{
    memset(counter, 0, sizeof *counter);
    counter->fail_at = SIZE_MAX;
    eb_allocator mem = {counting_calloc, counting_free, counter};
    return mem;
}

void counting_allocator_arm(counting_allocator *counter, size_t fail_at)
{
    counter->attempts = 0;
    counter->failures = 0;
    counter->fail_at = fail_at;
}

/* ---- snapshots ------------------------------------------------------------- */

double *copy_history(const double *values, size_t length)
{
    if (length == 0)
        return NULL;
    double *copy = malloc(length * sizeof *copy);
    if (copy != NULL)
        memcpy(copy, values, length * sizeof *copy);
    return copy;
}

static float *copy_floats(const float *values, size_t count)
{
    if (count == 0 || values == NULL)
        return NULL;
    float *copy = malloc(count * sizeof *copy);
    if (copy != NULL)
        memcpy(copy, values, count * sizeof *copy);
    return copy;
}

model_snapshot snapshot_feedforward(eb_feedforward *model, eb_matrix probe)
{
    model_snapshot s;
    memset(&s, 0, sizeof s);
    s.fitted = eb_feedforward_is_fitted(model);
    s.n_features = eb_feedforward_n_features(model);
    s.n_classes = eb_feedforward_n_classes(model);
    s.output_dim = eb_feedforward_output_dim(model);
    const double *history = eb_feedforward_loss_history(model, &s.history_length);
    s.history = copy_history(history, s.history_length);
    if (s.fitted) {
        size_t count;
        const float *weights = eb__feedforward_weights(model, &count);
        s.weights = copy_floats(weights, count);
        s.weight_count = count;
        s.embedding_count = probe.rows * s.output_dim;
        s.embedding = calloc(s.embedding_count, sizeof(float));
        s.transform_status = eb_feedforward_transform(model, probe,
                                                      eb_mut_matrix_view(s.embedding, probe.rows, s.output_dim), NULL);
    } else {
        float dummy[1];
        s.transform_status = eb_feedforward_transform(model, probe, eb_mut_matrix_view(dummy, 1, 1), NULL);
    }
    return s;
}

model_snapshot snapshot_contrastive(eb_contrastive *model, eb_matrix probe)
{
    model_snapshot s;
    memset(&s, 0, sizeof s);
    s.fitted = eb_contrastive_is_fitted(model);
    s.n_features = eb_contrastive_n_features(model);
    s.n_classes = eb_contrastive_n_classes(model);
    s.output_dim = eb_contrastive_output_dim(model);
    const double *history = eb_contrastive_loss_history(model, &s.history_length);
    s.history = copy_history(history, s.history_length);
    if (s.fitted) {
        size_t count;
        const float *weights = eb__contrastive_weights(model, &count);
        s.weights = copy_floats(weights, count);
        s.weight_count = count;
        s.embedding_count = probe.rows * s.output_dim;
        s.embedding = calloc(s.embedding_count, sizeof(float));
        s.transform_status = eb_contrastive_transform(model, probe,
                                                      eb_mut_matrix_view(s.embedding, probe.rows, s.output_dim), NULL);
    } else {
        float dummy[1];
        s.transform_status = eb_contrastive_transform(model, probe, eb_mut_matrix_view(dummy, 1, 1), NULL);
    }
    return s;
}

static bool same_bytes(const void *a, const void *b, size_t bytes)
{
    if (bytes == 0)
        return true;
    if (a == NULL || b == NULL)
        return false;
    return memcmp(a, b, bytes) == 0;
}

bool snapshots_identical(const model_snapshot *a, const model_snapshot *b)
{
    return a->fitted == b->fitted && a->n_features == b->n_features && a->n_classes == b->n_classes &&
           a->output_dim == b->output_dim && a->transform_status == b->transform_status &&
           a->embedding_count == b->embedding_count &&
           same_bytes(a->embedding, b->embedding, a->embedding_count * sizeof(float)) &&
           a->history_length == b->history_length &&
           same_bytes(a->history, b->history, a->history_length * sizeof(double)) &&
           a->weight_count == b->weight_count &&
           same_bytes(a->weights, b->weights, a->weight_count * sizeof(float));
}

void snapshot_release(model_snapshot *s)
{
    free(s->embedding);
    free(s->history);
    free(s->weights);
    memset(s, 0, sizeof *s);
}

static eb_status ff_fit(void *m, eb_matrix x, const int32_t *y, size_t k) { return eb_feedforward_fit(m, x, y, k); }
static eb_status ff_partial(void *m, eb_matrix x, const int32_t *y, size_t k)
{
    return eb_feedforward_partial_fit(m, x, y, k);
}
static eb_status ff_transform(const void *m, eb_matrix x, eb_mut_matrix out, eb_error *err)
{
    return eb_feedforward_transform(m, x, out, err);
}
static const char *ff_last_error(const void *m) { return eb_feedforward_last_error(m); }
static model_snapshot ff_snapshot(void *m, eb_matrix probe) { return snapshot_feedforward(m, probe); }
static void ff_release(void *m) { eb_feedforward_free(m); }

static eb_status cl_fit(void *m, eb_matrix x, const int32_t *y, size_t k) { return eb_contrastive_fit(m, x, y, k); }
static eb_status cl_partial(void *m, eb_matrix x, const int32_t *y, size_t k)
{
    return eb_contrastive_partial_fit(m, x, y, k);
}
static eb_status cl_transform(const void *m, eb_matrix x, eb_mut_matrix out, eb_error *err)
{
    return eb_contrastive_transform(m, x, out, err);
}
static const char *cl_last_error(const void *m) { return eb_contrastive_last_error(m); }
static model_snapshot cl_snapshot(void *m, eb_matrix probe) { return snapshot_contrastive(m, probe); }
static void cl_release(void *m) { eb_contrastive_free(m); }

const model_calls FEEDFORWARD_CALLS = {"feedforward", ff_fit, ff_partial, ff_transform,
                                       ff_last_error, ff_snapshot, ff_release};
const model_calls CONTRASTIVE_CALLS = {"contrastive", cl_fit, cl_partial, cl_transform,
                                       cl_last_error, cl_snapshot, cl_release};
