/* The DTLS filter (src/net/dtls.c): client filters and a server filter pass
 * datagrams in memory, each around a fake inner core that records what
 * reaches it and sends what a test queues. Virtual time; the link can drop
 * datagrams and checks every one against the MTU. Throwaway certificates
 * come from the openssl command (the test skips without it). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "net/dtls.h"
#include "vclock.h"

static char dir[64];
static char path_buf[16][320];
static int npath;

static const char *in_dir(const char *name)
{
    char *p = path_buf[npath++ % 16];
    snprintf(p, 320, "%s/%s", dir, name);
    return p;
}

/* ---- a fake inner core ------------------------------------------------------- */

#define MAXQ 16
struct fake {
    struct m2m_addr from[MAXQ];
    uint8_t got[MAXQ][1500];
    size_t got_len[MAXQ];
    int ngot;
    struct m2m_addr to[MAXQ];
    uint8_t out[MAXQ][1500];
    size_t out_len[MAXQ];
    int nout, sent;
};

static int fake_feed(void *core, m2m_time now, const struct m2m_addr *from, const uint8_t *p, size_t n)
{
    struct fake *f = core;
    (void)now;
    assert_true(f->ngot < MAXQ && n <= sizeof f->got[0]);
    f->from[f->ngot] = *from;
    memcpy(f->got[f->ngot], p, n);
    f->got_len[f->ngot++] = n;
    return 0;
}

static int fake_poll(void *core, struct m2m_dgram *out)
{
    struct fake *f = core;
    if (f->sent == f->nout)
        return 0;
    out->peer = f->to[f->sent];
    out->data = f->out[f->sent];
    out->len = f->out_len[f->sent++];
    return 1;
}

static m2m_time fake_next(const void *core)
{
    (void)core;
    return M2M_NEVER;
}

static void fake_timeout(void *core, m2m_time now)
{
    (void)core;
    (void)now;
}

static const struct m2m_wire_ops fake_ops = {"fake", fake_feed, fake_poll, fake_next, fake_timeout};

static void fake_send(struct fake *f, const struct m2m_addr *to, const void *p, size_t n)
{
    assert_true(f->nout < MAXQ);
    f->to[f->nout] = *to;
    memcpy(f->out[f->nout], p, n);
    f->out_len[f->nout++] = n;
}

/* ---- the link: nodes, delivery, virtual time --------------------------------- */

#define NODES 4
struct node {
    struct m2m_dtls *f;
    struct fake inner;
    struct m2m_addr addr;
};

struct net {
    struct node n[NODES];
    int count;
    m2m_time now;
    size_t mtu, biggest;
    int delivered;
    /* drop datagram number k (0-based, counted per direction from node
     * `drop_from`) while k is in [drop_first, drop_last] */
    int drop_from, drop_first, drop_last, seen_from;
    bool drop_all;
    int dropped;
    int seen1;
    uint8_t hello2[2048];
    size_t hello2_len;
};

static struct node *by_addr(struct net *t, const struct m2m_addr *a)
{
    for (int i = 0; i < t->count; i++)
        if (t->n[i].addr.len == a->len && !memcmp(t->n[i].addr.b, a->b, a->len))
            return &t->n[i];
    return NULL;
}

/* Delivers datagrams until the link is quiet. */
static void run(struct net *t)
{
    bool any = true;
    while (any) {
        any = false;
        for (int i = 0; i < t->count; i++) {
            struct node *src = &t->n[i];
            struct m2m_dgram d;
            /* Copy first: the next feed of the same filter frees its output. */
            static uint8_t buf[64][2048];
            static struct m2m_addr to[64];
            static size_t len[64];
            int k = 0;
            while (k < 64 && m2m_dtls_wire_ops.poll_output(src->f, &d)) {
                assert_true(d.len <= t->mtu);
                if (d.len > t->biggest)
                    t->biggest = d.len;
                memcpy(buf[k], d.data, d.len);
                to[k] = d.peer;
                len[k++] = d.len;
            }
            for (int j = 0; j < k; j++) {
                any = true;
                int seq = i == t->drop_from ? t->seen_from++ : -1;
                if (t->drop_all || (seq >= t->drop_first && seq <= t->drop_last)) {
                    t->dropped++;
                    continue;
                }
                struct node *dst = by_addr(t, &to[j]);
                if (!dst)
                    continue;
                t->delivered++;
                if (i == 1 && t->seen1++ == 1) { /* the client's second datagram: the hello with the cookie */
                    memcpy(t->hello2, buf[j], len[j]);
                    t->hello2_len = len[j];
                }
                m2m_dtls_wire_ops.feed(dst->f, t->now, &src->addr, buf[j], len[j]);
            }
        }
    }
}

/* Advances virtual time to `until`, firing every timer on the way. */
static void advance(struct net *t, m2m_time until)
{
    for (;;) {
        m2m_time next = M2M_NEVER;
        for (int i = 0; i < t->count; i++) {
            m2m_time x = m2m_dtls_wire_ops.next_timeout(t->n[i].f);
            if (x < next)
                next = x;
        }
        if (next > until)
            break;
        if (next > t->now)
            t->now = next;
        for (int i = 0; i < t->count; i++)
            if (m2m_dtls_wire_ops.next_timeout(t->n[i].f) <= t->now)
                m2m_dtls_wire_ops.on_timeout(t->n[i].f, t->now);
        run(t);
    }
    t->now = until;
}

