/*
 * Fine-tune on a few labelled handwritten digits and measure whether the new
 * embedding separates the classes better than the raw pixels.
 *
 * Reads the 8x8 digits data set (1797 rows of 64 pixels in 0..16 plus a label)
 * that scikit-learn ships, shuffles it with a fixed seed, fits both finetuners
 * on the first TRAIN_ROWS rows and scores every other row with a nearest-
 * centroid classifier built from the training rows, in three spaces: raw
 * pixels, the feed-forward hidden layer and the contrastive re-embedding.
 *
 * Usage: finetune_digits [digits.csv.gz [shuffle-seed]]
 * The file may also be uncompressed; zlib reads both.
 */
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "embetter/embetter.h"

#define DEFAULT_DIGITS_PATH "/usr/lib/python3/dist-packages/sklearn/datasets/data/digits.csv.gz"
#define DEFAULT_SHUFFLE_SEED 42u

enum {
    PIXELS = 64,
    N_CLASSES = 10,
    MAX_PIXEL = 16,
    TRAIN_ROWS = 200,
    /* A well-formed line is at most 65 fields of a few characters; anything longer is not this file. */
    LINE_CAPACITY = 2048,
    MAX_ROWS = 100000
};

typedef struct dataset {
    float *pixels; /* rows x PIXELS, scaled to 0..1 */
    int32_t *labels;
    size_t rows;
} dataset;

static void dataset_free(dataset *data)
{
    free(data->pixels);
    free(data->labels);
    data->pixels = NULL;
    data->labels = NULL;
    data->rows = 0;
}

/* Parses one CSV line of PIXELS pixels and a label into pixels_out/label_out; on failure writes why into problem. */
static int parse_digit_line(char *line, float *pixels_out, int32_t *label_out, char *problem, size_t problem_size)
{
    char *cursor = line;
    for (int column = 1; column <= PIXELS + 1; column++) {
        char *end = NULL;
        errno = 0;
        const double value = strtod(cursor, &end);
        if (end == cursor) {
            snprintf(problem, problem_size, "column %d: expected a number, found \"%.20s\"", column, cursor);
            return 0;
        }
        if (errno != 0 || !isfinite(value)) {
            snprintf(problem, problem_size, "column %d: value is not a finite number", column);
            return 0;
        }
        const char expected_end = column <= PIXELS ? ',' : '\0';
        const char found = *end;
        if (found != expected_end) {
            if (column <= PIXELS)
                snprintf(problem, problem_size, "column %d: expected ',' after the value, found %s (a row needs %d "
                         "pixel columns and a label)", column, found == '\0' ? "the end of the line" : "other text",
                         PIXELS);
            else
                snprintf(problem, problem_size, "column %d: expected the end of the line after the label "
                         "(a row has exactly %d columns)", column, PIXELS + 1);
            return 0;
        }
        if (column <= PIXELS) {
            if (value < 0.0 || value > MAX_PIXEL) {
                snprintf(problem, problem_size, "column %d: pixel value %g is outside 0..%d", column, value,
                         MAX_PIXEL);
                return 0;
            }
            /* The network's sigmoid layer and Adam's default step sizes behave best on unit-range inputs. */
            pixels_out[column - 1] = (float)(value / MAX_PIXEL);
        } else {
            if (value != floor(value) || value < 0.0 || value >= N_CLASSES) {
                snprintf(problem, problem_size, "column %d: label %g is not a whole number in 0..%d", column, value,
                         N_CLASSES - 1);
                return 0;
            }
            *label_out = (int32_t)value;
        }
        cursor = end + 1;
    }
    return 1;
}

