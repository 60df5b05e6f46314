/* src/base: cursors, varints, UTF-8, config parsing, hash map, timer heap,
 * PRNG, error names and logging. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "base/config.h"
#include "base/cursor.h"
#include "base/heap.h"
#include "base/hmap.h"
#include "base/log.h"
#include "base/prng.h"
#include "base/utf8.h"
#include "base/varint.h"
#include "guardbuf.h"
#include "m2m/err.h"
#include "vclock.h"

#define U8(...) ((const uint8_t[]){__VA_ARGS__})
#define UTF8_OK(s, f) m2m_utf8_valid((const uint8_t *)(s), sizeof(s) - 1, (f))

/* ---- cursor ------------------------------------------------------------ */

static void test_rcur_bounds(void **state)
{
    (void)state;
    const uint8_t b[] = {0x01, 0x02, 0x03};
    struct m2m_rcur c;
    uint8_t v8;
    uint16_t v16;
    struct m2m_slice s;

    m2m_rcur_init(&c, b, sizeof b);
    assert_int_equal(m2m_rcur_left(&c), 3);
    assert_int_equal(m2m_rcur_u8(&c, &v8), 0);
    assert_int_equal(v8, 1);
    assert_int_equal(m2m_rcur_be16(&c, &v16), 0);
    assert_int_equal(v16, 0x0203);
    assert_int_equal(m2m_rcur_left(&c), 0);
    assert_int_equal(m2m_rcur_u8(&c, &v8), M2M_EMALFORMED);
    assert_int_equal(m2m_rcur_be16(&c, &v16), M2M_EMALFORMED);
    assert_int_equal(m2m_rcur_take(&c, 1, &s), M2M_EMALFORMED);
    assert_int_equal(m2m_rcur_take(&c, 0, &s), 0);
    assert_int_equal(s.n, 0);
    assert_int_equal(c.off, 3);

    /* be16 with one byte left fails and does not move. */
    m2m_rcur_init(&c, b, sizeof b);
    c.off = 2;
    assert_int_equal(m2m_rcur_be16(&c, &v16), M2M_EMALFORMED);
    assert_int_equal(c.off, 2);

    /* take borrows: the slice points into the input. */
    m2m_rcur_init(&c, b, sizeof b);
    assert_int_equal(m2m_rcur_take(&c, 2, &s), 0);
    assert_ptr_equal(s.p, b);
    assert_int_equal(s.n, 2);
    assert_int_equal(m2m_rcur_take(&c, 2, &s), M2M_EMALFORMED);
    assert_int_equal(c.off, 2);
    /* A huge length must not wrap the bounds check. */
    assert_int_equal(m2m_rcur_take(&c, SIZE_MAX, &s), M2M_EMALFORMED);
}

static void test_rcur_guard_page(void **state)
{
    (void)state;
    struct test_guard g = {0};
    const uint8_t *p = test_guard_copy(&g, U8(0xaa, 0xbb, 0xcc), 3);
    struct m2m_rcur c;
    m2m_rcur_init(&c, p, 3);
    uint8_t v;
    for (int i = 0; i < 3; i++)
        assert_int_equal(m2m_rcur_u8(&c, &v), 0);
    assert_int_equal(v, 0xcc);
    assert_int_equal(m2m_rcur_u8(&c, &v), M2M_EMALFORMED);
    test_guard_free(&g);
}

static void test_wcur_bounds(void **state)
{
    (void)state;
    uint8_t b[4];
    memset(b, 0xee, sizeof b);
    struct m2m_wcur c;
    m2m_wcur_init(&c, b, 3);
    assert_int_equal(m2m_wcur_u8(&c, 0x11), 0);
    assert_int_equal(m2m_wcur_be16(&c, 0x2233), 0);
    assert_int_equal(c.off, 3);
    assert_int_equal(m2m_wcur_u8(&c, 0x44), M2M_ENOBUFS);
    assert_int_equal(m2m_wcur_be16(&c, 0x4455), M2M_ENOBUFS);
    assert_int_equal(m2m_wcur_bytes(&c, "x", 1), M2M_ENOBUFS);
    assert_int_equal(m2m_wcur_bytes(&c, NULL, 0), 0);
    assert_int_equal(c.off, 3);
    assert_memory_equal(b, U8(0x11, 0x22, 0x33, 0xee), 4);

    /* A write that does not fit leaves the cursor and buffer alone. */
    m2m_wcur_init(&c, b, 3);
    c.off = 2;
    assert_int_equal(m2m_wcur_be16(&c, 0x9999), M2M_ENOBUFS);
    assert_int_equal(m2m_wcur_bytes(&c, "ab", 2), M2M_ENOBUFS);
    assert_int_equal(c.off, 2);
    assert_memory_equal(b, U8(0x11, 0x22, 0x33, 0xee), 4);
    assert_int_equal(m2m_wcur_bytes(&c, "z", 1), 0);
    assert_int_equal(b[2], 'z');
}

