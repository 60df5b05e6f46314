/* Block1/Block2 option values (RFC 7959 §2.2). */
#include "base/cursor.h"
#include "m2m/coap.h"

int m2m_coap_get_block(const struct m2m_coap_msg *m, uint16_t num, struct m2m_coap_block *b)
{
    const struct m2m_coap_opt *o = m2m_coap_find_opt(m, num);
    if (!o)
        return M2M_ENOTFOUND;
    uint32_t v;
    if (o->len > 3 || m2m_uint_from_be(o->val, o->len, &v))
        return M2M_EMALFORMED;
    b->szx = v & 7;
    b->more = (v >> 3) & 1;
    b->num = v >> 4;
    if (b->szx == 7)
        return M2M_EMALFORMED; /* BERT exists only over reliable transports */
    return 0;
}

int m2m_coap_add_block(struct m2m_coap_msg *m, uint16_t num, const struct m2m_coap_block *b)
{
    if (b->szx > 6 || b->num > 0xfffff)
        return M2M_EINVAL;
    return m2m_coap_add_uint(m, num, (b->num << 4) | ((uint32_t)b->more << 3) | b->szx);
}

uint8_t m2m_coap_szx_for(size_t bytes)
{
    uint8_t szx = 6;
    while (szx > 0 && m2m_coap_block_size(szx) > bytes)
        szx--;
    return szx;
}
