/* A binary min-heap of timers. Owners embed struct m2m_timer; the heap keeps
 * each timer's index so it can be moved or removed in O(log n). */
#ifndef M2M_BASE_HEAP_H
#define M2M_BASE_HEAP_H

#include <stddef.h>

#include "m2m/types.h"

struct m2m_timer {
    m2m_time at;
    size_t idx; /* position in the heap, SIZE_MAX when not armed */
    int kind;   /* owner-defined: what to do when it fires */
};

struct m2m_heap {
    struct m2m_timer **v;
    size_t n, cap;
};

void m2m_heap_init(struct m2m_heap *h);
void m2m_heap_cleanup(struct m2m_heap *h);
void m2m_timer_init(struct m2m_timer *t, int kind);
static inline int m2m_timer_armed(const struct m2m_timer *t)
{
    return t->idx != (size_t)-1;
}
/* Arms or re-arms `t` at `at`. M2M_ENOMEM if the heap cannot grow. */
int m2m_heap_set(struct m2m_heap *h, struct m2m_timer *t, m2m_time at);
void m2m_heap_cancel(struct m2m_heap *h, struct m2m_timer *t);
static inline struct m2m_timer *m2m_heap_top(const struct m2m_heap *h)
{
    return h->n ? h->v[0] : NULL;
}

#endif
