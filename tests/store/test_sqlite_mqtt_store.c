/* src/store/sqlite_mqtt_store.c: every row type through close and reopen,
 * replace and cascade semantics, load order, refusal of foreign or damaged
 * files, rollback of unfinished batches, and durability across a kill -9. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "m2m/err.h"
#include "store/mqtt_store.h"

#define SL(s) ((struct m2m_slice){(const uint8_t *)(s), sizeof(s) - 1})
#define EMPTY ((struct m2m_slice){NULL, 0})

/* ---- fixture: one temporary directory per test ------------------------- */

struct fixture {
    char dir[64];
    char path[128];
};

static int setup(void **state)
{
    struct fixture *fx = calloc(1, sizeof *fx);
    if (!fx)
        return -1;
    snprintf(fx->dir, sizeof fx->dir, "/tmp/m2m-store-XXXXXX");
    if (!mkdtemp(fx->dir)) {
        free(fx);
        return -1;
    }
    snprintf(fx->path, sizeof fx->path, "%s/mqtt.db", fx->dir);
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *fx = *state;
    DIR *d = opendir(fx->dir);
    if (d) {
        const struct dirent *e;
        while ((e = readdir(d))) {
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
                continue;
            char p[512];
            snprintf(p, sizeof p, "%s/%s", fx->dir, e->d_name);
            unlink(p);
        }
        closedir(d);
    }
    int rc = rmdir(fx->dir);
    free(fx);
    return rc;
}

static struct m2m_mqtt_store *open_store(const struct fixture *fx, enum m2m_store_sync sync)
{
    struct m2m_mqtt_store *s = NULL;
    char err[256];
    int rc = m2m_sqlite_mqtt_store_open(fx->path, sync, &s, err, sizeof err);
    if (rc)
        fail_msg("open %s: %s (%s)", fx->path, m2m_errname(rc), err);
    assert_non_null(s);
    assert_string_equal(s->ops->name, "sqlite");
    return s;
}

/* ---- a visitor that writes every row it sees as one line of text -------- */

struct transcript {
    char text[16384];
    size_t len;
    int rows;
    int stop_at; /* return 42 from the row with this number (1-based); 0: never */
};

static void add(struct transcript *t, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(t->text + t->len, sizeof t->text - t->len, fmt, ap);
    va_end(ap);
    assert_true(n >= 0 && (size_t)n < sizeof t->text - t->len);
    t->len += (size_t)n;
}

static void add_hex(struct transcript *t, struct m2m_slice v)
{
    assert_non_null(v.p); /* empty slices too: they may go to memcpy */
    add(t, "[");
    for (size_t i = 0; i < v.n; i++)
        add(t, "%02x", v.p[i]);
    add(t, "]");
}

static int row_done(struct transcript *t)
{
    add(t, "\n");
    return ++t->rows == t->stop_at ? 42 : 0;
}

static int on_msg(void *ctx, const struct m2m_store_msg *m)
{
    struct transcript *t = ctx;
    add(t, "msg %llu ", (unsigned long long)m->id);
    add_hex(t, m->topic);
    add_hex(t, m->payload);
    add_hex(t, m->props);
    add(t, " ctx=%u q%u r%d exp=%lld", m->props_ctx, m->qos, m->retain, (long long)m->expire_at);
    return row_done(t);
}

static int on_session(void *ctx, const struct m2m_store_session *s)
{
    struct transcript *t = ctx;
    add(t, "session ");
    add_hex(t, s->client_id);
    add(t, " %u %lld", s->expiry_s, (long long)s->expire_at);
    return row_done(t);
}

static int on_sub(void *ctx, const struct m2m_store_sub *s)
{
    struct transcript *t = ctx;
    add(t, "sub ");
    add_hex(t, s->client_id);
    add_hex(t, s->filter);
    add(t, " q%u f%u id=%u", s->qos, s->flags, s->sub_id);
    return row_done(t);
}

static int on_qent(void *ctx, const struct m2m_store_qent *q)
{
    struct transcript *t = ctx;
    add(t, "qent ");
    add_hex(t, q->client_id);
    add(t, " seq=%llu msg=%llu q%u r%d", (unsigned long long)q->seq, (unsigned long long)q->msg_id, q->qos,
        q->retain);
    return row_done(t);
}

