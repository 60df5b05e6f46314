/* Private to src/proto/mqtt: the data representations of §1.5 that the
 * packet codec and the property codec both read. */
#ifndef M2M_MQTT_INTERNAL_H
#define M2M_MQTT_INTERNAL_H

#include "base/cursor.h"
#include "base/utf8.h"

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

#endif
