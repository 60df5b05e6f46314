/* CoAP message codec (RFC 7252 §3) and option helpers: every vector runs
 * whole, at every truncation and before a guard page. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "guardbuf.h"
#include "m2m/coap.h"
#include "vclock.h"

static size_t unhex(const char *s, uint8_t *out, size_t cap)
{
    return test_unhex(s, out, cap);
}

/* Encodes m and compares with the hex string `want`. */
static void expect_encoding(const struct m2m_coap_msg *m, const char *want)
{
    uint8_t exp[2048], got[2048];
    size_t n = unhex(want, exp, sizeof exp), len = 0;
    assert_int_equal(m2m_coap_encoded_size(m), n);
    assert_int_equal(m2m_coap_encode(m, got, sizeof got, &len), 0);
    if (len != n || memcmp(got, exp, n)) {
        char h[4096];
        fprintf(stderr, "got:  %s\n", test_hex(got, len, h, sizeof h));
        fprintf(stderr, "want: %s\n", test_hex(exp, n, h, sizeof h));
        fail();
    }
}

/* Checks a decode of a truncated copy: an error, or a message that lies
 * entirely inside the k bytes it was given. */
static void prefix_ok(void *ctx, const uint8_t *p, size_t k)
{
    (void)ctx;
    struct m2m_coap_msg m;
    int rc = m2m_coap_decode(&m, p, k);
    if (rc) {
        assert_true(rc == M2M_EMALFORMED || rc == M2M_ELIMIT);
        return;
    }
    assert_true(k >= 4);
    assert_true(m.tkl <= 8);
    for (uint16_t i = 0; i < m.nopt; i++) {
        assert_true(m.opt[i].val >= p && m.opt[i].val + m.opt[i].len <= p + k);
        if (i)
            assert_true(m.opt[i].num >= m.opt[i - 1].num);
    }
    if (m.payload_len) {
        assert_true(m.payload > p && m.payload + m.payload_len == p + k);
    } else {
        assert_null(m.payload);
    }
    /* What decodes re-encodes to the same bytes. */
    uint8_t *out = malloc(k);
    size_t len = 0;
    assert_non_null(out);
    assert_int_equal(m2m_coap_encode(&m, out, k, &len), 0);
    assert_int_equal(len, k);
    assert_memory_equal(out, p, k);
    free(out);
}

/* Decodes hex `h` whole, split and guarded; returns the result of decoding
 * the whole vector into *m (which points into buf). */
static int decode_hex(const char *h, uint8_t *buf, size_t cap, size_t *n, struct m2m_coap_msg *m)
{
    *n = unhex(h, buf, cap);
    test_each_prefix(buf, *n, prefix_ok, NULL);
    return m2m_coap_decode(m, buf, *n);
}

/* ---- RFC 7252 vectors ---------------------------------------------------- */

static void test_rfc_get_temperature(void **state)
{
    (void)state;
    /* Appendix A, figure 17: CON [0x7d34] GET /temperature, no token. */
    const char *req = "40 01 7d 34 bb 74 65 6d 70 65 72 61 74 75 72 65";
    uint8_t b[64];
    size_t n;
    struct m2m_coap_msg m;
    assert_int_equal(decode_hex(req, b, sizeof b, &n, &m), 0);
    assert_int_equal(m.type, M2M_COAP_CON);
    assert_int_equal(m.code, M2M_COAP_GET);
    assert_int_equal(m.mid, 0x7d34);
    assert_int_equal(m.tkl, 0);
    assert_int_equal(m.nopt, 1);
    assert_int_equal(m.opt[0].num, M2M_COAP_OPT_URI_PATH);
    assert_int_equal(m.opt[0].len, 11);
    assert_memory_equal(m.opt[0].val, "temperature", 11);
    assert_null(m.payload);
    assert_int_equal(m.payload_len, 0);
    char path[32];
    assert_int_equal(m2m_coap_msg_path(&m, path, sizeof path), 0);
    assert_string_equal(path, "/temperature");

    /* Built from scratch, the same bytes come out. */
    struct m2m_coap_msg e;
    m2m_coap_msg_init(&e, M2M_COAP_CON, M2M_COAP_GET);
    e.mid = 0x7d34;
    assert_int_equal(m2m_coap_add_path(&e, M2M_COAP_OPT_URI_PATH, "/temperature"), 0);
    expect_encoding(&e, req);

    /* ACK [0x7d34] 2.05 Content "22.3 C" (piggybacked). */
    const char *resp = "60 45 7d 34 ff 32 32 2e 33 20 43";
    assert_int_equal(decode_hex(resp, b, sizeof b, &n, &m), 0);
    assert_int_equal(m.type, M2M_COAP_ACK);
    assert_int_equal(m.code, M2M_COAP_CONTENT);
    assert_int_equal(m.mid, 0x7d34);
    assert_int_equal(m.nopt, 0);
    assert_int_equal(m.payload_len, 6);
    assert_memory_equal(m.payload, "22.3 C", 6);
    m2m_coap_msg_init(&e, M2M_COAP_ACK, M2M_COAP_CONTENT);
    e.mid = 0x7d34;
    e.payload = (const uint8_t *)"22.3 C";
    e.payload_len = 6;
    expect_encoding(&e, resp);
}