static int on_retained(void *ctx, struct m2m_slice topic, uint64_t msg_id)
{
    struct transcript *t = ctx;
    add(t, "retained ");
    add_hex(t, topic);
    add(t, " %llu", (unsigned long long)msg_id);
    return row_done(t);
}

static const struct m2m_mqtt_store_visitor recorder = {
    .msg = on_msg, .session = on_session, .sub = on_sub, .qent = on_qent, .retained = on_retained};

static void load_into(struct m2m_mqtt_store *s, struct transcript *t)
{
    memset(t, 0, sizeof *t);
    assert_int_equal(s->ops->load(s, &recorder, t), 0);
}

static void reopen_and_expect(const struct fixture *fx, const char *expected)
{
    struct m2m_mqtt_store *s = open_store(fx, M2M_STORE_SYNC_NORMAL);
    struct transcript t;
    load_into(s, &t);
    assert_string_equal(t.text, expected);
    s->ops->close(s);
}

static struct m2m_store_msg msg(uint64_t id, struct m2m_slice topic, struct m2m_slice payload)
{
    return (struct m2m_store_msg){.id = id, .topic = topic, .payload = payload, .qos = 1};
}

static struct m2m_store_qent qent(struct m2m_slice client, uint64_t seq, uint64_t msg_id)
{
    return (struct m2m_store_qent){.client_id = client, .seq = seq, .msg_id = msg_id, .qos = 1};
}

static struct m2m_store_sub sub(struct m2m_slice client, struct m2m_slice filter, uint8_t qos)
{
    return (struct m2m_store_sub){.client_id = client, .filter = filter, .qos = qos};
}

/* ---- round trips and semantics ------------------------------------------ */

static void test_round_trip(void **state)
{
    const struct fixture *fx = *state;
    struct m2m_mqtt_store *s = open_store(fx, M2M_STORE_SYNC_FULL);
    const struct m2m_store_msg m1 = {
        .id = 7,
        .topic = SL("a/b"),
        .payload = SL("hi"),
        .props = SL("\x01\x01"),
        .props_ctx = 3,
        .qos = 2,
        .retain = true,
        .expire_at = 1700000000123,
    };
    const struct m2m_store_msg m2 = msg(UINT64_C(0x7fffffffffffffff), SL("c"), SL("x"));
    const struct m2m_store_session ses = {.client_id = SL("dev1"), .expiry_s = UINT32_MAX, .expire_at = 0};
    const struct m2m_store_session ses2 = {
        .client_id = SL("dev2"), .expiry_s = 60, .expire_at = 1700000060000};
    struct m2m_store_sub sb = sub(SL("dev1"), SL("$share/g/a/#"), 2);
    sb.flags = M2M_STORE_SUB_NO_LOCAL | M2M_STORE_SUB_RAP;
    sb.sub_id = 268435455;
    struct m2m_store_qent q = qent(SL("dev1"), UINT64_C(1) << 40, 7);
    q.qos = 2;
    q.retain = true;

    assert_int_equal(s->ops->msg_put(s, &m1), 0);
    assert_int_equal(s->ops->msg_put(s, &m2), 0);
    assert_int_equal(s->ops->session_put(s, &ses), 0);
    assert_int_equal(s->ops->session_put(s, &ses2), 0);
    assert_int_equal(s->ops->sub_put(s, &sb), 0);
    assert_int_equal(s->ops->qent_put(s, &q), 0);
    assert_int_equal(s->ops->retained_put(s, SL("a/b"), 7), 0);
    assert_int_equal(s->ops->commit(s), 0);
    assert_int_equal(s->ops->commit(s), 0); /* nothing open: still fine */
    s->ops->close(s);

    reopen_and_expect(fx, "msg 7 [612f62][6869][0101] ctx=3 q2 r1 exp=1700000000123\n"
                          "msg 9223372036854775807 [63][78][] ctx=0 q1 r0 exp=0\n"
                          "session [64657631] 4294967295 0\n"
                          "session [64657632] 60 1700000060000\n"
                          "sub [64657631][2473686172652f672f612f23] q2 f3 id=268435455\n"
                          "qent [64657631] seq=1099511627776 msg=7 q2 r1\n"
                          "retained [612f62] 7\n");
}

