/* MQTT 3.1.1 / 5.0 codec: hand-written vectors, round trips of every packet
 * for both versions, every truncation, malformed packets with the reason
 * code a broker would answer, and the property rules. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "guardbuf.h"
#include "m2m/mqtt.h"
#include "vclock.h"

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

struct prefix_ctx {
    size_t n;
    uint8_t ver;
};

/* Every strict prefix is incomplete to the framer and refused by the
 * decoder (without reading past it: the copies are exact heap blocks);
 * the whole packet frames and decodes. */
static void prefix_ok(void *ctx, const uint8_t *p, size_t k)
{
    const struct prefix_ctx *pc = ctx;
    struct m2m_mqtt_packet pkt;
    size_t total = 0;
    int frc = m2m_mqtt_frame(p, k, 0, &total);
    int drc = m2m_mqtt_decode(&pkt, pc->ver, p, k, NULL);
    if (k < pc->n) {
        assert_int_equal(frc, M2M_EAGAIN);
        assert_int_not_equal(drc, 0);
    } else {
        assert_int_equal(frc, 0);
        assert_int_equal(total, pc->n);
        assert_int_equal(drc, 0);
    }
}

/* Encodes pkt; checks size-first behaviour, truncations and that decoding
 * then re-encoding gives the same bytes. Returns the length in out. */
static size_t roundtrip(const struct m2m_mqtt_packet *pkt, uint8_t *out, size_t cap)
{
    size_t len = 0, len2 = 0;
    assert_int_equal(m2m_mqtt_encode(pkt, out, cap, &len), 0);
    assert_int_equal(m2m_mqtt_encoded_size(pkt), len);
    /* One byte short: M2M_ENOBUFS and nothing written. */
    uint8_t *small = malloc(len);
    assert_non_null(small);
    memset(small, 0xaa, len);
    assert_int_equal(m2m_mqtt_encode(pkt, small, len - 1, &len2), M2M_ENOBUFS);
    for (size_t i = 0; i < len; i++)
        assert_int_equal(small[i], 0xaa);
    free(small);

    struct m2m_mqtt_packet back;
    struct m2m_mqtt_diag d;
    int rc = m2m_mqtt_decode(&back, pkt->version, out, len, &d);
    if (rc) {
        char h[4096];
        fprintf(stderr, "decode %d (%s, %s): %s\n", rc, m2m_errname(rc), d.rule ? d.rule : "-",
                test_hex(out, len, h, sizeof h));
        fail();
    }
    assert_int_equal(back.type, pkt->type);
    assert_int_equal(back.version, pkt->version);
    uint8_t again[4096];
    assert_int_equal(m2m_mqtt_encode(&back, again, sizeof again, &len2), 0);
    assert_int_equal(len2, len);
    assert_memory_equal(again, out, len);
    struct prefix_ctx pc = {len, pkt->version};
    test_each_prefix(out, len, prefix_ok, &pc);
    return len;
}

/* Decodes hex `h` as version v and expects rc and (for errors) reason. */
static void expect_decode(const char *h, uint8_t v, int want, uint8_t reason)
{
    uint8_t b[512];
    size_t n = test_unhex(h, b, sizeof b);
    struct m2m_mqtt_packet pkt;
    struct m2m_mqtt_diag d = {0, NULL};
    int rc = m2m_mqtt_decode(&pkt, v, b, n, &d);
    if (rc != want || (want && d.reason != reason)) {
        fprintf(stderr, "%s (v%u): got %d reason 0x%02x (%s), want %d reason 0x%02x\n", h, v, rc, d.reason,
                d.rule ? d.rule : "-", want, reason);
        fail();
    }
    if (want == 0) {
        size_t total = 0;
        assert_int_equal(m2m_mqtt_frame(b, n, 0, &total), 0);
        assert_int_equal(total, n);
    }
}

static void expect_encoding(const struct m2m_mqtt_packet *pkt, const char *want)
{
    uint8_t exp[512], got[512];
    size_t n = test_unhex(want, exp, sizeof exp), len = 0;
    assert_int_equal(m2m_mqtt_encode(pkt, got, sizeof got, &len), 0);
    if (len != n || memcmp(got, exp, n)) {
        char h[2048];
        fprintf(stderr, "got:  %s\n", test_hex(got, len, h, sizeof h));
        fprintf(stderr, "want: %s\n", want);
        fail();
    }
}

/* ---- hand-written vectors --------------------------------------------- */

static void test_connect_v311_mosquitto(void **state)
{
    (void)state;
    /* What `mosquitto_pub -i mosq -V mqttv311 -k 60` sends first. */
    const char *h = "10 10 00 04 4d 51 54 54 04 02 00 3c 00 04 6d 6f 73 71";
    uint8_t b[64];
    size_t n = test_unhex(h, b, sizeof b);
    struct m2m_mqtt_packet pkt;
    assert_int_equal(m2m_mqtt_decode(&pkt, V5, b, n, NULL), 0);
    assert_int_equal(pkt.type, M2M_MQTT_CONNECT);
    assert_int_equal(pkt.version, V3); /* taken from the packet */
    assert_true(pkt.u.connect.clean_start);
    assert_int_equal(pkt.u.connect.keep_alive, 60);
    assert_true(slice_is(pkt.u.connect.client_id, "mosq"));
    assert_false(pkt.u.connect.will);
    assert_false(pkt.u.connect.has_username);
    expect_encoding(&pkt, h);
    struct prefix_ctx pc = {n, V3};
    test_each_prefix(b, n, prefix_ok, &pc);
}

static void test_connect_v5_vector(void **state)
{
    (void)state;
    /* Level 5, clean start, keep alive 60, Receive Maximum 20, empty id. */
    const char *h = "10 10 00 04 4d 51 54 54 05 02 00 3c 03 21 00 14 00 00";
    uint8_t b[64];
    size_t n = test_unhex(h, b, sizeof b);
    struct m2m_mqtt_packet pkt;
    assert_int_equal(m2m_mqtt_decode(&pkt, V3, b, n, NULL), 0);
    assert_int_equal(pkt.version, V5);
    assert_true(m2m_mqtt_props_has(&pkt.u.connect.props, M2M_MQTT_P_RECEIVE_MAXIMUM));
    assert_int_equal(pkt.u.connect.props.receive_maximum, 20);
    assert_int_equal(pkt.u.connect.client_id.n, 0);
    expect_encoding(&pkt, h);
}

