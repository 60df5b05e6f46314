#include "base/heap.h"

#include <stdlib.h>

#include "m2m/err.h"

void m2m_heap_init(struct m2m_heap *h)
{
    h->v = NULL;
    h->n = h->cap = 0;
}

void m2m_heap_cleanup(struct m2m_heap *h)
{
    for (size_t i = 0; i < h->n; i++)
        h->v[i]->idx = (size_t)-1;
    free(h->v);
    m2m_heap_init(h);
}

void m2m_timer_init(struct m2m_timer *t, int kind)
{
    t->at = M2M_NEVER;
    t->idx = (size_t)-1;
    t->kind = kind;
}

static void place(struct m2m_heap *h, size_t i, struct m2m_timer *t)
{
    h->v[i] = t;
    t->idx = i;
}

static void sift_up(struct m2m_heap *h, size_t i)
{
    struct m2m_timer *t = h->v[i];
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (h->v[parent]->at <= t->at)
            break;
        place(h, i, h->v[parent]);
        i = parent;
    }
    place(h, i, t);
}

static void sift_down(struct m2m_heap *h, size_t i)
{
    struct m2m_timer *t = h->v[i];
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= h->n)
            break;
        if (c + 1 < h->n && h->v[c + 1]->at < h->v[c]->at)
            c++;
        if (t->at <= h->v[c]->at)
            break;
        place(h, i, h->v[c]);
        i = c;
    }
    place(h, i, t);
}

int m2m_heap_set(struct m2m_heap *h, struct m2m_timer *t, m2m_time at)
{
    if (m2m_timer_armed(t)) {
        m2m_time old = t->at;
        t->at = at;
        if (at < old)
            sift_up(h, t->idx);
        else
            sift_down(h, t->idx);
        return 0;
    }
    if (h->n == h->cap) {
        size_t cap = h->cap ? h->cap * 2 : 64;
        struct m2m_timer **v = realloc(h->v, cap * sizeof *v);
        if (!v)
            return M2M_ENOMEM;
        h->v = v;
        h->cap = cap;
    }
    t->at = at;
    place(h, h->n++, t);
    sift_up(h, t->idx);
    return 0;
}

void m2m_heap_cancel(struct m2m_heap *h, struct m2m_timer *t)
{
    if (!m2m_timer_armed(t))
        return;
    size_t i = t->idx;
    t->idx = (size_t)-1;
    h->n--;
    if (i == h->n)
        return;
    struct m2m_timer *last = h->v[h->n];
    place(h, i, last);
    if (i > 0 && h->v[(i - 1) / 2]->at > last->at)
        sift_up(h, i);
    else
        sift_down(h, i);
}