static struct m2m_dtls_ctx *server_ctx(bool psk, bool cert, enum m2m_dtls_verify verify)
{
    struct m2m_dtls_ctx_config c = {.server = true, .verify = verify, .session_cache = true};
    if (psk)
        c.psk_file = in_dir("psk.txt");
    if (cert) {
        c.cert_file = in_dir("server.pem");
        c.key_file = in_dir("server.key");
        c.ca_file = in_dir("ca.pem");
    }
    struct m2m_dtls_ctx *ctx;
    char err[200];
    int rc = m2m_dtls_ctx_new(&c, &ctx, err, sizeof err);
    if (rc)
        fail_msg("server ctx: %s", err);
    return ctx;
}

static struct m2m_dtls_ctx *psk_client_ctx(const char *id, const char *key)
{
    struct m2m_dtls_ctx_config c = {.psk_identity = id,
                                    .psk_key = (const uint8_t *)key,
                                    .psk_key_len = strlen(key),
                                    .verify = M2M_DTLS_VERIFY_NONE};
    struct m2m_dtls_ctx *ctx;
    char err[200];
    if (m2m_dtls_ctx_new(&c, &ctx, err, sizeof err))
        fail_msg("client ctx: %s", err);
    return ctx;
}

static struct m2m_dtls_ctx *cert_client_ctx(const char *cert, const char *key, const char *ca)
{
    struct m2m_dtls_ctx_config c = {.cert_file = cert ? in_dir(cert) : NULL,
                                    .key_file = key ? in_dir(key) : NULL,
                                    .ca_file = in_dir(ca),
                                    .verify = M2M_DTLS_VERIFY_REQUIRE,
                                    .server_name = "localhost"};
    struct m2m_dtls_ctx *ctx;
    char err[200];
    if (m2m_dtls_ctx_new(&c, &ctx, err, sizeof err))
        fail_msg("client ctx: %s", err);
    return ctx;
}

static void base_cfg(struct m2m_dtls_config *c, uint8_t seed)
{
    m2m_dtls_config_default(c);
    memset(c->cookie_secret, seed, sizeof c->cookie_secret);
    c->hash_key = 0x1234 + seed;
}

/* Node 0 is the server; nodes 1.. are clients (not yet connected). */
static void net_init(struct net *t, struct m2m_dtls_ctx *sctx, struct m2m_dtls_ctx *cctx, int clients,
                     const struct m2m_dtls_config *scfg_in)
{
    memset(t, 0, sizeof *t);
    t->now = 1000;
    t->drop_from = -1;
    t->drop_first = 1;
    t->drop_last = 0;
    struct m2m_dtls_config scfg;
    if (scfg_in)
        scfg = *scfg_in;
    else
        base_cfg(&scfg, 7);
    t->mtu = scfg.mtu;
    t->count = 1 + clients;
    for (int i = 0; i < t->count; i++) {
        struct node *n = &t->n[i];
        n->addr = test_addr((uint8_t)(10 + i));
        struct m2m_dtls_config c = scfg;
        n->f = m2m_dtls_new(i == 0 ? sctx : cctx, &c, &fake_ops, &n->inner);
        assert_non_null(n->f);
    }
}

static void net_free(struct net *t)
{
    for (int i = 0; i < t->count; i++)
        m2m_dtls_free(t->n[i].f);
}

static void connect_client(struct net *t, int i)
{
    assert_int_equal(m2m_dtls_connect(t->n[i].f, t->now, &t->n[0].addr), 0);
    run(t);
}

static enum m2m_dtls_state state_of(struct net *t, int i, struct m2m_dtls_peer_info *info)
{
    const struct m2m_addr *peer = i == 0 ? &t->n[1].addr : &t->n[0].addr;
    return m2m_dtls_peer(t->n[i].f, peer, info);
}

/* Application data both ways over an established session. */
static void exchange(struct net *t, int client)
{
    struct node *c = &t->n[client], *s = &t->n[0];
    int sgot = s->inner.ngot, cgot = c->inner.ngot;
    fake_send(&c->inner, &s->addr, "GET /temp", 9);
    run(t);
    assert_int_equal(s->inner.ngot, sgot + 1);
    assert_memory_equal(s->inner.got[sgot], "GET /temp", 9);
    assert_memory_equal(s->inner.from[sgot].b, c->addr.b, c->addr.len);
    fake_send(&s->inner, &c->addr, "21.5 C", 6);
    run(t);
    assert_int_equal(c->inner.ngot, cgot + 1);
    assert_memory_equal(c->inner.got[cgot], "21.5 C", 6);
}

static void print_meter(const char *what, const struct m2m_dtls_meter *m)
{
    printf("# %-28s %-24s hs_out=%4llu hs_in=%4llu flights out/in=%u/%u dgrams out/in=%u/%u\n", what,
           m->cipher, (unsigned long long)m->hs_out, (unsigned long long)m->hs_in, m->hs_flights_out,
           m->hs_flights_in, m->dgrams_out, m->dgrams_in);
}

/* ---- tests ----------------------------------------------------------------- */

