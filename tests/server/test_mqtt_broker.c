/* MQTT broker routing: several scripted clients, each a real
 * m2m_mqtt_conn attached to one broker, fed encoded packets; their output is
 * decoded and checked. Virtual time. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "m2m/mqtt.h"
#include "m2m/mqtt_session.h"
#include "server/mqtt_broker.h"

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

static const struct m2m_mqtt_conn_config conn_cfg = {
    .start = 0,
    .max_packet_size = 4096,
    .max_inflight = 8,
};

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
    assert_int_equal(m2m_mqtt_conn_feed(t->conn, 0, buf, len), 0);
    t->closed = m2m_broker_process(b, t->bc, 0);
    return t->closed;
}

struct copts {
    bool clean;
    uint32_t expiry; /* v5 Session Expiry */
    const char *will_topic;
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
    m2m_broker_detach(b, t->bc, 0);
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
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
