/* MQTT broker routing: several scripted clients, each a real
 * m2m_mqtt_conn attached to one broker, fed encoded packets; their output is
 * decoded and checked. Virtual time. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "m2m/mqtt.h"
#include "m2m/mqtt_session.h"
#include "server/mqtt_auth.h"
#include "server/mqtt_broker.h"
#include "store/mqtt_store.h"

#define V3 M2M_MQTT_V311
#define V5 M2M_MQTT_V5

static struct m2m_slice S(const char *s) {
    return (struct m2m_slice){(const uint8_t *)s, strlen(s)};
}

static bool
slice_is(struct m2m_slice s, const char *want)
{
    return s.n == strlen(want) && memcmp(s.p, want, s.n) == 0;
}

static struct m2m_mqtt_conn_config conn_cfg = {
    .start = 0,
    .max_packet_size = 4096,
    .max_inflight = 8,
};

/* Virtual time of every feed, detach and timeout. */
static m2m_time now_ms;

/* ---- a scripted client ---------------------------------------------------- */

struct tc {
    struct m2m_mqtt_conn *conn;
    struct m2m_broker_client *bc;
    enum m2m_mqtt_version v;
    int woken;
    bool closed; /* process() returned true */
};

struct outp {
    uint8_t raw[16384];
    size_t len;
    size_t n;
    struct m2m_mqtt_packet pkt[32];
};

static void wake_cb(void *io)
{
    ((struct tc *)io)->woken++;
}

static void drain(struct tc *t, struct outp *o)
{
    const uint8_t *p;
    size_t n;
    o->len = 0;
    o->n = 0;
    while (m2m_mqtt_conn_poll_output(t->conn, &p, &n)) {
        assert_true(o->len + n <= sizeof o->raw);
        memcpy(o->raw + o->len, p, n);
        o->len += n;
    }
    size_t off = 0;
    while (off < o->len) {
        size_t total = 0;
        assert_int_equal(m2m_mqtt_frame(o->raw + off, o->len - off, 0, &total), 0);
        assert_true(o->n < 32);
        assert_int_equal(m2m_mqtt_decode(&o->pkt[o->n], t->v, o->raw + off, total, NULL), 0);
        o->n++;
        off += total;
    }
}

/* Feeds one packet and lets the broker process it. */
static bool feed(struct m2m_broker *b, struct tc *t, const struct m2m_mqtt_packet *pkt)
{
    uint8_t buf[4096];
    size_t len = 0;
    assert_int_equal(m2m_mqtt_encode(pkt, buf, sizeof buf, &len), 0);
    assert_int_equal(m2m_mqtt_conn_feed(t->conn, now_ms, buf, len), 0);
    t->closed = m2m_broker_process(b, t->bc, now_ms);
    return t->closed;
}

struct copts {
    bool clean;
    uint32_t expiry; /* v5 Session Expiry */
    const char *will_topic;
    uint32_t will_delay;
    uint16_t topic_alias_max;
    const char *user, *password;
    uint16_t keep_alive;
};

/* Connects; the output (CONNACK and anything queued) is left in *o. */
static void tc_open(struct m2m_broker *b, struct tc *t, enum m2m_mqtt_version v, const char *id,
                    const struct copts *co, struct outp *o)
{
    memset(t, 0, sizeof *t);
    t->v = v;
    t->conn = m2m_mqtt_conn_new(&conn_cfg);
    assert_non_null(t->conn);
    t->bc = m2m_broker_attach(b, t->conn, wake_cb, t);
    assert_non_null(t->bc);
    struct m2m_mqtt_packet p;
    m2m_mqtt_packet_init(&p, M2M_MQTT_CONNECT, v);
    p.u.connect.clean_start = co ? co->clean : true;
    p.u.connect.keep_alive = co ? co->keep_alive : 0;
    p.u.connect.client_id = S(id);
    if (co && co->expiry) {
        p.u.connect.props.session_expiry = co->expiry;
        m2m_mqtt_props_set(&p.u.connect.props, M2M_MQTT_P_SESSION_EXPIRY);
    }
    if (co && co->will_topic) {
        p.u.connect.will = true;
        p.u.connect.will_qos = 1;
        p.u.connect.will_topic = S(co->will_topic);
        p.u.connect.will_payload = S("gone");
        if (co->will_delay) {
            p.u.connect.will_props.will_delay = co->will_delay;
            m2m_mqtt_props_set(&p.u.connect.will_props, M2M_MQTT_P_WILL_DELAY);
        }
    }
    if (co && co->topic_alias_max) {
        p.u.connect.props.topic_alias_maximum = co->topic_alias_max;
        m2m_mqtt_props_set(&p.u.connect.props, M2M_MQTT_P_TOPIC_ALIAS_MAXIMUM);
    }
    if (co && co->user) {
        p.u.connect.has_username = true;
        p.u.connect.username = S(co->user);
    }
    if (co && co->password) {
        p.u.connect.has_password = true;
        p.u.connect.password = S(co->password);
    }
    feed(b, t, &p);
    drain(t, o);
    assert_true(o->n >= 1);
    assert_int_equal(o->pkt[0].type, M2M_MQTT_CONNACK);
}

static void tc_simple(struct m2m_broker *b, struct tc *t, enum m2m_mqtt_version v, const char *id)
{
    struct outp o;
    tc_open(b, t, v, id, NULL, &o);
    assert_int_equal(o.n, 1);
    assert_int_equal(o.pkt[0].u.connack.rc, 0);
}

static void tc_close(struct m2m_broker *b, struct tc *t)
{
    m2m_broker_detach(b, t->bc, now_ms);
    m2m_mqtt_conn_free(t->conn);
    t->conn = NULL;
}

struct subopt {
    bool no_local;
    bool rap;
    uint8_t rh;
};

/* Subscribes to one filter; checks the SUBACK code; output left in *o with
 * the SUBACK first. */
static void subscribe(struct m2m_broker *b, struct tc *t, const char *filter, uint8_t qos,
                      const struct subopt *so, uint8_t want_rc, struct outp *o)
{
    static uint16_t pid = 100;
    struct m2m_mqtt_packet p;
    m2m_mqtt_packet_init(&p, M2M_MQTT_SUBSCRIBE, t->v);
    p.u.subscribe.packet_id = ++pid;
    p.u.subscribe.n = 1;
    p.u.subscribe.sub[0].filter = S(filter);
    p.u.subscribe.sub[0].qos = qos;
    if (so) {
        p.u.subscribe.sub[0].no_local = so->no_local;
        p.u.subscribe.sub[0].retain_as_published = so->rap;
        p.u.subscribe.sub[0].retain_handling = so->rh;
    }
    assert_false(feed(b, t, &p));
    drain(t, o);
    assert_true(o->n >= 1);
    assert_int_equal(o->pkt[0].type, M2M_MQTT_SUBACK);
    assert_int_equal(o->pkt[0].u.suback.n, 1);
    assert_int_equal(o->pkt[0].u.suback.rc[0], want_rc);
}

