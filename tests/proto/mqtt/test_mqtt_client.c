/* Client-side MQTT core: a scripted server in virtual time. Server packets
 * are built with m2m_mqtt_encode and fed whole or split at every byte; what
 * the client sends is decoded again and checked field by field. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "m2m/mqtt.h"
#include "m2m/mqtt_client.h"

#define V3 M2M_MQTT_V311
#define V5 M2M_MQTT_V5

static struct m2m_slice S(const char *s) {
    return (struct m2m_slice){(const uint8_t *)s, strlen(s)};
}

static bool
slice_is(struct m2m_slice s, const char *want)
{
    return s.n == strlen(want) && (s.n == 0 || memcmp(s.p, want, s.n) == 0);
}

/* ---- the scripted server -------------------------------------------------- */

static size_t enc(const struct m2m_mqtt_packet *pkt, uint8_t *buf, size_t cap)
{
    size_t len = 0;
    assert_int_equal(m2m_mqtt_encode(pkt, buf, cap, &len), 0);
    return len;
}

static void feed_pkt(struct m2m_mqtt_client *c, m2m_time now, const struct m2m_mqtt_packet *pkt)
{
    uint8_t buf[4096];
    size_t len = enc(pkt, buf, sizeof buf);
    assert_int_equal(m2m_mqtt_client_feed(c, now, buf, len), 0);
}

static void feed_hex(struct m2m_mqtt_client *c, m2m_time now, const uint8_t *p, size_t n)
{
    assert_int_equal(m2m_mqtt_client_feed(c, now, p, n), 0);
}

/* What the client wrote, decoded into packets (slices point into raw). */
struct outp {
    uint8_t raw[16384];
    size_t len;
    size_t n;
    struct m2m_mqtt_packet pkt[32];
};

static void drain(struct m2m_mqtt_client *c, enum m2m_mqtt_version v, struct outp *o)
{
    const uint8_t *p;
    size_t n;
    o->len = 0;
    o->n = 0;
    while (m2m_mqtt_client_poll_output(c, &p, &n)) {
        assert_true(o->len + n <= sizeof o->raw);
        memcpy(o->raw + o->len, p, n);
        o->len += n;
    }
    size_t off = 0;
    while (off < o->len) {
        size_t total = 0;
        assert_int_equal(m2m_mqtt_frame(o->raw + off, o->len - off, 0, &total), 0);
        assert_true(o->n < 32);
        /* The server side decodes CONNECT with its own version detection. */
        assert_int_equal(m2m_mqtt_decode(&o->pkt[o->n], v, o->raw + off, total, NULL), 0);
        o->n++;
        off += total;
    }
}

static struct m2m_mqtt_client_event expect_ev(struct m2m_mqtt_client *c, enum m2m_mqtt_client_event_type t)
{
    struct m2m_mqtt_client_event ev;
    assert_true(m2m_mqtt_client_poll_event(c, &ev));
    assert_int_equal(ev.type, t);
    return ev;
}

static void expect_none(struct m2m_mqtt_client *c)
{
    struct m2m_mqtt_client_event ev;
    assert_false(m2m_mqtt_client_poll_event(c, &ev));
}

static struct m2m_mqtt_packet connack(enum m2m_mqtt_version v, bool sp, uint8_t rc)
{
    struct m2m_mqtt_packet p;
    m2m_mqtt_packet_init(&p, M2M_MQTT_CONNACK, v);
    p.u.connack.session_present = sp;
    p.u.connack.rc = rc;
    return p;
}

static struct m2m_mqtt_packet ack(enum m2m_mqtt_version v, enum m2m_mqtt_type t, uint16_t id, uint8_t rc)
{
    struct m2m_mqtt_packet p;
    m2m_mqtt_packet_init(&p, t, v);
    p.u.ack.packet_id = id;
    p.u.ack.rc = rc;
    return p;
}

static struct m2m_mqtt_packet publish(enum m2m_mqtt_version v, const char *topic, uint8_t qos, uint16_t id,
                                      const char *payload)
{
    struct m2m_mqtt_packet p;
    m2m_mqtt_packet_init(&p, M2M_MQTT_PUBLISH, v);
    p.u.publish.topic = S(topic);
    p.u.publish.qos = qos;
    p.u.publish.packet_id = id;
    p.u.publish.payload = S(payload);
    return p;
}

static struct m2m_mqtt_client_config base_cfg(enum m2m_mqtt_version v)
{
    struct m2m_mqtt_client_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.version = (uint8_t)v;
    cfg.client_id = S("dev1");
    cfg.clean_start = true;
    cfg.keep_alive = 0;
    return cfg;
}

/* New client, CONNECT sent, CONNACK (props may be NULL) fed, events drained. */
static struct m2m_mqtt_client *open_client(const struct m2m_mqtt_client_config *cfg,
                                           const struct m2m_mqtt_props *ack_props)
{
    struct m2m_mqtt_client *c = m2m_mqtt_client_new(cfg);
    assert_non_null(c);
    assert_int_equal(m2m_mqtt_client_connect(c, 1000), 0);
    struct outp o;
    drain(c, (enum m2m_mqtt_version)cfg->version, &o);
    assert_int_equal(o.n, 1);
    assert_int_equal(o.pkt[0].type, M2M_MQTT_CONNECT);
    struct m2m_mqtt_packet ca = connack((enum m2m_mqtt_version)cfg->version, false, 0);
    if (ack_props)
        ca.u.connack.props = *ack_props;
    feed_pkt(c, 1000, &ca);
    expect_ev(c, M2M_MQTT_CEV_CONNACK);
    expect_none(c);
    assert_true(m2m_mqtt_client_connected(c));
    return c;
}

/* ---- CONNECT / CONNACK ---------------------------------------------------- */

/* [MQTT-3.1.0-1] CONNECT first; 3.1.1 fields: clean session, keep alive,
 * will, user name and password. */
static void test_connect_v311(void **state)
{
    (void)state;
    struct m2m_slice user = S("alice"), pass = S("secret");
    struct m2m_mqtt_will will = {
        .topic = S("dev1/status"), .payload = S("offline"), .qos = 1, .retain = true};
    struct m2m_mqtt_client_config cfg = base_cfg(V3);
    cfg.keep_alive = 30;
    cfg.will = &will;
    cfg.username = &user;
    cfg.password = &pass;
    struct m2m_mqtt_client *c = m2m_mqtt_client_new(&cfg);
    assert_non_null(c);
    assert_false(m2m_mqtt_client_connected(c));
    assert_int_equal(m2m_mqtt_client_feed(c, 0, (const uint8_t *)"x", 1), M2M_ESTATE);
    assert_int_equal(m2m_mqtt_client_connect(c, 0), 0);
    assert_int_equal(m2m_mqtt_client_connect(c, 0), M2M_ESTATE);
    struct outp o;
    drain(c, V3, &o);
    assert_int_equal(o.n, 1);
    const struct m2m_mqtt_connect *cn = &o.pkt[0].u.connect;
    assert_int_equal(o.pkt[0].version, V3);
    assert_true(cn->clean_start);
    assert_int_equal(cn->keep_alive, 30);
    assert_true(slice_is(cn->client_id, "dev1"));
    assert_true(cn->will && cn->will_retain);
    assert_int_equal(cn->will_qos, 1);
    assert_true(slice_is(cn->will_topic, "dev1/status"));
    assert_true(slice_is(cn->will_payload, "offline"));
    assert_true(cn->has_username && slice_is(cn->username, "alice"));
    assert_true(cn->has_password && slice_is(cn->password, "secret"));
    /* Nothing but CONNACK is expected before CONNACK. */
    assert_int_equal(m2m_mqtt_client_publish(c, 0, S("a"), S("b"), 0, false, NULL, NULL), M2M_ESTATE);
    struct m2m_mqtt_packet ca = connack(V3, false, 0);
    feed_pkt(c, 10, &ca);
    struct m2m_mqtt_client_event ev = expect_ev(c, M2M_MQTT_CEV_CONNACK);
    assert_false(ev.session_present);
    assert_true(m2m_mqtt_client_connected(c));
    m2m_mqtt_client_free(c);
}

