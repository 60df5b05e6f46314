/* Broker-side MQTT session core for one connection (see m2m/mqtt_session.h).
 *
 * Input is copied into a bounded buffer and framed with m2m_mqtt_frame. Each
 * packet that becomes an event is copied once more into the event queue, so
 * events outlive the input buffer; the copy is decoded again when polled. */
#include <stdlib.h>
#include <string.h>

#include "m2m/mqtt_session.h"
#include "mqtt_internal.h"

enum conn_state { ST_AWAIT_CONNECT, ST_AWAIT_ACCEPT, ST_CONNECTED, ST_CLOSED };

/* Inbound QoS>0 message states. */
enum { IN_WAIT_APP = 1, IN_WAIT_PUBREL = 2 };
/* Outbound QoS>0 message states. */
enum { OUT_WAIT_PUBACK = 1, OUT_WAIT_PUBREC, OUT_WAIT_PUBCOMP };

struct in_msg {
    uint16_t id;
    uint8_t qos;
    uint8_t st;
};

struct out_msg {
    uint16_t id;
    uint8_t st;
    uint8_t *raw; /* the encoded PUBLISH, kept for resend */
    size_t len;
};

struct ev_node {
    struct ev_node *next;
    struct m2m_mqtt_conn_event ev;
    uint8_t *raw; /* packet copy, decoded again when polled */
    size_t len;
    uint8_t *topic; /* resolved PUBLISH topic */
    size_t topic_len;
};

struct alias {
    uint8_t *p;
    size_t n;
};

/* Outbound topic aliases: assigned on first use, never replaced, so a
 * PUBLISH kept for resend always names a live mapping. */
#define MAX_OUT_ALIASES 64

struct m2m_mqtt_conn {
    struct m2m_mqtt_conn_config cfg;
    enum conn_state st;
    uint8_t version;
    m2m_time now;
    m2m_time last_rx;
    uint16_t keep_alive;    /* effective, seconds */
    bool keep_alive_forced; /* v5: ours, sent as Server Keep Alive */
    bool will;
    bool clean_start;
    uint16_t client_recv_max;
    uint32_t client_max_packet; /* 0: no limit */

    uint8_t *in; /* allocated while it holds bytes: idle connections cost no buffer */
    size_t in_len, in_cap, in_max;

    struct mqtt_outbuf out;

    struct ev_node *ev_head, *ev_tail, *ev_cur;
    size_t nev;
    struct m2m_mqtt_packet *ev_pkt; /* the polled event's packet, allocated while events flow */

    struct in_msg *inq; /* allocated on the first QoS>0 message, receive_maximum entries */
    size_t ninq, capinq;
    size_t nwait_app;     /* inq entries the application has not acknowledged yet */
    struct out_msg *outq; /* grows up to max_inflight entries */
    size_t noutq, capoutq;
    uint16_t next_id;

    struct alias *aliases;     /* topic_alias_maximum entries, index alias - 1 */
    struct alias *out_aliases; /* ours towards the client, index alias - 1 */
    uint16_t n_out_aliases;
    uint16_t max_out_aliases; /* min(the client's Topic Alias Maximum, ours) */
};

static void ev_node_free(struct ev_node *e)
{
    if (!e)
        return;
    free(e->raw);
    free(e->topic);
    free(e);
}

struct m2m_mqtt_conn *m2m_mqtt_conn_new(const struct m2m_mqtt_conn_config *cfg)
{
    struct m2m_mqtt_conn *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    if (cfg)
        c->cfg = *cfg;
    if (!c->cfg.max_packet_size)
        c->cfg.max_packet_size = 65536;
    if (c->cfg.max_packet_size < 16 || c->cfg.max_packet_size > M2M_MQTT_MAX_REMAINING + 5u)
        goto fail;
    if (!c->cfg.receive_maximum)
        c->cfg.receive_maximum = 32;
    if (!c->cfg.max_inflight)
        c->cfg.max_inflight = 32;
    if (!c->cfg.connect_timeout_ms)
        c->cfg.connect_timeout_ms = 10000;
    if (!c->cfg.max_events)
        c->cfg.max_events = 256;
    if (!c->cfg.max_output)
        c->cfg.max_output = 4 * (size_t)c->cfg.max_packet_size + 65536;
    c->out.max = c->cfg.max_output;
    c->now = c->cfg.start;
    c->last_rx = c->cfg.start;
    c->st = ST_AWAIT_CONNECT;
    c->client_recv_max = 65535;
    c->next_id = 1;
    c->in_max = 2 * (size_t)c->cfg.max_packet_size;
    return c;
fail:
    m2m_mqtt_conn_free(c);
    return NULL;
}

void m2m_mqtt_conn_free(struct m2m_mqtt_conn *c)
{
    if (!c)
        return;
    ev_node_free(c->ev_cur);
    while (c->ev_head) {
        struct ev_node *e = c->ev_head;
        c->ev_head = e->next;
        ev_node_free(e);
    }
    if (c->outq)
        for (size_t i = 0; i < c->noutq; i++)
            free(c->outq[i].raw);
    if (c->aliases)
        for (size_t i = 0; i < c->cfg.topic_alias_maximum; i++)
            free(c->aliases[i].p);
    free(c->aliases);
    free(c->ev_pkt);
    if (c->out_aliases)
        for (size_t i = 0; i < c->n_out_aliases; i++)
            free(c->out_aliases[i].p);
    free(c->out_aliases);
    free(c->outq);
    free(c->inq);
    mqtt_out_free(&c->out);
    free(c->in);
    free(c);
}

