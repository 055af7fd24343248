/* The safetensors reader: the file is mapped read-only, the JSON header parsed with json-c and checked whole. */
/* open flags (O_CLOEXEC), mmap and fstat are POSIX.1-2008. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <stdio.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <json-c/json.h>

#include "safetensors.h"

/* The header is a flat object of tensors; anything nested deeper than this is not a safetensors header. */
enum { HEADER_MAX_DEPTH = 8 };

static const struct {
    const char *name;
    eb_st_dtype dtype;
    size_t bytes;
} dtypes[] = {
    {"BOOL", EB_ST_BOOL, 1}, {"U8", EB_ST_U8, 1},   {"I8", EB_ST_I8, 1},     {"F8_E5M2", EB_ST_F8_E5M2, 1},
    {"F8_E4M3", EB_ST_F8_E4M3, 1}, {"I16", EB_ST_I16, 2}, {"U16", EB_ST_U16, 2}, {"F16", EB_ST_F16, 2},
    {"BF16", EB_ST_BF16, 2}, {"I32", EB_ST_I32, 4}, {"U32", EB_ST_U32, 4},   {"F32", EB_ST_F32, 4},
    {"F64", EB_ST_F64, 8},   {"I64", EB_ST_I64, 8}, {"U64", EB_ST_U64, 8},
};

const char *eb__st_dtype_name(eb_st_dtype dtype)
{
    for (size_t i = 0; i < sizeof dtypes / sizeof dtypes[0]; i++) {
        if (dtypes[i].dtype == dtype)
            return dtypes[i].name;
    }
    return "?";
}

static size_t dtype_bytes(eb_st_dtype dtype)
{
    for (size_t i = 0; i < sizeof dtypes / sizeof dtypes[0]; i++) {
        if (dtypes[i].dtype == dtype)
            return dtypes[i].bytes;
    }
    return 0;
}

float eb__f16_to_f32(uint16_t bits)
{
    uint32_t sign = (uint32_t)(bits & 0x8000u) << 16;
    uint32_t exponent = (bits >> 10) & 0x1Fu;
    uint32_t mantissa = bits & 0x3FFu;
    uint32_t out;
    if (exponent == 0x1F) {
        out = sign | 0x7F800000u | (mantissa << 13);
    } else if (exponent != 0) {
        out = sign | ((exponent + 112u) << 23) | (mantissa << 13);
    } else if (mantissa == 0) {
        out = sign;
    } else {
        /* A subnormal half is a normal float: shift the leading one into the implicit bit. */
        uint32_t e = 113;
        while ((mantissa & 0x400u) == 0) {
            mantissa <<= 1;
            e--;
        }
        out = sign | (e << 23) | ((mantissa & 0x3FFu) << 13);
    }
    float f;
    memcpy(&f, &out, sizeof f);
    return f;
}

float eb__bf16_to_f32(uint16_t bits)
{
    uint32_t out = (uint32_t)bits << 16;
    float f;
    memcpy(&f, &out, sizeof f);
    return f;
}

static void release(eb_safetensors *st)
{
    const eb_allocator *mem = &st->mem;
    if (st->tensors != NULL) {
        for (size_t i = 0; i < st->count; i++)
            eb__free(mem, st->tensors[i].name);
        eb__free(mem, st->tensors);
    }
    if (st->mapping != NULL)
        munmap(st->mapping, st->mapping_size);
    eb__free(mem, st->source);
    eb_allocator copy = st->mem;
    eb__free(&copy, st);
}

void eb__safetensors_close(eb_safetensors *st)
{
    if (st != NULL)
        release(st);
}

static int compare_names(const void *a, const void *b)
{
    return strcmp(((const eb_st_tensor *)a)->name, ((const eb_st_tensor *)b)->name);
}

static int compare_ranges(const void *a, const void *b)
{
    const eb_st_tensor *x = *(const eb_st_tensor *const *)a;
    const eb_st_tensor *y = *(const eb_st_tensor *const *)b;
    if (x->begin != y->begin)
        return x->begin < y->begin ? -1 : 1;
    return x->end < y->end ? -1 : x->end > y->end;
}

/* A non-negative JSON integer that fits size_t. */
static bool json_size(json_object *value, size_t *out)
{
    if (!json_object_is_type(value, json_type_int))
        return false;
    errno = 0;
    int64_t v = json_object_get_int64(value);
    if (v < 0 || errno != 0 || (uint64_t)v > SIZE_MAX)
        return false;
    *out = (size_t)v;
    return true;
}

