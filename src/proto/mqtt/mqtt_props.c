/* MQTT 5 properties (§2.2.2): decode with the rules on where each property
 * may appear, duplicates and value ranges; encode from the parsed struct. */
#include <string.h>

#include "base/cursor.h"
#include "base/utf8.h"
#include "base/varint.h"
#include "m2m/mqtt.h"
#include "mqtt_internal.h"

#define W(t) (1u << (t))
#define WILL W(M2M_MQTT_CTX_WILL)
#define ACKS (W(M2M_MQTT_PUBACK) | W(M2M_MQTT_PUBREC) | W(M2M_MQTT_PUBREL) | W(M2M_MQTT_PUBCOMP))

struct prop_info {
    uint8_t type;   /* enum m2m_mqtt_ptype, 0 = unknown */
    uint16_t where; /* contexts (bit M2M_MQTT_CTX_WILL or packet type) */
};

/* The table of §2.2.2.2: identifier -> wire type and packets. */
static const struct prop_info PROPS[0x2b] = {
    [M2M_MQTT_P_PAYLOAD_FORMAT] = {M2M_MQTT_PT_BYTE, W(M2M_MQTT_PUBLISH) | WILL},
    [M2M_MQTT_P_MESSAGE_EXPIRY] = {M2M_MQTT_PT_U32, W(M2M_MQTT_PUBLISH) | WILL},
    [M2M_MQTT_P_CONTENT_TYPE] = {M2M_MQTT_PT_STRING, W(M2M_MQTT_PUBLISH) | WILL},
    [M2M_MQTT_P_RESPONSE_TOPIC] = {M2M_MQTT_PT_STRING, W(M2M_MQTT_PUBLISH) | WILL},
    [M2M_MQTT_P_CORRELATION_DATA] = {M2M_MQTT_PT_BINARY, W(M2M_MQTT_PUBLISH) | WILL},
    [M2M_MQTT_P_SUBSCRIPTION_ID] = {M2M_MQTT_PT_VARINT, W(M2M_MQTT_PUBLISH) | W(M2M_MQTT_SUBSCRIBE)},
    [M2M_MQTT_P_SESSION_EXPIRY] = {M2M_MQTT_PT_U32,
                                   W(M2M_MQTT_CONNECT) | W(M2M_MQTT_CONNACK) | W(M2M_MQTT_DISCONNECT)},
    [M2M_MQTT_P_ASSIGNED_CLIENT_ID] = {M2M_MQTT_PT_STRING, W(M2M_MQTT_CONNACK)},
    [M2M_MQTT_P_SERVER_KEEP_ALIVE] = {M2M_MQTT_PT_U16, W(M2M_MQTT_CONNACK)},
    [M2M_MQTT_P_AUTH_METHOD] = {M2M_MQTT_PT_STRING,
                                W(M2M_MQTT_CONNECT) | W(M2M_MQTT_CONNACK) | W(M2M_MQTT_AUTH)},
    [M2M_MQTT_P_AUTH_DATA] = {M2M_MQTT_PT_BINARY,
                              W(M2M_MQTT_CONNECT) | W(M2M_MQTT_CONNACK) | W(M2M_MQTT_AUTH)},
    [M2M_MQTT_P_REQUEST_PROBLEM_INFO] = {M2M_MQTT_PT_BYTE, W(M2M_MQTT_CONNECT)},
    [M2M_MQTT_P_WILL_DELAY] = {M2M_MQTT_PT_U32, WILL},
    [M2M_MQTT_P_REQUEST_RESPONSE_INFO] = {M2M_MQTT_PT_BYTE, W(M2M_MQTT_CONNECT)},
    [M2M_MQTT_P_RESPONSE_INFO] = {M2M_MQTT_PT_STRING, W(M2M_MQTT_CONNACK)},
    [M2M_MQTT_P_SERVER_REFERENCE] = {M2M_MQTT_PT_STRING, W(M2M_MQTT_CONNACK) | W(M2M_MQTT_DISCONNECT)},
    [M2M_MQTT_P_REASON_STRING] = {M2M_MQTT_PT_STRING, W(M2M_MQTT_CONNACK) | ACKS | W(M2M_MQTT_SUBACK) |
                                                          W(M2M_MQTT_UNSUBACK) | W(M2M_MQTT_DISCONNECT) |
                                                          W(M2M_MQTT_AUTH)},
    [M2M_MQTT_P_RECEIVE_MAXIMUM] = {M2M_MQTT_PT_U16, W(M2M_MQTT_CONNECT) | W(M2M_MQTT_CONNACK)},
    [M2M_MQTT_P_TOPIC_ALIAS_MAXIMUM] = {M2M_MQTT_PT_U16, W(M2M_MQTT_CONNECT) | W(M2M_MQTT_CONNACK)},
    [M2M_MQTT_P_TOPIC_ALIAS] = {M2M_MQTT_PT_U16, W(M2M_MQTT_PUBLISH)},
    [M2M_MQTT_P_MAXIMUM_QOS] = {M2M_MQTT_PT_BYTE, W(M2M_MQTT_CONNACK)},
    [M2M_MQTT_P_RETAIN_AVAILABLE] = {M2M_MQTT_PT_BYTE, W(M2M_MQTT_CONNACK)},
    [M2M_MQTT_P_USER_PROPERTY] = {M2M_MQTT_PT_PAIR, 0xffff},
    [M2M_MQTT_P_MAXIMUM_PACKET_SIZE] = {M2M_MQTT_PT_U32, W(M2M_MQTT_CONNECT) | W(M2M_MQTT_CONNACK)},
    [M2M_MQTT_P_WILDCARD_SUB_AVAILABLE] = {M2M_MQTT_PT_BYTE, W(M2M_MQTT_CONNACK)},
    [M2M_MQTT_P_SUBSCRIPTION_ID_AVAILABLE] = {M2M_MQTT_PT_BYTE, W(M2M_MQTT_CONNACK)},
    [M2M_MQTT_P_SHARED_SUB_AVAILABLE] = {M2M_MQTT_PT_BYTE, W(M2M_MQTT_CONNACK)},
};