/* ---- output ------------------------------------------------------------ */

static int out_raw(struct m2m_mqtt_conn *c, const uint8_t *p, size_t n)
{
    return mqtt_out_raw(&c->out, p, n);
}

static int out_pkt(struct m2m_mqtt_conn *c, const struct m2m_mqtt_packet *pkt)
{
    return mqtt_out_pkt(&c->out, pkt);
}

bool m2m_mqtt_conn_poll_output(struct m2m_mqtt_conn *c, const uint8_t **p, size_t *n)
{
    return mqtt_out_poll(&c->out, p, n);
}

/* ---- events ------------------------------------------------------------ */

static struct ev_node *ev_push(struct m2m_mqtt_conn *c, enum m2m_mqtt_conn_event_type type,
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
    e->ev.version = c->version;
    if (c->ev_tail)
        c->ev_tail->next = e;
    else
        c->ev_head = e;
    c->ev_tail = e;
    c->nev++;
    return e;
}

static void process(struct m2m_mqtt_conn *c);

bool m2m_mqtt_conn_poll_event(struct m2m_mqtt_conn *c, struct m2m_mqtt_conn_event *ev)
{
    ev_node_free(c->ev_cur);
    c->ev_cur = NULL;
    struct ev_node *e = c->ev_head;
    if (!e && c->in_len && (c->st == ST_AWAIT_CONNECT || c->st == ST_CONNECTED)) {
        process(c); /* input left buffered while the queue was full */
        e = c->ev_head;
    }
    if (!e) {
        free(c->ev_pkt); /* idle connections keep no decoded packet */
        c->ev_pkt = NULL;
        return false;
    }
    c->ev_head = e->next;
    if (!c->ev_head)
        c->ev_tail = NULL;
    c->nev--;
    c->ev_cur = e;
    *ev = e->ev;
    if (e->raw) {
        /* The copy decoded once already, so it decodes again. */
        if (!c->ev_pkt && !(c->ev_pkt = malloc(sizeof *c->ev_pkt)))
            return false;
        if (m2m_mqtt_decode(c->ev_pkt, (enum m2m_mqtt_version)c->version, e->raw, e->len, NULL) != 0)
            return false;
        switch (e->ev.type) {
        case M2M_MQTT_EV_CONNECT:
            ev->connect = &c->ev_pkt->u.connect;
            ev->version = c->ev_pkt->version;
            break;
        case M2M_MQTT_EV_PUBLISH:
            c->ev_pkt->u.publish.topic = (struct m2m_slice){e->topic, e->topic_len};
            ev->publish = &c->ev_pkt->u.publish;
            break;
        case M2M_MQTT_EV_SUBSCRIBE: ev->subscribe = &c->ev_pkt->u.subscribe; break;
        case M2M_MQTT_EV_UNSUBSCRIBE: ev->unsubscribe = &c->ev_pkt->u.unsubscribe; break;
        default: break;
        }
    }
    return true;
}

/* ---- closing ----------------------------------------------------------- */

/* Closes the connection: a v5 session past CONNECT gets DISCONNECT `reason`
 * first [MQTT-4.8.0-1 allows 3.1.1 to just close]. */
static void conn_close(struct m2m_mqtt_conn *c, int err, uint8_t reason)
{
    if (c->st == ST_CLOSED)
        return;
    uint8_t sent = 0;
    if (c->version == M2M_MQTT_V5 && reason && c->st == ST_CONNECTED) {
        struct m2m_mqtt_packet d;
        m2m_mqtt_packet_init(&d, M2M_MQTT_DISCONNECT, M2M_MQTT_V5);
        d.u.disconnect.rc = reason;
        if (out_pkt(c, &d) == 0)
            sent = reason;
    }
    bool will = c->will && c->st == ST_CONNECTED;
    c->st = ST_CLOSED;
    struct ev_node *e = ev_push(c, M2M_MQTT_EV_CLOSED, NULL, 0);
    if (e) {
        e->ev.err = err;
        e->ev.reason = sent;
        e->ev.publish_will = will;
    }
}

/* Output or memory trouble while answering: nothing sensible is left. */
static void check_out(struct m2m_mqtt_conn *c, int rc)
{
    if (rc)
        conn_close(c, rc, M2M_MQTT_RC_IMPLEMENTATION_SPECIFIC);
}

static bool ev_full(struct m2m_mqtt_conn *c)
{
    if (c->nev < c->cfg.max_events)
        return false;
    conn_close(c, M2M_ELIMIT, M2M_MQTT_RC_IMPLEMENTATION_SPECIFIC);
    return true;
}

static void send_ack(struct m2m_mqtt_conn *c, enum m2m_mqtt_type type, uint16_t id, uint8_t rc)
{
    struct m2m_mqtt_packet a;
    m2m_mqtt_packet_init(&a, type, (enum m2m_mqtt_version)c->version);
    a.u.ack.packet_id = id;
    a.u.ack.rc = c->version == M2M_MQTT_V5 ? rc : 0;
    check_out(c, out_pkt(c, &a));
}

