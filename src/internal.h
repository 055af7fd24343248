/* Declarations shared by the library's source files; not installed. */
#ifndef EMBETTER_INTERNAL_H
#define EMBETTER_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "embetter/embetter.h"
#include "testing.h"

#if defined(__GNUC__)
#  define EB_PRINTF(fmt_index, first_arg) __attribute__((format(printf, fmt_index, first_arg)))
#else
#  define EB_PRINTF(fmt_index, first_arg)
#endif

/*
 * Element-wise hot loops are compiled for several instruction sets and the
 * best one is picked when the library loads (GCC/Clang function multiversioning),
 * so one binary runs everywhere yet uses AVX-512 where the CPU has it.
 * Not under ThreadSanitizer: the dynamic loader runs the clones' resolvers
 * before TSan's runtime is set up, and their instrumented code crashes there.
 */
#if defined(__GNUC__) && defined(__x86_64__) && defined(__linux__) && !defined(__clang__) && \
    !defined(__SANITIZE_THREAD__)
#  define EB_VECTOR_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#  define EB_VECTOR_CLONES
#endif

/*
 * Kernels written with AVX-512 intrinsics inside target("avx512f") functions
 * can be compiled (GCC or Clang on x86-64); each still checks the CPU with
 * __builtin_cpu_supports("avx512f") before it runs one, and has a portable path.
 */
#if (defined(__GNUC__) || defined(__clang__)) && defined(__x86_64__)
#  define EB_HAVE_AVX512_KERNELS 1
#endif

/* ---- status.c ------------------------------------------------------------ */

/* Fill err (which may be NULL) and return status, so failures read `return eb__fail(...)`. */
eb_status eb__fail(eb_error *err, eb_status status, const char *fmt, ...) EB_PRINTF(3, 4);
void eb__error_clear(eb_error *err);

/* ---- memory.c ------------------------------------------------------------ */

/* Zeroed count * size bytes from mem, or NULL (also when the product overflows). */
void *eb__calloc(const eb_allocator *mem, size_t count, size_t size);
void eb__free(const eb_allocator *mem, void *ptr);
/* a * b into *out; false on overflow. */
bool eb__mul_size(size_t a, size_t b, size_t *out);

/* ---- matrix.c ------------------------------------------------------------ */

/* Shape, stride and finiteness of an input matrix; name is how messages call it ("X"). */
eb_status eb__check_input(eb_matrix x, const char *name, eb_error *err);
/* The two halves of eb__check_input, for a caller that scans the values slice by slice while they are in cache. */
eb_status eb__check_input_layout(eb_matrix x, const char *name, eb_error *err);
/* Finiteness of x's values; x's row 0 is row first_row of the caller's matrix, as messages name it. */
eb_status eb__check_input_values(eb_matrix x, const char *name, size_t first_row, eb_error *err);
/* An output view of exactly rows x cols. */
eb_status eb__check_output(eb_mut_matrix out, size_t rows, size_t cols, eb_error *err);
/* A computed output holds only finite values (large inputs times large weights can overflow). */
eb_status eb__check_result(eb_mut_matrix out, eb_error *err);
/* Every label in 0 .. n_classes-1. */
eb_status eb__check_labels(const int32_t *y, size_t n, size_t n_classes, eb_error *err);
/* Copy rows index[0..count) of x into the contiguous count x x.cols buffer dst. */
void eb__gather_rows(eb_matrix x, const uint32_t *index, size_t count, float *dst);
/* out = x * w + bias, w being x.cols x out.cols row-major; out already has x.rows rows. */
void eb__affine(eb_matrix x, const float *w, const float *bias, eb_mut_matrix out);
/* column_sums[c] = sum over rows of m[r][c] (m's rows x cols, its rows starting stride floats apart). */
void eb__column_sums(const float *m, size_t rows, size_t cols, size_t stride, float *column_sums);

/* ---- rng.c --------------------------------------------------------------- */

/* xoshiro256** with splitmix64 seeding: small state that saves and restores exactly. */
typedef struct eb_rng {
    uint64_t s[4];
} eb_rng;

