#include "guardbuf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

uint8_t *test_heap_copy(const void *p, size_t n)
{
    uint8_t *b = malloc(n ? n : 1);
    if (!b) {
        fprintf(stderr, "test_heap_copy: out of memory\n");
        abort();
    }
    if (n)
        memcpy(b, p, n);
    return b;
}

uint8_t *test_guard_copy(struct test_guard *g, const void *p, size_t n)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    if (n > page) {
        fprintf(stderr, "test_guard_copy: %zu bytes is more than a page\n", n);
        abort();
    }
    g->maplen = 2 * page;
    g->map = mmap(NULL, g->maplen, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (g->map == MAP_FAILED || mprotect(g->map + page, page, PROT_NONE)) {
        fprintf(stderr, "test_guard_copy: mmap/mprotect failed\n");
        abort();
    }
    g->data = g->map + page - n;
    if (n)
        memcpy(g->data, p, n);
    return g->data;
}

void test_guard_free(struct test_guard *g)
{
    if (g->map)
        munmap(g->map, g->maplen);
    g->map = NULL;
    g->data = NULL;
}

void test_each_prefix(const uint8_t *p, size_t n, void (*fn)(void *ctx, const uint8_t *p, size_t k),
                      void *ctx)
{
    for (size_t k = 0; k <= n; k++) {
        uint8_t *c = test_heap_copy(p, k);
        fn(ctx, c, k);
        free(c);
    }
    if (n <= (size_t)sysconf(_SC_PAGESIZE)) {
        struct test_guard g = {0};
        fn(ctx, test_guard_copy(&g, p, n), n);
        test_guard_free(&g);
    }
}
