/* An intrusive hash map: owners embed a struct m2m_hnode and give its hash;
 * lookups walk one chain comparing with the caller's predicate. Hashes of
 * peer-chosen keys must come from m2m_hash_keyed with a secret key, so a peer
 * cannot aim everything at one chain. The table doubles when its load passes
 * one; memory is owned by the map, entries by their owners. */
#ifndef M2M_BASE_HMAP_H
#define M2M_BASE_HMAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct m2m_hnode {
    struct m2m_hnode *next;
    uint64_t hash;
};

struct m2m_hmap {
    struct m2m_hnode **b;
    size_t mask; /* buckets - 1 */
    size_t count;
};

/* At least `initial_buckets` (a power of two, 16 or more). M2M_ENOMEM. */
int m2m_hmap_init(struct m2m_hmap *m, size_t initial_buckets);
void m2m_hmap_cleanup(struct m2m_hmap *m);
/* Inserts without looking for duplicates. Growth failure is not fatal: the
 * node is still inserted into the current table. */
void m2m_hmap_insert(struct m2m_hmap *m, struct m2m_hnode *n, uint64_t hash);
void m2m_hmap_remove(struct m2m_hmap *m, struct m2m_hnode *n);

/* Iterates the chain for `hash`: first node, then m2m_hmap_next. */
static inline struct m2m_hnode *m2m_hmap_first(const struct m2m_hmap *m, uint64_t hash)
{
    struct m2m_hnode *n = m->b[hash & m->mask];
    while (n && n->hash != hash)
        n = n->next;
    return n;
}

static inline struct m2m_hnode *m2m_hmap_next(const struct m2m_hnode *n)
{
    uint64_t h = n->hash;
    n = n->next;
    while (n && n->hash != h)
        n = n->next;
    return (struct m2m_hnode *)n;
}

/* A keyed 64-bit hash for table placement (not a MAC). */
uint64_t m2m_hash_keyed(uint64_t key, const void *p, size_t n);
uint64_t m2m_hash_mix(uint64_t h, uint64_t v);

#define M2M_CONTAINER_OF(ptr, type, member) ((type *)(void *)((char *)(ptr)-offsetof(type, member)))

#endif
