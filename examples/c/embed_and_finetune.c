/*
 * From text to a fine-tuned embedding in plain C: sentence embeddings from a
 * local all-MiniLM-L6-v2 directory, a feed-forward finetuner trained on 200
 * labelled texts, the model saved, and held-out accuracy before and after.
 *
 * Input: one file per category in the format of Debian's fortunes package
 * (texts separated by lines holding only "%"); the file's name is the
 * category, and the categories become the saved model's class names. The
 * texts are split per category into training rows (200 in all, in the
 * categories' proportions) and held-out rows (all the others), with a fixed
 * seed. Both embeddings are judged by the same nearest-centroid classifier
 * (cosine to the mean of each category's training rows), fitted on the
 * training rows only and scored on the held-out rows.
 *
 * Usage: embed_and_finetune MODEL_DIR SAVED_MODEL CATEGORY_FILE CATEGORY_FILE...
 *   MODEL_DIR    a sentence-transformers directory, e.g. ~/.cache/libembetter/models/all-MiniLM-L6-v2
 *                (bash scripts/fetch-models.sh all-MiniLM-L6-v2 puts it there)
 *   SAVED_MODEL  where the fine-tuned model is written (eb_finetuner_save)
 * e.g. embed_and_finetune ~/.cache/libembetter/models/all-MiniLM-L6-v2 fortunes.ebm \
 *        /usr/share/games/fortunes/{computers,politics,songs-poems,startrek,zippy}
 *
 * The encoder splits its batches over threads of its own; with
 * OPENBLAS_NUM_THREADS=1 in the environment OpenBLAS does not start more
 * threads inside each product to compete with them (the program says so when
 * it is not set).
 */
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "embetter/embetter.h"

enum {
    TRAIN_ROWS = 200,
    HIDDEN_DIM = 50,
    MAX_CATEGORIES = 64,
    /* A fortunes file is tens of kilobytes; anything far larger is not one. */
    MAX_FILE_BYTES = 64 << 20
};

static const uint64_t SPLIT_SEED = 42;
static const uint64_t TRAINING_SEED = 0;

typedef struct corpus {
    char *buffers[MAX_CATEGORIES]; /* each file's contents; the texts point into them */
    const char *names[MAX_CATEGORIES];
    size_t n_categories;
    eb_text *texts;
    int32_t *labels;
    size_t n_texts;
    size_t capacity;
} corpus;

static void corpus_free(corpus *data)
{
    for (size_t i = 0; i < data->n_categories; i++)
        free(data->buffers[i]);
    free(data->texts);
    free(data->labels);
    memset(data, 0, sizeof *data);
}

static int add_text(corpus *data, const char *start, size_t length, int32_t label)
{
    if (data->n_texts == data->capacity) {
        const size_t capacity = data->capacity ? 2 * data->capacity : 1024;
        eb_text *texts = realloc(data->texts, capacity * sizeof *texts);
        if (!texts)
            return -1;
        data->texts = texts;
        int32_t *labels = realloc(data->labels, capacity * sizeof *labels);
        if (!labels)
            return -1;
        data->labels = labels;
        data->capacity = capacity;
    }
    data->texts[data->n_texts] = (eb_text){start, length};
    data->labels[data->n_texts] = label;
    data->n_texts++;
    return 0;
}

static int is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

/* The category name of a path: its last component. */
static const char *base_name(const char *path)
{
    const char *slash = strrchr(path, '/');
    return slash ? slash + 1 : path;
}

/* Reads a whole file into a NUL-terminated buffer; prints why and returns NULL on failure. */
static char *read_file(const char *path, size_t *size_out)
{
    struct stat info;
    if (stat(path, &info) != 0) {
        fprintf(stderr, "error: cannot open %s: %s\n", path, strerror(errno));
        return NULL;
    }
    if (!S_ISREG(info.st_mode)) {
        fprintf(stderr, "error: %s is not a regular file\n", path);
        return NULL;
    }
    if (info.st_size > MAX_FILE_BYTES) {
        fprintf(stderr, "error: %s has %lld bytes; a category file of more than %d is not supported\n", path,
                (long long)info.st_size, MAX_FILE_BYTES);
        return NULL;
    }
    FILE *file = fopen(path, "rb");
    if (!file) {
        fprintf(stderr, "error: cannot open %s: %s\n", path, strerror(errno));
        return NULL;
    }
    char *buffer = malloc((size_t)info.st_size + 1);
    if (!buffer) {
        fclose(file);
        fprintf(stderr, "error: out of memory reading %s\n", path);
        return NULL;
    }
    const size_t got = fread(buffer, 1, (size_t)info.st_size, file);
    const int failed = ferror(file);
    fclose(file);
    if (failed || got != (size_t)info.st_size) {
        fprintf(stderr, "error: cannot read %s\n", path);
        free(buffer);
        return NULL;
    }
    buffer[got] = '\0';
    *size_out = got;
    return buffer;
}