static void test_small_vectors(void **state)
{
    (void)state;
    struct m2m_mqtt_packet pkt;
    m2m_mqtt_packet_init(&pkt, M2M_MQTT_PUBLISH, V3);
    pkt.u.publish.qos = 1;
    pkt.u.publish.packet_id = 1;
    pkt.u.publish.topic = S("a/b");
    pkt.u.publish.payload = S("hi");
    expect_encoding(&pkt, "32 09 00 03 61 2f 62 00 01 68 69");

    m2m_mqtt_packet_init(&pkt, M2M_MQTT_SUBSCRIBE, V3);
    pkt.u.subscribe.packet_id = 1;
    pkt.u.subscribe.n = 1;
    pkt.u.subscribe.sub[0].filter = S("#");
    expect_encoding(&pkt, "82 06 00 01 00 01 23 00");

    m2m_mqtt_packet_init(&pkt, M2M_MQTT_CONNACK, V3);
    expect_encoding(&pkt, "20 02 00 00");
    m2m_mqtt_packet_init(&pkt, M2M_MQTT_PINGREQ, V3);
    expect_encoding(&pkt, "c0 00");
    m2m_mqtt_packet_init(&pkt, M2M_MQTT_PINGRESP, V5);
    expect_encoding(&pkt, "d0 00");
    m2m_mqtt_packet_init(&pkt, M2M_MQTT_DISCONNECT, V5);
    expect_encoding(&pkt, "e0 00");
    pkt.u.disconnect.rc = M2M_MQTT_RC_DISCONNECT_WITH_WILL;
    expect_encoding(&pkt, "e0 01 04");
    m2m_mqtt_packet_init(&pkt, M2M_MQTT_PUBREL, V3);
    pkt.u.ack.packet_id = 0x1234;
    expect_encoding(&pkt, "62 02 12 34");
    m2m_mqtt_packet_init(&pkt, M2M_MQTT_PUBACK, V5);
    pkt.u.ack.packet_id = 1;
    pkt.u.ack.rc = M2M_MQTT_RC_NO_MATCHING_SUBSCRIBERS;
    expect_encoding(&pkt, "40 03 00 01 10");
    m2m_mqtt_packet_init(&pkt, M2M_MQTT_UNSUBACK, V3);
    pkt.u.suback.packet_id = 7;
    expect_encoding(&pkt, "b0 02 00 07");
}

/* ---- round trips --------------------------------------------------------- */

static void fill_props_for(struct m2m_mqtt_props *pr, unsigned ctx, const struct m2m_mqtt_pair *users)
{
    memset(pr, 0, sizeof *pr);
    pr->user = users;
    pr->nuser = 2;
    m2m_mqtt_props_set(pr, M2M_MQTT_P_USER_PROPERTY);
    if (m2m_mqtt_prop_allowed(M2M_MQTT_P_REASON_STRING, ctx)) {
        m2m_mqtt_props_set(pr, M2M_MQTT_P_REASON_STRING);
        pr->reason_string = S("because");
    }
}

