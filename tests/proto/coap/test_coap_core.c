/* RFC 7252 messaging of the sans-IO CoAP endpoint, in virtual time:
 * retransmission schedule, NSTART, deduplication, separate responses,
 * rejection of bad messages, PROBING_RATE, and a client talking to a server
 * through a virtual link. */
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

static struct m2m_coap_ep *default_ep(uint64_t seed)
{
    struct m2m_coap_config c;
    m2m_coap_config_default(&c);
    return coap_test_ep(&c, seed);
}

static void get_req(struct m2m_coap_msg *m, uint8_t type, const char *path)
{
    m2m_coap_msg_init(m, type, M2M_COAP_GET);
    assert_int_equal(m2m_coap_add_path(m, M2M_COAP_OPT_URI_PATH, path), 0);
}

static uint16_t mid_of(const uint8_t *p)
{
    return (uint16_t)(p[2] << 8 | p[3]);
}

static void expect_event(struct m2m_coap_ep *ep, enum m2m_coap_event_type type, uint32_t id, int err)
{
    struct cevent e;
    assert_int_equal(coap_next_event(ep, &e), 1);
    assert_int_equal(e.type, type);
    if (id)
        assert_int_equal(e.id, id);
    assert_int_equal(e.err, err);
    cevent_free(&e);
}

static void expect_no_event(struct m2m_coap_ep *ep)
{
    struct cevent e;
    int got = coap_next_event(ep, &e);
    if (got)
        cevent_free(&e);
    assert_int_equal(got, 0);
}

/* ---- transmission parameters ------------------------------------------ */

static void test_lifetimes(void **state)
{
    (void)state;
    struct m2m_coap_config c;
    m2m_coap_config_default(&c);
    /* §4.8.2: 2 * 15 * 1.5 + 2 * 100 + 2 s, and 45 + 100 s. */
    assert_int_equal(m2m_coap_exchange_lifetime_ms(&c.tx), 247000);
    assert_int_equal(m2m_coap_non_lifetime_ms(&c.tx), 145000);
    c.tx.ack_timeout_ms = 1000;
    c.tx.ack_random_factor_pm = 1000;
    c.tx.max_retransmit = 2;
    c.tx.max_latency_ms = 10000;
    assert_int_equal(m2m_coap_exchange_lifetime_ms(&c.tx), 3000 + 20000 + 1000);
    assert_int_equal(m2m_coap_non_lifetime_ms(&c.tx), 3000 + 10000);
}

/* A CON goes at t0, t0+T, t0+3T, t0+7T, t0+15T and fails at t0+31T. */
static void run_schedule(struct m2m_coap_ep *ep, uint32_t max_retransmit, m2m_time *T_out)
{
    struct m2m_addr peer = test_addr(2), to;
    struct m2m_coap_msg req;
    get_req(&req, M2M_COAP_CON, "/a");
    uint32_t id = 0;
    const m2m_time t0 = 5000;
    assert_int_equal(m2m_coap_request(ep, t0, &peer, &req, &id), 0);
    assert_int_not_equal(id, 0);
    uint8_t first[128], again[128];
    size_t n1 = coap_take(ep, first, sizeof first, &to);
    assert_true(n1 > 0);
    assert_memory_equal(to.b, peer.b, peer.len);
    assert_int_equal(first[0], 0x44); /* v1, CON, 4-byte token */
    assert_int_equal(first[1], M2M_COAP_GET);
    assert_int_equal(coap_take(ep, again, sizeof again, NULL), 0);
    m2m_time T = m2m_coap_ep_next_timeout(ep) - t0;
    *T_out = T;
    for (uint32_t k = 1; k <= max_retransmit; k++) {
        m2m_time due = t0 + (m2m_time)((1u << k) - 1) * T;
        assert_int_equal(m2m_coap_ep_next_timeout(ep), due);
        m2m_coap_ep_on_timeout(ep, due - 1);
        assert_int_equal(coap_take(ep, again, sizeof again, NULL), 0);
        m2m_coap_ep_on_timeout(ep, due);
        assert_int_equal(coap_take(ep, again, sizeof again, NULL), n1);
        assert_memory_equal(again, first, n1); /* same MID, same bytes */
        assert_int_equal(coap_take(ep, again, sizeof again, NULL), 0);
        expect_no_event(ep);
    }
    m2m_time fail_at = t0 + (m2m_time)((1u << (max_retransmit + 1)) - 1) * T;
    assert_int_equal(m2m_coap_ep_next_timeout(ep), fail_at);
    m2m_coap_ep_on_timeout(ep, fail_at - 1);
    expect_no_event(ep);
    m2m_coap_ep_on_timeout(ep, fail_at);
    assert_int_equal(coap_take(ep, again, sizeof again, NULL), 0);
    expect_event(ep, M2M_COAP_EV_FAILED, id, M2M_ETIMEDOUT);
    expect_no_event(ep);
    assert_int_equal(m2m_coap_ep_stats(ep)->retransmits, max_retransmit);
    assert_int_equal(m2m_coap_ep_stats(ep)->timeouts, 1);
    assert_int_equal(m2m_coap_ep_next_timeout(ep), M2M_NEVER);
    assert_int_equal(m2m_coap_ep_peer_count(ep), 0);
}

static void test_con_schedule_default(void **state)
{
    (void)state;
    m2m_time lo = 1 << 30, hi = 0;
    for (uint64_t seed = 1; seed <= 64; seed++) {
        struct m2m_coap_ep *ep = default_ep(seed);
        m2m_time T;
        run_schedule(ep, 4, &T);
        /* §4.2: initial timeout random in [ACK_TIMEOUT, ACK_TIMEOUT * 1.5]. */
        assert_in_range(T, 2000, 3000);
        lo = T < lo ? T : lo;
        hi = T > hi ? T : hi;
        m2m_coap_ep_free(ep);
    }
    assert_true(hi - lo > 500); /* actually randomised */
}

static void test_con_schedule_params(void **state)
{
    (void)state;
    struct m2m_coap_config c;
    m2m_coap_config_default(&c);
    c.tx.ack_timeout_ms = 500;
    c.tx.ack_random_factor_pm = 1000;
    c.tx.max_retransmit = 2;
    struct m2m_coap_ep *ep = coap_test_ep(&c, 7);
    m2m_time T;
    run_schedule(ep, 2, &T);
    assert_int_equal(T, 500); /* random factor 1.0: exactly ACK_TIMEOUT */
    m2m_coap_ep_free(ep);

    c.tx.ack_timeout_ms = 1000;
    c.tx.max_retransmit = 0;
    ep = coap_test_ep(&c, 8);
    run_schedule(ep, 0, &T);
    assert_int_equal(T, 1000);
    m2m_coap_ep_free(ep);

    c.tx.ack_timeout_ms = 300;
    c.tx.ack_random_factor_pm = 2000;
    c.tx.max_retransmit = 6;
    ep = coap_test_ep(&c, 9);
    run_schedule(ep, 6, &T);
    assert_in_range(T, 300, 600);
    m2m_coap_ep_free(ep);
}