/* v5 CONNECT properties; CONNACK properties honoured: Assigned Client
 * Identifier, Server Keep Alive [MQTT-3.2.2-21], Maximum QoS
 * [MQTT-3.2.2-11], Retain Available [MQTT-3.2.2-14], Maximum Packet Size
 * [MQTT-3.2.2-15], wildcard and shared subscription availability. */
static void test_connect_v5_props(void **state)
{
    (void)state;
    struct m2m_mqtt_pair up[2] = {{S("site"), S("lab")}, {S("fw"), S("1.2")}};
    struct m2m_mqtt_props wp;
    memset(&wp, 0, sizeof wp);
    wp.will_delay = 7;
    m2m_mqtt_props_set(&wp, M2M_MQTT_P_WILL_DELAY);
    struct m2m_mqtt_will will = {.topic = S("w"), .payload = S("gone"), .qos = 0, .props = &wp};
    struct m2m_mqtt_client_config cfg = base_cfg(V5);
    cfg.client_id = S("");
    cfg.keep_alive = 60;
    cfg.session_expiry = 3600;
    cfg.receive_maximum = 5;
    cfg.max_packet_size = 2048;
    cfg.topic_alias_maximum = 3;
    cfg.user = up;
    cfg.nuser = 2;
    cfg.will = &will;
    struct m2m_mqtt_client *c = m2m_mqtt_client_new(&cfg);
    assert_non_null(c);
    assert_int_equal(m2m_mqtt_client_connect(c, 1000), 0);
    struct outp o;
    drain(c, V5, &o);
    const struct m2m_mqtt_connect *cn = &o.pkt[0].u.connect;
    assert_int_equal(o.pkt[0].version, V5);
    assert_int_equal(cn->client_id.n, 0);
    assert_int_equal(cn->props.session_expiry, 3600);
    assert_int_equal(cn->props.receive_maximum, 5);
    assert_int_equal(cn->props.maximum_packet_size, 2048);
    assert_int_equal(cn->props.topic_alias_maximum, 3);
    assert_int_equal(cn->props.nuser, 2);
    struct m2m_mqtt_user_iter it;
    struct m2m_mqtt_pair pair;
    m2m_mqtt_user_iter_init(&it, &cn->props);
    assert_true(m2m_mqtt_user_next(&it, &pair));
    assert_true(slice_is(pair.name, "site") && slice_is(pair.value, "lab"));
    assert_true(cn->will);
    assert_true(m2m_mqtt_props_has(&cn->will_props, M2M_MQTT_P_WILL_DELAY));
    assert_int_equal(cn->will_props.will_delay, 7);

    struct m2m_mqtt_packet ca = connack(V5, false, 0);
    struct m2m_mqtt_props *pr = &ca.u.connack.props;
    pr->assigned_client_id = S("auto-42");
    m2m_mqtt_props_set(pr, M2M_MQTT_P_ASSIGNED_CLIENT_ID);
    pr->server_keep_alive = 5;
    m2m_mqtt_props_set(pr, M2M_MQTT_P_SERVER_KEEP_ALIVE);
    pr->maximum_qos = 1;
    m2m_mqtt_props_set(pr, M2M_MQTT_P_MAXIMUM_QOS);
    pr->retain_available = 0;
    m2m_mqtt_props_set(pr, M2M_MQTT_P_RETAIN_AVAILABLE);
    pr->maximum_packet_size = 64;
    m2m_mqtt_props_set(pr, M2M_MQTT_P_MAXIMUM_PACKET_SIZE);
    pr->wildcard_sub_available = 0;
    m2m_mqtt_props_set(pr, M2M_MQTT_P_WILDCARD_SUB_AVAILABLE);
    pr->shared_sub_available = 0;
    m2m_mqtt_props_set(pr, M2M_MQTT_P_SHARED_SUB_AVAILABLE);
    pr->subscription_id_available = 0;
    m2m_mqtt_props_set(pr, M2M_MQTT_P_SUBSCRIPTION_ID_AVAILABLE);
    feed_pkt(c, 2000, &ca);
    struct m2m_mqtt_client_event ev = expect_ev(c, M2M_MQTT_CEV_CONNACK);
    assert_true(slice_is(ev.props->assigned_client_id, "auto-42"));
    assert_true(slice_is(m2m_mqtt_client_id(c), "auto-42"));
    /* Server Keep Alive 5 s replaces our 60 s. */
    assert_int_equal(m2m_mqtt_client_next_timeout(c), 1000 + 5000);
    assert_int_equal(m2m_mqtt_client_publish(c, 2000, S("t"), S("x"), 2, false, NULL, NULL),
                     M2M_EUNSUPPORTED);
    assert_int_equal(m2m_mqtt_client_publish(c, 2000, S("t"), S("x"), 0, true, NULL, NULL), M2M_EUNSUPPORTED);
    char big[100];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = 0;
    assert_int_equal(m2m_mqtt_client_publish(c, 2000, S("t"), S(big), 1, false, NULL, NULL), M2M_ELIMIT);
    struct m2m_mqtt_subscription sub = {.filter = S("a/+"), .qos = 1};
    assert_int_equal(m2m_mqtt_client_subscribe(c, 2000, &sub, 1, NULL, NULL), M2M_EUNSUPPORTED);
    sub.filter = S("$share/g/a");
    assert_int_equal(m2m_mqtt_client_subscribe(c, 2000, &sub, 1, NULL, NULL), M2M_EUNSUPPORTED);
    sub.filter = S("a/b");
    struct m2m_mqtt_props sp;
    memset(&sp, 0, sizeof sp);
    sp.nsubid = 1;
    sp.subid[0] = 9;
    m2m_mqtt_props_set(&sp, M2M_MQTT_P_SUBSCRIPTION_ID);
    assert_int_equal(m2m_mqtt_client_subscribe(c, 2000, &sub, 1, &sp, NULL), M2M_EUNSUPPORTED);
    assert_int_equal(m2m_mqtt_client_subscribe(c, 2000, &sub, 1, NULL, NULL), 0);
    assert_int_equal(m2m_mqtt_client_publish(c, 2000, S("t"), S("x"), 1, false, NULL, NULL), 0);
    m2m_mqtt_client_free(c);
}