static void test_uint_be(void **state)
{
    (void)state;
    static const struct {
        uint32_t v;
        size_t n;
        uint8_t b[4];
    } vec[] = {
        {0, 0, {0}},
        {1, 1, {1}},
        {0xff, 1, {0xff}},
        {0x100, 2, {1, 0}},
        {0xffff, 2, {0xff, 0xff}},
        {0x10000, 3, {1, 0, 0}},
        {0xffffff, 3, {0xff, 0xff, 0xff}},
        {0x1000000, 4, {1, 0, 0, 0}},
        {0xffffffff, 4, {0xff, 0xff, 0xff, 0xff}},
    };
    for (size_t i = 0; i < sizeof vec / sizeof vec[0]; i++) {
        uint8_t out[4];
        uint32_t back = 12345;
        assert_int_equal(m2m_uint_min_be(vec[i].v, out), vec[i].n);
        assert_memory_equal(out, vec[i].b, vec[i].n);
        assert_int_equal(m2m_uint_from_be(out, vec[i].n, &back), 0);
        assert_int_equal(back, vec[i].v);
    }
    /* Leading zeros are accepted when reading (RFC 7252 §3.2 says so). */
    uint32_t v = 0;
    assert_int_equal(m2m_uint_from_be(U8(0, 0, 5), 3, &v), 0);
    assert_int_equal(v, 5);
    v = 77;
    assert_int_equal(m2m_uint_from_be(U8(1, 2, 3, 4, 5), 5, &v), M2M_EMALFORMED);
    assert_int_equal(v, 77);
}

/* ---- varint ------------------------------------------------------------ */

static const struct {
    uint32_t v;
    size_t n;
    uint8_t b[5];
} varint_vec[] = {
    {0, 1, {0x00}},
    {1, 1, {0x01}},
    {127, 1, {0x7f}},
    {128, 2, {0x80, 0x01}},
    {16383, 2, {0xff, 0x7f}},
    {16384, 3, {0x80, 0x80, 0x01}},
    {2097151, 3, {0xff, 0xff, 0x7f}},
    {2097152, 4, {0x80, 0x80, 0x80, 0x01}},
    {268435455, 4, {0xff, 0xff, 0xff, 0x7f}},
};

static void test_varint_vectors(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof varint_vec / sizeof varint_vec[0]; i++) {
        uint8_t buf[8];
        struct m2m_wcur w;
        m2m_wcur_init(&w, buf, sizeof buf);
        assert_int_equal(m2m_varint_size(varint_vec[i].v), varint_vec[i].n);
        assert_int_equal(m2m_varint_write(&w, 4, varint_vec[i].v), 0);
        assert_int_equal(w.off, varint_vec[i].n);
        assert_memory_equal(buf, varint_vec[i].b, varint_vec[i].n);

        /* Whole, and every truncation: a prefix is an error that leaves
         * the cursor untouched. */
        for (size_t k = 0; k <= varint_vec[i].n; k++) {
            uint8_t *c = test_heap_copy(varint_vec[i].b, k);
            struct m2m_rcur r;
            uint32_t v = 0xdeadbeef;
            m2m_rcur_init(&r, c, k);
            int rc = m2m_varint_read(&r, 4, &v);
            if (k == varint_vec[i].n) {
                assert_int_equal(rc, 0);
                assert_int_equal(v, varint_vec[i].v);
                assert_int_equal(r.off, k);
            } else {
                assert_int_equal(rc, M2M_EMALFORMED);
                assert_int_equal(r.off, 0);
                assert_int_equal(v, 0xdeadbeef);
            }
            free(c);
        }
    }
}

static void test_varint_limits(void **state)
{
    (void)state;
    uint8_t buf[8];
    struct m2m_wcur w;
    struct m2m_rcur r;
    uint32_t v;

    /* 268,435,456 needs five bytes: too many for MQTT's four. */
    m2m_wcur_init(&w, buf, sizeof buf);
    assert_int_equal(m2m_varint_write(&w, 4, 268435456), M2M_EINVAL);
    assert_int_equal(w.off, 0);
    assert_int_equal(m2m_varint_size(268435456), 5);
    m2m_rcur_init(&r, U8(0xff, 0xff, 0xff, 0xff, 0x01), 5);
    assert_int_equal(m2m_varint_read(&r, 4, &v), M2M_EMALFORMED);
    assert_int_equal(r.off, 0);
    /* max_bytes is honoured below four too. */
    m2m_rcur_init(&r, U8(0x80, 0x01), 2);
    assert_int_equal(m2m_varint_read(&r, 1, &v), M2M_EMALFORMED);
    m2m_wcur_init(&w, buf, sizeof buf);
    assert_int_equal(m2m_varint_write(&w, 1, 128), M2M_EINVAL);

    /* Five groups hold 32 bits and no more. */
    m2m_rcur_init(&r, U8(0xff, 0xff, 0xff, 0xff, 0x0f), 5);
    assert_int_equal(m2m_varint_read(&r, 5, &v), 0);
    assert_int_equal(v, 0xffffffff);
    m2m_rcur_init(&r, U8(0xff, 0xff, 0xff, 0xff, 0x10), 5);
    assert_int_equal(m2m_varint_read(&r, 5, &v), M2M_EMALFORMED);
    m2m_wcur_init(&w, buf, sizeof buf);
    assert_int_equal(m2m_varint_write(&w, 5, 0xffffffff), 0);
    assert_memory_equal(buf, U8(0xff, 0xff, 0xff, 0xff, 0x0f), 5);

    /* Not enough room: ENOBUFS and nothing written. */
    memset(buf, 0xee, sizeof buf);
    m2m_wcur_init(&w, buf, 2);
    assert_int_equal(m2m_varint_write(&w, 4, 16384), M2M_ENOBUFS);
    assert_int_equal(w.off, 0);
    assert_int_equal(buf[0], 0xee);

    /* Two varints back to back. */
    m2m_rcur_init(&r, U8(0x80, 0x01, 0x05), 3);
    assert_int_equal(m2m_varint_read(&r, 4, &v), 0);
    assert_int_equal(v, 128);
    assert_int_equal(m2m_varint_read(&r, 4, &v), 0);
    assert_int_equal(v, 5);
}