static void test_rfc_with_token(void **state)
{
    (void)state;
    /* Figure 18: CON [0x7d35] GET /temperature, token 0x20, and its ACK. */
    const char *req = "41 01 7d 35 20 bb 74 65 6d 70 65 72 61 74 75 72 65";
    uint8_t b[64];
    size_t n;
    struct m2m_coap_msg m;
    assert_int_equal(decode_hex(req, b, sizeof b, &n, &m), 0);
    assert_int_equal(m.tkl, 1);
    assert_int_equal(m.token[0], 0x20);
    assert_int_equal(m.mid, 0x7d35);
    assert_int_equal(m.opt[0].num, M2M_COAP_OPT_URI_PATH);

    const char *resp = "61 45 7d 35 20 ff 32 32 2e 35 20 43";
    assert_int_equal(decode_hex(resp, b, sizeof b, &n, &m), 0);
    assert_int_equal(m.tkl, 1);
    assert_int_equal(m.token[0], 0x20);
    assert_memory_equal(m.payload, "22.5 C", 6);

    /* An 8-byte token, NON, several option kinds and a payload. */
    struct m2m_coap_msg e;
    m2m_coap_msg_init(&e, M2M_COAP_NON, M2M_COAP_POST);
    e.mid = 0xbeef;
    e.tkl = 8;
    memcpy(e.token, "\x01\x02\x03\x04\x05\x06\x07\x08", 8);
    assert_int_equal(m2m_coap_add_str(&e, M2M_COAP_OPT_URI_HOST, "h"), 0);
    assert_int_equal(m2m_coap_add_uint(&e, M2M_COAP_OPT_CONTENT_FORMAT, 50), 0);
    assert_int_equal(m2m_coap_add_str(&e, M2M_COAP_OPT_URI_QUERY, "a=1"), 0);
    e.payload = (const uint8_t *)"{}";
    e.payload_len = 2;
    const char *want = "58 02 be ef 01 02 03 04 05 06 07 08"
                       " 31 68"       /* Uri-Host (3) "h" */
                       " 91 32"       /* delta 9 -> Content-Format (12) = 50 */
                       " 33 61 3d 31" /* delta 3 -> Uri-Query (15) "a=1" */
                       " ff 7b 7d";
    expect_encoding(&e, want);
    assert_int_equal(decode_hex(want, b, sizeof b, &n, &m), 0);
    assert_int_equal(m.type, M2M_COAP_NON);
    assert_int_equal(m.tkl, 8);
    assert_memory_equal(m.token, e.token, 8);
    assert_int_equal(m2m_coap_get_uint(&m, M2M_COAP_OPT_CONTENT_FORMAT, 0), 50);
}

static void test_empty_messages(void **state)
{
    (void)state;
    uint8_t b[16];
    size_t n;
    struct m2m_coap_msg m;
    /* An empty ACK and an RST, exactly four bytes. */
    assert_int_equal(decode_hex("60 00 12 34", b, sizeof b, &n, &m), 0);
    assert_int_equal(m.type, M2M_COAP_ACK);
    assert_int_equal(m.code, M2M_COAP_EMPTY);
    assert_int_equal(m.mid, 0x1234);
    assert_int_equal(decode_hex("70 00 ab cd", b, sizeof b, &n, &m), 0);
    assert_int_equal(m.type, M2M_COAP_RST);
    /* CoAP ping: an empty CON. */
    assert_int_equal(decode_hex("40 00 00 01", b, sizeof b, &n, &m), 0);
    assert_int_equal(m.type, M2M_COAP_CON);

    /* §4.1: an Empty message with a token or anything after the header is
     * a format error, but the header fields are still reported. */
    assert_int_equal(decode_hex("61 00 12 34 aa", b, sizeof b, &n, &m), M2M_EMALFORMED);
    assert_int_equal(m.mid, 0x1234);
    assert_int_equal(m.type, M2M_COAP_ACK);
    assert_true(m2m_coap_header_ok(b, n));
    assert_int_equal(decode_hex("60 00 12 34 ff", b, sizeof b, &n, &m), M2M_EMALFORMED);
    assert_int_equal(decode_hex("60 00 12 34 ff 41", b, sizeof b, &n, &m), M2M_EMALFORMED);
    assert_int_equal(decode_hex("70 00 12 34 b1 61", b, sizeof b, &n, &m), M2M_EMALFORMED);
    assert_int_equal(m.mid, 0x1234);

    /* The encoder writes an empty RST as four bytes. */
    m2m_coap_msg_init(&m, M2M_COAP_RST, M2M_COAP_EMPTY);
    m.mid = 0x0102;
    expect_encoding(&m, "70 00 01 02");
}

static void test_header_errors(void **state)
{
    (void)state;
    uint8_t b[32];
    size_t n;
    struct m2m_coap_msg m;

    /* Fewer than four bytes. */
    for (size_t k = 0; k < 4; k++) {
        uint8_t *c = test_heap_copy("\x40\x01\x00\x01", k);
        assert_false(m2m_coap_header_ok(c, k));
        assert_int_equal(m2m_coap_decode(&m, c, k), M2M_EMALFORMED);
        free(c);
    }
    /* Version 0, 2, 3. */
    static const char *ver[] = {"00 01 00 01", "80 01 00 01", "c0 01 00 01"};
    for (int i = 0; i < 3; i++) {
        assert_int_equal(decode_hex(ver[i], b, sizeof b, &n, &m), M2M_EMALFORMED);
        assert_false(m2m_coap_header_ok(b, n));
    }
    /* Token lengths 9 to 15 are reserved; header fields still usable. */
    for (int tkl = 9; tkl <= 15; tkl++) {
        uint8_t v[32] = {(uint8_t)(0x40 | tkl), 0x01, 0x55, 0x66};
        for (int i = 4; i < 24; i++)
            v[i] = (uint8_t)i;
        assert_int_equal(m2m_coap_decode(&m, v, 24), M2M_EMALFORMED);
        assert_true(m2m_coap_header_ok(v, 24));
        assert_int_equal(m.mid, 0x5566);
        assert_int_equal(m.code, M2M_COAP_GET);
    }
    /* Token longer than the datagram. */
    assert_int_equal(decode_hex("44 01 00 01 aa bb cc", b, sizeof b, &n, &m), M2M_EMALFORMED);
    /* Reserved classes 1, 6 and 7; 3.xx is unassigned but not reserved. */
    static const uint8_t reserved[] = {0x20, 0x3f, 0xc0, 0xc5, 0xe0, 0xff};
    for (size_t i = 0; i < sizeof reserved; i++) {
        uint8_t v[] = {0x40, reserved[i], 0x00, 0x07};
        assert_int_equal(m2m_coap_decode(&m, v, sizeof v), M2M_EMALFORMED);
        assert_int_equal(m.mid, 7);
        assert_int_equal(m.code, reserved[i]);
    }
    assert_int_equal(decode_hex("40 60 00 07", b, sizeof b, &n, &m), 0);
    assert_int_equal(decode_hex("40 1f 00 07", b, sizeof b, &n, &m), 0); /* 0.31 */
}

