/*
 * A C application's own encoder, used exactly where a built-in one goes.
 *
 * style_encoder turns a text into five numbers about its style (share of
 * letters, digits, upper case, punctuation, mean word length). It fills an
 * eb_encoder_vtable, so eb_encoder_encode_texts checks its input (UTF-8,
 * shapes) and dispatches to it just as it does for the hashing encoder.
 * embed_and_finetune below takes any text encoder; main runs it with the
 * built-in hashing encoder and with style_encoder, and prints how well a
 * nearest-centroid rule separates two kinds of text on each embedding.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <embetter/embetter.h>

/* ---- the custom encoder --------------------------------------------------- */

typedef struct style_encoder {
    eb_encoder base; /* first member, so an eb_encoder * points at the whole struct */
    const eb_allocator *mem;
} style_encoder;

enum { STYLE_DIM = 5 };

static size_t style_output_dim(const eb_encoder *encoder)
{
    (void)encoder;
    return STYLE_DIM;
}

/* Reentrant: reads only its arguments, writes only its own rows of out. */
static eb_status style_encode(const eb_encoder *encoder, const eb_text *texts, size_t n, eb_mut_matrix out,
                              eb_error *err)
{
    (void)encoder;
    (void)err;
    for (size_t i = 0; i < n; i++) {
        size_t letters = 0, digits = 0, upper = 0, punct = 0, words = 0, word_chars = 0, chars = 0;
        int in_word = 0;
        for (size_t k = 0; k < texts[i].length; k++) {
            unsigned char c = (unsigned char)texts[i].data[k];
            if ((c & 0xC0) == 0x80)
                continue; /* count each UTF-8 character once, at its first byte */
            chars++;
            int is_letter = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c >= 0x80;
            letters += is_letter;
            digits += c >= '0' && c <= '9';
            upper += c >= 'A' && c <= 'Z';
            punct += c == '.' || c == ',' || c == '!' || c == '?' || c == ';' || c == ':';
            if (is_letter) {
                word_chars++;
                words += !in_word;
            }
            in_word = is_letter;
        }
        float *row = out.data + i * out.stride;
        double total = chars > 0 ? (double)chars : 1.0;
        row[0] = (float)(letters / total);
        row[1] = (float)(digits / total);
        row[2] = (float)(upper / total);
        row[3] = (float)(punct / total);
        row[4] = (float)(words > 0 ? (double)word_chars / (double)words / 10.0 : 0.0);
    }
    return EB_OK;
}

static void style_destroy(eb_encoder *encoder)
{
    style_encoder *self = (style_encoder *)encoder;
    self->mem->free(self->mem->ctx, self);
}

static const eb_encoder_vtable style_vtable = {
    "style", EB_INPUT_TEXT, style_output_dim, style_encode, NULL, style_destroy,
};

static eb_status style_encoder_create(eb_encoder **out)
{
    const eb_allocator *mem = eb_default_allocator();
    style_encoder *self = mem->calloc(mem->ctx, 1, sizeof *self);
    if (self == NULL)
        return EB_ERR_NOMEM;
    self->base.vtable = &style_vtable;
    self->mem = mem;
    *out = &self->base;
    return EB_OK;
}

/* ---- code that takes any encoder ----------------------------------------- */

/* Nearest-centroid accuracy (two classes) of rows embedded with dim columns, on the rows themselves. */
static double centroid_accuracy(const float *rows, const int32_t *labels, size_t n, size_t dim)
{
    double *centroid = calloc(2 * dim, sizeof *centroid);
    size_t count[2] = {0, 0};
    if (centroid == NULL)
        return 0;
    for (size_t i = 0; i < n; i++) {
        count[labels[i]]++;
        for (size_t c = 0; c < dim; c++)
            centroid[labels[i] * dim + c] += rows[i * dim + c];
    }
    for (size_t k = 0; k < 2; k++)
        for (size_t c = 0; c < dim; c++)
            centroid[k * dim + c] /= (double)(count[k] > 0 ? count[k] : 1);
    size_t right = 0;
    for (size_t i = 0; i < n; i++) {
        double d[2] = {0, 0};
        for (size_t k = 0; k < 2; k++)
            for (size_t c = 0; c < dim; c++) {
                double diff = rows[i * dim + c] - centroid[k * dim + c];
                d[k] += diff * diff;
            }
        right += (d[0] <= d[1] ? 0 : 1) == labels[i];
    }
    free(centroid);
    return (double)right / (double)n;
}

