/* Broker-side MQTT session core: scripted clients in virtual time. Packets
 * are built with m2m_mqtt_encode, fed whole or split at every byte, and the
 * output is checked by decoding it again. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "m2m/mqtt.h"
#include "m2m/mqtt_session.h"

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

/* ---- a scripted client ---------------------------------------------------- */

static size_t enc(const struct m2m_mqtt_packet *pkt, uint8_t *buf, size_t cap)
{
    size_t len = 0;
    assert_int_equal(m2m_mqtt_encode(pkt, buf, cap, &len), 0);
    return len;
}

static void feed_pkt(struct m2m_mqtt_conn *c, m2m_time now, const struct m2m_mqtt_packet *pkt)
{
    uint8_t buf[4096];
    size_t len = enc(pkt, buf, sizeof buf);
    assert_int_equal(m2m_mqtt_conn_feed(c, now, buf, len), 0);
}

static struct m2m_mqtt_packet connect_pkt(enum m2m_mqtt_version v, uint16_t keep_alive, bool will)
{
    struct m2m_mqtt_packet p;
    m2m_mqtt_packet_init(&p, M2M_MQTT_CONNECT, v);
    p.u.connect.clean_start = true;
    p.u.connect.keep_alive = keep_alive;
    p.u.connect.client_id = S("dev1");
    if (will) {
        p.u.connect.will = true;
        p.u.connect.will_qos = 1;
        p.u.connect.will_topic = S("dev1/status");
        p.u.connect.will_payload = S("offline");
    }
    return p;
}

static struct m2m_mqtt_packet publish_pkt(enum m2m_mqtt_version v, const char *topic, uint8_t qos,
                                          uint16_t id)
{
    struct m2m_mqtt_packet p;
    m2m_mqtt_packet_init(&p, M2M_MQTT_PUBLISH, v);
    p.u.publish.topic = S(topic);
    p.u.publish.qos = qos;
    p.u.publish.packet_id = id;
    p.u.publish.payload = S("hello");
    return p;
}

static struct m2m_mqtt_packet ack_pkt(enum m2m_mqtt_version v, enum m2m_mqtt_type t, uint16_t id)
{
    struct m2m_mqtt_packet p;
    m2m_mqtt_packet_init(&p, t, v);
    p.u.ack.packet_id = id;
    return p;
}

/* Output decoded into packets; slices point into `raw`. */
struct outp {
    uint8_t raw[8192];
    size_t len;
    size_t n;
    struct m2m_mqtt_packet pkt[16];
};

static void drain(struct m2m_mqtt_conn *c, enum m2m_mqtt_version v, struct outp *o)
{
    const uint8_t *p;
    size_t n;
    o->len = 0;
    o->n = 0;
    while (m2m_mqtt_conn_poll_output(c, &p, &n)) {
        assert_true(o->len + n <= sizeof o->raw);
        memcpy(o->raw + o->len, p, n);
        o->len += n;
    }
    size_t off = 0;
    while (off < o->len) {
        size_t total = 0;
        assert_int_equal(m2m_mqtt_frame(o->raw + off, o->len - off, 0, &total), 0);
        assert_true(o->n < 16);
        assert_int_equal(m2m_mqtt_decode(&o->pkt[o->n], v, o->raw + off, total, NULL), 0);
        o->n++;
        off += total;
    }
}

static void expect_none(struct m2m_mqtt_conn *c)
{
    struct m2m_mqtt_conn_event ev;
    assert_false(m2m_mqtt_conn_poll_event(c, &ev));
}

static struct m2m_mqtt_conn_event expect_ev(struct m2m_mqtt_conn *c, enum m2m_mqtt_conn_event_type t)
{
    struct m2m_mqtt_conn_event ev;
    assert_true(m2m_mqtt_conn_poll_event(c, &ev));
    assert_int_equal(ev.type, t);
    return ev;
}

static const struct m2m_mqtt_conn_config base_cfg = {
    .start = 1000,
    .max_packet_size = 1024,
    .receive_maximum = 4,
    .topic_alias_maximum = 2,
    .max_inflight = 8,
    .connect_timeout_ms = 5000,
};

/* New connection, CONNECT fed and accepted, CONNACK drained. */
static struct m2m_mqtt_conn *open_conn(const struct m2m_mqtt_conn_config *cfg,
                                       const struct m2m_mqtt_packet *conn_pkt)
{
    struct m2m_mqtt_conn *c = m2m_mqtt_conn_new(cfg);
    assert_non_null(c);
    feed_pkt(c, cfg->start, conn_pkt);
    expect_ev(c, M2M_MQTT_EV_CONNECT);
    assert_int_equal(m2m_mqtt_conn_accept(c, false, NULL), 0);
    struct outp o;
    drain(c, (enum m2m_mqtt_version)conn_pkt->version, &o);
    assert_int_equal(o.n, 1);
    assert_int_equal(o.pkt[0].type, M2M_MQTT_CONNACK);
    return c;
}

static struct m2m_mqtt_conn *open_v(enum m2m_mqtt_version v, uint16_t ka, bool will)
{
    struct m2m_mqtt_packet p = connect_pkt(v, ka, will);
    return open_conn(&base_cfg, &p);
}

