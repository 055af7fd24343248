/*
 * Reading .safetensors files: an 8-byte little-endian header length, a JSON
 * header naming each tensor's dtype, shape and byte range, then the data.
 * Nothing in the file is trusted: every range, dtype and shape is checked
 * against the file before a tensor can be looked up. Not installed.
 */
#ifndef EMBETTER_SAFETENSORS_H
#define EMBETTER_SAFETENSORS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "internal.h"

/* More dimensions than any transformer weight has; a header asking for more is refused. */
enum { EB_ST_MAX_DIMS = 8 };

/* Headers above this are refused before parsing (the reference implementation's own limit is 100 MB). */
#define EB_ST_MAX_HEADER_BYTES ((uint64_t)100 * 1000 * 1000)

typedef enum eb_st_dtype {
    EB_ST_BOOL,
    EB_ST_U8,
    EB_ST_I8,
    EB_ST_F8_E5M2,
    EB_ST_F8_E4M3,
    EB_ST_I16,
    EB_ST_U16,
    EB_ST_F16,
    EB_ST_BF16,
    EB_ST_I32,
    EB_ST_U32,
    EB_ST_F32,
    EB_ST_F64,
    EB_ST_I64,
    EB_ST_U64
} eb_st_dtype;

typedef struct eb_st_tensor {
    char *name;
    eb_st_dtype dtype;
    size_t ndim;
    size_t shape[EB_ST_MAX_DIMS];
    size_t count;           /* product of shape (1 for a scalar) */
    size_t begin;           /* byte range inside the data section */
    size_t end;
} eb_st_tensor;

typedef struct eb_safetensors {
    eb_allocator mem;
    char *source;           /* the path, or the name a buffer was given, for messages */
    void *mapping;          /* NULL when reading a caller's buffer */
    size_t mapping_size;
    const uint8_t *data;    /* start of the data section */
    size_t data_size;
    eb_st_tensor *tensors;  /* sorted by name */
    size_t count;
} eb_safetensors;

/* The dtype's name as safetensors spells it ("F32"). */
const char *eb__st_dtype_name(eb_st_dtype dtype);

/*
 * Memory-map and check the file at path (a regular file; a FIFO or device is
 * refused without blocking). The mapping is private and read-only; like any
 * mapped file, shrinking it on disk while it is open makes reads past the new
 * end fault, so model files must not be rewritten in place while loaded. EB_ERR_IO when it cannot be opened or mapped,
 * EB_ERR_FORMAT (message naming the file and tensor or field) when invalid.
 */
eb_status eb__safetensors_open(const char *path, const eb_allocator *mem, eb_safetensors **out, eb_error *err);

/* The same checks over bytes the caller keeps alive until close; name is how messages call them. */
eb_status eb__safetensors_open_buffer(const void *bytes, size_t size, const char *name, const eb_allocator *mem,
                                      eb_safetensors **out, eb_error *err);

void eb__safetensors_close(eb_safetensors *st);

/* The tensor called name, or NULL. */
const eb_st_tensor *eb__safetensors_find(const eb_safetensors *st, const char *name);

/*
 * The float32 values of tensor t, whose shape must be exactly the ndim entries
 * of shape (EB_ERR_FORMAT naming the tensor otherwise). F32 data aligned for
 * float is returned in place (*owned NULL); F16, BF16 and unaligned F32 are
 * converted into memory from st's allocator, returned in *owned for the caller
 * to free. Other dtypes are EB_ERR_FORMAT.
 */
eb_status eb__safetensors_f32(const eb_safetensors *st, const eb_st_tensor *t, const size_t *shape, size_t ndim,
                              const float **values, float **owned, eb_error *err);

/* IEEE half and bfloat16 bit patterns to float, exactly. */
float eb__f16_to_f32(uint16_t bits);
float eb__bf16_to_f32(uint16_t bits);

#endif