enum m2m_mqtt_ptype m2m_mqtt_prop_type(uint8_t id)
{
    return id < sizeof PROPS / sizeof PROPS[0] ? (enum m2m_mqtt_ptype)PROPS[id].type : 0;
}

bool m2m_mqtt_prop_allowed(uint8_t id, unsigned ctx)
{
    if (!m2m_mqtt_prop_type(id) || ctx > M2M_MQTT_AUTH)
        return false;
    /* User Property goes everywhere except PINGREQ/PINGRESP, which carry none. */
    if (ctx == M2M_MQTT_PINGREQ || ctx == M2M_MQTT_PINGRESP)
        return false;
    return (PROPS[id].where >> ctx) & 1;
}

static int fail(struct m2m_mqtt_diag *d, int rc, uint8_t reason, const char *rule)
{
    if (d) {
        d->reason = reason;
        d->rule = rule;
    }
    return rc;
}

static int read_u32(struct m2m_rcur *c, uint32_t *v)
{
    uint16_t hi, lo;
    if (m2m_rcur_be16(c, &hi) || m2m_rcur_be16(c, &lo))
        return M2M_EMALFORMED;
    *v = (uint32_t)hi << 16 | lo;
    return 0;
}

/* Stores a byte property that must be 0 or 1 (Protocol Error otherwise). */
static bool flag_ok(uint8_t v)
{
    return v <= 1;
}

