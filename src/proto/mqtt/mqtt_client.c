/* Client-side MQTT core (see m2m/mqtt_client.h).
 *
 * Outbound QoS>0 messages are kept encoded in their canonical form (full
 * topic, no alias, DUP 0); sending one decodes that copy, applies DUP and a
 * topic alias, and encodes it into the output. Events are queued with a copy
 * of their packet and decoded again when polled, as in mqtt_session.c. */
#include <stdlib.h>
#include <string.h>

#include "m2m/mqtt_client.h"
#include "mqtt_internal.h"

enum client_state { ST_OFFLINE, ST_CONNECTING, ST_CONNECTED };

/* Outbound QoS>0 message states. */
enum { OUT_QUEUED, OUT_WAIT_PUBACK, OUT_WAIT_PUBREC, OUT_WAIT_PUBCOMP };

#define MAX_PENDING_SUBS 64

struct out_msg {
    uint16_t id;
    uint8_t qos;
    uint8_t st;
    uint8_t *raw; /* canonical PUBLISH */
    size_t len;
};

struct ev_node {
    struct ev_node *next;
    struct m2m_mqtt_client_event ev;
    uint8_t *raw; /* packet copy, decoded again when polled */
    size_t len;
    uint8_t *topic; /* resolved PUBLISH topic */
    size_t topic_len;
};

struct blob {
    uint8_t *p;
    size_t n;
    bool set;
};

struct alias {
    uint8_t *p;
    size_t n;
};

/* Inbound QoS 2 messages remembered until their PUBREL. Not capped at our
 * Receive Maximum: we send PUBREC at once, and mosquitto 2.0 frees its send
 * quota at PUBREC, so under load more than Receive Maximum messages can wait
 * for a PUBREL that is on its way. The packet id space is the bound. */
#define IN2_MAX 65535

struct m2m_mqtt_client {
    struct m2m_mqtt_client_config cfg;
    enum client_state st;
    m2m_time now;

    /* Owned copies of the configuration. */
    struct blob client_id, username, password, will_topic, will_payload, will_props, connect_props;
    uint8_t will_qos;
    bool will, will_retain;

    /* What the server said in CONNACK (defaults until then). */
    uint16_t keep_alive;
    uint16_t srv_recv_max;
    uint32_t srv_max_packet; /* 0: no limit */
    uint16_t srv_alias_max;
    uint8_t srv_max_qos;
    bool srv_retain, srv_wildcard, srv_subid, srv_shared;

    /* Timers. */
    m2m_time connect_at, last_tx, ping_at;
    bool ping_out;

    uint8_t *in; /* grows on demand up to in_cap: one packet plus a little */
    size_t in_len, in_alloc, in_cap;
    struct mqtt_outbuf out;

    struct ev_node *ev_head, *ev_tail, *ev_cur;
    size_t nev;
    struct m2m_mqtt_packet ev_pkt;

    struct out_msg *outq; /* in publish order; cfg.max_queued entries */
    size_t noutq;
    uint16_t next_id;

    uint16_t *in2; /* inbound QoS 2 ids awaiting PUBREL, grows up to IN2_MAX */
    size_t nin2, capin2;

    struct {
        uint16_t id;
        uint8_t type;
    } subs[MAX_PENDING_SUBS];
    size_t nsubs;

    struct alias *in_alias;  /* cfg.topic_alias_maximum entries */
    struct alias *out_alias; /* srv_alias_max entries while connected */
    size_t nout_alias;
    bool starved; /* queued messages wait for output space */
};

/* ---- names ---------------------------------------------------------------- */

const char *m2m_mqtt_reason_name(uint8_t code)
{
    switch (code) {
    case 0x00: return "Success";
    case 0x01: return "Granted QoS 1";
    case 0x02: return "Granted QoS 2";
    case 0x04: return "Disconnect with Will Message";
    case 0x10: return "No matching subscribers";
    case 0x11: return "No subscription existed";
    case 0x18: return "Continue authentication";
    case 0x19: return "Re-authenticate";
    case 0x80: return "Unspecified error";
    case 0x81: return "Malformed Packet";
    case 0x82: return "Protocol Error";
    case 0x83: return "Implementation specific error";
    case 0x84: return "Unsupported Protocol Version";
    case 0x85: return "Client Identifier not valid";
    case 0x86: return "Bad User Name or Password";
    case 0x87: return "Not authorized";
    case 0x88: return "Server unavailable";
    case 0x89: return "Server busy";
    case 0x8a: return "Banned";
    case 0x8b: return "Server shutting down";
    case 0x8c: return "Bad authentication method";
    case 0x8d: return "Keep Alive timeout";
    case 0x8e: return "Session taken over";
    case 0x8f: return "Topic Filter invalid";
    case 0x90: return "Topic Name invalid";
    case 0x91: return "Packet Identifier in use";
    case 0x92: return "Packet Identifier not found";
    case 0x93: return "Receive Maximum exceeded";
    case 0x94: return "Topic Alias invalid";
    case 0x95: return "Packet too large";
    case 0x96: return "Message rate too high";
    case 0x97: return "Quota exceeded";
    case 0x98: return "Administrative action";
    case 0x99: return "Payload format invalid";
    case 0x9a: return "Retain not supported";
    case 0x9b: return "QoS not supported";
    case 0x9c: return "Use another server";
    case 0x9d: return "Server moved";
    case 0x9e: return "Shared Subscriptions not supported";
    case 0x9f: return "Connection rate exceeded";
    case 0xa0: return "Maximum connect time";
    case 0xa1: return "Subscription Identifiers not supported";
    case 0xa2: return "Wildcard Subscriptions not supported";
    default: return "Unknown";
    }
}

const char *m2m_mqtt311_connack_name(uint8_t code)
{
    switch (code) {
    case 0: return "Connection Accepted";
    case 1: return "Connection Refused, unacceptable protocol version";
    case 2: return "Connection Refused, identifier rejected";
    case 3: return "Connection Refused, Server unavailable";
    case 4: return "Connection Refused, bad user name or password";
    case 5: return "Connection Refused, not authorized";
    default: return "Unknown";
    }
}

/* ---- allocation ----------------------------------------------------------- */

static int blob_set(struct blob *b, const uint8_t *p, size_t n)
{
    free(b->p);
    b->p = malloc(n ? n : 1);
    if (!b->p)
        return M2M_ENOMEM;
    if (n)
        memcpy(b->p, p, n);
    b->n = n;
    b->set = true;
    return 0;
}