static void sub_simple(struct m2m_broker *b, struct tc *t, const char *filter, uint8_t qos)
{
    struct outp o;
    subscribe(b, t, filter, qos, NULL, qos, &o);
    assert_int_equal(o.n, 1);
}

static void publish(struct m2m_broker *b, struct tc *t, const char *topic, const char *payload, uint8_t qos,
                    bool retain, uint16_t id)
{
    struct m2m_mqtt_packet p;
    m2m_mqtt_packet_init(&p, M2M_MQTT_PUBLISH, t->v);
    p.u.publish.topic = S(topic);
    p.u.publish.payload = S(payload);
    p.u.publish.qos = qos;
    p.u.publish.retain = retain;
    p.u.publish.packet_id = id;
    assert_false(feed(b, t, &p));
}

static void send_ack(struct m2m_broker *b, struct tc *t, enum m2m_mqtt_type type, uint16_t id)
{
    struct m2m_mqtt_packet p;
    m2m_mqtt_packet_init(&p, type, t->v);
    p.u.ack.packet_id = id;
    assert_false(feed(b, t, &p));
}

static const struct m2m_mqtt_publish *expect_pub(const struct outp *o, size_t i, const char *topic,
                                                 const char *payload, uint8_t qos, bool retain)
{
    assert_true(i < o->n);
    assert_int_equal(o->pkt[i].type, M2M_MQTT_PUBLISH);
    const struct m2m_mqtt_publish *p = &o->pkt[i].u.publish;
    assert_true(slice_is(p->topic, topic));
    if (payload)
        assert_true(slice_is(p->payload, payload));
    assert_int_equal(p->qos, qos);
    assert_int_equal(p->retain, retain);
    return p;
}

static void expect_nothing(struct tc *t)
{
    struct outp o;
    drain(t, &o);
    assert_int_equal(o.n, 0);
}

static struct m2m_broker *broker(void)
{
    struct m2m_broker_config cfg = {.allow_anonymous = true, .max_queued_per_session = 4};
    struct m2m_broker *b = m2m_broker_new(&cfg);
    assert_non_null(b);
    return b;
}

/* ---- tests ------------------------------------------------------------------ */

/* ---- v5 features, expiry, persistence, auth ---------------------------------- */

static void subscribe_id(struct m2m_broker *b, struct tc *t, const char *filter, uint32_t id)
{
    struct m2m_mqtt_packet p;
    m2m_mqtt_packet_init(&p, M2M_MQTT_SUBSCRIBE, t->v);
    p.u.subscribe.packet_id = 77;
    p.u.subscribe.n = 1;
    p.u.subscribe.sub[0].filter = S(filter);
    p.u.subscribe.sub[0].qos = 1;
    p.u.subscribe.props.subid[0] = id;
    p.u.subscribe.props.nsubid = 1;
    m2m_mqtt_props_set(&p.u.subscribe.props, M2M_MQTT_P_SUBSCRIPTION_ID);
    assert_false(feed(b, t, &p));
    struct outp o;
    drain(t, &o);
    assert_int_equal(o.pkt[0].type, M2M_MQTT_SUBACK);
    assert_int_equal(o.pkt[0].u.suback.rc[0], 1);
}

static void test_subscription_ids(void **state)
{
    (void)state;
    struct m2m_broker *b = broker();
    struct tc pub, sub;
    struct outp o;
    tc_simple(b, &pub, V3, "pub");
    tc_simple(b, &sub, V5, "sub");
    subscribe_id(b, &sub, "a/+", 7);
    subscribe_id(b, &sub, "a/#", 9);
    sub_simple(b, &sub, "+/b", 0);
    publish(b, &pub, "a/b", "x", 1, false, 1);
    drain(&sub, &o);
    assert_int_equal(o.n, 1); /* one copy at the highest QoS [MQTT-3.3.4-2] */
    const struct m2m_mqtt_publish *p = expect_pub(&o, 0, "a/b", "x", 1, false);
    /* every matching identifier, in any order [MQTT-3.3.4-3] */
    assert_int_equal(p->props.nsubid, 2);
    assert_true((p->props.subid[0] == 7 && p->props.subid[1] == 9) ||
                (p->props.subid[0] == 9 && p->props.subid[1] == 7));
    tc_close(b, &sub);
    tc_close(b, &pub);
    m2m_broker_free(b);
}

static void publish_expiring(struct m2m_broker *b, struct tc *t, const char *topic, uint32_t expiry,
                             uint16_t id)
{
    struct m2m_mqtt_packet p;
    m2m_mqtt_packet_init(&p, M2M_MQTT_PUBLISH, V5);
    p.u.publish.topic = S(topic);
    p.u.publish.payload = S("e");
    p.u.publish.qos = 1;
    p.u.publish.packet_id = id;
    p.u.publish.props.message_expiry = expiry;
    m2m_mqtt_props_set(&p.u.publish.props, M2M_MQTT_P_MESSAGE_EXPIRY);
    assert_false(feed(b, t, &p));
}

static void test_message_expiry(void **state)
{
    (void)state;
    struct m2m_broker *b = broker();
    struct tc pub, sub;
    struct outp o;
    now_ms = 0;
    tc_simple(b, &pub, V5, "pub");
    struct copts keep = {.clean = false, .expiry = 600};
    tc_open(b, &sub, V5, "exp", &keep, &o);
    sub_simple(b, &sub, "x", 1);
    tc_close(b, &sub);
    publish_expiring(b, &pub, "x", 5, 1);
    publish_expiring(b, &pub, "x", 1, 2);
    now_ms = 2000;
    tc_open(b, &sub, V5, "exp", &keep, &o);
    /* The 1 s message expired [MQTT-3.3.2-5]; the other one carries what is
     * left of its interval [MQTT-3.3.2-6]. */
    assert_int_equal(o.n, 2);
    const struct m2m_mqtt_publish *p = expect_pub(&o, 1, "x", "e", 1, false);
    assert_true(m2m_mqtt_props_has(&p->props, M2M_MQTT_P_MESSAGE_EXPIRY));
    assert_int_equal(p->props.message_expiry, 3);
    tc_close(b, &sub);
    tc_close(b, &pub);
    m2m_broker_free(b);
    now_ms = 0;
}

