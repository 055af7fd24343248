/* Per-model random numbers: xoshiro256** (Blackman & Vigna), seeded through splitmix64. */
#include "internal.h"

static uint64_t splitmix64(uint64_t *state)
{
    uint64_t z = (*state += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

static uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

void eb__rng_seed(eb_rng *rng, uint64_t seed)
{
    uint64_t state = seed;
    for (int i = 0; i < 4; i++)
        rng->s[i] = splitmix64(&state);
}

uint64_t eb__rng_next(eb_rng *rng)
{
    uint64_t *s = rng->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

uint64_t eb__rng_below(eb_rng *rng, uint64_t bound)
{
    /* Rejection keeps every value equally likely; at most one retry on average. */
    uint64_t threshold = (0 - bound) % bound;
    for (;;) {
        uint64_t r = eb__rng_next(rng);
        if (r >= threshold)
            return r % bound;
    }
}

float eb__rng_uniform(eb_rng *rng, float low, float high)
{
    /* 24 random bits fill a float mantissa exactly, so the unit value is < 1. */
    float unit = (float)(eb__rng_next(rng) >> 40) * (1.0f / 16777216.0f);
    return low + (high - low) * unit;
}

void eb__rng_shuffle(eb_rng *rng, uint32_t *items, size_t count)
{
    for (size_t i = count; i > 1; i--) {
        size_t j = (size_t)eb__rng_below(rng, i);
        uint32_t tmp = items[i - 1];
        items[i - 1] = items[j];
        items[j] = tmp;
    }
}
