/* RFC 7641 in virtual time: the server's observers (registration, sequence
 * numbers, CON/NON choice, newest-state-only while a CON is in flight, rate
 * cap, every way an observation ends) against a scripted peer, and the
 * client's observations (freshness, re-registration, cancellation) both
 * scripted and through a virtual link to a server endpoint. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>

#include "base/prng.h"
#include "coaplink.h"
#include "m2m/coap.h"
#include "vclock.h"

/* Most server tests want NON notifications to go at once, which the default
 * PROBING_RATE of 1 byte/s towards a silent observer would not allow. */
static struct m2m_coap_ep *fast_ep(uint64_t seed)
{
    struct m2m_coap_config c;
    m2m_coap_config_default(&c);
    c.tx.probing_rate = 1000000;
    return coap_test_ep(&c, seed);
}

struct dg {
    uint8_t b[2048];
    size_t n;
    struct m2m_coap_msg m;
    struct m2m_addr to;
};

static bool take(struct m2m_coap_ep *ep, struct dg *d)
{
    d->n = coap_take(ep, d->b, sizeof d->b, &d->to);
    if (!d->n)
        return false;
    assert_int_equal(m2m_coap_decode(&d->m, d->b, d->n), 0);
    return true;
}

static int64_t observe_of(const struct m2m_coap_msg *m)
{
    return m2m_coap_has_opt(m, M2M_COAP_OPT_OBSERVE) ? (int64_t)m2m_coap_get_uint(m, M2M_COAP_OPT_OBSERVE, 0)
                                                     : -1;
}

static bool payload_is(const struct m2m_coap_msg *m, const char *s)
{
    return m->payload_len == strlen(s) && !memcmp(m->payload, s, m->payload_len);
}

static struct cevent next_ev(struct m2m_coap_ep *ep, enum m2m_coap_event_type type)
{
    struct cevent e;
    assert_int_equal(coap_next_event(ep, &e), 1);
    assert_int_equal(e.type, type);
    return e;
}

static void no_event(struct m2m_coap_ep *ep)
{
    struct cevent e;
    int got = coap_next_event(ep, &e);
    if (got)
        cevent_free(&e);
    assert_int_equal(got, 0);
}

static void respond(struct m2m_coap_ep *ep, uint32_t id, uint8_t code, bool observe, const char *text,
                    int expect_rc)
{
    struct m2m_coap_msg r;
    m2m_coap_msg_init(&r, 0, code);
    if (observe)
        m2m_coap_add_uint(&r, M2M_COAP_OPT_OBSERVE, 0);
    m2m_coap_add_uint(&r, M2M_COAP_OPT_CONTENT_FORMAT, M2M_COAP_FMT_TEXT);
    r.payload = (const uint8_t *)text;
    r.payload_len = text ? strlen(text) : 0;
    assert_int_equal(m2m_coap_respond(ep, id, &r), expect_rc);
}

static int notify(struct m2m_coap_ep *ep, m2m_time now, const char *path, uint8_t code, const char *text,
                  bool con)
{
    /* notify has no clock argument: the endpoint uses the last time it saw. */
    m2m_coap_ep_on_timeout(ep, now);
    struct m2m_coap_msg s;
    m2m_coap_msg_init(&s, 0, code);
    m2m_coap_add_uint(&s, M2M_COAP_OPT_CONTENT_FORMAT, M2M_COAP_FMT_TEXT);
    s.payload = (const uint8_t *)text;
    s.payload_len = text ? strlen(text) : 0;
    return m2m_coap_notify(ep, path, &s, con);
}

/* Registers `peer` with token (t0 t1) on /x (or /y) with a CON GET
 * Observe=0 at `now`, answers with Observe, and returns the ACK. */
static void do_register(struct m2m_coap_ep *ep, m2m_time now, const struct m2m_addr *peer, uint16_t mid,
                        uint8_t t0, uint8_t t1, char pathc, struct dg *ack)
{
    char hex[64];
    snprintf(hex, sizeof hex, "42 01 %02x %02x %02x %02x 60 51 %02x", mid >> 8, mid & 0xff, t0, t1, pathc);
    coap_feed_hex(ep, now, peer, hex);
    struct cevent e = next_ev(ep, M2M_COAP_EV_REQUEST);
    assert_int_equal(e.observe, 0);
    respond(ep, e.id, M2M_COAP_CONTENT, true, "0", 0);
    cevent_free(&e);
    assert_true(take(ep, ack));
}

static void ack_hex(char *buf, size_t cap, const struct dg *d)
{
    snprintf(buf, cap, "60 00 %02x %02x", d->b[2], d->b[3]);
}

/* ---- registration and notifications -------------------------------------- */

static void test_register_and_notify(void **state)
{
    (void)state;
    struct m2m_coap_ep *ep = fast_ep(1);
    struct m2m_addr peer = test_addr(2);
    struct dg d;
    do_register(ep, 0, &peer, 0x1234, 0xa1, 0xb2, 'x', &d);
    /* ACK 2.05 with the request's MID and token, Observe 2, text/plain. */
    assert_string_equal(test_hex(d.b, d.n, (char[64]){0}, 64), "62 45 12 34 a1 b2 61 02 60 ff 30");
    assert_int_equal(m2m_coap_ep_observer_count(ep), 1);
    no_event(ep);
    int64_t prev = 2;
    uint16_t prev_mid = 0x1234;
    for (int i = 1; i <= 3; i++) {
        char text[8];
        snprintf(text, sizeof text, "%d", i);
        assert_int_equal(notify(ep, 1000 * i, "/x", M2M_COAP_CONTENT, text, false), 1);
        assert_true(take(ep, &d));
        assert_int_equal(d.m.type, M2M_COAP_NON); /* NON by default */
        assert_int_equal(d.m.code, M2M_COAP_CONTENT);
        assert_int_equal(d.m.tkl, 2);
        assert_memory_equal(d.m.token, "\xa1\xb2", 2);
        assert_int_equal(observe_of(&d.m), prev + 1);
        assert_int_not_equal(d.m.mid, prev_mid);
        assert_int_equal(m2m_coap_get_uint(&d.m, M2M_COAP_OPT_CONTENT_FORMAT, 99), 0);
        assert_true(payload_is(&d.m, text));
        assert_false(take(ep, &d));
        prev = observe_of(&d.m);
        prev_mid = d.m.mid;
    }
    /* Nobody observes /y. */
    assert_int_equal(notify(ep, 5000, "/y", M2M_COAP_CONTENT, "z", false), 0);
    assert_false(take(ep, &d));
    /* Re-registration with the same token replaces the relationship. */
    do_register(ep, 6000, &peer, 0x1240, 0xa1, 0xb2, 'x', &d);
    assert_int_equal(observe_of(&d.m), 6);
    assert_int_equal(m2m_coap_ep_observer_count(ep), 1);
    no_event(ep);
    m2m_coap_ep_free(ep);
}

