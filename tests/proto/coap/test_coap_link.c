/* CoRE Link Format (RFC 6690): writing, query filtering and reading. */
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

static struct m2m_coap_link mk(const char *href)
{
    struct m2m_coap_link l = {href, NULL, NULL, NULL, -1, -1, false};
    return l;
}

/* ---- append -------------------------------------------------------------- */

static void test_append_exact(void **state)
{
    (void)state;
    char buf[256];
    size_t len = 0;
    struct m2m_coap_link l = {"/a", "x", "y", "t", 0, 12, true};
    assert_int_equal(m2m_coap_link_append(buf, sizeof buf, &len, &l), 0);
    assert_string_equal(buf, "</a>;rt=\"x\";if=\"y\";title=\"t\";ct=0;sz=12;obs");
    assert_int_equal(len, strlen(buf));

    /* The second link is comma-separated; absent attributes are left out. */
    struct m2m_coap_link b = mk("/sensors/temp");
    b.ct = 50;
    assert_int_equal(m2m_coap_link_append(buf, sizeof buf, &len, &b), 0);
    assert_string_equal(buf, "</a>;rt=\"x\";if=\"y\";title=\"t\";ct=0;sz=12;obs,"
                             "</sensors/temp>;ct=50");
    assert_int_equal(len, strlen(buf));

    /* A value holding '"' or '\' cannot be quoted and is left out. */
    len = 0;
    struct m2m_coap_link q = mk("/q");
    q.rt = "say \"hi\"";
    q.title = "back\\slash";
    q.ifd = "core.s";
    assert_int_equal(m2m_coap_link_append(buf, sizeof buf, &len, &q), 0);
    assert_string_equal(buf, "</q>;if=\"core.s\"");

    /* Big numbers print in full. */
    len = 0;
    struct m2m_coap_link z = mk("/z");
    z.ct = 65535;
    z.sz = 4294967295L;
    assert_int_equal(m2m_coap_link_append(buf, sizeof buf, &len, &z), 0);
    assert_string_equal(buf, "</z>;ct=65535;sz=4294967295");
}

static void test_append_enobufs(void **state)
{
    (void)state;
    const char *first = "</b>";
    const char *want = "</b>,</a>;rt=\"x\";ct=0;obs";
    struct m2m_coap_link l = mk("/a");
    l.rt = "x";
    l.ct = 0;
    l.obs = true;
    /* Every capacity that cannot hold the result and its NUL: ENOBUFS,
     * with the buffer rolled back to what it held before. */
    for (size_t cap = strlen(first) + 1; cap <= strlen(want); cap++) {
        char *buf = malloc(cap);
        assert_non_null(buf);
        memcpy(buf, first, strlen(first) + 1);
        size_t len = strlen(first);
        assert_int_equal(m2m_coap_link_append(buf, cap, &len, &l), M2M_ENOBUFS);
        assert_int_equal(len, strlen(first));
        assert_string_equal(buf, first);
        free(buf);
    }
    char *buf = malloc(strlen(want) + 1);
    assert_non_null(buf);
    memcpy(buf, first, strlen(first) + 1);
    size_t len = strlen(first);
    assert_int_equal(m2m_coap_link_append(buf, strlen(want) + 1, &len, &l), 0);
    assert_string_equal(buf, want);
    free(buf);

    /* A zero-sized or already full buffer is left alone. */
    char one = 'x';
    len = 0;
    assert_int_equal(m2m_coap_link_append(&one, 0, &len, &l), M2M_ENOBUFS);
    assert_int_equal(one, 'x');
    char full[4] = "abc";
    len = 4;
    assert_int_equal(m2m_coap_link_append(full, sizeof full, &len, &l), M2M_ENOBUFS);
    assert_int_equal(len, 4);
    assert_memory_equal(full, "abc", 4);
}

/* ---- match --------------------------------------------------------------- */

static bool match(const struct m2m_coap_link *l, const char *q)
{
    /* The query is not NUL-terminated on the wire: give an exact copy. */
    size_t n = strlen(q);
    uint8_t *c = test_heap_copy(q, n);
    bool r = m2m_coap_link_match(l, (const char *)c, n);
    free(c);
    return r;
}