static void test_will_delay(void **state)
{
    (void)state;
    struct m2m_broker *b = broker();
    struct tc w, watcher;
    struct outp o;
    now_ms = 0;
    tc_simple(b, &watcher, V5, "watch");
    sub_simple(b, &watcher, "will/#", 1);

    /* Published once the delay has passed [MQTT-3.1.2-?: Will Delay Interval]. */
    struct copts co = {.clean = true, .expiry = 60, .will_topic = "will/d", .will_delay = 5};
    tc_open(b, &w, V5, "d", &co, &o);
    tc_close(b, &w);
    expect_nothing(&watcher);
    assert_int_equal(m2m_broker_next_timeout(b), 5000);
    m2m_broker_on_timeout(b, 4000);
    expect_nothing(&watcher);
    m2m_broker_on_timeout(b, 5000);
    drain(&watcher, &o);
    assert_int_equal(o.n, 1);
    expect_pub(&o, 0, "will/d", "gone", 1, false);
    send_ack(b, &watcher, M2M_MQTT_PUBACK, o.pkt[0].u.publish.packet_id);

    /* Back within the delay: never published [MQTT-3.1.3-9]. */
    now_ms = 10000;
    tc_open(b, &w, V5, "d", &co, &o);
    tc_close(b, &w);
    now_ms = 12000;
    tc_open(b, &w, V5, "d", &co, &o);
    m2m_broker_on_timeout(b, 20000);
    expect_nothing(&watcher);
    /* The session ends before the delay: the will goes with it. */
    struct copts short_session = {.clean = true, .expiry = 2, .will_topic = "will/s", .will_delay = 30};
    m2m_broker_detach(b, w.bc, now_ms);
    m2m_mqtt_conn_free(w.conn);
    tc_open(b, &w, V5, "s", &short_session, &o);
    tc_close(b, &w);
    m2m_broker_on_timeout(b, now_ms + 2000);
    drain(&watcher, &o);
    assert_int_equal(o.n, 1);
    expect_pub(&o, 0, "will/s", "gone", 1, false);

    tc_close(b, &watcher);
    m2m_broker_free(b);
    now_ms = 0;
}

static void test_session_expiry_timer(void **state)
{
    (void)state;
    struct m2m_broker *b = broker();
    struct tc sub;
    struct outp o;
    now_ms = 0;
    struct copts keep = {.clean = false, .expiry = 2};
    tc_open(b, &sub, V5, "short", &keep, &o);
    sub_simple(b, &sub, "t", 1);
    tc_close(b, &sub);
    assert_int_equal(m2m_broker_next_timeout(b), 2000);
    m2m_broker_on_timeout(b, 1999);
    now_ms = 1999;
    tc_open(b, &sub, V5, "short", &keep, &o);
    assert_true(o.pkt[0].u.connack.session_present);
    tc_close(b, &sub);
    m2m_broker_on_timeout(b, 1999 + 2000);
    assert_int_equal(m2m_broker_next_timeout(b), M2M_NEVER);
    now_ms = 5000;
    tc_open(b, &sub, V5, "short", &keep, &o);
    assert_false(o.pkt[0].u.connack.session_present);
    tc_close(b, &sub);
    m2m_broker_free(b);
    now_ms = 0;
}

static void test_takeover_v5_reason(void **state)
{
    (void)state;
    struct m2m_broker *b = broker();
    struct tc old, neu;
    struct outp o;
    tc_simple(b, &old, V5, "same");
    tc_simple(b, &neu, V5, "same");
    drain(&old, &o);
    assert_int_equal(o.n, 1);
    assert_int_equal(o.pkt[0].type, M2M_MQTT_DISCONNECT);
    assert_int_equal(o.pkt[0].u.disconnect.rc, M2M_MQTT_RC_SESSION_TAKEN_OVER); /* [MQTT-3.1.4-3] */
    assert_true(m2m_broker_process(b, old.bc, 0));
    tc_close(b, &old);
    tc_close(b, &neu);
    m2m_broker_free(b);
}

/* Per-filter failures in one SUBACK: the session's subscription quota
 * (0x97 in v5, 0x80 in 3.1.1), the other filters granted. A filter that is
 * not well formed is a malformed packet instead (the codec's tests). */
static void test_suback_codes(void **state)
{
    (void)state;
    struct m2m_broker_config cfg = {.allow_anonymous = true, .max_subscriptions = 2};
    struct m2m_broker *b = m2m_broker_new(&cfg);
    struct tc t;
    struct outp o;
    for (int v = 0; v < 2; v++) {
        tc_simple(b, &t, v ? V3 : V5, "codes");
        struct m2m_mqtt_packet p;
        m2m_mqtt_packet_init(&p, M2M_MQTT_SUBSCRIBE, t.v);
        p.u.subscribe.packet_id = 5;
        p.u.subscribe.n = 4;
        p.u.subscribe.sub[0].filter = S("ok/1");
        p.u.subscribe.sub[0].qos = 1;
        p.u.subscribe.sub[1].filter = S("ok/2");
        p.u.subscribe.sub[1].qos = 2;
        p.u.subscribe.sub[2].filter = S("ok/3");
        p.u.subscribe.sub[3].filter = S("ok/1"); /* a replacement needs no new slot */
        assert_false(feed(b, &t, &p));
        drain(&t, &o);
        assert_int_equal(o.pkt[0].u.suback.n, 4);
        assert_int_equal(o.pkt[0].u.suback.rc[0], 1);
        assert_int_equal(o.pkt[0].u.suback.rc[1], 2);
        assert_int_equal(o.pkt[0].u.suback.rc[2],
                         v ? M2M_MQTT311_SUBACK_FAILURE : M2M_MQTT_RC_QUOTA_EXCEEDED);
        assert_int_equal(o.pkt[0].u.suback.rc[3], 0);
        tc_close(b, &t);
    }
    m2m_broker_free(b);
}

static void test_sys_topics(void **state)
{
    (void)state;
    struct m2m_broker_config cfg = {.allow_anonymous = true, .sys_interval_s = 10, .version = "test"};
    struct m2m_broker *b = m2m_broker_new(&cfg);
    char err[100];
    assert_int_equal(m2m_broker_load(b, 0, err, sizeof err), 0);
    struct tc t;
    struct outp o;
    tc_simple(b, &t, V3, "sys");
    sub_simple(b, &t, "#", 0);
    sub_simple(b, &t, "$SYS/broker/clients/connected", 0);
    assert_int_equal(m2m_broker_next_timeout(b), 0);
    m2m_broker_on_timeout(b, 0);
    drain(&t, &o);
    assert_int_equal(o.n, 1); /* `#` does not see $SYS [MQTT-4.7.2-1] */
    expect_pub(&o, 0, "$SYS/broker/clients/connected", "1", 0, false);
    assert_int_equal(m2m_broker_next_timeout(b), 10000);
    /* Retained: a late subscriber gets the last value at once. */
    subscribe(b, &t, "$SYS/broker/version", 0, NULL, 0, &o);
    assert_int_equal(o.n, 2);
    expect_pub(&o, 1, "$SYS/broker/version", "m2mkit test", 0, true);
    /* Clients may not publish into $SYS. */
    publish(b, &t, "$SYS/broker/clients/connected", "999", 0, false, 0);
    expect_nothing(&t);
    tc_close(b, &t);
    m2m_broker_free(b);
}

