/*
 * The colour-histogram encoder: per-channel pixel counts of RGB images over
 * n_buckets equal-width buckets of 0..255, with numpy.histogram's edges.
 */
#include <string.h>

#include "encoder_internal.h"

typedef struct color_histogram_encoder {
    eb_encoder base;
    size_t n_buckets;
    size_t n_threads;
    eb_allocator mem;
    /* The bucket of every uint8 value, fixed at create so encoding is a table lookup. */
    uint16_t bucket_of[256];
} color_histogram_encoder;

static const eb_encoder_vtable color_histogram_vtable;

/*
 * numpy.linspace(0, 255, n + 1) computes edge i as i * (255 / n) in double,
 * with the last edge set to exactly 255; numpy.histogram then puts v in the
 * last bucket i with edge[i] <= v (the last bucket is closed on the right).
 */
static void fill_buckets(color_histogram_encoder *enc)
{
    size_t n = enc->n_buckets;
    double step = 255.0 / (double)n;
    size_t bucket = 0;
    for (unsigned v = 0; v < 256; v++) {
        while (bucket + 1 < n && (double)(bucket + 1) * step <= (double)v)
            bucket++;
        enc->bucket_of[v] = (uint16_t)bucket;
    }
}

eb_status eb_color_histogram_encoder_create(size_t n_buckets, size_t n_threads, const eb_allocator *mem,
                                            eb_encoder **out, eb_error *err)
{
    eb__error_clear(err);
    if (out == NULL)
        return eb__fail(err, EB_ERR_NULL_POINTER, "out is NULL");
    *out = NULL;
    if (n_buckets < 1 || n_buckets > EB_COLOR_HISTOGRAM_MAX_BUCKETS)
        return eb__fail(err, EB_ERR_INVALID_PARAM, "n_buckets is %zu; it must be between 1 and %d", n_buckets,
                        EB_COLOR_HISTOGRAM_MAX_BUCKETS);
    if (n_threads > EB_ENCODER_MAX_THREADS)
        return eb__fail(err, EB_ERR_INVALID_PARAM, "n_threads is %zu; at most %d (0 for automatic)", n_threads,
                        EB_ENCODER_MAX_THREADS);
    eb_allocator kept;
    eb_status status = eb__encoder_allocator(mem, &kept, err);
    if (status != EB_OK)
        return status;
    color_histogram_encoder *enc = eb__calloc(&kept, 1, sizeof *enc);
    if (enc == NULL)
        return eb__fail(err, EB_ERR_NOMEM, "out of memory for the colour-histogram encoder");
    enc->base.vtable = &color_histogram_vtable;
    enc->n_buckets = n_buckets;
    enc->n_threads = n_threads;
    enc->mem = kept;
    fill_buckets(enc);
    *out = &enc->base;
    return EB_OK;
}

typedef struct histogram_job {
    const color_histogram_encoder *enc;
    const eb_image *images;
    eb_mut_matrix out;
} histogram_job;

static eb_status histogram_range(void *ctx, size_t begin, size_t end, size_t worker, eb_error *err)
{
    (void)worker;
    (void)err;
    const histogram_job *job = ctx;
    const color_histogram_encoder *enc = job->enc;
    size_t nb = enc->n_buckets;
    for (size_t r = begin; r < end; r++) {
        const eb_image *im = &job->images[r];
        /* Count per value first (256 x 3 counters), then fold values into buckets. */
        uint64_t counts[3][256];
        memset(counts, 0, sizeof counts);
        for (size_t y = 0; y < im->height; y++) {
            const uint8_t *p = im->pixels + y * im->stride;
            for (size_t x = 0; x < im->width; x++, p += 3) {
                counts[0][p[0]]++;
                counts[1][p[1]]++;
                counts[2][p[2]]++;
            }
        }
        float *row = job->out.data + r * job->out.stride;
        memset(row, 0, 3 * nb * sizeof *row);
        for (size_t c = 0; c < 3; c++) {
            uint64_t buckets[EB_COLOR_HISTOGRAM_MAX_BUCKETS];
            memset(buckets, 0, sizeof buckets);
            for (unsigned v = 0; v < 256; v++)
                buckets[enc->bucket_of[v]] += counts[c][v];
            for (size_t b = 0; b < nb; b++)
                row[c * nb + b] = (float)buckets[b];
        }
    }
    return EB_OK;
}

static eb_status color_histogram_encode(const eb_encoder *encoder, const eb_image *images, size_t n,
                                        eb_mut_matrix out, eb_error *err)
{
    const color_histogram_encoder *enc = (const color_histogram_encoder *)encoder;
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        if (images[i].channels != 3)
            return eb__fail(err, EB_ERR_SHAPE_MISMATCH,
                            "image %zu has %zu channels; the colour histogram needs 3 (RGB)", i, images[i].channels);
        size_t pixels = images[i].width * images[i].height; /* bounded by the generic size check */
        total = total > SIZE_MAX - pixels ? SIZE_MAX : total + pixels;
    }
    size_t n_threads = eb__encoder_threads(enc->n_threads, n, total);
    size_t bounds[EB_ENCODER_MAX_THREADS + 1];
    size_t *work = NULL;
    if (n_threads > 1) {
        work = eb__calloc(&enc->mem, n, sizeof *work);
        if (work == NULL)
            return eb__fail(err, EB_ERR_NOMEM, "out of memory for a batch of %zu images", n);
        for (size_t i = 0; i < n; i++)
            work[i] = images[i].width * images[i].height;
    }
    eb__split_ranges(n, n_threads, work, bounds);
    eb__free(&enc->mem, work);
    histogram_job job = {enc, images, out};
    return eb__run_ranges(n_threads, bounds, histogram_range, &job, err);
}

static size_t color_histogram_output_dim(const eb_encoder *encoder)
{
    return 3 * ((const color_histogram_encoder *)encoder)->n_buckets;
}

static void color_histogram_destroy(eb_encoder *encoder)
{
    color_histogram_encoder *enc = (color_histogram_encoder *)encoder;
    eb_allocator mem = enc->mem;
    eb__free(&mem, enc);
}

static const eb_encoder_vtable color_histogram_vtable = {
    "color_histogram", EB_INPUT_IMAGE, color_histogram_output_dim, NULL, color_histogram_encode,
    color_histogram_destroy,
};
