/* A fast deterministic generator (xoshiro256**) for message IDs, tokens and
 * hash keys. It is not a source of entropy: the caller seeds it (the net
 * layer from the OS, tests from a constant). Not for cryptographic use. */
#ifndef M2M_BASE_PRNG_H
#define M2M_BASE_PRNG_H

#include <stddef.h>
#include <stdint.h>

#include "m2m/types.h"

struct m2m_prng {
    uint64_t s[4];
};

void m2m_prng_seed(struct m2m_prng *g, uint64_t seed);
uint64_t m2m_prng_next(struct m2m_prng *g);
/* Fits struct m2m_rng.fill; ctx is a struct m2m_prng. */
void m2m_prng_fill(void *ctx, uint8_t *buf, size_t n);
/* An m2m_rng reading from `g`, which must outlive it. */
struct m2m_rng m2m_prng_rng(struct m2m_prng *g);

#endif
