/*
 * The encoder interface: argument checks shared by every encoder (built-in
 * or not), dispatch through the vtable, and splitting a batch across threads.
 */
#define _POSIX_C_SOURCE 200809L

#include <pthread.h>
#include <string.h>
#include <unistd.h>

#include "encoder_internal.h"

size_t eb_encoder_output_dim(const eb_encoder *encoder)
{
    if (encoder == NULL || encoder->vtable == NULL || encoder->vtable->output_dim == NULL)
        return 0;
    return encoder->vtable->output_dim(encoder);
}

eb_input_kind eb_encoder_input_kind(const eb_encoder *encoder)
{
    if (encoder == NULL || encoder->vtable == NULL)
        return (eb_input_kind)0;
    return encoder->vtable->input_kind;
}

const char *eb_encoder_name(const eb_encoder *encoder)
{
    if (encoder == NULL || encoder->vtable == NULL || encoder->vtable->name == NULL)
        return "";
    return encoder->vtable->name;
}

void eb_encoder_free(eb_encoder *encoder)
{
    if (encoder != NULL && encoder->vtable != NULL && encoder->vtable->destroy != NULL)
        encoder->vtable->destroy(encoder);
}

eb_status eb__encoder_allocator(const eb_allocator *mem, eb_allocator *out, eb_error *err)
{
    if (mem == NULL)
        mem = eb_default_allocator();
    if (mem->calloc == NULL || mem->free == NULL)
        return eb__fail(err, EB_ERR_NULL_POINTER, "the allocator's %s NULL",
                        mem->calloc == NULL ? (mem->free == NULL ? "calloc and free are" : "calloc is") : "free is");
    *out = *mem;
    return EB_OK;
}

static eb_status check_encoder(const eb_encoder *encoder, eb_input_kind kind, size_t n, eb_mut_matrix out,
                               eb_error *err)
{
    if (encoder == NULL)
        return eb__fail(err, EB_ERR_NULL_POINTER, "encoder is NULL");
    const eb_encoder_vtable *vt = encoder->vtable;
    if (vt == NULL || vt->output_dim == NULL)
        return eb__fail(err, EB_ERR_NULL_POINTER, "the encoder has no vtable or no output_dim function");
    const char *name = vt->name != NULL ? vt->name : "custom";
    if (vt->input_kind != kind)
        return eb__fail(err, EB_ERR_WRONG_INPUT_KIND, "the %s encoder takes %s, not %s", name,
                        vt->input_kind == EB_INPUT_IMAGE ? "images" : "texts",
                        kind == EB_INPUT_IMAGE ? "images" : "texts");
    if ((kind == EB_INPUT_TEXT && vt->encode_texts == NULL) || (kind == EB_INPUT_IMAGE && vt->encode_images == NULL))
        return eb__fail(err, EB_ERR_NULL_POINTER, "the %s encoder's vtable has no encode function for its input",
                        name);
    if (n == 0)
        return eb__fail(err, EB_ERR_EMPTY_INPUT, "the batch holds 0 %s", kind == EB_INPUT_IMAGE ? "images" : "texts");
    size_t dim = vt->output_dim(encoder);
    if (out.data == NULL)
        return eb__fail(err, EB_ERR_NULL_POINTER, "out.data is NULL");
    if (out.rows != n || out.cols != dim)
        return eb__fail(err, EB_ERR_SHAPE_MISMATCH, "out is %zu x %zu, the %s encoder writes %zu x %zu", out.rows,
                        out.cols, name, n, dim);
    if (out.stride < out.cols)
        return eb__fail(err, EB_ERR_SHAPE_MISMATCH, "out has a row stride of %zu, less than its %zu columns",
                        out.stride, out.cols);
    size_t span;
    if (!eb__mul_size(out.rows - 1, out.stride, &span))
        return eb__fail(err, EB_ERR_TOO_LARGE, "out is too large (%zu rows, stride %zu)", out.rows, out.stride);
    return EB_OK;
}

eb_status eb_encoder_encode_texts(const eb_encoder *encoder, const eb_text *texts, size_t n, eb_mut_matrix out,
                                  eb_error *err)
{
    eb__error_clear(err);
    eb_status status = check_encoder(encoder, EB_INPUT_TEXT, n, out, err);
    if (status != EB_OK)
        return status;
    if (texts == NULL)
        return eb__fail(err, EB_ERR_NULL_POINTER, "texts is NULL");
    for (size_t i = 0; i < n; i++) {
        /* An empty text is almost always a missing value upstream; a zero row would hide it. */
        if (texts[i].length == 0)
            return eb__fail(err, EB_ERR_EMPTY_INPUT,
                            "text %zu is empty; drop the row or give it a placeholder text", i);
        if (texts[i].data == NULL)
            return eb__fail(err, EB_ERR_NULL_POINTER, "text %zu has length %zu but data NULL", i, texts[i].length);
        size_t bad;
        if (!eb_utf8_valid(texts[i].data, texts[i].length, &bad))
            return eb__fail(err, EB_ERR_INVALID_UTF8, "text %zu is not valid UTF-8 at byte %zu (0x%02X)", i, bad,
                            (unsigned)(unsigned char)texts[i].data[bad]);
    }
    return encoder->vtable->encode_texts(encoder, texts, n, out, err);
}