static void test_observe_only_when_asked(void **state)
{
    (void)state;
    struct m2m_coap_ep *ep = fast_ep(2);
    struct m2m_addr peer = test_addr(2);
    struct dg d;
    /* A GET without Observe: the app's Observe option is dropped. */
    coap_feed_hex(ep, 0, &peer, "42 01 00 01 a1 b2 b1 78");
    struct cevent e = next_ev(ep, M2M_COAP_EV_REQUEST);
    respond(ep, e.id, M2M_COAP_CONTENT, true, "0", 0);
    cevent_free(&e);
    assert_true(take(ep, &d));
    assert_int_equal(observe_of(&d.m), -1);
    /* A GET with Observe=0 answered without Observe does not register. */
    coap_feed_hex(ep, 1, &peer, "42 01 00 02 a1 b3 60 51 78");
    e = next_ev(ep, M2M_COAP_EV_REQUEST);
    respond(ep, e.id, M2M_COAP_CONTENT, false, "0", 0);
    cevent_free(&e);
    assert_true(take(ep, &d));
    assert_int_equal(observe_of(&d.m), -1);
    /* Nor does an error answer with Observe (§3.2 / §4.1). */
    coap_feed_hex(ep, 2, &peer, "42 01 00 03 a1 b4 60 51 78");
    e = next_ev(ep, M2M_COAP_EV_REQUEST);
    respond(ep, e.id, M2M_COAP_NOT_FOUND, true, NULL, 0);
    cevent_free(&e);
    assert_true(take(ep, &d));
    assert_int_equal(d.m.code, M2M_COAP_NOT_FOUND);
    assert_int_equal(observe_of(&d.m), -1);
    assert_int_equal(m2m_coap_ep_observer_count(ep), 0);
    m2m_coap_ep_free(ep);
}

static void test_notify_con_forced(void **state)
{
    (void)state;
    struct m2m_coap_ep *ep = fast_ep(3);
    struct m2m_addr peer = test_addr(2);
    struct dg d, r;
    char hex[32];
    do_register(ep, 0, &peer, 0x1234, 0xa1, 0xb2, 'x', &d);
    assert_int_equal(notify(ep, 1000, "/x", M2M_COAP_CONTENT, "c", true), 1);
    assert_true(take(ep, &d));
    assert_int_equal(d.m.type, M2M_COAP_CON);
    assert_int_equal(observe_of(&d.m), 3);
    m2m_time due = m2m_coap_ep_next_timeout(ep);
    assert_in_range(due, 3000, 4000);
    m2m_coap_ep_on_timeout(ep, due);
    assert_true(take(ep, &r));
    assert_int_equal(r.n, d.n);
    assert_memory_equal(r.b, d.b, d.n);
    ack_hex(hex, sizeof hex, &d);
    coap_feed_hex(ep, due + 5, &peer, hex);
    assert_true(m2m_coap_ep_next_timeout(ep) > 200000); /* only dedup left */
    no_event(ep);
    assert_int_equal(m2m_coap_ep_observer_count(ep), 1);
    /* The next one is NON again. */
    assert_int_equal(notify(ep, due + 100, "/x", M2M_COAP_CONTENT, "d", false), 1);
    assert_true(take(ep, &d));
    assert_int_equal(d.m.type, M2M_COAP_NON);
    assert_int_equal(observe_of(&d.m), 4);
    m2m_coap_ep_free(ep);
}

static void run_con_every(uint32_t every)
{
    struct m2m_coap_config c;
    m2m_coap_config_default(&c);
    c.tx.probing_rate = 1000000;
    c.notify_con_every_ms = every;
    struct m2m_coap_ep *ep = coap_test_ep(&c, 4);
    struct m2m_addr peer = test_addr(2);
    struct dg d;
    char hex[32];
    do_register(ep, 0, &peer, 0x1234, 0xa1, 0xb2, 'x', &d);
    const m2m_time E = every;
    struct {
        m2m_time t;
        uint8_t type;
    } steps[] = {
        {E / 2, M2M_COAP_NON}, {E - 1, M2M_COAP_NON},     {E, M2M_COAP_CON},
        {E + 1, M2M_COAP_NON}, {2 * E - 1, M2M_COAP_NON}, {2 * E, M2M_COAP_CON},
    };
    for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++) {
        assert_int_equal(notify(ep, steps[i].t, "/x", M2M_COAP_CONTENT, "v", false), 1);
        assert_true(take(ep, &d));
        assert_int_equal(d.m.type, steps[i].type);
        if (d.m.type == M2M_COAP_CON) {
            ack_hex(hex, sizeof hex, &d);
            coap_feed_hex(ep, steps[i].t, &peer, hex);
        }
        assert_false(take(ep, &d));
    }
    no_event(ep);
    m2m_coap_ep_free(ep);
}

static void test_notify_con_every(void **state)
{
    (void)state;
    run_con_every(24u * 3600 * 1000); /* the RFC 7641 §4.5 default */
    run_con_every(10000);
}

static void test_newest_state_after_ack(void **state)
{
    (void)state;
    struct m2m_coap_ep *ep = fast_ep(5);
    struct m2m_addr peer = test_addr(2);
    struct dg a, d;
    char hex[32];
    do_register(ep, 0, &peer, 0x1234, 0xa1, 0xb2, 'x', &d);
    assert_int_equal(notify(ep, 1000, "/x", M2M_COAP_CONTENT, "A", true), 1);
    assert_true(take(ep, &a));
    assert_int_equal(a.m.type, M2M_COAP_CON);
    /* B and C while A is unacknowledged: nothing goes yet. */
    assert_int_equal(notify(ep, 1100, "/x", M2M_COAP_CONTENT, "B", false), 1);
    assert_int_equal(notify(ep, 1200, "/x", M2M_COAP_CONTENT, "C", false), 1);
    assert_false(take(ep, &d));
    ack_hex(hex, sizeof hex, &a);
    coap_feed_hex(ep, 1300, &peer, hex);
    /* Only C, with the next sequence number. */
    assert_true(take(ep, &d));
    assert_true(payload_is(&d.m, "C"));
    assert_int_equal(observe_of(&d.m), observe_of(&a.m) + 1);
    assert_int_equal(d.m.type, M2M_COAP_NON);
    assert_false(take(ep, &d));
    m2m_coap_ep_on_timeout(ep, 100000);
    assert_false(take(ep, &d));
    m2m_coap_ep_free(ep);
}

static void test_newest_state_swapped_into_retransmission(void **state)
{
    (void)state;
    struct m2m_coap_ep *ep = fast_ep(6);
    struct m2m_addr peer = test_addr(2);
    struct dg a, d;
    char hex[32];
    do_register(ep, 0, &peer, 0x1234, 0xa1, 0xb2, 'x', &d);
    assert_int_equal(notify(ep, 1000, "/x", M2M_COAP_CONTENT, "A", true), 1);
    assert_true(take(ep, &a));
    m2m_time T = m2m_coap_ep_next_timeout(ep) - 1000;
    assert_int_equal(notify(ep, 1100, "/x", M2M_COAP_CONTENT, "B", false), 1);
    assert_false(take(ep, &d));
    /* The retransmission carries B: new MID, newer Observe, same timing. */
    m2m_coap_ep_on_timeout(ep, 1000 + T);
    assert_true(take(ep, &d));
    assert_int_equal(d.m.type, M2M_COAP_CON);
    assert_true(payload_is(&d.m, "B"));
    assert_int_equal(observe_of(&d.m), observe_of(&a.m) + 1);
    assert_int_not_equal(d.m.mid, a.m.mid);
    assert_int_equal(m2m_coap_ep_next_timeout(ep), 1000 + 3 * T);
    /* A late ACK for A's MID is stale; the retransmission goes on. */
    ack_hex(hex, sizeof hex, &a);
    coap_feed_hex(ep, 1000 + T + 10, &peer, hex);
    assert_int_equal(m2m_coap_ep_next_timeout(ep), 1000 + 3 * T);
    ack_hex(hex, sizeof hex, &d);
    coap_feed_hex(ep, 1000 + T + 20, &peer, hex);
    assert_true(m2m_coap_ep_next_timeout(ep) > 200000);
    assert_int_equal(m2m_coap_ep_observer_count(ep), 1);
    /* A final state swapped in ends the observation. */
    assert_int_equal(notify(ep, 20000, "/x", M2M_COAP_CONTENT, "C", true), 1);
    assert_true(take(ep, &a));
    T = m2m_coap_ep_next_timeout(ep) - 20000;
    assert_int_equal(notify(ep, 20100, "/x", M2M_COAP_NOT_FOUND, NULL, false), 1);
    assert_false(take(ep, &d));
    m2m_coap_ep_on_timeout(ep, 20000 + T);
    assert_true(take(ep, &d));
    assert_int_equal(d.m.code, M2M_COAP_NOT_FOUND);
    assert_int_equal(observe_of(&d.m), -1);
    assert_int_equal(m2m_coap_ep_observer_count(ep), 0);
    struct cevent e = next_ev(ep, M2M_COAP_EV_OBSERVER_GONE);
    assert_string_equal(e.path, "/x");
    cevent_free(&e);
    ack_hex(hex, sizeof hex, &d);
    coap_feed_hex(ep, 20000 + T + 1, &peer, hex);
    assert_true(m2m_coap_ep_next_timeout(ep) > 200000);
    m2m_coap_ep_free(ep);
}