/* Expects a CLOSED event and, for v5, exactly one DISCONNECT with `reason`. */
static void expect_closed(struct m2m_mqtt_conn *c, enum m2m_mqtt_version v, uint8_t reason)
{
    struct outp o;
    drain(c, v, &o);
    if (v == V5 && reason) {
        assert_int_equal(o.n, 1);
        assert_int_equal(o.pkt[0].type, M2M_MQTT_DISCONNECT);
        assert_int_equal(o.pkt[0].u.disconnect.rc, reason);
    } else {
        assert_int_equal(o.n, 0);
    }
    struct m2m_mqtt_conn_event ev = expect_ev(c, M2M_MQTT_EV_CLOSED);
    assert_int_equal(ev.reason, v == V5 ? reason : 0);
    assert_int_equal(m2m_mqtt_conn_feed(c, 0, (const uint8_t *)"\xc0\x00", 2), M2M_ESTATE);
}

/* ---- CONNECT / CONNACK ---------------------------------------------------- */

static void test_accept_v311(void **state)
{
    (void)state;
    struct m2m_mqtt_conn *c = m2m_mqtt_conn_new(&base_cfg);
    struct m2m_mqtt_packet p = connect_pkt(V3, 60, true);
    feed_pkt(c, 1000, &p);
    struct m2m_mqtt_conn_event ev = expect_ev(c, M2M_MQTT_EV_CONNECT);
    assert_int_equal(ev.version, V3);
    assert_true(slice_is(ev.connect->client_id, "dev1"));
    assert_true(ev.connect->will);
    assert_true(slice_is(ev.connect->will_topic, "dev1/status"));
    assert_int_equal(ev.connect->keep_alive, 60);
    expect_none(c);
    /* session_present is forced to 0 for a clean session [MQTT-3.2.2-2]. */
    assert_int_equal(m2m_mqtt_conn_accept(c, true, NULL), 0);
    const uint8_t *out;
    size_t n;
    assert_true(m2m_mqtt_conn_poll_output(c, &out, &n));
    assert_int_equal(n, 4);
    assert_memory_equal(out, "\x20\x02\x00\x00", 4);
    assert_false(m2m_mqtt_conn_poll_output(c, &out, &n));
    assert_int_equal(m2m_mqtt_conn_accept(c, false, NULL), M2M_ESTATE);
    m2m_mqtt_conn_free(c);
}

static void test_accept_v5_props(void **state)
{
    (void)state;
    struct m2m_mqtt_conn_config cfg = base_cfg;
    cfg.max_keep_alive = 30;
    struct m2m_mqtt_conn *c = m2m_mqtt_conn_new(&cfg);
    struct m2m_mqtt_packet p = connect_pkt(V5, 600, false); /* asks for more than the cap */
    p.u.connect.client_id = S("");
    feed_pkt(c, 1000, &p);
    expect_ev(c, M2M_MQTT_EV_CONNECT);
    assert_int_equal(m2m_mqtt_conn_accept(c, false, "auto-1"), 0);
    struct outp o;
    drain(c, V5, &o);
    assert_int_equal(o.n, 1);
    const struct m2m_mqtt_connack *ca = &o.pkt[0].u.connack;
    assert_int_equal(ca->rc, 0);
    assert_false(ca->session_present);
    assert_int_equal(ca->props.receive_maximum, 4);
    assert_int_equal(ca->props.maximum_packet_size, 1024);
    assert_int_equal(ca->props.topic_alias_maximum, 2);
    assert_int_equal(ca->props.server_keep_alive, 30);
    assert_true(slice_is(ca->props.assigned_client_id, "auto-1"));
    /* The forced Server Keep Alive of 30 s governs [MQTT-3.2.2-21]. */
    assert_int_equal(m2m_mqtt_conn_next_timeout(c), 1000 + 45000);
    m2m_mqtt_conn_free(c);

    /* Within the cap: the client's own value, no Server Keep Alive. */
    c = m2m_mqtt_conn_new(&cfg);
    p = connect_pkt(V5, 20, false);
    feed_pkt(c, 1000, &p);
    expect_ev(c, M2M_MQTT_EV_CONNECT);
    assert_int_equal(m2m_mqtt_conn_accept(c, false, NULL), 0);
    drain(c, V5, &o);
    assert_false(m2m_mqtt_props_has(&o.pkt[0].u.connack.props, M2M_MQTT_P_SERVER_KEEP_ALIVE));
    assert_int_equal(m2m_mqtt_conn_next_timeout(c), 1000 + 30000);
    m2m_mqtt_conn_free(c);
}

static void test_refuse(void **state)
{
    (void)state;
    /* v3.1.1: 0x87 Not authorized maps to return code 5. */
    struct m2m_mqtt_conn *c = m2m_mqtt_conn_new(&base_cfg);
    struct m2m_mqtt_packet p = connect_pkt(V3, 60, true);
    feed_pkt(c, 1000, &p);
    expect_ev(c, M2M_MQTT_EV_CONNECT);
    assert_int_equal(m2m_mqtt_conn_refuse(c, M2M_MQTT_RC_NOT_AUTHORIZED), 0);
    const uint8_t *out;
    size_t n;
    assert_true(m2m_mqtt_conn_poll_output(c, &out, &n));
    assert_int_equal(n, 4);
    assert_memory_equal(out, "\x20\x02\x00\x05", 4);
    struct m2m_mqtt_conn_event ev = expect_ev(c, M2M_MQTT_EV_CLOSED);
    assert_false(ev.publish_will);
    m2m_mqtt_conn_free(c);

    c = m2m_mqtt_conn_new(&base_cfg);
    p = connect_pkt(V5, 60, false);
    feed_pkt(c, 1000, &p);
    expect_ev(c, M2M_MQTT_EV_CONNECT);
    assert_int_equal(m2m_mqtt_conn_refuse(c, M2M_MQTT_RC_NOT_AUTHORIZED), 0);
    struct outp o;
    drain(c, V5, &o);
    assert_int_equal(o.n, 1);
    assert_int_equal(o.pkt[0].u.connack.rc, 0x87);
    ev = expect_ev(c, M2M_MQTT_EV_CLOSED);
    assert_int_equal(ev.reason, 0x87);
    m2m_mqtt_conn_free(c);
}

