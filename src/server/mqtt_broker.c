/* MQTT broker routing. See mqtt_broker.h.
 *
 * Data layout, correctness first: sessions, subscriptions, shared groups and
 * retained messages live in plain linked lists / arrays, and routing a
 * PUBLISH scans every session and every subscription linearly. That is
 * O(sessions * subscriptions) per message, acceptable for now; a topic tree
 * and an m2m_hmap keyed by client id are the obvious next step.
 *
 * A message is stored once (struct msg, reference counted) and shared by
 * every session queue and in-flight list that holds it.
 *
 * Known limits: v5 Will Delay and Message Expiry are ignored (the will is
 * published at detach); the v5 Session Expiry sent in DISCONNECT is not
 * applied; in-flight messages of a previous connection are re-sent as new
 * PUBLISH packets (new packet id, DUP 0) on the next connection, because
 * m2m_mqtt_conn_resend only covers the same conn; Subscription Identifiers
 * are not forwarded. */
#include "server/mqtt_broker.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "m2m/mqtt.h"

#define DEFAULT_MAX_QUEUED 1000
#define DEFAULT_MAX_RETAINED 10000

struct msg {
    size_t refs;
    uint8_t qos;
    bool retain;
    unsigned props_ctx; /* M2M_MQTT_PUBLISH or M2M_MQTT_CTX_WILL */
    size_t topic_n;
    size_t payload_n;
    size_t props_n;
    uint8_t data[]; /* topic, payload, raw v5 properties */
};

struct qent {
    struct qent *next;
    struct msg *m;
    uint8_t qos;
    bool retain;
    uint16_t packet_id; /* in flight */
};

struct qlist {
    struct qent *head;
    struct qent *tail;
    size_t n;
};

struct sub {
    char *filter; /* as subscribed, $share/ prefix included */
    size_t len;
    uint8_t qos;
    bool no_local;
    bool rap;
    bool shared;
};

struct session {
    struct session *next;
    char *id;
    size_t idlen;
    struct m2m_broker_client *client; /* NULL while offline */
    bool persistent;
    uint32_t expiry_s;  /* v5 Session Expiry Interval, UINT32_MAX: never */
    m2m_time expire_at; /* offline only */
    struct sub *subs;
    size_t nsubs;
    size_t capsubs;
    struct qlist queue;    /* waiting to be sent */
    struct qlist inflight; /* sent, QoS > 0, awaiting PUBLISH_DONE */
};

struct sgroup {
    struct sgroup *next;
    char *filter;
    size_t len;
    size_t rr;
};

struct retained {
    struct retained *next;
    struct msg *m;
};

struct m2m_broker_client {
    struct m2m_broker_client *next;
    struct m2m_broker_client *prev;
    struct m2m_mqtt_conn *conn;
    void (*wake)(void *io);
    void *io;
    struct session *session;
    uint8_t version;
    bool closing;
    struct msg *will;
};

struct m2m_broker {
    struct m2m_broker_config cfg;
    struct session *sessions;
    struct sgroup *groups;
    struct retained *retained;
    size_t nretained;
    struct m2m_broker_client *clients;
    struct m2m_broker_client *current;
    unsigned long next_id;
};

/* ---- messages ------------------------------------------------------------ */

static struct m2m_slice msg_topic(const struct msg *m)
{
    return (struct m2m_slice){m->data, m->topic_n};
}

static struct m2m_slice msg_payload(const struct msg *m)
{
    return (struct m2m_slice){m->data + m->topic_n, m->payload_n};
}

static struct msg *msg_new(struct m2m_slice topic, struct m2m_slice payload, struct m2m_slice props,
                           unsigned ctx, uint8_t qos, bool retain)
{
    struct msg *m = malloc(sizeof *m + topic.n + payload.n + props.n + 1);
    if (!m)
        return NULL;
    m->refs = 1;
    m->qos = qos;
    m->retain = retain;
    m->props_ctx = ctx;
    m->topic_n = topic.n;
    m->payload_n = payload.n;
    m->props_n = props.n;
    if (topic.n)
        memcpy(m->data, topic.p, topic.n);
    if (payload.n)
        memcpy(m->data + topic.n, payload.p, payload.n);
    if (props.n)
        memcpy(m->data + topic.n + payload.n, props.p, props.n);
    return m;
}

