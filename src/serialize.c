/*
 * The saved-model format: a fixed header, then a payload covered by a CRC32.
 *
 *   offset  size  field
 *   0       8     magic "EMBETTER"
 *   8       4     format version (u32)
 *   12      4     finetuner kind (u32): 1 feed-forward, 2 contrastive, 3 pair learner
 *   16      8     payload length in bytes (u64)
 *   24      4     CRC32 (zlib) of the payload (u32)
 *   28      ...   payload: params, the fit state, then (version 2) class names and metadata
 *
 * All integers and floats are little-endian. docs/model-format.md lists the
 * payload fields. Loading trusts nothing: every length is checked against the
 * bytes that remain before anything is allocated or read.
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include "internal.h"

static const uint8_t MAGIC[8] = {'E', 'M', 'B', 'E', 'T', 'T', 'E', 'R'};
enum { FORMAT_VERSION = EB_MODEL_FORMAT_VERSION, HEADER_SIZE = EB_MODEL_HEADER_SIZE };

/*
 * The largest Adam step count a file may hold. No run gets near it (2^62
 * steps at one per nanosecond take 146 years), so a larger value is
 * corruption, and a loaded model can train on without the counter wrapping.
 * Saving clamps to it, which changes nothing: Adam's bias corrections
 * 1 - 0.9^t and 1 - 0.999^t are exactly 1 in double long before that.
 */
static const uint64_t MAX_ADAM_STEPS = (uint64_t)1 << 62;

/* ---- writer ------------------------------------------------------------------ */

static void write_bytes_le(eb_writer *w, uint64_t value, size_t count)
{
    if (w->data != NULL && w->length + count <= w->capacity) {
        for (size_t i = 0; i < count; i++)
            w->data[w->length + i] = (uint8_t)(value >> (8 * i));
    }
    w->length += count;
}

void eb__write_u8(eb_writer *w, uint8_t value)
{
    write_bytes_le(w, value, 1);
}

void eb__write_u32(eb_writer *w, uint32_t value)
{
    write_bytes_le(w, value, 4);
}

void eb__write_u64(eb_writer *w, uint64_t value)
{
    write_bytes_le(w, value, 8);
}

void eb__write_f32(eb_writer *w, float value)
{
    uint32_t bits;
    memcpy(&bits, &value, sizeof bits);
    write_bytes_le(w, bits, 4);
}

static void write_f64(eb_writer *w, double value)
{
    uint64_t bits;
    memcpy(&bits, &value, sizeof bits);
    write_bytes_le(w, bits, 8);
}

static void write_f32_array(eb_writer *w, const float *values, size_t count)
{
    for (size_t i = 0; i < count; i++)
        eb__write_f32(w, values[i]);
}

void eb__write_fit_state(eb_writer *w, const eb_fit_state *state)
{
    eb__write_u8(w, state->fitted ? 1 : 0);
    if (state->fitted) {
        eb__write_u64(w, state->n_features);
        eb__write_u64(w, state->n_classes);
        eb__write_u64(w, state->out_dim);
        eb__write_u64(w, state->weights.count);
        eb__write_u64(w, state->weights.steps < MAX_ADAM_STEPS ? state->weights.steps : MAX_ADAM_STEPS);
        for (int i = 0; i < 4; i++)
            eb__write_u64(w, state->rng.s[i]);
        write_f32_array(w, state->weights.values, state->weights.count);
        write_f32_array(w, state->weights.first_moment, state->weights.count);
        write_f32_array(w, state->weights.second_moment, state->weights.count);
    }
    eb__write_u64(w, state->history.length);
    for (size_t i = 0; i < state->history.length; i++)
        write_f64(w, state->history.values[i]);
}

/* ---- reader ------------------------------------------------------------------ */

static bool read_bytes_le(eb_reader *r, size_t count, uint64_t *value)
{
    if (r->size - r->pos < count)
        return false;
    uint64_t v = 0;
    for (size_t i = 0; i < count; i++)
        v |= (uint64_t)r->data[r->pos + i] << (8 * i);
    r->pos += count;
    *value = v;
    return true;
}

bool eb__read_u8(eb_reader *r, uint8_t *value)
{
    uint64_t v;
    if (!read_bytes_le(r, 1, &v))
        return false;
    *value = (uint8_t)v;
    return true;
}

bool eb__read_u32(eb_reader *r, uint32_t *value)
{
    uint64_t v;
    if (!read_bytes_le(r, 4, &v))
        return false;
    *value = (uint32_t)v;
    return true;
}