static void test_match(void **state)
{
    (void)state;
    struct m2m_coap_link l = {"/sensors/temp", "temperature-c sensor", "core.s", "Room 1", 0, 120, true};
    assert_true(match(&l, "href=/sensors/temp"));
    assert_false(match(&l, "href=/sensors"));
    assert_true(match(&l, "href=/sensors*"));
    assert_true(match(&l, "href=*"));
    assert_false(match(&l, "href=/sensors/temp/x"));
    assert_false(match(&l, "href=/sensors/temp/x*"));

    /* rt and if are space-separated lists. */
    assert_true(match(&l, "rt=temperature-c"));
    assert_true(match(&l, "rt=sensor"));
    assert_false(match(&l, "rt=temperature"));
    assert_true(match(&l, "rt=temperature*"));
    assert_true(match(&l, "rt=sens*"));
    assert_false(match(&l, "rt=temperature-c sensor"));
    assert_false(match(&l, "rt="));
    assert_true(match(&l, "rt=*"));
    assert_true(match(&l, "if=core.s"));
    assert_true(match(&l, "if=core*"));
    assert_false(match(&l, "if=core.p"));

    assert_true(match(&l, "ct=0"));
    assert_false(match(&l, "ct=00"));
    assert_false(match(&l, "ct=40"));
    assert_true(match(&l, "sz=120"));
    assert_true(match(&l, "sz=12*"));
    assert_false(match(&l, "sz=12"));
    assert_true(match(&l, "title=Room 1"));
    assert_true(match(&l, "title=Room*"));
    assert_false(match(&l, "title=room 1"));
    assert_true(match(&l, "obs"));
    assert_true(match(&l, "obs="));

    /* Unknown attributes, and keys that only share a prefix, never match. */
    assert_false(match(&l, "foo=bar"));
    assert_false(match(&l, "rtx=sensor"));
    assert_false(match(&l, "r=sensor"));
    assert_false(match(&l, ""));
    assert_false(match(&l, "="));

    /* Absent attributes match nothing. */
    struct m2m_coap_link bare = mk("/b");
    assert_false(match(&bare, "rt=*"));
    assert_false(match(&bare, "if=*"));
    assert_false(match(&bare, "title=*"));
    assert_false(match(&bare, "ct=*"));
    assert_false(match(&bare, "sz=*"));
    assert_false(match(&bare, "obs"));
    assert_true(match(&bare, "href=/b"));

    /* Extra spaces in the list are skipped, empty entries never match. */
    struct m2m_coap_link sp = mk("/s");
    sp.rt = "  a   bb ";
    assert_true(match(&sp, "rt=a"));
    assert_true(match(&sp, "rt=bb"));
    assert_false(match(&sp, "rt=b"));
    assert_false(match(&sp, "rt= "));

    /* Only qlen bytes count. */
    assert_true(m2m_coap_link_match(&l, "rt=sensorXYZ", 9));
    assert_true(m2m_coap_link_match(&l, "ct=0=", 4));
}

/* ---- iteration ----------------------------------------------------------- */

struct collected {
    int rc; /* last return: 0 at the end, or an error */
    int links;
    char out[512];
};

static void iterate(const char *doc, size_t n, struct collected *c)
{
    struct m2m_coap_link_iter it = {doc, n, 0};
    struct m2m_slice t, p;
    size_t len = 0;
    memset(c, 0, sizeof *c);
    while ((c->rc = m2m_coap_link_next(&it, &t, &p)) == 1) {
        assert_true(t.p >= (const uint8_t *)doc && t.p + t.n <= (const uint8_t *)doc + n);
        assert_true(p.p >= (const uint8_t *)doc && p.p + p.n <= (const uint8_t *)doc + n);
        int k = snprintf(c->out + len, sizeof c->out - len, "[%.*s|%.*s]", (int)t.n, (const char *)t.p,
                         (int)p.n, (const char *)p.p);
        assert_true(k > 0 && (size_t)k < sizeof c->out - len);
        len += (size_t)k;
        c->links++;
        assert_true(c->links < 100);
    }
}

static void iterate_s(const char *doc, struct collected *c)
{
    size_t n = strlen(doc);
    char *copy = (char *)test_heap_copy(doc, n);
    iterate(copy, n, c);
    free(copy);
}