static void msg_unref(struct msg *m)
{
    if (m && --m->refs == 0)
        free(m);
}

/* ---- queues -------------------------------------------------------------- */

static void q_push(struct qlist *q, struct qent *e)
{
    e->next = NULL;
    if (q->tail)
        q->tail->next = e;
    else
        q->head = e;
    q->tail = e;
    q->n++;
}

static struct qent *q_pop(struct qlist *q)
{
    struct qent *e = q->head;
    if (!e)
        return NULL;
    q->head = e->next;
    if (!q->head)
        q->tail = NULL;
    q->n--;
    e->next = NULL;
    return e;
}

static void q_clear(struct qlist *q)
{
    struct qent *e;
    while ((e = q_pop(q)) != NULL) {
        msg_unref(e->m);
        free(e);
    }
}

/* Moves every in-flight message in front of the queue: the conn that had
 * them is gone, the next one sends them again. */
static void requeue_inflight(struct session *s)
{
    if (!s->inflight.head)
        return;
    for (struct qent *e = s->inflight.head; e; e = e->next)
        e->packet_id = 0;
    s->inflight.tail->next = s->queue.head;
    if (!s->queue.tail)
        s->queue.tail = s->inflight.tail;
    s->queue.head = s->inflight.head;
    s->queue.n += s->inflight.n;
    s->inflight = (struct qlist){0};
}

/* ---- sessions ------------------------------------------------------------ */

static void session_reset(struct session *s)
{
    for (size_t i = 0; i < s->nsubs; i++)
        free(s->subs[i].filter);
    s->nsubs = 0;
    q_clear(&s->queue);
    q_clear(&s->inflight);
}

static void session_free(struct m2m_broker *b, struct session *s)
{
    for (struct session **pp = &b->sessions; *pp; pp = &(*pp)->next) {
        if (*pp == s) {
            *pp = s->next;
            break;
        }
    }
    session_reset(s);
    free(s->subs);
    free(s->id);
    free(s);
}

static struct session *session_find(struct m2m_broker *b, struct m2m_slice id)
{
    for (struct session *s = b->sessions; s; s = s->next)
        if (s->idlen == id.n && memcmp(s->id, id.p, id.n) == 0)
            return s;
    return NULL;
}

static void purge_expired(struct m2m_broker *b, m2m_time now)
{
    struct session *s = b->sessions;
    while (s) {
        struct session *next = s->next;
        if (!s->client && now >= s->expire_at)
            session_free(b, s);
        s = next;
    }
}

static struct sub *sub_find(struct session *s, struct m2m_slice filter)
{
    for (size_t i = 0; i < s->nsubs; i++)
        if (s->subs[i].len == filter.n && memcmp(s->subs[i].filter, filter.p, filter.n) == 0)
            return &s->subs[i];
    return NULL;
}

/* ---- delivery ------------------------------------------------------------ */

static bool client_online(const struct m2m_broker_client *c)
{
    return c && !c->closing && c->conn;
}

static void touch(struct m2m_broker *b, struct m2m_broker_client *c)
{
    if (c != b->current && c->wake)
        c->wake(c->io);
}

/* Hands one message to the conn: 0, M2M_EAGAIN / M2M_ENOBUFS (try later) or
 * another error (drop it). */