static void test_forced_con_stays_forced(void **state)
{
    (void)state;
    struct m2m_coap_ep *ep = fast_ep(9);
    struct m2m_addr peer = test_addr(2);
    struct dg a, d;
    char hex[32];
    do_register(ep, 0, &peer, 0x1234, 0xa1, 0xb2, 'x', &d);
    assert_int_equal(notify(ep, 1000, "/x", M2M_COAP_CONTENT, "A", true), 1);
    assert_true(take(ep, &a));
    /* B must be confirmable; C replaces it before it could go. */
    assert_int_equal(notify(ep, 1100, "/x", M2M_COAP_CONTENT, "B", true), 1);
    assert_int_equal(notify(ep, 1200, "/x", M2M_COAP_CONTENT, "C", false), 1);
    ack_hex(hex, sizeof hex, &a);
    coap_feed_hex(ep, 1300, &peer, hex);
    assert_true(take(ep, &d));
    assert_true(payload_is(&d.m, "C"));
    assert_int_equal(d.m.type, M2M_COAP_CON);
    m2m_coap_ep_free(ep);
}

static void test_queued_con_takes_newest_state(void **state)
{
    (void)state;
    struct m2m_coap_ep *ep = fast_ep(10);
    struct m2m_addr peer = test_addr(2);
    struct dg a, d;
    char hex[32];
    do_register(ep, 0, &peer, 0x1234, 0xa1, 0xb2, 'x', &d);
    do_register(ep, 0, &peer, 0x1235, 0xa1, 0xb3, 'y', &d);
    assert_int_equal(notify(ep, 1000, "/x", M2M_COAP_CONTENT, "X", true), 1);
    assert_true(take(ep, &a));
    /* /y's CON waits for NSTART; newer states replace what it carries. */
    assert_int_equal(notify(ep, 1100, "/y", M2M_COAP_CONTENT, "1", true), 1);
    assert_int_equal(notify(ep, 1200, "/y", M2M_COAP_CONTENT, "2", false), 1);
    assert_int_equal(notify(ep, 1300, "/y", M2M_COAP_CONTENT, "3", false), 1);
    assert_false(take(ep, &d));
    ack_hex(hex, sizeof hex, &a);
    coap_feed_hex(ep, 1400, &peer, hex);
    assert_true(take(ep, &d));
    assert_int_equal(d.m.type, M2M_COAP_CON);
    assert_memory_equal(d.m.token, "\xa1\xb3", 2);
    assert_true(payload_is(&d.m, "3"));
    assert_false(take(ep, &d));
    int64_t seq = observe_of(&d.m);
    ack_hex(hex, sizeof hex, &d);
    coap_feed_hex(ep, 1500, &peer, hex);
    assert_false(take(ep, &d));
    assert_int_equal(notify(ep, 1600, "/y", M2M_COAP_CONTENT, "4", false), 1);
    assert_true(take(ep, &d));
    assert_int_equal(observe_of(&d.m), seq + 1);
    m2m_coap_ep_free(ep);
}

static void test_min_interval_coalesces(void **state)
{
    (void)state;
    struct m2m_coap_config c;
    m2m_coap_config_default(&c);
    c.tx.probing_rate = 1000000;
    c.notify_min_interval_ms = 5000;
    struct m2m_coap_ep *ep = coap_test_ep(&c, 7);
    struct m2m_addr peer = test_addr(2);
    struct dg d;
    do_register(ep, 0, &peer, 0x1234, 0xa1, 0xb2, 'x', &d);
    assert_int_equal(notify(ep, 1000, "/x", M2M_COAP_CONTENT, "1", false), 1);
    assert_false(take(ep, &d)); /* 5 s after the registration at the earliest */
    assert_int_equal(notify(ep, 2000, "/x", M2M_COAP_CONTENT, "2", false), 1);
    assert_int_equal(notify(ep, 3000, "/x", M2M_COAP_CONTENT, "3", false), 1);
    assert_int_equal(m2m_coap_ep_next_timeout(ep), 5000);
    m2m_coap_ep_on_timeout(ep, 4999);
    assert_false(take(ep, &d));
    m2m_coap_ep_on_timeout(ep, 5000);
    assert_true(take(ep, &d));
    assert_true(payload_is(&d.m, "3"));
    assert_int_equal(observe_of(&d.m), 3);
    assert_false(take(ep, &d));
    /* After a quiet spell the next one goes at once. */
    assert_int_equal(notify(ep, 20000, "/x", M2M_COAP_CONTENT, "4", false), 1);
    assert_true(take(ep, &d));
    assert_int_equal(observe_of(&d.m), 4);
    assert_int_equal(notify(ep, 21000, "/x", M2M_COAP_CONTENT, "5", false), 1);
    assert_false(take(ep, &d));
    assert_int_equal(m2m_coap_ep_next_timeout(ep), 25000);
    /* A final state is not held back. */
    assert_int_equal(notify(ep, 22000, "/x", M2M_COAP_NOT_FOUND, NULL, false), 1);
    assert_true(take(ep, &d));
    assert_int_equal(d.m.code, M2M_COAP_NOT_FOUND);
    assert_int_equal(m2m_coap_ep_observer_count(ep), 0);
    m2m_coap_ep_on_timeout(ep, 25000);
    assert_true(take(ep, &d)); /* only the CON 4.04's retransmission */
    assert_int_equal(d.m.code, M2M_COAP_NOT_FOUND);
    m2m_coap_ep_free(ep);
}

/* NON notifications are paced by the application and notify_min_interval_ms,
 * not by PROBING_RATE: observers never answer them, so the 1 byte/s default
 * would starve every observation (a project decision; RFC 7641 §4.5.1 only
 * advises one per RTT). Newer states never queue up behind older ones. */