int m2m_mqtt_props_decode(struct m2m_mqtt_props *pr, unsigned ctx, const uint8_t *p, size_t n,
                          struct m2m_mqtt_diag *d)
{
    memset(pr, 0, sizeof *pr);
    pr->raw.p = p;
    pr->raw.n = n;
    struct m2m_rcur c;
    m2m_rcur_init(&c, p, n);
    while (m2m_rcur_left(&c)) {
        uint32_t id32;
        /* The identifier is a variable byte integer (§2.2.2.2), in
         * practice a single byte. */
        if (m2m_varint_read(&c, 4, &id32))
            return fail(d, M2M_EMALFORMED, M2M_MQTT_RC_MALFORMED_PACKET, "MQTT-1.5.5-1");
        if (id32 > 0xff || !m2m_mqtt_prop_allowed((uint8_t)id32, ctx))
            return fail(d, M2M_EMALFORMED, M2M_MQTT_RC_MALFORMED_PACKET, "MQTT-2.2.2.2 property not allowed");
        uint8_t id = (uint8_t)id32;
        bool dup = m2m_mqtt_props_has(pr, id);
        if (dup && id != M2M_MQTT_P_USER_PROPERTY &&
            !(id == M2M_MQTT_P_SUBSCRIPTION_ID && ctx == M2M_MQTT_PUBLISH))
            return fail(d, M2M_EMALFORMED, M2M_MQTT_RC_PROTOCOL_ERROR, "MQTT-2.2.2.2 duplicate property");
        m2m_mqtt_props_set(pr, id);
        uint8_t b = 0;
        uint16_t w = 0;
        uint32_t v = 0;
        struct m2m_slice s = {0}, s2 = {0};
        int rc = 0;
        switch (m2m_mqtt_prop_type(id)) {
        case M2M_MQTT_PT_BYTE: rc = m2m_rcur_u8(&c, &b); break;
        case M2M_MQTT_PT_U16: rc = m2m_rcur_be16(&c, &w); break;
        case M2M_MQTT_PT_U32: rc = read_u32(&c, &v); break;
        case M2M_MQTT_PT_VARINT: rc = m2m_varint_read(&c, 4, &v); break;
        case M2M_MQTT_PT_STRING: rc = mqtt_read_str(&c, &s); break;
        case M2M_MQTT_PT_BINARY: rc = mqtt_read_bin(&c, &s); break;
        case M2M_MQTT_PT_PAIR:
            rc = mqtt_read_str(&c, &s) || mqtt_read_str(&c, &s2) ? M2M_EMALFORMED : 0;
            break;
        default: rc = M2M_EMALFORMED; break;
        }
        if (rc)
            return fail(d, M2M_EMALFORMED, M2M_MQTT_RC_MALFORMED_PACKET, "MQTT-2.2.2 property value");
        bool ok = true;
        switch (id) {
        case M2M_MQTT_P_PAYLOAD_FORMAT: ok = flag_ok(b), pr->payload_format = b; break;
        case M2M_MQTT_P_MESSAGE_EXPIRY: pr->message_expiry = v; break;
        case M2M_MQTT_P_CONTENT_TYPE: pr->content_type = s; break;
        case M2M_MQTT_P_RESPONSE_TOPIC:
            /* [MQTT-3.3.2-14]: a Topic Name, so no wildcards. */
            ok = m2m_mqtt_topic_valid(s), pr->response_topic = s;
            break;
        case M2M_MQTT_P_CORRELATION_DATA: pr->correlation_data = s; break;
        case M2M_MQTT_P_SUBSCRIPTION_ID:
            /* 1..268,435,455 (§3.3.2.3.8); 0 is a Protocol Error. */
            if (v == 0 || v > M2M_MQTT_MAX_REMAINING) {
                ok = false;
                break;
            }
            if (pr->nsubid >= M2M_MQTT_MAX_SUBIDS)
                return fail(d, M2M_ELIMIT, M2M_MQTT_RC_IMPLEMENTATION_SPECIFIC, "subscription id cap");
            pr->subid[pr->nsubid++] = v;
            break;
        case M2M_MQTT_P_SESSION_EXPIRY: pr->session_expiry = v; break;
        case M2M_MQTT_P_ASSIGNED_CLIENT_ID: pr->assigned_client_id = s; break;
        case M2M_MQTT_P_SERVER_KEEP_ALIVE: pr->server_keep_alive = w; break;
        case M2M_MQTT_P_AUTH_METHOD: pr->auth_method = s; break;
        case M2M_MQTT_P_AUTH_DATA: pr->auth_data = s; break;
        case M2M_MQTT_P_REQUEST_PROBLEM_INFO: ok = flag_ok(b), pr->request_problem_info = b; break;
        case M2M_MQTT_P_WILL_DELAY: pr->will_delay = v; break;
        case M2M_MQTT_P_REQUEST_RESPONSE_INFO: ok = flag_ok(b), pr->request_response_info = b; break;
        case M2M_MQTT_P_RESPONSE_INFO: pr->response_info = s; break;
        case M2M_MQTT_P_SERVER_REFERENCE: pr->server_reference = s; break;
        case M2M_MQTT_P_REASON_STRING: pr->reason_string = s; break;
        case M2M_MQTT_P_RECEIVE_MAXIMUM: ok = w != 0, pr->receive_maximum = w; break;
        case M2M_MQTT_P_TOPIC_ALIAS_MAXIMUM: pr->topic_alias_maximum = w; break;
        case M2M_MQTT_P_TOPIC_ALIAS: ok = w != 0, pr->topic_alias = w; break; /* [MQTT-3.3.2-8] */
        case M2M_MQTT_P_MAXIMUM_QOS: ok = flag_ok(b), pr->maximum_qos = b; break;
        case M2M_MQTT_P_RETAIN_AVAILABLE: ok = flag_ok(b), pr->retain_available = b; break;
        case M2M_MQTT_P_USER_PROPERTY:
            if (pr->nuser == UINT16_MAX)
                return fail(d, M2M_ELIMIT, M2M_MQTT_RC_IMPLEMENTATION_SPECIFIC, "user property cap");
            pr->nuser++;
            break;
        case M2M_MQTT_P_MAXIMUM_PACKET_SIZE: ok = v != 0, pr->maximum_packet_size = v; break;
        case M2M_MQTT_P_WILDCARD_SUB_AVAILABLE: ok = flag_ok(b), pr->wildcard_sub_available = b; break;
        case M2M_MQTT_P_SUBSCRIPTION_ID_AVAILABLE: ok = flag_ok(b), pr->subscription_id_available = b; break;
        case M2M_MQTT_P_SHARED_SUB_AVAILABLE: ok = flag_ok(b), pr->shared_sub_available = b; break;
        default: break;
        }
        if (!ok)
            return fail(d, M2M_EMALFORMED, M2M_MQTT_RC_PROTOCOL_ERROR, "MQTT-2.2.2.2 property value range");
    }
    return 0;
}