/* Every refusal is an event with its code, then the connection closes. */
static void test_refusals(void **state)
{
    (void)state;
    static const struct {
        enum m2m_mqtt_version v;
        uint8_t rc;
    } cases[] = {{V3, 1},    {V3, 2},    {V3, 3},    {V3, 4},    {V3, 5},    {V5, 0x80},
                 {V5, 0x84}, {V5, 0x85}, {V5, 0x86}, {V5, 0x87}, {V5, 0x88}, {V5, 0x89},
                 {V5, 0x8a}, {V5, 0x8c}, {V5, 0x95}, {V5, 0x97}, {V5, 0x9c}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct m2m_mqtt_client_config cfg = base_cfg(cases[i].v);
        struct m2m_mqtt_client *c = m2m_mqtt_client_new(&cfg);
        assert_int_equal(m2m_mqtt_client_connect(c, 0), 0);
        struct outp o;
        drain(c, cases[i].v, &o);
        struct m2m_mqtt_packet ca = connack(cases[i].v, false, cases[i].rc);
        feed_pkt(c, 5, &ca);
        struct m2m_mqtt_client_event ev = expect_ev(c, M2M_MQTT_CEV_REFUSED);
        assert_int_equal(ev.reason, cases[i].rc);
        ev = expect_ev(c, M2M_MQTT_CEV_CLOSED);
        assert_int_equal(ev.err, M2M_ERESET);
        expect_none(c);
        assert_false(m2m_mqtt_client_connected(c));
        drain(c, cases[i].v, &o);
        assert_int_equal(o.n, 0); /* a refused client sends nothing more */
        assert_string_not_equal(cases[i].v == V3 ? m2m_mqtt311_connack_name(cases[i].rc)
                                                 : m2m_mqtt_reason_name(cases[i].rc),
                                "Unknown");
        m2m_mqtt_client_free(c);
    }
    assert_string_equal(m2m_mqtt_reason_name(0x86), "Bad User Name or Password");
}

/* No CONNACK within connect_timeout_ms: closed, M2M_ETIMEDOUT. */
static void test_connack_timeout(void **state)
{
    (void)state;
    struct m2m_mqtt_client_config cfg = base_cfg(V5);
    cfg.connect_timeout_ms = 3000;
    struct m2m_mqtt_client *c = m2m_mqtt_client_new(&cfg);
    assert_int_equal(m2m_mqtt_client_connect(c, 100), 0);
    assert_int_equal(m2m_mqtt_client_next_timeout(c), 3100);
    m2m_mqtt_client_on_timeout(c, 3099);
    expect_none(c);
    m2m_mqtt_client_on_timeout(c, 3100);
    struct m2m_mqtt_client_event ev = expect_ev(c, M2M_MQTT_CEV_CLOSED);
    assert_int_equal(ev.err, M2M_ETIMEDOUT);
    assert_int_equal(m2m_mqtt_client_next_timeout(c), M2M_NEVER);
    m2m_mqtt_client_free(c);
}

/* ---- QoS flows -------------------------------------------------------------- */

/* Outbound QoS 1 and 2 ([MQTT-4.3.2-1], [MQTT-4.3.3-1]): PUBACK completes
 * QoS 1; PUBREC -> PUBREL -> PUBCOMP completes QoS 2; ids are distinct and
 * non-zero [MQTT-2.2.1-3]. */
static void test_qos_out(void **state)
{
    (void)state;
    for (int v = V3; v <= V5; v++) {
        struct m2m_mqtt_client_config cfg = base_cfg((enum m2m_mqtt_version)v);
        struct m2m_mqtt_client *c = open_client(&cfg, NULL);
        uint16_t id1 = 0, id2 = 0;
        assert_int_equal(m2m_mqtt_client_publish(c, 2000, S("a/b"), S("one"), 1, false, NULL, &id1), 0);
        assert_int_equal(m2m_mqtt_client_publish(c, 2000, S("a/b"), S("two"), 2, true, NULL, &id2), 0);
        assert_true(id1 && id2 && id1 != id2);
        assert_int_equal(m2m_mqtt_client_pending(c), 2);
        struct outp o;
        drain(c, (enum m2m_mqtt_version)v, &o);
        assert_int_equal(o.n, 2);
        assert_int_equal(o.pkt[0].u.publish.qos, 1);
        assert_int_equal(o.pkt[0].u.publish.packet_id, id1);
        assert_false(o.pkt[0].u.publish.dup);
        assert_true(slice_is(o.pkt[0].u.publish.payload, "one"));
        assert_int_equal(o.pkt[1].u.publish.qos, 2);
        assert_true(o.pkt[1].u.publish.retain);
        struct m2m_mqtt_packet a = ack((enum m2m_mqtt_version)v, M2M_MQTT_PUBACK, id1, 0);
        feed_pkt(c, 2100, &a);
        struct m2m_mqtt_client_event ev = expect_ev(c, M2M_MQTT_CEV_PUBLISH_DONE);
        assert_int_equal(ev.packet_id, id1);
        a = ack((enum m2m_mqtt_version)v, M2M_MQTT_PUBREC, id2, 0);
        feed_pkt(c, 2100, &a);
        expect_none(c);
        drain(c, (enum m2m_mqtt_version)v, &o);
        assert_int_equal(o.n, 1);
        assert_int_equal(o.pkt[0].type, M2M_MQTT_PUBREL);
        assert_int_equal(o.pkt[0].u.ack.packet_id, id2);
        a = ack((enum m2m_mqtt_version)v, M2M_MQTT_PUBCOMP, id2, 0);
        feed_pkt(c, 2200, &a);
        ev = expect_ev(c, M2M_MQTT_CEV_PUBLISH_DONE);
        assert_int_equal(ev.packet_id, id2);
        assert_int_equal(m2m_mqtt_client_pending(c), 0);
        /* A PUBACK for nothing is ignored. */
        a = ack((enum m2m_mqtt_version)v, M2M_MQTT_PUBACK, 999, 0);
        feed_pkt(c, 2300, &a);
        expect_none(c);
        assert_true(m2m_mqtt_client_connected(c));
        m2m_mqtt_client_free(c);
    }
}

/* v5: a PUBREC with a failure code ends the QoS 2 flow without PUBREL. */
static void test_qos2_pubrec_failure(void **state)
{
    (void)state;
    struct m2m_mqtt_client_config cfg = base_cfg(V5);
    struct m2m_mqtt_client *c = open_client(&cfg, NULL);
    uint16_t id = 0;
    assert_int_equal(m2m_mqtt_client_publish(c, 2000, S("a"), S("x"), 2, false, NULL, &id), 0);
    struct outp o;
    drain(c, V5, &o);
    struct m2m_mqtt_packet a = ack(V5, M2M_MQTT_PUBREC, id, M2M_MQTT_RC_QUOTA_EXCEEDED);
    feed_pkt(c, 2100, &a);
    struct m2m_mqtt_client_event ev = expect_ev(c, M2M_MQTT_CEV_PUBLISH_DONE);
    assert_int_equal(ev.reason, M2M_MQTT_RC_QUOTA_EXCEEDED);
    drain(c, V5, &o);
    assert_int_equal(o.n, 0);
    m2m_mqtt_client_free(c);
}

/* Inbound QoS 1 gets PUBACK; QoS 2 gets PUBREC, is delivered once even when
 * sent again with DUP, and PUBREL gets PUBCOMP ([MQTT-4.3.3-9] of 3.1.1). */