/* [MQTT-3.1.0-1]: the first packet must be CONNECT; no answer, just close. */
static void test_first_packet_not_connect(void **state)
{
    (void)state;
    struct m2m_mqtt_conn *c = m2m_mqtt_conn_new(&base_cfg);
    assert_int_equal(m2m_mqtt_conn_feed(c, 1000, (const uint8_t *)"\xc0\x00", 2), 0);
    expect_closed(c, V5, 0);
    m2m_mqtt_conn_free(c);
}

/* [MQTT-3.1.0-2]: a second CONNECT is a protocol error. */
static void test_second_connect(void **state)
{
    (void)state;
    struct m2m_mqtt_conn *c = open_v(V5, 60, true);
    struct m2m_mqtt_packet p = connect_pkt(V5, 60, false);
    feed_pkt(c, 2000, &p);
    expect_closed(c, V5, M2M_MQTT_RC_PROTOCOL_ERROR);
    m2m_mqtt_conn_free(c);

    c = open_v(V3, 60, true);
    p = connect_pkt(V3, 60, false);
    feed_pkt(c, 2000, &p);
    expect_closed(c, V3, 0);
    m2m_mqtt_conn_free(c);
}

static void test_connect_timeout(void **state)
{
    (void)state;
    struct m2m_mqtt_conn *c = m2m_mqtt_conn_new(&base_cfg);
    assert_int_equal(m2m_mqtt_conn_next_timeout(c), 6000);
    /* Half a CONNECT does not stop the clock. */
    assert_int_equal(m2m_mqtt_conn_feed(c, 2000, (const uint8_t *)"\x10\x10", 2), 0);
    m2m_mqtt_conn_on_timeout(c, 5999);
    expect_none(c);
    m2m_mqtt_conn_on_timeout(c, 6000);
    struct m2m_mqtt_conn_event ev = expect_ev(c, M2M_MQTT_EV_CLOSED);
    assert_int_equal(ev.err, M2M_ETIMEDOUT);
    assert_int_equal(m2m_mqtt_conn_next_timeout(c), M2M_NEVER);
    m2m_mqtt_conn_free(c);
}

/* Unsupported protocol level: CONNACK return code 1, then close. */
static void test_unsupported_level(void **state)
{
    (void)state;
    static const uint8_t bad[] = {0x10, 0x0c, 0x00, 0x04, 'M',  'Q',  'T',
                                  'T',  0x07, 0x02, 0x00, 0x3c, 0x00, 0x00};
    struct m2m_mqtt_conn *c = m2m_mqtt_conn_new(&base_cfg);
    assert_int_equal(m2m_mqtt_conn_feed(c, 1000, bad, sizeof bad), 0);
    const uint8_t *out;
    size_t n;
    assert_true(m2m_mqtt_conn_poll_output(c, &out, &n));
    assert_int_equal(n, 4);
    assert_memory_equal(out, "\x20\x02\x00\x01", 4);
    expect_ev(c, M2M_MQTT_EV_CLOSED);
    m2m_mqtt_conn_free(c);
}

/* A CONNECT and a PUBLISH in one stream, split at every byte. Bytes that
 * arrive before the accept are only buffered. */
static void test_stream_split_every_byte(void **state)
{
    (void)state;
    uint8_t stream[512];
    struct m2m_mqtt_packet p = connect_pkt(V5, 60, false);
    size_t len = enc(&p, stream, sizeof stream);
    p = publish_pkt(V5, "a/b", 1, 7);
    len += enc(&p, stream + len, sizeof stream - len);
    for (size_t split = 0; split <= len; split++) {
        struct m2m_mqtt_conn *c = m2m_mqtt_conn_new(&base_cfg);
        size_t fed = 0;
        bool accepted = false, got_pub = false;
        while (fed < len || !accepted) {
            /* first `split` bytes one at a time, the rest at once */
            size_t k = fed < split ? 1 : len - fed;
            if (k)
                assert_int_equal(m2m_mqtt_conn_feed(c, 1000, stream + fed, k), 0);
            fed += k;
            struct m2m_mqtt_conn_event ev;
            while (m2m_mqtt_conn_poll_event(c, &ev)) {
                if (ev.type == M2M_MQTT_EV_CONNECT) {
                    assert_false(accepted);
                    assert_int_equal(m2m_mqtt_conn_accept(c, false, NULL), 0);
                    accepted = true;
                } else {
                    assert_int_equal(ev.type, M2M_MQTT_EV_PUBLISH);
                    assert_true(slice_is(ev.publish->topic, "a/b"));
                    assert_true(slice_is(ev.publish->payload, "hello"));
                    got_pub = true;
                }
            }
            if (fed == len && !accepted)
                fail();
        }
        struct m2m_mqtt_conn_event ev;
        if (m2m_mqtt_conn_poll_event(c, &ev)) {
            assert_int_equal(ev.type, M2M_MQTT_EV_PUBLISH);
            got_pub = true;
        }
        assert_true(got_pub);
        /* CONNACK goes out before anything else. */
        assert_int_equal(m2m_mqtt_conn_ack(c, 7, 0), 0);
        struct outp o;
        drain(c, V5, &o);
        assert_int_equal(o.n, 2);
        assert_int_equal(o.pkt[0].type, M2M_MQTT_CONNACK);
        assert_int_equal(o.pkt[1].type, M2M_MQTT_PUBACK);
        m2m_mqtt_conn_free(c);
    }
}

