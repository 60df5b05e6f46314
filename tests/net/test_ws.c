/* The WebSocket filter (src/net/ws.c) over a fake inner core that records
 * what reaches it and echoes it back; the client side of each exchange is
 * built here byte by byte (masked frames) and the server's frames are parsed
 * back. Virtual time. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "guardbuf.h"
#include "net/ws.h"

/* ---- a fake inner core: records input, echoes it, has one timer ---------- */

struct echo {
    uint8_t got[300000];
    size_t got_len;
    size_t pending; /* bytes of got not yet echoed */
    bool echo;
    size_t chunk; /* echo in chunks of at most this (0: all at once) */
    m2m_time deadline;
    int timeouts;
    m2m_time last_timeout;
};

static int echo_feed(void *core, m2m_time now, const uint8_t *p, size_t n)
{
    struct echo *e = core;
    (void)now;
    assert_true(e->got_len + n <= sizeof e->got);
    memcpy(e->got + e->got_len, p, n);
    e->got_len += n;
    if (e->echo)
        e->pending += n;
    return 0;
}

static bool echo_poll_output(void *core, const uint8_t **p, size_t *n)
{
    struct echo *e = core;
    if (!e->pending)
        return false;
    size_t k = e->chunk && e->chunk < e->pending ? e->chunk : e->pending;
    *p = e->got + e->got_len - e->pending;
    *n = k;
    e->pending -= k;
    return true;
}

static m2m_time echo_next_timeout(const void *core)
{
    return ((const struct echo *)core)->deadline;
}

static void echo_on_timeout(void *core, m2m_time now)
{
    struct echo *e = core;
    e->timeouts++;
    e->last_timeout = now;
}

static const struct m2m_stream_ops echo_ops = {
    .name = "echo",
    .feed = echo_feed,
    .poll_output = echo_poll_output,
    .next_timeout = echo_next_timeout,
    .on_timeout = echo_on_timeout,
};

/* ---- fixture ---------------------------------------------------------------- */

struct fx {
    struct echo *inner;
    struct m2m_ws *ws;
    uint8_t out[400000];
    size_t out_len;
};

static struct m2m_ws_config default_cfg(void)
{
    struct m2m_ws_config c;
    memset(&c, 0, sizeof c);
    c.subprotocol = "mqtt";
    c.start = 1000;
    return c;
}

static struct fx *fx_new(const struct m2m_ws_config *cfg)
{
    struct fx *f = calloc(1, sizeof *f);
    assert_non_null(f);
    f->inner = calloc(1, sizeof *f->inner);
    assert_non_null(f->inner);
    f->inner->echo = true;
    f->inner->deadline = M2M_NEVER;
    struct m2m_ws_config d = default_cfg();
    f->ws = m2m_ws_new(&echo_ops, f->inner, cfg ? cfg : &d);
    assert_non_null(f->ws);
    return f;
}

static void fx_free(struct fx *f)
{
    m2m_ws_free(f->ws);
    free(f->inner);
    free(f);
}

/* Feeds an exact heap copy, so ASan sees any read past the end. */
static void fx_feed(struct fx *f, const void *p, size_t n)
{
    uint8_t *c = test_heap_copy(p, n);
    m2m_ws_stream_ops.feed(f->ws, 2000, c, n);
    free(c);
}

static void fx_feed_str(struct fx *f, const char *s)
{
    fx_feed(f, s, strlen(s));
}

/* Collects everything the filter has to write (appended to f->out). */
static size_t fx_drain(struct fx *f)
{
    const uint8_t *p;
    size_t n, total = 0;
    while (m2m_ws_stream_ops.poll_output(f->ws, &p, &n)) {
        assert_true(n > 0);
        assert_true(f->out_len + n <= sizeof f->out);
        memcpy(f->out + f->out_len, p, n);
        f->out_len += n;
        total += n;
    }
    return total;
}

static bool out_has(const struct fx *f, const char *s)
{
    return memmem(f->out, f->out_len, s, strlen(s)) != NULL;
}

/* Drops the HTTP answer from f->out, checking it ends the header block. */
static void fx_skip_http(struct fx *f)
{
    const uint8_t *e = memmem(f->out, f->out_len, "\r\n\r\n", 4);
    assert_non_null(e);
    size_t k = (size_t)(e - f->out) + 4;
    memmove(f->out, f->out + k, f->out_len - k);
    f->out_len -= k;
}

#define REQ_HEAD                                                                                             \
    "GET /mqtt HTTP/1.1\r\n"                                                                                 \
    "Host: server.example.com\r\n"                                                                           \
    "Upgrade: websocket\r\n"                                                                                 \
    "Connection: Upgrade\r\n"                                                                                \
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"                                                        \
    "Origin: http://example.com\r\n"                                                                         \
    "Sec-WebSocket-Version: 13\r\n"