static void test_qos_in(void **state)
{
    (void)state;
    for (int v = V3; v <= V5; v++) {
        struct m2m_mqtt_client_config cfg = base_cfg((enum m2m_mqtt_version)v);
        struct m2m_mqtt_client *c = open_client(&cfg, NULL);
        struct m2m_mqtt_packet p = publish((enum m2m_mqtt_version)v, "in/1", 1, 7, "q1");
        feed_pkt(c, 2000, &p);
        struct m2m_mqtt_client_event ev = expect_ev(c, M2M_MQTT_CEV_PUBLISH);
        assert_true(slice_is(ev.publish->topic, "in/1"));
        assert_true(slice_is(ev.publish->payload, "q1"));
        struct outp o;
        drain(c, (enum m2m_mqtt_version)v, &o);
        assert_int_equal(o.n, 1);
        assert_int_equal(o.pkt[0].type, M2M_MQTT_PUBACK);
        assert_int_equal(o.pkt[0].u.ack.packet_id, 7);

        p = publish((enum m2m_mqtt_version)v, "in/2", 2, 8, "q2");
        feed_pkt(c, 2000, &p);
        ev = expect_ev(c, M2M_MQTT_CEV_PUBLISH);
        assert_int_equal(ev.publish->qos, 2);
        drain(c, (enum m2m_mqtt_version)v, &o);
        assert_int_equal(o.pkt[0].type, M2M_MQTT_PUBREC);
        p.u.publish.dup = true;
        feed_pkt(c, 2000, &p);
        expect_none(c); /* not delivered twice */
        drain(c, (enum m2m_mqtt_version)v, &o);
        assert_int_equal(o.n, 1);
        assert_int_equal(o.pkt[0].type, M2M_MQTT_PUBREC);
        struct m2m_mqtt_packet rel = ack((enum m2m_mqtt_version)v, M2M_MQTT_PUBREL, 8, 0);
        feed_pkt(c, 2000, &rel);
        drain(c, (enum m2m_mqtt_version)v, &o);
        assert_int_equal(o.n, 1);
        assert_int_equal(o.pkt[0].type, M2M_MQTT_PUBCOMP);
        assert_int_equal(o.pkt[0].u.ack.packet_id, 8);
        assert_int_equal(o.pkt[0].u.ack.rc, 0);
        /* After PUBREL the id is free: the same id is a new message. */
        feed_pkt(c, 2000, &p);
        expect_ev(c, M2M_MQTT_CEV_PUBLISH);
        m2m_mqtt_client_free(c);
    }
}

/* More unreleased inbound QoS 2 messages than our Receive Maximum: closed
 * with 0x93 Receive Maximum exceeded (§3.3.4). */
/* Inbound QoS 2 beyond our Receive Maximum is not cut off: mosquitto 2.0
 * frees its quota at our PUBREC, so many may await their PUBREL (seen with
 * 300-message bursts under load); each is delivered once and completed. */
static void test_receive_maximum_in(void **state)
{
    (void)state;
    struct m2m_mqtt_client_config cfg = base_cfg(V5);
    cfg.receive_maximum = 2;
    struct m2m_mqtt_client *c = open_client(&cfg, NULL);
    for (uint16_t id = 1; id <= 20; id++) {
        struct m2m_mqtt_packet p = publish(V5, "t", 2, id, "x");
        feed_pkt(c, 2000, &p);
    }
    for (uint16_t id = 1; id <= 20; id++)
        expect_ev(c, M2M_MQTT_CEV_PUBLISH);
    struct m2m_mqtt_packet dup = publish(V5, "t", 2, 7, "x");
    dup.u.publish.dup = true;
    feed_pkt(c, 2000, &dup); /* known id: PUBREC again, no second delivery */
    struct m2m_mqtt_client_event ev;
    assert_false(m2m_mqtt_client_poll_event(c, &ev));
    struct outp o;
    drain(c, V5, &o);
    assert_int_equal(o.n, 21);
    for (size_t i = 0; i < o.n; i++)
        assert_int_equal(o.pkt[i].type, M2M_MQTT_PUBREC);
    for (uint16_t id = 1; id <= 20; id++) {
        struct m2m_mqtt_packet rel = ack(V5, M2M_MQTT_PUBREL, id, 0);
        feed_pkt(c, 2100, &rel);
    }
    drain(c, V5, &o);
    assert_int_equal(o.n, 20);
    assert_int_equal(o.pkt[19].type, M2M_MQTT_PUBCOMP);
    m2m_mqtt_client_free(c);
}

/* ---- session resumption ---------------------------------------------------- */

/* [MQTT-4.4.0-1]: on a new connection with a session present, unacknowledged
 * PUBLISH packets go again with DUP [MQTT-3.3.1-1] and their original packet
 * ids, PUBREL for QoS 2 messages already received, in the original order. */
static void test_resend_after_reconnect(void **state)
{
    (void)state;
    for (int v = V3; v <= V5; v++) {
        struct m2m_mqtt_client_config cfg = base_cfg((enum m2m_mqtt_version)v);
        cfg.clean_start = false;
        struct m2m_mqtt_client *c = open_client(&cfg, NULL);
        uint16_t a = 0, b = 0, d = 0;
        assert_int_equal(m2m_mqtt_client_publish(c, 2000, S("r/a"), S("A"), 1, false, NULL, &a), 0);
        assert_int_equal(m2m_mqtt_client_publish(c, 2000, S("r/b"), S("B"), 2, false, NULL, &b), 0);
        assert_int_equal(m2m_mqtt_client_publish(c, 2000, S("r/d"), S("D"), 2, false, NULL, &d), 0);
        struct outp o;
        drain(c, (enum m2m_mqtt_version)v, &o);
        assert_int_equal(o.n, 3);
        struct m2m_mqtt_packet rec = ack((enum m2m_mqtt_version)v, M2M_MQTT_PUBREC, b, 0);
        feed_pkt(c, 2100, &rec);
        drain(c, (enum m2m_mqtt_version)v, &o); /* PUBREL b, lost with the connection */
        m2m_mqtt_client_transport_closed(c);
        struct m2m_mqtt_client_event ev = expect_ev(c, M2M_MQTT_CEV_CLOSED);
        assert_int_equal(ev.err, M2M_EIO);
        assert_int_equal(m2m_mqtt_client_pending(c), 3);
        /* QoS>0 may be queued while offline; QoS 0 may not. */
        assert_int_equal(m2m_mqtt_client_publish(c, 2200, S("r/z"), S("Z"), 0, false, NULL, NULL),
                         M2M_ESTATE);

        assert_int_equal(m2m_mqtt_client_connect(c, 3000), 0);
        drain(c, (enum m2m_mqtt_version)v, &o);
        assert_int_equal(o.n, 1);
        assert_false(o.pkt[0].u.connect.clean_start);
        struct m2m_mqtt_packet ca = connack((enum m2m_mqtt_version)v, true, 0);
        feed_pkt(c, 3100, &ca);
        ev = expect_ev(c, M2M_MQTT_CEV_CONNACK);
        assert_true(ev.session_present);
        drain(c, (enum m2m_mqtt_version)v, &o);
        assert_int_equal(o.n, 3);
        assert_int_equal(o.pkt[0].type, M2M_MQTT_PUBLISH);
        assert_true(o.pkt[0].u.publish.dup);
        assert_int_equal(o.pkt[0].u.publish.packet_id, a);
        assert_true(slice_is(o.pkt[0].u.publish.topic, "r/a"));
        assert_int_equal(o.pkt[1].type, M2M_MQTT_PUBREL);
        assert_int_equal(o.pkt[1].u.ack.packet_id, b);
        assert_int_equal(o.pkt[2].type, M2M_MQTT_PUBLISH);
        assert_true(o.pkt[2].u.publish.dup);
        assert_int_equal(o.pkt[2].u.publish.packet_id, d);
        assert_true(slice_is(o.pkt[2].u.publish.payload, "D"));
        m2m_mqtt_client_free(c);
    }
}

