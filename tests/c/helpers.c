#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "helpers.h"

#include <zlib.h>

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

/* ---- the kinds and the shared data ---------------------------------------------- */

const eb_finetuner_kind LABELLED_KINDS[N_LABELLED_KINDS] = {EB_KIND_FEEDFORWARD, EB_KIND_CONTRASTIVE};
const eb_finetuner_kind ALL_KINDS[N_ALL_KINDS] = {EB_KIND_FEEDFORWARD, EB_KIND_CONTRASTIVE, EB_KIND_PAIR_LEARNER};

eb_finetuner_params test_params(eb_finetuner_kind kind, size_t hidden_dim, size_t n_epochs, uint64_t seed)
{
    eb_finetuner_params params = eb_finetuner_default_params(kind);
    params.hidden_dim = hidden_dim;
    params.n_epochs = n_epochs;
    params.seed = seed;
    return params;
}

static void *checked_malloc(size_t bytes)
{
    void *p = malloc(bytes == 0 ? 1 : bytes);
    if (p == NULL)
        fail_msg("test data: out of memory for %zu bytes", bytes);
    return p;
}

test_data make_data(size_t rows, size_t cols, size_t n_classes, size_t n_signal, double separation, uint64_t seed)
{
    test_data d;
    memset(&d, 0, sizeof d);
    d.rows = rows;
    d.cols = cols;
    d.n_classes = n_classes;
    d.x = checked_malloc(rows * cols * sizeof *d.x);
    d.y = checked_malloc(rows * sizeof *d.y);
    test_rng rng = test_rng_make(seed);
    if (n_signal > 0)
        toy_buried_signal(&rng, rows, n_classes, n_signal, cols - n_signal, separation, 0.3, 1.0, d.x, d.y);
    else
        toy_uniform(&rng, rows, cols, n_classes, d.x, d.y);
    d.n_pairs = 2 * rows;
    d.left = checked_malloc(d.n_pairs * sizeof *d.left);
    d.right = checked_malloc(d.n_pairs * sizeof *d.right);
    d.similarity = checked_malloc(d.n_pairs * sizeof *d.similarity);
    for (size_t i = 0; i < rows; i++) {
        size_t next = (i + 1) % rows, same = (i + n_classes) % rows;
        d.left[2 * i] = (uint32_t)i;
        d.right[2 * i] = (uint32_t)next;
        d.similarity[2 * i] = d.y[i] == d.y[next] ? 1.0f : 0.0f;
        d.left[2 * i + 1] = (uint32_t)i;
        d.right[2 * i + 1] = (uint32_t)same;
        d.similarity[2 * i + 1] = d.y[i] == d.y[same] ? 1.0f : 0.0f;
    }
    return d;
}

void data_release(test_data *d)
{
    free(d->x);
    free(d->y);
    free(d->left);
    free(d->right);
    free(d->similarity);
    memset(d, 0, sizeof *d);
}

eb_matrix data_x(const test_data *d) { return eb_matrix_view(d->x, d->rows, d->cols); }

eb_pairs data_pairs(const test_data *d)
{
    return eb_pairs_indexed(data_x(d), d->left, d->right, d->n_pairs, d->similarity);
}

eb_status train_on(eb_finetuner *model, const test_data *d, bool partial, size_t n_classes)
{
    if (eb_finetuner_kind_of(model) == EB_KIND_PAIR_LEARNER)
        return partial ? eb_finetuner_partial_fit_pairs(model, data_pairs(d)) : eb_finetuner_fit_pairs(model, data_pairs(d));
    return partial ? eb_finetuner_partial_fit(model, data_x(d), d->y, n_classes, NULL)
                   : eb_finetuner_fit(model, data_x(d), d->y, n_classes, NULL);
}

/* ---- counting allocator ---------------------------------------------------- */

/* Each block carries its size (and a link for kept blocks) in a header, padded so the caller's part stays maximally aligned. */
typedef union block_header {
    struct {
        size_t size;
        union block_header *next_kept;
    } info;
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
    block->info.size = bytes;
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
    counter->live_bytes -= block->info.size;
    if (counter->keep_freed) {
        block->info.next_kept = counter->kept;
        counter->kept = block;
        return;
    }
    free(block);
}