/* Encode the texts with encoder, fine-tune a feed-forward model on the vectors, report both accuracies. */
static int embed_and_finetune(const eb_encoder *encoder, const eb_text *texts, const int32_t *labels, size_t n)
{
    size_t dim = eb_encoder_output_dim(encoder);
    float *vectors = malloc(n * dim * sizeof *vectors);
    float *tuned = NULL;
    eb_finetuner *model = NULL;
    eb_error err;
    int ok = 0;
    if (vectors == NULL)
        goto done;
    eb_status status = eb_encoder_encode_texts(encoder, texts, n, eb_mut_matrix_view(vectors, n, dim), &err);
    if (status != EB_OK) {
        fprintf(stderr, "%s encoder: %s\n", eb_encoder_name(encoder), err.message);
        goto done;
    }
    eb_finetuner_params params = eb_finetuner_default_params(EB_KIND_FEEDFORWARD);
    params.hidden_dim = 4;
    params.n_epochs = 300;
    params.learning_rate = 0.05f;
    if (eb_finetuner_create(&params, NULL, &model, &err) != EB_OK ||
        eb_finetuner_fit(model, eb_matrix_view(vectors, n, dim), labels, 2, NULL) != EB_OK) {
        fprintf(stderr, "fine-tuning failed: %s\n", model != NULL ? eb_finetuner_last_error(model) : err.message);
        goto done;
    }
    tuned = malloc(n * params.hidden_dim * sizeof *tuned);
    if (tuned == NULL ||
        eb_finetuner_transform(model, eb_matrix_view(vectors, n, dim),
                                 eb_mut_matrix_view(tuned, n, params.hidden_dim), &err) != EB_OK)
        goto done;
    printf("%-8s encoder: %4zu dims, raw accuracy %.2f, fine-tuned accuracy %.2f\n", eb_encoder_name(encoder), dim,
           centroid_accuracy(vectors, labels, n, dim), centroid_accuracy(tuned, labels, n, params.hidden_dim));
    ok = 1;
done:
    eb_finetuner_free(model);
    free(vectors);
    free(tuned);
    return ok;
}

int main(void)
{
    /* Label 0: shouted announcements with numbers; label 1: quiet prose. */
    static const char *const samples[] = {
        "SALE! 50% OFF ALL ITEMS UNTIL 31 MAY!",  "the river ran slowly past the old mill",
        "CALL 555-0199 NOW, LINES OPEN 24/7!",    "she read quietly by the window all afternoon",
        "WIN 1000 EUR TODAY!! ENTER CODE 42",     "leaves drifted across the empty garden path",
        "FLIGHT 714 DELAYED: NEW GATE B12.",      "a soft rain fell on the roofs of the town",
        "ONLY 3 LEFT! ORDER BEFORE 18:00!",       "the cat slept in a patch of warm sunlight",
        "ROOM 101 CLOSED FOR REPAIRS, FLOOR 2.",  "evening came and the lamps were lit one by one",
    };
    enum { N = sizeof samples / sizeof *samples };
    eb_text texts[N];
    int32_t labels[N];
    for (size_t i = 0; i < N; i++) {
        texts[i].data = samples[i];
        texts[i].length = strlen(samples[i]);
        labels[i] = (int32_t)(i % 2);
    }

    eb_error err;
    eb_encoder *hashing = NULL, *style = NULL;
    eb_hashing_params hp = eb_hashing_default_params();
    hp.n_features = 256;
    if (eb_hashing_encoder_create(&hp, NULL, &hashing, &err) != EB_OK) {
        fprintf(stderr, "hashing encoder: %s\n", err.message);
        return 1;
    }
    if (style_encoder_create(&style) != EB_OK) {
        fprintf(stderr, "style encoder: out of memory\n");
        eb_encoder_free(hashing);
        return 1;
    }
    int ok = embed_and_finetune(hashing, texts, labels, N) && embed_and_finetune(style, texts, labels, N);

    /* The shared checks apply to the custom encoder too: invalid UTF-8 never reaches style_encode. */
    eb_text broken = {"caf\xc3", 4};
    float row[STYLE_DIM];
    eb_status status = eb_encoder_encode_texts(style, &broken, 1, eb_mut_matrix_view(row, 1, STYLE_DIM), &err);
    printf("invalid UTF-8 given to the style encoder: %s (%s)\n", eb_status_string(status), err.message);

    eb_encoder_free(hashing);
    eb_encoder_free(style);
    return ok && status == EB_ERR_INVALID_UTF8 ? 0 : 1;
}
