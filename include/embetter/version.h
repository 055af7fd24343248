/* libembetter version. CMake reads the three numbers below, so they are the one source of truth. */
#ifndef EMBETTER_VERSION_H
#define EMBETTER_VERSION_H

#define EB_VERSION_MAJOR 0
#define EB_VERSION_MINOR 1
#define EB_VERSION_PATCH 0

/** The version as a string literal, e.g. "0.1.0". */
#define EB_VERSION_STRING "0.1.0"

/** The version as one comparable number: major * 10000 + minor * 100 + patch. */
#define EB_VERSION_NUMBER (EB_VERSION_MAJOR * 10000 + EB_VERSION_MINOR * 100 + EB_VERSION_PATCH)

#endif
