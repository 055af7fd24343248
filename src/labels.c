/*
 * Class names: the integers or UTF-8 strings a caller's classes 0 .. k-1
 * stand for, kept in the finetuner and saved with it, so that one model file
 * names its classes for any program that loads it.
 */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* One label with its index, for finding duplicates by sorting. */
typedef struct label_entry {
    int64_t integer;
    const char *text;
    size_t length;
    size_t index;
} label_entry;

static int compare_integers(const void *a, const void *b)
{
    const label_entry *x = a, *y = b;
    if (x->integer != y->integer)
        return x->integer < y->integer ? -1 : 1;
    return x->index < y->index ? -1 : x->index > y->index;
}

static int compare_strings(const void *a, const void *b)
{
    const label_entry *x = a, *y = b;
    size_t common = x->length < y->length ? x->length : y->length;
    int order = memcmp(x->text, y->text, common);
    if (order != 0)
        return order;
    if (x->length != y->length)
        return x->length < y->length ? -1 : 1;
    return x->index < y->index ? -1 : x->index > y->index;
}

static size_t string_length(const eb_class_labels *labels, size_t i)
{
    return labels->string_lengths != NULL ? labels->string_lengths[i] : strlen(labels->strings[i]);
}

/* Duplicates, found in O(k log k) so that many classes stay cheap; the message names both indices. */
static eb_status check_distinct(const eb_class_labels *labels, const eb_allocator *mem, eb_error *err)
{
    if (labels->count < 2)
        return EB_OK;
    label_entry *entries = eb__calloc(mem, labels->count, sizeof *entries);
    if (entries == NULL)
        return eb__fail(err, EB_ERR_NOMEM, "out of memory checking %zu class labels", labels->count);
    bool integers = labels->type == EB_LABELS_INT64;
    for (size_t i = 0; i < labels->count; i++) {
        entries[i].index = i;
        if (integers) {
            entries[i].integer = labels->integers[i];
        } else {
            entries[i].text = labels->strings[i];
            entries[i].length = string_length(labels, i);
        }
    }
    int (*compare)(const void *, const void *) = integers ? compare_integers : compare_strings;
    qsort(entries, labels->count, sizeof *entries, compare);
    eb_status status = EB_OK;
    for (size_t i = 1; i < labels->count && status == EB_OK; i++) {
        label_entry a = entries[i - 1], b = entries[i];
        a.index = b.index = 0;
        if (compare(&a, &b) == 0)
            status = eb__fail(err, EB_ERR_INVALID_PARAM, "class labels %zu and %zu are equal; class names must be distinct",
                              entries[i - 1].index, entries[i].index);
    }
    eb__free(mem, entries);
    return status;
}

static eb_status check_labels(const eb_class_labels *labels, size_t expected_count, const eb_allocator *mem,
                              eb_error *err)
{
    if (labels->type != EB_LABELS_NONE && labels->type != EB_LABELS_INT64 && labels->type != EB_LABELS_UTF8)
        return eb__fail(err, EB_ERR_INVALID_PARAM, "class labels: unknown type %d", (int)labels->type);
    if (labels->type == EB_LABELS_NONE)
        return EB_OK;
    if (labels->count != expected_count)
        return eb__fail(err, EB_ERR_LABEL_OUT_OF_RANGE, "%zu class labels for %zu classes; give one name per class",
                        labels->count, expected_count);
    if (labels->type == EB_LABELS_INT64 && labels->integers == NULL)
        return eb__fail(err, EB_ERR_NULL_POINTER, "class labels: integers is NULL");
    if (labels->type == EB_LABELS_UTF8) {
        if (labels->strings == NULL)
            return eb__fail(err, EB_ERR_NULL_POINTER, "class labels: strings is NULL");
        for (size_t i = 0; i < labels->count; i++) {
            if (labels->strings[i] == NULL)
                return eb__fail(err, EB_ERR_NULL_POINTER, "class label %zu is NULL", i);
            size_t length = string_length(labels, i);
            if (length > EB_MAX_LABEL_BYTES)
                return eb__fail(err, EB_ERR_INVALID_PARAM, "class label %zu has %zu bytes; at most %d are allowed", i,
                                length, EB_MAX_LABEL_BYTES);
            size_t bad;
            if (!eb_utf8_valid(labels->strings[i], length, &bad))
                return eb__fail(err, EB_ERR_INVALID_UTF8, "class label %zu is not valid UTF-8 at byte %zu", i, bad);
        }
    }
    return check_distinct(labels, mem, err);
}