/* ---- NSTART (§4.7) ------------------------------------------------------ */

static void test_nstart_queues_second_con(void **state)
{
    (void)state;
    struct m2m_coap_ep *ep = default_ep(11);
    struct m2m_addr peer = test_addr(2), other = test_addr(3), to;
    struct m2m_coap_msg req;
    uint32_t id1, id2, id3;
    uint8_t b1[64], b2[64], b3[64];
    get_req(&req, M2M_COAP_CON, "/one");
    assert_int_equal(m2m_coap_request(ep, 0, &peer, &req, &id1), 0);
    get_req(&req, M2M_COAP_CON, "/two");
    assert_int_equal(m2m_coap_request(ep, 0, &peer, &req, &id2), 0);
    size_t n1 = coap_take(ep, b1, sizeof b1, NULL);
    assert_true(n1 > 0);
    assert_int_equal(coap_take(ep, b2, sizeof b2, NULL), 0); /* waits for a slot */
    /* Another peer has its own slot. */
    get_req(&req, M2M_COAP_CON, "/three");
    assert_int_equal(m2m_coap_request(ep, 0, &other, &req, &id3), 0);
    assert_true(coap_take(ep, b3, sizeof b3, &to) > 0);
    assert_memory_equal(to.b, other.b, other.len);
    /* Retransmissions of the first do not release the second. */
    m2m_coap_ep_on_timeout(ep, 3000);
    size_t n;
    while ((n = coap_take(ep, b2, sizeof b2, &to)) > 0)
        assert_true(n == n1 ? !memcmp(b2, b1, n1) : true);
    /* The piggybacked response to the first frees the slot. */
    char ack[64];
    snprintf(ack, sizeof ack, "64 45 %02x %02x %02x %02x %02x %02x", b1[2], b1[3], b1[4], b1[5], b1[6],
             b1[7]);
    coap_feed_hex(ep, 3100, &peer, ack);
    size_t n2 = coap_take(ep, b2, sizeof b2, &to);
    assert_true(n2 > 0);
    assert_memory_equal(to.b, peer.b, peer.len);
    assert_int_equal(b2[0], 0x44);
    assert_int_not_equal(mid_of(b2), mid_of(b1));
    /* Its Uri-Path is "two". */
    assert_memory_equal(b2 + 8, "\xb3two", 4);
    expect_event(ep, M2M_COAP_EV_RESPONSE, id1, 0);
    /* An empty ACK also ends the interaction (§4.7): the next CON goes. */
    get_req(&req, M2M_COAP_CON, "/four");
    uint32_t id4;
    assert_int_equal(m2m_coap_request(ep, 3200, &peer, &req, &id4), 0);
    assert_int_equal(coap_drain(ep), 0);
    snprintf(ack, sizeof ack, "60 00 %02x %02x", b2[2], b2[3]);
    coap_feed_hex(ep, 3300, &peer, ack);
    uint8_t b4[64];
    assert_true(coap_take(ep, b4, sizeof b4, NULL) > 0);
    assert_memory_equal(b4 + 8,
                        "\xb4"
                        "four",
                        5);
    m2m_coap_ep_free(ep);
}

static void test_nstart_two(void **state)
{
    (void)state;
    struct m2m_coap_config c;
    m2m_coap_config_default(&c);
    c.tx.nstart = 2;
    struct m2m_coap_ep *ep = coap_test_ep(&c, 12);
    struct m2m_addr peer = test_addr(2);
    struct m2m_coap_msg req;
    uint32_t id;
    for (int i = 0; i < 3; i++) {
        get_req(&req, M2M_COAP_CON, "/x");
        assert_int_equal(m2m_coap_request(ep, 0, &peer, &req, &id), 0);
    }
    assert_int_equal(coap_drain(ep), 2);
    m2m_coap_ep_free(ep);
}

/* ---- deduplication (§4.5) ----------------------------------------------- */

#define REQ_X "42 01 12 34 a1 b2 b1 78" /* CON GET /x, MID 0x1234, token a1b2 */

static uint32_t take_request(struct m2m_coap_ep *ep, const char *path)
{
    struct cevent e;
    assert_int_equal(coap_next_event(ep, &e), 1);
    assert_int_equal(e.type, M2M_COAP_EV_REQUEST);
    if (path)
        assert_string_equal(e.path, path);
    uint32_t id = e.id;
    cevent_free(&e);
    return id;
}

static void respond_text(struct m2m_coap_ep *ep, uint32_t id, uint8_t code, const char *text)
{
    struct m2m_coap_msg r;
    m2m_coap_msg_init(&r, 0, code);
    r.payload = (const uint8_t *)text;
    r.payload_len = text ? strlen(text) : 0;
    assert_int_equal(m2m_coap_respond(ep, id, &r), 0);
}

static void test_dedup_con_replays_ack(void **state)
{
    (void)state;
    struct m2m_coap_ep *ep = default_ep(21);
    struct m2m_addr peer = test_addr(2);
    coap_feed_hex(ep, 0, &peer, REQ_X);
    uint32_t id = take_request(ep, "/x");
    respond_text(ep, id, M2M_COAP_CONTENT, "hi");
    assert_string_equal(coap_take_hex(ep), "62 45 12 34 a1 b2 ff 68 69");
    assert_string_equal(coap_take_hex(ep), "");
    /* A second answer to the same exchange is refused. */
    struct m2m_coap_msg r;
    m2m_coap_msg_init(&r, 0, M2M_COAP_CONTENT);
    assert_int_equal(m2m_coap_respond(ep, id, &r), M2M_ENOTFOUND);
    for (int i = 1; i <= 3; i++) {
        coap_feed_hex(ep, 1000 * i, &peer, REQ_X);
        assert_string_equal(coap_take_hex(ep), "62 45 12 34 a1 b2 ff 68 69");
        assert_string_equal(coap_take_hex(ep), "");
        expect_no_event(ep);
    }
    assert_int_equal(m2m_coap_ep_stats(ep)->duplicates, 3);
    assert_int_equal(m2m_coap_ep_stats(ep)->requests_in, 1);
    /* Same MID from another peer is another message. */
    struct m2m_addr other = test_addr(3);
    coap_feed_hex(ep, 4000, &other, REQ_X);
    take_request(ep, "/x");
    m2m_coap_ep_free(ep);
}

/* coap.max_pending: requests past the cap get 5.03 at once, and the cap
 * holds across the chunks exchanges are allocated in. */
