/*
 * ContrastiveFinetuner: one shared linear layer e = x W + b, trained so that
 * cos(e_i, e_j) approaches 1 for rows of the same label and 0 otherwise
 * (mean squared error over pairs, Adam).
 *
 * Pairs are index pairs into X. When a batch of pairs touches most rows, the
 * embeddings of all rows are computed once and the per-pair gradients are
 * scattered back onto rows, so an epoch costs two GEMMs over X however many
 * pairs it has. Small minibatches gather just their rows instead. Either way
 * memory is O(rows x width), never O(pairs x width).
 *
 * Rows that are mostly zeros (hashed n-gram counts) and are not gathered get
 * their nonzeros listed once per call (16 bytes each, at most 1.6 times X's
 * own size at the sparse kernels' 40% threshold): each step then embeds only
 * the rows its pairs touch and splits its products and Adam update over the
 * call's threads (src/workers.c), every sum still in one order: a team of two
 * splits W's rows in halves when its cores share a cache, the outputs in two
 * sides when they do not (see splits_columns). A fit on such rows trains its
 * weights in a padded copy (see padded_width).
 *
 * Weights: W (d x h, row-major), then b (h).
 */
#include "blas.h"
#include <limits.h>
#include <math.h>
#include <string.h>

#include "internal.h"
#include "testing.h"

/* PyTorch's cosine_similarity clamps each norm below at this value. */
static const float NORM_FLOOR = 1e-8f;

typedef struct cl_pair {
    uint32_t left;
    uint32_t right;
    float target;
} cl_pair;

/* What a pair adds to the deltas of its two rows (see pair_step). */
typedef struct cl_pair_step {
    float unit_a, unit_b, step_a, step_b, self_a, self_b;
} cl_pair_step;

/* Buffers for one call of fit / partial_fit. */
typedef struct cl_workspace {
    size_t n_rows;
    uint32_t *by_label;    /* row indices sorted by label, stable */
    uint32_t *run_start;   /* per row: where its label's run starts in by_label */
    uint32_t *run_length;  /* per row: how many rows share its label */
    size_t distinct_labels;
    cl_pair *pairs;        /* room for n_rows * (1 + n_neg) pairs */
    size_t batch_pairs;    /* pairs per minibatch */
    bool gather;           /* minibatches gather their rows (else they use all of X) */
    float *gathered;       /* 2 * batch_pairs x d when gathering */
    cl_pair *local_pairs;  /* batch pairs re-indexed into gathered */
    size_t ld;             /* floats between the rows of embed, embed_grad, packed_grad and the trained W */
    bool padded;           /* the call trains a padded copy of the weights, ld floats a row (see padded_width) */
    float *embed;          /* batch matrix rows x h, rows ld apart */
    float *embed_grad;     /* same shape: dLoss/d(embedding) */
    void *embed_block, *embed_grad_block, *packed_grad_block; /* what embed, embed_grad, packed_grad lie in */
    double *norms;         /* one per batch matrix row */
    cl_pair_step *steps;   /* one per batch pair */
    eb_sparse_rows listed; /* X's nonzeros, when X is mostly zeros and not gathered (else empty) */
    uint32_t *used;        /* with listed: the rows a batch touches, ascending */
    unsigned char *seen;   /* with listed: per row, whether the batch touches it */
    float *packed_grad;    /* with listed: deltas of a small batch's rows, packed (rows ld apart) */
    float *scratch;        /* with listed: room for a small batch's rows of X, once per side (see column_split) */
    eb_team *team;         /* with listed: threads for the products and Adam (NULL: this thread alone) */
    bool sides;            /* with listed: the team's two threads take a side of the columns each */
    double *norm_sides;    /* with sides: per side, per batch matrix row, its half of a norm's square */
    double *dot_sides;     /* with sides: per side, per batch pair, its half of the dot product */
} cl_workspace;

static eb_finetuner_params default_params(void)
{
    eb_finetuner_params p;
    memset(&p, 0, sizeof p);
    p.kind = EB_KIND_CONTRASTIVE;
    p.hidden_dim = EB_HIDDEN_DIM_AS_INPUT;
    p.n_neg = 3;
    p.n_epochs = 20;
    p.learning_rate = 0.001f;
    return p;
}

static eb_status check_params(const eb_finetuner_params *params, eb_error *err)
{
    if (params->n_neg == 0)
        return eb__fail(err, EB_ERR_INVALID_PARAM, "n_neg is 0; it must be at least 1");
    return EB_OK;
}

static size_t width_for(const eb_finetuner_params *params, size_t n_features)
{
    return params->hidden_dim == EB_HIDDEN_DIM_AS_INPUT ? n_features : params->hidden_dim;
}

static void workspace_release(cl_workspace *ws, const eb_allocator *mem)
{
    eb__free(mem, ws->by_label);
    eb__free(mem, ws->run_start);
    eb__free(mem, ws->run_length);
    eb__free(mem, ws->pairs);
    eb__free(mem, ws->gathered);
    eb__free(mem, ws->local_pairs);
    eb__free(mem, ws->embed_block);
    eb__free(mem, ws->embed_grad_block);
    eb__free(mem, ws->norms);
    eb__free(mem, ws->steps);
    eb__free(mem, ws->norm_sides);
    eb__free(mem, ws->dot_sides);
    eb__sparse_rows_release(&ws->listed, mem);
    eb__free(mem, ws->used);
    eb__free(mem, ws->seen);
    eb__free(mem, ws->packed_grad_block);
    eb__free(mem, ws->scratch);
    eb__team_stop(ws->team, mem);
    memset(ws, 0, sizeof *ws);
}

/*
 * A fit on listed rows trains a copy of its weights whose arrays start on 64-byte lines and whose rows (W's and
 * the bias) are padded with zeros to a multiple of 8 floats, and so are the step's embeddings and deltas. At 50
 * outputs a row is 200 bytes, so most 512-bit loads of W's rows in the forward product (and of the deltas in the
 * weight gradient) straddle two cache lines; 224-byte rows keep every 256-bit half of a load within one line,
 * which is how AMD's Zen 4 carries out 512-bit loads (2026-12-04, AMD EPYC, the forward product at 200 x 1024 ->
 * 50 with 24.5% nonzeros and W's rows in L1: 1.88 ns per nonzero at 200-byte rows, 1.36 at 224- or 256-byte
 * rows on lines; a contrastive fit at docs/benchmarks.md's defaults on one thread 18.8 ms before, 16.3 ms with
 * 224-byte rows, 16.7 ms with 256-byte rows). The kernels still sum the first h columns only, in the same order,
 * and the padding stays zero (zero deltas give zero gradients, and Adam leaves a zero weight with zero moments at
 * zero), so the bits are those of the unpadded layout. The copy holds the weights and Adam state a second time
 * for the length of the call. A team of two that splits the columns keeps each side's rows apart (see side_of).
 */