static void psk_handshake(void **state)
{
    (void)state;
    struct m2m_dtls_ctx *sctx = server_ctx(true, false, M2M_DTLS_VERIFY_NONE);
    struct m2m_dtls_ctx *cctx = psk_client_ctx("device-7", "secret-key-of-device-7");
    struct net t;
    net_init(&t, sctx, cctx, 1, NULL);
    connect_client(&t, 1);
    struct m2m_dtls_peer_info ci, si;
    assert_int_equal(state_of(&t, 1, &ci), M2M_DTLS_ESTABLISHED);
    assert_int_equal(state_of(&t, 0, &si), M2M_DTLS_ESTABLISHED);
    assert_string_equal(si.identity, "device-7");
    assert_string_equal(ci.meter.version, "DTLSv1.2");
    assert_string_equal(ci.meter.cipher, "PSK-AES128-CCM8");
    /* With the cookie exchange: ClientHello, HelloVerifyRequest, ClientHello
     * again, then the two flights of each side: 3 round trips. */
    assert_int_equal(ci.meter.hs_flights_out, 3);
    assert_int_equal(ci.meter.hs_flights_in, 3);
    assert_int_equal(m2m_dtls_stats(t.n[0].f)->cookies_sent, 1);
    assert_int_equal(m2m_dtls_stats(t.n[0].f)->cookies_ok, 1);
    print_meter("PSK, cookie", &ci.meter);
    exchange(&t, 1);
    state_of(&t, 1, &ci);
    state_of(&t, 0, &si);
    assert_int_equal(ci.meter.app_out, 9);
    assert_int_equal(ci.meter.app_in, 6);
    assert_int_equal(si.meter.app_in, 9);
    /* CCM_8: 13 header + 8 explicit nonce + 8 tag around the plaintext. */
    assert_int_equal(ci.meter.wire_out - ci.meter.hs_out, 9 + 29);
    net_free(&t);
    m2m_dtls_ctx_free(cctx);
    m2m_dtls_ctx_free(sctx);
}

static void psk_without_cookie(void **state)
{
    (void)state;
    struct m2m_dtls_ctx *sctx = server_ctx(true, false, M2M_DTLS_VERIFY_NONE);
    struct m2m_dtls_ctx *cctx = psk_client_ctx("device-7", "secret-key-of-device-7");
    struct m2m_dtls_config scfg;
    base_cfg(&scfg, 7);
    scfg.no_cookie = true;
    struct net t;
    net_init(&t, sctx, cctx, 1, &scfg);
    connect_client(&t, 1);
    struct m2m_dtls_peer_info ci;
    assert_int_equal(state_of(&t, 1, &ci), M2M_DTLS_ESTABLISHED);
    assert_int_equal(ci.meter.hs_flights_out, 2);
    assert_int_equal(ci.meter.hs_flights_in, 2);
    assert_int_equal(m2m_dtls_stats(t.n[0].f)->cookies_sent, 0);
    print_meter("PSK, no cookie", &ci.meter);
    exchange(&t, 1);
    net_free(&t);
    m2m_dtls_ctx_free(cctx);
    m2m_dtls_ctx_free(sctx);
}

static void cert_handshake_common(bool cookie, size_t mtu)
{
    struct m2m_dtls_ctx *sctx = server_ctx(false, true, M2M_DTLS_VERIFY_REQUIRE);
    struct m2m_dtls_ctx *cctx = cert_client_ctx("client.pem", "client.key", "ca.pem");
    struct m2m_dtls_config scfg;
    base_cfg(&scfg, 3);
    scfg.no_cookie = !cookie;
    scfg.mtu = mtu;
    struct net t;
    net_init(&t, sctx, cctx, 1, &scfg);
    connect_client(&t, 1);
    struct m2m_dtls_peer_info ci, si;
    assert_int_equal(state_of(&t, 1, &ci), M2M_DTLS_ESTABLISHED);
    assert_int_equal(state_of(&t, 0, &si), M2M_DTLS_ESTABLISHED);
    assert_string_equal(si.identity, "device-1");
    assert_string_equal(ci.meter.cipher, "ECDHE-ECDSA-AES128-CCM8");
    assert_int_equal(ci.meter.hs_flights_out, cookie ? 3 : 2);
    assert_true(t.biggest <= mtu);
    char what[64];
    snprintf(what, sizeof what, "ECDSA mTLS, %s, mtu %zu", cookie ? "cookie" : "no cookie", mtu);
    print_meter(what, &ci.meter);
    exchange(&t, 1);
    net_free(&t);
    m2m_dtls_ctx_free(cctx);
    m2m_dtls_ctx_free(sctx);
}

static void cert_handshake(void **state)
{
    (void)state;
    cert_handshake_common(true, 1280);
    cert_handshake_common(false, 1280);
}

/* A small MTU cuts the certificate flight into several datagrams; every
 * datagram on the link is checked against it. */
static void mtu_respected(void **state)
{
    (void)state;
    cert_handshake_common(true, 256);
}

static void server_cert_only(void **state)
{
    (void)state;
    struct m2m_dtls_ctx *sctx = server_ctx(true, true, M2M_DTLS_VERIFY_OPTIONAL);
    struct m2m_dtls_ctx *cctx = cert_client_ctx(NULL, NULL, "ca.pem");
    struct net t;
    net_init(&t, sctx, cctx, 1, NULL);
    connect_client(&t, 1);
    struct m2m_dtls_peer_info si, ci;
    assert_int_equal(state_of(&t, 0, &si), M2M_DTLS_ESTABLISHED);
    assert_string_equal(si.identity, "");
    state_of(&t, 1, &ci);
    assert_int_equal(ci.meter.hs_flights_out, 3);
    print_meter("ECDSA server cert, cookie", &ci.meter);
    exchange(&t, 1);
    net_free(&t);
    m2m_dtls_ctx_free(cctx);
    m2m_dtls_ctx_free(sctx);
}

