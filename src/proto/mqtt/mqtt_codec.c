/* MQTT 3.1.1 / 5.0 packet codec: bytes <-> struct m2m_mqtt_packet.
 * Section numbers and [MQTT-x.y.z-n] tags are those of MQTT 5.0 unless a
 * comment says 3.1.1. */
#include <string.h>

#include "base/cursor.h"
#include "base/utf8.h"
#include "base/varint.h"
#include "m2m/mqtt.h"
#include "mqtt_internal.h"

#define RC_MALFORMED M2M_MQTT_RC_MALFORMED_PACKET
#define RC_PROTOCOL M2M_MQTT_RC_PROTOCOL_ERROR

static int fail(struct m2m_mqtt_diag *d, int rc, uint8_t reason, const char *rule)
{
    if (d) {
        d->reason = reason;
        d->rule = rule;
    }
    return rc;
}

#define MALFORMED(rule) fail(d, M2M_EMALFORMED, RC_MALFORMED, rule)
#define PROTOCOL(rule) fail(d, M2M_EMALFORMED, RC_PROTOCOL, rule)

void m2m_mqtt_packet_init(struct m2m_mqtt_packet *pkt, enum m2m_mqtt_type type, enum m2m_mqtt_version v)
{
    memset(pkt, 0, sizeof *pkt);
    pkt->type = (uint8_t)type;
    pkt->version = (uint8_t)v;
}

/* ---- framing (§2.1, §1.5.5) ------------------------------------------- */

int m2m_mqtt_frame(const uint8_t *p, size_t n, size_t max_packet, size_t *total)
{
    if (n < 1)
        return M2M_EAGAIN;
    if ((p[0] >> 4) == 0)
        return M2M_EMALFORMED; /* packet type 0 is reserved (§2.1.2) */
    uint32_t len = 0;
    for (size_t i = 0; i < 4; i++) {
        if (1 + i >= n)
            return M2M_EAGAIN;
        uint8_t b = p[1 + i];
        len |= (uint32_t)(b & 0x7f) << (7 * i);
        if (b & 0x80)
            continue;
        if (i > 0 && b == 0)
            return M2M_EMALFORMED; /* [MQTT-1.5.5-1] minimal encoding */
        size_t tot = 2 + i + (size_t)len;
        if (max_packet && tot > max_packet)
            return M2M_ELIMIT;
        if (n < tot)
            return M2M_EAGAIN;
        *total = tot;
        return 0;
    }
    return M2M_EMALFORMED; /* more than four bytes */
}

/* ---- decoder ------------------------------------------------------------ */

/* A property block: its length, then m2m_mqtt_props_decode. Nothing in 3.1.1. */
static int read_props(struct m2m_rcur *c, uint8_t ver, unsigned ctx, struct m2m_mqtt_props *pr,
                      struct m2m_mqtt_diag *d)
{
    memset(pr, 0, sizeof *pr);
    if (ver != M2M_MQTT_V5)
        return 0;
    uint32_t len;
    struct m2m_slice s;
    if (m2m_varint_read(c, 4, &len) || m2m_rcur_take(c, len, &s))
        return MALFORMED("MQTT-2.2.2-1 property length");
    return m2m_mqtt_props_decode(pr, ctx, s.p, s.n, d);
}

static int read_pid(struct m2m_rcur *c, uint16_t *pid, struct m2m_mqtt_diag *d)
{
    if (m2m_rcur_be16(c, pid))
        return MALFORMED("MQTT-2.2.1 packet identifier");
    /* [MQTT-2.2.1-3]: packets that carry an identifier use a non-zero one. */
    return *pid ? 0 : PROTOCOL("MQTT-2.2.1-3");
}

