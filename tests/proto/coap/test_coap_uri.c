/* coap:// URIs decomposed into options (RFC 7252 §6.4). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "m2m/coap.h"

static const char *seg(const struct m2m_coap_uri *u, int i)
{
    return u->buf + u->path_off[i];
}
static const char *qry(const struct m2m_coap_uri *u, int i)
{
    return u->buf + u->query_off[i];
}

/* Parses from a heap copy of exactly strlen+1 bytes, so the parser cannot
 * read past the terminating NUL unnoticed. */
static int parse(const char *s, struct m2m_coap_uri *u)
{
    size_t n = strlen(s) + 1;
    char *c = malloc(n);
    assert_non_null(c);
    memcpy(c, s, n);
    int rc = m2m_coap_uri_parse(c, u);
    free(c);
    return rc;
}

/* The options a URI turns into, as "num:value|" with uints in decimal. */
static void opts_string(const struct m2m_coap_uri *u, char *out, size_t cap)
{
    struct m2m_coap_msg m;
    m2m_coap_msg_init(&m, M2M_COAP_CON, M2M_COAP_GET);
    assert_int_equal(m2m_coap_uri_to_opts(u, &m), 0);
    size_t len = 0;
    out[0] = 0;
    for (uint16_t i = 0; i < m.nopt; i++) {
        const struct m2m_coap_opt *o = &m.opt[i];
        int k;
        if (o->num == M2M_COAP_OPT_URI_PORT)
            k = snprintf(out + len, cap - len, "%u:%u|", o->num, m2m_coap_get_uint(&m, o->num, 0));
        else
            k = snprintf(out + len, cap - len, "%u:%.*s|", o->num, (int)o->len, (const char *)o->val);
        assert_true(k > 0 && (size_t)k < cap - len);
        len += (size_t)k;
    }
}

static void test_ipv6_literal(void **state)
{
    (void)state;
    struct m2m_coap_uri u;
    char o[256];
    /* §6.4 example: an IP literal gives no Uri-Host and "/" no Uri-Path. */
    assert_int_equal(parse("coap://[2001:db8::2:1]/", &u), 0);
    assert_false(u.secure);
    assert_true(u.ip_literal);
    assert_string_equal(u.host, "2001:db8::2:1");
    assert_int_equal(u.port, 5683);
    assert_int_equal(u.npath, 0);
    assert_int_equal(u.nquery, 0);
    opts_string(&u, o, sizeof o);
    assert_string_equal(o, "");

    assert_int_equal(parse("coap://[::1]:61616/x", &u), 0);
    assert_string_equal(u.host, "::1");
    assert_int_equal(u.port, 61616);
    opts_string(&u, o, sizeof o);
    assert_string_equal(o, "7:61616|11:x|");

    /* Without a trailing slash too. */
    assert_int_equal(parse("coap://[::1]", &u), 0);
    assert_int_equal(u.npath, 0);

    assert_int_equal(parse("coap://[::1", &u), M2M_EINVAL);
    assert_int_equal(parse("coap://[::1]x/", &u), M2M_EINVAL);
    assert_int_equal(parse("coap://[]/", &u), M2M_EINVAL);
    assert_int_equal(parse("coap://[::g]/", &u), M2M_EINVAL);
}

static void test_ipv4_and_names(void **state)
{
    (void)state;
    struct m2m_coap_uri u;
    char o[512];
    assert_int_equal(parse("coap://192.0.2.1/a", &u), 0);
    assert_true(u.ip_literal);
    opts_string(&u, o, sizeof o);
    assert_string_equal(o, "11:a|");

    /* Not an IPv4 address: these are names and get a Uri-Host. */
    static const char *names[] = {"coap://1.2.3/", "coap://1.2.3.4.5/", "coap://1.2.3.4a/", "coap://1..2.3/",
                                  "coap://1234.1.1.1/"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        assert_int_equal(parse(names[i], &u), 0);
        assert_false(u.ip_literal);
    }

    assert_int_equal(parse("coap://example.net/.well-known/core", &u), 0);
    assert_false(u.ip_literal);
    assert_string_equal(u.host, "example.net");
    assert_int_equal(u.npath, 2);
    assert_string_equal(seg(&u, 0), ".well-known");
    assert_string_equal(seg(&u, 1), "core");
    opts_string(&u, o, sizeof o);
    assert_string_equal(o, "3:example.net|11:.well-known|11:core|");
}

