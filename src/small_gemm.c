/*
 * The two large products of a feed-forward minibatch step, for minibatches of
 * at most EB_SMALL_GEMM_MAX_ROWS rows:
 *
 *   forward   H = X W + bias       (b x d) (d x h), b rows
 *   backward  G = X^T D            (d x b) (b x h), inner dimension b
 *
 * OpenBLAS packs both operands into its own buffers on every call; at 32 rows
 * copying the 384 x 200 weight matrix costs about as much as multiplying by it,
 * and its beta = 0 path clears G before accumulating into it. These kernels
 * read the row-major operands in place (the weight rows are streamed from L2)
 * and write each result once. With AVX-512 the register tile is 8 rows x 48
 * columns: 24 accumulators, 3 loads of the right operand and 8 broadcasts per
 * step of the inner dimension (16 or 32 columns for the last few). Elsewhere
 * (no AVX-512, larger batches) both functions call cblas_sgemm themselves, so
 * callers use them for any batch.
 *
 * Inputs that are mostly zeros (hashed n-gram counts, bags of words) go to
 * sparse kernels instead, which do the multiply-adds of the nonzero entries
 * only; see SPARSE_AFFINE_MAX_DENSITY below for where the choice falls.
 *
 * Every output element is a sum over the inner dimension in index order with
 * one fused multiply-add per term, starting from zero; the bias is added last,
 * as OpenBLAS does it for a pre-filled output. Results therefore match
 * cblas_sgemm to rounding, not bit for bit, and the dense and sparse kernels
 * bit for bit (tests/c/test_small_gemm.c).
 */
#include "blas.h"
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "internal.h"

#ifdef EB_HAVE_AVX512_KERNELS
#  include <immintrin.h>
#endif

bool eb__small_gemm_available(size_t rows)
{
#ifdef EB_HAVE_AVX512_KERNELS
    return rows >= 1 && rows <= EB_SMALL_GEMM_MAX_ROWS && __builtin_cpu_supports("avx512f");
#else
    (void)rows;
    return false;
#endif
}

#ifdef EB_HAVE_AVX512_KERNELS

enum { TILE_ROWS = 8, TILE_VECTORS = 3, LANES = 16, TILE_COLS = TILE_VECTORS * LANES };

#define EB_FOR_TILE_ROWS(op) op(0) op(1) op(2) op(3) op(4) op(5) op(6) op(7)

/*
 * One tile of 8 rows and `vectors` (1 to 3, a constant once inlined) column
 * vectors of 16: C[r][col] = sum over k of a(r, k) * B[k][col] (+ bias[col]),
 * for r < rows. a(r, k) = a_rows[r][k * a_step]; B row k starts at b + k * ldb.
 * Only the last vector may be partial (last_mask). Rows past `rows` repeat
 * the last real row and are not stored, so the code has one fixed shape and
 * its accumulators stay in registers. A narrower tile for the last columns
 * keeps, for instance, the 8 columns left of 200 from costing a full 48.
 */