static int dec_connect(struct m2m_mqtt_packet *pkt, struct m2m_rcur *c, struct m2m_mqtt_diag *d)
{
    struct m2m_mqtt_connect *m = &pkt->u.connect;
    struct m2m_slice name;
    uint8_t level, fl;
    if (mqtt_read_str(c, &name))
        return MALFORMED("MQTT-3.1.2.1 protocol name");
    if (name.n != 4 || memcmp(name.p, "MQTT", 4) != 0)
        return fail(d, M2M_EUNSUPPORTED, M2M_MQTT_RC_UNSUPPORTED_PROTOCOL_VERSION, "MQTT-3.1.2-1");
    if (m2m_rcur_u8(c, &level))
        return MALFORMED("MQTT-3.1.2.2 protocol level");
    if (level != M2M_MQTT_V311 && level != M2M_MQTT_V5)
        return fail(d, M2M_EUNSUPPORTED, M2M_MQTT_RC_UNSUPPORTED_PROTOCOL_VERSION, "MQTT-3.1.2-2");
    pkt->version = level;
    if (m2m_rcur_u8(c, &fl) || m2m_rcur_be16(c, &m->keep_alive))
        return MALFORMED("MQTT-3.1.2 variable header");
    if (fl & 0x01)
        return MALFORMED("MQTT-3.1.2-3"); /* reserved flag */
    m->clean_start = fl & 0x02;
    m->will = fl & 0x04;
    m->will_qos = (fl >> 3) & 3;
    m->will_retain = fl & 0x20;
    m->has_password = fl & 0x40;
    m->has_username = fl & 0x80;
    if (!m->will && m->will_qos)
        return MALFORMED("MQTT-3.1.2-11"); /* 3.1.1: MQTT-3.1.2-13 */
    if (m->will_qos == 3)
        return MALFORMED("MQTT-3.1.2-12"); /* 3.1.1: MQTT-3.1.2-14 */
    if (!m->will && m->will_retain)
        return MALFORMED("MQTT-3.1.2-13"); /* 3.1.1: MQTT-3.1.2-15 */
    if (level == M2M_MQTT_V311 && m->has_password && !m->has_username)
        return MALFORMED("MQTT-3.1.2-22 (3.1.1) password without user name");
    int rc = read_props(c, level, M2M_MQTT_CONNECT, &m->props, d);
    if (rc)
        return rc;
    if (mqtt_read_str(c, &m->client_id))
        return MALFORMED("MQTT-3.1.3-4 client identifier");
    if (m->will) {
        rc = read_props(c, level, M2M_MQTT_CTX_WILL, &m->will_props, d);
        if (rc)
            return rc;
        if (mqtt_read_str(c, &m->will_topic) || mqtt_read_bin(c, &m->will_payload))
            return MALFORMED("MQTT-3.1.3-11 will topic and payload");
        if (!m2m_mqtt_topic_valid(m->will_topic))
            return fail(d, M2M_EMALFORMED, M2M_MQTT_RC_TOPIC_NAME_INVALID, "MQTT-3.3.2-2 will topic");
    }
    if (m->has_username && mqtt_read_str(c, &m->username))
        return MALFORMED("MQTT-3.1.3-12 user name");
    if (m->has_password && mqtt_read_bin(c, &m->password))
        return MALFORMED("MQTT-3.1.3.6 password");
    return 0;
}

static int dec_connack(struct m2m_mqtt_packet *pkt, struct m2m_rcur *c, struct m2m_mqtt_diag *d)
{
    struct m2m_mqtt_connack *m = &pkt->u.connack;
    uint8_t fl;
    if (m2m_rcur_u8(c, &fl) || m2m_rcur_u8(c, &m->rc))
        return MALFORMED("MQTT-3.2.2 variable header");
    if (fl & 0xfe)
        return MALFORMED("MQTT-3.2.2-1"); /* reserved acknowledge flags */
    m->session_present = fl & 1;
    if (pkt->version == M2M_MQTT_V311 && m->rc > M2M_MQTT311_NOT_AUTHORIZED)
        return MALFORMED("MQTT-3.2.2.3 (3.1.1) return code");
    if (pkt->version == M2M_MQTT_V5 && m->rc != 0 && m->rc < 0x80)
        return MALFORMED("MQTT-3.2.2.2 reason code");
    if (m->rc && m->session_present)
        return PROTOCOL("MQTT-3.2.2-6"); /* 3.1.1: MQTT-3.2.2-4 */
    return read_props(c, pkt->version, M2M_MQTT_CONNACK, &m->props, d);
}