/* ---- keep alive ------------------------------------------------------------ */

/* [MQTT-3.1.2-24]: nothing within 1.5 x keep alive closes; exact boundary. */
static void test_keep_alive_boundary(void **state)
{
    (void)state;
    struct m2m_mqtt_conn *c = open_v(V5, 10, true);
    assert_int_equal(m2m_mqtt_conn_next_timeout(c), 1000 + 15000);
    /* A PINGREQ at 10 s restarts the window and gets a PINGRESP. */
    struct m2m_mqtt_packet ping;
    m2m_mqtt_packet_init(&ping, M2M_MQTT_PINGREQ, V5);
    feed_pkt(c, 11000, &ping);
    struct outp o;
    drain(c, V5, &o);
    assert_int_equal(o.n, 1);
    assert_int_equal(o.pkt[0].type, M2M_MQTT_PINGRESP);
    assert_int_equal(m2m_mqtt_conn_next_timeout(c), 26000);
    m2m_mqtt_conn_on_timeout(c, 25999);
    expect_none(c);
    drain(c, V5, &o);
    assert_int_equal(o.n, 0);
    m2m_mqtt_conn_on_timeout(c, 26000);
    drain(c, V5, &o);
    assert_int_equal(o.n, 1);
    assert_int_equal(o.pkt[0].u.disconnect.rc, M2M_MQTT_RC_KEEP_ALIVE_TIMEOUT);
    struct m2m_mqtt_conn_event ev = expect_ev(c, M2M_MQTT_EV_CLOSED);
    assert_int_equal(ev.err, M2M_ETIMEDOUT);
    assert_int_equal(ev.reason, 0x8d);
    assert_true(ev.publish_will); /* a keep-alive timeout publishes the will [MQTT-3.1.2-8] */
    m2m_mqtt_conn_free(c);

    /* Keep alive 0 switches the mechanism off. */
    c = open_v(V3, 0, false);
    assert_int_equal(m2m_mqtt_conn_next_timeout(c), M2M_NEVER);
    m2m_mqtt_conn_free(c);
}

/* ---- inbound PUBLISH --------------------------------------------------------- */

/* QoS 1: no PUBACK until the application acks (after persisting). */
static void test_qos1_inbound(void **state)
{
    (void)state;
    struct m2m_mqtt_conn *c = open_v(V3, 60, false);
    struct m2m_mqtt_packet p = publish_pkt(V3, "t", 1, 42);
    feed_pkt(c, 1100, &p);
    struct m2m_mqtt_conn_event ev = expect_ev(c, M2M_MQTT_EV_PUBLISH);
    assert_int_equal(ev.publish->qos, 1);
    assert_int_equal(ev.publish->packet_id, 42);
    struct outp o;
    drain(c, V3, &o);
    assert_int_equal(o.n, 0);
    assert_int_equal(m2m_mqtt_conn_ack(c, 43, 0), M2M_ENOTFOUND);
    assert_int_equal(m2m_mqtt_conn_ack(c, 42, 0), 0);
    drain(c, V3, &o);
    assert_int_equal(o.n, 1);
    assert_int_equal(o.pkt[0].type, M2M_MQTT_PUBACK);
    assert_int_equal(o.pkt[0].u.ack.packet_id, 42);
    assert_int_equal(m2m_mqtt_conn_ack(c, 42, 0), M2M_ENOTFOUND);
    m2m_mqtt_conn_free(c);
}

/* QoS 2 exactly once [MQTT-4.3.3-9..11]: a DUP retransmission before PUBREL
 * is not delivered again and gets PUBREC again; PUBREL -> PUBCOMP. */