/* ---- inbound packets ---------------------------------------------------- */

static struct in_msg *in_find(struct m2m_mqtt_conn *c, uint16_t id)
{
    for (size_t i = 0; i < c->ninq; i++)
        if (c->inq[i].id == id)
            return &c->inq[i];
    return NULL;
}

static void in_remove(struct m2m_mqtt_conn *c, struct in_msg *m)
{
    size_t i = (size_t)(m - c->inq);
    memmove(&c->inq[i], &c->inq[i + 1], (c->ninq - i - 1) * sizeof *c->inq);
    c->ninq--;
}

static struct out_msg *out_find(struct m2m_mqtt_conn *c, uint16_t id)
{
    for (size_t i = 0; i < c->noutq; i++)
        if (c->outq[i].id == id)
            return &c->outq[i];
    return NULL;
}

static void out_done(struct m2m_mqtt_conn *c, struct out_msg *m)
{
    uint16_t id = m->id;
    size_t i = (size_t)(m - c->outq);
    free(m->raw);
    memmove(&c->outq[i], &c->outq[i + 1], (c->noutq - i - 1) * sizeof *c->outq);
    c->noutq--;
    struct ev_node *e = ev_push(c, M2M_MQTT_EV_PUBLISH_DONE, NULL, 0);
    if (e)
        e->ev.packet_id = id;
    else
        conn_close(c, M2M_ENOMEM, M2M_MQTT_RC_IMPLEMENTATION_SPECIFIC);
}

static void on_connect(struct m2m_mqtt_conn *c, const struct m2m_mqtt_packet *pkt, const uint8_t *raw,
                       size_t len)
{
    const struct m2m_mqtt_connect *cn = &pkt->u.connect;
    c->version = pkt->version;
    c->will = cn->will;
    c->clean_start = cn->clean_start;
    c->keep_alive = cn->keep_alive;
    if (c->version == M2M_MQTT_V5) {
        if (c->cfg.max_keep_alive && (c->keep_alive == 0 || c->keep_alive > c->cfg.max_keep_alive)) {
            c->keep_alive = c->cfg.max_keep_alive; /* told in CONNACK [MQTT-3.2.2-21] */
            c->keep_alive_forced = true;
        }
        if (m2m_mqtt_props_has(&cn->props, M2M_MQTT_P_RECEIVE_MAXIMUM))
            c->client_recv_max = cn->props.receive_maximum;
        if (m2m_mqtt_props_has(&cn->props, M2M_MQTT_P_MAXIMUM_PACKET_SIZE))
            c->client_max_packet = cn->props.maximum_packet_size;
        if (m2m_mqtt_props_has(&cn->props, M2M_MQTT_P_TOPIC_ALIAS_MAXIMUM)) {
            uint16_t want = cn->props.topic_alias_maximum;
            uint16_t cap =
                c->cfg.out_topic_aliases < MAX_OUT_ALIASES ? c->cfg.out_topic_aliases : MAX_OUT_ALIASES;
            c->max_out_aliases = want < cap ? want : cap;
        }
    }
    c->st = ST_AWAIT_ACCEPT;
    if (!ev_push(c, M2M_MQTT_EV_CONNECT, raw, len))
        conn_close(c, M2M_ENOMEM, 0);
}