/* Keeps a property block encoded; it is decoded again for each CONNECT. */
static int blob_props(struct blob *b, const struct m2m_mqtt_props *pr)
{
    size_t need = m2m_mqtt_props_size(pr), len = 0;
    if (need == SIZE_MAX)
        return M2M_EINVAL;
    free(b->p);
    b->p = malloc(need ? need : 1);
    if (!b->p)
        return M2M_ENOMEM;
    b->set = true;
    int rc = m2m_mqtt_props_encode(pr, b->p, need, &len);
    b->n = len;
    return rc;
}

static void ev_node_free(struct ev_node *e)
{
    if (!e)
        return;
    free(e->raw);
    free(e->topic);
    free(e);
}

static void aliases_clear(struct alias *a, size_t n)
{
    if (!a)
        return;
    for (size_t i = 0; i < n; i++) {
        free(a[i].p);
        a[i].p = NULL;
        a[i].n = 0;
    }
}

struct m2m_mqtt_client *m2m_mqtt_client_new(const struct m2m_mqtt_client_config *cfg)
{
    struct m2m_mqtt_client *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    if (cfg)
        c->cfg = *cfg;
    const struct m2m_mqtt_client_config src = c->cfg;
    struct m2m_mqtt_client_config *k = &c->cfg;
    if (!k->version)
        k->version = M2M_MQTT_V5;
    if (!k->receive_maximum)
        k->receive_maximum = 64;
    if (!k->max_packet_size)
        k->max_packet_size = 1u << 20;
    if (!k->max_inflight)
        k->max_inflight = 64;
    if (!k->max_queued)
        k->max_queued = 1024;
    if (!k->max_events)
        k->max_events = 256;
    if (!k->connect_timeout_ms)
        k->connect_timeout_ms = 10000;
    if (!k->ping_timeout_ms)
        k->ping_timeout_ms = k->keep_alive && k->keep_alive < 30 ? k->keep_alive * 1000u : 30000u;
    if ((k->version != M2M_MQTT_V311 && k->version != M2M_MQTT_V5) || k->max_packet_size < 16 ||
        k->max_packet_size > M2M_MQTT_MAX_REMAINING + 5u || k->max_queued > 65000)
        goto fail;
    /* The pointers are the caller's: nothing below may keep them. */
    k->will = NULL;
    k->username = k->password = NULL;
    k->user = NULL;
    if (blob_set(&c->client_id, src.client_id.p, src.client_id.n))
        goto fail;
    if (src.username && blob_set(&c->username, src.username->p, src.username->n))
        goto fail;
    if (src.password && blob_set(&c->password, src.password->p, src.password->n))
        goto fail;
    if (src.will) {
        const struct m2m_mqtt_will *w = src.will;
        c->will = true;
        c->will_qos = w->qos;
        c->will_retain = w->retain;
        if (w->qos > 2 || !m2m_mqtt_topic_valid(w->topic) ||
            blob_set(&c->will_topic, w->topic.p, w->topic.n) ||
            blob_set(&c->will_payload, w->payload.p, w->payload.n))
            goto fail;
        if (w->props && k->version == M2M_MQTT_V5 && blob_props(&c->will_props, w->props))
            goto fail;
    }
    if (k->version == M2M_MQTT_V5) {
        struct m2m_mqtt_props pr;
        memset(&pr, 0, sizeof pr);
        pr.user = src.user;
        pr.nuser = src.user ? src.nuser : 0;
        if (blob_props(&c->connect_props, &pr))
            goto fail;
    }
    c->in_cap = (size_t)k->max_packet_size + 64;
    c->out.max = 4 * (size_t)k->max_packet_size + 65536;
    c->in_alloc = 4096;
    c->in = malloc(c->in_alloc);
    c->outq = calloc(k->max_queued, sizeof *c->outq);
    if (k->topic_alias_maximum)
        c->in_alias = calloc(k->topic_alias_maximum, sizeof *c->in_alias);
    if (!c->in || !c->outq || (k->topic_alias_maximum && !c->in_alias))
        goto fail;
    c->next_id = 1;
    c->st = ST_OFFLINE;
    c->srv_recv_max = 65535;
    c->srv_max_qos = 2;
    c->srv_retain = c->srv_wildcard = c->srv_subid = c->srv_shared = true;
    return c;
fail:
    m2m_mqtt_client_free(c);
    return NULL;
}

void m2m_mqtt_client_free(struct m2m_mqtt_client *c)
{
    if (!c)
        return;
    ev_node_free(c->ev_cur);
    while (c->ev_head) {
        struct ev_node *e = c->ev_head;
        c->ev_head = e->next;
        ev_node_free(e);
    }
    for (size_t i = 0; c->outq && i < c->noutq; i++)
        free(c->outq[i].raw);
    aliases_clear(c->in_alias, c->cfg.topic_alias_maximum);
    aliases_clear(c->out_alias, c->nout_alias);
    struct blob *b[] = {&c->client_id,    &c->username,   &c->password,     &c->will_topic,
                        &c->will_payload, &c->will_props, &c->connect_props};
    for (size_t i = 0; i < sizeof b / sizeof b[0]; i++)
        free(b[i]->p);
    free(c->in_alias);
    free(c->out_alias);
    free(c->outq);
    free(c->in2);
    free(c->in);
    mqtt_out_free(&c->out);
    free(c);
}

/* ---- output --------------------------------------------------------------- */

static int out_pkt(struct m2m_mqtt_client *c, const struct m2m_mqtt_packet *pkt)
{
    size_t need = m2m_mqtt_encoded_size(pkt);
    if (!need)
        return M2M_EINVAL;
    if (c->srv_max_packet && need > c->srv_max_packet)
        return M2M_ELIMIT; /* [MQTT-3.2.2-15] */
    int rc = mqtt_out_pkt(&c->out, pkt);
    if (!rc)
        c->last_tx = c->now;
    return rc;
}

static void send_queued(struct m2m_mqtt_client *c);

bool m2m_mqtt_client_poll_output(struct m2m_mqtt_client *c, const uint8_t **p, size_t *n)
{
    if (!mqtt_out_pending(&c->out) && c->starved) {
        c->starved = false;
        send_queued(c);
    }
    return mqtt_out_poll(&c->out, p, n);
}