static void test_qos2_inbound_exactly_once(void **state)
{
    (void)state;
    struct m2m_mqtt_conn *c = open_v(V5, 60, false);
    struct m2m_mqtt_packet p = publish_pkt(V5, "t", 2, 9);
    feed_pkt(c, 1100, &p);
    expect_ev(c, M2M_MQTT_EV_PUBLISH);
    /* Retransmission before the ack: still no second delivery, no answer. */
    p.u.publish.dup = true;
    feed_pkt(c, 1150, &p);
    expect_none(c);
    assert_int_equal(m2m_mqtt_conn_ack(c, 9, 0), 0);
    struct outp o;
    drain(c, V5, &o);
    assert_int_equal(o.n, 1);
    assert_int_equal(o.pkt[0].type, M2M_MQTT_PUBREC);
    /* Retransmission after PUBREC: PUBREC again, no event. */
    feed_pkt(c, 1200, &p);
    expect_none(c);
    drain(c, V5, &o);
    assert_int_equal(o.n, 1);
    assert_int_equal(o.pkt[0].type, M2M_MQTT_PUBREC);
    assert_int_equal(o.pkt[0].u.ack.packet_id, 9);
    struct m2m_mqtt_packet rel = ack_pkt(V5, M2M_MQTT_PUBREL, 9);
    feed_pkt(c, 1300, &rel);
    drain(c, V5, &o);
    assert_int_equal(o.n, 1);
    assert_int_equal(o.pkt[0].type, M2M_MQTT_PUBCOMP);
    assert_int_equal(o.pkt[0].u.ack.rc, 0);
    /* A second PUBREL: PUBCOMP with 0x92 Packet Identifier not found. */
    feed_pkt(c, 1400, &rel);
    drain(c, V5, &o);
    assert_int_equal(o.n, 1);
    assert_int_equal(o.pkt[0].u.ack.rc, M2M_MQTT_RC_PACKET_ID_NOT_FOUND);
    /* After PUBCOMP the id is free: a new message with it is delivered. */
    p.u.publish.dup = false;
    feed_pkt(c, 1500, &p);
    expect_ev(c, M2M_MQTT_EV_PUBLISH);
    m2m_mqtt_conn_free(c);
}

/* Our Receive Maximum (4) exceeded: DISCONNECT 0x93 [MQTT-3.3.4-9]. */
static void test_receive_maximum_exceeded(void **state)
{
    (void)state;
    struct m2m_mqtt_conn *c = open_v(V5, 60, false);
    for (uint16_t id = 1; id <= 4; id++) {
        struct m2m_mqtt_packet p = publish_pkt(V5, "t", 1, id);
        feed_pkt(c, 1100, &p);
        expect_ev(c, M2M_MQTT_EV_PUBLISH);
    }
    struct m2m_mqtt_packet p = publish_pkt(V5, "t", 1, 5);
    feed_pkt(c, 1100, &p);
    expect_closed(c, V5, M2M_MQTT_RC_RECEIVE_MAXIMUM_EXCEEDED);
    m2m_mqtt_conn_free(c);
}

/* Topic alias [MQTT-3.3.2-12]: set with a topic, then used with an empty one;
 * an alias over our maximum is 0x94 [MQTT-3.3.2-9]. */
static void test_topic_alias(void **state)
{
    (void)state;
    struct m2m_mqtt_conn *c = open_v(V5, 60, false);
    struct m2m_mqtt_packet p = publish_pkt(V5, "sensors/temp", 0, 0);
    p.u.publish.props.topic_alias = 2;
    m2m_mqtt_props_set(&p.u.publish.props, M2M_MQTT_P_TOPIC_ALIAS);
    feed_pkt(c, 1100, &p);
    struct m2m_mqtt_conn_event ev = expect_ev(c, M2M_MQTT_EV_PUBLISH);
    assert_true(slice_is(ev.publish->topic, "sensors/temp"));
    p.u.publish.topic = S("");
    feed_pkt(c, 1200, &p);
    ev = expect_ev(c, M2M_MQTT_EV_PUBLISH);
    assert_true(slice_is(ev.publish->topic, "sensors/temp"));
    /* An unset alias with an empty topic is a protocol error. */
    p.u.publish.props.topic_alias = 1;
    feed_pkt(c, 1300, &p);
    expect_closed(c, V5, M2M_MQTT_RC_PROTOCOL_ERROR);
    m2m_mqtt_conn_free(c);

    c = open_v(V5, 60, false);
    p = publish_pkt(V5, "x", 0, 0);
    p.u.publish.props.topic_alias = 3;
    m2m_mqtt_props_set(&p.u.publish.props, M2M_MQTT_P_TOPIC_ALIAS);
    feed_pkt(c, 1100, &p);
    expect_closed(c, V5, M2M_MQTT_RC_TOPIC_ALIAS_INVALID);
    m2m_mqtt_conn_free(c);
}

/* ---- SUBSCRIBE / UNSUBSCRIBE ------------------------------------------------- */

static void test_subscribe(void **state)
{
    (void)state;
    struct m2m_mqtt_conn *c = open_v(V3, 60, false);
    struct m2m_mqtt_packet p;
    m2m_mqtt_packet_init(&p, M2M_MQTT_SUBSCRIBE, V3);
    p.u.subscribe.packet_id = 3;
    p.u.subscribe.n = 2;
    p.u.subscribe.sub[0] = (struct m2m_mqtt_subscription){.filter = S("a/#"), .qos = 1};
    p.u.subscribe.sub[1] = (struct m2m_mqtt_subscription){.filter = S("b/+"), .qos = 2};
    feed_pkt(c, 1100, &p);
    struct m2m_mqtt_conn_event ev = expect_ev(c, M2M_MQTT_EV_SUBSCRIBE);
    assert_int_equal(ev.subscribe->n, 2);
    assert_true(slice_is(ev.subscribe->sub[1].filter, "b/+"));
    static const uint8_t codes[] = {1, 0x80};
    assert_int_equal(m2m_mqtt_conn_suback(c, 3, codes, 2), 0);
    struct outp o;
    drain(c, V3, &o);
    assert_int_equal(o.n, 1);
    assert_int_equal(o.pkt[0].type, M2M_MQTT_SUBACK);
    assert_int_equal(o.pkt[0].u.suback.n, 2);
    assert_int_equal(o.pkt[0].u.suback.rc[1], 0x80);

    m2m_mqtt_packet_init(&p, M2M_MQTT_UNSUBSCRIBE, V3);
    p.u.unsubscribe.packet_id = 4;
    p.u.unsubscribe.n = 1;
    p.u.unsubscribe.filter[0] = S("a/#");
    feed_pkt(c, 1200, &p);
    ev = expect_ev(c, M2M_MQTT_EV_UNSUBSCRIBE);
    assert_true(slice_is(ev.unsubscribe->filter[0], "a/#"));
    assert_int_equal(m2m_mqtt_conn_unsuback(c, 4, NULL, 0), 0);
    drain(c, V3, &o);
    assert_int_equal(o.n, 1);
    assert_int_equal(o.pkt[0].type, M2M_MQTT_UNSUBACK);
    assert_int_equal(o.pkt[0].u.suback.packet_id, 4);
    m2m_mqtt_conn_free(c);
}