static void on_publish(struct m2m_mqtt_conn *c, const struct m2m_mqtt_publish *pb, const uint8_t *raw,
                       size_t len)
{
    struct m2m_slice topic = pb->topic;
    if (c->version == M2M_MQTT_V5 && m2m_mqtt_props_has(&pb->props, M2M_MQTT_P_TOPIC_ALIAS)) {
        uint16_t a = pb->props.topic_alias;
        if (a == 0 || a > c->cfg.topic_alias_maximum) {
            conn_close(c, M2M_EMALFORMED,
                       M2M_MQTT_RC_TOPIC_ALIAS_INVALID); /* [MQTT-3.3.2-8], [MQTT-3.3.2-9] */
            return;
        }
        if (!c->aliases && !(c->aliases = calloc(c->cfg.topic_alias_maximum, sizeof *c->aliases))) {
            conn_close(c, M2M_ENOMEM, M2M_MQTT_RC_IMPLEMENTATION_SPECIFIC);
            return;
        }
        struct alias *al = &c->aliases[a - 1];
        if (topic.n) {
            uint8_t *p = malloc(topic.n);
            if (!p) {
                conn_close(c, M2M_ENOMEM, M2M_MQTT_RC_IMPLEMENTATION_SPECIFIC);
                return;
            }
            memcpy(p, topic.p, topic.n);
            free(al->p);
            al->p = p;
            al->n = topic.n;
        } else if (!al->p) {
            conn_close(c, M2M_EMALFORMED, M2M_MQTT_RC_PROTOCOL_ERROR);
            return;
        }
        topic = (struct m2m_slice){al->p, al->n};
    }
    if (topic.n == 0) {
        conn_close(c, M2M_EMALFORMED, M2M_MQTT_RC_PROTOCOL_ERROR);
        return;
    }
    if (pb->qos > 0) {
        struct in_msg *m = in_find(c, pb->packet_id);
        if (m) {
            /* A retransmission: QoS 2 must not be delivered twice
             * [MQTT-4.3.3-9]; re-send PUBREC if it went out already. QoS 1
             * still awaits the application's ack. */
            if (m->qos == 2 && m->st == IN_WAIT_PUBREL)
                send_ack(c, M2M_MQTT_PUBREC, m->id, 0);
            return;
        }
        /* v5 counts QoS 2 until PUBCOMP against our Receive Maximum; a
         * 3.1.1 client, which is only paused at receive_maximum messages
         * awaiting our ack, may leave any number awaiting its PUBREL. */
        size_t limit = c->version == M2M_MQTT_V5 ? c->cfg.receive_maximum : 65535;
        if (c->ninq >= limit) {
            conn_close(c, M2M_ELIMIT, M2M_MQTT_RC_RECEIVE_MAXIMUM_EXCEEDED); /* [MQTT-3.3.4-9] */
            return;
        }
        if (c->ninq == c->capinq) {
            size_t cap = c->capinq ? 2 * c->capinq : c->cfg.receive_maximum;
            if (cap > limit)
                cap = limit;
            struct in_msg *q = realloc(c->inq, cap * sizeof *q);
            if (!q) {
                conn_close(c, M2M_ENOMEM, M2M_MQTT_RC_IMPLEMENTATION_SPECIFIC);
                return;
            }
            c->inq = q;
            c->capinq = cap;
        }
        c->inq[c->ninq++] = (struct in_msg){pb->packet_id, pb->qos, IN_WAIT_APP};
        c->nwait_app++;
    }
    if (ev_full(c))
        return;
    struct ev_node *e = ev_push(c, M2M_MQTT_EV_PUBLISH, raw, len);
    if (e) {
        e->topic = malloc(topic.n);
        if (e->topic) {
            memcpy(e->topic, topic.p, topic.n);
            e->topic_len = topic.n;
            return;
        }
    }
    conn_close(c, M2M_ENOMEM, M2M_MQTT_RC_IMPLEMENTATION_SPECIFIC);
}

static void on_packet(struct m2m_mqtt_conn *c, const uint8_t *raw, size_t len)
{
    struct m2m_mqtt_packet pkt;
    struct m2m_mqtt_diag diag = {0, NULL};
    int rc = m2m_mqtt_decode(
        &pkt, c->st == ST_AWAIT_CONNECT ? M2M_MQTT_V5 : (enum m2m_mqtt_version)c->version, raw, len, &diag);
    c->last_rx = c->now;
    if (c->st == ST_AWAIT_CONNECT) {
        if ((raw[0] >> 4) != M2M_MQTT_CONNECT) {
            conn_close(c, M2M_EMALFORMED, 0); /* [MQTT-3.1.0-1] */
            return;
        }
        if (rc == M2M_EUNSUPPORTED) {
            /* Unacceptable protocol level: the 3.1.1 CONNACK every client reads. */
            static const uint8_t refuse[] = {0x20, 0x02, 0x00, M2M_MQTT311_BAD_PROTOCOL_VERSION};
            check_out(c, out_raw(c, refuse, sizeof refuse));
        }
        if (rc) {
            conn_close(c, rc, 0);
            return;
        }
        on_connect(c, &pkt, raw, len);
        return;
    }
    if (rc) {
        conn_close(c, rc, diag.reason ? diag.reason : M2M_MQTT_RC_MALFORMED_PACKET);
        return;
    }
    switch (pkt.type) {
    case M2M_MQTT_PUBLISH: on_publish(c, &pkt.u.publish, raw, len); break;
    case M2M_MQTT_PUBREL: {
        struct in_msg *m = in_find(c, pkt.u.ack.packet_id);
        if (m && m->qos == 2 && m->st == IN_WAIT_PUBREL) {
            in_remove(c, m);
            send_ack(c, M2M_MQTT_PUBCOMP, pkt.u.ack.packet_id, 0); /* [MQTT-4.3.3-11] */
        } else {
            send_ack(c, M2M_MQTT_PUBCOMP, pkt.u.ack.packet_id, M2M_MQTT_RC_PACKET_ID_NOT_FOUND);
        }
        break;
    }
    case M2M_MQTT_PUBACK: {
        struct out_msg *m = out_find(c, pkt.u.ack.packet_id);
        if (m && m->st == OUT_WAIT_PUBACK)
            out_done(c, m);
        break;
    }
    case M2M_MQTT_PUBREC: {
        struct out_msg *m = out_find(c, pkt.u.ack.packet_id);
        if (!m || m->st == OUT_WAIT_PUBACK)
            break;
        if (c->version == M2M_MQTT_V5 && pkt.u.ack.rc >= 0x80) {
            out_done(c, m); /* a failed PUBREC ends the flow [MQTT-4.3.3-4] */
            break;
        }
        m->st = OUT_WAIT_PUBCOMP;
        send_ack(c, M2M_MQTT_PUBREL, m->id, 0);
        struct ev_node *e = ev_push(c, M2M_MQTT_EV_PUBLISH_RELEASED, NULL, 0);
        if (e)
            e->ev.packet_id = m->id;
        else
            conn_close(c, M2M_ENOMEM, M2M_MQTT_RC_IMPLEMENTATION_SPECIFIC);
        break;
    }
    case M2M_MQTT_PUBCOMP: {
        struct out_msg *m = out_find(c, pkt.u.ack.packet_id);
        if (m && m->st == OUT_WAIT_PUBCOMP)
            out_done(c, m);
        break;
    }
    case M2M_MQTT_SUBSCRIBE:
    case M2M_MQTT_UNSUBSCRIBE:
        if (ev_full(c))
            break;
        if (!ev_push(c, pkt.type == M2M_MQTT_SUBSCRIBE ? M2M_MQTT_EV_SUBSCRIBE : M2M_MQTT_EV_UNSUBSCRIBE, raw,
                     len))
            conn_close(c, M2M_ENOMEM, M2M_MQTT_RC_IMPLEMENTATION_SPECIFIC);
        break;
    case M2M_MQTT_PINGREQ: {
        static const uint8_t pingresp[] = {0xd0, 0x00};
        check_out(c, out_raw(c, pingresp, sizeof pingresp));
        break;
    }
    case M2M_MQTT_DISCONNECT: {
        uint8_t r = c->version == M2M_MQTT_V5 ? pkt.u.disconnect.rc : 0;
        bool will = c->will && r != M2M_MQTT_RC_NORMAL_DISCONNECTION; /* [MQTT-3.14.4-3] */
        c->st = ST_CLOSED;
        struct ev_node *e = ev_push(c, M2M_MQTT_EV_DISCONNECT, NULL, 0);
        if (e) {
            e->ev.reason = r;
            e->ev.publish_will = will;
            if (c->version == M2M_MQTT_V5 &&
                m2m_mqtt_props_has(&pkt.u.disconnect.props, M2M_MQTT_P_SESSION_EXPIRY)) {
                e->ev.has_session_expiry = true;
                e->ev.session_expiry = pkt.u.disconnect.props.session_expiry;
            }
        }
        break;
    }
    case M2M_MQTT_CONNECT:
        conn_close(c, M2M_EMALFORMED, M2M_MQTT_RC_PROTOCOL_ERROR); /* [MQTT-3.1.0-2] */
        break;
    default: /* server-to-client packets, AUTH without enhanced authentication */
        conn_close(c, M2M_EMALFORMED, M2M_MQTT_RC_PROTOCOL_ERROR);
        break;
    }
}