/* ---- events --------------------------------------------------------------- */

static struct ev_node *ev_push(struct m2m_mqtt_client *c, enum m2m_mqtt_client_event_type type,
                               const uint8_t *raw, size_t len)
{
    struct ev_node *e = calloc(1, sizeof *e);
    if (!e)
        return NULL;
    if (raw) {
        e->raw = malloc(len ? len : 1);
        if (!e->raw) {
            free(e);
            return NULL;
        }
        memcpy(e->raw, raw, len);
        e->len = len;
    }
    e->ev.type = type;
    e->ev.version = c->cfg.version;
    if (c->ev_tail)
        c->ev_tail->next = e;
    else
        c->ev_head = e;
    c->ev_tail = e;
    c->nev++;
    return e;
}

static void process(struct m2m_mqtt_client *c);

bool m2m_mqtt_client_poll_event(struct m2m_mqtt_client *c, struct m2m_mqtt_client_event *ev)
{
    static const struct m2m_mqtt_props no_props;
    ev_node_free(c->ev_cur);
    c->ev_cur = NULL;
    if (!c->ev_head && c->in_len && c->st != ST_OFFLINE)
        process(c); /* input left buffered while the queue was full */
    struct ev_node *e = c->ev_head;
    if (!e)
        return false;
    c->ev_head = e->next;
    if (!c->ev_head)
        c->ev_tail = NULL;
    c->nev--;
    c->ev_cur = e;
    *ev = e->ev;
    ev->props = &no_props;
    if (!e->raw)
        return true;
    /* The copy decoded once already, so it decodes again. */
    if (m2m_mqtt_decode(&c->ev_pkt, (enum m2m_mqtt_version)c->cfg.version, e->raw, e->len, NULL) != 0)
        return true;
    struct m2m_mqtt_packet *k = &c->ev_pkt;
    switch (k->type) {
    case M2M_MQTT_CONNACK: ev->props = &k->u.connack.props; break;
    case M2M_MQTT_PUBLISH:
        k->u.publish.topic = (struct m2m_slice){e->topic, e->topic_len};
        ev->publish = &k->u.publish;
        ev->props = &k->u.publish.props;
        break;
    case M2M_MQTT_PUBACK:
    case M2M_MQTT_PUBREC:
    case M2M_MQTT_PUBCOMP: ev->props = &k->u.ack.props; break;
    case M2M_MQTT_SUBACK:
    case M2M_MQTT_UNSUBACK:
        ev->props = &k->u.suback.props;
        ev->n = k->u.suback.n;
        ev->codes = k->u.suback.rc;
        break;
    case M2M_MQTT_DISCONNECT: ev->props = &k->u.disconnect.props; break;
    default: break;
    }
    return true;
}

/* ---- connection end ------------------------------------------------------- */

static void set_state(struct m2m_mqtt_client *c, enum client_state st)
{
    if (st == ST_OFFLINE) {
        c->ping_out = false;
        c->nsubs = 0;
        aliases_clear(c->in_alias, c->cfg.topic_alias_maximum);
        aliases_clear(c->out_alias, c->nout_alias);
        /* Messages sent on this connection go out again on the next one. */
    }
    c->st = st;
}

/* Ends the connection; a v5 connection that got its CONNACK hears why first
 * (DISCONNECT with `reason`, §4.13). The session state stays. */
static void client_close(struct m2m_mqtt_client *c, int err, uint8_t reason)
{
    if (c->st == ST_OFFLINE)
        return;
    uint8_t sent = 0;
    if (c->cfg.version == M2M_MQTT_V5 && reason && c->st == ST_CONNECTED) {
        struct m2m_mqtt_packet d;
        m2m_mqtt_packet_init(&d, M2M_MQTT_DISCONNECT, M2M_MQTT_V5);
        d.u.disconnect.rc = reason;
        uint32_t max = c->srv_max_packet;
        c->srv_max_packet = 0;
        if (out_pkt(c, &d) == 0)
            sent = reason;
        c->srv_max_packet = max;
    }
    set_state(c, ST_OFFLINE);
    c->in_len = 0;
    struct ev_node *e = ev_push(c, M2M_MQTT_CEV_CLOSED, NULL, 0);
    if (e) {
        e->ev.err = err;
        e->ev.reason = sent;
    }
}

void m2m_mqtt_client_transport_closed(struct m2m_mqtt_client *c)
{
    client_close(c, M2M_EIO, 0);
    mqtt_out_free(&c->out);
}

static void check_out(struct m2m_mqtt_client *c, int rc)
{
    if (rc)
        client_close(c, rc == M2M_ENOMEM ? M2M_ENOMEM : M2M_ELIMIT, M2M_MQTT_RC_IMPLEMENTATION_SPECIFIC);
}

static void send_ack(struct m2m_mqtt_client *c, enum m2m_mqtt_type type, uint16_t id, uint8_t rc)
{
    struct m2m_mqtt_packet a;
    m2m_mqtt_packet_init(&a, type, (enum m2m_mqtt_version)c->cfg.version);
    a.u.ack.packet_id = id;
    a.u.ack.rc = c->cfg.version == M2M_MQTT_V5 ? rc : 0;
    check_out(c, out_pkt(c, &a));
}

/* ---- outbound messages ---------------------------------------------------- */

static struct out_msg *out_find(struct m2m_mqtt_client *c, uint16_t id)
{
    for (size_t i = 0; i < c->noutq; i++)
        if (c->outq[i].id == id)
            return &c->outq[i];
    return NULL;
}

static bool id_in_use(struct m2m_mqtt_client *c, uint16_t id)
{
    for (size_t i = 0; i < c->nsubs; i++)
        if (c->subs[i].id == id)
            return true;
    return out_find(c, id) != NULL;
}

static uint16_t new_id(struct m2m_mqtt_client *c)
{
    uint16_t id = c->next_id;
    while (id == 0 || id_in_use(c, id)) /* [MQTT-2.2.1-3]: unused ids only */
        id = (uint16_t)(id + 1);
    c->next_id = (uint16_t)(id + 1);
    return id;
}

static size_t inflight(const struct m2m_mqtt_client *c)
{
    size_t n = 0;
    for (size_t i = 0; i < c->noutq; i++)
        n += c->outq[i].st != OUT_QUEUED;
    return n;
}