/*
 * Splits one category file into texts at lines that are exactly "%", trims
 * blank space around each text and drops empty ones. Texts must be valid
 * UTF-8: the encoder would refuse them anyway, but here the message can name
 * the file and the byte.
 */
static int read_category(corpus *data, const char *path)
{
    const int32_t label = (int32_t)data->n_categories;
    const char *name = base_name(path);
    if (*name == '\0') {
        fprintf(stderr, "error: %s names a directory, not a category file\n", path);
        return -1;
    }
    for (size_t i = 0; i < data->n_categories; i++) {
        if (strcmp(data->names[i], name) == 0) {
            fprintf(stderr, "error: two category files are named %s; category names must differ\n", name);
            return -1;
        }
    }
    size_t size = 0;
    char *buffer = read_file(path, &size);
    if (!buffer)
        return -1;
    data->buffers[data->n_categories] = buffer;
    data->names[data->n_categories] = name;
    data->n_categories++;

    size_t bad_offset = 0;
    if (!eb_utf8_valid(buffer, size, &bad_offset)) {
        fprintf(stderr, "error: %s is not valid UTF-8 at byte %zu\n", path, bad_offset);
        return -1;
    }
    const size_t before = data->n_texts;
    const char *text_start = buffer;
    const char *line = buffer;
    const char *end = buffer + size;
    while (line <= end) {
        const char *newline = memchr(line, '\n', (size_t)(end - line));
        const char *line_end = newline ? newline : end;
        const int separator = line_end - line == 1 && line[0] == '%';
        if (separator || !newline) {
            const char *text_end = separator ? line : end;
            const char *first = text_start;
            while (first < text_end && is_space(*first))
                first++;
            while (text_end > first && is_space(text_end[-1]))
                text_end--;
            if (text_end > first && add_text(data, first, (size_t)(text_end - first), label) != 0) {
                fprintf(stderr, "error: out of memory reading %s\n", path);
                return -1;
            }
            text_start = line_end + 1;
        }
        if (!newline)
            break;
        line = newline + 1;
    }
    if (data->n_texts - before < 2) {
        fprintf(stderr, "error: %s holds %zu text(s); every category needs at least 2 (one to train on, one to "
                        "judge by)\n", path, data->n_texts - before);
        return -1;
    }
    return 0;
}