/* Handles the complete packets buffered in c->in, unless an answer to
 * CONNECT is pending. Parsing pauses while max_events events wait: the rest
 * stays buffered and is parsed as the application polls (backpressure on a
 * fast publisher instead of a closed connection). */
static void process(struct m2m_mqtt_conn *c)
{
    size_t off = 0;
    if (c->st == ST_AWAIT_CONNECT && c->in_len && c->in[0] != (M2M_MQTT_CONNECT << 4)) {
        conn_close(c, M2M_EMALFORMED, 0); /* [MQTT-3.1.0-1], at the first byte (HTTP, TLS ...) */
        off = c->in_len;
    }
    while ((c->st == ST_AWAIT_CONNECT || c->st == ST_CONNECTED) && c->nev < c->cfg.max_events) {
        size_t total = 0;
        int rc = m2m_mqtt_frame(c->in + off, c->in_len - off, c->cfg.max_packet_size, &total);
        if (rc == M2M_EAGAIN)
            break;
        if (rc == M2M_ELIMIT) {
            conn_close(c, M2M_ELIMIT, M2M_MQTT_RC_PACKET_TOO_LARGE); /* over our Maximum Packet Size */
            break;
        }
        if (rc) {
            conn_close(c, M2M_EMALFORMED, M2M_MQTT_RC_MALFORMED_PACKET);
            break;
        }
        /* A 3.1.1 client does not know our Receive Maximum: instead of
         * closing, wait until the application acknowledges one. */
        uint8_t h = c->in[off];
        if (c->st == ST_CONNECTED && c->version != M2M_MQTT_V5 && (h >> 4) == M2M_MQTT_PUBLISH &&
            ((h >> 1) & 3) != 0 && c->nwait_app >= c->cfg.receive_maximum)
            break;
        on_packet(c, c->in + off, total);
        off += total;
    }
    if (c->st == ST_CLOSED)
        off = c->in_len;
    if (off == c->in_len) {
        free(c->in);
        c->in = NULL;
        c->in_cap = c->in_len = 0;
        return;
    }
    memmove(c->in, c->in + off, c->in_len - off);
    c->in_len -= off;
}