static void test_rfc_example(void **state)
{
    (void)state;
    struct m2m_coap_uri u;
    char o[512];
    /* Upper-case host, default port spelled out, '~' percent-encoded,
     * queries with and without '='. */
    assert_int_equal(parse("coap://EXAMPLE.net:5683/%7Esensors/temp.xml?x=1&y", &u), 0);
    assert_string_equal(u.host, "example.net");
    assert_int_equal(u.port, 5683);
    assert_int_equal(u.npath, 2);
    assert_string_equal(seg(&u, 0), "~sensors");
    assert_int_equal(u.path_len[0], 8);
    assert_string_equal(seg(&u, 1), "temp.xml");
    assert_int_equal(u.nquery, 2);
    assert_string_equal(qry(&u, 0), "x=1");
    assert_string_equal(qry(&u, 1), "y");
    opts_string(&u, o, sizeof o);
    assert_string_equal(o, "3:example.net|11:~sensors|11:temp.xml|15:x=1|15:y|");

    /* The literal "~" gives the same options as "%7E" (§6.5's example). */
    struct m2m_coap_uri v;
    char o2[512];
    assert_int_equal(parse("coap://example.net/~sensors/temp.xml?x=1&y", &v), 0);
    opts_string(&v, o2, sizeof o2);
    assert_string_equal(o, o2);

    /* Percent-encoded octets in the path are not lower-cased, and in the
     * host only literal characters are (the host is lower-cased first). */
    assert_int_equal(parse("coap://Ho%53t/A%2fB", &u), 0);
    assert_string_equal(u.host, "hoSt");
    assert_int_equal(u.npath, 1);
    assert_string_equal(seg(&u, 0), "A/B");
}