void m2m_mqtt_user_iter_init(struct m2m_mqtt_user_iter *it, const struct m2m_mqtt_props *props)
{
    it->raw = props->raw;
    it->off = 0;
}

/* Skips one property of a block that m2m_mqtt_props_decode already accepted. */
bool m2m_mqtt_user_next(struct m2m_mqtt_user_iter *it, struct m2m_mqtt_pair *out)
{
    struct m2m_rcur c;
    m2m_rcur_init(&c, it->raw.p, it->raw.n);
    c.off = it->off;
    while (m2m_rcur_left(&c)) {
        uint32_t id;
        uint8_t b;
        uint16_t w;
        uint32_t v;
        struct m2m_slice s, s2;
        int rc = m2m_varint_read(&c, 4, &id);
        if (rc || id > 0xff)
            break;
        switch (m2m_mqtt_prop_type((uint8_t)id)) {
        case M2M_MQTT_PT_BYTE: rc = m2m_rcur_u8(&c, &b); break;
        case M2M_MQTT_PT_U16: rc = m2m_rcur_be16(&c, &w); break;
        case M2M_MQTT_PT_U32: rc = read_u32(&c, &v); break;
        case M2M_MQTT_PT_VARINT: rc = m2m_varint_read(&c, 4, &v); break;
        case M2M_MQTT_PT_STRING:
        case M2M_MQTT_PT_BINARY: rc = mqtt_read_bin(&c, &s); break;
        case M2M_MQTT_PT_PAIR:
            if (mqtt_read_bin(&c, &s) || mqtt_read_bin(&c, &s2))
                goto end;
            out->name = s;
            out->value = s2;
            it->off = c.off;
            return true;
        default: rc = M2M_EMALFORMED; break;
        }
        if (rc)
            break;
    }
end:
    it->off = it->raw.n;
    return false;
}