void eb__labels_release(eb_label_store *store, const eb_allocator *mem)
{
    eb__free(mem, store->integers);
    eb__free(mem, (void *)store->strings);
    eb__free(mem, store->lengths);
    eb__free(mem, store->text);
    memset(store, 0, sizeof *store);
}

/* Room for count strings of the given lengths, each followed by a NUL, with the pointers set up. */
static eb_status alloc_strings(eb_label_store *store, size_t count, const size_t *lengths, const eb_allocator *mem,
                               eb_error *err)
{
    size_t total = 0;
    for (size_t i = 0; i < count; i++) {
        if (lengths[i] >= SIZE_MAX - total)
            return eb__fail(err, EB_ERR_TOO_LARGE, "the class labels are too long");
        total += lengths[i] + 1;
    }
    store->strings = eb__calloc(mem, count, sizeof *store->strings);
    store->lengths = eb__calloc(mem, count, sizeof *store->lengths);
    store->text = eb__calloc(mem, total == 0 ? 1 : total, 1);
    if (store->strings == NULL || store->lengths == NULL || store->text == NULL) {
        eb__labels_release(store, mem);
        return eb__fail(err, EB_ERR_NOMEM, "out of memory copying %zu class labels", count);
    }
    char *cursor = store->text;
    for (size_t i = 0; i < count; i++) {
        store->strings[i] = cursor;
        store->lengths[i] = lengths[i];
        cursor += lengths[i] + 1;
    }
    store->type = EB_LABELS_UTF8;
    store->count = count;
    return EB_OK;
}

eb_status eb__labels_copy(const eb_class_labels *labels, size_t expected_count, const eb_allocator *mem,
                          eb_label_store *out, eb_error *err)
{
    memset(out, 0, sizeof *out);
    if (labels == NULL)
        return EB_OK;
    eb_status status = check_labels(labels, expected_count, mem, err);
    if (status != EB_OK || labels->type == EB_LABELS_NONE)
        return status;
    if (labels->type == EB_LABELS_INT64) {
        out->integers = eb__calloc(mem, labels->count, sizeof *out->integers);
        if (out->integers == NULL)
            return eb__fail(err, EB_ERR_NOMEM, "out of memory copying %zu class labels", labels->count);
        memcpy(out->integers, labels->integers, labels->count * sizeof *out->integers);
        out->type = EB_LABELS_INT64;
        out->count = labels->count;
        return EB_OK;
    }
    size_t *lengths = eb__calloc(mem, labels->count, sizeof *lengths);
    if (lengths == NULL)
        return eb__fail(err, EB_ERR_NOMEM, "out of memory copying %zu class labels", labels->count);
    for (size_t i = 0; i < labels->count; i++)
        lengths[i] = string_length(labels, i);
    status = alloc_strings(out, labels->count, lengths, mem, err);
    eb__free(mem, lengths);
    if (status != EB_OK)
        return status;
    for (size_t i = 0; i < labels->count; i++)
        memcpy((char *)out->strings[i], labels->strings[i], out->lengths[i]);
    return EB_OK;
}

eb_class_labels eb__labels_view(const eb_label_store *store)
{
    eb_class_labels view;
    memset(&view, 0, sizeof view);
    view.type = store->type;
    view.count = store->count;
    view.integers = store->integers;
    view.strings = store->strings;
    view.string_lengths = store->lengths;
    return view;
}

bool eb__labels_equal(const eb_label_store *store, const eb_class_labels *labels)
{
    if (labels->type != store->type || labels->count != store->count)
        return false;
    for (size_t i = 0; i < store->count; i++) {
        if (store->type == EB_LABELS_INT64 && labels->integers[i] != store->integers[i])
            return false;
        if (store->type == EB_LABELS_UTF8 &&
            (labels->strings[i] == NULL || string_length(labels, i) != store->lengths[i] ||
             memcmp(labels->strings[i], store->strings[i], store->lengths[i]) != 0))
            return false;
    }
    return true;
}