static int dec_publish(struct m2m_mqtt_packet *pkt, uint8_t fl, struct m2m_rcur *c, struct m2m_mqtt_diag *d)
{
    struct m2m_mqtt_publish *m = &pkt->u.publish;
    m->dup = fl & 8;
    m->qos = (fl >> 1) & 3;
    m->retain = fl & 1;
    if (m->qos == 3)
        return MALFORMED("MQTT-3.3.1-4");
    if (m->qos == 0 && m->dup)
        return MALFORMED("MQTT-3.3.1-2");
    if (mqtt_read_str(c, &m->topic))
        return MALFORMED("MQTT-3.3.2-1 topic name");
    if (m->topic.n && !m2m_mqtt_topic_valid(m->topic))
        return fail(d, M2M_EMALFORMED, M2M_MQTT_RC_TOPIC_NAME_INVALID, "MQTT-3.3.2-2");
    int rc;
    if (m->qos && (rc = read_pid(c, &m->packet_id, d)) != 0)
        return rc;
    rc = read_props(c, pkt->version, M2M_MQTT_PUBLISH, &m->props, d);
    if (rc)
        return rc;
    /* An empty Topic Name needs a Topic Alias (§3.3.2.3.4); 3.1.1 has no
     * aliases, so there it is always invalid ([MQTT-4.7.3-1]). */
    if (m->topic.n == 0 && !m2m_mqtt_props_has(&m->props, M2M_MQTT_P_TOPIC_ALIAS))
        return PROTOCOL("MQTT-4.7.3-1 empty topic without alias");
    m2m_rcur_take(c, m2m_rcur_left(c), &m->payload);
    return 0;
}

/* PUBACK, PUBREC, PUBREL, PUBCOMP (§3.4-§3.7): the Reason Code and the
 * properties may be omitted in MQTT 5 ([MQTT-3.4.2-1] and §3.4.2.1). */
static int dec_ack(struct m2m_mqtt_packet *pkt, struct m2m_rcur *c, struct m2m_mqtt_diag *d)
{
    struct m2m_mqtt_ack *m = &pkt->u.ack;
    int rc = read_pid(c, &m->packet_id, d);
    if (rc || pkt->version != M2M_MQTT_V5 || !m2m_rcur_left(c))
        return rc;
    m2m_rcur_u8(c, &m->rc);
    if (!m2m_rcur_left(c))
        return 0;
    return read_props(c, pkt->version, pkt->type, &m->props, d);
}

static int dec_subscribe(struct m2m_mqtt_packet *pkt, struct m2m_rcur *c, struct m2m_mqtt_diag *d)
{
    struct m2m_mqtt_subscribe *m = &pkt->u.subscribe;
    int rc = read_pid(c, &m->packet_id, d);
    if (!rc)
        rc = read_props(c, pkt->version, M2M_MQTT_SUBSCRIBE, &m->props, d);
    if (rc)
        return rc;
    while (m2m_rcur_left(c)) {
        if (m->n == M2M_MQTT_MAX_FILTERS)
            return fail(d, M2M_ELIMIT, M2M_MQTT_RC_IMPLEMENTATION_SPECIFIC, "topic filter cap");
        struct m2m_mqtt_subscription *s = &m->sub[m->n++];
        uint8_t o;
        if (mqtt_read_str(c, &s->filter) || m2m_rcur_u8(c, &o))
            return MALFORMED("MQTT-3.8.3-1 topic filter");
        if (!m2m_mqtt_filter_valid(s->filter))
            return fail(d, M2M_EMALFORMED, M2M_MQTT_RC_TOPIC_FILTER_INVALID, "MQTT-4.7.1 topic filter");
        s->qos = o & 3;
        if (pkt->version == M2M_MQTT_V311 && (o & 0xfc))
            return MALFORMED("MQTT-3-8.3-4 (3.1.1) reserved option bits");
        if (o & 0xc0)
            return MALFORMED("MQTT-3.8.3-5 reserved option bits");
        if (s->qos == 3)
            return MALFORMED("MQTT-3.8.3-2 QoS 3"); /* 3.1.1: MQTT-3-8.3-4 */
        s->no_local = o & 4;
        s->retain_as_published = o & 8;
        s->retain_handling = (o >> 4) & 3;
        if (s->retain_handling == 3)
            return PROTOCOL("MQTT-3.8.3.1 retain handling 3");
        if (s->no_local && m2m_mqtt_filter_shared(s->filter, NULL, NULL))
            return PROTOCOL("MQTT-3.8.3-4 no local on a shared subscription");
    }
    return m->n ? 0 : PROTOCOL("MQTT-3.8.3-3 no topic filter");
}