enum { LINE_FLOATS = 16, HALF_LINE_FLOATS = 8 };

static size_t padded_width(size_t h)
{
    return h > SIZE_MAX - (HALF_LINE_FLOATS - 1) ? h : (h + HALF_LINE_FLOATS - 1) / HALF_LINE_FLOATS * HALF_LINE_FLOATS;
}

/*
 * Where a team of two whose cores share no cache splits a step's output columns (see splits_columns), each
 * thread taking one side for the whole step: its columns of the embeddings, of the deltas, of the weight
 * gradient and of Adam, so that the only lines that cross between the two are the halves of the pairs' dot
 * products and of the norms. The split is a whole number of lines (16 floats) near the middle, 0 when there is
 * none. Dot products and norms are summed on either side of it and the two sums added, on every path and thread
 * count, so a team's bits are those of one thread.
 */
static size_t column_split(size_t h)
{
    size_t split = h / 2 + LINE_FLOATS / 2;
    split -= split % LINE_FLOATS;
    return split > 0 && split < h ? split : 0;
}

/*
 * Where one side's columns lie in an array of `rows` rows of h columns padded to ld (see padded_width), its
 * sides split at `split` (0: one side holds every column, rows ld floats apart). The sides of a split array lie
 * one after the other, each with its rows a whole number of lines long: with the two sides' lines interleaved
 * row by row, each thread's Adam pass ran several times slower (2026-12-04, AMD EPYC: 13-18% of two threads'
 * samples against 10% of one's), presumably the prefetchers pulling the other thread's lines next to its own.
 */
typedef struct cl_side {
    size_t first_col, width; /* the side's columns */
    size_t ld;               /* floats between its rows */
    size_t offset;           /* where its first row starts */
} cl_side;

static cl_side side_of(size_t h, size_t ld, size_t split, size_t side, size_t rows)
{
    if (split == 0)
        return (cl_side){0, h, ld, 0};
    if (side == 0)
        return (cl_side){0, split, split, 0};
    return (cl_side){split, h - split, ld - split, rows * split};
}

/* rows x width zeroed floats starting on a 64-byte line, inside *block (what to free), or NULL. */
static float *calloc_on_line(const eb_allocator *mem, size_t rows, size_t width, void **block)
{
    size_t count;
    *block = NULL;
    if (!eb__mul_size(rows, width, &count) || count > SIZE_MAX / sizeof(float) - LINE_FLOATS)
        return NULL;
    /* The allocator aligns for any type, so at least for a float: the line is at most LINE_FLOATS - 1 floats on. */
    *block = eb__calloc(mem, count + LINE_FLOATS, sizeof(float));
    if (*block == NULL)
        return NULL;
    const uintptr_t line = LINE_FLOATS * sizeof(float);
    return (float *)(((uintptr_t)*block + line - 1) / line * line);
}

/* Batch buffers for steps of matrix_rows rows of width d, their embeddings' rows ws->ld apart. */
static eb_status alloc_batch_buffers(cl_workspace *ws, size_t matrix_rows, size_t batch_pairs, size_t d,
                                     const eb_allocator *mem)
{
    if (ws->gather) {
        ws->gathered = eb__calloc(mem, matrix_rows, d * sizeof(float));
        ws->local_pairs = eb__calloc(mem, batch_pairs, sizeof *ws->local_pairs);
        if (ws->gathered == NULL || ws->local_pairs == NULL)
            return EB_ERR_NOMEM;
    }
    ws->embed = calloc_on_line(mem, matrix_rows, ws->ld, &ws->embed_block);
    ws->embed_grad = calloc_on_line(mem, matrix_rows, ws->ld, &ws->embed_grad_block);
    ws->norms = eb__calloc(mem, matrix_rows, sizeof(double));
    ws->steps = eb__calloc(mem, batch_pairs, sizeof *ws->steps);
    if (ws->embed == NULL || ws->embed_grad == NULL || ws->norms == NULL || ws->steps == NULL)
        return EB_ERR_NOMEM;
    if (ws->sides) {
        ws->norm_sides = eb__calloc(mem, matrix_rows, 2 * sizeof(double));
        ws->dot_sides = eb__calloc(mem, batch_pairs, 2 * sizeof(double));
        if (ws->norm_sides == NULL || ws->dot_sides == NULL)
            return EB_ERR_NOMEM;
    }
    return EB_OK;
}

/* Stable bottom-up merge sort of row indices by label. */
static void sort_rows_by_label(uint32_t *rows, uint32_t *scratch, size_t n, const int32_t *y)
{
    uint32_t *src = rows, *dst = scratch;
    for (size_t width = 1; width < n; width *= 2) {
        for (size_t lo = 0; lo < n; lo += 2 * width) {
            size_t mid = lo + width < n ? lo + width : n;
            size_t hi = lo + 2 * width < n ? lo + 2 * width : n;
            size_t a = lo, b = mid, out = lo;
            while (a < mid && b < hi)
                dst[out++] = y[src[b]] < y[src[a]] ? src[b++] : src[a++];
            while (a < mid)
                dst[out++] = src[a++];
            while (b < hi)
                dst[out++] = src[b++];
        }
        uint32_t *swap = src;
        src = dst;
        dst = swap;
    }
    if (src != rows)
        memcpy(rows, src, n * sizeof *rows);
}

/* Sort rows by label and note, for every row, its label's run: what pair sampling needs. */
static void index_labels(cl_workspace *ws, const int32_t *y)
{
    size_t n = ws->n_rows;
    for (size_t i = 0; i < n; i++)
        ws->by_label[i] = (uint32_t)i;
    /* run_length doubles as the sort's scratch space; it is filled in afterwards. */
    sort_rows_by_label(ws->by_label, ws->run_length, n, y);
    ws->distinct_labels = 0;
    for (size_t start = 0; start < n;) {
        size_t end = start + 1;
        while (end < n && y[ws->by_label[end]] == y[ws->by_label[start]])
            end++;
        for (size_t i = start; i < end; i++) {
            ws->run_start[ws->by_label[i]] = (uint32_t)start;
            ws->run_length[ws->by_label[i]] = (uint32_t)(end - start);
        }
        ws->distinct_labels++;
        start = end;
    }
}

