#define _POSIX_C_SOURCE 200809L
/*
 * The safetensors reader: good files (F32 in place, F16 and BF16 converted
 * exactly, unaligned F32 copied), every kind of corrupt header or data range
 * refused with EB_ERR_FORMAT and a message naming the file and the tensor or
 * field, non-regular files refused without blocking, and allocation failures
 * that leak nothing.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "helpers.h"
#include "safetensors.h"

/* A safetensors image: the 8-byte length, header (padded with spaces to pad_to bytes if larger), then data. */
static uint8_t *image(const char *header, size_t pad_to, const void *data, size_t data_size, size_t *size)
{
    size_t header_length = strlen(header);
    if (pad_to > header_length)
        header_length = pad_to;
    *size = 8 + header_length + data_size;
    uint8_t *bytes = malloc(*size + 1);
    assert_non_null(bytes);
    for (int i = 0; i < 8; i++)
        bytes[i] = (uint8_t)((uint64_t)header_length >> (8 * i));
    memset(bytes + 8, ' ', header_length);
    memcpy(bytes + 8, header, strlen(header));
    if (data_size != 0)
        memcpy(bytes + 8 + header_length, data, data_size);
    return bytes;
}

static eb_status open_bytes(const uint8_t *bytes, size_t size, eb_safetensors **st, eb_error *err)
{
    return eb__safetensors_open_buffer(bytes, size, "mem.safetensors", NULL, st, err);
}

/* The header must be refused with EB_ERR_FORMAT and a message holding `needle` and the source name. */
static void expect_refused(const char *header, const void *data, size_t data_size, const char *needle)
{
    size_t size;
    uint8_t *bytes = image(header, 0, data, data_size, &size);
    eb_safetensors *st = (eb_safetensors *)bytes;
    eb_error err;
    eb_status status = open_bytes(bytes, size, &st, &err);
    if (status != EB_ERR_FORMAT || strstr(err.message, needle) == NULL || strstr(err.message, "mem.safetensors") == NULL)
        fail_msg("header %s: status %s, message '%s' (wanted EB_ERR_FORMAT and '%s')", header,
                 eb_status_string(status), err.message, needle);
    assert_null(st);
    free(bytes);
}

static const float eight_floats[8] = {1, -2, 0.5f, 3, 4, 5, 6, -7};

static void test_f32_tensors_read_in_place(void **state)
{
    (void)state;
    const char *header = "{\"__metadata__\":{\"format\":\"pt\"},"
                         "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[24,32]},"
                         "\"a.weight\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]}}";
    size_t size;
    uint8_t *bytes = image(header, 256, eight_floats, sizeof eight_floats, &size);
    eb_safetensors *st;
    eb_error err;
    assert_int_equal(open_bytes(bytes, size, &st, &err), EB_OK);
    assert_int_equal(st->count, 2);
    const eb_st_tensor *a = eb__safetensors_find(st, "a.weight");
    assert_non_null(a);
    assert_null(eb__safetensors_find(st, "a"));
    assert_null(eb__safetensors_find(st, "__metadata__"));
    assert_int_equal(a->ndim, 2);
    assert_int_equal(a->shape[0], 2);
    assert_int_equal(a->shape[1], 3);
    const float *values;
    float *owned;
    size_t shape[2] = {2, 3};
    assert_int_equal(eb__safetensors_f32(st, a, shape, 2, &values, &owned, &err), EB_OK);
    assert_null(owned);
    assert_ptr_equal(values, (const void *)(bytes + 8 + 256));
    assert_memory_equal(values, eight_floats, 6 * sizeof(float));
    const eb_st_tensor *b = eb__safetensors_find(st, "b");
    size_t shape_b[1] = {2};
    assert_int_equal(eb__safetensors_f32(st, b, shape_b, 1, &values, &owned, &err), EB_OK);
    assert_float_equal(values[0], 6, 0);
    assert_float_equal(values[1], -7, 0);

    /* A shape other than the caller expects is refused, naming the tensor and both shapes. */
    size_t wrong[2] = {3, 2};
    assert_int_equal(eb__safetensors_f32(st, a, wrong, 2, &values, &owned, &err), EB_ERR_FORMAT);
    assert_non_null(strstr(err.message, "'a.weight' has shape [2, 3], expected [3, 2]"));
    assert_int_equal(eb__safetensors_f32(st, a, shape, 1, &values, &owned, &err), EB_ERR_FORMAT);
    eb__safetensors_close(st);
    free(bytes);
}