static void test_pending_cap(void **state)
{
    (void)state;
    struct m2m_coap_config c;
    m2m_coap_config_default(&c);
    c.max_requests = 70;
    struct m2m_coap_ep *ep = coap_test_ep(&c, 31);
    struct m2m_addr peer = test_addr(2);
    uint32_t first = 0;
    char hex[64];
    for (int i = 0; i < 70; i++) {
        snprintf(hex, sizeof hex, "40 01 10 %02x b1 78", i);
        coap_feed_hex(ep, i, &peer, hex);
        uint32_t id = take_request(ep, "/x");
        if (i == 0)
            first = id;
        assert_string_equal(coap_take_hex(ep), "");
    }
    coap_feed_hex(ep, 100, &peer, "40 01 10 46 b1 78");
    expect_no_event(ep);
    uint8_t out[64];
    size_t n = coap_take(ep, out, sizeof out, NULL);
    assert_true(n >= 4);
    assert_int_equal(out[0], 0x60);                         /* ACK, no token */
    assert_int_equal(out[1], M2M_COAP_SERVICE_UNAVAILABLE); /* 5.03 */
    assert_int_equal(out[2] << 8 | out[3], 0x1046);
    /* One answered exchange frees one slot. */
    respond_text(ep, first, M2M_COAP_CONTENT, "hi");
    coap_drain(ep);
    coap_feed_hex(ep, 200, &peer, "40 01 10 47 b1 78");
    take_request(ep, "/x");
    m2m_coap_ep_free(ep);
}

static void test_dedup_non_ignored(void **state)
{
    (void)state;
    struct m2m_coap_ep *ep = default_ep(22);
    struct m2m_addr peer = test_addr(2);
    coap_feed_hex(ep, 0, &peer, "52 01 22 22 c1 c2 b1 78");
    uint32_t id = take_request(ep, "/x");
    respond_text(ep, id, M2M_COAP_CONTENT, "v");
    uint8_t b[64];
    size_t n = coap_take(ep, b, sizeof b, NULL);
    /* NON answer to a NON request: a new MID, the request's token. */
    assert_int_equal(n, 8);
    assert_int_equal(b[0], 0x52);
    assert_int_equal(b[1], M2M_COAP_CONTENT);
    assert_int_not_equal(mid_of(b), 0x2222);
    assert_memory_equal(b + 4,
                        "\xc1\xc2\xff"
                        "v",
                        4);
    coap_feed_hex(ep, 10, &peer, "52 01 22 22 c1 c2 b1 78");
    assert_string_equal(coap_take_hex(ep), "");
    expect_no_event(ep);
    /* A duplicate NON before the answer is silent as well. */
    coap_feed_hex(ep, 20, &peer, "52 01 33 33 c1 c2 b1 78");
    take_request(ep, "/x");
    coap_feed_hex(ep, 30, &peer, "52 01 33 33 c1 c2 b1 78");
    assert_string_equal(coap_take_hex(ep), "");
    expect_no_event(ep);
    assert_int_equal(m2m_coap_ep_stats(ep)->duplicates, 2);
    m2m_coap_ep_free(ep);
}

static void test_dedup_expiry(void **state)
{
    (void)state;
    struct m2m_coap_ep *ep = default_ep(23);
    struct m2m_addr peer = test_addr(2);
    coap_feed_hex(ep, 1000, &peer, REQ_X);
    respond_text(ep, take_request(ep, "/x"), M2M_COAP_CONTENT, "hi");
    coap_drain(ep);
    assert_int_equal(m2m_coap_ep_next_timeout(ep), 1000 + 247000);
    coap_feed_hex(ep, 1000 + 246999, &peer, REQ_X);
    assert_string_equal(coap_take_hex(ep), "62 45 12 34 a1 b2 ff 68 69");
    expect_no_event(ep);
    /* EXCHANGE_LIFETIME later the MID is new again, even if the caller
     * feeds before it handles the deadline. */
    coap_feed_hex(ep, 1000 + 247000, &peer, REQ_X);
    assert_string_equal(coap_take_hex(ep), "");
    uint32_t id = take_request(ep, "/x");
    respond_text(ep, id, M2M_COAP_CONTENT, "ho");
    assert_string_equal(coap_take_hex(ep), "62 45 12 34 a1 b2 ff 68 6f");
    /* And through on_timeout. */
    m2m_time exp = m2m_coap_ep_next_timeout(ep);
    assert_int_equal(exp, 1000 + 247000 + 247000);
    m2m_coap_ep_on_timeout(ep, exp);
    assert_int_equal(m2m_coap_ep_next_timeout(ep), M2M_NEVER);
    coap_feed_hex(ep, exp + 1, &peer, REQ_X);
    take_request(ep, "/x");
    /* NON entries live NON_LIFETIME (145 s). */
    coap_feed_hex(ep, 1000000, &peer, "52 01 44 44 c1 c2 b1 78");
    take_request(ep, "/x");
    coap_feed_hex(ep, 1000000 + 144999, &peer, "52 01 44 44 c1 c2 b1 78");
    expect_no_event(ep);
    coap_feed_hex(ep, 1000000 + 145000, &peer, "52 01 44 44 c1 c2 b1 78");
    take_request(ep, "/x");
    m2m_coap_ep_free(ep);
}

static void test_dedup_eviction(void **state)
{
    (void)state;
    struct m2m_coap_config c;
    m2m_coap_config_default(&c);
    c.max_dedup = 2;
    struct m2m_coap_ep *ep = coap_test_ep(&c, 24);
    struct m2m_addr peer = test_addr(2);
    const char *reqs[] = {"42 01 00 01 a1 b2 b1 78", "42 01 00 02 a1 b2 b1 78", "42 01 00 03 a1 b2 b1 78"};
    for (int i = 0; i < 3; i++) {
        coap_feed_hex(ep, i, &peer, reqs[i]);
        respond_text(ep, take_request(ep, "/x"), M2M_COAP_CONTENT, NULL);
        assert_int_equal(coap_drain(ep), 1);
    }
    /* MID 1, the oldest, was forgotten; MID 3 is still known. */
    coap_feed_hex(ep, 10, &peer, reqs[2]);
    assert_string_equal(coap_take_hex(ep), "62 45 00 03 a1 b2");
    expect_no_event(ep);
    coap_feed_hex(ep, 11, &peer, reqs[0]);
    take_request(ep, "/x");
    m2m_coap_ep_free(ep);
}

/* ---- separate responses (§5.2.2) --------------------------------------- */