static const char good_req[] = REQ_HEAD "Sec-WebSocket-Protocol: chat, mqtt\r\n\r\n";

/* RFC 6455 §1.3's key and accept value. */
static const char good_resp[] = "HTTP/1.1 101 Switching Protocols\r\n"
                                "Upgrade: websocket\r\n"
                                "Connection: Upgrade\r\n"
                                "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
                                "Sec-WebSocket-Protocol: mqtt\r\n"
                                "\r\n";

static struct fx *fx_open(const struct m2m_ws_config *cfg)
{
    struct fx *f = fx_new(cfg);
    fx_feed_str(f, good_req);
    fx_drain(f);
    assert_true(m2m_ws_open(f->ws));
    assert_false(m2m_ws_closed(f->ws));
    fx_skip_http(f);
    return f;
}

/* ---- frames, client side ---------------------------------------------------- */

/* A client frame: masked unless mask is false. Returns its length. */
static size_t cframe(uint8_t *o, bool fin, uint8_t op, const void *payload, size_t n, bool mask)
{
    static const uint8_t key[4] = {0x37, 0xfa, 0x21, 0x3d};
    size_t k = 0;
    o[k++] = (uint8_t)((fin ? 0x80 : 0) | op);
    uint8_t m = mask ? 0x80 : 0;
    if (n < 126) {
        o[k++] = (uint8_t)(m | n);
    } else if (n < 65536) {
        o[k++] = m | 126;
        o[k++] = (uint8_t)(n >> 8);
        o[k++] = (uint8_t)n;
    } else {
        o[k++] = m | 127;
        for (int i = 7; i >= 0; i--)
            o[k++] = (uint8_t)((uint64_t)n >> (8 * i));
    }
    if (mask) {
        memcpy(o + k, key, 4);
        k += 4;
    }
    const uint8_t *p = payload;
    for (size_t i = 0; i < n; i++)
        o[k + i] = mask ? p[i] ^ key[i % 4] : p[i];
    return k + n;
}

struct sframe {
    bool fin;
    uint8_t op;
    const uint8_t *payload;
    size_t n;
};

/* Parses one server frame at p (never masked); returns its length. */
static size_t sframe_parse(const uint8_t *p, size_t avail, struct sframe *s)
{
    assert_true(avail >= 2);
    s->fin = p[0] & 0x80;
    assert_int_equal(p[0] & 0x70, 0);
    s->op = p[0] & 0x0f;
    assert_int_equal(p[1] & 0x80, 0); /* a server never masks */
    size_t k = 2, n = p[1] & 0x7f;
    if (n == 126) {
        n = (size_t)p[2] << 8 | p[3];
        k = 4;
    } else if (n == 127) {
        n = 0;
        for (int i = 0; i < 8; i++)
            n = n << 8 | p[2 + i];
        k = 10;
    }
    assert_true(k + n <= avail);
    s->payload = p + k;
    s->n = n;
    return k + n;
}

/* Parses all of f->out into frames. */
static size_t sframes(const struct fx *f, struct sframe *s, size_t max)
{
    size_t off = 0, i = 0;
    while (off < f->out_len) {
        assert_true(i < max);
        off += sframe_parse(f->out + off, f->out_len - off, &s[i++]);
    }
    return i;
}

static void assert_close_frame(const struct fx *f, uint16_t code)
{
    struct sframe s[8];
    size_t n = sframes(f, s, 8);
    assert_true(n >= 1);
    const struct sframe *c = &s[n - 1];
    assert_int_equal(c->op, 0x8);
    assert_true(c->fin);
    if (!code) { /* no status code */
        assert_int_equal(c->n, 0);
        return;
    }
    assert_true(c->n >= 2);
    assert_int_equal(c->payload[0] << 8 | c->payload[1], code);
}

/* ---- handshake ---------------------------------------------------------------- */

static void test_rfc_vector(void **state)
{
    (void)state;
    struct fx *f = fx_new(NULL);
    assert_int_equal(m2m_ws_stream_ops.next_timeout(f->ws), 1000 + 10000);
    fx_feed_str(f, good_req);
    fx_drain(f);
    assert_int_equal(f->out_len, strlen(good_resp));
    assert_memory_equal(f->out, good_resp, f->out_len);
    assert_true(m2m_ws_open(f->ws));
    assert_false(m2m_ws_closed(f->ws));
    assert_null(m2m_ws_reason(f->ws));
    /* After the handshake the timers are the inner core's. */
    f->inner->deadline = 5555;
    assert_int_equal(m2m_ws_stream_ops.next_timeout(f->ws), 5555);
    assert_int_equal(f->inner->got_len, 0);
    fx_free(f);
}

