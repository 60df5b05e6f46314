#include "base/varint.h"

int m2m_varint_read(struct m2m_rcur *c, size_t max_bytes, uint32_t *v)
{
    /* A failed read leaves the cursor where it was, so a stream parser can
     * retry once more bytes have arrived. */
    size_t start = c->off;
    uint32_t x = 0;
    for (size_t i = 0; i < max_bytes && i < 5; i++) {
        uint8_t b;
        if (m2m_rcur_u8(c, &b))
            break;
        /* The fifth group has room for 4 bits only: more would not fit. */
        if (i == 4 && (b & 0x70))
            break;
        x |= (uint32_t)(b & 0x7f) << (7 * i);
        if (!(b & 0x80)) {
            if (i > 0 && b == 0)
                break; /* non-minimal encoding */
            *v = x;
            return 0;
        }
    }
    c->off = start;
    return M2M_EMALFORMED;
}

size_t m2m_varint_size(uint32_t v)
{
    size_t n = 1;
    while (v >= 0x80) {
        v >>= 7;
        n++;
    }
    return n;
}

int m2m_varint_write(struct m2m_wcur *c, size_t max_bytes, uint32_t v)
{
    size_t need = m2m_varint_size(v);
    if (need > max_bytes)
        return M2M_EINVAL;
    if (c->cap - c->off < need)
        return M2M_ENOBUFS;
    do {
        uint8_t b = v & 0x7f;
        v >>= 7;
        c->p[c->off++] = (uint8_t)(b | (v ? 0x80 : 0));
    } while (v);
    return 0;
}