static void test_non_notifications_not_probing_limited(void **state)
{
    (void)state;
    struct m2m_coap_config c;
    m2m_coap_config_default(&c); /* PROBING_RATE 1 byte/s */
    struct m2m_coap_ep *ep = coap_test_ep(&c, 8);
    struct m2m_addr peer = test_addr(2);
    struct dg d;
    do_register(ep, 0, &peer, 0x1234, 0xa1, 0xb2, 'x', &d);
    for (int i = 1; i <= 20; i++) {
        char text[8];
        snprintf(text, sizeof text, "%d", i % 10);
        assert_int_equal(notify(ep, 1000 + 10 * i, "/x", M2M_COAP_CONTENT, text, false), 1);
        assert_true(take(ep, &d));
        assert_int_equal(d.m.type, M2M_COAP_NON);
        assert_true(payload_is(&d.m, text));
        assert_int_equal(observe_of(&d.m), 2 + i);
        assert_false(take(ep, &d));
    }
    /* Nothing was left queued for later. */
    assert_true(m2m_coap_ep_next_timeout(ep) > 200000);
    m2m_coap_ep_free(ep);
}

/* ---- how observations end -------------------------------------------------- */

static void gone(struct m2m_coap_ep *ep, const char *path, const struct m2m_addr *peer)
{
    struct cevent e = next_ev(ep, M2M_COAP_EV_OBSERVER_GONE);
    assert_string_equal(e.path, path);
    assert_memory_equal(e.peer.b, peer->b, peer->len);
    cevent_free(&e);
}

static void test_dereg_get_observe1(void **state)
{
    (void)state;
    struct m2m_coap_ep *ep = fast_ep(11);
    struct m2m_addr peer = test_addr(2);
    struct dg d;
    do_register(ep, 0, &peer, 0x1234, 0xa1, 0xb2, 'x', &d);
    /* Observe=1 with another token deregisters nothing. */
    coap_feed_hex(ep, 100, &peer, "42 01 12 35 a1 b3 61 01 51 78");
    struct cevent e = next_ev(ep, M2M_COAP_EV_REQUEST);
    respond(ep, e.id, M2M_COAP_CONTENT, true, "1", 0);
    cevent_free(&e);
    assert_true(take(ep, &d));
    assert_int_equal(observe_of(&d.m), -1);
    assert_int_equal(m2m_coap_ep_observer_count(ep), 1);
    /* Same token: deregistered, then served as a plain GET. */
    coap_feed_hex(ep, 200, &peer, "42 01 12 36 a1 b2 61 01 51 78");
    gone(ep, "/x", &peer);
    e = next_ev(ep, M2M_COAP_EV_REQUEST);
    respond(ep, e.id, M2M_COAP_CONTENT, true, "1", 0);
    cevent_free(&e);
    assert_true(take(ep, &d));
    assert_string_equal(test_hex(d.b, d.n, (char[64]){0}, 64), "62 45 12 36 a1 b2 c0 ff 31");
    assert_int_equal(m2m_coap_ep_observer_count(ep), 0);
    assert_int_equal(notify(ep, 300, "/x", M2M_COAP_CONTENT, "2", false), 0);
    assert_false(take(ep, &d));
    no_event(ep);
    assert_int_equal(m2m_coap_ep_peer_count(ep), 0);
    m2m_coap_ep_free(ep);
}

static void test_dereg_rst_non(void **state)
{
    (void)state;
    struct m2m_coap_ep *ep = fast_ep(12);
    struct m2m_addr peer = test_addr(2), other = test_addr(3);
    struct dg d;
    char hex[32];
    do_register(ep, 0, &peer, 0x1234, 0xa1, 0xb2, 'x', &d);
    assert_int_equal(notify(ep, 1000, "/x", M2M_COAP_CONTENT, "1", false), 1);
    assert_true(take(ep, &d));
    /* A RST for another MID, or from another peer, changes nothing. */
    snprintf(hex, sizeof hex, "70 00 %02x %02x", d.b[2], (uint8_t)(d.b[3] + 1));
    coap_feed_hex(ep, 1100, &peer, hex);
    ack_hex(hex, sizeof hex, &d);
    hex[0] = '7';
    coap_feed_hex(ep, 1200, &other, hex);
    assert_int_equal(m2m_coap_ep_observer_count(ep), 1);
    no_event(ep);
    coap_feed_hex(ep, 1300, &peer, hex);
    assert_int_equal(m2m_coap_ep_observer_count(ep), 0);
    gone(ep, "/x", &peer);
    no_event(ep);
    assert_false(take(ep, &d));
    m2m_coap_ep_free(ep);
}

static void test_dereg_rst_con(void **state)
{
    (void)state;
    struct m2m_coap_ep *ep = fast_ep(13);
    struct m2m_addr peer = test_addr(2);
    struct dg d;
    char hex[32];
    do_register(ep, 0, &peer, 0x1234, 0xa1, 0xb2, 'x', &d);
    assert_int_equal(notify(ep, 1000, "/x", M2M_COAP_CONTENT, "1", true), 1);
    assert_true(take(ep, &d));
    assert_int_equal(d.m.type, M2M_COAP_CON);
    snprintf(hex, sizeof hex, "70 00 %02x %02x", d.b[2], d.b[3]);
    coap_feed_hex(ep, 1100, &peer, hex);
    assert_int_equal(m2m_coap_ep_observer_count(ep), 0);
    gone(ep, "/x", &peer);
    assert_true(m2m_coap_ep_next_timeout(ep) > 200000); /* no retransmission */
    assert_int_equal(m2m_coap_ep_peer_count(ep), 0);
    m2m_coap_ep_free(ep);
}

static void test_dereg_con_timeout(void **state)
{
    (void)state;
    struct m2m_coap_ep *ep = fast_ep(14);
    struct m2m_addr peer = test_addr(2);
    struct dg d;
    do_register(ep, 0, &peer, 0x1234, 0xa1, 0xb2, 'x', &d);
    assert_int_equal(notify(ep, 1000, "/x", M2M_COAP_CONTENT, "1", true), 1);
    assert_true(take(ep, &d));
    m2m_time T = m2m_coap_ep_next_timeout(ep) - 1000;
    int sent = 1;
    for (int k = 1; k <= 4; k++) {
        m2m_coap_ep_on_timeout(ep, 1000 + ((1 << k) - 1) * T);
        while (take(ep, &d))
            sent++;
    }
    assert_int_equal(sent, 5);
    assert_int_equal(m2m_coap_ep_observer_count(ep), 1);
    no_event(ep);
    m2m_coap_ep_on_timeout(ep, 1000 + 31 * T);
    assert_false(take(ep, &d));
    assert_int_equal(m2m_coap_ep_observer_count(ep), 0);
    gone(ep, "/x", &peer);
    m2m_coap_ep_free(ep);
}

