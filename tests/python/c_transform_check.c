/*
 * A C consumer of a model file that Python saved: tests/python/test_save_load.py
 * compiles this against the library sources, runs it, and compares the output
 * with the Python transform of the same rows.
 *
 * usage: c_transform_check MODEL INPUT ROWS COLS OUTPUT
 *   MODEL  a model file (docs/model-format.md) of any kind
 *   INPUT  ROWS x COLS float32 values, row-major, native byte order
 *   OUTPUT receives ROWS x output_dim float32 values the same way
 * Prints "kind output_dim" on success; on failure the reason goes to stderr
 * and the exit status is 1.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "embetter/embetter.h"

static int fail(const char *what, const char *detail)
{
    fprintf(stderr, "c_transform_check: %s%s%s\n", what, detail[0] ? ": " : "", detail);
    return 1;
}

static float *read_floats(const char *path, size_t count)
{
    float *values = malloc(count * sizeof *values);
    FILE *file = fopen(path, "rb");
    if (values == NULL || file == NULL || fread(values, sizeof *values, count, file) != count) {
        free(values);
        values = NULL;
    }
    if (file != NULL)
        fclose(file);
    return values;
}

int main(int argc, char **argv)
{
    if (argc != 6)
        return fail("usage: c_transform_check MODEL INPUT ROWS COLS OUTPUT", "");
    const char *model_path = argv[1];
    size_t rows = strtoull(argv[3], NULL, 10);
    size_t cols = strtoull(argv[4], NULL, 10);
    eb_error err = {0};
    float *x = read_floats(argv[2], rows * cols);
    if (x == NULL)
        return fail("cannot read the input matrix", argv[2]);

    /* One loader for every kind: the file's header says which finetuner it holds. */
    eb_finetuner *model = NULL;
    eb_status status = eb_finetuner_load(model_path, NULL, &model, &err);
    if (status != EB_OK) {
        free(x);
        return fail(eb_status_string(status), err.message);
    }
    size_t out_dim = eb_finetuner_output_dim(model);
    float *out = malloc(rows * out_dim * sizeof *out);
    if (out == NULL)
        status = EB_ERR_NOMEM;
    else
        status = eb_finetuner_transform(model, eb_matrix_view(x, rows, cols), eb_mut_matrix_view(out, rows, out_dim),
                                        &err);
    int exit_code = 0;
    if (status != EB_OK) {
        exit_code = fail(eb_status_string(status), err.message);
    } else {
        FILE *file = fopen(argv[5], "wb");
        if (file == NULL || fwrite(out, sizeof *out, rows * out_dim, file) != rows * out_dim)
            exit_code = fail("cannot write the output", argv[5]);
        if (file != NULL && fclose(file) != 0)
            exit_code = fail("cannot write the output", argv[5]);
        if (exit_code == 0)
            printf("%s %zu\n", eb_finetuner_kind_name(eb_finetuner_kind_of(model)), out_dim);
    }
    free(out);
    free(x);
    eb_finetuner_free(model);
    return exit_code;
}