/* Loads the whole file; prints the file, line and problem and returns 0 on any failure. */
static int load_digits(const char *path, dataset *out)
{
    memset(out, 0, sizeof *out);
    gzFile file = gzopen(path, "rb");
    if (file == NULL) {
        fprintf(stderr, "error: cannot open %s: %s\n", path, errno != 0 ? strerror(errno) : "zlib could not open it");
        return 0;
    }
    size_t capacity = 0;
    char line[LINE_CAPACITY];
    char problem[200];
    size_t line_number = 0;
    int ok = 1;
    while (ok) {
        if (gzgets(file, line, (int)sizeof line) == NULL) {
            int zlib_status = Z_OK;
            const char *message = gzerror(file, &zlib_status);
            if (zlib_status != Z_OK && zlib_status != Z_STREAM_END) {
                fprintf(stderr, "error: %s: reading after line %zu failed: %s\n", path, line_number, message);
                ok = 0;
            }
            break;
        }
        line_number++;
        const size_t length = strlen(line);
        if (length == sizeof line - 1 && line[length - 1] != '\n') {
            fprintf(stderr, "error: %s: line %zu is longer than %d characters; this is not the digits file\n", path,
                    line_number, LINE_CAPACITY - 1);
            ok = 0;
            break;
        }
        if (length == 0 || line[length - 1] != '\n') {
            /* A last line without a newline is fine, unless zlib stopped on damaged or truncated data. */
            int zlib_status = Z_OK;
            const char *message = gzerror(file, &zlib_status);
            if (zlib_status != Z_OK && zlib_status != Z_STREAM_END) {
                fprintf(stderr, "error: %s: reading line %zu failed: %s\n", path, line_number, message);
                ok = 0;
                break;
            }
        }
        line[strcspn(line, "\r\n")] = '\0';
        if (out->rows == MAX_ROWS) {
            fprintf(stderr, "error: %s: line %zu: more than %d rows; this is not the digits file\n", path,
                    line_number, MAX_ROWS);
            ok = 0;
            break;
        }
        if (out->rows == capacity) {
            capacity = capacity == 0 ? 2048 : capacity * 2;
            float *pixels = realloc(out->pixels, capacity * PIXELS * sizeof *pixels);
            if (pixels != NULL)
                out->pixels = pixels;
            int32_t *labels = realloc(out->labels, capacity * sizeof *labels);
            if (labels != NULL)
                out->labels = labels;
            if (pixels == NULL || labels == NULL) {
                fprintf(stderr, "error: out of memory reading %s at line %zu\n", path, line_number);
                ok = 0;
                break;
            }
        }
        if (!parse_digit_line(line, out->pixels + out->rows * PIXELS, out->labels + out->rows, problem,
                              sizeof problem)) {
            fprintf(stderr, "error: %s: line %zu, %s\n", path, line_number, problem);
            ok = 0;
            break;
        }
        out->rows++;
    }
    gzclose(file);
    if (ok && out->rows <= TRAIN_ROWS) {
        fprintf(stderr, "error: %s has %zu rows; at least %d are needed (%d to train, the rest to test)\n", path,
                out->rows, TRAIN_ROWS + 1, TRAIN_ROWS);
        ok = 0;
    }
    if (!ok)
        dataset_free(out);
    return ok;
}