/* SUBACK and UNSUBACK: a list of reason codes (none in a 3.1.1 UNSUBACK). */
static int dec_suback(struct m2m_mqtt_packet *pkt, struct m2m_rcur *c, struct m2m_mqtt_diag *d)
{
    struct m2m_mqtt_suback *m = &pkt->u.suback;
    int rc = read_pid(c, &m->packet_id, d);
    if (!rc)
        rc = read_props(c, pkt->version, pkt->type, &m->props, d);
    if (rc)
        return rc;
    if (pkt->type == M2M_MQTT_UNSUBACK && pkt->version == M2M_MQTT_V311)
        return 0; /* the caller's trailing-bytes check applies */
    while (m2m_rcur_left(c)) {
        if (m->n == M2M_MQTT_MAX_FILTERS)
            return fail(d, M2M_ELIMIT, M2M_MQTT_RC_IMPLEMENTATION_SPECIFIC, "reason code cap");
        uint8_t r = 0;
        m2m_rcur_u8(c, &r);
        /* 3.1.1 [MQTT-3.9.3-2]: 0x00, 0x01, 0x02 or 0x80 only. */
        if (pkt->version == M2M_MQTT_V311 && r > 2 && r != 0x80)
            return MALFORMED("MQTT-3.9.3-2 (3.1.1) return code");
        m->rc[m->n++] = r;
    }
    return m->n ? 0 : PROTOCOL("MQTT-3.9.3 no reason code");
}

static int dec_unsubscribe(struct m2m_mqtt_packet *pkt, struct m2m_rcur *c, struct m2m_mqtt_diag *d)
{
    struct m2m_mqtt_unsubscribe *m = &pkt->u.unsubscribe;
    int rc = read_pid(c, &m->packet_id, d);
    if (!rc)
        rc = read_props(c, pkt->version, M2M_MQTT_UNSUBSCRIBE, &m->props, d);
    if (rc)
        return rc;
    while (m2m_rcur_left(c)) {
        if (m->n == M2M_MQTT_MAX_FILTERS)
            return fail(d, M2M_ELIMIT, M2M_MQTT_RC_IMPLEMENTATION_SPECIFIC, "topic filter cap");
        struct m2m_slice *f = &m->filter[m->n++];
        if (mqtt_read_str(c, f))
            return MALFORMED("MQTT-3.10.3-1 topic filter");
        if (!m2m_mqtt_filter_valid(*f))
            return fail(d, M2M_EMALFORMED, M2M_MQTT_RC_TOPIC_FILTER_INVALID, "MQTT-4.7.1 topic filter");
    }
    return m->n ? 0 : PROTOCOL("MQTT-3.10.3-2 no topic filter");
}

/* DISCONNECT and AUTH: both Reason Code and properties may be omitted
 * (§3.14.2.1, §3.15.2.1). 3.1.1 DISCONNECT is empty. */
static int dec_disconnect(struct m2m_mqtt_packet *pkt, struct m2m_rcur *c, struct m2m_mqtt_diag *d)
{
    struct m2m_mqtt_disconnect *m = &pkt->u.disconnect;
    if (pkt->version != M2M_MQTT_V5 || !m2m_rcur_left(c))
        return 0;
    m2m_rcur_u8(c, &m->rc);
    if (!m2m_rcur_left(c))
        return 0;
    return read_props(c, pkt->version, pkt->type, &m->props, d);
}

/* [MQTT-2.1.3-1]: the fixed-header flags each packet type must carry. */
static bool flags_ok(uint8_t type, uint8_t fl)
{
    switch (type) {
    case M2M_MQTT_PUBLISH: return true; /* DUP, QoS, RETAIN: checked later */
    case M2M_MQTT_PUBREL:
    case M2M_MQTT_SUBSCRIBE:
    case M2M_MQTT_UNSUBSCRIBE: return fl == 2;
    default: return fl == 0;
    }
}