static void wrong_psk_refused(void **state)
{
    (void)state;
    struct m2m_dtls_ctx *sctx = server_ctx(true, false, M2M_DTLS_VERIFY_NONE);
    struct m2m_dtls_ctx *cctx = psk_client_ctx("device-7", "not-the-right-key");
    struct m2m_dtls_ctx *uctx = psk_client_ctx("stranger", "secret-key-of-device-7");
    struct net t;
    net_init(&t, sctx, cctx, 1, NULL);
    connect_client(&t, 1);
    /* DTLS drops what it cannot decrypt silently (RFC 6347 §4.1.2.7): the
     * server never answers the client's Finished, and both give up. */
    struct m2m_dtls_peer_info ci;
    assert_int_equal(state_of(&t, 1, &ci), M2M_DTLS_HANDSHAKE);
    advance(&t, t.now + 10000);
    assert_int_equal(state_of(&t, 1, &ci), M2M_DTLS_FAILED);
    assert_non_null(strstr(ci.reason, "wrong PSK"));
    assert_int_equal(m2m_dtls_peer_count(t.n[0].f), 0);
    assert_int_equal(m2m_dtls_stats(t.n[0].f)->handshakes, 0);
    assert_int_equal(m2m_dtls_stats(t.n[0].f)->handshake_failures, 1);
    /* Nothing reaches the inner cores. */
    fake_send(&t.n[1].inner, &t.n[0].addr, "x", 1);
    run(&t);
    assert_int_equal(t.n[0].inner.ngot, 0);
    net_free(&t);

    /* An unknown identity is refused the same way. */
    net_init(&t, sctx, uctx, 1, NULL);
    connect_client(&t, 1);
    advance(&t, t.now + 10000);
    assert_int_equal(state_of(&t, 1, &ci), M2M_DTLS_FAILED);
    assert_int_equal(m2m_dtls_peer_count(t.n[0].f), 0);
    net_free(&t);
    m2m_dtls_ctx_free(uctx);
    m2m_dtls_ctx_free(cctx);
    m2m_dtls_ctx_free(sctx);
}

static void unknown_ca_refused(void **state)
{
    (void)state;
    /* A client certificate from another CA. */
    struct m2m_dtls_ctx *sctx = server_ctx(false, true, M2M_DTLS_VERIFY_REQUIRE);
    struct m2m_dtls_ctx *cctx = cert_client_ctx("rogue-client.pem", "rogue-client.key", "ca.pem");
    struct net t;
    net_init(&t, sctx, cctx, 1, NULL);
    connect_client(&t, 1);
    struct m2m_dtls_peer_info ci;
    assert_int_equal(state_of(&t, 1, &ci), M2M_DTLS_FAILED);
    assert_int_equal(m2m_dtls_peer_count(t.n[0].f), 0);
    net_free(&t);
    m2m_dtls_ctx_free(cctx);

    /* The client does not trust the server's CA. */
    cctx = cert_client_ctx("client.pem", "client.key", "rogue-ca.pem");
    net_init(&t, sctx, cctx, 1, NULL);
    connect_client(&t, 1);
    assert_int_equal(state_of(&t, 1, &ci), M2M_DTLS_FAILED);
    assert_non_null(strstr(ci.reason, "certificate"));
    assert_int_equal(m2m_dtls_peer_count(t.n[0].f), 0);
    net_free(&t);
    m2m_dtls_ctx_free(cctx);

    /* No client certificate where one is required. */
    cctx = cert_client_ctx(NULL, NULL, "ca.pem");
    net_init(&t, sctx, cctx, 1, NULL);
    connect_client(&t, 1);
    assert_int_equal(state_of(&t, 1, &ci), M2M_DTLS_FAILED);
    assert_int_equal(m2m_dtls_peer_count(t.n[0].f), 0);
    net_free(&t);
    m2m_dtls_ctx_free(cctx);
    m2m_dtls_ctx_free(sctx);
}

/* A device certificate from the right CA whose validity ended yesterday
 * (the openssl command of Debian 12 cannot backdate one). */
static void make_expired_cert(void)
{
    FILE *f = fopen(in_dir("ca.key"), "r");
    assert_non_null(f);
    EVP_PKEY *ca_key = PEM_read_PrivateKey(f, NULL, NULL, NULL);
    fclose(f);
    f = fopen(in_dir("ca.pem"), "r");
    assert_non_null(f);
    X509 *ca = PEM_read_X509(f, NULL, NULL, NULL);
    fclose(f);
    EVP_PKEY *key = EVP_EC_gen("P-256");
    X509 *x = X509_new();
    assert_true(ca_key && ca && key && x);
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 4242);
    X509_gmtime_adj(X509_getm_notBefore(x), -2 * 86400);
    X509_gmtime_adj(X509_getm_notAfter(x), -86400);
    X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_ASC,
                               (const unsigned char *)"old-device", -1, -1, 0);
    X509_set_issuer_name(x, X509_get_subject_name(ca));
    X509_set_pubkey(x, key);
    assert_true(X509_sign(x, ca_key, EVP_sha256()) > 0);
    f = fopen(in_dir("expired.pem"), "w");
    PEM_write_X509(f, x);
    fclose(f);
    f = fopen(in_dir("expired.key"), "w");
    PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL);
    fclose(f);
    X509_free(x);
    X509_free(ca);
    EVP_PKEY_free(key);
    EVP_PKEY_free(ca_key);
}

static void expired_cert_refused(void **state)
{
    (void)state;
    make_expired_cert();
    struct m2m_dtls_ctx *sctx = server_ctx(false, true, M2M_DTLS_VERIFY_OPTIONAL);
    struct m2m_dtls_ctx *cctx = cert_client_ctx("expired.pem", "expired.key", "ca.pem");
    struct net t;
    net_init(&t, sctx, cctx, 1, NULL);
    connect_client(&t, 1);
    struct m2m_dtls_peer_info ci;
    assert_int_equal(state_of(&t, 1, &ci), M2M_DTLS_FAILED);
    assert_non_null(strstr(ci.reason, "expired"));
    assert_int_equal(m2m_dtls_peer_count(t.n[0].f), 0);
    assert_int_equal(m2m_dtls_stats(t.n[0].f)->handshake_failures, 1);
    net_free(&t);
    m2m_dtls_ctx_free(cctx);
    m2m_dtls_ctx_free(sctx);
}