static void test_varint_non_minimal(void **state)
{
    (void)state;
    const uint8_t *bad[] = {U8(0x80, 0x00), U8(0xff, 0x00), U8(0x80, 0x80, 0x00), U8(0x81, 0x80, 0x80, 0x00)};
    static const size_t len[] = {2, 2, 3, 4};
    for (size_t i = 0; i < 4; i++) {
        struct m2m_rcur r;
        uint32_t v;
        m2m_rcur_init(&r, bad[i], len[i]);
        assert_int_equal(m2m_varint_read(&r, 4, &v), M2M_EMALFORMED);
        assert_int_equal(r.off, 0);
    }
}

/* ---- UTF-8 --------------------------------------------------------------- */

static void test_utf8(void **state)
{
    (void)state;
    assert_true(UTF8_OK("", 0));
    assert_true(UTF8_OK("plain ascii", 0));
    assert_true(UTF8_OK("\xc2\x80", 0));         /* U+0080, smallest 2-byte */
    assert_true(UTF8_OK("\xdf\xbf", 0));         /* U+07FF */
    assert_true(UTF8_OK("\xe0\xa0\x80", 0));     /* U+0800 */
    assert_true(UTF8_OK("\xed\x9f\xbf", 0));     /* U+D7FF, just below surrogates */
    assert_true(UTF8_OK("\xee\x80\x80", 0));     /* U+E000, just above */
    assert_true(UTF8_OK("\xef\xbf\xbf", 0));     /* U+FFFF */
    assert_true(UTF8_OK("\xf0\x90\x80\x80", 0)); /* U+10000 */
    assert_true(UTF8_OK("\xf4\x8f\xbf\xbf", 0)); /* U+10FFFF, the last */
    assert_true(UTF8_OK("h\xc3\xa9llo \xe2\x82\xac", 0));

    /* Overlong forms of '/', NUL and U+07FF/U+FFFF. */
    assert_false(UTF8_OK("\xc0\xaf", 0));
    assert_false(UTF8_OK("\xc0\x80", 0));
    assert_false(UTF8_OK("\xc1\xbf", 0));
    assert_false(UTF8_OK("\xe0\x80\xaf", 0));
    assert_false(UTF8_OK("\xe0\x9f\xbf", 0));
    assert_false(UTF8_OK("\xf0\x80\x80\xaf", 0));
    assert_false(UTF8_OK("\xf0\x8f\xbf\xbf", 0));
    /* Surrogates. */
    assert_false(UTF8_OK("\xed\xa0\x80", 0));
    assert_false(UTF8_OK("\xed\xbf\xbf", 0));
    /* Beyond U+10FFFF, and lead bytes that can only start those. */
    assert_false(UTF8_OK("\xf4\x90\x80\x80", 0));
    assert_false(UTF8_OK("\xf5\x80\x80\x80", 0));
    assert_false(UTF8_OK("\xf8\x88\x80\x80\x80", 0));
    assert_false(UTF8_OK("\xff", 0));
    /* Stray continuation bytes and broken sequences. */
    assert_false(UTF8_OK("\x80", 0));
    assert_false(UTF8_OK("a\xbf", 0));
    assert_false(UTF8_OK("\xc3\x28", 0));
    assert_false(UTF8_OK("\xe2\x28\xa1", 0));
}

static void test_utf8_truncated(void **state)
{
    (void)state;
    /* Every proper prefix of a multi-byte sequence is invalid; checked on
     * exact-size copies so a read past the end would be caught. */
    static const char *seqs[] = {"\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x98\x80"};
    for (size_t i = 0; i < 3; i++) {
        size_t n = strlen(seqs[i]);
        for (size_t k = 0; k <= n; k++) {
            uint8_t *c = test_heap_copy(seqs[i], k);
            bool ok = m2m_utf8_valid(c, k, 0);
            assert_true(ok == (k == 0 || k == n));
            free(c);
        }
    }
}

static void test_utf8_flags(void **state)
{
    (void)state;
    const uint8_t nul[] = {'a', 0, 'b'};
    assert_true(m2m_utf8_valid(nul, 3, 0));
    assert_false(m2m_utf8_valid(nul, 3, M2M_UTF8_NO_NUL));
    assert_false(m2m_utf8_valid(nul, 3, M2M_UTF8_NO_CONTROL));
    assert_true(UTF8_OK("tab\there", M2M_UTF8_NO_NUL));
    assert_false(UTF8_OK("tab\there", M2M_UTF8_NO_CONTROL));
    assert_false(UTF8_OK("del\x7f", M2M_UTF8_NO_CONTROL));
    assert_false(UTF8_OK("c1 \xc2\x85", M2M_UTF8_NO_CONTROL)); /* U+0085 NEL */
    assert_true(UTF8_OK("\xc2\xa0", M2M_UTF8_NO_CONTROL));     /* U+00A0 */
    assert_true(UTF8_OK("\xc2\x85", M2M_UTF8_NO_NUL));
}

/* ---- config -------------------------------------------------------------- */

struct kv {
    char out[512];
    size_t len;
    int stop_at; /* call number that returns an error, 0 for none */
    int calls;
};

static int collect(void *ctx, const char *key, const char *val)
{
    struct kv *kv = ctx;
    kv->calls++;
    if (kv->stop_at && kv->calls == kv->stop_at)
        return M2M_ENOTFOUND;
    int n = snprintf(kv->out + kv->len, sizeof kv->out - kv->len, "%s=%s|", key, val);
    assert_true(n > 0 && (size_t)n < sizeof kv->out - kv->len);
    kv->len += (size_t)n;
    return 0;
}