void eb__rng_seed(eb_rng *rng, uint64_t seed);
uint64_t eb__rng_next(eb_rng *rng);
/* Uniform in [0, bound), bound >= 1, without modulo bias. */
uint64_t eb__rng_below(eb_rng *rng, uint64_t bound);
/* Uniform float in [low, high). */
float eb__rng_uniform(eb_rng *rng, float low, float high);
void eb__rng_shuffle(eb_rng *rng, uint32_t *items, size_t count);

/* ---- small_gemm.c -------------------------------------------------------- */

/* Minibatches up to this many rows use the kernels below where the CPU has them. */
enum { EB_SMALL_GEMM_MAX_ROWS = 64 };

/* Whether the dense minibatch kernels serve `rows` rows here; without them dense products call BLAS. */
bool eb__small_gemm_available(size_t rows);
/*
 * out = x w + bias, as eb__affine computes it (w is x.cols x out.cols, row-major), for any number of rows. An x
 * that is mostly zeros takes the sparse kernel on AVX-512 CPUs, at any number of rows.
 */
void eb__small_affine(eb_matrix x, const float *w, const float *bias, eb_mut_matrix out);
/* g (x.cols x h, row-major) = x^T d, with d x.rows x h, row-major, for any number of rows; sparse x likewise. */
void eb__small_transposed_product(eb_matrix x, const float *d, size_t h, float *g);

/*
 * Which kernel computes a product: AUTO picks by the CPU, the number of rows
 * and the share of zeros in x (the sparse kernels skip zero entries of x);
 * the others force one, for tests. DENSE falls back to BLAS where
 * eb__small_gemm_available is false, SPARSE where the CPU lacks AVX-512.
 */
typedef enum eb_small_gemm_path {
    EB_SMALL_GEMM_AUTO,
    EB_SMALL_GEMM_DENSE,
    EB_SMALL_GEMM_SPARSE,
    EB_SMALL_GEMM_BLAS
} eb_small_gemm_path;
void eb__small_affine_via(eb_small_gemm_path path, eb_matrix x, const float *w, const float *bias, eb_mut_matrix out);
void eb__small_transposed_product_via(eb_small_gemm_path path, eb_matrix x, const float *d, size_t h, float *g);
/*
 * A minibatch read in place: rows index[0 .. count) of x, no copy. eb__small_rows_in_place says whether these
 * kernels read such a batch in place (AVX-512, at most EB_SMALL_GEMM_MAX_ROWS rows); otherwise they gather it into
 * scratch first, and gathering once per batch is cheaper. Both products give the bits of eb__small_affine /
 * eb__small_transposed_product on the gathered rows. scratch holds count x x.cols floats (used where the CPU or a
 * dense chunk of the weight gradient needs a copy).
 */
bool eb__small_rows_in_place(size_t count);
void eb__small_affine_rows(eb_matrix x, const uint32_t *index, size_t count, const float *w, const float *bias,
                           eb_mut_matrix out, float *scratch);
void eb__small_transposed_product_rows(eb_matrix x, const uint32_t *index, size_t count, const float *d, size_t h,
                                       float *g, float *scratch);
/*
 * eb__small_transposed_product_rows in parts that threads may run at once: part `part` of `parts` computes
 * g's rows [*first, *last) (possibly none) with the same bits, using its own region of scratch. The rows of d
 * and g start ld (at least h) floats apart; ld > h only where eb__small_rows_in_place(count).
 * eb__small_transposed_product_parts says how many parts are worth having for x.cols columns.
 */
size_t eb__small_transposed_product_parts(size_t cols);
void eb__small_transposed_product_rows_part(eb_matrix x, const uint32_t *index, size_t count, const float *d, size_t h,
                                            size_t ld, float *g, float *scratch, size_t part, size_t parts,
                                            size_t *first, size_t *last);

/*
 * The nonzero entries of a matrix that stays the same for a whole fit, listed
 * once by row (for x w) and by column (for x^T d). A contrastive fit at its
 * defaults multiplies the same rows 160 times; listing their nonzeros once
 * replaces the search every sparse product does (a compare and compress per
 * 16 entries, a per-column mask of rows). The products give the bits of
 * eb__small_affine and eb__small_transposed_product.
 */