/* ---- outbound PUBLISH -------------------------------------------------------- */

static void test_outbound_qos1_qos2(void **state)
{
    (void)state;
    struct m2m_mqtt_conn *c = open_v(V5, 60, false);
    uint16_t id1 = 0, id2 = 0;
    assert_int_equal(m2m_mqtt_conn_publish(c, 1100, S("o/1"), S("x"), 1, false, NULL, &id1), 0);
    assert_int_equal(m2m_mqtt_conn_publish(c, 1100, S("o/2"), S("y"), 2, true, NULL, &id2), 0);
    assert_int_not_equal(id1, 0);
    assert_int_not_equal(id1, id2);
    struct outp o;
    drain(c, V5, &o);
    assert_int_equal(o.n, 2);
    assert_int_equal(o.pkt[0].u.publish.qos, 1);
    assert_int_equal(o.pkt[1].u.publish.packet_id, id2);
    assert_true(o.pkt[1].u.publish.retain);

    struct m2m_mqtt_packet a = ack_pkt(V5, M2M_MQTT_PUBACK, id1);
    feed_pkt(c, 1200, &a);
    struct m2m_mqtt_conn_event ev = expect_ev(c, M2M_MQTT_EV_PUBLISH_DONE);
    assert_int_equal(ev.packet_id, id1);
    /* QoS 2: PUBREC -> PUBREL, PUBCOMP -> done [MQTT-4.3.3-3]. */
    a = ack_pkt(V5, M2M_MQTT_PUBREC, id2);
    feed_pkt(c, 1300, &a);
    ev = expect_ev(c, M2M_MQTT_EV_PUBLISH_RELEASED); /* so a broker resends PUBREL only [MQTT-4.3.3-5] */
    assert_int_equal(ev.packet_id, id2);
    expect_none(c);
    drain(c, V5, &o);
    assert_int_equal(o.n, 1);
    assert_int_equal(o.pkt[0].type, M2M_MQTT_PUBREL);
    assert_int_equal(o.pkt[0].u.ack.packet_id, id2);
    a = ack_pkt(V5, M2M_MQTT_PUBCOMP, id2);
    feed_pkt(c, 1400, &a);
    ev = expect_ev(c, M2M_MQTT_EV_PUBLISH_DONE);
    assert_int_equal(ev.packet_id, id2);
    expect_none(c);
    /* QoS 0 needs no packet id and no window. */
    assert_int_equal(m2m_mqtt_conn_publish(c, 1500, S("o/0"), S("z"), 0, false, NULL, NULL), 0);
    drain(c, V5, &o);
    assert_int_equal(o.n, 1);
    m2m_mqtt_conn_free(c);
}

/* The client's Receive Maximum bounds our inflight window [MQTT-3.3.4-7]. */
static void test_receive_maximum_window(void **state)
{
    (void)state;
    struct m2m_mqtt_packet cp = connect_pkt(V5, 60, false);
    cp.u.connect.props.receive_maximum = 2;
    m2m_mqtt_props_set(&cp.u.connect.props, M2M_MQTT_P_RECEIVE_MAXIMUM);
    struct m2m_mqtt_conn *c = open_conn(&base_cfg, &cp);
    uint16_t id[3];
    assert_int_equal(m2m_mqtt_conn_publish(c, 1100, S("o"), S("1"), 1, false, NULL, &id[0]), 0);
    assert_int_equal(m2m_mqtt_conn_publish(c, 1100, S("o"), S("2"), 2, false, NULL, &id[1]), 0);
    assert_int_equal(m2m_mqtt_conn_publish(c, 1100, S("o"), S("3"), 1, false, NULL, &id[2]), M2M_EAGAIN);
    assert_int_equal(m2m_mqtt_conn_publish(c, 1100, S("o"), S("q0"), 0, false, NULL, NULL), 0);
    struct m2m_mqtt_packet a = ack_pkt(V5, M2M_MQTT_PUBACK, id[0]);
    feed_pkt(c, 1200, &a);
    expect_ev(c, M2M_MQTT_EV_PUBLISH_DONE);
    assert_int_equal(m2m_mqtt_conn_publish(c, 1300, S("o"), S("3"), 1, false, NULL, &id[2]), 0);
    assert_int_not_equal(id[2], id[1]);
    m2m_mqtt_conn_free(c);
}

