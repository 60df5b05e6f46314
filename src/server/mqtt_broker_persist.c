/* The broker's write-through to src/store and its load at start. Only
 * persistent sessions, their subscriptions and QoS 1/2 queue entries, and
 * retained messages outside $SYS are written; everything else dies with the
 * process, as MQTT allows. A failed write marks the batch failed, so
 * m2m_broker_sync refuses the acknowledgements that depended on it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/mqtt_broker_internal.h"
#include "store/mqtt_store.h"

static struct m2m_slice sid(const struct session *s)
{
    return (struct m2m_slice){(const uint8_t *)s->id, s->idlen};
}

static struct m2m_slice mtopic(const struct msg *m)
{
    return (struct m2m_slice){m->data, m->topic_n};
}

static void check(struct m2m_broker *b, int rc)
{
    if (rc)
        b->store_failed = true;
}

static int64_t wall(const struct m2m_broker *b, m2m_time t)
{
    return t == M2M_NEVER ? 0 : t + b->cfg.wall_offset_ms;
}

static m2m_time mono(const struct m2m_broker *b, int64_t w)
{
    return w == 0 ? M2M_NEVER : w - b->cfg.wall_offset_ms;
}

/* One more persisted reference to m: written the first time. */
static void msg_hold(struct m2m_broker *b, struct msg *m)
{
    struct m2m_mqtt_store *st = b->cfg.store;
    if (m->prefs++ > 0)
        return;
    if (!m->id)
        m->id = b->next_msg_id++;
    struct m2m_store_msg r = {
        .id = m->id,
        .topic = mtopic(m),
        .payload = {m->data + m->topic_n, m->payload_n},
        .props = {m->data + m->topic_n + m->payload_n, m->props_n},
        .props_ctx = m->props_ctx,
        .qos = m->qos,
        .retain = m->retain,
        .expire_at = wall(b, m->expire_at),
    };
    check(b, st->ops->msg_put(st, &r));
}

static void msg_release(struct m2m_broker *b, struct msg *m)
{
    struct m2m_mqtt_store *st = b->cfg.store;
    if (m->prefs == 0 || --m->prefs > 0)
        return;
    check(b, st->ops->msg_del(st, m->id));
}

void persist_session(struct m2m_broker *b, struct session *s)
{
    struct m2m_mqtt_store *st = b->cfg.store;
    if (!st || !s->persistent)
        return;
    struct m2m_store_session r = {sid(s), s->expiry_s, s->client ? 0 : wall(b, s->expire_at)};
    check(b, st->ops->session_put(st, &r));
    s->stored = true;
}

void persist_session_del(struct m2m_broker *b, struct session *s)
{
    struct m2m_mqtt_store *st = b->cfg.store;
    if (!st || !s->stored)
        return;
    /* The rows of its queue entries go with the session; the messages they
     * held are released as the entries are dropped. */
    for (int pass = 0; pass < 2; pass++)
        for (struct qent *e = pass ? s->inflight.head : s->queue.head; e; e = e->next) {
            if (e->seq) {
                e->seq = 0;
                msg_release(b, e->m);
            }
        }
    check(b, st->ops->session_del(st, sid(s)));
    s->stored = false;
}

void persist_sub(struct m2m_broker *b, const struct session *s, const struct sub *sb)
{
    struct m2m_mqtt_store *st = b->cfg.store;
    if (!st || !s->stored)
        return;
    struct m2m_store_sub r = {
        .client_id = sid(s),
        .filter = {(const uint8_t *)sb->filter, sb->len},
        .qos = sb->qos,
        .flags = (uint8_t)((sb->no_local ? M2M_STORE_SUB_NO_LOCAL : 0) | (sb->rap ? M2M_STORE_SUB_RAP : 0)),
        .sub_id = sb->sub_id,
    };
    check(b, st->ops->sub_put(st, &r));
}

void persist_sub_del(struct m2m_broker *b, const struct session *s, struct m2m_slice filter)
{
    struct m2m_mqtt_store *st = b->cfg.store;
    if (st && s->stored)
        check(b, st->ops->sub_del(st, sid(s), filter));
}

void persist_qent(struct m2m_broker *b, struct session *s, struct qent *e)
{
    struct m2m_mqtt_store *st = b->cfg.store;
    if (!st || !s->stored || e->qos == 0 || e->seq)
        return;
    msg_hold(b, e->m);
    e->seq = s->next_seq++;
    struct m2m_store_qent r = {sid(s), e->seq, e->m->id, e->qos, e->retain};
    check(b, st->ops->qent_put(st, &r));
}

void persist_qent_del(struct m2m_broker *b, const struct session *s, struct qent *e)
{
    struct m2m_mqtt_store *st = b->cfg.store;
    if (!st || !e->seq)
        return;
    check(b, st->ops->qent_del(st, sid(s), e->seq));
    e->seq = 0;
    msg_release(b, e->m);
}

static bool is_sys(const struct msg *m)
{
    return m->topic_n >= 1 && m->data[0] == '$';
}

void persist_retained(struct m2m_broker *b, struct msg *m)
{
    struct m2m_mqtt_store *st = b->cfg.store;
    if (!st || is_sys(m))
        return;
    msg_hold(b, m);
    check(b, st->ops->retained_put(st, mtopic(m), m->id));
}