/* splitmix64: a fixed, portable sequence, so the split is the same everywhere. */
static uint64_t next_random(uint64_t *state)
{
    uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/*
 * Marks TRAIN_ROWS rows as training rows, each category getting its share of
 * them (at least one), chosen at random within the category.
 */
static int choose_training_rows(const corpus *data, unsigned char *is_train)
{
    size_t per_category[MAX_CATEGORIES] = {0};
    for (size_t i = 0; i < data->n_texts; i++)
        per_category[data->labels[i]]++;
    size_t quota[MAX_CATEGORIES];
    size_t assigned = 0;
    for (size_t c = 0; c < data->n_categories; c++) {
        quota[c] = per_category[c] * TRAIN_ROWS / data->n_texts;
        if (quota[c] == 0)
            quota[c] = 1;
        assigned += quota[c];
    }
    /* Rounding down leaves a few rows over: they go to the largest categories, which can spare them. */
    for (size_t extra = 0; assigned < TRAIN_ROWS && extra < TRAIN_ROWS; extra++) {
        size_t largest = 0;
        for (size_t c = 1; c < data->n_categories; c++)
            if (per_category[c] - quota[c] > per_category[largest] - quota[largest])
                largest = c;
        quota[largest]++;
        assigned++;
    }
    if (assigned != TRAIN_ROWS)
        return -1;

    size_t *order = malloc(data->n_texts * sizeof *order);
    if (!order)
        return -1;
    for (size_t i = 0; i < data->n_texts; i++)
        order[i] = i;
    uint64_t state = SPLIT_SEED;
    for (size_t i = data->n_texts; i > 1; i--) {
        const size_t j = (size_t)(next_random(&state) % i);
        const size_t swap = order[i - 1];
        order[i - 1] = order[j];
        order[j] = swap;
    }
    memset(is_train, 0, data->n_texts);
    for (size_t k = 0; k < data->n_texts; k++) {
        const size_t row = order[k];
        const int32_t label = data->labels[row];
        if (quota[label] > 0) {
            is_train[row] = 1;
            quota[label]--;
        }
    }
    free(order);
    return 0;
}

/*
 * Nearest-centroid accuracy on the held-out rows of an n x dim embedding: each
 * category's centroid is the mean of its unit-length training rows, and a
 * held-out row gets the category of the centroid with the highest cosine.
 */
static double nearest_centroid_accuracy(const float *embedding, size_t dim, const corpus *data,
                                        const unsigned char *is_train)
{
    const size_t k = data->n_categories;
    double *centroids = calloc(k * dim, sizeof *centroids);
    if (!centroids)
        return -1.0;
    for (size_t i = 0; i < data->n_texts; i++) {
        if (!is_train[i])
            continue;
        const float *row = embedding + i * dim;
        double norm = 0.0;
        for (size_t j = 0; j < dim; j++)
            norm += (double)row[j] * row[j];
        norm = norm > 0.0 ? sqrt(norm) : 1.0;
        double *centroid = centroids + (size_t)data->labels[i] * dim;
        for (size_t j = 0; j < dim; j++)
            centroid[j] += row[j] / norm;
    }
    for (size_t c = 0; c < k; c++) {
        double norm = 0.0;
        for (size_t j = 0; j < dim; j++)
            norm += centroids[c * dim + j] * centroids[c * dim + j];
        norm = norm > 0.0 ? sqrt(norm) : 1.0;
        for (size_t j = 0; j < dim; j++)
            centroids[c * dim + j] /= norm;
    }
    size_t correct = 0;
    size_t held_out = 0;
    for (size_t i = 0; i < data->n_texts; i++) {
        if (is_train[i])
            continue;
        const float *row = embedding + i * dim;
        size_t best = 0;
        double best_score = -INFINITY;
        /* The row's own norm scales every cosine alike, so the largest dot product decides. */
        for (size_t c = 0; c < k; c++) {
            double score = 0.0;
            for (size_t j = 0; j < dim; j++)
                score += row[j] * centroids[c * dim + j];
            if (score > best_score) {
                best_score = score;
                best = c;
            }
        }
        correct += (int32_t)best == data->labels[i];
        held_out++;
    }
    free(centroids);
    return held_out ? (double)correct / (double)held_out : 0.0;
}

/* Copies the rows with is_train[i] == want into a new contiguous array. */
static float *gather_rows(const float *embedding, size_t dim, size_t n, const unsigned char *is_train,
                          unsigned char want, size_t *rows_out)
{
    size_t rows = 0;
    for (size_t i = 0; i < n; i++)
        rows += is_train[i] == want;
    float *out = malloc((rows ? rows : 1) * dim * sizeof *out);
    if (!out)
        return NULL;
    size_t r = 0;
    for (size_t i = 0; i < n; i++)
        if (is_train[i] == want)
            memcpy(out + (r++) * dim, embedding + i * dim, dim * sizeof *out);
    *rows_out = rows;
    return out;
}

/* The model's embedding of all n rows in a new array; on failure says why, naming the model, and returns NULL. */
static float *fine_tuned_embedding(const eb_finetuner *model, const float *embedding, size_t n, size_t dim,
                                   const char *which)
{
    const size_t out_dim = eb_finetuner_output_dim(model);
    float *out = malloc(n * out_dim * sizeof *out);
    if (!out) {
        fprintf(stderr, "error: out of memory for %zu x %zu embeddings\n", n, out_dim);
        return NULL;
    }
    eb_error err = {0};
    if (eb_finetuner_transform(model, eb_matrix_view(embedding, n, dim), eb_mut_matrix_view(out, n, out_dim), &err) !=
        EB_OK) {
        fprintf(stderr, "error: transform with %s failed: %s\n", which, err.message);
        free(out);
        return NULL;
    }
    return out;
}

static void usage(FILE *stream)
{
    fprintf(stream, "usage: embed_and_finetune MODEL_DIR SAVED_MODEL CATEGORY_FILE CATEGORY_FILE...\n"
                    "  MODEL_DIR: a sentence-transformers model directory (bash scripts/fetch-models.sh "
                    "all-MiniLM-L6-v2 fetches one\n"
                    "             into ~/.cache/libembetter/models/all-MiniLM-L6-v2)\n"
                    "  SAVED_MODEL: where to write the fine-tuned model\n"
                    "  CATEGORY_FILE: texts of one category separated by '%%' lines (e.g. "
                    "/usr/share/games/fortunes/zippy);\n"
                    "                 the file name is the category\n");
}

int main(int argc, char **argv)
{
    if (argc == 2 && (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0)) {
        usage(stdout);
        return 0;
    }
    if (argc < 5) {
        fprintf(stderr, "error: expected a model directory, an output path and at least two category files\n");
        usage(stderr);
        return 2;
    }
    const char *model_dir = argv[1];
    const char *saved_path = argv[2];
    if (argc - 3 > MAX_CATEGORIES) {
        fprintf(stderr, "error: %d category files given; at most %d are supported\n", argc - 3, MAX_CATEGORIES);
        return 2;
    }

    int status = 1;
    corpus data = {0};
    unsigned char *is_train = NULL;
    float *embedding = NULL, *train_raw = NULL, *all_tuned = NULL, *reloaded_tuned = NULL;
    int32_t *train_labels = NULL;
    eb_encoder *encoder = NULL;
    eb_finetuner *model = NULL, *reloaded = NULL;
    eb_error err = {0};

    /* The model directory first: a missing model is the likeliest mistake and the cheapest to report. */
    struct stat info;
    if (stat(model_dir, &info) != 0 || !S_ISDIR(info.st_mode)) {
        fprintf(stderr, "error: model directory %s %s; fetch all-MiniLM-L6-v2 with: bash scripts/fetch-models.sh "
                        "all-MiniLM-L6-v2\n", model_dir, stat(model_dir, &info) != 0 ? "does not exist"
                                                                                      : "is not a directory");
        goto done;
    }
    for (int i = 3; i < argc; i++)
        if (read_category(&data, argv[i]) != 0)
            goto done;
    if (data.n_texts <= TRAIN_ROWS + data.n_categories) {
        fprintf(stderr, "error: the category files hold %zu texts; more than %zu are needed (%d to train on, the "
                        "rest to judge by)\n", data.n_texts, (size_t)TRAIN_ROWS + data.n_categories, TRAIN_ROWS);
        goto done;
    }
    printf("%zu texts in %zu categories:", data.n_texts, data.n_categories);
    for (size_t c = 0; c < data.n_categories; c++)
        printf(" %s", data.names[c]);
    printf("\n");

    is_train = malloc(data.n_texts);
    if (!is_train || choose_training_rows(&data, is_train) != 0) {
        fprintf(stderr, "error: out of memory\n");
        goto done;
    }

    /* 1. Encode every text. The encoder learns nothing, so encoding the held-out rows too leaks nothing. */
    eb_blas_config blas;
    if (eb_blas_info(&blas) == EB_OK && blas.threads > 1 && !getenv("OPENBLAS_NUM_THREADS"))
        printf("note: OpenBLAS may run %d threads inside each product while the encoder runs its own; "
               "OPENBLAS_NUM_THREADS=1 avoids the contention\n", blas.threads);
    if (eb_sentence_encoder_create(model_dir, NULL, NULL, &encoder, &err) != EB_OK) {
        fprintf(stderr, "error: cannot load the sentence encoder from %s: %s\n", model_dir, err.message);
        if (err.status == EB_ERR_IO)
            fprintf(stderr, "fetch all-MiniLM-L6-v2 with: bash scripts/fetch-models.sh all-MiniLM-L6-v2\n");
        goto done;
    }
    const size_t dim = eb_encoder_output_dim(encoder);
    embedding = malloc(data.n_texts * dim * sizeof *embedding);
    if (!embedding) {
        fprintf(stderr, "error: out of memory for %zu x %zu embeddings\n", data.n_texts, dim);
        goto done;
    }
    if (eb_encoder_encode_texts(encoder, data.texts, data.n_texts, eb_mut_matrix_view(embedding, data.n_texts, dim),
                                &err) != EB_OK) {
        fprintf(stderr, "error: encoding failed: %s\n", err.message);
        goto done;
    }
    printf("encoded with %s (%zu dims)\n", model_dir, dim);

    size_t n_train = 0;
    train_raw = gather_rows(embedding, dim, data.n_texts, is_train, 1, &n_train);
    train_labels = malloc(n_train * sizeof *train_labels);
    if (!train_raw || !train_labels) {
        fprintf(stderr, "error: out of memory\n");
        goto done;
    }
    for (size_t i = 0, r = 0; i < data.n_texts; i++)
        if (is_train[i])
            train_labels[r++] = data.labels[i];
    printf("split: %zu training rows, %zu held-out rows\n", n_train, data.n_texts - n_train);

    const double accuracy_raw = nearest_centroid_accuracy(embedding, dim, &data, is_train);

    /* 2. Fine-tune on the training rows; the category names go into the model as its class names. */
    eb_finetuner_params params = eb_finetuner_default_params(EB_KIND_FEEDFORWARD);
    params.hidden_dim = HIDDEN_DIM;
    params.seed = TRAINING_SEED;
    if (eb_finetuner_create(&params, NULL, &model, &err) != EB_OK) {
        fprintf(stderr, "error: cannot create the finetuner: %s\n", err.message);
        goto done;
    }
    const eb_class_labels names = {
        .type = EB_LABELS_UTF8, .count = data.n_categories, .strings = data.names, .string_lengths = NULL};
    if (eb_finetuner_fit(model, eb_matrix_view(train_raw, n_train, dim), train_labels, data.n_categories, &names) !=
        EB_OK) {
        fprintf(stderr, "error: fine-tuning failed: %s\n", eb_finetuner_last_error(model));
        goto done;
    }
    size_t epochs = 0;
    const double *losses = eb_finetuner_loss_history(model, &epochs);
    printf("feed-forward finetuner, hidden_dim=%d: training loss %.3f -> %.3f over %zu epochs\n", HIDDEN_DIM,
           losses[0], losses[epochs - 1], epochs);

    const size_t tuned_dim = eb_finetuner_output_dim(model);
    all_tuned = fine_tuned_embedding(model, embedding, data.n_texts, dim, "the trained model");
    if (!all_tuned)
        goto done;
    const double accuracy_tuned = nearest_centroid_accuracy(all_tuned, tuned_dim, &data, is_train);

    /* 3. Save, then load the file back: the loaded model must embed exactly as the trained one. */
    if (eb_finetuner_save(model, saved_path, &err) != EB_OK) {
        fprintf(stderr, "error: cannot save the model: %s\n", err.message);
        goto done;
    }
    if (eb_finetuner_load(saved_path, NULL, &reloaded, &err) != EB_OK) {
        fprintf(stderr, "error: cannot load %s back: %s\n", saved_path, err.message);
        goto done;
    }
    reloaded_tuned = fine_tuned_embedding(reloaded, embedding, data.n_texts, dim, "the reloaded model");
    if (!reloaded_tuned)
        goto done;
    eb_class_labels saved_names;
    if (eb_finetuner_class_labels(reloaded, &saved_names) != EB_OK || saved_names.type != EB_LABELS_UTF8 ||
        saved_names.count != data.n_categories) {
        fprintf(stderr, "error: %s came back without its %zu class names\n", saved_path, data.n_categories);
        goto done;
    }
    const int same = memcmp(all_tuned, reloaded_tuned, data.n_texts * tuned_dim * sizeof *all_tuned) == 0;
    printf("saved to %s; loaded back: classes", saved_path);
    for (size_t c = 0; c < saved_names.count; c++)
        printf(" %s", saved_names.strings[c]);
    printf("; same embedding: %s\n", same ? "yes" : "NO");
    if (!same) {
        fprintf(stderr, "error: the reloaded model embeds differently from the trained one\n");
        goto done;
    }

    printf("held-out nearest-centroid accuracy: sentence embedding %.3f, fine-tuned %.3f\n", accuracy_raw,
           accuracy_tuned);
    printf("fine-tuned beats the sentence embedding: %s\n", accuracy_tuned > accuracy_raw ? "yes" : "no");
    status = 0;

done:
    eb_finetuner_free(reloaded);
    eb_finetuner_free(model);
    eb_encoder_free(encoder);
    free(reloaded_tuned);
    free(all_tuned);
    free(train_labels);
    free(train_raw);
    free(embedding);
    free(is_train);
    corpus_free(&data);
    return status;
}