/* The request, then a first frame, split at every byte and byte by byte: the
 * same answer and the same bytes reach the inner core. */
static void test_split_every_byte(void **state)
{
    (void)state;
    uint8_t in[512];
    size_t n = strlen(good_req);
    memcpy(in, good_req, n);
    n += cframe(in + n, true, 0x2, "\x10\x0c\x00\x04MQTT", 8, true);
    for (size_t cut = 0; cut <= n; cut++) {
        struct fx *f = fx_new(NULL);
        f->inner->echo = false;
        fx_feed(f, in, cut);
        fx_feed(f, in + cut, n - cut);
        fx_drain(f);
        assert_int_equal(f->out_len, strlen(good_resp));
        assert_memory_equal(f->out, good_resp, f->out_len);
        assert_int_equal(f->inner->got_len, 8);
        assert_memory_equal(f->inner->got, "\x10\x0c\x00\x04MQTT", 8);
        fx_free(f);
    }
    struct fx *f = fx_new(NULL);
    f->inner->echo = false;
    for (size_t i = 0; i < n; i++)
        fx_feed(f, in + i, 1);
    fx_drain(f);
    assert_memory_equal(f->out, good_resp, strlen(good_resp));
    assert_int_equal(f->inner->got_len, 8);
    fx_free(f);
}

/* The request from a buffer whose end is a guard page. */
static void test_request_before_guard_page(void **state)
{
    (void)state;
    struct test_guard g;
    uint8_t *p = test_guard_copy(&g, good_req, strlen(good_req));
    struct fx *f = fx_new(NULL);
    m2m_ws_stream_ops.feed(f->ws, 0, p, strlen(good_req));
    fx_drain(f);
    assert_memory_equal(f->out, good_resp, strlen(good_resp));
    fx_free(f);
    /* A request cut before the empty line, then nothing: waits. */
    f = fx_new(NULL);
    m2m_ws_stream_ops.feed(f->ws, 0, p, strlen(good_req) - 2);
    assert_int_equal(fx_drain(f), 0);
    assert_false(m2m_ws_closed(f->ws));
    fx_free(f);
    test_guard_free(&g);
}

static void test_lenient_forms(void **state)
{
    (void)state;
    static const char *const reqs[] = {
        /* Token lists, other cases, bare LF line ends, extra headers. */
        "GET / HTTP/1.1\r\nhost: h\r\nupgrade: WebSocket\r\nconnection: keep-alive, Upgrade\r\n"
        "sec-websocket-version: 13\r\nsec-websocket-key: AQIDBAUGBwgJCgsMDQ4PEA==\r\n"
        "Sec-WebSocket-Protocol: mqttv3.1\r\nSec-WebSocket-Protocol:mqtt\r\n\r\n",
        "GET /any/path?x=1 HTTP/1.1\nHost: h\nUpgrade: websocket\nConnection: UPGRADE\n"
        "Sec-WebSocket-Version:  13 \nSec-WebSocket-Key: AQIDBAUGBwgJCgsMDQ4PEA==\n"
        "Sec-WebSocket-Extensions: permessage-deflate\nSec-WebSocket-Protocol: mqtt\n\n",
    };
    for (size_t i = 0; i < sizeof reqs / sizeof reqs[0]; i++) {
        struct fx *f = fx_new(NULL);
        fx_feed_str(f, reqs[i]);
        fx_drain(f);
        assert_true(out_has(f, "HTTP/1.1 101 "));
        /* base64(SHA-1(key + GUID)), computed with Python hashlib */
        assert_true(out_has(f, "Sec-WebSocket-Accept: C/0nmHhBztSRGR1CwL6Tf4ZjwpY=\r\n"));
        assert_true(out_has(f, "Sec-WebSocket-Protocol: mqtt\r\n"));
        /* No extension is ever accepted. */
        assert_false(out_has(f, "Extensions"));
        fx_free(f);
    }
}

/* A request without Sec-WebSocket-Protocol is accepted (answered without
 * one), unless require_subprotocol is set. */
static void test_no_subprotocol(void **state)
{
    (void)state;
    struct fx *f = fx_new(NULL);
    fx_feed_str(f, REQ_HEAD "\r\n");
    fx_drain(f);
    assert_true(out_has(f, "HTTP/1.1 101 "));
    assert_false(out_has(f, "Sec-WebSocket-Protocol"));
    fx_free(f);

    struct m2m_ws_config c = default_cfg();
    c.require_subprotocol = true;
    f = fx_new(&c);
    fx_feed_str(f, REQ_HEAD "\r\n");
    fx_drain(f);
    assert_true(out_has(f, "HTTP/1.1 400 "));
    assert_true(m2m_ws_closed(f->ws));
    assert_string_equal(m2m_ws_reason(f->ws), "handshake: no Sec-WebSocket-Protocol");
    fx_free(f);

    /* Without a configured subprotocol nothing is negotiated. */
    c = default_cfg();
    c.subprotocol = NULL;
    f = fx_new(&c);
    fx_feed_str(f, good_req);
    fx_drain(f);
    assert_true(out_has(f, "HTTP/1.1 101 "));
    assert_false(out_has(f, "Sec-WebSocket-Protocol"));
    fx_free(f);
}

