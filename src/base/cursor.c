#include "base/cursor.h"

#include <string.h>

int m2m_wcur_bytes(struct m2m_wcur *c, const void *p, size_t n)
{
    if (c->cap - c->off < n)
        return M2M_ENOBUFS;
    if (n)
        memcpy(c->p + c->off, p, n);
    c->off += n;
    return 0;
}

size_t m2m_uint_min_be(uint32_t v, uint8_t out[4])
{
    size_t n = v > 0xffffff ? 4 : v > 0xffff ? 3 : v > 0xff ? 2 : v ? 1 : 0;
    for (size_t i = 0; i < n; i++)
        out[i] = (uint8_t)(v >> (8 * (n - 1 - i)));
    return n;
}

int m2m_uint_from_be(const uint8_t *p, size_t n, uint32_t *v)
{
    if (n > 4)
        return M2M_EMALFORMED;
    uint32_t x = 0;
    for (size_t i = 0; i < n; i++)
        x = (x << 8) | p[i];
    *v = x;
    return 0;
}
