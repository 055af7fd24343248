/* The settings of a sentence-transformers BERT directory, read with json-c and checked field by field. */
/* open flags (O_CLOEXEC), mmap and fstat are POSIX.1-2008. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <json-c/json.h>

#include "bert.h"

/* Config files are flat or nearly so; deeper nesting is refused by the tokenizer rather than recursed into. */
enum { CONFIG_MAX_DEPTH = 16 };

eb_status eb__parse_json_value(const char *data, size_t size, const char *source, int depth, json_object **out,
                               eb_error *err)
{
    *out = NULL;
    json_tokener *tok = json_tokener_new_ex(depth);
    if (tok == NULL)
        return eb__fail(err, EB_ERR_NOMEM, "%s: out of memory parsing JSON", source);
    json_object *root = json_tokener_parse_ex(tok, data, (int)size);
    enum json_tokener_error jerr = json_tokener_get_error(tok);
    size_t end = json_tokener_get_parse_end(tok);
    json_tokener_free(tok);
    if (root == NULL || jerr != json_tokener_success) {
        json_object_put(root);
        return eb__fail(err, EB_ERR_FORMAT, "%s: not valid JSON (%s, near byte %zu)", source,
                        jerr == json_tokener_continue || jerr == json_tokener_success ? "it ends early"
                                                                                      : json_tokener_error_desc(jerr),
                        end);
    }
    for (size_t i = end; i < size; i++) {
        char c = data[i];
        if (c != ' ' && c != '\t' && c != '\n' && c != '\r') {
            json_object_put(root);
            return eb__fail(err, EB_ERR_FORMAT, "%s: bytes after the JSON value (at byte %zu)", source, i);
        }
    }
    *out = root;
    return EB_OK;
}

/* Parse a whole buffer as one JSON value; trailing non-space bytes are an error. */
static eb_status parse_json(const char *json, size_t length, const char *source, json_object **out, eb_error *err)
{
    *out = NULL;
    if (json == NULL)
        return eb__fail(err, EB_ERR_NULL_POINTER, "%s: no bytes", source);
    if (length > EB_CONFIG_MAX_BYTES)
        return eb__fail(err, EB_ERR_FORMAT, "%s: %zu bytes is too large for a config file", source, length);
    return eb__parse_json_value(json, length, source, CONFIG_MAX_DEPTH, out, err);
}

static eb_status require_object(json_object *root, const char *source, eb_error *err)
{
    if (!json_object_is_type(root, json_type_object))
        return eb__fail(err, EB_ERR_FORMAT, "%s: not a JSON object", source);
    return EB_OK;
}

/* An integer field in [1, max]. */
static eb_status get_count(json_object *root, const char *source, const char *key, size_t max, size_t *out,
                           eb_error *err)
{
    json_object *value;
    if (!json_object_object_get_ex(root, key, &value))
        return eb__fail(err, EB_ERR_FORMAT, "%s: %s is missing", source, key);
    if (!json_object_is_type(value, json_type_int))
        return eb__fail(err, EB_ERR_FORMAT, "%s: %s is not an integer", source, key);
    errno = 0;
    int64_t v = json_object_get_int64(value);
    if (errno != 0 || v < 1 || (uint64_t)v > max)
        return eb__fail(err, EB_ERR_FORMAT, "%s: %s is %lld, outside 1 .. %zu", source, key, (long long)v, max);
    *out = (size_t)v;
    return EB_OK;
}

/* A string field, or NULL when absent; a present non-string is an error. */
static eb_status get_string(json_object *root, const char *source, const char *key, const char **out, eb_error *err)
{
    json_object *value;
    *out = NULL;
    if (!json_object_object_get_ex(root, key, &value) || json_object_is_type(value, json_type_null))
        return EB_OK;
    if (!json_object_is_type(value, json_type_string))
        return eb__fail(err, EB_ERR_FORMAT, "%s: %s is not a string", source, key);
    *out = json_object_get_string(value);
    return EB_OK;
}

/* A boolean field, false when absent. */
static eb_status get_flag(json_object *root, const char *source, const char *key, bool *out, eb_error *err)
{
    json_object *value;
    *out = false;
    if (!json_object_object_get_ex(root, key, &value))
        return EB_OK;
    if (!json_object_is_type(value, json_type_boolean))
        return eb__fail(err, EB_ERR_FORMAT, "%s: %s is not true or false", source, key);
    *out = json_object_get_boolean(value);
    return EB_OK;
}