struct bad {
    const char *req;
    int status;
    const char *reason;
};

#define H_HOST "Host: h\r\n"
#define H_UPG "Upgrade: websocket\r\n"
#define H_CONN "Connection: Upgrade\r\n"
#define H_VER "Sec-WebSocket-Version: 13\r\n"
#define H_KEY "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
#define H_PROTO "Sec-WebSocket-Protocol: mqtt\r\n"
#define GET "GET /mqtt HTTP/1.1\r\n"

static const struct bad bad_reqs[] = {
    {"POST /mqtt HTTP/1.1\r\n" H_HOST H_UPG H_CONN H_VER H_KEY H_PROTO "\r\n", 400,
     "handshake: method is not GET"},
    {"get /mqtt HTTP/1.1\r\n" H_HOST H_UPG H_CONN H_VER H_KEY H_PROTO "\r\n", 400,
     "handshake: method is not GET"},
    {"GET /mqtt HTTP/1.0\r\n" H_HOST H_UPG H_CONN H_VER H_KEY H_PROTO "\r\n", 400, "handshake: not HTTP/1.1"},
    {"GET  /mqtt HTTP/1.1\r\n" H_HOST "\r\n", 400, "handshake: malformed request line"},
    {"GET /mqtt\r\n\r\n", 400, "handshake: malformed request line"},
    {"GET /a\x01 HTTP/1.1\r\n\r\n", 400, "handshake: not an HTTP request"},
    {"\x10\x0c\x00\x04MQTT\x04\x02\x00\x3c", 400, "handshake: not an HTTP request"},
    {GET H_UPG H_CONN H_VER H_KEY H_PROTO "\r\n", 400, "handshake: no Host"},
    {GET H_HOST H_HOST H_UPG H_CONN H_VER H_KEY H_PROTO "\r\n", 400, "handshake: several Host fields"},
    {GET H_HOST H_CONN H_VER H_KEY H_PROTO "\r\n", 400, "handshake: no Upgrade: websocket"},
    {GET H_HOST "Upgrade: h2c\r\n" H_CONN H_VER H_KEY H_PROTO "\r\n", 400,
     "handshake: no Upgrade: websocket"},
    {GET H_HOST H_UPG H_VER H_KEY H_PROTO "\r\n", 400, "handshake: no Connection: Upgrade"},
    {GET H_HOST H_UPG "Connection: keep-alive\r\n" H_VER H_KEY H_PROTO "\r\n", 400,
     "handshake: no Connection: Upgrade"},
    {GET H_HOST H_UPG "Connection: Upgraded\r\n" H_VER H_KEY H_PROTO "\r\n", 400,
     "handshake: no Connection: Upgrade"},
    {GET H_HOST H_UPG H_CONN H_KEY H_PROTO "\r\n", 400, "handshake: no Sec-WebSocket-Version"},
    {GET H_HOST H_UPG H_CONN "Sec-WebSocket-Version: 8\r\n" H_KEY H_PROTO "\r\n", 426,
     "handshake: Sec-WebSocket-Version is not 13"},
    {GET H_HOST H_UPG H_CONN H_VER H_VER H_KEY H_PROTO "\r\n", 400,
     "handshake: several Sec-WebSocket-Version"},
    {GET H_HOST H_UPG H_CONN H_VER H_PROTO "\r\n", 400, "handshake: no Sec-WebSocket-Key"},
    {GET H_HOST H_UPG H_CONN H_VER H_KEY H_KEY H_PROTO "\r\n", 400, "handshake: several Sec-WebSocket-Key"},
    {GET H_HOST H_UPG H_CONN H_VER "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ\r\n" H_PROTO "\r\n", 400,
     "handshake: Sec-WebSocket-Key is not base64 of 16 bytes"},
    {GET H_HOST H_UPG H_CONN H_VER "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ=!\r\n" H_PROTO "\r\n", 400,
     "handshake: Sec-WebSocket-Key is not base64 of 16 bytes"},
    {GET H_HOST H_UPG H_CONN H_VER "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZR==\r\n" H_PROTO "\r\n", 400,
     "handshake: Sec-WebSocket-Key is not base64 of 16 bytes"},
    {GET H_HOST H_UPG H_CONN H_VER "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub2*jZQ==\r\n" H_PROTO "\r\n", 400,
     "handshake: Sec-WebSocket-Key is not base64 of 16 bytes"},
    {GET H_HOST H_UPG H_CONN H_VER "Sec-WebSocket-Key: c2FtcGxlIG5vbmNlIDE2IGJ5dGVzIQ==\r\n" H_PROTO "\r\n",
     400, "handshake: Sec-WebSocket-Key is not base64 of 16 bytes"},
    {GET H_HOST H_UPG H_CONN H_VER H_KEY "Sec-WebSocket-Protocol: chat, superchat\r\n\r\n", 400,
     "handshake: subprotocol not offered"},
    {GET H_HOST H_UPG H_CONN H_VER H_KEY "Sec-WebSocket-Protocol: MQTT\r\n\r\n", 400,
     "handshake: subprotocol not offered"},
    {GET H_HOST H_UPG H_CONN H_VER H_KEY " folded\r\n" H_PROTO "\r\n", 400,
     "handshake: obsolete header line folding"},
    {GET H_HOST "Upgrade websocket\r\n" H_CONN H_VER H_KEY H_PROTO "\r\n", 400,
     "handshake: malformed header field"},
    {GET H_HOST "Upgrade : websocket\r\n" H_CONN H_VER H_KEY H_PROTO "\r\n", 400,
     "handshake: malformed header field"},
    {GET H_HOST "X-A: b\x01\r\n" H_UPG H_CONN H_VER H_KEY H_PROTO "\r\n", 400,
     "handshake: control character in a header field"},
};

