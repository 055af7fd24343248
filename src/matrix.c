/* Matrix views: validation of caller input and the dense kernels built on CBLAS. */
#include "blas.h"
#include <limits.h>
#include <math.h>
#include <string.h>

#include "internal.h"

eb_matrix eb_matrix_view(const float *data, size_t rows, size_t cols)
{
    eb_matrix m = {data, rows, cols, cols};
    return m;
}

eb_mut_matrix eb_mut_matrix_view(float *data, size_t rows, size_t cols)
{
    eb_mut_matrix m = {data, rows, cols, cols};
    return m;
}

/*
 * Whether count floats are all finite. A float is NaN or infinite exactly when
 * its exponent bits are all ones, so the largest exponent field of the row
 * tells: a max-reduction over fixed-length blocks vectorises (also under the
 * Python build's -O2 cost model), unlike a loop that returns at the first bad
 * value. The caller finds the offending column with
 * the plain loop only once a row has failed.
 */
enum { EB_BLOCK = 16 };
static const uint32_t EXPONENT_BITS = 0x7F800000u;

static inline uint32_t exponent_field(float value)
{
    uint32_t bits;
    memcpy(&bits, &value, sizeof bits);
    return bits & EXPONENT_BITS;
}

static EB_VECTOR_CLONES bool all_finite(const float *restrict values, size_t count)
{
    uint32_t largest = 0;
    size_t i = 0;
    for (; i + EB_BLOCK <= count; i += EB_BLOCK) {
        for (size_t j = i; j < i + EB_BLOCK; j++) {
            uint32_t exponent = exponent_field(values[j]);
            largest = exponent > largest ? exponent : largest;
        }
    }
    for (; i < count; i++) {
        uint32_t exponent = exponent_field(values[i]);
        largest = exponent > largest ? exponent : largest;
    }
    return largest != EXPONENT_BITS;
}

/* CBLAS takes int dimensions; anything larger cannot be handed to it. */
static bool fits_blas(size_t value)
{
    return value <= (size_t)INT_MAX;
}

eb_status eb__check_input_layout(eb_matrix x, const char *name, eb_error *err)
{
    if (x.data == NULL)
        return eb__fail(err, EB_ERR_NULL_POINTER, "%s.data is NULL", name);
    if (x.rows == 0)
        return eb__fail(err, EB_ERR_EMPTY_INPUT, "%s has 0 rows", name);
    if (x.cols == 0)
        return eb__fail(err, EB_ERR_EMPTY_INPUT, "%s has 0 columns", name);
    if (x.stride < x.cols)
        return eb__fail(err, EB_ERR_SHAPE_MISMATCH, "%s has a row stride of %zu, less than its %zu columns", name,
                        x.stride, x.cols);
    size_t span;
    if (!fits_blas(x.rows) || !fits_blas(x.stride) || !eb__mul_size(x.rows - 1, x.stride, &span))
        return eb__fail(err, EB_ERR_TOO_LARGE, "%s is too large (%zu rows, stride %zu)", name, x.rows, x.stride);
    return EB_OK;
}

eb_status eb__check_input_values(eb_matrix x, const char *name, size_t first_row, eb_error *err)
{
    for (size_t r = 0; r < x.rows; r++) {
        const float *row = x.data + r * x.stride;
        if (all_finite(row, x.cols))
            continue;
        for (size_t c = 0; c < x.cols; c++) {
            if (!isfinite(row[c]))
                return eb__fail(err, EB_ERR_NONFINITE,
                                "%s[%zu, %zu] is %s (row %zu, column %zu); the input must not contain NaN or infinity",
                                name, first_row + r, c, isnan(row[c]) ? "NaN" : (row[c] > 0 ? "+Inf" : "-Inf"),
                                first_row + r, c);
        }
    }
    return EB_OK;
}

eb_status eb__check_input(eb_matrix x, const char *name, eb_error *err)
{
    eb_status status = eb__check_input_layout(x, name, err);
    return status != EB_OK ? status : eb__check_input_values(x, name, 0, err);
}

eb_status eb__check_output(eb_mut_matrix out, size_t rows, size_t cols, eb_error *err)
{
    if (out.data == NULL)
        return eb__fail(err, EB_ERR_NULL_POINTER, "out.data is NULL");
    if (out.rows != rows || out.cols != cols)
        return eb__fail(err, EB_ERR_SHAPE_MISMATCH, "out is %zu x %zu, transform needs %zu x %zu", out.rows,
                        out.cols, rows, cols);
    if (out.stride < out.cols)
        return eb__fail(err, EB_ERR_SHAPE_MISMATCH, "out has a row stride of %zu, less than its %zu columns",
                        out.stride, out.cols);
    if (!fits_blas(out.stride))
        return eb__fail(err, EB_ERR_TOO_LARGE, "out has a row stride of %zu, too large for BLAS", out.stride);
    return EB_OK;
}

eb_status eb__check_result(eb_mut_matrix out, eb_error *err)
{
    for (size_t r = 0; r < out.rows; r++) {
        const float *row = out.data + r * out.stride;
        if (all_finite(row, out.cols))
            continue;
        for (size_t c = 0; c < out.cols; c++) {
            if (!isfinite(row[c]))
                return eb__fail(err, EB_ERR_NONFINITE,
                                "row %zu of X overflows float32 through the learned weights (output column %zu is %s)",
                                r, c, isnan(row[c]) ? "NaN" : "infinite");
        }
    }
    return EB_OK;
}

eb_status eb__check_labels(const int32_t *y, size_t n, size_t n_classes, eb_error *err)
{
    for (size_t i = 0; i < n; i++) {
        if (y[i] < 0 || (size_t)y[i] >= n_classes)
            return eb__fail(err, EB_ERR_LABEL_OUT_OF_RANGE, "y[%zu] is %d, outside the %zu classes 0..%zu", i,
                            (int)y[i], n_classes, n_classes - 1);
    }
    return EB_OK;
}

void eb__gather_rows(eb_matrix x, const uint32_t *index, size_t count, float *dst)
{
    for (size_t i = 0; i < count; i++)
        memcpy(dst + i * x.cols, x.data + (size_t)index[i] * x.stride, x.cols * sizeof(float));
}

void eb__affine(eb_matrix x, const float *w, const float *bias, eb_mut_matrix out)
{
    for (size_t r = 0; r < x.rows; r++)
        memcpy(out.data + r * out.stride, bias, out.cols * sizeof(float));
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)x.rows, (int)out.cols, (int)x.cols, 1.0f, x.data,
                (int)x.stride, w, (int)out.cols, 1.0f, out.data, (int)out.stride);
}

/* sums += row, in fixed-length blocks so that it vectorises; the same additions in the same order. */
static EB_VECTOR_CLONES void add_row(float *restrict sums, const float *restrict row, size_t cols)
{
    size_t c = 0;
    for (; c + EB_BLOCK <= cols; c += EB_BLOCK) {
        for (size_t j = c; j < c + EB_BLOCK; j++)
            sums[j] += row[j];
    }
    for (; c < cols; c++)
        sums[c] += row[c];
}

void eb__column_sums(const float *m, size_t rows, size_t cols, size_t stride, float *column_sums)
{
    memset(column_sums, 0, cols * sizeof(float));
    for (size_t r = 0; r < rows; r++)
        add_row(column_sums, m + r * stride, cols);
}