static void test_final_state_ends_path(void **state)
{
    (void)state;
    struct m2m_coap_ep *ep = fast_ep(15);
    struct m2m_addr p2 = test_addr(2), p3 = test_addr(3);
    struct dg d;
    do_register(ep, 0, &p2, 0x1000, 0xa1, 0xb2, 'x', &d);
    do_register(ep, 0, &p2, 0x1001, 0xa1, 0xb3, 'x', &d);
    do_register(ep, 0, &p3, 0x2000, 0xa1, 0xb2, 'x', &d);
    do_register(ep, 0, &p3, 0x2001, 0xc1, 0xc2, 'y', &d);
    assert_int_equal(m2m_coap_ep_observer_count(ep), 4);
    assert_int_equal(notify(ep, 1000, "/x", M2M_COAP_NOT_FOUND, "gone", false), 3);
    int seen = 0;
    while (take(ep, &d)) {
        seen++;
        /* An error state is a CON without Observe (§4.2, §3.2). */
        assert_int_equal(d.m.type, M2M_COAP_CON);
        assert_int_equal(d.m.code, M2M_COAP_NOT_FOUND);
        assert_int_equal(observe_of(&d.m), -1);
        assert_true(payload_is(&d.m, "gone"));
    }
    assert_int_equal(seen, 2); /* the second CON to p2 waits for NSTART */
    assert_int_equal(m2m_coap_ep_observer_count(ep), 1);
    for (int i = 0; i < 3; i++) {
        struct cevent e = next_ev(ep, M2M_COAP_EV_OBSERVER_GONE);
        assert_string_equal(e.path, "/x");
        cevent_free(&e);
    }
    no_event(ep);
    assert_int_equal(notify(ep, 1100, "/x", M2M_COAP_CONTENT, "back", false), 0);
    assert_int_equal(notify(ep, 1200, "/y", M2M_COAP_CONTENT, "still", false), 1);
    assert_true(take(ep, &d));
    assert_true(payload_is(&d.m, "still"));
    m2m_coap_ep_free(ep);
}

static void test_max_observers(void **state)
{
    (void)state;
    struct m2m_coap_config c;
    m2m_coap_config_default(&c);
    c.max_observers = 1;
    struct m2m_coap_ep *ep = coap_test_ep(&c, 16);
    struct m2m_addr p2 = test_addr(2), p3 = test_addr(3);
    struct dg d;
    do_register(ep, 0, &p2, 0x1000, 0xa1, 0xb2, 'x', &d);
    assert_int_equal(observe_of(&d.m), 2);
    coap_feed_hex(ep, 10, &p3, "42 01 20 00 a1 b2 60 51 78");
    struct cevent e = next_ev(ep, M2M_COAP_EV_REQUEST);
    respond(ep, e.id, M2M_COAP_CONTENT, true, "0", M2M_ELIMIT);
    cevent_free(&e);
    assert_true(take(ep, &d));
    assert_string_equal(test_hex(d.b, d.n, (char[64]){0}, 64), "62 45 20 00 a1 b2 c0 ff 30");
    assert_int_equal(m2m_coap_ep_observer_count(ep), 1);
    /* The existing observer may still re-register. */
    do_register(ep, 20, &p2, 0x1001, 0xa1, 0xb2, 'x', &d);
    assert_int_equal(observe_of(&d.m), 3);
    m2m_coap_ep_free(ep);
}

/* ---- client side, scripted server ---------------------------------------- */

struct obs_client {
    struct m2m_coap_ep *ep;
    struct m2m_addr srv;
    uint32_t id;
    uint8_t tok[8];
    uint8_t tkl;
};

static void start_observe(struct obs_client *oc, uint64_t seed, m2m_time now, uint8_t type)
{
    struct m2m_coap_config c;
    m2m_coap_config_default(&c);
    oc->ep = coap_test_ep(&c, seed);
    oc->srv = test_addr(9);
    struct m2m_coap_msg req;
    m2m_coap_msg_init(&req, type, M2M_COAP_GET);
    m2m_coap_add_uint(&req, M2M_COAP_OPT_OBSERVE, 0);
    m2m_coap_add_path(&req, M2M_COAP_OPT_URI_PATH, "/temp");
    assert_int_equal(m2m_coap_request(oc->ep, now, &oc->srv, &req, &oc->id), 0);
    struct dg d;
    assert_true(take(oc->ep, &d));
    assert_int_equal(d.m.code, M2M_COAP_GET);
    assert_int_equal(observe_of(&d.m), 0);
    oc->tkl = d.m.tkl;
    memcpy(oc->tok, d.m.token, d.m.tkl);
    /* Piggybacked (or NON) registration answer, Observe 10, Max-Age 10. */
    char hex[128], tok[32];
    test_hex(oc->tok, oc->tkl, tok, sizeof tok);
    snprintf(hex, sizeof hex, "%x 45 %02x %02x %s 61 0a 81 0a ff 52", type == M2M_COAP_CON ? 0x64 : 0x54,
             d.b[2], type == M2M_COAP_CON ? d.b[3] : (uint8_t)(d.b[3] + 100), tok);
    coap_feed_hex(oc->ep, now + 50, &oc->srv, hex);
    assert_false(take(oc->ep, &d));
    struct cevent e = next_ev(oc->ep, M2M_COAP_EV_RESPONSE);
    assert_int_equal(e.id, oc->id);
    assert_int_equal(e.observe, 10);
    assert_string_equal((char *)e.payload, "R");
    cevent_free(&e);
}

static void feed_notification(struct obs_client *oc, m2m_time now, uint8_t type, uint16_t mid, uint32_t seq,
                              const char *payload)
{
    char hex[128], tok[32], obs[16];
    test_hex(oc->tok, oc->tkl, tok, sizeof tok);
    if (seq < 256)
        snprintf(obs, sizeof obs, "61 %02x", seq);
    else if (seq < 65536)
        snprintf(obs, sizeof obs, "62 %02x %02x", seq >> 8, seq & 0xff);
    else
        snprintf(obs, sizeof obs, "63 %02x %02x %02x", seq >> 16, (seq >> 8) & 0xff, seq & 0xff);
    snprintf(hex, sizeof hex, "%x 45 %02x %02x %s %s 81 0a ff %02x", type == M2M_COAP_CON ? 0x44 : 0x54,
             mid >> 8, mid & 0xff, tok, obs, (uint8_t)payload[0]);
    coap_feed_hex(oc->ep, now, &oc->srv, hex);
}

static void expect_notify(struct obs_client *oc, const char *payload, int64_t seq)
{
    struct cevent e = next_ev(oc->ep, M2M_COAP_EV_NOTIFY);
    assert_int_equal(e.id, oc->id);
    assert_string_equal((char *)e.payload, payload);
    assert_int_equal(e.observe, seq);
    cevent_free(&e);
}

static void test_client_freshness(void **state)
{
    (void)state;
    struct obs_client oc;
    struct dg d;
    start_observe(&oc, 21, 0, M2M_COAP_CON);
    feed_notification(&oc, 1000, M2M_COAP_NON, 0x0100, 12, "a");
    expect_notify(&oc, "a", 12);
    /* Reordered: 11 arrives after 12 and is dropped, silently. */
    feed_notification(&oc, 1100, M2M_COAP_NON, 0x0101, 11, "b");
    no_event(oc.ep);
    assert_false(take(oc.ep, &d));
    /* Same number again (a different message): not fresher either. */
    feed_notification(&oc, 1200, M2M_COAP_NON, 0x0102, 12, "c");
    no_event(oc.ep);
    /* A stale CON is still acknowledged. */
    feed_notification(&oc, 1300, M2M_COAP_CON, 0x0103, 5, "d");
    assert_true(take(oc.ep, &d));
    assert_string_equal(test_hex(d.b, d.n, (char[32]){0}, 32), "60 00 01 03");
    no_event(oc.ep);
    feed_notification(&oc, 1400, M2M_COAP_CON, 0x0104, 13, "e");
    assert_true(take(oc.ep, &d));
    assert_string_equal(test_hex(d.b, d.n, (char[32]){0}, 32), "60 00 01 04");
    expect_notify(&oc, "e", 13);
    /* Jumps of less than 2^23 forward are fresh... */
    feed_notification(&oc, 1500, M2M_COAP_NON, 0x0105, 13 + (1u << 23) - 1, "f");
    expect_notify(&oc, "f", 13 + (1u << 23) - 1);
    /* ...and the 24-bit numbers wrap. */
    feed_notification(&oc, 1600, M2M_COAP_NON, 0x0106, 0xfffffe, "g");
    expect_notify(&oc, "g", 0xfffffe);
    feed_notification(&oc, 1700, M2M_COAP_NON, 0x0107, 3, "h");
    expect_notify(&oc, "h", 3);
    feed_notification(&oc, 1800, M2M_COAP_NON, 0x0108, 0xffffff, "i");
    no_event(oc.ep);
    /* After 128 s an older number is taken as new (§3.4). */
    feed_notification(&oc, 1700 + 128000, M2M_COAP_NON, 0x0109, 2, "j");
    no_event(oc.ep);
    feed_notification(&oc, 1700 + 128001, M2M_COAP_NON, 0x010a, 2, "k");
    expect_notify(&oc, "k", 2);
    /* Duplicates (same MID) are dropped at the message layer. */
    feed_notification(&oc, 1700 + 128002, M2M_COAP_NON, 0x010a, 9, "l");
    no_event(oc.ep);
    m2m_coap_ep_free(oc.ep);
}