static size_t window(const struct m2m_mqtt_client *c)
{
    return c->srv_recv_max < c->cfg.max_inflight ? c->srv_recv_max : c->cfg.max_inflight;
}

/* Picks the outbound alias for a topic: *alias stays 0 when none fits,
 * *known says the server already has the mapping. */
static void out_alias_pick(struct m2m_mqtt_client *c, struct m2m_slice topic, uint16_t *alias, bool *known)
{
    *alias = 0;
    *known = false;
    for (size_t i = 0; i < c->nout_alias; i++) {
        struct alias *a = &c->out_alias[i];
        if (a->p && a->n == topic.n && memcmp(a->p, topic.p, topic.n) == 0) {
            *alias = (uint16_t)(i + 1);
            *known = true;
            return;
        }
        if (!a->p && !*alias) {
            a->p = malloc(topic.n);
            if (!a->p)
                return;
            memcpy(a->p, topic.p, topic.n);
            a->n = topic.n;
            *alias = (uint16_t)(i + 1); /* at most Topic Alias Maximum [MQTT-3.2.2-17] */
            return;
        }
    }
}

/* Writes one PUBLISH from its canonical copy, with DUP and an alias. */
static int send_publish(struct m2m_mqtt_client *c, const uint8_t *raw, size_t len, bool dup)
{
    struct m2m_mqtt_packet pkt;
    if (m2m_mqtt_decode(&pkt, (enum m2m_mqtt_version)c->cfg.version, raw, len, NULL))
        return M2M_EINVAL;
    pkt.u.publish.dup = dup && pkt.u.publish.qos > 0; /* [MQTT-3.3.1-1] */
    if (c->nout_alias) {
        uint16_t alias;
        bool known;
        out_alias_pick(c, pkt.u.publish.topic, &alias, &known);
        if (alias) {
            pkt.u.publish.props.topic_alias = alias;
            m2m_mqtt_props_set(&pkt.u.publish.props, M2M_MQTT_P_TOPIC_ALIAS);
            if (known)
                pkt.u.publish.topic = (struct m2m_slice){NULL, 0};
        }
    }
    return out_pkt(c, &pkt);
}

/* Sends queued messages while the window has room. */
static void send_queued(struct m2m_mqtt_client *c)
{
    if (c->st != ST_CONNECTED)
        return;
    size_t busy = inflight(c), win = window(c);
    for (size_t i = 0; i < c->noutq && busy < win; i++) {
        struct out_msg *m = &c->outq[i];
        if (m->st != OUT_QUEUED)
            continue;
        int rc = send_publish(c, m->raw, m->len, false);
        if (rc == M2M_ENOBUFS) {
            c->starved = true; /* retried when the output has drained */
            return;
        }
        if (rc) {
            check_out(c, rc);
            return;
        }
        m->st = m->qos == 1 ? OUT_WAIT_PUBACK : OUT_WAIT_PUBREC;
        busy++;
    }
}

static void out_done(struct m2m_mqtt_client *c, struct out_msg *m, const uint8_t *raw, size_t len,
                     uint8_t reason)
{
    uint16_t id = m->id;
    size_t i = (size_t)(m - c->outq);
    free(m->raw);
    memmove(&c->outq[i], &c->outq[i + 1], (c->noutq - i - 1) * sizeof *c->outq);
    c->noutq--;
    struct ev_node *e = ev_push(c, M2M_MQTT_CEV_PUBLISH_DONE, raw, len);
    if (!e) {
        client_close(c, M2M_ENOMEM, M2M_MQTT_RC_IMPLEMENTATION_SPECIFIC);
        return;
    }
    e->ev.packet_id = id;
    e->ev.reason = reason;
    send_queued(c);
}

int m2m_mqtt_client_publish(struct m2m_mqtt_client *c, m2m_time now, struct m2m_slice topic,
                            struct m2m_slice payload, uint8_t qos, bool retain,
                            const struct m2m_mqtt_props *props, uint16_t *packet_id)
{
    if (now > c->now)
        c->now = now;
    bool v5 = c->cfg.version == M2M_MQTT_V5;
    if (qos > 2 || !m2m_mqtt_topic_valid(topic))
        return M2M_EINVAL;
    if (props && v5 && m2m_mqtt_props_has(props, M2M_MQTT_P_SUBSCRIPTION_ID))
        return M2M_EINVAL; /* [MQTT-3.3.4-6] */
    if (qos > c->srv_max_qos || (retain && !c->srv_retain))
        return M2M_EUNSUPPORTED; /* [MQTT-3.2.2-11], [MQTT-3.2.2-14] */
    if (qos == 0 && c->st != ST_CONNECTED)
        return M2M_ESTATE;
    if (qos > 0 && c->noutq >= c->cfg.max_queued)
        return M2M_ELIMIT;
    struct m2m_mqtt_packet pkt;
    m2m_mqtt_packet_init(&pkt, M2M_MQTT_PUBLISH, (enum m2m_mqtt_version)c->cfg.version);
    pkt.u.publish.qos = qos;
    pkt.u.publish.retain = retain;
    pkt.u.publish.topic = topic;
    pkt.u.publish.payload = payload;
    if (props && v5) {
        pkt.u.publish.props = *props;
        pkt.u.publish.props.present &= ~((uint64_t)1 << M2M_MQTT_P_TOPIC_ALIAS);
    }
    if (qos > 0)
        pkt.u.publish.packet_id = new_id(c);
    size_t need = m2m_mqtt_encoded_size(&pkt), len = 0;
    if (!need)
        return M2M_EINVAL;
    if (c->srv_max_packet && need > c->srv_max_packet)
        return M2M_ELIMIT; /* [MQTT-3.2.2-15] */
    uint8_t *raw = malloc(need);
    if (!raw)
        return M2M_ENOMEM;
    int rc = m2m_mqtt_encode(&pkt, raw, need, &len);
    if (rc) {
        free(raw);
        return rc;
    }
    if (qos == 0) {
        rc = send_publish(c, raw, len, false);
        free(raw);
        return rc;
    }
    c->outq[c->noutq++] = (struct out_msg){pkt.u.publish.packet_id, qos, OUT_QUEUED, raw, len};
    if (packet_id)
        *packet_id = pkt.u.publish.packet_id;
    send_queued(c);
    return 0;
}

/* ---- connecting ----------------------------------------------------------- */

static struct m2m_slice blob_slice(const struct blob *b)
{
    return (struct m2m_slice){b->p, b->n};
}

