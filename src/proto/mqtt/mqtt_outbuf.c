/* The bounded output buffer of a connection core (broker or client side):
 * packets are appended, handed out in one piece, and the memory goes back
 * as soon as all of it has been taken, so an idle connection holds none. */
#include <stdlib.h>
#include <string.h>

#include "mqtt_internal.h"

static int reserve(struct mqtt_outbuf *o, size_t n)
{
    if (o->off == o->len)
        o->off = o->len = 0;
    if (n > o->max - o->len)
        return M2M_ENOBUFS;
    if (o->len + n <= o->cap)
        return 0;
    size_t cap = o->cap ? o->cap : 256;
    while (cap < o->len + n)
        cap *= 2;
    uint8_t *p = realloc(o->p, cap);
    if (!p)
        return M2M_ENOMEM;
    o->p = p;
    o->cap = cap;
    return 0;
}

int mqtt_out_raw(struct mqtt_outbuf *o, const uint8_t *p, size_t n)
{
    int rc = reserve(o, n);
    if (rc)
        return rc;
    memcpy(o->p + o->len, p, n);
    o->len += n;
    return 0;
}

int mqtt_out_pkt(struct mqtt_outbuf *o, const struct m2m_mqtt_packet *pkt)
{
    size_t need = m2m_mqtt_encoded_size(pkt), len = 0;
    if (!need)
        return M2M_EINVAL;
    int rc = reserve(o, need);
    if (!rc)
        rc = m2m_mqtt_encode(pkt, o->p + o->len, o->cap - o->len, &len);
    if (rc)
        return rc;
    o->len += len;
    return 0;
}

bool mqtt_out_poll(struct mqtt_outbuf *o, const uint8_t **p, size_t *n)
{
    if (o->off == o->len) {
        /* What was handed out last time is written or copied by now. */
        mqtt_out_free(o);
        return false;
    }
    *p = o->p + o->off;
    *n = o->len - o->off;
    o->off = o->len;
    return true;
}

void mqtt_out_free(struct mqtt_outbuf *o)
{
    free(o->p);
    o->p = NULL;
    o->cap = o->len = o->off = 0;
}