/*
 * Whether a team of two splits the columns (see column_split) rather than W's rows (see halves): when its two
 * cores share no cache. W's rows in halves hand every row's partial sums and deltas to the other thread at each
 * step, which two cores that share a cache do faster than the columns' work, which both threads read all of X's
 * nonzeros for; across two dies that handing over made two threads slower than one (2026-12-04, medians of 8
 * fits taking turns at docs/benchmarks.md's defaults: rows 14.8 ms, columns 15.5 ms on a shared cache; rows
 * 20.2 ms, columns 17.6 ms across dies, one thread about 16-20 ms on that busy host).
 */
static const double SHARED_CACHE_MAX_LINE_SECONDS = 100e-9;

static bool splits_columns(const eb_finetuner *model, eb_team *team)
{
    if (model->team_split != EB_TEAM_SPLIT_MEASURED)
        return model->team_split == EB_TEAM_SPLIT_COLUMNS;
    return eb__team_line_seconds(team) > SHARED_CACHE_MAX_LINE_SECONDS;
}

/*
 * X's nonzeros once for the whole call, when X is mostly zeros: every batch multiplies the same rows. With
 * `may_pad` the call trains a padded copy of the weights (see padded_width), and ws->ld becomes its row length.
 */
static eb_status list_rows(cl_workspace *ws, const eb_finetuner *model, eb_matrix x, size_t h, bool may_pad)
{
    const eb_allocator *mem = &model->core.mem;
    eb_status status = eb__sparse_rows_list(x, h, may_pad ? padded_width(h) : h, mem, &ws->listed);
    if (status != EB_OK || ws->listed.row_start == NULL)
        return status;
    status = eb__team_start(eb__training_threads(model, ws->listed.nonzeros * h), mem, &ws->team);
    if (status != EB_OK)
        return status;
    ws->sides = may_pad && eb__team_threads(ws->team) == 2 && column_split(h) != 0 &&
                splits_columns(model, ws->team);
    ws->ld = may_pad ? padded_width(h) : h;
    ws->padded = may_pad;
    ws->used = eb__calloc(mem, x.rows, sizeof *ws->used);
    ws->seen = eb__calloc(mem, x.rows, sizeof *ws->seen);
    ws->packed_grad = calloc_on_line(mem, EB_SMALL_GEMM_MAX_ROWS, ws->ld, &ws->packed_grad_block);
    size_t scratch_rows = (ws->sides ? 2 : 1) * EB_SMALL_GEMM_MAX_ROWS;
    ws->scratch = eb__calloc(mem, scratch_rows, x.cols * sizeof(float));
    if (ws->used == NULL || ws->seen == NULL || ws->packed_grad == NULL || ws->scratch == NULL)
        return EB_ERR_NOMEM;
    return EB_OK;
}

static eb_status workspace_alloc(cl_workspace *ws, const eb_finetuner *model, eb_matrix x, const int32_t *y,
                                 size_t h, bool may_pad, eb_error *err)
{
    const eb_allocator *mem = &model->core.mem;
    size_t n = x.rows;
    memset(ws, 0, sizeof *ws);
    ws->n_rows = n;
    size_t pairs_per_row = model->params.n_neg + 1, max_pairs;
    if (n > UINT32_MAX || pairs_per_row == 0 || !eb__mul_size(n, pairs_per_row, &max_pairs) ||
        max_pairs > SIZE_MAX / sizeof(cl_pair))
        return eb__fail(err, EB_ERR_TOO_LARGE, "%zu rows x %zu pairs per row is too many pairs", n, pairs_per_row);
    size_t batch = model->params.batch_size;
    if (batch == 0 || batch > max_pairs)
        batch = max_pairs;
    ws->by_label = eb__calloc(mem, n, sizeof *ws->by_label);
    ws->run_start = eb__calloc(mem, n, sizeof *ws->run_start);
    ws->run_length = eb__calloc(mem, n, sizeof *ws->run_length);
    ws->pairs = eb__calloc(mem, max_pairs, sizeof *ws->pairs);
    ws->batch_pairs = batch;
    size_t matrix_rows = eb_training_step_rows(EB_KIND_CONTRASTIVE, n, batch);
    ws->gather = matrix_rows < n;
    ws->ld = h;
    if (ws->by_label == NULL || ws->run_start == NULL || ws->run_length == NULL || ws->pairs == NULL ||
        (!ws->gather && list_rows(ws, model, x, h, may_pad) != EB_OK) ||
        alloc_batch_buffers(ws, matrix_rows, batch, x.cols, mem) != EB_OK) {
        workspace_release(ws, mem);
        return eb__fail(err, EB_ERR_NOMEM, "out of memory allocating training buffers for %zu rows", n);
    }
    index_labels(ws, y);
    return EB_OK;
}

/* This epoch's pairs: per row one positive and, when other labels are present, n_neg negatives. */
static size_t draw_pairs(cl_workspace *ws, size_t n_neg, eb_rng *rng)
{
    size_t count = 0, n = ws->n_rows;
    for (size_t i = 0; i < n; i++) {
        size_t start = ws->run_start[i], length = ws->run_length[i];
        uint32_t positive = (uint32_t)i;
        if (length >= 2) {
            /* Uniform over the run without i: draw from length-1 slots, i's slot maps to the last. */
            positive = ws->by_label[start + eb__rng_below(rng, length - 1)];
            if (positive == i)
                positive = ws->by_label[start + length - 1];
        }
        ws->pairs[count++] = (cl_pair){(uint32_t)i, positive, 1.0f};
        size_t others = n - length;
        for (size_t k = 0; others > 0 && k < n_neg; k++) {
            size_t r = (size_t)eb__rng_below(rng, others);
            uint32_t negative = ws->by_label[r < start ? r : r + length];
            ws->pairs[count++] = (cl_pair){(uint32_t)i, negative, 0.0f};
        }
    }
    return count;
}

static void shuffle_pairs(cl_pair *pairs, size_t count, eb_rng *rng)
{
    for (size_t i = count; i > 1; i--) {
        size_t j = (size_t)eb__rng_below(rng, i);
        cl_pair tmp = pairs[i - 1];
        pairs[i - 1] = pairs[j];
        pairs[j] = tmp;
    }
}

/*
 * Element-wise loops run in blocks of EB_BLOCK plus a scalar tail, inside
 * non-inlined functions with restrict parameters: a fixed trip count with no
 * possible aliasing is what GCC vectorises also under -O2's cost model (the
 * Python build).
 */
enum { EB_BLOCK = 16 };

/*
 * Sums in double: squares of large float embeddings would overflow a float
 * sum. EB_BLOCK partial sums (one per lane) are added at the end, a fixed
 * order, so results stay deterministic.
 */
