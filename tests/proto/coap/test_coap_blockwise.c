/* RFC 7959 block-wise transfers between two endpoints in virtual time:
 * atomic Block1 uploads (assembled by the server, one REQUEST event), the
 * server choosing a smaller block size, every way an upload is refused,
 * Block2 answers reassembled by the client, Block2 with Observe, and whole
 * transfers over a lossy link. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/prng.h"
#include "coaplink.h"
#include "m2m/coap.h"
#include "vclock.h"

static uint8_t pattern_byte(size_t i, uint8_t salt)
{
    return (uint8_t)(i * 131 + (i >> 8) + salt);
}

static uint8_t *pattern(size_t n, uint8_t salt)
{
    uint8_t *p = malloc(n ? n : 1);
    assert_non_null(p);
    for (size_t i = 0; i < n; i++)
        p[i] = pattern_byte(i, salt);
    return p;
}

/* ---- what went over the wire ---------------------------------------------- */

struct wire {
    uint8_t from, type, code;
    int64_t b1, b2, size1, size2, observe;
    size_t payload;
    bool lost;
};

struct wirelog {
    struct wire *w;
    size_t n, cap;
};

static int64_t opt_or(const struct m2m_coap_msg *m, uint16_t num)
{
    return m2m_coap_has_opt(m, num) ? (int64_t)m2m_coap_get_uint(m, num, 0) : -1;
}

static bool log_filter(struct clink *l, int from, const uint8_t *p, size_t n, void *ctx)
{
    (void)l;
    struct wirelog *wl = ctx;
    struct m2m_coap_msg m;
    assert_int_equal(m2m_coap_decode(&m, p, n), 0);
    if (wl->n == wl->cap) {
        wl->cap = wl->cap ? wl->cap * 2 : 256;
        wl->w = realloc(wl->w, wl->cap * sizeof *wl->w);
        assert_non_null(wl->w);
    }
    struct wire *w = &wl->w[wl->n++];
    w->from = (uint8_t)from;
    w->type = m.type;
    w->code = m.code;
    w->b1 = opt_or(&m, M2M_COAP_OPT_BLOCK1);
    w->b2 = opt_or(&m, M2M_COAP_OPT_BLOCK2);
    w->size1 = opt_or(&m, M2M_COAP_OPT_SIZE1);
    w->size2 = opt_or(&m, M2M_COAP_OPT_SIZE2);
    w->observe = opt_or(&m, M2M_COAP_OPT_OBSERVE);
    w->payload = m.payload_len;
    w->lost = false;
    assert_true(n <= 1152); /* max_message */
    return true;
}

static size_t wire_count(const struct wirelog *wl, int from, int code)
{
    size_t k = 0;
    for (size_t i = 0; i < wl->n; i++)
        k += wl->w[i].from == from && (code < 0 || wl->w[i].code == code);
    return k;
}

#define BLK(num, m, szx) ((int64_t)(((num) << 4) | ((m) << 3) | (szx)))

/* ---- the server application ------------------------------------------------ */

struct app {
    const uint8_t *repr; /* what GET returns */
    size_t repr_len;
    uint8_t *got; /* last PUT/POST body */
    size_t got_len;
    int uploads, gets;
};

static void app_cb(struct clink *l, int side, const struct m2m_coap_event *ev, void *ctx)
{
    struct app *a = ctx;
    clink_record(l, side, ev);
    if (ev->type != M2M_COAP_EV_REQUEST)
        return;
    struct m2m_coap_msg r;
    int rc;
    if (ev->msg.code == M2M_COAP_GET) {
        a->gets++;
        m2m_coap_msg_init(&r, 0, M2M_COAP_CONTENT);
        if (m2m_coap_get_uint(&ev->msg, M2M_COAP_OPT_OBSERVE, 1) == 0)
            m2m_coap_add_uint(&r, M2M_COAP_OPT_OBSERVE, 0);
        m2m_coap_add_uint(&r, M2M_COAP_OPT_CONTENT_FORMAT, M2M_COAP_FMT_OCTETS);
        r.payload = a->repr;
        r.payload_len = a->repr_len;
    } else {
        a->uploads++;
        free(a->got);
        a->got = malloc(ev->msg.payload_len + 1);
        assert_non_null(a->got);
        if (ev->msg.payload_len)
            memcpy(a->got, ev->msg.payload, ev->msg.payload_len);
        a->got_len = ev->msg.payload_len;
        m2m_coap_msg_init(&r, 0, ev->msg.code == M2M_COAP_PUT ? M2M_COAP_CHANGED : M2M_COAP_CREATED);
    }
    rc = m2m_coap_respond(l->ep[side], ev->id, &r);
    assert_int_equal(rc, 0);
}