static eb_status bert_config_from(json_object *root, const char *source, eb_bert_config *cfg, eb_error *err)
{
    eb_status status = require_object(root, source, err);
    if (status != EB_OK)
        return status;
    const char *text;
    if ((status = get_string(root, source, "model_type", &text, err)) != EB_OK)
        return status;
    if (text == NULL)
        return eb__fail(err, EB_ERR_FORMAT, "%s: model_type is missing", source);
    if (strcmp(text, "bert") != 0)
        return eb__fail(err, EB_ERR_FORMAT, "%s: model_type '%.40s' is not supported (only 'bert')", source, text);
    if ((status = get_string(root, source, "hidden_act", &text, err)) != EB_OK)
        return status;
    if (text == NULL)
        return eb__fail(err, EB_ERR_FORMAT, "%s: hidden_act is missing", source);
    if (strcmp(text, "gelu") != 0)
        return eb__fail(err, EB_ERR_FORMAT, "%s: hidden_act '%.40s' is not supported (only 'gelu', the erf form)",
                        source, text);
    if ((status = get_string(root, source, "position_embedding_type", &text, err)) != EB_OK)
        return status;
    if (text != NULL && strcmp(text, "absolute") != 0)
        return eb__fail(err, EB_ERR_FORMAT, "%s: position_embedding_type '%.40s' is not supported (only 'absolute')",
                        source, text);
    bool flag;
    if ((status = get_flag(root, source, "is_decoder", &flag, err)) != EB_OK)
        return status;
    if (flag)
        return eb__fail(err, EB_ERR_FORMAT, "%s: is_decoder is true; only encoder models are supported", source);

    eb_bert_config c = {0};
    if ((status = get_count(root, source, "hidden_size", EB_BERT_MAX_HIDDEN, &c.hidden_size, err)) != EB_OK ||
        (status = get_count(root, source, "num_hidden_layers", EB_BERT_MAX_LAYERS, &c.num_layers, err)) != EB_OK ||
        (status = get_count(root, source, "num_attention_heads", EB_BERT_MAX_HIDDEN, &c.num_heads, err)) != EB_OK ||
        (status = get_count(root, source, "intermediate_size", EB_BERT_MAX_INTERMEDIATE, &c.intermediate_size,
                            err)) != EB_OK ||
        (status = get_count(root, source, "vocab_size", EB_BERT_MAX_VOCAB, &c.vocab_size, err)) != EB_OK ||
        (status = get_count(root, source, "max_position_embeddings", EB_BERT_MAX_POSITIONS, &c.max_positions,
                            err)) != EB_OK ||
        (status = get_count(root, source, "type_vocab_size", EB_BERT_MAX_TYPE_VOCAB, &c.type_vocab_size, err)) !=
            EB_OK)
        return status;
    if (c.hidden_size % c.num_heads != 0)
        return eb__fail(err, EB_ERR_FORMAT, "%s: hidden_size %zu is not a multiple of num_attention_heads %zu",
                        source, c.hidden_size, c.num_heads);
    json_object *eps;
    if (!json_object_object_get_ex(root, "layer_norm_eps", &eps))
        return eb__fail(err, EB_ERR_FORMAT, "%s: layer_norm_eps is missing", source);
    if (!json_object_is_type(eps, json_type_double) && !json_object_is_type(eps, json_type_int))
        return eb__fail(err, EB_ERR_FORMAT, "%s: layer_norm_eps is not a number", source);
    double e = json_object_get_double(eps);
    if (!(e > 0 && e < 1) || (float)e <= 0)
        return eb__fail(err, EB_ERR_FORMAT, "%s: layer_norm_eps %g is outside (0, 1)", source, e);
    c.layer_norm_eps = (float)e;
    *cfg = c;
    return EB_OK;
}

eb_status eb__bert_config_parse(const char *json, size_t length, const char *source, eb_bert_config *cfg,
                                eb_error *err)
{
    json_object *root;
    eb_status status = parse_json(json, length, source, &root, err);
    if (status != EB_OK)
        return status;
    status = bert_config_from(root, source, cfg, err);
    json_object_put(root);
    return status;
}