static EB_VECTOR_CLONES double dot_side(const float *restrict a, const float *restrict b, size_t h)
{
    double lanes[EB_BLOCK] = {0.0};
    size_t c = 0;
    for (; c + EB_BLOCK <= h; c += EB_BLOCK) {
        for (size_t j = 0; j < EB_BLOCK; j++)
            lanes[j] += (double)a[c + j] * (double)b[c + j];
    }
    double sum = 0.0;
    for (size_t j = 0; j < EB_BLOCK; j++)
        sum += lanes[j];
    for (; c < h; c++)
        sum += (double)a[c] * (double)b[c];
    return sum;
}

/* The sums of the two sides of column_split(h), added. */
static double dot_of(const float *a, const float *b, size_t h)
{
    const size_t split = column_split(h);
    if (split == 0)
        return dot_side(a, b, h);
    return dot_side(a, b, split) + dot_side(a + split, b + split, h - split);
}

static double norm_of(const float *v, size_t h)
{
    return sqrt(dot_of(v, v, h));
}

/* The cosine's gradient onto rows a and b of a pair of two different rows (see pair_gradient). */
static EB_VECTOR_CLONES void add_pair_gradient(float *restrict ga, float *restrict gb, const float *restrict a,
                                               const float *restrict b, size_t h, float unit_a, float unit_b,
                                               float step_a, float step_b, float self_a, float self_b)
{
    size_t c = 0;
    for (; c + EB_BLOCK <= h; c += EB_BLOCK) {
        for (size_t j = c; j < c + EB_BLOCK; j++) {
            const float ac = a[j] * unit_a, bc = b[j] * unit_b;
            ga[j] += step_a * (bc - self_a * ac);
            gb[j] += step_b * (ac - self_b * bc);
        }
    }
    for (; c < h; c++) {
        const float ac = a[c] * unit_a, bc = b[c] * unit_b;
        ga[c] += step_a * (bc - self_a * ac);
        gb[c] += step_b * (ac - self_b * bc);
    }
}

/* The same for a row paired with itself: both updates land on one row, in the same order. */
static EB_VECTOR_CLONES void add_self_pair_gradient(float *restrict g, const float *restrict a, size_t h,
                                                    float unit_a, float unit_b, float step_a, float step_b,
                                                    float self_a, float self_b)
{
    size_t c = 0;
    for (; c + EB_BLOCK <= h; c += EB_BLOCK) {
        for (size_t j = c; j < c + EB_BLOCK; j++) {
            const float ac = a[j] * unit_a, bc = a[j] * unit_b;
            g[j] = (g[j] + step_a * (bc - self_a * ac)) + step_b * (ac - self_b * bc);
        }
    }
    for (; c < h; c++) {
        const float ac = a[c] * unit_a, bc = a[c] * unit_b;
        g[c] = (g[c] + step_a * (bc - self_a * ac)) + step_b * (ac - self_b * bc);
    }
}

/*
 * A step's parallel phases are cut into this many chunks for the team's threads to take: enough that a
 * thread the system has not scheduled leaves little for the others to wait on, few enough that each chunk
 * (about 12 us at defaults) still reuses its slice of the weights across rows.
 */
enum { JOB_CHUNKS = 8 };

/* pair's step and its squared error (added to *loss_sum), from the dot product of its rows and their norms. */
static cl_pair_step pair_step(double dot, double norm_a, double norm_b, float target, double scale,
                              double *loss_sum)
{
    const double na = norm_a > NORM_FLOOR ? norm_a : NORM_FLOOR;
    const double nb = norm_b > NORM_FLOOR ? norm_b : NORM_FLOOR;
    const double cosine = dot / (na * nb);
    const double diff = cosine - target;
    *loss_sum += diff * diff;
    const double coef = scale * diff;
    /*
     * d cos / d a = (b/|b| - cos a/|a|) / |a|. Working on unit vectors keeps
     * every float factor near 1: 1/(|a||b|) alone underflows for large rows.
     * A clamped norm is constant, so it contributes no self term.
     */
    return (cl_pair_step){(float)(1.0 / na), (float)(1.0 / nb), (float)(coef / na), (float)(coef / nb),
                          norm_a > NORM_FLOOR ? (float)cosine : 0.0f, norm_b > NORM_FLOOR ? (float)cosine : 0.0f};
}

/* The pairs' steps added to their rows' deltas, in the pairs' order: width columns of rows ld floats apart. */
static void add_pair_steps(const cl_pair *pairs, const cl_pair_step *steps, size_t count, const float *embed,
                           float *embed_grad, size_t ld, size_t width)
{
    for (size_t p = 0; p < count; p++) {
        const size_t i = pairs[p].left, j = pairs[p].right;
        const float *a = embed + i * ld, *b = embed + j * ld;
        const cl_pair_step st = steps[p];
        /* When i == j both updates land on one row, which is the correct total. */
        if (i != j)
            add_pair_gradient(embed_grad + i * ld, embed_grad + j * ld, a, b, width, st.unit_a, st.unit_b, st.step_a,
                              st.step_b, st.self_a, st.self_b);
        else
            add_self_pair_gradient(embed_grad + i * ld, a, width, st.unit_a, st.unit_b, st.step_a, st.step_b,
                                   st.self_a, st.self_b);
    }
}

/* X's nonzeros listed once, with room to note the rows of one batch. */
typedef struct cl_listed {
    const eb_sparse_rows *rows;
    uint32_t *used;
    unsigned char *seen;
    float *packed_grad; /* EB_SMALL_GEMM_MAX_ROWS rows of deltas */
    float *scratch;     /* EB_SMALL_GEMM_MAX_ROWS rows of X per side, for eb__small_transposed_product_rows */
    eb_team *team;      /* threads for the products over all rows; NULL: the caller's alone */
    bool sides;         /* the team's two threads take a side of column_split each */
    double *norm_sides, *dot_sides;
} cl_listed;

typedef struct forward_job {
    const cl_listed *listed;
    size_t n_used;
    const float *w, *bias;
    size_t h, ld; /* width, and floats between the rows of w and embed */
    float *embed;
    double *norms;
} forward_job;

static void forward_norms(const forward_job *job, size_t first, size_t last)
{
    const uint32_t *used = job->listed->used;
    for (size_t u = first; u < last; u++)
        job->norms[used[u]] = norm_of(job->embed + used[u] * job->ld, job->h);
}

/* The embeddings and their norms of one part's share of the batch's rows. */
static void forward_part(void *opaque, size_t part, size_t parts)
{
    const forward_job *job = opaque;
    size_t first, last;
    eb__sparse_rows_affine(job->listed->rows, job->listed->used, job->n_used, part, parts, job->w, job->bias, job->h,
                           job->ld, job->embed, &first, &last);
    forward_norms(job, first, last);
}