/* A ClientHello without a cookie is answered with a HelloVerifyRequest and
 * leaves no state, however many come from however many addresses. */
static void cookie_exchange_stateless(void **state)
{
    (void)state;
    struct m2m_dtls_ctx *sctx = server_ctx(true, false, M2M_DTLS_VERIFY_NONE);
    struct m2m_dtls_ctx *cctx = psk_client_ctx("device-7", "secret-key-of-device-7");
    struct net t;
    net_init(&t, sctx, cctx, 1, NULL);
    assert_int_equal(m2m_dtls_connect(t.n[1].f, t.now, &t.n[0].addr), 0);
    struct m2m_dgram d;
    assert_true(m2m_dtls_wire_ops.poll_output(t.n[1].f, &d));
    uint8_t hello[1500];
    size_t n = d.len;
    memcpy(hello, d.data, n);
    assert_int_equal(hello[0], 22);                   /* handshake */
    assert_int_equal(hello[13], 1);                   /* ClientHello */
    assert_int_equal(hello[13 + 12 + 2 + 32 + 1], 0); /* no session id, then an empty cookie */
    for (int i = 0; i < 200; i++) {
        struct m2m_addr from = test_addr((uint8_t)(100 + i % 50));
        from.b[0] = (uint8_t)i;
        m2m_dtls_wire_ops.feed(t.n[0].f, t.now, &from, hello, n);
        assert_true(m2m_dtls_wire_ops.poll_output(t.n[0].f, &d));
        assert_int_equal(d.data[0], 22);
        assert_int_equal(d.data[13], 3); /* HelloVerifyRequest */
        assert_memory_equal(d.peer.b, from.b, from.len);
        assert_false(m2m_dtls_wire_ops.poll_output(t.n[0].f, &d));
        assert_int_equal(m2m_dtls_peer_count(t.n[0].f), 0);
    }
    assert_int_equal(m2m_dtls_wire_ops.next_timeout(t.n[0].f), M2M_NEVER);
    assert_int_equal(m2m_dtls_stats(t.n[0].f)->cookies_sent, 200);
    /* A hello replayed from another address with a cookie made for the real
     * client gets a new HelloVerifyRequest, not a session. */
    m2m_dtls_wire_ops.feed(t.n[0].f, t.now, &t.n[1].addr, hello, n);
    run(&t); /* the real client completes */
    assert_int_equal(state_of(&t, 1, NULL), M2M_DTLS_ESTABLISHED);
    assert_int_equal(m2m_dtls_peer_count(t.n[0].f), 1);
    /* Garbage and non-hello records from strangers are dropped silently. */
    uint8_t junk[40] = {23, 0xfe, 0xfd};
    m2m_dtls_wire_ops.feed(t.n[0].f, t.now, &t.n[1].addr, junk, 0);
    m2m_dtls_wire_ops.feed(t.n[0].f, t.now, &t.n[1].addr, junk, 5);
    m2m_dtls_wire_ops.feed(t.n[0].f, t.now, &t.n[1].addr, junk, sizeof junk);
    struct m2m_addr stranger = test_addr(99);
    m2m_dtls_wire_ops.feed(t.n[0].f, t.now, &stranger, junk, sizeof junk);
    assert_false(m2m_dtls_wire_ops.poll_output(t.n[0].f, &d));
    assert_int_equal(m2m_dtls_peer_count(t.n[0].f), 1);
    net_free(&t);
    m2m_dtls_ctx_free(cctx);
    m2m_dtls_ctx_free(sctx);
}

/* A forged cookie (valid for another address) does not open a session. */
static void cookie_bound_to_address(void **state)
{
    (void)state;
    struct m2m_dtls_ctx *sctx = server_ctx(true, false, M2M_DTLS_VERIFY_NONE);
    struct m2m_dtls_ctx *cctx = psk_client_ctx("device-7", "secret-key-of-device-7");
    struct net t;
    net_init(&t, sctx, cctx, 1, NULL);
    assert_int_equal(m2m_dtls_connect(t.n[1].f, t.now, &t.n[0].addr), 0);
    struct m2m_dgram d;
    uint8_t buf[1500];
    assert_true(m2m_dtls_wire_ops.poll_output(t.n[1].f, &d));
    memcpy(buf, d.data, d.len);
    m2m_dtls_wire_ops.feed(t.n[0].f, t.now, &t.n[1].addr, buf, d.len);
    assert_true(m2m_dtls_wire_ops.poll_output(t.n[0].f, &d)); /* HVR */
    memcpy(buf, d.data, d.len);
    m2m_dtls_wire_ops.feed(t.n[1].f, t.now, &t.n[0].addr, buf, d.len);
    assert_true(m2m_dtls_wire_ops.poll_output(t.n[1].f, &d)); /* ClientHello with cookie */
    memcpy(buf, d.data, d.len);
    size_t n = d.len;
    struct m2m_addr spoofed = test_addr(77);
    m2m_dtls_wire_ops.feed(t.n[0].f, t.now, &spoofed, buf, n);
    assert_int_equal(m2m_dtls_peer_count(t.n[0].f), 0);
    assert_int_equal(m2m_dtls_stats(t.n[0].f)->cookies_ok, 0);
    m2m_dtls_wire_ops.feed(t.n[0].f, t.now, &t.n[1].addr, buf, n);
    assert_int_equal(m2m_dtls_peer_count(t.n[0].f), 1);
    net_free(&t);
    m2m_dtls_ctx_free(cctx);
    m2m_dtls_ctx_free(sctx);
}