static void test_ports(void **state)
{
    (void)state;
    struct m2m_coap_uri u;
    char o[256];
    assert_int_equal(parse("coaps://h/", &u), 0);
    assert_true(u.secure);
    assert_int_equal(u.port, 5684);
    opts_string(&u, o, sizeof o);
    assert_string_equal(o, "3:h|");
    /* 5683 is not the default for coaps, so it is sent. */
    assert_int_equal(parse("coaps://h:5683/", &u), 0);
    opts_string(&u, o, sizeof o);
    assert_string_equal(o, "3:h|7:5683|");
    assert_int_equal(parse("coap://h:5684", &u), 0);
    opts_string(&u, o, sizeof o);
    assert_string_equal(o, "3:h|7:5684|");
    assert_int_equal(parse("coap://h:1/", &u), 0);
    assert_int_equal(u.port, 1);
    assert_int_equal(parse("coap://h:65535/", &u), 0);
    assert_int_equal(u.port, 65535);
    /* An empty port is the default (RFC 3986 §3.2.3). */
    assert_int_equal(parse("coap://h:/", &u), 0);
    assert_int_equal(u.port, 5683);

    static const char *bad[] = {"coap://h:0/",     "coap://h:65536/", "coap://h:99999/", "coap://h:123456/",
                                "coap://h:12a/",   "coap://h:-1/",    "coap://h: 80/",   "coap://h:80:81/",
                                "coap://[::1]:0/", "coap://[::1]:x/"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(parse(bad[i], &u), M2M_EINVAL);
}

static void test_percent_and_fragments(void **state)
{
    (void)state;
    struct m2m_coap_uri u;
    static const char *bad[] = {
        "coap://h/a%zz", "coap://h/a%4",      "coap://h/a%",   "coap://h/%g0",   "coap://h/a?b=%4",
        "coap://h%2/",   "coap://h/a#frag",   "coap://h/#",    "coap://h/a?b#c", "coap://h/a b",
        "coap://h/\x7f", "coap://h/\xc3\xa9", "coap://h%00x/", "coap://u@h/",    "coap:///a",
        "coap://",       "coap:/h/",          "http://h/",     "coap:h",         "",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int rc = parse(bad[i], &u);
        if (rc != M2M_EINVAL)
            fprintf(stderr, "accepted: \"%s\"\n", bad[i]);
        assert_int_equal(rc, M2M_EINVAL);
    }
    /* Decoded bytes may be anything in path and query, NUL included. */
    assert_int_equal(parse("coap://h/%00%ff?%26=%3D", &u), 0);
    assert_int_equal(u.path_len[0], 2);
    assert_memory_equal(seg(&u, 0), "\x00\xff", 2);
    assert_string_equal(qry(&u, 0), "&==");
    /* The scheme is case-insensitive. */
    assert_int_equal(parse("COAPS://h/", &u), 0);
    assert_true(u.secure);
    assert_int_equal(parse("CoAp://h/", &u), 0);
    assert_false(u.secure);
}

static void test_segments(void **state)
{
    (void)state;
    struct m2m_coap_uri u;
    char o[256];
    /* A trailing slash is an empty last segment (§6.4 step 8). */
    assert_int_equal(parse("coap://h/a/", &u), 0);
    assert_int_equal(u.npath, 2);
    assert_string_equal(seg(&u, 0), "a");
    assert_string_equal(seg(&u, 1), "");
    assert_int_equal(u.path_len[1], 0);
    opts_string(&u, o, sizeof o);
    assert_string_equal(o, "3:h|11:a|11:|");
    assert_int_equal(parse("coap://h//", &u), 0);
    assert_int_equal(u.npath, 2);
    /* No path, only a query. */
    assert_int_equal(parse("coap://h?x", &u), 0);
    assert_int_equal(u.npath, 0);
    assert_int_equal(u.nquery, 1);
    assert_int_equal(parse("coap://h/?", &u), 0);
    assert_int_equal(u.npath, 0);
    assert_int_equal(u.nquery, 0);
    assert_int_equal(parse("coap://h/p?a&&b", &u), 0);
    assert_int_equal(u.nquery, 3);
    assert_string_equal(qry(&u, 1), "");
    /* '?' inside the query belongs to it. */
    assert_int_equal(parse("coap://h/p?a?b", &u), 0);
    assert_int_equal(u.nquery, 1);
    assert_string_equal(qry(&u, 0), "a?b");

    /* 32 segments fit, 33 do not; same for queries. */
    char s[512];
    size_t n = (size_t)snprintf(s, sizeof s, "coap://h");
    for (int i = 0; i < 32; i++)
        n += (size_t)snprintf(s + n, sizeof s - n, "/%d", i);
    assert_int_equal(parse(s, &u), 0);
    assert_int_equal(u.npath, 32);
    assert_string_equal(seg(&u, 31), "31");
    snprintf(s + n, sizeof s - n, "/x");
    assert_int_equal(parse(s, &u), M2M_EINVAL);
    n = (size_t)snprintf(s, sizeof s, "coap://h/?q");
    for (int i = 1; i < 32; i++)
        n += (size_t)snprintf(s + n, sizeof s - n, "&%d", i);
    assert_int_equal(parse(s, &u), 0);
    assert_int_equal(u.nquery, 32);
    snprintf(s + n, sizeof s - n, "&x");
    assert_int_equal(parse(s, &u), M2M_EINVAL);
}

static void test_sizes(void **state)
{
    (void)state;
    struct m2m_coap_uri u;
    char s[4096];
    /* A 255-byte segment fits an option, 256 does not. */
    memcpy(s, "coap://h/", 9);
    memset(s + 9, 'a', 256);
    s[9 + 255] = 0;
    assert_int_equal(parse(s, &u), 0);
    assert_int_equal(u.path_len[0], 255);
    s[9 + 255] = 'a';
    s[9 + 256] = 0;
    assert_int_equal(parse(s, &u), M2M_EINVAL);
    /* A 255-byte host fits, 256 does not. */
    memcpy(s, "coap://", 7);
    memset(s + 7, 'h', 256);
    s[7 + 255] = 0;
    assert_int_equal(parse(s, &u), 0);
    assert_int_equal(strlen(u.host), 255);
    s[7 + 255] = 'h';
    s[7 + 256] = 0;
    assert_int_equal(parse(s, &u), M2M_EINVAL);

    /* Segments that fill the decode buffer exactly, then one more empty
     * segment: refused, never written past the buffer. */
    size_t n = (size_t)snprintf(s, sizeof s, "coap://h");
    for (int i = 0; i < 4; i++) {
        s[n++] = '/';
        memset(s + n, 'a' + i, 255);
        n += 255;
    }
    s[n] = 0;
    assert_int_equal(parse(s, &u), 0);
    assert_int_equal(u.npath, 4);
    s[n++] = '/';
    s[n] = 0;
    assert_int_equal(parse(s, &u), M2M_EINVAL);
    /* And the same overflow reached through an empty query. */
    s[n - 1] = '?';
    memcpy(s + n, "&", 2);
    assert_int_equal(parse(s, &u), M2M_EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ipv6_literal),
        cmocka_unit_test(test_ipv4_and_names),
        cmocka_unit_test(test_rfc_example),
        cmocka_unit_test(test_ports),
        cmocka_unit_test(test_percent_and_fragments),
        cmocka_unit_test(test_segments),
        cmocka_unit_test(test_sizes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