bool eb__read_u64(eb_reader *r, uint64_t *value)
{
    return read_bytes_le(r, 8, value);
}

bool eb__read_size(eb_reader *r, size_t *value)
{
    uint64_t v;
    if (!eb__read_u64(r, &v) || v > SIZE_MAX)
        return false;
    *value = (size_t)v;
    return true;
}

bool eb__read_f32(eb_reader *r, float *value)
{
    uint32_t bits;
    if (!eb__read_u32(r, &bits))
        return false;
    memcpy(value, &bits, sizeof *value);
    return true;
}

static bool read_f64(eb_reader *r, double *value)
{
    uint64_t bits;
    if (!eb__read_u64(r, &bits))
        return false;
    memcpy(value, &bits, sizeof *value);
    return true;
}

static void read_f32_array(eb_reader *r, float *values, size_t count)
{
    for (size_t i = 0; i < count; i++)
        eb__read_f32(r, &values[i]);
}

/*
 * Training rolls back any pass that leaves a weight non-finite, and a NaN or
 * negative Adam moment would have made the next weights NaN, so saved values
 * outside these bounds are corruption. Only the second moment may be +inf: a
 * finite gradient above ~1.8e19 squares to it, and the update is then 0.
 */
static eb_status check_trainable_values(const eb_trainable *t, eb_error *err)
{
    for (size_t i = 0; i < t->count; i++) {
        const char *problem = NULL;
        double value = 0.0;
        if (!isfinite(t->values[i])) {
            problem = "weight";
            value = t->values[i];
        } else if (!isfinite(t->first_moment[i])) {
            problem = "Adam first moment";
            value = t->first_moment[i];
        } else if (!(t->second_moment[i] >= 0.0f)) {
            problem = "Adam second moment";
            value = t->second_moment[i];
        }
        if (problem != NULL)
            return eb__fail(err, EB_ERR_FORMAT, "saved model: %s %zu is %g, which training never saves", problem, i,
                            value);
    }
    return EB_OK;
}

/* True when count items of item_size bytes are still unread. */
static bool has_room(const eb_reader *r, size_t count, size_t item_size)
{
    size_t bytes;
    return eb__mul_size(count, item_size, &bytes) && bytes <= r->size - r->pos;
}

eb_status eb__read_fit_state(eb_reader *r, eb_fit_state *state, const eb_allocator *mem, eb_error *err)
{
    memset(state, 0, sizeof *state);
    uint8_t fitted;
    if (!eb__read_u8(r, &fitted) || fitted > 1)
        return eb__fail(err, EB_ERR_FORMAT, "saved model: bad or missing fitted flag at byte %zu", r->pos);
    if (fitted) {
        size_t count;
        uint64_t steps;
        if (!eb__read_size(r, &state->n_features) || !eb__read_size(r, &state->n_classes) ||
            !eb__read_size(r, &state->out_dim) || !eb__read_size(r, &count) || !eb__read_u64(r, &steps))
            return eb__fail(err, EB_ERR_FORMAT, "saved model: truncated shape fields at byte %zu", r->pos);
        for (int i = 0; i < 4; i++) {
            if (!eb__read_u64(r, &state->rng.s[i]))
                return eb__fail(err, EB_ERR_FORMAT, "saved model: truncated RNG state at byte %zu", r->pos);
        }
        if (steps > MAX_ADAM_STEPS)
            return eb__fail(err, EB_ERR_FORMAT, "saved model: %llu Adam steps is more than any training takes (at most 2^62)",
                            (unsigned long long)steps);
        if (state->rng.s[0] == 0 && state->rng.s[1] == 0 && state->rng.s[2] == 0 && state->rng.s[3] == 0)
            return eb__fail(err, EB_ERR_FORMAT, "saved model: RNG state is all zero, which the generator never reaches");
        if (count == 0 || !has_room(r, count, 3 * sizeof(float)))
            return eb__fail(err, EB_ERR_FORMAT,
                            "saved model: %zu weights need more bytes than the %zu left at byte %zu", count,
                            r->size - r->pos, r->pos);
        eb_status status = eb__trainable_alloc(&state->weights, count, mem);
        if (status != EB_OK)
            return eb__fail(err, status, "out of memory allocating %zu saved weights", count);
        state->weights.steps = steps;
        read_f32_array(r, state->weights.values, count);
        read_f32_array(r, state->weights.first_moment, count);
        read_f32_array(r, state->weights.second_moment, count);
        state->fitted = true;
        status = check_trainable_values(&state->weights, err);
        if (status != EB_OK) {
            eb__fit_state_release(state, mem);
            return status;
        }
    }
    size_t history_length;
    if (!eb__read_size(r, &history_length) || !has_room(r, history_length, sizeof(double))) {
        eb__fit_state_release(state, mem);
        return eb__fail(err, EB_ERR_FORMAT, "saved model: loss history length is missing or exceeds the data");
    }
    /* Training records one loss per epoch and takes at least one Adam step per epoch; an unfitted model has neither. */
    if (!state->fitted && history_length != 0) {
        eb__fit_state_release(state, mem);
        return eb__fail(err, EB_ERR_FORMAT, "saved model: an unfitted model with %zu loss history entries",
                        history_length);
    }
    if (state->fitted && (history_length == 0 || state->weights.steps < history_length)) {
        uint64_t steps = state->weights.steps;
        eb__fit_state_release(state, mem);
        return eb__fail(err, EB_ERR_FORMAT,
                        "saved model: %zu loss history entries and %llu Adam steps; a fitted model has at least one "
                        "entry and no fewer steps than entries",
                        history_length, (unsigned long long)steps);
    }
    if (history_length > 0) {
        if (eb__history_reserve(&state->history, history_length, mem) != EB_OK) {
            eb__fit_state_release(state, mem);
            return eb__fail(err, EB_ERR_NOMEM, "out of memory allocating the saved loss history");
        }
        for (size_t i = 0; i < history_length; i++) {
            read_f64(r, &state->history.values[i]);
            /* A diverged epoch is never recorded. */
            if (!isfinite(state->history.values[i])) {
                double bad = state->history.values[i];
                eb__fit_state_release(state, mem);
                return eb__fail(err, EB_ERR_FORMAT, "saved model: loss history entry %zu is %g, which training never records",
                                i, bad);
            }
        }
        state->history.length = history_length;
    }
    return EB_OK;
}