static void test_f16_and_bf16_convert_exactly(void **state)
{
    (void)state;
    /* Half: 1, -2, 65504 (largest), 2^-24 (smallest subnormal), 2^-14 (smallest normal), -0, inf, 0.333 (0x3555). */
    static const uint16_t half[8] = {0x3C00, 0xC000, 0x7BFF, 0x0001, 0x0400, 0x8000, 0x7C00, 0x3555};
    const float half_values[8] = {1.0f, -2.0f, 65504.0f, ldexpf(1, -24), ldexpf(1, -14), -0.0f, INFINITY,
                                  0.333251953125f};
    /* bfloat16: 1, -3, 1e38-ish (0x7F00 = 2^127), 2^-133 (subnormal 0x0001). */
    static const uint16_t bf[4] = {0x3F80, 0xC040, 0x7F00, 0x0001};
    const float bf_values[4] = {1.0f, -3.0f, ldexpf(1, 127), ldexpf(1, -133)};
    uint8_t data[24];
    for (int i = 0; i < 8; i++) {
        data[2 * i] = (uint8_t)(half[i] & 0xFF);
        data[2 * i + 1] = (uint8_t)(half[i] >> 8);
    }
    for (int i = 0; i < 4; i++) {
        data[16 + 2 * i] = (uint8_t)(bf[i] & 0xFF);
        data[16 + 2 * i + 1] = (uint8_t)(bf[i] >> 8);
    }
    const char *header = "{\"h\":{\"dtype\":\"F16\",\"shape\":[2,4],\"data_offsets\":[0,16]},"
                         "\"b\":{\"dtype\":\"BF16\",\"shape\":[4],\"data_offsets\":[16,24]}}";
    size_t size;
    uint8_t *bytes = image(header, 0, data, sizeof data, &size);
    eb_safetensors *st;
    eb_error err;
    assert_int_equal(open_bytes(bytes, size, &st, &err), EB_OK);
    const float *values;
    float *owned;
    size_t shape_h[2] = {2, 4};
    assert_int_equal(eb__safetensors_f32(st, eb__safetensors_find(st, "h"), shape_h, 2, &values, &owned, &err), EB_OK);
    assert_non_null(owned);
    for (int i = 0; i < 8; i++) {
        if (memcmp(&values[i], &half_values[i], sizeof(float)) != 0)
            fail_msg("half %04x became %a, expected %a", half[i], (double)values[i], (double)half_values[i]);
    }
    free(owned);
    size_t shape_b[1] = {4};
    assert_int_equal(eb__safetensors_f32(st, eb__safetensors_find(st, "b"), shape_b, 1, &values, &owned, &err), EB_OK);
    for (int i = 0; i < 4; i++)
        assert_memory_equal(&values[i], &bf_values[i], sizeof(float));
    free(owned);

    /* Every half bit pattern against the C compiler's own conversion where it has _Float16-free ground truth:
       the value is sign * 2^(e-15) * (1 + m/1024), or 2^-14 * m/1024 for subnormals. */
    for (uint32_t bits = 0; bits < 0x10000; bits++) {
        uint32_t e = (bits >> 10) & 0x1F, m = bits & 0x3FF;
        float got = eb__f16_to_f32((uint16_t)bits);
        if (e == 0x1F) {
            assert_true(m == 0 ? isinf(got) : isnan(got));
            continue;
        }
        double expected = e == 0 ? ldexp((double)m, -24) : ldexp(1.0 + m / 1024.0, (int)e - 15);
        if (bits & 0x8000)
            expected = -expected;
        if ((double)got != expected || (signbit(got) != 0) != ((bits & 0x8000) != 0))
            fail_msg("half %04x became %a, expected %a", bits, (double)got, expected);
    }
    eb__safetensors_close(st);
    free(bytes);
}