static void test_separate_response(void **state)
{
    (void)state;
    struct m2m_coap_ep *ep = default_ep(31);
    struct m2m_addr peer = test_addr(2);
    coap_feed_hex(ep, 0, &peer, REQ_X);
    uint32_t id = take_request(ep, "/x");
    assert_string_equal(coap_take_hex(ep), "");
    assert_int_equal(m2m_coap_ep_next_timeout(ep), 1000); /* separate_after_ms */
    m2m_coap_ep_on_timeout(ep, 999);
    assert_string_equal(coap_take_hex(ep), "");
    m2m_coap_ep_on_timeout(ep, 1000);
    assert_string_equal(coap_take_hex(ep), "60 00 12 34");
    /* A retransmitted request now gets the empty ACK again. */
    coap_feed_hex(ep, 1200, &peer, REQ_X);
    assert_string_equal(coap_take_hex(ep), "60 00 12 34");
    expect_no_event(ep);
    m2m_coap_ep_on_timeout(ep, 1500);
    respond_text(ep, id, M2M_COAP_CONTENT, "late");
    uint8_t b[64], r[64];
    size_t n = coap_take(ep, b, sizeof b, NULL);
    assert_int_equal(n, 11);
    assert_int_equal(b[0], 0x42); /* CON, token a1b2 */
    assert_int_equal(b[1], M2M_COAP_CONTENT);
    assert_int_not_equal(mid_of(b), 0x1234);
    assert_memory_equal(b + 4,
                        "\xa1\xb2\xff"
                        "late",
                        7);
    m2m_time due = m2m_coap_ep_next_timeout(ep);
    assert_in_range(due, 1500 + 2000, 1500 + 3000);
    m2m_coap_ep_on_timeout(ep, due);
    assert_int_equal(coap_take(ep, r, sizeof r, NULL), n);
    assert_memory_equal(r, b, n);
    assert_int_equal(m2m_coap_ep_next_timeout(ep), 1500 + 3 * (due - 1500));
    /* The client's ACK ends it. */
    char ack[32];
    snprintf(ack, sizeof ack, "60 00 %02x %02x", b[2], b[3]);
    coap_feed_hex(ep, due + 10, &peer, ack);
    assert_int_equal(m2m_coap_ep_next_timeout(ep), 247000); /* only the dedup entry */
    m2m_coap_ep_on_timeout(ep, 200000);
    assert_string_equal(coap_take_hex(ep), "");
    assert_int_equal(m2m_coap_ep_stats(ep)->retransmits, 1);
    m2m_coap_ep_free(ep);
}

static void test_separate_gives_up(void **state)
{
    (void)state;
    struct m2m_coap_ep *ep = default_ep(32);
    struct m2m_addr peer = test_addr(2);
    coap_feed_hex(ep, 0, &peer, REQ_X);
    uint32_t id = take_request(ep, "/x");
    m2m_coap_ep_on_timeout(ep, 1000);
    coap_drain(ep);
    respond_text(ep, id, M2M_COAP_CONTENT, "x");
    assert_int_equal(coap_drain(ep), 1);
    size_t sent = 1;
    m2m_time t;
    while ((t = m2m_coap_ep_next_timeout(ep)) < 200000) {
        m2m_coap_ep_on_timeout(ep, t);
        sent += coap_drain(ep);
    }
    assert_int_equal(sent, 5);
    expect_no_event(ep);
    assert_int_equal(m2m_coap_ep_peer_count(ep), 0);
    m2m_coap_ep_free(ep);
}

static void test_duplicate_while_processing(void **state)
{
    (void)state;
    struct m2m_coap_ep *ep = default_ep(33);
    struct m2m_addr peer = test_addr(2);
    coap_feed_hex(ep, 0, &peer, REQ_X);
    uint32_t id = take_request(ep, "/x");
    coap_feed_hex(ep, 100, &peer, REQ_X);
    assert_string_equal(coap_take_hex(ep), "60 00 12 34");
    expect_no_event(ep);
    coap_feed_hex(ep, 200, &peer, REQ_X);
    assert_string_equal(coap_take_hex(ep), "60 00 12 34");
    /* Answered after the empty ACK: separately, as a CON. */
    respond_text(ep, id, M2M_COAP_CHANGED, NULL);
    uint8_t b[32];
    assert_int_equal(coap_take(ep, b, sizeof b, NULL), 6);
    assert_int_equal(b[0], 0x42);
    assert_int_equal(b[1], M2M_COAP_CHANGED);
    /* No second empty ACK when the exchange timer fires. */
    m2m_coap_ep_on_timeout(ep, 1000);
    assert_string_equal(coap_take_hex(ep), "");
    m2m_coap_ep_free(ep);
}

static void test_separate_non(void **state)
{
    (void)state;
    struct m2m_coap_ep *ep = default_ep(34);
    struct m2m_addr peer = test_addr(2);
    coap_feed_hex(ep, 0, &peer, "52 01 22 22 c1 c2 b1 78");
    uint32_t id = take_request(ep, "/x");
    m2m_coap_ep_on_timeout(ep, 5000);
    assert_string_equal(coap_take_hex(ep), ""); /* nothing to acknowledge */
    respond_text(ep, id, M2M_COAP_CONTENT, NULL);
    uint8_t b[32];
    assert_int_equal(coap_take(ep, b, sizeof b, NULL), 6);
    assert_int_equal(b[0], 0x52);
    m2m_coap_ep_free(ep);
}

/* ---- rejection (§4.2, §4.3, §5.4.1) ------------------------------------- */

static void test_reject_malformed(void **state)
{
    (void)state;
    struct m2m_coap_ep *ep = default_ep(41);
    struct m2m_addr peer = test_addr(2);
    static const struct {
        const char *in, *out;
    } cases[] = {
        {"4f 01 12 34", "70 00 12 34"},                            /* TKL 15 */
        {"49 01 12 34 01 02 03 04 05 06 07 08 09", "70 00 12 34"}, /* TKL 9 */
        {"42 01 12 34 a1", "70 00 12 34"},                         /* token cut short */
        {"40 01 12 34 f1 00", "70 00 12 34"},                      /* option delta 15 */
        {"40 01 12 34 1f", "70 00 12 34"},                         /* option length 15 */
        {"40 01 12 34 d1", "70 00 12 34"},                         /* extended delta missing */
        {"40 01 12 34 b5 61", "70 00 12 34"},                      /* option value cut short */
        {"40 01 12 34 ff", "70 00 12 34"},                         /* marker, no payload */
        {"41 00 12 34 aa", "70 00 12 34"},                         /* Empty with a token */
        {"40 00 12 34 ff 00", "70 00 12 34"},                      /* Empty with a payload */
        {"40 21 12 34", "70 00 12 34"},                            /* class 1 is reserved */
        {"40 e1 12 34", "70 00 12 34"},                            /* class 7 is reserved */
        {"5f 01 12 34", ""},                                       /* NON: silence */
        {"50 01 12 34 ff", ""},
        {"51 00 12 34 aa", ""},
        {"6f 00 12 34", ""}, /* ACK: silence */
        {"7f 00 12 34", ""}, /* RST: silence */
        {"80 01 12 34", ""}, /* version 2 */
        {"00 01 12 34", ""}, /* version 0 */
        {"40 01 12", ""},    /* shorter than a header */
        {"", ""},
        {"60 01 12 34", ""},       /* a request in an ACK */
        {"70 01 12 34", ""},       /* a request in a RST */
        {"72 45 12 34 aa bb", ""}, /* a response in a RST */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        coap_feed_hex(ep, (m2m_time)i, &peer, cases[i].in);
        assert_string_equal(coap_take_hex(ep), cases[i].out);
        assert_string_equal(coap_take_hex(ep), "");
        expect_no_event(ep);
    }
    assert_true(m2m_coap_ep_stats(ep)->malformed >= 20);
    m2m_coap_ep_free(ep);
}