static int send_one(struct m2m_broker_client *c, m2m_time now, struct qent *e)
{
    struct m2m_mqtt_props props;
    const struct m2m_mqtt_props *pp = NULL;
    if (c->version == M2M_MQTT_V5 && e->m->props_n) {
        const struct msg *m = e->m;
        if (m2m_mqtt_props_decode(&props, m->props_ctx, m->data + m->topic_n + m->payload_n, m->props_n,
                                  NULL) == 0) {
            props.present &= ~((uint64_t)1 << M2M_MQTT_P_TOPIC_ALIAS);
            props.present &= ~((uint64_t)1 << M2M_MQTT_P_WILL_DELAY);
            props.present &= ~((uint64_t)1 << M2M_MQTT_P_SUBSCRIPTION_ID);
            props.nsubid = 0;
            pp = &props;
        }
    }
    uint16_t pid = 0;
    int rc =
        m2m_mqtt_conn_publish(c->conn, now, msg_topic(e->m), msg_payload(e->m), e->qos, e->retain, pp, &pid);
    if (rc == 0)
        e->packet_id = pid;
    return rc;
}

/* Sends queued messages while the window allows. */
static void flush_queue(struct m2m_broker *b, struct session *s, m2m_time now)
{
    struct m2m_broker_client *c = s->client;
    bool sent = false;
    while (client_online(c) && s->queue.head) {
        int rc = send_one(c, now, s->queue.head);
        if (rc == M2M_EAGAIN || rc == M2M_ENOBUFS)
            break;
        struct qent *e = q_pop(&s->queue);
        if (rc == 0) {
            sent = true;
            if (e->qos > 0) {
                q_push(&s->inflight, e);
                continue;
            }
        }
        msg_unref(e->m);
        free(e);
    }
    if (sent)
        touch(b, c);
}

/* Queues e, bounded: when full the oldest QoS 0 message goes first; with
 * none to drop the new message is dropped. */
static void enqueue(struct m2m_broker *b, struct session *s, struct qent *e)
{
    if (s->queue.n >= b->cfg.max_queued_per_session) {
        struct qent *prev = NULL, *it = s->queue.head;
        while (it && it->qos != 0) {
            prev = it;
            it = it->next;
        }
        if (!it) {
            msg_unref(e->m);
            free(e);
            return;
        }
        if (prev)
            prev->next = it->next;
        else
            s->queue.head = it->next;
        if (s->queue.tail == it)
            s->queue.tail = prev;
        s->queue.n--;
        msg_unref(it->m);
        free(it);
    }
    q_push(&s->queue, e);
}

static void deliver(struct m2m_broker *b, struct session *s, struct msg *m, uint8_t qos, bool retain,
                    m2m_time now)
{
    bool online = client_online(s->client);
    if (!online && qos == 0)
        return; /* offline sessions keep QoS 1/2 only */
    struct qent *e = calloc(1, sizeof *e);
    if (!e)
        return;
    m->refs++;
    e->m = m;
    e->qos = qos;
    e->retain = retain;
    if (online && !s->queue.head) {
        int rc = send_one(s->client, now, e);
        if (rc == 0) {
            touch(b, s->client);
            if (qos > 0) {
                q_push(&s->inflight, e);
                return;
            }
        }
        if (rc != M2M_EAGAIN && !(rc == M2M_ENOBUFS && qos > 0)) {
            msg_unref(m);
            free(e);
            return;
        }
    }
    enqueue(b, s, e);
}

static uint8_t min_u8(uint8_t a, uint8_t b)
{
    return a < b ? a : b;
}

/* Routes m to every matching session; `from` (may be NULL) is the
 * publisher's session, for No Local. */