static void test_client_reregisters(void **state)
{
    (void)state;
    struct obs_client oc;
    struct dg d;
    start_observe(&oc, 22, 0, M2M_COAP_CON);
    /* Max-Age 10 s + 2 s margin since the answer at 50. */
    assert_int_equal(m2m_coap_ep_next_timeout(oc.ep), 50 + 12000);
    feed_notification(&oc, 5000, M2M_COAP_NON, 0x0200, 11, "a");
    expect_notify(&oc, "a", 11);
    assert_int_equal(m2m_coap_ep_next_timeout(oc.ep), 5000 + 12000);
    /* A stale one does not push the deadline. */
    feed_notification(&oc, 6000, M2M_COAP_NON, 0x0201, 10, "z");
    no_event(oc.ep);
    assert_int_equal(m2m_coap_ep_next_timeout(oc.ep), 5000 + 12000);
    m2m_coap_ep_on_timeout(oc.ep, 16999);
    assert_false(take(oc.ep, &d));
    m2m_coap_ep_on_timeout(oc.ep, 17000);
    assert_true(take(oc.ep, &d));
    /* Same token, GET Observe=0 again, a new MID. */
    assert_int_equal(d.m.type, M2M_COAP_CON);
    assert_int_equal(d.m.code, M2M_COAP_GET);
    assert_int_equal(observe_of(&d.m), 0);
    assert_int_equal(d.m.tkl, oc.tkl);
    assert_memory_equal(d.m.token, oc.tok, oc.tkl);
    no_event(oc.ep);
    /* The server answers with a lower number (it restarted): still the
     * answer to our request, and the observation goes on. */
    char hex[128], tok[32];
    test_hex(oc.tok, oc.tkl, tok, sizeof tok);
    snprintf(hex, sizeof hex, "64 45 %02x %02x %s 61 03 81 0a ff 53", d.b[2], d.b[3], tok);
    coap_feed_hex(oc.ep, 17100, &oc.srv, hex);
    expect_notify(&oc, "S", 3);
    assert_int_equal(m2m_coap_ep_next_timeout(oc.ep), 17100 + 12000);
    feed_notification(&oc, 18000, M2M_COAP_NON, 0x0202, 4, "b");
    expect_notify(&oc, "b", 4);
    /* If the server never answers the re-registration, the observation
     * fails like any request. */
    m2m_coap_ep_on_timeout(oc.ep, 30000);
    assert_true(take(oc.ep, &d));
    m2m_time t;
    while ((t = m2m_coap_ep_next_timeout(oc.ep)) < 200000) {
        m2m_coap_ep_on_timeout(oc.ep, t);
        while (take(oc.ep, &d))
            ;
        struct cevent e;
        if (coap_next_event(oc.ep, &e)) {
            assert_int_equal(e.type, M2M_COAP_EV_FAILED);
            assert_int_equal(e.id, oc.id);
            assert_int_equal(e.err, M2M_ETIMEDOUT);
            cevent_free(&e);
            break;
        }
    }
    assert_true(t < 200000);
    m2m_coap_ep_free(oc.ep);
}

static void test_client_cancel(void **state)
{
    (void)state;
    struct obs_client oc;
    struct dg d;
    char hex[128], tok[32];
    /* deregister=false: forget it; the next notification gets a RST. */
    start_observe(&oc, 23, 0, M2M_COAP_CON);
    feed_notification(&oc, 1000, M2M_COAP_NON, 0x0300, 11, "a");
    expect_notify(&oc, "a", 11);
    assert_int_equal(m2m_coap_cancel(oc.ep, 1100, oc.id, false), 0);
    assert_false(take(oc.ep, &d));
    assert_int_equal(m2m_coap_cancel(oc.ep, 1100, oc.id, false), M2M_ENOTFOUND);
    feed_notification(&oc, 2000, M2M_COAP_NON, 0x0301, 12, "b");
    assert_true(take(oc.ep, &d));
    assert_string_equal(test_hex(d.b, d.n, (char[32]){0}, 32), "70 00 03 01");
    no_event(oc.ep);
    assert_int_equal(m2m_coap_ep_next_timeout(oc.ep) > 100000, true);
    m2m_coap_ep_free(oc.ep);

    /* deregister=true: GET with Observe=1 and the same token. */
    start_observe(&oc, 24, 0, M2M_COAP_CON);
    feed_notification(&oc, 1000, M2M_COAP_NON, 0x0400, 11, "a");
    expect_notify(&oc, "a", 11);
    assert_int_equal(m2m_coap_cancel(oc.ep, 1100, oc.id, true), 0);
    assert_true(take(oc.ep, &d));
    assert_int_equal(d.m.type, M2M_COAP_CON);
    assert_int_equal(d.m.code, M2M_COAP_GET);
    assert_int_equal(observe_of(&d.m), 1);
    assert_memory_equal(d.m.token, oc.tok, oc.tkl);
    char path[16];
    assert_int_equal(m2m_coap_msg_path(&d.m, path, sizeof path), 0);
    assert_string_equal(path, "/temp");
    /* A notification crossing the deregistration is not its answer. */
    feed_notification(&oc, 1150, M2M_COAP_NON, 0x0401, 12, "b");
    no_event(oc.ep);
    test_hex(oc.tok, oc.tkl, tok, sizeof tok);
    snprintf(hex, sizeof hex, "64 45 %02x %02x %s ff 44", d.b[2], d.b[3], tok);
    coap_feed_hex(oc.ep, 1200, &oc.srv, hex);
    struct cevent e = next_ev(oc.ep, M2M_COAP_EV_RESPONSE);
    assert_int_equal(e.id, oc.id);
    assert_int_equal(e.observe, -1);
    assert_string_equal((char *)e.payload, "D");
    cevent_free(&e);
    no_event(oc.ep);
    feed_notification(&oc, 2000, M2M_COAP_NON, 0x0402, 13, "c");
    assert_true(take(oc.ep, &d));
    assert_string_equal(test_hex(d.b, d.n, (char[32]){0}, 32), "70 00 04 02");
    no_event(oc.ep);
    m2m_coap_ep_free(oc.ep);
}