static void test_replace(void **state)
{
    const struct fixture *fx = *state;
    struct m2m_mqtt_store *s = open_store(fx, M2M_STORE_SYNC_NORMAL);
    struct m2m_store_session ses = {.client_id = SL("c"), .expiry_s = 10, .expire_at = 5};
    assert_int_equal(s->ops->session_put(s, &ses), 0);
    assert_int_equal(s->ops->commit(s), 0);
    ses.expiry_s = 20;
    ses.expire_at = 0;
    assert_int_equal(s->ops->session_put(s, &ses), 0);

    struct m2m_store_sub sb = sub(SL("c"), SL("t/+"), 0);
    assert_int_equal(s->ops->sub_put(s, &sb), 0);
    sb.qos = 1;
    sb.sub_id = 9;
    assert_int_equal(s->ops->sub_put(s, &sb), 0);

    assert_int_equal(s->ops->retained_put(s, SL("t/1"), 1), 0);
    assert_int_equal(s->ops->retained_put(s, SL("t/1"), 2), 0);

    struct m2m_store_qent q = qent(SL("c"), 1, 1);
    assert_int_equal(s->ops->qent_put(s, &q), 0);
    q.msg_id = 2;
    q.qos = 0;
    assert_int_equal(s->ops->qent_put(s, &q), 0);

    /* A message id is never reused: a second put is refused, and the rest
     * of the batch is kept. */
    const struct m2m_store_msg m = msg(2, SL("t/1"), SL("v"));
    assert_int_equal(s->ops->msg_put(s, &m), 0);
    assert_int_equal(s->ops->msg_put(s, &m), M2M_EEXIST);
    assert_int_equal(s->ops->commit(s), 0);
    s->ops->close(s);

    reopen_and_expect(fx, "msg 2 [742f31][76][] ctx=0 q1 r0 exp=0\n"
                          "session [63] 20 0\n"
                          "sub [63][742f2b] q1 f0 id=9\n"
                          "qent [63] seq=1 msg=2 q0 r0\n"
                          "retained [742f31] 2\n");
}

static void test_deletes_and_session_cascade(void **state)
{
    const struct fixture *fx = *state;
    struct m2m_mqtt_store *s = open_store(fx, M2M_STORE_SYNC_NORMAL);
    const struct m2m_slice clients[] = {SL("a"), SL("b")};
    for (size_t i = 0; i < 2; i++) {
        const struct m2m_store_session ses = {.client_id = clients[i], .expiry_s = 1};
        assert_int_equal(s->ops->session_put(s, &ses), 0);
        for (uint64_t n = 1; n <= 2; n++) {
            const struct m2m_store_qent q = qent(clients[i], n, 10 * (i + 1) + n);
            assert_int_equal(s->ops->qent_put(s, &q), 0);
            const struct m2m_store_msg m = msg(10 * (i + 1) + n, SL("t"), SL("p"));
            assert_int_equal(s->ops->msg_put(s, &m), 0);
        }
        struct m2m_store_sub sb = sub(clients[i], SL("t"), 1);
        assert_int_equal(s->ops->sub_put(s, &sb), 0);
        sb.filter = SL("u");
        assert_int_equal(s->ops->sub_put(s, &sb), 0);
    }
    assert_int_equal(s->ops->retained_put(s, SL("t"), 11), 0);
    assert_int_equal(s->ops->retained_put(s, SL("u"), 12), 0);
    assert_int_equal(s->ops->commit(s), 0);

    /* The session goes with its subscriptions and queue; messages stay. */
    assert_int_equal(s->ops->session_del(s, SL("a")), 0);
    assert_int_equal(s->ops->sub_del(s, SL("b"), SL("u")), 0);
    assert_int_equal(s->ops->qent_del(s, SL("b"), 1), 0);
    assert_int_equal(s->ops->msg_del(s, 21), 0);
    assert_int_equal(s->ops->retained_del(s, SL("u")), 0);
    /* Deleting what is not there is not an error. */
    assert_int_equal(s->ops->session_del(s, SL("nobody")), 0);
    assert_int_equal(s->ops->msg_del(s, 999), 0);
    assert_int_equal(s->ops->commit(s), 0);
    s->ops->close(s);

    reopen_and_expect(fx, "msg 11 [74][70][] ctx=0 q1 r0 exp=0\n"
                          "msg 12 [74][70][] ctx=0 q1 r0 exp=0\n"
                          "msg 22 [74][70][] ctx=0 q1 r0 exp=0\n"
                          "session [62] 1 0\n"
                          "sub [62][74] q1 f0 id=0\n"
                          "qent [62] seq=2 msg=22 q1 r0\n"
                          "retained [74] 11\n");
}