typedef struct eb_sparse_rows {
    size_t rows, cols, nonzeros;
    uint32_t *row_start; /* rows + 1 entries: row r's nonzeros are [row_start[r], row_start[r + 1]) */
    uint32_t *col_of;
    float *row_values;
    uint32_t *col_start; /* cols + 1 entries, likewise by column, rows ascending */
    uint32_t *row_of;
    float *col_values;
    /* Products walk the inner dimension in slices that keep their rows of the other operand in L1. */
    size_t slice_cols, row_slices;  /* x w: slices of slice_cols columns of x (rows of w) */
    uint32_t *row_slice_start;      /* rows x (row_slices + 1): where each slice's entries of a row begin */
    size_t slice_rows, col_slices;  /* x^T d: slices of slice_rows rows of x (and of d) */
    uint32_t *col_slice_start;      /* cols x (col_slices + 1), likewise */
    /* Halves for two threads: columns [0, split_col) hold half the nonzeros; row r's of them end at row_split[r]. */
    size_t split_col;
    uint32_t *row_split;
    struct eb_listed_span *spans;   /* one per row or column: the work list of one pass */
} eb_sparse_rows;

/*
 * Lists x's nonzeros (NaN counts as one) when that pays for products h wide: on AVX-512 CPUs, when at most the
 * sparse kernels' share of x is nonzero (all of it counted). Otherwise *out is left empty (row_start NULL), the
 * caller's cue to use eb__small_affine and eb__small_transposed_product. EB_ERR_NOMEM when out of memory. ld
 * (at least h) is how many floats apart the rows of the products' other operand will start: it sizes the slices.
 */
eb_status eb__sparse_rows_list(eb_matrix x, size_t h, size_t ld, const eb_allocator *mem, eb_sparse_rows *out);
void eb__sparse_rows_release(eb_sparse_rows *s, const eb_allocator *mem);
/*
 * Row rows[r] of out = row rows[r] of x times w (x.cols x h) + bias, for r < count; out's other rows are left
 * as they are. The rows of w and out start ld (at least h) floats apart: rows padded to whole vectors start
 * where the CPU loads them fastest, and padding changes no sum. Part `part` of `parts` does its share
 * [*first, *last) of rows[] (threads may run the parts at once; the shares are balanced by nonzeros).
 */
void eb__sparse_rows_affine(const eb_sparse_rows *s, const uint32_t *rows, size_t count, size_t part, size_t parts,
                            const float *w, const float *bias, size_t h, size_t ld, float *out, size_t *first,
                            size_t *last);
/*
 * g (x.cols x h) = x^T d (d has x's rows, h wide; the rows of both start ld floats apart): the bits of
 * eb__small_transposed_product. Part `part` of `parts` does its share [*first, *last) of g's rows.
 */
void eb__sparse_rows_transposed_product(const eb_sparse_rows *s, size_t part, size_t parts, const float *d, size_t h,
                                        size_t ld, float *g, size_t *first, size_t *last);
/*
 * The same two products over all of rows[] (all of g's rows) for two threads that each take side 0 or 1 of the
 * output columns (w + first column, out + first column, h the side's width): each side has its own work list,
 * so the two may run at once. The bits are those of the two functions above on all the columns.
 */
void eb__sparse_rows_affine_side(const eb_sparse_rows *s, size_t side, const uint32_t *rows, size_t count,
                                 const float *w, const float *bias, size_t h, size_t ld, float *out);
void eb__sparse_rows_transposed_product_side(const eb_sparse_rows *s, size_t side, const float *d, size_t h,
                                             size_t ld, float *g);