/* Without a session on the server, messages go again as new ones (no DUP)
 * and QoS 2 messages the server had received are complete. */
static void test_reconnect_without_session(void **state)
{
    (void)state;
    struct m2m_mqtt_client_config cfg = base_cfg(V5);
    struct m2m_mqtt_client *c = open_client(&cfg, NULL);
    uint16_t a = 0, b = 0;
    assert_int_equal(m2m_mqtt_client_publish(c, 2000, S("r/a"), S("A"), 1, false, NULL, &a), 0);
    assert_int_equal(m2m_mqtt_client_publish(c, 2000, S("r/b"), S("B"), 2, false, NULL, &b), 0);
    struct m2m_mqtt_packet rec = ack(V5, M2M_MQTT_PUBREC, b, 0);
    feed_pkt(c, 2100, &rec);
    struct outp o;
    drain(c, V5, &o);
    m2m_mqtt_client_transport_closed(c);
    expect_ev(c, M2M_MQTT_CEV_CLOSED);
    assert_int_equal(m2m_mqtt_client_connect(c, 3000), 0);
    drain(c, V5, &o);
    struct m2m_mqtt_packet ca = connack(V5, false, 0);
    feed_pkt(c, 3100, &ca);
    expect_ev(c, M2M_MQTT_CEV_CONNACK);
    struct m2m_mqtt_client_event ev = expect_ev(c, M2M_MQTT_CEV_PUBLISH_DONE);
    assert_int_equal(ev.packet_id, b);
    drain(c, V5, &o);
    assert_int_equal(o.n, 1);
    assert_false(o.pkt[0].u.publish.dup);
    assert_int_equal(o.pkt[0].u.publish.packet_id, a);
    m2m_mqtt_client_free(c);
}

/* ---- flow control ---------------------------------------------------------- */

/* The server's Receive Maximum is the outbound window [MQTT-3.3.4-7]:
 * beyond it messages wait, and go as acks free the window. max_queued caps
 * what waits. */
static void test_receive_maximum_window(void **state)
{
    (void)state;
    struct m2m_mqtt_client_config cfg = base_cfg(V5);
    cfg.max_queued = 5;
    struct m2m_mqtt_props pr;
    memset(&pr, 0, sizeof pr);
    pr.receive_maximum = 2;
    m2m_mqtt_props_set(&pr, M2M_MQTT_P_RECEIVE_MAXIMUM);
    struct m2m_mqtt_client *c = open_client(&cfg, &pr);
    uint16_t ids[5];
    for (int i = 0; i < 5; i++)
        assert_int_equal(m2m_mqtt_client_publish(c, 2000, S("w"), S("x"), 1, false, NULL, &ids[i]), 0);
    assert_int_equal(m2m_mqtt_client_publish(c, 2000, S("w"), S("x"), 1, false, NULL, NULL), M2M_ELIMIT);
    /* QoS 0 is not counted by Receive Maximum. */
    assert_int_equal(m2m_mqtt_client_publish(c, 2000, S("w"), S("q0"), 0, false, NULL, NULL), 0);
    struct outp o;
    drain(c, V5, &o);
    assert_int_equal(o.n, 3);
    assert_int_equal(o.pkt[0].u.publish.packet_id, ids[0]);
    assert_int_equal(o.pkt[1].u.publish.packet_id, ids[1]);
    assert_int_equal(o.pkt[2].u.publish.qos, 0);
    struct m2m_mqtt_packet a = ack(V5, M2M_MQTT_PUBACK, ids[1], 0);
    feed_pkt(c, 2100, &a);
    drain(c, V5, &o);
    assert_int_equal(o.n, 1);
    assert_int_equal(o.pkt[0].u.publish.packet_id, ids[2]);
    a = ack(V5, M2M_MQTT_PUBACK, ids[0], 0);
    feed_pkt(c, 2100, &a);
    a = ack(V5, M2M_MQTT_PUBACK, ids[2], 0);
    feed_pkt(c, 2100, &a);
    drain(c, V5, &o);
    assert_int_equal(o.n, 2);
    assert_int_equal(o.pkt[0].u.publish.packet_id, ids[3]);
    assert_int_equal(o.pkt[1].u.publish.packet_id, ids[4]);
    m2m_mqtt_client_free(c);
}

/* ---- topic aliases ---------------------------------------------------------- */

/* Outbound aliases up to the server's Topic Alias Maximum [MQTT-3.2.2-17]:
 * the first use carries topic and alias, later ones an empty topic; a topic
 * beyond the maximum goes without alias; mappings do not survive the
 * connection [MQTT-3.3.2-7]. No alias when the server allows none. */
static void test_topic_alias_out(void **state)
{
    (void)state;
    struct m2m_mqtt_client_config cfg = base_cfg(V5);
    cfg.topic_aliases = true;
    struct m2m_mqtt_props pr;
    memset(&pr, 0, sizeof pr);
    pr.topic_alias_maximum = 1;
    m2m_mqtt_props_set(&pr, M2M_MQTT_P_TOPIC_ALIAS_MAXIMUM);
    struct m2m_mqtt_client *c = open_client(&cfg, &pr);
    uint16_t id = 0;
    assert_int_equal(m2m_mqtt_client_publish(c, 2000, S("long/topic/name"), S("1"), 0, false, NULL, NULL), 0);
    assert_int_equal(m2m_mqtt_client_publish(c, 2000, S("long/topic/name"), S("2"), 1, false, NULL, &id), 0);
    assert_int_equal(m2m_mqtt_client_publish(c, 2000, S("other"), S("3"), 0, false, NULL, NULL), 0);
    struct outp o;
    drain(c, V5, &o);
    assert_int_equal(o.n, 3);
    assert_true(slice_is(o.pkt[0].u.publish.topic, "long/topic/name"));
    assert_int_equal(o.pkt[0].u.publish.props.topic_alias, 1);
    assert_int_equal(o.pkt[1].u.publish.topic.n, 0);
    assert_int_equal(o.pkt[1].u.publish.props.topic_alias, 1);
    assert_true(slice_is(o.pkt[1].u.publish.payload, "2"));
    assert_true(slice_is(o.pkt[2].u.publish.topic, "other"));
    assert_false(m2m_mqtt_props_has(&o.pkt[2].u.publish.props, M2M_MQTT_P_TOPIC_ALIAS));
    /* Reconnect with the session: the resent message names its topic again. */
    m2m_mqtt_client_transport_closed(c);
    expect_ev(c, M2M_MQTT_CEV_CLOSED);
    assert_int_equal(m2m_mqtt_client_connect(c, 3000), 0);
    drain(c, V5, &o);
    struct m2m_mqtt_packet ca = connack(V5, true, 0);
    ca.u.connack.props = pr;
    feed_pkt(c, 3000, &ca);
    expect_ev(c, M2M_MQTT_CEV_CONNACK);
    drain(c, V5, &o);
    assert_int_equal(o.n, 1);
    assert_true(o.pkt[0].u.publish.dup);
    assert_true(slice_is(o.pkt[0].u.publish.topic, "long/topic/name"));
    assert_int_equal(o.pkt[0].u.publish.props.topic_alias, 1);
    m2m_mqtt_client_free(c);

    /* A server without Topic Alias Maximum gets none [MQTT-3.2.2-18]. */
    c = open_client(&cfg, NULL);
    assert_int_equal(m2m_mqtt_client_publish(c, 2000, S("t"), S("1"), 0, false, NULL, NULL), 0);
    assert_int_equal(m2m_mqtt_client_publish(c, 2000, S("t"), S("2"), 0, false, NULL, NULL), 0);
    drain(c, V5, &o);
    for (size_t i = 0; i < o.n; i++) {
        assert_true(slice_is(o.pkt[i].u.publish.topic, "t"));
        assert_false(m2m_mqtt_props_has(&o.pkt[i].u.publish.props, M2M_MQTT_P_TOPIC_ALIAS));
    }
    m2m_mqtt_client_free(c);
}