/* u8 type; then u64 count and, per class, an i64 or a u64 byte length and the bytes. */
void eb__labels_write(eb_writer *w, const eb_label_store *store)
{
    eb__write_u8(w, (uint8_t)store->type);
    if (store->type == EB_LABELS_NONE)
        return;
    eb__write_u64(w, store->count);
    for (size_t i = 0; i < store->count; i++) {
        if (store->type == EB_LABELS_INT64) {
            eb__write_u64(w, (uint64_t)store->integers[i]);
        } else {
            eb__write_u64(w, store->lengths[i]);
            for (size_t b = 0; b < store->lengths[i]; b++)
                eb__write_u8(w, (uint8_t)store->strings[i][b]);
        }
    }
}

eb_status eb__labels_read(eb_reader *r, size_t n_classes, const eb_allocator *mem, eb_label_store *out,
                          eb_error *err)
{
    memset(out, 0, sizeof *out);
    uint8_t type;
    if (!eb__read_u8(r, &type))
        return eb__fail(err, EB_ERR_FORMAT, "saved model: truncated class labels");
    if (type == EB_LABELS_NONE)
        return EB_OK;
    if (type != EB_LABELS_INT64 && type != EB_LABELS_UTF8)
        return eb__fail(err, EB_ERR_FORMAT, "saved model: unknown class label type %u", (unsigned)type);
    size_t count;
    if (!eb__read_size(r, &count))
        return eb__fail(err, EB_ERR_FORMAT, "saved model: truncated class label count");
    if (count != n_classes || count == 0)
        return eb__fail(err, EB_ERR_FORMAT, "saved model: %zu class labels for %zu classes", count, n_classes);
    /* Every label takes at least 8 bytes, so a count beyond what remains is refused before allocating. */
    if (count > (r->size - r->pos) / 8)
        return eb__fail(err, EB_ERR_FORMAT, "saved model: %zu class labels exceed the data", count);
    /* The bytes are read into a caller-style view first, then checked and copied as set_class_labels would. */
    eb_class_labels view;
    memset(&view, 0, sizeof view);
    view.type = (eb_label_type)type;
    view.count = count;
    eb_status status = EB_OK;
    int64_t *integers = NULL;
    const char **strings = NULL;
    size_t *lengths = NULL;
    if (type == EB_LABELS_INT64) {
        integers = eb__calloc(mem, count, sizeof *integers);
        if (integers == NULL)
            return eb__fail(err, EB_ERR_NOMEM, "out of memory reading %zu class labels", count);
        for (size_t i = 0; i < count; i++) {
            uint64_t value;
            eb__read_u64(r, &value); /* room checked above */
            integers[i] = (int64_t)value;
        }
        view.integers = integers;
    } else {
        strings = eb__calloc(mem, count, sizeof *strings);
        lengths = eb__calloc(mem, count, sizeof *lengths);
        if (strings == NULL || lengths == NULL)
            status = eb__fail(err, EB_ERR_NOMEM, "out of memory reading %zu class labels", count);
        for (size_t i = 0; i < count && status == EB_OK; i++) {
            if (!eb__read_size(r, &lengths[i]) || lengths[i] > EB_MAX_LABEL_BYTES || lengths[i] > r->size - r->pos) {
                status = eb__fail(err, EB_ERR_FORMAT, "saved model: class label %zu is truncated or too long", i);
                break;
            }
            strings[i] = (const char *)r->data + r->pos;
            r->pos += lengths[i];
        }
        view.strings = strings;
        view.string_lengths = lengths;
    }
    eb_error detail;
    if (status == EB_OK && (status = eb__labels_copy(&view, n_classes, mem, out, &detail)) != EB_OK)
        status = eb__fail(err, status == EB_ERR_NOMEM ? status : EB_ERR_FORMAT, "saved model: %s", detail.message);
    eb__free(mem, integers);
    eb__free(mem, (void *)strings);
    eb__free(mem, lengths);
    return status;
}