static eb_status parse_tensor(eb_safetensors *st, const char *name, json_object *entry, eb_st_tensor *t,
                              eb_error *err)
{
    const char *src = st->source;
    if (!json_object_is_type(entry, json_type_object))
        return eb__fail(err, EB_ERR_FORMAT, "%s: tensor '%s' is not described by a JSON object", src, name);
    json_object *dtype = NULL, *shape = NULL, *offsets = NULL;
    json_object_object_foreach(entry, key, value)
    {
        if (strcmp(key, "dtype") == 0)
            dtype = value;
        else if (strcmp(key, "shape") == 0)
            shape = value;
        else if (strcmp(key, "data_offsets") == 0)
            offsets = value;
        else
            return eb__fail(err, EB_ERR_FORMAT, "%s: tensor '%s' has an unknown field '%.40s'", src, name, key);
    }
    if (dtype == NULL || shape == NULL || offsets == NULL)
        return eb__fail(err, EB_ERR_FORMAT, "%s: tensor '%s' lacks its %s", src, name,
                        dtype == NULL ? "dtype" : shape == NULL ? "shape" : "data_offsets");
    if (!json_object_is_type(dtype, json_type_string))
        return eb__fail(err, EB_ERR_FORMAT, "%s: tensor '%s': dtype is not a string", src, name);
    const char *dtype_name = json_object_get_string(dtype);
    bool known = false;
    for (size_t i = 0; i < sizeof dtypes / sizeof dtypes[0]; i++) {
        if (strcmp(dtype_name, dtypes[i].name) == 0) {
            t->dtype = dtypes[i].dtype;
            known = true;
        }
    }
    if (!known)
        return eb__fail(err, EB_ERR_FORMAT, "%s: tensor '%s' has the unknown dtype '%.20s'", src, name, dtype_name);

    if (!json_object_is_type(shape, json_type_array))
        return eb__fail(err, EB_ERR_FORMAT, "%s: tensor '%s': shape is not an array", src, name);
    size_t ndim = json_object_array_length(shape);
    if (ndim > EB_ST_MAX_DIMS)
        return eb__fail(err, EB_ERR_FORMAT, "%s: tensor '%s' has %zu dimensions (at most %d are supported)", src,
                        name, ndim, EB_ST_MAX_DIMS);
    t->ndim = ndim;
    size_t count = 1;
    bool overflow = false;
    for (size_t d = 0; d < ndim; d++) {
        if (!json_size(json_object_array_get_idx(shape, d), &t->shape[d]))
            return eb__fail(err, EB_ERR_FORMAT, "%s: tensor '%s': shape[%zu] is not a non-negative integer", src,
                            name, d);
        /* Keep multiplying after an overflow only to see whether a zero dimension makes the tensor empty. */
        if (!overflow && !eb__mul_size(count, t->shape[d], &count))
            overflow = true;
    }
    for (size_t d = 0; d < ndim; d++) {
        if (t->shape[d] == 0) {
            count = 0;
            overflow = false;
        }
    }
    size_t bytes;
    if (overflow || !eb__mul_size(count, dtype_bytes(t->dtype), &bytes))
        return eb__fail(err, EB_ERR_FORMAT, "%s: tensor '%s': the shape's size overflows", src, name);
    t->count = count;

    if (!json_object_is_type(offsets, json_type_array) || json_object_array_length(offsets) != 2)
        return eb__fail(err, EB_ERR_FORMAT, "%s: tensor '%s': data_offsets is not an array of two integers", src,
                        name);
    if (!json_size(json_object_array_get_idx(offsets, 0), &t->begin) ||
        !json_size(json_object_array_get_idx(offsets, 1), &t->end))
        return eb__fail(err, EB_ERR_FORMAT, "%s: tensor '%s': data_offsets are not non-negative integers", src,
                        name);
    if (t->begin > t->end || t->end > st->data_size)
        return eb__fail(err, EB_ERR_FORMAT,
                        "%s: tensor '%s': data_offsets [%zu, %zu) lie outside the %zu bytes of tensor data", src, name,
                        t->begin, t->end, st->data_size);
    if (t->end - t->begin != bytes)
        return eb__fail(err, EB_ERR_FORMAT,
                        "%s: tensor '%s': data_offsets span %zu bytes but dtype %s and its shape need %zu", src, name,
                        t->end - t->begin, dtype_name, bytes);
    return EB_OK;
}