static void test_client_observe_refused(void **state)
{
    (void)state;
    struct m2m_coap_config c;
    m2m_coap_config_default(&c);
    struct m2m_coap_ep *ep = coap_test_ep(&c, 25);
    struct m2m_addr srv = test_addr(9);
    struct m2m_coap_msg req;
    uint32_t id;
    m2m_coap_msg_init(&req, M2M_COAP_CON, M2M_COAP_GET);
    m2m_coap_add_uint(&req, M2M_COAP_OPT_OBSERVE, 0);
    assert_int_equal(m2m_coap_request(ep, 0, &srv, &req, &id), 0);
    struct dg d;
    assert_true(take(ep, &d));
    char hex[64], tok[32];
    test_hex(d.m.token, d.m.tkl, tok, sizeof tok);
    /* The server answers without Observe: a plain response, then done. */
    snprintf(hex, sizeof hex, "64 45 %02x %02x %s ff 50", d.b[2], d.b[3], tok);
    coap_feed_hex(ep, 10, &srv, hex);
    struct cevent e = next_ev(ep, M2M_COAP_EV_RESPONSE);
    assert_int_equal(e.id, id);
    cevent_free(&e);
    assert_int_equal(m2m_coap_ep_next_timeout(ep), M2M_NEVER);
    assert_int_equal(m2m_coap_cancel(ep, 20, id, true), M2M_ENOTFOUND);
    m2m_coap_ep_free(ep);
}

/* A notification carrying the first block of a large state, as a NON
 * from the scripted server. */
static void feed_block_notification(struct obs_client *oc, m2m_time now, uint16_t mid, uint32_t seq,
                                    uint8_t fill)
{
    uint8_t b[1200];
    struct m2m_coap_msg m;
    m2m_coap_msg_init(&m, M2M_COAP_NON, M2M_COAP_CONTENT);
    m.mid = mid;
    m.tkl = oc->tkl;
    memcpy(m.token, oc->tok, oc->tkl);
    m2m_coap_add_uint(&m, M2M_COAP_OPT_OBSERVE, seq);
    struct m2m_coap_block blk = {.num = 0, .more = true, .szx = 6};
    m2m_coap_add_block(&m, M2M_COAP_OPT_BLOCK2, &blk);
    uint8_t body[1024];
    memset(body, fill, sizeof body);
    m.payload = body;
    m.payload_len = sizeof body;
    size_t n;
    assert_int_equal(m2m_coap_encode(&m, b, sizeof b, &n), 0);
    assert_int_equal(m2m_coap_ep_feed(oc->ep, now, &oc->srv, b, n), 0);
}

/* Answers the block request `d` with the last block (num 1, 10 bytes). */
static void answer_block1(struct obs_client *oc, m2m_time now, const struct dg *d, uint8_t fill)
{
    uint8_t b[128];
    struct m2m_coap_msg m;
    m2m_coap_msg_init(&m, M2M_COAP_ACK, M2M_COAP_CONTENT);
    m.mid = d->m.mid;
    m.tkl = d->m.tkl;
    memcpy(m.token, d->m.token, d->m.tkl);
    struct m2m_coap_block blk = {.num = 1, .more = false, .szx = 6};
    m2m_coap_add_block(&m, M2M_COAP_OPT_BLOCK2, &blk);
    uint8_t body[10];
    memset(body, fill, sizeof body);
    m.payload = body;
    m.payload_len = sizeof body;
    size_t n;
    assert_int_equal(m2m_coap_encode(&m, b, sizeof b, &n), 0);
    assert_int_equal(m2m_coap_ep_feed(oc->ep, now, &oc->srv, b, n), 0);
}

static void test_client_stale_during_fetch(void **state)
{
    (void)state;
    struct obs_client oc;
    struct dg d, r;
    start_observe(&oc, 26, 0, M2M_COAP_CON);
    feed_block_notification(&oc, 1000, 0x0500, 12, 'a');
    no_event(oc.ep);
    /* The client asks for block 1, with a new token and no Observe. */
    assert_true(take(oc.ep, &d));
    assert_int_equal(d.m.type, M2M_COAP_CON);
    assert_int_equal(d.m.code, M2M_COAP_GET);
    assert_int_equal(observe_of(&d.m), -1);
    assert_int_equal(m2m_coap_get_uint(&d.m, M2M_COAP_OPT_BLOCK2, 0), 0x16);
    assert_false(d.m.tkl == oc.tkl && !memcmp(d.m.token, oc.tok, oc.tkl));
    /* A stale notification in between changes nothing: the block request
     * is still retransmitted and its answer completes the body. */
    feed_notification(&oc, 1100, M2M_COAP_NON, 0x0501, 11, "s");
    no_event(oc.ep);
    m2m_coap_ep_on_timeout(oc.ep, 1000 + 3000);
    assert_true(take(oc.ep, &r));
    assert_int_equal(r.n, d.n);
    assert_memory_equal(r.b, d.b, d.n);
    answer_block1(&oc, 4100, &d, 'b');
    struct cevent e = next_ev(oc.ep, M2M_COAP_EV_NOTIFY);
    assert_int_equal(e.id, oc.id);
    assert_int_equal(e.len, 1034);
    assert_int_equal(e.payload[0], 'a');
    assert_int_equal(e.payload[1033], 'b');
    cevent_free(&e);
    no_event(oc.ep);
    /* The fetch did not disturb the Max-Age deadline of notification 12. */
    assert_int_equal(m2m_coap_ep_next_timeout(oc.ep), 1000 + 60000 + 2000);
    m2m_coap_ep_free(oc.ep);
}

static void test_client_fresh_replaces_fetch(void **state)
{
    (void)state;
    struct obs_client oc;
    struct dg d;
    start_observe(&oc, 27, 0, M2M_COAP_CON);
    feed_block_notification(&oc, 1000, 0x0600, 12, 'a');
    assert_true(take(oc.ep, &d));
    /* Notification 13 arrives whole before block 1 of 12 did. */
    feed_notification(&oc, 1100, M2M_COAP_NON, 0x0601, 13, "n");
    expect_notify(&oc, "n", 13);
    /* The block request is abandoned, and its late answer ignored. */
    assert_int_equal(m2m_coap_ep_next_timeout(oc.ep), 1100 + 12000);
    answer_block1(&oc, 1200, &d, 'b');
    no_event(oc.ep);
    assert_false(take(oc.ep, &d));
    m2m_coap_ep_free(oc.ep);
}

/* ---- client and server through a virtual link ---------------------------- */

struct srv_app {
    int registered;
    const char *value;
    bool reject_observe;
};

static void srv_cb(struct clink *l, int side, const struct m2m_coap_event *ev, void *ctx)
{
    struct srv_app *app = ctx;
    clink_record(l, side, ev);
    if (ev->type != M2M_COAP_EV_REQUEST)
        return;
    struct m2m_coap_msg r;
    m2m_coap_msg_init(&r, 0, M2M_COAP_CONTENT);
    if (!app->reject_observe)
        m2m_coap_add_uint(&r, M2M_COAP_OPT_OBSERVE, 0);
    r.payload = (const uint8_t *)app->value;
    r.payload_len = strlen(app->value);
    int rc = m2m_coap_respond(l->ep[side], ev->id, &r);
    assert_true(rc == 0 || rc == M2M_ELIMIT);
    app->registered++;
}

static bool has_event(struct clink *l, void *arg)
{
    const int *want = arg; /* side, type, count */
    return clink_count(l, want[0], (enum m2m_coap_event_type)want[1]) >= (size_t)want[2];
}

