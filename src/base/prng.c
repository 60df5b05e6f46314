#include "base/prng.h"

#include <string.h>

static uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

void m2m_prng_seed(struct m2m_prng *g, uint64_t seed)
{
    for (int i = 0; i < 4; i++)
        g->s[i] = splitmix64(&seed);
}

uint64_t m2m_prng_next(struct m2m_prng *g)
{
    uint64_t *s = g->s;
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

void m2m_prng_fill(void *ctx, uint8_t *buf, size_t n)
{
    struct m2m_prng *g = ctx;
    while (n) {
        uint64_t v = m2m_prng_next(g);
        size_t k = n < 8 ? n : 8;
        memcpy(buf, &v, k);
        buf += k;
        n -= k;
    }
}

struct m2m_rng m2m_prng_rng(struct m2m_prng *g)
{
    struct m2m_rng r = {m2m_prng_fill, g};
    return r;
}