static eb_status parse_header(eb_safetensors *st, const char *header, size_t length, eb_error *err)
{
    const char *src = st->source;
    size_t start = 0;
    while (start < length && (header[start] == ' ' || header[start] == '\t' || header[start] == '\n' ||
                              header[start] == '\r'))
        start++;
    if (start == length || header[start] != '{')
        return eb__fail(err, EB_ERR_FORMAT, "%s: the header is not a JSON object", src);
    json_tokener *tok = json_tokener_new_ex(HEADER_MAX_DEPTH);
    if (tok == NULL)
        return eb__fail(err, EB_ERR_NOMEM, "%s: out of memory parsing the header", src);
    /* json-c parses at most INT_MAX bytes in one call; the header limit keeps well below. */
    json_object *root = json_tokener_parse_ex(tok, header, (int)length);
    enum json_tokener_error jerr = json_tokener_get_error(tok);
    size_t end = json_tokener_get_parse_end(tok);
    json_tokener_free(tok);
    if (root == NULL || jerr != json_tokener_success) {
        json_object_put(root);
        return eb__fail(err, EB_ERR_FORMAT, "%s: the header is not valid JSON (%s, near byte %zu)", src,
                        jerr == json_tokener_continue ? "it ends early" : json_tokener_error_desc(jerr), end);
    }
    /* The writer pads the header with spaces to an 8-byte boundary; anything else after the object is corrupt. */
    for (size_t i = end; i < length; i++) {
        if (header[i] != ' ' && header[i] != '\t' && header[i] != '\n' && header[i] != '\r') {
            json_object_put(root);
            return eb__fail(err, EB_ERR_FORMAT, "%s: the header has bytes after its JSON object (at byte %zu)", src,
                            i);
        }
    }
    if (!json_object_is_type(root, json_type_object)) {
        json_object_put(root);
        return eb__fail(err, EB_ERR_FORMAT, "%s: the header is not a JSON object", src);
    }

    size_t entries = (size_t)json_object_object_length(root);
    st->tensors = entries == 0 ? NULL : eb__calloc(&st->mem, entries, sizeof *st->tensors);
    if (entries != 0 && st->tensors == NULL) {
        json_object_put(root);
        return eb__fail(err, EB_ERR_NOMEM, "%s: out of memory for %zu tensor descriptions", src, entries);
    }
    eb_status status = EB_OK;
    json_object_object_foreach(root, key, value)
    {
        if (strcmp(key, "__metadata__") == 0) {
            /* Free-form string to string metadata: checked for shape only, not used. */
            if (!json_object_is_type(value, json_type_object)) {
                status = eb__fail(err, EB_ERR_FORMAT, "%s: __metadata__ is not a JSON object", src);
                break;
            }
            continue;
        }
        eb_st_tensor *t = &st->tensors[st->count];
        size_t name_length = strlen(key);
        if (name_length == 0) {
            status = eb__fail(err, EB_ERR_FORMAT, "%s: a tensor has an empty name", src);
            break;
        }
        t->name = eb__calloc(&st->mem, name_length + 1, 1);
        if (t->name == NULL) {
            status = eb__fail(err, EB_ERR_NOMEM, "%s: out of memory for tensor names", src);
            break;
        }
        memcpy(t->name, key, name_length);
        st->count++;
        status = parse_tensor(st, t->name, value, t, err);
        if (status != EB_OK)
            break;
    }
    json_object_put(root);
    if (status != EB_OK)
        return status;
    if (st->count == 0)
        return EB_OK;

    qsort(st->tensors, st->count, sizeof *st->tensors, compare_names);
    for (size_t i = 1; i < st->count; i++) {
        if (strcmp(st->tensors[i - 1].name, st->tensors[i].name) == 0)
            return eb__fail(err, EB_ERR_FORMAT, "%s: tensor '%s' is named twice", src, st->tensors[i].name);
    }
    const eb_st_tensor **by_range = eb__calloc(&st->mem, st->count, sizeof *by_range);
    if (by_range == NULL)
        return eb__fail(err, EB_ERR_NOMEM, "%s: out of memory checking tensor ranges", src);
    for (size_t i = 0; i < st->count; i++)
        by_range[i] = &st->tensors[i];
    qsort(by_range, st->count, sizeof *by_range, compare_ranges);
    size_t covered = 0;
    const eb_st_tensor *previous = NULL;
    for (size_t i = 0; i < st->count; i++) {
        const eb_st_tensor *t = by_range[i];
        if (t->begin == t->end)
            continue;
        if (t->begin < covered) {
            status = eb__fail(err, EB_ERR_FORMAT, "%s: the data of tensors '%s' and '%s' overlap", src,
                              previous->name, t->name);
            break;
        }
        covered = t->end;
        previous = t;
    }
    eb__free(&st->mem, by_range);
    return status;
}