static void roundtrip_all(uint8_t v)
{
    static const struct m2m_mqtt_pair users[2] = {{{(const uint8_t *)"k", 1}, {(const uint8_t *)"v", 1}},
                                                  {{(const uint8_t *)"k", 1}, {(const uint8_t *)"w2", 2}}};
    uint8_t out[4096];
    struct m2m_mqtt_packet pkt;

    /* CONNECT with will and credentials. */
    m2m_mqtt_packet_init(&pkt, M2M_MQTT_CONNECT, v);
    struct m2m_mqtt_connect *c = &pkt.u.connect;
    c->clean_start = true;
    c->keep_alive = 30;
    c->client_id = S("dev-1");
    c->will = true;
    c->will_qos = 2;
    c->will_retain = true;
    c->will_topic = S("dev/1/status");
    c->will_payload = S("offline");
    c->has_username = true;
    c->username = S("user");
    c->has_password = true;
    c->password = S("secret");
    if (v == V5) {
        fill_props_for(&c->props, M2M_MQTT_CONNECT, users);
        m2m_mqtt_props_set(&c->props, M2M_MQTT_P_SESSION_EXPIRY);
        c->props.session_expiry = 3600;
        m2m_mqtt_props_set(&c->props, M2M_MQTT_P_AUTH_METHOD);
        c->props.auth_method = S("SCRAM-SHA-1");
        m2m_mqtt_props_set(&c->will_props, M2M_MQTT_P_WILL_DELAY);
        c->will_props.will_delay = 5;
    }
    roundtrip(&pkt, out, sizeof out);
    /* Without will or credentials. */
    c->will = false;
    c->will_qos = 0;
    c->will_retain = false;
    c->has_username = c->has_password = false;
    roundtrip(&pkt, out, sizeof out);

    m2m_mqtt_packet_init(&pkt, M2M_MQTT_CONNACK, v);
    pkt.u.connack.session_present = true;
    if (v == V5) {
        fill_props_for(&pkt.u.connack.props, M2M_MQTT_CONNACK, users);
        m2m_mqtt_props_set(&pkt.u.connack.props, M2M_MQTT_P_ASSIGNED_CLIENT_ID);
        pkt.u.connack.props.assigned_client_id = S("auto-1");
    }
    roundtrip(&pkt, out, sizeof out);
    pkt.u.connack.session_present = false;
    pkt.u.connack.rc = v == V5 ? M2M_MQTT_RC_NOT_AUTHORIZED : M2M_MQTT311_NOT_AUTHORIZED;
    roundtrip(&pkt, out, sizeof out);

    for (uint8_t qos = 0; qos <= 2; qos++) {
        m2m_mqtt_packet_init(&pkt, M2M_MQTT_PUBLISH, v);
        struct m2m_mqtt_publish *p = &pkt.u.publish;
        p->qos = qos;
        p->retain = qos == 1;
        p->dup = qos == 2;
        p->packet_id = qos ? 0xbeef : 0;
        p->topic = S("sensors/temp");
        p->payload = S("21.5");
        if (v == V5) {
            fill_props_for(&p->props, M2M_MQTT_PUBLISH, users);
            m2m_mqtt_props_set(&p->props, M2M_MQTT_P_CORRELATION_DATA);
            p->props.correlation_data = S("\x01\x02");
        }
        roundtrip(&pkt, out, sizeof out);
    }
    if (v == V5) { /* empty topic with an alias, empty payload */
        m2m_mqtt_packet_init(&pkt, M2M_MQTT_PUBLISH, v);
        m2m_mqtt_props_set(&pkt.u.publish.props, M2M_MQTT_P_TOPIC_ALIAS);
        pkt.u.publish.props.topic_alias = 3;
        roundtrip(&pkt, out, sizeof out);
    }

    const uint8_t acks[] = {M2M_MQTT_PUBACK, M2M_MQTT_PUBREC, M2M_MQTT_PUBREL, M2M_MQTT_PUBCOMP};
    for (size_t i = 0; i < sizeof acks; i++) {
        m2m_mqtt_packet_init(&pkt, acks[i], v);
        pkt.u.ack.packet_id = 42;
        roundtrip(&pkt, out, sizeof out);
        if (v == V5) {
            pkt.u.ack.rc = acks[i] == M2M_MQTT_PUBREL ? M2M_MQTT_RC_PACKET_ID_NOT_FOUND : 0x80;
            roundtrip(&pkt, out, sizeof out);
            fill_props_for(&pkt.u.ack.props, acks[i], users);
            roundtrip(&pkt, out, sizeof out);
        }
    }

    m2m_mqtt_packet_init(&pkt, M2M_MQTT_SUBSCRIBE, v);
    struct m2m_mqtt_subscribe *s = &pkt.u.subscribe;
    s->packet_id = 10;
    s->n = 3;
    s->sub[0] = (struct m2m_mqtt_subscription){S("sport/tennis/+"), 1, false, false, 0};
    s->sub[1] = (struct m2m_mqtt_subscription){S("#"), 2, false, false, 0};
    s->sub[2] = (struct m2m_mqtt_subscription){S("$share/g/a/b"), 0, false, false, 0};
    if (v == V5) {
        s->sub[0].no_local = true;
        s->sub[1].retain_as_published = true;
        s->sub[1].retain_handling = 2;
        fill_props_for(&s->props, M2M_MQTT_SUBSCRIBE, users);
        m2m_mqtt_props_set(&s->props, M2M_MQTT_P_SUBSCRIPTION_ID);
        s->props.nsubid = 1;
        s->props.subid[0] = M2M_MQTT_MAX_REMAINING;
    }
    roundtrip(&pkt, out, sizeof out);

    m2m_mqtt_packet_init(&pkt, M2M_MQTT_SUBACK, v);
    pkt.u.suback.packet_id = 10;
    pkt.u.suback.n = 3;
    pkt.u.suback.rc[0] = 1;
    pkt.u.suback.rc[1] = 2;
    pkt.u.suback.rc[2] = 0x80;
    if (v == V5)
        fill_props_for(&pkt.u.suback.props, M2M_MQTT_SUBACK, users);
    roundtrip(&pkt, out, sizeof out);

    m2m_mqtt_packet_init(&pkt, M2M_MQTT_UNSUBSCRIBE, v);
    pkt.u.unsubscribe.packet_id = 11;
    pkt.u.unsubscribe.n = 2;
    pkt.u.unsubscribe.filter[0] = S("a/+/c");
    pkt.u.unsubscribe.filter[1] = S("$share/grp/x/#");
    if (v == V5)
        fill_props_for(&pkt.u.unsubscribe.props, M2M_MQTT_UNSUBSCRIBE, users);
    roundtrip(&pkt, out, sizeof out);

    m2m_mqtt_packet_init(&pkt, M2M_MQTT_UNSUBACK, v);
    pkt.u.suback.packet_id = 11;
    if (v == V5) {
        pkt.u.suback.n = 2;
        pkt.u.suback.rc[1] = M2M_MQTT_RC_NO_SUBSCRIPTION_EXISTED;
        fill_props_for(&pkt.u.suback.props, M2M_MQTT_UNSUBACK, users);
    }
    roundtrip(&pkt, out, sizeof out);

    m2m_mqtt_packet_init(&pkt, M2M_MQTT_PINGREQ, v);
    roundtrip(&pkt, out, sizeof out);
    m2m_mqtt_packet_init(&pkt, M2M_MQTT_PINGRESP, v);
    roundtrip(&pkt, out, sizeof out);
    m2m_mqtt_packet_init(&pkt, M2M_MQTT_DISCONNECT, v);
    roundtrip(&pkt, out, sizeof out);
    if (v == V5) {
        pkt.u.disconnect.rc = M2M_MQTT_RC_SERVER_MOVED;
        roundtrip(&pkt, out, sizeof out);
        fill_props_for(&pkt.u.disconnect.props, M2M_MQTT_DISCONNECT, users);
        m2m_mqtt_props_set(&pkt.u.disconnect.props, M2M_MQTT_P_SERVER_REFERENCE);
        pkt.u.disconnect.props.server_reference = S("other:1883");
        roundtrip(&pkt, out, sizeof out);

        m2m_mqtt_packet_init(&pkt, M2M_MQTT_AUTH, v);
        roundtrip(&pkt, out, sizeof out);
        pkt.u.disconnect.rc = M2M_MQTT_RC_CONTINUE_AUTHENTICATION;
        fill_props_for(&pkt.u.disconnect.props, M2M_MQTT_AUTH, users);
        m2m_mqtt_props_set(&pkt.u.disconnect.props, M2M_MQTT_P_AUTH_DATA);
        pkt.u.disconnect.props.auth_data = S("\x00\xff");
        roundtrip(&pkt, out, sizeof out);
    }
}

static void test_roundtrip_v311(void **state)
{
    (void)state;
    roundtrip_all(V3);
}

static void test_roundtrip_v5(void **state)
{
    (void)state;
    roundtrip_all(V5);
}