static void route(struct m2m_broker *b, const struct session *from, struct msg *m, m2m_time now)
{
    struct m2m_slice topic = msg_topic(m);
    for (struct session *s = b->sessions; s; s = s->next) {
        int best = -1;
        bool rap = false;
        for (size_t i = 0; i < s->nsubs; i++) {
            const struct sub *sb = &s->subs[i];
            if (sb->shared || (sb->no_local && s == from))
                continue;
            if (!m2m_mqtt_topic_match((struct m2m_slice){(const uint8_t *)sb->filter, sb->len}, topic))
                continue;
            if ((int)sb->qos > best)
                best = sb->qos;
            rap = rap || sb->rap;
        }
        if (best >= 0)
            deliver(b, s, m, min_u8(m->qos, (uint8_t)best), m->retain && rap, now);
    }
    /* Shared subscriptions: one member per group, round robin, online
     * members first. */
    for (struct sgroup *g = b->groups; g; g = g->next) {
        struct m2m_slice gf = {(const uint8_t *)g->filter, g->len};
        if (!m2m_mqtt_topic_match(gf, topic))
            continue;
        size_t online = 0, total = 0;
        for (struct session *s = b->sessions; s; s = s->next) {
            if (sub_find(s, gf)) {
                total++;
                online += client_online(s->client);
            }
        }
        if (!total)
            continue;
        bool only_online = online > 0;
        size_t k = g->rr++ % (only_online ? online : total);
        for (struct session *s = b->sessions; s; s = s->next) {
            const struct sub *sb = sub_find(s, gf);
            if (!sb || (only_online && !client_online(s->client)))
                continue;
            if (k-- == 0) {
                deliver(b, s, m, min_u8(m->qos, sb->qos), m->retain && sb->rap, now);
                break;
            }
        }
    }
}

/* ---- retained ------------------------------------------------------------ */

static void retain_store(struct m2m_broker *b, struct msg *m)
{
    struct m2m_slice t = msg_topic(m);
    for (struct retained **pp = &b->retained; *pp; pp = &(*pp)->next) {
        struct retained *r = *pp;
        if (r->m->topic_n == t.n && memcmp(r->m->data, t.p, t.n) == 0) {
            msg_unref(r->m);
            if (m->payload_n == 0) { /* [MQTT-3.3.1-6] delete */
                *pp = r->next;
                free(r);
                b->nretained--;
            } else {
                m->refs++;
                r->m = m;
            }
            return;
        }
    }
    if (m->payload_n == 0 || b->nretained >= b->cfg.max_retained)
        return;
    struct retained *r = malloc(sizeof *r);
    if (!r)
        return;
    m->refs++;
    r->m = m;
    r->next = b->retained;
    b->retained = r;
    b->nretained++;
}

/* ---- events -------------------------------------------------------------- */

static void takeover(struct m2m_broker *b, struct session *s)
{
    struct m2m_broker_client *old = s->client;
    if (!old)
        return;
    old->closing = true; /* [MQTT-3.1.4-3] */
    old->session = NULL;
    s->client = NULL;
    requeue_inflight(s);
    touch(b, old);
}