static eb_status pooling_from(json_object *root, const char *source, size_t hidden_size, eb_bert_pooling *pooling,
                              eb_error *err)
{
    eb_status status = require_object(root, source, err);
    if (status != EB_OK)
        return status;
    static const char *const width_keys[] = {"word_embedding_dimension", "embedding_dimension"};
    for (size_t i = 0; i < 2; i++) {
        json_object *value;
        if (json_object_object_get_ex(root, width_keys[i], &value)) {
            size_t width;
            if ((status = get_count(root, source, width_keys[i], EB_BERT_MAX_HIDDEN, &width, err)) != EB_OK)
                return status;
            if (width != hidden_size)
                return eb__fail(err, EB_ERR_FORMAT, "%s: %s is %zu but the model's hidden_size is %zu", source,
                                width_keys[i], width, hidden_size);
        }
    }
    const char *mode;
    if ((status = get_string(root, source, "pooling_mode", &mode, err)) != EB_OK)
        return status;
    if (mode != NULL) {
        if (strcmp(mode, "mean") == 0)
            *pooling = EB_POOL_MEAN;
        else if (strcmp(mode, "cls") == 0)
            *pooling = EB_POOL_CLS;
        else if (strcmp(mode, "max") == 0)
            *pooling = EB_POOL_MAX;
        else
            return eb__fail(err, EB_ERR_FORMAT, "%s: pooling_mode '%.40s' is not supported (mean, cls or max)",
                            source, mode);
        return EB_OK;
    }
    static const struct {
        const char *key;
        eb_bert_pooling pooling;
    } modes[] = {
        {"pooling_mode_mean_tokens", EB_POOL_MEAN},
        {"pooling_mode_cls_token", EB_POOL_CLS},
        {"pooling_mode_max_tokens", EB_POOL_MAX},
        {"pooling_mode_mean_sqrt_len_tokens", 0},
        {"pooling_mode_weightedmean_tokens", 0},
        {"pooling_mode_lasttoken", 0},
    };
    size_t chosen = 0;
    for (size_t i = 0; i < sizeof modes / sizeof modes[0]; i++) {
        bool on;
        if ((status = get_flag(root, source, modes[i].key, &on, err)) != EB_OK)
            return status;
        if (!on)
            continue;
        if (modes[i].pooling == 0)
            return eb__fail(err, EB_ERR_FORMAT, "%s: %s is not supported (mean, cls or max pooling)", source,
                            modes[i].key);
        *pooling = modes[i].pooling;
        chosen++;
    }
    if (chosen != 1)
        return eb__fail(err, EB_ERR_FORMAT,
                        "%s: exactly one pooling mode must be set (pooling_mode_mean_tokens, _cls_token or "
                        "_max_tokens), %zu are",
                        source, chosen);
    return EB_OK;
}

eb_status eb__pooling_config_parse(const char *json, size_t length, const char *source, size_t hidden_size,
                                   eb_bert_pooling *pooling, eb_error *err)
{
    json_object *root;
    eb_status status = parse_json(json, length, source, &root, err);
    if (status != EB_OK)
        return status;
    status = pooling_from(root, source, hidden_size, pooling, err);
    json_object_put(root);
    return status;
}

static eb_status sentence_bert_from(json_object *root, const char *source, size_t *max_seq_length, bool *lower,
                                    eb_error *err)
{
    eb_status status = require_object(root, source, err);
    if (status != EB_OK)
        return status;
    *max_seq_length = 0;
    json_object *value;
    if (json_object_object_get_ex(root, "max_seq_length", &value) && !json_object_is_type(value, json_type_null)) {
        if ((status = get_count(root, source, "max_seq_length", EB_BERT_MAX_POSITIONS, max_seq_length, err)) !=
            EB_OK)
            return status;
        if (*max_seq_length < 2)
            return eb__fail(err, EB_ERR_FORMAT, "%s: max_seq_length %zu leaves no room for [CLS] and [SEP]", source,
                            *max_seq_length);
    }
    return get_flag(root, source, "do_lower_case", lower, err);
}

eb_status eb__sentence_bert_config_parse(const char *json, size_t length, const char *source, size_t *max_seq_length,
                                         bool *do_lower_case, eb_error *err)
{
    json_object *root;
    eb_status status = parse_json(json, length, source, &root, err);
    if (status != EB_OK)
        return status;
    status = sentence_bert_from(root, source, max_seq_length, do_lower_case, err);
    json_object_put(root);
    return status;
}

/* Whether a module type names class `name` ("sentence_transformers.models.Pooling" and newer dotted paths alike). */
static bool module_is(const char *type, const char *name)
{
    size_t type_length = strlen(type), name_length = strlen(name);
    return type_length > name_length && type[type_length - name_length - 1] == '.' &&
           strcmp(type + type_length - name_length, name) == 0 && strncmp(type, "sentence_transformers.", 22) == 0;
}