/* ---- encoder ---------------------------------------------------------- */

/* A writer that only counts when w->p is NULL, so sizing and writing share
 * one code path and cannot disagree. */
static void put_u8(struct m2m_wcur *w, uint8_t v)
{
    if (w->p)
        m2m_wcur_u8(w, v);
    else
        w->off++;
}

static void put_be16(struct m2m_wcur *w, uint16_t v)
{
    put_u8(w, (uint8_t)(v >> 8));
    put_u8(w, (uint8_t)v);
}

static void put_be32(struct m2m_wcur *w, uint32_t v)
{
    put_be16(w, (uint16_t)(v >> 16));
    put_be16(w, (uint16_t)v);
}

static void put_varint(struct m2m_wcur *w, uint32_t v)
{
    if (w->p)
        m2m_varint_write(w, 4, v);
    else
        w->off += m2m_varint_size(v);
}

static void put_bin(struct m2m_wcur *w, struct m2m_slice s)
{
    put_be16(w, (uint16_t)s.n);
    if (w->p && s.n)
        m2m_wcur_bytes(w, s.p, s.n);
    else
        w->off += s.n;
}

/* Checks what the writer cannot express; 0 if encodable. */
static int props_check(const struct m2m_mqtt_props *pr)
{
    const struct m2m_slice *ss[] = {&pr->content_type,  &pr->response_topic,     &pr->correlation_data,
                                    &pr->reason_string, &pr->assigned_client_id, &pr->auth_method,
                                    &pr->auth_data,     &pr->server_reference,   &pr->response_info};
    for (size_t i = 0; i < sizeof ss / sizeof ss[0]; i++)
        if (ss[i]->n > UINT16_MAX)
            return M2M_EINVAL;
    if (pr->nsubid > M2M_MQTT_MAX_SUBIDS)
        return M2M_EINVAL;
    for (size_t i = 0; i < pr->nsubid; i++)
        if (pr->subid[i] == 0 || pr->subid[i] > M2M_MQTT_MAX_REMAINING)
            return M2M_EINVAL;
    if (pr->user)
        for (size_t i = 0; i < pr->nuser; i++)
            if (pr->user[i].name.n > UINT16_MAX || pr->user[i].value.n > UINT16_MAX)
                return M2M_EINVAL;
    return 0;
}