int m2m_mqtt_client_connect(struct m2m_mqtt_client *c, m2m_time now)
{
    if (c->st != ST_OFFLINE)
        return M2M_ESTATE;
    if (now > c->now)
        c->now = now;
    bool v5 = c->cfg.version == M2M_MQTT_V5;
    c->in_len = 0;
    mqtt_out_free(&c->out);
    c->ping_out = false;
    c->srv_max_packet = 0;
    struct m2m_mqtt_packet pkt;
    m2m_mqtt_packet_init(&pkt, M2M_MQTT_CONNECT, (enum m2m_mqtt_version)c->cfg.version);
    struct m2m_mqtt_connect *cn = &pkt.u.connect;
    cn->clean_start = c->cfg.clean_start;
    cn->keep_alive = c->cfg.keep_alive;
    cn->client_id = blob_slice(&c->client_id);
    if (c->will) {
        cn->will = true;
        cn->will_qos = c->will_qos;
        cn->will_retain = c->will_retain;
        cn->will_topic = blob_slice(&c->will_topic);
        cn->will_payload = blob_slice(&c->will_payload);
        if (v5 && c->will_props.set &&
            m2m_mqtt_props_decode(&cn->will_props, M2M_MQTT_CTX_WILL, c->will_props.p, c->will_props.n, NULL))
            return M2M_EINVAL;
    }
    cn->has_username = c->username.set;
    cn->username = blob_slice(&c->username);
    cn->has_password = c->password.set;
    cn->password = blob_slice(&c->password);
    if (v5) {
        struct m2m_mqtt_props *pr = &cn->props;
        if (c->connect_props.set &&
            m2m_mqtt_props_decode(pr, M2M_MQTT_CONNECT, c->connect_props.p, c->connect_props.n, NULL))
            return M2M_EINVAL;
        if (c->cfg.session_expiry) {
            pr->session_expiry = c->cfg.session_expiry;
            m2m_mqtt_props_set(pr, M2M_MQTT_P_SESSION_EXPIRY);
        }
        pr->receive_maximum = c->cfg.receive_maximum;
        m2m_mqtt_props_set(pr, M2M_MQTT_P_RECEIVE_MAXIMUM);
        pr->maximum_packet_size = c->cfg.max_packet_size;
        m2m_mqtt_props_set(pr, M2M_MQTT_P_MAXIMUM_PACKET_SIZE);
        if (c->cfg.topic_alias_maximum) {
            pr->topic_alias_maximum = c->cfg.topic_alias_maximum;
            m2m_mqtt_props_set(pr, M2M_MQTT_P_TOPIC_ALIAS_MAXIMUM);
        }
    }
    int rc = out_pkt(c, &pkt);
    if (rc)
        return rc;
    c->connect_at = c->now;
    set_state(c, ST_CONNECTING);
    return 0;
}

/* A new connection of the same session: what was in flight is sent again,
 * with the same packet ids and DUP [MQTT-4.4.0-1], PUBREL for QoS 2 messages
 * the server had received [MQTT-4.3.3-5 of 3.1.1 ordering]. Without a
 * session the server knows nothing of them: they go out again as new
 * messages, and those it had fully received are done. */
static void resume(struct m2m_mqtt_client *c, bool session_present)
{
    if (!session_present) {
        c->nin2 = 0; /* the server forgot its side too [MQTT-3.2.2-5 of 5.0] */
        for (size_t i = 0; i < c->noutq;) {
            struct out_msg *m = &c->outq[i];
            if (m->st == OUT_WAIT_PUBCOMP) {
                out_done(c, m, NULL, 0, 0);
                continue;
            }
            m->st = OUT_QUEUED;
            i++;
        }
        return;
    }
    for (size_t i = 0; i < c->noutq && c->st == ST_CONNECTED; i++) {
        struct out_msg *m = &c->outq[i];
        if (m->st == OUT_WAIT_PUBCOMP)
            send_ack(c, M2M_MQTT_PUBREL, m->id, 0);
        else if (m->st != OUT_QUEUED)
            check_out(c, send_publish(c, m->raw, m->len, true));
    }
}

static void on_connack(struct m2m_mqtt_client *c, const struct m2m_mqtt_connack *ca, const uint8_t *raw,
                       size_t len)
{
    if (ca->rc != 0) {
        struct ev_node *e = ev_push(c, M2M_MQTT_CEV_REFUSED, raw, len);
        if (e)
            e->ev.reason = ca->rc;
        client_close(c, M2M_ERESET, 0);
        return;
    }
    c->keep_alive = c->cfg.keep_alive;
    c->srv_recv_max = 65535;
    c->srv_max_packet = 0;
    c->srv_alias_max = 0;
    c->srv_max_qos = 2;
    c->srv_retain = c->srv_wildcard = c->srv_subid = c->srv_shared = true;
    if (c->cfg.version == M2M_MQTT_V5) {
        const struct m2m_mqtt_props *pr = &ca->props;
        if (m2m_mqtt_props_has(pr, M2M_MQTT_P_SERVER_KEEP_ALIVE))
            c->keep_alive = pr->server_keep_alive; /* [MQTT-3.2.2-21] */
        if (m2m_mqtt_props_has(pr, M2M_MQTT_P_RECEIVE_MAXIMUM))
            c->srv_recv_max = pr->receive_maximum;
        if (m2m_mqtt_props_has(pr, M2M_MQTT_P_MAXIMUM_PACKET_SIZE))
            c->srv_max_packet = pr->maximum_packet_size;
        if (m2m_mqtt_props_has(pr, M2M_MQTT_P_TOPIC_ALIAS_MAXIMUM))
            c->srv_alias_max = pr->topic_alias_maximum;
        if (m2m_mqtt_props_has(pr, M2M_MQTT_P_MAXIMUM_QOS))
            c->srv_max_qos = pr->maximum_qos;
        if (m2m_mqtt_props_has(pr, M2M_MQTT_P_RETAIN_AVAILABLE))
            c->srv_retain = pr->retain_available;
        if (m2m_mqtt_props_has(pr, M2M_MQTT_P_WILDCARD_SUB_AVAILABLE))
            c->srv_wildcard = pr->wildcard_sub_available;
        if (m2m_mqtt_props_has(pr, M2M_MQTT_P_SUBSCRIPTION_ID_AVAILABLE))
            c->srv_subid = pr->subscription_id_available;
        if (m2m_mqtt_props_has(pr, M2M_MQTT_P_SHARED_SUB_AVAILABLE))
            c->srv_shared = pr->shared_sub_available;
        if (m2m_mqtt_props_has(pr, M2M_MQTT_P_ASSIGNED_CLIENT_ID) &&
            blob_set(&c->client_id, pr->assigned_client_id.p, pr->assigned_client_id.n)) {
            client_close(c, M2M_ENOMEM, M2M_MQTT_RC_IMPLEMENTATION_SPECIFIC);
            return;
        }
    }
    /* Outbound aliases: as many as the server takes, if we use them at all
     * (none when it sent no Topic Alias Maximum [MQTT-3.2.2-18]). */
    aliases_clear(c->out_alias, c->nout_alias);
    c->nout_alias = 0;
    if (c->cfg.topic_aliases && c->srv_alias_max) {
        size_t n = c->srv_alias_max < 1024 ? c->srv_alias_max : 1024;
        struct alias *a = realloc(c->out_alias, n * sizeof *a);
        if (a) {
            memset(a, 0, n * sizeof *a);
            c->out_alias = a;
            c->nout_alias = n;
        }
    }
    set_state(c, ST_CONNECTED);
    struct ev_node *e = ev_push(c, M2M_MQTT_CEV_CONNACK, raw, len);
    if (!e) {
        client_close(c, M2M_ENOMEM, M2M_MQTT_RC_IMPLEMENTATION_SPECIFIC);
        return;
    }
    e->ev.session_present = ca->session_present;
    resume(c, ca->session_present);
    send_queued(c);
}