static void check_refused(struct fx *f, int status, const char *reason)
{
    char want[32];
    snprintf(want, sizeof want, "HTTP/1.1 %d ", status);
    fx_drain(f);
    assert_true(f->out_len > strlen(want));
    assert_memory_equal(f->out, want, strlen(want));
    assert_true(out_has(f, "\r\nConnection: close\r\n"));
    /* RFC 6455 §4.4: the versions we speak; RFC 7231 §6.5.15: Upgrade. */
    if (status == 426)
        assert_true(out_has(f, "\r\nSec-WebSocket-Version: 13\r\n") &&
                    out_has(f, "\r\nUpgrade: websocket\r\n"));
    /* The reason is the body, for a person trying the port with curl. */
    assert_true(out_has(f, reason));
    assert_true(m2m_ws_closed(f->ws));
    assert_false(m2m_ws_open(f->ws));
    assert_string_equal(m2m_ws_reason(f->ws), reason);
    assert_int_equal(f->inner->got_len, 0);
    assert_int_equal(m2m_ws_stream_ops.next_timeout(f->ws), M2M_NEVER);
    /* Nothing more comes out, whatever follows. */
    f->out_len = 0;
    uint8_t more[16];
    size_t n = cframe(more, true, 0x2, "abc", 3, true);
    assert_int_not_equal(m2m_ws_stream_ops.feed(f->ws, 3000, more, n), 0);
    assert_int_equal(fx_drain(f), 0);
    assert_int_equal(f->inner->got_len, 0);
}

static void test_bad_requests(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof bad_reqs / sizeof bad_reqs[0]; i++) {
        const struct bad *b = &bad_reqs[i];
        print_message("bad request %zu: %s\n", i, b->reason);
        /* Whole and byte by byte: the same answer. */
        for (int bytewise = 0; bytewise < 2; bytewise++) {
            struct fx *f = fx_new(NULL);
            size_t n = strlen(b->req);
            if (!bytewise)
                fx_feed(f, b->req, n);
            for (size_t k = 0; bytewise && k < n && !m2m_ws_closed(f->ws); k++)
                fx_feed(f, b->req + k, 1);
            check_refused(f, b->status, b->reason);
            fx_free(f);
        }
    }
}

static void test_request_too_large(void **state)
{
    (void)state;
    struct m2m_ws_config c = default_cfg();
    c.max_handshake = 512;
    struct fx *f = fx_new(&c);
    fx_feed_str(f, GET H_HOST);
    char pad[64];
    memset(pad, 'a', sizeof pad);
    memcpy(pad, "X-Pad: ", 7);
    pad[62] = '\r';
    pad[63] = '\n';
    for (int i = 0; i < 7; i++)
        fx_feed(f, pad, sizeof pad);
    assert_false(m2m_ws_closed(f->ws)); /* 29 + 448 bytes < 512 */
    fx_feed(f, pad, sizeof pad);
    check_refused(f, 431, "handshake: request header too large");
    fx_free(f);

    /* A request of exactly max_handshake bytes is fine. */
    c.max_handshake = strlen(good_req);
    f = fx_new(&c);
    fx_feed_str(f, good_req);
    fx_drain(f);
    assert_memory_equal(f->out, good_resp, strlen(good_resp));
    fx_free(f);
}