struct rig {
    struct clink l;
    struct app app;
    struct wirelog wl;
};

static struct rig *rig_new(const struct m2m_coap_config *client, const struct m2m_coap_config *server,
                           uint64_t seed)
{
    struct rig *r = calloc(1, sizeof *r);
    assert_non_null(r);
    clink_init(&r->l, client, server, seed);
    r->l.delay_ms = 5;
    r->l.cb[1] = app_cb;
    r->l.ctx[1] = &r->app;
    r->l.filter = log_filter;
    r->l.filter_ctx = &r->wl;
    return r;
}

static void rig_free(struct rig *r)
{
    clink_cleanup(&r->l);
    free(r->app.got);
    free(r->wl.w);
    free(r);
}

static bool client_done(struct clink *l, void *arg)
{
    (void)arg;
    return clink_find(l, 0, M2M_COAP_EV_RESPONSE, 0) >= 0 || clink_find(l, 0, M2M_COAP_EV_FAILED, 0) >= 0;
}

/* Sends `code` with `body` to /up and runs until the answer; returns the
 * index of the client's event. */
static int upload(struct rig *r, uint8_t type, uint8_t code, const uint8_t *body, size_t len, uint32_t *id)
{
    struct m2m_coap_msg req;
    m2m_coap_msg_init(&req, type, code);
    m2m_coap_add_path(&req, M2M_COAP_OPT_URI_PATH, "/up");
    req.payload = body;
    req.payload_len = len;
    assert_int_equal(m2m_coap_request(r->l.ep[0], r->l.now, &r->l.addr[1], &req, id), 0);
    assert_true(clink_run_until(&r->l, r->l.now + 3600000, client_done, NULL));
    int i = clink_find(&r->l, 0, M2M_COAP_EV_RESPONSE, 0);
    if (i < 0)
        i = clink_find(&r->l, 0, M2M_COAP_EV_FAILED, 0);
    return i;
}

static int fetch(struct rig *r, uint8_t type, const char *path, int szx, uint32_t *id)
{
    struct m2m_coap_msg req;
    m2m_coap_msg_init(&req, type, M2M_COAP_GET);
    m2m_coap_add_path(&req, M2M_COAP_OPT_URI_PATH, path);
    if (szx >= 0) {
        struct m2m_coap_block b = {.num = 0, .szx = (uint8_t)szx};
        m2m_coap_add_block(&req, M2M_COAP_OPT_BLOCK2, &b);
    }
    assert_int_equal(m2m_coap_request(r->l.ep[0], r->l.now, &r->l.addr[1], &req, id), 0);
    assert_true(clink_run_until(&r->l, r->l.now + 3600000, client_done, NULL));
    int i = clink_find(&r->l, 0, M2M_COAP_EV_RESPONSE, 0);
    if (i < 0)
        i = clink_find(&r->l, 0, M2M_COAP_EV_FAILED, 0);
    return i;
}

/* ---- Block1 ------------------------------------------------------------------ */

static void check_upload(size_t len, uint8_t code)
{
    struct m2m_coap_config c;
    m2m_coap_config_default(&c);
    struct rig *r = rig_new(&c, &c, len + code);
    uint8_t *body = pattern(len, (uint8_t)len);
    uint32_t id;
    int i = upload(r, M2M_COAP_CON, code, body, len, &id);
    assert_int_equal(r->l.ev[i].type, M2M_COAP_EV_RESPONSE);
    assert_int_equal(r->l.ev[i].id, id);
    assert_int_equal(r->l.ev[i].code, code == M2M_COAP_PUT ? M2M_COAP_CHANGED : M2M_COAP_CREATED);
    /* One REQUEST event carrying the whole body. */
    assert_int_equal(r->app.uploads, 1);
    assert_int_equal(clink_count(&r->l, 1, M2M_COAP_EV_REQUEST), 1);
    assert_int_equal(r->app.got_len, len);
    assert_memory_equal(r->app.got, body, len);
    size_t blocks = len <= 1024 ? 1 : (len + 1023) / 1024;
    assert_int_equal(wire_count(&r->wl, 0, code), blocks);
    assert_int_equal(wire_count(&r->wl, 1, M2M_COAP_CONTINUE), blocks - 1);
    size_t k = 0;
    for (size_t w = 0; w < r->wl.n; w++) {
        const struct wire *x = &r->wl.w[w];
        if (x->from == 0) {
            if (blocks == 1) {
                assert_int_equal(x->b1, -1); /* fits one message */
                assert_int_equal(x->payload, len);
            } else {
                bool more = k + 1 < blocks;
                assert_int_equal(x->b1, BLK(k, more, 6));
                assert_int_equal(x->payload, more ? 1024 : len - k * 1024);
                assert_int_equal(x->size1, k == 0 ? (int64_t)len : -1);
            }
            k++;
        } else if (x->code == M2M_COAP_CONTINUE) {
            assert_int_equal(x->b1, BLK(k - 1, 1, 6));
        } else {
            /* The final answer echoes the last block, M clear. */
            assert_int_equal(x->b1, blocks == 1 ? -1 : BLK(blocks - 1, 0, 6));
        }
    }
    free(body);
    rig_free(r);
}