/* splitmix64: a tiny, well-mixed generator, so the shuffle is the same on every platform. */
static uint64_t next_random(uint64_t *state)
{
    uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static void shuffle_rows(dataset *data, uint64_t seed)
{
    uint64_t state = seed;
    for (size_t i = data->rows - 1; i > 0; i--) {
        const size_t j = (size_t)(next_random(&state) % (i + 1));
        float row[PIXELS];
        memcpy(row, data->pixels + i * PIXELS, sizeof row);
        memcpy(data->pixels + i * PIXELS, data->pixels + j * PIXELS, sizeof row);
        memcpy(data->pixels + j * PIXELS, row, sizeof row);
        const int32_t label = data->labels[i];
        data->labels[i] = data->labels[j];
        data->labels[j] = label;
    }
}

/* Scales each row of a rows x dim matrix to unit length in place, so distances compare directions only. */
static void normalise_rows(float *matrix, size_t rows, size_t dim)
{
    for (size_t r = 0; r < rows; r++) {
        double squares = 0.0;
        for (size_t c = 0; c < dim; c++)
            squares += (double)matrix[r * dim + c] * matrix[r * dim + c];
        if (squares == 0.0)
            continue;
        const double scale = 1.0 / sqrt(squares);
        for (size_t c = 0; c < dim; c++)
            matrix[r * dim + c] = (float)(matrix[r * dim + c] * scale);
    }
}

/*
 * Share of test rows whose nearest class centroid (mean of that class's
 * training rows) carries their own label. Rows are first scaled to unit
 * length (so this is cosine nearest-centroid): the contrastive finetuner
 * optimises cosines, and every space is scored the same way. Overwrites train
 * and test with their normalised rows.
 */
static double nearest_centroid_accuracy(float *train, const int32_t *train_labels, size_t train_rows, float *test,
                                        const int32_t *test_labels, size_t test_rows, size_t dim)
{
    double *centroids = calloc(N_CLASSES * dim, sizeof *centroids);
    size_t counts[N_CLASSES] = {0};
    if (centroids == NULL)
        return -1.0;
    normalise_rows(train, train_rows, dim);
    normalise_rows(test, test_rows, dim);
    for (size_t r = 0; r < train_rows; r++) {
        counts[train_labels[r]]++;
        for (size_t c = 0; c < dim; c++)
            centroids[train_labels[r] * dim + c] += train[r * dim + c];
    }
    for (size_t k = 0; k < N_CLASSES; k++)
        for (size_t c = 0; c < dim && counts[k] > 0; c++)
            centroids[k * dim + c] /= (double)counts[k];
    size_t correct = 0;
    for (size_t r = 0; r < test_rows; r++) {
        double best_distance = INFINITY;
        int32_t best_class = -1;
        for (int32_t k = 0; k < N_CLASSES; k++) {
            if (counts[k] == 0)
                continue;
            double distance = 0.0;
            for (size_t c = 0; c < dim; c++) {
                const double diff = test[r * dim + c] - centroids[k * dim + c];
                distance += diff * diff;
            }
            if (distance < best_distance) {
                best_distance = distance;
                best_class = k;
            }
        }
        correct += best_class == test_labels[r];
    }
    free(centroids);
    return (double)correct / (double)test_rows;
}

static int report_failure(const char *what, eb_status status, const char *detail)
{
    fprintf(stderr, "error: %s failed with %s: %s\n", what, eb_status_string(status),
            detail != NULL && detail[0] != '\0' ? detail : "(no detail)");
    return 0;
}

typedef struct split {
    eb_matrix train;
    const int32_t *train_labels;
    eb_matrix test;
    const int32_t *test_labels;
} split;

/* Where a finetuner writes the embeddings of both parts; room for `capacity` columns per row. */
typedef struct embedding {
    float *train;
    float *test;
    size_t capacity;
    size_t width;
} embedding;

/*
 * Fits a finetuner of any kind (params.kind) on the training rows, naming the
 * classes by their digit so a saved model would say which is which, and
 * embeds both parts; returns 0 on failure.
 */
static int embed(const eb_finetuner_params *params, const split *s, embedding *out)
{
    const char *kind = eb_finetuner_kind_name(params->kind);
    static const int64_t digits[N_CLASSES] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9};
    const eb_class_labels names = {EB_LABELS_INT64, N_CLASSES, digits, NULL, NULL};
    eb_error err;
    eb_finetuner *model = NULL;
    eb_status status = eb_finetuner_create(params, NULL, &model, &err);
    if (status != EB_OK)
        return report_failure("eb_finetuner_create", status, err.message);
    int ok = 1;
    status = eb_finetuner_fit(model, s->train, s->train_labels, N_CLASSES, &names);
    if (status != EB_OK)
        ok = report_failure("eb_finetuner_fit", status, eb_finetuner_last_error(model));
    out->width = eb_finetuner_output_dim(model);
    if (ok && out->width > out->capacity) {
        fprintf(stderr, "error: the %s embedding has %zu columns, more than the %zu reserved\n", kind, out->width,
                out->capacity);
        ok = 0;
    }
    if (ok) {
        size_t epochs = 0;
        const double *losses = eb_finetuner_loss_history(model, &epochs);
        printf("  %s training loss: %.4f after epoch 1, %.4f after epoch %zu\n", kind, losses[0], losses[epochs - 1],
               epochs);
        status = eb_finetuner_transform(model, s->train, eb_mut_matrix_view(out->train, s->train.rows, out->width),
                                        &err);
        if (status != EB_OK)
            ok = report_failure("eb_finetuner_transform (training rows)", status, err.message);
    }
    if (ok) {
        status = eb_finetuner_transform(model, s->test, eb_mut_matrix_view(out->test, s->test.rows, out->width),
                                        &err);
        if (status != EB_OK)
            ok = report_failure("eb_finetuner_transform (held-out rows)", status, err.message);
    }
    eb_finetuner_free(model);
    return ok;
}