static bool on_connect(struct m2m_broker *b, struct m2m_broker_client *c,
                       const struct m2m_mqtt_conn_event *ev, m2m_time now)
{
    const struct m2m_mqtt_connect *cn = ev->connect;
    c->version = ev->version;
    if (!b->cfg.allow_anonymous && !cn->has_username) {
        m2m_mqtt_conn_refuse(c->conn, M2M_MQTT_RC_NOT_AUTHORIZED);
        return true;
    }
    char assigned[32];
    struct m2m_slice id = cn->client_id;
    bool assign = false;
    if (id.n == 0) {
        if (ev->version == M2M_MQTT_V311 && !cn->clean_start) {
            m2m_mqtt_conn_refuse(c->conn, M2M_MQTT_RC_CLIENT_ID_NOT_VALID); /* [MQTT-3.1.3-8] */
            return true;
        }
        int n = snprintf(assigned, sizeof assigned, "m2mkit-%lu", ++b->next_id);
        id = (struct m2m_slice){(const uint8_t *)assigned, (size_t)n};
        assign = true;
    }
    bool persistent;
    if (ev->version == M2M_MQTT_V5)
        persistent =
            m2m_mqtt_props_has(&cn->props, M2M_MQTT_P_SESSION_EXPIRY) && cn->props.session_expiry > 0;
    else
        persistent = !cn->clean_start;

    if (cn->will) {
        c->will = msg_new(cn->will_topic, cn->will_payload, cn->will_props.raw, M2M_MQTT_CTX_WILL,
                          cn->will_qos, cn->will_retain);
        if (!c->will) {
            m2m_mqtt_conn_refuse(c->conn, M2M_MQTT_RC_SERVER_UNAVAILABLE);
            return true;
        }
    }

    purge_expired(b, now);
    struct session *s = session_find(b, id);
    bool present = false;
    if (s) {
        bool was_persistent = s->persistent;
        takeover(b, s);
        if (cn->clean_start || !was_persistent)
            session_reset(s);
        else
            present = true;
    } else {
        s = calloc(1, sizeof *s);
        char *sid = s ? malloc(id.n + 1) : NULL;
        if (!sid) {
            free(s);
            m2m_mqtt_conn_refuse(c->conn, M2M_MQTT_RC_SERVER_UNAVAILABLE);
            return true;
        }
        memcpy(sid, id.p, id.n);
        sid[id.n] = 0;
        s->id = sid;
        s->idlen = id.n;
        s->next = b->sessions;
        b->sessions = s;
    }
    s->persistent = persistent;
    s->expire_at = M2M_NEVER;
    s->expiry_s = ev->version == M2M_MQTT_V5 ? cn->props.session_expiry : UINT32_MAX;
    s->client = c;
    c->session = s;
    m2m_mqtt_conn_accept(c->conn, present, assign && ev->version == M2M_MQTT_V5 ? s->id : NULL);
    return false;
}

static void on_publish(struct m2m_broker *b, struct m2m_broker_client *c, const struct m2m_mqtt_publish *p,
                       m2m_time now)
{
    struct msg *m =
        msg_new(p->topic, p->payload, c->version == M2M_MQTT_V5 ? p->props.raw : (struct m2m_slice){0},
                M2M_MQTT_PUBLISH, p->qos, p->retain);
    if (m) {
        if (p->retain)
            retain_store(b, m);
        route(b, c->session, m, now);
        msg_unref(m);
    }
    if (p->qos > 0)
        m2m_mqtt_conn_ack(c->conn, p->packet_id,
                          m ? M2M_MQTT_RC_SUCCESS : M2M_MQTT_RC_IMPLEMENTATION_SPECIFIC);
}

static bool sgroup_add(struct m2m_broker *b, struct m2m_slice f)
{
    for (struct sgroup *g = b->groups; g; g = g->next)
        if (g->len == f.n && memcmp(g->filter, f.p, f.n) == 0)
            return true;
    struct sgroup *g = calloc(1, sizeof *g);
    char *s = g ? malloc(f.n + 1) : NULL;
    if (!s) {
        free(g);
        return false;
    }
    memcpy(s, f.p, f.n);
    s[f.n] = 0;
    g->filter = s;
    g->len = f.n;
    g->next = b->groups;
    b->groups = g;
    return true;
}

/* Adds or replaces a subscription; NULL when out of memory. *is_new says
 * whether it did not exist. */
static struct sub *sub_put(struct m2m_broker *b, struct session *s, const struct m2m_mqtt_subscription *r,
                           bool *is_new)
{
    bool shared = m2m_mqtt_filter_shared(r->filter, NULL, NULL);
    if (shared && !sgroup_add(b, r->filter))
        return NULL;
    struct sub *sb = sub_find(s, r->filter);
    *is_new = sb == NULL;
    if (!sb) {
        if (s->nsubs == s->capsubs) {
            size_t cap = s->capsubs ? 2 * s->capsubs : 4;
            struct sub *n = realloc(s->subs, cap * sizeof *n);
            if (!n)
                return NULL;
            s->subs = n;
            s->capsubs = cap;
        }
        char *f = malloc(r->filter.n + 1);
        if (!f)
            return NULL;
        memcpy(f, r->filter.p, r->filter.n);
        f[r->filter.n] = 0;
        sb = &s->subs[s->nsubs++];
        sb->filter = f;
        sb->len = r->filter.n;
    }
    sb->qos = min_u8(r->qos, 2);
    sb->no_local = r->no_local;
    sb->rap = r->retain_as_published;
    sb->shared = shared;
    return sb;
}