static void test_unaligned_f32_is_copied(void **state)
{
    (void)state;
    /* Offset 2: the floats do not sit on a 4-byte boundary of the data section. */
    uint8_t data[2 + 3 * sizeof(float)] = {0};
    memcpy(data + 2, eight_floats, 3 * sizeof(float));
    const char *header = "{\"pad\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[0,2]},"
                         "\"x\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[2,14]}}";
    size_t size;
    uint8_t *bytes = image(header, 0, data, sizeof data, &size);
    eb_safetensors *st;
    eb_error err;
    assert_int_equal(open_bytes(bytes, size, &st, &err), EB_OK);
    const float *values;
    float *owned;
    size_t shape[1] = {3};
    assert_int_equal(eb__safetensors_f32(st, eb__safetensors_find(st, "x"), shape, 1, &values, &owned, &err), EB_OK);
    assert_non_null(owned);
    assert_memory_equal(values, eight_floats, 3 * sizeof(float));
    free(owned);
    /* A dtype that is not a float is refused by name. */
    size_t pad_shape[1] = {2};
    assert_int_equal(eb__safetensors_f32(st, eb__safetensors_find(st, "pad"), pad_shape, 1, &values, &owned, &err),
                     EB_ERR_FORMAT);
    assert_non_null(strstr(err.message, "'pad' has dtype U8"));
    eb__safetensors_close(st);
    free(bytes);
}

static void test_corrupt_headers_are_refused(void **state)
{
    (void)state;
    uint8_t data[64] = {0};
    expect_refused("[1,2]", data, 8, "not a JSON object");
    expect_refused("{\"a\":", data, 8, "not valid JSON");
    expect_refused("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}} x", data, 8, "after its JSON");
    expect_refused("{\"a\":1}", data, 8, "'a' is not described by a JSON object");
    expect_refused("{\"a\":{\"shape\":[2],\"data_offsets\":[0,8]}}", data, 8, "'a' lacks its dtype");
    expect_refused("{\"a\":{\"dtype\":\"F32\",\"data_offsets\":[0,8]}}", data, 8, "'a' lacks its shape");
    expect_refused("{\"a\":{\"dtype\":\"F32\",\"shape\":[2]}}", data, 8, "'a' lacks its data_offsets");
    expect_refused("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8],\"x\":1}}", data, 8,
                   "unknown field 'x'");
    expect_refused("{\"a\":{\"dtype\":\"F31\",\"shape\":[2],\"data_offsets\":[0,8]}}", data, 8, "unknown dtype 'F31'");
    expect_refused("{\"a\":{\"dtype\":7,\"shape\":[2],\"data_offsets\":[0,8]}}", data, 8, "dtype is not a string");
    expect_refused("{\"a\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}", data, 8, "shape[0]");
    expect_refused("{\"a\":{\"dtype\":\"F32\",\"shape\":[2.5],\"data_offsets\":[0,8]}}", data, 8, "shape[0]");
    expect_refused("{\"a\":{\"dtype\":\"F32\",\"shape\":2,\"data_offsets\":[0,8]}}", data, 8, "shape is not an array");
    expect_refused("{\"a\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,4]}}", data, 8,
                   "9 dimensions");
    expect_refused("{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,8]}}", data, 8,
                   "overflows");
    expect_refused("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,0]}}", data, 8, "outside");
    expect_refused("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,16]}}", data, 8, "outside");
    expect_refused("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,99999999999999999999]}}", data, 8,
                   "data_offsets");
    expect_refused("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0]}}", data, 8, "two integers");
    expect_refused("{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", data, 16, "need 12");
    expect_refused("{\"a\":{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[0,8]}}", data, 8, "span 8 bytes");
    expect_refused("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                   "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
                   data, 16, "overlap");
    expect_refused("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                   "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}",
                   data, 16, "overlap");
    expect_refused("{\"__metadata__\":[1]}", data, 8, "__metadata__");
    expect_refused("{\"\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", data, 8, "empty name");
    expect_refused("{\"a\":{\"dtype\":\"F32\",\"shape\":[[[[[[[[[[[1]]]]]]]]]]],\"data_offsets\":[0,8]}}", data, 8,
                   "not valid JSON");
    /* A zero-sized tensor may sit anywhere inside the data, even where another begins. */
    size_t size;
    uint8_t *bytes = image("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                           "\"e\":{\"dtype\":\"F32\",\"shape\":[0,3],\"data_offsets\":[4,4]}}",
                           0, data, 8, &size);
    eb_safetensors *st;
    eb_error err;
    assert_int_equal(open_bytes(bytes, size, &st, &err), EB_OK);
    assert_int_equal(eb__safetensors_find(st, "e")->count, 0);
    eb__safetensors_close(st);
    free(bytes);
}