static void test_load_order(void **state)
{
    const struct fixture *fx = *state;
    struct m2m_mqtt_store *s = open_store(fx, M2M_STORE_SYNC_NORMAL);
    /* Written in the reverse of the documented order, each table shuffled. */
    assert_int_equal(s->ops->retained_put(s, SL("z"), 3), 0);
    assert_int_equal(s->ops->retained_put(s, SL("y"), 1), 0);
    const uint64_t seqs[] = {300, 2, 1000000, 1};
    for (size_t i = 0; i < 4; i++) {
        const struct m2m_store_qent q = qent(i % 2 ? SL("b") : SL("a"), seqs[i], 1);
        assert_int_equal(s->ops->qent_put(s, &q), 0);
    }
    const struct m2m_store_sub sb = sub(SL("b"), SL("x"), 0), sa = sub(SL("a"), SL("x"), 0);
    assert_int_equal(s->ops->sub_put(s, &sb), 0);
    assert_int_equal(s->ops->sub_put(s, &sa), 0);
    const struct m2m_store_session ses = {.client_id = SL("b")};
    assert_int_equal(s->ops->session_put(s, &ses), 0);
    const struct m2m_store_msg m3 = msg(3, SL("z"), SL("")), m1 = msg(1, SL("y"), SL(""));
    assert_int_equal(s->ops->msg_put(s, &m3), 0);
    assert_int_equal(s->ops->msg_put(s, &m1), 0);

    /* Before the commit, load sees the open batch. */
    const char *expected = "msg 1 [79][][] ctx=0 q1 r0 exp=0\n"
                           "msg 3 [7a][][] ctx=0 q1 r0 exp=0\n"
                           "session [62] 0 0\n"
                           "sub [61][78] q0 f0 id=0\n"
                           "sub [62][78] q0 f0 id=0\n"
                           "qent [61] seq=300 msg=1 q1 r0\n"
                           "qent [61] seq=1000000 msg=1 q1 r0\n"
                           "qent [62] seq=1 msg=1 q1 r0\n"
                           "qent [62] seq=2 msg=1 q1 r0\n"
                           "retained [79] 1\n"
                           "retained [7a] 3\n";
    struct transcript t;
    load_into(s, &t);
    assert_string_equal(t.text, expected);
    assert_int_equal(s->ops->commit(s), 0);
    s->ops->close(s);
    reopen_and_expect(fx, expected);
}

static void test_visitor_abort(void **state)
{
    const struct fixture *fx = *state;
    struct m2m_mqtt_store *s = open_store(fx, M2M_STORE_SYNC_NORMAL);
    for (uint64_t id = 1; id <= 3; id++) {
        const struct m2m_store_msg m = msg(id, SL("t"), SL("p"));
        assert_int_equal(s->ops->msg_put(s, &m), 0);
    }
    const struct m2m_store_session ses = {.client_id = SL("c")};
    assert_int_equal(s->ops->session_put(s, &ses), 0);
    assert_int_equal(s->ops->commit(s), 0);

    struct transcript t = {.stop_at = 2};
    assert_int_equal(s->ops->load(s, &recorder, &t), 42);
    assert_int_equal(t.rows, 2);
    assert_string_equal(t.text, "msg 1 [74][70][] ctx=0 q1 r0 exp=0\n"
                                "msg 2 [74][70][] ctx=0 q1 r0 exp=0\n");

    /* A visitor without some callbacks skips those tables. */
    const struct m2m_mqtt_store_visitor sessions_only = {.session = on_session};
    memset(&t, 0, sizeof t);
    assert_int_equal(s->ops->load(s, &sessions_only, &t), 0);
    assert_string_equal(t.text, "session [63] 0 0\n");

    /* The store is still usable after an aborted load. */
    const struct m2m_store_msg m = msg(4, SL("t"), SL("p"));
    assert_int_equal(s->ops->msg_put(s, &m), 0);
    assert_int_equal(s->ops->commit(s), 0);
    load_into(s, &t);
    assert_int_equal(t.rows, 5);
    s->ops->close(s);
}

struct reentry {
    struct m2m_mqtt_store *s;
    int put_rc, commit_rc, load_rc;
};