int m2m_mqtt_decode(struct m2m_mqtt_packet *pkt, enum m2m_mqtt_version version, const uint8_t *p, size_t n,
                    struct m2m_mqtt_diag *d)
{
    memset(pkt, 0, sizeof *pkt);
    if (d) {
        d->reason = 0;
        d->rule = NULL;
    }
    struct m2m_rcur c;
    m2m_rcur_init(&c, p, n);
    uint8_t b0;
    uint32_t rl;
    if (m2m_rcur_u8(&c, &b0) || m2m_varint_read(&c, 4, &rl))
        return MALFORMED("MQTT-1.5.5-1 fixed header");
    if (rl != m2m_rcur_left(&c))
        return MALFORMED("MQTT-2.1.4 remaining length");
    uint8_t type = b0 >> 4, fl = b0 & 0x0f;
    pkt->type = type;
    pkt->version = (uint8_t)version;
    if (type != M2M_MQTT_CONNECT && version != M2M_MQTT_V311 && version != M2M_MQTT_V5)
        return M2M_EINVAL;
    if (type == 0 || (type == M2M_MQTT_AUTH && version != M2M_MQTT_V5))
        return MALFORMED("MQTT-2.1.2 reserved packet type");
    if (!flags_ok(type, fl))
        return MALFORMED("MQTT-2.1.3-1 fixed header flags");
    int rc = 0;
    switch (type) {
    case M2M_MQTT_CONNECT: rc = dec_connect(pkt, &c, d); break;
    case M2M_MQTT_CONNACK: rc = dec_connack(pkt, &c, d); break;
    case M2M_MQTT_PUBLISH: rc = dec_publish(pkt, fl, &c, d); break;
    case M2M_MQTT_PUBACK:
    case M2M_MQTT_PUBREC:
    case M2M_MQTT_PUBREL:
    case M2M_MQTT_PUBCOMP: rc = dec_ack(pkt, &c, d); break;
    case M2M_MQTT_SUBSCRIBE: rc = dec_subscribe(pkt, &c, d); break;
    case M2M_MQTT_SUBACK:
    case M2M_MQTT_UNSUBACK: rc = dec_suback(pkt, &c, d); break;
    case M2M_MQTT_UNSUBSCRIBE: rc = dec_unsubscribe(pkt, &c, d); break;
    case M2M_MQTT_DISCONNECT:
    case M2M_MQTT_AUTH: rc = dec_disconnect(pkt, &c, d); break;
    default: break; /* PINGREQ, PINGRESP: no body */
    }
    if (rc)
        return rc;
    if (m2m_rcur_left(&c))
        return MALFORMED("MQTT-2.1.4 bytes after the packet");
    return 0;
}

/* ---- encoder -------------------------------------------------------------- */

/* One code path sizes (w.p == NULL: only count) and writes, so the two can
 * never disagree; `err` collects what cannot be encoded. */
struct enc {
    struct m2m_wcur w;
    int err;
};

static void put_u8(struct enc *e, uint8_t v)
{
    if (e->w.p)
        m2m_wcur_u8(&e->w, v);
    else
        e->w.off++;
}

static void put_be16(struct enc *e, uint16_t v)
{
    put_u8(e, (uint8_t)(v >> 8));
    put_u8(e, (uint8_t)v);
}

static void put_varint(struct enc *e, uint32_t v)
{
    if (e->w.p)
        m2m_varint_write(&e->w, 4, v);
    else
        e->w.off += m2m_varint_size(v);
}

static void put_bytes(struct enc *e, struct m2m_slice s)
{
    if (e->w.p && s.n)
        m2m_wcur_bytes(&e->w, s.p, s.n);
    else if (!e->w.p)
        e->w.off += s.n;
}

static void put_bin(struct enc *e, struct m2m_slice s)
{
    if (s.n > UINT16_MAX) {
        e->err = M2M_EINVAL;
        return;
    }
    put_be16(e, (uint16_t)s.n);
    put_bytes(e, s);
}