static void test_outbound_topic_alias(void **state)
{
    (void)state;
    struct m2m_broker *b = broker();
    struct tc pub, sub;
    struct outp o;
    tc_simple(b, &pub, V3, "pub");
    conn_cfg.out_topic_aliases = 4;
    struct copts co = {.clean = true, .topic_alias_max = 2};
    tc_open(b, &sub, V5, "alias", &co, &o);
    conn_cfg.out_topic_aliases = 0;
    sub_simple(b, &sub, "al/#", 0);
    publish(b, &pub, "al/one", "1", 0, false, 0);
    publish(b, &pub, "al/one", "2", 0, false, 0);
    publish(b, &pub, "al/two", "3", 0, false, 0);
    publish(b, &pub, "al/three", "4", 0, false, 0); /* no alias left: the topic in full */
    drain(&sub, &o);
    assert_int_equal(o.n, 4);
    assert_true(slice_is(o.pkt[0].u.publish.topic, "al/one"));
    assert_int_equal(o.pkt[0].u.publish.props.topic_alias, 1);
    assert_int_equal(o.pkt[1].u.publish.topic.n, 0);
    assert_int_equal(o.pkt[1].u.publish.props.topic_alias, 1);
    assert_true(slice_is(o.pkt[2].u.publish.topic, "al/two"));
    assert_int_equal(o.pkt[2].u.publish.props.topic_alias, 2);
    assert_true(slice_is(o.pkt[3].u.publish.topic, "al/three"));
    assert_false(m2m_mqtt_props_has(&o.pkt[3].u.publish.props, M2M_MQTT_P_TOPIC_ALIAS));
    tc_close(b, &sub);
    tc_close(b, &pub);
    m2m_broker_free(b);
}

/* An unacknowledged message goes again on the next connection with its
 * packet id and DUP [MQTT-4.4.0-1]; a QoS 2 one whose PUBREC came only as
 * PUBREL [MQTT-4.3.3-5]. */
static void test_resume_inflight(void **state)
{
    (void)state;
    struct m2m_broker *b = broker();
    struct tc pub, sub;
    struct outp o;
    tc_simple(b, &pub, V3, "pub");
    struct copts keep = {.clean = false};
    tc_open(b, &sub, V3, "resume", &keep, &o);
    sub_simple(b, &sub, "r/#", 2);
    publish(b, &pub, "r/1", "one", 1, false, 1);
    publish(b, &pub, "r/2", "two", 2, false, 2);
    drain(&sub, &o);
    assert_int_equal(o.n, 2);
    uint16_t id1 = o.pkt[0].u.publish.packet_id, id2 = o.pkt[1].u.publish.packet_id;
    send_ack(b, &sub, M2M_MQTT_PUBREC, id2);
    drain(&sub, &o);
    assert_int_equal(o.pkt[0].type, M2M_MQTT_PUBREL);
    tc_close(b, &sub);

    tc_open(b, &sub, V3, "resume", &keep, &o);
    assert_true(o.pkt[0].u.connack.session_present);
    assert_int_equal(o.n, 3);
    const struct m2m_mqtt_publish *p = expect_pub(&o, 1, "r/1", "one", 1, false);
    assert_true(p->dup);
    assert_int_equal(p->packet_id, id1);
    assert_int_equal(o.pkt[2].type, M2M_MQTT_PUBREL);
    assert_int_equal(o.pkt[2].u.ack.packet_id, id2);
    send_ack(b, &sub, M2M_MQTT_PUBACK, id1);
    send_ack(b, &sub, M2M_MQTT_PUBCOMP, id2);
    tc_close(b, &sub);
    /* Both completed: nothing is left for the next connection. */
    tc_open(b, &sub, V3, "resume", &keep, &o);
    assert_int_equal(o.n, 1);
    tc_close(b, &sub);
    tc_close(b, &pub);
    m2m_broker_free(b);
}

static const char acl_text[] = "topic read pub/#\n"
                               "user alice\n"
                               "topic readwrite alice/#\n"
                               "topic write shared/in\n"
                               "pattern read devices/%c/cmd\n";

static void test_auth_and_acl(void **state)
{
    (void)state;
    /* "secret" hashed by mosquitto_passwd (PBKDF2-SHA512, 101 iterations). */
    char pw[300];
    char hash[200];
    assert_int_equal(m2m_mqtt_pw_hash(hash, sizeof hash, M2M_MQTT_PW_SHA512_PBKDF2, 101, S("secret")), 0);
    snprintf(pw, sizeof pw, "alice:%s\n", hash);
    struct m2m_mqtt_auth *auth = NULL;
    char err[200];
    assert_int_equal(
        m2m_mqtt_auth_parse(&auth, pw, strlen(pw), "pw", acl_text, strlen(acl_text), "acl", err, sizeof err),
        0);
    struct m2m_broker_config cfg = {.auth = auth};
    struct m2m_broker *b = m2m_broker_new(&cfg);
    struct tc t, anon;
    struct outp o;
    struct copts wrong = {.clean = true, .user = "alice", .password = "nope"};
    tc_open(b, &t, V5, "a1", &wrong, &o);
    assert_int_equal(o.pkt[0].u.connack.rc, M2M_MQTT_RC_BAD_USERNAME_OR_PASSWORD);
    tc_close(b, &t);
    tc_open(b, &t, V3, "a1", &wrong, &o);
    assert_int_equal(o.pkt[0].u.connack.rc, M2M_MQTT311_NOT_AUTHORIZED);
    tc_close(b, &t);
    tc_open(b, &anon, V5, "anon", NULL, &o); /* anonymous not allowed here */
    assert_int_equal(o.pkt[0].u.connack.rc, M2M_MQTT_RC_NOT_AUTHORIZED);
    tc_close(b, &anon);

    struct copts good = {.clean = true, .user = "alice", .password = "secret"};
    tc_open(b, &t, V5, "dev7", &good, &o);
    assert_int_equal(o.pkt[0].u.connack.rc, 0);
    sub_simple(b, &t, "alice/#", 1);
    sub_simple(b, &t, "devices/dev7/cmd", 1);
    sub_simple(b, &t, "shared/in", 1); /* subscribing is allowed, reading is not */
    /* Denied write: v5 PUBACK 0x87, nobody gets it. */
    publish(b, &t, "pub/x", "no", 1, false, 1);
    drain(&t, &o);
    assert_int_equal(o.n, 1);
    assert_int_equal(o.pkt[0].type, M2M_MQTT_PUBACK);
    assert_int_equal(o.pkt[0].u.ack.rc, M2M_MQTT_RC_NOT_AUTHORIZED);
    publish(b, &t, "alice/x", "yes", 0, false, 0);
    drain(&t, &o);
    assert_int_equal(o.n, 1);
    expect_pub(&o, 0, "alice/x", "yes", 0, false);
    publish(b, &t, "shared/in", "w", 0, false, 0);
    expect_nothing(&t); /* written, but alice may not read it */
    tc_close(b, &t);
    m2m_broker_free(b);
    m2m_mqtt_auth_free(auth);
}