static int reenter(void *ctx, const struct m2m_store_session *ses)
{
    struct reentry *r = ctx;
    r->put_rc = r->s->ops->session_put(r->s, ses);
    r->commit_rc = r->s->ops->commit(r->s);
    r->load_rc = r->s->ops->load(r->s, &recorder, NULL);
    return 0;
}

static void test_store_calls_during_load_refused(void **state)
{
    const struct fixture *fx = *state;
    struct m2m_mqtt_store *s = open_store(fx, M2M_STORE_SYNC_NORMAL);
    const struct m2m_store_session ses = {.client_id = SL("c")};
    assert_int_equal(s->ops->session_put(s, &ses), 0);
    assert_int_equal(s->ops->commit(s), 0);
    struct reentry r = {.s = s};
    const struct m2m_mqtt_store_visitor v = {.session = reenter};
    assert_int_equal(s->ops->load(s, &v, &r), 0);
    assert_int_equal(r.put_rc, M2M_ESTATE);
    assert_int_equal(r.commit_rc, M2M_ESTATE);
    assert_int_equal(r.load_rc, M2M_ESTATE);
    s->ops->close(s);
}

static void test_empty_and_binary(void **state)
{
    const struct fixture *fx = *state;
    struct m2m_mqtt_store *s = open_store(fx, M2M_STORE_SYNC_NORMAL);
    /* NUL bytes inside and at the end, and bytes that are not UTF-8. */
    const struct m2m_slice topic = SL("a\0b\0"), payload = SL("\0\xff\x80\0"), client = SL("\0c\xfe");
    struct m2m_store_msg m = {.id = 1, .topic = topic, .payload = payload, .props = EMPTY};
    assert_int_equal(s->ops->msg_put(s, &m), 0);
    /* Empty topic and payload given as {NULL, 0} and as {"", 0}. */
    m = (struct m2m_store_msg){.id = 2, .topic = EMPTY, .payload = SL(""), .props = SL("")};
    assert_int_equal(s->ops->msg_put(s, &m), 0);
    const struct m2m_store_session ses = {.client_id = EMPTY, .expiry_s = 5};
    assert_int_equal(s->ops->session_put(s, &ses), 0);
    const struct m2m_store_session ses2 = {.client_id = client, .expiry_s = 6};
    assert_int_equal(s->ops->session_put(s, &ses2), 0);
    const struct m2m_store_sub sb = sub(client, topic, 1);
    assert_int_equal(s->ops->sub_put(s, &sb), 0);
    const struct m2m_store_qent q = qent(EMPTY, 1, 2);
    assert_int_equal(s->ops->qent_put(s, &q), 0);
    assert_int_equal(s->ops->retained_put(s, topic, 1), 0);
    /* "a" and "a\0" are different keys. */
    assert_int_equal(s->ops->retained_put(s, SL("a"), 2), 0);
    assert_int_equal(s->ops->retained_put(s, SL("a\0"), 2), 0);
    assert_int_equal(s->ops->commit(s), 0);
    s->ops->close(s);

    reopen_and_expect(fx, "msg 1 [61006200][00ff8000][] ctx=0 q0 r0 exp=0\n"
                          "msg 2 [][][] ctx=0 q0 r0 exp=0\n"
                          "session [] 5 0\n"
                          "session [0063fe] 6 0\n"
                          "sub [0063fe][61006200] q1 f0 id=0\n"
                          "qent [] seq=1 msg=2 q1 r0\n"
                          "retained [61] 2\n"
                          "retained [6100] 2\n"
                          "retained [61006200] 1\n");

    /* Deleting by a binary key finds exactly that row. */
    s = open_store(fx, M2M_STORE_SYNC_NORMAL);
    assert_int_equal(s->ops->retained_del(s, SL("a\0")), 0);
    assert_int_equal(s->ops->session_del(s, client), 0);
    assert_int_equal(s->ops->commit(s), 0);
    s->ops->close(s);
    reopen_and_expect(fx, "msg 1 [61006200][00ff8000][] ctx=0 q0 r0 exp=0\n"
                          "msg 2 [][][] ctx=0 q0 r0 exp=0\n"
                          "session [] 5 0\n"
                          "qent [] seq=1 msg=2 q1 r0\n"
                          "retained [61] 2\n"
                          "retained [61006200] 1\n");
}

/* ---- refusing files that are not ours ------------------------------------ */

static void write_file(const char *path, const void *p, size_t n)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(p, 1, n, f), n);
    assert_int_equal(fclose(f), 0);
}