static void props_put(struct m2m_wcur *w, const struct m2m_mqtt_props *pr)
{
    for (uint8_t id = 1; id < sizeof PROPS / sizeof PROPS[0]; id++) {
        if (!m2m_mqtt_props_has(pr, id) || id == M2M_MQTT_P_USER_PROPERTY)
            continue;
        if (id == M2M_MQTT_P_SUBSCRIPTION_ID) {
            for (size_t i = 0; i < pr->nsubid; i++) {
                put_u8(w, id);
                put_varint(w, pr->subid[i]);
            }
            continue;
        }
        switch (id) {
        case M2M_MQTT_P_PAYLOAD_FORMAT: put_u8(w, id), put_u8(w, pr->payload_format); break;
        case M2M_MQTT_P_MESSAGE_EXPIRY: put_u8(w, id), put_be32(w, pr->message_expiry); break;
        case M2M_MQTT_P_CONTENT_TYPE: put_u8(w, id), put_bin(w, pr->content_type); break;
        case M2M_MQTT_P_RESPONSE_TOPIC: put_u8(w, id), put_bin(w, pr->response_topic); break;
        case M2M_MQTT_P_CORRELATION_DATA: put_u8(w, id), put_bin(w, pr->correlation_data); break;
        case M2M_MQTT_P_SESSION_EXPIRY: put_u8(w, id), put_be32(w, pr->session_expiry); break;
        case M2M_MQTT_P_ASSIGNED_CLIENT_ID: put_u8(w, id), put_bin(w, pr->assigned_client_id); break;
        case M2M_MQTT_P_SERVER_KEEP_ALIVE: put_u8(w, id), put_be16(w, pr->server_keep_alive); break;
        case M2M_MQTT_P_AUTH_METHOD: put_u8(w, id), put_bin(w, pr->auth_method); break;
        case M2M_MQTT_P_AUTH_DATA: put_u8(w, id), put_bin(w, pr->auth_data); break;
        case M2M_MQTT_P_REQUEST_PROBLEM_INFO: put_u8(w, id), put_u8(w, pr->request_problem_info); break;
        case M2M_MQTT_P_WILL_DELAY: put_u8(w, id), put_be32(w, pr->will_delay); break;
        case M2M_MQTT_P_REQUEST_RESPONSE_INFO: put_u8(w, id), put_u8(w, pr->request_response_info); break;
        case M2M_MQTT_P_RESPONSE_INFO: put_u8(w, id), put_bin(w, pr->response_info); break;
        case M2M_MQTT_P_SERVER_REFERENCE: put_u8(w, id), put_bin(w, pr->server_reference); break;
        case M2M_MQTT_P_REASON_STRING: put_u8(w, id), put_bin(w, pr->reason_string); break;
        case M2M_MQTT_P_RECEIVE_MAXIMUM: put_u8(w, id), put_be16(w, pr->receive_maximum); break;
        case M2M_MQTT_P_TOPIC_ALIAS_MAXIMUM: put_u8(w, id), put_be16(w, pr->topic_alias_maximum); break;
        case M2M_MQTT_P_TOPIC_ALIAS: put_u8(w, id), put_be16(w, pr->topic_alias); break;
        case M2M_MQTT_P_MAXIMUM_QOS: put_u8(w, id), put_u8(w, pr->maximum_qos); break;
        case M2M_MQTT_P_RETAIN_AVAILABLE: put_u8(w, id), put_u8(w, pr->retain_available); break;
        case M2M_MQTT_P_MAXIMUM_PACKET_SIZE: put_u8(w, id), put_be32(w, pr->maximum_packet_size); break;
        case M2M_MQTT_P_WILDCARD_SUB_AVAILABLE: put_u8(w, id), put_u8(w, pr->wildcard_sub_available); break;
        case M2M_MQTT_P_SUBSCRIPTION_ID_AVAILABLE:
            put_u8(w, id), put_u8(w, pr->subscription_id_available);
            break;
        case M2M_MQTT_P_SHARED_SUB_AVAILABLE: put_u8(w, id), put_u8(w, pr->shared_sub_available); break;
        default: break;
        }
    }
    if (pr->user) {
        for (size_t i = 0; i < pr->nuser; i++) {
            put_u8(w, M2M_MQTT_P_USER_PROPERTY);
            put_bin(w, pr->user[i].name);
            put_bin(w, pr->user[i].value);
        }
    } else if (pr->nuser) {
        struct m2m_mqtt_user_iter it;
        struct m2m_mqtt_pair up;
        m2m_mqtt_user_iter_init(&it, pr);
        while (m2m_mqtt_user_next(&it, &up)) {
            put_u8(w, M2M_MQTT_P_USER_PROPERTY);
            put_bin(w, up.name);
            put_bin(w, up.value);
        }
    }
}

size_t m2m_mqtt_props_size(const struct m2m_mqtt_props *pr)
{
    if (props_check(pr))
        return SIZE_MAX;
    struct m2m_wcur w;
    m2m_wcur_init(&w, NULL, 0);
    props_put(&w, pr);
    return w.off;
}

int m2m_mqtt_props_encode(const struct m2m_mqtt_props *pr, uint8_t *buf, size_t cap, size_t *len)
{
    int rc = props_check(pr);
    if (rc)
        return rc;
    size_t need = m2m_mqtt_props_size(pr);
    if (need > cap)
        return M2M_ENOBUFS;
    struct m2m_wcur w;
    m2m_wcur_init(&w, buf, cap);
    props_put(&w, pr);
    *len = w.off;
    return 0;
}