/* mqtt.max_keep_alive: 3.1.1 clients asking for more, or for none, are
 * refused (identifier rejected, as mosquitto); within it they are taken. */
static void test_max_keep_alive(void **state)
{
    (void)state;
    struct m2m_broker_config cfg = {.allow_anonymous = true, .max_keep_alive = 60};
    struct m2m_broker *b = m2m_broker_new(&cfg);
    struct tc t;
    struct outp o;
    struct copts co = {.clean = true, .keep_alive = 120};
    tc_open(b, &t, V3, "ka", &co, &o);
    assert_int_equal(o.pkt[0].u.connack.rc, M2M_MQTT311_IDENTIFIER_REJECTED);
    tc_close(b, &t);
    co.keep_alive = 0;
    tc_open(b, &t, V3, "ka", &co, &o);
    assert_int_equal(o.pkt[0].u.connack.rc, M2M_MQTT311_IDENTIFIER_REJECTED);
    tc_close(b, &t);
    co.keep_alive = 60;
    tc_open(b, &t, V3, "ka", &co, &o);
    assert_int_equal(o.pkt[0].u.connack.rc, 0);
    tc_close(b, &t);
    m2m_broker_free(b);
}

/* A member of a shared subscription leaves with a message unacknowledged:
 * another online member gets it (5.0 §4.8.2). */
static void test_shared_handover(void **state)
{
    (void)state;
    struct m2m_broker *b = broker();
    struct tc pub, a, c;
    struct outp o;
    tc_simple(b, &pub, V3, "pub");
    tc_simple(b, &a, V5, "member-a");
    tc_simple(b, &c, V5, "member-c");
    sub_simple(b, &a, "$share/g/jobs", 1);
    sub_simple(b, &c, "$share/g/jobs", 1);
    publish(b, &pub, "jobs", "one", 1, false, 1);
    publish(b, &pub, "jobs", "two", 1, false, 2);
    struct outp oa, oc;
    drain(&a, &oa);
    drain(&c, &oc);
    assert_int_equal(oa.n, 1);
    assert_int_equal(oc.n, 1);
    const char *a_got = oa.pkt[0].u.publish.payload.p[1] == 'n' ? "one" : "two";
    send_ack(b, &c, M2M_MQTT_PUBACK, oc.pkt[0].u.publish.packet_id);
    tc_close(b, &a); /* leaves without acknowledging */
    drain(&c, &o);
    assert_int_equal(o.n, 1);
    expect_pub(&o, 0, "jobs", a_got, 1, false);
    send_ack(b, &c, M2M_MQTT_PUBACK, o.pkt[0].u.publish.packet_id);
    /* The group goes on with the member that is left. */
    publish(b, &pub, "jobs", "three", 1, false, 3);
    drain(&c, &o);
    assert_int_equal(o.n, 1);
    expect_pub(&o, 0, "jobs", "three", 1, false);
    tc_close(b, &c);
    tc_close(b, &pub);
    m2m_broker_free(b);
}

/* With a store, QoS 1 is acknowledged only after the commit, and what was
 * acknowledged is there for the next broker. */
static void test_store_group_commit(void **state)
{
    (void)state;
    char dir[] = "/tmp/m2m-broker-store.XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[128];
    snprintf(path, sizeof path, "%s/mqtt.db", dir);
    char err[200];
    struct m2m_mqtt_store *st = NULL;
    assert_int_equal(m2m_sqlite_mqtt_store_open(path, M2M_STORE_SYNC_NORMAL, &st, err, sizeof err), 0);
    struct m2m_broker_config cfg = {.allow_anonymous = true, .store = st};
    struct m2m_broker *b = m2m_broker_new(&cfg);
    assert_int_equal(m2m_broker_load(b, 0, err, sizeof err), 0);
    struct tc pub, sub;
    struct outp o;
    struct copts keep = {.clean = false};
    tc_open(b, &sub, V3, "stored", &keep, &o);
    sub_simple(b, &sub, "s/#", 1);
    tc_close(b, &sub);
    tc_simple(b, &pub, V5, "pub");
    publish(b, &pub, "s/1", "kept", 1, false, 1);
    publish(b, &pub, "s/r", "retained", 1, true, 2);
    expect_nothing(&pub); /* not yet committed */
    m2m_broker_sync(b);
    drain(&pub, &o);
    assert_int_equal(o.n, 2);
    assert_int_equal(o.pkt[0].type, M2M_MQTT_PUBACK);
    assert_int_equal(o.pkt[0].u.ack.rc, 0);
    tc_close(b, &pub);
    m2m_broker_free(b); /* as if the process died: nothing more is written */

    b = m2m_broker_new(&cfg);
    assert_int_equal(m2m_broker_load(b, 0, err, sizeof err), 0);
    tc_open(b, &sub, V3, "stored", &keep, &o);
    assert_true(o.pkt[0].u.connack.session_present);
    assert_int_equal(o.n, 3);
    expect_pub(&o, 1, "s/1", "kept", 1, false);
    expect_pub(&o, 2, "s/r", "retained", 1, false);
    send_ack(b, &sub, M2M_MQTT_PUBACK, o.pkt[1].u.publish.packet_id);
    send_ack(b, &sub, M2M_MQTT_PUBACK, o.pkt[2].u.publish.packet_id);
    m2m_broker_sync(b);
    tc_close(b, &sub);
    m2m_broker_free(b);

    /* Delivered and acknowledged: only the retained message is left. */
    b = m2m_broker_new(&cfg);
    assert_int_equal(m2m_broker_load(b, 0, err, sizeof err), 0);
    tc_open(b, &sub, V3, "stored", &keep, &o);
    assert_int_equal(o.n, 1);
    subscribe(b, &sub, "s/r", 0, NULL, 0, &o);
    assert_int_equal(o.n, 2);
    expect_pub(&o, 1, "s/r", "retained", 0, true);
    tc_close(b, &sub);
    m2m_broker_free(b);
    st->ops->close(st);
    char cmd[160];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
}