static size_t read_file(const char *path, void *p, size_t cap)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    size_t n = fread(p, 1, cap, f);
    fclose(f);
    return n;
}

static void expect_refused(const struct fixture *fx, int want, const char *reason)
{
    struct m2m_mqtt_store *s = (struct m2m_mqtt_store *)&s; /* must be reset to NULL */
    char err[256] = "";
    assert_int_equal(m2m_sqlite_mqtt_store_open(fx->path, M2M_STORE_SYNC_NORMAL, &s, err, sizeof err), want);
    assert_null(s);
    if (!strstr(err, reason) || !strstr(err, fx->path))
        fail_msg("error message \"%s\" lacks the path or \"%s\"", err, reason);
}

static void test_garbage_file_refused(void **state)
{
    const struct fixture *fx = *state;
    uint8_t junk[8192], after[sizeof junk + 1];
    uint32_t x = 12345;
    for (size_t i = 0; i < sizeof junk; i++) {
        x = x * 1103515245u + 12345u;
        junk[i] = (uint8_t)(x >> 16);
    }
    write_file(fx->path, junk, sizeof junk);
    expect_refused(fx, M2M_ECORRUPT, "not a database");
    /* Refused, not replaced: the bytes are untouched and no WAL appeared. */
    assert_int_equal(read_file(fx->path, after, sizeof after), sizeof junk);
    assert_memory_equal(after, junk, sizeof junk);
    char wal[160];
    snprintf(wal, sizeof wal, "%s-wal", fx->path);
    assert_int_equal(access(wal, F_OK), -1);

    /* A text file is no better. */
    write_file(fx->path, "hello, world\n", 13);
    expect_refused(fx, M2M_ECORRUPT, "not a database");
}

static void sql(const char *path, const char *script)
{
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    char *msg = NULL;
    if (sqlite3_exec(db, script, NULL, NULL, &msg) != SQLITE_OK)
        fail_msg("%s: %s", script, msg);
    sqlite3_close(db);
}