/* Check bytes[0 .. size) as a safetensors file and fill st (whose source is set). */
static eb_status parse(eb_safetensors *st, const uint8_t *bytes, size_t size, eb_error *err)
{
    const char *src = st->source;
    if (size < 8)
        return eb__fail(err, EB_ERR_FORMAT, "%s: %zu bytes is too short for a safetensors file", src, size);
    uint64_t header_length = 0;
    for (int i = 7; i >= 0; i--)
        header_length = header_length << 8 | bytes[i];
    if (header_length < 2 || header_length > EB_ST_MAX_HEADER_BYTES || header_length > size - 8)
        return eb__fail(err, EB_ERR_FORMAT,
                        "%s: header length %llu is impossible (the file has %zu bytes after the length field)", src,
                        (unsigned long long)header_length, size - 8);
    st->data = bytes + 8 + header_length;
    st->data_size = size - 8 - (size_t)header_length;
    return parse_header(st, (const char *)bytes + 8, (size_t)header_length, err);
}

static eb_status create(const char *source, const eb_allocator *mem, eb_safetensors **out, eb_error *err)
{
    if (mem == NULL)
        mem = eb_default_allocator();
    eb_safetensors *st = eb__calloc(mem, 1, sizeof *st);
    if (st == NULL)
        return eb__fail(err, EB_ERR_NOMEM, "out of memory opening %s", source);
    st->mem = *mem;
    size_t length = strlen(source);
    st->source = eb__calloc(mem, length + 1, 1);
    if (st->source == NULL) {
        eb__free(mem, st);
        return eb__fail(err, EB_ERR_NOMEM, "out of memory opening %s", source);
    }
    memcpy(st->source, source, length);
    *out = st;
    return EB_OK;
}

eb_status eb__safetensors_open_buffer(const void *bytes, size_t size, const char *name, const eb_allocator *mem,
                                      eb_safetensors **out, eb_error *err)
{
    if (out == NULL)
        return eb__fail(err, EB_ERR_NULL_POINTER, "out is NULL");
    *out = NULL;
    if (bytes == NULL || name == NULL)
        return eb__fail(err, EB_ERR_NULL_POINTER, "%s is NULL", bytes == NULL ? "bytes" : "name");
    eb_safetensors *st;
    eb_status status = create(name, mem, &st, err);
    if (status != EB_OK)
        return status;
    status = parse(st, bytes, size, err);
    if (status != EB_OK) {
        release(st);
        return status;
    }
    eb__error_clear(err);
    *out = st;
    return EB_OK;
}