static int parse_text(const char *text, struct kv *kv, int *line)
{
    memset(kv, 0, sizeof *kv);
    *line = -1;
    return m2m_conf_parse(text, strlen(text), collect, kv, line);
}

static void test_conf_parse(void **state)
{
    (void)state;
    struct kv kv;
    int line;
    const char *text = "# comment\n"
                       "top = 1\n"
                       "; another comment\n"
                       "\n"
                       "[coap]\n"
                       "  port = 5683  \r\n"
                       "\tbind=  127.0.0.1\n"
                       "empty =\n"
                       "[ mqtt ]\n"
                       "url = a=b\n"
                       "last = no newline";
    assert_int_equal(parse_text(text, &kv, &line), 0);
    assert_string_equal(kv.out, "top=1|coap.port=5683|coap.bind=127.0.0.1|coap.empty=|"
                                "mqtt.url=a=b|mqtt.last=no newline|");

    /* Errors carry the line number of the offending line. */
    assert_int_equal(parse_text("a = 1\nno equals sign\n", &kv, &line), M2M_EMALFORMED);
    assert_int_equal(line, 2);
    assert_int_equal(parse_text("a = 1\n\n[open\n", &kv, &line), M2M_EMALFORMED);
    assert_int_equal(line, 3);
    assert_int_equal(parse_text("[]\n", &kv, &line), M2M_EMALFORMED);
    assert_int_equal(line, 1);
    assert_int_equal(parse_text("x=1\n = value\n", &kv, &line), M2M_EMALFORMED);
    assert_int_equal(line, 2);
    char longsec[80];
    memset(longsec, 's', sizeof longsec);
    longsec[0] = '[';
    longsec[78] = ']';
    longsec[79] = 0;
    assert_int_equal(parse_text(longsec, &kv, &line), M2M_EMALFORMED);
    assert_int_equal(line, 1);

    /* An embedded NUL is refused rather than silently cutting a line. */
    const char nul[] = "a = 1\nb = 2\0x\n";
    memset(&kv, 0, sizeof kv);
    assert_int_equal(m2m_conf_parse(nul, sizeof nul - 1, collect, &kv, &line), M2M_EMALFORMED);
    assert_int_equal(line, 2);

    /* A line longer than the parser's buffer is an error, not truncation. */
    size_t big = 3000;
    char *huge = malloc(big + 1);
    assert_non_null(huge);
    memset(huge, 'v', big);
    memcpy(huge, "k = ", 4);
    huge[big] = 0;
    assert_int_equal(parse_text(huge, &kv, &line), M2M_EMALFORMED);
    assert_int_equal(line, 1);
    free(huge);

    /* The callback's error stops the walk and names its line. */
    memset(&kv, 0, sizeof kv);
    kv.stop_at = 2;
    const char *three = "a=1\n\nb=2\nc=3\n";
    assert_int_equal(m2m_conf_parse(three, strlen(three), collect, &kv, &line), M2M_ENOTFOUND);
    assert_int_equal(line, 3);
    assert_string_equal(kv.out, "a=1|");

    /* Only the first n bytes are read. */
    memset(&kv, 0, sizeof kv);
    assert_int_equal(m2m_conf_parse("a=1\nb=2", 4, collect, &kv, &line), 0);
    assert_string_equal(kv.out, "a=1|");
}

static void test_conf_duration(void **state)
{
    (void)state;
    static const struct {
        const char *s;
        int64_t ms;
    } ok[] = {
        {"250ms", 250}, {"2s", 2000},   {"5m", 300000}, {"24h", 86400000}, {"1d", 86400000}, {"30", 30000},
        {"0", 0},       {"1.5s", 1500}, {"0.25", 250},  {"10 ms", 10},     {"2.5m", 150000},
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        int64_t ms = -1;
        assert_int_equal(m2m_conf_parse_duration(ok[i].s, &ms), 0);
        assert_int_equal(ms, ok[i].ms);
    }
    static const char *bad[] = {"",     "ms",  "-1",  "+1",  "5x",    "5mm", "5 s x", "1e3",
                                "0x10", "inf", "nan", " 5s", "1.2.3", "s5",  "5S",    ".5"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int64_t ms = 42;
        assert_int_equal(m2m_conf_parse_duration(bad[i], &ms), M2M_EINVAL);
        assert_int_equal(ms, 42);
    }
}

static void test_conf_size(void **state)
{
    (void)state;
    int64_t b;
    assert_int_equal(m2m_conf_parse_size("512", &b), 0);
    assert_int_equal(b, 512);
    assert_int_equal(m2m_conf_parse_size("64k", &b), 0);
    assert_int_equal(b, 65536);
    assert_int_equal(m2m_conf_parse_size("64K", &b), 0);
    assert_int_equal(b, 65536);
    assert_int_equal(m2m_conf_parse_size("16M", &b), 0);
    assert_int_equal(b, 16777216);
    assert_int_equal(m2m_conf_parse_size("2G", &b), 0);
    assert_int_equal(b, 2147483648LL);
    assert_int_equal(m2m_conf_parse_size("1.5k", &b), 0);
    assert_int_equal(b, 1536);
    b = 7;
    assert_int_equal(m2m_conf_parse_size("1T", &b), M2M_EINVAL);
    assert_int_equal(m2m_conf_parse_size("16m", &b), M2M_EINVAL); /* milli-bytes? no */
    assert_int_equal(m2m_conf_parse_size("-1k", &b), M2M_EINVAL);
    assert_int_equal(m2m_conf_parse_size("64kb", &b), M2M_EINVAL);
    assert_int_equal(m2m_conf_parse_size("k", &b), M2M_EINVAL);
    assert_int_equal(m2m_conf_parse_size("99999999999G", &b), M2M_EINVAL);
    assert_int_equal(b, 7);
}

