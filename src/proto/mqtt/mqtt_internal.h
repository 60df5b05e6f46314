/* Private to src/proto/mqtt: the data representations of §1.5 that the
 * packet codec and the property codec both read, and the output buffer of
 * the two connection cores (broker side and client side). */
#ifndef M2M_MQTT_INTERNAL_H
#define M2M_MQTT_INTERNAL_H

#include <stdbool.h>

#include "base/cursor.h"
#include "base/utf8.h"
#include "m2m/mqtt.h"

/* UTF-8 Encoded String (§1.5.4): length-prefixed, well formed, no U+0000
 * ([MQTT-1.5.4-1], [MQTT-1.5.4-2]). The slice points into the input. */
static inline int mqtt_read_str(struct m2m_rcur *c, struct m2m_slice *s)
{
    uint16_t len;
    if (m2m_rcur_be16(c, &len) || m2m_rcur_take(c, len, s))
        return M2M_EMALFORMED;
    return m2m_utf8_valid(s->p, s->n, M2M_UTF8_NO_NUL) ? 0 : M2M_EMALFORMED;
}

/* Binary Data (§1.5.6): length-prefixed bytes. */
static inline int mqtt_read_bin(struct m2m_rcur *c, struct m2m_slice *s)
{
    uint16_t len;
    if (m2m_rcur_be16(c, &len) || m2m_rcur_take(c, len, s))
        return M2M_EMALFORMED;
    return 0;
}

/* mqtt_outbuf.c: a core's output, at most `max` bytes pending. */
struct mqtt_outbuf {
    uint8_t *p;
    size_t len, off, cap, max;
};
/* 0, M2M_ENOBUFS (over max), M2M_ENOMEM, or an encoder error. */
int mqtt_out_raw(struct mqtt_outbuf *o, const uint8_t *p, size_t n);
int mqtt_out_pkt(struct mqtt_outbuf *o, const struct m2m_mqtt_packet *pkt);
/* Hands out everything pending (valid until the next call on o); when
 * nothing is, frees the buffer and returns false. */
bool mqtt_out_poll(struct mqtt_outbuf *o, const uint8_t **p, size_t *n);
static inline bool mqtt_out_pending(const struct mqtt_outbuf *o)
{
    return o->off != o->len;
}
void mqtt_out_free(struct mqtt_outbuf *o);

#endif