static void test_ping_and_empty(void **state)
{
    (void)state;
    struct m2m_coap_ep *ep = default_ep(42);
    struct m2m_addr peer = test_addr(2);
    coap_feed_hex(ep, 0, &peer, "40 00 ab cd"); /* CoAP ping */
    assert_string_equal(coap_take_hex(ep), "70 00 ab cd");
    coap_feed_hex(ep, 1, &peer, "50 00 ab cd"); /* empty NON */
    assert_string_equal(coap_take_hex(ep), "");
    coap_feed_hex(ep, 2, &peer, "60 00 ab cd");       /* stray ACK */
    coap_feed_hex(ep, 3, &peer, "70 00 ab cd");       /* stray RST */
    coap_feed_hex(ep, 4, &peer, "62 45 ab cd 01 02"); /* stray piggybacked response */
    assert_string_equal(coap_take_hex(ep), "");
    expect_no_event(ep);
    assert_int_equal(m2m_coap_ep_stats(ep)->rst_sent, 1);
    m2m_coap_ep_free(ep);
}

static void test_bad_critical_option(void **state)
{
    (void)state;
    struct m2m_coap_ep *ep = default_ep(43);
    struct m2m_addr peer = test_addr(2);
    /* Option 9 is critical and unknown: 4.02 piggybacked, no event. */
    coap_feed_hex(ep, 0, &peer, "42 01 12 34 a1 b2 91 00");
    assert_string_equal(coap_take_hex(ep), "62 82 12 34 a1 b2");
    expect_no_event(ep);
    /* A retransmission gets the same answer. */
    coap_feed_hex(ep, 10, &peer, "42 01 12 34 a1 b2 91 00");
    assert_string_equal(coap_take_hex(ep), "62 82 12 34 a1 b2");
    /* A known critical option with a bad length (Uri-Host of 0 bytes). */
    coap_feed_hex(ep, 20, &peer, "42 01 12 35 a1 b2 30");
    assert_string_equal(coap_take_hex(ep), "62 82 12 35 a1 b2");
    /* In a NON it is rejected (§4.3), never answered with 4.02. */
    coap_feed_hex(ep, 30, &peer, "52 01 12 36 a1 b2 91 00");
    assert_string_equal(coap_take_hex(ep), "70 00 12 36");
    expect_no_event(ep);
    /* Option 10 is elective: ignored, the request goes through. */
    coap_feed_hex(ep, 40, &peer, "42 01 12 37 a1 b2 a1 00 11 78");
    uint32_t id = take_request(ep, "/x");
    respond_text(ep, id, M2M_COAP_CONTENT, NULL);
    assert_string_equal(coap_take_hex(ep), "62 45 12 37 a1 b2");
    m2m_coap_ep_free(ep);
}

static void test_proxy_uri(void **state)
{
    (void)state;
    struct m2m_coap_ep *ep = default_ep(44);
    struct m2m_addr peer = test_addr(2);
    /* Proxy-Uri (35) "coap://h". */
    coap_feed_hex(ep, 0, &peer, "42 01 12 34 a1 b2 d8 16 63 6f 61 70 3a 2f 2f 68");
    assert_string_equal(coap_take_hex(ep), "62 a5 12 34 a1 b2");
    /* Proxy-Scheme (39) "coap" with Uri-Host. */
    coap_feed_hex(ep, 1, &peer, "42 01 12 35 a1 b2 31 68 d4 17 63 6f 61 70");
    assert_string_equal(coap_take_hex(ep), "62 a5 12 35 a1 b2");
    expect_no_event(ep);
    m2m_coap_ep_free(ep);
}

/* ---- our requests, scripted peer ---------------------------------------- */

static void test_unknown_token_response_rst(void **state)
{
    (void)state;
    struct m2m_coap_ep *ep = default_ep(51);
    struct m2m_addr peer = test_addr(2);
    coap_feed_hex(ep, 0, &peer, "42 45 55 55 de ad ff 01");
    assert_string_equal(coap_take_hex(ep), "70 00 55 55");
    /* Its retransmission: the same RST. */
    coap_feed_hex(ep, 100, &peer, "42 45 55 55 de ad ff 01");
    assert_string_equal(coap_take_hex(ep), "70 00 55 55");
    coap_feed_hex(ep, 200, &peer, "52 45 55 56 de ad ff 01");
    assert_string_equal(coap_take_hex(ep), "70 00 55 56");
    expect_no_event(ep);
    m2m_coap_ep_free(ep);
}

static void test_rst_fails_request(void **state)
{
    (void)state;
    struct m2m_coap_ep *ep = default_ep(52);
    struct m2m_addr peer = test_addr(2);
    struct m2m_coap_msg req;
    uint32_t id;
    uint8_t b[64];
    char rst[32];
    get_req(&req, M2M_COAP_CON, "/a");
    assert_int_equal(m2m_coap_request(ep, 0, &peer, &req, &id), 0);
    assert_true(coap_take(ep, b, sizeof b, NULL) > 0);
    /* A RST from elsewhere with that MID means nothing. */
    struct m2m_addr other = test_addr(3);
    snprintf(rst, sizeof rst, "70 00 %02x %02x", b[2], b[3]);
    coap_feed_hex(ep, 5, &other, rst);
    expect_no_event(ep);
    coap_feed_hex(ep, 10, &peer, rst);
    expect_event(ep, M2M_COAP_EV_FAILED, id, M2M_ERESET);
    assert_int_equal(m2m_coap_ep_next_timeout(ep), M2M_NEVER);
    /* Same for a NON request. */
    get_req(&req, M2M_COAP_NON, "/a");
    assert_int_equal(m2m_coap_request(ep, 20, &peer, &req, &id), 0);
    assert_true(coap_take(ep, b, sizeof b, NULL) > 0);
    assert_int_equal(b[0], 0x54);
    snprintf(rst, sizeof rst, "70 00 %02x %02x", b[2], b[3]);
    coap_feed_hex(ep, 30, &peer, rst);
    expect_event(ep, M2M_COAP_EV_FAILED, id, M2M_ERESET);
    assert_int_equal(m2m_coap_ep_peer_count(ep), 0);
    m2m_coap_ep_free(ep);
}

static void test_client_separate_response(void **state)
{
    (void)state;
    struct m2m_coap_ep *ep = default_ep(53);
    struct m2m_addr peer = test_addr(2);
    struct m2m_coap_msg req;
    uint32_t id;
    uint8_t b[64];
    char hex[64];
    get_req(&req, M2M_COAP_CON, "/slow");
    assert_int_equal(m2m_coap_request(ep, 0, &peer, &req, &id), 0);
    assert_true(coap_take(ep, b, sizeof b, NULL) > 0);
    snprintf(hex, sizeof hex, "60 00 %02x %02x", b[2], b[3]);
    coap_feed_hex(ep, 100, &peer, hex);
    expect_no_event(ep);
    /* No retransmission after the empty ACK. */
    m2m_coap_ep_on_timeout(ep, 60000);
    assert_string_equal(coap_take_hex(ep), "");
    snprintf(hex, sizeof hex, "44 45 77 77 %02x %02x %02x %02x ff 6f 6b", b[4], b[5], b[6], b[7]);
    coap_feed_hex(ep, 60000, &peer, hex);
    assert_string_equal(coap_take_hex(ep), "60 00 77 77");
    struct cevent e;
    assert_int_equal(coap_next_event(ep, &e), 1);
    assert_int_equal(e.type, M2M_COAP_EV_RESPONSE);
    assert_int_equal(e.id, id);
    assert_int_equal(e.code, M2M_COAP_CONTENT);
    assert_string_equal((char *)e.payload, "ok");
    cevent_free(&e);
    /* Its retransmission is acknowledged again, not delivered again. */
    coap_feed_hex(ep, 62000, &peer, hex);
    assert_string_equal(coap_take_hex(ep), "60 00 77 77");
    expect_no_event(ep);
    m2m_coap_ep_free(ep);
}