/* A module path: relative, no "..", copied into out. */
static eb_status module_path(json_object *module, const char *source, size_t index, char *out, size_t capacity,
                             eb_error *err)
{
    json_object *value;
    const char *path = "";
    if (json_object_object_get_ex(module, "path", &value)) {
        if (!json_object_is_type(value, json_type_string))
            return eb__fail(err, EB_ERR_FORMAT, "%s: module %zu: path is not a string", source, index);
        path = json_object_get_string(value);
    }
    size_t length = strlen(path);
    if (path[0] == '/' || strstr(path, "..") != NULL || length >= capacity)
        return eb__fail(err, EB_ERR_FORMAT, "%s: module %zu: path '%.60s' must be a short path inside the model",
                        source, index, path);
    memcpy(out, path, length + 1);
    return EB_OK;
}

static eb_status modules_from(json_object *root, const char *source, char *transformer_path, char *pooling_path,
                              size_t capacity, bool *normalize, eb_error *err)
{
    if (!json_object_is_type(root, json_type_array))
        return eb__fail(err, EB_ERR_FORMAT, "%s: not a JSON array of modules", source);
    size_t count = json_object_array_length(root);
    *normalize = false;
    if (count < 2 || count > 3)
        return eb__fail(err, EB_ERR_FORMAT,
                        "%s: %zu modules; supported are Transformer, Pooling and optionally Normalize", source,
                        count);
    static const char *const expected[] = {"Transformer", "Pooling", "Normalize"};
    for (size_t i = 0; i < count; i++) {
        json_object *module = json_object_array_get_idx(root, i);
        if (!json_object_is_type(module, json_type_object))
            return eb__fail(err, EB_ERR_FORMAT, "%s: module %zu is not a JSON object", source, i);
        const char *type;
        eb_status status = get_string(module, source, "type", &type, err);
        if (status != EB_OK)
            return status;
        if (type == NULL)
            return eb__fail(err, EB_ERR_FORMAT, "%s: module %zu has no type", source, i);
        if (!module_is(type, expected[i]))
            return eb__fail(err, EB_ERR_FORMAT,
                            "%s: module %zu is '%.80s'; supported are Transformer, Pooling and optionally "
                            "Normalize, in that order",
                            source, i, type);
        if (i == 0)
            status = module_path(module, source, i, transformer_path, capacity, err);
        else if (i == 1)
            status = module_path(module, source, i, pooling_path, capacity, err);
        else
            *normalize = true;
        if (status != EB_OK)
            return status;
    }
    return EB_OK;
}

eb_status eb__modules_parse(const char *json, size_t length, const char *source, char *transformer_path,
                            char *pooling_path, size_t capacity, bool *normalize, eb_error *err)
{
    json_object *root;
    eb_status status = parse_json(json, length, source, &root, err);
    if (status != EB_OK)
        return status;
    status = modules_from(root, source, transformer_path, pooling_path, capacity, normalize, err);
    json_object_put(root);
    return status;
}

/* Paths the loader builds stay below this; longer ones are refused rather than cut. */
enum { PATH_CAPACITY = 4096 };

static eb_status join(char *out, const char *dir, const char *sub, const char *name, eb_error *err)
{
    int n = snprintf(out, PATH_CAPACITY, "%s%s%s%s%s", dir, sub[0] ? "/" : "", sub, name[0] ? "/" : "", name);
    if (n < 0 || n >= PATH_CAPACITY)
        return eb__fail(err, EB_ERR_INVALID_PARAM, "the path %s/%s/%s is too long", dir, sub, name);
    return EB_OK;
}

/* A small config file, opened without blocking so a FIFO is refused rather than waited on. */
eb_status eb__read_small_file(const char *path, size_t limit, const eb_allocator *mem, char **bytes, size_t *size,
                              eb_error *err)
{
    *bytes = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0)
        return eb__fail(err, EB_ERR_IO, "cannot open %s: %s", path, strerror(errno));
    struct stat info;
    if (fstat(fd, &info) != 0 || !S_ISREG(info.st_mode)) {
        close(fd);
        return eb__fail(err, EB_ERR_IO, "%s is not a regular file", path);
    }
    if ((unsigned long long)info.st_size > (unsigned long long)limit) {
        close(fd);
        return eb__fail(err, EB_ERR_FORMAT, "%s: %lld bytes is too large (at most %zu)", path,
                        (long long)info.st_size, limit);
    }
    size_t length = (size_t)info.st_size;
    char *data = eb__calloc(mem, length + 1, 1);
    if (data == NULL) {
        close(fd);
        return eb__fail(err, EB_ERR_NOMEM, "out of memory reading %s", path);
    }
    size_t done = 0;
    while (done < length) {
        ssize_t n = read(fd, data + done, length - done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        done += (size_t)n;
    }
    close(fd);
    if (done != length) {
        eb__free(mem, data);
        return eb__fail(err, EB_ERR_IO, "%s changed size while being read", path);
    }
    *bytes = data;
    *size = length;
    return EB_OK;
}

