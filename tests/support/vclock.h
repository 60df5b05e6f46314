/* Test helpers for sans-IO cores: a deterministic RNG, addresses, and a
 * hex dump for failure messages. */
#ifndef M2M_TEST_VCLOCK_H
#define M2M_TEST_VCLOCK_H

#include <stddef.h>
#include <stdint.h>

#include "base/prng.h"
#include "m2m/types.h"

/* An m2m_addr with a readable identity ("peer 7"). */
struct m2m_addr test_addr(uint8_t n);
/* Writes "de ad be ef" into buf (cap bytes) and returns it. */
const char *test_hex(const uint8_t *p, size_t n, char *buf, size_t cap);
/* Parses "de ad be ef" / "deadbeef" into out; returns the length. */
size_t test_unhex(const char *s, uint8_t *out, size_t cap);

#endif