static void test_option_errors(void **state)
{
    (void)state;
    uint8_t b[64];
    size_t n;
    struct m2m_coap_msg m;
    /* Delta nibble 15 without length 15; length nibble 15; both. */
    assert_int_equal(decode_hex("40 01 00 01 f1 61", b, sizeof b, &n, &m), M2M_EMALFORMED);
    assert_int_equal(decode_hex("40 01 00 01 bf 61", b, sizeof b, &n, &m), M2M_EMALFORMED);
    /* Marker with no payload. */
    assert_int_equal(decode_hex("40 01 00 01 ff", b, sizeof b, &n, &m), M2M_EMALFORMED);
    assert_int_equal(decode_hex("40 01 00 01 b1 61 ff", b, sizeof b, &n, &m), M2M_EMALFORMED);
    /* Option value running past the end, extended bytes missing. */
    assert_int_equal(decode_hex("40 01 00 01 b3 61 62", b, sizeof b, &n, &m), M2M_EMALFORMED);
    assert_int_equal(decode_hex("40 01 00 01 d1", b, sizeof b, &n, &m), M2M_EMALFORMED);
    assert_int_equal(decode_hex("40 01 00 01 e1 00", b, sizeof b, &n, &m), M2M_EMALFORMED);
    assert_int_equal(decode_hex("40 01 00 01 1d", b, sizeof b, &n, &m), M2M_EMALFORMED);
    assert_int_equal(decode_hex("40 01 00 01 1e 00", b, sizeof b, &n, &m), M2M_EMALFORMED);
    /* Option numbers past 65535: one big delta, or a sum of deltas. */
    assert_int_equal(decode_hex("40 01 00 01 e0 ff ff", b, sizeof b, &n, &m), M2M_EMALFORMED);
    assert_int_equal(decode_hex("40 01 00 01 e0 fe f3", b, sizeof b, &n, &m), M2M_EMALFORMED);
    assert_int_equal(decode_hex("40 01 00 01 e0 fe f2", b, sizeof b, &n, &m), 0);
    assert_int_equal(m.opt[0].num, 65535);
    assert_int_equal(decode_hex("40 01 00 01 e0 fe f2 10", b, sizeof b, &n, &m), M2M_EMALFORMED);
    assert_int_equal(decode_hex("40 01 00 01 e0 fe f2 00", b, sizeof b, &n, &m), 0);
    assert_int_equal(m.nopt, 2);
    assert_int_equal(m.opt[1].num, 65535);
    /* A length of 65535 + 269 cannot be an option (it cannot fit anyway). */
    assert_int_equal(decode_hex("40 01 00 01 1e ff ff", b, sizeof b, &n, &m), M2M_EMALFORMED);
}

static void test_too_many_options(void **state)
{
    (void)state;
    uint8_t b[4 + M2M_COAP_MAX_OPTS + 1];
    struct m2m_coap_msg m;
    memcpy(b, "\x40\x01\x00\x01", 4);
    /* M2M_COAP_MAX_OPTS empty Uri-Path options are fine... */
    b[4] = 0xb0;
    memset(b + 5, 0x00, M2M_COAP_MAX_OPTS);
    assert_int_equal(m2m_coap_decode(&m, b, 4 + M2M_COAP_MAX_OPTS), 0);
    assert_int_equal(m.nopt, M2M_COAP_MAX_OPTS);
    char path[256];
    assert_int_equal(m2m_coap_msg_path(&m, path, sizeof path), 0);
    assert_int_equal(strlen(path), M2M_COAP_MAX_OPTS);
    /* ...one more is a configured limit, not a format error. */
    assert_int_equal(m2m_coap_decode(&m, b, sizeof b), M2M_ELIMIT);
    assert_int_equal(m.mid, 1);
}

/* ---- option delta and length boundaries ---------------------------------- */

