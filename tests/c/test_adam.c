/*
 * Adam's update must give the bits of its defining formula, computed one
 * rounded operation at a time, whatever variant the CPU runs: on AVX-512 the
 * division is replaced by a corrected reciprocal, and training results (and
 * saved models) must not depend on the machine.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "helpers.h"
#include "internal.h"

/* Not a multiple of the 16-float vector: the scalar tail is compared too. */
enum { COUNT = 4099 };

typedef struct adam_arrays {
    float w[COUNT], g[COUNT], m[COUNT], v[COUNT];
} adam_arrays;

static void reference_update(adam_arrays *a, float step, float inv_sqrt_c2)
{
    for (size_t i = 0; i < COUNT; i++) {
        a->m[i] = 0.9f * a->m[i] + (1.0f - 0.9f) * a->g[i];
        a->v[i] = 0.999f * a->v[i] + (1.0f - 0.999f) * a->g[i] * a->g[i];
        a->w[i] -= step * a->m[i] / (sqrtf(a->v[i]) * inv_sqrt_c2 + 1e-8f);
    }
}

/* The step size and scale eb__adam_step derives for step t at this learning rate. */
static void step_constants(uint64_t t, float learning_rate, float *step, float *inv_sqrt_c2)
{
    *step = (float)(learning_rate / (1.0 - pow(0.9, (double)t)));
    *inv_sqrt_c2 = (float)(1.0 / sqrt(1.0 - pow(0.999, (double)t)));
}

/*
 * Same bits, except that any NaN matches any NaN: which payload and sign a NaN
 * carries is not something training depends on (a NaN weight rolls the pass
 * back), and valgrind's emulation does not reproduce the hardware's choice.
 */
static void assert_same_bits(const float *expected, const float *actual, const char *what, size_t step)
{
    for (size_t i = 0; i < COUNT; i++) {
        if (isnan(expected[i]) && isnan(actual[i]))
            continue;
        if (memcmp(&expected[i], &actual[i], sizeof(float)) != 0) {
            print_error("%s[%zu] after step %zu: expected %a, got %a\n", what, i, step, (double)expected[i],
                        (double)actual[i]);
            fail();
        }
    }
}

static void run_and_compare(adam_arrays *reference, size_t step_index, float step, float inv_sqrt_c2)
{
    static adam_arrays candidate;
    memcpy(&candidate, reference, sizeof candidate);
    reference_update(reference, step, inv_sqrt_c2);
    eb__adam_update(COUNT, candidate.w, candidate.g, candidate.m, candidate.v, step, inv_sqrt_c2);
    assert_same_bits(reference->w, candidate.w, "w", step_index);
    assert_same_bits(reference->m, candidate.m, "m", step_index);
    assert_same_bits(reference->v, candidate.v, "v", step_index);
}

/* Gradients over fifteen orders of magnitude, as a training run meets them, for many steps. */
static void test_training_like_steps_match_the_formula(void **unused)
{
    (void)unused;
    static adam_arrays a;
    memset(&a, 0, sizeof a);
    test_rng rng = test_rng_make(11);
    for (size_t i = 0; i < COUNT; i++)
        a.w[i] = (float)test_rng_uniform(&rng, -0.05, 0.05);
    for (uint64_t t = 1; t <= 300; t++) {
        for (size_t i = 0; i < COUNT; i++) {
            double magnitude = pow(10.0, test_rng_uniform(&rng, -12.0, 3.0));
            /* Some weights never see a gradient (an all-zero input column). */
            a.g[i] = i % 97 == 0 ? 0.0f : (float)(test_rng_normal(&rng) * magnitude);
        }
        float step, inv_sqrt_c2;
        step_constants(t, t % 2 ? 0.01f : 1e-4f, &step, &inv_sqrt_c2);
        run_and_compare(&a, (size_t)t, step, inv_sqrt_c2);
    }
}

/* Zeros of both signs, subnormals, squares that overflow, Inf and NaN, scattered among ordinary lanes. */
static void test_extreme_values_match_the_formula(void **unused)
{
    (void)unused;
    static const float specials[] = {0.0f, -0.0f, FLT_MIN, -FLT_MIN, 1e-45f, -1e-40f, 3e-39f, 1e19f, -1e20f,
                                     FLT_MAX, -FLT_MAX, INFINITY, -INFINITY, NAN, 1e-30f, 1e30f};
    const size_t n_specials = sizeof specials / sizeof specials[0];
    static adam_arrays a;
    test_rng rng = test_rng_make(12);
    for (size_t round = 0; round < 40; round++) {
        for (size_t i = 0; i < COUNT; i++) {
            float *fields[] = {&a.w[i], &a.g[i], &a.m[i], &a.v[i]};
            for (size_t f = 0; f < 4; f++) {
                uint64_t draw = test_rng_next(&rng);
                float value = (float)(test_rng_normal(&rng) * pow(10.0, test_rng_uniform(&rng, -40.0, 38.0)));
                if (draw % 5 == 0)
                    value = specials[(draw / 5) % n_specials];
                if (f == 3)
                    value = fabsf(value); /* the second moment is never negative */
                *fields[f] = value;
            }
        }
        /* Step sizes from a cautious rate to one that overflows every update. */
        static const float steps[] = {1e-3f, 0.01f, 1.0f, 1e10f, 3e38f};
        float step = steps[round % (sizeof steps / sizeof steps[0])];
        run_and_compare(&a, round, step, round % 3 == 0 ? 1.0f : 31.6f);
    }
}

/* Arbitrary bit patterns: subnormals, infinities and NaNs anywhere. */
static void test_random_bit_patterns_match_the_formula(void **unused)
{
    (void)unused;
    static adam_arrays a;
    test_rng rng = test_rng_make(13);
    for (size_t round = 0; round < 20; round++) {
        float *arrays[] = {a.w, a.g, a.m, a.v};
        for (size_t f = 0; f < 4; f++) {
            for (size_t i = 0; i < COUNT; i++) {
                uint32_t bits = (uint32_t)(test_rng_next(&rng) >> 32);
                memcpy(&arrays[f][i], &bits, sizeof bits);
            }
        }
        run_and_compare(&a, round, 0.01f, 1.0f);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_training_like_steps_match_the_formula),
        cmocka_unit_test(test_extreme_values_match_the_formula),
        cmocka_unit_test(test_random_bit_patterns_match_the_formula),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