static void test_bad_lengths_are_refused(void **state)
{
    (void)state;
    eb_safetensors *st;
    eb_error err;
    uint8_t small[7] = {0};
    assert_int_equal(open_bytes(small, sizeof small, &st, &err), EB_ERR_FORMAT);
    assert_non_null(strstr(err.message, "too short"));
    /* Header lengths: huge, larger than the file, below 2. */
    const uint64_t lengths[] = {UINT64_MAX, (uint64_t)1 << 40, EB_ST_MAX_HEADER_BYTES + 1, 100, 1, 0};
    for (size_t i = 0; i < sizeof lengths / sizeof lengths[0]; i++) {
        uint8_t bytes[64];
        memset(bytes, ' ', sizeof bytes);
        for (int b = 0; b < 8; b++)
            bytes[b] = (uint8_t)(lengths[i] >> (8 * b));
        bytes[8] = '{';
        bytes[9] = '}';
        assert_int_equal(open_bytes(bytes, sizeof bytes, &st, &err), EB_ERR_FORMAT);
        assert_non_null(strstr(err.message, "header length"));
    }
    /* A truncated file: the last tensor's data runs past the end. */
    size_t size;
    uint8_t *bytes = image("{\"a\":{\"dtype\":\"F32\",\"shape\":[8],\"data_offsets\":[0,32]}}", 0, eight_floats,
                           sizeof eight_floats, &size);
    for (size_t cut = 1; cut < 40; cut++) {
        eb_status status = open_bytes(bytes, size - cut, &st, &err);
        assert_int_equal(status, EB_ERR_FORMAT);
        assert_null(st);
    }
    assert_int_equal(open_bytes(bytes, size, &st, &err), EB_OK);
    eb__safetensors_close(st);
    free(bytes);
}

static char temp_dir[64];

static void write_file(const char *path, const void *bytes, size_t size)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(bytes, 1, size, f), size);
    assert_int_equal(fclose(f), 0);
}

