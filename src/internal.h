/* Declarations shared by the library's source files; not installed. */
#ifndef EMBETTER_INTERNAL_H
#define EMBETTER_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "embetter/embetter.h"

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
/* column_sums[c] = sum over rows of m[r][c] (m contiguous rows x cols). */
void eb__column_sums(const float *m, size_t rows, size_t cols, float *column_sums);

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

/* ---- training.c ---------------------------------------------------------- */

/* Weights, their gradient and Adam's moments, in one allocation of 4 * count floats. */
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
bool eb__read_u64(eb_reader *r, uint64_t *value);
bool eb__read_f32(eb_reader *r, float *value);
/* A u64 that must also fit a size_t. */
bool eb__read_size(eb_reader *r, size_t *value);
/* The fit state as eb__write_fit_state wrote it; checks sizes against the bytes left before allocating. */
eb_status eb__read_fit_state(eb_reader *r, eb_fit_state *state, const eb_allocator *mem, eb_error *err);

/* What every model handle starts with, so a model pointer also points to its core. */
typedef struct eb_model_core {
    eb_allocator mem;
    eb_error last_error;
    eb_fit_state state;
} eb_model_core;

/* How one model kind is saved and loaded; the shared code frames it and handles the fit state. */
typedef struct eb_model_codec {
    eb_model_kind kind;
    /* The params part of the payload, which the fit state follows. */
    void (*write_params)(const void *model, eb_writer *w);
    /* Read and check the params part, then create an unfitted model holding them. */
    eb_status (*create_from_params)(eb_reader *r, const eb_allocator *mem, void **model, eb_error *err);
    /* The loaded state must be exactly what fit would have built for the model's params. */
    eb_status (*check_loaded_state)(const void *model, eb_error *err);
    void (*release)(void *model);
} eb_model_codec;

size_t eb__model_saved_size(const eb_model_codec *codec, const void *model);
eb_status eb__model_save_to_buffer(const eb_model_codec *codec, const void *model, void *buffer, size_t capacity,
                                   size_t *written, eb_error *err);
/* Serialise to memory, then write path atomically. */
eb_status eb__model_save(const eb_model_codec *codec, const void *model, const char *path, eb_error *err);
eb_status eb__model_load_from_buffer(const eb_model_codec *codec, const void *buffer, size_t size,
                                     const eb_allocator *mem, void **out, eb_error *err);
eb_status eb__model_load(const eb_model_codec *codec, const char *path, const eb_allocator *mem, void **out,
                         eb_error *err);

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