struct conf_obj {
    int64_t port;
    bool verbose;
    char name[8];
    int64_t timeout;
    int64_t maxsize;
    double ratio;
};

static const struct m2m_conf_key keys[] = {
    {"coap.port", M2M_CONF_INT, offsetof(struct conf_obj, port), 0, "5683", 1, 65535, "port"},
    {"log.verbose", M2M_CONF_BOOL, offsetof(struct conf_obj, verbose), 0, "no", 0, 1, "v"},
    {"srv.name", M2M_CONF_STR, offsetof(struct conf_obj, name), 8, "m2m", 0, 0, "name"},
    {"coap.timeout", M2M_CONF_DURATION, offsetof(struct conf_obj, timeout), 0, "2s", 1, 60000, "t"},
    {"coap.max", M2M_CONF_SIZE, offsetof(struct conf_obj, maxsize), 0, "1k", 16, 1048576, "m"},
    {"coap.ratio", M2M_CONF_RATIO, offsetof(struct conf_obj, ratio), 0, "1.5", 1, 10, "r"},
};
#define NKEYS (sizeof keys / sizeof keys[0])

static int set(struct conf_obj *o, const char *k, const char *v)
{
    char err[160];
    err[0] = 0;
    int rc = m2m_conf_set(keys, NKEYS, o, k, v, err, sizeof err);
    /* Every failure explains itself. */
    assert_true(rc == 0 || err[0] != 0);
    return rc;
}

static void test_conf_schema(void **state)
{
    (void)state;
    struct conf_obj o;
    memset(&o, 0x5a, sizeof o);
    assert_int_equal(m2m_conf_defaults(keys, NKEYS, &o), 0);
    assert_int_equal(o.port, 5683);
    assert_false(o.verbose);
    assert_string_equal(o.name, "m2m");
    assert_int_equal(o.timeout, 2000);
    assert_int_equal(o.maxsize, 1024);
    assert_true(o.ratio == 1.5);

    assert_ptr_equal(m2m_conf_find(keys, NKEYS, "coap.max"), &keys[4]);
    assert_null(m2m_conf_find(keys, NKEYS, "coap"));

    /* Bools in every spelling. */
    static const char *yes[] = {"true", "yes", "on", "1"};
    static const char *no[] = {"false", "no", "off", "0"};
    for (int i = 0; i < 4; i++) {
        assert_int_equal(set(&o, "log.verbose", yes[i]), 0);
        assert_true(o.verbose);
        assert_int_equal(set(&o, "log.verbose", no[i]), 0);
        assert_false(o.verbose);
    }
    assert_int_equal(set(&o, "log.verbose", "maybe"), M2M_EINVAL);
    assert_int_equal(set(&o, "log.verbose", ""), M2M_EINVAL);

    /* Integer bounds are inclusive. */
    assert_int_equal(set(&o, "coap.port", "1"), 0);
    assert_int_equal(set(&o, "coap.port", "65535"), 0);
    assert_int_equal(o.port, 65535);
    assert_int_equal(set(&o, "coap.port", "0"), M2M_EINVAL);
    assert_int_equal(set(&o, "coap.port", "65536"), M2M_EINVAL);
    assert_int_equal(set(&o, "coap.port", "12ab"), M2M_EINVAL);
    assert_int_equal(set(&o, "coap.port", ""), M2M_EINVAL);
    assert_int_equal(set(&o, "coap.port", "99999999999999999999999"), M2M_EINVAL);
    assert_int_equal(o.port, 65535);

    /* Durations and sizes are bounded in their base unit. */
    assert_int_equal(set(&o, "coap.timeout", "250ms"), 0);
    assert_int_equal(o.timeout, 250);
    assert_int_equal(set(&o, "coap.timeout", "1m"), 0);
    assert_int_equal(o.timeout, 60000);
    assert_int_equal(set(&o, "coap.timeout", "61s"), M2M_EINVAL);
    assert_int_equal(set(&o, "coap.timeout", "0ms"), M2M_EINVAL);
    assert_int_equal(o.timeout, 60000);
    assert_int_equal(set(&o, "coap.max", "1M"), 0);
    assert_int_equal(o.maxsize, 1048576);
    assert_int_equal(set(&o, "coap.max", "2M"), M2M_EINVAL);
    assert_int_equal(set(&o, "coap.max", "15"), M2M_EINVAL);

    assert_int_equal(set(&o, "coap.ratio", "2.25"), 0);
    assert_true(o.ratio == 2.25);
    assert_int_equal(set(&o, "coap.ratio", "0.5"), M2M_EINVAL);
    assert_int_equal(set(&o, "coap.ratio", "nan"), M2M_EINVAL);
    assert_int_equal(set(&o, "coap.ratio", "2x"), M2M_EINVAL);

    /* Strings must fit with their NUL. */
    assert_int_equal(set(&o, "srv.name", "1234567"), 0);
    assert_string_equal(o.name, "1234567");
    assert_int_equal(set(&o, "srv.name", "12345678"), M2M_EINVAL);
    assert_string_equal(o.name, "1234567");

    char err[64];
    assert_int_equal(m2m_conf_set(keys, NKEYS, &o, "coap.nope", "1", err, sizeof err), M2M_ENOTFOUND);
    assert_non_null(strstr(err, "coap.nope"));
    assert_int_equal(m2m_conf_set(keys, NKEYS, &o, "coap.port", "0", err, sizeof err), M2M_EINVAL);
    assert_non_null(strstr(err, "coap.port"));
}