static void test_block1_sizes(void **state)
{
    (void)state;
    const size_t sizes[] = {1, 1024, 1025, 100 * 1024, 1024 * 1024};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        check_upload(sizes[i], M2M_COAP_PUT);
        check_upload(sizes[i], M2M_COAP_POST);
    }
}

static void test_block1_non(void **state)
{
    (void)state;
    struct m2m_coap_config c;
    m2m_coap_config_default(&c);
    c.tx.probing_rate = 1000000;
    struct rig *r = rig_new(&c, &c, 5);
    uint8_t *body = pattern(5000, 3);
    uint32_t id;
    int i = upload(r, M2M_COAP_NON, M2M_COAP_PUT, body, 5000, &id);
    assert_int_equal(r->l.ev[i].type, M2M_COAP_EV_RESPONSE);
    assert_int_equal(r->app.got_len, 5000);
    assert_memory_equal(r->app.got, body, 5000);
    for (size_t w = 0; w < r->wl.n; w++)
        assert_int_equal(r->wl.w[w].type, M2M_COAP_NON);
    free(body);
    rig_free(r);
}

static void test_block1_server_smaller_szx(void **state)
{
    (void)state;
    struct m2m_coap_config cc, sc;
    m2m_coap_config_default(&cc);
    m2m_coap_config_default(&sc);
    sc.block_szx = 2; /* the server wants 64-byte blocks */
    struct rig *r = rig_new(&cc, &sc, 6);
    uint8_t *body = pattern(3000, 9);
    uint32_t id;
    int i = upload(r, M2M_COAP_CON, M2M_COAP_PUT, body, 3000, &id);
    assert_int_equal(r->l.ev[i].type, M2M_COAP_EV_RESPONSE);
    assert_int_equal(r->app.got_len, 3000);
    assert_memory_equal(r->app.got, body, 3000);
    /* 1024 bytes in block 0, then 64-byte blocks from num 16 on. */
    const struct wire *w = r->wl.w;
    assert_int_equal(w[0].b1, BLK(0, 1, 6));
    assert_int_equal(w[0].payload, 1024);
    assert_int_equal(w[1].code, M2M_COAP_CONTINUE);
    assert_int_equal(w[1].b1, BLK(0, 1, 2));
    assert_int_equal(w[2].b1, BLK(16, 1, 2));
    assert_int_equal(w[2].payload, 64);
    size_t blocks = 1 + (3000 - 1024 + 63) / 64;
    assert_int_equal(wire_count(&r->wl, 0, M2M_COAP_PUT), blocks);
    const struct wire *last = &w[r->wl.n - 2];
    assert_int_equal(last->b1, BLK(16 + blocks - 2, 0, 2));
    assert_int_equal(last->payload, (3000 - 1024) % 64);
    free(body);
    rig_free(r);
}

static void test_block1_too_large_over_link(void **state)
{
    (void)state;
    struct m2m_coap_config cc, sc;
    m2m_coap_config_default(&cc);
    m2m_coap_config_default(&sc);
    sc.max_body = 10000;
    struct rig *r = rig_new(&cc, &sc, 7);
    uint8_t *body = pattern(20000, 1);
    uint32_t id;
    int i = upload(r, M2M_COAP_CON, M2M_COAP_PUT, body, 20000, &id);
    /* Refused at the first block, from its Size1. */
    assert_int_equal(r->l.ev[i].type, M2M_COAP_EV_RESPONSE);
    assert_int_equal(r->l.ev[i].code, M2M_COAP_REQUEST_ENTITY_TOO_LARGE);
    assert_int_equal(r->wl.n, 2);
    assert_int_equal(r->wl.w[1].size1, 10000);
    assert_int_equal(r->app.uploads, 0);
    /* The client has its own cap. */
    struct m2m_coap_msg req;
    m2m_coap_msg_init(&req, M2M_COAP_CON, M2M_COAP_PUT);
    req.payload = body;
    req.payload_len = (4u << 20) + 1;
    uint8_t *huge = calloc(1, req.payload_len);
    req.payload = huge;
    assert_int_equal(m2m_coap_request(r->l.ep[0], r->l.now, &r->l.addr[1], &req, &id), M2M_ELIMIT);
    free(huge);
    free(body);
    rig_free(r);
}

