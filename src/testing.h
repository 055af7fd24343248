/*
 * Hooks into training internals for the test suite only. They are not part
 * of the public API, not installed, and hidden from the shared library; the
 * tests link the static library to reach them.
 */
#ifndef EMBETTER_TESTING_H
#define EMBETTER_TESTING_H

#include "embetter/embetter.h"

/*
 * Replace the finetuner's state with freshly initialised weights for
 * n_features inputs and n_classes classes (0 for the pair learner), exactly
 * as the first epoch of fit would start, and mark it fitted.
 */
eb_status eb__finetuner_init_weights(eb_finetuner *model, size_t n_features, size_t n_classes);

/*
 * The weight vector, writable, with *count entries. Layouts:
 *   feed-forward: W1 (d x h, row-major, so W1[i][j] = w[i * h + j] links
 *     input i to hidden unit j), b1 (h), W2 (h x k), b2 (k).
 *     Hidden = sigmoid(x W1 + b1); scores = hidden W2 + b2.
 *   contrastive, and the pair learner with EB_PAIR_LINEAR: W (d x h), b (h);
 *     embedding = x W + b.
 *   pair learner with EB_PAIR_LINEAR_RELU_LINEAR: W1 (d x h), b1 (h),
 *     W2 (h x h), b2 (h); embedding = relu(x W1 + b1) W2 + b2.
 */
float *eb__finetuner_weights(eb_finetuner *model, size_t *count);

/*
 * Analytic gradient of the mean softmax cross-entropy over all rows of X at
 * the current weights (no update) of a feed-forward finetuner. grad has
 * *count entries, same layout.
 */
eb_status eb__feedforward_gradient(eb_finetuner *model, eb_matrix X, const int32_t *y, float *grad,
                                   double *mean_loss);

/*
 * Analytic gradient of the mean over the given pairs of (cos(e_left, e_right)
 * - target)^2, with e = x W + b and each norm clamped below at 1e-8 as
 * PyTorch's cosine_similarity does. left/right index rows of X. Contrastive.
 */
eb_status eb__contrastive_gradient(eb_finetuner *model, eb_matrix X, const uint32_t *left,
                                   const uint32_t *right, const float *target, size_t n_pairs, float *grad,
                                   double *mean_loss);

/*
 * The pair learner's analytic gradient of the mean over all pairs of
 * (cos(e_left, e_right) - similarity)^2 at the current weights, no update.
 */
eb_status eb__pair_learner_gradient(eb_finetuner *model, const eb_pairs *pairs, float *grad, double *mean_loss);

/*
 * How a contrastive fit on two threads splits its steps from now on (src/contrastive.c, splits_columns):
 * EB_TEAM_SPLIT_ROWS (W's rows in halves), EB_TEAM_SPLIT_COLUMNS (the outputs in two sides), or
 * EB_TEAM_SPLIT_MEASURED (the default: by how fast a cache line travels between the two threads). Two sides
 * need the padded copy of the weights, so a continuing partial_fit splits rows whatever is set. Every choice
 * gives the same bits.
 */
typedef enum eb_team_split { EB_TEAM_SPLIT_MEASURED, EB_TEAM_SPLIT_ROWS, EB_TEAM_SPLIT_COLUMNS } eb_team_split;
eb_status eb__finetuner_set_team_split(eb_finetuner *model, int split);

#endif