static void put_props(struct enc *e, uint8_t ver, const struct m2m_mqtt_props *pr)
{
    if (ver != M2M_MQTT_V5)
        return;
    size_t sz = m2m_mqtt_props_size(pr);
    if (sz > M2M_MQTT_MAX_REMAINING) {
        e->err = M2M_EINVAL;
        return;
    }
    put_varint(e, (uint32_t)sz);
    if (!e->w.p) {
        e->w.off += sz;
        return;
    }
    size_t len = 0;
    m2m_mqtt_props_encode(pr, e->w.p + e->w.off, e->w.cap - e->w.off, &len);
    e->w.off += len;
}

static bool props_empty(const struct m2m_mqtt_props *pr)
{
    return m2m_mqtt_props_size(pr) == 0;
}

static void enc_connect(struct enc *e, uint8_t ver, const struct m2m_mqtt_connect *m)
{
    static const uint8_t name[] = {0, 4, 'M', 'Q', 'T', 'T'};
    if (m->will_qos > 2 || (!m->will && (m->will_qos || m->will_retain)) ||
        (ver == M2M_MQTT_V311 && m->has_password && !m->has_username))
        e->err = M2M_EINVAL;
    put_bytes(e, (struct m2m_slice){name, sizeof name});
    put_u8(e, ver);
    put_u8(e, (uint8_t)(m->has_username << 7 | m->has_password << 6 | m->will_retain << 5 | m->will_qos << 3 |
                        m->will << 2 | m->clean_start << 1));
    put_be16(e, m->keep_alive);
    put_props(e, ver, &m->props);
    put_bin(e, m->client_id);
    if (m->will) {
        put_props(e, ver, &m->will_props);
        put_bin(e, m->will_topic);
        put_bin(e, m->will_payload);
    }
    if (m->has_username)
        put_bin(e, m->username);
    if (m->has_password)
        put_bin(e, m->password);
}

static void enc_publish(struct enc *e, uint8_t ver, const struct m2m_mqtt_publish *m)
{
    if (m->qos > 2 || (m->qos && !m->packet_id))
        e->err = M2M_EINVAL;
    put_bin(e, m->topic);
    if (m->qos)
        put_be16(e, m->packet_id);
    put_props(e, ver, &m->props);
    put_bytes(e, m->payload);
}

/* Shortest form: the Reason Code and properties go only when needed. */
static void enc_rc_props(struct enc *e, uint8_t ver, uint8_t rc, const struct m2m_mqtt_props *pr)
{
    if (ver != M2M_MQTT_V5)
        return;
    bool empty = props_empty(pr);
    if (rc == 0 && empty)
        return;
    put_u8(e, rc);
    if (!empty)
        put_props(e, ver, pr);
}

static void enc_subscribe(struct enc *e, uint8_t ver, const struct m2m_mqtt_subscribe *m)
{
    if (m->n == 0 || m->n > M2M_MQTT_MAX_FILTERS) {
        e->err = M2M_EINVAL;
        return;
    }
    put_be16(e, m->packet_id);
    put_props(e, ver, &m->props);
    for (size_t i = 0; i < m->n; i++) {
        const struct m2m_mqtt_subscription *s = &m->sub[i];
        if (s->qos > 2 || s->retain_handling > 2)
            e->err = M2M_EINVAL;
        uint8_t o = s->qos;
        if (ver == M2M_MQTT_V5)
            o |= (uint8_t)(s->no_local << 2 | s->retain_as_published << 3 | s->retain_handling << 4);
        put_bin(e, s->filter);
        put_u8(e, o);
    }
}

static void enc_suback(struct enc *e, uint8_t ver, uint8_t type, const struct m2m_mqtt_suback *m)
{
    if (m->n > M2M_MQTT_MAX_FILTERS) {
        e->err = M2M_EINVAL;
        return;
    }
    put_be16(e, m->packet_id);
    put_props(e, ver, &m->props);
    if (type == M2M_MQTT_UNSUBACK && ver == M2M_MQTT_V311)
        return;
    for (size_t i = 0; i < m->n; i++)
        put_u8(e, m->rc[i]);
}