/* Block1 refusals, byte for byte, against a scripted client. */
static struct m2m_coap_ep *server_ep(size_t max_body)
{
    struct m2m_coap_config c;
    m2m_coap_config_default(&c);
    if (max_body)
        c.max_body = max_body;
    return coap_test_ep(&c, 99);
}

#define SIXTEEN "00 01 02 03 04 05 06 07 08 09 0a 0b 0c 0d 0e 0f"

static void no_event(struct m2m_coap_ep *ep)
{
    struct cevent e;
    int got = coap_next_event(ep, &e);
    if (got)
        cevent_free(&e);
    assert_int_equal(got, 0);
}

static void test_block1_out_of_order(void **state)
{
    (void)state;
    struct m2m_coap_ep *ep = server_ep(0);
    struct m2m_addr peer = test_addr(2);
    /* PUT /x block 0 of 16 bytes, more to come: 2.31 echoing Block1. */
    coap_feed_hex(ep, 0, &peer, "42 03 00 01 a1 b2 b1 78 d1 03 08 ff " SIXTEEN);
    assert_string_equal(coap_take_hex(ep), "62 5f 00 01 a1 b2 d1 0e 08");
    /* Block 2 skips block 1: 4.08 Request Entity Incomplete. */
    coap_feed_hex(ep, 10, &peer, "42 03 00 02 a1 b2 b1 78 d1 03 28 ff " SIXTEEN);
    assert_string_equal(coap_take_hex(ep), "62 88 00 02 a1 b2");
    no_event(ep);
    /* The upload is gone: block 1 is now out of sequence too. */
    coap_feed_hex(ep, 20, &peer, "42 03 00 03 a1 b2 b1 78 d1 03 18 ff " SIXTEEN);
    assert_string_equal(coap_take_hex(ep), "62 88 00 03 a1 b2");
    /* Block 0 sent again (a new MID, not a retransmission) restarts the
     * upload from scratch. */
    coap_feed_hex(ep, 30, &peer, "42 03 00 04 a1 b2 b1 78 d1 03 08 ff " SIXTEEN);
    assert_string_equal(coap_take_hex(ep), "62 5f 00 04 a1 b2 d1 0e 08");
    coap_feed_hex(ep, 40, &peer, "42 03 00 05 a1 b2 b1 78 d1 03 08 ff " SIXTEEN);
    assert_string_equal(coap_take_hex(ep), "62 5f 00 05 a1 b2 d1 0e 08"); /* block 0 restarts */
    coap_feed_hex(ep, 50, &peer, "42 03 00 06 a1 b2 b1 78 d1 03 10 ff 41");
    struct cevent e;
    assert_int_equal(coap_next_event(ep, &e), 1);
    assert_int_equal(e.type, M2M_COAP_EV_REQUEST);
    assert_int_equal(e.len, 17);
    assert_memory_equal(e.payload,
                        "\x00\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a\x0b\x0c\x0d\x0e\x0f"
                        "A",
                        17);
    struct m2m_coap_msg r;
    m2m_coap_msg_init(&r, 0, M2M_COAP_CHANGED);
    assert_int_equal(m2m_coap_respond(ep, e.id, &r), 0);
    cevent_free(&e);
    assert_string_equal(coap_take_hex(ep), "62 44 00 06 a1 b2 d1 0e 10");
    m2m_coap_ep_free(ep);
}