/* ---- inbound packets ------------------------------------------------------ */

static bool in2_has(struct m2m_mqtt_client *c, uint16_t id, bool remove)
{
    for (size_t i = 0; i < c->nin2; i++) {
        if (c->in2[i] != id)
            continue;
        if (remove)
            c->in2[i] = c->in2[--c->nin2];
        return true;
    }
    return false;
}

static void on_publish(struct m2m_mqtt_client *c, const struct m2m_mqtt_publish *pb, const uint8_t *raw,
                       size_t len)
{
    struct m2m_slice topic = pb->topic;
    if (c->cfg.version == M2M_MQTT_V5 && m2m_mqtt_props_has(&pb->props, M2M_MQTT_P_TOPIC_ALIAS)) {
        uint16_t a = pb->props.topic_alias;
        if (a == 0 || a > c->cfg.topic_alias_maximum) {
            client_close(c, M2M_EMALFORMED, M2M_MQTT_RC_TOPIC_ALIAS_INVALID); /* [MQTT-3.1.2-26] */
            return;
        }
        struct alias *al = &c->in_alias[a - 1];
        if (topic.n) {
            uint8_t *p = malloc(topic.n);
            if (!p) {
                client_close(c, M2M_ENOMEM, M2M_MQTT_RC_IMPLEMENTATION_SPECIFIC);
                return;
            }
            memcpy(p, topic.p, topic.n);
            free(al->p);
            al->p = p;
            al->n = topic.n;
        } else if (!al->p) {
            client_close(c, M2M_EMALFORMED, M2M_MQTT_RC_PROTOCOL_ERROR); /* unknown alias */
            return;
        }
        topic = (struct m2m_slice){al->p, al->n};
    }
    if (topic.n == 0) {
        client_close(c, M2M_EMALFORMED, M2M_MQTT_RC_PROTOCOL_ERROR);
        return;
    }
    if (pb->qos == 2) {
        if (in2_has(c, pb->packet_id, false)) {
            send_ack(c, M2M_MQTT_PUBREC, pb->packet_id, 0); /* delivered already: ack again only */
            return;
        }
        if (c->nin2 == c->capin2) {
            size_t cap = c->capin2 ? 2 * c->capin2 : 16;
            if (cap > IN2_MAX)
                cap = IN2_MAX;
            uint16_t *n = cap > c->capin2 ? realloc(c->in2, cap * sizeof *n) : NULL;
            if (!n) {
                client_close(c, M2M_ELIMIT, M2M_MQTT_RC_RECEIVE_MAXIMUM_EXCEEDED); /* §3.3.4 */
                return;
            }
            c->in2 = n;
            c->capin2 = cap;
        }
    }
    struct ev_node *e = ev_push(c, M2M_MQTT_CEV_PUBLISH, raw, len);
    if (e && (e->topic = malloc(topic.n)) != NULL) {
        memcpy(e->topic, topic.p, topic.n);
        e->topic_len = topic.n;
    } else {
        client_close(c, M2M_ENOMEM, M2M_MQTT_RC_IMPLEMENTATION_SPECIFIC);
        return;
    }
    if (pb->qos == 1) {
        send_ack(c, M2M_MQTT_PUBACK, pb->packet_id, 0);
    } else if (pb->qos == 2) {
        c->in2[c->nin2++] = pb->packet_id;
        send_ack(c, M2M_MQTT_PUBREC, pb->packet_id, 0);
    }
}

static void on_suback(struct m2m_mqtt_client *c, const struct m2m_mqtt_packet *pkt, const uint8_t *raw,
                      size_t len)
{
    uint16_t id = pkt->u.suback.packet_id;
    size_t i = 0;
    while (i < c->nsubs && !(c->subs[i].id == id && c->subs[i].type == pkt->type))
        i++;
    if (i == c->nsubs) {
        client_close(c, M2M_EMALFORMED, M2M_MQTT_RC_PROTOCOL_ERROR); /* an ack for nothing we sent */
        return;
    }
    c->subs[i] = c->subs[--c->nsubs];
    struct ev_node *e =
        ev_push(c, pkt->type == M2M_MQTT_SUBACK ? M2M_MQTT_CEV_SUBACK : M2M_MQTT_CEV_UNSUBACK, raw, len);
    if (!e) {
        client_close(c, M2M_ENOMEM, M2M_MQTT_RC_IMPLEMENTATION_SPECIFIC);
        return;
    }
    e->ev.packet_id = id;
}