int m2m_mqtt_conn_feed(struct m2m_mqtt_conn *c, m2m_time now, const uint8_t *p, size_t n)
{
    if (c->st == ST_CLOSED)
        return M2M_ESTATE;
    if (now > c->now)
        c->now = now;
    while (n && c->st != ST_CLOSED) {
        if (c->in_cap - c->in_len < n && c->in_cap < c->in_max) {
            size_t cap = c->in_cap ? c->in_cap : 512;
            while (cap - c->in_len < n && cap < c->in_max)
                cap *= 2;
            if (cap > c->in_max)
                cap = c->in_max;
            uint8_t *b = realloc(c->in, cap);
            if (!b) {
                conn_close(c, M2M_ENOMEM, M2M_MQTT_RC_IMPLEMENTATION_SPECIFIC);
                break;
            }
            c->in = b;
            c->in_cap = cap;
        }
        size_t k = c->in_cap - c->in_len;
        if (k == 0) {
            /* Reachable while a CONNECT awaits its answer, or when the
             * application leaves a full event queue unread. */
            conn_close(c, M2M_ELIMIT, 0);
            break;
        }
        if (k > n)
            k = n;
        memcpy(c->in + c->in_len, p, k);
        c->in_len += k;
        p += k;
        n -= k;
        process(c);
    }
    return 0;
}

/* ---- timers ------------------------------------------------------------ */

m2m_time m2m_mqtt_conn_next_timeout(const struct m2m_mqtt_conn *c)
{
    if (c->st == ST_AWAIT_CONNECT)
        return c->cfg.start + (m2m_time)c->cfg.connect_timeout_ms;
    if (c->st == ST_CONNECTED && c->keep_alive)
        return c->last_rx + (m2m_time)c->keep_alive * 1500; /* [MQTT-3.1.2-24] */
    return M2M_NEVER;
}

void m2m_mqtt_conn_on_timeout(struct m2m_mqtt_conn *c, m2m_time now)
{
    if (now > c->now)
        c->now = now;
    if (c->now < m2m_mqtt_conn_next_timeout(c))
        return;
    if (c->st == ST_AWAIT_CONNECT)
        conn_close(c, M2M_ETIMEDOUT, 0);
    else if (c->st == ST_CONNECTED)
        conn_close(c, M2M_ETIMEDOUT, M2M_MQTT_RC_KEEP_ALIVE_TIMEOUT);
}

/* ---- application answers ------------------------------------------------ */

int m2m_mqtt_conn_accept(struct m2m_mqtt_conn *c, bool session_present, const char *assigned_client_id)
{
    if (c->st != ST_AWAIT_ACCEPT)
        return M2M_ESTATE;
    struct m2m_mqtt_packet ack;
    m2m_mqtt_packet_init(&ack, M2M_MQTT_CONNACK, (enum m2m_mqtt_version)c->version);
    ack.u.connack.session_present = session_present;
    if (c->clean_start)
        ack.u.connack.session_present = false; /* [MQTT-3.2.2-2] */
    if (c->version == M2M_MQTT_V5) {
        struct m2m_mqtt_props *pr = &ack.u.connack.props;
        pr->receive_maximum = c->cfg.receive_maximum;
        m2m_mqtt_props_set(pr, M2M_MQTT_P_RECEIVE_MAXIMUM);
        pr->maximum_packet_size = c->cfg.max_packet_size;
        m2m_mqtt_props_set(pr, M2M_MQTT_P_MAXIMUM_PACKET_SIZE);
        if (c->cfg.topic_alias_maximum) {
            pr->topic_alias_maximum = c->cfg.topic_alias_maximum;
            m2m_mqtt_props_set(pr, M2M_MQTT_P_TOPIC_ALIAS_MAXIMUM);
        }
        if (c->keep_alive_forced) {
            pr->server_keep_alive = c->keep_alive;
            m2m_mqtt_props_set(pr, M2M_MQTT_P_SERVER_KEEP_ALIVE);
        }
        if (assigned_client_id) {
            pr->assigned_client_id =
                (struct m2m_slice){(const uint8_t *)assigned_client_id, strlen(assigned_client_id)};
            m2m_mqtt_props_set(pr, M2M_MQTT_P_ASSIGNED_CLIENT_ID);
        }
    }
    int rc = out_pkt(c, &ack);
    if (rc)
        return rc;
    c->st = ST_CONNECTED;
    process(c);
    return 0;
}

int m2m_mqtt_conn_refuse(struct m2m_mqtt_conn *c, uint8_t reason)
{
    if (c->st != ST_AWAIT_ACCEPT)
        return M2M_ESTATE;
    if (reason < 0x80)
        reason = M2M_MQTT_RC_UNSPECIFIED_ERROR;
    uint8_t code = reason;
    if (c->version != M2M_MQTT_V5) {
        switch (reason) {
        case M2M_MQTT_RC_UNSUPPORTED_PROTOCOL_VERSION: code = M2M_MQTT311_BAD_PROTOCOL_VERSION; break;
        case M2M_MQTT_RC_CLIENT_ID_NOT_VALID: code = M2M_MQTT311_IDENTIFIER_REJECTED; break;
        case M2M_MQTT_RC_BAD_USERNAME_OR_PASSWORD: code = M2M_MQTT311_BAD_USERNAME_OR_PASSWORD; break;
        case M2M_MQTT_RC_NOT_AUTHORIZED: code = M2M_MQTT311_NOT_AUTHORIZED; break;
        default: code = M2M_MQTT311_SERVER_UNAVAILABLE; break;
        }
    }
    struct m2m_mqtt_packet ack;
    m2m_mqtt_packet_init(&ack, M2M_MQTT_CONNACK, (enum m2m_mqtt_version)c->version);
    ack.u.connack.rc = code;
    int rc = out_pkt(c, &ack);
    c->st = ST_CLOSED;
    struct ev_node *e = ev_push(c, M2M_MQTT_EV_CLOSED, NULL, 0);
    if (e) {
        e->ev.err = M2M_ESTATE;
        e->ev.reason = rc == 0 && c->version == M2M_MQTT_V5 ? reason : 0;
    }
    return rc;
}