/* Every property, in the packet that allows it, through encode and decode. */
static void test_all_properties(void **state)
{
    (void)state;
    static const struct m2m_mqtt_pair users[1] = {{{(const uint8_t *)"a", 1}, {(const uint8_t *)"", 0}}};
    uint8_t out[4096];
    struct m2m_mqtt_packet pkt, back;
    m2m_mqtt_packet_init(&pkt, M2M_MQTT_CONNACK, V5);
    struct m2m_mqtt_props *pr = &pkt.u.connack.props;
    const uint8_t ids[] = {0x11, 0x12, 0x13, 0x15, 0x16, 0x1a, 0x1c, 0x1f, 0x21,
                           0x22, 0x24, 0x25, 0x26, 0x27, 0x28, 0x29, 0x2a};
    for (size_t i = 0; i < sizeof ids; i++) {
        assert_true(m2m_mqtt_prop_allowed(ids[i], M2M_MQTT_CONNACK));
        m2m_mqtt_props_set(pr, ids[i]);
    }
    pr->session_expiry = 0xffffffff;
    pr->assigned_client_id = S("id");
    pr->server_keep_alive = 120;
    pr->auth_method = S("m");
    pr->auth_data = S("d");
    pr->response_info = S("ri");
    pr->server_reference = S("sr");
    pr->reason_string = S("rs");
    pr->receive_maximum = 65535;
    pr->topic_alias_maximum = 10;
    pr->maximum_qos = 1;
    pr->retain_available = 1;
    pr->user = users;
    pr->nuser = 1;
    pr->maximum_packet_size = 1000;
    pr->wildcard_sub_available = 1;
    pr->subscription_id_available = 0;
    pr->shared_sub_available = 1;
    size_t len = roundtrip(&pkt, out, sizeof out);
    assert_int_equal(m2m_mqtt_decode(&back, V5, out, len, NULL), 0);
    const struct m2m_mqtt_props *b = &back.u.connack.props;
    assert_int_equal(b->present, pr->present);
    assert_int_equal(b->session_expiry, 0xffffffff);
    assert_int_equal(b->server_keep_alive, 120);
    assert_int_equal(b->receive_maximum, 65535);
    assert_int_equal(b->maximum_packet_size, 1000);
    assert_int_equal(b->maximum_qos, 1);
    assert_true(slice_is(b->response_info, "ri"));
    assert_true(slice_is(b->server_reference, "sr"));
    assert_int_equal(b->nuser, 1);
    assert_null(b->user);

    /* The PUBLISH and Will properties. */
    m2m_mqtt_packet_init(&pkt, M2M_MQTT_PUBLISH, V5);
    pr = &pkt.u.publish.props;
    pkt.u.publish.topic = S("t");
    const uint8_t pids[] = {0x01, 0x02, 0x03, 0x08, 0x09, 0x0b, 0x23};
    for (size_t i = 0; i < sizeof pids; i++)
        m2m_mqtt_props_set(pr, pids[i]);
    pr->payload_format = 1;
    pr->message_expiry = 60;
    pr->content_type = S("text/plain");
    pr->response_topic = S("reply/here");
    pr->correlation_data = S("xyz");
    pr->nsubid = 3; /* several: a server forwarding to overlapping subscriptions */
    pr->subid[0] = 1;
    pr->subid[1] = 128;
    pr->subid[2] = 268435455;
    pr->topic_alias = 1;
    len = roundtrip(&pkt, out, sizeof out);
    assert_int_equal(m2m_mqtt_decode(&back, V5, out, len, NULL), 0);
    b = &back.u.publish.props;
    assert_int_equal(b->nsubid, 3);
    assert_int_equal(b->subid[1], 128);
    assert_int_equal(b->subid[2], 268435455);
    assert_true(slice_is(b->content_type, "text/plain"));
    assert_true(slice_is(b->response_topic, "reply/here"));
    assert_int_equal(b->payload_format, 1);

    m2m_mqtt_packet_init(&pkt, M2M_MQTT_CONNECT, V5);
    pkt.u.connect.will = true;
    pkt.u.connect.will_topic = S("w");
    pr = &pkt.u.connect.props;
    m2m_mqtt_props_set(pr, M2M_MQTT_P_REQUEST_PROBLEM_INFO);
    m2m_mqtt_props_set(pr, M2M_MQTT_P_REQUEST_RESPONSE_INFO);
    m2m_mqtt_props_set(pr, M2M_MQTT_P_MAXIMUM_PACKET_SIZE);
    m2m_mqtt_props_set(pr, M2M_MQTT_P_TOPIC_ALIAS_MAXIMUM);
    pr->request_response_info = 1;
    pr->maximum_packet_size = 1;
    pr = &pkt.u.connect.will_props;
    m2m_mqtt_props_set(pr, M2M_MQTT_P_WILL_DELAY);
    m2m_mqtt_props_set(pr, M2M_MQTT_P_MESSAGE_EXPIRY);
    m2m_mqtt_props_set(pr, M2M_MQTT_P_CONTENT_TYPE);
    pr->will_delay = 10;
    roundtrip(&pkt, out, sizeof out);
}

static void test_user_property_iterator(void **state)
{
    (void)state;
    /* PUBLISH "a" with props: user(k,v), message expiry 1, user(k,w). */
    const char *h = "30 19 00 01 61 13 26 00 01 6b 00 01 76 02 00 00 00 01 26 00 01 6b 00 01 77 68 69";
    uint8_t b[64];
    size_t n = test_unhex(h, b, sizeof b);
    struct m2m_mqtt_packet pkt;
    assert_int_equal(m2m_mqtt_decode(&pkt, V5, b, n, NULL), 0);
    const struct m2m_mqtt_props *pr = &pkt.u.publish.props;
    assert_int_equal(pr->nuser, 2);
    assert_int_equal(pr->message_expiry, 1);
    assert_true(slice_is(pkt.u.publish.payload, "hi"));
    struct m2m_mqtt_user_iter it;
    struct m2m_mqtt_pair up;
    m2m_mqtt_user_iter_init(&it, pr);
    assert_true(m2m_mqtt_user_next(&it, &up));
    assert_true(slice_is(up.name, "k") && slice_is(up.value, "v"));
    assert_true(m2m_mqtt_user_next(&it, &up));
    assert_true(slice_is(up.name, "k") && slice_is(up.value, "w"));
    assert_false(m2m_mqtt_user_next(&it, &up));
    assert_false(m2m_mqtt_user_next(&it, &up));
    /* Zero-copy: the slices point into the input. */
    assert_ptr_equal(pkt.u.publish.topic.p, b + 4);
    assert_ptr_equal(pr->raw.p, b + 6);
}

/* ---- framing -------------------------------------------------------------- */

static void test_frame(void **state)
{
    (void)state;
    size_t total = 0;
    uint8_t b[8] = {0};
    assert_int_equal(m2m_mqtt_frame(b, 0, 0, &total), M2M_EAGAIN);
    /* 268,435,455 is the largest Remaining Length (§1.5.5). */
    size_t n = test_unhex("30 ff ff ff 7f", b, sizeof b);
    assert_int_equal(m2m_mqtt_frame(b, n, 0, &total), M2M_EAGAIN);
    assert_int_equal(m2m_mqtt_frame(b, n, 1u << 20, &total), M2M_ELIMIT);
    assert_int_equal(m2m_mqtt_frame(b, 4, 0, &total), M2M_EAGAIN);
    /* A fifth length byte is malformed. */
    n = test_unhex("30 ff ff ff ff 01", b, sizeof b);
    assert_int_equal(m2m_mqtt_frame(b, n, 0, &total), M2M_EMALFORMED);
    /* Non-minimal lengths ([MQTT-1.5.5-1]). */
    n = test_unhex("c0 80 00", b, sizeof b);
    assert_int_equal(m2m_mqtt_frame(b, n, 0, &total), M2M_EMALFORMED);
    n = test_unhex("c0 80 80 00", b, sizeof b);
    assert_int_equal(m2m_mqtt_frame(b, n, 0, &total), M2M_EMALFORMED);
    /* Reserved type 0. */
    n = test_unhex("00 00", b, sizeof b);
    assert_int_equal(m2m_mqtt_frame(b, n, 0, &total), M2M_EMALFORMED);
    /* Two packets back to back: the first is framed. */
    n = test_unhex("c0 00 d0 00", b, sizeof b);
    assert_int_equal(m2m_mqtt_frame(b, n, 0, &total), 0);
    assert_int_equal(total, 2);
    assert_int_equal(m2m_mqtt_frame(b, n, 2, &total), 0);
    assert_int_equal(m2m_mqtt_frame(b, n, 1, &total), M2M_ELIMIT);
    /* 128 and 16384 need two and three bytes. */
    n = test_unhex("30 80 01", b, sizeof b);
    assert_int_equal(m2m_mqtt_frame(b, n, 0, &total), M2M_EAGAIN);
    assert_int_equal(m2m_mqtt_frame(b, n, 131, &total), M2M_EAGAIN);
    assert_int_equal(m2m_mqtt_frame(b, n, 130, &total), M2M_ELIMIT);
}