/* ---- framing ----------------------------------------------------------------- */

static uint32_t crc32_continue(uLong crc, const uint8_t *data, size_t size)
{
    /* zlib takes 32-bit lengths; feed larger payloads in pieces. */
    while (size > 0) {
        uInt piece = size > (size_t)UINT_MAX ? UINT_MAX : (uInt)size;
        crc = crc32(crc, data, piece);
        data += piece;
        size -= piece;
    }
    return (uint32_t)crc;
}

/* Header bytes from the version to the length: version 2 covers them with the payload's CRC. */
enum { COVERED_HEADER_START = 8, COVERED_HEADER_END = 24 };

/*
 * The checksum a file of this version stores. Version 1 covered the payload
 * only, so a flipped bit in the kind could turn one valid model into another
 * kind's; version 2 also covers version, kind and length.
 */
static uint32_t model_crc(uint32_t version, const uint8_t *bytes, size_t size)
{
    uLong crc = crc32(0L, Z_NULL, 0);
    if (version >= 2)
        crc = crc32_continue(crc, bytes + COVERED_HEADER_START, COVERED_HEADER_END - COVERED_HEADER_START);
    return crc32_continue(crc, bytes + HEADER_SIZE, size - HEADER_SIZE);
}

/* The params of every kind in one layout (version 2); version 1 wrote each kind's own subset. */
static void write_params(eb_writer *w, const eb_finetuner_params *p)
{
    /* The sentinel is SIZE_MAX, which differs between 32- and 64-bit builds; the file always says UINT64_MAX. */
    eb__write_u64(w, p->hidden_dim == EB_HIDDEN_DIM_AS_INPUT ? UINT64_MAX : (uint64_t)p->hidden_dim);
    eb__write_u64(w, p->n_epochs);
    eb__write_f32(w, p->learning_rate);
    eb__write_u64(w, p->batch_size);
    eb__write_u64(w, p->seed);
    eb__write_u64(w, p->n_neg);
    eb__write_u32(w, (uint32_t)p->layers);
}

static eb_status read_params(eb_reader *r, eb_finetuner_params *p, eb_error *err)
{
    uint64_t hidden_dim;
    uint32_t layers;
    if (!eb__read_u64(r, &hidden_dim) || !eb__read_size(r, &p->n_epochs) || !eb__read_f32(r, &p->learning_rate) ||
        !eb__read_size(r, &p->batch_size) || !eb__read_u64(r, &p->seed) || !eb__read_size(r, &p->n_neg) ||
        !eb__read_u32(r, &layers))
        return eb__fail(err, EB_ERR_FORMAT, "saved model: truncated params");
    p->hidden_dim = hidden_dim == UINT64_MAX ? EB_HIDDEN_DIM_AS_INPUT
                    : hidden_dim >= SIZE_MAX  ? SIZE_MAX - 1 /* refused by the params check as too large */
                                              : (size_t)hidden_dim;
    p->layers = (eb_pair_layers)layers;
    return EB_OK;
}