static void test_handshake_timeout(void **state)
{
    (void)state;
    struct m2m_ws_config c = default_cfg();
    c.handshake_timeout_ms = 3000;
    struct fx *f = fx_new(&c);
    fx_feed_str(f, "GET / HTTP/1.1\r\nHost: h\r\n");
    assert_int_equal(m2m_ws_stream_ops.next_timeout(f->ws), 4000);
    m2m_ws_stream_ops.on_timeout(f->ws, 3999);
    assert_false(m2m_ws_closed(f->ws));
    assert_int_equal(fx_drain(f), 0);
    m2m_ws_stream_ops.on_timeout(f->ws, 4000);
    check_refused(f, 408, "handshake: timeout");
    assert_int_equal(f->inner->timeouts, 0);
    fx_free(f);
}

/* ---- frames ------------------------------------------------------------------- */

static void test_binary_to_inner_and_back(void **state)
{
    (void)state;
    struct fx *f = fx_open(NULL);
    uint8_t b[300];
    size_t n = cframe(b, true, 0x2, "hello", 5, true);
    fx_feed(f, b, n);
    assert_int_equal(f->inner->got_len, 5);
    assert_memory_equal(f->inner->got, "hello", 5);
    fx_drain(f);
    /* The echo comes back as one unmasked binary frame. */
    assert_int_equal(f->out_len, 7);
    assert_memory_equal(f->out, "\x82\x05hello", 7);

    /* Two MQTT packets in one frame, then one packet over two frames. */
    f->out_len = 0;
    n = cframe(b, true, 0x2, "\xc0\x00\xc0\x00", 4, true);
    n += cframe(b + n, true, 0x2, "\x30\x03", 2, true);
    n += cframe(b + n, true, 0x2, "\x00\x01t", 3, true);
    fx_feed(f, b, n);
    assert_int_equal(f->inner->got_len, 14);
    assert_memory_equal(f->inner->got + 5, "\xc0\x00\xc0\x00\x30\x03\x00\x01t", 9);

    /* Empty binary frames are harmless. */
    n = cframe(b, true, 0x2, "", 0, true);
    fx_feed(f, b, n);
    assert_int_equal(f->inner->got_len, 14);
    assert_false(m2m_ws_closed(f->ws));
    fx_free(f);
}

/* Inner output longer than one poll_output: one message, handed out in
 * chunks of at most 64 KiB, that reassemble exactly. */
static void test_large_inner_output(void **state)
{
    (void)state;
    struct fx *f = fx_open(NULL);
    f->inner->echo = false;
    for (size_t i = 0; i < 200000; i++)
        f->inner->got[i] = (uint8_t)(i * 7);
    f->inner->got_len = 200000;
    f->inner->pending = 200000;
    const uint8_t *p;
    size_t n;
    int calls = 0;
    while (m2m_ws_stream_ops.poll_output(f->ws, &p, &n)) {
        assert_true(n <= 65536);
        memcpy(f->out + f->out_len, p, n);
        f->out_len += n;
        calls++;
    }
    assert_true(calls >= 4);
    struct sframe s[4];
    assert_int_equal(sframes(f, s, 4), 1);
    assert_int_equal(s[0].op, 0x2);
    assert_int_equal(s[0].n, 200000);
    assert_memory_equal(s[0].payload, f->inner->got, 200000);

    /* Many small inner chunks: several frames in one hand-out. */
    f->out_len = 0;
    f->inner->chunk = 10;
    f->inner->pending = 95;
    fx_drain(f);
    struct sframe t[16];
    assert_int_equal(sframes(f, t, 16), 10);
    assert_int_equal(t[9].n, 5);
    fx_free(f);
}

static void test_fragmentation(void **state)
{
    (void)state;
    struct fx *f = fx_open(NULL);
    f->inner->echo = false;
    uint8_t b[256];
    size_t n = cframe(b, false, 0x2, "ab", 2, true);
    n += cframe(b + n, true, 0x9, "p1", 2, true); /* a ping between fragments */
    n += cframe(b + n, false, 0x0, "cd", 2, true);
    n += cframe(b + n, true, 0x0, "ef", 2, true);
    n += cframe(b + n, false, 0x2, "gh", 2, true); /* a second message */
    n += cframe(b + n, true, 0x0, "", 0, true);
    for (size_t i = 0; i < n; i++) /* split everywhere on the way */
        fx_feed(f, b + i, 1);
    assert_int_equal(f->inner->got_len, 8);
    assert_memory_equal(f->inner->got, "abcdefgh", 8);
    fx_drain(f);
    struct sframe s[4];
    assert_int_equal(sframes(f, s, 4), 1);
    assert_int_equal(s[0].op, 0xa);
    assert_int_equal(s[0].n, 2);
    assert_memory_equal(s[0].payload, "p1", 2);
    assert_false(m2m_ws_closed(f->ws));

    /* A continuation with no message started is a protocol error. */
    n = cframe(b, true, 0x0, "zz", 2, true);
    f->out_len = 0;
    fx_feed(f, b, n);
    fx_drain(f);
    assert_close_frame(f, 1002);
    assert_true(m2m_ws_closed(f->ws));
    assert_int_equal(f->inner->got_len, 8);
    fx_free(f);
}

