/*
 * Hooks into training internals for the test suite only. They are not part
 * of the public API, not installed, and hidden from the shared library; the
 * tests link the static library to reach them.
 */
#ifndef EMBETTER_TESTING_H
#define EMBETTER_TESTING_H

#include "embetter/embetter.h"

/*
 * Replace the model's state with freshly initialised weights for n_features
 * inputs and n_classes classes, exactly as the first epoch of fit would start,
 * and mark it fitted.
 */
eb_status eb__feedforward_init_weights(eb_feedforward *model, size_t n_features, size_t n_classes);

/*
 * The weight vector, writable, with *count entries. Layout: W1 (d x h,
 * row-major, so W1[i][j] = w[i * h + j] links input i to hidden unit j), b1 (h),
 * W2 (h x k), b2 (k). Hidden = sigmoid(x W1 + b1); scores = hidden W2 + b2.
 */
float *eb__feedforward_weights(eb_feedforward *model, size_t *count);

/*
 * Analytic gradient of the mean softmax cross-entropy over all rows of X at
 * the current weights (no update). grad has *count entries, same layout.
 */
eb_status eb__feedforward_gradient(eb_feedforward *model, eb_matrix X, const int32_t *y, float *grad,
                                   double *mean_loss);

/* Like eb__feedforward_init_weights, for the contrastive model (n_classes only recorded). */
eb_status eb__contrastive_init_weights(eb_contrastive *model, size_t n_features, size_t n_classes);

/*
 * The weight vector: W (d x h, row-major), then b (h). Embedding = x W + b.
 */
float *eb__contrastive_weights(eb_contrastive *model, size_t *count);

/*
 * Analytic gradient of the mean over the given pairs of (cos(e_left, e_right)
 * - target)^2, with e = x W + b and each norm clamped below at 1e-8 as
 * PyTorch's cosine_similarity does. left/right index rows of X.
 */
eb_status eb__contrastive_gradient(eb_contrastive *model, eb_matrix X, const uint32_t *left,
                                   const uint32_t *right, const float *target, size_t n_pairs, float *grad,
                                   double *mean_loss);

#endif
