/* CoAP message codec (RFC 7252 §3): bytes <-> struct m2m_coap_msg. */
#include <string.h>

#include "base/cursor.h"
#include "m2m/coap.h"

#define COAP_VERSION 1
#define PAYLOAD_MARKER 0xff

void m2m_coap_msg_init(struct m2m_coap_msg *m, uint8_t type, uint8_t code)
{
    m->type = type;
    m->code = code;
    m->mid = 0;
    m->tkl = 0;
    m->nopt = 0;
    m->payload = NULL;
    m->payload_len = 0;
    m->scratch_used = 0;
}

bool m2m_coap_header_ok(const uint8_t *p, size_t n)
{
    return n >= 4 && (p[0] >> 6) == COAP_VERSION;
}

/* Reads the extended delta or length that nibble `v` announces (§3.1). */
static int read_ext(struct m2m_rcur *c, uint8_t v, uint32_t *out)
{
    if (v < 13) {
        *out = v;
        return 0;
    }
    if (v == 13) {
        uint8_t b = 0;
        int rc = m2m_rcur_u8(c, &b);
        *out = (uint32_t)b + 13;
        return rc;
    }
    if (v == 14) {
        uint16_t w = 0;
        int rc = m2m_rcur_be16(c, &w);
        *out = (uint32_t)w + 269;
        return rc;
    }
    return M2M_EMALFORMED; /* 15 is reserved outside the payload marker */
}

int m2m_coap_decode(struct m2m_coap_msg *m, const uint8_t *p, size_t n)
{
    m2m_coap_msg_init(m, 0, 0);
    if (!m2m_coap_header_ok(p, n))
        return M2M_EMALFORMED;
    struct m2m_rcur c;
    m2m_rcur_init(&c, p, n);
    uint8_t b0, code;
    uint16_t mid;
    m2m_rcur_u8(&c, &b0);
    m2m_rcur_u8(&c, &code);
    m2m_rcur_be16(&c, &mid);
    m->type = (b0 >> 4) & 3;
    m->code = code;
    m->mid = mid;
    uint8_t tkl = b0 & 0x0f;
    if (tkl > 8)
        return M2M_EMALFORMED;
    struct m2m_slice tok;
    if (m2m_rcur_take(&c, tkl, &tok))
        return M2M_EMALFORMED;
    memcpy(m->token, tok.p, tkl);
    m->tkl = tkl;
    if (code == M2M_COAP_EMPTY) {
        /* §4.1: an Empty message has nothing after the header. */
        return (tkl || n != 4) ? M2M_EMALFORMED : 0;
    }
    /* §3 codes 1.xx, 6.xx and 7.xx are reserved: a format error. */
    int cls = M2M_COAP_CODE_CLASS(code);
    if (cls == 1 || cls == 6 || cls == 7)
        return M2M_EMALFORMED;

    uint32_t num = 0;
    while (m2m_rcur_left(&c)) {
        uint8_t hdr = 0;
        m2m_rcur_u8(&c, &hdr);
        if (hdr == PAYLOAD_MARKER) {
            if (!m2m_rcur_left(&c))
                return M2M_EMALFORMED; /* marker with empty payload */
            m->payload = c.p + c.off;
            m->payload_len = m2m_rcur_left(&c);
            return 0;
        }
        uint32_t delta, len;
        if (read_ext(&c, hdr >> 4, &delta) || read_ext(&c, hdr & 0x0f, &len))
            return M2M_EMALFORMED;
        num += delta;
        if (num > 0xffff || len > 0xffff)
            return M2M_EMALFORMED;
        struct m2m_slice v;
        if (m2m_rcur_take(&c, len, &v))
            return M2M_EMALFORMED;
        if (m->nopt == M2M_COAP_MAX_OPTS)
            return M2M_ELIMIT;
        m->opt[m->nopt].num = (uint16_t)num;
        m->opt[m->nopt].len = (uint16_t)len;
        m->opt[m->nopt].val = v.p;
        m->nopt++;
    }
    return 0;
}

static size_t ext_size(uint32_t v)
{
    return v < 13 ? 0 : v < 269 ? 1 : 2;
}
static uint8_t ext_nibble(uint32_t v)
{
    return v < 13 ? (uint8_t)v : v < 269 ? 13 : 14;
}

static int write_ext(struct m2m_wcur *c, uint32_t v)
{
    if (v < 13)
        return 0;
    if (v < 269)
        return m2m_wcur_u8(c, (uint8_t)(v - 13));
    return m2m_wcur_be16(c, (uint16_t)(v - 269));
}

/* Option indices in wire order: stable insertion sort by number, so repeated
 * options (Uri-Path segments) keep the order they were added in. */
static void sorted_order(const struct m2m_coap_msg *m, uint8_t *idx)
{
    for (uint16_t i = 0; i < m->nopt; i++) {
        uint16_t j = i;
        while (j > 0 && m->opt[idx[j - 1]].num > m->opt[i].num) {
            idx[j] = idx[j - 1];
            j--;
        }
        idx[j] = (uint8_t)i;
    }
}

size_t m2m_coap_encoded_size(const struct m2m_coap_msg *m)
{
    uint8_t idx[M2M_COAP_MAX_OPTS];
    sorted_order(m, idx);
    size_t size = 4 + m->tkl;
    uint16_t prev = 0;
    for (uint16_t i = 0; i < m->nopt; i++) {
        const struct m2m_coap_opt *o = &m->opt[idx[i]];
        size += 1 + ext_size(o->num - prev) + ext_size(o->len) + o->len;
        prev = o->num;
    }
    if (m->payload_len)
        size += 1 + m->payload_len;
    return size;
}

int m2m_coap_encode(const struct m2m_coap_msg *m, uint8_t *buf, size_t cap, size_t *len)
{
    if (m->tkl > 8 || m->type > 3 || m->nopt > M2M_COAP_MAX_OPTS)
        return M2M_EINVAL;
    size_t need = m2m_coap_encoded_size(m);
    if (need > cap)
        return M2M_ENOBUFS;
    uint8_t idx[M2M_COAP_MAX_OPTS];
    sorted_order(m, idx);
    struct m2m_wcur c;
    m2m_wcur_init(&c, buf, cap);
    m2m_wcur_u8(&c, (uint8_t)((COAP_VERSION << 6) | (m->type << 4) | m->tkl));
    m2m_wcur_u8(&c, m->code);
    m2m_wcur_be16(&c, m->mid);
    m2m_wcur_bytes(&c, m->token, m->tkl);
    uint16_t prev = 0;
    for (uint16_t i = 0; i < m->nopt; i++) {
        const struct m2m_coap_opt *o = &m->opt[idx[i]];
        uint32_t delta = (uint32_t)(o->num - prev);
        m2m_wcur_u8(&c, (uint8_t)((ext_nibble(delta) << 4) | ext_nibble(o->len)));
        write_ext(&c, delta);
        write_ext(&c, o->len);
        m2m_wcur_bytes(&c, o->val, o->len);
        prev = o->num;
    }
    if (m->payload_len) {
        m2m_wcur_u8(&c, PAYLOAD_MARKER);
        m2m_wcur_bytes(&c, m->payload, m->payload_len);
    }
    *len = c.off;
    return 0;
}