eb_status eb__safetensors_open(const char *path, const eb_allocator *mem, eb_safetensors **out, eb_error *err)
{
    if (out == NULL)
        return eb__fail(err, EB_ERR_NULL_POINTER, "out is NULL");
    *out = NULL;
    if (path == NULL)
        return eb__fail(err, EB_ERR_NULL_POINTER, "path is NULL");
    /* O_NONBLOCK: opening a FIFO must not wait for a writer before the type check refuses it. */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0)
        return eb__fail(err, EB_ERR_IO, "cannot open %s: %s", path, strerror(errno));
    struct stat info;
    if (fstat(fd, &info) != 0) {
        int e = errno;
        close(fd);
        return eb__fail(err, EB_ERR_IO, "cannot stat %s: %s", path, strerror(e));
    }
    if (!S_ISREG(info.st_mode)) {
        close(fd);
        return eb__fail(err, EB_ERR_IO, "%s is not a regular file", path);
    }
    if (info.st_size < 8) {
        close(fd);
        return eb__fail(err, EB_ERR_FORMAT, "%s: %lld bytes is too short for a safetensors file", path,
                        (long long)info.st_size);
    }
    if ((uintmax_t)info.st_size > SIZE_MAX) {
        close(fd);
        return eb__fail(err, EB_ERR_TOO_LARGE, "%s is too large to map", path);
    }
    size_t size = (size_t)info.st_size;
    void *mapping = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    int map_errno = errno;
    close(fd);
    if (mapping == MAP_FAILED)
        return eb__fail(err, EB_ERR_IO, "cannot map %s: %s", path, strerror(map_errno));
    eb_safetensors *st;
    eb_status status = create(path, mem, &st, err);
    if (status != EB_OK) {
        munmap(mapping, size);
        return status;
    }
    st->mapping = mapping;
    st->mapping_size = size;
    status = parse(st, mapping, size, err);
    if (status != EB_OK) {
        release(st);
        return status;
    }
    eb__error_clear(err);
    *out = st;
    return EB_OK;
}

const eb_st_tensor *eb__safetensors_find(const eb_safetensors *st, const char *name)
{
    if (st == NULL || name == NULL || st->count == 0)
        return NULL;
    eb_st_tensor key = {0};
    key.name = (char *)name;
    return bsearch(&key, st->tensors, st->count, sizeof *st->tensors, compare_names);
}

static void shape_text(const size_t *shape, size_t ndim, char *buf, size_t capacity)
{
    size_t used = 0;
    buf[0] = '\0';
    for (size_t d = 0; d < ndim && used < capacity; d++) {
        int n = snprintf(buf + used, capacity - used, "%s%zu", d == 0 ? "" : ", ", shape[d]);
        if (n < 0)
            break;
        used += (size_t)n;
    }
}

eb_status eb__safetensors_f32(const eb_safetensors *st, const eb_st_tensor *t, const size_t *shape, size_t ndim,
                              const float **values, float **owned, eb_error *err)
{
    *values = NULL;
    *owned = NULL;
    bool same = t->ndim == ndim;
    for (size_t d = 0; same && d < ndim; d++)
        same = t->shape[d] == shape[d];
    if (!same) {
        char want[96], have[96];
        shape_text(shape, ndim, want, sizeof want);
        shape_text(t->shape, t->ndim, have, sizeof have);
        return eb__fail(err, EB_ERR_FORMAT, "%s: tensor '%s' has shape [%s], expected [%s]", st->source, t->name,
                        have, want);
    }
    if (t->dtype != EB_ST_F32 && t->dtype != EB_ST_F16 && t->dtype != EB_ST_BF16)
        return eb__fail(err, EB_ERR_FORMAT, "%s: tensor '%s' has dtype %s; only F32, F16 and BF16 are supported",
                        st->source, t->name, eb__st_dtype_name(t->dtype));
    const uint8_t *src = st->data + t->begin;
    /* The file is little-endian: in place only where floats are too, and aligned. */
    if (t->dtype == EB_ST_F32 && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__ && ((uintptr_t)src % _Alignof(float)) == 0) {
        *values = (const float *)(const void *)src;
        return EB_OK;
    }
    if (t->count == 0) {
        /* Nothing to convert; a pointer that is never dereferenced still must not be NULL for callers. */
        *values = (const float *)(const void *)st->data;
        return EB_OK;
    }
    float *out = eb__calloc(&st->mem, t->count, sizeof *out);
    if (out == NULL)
        return eb__fail(err, EB_ERR_NOMEM, "%s: out of memory converting tensor '%s' to float32", st->source,
                        t->name);
    for (size_t i = 0; i < t->count; i++) {
        if (t->dtype == EB_ST_F32) {
            uint32_t bits = (uint32_t)src[4 * i] | (uint32_t)src[4 * i + 1] << 8 | (uint32_t)src[4 * i + 2] << 16 |
                            (uint32_t)src[4 * i + 3] << 24;
            memcpy(&out[i], &bits, sizeof bits);
        } else {
            uint16_t bits = (uint16_t)(src[2 * i] | src[2 * i + 1] << 8);
            out[i] = t->dtype == EB_ST_F16 ? eb__f16_to_f32(bits) : eb__bf16_to_f32(bits);
        }
    }
    *values = out;
    *owned = out;
    return EB_OK;
}