void counting_allocator_release_kept(counting_allocator *counter)
{
    block_header *block = counter->kept;
    while (block != NULL) {
        block_header *next = block->info.next_kept;
        free(block);
        block = next;
    }
    counter->kept = NULL;
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

static size_t label_length(const eb_class_labels *labels, size_t i)
{
    return labels->string_lengths != NULL ? labels->string_lengths[i] : strlen(labels->strings[i]);
}

/* The names flattened to bytes, so snapshots compare them with memcmp. */
static void copy_labels(const eb_class_labels *labels, model_snapshot *s)
{
    s->label_type = labels->type;
    s->label_count = labels->count;
    size_t size = 0;
    for (size_t i = 0; i < labels->count; i++)
        size += labels->type == EB_LABELS_INT64 ? sizeof(int64_t) : sizeof(size_t) + label_length(labels, i);
    s->labels_size = size;
    if (size == 0)
        return;
    s->labels = checked_malloc(size);
    unsigned char *at = s->labels;
    for (size_t i = 0; i < labels->count; i++) {
        if (labels->type == EB_LABELS_INT64) {
            memcpy(at, &labels->integers[i], sizeof(int64_t));
            at += sizeof(int64_t);
        } else {
            size_t length = label_length(labels, i);
            memcpy(at, &length, sizeof(size_t));
            at += sizeof(size_t);
            memcpy(at, labels->strings[i], length);
            at += length;
        }
    }
}

model_snapshot snapshot_finetuner(eb_finetuner *model, eb_matrix probe)
{
    model_snapshot s;
    memset(&s, 0, sizeof s);
    s.kind = eb_finetuner_kind_of(model);
    s.params = eb_finetuner_get_params(model);
    s.fitted = eb_finetuner_is_fitted(model);
    s.n_features = eb_finetuner_n_features(model);
    s.n_classes = eb_finetuner_n_classes(model);
    s.output_dim = eb_finetuner_output_dim(model);
    const double *history = eb_finetuner_loss_history(model, &s.history_length);
    s.history = copy_history(history, s.history_length);
    eb_class_labels labels;
    if (eb_finetuner_class_labels(model, &labels) == EB_OK)
        copy_labels(&labels, &s);
    else
        s.label_type = (eb_label_type)-1;
    size_t metadata_size = 0;
    const void *metadata = eb_finetuner_metadata(model, &metadata_size);
    if (metadata_size > 0) {
        s.metadata = checked_malloc(metadata_size);
        memcpy(s.metadata, metadata, metadata_size);
        s.metadata_size = metadata_size;
    }
    if (s.fitted) {
        size_t count;
        const float *weights = eb__finetuner_weights(model, &count);
        s.weights = copy_floats(weights, count);
        s.weight_count = count;
        s.embedding_count = probe.rows * s.output_dim;
        s.embedding = calloc(s.embedding_count, sizeof(float));
        s.transform_status =
            eb_finetuner_transform(model, probe, eb_mut_matrix_view(s.embedding, probe.rows, s.output_dim), NULL);
    } else {
        float dummy[1];
        s.transform_status = eb_finetuner_transform(model, probe, eb_mut_matrix_view(dummy, 1, 1), NULL);
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

static bool same_params(const eb_finetuner_params *a, const eb_finetuner_params *b)
{
    return a->kind == b->kind && a->hidden_dim == b->hidden_dim && a->n_epochs == b->n_epochs &&
           same_bytes(&a->learning_rate, &b->learning_rate, sizeof(float)) && a->batch_size == b->batch_size &&
           a->seed == b->seed && a->n_neg == b->n_neg && a->layers == b->layers && a->on_epoch == b->on_epoch &&
           a->callback_data == b->callback_data;
}

bool fits_identical(const model_snapshot *a, const model_snapshot *b)
{
    return a->kind == b->kind && a->fitted == b->fitted && a->n_features == b->n_features &&
           a->n_classes == b->n_classes && a->output_dim == b->output_dim &&
           a->transform_status == b->transform_status && a->embedding_count == b->embedding_count &&
           same_bytes(a->embedding, b->embedding, a->embedding_count * sizeof(float)) &&
           a->history_length == b->history_length &&
           same_bytes(a->history, b->history, a->history_length * sizeof(double)) &&
           a->weight_count == b->weight_count &&
           same_bytes(a->weights, b->weights, a->weight_count * sizeof(float)) && a->label_type == b->label_type &&
           a->label_count == b->label_count && a->labels_size == b->labels_size &&
           same_bytes(a->labels, b->labels, a->labels_size) && a->metadata_size == b->metadata_size &&
           same_bytes(a->metadata, b->metadata, a->metadata_size);
}

bool snapshots_identical(const model_snapshot *a, const model_snapshot *b)
{
    return fits_identical(a, b) && same_params(&a->params, &b->params);
}

void snapshot_release(model_snapshot *s)
{
    free(s->embedding);
    free(s->history);
    free(s->weights);
    free(s->labels);
    free(s->metadata);
    memset(s, 0, sizeof *s);
}

bool class_labels_equal(const eb_class_labels *a, const eb_class_labels *b)
{
    if (a->type != b->type || a->count != b->count)
        return false;
    for (size_t i = 0; i < a->count; i++) {
        if (a->type == EB_LABELS_INT64 && a->integers[i] != b->integers[i])
            return false;
        if (a->type == EB_LABELS_UTF8) {
            size_t la = label_length(a, i), lb = label_length(b, i);
            if (la != lb || !same_bytes(a->strings[i], b->strings[i], la))
                return false;
        }
    }
    return true;
}

uint32_t saved_model_crc(const unsigned char *bytes, size_t size)
{
    uint32_t version = 0;
    for (int b = 0; b < 4; b++)
        version |= (uint32_t)bytes[8 + b] << (8 * b);
    uLong crc = crc32(0L, Z_NULL, 0);
    if (version >= 2)
        crc = crc32(crc, bytes + 8, 16);
    return (uint32_t)crc32(crc, bytes + EB_MODEL_HEADER_SIZE, (uInt)(size - EB_MODEL_HEADER_SIZE));
}