static void send_retained(struct m2m_broker *b, struct session *s, struct m2m_slice filter, uint8_t qos,
                          m2m_time now)
{
    for (struct retained *r = b->retained; r; r = r->next)
        if (m2m_mqtt_topic_match(filter, msg_topic(r->m)))
            deliver(b, s, r->m, min_u8(r->m->qos, qos), true, now); /* [MQTT-3.3.1-8] */
}

static void on_subscribe(struct m2m_broker *b, struct m2m_broker_client *c,
                         const struct m2m_mqtt_subscribe *sp, m2m_time now)
{
    struct session *s = c->session;
    uint8_t codes[M2M_MQTT_MAX_FILTERS] = {0};
    bool want_retained[M2M_MQTT_MAX_FILTERS] = {0};
    size_t n = sp->n <= M2M_MQTT_MAX_FILTERS ? sp->n : M2M_MQTT_MAX_FILTERS;
    for (size_t i = 0; i < n; i++) {
        const struct m2m_mqtt_subscription *r = &sp->sub[i];
        want_retained[i] = false;
        if (!m2m_mqtt_filter_valid(r->filter)) {
            codes[i] =
                c->version == M2M_MQTT_V5 ? M2M_MQTT_RC_TOPIC_FILTER_INVALID : M2M_MQTT311_SUBACK_FAILURE;
            continue;
        }
        bool is_new = false;
        const struct sub *sb = sub_put(b, s, r, &is_new);
        if (!sb) {
            codes[i] = c->version == M2M_MQTT_V5 ? M2M_MQTT_RC_UNSPECIFIED_ERROR : M2M_MQTT311_SUBACK_FAILURE;
            continue;
        }
        codes[i] = sb->qos;
        /* Retained messages are not sent to shared subscriptions. */
        want_retained[i] = !sb->shared && (r->retain_handling == 0 || (r->retain_handling == 1 && is_new));
    }
    m2m_mqtt_conn_suback(c->conn, sp->packet_id, codes, n);
    for (size_t i = 0; i < n; i++)
        if (want_retained[i])
            send_retained(b, s, sp->sub[i].filter, codes[i], now);
}

static void on_unsubscribe(struct m2m_broker_client *c, const struct m2m_mqtt_unsubscribe *u)
{
    struct session *s = c->session;
    uint8_t codes[M2M_MQTT_MAX_FILTERS] = {0};
    size_t n = u->n <= M2M_MQTT_MAX_FILTERS ? u->n : M2M_MQTT_MAX_FILTERS;
    for (size_t i = 0; i < n; i++) {
        struct sub *sb = sub_find(s, u->filter[i]);
        if (!sb) {
            codes[i] = M2M_MQTT_RC_NO_SUBSCRIPTION_EXISTED;
            continue;
        }
        free(sb->filter);
        *sb = s->subs[--s->nsubs];
        codes[i] = M2M_MQTT_RC_SUCCESS;
    }
    m2m_mqtt_conn_unsuback(c->conn, u->packet_id, codes, n);
}

static void on_publish_done(struct session *s, uint16_t packet_id)
{
    struct qent *prev = NULL;
    for (struct qent *e = s->inflight.head; e; prev = e, e = e->next) {
        if (e->packet_id != packet_id)
            continue;
        if (prev)
            prev->next = e->next;
        else
            s->inflight.head = e->next;
        if (s->inflight.tail == e)
            s->inflight.tail = prev;
        s->inflight.n--;
        msg_unref(e->m);
        free(e);
        return;
    }
}

/* ---- API ----------------------------------------------------------------- */