/* Moves the halves' border to column col (at most s->cols); the listing puts it where half the nonzeros lie. */
void eb__sparse_rows_split_at(eb_sparse_rows *s, size_t col);
/*
 * The same two products for two threads that keep to one half of x's columns each (w's and g's rows
 * [0, split_col) or [split_col, x.cols)), so that neither reads a line of w the other writes. Half 0 of
 * eb__sparse_rows_affine_half starts each row's sums over the first half's columns; half 1 continues them
 * (after half 0 of the same part is done) and adds the bias: together the bits of eb__sparse_rows_affine, whose
 * shares of rows[] they keep. The transposed product's half `half` does part `part` of `parts` of that half's
 * rows of g, [*first, *last).
 */
void eb__sparse_rows_affine_half(const eb_sparse_rows *s, size_t half, const uint32_t *rows, size_t count,
                                 size_t part, size_t parts, const float *w, const float *bias, size_t h, size_t ld,
                                 float *out, size_t *first, size_t *last);
void eb__sparse_rows_transposed_product_half(const eb_sparse_rows *s, size_t half, size_t part, size_t parts,
                                             const float *d, size_t h, size_t ld, float *g, size_t *first,
                                             size_t *last);

/* ---- workers.c ------------------------------------------------------------ */

/* Most threads (the caller's included) one training call splits its products over. */
enum { EB_TEAM_MAX_PARTS = EB_FINETUNER_MAX_THREADS };
/* Most chunks of one job the team shares out; a job of more runs on the caller's thread alone. */
enum { EB_TEAM_MAX_CHUNKS = 0xFFFF };
typedef struct eb_team eb_team;
/* One chunk of a job: fn(ctx, chunk, chunks) does chunk `chunk` of `chunks`. */
typedef void (*eb_team_fn)(void *ctx, size_t chunk, size_t chunks);
/*
 * *out = a team of `threads` threads (the caller's and threads - 1 started here), or NULL when threads < 2 or
 * no thread could start: NULL is a working team of the caller's thread alone. EB_ERR_NOMEM (and NULL) when the
 * team's memory cannot be had.
 */
eb_status eb__team_start(size_t threads, const eb_allocator *mem, eb_team **out);
/*
 * fn on chunks 0 .. chunks-1, each once, by the threads of the team; returns when all are done. The caller's
 * thread takes chunks from 0 upward, the helpers from the last downward. Chunks must not depend on which
 * thread runs them or in which order.
 */
void eb__team_run(eb_team *team, size_t chunks, eb_team_fn fn, void *ctx);
/* Most chunks of a mirrored job the team shares out; a job of more runs on the caller's thread alone, in order. */
enum { EB_TEAM_MAX_MIRRORED_CHUNKS = 128 };
/*
 * The same for a job whose second half continues its first: chunk chunks - 1 - c starts only once chunk c is
 * done, for every c < chunks / 2 (the middle chunk of an odd count waits for none). The caller's thread runs
 * the first half, the helpers the second as it becomes ready, when all keep pace.
 */
void eb__team_run_mirrored(eb_team *team, size_t chunks, eb_team_fn fn, void *ctx);
/*
 * Moves the calling thread off CPU `cpu` when its affinity allows another, and gives it back its affinity:
 * what a helper does when it finds itself on the caller's CPU. Does nothing off Linux or for cpu < 0.
 */
void eb__move_off_cpu(int cpu);
/*
 * How long a cache line the caller's thread writes takes to reach a helper, one way, measured now by bouncing
 * one between them: about 30 ns when their cores share a cache, 155-185 ns across two dies (2026-12-04, the
 * two vCPUs of docs/benchmarks.md's machine, which the host moves between the two). 0 for NULL, or when no
 * helper answered within 1 ms. It runs as a job of two chunks, so it takes part in the team's review.
 */
double eb__team_line_seconds(eb_team *team);
/* How many threads the team has, the caller's included (1 for NULL). */
size_t eb__team_threads(const eb_team *team);
void eb__team_stop(eb_team *team, const eb_allocator *mem);
/*
 * The threads a call uses: `requested` as given, or for 0 ("automatic") one per CPU the calling thread may run
 * on (its affinity on Linux, else the online CPUs) as far as each gets min_work_per_thread of total_work; at
 * most max_threads, at least 1. The encoders and training share this rule.
 */