static void on_packet(struct m2m_mqtt_client *c, const uint8_t *raw, size_t len)
{
    struct m2m_mqtt_packet pkt;
    struct m2m_mqtt_diag diag = {0, NULL};
    bool v5 = c->cfg.version == M2M_MQTT_V5;
    int rc = m2m_mqtt_decode(&pkt, (enum m2m_mqtt_version)c->cfg.version, raw, len, &diag);
    if (rc) {
        client_close(c, M2M_EMALFORMED, diag.reason ? diag.reason : M2M_MQTT_RC_MALFORMED_PACKET);
        return;
    }
    if (c->st == ST_CONNECTING) {
        /* The first packet from the server is CONNACK (§3.2); without
         * enhanced authentication AUTH cannot come. */
        if (pkt.type == M2M_MQTT_CONNACK)
            on_connack(c, &pkt.u.connack, raw, len);
        else
            client_close(c, M2M_EMALFORMED, 0);
        return;
    }
    switch (pkt.type) {
    case M2M_MQTT_PUBLISH: on_publish(c, &pkt.u.publish, raw, len); break;
    case M2M_MQTT_PUBACK: {
        struct out_msg *m = out_find(c, pkt.u.ack.packet_id);
        if (m && m->st == OUT_WAIT_PUBACK)
            out_done(c, m, raw, len, pkt.u.ack.rc);
        break;
    }
    case M2M_MQTT_PUBREC: {
        struct out_msg *m = out_find(c, pkt.u.ack.packet_id);
        if (!m || (m->st != OUT_WAIT_PUBREC && m->st != OUT_WAIT_PUBCOMP)) {
            send_ack(c, M2M_MQTT_PUBREL, pkt.u.ack.packet_id, M2M_MQTT_RC_PACKET_ID_NOT_FOUND);
            break;
        }
        if (v5 && pkt.u.ack.rc >= 0x80) {
            out_done(c, m, raw, len, pkt.u.ack.rc); /* a failed PUBREC ends the flow */
            break;
        }
        m->st = OUT_WAIT_PUBCOMP; /* the message itself is no longer needed */
        send_ack(c, M2M_MQTT_PUBREL, m->id, 0);
        break;
    }
    case M2M_MQTT_PUBCOMP: {
        struct out_msg *m = out_find(c, pkt.u.ack.packet_id);
        if (m && m->st == OUT_WAIT_PUBCOMP)
            out_done(c, m, raw, len, pkt.u.ack.rc);
        break;
    }
    case M2M_MQTT_PUBREL: {
        bool known = in2_has(c, pkt.u.ack.packet_id, true);
        send_ack(c, M2M_MQTT_PUBCOMP, pkt.u.ack.packet_id, known ? 0 : M2M_MQTT_RC_PACKET_ID_NOT_FOUND);
        break;
    }
    case M2M_MQTT_SUBACK:
    case M2M_MQTT_UNSUBACK: on_suback(c, &pkt, raw, len); break;
    case M2M_MQTT_PINGRESP: c->ping_out = false; break;
    case M2M_MQTT_DISCONNECT:
        if (!v5) {
            client_close(c, M2M_EMALFORMED, 0); /* 3.1.1 servers never send it */
            break;
        }
        {
            struct ev_node *e = ev_push(c, M2M_MQTT_CEV_DISCONNECT, raw, len);
            if (e)
                e->ev.reason = pkt.u.disconnect.rc;
            client_close(c, M2M_ERESET, 0); /* §3.14.4: no DISCONNECT back */
        }
        break;
    default: /* CONNACK twice, client-to-server packets, AUTH */
        client_close(c, M2M_EMALFORMED, M2M_MQTT_RC_PROTOCOL_ERROR);
        break;
    }
}

static void process(struct m2m_mqtt_client *c)
{
    size_t off = 0;
    while (c->st != ST_OFFLINE && c->nev < c->cfg.max_events) {
        size_t total = 0;
        int rc = m2m_mqtt_frame(c->in + off, c->in_len - off, c->cfg.max_packet_size, &total);
        if (rc == M2M_EAGAIN)
            break;
        if (rc == M2M_ELIMIT) {
            client_close(c, M2M_ELIMIT, M2M_MQTT_RC_PACKET_TOO_LARGE); /* over our Maximum Packet Size */
            break;
        }
        if (rc) {
            client_close(c, M2M_EMALFORMED, M2M_MQTT_RC_MALFORMED_PACKET);
            break;
        }
        on_packet(c, c->in + off, total);
        off += total;
    }
    if (c->st == ST_OFFLINE)
        off = c->in_len;
    memmove(c->in, c->in + off, c->in_len - off);
    c->in_len -= off;
}

int m2m_mqtt_client_feed(struct m2m_mqtt_client *c, m2m_time now, const uint8_t *p, size_t n)
{
    if (c->st == ST_OFFLINE)
        return M2M_ESTATE;
    if (now > c->now)
        c->now = now;
    while (n && c->st != ST_OFFLINE) {
        size_t k = c->in_cap - c->in_len;
        if (k == 0) {
            /* Only when the application leaves a full event queue unread. */
            client_close(c, M2M_ELIMIT, M2M_MQTT_RC_RECEIVE_MAXIMUM_EXCEEDED);
            break;
        }
        if (k > n)
            k = n;
        if (c->in_len + k > c->in_alloc) {
            size_t cap = c->in_alloc * 2 > c->in_len + k ? c->in_alloc * 2 : c->in_len + k;
            if (cap > c->in_cap)
                cap = c->in_cap;
            uint8_t *q = realloc(c->in, cap);
            if (!q) {
                client_close(c, M2M_ENOMEM, M2M_MQTT_RC_IMPLEMENTATION_SPECIFIC);
                break;
            }
            c->in = q;
            c->in_alloc = cap;
        }
        memcpy(c->in + c->in_len, p, k);
        c->in_len += k;
        p += k;
        n -= k;
        process(c);
    }
    return 0;
}

/* ---- timers --------------------------------------------------------------- */

m2m_time m2m_mqtt_client_next_timeout(const struct m2m_mqtt_client *c)
{
    if (c->st == ST_CONNECTING)
        return c->connect_at + (m2m_time)c->cfg.connect_timeout_ms;
    if (c->st != ST_CONNECTED || !c->keep_alive)
        return M2M_NEVER;
    if (c->ping_out)
        return c->ping_at + (m2m_time)c->cfg.ping_timeout_ms;
    /* Nothing sent for Keep Alive seconds: PINGREQ (§3.1.2.10). */
    return c->last_tx + (m2m_time)c->keep_alive * 1000;
}