static void test_large_publish(void **state)
{
    (void)state;
    /* A 200,000-byte payload needs a three-byte Remaining Length. */
    size_t plen = 200000;
    uint8_t *payload = calloc(1, plen), *out = malloc(plen + 64);
    assert_non_null(payload);
    assert_non_null(out);
    struct m2m_mqtt_packet pkt, back;
    m2m_mqtt_packet_init(&pkt, M2M_MQTT_PUBLISH, V5);
    pkt.u.publish.topic = S("big");
    pkt.u.publish.payload = (struct m2m_slice){payload, plen};
    size_t len = 0, total = 0;
    assert_int_equal(m2m_mqtt_encode(&pkt, out, plen + 64, &len), 0);
    assert_int_equal(len, 1 + 3 + 2 + 3 + 1 + plen);
    assert_int_equal(m2m_mqtt_frame(out, len, 0, &total), 0);
    assert_int_equal(total, len);
    assert_int_equal(m2m_mqtt_frame(out, len - 1, 0, &total), M2M_EAGAIN);
    assert_int_equal(m2m_mqtt_decode(&back, V5, out, len, NULL), 0);
    assert_int_equal(back.u.publish.payload.n, plen);
    /* A string over 65535 bytes cannot be encoded. */
    pkt.u.publish.topic = (struct m2m_slice){payload, 70000};
    assert_int_equal(m2m_mqtt_encode(&pkt, out, plen + 64, &len), M2M_EINVAL);
    assert_int_equal(m2m_mqtt_encoded_size(&pkt), 0);
    free(payload);
    free(out);
}

/* ---- malformed packets and protocol errors ------------------------------ */

#define MAL M2M_EMALFORMED
#define R81 M2M_MQTT_RC_MALFORMED_PACKET
#define R82 M2M_MQTT_RC_PROTOCOL_ERROR

static void test_fixed_header(void **state)
{
    (void)state;
    /* [MQTT-2.1.3-1] reserved flags. */
    expect_decode("c1 00", V3, MAL, R81);
    expect_decode("d8 00", V5, MAL, R81);
    expect_decode("e2 00", V5, MAL, R81);
    expect_decode("60 02 00 01", V3, MAL, R81); /* PUBREL needs 0010 */
    expect_decode("62 02 00 01", V3, 0, 0);
    expect_decode("80 06 00 01 00 01 23 00", V3, MAL, R81); /* SUBSCRIBE needs 0010 */
    expect_decode("a0 05 00 01 00 01 23", V3, MAL, R81);    /* UNSUBSCRIBE needs 0010 */
    expect_decode("41 02 00 01", V3, MAL, R81);
    expect_decode("21 02 00 00", V3, MAL, R81);
    expect_decode("11 10 00 04 4d 51 54 54 04 02 00 3c 00 04 6d 6f 73 71", V3, MAL, R81);
    /* Reserved type 0; AUTH is reserved in 3.1.1. */
    expect_decode("00 00", V3, MAL, R81);
    expect_decode("f0 00", V3, MAL, R81);
    expect_decode("f0 00", V5, 0, 0);
    /* Remaining Length that disagrees with the bytes, or is not minimal. */
    expect_decode("c0 00 00", V3, MAL, R81);
    expect_decode("20 03 00 00", V3, MAL, R81);
    expect_decode("c0 80 00", V3, MAL, R81);
    expect_decode("c0", V3, MAL, R81);
    expect_decode("", V3, MAL, R81);
    /* Bodies where none belongs. */
    expect_decode("c0 01 00", V3, MAL, R81);
    expect_decode("d0 01 00", V5, MAL, R81);
    expect_decode("e0 01 00", V3, MAL, R81);
    expect_decode("40 03 00 01 00", V3, MAL, R81); /* 3.1.1 PUBACK is 2 bytes */
    expect_decode("b0 03 00 01 00", V3, MAL, R81);
}

static void test_connect_rules(void **state)
{
    (void)state;
    const char *pre = "10 10 00 04 4d 51 54 54 04 ";
    char h[256];
    /* [MQTT-3.1.2-3]: reserved flag bit 0. */
    snprintf(h, sizeof h, "%s03 00 3c 00 04 6d 6f 73 71", pre);
    expect_decode(h, V3, MAL, R81);
    /* [MQTT-3.1.2-11]/-13: will QoS / retain without the will flag. */
    snprintf(h, sizeof h, "%s0a 00 3c 00 04 6d 6f 73 71", pre);
    expect_decode(h, V3, MAL, R81);
    snprintf(h, sizeof h, "%s22 00 3c 00 04 6d 6f 73 71", pre);
    expect_decode(h, V3, MAL, R81);
    /* [MQTT-3.1.2-12]: will QoS 3. */
    expect_decode("10 13 00 04 4d 51 54 54 04 1e 00 3c 00 01 63 00 01 74 00 01 70", V3, MAL, R81);
    expect_decode("10 13 00 04 4d 51 54 54 04 16 00 3c 00 01 63 00 01 74 00 01 70", V3, 0, 0);
    /* Will topic with a wildcard. */
    expect_decode("10 13 00 04 4d 51 54 54 04 16 00 3c 00 01 63 00 01 23 00 01 70", V3, MAL,
                  M2M_MQTT_RC_TOPIC_NAME_INVALID);
    /* 3.1.1 [MQTT-3.1.2-22]: password without user name; 5.0 allows it. */
    expect_decode("10 11 00 04 4d 51 54 54 04 42 00 3c 00 01 63 00 02 70 77", V3, MAL, R81);
    expect_decode("10 12 00 04 4d 51 54 54 05 42 00 3c 00 00 01 63 00 02 70 77", V5, 0, 0);
    expect_decode("10 13 00 04 4d 51 54 54 04 c2 00 3c 00 01 63 00 01 75 00 01 70", V3, 0, 0);
    /* Flags announce a user name that is not there. */
    expect_decode("10 0d 00 04 4d 51 54 54 04 82 00 3c 00 01 63", V3, MAL, R81);
    /* [MQTT-3.1.2-1]/-2: another protocol name or level. */
    expect_decode("10 12 00 06 4d 51 49 73 64 70 03 02 00 3c 00 04 6d 6f 73 71", V3, M2M_EUNSUPPORTED,
                  M2M_MQTT_RC_UNSUPPORTED_PROTOCOL_VERSION);
    expect_decode("10 10 00 04 4d 51 54 54 03 02 00 3c 00 04 6d 6f 73 71", V3, M2M_EUNSUPPORTED,
                  M2M_MQTT_RC_UNSUPPORTED_PROTOCOL_VERSION);
    expect_decode("10 10 00 04 4d 51 54 54 06 02 00 3c 00 04 6d 6f 73 71", V3, M2M_EUNSUPPORTED,
                  M2M_MQTT_RC_UNSUPPORTED_PROTOCOL_VERSION);
    /* Client id with U+0000 ([MQTT-1.5.4-2]) and a lone surrogate ([MQTT-1.5.4-1]). */
    expect_decode("10 0c 00 04 4d 51 54 54 04 02 00 3c 00 00", V3, 0, 0);
    expect_decode("10 0e 00 04 4d 51 54 54 04 02 00 3c 00 02 61 00", V3, MAL, R81);
    expect_decode("10 0f 00 04 4d 51 54 54 04 02 00 3c 00 03 ed a0 80", V3, MAL, R81);
    /* v5 CONNECT properties: Receive Maximum 0 is a Protocol Error. */
    expect_decode("10 10 00 04 4d 51 54 54 05 02 00 3c 03 21 00 00 00 00", V5, MAL, R82);
    /* Maximum Packet Size 0, Request Problem Information 2. */
    expect_decode("10 12 00 04 4d 51 54 54 05 02 00 3c 05 27 00 00 00 00 00 00", V5, MAL, R82);
    expect_decode("10 0f 00 04 4d 51 54 54 05 02 00 3c 02 17 02 00 00", V5, MAL, R82);
    /* Will Delay outside the Will properties is malformed. */
    expect_decode("10 12 00 04 4d 51 54 54 05 02 00 3c 05 18 00 00 00 01 00 00", V5, MAL, R81);
    /* Duplicate Session Expiry. */
    expect_decode("10 17 00 04 4d 51 54 54 05 02 00 3c 0a 11 00 00 00 01 11 00 00 00 02 00 00", V5, MAL, R82);
}