/*
 * The same for a team of two that splits W's rows in halves (see halves), a mirrored job: chunk `part` <
 * JOB_CHUNKS is the first half's columns of share `part`, which the caller runs; chunk 2 JOB_CHUNKS - 1 - part,
 * which the helper runs once that is done, finishes share `part`.
 */
static void forward_half_part(void *opaque, size_t chunk, size_t chunks)
{
    const forward_job *job = opaque;
    const size_t parts = chunks / 2, half = chunk < parts ? 0 : 1, part = half == 0 ? chunk : chunks - 1 - chunk;
    size_t first, last;
    eb__sparse_rows_affine_half(job->listed->rows, half, job->listed->used, job->n_used, part, parts, job->w,
                                job->bias, job->h, job->ld, job->embed, &first, &last);
    if (half == 1)
        forward_norms(job, first, last);
}

/* Adam for a step whose weight gradient is computed in parts: each part updates the weights it has the gradient of. */
typedef struct cl_adam {
    eb_trainable *weights;
    float learning_rate;
} cl_adam;

typedef struct gradient_job {
    const cl_listed *listed;
    eb_matrix x;
    size_t n_used;
    const float *embed_grad; /* the deltas of every row; listed->packed_grad holds those of the used rows */
    size_t h, ld;            /* width, and floats between the rows of the deltas, the gradient and the weights */
    eb_trainable *weights;   /* grad is weights->grad; the bias's gradient is already there */
    eb_adam_factors factors;
} gradient_job;

/* Adam on the weights of g's rows [first, last), while they are in this thread's cache; part 0 adds the bias. */
static void adam_rows(const gradient_job *job, size_t part, size_t first, size_t last)
{
    eb__adam_update_range(job->weights, job->factors, first * job->ld, last * job->ld);
    if (part == 0)
        eb__adam_update_range(job->weights, job->factors, job->x.cols * job->ld, job->weights->count);
}

/* One part of the weight gradient over every listed row, then Adam on it. */
static void gradient_part(void *opaque, size_t part, size_t parts)
{
    const gradient_job *job = opaque;
    size_t first, last;
    eb__sparse_rows_transposed_product(job->listed->rows, part, parts, job->embed_grad, job->h, job->ld,
                                       job->weights->grad, &first, &last);
    adam_rows(job, part, first, last);
}

/* The same for a team of two that splits W's rows in halves: the caller's chunks (the front) are the first half. */
static void gradient_half_part(void *opaque, size_t chunk, size_t chunks)
{
    const gradient_job *job = opaque;
    const size_t parts = chunks / 2, half = chunk < parts ? 0 : 1;
    size_t first, last;
    eb__sparse_rows_transposed_product_half(job->listed->rows, half, chunk - half * parts, parts, job->embed_grad,
                                            job->h, job->ld, job->weights->grad, &first, &last);
    adam_rows(job, chunk, first, last);
}

/* One part of the weight gradient over the used rows only (at most a minibatch of them), then Adam on it. */
static void small_gradient_part(void *opaque, size_t part, size_t parts)
{
    const gradient_job *job = opaque;
    size_t first, last;
    eb__small_transposed_product_rows_part(job->x, job->listed->used, job->n_used, job->listed->packed_grad, job->h,
                                           job->ld, job->weights->grad, job->listed->scratch, part, parts, &first,
                                           &last);
    adam_rows(job, part, first, last);
}

/*
 * Whether the step's products split W's rows in halves between a team of two, rather than the batch's rows and
 * X's columns in shares: a thread that writes a line of W (Adam on the rows of its share of the weight gradient)
 * which the other read (in the forward product over its rows) waits for that line to leave the other's cache,
 * and that wait cost more than Adam itself (2026-12-04: Adam took 6.9 ms of two threads' time per fit at the
 * defaults of docs/benchmarks.md, against 1.9 ms on one). A team of two whose cores share no cache splits the
 * columns instead (see column_split).
 */
static bool halves(const cl_listed *listed)
{
    return eb__team_threads(listed->team) == 2;
}

/* A step of a team of two that splits the columns (see column_split): each job has one chunk per side. */
typedef struct side_job {
    const cl_listed *listed;
    eb_matrix x;
    size_t n_used;
    const cl_pair *pairs;
    const cl_pair_step *steps;
    size_t count;
    size_t h, ld, split;
    float *embed, *embed_grad; /* x.rows rows in sides (see side_of) */
    eb_trainable *weights;     /* x.cols + 1 rows (W's, then the bias) in sides */
    eb_adam_factors factors;
} side_job;

/* One side's columns of the used rows' embeddings, and its sums of their squares and of the pairs' products. */
static void forward_side(void *opaque, size_t side, size_t sides)
{
    const side_job *job = opaque;
    const cl_listed *listed = job->listed;
    const size_t d = job->x.cols, rows = job->x.rows;
    const cl_side wc = side_of(job->h, job->ld, job->split, side, d + 1);
    const cl_side ec = side_of(job->h, job->ld, job->split, side, rows);
    const float *w = job->weights->values + wc.offset;
    float *embed = job->embed + ec.offset;
    (void)sides;
    eb__sparse_rows_affine_side(listed->rows, side, listed->used, job->n_used, w, w + d * wc.ld, wc.width, wc.ld,
                                embed);
    double *norms = listed->norm_sides + side * rows, *dots = listed->dot_sides + side * job->count;
    for (size_t u = 0; u < job->n_used; u++) {
        const float *e = embed + listed->used[u] * ec.ld;
        norms[listed->used[u]] = dot_side(e, e, ec.width);
    }
    for (size_t p = 0; p < job->count; p++)
        dots[p] = dot_side(embed + job->pairs[p].left * ec.ld, embed + job->pairs[p].right * ec.ld, ec.width);
}