static void test_qos0_qos1(void **state)
{
    (void)state;
    struct m2m_broker *b = broker();
    struct tc pub, sub;
    struct outp o;
    tc_simple(b, &pub, V3, "pub");
    tc_simple(b, &sub, V5, "sub");
    sub_simple(b, &sub, "a/b", 1);

    publish(b, &pub, "a/b", "zero", 0, false, 0);
    expect_nothing(&pub);
    assert_int_equal(sub.woken, 1);
    drain(&sub, &o);
    assert_int_equal(o.n, 1);
    expect_pub(&o, 0, "a/b", "zero", 0, false);

    publish(b, &pub, "a/b", "one", 1, false, 7);
    drain(&pub, &o);
    assert_int_equal(o.n, 1);
    assert_int_equal(o.pkt[0].type, M2M_MQTT_PUBACK);
    assert_int_equal(o.pkt[0].u.ack.packet_id, 7);
    drain(&sub, &o);
    assert_int_equal(o.n, 1);
    uint16_t id = expect_pub(&o, 0, "a/b", "one", 1, false)->packet_id;
    send_ack(b, &sub, M2M_MQTT_PUBACK, id);
    expect_nothing(&sub);

    publish(b, &pub, "a/c", "other", 1, false, 8);
    drain(&pub, &o);
    assert_int_equal(o.n, 1);
    expect_nothing(&sub);

    tc_close(b, &pub);
    tc_close(b, &sub);
    m2m_broker_free(b);
}

static void test_qos2(void **state)
{
    (void)state;
    struct m2m_broker *b = broker();
    struct tc pub, sub;
    struct outp o;
    tc_simple(b, &pub, V5, "pub");
    tc_simple(b, &sub, V3, "sub");
    sub_simple(b, &sub, "x", 2);

    publish(b, &pub, "x", "two", 2, false, 9);
    drain(&pub, &o);
    assert_int_equal(o.n, 1);
    assert_int_equal(o.pkt[0].type, M2M_MQTT_PUBREC);
    drain(&sub, &o);
    assert_int_equal(o.n, 1);
    uint16_t id = expect_pub(&o, 0, "x", "two", 2, false)->packet_id;
    send_ack(b, &sub, M2M_MQTT_PUBREC, id);
    drain(&sub, &o);
    assert_int_equal(o.n, 1);
    assert_int_equal(o.pkt[0].type, M2M_MQTT_PUBREL);
    send_ack(b, &sub, M2M_MQTT_PUBCOMP, id);
    send_ack(b, &pub, M2M_MQTT_PUBREL, 9);
    drain(&pub, &o);
    assert_int_equal(o.n, 1);
    assert_int_equal(o.pkt[0].type, M2M_MQTT_PUBCOMP);

    /* QoS 2 published, QoS 1 subscribed: delivered at 1. */
    sub_simple(b, &sub, "y", 1);
    publish(b, &pub, "y", "down", 2, false, 10);
    drain(&sub, &o);
    assert_int_equal(o.n, 1);
    expect_pub(&o, 0, "y", "down", 1, false);

    tc_close(b, &pub);
    tc_close(b, &sub);
    m2m_broker_free(b);
}

static void test_wildcards(void **state)
{
    (void)state;
    struct m2m_broker *b = broker();
    struct tc pub, plus, hash;
    struct outp o;
    tc_simple(b, &pub, V3, "pub");
    tc_simple(b, &plus, V3, "plus");
    tc_simple(b, &hash, V3, "hash");
    sub_simple(b, &plus, "s/+/t", 0);
    sub_simple(b, &hash, "#", 0);

    publish(b, &pub, "s/1/t", "p", 0, false, 0);
    drain(&plus, &o);
    assert_int_equal(o.n, 1);
    expect_pub(&o, 0, "s/1/t", "p", 0, false);
    drain(&hash, &o);
    assert_int_equal(o.n, 1);

    publish(b, &pub, "s/1/2/t", "p", 0, false, 0);
    expect_nothing(&plus);
    drain(&hash, &o);
    assert_int_equal(o.n, 1);

    /* $ topics are not matched by a leading wildcard [MQTT-4.7.2-1]. */
    publish(b, &pub, "$dev/load", "p", 0, false, 0);
    expect_nothing(&hash);
    sub_simple(b, &plus, "$dev/#", 0);
    publish(b, &pub, "$dev/load", "p", 0, false, 0);
    expect_nothing(&hash);
    drain(&plus, &o);
    assert_int_equal(o.n, 1);

    tc_close(b, &pub);
    tc_close(b, &plus);
    tc_close(b, &hash);
    m2m_broker_free(b);
}

static void test_overlap_one_copy(void **state)
{
    (void)state;
    struct m2m_broker *b = broker();
    struct tc pub, sub;
    struct outp o;
    tc_simple(b, &pub, V3, "pub");
    tc_simple(b, &sub, V3, "sub");
    sub_simple(b, &sub, "a/#", 0);
    sub_simple(b, &sub, "a/+", 1);
    sub_simple(b, &sub, "a/b", 0);
    publish(b, &pub, "a/b", "m", 2, false, 1);
    drain(&sub, &o);
    assert_int_equal(o.n, 1);
    expect_pub(&o, 0, "a/b", "m", 1, false);

    /* Unsubscribe: the others still match. */
    struct m2m_mqtt_packet p;
    m2m_mqtt_packet_init(&p, M2M_MQTT_UNSUBSCRIBE, V3);
    p.u.unsubscribe.packet_id = 3;
    p.u.unsubscribe.n = 1;
    p.u.unsubscribe.filter[0] = S("a/+");
    assert_false(feed(b, &sub, &p));
    drain(&sub, &o);
    assert_int_equal(o.n, 1);
    assert_int_equal(o.pkt[0].type, M2M_MQTT_UNSUBACK);
    publish(b, &pub, "a/b", "m", 2, false, 2);
    drain(&sub, &o);
    assert_int_equal(o.n, 1);
    expect_pub(&o, 0, "a/b", "m", 0, false);

    tc_close(b, &pub);
    tc_close(b, &sub);
    m2m_broker_free(b);
}