static int parse_seed(const char *text, uint64_t *seed)
{
    char *end = NULL;
    errno = 0;
    const unsigned long long value = strtoull(text, &end, 10);
    if (end == text || *end != '\0' || errno != 0 || text[0] == '-')
        return 0;
    *seed = (uint64_t)value;
    return 1;
}

static void print_hidden_dim(size_t hidden_dim)
{
    if (hidden_dim == EB_HIDDEN_DIM_AS_INPUT)
        printf("as input (%d)", PIXELS);
    else
        printf("%zu", hidden_dim);
}

int main(int argc, char **argv)
{
    if (argc > 3 || (argc > 1 && (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0))) {
        fprintf(stderr, "usage: %s [digits.csv.gz [shuffle-seed]]\n  default file: %s\n  default seed: %u\n",
                argv[0], DEFAULT_DIGITS_PATH, DEFAULT_SHUFFLE_SEED);
        return 2;
    }
    const char *path = argc > 1 ? argv[1] : DEFAULT_DIGITS_PATH;
    uint64_t shuffle_seed = DEFAULT_SHUFFLE_SEED;
    if (argc > 2 && !parse_seed(argv[2], &shuffle_seed)) {
        fprintf(stderr, "error: shuffle-seed \"%s\" is not a non-negative whole number\n", argv[2]);
        return 2;
    }

    dataset data;
    if (!load_digits(path, &data))
        return 1;
    shuffle_rows(&data, shuffle_seed);

    const size_t test_rows = data.rows - TRAIN_ROWS;
    split s;
    s.train = eb_matrix_view(data.pixels, TRAIN_ROWS, PIXELS);
    s.train_labels = data.labels;
    s.test = eb_matrix_view(data.pixels + (size_t)TRAIN_ROWS * PIXELS, test_rows, PIXELS);
    s.test_labels = data.labels + TRAIN_ROWS;

    /* Half the input width forces a summary; 500 full-batch Adam steps converge on 200 rows. */
    eb_finetuner_params ff = eb_finetuner_default_params(EB_KIND_FEEDFORWARD);
    ff.hidden_dim = 32;
    ff.n_epochs = 500;
    ff.learning_rate = 0.01f;
    ff.seed = 7;

    /*
     * Minibatches of 64 pairs give the layer ~40 Adam steps per epoch, so a
     * step size of 0.01 and the default 20 epochs suffice; more epochs start
     * to overfit 200 rows (held-out accuracy drops while the loss still falls).
     */
    eb_finetuner_params cl = eb_finetuner_default_params(EB_KIND_CONTRASTIVE);
    cl.hidden_dim = EB_HIDDEN_DIM_AS_INPUT;
    cl.n_neg = 3;
    cl.n_epochs = 20;
    cl.learning_rate = 0.01f;
    cl.batch_size = 64;
    cl.seed = 7;

    printf("libembetter %s: fine-tuning on handwritten digits\n", eb_version());
    printf("data: %s\n", path);
    printf("  %zu rows of %d pixels (scaled 0..16 -> 0..1), %d classes; shuffle seed %llu\n", data.rows, PIXELS,
           N_CLASSES, (unsigned long long)shuffle_seed);
    printf("  %d rows to fine-tune on, %zu held-out rows to score\n", TRAIN_ROWS, test_rows);
    printf("feed-forward: hidden_dim=");
    print_hidden_dim(ff.hidden_dim);
    printf(" n_epochs=%zu learning_rate=%g batch_size=%zu (0 = full batch) seed=%llu\n", ff.n_epochs,
           (double)ff.learning_rate, ff.batch_size, (unsigned long long)ff.seed);
    printf("contrastive:  hidden_dim=");
    print_hidden_dim(cl.hidden_dim);
    printf(" n_neg=%zu n_epochs=%zu learning_rate=%g batch_size=%zu seed=%llu\n", cl.n_neg, cl.n_epochs,
           (double)cl.learning_rate, cl.batch_size, (unsigned long long)cl.seed);

    /* Every space is at most as wide as the input: ff.hidden_dim is below it and cl keeps the input width. */
    embedding space;
    space.capacity = ff.hidden_dim > PIXELS ? ff.hidden_dim : PIXELS;
    space.width = 0;
    space.train = malloc((size_t)TRAIN_ROWS * space.capacity * sizeof *space.train);
    space.test = malloc(test_rows * space.capacity * sizeof *space.test);
    int ok = space.train != NULL && space.test != NULL;
    if (!ok)
        fprintf(stderr, "error: out of memory for the embeddings\n");

    double raw = -1.0, feedforward = -1.0, contrastive = -1.0;
    size_t feedforward_width = 0, contrastive_width = 0;
    if (ok) {
        /* The scorer normalises its inputs in place, so it gets a copy of the raw pixels. */
        memcpy(space.train, s.train.data, (size_t)TRAIN_ROWS * PIXELS * sizeof *space.train);
        memcpy(space.test, s.test.data, test_rows * PIXELS * sizeof *space.test);
        raw = nearest_centroid_accuracy(space.train, s.train_labels, TRAIN_ROWS, space.test, s.test_labels,
                                        test_rows, PIXELS);
        ok = embed(&ff, &s, &space);
    }
    if (ok) {
        feedforward_width = space.width;
        feedforward = nearest_centroid_accuracy(space.train, s.train_labels, TRAIN_ROWS, space.test, s.test_labels,
                                                test_rows, space.width);
        ok = embed(&cl, &s, &space);
    }
    if (ok) {
        contrastive_width = space.width;
        contrastive = nearest_centroid_accuracy(space.train, s.train_labels, TRAIN_ROWS, space.test, s.test_labels,
                                                test_rows, space.width);
    }
    if (ok && (raw < 0.0 || feedforward < 0.0 || contrastive < 0.0)) {
        fprintf(stderr, "error: out of memory for the class centroids\n");
        ok = 0;
    }
    if (ok) {
        printf("held-out cosine nearest-centroid accuracy (%zu rows, centroids from the %d training rows):\n",
               test_rows, TRAIN_ROWS);
        printf("  raw pixels             (%2d dims): %.4f\n", PIXELS, raw);
        printf("  feed-forward embedding (%2zu dims): %.4f (%+.4f vs raw)\n", feedforward_width, feedforward,
               feedforward - raw);
        printf("  contrastive embedding  (%2zu dims): %.4f (%+.4f vs raw)\n", contrastive_width, contrastive,
               contrastive - raw);
        printf("feed-forward beats raw: %s\n", feedforward > raw ? "yes" : "no");
        printf("contrastive beats raw: %s\n", contrastive > raw ? "yes" : "no");
    }
    free(space.train);
    free(space.test);
    dataset_free(&data);
    return ok ? 0 : 1;
}
