/* MQTT broker: sessions, delivery and the answers to each client's events.
 * See mqtt_broker.h; the subscription tree is in mqtt_broker_tree.c, the
 * store glue in mqtt_broker_persist.c, $SYS in mqtt_broker_sys.c.
 *
 * A message is stored once (struct msg, reference counted) and shared by
 * every session queue and in-flight list that holds it. Sessions are found
 * by client id in a keyed hash map; routing walks the subscription tree and
 * gathers, per session, the highest granted QoS and every Subscription
 * Identifier, so each session gets one copy [MQTT-3.3.4-2]. */
#include "server/mqtt_broker.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "m2m/mqtt.h"
#include "server/mqtt_auth.h"
#include "server/mqtt_broker_internal.h"
#include "store/mqtt_store.h"

#define DEFAULT_MAX_QUEUED 1000
#define DEFAULT_MAX_QUEUED_BYTES (64u << 20)
#define DEFAULT_MAX_RETAINED 10000
#define DEFAULT_MAX_SUBSCRIPTIONS 10000

static uint8_t min_u8(uint8_t a, uint8_t b)
{
    return a < b ? a : b;
}

/* ---- messages ------------------------------------------------------------ */

static struct m2m_slice msg_topic(const struct msg *m)
{
    return (struct m2m_slice){m->data, m->topic_n};
}

static struct m2m_slice msg_payload(const struct msg *m)
{
    return (struct m2m_slice){m->data + m->topic_n, m->payload_n};
}