static void test_connack_rules(void **state)
{
    (void)state;
    expect_decode("20 02 00 00", V3, 0, 0);
    expect_decode("20 02 01 00", V3, 0, 0);
    expect_decode("20 02 02 00", V3, MAL, R81); /* [MQTT-3.2.2-1] */
    expect_decode("20 02 01 05", V3, MAL, R82); /* session present with an error */
    expect_decode("20 02 00 06", V3, MAL, R81); /* no 3.1.1 return code 6 */
    expect_decode("20 03 00 87 00", V5, 0, 0);
    expect_decode("20 03 00 10 00", V5, MAL, R81);       /* not a CONNACK reason code */
    expect_decode("20 02 00 00", V5, MAL, R81);          /* v5 needs the property length */
    expect_decode("20 05 00 00 02 24 02", V5, MAL, R82); /* Maximum QoS 2 */
    expect_decode("20 05 00 00 02 24 01", V5, 0, 0);
    expect_decode("20 05 00 00 02 25 02", V5, MAL, R82); /* Retain Available 2 */
    expect_decode("20 05 00 00 02 2a 05", V5, MAL, R82);
    expect_decode("20 05 00 00 02 17 01", V5, MAL, R81); /* CONNECT-only property */
}

static void test_publish_rules(void **state)
{
    (void)state;
    expect_decode("36 07 00 01 61 00 01 68 69", V3, MAL, R81); /* [MQTT-3.3.1-4] QoS 3 */
    expect_decode("38 05 00 01 61 68 69", V3, MAL, R81);       /* [MQTT-3.3.1-2] DUP at QoS 0 */
    expect_decode("32 05 00 01 61 00 00", V3, MAL, R82);       /* [MQTT-2.2.1-3] id 0 */
    expect_decode("32 04 00 01 61 00", V3, MAL, R81);          /* id cut short */
    expect_decode("30 03 00 01 2b", V3, MAL, M2M_MQTT_RC_TOPIC_NAME_INVALID); /* [MQTT-3.3.2-2] */
    expect_decode("30 05 00 03 61 2f 23", V3, MAL, M2M_MQTT_RC_TOPIC_NAME_INVALID);
    expect_decode("30 02 00 00", V3, MAL, R82);                /* empty topic */
    expect_decode("30 04 00 02 61 00", V3, MAL, R81);          /* U+0000 in topic */
    expect_decode("30 05 00 03 ed a0 80", V3, MAL, R81);       /* surrogate */
    expect_decode("30 04 00 02 c0 af", V3, MAL, R81);          /* overlong */
    expect_decode("30 03 00 05 61", V3, MAL, R81);             /* string past the end */
    expect_decode("31 03 00 01 61", V3, 0, 0);                 /* retain, empty payload */
    expect_decode("30 03 00 00 00", V5, MAL, R82);             /* empty topic, no alias */
    expect_decode("30 06 00 00 03 23 00 05", V5, 0, 0);        /* empty topic, alias 5 */
    expect_decode("30 06 00 00 03 23 00 00", V5, MAL, R82);    /* [MQTT-3.3.2-8] alias 0 */
    expect_decode("30 07 00 01 61 03 21 00 01", V5, MAL, R81); /* Receive Maximum in PUBLISH */
    expect_decode("30 06 00 01 61 02 01 02", V5, MAL, R82);    /* Payload Format 2 */
    expect_decode("30 06 00 01 61 02 01 01", V5, 0, 0);
    expect_decode("30 0e 00 01 61 0a 02 00 00 00 01 02 00 00 00 02", V5, MAL, R82); /* duplicate */
    expect_decode("30 06 00 01 61 02 0b 00", V5, MAL, R82);             /* Subscription Identifier 0 */
    expect_decode("30 0a 00 01 61 06 0b 01 0b 02 0b 03", V5, 0, 0);     /* several, from a server */
    expect_decode("30 09 00 01 61 05 0b ff ff ff 7f", V5, 0, 0);        /* 268,435,455 */
    expect_decode("30 0a 00 01 61 06 0b ff ff ff ff 01", V5, MAL, R81); /* five bytes */
    expect_decode("30 07 00 01 61 03 0b 80 00", V5, MAL, R81);          /* non-minimal */
    expect_decode("30 05 00 01 61 05 01", V5, MAL, R81);                /* property length too long */
    expect_decode("30 06 00 01 61 02 7f 00", V5, MAL, R81);             /* unknown property */
    expect_decode("30 05 00 01 61 01 01", V5, MAL, R81);                /* value missing */
    expect_decode("30 0a 00 01 61 06 08 00 03 61 2f 2b", V5, MAL, R82); /* wildcard Response Topic */
    expect_decode("30 09 00 01 61 05 03 00 02 61 00", V5, MAL, R81);    /* U+0000 in Content Type */
    /* Too many Subscription Identifiers for the local cap. */
    expect_decode("30 16 00 01 61 12 0b 01 0b 02 0b 03 0b 04 0b 05 0b 06 0b 07 0b 08 0b 09", V5, M2M_ELIMIT,
                  M2M_MQTT_RC_IMPLEMENTATION_SPECIFIC);
}