static void test_client_separate_times_out(void **state)
{
    (void)state;
    struct m2m_coap_ep *ep = default_ep(54);
    struct m2m_addr peer = test_addr(2);
    struct m2m_coap_msg req;
    uint32_t id;
    uint8_t b[64];
    char hex[64];
    get_req(&req, M2M_COAP_CON, "/slow");
    assert_int_equal(m2m_coap_request(ep, 0, &peer, &req, &id), 0);
    assert_true(coap_take(ep, b, sizeof b, NULL) > 0);
    snprintf(hex, sizeof hex, "60 00 %02x %02x", b[2], b[3]);
    coap_feed_hex(ep, 100, &peer, hex);
    assert_int_equal(m2m_coap_ep_next_timeout(ep), 100 + 247000);
    m2m_coap_ep_on_timeout(ep, 100 + 247000);
    expect_event(ep, M2M_COAP_EV_FAILED, id, M2M_ETIMEDOUT);
    m2m_coap_ep_free(ep);
}

static void test_response_bad_critical(void **state)
{
    (void)state;
    struct m2m_coap_ep *ep = default_ep(55);
    struct m2m_addr peer = test_addr(2);
    struct m2m_coap_msg req;
    uint32_t id;
    uint8_t b[64], r[64];
    char hex[96];
    get_req(&req, M2M_COAP_CON, "/a");
    assert_int_equal(m2m_coap_request(ep, 0, &peer, &req, &id), 0);
    size_t n = coap_take(ep, b, sizeof b, NULL);
    m2m_time due = m2m_coap_ep_next_timeout(ep);
    /* A piggybacked answer with critical option 9 is silently ignored
     * (§5.4.1, §4.2): no event, and the request is retransmitted. */
    snprintf(hex, sizeof hex, "64 45 %02x %02x %02x %02x %02x %02x 91 00 ff 31", b[2], b[3], b[4], b[5], b[6],
             b[7]);
    coap_feed_hex(ep, 10, &peer, hex);
    assert_string_equal(coap_take_hex(ep), "");
    expect_no_event(ep);
    assert_int_equal(m2m_coap_ep_next_timeout(ep), due);
    m2m_coap_ep_on_timeout(ep, due);
    assert_int_equal(coap_take(ep, r, sizeof r, NULL), n);
    /* As a CON or NON it gets a RST. */
    snprintf(hex, sizeof hex, "44 45 77 77 %02x %02x %02x %02x 91 00", b[4], b[5], b[6], b[7]);
    coap_feed_hex(ep, due + 10, &peer, hex);
    assert_string_equal(coap_take_hex(ep), "70 00 77 77");
    hex[0] = '5';
    hex[7] = '8';
    coap_feed_hex(ep, due + 20, &peer, hex);
    assert_string_equal(coap_take_hex(ep), "70 00 78 77");
    expect_no_event(ep);
    /* The proper answer still completes it. */
    snprintf(hex, sizeof hex, "64 45 %02x %02x %02x %02x %02x %02x ff 31", b[2], b[3], b[4], b[5], b[6],
             b[7]);
    coap_feed_hex(ep, due + 30, &peer, hex);
    expect_event(ep, M2M_COAP_EV_RESPONSE, id, 0);
    assert_int_equal(m2m_coap_ep_stats(ep)->malformed, 3);
    m2m_coap_ep_free(ep);
}

static void test_config_validation(void **state)
{
    (void)state;
    struct m2m_coap_config c;
    struct m2m_prng g;
    m2m_prng_seed(&g, 1);
    m2m_coap_config_default(&c);
    assert_null(m2m_coap_ep_new(&c)); /* no RNG */
#define BAD(stmt)                                                                                            \
    do {                                                                                                     \
        m2m_coap_config_default(&c);                                                                         \
        c.rng = m2m_prng_rng(&g);                                                                            \
        stmt;                                                                                                \
        assert_null(m2m_coap_ep_new(&c));                                                                    \
    } while (0)
    BAD(c.tx.ack_timeout_ms = 0);
    BAD(c.tx.ack_random_factor_pm = 999);
    BAD(c.tx.max_retransmit = 21);
    BAD(c.tx.nstart = 0);
    BAD(c.block_szx = 7);
    BAD(c.token_len = 9);
    BAD(c.max_message = 63);
    BAD(c.max_message = 65508);
    BAD((c.tx.ack_timeout_ms = 100000, c.tx.max_retransmit = 20)); /* timeouts past 2^31 ms */
    BAD(c.tx.ack_random_factor_pm = 4000000000u);
#undef BAD
    m2m_coap_config_default(&c);
    c.rng = m2m_prng_rng(&g);
    c.tx.max_retransmit = 20;
    c.tx.ack_timeout_ms = 1000;
    c.tx.ack_random_factor_pm = 1000;
    struct m2m_coap_ep *ep = m2m_coap_ep_new(&c);
    assert_non_null(ep);
    m2m_coap_ep_free(ep);
    /* The lifetime helpers saturate instead of overflowing. */
    c.tx.max_retransmit = 64;
    assert_int_equal(m2m_coap_exchange_lifetime_ms(&c.tx), UINT32_MAX);
    assert_int_equal(m2m_coap_non_lifetime_ms(&c.tx), UINT32_MAX);
}

/* ---- PROBING_RATE (§4.7) ------------------------------------------------- */