void m2m_mqtt_client_on_timeout(struct m2m_mqtt_client *c, m2m_time now)
{
    if (now > c->now)
        c->now = now;
    if (c->now < m2m_mqtt_client_next_timeout(c))
        return;
    if (c->st == ST_CONNECTING) {
        client_close(c, M2M_ETIMEDOUT, 0);
    } else if (c->ping_out) {
        /* No PINGRESP within a reasonable time: close (§3.1.2.10). */
        client_close(c, M2M_ETIMEDOUT, 0);
    } else {
        struct m2m_mqtt_packet p;
        m2m_mqtt_packet_init(&p, M2M_MQTT_PINGREQ, (enum m2m_mqtt_version)c->cfg.version);
        check_out(c, out_pkt(c, &p));
        c->ping_out = true;
        c->ping_at = c->now;
    }
}

/* ---- subscriptions and the end -------------------------------------------- */

static int add_pending(struct m2m_mqtt_client *c, uint8_t type, uint16_t *id)
{
    if (c->nsubs >= MAX_PENDING_SUBS)
        return M2M_EAGAIN;
    uint16_t k = new_id(c);
    c->subs[c->nsubs].id = k;
    c->subs[c->nsubs].type = type;
    c->nsubs++;
    *id = k;
    return 0;
}

int m2m_mqtt_client_subscribe(struct m2m_mqtt_client *c, m2m_time now,
                              const struct m2m_mqtt_subscription *subs, size_t n,
                              const struct m2m_mqtt_props *props, uint16_t *packet_id)
{
    if (now > c->now)
        c->now = now;
    if (c->st != ST_CONNECTED)
        return M2M_ESTATE;
    if (n == 0 || n > M2M_MQTT_MAX_FILTERS)
        return M2M_EINVAL;
    bool v5 = c->cfg.version == M2M_MQTT_V5;
    struct m2m_mqtt_packet pkt;
    m2m_mqtt_packet_init(&pkt, M2M_MQTT_SUBSCRIBE, (enum m2m_mqtt_version)c->cfg.version);
    for (size_t i = 0; i < n; i++) {
        struct m2m_slice f = subs[i].filter;
        if (!m2m_mqtt_filter_valid(f) || subs[i].qos > 2 || subs[i].retain_handling > 2)
            return M2M_EINVAL;
        bool wild = memchr(f.p, '+', f.n) || memchr(f.p, '#', f.n);
        bool shared = m2m_mqtt_filter_shared(f, NULL, NULL);
        if ((wild && !c->srv_wildcard) || (shared && !c->srv_shared))
            return M2M_EUNSUPPORTED;
        pkt.u.subscribe.sub[i] = subs[i];
        if (!v5) {
            pkt.u.subscribe.sub[i].no_local = false;
            pkt.u.subscribe.sub[i].retain_as_published = false;
            pkt.u.subscribe.sub[i].retain_handling = 0;
        }
    }
    pkt.u.subscribe.n = (uint16_t)n;
    if (props && v5) {
        if (m2m_mqtt_props_has(props, M2M_MQTT_P_SUBSCRIPTION_ID) && !c->srv_subid)
            return M2M_EUNSUPPORTED;
        pkt.u.subscribe.props = *props;
    }
    uint16_t id;
    int rc = add_pending(c, M2M_MQTT_SUBACK, &id);
    if (rc)
        return rc;
    pkt.u.subscribe.packet_id = id;
    rc = out_pkt(c, &pkt);
    if (rc) {
        c->nsubs--;
        return rc;
    }
    if (packet_id)
        *packet_id = id;
    return 0;
}

int m2m_mqtt_client_unsubscribe(struct m2m_mqtt_client *c, m2m_time now, const struct m2m_slice *filters,
                                size_t n, const struct m2m_mqtt_props *props, uint16_t *packet_id)
{
    if (now > c->now)
        c->now = now;
    if (c->st != ST_CONNECTED)
        return M2M_ESTATE;
    if (n == 0 || n > M2M_MQTT_MAX_FILTERS)
        return M2M_EINVAL;
    struct m2m_mqtt_packet pkt;
    m2m_mqtt_packet_init(&pkt, M2M_MQTT_UNSUBSCRIBE, (enum m2m_mqtt_version)c->cfg.version);
    for (size_t i = 0; i < n; i++) {
        if (!m2m_mqtt_filter_valid(filters[i]))
            return M2M_EINVAL;
        pkt.u.unsubscribe.filter[i] = filters[i];
    }
    pkt.u.unsubscribe.n = (uint16_t)n;
    if (props && c->cfg.version == M2M_MQTT_V5)
        pkt.u.unsubscribe.props = *props;
    uint16_t id;
    int rc = add_pending(c, M2M_MQTT_UNSUBACK, &id);
    if (rc)
        return rc;
    pkt.u.unsubscribe.packet_id = id;
    rc = out_pkt(c, &pkt);
    if (rc) {
        c->nsubs--;
        return rc;
    }
    if (packet_id)
        *packet_id = id;
    return 0;
}

int m2m_mqtt_client_disconnect(struct m2m_mqtt_client *c, m2m_time now, uint8_t reason,
                               const struct m2m_mqtt_props *props)
{
    if (now > c->now)
        c->now = now;
    if (c->st != ST_CONNECTED)
        return M2M_ESTATE;
    struct m2m_mqtt_packet d;
    m2m_mqtt_packet_init(&d, M2M_MQTT_DISCONNECT, (enum m2m_mqtt_version)c->cfg.version);
    if (c->cfg.version == M2M_MQTT_V5) {
        d.u.disconnect.rc = reason;
        if (props)
            d.u.disconnect.props = *props;
    }
    int rc = out_pkt(c, &d);
    if (rc)
        return rc;
    set_state(c, ST_OFFLINE);
    c->in_len = 0;
    struct ev_node *e = ev_push(c, M2M_MQTT_CEV_CLOSED, NULL, 0);
    if (e)
        e->ev.err = 0;
    return 0;
}

/* ---- queries -------------------------------------------------------------- */

bool m2m_mqtt_client_connected(const struct m2m_mqtt_client *c)
{
    return c->st == ST_CONNECTED;
}

size_t m2m_mqtt_client_pending(const struct m2m_mqtt_client *c)
{
    return c->noutq;
}

struct m2m_slice m2m_mqtt_client_id(const struct m2m_mqtt_client *c)
{
    return blob_slice(&c->client_id);
}