static void enc_unsubscribe(struct enc *e, uint8_t ver, const struct m2m_mqtt_unsubscribe *m)
{
    if (m->n == 0 || m->n > M2M_MQTT_MAX_FILTERS) {
        e->err = M2M_EINVAL;
        return;
    }
    put_be16(e, m->packet_id);
    put_props(e, ver, &m->props);
    for (size_t i = 0; i < m->n; i++)
        put_bin(e, m->filter[i]);
}

/* Writes (or counts) the variable header and payload; returns the flags of
 * the fixed header. */
static uint8_t enc_body(struct enc *e, const struct m2m_mqtt_packet *pkt)
{
    uint8_t ver = pkt->version;
    switch (pkt->type) {
    case M2M_MQTT_CONNECT: enc_connect(e, ver, &pkt->u.connect); return 0;
    case M2M_MQTT_CONNACK:
        put_u8(e, pkt->u.connack.session_present ? 1 : 0);
        put_u8(e, pkt->u.connack.rc);
        put_props(e, ver, &pkt->u.connack.props);
        return 0;
    case M2M_MQTT_PUBLISH: {
        const struct m2m_mqtt_publish *m = &pkt->u.publish;
        enc_publish(e, ver, m);
        return (uint8_t)(m->dup << 3 | (m->qos & 3) << 1 | m->retain);
    }
    case M2M_MQTT_PUBACK:
    case M2M_MQTT_PUBREC:
    case M2M_MQTT_PUBREL:
    case M2M_MQTT_PUBCOMP:
        put_be16(e, pkt->u.ack.packet_id);
        enc_rc_props(e, ver, pkt->u.ack.rc, &pkt->u.ack.props);
        return pkt->type == M2M_MQTT_PUBREL ? 2 : 0;
    case M2M_MQTT_SUBSCRIBE: enc_subscribe(e, ver, &pkt->u.subscribe); return 2;
    case M2M_MQTT_SUBACK:
    case M2M_MQTT_UNSUBACK: enc_suback(e, ver, pkt->type, &pkt->u.suback); return 0;
    case M2M_MQTT_UNSUBSCRIBE: enc_unsubscribe(e, ver, &pkt->u.unsubscribe); return 2;
    case M2M_MQTT_PINGREQ:
    case M2M_MQTT_PINGRESP: return 0;
    case M2M_MQTT_DISCONNECT:
    case M2M_MQTT_AUTH: enc_rc_props(e, ver, pkt->u.disconnect.rc, &pkt->u.disconnect.props); return 0;
    default: e->err = M2M_EINVAL; return 0;
    }
}

/* Sizes pkt: the Remaining Length in *rl and the whole length returned, or
 * a negative error. */
static int measure(const struct m2m_mqtt_packet *pkt, uint32_t *rl, size_t *total)
{
    if ((pkt->version != M2M_MQTT_V311 && pkt->version != M2M_MQTT_V5) ||
        (pkt->type == M2M_MQTT_AUTH && pkt->version != M2M_MQTT_V5))
        return M2M_EINVAL;
    struct enc e = {{NULL, 0, 0}, 0};
    enc_body(&e, pkt);
    if (e.err)
        return e.err;
    if (e.w.off > M2M_MQTT_MAX_REMAINING)
        return M2M_EINVAL;
    *rl = (uint32_t)e.w.off;
    *total = 1 + m2m_varint_size(*rl) + e.w.off;
    return 0;
}

size_t m2m_mqtt_encoded_size(const struct m2m_mqtt_packet *pkt)
{
    uint32_t rl;
    size_t total;
    return measure(pkt, &rl, &total) ? 0 : total;
}

int m2m_mqtt_encode(const struct m2m_mqtt_packet *pkt, uint8_t *buf, size_t cap, size_t *len)
{
    uint32_t rl;
    size_t total;
    int rc = measure(pkt, &rl, &total);
    if (rc)
        return rc;
    if (total > cap)
        return M2M_ENOBUFS;
    struct enc e = {{buf, cap, 0}, 0};
    put_u8(&e, 0); /* the flags are known once the body is written */
    put_varint(&e, rl);
    uint8_t fl = enc_body(&e, pkt);
    buf[0] = (uint8_t)(pkt->type << 4 | fl);
    *len = e.w.off;
    return 0;
}