static char *copy_string(const char *s, const eb_allocator *mem)
{
    size_t length = strlen(s);
    char *out = eb__calloc(mem, length + 1, 1);
    if (out != NULL)
        memcpy(out, s, length);
    return out;
}

void eb__sentence_config_release(eb_sentence_config *cfg, const eb_allocator *mem)
{
    eb__free(mem, cfg->transformer_dir);
    eb__free(mem, cfg->pooling_dir);
    cfg->transformer_dir = NULL;
    cfg->pooling_dir = NULL;
}

eb_status eb__sentence_config_load(const char *dir, const eb_allocator *mem, eb_sentence_config *out, eb_error *err)
{
    if (dir == NULL || out == NULL)
        return eb__fail(err, EB_ERR_NULL_POINTER, "%s is NULL", dir == NULL ? "dir" : "out");
    if (mem == NULL)
        mem = eb_default_allocator();
    eb_sentence_config cfg = {0};
    char transformer_path[256], pooling_path[256];
    struct paths {
        char file[PATH_CAPACITY];
        char transformer[PATH_CAPACITY];
        char pooling[PATH_CAPACITY];
    } *paths = eb__calloc(mem, 1, sizeof *paths);
    if (paths == NULL)
        return eb__fail(err, EB_ERR_NOMEM, "out of memory reading %s", dir);
    char *path = paths->file, *transformer_dir = paths->transformer, *pooling_dir = paths->pooling;
    char *bytes = NULL;
    size_t size;
    eb_status status = join(path, dir, "", "modules.json", err);
    if (status == EB_OK)
        status = eb__read_small_file(path, EB_CONFIG_MAX_BYTES, mem, &bytes, &size, err);
    if (status == EB_OK)
        status = eb__modules_parse(bytes, size, path, transformer_path, pooling_path, sizeof transformer_path,
                                   &cfg.normalize, err);
    eb__free(mem, bytes);
    bytes = NULL;
    if (status == EB_OK)
        status = join(transformer_dir, dir, transformer_path, "", err);
    if (status == EB_OK)
        status = join(pooling_dir, dir, pooling_path, "", err);

    if (status == EB_OK)
        status = join(path, transformer_dir, "", "config.json", err);
    if (status == EB_OK)
        status = eb__read_small_file(path, EB_CONFIG_MAX_BYTES, mem, &bytes, &size, err);
    if (status == EB_OK)
        status = eb__bert_config_parse(bytes, size, path, &cfg.bert, err);
    eb__free(mem, bytes);
    bytes = NULL;

    if (status == EB_OK)
        status = join(path, transformer_dir, "", "sentence_bert_config.json", err);
    if (status == EB_OK)
        status = eb__read_small_file(path, EB_CONFIG_MAX_BYTES, mem, &bytes, &size, err);
    if (status == EB_OK)
        status = eb__sentence_bert_config_parse(bytes, size, path, &cfg.max_seq_length, &cfg.do_lower_case, err);
    eb__free(mem, bytes);
    bytes = NULL;
    if (status == EB_OK) {
        if (cfg.max_seq_length == 0)
            cfg.max_seq_length = cfg.bert.max_positions;
        else if (cfg.max_seq_length > cfg.bert.max_positions)
            status = eb__fail(err, EB_ERR_FORMAT, "%s: max_seq_length %zu exceeds max_position_embeddings %zu",
                              path, cfg.max_seq_length, cfg.bert.max_positions);
    }

    if (status == EB_OK)
        status = join(path, pooling_dir, "", "config.json", err);
    if (status == EB_OK)
        status = eb__read_small_file(path, EB_CONFIG_MAX_BYTES, mem, &bytes, &size, err);
    if (status == EB_OK)
        status = eb__pooling_config_parse(bytes, size, path, cfg.bert.hidden_size, &cfg.pooling, err);
    eb__free(mem, bytes);

    if (status == EB_OK) {
        cfg.transformer_dir = copy_string(transformer_dir, mem);
        cfg.pooling_dir = copy_string(pooling_dir, mem);
        if (cfg.transformer_dir == NULL || cfg.pooling_dir == NULL) {
            eb__sentence_config_release(&cfg, mem);
            status = eb__fail(err, EB_ERR_NOMEM, "out of memory reading %s", dir);
        }
    }
    eb__free(mem, paths);
    if (status != EB_OK)
        return status;
    *out = cfg;
    return EB_OK;
}