size_t eb__threads_for(size_t requested, size_t total_work, size_t min_work_per_thread, size_t max_threads);
/* The threads a training call of model uses for products of work_per_product multiply-adds (at least 1). */
size_t eb__training_threads(const struct eb_finetuner *model, size_t work_per_product);
/* Chunk `part` of `parts`' share [*first, *last) of count items: contiguous, in order, as even as can be. */
void eb__share_of(size_t count, size_t part, size_t parts, size_t *first, size_t *last);

/* ---- training.c ---------------------------------------------------------- */

/* Weights, their gradient and Adam's moments, in one allocation of 4 * count floats (TRAINABLE_ARRAYS). */
enum { TRAINABLE_ARRAYS = 4 };
typedef struct eb_trainable {
    size_t count;
    float *values;
    float *grad;
    float *first_moment;
    float *second_moment;
    uint64_t steps;
} eb_trainable;

eb_status eb__trainable_alloc(eb_trainable *t, size_t count, const eb_allocator *mem);
void eb__trainable_release(eb_trainable *t, const eb_allocator *mem);
/* PyTorch-style Linear initialisation: every value uniform in +-1/sqrt(fan_in). */
void eb__init_uniform(float *values, size_t count, size_t fan_in, eb_rng *rng);
/* One Adam step (beta1 0.9, beta2 0.999, eps 1e-8) on t->values from t->grad. */
void eb__adam_step(eb_trainable *t, float learning_rate);
/*
 * eb__adam_step in two halves, for a caller that updates the weights in parts of its own: eb__adam_begin counts
 * the step and gives its factors, eb__adam_update_range applies them to weights [first, last).
 */
typedef struct eb_adam_factors {
    float step, inv_sqrt_c2;
} eb_adam_factors;
eb_adam_factors eb__adam_begin(eb_trainable *t, float learning_rate);
void eb__adam_update_range(eb_trainable *t, eb_adam_factors f, size_t first, size_t last);
/*
 * Adam's element-wise update as training runs it (the fastest variant this CPU
 * supports; every variant gives the same bits): m = 0.9 m + 0.1 g;
 * v = 0.999 v + 0.001 g g; w -= step m / (sqrt(v) inv_sqrt_c2 + 1e-8), each
 * operation rounded to float. eb__adam_step derives step and inv_sqrt_c2.
 */
void eb__adam_update(size_t count, float *w, const float *g, float *m, float *v, float step, float inv_sqrt_c2);

/* ---- shared training bookkeeping (training.c) ---------------------------- */

/* The loss history: a growable array of doubles. */
typedef struct eb_history {
    double *values;
    size_t length;
    size_t capacity;
} eb_history;

/* Make room for `extra` more entries; on NOMEM the history is unchanged. */
eb_status eb__history_reserve(eb_history *h, size_t extra, const eb_allocator *mem);
void eb__history_release(eb_history *h, const eb_allocator *mem);

/* Everything a fit produces; fit builds a fresh one and swaps it in only on success. */
typedef struct eb_fit_state {
    bool fitted;
    size_t n_features;
    size_t n_classes;
    size_t out_dim;
    eb_trainable weights;
    eb_rng rng;
    eb_history history;
} eb_fit_state;

void eb__fit_state_release(eb_fit_state *state, const eb_allocator *mem);

/* Common argument checks of fit and partial_fit: NULLs, X, y, n_classes, fitted width. */
eb_status eb__check_training_input(const eb_fit_state *state, eb_matrix x, const int32_t *y, size_t n_classes,
                                   bool partial, eb_error *err);

/* One epoch of training; returns its mean loss. */
typedef double (*eb__epoch_fn)(void *ctx);
/*
 * Run up to n_epochs on state, recording each loss and honouring the stop
 * callback. A non-finite loss or weight ends training with EB_ERR_NONFINITE;
 * with restorable set, state is then put back exactly as it was (the caller
 * trains the model's own state), otherwise the caller discards it.
 */
eb_status eb__train_epochs(eb_fit_state *state, size_t n_epochs, eb_epoch_callback on_epoch, void *callback_data,
                           eb__epoch_fn run_epoch, void *ctx, bool restorable, const eb_allocator *mem,
                           eb_error *err);