static void round_trip(const struct m2m_coap_msg *e)
{
    size_t need = m2m_coap_encoded_size(e), len = 0;
    uint8_t *buf = malloc(need);
    assert_non_null(buf);
    assert_int_equal(m2m_coap_encode(e, buf, need, &len), 0);
    assert_int_equal(len, need);
    struct m2m_coap_msg d;
    assert_int_equal(m2m_coap_decode(&d, buf, len), 0);
    assert_int_equal(d.type, e->type);
    assert_int_equal(d.code, e->code);
    assert_int_equal(d.mid, e->mid);
    assert_int_equal(d.nopt, e->nopt);
    for (uint16_t i = 0; i < d.nopt; i++) {
        assert_int_equal(d.opt[i].num, e->opt[i].num);
        assert_int_equal(d.opt[i].len, e->opt[i].len);
        if (d.opt[i].len)
            assert_memory_equal(d.opt[i].val, e->opt[i].val, d.opt[i].len);
    }
    assert_int_equal(d.payload_len, e->payload_len);
    if (d.payload_len)
        assert_memory_equal(d.payload, e->payload, d.payload_len);
    /* Exactly one byte short: ENOBUFS. */
    assert_int_equal(m2m_coap_encode(e, buf, need - 1, &len), M2M_ENOBUFS);
    free(buf);
}

static void test_delta_boundaries(void **state)
{
    (void)state;
    static const uint16_t nums[] = {1, 12, 13, 14, 268, 269, 270, 1000, 65535};
    for (size_t i = 0; i < sizeof nums / sizeof nums[0]; i++) {
        struct m2m_coap_msg e;
        m2m_coap_msg_init(&e, M2M_COAP_CON, M2M_COAP_GET);
        e.mid = (uint16_t)i;
        assert_int_equal(m2m_coap_add_opt(&e, nums[i], "v", 1), 0);
        round_trip(&e);
        /* The same number reached as a delta from an earlier option. */
        assert_int_equal(m2m_coap_add_opt(&e, 1, NULL, 0), 0);
        size_t len;
        uint8_t buf[64];
        assert_int_equal(m2m_coap_encode(&e, buf, sizeof buf, &len), 0);
        struct m2m_coap_msg d;
        assert_int_equal(m2m_coap_decode(&d, buf, len), 0);
        assert_int_equal(d.nopt, 2);
        assert_int_equal(d.opt[0].num, 1);
        assert_int_equal(d.opt[1].num, nums[i]);
    }

    /* Exact bytes of each extended delta form. */
    struct m2m_coap_msg e;
    m2m_coap_msg_init(&e, M2M_COAP_CON, M2M_COAP_GET);
    m2m_coap_add_opt(&e, 12, NULL, 0);
    expect_encoding(&e, "40 01 00 00 c0");
    m2m_coap_msg_init(&e, M2M_COAP_CON, M2M_COAP_GET);
    m2m_coap_add_opt(&e, 13, NULL, 0);
    expect_encoding(&e, "40 01 00 00 d0 00");
    m2m_coap_msg_init(&e, M2M_COAP_CON, M2M_COAP_GET);
    m2m_coap_add_opt(&e, 268, NULL, 0);
    expect_encoding(&e, "40 01 00 00 d0 ff");
    m2m_coap_msg_init(&e, M2M_COAP_CON, M2M_COAP_GET);
    m2m_coap_add_opt(&e, 269, NULL, 0);
    expect_encoding(&e, "40 01 00 00 e0 00 00");
    m2m_coap_msg_init(&e, M2M_COAP_CON, M2M_COAP_GET);
    m2m_coap_add_opt(&e, 65535, NULL, 0);
    expect_encoding(&e, "40 01 00 00 e0 fe f2");
    /* Deltas are relative: 11 then 11+269 = 280. */
    m2m_coap_msg_init(&e, M2M_COAP_CON, M2M_COAP_GET);
    m2m_coap_add_opt(&e, 280, NULL, 0);
    m2m_coap_add_opt(&e, 11, NULL, 0);
    expect_encoding(&e, "40 01 00 00 b0 e0 00 00");
    /* No-Response (258) after Uri-Path (11): delta 247 = 13 + 234. */
    m2m_coap_msg_init(&e, M2M_COAP_NON, M2M_COAP_GET);
    m2m_coap_add_opt(&e, M2M_COAP_OPT_URI_PATH, "a", 1);
    m2m_coap_add_uint(&e, M2M_COAP_OPT_NO_RESPONSE, 26);
    expect_encoding(&e, "50 01 00 00 b1 61 d1 ea 1a");
}

static void test_length_boundaries(void **state)
{
    (void)state;
    static const size_t lens[] = {0, 1, 12, 13, 14, 268, 269, 270, 1034, 65535};
    static const char *nibbles[] = {"b0",    "b1",       "bc",       "bd 00",    "bd 01",
                                    "bd ff", "be 00 00", "be 00 01", "be 02 fd", "be fe f2"};
    uint8_t *val = malloc(65535);
    assert_non_null(val);
    for (size_t i = 0; i < 65535; i++)
        val[i] = (uint8_t)(i * 7);
    for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) {
        struct m2m_coap_msg e;
        m2m_coap_msg_init(&e, M2M_COAP_CON, M2M_COAP_PUT);
        assert_int_equal(m2m_coap_add_opt(&e, M2M_COAP_OPT_URI_PATH, val, lens[i]), 0);
        e.payload = val;
        e.payload_len = 3;
        round_trip(&e);
        /* The header bytes of the option are exactly the expected ones. */
        uint8_t want[8], *buf = malloc(m2m_coap_encoded_size(&e));
        size_t wn = unhex(nibbles[i], want, sizeof want), len;
        assert_non_null(buf);
        assert_int_equal(m2m_coap_encode(&e, buf, m2m_coap_encoded_size(&e), &len), 0);
        assert_memory_equal(buf + 4, want, wn);
        assert_int_equal(len, 4 + wn + lens[i] + 1 + 3);
        free(buf);
    }
    /* An option of 65536 bytes cannot be added. */
    struct m2m_coap_msg e;
    m2m_coap_msg_init(&e, M2M_COAP_CON, M2M_COAP_PUT);
    assert_int_equal(m2m_coap_add_opt(&e, M2M_COAP_OPT_URI_PATH, val, 65536), M2M_ENOBUFS);
    assert_int_equal(e.nopt, 0);
    free(val);
}

