/* Status names, error messages and the version. */
#include <stdarg.h>
#include <stdio.h>

#include "internal.h"

const char *eb_status_string(eb_status status)
{
    switch (status) {
    case EB_OK: return "EB_OK";
    case EB_ERR_NULL_POINTER: return "EB_ERR_NULL_POINTER";
    case EB_ERR_INVALID_PARAM: return "EB_ERR_INVALID_PARAM";
    case EB_ERR_EMPTY_INPUT: return "EB_ERR_EMPTY_INPUT";
    case EB_ERR_SHAPE_MISMATCH: return "EB_ERR_SHAPE_MISMATCH";
    case EB_ERR_NONFINITE: return "EB_ERR_NONFINITE";
    case EB_ERR_LABEL_OUT_OF_RANGE: return "EB_ERR_LABEL_OUT_OF_RANGE";
    case EB_ERR_TOO_FEW_CLASSES: return "EB_ERR_TOO_FEW_CLASSES";
    case EB_ERR_NOT_FITTED: return "EB_ERR_NOT_FITTED";
    case EB_ERR_NOMEM: return "EB_ERR_NOMEM";
    case EB_ERR_TOO_LARGE: return "EB_ERR_TOO_LARGE";
    case EB_ERR_IO: return "EB_ERR_IO";
    case EB_ERR_FORMAT: return "EB_ERR_FORMAT";
    case EB_ERR_INVALID_UTF8: return "EB_ERR_INVALID_UTF8";
    case EB_ERR_WRONG_INPUT_KIND: return "EB_ERR_WRONG_INPUT_KIND";
    case EB_ERR_BUFFER_TOO_SMALL: return "EB_ERR_BUFFER_TOO_SMALL";
    case EB_ERR_WRONG_KIND: return "EB_ERR_WRONG_KIND";
    case EB_ERR_INVALID_HANDLE: return "EB_ERR_INVALID_HANDLE";
    }
    return "EB_ERR_UNKNOWN";
}

const char *eb_version(void)
{
    return EB_VERSION_STRING;
}

eb_status eb__fail(eb_error *err, eb_status status, const char *fmt, ...)
{
    if (err != NULL) {
        va_list args;
        va_start(args, fmt);
        err->status = status;
        vsnprintf(err->message, sizeof err->message, fmt, args);
        va_end(args);
    }
    return status;
}

void eb__error_clear(eb_error *err)
{
    if (err != NULL) {
        err->status = EB_OK;
        err->message[0] = '\0';
    }
}