static void test_block1_size1_too_large(void **state)
{
    (void)state;
    struct m2m_coap_ep *ep = server_ep(0);
    struct m2m_addr peer = test_addr(2);
    /* Size1 5 MiB against max_body 4 MiB: 4.13 with Size1 = 4 MiB. */
    coap_feed_hex(ep, 0, &peer, "42 03 00 01 a1 b2 b1 78 d1 03 08 d3 14 50 00 00 ff " SIXTEEN);
    assert_string_equal(coap_take_hex(ep), "62 8d 00 01 a1 b2 d3 2f 40 00 00");
    no_event(ep);
    m2m_coap_ep_free(ep);
    /* Without Size1, when the blocks pass the cap. */
    ep = server_ep(40);
    coap_feed_hex(ep, 0, &peer, "42 03 00 01 a1 b2 b1 78 d1 03 08 ff " SIXTEEN);
    assert_string_equal(coap_take_hex(ep), "62 5f 00 01 a1 b2 d1 0e 08");
    coap_feed_hex(ep, 1, &peer, "42 03 00 02 a1 b2 b1 78 d1 03 18 ff " SIXTEEN);
    assert_string_equal(coap_take_hex(ep), "62 5f 00 02 a1 b2 d1 0e 18");
    coap_feed_hex(ep, 2, &peer, "42 03 00 03 a1 b2 b1 78 d1 03 28 ff " SIXTEEN);
    assert_string_equal(coap_take_hex(ep), "62 8d 00 03 a1 b2 d1 2f 28");
    no_event(ep);
    m2m_coap_ep_free(ep);
}

static void test_block1_short_block(void **state)
{
    (void)state;
    struct m2m_coap_ep *ep = server_ep(0);
    struct m2m_addr peer = test_addr(2);
    /* Block 0 says M=1 and 16 bytes, carries 10: 4.00. */
    coap_feed_hex(ep, 0, &peer, "42 03 00 01 a1 b2 b1 78 d1 03 08 ff 00 01 02 03 04 05 06 07 08 09");
    uint8_t b[128];
    size_t n = coap_take(ep, b, sizeof b, NULL);
    struct m2m_coap_msg m;
    assert_int_equal(m2m_coap_decode(&m, b, n), 0);
    assert_int_equal(m.type, M2M_COAP_ACK);
    assert_int_equal(m.code, M2M_COAP_BAD_REQUEST);
    assert_int_equal(m.mid, 1);
    no_event(ep);
    /* A later non-final block that is too long: also 4.00. */
    coap_feed_hex(ep, 10, &peer, "42 03 00 02 a1 b2 b1 78 d1 03 08 ff " SIXTEEN);
    assert_string_equal(coap_take_hex(ep), "62 5f 00 02 a1 b2 d1 0e 08");
    coap_feed_hex(ep, 20, &peer, "42 03 00 03 a1 b2 b1 78 d1 03 18 ff " SIXTEEN " 10");
    n = coap_take(ep, b, sizeof b, NULL);
    assert_int_equal(m2m_coap_decode(&m, b, n), 0);
    assert_int_equal(m.code, M2M_COAP_BAD_REQUEST);
    no_event(ep);
    m2m_coap_ep_free(ep);
}

/* ---- Block2 ------------------------------------------------------------------ */

static void test_block2_5000(void **state)
{
    (void)state;
    struct m2m_coap_config c;
    m2m_coap_config_default(&c);
    struct rig *r = rig_new(&c, &c, 11);
    uint8_t *repr = pattern(5000, 77);
    r->app.repr = repr;
    r->app.repr_len = 5000;
    uint32_t id;
    int i = fetch(r, M2M_COAP_CON, "/big", -1, &id);
    assert_int_equal(r->l.ev[i].type, M2M_COAP_EV_RESPONSE);
    assert_int_equal(r->l.ev[i].id, id);
    assert_int_equal(r->l.ev[i].code, M2M_COAP_CONTENT);
    assert_int_equal(r->l.ev[i].len, 5000);
    assert_memory_equal(r->l.ev[i].payload, repr, 5000);
    assert_int_equal(clink_count(&r->l, 0, M2M_COAP_EV_RESPONSE), 1);
    /* The first GET has no Block2; then blocks 1..4 of 1024 bytes. */
    assert_int_equal(r->app.gets, 5);
    size_t k = 0;
    for (size_t w = 0; w < r->wl.n; w++) {
        const struct wire *x = &r->wl.w[w];
        if (x->from == 0) {
            assert_int_equal(x->b2, k == 0 ? -1 : BLK(k, 0, 6));
        } else {
            bool more = k < 4;
            assert_int_equal(x->b2, BLK(k, more, 6));
            assert_int_equal(x->payload, more ? 1024 : 5000 - 4096);
            assert_int_equal(x->size2, k == 0 ? 5000 : -1);
            k++;
        }
    }
    assert_int_equal(k, 5);
    free(repr);
    rig_free(r);
}