static void write_payload(const eb_finetuner *model, eb_writer *w)
{
    write_params(w, &model->params);
    eb__write_fit_state(w, &model->core.state);
    eb__labels_write(w, &model->labels);
    eb__write_u64(w, model->metadata_size);
    for (size_t i = 0; i < model->metadata_size; i++)
        eb__write_u8(w, model->metadata[i]);
}

size_t eb__finetuner_saved_size(const eb_finetuner *model)
{
    eb_writer counter = {NULL, 0, 0};
    write_payload(model, &counter);
    return HEADER_SIZE + counter.length;
}

/* Header, payload and CRC into buffer, which holds exactly size = eb__finetuner_saved_size(model) bytes. */
static void write_model(const eb_finetuner *model, void *buffer, size_t size)
{
    eb_writer w = {buffer, size, 0};
    for (size_t i = 0; i < sizeof MAGIC; i++)
        eb__write_u8(&w, MAGIC[i]);
    eb__write_u32(&w, FORMAT_VERSION);
    eb__write_u32(&w, (uint32_t)model->params.kind);
    eb__write_u64(&w, size - HEADER_SIZE);
    eb__write_u32(&w, 0); /* the CRC, filled in below */
    write_payload(model, &w);
    eb_writer crc_slot = {buffer, size, HEADER_SIZE - 4};
    eb__write_u32(&crc_slot, model_crc(FORMAT_VERSION, w.data, size));
}

eb_status eb__finetuner_save_to_buffer(const eb_finetuner *model, void *buffer, size_t capacity, size_t *written,
                                       eb_error *err)
{
    if (written != NULL)
        *written = 0;
    eb_status status = model->ops->check_state(model, err);
    if (status != EB_OK)
        return status;
    size_t needed = eb__finetuner_saved_size(model);
    if (capacity < needed)
        return eb__fail(err, EB_ERR_BUFFER_TOO_SMALL, "the buffer holds %zu bytes, the model needs %zu", capacity,
                        needed);
    write_model(model, buffer, needed);
    if (written != NULL)
        *written = needed;
    return EB_OK;
}

/* The header checks of every loader, shared with eb_model_read_header so the two cannot disagree. */
static eb_status parse_header(const uint8_t *bytes, size_t size, eb_model_header *out, eb_error *err)
{
    /* The magic first, as far as the bytes go: a short file of something else is not a model, not a short model. */
    if (memcmp(bytes, MAGIC, size < sizeof MAGIC ? size : sizeof MAGIC) != 0)
        return eb__fail(err, EB_ERR_FORMAT,
                        "saved model: not an embetter model, the data does not start with the EMBETTER magic");
    if (size < HEADER_SIZE)
        return eb__fail(err, EB_ERR_FORMAT, "saved model: %zu bytes is shorter than the %d-byte header", size,
                        HEADER_SIZE);
    eb_reader r = {bytes, size, sizeof MAGIC};
    uint32_t version = 0, kind = 0, crc = 0;
    uint64_t payload_size = 0;
    eb__read_u32(&r, &version);
    eb__read_u32(&r, &kind);
    eb__read_u64(&r, &payload_size);
    eb__read_u32(&r, &crc);
    if (version > FORMAT_VERSION)
        return eb__fail(err, EB_ERR_FORMAT, "saved model: format version %u is newer than this library's %d",
                        (unsigned)version, FORMAT_VERSION);
    if (version == 0)
        return eb__fail(err, EB_ERR_FORMAT, "saved model: format version 0 does not exist");
    if (eb__kind_ops((eb_finetuner_kind)kind) == NULL)
        return eb__fail(err, EB_ERR_FORMAT,
                        "saved model: unknown kind %u; this library knows %d (feedforward), %d (contrastive) and %d "
                        "(pair_learner)",
                        (unsigned)kind, EB_KIND_FEEDFORWARD, EB_KIND_CONTRASTIVE, EB_KIND_PAIR_LEARNER);
    if (version == 1 && eb__kind_ops((eb_finetuner_kind)kind)->read_v1_params == NULL)
        return eb__fail(err, EB_ERR_FORMAT, "saved model: format version 1 has no %s finetuners",
                        eb_finetuner_kind_name((eb_finetuner_kind)kind));
    out->format_version = version;
    out->kind = (eb_finetuner_kind)kind;
    out->payload_size = payload_size;
    out->payload_crc32 = crc;
    return EB_OK;
}

