/* The resource tree that `m2mkit serve` exposes over CoAP: paths to
 * representations with their content format and link attributes. In memory
 * for now; capped in count and size. */
#ifndef M2M_SERVER_RESOURCES_H
#define M2M_SERVER_RESOURCES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/hmap.h"

struct m2m_resource {
    struct m2m_hnode hn;
    char *path;
    uint8_t *data;
    size_t len;
    int ct; /* -1: none */
    char *rt, *ifd, *title;
    bool obs;
    bool builtin;     /* not writable by clients */
    uint64_t version; /* bumped on each change, serves as ETag */
};

struct m2m_restree {
    struct m2m_hmap map;
    uint64_t hash_key;
    size_t max_count;
    uint64_t next_version;
    uint64_t next_child;
};

int m2m_restree_init(struct m2m_restree *t, uint64_t hash_key, size_t max_count);
void m2m_restree_cleanup(struct m2m_restree *t);
struct m2m_resource *m2m_restree_find(struct m2m_restree *t, const char *path);
/* Creates or replaces the representation of `path` (copied). *created tells
 * which. M2M_ELIMIT past max_count. */
int m2m_restree_put(struct m2m_restree *t, const char *path, const uint8_t *data, size_t len, int ct,
                    struct m2m_resource **out, bool *created);
/* Sets one link attribute ("rt", "if", "title"; "obs" takes no value). */
int m2m_restree_set_attr(struct m2m_resource *r, const char *name, const char *value);
int m2m_restree_delete(struct m2m_restree *t, const char *path);
size_t m2m_restree_count(const struct m2m_restree *t);
/* The resources sorted by path, in a malloc'd array the caller frees. */
struct m2m_resource **m2m_restree_sorted(struct m2m_restree *t, size_t *n);

#endif