int m2m_mqtt_conn_ack(struct m2m_mqtt_conn *c, uint16_t packet_id, uint8_t reason)
{
    if (c->st != ST_CONNECTED)
        return M2M_ESTATE;
    struct in_msg *m = in_find(c, packet_id);
    if (!m || m->st != IN_WAIT_APP)
        return M2M_ENOTFOUND;
    c->nwait_app--;
    if (m->qos == 1) {
        in_remove(c, m);
        send_ack(c, M2M_MQTT_PUBACK, packet_id, reason);
    } else {
        /* From here on a retransmission is not delivered again [MQTT-4.3.3-9]. */
        m->st = IN_WAIT_PUBREL;
        if (c->version == M2M_MQTT_V5 && reason >= 0x80)
            in_remove(c, m);
        send_ack(c, M2M_MQTT_PUBREC, packet_id, reason);
    }
    if (c->in_len && c->st == ST_CONNECTED)
        process(c); /* a 3.1.1 publisher may have been waiting for this slot */
    return c->st == ST_CLOSED ? M2M_ENOBUFS : 0;
}

static int send_suback(struct m2m_mqtt_conn *c, enum m2m_mqtt_type type, uint16_t packet_id,
                       const uint8_t *codes, size_t n)
{
    if (c->st != ST_CONNECTED)
        return M2M_ESTATE;
    if (n > M2M_MQTT_MAX_FILTERS || (n && !codes))
        return M2M_EINVAL;
    struct m2m_mqtt_packet a;
    m2m_mqtt_packet_init(&a, type, (enum m2m_mqtt_version)c->version);
    a.u.suback.packet_id = packet_id;
    if (type == M2M_MQTT_SUBACK || c->version == M2M_MQTT_V5) {
        a.u.suback.n = (uint16_t)n;
        if (n)
            memcpy(a.u.suback.rc, codes, n);
    }
    return out_pkt(c, &a);
}

int m2m_mqtt_conn_suback(struct m2m_mqtt_conn *c, uint16_t packet_id, const uint8_t *codes, size_t n)
{
    return send_suback(c, M2M_MQTT_SUBACK, packet_id, codes, n);
}

int m2m_mqtt_conn_unsuback(struct m2m_mqtt_conn *c, uint16_t packet_id, const uint8_t *codes, size_t n)
{
    return send_suback(c, M2M_MQTT_UNSUBACK, packet_id, codes, n);
}

/* ---- outbound messages -------------------------------------------------- */

/* The alias for topic towards this client: *fresh when the mapping is new
 * (send the topic with it once), 0 when none is free. */
static uint16_t out_alias(struct m2m_mqtt_conn *c, struct m2m_slice topic, bool *fresh)
{
    *fresh = false;
    if (!c->max_out_aliases)
        return 0;
    for (uint16_t i = 0; i < c->n_out_aliases; i++)
        if (c->out_aliases[i].n == topic.n && memcmp(c->out_aliases[i].p, topic.p, topic.n) == 0)
            return (uint16_t)(i + 1);
    if (c->n_out_aliases >= c->max_out_aliases)
        return 0;
    if (!c->out_aliases && !(c->out_aliases = calloc(c->max_out_aliases, sizeof *c->out_aliases)))
        return 0;
    uint8_t *p = malloc(topic.n);
    if (!p)
        return 0;
    memcpy(p, topic.p, topic.n);
    c->out_aliases[c->n_out_aliases] = (struct alias){p, topic.n};
    *fresh = true;
    return ++c->n_out_aliases;
}

/* Sends a PUBLISH; `fixed_id` (non-zero) restores a message of an earlier
 * connection with its packet id and DUP set, `released` one whose PUBREC
 * came already (only PUBREL goes out). */