/* Lost flights are sent again on the filter's timer, in virtual time. */
static void retransmission(void **state)
{
    (void)state;
    struct m2m_dtls_ctx *sctx = server_ctx(false, true, M2M_DTLS_VERIFY_REQUIRE);
    struct m2m_dtls_ctx *cctx = cert_client_ctx("client.pem", "client.key", "ca.pem");
    struct net t;
    net_init(&t, sctx, cctx, 1, NULL);
    /* Server -> client: lose the HelloVerifyRequest (datagram 0), then the
     * whole certificate flight (1, and the rest of it). */
    t.drop_from = 0;
    t.drop_first = 0;
    t.drop_last = 0;
    connect_client(&t, 1);
    assert_int_equal(state_of(&t, 1, NULL), M2M_DTLS_HANDSHAKE);
    assert_int_equal(t.dropped, 1);
    m2m_time first = m2m_dtls_wire_ops.next_timeout(t.n[1].f);
    assert_int_equal(first, t.now + 1000);
    advance(&t, t.now + 999);
    assert_int_equal(state_of(&t, 1, NULL), M2M_DTLS_HANDSHAKE);
    t.drop_first = 1;
    t.drop_last = 2; /* the server's flight, in 1 or more datagrams: lose its first two */
    advance(&t, t.now + 1);
    advance(&t, t.now + 10000);
    struct m2m_dtls_peer_info ci, si;
    assert_int_equal(state_of(&t, 1, &ci), M2M_DTLS_ESTABLISHED);
    assert_int_equal(state_of(&t, 0, &si), M2M_DTLS_ESTABLISHED);
    assert_true(ci.meter.retransmits >= 2);
    assert_true(t.dropped >= 2);
    exchange(&t, 1);
    net_free(&t);
    m2m_dtls_ctx_free(cctx);
    m2m_dtls_ctx_free(sctx);
}

/* The server's last flight (ChangeCipherSpec, Finished) is lost: the
 * client sends its flight again and the established server answers it. */
static void lost_final_flight(void **state)
{
    (void)state;
    struct m2m_dtls_ctx *sctx = server_ctx(true, false, M2M_DTLS_VERIFY_NONE);
    struct m2m_dtls_ctx *cctx = psk_client_ctx("device-7", "secret-key-of-device-7");
    struct net t;
    net_init(&t, sctx, cctx, 1, NULL);
    t.drop_from = 0;
    t.drop_first = 2; /* HelloVerifyRequest, ServerHello..Done, then the final flight */
    t.drop_last = 2;
    connect_client(&t, 1);
    assert_int_equal(t.dropped, 1);
    assert_int_equal(state_of(&t, 0, NULL), M2M_DTLS_ESTABLISHED);
    assert_int_equal(state_of(&t, 1, NULL), M2M_DTLS_HANDSHAKE);
    advance(&t, t.now + 1000);
    struct m2m_dtls_peer_info ci;
    assert_int_equal(state_of(&t, 1, &ci), M2M_DTLS_ESTABLISHED);
    assert_int_equal(ci.meter.retransmits, 1);
    exchange(&t, 1);
    net_free(&t);
    m2m_dtls_ctx_free(cctx);
    m2m_dtls_ctx_free(sctx);
}

static void handshake_timeout(void **state)
{
    (void)state;
    struct m2m_dtls_ctx *sctx = server_ctx(true, false, M2M_DTLS_VERIFY_NONE);
    struct m2m_dtls_ctx *cctx = psk_client_ctx("device-7", "secret-key-of-device-7");
    struct m2m_dtls_config scfg;
    base_cfg(&scfg, 7);
    scfg.handshake_timeout_ms = 5000;
    struct net t;
    net_init(&t, sctx, cctx, 1, &scfg);
    /* The client sends its hello twice (the second with the cookie), then
     * falls silent: the server holds a half-open session. */
    t.drop_from = 1;
    t.drop_first = 2;
    t.drop_last = 1000;
    connect_client(&t, 1);
    assert_int_equal(m2m_dtls_peer_count(t.n[0].f), 1);
    advance(&t, t.now + 4999);
    assert_int_equal(m2m_dtls_peer_count(t.n[0].f), 1);
    advance(&t, t.now + 1);
    assert_int_equal(m2m_dtls_peer_count(t.n[0].f), 0);
    assert_int_equal(m2m_dtls_stats(t.n[0].f)->handshake_timeouts, 1);
    struct m2m_dtls_peer_info ci;
    assert_int_equal(state_of(&t, 1, &ci), M2M_DTLS_FAILED);
    assert_non_null(strstr(ci.reason, "handshake timeout"));
    net_free(&t);
    m2m_dtls_ctx_free(cctx);
    m2m_dtls_ctx_free(sctx);
}