/* ---- serialize.c ----------------------------------------------------------- */

/* Little-endian writer; with data == NULL it only counts, which sizes the buffer. */
typedef struct eb_writer {
    uint8_t *data;
    size_t capacity;
    size_t length;
} eb_writer;

void eb__write_u8(eb_writer *w, uint8_t value);
void eb__write_u32(eb_writer *w, uint32_t value);
void eb__write_u64(eb_writer *w, uint64_t value);
void eb__write_f32(eb_writer *w, float value);
void eb__write_fit_state(eb_writer *w, const eb_fit_state *state);

/* Bounds-checked little-endian reader over untrusted bytes. */
typedef struct eb_reader {
    const uint8_t *data;
    size_t size;
    size_t pos;
} eb_reader;

bool eb__read_u8(eb_reader *r, uint8_t *value);
bool eb__read_u32(eb_reader *r, uint32_t *value);
bool eb__read_u64(eb_reader *r, uint64_t *value);
bool eb__read_f32(eb_reader *r, float *value);
/* A u64 that must also fit a size_t. */
bool eb__read_size(eb_reader *r, size_t *value);
/* The fit state as eb__write_fit_state wrote it; checks sizes against the bytes left before allocating. */
eb_status eb__read_fit_state(eb_reader *r, eb_fit_state *state, const eb_allocator *mem, eb_error *err);

/* What every finetuner shares outside its kind's parameters: allocator, message, fit state. */
typedef struct eb_model_core {
    eb_allocator mem;
    eb_error last_error;
    eb_fit_state state;
} eb_model_core;

/* The names of the classes, owned by the finetuner (labels.c). */
typedef struct eb_label_store {
    eb_label_type type;
    size_t count;
    int64_t *integers;    /* EB_LABELS_INT64: count values */
    const char **strings; /* EB_LABELS_UTF8: count pointers into text */
    size_t *lengths;      /* EB_LABELS_UTF8: byte length of each string */
    char *text;           /* EB_LABELS_UTF8: every string followed by a NUL */
} eb_label_store;

/* Validate a caller's labels (count must be expected_count) and copy them into a fresh store. */
eb_status eb__labels_copy(const eb_class_labels *labels, size_t expected_count, const eb_allocator *mem,
                          eb_label_store *out, eb_error *err);
void eb__labels_release(eb_label_store *store, const eb_allocator *mem);
/* The store as the public view. */
eb_class_labels eb__labels_view(const eb_label_store *store);
/* Whether a caller's labels name the same classes, in the same order, as the store. */
bool eb__labels_equal(const eb_label_store *store, const eb_class_labels *labels);
void eb__labels_write(eb_writer *w, const eb_label_store *store);
/* Read what eb__labels_write wrote; n_classes is the fit state's (names must match it). */
eb_status eb__labels_read(eb_reader *r, size_t n_classes, const eb_allocator *mem, eb_label_store *out,
                          eb_error *err);

struct eb_kind_ops;

/* Written into every live handle and cleared by free, so stale and foreign pointers are caught where they can be. */
#define EB_FINETUNER_MAGIC UINT64_C(0x52454e5554464245) /* "EBFTUNER" little-endian */

struct eb_finetuner {
    uint64_t magic;
    const struct eb_kind_ops *ops;
    eb_finetuner_params params;
    eb_model_core core;
    eb_label_store labels;
    uint8_t *metadata;
    size_t metadata_size;
    size_t threads; /* eb_finetuner_set_threads (0: EB_FINETUNER_THREADS_AUTO); not saved */
    eb_team_split team_split; /* eb__finetuner_set_team_split, for tests; not saved */
};

/*
 * What differs between the kinds. finetuner.c checks the handle, the kind
 * and the shared parameter ranges, then calls these; each kind lives in its
 * own file (feedforward.c, contrastive.c, pair_learner.c).
 */