static void link_notify(struct clink *l, const char *value, bool con)
{
    struct m2m_coap_msg s;
    m2m_coap_msg_init(&s, 0, M2M_COAP_CONTENT);
    s.payload = (const uint8_t *)value;
    s.payload_len = strlen(value);
    assert_int_equal(m2m_coap_notify(l->ep[1], "/temp", &s, con), 1);
}

static void test_link_observe(void **state)
{
    (void)state;
    static struct clink l;
    struct m2m_coap_config c;
    m2m_coap_config_default(&c);
    c.tx.probing_rate = 1000000;
    struct srv_app app = {.value = "20"};
    clink_init(&l, &c, &c, 31);
    l.delay_ms = 10;
    l.cb[1] = srv_cb;
    l.ctx[1] = &app;
    struct m2m_coap_msg req;
    m2m_coap_msg_init(&req, M2M_COAP_CON, M2M_COAP_GET);
    m2m_coap_add_uint(&req, M2M_COAP_OPT_OBSERVE, 0);
    m2m_coap_add_path(&req, M2M_COAP_OPT_URI_PATH, "/temp");
    uint32_t id;
    assert_int_equal(m2m_coap_request(l.ep[0], 0, &l.addr[1], &req, &id), 0);
    int want_resp[3] = {0, M2M_COAP_EV_RESPONSE, 1};
    assert_true(clink_run_until(&l, 10000, has_event, want_resp));
    int r = clink_find(&l, 0, M2M_COAP_EV_RESPONSE, 0);
    assert_int_equal(l.ev[r].id, id);
    assert_string_equal((char *)l.ev[r].payload, "20");
    assert_int_equal(l.ev[r].observe, 2);
    assert_int_equal(m2m_coap_ep_observer_count(l.ep[1]), 1);
    /* Three notifications, NON, CON, NON. */
    const char *vals[] = {"21", "22", "23"};
    for (int i = 0; i < 3; i++) {
        clink_run(&l, l.now + 1000);
        link_notify(&l, vals[i], i == 1);
        int want[3] = {0, M2M_COAP_EV_NOTIFY, i + 1};
        assert_true(clink_run_until(&l, l.now + 10000, has_event, want));
    }
    size_t k = 0;
    for (size_t i = 0; i < l.nev; i++) {
        if (l.ev[i].side != 0 || l.ev[i].type != M2M_COAP_EV_NOTIFY)
            continue;
        assert_int_equal(l.ev[i].id, id);
        assert_string_equal((char *)l.ev[i].payload, vals[k]);
        assert_int_equal(l.ev[i].observe, 3 + (int64_t)k);
        k++;
    }
    assert_int_equal(k, 3);
    assert_int_equal(clink_count_dgrams(&l, 1, M2M_COAP_CON, M2M_COAP_CONTENT, false), 1);
    assert_int_equal(clink_count_dgrams(&l, 0, M2M_COAP_ACK, M2M_COAP_EMPTY, false), 1);
    /* Without notifications the client re-registers every Max-Age + 2 s
     * (60 + 2), and the server keeps one relationship. */
    size_t gets = clink_count_dgrams(&l, 0, M2M_COAP_CON, M2M_COAP_GET, false);
    m2m_time quiet = l.now;
    clink_run(&l, quiet + 62000 * 3 + 1000);
    assert_int_equal(clink_count_dgrams(&l, 0, M2M_COAP_CON, M2M_COAP_GET, false), gets + 3);
    assert_int_equal(m2m_coap_ep_observer_count(l.ep[1]), 1);
    assert_int_equal(clink_count(&l, 0, M2M_COAP_EV_FAILED), 0);
    /* Deregistration through the link. */
    clink_clear_events(&l);
    assert_int_equal(m2m_coap_cancel(l.ep[0], l.now, id, true), 0);
    assert_true(clink_run_until(&l, l.now + 10000, has_event, want_resp));
    assert_int_equal(m2m_coap_ep_observer_count(l.ep[1]), 0);
    assert_int_equal(clink_count(&l, 1, M2M_COAP_EV_OBSERVER_GONE), 1);
    r = clink_find(&l, 0, M2M_COAP_EV_RESPONSE, 0);
    assert_int_equal(l.ev[r].observe, -1);
    clink_run(&l, l.now + 600000);
    assert_int_equal(m2m_coap_ep_peer_count(l.ep[0]), 0);
    assert_int_equal(m2m_coap_ep_peer_count(l.ep[1]), 0);
    clink_cleanup(&l);
}

static void test_link_cancel_without_deregister(void **state)
{
    (void)state;
    static struct clink l;
    struct m2m_coap_config c;
    m2m_coap_config_default(&c);
    c.tx.probing_rate = 1000000;
    struct srv_app app = {.value = "20"};
    clink_init(&l, &c, &c, 32);
    l.delay_ms = 10;
    l.cb[1] = srv_cb;
    l.ctx[1] = &app;
    struct m2m_coap_msg req;
    m2m_coap_msg_init(&req, M2M_COAP_NON, M2M_COAP_GET);
    m2m_coap_add_uint(&req, M2M_COAP_OPT_OBSERVE, 0);
    m2m_coap_add_path(&req, M2M_COAP_OPT_URI_PATH, "/temp");
    uint32_t id;
    assert_int_equal(m2m_coap_request(l.ep[0], 0, &l.addr[1], &req, &id), 0);
    int want_resp[3] = {0, M2M_COAP_EV_RESPONSE, 1};
    assert_true(clink_run_until(&l, 10000, has_event, want_resp));
    assert_int_equal(m2m_coap_cancel(l.ep[0], l.now, id, false), 0);
    link_notify(&l, "x", false);
    int want_gone[3] = {1, M2M_COAP_EV_OBSERVER_GONE, 1};
    assert_true(clink_run_until(&l, l.now + 10000, has_event, want_gone));
    assert_int_equal(clink_count_dgrams(&l, 0, M2M_COAP_RST, M2M_COAP_EMPTY, false), 1);
    assert_int_equal(m2m_coap_ep_observer_count(l.ep[1]), 0);
    assert_int_equal(clink_count(&l, 0, M2M_COAP_EV_NOTIFY), 0);
    clink_cleanup(&l);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_register_and_notify),
        cmocka_unit_test(test_observe_only_when_asked),
        cmocka_unit_test(test_notify_con_forced),
        cmocka_unit_test(test_notify_con_every),
        cmocka_unit_test(test_newest_state_after_ack),
        cmocka_unit_test(test_newest_state_swapped_into_retransmission),
        cmocka_unit_test(test_forced_con_stays_forced),
        cmocka_unit_test(test_queued_con_takes_newest_state),
        cmocka_unit_test(test_min_interval_coalesces),
        cmocka_unit_test(test_non_notifications_not_probing_limited),
        cmocka_unit_test(test_dereg_get_observe1),
        cmocka_unit_test(test_dereg_rst_non),
        cmocka_unit_test(test_dereg_rst_con),
        cmocka_unit_test(test_dereg_con_timeout),
        cmocka_unit_test(test_final_state_ends_path),
        cmocka_unit_test(test_max_observers),
        cmocka_unit_test(test_client_freshness),
        cmocka_unit_test(test_client_reregisters),
        cmocka_unit_test(test_client_cancel),
        cmocka_unit_test(test_client_observe_refused),
        cmocka_unit_test(test_client_stale_during_fetch),
        cmocka_unit_test(test_client_fresh_replaces_fetch),
        cmocka_unit_test(test_link_observe),
        cmocka_unit_test(test_link_cancel_without_deregister),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