static void test_next(void **state)
{
    (void)state;
    struct collected c;
    iterate_s("</sensors/temp>;rt=\"temperature-c\";if=\"sensor\","
              "</sensors/light>;rt=\"light-lux\";if=\"sensor\"",
              &c);
    assert_int_equal(c.rc, 0);
    assert_int_equal(c.links, 2);
    assert_string_equal(c.out, "[/sensors/temp|;rt=\"temperature-c\";if=\"sensor\"]"
                               "[/sensors/light|;rt=\"light-lux\";if=\"sensor\"]");

    /* A comma inside quotes does not end the link, nor an escaped quote. */
    iterate_s("</a>;title=\"x, y\";ct=0, </b>;title=\"q\\\",z\"", &c);
    assert_int_equal(c.rc, 0);
    assert_string_equal(c.out, "[/a|;title=\"x, y\";ct=0][/b|;title=\"q\\\",z\"]");

    /* Whitespace and line breaks between links; a trailing comma. */
    iterate_s(" \r\n\t</x>,\n</y>;obs,", &c);
    assert_int_equal(c.rc, 0);
    assert_string_equal(c.out, "[/x|][/y|;obs]");

    /* Empty documents. */
    iterate_s("", &c);
    assert_int_equal(c.rc, 0);
    assert_int_equal(c.links, 0);
    iterate_s("  \n ", &c);
    assert_int_equal(c.rc, 0);
    assert_int_equal(c.links, 0);

    /* The length bounds the walk, not a NUL. */
    iterate("</a>,</b>", 4, &c);
    assert_int_equal(c.rc, 0);
    assert_string_equal(c.out, "[/a|]");
}

static void test_next_malformed(void **state)
{
    (void)state;
    struct collected c;
    static const char *bad[] = {"foo",        "</a",    "<",          "</a>;t=\"x", "</a>;t=\"x\\\"",
                                "</a>,,</b>", "</a>,x", "</a>;q=\"\\"};
    static const int links_before[] = {0, 0, 0, 0, 0, 1, 1, 0};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        iterate_s(bad[i], &c);
        if (c.rc != M2M_EMALFORMED)
            fprintf(stderr, "accepted: %s\n", bad[i]);
        assert_int_equal(c.rc, M2M_EMALFORMED);
        assert_int_equal(c.links, links_before[i]);
    }
    /* The iterator stays on the error. */
    struct m2m_coap_link_iter it = {"</a", 3, 0};
    struct m2m_slice t, p;
    assert_int_equal(m2m_coap_link_next(&it, &t, &p), M2M_EMALFORMED);
    assert_int_equal(m2m_coap_link_next(&it, &t, &p), M2M_EMALFORMED);
}

static void prefix_walk(void *ctx, const uint8_t *p, size_t k)
{
    (void)ctx;
    struct collected c;
    iterate((const char *)p, k, &c);
    assert_true(c.rc == 0 || c.rc == M2M_EMALFORMED);
}

static void test_next_every_prefix(void **state)
{
    (void)state;
    /* Every truncation of a document, on exact-size copies: no overread. */
    const char *doc = "</a>;rt=\"x y\";title=\"a,\\\"b\";ct=40,\n </b/c>;if=\"core.b\";obs";
    test_each_prefix((const uint8_t *)doc, strlen(doc), prefix_walk, NULL);
}

static void test_write_then_read(void **state)
{
    (void)state;
    /* What link_append writes, link_next reads back link by link. */
    char buf[512];
    size_t len = 0;
    struct m2m_coap_link a = {"/a", "t1 t2", "core.s", "A, with comma", 0, 5, true};
    struct m2m_coap_link b = mk("/b");
    assert_int_equal(m2m_coap_link_append(buf, sizeof buf, &len, &a), 0);
    assert_int_equal(m2m_coap_link_append(buf, sizeof buf, &len, &b), 0);
    struct collected c;
    iterate(buf, len, &c);
    assert_int_equal(c.rc, 0);
    assert_int_equal(c.links, 2);
    assert_string_equal(c.out, "[/a|;rt=\"t1 t2\";if=\"core.s\";title=\"A, with comma\";ct=0;"
                               "sz=5;obs][/b|]");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_append_exact),    cmocka_unit_test(test_append_enobufs),
        cmocka_unit_test(test_match),           cmocka_unit_test(test_next),
        cmocka_unit_test(test_next_malformed),  cmocka_unit_test(test_next_every_prefix),
        cmocka_unit_test(test_write_then_read),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
