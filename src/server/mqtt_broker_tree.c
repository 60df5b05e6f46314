/* The subscription tree: one node per topic level of every filter, children
 * in a keyed hash map, `+` and `#` children apart. Matching a topic walks
 * one path per level plus the wildcard branches, so routing costs the
 * topic's depth times the wildcards in use, not the number of sessions. */
#include <stdlib.h>
#include <string.h>

#include "server/mqtt_broker_internal.h"

uint64_t broker_hash(const struct m2m_broker *b, const void *p, size_t n)
{
    return m2m_hash_keyed(b->cfg.hash_key, p, n);
}

static struct tnode *node_new(const uint8_t *name, size_t len)
{
    struct tnode *n = calloc(1, sizeof *n + len + 1);
    if (!n)
        return NULL;
    if (len)
        memcpy(n->name, name, len);
    n->len = len;
    return n;
}

struct tnode *tree_new_root(void)
{
    return node_new(NULL, 0);
}

static void node_free(struct tnode *n)
{
    if (n->kids.b) {
        for (size_t i = 0; i <= n->kids.mask; i++) {
            struct m2m_hnode *h = n->kids.b[i];
            while (h) {
                struct m2m_hnode *next = h->next;
                node_free(M2M_CONTAINER_OF(h, struct tnode, hn));
                h = next;
            }
        }
        m2m_hmap_cleanup(&n->kids);
    }
    if (n->plus)
        node_free(n->plus);
    if (n->hash)
        node_free(n->hash);
    free(n);
}

void tree_free(struct tnode *root)
{
    if (root)
        node_free(root);
}

static struct tnode *kid_find(const struct tnode *n, uint64_t h, const uint8_t *name, size_t len)
{
    if (!n->kids.b)
        return NULL;
    for (struct m2m_hnode *it = m2m_hmap_first(&n->kids, h); it; it = m2m_hmap_next(it)) {
        struct tnode *k = M2M_CONTAINER_OF(it, struct tnode, hn);
        if (k->len == len && memcmp(k->name, name, len) == 0)
            return k;
    }
    return NULL;
}

/* The child named by one level, created when `b` is not NULL. */
static struct tnode *kid(struct m2m_broker *b, const struct m2m_broker *hb, struct tnode *n,
                         const uint8_t *name, size_t len)
{
    if (len == 1 && name[0] == '+') {
        if (!n->plus && b && (n->plus = node_new(name, len)) != NULL) {
            n->plus->parent = n;
            n->nkids++;
        }
        return n->plus;
    }
    if (len == 1 && name[0] == '#') {
        if (!n->hash && b && (n->hash = node_new(name, len)) != NULL) {
            n->hash->parent = n;
            n->nkids++;
        }
        return n->hash;
    }
    uint64_t h = broker_hash(hb, name, len);
    struct tnode *k = kid_find(n, h, name, len);
    if (k || !b)
        return k;
    if (!n->kids.b && m2m_hmap_init(&n->kids, 16) != 0)
        return NULL;
    k = node_new(name, len);
    if (!k)
        return NULL;
    k->parent = n;
    m2m_hmap_insert(&n->kids, &k->hn, h);
    n->nkids++;
    return k;
}

struct tnode *tree_node(struct m2m_broker *b, struct tnode *root, struct m2m_slice f)
{
    struct tnode *n = root;
    size_t i = 0;
    for (;;) {
        size_t j = i;
        while (j < f.n && f.p[j] != '/')
            j++;
        n = kid(b, b, n, f.p + i, j - i);
        if (!n || j >= f.n)
            return n;
        i = j + 1;
    }
}

/* Frees n and its empty ancestors (the root stays). */
void tree_prune(struct tnode *n)
{
    while (n && n->parent && !n->subs && !n->groups && n->nkids == 0) {
        struct tnode *p = n->parent;
        if (p->plus == n)
            p->plus = NULL;
        else if (p->hash == n)
            p->hash = NULL;
        else
            m2m_hmap_remove(&p->kids, &n->hn);
        p->nkids--;
        if (n->kids.b)
            m2m_hmap_cleanup(&n->kids);
        free(n);
        n = p;
    }
}

struct walk {
    struct m2m_slice topic;
    const struct m2m_broker *b;
    void (*visit)(void *ctx, struct tnode *n);
    void *ctx;
};

static void walk(const struct walk *w, struct tnode *n, size_t i, bool first)
{
    /* `#` also matches the parent level [MQTT-4.7.1-2]; wildcards at the
     * first level never match a `$` topic [MQTT-4.7.2-1]. */
    bool dollar = first && w->topic.n && w->topic.p[0] == '$';
    if (n->hash && !dollar)
        w->visit(w->ctx, n->hash);
    size_t j = i;
    while (j < w->topic.n && w->topic.p[j] != '/')
        j++;
    bool last = j >= w->topic.n;
    struct tnode *k = kid(NULL, w->b, n, w->topic.p + i, j - i);
    if (k) {
        if (last)
            w->visit(w->ctx, k);
        else
            walk(w, k, j + 1, false);
    }
    if (n->plus && !dollar) {
        if (last)
            w->visit(w->ctx, n->plus);
        else
            walk(w, n->plus, j + 1, false);
    }
    if (last && k && k->hash)
        w->visit(w->ctx, k->hash);
    if (last && n->plus && n->plus->hash && !dollar)
        w->visit(w->ctx, n->plus->hash);
}

void tree_match(const struct m2m_broker *b, struct tnode *root, struct m2m_slice topic,
                void (*visit)(void *ctx, struct tnode *n), void *ctx)
{
    struct walk w = {topic, b, visit, ctx};
    walk(&w, root, 0, true);
}