static void test_block2_client_smaller_szx(void **state)
{
    (void)state;
    struct m2m_coap_config c;
    m2m_coap_config_default(&c);
    struct rig *r = rig_new(&c, &c, 12);
    uint8_t *repr = pattern(5000, 5);
    r->app.repr = repr;
    r->app.repr_len = 5000;
    uint32_t id;
    int i = fetch(r, M2M_COAP_CON, "/big", 2, &id);
    assert_int_equal(r->l.ev[i].type, M2M_COAP_EV_RESPONSE);
    assert_int_equal(r->l.ev[i].len, 5000);
    assert_memory_equal(r->l.ev[i].payload, repr, 5000);
    size_t blocks = (5000 + 63) / 64;
    assert_int_equal(r->app.gets, blocks);
    assert_int_equal(r->wl.w[0].b2, BLK(0, 0, 2));
    assert_int_equal(r->wl.w[1].b2, BLK(0, 1, 2));
    assert_int_equal(r->wl.w[1].payload, 64);
    assert_int_equal(r->wl.w[r->wl.n - 1].b2, BLK(blocks - 1, 0, 2));
    free(repr);
    rig_free(r);

    /* The same over NON, asking for 256-byte blocks. */
    c.tx.probing_rate = 1000000;
    r = rig_new(&c, &c, 13);
    repr = pattern(3000, 6);
    r->app.repr = repr;
    r->app.repr_len = 3000;
    i = fetch(r, M2M_COAP_NON, "/big", 4, &id);
    assert_int_equal(r->l.ev[i].type, M2M_COAP_EV_RESPONSE);
    assert_int_equal(r->l.ev[i].len, 3000);
    assert_memory_equal(r->l.ev[i].payload, repr, 3000);
    free(repr);
    rig_free(r);
}

static void test_block2_past_end(void **state)
{
    (void)state;
    struct m2m_coap_ep *ep = server_ep(0);
    struct m2m_addr peer = test_addr(2);
    uint8_t *repr = pattern(5000, 1);
    /* GET /x Block2 num 5, 1024 bytes: past the 5000-byte end. */
    coap_feed_hex(ep, 0, &peer, "42 01 00 01 a1 b2 b1 78 c1 56");
    struct cevent e;
    assert_int_equal(coap_next_event(ep, &e), 1);
    struct m2m_coap_msg r;
    m2m_coap_msg_init(&r, 0, M2M_COAP_CONTENT);
    r.payload = repr;
    r.payload_len = 5000;
    assert_int_equal(m2m_coap_respond(ep, e.id, &r), 0);
    cevent_free(&e);
    assert_string_equal(coap_take_hex(ep), "62 82 00 01 a1 b2");
    /* Num 4 is the last, 904 bytes, M clear, no Size2. */
    coap_feed_hex(ep, 1, &peer, "42 01 00 02 a1 b2 b1 78 c1 46");
    assert_int_equal(coap_next_event(ep, &e), 1);
    assert_int_equal(m2m_coap_respond(ep, e.id, &r), 0);
    cevent_free(&e);
    uint8_t b[1200];
    size_t n = coap_take(ep, b, sizeof b, NULL);
    struct m2m_coap_msg m;
    assert_int_equal(m2m_coap_decode(&m, b, n), 0);
    assert_int_equal(m.code, M2M_COAP_CONTENT);
    assert_int_equal(m2m_coap_get_uint(&m, M2M_COAP_OPT_BLOCK2, 0), 0x46);
    assert_false(m2m_coap_has_opt(&m, M2M_COAP_OPT_SIZE2));
    assert_int_equal(m.payload_len, 904);
    assert_memory_equal(m.payload, repr + 4096, 904);
    /* An error answer to a block request is passed through as it is. */
    coap_feed_hex(ep, 2, &peer, "42 01 00 03 a1 b2 b1 78 c1 56");
    assert_int_equal(coap_next_event(ep, &e), 1);
    struct m2m_coap_msg nf;
    m2m_coap_msg_init(&nf, 0, M2M_COAP_NOT_FOUND);
    assert_int_equal(m2m_coap_respond(ep, e.id, &nf), 0);
    cevent_free(&e);
    assert_string_equal(coap_take_hex(ep), "62 84 00 03 a1 b2");
    free(repr);
    m2m_coap_ep_free(ep);
}

/* ---- Block2 with Observe ---------------------------------------------------- */