static void peer_cap(void **state)
{
    (void)state;
    struct m2m_dtls_ctx *sctx = server_ctx(true, false, M2M_DTLS_VERIFY_NONE);
    struct m2m_dtls_ctx *cctx = psk_client_ctx("device-7", "secret-key-of-device-7");
    struct m2m_dtls_config scfg;
    base_cfg(&scfg, 7);
    scfg.max_peers = 2;
    struct net t;
    net_init(&t, sctx, cctx, 3, &scfg);
    connect_client(&t, 1);
    connect_client(&t, 2);
    connect_client(&t, 3);
    assert_int_equal(m2m_dtls_peer_count(t.n[0].f), 2);
    assert_int_equal(m2m_dtls_peer(t.n[3].f, &t.n[0].addr, NULL), M2M_DTLS_HANDSHAKE);
    assert_true(m2m_dtls_stats(t.n[0].f)->refused_full >= 1);
    advance(&t, t.now + 20000);
    assert_int_equal(m2m_dtls_peer(t.n[3].f, &t.n[0].addr, NULL), M2M_DTLS_FAILED);
    /* One leaves politely: the next one gets in. */
    assert_int_equal(m2m_dtls_close(t.n[1].f, &t.n[0].addr), 0);
    run(&t);
    assert_int_equal(m2m_dtls_peer_count(t.n[0].f), 1);
    net_free(&t);
    net_init(&t, sctx, cctx, 0, &scfg);
    net_free(&t);
    m2m_dtls_ctx_free(cctx);
    m2m_dtls_ctx_free(sctx);
}

static void idle_timeout_and_close_notify(void **state)
{
    (void)state;
    struct m2m_dtls_ctx *sctx = server_ctx(true, false, M2M_DTLS_VERIFY_NONE);
    struct m2m_dtls_ctx *cctx = psk_client_ctx("device-7", "secret-key-of-device-7");
    struct m2m_dtls_config scfg;
    base_cfg(&scfg, 7);
    scfg.idle_timeout_ms = 8000;
    struct net t;
    net_init(&t, sctx, cctx, 1, &scfg);
    /* The client idles out later than the server. */
    m2m_dtls_free(t.n[1].f);
    struct m2m_dtls_config ccfg = scfg;
    ccfg.idle_timeout_ms = 60000;
    t.n[1].f = m2m_dtls_new(cctx, &ccfg, &fake_ops, &t.n[1].inner);
    connect_client(&t, 1);
    exchange(&t, 1);
    advance(&t, t.now + 7000);
    assert_int_equal(m2m_dtls_peer_count(t.n[0].f), 1);
    exchange(&t, 1); /* traffic keeps it alive */
    advance(&t, t.now + 7000);
    assert_int_equal(m2m_dtls_peer_count(t.n[0].f), 1);
    advance(&t, t.now + 3000);
    assert_int_equal(m2m_dtls_peer_count(t.n[0].f), 0);
    assert_int_equal(m2m_dtls_stats(t.n[0].f)->idle_closed, 1);
    /* The server's close_notify told the client. */
    struct m2m_dtls_peer_info ci;
    assert_int_equal(state_of(&t, 1, &ci), M2M_DTLS_FAILED);
    assert_non_null(strstr(ci.reason, "close_notify"));
    assert_int_equal(m2m_dtls_wire_ops.next_timeout(t.n[0].f), M2M_NEVER);
    net_free(&t);
    m2m_dtls_ctx_free(cctx);
    m2m_dtls_ctx_free(sctx);
}

/* RFC 6347 §4.2.8: a device that reboots and starts over from the same
 * address replaces its old session once its cookie checks out. */
static void rebooted_client(void **state)
{
    (void)state;
    struct m2m_dtls_ctx *sctx = server_ctx(true, false, M2M_DTLS_VERIFY_NONE);
    struct m2m_dtls_ctx *cctx = psk_client_ctx("device-7", "secret-key-of-device-7");
    struct net t;
    net_init(&t, sctx, cctx, 1, NULL);
    connect_client(&t, 1);
    exchange(&t, 1);
    /* A replayed copy of the hello that opened the session is ignored. */
    assert_int_equal(m2m_dtls_stats(t.n[0].f)->handshakes, 1);
    assert_true(t.hello2_len > 60 && t.hello2[13] == 1); /* a ClientHello */
    m2m_dtls_wire_ops.feed(t.n[0].f, t.now, &t.n[1].addr, t.hello2, t.hello2_len);
    run(&t);
    assert_int_equal(m2m_dtls_stats(t.n[0].f)->handshakes, 1);
    exchange(&t, 1);
    struct m2m_dtls_config c;
    base_cfg(&c, 7);
    m2m_dtls_free(t.n[1].f);
    t.n[1].f = m2m_dtls_new(cctx, &c, &fake_ops, &t.n[1].inner);
    connect_client(&t, 1);
    assert_int_equal(state_of(&t, 1, NULL), M2M_DTLS_ESTABLISHED);
    assert_int_equal(m2m_dtls_peer_count(t.n[0].f), 1);
    assert_int_equal(m2m_dtls_stats(t.n[0].f)->handshakes, 2);
    exchange(&t, 1);
    net_free(&t);
    m2m_dtls_ctx_free(cctx);
    m2m_dtls_ctx_free(sctx);
}

/* A client that comes back with the same context resumes its session:
 * one flight less from the server, no key exchange. */
