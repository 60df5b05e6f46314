#include "base/hmap.h"

#include <stdlib.h>
#include <string.h>

#include "m2m/err.h"

int m2m_hmap_init(struct m2m_hmap *m, size_t initial_buckets)
{
    size_t n = 16;
    while (n < initial_buckets)
        n <<= 1;
    m->b = calloc(n, sizeof *m->b);
    if (!m->b)
        return M2M_ENOMEM;
    m->mask = n - 1;
    m->count = 0;
    return 0;
}

void m2m_hmap_cleanup(struct m2m_hmap *m)
{
    free(m->b);
    m->b = NULL;
    m->count = 0;
}

static void grow(struct m2m_hmap *m)
{
    size_t n = (m->mask + 1) * 2;
    struct m2m_hnode **nb = calloc(n, sizeof *nb);
    if (!nb)
        return;
    for (size_t i = 0; i <= m->mask; i++) {
        struct m2m_hnode *e = m->b[i];
        while (e) {
            struct m2m_hnode *next = e->next;
            size_t j = e->hash & (n - 1);
            e->next = nb[j];
            nb[j] = e;
            e = next;
        }
    }
    free(m->b);
    m->b = nb;
    m->mask = n - 1;
}

void m2m_hmap_insert(struct m2m_hmap *m, struct m2m_hnode *n, uint64_t hash)
{
    if (m->count >= m->mask + 1)
        grow(m);
    n->hash = hash;
    size_t i = hash & m->mask;
    n->next = m->b[i];
    m->b[i] = n;
    m->count++;
}

void m2m_hmap_remove(struct m2m_hmap *m, struct m2m_hnode *n)
{
    struct m2m_hnode **pp = &m->b[n->hash & m->mask];
    while (*pp && *pp != n)
        pp = &(*pp)->next;
    if (*pp) {
        *pp = n->next;
        m->count--;
    }
    n->next = NULL;
}

uint64_t m2m_hash_mix(uint64_t h, uint64_t v)
{
    h ^= v + 0x9e3779b97f4a7c15ULL + (h << 6) + (h >> 2);
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ULL;
    h ^= h >> 33;
    return h;
}

uint64_t m2m_hash_keyed(uint64_t key, const void *p, size_t n)
{
    const uint8_t *b = p;
    uint64_t h = key ^ (n * 0x9e3779b97f4a7c15ULL);
    while (n >= 8) {
        uint64_t v;
        memcpy(&v, b, 8);
        h = m2m_hash_mix(h, v);
        b += 8;
        n -= 8;
    }
    uint64_t tail = 0;
    if (n) /* p may be NULL for an empty key; memcpy must not see it */
        memcpy(&tail, b, n);
    return m2m_hash_mix(h, tail ^ ((uint64_t)n << 56));
}