static void test_block2_observe(void **state)
{
    (void)state;
    struct m2m_coap_config c;
    m2m_coap_config_default(&c);
    c.tx.probing_rate = 1000000;
    struct rig *r = rig_new(&c, &c, 14);
    uint8_t *v1 = pattern(2500, 1), *v2 = pattern(3000, 2);
    r->app.repr = v1;
    r->app.repr_len = 2500;
    struct m2m_coap_msg req;
    m2m_coap_msg_init(&req, M2M_COAP_CON, M2M_COAP_GET);
    m2m_coap_add_uint(&req, M2M_COAP_OPT_OBSERVE, 0);
    m2m_coap_add_path(&req, M2M_COAP_OPT_URI_PATH, "/big");
    uint32_t id;
    assert_int_equal(m2m_coap_request(r->l.ep[0], 0, &r->l.addr[1], &req, &id), 0);
    assert_true(clink_run_until(&r->l, 60000, client_done, NULL));
    int i = clink_find(&r->l, 0, M2M_COAP_EV_RESPONSE, 0);
    assert_true(i >= 0);
    assert_int_equal(r->l.ev[i].len, 2500);
    assert_memory_equal(r->l.ev[i].payload, v1, 2500);
    assert_int_equal(m2m_coap_ep_observer_count(r->l.ep[1]), 1);
    assert_int_equal(r->app.gets, 3);
    /* A new state larger than a block: the notification carries block 0,
     * the client fetches the rest and emits one NOTIFY. */
    r->app.repr = v2;
    r->app.repr_len = 3000;
    size_t wl0 = r->wl.n;
    clink_run(&r->l, r->l.now + 1000);
    struct m2m_coap_msg s;
    m2m_coap_msg_init(&s, 0, M2M_COAP_CONTENT);
    s.payload = v2;
    s.payload_len = 3000;
    assert_int_equal(m2m_coap_notify(r->l.ep[1], "/big", &s, false), 1);
    clink_run(&r->l, r->l.now + 10000);
    assert_int_equal(clink_count(&r->l, 0, M2M_COAP_EV_NOTIFY), 1);
    int k = clink_find(&r->l, 0, M2M_COAP_EV_NOTIFY, 0);
    assert_int_equal(r->l.ev[k].id, id);
    assert_int_equal(r->l.ev[k].len, 3000);
    assert_memory_equal(r->l.ev[k].payload, v2, 3000);
    /* On the wire: NON notification with Observe, Block2 0/1/1024, Size2. */
    const struct wire *n0 = &r->wl.w[wl0];
    assert_int_equal(n0->from, 1);
    assert_int_equal(n0->type, M2M_COAP_NON);
    assert_true(n0->observe > 2);
    assert_int_equal(n0->b2, BLK(0, 1, 6));
    assert_int_equal(n0->size2, 3000);
    /* The follow-ups carry no Observe. */
    for (size_t w = wl0 + 1; w < r->wl.n; w++)
        if (r->wl.w[w].from == 0)
            assert_int_equal(r->wl.w[w].observe, -1);
    assert_int_equal(r->app.gets, 3 + 2);
    assert_int_equal(m2m_coap_ep_observer_count(r->l.ep[1]), 1);
    /* A small notification afterwards comes whole. */
    static const uint8_t small[] = "tiny";
    s.payload = small;
    s.payload_len = 4;
    assert_int_equal(m2m_coap_notify(r->l.ep[1], "/big", &s, false), 1);
    clink_run(&r->l, r->l.now + 1000);
    assert_int_equal(clink_count(&r->l, 0, M2M_COAP_EV_NOTIFY), 2);
    assert_int_equal(clink_count(&r->l, 0, M2M_COAP_EV_FAILED), 0);
    free(v1);
    free(v2);
    rig_free(r);
}

/* ---- over a lossy link ------------------------------------------------------ */

