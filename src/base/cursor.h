/* Bounded read and write cursors. Every byte a protocol parser reads or an
 * encoder writes goes through these, so bounds checks live in one place.
 * A read past the end returns M2M_EMALFORMED; a write past the capacity
 * returns M2M_ENOBUFS and leaves the cursor where it was. */
#ifndef M2M_BASE_CURSOR_H
#define M2M_BASE_CURSOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "m2m/err.h"
#include "m2m/types.h"

struct m2m_rcur {
    const uint8_t *p;
    size_t n;
    size_t off;
};

struct m2m_wcur {
    uint8_t *p;
    size_t cap;
    size_t off;
};

static inline void m2m_rcur_init(struct m2m_rcur *c, const uint8_t *p, size_t n)
{
    c->p = p;
    c->n = n;
    c->off = 0;
}

static inline size_t m2m_rcur_left(const struct m2m_rcur *c)
{
    return c->n - c->off;
}

static inline int m2m_rcur_u8(struct m2m_rcur *c, uint8_t *v)
{
    if (c->off >= c->n)
        return M2M_EMALFORMED;
    *v = c->p[c->off++];
    return 0;
}

static inline int m2m_rcur_be16(struct m2m_rcur *c, uint16_t *v)
{
    if (c->n - c->off < 2)
        return M2M_EMALFORMED;
    *v = (uint16_t)((c->p[c->off] << 8) | c->p[c->off + 1]);
    c->off += 2;
    return 0;
}

/* Borrows `len` bytes: the slice points into the cursor's buffer. */
static inline int m2m_rcur_take(struct m2m_rcur *c, size_t len, struct m2m_slice *out)
{
    if (c->n - c->off < len)
        return M2M_EMALFORMED;
    out->p = c->p + c->off;
    out->n = len;
    c->off += len;
    return 0;
}

static inline void m2m_wcur_init(struct m2m_wcur *c, uint8_t *p, size_t cap)
{
    c->p = p;
    c->cap = cap;
    c->off = 0;
}

static inline int m2m_wcur_u8(struct m2m_wcur *c, uint8_t v)
{
    if (c->off >= c->cap)
        return M2M_ENOBUFS;
    c->p[c->off++] = v;
    return 0;
}

static inline int m2m_wcur_be16(struct m2m_wcur *c, uint16_t v)
{
    if (c->cap - c->off < 2)
        return M2M_ENOBUFS;
    c->p[c->off++] = (uint8_t)(v >> 8);
    c->p[c->off++] = (uint8_t)v;
    return 0;
}

int m2m_wcur_bytes(struct m2m_wcur *c, const void *p, size_t n);

/* Minimal big-endian unsigned integer (0 encodes as zero bytes), the form
 * CoAP uses for uint options. Returns the number of bytes (0-4). */
size_t m2m_uint_min_be(uint32_t v, uint8_t out[4]);
/* Decodes a big-endian unsigned integer of 0-4 bytes. */
int m2m_uint_from_be(const uint8_t *p, size_t n, uint32_t *v);

#endif