static void test_wrong_schema_refused(void **state)
{
    const struct fixture *fx = *state;
    struct m2m_mqtt_store *s = open_store(fx, M2M_STORE_SYNC_NORMAL);
    const struct m2m_store_session ses = {.client_id = SL("keep")};
    assert_int_equal(s->ops->session_put(s, &ses), 0);
    assert_int_equal(s->ops->commit(s), 0);
    s->ops->close(s);

    sql(fx->path, "PRAGMA user_version=2");
    expect_refused(fx, M2M_ECORRUPT, "schema version 2");
    sql(fx->path, "PRAGMA user_version=0");
    expect_refused(fx, M2M_ECORRUPT, "schema version 0");

    /* Our id and version, but a table that is not ours. */
    sql(fx->path, "PRAGMA user_version=1; DROP TABLE qents; CREATE TABLE qents(x)");
    expect_refused(fx, M2M_ECORRUPT, "schema");

    /* Nothing was recreated: the session row is still there. */
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_open(fx->path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db, "SELECT count(*) FROM sessions", -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    assert_int_equal(sqlite3_column_int(st, 0), 1);
    sqlite3_finalize(st);
    sqlite3_close(db);
}

/* A valid header over a damaged table: PRAGMA quick_check at open finds it. */
static void test_damaged_page_refused(void **state)
{
    const struct fixture *fx = *state;
    struct m2m_mqtt_store *s = open_store(fx, M2M_STORE_SYNC_NORMAL);
    static uint8_t payload[1000];
    for (uint64_t id = 1; id <= 200; id++) {
        const struct m2m_store_msg m = msg(id, SL("t"), (struct m2m_slice){payload, sizeof payload});
        assert_int_equal(s->ops->msg_put(s, &m), 0);
    }
    assert_int_equal(s->ops->commit(s), 0);
    s->ops->close(s); /* the last close checkpoints the WAL into the file */

    const off_t page = 4096;
    int fd = open(fx->path, O_RDWR);
    assert_true(fd >= 0);
    struct stat sb;
    assert_int_equal(fstat(fd, &sb), 0);
    assert_true(sb.st_size >= 20 * page);
    uint8_t junk[512];
    memset(junk, 0xa5, sizeof junk);
    assert_int_equal(pwrite(fd, junk, sizeof junk, 10 * page), (ssize_t)sizeof junk);
    close(fd);
    expect_refused(fx, M2M_ECORRUPT, "integrity check failed");
}

static void test_foreign_database_refused(void **state)
{
    const struct fixture *fx = *state;
    sql(fx->path, "CREATE TABLE notes(body TEXT)");
    expect_refused(fx, M2M_ECORRUPT, "not an m2mkit MQTT store");
}

static void test_open_errors(void **state)
{
    const struct fixture *fx = *state;
    struct m2m_mqtt_store *s = NULL;
    char err[256] = "";
    char path[160];
    snprintf(path, sizeof path, "%s/no/such/dir/mqtt.db", fx->dir);
    assert_int_equal(m2m_sqlite_mqtt_store_open(path, M2M_STORE_SYNC_NORMAL, &s, err, sizeof err), M2M_EIO);
    assert_null(s);
    assert_non_null(strstr(err, path));
    assert_int_equal(m2m_sqlite_mqtt_store_open(fx->path, 0, &s, err, sizeof err), M2M_EINVAL);
    assert_int_equal(m2m_sqlite_mqtt_store_open(NULL, M2M_STORE_SYNC_NORMAL, &s, NULL, 0), M2M_EINVAL);
    assert_null(s);
}

static void test_wal_mode(void **state)
{
    const struct fixture *fx = *state;
    struct m2m_mqtt_store *s = open_store(fx, M2M_STORE_SYNC_FULL);
    s->ops->close(s);
    /* journal_mode=WAL is a property of the file: another connection sees it. */
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_open(fx->path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    assert_string_equal((const char *)sqlite3_column_text(st, 0), "wal");
    sqlite3_finalize(st);
    sqlite3_close(db);
}

/* ---- unfinished and failed batches, crashes ------------------------------ */

static void test_close_rolls_back(void **state)
{
    const struct fixture *fx = *state;
    struct m2m_mqtt_store *s = open_store(fx, M2M_STORE_SYNC_NORMAL);
    const struct m2m_store_msg m1 = msg(1, SL("t"), SL("kept"));
    assert_int_equal(s->ops->msg_put(s, &m1), 0);
    assert_int_equal(s->ops->commit(s), 0);
    const struct m2m_store_msg m2 = msg(2, SL("t"), SL("lost"));
    assert_int_equal(s->ops->msg_put(s, &m2), 0);
    assert_int_equal(s->ops->msg_del(s, 1), 0);
    const struct m2m_store_session ses = {.client_id = SL("lost")};
    assert_int_equal(s->ops->session_put(s, &ses), 0);
    s->ops->close(s);
    reopen_and_expect(fx, "msg 1 [74][6b657074][] ctx=0 q1 r0 exp=0\n");
}

/* A write the file system refuses (here: beyond RLIMIT_FSIZE) loses the
 * whole batch, the next commit reports it, once, and the store goes on. */
static void test_failed_batch_rolls_back(void **state)
{
    const struct fixture *fx = *state;
    struct m2m_mqtt_store *s = open_store(fx, M2M_STORE_SYNC_NORMAL);
    const struct m2m_store_msg m1 = msg(1, SL("t"), SL("kept"));
    assert_int_equal(s->ops->msg_put(s, &m1), 0);
    assert_int_equal(s->ops->commit(s), 0);

    struct rlimit old;
    assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
    void (*old_handler)(int) = signal(SIGXFSZ, SIG_IGN);
    const struct rlimit small = {.rlim_cur = 256 * 1024, .rlim_max = old.rlim_max};
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &small), 0);

    /* Enough data to overflow the page cache, so a write fails. */
    static uint8_t big[64 * 1024];
    memset(big, 'x', sizeof big);
    int rc = 0;
    for (uint64_t id = 100; !rc && id < 100 + 4 * 1024; id++) {
        const struct m2m_store_msg m = msg(id, SL("big"), (struct m2m_slice){big, sizeof big});
        rc = s->ops->msg_put(s, &m);
    }
    /* After a failed write, the rest of the batch is refused too. */
    const struct m2m_store_msg m3 = msg(3, SL("t"), SL("late"));
    int late_rc = s->ops->msg_put(s, &m3);
    int commit_rc = s->ops->commit(s);
    /* Limits are restored before any assert can leave the test. */
    int restore_rc = setrlimit(RLIMIT_FSIZE, &old);
    signal(SIGXFSZ, old_handler);
    assert_int_equal(restore_rc, 0);
    assert_int_equal(rc, M2M_EIO);
    assert_int_equal(late_rc, M2M_EIO);
    assert_int_equal(commit_rc, M2M_EIO);

    assert_int_equal(s->ops->commit(s), 0);
    const struct m2m_store_msg m2 = msg(2, SL("t"), SL("after"));
    assert_int_equal(s->ops->msg_put(s, &m2), 0);
    assert_int_equal(s->ops->commit(s), 0);
    s->ops->close(s);
    reopen_and_expect(fx, "msg 1 [74][6b657074][] ctx=0 q1 r0 exp=0\n"
                          "msg 2 [74][6166746572][] ctx=0 q1 r0 exp=0\n");
}