static void session_resumption(void **state)
{
    (void)state;
    struct m2m_dtls_ctx *sctx = server_ctx(false, true, M2M_DTLS_VERIFY_REQUIRE);
    struct m2m_dtls_ctx *cctx = cert_client_ctx("client.pem", "client.key", "ca.pem");
    struct net t;
    net_init(&t, sctx, cctx, 1, NULL);
    connect_client(&t, 1);
    struct m2m_dtls_peer_info full, again, si;
    assert_int_equal(state_of(&t, 1, &full), M2M_DTLS_ESTABLISHED);
    assert_false(full.meter.resumed);
    assert_int_equal(m2m_dtls_close(t.n[1].f, &t.n[0].addr), 0);
    run(&t);
    assert_int_equal(m2m_dtls_peer_count(t.n[0].f), 0);
    struct m2m_dtls_config c;
    base_cfg(&c, 7);
    m2m_dtls_free(t.n[1].f);
    t.n[1].f = m2m_dtls_new(cctx, &c, &fake_ops, &t.n[1].inner);
    connect_client(&t, 1);
    assert_int_equal(state_of(&t, 1, &again), M2M_DTLS_ESTABLISHED);
    assert_true(again.meter.resumed);
    assert_int_equal(state_of(&t, 0, &si), M2M_DTLS_ESTABLISHED);
    assert_string_equal(si.identity, "device-1");
    assert_true(again.meter.hs_in + again.meter.hs_out < (full.meter.hs_in + full.meter.hs_out) / 3);
    print_meter("ECDSA mTLS resumed, cookie", &again.meter);
    exchange(&t, 1);
    net_free(&t);
    m2m_dtls_ctx_free(cctx);
    m2m_dtls_ctx_free(sctx);
}

/* A client's request sent before the handshake ends waits for it. */
static void client_data_waits_for_handshake(void **state)
{
    (void)state;
    struct m2m_dtls_ctx *sctx = server_ctx(true, false, M2M_DTLS_VERIFY_NONE);
    struct m2m_dtls_ctx *cctx = psk_client_ctx("device-7", "secret-key-of-device-7");
    struct net t;
    net_init(&t, sctx, cctx, 1, NULL);
    assert_int_equal(m2m_dtls_connect(t.n[1].f, t.now, &t.n[0].addr), 0);
    fake_send(&t.n[1].inner, &t.n[0].addr, "early", 5);
    run(&t);
    assert_int_equal(t.n[0].inner.ngot, 1);
    assert_memory_equal(t.n[0].inner.got[0], "early", 5);
    net_free(&t);
    m2m_dtls_ctx_free(cctx);
    m2m_dtls_ctx_free(sctx);
}

static void bad_config(void **state)
{
    (void)state;
    struct m2m_dtls_ctx *ctx;
    char err[200];
    struct m2m_dtls_ctx_config c = {.server = true};
    assert_int_equal(m2m_dtls_ctx_new(&c, &ctx, err, sizeof err), M2M_ECONFIG);
    c.psk_file = in_dir("bad-psk.txt");
    assert_int_equal(m2m_dtls_ctx_new(&c, &ctx, err, sizeof err), M2M_ECONFIG);
    assert_non_null(strstr(err, ":2:"));
    c.psk_file = in_dir("missing.txt");
    assert_int_equal(m2m_dtls_ctx_new(&c, &ctx, err, sizeof err), M2M_ECONFIG);
    c.psk_file = in_dir("psk.txt");
    assert_int_equal(m2m_dtls_ctx_new(&c, &ctx, err, sizeof err), 0);
    assert_int_equal(m2m_dtls_ctx_psk_count(ctx), 2);
    struct m2m_dtls_config cfg;
    base_cfg(&cfg, 1);
    cfg.mtu = 100;
    struct fake f;
    assert_null(m2m_dtls_new(ctx, &cfg, &fake_ops, &f));
    m2m_dtls_ctx_free(ctx);
}

/* ---- fixtures ---------------------------------------------------------------- */

static int sh(const char *cmd)
{
    char full[1024];
    snprintf(full, sizeof full, "cd %s && { %s; } >/dev/null 2>&1", dir, cmd);
    return system(full);
}

static int make_certs(void)
{
    static const char *const cmds[] = {
        "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key -out ca.pem "
        "-subj /CN=test-ca -days 2",
        "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout rogue-ca.key "
        "-out rogue-ca.pem -subj /CN=rogue-ca -days 2",
        "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout server.key -out "
        "server.pem "
        "-subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1 -CA ca.pem -CAkey ca.key "
        "-days 2",
        "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout client.key -out "
        "client.pem "
        "-subj /CN=device-1 -CA ca.pem -CAkey ca.key -days 2",
        "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout rogue-client.key "
        "-out rogue-client.pem -subj /CN=device-1 -CA rogue-ca.pem -CAkey rogue-ca.key -days 2",
        "printf '# test keys\\ndevice-7:7365637265742d6b65792d6f662d6465766963652d37\\n\\n"
        "other:00112233\\n' > psk.txt",
        "printf 'a:00\\nb:xyz\\n' > bad-psk.txt",
    };
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++)
        if (sh(cmds[i]))
            return -1;
    return 0;
}

static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof dir, "/tmp/m2m-dtls-test.XXXXXX");
    if (!mkdtemp(dir))
        return -1;
    return make_certs();
}

static int teardown(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    return system(cmd) ? -1 : 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(psk_handshake),
        cmocka_unit_test(psk_without_cookie),
        cmocka_unit_test(cert_handshake),
        cmocka_unit_test(mtu_respected),
        cmocka_unit_test(server_cert_only),
        cmocka_unit_test(wrong_psk_refused),
        cmocka_unit_test(unknown_ca_refused),
        cmocka_unit_test(expired_cert_refused),
        cmocka_unit_test(cookie_exchange_stateless),
        cmocka_unit_test(cookie_bound_to_address),
        cmocka_unit_test(retransmission),
        cmocka_unit_test(lost_final_flight),
        cmocka_unit_test(handshake_timeout),
        cmocka_unit_test(peer_cap),
        cmocka_unit_test(idle_timeout_and_close_notify),
        cmocka_unit_test(rebooted_client),
        cmocka_unit_test(session_resumption),
        cmocka_unit_test(client_data_waits_for_handshake),
        cmocka_unit_test(bad_config),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