static void test_probing_rate(void **state)
{
    (void)state;
    struct m2m_coap_config c;
    m2m_coap_config_default(&c);
    c.tx.probing_rate = 4; /* bytes per second */
    struct m2m_coap_ep *ep = coap_test_ep(&c, 61);
    struct m2m_addr peer = test_addr(2);
    struct m2m_coap_msg req;
    uint32_t id;
    enum { N = 6 };
    for (int i = 0; i < N; i++) {
        get_req(&req, M2M_COAP_NON, "/sensor");
        assert_int_equal(m2m_coap_request(ep, 0, &peer, &req, &id), 0);
    }
    m2m_time at[N];
    size_t len[N], sent = 0;
    uint8_t b[64];
    size_t n;
    while ((n = coap_take(ep, b, sizeof b, NULL)) > 0) {
        at[sent] = 0;
        len[sent++] = n;
    }
    assert_int_equal(sent, 1); /* the rest is held back */
    m2m_time t;
    while (sent < N && (t = m2m_coap_ep_next_timeout(ep)) != M2M_NEVER) {
        m2m_coap_ep_on_timeout(ep, t);
        while ((n = coap_take(ep, b, sizeof b, NULL)) > 0) {
            assert_true(sent < N);
            at[sent] = t;
            len[sent++] = n;
        }
    }
    assert_int_equal(sent, N);
    size_t total = len[0];
    for (int k = 1; k < N; k++) {
        total += len[k];
        /* Average rate since the first byte, counting this message, never
         * above PROBING_RATE; and no slower than needed (1 s slack). */
        assert_true(total * 1000 <= (size_t)at[k] * c.tx.probing_rate);
        assert_true((size_t)(at[k] - 1000) * c.tx.probing_rate < total * 1000);
    }
    m2m_coap_ep_free(ep);

    /* Hearing from the peer starts a new account: the next held NON goes at
     * once, the one after it is paced again. */
    ep = coap_test_ep(&c, 62);
    for (int i = 0; i < 3; i++) {
        get_req(&req, M2M_COAP_NON, "/sensor");
        assert_int_equal(m2m_coap_request(ep, 0, &peer, &req, &id), 0);
    }
    assert_int_equal(coap_drain(ep), 1);
    coap_feed_hex(ep, 100, &peer, "40 00 00 01"); /* anything: a ping */
    assert_int_equal(coap_drain(ep), 2);          /* one held NON + RST to the ping */
    assert_int_equal(m2m_coap_ep_next_timeout(ep), 100 + 2 * 15 * 1000 / 4);
    m2m_coap_ep_free(ep);
}

/* ---- client and server through a virtual link -------------------------- */

static void app_server(struct clink *l, int side, const struct m2m_coap_event *ev, void *ctx)
{
    (void)ctx;
    clink_record(l, side, ev);
    if (ev->type != M2M_COAP_EV_REQUEST)
        return;
    struct m2m_coap_msg r;
    switch (ev->msg.code) {
    case M2M_COAP_GET:
        m2m_coap_msg_init(&r, 0, M2M_COAP_CONTENT);
        m2m_coap_add_uint(&r, M2M_COAP_OPT_CONTENT_FORMAT, M2M_COAP_FMT_TEXT);
        r.payload = (const uint8_t *)"value";
        r.payload_len = 5;
        break;
    case M2M_COAP_PUT:
        m2m_coap_msg_init(&r, 0, M2M_COAP_CHANGED);
        r.payload = ev->msg.payload; /* echo */
        r.payload_len = ev->msg.payload_len;
        break;
    case M2M_COAP_POST:
        m2m_coap_msg_init(&r, 0, M2M_COAP_CREATED);
        m2m_coap_add_path(&r, M2M_COAP_OPT_LOCATION_PATH, "/new/1");
        break;
    case M2M_COAP_DELETE: m2m_coap_msg_init(&r, 0, M2M_COAP_DELETED); break;
    default: m2m_coap_msg_init(&r, 0, M2M_COAP_METHOD_NOT_ALLOWED); break;
    }
    assert_int_equal(m2m_coap_respond(l->ep[side], ev->id, &r), 0);
}

static bool got_response(struct clink *l, void *arg)
{
    (void)arg;
    return clink_find(l, 0, M2M_COAP_EV_RESPONSE, 0) >= 0 || clink_find(l, 0, M2M_COAP_EV_FAILED, 0) >= 0;
}

static void test_link_methods(void **state)
{
    (void)state;
    static struct clink l;
    struct m2m_coap_config c;
    m2m_coap_config_default(&c);
    clink_init(&l, &c, &c, 71);
    l.cb[1] = app_server;
    l.delay_ms = 20;
    static const struct {
        uint8_t method, code;
        const char *body, *answer;
    } cases[] = {
        {M2M_COAP_GET, M2M_COAP_CONTENT, NULL, "value"},
        {M2M_COAP_PUT, M2M_COAP_CHANGED, "21.5", "21.5"},
        {M2M_COAP_POST, M2M_COAP_CREATED, "{\"a\":1}", ""},
        {M2M_COAP_DELETE, M2M_COAP_DELETED, NULL, ""},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        clink_clear_events(&l);
        size_t before = l.ntrace;
        struct m2m_coap_msg req;
        m2m_coap_msg_init(&req, M2M_COAP_CON, cases[i].method);
        m2m_coap_add_path(&req, M2M_COAP_OPT_URI_PATH, "/dev/temp");
        if (cases[i].body) {
            req.payload = (const uint8_t *)cases[i].body;
            req.payload_len = strlen(cases[i].body);
        }
        uint32_t id;
        m2m_time t0 = l.now;
        assert_int_equal(m2m_coap_request(l.ep[0], l.now, &l.addr[1], &req, &id), 0);
        assert_true(clink_run_until(&l, l.now + 10000, got_response, NULL));
        /* One round trip: the CON and its piggybacked answer. */
        assert_int_equal(l.now, t0 + 40);
        assert_int_equal(l.ntrace - before, 2);
        assert_int_equal(l.trace[before].type, M2M_COAP_CON);
        assert_int_equal(l.trace[before].code, cases[i].method);
        assert_int_equal(l.trace[before + 1].type, M2M_COAP_ACK);
        assert_int_equal(l.trace[before + 1].code, cases[i].code);
        assert_int_equal(l.trace[before + 1].mid, l.trace[before].mid);
        int s = clink_find(&l, 1, M2M_COAP_EV_REQUEST, 0);
        assert_true(s >= 0);
        assert_string_equal(l.ev[s].path, "/dev/temp");
        assert_int_equal(l.ev[s].code, cases[i].method);
        assert_int_equal(l.ev[s].len, cases[i].body ? strlen(cases[i].body) : 0);
        int r = clink_find(&l, 0, M2M_COAP_EV_RESPONSE, 0);
        assert_true(r >= 0);
        assert_int_equal(l.ev[r].id, id);
        assert_int_equal(l.ev[r].code, cases[i].code);
        assert_string_equal((char *)l.ev[r].payload, cases[i].answer);
        assert_int_equal(clink_count(&l, 0, M2M_COAP_EV_FAILED), 0);
    }
    /* Nothing more goes over the wire afterwards. */
    size_t before = l.ntrace;
    clink_run(&l, l.now + 600000);
    assert_int_equal(l.ntrace, before);
    assert_int_equal(m2m_coap_ep_peer_count(l.ep[0]), 0);
    assert_int_equal(m2m_coap_ep_peer_count(l.ep[1]), 0);
    clink_cleanup(&l);
}