static struct m2m_mqtt_packet aliased(const char *topic, uint16_t alias, const char *payload)
{
    struct m2m_mqtt_packet p = publish(V5, topic, 0, 0, payload);
    p.u.publish.props.topic_alias = alias;
    m2m_mqtt_props_set(&p.u.publish.props, M2M_MQTT_P_TOPIC_ALIAS);
    return p;
}

/* Inbound aliases within our Topic Alias Maximum; an alias above it
 * [MQTT-3.1.2-26] closes with 0x94, an unknown alias with an empty topic
 * with 0x82. */
static void test_topic_alias_in(void **state)
{
    (void)state;
    struct m2m_mqtt_client_config cfg = base_cfg(V5);
    cfg.topic_alias_maximum = 2;
    struct m2m_mqtt_client *c = open_client(&cfg, NULL);
    struct m2m_mqtt_packet p = aliased("sensors/t1", 1, "20");
    feed_pkt(c, 2000, &p);
    p = aliased("", 1, "21");
    feed_pkt(c, 2000, &p);
    struct m2m_mqtt_client_event ev = expect_ev(c, M2M_MQTT_CEV_PUBLISH);
    assert_true(slice_is(ev.publish->topic, "sensors/t1"));
    ev = expect_ev(c, M2M_MQTT_CEV_PUBLISH);
    assert_true(slice_is(ev.publish->topic, "sensors/t1"));
    assert_true(slice_is(ev.publish->payload, "21"));
    p = aliased("x", 3, "no");
    feed_pkt(c, 2000, &p);
    ev = expect_ev(c, M2M_MQTT_CEV_CLOSED);
    assert_int_equal(ev.err, M2M_EMALFORMED);
    assert_int_equal(ev.reason, M2M_MQTT_RC_TOPIC_ALIAS_INVALID);
    struct outp o;
    drain(c, V5, &o);
    assert_int_equal(o.pkt[0].type, M2M_MQTT_DISCONNECT);
    assert_int_equal(o.pkt[0].u.disconnect.rc, M2M_MQTT_RC_TOPIC_ALIAS_INVALID);
    m2m_mqtt_client_free(c);

    c = open_client(&cfg, NULL);
    p = aliased("", 2, "unknown");
    feed_pkt(c, 2000, &p);
    ev = expect_ev(c, M2M_MQTT_CEV_CLOSED);
    assert_int_equal(ev.reason, M2M_MQTT_RC_PROTOCOL_ERROR);
    m2m_mqtt_client_free(c);
}

/* ---- keep alive ------------------------------------------------------------- */

/* PINGREQ after Keep Alive seconds without sending (§3.1.2.10), PINGRESP
 * re-arms; no PINGRESP within ping_timeout_ms closes with M2M_ETIMEDOUT. */
static void test_keep_alive(void **state)
{
    (void)state;
    struct m2m_mqtt_client_config cfg = base_cfg(V3);
    cfg.keep_alive = 10;
    cfg.ping_timeout_ms = 4000;
    struct m2m_mqtt_client *c = open_client(&cfg, NULL);
    assert_int_equal(m2m_mqtt_client_next_timeout(c), 1000 + 10000);
    /* Sending resets the keep-alive clock. */
    assert_int_equal(m2m_mqtt_client_publish(c, 5000, S("k"), S("x"), 0, false, NULL, NULL), 0);
    assert_int_equal(m2m_mqtt_client_next_timeout(c), 15000);
    struct outp o;
    drain(c, V3, &o);
    m2m_mqtt_client_on_timeout(c, 14999);
    drain(c, V3, &o);
    assert_int_equal(o.n, 0);
    m2m_mqtt_client_on_timeout(c, 15000);
    drain(c, V3, &o);
    assert_int_equal(o.n, 1);
    assert_int_equal(o.pkt[0].type, M2M_MQTT_PINGREQ);
    assert_int_equal(m2m_mqtt_client_next_timeout(c), 19000);
    static const uint8_t pingresp[] = {0xd0, 0x00};
    feed_hex(c, 16000, pingresp, sizeof pingresp);
    assert_int_equal(m2m_mqtt_client_next_timeout(c), 25000);
    m2m_mqtt_client_on_timeout(c, 25000);
    drain(c, V3, &o);
    assert_int_equal(o.pkt[0].type, M2M_MQTT_PINGREQ);
    m2m_mqtt_client_on_timeout(c, 29000);
    struct m2m_mqtt_client_event ev = expect_ev(c, M2M_MQTT_CEV_CLOSED);
    assert_int_equal(ev.err, M2M_ETIMEDOUT);
    assert_false(m2m_mqtt_client_connected(c));
    m2m_mqtt_client_free(c);
}

/* ---- malformed and unexpected server input ------------------------------------ */

struct bad_case {
    enum m2m_mqtt_version v;
    const char *name;
    uint8_t bytes[16];
    size_t n;
    int err;
    uint8_t reason; /* v5 DISCONNECT reason, 0: closed without one */
};