static void test_ack_rules(void **state)
{
    (void)state;
    expect_decode("40 02 00 01", V5, 0, 0);
    expect_decode("40 03 00 01 10", V5, 0, 0);
    expect_decode("40 04 00 01 10 00", V5, 0, 0);
    expect_decode("50 04 00 01 80 00", V5, 0, 0);
    expect_decode("40 02 00 00", V5, MAL, R82); /* id 0 */
    expect_decode("70 02 00 00", V3, MAL, R82);
    expect_decode("40 05 00 01 10 02 01", V5, MAL, R81);          /* props cut short */
    expect_decode("40 08 00 01 10 04 1f 00 01 78", V5, 0, 0);     /* Reason String */
    expect_decode("40 08 00 01 10 04 22 00 01 00", V5, MAL, R81); /* Topic Alias Maximum here */
    expect_decode("e0 01 04", V5, 0, 0);
    expect_decode("e0 02 00 00", V5, 0, 0);
    expect_decode("e0 07 00 05 11 00 00 00 0a", V5, 0, 0); /* Session Expiry */
    expect_decode("e0 04 00 02 12 00", V5, MAL, R81);      /* CONNACK-only property */
    expect_decode("f0 02 18 00", V5, 0, 0);
    expect_decode("f0 05 18 03 16 00 00", V5, 0, 0);
    expect_decode("f0 05 18 03 27 00 00", V5, MAL, R81);
}

static void test_subscribe_rules(void **state)
{
    (void)state;
    expect_decode("82 06 00 01 00 01 23 00", V3, 0, 0);
    expect_decode("82 06 00 01 00 01 23 03", V3, MAL, R81);    /* QoS 3 */
    expect_decode("82 06 00 01 00 01 23 04", V3, MAL, R81);    /* 3.1.1 reserved bits */
    expect_decode("82 07 00 01 00 00 01 23 04", V5, 0, 0);     /* v5 No Local */
    expect_decode("82 07 00 01 00 00 01 23 2d", V5, 0, 0);     /* RH 2, RAP, NL, QoS 1 */
    expect_decode("82 07 00 01 00 00 01 23 40", V5, MAL, R81); /* [MQTT-3.8.3-5] */
    expect_decode("82 07 00 01 00 00 01 23 30", V5, MAL, R82); /* Retain Handling 3 */
    expect_decode("82 02 00 01", V3, MAL, R82);                /* [MQTT-3.8.3-3] no filter */
    expect_decode("82 03 00 01 00", V5, MAL, R82);
    expect_decode("82 06 00 00 00 01 23 00", V3, MAL, R82);                           /* id 0 */
    expect_decode("82 05 00 01 00 01 23", V3, MAL, R81);                              /* options missing */
    expect_decode("82 05 00 01 00 00 00", V3, MAL, M2M_MQTT_RC_TOPIC_FILTER_INVALID); /* empty filter */
    expect_decode("82 07 00 01 00 02 61 23 00", V3, MAL, M2M_MQTT_RC_TOPIC_FILTER_INVALID);
    /* [MQTT-3.8.3-4]: No Local on a shared subscription. */
    expect_decode("82 10 00 01 00 00 0a 24 73 68 61 72 65 2f 67 2f 61 04", V5, MAL, R82);
    expect_decode("82 10 00 01 00 00 0a 24 73 68 61 72 65 2f 67 2f 61 01", V5, 0, 0);
    /* One Subscription Identifier only in SUBSCRIBE. */
    expect_decode("82 0b 00 01 04 0b 01 0b 02 00 01 23 00", V5, MAL, R82);
    expect_decode("82 09 00 01 02 0b 01 00 01 23 00", V5, 0, 0);
    expect_decode("82 09 00 01 02 0b 00 00 01 23 00", V5, MAL, R82);
    expect_decode("82 0b 00 01 04 26 00 00 00 00 01 23 00", V5, MAL, R81); /* pair cut short */

    expect_decode("90 05 00 01 00 01 80", V3, 0, 0);
    expect_decode("90 05 00 01 00 01 03", V3, MAL, R81); /* [MQTT-3.9.3-2] */
    expect_decode("90 03 00 01 87", V3, MAL, R81);
    expect_decode("90 04 00 01 00 87", V5, 0, 0);
    expect_decode("90 03 00 01 00", V5, MAL, R82); /* no code */

    expect_decode("a2 05 00 01 00 01 23", V3, 0, 0);
    expect_decode("a2 02 00 01", V3, MAL, R82); /* [MQTT-3.10.3-2] */
    expect_decode("a2 06 00 01 00 00 01 2b", V5, 0, 0);
    expect_decode("a2 07 00 01 00 00 02 2b 2b", V5, MAL, M2M_MQTT_RC_TOPIC_FILTER_INVALID);
    expect_decode("a2 07 00 01 02 0b 01 00 01 23", V5, MAL, R81); /* Subscription Id in UNSUBSCRIBE */
    expect_decode("b0 04 00 01 00 11", V5, 0, 0);
    expect_decode("b0 03 00 01 00", V5, MAL, R82);
}

static void test_filter_cap(void **state)
{
    (void)state;
    /* M2M_MQTT_MAX_FILTERS + 1 filters: a local cap, not a protocol error. */
    uint8_t b[512];
    size_t n = 0;
    size_t count = M2M_MQTT_MAX_FILTERS + 1;
    size_t rl = 2 + count * 4;
    b[n++] = 0x82;
    b[n++] = (uint8_t)(0x80 | (rl & 0x7f));
    b[n++] = (uint8_t)(rl >> 7);
    b[n++] = 0;
    b[n++] = 1;
    for (size_t i = 0; i < count; i++) {
        b[n++] = 0;
        b[n++] = 1;
        b[n++] = 'a';
        b[n++] = 0;
    }
    struct m2m_mqtt_packet pkt;
    struct m2m_mqtt_diag d;
    assert_int_equal(m2m_mqtt_decode(&pkt, V3, b, n, &d), M2M_ELIMIT);
    /* Exactly at the cap decodes. */
    rl -= 4;
    b[1] = (uint8_t)(0x80 | (rl & 0x7f));
    b[2] = (uint8_t)(rl >> 7);
    assert_int_equal(m2m_mqtt_decode(&pkt, V3, b, n - 4, &d), 0);
    assert_int_equal(pkt.u.subscribe.n, M2M_MQTT_MAX_FILTERS);
}