static int publish(struct m2m_mqtt_conn *c, m2m_time now, const struct m2m_mqtt_publish *in,
                   uint16_t fixed_id, bool released, uint16_t *packet_id)
{
    if (c->st != ST_CONNECTED)
        return M2M_ESTATE;
    if (now > c->now)
        c->now = now;
    if (in->qos > 2 || !m2m_mqtt_topic_valid(in->topic) || (fixed_id && in->qos == 0))
        return M2M_EINVAL;
    size_t window = c->cfg.max_inflight < c->client_recv_max ? c->cfg.max_inflight : c->client_recv_max;
    if (in->qos > 0 && c->noutq >= window)
        return M2M_EAGAIN; /* [MQTT-3.3.4-7] */
    if (fixed_id && out_find(c, fixed_id))
        return M2M_EEXIST;
    if (in->qos > 0 && c->noutq == c->capoutq) {
        size_t cap = c->capoutq ? 2 * c->capoutq : 4;
        if (cap > window)
            cap = window;
        struct out_msg *q = realloc(c->outq, cap * sizeof *q);
        if (!q)
            return M2M_ENOMEM;
        c->outq = q;
        c->capoutq = cap;
    }
    struct m2m_mqtt_packet pkt;
    m2m_mqtt_packet_init(&pkt, M2M_MQTT_PUBLISH, (enum m2m_mqtt_version)c->version);
    pkt.u.publish = *in;
    pkt.u.publish.dup = fixed_id != 0; /* [MQTT-3.3.1-1] */
    if (c->version != M2M_MQTT_V5) {
        memset(&pkt.u.publish.props, 0, sizeof pkt.u.publish.props);
    } else {
        pkt.u.publish.props.present &= ~((uint64_t)1 << M2M_MQTT_P_TOPIC_ALIAS);
        bool fresh;
        uint16_t a = out_alias(c, in->topic, &fresh);
        if (a) {
            pkt.u.publish.props.topic_alias = a;
            m2m_mqtt_props_set(&pkt.u.publish.props, M2M_MQTT_P_TOPIC_ALIAS);
            if (!fresh)
                pkt.u.publish.topic = (struct m2m_slice){NULL, 0};
        }
    }
    if (in->qos > 0) {
        uint16_t id = fixed_id;
        if (!id) {
            id = c->next_id;
            while (out_find(c, id) || id == 0)
                id = (uint16_t)(id + 1);
            c->next_id = (uint16_t)(id + 1);
        }
        pkt.u.publish.packet_id = id;
    }
    size_t need = m2m_mqtt_encoded_size(&pkt), len = 0;
    if (!need)
        return M2M_EINVAL;
    if (c->version == M2M_MQTT_V5 && c->client_max_packet && need > c->client_max_packet)
        return M2M_ELIMIT; /* dropped [MQTT-3.1.2-25] */
    uint8_t *raw = malloc(need);
    if (!raw)
        return M2M_ENOMEM;
    int rc = m2m_mqtt_encode(&pkt, raw, need, &len);
    if (!rc && !released)
        rc = out_raw(c, raw, len);
    if (!rc && released) {
        struct m2m_mqtt_packet a;
        m2m_mqtt_packet_init(&a, M2M_MQTT_PUBREL, (enum m2m_mqtt_version)c->version);
        a.u.ack.packet_id = fixed_id;
        rc = out_pkt(c, &a); /* [MQTT-4.3.3-5]: never the PUBLISH again */
    }
    if (rc || in->qos == 0) {
        free(raw);
        return rc;
    }
    uint8_t st = in->qos == 1 ? OUT_WAIT_PUBACK : released ? OUT_WAIT_PUBCOMP : OUT_WAIT_PUBREC;
    c->outq[c->noutq++] = (struct out_msg){pkt.u.publish.packet_id, st, raw, len};
    if (packet_id)
        *packet_id = pkt.u.publish.packet_id;
    return 0;
}

int m2m_mqtt_conn_publish(struct m2m_mqtt_conn *c, m2m_time now, struct m2m_slice topic,
                          struct m2m_slice payload, uint8_t qos, bool retain,
                          const struct m2m_mqtt_props *props, uint16_t *packet_id)
{
    struct m2m_mqtt_publish in;
    memset(&in, 0, sizeof in);
    in.topic = topic;
    in.payload = payload;
    in.qos = qos;
    in.retain = retain;
    if (props)
        in.props = *props;
    return publish(c, now, &in, 0, false, packet_id);
}

int m2m_mqtt_conn_restore(struct m2m_mqtt_conn *c, m2m_time now, struct m2m_slice topic,
                          struct m2m_slice payload, uint8_t qos, bool retain,
                          const struct m2m_mqtt_props *props, uint16_t packet_id, bool released)
{
    if (!packet_id)
        return M2M_EINVAL;
    struct m2m_mqtt_publish in;
    memset(&in, 0, sizeof in);
    in.topic = topic;
    in.payload = payload;
    in.qos = qos;
    in.retain = retain;
    if (props)
        in.props = *props;
    return publish(c, now, &in, packet_id, released && qos == 2, NULL);
}

int m2m_mqtt_conn_disconnect(struct m2m_mqtt_conn *c, uint8_t reason)
{
    if (c->st == ST_CLOSED)
        return M2M_ESTATE;
    conn_close(c, M2M_ESTATE, reason);
    return 0;
}

int m2m_mqtt_conn_resend(struct m2m_mqtt_conn *c)
{
    if (c->st != ST_CONNECTED)
        return M2M_ESTATE;
    for (size_t i = 0; i < c->noutq; i++) {
        struct out_msg *m = &c->outq[i];
        int rc;
        if (m->st == OUT_WAIT_PUBCOMP) {
            struct m2m_mqtt_packet a;
            m2m_mqtt_packet_init(&a, M2M_MQTT_PUBREL, (enum m2m_mqtt_version)c->version);
            a.u.ack.packet_id = m->id;
            rc = out_pkt(c, &a);
        } else {
            m->raw[0] |= 0x08; /* DUP [MQTT-3.3.1-1] */
            rc = out_raw(c, m->raw, m->len);
        }
        if (rc)
            return rc;
    }
    return 0;
}