eb_status eb_model_read_header(const void *buffer, size_t size, eb_model_header *out, eb_error *err)
{
    eb__error_clear(err);
    if (out != NULL)
        memset(out, 0, sizeof *out);
    if (buffer == NULL || out == NULL)
        return eb__fail(err, EB_ERR_NULL_POINTER, "%s is NULL", buffer == NULL ? "buffer" : "out");
    eb_model_header header;
    eb_status status = parse_header(buffer, size, &header, err);
    if (status == EB_OK)
        *out = header;
    return status;
}

/* Check header and checksum of saved bytes; *payload then reads the payload. */
static eb_status open_saved(const void *buffer, size_t size, eb_model_header *header_out, eb_reader *payload,
                            eb_error *err)
{
    eb_model_header header;
    eb_status status = parse_header(buffer, size, &header, err);
    if (status != EB_OK)
        return status;
    *header_out = header;
    if (header.payload_size != size - HEADER_SIZE)
        return eb__fail(err, EB_ERR_FORMAT, "saved model: the header announces %llu payload bytes, %zu are present",
                        (unsigned long long)header.payload_size, size - HEADER_SIZE);
    const uint8_t *bytes = buffer;
    uint32_t actual = model_crc(header.format_version, bytes, size);
    if (actual != header.payload_crc32)
        return eb__fail(err, EB_ERR_FORMAT, "saved model: checksum mismatch (stored %08x, computed %08x); the data is corrupt",
                        (unsigned)header.payload_crc32, (unsigned)actual);
    payload->data = bytes + HEADER_SIZE;
    payload->size = size - HEADER_SIZE;
    payload->pos = 0;
    return EB_OK;
}

/* ---- files ------------------------------------------------------------------- */

static eb_status io_failure(eb_error *err, const char *what, const char *path)
{
    return eb__fail(err, EB_ERR_IO, "%s %s: %s", what, path, strerror(errno));
}

static bool write_all(int fd, const uint8_t *data, size_t size)
{
    while (size > 0) {
        ssize_t n = write(fd, data, size);
        if (n < 0 && errno == EINTR)
            continue;
        if (n == 0)
            errno = EIO; /* a regular file never accepts 0 bytes of a non-empty write; errno would be stale */
        if (n <= 0)
            return false;
        data += n;
        size -= (size_t)n;
    }
    return true;
}

/* fsync the directory holding path so the rename itself is durable. */
static void sync_parent_directory(const char *path, char *scratch, size_t scratch_size)
{
    const char *slash = strrchr(path, '/');
    if (slash == NULL) {
        snprintf(scratch, scratch_size, ".");
    } else {
        size_t length = (size_t)(slash - path);
        snprintf(scratch, scratch_size, "%.*s", (int)(length == 0 ? 1 : length), path);
    }
    int dir = open(scratch, O_RDONLY);
    if (dir >= 0) {
        fsync(dir);
        close(dir);
    }
}

/* Room for ".tmp-" and 16 hex digits after the path, plus the NUL. */
enum { TEMP_SUFFIX_SIZE = 5 + 16 + 1, TEMP_NAME_ATTEMPTS = 64 };

/*
 * Create a new, empty file named path + ".tmp-<16 hex digits>" in temp_path.
 * Unlike mkstemp (always mode 0600) it asks for 0666, so the saved model gets
 * the permissions the process's umask gives any new file. The name mixes the
 * process id, the clock and the buffer's address; O_EXCL makes a collision a
 * retry, never a shared file.
 */