/* Rows written by the crashing child: message i has a 64-byte payload of
 * byte i, queue entry i points to message i; both counted in order. */
struct crash_rows {
    uint64_t msgs, qents, bad;
};

static int count_msg(void *ctx, const struct m2m_store_msg *m)
{
    struct crash_rows *r = ctx;
    bool ok = m->id == r->msgs + 1 && m->payload.n == 64;
    for (size_t i = 0; ok && i < m->payload.n; i++)
        ok = m->payload.p[i] == (uint8_t)(m->id & 0xff);
    r->msgs++;
    r->bad += !ok;
    return 0;
}

static int count_qent(void *ctx, const struct m2m_store_qent *q)
{
    struct crash_rows *r = ctx;
    r->qents++;
    r->bad += q->seq != r->qents || q->msg_id != q->seq;
    return 0;
}

/* The child commits N rows, writes half a batch more, and is killed
 * without closing; the parent finds every committed row and none of the
 * uncommitted ones. */
static void crash_after_commits(const struct fixture *fx, enum m2m_store_sync sync)
{
    enum { N = 2000, BATCH = 100 };
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        struct m2m_mqtt_store *s = NULL;
        if (m2m_sqlite_mqtt_store_open(fx->path, sync, &s, NULL, 0))
            _exit(2);
        uint8_t payload[64];
        for (uint64_t i = 1; i <= N + BATCH / 2; i++) {
            memset(payload, (int)(i & 0xff), sizeof payload);
            const struct m2m_store_msg m =
                msg(i, SL("crash/test"), (struct m2m_slice){payload, sizeof payload});
            const struct m2m_store_qent q = qent(SL("dev"), i, i);
            if (s->ops->msg_put(s, &m) || s->ops->qent_put(s, &q))
                _exit(3);
            if (i % BATCH == 0 && s->ops->commit(s))
                _exit(4);
        }
        raise(SIGKILL);
        _exit(5);
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    if (!WIFSIGNALED(status) || WTERMSIG(status) != SIGKILL)
        fail_msg("child did not reach the kill: status 0x%x", status);

    char wal[160];
    struct stat sb;
    snprintf(wal, sizeof wal, "%s-wal", fx->path);
    assert_int_equal(stat(wal, &sb), 0); /* the rows are in the WAL, recovered at open */

    struct m2m_mqtt_store *s = open_store(fx, M2M_STORE_SYNC_NORMAL);
    struct crash_rows rows = {0};
    const struct m2m_mqtt_store_visitor v = {.msg = count_msg, .qent = count_qent};
    assert_int_equal(s->ops->load(s, &v, &rows), 0);
    s->ops->close(s);
    assert_int_equal(rows.msgs, N);
    assert_int_equal(rows.qents, N);
    assert_int_equal(rows.bad, 0);
}

static void test_crash_durability_normal(void **state)
{
    crash_after_commits(*state, M2M_STORE_SYNC_NORMAL);
}

static void test_crash_durability_full(void **state)
{
    crash_after_commits(*state, M2M_STORE_SYNC_FULL);
}

#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_round_trip),
        T(test_replace),
        T(test_deletes_and_session_cascade),
        T(test_load_order),
        T(test_visitor_abort),
        T(test_store_calls_during_load_refused),
        T(test_empty_and_binary),
        T(test_garbage_file_refused),
        T(test_wrong_schema_refused),
        T(test_damaged_page_refused),
        T(test_foreign_database_refused),
        T(test_open_errors),
        T(test_wal_mode),
        T(test_close_rolls_back),
        T(test_failed_batch_rolls_back),
        T(test_crash_durability_normal),
        T(test_crash_durability_full),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