/* ---- hash map ------------------------------------------------------------ */

struct item {
    struct m2m_hnode hn;
    int key;
};

static uint64_t item_hash(int key)
{
    return m2m_hash_keyed(0x1234, &key, sizeof key);
}

static struct item *find(struct m2m_hmap *m, int key)
{
    for (struct m2m_hnode *n = m2m_hmap_first(m, item_hash(key)); n; n = m2m_hmap_next(n)) {
        struct item *it = M2M_CONTAINER_OF(n, struct item, hn);
        if (it->key == key)
            return it;
    }
    return NULL;
}

static void test_hmap_basic(void **state)
{
    (void)state;
    enum { N = 1000 };
    struct m2m_hmap m;
    struct item *items = calloc(N, sizeof *items);
    assert_non_null(items);
    assert_int_equal(m2m_hmap_init(&m, 5), 0);
    assert_int_equal(m.mask + 1, 16); /* rounded up to a power of two, at least 16 */

    for (int i = 0; i < N; i++) {
        items[i].key = i;
        m2m_hmap_insert(&m, &items[i].hn, item_hash(i));
        assert_int_equal(m.count, (size_t)i + 1);
        /* The load stays at or below one after growth. */
        assert_true(m.count <= m.mask + 1);
    }
    assert_true(m.mask + 1 >= 512);
    for (int i = 0; i < N; i++)
        assert_ptr_equal(find(&m, i), &items[i]);
    assert_null(find(&m, N));

    /* Remove every other one. */
    for (int i = 0; i < N; i += 2)
        m2m_hmap_remove(&m, &items[i].hn);
    assert_int_equal(m.count, N / 2);
    for (int i = 0; i < N; i++) {
        if (i % 2)
            assert_ptr_equal(find(&m, i), &items[i]);
        else
            assert_null(find(&m, i));
    }
    /* Removing a node that is not in the map changes nothing. */
    m2m_hmap_remove(&m, &items[0].hn);
    assert_int_equal(m.count, N / 2);

    m2m_hmap_cleanup(&m);
    assert_null(m.b);
    free(items);
}

static void test_hmap_same_hash(void **state)
{
    (void)state;
    /* Nodes with one hash form one chain that first/next walk in full,
     * while a node with another hash in the same bucket is skipped. */
    struct m2m_hmap m;
    struct item it[5];
    assert_int_equal(m2m_hmap_init(&m, 16), 0);
    for (int i = 0; i < 4; i++) {
        it[i].key = i;
        m2m_hmap_insert(&m, &it[i].hn, 0x77);
    }
    it[4].key = 4;
    m2m_hmap_insert(&m, &it[4].hn, 0x77 + 16 * 3); /* same bucket, other hash */
    int seen = 0;
    for (struct m2m_hnode *n = m2m_hmap_first(&m, 0x77); n; n = m2m_hmap_next(n)) {
        struct item *x = M2M_CONTAINER_OF(n, struct item, hn);
        assert_true(x->key < 4);
        seen |= 1 << x->key;
    }
    assert_int_equal(seen, 0xf);
    assert_ptr_equal(m2m_hmap_first(&m, 0x77 + 16 * 3), &it[4].hn);
    assert_null(m2m_hmap_next(&it[4].hn));
    assert_null(m2m_hmap_first(&m, 0x78));
    m2m_hmap_remove(&m, &it[2].hn);
    seen = 0;
    for (struct m2m_hnode *n = m2m_hmap_first(&m, 0x77); n; n = m2m_hmap_next(n))
        seen |= 1 << M2M_CONTAINER_OF(n, struct item, hn)->key;
    assert_int_equal(seen, 0xb);
    m2m_hmap_cleanup(&m);
}

static void test_hash_keyed(void **state)
{
    (void)state;
    const char *s = "peer-address-17";
    uint64_t h = m2m_hash_keyed(1, s, strlen(s));
    assert_true(h == m2m_hash_keyed(1, s, strlen(s)));
    assert_true(h != m2m_hash_keyed(2, s, strlen(s)));
    /* Length is part of the hash: "a" and "a\0" differ. */
    assert_true(m2m_hash_keyed(1, "a", 1) != m2m_hash_keyed(1, "a\0", 2));
    assert_true(m2m_hash_keyed(1, "", 0) != m2m_hash_keyed(1, "\0", 1));
    /* An empty key may come as NULL. */
    assert_true(m2m_hash_keyed(1, NULL, 0) == m2m_hash_keyed(1, "", 0));
    /* Every tail length, read from exact-size copies. */
    for (size_t n = 0; n <= 17; n++) {
        uint8_t *c = test_heap_copy("0123456789abcdefg", n);
        (void)m2m_hash_keyed(9, c, n);
        free(c);
    }
    /* Changing one bit changes the hash. */
    uint8_t b[16] = {0};
    uint64_t h0 = m2m_hash_keyed(5, b, sizeof b);
    for (size_t i = 0; i < sizeof b * 8; i++) {
        b[i / 8] ^= (uint8_t)(1 << (i % 8));
        assert_true(m2m_hash_keyed(5, b, sizeof b) != h0);
        b[i / 8] ^= (uint8_t)(1 << (i % 8));
    }
    assert_true(m2m_hash_mix(1, 2) != m2m_hash_mix(2, 1));
}

/* ---- timer heap ---------------------------------------------------------- */

static void check_heap(const struct m2m_heap *h)
{
    for (size_t i = 0; i < h->n; i++) {
        assert_int_equal(h->v[i]->idx, i);
        if (i)
            assert_true(h->v[(i - 1) / 2]->at <= h->v[i]->at);
    }
}