typedef struct eb_kind_ops {
    eb_finetuner_kind kind;
    /* The defaults of eb_finetuner_default_params for this kind. */
    eb_finetuner_params (*default_params)(void);
    /* Checks this kind adds to the shared ones (hidden_dim, n_epochs, learning_rate are already in range). */
    eb_status (*check_params)(const eb_finetuner_params *params, eb_error *err);
    /* Width of transform's output for n_features inputs (0 when it depends on an unknown n_features). */
    size_t (*output_width)(const eb_finetuner_params *params, size_t n_features);
    /* Fresh weights as the first epoch of fit starts from, in a new state (fitted stays false). */
    eb_status (*new_state)(const struct eb_finetuner *model, size_t n_features, size_t n_classes,
                           eb_fit_state *state, eb_error *err);
    /*
     * Train on rows with class labels (NULL for the pair learner). fit trains a new state and swaps it in;
     * partial continues the model's own state. Either way a failure leaves the model as it was and the
     * message in core.last_error. The arguments are checked here (eb__check_training_input).
     */
    eb_status (*fit_labelled)(struct eb_finetuner *model, eb_matrix x, const int32_t *y, size_t n_classes,
                              bool partial);
    /* Train on pairs (NULL for the kinds with class labels); pairs are already checked (eb__check_pairs). */
    eb_status (*fit_pairs)(struct eb_finetuner *model, const eb_pairs *pairs, bool partial);
    /* The public transform, checks included. */
    eb_status (*transform)(const struct eb_finetuner *model, eb_matrix x, eb_mut_matrix out, eb_error *err);
    /* The state (fitted or not) is exactly what fit would build for model->params: load and save ask this. */
    eb_status (*check_state)(const struct eb_finetuner *model, eb_error *err);
    /* Read the params of a version 1 file, which each kind wrote in its own order (NULL: no version 1 files). */
    eb_status (*read_v1_params)(eb_reader *r, eb_finetuner_params *params, eb_error *err);
} eb_kind_ops;

extern const eb_kind_ops eb__feedforward_ops;
extern const eb_kind_ops eb__contrastive_ops;
extern const eb_kind_ops eb__pair_learner_ops;

/* The ops of a kind; NULL for an unknown one. */
const eb_kind_ops *eb__kind_ops(eb_finetuner_kind kind);

/*
 * The pairs are usable by this state: both views valid, X1 and X2 of equal
 * rows (aligned) or indices below X's rows (indexed), equal widths, the
 * fitted width when fitted, finite values, and with need_targets every
 * similarity finite and in [0, 1]. Messages name the pair, row and column.
 */
eb_status eb__check_pairs(const eb_fit_state *state, const eb_pairs *pairs, bool need_targets, eb_error *err);
/* The row of pairs->left (or right) that pair i uses. */
static inline size_t eb__pair_left_row(const eb_pairs *pairs, size_t i)
{
    return pairs->left_index == NULL ? i : pairs->left_index[i];
}
static inline size_t eb__pair_right_row(const eb_pairs *pairs, size_t i)
{
    return pairs->right_index == NULL ? i : pairs->right_index[i];
}

/*
 * How every kind trains, in finetuner.c: fit (or the first partial_fit) builds a fresh state with
 * ops->new_state, runs train on it and swaps it in only on success; a later partial_fit runs one epoch on
 * the model's own state, which eb__train_epochs rolls back if it diverges. train runs n_epochs epochs on
 * state (it is the kind's, taking its workspace and calling eb__train_epochs) with data as the kind
 * passed it. Messages go to model->core.last_error.
 */
typedef eb_status (*eb__train_fn)(const eb_finetuner *model, eb_fit_state *state, const void *data,
                                  size_t n_epochs, eb_error *err);
eb_status eb__fit_or_continue(eb_finetuner *model, size_t n_features, size_t n_classes, bool partial,
                              eb__train_fn train, const void *data);

/* EB_OK for a live handle; else EB_ERR_NULL_POINTER or EB_ERR_INVALID_HANDLE with a message in err. */
eb_status eb__check_handle(const eb_finetuner *model, eb_error *err);

/* What fit and partial_fit hand the train function of the kinds with class labels. */
typedef struct eb_labelled_rows {
    eb_matrix x;
    const int32_t *y;
} eb_labelled_rows;