/* A message over the client's Maximum Packet Size is dropped [MQTT-3.1.2-25]. */
static void test_client_max_packet_size(void **state)
{
    (void)state;
    struct m2m_mqtt_packet cp = connect_pkt(V5, 60, false);
    cp.u.connect.props.maximum_packet_size = 32;
    m2m_mqtt_props_set(&cp.u.connect.props, M2M_MQTT_P_MAXIMUM_PACKET_SIZE);
    struct m2m_mqtt_conn *c = open_conn(&base_cfg, &cp);
    static const char big[] = "0123456789012345678901234567890123456789";
    assert_int_equal(m2m_mqtt_conn_publish(c, 1100, S("t"), S(big), 1, false, NULL, NULL), M2M_ELIMIT);
    struct outp o;
    drain(c, V5, &o);
    assert_int_equal(o.n, 0);
    assert_int_equal(m2m_mqtt_conn_publish(c, 1100, S("t"), S("small"), 1, false, NULL, NULL), 0);
    drain(c, V5, &o);
    assert_int_equal(o.n, 1);
    m2m_mqtt_conn_free(c);
}

/* Resend on session resume: PUBLISH with DUP=1 [MQTT-3.3.1-1], pending PUBREL
 * again [MQTT-4.4.0-1]. */
static void test_resend_dup(void **state)
{
    (void)state;
    struct m2m_mqtt_conn *c = open_v(V3, 60, false);
    uint16_t id1, id2;
    assert_int_equal(m2m_mqtt_conn_publish(c, 1100, S("r/1"), S("a"), 1, false, NULL, &id1), 0);
    assert_int_equal(m2m_mqtt_conn_publish(c, 1100, S("r/2"), S("b"), 2, false, NULL, &id2), 0);
    struct outp o;
    drain(c, V3, &o);
    assert_false(o.pkt[0].u.publish.dup);
    struct m2m_mqtt_packet a = ack_pkt(V3, M2M_MQTT_PUBREC, id2);
    feed_pkt(c, 1200, &a);
    drain(c, V3, &o);
    assert_int_equal(o.pkt[0].type, M2M_MQTT_PUBREL);
    assert_int_equal(m2m_mqtt_conn_resend(c), 0);
    drain(c, V3, &o);
    assert_int_equal(o.n, 2);
    assert_int_equal(o.pkt[0].type, M2M_MQTT_PUBLISH);
    assert_true(o.pkt[0].u.publish.dup);
    assert_int_equal(o.pkt[0].u.publish.packet_id, id1);
    assert_true(slice_is(o.pkt[0].u.publish.topic, "r/1"));
    assert_int_equal(o.pkt[1].type, M2M_MQTT_PUBREL);
    assert_int_equal(o.pkt[1].u.ack.packet_id, id2);
    m2m_mqtt_conn_free(c);
}

/* ---- errors and closing ------------------------------------------------------ */

/* Malformed packet: v5 DISCONNECT 0x81, v3.1.1 just closes [MQTT-4.8.0-1]. */
static void test_malformed(void **state)
{
    (void)state;
    /* PUBLISH QoS 3 is malformed [MQTT-3.3.1-4]. */
    static const uint8_t bad[] = {0x36, 0x05, 0x00, 0x01, 't', 0x00, 0x01};
    struct m2m_mqtt_conn *c = open_v(V5, 60, true);
    assert_int_equal(m2m_mqtt_conn_feed(c, 1100, bad, sizeof bad), 0);
    expect_closed(c, V5, M2M_MQTT_RC_MALFORMED_PACKET);
    m2m_mqtt_conn_free(c);

    c = open_v(V3, 60, true);
    assert_int_equal(m2m_mqtt_conn_feed(c, 1100, bad, sizeof bad), 0);
    expect_closed(c, V3, 0);
    m2m_mqtt_conn_free(c);

    /* A Remaining Length of five bytes is malformed framing. */
    c = open_v(V5, 60, false);
    assert_int_equal(m2m_mqtt_conn_feed(c, 1100, (const uint8_t *)"\x30\xff\xff\xff\xff\x01", 6), 0);
    expect_closed(c, V5, M2M_MQTT_RC_MALFORMED_PACKET);
    m2m_mqtt_conn_free(c);
}

/* Over our Maximum Packet Size: DISCONNECT 0x95 [MQTT-3.2.2-15 mirrored]. */
static void test_oversized(void **state)
{
    (void)state;
    struct m2m_mqtt_conn *c = open_v(V5, 60, false);
    /* Remaining Length 2000 > 1024: refused from the header alone. */
    assert_int_equal(m2m_mqtt_conn_feed(c, 1100, (const uint8_t *)"\x30\xd0\x0f", 3), 0);
    expect_closed(c, V5, M2M_MQTT_RC_PACKET_TOO_LARGE);
    m2m_mqtt_conn_free(c);
}

/* Will semantics [MQTT-3.14.4-3]: DISCONNECT 0x00 discards the will, 0x04
 * publishes it, and so does any other close (keep alive: see above). */