/* One side's columns of the deltas, of the bias's and the weights' gradients, and Adam on them. */
static void gradient_side(void *opaque, size_t side, size_t sides)
{
    const side_job *job = opaque;
    const cl_listed *listed = job->listed;
    const size_t d = job->x.cols, rows = job->x.rows;
    const cl_side wc = side_of(job->h, job->ld, job->split, side, d + 1);
    const cl_side ec = side_of(job->h, job->ld, job->split, side, rows);
    const cl_side pc = side_of(job->h, job->ld, job->split, side, EB_SMALL_GEMM_MAX_ROWS);
    const float *embed = job->embed + ec.offset;
    float *embed_grad = job->embed_grad + ec.offset, *grad = job->weights->grad + wc.offset;
    (void)sides;
    memset(embed_grad, 0, rows * ec.ld * sizeof(float));
    add_pair_steps(job->pairs, job->steps, job->count, embed, embed_grad, ec.ld, ec.width);
    eb__column_sums(embed_grad, rows, ec.width, ec.ld, grad + d * wc.ld);
    if (eb__small_rows_in_place(job->n_used)) {
        float *packed = listed->packed_grad + pc.offset;
        size_t first, last;
        for (size_t u = 0; u < job->n_used; u++)
            memcpy(packed + u * pc.ld, embed_grad + listed->used[u] * ec.ld, ec.width * sizeof(float));
        eb__small_transposed_product_rows_part(job->x, listed->used, job->n_used, packed, wc.width, wc.ld, grad,
                                               listed->scratch + side * EB_SMALL_GEMM_MAX_ROWS * d, 0, 1, &first,
                                               &last);
    } else {
        eb__sparse_rows_transposed_product_side(listed->rows, side, embed_grad, ec.width, ec.ld, grad);
    }
    /* The whole side, padding too: zero deltas give zero gradients, and Adam leaves zeros at zero. */
    eb__adam_update_range(job->weights, job->factors, wc.offset, wc.offset + (d + 1) * wc.ld);
}

/* Notes the rows the pairs touch in listed->used (ascending); returns how many. */
static size_t note_used_rows(const cl_listed *listed, const cl_pair *pairs, size_t count, size_t rows)
{
    size_t n_used = 0;
    memset(listed->seen, 0, rows);
    for (size_t p = 0; p < count; p++)
        listed->seen[pairs[p].left] = listed->seen[pairs[p].right] = 1;
    for (size_t r = 0; r < rows; r++)
        if (listed->seen[r])
            listed->used[n_used++] = (uint32_t)r;
    return n_used;
}

/* pair_gradient's step for a team that splits the columns: two jobs, and between them the pairs' scalars. */
static double side_gradient(size_t h, size_t ld, eb_matrix xb, const cl_pair *pairs, size_t count, float *embed,
                            float *embed_grad, double *norms, cl_pair_step *steps, const cl_listed *listed,
                            cl_adam *adam)
{
    const size_t rows = xb.rows;
    side_job job = {listed, xb, note_used_rows(listed, pairs, count, rows), pairs, steps, count, h, ld,
                    column_split(h), embed, embed_grad, adam->weights, {0.0f, 0.0f}};
    eb__team_run(listed->team, 2, forward_side, &job);
    for (size_t u = 0; u < job.n_used; u++) {
        const size_t r = listed->used[u];
        norms[r] = sqrt(listed->norm_sides[r] + listed->norm_sides[rows + r]);
    }
    double loss_sum = 0.0;
    const double scale = 2.0 / (double)count;
    for (size_t p = 0; p < count; p++) {
        const size_t i = pairs[p].left, j = pairs[p].right;
        const double dot = listed->dot_sides[p] + listed->dot_sides[count + p];
        steps[p] = pair_step(dot, norms[i], norms[j], pairs[p].target, scale, &loss_sum);
    }
    job.factors = eb__adam_begin(adam->weights, adam->learning_rate);
    eb__team_run(listed->team, 2, gradient_side, &job);
    return loss_sum;
}

/*
 * Gradient of the mean pair loss over `count` pairs indexing rows of xb.
 * Buffers embed, embed_grad and norms must have xb.rows rows, steps count.
 * Returns the sum of the pairs' losses. With listed rows the step also
 * applies Adam, fused with the weight gradient's parts (see adam_fused). The
 * rows of W (in values and grad), embed and embed_grad start ld floats apart;
 * ld > h only with listed rows (see padded_width).
 */
static double pair_gradient(const float *values, float *grad, size_t h, size_t ld, eb_matrix xb,
                            const cl_pair *pairs, size_t count, float *embed, float *embed_grad, double *norms,
                            cl_pair_step *steps, const cl_listed *listed, cl_adam *adam)
{
    if (listed != NULL && listed->sides)
        return side_gradient(h, ld, xb, pairs, count, embed, embed_grad, norms, steps, listed, adam);
    const size_t d = xb.cols, rows = xb.rows;
    const float *w = values, *bias = values + d * ld;
    size_t n_used = 0;
    if (listed != NULL) {
        /* Only the rows the pairs touch: a batch of 32 pairs (the last of an epoch at defaults) touches a third. */
        n_used = note_used_rows(listed, pairs, count, rows);
        forward_job job = {listed, n_used, w, bias, h, ld, embed, norms};
        if (halves(listed))
            eb__team_run_mirrored(listed->team, 2 * JOB_CHUNKS, forward_half_part, &job);
        else
            eb__team_run(listed->team, JOB_CHUNKS, forward_part, &job);
    } else {
        eb_mut_matrix embed_view = {embed, rows, h, ld};
        /* src/small_gemm.c: sparse rows (hashed n-grams) skip their zeros; dense minibatches skip OpenBLAS's packing. */
        eb__small_affine(xb, w, bias, embed_view);
        for (size_t r = 0; r < rows; r++)
            norms[r] = norm_of(embed + r * ld, h);
    }
    memset(embed_grad, 0, rows * ld * sizeof(float));

    /* Per-pair scalars in double: products of two large norms overflow a float. */
    double loss_sum = 0.0;
    const double scale = 2.0 / (double)count;
    for (size_t p = 0; p < count; p++) {
        const size_t i = pairs[p].left, j = pairs[p].right;
        steps[p] = pair_step(dot_of(embed + i * ld, embed + j * ld, h), norms[i], norms[j], pairs[p].target, scale,
                             &loss_sum);
    }
    add_pair_steps(pairs, steps, count, embed, embed_grad, ld, h);
    if (listed == NULL)
        eb__small_transposed_product(xb, embed_grad, h, grad);
    eb__column_sums(embed_grad, rows, h, ld, grad + d * ld);
    if (listed == NULL)
        return loss_sum;
    gradient_job job = {listed, xb, n_used, embed_grad, h, ld, adam->weights,
                        eb__adam_begin(adam->weights, adam->learning_rate)};
    if (eb__small_rows_in_place(n_used)) {
        /* A minibatch's worth of rows: the in-place kernel over just them, their deltas packed alike. */
        for (size_t u = 0; u < n_used; u++)
            memcpy(listed->packed_grad + u * ld, embed_grad + listed->used[u] * ld, h * sizeof(float));
        size_t parts = eb__small_transposed_product_parts(d);
        eb__team_run(listed->team, parts < JOB_CHUNKS ? parts : JOB_CHUNKS, small_gradient_part, &job);
    } else {
        /* Over every row: those left out have zero deltas, and visiting them costs less than finding the others. */
        eb__team_run(listed->team, JOB_CHUNKS, halves(listed) ? gradient_half_part : gradient_part, &job);
    }
    return loss_sum;
}