eb_status eb_encoder_encode_images(const eb_encoder *encoder, const eb_image *images, size_t n, eb_mut_matrix out,
                                   eb_error *err)
{
    eb__error_clear(err);
    eb_status status = check_encoder(encoder, EB_INPUT_IMAGE, n, out, err);
    if (status != EB_OK)
        return status;
    if (images == NULL)
        return eb__fail(err, EB_ERR_NULL_POINTER, "images is NULL");
    for (size_t i = 0; i < n; i++) {
        const eb_image *im = &images[i];
        if (im->width == 0 || im->height == 0)
            return eb__fail(err, EB_ERR_EMPTY_INPUT, "image %zu is %zu x %zu pixels; it must have at least one", i,
                            im->width, im->height);
        if (im->channels == 0)
            return eb__fail(err, EB_ERR_SHAPE_MISMATCH, "image %zu has 0 channels", i);
        if (im->pixels == NULL)
            return eb__fail(err, EB_ERR_NULL_POINTER, "image %zu has pixels NULL", i);
        size_t row_bytes, span;
        if (!eb__mul_size(im->width, im->channels, &row_bytes) || !eb__mul_size(im->height - 1, im->stride, &span) ||
            span > SIZE_MAX - row_bytes)
            return eb__fail(err, EB_ERR_TOO_LARGE, "image %zu is too large (%zu x %zu x %zu, stride %zu)", i,
                            im->width, im->height, im->channels, im->stride);
        if (im->stride < row_bytes)
            return eb__fail(err, EB_ERR_SHAPE_MISMATCH,
                            "image %zu has a row stride of %zu bytes, less than width %zu x %zu channels", i,
                            im->stride, im->width, im->channels);
    }
    return encoder->vtable->encode_images(encoder, images, n, out, err);
}

/* ---- threads -------------------------------------------------------------- */

size_t eb__encoder_threads(size_t requested, size_t n_items, size_t total_work)
{
    size_t threads = eb__threads_for(requested, total_work, EB_ENCODER_MIN_WORK_PER_THREAD, EB_ENCODER_MAX_THREADS);
    if (threads > n_items)
        threads = n_items;
    return threads >= 1 ? threads : 1;
}

eb_status eb__plan_text_threads(const eb_text *texts, size_t n, size_t requested, const eb_allocator *mem,
                                size_t *bounds, size_t *n_threads, eb_error *err)
{
    size_t *work = eb__calloc(mem, n, sizeof *work);
    if (work == NULL)
        return eb__fail(err, EB_ERR_NOMEM, "out of memory for a batch of %zu texts", n);
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        /* +1 so that a text's fixed cost counts too when balancing ranges. */
        work[i] = texts[i].length + 1;
        total = total > SIZE_MAX - work[i] ? SIZE_MAX : total + work[i];
    }
    *n_threads = eb__encoder_threads(requested, n, total);
    eb__split_ranges(n, *n_threads, work, bounds);
    eb__free(mem, work);
    return EB_OK;
}

size_t eb__longest_text(const eb_text *texts, size_t begin, size_t end)
{
    size_t longest = 0;
    for (size_t r = begin; r < end; r++)
        longest = texts[r].length > longest ? texts[r].length : longest;
    return longest;
}

typedef struct range_job {
    eb__range_fn fn;
    void *ctx;
    size_t begin, end, worker;
    eb_status status;
    eb_error err;
} range_job;

static void *run_range_job(void *arg)
{
    range_job *job = arg;
    job->status = job->fn(job->ctx, job->begin, job->end, job->worker, &job->err);
    return NULL;
}

void eb__split_ranges(size_t n_items, size_t n_threads, const size_t *work, size_t *bounds)
{
    bounds[0] = 0;
    bounds[n_threads] = n_items;
    if (work == NULL) {
        for (size_t t = 1; t < n_threads; t++)
            bounds[t] = n_items / n_threads * t + (t < n_items % n_threads ? t : n_items % n_threads);
        return;
    }
    double total = 0;
    for (size_t i = 0; i < n_items; i++)
        total += (double)work[i];
    size_t i = 0;
    double done = 0;
    for (size_t t = 1; t < n_threads; t++) {
        double target = total * (double)t / (double)n_threads;
        size_t min_i = bounds[t - 1] + 1;
        size_t max_i = n_items - (n_threads - t);
        while (i < min_i || (i < max_i && done + (double)work[i] * 0.5 < target)) {
            done += (double)work[i];
            i++;
        }
        bounds[t] = i;
    }
}

eb_status eb__run_ranges(size_t n_threads, const size_t *bounds, eb__range_fn fn, void *ctx, eb_error *err)
{
    if (n_threads <= 1)
        return fn(ctx, bounds[0], bounds[1], 0, err);
    range_job jobs[EB_ENCODER_MAX_THREADS];
    pthread_t handles[EB_ENCODER_MAX_THREADS];
    bool started[EB_ENCODER_MAX_THREADS];
    for (size_t t = 0; t < n_threads; t++) {
        jobs[t].fn = fn;
        jobs[t].ctx = ctx;
        jobs[t].begin = bounds[t];
        jobs[t].end = bounds[t + 1];
        jobs[t].worker = t;
        jobs[t].status = EB_OK;
        eb__error_clear(&jobs[t].err);
        started[t] = false;
    }
    for (size_t t = 1; t < n_threads; t++)
        started[t] = pthread_create(&handles[t], NULL, run_range_job, &jobs[t]) == 0;
    run_range_job(&jobs[0]);
    for (size_t t = 1; t < n_threads; t++) {
        if (started[t])
            pthread_join(handles[t], NULL);
        else
            run_range_job(&jobs[t]);
    }
    for (size_t t = 0; t < n_threads; t++) {
        if (jobs[t].status != EB_OK) {
            if (err != NULL)
                *err = jobs[t].err;
            return jobs[t].status;
        }
    }
    return EB_OK;
}
