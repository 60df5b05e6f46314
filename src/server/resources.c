#include "server/resources.h"

#include <stdlib.h>
#include <string.h>

#include "m2m/err.h"

int m2m_restree_init(struct m2m_restree *t, uint64_t hash_key, size_t max_count)
{
    memset(t, 0, sizeof *t);
    t->hash_key = hash_key;
    t->max_count = max_count;
    t->next_version = 1;
    t->next_child = 1;
    return m2m_hmap_init(&t->map, 256) ? M2M_ENOMEM : 0;
}

static void res_free(struct m2m_resource *r)
{
    free(r->path);
    free(r->data);
    free(r->rt);
    free(r->ifd);
    free(r->title);
    free(r);
}

void m2m_restree_cleanup(struct m2m_restree *t)
{
    for (size_t i = 0; t->map.b && i <= t->map.mask; i++) {
        struct m2m_hnode *n = t->map.b[i];
        while (n) {
            struct m2m_hnode *next = n->next;
            res_free(M2M_CONTAINER_OF(n, struct m2m_resource, hn));
            n = next;
        }
    }
    m2m_hmap_cleanup(&t->map);
}

static uint64_t path_hash(const struct m2m_restree *t, const char *path)
{
    return m2m_hash_keyed(t->hash_key, path, strlen(path));
}

struct m2m_resource *m2m_restree_find(struct m2m_restree *t, const char *path)
{
    for (struct m2m_hnode *n = m2m_hmap_first(&t->map, path_hash(t, path)); n; n = m2m_hmap_next(n)) {
        struct m2m_resource *r = M2M_CONTAINER_OF(n, struct m2m_resource, hn);
        if (!strcmp(r->path, path))
            return r;
    }
    return NULL;
}

int m2m_restree_put(struct m2m_restree *t, const char *path, const uint8_t *data, size_t len, int ct,
                    struct m2m_resource **out, bool *created)
{
    struct m2m_resource *r = m2m_restree_find(t, path);
    uint8_t *copy = malloc(len ? len : 1);
    if (!copy)
        return M2M_ENOMEM;
    if (len)
        memcpy(copy, data, len);
    *created = !r;
    if (!r) {
        if (t->map.count >= t->max_count) {
            free(copy);
            return M2M_ELIMIT;
        }
        r = calloc(1, sizeof *r);
        size_t pl = strlen(path) + 1;
        if (!r || !(r->path = malloc(pl))) {
            free(r);
            free(copy);
            return M2M_ENOMEM;
        }
        memcpy(r->path, path, pl);
        r->obs = true;
        m2m_hmap_insert(&t->map, &r->hn, path_hash(t, path));
    }
    free(r->data);
    r->data = copy;
    r->len = len;
    r->ct = ct;
    r->version = t->next_version++;
    *out = r;
    return 0;
}

int m2m_restree_set_attr(struct m2m_resource *r, const char *name, const char *value)
{
    if (!strcmp(name, "obs")) {
        r->obs = !value || strcmp(value, "0");
        return 0;
    }
    char **slot = !strcmp(name, "rt")      ? &r->rt
                  : !strcmp(name, "if")    ? &r->ifd
                  : !strcmp(name, "title") ? &r->title
                                           : NULL;
    if (!slot || !value)
        return M2M_EINVAL;
    size_t n = strlen(value) + 1;
    char *v = malloc(n);
    if (!v)
        return M2M_ENOMEM;
    memcpy(v, value, n);
    free(*slot);
    *slot = v;
    return 0;
}

int m2m_restree_delete(struct m2m_restree *t, const char *path)
{
    struct m2m_resource *r = m2m_restree_find(t, path);
    if (!r)
        return M2M_ENOTFOUND;
    m2m_hmap_remove(&t->map, &r->hn);
    res_free(r);
    return 0;
}

size_t m2m_restree_count(const struct m2m_restree *t)
{
    return t->map.count;
}

static int by_path(const void *a, const void *b)
{
    const struct m2m_resource *ra = *(struct m2m_resource *const *)a;
    const struct m2m_resource *rb = *(struct m2m_resource *const *)b;
    return strcmp(ra->path, rb->path);
}

struct m2m_resource **m2m_restree_sorted(struct m2m_restree *t, size_t *n)
{
    struct m2m_resource **v = malloc((t->map.count ? t->map.count : 1) * sizeof *v);
    if (!v)
        return NULL;
    size_t k = 0;
    for (size_t i = 0; i <= t->map.mask; i++)
        for (struct m2m_hnode *h = t->map.b[i]; h; h = h->next)
            v[k++] = M2M_CONTAINER_OF(h, struct m2m_resource, hn);
    qsort(v, k, sizeof *v, by_path);
    *n = k;
    return v;
}