static void test_link_non(void **state)
{
    (void)state;
    static struct clink l;
    struct m2m_coap_config c;
    m2m_coap_config_default(&c);
    clink_init(&l, &c, &c, 72);
    l.cb[1] = app_server;
    l.delay_ms = 20;
    struct m2m_coap_msg req;
    get_req(&req, M2M_COAP_NON, "/dev/temp");
    uint32_t id;
    assert_int_equal(m2m_coap_request(l.ep[0], 0, &l.addr[1], &req, &id), 0);
    assert_true(clink_run_until(&l, 10000, got_response, NULL));
    assert_int_equal(l.ntrace, 2);
    assert_int_equal(l.trace[0].type, M2M_COAP_NON);
    assert_int_equal(l.trace[1].type, M2M_COAP_NON);
    assert_int_equal(l.trace[1].code, M2M_COAP_CONTENT);
    assert_int_not_equal(l.trace[1].mid, l.trace[0].mid);
    int r = clink_find(&l, 0, M2M_COAP_EV_RESPONSE, 0);
    assert_int_equal(l.ev[r].id, id);
    assert_int_equal(l.ev[r].msgtype, M2M_COAP_NON);
    assert_string_equal((char *)l.ev[r].payload, "value");
    /* A NON request that is never answered fails after NON_LIFETIME. */
    clink_clear_events(&l);
    l.loss_pm[0] = 1000;
    assert_int_equal(m2m_coap_request(l.ep[0], l.now, &l.addr[1], &req, &id), 0);
    m2m_time t0 = l.now;
    assert_true(clink_run_until(&l, t0 + 1000000, got_response, NULL));
    assert_int_equal(l.now, t0 + 145000);
    r = clink_find(&l, 0, M2M_COAP_EV_FAILED, 0);
    assert_int_equal(l.ev[r].err, M2M_ETIMEDOUT);
    clink_cleanup(&l);
}

/* ---- output lifetime --------------------------------------------------------- */

/* What poll_output hands out stays valid while more output is queued, up
 * to the next feed or on_timeout (include/m2m/coap.h). */
static void test_output_stays_valid(void **state)
{
    (void)state;
    struct m2m_coap_config c;
    m2m_coap_config_default(&c);
    c.tx.probing_rate = 1000000;
    struct m2m_coap_ep *ep = coap_test_ep(&c, 91);
    static uint8_t body[1000];
    memset(body, 0x5a, sizeof body);
    struct m2m_coap_msg req;
    uint32_t id;
    struct m2m_coap_out first[4];
    uint8_t copy[4][1100];
    for (int round = 0; round < 3; round++) {
        for (int i = 0; i < 4; i++) {
            struct m2m_addr to = test_addr((uint8_t)(10 + 4 * round + i));
            get_req(&req, M2M_COAP_NON, "/big");
            req.code = M2M_COAP_PUT;
            req.payload = body;
            req.payload_len = sizeof body;
            assert_int_equal(m2m_coap_request(ep, round, &to, &req, &id), 0);
        }
        for (int i = 0; i < 4; i++) {
            assert_int_equal(m2m_coap_ep_poll_output(ep, &first[i]), 1);
            memcpy(copy[i], first[i].data, first[i].len);
        }
        /* Sixty more datagrams, several chunks' worth, queued meanwhile. */
        for (int i = 0; i < 60; i++) {
            struct m2m_addr to = test_addr((uint8_t)(30 + 60 * round + i));
            assert_int_equal(m2m_coap_request(ep, round, &to, &req, &id), 0);
        }
        for (int i = 0; i < 4; i++)
            assert_memory_equal(first[i].data, copy[i], first[i].len);
        assert_int_equal(coap_drain(ep), 60);
        m2m_coap_ep_on_timeout(ep, round);
    }
    m2m_coap_ep_free(ep);
}

/* ---- teardown with everything alive ---------------------------------------- */

static void test_free_with_live_state(void **state)
{
    (void)state;
    struct m2m_coap_config c;
    m2m_coap_config_default(&c);
    struct m2m_coap_ep *ep = coap_test_ep(&c, 81);
    struct m2m_addr peer = test_addr(2), other = test_addr(3);
    struct m2m_coap_msg req;
    uint32_t id;
    /* Our CONs: one in flight, two waiting for NSTART. */
    for (int i = 0; i < 3; i++) {
        get_req(&req, M2M_COAP_CON, "/a");
        assert_int_equal(m2m_coap_request(ep, 0, &peer, &req, &id), 0);
    }
    /* NONs held back by PROBING_RATE. */
    for (int i = 0; i < 3; i++) {
        get_req(&req, M2M_COAP_NON, "/n");
        assert_int_equal(m2m_coap_request(ep, 0, &other, &req, &id), 0);
    }
    /* Separate responses to `other`: one in flight, one waiting; they hold
     * no owner, so only the endpoint's teardown frees them. */
    for (int i = 0; i < 3; i++) {
        char hex[64];
        snprintf(hex, sizeof hex, "42 01 00 %02x a1 b2 b1 78", i + 1);
        coap_feed_hex(ep, 10, &other, hex);
    }
    uint32_t ids[3];
    for (int i = 0; i < 3; i++)
        ids[i] = take_request(ep, "/x");
    m2m_coap_ep_on_timeout(ep, 2000);
    respond_text(ep, ids[0], M2M_COAP_CONTENT, "one");
    respond_text(ep, ids[1], M2M_COAP_CONTENT, "two");
    /* An exchange never answered, a Block1 upload half done, a dedup cache,
     * undrained output and events. */
    coap_feed_hex(ep, 2100, &peer,
                  "42 03 00 09 a1 b2 b1 78 d1 03 08 ff 00 01 02 03 04 05 06 07 08 09 0a 0b 0c 0d 0e 0f");
    coap_feed_hex(ep, 2200, &peer, "42 01 00 0a a1 b2 b1 79");
    m2m_coap_ep_free(ep); /* ASan and LeakSanitizer judge */
    m2m_coap_ep_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lifetimes),
        cmocka_unit_test(test_con_schedule_default),
        cmocka_unit_test(test_con_schedule_params),
        cmocka_unit_test(test_nstart_queues_second_con),
        cmocka_unit_test(test_nstart_two),
        cmocka_unit_test(test_dedup_con_replays_ack),
        cmocka_unit_test(test_pending_cap),
        cmocka_unit_test(test_dedup_non_ignored),
        cmocka_unit_test(test_dedup_expiry),
        cmocka_unit_test(test_dedup_eviction),
        cmocka_unit_test(test_separate_response),
        cmocka_unit_test(test_separate_gives_up),
        cmocka_unit_test(test_duplicate_while_processing),
        cmocka_unit_test(test_separate_non),
        cmocka_unit_test(test_reject_malformed),
        cmocka_unit_test(test_ping_and_empty),
        cmocka_unit_test(test_bad_critical_option),
        cmocka_unit_test(test_proxy_uri),
        cmocka_unit_test(test_unknown_token_response_rst),
        cmocka_unit_test(test_rst_fails_request),
        cmocka_unit_test(test_client_separate_response),
        cmocka_unit_test(test_client_separate_times_out),
        cmocka_unit_test(test_response_bad_critical),
        cmocka_unit_test(test_config_validation),
        cmocka_unit_test(test_probing_rate),
        cmocka_unit_test(test_link_methods),
        cmocka_unit_test(test_link_non),
        cmocka_unit_test(test_output_stays_valid),
        cmocka_unit_test(test_free_with_live_state),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