static void test_will_semantics(void **state)
{
    (void)state;
    const uint8_t rcs[] = {0x00, 0x04};
    for (size_t i = 0; i < 2; i++) {
        struct m2m_mqtt_conn *c = open_v(V5, 60, true);
        struct m2m_mqtt_packet d;
        m2m_mqtt_packet_init(&d, M2M_MQTT_DISCONNECT, V5);
        d.u.disconnect.rc = rcs[i];
        feed_pkt(c, 1100, &d);
        struct m2m_mqtt_conn_event ev = expect_ev(c, M2M_MQTT_EV_DISCONNECT);
        assert_int_equal(ev.reason, rcs[i]);
        assert_int_equal(ev.publish_will, rcs[i] == 0x04);
        expect_none(c);
        struct outp o;
        drain(c, V5, &o);
        assert_int_equal(o.n, 0);
        m2m_mqtt_conn_free(c);
    }
    /* v3.1.1 DISCONNECT discards the will. */
    struct m2m_mqtt_conn *c = open_v(V3, 60, true);
    feed_pkt(c, 1100, &(struct m2m_mqtt_packet){.type = M2M_MQTT_DISCONNECT, .version = V3});
    struct m2m_mqtt_conn_event ev = expect_ev(c, M2M_MQTT_EV_DISCONNECT);
    assert_false(ev.publish_will);
    m2m_mqtt_conn_free(c);
    /* A protocol error publishes it. */
    c = open_v(V3, 60, true);
    struct m2m_mqtt_packet p = connect_pkt(V3, 60, false);
    feed_pkt(c, 1100, &p);
    ev = expect_ev(c, M2M_MQTT_EV_CLOSED);
    assert_true(ev.publish_will);
    m2m_mqtt_conn_free(c);
}

static void test_state_errors(void **state)
{
    (void)state;
    assert_null(m2m_mqtt_conn_new(&(struct m2m_mqtt_conn_config){.max_packet_size = 4}));
    m2m_mqtt_conn_free(NULL);
    struct m2m_mqtt_conn *c = m2m_mqtt_conn_new(NULL);
    assert_non_null(c);
    assert_int_equal(m2m_mqtt_conn_publish(c, 0, S("t"), S("x"), 0, false, NULL, NULL), M2M_ESTATE);
    assert_int_equal(m2m_mqtt_conn_ack(c, 1, 0), M2M_ESTATE);
    assert_int_equal(m2m_mqtt_conn_suback(c, 1, NULL, 0), M2M_ESTATE);
    assert_int_equal(m2m_mqtt_conn_refuse(c, 0x87), M2M_ESTATE);
    assert_int_equal(m2m_mqtt_conn_resend(c), M2M_ESTATE);
    m2m_mqtt_conn_free(c);
}

/* A 3.1.1 client does not know our Receive Maximum: past it, its QoS 1/2
 * messages wait in the input until the application acknowledges some, and
 * QoS 2 messages awaiting PUBREL do not hold the pause (its PUBRELs may sit
 * behind the paused PUBLISH). Found by `m2mkit bench mqtt -q 2`. */
static void test_v311_pipelined_qos2(void **state)
{
    (void)state;
    struct m2m_mqtt_packet cp = connect_pkt(V3, 0, false);
    struct m2m_mqtt_conn *c = open_conn(&base_cfg, &cp);
    for (uint16_t id = 1; id <= 6; id++) {
        struct m2m_mqtt_packet p = publish_pkt(V3, "q2", 2, id);
        feed_pkt(c, 1100, &p);
    }
    for (uint16_t id = 1; id <= 4; id++)
        assert_int_equal(expect_ev(c, M2M_MQTT_EV_PUBLISH).publish->packet_id, id);
    struct m2m_mqtt_conn_event ev;
    assert_false(m2m_mqtt_conn_poll_event(c, &ev)); /* paused, not closed */
    for (uint16_t id = 1; id <= 4; id++)
        assert_int_equal(m2m_mqtt_conn_ack(c, id, 0), 0);
    for (uint16_t id = 5; id <= 6; id++) {
        assert_int_equal(expect_ev(c, M2M_MQTT_EV_PUBLISH).publish->packet_id, id);
        assert_int_equal(m2m_mqtt_conn_ack(c, id, 0), 0);
    }
    struct outp o;
    drain(c, V3, &o);
    assert_int_equal(o.n, 6);
    for (uint16_t id = 1; id <= 6; id++) {
        struct m2m_mqtt_packet p = ack_pkt(V3, M2M_MQTT_PUBREL, id);
        feed_pkt(c, 1200, &p);
    }
    drain(c, V3, &o);
    assert_int_equal(o.n, 6);
    for (size_t i = 0; i < 6; i++)
        assert_int_equal(o.pkt[i].type, M2M_MQTT_PUBCOMP);
    m2m_mqtt_conn_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_accept_v311),
        cmocka_unit_test(test_accept_v5_props),
        cmocka_unit_test(test_refuse),
        cmocka_unit_test(test_first_packet_not_connect),
        cmocka_unit_test(test_second_connect),
        cmocka_unit_test(test_connect_timeout),
        cmocka_unit_test(test_unsupported_level),
        cmocka_unit_test(test_stream_split_every_byte),
        cmocka_unit_test(test_keep_alive_boundary),
        cmocka_unit_test(test_qos1_inbound),
        cmocka_unit_test(test_qos2_inbound_exactly_once),
        cmocka_unit_test(test_receive_maximum_exceeded),
        cmocka_unit_test(test_topic_alias),
        cmocka_unit_test(test_subscribe),
        cmocka_unit_test(test_outbound_qos1_qos2),
        cmocka_unit_test(test_receive_maximum_window),
        cmocka_unit_test(test_client_max_packet_size),
        cmocka_unit_test(test_resend_dup),
        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_oversized),
        cmocka_unit_test(test_will_semantics),
        cmocka_unit_test(test_state_errors),
        cmocka_unit_test(test_v311_pipelined_qos2),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