static void test_ping_pong(void **state)
{
    (void)state;
    struct fx *f = fx_open(NULL);
    uint8_t b[256];
    size_t n = cframe(b, true, 0x9, "xyz", 3, true);
    n += cframe(b + n, true, 0xa, "unsolicited", 11, true); /* ignored */
    fx_feed(f, b, n);
    fx_drain(f);
    assert_int_equal(f->out_len, 5);
    assert_memory_equal(f->out, "\x8a\x03xyz", 5);
    assert_int_equal(f->inner->got_len, 0);
    /* A control frame longer than 125 bytes is a framing error: wslay
     * closes without a status code. */
    uint8_t big[200] = {0};
    n = cframe(b, true, 0x9, big, 126, true);
    f->out_len = 0;
    fx_feed(f, b, n);
    assert_true(m2m_ws_closed(f->ws));
    assert_string_equal(m2m_ws_reason(f->ws), "protocol error");
    fx_drain(f);
    assert_close_frame(f, 0);
    fx_free(f);
}

static void test_close(void **state)
{
    (void)state;
    struct fx *f = fx_open(NULL);
    uint8_t b[64];
    size_t n = cframe(b, true, 0x8,
                      "\x03\xe8"
                      "bye",
                      5, true);
    /* Data after the close frame is not read. */
    n += cframe(b + n, true, 0x2, "late", 4, true);
    fx_feed(f, b, n);
    assert_true(m2m_ws_closed(f->ws));
    assert_string_equal(m2m_ws_reason(f->ws), "closed by peer");
    fx_drain(f);
    assert_close_frame(f, 1000);
    assert_int_equal(f->inner->got_len, 0);
    f->out_len = 0;
    fx_feed(f, b, n);
    assert_int_equal(fx_drain(f), 0);
    fx_free(f);

    /* A close without a status code is answered with an empty close. */
    f = fx_open(NULL);
    n = cframe(b, true, 0x8, "", 0, true);
    fx_feed(f, b, n);
    fx_drain(f);
    assert_int_equal(f->out_len, 2);
    assert_memory_equal(f->out, "\x88\x00", 2);
    fx_free(f);
}

static void test_text_refused(void **state)
{
    (void)state;
    struct fx *f = fx_open(NULL);
    uint8_t b[64];
    size_t n = cframe(b, true, 0x1, "{\"a\":1}", 7, true);
    fx_feed(f, b, n);
    assert_true(m2m_ws_closed(f->ws));
    assert_string_equal(m2m_ws_reason(f->ws), "text frame");
    fx_drain(f);
    assert_close_frame(f, 1003);
    assert_int_equal(f->inner->got_len, 0);
    fx_free(f);
}

static void test_unmasked_refused(void **state)
{
    (void)state;
    struct fx *f = fx_open(NULL);
    uint8_t b[64];
    size_t n = cframe(b, true, 0x2, "abc", 3, false);
    fx_feed(f, b, n);
    assert_true(m2m_ws_closed(f->ws));
    assert_string_equal(m2m_ws_reason(f->ws), "protocol error");
    fx_drain(f);
    assert_close_frame(f, 1002);
    assert_int_equal(f->inner->got_len, 0);
    fx_free(f);

    /* RSV bits without an extension: 1002 too. */
    f = fx_open(NULL);
    n = cframe(b, true, 0x2, "abc", 3, true);
    b[0] |= 0x40;
    fx_feed(f, b, n);
    fx_drain(f);
    assert_close_frame(f, 1002);
    fx_free(f);
}

