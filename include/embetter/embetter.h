/*
 * libembetter: fine-tune embeddings toward a labelling task.
 *
 * The whole public API, in four headers this one includes:
 *   - embetter/common.h: status codes, error details, version, the
 *     pluggable allocator and the float32 matrix views every call takes;
 *   - embetter/finetune.h: eb_finetuner, one handle and one set of calls for
 *     the three finetuners (feed-forward, contrastive, pair learner), with
 *     saving and loading of self-contained model files;
 *   - embetter/encoder.h: eb_encoder, text and images to vectors;
 *   - embetter/blas.h: which BLAS runs the products, for benchmarks and
 *     bug reports.
 * Each can be included alone; none includes this one.
 */
#ifndef EMBETTER_EMBETTER_H
#define EMBETTER_EMBETTER_H

#include "embetter/common.h"
#include "embetter/finetune.h"
#include "embetter/encoder.h"
#include "embetter/blas.h"

#endif /* EMBETTER_EMBETTER_H */
