/* Copies of test input placed so that the byte after the last one is
 * unreadable: an exact-size heap block (ASan flags any overread) and a copy
 * that ends at a PROT_NONE page (an overread faults even without ASan).
 * Used to run every parser vector "whole, split at every byte, and before a
 * guard page" (STYLE.md rule 13). */
#ifndef M2M_TEST_GUARDBUF_H
#define M2M_TEST_GUARDBUF_H

#include <stddef.h>
#include <stdint.h>

/* malloc'd copy of exactly n bytes (a 1-byte block for n == 0, never read).
 * The caller frees it with free(). Aborts the test on no memory. */
uint8_t *test_heap_copy(const void *p, size_t n);

/* A copy of p[0..n) whose last byte sits just before a guard page. The
 * pointer stays valid until test_guard_free; n may be at most one page. */
struct test_guard {
    uint8_t *map;
    size_t maplen;
    uint8_t *data;
};
uint8_t *test_guard_copy(struct test_guard *g, const void *p, size_t n);
void test_guard_free(struct test_guard *g);

/* Calls fn(ctx, copy, k) for every prefix length k = 0..n, each prefix an
 * exact heap copy, then once more with the whole input before a guard page.
 * fn checks whatever the parser must guarantee for truncated input. */
void test_each_prefix(const uint8_t *p, size_t n, void (*fn)(void *ctx, const uint8_t *p, size_t k),
                      void *ctx);

#endif