/* ---- encoder ------------------------------------------------------------- */

static void test_encode_enobufs(void **state)
{
    (void)state;
    struct m2m_coap_msg e;
    m2m_coap_msg_init(&e, M2M_COAP_CON, M2M_COAP_GET);
    e.mid = 9;
    e.tkl = 2;
    e.token[0] = 1;
    e.token[1] = 2;
    m2m_coap_add_path(&e, M2M_COAP_OPT_URI_PATH, "/a/bb/ccc");
    e.payload = (const uint8_t *)"xyz";
    e.payload_len = 3;
    size_t need = m2m_coap_encoded_size(&e);
    assert_int_equal(need, 4 + 2 + 2 + 3 + 4 + 1 + 3);
    /* Every capacity short of the size: ENOBUFS and not one byte written. */
    uint8_t buf[64];
    for (size_t cap = 0; cap < need; cap++) {
        memset(buf, 0xa5, sizeof buf);
        size_t len = 777;
        assert_int_equal(m2m_coap_encode(&e, buf, cap, &len), M2M_ENOBUFS);
        assert_int_equal(len, 777);
        for (size_t i = 0; i < sizeof buf; i++)
            assert_int_equal(buf[i], 0xa5);
    }
    size_t len = 0;
    assert_int_equal(m2m_coap_encode(&e, buf, need, &len), 0);
    assert_int_equal(len, need);
    assert_int_equal(buf[need], 0xa5);

    /* Invalid messages. */
    e.tkl = 9;
    assert_int_equal(m2m_coap_encode(&e, buf, sizeof buf, &len), M2M_EINVAL);
    e.tkl = 0;
    e.type = 4;
    assert_int_equal(m2m_coap_encode(&e, buf, sizeof buf, &len), M2M_EINVAL);
}

static void test_encode_sorts_stably(void **state)
{
    (void)state;
    struct m2m_coap_msg e;
    m2m_coap_msg_init(&e, M2M_COAP_CON, M2M_COAP_GET);
    e.mid = 0x0a0b;
    /* Added out of order, with repeated Uri-Path and Uri-Query. */
    m2m_coap_add_str(&e, M2M_COAP_OPT_URI_QUERY, "q2");
    m2m_coap_add_str(&e, M2M_COAP_OPT_URI_PATH, "a");
    m2m_coap_add_uint(&e, M2M_COAP_OPT_ACCEPT, 0);
    m2m_coap_add_str(&e, M2M_COAP_OPT_URI_PATH, "b");
    m2m_coap_add_str(&e, M2M_COAP_OPT_URI_HOST, "h");
    m2m_coap_add_str(&e, M2M_COAP_OPT_URI_QUERY, "q1");
    m2m_coap_add_str(&e, M2M_COAP_OPT_URI_PATH, "c");
    m2m_coap_add_uint(&e, M2M_COAP_OPT_OBSERVE, 0);
    expect_encoding(&e, "40 01 0a 0b"
                        " 31 68"             /* 3 Uri-Host h */
                        " 30"                /* 6 Observe 0 */
                        " 51 61 01 62 01 63" /* 11 Uri-Path a, b, c */
                        " 42 71 32 02 71 31" /* 15 Uri-Query q2, q1 (added order) */
                        " 20");              /* 17 Accept 0 */
    /* The message itself is not reordered. */
    assert_int_equal(e.opt[0].num, M2M_COAP_OPT_URI_QUERY);
    char path[32];
    assert_int_equal(m2m_coap_msg_path(&e, path, sizeof path), 0);
    assert_string_equal(path, "/a/b/c");
}

/* ---- option helpers ------------------------------------------------------ */

static void test_uint_options(void **state)
{
    (void)state;
    struct m2m_coap_msg e;
    m2m_coap_msg_init(&e, M2M_COAP_CON, M2M_COAP_GET);
    assert_int_equal(m2m_coap_get_uint(&e, M2M_COAP_OPT_MAX_AGE, 60), 60);
    assert_false(m2m_coap_has_opt(&e, M2M_COAP_OPT_MAX_AGE));
    assert_null(m2m_coap_find_opt(&e, M2M_COAP_OPT_MAX_AGE));
    static const uint32_t vals[] = {0, 1, 255, 256, 65535, 65536, 0xffffff, 0x1000000, 0xffffffff};
    for (size_t i = 0; i < sizeof vals / sizeof vals[0]; i++) {
        m2m_coap_msg_init(&e, M2M_COAP_CON, M2M_COAP_GET);
        assert_int_equal(m2m_coap_add_uint(&e, M2M_COAP_OPT_SIZE1, vals[i]), 0);
        assert_int_equal(m2m_coap_get_uint(&e, M2M_COAP_OPT_SIZE1, 7), vals[i]);
        round_trip(&e);
    }
    /* A 5-byte value reads as the default. */
    struct m2m_coap_msg d;
    uint8_t b[16];
    size_t n = unhex("40 01 00 01 d5 2f 01 02 03 04 05", b, sizeof b);
    assert_int_equal(m2m_coap_decode(&d, b, n), 0);
    assert_int_equal(d.opt[0].num, M2M_COAP_OPT_SIZE1);
    assert_int_equal(m2m_coap_get_uint(&d, M2M_COAP_OPT_SIZE1, 99), 99);
    /* Leading zero bytes are tolerated on input. */
    n = unhex("40 01 00 01 c3 00 00 32", b, sizeof b);
    assert_int_equal(m2m_coap_decode(&d, b, n), 0);
    assert_int_equal(m2m_coap_get_uint(&d, M2M_COAP_OPT_CONTENT_FORMAT, 0), 50);

    /* The scratch area runs out after M2M_COAP_SCRATCH / 4 uint options
     * of four bytes. */
    m2m_coap_msg_init(&e, M2M_COAP_CON, M2M_COAP_GET);
    int added = 0;
    while (m2m_coap_add_uint(&e, M2M_COAP_OPT_SIZE1, 0xffffffff) == 0)
        added++;
    assert_int_equal(added, M2M_COAP_SCRATCH / 4);
    for (uint16_t i = 0; i < e.nopt; i++)
        assert_memory_equal(e.opt[i].val, "\xff\xff\xff\xff", 4);

    /* The option array has a cap too. */
    m2m_coap_msg_init(&e, M2M_COAP_CON, M2M_COAP_GET);
    for (int i = 0; i < M2M_COAP_MAX_OPTS; i++)
        assert_int_equal(m2m_coap_add_opt(&e, M2M_COAP_OPT_URI_PATH, "x", 1), 0);
    assert_int_equal(m2m_coap_add_opt(&e, M2M_COAP_OPT_URI_PATH, "x", 1), M2M_ENOBUFS);
    assert_int_equal(e.nopt, M2M_COAP_MAX_OPTS);
    round_trip(&e);
}