static void test_malformed(void **state)
{
    (void)state;
    static const struct bad_case cases[] = {
        {V5, "reserved type 0", {0x00, 0x00}, 2, M2M_EMALFORMED, M2M_MQTT_RC_MALFORMED_PACKET},
        {V5, "PUBLISH QoS 3", {0x36, 0x03, 0x00, 0x01, 'a'}, 5, M2M_EMALFORMED, M2M_MQTT_RC_MALFORMED_PACKET},
        {V5, "second CONNACK", {0x20, 0x03, 0x00, 0x00, 0x00}, 5, M2M_EMALFORMED, M2M_MQTT_RC_PROTOCOL_ERROR},
        {V5,
         "SUBSCRIBE from the server",
         {0x82, 0x06, 0x00, 0x01, 0x00, 0x00, 0x01, 'a'},
         8,
         M2M_EMALFORMED,
         0},
        {V5, "PINGREQ from the server", {0xc0, 0x00}, 2, M2M_EMALFORMED, M2M_MQTT_RC_PROTOCOL_ERROR},
        {V5,
         "SUBACK for nothing",
         {0x90, 0x04, 0x00, 0x09, 0x00, 0x00},
         6,
         M2M_EMALFORMED,
         M2M_MQTT_RC_PROTOCOL_ERROR},
        {V5,
         "bad remaining length",
         {0x30, 0xff, 0xff, 0xff, 0xff, 0x01},
         6,
         M2M_EMALFORMED,
         M2M_MQTT_RC_MALFORMED_PACKET},
        {V5,
         "over Maximum Packet Size",
         {0x30, 0xff, 0xff, 0x03},
         4,
         M2M_ELIMIT,
         M2M_MQTT_RC_PACKET_TOO_LARGE},
        {V3, "3.1.1 reserved type 0", {0x00, 0x00}, 2, M2M_EMALFORMED, 0},
        {V3, "3.1.1 DISCONNECT from the server", {0xe0, 0x00}, 2, M2M_EMALFORMED, 0},
        {V3, "3.1.1 PUBACK with flags", {0x42, 0x02, 0x00, 0x01}, 4, M2M_EMALFORMED, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const struct bad_case *k = &cases[i];
        struct m2m_mqtt_client_config cfg = base_cfg(k->v);
        cfg.max_packet_size = 4096;
        struct m2m_mqtt_client *c = open_client(&cfg, NULL);
        feed_hex(c, 2000, k->bytes, k->n);
        struct m2m_mqtt_client_event ev;
        assert_true(m2m_mqtt_client_poll_event(c, &ev));
        if (ev.type != M2M_MQTT_CEV_CLOSED)
            fail_msg("%s: event %d instead of CLOSED", k->name, ev.type);
        if (ev.err != k->err)
            fail_msg("%s: err %d, want %d", k->name, ev.err, k->err);
        struct outp o;
        drain(c, k->v, &o);
        if (k->v == V3) {
            assert_int_equal(o.n, 0); /* 3.1.1: just close */
        } else if (k->reason) {
            assert_int_equal(ev.reason, k->reason);
            assert_int_equal(o.n, 1);
            assert_int_equal(o.pkt[0].type, M2M_MQTT_DISCONNECT);
            assert_int_equal(o.pkt[0].u.disconnect.rc, k->reason);
        } else {
            assert_true(ev.reason >= 0x80); /* some DISCONNECT reason */
        }
        assert_int_equal(m2m_mqtt_client_feed(c, 2000, k->bytes, k->n), M2M_ESTATE);
        m2m_mqtt_client_free(c);
    }
    /* Before CONNACK, anything else ends the attempt (§3.2). */
    struct m2m_mqtt_client_config cfg = base_cfg(V5);
    struct m2m_mqtt_client *c = m2m_mqtt_client_new(&cfg);
    assert_int_equal(m2m_mqtt_client_connect(c, 0), 0);
    struct m2m_mqtt_packet p = publish(V5, "early", 0, 0, "x");
    feed_pkt(c, 1, &p);
    struct m2m_mqtt_client_event ev = expect_ev(c, M2M_MQTT_CEV_CLOSED);
    assert_int_equal(ev.err, M2M_EMALFORMED);
    m2m_mqtt_client_free(c);
}

/* ---- SUBSCRIBE, UNSUBSCRIBE, DISCONNECT ---------------------------------------- */

static void test_subscribe(void **state)
{
    (void)state;
    struct m2m_mqtt_client_config cfg = base_cfg(V5);
    struct m2m_mqtt_client *c = open_client(&cfg, NULL);
    struct m2m_mqtt_subscription subs[2] = {
        {.filter = S("a/+"), .qos = 1, .no_local = true, .retain_as_published = true, .retain_handling = 2},
        {.filter = S("b/#"), .qos = 2}};
    struct m2m_mqtt_props pr;
    memset(&pr, 0, sizeof pr);
    pr.nsubid = 1;
    pr.subid[0] = 77;
    m2m_mqtt_props_set(&pr, M2M_MQTT_P_SUBSCRIPTION_ID);
    uint16_t sid = 0, uid = 0;
    assert_int_equal(m2m_mqtt_client_subscribe(c, 2000, subs, 2, &pr, &sid), 0);
    struct outp o;
    drain(c, V5, &o);
    assert_int_equal(o.pkt[0].type, M2M_MQTT_SUBSCRIBE);
    const struct m2m_mqtt_subscribe *s = &o.pkt[0].u.subscribe;
    assert_int_equal(s->packet_id, sid);
    assert_int_equal(s->n, 2);
    assert_true(s->sub[0].no_local && s->sub[0].retain_as_published);
    assert_int_equal(s->sub[0].retain_handling, 2);
    assert_int_equal(s->sub[1].qos, 2);
    assert_int_equal(s->props.subid[0], 77);
    struct m2m_mqtt_packet sa;
    m2m_mqtt_packet_init(&sa, M2M_MQTT_SUBACK, V5);
    sa.u.suback.packet_id = sid;
    sa.u.suback.n = 2;
    sa.u.suback.rc[0] = 1;
    sa.u.suback.rc[1] = M2M_MQTT_RC_NOT_AUTHORIZED;
    feed_pkt(c, 2100, &sa);
    struct m2m_mqtt_client_event ev = expect_ev(c, M2M_MQTT_CEV_SUBACK);
    assert_int_equal(ev.packet_id, sid);
    assert_int_equal(ev.n, 2);
    assert_int_equal(ev.codes[0], 1);
    assert_int_equal(ev.codes[1], M2M_MQTT_RC_NOT_AUTHORIZED);

    struct m2m_slice f = S("a/+");
    assert_int_equal(m2m_mqtt_client_unsubscribe(c, 2200, &f, 1, NULL, &uid), 0);
    assert_int_not_equal(uid, sid);
    drain(c, V5, &o);
    assert_int_equal(o.pkt[0].type, M2M_MQTT_UNSUBSCRIBE);
    m2m_mqtt_packet_init(&sa, M2M_MQTT_UNSUBACK, V5);
    sa.u.suback.packet_id = uid;
    sa.u.suback.n = 1;
    feed_pkt(c, 2300, &sa);
    ev = expect_ev(c, M2M_MQTT_CEV_UNSUBACK);
    assert_int_equal(ev.packet_id, uid);
    struct m2m_mqtt_subscription bad = {.filter = S("a/#/b")};
    assert_int_equal(m2m_mqtt_client_subscribe(c, 2300, &bad, 1, NULL, NULL), M2M_EINVAL);
    m2m_mqtt_client_free(c);
}

/* Our DISCONNECT carries the v5 reason and Session Expiry; a server
 * DISCONNECT surfaces with its reason and is not answered (§3.14). */
static void test_disconnect(void **state)
{
    (void)state;
    struct m2m_mqtt_client_config cfg = base_cfg(V5);
    struct m2m_mqtt_client *c = open_client(&cfg, NULL);
    struct m2m_mqtt_props pr;
    memset(&pr, 0, sizeof pr);
    pr.session_expiry = 120;
    m2m_mqtt_props_set(&pr, M2M_MQTT_P_SESSION_EXPIRY);
    assert_int_equal(m2m_mqtt_client_disconnect(c, 2000, M2M_MQTT_RC_DISCONNECT_WITH_WILL, &pr), 0);
    struct m2m_mqtt_client_event ev = expect_ev(c, M2M_MQTT_CEV_CLOSED);
    assert_int_equal(ev.err, 0);
    struct outp o;
    drain(c, V5, &o);
    assert_int_equal(o.pkt[0].type, M2M_MQTT_DISCONNECT);
    assert_int_equal(o.pkt[0].u.disconnect.rc, M2M_MQTT_RC_DISCONNECT_WITH_WILL);
    assert_int_equal(o.pkt[0].u.disconnect.props.session_expiry, 120);
    assert_int_equal(m2m_mqtt_client_disconnect(c, 2000, 0, NULL), M2M_ESTATE);
    m2m_mqtt_client_free(c);

    c = open_client(&cfg, NULL);
    struct m2m_mqtt_packet d;
    m2m_mqtt_packet_init(&d, M2M_MQTT_DISCONNECT, V5);
    d.u.disconnect.rc = M2M_MQTT_RC_SESSION_TAKEN_OVER;
    d.u.disconnect.props.reason_string = S("another client");
    m2m_mqtt_props_set(&d.u.disconnect.props, M2M_MQTT_P_REASON_STRING);
    feed_pkt(c, 2000, &d);
    ev = expect_ev(c, M2M_MQTT_CEV_DISCONNECT);
    assert_int_equal(ev.reason, M2M_MQTT_RC_SESSION_TAKEN_OVER);
    assert_true(slice_is(ev.props->reason_string, "another client"));
    ev = expect_ev(c, M2M_MQTT_CEV_CLOSED);
    assert_int_equal(ev.err, M2M_ERESET);
    drain(c, V5, &o);
    assert_int_equal(o.n, 0);
    m2m_mqtt_client_free(c);
}

/* ---- split input at every byte ------------------------------------------------- */

/* One server transcript; the events and the client's answers must be the
 * same however the stream is cut. Returns a digest of both. */
struct transcript {
    uint8_t b[512];
    size_t n;
};

static void build_transcript(struct transcript *t, uint16_t sid)
{
    struct m2m_mqtt_packet pk[5];
    m2m_mqtt_packet_init(&pk[0], M2M_MQTT_SUBACK, V5);
    pk[0].u.suback.packet_id = sid;
    pk[0].u.suback.n = 1;
    pk[0].u.suback.rc[0] = 1;
    pk[1] = publish(V5, "s/1", 1, 5, "first");
    pk[2] = aliased("s/long/topic", 1, "second");
    pk[3] = publish(V5, "s/2", 2, 6, "third");
    pk[4] = ack(V5, M2M_MQTT_PUBREL, 6, 0);
    t->n = 0;
    for (int i = 0; i < 5; i++)
        t->n += enc(&pk[i], t->b + t->n, sizeof t->b - t->n);
}

struct digest {
    char ev[256];
    uint8_t out[512];
    size_t out_len;
};

static void collect(struct m2m_mqtt_client *c, struct digest *d)
{
    struct m2m_mqtt_client_event ev;
    while (m2m_mqtt_client_poll_event(c, &ev)) {
        char line[64];
        if (ev.type == M2M_MQTT_CEV_PUBLISH)
            snprintf(line, sizeof line, "P%.*s=%.*s;", (int)ev.publish->topic.n, ev.publish->topic.p,
                     (int)ev.publish->payload.n, ev.publish->payload.p);
        else
            snprintf(line, sizeof line, "E%d;", ev.type);
        strncat(d->ev, line, sizeof d->ev - strlen(d->ev) - 1);
    }
    const uint8_t *p;
    size_t n;
    while (m2m_mqtt_client_poll_output(c, &p, &n)) {
        assert_true(d->out_len + n <= sizeof d->out);
        memcpy(d->out + d->out_len, p, n);
        d->out_len += n;
    }
}

/* CONNACK, then SUBSCRIBE, then the transcript: the first cut1 bytes in one
 * piece, the rest in `step`-byte pieces. */
static void run_split(const struct transcript *t, size_t cut1, size_t step, struct digest *d)
{
    struct m2m_mqtt_client_config cfg = base_cfg(V5);
    cfg.topic_alias_maximum = 4;
    struct m2m_mqtt_client *c = m2m_mqtt_client_new(&cfg);
    memset(d, 0, sizeof *d);
    assert_int_equal(m2m_mqtt_client_connect(c, 0), 0);
    const uint8_t *p;
    size_t n;
    while (m2m_mqtt_client_poll_output(c, &p, &n)) {
    }
    struct m2m_mqtt_packet ca = connack(V5, false, 0);
    feed_pkt(c, 5, &ca);
    struct m2m_mqtt_subscription s = {.filter = S("s/#"), .qos = 2};
    uint16_t id;
    assert_int_equal(m2m_mqtt_client_subscribe(c, 10, &s, 1, NULL, &id), 0);
    assert_int_equal(id, 1);
    size_t off = 0;
    while (off < t->n) {
        size_t k = off < cut1 ? cut1 - off : step;
        if (k > t->n - off)
            k = t->n - off;
        assert_int_equal(m2m_mqtt_client_feed(c, 10, t->b + off, k), 0);
        off += k;
        collect(c, d);
    }
    collect(c, d);
    assert_true(m2m_mqtt_client_connected(c));
    m2m_mqtt_client_free(c);
}

static void test_split_every_byte(void **state)
{
    (void)state;
    struct transcript t;
    build_transcript(&t, 1);
    struct digest whole, part;
    run_split(&t, t.n, 1, &whole);
    assert_string_equal(whole.ev, "E1;E5;Ps/1=first;Ps/long/topic=second;Ps/2=third;");
    for (size_t cut = 0; cut <= t.n; cut++) {
        run_split(&t, cut, t.n, &part); /* two pieces cut at `cut` */
        assert_string_equal(part.ev, whole.ev);
        assert_int_equal(part.out_len, whole.out_len);
        assert_memory_equal(part.out, whole.out, whole.out_len);
    }
    run_split(&t, 0, 1, &part); /* byte by byte */
    assert_string_equal(part.ev, whole.ev);
    assert_memory_equal(part.out, whole.out, whole.out_len);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_connect_v311),
        cmocka_unit_test(test_connect_v5_props),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_connack_timeout),
        cmocka_unit_test(test_qos_out),
        cmocka_unit_test(test_qos2_pubrec_failure),
        cmocka_unit_test(test_qos_in),
        cmocka_unit_test(test_receive_maximum_in),
        cmocka_unit_test(test_resend_after_reconnect),
        cmocka_unit_test(test_reconnect_without_session),
        cmocka_unit_test(test_receive_maximum_window),
        cmocka_unit_test(test_topic_alias_out),
        cmocka_unit_test(test_topic_alias_in),
        cmocka_unit_test(test_keep_alive),
        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_subscribe),
        cmocka_unit_test(test_disconnect),
        cmocka_unit_test(test_split_every_byte),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