__attribute__((target("avx512f"), always_inline)) static inline void
tile_body(size_t rows, const float *const a_rows[TILE_ROWS], size_t a_step, size_t inner, const float *b, size_t ldb,
          const float *bias, __mmask16 last_mask, float *c, size_t ldc, const int vectors)
{
    const __mmask16 full = 0xFFFF;
    const __mmask16 m0 = vectors == 1 ? last_mask : full, m1 = vectors == 2 ? last_mask : full, m2 = last_mask;
    const bool partial = last_mask != full;
#define EB_DECLARE(r)                                                                                               \
    __m512 acc##r##_0 = _mm512_setzero_ps(), acc##r##_1 = _mm512_setzero_ps(), acc##r##_2 = _mm512_setzero_ps(); \
    const float *a##r = a_rows[r];
    EB_FOR_TILE_ROWS(EB_DECLARE)
#undef EB_DECLARE
    for (size_t k = 0; k < inner; k++) {
        const float *b_row = b + k * ldb;
        __m512 b0 = _mm512_setzero_ps(), b1 = _mm512_setzero_ps(), b2 = _mm512_setzero_ps();
        if (partial) {
            b0 = _mm512_maskz_loadu_ps(m0, b_row);
            if (vectors > 1)
                b1 = _mm512_maskz_loadu_ps(m1, b_row + LANES);
            if (vectors > 2)
                b2 = _mm512_maskz_loadu_ps(m2, b_row + 2 * LANES);
        } else {
            b0 = _mm512_loadu_ps(b_row);
            if (vectors > 1)
                b1 = _mm512_loadu_ps(b_row + LANES);
            if (vectors > 2)
                b2 = _mm512_loadu_ps(b_row + 2 * LANES);
        }
        size_t offset = k * a_step;
#define EB_STEP(r)                                                                                                  \
    {                                                                                                               \
        __m512 a = _mm512_set1_ps(a##r[offset]);                                                                  \
        acc##r##_0 = _mm512_fmadd_ps(a, b0, acc##r##_0);                                                            \
        if (vectors > 1)                                                                                            \
            acc##r##_1 = _mm512_fmadd_ps(a, b1, acc##r##_1);                                                        \
        if (vectors > 2)                                                                                            \
            acc##r##_2 = _mm512_fmadd_ps(a, b2, acc##r##_2);                                                        \
    }
        EB_FOR_TILE_ROWS(EB_STEP)
#undef EB_STEP
    }
    __m512 bias0 = _mm512_setzero_ps(), bias1 = _mm512_setzero_ps(), bias2 = _mm512_setzero_ps();
    if (bias != NULL) {
        bias0 = _mm512_maskz_loadu_ps(m0, bias);
        if (vectors > 1)
            bias1 = _mm512_maskz_loadu_ps(m1, bias + LANES);
        if (vectors > 2)
            bias2 = _mm512_maskz_loadu_ps(m2, bias + 2 * LANES);
    }
#define EB_STORE_VECTOR(r, v)                                                                                       \
    _mm512_mask_storeu_ps(c_row + (v) * LANES, m##v, bias != NULL ? _mm512_add_ps(acc##r##_##v, bias##v) : acc##r##_##v);
#define EB_STORE(r)                                                                                                 \
    if (r < rows) {                                                                                                 \
        float *c_row = c + (size_t)(r) * ldc;                                                                       \
        EB_STORE_VECTOR(r, 0)                                                                                       \
        if (vectors > 1) {                                                                                          \
            EB_STORE_VECTOR(r, 1)                                                                                   \
        }                                                                                                           \
        if (vectors > 2) {                                                                                          \
            EB_STORE_VECTOR(r, 2)                                                                                   \
        }                                                                                                           \
    }
    EB_FOR_TILE_ROWS(EB_STORE)
#undef EB_STORE
#undef EB_STORE_VECTOR
}

/* The tile widths, each compiled with its accumulators fixed. */
#define EB_TILE_OF_WIDTH(vectors)                                                                                   \
    __attribute__((target("avx512f"))) static void tile_##vectors(                                                 \
        size_t rows, const float *const a_rows[TILE_ROWS], size_t a_step, size_t inner, const float *b, size_t ldb, \
        const float *bias, __mmask16 last_mask, float *c, size_t ldc)                                               \
    {                                                                                                               \
        tile_body(rows, a_rows, a_step, inner, b, ldb, bias, last_mask, c, ldc, vectors);                           \
    }
EB_TILE_OF_WIDTH(1)
EB_TILE_OF_WIDTH(2)
EB_TILE_OF_WIDTH(3)
#undef EB_TILE_OF_WIDTH

/*
 * C (c_rows x h, row stride ldc) = A B (+ bias), where a(i, k) =
 * a[row(i) * a_row_step + k * a_k_step], row(i) = a_index[i] (i itself when
 * a_index is NULL), and row k of B (h floats) starts at b + k * ldb.
 */
__attribute__((target("avx512f"))) static void tiled_product(size_t c_rows, const float *a, const uint32_t *a_index,
                                                            size_t a_row_step,
                                                            size_t a_k_step, size_t inner, const float *b, size_t h,
                                                            size_t ldb, const float *bias, float *c, size_t ldc)
{
    for (size_t col = 0; col < h; col += TILE_COLS) {
        size_t left = h - col < TILE_COLS ? h - col : TILE_COLS;
        size_t vectors = (left + LANES - 1) / LANES;
        size_t last_lanes = left - (vectors - 1) * LANES;
        __mmask16 last_mask = (__mmask16)((1u << last_lanes) - 1u);
        for (size_t row = 0; row < c_rows; row += TILE_ROWS) {
            size_t rows = c_rows - row < TILE_ROWS ? c_rows - row : TILE_ROWS;
            const float *a_rows[TILE_ROWS];
            for (size_t r = 0; r < TILE_ROWS; r++) {
                size_t i = row + (r < rows ? r : rows - 1);
                a_rows[r] = a + (a_index == NULL ? i : a_index[i]) * a_row_step;
            }
            const float *tile_bias = bias == NULL ? NULL : bias + col;
            float *tile_c = c + row * ldc + col;
            if (vectors == 3)
                tile_3(rows, a_rows, a_k_step, inner, b + col, ldb, tile_bias, last_mask, tile_c, ldc);
            else if (vectors == 2)
                tile_2(rows, a_rows, a_k_step, inner, b + col, ldb, tile_bias, last_mask, tile_c, ldc);
            else
                tile_1(rows, a_rows, a_k_step, inner, b + col, ldb, tile_bias, last_mask, tile_c, ldc);
        }
    }
}


/*
 * The sparse kernels. Inputs such as hashed n-gram counts are mostly zeros
 * (the walk-through's fortunes rows: 76%), and a term 0 * w adds nothing to a
 * sum of finite values, so these kernels visit only the nonzero entries of x,
 * in index order, one fused multiply-add each, from zero, bias last: the same
 * operations on every term that matters, hence the dense kernels' bits (the
 * only possible difference is the sign of a sum that is exactly zero). NaN
 * counts as nonzero and reaches the sum; an infinite weight or delta met by a
 * zero of x gives NaN in the dense product and not here, which only changes
 * how a fit that has already diverged fails.
 */
enum { SPARSE_VECTORS = 4, SPARSE_COLS = SPARSE_VECTORS * LANES, SPARSE_CHUNK = 256 };

/*
 * Up to these shares of nonzero entries in x the sparse kernels are faster
 * (measured at 32 x 1024 -> 50 and 32 x 384 -> 200, 1 core: the forward one
 * breaks even at 30-35% nonzeros at 200 outputs, its rows of w coming from L2
 * for one row of x each where a dense tile shares them among 8, and at 43% at
 * 50 outputs, one block of the sparse kernel, where the dense tiles spend a
 * 48-wide tile and a mostly empty one on them (2026-12-04, AMD EPYC: at 40%
 * nonzeros 34.6 us sparse against 37.1 dense); the transposed one, reading
 * the batch's deltas from L1, at 40-60%).
 */
static const double SPARSE_AFFINE_MAX_DENSITY = 0.3;
static const double SPARSE_AFFINE_ONE_BLOCK_MAX_DENSITY = 0.4;

/* The forward product's threshold for `cols` outputs. */
static double sparse_affine_max_density(size_t cols)
{
    return cols <= SPARSE_COLS ? SPARSE_AFFINE_ONE_BLOCK_MAX_DENSITY : SPARSE_AFFINE_MAX_DENSITY;
}
static const double SPARSE_TRANSPOSED_MAX_DENSITY = 0.4;

/* Lanes of x[0 .. min(left, 16)) that are not zero (NaN included). */
__attribute__((target("avx512f"), always_inline)) static inline unsigned nonzero_lanes(const float *x, size_t left)
{
    __mmask16 valid = left >= LANES ? (__mmask16)0xFFFF : (__mmask16)((1u << left) - 1u);
    return _mm512_mask_cmp_ps_mask(valid, _mm512_maskz_loadu_ps(valid, x), _mm512_setzero_ps(), _CMP_NEQ_UQ);
}

/*
 * Whether x has at most `density` nonzero entries, judged on up to
 * SPARSE_SAMPLE_ROWS rows spread over x. Both kernels give the same bits, so
 * an unlucky sample costs time, never a different result; counting every
 * entry cost 3% of a minibatch fit.
 */
enum { SPARSE_SAMPLE_ROWS = 8 };
__attribute__((target("avx512f,popcnt"))) static bool mostly_zeros(eb_matrix x, const uint32_t *index,
                                                                   double density)
{
    size_t sampled = x.rows < SPARSE_SAMPLE_ROWS ? x.rows : SPARSE_SAMPLE_ROWS, count = 0;
    for (size_t i = 0; i < sampled; i++) {
        size_t r = i * x.rows / sampled;
        const float *row = x.data + (index == NULL ? r : index[r]) * x.stride;
        for (size_t j = 0; j < x.cols; j += LANES)
            count += (size_t)__builtin_popcount(nonzero_lanes(row + j, x.cols - j));
    }
    return (double)count <= density * (double)(sampled * x.cols);
}

/*
 * With `narrow`, the last vector holds at most 8 columns and works in 256-bit
 * registers: at 50 columns the 2 left over after 48 cost a quarter of a
 * row's loads and multiply-adds as a 512-bit vector, 10% of a feed-forward
 * fit. The lanes and their fused multiply-adds are the same, so are the bits.
 */
#define EB_NARROW(v) (narrow && vectors == (v) + 1)
#define EB_NARROW_FMA(av, mask, p, acc)                                                                              \
    _mm512_castps256_ps512(_mm256_fmadd_ps(_mm512_castps512_ps256(av), _mm256_maskz_loadu_ps((__mmask8)(mask), p),   \
                                           _mm512_castps512_ps256(acc)))
#define EB_ONE_FMA(v, acc, av, p, mask)                                                                              \
    acc = EB_NARROW(v) ? EB_NARROW_FMA(av, mask, p, acc) : _mm512_fmadd_ps(av, _mm512_maskz_loadu_ps(mask, p), acc);

/* Accumulators acc##0..acc##3 += av * B row (vectors of 16 floats, the last one masked), for `vectors` of them. */
#define EB_SPARSE_FMA_INTO(acc, av, b_row)                                                                          \
    {                                                                                                               \
        const float *b_row_ = (b_row);                                                                              \
        EB_ONE_FMA(0, acc##0, av, b_row_, m0)                                                                       \
        if (vectors > 1)                                                                                            \
            EB_ONE_FMA(1, acc##1, av, b_row_ + LANES, m1)                                                           \
        if (vectors > 2)                                                                                            \
            EB_ONE_FMA(2, acc##2, av, b_row_ + 2 * LANES, m2)                                                       \
        if (vectors > 3)                                                                                            \
            EB_ONE_FMA(3, acc##3, av, b_row_ + 3 * LANES, m3)                                                       \
    }
#define EB_SPARSE_FMA(b_row) EB_SPARSE_FMA_INTO(acc, a, b_row)

/* p[lanes of mask] = acc (+ bias), a narrow last vector in 256-bit registers. */
#define EB_ONE_STORE(v, acc, p, bias_p, mask)                                                                        \
    {                                                                                                               \
    if (EB_NARROW(v)) {                                                                                             \
        __m256 sum_ = _mm512_castps512_ps256(acc);                                                                  \
        if (bias_ != NULL)                                                                                          \
            sum_ = _mm256_add_ps(sum_, _mm256_maskz_loadu_ps((__mmask8)(mask), bias_p));                            \
        _mm256_mask_storeu_ps(p, (__mmask8)(mask), sum_);                                                           \
    } else {                                                                                                        \
        __m512 sum_ = acc;                                                                                          \
        if (bias_ != NULL)                                                                                          \
            sum_ = _mm512_add_ps(sum_, _mm512_maskz_loadu_ps(mask, bias_p));                                        \
        _mm512_mask_storeu_ps(p, mask, sum_);                                                                       \
    }                                                                                                               \
    }

/* c_row[0 .. 16 * vectors) (the last vector masked) = acc##0..acc##3 (+ bias). */
#define EB_SPARSE_STORE_FROM(acc, c_row, bias)                                                                      \
    {                                                                                                               \
        const float *bias_ = (bias);                                                                                \
        float *c_ = (c_row);                                                                                        \
        EB_ONE_STORE(0, acc##0, c_, bias_, m0)                                                                      \
        if (vectors > 1)                                                                                            \
            EB_ONE_STORE(1, acc##1, c_ + LANES, bias_ + LANES, m1)                                                  \
        if (vectors > 2)                                                                                            \
            EB_ONE_STORE(2, acc##2, c_ + 2 * LANES, bias_ + 2 * LANES, m2)                                          \
        if (vectors > 3)                                                                                            \
            EB_ONE_STORE(3, acc##3, c_ + 3 * LANES, bias_ + 3 * LANES, m3)                                          \
    }
#define EB_SPARSE_STORE(c_row, bias) EB_SPARSE_STORE_FROM(acc, c_row, bias)

#define EB_SPARSE_MASKS                                                                                             \
    const __mmask16 full = 0xFFFF;                                                                                  \
    const __mmask16 m0 = vectors == 1 ? last_mask : full, m1 = vectors == 2 ? last_mask : full;                     \
    const __mmask16 m2 = vectors == 3 ? last_mask : full, m3 = last_mask;                                           \
    __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps(), acc2 = _mm512_setzero_ps(),                      \
           acc3 = _mm512_setzero_ps();

/* acc##0..acc##3 = the partial sums stored at row (the last vector masked), to continue them. */
#define EB_SPARSE_LOAD_PARTIAL_INTO(acc, row)                                                                       \
    {                                                                                                               \
        acc##0 = _mm512_maskz_loadu_ps(m0, (row));                                                                  \
        if (vectors > 1)                                                                                            \
            acc##1 = _mm512_maskz_loadu_ps(m1, (row) + LANES);                                                      \
        if (vectors > 2)                                                                                            \
            acc##2 = _mm512_maskz_loadu_ps(m2, (row) + 2 * LANES);                                                  \
        if (vectors > 3)                                                                                            \
            acc##3 = _mm512_maskz_loadu_ps(m3, (row) + 3 * LANES);                                                  \
    }
#define EB_SPARSE_LOAD_PARTIAL(row) EB_SPARSE_LOAD_PARTIAL_INTO(acc, row)

/*
 * The positions of the nonzero entries of x[0 .. count) (count <= SPARSE_CHUNK),
 * ascending, into index[]; returns how many. Compressing lanes avoids a branch
 * per nonzero (a mispredicted loop exit per 16 entries costs more than the
 * multiply-adds). index needs SPARSE_CHUNK + LANES entries: whole vectors are stored.
 */
__attribute__((target("avx512f,popcnt"), always_inline)) static inline size_t nonzero_positions(const float *x,
                                                                                              size_t count,
                                                                                              uint32_t *index)
{
    size_t found = 0;
    const __m512i lane = _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0);
    for (size_t j = 0; j < count; j += LANES) {
        __mmask16 lanes = (__mmask16)nonzero_lanes(x + j, count - j);
        __m512i positions = _mm512_maskz_compress_epi32(lanes, _mm512_add_epi32(lane, _mm512_set1_epi32((int)j)));
        _mm512_storeu_si512((void *)(index + found), positions);
        found += (size_t)__builtin_popcount(lanes);
    }
    return found;
}

/*
 * One row of C, columns [0, 16 * vectors) of the block b points into:
 * c_row = x_row B (+ bias) over the nonzero entries of x_row (inner of them at most).
 */
__attribute__((target("avx512f,avx512vl,fma,popcnt"), always_inline)) static inline void
sparse_row_body(const float *x_row, size_t inner, const float *b, size_t ldb, const float *bias, __mmask16 last_mask,
                float *c_row, const int vectors, const bool narrow)
{
    EB_SPARSE_MASKS
    uint32_t index[SPARSE_CHUNK + LANES];
    for (size_t j0 = 0; j0 < inner; j0 += SPARSE_CHUNK) {
        size_t found = nonzero_positions(x_row + j0, inner - j0 < SPARSE_CHUNK ? inner - j0 : SPARSE_CHUNK, index);
        for (size_t t = 0; t < found; t++) {
            size_t k = j0 + index[t];
            __m512 a = _mm512_set1_ps(x_row[k]);
            EB_SPARSE_FMA(b + k * ldb)
        }
    }
    EB_SPARSE_STORE(c_row, bias)
}

/*
 * One row i of G = X^T D, columns [0, 16 * vectors) of the block d points
 * into, over the rows k of X whose entry in column i is nonzero (the set bits
 * of `rows`, lowest first: index order).
 */
__attribute__((target("avx512f,avx512vl,fma,bmi"), always_inline)) static inline void
sparse_column_body(uint64_t rows, const float *x_col, const size_t *x_offsets, const float *d, size_t ldd,
                   __mmask16 last_mask, bool first, float *g_row, const int vectors, const bool narrow)
{
    EB_SPARSE_MASKS
    if (!first)
        EB_SPARSE_LOAD_PARTIAL(g_row)
    while (rows != 0) {
        size_t k = (size_t)__builtin_ctzll(rows);
        rows &= rows - 1;
        __m512 a = _mm512_set1_ps(x_col[x_offsets[k]]);
        EB_SPARSE_FMA(d + k * ldd)
    }
    EB_SPARSE_STORE(g_row, (const float *)NULL)
}

/* One output row's share of a listed product: count entries (B's row at[t] times values[t]) into out_row. */
typedef struct eb_listed_span {
    const uint32_t *at;
    const float *values;
    size_t count;
    size_t out_row;
    bool first;
} eb_listed_span;

/*
 * out_row = sum over t of values[t] * B row at[t] (+ bias), the entries in
 * the order given, continuing from out_row's partial sums unless `first`:
 * the sums of the two kernels above over nonzeros that were listed once
 * (eb_sparse_rows) instead of found at every product.
 */
__attribute__((target("avx512f,avx512vl,fma"), always_inline)) static inline void
listed_sum_body(const uint32_t *at, const float *values, size_t count, const float *b, size_t ldb, const float *bias,
                __mmask16 last_mask, bool first, float *out_row, const int vectors, const bool narrow)
{
    EB_SPARSE_MASKS
    if (!first)
        EB_SPARSE_LOAD_PARTIAL(out_row)
    for (size_t t = 0; t < count; t++) {
        __m512 a = _mm512_set1_ps(values[t]);
        EB_SPARSE_FMA(b + (size_t)at[t] * ldb)
    }
    EB_SPARSE_STORE(out_row, bias)
}

/*
 * The same for two spans at once, an entry of one then an entry of the other. Each vector of a span's sums is a
 * chain of dependent multiply-adds; at one or two vectors a row one chain's latency (4 cycles on AMD's Zen 4),
 * not the FMA units, sets the pace, and the other span's chains fill the wait. At three or four vectors the
 * units are busy already and the second span only adds work (2026-12-04, AMD EPYC: a contrastive fit at 50
 * columns 16.1 ms one span at a time, 17.1-17.5 ms two). Each span's sums still run over its entries in order, so
 * the bits are those of listed_sum_body.
 */
__attribute__((target("avx512f,avx512vl,fma"), always_inline)) static inline void
listed_sum_pair_body(const eb_listed_span *p, const eb_listed_span *q, const float *b, size_t ldb, const float *bias,
                     __mmask16 last_mask, float *out, size_t ldo, const int vectors, const bool narrow)
{
    EB_SPARSE_MASKS
    __m512 qcc0 = _mm512_setzero_ps(), qcc1 = _mm512_setzero_ps(), qcc2 = _mm512_setzero_ps(),
           qcc3 = _mm512_setzero_ps();
    float *p_row = out + p->out_row * ldo, *q_row = out + q->out_row * ldo;
    if (!p->first)
        EB_SPARSE_LOAD_PARTIAL_INTO(acc, p_row)
    if (!q->first)
        EB_SPARSE_LOAD_PARTIAL_INTO(qcc, q_row)
    const size_t both = p->count < q->count ? p->count : q->count;
    for (size_t t = 0; t < both; t++) {
        __m512 a = _mm512_set1_ps(p->values[t]), c = _mm512_set1_ps(q->values[t]);
        EB_SPARSE_FMA_INTO(acc, a, b + (size_t)p->at[t] * ldb)
        EB_SPARSE_FMA_INTO(qcc, c, b + (size_t)q->at[t] * ldb)
    }
    for (size_t t = both; t < p->count; t++) {
        __m512 a = _mm512_set1_ps(p->values[t]);
        EB_SPARSE_FMA_INTO(acc, a, b + (size_t)p->at[t] * ldb)
    }
    for (size_t t = both; t < q->count; t++) {
        __m512 c = _mm512_set1_ps(q->values[t]);
        EB_SPARSE_FMA_INTO(qcc, c, b + (size_t)q->at[t] * ldb)
    }
    EB_SPARSE_STORE_FROM(acc, p_row, bias)
    EB_SPARSE_STORE_FROM(qcc, q_row, bias)
}

#define EB_SPARSE_OF_WIDTH(vectors, narrow, name)                                                                   \
    __attribute__((target("avx512f,avx512vl,fma,popcnt"))) static void sparse_row_##name(                              \
        const float *x_row, size_t inner, const float *b, size_t ldb, const float *bias, __mmask16 last_mask,      \
        float *c_row)                                                                                               \
    {                                                                                                               \
        sparse_row_body(x_row, inner, b, ldb, bias, last_mask, c_row, vectors, narrow);                             \
    }                                                                                                               \
    __attribute__((target("avx512f,avx512vl,fma,bmi"))) static void sparse_column_##name(                              \
        const uint64_t *rows, size_t count, const float *x, const size_t *x_offsets, const float *d, size_t ldd,   \
        __mmask16 last_mask, bool first, float *g, size_t ldg)                                                      \
    {                                                                                                               \
        for (size_t i = 0; i < count; i++)                                                                          \
            sparse_column_body(rows[i], x + i, x_offsets, d, ldd, last_mask, first, g + i * ldg, vectors, narrow);  \
    }                                                                                                               \
    __attribute__((target("avx512f,avx512vl,fma"))) static void listed_sums_##name(                                  \
        const eb_listed_span *spans, size_t count, const float *b, size_t ldb, const float *bias,                   \
        __mmask16 last_mask, float *out, size_t ldo)                                                                \
    {                                                                                                               \
        size_t r = 0;                                                                                               \
        if (vectors <= 2)                                                                                           \
            for (; r + 1 < count; r += 2)                                                                           \
                listed_sum_pair_body(&spans[r], &spans[r + 1], b, ldb, bias, last_mask, out, ldo, vectors, narrow); \
        for (; r < count; r++)                                                                                      \
            listed_sum_body(spans[r].at, spans[r].values, spans[r].count, b, ldb, bias, last_mask, spans[r].first,  \
                            out + spans[r].out_row * ldo, vectors, narrow);                                         \
    }
EB_SPARSE_OF_WIDTH(1, false, 1)
EB_SPARSE_OF_WIDTH(2, false, 2)
EB_SPARSE_OF_WIDTH(3, false, 3)
EB_SPARSE_OF_WIDTH(4, false, 4)
EB_SPARSE_OF_WIDTH(1, true, 1_narrow)
EB_SPARSE_OF_WIDTH(2, true, 2_narrow)
EB_SPARSE_OF_WIDTH(3, true, 3_narrow)
EB_SPARSE_OF_WIDTH(4, true, 4_narrow)
#undef EB_SPARSE_OF_WIDTH
#undef EB_SPARSE_MASKS
#undef EB_SPARSE_LOAD_PARTIAL
#undef EB_SPARSE_LOAD_PARTIAL_INTO
#undef EB_SPARSE_STORE
#undef EB_SPARSE_STORE_FROM
#undef EB_SPARSE_FMA
#undef EB_SPARSE_FMA_INTO
#undef EB_ONE_FMA
#undef EB_ONE_STORE
#undef EB_NARROW_FMA
#undef EB_NARROW

/* Column blocks of up to 64 outputs: how many vectors this one has and the mask of its last. */
/* narrow: the last vector's lanes fit a 256-bit register, and the CPU has AVX-512VL for its masked loads and stores. */
static size_t block_vectors(size_t left, __mmask16 *last_mask, bool *narrow)
{
    size_t width = left < SPARSE_COLS ? left : SPARSE_COLS;
    size_t vectors = (width + LANES - 1) / LANES;
    size_t last_lanes = width - (vectors - 1) * LANES;
    *last_mask = (__mmask16)((1u << last_lanes) - 1u);
    *narrow = last_lanes <= 8 && __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("fma");
    return vectors;
}

/* out = x w + bias over the nonzero entries of x; x's row r is x.data's row index[r] (r itself when index is NULL). */
__attribute__((target("avx512f,popcnt"))) static void sparse_affine(eb_matrix x, const uint32_t *index,
                                                                    const float *w, const float *bias,
                                                                    eb_mut_matrix out)
{
    const size_t h = out.cols;
    for (size_t col = 0; col < h; col += SPARSE_COLS) {
        __mmask16 last_mask;
        bool narrow;
        size_t vectors = block_vectors(h - col, &last_mask, &narrow);
        const float *block_bias = bias == NULL ? NULL : bias + col;
        for (size_t r = 0; r < x.rows; r++) {
            const float *x_row = x.data + (index == NULL ? r : index[r]) * x.stride;
            float *c_row = out.data + r * out.stride + col;
            if (vectors == 4)
                (narrow ? sparse_row_4_narrow : sparse_row_4)(x_row, x.cols, w + col, h, block_bias, last_mask, c_row);
            else if (vectors == 3)
                (narrow ? sparse_row_3_narrow : sparse_row_3)(x_row, x.cols, w + col, h, block_bias, last_mask, c_row);
            else if (vectors == 2)
                (narrow ? sparse_row_2_narrow : sparse_row_2)(x_row, x.cols, w + col, h, block_bias, last_mask, c_row);
            else
                (narrow ? sparse_row_1_narrow : sparse_row_1)(x_row, x.cols, w + col, h, block_bias, last_mask, c_row);
        }
    }
}

/*
 * Bit k of rows[i] is set when x[k][i] is not zero, for the count columns and
 * (at most 64) rows of x, row k starting at x.data + offsets[k]: row by row
 * (x's order), 16 columns at a time. Returns the number of nonzero entries.
 */
__attribute__((target("avx512f,popcnt"))) static size_t nonzero_rows_by_column(eb_matrix x, const size_t *offsets,
                                                                               size_t count, uint64_t *rows)
{
    size_t nonzero = 0;
    for (size_t j = 0; j < count; j += LANES) {
        _mm512_storeu_si512((void *)(rows + j), _mm512_setzero_si512());
        _mm512_storeu_si512((void *)(rows + j + 8), _mm512_setzero_si512());
    }
    for (size_t k = 0; k < x.rows; k++) {
        const float *x_row = x.data + offsets[k];
        const __m512i bit = _mm512_set1_epi64((long long)((uint64_t)1 << k));
        for (size_t j = 0; j < count; j += LANES) {
            __mmask16 lanes = (__mmask16)nonzero_lanes(x_row + j, count - j);
            __m512i low = _mm512_loadu_si512((const void *)(rows + j));
            __m512i high = _mm512_loadu_si512((const void *)(rows + j + 8));
            _mm512_storeu_si512((void *)(rows + j), _mm512_mask_or_epi64(low, (__mmask8)lanes, low, bit));
            _mm512_storeu_si512((void *)(rows + j + 8), _mm512_mask_or_epi64(high, (__mmask8)(lanes >> 8), high, bit));
            nonzero += (size_t)__builtin_popcount(lanes);
        }
    }
    return nonzero;
}

/*
 * G (count rows of h) = x^T d over the set bits of rows[], x's row k starting
 * at x_data + x_offsets[k], continuing from G's partial sums unless `first`;
 * the rows of d and G start ld floats apart.
 */
__attribute__((target("avx512f,bmi"))) static void sparse_columns(const uint64_t *rows, size_t count,
                                                                  const float *x_data, const size_t *x_offsets,
                                                                  const float *d, size_t h, size_t ld, bool first,
                                                                  float *g)
{
    for (size_t col = 0; col < h; col += SPARSE_COLS) {
        __mmask16 last_mask;
        bool narrow;
        size_t vectors = block_vectors(h - col, &last_mask, &narrow);
        if (vectors == 4)
            (narrow ? sparse_column_4_narrow : sparse_column_4)(rows, count, x_data, x_offsets, d + col, ld, last_mask, first, g + col, ld);
        else if (vectors == 3)
            (narrow ? sparse_column_3_narrow : sparse_column_3)(rows, count, x_data, x_offsets, d + col, ld, last_mask, first, g + col, ld);
        else if (vectors == 2)
            (narrow ? sparse_column_2_narrow : sparse_column_2)(rows, count, x_data, x_offsets, d + col, ld, last_mask, first, g + col, ld);
        else
            (narrow ? sparse_column_1_narrow : sparse_column_1)(rows, count, x_data, x_offsets, d + col, ld, last_mask, first, g + col, ld);
    }
}

/*
 * G = X^T D for a minibatch (at most 64 rows), a chunk of X's columns at a
 * time: first the set of rows with a nonzero entry, per column (a bit mask),
 * then each row of G over those rows only. A chunk whose entries are mostly
 * nonzero goes to the dense tiles instead (same bits), so `path` DENSE or
 * SPARSE forces one. X's row r is x.data's row index[r] (r itself when index
 * is NULL); with an index, a dense chunk is first copied into scratch
 * (x.rows x min(x.cols, SPARSE_CHUNK) floats), as the tiles need a fixed stride.
 * The rows of D and G start ld floats apart.
 */
__attribute__((target("avx512f"))) static void transposed_product(eb_small_gemm_path path, eb_matrix x,
                                                                  const uint32_t *index, float *scratch,
                                                                  const float *d, size_t h, size_t ld, float *g)
{
    uint64_t rows[SPARSE_CHUNK + LANES]; /* whole vectors are stored */
    size_t offsets[EB_SMALL_GEMM_MAX_ROWS];
    for (size_t k = 0; k < x.rows; k++)
        offsets[k] = (index == NULL ? k : index[k]) * x.stride;
    for (size_t i0 = 0; i0 < x.cols; i0 += SPARSE_CHUNK) {
        size_t count = x.cols - i0 < SPARSE_CHUNK ? x.cols - i0 : SPARSE_CHUNK;
        eb_matrix chunk = {x.data + i0, x.rows, count, x.stride};
        float *g_chunk = g + i0 * ld;
        bool sparse = path == EB_SMALL_GEMM_SPARSE;
        if (path != EB_SMALL_GEMM_DENSE) {
            size_t nonzero = nonzero_rows_by_column(chunk, offsets, count, rows);
            sparse = sparse || (double)nonzero <= SPARSE_TRANSPOSED_MAX_DENSITY * (double)(count * x.rows);
        }
        if (sparse) {
            sparse_columns(rows, count, chunk.data, offsets, d, h, ld, true, g_chunk);
        } else if (index == NULL) {
            tiled_product(count, chunk.data, NULL, 1, x.stride, x.rows, d, h, ld, NULL, g_chunk, ld);
        } else {
            for (size_t k = 0; k < x.rows; k++)
                memcpy(scratch + k * count, chunk.data + offsets[k], count * sizeof *scratch);
            tiled_product(count, scratch, NULL, 1, count, x.rows, d, h, ld, NULL, g_chunk, ld);
        }
    }
}

/*
 * G = X^T D for any number of rows, all sparse: 64 rows of X (and D) at a
 * time, each block continuing the sums of the one before, so every sum still
 * runs over the rows in order.
 */
__attribute__((target("avx512f"))) static void sparse_transposed_product(eb_matrix x, const float *d, size_t h,
                                                                         float *g)
{
    uint64_t rows[SPARSE_CHUNK + LANES];
    size_t offsets[EB_SMALL_GEMM_MAX_ROWS];
    for (size_t k = 0; k < EB_SMALL_GEMM_MAX_ROWS; k++)
        offsets[k] = k * x.stride;
    for (size_t i0 = 0; i0 < x.cols; i0 += SPARSE_CHUNK) {
        size_t count = x.cols - i0 < SPARSE_CHUNK ? x.cols - i0 : SPARSE_CHUNK;
        for (size_t r0 = 0; r0 < x.rows; r0 += EB_SMALL_GEMM_MAX_ROWS) {
            size_t block_rows = x.rows - r0 < EB_SMALL_GEMM_MAX_ROWS ? x.rows - r0 : EB_SMALL_GEMM_MAX_ROWS;
            eb_matrix block = {x.data + r0 * x.stride + i0, block_rows, count, x.stride};
            nonzero_rows_by_column(block, offsets, count, rows);
            sparse_columns(rows, count, block.data, offsets, d + r0 * h, h, h, r0 == 0, g + i0 * h);
        }
    }
}


/*
 * out = the listed products of spans with b (h wide; bias added unless NULL), a block of 64 columns at a time;
 * the rows of b and out start ld floats apart.
 */
__attribute__((target("avx512f"))) static void listed_products(const eb_listed_span *spans, size_t count,
                                                               const float *b, size_t h, size_t ld,
                                                               const float *bias, float *out)
{
    for (size_t col = 0; col < h; col += SPARSE_COLS) {
        __mmask16 last_mask;
        bool narrow;
        size_t vectors = block_vectors(h - col, &last_mask, &narrow);
        const float *block_bias = bias == NULL ? NULL : bias + col;
        if (vectors == 4)
            (narrow ? listed_sums_4_narrow : listed_sums_4)(spans, count, b + col, ld, block_bias, last_mask, out + col, ld);
        else if (vectors == 3)
            (narrow ? listed_sums_3_narrow : listed_sums_3)(spans, count, b + col, ld, block_bias, last_mask, out + col, ld);
        else if (vectors == 2)
            (narrow ? listed_sums_2_narrow : listed_sums_2)(spans, count, b + col, ld, block_bias, last_mask, out + col, ld);
        else
            (narrow ? listed_sums_1_narrow : listed_sums_1)(spans, count, b + col, ld, block_bias, last_mask, out + col, ld);
    }
}

#endif

/*
 * The sparse kernels serve any number of rows: they hold no tile of rows, and
 * where BLAS would use several threads on a large product they do a fraction
 * of its multiply-adds on one.
 */
void eb__small_affine_via(eb_small_gemm_path path, eb_matrix x, const float *w, const float *bias, eb_mut_matrix out)
{
#ifdef EB_HAVE_AVX512_KERNELS
    if (path != EB_SMALL_GEMM_BLAS && x.rows > 0 && __builtin_cpu_supports("avx512f")) {
        bool sparse = path == EB_SMALL_GEMM_SPARSE ||
                      (path == EB_SMALL_GEMM_AUTO &&
                       mostly_zeros(x, NULL, sparse_affine_max_density(out.cols)));
        if (sparse) {
            sparse_affine(x, NULL, w, bias, out);
            return;
        }
        if (eb__small_gemm_available(x.rows)) {
            tiled_product(x.rows, x.data, NULL, x.stride, 1, x.cols, w, out.cols, out.cols, bias, out.data, out.stride);
            return;
        }
    }
#else
    (void)path;
#endif
    eb__affine(x, w, bias, out);
}

void eb__small_affine(eb_matrix x, const float *w, const float *bias, eb_mut_matrix out)
{
    eb__small_affine_via(EB_SMALL_GEMM_AUTO, x, w, bias, out);
}

void eb__small_transposed_product_via(eb_small_gemm_path path, eb_matrix x, const float *d, size_t h, float *g)
{
#ifdef EB_HAVE_AVX512_KERNELS
    if (path != EB_SMALL_GEMM_BLAS && eb__small_gemm_available(x.rows)) {
        /* A sample that is mostly nonzeros spares a dense batch the per-chunk census. */
        if (path == EB_SMALL_GEMM_AUTO && !mostly_zeros(x, NULL, SPARSE_TRANSPOSED_MAX_DENSITY))
            path = EB_SMALL_GEMM_DENSE;
        transposed_product(path, x, NULL, NULL, d, h, h, g);
        return;
    }
    if (path != EB_SMALL_GEMM_BLAS && x.rows > 0 && __builtin_cpu_supports("avx512f") &&
        (path == EB_SMALL_GEMM_SPARSE ||
         (path == EB_SMALL_GEMM_AUTO &&
          mostly_zeros(x, NULL, SPARSE_TRANSPOSED_MAX_DENSITY)))) {
        sparse_transposed_product(x, d, h, g);
        return;
    }
#else
    (void)path;
#endif
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)x.cols, (int)h, (int)x.rows, 1.0f, x.data,
                (int)x.stride, d, (int)h, 0.0f, g, (int)h);
}

void eb__small_transposed_product(eb_matrix x, const float *d, size_t h, float *g)
{
    eb__small_transposed_product_via(EB_SMALL_GEMM_AUTO, x, d, h, g);
}

bool eb__small_rows_in_place(size_t count)
{
    return eb__small_gemm_available(count);
}

void eb__small_affine_rows(eb_matrix x, const uint32_t *index, size_t count, const float *w, const float *bias,
                           eb_mut_matrix out, float *scratch)
{
    eb_matrix batch = {x.data, count, x.cols, x.stride};
#ifdef EB_HAVE_AVX512_KERNELS
    if (eb__small_gemm_available(count)) {
        if (mostly_zeros(batch, index, sparse_affine_max_density(out.cols)))
            sparse_affine(batch, index, w, bias, out);
        else
            tiled_product(count, x.data, index, x.stride, 1, x.cols, w, out.cols, out.cols, bias, out.data, out.stride);
        return;
    }
#endif
    eb__gather_rows(x, index, count, scratch);
    eb_matrix gathered = {scratch, count, x.cols, x.cols};
    eb__small_affine(gathered, w, bias, out);
}

void eb__small_transposed_product_rows(eb_matrix x, const uint32_t *index, size_t count, const float *d, size_t h,
                                       float *g, float *scratch)
{
#ifdef EB_HAVE_AVX512_KERNELS
    if (eb__small_gemm_available(count)) {
        eb_matrix batch = {x.data, count, x.cols, x.stride};
        transposed_product(EB_SMALL_GEMM_AUTO, batch, index, scratch, d, h, h, g);
        return;
    }
#endif
    eb__gather_rows(x, index, count, scratch);
    eb_matrix gathered = {scratch, count, x.cols, x.cols};
    eb__small_transposed_product(gathered, d, h, g);
}

size_t eb__small_transposed_product_parts(size_t cols)
{
#ifdef EB_HAVE_AVX512_KERNELS
    return (cols + SPARSE_CHUNK - 1) / SPARSE_CHUNK;
#else
    (void)cols;
    return 1;
#endif
}

void eb__small_transposed_product_rows_part(eb_matrix x, const uint32_t *index, size_t count, const float *d, size_t h,
                                            size_t ld, float *g, float *scratch, size_t part, size_t parts,
                                            size_t *first, size_t *last)
{
#ifdef EB_HAVE_AVX512_KERNELS
    if (eb__small_gemm_available(count)) {
        /* Whole chunks of columns per part: each chunk is computed as in one call, so are its bits. */
        size_t first_chunk, last_chunk;
        eb__share_of((x.cols + SPARSE_CHUNK - 1) / SPARSE_CHUNK, part, parts, &first_chunk, &last_chunk);
        *first = first_chunk * SPARSE_CHUNK < x.cols ? first_chunk * SPARSE_CHUNK : x.cols;
        *last = last_chunk * SPARSE_CHUNK < x.cols ? last_chunk * SPARSE_CHUNK : x.cols;
        if (*first < *last) {
            eb_matrix columns = {x.data + *first, count, *last - *first, x.stride};
            transposed_product(EB_SMALL_GEMM_AUTO, columns, index, scratch + *first * count, d, h, ld,
                               g + *first * ld);
        }
        return;
    }
#endif
    *first = 0;
    *last = part == 0 ? x.cols : 0;
    if (part == 0)
        eb__small_transposed_product_rows(x, index, count, d, h, g, scratch);
}

/* ---- products over nonzeros listed once ------------------------------------------------------------------ */

/*
 * The rows of the right operand one pass over the entries reads are kept to
 * this many bytes per 64 output columns, so that they stay in L1 (32 KB or
 * more on AVX-512 CPUs) for all the rows of x instead of coming from L2 for
 * each row of x (2026-12-04, AMD EPYC, 200 x 1024 -> 50 at 24.5% nonzeros:
 * the forward product 2.47 ns per nonzero in one pass, 2.08 in slices of
 * 24 KB, 2.18 in 16 KB and 2.21 in 64 KB). Each output's partial sum waits
 * in memory between passes; the sums run in the same order, so the bits stay.
 */
enum { LISTED_SLICE_BYTES = 24 * 1024 };

void eb__sparse_rows_release(eb_sparse_rows *s, const eb_allocator *mem)
{
    eb__free(mem, s->row_start);
    eb__free(mem, s->col_of);
    eb__free(mem, s->row_values);
    eb__free(mem, s->col_start);
    eb__free(mem, s->row_of);
    eb__free(mem, s->col_values);
    eb__free(mem, s->row_slice_start);
    eb__free(mem, s->col_slice_start);
    eb__free(mem, s->row_split);
    eb__free(mem, s->spans);
    memset(s, 0, sizeof *s);
}

/* The first line i in [0, count] with start[i] - start[0] >= entries (start ascending, count + 1 of them). */
static size_t line_at_entry(const uint32_t *start, size_t count, size_t entries)
{
    size_t low = 0, high = count;
    while (low < high) {
        size_t middle = low + (high - low) / 2;
        if (start[middle] - start[0] >= entries)
            high = middle;
        else
            low = middle + 1;
    }
    return low;
}

#ifdef EB_HAVE_AVX512_KERNELS
__attribute__((target("avx512f,popcnt"))) static size_t count_nonzero(eb_matrix x)
{
    size_t count = 0;
    for (size_t r = 0; r < x.rows; r++)
        for (size_t j = 0; j < x.cols; j += LANES)
            count += (size_t)__builtin_popcount(nonzero_lanes(x.data + r * x.stride + j, x.cols - j));
    return count;
}

/*
 * For each of `lines` lists of ascending indices (line i's at [start[i], start[i + 1]) of index), where the
 * indices of each slice of `width` begin: bounds[i * (slices + 1) + k] for slice k, then the line's end.
 */
static void slice_bounds(const uint32_t *start, size_t lines, const uint32_t *index, size_t width, size_t slices,
                         uint32_t *bounds)
{
    for (size_t i = 0; i < lines; i++) {
        uint32_t *line = bounds + i * (slices + 1);
        size_t t = start[i];
        for (size_t k = 0; k < slices; k++) {
            line[k] = (uint32_t)t;
            while (t < start[i + 1] && index[t] < (k + 1) * width)
                t++;
        }
        line[slices] = start[i + 1];
    }
}

__attribute__((target("avx512f,popcnt"))) static void list_nonzeros(eb_matrix x, eb_sparse_rows *out)
{
    uint32_t index[SPARSE_CHUNK + LANES];
    size_t at = 0;
    for (size_t r = 0; r < x.rows; r++) {
        const float *row = x.data + r * x.stride;
        out->row_start[r] = (uint32_t)at;
        for (size_t j0 = 0; j0 < x.cols; j0 += SPARSE_CHUNK) {
            size_t found = nonzero_positions(row + j0, x.cols - j0 < SPARSE_CHUNK ? x.cols - j0 : SPARSE_CHUNK, index);
            for (size_t t = 0; t < found; t++, at++) {
                size_t c = j0 + index[t];
                out->col_of[at] = (uint32_t)c;
                out->row_values[at] = row[c];
                out->col_start[c + 1]++;
            }
        }
    }
    out->row_start[x.rows] = (uint32_t)at;
    for (size_t c = 0; c < x.cols; c++)
        out->col_start[c + 1] += out->col_start[c];
    /* Walking the rows in order fills every column with its rows ascending; col_start[c] is column c's cursor. */
    for (size_t r = 0; r < x.rows; r++) {
        for (size_t t = out->row_start[r]; t < out->row_start[r + 1]; t++) {
            uint32_t *cursor = &out->col_start[out->col_of[t]];
            out->row_of[*cursor] = (uint32_t)r;
            out->col_values[*cursor] = out->row_values[t];
            (*cursor)++;
        }
    }
    /* Each cursor stopped where the next column starts. */
    memmove(out->col_start + 1, out->col_start, x.cols * sizeof *out->col_start);
    out->col_start[0] = 0;
    slice_bounds(out->row_start, x.rows, out->col_of, out->slice_cols, out->row_slices, out->row_slice_start);
    slice_bounds(out->col_start, x.cols, out->row_of, out->slice_rows, out->col_slices, out->col_slice_start);
    eb__sparse_rows_split_at(out, line_at_entry(out->col_start, x.cols, out->nonzeros / 2));
}
#endif

eb_status eb__sparse_rows_list(eb_matrix x, size_t h, size_t ld, const eb_allocator *mem, eb_sparse_rows *out)
{
    memset(out, 0, sizeof *out);
#ifdef EB_HAVE_AVX512_KERNELS
    if (x.rows == 0 || x.cols == 0 || h == 0 || !__builtin_cpu_supports("avx512f"))
        return EB_OK;
    size_t nonzero = count_nonzero(x);
    /* Entries are indexed with 32 bits. */
    if (nonzero > UINT32_MAX - 1 || x.rows > UINT32_MAX || x.cols > UINT32_MAX ||
        (double)nonzero > sparse_affine_max_density(h) * (double)(x.rows * x.cols))
        return EB_OK;
    size_t slots = nonzero == 0 ? 1 : nonzero;
    /* The cache a row of a 64-column block takes, padding included. */
    size_t block_bytes = (ld < SPARSE_COLS ? ld : SPARSE_COLS) * sizeof(float);
    size_t slice = LISTED_SLICE_BYTES / block_bytes;
    out->rows = x.rows;
    out->cols = x.cols;
    out->nonzeros = nonzero;
    out->slice_cols = slice;
    out->row_slices = (x.cols + slice - 1) / slice;
    out->slice_rows = slice;
    out->col_slices = (x.rows + slice - 1) / slice;
    out->row_start = eb__calloc(mem, x.rows + 1, sizeof *out->row_start);
    out->col_start = eb__calloc(mem, x.cols + 1, sizeof *out->col_start);
    out->col_of = eb__calloc(mem, slots, sizeof *out->col_of);
    out->row_values = eb__calloc(mem, slots, sizeof *out->row_values);
    out->row_of = eb__calloc(mem, slots, sizeof *out->row_of);
    out->col_values = eb__calloc(mem, slots, sizeof *out->col_values);
    size_t row_bounds, col_bounds;
    if (eb__mul_size(x.rows, out->row_slices + 1, &row_bounds) && eb__mul_size(x.cols, out->col_slices + 1, &col_bounds)) {
        out->row_slice_start = eb__calloc(mem, row_bounds, sizeof *out->row_slice_start);
        out->col_slice_start = eb__calloc(mem, col_bounds, sizeof *out->col_slice_start);
    }
    out->row_split = eb__calloc(mem, x.rows, sizeof *out->row_split);
    out->spans = eb__calloc(mem, 2 * (x.rows > x.cols ? x.rows : x.cols), sizeof *out->spans);
    if (out->row_start == NULL || out->col_start == NULL || out->col_of == NULL || out->row_values == NULL ||
        out->row_of == NULL || out->col_values == NULL || out->row_slice_start == NULL ||
        out->col_slice_start == NULL || out->row_split == NULL || out->spans == NULL) {
        eb__sparse_rows_release(out, mem);
        return EB_ERR_NOMEM;
    }
    list_nonzeros(x, out);
#else
    (void)x, (void)h, (void)ld, (void)mem;
#endif
    return EB_OK;
}

#ifdef EB_HAVE_AVX512_KERNELS
/*
 * One pass per slice k in [first_slice, end_slice) of the inner dimension (the bias joins the last of all
 * slices) over count lines: line r is lines[r] (r itself when lines is NULL) of the listing and of out, its
 * slice bounds at bounds + the line's offset, its entries clipped to [from[line], to[line]) where from or to is
 * given. Each line's sums start at slice 0 when `starts`, else continue from out.
 */
typedef struct sliced_pass {
    size_t first_slice, end_slice;
    const uint32_t *from, *to;
    bool starts;
} sliced_pass;

static void sliced_products(const uint32_t *lines, size_t count, eb_listed_span *spans,
                            const uint32_t *index, const float *values, const uint32_t *bounds, size_t slices,
                            sliced_pass pass, const float *b, size_t h, size_t ld, const float *bias, float *out)
{
    for (size_t k = pass.first_slice; k < pass.end_slice; k++) {
        for (size_t r = 0; r < count; r++) {
            size_t line = lines == NULL ? r : lines[r];
            const uint32_t *line_bounds = bounds + line * (slices + 1);
            uint32_t begin = line_bounds[k], end = line_bounds[k + 1];
            if (pass.from != NULL && begin < pass.from[line])
                begin = pass.from[line];
            if (pass.to != NULL && end > pass.to[line])
                end = pass.to[line];
            if (end < begin)
                end = begin;
            spans[r] = (eb_listed_span){index + begin, values + begin, end - begin, line, pass.starts && k == 0};
        }
        listed_products(spans, count, b, h, ld, k + 1 == slices ? bias : NULL, out);
    }
}
#endif

/*
 * Part `part` of `parts`' share [*first, *last) of count lines (line i is lines[i], or i when lines is NULL),
 * split by their entries (line l has start[l + 1] - start[l]): rows and columns of hashed n-grams differ
 * several times over in their nonzeros, and a part waits for the slowest.
 */
static void share_by_entries(const uint32_t *start, const uint32_t *lines, size_t count, size_t part, size_t parts,
                             size_t *first, size_t *last)
{
    if (lines == NULL) {
        /* Consecutive lines: their entries' running total is start[] itself. */
        size_t total = start[count] - start[0];
        *first = line_at_entry(start, count, total * part / parts);
        *last = part + 1 == parts ? count : line_at_entry(start, count, total * (part + 1) / parts);
        return;
    }
    size_t total = 0;
    for (size_t i = 0; i < count; i++)
        total += start[lines[i] + 1] - start[lines[i]];
    size_t begin = total * part / parts, end = total * (part + 1) / parts, sum = 0;
    *first = *last = count;
    for (size_t i = 0; i < count; i++) {
        if (sum >= begin && *first == count)
            *first = i;
        if (sum >= end && part + 1 < parts) {
            *last = i;
            break;
        }
        sum += start[lines[i] + 1] - start[lines[i]];
    }
    if (*first > *last)
        *first = *last;
}

void eb__sparse_rows_split_at(eb_sparse_rows *s, size_t col)
{
    s->split_col = col;
    for (size_t r = 0; r < s->rows; r++) {
        uint32_t t = s->row_start[r];
        while (t < s->row_start[r + 1] && s->col_of[t] < col)
            t++;
        s->row_split[r] = t;
    }
}

void eb__sparse_rows_affine(const eb_sparse_rows *s, const uint32_t *rows, size_t count, size_t part, size_t parts,
                            const float *w, const float *bias, size_t h, size_t ld, float *out, size_t *first,
                            size_t *last)
{
    share_by_entries(s->row_start, rows, count, part, parts, first, last);
#ifdef EB_HAVE_AVX512_KERNELS
    sliced_pass pass = {0, s->row_slices, NULL, NULL, true};
    sliced_products(rows + *first, *last - *first, s->spans + *first, s->col_of, s->row_values, s->row_slice_start,
                    s->row_slices, pass, w, h, ld, bias, out);
#else
    (void)w, (void)bias, (void)h, (void)ld, (void)out;
#endif
}

void eb__sparse_rows_affine_half(const eb_sparse_rows *s, size_t half, const uint32_t *rows, size_t count,
                                 size_t part, size_t parts, const float *w, const float *bias, size_t h, size_t ld,
                                 float *out, size_t *first, size_t *last)
{
    share_by_entries(s->row_start, rows, count, part, parts, first, last);
#ifdef EB_HAVE_AVX512_KERNELS
    /* Both halves pass over the slice split_col falls in, each over its side of it. The first half always makes
       pass 0, which starts the sums; the second always makes the last pass, which adds the bias. */
    sliced_pass pass = {0, (s->split_col + s->slice_cols - 1) / s->slice_cols, NULL, s->row_split, true};
    if (pass.end_slice == 0)
        pass.end_slice = 1;
    if (half == 1)
        pass = (sliced_pass){s->split_col / s->slice_cols, s->row_slices, s->row_split, NULL, false};
    if (pass.first_slice + 1 > s->row_slices)
        pass.first_slice = s->row_slices - 1;
    sliced_products(rows + *first, *last - *first, s->spans + *first, s->col_of, s->row_values, s->row_slice_start,
                    s->row_slices, pass, w, h, ld, half == 1 ? bias : NULL, out);
#else
    (void)half, (void)w, (void)bias, (void)h, (void)ld, (void)out;
#endif
}

/* Where the work list of a pass of side `side` starts (see eb__sparse_rows_affine_side). */
static eb_listed_span *side_spans(const eb_sparse_rows *s, size_t side)
{
    return s->spans + side * (s->rows > s->cols ? s->rows : s->cols);
}

void eb__sparse_rows_affine_side(const eb_sparse_rows *s, size_t side, const uint32_t *rows, size_t count,
                                 const float *w, const float *bias, size_t h, size_t ld, float *out)
{
#ifdef EB_HAVE_AVX512_KERNELS
    sliced_pass pass = {0, s->row_slices, NULL, NULL, true};
    sliced_products(rows, count, side_spans(s, side), s->col_of, s->row_values, s->row_slice_start, s->row_slices,
                    pass, w, h, ld, bias, out);
#else
    (void)s, (void)side, (void)rows, (void)count, (void)w, (void)bias, (void)h, (void)ld, (void)out;
#endif
}

void eb__sparse_rows_transposed_product_side(const eb_sparse_rows *s, size_t side, const float *d, size_t h,
                                             size_t ld, float *g)
{
#ifdef EB_HAVE_AVX512_KERNELS
    sliced_pass pass = {0, s->col_slices, NULL, NULL, true};
    sliced_products(NULL, s->cols, side_spans(s, side), s->row_of, s->col_values, s->col_slice_start, s->col_slices,
                    pass, d, h, ld, NULL, g);
#else
    (void)s, (void)side, (void)d, (void)h, (void)ld, (void)g;
#endif
}

/* Part `part` of `parts` of g's rows [begin, end) of x^T d, its share [*first, *last) balanced by entries. */
static void transposed_product_of(const eb_sparse_rows *s, size_t begin, size_t end, size_t part, size_t parts,
                                  const float *d, size_t h, size_t ld, float *g, size_t *first, size_t *last)
{
    share_by_entries(s->col_start + begin, NULL, end - begin, part, parts, first, last);
    *first += begin;
    *last += begin;
#ifdef EB_HAVE_AVX512_KERNELS
    sliced_pass pass = {0, s->col_slices, NULL, NULL, true};
    sliced_products(NULL, *last - *first, s->spans + *first, s->row_of, s->col_values,
                    s->col_slice_start + *first * (s->col_slices + 1), s->col_slices, pass, d, h, ld, NULL,
                    g + *first * ld);
#else
    (void)d, (void)h, (void)ld, (void)g;
#endif
}

void eb__sparse_rows_transposed_product(const eb_sparse_rows *s, size_t part, size_t parts, const float *d, size_t h,
                                        size_t ld, float *g, size_t *first, size_t *last)
{
    transposed_product_of(s, 0, s->cols, part, parts, d, h, ld, g, first, last);
}

void eb__sparse_rows_transposed_product_half(const eb_sparse_rows *s, size_t half, size_t part, size_t parts,
                                             const float *d, size_t h, size_t ld, float *g, size_t *first,
                                             size_t *last)
{
    if (half == 0)
        transposed_product_of(s, 0, s->split_col, part, parts, d, h, ld, g, first, last);
    else
        transposed_product_of(s, s->split_col, s->cols, part, parts, d, h, ld, g, first, last);
}