static void test_del_opt(void **state)
{
    (void)state;
    struct m2m_coap_msg e;
    m2m_coap_msg_init(&e, M2M_COAP_CON, M2M_COAP_GET);
    m2m_coap_add_str(&e, M2M_COAP_OPT_URI_PATH, "a");
    m2m_coap_add_uint(&e, M2M_COAP_OPT_OBSERVE, 0);
    m2m_coap_add_str(&e, M2M_COAP_OPT_URI_PATH, "b");
    m2m_coap_add_uint(&e, M2M_COAP_OPT_ACCEPT, 50);
    m2m_coap_add_uint(&e, M2M_COAP_OPT_OBSERVE, 1);
    m2m_coap_del_opt(&e, M2M_COAP_OPT_OBSERVE);
    assert_int_equal(e.nopt, 3);
    assert_false(m2m_coap_has_opt(&e, M2M_COAP_OPT_OBSERVE));
    assert_memory_equal(e.opt[0].val, "a", 1);
    assert_memory_equal(e.opt[1].val, "b", 1);
    assert_int_equal(e.opt[2].num, M2M_COAP_OPT_ACCEPT);
    assert_int_equal(m2m_coap_get_uint(&e, M2M_COAP_OPT_ACCEPT, 0), 50);
    m2m_coap_del_opt(&e, M2M_COAP_OPT_ETAG); /* absent: no change */
    assert_int_equal(e.nopt, 3);
    m2m_coap_del_opt(&e, M2M_COAP_OPT_URI_PATH);
    assert_int_equal(e.nopt, 1);
    char path[8];
    assert_int_equal(m2m_coap_msg_path(&e, path, sizeof path), 0);
    assert_string_equal(path, "/");
    /* find_opt returns the first of repeated options. */
    m2m_coap_add_str(&e, M2M_COAP_OPT_URI_QUERY, "first");
    m2m_coap_add_str(&e, M2M_COAP_OPT_URI_QUERY, "second");
    assert_int_equal(m2m_coap_find_opt(&e, M2M_COAP_OPT_URI_QUERY)->len, 5);
}