void persist_retained_del(struct m2m_broker *b, struct msg *m)
{
    struct m2m_mqtt_store *st = b->cfg.store;
    if (!st || is_sys(m) || !m->prefs)
        return;
    check(b, st->ops->retained_del(st, mtopic(m)));
    msg_release(b, m);
}

/* ---- load ---------------------------------------------------------------- */

/* Messages by store id while loading, in a plain sorted array: ids come in
 * ascending order. */
struct loader {
    struct m2m_broker *b;
    m2m_time now;
    struct msg **msgs;
    size_t n, cap;
    char *err;
    size_t errcap;
};

static struct msg *lookup(struct loader *l, uint64_t id)
{
    size_t lo = 0, hi = l->n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (l->msgs[mid]->id < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < l->n && l->msgs[lo]->id == id ? l->msgs[lo] : NULL;
}

static int on_msg(void *ctx, const struct m2m_store_msg *r)
{
    struct loader *l = ctx;
    if (l->n && r->id <= l->msgs[l->n - 1]->id)
        return M2M_ECORRUPT;
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 1024;
        struct msg **n = realloc(l->msgs, cap * sizeof *n);
        if (!n)
            return M2M_ENOMEM;
        l->msgs = n;
        l->cap = cap;
    }
    struct msg *m = msg_new(r->topic, r->payload, r->props, r->props_ctx, r->qos, r->retain);
    if (!m)
        return M2M_ENOMEM;
    m->id = r->id;
    m->expire_at = mono(l->b, r->expire_at);
    l->msgs[l->n++] = m;
    if (r->id >= l->b->next_msg_id)
        l->b->next_msg_id = r->id + 1;
    return 0;
}

static int on_session(void *ctx, const struct m2m_store_session *r)
{
    struct loader *l = ctx;
    struct session *s = session_get(l->b, r->client_id, true);
    if (!s)
        return M2M_ENOMEM;
    s->persistent = true;
    s->stored = true;
    s->expiry_s = r->expiry_s;
    /* A session that was online when the broker stopped starts its expiry
     * now. */
    if (r->expiry_s == UINT32_MAX)
        s->expire_at = M2M_NEVER;
    else if (r->expire_at)
        s->expire_at = mono(l->b, r->expire_at);
    else
        s->expire_at = l->now + (m2m_time)r->expiry_s * 1000;
    return 0;
}

static int on_sub(void *ctx, const struct m2m_store_sub *r)
{
    struct loader *l = ctx;
    struct session *s = session_get(l->b, r->client_id, false);
    if (!s)
        return 0; /* orphan row: its session is gone */
    struct m2m_mqtt_subscription q = {
        .filter = r->filter,
        .qos = r->qos,
        .no_local = (r->flags & M2M_STORE_SUB_NO_LOCAL) != 0,
        .retain_as_published = (r->flags & M2M_STORE_SUB_RAP) != 0,
    };
    if (!m2m_mqtt_filter_valid(q.filter))
        return M2M_ECORRUPT;
    bool is_new;
    return sub_put(l->b, s, &q, r->sub_id, &is_new) ? 0 : M2M_ENOMEM;
}

static int on_qent(void *ctx, const struct m2m_store_qent *r)
{
    struct loader *l = ctx;
    struct session *s = session_get(l->b, r->client_id, false);
    struct msg *m = lookup(l, r->msg_id);
    if (!s || !m)
        return 0;
    struct qent *e = qent_new(m, r->qos, r->retain, NULL, 0);
    if (!e)
        return M2M_ENOMEM;
    e->seq = r->seq;
    m->prefs++;
    q_push(&s->queue, e);
    s->queued_bytes += m->payload_n;
    if (r->seq >= s->next_seq)
        s->next_seq = r->seq + 1;
    return 0;
}

static int on_retained(void *ctx, struct m2m_slice topic, uint64_t msg_id)
{
    struct loader *l = ctx;
    struct msg *m = lookup(l, msg_id);
    if (!m || m->topic_n != topic.n || memcmp(m->data, topic.p, topic.n) != 0)
        return 0;
    m->prefs++;
    retain_store(l->b, m, false);
    return 0;
}

int persist_load(struct m2m_broker *b, m2m_time now, char *err, size_t errcap)
{
    struct m2m_mqtt_store *st = b->cfg.store;
    if (!st)
        return 0;
    static const struct m2m_mqtt_store_visitor v = {on_msg, on_session, on_sub, on_qent, on_retained};
    struct loader l = {b, now, NULL, 0, 0, err, errcap};
    int rc = st->ops->load(st, &v, &l);
    size_t orphans = 0;
    for (size_t i = 0; i < l.n; i++) {
        struct msg *m = l.msgs[i];
        if (!rc && m->prefs == 0) { /* referenced by nothing: left by a crash between two writes */
            check(b, st->ops->msg_del(st, m->id));
            orphans++;
        }
        msg_unref(b, m);
    }
    free(l.msgs);
    if (rc)
        snprintf(err, errcap, "mqtt store: %s while loading", m2m_strerror(rc));
    else if (orphans)
        rc = st->ops->commit(st);
    return rc;
}