/* Whether a step uses X's listed nonzeros, and so applies Adam itself in its weight gradient's parts. */
static bool adam_fused(const cl_workspace *ws)
{
    return !ws->gather && ws->listed.row_start != NULL;
}

/* Gradient of one batch of pairs, gathering its rows when that is cheaper. */
static double batch_gradient(const eb_fit_state *state, cl_workspace *ws, eb_matrix x, const cl_pair *pairs,
                             size_t count, cl_adam *adam)
{
    const eb_trainable *t = &state->weights;
    const size_t h = state->out_dim;
    if (!ws->gather) {
        cl_listed listed = {&ws->listed, ws->used, ws->seen, ws->packed_grad, ws->scratch, ws->team, ws->sides,
                            ws->norm_sides, ws->dot_sides};
        return pair_gradient(t->values, t->grad, h, ws->ld, x, pairs, count, ws->embed, ws->embed_grad, ws->norms,
                             ws->steps, adam_fused(ws) ? &listed : NULL, adam);
    }
    for (size_t p = 0; p < count; p++) {
        memcpy(ws->gathered + p * x.cols, x.data + (size_t)pairs[p].left * x.stride, x.cols * sizeof(float));
        memcpy(ws->gathered + (count + p) * x.cols, x.data + (size_t)pairs[p].right * x.stride,
               x.cols * sizeof(float));
        ws->local_pairs[p] = (cl_pair){(uint32_t)p, (uint32_t)(count + p), pairs[p].target};
    }
    eb_matrix batch = {ws->gathered, 2 * count, x.cols, x.cols};
    return pair_gradient(t->values, t->grad, h, h, batch, ws->local_pairs, count, ws->embed, ws->embed_grad,
                         ws->norms, ws->steps, NULL, NULL);
}

typedef struct epoch_context {
    const eb_finetuner *model;
    eb_fit_state *state;
    eb_matrix x;
    cl_workspace *ws;
} epoch_context;

static double run_epoch(void *opaque)
{
    epoch_context *c = opaque;
    cl_workspace *ws = c->ws;
    eb_fit_state *state = c->state;
    size_t count = draw_pairs(ws, c->model->params.n_neg, &state->rng);
    bool minibatches = ws->batch_pairs < count;
    if (minibatches)
        shuffle_pairs(ws->pairs, count, &state->rng);
    double loss_sum = 0.0;
    for (size_t start = 0; start < count; start += ws->batch_pairs) {
        size_t size = count - start < ws->batch_pairs ? count - start : ws->batch_pairs;
        cl_adam adam = {&state->weights, c->model->params.learning_rate};
        loss_sum += batch_gradient(state, ws, c->x, ws->pairs + start, size, &adam);
        if (!adam_fused(ws))
            eb__adam_step(&state->weights, adam.learning_rate);
    }
    return loss_sum / (double)count;
}

static eb_status new_state(const eb_finetuner *model, size_t n_features, size_t n_classes, eb_fit_state *state,
                           eb_error *err)
{
    memset(state, 0, sizeof *state);
    size_t h = width_for(&model->params, n_features), weights;
    if (!eb__mul_size(n_features + 1, h, &weights))
        return eb__fail(err, EB_ERR_TOO_LARGE, "%zu features x %zu outputs is too many weights", n_features, h);
    eb_status status = eb__trainable_alloc(&state->weights, weights, &model->core.mem);
    if (status != EB_OK)
        return eb__fail(err, status, "out of memory allocating %zu weights", weights);
    state->n_features = n_features;
    state->n_classes = n_classes;
    state->out_dim = h;
    eb__rng_seed(&state->rng, model->params.seed);
    eb__init_uniform(state->weights.values, weights, n_features, &state->rng);
    return EB_OK;
}

/*
 * A copy of `from` (rows x h weights and their Adam state) whose rows start ld floats apart, or lie in two
 * sides split at column `split` (see side_of), each array on a line.
 */
static eb_status pad_weights(const eb_trainable *from, size_t rows, size_t h, size_t ld, size_t split,
                             const eb_allocator *mem, eb_trainable *padded, void **block)
{
    size_t count, array;
    if (!eb__mul_size(rows, ld, &count) || count > SIZE_MAX - LINE_FLOATS)
        return EB_ERR_TOO_LARGE;
    array = (count + LINE_FLOATS - 1) / LINE_FLOATS * LINE_FLOATS;
    float *base = calloc_on_line(mem, TRAINABLE_ARRAYS, array, block);
    if (base == NULL)
        return EB_ERR_NOMEM;
    *padded = (eb_trainable){count, base, base + array, base + 2 * array, base + 3 * array, from->steps};
    /* The gradient is not copied: every step writes all of it before Adam reads it. */
    for (size_t side = 0; side < (split == 0 ? 1 : 2); side++) {
        const cl_side c = side_of(h, ld, split, side, rows);
        for (size_t r = 0; r < rows; r++) {
            const size_t to = c.offset + r * c.ld, at = r * h + c.first_col, bytes = c.width * sizeof(float);
            memcpy(padded->values + to, from->values + at, bytes);
            memcpy(padded->first_moment + to, from->first_moment + at, bytes);
            memcpy(padded->second_moment + to, from->second_moment + at, bytes);
        }
    }
    return EB_OK;
}

/* The trained weights and Adam state of a padded copy back into `to`, h floats a row. */
static void unpad_weights(const eb_trainable *padded, size_t rows, size_t h, size_t ld, size_t split,
                          eb_trainable *to)
{
    for (size_t side = 0; side < (split == 0 ? 1 : 2); side++) {
        const cl_side c = side_of(h, ld, split, side, rows);
        for (size_t r = 0; r < rows; r++) {
            const size_t at = c.offset + r * c.ld, dest = r * h + c.first_col, bytes = c.width * sizeof(float);
            memcpy(to->values + dest, padded->values + at, bytes);
            memcpy(to->first_moment + dest, padded->first_moment + at, bytes);
            memcpy(to->second_moment + dest, padded->second_moment + at, bytes);
        }
    }
    to->steps = padded->steps;
}