static void test_bad_critical(void **state)
{
    (void)state;
    struct m2m_coap_msg e;
    /* Known options of valid length are fine, critical or not. */
    m2m_coap_msg_init(&e, M2M_COAP_CON, M2M_COAP_GET);
    m2m_coap_add_str(&e, M2M_COAP_OPT_URI_HOST, "h");
    m2m_coap_add_uint(&e, M2M_COAP_OPT_URI_PORT, 5683);
    m2m_coap_add_str(&e, M2M_COAP_OPT_URI_PATH, "");
    m2m_coap_add_uint(&e, M2M_COAP_OPT_ACCEPT, 50);
    m2m_coap_add_opt(&e, M2M_COAP_OPT_IF_NONE_MATCH, NULL, 0);
    m2m_coap_add_uint(&e, M2M_COAP_OPT_BLOCK2, 0x16);
    m2m_coap_add_str(&e, M2M_COAP_OPT_PROXY_URI, "coap://x/");
    assert_null(m2m_coap_bad_critical(&e));

    /* An unknown elective option (even number) is ignored. */
    m2m_coap_add_opt(&e, 2050, "z", 1);
    m2m_coap_add_opt(&e, 64, NULL, 0);
    assert_null(m2m_coap_bad_critical(&e));
    /* An unknown critical (odd) one is flagged. */
    m2m_coap_add_opt(&e, 2049, "z", 1);
    const struct m2m_coap_opt *bad = m2m_coap_bad_critical(&e);
    assert_non_null(bad);
    assert_int_equal(bad->num, 2049);

    /* Known critical options with a bad length are unrecognised (§5.4.3). */
    struct {
        uint16_t num;
        size_t len;
    } badlen[] = {
        {M2M_COAP_OPT_URI_HOST, 0},    {M2M_COAP_OPT_URI_HOST, 256}, {M2M_COAP_OPT_URI_PORT, 3},
        {M2M_COAP_OPT_URI_PATH, 256},  {M2M_COAP_OPT_IF_MATCH, 9},   {M2M_COAP_OPT_IF_NONE_MATCH, 1},
        {M2M_COAP_OPT_URI_QUERY, 300}, {M2M_COAP_OPT_ACCEPT, 3},     {M2M_COAP_OPT_BLOCK2, 4},
        {M2M_COAP_OPT_BLOCK1, 4},      {M2M_COAP_OPT_PROXY_URI, 0},  {M2M_COAP_OPT_PROXY_URI, 1035}};
    static uint8_t zeros[1100];
    for (size_t i = 0; i < sizeof badlen / sizeof badlen[0]; i++) {
        m2m_coap_msg_init(&e, M2M_COAP_CON, M2M_COAP_GET);
        m2m_coap_add_str(&e, M2M_COAP_OPT_URI_PATH, "ok");
        m2m_coap_add_opt(&e, badlen[i].num, zeros, badlen[i].len);
        bad = m2m_coap_bad_critical(&e);
        assert_non_null(bad);
        assert_int_equal(bad->num, badlen[i].num);
        assert_false(m2m_coap_opt_known(bad));
    }
    /* Known elective options with a bad length are silently ignored. */
    m2m_coap_msg_init(&e, M2M_COAP_CON, M2M_COAP_GET);
    m2m_coap_add_opt(&e, M2M_COAP_OPT_ETAG, zeros, 9);
    m2m_coap_add_opt(&e, M2M_COAP_OPT_CONTENT_FORMAT, zeros, 3);
    m2m_coap_add_opt(&e, M2M_COAP_OPT_OBSERVE, zeros, 4);
    m2m_coap_add_opt(&e, M2M_COAP_OPT_MAX_AGE, zeros, 5);
    assert_null(m2m_coap_bad_critical(&e));
    struct m2m_coap_opt o = {M2M_COAP_OPT_ETAG, 0, NULL};
    assert_false(m2m_coap_opt_known(&o));
    o.len = 8;
    assert_true(m2m_coap_opt_known(&o));

    /* The option number properties of §5.4.6. */
    assert_true(m2m_coap_opt_critical(M2M_COAP_OPT_URI_PATH));
    assert_false(m2m_coap_opt_critical(M2M_COAP_OPT_CONTENT_FORMAT));
    assert_true(m2m_coap_opt_unsafe(M2M_COAP_OPT_URI_HOST));
    assert_false(m2m_coap_opt_unsafe(M2M_COAP_OPT_ETAG));
    assert_true(m2m_coap_opt_nocachekey(M2M_COAP_OPT_SIZE1));
    assert_true(m2m_coap_opt_nocachekey(M2M_COAP_OPT_SIZE2));
    assert_false(m2m_coap_opt_nocachekey(M2M_COAP_OPT_BLOCK2));
}

static void test_names(void **state)
{
    (void)state;
    assert_string_equal(m2m_coap_code_name(M2M_COAP_CONTENT), "2.05 Content");
    assert_string_equal(m2m_coap_code_name(0x45), "2.05 Content");
    assert_string_equal(m2m_coap_code_name(0x84), "4.04 Not Found");
    assert_string_equal(m2m_coap_code_name(M2M_COAP_GET), "GET");
    assert_string_equal(m2m_coap_code_name(M2M_COAP_IPATCH), "iPATCH");
    assert_string_equal(m2m_coap_code_name(0), "0.00 Empty");
    assert_string_equal(m2m_coap_code_name(M2M_COAP_CODE(5, 4)), "5.04 Gateway Timeout");
    assert_string_equal(m2m_coap_code_name(M2M_COAP_CODE(3, 1)), "unknown code");
    assert_string_equal(m2m_coap_code_name(0xff), "unknown code");
    assert_string_equal(m2m_coap_type_name(M2M_COAP_CON), "CON");
    assert_string_equal(m2m_coap_type_name(M2M_COAP_RST), "RST");
    assert_int_equal(M2M_COAP_CODE_CLASS(M2M_COAP_NOT_FOUND), 4);
    assert_int_equal(M2M_COAP_CODE_DETAIL(M2M_COAP_NOT_FOUND), 4);

    assert_string_equal(m2m_coap_format_name(0), "text/plain;charset=utf-8");
    assert_string_equal(m2m_coap_format_name(40), "application/link-format");
    assert_string_equal(m2m_coap_format_name(50), "application/json");
    assert_string_equal(m2m_coap_format_name(11542), "application/vnd.oma.lwm2m+tlv");
    assert_null(m2m_coap_format_name(9999));
    assert_null(m2m_coap_format_name(-1));

    assert_int_equal(m2m_coap_format_parse("json"), 50);
    assert_int_equal(m2m_coap_format_parse("application/json"), 50);
    assert_int_equal(m2m_coap_format_parse("text"), 0);
    assert_int_equal(m2m_coap_format_parse("link"), 40);
    assert_int_equal(m2m_coap_format_parse("cbor"), 60);
    assert_int_equal(m2m_coap_format_parse("senml+json"), 110);
    assert_int_equal(m2m_coap_format_parse("60"), 60);
    assert_int_equal(m2m_coap_format_parse("0"), 0);
    assert_int_equal(m2m_coap_format_parse("65535"), 65535);
    assert_int_equal(m2m_coap_format_parse("65536"), -1);
    assert_int_equal(m2m_coap_format_parse("123456"), -1);
    assert_int_equal(m2m_coap_format_parse("x"), -1);
    assert_int_equal(m2m_coap_format_parse(""), -1);
    assert_int_equal(m2m_coap_format_parse("5x"), -1);
    assert_int_equal(m2m_coap_format_parse("-5"), -1);
    assert_int_equal(m2m_coap_format_parse("JSON"), -1);
}