static void test_oversize(void **state)
{
    (void)state;
    struct m2m_ws_config c = default_cfg();
    c.max_frame = 10;
    uint8_t b[128], data[16];
    memset(data, 0x41, sizeof data);

    /* Exactly max_frame, over two fragments: accepted. */
    struct fx *f = fx_open(&c);
    f->inner->echo = false;
    size_t n = cframe(b, false, 0x2, data, 6, true);
    n += cframe(b + n, true, 0x0, data, 4, true);
    fx_feed(f, b, n);
    assert_int_equal(f->inner->got_len, 10);
    assert_false(m2m_ws_closed(f->ws));
    /* One byte more, in one frame: 1009 before any byte reaches the core. */
    n = cframe(b, true, 0x2, data, 11, true);
    fx_feed(f, b, n);
    assert_true(m2m_ws_closed(f->ws));
    assert_string_equal(m2m_ws_reason(f->ws), "message too big");
    fx_drain(f);
    assert_close_frame(f, 1009);
    assert_int_equal(f->inner->got_len, 10);
    fx_free(f);

    /* Over the limit only once fragments add up. */
    f = fx_open(&c);
    n = cframe(b, false, 0x2, data, 6, true);
    n += cframe(b + n, true, 0x0, data, 6, true);
    fx_feed(f, b, n);
    fx_drain(f);
    assert_int_equal(f->inner->got_len, 6);
    struct sframe s[4];
    size_t k = sframes(f, s, 4);
    assert_int_equal(s[k - 1].op, 0x8);
    assert_int_equal(s[k - 1].payload[0] << 8 | s[k - 1].payload[1], 1009);
    fx_free(f);

    /* A header announcing 2^62 bytes: refused at its first payload byte
     * (wslay reports a frame with its first data), nothing allocated. */
    f = fx_open(NULL);
    static const uint8_t huge[] = {0x82, 0xff, 0x40, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4, 0x55};
    fx_feed(f, huge, sizeof huge);
    fx_drain(f);
    assert_close_frame(f, 1009);
    assert_int_equal(f->inner->got_len, 0);
    fx_free(f);
}

/* m2m_ws_close: the inner core's pending output first, then the close. */
static void test_application_close(void **state)
{
    (void)state;
    struct fx *f = fx_open(NULL);
    uint8_t b[64];
    size_t n = cframe(b, true, 0x2, "\xe0\x00", 2, true);
    fx_feed(f, b, n);
    m2m_ws_close(f->ws, 1000);
    assert_true(m2m_ws_closed(f->ws));
    assert_string_equal(m2m_ws_reason(f->ws), "closed by the application");
    fx_drain(f);
    struct sframe s[4];
    assert_int_equal(sframes(f, s, 4), 2);
    assert_int_equal(s[0].op, 0x2);
    assert_memory_equal(s[0].payload, "\xe0\x00", 2);
    assert_int_equal(s[1].op, 0x8);
    /* Nothing after the close frame, and input is dropped. */
    f->inner->pending = 2;
    f->out_len = 0;
    assert_int_equal(fx_drain(f), 0);
    fx_feed(f, b, n);
    assert_int_equal(f->inner->got_len, 2);
    fx_free(f);

    /* Before the handshake completes it just closes. */
    f = fx_new(NULL);
    fx_feed_str(f, "GET / HTTP/1.1\r\n");
    m2m_ws_close(f->ws, 1001);
    assert_true(m2m_ws_closed(f->ws));
    assert_int_equal(fx_drain(f), 0);
    fx_free(f);
}

static void test_inner_timers(void **state)
{
    (void)state;
    struct fx *f = fx_open(NULL);
    f->inner->deadline = 42000;
    assert_int_equal(m2m_ws_stream_ops.next_timeout(f->ws), 42000);
    m2m_ws_stream_ops.on_timeout(f->ws, 42000);
    assert_int_equal(f->inner->timeouts, 1);
    assert_int_equal(f->inner->last_timeout, 42000);
    fx_free(f);
}

static void test_bad_config(void **state)
{
    (void)state;
    int e = 0;
    struct m2m_ws_config c = default_cfg();
    c.subprotocol = "bad name";
    assert_null(m2m_ws_new(&echo_ops, &e, &c));
    c.subprotocol = "";
    assert_null(m2m_ws_new(&echo_ops, &e, &c));
    assert_null(m2m_ws_new(NULL, &e, &c));
    c = default_cfg();
    assert_null(m2m_ws_new(&echo_ops, &e, NULL));
    m2m_ws_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rfc_vector),
        cmocka_unit_test(test_split_every_byte),
        cmocka_unit_test(test_request_before_guard_page),
        cmocka_unit_test(test_lenient_forms),
        cmocka_unit_test(test_no_subprotocol),
        cmocka_unit_test(test_bad_requests),
        cmocka_unit_test(test_request_too_large),
        cmocka_unit_test(test_handshake_timeout),
        cmocka_unit_test(test_binary_to_inner_and_back),
        cmocka_unit_test(test_large_inner_output),
        cmocka_unit_test(test_fragmentation),
        cmocka_unit_test(test_ping_pong),
        cmocka_unit_test(test_close),
        cmocka_unit_test(test_text_refused),
        cmocka_unit_test(test_unmasked_refused),
        cmocka_unit_test(test_oversize),
        cmocka_unit_test(test_application_close),
        cmocka_unit_test(test_inner_timers),
        cmocka_unit_test(test_bad_config),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