struct msg *msg_new(struct m2m_slice topic, struct m2m_slice payload, struct m2m_slice props, unsigned ctx,
                    uint8_t qos, bool retain)
{
    struct msg *m = malloc(sizeof *m + topic.n + payload.n + props.n + 1);
    if (!m)
        return NULL;
    memset(m, 0, sizeof *m);
    m->refs = 1;
    m->expire_at = M2M_NEVER;
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

void msg_unref(struct m2m_broker *b, struct msg *m)
{
    (void)b;
    if (m && --m->refs == 0)
        free(m);
}

/* ---- queues -------------------------------------------------------------- */

struct qent *qent_new(struct msg *m, uint8_t qos, bool retain, const uint32_t *subid, size_t nsubid)
{
    if (nsubid > 255)
        nsubid = 255;
    struct qent *e = calloc(1, sizeof *e + nsubid * sizeof(uint32_t));
    if (!e)
        return NULL;
    m->refs++;
    e->m = m;
    e->qos = qos;
    e->retain = retain;
    e->nsubid = (uint8_t)nsubid;
    if (nsubid)
        memcpy(e->subid, subid, nsubid * sizeof(uint32_t));
    return e;
}

void q_push(struct qlist *q, struct qent *e)
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

static void group_unref(struct sgroup *g)
{
    if (g && --g->refs == 0 && g->n == 0)
        free(g);
}

static void qent_free(struct m2m_broker *b, struct qent *e)
{
    group_unref(e->group);
    msg_unref(b, e->m);
    free(e);
}

/* Drops one entry that left the session for good. */
static void qent_drop(struct m2m_broker *b, struct session *s, struct qent *e)
{
    persist_qent_del(b, s, e);
    if (s->queued_bytes >= e->m->payload_n)
        s->queued_bytes -= e->m->payload_n;
    qent_free(b, e);
}

static void q_clear(struct m2m_broker *b, struct session *s, struct qlist *q)
{
    struct qent *e;
    while ((e = q_pop(q)) != NULL)
        qent_drop(b, s, e);
}

/* Moves every in-flight message in front of the queue: the conn that had
 * them is gone; the next one sends them again with their packet ids. */
static void requeue_inflight(struct session *s)
{
    if (!s->inflight.head)
        return;
    s->inflight.tail->next = s->queue.head;
    if (!s->queue.tail)
        s->queue.tail = s->inflight.tail;
    s->queue.head = s->inflight.head;
    s->queue.n += s->inflight.n;
    s->inflight = (struct qlist){0};
}

/* ---- subscriptions ------------------------------------------------------- */

static void sub_unlink(struct m2m_broker *b, struct sub *sb)
{
    struct tnode *n = sb->node;
    struct sgroup *g = sb->group;
    struct sub **head = g ? &g->members : &n->subs;
    if (sb->prev)
        sb->prev->next = sb->next;
    else
        *head = sb->next;
    if (sb->next)
        sb->next->prev = sb->prev;
    if (g && --g->n == 0) {
        for (struct sgroup **pp = &n->groups; *pp; pp = &(*pp)->next) {
            if (*pp == g) {
                *pp = g->next;
                break;
            }
        }
        if (g->refs == 0)
            free(g); /* else the last queue entry that came through it does */
    }
    if (b->st.subscriptions)
        b->st.subscriptions--;
    tree_prune(n);
}

static void sub_free(struct sub *sb)
{
    free(sb->filter);
    free(sb);
}

static struct sub *sub_find(const struct session *s, struct m2m_slice filter, size_t *idx)
{
    for (size_t i = 0; i < s->nsubs; i++) {
        if (s->subs[i]->len == filter.n && memcmp(s->subs[i]->filter, filter.p, filter.n) == 0) {
            if (idx)
                *idx = i;
            return s->subs[i];
        }
    }
    return NULL;
}

static void sub_remove(struct m2m_broker *b, struct session *s, size_t i)
{
    struct sub *sb = s->subs[i];
    s->subs[i] = s->subs[--s->nsubs];
    sub_unlink(b, sb);
    sub_free(sb);
}

static struct sgroup *group_get(struct tnode *n, struct m2m_slice name)
{
    for (struct sgroup *g = n->groups; g; g = g->next)
        if (g->namelen == name.n && memcmp(g->name, name.p, name.n) == 0)
            return g;
    struct sgroup *g = calloc(1, sizeof *g + name.n + 1);
    if (!g)
        return NULL;
    memcpy(g->name, name.p, name.n);
    g->namelen = name.n;
    g->next = n->groups;
    n->groups = g;
    return g;
}

struct sub *sub_put(struct m2m_broker *b, struct session *s, const struct m2m_mqtt_subscription *r,
                    uint32_t sub_id, bool *is_new)
{
    struct sub *sb = sub_find(s, r->filter, NULL);
    *is_new = sb == NULL;
    if (!sb) {
        struct m2m_slice share = {0}, inner = r->filter;
        bool shared = m2m_mqtt_filter_shared(r->filter, &share, &inner);
        if (s->nsubs == s->capsubs) {
            size_t cap = s->capsubs ? 2 * s->capsubs : 4;
            struct sub **n = realloc(s->subs, cap * sizeof *n);
            if (!n)
                return NULL;
            s->subs = n;
            s->capsubs = cap;
        }
        sb = calloc(1, sizeof *sb);
        char *f = sb ? malloc(r->filter.n + 1) : NULL;
        struct tnode *node = f ? tree_node(b, b->root, inner) : NULL;
        struct sgroup *g = node && shared ? group_get(node, share) : NULL;
        if (!node || (shared && !g)) {
            if (node)
                tree_prune(node);
            free(f);
            free(sb);
            return NULL;
        }
        memcpy(f, r->filter.p, r->filter.n);
        f[r->filter.n] = 0;
        sb->filter = f;
        sb->len = r->filter.n;
        sb->s = s;
        sb->node = node;
        sb->group = g;
        struct sub **head = g ? &g->members : &node->subs;
        sb->next = *head;
        if (*head)
            (*head)->prev = sb;
        *head = sb;
        if (g)
            g->n++;
        s->subs[s->nsubs++] = sb;
        b->st.subscriptions++;
    }
    sb->qos = min_u8(r->qos, 2);
    sb->no_local = r->no_local;
    sb->rap = r->retain_as_published;
    sb->sub_id = sub_id;
    return sb;
}

/* ---- sessions ------------------------------------------------------------ */

struct session *session_get(struct m2m_broker *b, struct m2m_slice id, bool create)
{
    uint64_t h = broker_hash(b, id.p, id.n);
    for (struct m2m_hnode *it = m2m_hmap_first(&b->sessions, h); it; it = m2m_hmap_next(it)) {
        struct session *s = M2M_CONTAINER_OF(it, struct session, hn);
        if (s->idlen == id.n && memcmp(s->id, id.p, id.n) == 0)
            return s;
    }
    if (!create)
        return NULL;
    struct session *s = calloc(1, sizeof *s);
    char *sid = s ? malloc(id.n + 1) : NULL;
    if (!sid) {
        free(s);
        return NULL;
    }
    if (id.n)
        memcpy(sid, id.p, id.n);
    sid[id.n] = 0;
    s->id = sid;
    s->idlen = id.n;
    s->expiry_s = UINT32_MAX;
    s->expire_at = M2M_NEVER;
    s->will_at = M2M_NEVER;
    s->next_seq = 1;
    m2m_hmap_insert(&b->sessions, &s->hn, h);
    s->next = b->all;
    if (b->all)
        b->all->prev = s;
    b->all = s;
    return s;
}

static void session_reset(struct m2m_broker *b, struct session *s)
{
    while (s->nsubs)
        sub_remove(b, s, s->nsubs - 1);
    q_clear(b, s, &s->queue);
    q_clear(b, s, &s->inflight);
    s->queued_bytes = 0;
}

static void session_free(struct m2m_broker *b, struct session *s)
{
    persist_session_del(b, s);
    session_reset(b, s);
    m2m_hmap_remove(&b->sessions, &s->hn);
    if (s->prev)
        s->prev->next = s->next;
    else
        b->all = s->next;
    if (s->next)
        s->next->prev = s->prev;
    msg_unref(b, s->will);
    free(s->subs);
    free(s->id);
    free(s);
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

static bool may_read(const struct m2m_broker *b, const struct m2m_broker_client *c, const struct msg *m)
{
    if (!b->cfg.auth || !m2m_mqtt_auth_has_acl(b->cfg.auth))
        return true;
    const struct session *s = c->session;
    return m2m_mqtt_acl_allows(b->cfg.auth, c->username, (struct m2m_slice){(const uint8_t *)s->id, s->idlen},
                               msg_topic(m), M2M_MQTT_ACCESS_READ);
}

/* Hands one message to the conn: 0, M2M_EAGAIN / M2M_ENOBUFS (try later) or
 * another error (drop it). */
static int send_one(struct m2m_broker *b, struct m2m_broker_client *c, m2m_time now, struct qent *e)
{
    const struct msg *m = e->m;
    if (now >= m->expire_at)
        return M2M_ETIMEDOUT; /* [MQTT-3.3.2-5] */
    if (!may_read(b, c, m))
        return M2M_EINVAL;
    struct m2m_mqtt_props props;
    const struct m2m_mqtt_props *pp = NULL;
    if (c->version == M2M_MQTT_V5) {
        memset(&props, 0, sizeof props);
        if (m->props_n && m2m_mqtt_props_decode(&props, m->props_ctx, m->data + m->topic_n + m->payload_n,
                                                m->props_n, NULL) != 0)
            memset(&props, 0, sizeof props);
        props.present &= ~((uint64_t)1 << M2M_MQTT_P_TOPIC_ALIAS);
        props.present &= ~((uint64_t)1 << M2M_MQTT_P_WILL_DELAY);
        props.present &= ~((uint64_t)1 << M2M_MQTT_P_SUBSCRIPTION_ID);
        props.nsubid = 0;
        for (size_t i = 0; i < e->nsubid && i < M2M_MQTT_MAX_SUBIDS; i++) {
            props.subid[props.nsubid++] = e->subid[i]; /* [MQTT-3.3.4-3] */
            m2m_mqtt_props_set(&props, M2M_MQTT_P_SUBSCRIPTION_ID);
        }
        if (m->expire_at != M2M_NEVER) {
            props.message_expiry = (uint32_t)((m->expire_at - now + 999) / 1000); /* [MQTT-3.3.2-6] */
            m2m_mqtt_props_set(&props, M2M_MQTT_P_MESSAGE_EXPIRY);
        }
        pp = &props;
    }
    uint16_t pid = 0;
    int rc;
    if (e->packet_id)
        rc = m2m_mqtt_conn_restore(c->conn, now, msg_topic(m), msg_payload(m), e->qos, e->retain, pp,
                                   e->packet_id, e->released);
    else
        rc = m2m_mqtt_conn_publish(c->conn, now, msg_topic(m), msg_payload(m), e->qos, e->retain, pp, &pid);
    if (rc == 0) {
        b->st.msgs_sent++;
        if (!e->packet_id)
            e->packet_id = pid;
    }
    return rc;
}

/* Sends queued messages while the window allows. */
static void flush_queue(struct m2m_broker *b, struct session *s, m2m_time now)
{
    struct m2m_broker_client *c = s->client;
    bool sent = false;
    while (client_online(c) && s->queue.head) {
        int rc = send_one(b, c, now, s->queue.head);
        if (rc == M2M_EAGAIN || rc == M2M_ENOBUFS)
            break;
        struct qent *e = q_pop(&s->queue);
        if (rc == 0) {
            sent = true;
            if (e->qos > 0) {
                q_push(&s->inflight, e);
                continue;
            }
        } else if (rc != M2M_ETIMEDOUT) {
            b->st.msgs_dropped++;
        }
        qent_drop(b, s, e);
    }
    if (sent)
        touch(b, c);
}

/* Queues e, bounded in messages and bytes: when full the oldest QoS 0
 * message goes first; with none to drop the new one is dropped. */
static void enqueue(struct m2m_broker *b, struct session *s, struct qent *e)
{
    while (s->queue.n >= b->cfg.max_queued_per_session ||
           (s->queue.n && s->queued_bytes + e->m->payload_n > b->cfg.max_queued_bytes)) {
        struct qent *prev = NULL, *it = s->queue.head;
        while (it && it->qos != 0) {
            prev = it;
            it = it->next;
        }
        if (!it) {
            b->st.msgs_dropped++;
            qent_free(b, e);
            return;
        }
        if (prev)
            prev->next = it->next;
        else
            s->queue.head = it->next;
        if (s->queue.tail == it)
            s->queue.tail = prev;
        s->queue.n--;
        b->st.msgs_dropped++;
        qent_drop(b, s, it);
    }
    s->queued_bytes += e->m->payload_n;
    q_push(&s->queue, e);
    persist_qent(b, s, e);
}

static void deliver_via(struct m2m_broker *b, struct session *s, struct msg *m, uint8_t qos, bool retain,
                        const uint32_t *subid, size_t nsubid, struct sgroup *group, m2m_time now)
{
    bool online = client_online(s->client);
    if (!online && qos == 0)
        return; /* offline sessions keep QoS 1/2 only */
    struct qent *e = qent_new(m, qos, retain, subid, nsubid);
    if (!e)
        return;
    if (group && qos > 0) {
        e->group = group;
        group->refs++;
    }
    if (online && !s->queue.head) {
        int rc = send_one(b, s->client, now, e);
        if (rc == 0) {
            touch(b, s->client);
            if (qos > 0) {
                q_push(&s->inflight, e);
                persist_qent(b, s, e);
                return;
            }
        }
        if (rc != M2M_EAGAIN && !(rc == M2M_ENOBUFS && qos > 0)) {
            if (rc && rc != M2M_ETIMEDOUT)
                b->st.msgs_dropped++;
            qent_free(b, e);
            return;
        }
    }
    enqueue(b, s, e);
}

static void deliver(struct m2m_broker *b, struct session *s, struct msg *m, uint8_t qos, bool retain,
                    const uint32_t *subid, size_t nsubid, m2m_time now)
{
    deliver_via(b, s, m, qos, retain, subid, nsubid, NULL, now);
}

struct route_ctx {
    struct m2m_broker *b;
    const struct session *from;
    struct msg *m;
    m2m_time now;
};

static void collect(struct m2m_broker *b, struct session *s, const struct sub *sb)
{
    if (s->route_gen != b->route_gen) {
        if (b->ntouched == b->captouched) {
            size_t cap = b->captouched ? 2 * b->captouched : 64;
            struct touched *n = realloc(b->touched, cap * sizeof *n);
            if (!n)
                return;
            b->touched = n;
            b->captouched = cap;
        }
        s->route_gen = b->route_gen;
        s->touch = (uint32_t)b->ntouched;
        b->touched[b->ntouched++] = (struct touched){.s = s, .best = -1};
    }
    struct touched *t = &b->touched[s->touch];
    if ((int)sb->qos > t->best)
        t->best = sb->qos;
    t->rap = t->rap || sb->rap;
    if (sb->sub_id && t->nsubid < MAX_ROUTE_SUBIDS)
        t->subid[t->nsubid++] = sb->sub_id;
}

/* The member of a shared subscription group that gets the next message:
 * round robin over the online members (all members when none is online),
 * never `except`. NULL when there is none. */
static struct sub *group_pick(struct sgroup *g, const struct session *except, bool online_only)
{
    size_t online = 0, eligible = 0;
    for (const struct sub *sb = g->members; sb; sb = sb->next) {
        if (sb->s == except)
            continue;
        eligible++;
        online += client_online(sb->s->client);
    }
    bool only_online = online_only || online > 0;
    size_t n = only_online ? online : eligible;
    if (n == 0)
        return NULL;
    size_t k = g->rr++ % n;
    for (struct sub *sb = g->members; sb; sb = sb->next) {
        if (sb->s == except || (only_online && !client_online(sb->s->client)))
            continue;
        if (k-- == 0)
            return sb;
    }
    return NULL;
}

static void deliver_shared(struct route_ctx *rc, struct sgroup *g)
{
    struct sub *sb = group_pick(g, NULL, false);
    if (!sb)
        return;
    uint32_t id = sb->sub_id;
    deliver_via(rc->b, sb->s, rc->m, min_u8(rc->m->qos, sb->qos), rc->m->retain && sb->rap, &id, id ? 1 : 0,
                g, rc->now);
}

/* A member left: what it got through a shared subscription and has not
 * acknowledged goes to another online member of the group (5.0 §4.8.2,
 * a SHOULD). */
static void hand_over_shared(struct m2m_broker *b, struct session *s, m2m_time now)
{
    struct qlist *lists[2] = {&s->inflight, &s->queue};
    for (int i = 0; i < 2; i++) {
        struct qent *prev = NULL, *e = lists[i]->head;
        while (e) {
            struct qent *next = e->next;
            struct sub *to = e->group ? group_pick(e->group, s, true) : NULL;
            if (!to) {
                prev = e;
                e = next;
                continue;
            }
            uint32_t id = to->sub_id;
            deliver_via(b, to->s, e->m, min_u8(e->m->qos, to->qos), e->retain, &id, id ? 1 : 0, e->group,
                        now);
            if (prev)
                prev->next = next;
            else
                lists[i]->head = next;
            if (lists[i]->tail == e)
                lists[i]->tail = prev;
            lists[i]->n--;
            qent_drop(b, s, e);
            e = next;
        }
    }
}

static void visit(void *ctx, struct tnode *n)
{
    struct route_ctx *rc = ctx;
    for (struct sub *sb = n->subs; sb; sb = sb->next)
        if (!(sb->no_local && sb->s == rc->from)) /* [MQTT-3.8.3-3] */
            collect(rc->b, sb->s, sb);
    for (struct sgroup *g = n->groups; g; g = g->next)
        deliver_shared(rc, g);
}

void route(struct m2m_broker *b, const struct session *from, struct msg *m, m2m_time now)
{
    struct route_ctx rc = {b, from, m, now};
    b->route_gen++;
    b->ntouched = 0;
    tree_match(b, b->root, msg_topic(m), visit, &rc);
    for (size_t i = 0; i < b->ntouched; i++) {
        const struct touched *t = &b->touched[i];
        deliver(b, t->s, m, min_u8(m->qos, (uint8_t)t->best), m->retain && t->rap, t->subid, t->nsubid, now);
    }
}

/* ---- retained ------------------------------------------------------------ */

static struct retained *retained_find(struct m2m_broker *b, struct m2m_slice t, uint64_t h)
{
    for (struct m2m_hnode *it = m2m_hmap_first(&b->retained, h); it; it = m2m_hmap_next(it)) {
        struct retained *r = M2M_CONTAINER_OF(it, struct retained, hn);
        if (r->m->topic_n == t.n && memcmp(r->m->data, t.p, t.n) == 0)
            return r;
    }
    return NULL;
}

static void retained_unlink(struct m2m_broker *b, struct retained *r)
{
    m2m_hmap_remove(&b->retained, &r->hn);
    if (r->prev)
        r->prev->next = r->next;
    else
        b->rlist = r->next;
    if (r->next)
        r->next->prev = r->prev;
    b->nretained--;
}

void retain_store(struct m2m_broker *b, struct msg *m, bool persist)
{
    struct m2m_slice t = msg_topic(m);
    uint64_t h = broker_hash(b, t.p, t.n);
    struct retained *r = retained_find(b, t, h);
    if (r) {
        if (persist)
            persist_retained_del(b, r->m);
        msg_unref(b, r->m);
        if (m->payload_n == 0) { /* [MQTT-3.3.1-6] delete */
            retained_unlink(b, r);
            free(r);
            return;
        }
        m->refs++;
        r->m = m;
        if (persist)
            persist_retained(b, m);
        return;
    }
    if (m->payload_n == 0 || b->nretained >= b->cfg.max_retained)
        return;
    r = calloc(1, sizeof *r);
    if (!r)
        return;
    m->refs++;
    r->m = m;
    m2m_hmap_insert(&b->retained, &r->hn, h);
    r->next = b->rlist;
    if (b->rlist)
        b->rlist->prev = r;
    b->rlist = r;
    b->nretained++;
    if (persist)
        persist_retained(b, m);
}

static void send_retained(struct m2m_broker *b, struct session *s, struct m2m_slice filter, uint8_t qos,
                          uint32_t sub_id, m2m_time now)
{
    struct retained *r = b->rlist;
    while (r) {
        struct retained *next = r->next;
        if (now >= r->m->expire_at) {
            persist_retained_del(b, r->m);
            msg_unref(b, r->m);
            retained_unlink(b, r);
            free(r);
        } else if (m2m_mqtt_topic_match(filter, msg_topic(r->m))) {
            deliver(b, s, r->m, min_u8(r->m->qos, qos), true, &sub_id, sub_id ? 1 : 0,
                    now); /* [MQTT-3.3.1-8] */
        }
        r = next;
    }
}

/* ---- wills --------------------------------------------------------------- */

static void publish_will(struct m2m_broker *b, struct session *from, struct msg *w, const char *user,
                         m2m_time now)
{
    struct m2m_slice id =
        from ? (struct m2m_slice){(const uint8_t *)from->id, from->idlen} : (struct m2m_slice){0};
    if (b->cfg.auth && !m2m_mqtt_acl_allows(b->cfg.auth, user, id, msg_topic(w), M2M_MQTT_ACCESS_WRITE))
        return;
    b->current = NULL;
    if (w->retain)
        retain_store(b, w, true);
    route(b, from, w, now);
}

/* ---- events -------------------------------------------------------------- */

static void takeover(struct m2m_broker *b, struct session *s)
{
    struct m2m_broker_client *old = s->client;
    if (!old)
        return;
    m2m_mqtt_conn_disconnect(old->conn, M2M_MQTT_RC_SESSION_TAKEN_OVER); /* [MQTT-3.1.4-3] */
    old->closing = true;
    old->session = NULL;
    s->client = NULL;
    requeue_inflight(s);
    touch(b, old);
}

static char *dup_slice(struct m2m_slice v)
{
    char *p = malloc(v.n + 1);
    if (p) {
        if (v.n)
            memcpy(p, v.p, v.n);
        p[v.n] = 0;
    }
    return p;
}

/* 0 or the v5 reason code that refuses the CONNECT. */
static uint8_t authenticate(struct m2m_broker *b, struct m2m_broker_client *c,
                            const struct m2m_mqtt_connect *cn)
{
    if (b->cfg.use_identity_as_username && c->secure) {
        if (!c->identity)
            return M2M_MQTT_RC_NOT_AUTHORIZED; /* as mosquitto: no certificate, no entry */
        c->username = dup_slice((struct m2m_slice){(const uint8_t *)c->identity, strlen(c->identity)});
        return c->username ? 0 : M2M_MQTT_RC_SERVER_UNAVAILABLE;
    }
    if (!cn->has_username)
        return c->anonymous_ok ? 0 : M2M_MQTT_RC_NOT_AUTHORIZED;
    if (memchr(cn->username.p, 0, cn->username.n))
        return M2M_MQTT_RC_BAD_USERNAME_OR_PASSWORD;
    if (b->cfg.auth && m2m_mqtt_auth_has_passwords(b->cfg.auth)) {
        struct m2m_slice pw = cn->has_password ? cn->password : (struct m2m_slice){(const uint8_t *)"", 0};
        /* 3.1.1's code 4 means malformed credentials: a wrong password is
         * 5, not authorized, as mosquitto answers. */
        if (!cn->has_password || m2m_mqtt_auth_check(b->cfg.auth, cn->username, pw) != 0)
            return c->version == M2M_MQTT_V5 ? M2M_MQTT_RC_BAD_USERNAME_OR_PASSWORD
                                             : M2M_MQTT_RC_NOT_AUTHORIZED;
    }
    c->username = dup_slice(cn->username);
    return c->username ? 0 : M2M_MQTT_RC_SERVER_UNAVAILABLE;
}

static bool on_connect(struct m2m_broker *b, struct m2m_broker_client *c,
                       const struct m2m_mqtt_conn_event *ev, m2m_time now)
{
    const struct m2m_mqtt_connect *cn = ev->connect;
    (void)now;
    c->version = ev->version;
    uint8_t refuse = authenticate(b, c, cn);
    if (refuse) {
        b->st.refused++;
        m2m_mqtt_conn_refuse(c->conn, refuse);
        return true;
    }
    if (ev->version != M2M_MQTT_V5 && b->cfg.max_keep_alive &&
        (cn->keep_alive == 0 || cn->keep_alive > b->cfg.max_keep_alive)) {
        b->st.refused++;
        m2m_mqtt_conn_refuse(c->conn, M2M_MQTT_RC_CLIENT_ID_NOT_VALID); /* no other way to say it in 3.1.1 */
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
        do {
            int n = snprintf(assigned, sizeof assigned, "m2mkit-%lu", ++b->next_id);
            id = (struct m2m_slice){(const uint8_t *)assigned, (size_t)n};
        } while (session_get(b, id, false));
        assign = true;
    }
    uint32_t expiry = UINT32_MAX;
    bool persistent;
    if (ev->version == M2M_MQTT_V5) {
        expiry = m2m_mqtt_props_has(&cn->props, M2M_MQTT_P_SESSION_EXPIRY) ? cn->props.session_expiry : 0;
        if (b->cfg.max_session_expiry && expiry > b->cfg.max_session_expiry)
            expiry = b->cfg.max_session_expiry;
        persistent = expiry > 0;
    } else {
        persistent = !cn->clean_start;
    }

    if (cn->will) {
        c->will = msg_new(cn->will_topic, cn->will_payload, cn->will_props.raw, M2M_MQTT_CTX_WILL,
                          cn->will_qos, cn->will_retain);
        if (!c->will) {
            m2m_mqtt_conn_refuse(c->conn, M2M_MQTT_RC_SERVER_UNAVAILABLE);
            return true;
        }
        if (ev->version == M2M_MQTT_V5) {
            if (m2m_mqtt_props_has(&cn->will_props, M2M_MQTT_P_WILL_DELAY))
                c->will_delay_s = cn->will_props.will_delay;
            if (m2m_mqtt_props_has(&cn->will_props, M2M_MQTT_P_MESSAGE_EXPIRY))
                c->will->expire_at = M2M_NEVER; /* set when it is published */
        }
    }

    struct session *s = session_get(b, id, false);
    bool present = false;
    if (s) {
        bool was_persistent = s->persistent;
        takeover(b, s);
        if (s->will) { /* a new connection before the delay: never sent [MQTT-3.1.3-9] */
            msg_unref(b, s->will);
            s->will = NULL;
            s->will_at = M2M_NEVER;
        }
        if (cn->clean_start || !was_persistent)
            session_reset(b, s);
        else
            present = true;
    } else if (!(s = session_get(b, id, true))) {
        m2m_mqtt_conn_refuse(c->conn, M2M_MQTT_RC_SERVER_UNAVAILABLE);
        return true;
    }
    s->persistent = persistent;
    s->expire_at = M2M_NEVER;
    s->expiry_s = expiry;
    s->client = c;
    c->session = s;
    if (persistent)
        persist_session(b, s);
    else
        persist_session_del(b, s);
    b->st.connects++;
    m2m_mqtt_conn_accept(c->conn, present, assign && ev->version == M2M_MQTT_V5 ? s->id : NULL);
    return false;
}

static void ack_later(struct m2m_broker *b, struct m2m_broker_client *c, uint16_t packet_id, uint8_t reason)
{
    if (!b->cfg.store) {
        m2m_mqtt_conn_ack(c->conn, packet_id, reason);
        return;
    }
    if (b->nacks == b->capacks) {
        size_t cap = b->capacks ? 2 * b->capacks : 256;
        struct ack *n = realloc(b->acks, cap * sizeof *n);
        if (!n) {
            m2m_mqtt_conn_ack(c->conn, packet_id, M2M_MQTT_RC_IMPLEMENTATION_SPECIFIC);
            return;
        }
        b->acks = n;
        b->capacks = cap;
    }
    b->acks[b->nacks++] = (struct ack){c, packet_id, reason};
}

static void on_publish(struct m2m_broker *b, struct m2m_broker_client *c, const struct m2m_mqtt_publish *p,
                       m2m_time now)
{
    struct session *s = c->session;
    b->st.msgs_received++;
    if (b->cfg.auth &&
        !m2m_mqtt_acl_allows(b->cfg.auth, c->username, (struct m2m_slice){(const uint8_t *)s->id, s->idlen},
                             p->topic, M2M_MQTT_ACCESS_WRITE)) {
        b->st.msgs_dropped++;
        if (p->qos > 0) /* 3.1.1 has no way to say no: acknowledged and dropped, as mosquitto does */
            m2m_mqtt_conn_ack(c->conn, p->packet_id, M2M_MQTT_RC_NOT_AUTHORIZED);
        return;
    }
    if (p->topic.n && p->topic.p[0] == '$' && p->topic.n >= 4 && memcmp(p->topic.p, "$SYS", 4) == 0) {
        if (p->qos > 0) /* the broker's own namespace */
            m2m_mqtt_conn_ack(c->conn, p->packet_id, M2M_MQTT_RC_NOT_AUTHORIZED);
        return;
    }
    struct msg *m =
        msg_new(p->topic, p->payload, c->version == M2M_MQTT_V5 ? p->props.raw : (struct m2m_slice){0},
                M2M_MQTT_PUBLISH, p->qos, p->retain);
    if (m) {
        if (c->version == M2M_MQTT_V5 && m2m_mqtt_props_has(&p->props, M2M_MQTT_P_MESSAGE_EXPIRY))
            m->expire_at = now + (m2m_time)p->props.message_expiry * 1000;
        if (p->retain)
            retain_store(b, m, true);
        route(b, s, m, now);
        msg_unref(b, m);
    }
    if (p->qos > 0)
        ack_later(b, c, p->packet_id, m ? M2M_MQTT_RC_SUCCESS : M2M_MQTT_RC_IMPLEMENTATION_SPECIFIC);
}

static void on_subscribe(struct m2m_broker *b, struct m2m_broker_client *c,
                         const struct m2m_mqtt_subscribe *sp, m2m_time now)
{
    struct session *s = c->session;
    bool v5 = c->version == M2M_MQTT_V5;
    uint8_t codes[M2M_MQTT_MAX_FILTERS] = {0};
    bool want_retained[M2M_MQTT_MAX_FILTERS] = {0};
    size_t n = sp->n <= M2M_MQTT_MAX_FILTERS ? sp->n : M2M_MQTT_MAX_FILTERS;
    uint32_t sub_id = v5 && m2m_mqtt_props_has(&sp->props, M2M_MQTT_P_SUBSCRIPTION_ID) && sp->props.nsubid
                          ? sp->props.subid[0]
                          : 0;
    struct m2m_slice cid = {(const uint8_t *)s->id, s->idlen};
    for (size_t i = 0; i < n; i++) {
        const struct m2m_mqtt_subscription *r = &sp->sub[i];
        bool shared = m2m_mqtt_filter_shared(r->filter, NULL, NULL);
        if (!m2m_mqtt_filter_valid(r->filter)) {
            codes[i] = v5 ? M2M_MQTT_RC_TOPIC_FILTER_INVALID : M2M_MQTT311_SUBACK_FAILURE;
            continue;
        }
        if (shared && r->no_local) {
            codes[i] = v5 ? M2M_MQTT_RC_PROTOCOL_ERROR : M2M_MQTT311_SUBACK_FAILURE; /* [MQTT-3.8.3-4] */
            continue;
        }
        if (b->cfg.auth &&
            !m2m_mqtt_acl_allows(b->cfg.auth, c->username, cid, r->filter, M2M_MQTT_ACCESS_SUBSCRIBE)) {
            codes[i] = v5 ? M2M_MQTT_RC_NOT_AUTHORIZED : M2M_MQTT311_SUBACK_FAILURE;
            continue;
        }
        if (s->nsubs >= b->cfg.max_subscriptions && !sub_find(s, r->filter, NULL)) {
            codes[i] = v5 ? M2M_MQTT_RC_QUOTA_EXCEEDED : M2M_MQTT311_SUBACK_FAILURE;
            continue;
        }
        bool is_new = false;
        const struct sub *sb = sub_put(b, s, r, sub_id, &is_new);
        if (!sb) {
            codes[i] = v5 ? M2M_MQTT_RC_UNSPECIFIED_ERROR : M2M_MQTT311_SUBACK_FAILURE;
            continue;
        }
        persist_sub(b, s, sb);
        codes[i] = sb->qos;
        /* Retained messages are not sent to shared subscriptions. */
        want_retained[i] = !sb->group && (r->retain_handling == 0 || (r->retain_handling == 1 && is_new));
    }
    m2m_mqtt_conn_suback(c->conn, sp->packet_id, codes, n);
    for (size_t i = 0; i < n; i++)
        if (want_retained[i])
            send_retained(b, s, sp->sub[i].filter, codes[i], sub_id, now);
}

static void on_unsubscribe(struct m2m_broker *b, struct m2m_broker_client *c,
                           const struct m2m_mqtt_unsubscribe *u)
{
    struct session *s = c->session;
    uint8_t codes[M2M_MQTT_MAX_FILTERS] = {0};
    size_t n = u->n <= M2M_MQTT_MAX_FILTERS ? u->n : M2M_MQTT_MAX_FILTERS;
    for (size_t i = 0; i < n; i++) {
        size_t idx;
        if (!sub_find(s, u->filter[i], &idx)) {
            codes[i] = M2M_MQTT_RC_NO_SUBSCRIPTION_EXISTED;
            continue;
        }
        persist_sub_del(b, s, u->filter[i]);
        sub_remove(b, s, idx);
        codes[i] = M2M_MQTT_RC_SUCCESS;
    }
    m2m_mqtt_conn_unsuback(c->conn, u->packet_id, codes, n);
}

static struct qent *inflight_find(struct session *s, uint16_t packet_id, struct qent **prevp)
{
    struct qent *prev = NULL;
    for (struct qent *e = s->inflight.head; e; prev = e, e = e->next) {
        if (e->packet_id == packet_id) {
            *prevp = prev;
            return e;
        }
    }
    return NULL;
}

static void on_publish_done(struct m2m_broker *b, struct session *s, uint16_t packet_id)
{
    struct qent *prev;
    struct qent *e = inflight_find(s, packet_id, &prev);
    if (!e)
        return;
    if (prev)
        prev->next = e->next;
    else
        s->inflight.head = e->next;
    if (s->inflight.tail == e)
        s->inflight.tail = prev;
    s->inflight.n--;
    qent_drop(b, s, e);
}

static void on_publish_released(struct session *s, uint16_t packet_id)
{
    struct qent *prev;
    struct qent *e = inflight_find(s, packet_id, &prev);
    if (e)
        e->released = true;
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
    if (!b->cfg.max_queued_bytes)
        b->cfg.max_queued_bytes = DEFAULT_MAX_QUEUED_BYTES;
    if (!b->cfg.max_retained)
        b->cfg.max_retained = DEFAULT_MAX_RETAINED;
    if (!b->cfg.max_subscriptions)
        b->cfg.max_subscriptions = DEFAULT_MAX_SUBSCRIPTIONS;
    b->next_msg_id = 1;
    b->next_sys = M2M_NEVER;
    b->root = tree_new_root();
    if (!b->root || m2m_hmap_init(&b->sessions, 64) != 0 || m2m_hmap_init(&b->retained, 64) != 0) {
        m2m_broker_free(b);
        return NULL;
    }
    return b;
}

int m2m_broker_load(struct m2m_broker *b, m2m_time now, char *err, size_t errcap)
{
    b->started = now;
    if (b->cfg.sys_interval_s)
        b->next_sys = now;
    return persist_load(b, now, err, errcap);
}

void m2m_broker_free(struct m2m_broker *b)
{
    if (!b)
        return;
    while (b->clients) {
        struct m2m_broker_client *c = b->clients;
        b->clients = c->next;
        msg_unref(b, c->will);
        free(c->username);
        free(c->identity);
        free(c);
    }
    /* Freeing is not deleting: keep the store as it is. */
    struct m2m_mqtt_store *store = b->cfg.store;
    b->cfg.store = NULL;
    while (b->all)
        session_free(b, b->all);
    while (b->rlist) {
        struct retained *r = b->rlist;
        retained_unlink(b, r);
        msg_unref(b, r->m);
        free(r);
    }
    b->cfg.store = store;
    tree_free(b->root);
    if (b->sessions.b)
        m2m_hmap_cleanup(&b->sessions);
    if (b->retained.b)
        m2m_hmap_cleanup(&b->retained);
    free(b->touched);
    free(b->acks);
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
    c->anonymous_ok = b->cfg.allow_anonymous;
    c->next = b->clients;
    if (b->clients)
        b->clients->prev = c;
    b->clients = c;
    b->st.clients_connected++;
    return c;
}

void m2m_broker_client_allow_anonymous(struct m2m_broker_client *c, bool ok)
{
    c->anonymous_ok = ok;
}

void m2m_broker_client_set_identity(struct m2m_broker_client *c, const char *identity)
{
    free(c->identity);
    c->identity = identity ? strdup(identity) : NULL;
    c->secure = true;
}

bool m2m_broker_process(struct m2m_broker *b, struct m2m_broker_client *c, m2m_time now)
{
    struct m2m_mqtt_conn_event ev;
    bool close = false;
    b->current = c;
    while (m2m_mqtt_conn_poll_event(c->conn, &ev)) {
        if (c->closing)
            continue; /* taken over or refused: ignore what is left */
        struct session *s = c->session;
        switch (ev.type) {
        case M2M_MQTT_EV_CONNECT:
            if (on_connect(b, c, &ev, now)) {
                c->closing = true;
                msg_unref(b, c->will);
                c->will = NULL;
            }
            break;
        case M2M_MQTT_EV_PUBLISH:
            if (s)
                on_publish(b, c, ev.publish, now);
            break;
        case M2M_MQTT_EV_PUBLISH_DONE:
            if (s)
                on_publish_done(b, s, ev.packet_id);
            break;
        case M2M_MQTT_EV_PUBLISH_RELEASED:
            if (s)
                on_publish_released(s, ev.packet_id);
            break;
        case M2M_MQTT_EV_SUBSCRIBE:
            if (s)
                on_subscribe(b, c, ev.subscribe, now);
            break;
        case M2M_MQTT_EV_UNSUBSCRIBE:
            if (s)
                on_unsubscribe(b, c, ev.unsubscribe);
            break;
        case M2M_MQTT_EV_DISCONNECT:
            /* A v5 client may change its Session Expiry Interval, but not
             * from zero [MQTT-3.14.2-2]. */
            if (s && ev.has_session_expiry && (s->expiry_s != 0 || ev.session_expiry == 0)) {
                s->expiry_s = ev.session_expiry;
                s->persistent = ev.session_expiry > 0;
            }
            /* fall through */
        case M2M_MQTT_EV_CLOSED:
            if (!ev.publish_will) {
                msg_unref(b, c->will);
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

void m2m_broker_sync(struct m2m_broker *b)
{
    int rc = 0;
    if (b->cfg.store) {
        rc = b->cfg.store->ops->commit(b->cfg.store);
        if (b->store_failed && !rc)
            rc = M2M_EIO; /* a write of this batch failed: it is not all there */
        b->store_failed = false;
    }
    for (size_t i = 0; i < b->nacks; i++) {
        struct ack *a = &b->acks[i];
        if (!a->c || a->c->closing)
            continue;
        if (rc && a->c->version != M2M_MQTT_V5) {
            /* 3.1.1 cannot refuse a PUBLISH: close, the client sends it again. */
            m2m_mqtt_conn_disconnect(a->c->conn, 0);
            a->c->closing = true;
        } else {
            m2m_mqtt_conn_ack(a->c->conn, a->packet_id, rc ? M2M_MQTT_RC_UNSPECIFIED_ERROR : a->reason);
        }
        if (a->c->wake)
            a->c->wake(a->c->io);
    }
    b->nacks = 0;
}

static m2m_time session_deadline(const struct session *s)
{
    return s->will_at < s->expire_at ? s->will_at : s->expire_at;
}

void m2m_broker_detach(struct m2m_broker *b, struct m2m_broker_client *c, m2m_time now)
{
    for (size_t i = 0; i < b->nacks; i++)
        if (b->acks[i].c == c)
            b->acks[i].c = NULL;
    struct session *s = c->session;
    struct msg *will = c->will;
    c->will = NULL;
    if (s) {
        s->client = NULL;
        hand_over_shared(b, s, now);
        requeue_inflight(s);
        if (s->persistent && s->expiry_s != UINT32_MAX)
            s->expire_at = now + (m2m_time)s->expiry_s * 1000;
        if (will && c->will_delay_s && s->persistent) {
            /* Published when the delay or the session ends, whichever
             * comes first [MQTT-3.1.2-?], unless the client comes back. */
            s->will = will;
            s->will_at = now + (m2m_time)c->will_delay_s * 1000;
            will = NULL;
        }
        if (s->persistent)
            persist_session(b, s);
    }
    c->session = NULL;
    c->closing = true;
    if (c->prev)
        c->prev->next = c->next;
    else
        b->clients = c->next;
    if (c->next)
        c->next->prev = c->prev;
    if (b->st.clients_connected)
        b->st.clients_connected--;
    if (will) {
        publish_will(b, s, will, c->username, now);
        msg_unref(b, will);
    }
    if (s && !s->persistent)
        session_free(b, s);
    free(c->username);
    free(c->identity);
    free(c);
}

m2m_time m2m_broker_next_timeout(const struct m2m_broker *b)
{
    m2m_time t = b->next_sys;
    for (const struct session *s = b->all; s; s = s->next) {
        if (!s->client) {
            m2m_time d = session_deadline(s);
            if (d < t)
                t = d;
        }
    }
    return t;
}

void m2m_broker_on_timeout(struct m2m_broker *b, m2m_time now)
{
    struct session *s = b->all;
    while (s) {
        struct session *next = s->next;
        if (!s->client && s->will && now >= s->will_at) {
            struct msg *w = s->will;
            s->will = NULL;
            s->will_at = M2M_NEVER;
            publish_will(b, s, w, NULL, now);
            msg_unref(b, w);
        }
        if (!s->client && now >= s->expire_at) {
            if (s->will) { /* the session ends first: the will goes now */
                struct msg *w = s->will;
                s->will = NULL;
                publish_will(b, NULL, w, NULL, now);
                msg_unref(b, w);
            }
            session_free(b, s);
        }
        s = next;
    }
    if (now >= b->next_sys) {
        sys_publish(b, now);
        b->next_sys = now + (m2m_time)b->cfg.sys_interval_s * 1000;
    }
}

struct m2m_broker_stats *m2m_broker_stats(struct m2m_broker *b)
{
    return &b->st;
}