static void test_msg_path(void **state)
{
    (void)state;
    struct m2m_coap_msg e;
    char buf[64];
    m2m_coap_msg_init(&e, M2M_COAP_CON, M2M_COAP_GET);
    assert_int_equal(m2m_coap_msg_path(&e, buf, sizeof buf), 0);
    assert_string_equal(buf, "/");
    /* '/' inside a segment, '%', space, '?', '#' and non-ASCII are escaped
     * so that two different option lists never give one string. */
    m2m_coap_add_opt(&e, M2M_COAP_OPT_URI_PATH, "a/b", 3);
    m2m_coap_add_opt(&e, M2M_COAP_OPT_URI_PATH, "100%", 4);
    m2m_coap_add_opt(&e, M2M_COAP_OPT_URI_PATH, "x y?#", 5);
    m2m_coap_add_opt(&e, M2M_COAP_OPT_URI_PATH, "\xc3\xa9\x00", 3);
    m2m_coap_add_opt(&e, M2M_COAP_OPT_URI_QUERY, "not=path", 8);
    assert_int_equal(m2m_coap_msg_path(&e, buf, sizeof buf), 0);
    assert_string_equal(buf, "/a%2Fb/100%25/x%20y%3F%23/%C3%A9%00");
    size_t need = strlen(buf) + 1;
    /* Too small by any amount: ENOBUFS. */
    for (size_t cap = 0; cap < need; cap++)
        assert_int_equal(m2m_coap_msg_path(&e, buf, cap), M2M_ENOBUFS);
    assert_int_equal(m2m_coap_msg_path(&e, buf, need), 0);
    /* Distinct from the two-segment path "a", "b". */
    struct m2m_coap_msg f;
    m2m_coap_msg_init(&f, M2M_COAP_CON, M2M_COAP_GET);
    m2m_coap_add_path(&f, M2M_COAP_OPT_URI_PATH, "a/b");
    assert_int_equal(m2m_coap_msg_path(&f, buf, sizeof buf), 0);
    assert_string_equal(buf, "/a/b");
    /* An empty segment keeps its slash. */
    m2m_coap_msg_init(&f, M2M_COAP_CON, M2M_COAP_GET);
    m2m_coap_add_opt(&f, M2M_COAP_OPT_URI_PATH, "a", 1);
    m2m_coap_add_opt(&f, M2M_COAP_OPT_URI_PATH, "", 0);
    assert_int_equal(m2m_coap_msg_path(&f, buf, sizeof buf), 0);
    assert_string_equal(buf, "/a/");
    assert_int_equal(m2m_coap_msg_path(&f, buf, 1), M2M_ENOBUFS);
}

static void test_add_path(void **state)
{
    (void)state;
    struct m2m_coap_msg e;
    m2m_coap_msg_init(&e, M2M_COAP_CON, M2M_COAP_GET);
    assert_int_equal(m2m_coap_add_path(&e, M2M_COAP_OPT_URI_PATH, "/"), 0);
    assert_int_equal(e.nopt, 0);
    assert_int_equal(m2m_coap_add_path(&e, M2M_COAP_OPT_URI_PATH, ""), 0);
    assert_int_equal(e.nopt, 0);
    assert_int_equal(m2m_coap_add_path(&e, M2M_COAP_OPT_URI_PATH, "/.well-known/core"), 0);
    assert_int_equal(e.nopt, 2);
    assert_int_equal(e.opt[0].len, 11);
    assert_memory_equal(e.opt[0].val, ".well-known", 11);
    assert_memory_equal(e.opt[1].val, "core", 4);
    /* Location-Path works the same; a doubled slash is an empty segment. */
    m2m_coap_msg_init(&e, M2M_COAP_ACK, M2M_COAP_CREATED);
    assert_int_equal(m2m_coap_add_path(&e, M2M_COAP_OPT_LOCATION_PATH, "x//y"), 0);
    assert_int_equal(e.nopt, 3);
    assert_int_equal(e.opt[0].num, M2M_COAP_OPT_LOCATION_PATH);
    assert_int_equal(e.opt[1].len, 0);
    assert_memory_equal(e.opt[2].val, "y", 1);
    /* Too many segments: the option cap is reported. */
    m2m_coap_msg_init(&e, M2M_COAP_CON, M2M_COAP_GET);
    char many[2 * M2M_COAP_MAX_OPTS + 3];
    for (int i = 0; i < M2M_COAP_MAX_OPTS + 1; i++) {
        many[2 * i] = '/';
        many[2 * i + 1] = 's';
    }
    many[2 * (M2M_COAP_MAX_OPTS + 1)] = 0;
    assert_int_equal(m2m_coap_add_path(&e, M2M_COAP_OPT_URI_PATH, many), M2M_ENOBUFS);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rfc_get_temperature),
        cmocka_unit_test(test_rfc_with_token),
        cmocka_unit_test(test_empty_messages),
        cmocka_unit_test(test_header_errors),
        cmocka_unit_test(test_option_errors),
        cmocka_unit_test(test_too_many_options),
        cmocka_unit_test(test_delta_boundaries),
        cmocka_unit_test(test_length_boundaries),
        cmocka_unit_test(test_encode_enobufs),
        cmocka_unit_test(test_encode_sorts_stably),
        cmocka_unit_test(test_uint_options),
        cmocka_unit_test(test_del_opt),
        cmocka_unit_test(test_bad_critical),
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_msg_path),
        cmocka_unit_test(test_add_path),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