static void test_heap_order(void **state)
{
    (void)state;
    enum { N = 300 };
    struct m2m_heap h;
    struct m2m_timer t[N];
    struct m2m_prng g;
    m2m_heap_init(&h);
    m2m_prng_seed(&g, 7);
    assert_null(m2m_heap_top(&h));
    for (int i = 0; i < N; i++) {
        m2m_timer_init(&t[i], i);
        assert_false(m2m_timer_armed(&t[i]));
        assert_true(t[i].at == M2M_NEVER);
        assert_int_equal(m2m_heap_set(&h, &t[i], (m2m_time)(m2m_prng_next(&g) % 1000)), 0);
        assert_true(m2m_timer_armed(&t[i]));
    }
    check_heap(&h);
    m2m_time last = -1;
    size_t popped = 0;
    while (m2m_heap_top(&h)) {
        struct m2m_timer *top = m2m_heap_top(&h);
        assert_true(top->at >= last);
        last = top->at;
        m2m_heap_cancel(&h, top);
        assert_false(m2m_timer_armed(top));
        check_heap(&h);
        popped++;
    }
    assert_int_equal(popped, N);
    m2m_heap_cleanup(&h);
}

static void test_heap_cancel_rearm(void **state)
{
    (void)state;
    struct m2m_heap h;
    struct m2m_timer t[8];
    m2m_heap_init(&h);
    for (int i = 0; i < 8; i++) {
        m2m_timer_init(&t[i], 100 + i);
        assert_int_equal(m2m_heap_set(&h, &t[i], 10 * (i + 1)), 0);
    }
    assert_ptr_equal(m2m_heap_top(&h), &t[0]);

    /* Cancelling an unarmed timer is a no-op; cancelling twice too. */
    struct m2m_timer idle;
    m2m_timer_init(&idle, 0);
    m2m_heap_cancel(&h, &idle);
    assert_int_equal(h.n, 8);
    m2m_heap_cancel(&h, &t[3]);
    m2m_heap_cancel(&h, &t[3]);
    assert_int_equal(h.n, 7);
    check_heap(&h);

    /* Re-arming moves a timer both ways without duplicating it. */
    assert_int_equal(m2m_heap_set(&h, &t[7], 1), 0);
    assert_ptr_equal(m2m_heap_top(&h), &t[7]);
    assert_int_equal(h.n, 7);
    assert_int_equal(m2m_heap_set(&h, &t[7], 1000), 0);
    assert_ptr_equal(m2m_heap_top(&h), &t[0]);
    assert_int_equal(m2m_heap_set(&h, &t[0], 999), 0);
    assert_ptr_equal(m2m_heap_top(&h), &t[1]);
    check_heap(&h);
    assert_int_equal(m2m_heap_top(&h)->kind, 101);

    /* Re-arm after cancel goes back in. */
    assert_int_equal(m2m_heap_set(&h, &t[3], 5), 0);
    assert_ptr_equal(m2m_heap_top(&h), &t[3]);
    assert_int_equal(h.n, 8);

    /* Cancel the last slot, then one whose replacement must move up. */
    m2m_heap_cancel(&h, h.v[h.n - 1]);
    check_heap(&h);
    m2m_heap_cancel(&h, h.v[1]);
    check_heap(&h);

    /* Cleanup disarms what is left. */
    m2m_heap_cleanup(&h);
    for (int i = 0; i < 8; i++)
        assert_false(m2m_timer_armed(&t[i]));
    assert_int_equal(h.n, 0);
}

static void test_heap_random_ops(void **state)
{
    (void)state;
    /* Random set/re-arm/cancel against the heap invariant. */
    enum { N = 64 };
    struct m2m_heap h;
    struct m2m_timer t[N];
    struct m2m_prng g;
    m2m_heap_init(&h);
    m2m_prng_seed(&g, 99);
    for (int i = 0; i < N; i++)
        m2m_timer_init(&t[i], i);
    for (int step = 0; step < 5000; step++) {
        uint64_t r = m2m_prng_next(&g);
        struct m2m_timer *x = &t[r % N];
        if ((r >> 8) % 3 == 0)
            m2m_heap_cancel(&h, x);
        else
            assert_int_equal(m2m_heap_set(&h, x, (m2m_time)((r >> 16) % 500)), 0);
        check_heap(&h);
        size_t armed = 0;
        for (int i = 0; i < N; i++)
            armed += m2m_timer_armed(&t[i]) ? 1 : 0;
        assert_int_equal(armed, h.n);
    }
    m2m_heap_cleanup(&h);
}

/* ---- PRNG ---------------------------------------------------------------- */

static void test_prng(void **state)
{
    (void)state;
    struct m2m_prng a, b, c;
    m2m_prng_seed(&a, 42);
    m2m_prng_seed(&b, 42);
    m2m_prng_seed(&c, 43);
    uint64_t first = 0;
    int diff = 0;
    for (int i = 0; i < 100; i++) {
        uint64_t x = m2m_prng_next(&a);
        if (!i)
            first = x;
        assert_true(x == m2m_prng_next(&b));
        diff += x != m2m_prng_next(&c);
    }
    assert_int_equal(diff, 100);
    assert_true(first != 0);

    /* fill() hands out the same stream, 8 bytes per draw, tail truncated. */
    struct m2m_prng d, e;
    m2m_prng_seed(&d, 42);
    m2m_prng_seed(&e, 42);
    uint8_t buf[13], want[16];
    struct m2m_rng rng = m2m_prng_rng(&d);
    rng.fill(rng.ctx, buf, sizeof buf);
    uint64_t w0 = m2m_prng_next(&e), w1 = m2m_prng_next(&e);
    memcpy(want, &w0, 8);
    memcpy(want + 8, &w1, 8);
    assert_memory_equal(buf, want, sizeof buf);
    /* The partial draw consumed a whole word. */
    assert_true(m2m_prng_next(&d) == m2m_prng_next(&e));
    m2m_prng_fill(&d, buf, 0);
    assert_true(m2m_prng_next(&d) == m2m_prng_next(&e));

    /* Seed 0 is fine too (splitmix expands it). */
    struct m2m_prng z;
    m2m_prng_seed(&z, 0);
    assert_true(m2m_prng_next(&z) != 0 || m2m_prng_next(&z) != 0);
}