struct m2m_broker *m2m_broker_new(const struct m2m_broker_config *cfg)
{
    struct m2m_broker *b = calloc(1, sizeof *b);
    if (!b)
        return NULL;
    if (cfg)
        b->cfg = *cfg;
    if (!b->cfg.max_queued_per_session)
        b->cfg.max_queued_per_session = DEFAULT_MAX_QUEUED;
    if (!b->cfg.max_retained)
        b->cfg.max_retained = DEFAULT_MAX_RETAINED;
    return b;
}

void m2m_broker_free(struct m2m_broker *b)
{
    if (!b)
        return;
    while (b->clients) {
        struct m2m_broker_client *c = b->clients;
        b->clients = c->next;
        msg_unref(c->will);
        free(c);
    }
    while (b->sessions)
        session_free(b, b->sessions);
    while (b->groups) {
        struct sgroup *g = b->groups;
        b->groups = g->next;
        free(g->filter);
        free(g);
    }
    while (b->retained) {
        struct retained *r = b->retained;
        b->retained = r->next;
        msg_unref(r->m);
        free(r);
    }
    free(b);
}

struct m2m_broker_client *m2m_broker_attach(struct m2m_broker *b, struct m2m_mqtt_conn *conn,
                                            void (*wake)(void *io), void *io)
{
    struct m2m_broker_client *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->conn = conn;
    c->wake = wake;
    c->io = io;
    c->next = b->clients;
    if (b->clients)
        b->clients->prev = c;
    b->clients = c;
    return c;
}

bool m2m_broker_process(struct m2m_broker *b, struct m2m_broker_client *c, m2m_time now)
{
    struct m2m_mqtt_conn_event ev;
    bool close = false;
    b->current = c;
    while (m2m_mqtt_conn_poll_event(c->conn, &ev)) {
        if (c->closing)
            continue; /* taken over or refused: ignore what is left */
        switch (ev.type) {
        case M2M_MQTT_EV_CONNECT:
            if (on_connect(b, c, &ev, now)) {
                c->closing = true;
                msg_unref(c->will);
                c->will = NULL;
            }
            break;
        case M2M_MQTT_EV_PUBLISH:
            if (c->session)
                on_publish(b, c, ev.publish, now);
            break;
        case M2M_MQTT_EV_PUBLISH_DONE:
            if (c->session)
                on_publish_done(c->session, ev.packet_id);
            break;
        case M2M_MQTT_EV_SUBSCRIBE:
            if (c->session)
                on_subscribe(b, c, ev.subscribe, now);
            break;
        case M2M_MQTT_EV_UNSUBSCRIBE:
            if (c->session)
                on_unsubscribe(c, ev.unsubscribe);
            break;
        case M2M_MQTT_EV_DISCONNECT:
        case M2M_MQTT_EV_CLOSED:
            if (!ev.publish_will) {
                msg_unref(c->will);
                c->will = NULL;
            }
            close = true;
            break;
        }
    }
    if (c->session && !c->closing && !close)
        flush_queue(b, c->session, now);
    b->current = NULL;
    return close || c->closing;
}

void m2m_broker_detach(struct m2m_broker *b, struct m2m_broker_client *c, m2m_time now)
{
    struct session *s = c->session;
    if (s) {
        s->client = NULL;
        requeue_inflight(s);
        if (!s->persistent) {
            session_free(b, s);
            s = NULL;
        } else if (s->expiry_s != UINT32_MAX) {
            s->expire_at = now + (m2m_time)s->expiry_s * 1000;
        }
    }
    c->session = NULL;
    c->closing = true;
    if (c->prev)
        c->prev->next = c->next;
    else
        b->clients = c->next;
    if (c->next)
        c->next->prev = c->prev;
    if (c->will) {
        b->current = NULL;
        if (c->will->retain)
            retain_store(b, c->will);
        route(b, s, c->will, now);
        msg_unref(c->will);
    }
    free(c);
}