/* eb__train_epochs with the model's callback and allocator; training the model's own state makes it restorable. */
eb_status eb__train_model(const eb_finetuner *model, eb_fit_state *state, size_t n_epochs, eb__epoch_fn run_epoch,
                          void *ctx, eb_error *err);

/* An unfitted finetuner for checked params (finetuner.c), as create and load make one. */
eb_status eb__finetuner_new(const eb_finetuner_params *params, const eb_allocator *mem, eb_finetuner **out,
                            eb_error *err);

/* Saving and loading any finetuner (serialize.c). */
size_t eb__finetuner_saved_size(const eb_finetuner *model);
eb_status eb__finetuner_save_to_buffer(const eb_finetuner *model, void *buffer, size_t capacity, size_t *written,
                                       eb_error *err);
eb_status eb__finetuner_load_from_buffer(const void *buffer, size_t size, const eb_allocator *mem,
                                         eb_finetuner **out, eb_error *err);

/* The whole file at path (a regular file), from mem; the caller frees *bytes. */
eb_status eb__read_file(const char *path, const eb_allocator *mem, void **bytes, size_t *size, eb_error *err);

/* ---- model.c -------------------------------------------------------------- */

/* The checks every transform makes before computing: fitted, X valid and as wide as the fit, out's shape. */
eb_status eb__check_transform(const eb_model_core *core, eb_matrix x, eb_mut_matrix out, eb_error *err);
/*
 * eb__check_transform except scanning X's values, which the caller then does
 * with eb__check_input_values before it uses them; when a shape check fails,
 * X's values are scanned first, so the error is the one eb__check_transform gives.
 */
eb_status eb__check_transform_layout(const eb_model_core *core, eb_matrix x, eb_mut_matrix out, eb_error *err);

/* ---- bert_config.c: small files and JSON, for the model directories' config files ---- */

struct json_object;

/* The whole regular file at path into *bytes (NUL-terminated, from mem; *size excludes the NUL), refusing one
 * larger than limit bytes; opened without blocking so a FIFO is refused rather than waited on. */
eb_status eb__read_small_file(const char *path, size_t limit, const eb_allocator *mem, char **bytes, size_t *size,
                              eb_error *err);
/* Parse size bytes (at most INT32_MAX) as one JSON value nested at most depth deep; trailing non-space bytes
 * are an error. Errors name source. */
eb_status eb__parse_json_value(const char *data, size_t size, const char *source, int depth, struct json_object **out,
                               eb_error *err);

/*
 * exp(x) without a libm call, so element-wise loops vectorise (the sigmoid of
 * feedforward.c, softmax and GELU in bert.c): x = n ln2 + r with |r| <= ln2/2,
 * a degree-6 Taylor polynomial for e^r (relative error below 2e-7) and 2^n
 * built in the exponent bits. x is clamped to where the result is a normal
 * float, which keeps 1/(1 + e^-z) exact to float at both ends; NaN passes
 * through (the comparisons are false for it).
 */
static inline float eb__fast_expf(float x)
{
    const float lowest = -87.0f, highest = 88.0f;
    x = x < lowest ? lowest : x;
    x = x > highest ? highest : x;
    /* Adding 1.5 * 2^23 rounds to the nearest integer, which lands in the low mantissa bits. */
    const float shifter = 12582912.0f;
    float shifted = x * 1.44269504f + shifter;
    float n = shifted - shifter;
    float r = x - n * 0.693145752f - n * 1.42860677e-6f;
    float p = 1.0f + r * (1.0f + r * (0.5f + r * (0.166666672f + r * (0.0416666679f +
                                                                 r * (0.00833333377f + r * 0.00138888892f)))));
    /* Unsigned, so a NaN's arbitrary bits wrap instead of overflowing a signed shift; p is NaN then anyway. */
    union { float f; uint32_t u; } bits = {shifted}, scale;
    scale.u = (bits.u - 0x4B400000u + 127u) << 23;
    return p * scale.f;
}

/* ---- testing hooks (defined in the model files) -------------------------- */
/* See tests/c/testing.h for their contracts. */

#endif