static void test_lossy_link(void **state)
{
    (void)state;
    const size_t len = 100 * 1024;
    /* A CON exchange (request + ACK) fails all MAX_RETRANSMIT + 1 tries
     * with p = (1 - (1 - loss)^2)^(n + 1): at 10% and the default 4 that is
     * 2.5e-4 per block, 5% for the 200 blocks of a run. At 15% (1.6e-3) and
     * 20% (6e-3) the default would give up in 30-70% of the runs, so those
     * allow 6 and 8 retransmissions (1.3e-4 and 1e-4 per block). */
    const struct {
        uint32_t loss_pm, max_retransmit;
    } runs[] = {{100, 4}, {150, 6}, {200, 8}};
    for (size_t li = 0; li < sizeof runs / sizeof runs[0]; li++) {
        struct m2m_coap_config c;
        m2m_coap_config_default(&c);
        c.tx.max_retransmit = runs[li].max_retransmit;
        struct rig *r = rig_new(&c, &c, 1000 + li);
        const uint32_t losses[] = {runs[li].loss_pm, runs[li].loss_pm};
        r->l.loss_pm[0] = losses[0];
        r->l.loss_pm[1] = losses[1];
        r->l.delay_ms = 30;
        uint8_t *body = pattern(len, (uint8_t)li);
        uint32_t id;
        int i = upload(r, M2M_COAP_CON, M2M_COAP_PUT, body, len, &id);
        assert_int_equal(r->l.ev[i].type, M2M_COAP_EV_RESPONSE);
        assert_int_equal(r->l.ev[i].code, M2M_COAP_CHANGED);
        assert_int_equal(r->app.uploads, 1);
        assert_int_equal(r->app.got_len, len);
        assert_memory_equal(r->app.got, body, len);
        size_t lost =
            clink_count_dgrams(&r->l, -1, -1, -1, true) - clink_count_dgrams(&r->l, -1, -1, -1, false);
        assert_true(lost > 10); /* the link really lost datagrams */
        assert_true(m2m_coap_ep_stats(r->l.ep[0])->retransmits > 0);
        assert_true(m2m_coap_ep_stats(r->l.ep[1])->duplicates > 0);
        /* And back down with Block2. */
        clink_clear_events(&r->l);
        r->app.repr = body;
        r->app.repr_len = len;
        i = fetch(r, M2M_COAP_CON, "/up", -1, &id);
        assert_int_equal(r->l.ev[i].type, M2M_COAP_EV_RESPONSE);
        assert_int_equal(r->l.ev[i].len, len);
        assert_memory_equal(r->l.ev[i].payload, body, len);
        free(body);
        rig_free(r);
    }
}

/* A link that loses most datagrams: the upload gives up cleanly, and the
 * server forgets the partial body after EXCHANGE_LIFETIME. */
static void test_hopeless_link(void **state)
{
    (void)state;
    struct m2m_coap_config c;
    m2m_coap_config_default(&c);
    struct rig *r = rig_new(&c, &c, 77);
    uint8_t *body = pattern(20000, 4);
    uint32_t id;
    /* Blocks 0 and 1 go through, then the link dies. */
    int i = -1;
    struct m2m_coap_msg req;
    m2m_coap_msg_init(&req, M2M_COAP_CON, M2M_COAP_PUT);
    m2m_coap_add_path(&req, M2M_COAP_OPT_URI_PATH, "/up");
    req.payload = body;
    req.payload_len = 20000;
    assert_int_equal(m2m_coap_request(r->l.ep[0], 0, &r->l.addr[1], &req, &id), 0);
    while (wire_count(&r->wl, 1, M2M_COAP_CONTINUE) < 2)
        assert_true(clink_step(&r->l, 60000));
    r->l.loss_pm[0] = r->l.loss_pm[1] = 1000;
    assert_true(clink_run_until(&r->l, 3600000, client_done, NULL));
    i = clink_find(&r->l, 0, M2M_COAP_EV_FAILED, 0);
    assert_true(i >= 0);
    assert_int_equal(r->l.ev[i].id, id);
    assert_int_equal(r->l.ev[i].err, M2M_ETIMEDOUT);
    assert_int_equal(r->app.uploads, 0);
    assert_true(m2m_coap_ep_next_timeout(r->l.ep[1]) != M2M_NEVER);
    clink_run(&r->l, r->l.now + 400000);
    assert_int_equal(m2m_coap_ep_next_timeout(r->l.ep[0]), M2M_NEVER);
    assert_int_equal(m2m_coap_ep_next_timeout(r->l.ep[1]), M2M_NEVER);
    /* A new upload of the same path starts from block 0 as usual. */
    r->l.loss_pm[0] = r->l.loss_pm[1] = 0;
    clink_clear_events(&r->l);
    i = upload(r, M2M_COAP_CON, M2M_COAP_PUT, body, 20000, &id);
    assert_int_equal(r->l.ev[i].type, M2M_COAP_EV_RESPONSE);
    assert_int_equal(r->app.got_len, 20000);
    assert_memory_equal(r->app.got, body, 20000);
    free(body);
    rig_free(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_block1_sizes),
        cmocka_unit_test(test_block1_non),
        cmocka_unit_test(test_block1_server_smaller_szx),
        cmocka_unit_test(test_block1_too_large_over_link),
        cmocka_unit_test(test_block1_out_of_order),
        cmocka_unit_test(test_block1_size1_too_large),
        cmocka_unit_test(test_block1_short_block),
        cmocka_unit_test(test_block2_5000),
        cmocka_unit_test(test_block2_client_smaller_szx),
        cmocka_unit_test(test_block2_past_end),
        cmocka_unit_test(test_block2_observe),
        cmocka_unit_test(test_lossy_link),
        cmocka_unit_test(test_hopeless_link),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