static void test_files_are_mapped_and_checked(void **state)
{
    (void)state;
    char path[128];
    snprintf(path, sizeof path, "%s/good.safetensors", temp_dir);
    size_t size;
    uint8_t *bytes = image("{\"w\":{\"dtype\":\"F32\",\"shape\":[2,4],\"data_offsets\":[0,32]}}", 64, eight_floats,
                           sizeof eight_floats, &size);
    write_file(path, bytes, size);
    eb_safetensors *st;
    eb_error err;
    assert_int_equal(eb__safetensors_open(path, NULL, &st, &err), EB_OK);
    assert_string_equal(err.message, "");
    const float *values;
    float *owned;
    size_t shape[2] = {2, 4};
    assert_int_equal(eb__safetensors_f32(st, eb__safetensors_find(st, "w"), shape, 2, &values, &owned, &err), EB_OK);
    assert_null(owned);
    assert_memory_equal(values, eight_floats, sizeof eight_floats);
    eb__safetensors_close(st);

    /* Truncated on disk: refused, naming the file and the tensor. */
    write_file(path, bytes, size - 4);
    assert_int_equal(eb__safetensors_open(path, NULL, &st, &err), EB_ERR_FORMAT);
    assert_non_null(strstr(err.message, path));
    assert_non_null(strstr(err.message, "'w'"));
    write_file(path, bytes, 3);
    assert_int_equal(eb__safetensors_open(path, NULL, &st, &err), EB_ERR_FORMAT);
    assert_non_null(strstr(err.message, "too short"));
    free(bytes);

    /* Missing files, directories, devices and FIFOs are EB_ERR_IO at once (a FIFO without a writer would block a plain open). */
    char fifo[128], missing[128];
    snprintf(fifo, sizeof fifo, "%s/fifo", temp_dir);
    snprintf(missing, sizeof missing, "%s/missing.safetensors", temp_dir);
    assert_int_equal(mkfifo(fifo, 0600), 0);
    const char *not_files[] = {fifo, "/dev/zero", temp_dir, missing};
    for (size_t i = 0; i < 4; i++) {
        time_t start = time(NULL);
        st = (eb_safetensors *)&err;
        assert_int_equal(eb__safetensors_open(not_files[i], NULL, &st, &err), EB_ERR_IO);
        assert_null(st);
        assert_non_null(strstr(err.message, not_files[i]));
        assert_true(time(NULL) - start < 5);
    }
    unlink(fifo);
    assert_int_equal(eb__safetensors_open(NULL, NULL, &st, &err), EB_ERR_NULL_POINTER);
}

static void test_allocation_failures_leak_nothing(void **state)
{
    (void)state;
    size_t size;
    uint8_t *bytes = image("{\"a\":{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[0,4]},"
                           "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
                           0, eight_floats, 8, &size);
    counting_allocator counter;
    eb_allocator mem = counting_allocator_init(&counter);
    eb_safetensors *st;
    eb_error err;
    assert_int_equal(eb__safetensors_open_buffer(bytes, size, "m", &mem, &st, &err), EB_OK);
    eb__safetensors_close(st);
    assert_int_equal(counter.live_blocks, 0);
    size_t needed = counter.attempts;
    assert_true(needed >= 3);
    for (size_t fail_at = 0; fail_at < needed; fail_at++) {
        counting_allocator_arm(&counter, fail_at);
        assert_int_equal(eb__safetensors_open_buffer(bytes, size, "m", &mem, &st, &err), EB_ERR_NOMEM);
        assert_null(st);
        assert_int_equal(counter.live_blocks, 0);
    }
    counting_allocator_arm(&counter, SIZE_MAX);
    assert_int_equal(eb__safetensors_open_buffer(bytes, size, "m", &mem, &st, &err), EB_OK);
    counting_allocator_arm(&counter, 0);
    const float *values;
    float *owned;
    size_t shape[1] = {2};
    assert_int_equal(eb__safetensors_f32(st, eb__safetensors_find(st, "a"), shape, 1, &values, &owned, &err),
                     EB_ERR_NOMEM);
    assert_non_null(strstr(err.message, "'a'"));
    eb__safetensors_close(st);
    assert_int_equal(counter.live_blocks, 0);
    free(bytes);
}

static int make_temp_dir(void **state)
{
    (void)state;
    snprintf(temp_dir, sizeof temp_dir, "/tmp/eb-safetensors-XXXXXX");
    return mkdtemp(temp_dir) == NULL ? -1 : 0;
}

static int remove_temp_dir(void **state)
{
    (void)state;
    char path[128];
    snprintf(path, sizeof path, "%s/good.safetensors", temp_dir);
    unlink(path);
    return rmdir(temp_dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_f32_tensors_read_in_place),
        cmocka_unit_test(test_f16_and_bf16_convert_exactly),
        cmocka_unit_test(test_unaligned_f32_is_copied),
        cmocka_unit_test(test_corrupt_headers_are_refused),
        cmocka_unit_test(test_bad_lengths_are_refused),
        cmocka_unit_test(test_files_are_mapped_and_checked),
        cmocka_unit_test(test_allocation_failures_leak_nothing),
    };
    return cmocka_run_group_tests(tests, make_temp_dir, remove_temp_dir);
}