/* ---- errors and logs ----------------------------------------------------- */

static void test_err_names(void **state)
{
    (void)state;
    assert_string_equal(m2m_errname(M2M_OK), "OK");
    assert_string_equal(m2m_strerror(M2M_OK), "success");
    assert_string_equal(m2m_errname(M2M_EMALFORMED), "EMALFORMED");
    assert_string_equal(m2m_strerror(M2M_EMALFORMED), "malformed input");
    assert_string_equal(m2m_errname(M2M_ENOBUFS), "ENOBUFS");
    assert_string_equal(m2m_errname(M2M_ESTATE), "ESTATE");
    assert_string_equal(m2m_strerror(M2M_ETIMEDOUT), "timed out");
    assert_string_equal(m2m_errname(1), "unknown error");
    assert_string_equal(m2m_strerror(-1), "unknown error");
    assert_string_equal(m2m_errname(M2M__ERR_END), "unknown error");
    /* Every code is negative, distinct and named. */
    int codes[] = {
#define X(name, msg) M2M_##name,
        M2M_ERR_MAP(X)
#undef X
    };
    for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++) {
        assert_true(codes[i] < 0);
        assert_string_not_equal(m2m_errname(codes[i]), "unknown error");
        assert_string_not_equal(m2m_strerror(codes[i]), "unknown error");
        for (size_t j = 0; j < i; j++)
            assert_int_not_equal(codes[i], codes[j]);
    }
}

struct logcap {
    int calls;
    enum m2m_log_level lvl;
    char proto[16];
    const struct m2m_addr *peer;
    char line[1024];
};

static void log_write(void *ctx, enum m2m_log_level lvl, const char *proto, const struct m2m_addr *peer,
                      const char *line)
{
    struct logcap *c = ctx;
    c->calls++;
    c->lvl = lvl;
    snprintf(c->proto, sizeof c->proto, "%s", proto);
    c->peer = peer;
    snprintf(c->line, sizeof c->line, "%s", line);
}

static void test_log(void **state)
{
    (void)state;
    struct logcap cap = {0};
    struct m2m_logger lg = {log_write, &cap, M2M_LOG_INFO};
    struct m2m_addr a = test_addr(3);
    m2m_log(&lg, M2M_LOG_WARN, "coap", &a, "dropped %d bytes from %s", 12, "x");
    assert_int_equal(cap.calls, 1);
    assert_int_equal(cap.lvl, M2M_LOG_WARN);
    assert_string_equal(cap.proto, "coap");
    assert_ptr_equal(cap.peer, &a);
    assert_string_equal(cap.line, "dropped 12 bytes from x");
    /* Below the logger's level: not formatted, not written. */
    m2m_log(&lg, M2M_LOG_DEBUG, "coap", NULL, "noise");
    assert_int_equal(cap.calls, 1);
    assert_false(m2m_log_on(&lg, M2M_LOG_DEBUG));
    assert_true(m2m_log_on(&lg, M2M_LOG_ERROR));
    /* A NULL logger is silent. */
    m2m_log(NULL, M2M_LOG_ERROR, "coap", NULL, "nobody hears");
    assert_false(m2m_log_on(NULL, M2M_LOG_ERROR));
    /* Long lines are truncated to 511 characters. */
    char big[700];
    memset(big, 'q', sizeof big - 1);
    big[sizeof big - 1] = 0;
    m2m_log(&lg, M2M_LOG_ERROR, "coap", NULL, "%s", big);
    assert_int_equal(strlen(cap.line), 511);
    assert_string_equal(m2m_log_level_name(M2M_LOG_DEBUG), "debug");
    assert_string_equal(m2m_log_level_name((enum m2m_log_level)9), "?");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rcur_bounds),
        cmocka_unit_test(test_rcur_guard_page),
        cmocka_unit_test(test_wcur_bounds),
        cmocka_unit_test(test_uint_be),
        cmocka_unit_test(test_varint_vectors),
        cmocka_unit_test(test_varint_limits),
        cmocka_unit_test(test_varint_non_minimal),
        cmocka_unit_test(test_utf8),
        cmocka_unit_test(test_utf8_truncated),
        cmocka_unit_test(test_utf8_flags),
        cmocka_unit_test(test_conf_parse),
        cmocka_unit_test(test_conf_duration),
        cmocka_unit_test(test_conf_size),
        cmocka_unit_test(test_conf_schema),
        cmocka_unit_test(test_hmap_basic),
        cmocka_unit_test(test_hmap_same_hash),
        cmocka_unit_test(test_hash_keyed),
        cmocka_unit_test(test_heap_order),
        cmocka_unit_test(test_heap_cancel_rearm),
        cmocka_unit_test(test_heap_random_ops),
        cmocka_unit_test(test_prng),
        cmocka_unit_test(test_err_names),
        cmocka_unit_test(test_log),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