static void test_encoder_refuses(void **state)
{
    (void)state;
    uint8_t out[256];
    size_t len;
    struct m2m_mqtt_packet pkt;
    m2m_mqtt_packet_init(&pkt, M2M_MQTT_PUBLISH, V3);
    pkt.u.publish.topic = S("a");
    pkt.u.publish.qos = 3;
    assert_int_equal(m2m_mqtt_encode(&pkt, out, sizeof out, &len), M2M_EINVAL);
    pkt.u.publish.qos = 1; /* packet id 0 */
    assert_int_equal(m2m_mqtt_encode(&pkt, out, sizeof out, &len), M2M_EINVAL);
    m2m_mqtt_packet_init(&pkt, M2M_MQTT_AUTH, V3);
    assert_int_equal(m2m_mqtt_encode(&pkt, out, sizeof out, &len), M2M_EINVAL);
    m2m_mqtt_packet_init(&pkt, M2M_MQTT_SUBSCRIBE, V5);
    assert_int_equal(m2m_mqtt_encode(&pkt, out, sizeof out, &len), M2M_EINVAL); /* no filter */
    m2m_mqtt_packet_init(&pkt, M2M_MQTT_PINGREQ, 3);
    assert_int_equal(m2m_mqtt_encode(&pkt, out, sizeof out, &len), M2M_EINVAL);
    m2m_mqtt_packet_init(&pkt, M2M_MQTT_CONNECT, V3);
    pkt.u.connect.has_password = true;
    assert_int_equal(m2m_mqtt_encode(&pkt, out, sizeof out, &len), M2M_EINVAL);
    m2m_mqtt_packet_init(&pkt, M2M_MQTT_PUBLISH, V5);
    pkt.u.publish.topic = S("a");
    m2m_mqtt_props_set(&pkt.u.publish.props, M2M_MQTT_P_SUBSCRIPTION_ID);
    pkt.u.publish.props.nsubid = 1; /* value 0 */
    assert_int_equal(m2m_mqtt_encode(&pkt, out, sizeof out, &len), M2M_EINVAL);
    assert_int_equal(m2m_mqtt_props_size(&pkt.u.publish.props), SIZE_MAX);
}

static void test_decoded_fields(void **state)
{
    (void)state;
    uint8_t b[64];
    struct m2m_mqtt_packet pkt;
    struct m2m_mqtt_diag d;
    /* v5 SUBSCRIBE options 0x2d: Retain Handling 2, RAP, No Local, QoS 1. */
    size_t n = test_unhex("82 09 00 05 02 0b 07 00 01 23 2d", b, sizeof b);
    assert_int_equal(m2m_mqtt_decode(&pkt, M2M_MQTT_V5, b, n, &d), 0);
    const struct m2m_mqtt_subscribe *s = &pkt.u.subscribe;
    assert_int_equal(s->packet_id, 5);
    assert_int_equal(s->n, 1);
    assert_int_equal(s->sub[0].qos, 1);
    assert_true(s->sub[0].no_local);
    assert_true(s->sub[0].retain_as_published);
    assert_int_equal(s->sub[0].retain_handling, 2);
    assert_int_equal(s->props.nsubid, 1);
    assert_int_equal(s->props.subid[0], 7);
    /* A failure names its rule. */
    n = test_unhex("82 02 00 01", b, sizeof b);
    assert_int_equal(m2m_mqtt_decode(&pkt, M2M_MQTT_V311, b, n, &d), M2M_EMALFORMED);
    assert_int_equal(d.reason, M2M_MQTT_RC_PROTOCOL_ERROR);
    assert_non_null(d.rule);
    assert_non_null(strstr(d.rule, "MQTT-3.8.3-3"));
    /* Will properties decoded on their own: Will Delay allowed, Topic Alias not. */
    struct m2m_mqtt_props pr;
    n = test_unhex("18 00 00 00 09", b, sizeof b);
    assert_int_equal(m2m_mqtt_props_decode(&pr, M2M_MQTT_CTX_WILL, b, n, NULL), 0);
    assert_int_equal(pr.will_delay, 9);
    n = test_unhex("23 00 01", b, sizeof b);
    assert_int_equal(m2m_mqtt_props_decode(&pr, M2M_MQTT_CTX_WILL, b, n, &d), M2M_EMALFORMED);
    assert_int_equal(d.reason, M2M_MQTT_RC_MALFORMED_PACKET);
    /* User properties survive decode -> encode through the raw block. */
    n = test_unhex("40 0b 00 01 00 07 26 00 01 6b 00 01 76", b, sizeof b);
    assert_int_equal(m2m_mqtt_decode(&pkt, M2M_MQTT_V5, b, n, NULL), 0);
    assert_int_equal(pkt.u.ack.props.nuser, 1);
    expect_encoding(&pkt, "40 0b 00 01 00 07 26 00 01 6b 00 01 76");
}

static void test_prop_table(void **state)
{
    (void)state;
    assert_int_equal(m2m_mqtt_prop_type(0x01), M2M_MQTT_PT_BYTE);
    assert_int_equal(m2m_mqtt_prop_type(0x0b), M2M_MQTT_PT_VARINT);
    assert_int_equal(m2m_mqtt_prop_type(0x13), M2M_MQTT_PT_U16);
    assert_int_equal(m2m_mqtt_prop_type(0x11), M2M_MQTT_PT_U32);
    assert_int_equal(m2m_mqtt_prop_type(0x26), M2M_MQTT_PT_PAIR);
    assert_int_equal(m2m_mqtt_prop_type(0x09), M2M_MQTT_PT_BINARY);
    assert_int_equal(m2m_mqtt_prop_type(0x1f), M2M_MQTT_PT_STRING);
    assert_int_equal(m2m_mqtt_prop_type(0x00), 0);
    assert_int_equal(m2m_mqtt_prop_type(0x04), 0);
    assert_int_equal(m2m_mqtt_prop_type(0xff), 0);
    assert_true(m2m_mqtt_prop_allowed(0x26, M2M_MQTT_AUTH));
    assert_false(m2m_mqtt_prop_allowed(0x26, M2M_MQTT_PINGREQ));
    assert_true(m2m_mqtt_prop_allowed(0x18, M2M_MQTT_CTX_WILL));
    assert_false(m2m_mqtt_prop_allowed(0x18, M2M_MQTT_CONNECT));
    assert_false(m2m_mqtt_prop_allowed(0x01, 16));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_connect_v311_mosquitto), cmocka_unit_test(test_connect_v5_vector),
        cmocka_unit_test(test_small_vectors),          cmocka_unit_test(test_roundtrip_v311),
        cmocka_unit_test(test_roundtrip_v5),           cmocka_unit_test(test_all_properties),
        cmocka_unit_test(test_user_property_iterator), cmocka_unit_test(test_frame),
        cmocka_unit_test(test_large_publish),          cmocka_unit_test(test_fixed_header),
        cmocka_unit_test(test_connect_rules),          cmocka_unit_test(test_connack_rules),
        cmocka_unit_test(test_publish_rules),          cmocka_unit_test(test_ack_rules),
        cmocka_unit_test(test_subscribe_rules),        cmocka_unit_test(test_filter_cap),
        cmocka_unit_test(test_encoder_refuses),        cmocka_unit_test(test_prop_table),
        cmocka_unit_test(test_decoded_fields),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