/* Train state for n_epochs (an eb__train_fn); the pair index and buffers are built for this call. */
static eb_status train(const eb_finetuner *model, eb_fit_state *state, const void *data, size_t n_epochs,
                       eb_error *err)
{
    const eb_labelled_rows *rows = data;
    const eb_allocator *mem = &model->core.mem;
    const size_t h = state->out_dim, weight_rows = state->n_features + 1;
    /*
     * Fresh weights (fit, a first partial_fit) are trained aside, and nothing reads them until the call is over,
     * so they may train in the padded layout. A continuing partial_fit trains the model's own weights, which its
     * per-epoch callback may read (transform, save): those keep their layout.
     */
    bool may_pad = state != &model->core.state;
    cl_workspace ws;
    eb_status status = workspace_alloc(&ws, model, rows->x, rows->y, h, may_pad, err);
    if (status != EB_OK)
        return status;
    eb_trainable own = state->weights;
    void *padded_block = NULL;
    if (ws.padded) {
        status = pad_weights(&own, weight_rows, h, ws.ld, ws.sides ? column_split(h) : 0, mem, &state->weights,
                             &padded_block);
        if (status != EB_OK) {
            workspace_release(&ws, mem);
            if (status == EB_ERR_NOMEM)
                return eb__fail(err, status, "out of memory copying %zu weights for training", own.count);
            return eb__fail(err, status, "%zu rows of weights %zu floats apart are too many", weight_rows, ws.ld);
        }
    }
    epoch_context ctx = {model, state, rows->x, &ws};
    status = eb__train_model(model, state, n_epochs, run_epoch, &ctx, err);
    if (ws.padded) {
        unpad_weights(&state->weights, weight_rows, h, ws.ld, ws.sides ? column_split(h) : 0, &own);
        state->weights = own;
        eb__free(mem, padded_block);
    }
    workspace_release(&ws, mem);
    return status;
}

static eb_status fit_labelled(eb_finetuner *model, eb_matrix x, const int32_t *y, size_t n_classes, bool partial)
{
    eb_error *err = &model->core.last_error;
    eb_status status = eb__check_training_input(&model->core.state, x, y, n_classes, partial, err);
    if (status != EB_OK)
        return status;
    bool continuing = partial && model->core.state.fitted;
    if (!continuing) {
        if (width_for(&model->params, x.cols) > (size_t)INT_MAX)
            return eb__fail(err, EB_ERR_TOO_LARGE, "an output width of %zu is too large",
                            width_for(&model->params, x.cols));
        size_t row = 1;
        while (row < x.rows && y[row] == y[0])
            row++;
        if (row == x.rows)
            return eb__fail(err, EB_ERR_TOO_FEW_CLASSES,
                            "y holds a single label (%d); the first fit needs at least two distinct labels", (int)y[0]);
    }
    eb_labelled_rows rows = {x, y};
    return eb__fit_or_continue(model, x.cols, n_classes, partial, train, &rows);
}

static eb_status transform(const eb_finetuner *model, eb_matrix x, eb_mut_matrix out, eb_error *err)
{
    eb_status status = eb__check_transform(&model->core, x, out, err);
    if (status != EB_OK)
        return status;
    const eb_fit_state *state = &model->core.state;
    eb__affine(x, state->weights.values, state->weights.values + state->n_features * state->out_dim, out);
    return eb__check_result(out, err);
}

/* The saved state must be exactly what fit would have built for these params. */
static eb_status check_state(const eb_finetuner *model, eb_error *err)
{
    const eb_fit_state *st = &model->core.state;
    if (!st->fitted)
        return EB_OK;
    size_t expected;
    if (st->n_features == 0 || st->n_features > (size_t)INT_MAX || st->n_classes < 2 ||
        st->out_dim != width_for(&model->params, st->n_features) || st->out_dim > (size_t)INT_MAX ||
        !eb__mul_size(st->n_features + 1, st->out_dim, &expected) || expected != st->weights.count)
        return eb__fail(err, EB_ERR_FORMAT,
                        "saved model: shapes disagree (%zu features, %zu classes, width %zu, %zu weights)",
                        st->n_features, st->n_classes, st->out_dim, st->weights.count);
    return EB_OK;
}

/* Version 1 files: hidden_dim (UINT64_MAX for "as input"), n_neg, n_epochs, learning_rate, batch_size, seed. */
static eb_status read_v1_params(eb_reader *r, eb_finetuner_params *params, eb_error *err)
{
    uint64_t hidden_dim;
    if (!eb__read_u64(r, &hidden_dim) || !eb__read_size(r, &params->n_neg) || !eb__read_size(r, &params->n_epochs) ||
        !eb__read_f32(r, &params->learning_rate) || !eb__read_size(r, &params->batch_size) ||
        !eb__read_u64(r, &params->seed))
        return eb__fail(err, EB_ERR_FORMAT, "saved model: truncated params");
    params->hidden_dim = hidden_dim == UINT64_MAX ? EB_HIDDEN_DIM_AS_INPUT
                         : hidden_dim >= SIZE_MAX  ? SIZE_MAX - 1 /* refused by the params check */
                                                   : (size_t)hidden_dim;
    return EB_OK;
}

const eb_kind_ops eb__contrastive_ops = {
    EB_KIND_CONTRASTIVE, default_params, check_params, width_for,    new_state,
    fit_labelled,        NULL,           transform,    check_state,  read_v1_params,
};

/* ---- testing hooks --------------------------------------------------------- */

eb_status eb__contrastive_gradient(eb_finetuner *model, eb_matrix x, const uint32_t *left,
                                   const uint32_t *right, const float *target, size_t n_pairs, float *grad,
                                   double *mean_loss)
{
    if (eb__check_handle(model, NULL) != EB_OK || model->params.kind != EB_KIND_CONTRASTIVE)
        return EB_ERR_WRONG_KIND;
    const eb_allocator *mem = &model->core.mem;
    size_t h = model->core.state.out_dim;
    eb_status status = EB_ERR_NOMEM;
    cl_pair *pairs = eb__calloc(mem, n_pairs, sizeof *pairs);
    float *embed = eb__calloc(mem, x.rows, h * sizeof(float));
    float *embed_grad = eb__calloc(mem, x.rows, h * sizeof(float));
    double *norms = eb__calloc(mem, x.rows, sizeof(double));
    cl_pair_step *steps = eb__calloc(mem, n_pairs, sizeof *steps);
    if (pairs != NULL && embed != NULL && embed_grad != NULL && norms != NULL && steps != NULL) {
        for (size_t p = 0; p < n_pairs; p++)
            pairs[p] = (cl_pair){left[p], right[p], target[p]};
        *mean_loss = pair_gradient(model->core.state.weights.values, grad, h, h, x, pairs, n_pairs, embed, embed_grad,
                                   norms, steps, NULL, NULL) /
                     (double)n_pairs;
        status = EB_OK;
    }
    eb__free(mem, pairs);
    eb__free(mem, embed);
    eb__free(mem, embed_grad);
    eb__free(mem, norms);
    eb__free(mem, steps);
    return status;
}