static void test_retained(void **state)
{
    (void)state;
    struct m2m_broker *b = broker();
    struct tc pub, sub;
    struct outp o;
    tc_simple(b, &pub, V5, "pub");
    tc_simple(b, &sub, V5, "sub");

    publish(b, &pub, "r/1", "first", 1, true, 1);
    publish(b, &pub, "r/1", "second", 1, true, 2); /* replaces */
    publish(b, &pub, "r/2", "keep", 0, true, 0);
    publish(b, &pub, "r/3", "gone", 0, true, 0);
    publish(b, &pub, "r/3", "", 0, true, 0); /* deletes */

    subscribe(b, &sub, "r/#", 2, NULL, 2, &o);
    assert_int_equal(o.n, 3);
    bool seen1 = false, seen2 = false;
    for (size_t i = 1; i < o.n; i++) {
        const struct m2m_mqtt_publish *p = &o.pkt[i].u.publish;
        assert_int_equal(o.pkt[i].type, M2M_MQTT_PUBLISH);
        assert_true(p->retain);
        if (slice_is(p->topic, "r/1")) {
            assert_true(slice_is(p->payload, "second"));
            assert_int_equal(p->qos, 1);
            seen1 = true;
            send_ack(b, &sub, M2M_MQTT_PUBACK, p->packet_id);
        } else {
            assert_true(slice_is(p->topic, "r/2"));
            assert_int_equal(p->qos, 0);
            seen2 = true;
        }
    }
    assert_true(seen1 && seen2);

    /* Normal delivery clears the retain flag... */
    publish(b, &pub, "r/2", "live", 0, true, 0);
    drain(&sub, &o);
    assert_int_equal(o.n, 1);
    expect_pub(&o, 0, "r/2", "live", 0, false);
    /* ...unless retain-as-published. */
    struct subopt rap = {.rap = true, .rh = 2};
    subscribe(b, &sub, "r/2", 0, &rap, 0, &o);
    assert_int_equal(o.n, 1);
    publish(b, &pub, "r/2", "again", 0, true, 0);
    drain(&sub, &o);
    assert_int_equal(o.n, 1);
    expect_pub(&o, 0, "r/2", "again", 0, true);

    /* Retain handling 2: never; 1: only for a new subscription. */
    struct subopt rh2 = {.rh = 2};
    subscribe(b, &sub, "r/+", 0, &rh2, 0, &o);
    assert_int_equal(o.n, 1);
    struct subopt rh1 = {.rh = 1};
    subscribe(b, &sub, "r/1", 0, &rh1, 0, &o);
    assert_int_equal(o.n, 2);
    expect_pub(&o, 1, "r/1", "second", 0, true);
    subscribe(b, &sub, "r/1", 0, &rh1, 0, &o);
    assert_int_equal(o.n, 1);

    tc_close(b, &pub);
    tc_close(b, &sub);
    m2m_broker_free(b);
}

static void test_no_local(void **state)
{
    (void)state;
    struct m2m_broker *b = broker();
    struct tc c;
    struct outp o;
    tc_simple(b, &c, V5, "self");
    struct subopt nl = {.no_local = true};
    subscribe(b, &c, "n/+", 0, &nl, 0, &o);
    sub_simple(b, &c, "m/+", 0);
    publish(b, &c, "n/1", "x", 0, false, 0);
    expect_nothing(&c);
    publish(b, &c, "m/1", "x", 0, false, 0);
    drain(&c, &o);
    assert_int_equal(o.n, 1);
    assert_int_equal(c.woken, 0); /* own output: no wake */
    tc_close(b, &c);
    m2m_broker_free(b);
}

static void test_shared(void **state)
{
    (void)state;
    struct m2m_broker *b = broker();
    struct tc pub, m1, m2, plain;
    struct outp o;
    tc_simple(b, &pub, V5, "pub");
    tc_simple(b, &m1, V5, "m1");
    tc_simple(b, &m2, V3, "m2");
    tc_simple(b, &plain, V5, "plain");
    sub_simple(b, &m1, "$share/g/job/#", 1);
    sub_simple(b, &m2, "$share/g/job/#", 1);
    sub_simple(b, &plain, "job/#", 0);

    int got1 = 0, got2 = 0, last = 0;
    for (int i = 0; i < 6; i++) {
        publish(b, &pub, "job/x", "w", 0, false, 0);
        drain(&m1, &o);
        int a = (int)o.n;
        drain(&m2, &o);
        int c2 = (int)o.n;
        assert_int_equal(a + c2, 1);
        int who = a ? 1 : 2;
        assert_int_not_equal(who, last); /* alternation */
        last = who;
        got1 += a;
        got2 += c2;
        drain(&plain, &o);
        assert_int_equal(o.n, 1);
    }
    assert_int_equal(got1, 3);
    assert_int_equal(got2, 3);

    tc_close(b, &pub);
    tc_close(b, &m1);
    tc_close(b, &m2);
    tc_close(b, &plain);
    m2m_broker_free(b);
}

static void test_persistent_session(void **state)
{
    (void)state;
    struct m2m_broker *b = broker();
    struct tc pub, sub;
    struct outp o;
    struct copts keep = {.clean = false};
    tc_simple(b, &pub, V3, "pub");
    tc_open(b, &sub, V3, "dur", &keep, &o);
    assert_false(o.pkt[0].u.connack.session_present);
    sub_simple(b, &sub, "d/#", 1);
    tc_close(b, &sub);

    publish(b, &pub, "d/1", "q1", 1, false, 1);
    publish(b, &pub, "d/2", "q0", 0, false, 0); /* QoS 0: not kept offline */
    publish(b, &pub, "d/3", "q1b", 1, false, 2);

    tc_open(b, &sub, V3, "dur", &keep, &o);
    assert_true(o.pkt[0].u.connack.session_present);
    assert_int_equal(o.n, 3);
    expect_pub(&o, 1, "d/1", "q1", 1, false);
    expect_pub(&o, 2, "d/3", "q1b", 1, false);
    uint16_t id1 = o.pkt[1].u.publish.packet_id;
    send_ack(b, &sub, M2M_MQTT_PUBACK, id1);
    /* d/3 unacknowledged: re-sent on the next connection. */
    tc_close(b, &sub);
    tc_open(b, &sub, V3, "dur", &keep, &o);
    assert_true(o.pkt[0].u.connack.session_present);
    assert_int_equal(o.n, 2);
    expect_pub(&o, 1, "d/3", "q1b", 1, false);
    tc_close(b, &sub);

    /* Clean start drops the session. */
    publish(b, &pub, "d/4", "lost", 1, false, 3);
    struct copts clean = {.clean = true};
    tc_open(b, &sub, V3, "dur", &clean, &o);
    assert_false(o.pkt[0].u.connack.session_present);
    assert_int_equal(o.n, 1);
    publish(b, &pub, "d/5", "nosub", 1, false, 4);
    expect_nothing(&sub);
    tc_close(b, &sub);

    tc_close(b, &pub);
    m2m_broker_free(b);
}

static void test_v5_session_expiry(void **state)
{
    (void)state;
    struct m2m_broker *b = broker();
    struct tc pub, sub;
    struct outp o;
    tc_simple(b, &pub, V5, "pub");
    /* Session Expiry 0 (default): the session ends with the connection. */
    struct copts zero = {.clean = false};
    tc_open(b, &sub, V5, "s5", &zero, &o);
    sub_simple(b, &sub, "e", 1);
    tc_close(b, &sub);
    publish(b, &pub, "e", "x", 1, false, 1);
    tc_open(b, &sub, V5, "s5", &zero, &o);
    assert_false(o.pkt[0].u.connack.session_present);
    assert_int_equal(o.n, 1);
    tc_close(b, &sub);

    struct copts keep = {.clean = false, .expiry = 60};
    tc_open(b, &sub, V5, "s5", &keep, &o);
    sub_simple(b, &sub, "e", 1);
    tc_close(b, &sub);
    publish(b, &pub, "e", "kept", 1, false, 2);
    tc_open(b, &sub, V5, "s5", &keep, &o);
    assert_true(o.pkt[0].u.connack.session_present);
    assert_int_equal(o.n, 2);
    expect_pub(&o, 1, "e", "kept", 1, false);
    tc_close(b, &sub);
    tc_close(b, &pub);
    m2m_broker_free(b);
}