static int create_temp_file(const char *path, size_t path_length, char *temp_path)
{
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    uint64_t token = ((uint64_t)getpid() << 32) ^ (uint64_t)now.tv_nsec ^ ((uint64_t)now.tv_sec << 20) ^
                     (uint64_t)(uintptr_t)temp_path;
    for (int attempt = 0; attempt < TEMP_NAME_ATTEMPTS; attempt++) {
        /* splitmix64's finaliser spreads the token over all digits; each retry takes the next value. */
        uint64_t z = (token += 0x9E3779B97F4A7C15ULL);
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
        z ^= z >> 31;
        memcpy(temp_path, path, path_length);
        snprintf(temp_path + path_length, TEMP_SUFFIX_SIZE, ".tmp-%016llx", (unsigned long long)z);
        int fd = open(temp_path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
        if (fd >= 0 || errno != EEXIST)
            return fd;
    }
    return -1; /* errno is EEXIST */
}

static eb_status save_file(const eb_finetuner *model, const char *path, eb_error *err)
{
    const eb_allocator *mem = &model->core.mem;
    if (path == NULL)
        return eb__fail(err, EB_ERR_NULL_POINTER, "path is NULL");
    /* Every refusal before the destination is touched. */
    eb_status status = model->ops->check_state(model, err);
    if (status != EB_OK)
        return status;
    size_t size = eb__finetuner_saved_size(model);
    size_t path_length = strlen(path);
    if (path_length == 0)
        return eb__fail(err, EB_ERR_IO, "path is empty");
    if (path_length > SIZE_MAX - TEMP_SUFFIX_SIZE)
        return eb__fail(err, EB_ERR_TOO_LARGE, "the path is too long");
    uint8_t *bytes = eb__calloc(mem, size, 1);
    char *temp_path = eb__calloc(mem, path_length + TEMP_SUFFIX_SIZE, 1);
    if (bytes == NULL || temp_path == NULL) {
        eb__free(mem, bytes);
        eb__free(mem, temp_path);
        return eb__fail(err, EB_ERR_NOMEM, "out of memory serialising the model (%zu bytes)", size);
    }
    write_model(model, bytes, size);
    int fd = create_temp_file(path, path_length, temp_path);
    if (fd < 0) {
        status = io_failure(err, "cannot create a temporary file next to", path);
    } else {
        bool ok = write_all(fd, bytes, size);
        if (!ok)
            status = io_failure(err, "cannot write", temp_path);
        else if (fsync(fd) != 0)
            status = io_failure(err, "cannot sync", temp_path);
        if (close(fd) != 0 && status == EB_OK)
            status = io_failure(err, "cannot close", temp_path);
        if (status == EB_OK && rename(temp_path, path) != 0)
            status = io_failure(err, "cannot rename the temporary file onto", path);
        if (status != EB_OK)
            unlink(temp_path);
        else
            sync_parent_directory(path, temp_path, path_length + TEMP_SUFFIX_SIZE);
    }
    eb__free(mem, bytes);
    eb__free(mem, temp_path);
    return status;
}

/* What a file that is not a regular file is, for the message that refuses it. */
static const char *file_type_name(mode_t mode)
{
    if (S_ISDIR(mode))
        return "a directory";
    if (S_ISFIFO(mode))
        return "a FIFO (named pipe)";
    if (S_ISCHR(mode))
        return "a character device";
    if (S_ISBLK(mode))
        return "a block device";
    if (S_ISSOCK(mode))
        return "a socket";
    return "not a regular file";
}

/*
 * Open path for reading and check that it is a regular file. O_NONBLOCK makes
 * open return at once on a FIFO with no writer (a blocking open waits for one
 * forever), and the type is read from the opened descriptor, so the file
 * checked is the file read even if path is replaced meanwhile. For a regular
 * file O_NONBLOCK changes nothing. On failure *fd is -1.
 */
static eb_status open_regular_file(const char *path, int *fd, struct stat *info, eb_error *err)
{
    *fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (*fd < 0)
        return io_failure(err, "cannot open", path);
    eb_status status = EB_OK;
    if (fstat(*fd, info) != 0)
        status = io_failure(err, "cannot stat", path);
    else if (!S_ISREG(info->st_mode))
        status = eb__fail(err, EB_ERR_IO, "%s is not a regular file: it is %s", path, file_type_name(info->st_mode));
    if (status != EB_OK) {
        close(*fd);
        *fd = -1;
    }
    return status;
}

/* Read up to size bytes at the descriptor's position; returns the count read (short only at end of file), or -1. */
static ssize_t read_up_to(int fd, uint8_t *data, size_t size)
{
    size_t done = 0;
    while (done < size) {
        ssize_t n = read(fd, data + done, size - done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -1;
        if (n == 0)
            break;
        done += (size_t)n;
    }
    return (ssize_t)done;
}

/*
 * Read exactly length bytes of the open file into data, and check that
 * nothing follows them: a file that grows or shrinks while it is read is
 * refused rather than read partly or without end.
 */
static eb_status read_exactly(int fd, const char *path, uint8_t *data, size_t length, eb_error *err)
{
    uint8_t probe;
    ssize_t done = read_up_to(fd, data, length);
    ssize_t extra = done == (ssize_t)length ? read_up_to(fd, &probe, 1) : 0;
    if (done < 0 || extra < 0)
        return io_failure(err, "cannot read", path);
    if ((size_t)done != length || extra != 0)
        return eb__fail(err, EB_ERR_IO, "%s changed size while being read", path);
    return EB_OK;
}

eb_status eb__read_file(const char *path, const eb_allocator *mem, void **bytes, size_t *size, eb_error *err)
{
    *bytes = NULL;
    *size = 0;
    if (path == NULL)
        return eb__fail(err, EB_ERR_NULL_POINTER, "path is NULL");
    int fd;
    struct stat info;
    eb_status status = open_regular_file(path, &fd, &info, err);
    if (status != EB_OK)
        return status;
    if ((uintmax_t)info.st_size > SIZE_MAX) {
        close(fd);
        return eb__fail(err, EB_ERR_TOO_LARGE, "%s is too large to load", path);
    }
    size_t length = (size_t)info.st_size;
    uint8_t *data = eb__calloc(mem, length == 0 ? 1 : length, 1);
    if (data == NULL) {
        close(fd);
        return eb__fail(err, EB_ERR_NOMEM, "out of memory reading %zu bytes of %s", length, path);
    }
    status = read_exactly(fd, path, data, length, err);
    close(fd);
    if (status != EB_OK) {
        eb__free(mem, data);
        return status;
    }
    *bytes = data;
    *size = length;
    return EB_OK;
}

/*
 * A model file's bytes, read no further than its header announces: the file
 * must be exactly the header plus the payload length stored in it, which is
 * checked against the size of the opened file before anything is allocated.
 * So the header bounds what is read: a file of something else is refused
 * after its first 28 bytes, whatever its size, and a header that disagrees
 * with the file's size is refused without reading the rest. Format errors
 * carry no path (the caller adds it).
 */
static eb_status read_model_file(const char *path, const eb_allocator *mem, void **bytes, size_t *size,
                                 eb_error *err)
{
    *bytes = NULL;
    *size = 0;
    if (path == NULL)
        return eb__fail(err, EB_ERR_NULL_POINTER, "path is NULL");
    int fd;
    struct stat info;
    eb_status status = open_regular_file(path, &fd, &info, err);
    if (status != EB_OK)
        return status;
    uint8_t header_bytes[HEADER_SIZE];
    eb_model_header header;
    ssize_t done = read_up_to(fd, header_bytes, HEADER_SIZE);
    if (done < 0)
        status = io_failure(err, "cannot read", path);
    else
        status = parse_header(header_bytes, (size_t)done, &header, err);
    if (status == EB_OK && (uintmax_t)info.st_size - HEADER_SIZE != header.payload_size)
        status = eb__fail(err, EB_ERR_FORMAT,
                          "saved model: the header announces %llu payload bytes, the file holds %jd after the header",
                          (unsigned long long)header.payload_size, (intmax_t)info.st_size - HEADER_SIZE);
    if (status == EB_OK && header.payload_size > SIZE_MAX - HEADER_SIZE)
        status = eb__fail(err, EB_ERR_TOO_LARGE, "%s is too large to load", path);
    uint8_t *data = NULL;
    size_t length = status == EB_OK ? (size_t)header.payload_size + HEADER_SIZE : 0;
    if (status == EB_OK && (data = eb__calloc(mem, length, 1)) == NULL)
        status = eb__fail(err, EB_ERR_NOMEM, "out of memory reading %zu bytes of %s", length, path);
    if (status == EB_OK) {
        memcpy(data, header_bytes, HEADER_SIZE);
        status = read_exactly(fd, path, data + HEADER_SIZE, length - HEADER_SIZE, err);
    }
    close(fd);
    if (status != EB_OK) {
        eb__free(mem, data);
        return status;
    }
    *bytes = data;
    *size = length;
    return EB_OK;
}

eb_status eb_model_read_file_header(const char *path, eb_model_header *out, eb_error *err)
{
    eb__error_clear(err);
    if (out != NULL)
        memset(out, 0, sizeof *out);
    if (path == NULL || out == NULL)
        return eb__fail(err, EB_ERR_NULL_POINTER, "%s is NULL", path == NULL ? "path" : "out");
    int fd;
    struct stat info;
    eb_status status = open_regular_file(path, &fd, &info, err);
    if (status != EB_OK)
        return status;
    uint8_t bytes[HEADER_SIZE];
    ssize_t done = read_up_to(fd, bytes, sizeof bytes);
    if (done < 0)
        status = io_failure(err, "cannot read", path);
    close(fd);
    if (status != EB_OK)
        return status;
    eb_model_header header;
    status = parse_header(bytes, (size_t)done, &header, err);
    if (status == EB_OK)
        *out = header;
    return status;
}

/* ---- finetuners ---------------------------------------------------------------- */

static eb_status read_metadata(eb_reader *r, eb_finetuner *model, eb_error *err)
{
    size_t size;
    if (!eb__read_size(r, &size))
        return eb__fail(err, EB_ERR_FORMAT, "saved model: truncated metadata length");
    if (size > EB_MAX_METADATA_BYTES || size > r->size - r->pos)
        return eb__fail(err, EB_ERR_FORMAT, "saved model: %zu metadata bytes %s", size,
                        size > EB_MAX_METADATA_BYTES ? "exceed the limit" : "exceed the data");
    if (size == 0)
        return EB_OK;
    model->metadata = eb__calloc(&model->core.mem, size, 1);
    if (model->metadata == NULL)
        return eb__fail(err, EB_ERR_NOMEM, "out of memory allocating %zu metadata bytes", size);
    memcpy(model->metadata, r->data + r->pos, size);
    r->pos += size;
    model->metadata_size = size;
    return EB_OK;
}

eb_status eb__finetuner_load_from_buffer(const void *buffer, size_t size, const eb_allocator *mem,
                                         eb_finetuner **out, eb_error *err)
{
    *out = NULL;
    eb_reader r;
    eb_model_header header;
    eb_status status = open_saved(buffer, size, &header, &r, err);
    if (status != EB_OK)
        return status;
    const eb_kind_ops *ops = eb__kind_ops(header.kind);
    eb_finetuner_params params = eb_finetuner_default_params(header.kind);
    status = header.format_version == 1 ? ops->read_v1_params(&r, &params, err) : read_params(&r, &params, err);
    if (status != EB_OK)
        return status;
    eb_error detail;
    if (eb_finetuner_check_params(&params, &detail) != EB_OK)
        return eb__fail(err, EB_ERR_FORMAT, "saved model: invalid params: %s", detail.message);
    eb_finetuner *model;
    status = eb__finetuner_new(&params, mem, &model, err);
    if (status != EB_OK)
        return status;
    status = eb__read_fit_state(&r, &model->core.state, &model->core.mem, err);
    if (status == EB_OK)
        status = ops->check_state(model, err);
    if (status == EB_OK && header.format_version >= 2)
        status = eb__labels_read(&r, model->core.state.n_classes, &model->core.mem, &model->labels, err);
    if (status == EB_OK && header.format_version >= 2)
        status = read_metadata(&r, model, err);
    if (status == EB_OK && r.pos != r.size)
        status = eb__fail(err, EB_ERR_FORMAT, "saved model: %zu unexpected bytes after the model", r.size - r.pos);
    if (status != EB_OK) {
        eb_finetuner_free(model);
        return status;
    }
    *out = model;
    return EB_OK;
}

eb_status eb_finetuner_save(const eb_finetuner *model, const char *path, eb_error *err)
{
    eb__error_clear(err);
    eb_status status = eb__check_handle(model, err);
    if (status != EB_OK)
        return status;
    return save_file(model, path, err);
}

eb_status eb_finetuner_load(const char *path, const eb_allocator *mem, eb_finetuner **out, eb_error *err)
{
    eb__error_clear(err);
    if (out == NULL)
        return eb__fail(err, EB_ERR_NULL_POINTER, "out is NULL");
    *out = NULL;
    if (mem == NULL)
        mem = eb_default_allocator();
    if (mem->calloc == NULL || mem->free == NULL)
        return eb__fail(err, EB_ERR_NULL_POINTER, "the allocator's calloc or free is NULL");
    void *bytes;
    size_t size;
    eb_error detail;
    eb_status status = read_model_file(path, mem, &bytes, &size, &detail);
    if (status == EB_OK) {
        status = eb_finetuner_load_from_buffer(bytes, size, mem, out, &detail);
        eb__free(mem, bytes);
    }
    if (status == EB_OK)
        return EB_OK;
    /* A format error says what is wrong with the bytes; in front of it goes which file they came from. */
    if (status == EB_ERR_FORMAT)
        return eb__fail(err, status, "%s: %s", path, detail.message);
    return eb__fail(err, status, "%s", detail.message);
}