static void test_window_queue(void **state)
{
    (void)state;
    struct m2m_broker *b = broker();
    struct tc pub, sub;
    struct outp o;
    tc_simple(b, &pub, V3, "pub");
    /* Receive Maximum 2 from the client. */
    memset(&sub, 0, sizeof sub);
    sub.v = V5;
    sub.conn = m2m_mqtt_conn_new(&conn_cfg);
    sub.bc = m2m_broker_attach(b, sub.conn, wake_cb, &sub);
    struct m2m_mqtt_packet p;
    m2m_mqtt_packet_init(&p, M2M_MQTT_CONNECT, V5);
    p.u.connect.clean_start = true;
    p.u.connect.client_id = S("slow");
    p.u.connect.props.receive_maximum = 2;
    m2m_mqtt_props_set(&p.u.connect.props, M2M_MQTT_P_RECEIVE_MAXIMUM);
    feed(b, &sub, &p);
    drain(&sub, &o);
    sub_simple(b, &sub, "w", 1);

    for (uint16_t i = 1; i <= 4; i++)
        publish(b, &pub, "w", "m", 1, false, i);
    drain(&sub, &o);
    assert_int_equal(o.n, 2);
    send_ack(b, &sub, M2M_MQTT_PUBACK, o.pkt[0].u.publish.packet_id);
    send_ack(b, &sub, M2M_MQTT_PUBACK, o.pkt[1].u.publish.packet_id);
    drain(&sub, &o);
    assert_int_equal(o.n, 2);
    expect_pub(&o, 0, "w", "m", 1, false);
    tc_close(b, &sub);
    tc_close(b, &pub);
    m2m_broker_free(b);
}

static void test_takeover(void **state)
{
    (void)state;
    struct m2m_broker *b = broker();
    struct tc old, neu, pub;
    struct outp o;
    tc_simple(b, &pub, V3, "pub");
    struct copts keep = {.clean = false};
    tc_open(b, &old, V3, "same", &keep, &o);
    sub_simple(b, &old, "t", 1);
    tc_open(b, &neu, V3, "same", &keep, &o);
    assert_true(o.pkt[0].u.connack.session_present);
    assert_int_equal(old.woken, 1);
    assert_true(m2m_broker_process(b, old.bc, 0));
    tc_close(b, &old);

    publish(b, &pub, "t", "to new", 1, false, 1);
    drain(&neu, &o);
    assert_int_equal(o.n, 1);
    expect_pub(&o, 0, "t", "to new", 1, false);
    tc_close(b, &neu);
    tc_close(b, &pub);
    m2m_broker_free(b);
}

static void test_will(void **state)
{
    (void)state;
    struct m2m_broker *b = broker();
    struct tc w, watcher;
    struct outp o;
    tc_simple(b, &watcher, V5, "watch");
    sub_simple(b, &watcher, "will/#", 1);

    struct copts co = {.clean = true, .will_topic = "will/a"};
    tc_open(b, &w, V3, "a", &co, &o);
    tc_close(b, &w); /* abnormal: transport lost */
    assert_int_equal(watcher.woken, 1);
    drain(&watcher, &o);
    assert_int_equal(o.n, 1);
    expect_pub(&o, 0, "will/a", "gone", 1, false);
    send_ack(b, &watcher, M2M_MQTT_PUBACK, o.pkt[0].u.publish.packet_id);

    co.will_topic = "will/b";
    tc_open(b, &w, V5, "b", &co, &o);
    struct m2m_mqtt_packet p;
    m2m_mqtt_packet_init(&p, M2M_MQTT_DISCONNECT, V5);
    p.u.disconnect.rc = 0;
    assert_true(feed(b, &w, &p));
    tc_close(b, &w);
    expect_nothing(&watcher);

    tc_close(b, &watcher);
    m2m_broker_free(b);
}

static void test_client_ids(void **state)
{
    (void)state;
    struct m2m_broker *b = broker();
    struct tc c;
    struct outp o;
    tc_open(b, &c, V5, "", NULL, &o);
    assert_int_equal(o.pkt[0].u.connack.rc, 0);
    assert_true(m2m_mqtt_props_has(&o.pkt[0].u.connack.props, M2M_MQTT_P_ASSIGNED_CLIENT_ID));
    struct m2m_slice id = o.pkt[0].u.connack.props.assigned_client_id;
    assert_true(id.n > 7 && memcmp(id.p, "m2mkit-", 7) == 0);
    tc_close(b, &c);

    struct copts keep = {.clean = false};
    tc_open(b, &c, V3, "", &keep, &o);
    assert_int_equal(o.pkt[0].u.connack.rc, M2M_MQTT311_IDENTIFIER_REJECTED);
    assert_true(c.closed);
    tc_close(b, &c);

    struct m2m_broker_config strict = {0};
    struct m2m_broker *b2 = m2m_broker_new(&strict);
    tc_open(b2, &c, V5, "anon", NULL, &o);
    assert_int_equal(o.pkt[0].u.connack.rc, M2M_MQTT_RC_NOT_AUTHORIZED);
    assert_true(c.closed);
    tc_close(b2, &c);
    m2m_broker_free(b2);
    m2m_broker_free(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_qos0_qos1),
        cmocka_unit_test(test_qos2),
        cmocka_unit_test(test_wildcards),
        cmocka_unit_test(test_overlap_one_copy),
        cmocka_unit_test(test_retained),
        cmocka_unit_test(test_no_local),
        cmocka_unit_test(test_shared),
        cmocka_unit_test(test_persistent_session),
        cmocka_unit_test(test_v5_session_expiry),
        cmocka_unit_test(test_window_queue),
        cmocka_unit_test(test_takeover),
        cmocka_unit_test(test_will),
        cmocka_unit_test(test_client_ids),
        cmocka_unit_test(test_subscription_ids),
        cmocka_unit_test(test_message_expiry),
        cmocka_unit_test(test_will_delay),
        cmocka_unit_test(test_session_expiry_timer),
        cmocka_unit_test(test_takeover_v5_reason),
        cmocka_unit_test(test_suback_codes),
        cmocka_unit_test(test_sys_topics),
        cmocka_unit_test(test_outbound_topic_alias),
        cmocka_unit_test(test_resume_inflight),
        cmocka_unit_test(test_auth_and_acl),
        cmocka_unit_test(test_store_group_commit),
        cmocka_unit_test(test_max_keep_alive),
        cmocka_unit_test(test_shared_handover),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
